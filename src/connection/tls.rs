//! TLS for outbound HTTP: the one TLS stack of this binary. The AWS SDK's default HTTPS client
//! already uses rustls with the aws-lc-rs provider and the system's root certificates; the
//! connection lookup (and every other reqwest client) uses exactly that, so no second TLS
//! library (OpenSSL, ring) is built.

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

/// The crypto provider every TLS client here uses (the AWS SDK's).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process's default rustls provider, which reqwest clients built without a
/// preconfigured TLS setup need (reqwest is built without a provider of its own). Idempotent;
/// call it before building any HTTP client (main does; tests' helpers do).
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        // Another thread may have won the race; either way a provider is installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// Reads every certificate of a PEM file (a CA bundle).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A client TLS configuration trusting the system's root certificates plus those of `ca_file`.
/// `need_roots`: whether an empty trust store is an error (an https backend is configured).
pub fn client_config(
    ca_file: Option<&Path>,
    need_roots: bool,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    // Unreadable or odd system certificates are skipped, as the AWS SDK does.
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "CA file {}: a certificate is not usable as a trust anchor: {e}",
                    path.display()
                )
            })?;
        }
    }
    if need_roots && roots.is_empty() {
        return Err(
            "no trusted root certificates for https backends: install the system CA bundle \
             (ca-certificates) or name a PEM file in EXECUTOR_CONNECTION_CA_FILE"
                .into(),
        );
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The lookup client speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_ca_file(&missing).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = read_ca_file(&empty).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = client_config(Some(&empty), true).unwrap_err();
        assert!(err.contains("empty.pem"), "{err}");
    }

    #[test]
    fn the_default_provider_can_be_installed_twice() {
        install_default_provider();
        install_default_provider();
        assert!(CryptoProvider::get_default().is_some());
    }
}
