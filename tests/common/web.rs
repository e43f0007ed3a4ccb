//! The admin API and portal from the outside: a test certificate made by
//! openssl, an HTTPS client (rustls) from a chosen source address, tokens
//! made by the real CLI, and a daemon whose tenants live in `tenants-dir`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use tokio_rustls::rustls;

use super::{bin, connect_from, require, TestDaemon};

/// A self-signed certificate for localhost and 127.0.0.1, made by openssl.
pub fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("web.pem"), dir.join("web.key"));
    let out = Command::new(require("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // An end entity, not a CA: webpki refuses a CA certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

/// An HTTPS client that trusts exactly the test's certificate.
pub struct Api {
    pub addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

/// An answer: status, headers (lower-case names) and body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Api {
    pub fn new(addr: SocketAddr, cert: &str) -> Api {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Api {
            addr,
            tls: Arc::new(tls),
        }
    }

    /// One API request from `from` over its own TLS connection, with a
    /// bearer token and a JSON body if given.
    pub fn call(
        &self,
        from: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.request(from, method, path, &headers, body.as_bytes())
    }

    /// Whether a TLS handshake from `from` succeeds (the server's
    /// certificate is the one this client trusts).
    pub fn handshake_ok(&self, from: &str) -> bool {
        let mut tcp = connect_from(from, self.addr).unwrap();
        let mut conn = rustls::ClientConnection::new(
            self.tls.clone(),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                return false;
            }
        }
        true
    }

    /// One request from `from` with these headers and body.
    pub fn request(
        &self,
        from: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let tcp = connect_from(from, self.addr).unwrap();
        let conn = rustls::ClientConnection::new(
            self.tls.clone(),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        // A peer that closes without close_notify is an error to rustls; the
        // answer is whole by then (Connection: close).
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}

/// The main config: one RAW listener, the admin API with TLS, tenants in
/// `tenants_dir`, and `extra` (tenants of the main file).
pub fn main_config(cert: &str, key: &str, tenants_dir: &Path, extra: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/control.sock"
tenants-dir = "{}"
[global.web]
bind = "127.0.0.1:0"
tls = {{ cert = "{cert}", key = "{key}" }}
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
{extra}
"#,
        tenants_dir.display()
    )
}

/// Where a test keeps what is not the daemon's: the certificate and the
/// tenants' files (`tenants.d`).
pub struct Aside {
    pub dir: tempfile::TempDir,
}

impl Aside {
    pub fn tenant_file(&self, id: &str) -> PathBuf {
        self.dir.path().join("tenants.d").join(format!("{id}.toml"))
    }
}

/// Starts a daemon whose tenants-dir holds `files` (name, text).
pub fn start(extra: &str, files: &[(&str, String)]) -> (TestDaemon, Api, Aside) {
    let aside = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(aside.path());
    let tdir = aside.path().join("tenants.d");
    std::fs::create_dir_all(&tdir).unwrap();
    for (name, text) in files {
        std::fs::write(tdir.join(name), text).unwrap();
    }
    let d = TestDaemon::start(&main_config(&cert, &key, &tdir, extra));
    let api = Api::new(d.addr("web"), &cert);
    (d, api, Aside { dir: aside })
}

/// A token made with the CLI (`--tenant T` or `--global`).
pub fn token(d: &TestDaemon, scope: &[&str], extra: &[&str]) -> String {
    let out = Command::new(bin())
        .args(["token", "create", "--name", "test"])
        .args(scope)
        .args(extra)
        .arg("--config")
        .arg(&d.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
