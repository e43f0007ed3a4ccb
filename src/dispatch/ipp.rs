//! Sending jobs to IPP devices: Print-Job with the document streamed from
//! the spool file (chunked), then Get-Job-Attributes until the printer's
//! job ends (RFC 8011 sections 4.2.1 and 4.3.4).
//!
//! Connection failures, `server-error-busy` and other server errors are
//! errors the dispatcher retries with backoff; a `client-error-*` answer to
//! the job, or a job the printer aborted or canceled, is
//! [`SendError::Rejected`] with the printer's words: the job goes to
//! another device or ends. The connection resets if it ends before the
//! printer answered (see [`super::device`]), so a printer never takes a
//! document cut short for a whole one.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::device::{connect, device_text, SendError, WRITE_STALL_TIMEOUT};
use crate::config::DeviceUri;
use crate::store::job::Job;
use crate::wire::ipp::{self as codec, group, op, status, Attribute, Group, Message, Value};
use std::os::fd::AsFd;

/// Largest IPP response we read from a printer.
pub const MAX_RESPONSE: usize = 1 << 20;

/// Longest wait for a printer's response once the request is sent.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause between two Get-Job-Attributes while following a job.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Longest we follow a job after the printer took it; past that the
/// printer has the job, and we say it was delivered.
pub const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

/// Frames queued between the file reader and hyper.
const BODY_QUEUE: usize = 4;

/// A request body fed from a channel: the IPP message, then the document.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// The IPP request of an operation with the usual operation attributes.
fn request(code: u16, id: i32, printer_uri: &str, user: &str) -> Message {
    let mut g = Group::new(group::OPERATION);
    g.push(Attribute::new(
        "attributes-charset",
        Value::charset("utf-8"),
    ));
    g.push(Attribute::new(
        "attributes-natural-language",
        Value::language("en"),
    ));
    g.push(Attribute::new("printer-uri", Value::uri(printer_uri)));
    g.push(Attribute::new(
        "requesting-user-name",
        Value::name(truncate(user, codec::MAX_NAME_LEN)),
    ));
    Message {
        version: (2, 0),
        code,
        request_id: id,
        groups: vec![g],
    }
}

use crate::store::document::Document;
use crate::wire::truncate_str as truncate;

type Sender = hyper::client::conn::http1::SendRequest<ChannelBody>;

/// Sends one IPP request and decodes the response.
async fn exchange(
    sender: &mut Sender,
    host: &str,
    path: &str,
    head: Vec<u8>,
    document: Option<&Document>,
) -> Result<(Message, u64), SendError> {
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    let req = Request::post(path)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/ipp")
        .body(ChannelBody(rx))
        .map_err(|e| SendError::Io(std::io::Error::other(e)))?;
    let feeder = async move {
        let mut sent = 0u64;
        if tx.send(Ok(Bytes::from(head))).await.is_err() {
            return Ok(sent);
        }
        if let Some(doc) = document {
            // A document that fails to read ends the body with an error, so
            // the connection is cut and the printer never sees a short job
            // as a whole one.
            let failed = |tx: mpsc::Sender<_>, e: std::io::Error| async move {
                let _ = tx
                    .send(Err(std::io::Error::new(e.kind(), e.to_string())))
                    .await;
                Err(e)
            };
            let mut reader = match doc.reader().await {
                Ok(r) => r,
                Err(e) => return failed(tx, e).await,
            };
            loop {
                let chunk = match reader.next_chunk().await {
                    Ok(Some(c)) => Bytes::copy_from_slice(c),
                    Ok(None) => break,
                    Err(e) => return failed(tx, e).await,
                };
                sent += chunk.len() as u64;
                // The printer may answer early (a refusal) and stop reading.
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
        }
        Ok::<u64, std::io::Error>(sent)
    };
    let exchange = async {
        let resp = tokio::time::timeout(
            RESPONSE_TIMEOUT.max(WRITE_STALL_TIMEOUT),
            sender.send_request(req),
        )
        .await
        .map_err(|_| SendError::Timeout("IPP response"))?
        .map_err(|e| SendError::Io(std::io::Error::other(e)))?;
        if !resp.status().is_success() {
            return Err(SendError::Io(std::io::Error::other(format!(
                "printer answered HTTP {}",
                resp.status()
            ))));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE);
        let bytes = tokio::time::timeout(RESPONSE_TIMEOUT, body.collect())
            .await
            .map_err(|_| SendError::Timeout("IPP response body"))?
            .map_err(|e| SendError::Io(std::io::Error::other(e.to_string())))?
            .to_bytes();
        codec::decode(&bytes, codec::RESPONSE_LIMITS)
            .map(|(m, _)| m)
            .map_err(|e| SendError::Io(std::io::Error::other(format!("bad IPP response: {e}"))))
    };
    let (sent, msg) = tokio::join!(feeder, exchange);
    let sent = sent.map_err(SendError::from_read)?;
    Ok((msg?, sent))
}

fn status_message(m: &Message) -> String {
    m.attr(group::OPERATION, "status-message")
        .and_then(|a| a.values.first())
        .and_then(Value::as_str)
        .map(device_text)
        .filter(|t| !t.is_empty())
        .map_or_else(
            || format!("status 0x{:04x}", m.code),
            |t| format!("{t} (status 0x{:04x})", m.code),
        )
}

fn job_int(m: &Message, name: &str) -> Option<i32> {
    m.attr(group::JOB, name)?.values.first()?.as_int()
}

/// Sends a job's document to an IPP device (over TLS for `ipps`, checked as `verify` says).
pub async fn send(
    uri: &DeviceUri,
    verify: &crate::config::TlsVerify,
    job: &Job,
    doc: &Document,
) -> Result<u64, SendError> {
    let DeviceUri::Ipp {
        tls,
        host,
        port,
        path: resource,
    } = uri
    else {
        return Err(SendError::Unsupported("non-IPP URI"));
    };
    let resource = if resource.is_empty() { "/" } else { resource };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let printer_uri = format!(
        "{}://{authority}{resource}",
        if *tls { "ipps" } else { "ipp" }
    );
    let stream = connect(host, *port).await?;
    // hyper owns the stream; a second handle on the same socket lifts the
    // reset-on-close once the printer has answered.
    let handle = stream
        .as_fd()
        .try_clone_to_owned()
        .map(socket2::Socket::from)?;
    let hyper_err = |e| SendError::Io(std::io::Error::other(e));
    let (mut sender, conn_task) = if *tls {
        let stream = super::tls::handshake(stream, host, verify).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(hyper_err)?;
        (sender, tokio::spawn(async move { drop(conn.await) }))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(hyper_err)?;
        (sender, tokio::spawn(async move { drop(conn.await) }))
    };
    let result = print_and_follow(&mut sender, &authority, resource, &printer_uri, job, doc).await;
    if result.is_ok() {
        let _ = handle.set_linger(None);
    }
    conn_task.abort();
    result
}

async fn print_and_follow(
    sender: &mut Sender,
    authority: &str,
    resource: &str,
    printer_uri: &str,
    job: &Job,
    doc: &Document,
) -> Result<u64, SendError> {
    let mut req = request(op::PRINT_JOB, 1, printer_uri, &job.user);
    let g = &mut req.groups[0];
    let name = if job.name.is_empty() {
        format!("job {}", job.id)
    } else {
        job.name.clone()
    };
    g.push(Attribute::new(
        "job-name",
        Value::name(truncate(&name, codec::MAX_NAME_LEN)),
    ));
    g.push(Attribute::new(
        "document-format",
        Value::mime(job.format.as_deref().unwrap_or("application/octet-stream")),
    ));
    g.attributes
        .extend(super::mirror::outbound_compression(job));
    req.groups.push(super::mirror::outbound_job_group(job));
    let (mut resp, mut sent) =
        exchange(sender, authority, resource, codec::encode(&req), Some(doc)).await?;
    let mut remote_id = job_int(&resp, "job-id");
    if resp.code == status::OPERATION_NOT_SUPPORTED {
        // A printer without Print-Job takes Create-Job + Send-Document
        // (RFC 8011 sections 4.2.4 and 4.3.1).
        (resp, sent, remote_id) =
            create_and_send(sender, authority, resource, printer_uri, job, &name, doc).await?;
    }
    check(&resp)?;
    let Some(remote_id) = remote_id else {
        // The printer took the job without telling its id: nothing to follow.
        return Ok(sent);
    };
    let started = tokio::time::Instant::now();
    let mut request_id = 2;
    loop {
        if let Some(state) = job_int(
            &resp_state(
                sender,
                authority,
                resource,
                printer_uri,
                job,
                remote_id,
                request_id,
            )
            .await?,
            "job-state",
        ) {
            match state {
                9 => return Ok(sent),
                7 | 8 => {
                    return Err(SendError::Rejected(format!(
                        "printer job {remote_id} ended {}",
                        if state == 7 { "canceled" } else { "aborted" }
                    )))
                }
                _ => {}
            }
        } else {
            return Ok(sent);
        }
        if started.elapsed() > FOLLOW_LIMIT {
            tracing::info!(job = %job.id, remote_id, "printer still has the job; no longer following it");
            return Ok(sent);
        }
        request_id += 1;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Maps a printer's answer to a job submission: busy and temporary errors
/// are retried by the dispatcher; anything else is the printer's refusal.
fn check(resp: &Message) -> Result<(), SendError> {
    match resp.code {
        c if c < 0x0100 => Ok(()),
        status::BUSY
        | status::TEMPORARY_ERROR
        | status::SERVICE_UNAVAILABLE
        | status::NOT_ACCEPTING_JOBS => Err(SendError::Io(std::io::Error::other(format!(
            "printer is busy: {}",
            status_message(resp)
        )))),
        // RFC 8011 section 4.1.6: client errors are the request's own fault
        // and a repeat gets the same answer.
        c if (0x0400..0x0500).contains(&c) => Err(SendError::Rejected(status_message(resp))),
        _ => Err(SendError::Refused(status_message(resp))),
    }
}

/// Create-Job, then the document with Send-Document (`last-document` true).
async fn create_and_send(
    sender: &mut Sender,
    authority: &str,
    resource: &str,
    printer_uri: &str,
    job: &Job,
    name: &str,
    doc: &Document,
) -> Result<(Message, u64, Option<i32>), SendError> {
    sender
        .ready()
        .await
        .map_err(|e| SendError::Io(std::io::Error::other(e)))?;
    let mut create = request(op::CREATE_JOB, 2, printer_uri, &job.user);
    create.groups[0].push(Attribute::new(
        "job-name",
        Value::name(truncate(name, codec::MAX_NAME_LEN)),
    ));
    create.groups.push(super::mirror::outbound_job_group(job));
    let (resp, _) = exchange(sender, authority, resource, codec::encode(&create), None).await?;
    check(&resp)?;
    let Some(id) = job_int(&resp, "job-id") else {
        return Err(SendError::Refused(
            "Create-Job answer without job-id".into(),
        ));
    };
    sender
        .ready()
        .await
        .map_err(|e| SendError::Io(std::io::Error::other(e)))?;
    let mut send = request(op::SEND_DOCUMENT, 3, printer_uri, &job.user);
    let g = &mut send.groups[0];
    g.push(Attribute::new("job-id", Value::Integer(id)));
    g.push(Attribute::new("last-document", Value::Boolean(true)));
    g.push(Attribute::new(
        "document-format",
        Value::mime(job.format.as_deref().unwrap_or("application/octet-stream")),
    ));
    g.attributes
        .extend(super::mirror::outbound_compression(job));
    let (resp, sent) =
        exchange(sender, authority, resource, codec::encode(&send), Some(doc)).await?;
    Ok((resp, sent, Some(id)))
}

async fn resp_state(
    sender: &mut Sender,
    authority: &str,
    resource: &str,
    printer_uri: &str,
    job: &Job,
    remote_id: i32,
    request_id: i32,
) -> Result<Message, SendError> {
    let mut req = request(op::GET_JOB_ATTRIBUTES, request_id, printer_uri, &job.user);
    let g = &mut req.groups[0];
    g.push(Attribute::new("job-id", Value::Integer(remote_id)));
    g.push(Attribute::many(
        "requested-attributes",
        vec![
            Value::keyword("job-state"),
            Value::keyword("job-state-reasons"),
        ],
    ));
    sender
        .ready()
        .await
        .map_err(|e| SendError::Io(std::io::Error::other(e)))?;
    let (resp, _) = exchange(sender, authority, resource, codec::encode(&req), None).await?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_names_are_cut_on_char_boundaries() {
        let s = "é".repeat(200);
        let t = super::truncate(&s, 255);
        assert!(t.len() <= 255 && t.is_char_boundary(t.len()));
    }
}
