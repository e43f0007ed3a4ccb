//! The spool log: a tenant's small documents appended to its current
//! segment file, made durable by the group commit that writes their
//! records (one `fdatasync` per segment touched per group), instead of a
//! file created, synced and renamed per job.
//!
//! A document of at most [`SMALL_DOCUMENT_MAX`] plain bytes is received in
//! memory, sealed like any spool document ([`super::crypt::DocSealer`]),
//! and handed to the group commit, whose flusher thread appends it to the
//! tenant's current segment behind a frame (magic, job id, length, CRC-32
//! of the sealed bytes) and records where it lies (`l/<id>` in the
//! tenant's tree, written in the same group as the job's record). Larger
//! documents stream to a spool file of their own, as before.
//!
//! The records are the truth: an entry no unfinished job's location names
//! is dead. A segment rolls when the next entry would pass
//! [`SEGMENT_MAX`]; a segment is deleted as soon as none of its entries is
//! live (the current one too: the next entry starts a new one). At start
//! every segment is cut after its last live entry (a crash leaves at most
//! entries no record names: a torn tail) and segments with no live entry
//! are deleted.
//!
//! Only the flusher appends, so offsets need no coordination beyond the
//! state's lock; readers read an entry with `pread` through the segment's
//! open file, which stays readable after the segment is deleted.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::ids::JobId;

use super::private;

/// Largest document, in plain bytes, that goes to the spool log; larger
/// ones get a spool file of their own. Below it a document costs a share
/// of a group's segment sync instead of a file created, synced and
/// renamed; a receive holds up to this much in memory until its commit.
pub const SMALL_DOCUMENT_MAX: u64 = 256 << 10;

/// A segment takes no entry that would make it longer than this (unless it
/// is empty): the next entry starts a new segment.
pub const SEGMENT_MAX: u64 = 8 << 20;

/// A segment's file is written ahead of its entries with zeros, as much
/// as the segment already holds and at most this much: an entry then
/// overwrites blocks the file already has, which on a file system that
/// writes in place needs no metadata, so its group may write it out and
/// leave the cache flush to one `fdatasync` for every tenant's segments
/// ([`SpoolLog::write_out`]). An append past the end of the file changes
/// its size and blocks and needs a sync of its own. Growing with the
/// segment keeps a segment that holds one small entry (a tenant with
/// little traffic, whose segment goes with each printed job) free of
/// zeros; a busy segment grows by this step. The zeros past the last
/// entry are cut at start.
pub const SEGMENT_FILL_STEP: u64 = 1 << 20;

/// Bytes of zeros written, or of a segment's tail read at start, at a time.
const ZERO_CHUNK: usize = 64 << 10;

/// Names of segment files in a tenant's spool folder: this prefix and a number.
pub const SEGMENT_PREFIX: &str = "log-";

/// Starts every entry's frame.
pub const FRAME_MAGIC: [u8; 4] = *b"PRL1";

/// Bytes of an entry's frame before its body: the magic, the job id, the
/// body's length and the CRC-32 of the body (all big-endian).
pub const FRAME_LEN: usize = 16;

/// Where an entry lies: its segment, the offset of its frame, and its
/// body's length (the sealed document).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The segment's number.
    pub segment: u64,
    /// Where the entry's frame starts.
    pub offset: u64,
    /// Bytes of its body.
    pub len: u32,
}

impl Location {
    /// Bytes of an encoded location.
    pub const ENCODED_LEN: usize = 20;

    /// As stored under `l/<id>`.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset.to_be_bytes());
        b[16..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// A stored location; `None` for bytes of another shape.
    pub fn decode(b: &[u8]) -> Option<Location> {
        let b: &[u8; Self::ENCODED_LEN] = b.try_into().ok()?;
        Some(Location {
            segment: u64::from_be_bytes(b[..8].try_into().ok()?),
            offset: u64::from_be_bytes(b[8..16].try_into().ok()?),
            len: u32::from_be_bytes(b[16..].try_into().ok()?),
        })
    }

    /// The offset just past the entry.
    pub fn end(&self) -> u64 {
        self.offset + FRAME_LEN as u64 + u64::from(self.len)
    }
}

/// Fills in the frame at the front of `entry` (its first [`FRAME_LEN`]
/// bytes, reserved by the writer) for the body that follows.
pub fn frame(entry: &mut [u8], id: JobId) {
    let (head, body) = entry.split_at_mut(FRAME_LEN);
    head[..4].copy_from_slice(&FRAME_MAGIC);
    head[4..8].copy_from_slice(&id.0.to_be_bytes());
    head[8..12].copy_from_slice(&(body.len() as u32).to_be_bytes());
    head[12..].copy_from_slice(&crc32fast::hash(body).to_be_bytes());
}

/// Checks an entry read back (frame and body) against what its location
/// and job say; the error says what is wrong.
pub fn check(entry: &[u8], id: JobId, loc: &Location) -> Result<(), &'static str> {
    if entry.len() != FRAME_LEN + loc.len as usize {
        return Err("is cut short in the spool log");
    }
    let (head, body) = entry.split_at(FRAME_LEN);
    if head[..4] != FRAME_MAGIC
        || head[4..8] != id.0.to_be_bytes()
        || head[8..12] != loc.len.to_be_bytes()
    {
        return Err("is not where its record says in the spool log");
    }
    if head[12..] != crc32fast::hash(body).to_be_bytes() {
        return Err("is damaged in the spool log (checksum)");
    }
    Ok(())
}

/// A damaged entry's read error: `InvalidData`, which the document layer
/// and the dispatcher take for a document that can never read.
fn damaged(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the spool document {why}"),
    )
}

/// A live entry, to read.
#[derive(Clone)]
pub struct Entry {
    pub(super) file: Arc<File>,
    pub(super) loc: Location,
    pub(super) id: JobId,
}

impl Entry {
    /// Reads the whole entry (frame and body) and checks it; returns the body.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; FRAME_LEN + self.loc.len as usize];
        match self.file.read_exact_at(&mut buf, self.loc.offset) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(damaged("is cut short in the spool log"))
            }
            r => r?,
        }
        check(&buf, self.id, &self.loc).map_err(damaged)?;
        buf.drain(..FRAME_LEN);
        Ok(buf)
    }

    /// Its body's length (the sealed document).
    pub fn sealed_len(&self) -> u32 {
        self.loc.len
    }
}

struct Segment {
    file: Arc<File>,
    /// Bytes appended (entries may follow that a failed group left dead).
    len: u64,
    /// Bytes of the file written, entries and the zeros ahead of them
    /// ([`SEGMENT_FILL_STEP`]).
    filled: u64,
    /// Live entries (jobs whose location is here).
    live: u32,
    /// Entries written for a group that has not ended yet.
    pending: u32,
    /// Written since the last sync.
    unsynced: bool,
    /// Its file grew since the last sync ([`SEGMENT_FILL_STEP`]): the next
    /// sync writes its size too.
    grown: bool,
    /// The device the file is on (`st_dev`): one cache flush per device.
    dev: u64,
    /// Its file system overwrites written blocks in place, with no
    /// metadata to sync ([`overwrites_in_place`]): a sync within the fill
    /// may write the data out and leave the flush to the group.
    in_place: bool,
}

/// A segment whose new entries [`SpoolLog::write_out`] wrote to the
/// device, durable after the device's next cache flush.
pub struct WrittenOut {
    segment: u64,
    file: Arc<File>,
    dev: u64,
}

impl WrittenOut {
    /// The segment's number.
    pub fn segment(&self) -> u64 {
        self.segment
    }
}

/// Makes the entries [`SpoolLog::write_out`] wrote durable: one
/// `fdatasync` per device they are on, whose cache flush covers every
/// write the device completed before it (a segment's own `fdatasync`,
/// with nothing left to write, is that flush alone).
pub fn flush_written_out<'a>(out: impl IntoIterator<Item = &'a WrittenOut>) -> io::Result<()> {
    let mut devs: Vec<u64> = Vec::new();
    for w in out {
        if !devs.contains(&w.dev) {
            devs.push(w.dev);
            w.file.sync_data()?;
        }
    }
    Ok(())
}

/// Whether `file`'s file system writes over a file's written blocks in
/// place, so that such a write needs no metadata to be found after a
/// crash: ext4 (unless it journals data: `data=journal`) and XFS. Not a
/// copy-on-write file system (btrfs, ZFS, bcachefs), where each write gets
/// new blocks that only a metadata commit makes durable; there, and on any
/// file system not known here, every segment sync is an `fdatasync`.
fn overwrites_in_place(file: &File, dev: u64) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const XFS_SUPER_MAGIC: i64 = 0x5846_5342;
    let Ok(fs) = rustix::fs::fstatfs(file) else {
        return false;
    };
    #[expect(
        clippy::unnecessary_cast,
        reason = "f_type is i64 on x86_64 and narrower on other targets"
    )]
    match fs.f_type as i64 {
        XFS_SUPER_MAGIC => true,
        EXT4_SUPER_MAGIC => !journals_data(dev),
        _ => false,
    }
}

/// Whether the ext4 file system on device `dev` is mounted with
/// `data=journal` (from /proc/self/mountinfo; unknown counts as yes).
fn journals_data(dev: u64) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map_or(true, |info| journals_data_in(&info, dev))
}

/// [`journals_data`] from the text of a mountinfo file.
fn journals_data_in(info: &str, dev: u64) -> bool {
    let id = format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev));
    let mut found = false;
    for line in info.lines() {
        if line.split(' ').nth(2) != Some(id.as_str()) {
            continue;
        }
        found = true;
        // "... - ext4 /dev/vda rw,data=journal": the super block's options last.
        let options = line.rsplit(' ').next().unwrap_or_default();
        if options.split(',').any(|o| o == "data=journal") {
            return true;
        }
    }
    !found
}

/// Writes a file's dirty pages and waits until the device has them (in
/// its cache: not durable before the device's cache flush). Nothing of
/// the file's size or blocks: only for a file whose blocks are all
/// allocated and written already (a segment within its fill).
#[expect(
    unsafe_code,
    reason = "sync_file_range has no safe wrapper in rustix or std"
)]
fn write_out(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is borrowed from `file`, open for the whole
    // call; sync_file_range takes no pointers.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            0,
            0,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[derive(Default)]
struct State {
    segments: BTreeMap<u64, Segment>,
    /// The segment entries are appended to; `None` until the next append
    /// makes one.
    current: Option<u64>,
    /// The next segment's number.
    next: u64,
    /// Where each live entry lies.
    jobs: HashMap<JobId, Location>,
    /// A segment was created since the last sync: the folder needs one too.
    dir_unsynced: bool,
}

/// One tenant's spool log.
pub struct SpoolLog {
    dir: PathBuf,
    state: Mutex<State>,
    /// Whether the folder's file system overwrites in place
    /// ([`overwrites_in_place`]), found at the first segment made.
    in_place: std::sync::OnceLock<bool>,
}

/// What opening a tenant's log found.
pub struct Opened {
    /// The log.
    pub log: SpoolLog,
    /// Unfinished jobs whose entry is not there whole, and why.
    pub damaged: Vec<(JobId, String)>,
    /// Segments deleted (no live entry).
    pub deleted: usize,
    /// Bytes of entries cut from the ends of the others (torn tails, dead
    /// entries).
    pub cut: u64,
    /// Bytes of zeros cut after those (written ahead of entries, never used).
    pub unused: u64,
}

fn segment_name(n: u64) -> String {
    format!("{SEGMENT_PREFIX}{n:012}")
}

/// The number of a segment file's name, or `None` for another file.
pub fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix(SEGMENT_PREFIX)?.parse().ok()
}

impl SpoolLog {
    /// A log with no segments, for a tenant with no spool folder yet.
    pub fn new(dir: &Path) -> SpoolLog {
        SpoolLog {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                next: 1,
                ..State::default()
            }),
            in_place: std::sync::OnceLock::new(),
        }
    }

    /// Opens the segments in `dir`, given where the unfinished jobs' entries
    /// lie: keeps the segments that hold live entries, cut after their last
    /// one, and deletes the others.
    pub fn open(dir: &Path, live: HashMap<JobId, Location>) -> io::Result<Opened> {
        let mut files = BTreeMap::new();
        if dir.is_dir() {
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                if let Some(n) = segment_number(&e.file_name().to_string_lossy()) {
                    files.insert(n, e.metadata()?.len());
                }
            }
        }
        let mut state = State {
            next: files.keys().next_back().map_or(1, |n| n + 1),
            ..State::default()
        };
        let mut damaged = Vec::new();
        let mut ends: HashMap<u64, (u64, u32)> = HashMap::new();
        // Each kept segment's live byte ranges (entry start, end).
        let mut live_ranges: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        for (id, loc) in live {
            match files.get(&loc.segment) {
                Some(&len) if loc.end() <= len => {
                    let e = ends.entry(loc.segment).or_default();
                    e.0 = e.0.max(loc.end());
                    e.1 += 1;
                    live_ranges
                        .entry(loc.segment)
                        .or_default()
                        .push((loc.offset, loc.end()));
                    state.jobs.insert(id, loc);
                }
                Some(&len) => damaged.push((
                    id,
                    format!(
                        "its spool log entry is cut short ({} of {} bytes there)",
                        len.saturating_sub(loc.offset + FRAME_LEN as u64),
                        loc.len
                    ),
                )),
                None => damaged.push((id, "its spool log segment is missing".to_owned())),
            }
        }
        let (mut deleted, mut cut, mut unused) = (0, 0, 0);
        for (n, len) in files {
            let path = dir.join(segment_name(n));
            let Some(&(end, live)) = ends.get(&n) else {
                std::fs::remove_file(&path)?;
                deleted += 1;
                continue;
            };
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)?;
            if len > end {
                // Entries no record names (a torn tail, or dead ones), then
                // the zeros written ahead of them.
                let written = written_end(&file, end, len)?;
                file.set_len(end)?;
                file.sync_all()?;
                cut += written - end;
                unused += len - written;
            }
            // Dead entries between live ones: jobs that finished (their
            // records durable) when a crash came before their entries were
            // erased. Erased now, so a finished job's document does not
            // stay on disk until its segment goes.
            let mut ranges = live_ranges.remove(&n).unwrap_or_default();
            ranges.sort_unstable();
            let mut pos = 0;
            for (start, stop) in ranges.into_iter().chain(std::iter::once((end, end))) {
                if start > pos {
                    erase_range(&file, pos, start)?;
                }
                pos = pos.max(stop);
            }
            state.segments.insert(
                n,
                Segment {
                    // No entry is appended to a segment of an earlier run.
                    in_place: false,
                    dev: file.metadata()?.dev(),
                    file: Arc::new(file),
                    len: end,
                    filled: end,
                    live,
                    pending: 0,
                    unsynced: false,
                    grown: false,
                },
            );
        }
        Ok(Opened {
            log: SpoolLog {
                dir: dir.to_owned(),
                state: Mutex::new(state),
                in_place: std::sync::OnceLock::new(),
            },
            damaged,
            deleted,
            cut,
            unused,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an entry (its frame filled in by [`frame`]) to the current
    /// segment, starting a new one when it would pass [`SEGMENT_MAX`]; the
    /// flusher only. It is durable after [`SpoolLog::sync`], live after
    /// [`SpoolLog::placed`] (or dead after [`SpoolLog::abandoned`]).
    pub fn write(&self, entry: &[u8]) -> io::Result<Location> {
        let n = entry.len() as u64;
        let (file, loc, fill) = {
            let mut st = self.lock();
            let fits = st
                .current
                .and_then(|c| st.segments.get(&c))
                .is_some_and(|s| s.len == 0 || s.len + n <= SEGMENT_MAX);
            if !fits {
                self.start_segment(&mut st)?;
            }
            let c = st.current.expect("a current segment was just made");
            let seg = st.segments.get_mut(&c).expect("the current segment exists");
            let loc = Location {
                segment: c,
                offset: seg.len,
                len: (n - FRAME_LEN as u64) as u32,
            };
            seg.pending += 1;
            // A write that fails leaves dead bytes, cut at the next start.
            seg.len += n;
            seg.unsynced = true;
            let fill = (seg.len > seg.filled).then(|| {
                let ahead = loc.offset.min(SEGMENT_FILL_STEP);
                let to = (seg.len + ahead).min(SEGMENT_MAX).max(seg.len);
                let from = std::mem::replace(&mut seg.filled, to);
                seg.grown = true;
                (from, to)
            });
            (seg.file.clone(), loc, fill)
        };
        let written = match fill {
            // The zeros first: the entry overwrites its part of them.
            Some((from, to)) => fill_zeros(&file, from, to),
            None => Ok(()),
        }
        .and_then(|()| file.write_all_at(entry, loc.offset));
        if let Err(e) = written {
            self.abandoned(&loc);
            return Err(e);
        }
        Ok(loc)
    }

    fn start_segment(&self, st: &mut State) -> io::Result<()> {
        let n = st.next;
        let path = self.dir.join(segment_name(n));
        let mode = private::file_mode();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        let dev = file.metadata()?.dev();
        let in_place = *self
            .in_place
            .get_or_init(|| overwrites_in_place(&file, dev));
        st.next = n + 1;
        let old = st.current.replace(n);
        st.segments.insert(
            n,
            Segment {
                dev,
                in_place,
                file: Arc::new(file),
                len: 0,
                filled: 0,
                live: 0,
                pending: 0,
                unsynced: false,
                grown: true,
            },
        );
        st.dir_unsynced = true;
        if let Some(old) = old {
            // The old one may hold nothing live any more; if it lives on,
            // the zeros after its last entry go.
            if let Some(path) = self.release(st, old) {
                let _ = std::fs::remove_file(path);
            } else if let Some(seg) = st.segments.get_mut(&old) {
                if seg.filled > seg.len && seg.file.set_len(seg.len).is_ok() {
                    seg.filled = seg.len;
                }
            }
        }
        Ok(())
    }

    /// Makes every entry written since the last sync durable: [`SpoolLog::write_out`],
    /// then the device's cache flush ([`flush_written_out`]).
    pub fn sync(&self, dir: &File) -> io::Result<()> {
        let out = self.write_out(dir)?;
        flush_written_out(&out).inspect_err(|_| {
            for w in &out {
                self.unsure(w.segment);
            }
        })
    }

    /// Writes every entry written since the last sync to the device: a
    /// segment whose file grew since (its size on disk changed) gets its
    /// `fdatasync`, and the folder one when a segment was created; the
    /// others are only written out and waited for (`sync_file_range`) and
    /// returned, durable after the device's next cache flush
    /// ([`flush_written_out`], one for the segments of every tenant in a
    /// group instead of one per segment). The flusher only. A failed sync
    /// leaves the segment's state unknown: the next entry starts a new
    /// segment (see [`SpoolLog::unsure`]).
    pub fn write_out(&self, dir: &File) -> io::Result<Vec<WrittenOut>> {
        let (files, dir_too) = {
            let mut st = self.lock();
            // (number, file, needs its own fdatasync, device)
            let files: Vec<(u64, Arc<File>, bool, u64)> = st
                .segments
                .iter_mut()
                .filter(|(_, s)| s.unsynced)
                .map(|(n, s)| {
                    s.unsynced = false;
                    let own_sync = std::mem::take(&mut s.grown) || !s.in_place;
                    (*n, s.file.clone(), own_sync, s.dev)
                })
                .collect();
            (files, std::mem::take(&mut st.dir_unsynced))
        };
        let mut out = Vec::new();
        for (n, f, own_sync, dev) in files {
            let r = if own_sync {
                f.sync_data()
            } else {
                write_out(&f).map(|()| {
                    out.push(WrittenOut {
                        segment: n,
                        file: f,
                        dev,
                    })
                })
            };
            if let Err(e) = r {
                self.unsure(n);
                for w in &out {
                    self.unsure(w.segment);
                }
                if dir_too {
                    self.lock().dir_unsynced = true;
                }
                return Err(e);
            }
        }
        if dir_too {
            if let Err(e) = dir.sync_all() {
                self.lock().dir_unsynced = true;
                return Err(e);
            }
        }
        Ok(out)
    }

    /// A sync of `segment` failed: what reached its file is not known, so
    /// entries go to a new segment from now on (and the file is synced in
    /// full before it is trusted with a size again).
    pub fn unsure(&self, segment: u64) {
        let mut st = self.lock();
        if st.current == Some(segment) {
            st.current = None;
        }
        if let Some(seg) = st.segments.get_mut(&segment) {
            seg.grown = true;
        }
    }

    /// The entry at `loc` belongs to job `id` now: its record is durable.
    pub fn placed(&self, id: JobId, loc: &Location) {
        let mut st = self.lock();
        if let Some(seg) = st.segments.get_mut(&loc.segment) {
            seg.pending = seg.pending.saturating_sub(1);
            seg.live += 1;
        }
        let old = st.jobs.insert(id, *loc);
        let dead = old.and_then(|o| self.leave(&mut st, &o));
        drop(st);
        if let Some(path) = dead {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Like [`SpoolLog::placed`] for an entry that moves a live job's
    /// document (a key rotation): a job that finished meanwhile keeps no
    /// entry, and the new one is dead at once.
    pub fn relocated(&self, id: JobId, loc: &Location) {
        let live = self.lock().jobs.contains_key(&id);
        if live {
            self.placed(id, loc);
        } else {
            self.abandoned(loc);
        }
    }

    /// The entry at `loc` will never be live: its group failed.
    pub fn abandoned(&self, loc: &Location) {
        let mut st = self.lock();
        if let Some(seg) = st.segments.get_mut(&loc.segment) {
            seg.pending = seg.pending.saturating_sub(1);
        }
        let dead = self.release(&mut st, loc.segment);
        drop(st);
        if let Some(path) = dead {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The live entry of job `id`, if its document is in the log.
    pub fn entry(&self, id: JobId) -> Option<Entry> {
        let st = self.lock();
        let loc = *st.jobs.get(&id)?;
        let file = st.segments.get(&loc.segment)?.file.clone();
        Some(Entry { file, loc, id })
    }

    /// Job `id`'s document is no longer needed (the job finished); true
    /// when it was in the log. A segment left with no live entry is deleted.
    pub fn remove(&self, id: JobId) -> bool {
        let mut st = self.lock();
        let Some(loc) = st.jobs.remove(&id) else {
            return false;
        };
        let file = st.segments.get(&loc.segment).map(|s| s.file.clone());
        let dead = self.leave(&mut st, &loc);
        drop(st);
        match (dead, file) {
            (Some(path), _) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(segment = %path.display(), error = %e, "cannot delete a spool log segment");
                }
            }
            (None, Some(file)) => erase(&file, &loc),
            (None, None) => {}
        }
        true
    }

    /// Appends from now on go to a new segment (a key rotation moves every
    /// live entry out of the older ones).
    pub fn roll(&self) {
        self.lock().current = None;
    }

    /// Live jobs whose entries lie in segments older than the current one.
    pub fn live_before_current(&self) -> Vec<JobId> {
        let st = self.lock();
        let mut ids: Vec<JobId> = st
            .jobs
            .iter()
            .filter(|(_, l)| st.current.is_none_or(|c| l.segment < c))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Segment files now, and their bytes.
    pub fn segments(&self) -> (usize, u64) {
        let st = self.lock();
        (st.segments.len(), st.segments.values().map(|s| s.len).sum())
    }

    /// Takes a live entry out of its segment's count.
    fn leave(&self, st: &mut State, loc: &Location) -> Option<PathBuf> {
        let seg = st.segments.get_mut(&loc.segment)?;
        seg.live = seg.live.saturating_sub(1);
        self.release(st, loc.segment)
    }

    /// Forgets segment `n` when nothing in it is live or pending; returns
    /// its path to delete (after the lock is let go).
    fn release(&self, st: &mut State, n: u64) -> Option<PathBuf> {
        let seg = st.segments.get(&n)?;
        if seg.live > 0 || seg.pending > 0 {
            return None;
        }
        st.segments.remove(&n);
        if st.current == Some(n) {
            st.current = None;
        }
        Some(self.dir.join(segment_name(n)))
    }
}

/// Writes zeros over `from..to` of a segment (see [`SEGMENT_FILL_STEP`]).
fn fill_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The end of the last byte that is not zero in `from..to` of a segment
/// (`from` if there is none): where what was written ends and the zeros
/// written ahead of entries begin.
fn written_end(file: &File, from: u64, to: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; ZERO_CHUNK];
    let mut end = to;
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// Erases a dead entry in a segment that lives on: a hole is punched
/// where it was (its blocks are freed, it reads as zeros), or, where the
/// file system cannot punch holes, its frame is zeroed.
fn erase(file: &File, loc: &Location) {
    let len = FRAME_LEN as u64 + u64::from(loc.len);
    let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
    if rustix::fs::fallocate(file, flags, loc.offset, len).is_err() {
        let _ = file.write_all_at(&[0u8; FRAME_LEN], loc.offset);
    }
}

/// Erases the bytes `from..to` of a segment that no live entry holds
/// (at start-up): a hole punched (a no-op where one is already), or
/// zeros written where the file system cannot punch holes.
fn erase_range(file: &File, from: u64, to: u64) -> io::Result<()> {
    let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
    if rustix::fs::fallocate(file, flags, from, to - from).is_ok() {
        return Ok(());
    }
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The job ids of the whole, well-framed entries in a segment's bytes, in
/// order: live entries, and dead ones of a segment that has not been
/// opened since (erased entries and torn tails are passed over). For
/// audits and tests.
pub fn scan(bytes: &[u8]) -> Vec<JobId> {
    let mut ids = Vec::new();
    let mut pos = 0;
    while pos + FRAME_LEN <= bytes.len() {
        let head = &bytes[pos..pos + FRAME_LEN];
        if head[..4] == FRAME_MAGIC {
            let id = JobId(u32::from_be_bytes(head[4..8].try_into().expect("4 bytes")));
            let len = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
            let loc = Location {
                segment: 0,
                offset: pos as u64,
                len,
            };
            let end = loc.end() as usize;
            if end <= bytes.len() && check(&bytes[pos..end], id, &loc).is_ok() {
                ids.push(id);
                pos = end;
                continue;
            }
        }
        pos += 1;
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, body: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; FRAME_LEN];
        e.extend_from_slice(body);
        frame(&mut e, JobId(id));
        e
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(SEGMENT_PREFIX))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn entries_read_back_checked_and_segments_go_when_dead() {
        let dir = tempfile::tempdir().unwrap();
        let d = File::open(dir.path()).unwrap();
        let log = SpoolLog::open(dir.path(), HashMap::new()).unwrap().log;
        let big = vec![7u8; (SEGMENT_MAX / 2) as usize];
        let mut locs = Vec::new();
        for (i, body) in [b"one".as_slice(), &big, &big, b"four"].iter().enumerate() {
            let loc = log.write(&entry(i as u32 + 1, body)).unwrap();
            locs.push(loc);
        }
        log.sync(&d).unwrap();
        for (i, loc) in locs.iter().enumerate() {
            log.placed(JobId(i as u32 + 1), loc);
        }
        // The third entry would pass the limit: it starts a second segment.
        assert_eq!(locs[0].segment, locs[1].segment);
        assert_ne!(locs[1].segment, locs[2].segment);
        assert_eq!(segment_files(dir.path()).len(), 2);
        // The rolled segment keeps no zeros after its last entry; the
        // current one is written ahead to the next fill step.
        let len_of = |n: u64| {
            std::fs::metadata(dir.path().join(segment_name(n)))
                .unwrap()
                .len()
        };
        assert_eq!(len_of(locs[0].segment), locs[1].end());
        assert_eq!(len_of(locs[2].segment), locs[3].end() + SEGMENT_FILL_STEP);
        assert_eq!(log.entry(JobId(1)).unwrap().read().unwrap(), b"one");
        assert_eq!(log.entry(JobId(4)).unwrap().read().unwrap(), b"four");
        // Another job's frame, or a flipped bit, does not read.
        let mut wrong = log.entry(JobId(1)).unwrap();
        wrong.id = JobId(4);
        assert!(wrong.read().is_err());
        let e = log.entry(JobId(4)).unwrap();
        let mut b = [0u8; 1];
        e.file.read_exact_at(&mut b, e.loc.offset + 17).unwrap();
        e.file.write_all_at(&[b[0] ^ 1], e.loc.offset + 17).unwrap();
        let err = e.read().unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // The first segment goes with its last live entry; a reader that
        // had it open still reads.
        let held = log.entry(JobId(2)).unwrap();
        let first = dir.path().join(segment_name(locs[0].segment));
        assert_eq!(scan(&std::fs::read(&first).unwrap()), [JobId(1), JobId(2)]);
        assert!(log.remove(JobId(1)));
        assert_eq!(segment_files(dir.path()).len(), 2);
        // A dead entry in a segment that lives on is erased.
        let bytes = std::fs::read(&first).unwrap();
        assert_eq!(scan(&bytes), [JobId(2)]);
        assert!(bytes[..locs[0].end() as usize].iter().all(|b| *b == 0));
        assert!(log.remove(JobId(2)));
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert_eq!(held.read().unwrap().len(), big.len());
        assert!(!log.remove(JobId(2)), "removed once");
        // The current segment goes too once nothing in it is live.
        log.remove(JobId(3));
        log.remove(JobId(4));
        assert!(segment_files(dir.path()).is_empty());
        let loc = log.write(&entry(5, b"five")).unwrap();
        log.sync(&d).unwrap();
        log.placed(JobId(5), &loc);
        assert_eq!(log.entry(JobId(5)).unwrap().read().unwrap(), b"five");
        assert_eq!(segment_files(dir.path()).len(), 1);
    }

    #[test]
    fn a_data_journal_mount_is_found_in_mountinfo() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard,errors=remount-ro
23 22 254:16 / /spool rw,relatime shared:2 - ext4 /dev/vdb rw,data=journal
24 22 0:21 / /proc rw,nosuid - proc proc rw";
        let dev = |major, minor| rustix::fs::makedev(major, minor);
        assert!(!journals_data_in(info, dev(254, 0)));
        assert!(journals_data_in(info, dev(254, 16)));
        assert!(journals_data_in(info, dev(8, 1)), "unknown: as if it did");
    }

    #[test]
    fn opening_cuts_what_no_record_names_and_reports_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let d = File::open(dir.path()).unwrap();
        let log = SpoolLog::open(dir.path(), HashMap::new()).unwrap().log;
        let mut live = HashMap::new();
        for id in 1..=3u32 {
            let loc = log.write(&entry(id, &[id as u8; 100])).unwrap();
            log.placed(JobId(id), &loc);
            live.insert(JobId(id), loc);
        }
        // A torn tail: an entry whose group never committed, half written.
        let torn = entry(4, &[4u8; 100]);
        let loc4 = log.write(&torn[..60]).unwrap();
        log.sync(&d).unwrap();
        let seg = loc4.segment;
        // The file was written ahead with zeros, as much as it held
        // before the last entry: its size did not follow the entries.
        let path = dir.path().join(segment_name(seg));
        let filled = std::fs::metadata(&path).unwrap().len();
        assert_eq!(filled, loc4.offset + 60 + loc4.offset);
        drop(log);
        // Jobs 3 and 1 finished (not live any more), their entries not
        // erased (a crash came first); an old empty segment lies around.
        live.remove(&JobId(3));
        live.remove(&JobId(1));
        File::create(dir.path().join(segment_name(seg - 1 + 100))).unwrap();
        let mut moved = live.clone();
        moved.insert(
            JobId(9),
            Location {
                segment: 77,
                offset: 0,
                len: 10,
            },
        );
        let o = SpoolLog::open(dir.path(), moved).unwrap();
        assert_eq!(o.damaged.len(), 1);
        assert_eq!(o.damaged[0].0, JobId(9));
        assert_eq!(o.deleted, 1);
        let end = live[&JobId(2)].end();
        assert_eq!(
            std::fs::metadata(dir.path().join(segment_name(seg)))
                .unwrap()
                .len(),
            end
        );
        // Cut: job 3's dead entry and the torn one; then the zeros.
        assert_eq!(o.cut, (FRAME_LEN as u64 + 100) + 60);
        assert_eq!(o.unused, filled - end - o.cut);
        assert_eq!(o.log.entry(JobId(2)).unwrap().read().unwrap(), [2u8; 100]);
        assert!(o.log.entry(JobId(3)).is_none());
        // Job 1's dead entry before the live one is erased, not only cut
        // tails: only job 2's entry is left in the segment.
        let bytes = std::fs::read(dir.path().join(segment_name(seg))).unwrap();
        assert_eq!(scan(&bytes), [JobId(2)]);
        assert!(bytes[..live[&JobId(2)].offset as usize]
            .iter()
            .all(|b| *b == 0));
        // New entries go to a new segment, numbered after every old one.
        let loc = o.log.write(&entry(5, b"x")).unwrap();
        assert!(loc.segment > seg + 99);
    }
}
