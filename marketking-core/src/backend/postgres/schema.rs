//! Versioned, idempotent migrations, safe when several processes start at once.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::ident::quote_ident;
use super::TableName;
use crate::error::{Error, Result};

/// The schema version this code writes and understands.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// What migration learned about the server.
#[derive(Debug)]
pub(crate) struct SchemaInfo {
    pub(crate) vector_oid: u32,
    pub(crate) vector_schema: String,
    pub(crate) extension_version: (u32, u32),
}

/// Vectors are stored inline (`STORAGE PLAIN`) while a row still fits a page comfortably: the
/// planner does not count TOAST reads, and inline vectors make exact scans and index builds
/// markedly faster. Above this size PostgreSQL must be free to move the vector out of line.
const MAX_PLAIN_DIMS: usize = 1800;

/// Creates the extension, the metadata table and the documents table, or checks that the
/// existing table was made for this model and dimension count.
pub(crate) async fn migrate(client: &mut Client, table: &TableName, model: &str, dims: usize) -> Result<SchemaInfo> {
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
        )"
    ))
    .await?;
    let mut existing = tx
        .query_opt(
            &format!("SELECT schema_version, model, dimensions FROM {meta} WHERE table_name = $1"),
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
            // Future migrations run here, one version at a time, inside this transaction.
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
            tx.execute(
                &format!("INSERT INTO {meta} (table_name, schema_version, model, dimensions) VALUES ($1, $2, $3, $4)"),
                &[&table.table, &SCHEMA_VERSION, &model, &(dims as i32)],
            )
            .await?;
        }
    }
    tx.commit().await.map_err(|e| match e.code() {
        Some(c) if c == &SqlState::T_R_SERIALIZATION_FAILURE => {
            Error::Database { message: "concurrent migration; retry".into(), code: Some(c.code().into()), source: None }
        }
        _ => e.into(),
    })?;
    Ok(SchemaInfo { vector_oid, vector_schema, extension_version: parse_version(&version) })
}

fn parse_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}
