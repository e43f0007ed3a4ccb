//! Sending jobs to LPD devices: not built yet.

use std::path::Path;

use crate::config::DeviceUri;
use crate::job::Job;
use crate::workflow::forward::SendError;

/// Sends a job's document to an LPD device.
pub async fn send(_uri: &DeviceUri, _job: &Job, _path: &Path) -> Result<u64, SendError> {
    Err(SendError::Unsupported("lpd"))
}
