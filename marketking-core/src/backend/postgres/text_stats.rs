//! The collection statistics of the text leg's BM25, read from the planner's own (`pg_stats`,
//! kept by ANALYZE and autovacuum) once per [`STATS_TTL`] rather than inside every search.
//!
//! Choices made here, and why:
//! - Reading `pg_stats` in the search statement cost about 1.2 ms of a ~4 ms hybrid search at
//!   100k rows (the view is a join of five catalogs with a large `CASE` per column, planned on
//!   every search, plus decoding its arrays): the statistics change only when the table is
//!   analyzed, so they are read once a minute, and at once by [`VectorStore::analyze`]. The
//!   search passes them as parameters and stays one statement.
//! - A refresh never delays a search: a search that finds them older than [`STATS_TTL`] starts
//!   one refresh in the background and uses what it has. The first read is at connect.
//! - No statistics (a table under [`PRUNE_MIN_ROWS`] rows, or never analyzed) is `None`, and the
//!   search then counts exactly, as it always has on small tables.
//!
//! [`VectorStore::analyze`]: crate::VectorStore::analyze

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::ident::TableName;
use super::pool::{checkout, Health, Pool};
use crate::error::Result;

/// How long statistics are used before a search refreshes them (in the background).
pub(crate) const STATS_TTL: Duration = Duration::from_secs(60);

/// Below this many rows (`pg_class.reltuples`) every match is ranked and counted exactly: ranking
/// is cheap there, and a small table's statistics say little.
pub(crate) const PRUNE_MIN_ROWS: f64 = 2000.0;

/// What BM25 needs to know about the whole table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TextStats {
    /// The row count (`reltuples`).
    pub(crate) rows: f64,
    /// The most common lexemes of `tsv` and the share of rows holding each (same order).
    pub(crate) lexemes: Vec<String>,
    pub(crate) shares: Vec<f32>,
    /// The mean `text_len`, from its most common values and histogram; `None` when it has none.
    pub(crate) mean_len: Option<f64>,
}

/// One statement: the row count, the lexeme statistics and the mean length, or no row.
/// The mean length is the most common lengths weighted by their shares, plus the rest of the
/// rows at the mean of the histogram's bucket midpoints.
const READ: &str = "WITH tb AS (SELECT ns.nspname, c.relname, c.reltuples::float8 AS n FROM pg_class c \
        JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE c.oid = to_regclass($1) AND c.reltuples >= $2), \
    s AS (SELECT s.attname, s.most_common_elems::text::text[] AS e, s.most_common_elem_freqs AS ef, \
        s.most_common_vals::text AS mcv, s.most_common_freqs AS mcf, s.histogram_bounds::text AS hb \
        FROM pg_stats s JOIN tb ON (s.schemaname, s.tablename) = (tb.nspname, tb.relname) \
        WHERE s.attname IN ('tsv', 'text_len')), \
    l AS (SELECT coalesce((SELECT sum(m.v * m.f) FROM unnest(mcv::float8[], mcf) m(v, f)), 0) \
        + (1 - coalesce((SELECT sum(f) FROM unnest(mcf) f), 0)) \
          * coalesce((SELECT (sum(x) - (h[1] + h[cardinality(h)]) / 2) / nullif(cardinality(h) - 1, 0) \
                      FROM unnest(h) x), 0) AS dl \
        FROM s CROSS JOIN LATERAL (SELECT hb::float8[] AS h) hb WHERE attname = 'text_len') \
    SELECT tb.n, coalesce(s.e, '{}'), coalesce(s.ef, '{}'), (SELECT nullif(dl, 0) FROM l) FROM tb JOIN s ON s.attname = 'tsv'";

/// Reads the statistics of `table` on `client`.
pub(crate) async fn read(client: &Client, table: &TableName) -> Result<Option<TextStats>> {
    let name = table.quoted();
    let rows = client.query_typed(READ, &[(&name, Type::TEXT), (&PRUNE_MIN_ROWS, Type::FLOAT8)]).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let lexemes: Vec<String> = row.try_get(1)?;
    let mut shares: Vec<f32> = row.try_get(2)?;
    // The frequencies end with three more numbers (the minimum, maximum and null share).
    shares.truncate(lexemes.len());
    Ok(Some(TextStats { rows: row.try_get(0)?, lexemes, shares, mean_len: row.try_get(3)? }))
}

/// The statistics of one table, shared by every search on it.
#[derive(Debug)]
pub(crate) struct StatsCache {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    stats: Option<Arc<TextStats>>,
    read_at: Instant,
    refreshing: bool,
}

impl StatsCache {
    pub(crate) fn new(stats: Option<TextStats>) -> Arc<Self> {
        Arc::new(StatsCache {
            state: Mutex::new(State { stats: stats.map(Arc::new), read_at: Instant::now(), refreshing: false }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the statistics (after a read).
    pub(crate) fn set(&self, stats: Option<TextStats>) {
        self.finish(Some(stats));
    }

    /// Ends a read: the statistics it got, or (`None`, a failed read) the previous ones kept.
    fn finish(&self, read: Option<Option<TextStats>>) {
        let mut s = self.lock();
        if let Some(stats) = read {
            s.stats = stats.map(Arc::new);
        }
        s.read_at = Instant::now();
        s.refreshing = false;
    }

    /// The statistics to search with; starts a background refresh when they are older than
    /// [`STATS_TTL`] and none is running. A failed refresh keeps the old ones (and is retried
    /// after the next [`STATS_TTL`]): a search never fails for want of fresh statistics.
    pub(crate) fn current(
        self: &Arc<Self>,
        pool: &Pool,
        health: &Arc<Health>,
        table: &TableName,
    ) -> Option<Arc<TextStats>> {
        let mut s = self.lock();
        if s.read_at.elapsed() >= STATS_TTL && !s.refreshing {
            s.refreshing = true;
            let (cache, pool, health, table) = (Arc::clone(self), pool.clone(), Arc::clone(health), table.clone());
            tokio::spawn(async move {
                let read = async {
                    let conn = checkout(&pool, &health).await?;
                    read(&conn, &table).await
                };
                match read.await {
                    Ok(stats) => cache.set(stats),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the text statistics; keeping the previous ones");
                        cache.finish(None);
                    }
                }
            });
        }
        s.stats.clone()
    }
}
