//! The read-only open: reading a file that another process (the HTTP service, an import) has
//! open for writing.
//!
//! * **No process lock.** The lock keeps out a second *writer*, whose commits would make the
//!   first one's memory index stale; a reader never writes, and notices the writer's commits
//!   itself (below), so it takes no lock and never touches `<path>.lock`.
//! * **A read-only SQLite connection.** In WAL mode a reader sees every committed transaction
//!   and never blocks the writer (nor is blocked by it). Nothing is created or migrated: the file
//!   must exist and be at this release's schema version (see `schema::check_current`).
//! * **The memory index follows the writer.** SQLite's `PRAGMA data_version` changes when
//!   another connection commits; it is read before every search or count, and the memory index is
//!   reloaded when it moved. The index is loaded at the first search or count, not at open, so
//!   reads that need no vectors (get, list, stats) never pay for it.

use std::path::Path;
use std::sync::{Mutex, RwLock};

use rusqlite::{Connection, OpenFlags};

use super::file::Shared;
use super::mem_index::MemIndex;
use super::rows::load;
use super::schema;
use crate::error::{Error, Result};

/// What a read-only store knows about the memory index it loaded.
#[derive(Debug, Default)]
pub(super) struct Reader {
    /// The `data_version` of the snapshot the memory index was loaded from; `None` until the
    /// first search or count loads it.
    loaded: Mutex<Option<i64>>,
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

impl Shared {
    /// Opens the existing store at `path` for reading only (see the module docs).
    pub(super) fn open_read_only(path: &Path, model: &str, dims: usize, text_config: &str) -> Result<Shared> {
        if !path.is_file() {
            return Err(Error::config(
                "db_path",
                format!("{} does not exist; a read-only store never creates one", path.display()),
            ));
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| {
                    Error::storage_with(format!("cannot open embedded store {} read-only", path.display()), e)
                })?;
        schema::check_owner(&conn, path)?;
        schema::check_current(&conn, path, model, dims, text_config)?;
        let canonical =
            path.canonicalize().map_err(|e| Error::storage_with(format!("cannot resolve {}", path.display()), e))?;
        tracing::debug!(path = %canonical.display(), "opened embedded store read-only");
        Ok(Shared {
            path: canonical,
            dims,
            conn: Mutex::new(conn),
            mem: RwLock::new(MemIndex::with_capacity(dims, 0)),
            english: text_config == "english",
            reader: Some(Reader::default()),
            _lock: None,
        })
    }

    /// Before a read of the memory index: on a read-only store, loads it when it was never
    /// loaded or another process committed since it was. A writer's index is always current.
    pub(super) fn refresh(&self) -> Result<()> {
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let mut conn = self.conn();
        let mut loaded = reader.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.is_some() && *loaded == Some(data_version(&conn)?) {
            return Ok(());
        }
        // One read transaction: the version recorded is that of the snapshot loaded, so a
        // commit that lands during the load is seen by the next check.
        let tx = conn.transaction()?;
        let version = data_version(&tx)?;
        let mem = load(&tx, self.dims)?;
        drop(tx);
        tracing::debug!(path = %self.path.display(), documents = mem.len(), version, "loaded the memory index");
        *self.mem_mut() = mem;
        *loaded = Some(version);
        Ok(())
    }
}
