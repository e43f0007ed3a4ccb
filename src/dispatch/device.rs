//! What every device client (socket, lpd, ipp) shares: connecting to a
//! device, copying a document to it, and why an attempt failed.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for a device to accept a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A device that takes no bytes for this long has stalled; the transfer fails.
pub const WRITE_STALL_TIMEOUT: Duration = crate::config::DEFAULT_DEVICE_TIMEOUT;
/// Chunk size of a transfer to a device.
pub const SEND_CHUNK: usize = 256 << 10;

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Name resolution, connect, write or read failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The device did not answer in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The device answered, but refused or failed the job (its words).
    #[error("device refused the job: {0}")]
    Refused(String),
    /// The device's protocol is not built yet.
    #[error("sending to {0} devices is not supported yet")]
    Unsupported(&'static str),
}

/// Opens a TCP connection to a device, within [`CONNECT_TIMEOUT`].
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, SendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| SendError::Timeout("connect"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Copies a file to a stream, failing when the peer takes nothing for [`WRITE_STALL_TIMEOUT`].
pub async fn copy_file<W: AsyncWriteExt + Unpin>(
    path: &Path,
    out: &mut W,
) -> Result<u64, SendError> {
    copy_file_within(path, out, WRITE_STALL_TIMEOUT).await
}

/// Copies a file to a stream, failing when the peer takes nothing for `stall`.
pub async fn copy_file_within<W: AsyncWriteExt + Unpin>(
    path: &Path,
    out: &mut W,
    stall: Duration,
) -> Result<u64, SendError> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut buf = vec![0u8; SEND_CHUNK];
    let mut sent = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        tokio::time::timeout(stall, out.write_all(&buf[..n]))
            .await
            .map_err(|_| SendError::Timeout("write"))??;
        sent += n as u64;
    }
    Ok(sent)
}
