//! `socket://` devices (AppSocket/JetDirect, port 9100): the document's
//! bytes on a TCP connection, nothing else.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::device::{connect, copy_file_within, SendError};

/// After sending, how long to wait for the device to close its side (its
/// way of saying it has the job), as the CUPS socket backend does.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// RAW (AppSocket/JetDirect): connect, send, half-close, wait for the device to close.
pub async fn send(host: &str, port: u16, path: &Path, stall: Duration) -> Result<u64, SendError> {
    let mut stream = connect(host, port).await?;
    let sent = copy_file_within(path, &mut stream, stall).await?;
    tokio::time::timeout(stall, stream.shutdown())
        .await
        .map_err(|_| SendError::Timeout("close"))??;
    // Read back-channel data until the device closes; a device that keeps
    // the connection open has the data all the same (TCP acknowledged it).
    let mut sink = [0u8; 4096];
    let drain = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, drain).await {
        Ok(Err(e)) if e.kind() != std::io::ErrorKind::ConnectionReset => return Err(e.into()),
        _ => {}
    }
    Ok(sent)
}
