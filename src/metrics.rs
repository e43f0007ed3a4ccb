//! Prometheus metrics: counters and histograms per tenant and listener.
//! `admin::metrics` serves them as text exposition at `global.metrics`
//! (`GET /metrics`). This registry uses nothing of the crate: every layer counts.
//!
//! The metrics are one process-wide set ([`get`]): counting is a hash
//! lookup and an atomic add on the job path, and whatever counts (store,
//! listener, dispatcher) needs no handle passed down. The counting methods
//! ([`Metrics::job`], [`Metrics::connection_accepted`],
//! [`Metrics::delivered`]) keep each tenant's counters once looked up, so
//! that an event builds no label strings: a lookup by `&str` under a read
//! lock, then an atomic add.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a tenant on a listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantListener {
    /// Tenant id (`-` when none was routed).
    pub tenant: String,
    /// Listener name.
    pub listener: String,
}

/// Labels of a refused connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refusal {
    /// Listener name.
    pub listener: String,
    /// Why.
    pub reason: String,
}

/// Labels of a job event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobEvent {
    /// Tenant id.
    pub tenant: String,
    /// accepted, refused, delivered, failed (a delivery attempt), expired, completed, aborted, canceled.
    pub event: String,
}

/// Labels of a tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// Tenant id.
    pub tenant: String,
}

/// Labels of a reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadResult {
    /// ok or failed.
    pub result: String,
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// One tenant's counters, taken from their families once (a family
/// never drops a label set, so a kept handle always counts in it).
#[derive(Default)]
struct TenantHandles {
    /// `jobs` by event.
    jobs: HashMap<&'static str, Counter>,
    /// `connections_accepted` by listener.
    accepted: HashMap<Box<str>, Counter>,
    /// `delivered_bytes` and `deliver_seconds`.
    delivered: Option<(Counter, Histogram)>,
    /// `received_bytes` and `ack_seconds` by listener.
    received: HashMap<Box<str>, (Counter, Histogram)>,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    /// Handles by tenant id, filled as tenants count (bounded by the
    /// configured tenants times the fixed event names and listeners).
    handles: RwLock<HashMap<Box<str>, TenantHandles>>,
    /// `connections_refused` handles by listener and reason (bounded by the
    /// configured listeners times the fixed reasons): a flood of refused
    /// connections builds no label strings.
    refusals: RwLock<HashMap<Box<str>, HashMap<&'static str, Counter>>>,
    /// Connections routed to a tenant and admitted.
    pub connections_accepted: Family<TenantListener, Counter>,
    /// Connections refused, by reason.
    pub connections_refused: Family<Refusal, Counter>,
    /// Job events.
    pub jobs: Family<JobEvent, Counter>,
    /// Document bytes committed.
    pub bytes_received: Family<TenantListener, Counter>,
    /// Document bytes delivered to devices.
    pub bytes_delivered: Family<TenantLabel, Counter>,
    /// Time from the start of a receive to its durable commit (the acknowledgement).
    pub ack_seconds: Family<TenantListener, Histogram, fn() -> Histogram>,
    /// Time from commit to delivery.
    pub deliver_seconds: Family<TenantLabel, Histogram, fn() -> Histogram>,
    /// Unfinished jobs, set at scrape.
    pub queue_depth: Family<TenantLabel, Gauge>,
    /// Held jobs, set at scrape.
    pub held_jobs: Family<TenantLabel, Gauge>,
    /// Spool bytes, set at scrape.
    pub spool_bytes: Family<TenantLabel, Gauge>,
    /// Config reloads.
    pub reloads: Family<ReloadResult, Counter>,
    /// When the config in force was loaded (Unix seconds).
    pub config_loaded: Gauge,
    /// 1 while the store's group commits fail (writes are refused), else 0.
    pub store_failing: Gauge,
    /// Group commits that failed since start.
    pub store_failed_commits: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("printroute");
        let m = Metrics {
            refusals: RwLock::default(),
            connections_accepted: Family::default(),
            connections_refused: Family::default(),
            jobs: Family::default(),
            bytes_received: Family::default(),
            bytes_delivered: Family::default(),
            ack_seconds: Family::new_with_constructor(seconds_histogram),
            deliver_seconds: Family::new_with_constructor(seconds_histogram),
            queue_depth: Family::default(),
            held_jobs: Family::default(),
            spool_bytes: Family::default(),
            reloads: Family::default(),
            config_loaded: Gauge::default(),
            store_failing: Gauge::default(),
            store_failed_commits: Gauge::default(),
            registry: Registry::default(),
            handles: RwLock::default(),
        };
        registry.register(
            "connections_accepted",
            "Connections routed to a tenant and admitted",
            m.connections_accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections or jobs refused, by reason",
            m.connections_refused.clone(),
        );
        registry.register("jobs", "Job events per tenant", m.jobs.clone());
        registry.register(
            "received_bytes",
            "Document bytes committed",
            m.bytes_received.clone(),
        );
        registry.register(
            "delivered_bytes",
            "Document bytes delivered to devices",
            m.bytes_delivered.clone(),
        );
        registry.register(
            "ack_seconds",
            "Time from receive start to durable commit",
            m.ack_seconds.clone(),
        );
        registry.register(
            "deliver_seconds",
            "Time from commit to delivery",
            m.deliver_seconds.clone(),
        );
        registry.register("queue_depth", "Unfinished jobs", m.queue_depth.clone());
        registry.register("held_jobs", "Held jobs", m.held_jobs.clone());
        registry.register("spool_bytes", "Bytes in the spool", m.spool_bytes.clone());
        registry.register("config_reloads", "Config reloads", m.reloads.clone());
        registry.register(
            "config_loaded_time_seconds",
            "When the config in force was loaded",
            m.config_loaded.clone(),
        );
        registry.register(
            "store_failing",
            "1 while group commits fail and writes are refused",
            m.store_failing.clone(),
        );
        registry.register(
            "store_failed_commits",
            "Group commits that failed since start",
            m.store_failed_commits.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The handle `get` finds among `tenant`'s, else the one `make` puts
    /// there: only the first event of its kind builds label strings.
    fn handle<H: Clone>(
        &self,
        tenant: &str,
        get: impl Fn(&TenantHandles) -> Option<&H>,
        make: impl FnOnce(&mut TenantHandles) -> H,
    ) -> H {
        let found = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .and_then(&get)
            .cloned();
        if let Some(h) = found {
            return h;
        }
        let mut all = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        let t = all.entry(tenant.into()).or_default();
        match get(t) {
            Some(h) => h.clone(),
            None => make(t),
        }
    }

    /// Counts a job event.
    pub fn job(&self, tenant: &str, event: &'static str) {
        self.handle(
            tenant,
            |t| t.jobs.get(event),
            |t| {
                let c = self
                    .jobs
                    .get_or_create(&JobEvent {
                        tenant: tenant.to_owned(),
                        event: event.to_owned(),
                    })
                    .clone();
                t.jobs.insert(event, c.clone());
                c
            },
        )
        .inc();
    }

    /// Counts a connection refused on `listener` for `reason`.
    pub fn connection_refused(&self, listener: &str, reason: &'static str) {
        let found = self
            .refusals
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(listener)
            .and_then(|r| r.get(reason))
            .cloned();
        let counter = found.unwrap_or_else(|| {
            let mut all = self
                .refusals
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            all.entry(listener.into())
                .or_default()
                .entry(reason)
                .or_insert_with(|| {
                    self.connections_refused
                        .get_or_create(&Refusal {
                            listener: listener.to_owned(),
                            reason: reason.to_owned(),
                        })
                        .clone()
                })
                .clone()
        });
        counter.inc();
    }

    /// Counts a connection routed to `tenant` on `listener` and admitted.
    pub fn connection_accepted(&self, tenant: &str, listener: &str) {
        self.handle(
            tenant,
            |t| t.accepted.get(listener),
            |t| {
                let c = self
                    .connections_accepted
                    .get_or_create(&TenantListener {
                        tenant: tenant.to_owned(),
                        listener: listener.to_owned(),
                    })
                    .clone();
                t.accepted.insert(listener.into(), c.clone());
                c
            },
        )
        .inc();
    }

    /// Counts a job of `bytes` committed from `listener`, acknowledged
    /// `seconds` after its receive began.
    pub fn received(&self, tenant: &str, listener: &str, bytes: u64, seconds: f64) {
        let (got, time) = self.handle(
            tenant,
            |t| t.received.get(listener),
            |t| {
                let label = TenantListener {
                    tenant: tenant.to_owned(),
                    listener: listener.to_owned(),
                };
                let h = (
                    self.bytes_received.get_or_create(&label).clone(),
                    self.ack_seconds.get_or_create(&label).clone(),
                );
                t.received.insert(listener.into(), h.clone());
                h
            },
        );
        got.inc_by(bytes);
        time.observe(seconds);
    }

    /// Counts a delivery of `bytes`, `seconds` after the job's commit.
    pub fn delivered(&self, tenant: &str, bytes: u64, seconds: f64) {
        let (sent, time) = self.handle(
            tenant,
            |t| t.delivered.as_ref(),
            |t| {
                let label = TenantLabel {
                    tenant: tenant.to_owned(),
                };
                let h = (
                    self.bytes_delivered.get_or_create(&label).clone(),
                    self.deliver_seconds.get_or_create(&label).clone(),
                );
                t.delivered = Some(h.clone());
                h
            },
        );
        sent.inc_by(bytes);
        time.observe(seconds);
    }

    /// The text exposition of every metric as it stands (the endpoint sets
    /// the gauges first).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn kept_handles_count_into_the_exposed_families() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.job("acme", "accepted");
        }
        m.job("acme", "delivered");
        m.job("globex", "accepted");
        m.connection_accepted("acme", "raw");
        m.connection_accepted("acme", "raw");
        m.connection_accepted("acme", "lpd");
        m.delivered("acme", 4096, 0.25);
        m.delivered("acme", 100, 0.5);
        m.received("acme", "raw", 4096, 0.01);
        m.received("acme", "raw", 10, 0.02);
        m.received("acme", "lpd", 7, 0.03);
        m.connection_refused("raw", "address of no tenant");
        m.connection_refused("raw", "address of no tenant");
        m.connection_refused("raw", "tenant at max-connections");
        m.connection_refused("lpd", "address of no tenant");
        let text = m.encode();
        let total = |prefix: &str| {
            line(&text, prefix)
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            total(r#"printroute_jobs_total{tenant="acme",event="accepted"}"#),
            "3"
        );
        assert_eq!(
            total(r#"printroute_jobs_total{tenant="acme",event="delivered"}"#),
            "1"
        );
        assert_eq!(
            total(r#"printroute_jobs_total{tenant="globex",event="accepted"}"#),
            "1"
        );
        assert_eq!(
            total(r#"printroute_connections_accepted_total{tenant="acme",listener="raw"}"#),
            "2"
        );
        assert_eq!(
            total(r#"printroute_connections_accepted_total{tenant="acme",listener="lpd"}"#),
            "1"
        );
        assert_eq!(
            total(
                r#"printroute_connections_refused_total{listener="raw",reason="address of no tenant"}"#
            ),
            "2"
        );
        assert_eq!(
            total(
                r#"printroute_connections_refused_total{listener="raw",reason="tenant at max-connections"}"#
            ),
            "1"
        );
        assert_eq!(
            total(
                r#"printroute_connections_refused_total{listener="lpd",reason="address of no tenant"}"#
            ),
            "1"
        );
        assert_eq!(
            total(r#"printroute_delivered_bytes_total{tenant="acme"}"#),
            "4196"
        );
        assert_eq!(
            total(r#"printroute_received_bytes_total{tenant="acme",listener="raw"}"#),
            "4106"
        );
        assert_eq!(
            total(r#"printroute_ack_seconds_count{tenant="acme",listener="lpd"}"#),
            "1"
        );
        assert_eq!(
            total(r#"printroute_deliver_seconds_count{tenant="acme"}"#),
            "2"
        );
        assert_eq!(
            total(r#"printroute_deliver_seconds_sum{tenant="acme"}"#),
            "0.75"
        );
    }
}
