//! The GIN index on `metadata` (`jsonb_path_ops`), which answers the filter language's equality
//! conditions (`metadata @@ '$."a" == 1'`, `$in`) and the `metadata` containment option (`@>`).
//!
//! A new table gets it in its creating transaction; an existing table without it gets it
//! `CONCURRENTLY` after migration (no lock that blocks writes), like the full-text index. No
//! schema version: the index changes no data and older code ignores it.

use tokio_postgres::Client;

use super::TableName;
use crate::error::Result;

/// The index's name suffix (`<table>_metadata_idx`).
const SUFFIX: &str = "metadata_idx";

/// `CREATE INDEX` for the table (inside the creating transaction).
pub(super) fn create_sql(table: &TableName) -> String {
    format!("CREATE INDEX {} ON {} USING gin (metadata jsonb_path_ops)", table.sibling(SUFFIX), table.quoted())
}

/// Builds the index when the table lacks it (or has an invalid one, left by an interrupted
/// concurrent build). Idempotent; a concurrent builder that wins the race is fine.
pub(super) async fn ensure(client: &Client, table: &TableName) -> Result<()> {
    if ensure_index(client, table, SUFFIX, "gin (metadata jsonb_path_ops)").await? {
        tracing::info!(table = %table.display(), "metadata GIN index built");
    }
    Ok(())
}

/// Makes sure the index `<table>_<suffix>` (`USING {using}`, e.g. `gin (tsv)`) exists and is
/// valid, building it
/// `CONCURRENTLY` (no lock that blocks writes) when it does not; an invalid index left by an
/// interrupted concurrent build is dropped and built again; another process winning the race
/// is fine. Returns whether this call built it. The one home of that dance (the metadata and
/// full-text indexes all use it).
pub(super) async fn ensure_index(client: &Client, table: &TableName, suffix: &str, using: &str) -> Result<bool> {
    let t = table.quoted();
    let index = format!("{}_{suffix}", table.table);
    match valid(client, &t, &index).await? {
        Some(true) => return Ok(false),
        Some(false) => {
            client.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {}", table.in_schema(&index))).await?
        }
        None => {}
    }
    let built = client
        .batch_execute(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {t} USING {using}",
            table.sibling(suffix)
        ))
        .await;
    if let Err(e) = built {
        if valid(client, &t, &index).await? != Some(true) {
            return Err(e.into());
        }
    }
    Ok(true)
}

/// Whether the table has the index and it is valid (`None`: no such index).
async fn valid(client: &Client, table: &str, index: &str) -> Result<Option<bool>> {
    let row = client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass($1) AND c.relname = $2",
            &[&table, &index],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}
