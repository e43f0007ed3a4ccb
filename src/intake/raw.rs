//! RAW (port 9100 style) input: the whole stream is one document.
//!
//! The sender learns of success only by our orderly close, which comes after
//! the job is committed durably; any failure (no tenant, no input, limits,
//! timeouts, storage) ends the connection with a reset instead.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{reset, Admission, Connection};
use crate::store::job::NewJob;
use crate::store::StoreError;
use crate::wire::sniff::{sniff, SNIFF_LIMIT};

/// Read buffer of a RAW connection that has shown it is bigger than
/// [`FIRST_READ_BUFFER`].
pub const READ_BUFFER: usize = 256 << 10;

/// Read buffer a RAW connection starts with. Most jobs are small: a
/// buffer of [`READ_BUFFER`] for each (zeroed, and given back to the
/// system after each job) cost more than the rest of the connection's
/// work in the profile; a stream that fills this one grows it to
/// [`READ_BUFFER`].
pub const FIRST_READ_BUFFER: usize = 16 << 10;

/// User recorded when the stream names none.
pub const UNKNOWN_USER: &str = "anonymous";

/// Serves one RAW connection.
pub async fn serve(conn: Connection) {
    let Connection {
        mut stream,
        peer,
        listener,
        admission,
        shared,
    } = conn;
    // Until the job is committed, any end of this socket must be a reset,
    // also when the process dies (kill -9): the kernel closes a dead
    // process's sockets, and with an empty receive buffer (the sender's
    // data all read, commit still under way, or the sender not started yet)
    // that close is an orderly FIN, which the sender takes as the
    // acknowledgement of a job never kept. SO_LINGER 0 makes every close a
    // reset; the socket has it from accept (the listening socket's, see
    // `listener::bind_listener`), and it is lifted only after commit.
    let (routed, _slot) = match admission {
        Admission::Admitted { routed, slot } => (routed, slot),
        Admission::NoTenant | Admission::OverLimit(_) => return reset(stream),
    };
    let tenant = routed.tenant();
    let Some(input) = routed.input(&listener, None) else {
        shared.refused(&listener, peer, "tenant has no input on this listener");
        return reset(stream);
    };
    let limits = &tenant.limits;
    let store = routed.store();
    // A connection costs no read buffer and no spool file until its first
    // byte: print servers hold connections open long before they send.
    // (`readable()` is no use here: tokio may report a new socket readable
    // before any byte came; a peek waits for one, or for the end.)
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.idle_timeout, stream.peek(&mut first)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::info!(tenant = %tenant.id, %peer, error = %e, "RAW receive broke off; nothing kept");
            return reset(stream);
        }
        Err(_) => {
            tracing::info!(tenant = %tenant.id, %peer, timeout = ?limits.idle_timeout, "RAW peer idle; nothing kept");
            return reset(stream);
        }
    }
    // The receive slot and the spool file are taken with the first bytes:
    // a connection that sends nothing (a probe) is not a job being received.
    let mut receiving = None;
    let mut head: Vec<u8> = Vec::new();
    // Read into spare capacity (`read_buf`): nothing is zeroed first.
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ_BUFFER);
    loop {
        if buf.len() == buf.capacity() && buf.capacity() < READ_BUFFER {
            buf.reserve_exact(READ_BUFFER - buf.len());
        }
        buf.clear();
        let n = match tokio::time::timeout(limits.idle_timeout, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::info!(tenant = %tenant.id, %peer, error = %e, "RAW receive broke off; nothing kept");
                return reset(stream);
            }
            Err(_) => {
                tracing::info!(tenant = %tenant.id, %peer, timeout = ?limits.idle_timeout, "RAW peer idle; nothing kept");
                return reset(stream);
            }
        };
        if n == 0 {
            break;
        }
        if receiving.is_none() {
            // At max-receives after a bounded wait: a reset is RAW's "busy".
            let Some(slot) = routed.receive_slot().await else {
                shared.refused(&listener, peer, "tenant at max-receives");
                return reset(stream);
            };
            match routed.spool_writer().await {
                Ok(w) => receiving = Some((slot, w)),
                Err(e) => {
                    tracing::error!(tenant = %tenant.id, %peer, error = %e, "cannot open spool file");
                    return reset(stream);
                }
            }
        }
        let (_, writer) = receiving.as_mut().expect("receive just started");
        if head.len() < SNIFF_LIMIT {
            let take = n.min(SNIFF_LIMIT - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        if let Err(e) = writer.write(&buf[..n]).await {
            match e {
                StoreError::TooLarge { .. }
                | StoreError::QuotaExceeded { .. }
                | StoreError::DiskFull => {
                    shared.refused(&listener, peer, "job refused by a tenant limit");
                    tracing::info!(tenant = %tenant.id, %peer, error = %e, "RAW job refused");
                }
                e => {
                    tracing::error!(tenant = %tenant.id, %peer, error = %e, "cannot write spool file")
                }
            }
            return reset(stream);
        }
    }
    let Some((_receive_slot, writer)) = receiving else {
        // A connection that sends nothing (a health check, a port probe) is not a job.
        tracing::debug!(tenant = %tenant.id, %peer, "RAW connection closed without data; no job");
        let _ = socket2::SockRef::from(&stream).set_linger(None);
        let _ = stream.shutdown().await;
        return;
    };
    let s = sniff(&head);
    let new = NewJob {
        listener: listener.clone(),
        queue: None,
        peer,
        user: s.user.unwrap_or_else(|| UNKNOWN_USER.to_owned()),
        name: s.name.unwrap_or_default(),
        format: s.format.map(str::to_owned),
        workflow: input.workflow.clone(),
        ipp_job_attributes: None,
        pin: None,
    };
    match store.commit_new(writer, new).await {
        Ok(job) => {
            tracing::info!(tenant = %tenant.id, job = %job.id, %peer, user = %job.user, size = job.size, "RAW job accepted");
            shared.dispatcher.submit_committed(store.clone(), job);
            // The orderly close is the acknowledgement (linger lifted first,
            // so the close after it is orderly too).
            let _ = socket2::SockRef::from(&stream).set_linger(None);
            let _ = stream.shutdown().await;
        }
        Err(e) => {
            tracing::error!(tenant = %tenant.id, %peer, error = %e, "cannot commit RAW job");
            reset(stream);
        }
    }
}
