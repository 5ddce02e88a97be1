//! `GET /v1/export` and `POST /v1/import`: documents as JSONL, streamed both ways, in the
//! core's line format (the CLI's `export` / `import` format, so files move between the two).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{StreamExt, TryStreamExt};
use marketking_core::jsonl::{self, LineOptions};
use marketking_core::{Filter, ListOptions, NewDocument};

use super::documents::query_filter;
use super::dto::{ExportParams, ImportLineError, ImportParams, ImportReport};
use crate::error::{ApiQuery, AppError, ErrorBody};
use crate::AppState;

/// The media type of both directions.
const NDJSON: &str = "application/x-ndjson";
/// Rejected lines an import report lists (the count is always exact).
const MAX_LISTED_ERRORS: usize = 100;
/// Default documents per transaction of an import.
const DEFAULT_BATCH: usize = 1000;
/// Largest `batch_size`.
const MAX_BATCH: usize = 10_000;

/// Every document (or those a filter matches) as JSONL, one document per line, ascending by id,
/// streamed page by page. A storage error mid-way ends the body early (the client sees a
/// truncated chunked response, never a partial file that looks complete).
#[utoipa::path(get, path = "/v1/export", tag = "documents", operation_id = "documents_export",
    params(ExportParams),
    responses((status = 200, description = "JSONL: one document per line (id, title, content, source, metadata, key, created_at, updated_at, and embedding when asked)",
               content_type = "application/x-ndjson", body = String,
               example = json!("{\"id\":1,\"title\":\"Trail shoes\",\"content\":\"Light shoes for rocky paths\",\"source\":\"catalog\",\"metadata\":{\"price\":120},\"key\":\"sku-1\",\"created_at\":\"2026-01-02T03:04:05Z\",\"updated_at\":\"2026-01-02T03:04:05Z\"}\n")),
              (status = 400, description = "Bad query string or filter (the field names its path)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(State(s): State<AppState>, ApiQuery(p): ApiQuery<ExportParams>) -> Result<Response, AppError> {
    let filter = query_filter(p.filter.as_deref())?;
    filter.validate()?;
    let opts = ListOptions::default().filter(filter).with_embedding(p.with_embeddings.unwrap_or(false));
    let lines = s.store.list_stream_with(opts).map_ok(|d| {
        let mut line = jsonl::to_line(&d);
        line.push('\n');
        line
    });
    let body = Body::from_stream(lines.inspect_err(|e| tracing::error!(error = %e, "export stopped by an error")));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(resp)
}

/// Imports JSONL, one document per line (the format `GET /v1/export` writes), in batches of
/// `batch_size` documents, each its own transaction. Keys and times of the lines are kept; ids
/// only with `keep_ids`. The body is read as it arrives (any size; each line at most the
/// body limit). An invalid line stops the import with a 422 naming the line and field (the
/// batches before it stay committed, nothing after), unless `skip_invalid`.
#[utoipa::path(post, path = "/v1/import", tag = "documents", operation_id = "documents_import",
    params(ImportParams),
    request_body(content = String, content_type = "application/x-ndjson",
                 description = "JSONL: one document per line",
                 example = json!("{\"title\":\"Trail shoes\",\"content\":\"Light shoes for rocky paths\",\"key\":\"sku-1\"}\n{\"title\":\"Rain jacket\",\"content\":\"Keeps you dry\"}\n")),
    responses((status = 200, description = "What the import did", body = ImportReport),
              (status = 409, description = "`keep_ids` into a store that holds documents, or an id already taken", body = ErrorBody),
              (status = 413, description = "A line longer than the body limit", body = ErrorBody),
              (status = 422, description = "An invalid line (the message names the line, `field` the field)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ImportParams>,
    body: Body,
) -> Result<Json<ImportReport>, AppError> {
    let batch_size = p.batch_size.unwrap_or(DEFAULT_BATCH);
    if batch_size == 0 || batch_size > MAX_BATCH {
        return Err(AppError::invalid("batch_size", &format!("must be between 1 and {MAX_BATCH}, got {batch_size}")));
    }
    let keep_ids = p.keep_ids.unwrap_or(false);
    if keep_ids {
        let n = s.store.count(&Filter::everything()).await?;
        if n > 0 {
            return Err(AppError::Core(marketking_core::Error::Conflict {
                reason: format!("keep_ids restores ids into an empty store, and this one holds {n} documents"),
            }));
        }
    }
    let mut run = Import {
        store: &s.store,
        opts: LineOptions::default().keep_ids(keep_ids),
        skip_invalid: p.skip_invalid.unwrap_or(false),
        batch_size,
        report: ImportReport::default(),
        batch: Vec::new(),
        keys: std::collections::HashSet::new(),
        line: 0,
    };
    let max_line = s.config.body_limit;
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| AppError::invalid("body", &format!("could not be read: {e}")))?;
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(n) = buf.get(start..).and_then(|rest| rest.iter().position(|&b| b == b'\n')) {
            let end = start + n;
            run.line(buf.get(start..end).unwrap_or_default()).await?;
            start = end + 1;
        }
        buf.drain(..start);
        if buf.len() > max_line {
            return Err(AppError::Rejected {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "payload_too_large",
                message: format!("line {} is longer than {max_line} bytes", run.line + 1),
            });
        }
    }
    if !buf.is_empty() {
        run.line(&buf).await?;
    }
    if run.line == 0 {
        return Err(AppError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: "the body is empty: an import reads one JSON document per line".into(),
        });
    }
    run.commit().await?;
    s.store.analyze().await?;
    Ok(Json(run.report))
}

/// An import in progress: the pending batch and the report so far.
struct Import<'a> {
    store: &'a marketking_core::VectorStore,
    opts: LineOptions,
    skip_invalid: bool,
    batch_size: usize,
    report: ImportReport,
    batch: Vec<NewDocument>,
    keys: std::collections::HashSet<String>,
    line: u64,
}

impl Import<'_> {
    async fn line(&mut self, bytes: &[u8]) -> Result<(), AppError> {
        self.line += 1;
        let bytes = bytes.trim_ascii();
        if bytes.is_empty() {
            return Ok(());
        }
        self.report.read += 1;
        match jsonl::parse_line(bytes, self.store.dimensions(), self.opts) {
            Ok(doc) => {
                // One batch holds a key once: a later line with the same key updates the
                // earlier one, as the CLI's import does.
                if let Some(k) = &doc.key {
                    if !self.keys.insert(k.clone()) {
                        self.commit().await?;
                        self.keys.insert(k.clone());
                    }
                }
                self.batch.push(doc);
                if self.batch.len() >= self.batch_size {
                    self.commit().await?;
                }
                Ok(())
            }
            Err(bad) if self.skip_invalid => {
                self.report.skipped += 1;
                if self.report.errors.len() < MAX_LISTED_ERRORS {
                    self.report.errors.push(ImportLineError { line: self.line, field: bad.field, reason: bad.reason });
                }
                Ok(())
            }
            Err(bad) => Err(AppError::Core(marketking_core::Error::InvalidInput {
                field: bad.field,
                reason: format!(
                    "{} (line {}; import stopped: {} documents committed before this line's batch, nothing after)",
                    bad.reason,
                    self.line,
                    self.report.created + self.report.updated + self.report.unchanged
                ),
            })),
        }
    }

    async fn commit(&mut self) -> Result<(), AppError> {
        self.keys.clear();
        if self.batch.is_empty() {
            return Ok(());
        }
        let r = self.store.batch(std::mem::take(&mut self.batch)).await?;
        self.report.created += r.created as u64;
        self.report.updated += r.updated as u64;
        self.report.unchanged += r.unchanged as u64;
        Ok(())
    }
}
