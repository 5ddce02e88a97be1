//! Searches: vector, full text, and hybrid (both legs fused by RRF) in ONE statement.
//!
//! Choices made here, and why:
//! - The text query is the query's lexemes OR-ed (`plainto_tsquery` with `&` turned into `|`),
//!   never raw user syntax: natural-language queries rarely have every word in one document, and
//!   nothing a user types can fail to parse. Documents with every word still come first: the
//!   text score is 1 when `tsv @@ and_query`, plus `s / (s + 1)` of the document's BM25 score
//!   `s` (so in `[0, 2)`), the same shape and the same BM25 as the embedded store's FTS5.
//! - BM25 in SQL: each candidate's length is its `text_len` (its last word position: stop words
//!   count, as in FTS5) and only the query's lexemes are read from its `tsvector`, for their
//!   weighted frequency (a title occurrence, weight `A`, counts [`TITLE_WEIGHT`]); `k1` 1.2 and
//!   `b` 0.75 as in FTS5. The statistics come without a scan of the table: the row count, the
//!   listed lexemes' document frequencies and the mean length from `pg_stats`, read outside the
//!   statement ([`TextStats`], once a minute) and passed as parameters; a lexeme rarer than
//!   every listed one is counted among the candidates (they hold most of its documents). A table
//!   without statistics (small, or never analyzed) is counted exactly: its rows, its mean
//!   length, and each query lexeme's documents through the text index. `ts_rank` (what this
//!   used before) has no inverse document frequency: on the dev set BM25 took the text leg from
//!   0.688 / 0.450 recall@10 / MRR@10 to the figures in BENCHMARKS.md.
//! - The text leg does not rank every document with any query word: in a large table a common
//!   word ("return", "value") is in a good part of it, and ranking all of those is what made the
//!   leg slow. Candidates come from the query's informative lexemes: those in under
//!   [`COMMON_LEXEME`] of the documents by the planner's own statistics (`pg_stats`
//!   `most_common_elems` of `tsv`, kept by ANALYZE / autovacuum), or the two rarest when every
//!   query word is common. Every candidate is then scored with every query word. When the
//!   informative lexemes find fewer than the leg's limit, documents with only common words
//!   fill it, so a text search still returns k rows when k documents have a query word.
//!   Tables under [`PRUNE_MIN_ROWS`] rows (or never analyzed) rank every match (with the RUM
//!   index, the best `pool` of them).
//! - With the RUM index (`rum` extension) the candidates are the best few hundred by RUM's
//!   in-index rank (`ORDER BY tsv <=> query LIMIT pool`), so no row outside them is read.
//! - Hybrid search is two ranked CTEs (each limited to `candidates`), a full outer join and the
//!   fused score `w_v / (k + rank_v) + w_t / (k + rank_t)`: one round trip. Each leg's rank is
//!   computed outside its `ORDER BY ... LIMIT` subquery, so the vector leg can still use the
//!   HNSW index (a window function over the scan would force a full sort).
//! - Filters apply inside both legs, so a filtered hybrid search still returns k rows.
//! - Every hybrid hit gets its cosine similarity (computed for the k fused rows only), so
//!   `min_score` means the same in hybrid as in vector mode.

use pgvector::Vector;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::admin::Form;
use super::read::{row_to_document, COLS};
use super::schema::split_words;
#[cfg(doc)]
use super::text_stats::{TextStats, PRUNE_MIN_ROWS};
use super::{with_read, with_retry, PgBackend};
use crate::backend::{finish_hits, Quantization, SearchQuery};
use crate::document::{Document, SearchHit, SearchOptions, DEFAULT_EF_SEARCH, DEFAULT_PROBES};
use crate::error::{Error, Result};
use crate::search_mode::{LegScore, BM25_B, BM25_K1, TITLE_WEIGHT};

/// Statement parameters with their types, numbered as they are pushed.
struct Params<'a> {
    values: Vec<(&'a (dyn ToSql + Sync), Type)>,
}

impl<'a> Params<'a> {
    /// Adds a value; returns its placeholder (`$n`).
    fn push(&mut self, value: &'a (dyn ToSql + Sync), ty: Type) -> String {
        self.values.push((value, ty));
        format!("${}", self.values.len())
    }
}

/// A lexeme in at least this share of the table's documents is common: it still scores, but
/// does not nominate candidates (see the module notes).
const COMMON_LEXEME: &str = "0.02";

/// How the GIN path orders the documents that fill a leg from common words only: cheap, and
/// only which of them are kept depends on it (they are then scored like every candidate).
const FILL_ORDER: &str = "(ts_rank(tsv, q.orq, 33) + CASE WHEN tsv @@ q.andq THEN 1 ELSE 0 END)";

/// Placeholders and fragments of a text leg.
struct TextLeg<'s> {
    /// Placeholders: the text search configuration, the query text, the leg's row limit and the
    /// RUM candidate count; the table statistics ([`TextStats`]: the row count, NULL when there
    /// are none, the common lexemes and their shares, the mean length).
    cfg: &'s str,
    text: &'s str,
    limit: &'s str,
    pool: &'s str,
    rows: &'s str,
    lexemes: &'s str,
    shares: &'s str,
    mean_len: &'s str,
    /// The table's quoted name, ` AND ...` filter conditions, and the `rum` extension's quoted
    /// schema when the table has the RUM index.
    t: &'s str,
    filters: &'s str,
    rum: Option<&'s str>,
}

impl TextLeg<'_> {
    /// The leg's CTEs, ending in `x (id, score, rank)`: the best `limit` documents, best first.
    fn ctes(&self) -> String {
        let TextLeg { cfg, text, limit, pool, rows, lexemes, shares, mean_len, t, filters, rum } = self;
        let words = split_words(text);
        // Each query lexeme with its share of documents (0 when not listed: rarer than every
        // listed one, or no statistics) and its order from the rarest.
        let lexemes = format!(
            "lf AS (SELECT l.lexeme, coalesce(({shares}::float4[])[array_position({lexemes}::text[], l.lexeme)], 0)::float8 AS freq \
                    FROM unnest(to_tsvector({cfg}::regconfig, {words})) l), \
             lx AS (SELECT lexeme, freq, row_number() OVER (ORDER BY freq, lexeme) AS n FROM lf)"
        );
        // The informative lexemes OR-ed.
        let informative = format!(
            "pq AS (SELECT coalesce((SELECT string_agg({}, ' | ') \
                    FROM lx WHERE freq < {COMMON_LEXEME} \
                    OR (n <= 2 AND NOT EXISTS (SELECT 1 FROM lx r WHERE r.freq < {COMMON_LEXEME})))::tsquery, \
                    (SELECT orq FROM q)) AS pq)",
            quoted_lexeme("lexeme")
        );
        // Documents with only common words, when the informative ones find fewer than `limit`.
        let fill = format!("(SELECT greatest({limit} - count(*), 0) FROM r1)");
        let candidates = match rum {
            Some(rs) => format!(
                "r1 AS (SELECT id, tsv, text_len FROM {t} WHERE tsv @@ (SELECT pq FROM pq){filters} \
                        ORDER BY tsv OPERATOR({rs}.<=>) (SELECT pq FROM pq) LIMIT {pool}), \
                 r2 AS (SELECT id, tsv, text_len FROM {t} WHERE tsv @@ (SELECT orq FROM q) AND NOT tsv @@ (SELECT pq FROM pq){filters} \
                        ORDER BY tsv OPERATOR({rs}.<=>) (SELECT orq FROM q) LIMIT {fill})"
            ),
            None => format!(
                "r1 AS (SELECT id, tsv, text_len FROM {t} WHERE tsv @@ (SELECT pq FROM pq){filters}), \
                 r2 AS (SELECT id, tsv, text_len FROM {t}, q WHERE tsv @@ q.orq AND NOT tsv @@ (SELECT pq FROM pq){filters} \
                        ORDER BY {FILL_ORDER} DESC, id LIMIT {fill})"
            ),
        };
        // Each candidate's length (`text_len`, kept by the trigger; computed from the `tsvector`
        // for a row an older trigger wrote and the refill has not reached yet) and, for each query
        // lexeme it has, the lexeme's weighted frequency (a title occurrence counts TITLE_WEIGHT).
        // Only the query's lexemes are read: `setweight(tsv, 'D', lexemes)` marks their positions
        // and `ts_filter(.., '{{d}}')` keeps them (every occurrence, as `D`), and the same of the
        // title part (`ts_filter(tsv, '{{a}}')`) is appended as `A`, so one `unnest` of a few
        // entries gives both counts. Unnesting the whole `tsvector` (about a hundred lexemes, two
        // arrays each) cost 2-3x more per candidate. PostgreSQL keeps at most 256 positions of a
        // lexeme, so a word occurring over ~250 times in a document loses some of its title
        // weight here; BM25's frequency term is saturated long before that.
        let terms = format!(
            "e AS (SELECT r.id, r.tsv @@ q.andq AS allw, \
                   coalesce(r.text_len, (SELECT max(u.positions[cardinality(u.positions)]) FROM unnest(r.tsv) u), 0)::float8 AS dl, \
                   m.lexeme, m.f \
                   FROM (SELECT id, tsv, text_len FROM r1 UNION ALL SELECT id, tsv, text_len FROM r2) r \
                   CROSS JOIN q CROSS JOIN (SELECT array_agg(lexeme) AS l FROM lf) ql \
                   LEFT JOIN LATERAL (SELECT u.lexeme, \
                          greatest(cardinality(array_positions(u.weights, 'D')) + {} * cardinality(array_positions(u.weights, 'A')), 1)::float8 AS f \
                          FROM unnest(ts_filter(setweight(r.tsv, 'D', ql.l), '{{d}}') \
                                      || setweight(ts_filter(setweight(ts_filter(r.tsv, '{{a}}'), 'D', ql.l), '{{d}}'), 'A')) u) m ON true)",
            TITLE_WEIGHT - 1.0
        );
        // The collection statistics: the row count and the mean length (`text_len`): from the
        // table's statistics when it has them, else exact (one pass over two columns: a table
        // without statistics is small, or was never analyzed), else the candidates' mean; each
        // query lexeme's document frequency from the statistics when listed, else counted: in
        // the table when it has no statistics (exact), among the candidates when it does (a
        // lexeme rarer than every listed one has most of its documents among them).
        let stats = format!(
            "sm AS (SELECT count(*)::float8 AS n, avg(text_len)::float8 AS dl FROM {t} WHERE {rows}::float8 IS NULL), \
             bs AS (SELECT coalesce({rows}::float8, (SELECT n FROM sm))::float8 AS n, \
                    greatest(coalesce((SELECT dl FROM sm), {mean_len}::float8, \
                                      (SELECT avg(dl) FROM (SELECT DISTINCT id, dl FROM e) d)), 1)::float8 AS avgdl), \
             df AS (SELECT lf.lexeme, (CASE WHEN lf.freq > 0 THEN lf.freq * (SELECT n FROM bs) \
                    WHEN {rows}::float8 IS NULL THEN (SELECT count(*) FROM {t} WHERE tsv @@ ({})::tsquery) \
                    ELSE greatest((SELECT count(*) FROM e WHERE e.lexeme = lf.lexeme), 1) END)::float8 AS df FROM lf)",
            quoted_lexeme("lf.lexeme")
        );
        let (k1, b) = (BM25_K1, BM25_B);
        let bm25 = format!(
            "greatest(ln((bs.n - df.df + 0.5) / (df.df + 0.5)), 1e-6) * e.f * {} / (e.f + {k1} * ({} + {b} * e.dl / bs.avgdl))",
            k1 + 1.0,
            1.0 - b
        );
        format!(
            "q AS (SELECT plainto_tsquery({cfg}::regconfig, {words}) AS andq, \
                   replace(plainto_tsquery({cfg}::regconfig, {words})::text, ' & ', ' | ')::tsquery AS orq), \
             {lexemes}, {informative}, {candidates}, {terms}, {stats}, \
             x AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank FROM \
                   (SELECT id, (CASE WHEN allw THEN 1 ELSE 0 END + s / (s + 1))::float8 AS score FROM \
                      (SELECT e.id, bool_or(e.allw) AS allw, coalesce(sum({bm25}), 0) AS s \
                       FROM e LEFT JOIN df USING (lexeme) CROSS JOIN bs GROUP BY e.id) b \
                    ORDER BY score DESC, id LIMIT {limit}) s)"
        )
    }
}

/// SQL text that quotes the lexeme `expr` the way tsquery's own output quotes it.
fn quoted_lexeme(expr: &str) -> String {
    format!("'''' || replace(replace({expr}, '\\', '\\\\'), '''', '''''') || ''''")
}

/// How many documents the RUM index nominates for a text leg of `limit` rows: its in-index rank
/// (over the informative lexemes only) and the final score disagree a little, so a margin.
fn rum_pool(limit: i64) -> i64 {
    (limit * 5).max(200)
}

impl PgBackend {
    pub(crate) async fn search_impl(
        &self,
        query: SearchQuery<'_>,
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Result<Vec<SearchHit>> {
        let rows = self.run_search(query, opts, exclude, false).await?;
        // The columns before the scores: the id alone, or every document column.
        let extra = match (query.ids_only, opts.include_embedding) {
            (true, _) => 1,
            (false, true) => 9,
            (false, false) => 8,
        };
        let hits = rows
            .iter()
            .map(|r| {
                let document = match query.ids_only {
                    true => Document::id_only(r.try_get(0)?),
                    false => row_to_document(r, opts.include_embedding)?,
                };
                Ok(match (query.vector, query.text) {
                    (Some(_), Some(_)) => {
                        let rank = |i: usize| -> Result<Option<usize>> {
                            Ok(r.try_get::<_, Option<i64>>(i)?.map(|x| usize::try_from(x).unwrap_or(usize::MAX)))
                        };
                        // Every hybrid hit has its cosine similarity (computed for the fused
                        // rows); a text score only when the text leg nominated it.
                        let vector =
                            Some(LegScore { rank: rank(extra + 1)?, score: r.try_get::<_, f64>(extra + 2)? as f32 });
                        let text = match (rank(extra + 3)?, r.try_get::<_, Option<f64>>(extra + 4)?) {
                            (Some(rank), Some(s)) => Some(LegScore { rank: Some(rank), score: s as f32 }),
                            _ => None,
                        };
                        SearchHit { score: r.try_get::<_, f64>(extra)? as f32, document, vector, text }
                    }
                    (Some(_), None) => SearchHit {
                        score: (1.0 - r.try_get::<_, f64>(extra)?) as f32,
                        document,
                        vector: None,
                        text: None,
                    },
                    _ => SearchHit { score: r.try_get::<_, f64>(extra)? as f32, document, vector: None, text: None },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(finish_hits(hits, opts))
    }

    pub(crate) async fn explain_impl(&self, query: SearchQuery<'_>, opts: &SearchOptions) -> Result<String> {
        let rows = self.run_search(query, opts, None, true).await?;
        Ok(rows.iter().map(|r| r.try_get::<_, String>(0)).collect::<Result<Vec<_>, _>>()?.join("\n"))
    }

    /// Runs the search statement (or, with `explain`, the same statement under EXPLAIN with the
    /// same parameters and settings, so the plan shown is the plan used).
    async fn run_search(
        &self,
        query: SearchQuery<'_>,
        opts: &SearchOptions,
        exclude: Option<i64>,
        explain: bool,
    ) -> Result<Vec<Row>> {
        let vector = query.vector.map(|v| Vector::from(v.to_vec()));
        let limit = opts.k as i64;
        let candidates = opts.fusion.candidates_for(opts.k) as i64;
        let text_pool = rum_pool(if query.vector.is_some() { candidates } else { limit });
        let (wv, wt, rrf_k) =
            (f64::from(opts.fusion.vector_weight), f64::from(opts.fusion.text_weight), f64::from(opts.fusion.rrf_k));
        let text = query.text.map(str::to_string);
        let filter = opts.filter.as_ref().map(super::filter_sql::SqlFilter::compile).transpose()?;
        let metadata = opts.metadata.as_ref().map(tokio_postgres::types::Json);
        // A quantized index gives `oversample` candidates per result, ranked by its own
        // distance; the nearest of them by exact cosine distance are kept.
        // Settings left unset by the call and the store come from the index's tuning, if any.
        // An exact search reads no index.
        let form = if vector.is_some() && !opts.exact { self.index_form().await } else { Form::default() };
        let quant = form.quantization;
        let (tuned_ef, tuned_probes, tuned_oversample) =
            form.tuned.map_or((None, None, None), |t| (t.ef_search, t.probes, t.oversample));
        let vector_rows = if text.is_some() { candidates } else { limit };
        let scanned = match quant {
            Quantization::None => vector_rows,
            q => vector_rows.saturating_mul(i64::from(
                opts.oversample.or(tuned_oversample).unwrap_or_else(|| q.default_oversample()),
            )),
        };
        let mut p = Params { values: Vec::new() };
        let k = p.push(&limit, Type::INT8);
        let mut filters: Vec<String> = Vec::new();
        if !opts.sources.is_empty() {
            filters.push(format!("source = ANY({})", p.push(&opts.sources, Type::TEXT_ARRAY)));
        }
        if let Some(m) = &metadata {
            filters.push(format!("metadata @> {}", p.push(m, Type::JSONB)));
        }
        if let Some(a) = &opts.created_after {
            filters.push(format!("created_at >= {}", p.push(a, Type::TIMESTAMPTZ)));
        }
        if let Some(b) = &opts.created_before {
            filters.push(format!("created_at < {}", p.push(b, Type::TIMESTAMPTZ)));
        }
        if let Some(f) = &filter {
            filters.push(f.render(|v, t| p.push(v, t)));
        }
        if let Some(id) = &exclude {
            filters.push(format!("id <> {}", p.push(id, Type::INT8)));
        }
        let and_filters: String = filters.iter().map(|f| format!(" AND {f}")).collect();
        let where_filters = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
        let emb = if opts.include_embedding { ", embedding" } else { "" };
        // What each hit reads of its row: only the id for an ids-only search (the vector search
        // is then the bare `SELECT id, embedding <=> $v ... LIMIT k`, no join back to the table).
        let cols = if query.ids_only { "id".to_string() } else { format!("{COLS}{emb}") };
        let t = &self.sql.table;
        // The text leg's row limit: k, or the candidate count of a hybrid search.
        let leg_limit = if vector.is_some() && text.is_some() { p.push(&candidates, Type::INT8) } else { k.clone() };
        let stats = text.as_ref().and_then(|_| self.text_stats.current(&self.pool, &self.health, &self.table));
        let rows = stats.as_ref().map(|s| s.rows);
        let mean_len = stats.as_ref().and_then(|s| s.mean_len);
        let no_lexemes: (Vec<String>, Vec<f32>) = (Vec::new(), Vec::new());
        let (lexemes, shares) = stats.as_ref().map_or((&no_lexemes.0, &no_lexemes.1), |s| (&s.lexemes, &s.shares));
        let leg = text.as_ref().map(|text| {
            TextLeg {
                cfg: &p.push(&self.text_config, Type::TEXT),
                text: &p.push(text, Type::TEXT),
                limit: &leg_limit,
                pool: &p.push(&text_pool, Type::INT8),
                rows: &p.push(&rows, Type::FLOAT8),
                lexemes: &p.push(lexemes, Type::TEXT_ARRAY),
                shares: &p.push(shares, Type::FLOAT4_ARRAY),
                mean_len: &p.push(&mean_len, Type::FLOAT8),
                t,
                filters: &and_filters,
                rum: self.rum.as_deref(),
            }
            .ctes()
        });
        // `SELECT id, distance`: the `n` nearest rows (exact cosine distance) for `v`.
        let nearest = |v: &str, n: &str, pool: Option<&str>| {
            match pool {
            // OFFSET 0 keeps the planner from pushing the ORDER BY into the subquery, where the
            // vector index would serve it: this is a scan of every (filtered) row.
            None if opts.exact => format!(
                "SELECT id, distance FROM (SELECT id, embedding <=> {v} AS distance FROM {t} {where_filters} OFFSET 0) e \
                 ORDER BY distance, id LIMIT {n}"
            ),
            None => format!(
                "SELECT id, embedding <=> {v} AS distance FROM {t} {where_filters} ORDER BY embedding <=> {v} LIMIT {n}"
            ),
            Some(pool) => format!(
                "SELECT id, embedding <=> {v} AS distance FROM \
                 (SELECT id, embedding FROM {t} {where_filters} ORDER BY {order} LIMIT {pool}) q \
                 ORDER BY distance, id LIMIT {n}",
                order = super::admin::order_expr(quant, self.dims, v)
            ),
        }
        };
        let sql = match (&vector, &leg) {
            // ORDER BY the same expression we select, so exact scans compute each distance once
            // and the planner can use the cosine index: `ORDER BY embedding <=> $v LIMIT k`.
            (Some(v), None) if quant == Quantization::None && !opts.exact => {
                let v = p.push(v, self.vector_type.clone());
                format!("SELECT {cols}, embedding <=> {v} AS distance FROM {t} {where_filters} ORDER BY embedding <=> {v} LIMIT {k}")
            }
            (Some(v), None) => {
                let v = p.push(v, self.vector_type.clone());
                let pool = (quant != Quantization::None).then(|| p.push(&scanned, Type::INT8));
                let near = nearest(&v, &k, pool.as_deref());
                match query.ids_only {
                    true => format!("SELECT id, n.distance FROM ({near}) n ORDER BY n.distance, id"),
                    false => {
                        format!("SELECT {cols}, n.distance FROM ({near}) n JOIN {t} USING (id) ORDER BY n.distance, id")
                    }
                }
            }
            (None, Some(leg)) => match query.ids_only {
                true => format!("WITH {leg} SELECT id, x.score FROM x ORDER BY x.score DESC, id"),
                false => {
                    format!("WITH {leg} SELECT {cols}, x.score FROM x JOIN {t} USING (id) ORDER BY x.score DESC, id")
                }
            },
            (Some(v), Some(leg)) => {
                let v = p.push(v, self.vector_type.clone());
                let c = &leg_limit;
                let pool = (quant != Quantization::None).then(|| p.push(&scanned, Type::INT8));
                let near = nearest(&v, c, pool.as_deref());
                let (wv, wt, rk) = (p.push(&wv, Type::FLOAT8), p.push(&wt, Type::FLOAT8), p.push(&rrf_k, Type::FLOAT8));
                format!(
                    "WITH {leg}, \
                     v AS (SELECT id, distance, row_number() OVER (ORDER BY distance, id) AS rank FROM \
                           ({near}) s), \
                     f AS (SELECT coalesce(v.id, x.id) AS id, \
                           coalesce({wv} / ({rk} + v.rank), 0) + coalesce({wt} / ({rk} + x.rank), 0) AS fused, \
                           v.rank AS vrank, x.rank AS trank, x.score AS tscore \
                           FROM v FULL OUTER JOIN x ON v.id = x.id ORDER BY fused DESC, id LIMIT {k}) \
                     SELECT {cols}, f.fused, f.vrank, 1 - (embedding <=> {v}) AS vscore, f.trank, f.tscore \
                     FROM f JOIN {t} USING (id) ORDER BY f.fused DESC, id"
                )
            }
            (None, None) => return Err(Error::invalid("query", "a search needs a text or a vector")),
        };
        let sql = if explain { format!("EXPLAIN {sql}") } else { sql };
        // Filtered searches need iterative index scans, or an approximate scan that finds fewer
        // than k matching rows among its candidates returns fewer than k rows. Relaxed order is
        // the fast mode; hits are re-sorted. The vector leg of a hybrid search needs
        // `ef_search` of at least its candidate count to get that many rows from HNSW.
        let iterative =
            if self.iterative_scans && (opts.has_filters() || exclude.is_some()) { "relaxed_order" } else { "off" };
        // The store fills in its defaults before calling; these only name the fallback.
        // HNSW returns at most ef_search rows (without iterative scans): never fewer than the
        // leg asks for, whatever the setting or the tuning says.
        let mut ef = opts.ef_search.or(tuned_ef).unwrap_or(DEFAULT_EF_SEARCH);
        if vector.is_some() {
            ef = ef.max(u32::try_from(scanned).unwrap_or(u32::MAX)).min(*crate::document::EF_SEARCH_RANGE.end());
        }
        // No JIT: the text leg's statement carries the plan of a count over the table (run only
        // when the table has no statistics), whose estimated cost at 100k rows crossed
        // `jit_above_cost`, and compiling the plan took ~200 ms of a search that runs in ~10.
        let mut settings = format!(
            "SET jit = off; SET hnsw.ef_search = {ef}; SET ivfflat.probes = {};",
            opts.probes.or(tuned_probes).unwrap_or(DEFAULT_PROBES)
        );
        if self.iterative_scans {
            settings.push_str(&format!(
                " SET hnsw.iterative_scan = {iterative}; SET ivfflat.iterative_scan = {iterative};"
            ));
        }
        let params = &p.values;
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
        let floor = opts.consistent_after.map(crate::position::WritePosition::as_u64);
        with_read!(self, floor, |conn| {
            // EXPLAIN text is not cached: it is a diagnostic, and one-off.
            if explain {
                conn.batch_execute(&settings).await?;
                conn.search_settings = Some(settings.clone());
                return Ok(conn.query_typed(&sql, params).await?);
            }
            let stmt = conn.statement(&sql, &types).await?;
            if conn.search_settings.as_deref() == Some(settings.as_str()) {
                return Ok(conn.query(&stmt, &values).await?);
            }
            // Pipelined: the SETs and the query go out together and cost one round trip.
            let (set, rows) = tokio::join!(conn.batch_execute(&settings), conn.query(&stmt, &values));
            conn.search_settings = set.is_ok().then(|| settings.clone());
            set?;
            Ok(rows?)
        })
    }
}
