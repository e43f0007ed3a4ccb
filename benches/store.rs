//! Store figures: provisioning 10,000 tenants on a new store, their first
//! jobs (which create their collections), reopening the store with 10,000
//! collections, and group-commit throughput and latency with 32 concurrent
//! writers. One-shot measurements (each takes seconds), printed as a table.
//!
//! `cargo bench --bench store [-- TENANTS JOBS]`; the data lives in a temp dir
//! under `BENCH_DIR` (default: the system's); with `BENCH_KEEP=1` it is kept
//! and its path printed, e.g. to start the daemon on a store with 10,000
//! collections (`gen_tenants` names its tenants the same).

use std::sync::Arc;
use std::time::{Duration, Instant};

use printroute::config::ids::{ListenerName, TenantId};
use printroute::config::SpoolSync;
use printroute::store::job::NewJob;
use printroute::store::Store;

/// Concurrent committing tasks.
const WRITERS: usize = 32;
/// Document size of each committed job.
const DOC_SIZE: usize = 4096;
/// sled page cache for the bench.
const CACHE: u64 = 64 << 20;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let tenants: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let jobs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let base = std::env::var("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base).unwrap();
    let ids: Vec<TenantId> = (0..tenants)
        .map(|i| TenantId::parse(&format!("t{i:05}")).unwrap())
        .collect();

    let t0 = Instant::now();
    let store = Store::open(dir.path(), CACHE).unwrap();
    let handles = store.provision(&ids).unwrap();
    let create = t0.elapsed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        for t in &handles {
            let mut wr = t.spool_writer(1 << 30, 1 << 40).await.unwrap();
            wr.write(b"first").await.unwrap();
            t.commit_new(wr, new_job()).await.unwrap();
        }
    });
    let first_jobs = t0.elapsed();
    drop(handles);
    store.close().unwrap();
    drop(store);
    // SPOOL_SYNC=filesystem measures one syncfs per group instead of per-file syncs.
    let sync = match std::env::var("SPOOL_SYNC").as_deref() {
        Ok("filesystem") => SpoolSync::Filesystem,
        _ => SpoolSync::Files,
    };
    let t0 = Instant::now();
    let store = Store::open_with(dir.path(), CACHE, sync).unwrap();
    let handles = store.provision(&ids).unwrap();
    let reopen = t0.elapsed();
    let size = store.size_on_disk().unwrap();
    println!(
        "tenants {tenants}: provision on a new store {create:.2?}; first job of each (creates its collection) {first_jobs:.2?}; reopen with {tenants} collections {reopen:.2?}; database size {:.1} MiB",
        size as f64 / (1 << 20) as f64
    );

    let doc = vec![b'x'; DOC_SIZE];
    let handles = Arc::new(handles);
    let (elapsed, mut lat) = rt.block_on(async {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let handles = handles.clone();
            let doc = doc.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for n in 0..jobs / WRITERS {
                    let t = &handles[(w * 7919 + n) % handles.len()];
                    let start = Instant::now();
                    let mut wr = t.spool_writer(1 << 30, 1 << 40).await.unwrap();
                    wr.write(&doc).await.unwrap();
                    t.commit_new(wr, new_job()).await.unwrap();
                    lat.push(start.elapsed());
                }
                lat
            }));
        }
        let mut all: Vec<Duration> = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (t0.elapsed(), all)
    });
    lat.sort();
    let n = lat.len();
    println!(
        "group commit ({sync:?}), {WRITERS} writers, {n} jobs of {DOC_SIZE} B: {:.0} jobs/s, p50 {:.2?}, p99 {:.2?}",
        n as f64 / elapsed.as_secs_f64(),
        lat[n / 2],
        lat[n * 99 / 100]
    );
    store.close().unwrap();
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("kept the store in {}", dir.keep().display());
    }
}

fn new_job() -> NewJob {
    NewJob {
        listener: ListenerName("raw".into()),
        queue: None,
        peer: "127.0.0.1:1".parse().unwrap(),
        user: "bench".into(),
        name: "bench".into(),
        format: None,
        workflow: "w".into(),
        ipp_job_attributes: None,
        pin: None,
    }
}
