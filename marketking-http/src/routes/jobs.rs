//! Background jobs: `POST /v1/jobs/import` queues a JSONL import (the body, or a server-side
//! file), `GET /v1/jobs` and `GET /v1/jobs/{id}` report, `POST /v1/jobs/{id}/cancel` cancels.
//! Workers run in this service (`--job-workers`) and in `marketking worker` processes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use marketking_core::jobs::{ImportJobOptions, JobStatus, DEFAULT_CHUNK_LINES};

use super::dto::{JobImportParams, JobList, JobListParams};
use crate::error::{ApiPath, ApiQuery, AppError, ErrorBody};
use crate::AppState;

/// Queues an import of JSONL (the format `GET /v1/export` writes), from the body or from a
/// server-side file (`path`, under `MARKETKING_IMPORT_DIR`), and answers at once with the job's
/// status (202, `Location: /v1/jobs/{id}`). Nothing is written before the whole input is
/// queued. Invalid lines do not stop the job: they are listed in its status, the others written.
#[utoipa::path(post, path = "/v1/jobs/import", tag = "jobs", operation_id = "jobs_import",
    params(JobImportParams),
    request_body(content = String, content_type = "application/x-ndjson",
                 description = "JSONL: one document per line (empty with `path`)",
                 example = json!("{\"title\":\"Trail shoes\",\"content\":\"Light shoes for rocky paths\",\"key\":\"sku-1\"}\n")),
    responses((status = 202, description = "Queued: the job's status", body = JobStatus),
              (status = 403, description = "`path` given while server-side imports are off, or leaving the import directory", body = ErrorBody),
              (status = 404, description = "`path` names no file in the import directory", body = ErrorBody),
              (status = 409, description = "`keep_ids` into a store that holds documents", body = ErrorBody),
              (status = 422, description = "Bad options, an empty input, or a body besides `path`", body = ErrorBody),
              (status = 503, description = "The job queue (Redis) cannot be reached", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<JobImportParams>,
    body: Body,
) -> Result<Response, AppError> {
    let mut options = ImportJobOptions {
        keep_ids: p.keep_ids.unwrap_or(false),
        chunk_lines: p.chunk_lines.unwrap_or(DEFAULT_CHUNK_LINES),
        name: p.name.clone(),
    };
    options.validate()?;
    let status = match &p.path {
        Some(path) => {
            let file = allowed_path(&s, path)?;
            let mut stream = body.into_data_stream();
            if let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| AppError::invalid("body", &format!("could not be read: {e}")))?;
                if !chunk.is_empty() {
                    return Err(AppError::invalid("body", "must be empty when `path` names the input"));
                }
            }
            if options.name.is_none() {
                options.name = Some(path.clone());
            }
            s.jobs.import_file(&file, options).await?
        }
        None => {
            options.name.get_or_insert_with(|| "upload".into());
            let mut upload = s.jobs.import(options).await?;
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| AppError::invalid("body", &format!("could not be read: {e}")))?;
                upload.push(&chunk).await?;
            }
            upload.finish().await?
        }
    };
    let mut resp = (StatusCode::ACCEPTED, Json(&status)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{}", status.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The file `path` names under the allowed directory. Server-side imports off, or a path that
/// leaves the directory (absolute, `..`, a link out), is 403; a path to no file in it is 404.
fn allowed_path(s: &AppState, path: &str) -> Result<std::path::PathBuf, AppError> {
    let forbidden = |why: &str| AppError::Rejected {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: format!("path: {why}"),
    };
    let Some(dir) = &s.config.import_dir else {
        return Err(forbidden(
            "server-side imports are off: start the service with MARKETKING_IMPORT_DIR to allow a directory",
        ));
    };
    let root = dir.canonicalize().map_err(|e| {
        tracing::error!(error = %e, dir = %dir.display(), "the import directory cannot be read");
        forbidden("the service's import directory cannot be read")
    })?;
    let wanted = std::path::Path::new(path);
    if wanted.is_absolute() {
        return Err(forbidden("must be relative to the import directory"));
    }
    if wanted.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(forbidden("must not leave the import directory (`..`)"));
    }
    let not_found = || AppError::Rejected {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("path: {path:?} is not a file in the import directory"),
    };
    let file = root.join(wanted).canonicalize().map_err(|_| not_found())?;
    if !file.starts_with(&root) {
        return Err(forbidden(&format!("{path:?} leaves the import directory")));
    }
    if !file.is_file() {
        return Err(not_found());
    }
    Ok(file)
}

/// The newest jobs first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", operation_id = "jobs_list",
    params(JobListParams),
    responses((status = 200, description = "Jobs, newest first", body = JobList),
              (status = 503, description = "The job queue (Redis) cannot be reached", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(s): State<AppState>, ApiQuery(p): ApiQuery<JobListParams>) -> Result<Json<JobList>, AppError> {
    let limit = p.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::invalid("limit", &format!("must be between 1 and 1000, got {limit}")));
    }
    Ok(Json(JobList { jobs: s.jobs.list(limit).await? }))
}

/// One job's status and report: state, lines done / failed / total, per-line errors, timings,
/// pauses.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", operation_id = "jobs_get",
    params(("id" = String, Path, description = "Job id (lowercase hex)", pattern = "^[0-9a-f]{1,40}$")),
    responses((status = 200, description = "The job's status", body = JobStatus),
              (status = 404, description = "No such job (or past its retention)", body = ErrorBody),
              (status = 503, description = "The job queue (Redis) cannot be reached: jobs are paused until it is back", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(State(s): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<JobStatus>, AppError> {
    Ok(Json(s.jobs.status(&id).await?))
}

/// Cancels a job: chunks not started are not written (those done stay).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", operation_id = "jobs_cancel",
    params(("id" = String, Path, description = "Job id (lowercase hex)", pattern = "^[0-9a-f]{1,40}$")),
    responses((status = 200, description = "The job's status", body = JobStatus),
              (status = 404, description = "No such job", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(State(s): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Json<JobStatus>, AppError> {
    Ok(Json(s.jobs.cancel(&id).await?))
}

/// Forgets a finished (done or cancelled) job: its status and its chunks' checkpoints in the
/// store (a chunk of it run again would then be written again); the documents stay.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", operation_id = "jobs_forget",
    params(("id" = String, Path, description = "Job id (lowercase hex)", pattern = "^[0-9a-f]{1,40}$")),
    responses((status = 204, description = "Forgotten"),
              (status = 404, description = "No such job", body = ErrorBody),
              (status = 409, description = "The job is not finished: cancel it first", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn forget(State(s): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<StatusCode, AppError> {
    s.jobs.forget(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
