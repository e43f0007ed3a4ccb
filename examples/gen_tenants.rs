//! Writes a config with many tenants and ranges, for scale benchmarks and
//! tests: `cargo run --release --example gen_tenants -- TENANTS RANGES DATA_DIR [--loopback] > big.toml`.
//!
//! With `--loopback`, one more tenant, `lo`, owns 127.0.0.0/8, so that
//! clients on this machine reach a tenant (benchmarks that connect).
//!
//! Tenant `tNNNNN` gets RANGES/TENANTS ranges: /28 prefixes carved from
//! 10.0.0.0/8 in order (never overlapping), one in ten of them an IPv6 /64
//! under fd00::/16 instead; one RAW input forwarding to a device inside its
//! first range. The listener binds 127.0.0.1:0. Tenants and ranges per
//! tenant stay below 65,536 (each is one group of the IPv6 prefix).

use std::fmt::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tenants: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let ranges: u32 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let data = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "/var/tmp/printroute-scale".into());
    let loopback = args.iter().any(|a| a == "--loopback");
    let per = (ranges / tenants).max(1);
    assert!(
        u64::from(tenants) * u64::from(per) <= 1 << 20,
        "10.0.0.0/8 holds 2^20 /28 ranges"
    );
    assert!(
        tenants <= 0xffff && per <= 0xffff,
        "at most 65,535 tenants and ranges per tenant"
    );
    let mut out = String::with_capacity(ranges as usize * 24);
    let _ = writeln!(out, "[global]\ndata-dir = \"{data}\"\n\n[[listener]]\nname = \"raw\"\nprotocol = \"raw\"\nbind = [\"127.0.0.1:0\"]\n");
    let mut n: u32 = 0; // index of the next /28
    for t in 0..tenants {
        let _ = write!(out, "[tenant.t{t:05}]\nranges = [");
        let mut first = None;
        for r in 0..per {
            let sep = if r == 0 { "" } else { ", " };
            if r % 10 == 9 {
                let _ = write!(out, "{sep}\"fd00:{t:x}:{r:x}::/64\"");
            } else {
                let base = (10u32 << 24) | (n << 4);
                let a = std::net::Ipv4Addr::from(base);
                first.get_or_insert(base + 1);
                let _ = write!(out, "{sep}\"{a}/28\"");
                n += 1;
            }
        }
        let dev = std::net::Ipv4Addr::from(first.unwrap_or(0));
        let _ = write!(
            out,
            "]\ndevice.p = {{ uri = \"socket://{dev}:9100\" }}\nworkflow.w = {{ steps = [{{ step = \"forward\", devices = [\"p\"] }}] }}\ninput = [{{ listener = \"raw\", workflow = \"w\" }}]\n\n"
        );
    }
    if loopback {
        let _ = write!(
            out,
            "[tenant.lo]\nranges = [\"127.0.0.0/8\"]\ndevice.p = {{ uri = \"socket://127.0.0.1:9\" }}\nworkflow.w = {{ steps = [{{ step = \"forward\", devices = [\"p\"] }}] }}\ninput = [{{ listener = \"raw\", workflow = \"w\" }}]\n"
        );
    }
    print!("{out}");
}
