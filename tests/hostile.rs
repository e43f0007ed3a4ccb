//! A hostile tenant, operation by operation: tenant beta aims every
//! operation a client or an admin can issue at tenant alpha's queues,
//! printers, job ids, users, devices and tenant id, and must get exactly the
//! answer it gets for an object that does not exist, and change nothing of
//! alpha's.
//!
//! One table, one row per (operation, way of aiming it): each row runs the
//! request aimed at alpha's real object and the same request aimed at a
//! name nobody has (`nosuch-*`, job id 999999), from beta's address or as
//! beta's tenant admin, and compares the two answers after normalising only
//! what must differ (the echoed names, listed per row); then alpha's
//! fingerprint (its records as the global admin sees them, its spool files,
//! its device, its store folder, its own IPP and LPD views) must be
//! unchanged. The table is checked for completeness against the running
//! daemon's IPP `operations-supported`, the CLI's subcommands, the LPD
//! command codes 01-05 and the receive-job subcommands 01-03: an operation
//! without a row fails the test.
//!
//! Job ids are per tenant, so beta's own jobs (some rows make them) take
//! ids 1, 2, ... too. Alpha first takes [`BURNED_IDS`] ids (Create-Job, then
//! Cancel-Job of the open job, which keeps nothing), so that alpha's job ids
//! name no job of beta's; the test checks that beta stayed below them.
//!
//! What is normalised, and nothing else: in CLI answers, the echoed tenant
//! id, job id, device and user names become `<tenant>`, `<id>`, `<device>`,
//! `<user>` (whole tokens only); in IPP answers to a request that makes a
//! job of beta's, `job-id` and `job-uri` (beta's next id); in printer
//! attributes, `printer-up-time`. Both variants of an IPP row send the same
//! request-id. LPD answers are compared byte for byte, up to the close.
//! Commands without an object (`status`, `tenants`, `jobs`) compare beta's
//! view with the global admin's view less alpha (less `uptime-seconds`, and
//! with `listeners` null, which only a global admin is shown); `reload`
//! must be refused as for every tenant admin; commands that never talk to
//! the daemon (`serve`, `check`, `which`, `export`, `generate-assets`, `help`) must
//! make no control request. RAW has no object names: a job claiming
//! alpha's user and job name must get the answer (an orderly close) a job
//! claiming a user nobody has gets, and land in beta's store as beta's.
//!
//! IPP requests are built by a small encoder of this file, not printroute's.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::*;
use printroute::wire::ipp::{self as codec, Message, Value};
use serde_json::Value as Json;

const A_TENANT: &str = "alpha";
const B_TENANT: &str = "beta";
/// Alpha's clients and device; beta's clients.
const A_IP: &str = "127.0.5.2";
const A_DEVICE_IP: &str = "127.0.5.50";
const B_IP: &str = "127.0.6.2";
/// Alpha's tenant admin (a name in its config; it needs no account) and
/// beta's (a unix account the CLI rows run as).
const A_ADMIN: &str = "prt-alpha-admin";
const B_ADMIN: &str = "prt-beta-admin";
/// The owner of alpha's jobs.
const A_USER: &str = "alice";
const A_QUEUE: &str = "alpha-secure";
const A_ARCHIVE_QUEUE: &str = "alpha-archive";
const A_DEVICE: &str = "alpha-printer";
const A_LPD_HOST: &str = "alphahost";
const B_QUEUE: &str = "beta-queue";

/// Names nobody has.
const NO_TENANT: &str = "nosuch-tenant";
const NO_QUEUE: &str = "nosuch-queue";
const NO_USER: &str = "nosuch-user";
const NO_DEVICE: &str = "nosuch-device";
const NO_HOST: &str = "nosuchhost";
const NO_ID: u32 = 999_999;

/// Ids alpha takes before its real jobs, above any id beta's rows reach.
const BURNED_IDS: usize = 100;

/// The request-id of every IPP request here: both variants of a row send
/// the same one, so it needs no normalising.
const REQUEST_ID: i32 = 7;

// IPP operation codes (RFC 8011 section 5.4.15, PWG 5100.11).
const PRINT_JOB: u16 = 0x0002;
const VALIDATE_JOB: u16 = 0x0004;
const CREATE_JOB: u16 = 0x0005;
const SEND_DOCUMENT: u16 = 0x0006;
const CANCEL_JOB: u16 = 0x0008;
const GET_JOB_ATTRIBUTES: u16 = 0x0009;
const GET_JOBS: u16 = 0x000a;
const GET_PRINTER_ATTRIBUTES: u16 = 0x000b;
const HOLD_JOB: u16 = 0x000c;
const RELEASE_JOB: u16 = 0x000d;
const CANCEL_MY_JOBS: u16 = 0x0039;
const CLOSE_JOB: u16 = 0x003b;
const IDENTIFY_PRINTER: u16 = 0x003c;
// Server operations (PWG 5100.22 Get-Printers; CUPS's own extensions).
const GET_PRINTERS: u16 = 0x004f;
const CUPS_GET_DEFAULT: u16 = 0x4001;
const CUPS_GET_PRINTERS: u16 = 0x4002;

// ---------------------------------------------------------------------------
// The daemon and its accounts.

fn config(device: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/run/control.sock"
shutdown-grace = "2s"
[global.limits]
idle-timeout = "5s"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:0"]
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]

[tenant.{A_TENANT}]
name = "Tenant Alpha"
ranges = ["127.0.5.0/24"]
admins = {{ unix-users = ["{A_ADMIN}"] }}
device.{A_DEVICE} = {{ uri = "{device}" }}
workflow.held = {{ steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["{A_DEVICE}"] }}] }}
workflow.archive = {{ steps = [{{ step = "store", folder = "{{dir}}/out-alpha" }}] }}
input = [
  {{ listener = "raw", workflow = "held" }},
  {{ listener = "lpd", queue = "{A_QUEUE}", workflow = "held" }},
  {{ listener = "lpd", queue = "{A_ARCHIVE_QUEUE}", workflow = "archive" }},
  {{ listener = "ipp", queue = "{A_QUEUE}", workflow = "held" }},
]

[tenant.{B_TENANT}]
name = "Tenant Beta"
ranges = ["127.0.6.0/24"]
admins = {{ unix-users = ["{B_ADMIN}"] }}
workflow.archive = {{ steps = [{{ step = "store", folder = "{{dir}}/out-beta" }}] }}
input = [
  {{ listener = "raw", workflow = "archive" }},
  {{ listener = "lpd", queue = "{B_QUEUE}", workflow = "archive" }},
  {{ listener = "ipp", queue = "{B_QUEUE}", workflow = "archive" }},
]
"#
    )
}

fn ensure_account(user: &str) {
    let exists = Command::new("getent")
        .args(["passwd", user])
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        assert!(
            Command::new(require("useradd"))
                .args(["--no-create-home", "--shell", "/usr/sbin/nologin", user])
                .status()
                .unwrap()
                .success(),
            "useradd {user} (run the tests as root)"
        );
    }
}

/// How a CLI run ended.
struct CliOut {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the CLI as `user` ("root" or an account, with its groups).
fn cli_as(user: &str, args: &[&str]) -> CliOut {
    let mut c = if user == "root" {
        Command::new(bin())
    } else {
        let mut c = Command::new(require("setpriv"));
        c.args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            bin(),
        ]);
        c
    };
    let out = c.args(args).output().unwrap();
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Replaces whole-token occurrences of each `(word, placeholder)`; a token
/// is a run of ASCII letters, digits, `-` and `_`, so `alpha` is replaced
/// in `alpha/101` but not in `alpha-printer`.
fn replace_tokens(text: &str, subs: &[(&str, &str)]) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::new();
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match subs.iter().find(|(w, _)| *w == token.as_str()) {
            Some((_, p)) => out.push_str(p),
            None => out.push_str(token),
        }
        token.clear();
    };
    for c in text.chars() {
        if is_word(c) {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Clients: LPD, IPP, HTTP.

/// A step of an LPD conversation.
enum Lpd {
    /// Bytes to send.
    Send(Vec<u8>),
    /// One answer octet to read.
    Answer,
}

/// Runs an LPD conversation from `from`; returns what the daemon said: each
/// answer octet (or its absence), then everything up to its close.
fn lpd(from: &str, to: SocketAddr, steps: &[Lpd]) -> String {
    let mut s = connect_from(from, to).unwrap();
    let mut said = Vec::new();
    for step in steps {
        match step {
            Lpd::Send(b) => {
                if s.write_all(b).is_err() {
                    said.push("send failed".to_owned());
                }
            }
            Lpd::Answer => {
                let mut b = [0u8; 1];
                said.push(match s.read(&mut b) {
                    Ok(1) => format!("octet {}", b[0]),
                    Ok(_) => "closed".to_owned(),
                    Err(e) => format!("error {:?}", e.kind()),
                });
            }
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => said.push(format!("then {:?}", String::from_utf8_lossy(&rest))),
        Err(e) => said.push(format!("then error {:?}", e.kind())),
    }
    said.join("; ")
}

/// A one-line LPD command (RFC 1179 section 5) and the daemon's whole answer.
fn lpd_command(from: &str, to: SocketAddr, line: &str) -> String {
    lpd(from, to, &[Lpd::Send(line.as_bytes().to_vec())])
}

/// An LPD control file: host, owner, job name, one `l` line per data file.
fn control_file(host: &str, user: &str, name: &str, data_file: &str) -> Vec<u8> {
    format!("H{host}\nP{user}\nJ{name}\nl{data_file}\n").into_bytes()
}

/// The steps sending one file (RFC 1179 sections 6.2, 6.3) and reading both answers.
fn lpd_file(code: u8, name: &str, bytes: &[u8]) -> Vec<Lpd> {
    let mut body = bytes.to_vec();
    body.push(0);
    vec![
        Lpd::Send(format!("{}{} {name}\n", code as char, bytes.len()).into_bytes()),
        Lpd::Answer,
        Lpd::Send(body),
        Lpd::Answer,
    ]
}

/// The steps opening a receive-job session on `queue`.
fn lpd_receive(queue: &str) -> Vec<Lpd> {
    vec![
        Lpd::Send(format!("\x02{queue}\n").into_bytes()),
        Lpd::Answer,
    ]
}

/// An IPP request under construction, as raw bytes (RFC 8010 section 3).
struct Enc(Vec<u8>);

impl Enc {
    fn new(op: u16) -> Enc {
        let mut b = vec![2, 0];
        b.extend_from_slice(&op.to_be_bytes());
        b.extend_from_slice(&REQUEST_ID.to_be_bytes());
        Enc(b).group(1).s(0x47, "attributes-charset", "utf-8").s(
            0x48,
            "attributes-natural-language",
            "en",
        )
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
    fn boolean(self, name: &str, v: bool) -> Enc {
        self.raw(0x22, name, &[u8::from(v)])
    }
    fn user(self, user: &str) -> Enc {
        self.s(0x42, "requesting-user-name", user)
    }
    fn end(mut self) -> Vec<u8> {
        self.0.push(3);
        self.0
    }
    /// Ends the message and appends a document.
    fn with_document(self, doc: &[u8]) -> Vec<u8> {
        let mut b = self.end();
        b.extend_from_slice(doc);
        b
    }
}

/// An HTTP answer: status, `Connection` header, body.
struct HttpAnswer {
    status: u16,
    connection: String,
    body: Vec<u8>,
}

/// Most header lines of an HTTP answer read before giving up.
const MAX_HEADERS: usize = 100;

/// One HTTP/1.1 request on a fresh connection from `from`.
fn http(from: &str, to: SocketAddr, method: &str, path: &str, body: &[u8]) -> HttpAnswer {
    let s = connect_from(from, to).unwrap();
    let mut all = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    all.extend_from_slice(body);
    (&s).write_all(&all).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let (mut len, mut connection) = (0usize, String::new());
    for n in 0.. {
        assert!(n < MAX_HEADERS, "more than {MAX_HEADERS} HTTP header lines");
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            } else if k.eq_ignore_ascii_case("connection") {
                connection = v.trim().to_owned();
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    HttpAnswer {
        status,
        connection,
        body,
    }
}

fn ipp(from: &str, to: SocketAddr, path: &str, body: &[u8]) -> Message {
    let a = http(from, to, "POST", path, body);
    assert_eq!(a.status, 200, "HTTP status of an IPP request");
    codec::decode(&a.body, codec::RESPONSE_LIMITS)
        .expect("a well-formed IPP response")
        .0
}

/// What an IPP answer says, whole: HTTP status, `Connection`, the decoded
/// message, with the values of the attributes named in `blank` replaced by
/// a placeholder. Most rows blank nothing.
fn ipp_answer(a: HttpAnswer, blank: &[&str]) -> String {
    let mut msg = codec::decode(&a.body, codec::RESPONSE_LIMITS)
        .unwrap_or_else(|e| panic!("a well-formed IPP response: {e}"))
        .0;
    for attr in msg.groups.iter_mut().flat_map(|g| g.attributes.iter_mut()) {
        if blank.contains(&attr.name.as_str()) {
            attr.values = vec![Value::keyword("<normalised>")];
        }
    }
    format!("HTTP {} (Connection: {:?}) {msg:?}", a.status, a.connection)
}

/// Blanked in the answer to a job-creating request: a new job of beta's
/// gets beta's next id, so its id and URI differ between the variants.
const NEW_JOB: &[&str] = &["job-id", "job-uri"];

/// Blanked in a printer's attributes: its up-time in seconds, which the
/// two variants' answers may straddle.
const UP_TIME: &[&str] = &["printer-up-time", "printer-current-time"];

fn job_id_of(m: &Message) -> u32 {
    match m.attr(2, "job-id").and_then(|a| a.values.first()) {
        Some(Value::Integer(n)) => *n as u32,
        _ => panic!("no job-id in {m:?}"),
    }
}

// ---------------------------------------------------------------------------
// Alpha's state and its fingerprint.

/// Runs `f` with the id of an open job of alpha's (made by Create-Job, its
/// document not sent yet: it lives in memory, not in the store), checks
/// that alpha's own view of it is unchanged afterwards, and has alpha
/// cancel it (which keeps nothing).
fn with_open_alpha_job(ipp_addr: SocketAddr, f: impl FnOnce(u32) -> String) -> String {
    let path = format!("/ipp/print/{A_QUEUE}");
    let uri = format!("ipp://{ipp_addr}{path}");
    let created = ipp(
        A_IP,
        ipp_addr,
        &path,
        &Enc::new(CREATE_JOB)
            .s(0x45, "printer-uri", &uri)
            .user(A_USER)
            .s(0x42, "job-name", "alpha open job")
            .end(),
    );
    assert_eq!(created.code, 0, "alpha's Create-Job: {created:?}");
    let id = job_id_of(&created);
    let view = || {
        let body = Enc::new(GET_JOB_ATTRIBUTES)
            .s(0x45, "printer-uri", &uri)
            .int("job-id", id as i32)
            .user(A_USER)
            .end();
        ipp_answer(
            http(A_IP, ipp_addr, "POST", &path, &body),
            &["job-printer-up-time"],
        )
    };
    let before = view();
    let answer = f(id);
    assert_eq!(view(), before, "alpha's open job {id}");
    let canceled = ipp(
        A_IP,
        ipp_addr,
        &path,
        &Enc::new(CANCEL_JOB)
            .s(0x45, "printer-uri", &uri)
            .int("job-id", id as i32)
            .user(A_USER)
            .end(),
    );
    assert_eq!(canceled.code, 0, "alpha cancels its open job: {canceled:?}");
    answer
}

/// Everything of alpha's that another tenant must not change.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    /// Its job records as the global admin sees them (`jobs --tenant alpha --json`).
    records: String,
    /// Its spool documents: name and SHA-256.
    spool: Vec<(String, String)>,
    /// What its device received.
    device: Vec<String>,
    /// Its store folder: name and SHA-256.
    folder: Vec<(String, String)>,
    /// Its own IPP view: Get-Jobs (all) on its printer, without the up-time.
    ipp_jobs: String,
    /// Its own LPD view: the long queue state of its queue.
    lpq: String,
    /// When the config was last loaded (a reload would change it).
    config_loaded: Json,
}

fn folder_digests(dir: &Path) -> Vec<(String, String)> {
    stored_documents(dir)
        .iter()
        .map(|(p, data)| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, sha256(data))
        })
        .collect()
}

struct World<'a> {
    d: &'a TestDaemon,
    device: &'a SocatDevice,
    sock: String,
    /// Alpha's held jobs: from RAW, LPD, IPP.
    a_ids: Vec<u32>,
}

impl World<'_> {
    fn raw(&self) -> SocketAddr {
        self.d.addr("raw")
    }
    fn lpd(&self) -> SocketAddr {
        self.d.addr("lpd")
    }
    fn ipp(&self) -> SocketAddr {
        self.d.addr("ipp")
    }

    /// The CLI against the daemon, as `user`.
    fn cli(&self, user: &str, args: &[&str]) -> CliOut {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--socket", &self.sock]);
        cli_as(user, &all)
    }

    fn root_json(&self, args: &[&str]) -> Json {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli("root", &all);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        json(&out.stdout)
    }

    fn jobs_of(&self, tenant: &str) -> Vec<Json> {
        self.root_json(&["jobs", "--tenant", tenant])
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until beta has no unfinished job and no spool document (its
    /// workflow stores every job), so that counts and spool sizes hold
    /// still while a row compares.
    fn beta_quiet(&self) {
        wait_until("beta's jobs to finish", || {
            let finished = self.jobs_of(B_TENANT).iter().all(|j| {
                ["completed", "aborted", "canceled"].contains(&j["state"].as_str().unwrap())
            });
            // A finished job's spool document goes right after its record.
            (finished && self.d.spool_files(B_TENANT).is_empty()).then_some(())
        });
    }

    fn fingerprint(&self) -> Fingerprint {
        let spool_dir = self.d.data_dir().join("spool").join(A_TENANT);
        // Every file of alpha's spool (documents and log segments) by
        // content, and the documents they hold.
        let mut spool: Vec<(String, String)> = std::fs::read_dir(&spool_dir)
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    let n = e.file_name().to_string_lossy().into_owned();
                    (n, sha256(&std::fs::read(e.path()).unwrap()))
                })
                .collect()
            })
            .unwrap_or_default();
        spool.extend(
            self.d
                .spool_files(A_TENANT)
                .into_iter()
                .map(|n| ("document".to_owned(), n)),
        );
        spool.sort();
        let mut device = self.device.received();
        device.sort();
        let printer = format!("/ipp/print/{A_QUEUE}");
        let mut own = ipp(
            A_IP,
            self.ipp(),
            &printer,
            &Enc::new(GET_JOBS)
                .s(
                    0x45,
                    "printer-uri",
                    &format!("ipp://{}{printer}", self.ipp()),
                )
                .user(A_USER)
                .s(0x44, "which-jobs", "all")
                .s(0x44, "requested-attributes", "all")
                .end(),
        );
        for g in &mut own.groups {
            g.attributes.retain(|a| a.name != "job-printer-up-time");
        }
        let records = self.cli("root", &["jobs", "--tenant", A_TENANT, "--json"]);
        assert_eq!(records.code, 0, "{}", records.stderr);
        Fingerprint {
            records: records.stdout,
            spool,
            device,
            folder: folder_digests(&self.d.dir.path().join("out-alpha")),
            ipp_jobs: format!("{own:?}"),
            lpq: lpd_command(A_IP, self.lpd(), &format!("\x04{A_QUEUE}\n")),
            config_loaded: self.root_json(&["status"])["config-loaded"].clone(),
        }
    }

    /// Checks that a document beta sent landed in beta's store folder, as a
    /// job of beta's with the owner it claimed.
    fn landed_in_beta(&self, doc: &[u8], user: &str) {
        let digest = sha256(doc);
        let folder = self.d.dir.path().join("out-beta");
        wait_until("beta's document in beta's folder", || {
            folder_digests(&folder)
                .iter()
                .any(|(_, d)| *d == digest)
                .then_some(())
        });
        assert!(
            self.jobs_of(B_TENANT)
                .iter()
                .any(|j| j["sha256"] == digest.as_str() && j["user"] == user),
            "beta's job by {user} is beta's"
        );
    }
}

// ---------------------------------------------------------------------------
// The table.

/// The operation a row covers, for the completeness checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    /// A RAW submission.
    Raw,
    /// An LPD daemon command (RFC 1179 section 5), by code.
    Lpd(u8),
    /// A receive-job subcommand (RFC 1179 section 6), by code.
    LpdSub(u8),
    /// An IPP operation, by code.
    Ipp(u16),
    /// A CLI subcommand, by name.
    Cli(&'static str),
    /// A request of another HTTP method than IPP's POST on the IPP listener.
    Http(&'static str),
}

/// One request in two variants: aimed at alpha's real object, and at an
/// object that does not exist. Each returns the answer, normalised as the
/// row says.
struct Row<'a> {
    name: &'static str,
    op: Op,
    aimed: Box<dyn Fn() -> String + 'a>,
    missing: Box<dyn Fn() -> String + 'a>,
}

fn row<'a>(
    name: &'static str,
    op: Op,
    aimed: impl Fn() -> String + 'a,
    missing: impl Fn() -> String + 'a,
) -> Row<'a> {
    Row {
        name,
        op,
        aimed: Box::new(aimed),
        missing: Box::new(missing),
    }
}

/// The CLI's answer (exit code, stdout, stderr) with the echoed names
/// replaced by placeholders: `<tenant>`, `<id>`, `<device>`, `<user>`.
fn cli_answer(out: CliOut, subs: &[(&str, &str)]) -> String {
    replace_tokens(
        &format!(
            "exit {}\nstdout: {}\nstderr: {}",
            out.code, out.stdout, out.stderr
        ),
        subs,
    )
}

/// Lines of the daemon's log recording a control request.
fn control_requests(d: &TestDaemon) -> usize {
    d.log().matches("control request").count()
}

/// The CLI's subcommands: those `printroute --help` lists, and the hidden
/// ones declared in `src/main.rs` (its `enum Command`).
fn cli_subcommands() -> BTreeSet<String> {
    let help = cli_as("root", &["--help"]);
    assert_eq!(help.code, 0);
    let mut out: BTreeSet<String> = help
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(
        out.contains("jobs"),
        "--help lists no commands: {}",
        help.stdout
    );
    out.extend(enum_variants("src/main.rs", "enum Command {"));
    out
}

/// The variants of a Rust enum declared in a source file of this crate, in
/// kebab-case (as clap and serde name them).
fn enum_variants(file: &str, declaration: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let body = text
        .split_once(declaration)
        .unwrap_or_else(|| panic!("{file} declares {declaration}"))
        .1
        .split("\n}\n")
        .next()
        .unwrap();
    let mut out = BTreeSet::new();
    for line in body.lines() {
        // A variant: four spaces, then a CamelCase name and ` {` or `,`.
        let Some(rest) = line.strip_prefix("    ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if name.starts_with(|c: char| c.is_ascii_uppercase())
            && matches!(&rest[name.len()..], " {" | ",")
        {
            let mut kebab = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            out.insert(kebab);
        }
    }
    out
}

#[test]
fn another_tenants_objects_answer_like_ones_that_do_not_exist() {
    let started = Instant::now();
    ensure_account(B_ADMIN);
    let device = SocatDevice::start(A_DEVICE_IP);
    let mut d = TestDaemon::start(&config(&device.uri()));
    // The CLI runs as beta's admin: it must reach the socket in root's 0700 temp dir.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = d.dir.path().join("run/control.sock");
    let mut w = World {
        d: &d,
        device: &device,
        sock: sock.to_str().unwrap().to_owned(),
        a_ids: Vec::new(),
    };
    let (raw, lpd_addr, ipp_addr) = (w.raw(), w.lpd(), w.ipp());
    let a_printer = format!("/ipp/print/{A_QUEUE}");
    let a_printer_uri = format!("ipp://{ipp_addr}{a_printer}");

    // Alpha takes its first ids: Create-Job and Cancel-Job keep nothing.
    for _ in 0..BURNED_IDS {
        let m = ipp(
            A_IP,
            ipp_addr,
            &a_printer,
            &Enc::new(CREATE_JOB)
                .s(0x45, "printer-uri", &a_printer_uri)
                .user(A_USER)
                .end(),
        );
        assert_eq!(m.code, 0, "Create-Job: {m:?}");
        let id = job_id_of(&m);
        let m = ipp(
            A_IP,
            ipp_addr,
            &a_printer,
            &Enc::new(CANCEL_JOB)
                .s(0x45, "printer-uri", &a_printer_uri)
                .int("job-id", id as i32)
                .user(A_USER)
                .end(),
        );
        assert_eq!(m.code, 0, "Cancel-Job of an open job: {m:?}");
    }

    // Alpha's held jobs, one per protocol, all of alice, and one stored job.
    let raw_doc = document_with(
        &format!("@PJL SET USERNAME = \"{A_USER}\"\n@PJL JOB NAME = \"alpha payroll raw\"\n"),
        "alpha raw",
        4000,
    );
    assert_eq!(raw_send(A_IP, raw, &raw_doc), RawOutcome::Acknowledged);
    let lpd_job = |queue: &str, name: &str, doc: &[u8]| {
        let mut steps = lpd_receive(queue);
        let df = format!("dfA001{A_LPD_HOST}");
        steps.extend(lpd_file(
            2,
            &format!("cfA001{A_LPD_HOST}"),
            &control_file(A_LPD_HOST, A_USER, name, &df),
        ));
        steps.extend(lpd_file(3, &df, doc));
        let said = lpd(A_IP, lpd_addr, &steps);
        assert!(said.starts_with(&"octet 0; ".repeat(5)), "{said}");
    };
    lpd_job(
        A_QUEUE,
        "alpha payroll lpd",
        &document_with("%!PS-Adobe-3.0\n", "alpha lpd", 5000),
    );
    let m = ipp(
        A_IP,
        ipp_addr,
        &a_printer,
        &Enc::new(PRINT_JOB)
            .s(0x45, "printer-uri", &a_printer_uri)
            .user(A_USER)
            .s(0x42, "job-name", "alpha payroll ipp")
            .with_document(&document_with("%!PS-Adobe-3.0\n", "alpha ipp", 6000)),
    );
    assert_eq!(m.code, 0, "alpha's Print-Job: {m:?}");
    lpd_job(
        A_ARCHIVE_QUEUE,
        "alpha archive",
        &document_with("%!PS-Adobe-3.0\n", "alpha archive", 3000),
    );
    let a_jobs = wait_until("alpha's 3 held and 1 stored job", || {
        let jobs = w.jobs_of(A_TENANT);
        let held = jobs.iter().filter(|j| j["state"] == "held").count();
        let done = jobs.iter().filter(|j| j["state"] == "completed").count();
        // The stored job's spool document goes once it is in the folder.
        let settled = w.d.spool_files(A_TENANT).len() == 3
            && folder_digests(&w.d.dir.path().join("out-alpha")).len() == 1;
        (held == 3 && done == 1 && settled).then_some(jobs)
    });
    w.a_ids = a_jobs
        .iter()
        .filter(|j| j["state"] == "held")
        .map(|j| j["id"].as_u64().unwrap() as u32)
        .collect();
    w.a_ids.sort();
    assert!(
        w.a_ids[0] as usize > BURNED_IDS,
        "alpha's jobs come after the burned ids: {:?}",
        w.a_ids
    );
    assert!(
        folder_digests(&d.dir.path().join("out-alpha")).len() == 1,
        "alpha's stored job is in its folder"
    );
    let before = w.fingerprint();
    assert!(before.device.is_empty(), "nothing released yet");
    assert_eq!(
        before.spool.iter().filter(|(k, _)| k == "document").count(),
        3,
        "alpha's three held documents"
    );

    let w = &w;
    let a_id = w.a_ids[0];
    let a_ids_text: Vec<String> = w.a_ids.iter().map(u32::to_string).collect();
    let a_list = a_ids_text.join(" ");
    let ipp_printer = |path: &str| format!("ipp://{ipp_addr}{path}");
    let b_printer = format!("/ipp/print/{B_QUEUE}");
    let no_printer = format!("/ipp/print/{NO_QUEUE}");
    let a_id_s = a_id.to_string();
    let no_id_s = NO_ID.to_string();
    // The names echoed in CLI answers, by variant.
    let a_subs: Vec<(&str, &str)> = vec![
        (A_TENANT, "<tenant>"),
        (&a_id_s, "<id>"),
        (A_DEVICE, "<device>"),
        (A_USER, "<user>"),
    ];
    let no_subs: Vec<(&str, &str)> = vec![
        (NO_TENANT, "<tenant>"),
        (&no_id_s, "<id>"),
        (NO_DEVICE, "<device>"),
        (NO_USER, "<user>"),
    ];
    let a_job = format!("{A_TENANT}/{a_id}");
    let no_job = format!("{NO_TENANT}/{NO_ID}");
    let b_a_job = format!("{B_TENANT}/{a_id}");
    let b_no_job = format!("{B_TENANT}/{NO_ID}");

    // IPP requests: a printer operation on `path`, a job operation by
    // printer-uri + job-id on `path`, a job operation by job-uri.
    let on_printer = move |op: u16, path: &str, user: &str| {
        Enc::new(op)
            .s(0x45, "printer-uri", &ipp_printer(path))
            .user(user)
    };
    let by_id = move |op: u16, path: &str, id: u32, user: &str| {
        on_printer(op, path, user).int("job-id", id as i32)
    };
    let by_uri = move |op: u16, id: u32, user: &str| {
        Enc::new(op)
            .s(0x45, "job-uri", &format!("ipp://{ipp_addr}/jobs/{id}"))
            .user(user)
    };
    let post = move |path: &str, body: Vec<u8>| http(B_IP, ipp_addr, "POST", path, &body);
    let doc_for = |who: &str| document_with("%!PS-Adobe-3.0\n", who, 2000);

    // A printer operation at alpha's printer vs a printer nobody has.
    let ipp_printer_row = |name: &'static str, op: u16, extra: fn(Enc) -> Enc| {
        let (ap, np) = (a_printer.clone(), no_printer.clone());
        row(
            name,
            Op::Ipp(op),
            move || {
                ipp_answer(
                    post(
                        &ap,
                        extra(on_printer(op, &ap, A_USER)).with_document(b"%!PS\n"),
                    ),
                    &[],
                )
            },
            move || {
                ipp_answer(
                    post(
                        &np,
                        extra(on_printer(op, &np, NO_USER)).with_document(b"%!PS\n"),
                    ),
                    &[],
                )
            },
        )
    };
    // A job operation on beta's own printer naming alpha's job id vs an id nobody has.
    let ipp_job_id_row_as =
        |name: &'static str, op: u16, user: &'static str, extra: fn(Enc) -> Enc| {
            let (bp, bp2) = (b_printer.clone(), b_printer.clone());
            row(
                name,
                Op::Ipp(op),
                move || {
                    ipp_answer(
                        post(
                            &bp,
                            extra(by_id(op, &bp, a_id, user)).with_document(b"%!PS\n"),
                        ),
                        &[],
                    )
                },
                move || {
                    let bp = &bp2;
                    ipp_answer(
                        post(
                            bp,
                            extra(by_id(op, bp, NO_ID, NO_USER)).with_document(b"%!PS\n"),
                        ),
                        &[],
                    )
                },
            )
        };
    let ipp_job_id_row = |name: &'static str, op: u16, extra: fn(Enc) -> Enc| {
        ipp_job_id_row_as(name, op, A_USER, extra)
    };
    // A job operation on beta's own printer naming an open job of alpha's
    // (Create-Job, no document yet) vs an id nobody has; alpha makes an open
    // job for both variants, so both run in the same world.
    let ipp_open_job_row = |name: &'static str, op: u16, extra: fn(Enc) -> Enc| {
        let (bp, bp2) = (b_printer.clone(), b_printer.clone());
        row(
            name,
            Op::Ipp(op),
            move || {
                with_open_alpha_job(ipp_addr, |id| {
                    let body = extra(by_id(op, &bp, id, A_USER)).with_document(b"%!PS\n");
                    ipp_answer(post(&bp, body), &[])
                })
            },
            move || {
                with_open_alpha_job(ipp_addr, |_| {
                    let body = extra(by_id(op, &bp2, NO_ID, NO_USER)).with_document(b"%!PS\n");
                    ipp_answer(post(&bp2, body), &[])
                })
            },
        )
    };
    // A job operation by alpha's job-uri vs a job-uri nobody has.
    let ipp_job_uri_row = |name: &'static str, op: u16, extra: fn(Enc) -> Enc| {
        row(
            name,
            Op::Ipp(op),
            move || {
                ipp_answer(
                    post(
                        &format!("/jobs/{a_id}"),
                        extra(by_uri(op, a_id, A_USER)).with_document(b"%!PS\n"),
                    ),
                    &[],
                )
            },
            move || {
                ipp_answer(
                    post(
                        &format!("/jobs/{NO_ID}"),
                        extra(by_uri(op, NO_ID, NO_USER)).with_document(b"%!PS\n"),
                    ),
                    &[],
                )
            },
        )
    };
    // A job operation at alpha's printer naming alpha's job id vs a printer and id nobody has.
    let ipp_job_at_a_row = |name: &'static str, op: u16, extra: fn(Enc) -> Enc| {
        let (ap, np) = (a_printer.clone(), no_printer.clone());
        row(
            name,
            Op::Ipp(op),
            move || {
                ipp_answer(
                    post(
                        &ap,
                        extra(by_id(op, &ap, a_id, A_USER)).with_document(b"%!PS\n"),
                    ),
                    &[],
                )
            },
            move || {
                ipp_answer(
                    post(
                        &np,
                        extra(by_id(op, &np, NO_ID, NO_USER)).with_document(b"%!PS\n"),
                    ),
                    &[],
                )
            },
        )
    };
    fn none(e: Enc) -> Enc {
        e
    }
    fn last_document(e: Enc) -> Enc {
        e.boolean("last-document", true)
    }
    fn which_all(e: Enc) -> Enc {
        e.s(0x44, "which-jobs", "all")
            .s(0x44, "requested-attributes", "all")
    }
    fn which_completed(e: Enc) -> Enc {
        e.s(0x44, "which-jobs", "completed")
            .s(0x44, "requested-attributes", "all")
    }
    fn my_jobs(e: Enc) -> Enc {
        e.s(0x44, "which-jobs", "all").boolean("my-jobs", true).s(
            0x44,
            "requested-attributes",
            "all",
        )
    }

    // A CLI command as beta's admin: aimed at alpha's names vs names nobody has.
    let cli_row =
        |name: &'static str, cmd: &'static str, aimed: Vec<String>, missing: Vec<String>| {
            let (a_subs, no_subs) = (a_subs.clone(), no_subs.clone());
            row(
                name,
                Op::Cli(cmd),
                move || {
                    let args: Vec<&str> = aimed.iter().map(String::as_str).collect();
                    cli_answer(w.cli(B_ADMIN, &args), &a_subs)
                },
                move || {
                    let args: Vec<&str> = missing.iter().map(String::as_str).collect();
                    cli_answer(w.cli(B_ADMIN, &args), &no_subs)
                },
            )
        };
    let v = |args: &[&str]| {
        args.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<String>>()
    };
    // A CLI command without an object: beta's admin must see exactly the
    // global admin's view with alpha taken out. Normalised: the uptime
    // (the two calls may straddle a second), and `listeners`, which only a
    // global admin is shown (null for a tenant admin).
    let view_row = |name: &'static str, cmd: &'static str, args: &'static [&'static str]| {
        row(
            name,
            Op::Cli(cmd),
            move || {
                let mut all = args.to_vec();
                all.push("--json");
                let out = w.cli(B_ADMIN, &all);
                assert_eq!(out.code, 0, "{args:?} as beta's admin: {}", out.stderr);
                let mut j = json(&out.stdout);
                if let Some(o) = j.as_object_mut() {
                    o.remove("uptime-seconds");
                }
                serde_json::to_string_pretty(&j).unwrap()
            },
            move || {
                let mut j = w.root_json(args);
                let not_alpha = |t: &Json| t["tenant"] != A_TENANT;
                if let Some(o) = j.as_object_mut() {
                    o.remove("uptime-seconds");
                    o.insert("listeners".into(), Json::Null);
                    if let Some(ts) = o.get_mut("tenants").and_then(Json::as_array_mut) {
                        ts.retain(not_alpha);
                    }
                }
                if let Some(a) = j.as_array_mut() {
                    a.retain(not_alpha);
                }
                serde_json::to_string_pretty(&j).unwrap()
            },
        )
    };
    // A command that never talks to the daemon: run as beta's admin, it must
    // make no control request and end with `code`. What it reads is a file
    // (the config), guarded by the file system, not by the daemon.
    let offline_row = |name: &'static str, cmd: &'static str, args: Vec<String>, code: i32| {
        row(
            name,
            Op::Cli(cmd),
            move || {
                let before = control_requests(w.d);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = cli_as(B_ADMIN, &args);
                format!(
                    "exit {}, control requests {}",
                    out.code,
                    control_requests(w.d) - before
                )
            },
            move || format!("exit {code}, control requests 0"),
        )
    };
    let config_path = d.config_path.to_str().unwrap().to_owned();
    let assets = tempfile::tempdir().unwrap();
    std::fs::set_permissions(assets.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let assets_path = assets.path().to_str().unwrap().to_owned();

    let rows: Vec<Row> =
        vec![
        // ---- LPD daemon commands (RFC 1179 section 5), from beta's address.
        row(
            "lpd-01-print-waiting-jobs-on-alpha-queue",
            Op::Lpd(1),
            || lpd_command(B_IP, lpd_addr, &format!("\x01{A_QUEUE}\n")),
            || lpd_command(B_IP, lpd_addr, &format!("\x01{NO_QUEUE}\n")),
        ),
        row(
            "lpd-02-receive-job-on-alpha-queue",
            Op::Lpd(2),
            || lpd(B_IP, lpd_addr, &lpd_receive(A_QUEUE)),
            || lpd(B_IP, lpd_addr, &lpd_receive(NO_QUEUE)),
        ),
        row(
            "lpd-03-short-queue-state-of-alpha-queue",
            Op::Lpd(3),
            || {
                lpd_command(
                    B_IP,
                    lpd_addr,
                    &format!("\x03{A_QUEUE} {A_USER} {a_list}\n"),
                )
            },
            || lpd_command(B_IP, lpd_addr, &format!("\x03{NO_QUEUE} {NO_USER} 999\n")),
        ),
        row(
            "lpd-03-short-queue-state-of-beta-queue-listing-alpha-user-and-ids",
            Op::Lpd(3),
            || {
                lpd_command(
                    B_IP,
                    lpd_addr,
                    &format!("\x03{B_QUEUE} {A_USER} {a_list}\n"),
                )
            },
            || lpd_command(B_IP, lpd_addr, &format!("\x03{B_QUEUE} {NO_USER} 999\n")),
        ),
        row(
            "lpd-04-long-queue-state-of-alpha-queue",
            Op::Lpd(4),
            || {
                lpd_command(
                    B_IP,
                    lpd_addr,
                    &format!("\x04{A_QUEUE} {A_USER} {a_list}\n"),
                )
            },
            || lpd_command(B_IP, lpd_addr, &format!("\x04{NO_QUEUE} {NO_USER} 999\n")),
        ),
        row(
            "lpd-04-long-queue-state-of-beta-queue-listing-alpha-user-and-ids",
            Op::Lpd(4),
            || {
                lpd_command(
                    B_IP,
                    lpd_addr,
                    &format!("\x04{B_QUEUE} {A_USER} {a_list}\n"),
                )
            },
            || lpd_command(B_IP, lpd_addr, &format!("\x04{B_QUEUE} {NO_USER} 999\n")),
        ),
        row(
            "lpd-05-remove-alpha-jobs-on-alpha-queue-as-alice",
            Op::Lpd(5),
            || {
                lpd_command(
                    B_IP,
                    lpd_addr,
                    &format!("\x05{A_QUEUE} {A_USER} {a_list}\n"),
                )
            },
            || lpd_command(B_IP, lpd_addr, &format!("\x05{NO_QUEUE} {NO_USER} 999\n")),
        ),
        row(
            "lpd-05-remove-alpha-job-ids-on-beta-queue-as-alice",
            Op::Lpd(5),
            || {
                lpd_command(
                    B_IP,
                    lpd_addr,
                    &format!("\x05{B_QUEUE} {A_USER} {a_list}\n"),
                )
            },
            || lpd_command(B_IP, lpd_addr, &format!("\x05{B_QUEUE} {NO_USER} 999\n")),
        ),
        row(
            "lpd-05-remove-current-job-on-beta-queue-as-alice",
            Op::Lpd(5),
            || lpd_command(B_IP, lpd_addr, &format!("\x05{B_QUEUE} {A_USER}\n")),
            || lpd_command(B_IP, lpd_addr, &format!("\x05{B_QUEUE} {NO_USER}\n")),
        ),
        row(
            "lpd-05-remove-all-as-alpha-admin-on-both-queues",
            Op::Lpd(5),
            || {
                lpd_command(B_IP, lpd_addr, &format!("\x05{B_QUEUE} {A_ADMIN} all\n"))
                    + &lpd_command(B_IP, lpd_addr, &format!("\x05{A_QUEUE} {A_ADMIN} -\n"))
            },
            || {
                lpd_command(B_IP, lpd_addr, &format!("\x05{B_QUEUE} {NO_USER} all\n"))
                    + &lpd_command(B_IP, lpd_addr, &format!("\x05{NO_QUEUE} {NO_USER} -\n"))
            },
        ),
        // ---- Receive-job subcommands (RFC 1179 section 6) on beta's own
        // queue, naming alpha's job number, host, owner and job name; these
        // keep nothing (the job stays incomplete).
        row(
            "lpd-sub-01-abort-after-a-data-file-named-like-alpha-job",
            Op::LpdSub(1),
            || {
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(3, &format!("dfA{a_id:03}{A_LPD_HOST}"), b"x"));
                s.push(Lpd::Send(b"\x01\n".to_vec()));
                lpd(B_IP, lpd_addr, &s)
            },
            || {
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(3, &format!("dfA999{NO_HOST}"), b"x"));
                s.push(Lpd::Send(b"\x01\n".to_vec()));
                lpd(B_IP, lpd_addr, &s)
            },
        ),
        row(
            "lpd-sub-02-control-file-claiming-alpha-job-without-its-data",
            Op::LpdSub(2),
            || {
                let df = format!("dfA{a_id:03}{A_LPD_HOST}");
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(
                    2,
                    &format!("cfA{a_id:03}{A_LPD_HOST}"),
                    &control_file(A_LPD_HOST, A_USER, "alpha payroll lpd", &df),
                ));
                lpd(B_IP, lpd_addr, &s)
            },
            || {
                let df = format!("dfA999{NO_HOST}");
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(
                    2,
                    &format!("cfA999{NO_HOST}"),
                    &control_file(NO_HOST, NO_USER, "nosuch-job", &df),
                ));
                lpd(B_IP, lpd_addr, &s)
            },
        ),
        row(
            "lpd-sub-03-data-file-named-like-alpha-job-without-control-file",
            Op::LpdSub(3),
            || {
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(3, &format!("dfA{a_id:03}{A_LPD_HOST}"), b"x"));
                lpd(B_IP, lpd_addr, &s)
            },
            || {
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(3, &format!("dfA999{NO_HOST}"), b"x"));
                lpd(B_IP, lpd_addr, &s)
            },
        ),
        // ---- IPP: every operation, at alpha's printer, job ids and job-uris.
        ipp_printer_row("ipp-print-job-at-alpha-printer", PRINT_JOB, none),
        ipp_printer_row("ipp-validate-job-at-alpha-printer", VALIDATE_JOB, none),
        ipp_printer_row("ipp-create-job-at-alpha-printer", CREATE_JOB, none),
        ipp_printer_row(
            "ipp-get-printer-attributes-of-alpha-printer",
            GET_PRINTER_ATTRIBUTES,
            none,
        ),
        row(
            "ipp-get-printer-attributes-of-alpha-printer-by-cups-path",
            Op::Ipp(GET_PRINTER_ATTRIBUTES),
            || {
                let p = format!("/printers/{A_QUEUE}");
                ipp_answer(
                    post(&p, on_printer(GET_PRINTER_ATTRIBUTES, &p, A_USER).end()),
                    &[],
                )
            },
            || {
                let p = format!("/printers/{NO_QUEUE}");
                ipp_answer(
                    post(&p, on_printer(GET_PRINTER_ATTRIBUTES, &p, NO_USER).end()),
                    &[],
                )
            },
        ),
        ipp_printer_row(
            "ipp-identify-printer-at-alpha-printer",
            IDENTIFY_PRINTER,
            none,
        ),
        row(
            "ipp-identify-printer-at-beta-path-naming-alpha-printer-uri",
            Op::Ipp(IDENTIFY_PRINTER),
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        on_printer(IDENTIFY_PRINTER, &a_printer, A_USER).end(),
                    ),
                    &[],
                )
            },
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        on_printer(IDENTIFY_PRINTER, &no_printer, NO_USER).end(),
                    ),
                    &[],
                )
            },
        ),
        ipp_printer_row("ipp-get-jobs-at-alpha-printer", GET_JOBS, which_all),
        ipp_printer_row("ipp-cancel-my-jobs-at-alpha-printer", CANCEL_MY_JOBS, none),
        row(
            "ipp-get-jobs-all-at-beta-printer-as-alice",
            Op::Ipp(GET_JOBS),
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        which_all(on_printer(GET_JOBS, &b_printer, A_USER)).end(),
                    ),
                    &[],
                )
            },
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        which_all(on_printer(GET_JOBS, &b_printer, NO_USER)).end(),
                    ),
                    &[],
                )
            },
        ),
        row(
            "ipp-get-jobs-completed-at-beta-printer-as-alice",
            Op::Ipp(GET_JOBS),
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        which_completed(on_printer(GET_JOBS, &b_printer, A_USER)).end(),
                    ),
                    &[],
                )
            },
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        which_completed(on_printer(GET_JOBS, &b_printer, NO_USER)).end(),
                    ),
                    &[],
                )
            },
        ),
        row(
            "ipp-get-jobs-my-jobs-at-beta-printer-as-alice",
            Op::Ipp(GET_JOBS),
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        my_jobs(on_printer(GET_JOBS, &b_printer, A_USER)).end(),
                    ),
                    &[],
                )
            },
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        my_jobs(on_printer(GET_JOBS, &b_printer, NO_USER)).end(),
                    ),
                    &[],
                )
            },
        ),
        row(
            "ipp-cancel-my-jobs-at-beta-printer-as-alice",
            Op::Ipp(CANCEL_MY_JOBS),
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        on_printer(CANCEL_MY_JOBS, &b_printer, A_USER).end(),
                    ),
                    &[],
                )
            },
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        on_printer(CANCEL_MY_JOBS, &b_printer, NO_USER).end(),
                    ),
                    &[],
                )
            },
        ),
        ipp_job_id_row(
            "ipp-send-document-to-alpha-job-id",
            SEND_DOCUMENT,
            last_document,
        ),
        ipp_job_uri_row(
            "ipp-send-document-to-alpha-job-uri",
            SEND_DOCUMENT,
            last_document,
        ),
        ipp_job_at_a_row(
            "ipp-send-document-at-alpha-printer",
            SEND_DOCUMENT,
            last_document,
        ),
        ipp_job_id_row("ipp-close-job-alpha-job-id", CLOSE_JOB, none),
        ipp_job_uri_row("ipp-close-job-alpha-job-uri", CLOSE_JOB, none),
        ipp_job_id_row("ipp-cancel-job-alpha-job-id", CANCEL_JOB, none),
        ipp_job_uri_row("ipp-cancel-job-alpha-job-uri", CANCEL_JOB, none),
        ipp_job_at_a_row("ipp-cancel-job-at-alpha-printer", CANCEL_JOB, none),
        ipp_job_id_row(
            "ipp-get-job-attributes-alpha-job-id",
            GET_JOB_ATTRIBUTES,
            none,
        ),
        ipp_job_uri_row(
            "ipp-get-job-attributes-alpha-job-uri",
            GET_JOB_ATTRIBUTES,
            none,
        ),
        ipp_job_at_a_row(
            "ipp-get-job-attributes-at-alpha-printer",
            GET_JOB_ATTRIBUTES,
            none,
        ),
        ipp_job_id_row("ipp-hold-job-alpha-job-id", HOLD_JOB, none),
        ipp_job_uri_row("ipp-hold-job-alpha-job-uri", HOLD_JOB, none),
        ipp_job_id_row("ipp-release-job-alpha-job-id", RELEASE_JOB, none),
        ipp_job_uri_row("ipp-release-job-alpha-job-uri", RELEASE_JOB, none),
        ipp_open_job_row(
            "ipp-send-document-to-alpha-open-job",
            SEND_DOCUMENT,
            last_document,
        ),
        ipp_open_job_row("ipp-close-job-alpha-open-job", CLOSE_JOB, none),
        ipp_open_job_row("ipp-cancel-job-alpha-open-job", CANCEL_JOB, none),
        ipp_open_job_row("ipp-hold-job-alpha-open-job", HOLD_JOB, none),
        ipp_open_job_row("ipp-release-job-alpha-open-job", RELEASE_JOB, none),
        ipp_open_job_row(
            "ipp-get-job-attributes-alpha-open-job",
            GET_JOB_ATTRIBUTES,
            none,
        ),
        row(
            "ipp-cancel-my-jobs-at-beta-printer-as-alice-while-alpha-has-an-open-job",
            Op::Ipp(CANCEL_MY_JOBS),
            || {
                with_open_alpha_job(ipp_addr, |_| {
                    let body = on_printer(CANCEL_MY_JOBS, &b_printer, A_USER).end();
                    ipp_answer(post(&b_printer, body), &[])
                })
            },
            || {
                with_open_alpha_job(ipp_addr, |_| {
                    let body = on_printer(CANCEL_MY_JOBS, &b_printer, NO_USER).end();
                    ipp_answer(post(&b_printer, body), &[])
                })
            },
        ),
        row(
            "ipp-get-jobs-not-completed-mine-at-beta-printer-as-alice-while-alpha-has-an-open-job",
            Op::Ipp(GET_JOBS),
            || {
                with_open_alpha_job(ipp_addr, |_| {
                    let body = on_printer(GET_JOBS, &b_printer, A_USER)
                        .boolean("my-jobs", true)
                        .s(0x44, "requested-attributes", "all")
                        .end();
                    ipp_answer(post(&b_printer, body), &[])
                })
            },
            || {
                with_open_alpha_job(ipp_addr, |_| {
                    let body = on_printer(GET_JOBS, &b_printer, NO_USER)
                        .boolean("my-jobs", true)
                        .s(0x44, "requested-attributes", "all")
                        .end();
                    ipp_answer(post(&b_printer, body), &[])
                })
            },
        ),
        // As alpha's tenant admin, who may change any of alpha's jobs.
        ipp_job_id_row_as(
            "ipp-cancel-job-alpha-job-id-as-alpha-admin",
            CANCEL_JOB,
            A_ADMIN,
            none,
        ),
        ipp_job_id_row_as(
            "ipp-release-job-alpha-job-id-as-alpha-admin",
            RELEASE_JOB,
            A_ADMIN,
            none,
        ),
        ipp_job_id_row_as(
            "ipp-get-job-attributes-alpha-job-id-as-alpha-admin",
            GET_JOB_ATTRIBUTES,
            A_ADMIN,
            none,
        ),
        // Beta's own printer path, naming alpha's printer in printer-uri.
        row(
            "ipp-get-printer-attributes-at-beta-path-naming-alpha-printer-uri",
            Op::Ipp(GET_PRINTER_ATTRIBUTES),
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        on_printer(GET_PRINTER_ATTRIBUTES, &a_printer, A_USER).end(),
                    ),
                    UP_TIME,
                )
            },
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        on_printer(GET_PRINTER_ATTRIBUTES, &no_printer, NO_USER).end(),
                    ),
                    UP_TIME,
                )
            },
        ),
        // CUPS's clients post to `/` and name the printer in printer-uri.
        row(
            "ipp-print-job-at-root-naming-alpha-printer-uri",
            Op::Ipp(PRINT_JOB),
            || {
                let body = on_printer(PRINT_JOB, &a_printer, A_USER).with_document(b"%!PS\n");
                ipp_answer(post("/", body), &[])
            },
            || {
                let body =
                    on_printer(PRINT_JOB, &no_printer, NO_USER).with_document(b"%!PS\n");
                ipp_answer(post("/", body), &[])
            },
        ),
        // The server operations list the asking tenant's printers only,
        // wherever they are posted and whatever printer-uri they carry.
        row(
            "ipp-cups-get-printers-at-alpha-printer",
            Op::Ipp(CUPS_GET_PRINTERS),
            || {
                let body = on_printer(CUPS_GET_PRINTERS, &a_printer, A_USER)
                    .s(0x44, "requested-attributes", "all")
                    .end();
                ipp_answer(post(&a_printer, body), UP_TIME)
            },
            || {
                let body = on_printer(CUPS_GET_PRINTERS, &no_printer, NO_USER)
                    .s(0x44, "requested-attributes", "all")
                    .end();
                ipp_answer(post(&no_printer, body), UP_TIME)
            },
        ),
        row(
            "ipp-cups-get-printers-at-root-naming-alpha-printer-uri",
            Op::Ipp(CUPS_GET_PRINTERS),
            || {
                let body = on_printer(CUPS_GET_PRINTERS, &a_printer, A_USER)
                    .s(0x44, "requested-attributes", "all")
                    .end();
                ipp_answer(post("/", body), UP_TIME)
            },
            || {
                let body = on_printer(CUPS_GET_PRINTERS, &no_printer, NO_USER)
                    .s(0x44, "requested-attributes", "all")
                    .end();
                ipp_answer(post("/", body), UP_TIME)
            },
        ),
        row(
            "ipp-get-printers-at-root-naming-alpha-printer-uri",
            Op::Ipp(GET_PRINTERS),
            || {
                let body = on_printer(GET_PRINTERS, &a_printer, A_USER)
                    .s(0x44, "requested-attributes", "all")
                    .end();
                ipp_answer(post("/", body), UP_TIME)
            },
            || {
                let body = on_printer(GET_PRINTERS, &no_printer, NO_USER)
                    .s(0x44, "requested-attributes", "all")
                    .end();
                ipp_answer(post("/", body), UP_TIME)
            },
        ),
        row(
            "ipp-cups-get-default-at-alpha-printer",
            Op::Ipp(CUPS_GET_DEFAULT),
            || {
                let body = on_printer(CUPS_GET_DEFAULT, &a_printer, A_USER).end();
                ipp_answer(post(&a_printer, body), UP_TIME)
            },
            || {
                let body = on_printer(CUPS_GET_DEFAULT, &no_printer, NO_USER).end();
                ipp_answer(post(&no_printer, body), UP_TIME)
            },
        ),
        row(
            "ipp-get-jobs-at-beta-path-naming-alpha-printer-uri",
            Op::Ipp(GET_JOBS),
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        which_all(on_printer(GET_JOBS, &a_printer, A_USER)).end(),
                    ),
                    &[],
                )
            },
            || {
                ipp_answer(
                    post(
                        &b_printer,
                        which_all(on_printer(GET_JOBS, &no_printer, NO_USER)).end(),
                    ),
                    &[],
                )
            },
        ),
        // Not IPP: the page an HTTP GET of a printer's path shows.
        row(
            "http-get-of-alpha-printer-page",
            Op::Http("GET"),
            || {
                let a = http(B_IP, ipp_addr, "GET", &a_printer, b"");
                format!("HTTP {} {:?}", a.status, String::from_utf8_lossy(&a.body))
            },
            || {
                let a = http(B_IP, ipp_addr, "GET", &no_printer, b"");
                format!("HTTP {} {:?}", a.status, String::from_utf8_lossy(&a.body))
            },
        ),
        ipp_job_at_a_row("ipp-release-job-at-alpha-printer", RELEASE_JOB, none),
        // ---- The CLI as beta's tenant admin.
        view_row("cli-status", "status", &["status"]),
        view_row("cli-tenants", "tenants", &["tenants"]),
        view_row("cli-jobs-unfiltered", "jobs", &["jobs"]),
        cli_row(
            "cli-jobs-of-alpha",
            "jobs",
            v(&["jobs", "--tenant", A_TENANT]),
            v(&["jobs", "--tenant", NO_TENANT]),
        ),
        cli_row(
            "cli-jobs-of-alpha-held-of-alice-json",
            "jobs",
            v(&[
                "jobs", "--tenant", A_TENANT, "--state", "held", "--user", A_USER, "--json",
            ]),
            v(&[
                "jobs", "--tenant", NO_TENANT, "--state", "held", "--user", NO_USER, "--json",
            ]),
        ),
        cli_row(
            "cli-jobs-of-alice",
            "jobs",
            v(&["jobs", "--user", A_USER, "--json"]),
            v(&["jobs", "--user", NO_USER, "--json"]),
        ),
        cli_row(
            "cli-job-of-alpha",
            "job",
            v(&["job", &a_job]),
            v(&["job", &no_job]),
        ),
        cli_row(
            "cli-job-alpha-id-in-beta",
            "job",
            v(&["job", &b_a_job, "--json"]),
            v(&["job", &b_no_job, "--json"]),
        ),
        cli_row(
            "cli-release-alpha-job",
            "release",
            v(&["release", &a_job]),
            v(&["release", &no_job]),
        ),
        cli_row(
            "cli-release-alpha-job-to-alpha-device",
            "release",
            v(&["release", &a_job, "--to", A_DEVICE]),
            v(&["release", &no_job, "--to", NO_DEVICE]),
        ),
        cli_row(
            "cli-release-alpha-id-in-beta-to-alpha-device",
            "release",
            v(&["release", &b_a_job, "--to", A_DEVICE]),
            v(&["release", &b_no_job, "--to", NO_DEVICE]),
        ),
        cli_row(
            "cli-release-alpha-id-in-beta",
            "release",
            v(&["release", &b_a_job]),
            v(&["release", &b_no_job]),
        ),
        cli_row(
            "cli-cancel-alpha-job",
            "cancel",
            v(&["cancel", &a_job]),
            v(&["cancel", &no_job]),
        ),
        cli_row(
            "cli-cancel-alpha-id-in-beta",
            "cancel",
            v(&["cancel", &b_a_job]),
            v(&["cancel", &b_no_job]),
        ),
        cli_row(
            "cli-purge-alpha",
            "purge",
            v(&["purge", A_TENANT]),
            v(&["purge", NO_TENANT]),
        ),
        cli_row(
            "cli-purge-alpha-forced",
            "purge",
            v(&["purge", A_TENANT, "--force", "--json"]),
            v(&["purge", NO_TENANT, "--force", "--json"]),
        ),
        // Key rotation is a global admin's: refused alike for alpha and for none.
        cli_row(
            "cli-rekey-alpha",
            "rekey",
            v(&["rekey", A_TENANT, "--wait"]),
            v(&["rekey", NO_TENANT, "--wait"]),
        ),
        // Reload names no object: beta's admin is refused as every tenant admin is.
        row(
            "cli-reload",
            Op::Cli("reload"),
            || cli_answer(w.cli(B_ADMIN, &["reload"]), &[]),
            || {
                "exit 1\nstdout: \nstderr: permission denied: only a global admin may reload\n"
                    .to_owned()
            },
        ),
        // ---- Offline commands: out of scope, they never talk to the daemon.
        offline_row(
            "cli-check-reads-a-file-not-the-daemon",
            "check",
            v(&["check", &config_path]),
            0,
        ),
        offline_row(
            "cli-which-reads-a-file-not-the-daemon",
            "which",
            v(&["which", A_IP, "--config", &config_path]),
            0,
        ),
        offline_row(
            "cli-serve-starts-a-daemon-of-its-own",
            "serve",
            v(&["serve", "--config", "/nonexistent/printroute.toml"]),
            78,
        ),
        offline_row(
            "cli-generate-assets-writes-files",
            "generate-assets",
            v(&["generate-assets", &assets_path]),
            0,
        ),
        offline_row("cli-help-prints-text", "help", v(&["help", "jobs"]), 0),
        // Tokens live in the data folder, which only the daemon's user may
        // write: beta's admin cannot make one for alpha (exit 1).
        offline_row(
            "cli-token-create-for-alpha-needs-the-data-folder",
            "token",
            v(&["token", "create", "--tenant", A_TENANT, "--name", "x", "--config", &config_path]),
            1,
        ),
        // This config lists no nodes, so there is nothing to export (78).
        offline_row(
            "cli-export-haproxy-reads-a-file-not-the-daemon",
            "export",
            v(&["export", "haproxy", "--config", &config_path, "--out", &assets_path]),
            78,
        ),
        // ---- Rows that make jobs of beta's (claiming alpha's owner and
        // names): last, so that no query row above sees them.
        row(
            "raw-submit-claiming-alpha-user-and-job-name",
            Op::Raw,
            || {
                // RAW has no object names: the answer is the outcome
                // (orderly close = acknowledged), and the job must be beta's.
                let doc = document_with(
                    &format!(
                        "@PJL SET USERNAME = \"{A_USER}\"\n@PJL JOB NAME = \"alpha payroll raw\"\n"
                    ),
                    "beta raw as alice",
                    3000,
                );
                let outcome = raw_send(B_IP, raw, &doc);
                w.landed_in_beta(&doc, A_USER);
                format!("{outcome:?}")
            },
            || {
                let doc = document_with(
                    &format!("@PJL SET USERNAME = \"{NO_USER}\"\n@PJL JOB NAME = \"nosuch-job\"\n"),
                    "beta raw as nobody",
                    3000,
                );
                let outcome = raw_send(B_IP, raw, &doc);
                w.landed_in_beta(&doc, NO_USER);
                format!("{outcome:?}")
            },
        ),
        row(
            "lpd-sub-02-03-whole-job-claiming-alpha-job-number-host-user-name",
            Op::LpdSub(2),
            || {
                let doc = doc_for("beta lpd as alice");
                let df = format!("dfA{a_id:03}{A_LPD_HOST}");
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(
                    2,
                    &format!("cfA{a_id:03}{A_LPD_HOST}"),
                    &control_file(A_LPD_HOST, A_USER, "alpha payroll lpd", &df),
                ));
                s.extend(lpd_file(3, &df, &doc));
                let said = lpd(B_IP, lpd_addr, &s);
                w.landed_in_beta(&doc, A_USER);
                said
            },
            || {
                let doc = doc_for("beta lpd as nobody");
                let df = format!("dfA999{NO_HOST}");
                let mut s = lpd_receive(B_QUEUE);
                s.extend(lpd_file(
                    2,
                    &format!("cfA999{NO_HOST}"),
                    &control_file(NO_HOST, NO_USER, "nosuch-job", &df),
                ));
                s.extend(lpd_file(3, &df, &doc));
                let said = lpd(B_IP, lpd_addr, &s);
                w.landed_in_beta(&doc, NO_USER);
                said
            },
        ),
        row(
            "ipp-print-job-at-beta-printer-claiming-alpha-user-and-job-name",
            Op::Ipp(PRINT_JOB),
            || {
                let doc = doc_for("beta ipp as alice");
                let body = on_printer(PRINT_JOB, &b_printer, A_USER)
                    .s(0x42, "job-name", "alpha payroll ipp")
                    .with_document(&doc);
                let said = ipp_answer(post(&b_printer, body), NEW_JOB);
                w.landed_in_beta(&doc, A_USER);
                said
            },
            || {
                let doc = doc_for("beta ipp as nobody");
                let body = on_printer(PRINT_JOB, &b_printer, NO_USER)
                    .s(0x42, "job-name", "nosuch-job")
                    .with_document(&doc);
                let said = ipp_answer(post(&b_printer, body), NEW_JOB);
                w.landed_in_beta(&doc, NO_USER);
                said
            },
        ),
    ];

    // Completeness: every operation has a row, and every row's operation exists.
    let covered = |f: &dyn Fn(&Op) -> bool| -> BTreeSet<Op> {
        rows.iter().map(|r| r.op).filter(|o| f(o)).collect()
    };
    let gpa = ipp(
        B_IP,
        ipp_addr,
        &b_printer,
        &on_printer(GET_PRINTER_ATTRIBUTES, &b_printer, NO_USER)
            .s(0x44, "requested-attributes", "operations-supported")
            .end(),
    );
    let supported: BTreeSet<Op> = gpa
        .attr(4, "operations-supported")
        .expect("operations-supported")
        .values
        .iter()
        .map(|v| match v {
            Value::Enum(n) => Op::Ipp(*n as u16),
            v => panic!("operations-supported value {v:?}"),
        })
        .collect();
    assert_eq!(
        covered(&|o| matches!(o, Op::Ipp(_))),
        supported,
        "IPP rows vs the printer's operations-supported"
    );
    let commands: BTreeSet<String> = cli_subcommands();
    let cli_rows: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| match r.op {
            Op::Cli(c) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(cli_rows, commands, "CLI rows vs the CLI's subcommands");
    let requests = enum_variants("src/admin/control.rs", "pub enum Request {");
    assert!(
        requests.len() >= 8 && requests.is_subset(&cli_rows),
        "every control request {requests:?} has a CLI row"
    );
    assert_eq!(
        covered(&|o| matches!(o, Op::Lpd(_))),
        (1..=5).map(Op::Lpd).collect::<BTreeSet<Op>>(),
        "LPD rows vs the daemon commands 01-05 of RFC 1179"
    );
    assert_eq!(
        covered(&|o| matches!(o, Op::LpdSub(_))),
        (1..=3).map(Op::LpdSub).collect::<BTreeSet<Op>>(),
        "LPD rows vs the receive-job subcommands 01-03 of RFC 1179"
    );
    assert!(covered(&|o| *o == Op::Raw).len() == 1, "a RAW row");
    assert_eq!(
        covered(&|o| matches!(o, Op::Http(_))),
        BTreeSet::from([Op::Http("GET")]),
        "besides IPP's POST, the IPP listener answers GET"
    );
    let names: BTreeSet<&str> = rows.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), rows.len(), "row names are unique");

    // The rows. An effect on alpha that lands late (a delivery after a
    // release) still fails a later row's check, or the final ones below.
    for r in &rows {
        w.beta_quiet();
        let aimed = (r.aimed)();
        let missing = (r.missing)();
        assert_eq!(
            aimed, missing,
            "row {}: aimed at alpha's object (left) vs at one that does not exist (right)",
            r.name
        );
        w.beta_quiet();
        assert_eq!(
            w.fingerprint(),
            before,
            "row {}: alpha's state changed",
            r.name
        );
        eprintln!(
            "row {:<72} ok: {}",
            r.name,
            aimed.lines().next().unwrap_or("")
        );
    }

    // Beta's job ids count beta's jobs alone, 1, 2, ... whatever alpha's
    // volume; and they stayed below alpha's (every alpha id named alpha's job only).
    let mut b_ids: Vec<u64> = w
        .jobs_of(B_TENANT)
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    b_ids.sort();
    assert_eq!(
        b_ids,
        (1..=b_ids.len() as u64).collect::<Vec<u64>>(),
        "beta's job ids"
    );
    assert!(
        b_ids.iter().all(|&id| id < u64::from(a_id)),
        "beta's job ids {b_ids:?} stay below alpha's {a_id}"
    );
    eprintln!(
        "{} rows in {:.1} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    drop(rows);

    // Alpha's records on disk are the ones it started with.
    let records = json(&before.records);
    assert_eq!(d.stop(), 0);
    let stored: Vec<Json> = d.stored_jobs()[A_TENANT]
        .iter()
        .map(|j| serde_json::to_value(j).unwrap())
        .collect();
    assert_eq!(Json::Array(stored), records, "alpha's stored records");
    assert!(device.received().is_empty(), "alpha's device got nothing");
}

/// Tenant admins reach the control socket (0666: the daemon authorises each
/// caller by its credentials) without joining the daemon's group, because
/// that group can read every tenant's spool and store: the shipped unit
/// keeps others out of the state folder but lets them reach the socket's.
#[test]
fn tenant_admins_reach_the_control_socket_without_the_group_that_reads_every_spool() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/printroute.service")).unwrap();
    let octal = |key: &str| -> u32 {
        let v = unit
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit sets {key}"));
        u32::from_str_radix(v.trim(), 8).unwrap_or_else(|_| panic!("{key}={v} is octal"))
    };
    assert_eq!(
        octal("StateDirectoryMode") & 0o007,
        0,
        "others may not enter the state folder (every tenant's spool)"
    );
    assert_eq!(
        octal("UMask") & 0o007,
        0o007,
        "the daemon's files are not for others"
    );
    assert_ne!(
        octal("RuntimeDirectoryMode") & 0o001,
        0,
        "others (tenant admins) may reach the control socket's folder"
    );
    assert_eq!(
        printroute::admin::control::SOCKET_MODE & 0o006,
        0o006,
        "anyone may connect to the control socket"
    );
    let shipped = std::fs::read_to_string(root.join("debian/printroute.toml")).unwrap();
    assert!(
        shipped.contains("control-socket = \"/run/printroute/"),
        "the shipped config puts the control socket in the unit's RuntimeDirectory"
    );
}
