//! Rows and documents: the columns a document is read from, timestamps in microseconds,
//! metadata as JSON text, and the load of every vector into memory at open.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row};
use serde_json::Value;

use super::mem_index::{normalize, MemIndex, Pending};
use crate::document::Document;
use crate::error::Result;
use crate::vector::from_le_bytes as decode_vector;

/// Document columns, in the order [`read_document`] expects.
pub(super) const DOC_COLUMNS: &str = "id, title, content, source, metadata, key, created_at, updated_at";

/// The current time, truncated to microseconds (the stored precision), so a document read back
/// equals the one returned by a write.
pub(super) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub(super) fn from_micros(m: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| conversion(format!("timestamp {m} is out of range")))
}

pub(super) fn conversion(msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Null, msg.into())
}

pub(super) fn metadata_text(v: &impl serde::Serialize) -> String {
    // Serialising a JSON value or object to a string cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_string())
}

pub(super) fn parse_metadata(s: &str) -> rusqlite::Result<Value> {
    serde_json::from_str(s).map_err(|e| conversion(format!("metadata is not valid JSON: {e}")))
}

/// Reads a document from a row selected with [`DOC_COLUMNS`] (plus `embedding` when asked).
pub(super) fn read_document(row: &Row<'_>, with_embedding: bool, dims: usize) -> rusqlite::Result<Document> {
    let id: i64 = row.get(0)?;
    let embedding = if with_embedding {
        let blob = row.get_ref(8)?.as_blob()?;
        Some(decode_vector(blob, dims).ok_or_else(|| bad_blob(id, blob.len(), dims))?)
    } else {
        None
    };
    Ok(Document {
        id,
        title: row.get(1)?,
        content: row.get(2)?,
        source: row.get(3)?,
        metadata: parse_metadata(row.get_ref(4)?.as_str()?)?,
        key: row.get(5)?,
        created_at: from_micros(row.get(6)?)?,
        updated_at: from_micros(row.get(7)?)?,
        embedding,
    })
}

pub(super) fn bad_blob(id: i64, len: usize, dims: usize) -> rusqlite::Error {
    conversion(format!("document {id} has a {len}-byte embedding, expected {} ({dims} f32)", 4 * dims))
}

/// `SELECT` of the document columns (and the embedding when asked) with a `WHERE` clause.
pub(super) fn select_sql(with_embedding: bool, rest: &str) -> String {
    let emb = if with_embedding { ", embedding" } else { "" };
    format!("SELECT {DOC_COLUMNS}{emb} FROM documents {rest}")
}

/// Reads every vector and the filter data into memory.
pub(super) fn load(conn: &Connection, dims: usize) -> Result<MemIndex> {
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))?;
    let mut mem = MemIndex::with_capacity(dims, usize::try_from(count).unwrap_or(0));
    let mut stmt =
        conn.prepare("SELECT id, source, metadata, created_at, embedding, key, updated_at FROM documents ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        mem.apply(load_row(r, dims)?);
    }
    Ok(mem)
}

/// One row of [`load`]'s query as an insert into memory.
pub(super) fn load_row(r: &Row<'_>, dims: usize) -> rusqlite::Result<Pending> {
    let id: i64 = r.get(0)?;
    let blob = r.get_ref(4)?.as_blob()?;
    let v = decode_vector(blob, dims).ok_or_else(|| bad_blob(id, blob.len(), dims))?;
    Ok(Pending {
        id,
        unit: Some(normalize(&v)),
        source: r.get(1)?,
        metadata: parse_metadata(r.get_ref(2)?.as_str()?)?,
        created_at: Some(from_micros(r.get(3)?)?),
        key: r.get(5)?,
        updated_at: from_micros(r.get(6)?)?,
    })
}
