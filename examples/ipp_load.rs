//! IPP load generator: Print-Job or Get-Printer-Attributes from N
//! concurrent keep-alive clients against a printer on loopback, bounded in
//! request count and in time. Used to compare printroute with a private
//! cupsd in the same run (see the closing note of issue 5).
//!
//! ```text
//! cargo run --release --example ipp_load -- \
//!     --url ipp://127.0.0.1:8631/ipp/print --op print --requests 10000 \
//!     --clients 8 --size 4096 [--from 127.0.1.10] [--max-seconds 120]
//! ```
//!
//! Prints one line: operation, requests done, errors, seconds, requests/s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest run, whatever `--requests` says.
const MAX_SECONDS_LIMIT: u64 = 600;
/// Most requests one run may send.
const MAX_REQUESTS_LIMIT: u64 = 1_000_000;
/// Most concurrent clients.
const MAX_CLIENTS_LIMIT: usize = 256;

struct Args {
    addr: SocketAddr,
    path: String,
    op: String,
    requests: u64,
    clients: usize,
    size: usize,
    from: Option<IpAddr>,
    max_seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:631".parse().unwrap(),
        path: "/ipp/print".into(),
        op: "print".into(),
        requests: 10_000,
        clients: 8,
        size: 4096,
        from: None,
        max_seconds: 120,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--url" => {
                let rest = v
                    .strip_prefix("ipp://")
                    .ok_or("the URL must start with ipp://")?;
                let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                a.addr = auth.parse().map_err(|e| format!("{auth}: {e}"))?;
                a.path = if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                };
            }
            "--op" => a.op = v,
            "--requests" => a.requests = v.parse().map_err(|e| format!("{e}"))?,
            "--clients" => a.clients = v.parse().map_err(|e| format!("{e}"))?,
            "--size" => a.size = v.parse().map_err(|e| format!("{e}"))?,
            "--from" => a.from = Some(v.parse().map_err(|e| format!("{e}"))?),
            "--max-seconds" => a.max_seconds = v.parse().map_err(|e| format!("{e}"))?,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    // Load only ever goes to this machine.
    if !a.addr.ip().is_loopback() || a.from.is_some_and(|f| !f.is_loopback()) {
        return Err("only loopback addresses are allowed".into());
    }
    if a.op != "print" && a.op != "gpa" {
        return Err("--op is print or gpa".into());
    }
    a.requests = a.requests.min(MAX_REQUESTS_LIMIT);
    a.clients = a.clients.clamp(1, MAX_CLIENTS_LIMIT);
    a.max_seconds = a.max_seconds.min(MAX_SECONDS_LIMIT);
    Ok(a)
}

fn attr(b: &mut Vec<u8>, tag: u8, name: &str, value: &[u8]) {
    b.push(tag);
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(value.len() as u16).to_be_bytes());
    b.extend_from_slice(value);
}

fn request(a: &Args, id: i32, doc: &[u8]) -> Vec<u8> {
    let op: u16 = if a.op == "print" { 0x0002 } else { 0x000b };
    let mut b = vec![2, 0];
    b.extend_from_slice(&op.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.push(1);
    attr(&mut b, 0x47, "attributes-charset", b"utf-8");
    attr(&mut b, 0x48, "attributes-natural-language", b"en");
    let uri = format!("ipp://{}{}", a.addr, a.path);
    attr(&mut b, 0x45, "printer-uri", uri.as_bytes());
    attr(&mut b, 0x42, "requesting-user-name", b"load");
    if a.op == "print" {
        attr(&mut b, 0x42, "job-name", b"load");
        attr(&mut b, 0x49, "document-format", b"application/octet-stream");
    } else {
        attr(&mut b, 0x44, "requested-attributes", b"printer-state");
        attr(&mut b, 0x44, "", b"printer-is-accepting-jobs");
    }
    b.push(3);
    b.extend_from_slice(doc);
    b
}

fn connect(a: &Args) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let s = match a.from {
        Some(ip) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(a.addr),
                socket2::Type::STREAM,
                None,
            )?;
            sock.bind(&SocketAddr::new(ip, 0).into())?;
            sock.connect(&a.addr.into())?;
            sock.into()
        }
        None => TcpStream::connect(a.addr)?,
    };
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let r = BufReader::new(s.try_clone()?);
    Ok((s, r))
}

/// Sends one request, reads the response; true when its IPP status is a success.
fn exchange(
    w: &mut TcpStream,
    r: &mut BufReader<TcpStream>,
    a: &Args,
    body: &[u8],
) -> std::io::Result<bool> {
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
        a.path,
        a.addr,
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let http_ok = line.split_whitespace().nth(1) == Some("200");
    let (mut len, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if h.starts_with("transfer-encoding:") && h.contains("chunked") {
            chunked = true;
        }
    }
    let mut resp = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            resp.extend_from_slice(&chunk[..n]);
        }
    } else {
        resp.resize(len, 0);
        r.read_exact(&mut resp)?;
    }
    Ok(http_ok && resp.len() >= 4 && u16::from_be_bytes([resp[2], resp[3]]) < 0x0100)
}

fn main() {
    let a = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("ipp_load: {e}");
            std::process::exit(2);
        }
    };
    let doc: Arc<Vec<u8>> = Arc::new((0..a.size).map(|i| (i * 31 % 251) as u8).collect());
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let start = Instant::now();
    let workers: Vec<_> = (0..a.clients)
        .map(|_| {
            let (a, doc, issued, done, errors) = (
                a.clone(),
                doc.clone(),
                issued.clone(),
                done.clone(),
                errors.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = None;
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= a.requests || Instant::now() > deadline {
                        return;
                    }
                    if conn.is_none() {
                        conn = connect(&a).ok();
                    }
                    let Some((w, r)) = conn.as_mut() else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let id = i32::try_from(n % i32::MAX as u64).unwrap_or(1) + 1;
                    match exchange(w, r, &a, &request(&a, id, &doc)) {
                        Ok(true) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = done.load(Ordering::Relaxed);
    println!(
        "op={} clients={} size={} ok={} errors={} seconds={:.2} per_second={:.0}",
        a.op,
        a.clients,
        a.size,
        ok,
        errors.load(Ordering::Relaxed),
        secs,
        ok as f64 / secs
    );
}
