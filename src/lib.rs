//! printroute: a multi-tenant print routing daemon.
//!
//! A job's way through the code, in order:
//!
//! | step | where |
//! | --- | --- |
//! | bind, run, reload, shutdown | [`daemon`] |
//! | accept, route (peer → tenant), admit (connection limit) | [`listener`], [`routing`], [`snapshot`] |
//! | receive (stream to the spool), per protocol | [`protocol::raw`] (+ [`protocol::sniff`]), [`protocol::lpd`], [`protocol::ipp`] |
//! | commit (group commit) and the records | [`store`], [`job`] |
//! | acknowledge | each protocol, after [`store::TenantStore::commit_new`] returns |
//! | dispatch: forward, hold, store | [`workflow`]; sending to devices in [`workflow::forward`] (socket), [`protocol::lpd::client`], [`protocol::ipp::client`] |
//! | finish: records kept for `retention`, then pruned | [`daemon`] (sweep), [`store::TenantStore::prune_finished`] |
//!
//! The config file and its validation live in [`config`] (with [`units`]
//! and [`ids`]); systemd notifications in [`notify`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod daemon;
pub mod export;
pub mod ids;
pub mod job;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod routing;
pub mod snapshot;
pub mod store;
pub mod units;
pub mod workflow;
