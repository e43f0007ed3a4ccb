//! Connects to a RAW listener again and again from one tenant's source
//! address and counts how each connection ends, for the "no refused
//! connection during reload" figure of `scripts/bench-scale.sh`:
//!
//! `conn_probe ADDR SOURCE MAX_CONNECTIONS MAX_SECONDS [STOP_FILE]`
//!
//! Each connection sends nothing and half-closes; the daemon answers an
//! empty RAW connection of a known tenant with an orderly close ("ok"). A
//! refused connect, a reset or a timeout counts as failed. Stops after
//! MAX_CONNECTIONS connections, MAX_SECONDS seconds, or once STOP_FILE
//! exists; prints one line and exits 1 when any connection failed.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for a connect or for the daemon's close.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counts {
    ok: u64,
    refused: u64,
    reset: u64,
    timed_out: u64,
    other: u64,
}

fn one(addr: SocketAddr, source: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.bind(&source.into())?;
    s.connect_timeout(&addr.into(), CONNECTION_TIMEOUT)?;
    let mut stream: TcpStream = s.into();
    stream.set_read_timeout(Some(CONNECTION_TIMEOUT))?;
    stream.shutdown(Shutdown::Write)?;
    let mut buf = [0u8; 64];
    loop {
        if stream.read(&mut buf)? == 0 {
            return Ok(());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: conn_probe ADDR SOURCE MAX_CONNECTIONS MAX_SECONDS [STOP_FILE]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR is address:port");
    let source = SocketAddr::new(args[2].parse().expect("SOURCE is an address"), 0);
    let max: u64 = args[3].parse().expect("MAX_CONNECTIONS is a number");
    let secs: u64 = args[4].parse().expect("MAX_SECONDS is a number");
    let stop = args.get(5).map(std::path::PathBuf::from);
    let start = Instant::now();
    let mut c = Counts::default();
    let mut n = 0;
    while n < max
        && start.elapsed() < Duration::from_secs(secs)
        && !stop.as_ref().is_some_and(|p| p.exists())
    {
        n += 1;
        match one(addr, source) {
            Ok(()) => c.ok += 1,
            Err(e) => match e.kind() {
                std::io::ErrorKind::ConnectionRefused => c.refused += 1,
                std::io::ErrorKind::ConnectionReset => c.reset += 1,
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => c.timed_out += 1,
                _ => {
                    eprintln!("conn_probe: {e}");
                    c.other += 1
                }
            },
        }
    }
    let failed = c.refused + c.reset + c.timed_out + c.other;
    println!(
        "{n} connections in {:.1} s: ok {}, failed {failed} (refused {}, reset {}, timed out {}, other {})",
        start.elapsed().as_secs_f64(),
        c.ok,
        c.refused,
        c.reset,
        c.timed_out,
        c.other
    );
    std::process::exit(i32::from(failed > 0));
}
