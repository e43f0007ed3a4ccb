//! What every admin API request shares: the daemon's handles, the token
//! verifier, the sign-in rate limiter, the PAM conversations, the lock that serialises config
//! changes, and the answers (JSON, errors, the one "not found").

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use super::caller::Caller;
use super::password::Passwords;
use super::session::Sessions;
use crate::admin::control::ReloadRequest;
use crate::admin::tokens::Verifier;
use crate::admin::Admin;
use crate::config::ids::{JobId, TenantId};

/// Failed sign-ins (bad, expired or revoked tokens) one address may make
/// per [`SIGN_IN_WINDOW`]; past them it is answered 429 until the window ends.
pub const MAX_FAILED_SIGN_INS: u32 = 10;

/// The window [`MAX_FAILED_SIGN_INS`] counts in.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);

/// Addresses whose failed sign-ins are remembered at once; when full, the
/// oldest windows are forgotten first.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// The one body of every 404: another tenant's objects answer exactly
/// like objects that do not exist.
pub const NOT_FOUND_BODY: &str = "{\"error\":\"not found\"}";

/// The daemon's side of the admin API.
pub struct Web {
    /// The daemon's handles.
    pub admin: Arc<Admin>,
    /// Asks the daemon to reload (and hears how it went).
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Checks bearer tokens.
    pub tokens: Verifier,
    /// Failed sign-ins per address.
    pub limiter: SignInLimiter,
    /// One config change at a time: read, validate, write, reload.
    pub edits: tokio::sync::Mutex<()>,
    /// The portal's signed-in browsers.
    pub sessions: Sessions,
    /// Wrong PINs per held job (the release page).
    pub pin_tries: PinTries,
    /// Password sign-ins through PAM.
    pub passwords: Passwords,
}

impl Web {
    /// The data folder in force (tokens, audit logs).
    pub fn data_dir(&self) -> PathBuf {
        self.admin.snapshot.load().config.global.data_dir.clone()
    }
}

/// Failed sign-ins per source address, in fixed windows.
#[derive(Default)]
pub struct SignInLimiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInLimiter {
    /// How long `ip` must wait before it may try again; `None`: it may now.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (since, n) = seen.get(&ip)?;
        let left = SIGN_IN_WINDOW.checked_sub(since.elapsed())?;
        (*n >= MAX_FAILED_SIGN_INS).then_some(left)
    }

    /// Counts a failed sign-in of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED_ADDRESSES && !seen.contains_key(&ip) {
            seen.retain(|_, (since, _)| since.elapsed() < SIGN_IN_WINDOW);
            if seen.len() >= MAX_TRACKED_ADDRESSES {
                seen.clear();
            }
        }
        let e = seen.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= SIGN_IN_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

/// Wrong PINs a job takes before it is locked.
pub const MAX_PIN_TRIES: u32 = 5;

/// How long a job stays locked after [`MAX_PIN_TRIES`] wrong PINs.
pub const PIN_LOCK: Duration = Duration::from_secs(15 * 60);

/// Jobs whose wrong tries are remembered at once (the oldest are forgotten
/// when full; a restart forgets all).
pub const MAX_TRACKED_JOBS: usize = 100_000;

/// A job's wrong PINs, and until when it is locked.
type Tries = (u32, Option<Instant>);

/// Wrong PIN tries per job.
#[derive(Default)]
pub struct PinTries {
    map: Mutex<HashMap<(TenantId, JobId), Tries>>,
}

impl PinTries {
    /// Whether the job is locked now.
    pub fn locked(&self, t: &TenantId, id: JobId) -> bool {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(t.clone(), id))
            .and_then(|(_, until)| *until)
            .is_some_and(|u| u > Instant::now())
    }

    /// Counts a wrong PIN for the job; locks it at the limit.
    pub fn wrong(&self, t: &TenantId, id: JobId) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_JOBS {
            let now = Instant::now();
            map.retain(|_, (_, until)| until.is_some_and(|u| u > now));
        }
        let e = map.entry((t.clone(), id)).or_insert((0, None));
        if e.1.is_some_and(|u| u <= Instant::now()) {
            *e = (0, None);
        }
        e.0 += 1;
        if e.0 >= MAX_PIN_TRIES {
            e.1 = Some(Instant::now() + PIN_LOCK);
        }
    }

    /// Forgets the job's wrong tries (it was released).
    pub fn clear(&self, t: &TenantId, id: JobId) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(t.clone(), id));
    }
}

/// An answer, before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Its content type.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// JSON with a status.
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            // Compact: a list of 10,000 jobs is 4.8 MB, 6.9 MB pretty-printed.
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    /// 200 with JSON.
    pub fn ok(v: Value) -> Reply {
        Reply::json(200, &v)
    }

    /// An error for people, as `{"error": ...}`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    /// The one 404.
    pub fn not_found() -> Reply {
        Reply {
            status: 404,
            content_type: "application/json",
            headers: Vec::new(),
            body: NOT_FOUND_BODY.as_bytes().to_vec(),
        }
    }

    /// Plain text (Prometheus exposition, say).
    pub fn text(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// With one more header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sign_ins_block_an_address_and_only_it() {
        let l = SignInLimiter::default();
        let a: IpAddr = "127.0.0.9".parse().unwrap();
        let b: IpAddr = "127.0.0.10".parse().unwrap();
        for _ in 0..MAX_FAILED_SIGN_INS - 1 {
            l.failed(a);
        }
        assert_eq!(l.blocked(a), None);
        l.failed(a);
        assert!(l.blocked(a).is_some_and(|d| d <= SIGN_IN_WINDOW));
        assert_eq!(l.blocked(b), None);
    }

    #[test]
    fn five_wrong_pins_lock_a_job_and_only_it() {
        let tries = PinTries::default();
        let t = TenantId::parse("acme").unwrap();
        for _ in 0..MAX_PIN_TRIES - 1 {
            tries.wrong(&t, JobId(1));
        }
        assert!(!tries.locked(&t, JobId(1)));
        tries.wrong(&t, JobId(1));
        assert!(tries.locked(&t, JobId(1)));
        assert!(!tries.locked(&t, JobId(2)));
        tries.clear(&t, JobId(1));
        assert!(!tries.locked(&t, JobId(1)));
    }
}
