//! TLS to `ipps://` devices (rustls, ring): the device's certificate is
//! checked against the system roots, a CA file (`tls-ca`), its own SHA-256
//! (`tls-fingerprint`, for the self-signed certificates most printers
//! have), or not at all (`tls-verify = false`). A certificate that fails
//! its check is the device's permanent error, with the reason.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_rustls::TlsConnector;

use super::device::{SendError, CONNECT_TIMEOUT};
use crate::config::TlsVerify;

/// The system's trusted CA certificates (Debian's `ca-certificates`).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts a certificate by its SHA-256, or any (`expected` none); the
/// handshake's signatures are checked all the same.
#[derive(Debug)]
struct Pinned {
    expected: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.expected {
            None => Ok(ServerCertVerified::assertion()),
            Some(fp) if Sha256::digest(end_entity.as_ref()).as_slice() == fp => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(format!(
                "the device's certificate has SHA-256 {}, not the configured tls-fingerprint",
                hex(&Sha256::digest(end_entity.as_ref()))
            ))),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn roots(file: &std::path::Path) -> Result<RootCertStore, SendError> {
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| SendError::Rejected(format!("TLS: cannot read {}: {e}", file.display())))?;
    for c in certs.flatten() {
        let _ = store.add(c);
    }
    if store.is_empty() {
        return Err(SendError::Rejected(format!(
            "TLS: no CA certificate in {}",
            file.display()
        )));
    }
    Ok(store)
}

/// The client configuration for a device's `TlsVerify`.
fn client_config(verify: &TlsVerify) -> Result<ClientConfig, SendError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Rejected(format!("TLS: {e}")))?;
    let mut config = match verify {
        TlsVerify::SystemRoots => builder
            .with_root_certificates(roots(std::path::Path::new(SYSTEM_ROOTS))?)
            .with_no_client_auth(),
        TlsVerify::Ca(file) => builder
            .with_root_certificates(roots(file)?)
            .with_no_client_auth(),
        TlsVerify::Fingerprint(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                expected: Some(*fp),
                provider: provider(),
            }))
            .with_no_client_auth(),
        TlsVerify::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                expected: None,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS over a connected stream to `host`. A certificate that fails its
/// check is [`SendError::Rejected`] (permanent) with the reason; other
/// handshake failures are I/O errors (retried).
pub async fn handshake(
    stream: TcpStream,
    host: &str,
    verify: &TlsVerify,
) -> Result<TlsStream<TcpStream>, SendError> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| SendError::Rejected(format!("TLS: {host:?} is not a server name")))?;
    let connector = TlsConnector::from(Arc::new(client_config(verify)?));
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
        Err(_) => Err(SendError::Timeout("TLS handshake")),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let reason = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .filter(|r| {
                    matches!(
                        r,
                        rustls::Error::InvalidCertificate(_) | rustls::Error::General(_)
                    )
                })
                .map(ToString::to_string);
            match reason {
                Some(r) => Err(SendError::Rejected(format!(
                    "TLS: the device's certificate failed verification: {r}"
                ))),
                None => Err(SendError::Io(e)),
            }
        }
    }
}
