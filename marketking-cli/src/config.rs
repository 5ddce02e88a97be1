//! The one place where command-line settings become a core store configuration.

use marketking_core::{StorageConfig, VectorStore, VectorStoreBuilder};

use crate::args::GlobalArgs;

/// What a command does with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: an existing embedded file is opened read-only, so the command works while
    /// another process (the HTTP service) has the file open for writing.
    Read,
    /// May write: the embedded file is opened (created, migrated) for writing, which fails with
    /// "already open in process N" while another writer has it.
    Write,
}

/// Opens the store. Precedence: flags, then the environment (clap folds
/// `DATABASE_URL`, `MARKETKING_DB_PATH`, `MARKETKING_TABLE` and `REDIS_URL` into the flags; `main`
/// marks `--db-path` on the command line as winning over `DATABASE_URL`), then `marketking.toml`
/// (already applied to `global`), then the core's other `MARKETKING_*` variables, then defaults.
///
/// For [`Access::Read`] an existing embedded file is opened read-only. A missing file, or one
/// an older release wrote, is opened for writing as every command did before: created empty,
/// or migrated (no writer can have it open then, or it would exist and be current).
pub(crate) async fn open_store(global: &GlobalArgs, access: Access) -> anyhow::Result<VectorStore> {
    let storage = builder(global)?.storage();
    let read_only = access == Access::Read && matches!(&storage, StorageConfig::Embedded { path } if path.is_file());
    let what = match &storage {
        StorageConfig::Postgres { table, .. } => format!("cannot open PostgreSQL table {table}"),
        StorageConfig::Embedded { path } => format!("cannot open embedded store {}", path.display()),
        _ => "cannot open the store".to_string(),
    };
    tracing::debug!(?storage, read_only, "opening store");
    let opened = match builder(global)?.read_only(read_only).build().await {
        Err(marketking_core::Error::NeedsMigration { found, current, .. }) if read_only => {
            tracing::debug!(found, current, "the file needs migrating; opening it for writing");
            builder(global)?.build().await
        }
        other => other,
    };
    let store = match opened {
        Ok(store) => store,
        // A setting is wrong (the error names it): not a problem of the store itself.
        Err(e @ marketking_core::Error::Config { .. }) => return Err(e.into()),
        Err(e) => return Err(anyhow::Error::new(e).context(what)),
    };
    tracing::debug!(backend = store.backend_kind(), dimensions = store.dimensions(), read_only, "store open");
    Ok(store)
}

/// The core builder for these settings (see [`open_store`] for the precedence).
fn builder(global: &GlobalArgs) -> anyhow::Result<VectorStoreBuilder> {
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
    Ok(builder)
}
