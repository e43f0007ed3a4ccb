//! printroute: a multi-tenant print routing daemon.
//!
//! The source tree follows a job. Each folder is one layer and imports only
//! from the layers below it (`tests/layers.rs` fails on an upward import or
//! an import cycle):
//!
//! | layer | a job's step | where |
//! | --- | --- | --- |
//! | 8 | the binary: CLI, bind, run | `main.rs` |
//! | 7 | start, reload, stop, sd_notify: wires the layers below | [`daemon`] |
//! | 6 | administration: control socket, metrics endpoint, exports, tokens, admin API and portal | [`admin`] |
//! | 5 | accept, PROXY, route, admit, receive per protocol, acknowledge | [`intake`] |
//! | 4 | dispatch: forward (socket, lpd, ipp devices), hold, store to a folder | [`dispatch`] |
//! | 3 | the snapshot a connection takes at accept: config, routing, stores, admission counters | [`snapshot`] |
//! | 2 | commit (group commit), the records and the spool; finish (prune) | [`store`] |
//! | 1 | the config file: model, loading, validation, units, ids | [`config`] |
//! | 0 | address → tenant (longest-prefix match) | [`routing`] |
//! | 0 | wire formats, pure: IPP, LPD, PROXY, PJL/PS sniffing | [`wire`] |
//! | 0 | the process's metrics registry | [`metrics`] |
// One reviewed exception: `dispatch::device::unacknowledged` asks the kernel
// (SIOCOUTQ) how many bytes a device has not acknowledged; no safe wrapper exists.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod intake;
pub mod metrics;
pub mod routing;
pub mod snapshot;
pub mod store;
pub mod wire;
