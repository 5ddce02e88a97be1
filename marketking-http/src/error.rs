//! The JSON error shape and the extractors that map axum's rejections into it.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_input`, `not_found`, `conflict`.
    pub code: String,
    /// Human-readable message. Never contains SQL, hostnames or secrets.
    pub message: String,
    /// The offending field, for `invalid_input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every error a handler or middleware can answer with.
#[derive(Debug)]
pub enum AppError {
    /// An error from the store.
    Core(marketking_core::Error),
    /// A rejected request (bad JSON, query string, path...), with the status to answer.
    Rejected {
        /// HTTP status.
        status: StatusCode,
        /// Error code.
        code: &'static str,
        /// Message for the client.
        message: String,
    },
    /// Missing or wrong API key.
    Unauthorized,
    /// The per-client rate limit was hit.
    RateLimited(Duration),
    /// Too many failed API-key attempts from the client's network; retry after the duration.
    AuthThrottled(Duration),
    /// The request took longer than the configured timeout.
    Timeout,
    /// No such route.
    NoRoute,
    /// The route exists but not with this method.
    MethodNotAllowed,
}

impl From<marketking_core::Error> for AppError {
    fn from(e: marketking_core::Error) -> Self {
        AppError::Core(e)
    }
}

impl AppError {
    /// A 422 `invalid_input` error for `field`.
    pub fn invalid(field: &str, reason: &str) -> Self {
        AppError::Core(marketking_core::Error::invalid(field, reason))
    }

    fn rejected(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_input",
            StatusCode::BAD_REQUEST => "bad_request",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        let message = if status.is_server_error() { "internal server error".to_string() } else { message };
        AppError::Rejected { status, code, message }
    }
}

fn body(status: StatusCode, code: &str, message: String, field: Option<String>) -> Response {
    (status, Json(ErrorBody { error: ErrorDetail { code: code.to_string(), message, field } })).into_response()
}

fn retry_after(mut resp: Response, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        use marketking_core::Error as E;
        match self {
            AppError::Rejected { status, code, message } => body(status, code, message, None),
            AppError::Unauthorized => {
                let mut r = body(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid API key is required: Authorization: Bearer <key>".into(),
                    None,
                );
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            AppError::RateLimited(wait) => retry_after(
                body(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; slow down".into(), None),
                wait,
            ),
            AppError::AuthThrottled(wait) => retry_after(
                body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many failed API-key attempts from this address; retry later".into(),
                    None,
                ),
                wait,
            ),
            AppError::Timeout => body(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long and was cancelled; nothing was written".into(),
                None,
            ),
            AppError::NoRoute => body(StatusCode::NOT_FOUND, "not_found", "no such route".into(), None),
            AppError::MethodNotAllowed => body(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not support this method".into(),
                None,
            ),
            AppError::Core(e) => match e {
                // A filter the server cannot read is malformed input, 400 (as a query language's
                // syntax error is); other invalid input is 422.
                E::InvalidInput { ref field, .. } => {
                    let field = field.clone();
                    let status = if is_filter_field(&field) {
                        StatusCode::BAD_REQUEST
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    };
                    body(status, "invalid_input", e.to_string(), Some(field))
                }
                E::DimensionMismatch { .. } => {
                    body(StatusCode::UNPROCESSABLE_ENTITY, "dimension_mismatch", e.to_string(), None)
                }
                E::NotFound { .. } | E::KeyNotFound { .. } | E::JobNotFound { .. } => {
                    body(StatusCode::NOT_FOUND, "not_found", e.to_string(), None)
                }
                E::Conflict { .. } => body(StatusCode::CONFLICT, "conflict", e.to_string(), None),
                E::Unsupported { .. } => body(StatusCode::BAD_REQUEST, "unsupported", e.to_string(), None),
                E::NoEmbedder { .. } => body(StatusCode::BAD_REQUEST, "no_embedder", e.to_string(), None),
                E::RateLimited { retry_after: wait } => {
                    tracing::warn!(error = %e, "embedder rate limit");
                    retry_after(
                        body(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate_limited",
                            "the embedding service is rate-limiting; retry later".into(),
                            None,
                        ),
                        wait.unwrap_or(Duration::from_secs(1)),
                    )
                }
                E::Unavailable { retry_after: wait, .. } => {
                    tracing::warn!(error = %e, "storage unavailable");
                    retry_after(
                        body(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "the storage is unavailable right now; retry later".into(),
                            None,
                        ),
                        wait,
                    )
                }
                E::Closed => body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is shutting down; retry on another instance".into(),
                    None,
                ),
                E::Cancelled => body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "the request took too long and was cancelled; nothing was written".into(),
                    None,
                ),
                E::Embedder { .. } => {
                    tracing::error!(error = %e, "dependency unavailable");
                    body(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "a backing service is unavailable; retry later".into(),
                        None,
                    )
                }
                other => {
                    tracing::error!(error = %other, "internal error");
                    body(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error".into(), None)
                }
            },
        }
    }
}

/// Whether an invalid-input field is a filter's (`filter`, `filter.$and[1].price`...).
fn is_filter_field(field: &str) -> bool {
    field.strip_prefix("filter").is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// `Json<T>` for a body that must be a JSON object (anything else is a 422 "expected a JSON
/// object"), whose rejections answer in the JSON error shape (400 syntax, 415 content type,
/// 422 data, 413 too large).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<crate::object::Object<T>>::from_request(req, state).await {
            Ok(Json(crate::object::Object(v))) => Ok(ApiJson(v)),
            Err(r) => Err(from_json_rejection(r)),
        }
    }
}

fn from_json_rejection(r: JsonRejection) -> AppError {
    AppError::rejected(r.status(), r.body_text())
}

/// `Query<T>` whose rejections answer in the JSON error shape (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| AppError::rejected(r.status(), r.body_text()))
    }
}

/// `Path<T>` whose rejections answer in the JSON error shape (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r: PathRejection| AppError::rejected(r.status(), r.body_text()))
    }
}
