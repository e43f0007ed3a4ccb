//! The `forward` step: deliver a document to the first healthy device of a
//! pool, in the device's protocol; devices that fail are marked down and
//! probed again with exponential backoff.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{Device, DeviceUri};
use crate::ids::TenantId;
use crate::job::Job;

/// Longest wait for a device to accept a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A device that takes no bytes for this long has stalled; the transfer fails.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// After sending, how long to wait for the device to close its side (its
/// way of saying it has the job), as the CUPS socket backend does.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before probing a device that failed.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait between probes of a device that keeps failing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Chunk size of a transfer to a device.
const SEND_CHUNK: usize = 256 << 10;

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

/// Health and one-at-a-time access of one device.
pub struct DeviceState {
    /// One transfer at a time to one printer.
    pub permit: Semaphore,
    health: Mutex<Health>,
    /// Jobs waiting for this device, by job id (commit order): the oldest
    /// one probes and sends first, so a device that comes back gets its
    /// jobs in the order they were accepted.
    queue: Mutex<std::collections::BTreeMap<u32, Arc<tokio::sync::Notify>>>,
}

/// A job's place in a device's queue; leaving it (drop) wakes the next oldest job.
pub struct Turn {
    state: Arc<DeviceState>,
    id: u32,
    notify: Arc<tokio::sync::Notify>,
}

impl Turn {
    /// True when no older job waits for the device.
    pub fn is_head(&self) -> bool {
        self.state
            .queue
            .lock()
            .expect("device queue lock")
            .keys()
            .next()
            == Some(&self.id)
    }

    /// Waits until an older job leaves the queue.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut q = self.state.queue.lock().expect("device queue lock");
        q.remove(&self.id);
        if let Some(next) = q.values().next() {
            next.notify_one();
        }
    }
}

#[derive(Default)]
struct Health {
    down_until: Option<Instant>,
    backoff: Duration,
}

impl DeviceState {
    fn new() -> Self {
        DeviceState {
            permit: Semaphore::new(1),
            health: Mutex::new(Health::default()),
            queue: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Enters the device's queue as job `id`.
    pub fn turn(self: &Arc<Self>, id: u32) -> Turn {
        let notify = Arc::new(tokio::sync::Notify::new());
        self.queue
            .lock()
            .expect("device queue lock")
            .insert(id, notify.clone());
        Turn {
            state: self.clone(),
            id,
            notify,
        }
    }

    /// When the device may be tried again; `None` when it is up (or due).
    pub fn down_until(&self) -> Option<Instant> {
        let h = self.health.lock().expect("device health lock");
        h.down_until.filter(|t| *t > Instant::now())
    }

    /// Records a success: the device is up.
    pub fn mark_up(&self) {
        let mut h = self.health.lock().expect("device health lock");
        h.down_until = None;
        h.backoff = Duration::ZERO;
    }

    /// Records a failure: down until the next probe, with doubled backoff.
    pub fn mark_down(&self) -> Duration {
        let mut h = self.health.lock().expect("device health lock");
        h.backoff = if h.backoff.is_zero() {
            BACKOFF_MIN
        } else {
            (h.backoff * 2).min(BACKOFF_MAX)
        };
        h.down_until = Some(Instant::now() + h.backoff);
        h.backoff
    }
}

/// Every device's state, keyed by tenant, device name and URI (a changed
/// URI after a reload is a new device).
#[derive(Default)]
pub struct Devices {
    map: Mutex<HashMap<(TenantId, String, String), Arc<DeviceState>>>,
}

impl Devices {
    /// The state of a tenant's device.
    pub fn get(&self, tenant: &TenantId, device: &Device) -> Arc<DeviceState> {
        let key = (tenant.clone(), device.name.clone(), device.uri.to_string());
        self.map
            .lock()
            .expect("device map lock")
            .entry(key)
            .or_insert_with(|| Arc::new(DeviceState::new()))
            .clone()
    }
}

/// Sends the document of `job` at `path` to `device`; returns the bytes
/// sent. A socket device that takes no bytes for `stall` (the tenant's
/// `device-timeout`) has failed.
pub async fn send(
    device: &Device,
    job: &Job,
    path: &Path,
    stall: Duration,
) -> Result<u64, SendError> {
    match &device.uri {
        DeviceUri::Socket { host, port } => send_socket(host, *port, path, stall).await,
        DeviceUri::Lpd { .. } => crate::protocol::lpd::client::send(&device.uri, job, path).await,
        DeviceUri::Ipp { .. } => crate::protocol::ipp::client::send(&device.uri, job, path).await,
    }
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

/// RAW (AppSocket/JetDirect): connect, send, half-close, wait for the device to close.
async fn send_socket(
    host: &str,
    port: u16,
    path: &Path,
    stall: Duration,
) -> Result<u64, SendError> {
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
