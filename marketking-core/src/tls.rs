//! The one rustls client configuration of the crate, shared by the PostgreSQL connections and the
//! OpenAI-compatible embedder.
//!
//! Both use the `ring` provider explicitly: reqwest 0.13's default TLS feature would bring
//! aws-lc-rs as a second provider (a C build), and a process with two providers and no installed
//! default fails `ClientConfig::builder()`.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A rustls client configuration trusting the webpki roots, or only the PEM certificates in
/// `root_cert` (a private CA). `field` names the setting in errors (e.g. `sslrootcert`).
pub(crate) fn client_config(root_cert: Option<&Path>, field: &str) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::config(field, format!("cannot read {shown}: {e}")))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::config(field, format!("{shown} is not a PEM certificate file: {e}")))?;
            if certs.is_empty() {
                return Err(Error::config(field, format!("{shown} holds no certificate")));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| Error::config(field, format!("{shown}: unusable certificate: {e}")))?;
            }
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
