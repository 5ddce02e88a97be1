//! Which origins CORS allows: none, any (`*`), or a list of exact origins, validated and
//! normalised once at start-up.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::ConfigError;

/// The origins CORS allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all (browsers then refuse cross-origin calls).
    #[default]
    None,
    /// Any origin (`Access-Control-Allow-Origin: *`). Credentials (cookies) are never allowed
    /// with it; API keys in the `Authorization` header still work.
    Any,
    /// Exactly these origins, in the form browsers send (`https://app.example:8443`).
    List(Vec<HeaderValue>),
}

fn invalid(origin: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidCorsOrigin { origin: origin.to_string(), reason: reason.into() }
}

/// One origin as browsers serialise it in the `Origin` header. Case, a trailing `/` and a
/// default port are normalised away (`https://App.example:443/` is `https://app.example`);
/// anything else that could never equal an `Origin` header is refused.
fn origin(given: &str) -> Result<HeaderValue, ConfigError> {
    const FORM: &str = "an origin is scheme://host[:port], e.g. https://app.example";
    let url = match url::Url::parse(given) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => return Err(invalid(given, format!("no scheme; {FORM}"))),
        Err(e) => return Err(invalid(given, format!("not a valid URL ({e}); {FORM}"))),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(given, format!("the scheme must be http or https; {FORM}")));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(given, format!("has a path, query or fragment; {FORM}")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(given, format!("has a user name or password; {FORM}")));
    }
    let serialised = url.origin().ascii_serialization();
    HeaderValue::from_str(&serialised).map_err(|e| invalid(given, e.to_string()))
}

impl CorsOrigins {
    /// Parses origins as given on the command line: `*` alone for any origin, otherwise each
    /// must be an origin. Blank entries are ignored; none at all means no CORS.
    pub fn parse<S: AsRef<str>>(origins: &[S]) -> Result<Self, ConfigError> {
        let given: Vec<&str> = origins.iter().map(|o| o.as_ref().trim()).filter(|o| !o.is_empty()).collect();
        if given.contains(&"*") {
            return match given.iter().find(|o| **o != "*") {
                Some(other) => Err(ConfigError::CorsWildcardNotAlone { other: (*other).to_string() }),
                None => Ok(CorsOrigins::Any),
            };
        }
        let mut list: Vec<HeaderValue> = Vec::with_capacity(given.len());
        for o in given {
            let v = origin(o)?;
            if !list.contains(&v) {
                list.push(v);
            }
        }
        Ok(if list.is_empty() { CorsOrigins::None } else { CorsOrigins::List(list) })
    }

    /// The layer answering preflights and adding the headers; `None` when CORS is off.
    pub(crate) fn layer(&self, request_id: HeaderName) -> Option<CorsLayer> {
        let allow = match self {
            CorsOrigins::None => return None,
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                // Listed by name: a wildcard would not cover Authorization.
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, request_id.clone()])
                .expose_headers([request_id])
                .max_age(Duration::from_secs(600)),
        )
    }
}
