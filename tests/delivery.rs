//! Delivery you can trust: a job counts as printed only when the device has
//! it whole, a device's refusal never blocks its queue, and what a device
//! says is kept as data.
//!
//! Each hostile printer misbehaves on its first connection, then behaves;
//! each gets a job that fits in socket buffers (16 KiB) and one that does
//! not (20 MiB), then a good job right after. For every case the job must
//! not count as delivered on the hostile connection, must reach the device
//! whole (SHA-256 on the device side) on a later one, and the good job must
//! follow within seconds. IPP devices that refuse for good end the job (or
//! pass it to the next device of its pool) at once; one that is busy twice
//! gets the job on the third try.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use printroute::store::job::{Job, JobState};
use printroute::wire::ipp::{self as codec, group, Attribute, Group, Message, Value};

/// The tenants' `device-timeout`: a hostile device is given up on after it.
const DEVICE_TIMEOUT: &str = "2s";

const SMALL: usize = 16 << 10;
const LARGE: usize = 20 << 20;

/// One tenant per case: its address block, its device, its workflow.
struct Case {
    name: &'static str,
    net: u8,
    devices: Vec<(String, String)>,
    pool: Vec<String>,
}

fn config(cases: &[Case]) -> String {
    let mut c = format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/control.sock"
[global.limits]
device-timeout = "{DEVICE_TIMEOUT}"
max-job-size = "64 MiB"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
"#
    );
    for case in cases {
        c.push_str(&format!(
            "[tenant.{}]\nranges = [\"127.0.{}.0/24\"]\n",
            case.name, case.net
        ));
        for (name, uri) in &case.devices {
            c.push_str(&format!(
                "[tenant.{}.device.{name}]\nuri = \"{uri}\"\n",
                case.name
            ));
        }
        let pool: Vec<String> = case.pool.iter().map(|p| format!("\"{p}\"")).collect();
        c.push_str(&format!(
            "[tenant.{t}.workflow.direct]\nsteps = [{{ step = \"forward\", devices = [{}] }}]\n[[tenant.{t}.input]]\nlistener = \"raw\"\nworkflow = \"direct\"\n",
            pool.join(", "),
            t = case.name
        ));
    }
    c
}

/// A document of `size` bytes, distinct per `tag`.
fn doc(tag: &str, size: usize) -> Vec<u8> {
    document_with("", tag, size)
}

/// Waits until every job of `tenant` has finished; returns them by id.
fn finished(d: &TestDaemon, tenant: &str, n: usize) -> Vec<Job> {
    wait_until(&format!("{n} finished jobs of {tenant}"), || {
        let jobs = d.live_jobs(tenant);
        (jobs.len() == n && jobs.iter().all(|j| j.state.is_final())).then_some(jobs)
    })
}

fn history(j: &Job) -> String {
    j.history
        .iter()
        .map(|e| e.note.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn a_job_counts_as_printed_only_when_the_device_has_it_whole() {
    let behaviours = [
        ("neverreads", Behaviour::NeverReads),
        ("stalls", Behaviour::ReadsThenStalls(1000)),
        ("resets", Behaviour::ReadsPartThenResets(1000)),
        ("closes", Behaviour::ClosesBeforeReading),
    ];
    let mut devices = Vec::new();
    let mut cases = Vec::new();
    let mut net = 20u8;
    for (name, b) in behaviours {
        for (size_name, _) in [("small", SMALL), ("large", LARGE)] {
            let tenant = format!("{name}{size_name}");
            let dev = RecordingDevice::start(&format!("127.0.{net}.50"), b, 1, Behaviour::Good);
            cases.push(Case {
                name: Box::leak(tenant.into_boxed_str()),
                net,
                devices: vec![("printer".into(), dev.uri())],
                pool: vec!["printer".into()],
            });
            devices.push(dev);
            net += 1;
        }
    }
    let d = TestDaemon::start(&config(&cases));
    let raw = d.addr("raw");
    // Each case: a job the device mistreats, then a good one right after.
    let mut sent = Vec::new();
    std::thread::scope(|s| {
        for (case, size) in cases.iter().zip([SMALL, LARGE].iter().cycle()) {
            let from = format!("127.0.{}.7", case.net);
            let first = doc(&format!("{}-first", case.name), *size);
            let second = doc(&format!("{}-second", case.name), SMALL);
            sent.push((sha256(&first), sha256(&second)));
            s.spawn(move || {
                assert_eq!(raw_send(&from, raw, &first), RawOutcome::Acknowledged);
                assert_eq!(raw_send(&from, raw, &second), RawOutcome::Acknowledged);
            });
        }
    });
    for ((case, dev), (first, second)) in cases.iter().zip(&devices).zip(&sent) {
        let jobs = finished(&d, case.name, 2);
        let report = format!(
            "{}: device saw {:?}; history of the first job: {}",
            case.name,
            dev.received(),
            history(&jobs[0])
        );
        for j in &jobs {
            assert_eq!(j.state, JobState::Completed, "{report}");
        }
        // The mistreated attempt failed, and said why.
        assert!(
            jobs[0].history.iter().any(|e| e.note.contains("failed")),
            "{report}"
        );
        // Everything the device printed (ended in order) is a whole job,
        // each job exactly once, in commit order.
        let printed = dev.printed();
        assert_eq!(printed, vec![first.clone(), second.clone()], "{report}");
        // The hostile connection got no orderly end of a partial job.
        assert!(
            dev.received()
                .iter()
                .filter(|r| r.end == End::Orderly)
                .all(|r| r.sha256 == *first || r.sha256 == *second),
            "{report}"
        );
        println!(
            "{}: first job {} bytes, attempts {:?}, second job delivered after it",
            case.name,
            jobs[0].size,
            dev.received()
                .iter()
                .map(|r| (r.len, r.end))
                .collect::<Vec<_>>()
        );
    }
}

/// An IPP printer written for the test: answers Print-Job with
/// `server-error-busy` `busy` times, then accepts, and reports the job
/// completed; keeps every document it accepted.
struct BusyIpp {
    addr: SocketAddr,
    accepted: Arc<std::sync::Mutex<Vec<String>>>,
    busy_answers: Arc<AtomicUsize>,
}

impl BusyIpp {
    fn start(ip: &str, busy: usize) -> BusyIpp {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let busy_answers = Arc::new(AtomicUsize::new(0));
        let (acc, answers) = (accepted.clone(), busy_answers.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (acc, answers) = (acc.clone(), answers.clone());
                std::thread::spawn(move || {
                    let _ = serve_ipp(s, busy, &acc, &answers);
                });
            }
        });
        BusyIpp {
            addr,
            accepted,
            busy_answers,
        }
    }

    fn uri(&self) -> String {
        format!("ipp://{}/ipp/print", self.addr)
    }
}

/// The operation attributes every IPP response starts with.
fn operation_group() -> Group {
    let mut ops = Group::new(group::OPERATION);
    ops.push(Attribute::new(
        "attributes-charset",
        Value::charset("utf-8"),
    ));
    ops.push(Attribute::new(
        "attributes-natural-language",
        Value::language("en"),
    ));
    ops
}

/// Reads one HTTP/1.1 request (length or chunked); its body, or `None` at the end.
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut chunked = false;
    let mut length = 0usize;
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if h == "transfer-encoding: chunked" {
            chunked = true;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                break;
            }
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(body))
}

/// One HTTP/1.1 keep-alive connection of [`BusyIpp`].
fn serve_ipp(
    s: TcpStream,
    busy: usize,
    accepted: &std::sync::Mutex<Vec<String>>,
    answers: &AtomicUsize,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    loop {
        let Some(body) = read_request(&mut r)? else {
            return Ok(());
        };
        let (req, used) = codec::decode(&body, codec::REQUEST_LIMITS).unwrap();
        let mut groups = vec![operation_group()];
        let code = match req.code {
            // Print-Job
            0x0002 if answers.fetch_add(1, Ordering::SeqCst) < busy => 0x0507,
            0x0002 => {
                accepted.lock().unwrap().push(sha256(&body[used..]));
                let mut job = Group::new(group::JOB);
                job.push(Attribute::new("job-id", Value::Integer(1)));
                job.push(Attribute::new("job-state", Value::Enum(9)));
                groups.push(job);
                0
            }
            // Get-Job-Attributes: the job is done.
            0x0009 => {
                let mut job = Group::new(group::JOB);
                job.push(Attribute::new("job-id", Value::Integer(1)));
                job.push(Attribute::new("job-state", Value::Enum(9)));
                groups.push(job);
                0
            }
            _ => 0x0501,
        };
        let resp = codec::encode(&Message {
            version: (2, 0),
            code,
            request_id: req.request_id,
            groups,
        });
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
            resp.len()
        )?;
        w.write_all(&resp)?;
    }
}

#[test]
fn permanent_refusals_end_a_job_and_transient_ones_retry() {
    // A printer that takes PDF only; PostScript sent to it is refused for good.
    let pdf_only = EvePrinter::start_with("application/pdf", "/bin/true");
    let busy = BusyIpp::start("127.0.42.50", 2);
    let fallback = RecordingDevice::good("127.0.41.50");
    let cases = [
        Case {
            name: "single",
            net: 40,
            devices: vec![("pdf".into(), pdf_only.uri())],
            pool: vec!["pdf".into()],
        },
        Case {
            name: "pool",
            net: 41,
            devices: vec![
                ("pdf".into(), pdf_only.uri()),
                ("any".into(), fallback.uri()),
            ],
            pool: vec!["pdf".into(), "any".into()],
        },
        Case {
            name: "busy",
            net: 42,
            devices: vec![("busy".into(), busy.uri())],
            pool: vec!["busy".into()],
        },
    ];
    let d = TestDaemon::start(&config(&cases));
    let raw = d.addr("raw");
    let ps = b"%!PS-Adobe-3.0\n%%Title: (refused)\nshowpage\n".to_vec();
    let pdf = b"%PDF-1.4\n% a document the printer takes\n%%EOF\n".to_vec();

    // Single device: the PostScript job ends at once with the printer's
    // reason; the PDF job after it is printed.
    assert_eq!(raw_send("127.0.40.7", raw, &ps), RawOutcome::Acknowledged);
    assert_eq!(raw_send("127.0.40.7", raw, &pdf), RawOutcome::Acknowledged);
    let jobs = finished(&d, "single", 2);
    assert_eq!(jobs[0].state, JobState::Aborted, "{}", history(&jobs[0]));
    assert!(
        history(&jobs[0]).contains("document-format") || history(&jobs[0]).contains("0x040a"),
        "the printer's reason is kept: {}",
        history(&jobs[0])
    );
    assert_eq!(jobs[1].state, JobState::Completed, "{}", history(&jobs[1]));
    let docs = wait_until("the PDF job at the printer", || {
        let d = pdf_only.documents();
        (!d.is_empty()).then_some(d)
    });
    assert!(docs.iter().any(|(_, b)| *b == pdf), "{docs:?}");
    // Refused for good within seconds, not retried until delivery-timeout.
    let refused_after = jobs[0].history.last().unwrap().at_ms - jobs[0].created_ms;
    assert!(
        !history(&jobs[0]).contains("refused the job for now"),
        "{}",
        history(&jobs[0])
    );
    println!("refused for good {refused_after} ms after commit");

    // A pool: the job refused by the PDF printer goes to the other device.
    assert_eq!(raw_send("127.0.41.7", raw, &ps), RawOutcome::Acknowledged);
    let jobs = finished(&d, "pool", 1);
    assert_eq!(jobs[0].state, JobState::Completed, "{}", history(&jobs[0]));
    assert_eq!(fallback.printed(), vec![sha256(&ps)]);
    assert!(history(&jobs[0]).contains("pdf ("), "{}", history(&jobs[0]));

    // Busy twice, then accepted: retried with backoff, delivered once.
    assert_eq!(raw_send("127.0.42.7", raw, &pdf), RawOutcome::Acknowledged);
    let jobs = finished(&d, "busy", 1);
    assert_eq!(jobs[0].state, JobState::Completed, "{}", history(&jobs[0]));
    assert_eq!(busy.busy_answers.load(Ordering::SeqCst), 3);
    assert_eq!(*busy.accepted.lock().unwrap(), vec![sha256(&pdf)]);
}

/// A printer whose status text is hostile: escape sequences and 30 KB.
#[test]
fn a_devices_words_are_kept_sanitised_and_bounded() {
    let l = TcpListener::bind("127.0.43.50:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                let _ = refuse_with_text(s);
            });
        }
    });
    let cases = [Case {
        name: "words",
        net: 43,
        devices: vec![("liar".into(), format!("ipp://{addr}/ipp/print"))],
        pool: vec!["liar".into()],
    }];
    let d = TestDaemon::start(&config(&cases));
    let raw = d.addr("raw");
    assert_eq!(
        raw_send("127.0.43.7", raw, b"%PDF-1.4\n%%EOF\n"),
        RawOutcome::Acknowledged
    );
    let jobs = finished(&d, "words", 1);
    assert_eq!(jobs[0].state, JobState::Aborted);
    for e in &jobs[0].history {
        assert!(
            !e.note.chars().any(char::is_control),
            "control characters kept: {:?}",
            e.note
        );
        assert!(
            e.note.len() <= printroute::store::job::MAX_NOTE_LEN,
            "{}",
            e.note.len()
        );
    }
    let h = history(&jobs[0]);
    assert!(h.contains("[31mRED"), "the text itself is kept: {h}");
    assert!(
        h.len() < 4096,
        "30 KB of device text bounded, got {} bytes",
        h.len()
    );
    // The log line carries the bounded text too.
    let log = d.log();
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
}

/// Answers every IPP request with `client-error-bad-request` and a
/// status-message of escape sequences and 30 KB of text.
fn refuse_with_text(s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    let Some(body) = read_request(&mut r)? else {
        return Ok(());
    };
    let (req, _) = codec::decode(&body, codec::REQUEST_LIMITS).unwrap();
    let mut ops = operation_group();
    let text = format!(
        "\u{1b}[31mRED\u{1b}[0m\r\nFAKE LOG LINE\u{7}{}",
        "x".repeat(30_000)
    );
    ops.push(Attribute::new("status-message", Value::text(&text)));
    let resp = codec::encode(&Message {
        version: (2, 0),
        code: 0x0400,
        request_id: req.request_id,
        groups: vec![ops],
    });
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.len()
    )?;
    w.write_all(&resp)
}

/// A device down with a backlog longer than the dispatcher keeps in memory:
/// when it comes back, every job arrives once, in commit order.
#[test]
fn a_backlog_longer_than_the_window_arrives_whole_and_in_order() {
    // A device's backoff reaches 30 s while it is down.
    const BACKLOG_WAIT: Duration = Duration::from_secs(120);
    const JOBS: usize = 300;
    let port = free_port("127.0.44.50");
    let cases = [Case {
        name: "backlog",
        net: 44,
        devices: vec![("printer".into(), format!("socket://127.0.44.50:{port}"))],
        pool: vec!["printer".into()],
    }];
    let d = TestDaemon::start(&config(&cases));
    let raw = d.addr("raw");
    let mut sent = Vec::new();
    for i in 0..JOBS {
        let job = doc(&format!("backlog-{i}"), 2048);
        assert_eq!(raw_send("127.0.44.7", raw, &job), RawOutcome::Acknowledged);
        sent.push(sha256(&job));
    }
    let dev = RecordingDevice::start_on(
        &format!("127.0.44.50:{port}"),
        Behaviour::Good,
        0,
        Behaviour::Good,
    );
    let jobs = wait_until_within("the backlog delivered", BACKLOG_WAIT, || {
        let jobs = d.live_jobs("backlog");
        jobs.iter().all(|j| j.state.is_final()).then_some(jobs)
    });
    assert_eq!(jobs.len(), JOBS);
    assert!(jobs.iter().all(|j| j.state == JobState::Completed));
    // Commit order: job ids in the order the device printed them.
    let by_id: Vec<String> = jobs.iter().map(|j| j.sha256.clone()).collect();
    assert_eq!(by_id, sent);
    assert_eq!(dev.printed(), sent, "every job once, in commit order");
}

/// CUPS's own conformance suite sends documents a PDF-only printer refuses;
/// those jobs end at once, so a job the CUPS `ipp` backend prints right
/// after reaches the printer within seconds instead of waiting behind them.
#[test]
fn a_job_after_cups_conformance_suite_reaches_the_printer() {
    let eve = EvePrinter::start_with(
        "application/pdf,image/jpeg,image/pwg-raster,image/urf",
        "/bin/true",
    );
    let d = TestDaemon::start(&format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/control.sock"
[global.limits]
max-job-size = "1 MiB"
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.0.1/32"]
device.eve = {{ uri = "{}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["eve"] }}] }}
input = [{{ listener = "ipp", workflow = "direct" }}]
"#,
        eve.uri()
    ));
    let uri = format!("ipp://{}/ipp/print", d.addr("ipp"));
    let suite = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ipp");
    let out = std::process::Command::new(require("ipptool"))
        .args(["-R", "-t", "-f", "document-a4.pdf", &uri, "ipp-2.0.test"])
        .current_dir(&suite)
        .output()
        .unwrap();
    println!(
        "ipp-2.0.test: {} lines of output",
        String::from_utf8_lossy(&out.stdout).lines().count()
    );
    let mut pdf = b"%PDF-1.4\n% after the suite\n".to_vec();
    pdf.extend_from_slice(b"%%EOF\n");
    let file = d.dir.path().join("after.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let backend = std::process::Command::new(require("ipp"))
        .env("DEVICE_URI", &uri)
        .env("CONTENT_TYPE", "application/pdf")
        .args(["1", "alice", "after the suite", "1", ""])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        backend.status.success(),
        "{}",
        String::from_utf8_lossy(&backend.stderr)
    );
    let want = sha256(&pdf);
    let start = std::time::Instant::now();
    loop {
        if eve.documents().iter().any(|(_, b)| sha256(b) == want) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the backend's job did not reach the printer within 15 s: {:?}",
            d.live_jobs("a")
                .iter()
                .map(|j| (j.id.0, j.state, history(j)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "the backend's job reached the printer {:.1} s after it was sent",
        start.elapsed().as_secs_f64()
    );
}
