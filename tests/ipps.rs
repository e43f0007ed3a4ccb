//! IPPS: an IPP listener with `tls = { cert, key }` speaks TLS and plain
//! HTTP on one port (told apart by the first byte), or only TLS with
//! `tls-required`; real clients: curl (OpenSSL) and CUPS's ipptool (GnuTLS,
//! which needs a server that sends no TLS 1.3 session tickets).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use printroute::wire::ipp::{self as codec, Message};

/// A self-signed certificate for localhost and 127.0.0.1, made by the
/// openssl command (the daemon itself links no OpenSSL).
fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("ipp.pem"), dir.join("ipp.key"));
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

fn config(cert: &str, key: &str, required: bool) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "2s"
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]
tls = {{ cert = "{cert}", key = "{key}" }}
tls-required = {required}

[tenant.a]
name = "Tenant A"
ranges = ["127.0.0.1/32"]
workflow.archive = {{ steps = [{{ step = "store", folder = "{{dir}}/out" }}] }}
input = [{{ listener = "ipp", workflow = "archive" }}]
"#
    )
}

/// A Get-Printer-Attributes request for `uri`.
fn gpa_request(uri: &str) -> Vec<u8> {
    let mut b = vec![2, 0, 0, 0x0b, 0, 0, 0, 1, 1];
    ipp_attr(&mut b, 0x47, "attributes-charset", b"utf-8");
    ipp_attr(&mut b, 0x48, "attributes-natural-language", b"en");
    ipp_attr(&mut b, 0x45, "printer-uri", uri.as_bytes());
    ipp_attr(
        &mut b,
        0x44,
        "requested-attributes",
        b"printer-uri-supported",
    );
    ipp_attr(&mut b, 0x44, "", b"uri-security-supported");
    b.push(3);
    b
}

/// POSTs an IPP request with curl; the decoded answer, or none when curl failed.
fn curl(url: &str, body: &[u8], cacert: &str, dir: &Path) -> Option<Message> {
    let req = dir.join("request.ipp");
    std::fs::write(&req, body).unwrap();
    let out = Command::new(require("curl"))
        .args(["-s", "-f", "--max-time", "10", "--cacert", cacert])
        .args(["-H", "Content-Type: application/ipp", "--data-binary"])
        .arg(format!("@{}", req.display()))
        .arg(url)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    Some(
        codec::decode(&out.stdout, codec::RESPONSE_LIMITS)
            .expect("a well-formed IPP answer")
            .0,
    )
}

fn values(m: &Message, name: &str) -> Vec<String> {
    m.attr(4, name)
        .map(|a| {
            a.values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ipps_and_ipp_share_a_port_and_tls_required_refuses_plain_http() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let d = TestDaemon::start(&config(&cert, &key, false));
    let port = d.addr("ipp").port();
    let https = format!("https://localhost:{port}/ipp/print");
    let http = format!("http://localhost:{port}/ipp/print");
    let uri = format!("ipps://localhost:{port}/ipp/print");

    let m = curl(&https, &gpa_request(&uri), &cert, certs.path()).expect("GPA over TLS");
    assert_eq!(m.code, 0);
    assert_eq!(
        values(&m, "printer-uri-supported"),
        [
            format!("ipps://localhost:{port}/ipp/print"),
            format!("ipp://localhost:{port}/ipp/print")
        ]
    );
    assert_eq!(values(&m, "uri-security-supported"), ["tls", "none"]);
    let m = curl(&http, &gpa_request(&uri), &cert, certs.path()).expect("GPA over plain HTTP");
    assert_eq!(m.code, 0);

    // CUPS's ipptool (GnuTLS) prints over ipps to the same port.
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ipp/document-a4.pdf");
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(require("ipptool"))
        .env("HOME", home.path())
        .args(["-T", "10", "-t", "-f"])
        .arg(&doc)
        .arg(&uri)
        .args(["print-job.test", "get-printer-attributes.test"])
        .current_dir("/usr/share/cups/ipptool")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("[FAIL]"),
        "ipptool over ipps:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the ipps job stored", || {
        std::fs::read_dir(d.dir.path().join("out"))
            .ok()
            .and_then(|mut r| r.next())
            .map(|_| ())
    });

    // tls-required: TLS only.
    let d = TestDaemon::start(&config(&cert, &key, true));
    let port = d.addr("ipp").port();
    let uri = format!("ipps://localhost:{port}/ipp/print");
    let m = curl(
        &format!("https://localhost:{port}/ipp/print"),
        &gpa_request(&uri),
        &cert,
        certs.path(),
    )
    .expect("GPA over TLS");
    assert_eq!(values(&m, "uri-security-supported"), ["tls"]);
    assert!(
        curl(
            &format!("http://localhost:{port}/ipp/print"),
            &gpa_request(&uri),
            &cert,
            certs.path()
        )
        .is_none(),
        "plain HTTP refused"
    );
}
