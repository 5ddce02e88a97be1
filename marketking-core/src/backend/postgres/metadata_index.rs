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
/// valid, building it `CONCURRENTLY` (no lock that blocks writes) when it does not; an invalid
/// index left by an interrupted concurrent build is dropped and built again. Returns whether
/// this call built it. The one home of that dance (the metadata and full-text indexes all use
/// it).
///
/// Builders of one index take turns on a session advisory lock (polled, see below): two
/// concurrent builds of the same index fail one another ("tuple concurrently updated"), and an
/// index another process is still building looks invalid, so without the lock this would drop
/// it. A process that waited finds the index valid and returns. The lock goes with the session
/// if the connection dies.
pub(super) async fn ensure_index(client: &Client, table: &TableName, suffix: &str, using: &str) -> Result<bool> {
    let t = table.quoted();
    let index = format!("{}_{suffix}", table.table);
    if valid(client, &t, &index).await? == Some(true) {
        return Ok(false);
    }
    let key = format!("marketking:index:{t}.{index}");
    // Polled, never waited for inside a statement: `CREATE INDEX CONCURRENTLY` waits for every
    // running transaction, a blocked `pg_advisory_lock` call among them (a deadlock).
    loop {
        let got: bool =
            client.query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&key]).await?.try_get(0)?;
        if got {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if valid(client, &t, &index).await? == Some(true) {
            return Ok(false);
        }
    }
    let built = build_locked(client, table, &t, &index, suffix, using).await;
    let unlocked = client.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", &[&key]).await;
    let built = built?;
    unlocked?;
    Ok(built)
}

/// [`ensure_index`] under its lock.
async fn build_locked(
    client: &Client,
    table: &TableName,
    t: &str,
    index: &str,
    suffix: &str,
    using: &str,
) -> Result<bool> {
    match valid(client, t, index).await? {
        Some(true) => return Ok(false),
        Some(false) => {
            client.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {}", table.in_schema(index))).await?
        }
        None => {}
    }
    client
        .batch_execute(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {t} USING {using}",
            table.sibling(suffix)
        ))
        .await?;
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
