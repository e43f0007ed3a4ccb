//! IPP listener and client: not built yet (the connection is reset).

pub mod client;

use super::{reset, Connection};

/// Serves one IPP connection.
pub async fn serve(conn: Connection) {
    conn.shared
        .refused(&conn.listener, conn.peer, "ipp is not built yet");
    reset(conn.stream)
}
