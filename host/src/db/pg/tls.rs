//! TLS to PostgreSQL through rustls. The server's certificate is always verified against
//! the system's roots (and `[state] ca-file`) and its host name: a connection that is
//! encrypted but unauthenticated would hand the database password to whoever answers.

use std::path::Path;
use std::sync::Arc;

use super::PgError;

pub(super) fn connector(
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| PgError::Tls(format!("cannot read ca-file {}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| {
                PgError::Tls(format!(
                    "ca-file {} holds a bad certificate: {e}",
                    path.display()
                ))
            })?;
            roots
                .add(cert)
                .map_err(|e| PgError::Tls(format!("ca-file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
