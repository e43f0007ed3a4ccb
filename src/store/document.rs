//! Spool documents sealed at rest: each document is written in chunks of
//! [`DOC_CHUNK`] plain bytes, each sealed with its tenant's key
//! ([`crypt::DocSealer`]), so a reader or writer holds one chunk whatever
//! the document's size. A job's record says whether its document is sealed
//! (documents spooled before sealing are read as they are) and its plain
//! size, which fixes every chunk's length and which one is last: a file cut
//! short, grown, reordered or sealed with another key does not read.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::crypt::{self, DocOpener, KeyRing, DOC_CHUNK, DOC_HEADER_LEN, TAG_LEN};
use super::log;

/// A committed (or parked) document of a tenant, ready to be read.
#[derive(Clone)]
pub struct Document {
    pub(super) source: Source,
    /// Plain bytes.
    pub(super) size: u64,
    /// The tenant's keys when the file is sealed; `None` for a plain file.
    pub(super) keys: Option<Arc<KeyRing>>,
    /// What its chunks are bound to (the tenant).
    pub(super) aad: Arc<[u8]>,
}

/// Where a document's (sealed) bytes are.
#[derive(Clone)]
pub(super) enum Source {
    /// A spool file of its own.
    File(PathBuf),
    /// An entry of the tenant's spool log.
    Log(log::Entry),
}

impl Document {
    /// Its plain size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes a reader holds: one sealed chunk, or the whole document when
    /// it is smaller (most are: no 64 KiB buffer for a 4 KiB job).
    fn read_buffer(&self) -> usize {
        (DOC_CHUNK + TAG_LEN).min(
            crypt::sealed_len(self.size)
                .try_into()
                .unwrap_or(usize::MAX),
        )
    }

    /// Opens it for reading on the runtime. An entry of the spool log is
    /// read whole (it is small) in the blocking pool and checked.
    pub async fn reader(&self) -> io::Result<DocumentReader> {
        let raw = match &self.source {
            Source::File(path) => Raw::File(tokio::fs::File::open(path).await?),
            Source::Log(entry) => {
                let entry = entry.clone();
                let bytes = tokio::task::spawn_blocking(move || entry.read())
                    .await
                    .map_err(io::Error::other)??;
                Raw::Memory(io::Cursor::new(bytes))
            }
        };
        Ok(DocumentReader {
            raw,
            chunks: Chunks::new(self),
            buf: Vec::with_capacity(self.read_buffer()),
        })
    }

    /// Opens it for reading in blocking code.
    pub fn blocking_reader(&self) -> io::Result<BlockingDocumentReader> {
        let raw = match &self.source {
            Source::File(path) => BlockingRaw::File(std::fs::File::open(path)?),
            Source::Log(entry) => BlockingRaw::Memory(io::Cursor::new(entry.read()?)),
        };
        Ok(BlockingDocumentReader {
            raw,
            chunks: Chunks::new(self),
            buf: Vec::with_capacity(self.read_buffer()),
            pos: 0,
        })
    }
}

/// A document's bytes being read on the runtime.
enum Raw {
    File(tokio::fs::File),
    Memory(io::Cursor<Vec<u8>>),
}

impl Raw {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Raw::File(f) => f.read(buf).await,
            Raw::Memory(c) => Read::read(c, buf),
        }
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Raw::File(f) => f.read_exact(buf).await.map(drop),
            Raw::Memory(c) => Read::read_exact(c, buf),
        }
    }
}

/// A document's bytes being read in blocking code.
enum BlockingRaw {
    File(std::fs::File),
    Memory(io::Cursor<Vec<u8>>),
}

impl Read for BlockingRaw {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingRaw::File(f) => f.read(buf),
            BlockingRaw::Memory(c) => Read::read(c, buf),
        }
    }
}

/// Why a document does not read: a bad chunk, or a file of the wrong length.
pub(super) fn unreadable(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the spool document {why}"),
    )
}

/// True for an error of a document that can never read (damaged, cut,
/// sealed with a key that is gone), unlike a passing I/O failure.
pub fn is_unreadable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}

/// The reading plan of one document: which bytes come next and how they open.
struct Chunks {
    keys: Option<Arc<KeyRing>>,
    aad: Arc<[u8]>,
    size: u64,
    /// Plain bytes handed out so far.
    done: u64,
    header_read: bool,
    header: [u8; DOC_HEADER_LEN],
    opener: Option<DocOpener>,
    /// Which key of the ring opened the document (0: the current one).
    key_index: usize,
}

impl Chunks {
    fn new(doc: &Document) -> Chunks {
        Chunks {
            keys: doc.keys.clone(),
            aad: doc.aad.clone(),
            size: doc.size,
            done: 0,
            header_read: false,
            header: [0; DOC_HEADER_LEN],
            opener: None,
            key_index: 0,
        }
    }

    /// True once the last chunk (of a sealed document, possibly empty) has
    /// been opened, or every byte of a plain one read.
    fn finished(&self) -> bool {
        match &self.keys {
            None => self.done >= self.size,
            Some(_) => self.header_read && self.opener.as_ref().is_some_and(|o| o.is_done()),
        }
    }

    /// Plain bytes of the next chunk and whether it is the last.
    fn next_plain(&self) -> (usize, bool) {
        let left = self.size - self.done;
        match &self.keys {
            None => (left.min(DOC_CHUNK as u64) as usize, false),
            // A chunk is full unless it is the last; a document whose
            // length is a multiple of the chunk ends with an empty chunk.
            Some(_) if left >= DOC_CHUNK as u64 => (DOC_CHUNK, false),
            Some(_) => (left as usize, true),
        }
    }

    /// Bytes of the file to read next.
    fn next_raw(&self) -> usize {
        match &self.keys {
            None => self.next_plain().0,
            Some(_) if !self.header_read => DOC_HEADER_LEN,
            Some(_) => self.next_plain().0 + TAG_LEN,
        }
    }

    /// Takes the raw bytes just read (exactly [`Chunks::next_raw`]); leaves
    /// the plain chunk in `buf` (empty after the header).
    fn take(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let Some(keys) = &self.keys else {
            self.done += buf.len() as u64;
            return Ok(());
        };
        if !self.header_read {
            self.header.copy_from_slice(buf);
            self.header_read = true;
            buf.clear();
            return Ok(());
        }
        let (plain, last) = self.next_plain();
        match &mut self.opener {
            Some(o) => o.open(buf, last),
            None => {
                DocOpener::new(keys.keys(), &self.header, &self.aad, buf, last).map(|(o, i)| {
                    self.opener = Some(o);
                    self.key_index = i;
                })
            }
        }
        .map_err(|e| match e {
            crypt::CryptError::Open => unreadable(
                "does not open with the tenant's key (damaged, or sealed with a key that is gone)",
            ),
            e => unreadable(&e.to_string()),
        })?;
        debug_assert_eq!(buf.len(), plain);
        self.done += plain as u64;
        Ok(())
    }
}

/// Reads a document chunk by chunk on the runtime.
pub struct DocumentReader {
    raw: Raw,
    chunks: Chunks,
    buf: Vec<u8>,
}

impl DocumentReader {
    /// The next plain chunk, or `None` at the end of the document.
    pub async fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if self.chunks.finished() {
                // Nothing may follow the last chunk.
                let mut probe = [0u8; 1];
                if self.raw.read(&mut probe).await? != 0 {
                    return Err(unreadable("is longer than its record says"));
                }
                return Ok(None);
            }
            let n = self.chunks.next_raw();
            self.buf.resize(n, 0);
            if let Err(e) = self.raw.read_exact(&mut self.buf).await {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    return Err(unreadable("is shorter than its record says"));
                }
                return Err(e);
            }
            self.chunks.take(&mut self.buf)?;
            if !self.buf.is_empty() {
                return Ok(Some(&self.buf));
            }
        }
    }
}

/// Reads a document in blocking code ([`std::io::Read`]).
pub struct BlockingDocumentReader {
    raw: BlockingRaw,
    chunks: Chunks,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    pos: usize,
}

impl BlockingDocumentReader {
    /// True when the tenant's current key sealed the document (a key
    /// rotation re-seals those that are not). Reads its first chunk.
    pub fn sealed_with_current_key(&mut self) -> io::Result<bool> {
        if self.chunks.keys.is_none() {
            return Ok(false);
        }
        // The header, then the first chunk (left in the buffer for `read`).
        while self.chunks.opener.is_none() {
            self.fill()?;
        }
        Ok(self.chunks.key_index == 0)
    }

    /// Reads and opens the next piece of the file into the buffer.
    fn fill(&mut self) -> io::Result<()> {
        let n = self.chunks.next_raw();
        self.buf.resize(n, 0);
        self.pos = 0;
        if let Err(e) = self.raw.read_exact(&mut self.buf) {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                return Err(unreadable("is shorter than its record says"));
            }
            return Err(e);
        }
        self.chunks.take(&mut self.buf)
    }
}

impl Read for BlockingDocumentReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.chunks.finished() {
                let mut probe = [0u8; 1];
                if self.raw.read(&mut probe)? != 0 {
                    return Err(unreadable("is longer than its record says"));
                }
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
