//! The memory index's int8 codes saved next to a large store's file (`<file>.codes`), so that
//! opening it does not decode, normalise and quantize every vector again.
//!
//! Opening a 1M x 384 store spent most of its 3.4 s turning stored vectors into codes
//! (BENCHMARKS.md, "Opening a 1M x 384 store"); the codes are a pure function of the stored
//! vector, so a writer saves them when it closes (or is dropped) and the next open reads them
//! back instead. Only the per-row filter data is still read from the table.
//!
//! The first write of a process removes the file before it commits, so a file that exists was
//! saved after the table's last write through this crate. It is still not trusted on its own: it lists, for every row in id order, the id and the
//! `updated_at` stamp the row had when the codes were made; the open reads the table's rows in
//! id order next to it and uses the codes only if every row matches (same ids, same stamps,
//! same count). Every write path stamps `updated_at`, so a row added, deleted or changed after
//! the save (by a process that crashed before its own save, say) makes the open fall back to
//! the full load, and the stale file is removed. A store small enough to keep its vectors
//! resident ([`RESIDENT_MAX_VALUES`]) never writes one: it loads fast anyway.
//!
//! Layout (little-endian): `MKCODES1`, dims (u32), rows (u64), then per row in id order the
//! ids (i64), the stamps (i64 microseconds), the scales (f32), and the codes (`dims` i8 each).

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::mem_index::{MemIndex, RowFilter, RESIDENT_MAX_VALUES};
use super::rows::{from_micros, parse_metadata};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"MKCODES1";

/// Bytes moved per read or write call of the codes.
const CHUNK: usize = 1 << 20;

/// Where the codes of the store at `db` are kept.
pub(super) fn path_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".codes");
    PathBuf::from(name)
}

/// Whether a store of this size saves its codes.
pub(super) fn worth_saving(rows: usize, dims: usize) -> bool {
    rows.saturating_mul(dims) > RESIDENT_MAX_VALUES
}

/// Saves the codes of `mem` next to `db` (through a temporary file and a rename, so a reader
/// never sees half a file), unless the store is small or nothing changed since they were read.
pub(super) fn save(db: &Path, mem: &MemIndex) -> Result<()> {
    if !mem.changed {
        return Ok(());
    }
    let target = path_for(db);
    if !worth_saving(mem.len(), mem.dims) {
        // Shrunk below the size that saves: an older file would only be read and refused.
        if target.exists() {
            discard(&target);
        }
        return Ok(());
    }
    let mut tmp = target.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |e: std::io::Error| Error::storage_with(format!("cannot save the codes to {}", tmp.display()), e);
    let mut order: Vec<usize> = (0..mem.len()).collect();
    order.sort_unstable_by_key(|&i| mem.ids.get(i).copied().unwrap_or(i64::MAX));
    let mut w = BufWriter::with_capacity(CHUNK, std::fs::File::create(&tmp).map_err(io)?);
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&u32::try_from(mem.dims).unwrap_or(u32::MAX).to_le_bytes()).map_err(io)?;
    w.write_all(&(mem.len() as u64).to_le_bytes()).map_err(io)?;
    for &i in &order {
        w.write_all(&mem.ids.get(i).copied().unwrap_or_default().to_le_bytes()).map_err(io)?;
    }
    for &i in &order {
        let stamp = mem.rows.get(i).map_or(0, |r| r.updated_at.timestamp_micros());
        w.write_all(&stamp.to_le_bytes()).map_err(io)?;
    }
    for &i in &order {
        w.write_all(&mem.scales.get(i).copied().unwrap_or_default().to_le_bytes()).map_err(io)?;
    }
    let d = mem.dims;
    let mut buf = Vec::with_capacity(CHUNK + d);
    for &i in &order {
        buf.extend(mem.codes.get(i * d..(i + 1) * d).unwrap_or_default().iter().map(|&c| c as u8));
        if buf.len() >= CHUNK {
            w.write_all(&buf).map_err(io)?;
            buf.clear();
        }
    }
    w.write_all(&buf).map_err(io)?;
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&tmp, &target).map_err(|e| Error::storage_with(format!("cannot save {}", target.display()), e))?;
    tracing::debug!(path = %target.display(), rows = mem.len(), "saved the codes of the memory index");
    Ok(())
}

/// The memory index from the saved codes and the table's filter data, or `None` (after
/// removing the file) when there is no file, it is damaged, or it does not match the table
/// row for row. Errors are the table's own (the caller would hit them in the full load too).
pub(super) fn load(db: &Path, conn: &Connection, dims: usize) -> Result<Option<MemIndex>> {
    let path = path_for(db);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved codes; loading every vector");
            return Ok(None);
        }
    };
    // The header first (and alone): a file for another size or shape is refused before the
    // table is read. Then the arrays are read on a second thread while this one reads the
    // table: the two took about the same time (1M x 384).
    let mut r = BufReader::with_capacity(CHUNK, file);
    let n = match read_header(&mut r, dims) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the saved codes are damaged; loading every vector");
            discard(&path);
            return Ok(None);
        }
    };
    conn.pragma_update(None, "mmap_size", 1i64 << 40)?;
    let (saved, scanned) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_arrays(r, n, dims));
        let scanned = scan(conn, n);
        (reader.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), scanned)
    });
    conn.pragma_update(None, "mmap_size", 0)?;
    let scanned = scanned?;
    let saved = match saved {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the saved codes are damaged; loading every vector");
            discard(&path);
            return Ok(None);
        }
    };
    if scanned.ids != saved.ids || scanned.stamps != saved.stamps {
        tracing::debug!(path = %path.display(), "the saved codes are older than the table; loading every vector");
        discard(&path);
        return Ok(None);
    }
    let pos: HashMap<i64, usize> = saved.ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    Ok(Some(MemIndex {
        dims,
        ids: saved.ids,
        codes: saved.codes,
        scales: saved.scales,
        vectors: None,
        rows: scanned.rows,
        pos,
        changed: false,
        ann: None,
        ann_journal: None,
        ann_changed: false,
    }))
}

/// Every row's id, `updated_at` and filter data, in id order.
struct Scanned {
    ids: Vec<i64>,
    stamps: Vec<i64>,
    rows: Vec<RowFilter>,
}

/// Reads the table once, start to end (through a memory map, set by the caller: a read call
/// and a copy per page were a quarter of the open). `n`, the saved row count, sizes the arrays.
fn scan(conn: &Connection, n: usize) -> Result<Scanned> {
    let mut out = Scanned { ids: Vec::with_capacity(n), stamps: Vec::with_capacity(n), rows: Vec::with_capacity(n) };
    let mut stmt =
        conn.prepare("SELECT id, source, metadata, created_at, key, updated_at FROM documents ORDER BY id")?;
    let mut cursor = stmt.query([])?;
    while let Some(r) = cursor.next()? {
        let stamp: i64 = r.get(5)?;
        out.ids.push(r.get(0)?);
        out.stamps.push(stamp);
        out.rows.push(RowFilter {
            source: r.get(1)?,
            metadata: parse_metadata(r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?)?,
            created_at: from_micros(r.get(3)?)?,
            key: r.get(4)?,
            updated_at: from_micros(stamp)?,
        });
    }
    Ok(out)
}

/// The arrays of a codes file.
struct Saved {
    ids: Vec<i64>,
    stamps: Vec<i64>,
    scales: Vec<f32>,
    codes: Vec<i8>,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Checks the header of a codes file for a store of `dims` dimensions and returns its row
/// count; the file's size must be exactly what the header says, before anything is allocated.
fn read_header(r: &mut BufReader<std::fs::File>, dims: usize) -> std::io::Result<usize> {
    let len = r.get_ref().metadata()?.len();
    let mut magic = [0u8; 8];
    let mut file_dims = [0u8; 4];
    let mut rows = [0u8; 8];
    r.read_exact(&mut magic)?;
    r.read_exact(&mut file_dims)?;
    r.read_exact(&mut rows)?;
    if &magic != MAGIC {
        return Err(invalid("not a codes file"));
    }
    if usize::try_from(u32::from_le_bytes(file_dims)).ok() != Some(dims) {
        return Err(invalid("made for another dimension count"));
    }
    let n = u64::from_le_bytes(rows);
    if u128::from(len) != u128::from(n) * (8 + 8 + 4 + dims as u128) + 20 {
        return Err(invalid("its size does not match its header"));
    }
    usize::try_from(n).map_err(|_| invalid("too many rows"))
}

/// The arrays after the header ([`read_header`]) of a file of `n` rows.
fn read_arrays(mut r: BufReader<std::fs::File>, n: usize, dims: usize) -> std::io::Result<Saved> {
    let mut words = |width: usize| -> std::io::Result<Vec<u8>> {
        let mut v = vec![0u8; n * width];
        r.read_exact(&mut v)?;
        Ok(v)
    };
    let ids = words(8)?.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    let stamps = words(8)?.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    let scales = words(4)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    let total = n * dims;
    let mut codes: Vec<i8> = Vec::with_capacity(total);
    let mut buf = vec![0u8; CHUNK];
    while codes.len() < total {
        let want = (total - codes.len()).min(CHUNK);
        let chunk = buf.get_mut(..want).ok_or_else(|| invalid("chunk"))?;
        r.read_exact(chunk)?;
        codes.extend(chunk.iter().map(|&b| b as i8));
    }
    Ok(Saved { ids, stamps, scales, codes })
}

/// Removes the codes of the store at `db`, if any, before a write commits. Writing the codes
/// again at close re-creates them.
pub(super) fn forget(db: &Path) {
    let path = path_for(db);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed the saved codes before a write"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove the saved codes before a write"),
    }
}

/// Removes a codes file that cannot be used, so the next open does not read it again.
fn discard(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::debug!(path = %path.display(), error = %e, "could not remove the stale codes");
    }
}
