//! The embedded file's SQLite schema: the check that a file is ours, connection settings,
//! versioned migrations and the model guard.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};

fn storage(msg: impl Into<String>) -> Error {
    Error::storage(msg)
}

/// SQLite's `application_id` of MarketKing files ("MKst"): a file with another id, or with
/// tables but neither this id nor our meta table, belongs to another program and is refused
/// before anything is written to it.
const APPLICATION_ID: i32 = 0x4D4B_7374;

/// How long a statement waits for a SQLite lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version this build writes; files with a newer version are refused. 2: the FTS5
/// full-text table.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Versioned migrations, applied in order to files whose recorded version is lower.
/// Each one is idempotent (`IF NOT EXISTS`) so a half-recorded migration can rerun safely.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS documents (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         title TEXT NOT NULL,
         content TEXT NOT NULL,
         source TEXT,
         metadata TEXT NOT NULL DEFAULT '{}',
         key TEXT UNIQUE,
         embedding BLOB NOT NULL,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL
     );
     CREATE INDEX IF NOT EXISTS documents_source_idx ON documents (source);",
)];

/// The FTS5 tokenizer of a text search configuration: `english` stems (Porter) like
/// PostgreSQL's `english`; `simple` keeps words as written. Both fold case and diacritics.
fn tokenizer(text_config: &str) -> Result<&'static str> {
    match text_config {
        "english" => Ok("porter unicode61 remove_diacritics 2"),
        "simple" => Ok("unicode61 remove_diacritics 2"),
        other => Err(Error::config(
            "text_search_config",
            format!("the embedded store supports english and simple, not {other:?}"),
        )),
    }
}

/// The full-text index: an FTS5 table over title and content that reads the documents table
/// (external content), kept current by triggers inside each write's own transaction, and
/// filled once from the existing rows.
fn add_full_text(tx: &rusqlite::Transaction<'_>, text_config: &str) -> Result<()> {
    let tokenize = tokenizer(text_config)?;
    tx.execute_batch(&format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS documents_fts USING fts5(
             title, content, content = 'documents', content_rowid = 'id', tokenize = '{tokenize}'
         );
         CREATE TRIGGER IF NOT EXISTS documents_fts_insert AFTER INSERT ON documents BEGIN
             INSERT INTO documents_fts (rowid, title, content) VALUES (new.id, new.title, new.content);
         END;
         CREATE TRIGGER IF NOT EXISTS documents_fts_delete AFTER DELETE ON documents BEGIN
             INSERT INTO documents_fts (documents_fts, rowid, title, content)
                 VALUES ('delete', old.id, old.title, old.content);
         END;
         CREATE TRIGGER IF NOT EXISTS documents_fts_update AFTER UPDATE OF title, content ON documents BEGIN
             INSERT INTO documents_fts (documents_fts, rowid, title, content)
                 VALUES ('delete', old.id, old.title, old.content);
             INSERT INTO documents_fts (rowid, title, content) VALUES (new.id, new.title, new.content);
         END;
         INSERT INTO documents_fts (documents_fts) VALUES ('rebuild');"
    ))?;
    Ok(())
}

/// Refuses a file that is not a MarketKing store: not SQLite at all, or a SQLite database of
/// another program. Reads only; runs before [`configure`] switches the journal mode.
pub(super) fn check_owner(conn: &Connection, path: &Path) -> Result<()> {
    let not_ours = |why: String| {
        storage(format!("{} is not a MarketKing store ({why}); refusing to modify it. Point MARKETKING_DB_PATH (or --db-path) at a new file", path.display()))
    };
    let id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| not_ours(format!("cannot read it as a SQLite database: {e}")))?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    if id != 0 {
        return Err(not_ours(format!("it is a SQLite database of another application, id {id:#x}")));
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // Empty: a new file. With our meta table: a store written before files carried the id.
    if tables.is_empty() || tables.iter().any(|t| t == "marketking_meta") {
        return Ok(());
    }
    let mut list = tables.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if tables.len() > 5 {
        list.push_str(", ...");
    }
    Err(not_ours(format!("it is a SQLite database with other tables: {list}")))
}

/// WAL journal, full fsync on commit, and a busy timeout.
pub(super) fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "the embedded store could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Creates or migrates the schema and checks (or records) the model and dimensions.
pub(super) fn migrate(conn: &mut Connection, path: &Path, model: &str, dims: usize, text_config: &str) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS marketking_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    )?;
    let get = |k: &str| -> Result<Option<String>> {
        Ok(tx.query_row("SELECT value FROM marketking_meta WHERE key = ?1", [k], |r| r.get(0)).optional()?)
    };
    let version: i64 = match get("schema_version")? {
        None => 0,
        Some(v) => v.parse().map_err(|_| storage(format!("{}: invalid schema_version {v:?}", path.display())))?,
    };
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            location: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    match (get("model")?, get("dimensions")?) {
        (Some(stored_model), Some(stored_dims)) => {
            let stored_dimensions: usize = stored_dims
                .parse()
                .map_err(|_| storage(format!("{}: invalid dimensions {stored_dims:?}", path.display())))?;
            if stored_model != model || stored_dimensions != dims {
                return Err(Error::SchemaMismatch {
                    table: path.display().to_string(),
                    stored_model,
                    stored_dimensions,
                    model: model.to_string(),
                    dimensions: dims,
                });
            }
        }
        (None, None) => {
            let mut ins = tx.prepare("INSERT INTO marketking_meta (key, value) VALUES (?1, ?2)")?;
            ins.execute(["model", model])?;
            ins.execute(["dimensions", &dims.to_string()])?;
            ins.execute(["created_at", &Utc::now().to_rfc3339()])?;
        }
        _ => {
            return Err(storage(format!(
                "{}: marketking_meta records only one of model and dimensions; the file is damaged",
                path.display()
            )))
        }
    }
    for (v, sql) in MIGRATIONS {
        if *v > version {
            tx.execute_batch(sql)?;
        }
    }
    if version < 2 {
        add_full_text(&tx, text_config)?;
        tx.execute(
            "INSERT INTO marketking_meta (key, value) VALUES ('text_config', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [text_config],
        )?;
    } else {
        let stored = get("text_config")?.unwrap_or_else(|| crate::store::DEFAULT_TEXT_CONFIG.to_string());
        if stored != text_config {
            return Err(Error::config(
                "text_search_config",
                format!(
                    "{} was created with the text search configuration {stored:?}, not {text_config:?}; \
                     use {stored:?} (MARKETKING_TEXT_CONFIG) or another file",
                    path.display()
                ),
            ));
        }
    }
    tx.execute(
        "INSERT INTO marketking_meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION.to_string()],
    )?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    Ok(())
}
