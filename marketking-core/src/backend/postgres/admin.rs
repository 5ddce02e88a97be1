//! Indexes and statistics.

use tokio_postgres::Client;

use super::{with_retry, PgBackend};
use crate::backend::{IndexInfo, IndexKind, IndexSpec, SourceCount, StorageStats};
use crate::error::{Error, Result};

const INDEX_SUFFIX: &str = "embedding_idx";
/// An index build is much faster when the graph fits in maintenance_work_mem; one parallel
/// worker plus the leader uses both cores of a small machine.
const BUILD_SETTINGS: &str = "SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 1";
const RESET_SETTINGS: &str = "RESET maintenance_work_mem; RESET max_parallel_maintenance_workers";

impl PgBackend {
    /// The vector index on the table, if any (any hnsw/ivfflat index on it counts).
    async fn index_info(&self, conn: &Client) -> Result<Option<IndexInfo>> {
        let row = conn
            .query_opt(
                "SELECT c.relname::text, am.amname::text, coalesce(c.reloptions, '{}')::text[], pg_relation_size(c.oid) \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
                 WHERE i.indrelid = to_regclass($1) AND am.amname IN ('hnsw', 'ivfflat') \
                 ORDER BY i.indisvalid DESC, c.relname LIMIT 1",
                &[&self.sql.table],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let am: String = r.try_get(1)?;
        let opts: Vec<String> = r.try_get(2)?;
        let opt = |name: &str, default: u32| {
            opts.iter()
                .find_map(|o| o.strip_prefix(&format!("{name}=")).and_then(|v| v.parse().ok()))
                .unwrap_or(default)
        };
        let kind = if am == "hnsw" {
            IndexKind::Hnsw { m: opt("m", 16), ef_construction: opt("ef_construction", 64) }
        } else {
            IndexKind::IvfFlat { lists: Some(opt("lists", 100)) }
        };
        Ok(Some(IndexInfo { name: r.try_get(0)?, kind, bytes: r.try_get::<_, i64>(3)?.max(0) as u64 }))
    }

    pub(crate) async fn stats_impl(&self) -> Result<StorageStats> {
        with_retry!(self, |conn| self.stats_on(&conn).await)
    }

    async fn stats_on(&self, conn: &Client) -> Result<StorageStats> {
        let t = &self.sql.table;
        let count: i64 = conn.query_one(&format!("SELECT count(*) FROM {t}"), &[]).await?.try_get(0)?;
        let sources = conn
            .query(
                &format!(
                    "SELECT source::text, count(*) FROM {t} GROUP BY source ORDER BY count(*) DESC, source NULLS LAST LIMIT 20"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok(SourceCount { source: r.try_get(0)?, count: r.try_get::<_, i64>(1)?.max(0) as u64 }))
            .collect::<Result<Vec<_>>>()?;
        let bytes: i64 = conn.query_one("SELECT pg_total_relation_size(to_regclass($1))", &[t]).await?.try_get(0)?;
        Ok(StorageStats {
            backend: "postgres".into(),
            location: self.table.display(),
            documents: count.max(0) as u64,
            sources,
            table_bytes: bytes.max(0) as u64,
            index: self.index_info(conn).await?,
        })
    }

    pub(crate) async fn create_index_impl(&self, spec: &IndexSpec) -> Result<IndexInfo> {
        let conn = self.checkout().await?;
        let t = &self.sql.table;
        let (method, with) = match spec.kind {
            IndexKind::Hnsw { m, ef_construction } => ("hnsw", format!("m = {m}, ef_construction = {ef_construction}")),
            IndexKind::IvfFlat { lists } => {
                let lists = match lists {
                    Some(l) => l,
                    None => {
                        let n: i64 = conn.query_one(&format!("SELECT count(*) FROM {t}"), &[]).await?.try_get(0)?;
                        ((n / 1000) as u32).max(1)
                    }
                };
                ("ivfflat", format!("lists = {lists}"))
            }
        };
        // Replacing: drop whatever vector index exists first (a failed CONCURRENTLY build leaves
        // an invalid one behind, which this also clears).
        if let Some(old) = self.index_info(&conn).await? {
            conn.batch_execute(&format!("DROP INDEX IF EXISTS {}", self.table.in_schema(&old.name))).await?;
        }
        let concurrently = if spec.concurrently { "CONCURRENTLY " } else { "" };
        // Separate statements: several in one simple query form an implicit transaction, where
        // CONCURRENTLY is not allowed.
        conn.batch_execute(BUILD_SETTINGS).await?;
        let built = conn
            .batch_execute(&format!(
                "CREATE INDEX {concurrently}{name} ON {t} USING {method} (embedding vector_cosine_ops) WITH ({with})",
                name = self.table.sibling(INDEX_SUFFIX)
            ))
            .await;
        conn.batch_execute(RESET_SETTINGS).await?;
        built?;
        self.index_info(&conn).await?.ok_or_else(|| Error::storage("index was created but cannot be found"))
    }

    pub(crate) async fn drop_index_impl(&self) -> Result<bool> {
        let conn = self.checkout().await?;
        match self.index_info(&conn).await? {
            None => Ok(false),
            Some(old) => {
                conn.batch_execute(&format!("DROP INDEX IF EXISTS {}", self.table.in_schema(&old.name))).await?;
                Ok(true)
            }
        }
    }

    pub(crate) async fn rebuild_index_impl(&self, concurrently: bool) -> Result<IndexInfo> {
        let conn = self.checkout().await?;
        let Some(old) = self.index_info(&conn).await? else {
            return Err(Error::invalid("index", "there is no vector index to rebuild; create one first"));
        };
        let c = if concurrently { "CONCURRENTLY " } else { "" };
        conn.batch_execute(BUILD_SETTINGS).await?;
        let built = conn.batch_execute(&format!("REINDEX INDEX {c}{}", self.table.in_schema(&old.name))).await;
        conn.batch_execute(RESET_SETTINGS).await?;
        built?;
        self.index_info(&conn).await?.ok_or_else(|| Error::storage("index disappeared during rebuild"))
    }
}
