//! `/v1/documents` handlers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use marketking_core::{Filter, ListOptions, UpsertOutcome};

use marketking_core::{BatchReport, Document};

use super::dto::{
    BatchBody, CountBody, CountParams, CountResult, DeleteByFilterBody, DeletedResult, DocumentPage, GetParams,
    ListParams, NewDocumentBody, PatchBody, UpsertBody, UpsertDocumentBody,
};
use crate::error::{ApiJson, ApiPath, ApiQuery, AppError, ErrorBody};
use crate::AppState;

/// Stores one document (a document with a `key` upserts).
#[utoipa::path(post, path = "/v1/documents", tag = "documents", request_body = NewDocumentBody, operation_id = "documents_create",
    responses((status = 201, description = "Stored", body = Document),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<NewDocumentBody>,
) -> Result<(StatusCode, Json<Document>), AppError> {
    let doc = s.store.create(body.try_into()?).await?;
    Ok((StatusCode::CREATED, Json(doc)))
}

/// Stores many documents in one transaction (all or nothing).
#[utoipa::path(post, path = "/v1/documents/batch", tag = "documents", operation_id = "documents_batch", request_body = BatchBody,
    responses((status = 200, description = "Stored", body = BatchReport),
              (status = 409, description = "Duplicate key in the batch, or (assume_new) a key or id already stored", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn batch(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<BatchReport>, AppError> {
    let mut docs: Vec<marketking_core::NewDocument> =
        body.documents.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?;
    if !body.assume_new {
        return Ok(Json(s.store.batch(docs).await?));
    }
    let embedded = s.store.embed_missing(&mut docs).await?;
    let mut rows = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        // Unreachable: embed_missing gave every document its vector.
        let Some(v) = d.embedding.as_deref() else {
            return Err(AppError::invalid(&format!("documents[{i}].embedding"), "missing"));
        };
        let mut r = marketking_core::DocumentRef::new(&d.title, &d.content, v).metadata(&d.metadata);
        r.source = d.source.as_deref();
        r.key = d.key.as_deref();
        r.id = d.id;
        r.created_at = d.created_at;
        r.updated_at = d.updated_at;
        rows.push(r);
    }
    let mut report = s.store.insert_new(rows).await?;
    report.embedded = embedded;
    Ok(Json(report))
}

/// One document by id.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_get",
    params(("id" = i64, Path, description = "Document id"), GetParams),
    responses((status = 200, description = "The document", body = Document),
              (status = 404, description = "No such document", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(p): ApiQuery<GetParams>,
) -> Result<Json<Document>, AppError> {
    Ok(Json(match p.with_embedding.unwrap_or(false) {
        true => s.store.get_with_embedding(id).await?,
        false => s.store.get(id).await?,
    }))
}

/// Changes a document; absent fields stay.
#[utoipa::path(put, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_update", request_body = PatchBody,
    params(("id" = i64, Path, description = "Document id")),
    responses((status = 200, description = "The updated document", body = Document),
              (status = 404, description = "No such document", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Json<Document>, AppError> {
    Ok(Json(s.store.update(id, body.try_into()?).await?))
}

/// Deletes a document.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_delete",
    params(("id" = i64, Path, description = "Document id")),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No such document", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, AppError> {
    s.store.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Inserts or updates the document with this key (the key comes from the path only).
#[utoipa::path(put, path = "/v1/documents/by-key/{key}", tag = "documents", operation_id = "documents_upsert_by_key", request_body = UpsertDocumentBody,
    params(("key" = String, Path, description = "Caller key")),
    responses((status = 201, description = "Created", body = UpsertBody),
              (status = 200, description = "Updated or unchanged", body = UpsertBody),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upsert(
    State(s): State<AppState>,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<UpsertDocumentBody>,
) -> Result<(StatusCode, Json<UpsertBody>), AppError> {
    let (doc, outcome) = s.store.upsert(body.with_key(key)?).await?;
    let status = if outcome == UpsertOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(UpsertBody { outcome, document: doc })))
}

/// How many documents a filter matches (every document without one).
#[utoipa::path(post, path = "/v1/documents/count", tag = "documents", operation_id = "documents_count", request_body = CountBody,
    responses((status = 200, description = "The count", body = CountResult),
              (status = 400, description = "Invalid filter (the field names its path)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn count(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CountBody>,
) -> Result<Json<CountResult>, AppError> {
    let filter = match &body.filter {
        Some(v) => marketking_core::Filter::from_json(v)?,
        None => marketking_core::Filter::everything(),
    };
    Ok(Json(CountResult { count: s.store.count(&filter).await? }))
}

/// Deletes every document a filter matches, in one transaction. `{}` needs `"all": true`.
#[utoipa::path(post, path = "/v1/documents/delete", tag = "documents", operation_id = "documents_delete_by_filter", request_body = DeleteByFilterBody,
    responses((status = 200, description = "Deleted", body = DeletedResult),
              (status = 400, description = "Invalid filter, or `{}` without `all` (the field names its path)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_by_filter(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<DeleteByFilterBody>,
) -> Result<Json<DeletedResult>, AppError> {
    let filter = marketking_core::Filter::from_json(&body.filter)?;
    let deleted = if filter.is_empty() && body.all {
        s.store.delete_all().await?
    } else {
        s.store.delete_by_filter(&filter).await?
    };
    Ok(Json(DeletedResult { deleted }))
}

/// Largest page of `GET /v1/documents`.
const MAX_LIST_LIMIT: usize = 1000;
/// Page size of `GET /v1/documents` without `limit`.
const DEFAULT_LIST_LIMIT: usize = 100;

/// The filter of a query string (`filter=<JSON>`): absent or empty matches every document.
pub(crate) fn query_filter(raw: Option<&str>) -> Result<Filter, AppError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else { return Ok(Filter::everything()) };
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| AppError::Core(marketking_core::Error::invalid("filter", format!("is not valid JSON: {e}"))))?;
    Ok(Filter::from_json(&value)?)
}

/// Pages through the documents, ascending by id, optionally filtered.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", operation_id = "documents_list",
    params(ListParams),
    responses((status = 200, description = "One page; `next_after` fetches the next", body = DocumentPage),
              (status = 400, description = "Bad query string or filter (the field names its path)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<DocumentPage>, AppError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(AppError::invalid("limit", &format!("must be between 1 and {MAX_LIST_LIMIT}, got {limit}")));
    }
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(AppError::invalid("after", &format!("must be 0 or a document id, got {after}")));
    }
    let opts = ListOptions::default()
        .filter(query_filter(p.filter.as_deref())?)
        .page_size(limit)
        .with_embedding(p.with_embeddings.unwrap_or(false));
    let documents = s.store.list_page(after, &opts).await?;
    let next_after = match documents.last() {
        Some(last) if documents.len() == limit => Some(last.id),
        _ => None,
    };
    Ok(Json(DocumentPage { documents, next_after }))
}

/// One document by caller key.
#[utoipa::path(get, path = "/v1/documents/by-key/{key}", tag = "documents", operation_id = "documents_get_by_key",
    params(("key" = String, Path, description = "Caller key")),
    responses((status = 200, description = "The document", body = Document),
              (status = 404, description = "No document has this key", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_by_key(State(s): State<AppState>, ApiPath(key): ApiPath<String>) -> Result<Json<Document>, AppError> {
    Ok(Json(s.store.get_by_key(&key).await?))
}

/// Deletes the document with this caller key.
#[utoipa::path(delete, path = "/v1/documents/by-key/{key}", tag = "documents", operation_id = "documents_delete_by_key",
    params(("key" = String, Path, description = "Caller key")),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No document has this key", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_by_key(State(s): State<AppState>, ApiPath(key): ApiPath<String>) -> Result<StatusCode, AppError> {
    s.store.delete_by_key(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many documents a filter (as JSON in the query string) matches.
#[utoipa::path(get, path = "/v1/count", tag = "documents", operation_id = "documents_count_get",
    params(CountParams),
    responses((status = 200, description = "The count", body = CountResult),
              (status = 400, description = "Bad query string or filter (the field names its path)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn count_get(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<CountParams>,
) -> Result<Json<CountResult>, AppError> {
    let filter = query_filter(p.filter.as_deref())?;
    Ok(Json(CountResult { count: s.store.count(&filter).await? }))
}
