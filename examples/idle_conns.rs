//! Holds many idle connections against a running daemon and reports its
//! memory per connection (`scripts/bench-conns.sh` runs it):
//!
//! ```text
//! idle_conns pid=PID raw=ADDR [lpd=ADDR] [ipp=ADDR] [count=10000] [net=127.0.1]
//!            [sources=200] [other=127.0.2.7] [capped=127.0.3.7 capped-max=50]
//!            [hold=5] [max-seconds=300] [spread=raw,lpd,ipp]
//! ```
//!
//! Opens `count` connections spread round-robin over the given listeners
//! (those of them named in `spread`)
//! and over the source addresses `net.1` .. `net.sources` (one tenant's
//! range; each socket is bound before connecting), sends nothing on them,
//! and holds them. Meanwhile it checks that a RAW job from `other` (another
//! tenant) is still acknowledged, and that the `capped` tenant, once it
//! holds `capped-max` connections, has its next one refused. Reads the
//! daemon's VmRSS / VmHWM and open descriptors before and after, prints the
//! figures and exits 1 when a check failed. Bounded: `count` connections,
//! `max-seconds` in all.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for one connect or one answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after the last connect, for the daemon to accept and set up every connection.
const SETTLE: Duration = Duration::from_secs(2);

/// Open files this process needs beyond its connections.
const SPARE_FDS: u64 = 256;

fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&to.into(), IO_TIMEOUT)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Sends a RAW job; true when the daemon acknowledged it (orderly close).
fn raw_job(from: IpAddr, to: SocketAddr, doc: &[u8]) -> bool {
    let Ok(mut s) = connect_from(from, to) else {
        return false;
    };
    if s.write_all(doc).is_err() || s.shutdown(std::net::Shutdown::Write).is_err() {
        return false;
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).is_ok()
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn raise_fd_limit(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
    if l.maximum.is_some_and(|m| m < need) {
        eprintln!("warning: hard limit of open files {:?} < {need}", l.maximum);
    }
}

fn main() {
    let args: std::collections::HashMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let get = |k: &str| args.get(k).map(String::as_str);
    let num = |k: &str, d: u64| get(k).map_or(d, |v| v.parse().expect("a number"));
    let pid: u32 = get("pid").expect("pid=PID of the daemon").parse().unwrap();
    let spread = get("spread").unwrap_or("raw,lpd,ipp");
    let listeners: Vec<(&str, SocketAddr)> = ["raw", "lpd", "ipp"]
        .into_iter()
        .filter(|k| spread.split(',').any(|s| s == *k))
        .filter_map(|k| get(k).map(|a| (k, a.parse().expect("address:port"))))
        .collect();
    let raw: SocketAddr = get("raw").expect("raw=ADDR").parse().unwrap();
    let count = num("count", 10_000) as usize;
    let net = get("net").unwrap_or("127.0.1");
    let sources = num("sources", 200).clamp(1, 254) as usize;
    let capped_max = num("capped-max", 50) as usize;
    let hold = Duration::from_secs(num("hold", 5));
    let deadline = Instant::now() + Duration::from_secs(num("max-seconds", 300));
    raise_fd_limit((count + capped_max) as u64 + SPARE_FDS);

    let (rss0, _) = memory(pid);
    let fds0 = open_fds(pid);
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(count);
    let mut failed_connects = 0;
    for i in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let from: IpAddr = format!("{net}.{}", 1 + i % sources).parse().unwrap();
        let (name, to) = listeners[i % listeners.len()];
        match connect_from(from, to) {
            Ok(s) => held.push((name, s)),
            Err(e) => {
                failed_connects += 1;
                if failed_connects <= 3 {
                    eprintln!("connect {i}: {e}");
                }
            }
        }
    }
    let opened = t0.elapsed();
    std::thread::sleep(SETTLE);
    let (rss1, hwm1) = memory(pid);
    let fds1 = open_fds(pid);
    let mut ok = failed_connects == 0;
    println!(
        "idle connections: {} held ({failed_connects} failed) over {} listener(s) from {sources} addresses, opened in {:.1} s",
        held.len(),
        listeners.len(),
        opened.as_secs_f64()
    );
    let per = (rss1.saturating_sub(rss0) as f64 * 1024.0) / held.len().max(1) as f64;
    println!(
        "daemon RSS: {:.1} MiB before, {:.1} MiB with them (peak {:.1} MiB): {:.1} KiB per idle connection; open files {fds0} -> {fds1}",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        hwm1 as f64 / 1024.0,
        per / 1024.0
    );

    if let Some(other) = get("other") {
        let doc = b"@PJL JOB NAME = \"idle-conns\"\r\nanother tenant's job while idle connections are held\n";
        let acked = raw_job(other.parse().unwrap(), raw, doc);
        println!(
            "another tenant's job ({other}) while they are held: {}",
            if acked {
                "acknowledged"
            } else {
                "NOT acknowledged"
            }
        );
        ok &= acked;
    }

    if let Some(capped) = get("capped") {
        let capped: IpAddr = capped.parse().unwrap();
        let mut slots = Vec::new();
        for _ in 0..capped_max {
            match connect_from(capped, raw) {
                Ok(s) => slots.push(s),
                Err(e) => eprintln!("capped connect: {e}"),
            }
        }
        // Every held one is accepted once an extra is refused; until then an
        // extra may still take a slot (it sends nothing and is closed).
        let mut refused = false;
        while !refused && Instant::now() < deadline {
            refused = !raw_job(capped, raw, b"");
            if !refused {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let again = refused && !raw_job(capped, raw, b"beyond max-connections");
        println!(
            "tenant at max-connections ({capped}, {} held): next connection {}",
            slots.len(),
            if again { "refused" } else { "NOT refused" }
        );
        ok &= again;
    }

    let left = deadline.saturating_duration_since(Instant::now());
    std::thread::sleep(hold.min(left));
    for (name, _) in &listeners {
        let of: Vec<&TcpStream> = held.iter().filter(|h| h.0 == *name).map(|h| &h.1).collect();
        let open = of
            .iter()
            .filter(|s| {
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 1];
                let mut r: &TcpStream = s;
                matches!(r.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        println!(
            "after holding {:.0} s: {name}: {open} of {} still open",
            hold.as_secs_f64(),
            of.len()
        );
        // An IPP peer that sends no request is closed after the HTTP header
        // timeout (10 s), by design; RAW and LPD peers wait for idle-timeout.
        if *name != "ipp" {
            ok &= open == of.len();
        }
    }
    drop(held);
    std::process::exit(if ok { 0 } else { 1 });
}
