//! The one place where command-line settings become a core store configuration.

use marketking_core::{StorageConfig, VectorStore};

use crate::args::GlobalArgs;

/// Opens (and migrates) the store. Precedence: flags, then the environment (clap folds
/// `DATABASE_URL`, `MARKETKING_DB_PATH`, `MARKETKING_TABLE` and `REDIS_URL` into the flags; `main`
/// marks `--db-path` on the command line as winning over `DATABASE_URL`), then `marketking.toml`
/// (already applied to `global`), then the core's other `MARKETKING_*` variables, then defaults.
pub(crate) async fn open_store(global: &GlobalArgs) -> anyhow::Result<VectorStore> {
    // `from_env` first: values set after it win over the environment.
    let mut builder = VectorStore::builder().from_env()?;
    if let Some(url) = &global.database_url {
        builder = builder.database_url(url.clone());
    }
    if let Some(path) = &global.db_path {
        builder = match global.embedded_only {
            true => builder.embedded(path.clone()),
            false => builder.db_path(path.clone()),
        };
    }
    if let Some(table) = &global.table {
        builder = builder.table(table.clone());
    }
    if let Some(url) = &global.redis_url {
        builder = builder.redis_url(url.clone());
    }
    let storage = builder.storage();
    let what = match &storage {
        StorageConfig::Postgres { table, .. } => format!("cannot open PostgreSQL table {table}"),
        StorageConfig::Embedded { path } => format!("cannot open embedded store {}", path.display()),
        _ => "cannot open the store".to_string(),
    };
    tracing::debug!(?storage, "opening store");
    let store = match builder.build().await {
        Ok(store) => store,
        // A setting is wrong (the error names it): not a problem of the store itself.
        Err(e @ marketking_core::Error::Config { .. }) => return Err(e.into()),
        Err(e) => return Err(anyhow::Error::new(e).context(what)),
    };
    tracing::debug!(backend = store.backend_kind(), dimensions = store.dimensions(), "store open");
    Ok(store)
}
