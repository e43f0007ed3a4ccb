//! Per-tenant keys: every job record of a tenant is sealed (XChaCha20-Poly1305,
//! a fresh random nonce per write, the tenant and the record's key as
//! associated data) with a key of that tenant's own, kept outside sled in
//! `keys/<tenant>.key` under the data dir (0600 in a 0700 folder, or
//! 0640/0750 with `global.group-readable`, like everything the store
//! creates) and created with the tenant's first record.
//!
//! Purging a tenant shreds its key first ([`shred`]): whatever sled's log
//! still holds of the tenant's records (sled drops a tree's bytes only when
//! it rewrites the segment, maybe never) can no longer be read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Opens a sealed value: a value that starts with anything else is a
/// record written before records were sealed (plain JSON, `{`).
pub const SEALED_MAGIC: &[u8; 4] = b"\x01PR1";

/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// Bytes of a key file.
pub const KEY_LEN: usize = 32;

/// Why a sealed value cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    /// The tenant's key file is missing.
    #[error("the tenant's key file {0} is missing: its records cannot be read")]
    NoKey(PathBuf),
    /// The key file exists but is not a key.
    #[error("the tenant's key file {0} is damaged")]
    BadKey(PathBuf),
    /// The value does not open with the key (damaged, or another key's).
    #[error("a sealed record does not open with the tenant's key")]
    Open,
    /// Reading or writing the key file failed.
    #[error("key file {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// One tenant's key.
pub struct TenantKey {
    cipher: XChaCha20Poly1305,
}

/// Where a tenant's key lives.
pub fn key_path(keys_dir: &Path, tenant: &str) -> PathBuf {
    keys_dir.join(format!("{tenant}.key"))
}

/// True for a value sealed by [`TenantKey::seal`].
pub fn is_sealed(v: &[u8]) -> bool {
    v.starts_with(SEALED_MAGIC)
}

impl TenantKey {
    /// The key at `path`, or `None` when there is no file.
    pub fn load(path: &Path) -> Result<Option<TenantKey>, CryptError> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CryptError::Io(path.to_owned(), e)),
        };
        let mut k = Vec::with_capacity(KEY_LEN);
        f.read_to_end(&mut k)
            .map_err(|e| CryptError::Io(path.to_owned(), e))?;
        if k.len() != KEY_LEN {
            return Err(CryptError::BadKey(path.to_owned()));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&k)
            .map_err(|_| CryptError::BadKey(path.to_owned()))?;
        Ok(Some(TenantKey { cipher }))
    }

    /// The key at `path`, created (random, 0600, synced with its folder)
    /// when there is none.
    pub fn load_or_create(path: &Path) -> Result<TenantKey, CryptError> {
        if let Some(k) = TenantKey::load(path)? {
            return Ok(k);
        }
        let io = |e| CryptError::Io(path.to_owned(), e);
        let dir = path.parent().expect("a key file has a folder");
        super::private::create_dir_all(dir).map_err(io)?;
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let tmp = path.with_extension("key.new");
        let mut f = super::private::create_file(&tmp).map_err(io)?;
        f.write_all(&key).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(TenantKey {
            cipher: XChaCha20Poly1305::new(&key),
        })
    }

    /// Seals `plain`, bound to `aad` (where it is stored).
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .expect("sealing into memory cannot fail");
        let mut out = Vec::with_capacity(SEALED_MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(SEALED_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed with this key for `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptError> {
        let body = sealed
            .strip_prefix(SEALED_MAGIC.as_slice())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(CryptError::Open)?;
        let (nonce, ct) = body.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CryptError::Open)
    }
}

/// Destroys a key file: overwritten with zeros and synced, then unlinked
/// and its folder synced. Absent is fine.
pub fn shred(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            f.write_all(&[0u8; KEY_LEN])?;
            f.sync_all()?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_with_their_key_and_place() {
        let dir = tempfile::tempdir().unwrap();
        let a = TenantKey::load_or_create(&key_path(dir.path(), "a")).unwrap();
        let b = TenantKey::load_or_create(&key_path(dir.path(), "b")).unwrap();
        let v = a.seal(b"{\"user\":\"zebra\"}", b"a/j1");
        assert!(is_sealed(&v));
        assert!(!v.windows(5).any(|w| w == b"zebra"));
        assert_eq!(a.open(&v, b"a/j1").unwrap(), b"{\"user\":\"zebra\"}");
        assert!(a.open(&v, b"a/j2").is_err(), "bound to its place");
        assert!(b.open(&v, b"a/j1").is_err(), "another tenant's key");
        // The same key again after a restart.
        let again = TenantKey::load(&key_path(dir.path(), "a"))
            .unwrap()
            .unwrap();
        assert_eq!(again.open(&v, b"a/j1").unwrap(), b"{\"user\":\"zebra\"}");
        let mode = std::fs::metadata(key_path(dir.path(), "a")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            super::super::private::file_mode()
        );
        shred(&key_path(dir.path(), "a")).unwrap();
        assert!(TenantKey::load(&key_path(dir.path(), "a"))
            .unwrap()
            .is_none());
    }
}
