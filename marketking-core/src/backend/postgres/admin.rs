//! Indexes and statistics.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{with_read, with_retry, PgBackend};
use crate::backend::{IndexInfo, IndexKind, IndexSpec, Quantization, SourceCount, StorageStats, TunedSettings};
use crate::error::{Error, Result};

const INDEX_SUFFIX: &str = "embedding_idx";
const RESET_SETTINGS: &str = "RESET maintenance_work_mem; RESET max_parallel_maintenance_workers";

/// How often a search re-reads which form the table's vector index has, so an index that
/// another process builds or drops is used (or no longer expected) here within this time.
const INDEX_FORM_TTL: Duration = Duration::from_secs(60);

/// The table's vector index as last read from the catalog: its quantization (a search's vector
/// leg must order by the index's own expression for the planner to use it) and its tuned
/// search settings.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Form {
    pub(crate) quantization: Quantization,
    pub(crate) tuned: Option<TunedSettings>,
}

impl Form {
    fn of(info: Option<&IndexInfo>) -> Self {
        info.map_or_else(Form::default, |i| Form { quantization: i.quantization, tuned: i.tuned })
    }
}

#[derive(Debug)]
pub(crate) struct IndexForm(Mutex<(Form, Instant)>);

impl IndexForm {
    pub(crate) fn new() -> Self {
        IndexForm(Mutex::new((Form::default(), Instant::now())))
    }

    pub(super) fn set(&self, info: Option<&IndexInfo>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (Form::of(info), Instant::now());
    }

    /// The form, and whether it is older than [`INDEX_FORM_TTL`].
    fn get(&self) -> (Form, bool) {
        let (f, at) = *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (f, at.elapsed() > INDEX_FORM_TTL)
    }
}

/// What an index's comment starts with when it holds tuned settings (JSON follows).
const TUNED_PREFIX: &str = "marketking tuned: ";

/// The session settings of a build: an index build is much faster when the graph fits in
/// `maintenance_work_mem`; one parallel worker plus the leader uses both cores of a small
/// machine. (Validated integers, see [`IndexSpec::validate`], so formatting them in is safe.)
fn build_settings(spec: &IndexSpec) -> String {
    let memory = spec.build_memory_mb.unwrap_or(crate::backend::DEFAULT_BUILD_MEMORY_MB);
    let workers = spec.parallel_workers.unwrap_or(crate::backend::DEFAULT_BUILD_WORKERS);
    format!("SET maintenance_work_mem = '{memory}MB'; SET max_parallel_maintenance_workers = {workers}")
}

/// The expression an index in this form is built over, and its operator class.
fn index_expr(q: Quantization, dims: usize) -> (String, &'static str) {
    match q {
        Quantization::None => ("embedding".into(), "vector_cosine_ops"),
        Quantization::Half => (format!("(embedding::halfvec({dims}))"), "halfvec_cosine_ops"),
        Quantization::Binary => (format!("(binary_quantize(embedding)::bit({dims}))"), "bit_hamming_ops"),
    }
}

/// The distance a search orders by to use an index in this form, for the query vector `v` (a
/// parameter placeholder).
pub(super) fn order_expr(q: Quantization, dims: usize, v: &str) -> String {
    match q {
        Quantization::None => format!("embedding <=> {v}"),
        Quantization::Half => format!("embedding::halfvec({dims}) <=> {v}::halfvec({dims})"),
        Quantization::Binary => {
            format!("binary_quantize(embedding)::bit({dims}) <~> binary_quantize({v})::bit({dims})")
        }
    }
}

impl PgBackend {
    /// The table's vector index form, read again from the catalog when the cached one is older
    /// than a minute (a failed read keeps the cached one).
    pub(super) async fn index_form(&self) -> Form {
        let (f, stale) = self.index_form.get();
        if !stale {
            return f;
        }
        let read = async { self.index_info(&*self.checkout().await?).await };
        match read.await {
            Ok(info) => {
                self.index_form.set(info.as_ref());
                Form::of(info.as_ref())
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not re-read the vector index's form; keeping the cached one");
                f
            }
        }
    }

    /// Writes `tuned` into the vector index's comment (or clears it), so every store on this
    /// table uses it and it goes with the index.
    pub(crate) async fn set_tuned_impl(&self, tuned: Option<&TunedSettings>) -> Result<IndexInfo> {
        let conn = self.checkout().await?;
        let Some(old) = self.index_info(&conn).await? else {
            return Err(Error::invalid(
                "index",
                "there is no vector index to keep tuned settings with; create one first",
            ));
        };
        let comment = tuned
            .map(|t| serde_json::to_string(t).map(|j| format!("{TUNED_PREFIX}{j}")))
            .transpose()
            .map_err(|e| Error::storage(format!("tuned settings do not serialize: {e}")))?;
        // COMMENT takes no parameters: the server quotes the name and the text.
        let name = self.table.in_schema(&old.name);
        let sql: String = conn
            .query_one("SELECT format('COMMENT ON INDEX %s IS %L', $1::text, $2::text)", &[&name, &comment])
            .await?
            .try_get(0)?;
        conn.batch_execute(&sql).await?;
        let info = self.index_info(&conn).await?.ok_or_else(|| Error::storage("index disappeared while tuning"))?;
        self.index_form.set(Some(&info));
        Ok(info)
    }

    /// Up to `n` ids and vectors, spread over the table by a hash of the id (the same rows on
    /// every call while the table does not change).
    pub(crate) async fn sample_vectors_impl(&self, n: usize) -> Result<Vec<(i64, Vec<f32>)>> {
        let t = &self.sql.table;
        let n = n as i64;
        with_retry!(self, |conn| {
            let rows = conn
                .query(
                    &format!(
                        "SELECT id, embedding FROM {t} WHERE id IN \
                         (SELECT id FROM {t} ORDER BY hashint8extended(id, 20261205), id LIMIT $1) ORDER BY id"
                    ),
                    &[&n],
                )
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<_, i64>(0)?, r.try_get::<_, pgvector::Vector>(1)?.to_vec())))
                .collect::<Result<Vec<_>>>()
        })
    }

    /// The vector index on the table, if any (any hnsw/ivfflat index on it counts).
    pub(super) async fn index_info(&self, conn: &Client) -> Result<Option<IndexInfo>> {
        let row = conn
            .query_opt(
                "SELECT c.relname::text, am.amname::text, coalesce(c.reloptions, '{}')::text[], pg_relation_size(c.oid), \
                 opc.opcname::text, obj_description(c.oid, 'pg_class') \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
                 JOIN pg_opclass opc ON opc.oid = i.indclass[0] \
                 WHERE i.indrelid = to_regclass($1) AND am.amname IN ('hnsw', 'ivfflat') \
                 ORDER BY i.indisvalid DESC, c.relname LIMIT 1",
                &[&self.sql.table],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let am: String = r.try_get(1)?;
        let opts: Vec<String> = r.try_get(2)?;
        let quantization = match r.try_get::<_, String>(4)?.as_str() {
            "halfvec_cosine_ops" => Quantization::Half,
            "bit_hamming_ops" => Quantization::Binary,
            _ => Quantization::None,
        };
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
        // A comment someone else wrote, or one that does not parse, is no tuning.
        let tuned = r
            .try_get::<_, Option<String>>(5)?
            .and_then(|c| c.strip_prefix(TUNED_PREFIX).and_then(|j| serde_json::from_str(j).ok()));
        Ok(Some(IndexInfo {
            name: r.try_get(0)?,
            kind,
            quantization,
            bytes: r.try_get::<_, i64>(3)?.max(0) as u64,
            tuned,
        }))
    }

    pub(crate) async fn stats_impl(&self) -> Result<StorageStats> {
        with_read!(self, None, |conn| self.stats_on(&conn).await)
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
        let q = spec.quantization;
        if self.dims > q.max_dimensions() {
            return Err(Error::invalid(
                "quantization",
                format!(
                    "an index with quantization {q} holds up to {} dimensions and this table's vectors have {}{}",
                    q.max_dimensions(),
                    self.dims,
                    if self.dims <= Quantization::Binary.max_dimensions() {
                        "; quantization half (up to 4000) or binary (up to 64000) index more"
                    } else {
                        ""
                    }
                ),
            ));
        }
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
            self.index_form.set(None);
        }
        let concurrently = if spec.concurrently { "CONCURRENTLY " } else { "" };
        // Separate statements: several in one simple query form an implicit transaction, where
        // CONCURRENTLY is not allowed.
        conn.batch_execute(&build_settings(spec)).await?;
        let (expr, ops) = index_expr(q, self.dims);
        let built = conn
            .batch_execute(&format!(
                "CREATE INDEX {concurrently}{name} ON {t} USING {method} ({expr} {ops}) WITH ({with})",
                name = self.table.sibling(INDEX_SUFFIX)
            ))
            .await;
        conn.batch_execute(RESET_SETTINGS).await?;
        let info = match built {
            Ok(()) => self.index_info(&conn).await?,
            Err(e) => {
                // Whatever is left (an invalid concurrent build, or nothing) decides the form.
                self.index_form.set(self.index_info(&conn).await.ok().flatten().as_ref());
                return Err(e.into());
            }
        };
        let info = info.ok_or_else(|| Error::storage("index was created but cannot be found"))?;
        self.index_form.set(Some(&info));
        Ok(info)
    }

    pub(crate) async fn drop_index_impl(&self) -> Result<bool> {
        let conn = self.checkout().await?;
        match self.index_info(&conn).await? {
            None => Ok(false),
            Some(old) => {
                conn.batch_execute(&format!("DROP INDEX IF EXISTS {}", self.table.in_schema(&old.name))).await?;
                self.index_form.set(None);
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
        conn.batch_execute(&build_settings(&IndexSpec::default())).await?;
        let built = conn.batch_execute(&format!("REINDEX INDEX {c}{}", self.table.in_schema(&old.name))).await;
        conn.batch_execute(RESET_SETTINGS).await?;
        built?;
        self.index_info(&conn).await?.ok_or_else(|| Error::storage("index disappeared during rebuild"))
    }
}
