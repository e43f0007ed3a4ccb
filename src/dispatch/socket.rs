//! `socket://` devices (AppSocket/JetDirect, port 9100): the document's
//! bytes on a TCP connection, nothing else.
//!
//! The protocol has no acknowledgement, so delivered means: every byte
//! written and acknowledged by the device's TCP, then the device ends the
//! connection in order after our end of stream. A device that resets at
//! any point, keeps bytes unacknowledged for `device-timeout`, or does not
//! close its side within `device-timeout` (at least [`CLOSE_WAIT_MIN`]) has
//! not printed the job.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::store::document::Document;

use super::device::{
    acknowledged, connect, copy_document_within, orderly_close_allowed, SendError,
};

/// Back-channel bytes (status a printer may send) read and dropped per read
/// while waiting for the device to close.
const BACK_CHANNEL_BUFFER: usize = 4096;

/// Shortest wait for the device's close after our end of stream (the
/// tenant's `device-timeout` when longer). Once its TCP has acknowledged the
/// last byte, a device still has to read what its buffers hold (megabytes)
/// before it can close: a wait too short for a busy device would send it the
/// whole job again. The CUPS socket backend waits about as long.
pub const CLOSE_WAIT_MIN: Duration = Duration::from_secs(10);

/// Sends the document `doc`; returns the bytes sent. `stall` is the
/// tenant's `device-timeout`.
pub async fn send(
    host: &str,
    port: u16,
    doc: &Document,
    stall: Duration,
) -> Result<u64, SendError> {
    let mut stream = connect(host, port).await?;
    let sent = copy_document_within(doc, &mut stream, stall).await?;
    // Until the device's TCP has every byte, an end must stay a reset.
    acknowledged(&stream, stall).await?;
    orderly_close_allowed(&stream);
    tokio::time::timeout(stall, stream.shutdown())
        .await
        .map_err(|_| SendError::Timeout("close"))??;
    // The device's orderly close is its word that it has the job; a reset
    // (a device that stopped reading) or silence is not.
    let mut sink = [0u8; BACK_CHANNEL_BUFFER];
    let drain = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(stall.max(CLOSE_WAIT_MIN), drain).await {
        Ok(Ok(())) => Ok(sent),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(SendError::Timeout("device close after the job")),
    }
}
