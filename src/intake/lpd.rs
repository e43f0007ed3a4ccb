//! The LPD server session: one connection, one daemon command (RFC 1179
//! section 5), and for "receive a printer job" any number of jobs.
//!
//! A job is complete when its control file and every data file it prints
//! have arrived, in any order. Its data files become one spool document:
//! each file in the order of its first print line, repeated once per copy
//! (as CUPS backends make copies for raw queues). The final acknowledgement
//! of the file that completes a job is sent only after the job is committed
//! durably; a connection that breaks before that leaves nothing behind
//! (every unfinished [`SpoolWriter`] deletes its file when dropped).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::ids::ListenerName;
use crate::config::Input;
use crate::intake::{Admission, Connection, Intake};
use crate::snapshot::Routed;
use crate::store::document::Document;
use crate::store::job::{Job, JobState, NewJob};
use crate::store::{SpoolWriter, StoreError};
use crate::wire::lpd::{
    format_of_letter, job_number, parse_command, parse_control_file, parse_subcommand, Command,
    ControlFile, Length, Subcommand, MAX_COMMAND_LINE, MAX_CONTROL_FILE, MAX_DATA_FILES,
};
use crate::wire::sniff::{sniff, SNIFF_LIMIT};

/// Read buffer of an LPD connection.
pub const READ_BUFFER: usize = 64 << 10;

/// Data files one session may hold aside at once (sent before their
/// control file, out of order, or printed more than once): as many as one
/// job may name (BSD `lpr` sends every data file before the control file).
/// Each waits as a closed spool file, without a buffer or a descriptor, and
/// its bytes count against the tenant's `spool-quota` and `max-bytes-in-flight`.
pub const MAX_HELD_ASIDE_FILES: usize = MAX_DATA_FILES;

/// How long a refused peer (no tenant, over its limit) may take to send its
/// command line, and to read our answer before we close.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes read and discarded while closing, so that our last answer is
/// not lost to a reset caused by unread input.
pub const DRAIN_LIMIT: usize = 64 << 10;

/// Most jobs one queue-state answer lists.
pub const MAX_QUEUE_LISTING: usize = 1000;

/// User recorded when neither the control file nor the document names one.
pub const UNKNOWN_USER: &str = "anonymous";

/// RFC 1179 acknowledgement: one zero octet (section 6.2).
const ACK: u8 = 0;
/// A negative acknowledgement: any non-zero octet.
const NAK: u8 = 1;

type Io = BufReader<TcpStream>;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The peer closed in the middle of a line.
    #[error("connection closed in the middle of a line")]
    Truncated,
    /// The line exceeds its limit.
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    /// The peer sent nothing for the idle timeout.
    #[error("peer idle")]
    Timeout,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads one LF-terminated line (without the LF) of at most `max` bytes,
/// waiting at most `idle` for each read. `Ok(None)`: the peer closed
/// cleanly before sending a byte of a new line.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    idle: Duration,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let buf = tokio::time::timeout(idle, r.fill_buf())
            .await
            .map_err(|_| LineError::Timeout)??;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(LineError::Truncated)
            };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong(max));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take + usize::from(done));
        if done {
            return Ok(Some(line));
        }
    }
}

/// Why a file could not be received.
#[derive(Debug, thiserror::Error)]
enum RecvError {
    #[error("connection closed before the file was complete")]
    Truncated,
    #[error("the byte after the file is not the NUL that ends it: its length was wrong")]
    NoTerminator,
    #[error("control file exceeds {MAX_CONTROL_FILE} bytes")]
    ControlTooLarge,
    #[error("peer idle")]
    Timeout,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Where a received file's bytes go.
enum Sink<'a> {
    /// A control file, bounded by [`MAX_CONTROL_FILE`].
    Memory(&'a mut Vec<u8>),
    /// A data file into the spool; the first bytes are kept for sniffing.
    Spool(&'a mut SpoolWriter, &'a mut Vec<u8>),
}

impl Sink<'_> {
    async fn put(&mut self, bytes: &[u8]) -> Result<(), RecvError> {
        match self {
            Sink::Memory(v) => {
                if v.len() + bytes.len() > MAX_CONTROL_FILE {
                    return Err(RecvError::ControlTooLarge);
                }
                v.extend_from_slice(bytes);
            }
            Sink::Spool(w, head) => {
                if head.len() < SNIFF_LIMIT {
                    let take = bytes.len().min(SNIFF_LIMIT - head.len());
                    head.extend_from_slice(&bytes[..take]);
                }
                w.write(bytes).await?;
            }
        }
        Ok(())
    }
}

async fn fill(io: &mut Io, idle: Duration) -> Result<&[u8], RecvError> {
    tokio::time::timeout(idle, io.fill_buf())
        .await
        .map_err(|_| RecvError::Timeout)?
        .map_err(RecvError::Io)
}

/// Receives one file (RFC 1179 sections 6.2, 6.3): `length` bytes and the
/// NUL after them, or (placeholder length) everything until the peer
/// closes, less a final NUL if there is one.
async fn receive_file(
    io: &mut Io,
    length: Length,
    idle: Duration,
    sink: &mut Sink<'_>,
) -> Result<(), RecvError> {
    match length {
        Length::Exact(n) => {
            let mut left = n;
            while left > 0 {
                let buf = fill(io, idle).await?;
                if buf.is_empty() {
                    return Err(RecvError::Truncated);
                }
                let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let chunk = buf[..take].to_vec();
                io.consume(take);
                sink.put(&chunk).await?;
                left -= take as u64;
            }
            let buf = fill(io, idle).await?;
            match buf.first() {
                None => Err(RecvError::Truncated),
                Some(0) => {
                    io.consume(1);
                    Ok(())
                }
                Some(_) => Err(RecvError::NoTerminator),
            }
        }
        Length::UntilClose => {
            // Hold back the last byte seen: if it is the final one and a NUL,
            // it is the end-of-file octet, not data.
            let mut held: Option<u8> = None;
            loop {
                let buf = fill(io, idle).await?;
                let Some((&last, body)) = buf.split_last() else {
                    break;
                };
                let mut chunk = Vec::with_capacity(buf.len());
                chunk.extend(held.take());
                chunk.extend_from_slice(body);
                held = Some(last);
                let n = buf.len();
                io.consume(n);
                sink.put(&chunk).await?;
            }
            match held {
                Some(0) | None => Ok(()),
                Some(b) => sink.put(&[b]).await,
            }
        }
    }
}

/// Serves one LPD connection.
pub async fn serve(conn: Connection) {
    let Connection {
        stream,
        peer,
        listener,
        admission,
        shared,
    } = conn;
    let (routed, _slot) = match admission {
        Admission::Admitted { routed, slot } => (routed, slot),
        // The listener logged the refusal already; answer it in LPD.
        Admission::NoTenant | Admission::OverLimit(_) => {
            let mut io = BufReader::with_capacity(READ_BUFFER, stream);
            let code = match read_line(&mut io, MAX_COMMAND_LINE, REFUSAL_TIMEOUT).await {
                Ok(Some(line)) => line.first().copied().unwrap_or(0),
                _ => 0,
            };
            return refuse(io, code).await;
        }
    };
    let tenant = routed.tenant();
    let idle = tenant.limits.idle_timeout;
    // The read buffer comes with the first byte: an idle connection costs
    // only its socket and task.
    // (A peek, not `readable()`, which tokio may report for a new socket
    // before any byte came.)
    let first = tokio::time::timeout(idle, stream.peek(&mut [0u8; 1])).await;
    let mut io = BufReader::with_capacity(READ_BUFFER, stream);
    if first.is_err() {
        tracing::info!(tenant = %tenant.id, %peer, "LPD command not read: peer idle");
        return refuse(io, 0).await;
    }
    let line = match read_line(&mut io, MAX_COMMAND_LINE, idle).await {
        Ok(Some(line)) => line,
        Ok(None) => return,
        Err(e) => {
            tracing::info!(tenant = %tenant.id, %peer, error = %e, "LPD command not read");
            return refuse(io, 0).await;
        }
    };
    let command = match parse_command(&line) {
        Ok(c) => c,
        Err(e) => {
            shared.refused(&listener, peer, "malformed LPD command");
            tracing::debug!(tenant = %tenant.id, %peer, error = %e, "malformed LPD command");
            return refuse(io, 0).await;
        }
    };
    let Some(input) = input_for(&routed, &listener, command.queue()) else {
        shared.refused(&listener, peer, "tenant has no input for this LPD queue");
        return refuse(io, line.first().copied().unwrap_or(0)).await;
    };
    let input = input.clone();
    match command {
        Command::PrintWaiting { .. } => {
            // RFC 1179 5.1: jobs are dispatched as soon as they are committed,
            // so there is nothing to start; acknowledge and close.
            let _ = write_all(&mut io, &[ACK], idle).await;
            close(io).await;
        }
        Command::ReceiveJob { queue } => {
            // RFC 1179 5.2: the command is acknowledged (or not) before any
            // file; a tenant at max-receives (after a bounded wait) hears a
            // negative acknowledgement, LPD's "try again later".
            let Some(_receive_slot) = routed.receive_slot().await else {
                shared.refused(&listener, peer, "tenant at max-receives");
                return refuse(io, line.first().copied().unwrap_or(0)).await;
            };
            let session = Session {
                peer,
                listener,
                shared,
                routed: routed.clone(),
                input,
                queue,
                idle,
            };
            session.receive(io).await;
        }
        Command::QueueState { queue, long, list } => {
            // Reads every queued record: off the runtime threads (see queue_jobs).
            let text = tokio::task::block_in_place(|| {
                queue_state(&routed, &listener, &queue, long, &list)
            });
            let _ = write_all(&mut io, text.as_bytes(), idle).await;
            close(io).await;
        }
        Command::Remove { queue, agent, list } => {
            let text = remove_jobs(&routed, &shared, &listener, peer, &queue, &agent, &list).await;
            let _ = write_all(&mut io, text.as_bytes(), idle).await;
            close(io).await;
        }
    }
}

/// The tenant's input for an LPD queue: the input naming that queue, else
/// the tenant's input without a queue on this listener (its default queue,
/// which takes any queue name, as many printers do).
fn input_for<'a>(routed: &'a Routed, listener: &ListenerName, queue: &str) -> Option<&'a Input> {
    routed
        .input(listener, Some(queue))
        .or_else(|| routed.input(listener, None))
}

/// Answers a refused command in LPD: a negative acknowledgement for the
/// commands that expect one (01, 02, unknown), a line of text for those
/// whose answer is text (03, 04, 05); then closes.
async fn refuse(mut io: Io, code: u8) {
    let answer: &[u8] = match code {
        3..=5 => b"printroute: no such queue for this address\n",
        _ => &[NAK],
    };
    let _ = write_all(&mut io, answer, REFUSAL_TIMEOUT).await;
    close(io).await;
}

async fn write_all(io: &mut Io, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    tokio::time::timeout(timeout, io.get_mut().write_all(bytes))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer does not read"))?
}

/// Half-closes and reads what the peer still sends (bounded), so the peer
/// gets our last answer before the connection goes away: closing with
/// unread input would send a reset that can destroy it.
async fn close(mut io: Io) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, io.get_mut().shutdown()).await;
    let mut sink = [0u8; 4096];
    let mut drained = io.buffer().len();
    let drain = async {
        while drained < DRAIN_LIMIT {
            match io.get_mut().read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, drain).await;
}

/// A data file held aside until the job's document is assembled.
struct Part {
    name: String,
    writer: SpoolWriter,
    head: Vec<u8>,
}

/// One job being received.
#[derive(Default)]
struct Pending {
    /// The control file, once received.
    control: Option<ControlFile>,
    /// The job's document; the leading data files stream straight into it.
    document: Option<SpoolWriter>,
    /// How many leading print files of the control file are in `document`.
    direct: usize,
    /// The first bytes of the document when its first file came directly.
    direct_head: Vec<u8>,
    /// Data files that arrived out of order, before the control file, or with copies.
    parts: Vec<Part>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.control.is_none() && self.document.is_none() && self.parts.is_empty()
    }

    fn received(&self) -> usize {
        self.direct + self.parts.len()
    }

    fn has_data_file(&self, name: &str) -> bool {
        self.parts.iter().any(|p| p.name == name)
            || self
                .control
                .as_ref()
                .is_some_and(|c| c.files[..self.direct].iter().any(|f| f.data_file == name))
    }

    /// True when the data file can stream straight into the document: it is
    /// the next print file in control-file order and printed once.
    fn takes_directly(&self, name: &str) -> bool {
        self.control.as_ref().is_some_and(|c| {
            c.files
                .get(self.direct)
                .is_some_and(|f| f.data_file == name && f.copies == 1)
        })
    }

    /// True when the control file and every data file it prints are here.
    fn is_complete(&self) -> bool {
        self.control.as_ref().is_some_and(|c| {
            c.files[self.direct..]
                .iter()
                .all(|f| self.parts.iter().any(|p| p.name == f.data_file))
        })
    }
}

/// Why receiving ends.
enum Stop {
    /// The peer closed (cleanly, between files, or after an until-close file).
    Closed,
    /// Protocol or limit breach: negative acknowledgement, then close.
    Refuse(&'static str),
    /// The connection is unusable (timeout, reset): just drop it.
    Drop(String),
}

/// A receive-job session of one connection.
struct Session {
    peer: SocketAddr,
    listener: ListenerName,
    shared: Arc<Intake>,
    routed: Routed,
    input: Input,
    queue: String,
    idle: Duration,
}

impl Session {
    async fn receive(self, mut io: Io) {
        let tenant = self.routed.tenant();
        // RFC 1179 5.2: acknowledge the command, then subcommands follow.
        if write_all(&mut io, &[ACK], self.idle).await.is_err() {
            return;
        }
        let mut job = Pending::default();
        let stop = loop {
            match self.subcommand(&mut io, &mut job).await {
                Ok(()) => continue,
                Err(stop) => break stop,
            }
        };
        if !job.is_empty() {
            tracing::info!(tenant = %tenant.id, peer = %self.peer, queue = %self.queue, "LPD job incomplete when the connection ended; nothing kept");
        }
        drop(job);
        match stop {
            Stop::Closed => close(io).await,
            Stop::Refuse(why) => {
                self.shared.refused(&self.listener, self.peer, why);
                tracing::info!(tenant = %tenant.id, peer = %self.peer, queue = %self.queue, why, "LPD job refused");
                let _ = write_all(&mut io, &[NAK], self.idle).await;
                close(io).await;
            }
            Stop::Drop(why) => {
                tracing::info!(tenant = %tenant.id, peer = %self.peer, queue = %self.queue, why, "LPD connection dropped; nothing kept");
            }
        }
    }

    /// Reads and serves one subcommand (RFC 1179 section 6).
    async fn subcommand(&self, io: &mut Io, job: &mut Pending) -> Result<(), Stop> {
        let limits = &self.routed.tenant().limits;
        let line = match read_line(io, MAX_COMMAND_LINE, self.idle).await {
            Ok(Some(l)) => l,
            Ok(None) => return Err(Stop::Closed),
            Err(LineError::TooLong(_)) => return Err(Stop::Refuse("LPD subcommand too long")),
            Err(e) => return Err(Stop::Drop(e.to_string())),
        };
        let sub = match parse_subcommand(&line) {
            Ok(s) => s,
            // Some clients send a blank line between files; it means nothing.
            Err(crate::wire::lpd::ParseError::Empty) => return Ok(()),
            Err(_) => return Err(Stop::Refuse("malformed LPD subcommand")),
        };
        let length = match sub {
            Subcommand::Abort => {
                // RFC 1179 6.1: forget the files of this job; no answer.
                *job = Pending::default();
                return Ok(());
            }
            Subcommand::ControlFile { length, ref name } => {
                if job.control.is_some() {
                    return Err(Stop::Refuse(
                        "second control file before the first job was complete",
                    ));
                }
                if matches!(length, Length::Exact(n) if n > MAX_CONTROL_FILE as u64) {
                    return Err(Stop::Refuse("control file too large"));
                }
                self.ack(io).await?;
                let mut bytes = Vec::new();
                receive_file(io, length, self.idle, &mut Sink::Memory(&mut bytes))
                    .await
                    .map_err(|e| self.recv_stop(e))?;
                let cf = parse_control_file(&bytes)
                    .map_err(|_| Stop::Refuse("malformed control file"))?;
                let named: Vec<&str> = cf.files.iter().map(|f| f.data_file.as_str()).collect();
                tracing::debug!(peer = %self.peer, control = %name, files = ?named, "LPD control file");
                job.control = Some(cf);
                length
            }
            Subcommand::DataFile { length, ref name } => {
                if job.received() >= MAX_DATA_FILES {
                    return Err(Stop::Refuse("too many data files in one job"));
                }
                if job.has_data_file(name) {
                    return Err(Stop::Refuse("data file sent twice"));
                }
                if matches!(length, Length::Exact(n) if n > limits.max_job_size) {
                    return Err(Stop::Refuse("data file exceeds max-job-size"));
                }
                if job.takes_directly(name) {
                    if job.document.is_none() {
                        job.document = Some(
                            self.routed
                                .spool_writer()
                                .await
                                .map_err(|e| self.store_stop(e))?,
                        );
                    }
                    self.ack(io).await?;
                    let writer = job.document.as_mut().expect("document writer just made");
                    let mut head = Vec::new();
                    receive_file(io, length, self.idle, &mut Sink::Spool(writer, &mut head))
                        .await
                        .map_err(|e| self.recv_stop(e))?;
                    if job.direct == 0 {
                        job.direct_head = head;
                    }
                    job.direct += 1;
                } else {
                    if job.parts.len() >= MAX_HELD_ASIDE_FILES {
                        return Err(Stop::Refuse("too many data files held aside"));
                    }
                    let mut writer = self
                        .routed
                        .spool_writer()
                        .await
                        .map_err(|e| self.store_stop(e))?;
                    self.ack(io).await?;
                    let mut head = Vec::new();
                    receive_file(
                        io,
                        length,
                        self.idle,
                        &mut Sink::Spool(&mut writer, &mut head),
                    )
                    .await
                    .map_err(|e| self.recv_stop(e))?;
                    // No buffer, no descriptor while it waits for the rest of the job.
                    writer.park().await.map_err(|e| self.store_stop(e))?;
                    head.shrink_to_fit();
                    job.parts.push(Part {
                        name: name.clone(),
                        writer,
                        head,
                    });
                }
                length
            }
        };
        // The file is in. Acknowledge it, after committing if it completes the job.
        if job.is_complete() {
            let done = std::mem::take(job);
            self.commit(done).await?;
        }
        self.ack(io).await?;
        match length {
            // The peer closed its side to end the file: nothing more can come.
            Length::UntilClose => Err(Stop::Closed),
            Length::Exact(_) => Ok(()),
        }
    }

    async fn ack(&self, io: &mut Io) -> Result<(), Stop> {
        write_all(io, &[ACK], self.idle)
            .await
            .map_err(|e| Stop::Drop(e.to_string()))
    }

    fn recv_stop(&self, e: RecvError) -> Stop {
        match e {
            RecvError::NoTerminator => Stop::Refuse("file length does not match its contents"),
            RecvError::ControlTooLarge => Stop::Refuse("control file too large"),
            RecvError::Store(e) => self.store_stop(e),
            e => Stop::Drop(e.to_string()),
        }
    }

    fn store_stop(&self, e: StoreError) -> Stop {
        match e {
            StoreError::TooLarge { .. } => Stop::Refuse("job exceeds max-job-size"),
            StoreError::QuotaExceeded { .. } => Stop::Refuse("tenant spool quota exceeded"),
            StoreError::DiskFull => Stop::Refuse("spool disk full"),
            e => {
                tracing::error!(tenant = %self.routed.tenant().id, peer = %self.peer, error = %e, "LPD spool write failed");
                Stop::Refuse("storage failed")
            }
        }
    }

    /// Assembles the job's document and commits it durably.
    async fn commit(&self, job: Pending) -> Result<(), Stop> {
        let tenant = self.routed.tenant();
        let store = self.routed.store();
        let Pending {
            control,
            document,
            direct,
            direct_head,
            mut parts,
        } = job;
        let cf = control.expect("a complete job has its control file");
        if cf.files.is_empty() {
            // A control file that prints nothing (only unlink or mail lines).
            tracing::info!(tenant = %tenant.id, peer = %self.peer, "LPD control file prints no data file; no job");
            return Ok(());
        }
        let mut document = match document {
            Some(d) => d,
            None => self
                .routed
                .spool_writer()
                .await
                .map_err(|e| self.store_stop(e))?,
        };
        let mut head = direct_head;
        for f in &cf.files[direct..] {
            let part = parts
                .iter_mut()
                .find(|p| p.name == f.data_file)
                .expect("a complete job has every data file");
            if head.is_empty() {
                head = std::mem::take(&mut part.head);
            }
            let part_doc = part
                .writer
                .document()
                .await
                .map_err(|e| self.store_stop(e))?;
            for _ in 0..f.copies {
                append_document(&part_doc, &mut document)
                    .await
                    .map_err(|e| self.store_stop(e))?;
            }
        }
        // The parts' bytes are in the document now; free their spool space.
        drop(parts);
        let sniffed = sniff(&head);
        let first = &cf.files[0];
        let new = NewJob {
            listener: self.listener.clone(),
            queue: Some(self.queue.clone()),
            peer: self.peer,
            user: cf
                .owner()
                .map(str::to_owned)
                .or(sniffed.user)
                .unwrap_or_else(|| UNKNOWN_USER.to_owned()),
            name: cf
                .name()
                .map(str::to_owned)
                .or(sniffed.name)
                .unwrap_or_default(),
            format: format_of_letter(first.format)
                .or(sniffed.format)
                .map(str::to_owned),
            workflow: self.input.workflow.clone(),
            ipp_job_attributes: None,
            pin: None,
        };
        match store.commit_new(document, new).await {
            Ok(job) => {
                let copies: u32 = cf.files.iter().map(|f| f.copies).sum();
                tracing::info!(tenant = %tenant.id, job = %job.id, peer = %self.peer, queue = %self.queue, user = %job.user, size = job.size, files = cf.files.len(), copies, "LPD job accepted");
                self.shared.dispatcher.submit_committed(store.clone(), job);
                Ok(())
            }
            Err(e) => Err(self.store_stop(e)),
        }
    }
}

/// Appends a document's bytes to a document being written.
async fn append_document(part: &Document, out: &mut SpoolWriter) -> Result<(), StoreError> {
    let mut reader = part.reader().await?;
    while let Some(chunk) = reader.next_chunk().await? {
        out.write(chunk).await?;
    }
    Ok(())
}

/// The tenant's unfinished jobs that arrived on this listener and queue,
/// oldest first. Reads every unfinished record of the tenant: call it
/// inside `block_in_place`, a large queue makes it long blocking work.
fn queue_jobs(routed: &Routed, listener: &ListenerName, queue: &str) -> Vec<Job> {
    let store = routed.store();
    let Ok(ids) = store.active_jobs() else {
        return Vec::new();
    };
    ids.into_iter()
        .filter_map(|id| store.job(id).ok().flatten())
        .filter(|j| {
            !j.state.is_final() && &j.listener == listener && j.queue.as_deref() == Some(queue)
        })
        .collect()
}

/// True when a job matches an entry of a queue-state or remove list: its
/// LPD job number, its full job id, or its owner.
fn matches(job: &Job, item: &str) -> bool {
    match item.parse::<u32>() {
        Ok(n) => job_number(job.id.0) == n || job.id.0 == n,
        Err(_) => job.user == item,
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The classic lpq answer (RFC 1179 5.3, 5.4; layout of BSD `lpq`): rank,
/// owner, job number, files, size; the long form one block per job.
fn queue_state(
    routed: &Routed,
    listener: &ListenerName,
    queue: &str,
    long: bool,
    list: &[String],
) -> String {
    use std::fmt::Write;
    let jobs = queue_jobs(routed, listener, queue);
    let mut out = format!("{queue} is ready\n");
    let mut rank = 0;
    let mut shown = 0;
    for job in &jobs {
        let r = match job.state {
            JobState::Processing => "active".to_owned(),
            JobState::Held => "hold".to_owned(),
            _ => {
                rank += 1;
                ordinal(rank)
            }
        };
        if !list.is_empty() && !list.iter().any(|i| matches(job, i)) {
            continue;
        }
        if shown == MAX_QUEUE_LISTING {
            let _ = writeln!(out, "... and more jobs");
            break;
        }
        if shown == 0 && !long {
            out.push_str(
                "Rank   Owner      Job  Files                                 Total Size\n",
            );
        }
        shown += 1;
        let name = if job.name.is_empty() {
            "(standard input)"
        } else {
            job.name.as_str()
        };
        let num = job_number(job.id.0);
        if long {
            let _ = write!(
                out,
                "\n{}: {:<7}                        [job {:03} {}]\n        {:<40}{} bytes\n",
                job.user,
                r,
                num,
                job.peer.ip(),
                name,
                job.size
            );
        } else {
            let _ = writeln!(
                out,
                "{:<7}{:<11}{:<5}{:<38}{} bytes",
                r,
                cut(&job.user, 10),
                num,
                cut(name, 37),
                job.size
            );
        }
    }
    if shown == 0 {
        out.push_str("no entries\n");
    }
    out
}

fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Remove jobs (RFC 1179 5.5): only the routed tenant's jobs on this queue,
/// only those the agent owns, or all of them when the agent is one of the
/// tenant's admin users. No list: the agent's oldest job (its current one);
/// `-` or `all`: every job the agent may remove.
async fn remove_jobs(
    routed: &Routed,
    shared: &Intake,
    listener: &ListenerName,
    peer: SocketAddr,
    queue: &str,
    agent: &str,
    list: &[String],
) -> String {
    let tenant = routed.tenant();
    let admin = tenant.admins.unix_users.iter().any(|u| u == agent);
    let mayremove: Vec<Job> = tokio::task::block_in_place(|| queue_jobs(routed, listener, queue))
        .into_iter()
        .filter(|j| admin || j.user == agent)
        .collect();
    let selected: Vec<&Job> = if list.is_empty() {
        mayremove.iter().take(1).collect()
    } else if list.iter().any(|i| i == "-" || i == "all") {
        mayremove.iter().collect()
    } else {
        mayremove
            .iter()
            .filter(|j| list.iter().any(|i| matches(j, i)))
            .collect()
    };
    let mut out = String::new();
    for job in selected {
        let note = format!("removed by LPD remove-jobs from {agent} at {}", peer.ip());
        match shared
            .dispatcher
            .cancel(routed.store(), job.id, &note)
            .await
        {
            Ok(true) => {
                tracing::info!(tenant = %tenant.id, job = %job.id, agent, %peer, "LPD job removed");
                out.push_str(&format!(
                    "cfA{:03}{} dequeued\n",
                    job_number(job.id.0),
                    job.peer.ip()
                ));
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(tenant = %tenant.id, job = %job.id, error = %e, "cannot remove job");
                out.push_str(&format!("job {:03}: cannot remove\n", job_number(job.id.0)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    async fn lines_of(data: &[u8], max: usize) -> (Vec<Vec<u8>>, Option<String>) {
        let mut r = tokio::io::BufReader::with_capacity(7, data);
        let mut out = Vec::new();
        loop {
            match read_line(&mut r, max, Duration::from_secs(5)).await {
                Ok(Some(l)) => out.push(l),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn command_reader_splits_lines_and_enforces_its_limit() {
        rt().block_on(async {
            let (lines, err) = lines_of(b"\x02lobby\n\x0212 cfA\r\n", 64).await;
            assert_eq!(lines, vec![b"\x02lobby".to_vec(), b"\x0212 cfA\r".to_vec()]);
            assert!(err.is_none());
            let (lines, err) = lines_of(b"abc\ndef", 64).await;
            assert_eq!(lines, vec![b"abc".to_vec()]);
            assert_eq!(
                err.as_deref(),
                Some("connection closed in the middle of a line")
            );
            let (_, err) = lines_of(&[b'x'; 100], 64).await;
            assert_eq!(err.as_deref(), Some("line longer than 64 bytes"));
        });
    }

    #[test]
    fn ordinals() {
        let r: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 111].map(ordinal).to_vec();
        assert_eq!(
            r,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn command_reader_never_panics_and_returns_bounded_lines(data in proptest::collection::vec(any::<u8>(), 0..4096), max in 1usize..300) {
            let (lines, _) = rt().block_on(lines_of(&data, max));
            prop_assert!(lines.iter().all(|l| l.len() <= max && !l.contains(&b'\n')));
            let total: usize = lines.iter().map(|l| l.len() + 1).sum();
            prop_assert!(total <= data.len());
            for l in &lines {
                let _ = parse_command(l);
                let _ = parse_subcommand(l);
            }
        }
    }
}
