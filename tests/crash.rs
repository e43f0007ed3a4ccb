//! The kill -9 proof: three tenants send jobs continuously over
//! RAW, LPD and IPP from their own loopback addresses while the real daemon
//! is killed with SIGKILL at random moments and restarted, 100 times. Every
//! job a client saw acknowledged must exist exactly once in its tenant's
//! records and reach the tenant's device (SHA-256 on the device side); a
//! document may reach its device twice only when the job's history shows an
//! interrupted transfer (the documented at-least-once edge); no orphan spool
//! file may remain.
//!
//! Half of the clients pause a few milliseconds between connecting and
//! sending, as real spoolers do: a daemon killed in that pause must not
//! close their connection in order (a RAW sender takes an orderly close as
//! the acknowledgement). The devices record how each transfer ended: a
//! transfer a kill cut short must end in a reset (the printer discards it),
//! never in order, so a printer never prints a partial job.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use printroute::wire::ipp as codec;

/// Kills of the daemon.
const KILLS: usize = 100;
/// Client threads per tenant.
const CLIENTS_PER_TENANT: usize = 2;
/// Upper bound of attempts per client thread (the loop also ends when the kills are done).
const MAX_ATTEMPTS: u64 = 5_000;
/// Socket timeouts of the clients: a client never waits longer for one answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole kill phase ends by then at the latest.
const KILL_PHASE_LIMIT: Duration = Duration::from_secs(120);
/// What the history of a job says about a transfer a crash cut short.
const INTERRUPTED: &str = "was interrupted by a restart; sending again";

fn config(raw: u16, lpd: u16, ipp: u16, devs: [&str; 3]) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "2s"
[global.limits]
idle-timeout = "5s"
delivery-timeout = "1h"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:{raw}"]
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:{lpd}"]
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:{ipp}"]

[tenant.a]
ranges = ["127.0.1.0/24"]
device.printer = {{ uri = "{}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]

[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "lpd", workflow = "direct" }}]

[tenant.c]
ranges = ["127.0.3.0/24"]
device.printer = {{ uri = "{}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "ipp", workflow = "direct" }}]
"#,
        devs[0], devs[1], devs[2]
    )
}

/// xorshift64*: the test's only randomness, seeded and printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// A unique document: a header naming it, then pseudo-random bytes.
fn document(tag: &str, size: usize) -> Vec<u8> {
    let mut d = format!("@PJL JOB NAME = \"{tag}\"\n%!PS-Adobe-3.0\n%%Title: {tag}\n").into_bytes();
    let mut r = Rng(tag.bytes().fold(0x9E37_79B9_7F4A_7C15, |h: u64, b| {
        h.wrapping_mul(31).wrapping_add(b as u64)
    }) | 1);
    while d.len() < size {
        d.extend_from_slice(&r.next().to_le_bytes());
    }
    d.truncate(size.max(64));
    d
}

/// Longest pause of a pausing client between connect and its first byte.
const MAX_PAUSE_MS: u64 = 20;

thread_local! {
    /// This client thread's pause after connecting (0: none).
    static PAUSE_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn connect(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from: IpAddr = from.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), CLIENT_TIMEOUT)?;
    let s: TcpStream = socket.into();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let pause = PAUSE_MS.get();
    if pause > 0 {
        std::thread::sleep(Duration::from_millis(pause));
    }
    Ok(s)
}

/// RAW: acknowledged by an orderly close after the data.
fn send_raw(from: &str, to: SocketAddr, data: &[u8]) -> std::io::Result<()> {
    let mut s = connect(from, to)?;
    s.write_all(data)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(())
}

fn lpd_ack(s: &mut TcpStream, what: &str) -> std::io::Result<()> {
    let mut b = [0u8; 1];
    match s.read(&mut b)? {
        1 if b[0] == 0 => Ok(()),
        1 => Err(std::io::Error::other(format!(
            "negative ack {} to {what}",
            b[0]
        ))),
        _ => Err(std::io::Error::other(format!(
            "closed before ack of {what}"
        ))),
    }
}

/// LPD (RFC 1179), control file first: acknowledged by the final `\0` after the data file.
fn send_lpd(from: &str, to: SocketAddr, n: u64, user: &str, data: &[u8]) -> std::io::Result<()> {
    let mut s = connect(from, to)?;
    let job = n % 1000;
    s.write_all(b"\x02lp\n")?;
    lpd_ack(&mut s, "receive job")?;
    let cf = format!("Hcrash\nP{user}\nJjob {n}\nldfA{job:03}crash\n");
    s.write_all(format!("\x02{} cfA{job:03}crash\n", cf.len()).as_bytes())?;
    lpd_ack(&mut s, "control subcommand")?;
    s.write_all(format!("{cf}\0").as_bytes())?;
    lpd_ack(&mut s, "control file")?;
    s.write_all(format!("\x03{} dfA{job:03}crash\n", data.len()).as_bytes())?;
    lpd_ack(&mut s, "data subcommand")?;
    s.write_all(&[data, &[0]].concat())?;
    lpd_ack(&mut s, "data file")
}

/// IPP Print-Job: acknowledged by `successful-ok` with a job-id.
fn send_ipp(from: &str, to: SocketAddr, user: &str, data: &[u8]) -> std::io::Result<()> {
    let uri = format!("ipp://{to}/ipp/print");
    let mut body = vec![2, 0, 0, 2, 0, 0, 0, 1, 1];
    ipp_attr(&mut body, 0x47, "attributes-charset", b"utf-8");
    ipp_attr(&mut body, 0x48, "attributes-natural-language", b"en");
    ipp_attr(&mut body, 0x45, "printer-uri", uri.as_bytes());
    ipp_attr(&mut body, 0x42, "requesting-user-name", user.as_bytes());
    ipp_attr(&mut body, 0x42, "job-name", b"crash");
    ipp_attr(
        &mut body,
        0x49,
        "document-format",
        b"application/octet-stream",
    );
    body.push(3);
    body.extend_from_slice(data);
    let mut s = connect(from, to)?;
    let mut req = format!(
        "POST /ipp/print HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    s.write_all(&req)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("HTTP status {line:?}")));
    }
    let mut len = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut resp = vec![0u8; len.ok_or_else(|| std::io::Error::other("no content-length"))?];
    r.read_exact(&mut resp)?;
    let (m, _) = codec::decode(&resp, codec::RESPONSE_LIMITS)
        .map_err(|e| std::io::Error::other(format!("bad IPP response: {e:?}")))?;
    let job_id = m
        .attr(2, "job-id")
        .and_then(|a| a.values.first())
        .and_then(|v| v.as_int());
    match (m.code, job_id) {
        (0x0000 | 0x0001, Some(id)) if id > 0 => Ok(()),
        (code, _) => Err(std::io::Error::other(format!("IPP status {code:#06x}"))),
    }
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// (tenant, sha256) of every acknowledged job.
    acked: Mutex<Vec<(String, String)>>,
    /// Attempts without acknowledgement (daemon down, killed mid-job).
    unacked: AtomicU64,
}

impl Seen {
    /// Notes one attempt to send `data`: acknowledged, or not (after a
    /// short pause, as a sender retries).
    fn record(&self, tenant: &str, data: &[u8], result: std::io::Result<()>) {
        match result {
            Ok(()) => self
                .acked
                .lock()
                .unwrap()
                .push((tenant.to_string(), sha256(data))),
            Err(_) => {
                self.unacked.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Kills the daemon with SIGKILL `KILLS` times at random moments (up to
/// `max_gap_ms` apart), restarting it at once; with `pauses`, it sometimes
/// stays down a moment, so clients are refused meanwhile.
fn kill_and_restart(d: &mut TestDaemon, seed: u64, max_gap_ms: u64, pauses: bool) {
    let mut rng = Rng(seed);
    let start = Instant::now();
    for i in 0..KILLS {
        assert!(
            start.elapsed() < KILL_PHASE_LIMIT,
            "kill phase took too long: {i} kills"
        );
        std::thread::sleep(Duration::from_millis(rng.range(10, max_gap_ms)));
        d.kill9();
        if pauses && rng.range(0, 4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.range(1, 50)));
        }
        d.spawn();
    }
}

#[test]
fn acknowledged_jobs_survive_100_kill_9s_and_reach_their_devices() {
    require("socat");
    let _turn = KILL_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let devs = [
        RecordingDevice::good("127.0.1.50"),
        RecordingDevice::good("127.0.2.50"),
        RecordingDevice::good("127.0.3.50"),
    ];
    let (raw, lpd, ipp) = (
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
        free_port("127.0.0.1"),
    );
    let uris: Vec<String> = devs.iter().map(|d| d.uri()).collect();
    let mut d = TestDaemon::start(&config(raw, lpd, ipp, [&uris[0], &uris[1], &uris[2]]));
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let (raw, lpd, ipp) = (addr(raw), addr(lpd), addr(ipp));

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed:#x}");
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (t, tenant) in ["a", "b", "c"].into_iter().enumerate() {
        for k in 0..CLIENTS_PER_TENANT {
            let (seen, stop) = (seen.clone(), stop.clone());
            let mut rng = Rng(seed.wrapping_add((t * 16 + k) as u64 * 0x9E37_79B9) | 1);
            clients.push(std::thread::spawn(move || {
                let pausing = k % 2 == 1;
                for n in 0..MAX_ATTEMPTS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    PAUSE_MS.set(if pausing {
                        rng.range(1, MAX_PAUSE_MS + 1)
                    } else {
                        0
                    });
                    let from = format!("127.0.{}.{}", t + 1, 10 + (n % 20));
                    let tag = format!("{tenant}-{k}-{n}");
                    let data = document(&tag, rng.range(512, 24 << 10) as usize);
                    let user = format!("user{k}");
                    let result = match tenant {
                        "a" => send_raw(&from, raw, &data),
                        "b" => send_lpd(&from, lpd, n, &user, &data),
                        _ => send_ipp(&from, ipp, &user, &data),
                    };
                    seen.record(tenant, &data, result);
                }
            }));
        }
    }

    // Kill at random moments, restart at once.
    kill_and_restart(&mut d, seed, 250, true);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let acked = seen.acked.lock().unwrap().clone();
    let unacked = seen.unacked.load(Ordering::Relaxed);

    // One last restart, then run until every job is finished.
    d.kill9();
    d.spawn();
    let want: HashMap<&str, Vec<String>> = ["a", "b", "c"]
        .into_iter()
        .map(|t| {
            (
                t,
                acked
                    .iter()
                    .filter(|(at, _)| at == t)
                    .map(|(_, s)| s.clone())
                    .collect(),
            )
        })
        .collect();
    for (i, t) in ["a", "b", "c"].into_iter().enumerate() {
        wait_for_acknowledged(&mut d, t, || devs[i].printed(), &want[t]);
    }
    let mut jobs = None;
    for round in 0..20 {
        // Quiet: no new document at any device for a while.
        let mut last = (0, Instant::now());
        wait_until_long("devices to go quiet", || {
            let n: usize = devs.iter().map(|d| d.received().len()).sum();
            if n != last.0 {
                last = (n, Instant::now());
            }
            (last.1.elapsed() > Duration::from_millis(700)).then_some(())
        });
        assert_eq!(d.stop(), 0, "daemon stops cleanly");
        let all = d.stored_jobs();
        let open: usize = all
            .values()
            .flatten()
            .filter(|j| !j.state.is_final())
            .count();
        if open == 0 {
            jobs = Some(all);
            break;
        }
        println!("round {round}: {open} jobs still unfinished; running on");
        d.spawn();
    }
    let jobs = jobs.expect("every job finished");

    let mut delivered = 0;
    let mut duplicates = 0;
    let mut partial = 0;
    let mut cut = 0;
    let mut interrupted_total = 0;
    for (i, t) in ["a", "b", "c"].into_iter().enumerate() {
        let records = jobs.get(t).map(Vec::as_slice).unwrap_or_default();
        let mut by_sha: HashMap<&str, Vec<&printroute::store::job::Job>> = HashMap::new();
        for j in records {
            by_sha.entry(j.sha256.as_str()).or_default().push(j);
        }
        for (sha, js) in &by_sha {
            assert_eq!(
                js.len(),
                1,
                "tenant {t}: document {sha} recorded {} times",
                js.len()
            );
        }
        for sha in &want[t] {
            let js = by_sha
                .get(sha.as_str())
                .unwrap_or_else(|| panic!("tenant {t}: acknowledged job {sha} has no record"));
            assert_eq!(
                js[0].state,
                printroute::store::job::JobState::Completed,
                "tenant {t}: acknowledged job not completed: {:?}",
                js[0]
            );
        }
        let mut at_device: HashMap<String, usize> = HashMap::new();
        for sha in devs[i].printed() {
            *at_device.entry(sha).or_default() += 1;
        }
        cut += devs[i]
            .received()
            .iter()
            .filter(|r| r.end == End::Reset)
            .count();
        for (sha, n) in &at_device {
            match by_sha.get(sha.as_str()) {
                Some(js) => {
                    delivered += 1;
                    let interrupted = js[0]
                        .history
                        .iter()
                        .filter(|e| e.note.contains(INTERRUPTED))
                        .map(|e| 1 + e.repeats as usize)
                        .sum::<usize>();
                    if *n > 1 {
                        duplicates += n - 1;
                        assert!(
                            n - 1 <= interrupted,
                            "tenant {t}: job {} reached its device {n} times but its history shows {interrupted} interrupted transfers: {:?}",
                            js[0].id,
                            js[0].history
                        );
                    }
                }
                // A transfer cut short by a kill: a partial document, never a job's.
                None => {
                    partial += n;
                    let lens: Vec<usize> = devs[i]
                        .received()
                        .iter()
                        .filter(|r| r.sha256 == *sha)
                        .map(|r| r.len)
                        .collect();
                    println!("tenant {t}: partial document at the device, lengths {lens:?}");
                }
            }
        }
        for j in records {
            assert!(
                at_device.contains_key(&j.sha256),
                "tenant {t}: completed job {} never reached its device: {:?}",
                j.id,
                j.history
            );
            interrupted_total += j
                .history
                .iter()
                .filter(|e| e.note.contains(INTERRUPTED))
                .map(|e| 1 + e.repeats as usize)
                .sum::<usize>();
        }
        assert!(
            d.spool_files(t).is_empty(),
            "tenant {t}: orphan spool files {:?}",
            d.spool_files(t)
        );
    }
    // A transfer a kill cut short reached its device as a reset, never as
    // the orderly end of a short document that a printer would print.
    assert_eq!(
        partial, 0,
        "{partial} partial documents ended in order at devices ({cut} transfers were reset)"
    );
    println!(
        "crash test: kills={KILLS} acknowledged={} (a={} b={} c={}) records={} delivered={delivered} duplicates={duplicates} interrupted-transfers={interrupted_total} partial-printed={partial} transfers-reset={cut} unacknowledged-attempts={unacked}",
        acked.len(),
        want["a"].len(),
        want["b"].len(),
        want["c"].len(),
        jobs.values().map(Vec::len).sum::<usize>(),
    );
    assert!(
        want.values().all(|w| !w.is_empty()),
        "every tenant had jobs acknowledged"
    );
}

/// The two tests that kill the daemon 100 times under load take turns:
/// each keeps both cores busy.
static KILL_TESTS: Mutex<()> = Mutex::new(());

/// Waits until every acknowledged document of `want` has reached tenant
/// `t`'s printer in order (`printed`: the digests it printed). If one does
/// not, stops the daemon and fails naming each missing digest and what the
/// store holds of it.
fn wait_for_acknowledged(
    d: &mut TestDaemon,
    t: &str,
    printed: impl Fn() -> Vec<String>,
    want: &[String],
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<String> = printed().into_iter().collect();
        let missing: Vec<&String> = want.iter().filter(|s| !got.contains(*s)).collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            d.stop();
            let all = d.stored_jobs();
            let records = all.get(t).map(Vec::as_slice).unwrap_or_default();
            let report: Vec<String> = missing
                .iter()
                .map(|m| {
                    let r: Vec<_> = records.iter().filter(|j| &&j.sha256 == m).collect();
                    format!("{m}: records {r:?}")
                })
                .collect();
            panic!(
                "tenant {t}: {} acknowledged jobs never reached the printer:\n{}",
                missing.len(),
                report.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Client threads per tenant of the spool log crash test.
const LOG_CLIENTS_PER_TENANT: usize = 4;
/// Largest document of the spool log crash test (all go to the log).
const LOG_MAX_DOC: u64 = 8 << 10;

fn log_config(raw: u16, a_device: &str, b_device: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/control.sock"
shutdown-grace = "2s"
[global.limits]
idle-timeout = "5s"
delivery-timeout = "1h"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:{raw}"]

[tenant.a]
ranges = ["127.0.1.0/24"]
device.printer = {{ uri = "{a_device}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]

[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{b_device}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]
"#
    )
}

/// Bytes the daemon's starts cut from spool log segments (torn tails and
/// dead entries at their ends), summed from its log.
fn cut_bytes(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("dead tails cut"))
        .filter_map(|l| l.split("cut_bytes=").nth(1))
        .filter_map(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Small jobs go to the tenants' spool logs: many in flight from eight
/// RAW clients of two tenants while the daemon is killed 100 times, so
/// kills land between an entry's append and its group's commit. A's
/// printer is down meanwhile (its entries stay live across restarts, its
/// segments grow and roll); b's prints at once (entries die, segments go
/// under load). Then a's printer comes up. Every acknowledged job reaches
/// its printer whole; the starts cut the tails no record named; no segment
/// is left once every job is done.
#[test]
fn small_jobs_survive_100_kill_9s_during_spool_log_appends() {
    let _turn = KILL_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let a_addr: SocketAddr = format!("127.0.1.60:{}", free_port("127.0.1.60"))
        .parse()
        .unwrap();
    let b_dev = RecordingDevice::good("127.0.2.60");
    let raw = free_port("127.0.0.1");
    let mut d = TestDaemon::start(&log_config(
        raw,
        &format!("socket://{a_addr}"),
        &b_dev.uri(),
    ));
    let to: SocketAddr = format!("127.0.0.1:{raw}").parse().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("spool log crash test seed {seed:#x}");
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (t, tenant) in ["a", "b"].into_iter().enumerate() {
        for k in 0..LOG_CLIENTS_PER_TENANT {
            let (seen, stop) = (seen.clone(), stop.clone());
            let mut rng = Rng(seed.wrapping_add((t * 16 + k) as u64 * 0x9E37_79B9) | 1);
            clients.push(std::thread::spawn(move || {
                for n in 0..MAX_ATTEMPTS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let from = format!("127.0.{}.{}", t + 1, 10 + (n % 20));
                    let data = document(
                        &format!("log-{tenant}-{k}-{n}"),
                        rng.range(256, LOG_MAX_DOC) as usize,
                    );
                    seen.record(tenant, &data, send_raw(&from, to, &data));
                }
            }));
        }
    }
    kill_and_restart(&mut d, seed, 150, false);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let acked = seen.acked.lock().unwrap().clone();
    let want = |t: &str| -> Vec<String> {
        acked
            .iter()
            .filter(|(at, _)| at == t)
            .map(|(_, s)| s.clone())
            .collect()
    };
    let (want_a, want_b) = (want("a"), want("b"));
    assert!(
        !want_a.is_empty() && !want_b.is_empty(),
        "both tenants had jobs acknowledged"
    );
    let cut = cut_bytes(&d.log());
    let a_before = d.spool_files("a").len();

    // A's printer comes up; a restart makes the daemon try it at once.
    let a_dev = RecordingDevice::start_on(&a_addr.to_string(), Behaviour::Good, 0, Behaviour::Good);
    d.kill9();
    d.spawn();
    for (t, dev, want) in [("a", &a_dev, &want_a), ("b", &b_dev, &want_b)] {
        wait_for_acknowledged(&mut d, t, || dev.printed(), want);
    }
    wait_until_long("every job finished", || {
        let open: usize = ["a", "b"]
            .iter()
            .map(|t| {
                d.live_jobs(t)
                    .iter()
                    .filter(|j| !j.state.is_final())
                    .count()
            })
            .sum();
        (open == 0).then_some(())
    });
    assert_eq!(d.stop(), 0, "daemon stops cleanly");
    let stored = d.stored_jobs();
    for (t, dev) in [("a", &a_dev), ("b", &b_dev)] {
        let printed: HashSet<String> = dev.printed().into_iter().collect();
        for j in &stored[t] {
            assert_eq!(
                j.state,
                printroute::store::job::JobState::Completed,
                "tenant {t}: {:?}",
                j.history
            );
            assert!(
                printed.contains(&j.sha256),
                "tenant {t}: job {} not printed whole",
                j.id
            );
        }
        let spool = d.data_dir().join("spool").join(t);
        let segments: Vec<String> = std::fs::read_dir(&spool)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| printroute::store::log::segment_number(n).is_some())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            segments.is_empty(),
            "tenant {t}: segments left {segments:?}"
        );
        assert!(
            d.spool_files(t).is_empty(),
            "tenant {t}: {:?}",
            d.spool_files(t)
        );
    }
    println!(
        "spool log crash test: kills={KILLS} acknowledged a={} b={} unacknowledged-attempts={} a's documents waiting in the log={a_before} bytes cut at starts={cut}",
        want_a.len(),
        want_b.len(),
        seen.unacked.load(Ordering::Relaxed),
    );
    assert!(
        a_before >= want_a.len(),
        "a's acknowledged jobs were all in the log: {a_before} < {}",
        want_a.len()
    );
    assert!(
        cut > 0,
        "no start found a tail to cut in 100 kills during appends"
    );
}

/// Like `wait_until`, with a longer deadline for the end of the crash test.
fn wait_until_long<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until_within(what, Duration::from_secs(60), f)
}

/// One tenant `name` on 127.0.`net`.0/24 printing RAW jobs (up to 64 MiB)
/// to `device`.
fn slow_device_config(raw: u16, name: &str, net: u8, device: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
[global.limits]
max-job-size = "64 MiB"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:{raw}"]
[tenant.{name}]
ranges = ["127.0.{net}.0/24"]
device.slow = {{ uri = "{device}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["slow"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]
"#
    )
}

/// Bytes a slow printer has read when the daemon is killed mid-transfer.
const PART_WAY: usize = 2 << 20;

/// A kill -9 while a big job is being sent to a slow socket printer: the
/// printer sees a reset (and discards what it got), never an orderly end of
/// a partial job; after the restart the job reaches it whole, once.
#[test]
fn a_kill_9_mid_transfer_never_ends_a_partial_job_in_order() {
    let dev = RecordingDevice::start(
        "127.0.5.50",
        Behaviour::Slow(64 << 10),
        usize::MAX,
        Behaviour::Good,
    );
    let raw = free_port("127.0.0.1");
    let mut d = TestDaemon::start(&slow_device_config(raw, "s", 5, &dev.uri()));
    let job = document("slow", 20 << 20);
    let to: SocketAddr = format!("127.0.0.1:{raw}").parse().unwrap();
    send_raw("127.0.5.7", to, &job).expect("acknowledged");
    // Kill while the printer is part-way through the document.
    wait_until("the printer part-way through the job", || {
        (dev.bytes_so_far() >= PART_WAY).then_some(())
    });
    d.kill9();
    let cut = wait_until("the printer to see the transfer end", || {
        dev.received().first().cloned()
    });
    println!("printer saw the cut transfer as {cut:?}");
    assert!(cut.len > 0 && cut.len < job.len(), "{cut:?}");
    assert_eq!(cut.end, End::Reset, "a partial job ended in order: {cut:?}");
    d.spawn();
    let printed = wait_until_long("the job printed after the restart", || {
        let p = dev.printed();
        (!p.is_empty()).then_some(p)
    });
    assert_eq!(printed, vec![sha256(&job)]);
    d.stop();
    let jobs = d.stored_jobs();
    assert_eq!(jobs["s"].len(), 1);
    assert_eq!(
        jobs["s"][0].state,
        printroute::store::job::JobState::Completed
    );
}

/// A RAW sender that connected and has not sent yet when the daemon dies
/// (behind a balancer, its connection waits in the daemon for the PROXY
/// header) must see a reset, never an orderly close, which it would take as
/// the acknowledgement of a job nobody kept.
#[test]
fn a_sender_that_has_not_sent_yet_never_reads_a_dying_daemon_as_an_acknowledgement() {
    let raw = free_port("127.0.0.1");
    let mut d = TestDaemon::start(&format!(
        r#"
[global]
data-dir = "{{data}}"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:{raw}"]
proxy-protocol = true
trusted-proxies = ["127.0.0.1/32"]
[tenant.p]
ranges = ["127.0.6.0/24"]
workflow.keep = {{ steps = [{{ step = "hold" }}] }}
input = [{{ listener = "raw", workflow = "keep" }}]
"#
    ));
    let to: SocketAddr = format!("127.0.0.1:{raw}").parse().unwrap();
    // Connections the daemon has accepted, each waiting for its first byte.
    let mut waiting: Vec<TcpStream> = (0..8).map(|_| connect("127.0.0.1", to).unwrap()).collect();
    // Accepted: the listening socket's queue of connections not yet
    // accepted (`ss`'s Recv-Q for a listener) is empty.
    wait_until("the daemon to accept them", || {
        let out = std::process::Command::new(require("ss"))
            .args(["-Hltn", &format!("sport = :{raw}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let queued: Option<u32> = text.split_whitespace().nth(1).and_then(|n| n.parse().ok());
        (queued == Some(0)).then_some(())
    });
    d.kill9();
    let mut acknowledged = 0;
    for s in &mut waiting {
        let mut job = b"PROXY TCP4 127.0.6.7 127.0.0.1 40000 9100\r\n".to_vec();
        job.extend_from_slice(b"a job sent to a daemon that just died\n");
        // As socat and the CUPS socket backend do: a failed half-close is
        // not looked at; the end of the stream is the answer.
        let wrote = s.write_all(&job).is_ok();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let ok = wrote && s.read_to_end(&mut Vec::new()).is_ok();
        acknowledged += usize::from(ok);
    }
    assert_eq!(
        acknowledged, 0,
        "senders read the dying daemon's close as an acknowledgement"
    );
    d.spawn();
    d.stop();
    assert!(d.stored_jobs().get("p").is_none_or(Vec::is_empty));
}

/// What a slow LPD printer saw of one connection.
#[derive(Clone, Debug)]
struct LpdSeen {
    /// The data file's length as announced.
    declared: usize,
    /// Data file bytes received.
    got: Vec<u8>,
    /// The data file's terminating zero came, and was acknowledged.
    whole: bool,
    /// How the connection ended after what was received.
    end: End,
}

/// A slow LPD printer (RFC 1179 receive-job, control file first), reading
/// the data file 64 KiB every 10 ms.
fn slow_lpd(ip: &str) -> (SocketAddr, Arc<Mutex<Vec<LpdSeen>>>, Arc<AtomicU64>) {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = Arc::new(AtomicU64::new(0));
    let (s2, p2) = (seen.clone(), progress.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (seen, progress) = (s2.clone(), p2.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                let mut line = Vec::new();
                let mut rec = LpdSeen {
                    declared: 0,
                    got: Vec::new(),
                    whole: false,
                    end: End::Orderly,
                };
                let end = (|| -> std::io::Result<End> {
                    loop {
                        line.clear();
                        if r.read_until(b'\n', &mut line)? == 0 {
                            return Ok(End::Orderly);
                        }
                        let text = String::from_utf8_lossy(&line[1..]).into_owned();
                        let n: usize = text
                            .split_whitespace()
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        match line[0] {
                            2 if n == 0 => w.write_all(&[0])?, // receive job
                            2 => {
                                w.write_all(&[0])?;
                                let mut cf = vec![0u8; n + 1];
                                r.read_exact(&mut cf)?;
                                w.write_all(&[0])?;
                            }
                            3 => {
                                rec.declared = n;
                                w.write_all(&[0])?;
                                let mut buf = vec![0u8; 64 << 10];
                                while rec.got.len() < n {
                                    let want = (n - rec.got.len()).min(buf.len());
                                    let k = r.read(&mut buf[..want])?;
                                    if k == 0 {
                                        return Ok(End::Orderly);
                                    }
                                    rec.got.extend_from_slice(&buf[..k]);
                                    progress.fetch_add(k as u64, Ordering::Relaxed);
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                                let mut zero = [1u8];
                                r.read_exact(&mut zero)?;
                                rec.whole = zero[0] == 0;
                                w.write_all(&[0])?;
                            }
                            _ => return Ok(End::ByDevice),
                        }
                    }
                })();
                rec.end = end.unwrap_or(End::Reset);
                seen.lock().unwrap().push(rec);
            });
        }
    });
    (addr, seen, progress)
}

/// The same for a slow LPD printer: a kill mid data file resets the
/// connection, so the printer never takes a short data file for a whole
/// one; after the restart the job arrives whole, once.
#[test]
fn a_kill_9_mid_transfer_to_an_lpd_printer_never_completes_a_partial_data_file() {
    let (lpd, seen, progress) = slow_lpd("127.0.7.50");
    let raw = free_port("127.0.0.1");
    let mut d = TestDaemon::start(&slow_device_config(raw, "l", 7, &format!("lpd://{lpd}/lp")));
    let job = document("slow-lpd", 20 << 20);
    let to: SocketAddr = format!("127.0.0.1:{raw}").parse().unwrap();
    send_raw("127.0.7.7", to, &job).expect("acknowledged");
    wait_until("the printer part-way through the data file", || {
        (progress.load(Ordering::Relaxed) >= PART_WAY as u64).then_some(())
    });
    d.kill9();
    let cut = wait_until("the printer to see the transfer end", || {
        seen.lock().unwrap().first().cloned()
    });
    println!(
        "LPD printer saw the cut transfer: {} of {} bytes, whole={}, end={:?}",
        cut.got.len(),
        cut.declared,
        cut.whole,
        cut.end
    );
    assert!(!cut.whole && cut.got.len() < job.len(), "{}", cut.got.len());
    assert_eq!(cut.end, End::Reset, "a partial data file ended in order");
    d.spawn();
    let whole = wait_until_long("the job whole at the printer after the restart", || {
        let s = seen.lock().unwrap();
        let whole: Vec<String> = s
            .iter()
            .filter(|r| r.whole)
            .map(|r| sha256(&r.got))
            .collect();
        (!whole.is_empty()).then_some(whole)
    });
    assert_eq!(whole, vec![sha256(&job)]);
    d.stop();
    assert_eq!(
        d.stored_jobs()["l"][0].state,
        printroute::store::job::JobState::Completed
    );
}
