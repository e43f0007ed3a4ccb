//! A job: one submitted document with its metadata, state and history.
//!
//! Pure data; [`crate::store`] keeps it durable.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::ids::{JobId, ListenerName, TenantId};

/// Where a job is in its life; the names follow IPP `job-state` (RFC 8011 5.3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Committed, waiting for its workflow.
    Pending,
    /// Held until released or expired.
    Held,
    /// Being delivered or stored.
    Processing,
    /// Done: delivered or stored.
    Completed,
    /// Ended without being done (no device took it in time).
    Aborted,
    /// Ended by its owner, an admin, or hold expiry.
    Canceled,
}

impl JobState {
    /// True for states a job never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Aborted | JobState::Canceled
        )
    }

    /// The state's name, as shown to admins.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Held => "held",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Aborted => "aborted",
            JobState::Canceled => "canceled",
        }
    }
}

/// Most entries of a job's history: the first (how it arrived) and the
/// latest ones are kept, older ones in between are dropped and counted.
pub const MAX_HISTORY: usize = 32;

/// Longest note of a history entry, in bytes; longer ones are cut.
pub const MAX_NOTE_LEN: usize = 512;

/// One entry of a job's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch (its first occurrence).
    pub at_ms: u64,
    /// The state the job entered (or stayed in).
    pub state: JobState,
    /// What happened, for people: printable text only, at most [`MAX_NOTE_LEN`] bytes.
    pub note: String,
    /// How many more times the same thing happened right after (a retry
    /// failing the same way), instead of an entry each.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: u32,
    /// When it last happened, when it repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A note as history keeps it: control characters (escape sequences a
/// device may send) removed, cut at [`MAX_NOTE_LEN`] bytes.
pub fn clean_note(note: &str) -> String {
    crate::wire::clean_text(note, MAX_NOTE_LEN)
}

/// What a protocol knows about a job before it is committed.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The listener it arrived on.
    pub listener: ListenerName,
    /// The queue (LPD queue, IPP printer) it was sent to.
    pub queue: Option<String>,
    /// The sender.
    pub peer: SocketAddr,
    /// The owner, from the protocol.
    pub user: String,
    /// The job name, from the protocol.
    pub name: String,
    /// The document format, if the protocol said or sniffing saw it.
    pub format: Option<String>,
    /// The workflow of the input it arrived on.
    pub workflow: String,
    /// IPP only: the job template attributes the printer accepted, to pass on
    /// to IPP devices (see [`Job::ipp_job_attributes`]).
    pub ipp_job_attributes: Option<String>,
    /// IPP only: the `job-password` (PWG 5100.11) the job is released with,
    /// as [`hash_pin`] keeps it.
    pub pin: Option<String>,
}

/// A committed job's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its id within the tenant.
    pub id: JobId,
    /// The listener it arrived on.
    pub listener: ListenerName,
    /// The queue it was sent to.
    pub queue: Option<String>,
    /// The sender.
    pub peer: SocketAddr,
    /// The owner.
    pub user: String,
    /// The job name.
    pub name: String,
    /// The document format, if known.
    pub format: Option<String>,
    /// Document size in bytes.
    pub size: u64,
    /// SHA-256 of the document, lower-case hex.
    pub sha256: String,
    /// The spool document is sealed with the tenant's key
    /// ([`crate::store::document`]); false in records of documents spooled
    /// before documents were sealed, which are read as they are.
    #[serde(default)]
    pub document_sealed: bool,
    /// Its workflow.
    pub workflow: String,
    /// Index of the workflow step it is at.
    pub step: u32,
    /// Its state.
    pub state: JobState,
    /// When it was committed (ms since the epoch).
    pub created_ms: u64,
    /// A held job expires then (ms since the epoch).
    pub hold_until_ms: Option<u64>,
    /// When the job reached its current step (ms since the epoch; 0 before
    /// its first step): the delivery timeout of a forward step counts from here.
    #[serde(default)]
    pub step_started_ms: u64,
    /// The device a transfer was started to and not yet confirmed: on
    /// restart such a job may be delivered twice (the at-least-once edge).
    pub delivering: Option<String>,
    /// What happened to it, oldest first (at most [`MAX_HISTORY`] entries).
    pub history: Vec<Event>,
    /// History entries dropped to keep it within [`MAX_HISTORY`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_dropped: u32,
    /// IPP only: the job template attributes of the request that printroute
    /// accepted (`sides`, `media-col`, `copies`, ...), as the RFC 8010
    /// encoding of a job attribute group in lower-case hex; the forward step
    /// passes them on to IPP devices. Absent in records of other protocols
    /// and of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipp_job_attributes: Option<String>,
    /// The hash of the PIN (`job-password`) its owner releases it with
    /// ([`hash_pin`]); none: released by its owner or an admin as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

impl Job {
    /// Bytes of its spool file: the document, sealed or plain.
    pub fn stored_len(&self) -> u64 {
        if self.document_sealed {
            super::crypt::sealed_len(self.size)
        } else {
            self.size
        }
    }

    /// Moves the job to `state` and records why.
    pub fn set_state(&mut self, state: JobState, note: impl Into<String>) {
        self.state = state;
        self.record(state, &note.into());
    }

    /// Records an event in the job's history without changing its state.
    pub fn note(&mut self, note: impl Into<String>) {
        let state = self.state;
        self.record(state, &note.into());
    }

    fn record(&mut self, state: JobState, note: &str) {
        let note = clean_note(note);
        let now = now_ms();
        if let Some(last) = self.history.last_mut() {
            if last.state == state && last.note == note {
                last.repeats = last.repeats.saturating_add(1);
                last.last_ms = Some(now);
                return;
            }
        }
        if self.history.len() >= MAX_HISTORY {
            // Keep the first entry (how the job arrived) and the latest.
            self.history.remove(1);
            self.history_dropped = self.history_dropped.saturating_add(1);
        }
        self.history.push(Event {
            at_ms: now,
            state,
            note,
            repeats: 0,
            last_ms: None,
        });
    }
}

/// Random bytes mixed into each PIN's hash.
pub const PIN_SALT_BYTES: usize = 16;

/// A PIN as a job record keeps it: `sha256:<salt>:<SHA-256 of salt and PIN>`
/// in hex. (A short PIN is guessable from its hash by trying them all; the
/// records are sealed with the tenant's key, and the release page locks a
/// job after a few wrong tries.)
pub fn hash_pin(pin: &[u8]) -> String {
    let mut salt = [0u8; PIN_SALT_BYTES];
    let mut filled = 0;
    while filled < salt.len() {
        match rustix::rand::getrandom(&mut salt[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("the kernel's random source failed: {e}"),
        }
    }
    format!("sha256:{}:{}", hex(&salt), hex(&pin_digest(&salt, pin)))
}

/// Whether `pin` is the one `stored` ([`hash_pin`]) was made from; the
/// digests are compared in constant time.
pub fn pin_matches(stored: &str, pin: &[u8]) -> bool {
    let mut parts = stored.split(':');
    let (Some("sha256"), Some(salt), Some(digest), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(salt) = unhex(salt) else {
        return false;
    };
    let mine = hex(&pin_digest(&salt, pin));
    mine.len() == digest.len()
        && mine
            .bytes()
            .zip(digest.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn pin_digest(salt: &[u8], pin: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(salt);
    h.update(pin);
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
