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

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, AeadInPlace, KeyInit, OsRng, Payload};
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
    /// A document longer than a sealed stream can hold (2^32 chunks).
    #[error("a document is too long to seal")]
    TooLong,
    /// Reading or writing the key file failed.
    #[error("key file {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// One tenant's key.
#[derive(Clone)]
pub struct TenantKey {
    cipher: XChaCha20Poly1305,
}

/// A tenant's keys: the current one, which seals everything new, and the
/// previous one while a rotation ([`crate::store::TenantStore::rekey`])
/// re-seals what it sealed.
pub struct KeyRing {
    /// Seals and opens.
    pub current: TenantKey,
    /// Only opens, until the rotation ends and it is shredded.
    pub previous: Option<TenantKey>,
}

impl KeyRing {
    /// The keys that may open a value, the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &TenantKey> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    /// Opens a sealed value with whichever key sealed it; also says
    /// whether that was the current key.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<(Vec<u8>, bool), CryptError> {
        if let Ok(v) = self.current.open(sealed, aad) {
            return Ok((v, true));
        }
        match &self.previous {
            Some(p) => p.open(sealed, aad).map(|v| (v, false)),
            None => Err(CryptError::Open),
        }
    }

    /// The ring at `path` (and its rotation's previous key beside it), or
    /// `None` when there is no key file.
    pub fn load(path: &Path) -> Result<Option<KeyRing>, CryptError> {
        let Some(current) = TenantKey::load(path)? else {
            return Ok(None);
        };
        let previous = TenantKey::load(&previous_path(path))?;
        Ok(Some(KeyRing { current, previous }))
    }
}

/// Where the previous key waits while a rotation runs.
pub fn previous_path(key: &Path) -> PathBuf {
    key.with_extension("key.prev")
}

/// Where a new key is written before it replaces the current one.
fn new_path(key: &Path) -> PathBuf {
    key.with_extension("key.new")
}

/// Every file a tenant's keys may be in: the key, a rotation's previous
/// key, a new key not yet in place.
pub fn key_files(key: &Path) -> [PathBuf; 3] {
    [key.to_owned(), previous_path(key), new_path(key)]
}

/// Starts a rotation: the current key is copied to the previous key's
/// file, then a new random key replaces it (each step synced, so a crash
/// leaves the current key, and the previous one if it was replaced). A
/// rotation already started (a previous key file exists) is resumed with
/// the keys it has. Returns the ring to re-seal with.
pub fn rotate(path: &Path) -> Result<KeyRing, CryptError> {
    let io = |e| CryptError::Io(path.to_owned(), e);
    let dir = path.parent().expect("a key file has a folder");
    let current = TenantKey::load(path)?.ok_or_else(|| CryptError::NoKey(path.to_owned()))?;
    let prev_path = previous_path(path);
    if let Some(previous) = TenantKey::load(&prev_path)? {
        return Ok(KeyRing {
            current,
            previous: Some(previous),
        });
    }
    // A copy, not a link: shredding the previous key must not touch the current one.
    let old = std::fs::read(path).map_err(io)?;
    write_synced(&prev_path.with_extension("prev.new"), &old).map_err(io)?;
    std::fs::rename(prev_path.with_extension("prev.new"), &prev_path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    let key = XChaCha20Poly1305::generate_key(&mut OsRng);
    write_synced(&new_path(path), &key).map_err(io)?;
    std::fs::rename(new_path(path), path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(KeyRing {
        current: TenantKey {
            cipher: XChaCha20Poly1305::new(&key),
        },
        previous: Some(current),
    })
}

/// A private file with `bytes`, synced.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = super::private::create_file(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Starts a spool document sealed in chunks ([`DocSealer`]).
pub const DOC_MAGIC: &[u8; 4] = b"\x01PD1";

/// Random bytes per document in its chunks' nonces.
const DOC_NONCE_PREFIX: usize = 19;

/// Bytes before a sealed document's first chunk: the magic and the nonce prefix.
pub const DOC_HEADER_LEN: usize = DOC_MAGIC.len() + DOC_NONCE_PREFIX;

/// Plain bytes per sealed chunk of a document: a reader or writer holds
/// one chunk, whatever the document's size.
pub const DOC_CHUNK: usize = 64 << 10;

/// Bytes an AEAD tag adds to each chunk.
pub const TAG_LEN: usize = 16;

/// Bytes on disk of a sealed document of `plain` bytes: its header, and a
/// tag per chunk (the last chunk may be empty, so there is always one).
pub fn sealed_len(plain: u64) -> u64 {
    DOC_HEADER_LEN as u64 + plain + (plain / DOC_CHUNK as u64 + 1) * TAG_LEN as u64
}

/// A chunk's nonce: the document's random prefix, the chunk's index and
/// whether it is the last (the STREAM construction of Hoang, Reyhanitabar,
/// Rogaway and Vizár): chunks cannot be reordered, moved between documents,
/// or cut off at a chunk boundary without the open failing.
fn chunk_nonce(prefix: &[u8; DOC_NONCE_PREFIX], index: u32, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[..DOC_NONCE_PREFIX].copy_from_slice(prefix);
    n[DOC_NONCE_PREFIX..DOC_NONCE_PREFIX + 4].copy_from_slice(&index.to_be_bytes());
    n[23] = u8::from(last);
    XNonce::from(n)
}

/// Seals one document chunk by chunk, with a tenant's key.
pub struct DocSealer {
    cipher: XChaCha20Poly1305,
    prefix: [u8; DOC_NONCE_PREFIX],
    aad: std::sync::Arc<[u8]>,
    index: u32,
}

impl DocSealer {
    /// A sealer for a new document bound to `aad` (its tenant), and the
    /// header to write before its first chunk.
    pub fn new(key: &TenantKey, aad: std::sync::Arc<[u8]>) -> (DocSealer, [u8; DOC_HEADER_LEN]) {
        let mut prefix = [0u8; DOC_NONCE_PREFIX];
        OsRng.fill_bytes(&mut prefix);
        let mut header = [0u8; DOC_HEADER_LEN];
        header[..DOC_MAGIC.len()].copy_from_slice(DOC_MAGIC);
        header[DOC_MAGIC.len()..].copy_from_slice(&prefix);
        let sealer = DocSealer {
            cipher: key.cipher.clone(),
            prefix,
            aad,
            index: 0,
        };
        (sealer, header)
    }

    /// Seals the next chunk in place (at most [`DOC_CHUNK`] plain bytes; it
    /// grows by [`TAG_LEN`]); `last` for the document's final chunk.
    pub fn seal(&mut self, chunk: &mut Vec<u8>, last: bool) -> Result<(), CryptError> {
        debug_assert!(chunk.len() <= DOC_CHUNK);
        let nonce = chunk_nonce(&self.prefix, self.index, last);
        self.index = self.index.checked_add(1).ok_or(CryptError::TooLong)?;
        self.cipher
            .encrypt_in_place(&nonce, &self.aad, chunk)
            .map_err(|_| CryptError::TooLong)
    }
}

impl DocSealer {
    /// Seals the bytes of `buf` from `from` on as the next chunk, in place,
    /// and appends its tag: a document kept whole in memory is sealed
    /// chunk by chunk without a buffer of its own.
    pub fn seal_tail(
        &mut self,
        buf: &mut Vec<u8>,
        from: usize,
        last: bool,
    ) -> Result<(), CryptError> {
        debug_assert!(buf.len() - from <= DOC_CHUNK);
        let nonce = chunk_nonce(&self.prefix, self.index, last);
        self.index = self.index.checked_add(1).ok_or(CryptError::TooLong)?;
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, &self.aad, &mut buf[from..])
            .map_err(|_| CryptError::TooLong)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }
}

/// Opens a document sealed by [`DocSealer`], chunk by chunk.
pub struct DocOpener {
    cipher: XChaCha20Poly1305,
    prefix: [u8; DOC_NONCE_PREFIX],
    aad: std::sync::Arc<[u8]>,
    index: u32,
    done: bool,
}

impl DocOpener {
    /// An opener for the document whose header and first sealed chunk are
    /// given: the first key of `keys` that opens that chunk opens the
    /// document (a key ring: the current key, and the previous one while a
    /// rotation runs). `first` is opened in place.
    pub fn new<'k>(
        keys: impl IntoIterator<Item = &'k TenantKey>,
        header: &[u8],
        aad: &std::sync::Arc<[u8]>,
        first: &mut Vec<u8>,
        first_is_last: bool,
    ) -> Result<(DocOpener, usize), CryptError> {
        let prefix: [u8; DOC_NONCE_PREFIX] = header
            .strip_prefix(DOC_MAGIC.as_slice())
            .and_then(|p| p.try_into().ok())
            .ok_or(CryptError::Open)?;
        let nonce = chunk_nonce(&prefix, 0, first_is_last);
        for (i, key) in keys.into_iter().enumerate() {
            let mut attempt = first.clone();
            if key
                .cipher
                .decrypt_in_place(&nonce, &aad[..], &mut attempt)
                .is_ok()
            {
                *first = attempt;
                let opener = DocOpener {
                    cipher: key.cipher.clone(),
                    prefix,
                    aad: aad.clone(),
                    index: 1,
                    done: first_is_last,
                };
                return Ok((opener, i));
            }
        }
        Err(CryptError::Open)
    }

    /// True once the last chunk is open.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Opens the next sealed chunk in place; `last` when it is the final one.
    pub fn open(&mut self, chunk: &mut Vec<u8>, last: bool) -> Result<(), CryptError> {
        if self.done {
            return Err(CryptError::Open);
        }
        let nonce = chunk_nonce(&self.prefix, self.index, last);
        self.index = self.index.checked_add(1).ok_or(CryptError::Open)?;
        self.done = last;
        self.cipher
            .decrypt_in_place(&nonce, &self.aad, chunk)
            .map_err(|_| CryptError::Open)
    }
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
        let tmp = new_path(path);
        write_synced(&tmp, &key).map_err(io)?;
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
