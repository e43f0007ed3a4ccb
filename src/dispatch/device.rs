//! What every device client (socket, lpd, ipp) shares: connecting to a
//! device, copying a document to it, and why an attempt failed.
//!
//! A connection to a device is opened with `SO_LINGER 0`: until a client
//! knows the device has the whole job, any end of the connection (an error,
//! a timeout, this process killed) is a reset, which a printer takes as a
//! broken job and discards, never the orderly end of a short one. Each
//! client lifts it with [`orderly_close_allowed`] once the job is whole.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::store::document::Document;

/// Longest wait for a device to accept a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A device that takes no bytes for this long has stalled; the transfer fails.
pub const WRITE_STALL_TIMEOUT: Duration = crate::config::DEFAULT_DEVICE_TIMEOUT;
/// Longest text of a device (IPP status-message, LPD error text) kept in a
/// job's history, a log line or an error, in bytes; control characters are
/// removed first.
pub const MAX_DEVICE_TEXT: usize = 256;

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Name resolution, connect, write or read failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The device did not answer in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The device answered, but cannot take the job now (busy, not
    /// accepting, a server error): tried again after a backoff.
    #[error("device refused the job for now: {0}")]
    Refused(String),
    /// The device refused this job for good (IPP `client-error-*`, an LPD
    /// negative acknowledgement of the job's control or data file, a job the
    /// printer aborted or canceled): it goes to another device of its pool,
    /// or ends.
    #[error("device rejected the job: {0}")]
    Rejected(String),
    /// The job's spool document cannot be read (damaged, or sealed with a
    /// key that is gone): no device can print it.
    #[error("{0}")]
    Document(std::io::Error),
    /// The device's protocol is not built yet.
    #[error("sending to {0} devices is not supported yet")]
    Unsupported(&'static str),
}

impl SendError {
    /// True when trying this job on this device again cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SendError::Rejected(_) | SendError::Unsupported(_) | SendError::Document(_)
        )
    }

    /// An error reading the job's document: one that can never read is
    /// [`SendError::Document`].
    pub fn from_read(e: std::io::Error) -> SendError {
        if crate::store::document::is_unreadable(&e) {
            SendError::Document(e)
        } else {
            SendError::Io(e)
        }
    }
}

/// A device's own text as printroute keeps it: control characters (escape
/// sequences included) removed, white space trimmed, at most
/// [`MAX_DEVICE_TEXT`] bytes cut on a character boundary.
pub fn device_text(s: &str) -> String {
    crate::wire::clean_text(s, MAX_DEVICE_TEXT)
}

/// Opens a TCP connection to a device, within [`CONNECT_TIMEOUT`]. The
/// socket has `SO_LINGER 0` before it connects: from the handshake on, an
/// end before [`orderly_close_allowed`] is a reset.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, SendError> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            match connect_to(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the device")
            })
            .into())
    })
    .await
    .map_err(|_| SendError::Timeout("connect"))?
}

/// Connects a reset-on-close socket to one address.
pub async fn connect_to(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let raw = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    // A zero linger never blocks a close (it resets at once).
    raw.set_linger(Some(Duration::ZERO))?;
    raw.set_tcp_nodelay(true)?;
    raw.set_nonblocking(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(raw.into());
    socket.connect(addr).await
}

/// Lets the connection end in order again (see the module doc): called once
/// the device has every byte of the job.
pub fn orderly_close_allowed(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(None);
}

/// Bytes written to `stream` that the device's TCP has not acknowledged
/// yet, sent or not (the kernel's `SIOCOUTQ`, which is `TIOCOUTQ`).
#[expect(
    unsafe_code,
    reason = "SIOCOUTQ has no safe wrapper in rustix or socket2; the ioctl writes one c_int into a local"
)]
pub fn unacknowledged(stream: &TcpStream) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: the descriptor is borrowed from `stream`, open for the whole
    // call; TIOCOUTQ on a TCP socket writes exactly one c_int through the
    // pointer, which points at a live local of that type.
    let r = unsafe {
        libc::ioctl(
            stream.as_raw_fd(),
            libc::TIOCOUTQ,
            &mut n as *mut libc::c_int,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// First and longest pause between two looks at [`unacknowledged`].
const ACK_POLL_MIN: Duration = Duration::from_millis(2);
const ACK_POLL_MAX: Duration = Duration::from_millis(100);

/// Waits until the device's TCP has acknowledged every byte written to
/// `stream`. Fails when the connection breaks (a reset) or when no byte is
/// acknowledged for `stall`: bytes stuck in our buffers are not delivered.
pub async fn acknowledged(stream: &TcpStream, stall: Duration) -> Result<(), SendError> {
    let mut last = unacknowledged(stream)?;
    let mut progress_at = tokio::time::Instant::now();
    let mut pause = ACK_POLL_MIN;
    loop {
        if let Some(e) = stream.take_error()? {
            return Err(e.into());
        }
        if last == 0 {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(ACK_POLL_MAX);
        let now = unacknowledged(stream)?;
        if now < last {
            progress_at = tokio::time::Instant::now();
        } else if progress_at.elapsed() >= stall {
            return Err(SendError::Timeout(
                "device acknowledgement of the last bytes",
            ));
        }
        last = now;
    }
}

/// Copies a document to a stream, failing when the peer takes nothing for [`WRITE_STALL_TIMEOUT`].
pub async fn copy_document<W: AsyncWriteExt + Unpin>(
    doc: &Document,
    out: &mut W,
) -> Result<u64, SendError> {
    copy_document_within(doc, out, WRITE_STALL_TIMEOUT).await
}

/// Copies a document to a stream, failing when the peer takes nothing for `stall`.
pub async fn copy_document_within<W: AsyncWriteExt + Unpin>(
    doc: &Document,
    out: &mut W,
    stall: Duration,
) -> Result<u64, SendError> {
    let mut reader = doc.reader().await?;
    let mut sent = 0u64;
    while let Some(chunk) = reader.next_chunk().await.map_err(SendError::from_read)? {
        tokio::time::timeout(stall, out.write_all(chunk))
            .await
            .map_err(|_| SendError::Timeout("write"))??;
        sent += chunk.len() as u64;
    }
    Ok(sent)
}
