//! Start-up configuration errors: a setting that cannot work is refused with a message naming
//! it, before the server opens the store or binds.

/// A setting of [`HttpConfig`](crate::HttpConfig) that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configured API key is too short to resist guessing. The key itself is never shown.
    #[error(
        "API key {position} (of the comma-separated list) is {length} characters long; API keys must be at \
         least {min} characters (e.g. `openssl rand -hex 32`)"
    )]
    ApiKeyTooShort {
        /// 1-based position of the key in the list.
        position: usize,
        /// Its length in characters.
        length: usize,
        /// The minimum, [`MIN_API_KEY_LEN`](crate::auth::MIN_API_KEY_LEN).
        min: usize,
    },
    /// A CORS origin that browsers would never send, so it could never match.
    #[error("invalid CORS origin {origin:?}: {reason}")]
    InvalidCorsOrigin {
        /// The origin as given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `*` was given together with other origins.
    #[error("CORS origin \"*\" allows every origin and must be given alone, not with {other:?}")]
    CorsWildcardNotAlone {
        /// One of the other origins.
        other: String,
    },
}
