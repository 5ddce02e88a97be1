//! Versioned, idempotent migrations, safe when several processes start at once.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::ident::quote_ident;
use super::TableName;
use crate::error::{Error, Result};
use crate::search_mode::WORD_BREAKS;
use crate::store::DEFAULT_TEXT_CONFIG;

/// The schema version this code writes and understands. 2: the full-text column `tsv`. 3: `tsv`
/// splits words at [`WORD_BREAKS`]. 4: `text_len`, each row's length for BM25. From version 2
/// on, existing rows are filled again by the current trigger, online.
pub(crate) const SCHEMA_VERSION: i32 = 4;

/// SQL that splits `expr` (text) into words at [`WORD_BREAKS`] before `to_tsvector`.
pub(super) fn split_words(expr: &str) -> String {
    format!("translate({expr}, '{WORD_BREAKS}', '{}')", " ".repeat(WORD_BREAKS.len()))
}

/// What migration learned about the server.
#[derive(Debug)]
pub(crate) struct SchemaInfo {
    pub(crate) vector_oid: u32,
    pub(crate) vector_schema: String,
    pub(crate) extension_version: (u32, u32),
    /// The table's text search configuration (`english`, `simple`...).
    pub(crate) text_config: String,
    /// The schema of the `rum` extension, when the table has its RUM index over `tsv`
    /// ([`ensure_rum`]): the text leg then ranks its candidates inside that index.
    pub(crate) rum_schema: Option<String>,
}

/// Vectors are stored inline (`STORAGE PLAIN`) while a row still fits a page comfortably: the
/// planner does not count TOAST reads, and inline vectors make exact scans and index builds
/// markedly faster. Above this size PostgreSQL must be free to move the vector out of line.
const MAX_PLAIN_DIMS: usize = 1800;

/// Creates the extension, the metadata table and the documents table, or checks that the
/// existing table was made for this model and dimension count.
pub(crate) async fn migrate(
    client: &mut Client,
    table: &TableName,
    model: &str,
    dims: usize,
    text_config: &str,
    rum: bool,
) -> Result<SchemaInfo> {
    let tx = client.transaction().await?;
    // One advisory lock serialises concurrent migrations, across tables too: CREATE EXTENSION
    // and CREATE TABLE IF NOT EXISTS still race on the catalog without it. Held to commit.
    tx.batch_execute("SELECT pg_advisory_xact_lock(hashtextextended('marketking:migrate', 0))").await?;

    let ext = tx.query_opt("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[]).await?;
    if ext.is_none() {
        if let Err(e) = tx.batch_execute("CREATE EXTENSION IF NOT EXISTS vector").await {
            let detail = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
            return Err(Error::ExtensionMissing { detail });
        }
    }
    let version: String =
        tx.query_one("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[]).await?.try_get(0)?;
    let row = tx
        .query_one(
            "SELECT t.oid, n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
             JOIN pg_extension e ON e.extnamespace = n.oid AND e.extname = 'vector' WHERE t.typname = 'vector'",
            &[],
        )
        .await?;
    let vector_oid: u32 = row.try_get(0)?;
    let vector_schema: String = row.try_get(1)?;

    if let Some(schema) = table.quoted_schema() {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await?;
    }
    let meta = table.meta_table();
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {meta} (
            table_name text PRIMARY KEY,
            schema_version integer NOT NULL,
            model text NOT NULL,
            dimensions integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE {meta} ADD COLUMN IF NOT EXISTS text_config text;
        ALTER TABLE {meta} ADD COLUMN IF NOT EXISTS text_refill_after bigint;
        ALTER TABLE {meta} ADD COLUMN IF NOT EXISTS text_filled boolean;
        CREATE TABLE IF NOT EXISTS {checkpoints} (
            table_name text NOT NULL,
            name text NOT NULL,
            report jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_name, name)
        )",
        checkpoints = table.checkpoint_table(),
    ))
    .await?;
    let mut existing = tx
        .query_opt(
            &format!("SELECT schema_version, model, dimensions, text_config FROM {meta} WHERE table_name = $1"),
            &[&table.table],
        )
        .await?;
    let table_exists: bool =
        tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()]).await?.try_get(0)?;
    if existing.is_some() && !table_exists {
        // The table was dropped by hand (a reset) and its meta row stayed: nothing is left to
        // keep, so it is created again, for this model and these dimensions.
        tracing::info!(table = %table.display(), "table was dropped; creating it again");
        tx.execute(&format!("DELETE FROM {meta} WHERE table_name = $1"), &[&table.table]).await?;
        existing = None;
    }
    let text: String;
    match existing {
        Some(row) => {
            let stored_version: i32 = row.try_get(0)?;
            let stored_model: String = row.try_get(1)?;
            let stored_dims: i32 = row.try_get(2)?;
            if stored_model != model || stored_dims as usize != dims {
                return Err(Error::SchemaMismatch {
                    table: table.display(),
                    stored_model,
                    stored_dimensions: stored_dims as usize,
                    model: model.to_string(),
                    dimensions: dims,
                });
            }
            if stored_version > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew {
                    location: table.display(),
                    found: i64::from(stored_version),
                    supported: i64::from(SCHEMA_VERSION),
                });
            }
            // Migrations, one version at a time, inside this transaction.
            if stored_version < 2 {
                check_text_config(&tx, text_config).await?;
                add_text_column(&tx, table, text_config).await?;
                tx.execute(
                    &format!(
                        "UPDATE {meta} SET schema_version = 2, text_config = $2, text_filled = false, updated_at = now() \
                         WHERE table_name = $1"
                    ),
                    &[&table.table, &text_config],
                )
                .await?;
                text = text_config.to_string();
            } else {
                text = row.try_get::<_, Option<String>>(3)?.unwrap_or_else(|| DEFAULT_TEXT_CONFIG.into());
                if text != text_config {
                    return Err(Error::config(
                        "text_search_config",
                        format!(
                            "{} was created with the text search configuration {text:?}, not {text_config:?}; \
                             use {text:?} (MARKETKING_TEXT_CONFIG) or another table",
                            table.display()
                        ),
                    ));
                }
            }
            if stored_version < SCHEMA_VERSION {
                // The current trigger (words split at WORD_BREAKS, the row's length in
                // `text_len`); rows filled by an older trigger (versions 2 and 3) are filled
                // again after commit, in short transactions (`text_refill_after` remembers how
                // far, so an interrupted refill resumes). A version 1 table has no filled rows
                // yet: its backfill uses the new trigger.
                add_text_column(&tx, table, &text).await?;
                let refill = (stored_version >= 2).then_some(i64::MIN);
                tx.execute(
                    &format!(
                        "UPDATE {meta} SET schema_version = $3, text_refill_after = $2, updated_at = now() WHERE table_name = $1"
                    ),
                    &[&table.table, &refill, &SCHEMA_VERSION],
                )
                .await?;
            }
        }
        None => {
            let t = table.quoted();
            if table_exists {
                return Err(Error::config(
                    "table",
                    format!(
                        "{} exists but was not created by marketking (no row in marketking_meta); pick another table name",
                        table.display()
                    ),
                ));
            }
            check_text_config(&tx, text_config).await?;
            let storage = if dims <= MAX_PLAIN_DIMS {
                format!("ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE PLAIN;")
            } else {
                String::new()
            };
            tx.batch_execute(&format!(
                "CREATE TABLE {t} (
                    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                    title varchar(255) NOT NULL,
                    content text NOT NULL,
                    source varchar(255),
                    metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                    key text UNIQUE,
                    embedding {vs}.vector({dims}) NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                );
                {storage}",
                vs = quote_ident(&vector_schema),
            ))
            .await?;
            add_text_column(&tx, table, text_config).await?;
            // An empty table: the index is built at once, in this transaction.
            tx.batch_execute(&format!("CREATE INDEX {} ON {t} USING gin (tsv)", table.sibling("tsv_idx"))).await?;
            tx.batch_execute(&super::metadata_index::create_sql(table)).await?;
            tx.execute(
                &format!(
                    "INSERT INTO {meta} (table_name, schema_version, model, dimensions, text_config, text_filled) \
                     VALUES ($1, $2, $3, $4, $5, true)"
                ),
                &[&table.table, &SCHEMA_VERSION, &model, &(dims as i32), &text_config],
            )
            .await?;
            text = text_config.to_string();
        }
    }
    tx.commit().await.map_err(|e| match e.code() {
        Some(c) if c == &SqlState::T_R_SERIALIZATION_FAILURE => {
            Error::Database { message: "concurrent migration; retry".into(), code: Some(c.code().into()), source: None }
        }
        _ => e.into(),
    })?;
    // The walks below run the full-text trigger once per row: with the connection's
    // `force_custom_plan` its statement was planned again for every row (see write.rs).
    client.batch_execute("SET plan_cache_mode = auto").await?;
    let filled = finish_text_index(client, table, &text).await;
    client.batch_execute("SET plan_cache_mode = force_custom_plan").await?;
    filled?;
    super::metadata_index::ensure(client, table).await?;
    let rum_schema = if rum { ensure_rum(client, table).await? } else { None };
    Ok(SchemaInfo {
        vector_oid,
        vector_schema,
        extension_version: parse_version(&version),
        text_config: text,
        rum_schema,
    })
}

/// Rows whose `tsv` a backfill transaction computes at a time.
const BACKFILL_ROWS: i64 = 5_000;

/// Checks `name` is a text search configuration of the server. It is written into the
/// trigger function's text, so only identifier characters are accepted, besides it existing.
async fn check_text_config(tx: &tokio_postgres::Transaction<'_>, name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let exists = plain
        && tx
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = $1)", &[&name])
            .await?
            .try_get::<_, bool>(0)?;
    if !exists {
        return Err(Error::config(
            "text_search_config",
            format!("{name:?} is not a text search configuration of this server (for example english or simple)"),
        ));
    }
    Ok(())
}

/// The full-text column and the trigger that keeps it current. A plain column maintained by a
/// trigger, not a generated one: adding a generated column rewrites the whole table under an
/// exclusive lock, while `ADD COLUMN` without a default is instant; existing rows are filled
/// afterwards in short transactions ([`finish_text_index`]). Title weighs A, content B.
/// `text_len` is the row's length for BM25: its last word position (stop words count, as in
/// FTS5), kept so that a small table's mean length is the average of one column rather than a
/// read of every `tsvector`.
async fn add_text_column(tx: &tokio_postgres::Transaction<'_>, table: &TableName, text_config: &str) -> Result<()> {
    let t = table.quoted();
    let function = table.in_schema(&format!("{}_tsv", table.table));
    let trigger = table.sibling("tsv_trg");
    // `text_config` was checked by `check_text_config`: identifier characters only.
    tx.batch_execute(&format!(
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS tsv tsvector;
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS text_len integer;
         CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             NEW.tsv := setweight(to_tsvector('{text_config}'::regconfig, {title}), 'A')
                     || setweight(to_tsvector('{text_config}'::regconfig, {content}), 'B');
             NEW.text_len := (SELECT coalesce(max(u.positions[cardinality(u.positions)]), 0) FROM unnest(NEW.tsv) u);
             RETURN NEW;
         END $fn$;
         DROP TRIGGER IF EXISTS {trigger} ON {t};
         CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OF title, content ON {t}
             FOR EACH ROW EXECUTE FUNCTION {function}();",
        title = split_words("NEW.title"),
        content = split_words("NEW.content"),
    ))
    .await?;
    Ok(())
}

/// Fills `tsv` of rows written before the column existed, a few thousand rows per transaction
/// (row locks only, writers keep going), then builds the GIN index `CONCURRENTLY` (no lock that
/// blocks writes). Idempotent: an interrupted run is finished by the next open, and an invalid
/// index left by an interrupted concurrent build is dropped and built again. Once every row is
/// filled the table's `text_filled` says so and later opens skip the search for unfilled rows
/// (a walk of the whole table: 0.4-1.1 s at 100k rows); the trigger fills every row written
/// after. NULL (a table from before the marker) is checked once.
async fn finish_text_index(client: &Client, table: &TableName, text_config: &str) -> Result<()> {
    let t = table.quoted();
    let meta = table.meta_table();
    let marks = client
        .query_opt(&format!("SELECT text_filled, text_refill_after FROM {meta} WHERE table_name = $1"), &[&table.table])
        .await?;
    let filled = marks.as_ref().map(|r| r.try_get::<_, Option<bool>>(0)).transpose()?.flatten() == Some(true);
    let mut refill: Option<i64> = marks.as_ref().map(|r| r.try_get(1)).transpose()?.flatten();
    // Walks the primary key (each batch starts after the last id done), so a batch never
    // rescans the rows already filled. The trigger recomputes `tsv` on this UPDATE of title.
    if !filled {
        let mut after: i64 = i64::MIN;
        loop {
            let row = client
                .query_one(
                    &format!(
                        "WITH done AS (UPDATE {t} SET title = title WHERE id IN \
                         (SELECT id FROM {t} WHERE id > $1 AND tsv IS NULL ORDER BY id LIMIT $2) RETURNING id) \
                         SELECT count(*), max(id) FROM done"
                    ),
                    &[&after, &BACKFILL_ROWS],
                )
                .await?;
            let n: i64 = row.try_get(0)?;
            match row.try_get::<_, Option<i64>>(1)? {
                Some(last) if n > 0 => after = last,
                _ => break,
            }
            tracing::info!(table = %table.display(), rows = n, text_config, "full-text column filled for existing rows");
        }
        client.execute(&format!("UPDATE {meta} SET text_filled = true WHERE table_name = $1"), &[&table.table]).await?;
    }
    // Rows filled by an older trigger (a version 2 table): computed again with the current one,
    // a batch per statement, which also moves the table's marker on (NULL when done).
    while let Some(after) = refill {
        let row = client
            .query_one(
                &format!(
                    "WITH done AS (UPDATE {t} SET title = title WHERE id IN \
                     (SELECT id FROM {t} WHERE id > $1 ORDER BY id LIMIT $2) RETURNING id), \
                     m AS (UPDATE {meta} SET text_refill_after = CASE WHEN (SELECT count(*) FROM done) < $2 THEN NULL \
                           ELSE (SELECT max(id) FROM done) END WHERE table_name = $3) \
                     SELECT count(*), max(id) FROM done"
                ),
                &[&after, &BACKFILL_ROWS, &table.table],
            )
            .await?;
        let n: i64 = row.try_get(0)?;
        tracing::info!(table = %table.display(), rows = n, text_config, "full-text column recomputed by the current trigger");
        refill = match row.try_get::<_, Option<i64>>(1)? {
            Some(last) if n == BACKFILL_ROWS => Some(last),
            _ => None,
        };
    }
    super::metadata_index::ensure_index(client, table, "tsv_idx", "gin (tsv)").await?;
    Ok(())
}

/// The RUM index over `tsv` (`<table>_tsv_rum_idx`), when the server has the `rum` extension
/// (Debian's `postgresql-NN-rum`): a GIN-like index that keeps each lexeme's positions, so
/// `ORDER BY tsv <=> query LIMIT n` ranks inside the index instead of reading and ranking every
/// matching row. Optional: without the extension (or the right to create it) the text leg
/// ranks its candidates from the GIN index, and this returns `None`. Built `CONCURRENTLY`,
/// like the other indexes, so adding it to a large existing table never blocks writers.
async fn ensure_rum(client: &Client, table: &TableName) -> Result<Option<String>> {
    async fn installed(client: &Client) -> Result<Option<String>> {
        let row = client
            .query_opt(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'rum'",
                &[],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
    let schema = match installed(client).await? {
        Some(schema) => schema,
        None => {
            let available =
                client.query_opt("SELECT 1 FROM pg_available_extensions WHERE name = 'rum'", &[]).await?.is_some();
            if !available {
                return Ok(None);
            }
            // Needs a superuser (RUM is not a trusted extension); a concurrent creator winning
            // the race fails this statement but leaves the extension installed.
            let created = client.batch_execute("CREATE EXTENSION IF NOT EXISTS rum").await;
            match (installed(client).await?, created) {
                (Some(schema), _) => schema,
                (None, Err(e)) => {
                    let detail = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
                    tracing::info!(%detail, "the rum extension is available but could not be created: full-text ranking uses the GIN index");
                    return Ok(None);
                }
                (None, Ok(())) => return Ok(None),
            }
        }
    };
    let using = format!("rum (tsv {}.rum_tsvector_ops)", quote_ident(&schema));
    if super::metadata_index::ensure_index(client, table, "tsv_rum_idx", &using).await? {
        tracing::info!(table = %table.display(), "full-text RUM index built");
    }
    Ok(Some(schema))
}

fn parse_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}
