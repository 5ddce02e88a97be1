//! TLS options of the connection string that the driver does not parse itself.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and rejects libpq's `verify-ca`,
//! `verify-full` and `sslrootcert`. MarketKing's `require` already verifies the certificate chain
//! and the host name (rustls), which is libpq's `verify-full`; so `verify-ca`/`verify-full` are
//! read as `require`, and `sslrootcert` (or `PGSSLROOTCERT`) names a PEM file whose certificates
//! replace the webpki roots, for servers with a private CA.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// The connection string without the options handled here, and what they asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// What is left for tokio-postgres to parse.
    pub(crate) url: String,
    /// PEM file of trusted root certificates, from the connection string.
    pub(crate) root_cert: Option<PathBuf>,
}

/// Takes `sslrootcert` out of `url` (URL or `key=value` form) and rewrites `sslmode=verify-ca`
/// and `sslmode=verify-full` to `require`.
pub(crate) fn split(url: &str) -> Result<TlsOptions> {
    let mut root_cert = None;
    let mut keep = |key: &str, value: &str| -> Result<Option<String>> {
        match key {
            "sslrootcert" => {
                if value.is_empty() {
                    return Err(Error::config("sslrootcert", "is empty; it names a PEM file of root certificates"));
                }
                root_cert = Some(PathBuf::from(value));
                Ok(None)
            }
            "sslmode" if value == "verify-ca" || value == "verify-full" => Ok(Some("require".to_string())),
            _ => Ok(Some(value.to_string())),
        }
    };
    let url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut pairs = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
                    let value = percent_decode_str(raw)
                        .decode_utf8()
                        .map_err(|_| Error::config("DATABASE_URL", format!("option `{key}` is not valid UTF-8")))?;
                    match keep(key, &value)? {
                        Some(v) if v == value => pairs.push(pair.to_string()),
                        Some(v) => pairs.push(format!("{key}={v}")),
                        None => {}
                    }
                }
                if pairs.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", pairs.join("&"))
                }
            }
        }
    } else {
        // key=value form; values with spaces (quoted) are left to the driver untouched.
        let mut parts = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((key, value)) if !value.starts_with('\'') => {
                    if let Some(v) = keep(key, value)? {
                        parts.push(format!("{key}={v}"));
                    }
                }
                _ => parts.push(token.to_string()),
            }
        }
        parts.join(" ")
    };
    Ok(TlsOptions { url, root_cert })
}

/// `PGSSLROOTCERT`, libpq's environment fallback for `sslrootcert`.
pub(crate) fn root_cert_from_env() -> Option<PathBuf> {
    std::env::var_os("PGSSLROOTCERT").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// TLS through rustls: the webpki roots, or only the certificates of `root_cert`.
pub(crate) fn connector(root_cert: Option<&Path>) -> Result<MakeRustlsConnect> {
    Ok(MakeRustlsConnect::new(crate::tls::client_config(root_cert, "sslrootcert")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tls_options_from_both_forms() {
        let o = split("postgres://u:p%3F@h:5432/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x")
            .unwrap();
        assert_eq!(o.url, "postgres://u:p%3F@h:5432/db?sslmode=require&application_name=x");
        assert_eq!(o.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        let o = split("postgres://h/db?sslrootcert=/ca.pem").unwrap();
        assert_eq!((o.url.as_str(), o.root_cert.as_deref()), ("postgres://h/db", Some(Path::new("/ca.pem"))));
        let o = split("host=h dbname=db sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert_eq!(o.url, "host=h dbname=db sslmode=require");
        assert_eq!(o.root_cert.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(split("postgres://h/db?sslmode=disable").unwrap().url, "postgres://h/db?sslmode=disable");
        assert!(matches!(split("postgres://h/db?sslrootcert="), Err(Error::Config { .. })));
    }
}
