//! LPD (RFC 1179) input and output.
//!
//! - [`parse`]: daemon commands, receive-job subcommands and control files,
//!   parsed from bytes (pure, no sockets).
//! - [`session`]: the server side of one connection: route, answer each
//!   command, receive jobs into the spool, commit, acknowledge.
//! - [`client`]: the forward step's sender to `lpd://` devices.

pub mod client;
pub mod parse;
pub mod session;

use super::Connection;

/// Serves one LPD connection.
pub async fn serve(conn: Connection) {
    session::serve(conn).await
}
