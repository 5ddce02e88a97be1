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
/// full-text table. 3: the FTS5 table indexes PostgreSQL's lexemes (`lexemes.rs`), not its
/// own `porter` tokens (rebuilt on open).
pub(super) const SCHEMA_VERSION: i64 = 3;

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

/// The SQL function the full-text triggers call: `marketking_lexemes(text, config)` is what the
/// FTS5 table indexes for a column ([`super::lexemes::indexed`]). Registered on the store's
/// connection before anything else runs on it; another program that writes to the documents
/// table without it fails ("no such function") rather than leaving the index stale.
pub(super) fn register_functions(conn: &Connection) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "marketking_lexemes",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| {
            let text = ctx.get_raw(0).as_str_or_null().map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            let english = ctx.get::<String>(1)? == "english";
            Ok(text.map(|t| super::lexemes::indexed(t, english)))
        },
    )?;
    Ok(())
}

/// Checks the text search configuration: the embedded store has `english` and `simple`.
fn check_text_config(text_config: &str) -> Result<()> {
    match text_config {
        "english" | "simple" => Ok(()),
        other => Err(Error::config(
            "text_search_config",
            format!("the embedded store supports english and simple, not {other:?}"),
        )),
    }
}

/// The full-text index: a contentless FTS5 table over the lexemes of title and content
/// ([`register_functions`]), kept current by triggers inside each write's own transaction
/// (a deletion hands FTS5 the same lexemes again), and filled from the existing rows. An older
/// table (FTS5's own `porter` tokens) is dropped first.
fn add_full_text(tx: &rusqlite::Transaction<'_>, text_config: &str) -> Result<()> {
    check_text_config(text_config)?;
    let lex = |col: &str| format!("marketking_lexemes({col}, '{text_config}')");
    tx.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS documents_fts_insert;
         DROP TRIGGER IF EXISTS documents_fts_delete;
         DROP TRIGGER IF EXISTS documents_fts_update;
         DROP TABLE IF EXISTS documents_fts;
         CREATE VIRTUAL TABLE documents_fts USING fts5(
             title, content, content = '', tokenize = \"unicode61 remove_diacritics 0 tokenchars '_'\"
         );
         CREATE TRIGGER documents_fts_insert AFTER INSERT ON documents BEGIN
             INSERT INTO documents_fts (rowid, title, content) VALUES (new.id, {new_title}, {new_content});
         END;
         CREATE TRIGGER documents_fts_delete AFTER DELETE ON documents BEGIN
             INSERT INTO documents_fts (documents_fts, rowid, title, content)
                 VALUES ('delete', old.id, {old_title}, {old_content});
         END;
         CREATE TRIGGER documents_fts_update AFTER UPDATE OF title, content ON documents BEGIN
             INSERT INTO documents_fts (documents_fts, rowid, title, content)
                 VALUES ('delete', old.id, {old_title}, {old_content});
             INSERT INTO documents_fts (rowid, title, content) VALUES (new.id, {new_title}, {new_content});
         END;
         INSERT INTO documents_fts (rowid, title, content) SELECT id, {title}, {content} FROM documents;",
        new_title = lex("new.title"),
        new_content = lex("new.content"),
        old_title = lex("old.title"),
        old_content = lex("old.content"),
        title = lex("title"),
        content = lex("content"),
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
    // The checkpoints of `VectorStore::batch_once`: made by any writable open (no version),
    // an older build ignores the table.
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS marketking_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS marketking_checkpoints (name TEXT PRIMARY KEY NOT NULL, report TEXT NOT NULL)",
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
    if version < 3 {
        add_full_text(&tx, text_config)?;
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

/// The read-only open's check: the file must already be at this release's schema version, for
/// this model, dimension count and text search configuration. Reads only: a file that needs any
/// migration is [`Error::NeedsMigration`], never migrated here.
pub(super) fn check_current(conn: &Connection, path: &Path, model: &str, dims: usize, text_config: &str) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'marketking_meta')",
        [],
        |r| r.get(0),
    )?;
    let get = |k: &str| -> Result<Option<String>> {
        match has_meta {
            false => Ok(None),
            true => {
                Ok(conn.query_row("SELECT value FROM marketking_meta WHERE key = ?1", [k], |r| r.get(0)).optional()?)
            }
        }
    };
    let version: i64 = match get("schema_version")? {
        None => 0,
        Some(v) => v.parse().map_err(|_| storage(format!("{}: invalid schema_version {v:?}", path.display())))?,
    };
    let location = path.display().to_string();
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew { location, found: version, supported: SCHEMA_VERSION });
    }
    if version < SCHEMA_VERSION {
        return Err(Error::NeedsMigration { location, found: version, current: SCHEMA_VERSION });
    }
    let (stored_model, stored_dims) = match (get("model")?, get("dimensions")?) {
        (Some(m), Some(d)) => (m, d),
        _ => {
            return Err(storage(format!(
                "{location}: marketking_meta lacks the model or dimensions; the file is damaged"
            )))
        }
    };
    let stored_dimensions: usize =
        stored_dims.parse().map_err(|_| storage(format!("{location}: invalid dimensions {stored_dims:?}")))?;
    if stored_model != model || stored_dimensions != dims {
        return Err(Error::SchemaMismatch {
            table: location,
            stored_model,
            stored_dimensions,
            model: model.to_string(),
            dimensions: dims,
        });
    }
    let stored = get("text_config")?.unwrap_or_else(|| crate::store::DEFAULT_TEXT_CONFIG.to_string());
    if stored != text_config {
        return Err(Error::config(
            "text_search_config",
            format!(
                "{location} was created with the text search configuration {stored:?}, not {text_config:?}; \
                 use {stored:?} (MARKETKING_TEXT_CONFIG) or another file"
            ),
        ));
    }
    Ok(())
}
