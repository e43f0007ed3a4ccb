//! IPP in and out with the real binary and real peers: CUPS's ipptool
//! conformance suites, the CUPS `ipp` backend printing through printroute
//! to a real `ippeveprinter`, two tenants side by side, hostile clients.
//!
//! Requests of the Rust clients here are built by a small encoder of this
//! file (not printroute's), so a codec bug cannot hide itself.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use printroute::wire::ipp::{self as codec, Message, Value};

// ---------------------------------------------------------------------------
// A small IPP request encoder (RFC 8010 section 3) and HTTP/1.1 client.

const PRINT_JOB: u16 = 0x0002;
const VALIDATE_JOB: u16 = 0x0004;
const CANCEL_JOB: u16 = 0x0008;
const GET_JOB_ATTRIBUTES: u16 = 0x0009;
const GET_JOBS: u16 = 0x000a;
const GET_PRINTER_ATTRIBUTES: u16 = 0x000b;
const RELEASE_JOB: u16 = 0x000d;

const OK: u16 = 0x0000;
const BAD_REQUEST: u16 = 0x0400;
const NOT_AUTHORIZED: u16 = 0x0403;
const NOT_FOUND: u16 = 0x0406;
const ENTITY_TOO_LARGE: u16 = 0x0408;
const VALUE_TOO_LONG: u16 = 0x0409;
const BUSY: u16 = 0x0507;

/// An IPP request under construction, as raw bytes.
struct Enc(Vec<u8>);

impl Enc {
    fn new(op: u16, request_id: i32) -> Enc {
        let mut b = vec![2, 0];
        b.extend_from_slice(&op.to_be_bytes());
        b.extend_from_slice(&request_id.to_be_bytes());
        Enc(b)
    }
    /// The usual operation group: charset, language, printer-uri, user.
    fn op(op: u16, printer_uri: &str, user: &str) -> Enc {
        Enc::new(op, 1)
            .group(1)
            .s(0x47, "attributes-charset", "utf-8")
            .s(0x48, "attributes-natural-language", "en")
            .s(0x45, "printer-uri", printer_uri)
            .s(0x42, "requesting-user-name", user)
    }
    fn group(mut self, tag: u8) -> Enc {
        self.0.push(tag);
        self
    }
    fn raw(mut self, tag: u8, name: &str, value: &[u8]) -> Enc {
        self.0.push(tag);
        self.0.extend_from_slice(&(name.len() as u16).to_be_bytes());
        self.0.extend_from_slice(name.as_bytes());
        self.0
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.0.extend_from_slice(value);
        self
    }
    fn s(self, tag: u8, name: &str, v: &str) -> Enc {
        self.raw(tag, name, v.as_bytes())
    }
    fn int(self, name: &str, v: i32) -> Enc {
        self.raw(0x21, name, &v.to_be_bytes())
    }
    fn end(mut self) -> Vec<u8> {
        self.0.push(3);
        self.0
    }
}

/// One HTTP/1.1 connection from a chosen source address.
struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

/// An HTTP response.
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

impl Http {
    fn open(from: &str, to: SocketAddr) -> Http {
        let s = connect_from(from, to).unwrap();
        Http {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            host: to.to_string(),
        }
    }

    fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<HttpResponse> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        // One write: a second small one would wait for the delayed ACK of
        // the first (Nagle), which only slows the test down.
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        self.writer.write_all(&all)?;
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<HttpResponse> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        Ok(HttpResponse { status, body })
    }

    /// Posts an IPP request and decodes the IPP response.
    fn ipp(&mut self, path: &str, body: &[u8]) -> Message {
        let r = self.post(path, body).expect("IPP response");
        assert_eq!(r.status, 200, "HTTP status");
        codec::decode(&r.body, codec::RESPONSE_LIMITS)
            .expect("a well-formed IPP response")
            .0
    }
}

/// One IPP request on a fresh connection from `from`.
fn ipp(from: &str, to: SocketAddr, path: &str, body: &[u8]) -> Message {
    Http::open(from, to).ipp(path, body)
}

fn job_ints(m: &Message, name: &str) -> Vec<i32> {
    m.groups
        .iter()
        .filter(|g| g.tag == 2)
        .flat_map(|g| g.attributes.iter().filter(|a| a.name == name))
        .flat_map(|a| a.values.iter().filter_map(Value::as_int))
        .collect()
}

fn job_str(m: &Message, name: &str) -> Option<String> {
    m.attr(2, name)?.values.first()?.as_str().map(str::to_owned)
}

fn print_job(
    from: &str,
    to: SocketAddr,
    path: &str,
    user: &str,
    name: &str,
    doc: &[u8],
) -> Message {
    let uri = format!("ipp://{to}{path}");
    let mut body = Enc::op(PRINT_JOB, &uri, user)
        .s(0x42, "job-name", name)
        .s(0x49, "document-format", "application/octet-stream")
        .end();
    body.extend_from_slice(doc);
    ipp(from, to, path, &body)
}

fn job_op(op: u16, from: &str, to: SocketAddr, id: i32) -> Message {
    job_op_as(op, from, to, id, "someone")
}

/// A job operation as `user` (the job's owner may cancel, hold and release it).
fn job_op_as(op: u16, from: &str, to: SocketAddr, id: i32, user: &str) -> Message {
    let uri = format!("ipp://{to}/ipp/print");
    ipp(
        from,
        to,
        "/ipp/print",
        &Enc::op(op, &uri, user).int("job-id", id).end(),
    )
}

fn document(seed: u32, size: usize) -> Vec<u8> {
    let mut d = b"%!PS-Adobe-3.0\n".to_vec();
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    while d.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d.push(x as u8);
    }
    d
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ipp")
}

/// Runs ipptool; returns (exit success, output).
fn ipptool(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new(require("ipptool"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn count(text: &str, what: &str) -> usize {
    text.lines().filter(|l| l.contains(what)).count()
}

// ---------------------------------------------------------------------------
// Configs.

/// Tenant a owns 127.0.0.1 (ipptool and the CUPS backend cannot bind a
/// source address) and 127.0.1.0/24; tenant b owns 127.0.2.0/24.
fn config(a_workflow: &str, b_workflow: &str, extra: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "2s"
[global.limits]
idle-timeout = "3s"
max-job-size = "1 MiB"
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]

[tenant.a]
name = "Tenant A"
ranges = ["127.0.0.1/32", "127.0.1.0/24"]
workflow.archive = {{ steps = [{{ step = "store", folder = "{{dir}}/out-a" }}] }}
workflow.held = {{ steps = [{{ step = "hold" }}, {{ step = "store", folder = "{{dir}}/out-a" }}] }}
input = [{{ listener = "ipp", workflow = "{a_workflow}" }}, {{ listener = "ipp", queue = "secure", workflow = "held" }}]

[tenant.b]
name = "Tenant B"
ranges = ["127.0.2.0/24"]
workflow.archive = {{ steps = [{{ step = "store", folder = "{{dir}}/out-b" }}] }}
workflow.held = {{ steps = [{{ step = "hold" }}, {{ step = "store", folder = "{{dir}}/out-b" }}] }}
input = [{{ listener = "ipp", workflow = "{b_workflow}" }}]
{extra}
"#
    )
}

// ---------------------------------------------------------------------------
// Conformance.

#[test]
fn cups_ipptool_conformance_suites_pass() {
    let d = TestDaemon::start(&config("archive", "archive", ""));
    let uri = format!("ipp://{}/ipp/print", d.addr("ipp"));
    let dir = data_dir();
    let doc = dir.join("document-a4.pdf");
    let doc = doc.to_str().unwrap();
    let (ok, out) = ipptool(&["-R", "-t", "-f", doc, &uri, "ipp-2.0.test"], &dir);
    assert!(ok, "ipp-2.0.test (with ipp-1.1.test) failed:\n{out}");
    assert_eq!(count(&out, "[FAIL]"), 0, "{out}");
    // 39 tests of ipp-1.1 and the PWG 5100.12 one of ipp-2.0 apply to a
    // printer like ours; the rest are skipped by the suites for optional
    // features we do not advertise (Print-URI, Send-URI, copies, duplex, 2-up, ...).
    assert!(count(&out, "[PASS]") >= 40, "{out}");
    assert!(out.contains("PWG 5100.12 section 6.2 - Required Printer Description Attributes"));

    let suites = Path::new("/usr/share/cups/ipptool");
    for t in [
        "print-job.test",
        "validate-job.test",
        "create-job.test",
        "get-jobs.test",
        "get-completed-jobs.test",
        "get-printer-attributes.test",
        "print-job-hold.test",
    ] {
        let (ok, out) = ipptool(&["-R", "-t", "-f", doc, &uri, t], suites);
        assert!(ok && count(&out, "[FAIL]") == 0, "{t} failed:\n{out}");
        assert!(count(&out, "[PASS]") >= 1, "{t}:\n{out}");
    }
}

// ---------------------------------------------------------------------------
// Out: the CUPS ipp backend -> printroute -> ippeveprinter.

#[test]
fn cups_ipp_backend_prints_through_printroute_to_ippeveprinter() {
    let eve = EvePrinter::start();
    let extra = format!(
        r#"
[tenant.a.device.eve]
uri = "{}"
[tenant.a.workflow.direct]
steps = [{{ step = "forward", devices = ["eve"] }}]
"#,
        eve.uri()
    );
    let d = TestDaemon::start(&config("direct", "archive", &extra));
    let mut doc = b"%PDF-1.4\n".to_vec();
    doc.extend_from_slice(&document(7, 300_000)[15..]);
    doc.extend_from_slice(b"\n%%EOF\n");
    let file = d.dir.path().join("report.pdf");
    std::fs::write(&file, &doc).unwrap();
    let out = Command::new(require("ipp"))
        .env("DEVICE_URI", format!("ipp://{}/ipp/print", d.addr("ipp")))
        .env("CONTENT_TYPE", "application/pdf")
        .args(["1", "alice", "quarterly report", "1", ""])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CUPS ipp backend failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The document arrives byte-identical at the downstream printer.
    let want = sha256(&doc);
    let (name, _) = wait_until("the document at ippeveprinter", || {
        eve.documents().into_iter().find(|(_, d)| sha256(d) == want)
    });
    assert!(name.contains("quarterly"), "job name carried over: {name}");

    // User and job name carried over: ask the downstream printer itself.
    let printer = format!("127.0.0.1:{}", eve.port).parse().unwrap();
    let m = ipp(
        "127.0.0.1",
        printer,
        "/ipp/print",
        &Enc::op(GET_JOBS, &eve.uri(), "checker")
            .s(0x44, "which-jobs", "all")
            .s(0x44, "requested-attributes", "job-name")
            .s(0x44, "", "job-originating-user-name")
            .end(),
    );
    assert_eq!(m.code, OK);
    assert_eq!(job_str(&m, "job-name").as_deref(), Some("quarterly report"));
    assert_eq!(
        job_str(&m, "job-originating-user-name").as_deref(),
        Some("alice")
    );

    // printroute's own record says completed, for alice.
    let m = job_op(GET_JOB_ATTRIBUTES, "127.0.0.1", d.addr("ipp"), 1);
    assert_eq!(m.code, OK);
    assert_eq!(
        job_str(&m, "job-originating-user-name").as_deref(),
        Some("alice")
    );
    wait_until("printroute job 1 completed", || {
        let m = job_op(GET_JOB_ATTRIBUTES, "127.0.0.1", d.addr("ipp"), 1);
        (job_ints(&m, "job-state") == [9]).then_some(())
    });
}

// ---------------------------------------------------------------------------
// Tenants.

#[test]
fn each_tenant_sees_and_touches_only_its_own_jobs() {
    let d = TestDaemon::start(&config("held", "held", ""));
    let to = d.addr("ipp");
    for i in 0..2 {
        let m = print_job(
            "127.0.1.10",
            to,
            "/ipp/print",
            "alice",
            &format!("a{i}"),
            &document(i, 5000),
        );
        assert_eq!(m.code, OK);
        assert_eq!(job_ints(&m, "job-id"), [i as i32 + 1]);
    }
    for i in 0..3 {
        let m = print_job(
            "127.0.2.10",
            to,
            "/ipp/print",
            "bob",
            &format!("b{i}"),
            &document(10 + i, 5000),
        );
        assert_eq!(m.code, OK);
        assert_eq!(
            job_ints(&m, "job-id"),
            [i as i32 + 1],
            "job ids count per tenant"
        );
    }
    let jobs = |from: &str| {
        let uri = format!("ipp://{to}/ipp/print");
        let m = ipp(
            from,
            to,
            "/ipp/print",
            &Enc::op(GET_JOBS, &uri, "x")
                .s(0x44, "which-jobs", "all")
                .s(0x44, "requested-attributes", "job-id")
                .s(0x44, "", "job-originating-user-name")
                .s(0x44, "", "job-state")
                .end(),
        );
        assert_eq!(m.code, OK);
        m
    };
    wait_until("jobs held", || {
        (job_ints(&jobs("127.0.2.11"), "job-state") == [4, 4, 4]).then_some(())
    });
    let a = jobs("127.0.1.11");
    let mut ids = job_ints(&a, "job-id");
    ids.sort();
    assert_eq!(ids, [1, 2], "tenant a sees its two jobs only");
    let users: Vec<_> = a
        .groups
        .iter()
        .filter_map(|g| g.get("job-originating-user-name"))
        .filter_map(|x| x.values[0].as_str().map(str::to_owned))
        .collect();
    assert_eq!(users, ["alice", "alice"]);
    let b = jobs("127.0.2.11");
    assert_eq!(job_ints(&b, "job-id").len(), 3);

    // Tenant b's job 3 is invisible and untouchable from tenant a.
    for op in [GET_JOB_ATTRIBUTES, CANCEL_JOB, RELEASE_JOB] {
        let m = job_op(op, "127.0.1.12", to, 3);
        assert_eq!(m.code, NOT_FOUND, "op 0x{op:04x} on another tenant's job");
    }
    // Only its owner may cancel a's job 1; that leaves b's job 1 alone.
    assert_eq!(
        job_op_as(CANCEL_JOB, "127.0.1.12", to, 1, "mallory").code,
        NOT_AUTHORIZED
    );
    assert_eq!(
        job_op_as(RELEASE_JOB, "127.0.1.12", to, 1, "mallory").code,
        NOT_AUTHORIZED
    );
    assert_eq!(job_op_as(CANCEL_JOB, "127.0.1.12", to, 1, "alice").code, OK);
    let m = job_op(GET_JOB_ATTRIBUTES, "127.0.2.12", to, 1);
    assert_eq!(job_ints(&m, "job-state"), [4], "b's job 1 still held");
    let m = job_op(GET_JOB_ATTRIBUTES, "127.0.2.12", to, 3);
    assert_eq!(job_ints(&m, "job-state"), [4], "b's job 3 still held");
    let m = job_op(GET_JOB_ATTRIBUTES, "127.0.1.12", to, 1);
    assert_eq!(job_ints(&m, "job-state"), [7], "a's job 1 canceled");

    // Release-Job lets b's own job go on to its store step.
    assert_eq!(job_op_as(RELEASE_JOB, "127.0.2.12", to, 3, "bob").code, OK);
    wait_until("b's job 3 completed", || {
        let m = job_op(GET_JOB_ATTRIBUTES, "127.0.2.12", to, 3);
        (job_ints(&m, "job-state") == [9]).then_some(())
    });
    let stored = wait_until("stored document", || {
        Some(stored_documents(&d.dir.path().join("out-b")).len()).filter(|&n| n >= 1)
    });
    assert_eq!(stored, 1);
    assert!(!d.dir.path().join("out-a").exists());
}

#[test]
fn strangers_unknown_printers_and_busy_tenants_get_ipp_errors() {
    let extra = r#"
[tenant.c]
name = "Tenant C"
ranges = ["127.0.3.0/24"]
limits = { max-connections = 1 }
workflow.archive = { steps = [{ step = "store", folder = "{dir}/out-c" }] }
input = [{ listener = "ipp", workflow = "archive" }]
"#;
    let d = TestDaemon::start(&config("archive", "archive", extra));
    let to = d.addr("ipp");
    let uri = format!("ipp://{to}/ipp/print");
    let gpa = Enc::op(GET_PRINTER_ATTRIBUTES, &uri, "x").end();
    assert_eq!(
        ipp("127.0.9.9", to, "/ipp/print", &gpa).code,
        NOT_AUTHORIZED
    );
    let m = print_job(
        "127.0.9.9",
        to,
        "/ipp/print",
        "eve",
        "x",
        &document(1, 100_000),
    );
    assert_eq!(m.code, NOT_AUTHORIZED);
    assert_eq!(
        ipp("127.0.1.5", to, "/ipp/print/nope", &gpa).code,
        NOT_FOUND
    );
    assert_eq!(
        ipp("127.0.2.5", to, "/printers/secure", &gpa).code,
        NOT_FOUND,
        "b has no queue 'secure'"
    );
    assert_eq!(ipp("127.0.1.5", to, "/printers/secure", &gpa).code, OK);
    assert_eq!(ipp("127.0.1.5", to, "/ipp/print/secure", &gpa).code, OK);

    // Tenant c at max-connections: a second connection hears server-error-busy.
    let mut first = Http::open("127.0.3.5", to);
    assert_eq!(first.ipp("/ipp/print", &gpa).code, OK);
    assert_eq!(ipp("127.0.3.6", to, "/ipp/print", &gpa).code, BUSY);
    assert_eq!(first.ipp("/ipp/print", &gpa).code, OK, "keep-alive goes on");

    // A document over max-job-size (1 MiB) is refused and leaves nothing.
    let m = print_job(
        "127.0.1.5",
        to,
        "/ipp/print",
        "big",
        "big",
        &document(2, 1_200_000),
    );
    assert_eq!(m.code, ENTITY_TOO_LARGE);
    wait_until("spool clean", || {
        d.spool_files("a").is_empty().then_some(())
    });
}

// ---------------------------------------------------------------------------
// Hostile clients.

fn malformed(seed: u32) -> Vec<u8> {
    let valid = Enc::op(VALIDATE_JOB, "ipp://x/ipp/print", "m")
        .s(0x42, "job-name", "x")
        .end();
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    match seed % 4 {
        // Truncated.
        0 => valid[..(next() as usize % (valid.len() - 1))].to_vec(),
        // One byte changed (and the end tag dropped, so it cannot parse as valid).
        1 => {
            let mut v = valid[..valid.len() - 1].to_vec();
            let i = 8 + next() as usize % (v.len() - 8);
            v[i] = next() as u8;
            v
        }
        // Garbage.
        2 => (0..(next() % 300)).map(|_| next() as u8).collect(),
        // A bad tag where the first group should start.
        _ => {
            let mut v = valid.clone();
            v[8] = [0x00, 0x7f, 0x37, 0x4a][(next() % 4) as usize];
            v
        }
    }
}

#[test]
fn hostile_clients_get_errors_while_another_tenant_keeps_printing() {
    let d = TestDaemon::start(&config("archive", "archive", ""));
    let to = d.addr("ipp");
    let uri = format!("ipp://{to}/ipp/print");

    // A well-behaved client of tenant b prints all along.
    let printer = std::thread::spawn(move || {
        for i in 0..30u32 {
            let m = print_job(
                "127.0.2.20",
                to,
                "/ipp/print",
                "bob",
                &format!("b{i}"),
                &document(i, 20_000),
            );
            assert_eq!(m.code, OK, "tenant b's job {i}");
        }
    });

    // Slow headers: connections that trickle their request line hold no
    // worker and are closed after the header timeout.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = connect_from(&format!("127.0.1.{}", 100 + i), to).unwrap();
            s.write_all(b"POST /ipp/print HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();

    // Wrong tags and lengths, deep collections, huge values.
    let base = || {
        Enc::new(GET_PRINTER_ATTRIBUTES, 1)
            .group(1)
            .s(0x47, "attributes-charset", "utf-8")
            .s(0x48, "attributes-natural-language", "en")
            .s(0x45, "printer-uri", &uri)
    };
    let wrong_length = base().raw(0x21, "copies", &[0, 1, 2]).end();
    assert_eq!(
        ipp("127.0.1.30", to, "/ipp/print", &wrong_length).code,
        BAD_REQUEST
    );
    let bad_boolean = base().raw(0x22, "my-jobs", &[7]).end();
    assert_eq!(
        ipp("127.0.1.30", to, "/ipp/print", &bad_boolean).code,
        BAD_REQUEST
    );
    let mut deep = base().raw(0x34, "media-col", &[]);
    for _ in 0..200 {
        deep = deep.raw(0x4a, "", b"m").raw(0x34, "", &[]);
    }
    assert_eq!(
        ipp("127.0.1.31", to, "/ipp/print", &deep.end()).code,
        BAD_REQUEST
    );
    let huge = base().s(0x41, "job-name", &"x".repeat(30_000)).end();
    assert_eq!(
        ipp("127.0.1.32", to, "/ipp/print", &huge).code,
        VALUE_TOO_LONG
    );
    let mut many = base();
    for i in 0..20_000 {
        many = many.int(&format!("a{}", i % 50), i);
    }
    let m = ipp("127.0.1.33", to, "/ipp/print", &many.end());
    assert_eq!(m.code, ENTITY_TOO_LARGE);
    // An HTTP header past its limit gets 431 and the connection ends.
    let mut h = Http::open("127.0.1.36", to);
    let big = format!(
        "POST /ipp/print HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(40_000)
    );
    h.writer.write_all(big.as_bytes()).unwrap();
    assert_eq!(h.read_response().unwrap().status, 431);
    // A Content-Length the body never reaches: the connection ends, nothing more.
    let mut cut = connect_from("127.0.1.34", to).unwrap();
    cut.write_all(b"POST /ipp/print HTTP/1.1\r\nHost: x\r\nContent-Type: application/ipp\r\nContent-Length: 100\r\n\r\n\x02\x00\x00\x0b")
        .unwrap();
    drop(cut);
    // A truncated document: the job is not kept.
    let mut cut = connect_from("127.0.1.35", to).unwrap();
    let mut req = Enc::op(PRINT_JOB, &uri, "mallory").end();
    req.extend_from_slice(&document(3, 50_000));
    cut.write_all(
        format!(
            "POST /ipp/print HTTP/1.1\r\nHost: x\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
            req.len() + 100_000
        )
        .as_bytes(),
    )
    .unwrap();
    cut.write_all(&req).unwrap();
    drop(cut);

    // 1,000 malformed requests over keep-alive connections.
    let mut errors = 0;
    let mut conn = Http::open("127.0.1.40", to);
    for seed in 1..=1000u32 {
        let r = match conn.post("/ipp/print", &malformed(seed)) {
            Ok(r) => r,
            Err(_) => {
                conn = Http::open("127.0.1.40", to);
                conn.post("/ipp/print", &malformed(seed)).unwrap()
            }
        };
        assert_eq!(r.status, 200);
        let (m, _) = codec::decode(&r.body, codec::RESPONSE_LIMITS).unwrap();
        assert!(
            m.code >= 0x0400,
            "malformed request {seed} got status 0x{:04x}",
            m.code
        );
        errors += 1;
    }
    assert_eq!(errors, 1000);

    // The slow-header connections are closed by the daemon.
    for s in &mut slow {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(_) | Err(_) => {}
        }
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "slow-header connection still open"
        );
    }

    printer.join().unwrap();
    // Still serving, and tenant a kept no partial documents.
    let m = ipp("127.0.1.50", to, "/ipp/print", &base().end());
    assert_eq!(m.code, OK);
    wait_until("no partial spool files of tenant a", || {
        d.spool_files("a").is_empty().then_some(())
    });
    d.wait_log("job finished tenant=b job=30");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

// ---------------------------------------------------------------------------
// HTTP/1.1 features clients rely on.

#[test]
fn chunked_document_after_100_continue_is_stored_byte_identical() {
    let cfg = config("archive", "archive", "")
        .replace("max-job-size = \"1 MiB\"", "max-job-size = \"64 MiB\"");
    let d = TestDaemon::start(&cfg);
    let to = d.addr("ipp");
    let uri = format!("ipp://{to}/ipp/print");
    let doc = document(42, 24 << 20);
    let mut s = connect_from("127.0.1.60", to).unwrap();
    s.write_all(
        format!(
            "POST /ipp/print HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/ipp\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // RFC 9110 section 10.1.1: the client waits for 100 Continue before the body.
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "got {line:?}");
    reader.read_line(&mut line).unwrap();
    let head = Enc::op(PRINT_JOB, &uri, "carol")
        .s(0x42, "job-name", "big chunked")
        .end();
    let mut body = head;
    body.extend_from_slice(&doc);
    // Chunks of odd sizes, so the IPP message ends in the middle of one.
    for chunk in body.chunks(65_521) {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        s.write_all(chunk).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let mut http = Http {
        reader,
        writer: s,
        host: to.to_string(),
    };
    let r = http.read_response().unwrap();
    assert_eq!(r.status, 200);
    let (m, _) = codec::decode(&r.body, codec::RESPONSE_LIMITS).unwrap();
    assert_eq!(m.code, OK);
    assert_eq!(job_ints(&m, "job-id"), [1]);
    // The same keep-alive connection takes the next request.
    let m = http.ipp(
        "/ipp/print",
        &Enc::op(GET_JOB_ATTRIBUTES, &uri, "carol")
            .int("job-id", 1)
            .end(),
    );
    assert_eq!(
        job_str(&m, "job-originating-user-name").as_deref(),
        Some("carol")
    );
    assert_eq!(job_str(&m, "job-name").as_deref(), Some("big chunked"));
    let want = sha256(&doc);
    wait_until("the stored document", || {
        let rd = std::fs::read_dir(d.dir.path().join("out-a")).ok()?;
        rd.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .any(|data| sha256(&data) == want)
            .then_some(())
    });
}

#[test]
fn create_job_send_document_close_job_hold_and_cancel_my_jobs() {
    const CREATE_JOB: u16 = 0x0005;
    const SEND_DOCUMENT: u16 = 0x0006;
    const CANCEL_MY_JOBS: u16 = 0x0039;
    const CLOSE_JOB: u16 = 0x003b;
    let d = TestDaemon::start(&config("archive", "archive", ""));
    let to = d.addr("ipp");
    let uri = format!("ipp://{to}/ipp/print");
    let mut c = Http::open("127.0.1.70", to);
    // Create-Job with job-hold-until=indefinite (a Job Template attribute).
    let m = c.ipp(
        "/ipp/print",
        &Enc::op(CREATE_JOB, &uri, "dave")
            .s(0x42, "job-name", "two step")
            .group(2)
            .s(0x44, "job-hold-until", "indefinite")
            .end(),
    );
    assert_eq!(m.code, OK);
    let id = job_ints(&m, "job-id")[0];
    // Send-Document without last-document is a bad request (RFC 8011 4.3.1).
    let mut no_last = Enc::op(SEND_DOCUMENT, &uri, "dave").int("job-id", id).end();
    no_last.extend_from_slice(b"%!PS\n");
    assert_eq!(c.ipp("/ipp/print", &no_last).code, BAD_REQUEST);
    // The document, not the last one; then Close-Job commits the job.
    let doc = document(5, 30_000);
    let mut send = Enc::op(SEND_DOCUMENT, &uri, "dave")
        .int("job-id", id)
        .raw(0x22, "last-document", &[0])
        .end();
    send.extend_from_slice(&doc);
    assert_eq!(c.ipp("/ipp/print", &send).code, OK);
    let m = c.ipp(
        "/ipp/print",
        &Enc::op(CLOSE_JOB, &uri, "dave").int("job-id", id).end(),
    );
    assert_eq!(m.code, OK);
    wait_until("job held", || {
        let m = job_op(GET_JOB_ATTRIBUTES, "127.0.1.71", to, id);
        (job_ints(&m, "job-state") == [4]).then_some(())
    });
    // Another user's job on the same printer.
    let m = print_job(
        "127.0.1.72",
        to,
        "/ipp/print/secure",
        "erin",
        "erin's",
        &document(6, 1000),
    );
    assert_eq!(m.code, OK);
    // Cancel-My-Jobs cancels dave's jobs of this printer only.
    let m = c.ipp("/ipp/print", &Enc::op(CANCEL_MY_JOBS, &uri, "dave").end());
    assert_eq!(m.code, OK);
    let m = job_op(GET_JOB_ATTRIBUTES, "127.0.1.71", to, id);
    assert_eq!(job_ints(&m, "job-state"), [7]);
    let erin = job_ints(
        &job_op(GET_JOB_ATTRIBUTES, "127.0.1.71", to, id + 1),
        "job-state",
    );
    assert_eq!(erin, [4], "erin's job on the held queue stays held");
    wait_until("spool holds only erin's document", || {
        (d.spool_files("a").len() == 1).then_some(())
    });
}

#[test]
fn a_busy_ipp_printer_gets_the_job_again_until_it_takes_it() {
    // A print command that takes a while: ippeveprinter answers
    // server-error-busy to a second job meanwhile.
    let script = tempfile::tempdir().unwrap();
    let slow = script.path().join("slow-print");
    std::fs::write(&slow, "#!/bin/sh\nsleep 2\n").unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&slow)
        .status()
        .unwrap();
    let eve = EvePrinter::start_with_command(slow.to_str().unwrap());
    // Two devices of one tenant at the same printer: each has its own
    // one-at-a-time permit, so the two jobs reach the printer together.
    let cfg = format!(
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
ranges = ["127.0.0.1/32", "127.0.1.0/24"]
device.eve1 = {{ uri = "{uri}" }}
device.eve2 = {{ uri = "{uri}" }}
workflow.one = {{ steps = [{{ step = "forward", devices = ["eve1"] }}] }}
workflow.two = {{ steps = [{{ step = "forward", devices = ["eve2"] }}] }}
input = [
  {{ listener = "ipp", queue = "one", workflow = "one" }},
  {{ listener = "ipp", queue = "two", workflow = "two" }},
]
"#,
        uri = eve.uri()
    );
    let d = TestDaemon::start(&cfg);
    let to = d.addr("ipp");
    let docs: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let mut doc = b"%PDF-1.4\n".to_vec();
            doc.extend_from_slice(&document(100 + i, 50_000)[15..]);
            doc
        })
        .collect();
    for (i, q) in ["one", "two"].iter().enumerate() {
        let path = format!("/ipp/print/{q}");
        let m = print_job("127.0.1.80", to, &path, "frank", q, &docs[i]);
        assert_eq!(m.code, OK);
    }
    for doc in &docs {
        let want = sha256(doc);
        wait_until("both documents at the printer", || {
            eve.documents()
                .iter()
                .any(|(_, d)| sha256(d) == want)
                .then_some(())
        });
    }
    for id in [1, 2] {
        wait_until("printroute jobs completed", || {
            // A job's URI path (/jobs/N) reaches the job whatever its printer.
            let path = format!("/jobs/{id}");
            let uri = format!("ipp://{to}{path}");
            let m = ipp(
                "127.0.1.81",
                to,
                &path,
                &Enc::new(GET_JOB_ATTRIBUTES, 1)
                    .group(1)
                    .s(0x47, "attributes-charset", "utf-8")
                    .s(0x48, "attributes-natural-language", "en")
                    .s(0x45, "job-uri", &uri)
                    .end(),
            );
            (job_ints(&m, "job-state") == [9]).then_some(())
        });
    }
    assert!(
        d.log().contains("printer is busy"),
        "one job met server-error-busy and was retried:\n{}",
        d.log()
    );
}

#[test]
fn held_jobs_stay_held_across_a_restart_and_print_when_released() {
    let mut d = TestDaemon::start(&config("archive", "archive", ""));
    let to = d.addr("ipp");
    // One job held by its workflow (queue "secure"), one by its client (job-hold-until).
    let by_workflow = document(8, 2000);
    let m = print_job(
        "127.0.1.80",
        to,
        "/ipp/print/secure",
        "frank",
        "held by workflow",
        &by_workflow,
    );
    assert_eq!(m.code, OK);
    let id1 = job_ints(&m, "job-id")[0];
    let by_client = document(9, 3000);
    let uri = format!("ipp://{to}/ipp/print");
    let mut body = Enc::op(PRINT_JOB, &uri, "frank")
        .s(0x42, "job-name", "held by client")
        .s(0x49, "document-format", "application/octet-stream")
        .group(2)
        .s(0x44, "job-hold-until", "indefinite")
        .end();
    body.extend_from_slice(&by_client);
    let m = ipp("127.0.1.80", to, "/ipp/print", &body);
    assert_eq!(m.code, OK);
    let id2 = job_ints(&m, "job-id")[0];
    let state = |to: SocketAddr, id: i32| {
        job_ints(
            &job_op(GET_JOB_ATTRIBUTES, "127.0.1.81", to, id),
            "job-state",
        )
    };
    wait_until("both jobs held", || {
        (state(to, id1) == [4] && state(to, id2) == [4]).then_some(())
    });

    assert_eq!(d.stop(), 0);
    d.spawn();
    let to = d.addr("ipp");
    // Give the restarted dispatcher its moment; the jobs must still be held.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(state(to, id1), [4], "workflow hold survives the restart");
    assert_eq!(state(to, id2), [4], "client hold survives the restart");

    for id in [id1, id2] {
        assert_eq!(
            job_op_as(RELEASE_JOB, "127.0.1.81", to, id, "frank").code,
            OK
        );
    }
    wait_until("both released jobs completed", || {
        (state(to, id1) == [9] && state(to, id2) == [9]).then_some(())
    });
    let stored: Vec<Vec<u8>> = stored_documents(&d.dir.path().join("out-a"))
        .into_iter()
        .map(|(_, data)| data)
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&by_workflow) && stored.contains(&by_client));
}

#[test]
fn a_job_no_device_takes_in_time_falls_back_to_hold_and_prints_when_released() {
    let mut dev = SocatDevice::start("127.0.1.50");
    dev.down();
    let cfg = format!(
        r#"
[global]
data-dir = "{{data}}"
[global.limits]
delivery-timeout = "1s"
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
device.floor = {{ uri = "{}" }}
workflow.pull = {{ steps = [{{ step = "forward", devices = ["floor"], fallback = "hold" }}] }}
input = [{{ listener = "ipp", workflow = "pull" }}]
"#,
        dev.uri()
    );
    let d = TestDaemon::start(&cfg);
    let to = d.addr("ipp");
    let doc = document(11, 5000);
    let m = print_job("127.0.1.9", to, "/ipp/print", "gina", "pull print", &doc);
    assert_eq!(m.code, OK);
    let id = job_ints(&m, "job-id")[0];
    let state = || {
        job_ints(
            &job_op(GET_JOB_ATTRIBUTES, "127.0.1.9", to, id),
            "job-state",
        )
    };
    wait_until("job held after delivery-timeout", || {
        (state() == [4]).then_some(())
    });
    dev.up();
    assert_eq!(job_op_as(RELEASE_JOB, "127.0.1.9", to, id, "gina").code, OK);
    dev.wait_for_digests(&[sha256(&doc)]);
    wait_until("job completed", || (state() == [9]).then_some(()));
}

#[test]
fn get_jobs_lists_a_printers_jobs_in_id_order_by_owner_state_and_limit() {
    let mut d = TestDaemon::start(&config("held", "held", ""));
    let to = d.addr("ipp");
    let owner = |id: i32| if id % 2 == 1 { "alice" } else { "bob" };
    let print = |to: SocketAddr, id: i32, path: &str| {
        let m = print_job(
            "127.0.1.90",
            to,
            path,
            owner(id),
            &format!("j{id}"),
            &document(id as u32, 3000),
        );
        assert_eq!(m.code, OK);
        assert_eq!(job_ints(&m, "job-id"), [id]);
    };
    // Get-Jobs as `user` at `path` (printer-uri the same), with extra
    // operation attributes.
    let get_jobs = |to: SocketAddr, path: &str, user: &str, extra: &dyn Fn(Enc) -> Enc| {
        let uri = format!("ipp://{to}{path}");
        let m = ipp(
            "127.0.1.91",
            to,
            path,
            &extra(Enc::op(GET_JOBS, &uri, user)).end(),
        );
        assert_eq!(m.code, OK, "Get-Jobs at {path}");
        m
    };
    let ids = |m: &Message| job_ints(m, "job-id");
    let none = |e: Enc| e;
    let limit = |n: i32| move |e: Enc| e.int("limit", n);

    for id in 1..=4 {
        print(to, id, "/ipp/print");
    }
    // The first listing reads what is queued; later jobs join it as they commit.
    assert_eq!(ids(&get_jobs(to, "/ipp/print", "x", &none)), [1, 2, 3, 4]);
    for id in 5..=6 {
        print(to, id, "/ipp/print");
    }
    for id in 7..=8 {
        print(to, id, "/ipp/print/secure");
    }
    assert_eq!(job_op_as(CANCEL_JOB, "127.0.1.92", to, 2, "bob").code, OK);

    let check = |to: SocketAddr| {
        // The default answer: job-id and job-uri of each not-completed job
        // of this printer, oldest first.
        let m = get_jobs(to, "/ipp/print", "x", &none);
        assert_eq!(ids(&m), [1, 3, 4, 5, 6]);
        for g in m.groups.iter().filter(|g| g.tag == 2) {
            let names: Vec<&str> = g.attributes.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(names, ["job-id", "job-uri"]);
            let id = g.get("job-id").unwrap().values[0].as_int().unwrap();
            let uri = g.get("job-uri").unwrap().values[0].as_str().unwrap();
            assert!(uri.ends_with(&format!("/jobs/{id}")), "{uri} of job {id}");
        }
        assert_eq!(ids(&get_jobs(to, "/ipp/print", "x", &limit(3))), [1, 3, 4]);
        assert_eq!(ids(&get_jobs(to, "/ipp/print/secure", "x", &none)), [7, 8]);
        // my-jobs: the requesting user's only.
        let mine = |e: Enc| e.raw(0x22, "my-jobs", &[1]);
        assert_eq!(ids(&get_jobs(to, "/ipp/print", "alice", &mine)), [1, 3, 5]);
        let mine_1 = |e: Enc| e.raw(0x22, "my-jobs", &[1]).int("limit", 1);
        assert_eq!(ids(&get_jobs(to, "/ipp/print", "bob", &mine_1)), [4]);
        assert!(ids(&get_jobs(to, "/ipp/print", "carol", &mine)).is_empty());
        // which-jobs: completed ones (the canceled one), and all.
        let completed = |e: Enc| e.s(0x44, "which-jobs", "completed");
        assert_eq!(ids(&get_jobs(to, "/ipp/print", "x", &completed)), [2]);
        let all = |e: Enc| e.s(0x44, "which-jobs", "all");
        assert_eq!(
            ids(&get_jobs(to, "/ipp/print", "x", &all)),
            [1, 3, 4, 5, 6, 2]
        );
        // Every printer of the listener, at the server's job URI.
        assert_eq!(ids(&get_jobs(to, "/", "x", &none)), [1, 3, 4, 5, 6, 7, 8]);
        assert_eq!(ids(&get_jobs(to, "/", "x", &limit(6))), [1, 3, 4, 5, 6, 7]);
        // More than ids: the same jobs, with what their records say.
        let described = |e: Enc| {
            e.raw(0x22, "my-jobs", &[1])
                .int("limit", 2)
                .s(0x44, "requested-attributes", "job-id")
                .s(0x44, "", "job-state")
                .s(0x44, "", "job-originating-user-name")
                .s(0x44, "", "job-name")
        };
        let m = get_jobs(to, "/ipp/print", "alice", &described);
        assert_eq!(ids(&m), [1, 3]);
        assert_eq!(job_ints(&m, "job-state"), [4, 4], "both held");
        let text = |name: &str| -> Vec<String> {
            m.groups
                .iter()
                .filter_map(|g| g.get(name))
                .filter_map(|a| a.values[0].as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(text("job-originating-user-name"), ["alice", "alice"]);
        assert_eq!(text("job-name"), ["j1", "j3"]);
    };
    check(to);
    // After a restart the listing is built again from the records.
    assert_eq!(d.stop(), 0);
    d.spawn();
    check(d.addr("ipp"));
}

#[test]
fn get_jobs_lists_completed_jobs_newest_first_past_a_backlog_of_held_ones() {
    let mut d = TestDaemon::start(&config("held", "held", ""));
    let to = d.addr("ipp");
    let owner = |id: i32| if id % 2 == 1 { "alice" } else { "bob" };
    let print = |to: SocketAddr, id: i32, path: &str| {
        let m = print_job(
            "127.0.1.93",
            to,
            path,
            owner(id),
            &format!("j{id}"),
            &document(id as u32, 500),
        );
        assert_eq!(m.code, OK);
        assert_eq!(job_ints(&m, "job-id"), [id]);
    };
    let cancel = |to: SocketAddr, id: i32| {
        let m = job_op_as(CANCEL_JOB, "127.0.1.94", to, id, owner(id));
        assert_eq!(m.code, OK, "Cancel-Job {id}");
    };
    let get_jobs = |to: SocketAddr, path: &str, user: &str, extra: &dyn Fn(Enc) -> Enc| {
        let uri = format!("ipp://{to}{path}");
        let body = extra(Enc::op(GET_JOBS, &uri, user).s(0x44, "which-jobs", "completed"));
        let m = ipp("127.0.1.95", to, path, &body.end());
        assert_eq!(m.code, OK, "Get-Jobs at {path}");
        job_ints(&m, "job-id")
    };
    let none = |e: Enc| e;

    for id in 1..=6 {
        print(to, id, "/ipp/print");
    }
    for id in 7..=8 {
        print(to, id, "/ipp/print/secure");
    }
    for id in [2, 3, 5, 7] {
        cancel(to, id);
    }
    // The first listing builds the index; the backlog comes after it.
    assert_eq!(get_jobs(to, "/ipp/print", "x", &none), [5, 3, 2]);
    // A backlog of held jobs newer than every finished one, one of them
    // canceled in its midst.
    for id in 9..=258 {
        print(to, id, "/ipp/print");
    }
    cancel(to, 130);

    let check = |to: SocketAddr| {
        // RFC 8011 section 4.2.6.2: completed jobs, most recent first.
        assert_eq!(get_jobs(to, "/ipp/print", "x", &none), [130, 5, 3, 2]);
        let limit = |n: i32| move |e: Enc| e.int("limit", n);
        assert_eq!(get_jobs(to, "/ipp/print", "x", &limit(2)), [130, 5]);
        assert_eq!(get_jobs(to, "/ipp/print", "x", &limit(1)), [130]);
        // Of this printer only, or of every printer at the server's URI.
        assert_eq!(get_jobs(to, "/ipp/print/secure", "x", &none), [7]);
        assert_eq!(get_jobs(to, "/", "x", &none), [130, 7, 5, 3, 2]);
        assert_eq!(get_jobs(to, "/", "x", &limit(3)), [130, 7, 5]);
        // my-jobs: the requesting user's only.
        let mine = |e: Enc| e.raw(0x22, "my-jobs", &[1]);
        assert_eq!(get_jobs(to, "/ipp/print", "alice", &mine), [5, 3]);
        assert_eq!(get_jobs(to, "/ipp/print", "bob", &mine), [130, 2]);
        assert_eq!(get_jobs(to, "/", "alice", &mine), [7, 5, 3]);
        assert!(get_jobs(to, "/ipp/print", "carol", &mine).is_empty());
        // What their records say: canceled.
        let uri = format!("ipp://{to}/ipp/print");
        let m = ipp(
            "127.0.1.95",
            to,
            "/ipp/print",
            &Enc::op(GET_JOBS, &uri, "x")
                .s(0x44, "which-jobs", "completed")
                .int("limit", 2)
                .s(0x44, "requested-attributes", "job-id")
                .s(0x44, "", "job-state")
                .end(),
        );
        assert_eq!(job_ints(&m, "job-id"), [130, 5]);
        assert_eq!(job_ints(&m, "job-state"), [7, 7]);
        // which-jobs=all: the held ones in id order, then these.
        let all = Enc::op(GET_JOBS, &format!("ipp://{to}/ipp/print/secure"), "x")
            .s(0x44, "which-jobs", "all")
            .end();
        let m = ipp("127.0.1.95", to, "/ipp/print/secure", &all);
        assert_eq!(job_ints(&m, "job-id"), [8, 7]);
    };
    check(to);
    // After a restart the index is built again from the records.
    assert_eq!(d.stop(), 0);
    d.spawn();
    let to = d.addr("ipp");
    check(to);
    // A job that finishes after the walk has passed its id is listed.
    cancel(to, 257);
    assert_eq!(get_jobs(to, "/ipp/print", "x", &none), [257, 130, 5, 3, 2]);
}

#[test]
fn get_jobs_lists_only_the_jobs_of_the_listener_it_is_asked_on() {
    const CREATE_JOB: u16 = 0x0005;
    // One tenant behind two IPP listeners, each with its default printer.
    let cfg = config("held", "held", "")
        .replace(
            "[tenant.a]",
            "[[listener]]\nname = \"ipp2\"\nprotocol = \"ipp\"\nbind = [\"127.0.0.1:0\"]\n\n[tenant.a]",
        )
        .replace(
            "input = [{ listener = \"ipp\", workflow = \"held\" }, ",
            "input = [{ listener = \"ipp2\", workflow = \"held\" }, { listener = \"ipp\", workflow = \"held\" }, ",
        );
    let d = TestDaemon::start(&cfg);
    let (one, two) = (d.addr("ipp"), d.addr("ipp2"));
    let get_jobs = |to: SocketAddr, which: &str| {
        let uri = format!("ipp://{to}/ipp/print");
        let body = Enc::op(GET_JOBS, &uri, "x")
            .s(0x44, "which-jobs", which)
            .end();
        let m = ipp("127.0.1.96", to, "/ipp/print", &body);
        assert_eq!(m.code, OK);
        job_ints(&m, "job-id")
    };
    // Job 1 held on the first listener, job 2 canceled on the second,
    // job 3 created there and still open (its document not sent).
    let m = print_job("127.0.1.97", one, "/ipp/print", "alice", "a", b"%!PS\n");
    assert_eq!(job_ints(&m, "job-id"), [1]);
    let m = print_job("127.0.1.97", two, "/ipp/print", "alice", "b", b"%!PS\n");
    assert_eq!(job_ints(&m, "job-id"), [2]);
    assert_eq!(
        job_op_as(CANCEL_JOB, "127.0.1.97", two, 2, "alice").code,
        OK
    );
    let uri = format!("ipp://{two}/ipp/print");
    let m = ipp(
        "127.0.1.97",
        two,
        "/ipp/print",
        &Enc::op(CREATE_JOB, &uri, "alice")
            .s(0x42, "job-name", "c")
            .end(),
    );
    assert_eq!(job_ints(&m, "job-id"), [3]);
    assert_eq!(get_jobs(one, "not-completed"), [1]);
    assert_eq!(get_jobs(two, "not-completed"), [3]);
    assert_eq!(get_jobs(one, "completed"), Vec::<i32>::new());
    assert_eq!(get_jobs(two, "completed"), [2]);
    assert_eq!(get_jobs(one, "all"), [1]);
    assert_eq!(get_jobs(two, "all"), [3, 2]);
    // Cancel-My-Jobs on the first listener's printer cancels alice's job
    // there, not her open one of the same printer name on the second.
    const CANCEL_MY_JOBS: u16 = 0x0039;
    let uri = format!("ipp://{one}/ipp/print");
    let m = ipp(
        "127.0.1.97",
        one,
        "/ipp/print",
        &Enc::op(CANCEL_MY_JOBS, &uri, "alice").end(),
    );
    assert_eq!(m.code, OK);
    assert_eq!(get_jobs(one, "not-completed"), Vec::<i32>::new());
    assert_eq!(get_jobs(one, "completed"), [1]);
    assert_eq!(get_jobs(two, "not-completed"), [3]);
}

#[test]
fn a_job_seen_completed_is_listed_so_at_once() {
    // ipptool's ipp-1.1 suite does this: Get-Job-Attributes until the job
    // is completed, then Get-Jobs which-jobs=completed must list it (and
    // not-completed, the default, must not).
    let d = TestDaemon::start(&config("archive", "archive", ""));
    let to = d.addr("ipp");
    let uri = format!("ipp://{to}/ipp/print");
    for n in 1..=20 {
        let m = print_job(
            "127.0.1.98",
            to,
            "/ipp/print",
            "alice",
            "j",
            &document(n, 2000),
        );
        assert_eq!(m.code, OK);
        let id = job_ints(&m, "job-id")[0];
        let mut c = Http::open("127.0.1.98", to);
        // Asked again at once, not after a pause: the first answer that
        // says completed comes as soon as the record says so.
        let start = std::time::Instant::now();
        loop {
            let m = c.ipp(
                "/ipp/print",
                &Enc::op(GET_JOB_ATTRIBUTES, &uri, "alice")
                    .int("job-id", id)
                    .end(),
            );
            if job_ints(&m, "job-state") == [9] {
                break;
            }
            assert!(start.elapsed() < WAIT, "job {id} not completed");
        }
        let m = c.ipp(
            "/ipp/print",
            &Enc::op(GET_JOBS, &uri, "alice")
                .s(0x44, "which-jobs", "completed")
                .int("limit", 1)
                .end(),
        );
        assert_eq!(job_ints(&m, "job-id"), [id], "job {id} completed");
        let m = c.ipp("/ipp/print", &Enc::op(GET_JOBS, &uri, "alice").end());
        assert!(job_ints(&m, "job-id").is_empty(), "job {id} not completed");
    }
}
