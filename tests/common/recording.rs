//! A RAW printer written for the tests: it records every connection —
//! the bytes it received (SHA-256 and length) and how the connection ended
//! (the sender's orderly end of stream, or a reset) — and can misbehave on
//! its first connections the way broken or hostile printers do.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::sha256;

/// How a connection to the device ended, as the device saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The sender ended its stream in order (FIN): a printer prints what it got.
    Orderly,
    /// The sender reset the connection: a printer discards what it got.
    Reset,
    /// The device itself broke the connection off (a misbehaviour).
    ByDevice,
}

/// One connection as the device saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Bytes received.
    pub len: usize,
    /// SHA-256 of the bytes received.
    pub sha256: String,
    /// How it ended.
    pub end: End,
}

/// What the device does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads everything, then closes: a good printer.
    Good,
    /// Accepts and never reads or closes.
    NeverReads,
    /// Reads this many bytes, then neither reads nor closes.
    ReadsThenStalls(usize),
    /// Reads this many bytes, then resets.
    ReadsPartThenResets(usize),
    /// Closes at once, before reading anything.
    ClosesBeforeReading,
    /// Reads slowly: this many bytes every 10 ms (a slow printer).
    Slow(usize),
}

/// A test printer on `ip` (a free port).
pub struct RecordingDevice {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    /// Bytes read so far over every connection, also ones not ended yet.
    progress: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Connections a misbehaving device holds open.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

/// Longest a device thread waits for bytes of a connection before it
/// takes the connection as abandoned.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl RecordingDevice {
    /// A device that treats its first `hostile` connections with `first`,
    /// and every later one with `then`.
    pub fn start(ip: &str, first: Behaviour, hostile: usize, then: Behaviour) -> RecordingDevice {
        RecordingDevice::start_on(&format!("{ip}:0"), first, hostile, then)
    }

    /// The same on a given address (`ip:port`), e.g. to bring a device up
    /// on the port it had.
    pub fn start_on(
        addr: &str,
        first: Behaviour,
        hostile: usize,
        then: Behaviour,
    ) -> RecordingDevice {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let progress = Arc::new(AtomicUsize::new(0));
        let (l2, s2, h2, p2) = (log.clone(), stop.clone(), held.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !s2.load(Ordering::Relaxed) {
                let (stream, _) = match listener.accept() {
                    Ok(a) => a,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                let behaviour = if n < hostile { first } else { then };
                n += 1;
                let (log, held, progress) = (l2.clone(), h2.clone(), p2.clone());
                std::thread::spawn(move || serve(stream, behaviour, &log, &held, &progress));
            }
        });
        RecordingDevice {
            addr,
            log,
            progress,
            stop,
            held,
        }
    }

    /// A good printer.
    pub fn good(ip: &str) -> RecordingDevice {
        RecordingDevice::start(ip, Behaviour::Good, 0, Behaviour::Good)
    }

    /// Its `socket://` URI.
    pub fn uri(&self) -> String {
        format!("socket://{}", self.addr)
    }

    /// Every connection that has ended so far, in the order they ended.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Bytes the device has read so far, over every connection.
    pub fn bytes_so_far(&self) -> usize {
        self.progress.load(Ordering::Relaxed)
    }

    /// The digests of connections the sender ended in order (what a printer prints).
    pub fn printed(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|r| r.end == End::Orderly)
            .map(|r| r.sha256)
            .collect()
    }
}

impl Drop for RecordingDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.held.lock().unwrap().clear();
    }
}

fn serve(
    mut s: TcpStream,
    b: Behaviour,
    log: &Mutex<Vec<Received>>,
    held: &Mutex<Vec<TcpStream>>,
    progress: &AtomicUsize,
) {
    let mut got = Vec::new();
    let record = |got: &[u8], end: End| {
        log.lock().unwrap().push(Received {
            len: got.len(),
            sha256: sha256(got),
            end,
        })
    };
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let mut buf = vec![0u8; 64 << 10];
    match b {
        Behaviour::NeverReads => {
            held.lock().unwrap().push(s);
        }
        Behaviour::ClosesBeforeReading => {
            drop(s);
            record(&got, End::ByDevice);
        }
        Behaviour::ReadsThenStalls(n) | Behaviour::ReadsPartThenResets(n) => {
            while got.len() < n {
                let want = (n - got.len()).min(buf.len());
                match s.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                }
            }
            if let Behaviour::ReadsPartThenResets(_) = b {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                drop(s);
            } else {
                held.lock().unwrap().push(s);
            }
            record(&got, End::ByDevice);
        }
        Behaviour::Good | Behaviour::Slow(_) => {
            let chunk = match b {
                Behaviour::Slow(k) => k.min(buf.len()),
                _ => buf.len(),
            };
            loop {
                match s.read(&mut buf[..chunk]) {
                    Ok(0) => {
                        record(&got, End::Orderly);
                        return;
                    }
                    Ok(k) => {
                        got.extend_from_slice(&buf[..k]);
                        progress.fetch_add(k, Ordering::Relaxed);
                    }
                    Err(_) => {
                        record(&got, End::Reset);
                        return;
                    }
                }
                if let Behaviour::Slow(_) = b {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}
