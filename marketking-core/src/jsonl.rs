//! The JSONL line format of export and import, shared by the CLI and the HTTP service: one
//! JSON object per line with the fields of a [`Document`] (`id`, `title`, `content`, `source`,
//! `metadata`, `key`, `created_at`, `updated_at`, and `embedding` when asked for).
//!
//! An import keeps the key and both times of each line, so an export restored into an empty
//! store has the same dates (and date filters match the same documents). Ids are assigned anew
//! unless the import asks to keep them ([`LineOptions::keep_ids`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::document::{json_kind, Document, Metadata, NewDocument};
use crate::error::Error;

/// Why a line was rejected: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LineError {
    /// The field at fault (`json` for a line that is not a JSON object, `line` for bad UTF-8).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl LineError {
    /// A rejection of `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LineError { field: field.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl From<Error> for LineError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput { field, reason } => LineError { field, reason },
            Error::DimensionMismatch { expected, actual } => {
                LineError::new("embedding", format!("expected {expected} dimensions, got {actual}"))
            }
            other => LineError::new("document", other.to_string()),
        }
    }
}

/// How lines become documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineOptions {
    /// Keep each line's `id` (restoring into an empty store); otherwise ids are assigned anew.
    pub keep_ids: bool,
}

impl LineOptions {
    /// Keeps (or not) each line's id.
    pub fn keep_ids(mut self, yes: bool) -> Self {
        self.keep_ids = yes;
        self
    }
}

/// The shape of a valid line, parsed straight into typed fields: no `Value` per float, which
/// made parsing embeddings the import's bottleneck. Invalid lines are parsed again through
/// `Value` to say which field is wrong.
#[derive(Deserialize)]
struct TypedLine {
    title: String,
    content: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    embedding: Option<Vec<f32>>,
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

/// One line (without its newline) as a checked document for a store of `dims` dimensions.
/// Blank lines are the caller's to skip. Fields the format does not know are ignored.
pub fn parse_line(bytes: &[u8], dims: usize, opts: LineOptions) -> Result<NewDocument, LineError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| LineError::new("line", format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut doc = match serde_json::from_str::<TypedLine>(text) {
        Ok(t) => {
            let mut d = NewDocument::new(t.title, t.content);
            d.source = t.source;
            d.metadata = metadata_of(t.metadata)?;
            d.key = t.key;
            d.embedding = t.embedding;
            d.id = t.id;
            d.created_at = t.created_at;
            d.updated_at = t.updated_at;
            d
        }
        Err(_) => {
            let value: Value = serde_json::from_str(text).map_err(|e| LineError::new("json", e.to_string()))?;
            let Value::Object(obj) = value else {
                return Err(LineError::new("json", "each line must be a JSON object"));
            };
            return parse_object(obj, dims, opts);
        }
    };
    if !opts.keep_ids {
        doc.id = None;
    }
    doc.validate(dims)?;
    Ok(doc)
}

/// A document from an already parsed JSON object (a CSV row, say), with the same checks and
/// field names as [`parse_line`]. `created_at` and `updated_at` are RFC 3339 strings.
pub fn parse_object(obj: Map<String, Value>, dims: usize, opts: LineOptions) -> Result<NewDocument, LineError> {
    let doc = doc_from_object(obj, opts)?;
    doc.validate(dims)?;
    Ok(doc)
}

/// The export line of `doc` (its embedding included when the document carries one).
pub fn to_line(doc: &Document) -> String {
    // Serialising a document cannot fail: every field is plain data with string keys.
    serde_json::to_string(&ExportLine::from(doc)).unwrap_or_default()
}

/// One exported line: [`Document`]'s fields with `embedding` left out when absent.
#[derive(Serialize)]
struct ExportLine<'a> {
    id: i64,
    title: &'a str,
    content: &'a str,
    source: Option<&'a str>,
    metadata: &'a Value,
    key: Option<&'a str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<&'a [f32]>,
}

impl<'a> From<&'a Document> for ExportLine<'a> {
    fn from(d: &'a Document) -> Self {
        ExportLine {
            id: d.id,
            title: &d.title,
            content: &d.content,
            source: d.source.as_deref(),
            metadata: &d.metadata,
            key: d.key.as_deref(),
            created_at: d.created_at,
            updated_at: d.updated_at,
            embedding: d.embedding.as_deref(),
        }
    }
}

fn metadata_of(v: Option<Value>) -> Result<Metadata, LineError> {
    match v {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(LineError::new("metadata", format!("must be a JSON object, got {}", json_kind(&other)))),
    }
}

fn required_string(obj: &mut Map<String, Value>, field: &str) -> Result<String, LineError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Err(LineError::new(field, "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(LineError::new(field, "must be a string")),
    }
}

fn optional_string(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, LineError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(LineError::new(field, "must be a string")),
    }
}

fn optional_time(obj: &mut Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>, LineError> {
    match optional_string(obj, field)? {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| LineError::new(field, format!("must be an RFC 3339 time ({e}), got {s:?}"))),
    }
}

fn embedding_from(value: Value) -> Result<Option<Vec<f32>>, LineError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| LineError::new("embedding", format!("value at index {i} is not a number")))
            })
            .collect::<Result<Vec<f32>, LineError>>()
            .map(Some),
        _ => Err(LineError::new("embedding", "must be an array of numbers")),
    }
}

/// A document from a JSON object whose typed parse failed: finds the field at fault.
fn doc_from_object(mut obj: Map<String, Value>, opts: LineOptions) -> Result<NewDocument, LineError> {
    let title = required_string(&mut obj, "title")?;
    let content = required_string(&mut obj, "content")?;
    let mut d = NewDocument::new(title, content);
    d.source = optional_string(&mut obj, "source")?;
    d.key = optional_string(&mut obj, "key")?;
    d.metadata = metadata_of(obj.remove("metadata"))?;
    d.embedding = embedding_from(obj.remove("embedding").unwrap_or(Value::Null))?;
    d.id = match obj.remove("id") {
        _ if !opts.keep_ids => None,
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
        Some(_) => return Err(LineError::new("id", "must be a whole number")),
    };
    d.created_at = optional_time(&mut obj, "created_at")?;
    d.updated_at = optional_time(&mut obj, "updated_at")?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_line_reads_back_with_its_times_and_key() {
        let line = br#"{"id":7,"title":"t","content":"c","source":null,"metadata":{"a":1},"key":"k",
            "created_at":"2020-01-02T03:04:05.123456Z","updated_at":"2021-01-02T03:04:05Z"}"#;
        let doc = parse_line(line, 3, LineOptions::default()).unwrap();
        assert_eq!(doc.key.as_deref(), Some("k"));
        assert_eq!(doc.created_at.unwrap().to_rfc3339(), "2020-01-02T03:04:05.123456+00:00");
        assert_eq!(doc.id, None, "ids are assigned anew unless kept");
        assert_eq!(parse_line(line, 3, LineOptions::default().keep_ids(true)).unwrap().id, Some(7));
    }

    #[test]
    fn a_bad_field_is_named() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"title":"t","content":"c","created_at":"yesterday"}"#, "created_at"),
            (br#"{"title":"t","content":"c","metadata":[1]}"#, "metadata"),
            (br#"{"title":"t","content":"c","id":"seven"}"#, "id"),
            (br#"{"content":"c"}"#, "title"),
            (br#"[1]"#, "json"),
        ];
        for (line, field) in cases {
            let err = parse_line(line, 3, LineOptions::default().keep_ids(true)).unwrap_err();
            assert_eq!(err.field, field, "{}", String::from_utf8_lossy(line));
        }
        let backwards =
            br#"{"title":"t","content":"c","created_at":"2021-01-01T00:00:00Z","updated_at":"2020-01-01T00:00:00Z"}"#;
        assert_eq!(parse_line(backwards, 3, LineOptions::default()).unwrap_err().field, "updated_at");
    }
}
