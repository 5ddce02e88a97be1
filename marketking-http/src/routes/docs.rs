//! `GET /docs`: Swagger UI over `/openapi.json`, with the API key taken by its Authorize button.
//!
//! Swagger UI is vendored in `assets/swagger-ui/` (see its README and
//! `scripts/vendor-swagger-ui.sh`) and embedded in the binary, so the page works offline and
//! loads nothing from outside the server; its Content-Security-Policy says so to the browser.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::AppState;

/// Only this server's own files; `data:` images for the icons inside swagger-ui.css; no inline
/// script (the start-up code is `/docs/init.js`), no frames, and no embedding in another
/// site's frame, where the Authorize dialog could be overlaid.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 5] = [
    Asset {
        path: "/docs",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/docs/index.html"),
    },
    Asset {
        path: "/docs/init.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/docs/init.js"),
    },
    Asset {
        path: "/docs/swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    },
    Asset {
        path: "/docs/swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    },
    Asset {
        path: "/docs/favicon-32x32.png",
        content_type: "image/png",
        body: include_bytes!("../../assets/swagger-ui/favicon-32x32.png"),
    },
];

/// A strong ETag per asset, from its content: computed once, on the first request (about 2 MB
/// of SHA-256), rather than in a build script.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
        })
        .collect()
});

/// The page and its files.
pub(crate) fn routes() -> Router<AppState> {
    ASSETS.iter().enumerate().fold(Router::new(), |router, (i, asset)| {
        router.route(asset.path, get(move |headers: HeaderMap| async move { serve(i, &headers) }))
    })
}

/// Whether an `If-None-Match` header names `etag` (weak comparison, as RFC 9110 asks for it).
fn matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else { return false };
    let Ok(etag) = etag.to_str() else { return false };
    list.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn serve(i: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(i), ETAGS.get(i)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // The URLs carry no version, so a long max-age would keep an old bundle after an upgrade:
    // `no-cache` lets the browser keep its copy but ask each time, and the ETag makes that
    // question a 304 with no body.
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if request.get(header::IF_NONE_MATCH).is_some_and(|v| matches(v, etag)) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if asset.content_type.starts_with("text/html") {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    (headers, asset.body).into_response()
}
