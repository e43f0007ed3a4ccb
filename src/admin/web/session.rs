//! The portal's sessions: a random id in a cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` over TLS, with an expiry), kept in memory
//! only (a restart signs everyone out), each with its own CSRF token that
//! every form carries back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::caller::Caller;
use crate::admin::tokens::{constant_time_eq, fill_random};

/// The session cookie's name.
pub const COOKIE: &str = "printroute_session";

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at once; when full, expired ones are dropped, then the
/// oldest.
pub const MAX_SESSIONS: usize = 10_000;

/// Random bytes of a session id and of a CSRF token.
pub const SESSION_ID_BYTES: usize = 32;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub caller: Caller,
    /// What every form must carry back.
    pub csrf: String,
    /// When it ends.
    pub expires: Instant,
}

/// Every live session, by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut b = [0u8; SESSION_ID_BYTES];
    fill_random(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// Starts a session; returns its id (for the cookie).
    pub fn start(&self, caller: Caller) -> String {
        let id = random_hex();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            id.clone(),
            Session {
                caller,
                csrf: random_hex(),
                expires: Instant::now() + SESSION_TTL,
            },
        );
        id
    }

    /// The live session of `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `id`.
    pub fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

impl Session {
    /// Whether a form's CSRF token is this session's.
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| constant_time_eq(p.as_bytes(), self.csrf.as_bytes()))
    }
}

/// The `Set-Cookie` value starting a session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value ending a session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id of a `Cookie` header.
pub fn cookie_id(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The pairs of an `application/x-www-form-urlencoded` body (or query).
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `+` and `%XX` (invalid escapes are kept as written).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tokens::TokenScope;

    #[test]
    fn forms_decode_and_cookies_carry_the_flags() {
        assert_eq!(
            form_pairs("a=1+2&uri=socket%3A%2F%2F10.1.2.3%3A9100&bad=%zz&x"),
            [
                ("a".into(), "1 2".into()),
                ("uri".into(), "socket://10.1.2.3:9100".into()),
                ("bad".into(), "%zz".into()),
                ("x".into(), String::new()),
            ]
        );
        assert_eq!(percent_decode("%4"), "%4");
        let c = set_cookie("abc", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"));
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert_eq!(cookie_id("x=1; printroute_session=abc; y=2"), Some("abc"));
    }

    #[test]
    fn sessions_check_their_csrf_token_and_end() {
        let s = Sessions::default();
        let id = s.start(Caller {
            scope: TokenScope::Global,
            who: "t".into(),
        });
        let session = s.get(&id).unwrap();
        assert!(session.csrf_ok(Some(&session.csrf.clone())));
        assert!(!session.csrf_ok(Some("nope")));
        assert!(!session.csrf_ok(None));
        s.end(&id);
        assert!(s.get(&id).is_none());
    }
}
