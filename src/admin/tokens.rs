//! API tokens: bearer secrets for the admin API and the portal, each scoped
//! to one tenant or global, created and revoked with `printroute token`.
//!
//! A token is shown once, when it is created (`prt_<id>_<secret>`); the
//! data folder keeps only its SHA-256, in [`TOKENS_FILE`] (mode 0600,
//! replaced atomically on every change). The id in the token finds the
//! record; the hashes are compared in constant time. The daemon reads the
//! file again whenever it changes, so a token created or revoked by the CLI
//! counts from the next request on.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ids::TenantId;

/// The file in the data folder that holds the tokens' hashes.
pub const TOKENS_FILE: &str = "tokens.json";

/// The lock file beside [`TOKENS_FILE`]: a change (create, revoke) holds
/// it exclusively from its read to its rename, so two admins changing
/// tokens at once each see the other's change.
pub const TOKENS_LOCK_FILE: &str = ".tokens.json.lock";

/// Mode of [`TOKENS_LOCK_FILE`]: it holds nothing, and every user that
/// may change tokens must be able to open it.
pub const TOKENS_LOCK_FILE_MODE: u32 = 0o644;

/// Mode of [`TOKENS_FILE`]: the daemon's user only.
pub const TOKENS_FILE_MODE: u32 = 0o600;

/// What every token starts with (so that leaked ones are easy to grep for).
pub const TOKEN_PREFIX: &str = "prt_";

/// Random bytes of a token's id (shown in `token list`, not secret).
pub const TOKEN_ID_BYTES: usize = 6;

/// Random bytes of a token's secret.
pub const TOKEN_SECRET_BYTES: usize = 32;

/// Longest token name.
pub const MAX_TOKEN_NAME_LEN: usize = 64;

/// Longest token text accepted from a client (longer ones are not looked at).
pub const MAX_TOKEN_LEN: usize = 128;

/// What a token may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// Every tenant, and provisioning.
    Global,
    /// One tenant's own part.
    Tenant(TenantId),
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenScope::Global => f.write_str("global"),
            TokenScope::Tenant(t) => write!(f, "tenant {t}"),
        }
    }
}

/// A stored token: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TokenRecord {
    /// Its id (the part of the token after the prefix).
    pub id: String,
    /// What its creator called it.
    pub name: String,
    /// What it may touch.
    pub scope: TokenScope,
    /// SHA-256 of the whole token, hex.
    pub hash: String,
    /// When it was created, Unix seconds.
    pub created: u64,
    /// When it stops working, Unix seconds; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl TokenRecord {
    /// Whether it has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// Why a token could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The name is empty, too long or has control characters.
    #[error("a token name is 1 to {MAX_TOKEN_NAME_LEN} printable characters")]
    BadName,
    /// The file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The file is not what this program writes.
    #[error("{0}: not a token file: {1}")]
    Corrupt(PathBuf, String),
}

/// The token file of a data folder.
pub fn tokens_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKENS_FILE)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Equal bytes, in time that depends only on the length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the tokens of a data folder (none when the file does not exist).
pub fn read(data_dir: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    let path = tokens_path(data_dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| TokenError::Corrupt(path, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(TokenError::Io(path, e)),
    }
}

/// Runs a read-change-write of the token file under [`TOKENS_LOCK_FILE`]
/// (an exclusive `flock`, let go when the file closes, also when the
/// process dies).
fn locked<T>(
    data_dir: &Path,
    change: impl FnOnce() -> Result<T, TokenError>,
) -> Result<T, TokenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(TOKENS_LOCK_FILE);
    let io = |e| TokenError::Io(path.clone(), e);
    std::fs::create_dir_all(data_dir).map_err(io)?;
    // Opened to read where it exists: a lock file that root made still
    // locks for the daemon's user (a lock needs no write access).
    let lock = match std::fs::File::open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(TOKENS_LOCK_FILE_MODE)
            .open(&path),
        r => r,
    }
    .map_err(io)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(e.into()))?;
    change()
}

/// Replaces the token file atomically (a temporary file, synced, renamed);
/// called under [`locked`].
fn write(data_dir: &Path, tokens: &[TokenRecord]) -> Result<(), TokenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = tokens_path(data_dir);
    let io = |e| TokenError::Io(path.clone(), e);
    let tmp = data_dir.join(format!(".{TOKENS_FILE}.tmp"));
    // One left by a change that died half-way (the lock is ours now).
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(TOKENS_FILE_MODE)
        .open(&tmp)
        .map_err(io)?;
    let text = serde_json::to_vec_pretty(tokens).map_err(|e| io(std::io::Error::other(e)))?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Creates a token; returns its record and the token itself (to be shown
/// once: it is not kept).
pub fn create(
    data_dir: &Path,
    scope: TokenScope,
    name: &str,
    ttl: Option<Duration>,
) -> Result<(TokenRecord, String), TokenError> {
    if name.is_empty() || name.len() > MAX_TOKEN_NAME_LEN || name.chars().any(char::is_control) {
        return Err(TokenError::BadName);
    }
    let mut random = [0u8; TOKEN_ID_BYTES + TOKEN_SECRET_BYTES];
    fill_random(&mut random);
    let id = hex(&random[..TOKEN_ID_BYTES]);
    let token = format!("{TOKEN_PREFIX}{id}_{}", hex(&random[TOKEN_ID_BYTES..]));
    let created = now_secs();
    let record = TokenRecord {
        id,
        name: name.to_owned(),
        scope,
        hash: hash_hex(&token),
        created,
        expires: ttl.map(|t| created + t.as_secs()),
    };
    locked(data_dir, || {
        let mut tokens = read(data_dir)?;
        tokens.push(record.clone());
        write(data_dir, &tokens)
    })?;
    Ok((record, token))
}

/// Revokes the token with this id; false when there is none.
pub fn revoke(data_dir: &Path, id: &str) -> Result<bool, TokenError> {
    locked(data_dir, || {
        let mut tokens = read(data_dir)?;
        let before = tokens.len();
        tokens.retain(|t| t.id != id);
        if tokens.len() == before {
            return Ok(false);
        }
        write(data_dir, &tokens)?;
        Ok(true)
    })
}

/// Fills `buf` from the kernel's random source.
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("the kernel's random source failed: {e}"),
        }
    }
}

/// The daemon's view of the token file: read again whenever it changed.
#[derive(Default)]
pub struct Verifier {
    cache: Mutex<Option<(FileStamp, Vec<TokenRecord>)>>,
}

/// What tells a changed token file from the one read before.
type FileStamp = (u64, u64, Option<SystemTime>);

impl Verifier {
    /// The live (known, unexpired) token `presented` is, if any.
    pub fn verify(&self, data_dir: &Path, presented: &str) -> Option<TokenRecord> {
        if presented.len() > MAX_TOKEN_LEN {
            return None;
        }
        let id = presented.strip_prefix(TOKEN_PREFIX)?.split('_').next()?;
        let tokens = self.current(data_dir);
        let record = tokens.iter().find(|t| t.id == id)?;
        let ok = constant_time_eq(hash_hex(presented).as_bytes(), record.hash.as_bytes());
        (ok && !record.expired(now_secs())).then(|| record.clone())
    }

    fn current(&self, data_dir: &Path) -> Vec<TokenRecord> {
        use std::os::unix::fs::MetadataExt;
        let path = tokens_path(data_dir);
        let stamp: FileStamp = match std::fs::metadata(&path) {
            Ok(m) => (m.ino(), m.len(), m.modified().ok()),
            Err(_) => (0, 0, None),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, t)) = &*cache {
            if *s == stamp {
                return t.clone();
            }
        }
        let tokens = match read(data_dir) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the API tokens; none is accepted");
                Vec::new()
            }
        };
        *cache = Some((stamp, tokens.clone()));
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_created_and_revoked_at_the_same_time_are_all_kept() {
        // Two admins running `printroute token create` at once: each
        // reads, adds and writes the file; none may lose the other's token.
        const THREADS: usize = 8;
        const EACH: usize = 6;
        let dir = tempfile::tempdir().unwrap();
        let (_, doomed) = create(dir.path(), TokenScope::Global, "doomed", None).unwrap();
        let doomed_id = doomed.split('_').nth(1).unwrap().to_owned();
        let made: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (path, doomed_id) = (dir.path(), doomed_id.clone());
                    s.spawn(move || {
                        if i == 0 {
                            assert!(revoke(path, &doomed_id).unwrap());
                        }
                        (0..EACH)
                            .map(|n| {
                                create(path, TokenScope::Global, &format!("t{i}-{n}"), None)
                                    .unwrap()
                                    .1
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert_eq!(read(dir.path()).unwrap().len(), THREADS * EACH);
        let v = Verifier::default();
        for t in &made {
            assert!(v.verify(dir.path(), t).is_some(), "token {t} was lost");
        }
        assert!(v.verify(dir.path(), &doomed).is_none(), "revoked");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "temporary files left: {names:?}");
    }

    #[test]
    fn tokens_are_kept_hashed_checked_and_revoked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let (rec, token) =
            create(dir.path(), TokenScope::Tenant(acme.clone()), "ci", None).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.contains(&rec.id));
        let text = std::fs::read_to_string(tokens_path(dir.path())).unwrap();
        let secret = token.rsplit('_').next().unwrap();
        assert!(!text.contains(secret), "the secret is not stored");
        let mode = std::fs::metadata(tokens_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, TOKENS_FILE_MODE);

        let v = Verifier::default();
        assert_eq!(
            v.verify(dir.path(), &token).unwrap().scope,
            TokenScope::Tenant(acme)
        );
        // One character off, someone else's id, garbage: nothing.
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push(if token.ends_with('0') { '1' } else { '0' });
        assert!(v.verify(dir.path(), &wrong).is_none());
        assert!(v.verify(dir.path(), "prt_").is_none());
        assert!(v.verify(dir.path(), &"x".repeat(4096)).is_none());

        let (g, global) = create(
            dir.path(),
            TokenScope::Global,
            "central",
            Some(Duration::ZERO),
        )
        .unwrap();
        assert!(g.expired(now_secs()));
        assert!(v.verify(dir.path(), &global).is_none(), "expired");
        assert_eq!(read(dir.path()).unwrap().len(), 2);

        assert!(revoke(dir.path(), &rec.id).unwrap());
        assert!(!revoke(dir.path(), &rec.id).unwrap());
        assert!(v.verify(dir.path(), &token).is_none(), "revoked");
        assert!(matches!(
            create(dir.path(), TokenScope::Global, "", None),
            Err(TokenError::BadName)
        ));
    }
}
