//! The Prometheus endpoint, scraped while the load generator runs: its
//! counters add up to what was sent, per tenant.

mod common;

use std::process::Command;

use common::*;

/// The load generator example, built by `cargo test` beside the test binaries.
fn loadgen() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/loadgen");
    assert!(
        p.exists(),
        "{} is missing: cargo test builds the examples",
        p.display()
    );
    p
}

#[test]
fn counters_add_up_to_what_the_load_generator_sent() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let cfg = format!(
        r#"
[global]
data-dir = "{{data}}"
metrics = "127.0.0.1:0"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
device.p = {{ uri = "{}" }}
workflow.w = {{ steps = [{{ step = "forward", devices = ["p"] }}] }}
input = [{{ listener = "raw", workflow = "w" }}]
[tenant.b]
ranges = ["127.0.2.0/24"]
device.p = {{ uri = "{}" }}
workflow.w = {{ steps = [{{ step = "forward", devices = ["p"] }}] }}
input = [{{ listener = "raw", workflow = "w" }}]
"#,
        dev_a.uri(),
        dev_b.uri()
    );
    let d = TestDaemon::start(&cfg);
    let (raw, metrics) = (d.addr("raw"), d.addr("metrics"));
    let run = move |jobs: &str, source: &str| {
        Command::new(loadgen())
            .args([
                "--addr",
                &raw.to_string(),
                "--jobs",
                jobs,
                "--size",
                "3000",
                "--clients",
                "4",
                "--sources",
                source,
                "--max-seconds",
                "60",
            ])
            .output()
            .unwrap()
    };
    let a = std::thread::spawn(move || run("120", "127.0.1.10"));
    let b = std::thread::spawn(move || run("70", "127.0.2.10"));
    // Scrapes during the load only ever see counts go up.
    let mut last = 0.0;
    for _ in 0..5 {
        let now = sample(
            &scrape(metrics),
            "printroute_jobs_total{tenant=\"a\",event=\"accepted\"}",
        );
        assert!(now >= last, "{now} < {last}");
        last = now;
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    for (h, n) in [(a, 120), (b, 70)] {
        let out = h.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && text.starts_with(&format!("{n} jobs of 3000 B acknowledged, 0 failed")),
            "{text}"
        );
    }
    for _ in 0..3 {
        assert_eq!(raw_send("127.0.9.9", raw, b"stranger"), RawOutcome::Refused);
    }
    wait_until("every job delivered", || {
        let m = scrape(metrics);
        (sample(
            &m,
            "printroute_jobs_total{tenant=\"a\",event=\"completed\"}",
        ) == 120.0
            && sample(
                &m,
                "printroute_jobs_total{tenant=\"b\",event=\"completed\"}",
            ) == 70.0)
            .then_some(())
    });
    let m = scrape(metrics);
    for (t, n) in [("a", 120.0), ("b", 70.0)] {
        assert_eq!(
            sample(
                &m,
                &format!("printroute_jobs_total{{tenant=\"{t}\",event=\"accepted\"}}")
            ),
            n,
            "{m}"
        );
        assert_eq!(
            sample(
                &m,
                &format!("printroute_jobs_total{{tenant=\"{t}\",event=\"delivered\"}}")
            ),
            n
        );
        assert_eq!(
            sample(
                &m,
                &format!(
                    "printroute_connections_accepted_total{{tenant=\"{t}\",listener=\"raw\"}}"
                )
            ),
            n
        );
        assert_eq!(
            sample(
                &m,
                &format!("printroute_received_bytes_total{{tenant=\"{t}\",listener=\"raw\"}}")
            ),
            n * 3000.0
        );
        assert_eq!(
            sample(
                &m,
                &format!("printroute_delivered_bytes_total{{tenant=\"{t}\"}}")
            ),
            n * 3000.0
        );
        assert_eq!(
            sample(
                &m,
                &format!("printroute_ack_seconds_count{{tenant=\"{t}\",listener=\"raw\"}}")
            ),
            n
        );
        assert_eq!(
            sample(&m, &format!("printroute_queue_depth{{tenant=\"{t}\"}}")),
            0.0
        );
    }
    assert_eq!(sample(&m, "printroute_connections_refused_total{listener=\"raw\",reason=\"address of no tenant\"}"), 3.0, "{m}");
    assert!(sample(&m, "printroute_config_loaded_time_seconds") > 1.7e9);
}
