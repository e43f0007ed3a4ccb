//! RAW and LPD load generator: sends N jobs of S bytes from K concurrent
//! clients, each bound to its own loopback source address, waits for each
//! job's acknowledgement (RAW: the daemon's orderly close; LPD: the final
//! `\0` after the last file — both only after the durable commit) and
//! reports jobs/s, MiB/s and p50/p99 time to acknowledgement.
//!
//! ```text
//! cargo run --release --example loadgen -- --addr 127.0.0.1:9100 --jobs 10000 --size 4KiB --clients 8 --sources 127.0.1.10
//! cargo run --release --example loadgen -- --addr 127.0.0.1:9100 --jobs 1 --size 1GiB --clients 1
//! cargo run --release --example loadgen -- --protocol lpd --queue secure --addr 127.0.0.1:5515 --jobs 10000 --size 4KiB
//! cargo run --release --example loadgen -- --sink 127.0.1.50:9101     # a discarding RAW printer
//! cargo run --release --example loadgen -- --addr 127.0.0.1:9100 --clients 16 --sources 127.0.1.10,127.0.2.10
//! cargo run --release --example loadgen -- --disk /var/tmp/x --jobs 20000 --size 4KiB --group 32
//! ```
//!
//! `--sources` takes one first address or a comma-separated list (one per
//! tenant): client k sends from the (k mod n)-th address plus k div n.
//! `--disk DIR` measures the disk instead of a daemon: `--jobs` records of
//! `--size` bytes appended to one new file in DIR, with one `fdatasync`
//! after every `--group` records (1: one each), as a group commit would.
//!
//! Bounded: it stops after `--jobs` jobs or `--max-seconds`, whichever comes first.
//! Traffic goes only where `--addr` points; use loopback.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Bytes written per write call.
const CHUNK: usize = 256 << 10;

struct Args {
    addr: SocketAddr,
    jobs: u64,
    size: u64,
    clients: u64,
    sources: Vec<IpAddr>,
    max_seconds: u64,
    sink: Option<SocketAddr>,
    /// LPD queue; `None` sends RAW.
    lpd_queue: Option<String>,
    /// Measure appends + fdatasync in this folder instead of a daemon.
    disk: Option<std::path::PathBuf>,
    /// Records per fdatasync with `--disk`.
    group: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:9100".parse().unwrap(),
        jobs: 10_000,
        size: 4096,
        clients: 8,
        sources: vec!["127.0.1.10".parse().unwrap()],
        max_seconds: 300,
        sink: None,
        lpd_queue: None,
        disk: None,
        group: 1,
    };
    let mut lpd = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = val().parse().expect("--addr ADDR:PORT"),
            "--jobs" => a.jobs = val().parse().expect("--jobs N"),
            "--size" => {
                a.size = printroute::config::units::parse_size(&val()).expect("--size e.g. 4KiB")
            }
            "--clients" => a.clients = val().parse().expect("--clients K"),
            "--sources" => {
                a.sources = val()
                    .split(',')
                    .map(|s| s.parse().expect("--sources FIRST_IP[,FIRST_IP...]"))
                    .collect()
            }
            "--disk" => a.disk = Some(val().into()),
            "--group" => a.group = val().parse().expect("--group N (records per fdatasync)"),
            "--max-seconds" => a.max_seconds = val().parse().expect("--max-seconds N"),
            "--sink" => a.sink = Some(val().parse().expect("--sink ADDR:PORT")),
            "--protocol" => lpd = val() == "lpd",
            "--queue" => a.lpd_queue = Some(val()),
            "--help" | "-h" => {
                println!("loadgen [--protocol raw|lpd] [--queue Q] [--addr A] [--jobs N] [--size S] [--clients K] [--sources FIRST_IP[,FIRST_IP..]] [--max-seconds T] | --sink ADDR | --disk DIR [--jobs N] [--size S] [--group G]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    if lpd && a.lpd_queue.is_none() {
        a.lpd_queue = Some("lp".into());
    }
    if !lpd {
        a.lpd_queue = None;
    }
    a
}

fn nth_source(first: IpAddr, k: u64) -> IpAddr {
    match first {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + k as u32).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + k as u128).into()),
    }
}

async fn send_one(addr: SocketAddr, source: IpAddr, size: u64, buf: &[u8]) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let mut s = socket.connect(addr).await?;
    s.set_nodelay(true)?;
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut rest = [0u8; 64];
    loop {
        // Orderly close (0) is the acknowledgement; a reset is a refusal.
        if s.read(&mut rest).await? == 0 {
            return Ok(());
        }
    }
}

/// Reads the one-byte LPD acknowledgement; anything but `\0` is a refusal (RFC 1179 6).
async fn lpd_ack(s: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    if b[0] != 0 {
        return Err(std::io::Error::other(format!(
            "negative acknowledgement {}",
            b[0]
        )));
    }
    Ok(())
}

/// One LPD job (RFC 1179 5.2, 6.2-6.4): control file, then the data file.
async fn send_one_lpd(
    addr: SocketAddr,
    source: IpAddr,
    queue: &str,
    n: u64,
    size: u64,
    buf: &[u8],
) -> std::io::Result<()> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let mut s = socket.connect(addr).await?;
    s.set_nodelay(true)?;
    let num = n % 1000;
    s.write_all(format!("\x02{queue}\n").as_bytes()).await?;
    lpd_ack(&mut s).await?;
    // Control file first, as BSD lpr and the CUPS lpd backend send it.
    let control = format!(
        "Hloadgen\nPload\nJload {n}\nldfA{num:03}loadgen\nUdfA{num:03}loadgen\nNload {n}\n"
    );
    s.write_all(format!("\x02{} cfA{num:03}loadgen\n", control.len()).as_bytes())
        .await?;
    lpd_ack(&mut s).await?;
    s.write_all(control.as_bytes()).await?;
    s.write_all(&[0]).await?;
    lpd_ack(&mut s).await?;
    s.write_all(format!("\x03{size} dfA{num:03}loadgen\n").as_bytes())
        .await?;
    lpd_ack(&mut s).await?;
    let mut left = size;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..k]).await?;
        left -= k as u64;
    }
    s.write_all(&[0]).await?;
    // The acknowledgement of the last file comes after the durable commit.
    lpd_ack(&mut s).await
}

/// The disk's own figure: `jobs` records of `size` bytes appended to one
/// file, one `fdatasync` per `group` records (the last group may be short).
fn disk(dir: &std::path::Path, jobs: u64, size: u64, group: u64, deadline: Instant) {
    use std::io::Write;
    let path = dir.join(format!("loadgen-disk.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .expect("create the disk test file");
    let record: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    let group = group.max(1);
    let start = Instant::now();
    let mut written = 0;
    while written < jobs && Instant::now() < deadline {
        let n = group.min(jobs - written);
        for _ in 0..n {
            f.write_all(&record).expect("append");
        }
        f.sync_data().expect("fdatasync");
        written += n;
    }
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&path);
    println!(
        "{written} records of {size} B appended, one fdatasync per {group}: {:.0} records/s, {:.1} MiB/s, {:.2?} total",
        written as f64 / elapsed.as_secs_f64(),
        (written * size) as f64 / (1 << 20) as f64 / elapsed.as_secs_f64(),
        elapsed
    );
}

/// Read buffer of one sink connection: the sinks stand for printers on
/// other machines, so they cost the shared CPU as little as they can.
const SINK_BUFFER: usize = 64 << 10;

/// A discarding RAW printer on one thread. Each connection reads into
/// spare capacity (nothing zeroed); a zeroed 256 KiB buffer per
/// connection cost it about 110 us of CPU per 4 KiB job, CPU the daemon
/// under test then lacked.
async fn sink(addr: SocketAddr) {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind sink");
    println!("sink listening on {addr}");
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(SINK_BUFFER);
            loop {
                buf.clear();
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
    }
}

fn main() {
    let a = parse_args();
    if let Some(addr) = a.sink {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("sink runtime")
            .block_on(sink(addr));
    }
    if let Some(dir) = &a.disk {
        let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
        return disk(dir, a.jobs, a.size, a.group, deadline);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("load runtime")
        .block_on(load(a));
}

async fn load(a: Args) {
    let buf: Arc<Vec<u8>> = Arc::new((0..CHUNK).map(|i| (i * 7 + i / 251) as u8).collect());
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..a.clients {
        let (buf, next, failed) = (buf.clone(), next.clone(), failed.clone());
        let first = a.sources[(k % a.sources.len() as u64) as usize];
        let source = nth_source(first, k / a.sources.len() as u64);
        let (addr, size, jobs) = (a.addr, a.size, a.jobs);
        let queue = a.lpd_queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= jobs || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let sent = match &queue {
                    Some(q) => send_one_lpd(addr, source, q, n, size, &buf).await,
                    None => send_one(addr, source, size, &buf).await,
                };
                match sent {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("job from {source} not acknowledged: {e}");
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    lat.sort();
    let n = lat.len();
    if n == 0 {
        println!(
            "no job acknowledged ({} failed)",
            failed.load(Ordering::Relaxed)
        );
        std::process::exit(1);
    }
    let mib = (n as u64 * a.size) as f64 / (1 << 20) as f64;
    println!(
        "{n} jobs of {} B acknowledged, {} failed, {} clients: {:.0} jobs/s, {:.1} MiB/s, ack p50 {:.2?} p99 {:.2?}, {:.2?} total",
        a.size,
        failed.load(Ordering::Relaxed),
        a.clients,
        n as f64 / elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64(),
        lat[n / 2],
        lat[(n * 99 / 100).min(n - 1)],
        elapsed
    );
}
