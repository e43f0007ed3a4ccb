//! TLS on IPP listeners (`ipps`): the server configuration built from a
//! listener's `tls = { cert, key }` (rustls, ring provider), read again for
//! each new snapshot so that a reload picks up renewed certificates, and
//! telling a TLS connection from plain HTTP by its first byte, as CUPS does
//! (a TLS record starts with the handshake content type, 0x16).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::ids::ListenerName;
use crate::config::TlsFiles;

/// The first byte of a TLS connection: a handshake record (RFC 8446 section 5.1).
pub const TLS_HANDSHAKE: u8 = 0x16;

/// Acceptors by listener, built once per snapshot.
#[derive(Default)]
pub struct Acceptors {
    built: Mutex<HashMap<ListenerName, (SystemTime, TlsFiles, TlsAcceptor)>>,
}

impl Acceptors {
    /// The acceptor of a listener's certificate as of the snapshot loaded
    /// at `loaded_at`; an error names the file that could not be used.
    pub fn get(
        &self,
        listener: &ListenerName,
        files: &TlsFiles,
        loaded_at: SystemTime,
    ) -> Result<TlsAcceptor, String> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, f, a)) = built.get(listener) {
            if *at == loaded_at && f == files {
                return Ok(a.clone());
            }
        }
        let acceptor = TlsAcceptor::from(Arc::new(server_config(files)?));
        built.insert(
            listener.clone(),
            (loaded_at, files.clone(), acceptor.clone()),
        );
        Ok(acceptor)
    }
}

/// The rustls server configuration of a certificate and key.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    // CUPS 2.4's ipptool (GnuTLS) gets no answer from a TLS 1.3 server that
    // sends session tickets (PEERS.md): send none.
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
