//! IPPS: an IPP listener with `tls = { cert, key }` speaks TLS and plain
//! HTTP on one port (told apart by the first byte), or only TLS with
//! `tls-required`; real clients: curl (OpenSSL) and CUPS's ipptool (GnuTLS,
//! which needs a server that sends no TLS 1.3 session tickets) and the CUPS
//! `ipp` backend.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::web::certificate;
use common::*;
use printroute::wire::ipp::{self as codec, Message};

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
        (!stored_documents(&d.dir.path().join("out")).is_empty()).then_some(())
    });

    // The CUPS ipp backend prints over ipps too. It trusts a certificate on
    // first use and, as root, would keep it in /etc/cups/ssl: it runs as
    // nobody with a private HOME (PEERS.md).
    let user = tempfile::tempdir().unwrap();
    std::fs::set_permissions(user.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let report = user.path().join("report.pdf");
    let pdf = b"%PDF-1.4\n% over ipps from the CUPS backend\n%%EOF\n";
    std::fs::write(&report, pdf).unwrap();
    std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(require("setpriv"))
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(require("ipp"))
        .args(["1", "alice", "over ipps", "1", ""])
        .arg(&report)
        .env("DEVICE_URI", &uri)
        .env("CONTENT_TYPE", "application/pdf")
        .env("HOME", user.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CUPS ipp backend over ipps:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = sha256(pdf);
    wait_until("the backend's job stored", || {
        std::fs::read_dir(d.dir.path().join("out"))
            .ok()?
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .any(|b| sha256(&b) == want)
            .then_some(())
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

/// An `ippeveprinter` with TLS (`-K`: its own self-signed certificate).
fn tls_eve() -> EvePrinter {
    EvePrinter::launch(EveSpec {
        name: "tls",
        formats: "application/pdf",
        tls: true,
        ..EveSpec::default()
    })
}

/// `sha256:` and the SHA-256 of the certificate the printer presents
/// (asked with openssl s_client, as an admin would).
fn fingerprint(eve: &EvePrinter) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo | openssl s_client -connect 127.0.0.1:{} 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            eve.port
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().rsplit('=').next().unwrap().to_ascii_lowercase();
    assert_eq!(hex.len(), 95, "a SHA-256 fingerprint: {text:?}");
    format!("sha256:{hex}")
}

fn forward_config(port: u16, fingerprint: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "2s"
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]

[tenant.a]
name = "Tenant A"
ranges = ["127.0.0.1/32"]
device.eve = {{ uri = "ipps://localhost:{port}/ipp/print", tls-fingerprint = "{fingerprint}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["eve"] }}] }}
input = [{{ listener = "ipp", workflow = "direct" }}]
"#
    )
}

fn job_state_message(d: &TestDaemon) -> String {
    let to = d.addr("ipp");
    let mut b = vec![2, 0, 0, 0x09, 0, 0, 0, 1, 1];
    ipp_attr(&mut b, 0x47, "attributes-charset", b"utf-8");
    ipp_attr(&mut b, 0x48, "attributes-natural-language", b"en");
    ipp_attr(
        &mut b,
        0x45,
        "printer-uri",
        format!("ipp://{to}/ipp/print").as_bytes(),
    );
    ipp_attr(&mut b, 0x21, "job-id", &1i32.to_be_bytes());
    b.push(3);
    let m = curl(
        &format!("http://{to}/ipp/print"),
        &b,
        "/dev/null",
        d.dir.path(),
    )
    .expect("GJA");
    m.attr(2, "job-state-message")
        .and_then(|a| a.values.first()?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn printroute_forwards_over_ipps_to_a_printer_pinned_by_fingerprint() {
    let eve = tls_eve();
    let fp = fingerprint(&eve);
    let d = TestDaemon::start(&forward_config(eve.port, &fp));
    let pdf = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
    assert_eq!(
        ipp_print("127.0.0.1", d.addr("ipp"), pdf, Some("application/pdf")),
        0
    );
    wait_until("the document at the TLS printer", || {
        (eve.documents().len() == 1).then_some(())
    });
    // Its capabilities came over ipps too: printroute's printer mirrors it.
    let to = d.addr("ipp");
    let mut b = vec![2, 0, 0, 0x0b, 0, 0, 0, 1, 1];
    ipp_attr(&mut b, 0x47, "attributes-charset", b"utf-8");
    ipp_attr(&mut b, 0x48, "attributes-natural-language", b"en");
    ipp_attr(
        &mut b,
        0x45,
        "printer-uri",
        format!("ipp://{to}/ipp/print").as_bytes(),
    );
    ipp_attr(
        &mut b,
        0x44,
        "requested-attributes",
        b"printer-make-and-model",
    );
    b.push(3);
    wait_until("the printer to mirror the TLS printer", || {
        let m = curl(
            &format!("http://{to}/ipp/print"),
            &b,
            "/dev/null",
            d.dir.path(),
        )?;
        (values(&m, "printer-make-and-model") == ["Example Printer"]).then_some(())
    });

    // A wrong fingerprint: the job does not go, and says why.
    let wrong = format!("sha256:{}", "00:".repeat(31) + "00");
    let d = TestDaemon::start(&forward_config(eve.port, &wrong));
    assert_eq!(
        ipp_print("127.0.0.1", d.addr("ipp"), pdf, Some("application/pdf")),
        0
    );
    let msg = wait_until("the job to say why it did not go", || {
        let m = job_state_message(&d);
        m.contains("certificate").then_some(m)
    });
    assert!(msg.contains("tls-fingerprint"), "{msg}");
    assert_eq!(eve.documents().len(), 1, "nothing more reached the printer");
}
