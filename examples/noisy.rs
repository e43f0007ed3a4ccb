//! Noisy-neighbour benchmark: tenant b's time to acknowledgement alone, and
//! again while tenant a attacks the same daemon.
//!
//! Phase 1: b alone sends RAW jobs of `--b-size` at `--b-rate` per second
//! for `--seconds`, on an open-loop schedule (each job's time counts from
//! when it was due, so queueing in the daemon counts too).
//! Phase 2: the same b load while tenant a runs, all bounded by the phase's time:
//! - a flood of small RAW jobs at `--a-rate` per second (set it to about 10x
//!   what the daemon takes; `scripts/bench-small.sh` measures that), from up to
//!   `--a-conns` connections at once (a due job that finds them all busy is
//!   counted as not sent);
//! - `--slowloris` connections that trickle one byte every `--trickle-ms`
//!   (RAW documents, LPD subcommands, IPP headers), reconnecting when cut off;
//! - `--malformed-rate` malformed LPD commands and IPP requests per second;
//! - `--big-count` RAW jobs of `--big` bytes, `--big-conns` at a time.
//!
//! It prints b's p50/p99 in both phases, their ratios, and what became of
//! a's traffic. Loopback only: a's sources are `--a-source` and the next
//! 63 addresses, b's `--b-source` and the next 7.
//!
//! ```text
//! cargo run --release --example noisy -- --raw 127.0.0.1:19100 --lpd 127.0.0.1:19515 --ipp 127.0.0.1:19631
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

/// Bytes written per write call.
const CHUNK: usize = 256 << 10;
/// Longest any one client operation may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(120);
/// Source addresses tenant a's clients cycle through.
const A_SOURCES: u32 = 64;
/// Source addresses tenant b's clients cycle through.
const B_SOURCES: u32 = 8;
/// How often the open-loop schedulers look whether jobs are due.
const TICK: Duration = Duration::from_millis(1);
/// Pause before a phase, so the previous one's traffic has drained.
const SETTLE: Duration = Duration::from_secs(3);

struct Args {
    raw: SocketAddr,
    /// Where b sends (default: `raw`, the listener a floods).
    b_raw: Option<SocketAddr>,
    lpd: SocketAddr,
    ipp: SocketAddr,
    a_source: IpAddr,
    b_source: IpAddr,
    seconds: u64,
    b_rate: f64,
    b_size: u64,
    a_rate: f64,
    a_size: u64,
    a_conns: usize,
    slowloris: usize,
    trickle: Duration,
    malformed_rate: f64,
    big: u64,
    big_count: u64,
    big_conns: u64,
    skip_alone: bool,
    /// The daemon's pid, to report its CPU time per phase.
    daemon_pid: Option<u32>,
}

fn parse_args() -> Args {
    let mut a = Args {
        raw: "127.0.0.1:19100".parse().unwrap(),
        b_raw: None,
        lpd: "127.0.0.1:19515".parse().unwrap(),
        ipp: "127.0.0.1:19631".parse().unwrap(),
        a_source: "127.0.1.10".parse().unwrap(),
        b_source: "127.0.2.10".parse().unwrap(),
        seconds: 30,
        b_rate: 20.0,
        b_size: 4096,
        a_rate: 17_000.0,
        a_size: 4096,
        a_conns: 512,
        slowloris: 300,
        trickle: Duration::from_secs(5),
        malformed_rate: 200.0,
        big: 200 << 20,
        big_count: 6,
        big_conns: 2,
        skip_alone: false,
        daemon_pid: None,
    };
    let size = |s: String| printroute::config::units::parse_size(&s).expect("a size, e.g. 4KiB");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--raw" => a.raw = val().parse().expect("--raw ADDR:PORT"),
            "--b-raw" => a.b_raw = Some(val().parse().expect("--b-raw ADDR:PORT")),
            "--lpd" => a.lpd = val().parse().expect("--lpd ADDR:PORT"),
            "--ipp" => a.ipp = val().parse().expect("--ipp ADDR:PORT"),
            "--a-source" => a.a_source = val().parse().expect("--a-source IP"),
            "--b-source" => a.b_source = val().parse().expect("--b-source IP"),
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--b-rate" => a.b_rate = val().parse().expect("--b-rate JOBS_PER_S"),
            "--b-size" => a.b_size = size(val()),
            "--a-rate" => a.a_rate = val().parse().expect("--a-rate JOBS_PER_S"),
            "--a-size" => a.a_size = size(val()),
            "--a-conns" => a.a_conns = val().parse().expect("--a-conns N"),
            "--slowloris" => a.slowloris = val().parse().expect("--slowloris N"),
            "--trickle-ms" => {
                a.trickle = Duration::from_millis(val().parse().expect("--trickle-ms N"))
            }
            "--malformed-rate" => a.malformed_rate = val().parse().expect("--malformed-rate N"),
            "--big" => a.big = size(val()),
            "--big-count" => a.big_count = val().parse().expect("--big-count N"),
            "--big-conns" => a.big_conns = val().parse().expect("--big-conns N"),
            "--skip-alone" => a.skip_alone = true,
            "--daemon-pid" => a.daemon_pid = Some(val().parse().expect("--daemon-pid PID")),
            "--help" | "-h" => {
                println!("noisy [--raw A] [--b-raw A] [--lpd A] [--ipp A] [--seconds T] [--b-rate R] [--b-size S] [--a-rate R] [--a-size S] [--a-conns N] [--slowloris N] [--trickle-ms MS] [--malformed-rate R] [--big S] [--big-count N] [--big-conns N] [--a-source IP] [--b-source IP] [--skip-alone] [--daemon-pid PID]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn nth(first: IpAddr, k: u32) -> IpAddr {
    match first {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + k).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + u128::from(k)).into()),
    }
}

async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(from, 0))?;
    let s = socket.connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One RAW job; `Ok` only for the daemon's orderly close (its acknowledgement).
async fn raw_job(from: IpAddr, to: SocketAddr, size: u64, buf: &[u8]) -> std::io::Result<()> {
    let mut s = connect(from, to).await?;
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut rest = [0u8; 64];
    while s.read(&mut rest).await? != 0 {}
    Ok(())
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11..13).map_or(0.0, |v| {
        v.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// Where the CPU went during a phase: the daemon, this generator, the machine.
struct CpuMeter {
    daemon: Option<String>,
    start: Instant,
    daemon_s: f64,
    own_s: f64,
    busy: (u64, u64),
}

/// Busy and total jiffies of the whole machine, from `/proc/stat`.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

impl CpuMeter {
    fn start(daemon: Option<u32>) -> CpuMeter {
        let daemon = daemon.map(|p| p.to_string());
        CpuMeter {
            daemon_s: daemon.as_deref().map_or(0.0, cpu_seconds),
            own_s: cpu_seconds("self"),
            busy: machine_jiffies(),
            start: Instant::now(),
            daemon,
        }
    }

    fn line(&self) -> String {
        let wall = self.start.elapsed().as_secs_f64();
        let d = self.daemon.as_deref().map_or(0.0, cpu_seconds) - self.daemon_s;
        let own = cpu_seconds("self") - self.own_s;
        let (b, t) = machine_jiffies();
        let machine = (b - self.busy.0) as f64 / ((t - self.busy.1).max(1)) as f64;
        format!(
            "CPU over {wall:.0} s: daemon {:.2} cores, load generator {:.2} cores, machine {:.0}% busy of {} cores",
            d / wall,
            own / wall,
            machine * 100.0,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "{} sent, {} acknowledged, {} refused or cut off, {} not sent (client cap)",
            self.sent.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed)
        )
    }
}

/// Tenant b's open-loop load; returns the sorted times to acknowledgement and the failures.
async fn run_b(a: &Args, buf: Arc<Vec<u8>>) -> (Vec<Duration>, u64) {
    let total = (a.b_rate * a.seconds as f64) as u64;
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / a.b_rate);
        tokio::time::sleep_until(due.into()).await;
        let from = nth(a.b_source, (i % u64::from(B_SOURCES)) as u32);
        let (to, size, buf) = (a.b_raw.unwrap_or(a.raw), a.b_size, buf.clone());
        tasks.push(tokio::spawn(async move {
            match tokio::time::timeout(OP_TIMEOUT, raw_job(from, to, size, &buf)).await {
                Ok(Ok(())) => Some(due.elapsed()),
                Ok(Err(e)) => {
                    eprintln!("b job {i} not acknowledged: {e}");
                    None
                }
                Err(_) => {
                    eprintln!("b job {i} timed out");
                    None
                }
            }
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("b task") {
            Some(d) => lat.push(d),
            None => failed += 1,
        }
    }
    lat.sort();
    (lat, failed)
}

fn report(name: &str, lat: &[Duration], failed: u64) {
    println!(
        "b {name}: {} acknowledged, {failed} failed; ack p50 {:.2?} p99 {:.2?} max {:.2?}",
        lat.len(),
        percentile(lat, 50),
        percentile(lat, 99),
        lat.last().copied().unwrap_or_default()
    );
}

/// Tenant a's flood: open loop at `a_rate`, at most `a_conns` connections at once.
async fn flood(a: Arc<Args>, buf: Arc<Vec<u8>>, until: Instant, c: Arc<Counts>) {
    let conns = Arc::new(Semaphore::new(a.a_conns));
    let start = Instant::now();
    let mut issued: u64 = 0;
    while Instant::now() < until {
        let due = (start.elapsed().as_secs_f64() * a.a_rate) as u64;
        while issued < due {
            issued += 1;
            let Ok(permit) = conns.clone().try_acquire_owned() else {
                c.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            c.sent.fetch_add(1, Ordering::Relaxed);
            let from = nth(a.a_source, (issued % u64::from(A_SOURCES)) as u32);
            let (to, size, buf, c) = (a.raw, a.a_size, buf.clone(), c.clone());
            tokio::spawn(async move {
                let r = tokio::time::timeout(OP_TIMEOUT, raw_job(from, to, size, &buf)).await;
                let n = if matches!(r, Ok(Ok(()))) {
                    &c.acked
                } else {
                    &c.refused
                };
                n.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        tokio::time::sleep(TICK).await;
    }
}

/// One slow sender: trickles a byte every `trickle` until cut off or `until`;
/// `kind` picks RAW (a document), LPD (a subcommand) or IPP (an HTTP header).
async fn slowloris(a: Arc<Args>, k: u32, until: Instant, c: Arc<Counts>) {
    let from = nth(a.a_source, k % A_SOURCES);
    let (to, opening): (SocketAddr, &[u8]) = match k % 3 {
        0 => (a.raw, b"%!PS-Adobe-3.0\n"),
        1 => (a.lpd, b"\x02lp\n"),
        _ => (a.ipp, b"POST /ipp/print HTTP/1.1\r\n"),
    };
    while Instant::now() < until {
        c.sent.fetch_add(1, Ordering::Relaxed);
        let Ok(mut s) = connect(from, to).await else {
            c.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(a.trickle).await;
            continue;
        };
        let mut alive = s.write_all(opening).await.is_ok();
        let mut scratch = [0u8; 256];
        while alive && Instant::now() < until {
            // Read what the daemon says (an LPD acknowledgement); a close or reset ends it.
            match tokio::time::timeout(a.trickle, s.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => alive = false,
                Ok(Ok(_)) | Err(_) => alive = s.write_all(b"X").await.is_ok(),
            }
        }
        if Instant::now() < until {
            c.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Malformed LPD commands and IPP requests at `malformed_rate` per second.
async fn malformed(a: Arc<Args>, until: Instant, c: Arc<Counts>) {
    let every = Duration::from_secs_f64(1.0 / a.malformed_rate);
    let mut i: u32 = 0;
    while Instant::now() < until {
        i = i.wrapping_add(1);
        let from = nth(a.a_source, i % A_SOURCES);
        let (a2, c2) = (a.clone(), c.clone());
        c.sent.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let r = tokio::time::timeout(OP_TIMEOUT, async move {
                let (to, req): (SocketAddr, Vec<u8>) = if i % 2 == 0 {
                    (a2.lpd, b"\x09\xff\xfe not a command \x00\n".to_vec())
                } else {
                    let body = b"\x07\x07\x00\x02\xff\xff\xff\xff\x01\x47\xff\xff";
                    let mut r = format!(
                        "POST /ipp/print HTTP/1.1\r\nHost: x\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    (a2.ipp, r)
                };
                let mut s = connect(from, to).await?;
                s.write_all(&req).await?;
                let mut answer = [0u8; 512];
                let n = s.read(&mut answer).await?;
                Ok::<_, std::io::Error>(n)
            })
            .await;
            // An answer of any kind (NAK, IPP error) is what a malformed request should get.
            let n = if matches!(r, Ok(Ok(n)) if n > 0) {
                &c2.acked
            } else {
                &c2.refused
            };
            n.fetch_add(1, Ordering::Relaxed);
        });
        tokio::time::sleep(every).await;
    }
}

/// Big RAW jobs, `big_conns` at a time, `big_count` in all (or until `until`).
async fn big_jobs(a: Arc<Args>, buf: Arc<Vec<u8>>, until: Instant, c: Arc<Counts>) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..a.big_conns {
        let (a, buf, c, next) = (a.clone(), buf.clone(), c.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let from = nth(a.a_source, (A_SOURCES - 1 - k as u32) % A_SOURCES);
            while next.fetch_add(1, Ordering::Relaxed) < a.big_count && Instant::now() < until {
                c.sent.fetch_add(1, Ordering::Relaxed);
                let left = until.saturating_duration_since(Instant::now());
                let r = tokio::time::timeout(left, raw_job(from, a.raw, a.big, &buf)).await;
                let n = if matches!(r, Ok(Ok(()))) {
                    &c.acked
                } else {
                    &c.refused
                };
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::main]
async fn main() {
    let a = Arc::new(parse_args());
    let buf: Arc<Vec<u8>> = Arc::new((0..CHUNK).map(|i| (i * 7 + i / 251) as u8).collect());
    println!(
        "b: RAW jobs of {} B at {}/s for {} s (open loop), from {} and the next {}",
        a.b_size,
        a.b_rate,
        a.seconds,
        a.b_source,
        B_SOURCES - 1
    );
    let alone = if a.skip_alone {
        None
    } else {
        let cpu = CpuMeter::start(a.daemon_pid);
        let (lat, failed) = run_b(&a, buf.clone()).await;
        report("alone", &lat, failed);
        println!("  {}", cpu.line());
        tokio::time::sleep(SETTLE).await;
        Some(lat)
    };

    println!(
        "a: flood of {} B RAW jobs at {}/s (<= {} connections), {} slow senders (a byte every {:?}), {} malformed requests/s, {} jobs of {} MiB ({} at a time)",
        a.a_size,
        a.a_rate,
        a.a_conns,
        a.slowloris,
        a.trickle,
        a.malformed_rate,
        a.big_count,
        a.big >> 20,
        a.big_conns
    );
    let (cf, cs, cm, cb) = (
        Arc::new(Counts::default()),
        Arc::new(Counts::default()),
        Arc::new(Counts::default()),
        Arc::new(Counts::default()),
    );
    // a starts first and stops last: b's whole phase runs under attack.
    let until = Instant::now() + SETTLE + Duration::from_secs(a.seconds) + SETTLE;
    let mut attack = Vec::new();
    attack.push(tokio::spawn(flood(
        a.clone(),
        buf.clone(),
        until,
        cf.clone(),
    )));
    for k in 0..a.slowloris {
        attack.push(tokio::spawn(slowloris(
            a.clone(),
            k as u32,
            until,
            cs.clone(),
        )));
    }
    if a.malformed_rate > 0.0 {
        attack.push(tokio::spawn(malformed(a.clone(), until, cm.clone())));
    }
    attack.push(tokio::spawn(big_jobs(
        a.clone(),
        buf.clone(),
        until,
        cb.clone(),
    )));
    tokio::time::sleep(SETTLE).await;
    let cpu = CpuMeter::start(a.daemon_pid);
    let (lat, failed) = run_b(&a, buf.clone()).await;
    report("under attack", &lat, failed);
    println!("  {}", cpu.line());
    for t in attack {
        let _ = t.await;
    }
    println!("a flood: {}", cf.line());
    println!(
        "a slow senders: {}",
        cs.line().replace(" acknowledged", " (n/a)")
    );
    println!(
        "a malformed: {}",
        cm.line().replace(" acknowledged", " answered in protocol")
    );
    println!("a big jobs: {}", cb.line());
    if let Some(alone) = alone {
        let ratio =
            |p| percentile(&lat, p).as_secs_f64() / percentile(&alone, p).as_secs_f64().max(1e-9);
        let (r50, r99) = (ratio(50), ratio(99));
        println!(
            "b under attack / b alone: p50 {r50:.2}x, p99 {r99:.2}x; goal p99 within 2x: {}",
            if r99 <= 2.0 { "met" } else { "NOT met" }
        );
    }
}
