//! Reads: get, list, search, and the single-row update.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::{with_retry, PgBackend, TableName};
use crate::backend::finish_hits;
use crate::document::{Document, DocumentPatch, SearchHit, SearchOptions, DEFAULT_EF_SEARCH, DEFAULT_PROBES};
use crate::error::Result;

/// Columns of a document, in the order [`row_to_document`] reads them.
const COLS: &str = "id, title, content, source, metadata, key, created_at, updated_at";

/// SQL text built once per table (the table name is validated and quoted).
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) table: String,
    pub(crate) get: String,
    pub(crate) get_emb: String,
    pub(crate) get_key: String,
    pub(crate) get_key_emb: String,
    pub(crate) list: String,
    pub(crate) list_emb: String,
    pub(crate) delete: String,
    pub(crate) ping: String,
}

impl Statements {
    pub(crate) fn new(table: &TableName) -> Self {
        let t = table.quoted();
        Statements {
            get: format!("SELECT {COLS} FROM {t} WHERE id = $1"),
            get_emb: format!("SELECT {COLS}, embedding FROM {t} WHERE id = $1"),
            get_key: format!("SELECT {COLS} FROM {t} WHERE key = $1"),
            get_key_emb: format!("SELECT {COLS}, embedding FROM {t} WHERE key = $1"),
            list: format!("SELECT {COLS} FROM {t} WHERE id > $1 ORDER BY id LIMIT $2"),
            list_emb: format!("SELECT {COLS}, embedding FROM {t} WHERE id > $1 ORDER BY id LIMIT $2"),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            ping: format!("SELECT EXISTS (SELECT 1 FROM {t})"),
            table: t,
        }
    }
}

/// Reads a row selected with [`COLS`] (plus `embedding` at index 8 when `with_embedding`).
///
/// Never panics on what the server sent: a value that does not decode (say, a number written
/// into the table by another tool that `serde_json` cannot hold) is an error naming the row.
pub(crate) fn row_to_document(row: &Row, with_embedding: bool) -> Result<Document> {
    let id: i64 = row.try_get(0)?;
    let decode = |e: tokio_postgres::Error| crate::error::Error::Database {
        message: format!("cannot read document {id}"),
        code: None,
        source: Some(Box::new(e)),
    };
    Ok(Document {
        id,
        title: row.try_get(1).map_err(decode)?,
        content: row.try_get(2).map_err(decode)?,
        source: row.try_get(3).map_err(decode)?,
        metadata: row.try_get(4).map_err(decode)?,
        key: row.try_get(5).map_err(decode)?,
        created_at: row.try_get::<_, DateTime<Utc>>(6).map_err(decode)?,
        updated_at: row.try_get::<_, DateTime<Utc>>(7).map_err(decode)?,
        embedding: match with_embedding {
            true => Some(row.try_get::<_, Vector>(8).map_err(decode)?.to_vec()),
            false => None,
        },
    })
}

impl PgBackend {
    pub(crate) async fn get_impl(&self, id: i64, with_embedding: bool) -> Result<Option<Document>> {
        let sql = if with_embedding { &self.sql.get_emb } else { &self.sql.get };
        with_retry!(self, |conn| {
            let stmt = conn.statement(sql, &[Type::INT8]).await?;
            let row = conn.query_opt(&stmt, &[&id]).await?;
            row.map(|r| row_to_document(&r, with_embedding)).transpose()
        })
    }

    pub(crate) async fn get_by_key_impl(&self, key: &str, with_embedding: bool) -> Result<Option<Document>> {
        let sql = if with_embedding { &self.sql.get_key_emb } else { &self.sql.get_key };
        with_retry!(self, |conn| {
            let stmt = conn.statement(sql, &[Type::TEXT]).await?;
            let row = conn.query_opt(&stmt, &[&key]).await?;
            row.map(|r| row_to_document(&r, with_embedding)).transpose()
        })
    }

    pub(crate) async fn list_impl(&self, after_id: i64, limit: usize, with_embedding: bool) -> Result<Vec<Document>> {
        let sql = if with_embedding { &self.sql.list_emb } else { &self.sql.list };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_retry!(self, |conn| {
            let stmt = conn.statement(sql, &[Type::INT8, Type::INT8]).await?;
            let rows = conn.query(&stmt, &[&after_id, &limit]).await?;
            rows.iter().map(|r| row_to_document(r, with_embedding)).collect()
        })
    }

    pub(crate) async fn update_impl(
        &self,
        id: i64,
        patch: &DocumentPatch,
        embedding: Option<Vec<f32>>,
    ) -> Result<Option<Document>> {
        let mut sets = vec!["updated_at = now()".to_string()];
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&id, Type::INT8)];
        let source_value;
        let vector;
        if let Some(t) = &patch.title {
            params.push((t, Type::VARCHAR));
            sets.push(format!("title = ${}", params.len()));
        }
        if let Some(c) = &patch.content {
            params.push((c, Type::TEXT));
            sets.push(format!("content = ${}", params.len()));
        }
        if let Some(s) = &patch.source {
            source_value = s.clone();
            params.push((&source_value, Type::VARCHAR));
            sets.push(format!("source = ${}", params.len()));
        }
        if let Some(m) = &patch.metadata {
            params.push((m, Type::JSONB));
            sets.push(format!("metadata = ${}", params.len()));
        }
        if let Some(v) = embedding {
            vector = Vector::from(v);
            params.push((&vector, self.vector_type.clone()));
            sets.push(format!("embedding = ${}", params.len()));
        }
        let sql = format!("UPDATE {} SET {} WHERE id = $1 RETURNING {COLS}", self.sql.table, sets.join(", "));
        let conn = self.checkout().await?;
        // One statement: it commits on its own, so its commit point is before it is sent.
        crate::gate::commit_point()?;
        let rows = conn.query_typed(&sql, &params).await?;
        rows.first().map(|r| row_to_document(r, false)).transpose()
    }

    pub(crate) async fn search_impl(
        &self,
        query: &[f32],
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Result<Vec<SearchHit>> {
        let rows = self.run_search(query, opts, exclude, false).await?;
        let dist_col = if opts.include_embedding { 9 } else { 8 };
        let hits = rows
            .iter()
            .map(|r| {
                Ok(SearchHit {
                    score: (1.0 - r.try_get::<_, f64>(dist_col)?) as f32,
                    document: row_to_document(r, opts.include_embedding)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(finish_hits(hits, opts))
    }

    pub(crate) async fn explain_impl(&self, query: &[f32], opts: &SearchOptions) -> Result<String> {
        let rows = self.run_search(query, opts, None, true).await?;
        Ok(rows.iter().map(|r| r.try_get::<_, String>(0)).collect::<Result<Vec<_>, _>>()?.join("\n"))
    }

    /// Runs the search query (or, with `explain`, the same query under EXPLAIN with the same
    /// parameters and settings, so the plan shown is the plan used).
    async fn run_search(
        &self,
        query: &[f32],
        opts: &SearchOptions,
        exclude: Option<i64>,
        explain: bool,
    ) -> Result<Vec<Row>> {
        let vector = Vector::from(query.to_vec());
        let limit = opts.k as i64;
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> =
            vec![(&vector, self.vector_type.clone()), (&limit, Type::INT8)];
        let mut filters: Vec<String> = Vec::new();
        if !opts.sources.is_empty() {
            params.push((&opts.sources, Type::TEXT_ARRAY));
            filters.push(format!("source = ANY(${})", params.len()));
        }
        if let Some(m) = &opts.metadata {
            params.push((m, Type::JSONB));
            filters.push(format!("metadata @> ${}", params.len()));
        }
        if let Some(a) = &opts.created_after {
            params.push((a, Type::TIMESTAMPTZ));
            filters.push(format!("created_at >= ${}", params.len()));
        }
        if let Some(b) = &opts.created_before {
            params.push((b, Type::TIMESTAMPTZ));
            filters.push(format!("created_at < ${}", params.len()));
        }
        if let Some(id) = &exclude {
            params.push((id, Type::INT8));
            filters.push(format!("id <> ${}", params.len()));
        }
        let where_clause = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
        let emb = if opts.include_embedding { ", embedding" } else { "" };
        // ORDER BY the same expression we select, so exact scans compute each distance once and
        // the planner can use the cosine index: `ORDER BY embedding <=> $1 LIMIT k`.
        let sql = format!(
            "{}SELECT {COLS}{emb}, embedding <=> $1 AS distance FROM {} {where_clause} ORDER BY embedding <=> $1 LIMIT $2",
            if explain { "EXPLAIN " } else { "" },
            self.sql.table
        );
        // Filtered searches need iterative index scans, or an approximate scan that finds fewer
        // than k matching rows among its candidates returns fewer than k rows. Relaxed order is
        // the fast mode; hits are re-sorted below.
        let iterative =
            if self.iterative_scans && (opts.has_filters() || exclude.is_some()) { "relaxed_order" } else { "off" };
        let mut settings = format!(
            "SET hnsw.ef_search = {}; SET ivfflat.probes = {};",
            // The store fills in its defaults before calling; these only name the fallback.
            opts.ef_search.unwrap_or(DEFAULT_EF_SEARCH),
            opts.probes.unwrap_or(DEFAULT_PROBES)
        );
        if self.iterative_scans {
            settings.push_str(&format!(
                " SET hnsw.iterative_scan = {iterative}; SET ivfflat.iterative_scan = {iterative};"
            ));
        }
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
        with_retry!(self, |conn| {
            // EXPLAIN text is not cached: it is a diagnostic, and one-off.
            if explain {
                conn.batch_execute(&settings).await?;
                conn.search_settings = Some(settings.clone());
                return Ok(conn.query_typed(&sql, &params).await?);
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
