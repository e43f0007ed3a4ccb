//! Sending jobs to LPD devices (RFC 1179 section 6): "receive a printer
//! job", the control file, then the one data file, each acknowledged.
//!
//! Retry and failover are the forward step's: a failure here marks the
//! device down and the job is tried again later, as for socket devices.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::device::{connect, copy_document, orderly_close_allowed, SendError, CONNECT_TIMEOUT};
use crate::config::DeviceUri;
use crate::store::document::Document;
use crate::store::job::Job;
use crate::wire::lpd::job_number;
use crate::wire::sniff::clean;

/// Longest wait for an acknowledgement octet. A printer may take a while to
/// accept a large data file (it may spool or check it before answering).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Reserved source ports for LPD clients (RFC 1179 section 3.1: 721-731).
pub const RESERVED_PORTS: std::ops::RangeInclusive<u16> = 721..=731;

/// Host name written into control files when the system's is unknown.
pub const FALLBACK_HOST: &str = "printroute";

/// RFC 1179 section 7 operand limits: `H` and `P` 31 octets, `J` 99, `N` 131.
const MAX_HOST: usize = 31;
const MAX_USER: usize = 31;
const MAX_JOB_NAME: usize = 99;
const MAX_SOURCE_NAME: usize = 131;

/// Sends a job's document to an LPD device; returns the bytes of the document sent.
pub async fn send(uri: &DeviceUri, job: &Job, doc: &Document) -> Result<u64, SendError> {
    let DeviceUri::Lpd {
        host,
        port,
        queue,
        reserved_port,
    } = uri
    else {
        return Err(SendError::Unsupported("lpd (not an lpd:// URI)"));
    };
    let mut stream = if *reserved_port {
        connect_reserved(host, *port).await?
    } else {
        connect(host, *port).await?
    };
    let size = doc.size();
    let me = local_host_name();
    let num = job_number(job.id.0);
    let cf_name = format!("cfA{num:03}{me}");
    let df_name = format!("dfA{num:03}{me}");
    let control = control_file(job, &me, &df_name);

    command(
        &mut stream,
        format!("\x02{queue}\n").as_bytes(),
        "receive job",
        Refusal::Transient,
    )
    .await?;
    command(
        &mut stream,
        format!("\x02{} {cf_name}\n", control.len()).as_bytes(),
        "control file command",
        Refusal::Permanent,
    )
    .await?;
    stream.write_all(control.as_bytes()).await?;
    command(&mut stream, &[0], "control file", Refusal::Permanent).await?;
    command(
        &mut stream,
        format!("\x03{size} {df_name}\n").as_bytes(),
        "data file command",
        Refusal::Permanent,
    )
    .await?;
    let sent = copy_document(doc, &mut stream).await?;
    if sent != size {
        // The spool file changed under us; the declared length is wrong now.
        return Err(SendError::Refused(format!(
            "document is {sent} bytes, declared {size}"
        )));
    }
    command(&mut stream, &[0], "data file", Refusal::Permanent).await?;
    // The device acknowledged the whole job: the end may be orderly now.
    orderly_close_allowed(&stream);
    let _ = stream.shutdown().await;
    Ok(sent)
}

/// The control file (RFC 1179 section 7): host, owner, job name, the
/// document's source name, one print line and its unlink line.
pub fn control_file(job: &Job, host: &str, df_name: &str) -> String {
    let user = field(&job.user, MAX_USER);
    let user = if user.is_empty() { "anonymous" } else { user };
    let name = field(&job.name, MAX_JOB_NAME);
    // `l` prints the data as it is (control characters kept): right for
    // PDLs; plain text gets `f`, so the printer formats it.
    let letter = match job.format.as_deref() {
        Some("text/plain") => 'f',
        _ => 'l',
    };
    let mut cf = format!("H{}\nP{user}\n", field(host, MAX_HOST));
    if !name.is_empty() {
        cf.push_str(&format!(
            "J{name}\nN{}\n",
            field(&job.name, MAX_SOURCE_NAME)
        ));
    }
    cf.push_str(&format!("{letter}{df_name}\nU{df_name}\n"));
    cf
}

/// A control file operand: printable (a newline would inject a line), at most `max` bytes.
fn field(s: &str, max: usize) -> &str {
    // `clean` already removed control characters when the job was received;
    // cut at the first one left anyway and at `max` bytes on a char boundary.
    let s = s.split(|c: char| c.is_control()).next().unwrap_or_default();
    crate::wire::truncate_str(s, max)
}

/// This machine's host name for control and data file names (RFC 1179 6.2).
fn local_host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = clean(&name);
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(MAX_HOST)
        .collect();
    if name.is_empty() {
        FALLBACK_HOST.to_owned()
    } else {
        name
    }
}

/// Writes a command (or a file's closing octet) and reads its acknowledgement.
/// Whether a negative acknowledgement ends the job on this device: the
/// job's own control and data files refused are (RFC 1179 gives no reason
/// to expect another answer), a queue that refuses to receive is not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Try again later.
    Transient,
    /// The device will not take this job.
    Permanent,
}

async fn command(
    stream: &mut TcpStream,
    bytes: &[u8],
    what: &str,
    refusal: Refusal,
) -> Result<(), SendError> {
    tokio::time::timeout(ACK_TIMEOUT, stream.write_all(bytes))
        .await
        .map_err(|_| SendError::Timeout("write"))??;
    let mut ack = [0u8; 1];
    let n = tokio::time::timeout(ACK_TIMEOUT, stream.read(&mut ack))
        .await
        .map_err(|_| SendError::Timeout("acknowledgement"))??;
    match (n, ack[0]) {
        (0, _) => Err(SendError::Refused(format!(
            "connection closed instead of acknowledging the {what}"
        ))),
        (_, 0) => Ok(()),
        (_, b) => {
            let why = format!("negative acknowledgement {b:#04x} to the {what}");
            Err(match refusal {
                Refusal::Transient => SendError::Refused(why),
                Refusal::Permanent => SendError::Rejected(why),
            })
        }
    }
}

/// Connects from a reserved source port (RFC 1179 3.1), as BSD `lpd`
/// servers that check the port require; needs root or CAP_NET_BIND_SERVICE.
async fn connect_reserved(host: &str, port: u16) -> Result<TcpStream, SendError> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| SendError::Timeout("name lookup"))??
            .collect();
    let mut last: Option<std::io::Error> = None;
    for addr in addrs {
        for local in RESERVED_PORTS {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            let bind_to = SocketAddr::new(
                if addr.is_ipv4() {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                },
                local,
            );
            // As BSD's rresvport callers do: a port whose earlier connections
            // sit in TIME_WAIT can be bound again (connect then fails only
            // for the very same address pair, and the next port is tried).
            // Without it the eleven ports carry eleven jobs a minute.
            socket.set_reuseaddr(true)?;
            // Reset-on-close from the handshake on (see `device::connect`).
            socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO))?;
            if let Err(e) = socket.bind(bind_to) {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    return Err(SendError::Io(std::io::Error::new(
                        e.kind(),
                        "reserved-port=true needs root or CAP_NET_BIND_SERVICE",
                    )));
                }
                last = Some(e);
                continue;
            }
            match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr)).await {
                Ok(Ok(s)) => {
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                // The port pair is still in TIME_WAIT from an earlier job: next port.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::AddrNotAvailable => last = Some(e),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(SendError::Timeout("connect")),
            }
        }
    }
    Err(SendError::Io(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no free reserved source port",
        )
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ids::{JobId, ListenerName, TenantId};
    use crate::store::job::JobState;

    fn job(user: &str, name: &str, format: Option<&str>) -> Job {
        Job {
            tenant: TenantId::parse("a").unwrap(),
            id: JobId(1042),
            listener: ListenerName("lpd".into()),
            queue: Some("q".into()),
            peer: "127.0.0.1:1".parse().unwrap(),
            user: user.into(),
            name: name.into(),
            format: format.map(str::to_owned),
            size: 3,
            sha256: String::new(),
            document_sealed: false,
            workflow: "w".into(),
            step: 0,
            state: JobState::Processing,
            created_ms: 0,
            hold_until_ms: None,
            step_started_ms: 0,
            delivering: None,
            history: Vec::new(),
            history_dropped: 0,
            ipp_job_attributes: None,
            pin: None,
        }
    }

    #[test]
    fn control_file_names_owner_job_and_data_file() {
        let cf = control_file(&job("alice", "report", None), "host", "dfA042host");
        assert_eq!(
            cf,
            "Hhost\nPalice\nJreport\nNreport\nldfA042host\nUdfA042host\n"
        );
        let parsed = crate::wire::lpd::parse_control_file(cf.as_bytes()).unwrap();
        assert_eq!(parsed.owner(), Some("alice"));
        assert_eq!(parsed.name(), Some("report"));
        assert_eq!(parsed.files.len(), 1);
    }

    #[test]
    fn control_file_cannot_be_injected_and_respects_rfc_lengths() {
        let cf = control_file(
            &job("eve\nPmallory", &"x".repeat(300), Some("text/plain")),
            "h",
            "dfA042h",
        );
        assert!(cf.starts_with("Hh\nPeve\nJ"), "{cf}");
        assert!(cf.lines().all(|l| l.len() <= 1 + MAX_SOURCE_NAME));
        assert!(cf.contains("\nfdfA042h\n"));
        assert_eq!(
            control_file(&job("", "", None), "h", "d"),
            "Hh\nPanonymous\nld\nUd\n"
        );
    }
}
