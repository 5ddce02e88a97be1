//! `/v1/documents` handlers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use marketking_core::UpsertOutcome;

use marketking_core::{BatchReport, Document};

use super::dto::{
    BatchBody, CountBody, CountResult, DeleteByFilterBody, DeletedResult, NewDocumentBody, PatchBody, UpsertBody,
    UpsertDocumentBody,
};
use crate::error::{ApiJson, ApiPath, AppError, ErrorBody};
use crate::AppState;

/// Stores one document (a document with a `key` upserts).
#[utoipa::path(post, path = "/v1/documents", tag = "documents", request_body = NewDocumentBody,
    responses((status = 201, description = "Stored", body = Document),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<NewDocumentBody>,
) -> Result<(StatusCode, Json<Document>), AppError> {
    let doc = s.store.create(body.into()).await?;
    Ok((StatusCode::CREATED, Json(doc)))
}

/// Stores many documents in one transaction (all or nothing).
#[utoipa::path(post, path = "/v1/documents/batch", tag = "documents", request_body = BatchBody,
    responses((status = 200, description = "Stored", body = BatchReport),
              (status = 409, description = "Duplicate key in the batch", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn batch(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<BatchReport>, AppError> {
    let docs = body.documents.into_iter().map(Into::into).collect();
    Ok(Json(s.store.batch(docs).await?))
}

/// One document by id.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = i64, Path, description = "Document id")),
    responses((status = 200, description = "The document", body = Document),
              (status = 404, description = "No such document", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<Json<Document>, AppError> {
    Ok(Json(s.store.get(id).await?))
}

/// Changes a document; absent fields stay.
#[utoipa::path(put, path = "/v1/documents/{id}", tag = "documents", request_body = PatchBody,
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
    Ok(Json(s.store.update(id, body.into()).await?))
}

/// Deletes a document.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = i64, Path, description = "Document id")),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No such document", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(State(s): State<AppState>, ApiPath(id): ApiPath<i64>) -> Result<StatusCode, AppError> {
    s.store.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Inserts or updates the document with this key (the key comes from the path only).
#[utoipa::path(put, path = "/v1/documents/by-key/{key}", tag = "documents", request_body = UpsertDocumentBody,
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
    let (doc, outcome) = s.store.upsert(body.with_key(key)).await?;
    let status = if outcome == UpsertOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(UpsertBody { outcome, document: doc })))
}

/// How many documents a filter matches (every document without one).
#[utoipa::path(post, path = "/v1/documents/count", tag = "documents", request_body = CountBody,
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
#[utoipa::path(post, path = "/v1/documents/delete", tag = "documents", request_body = DeleteByFilterBody,
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
