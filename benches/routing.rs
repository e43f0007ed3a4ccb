//! Route lookup and table build: the interval table (used by the daemon)
//! against the prefix trie, with 1k / 100k / 1M random non-overlapping IPv4
//! prefixes and 100k IPv6 prefixes.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use printroute::routing::{find_overlaps, RoutingTable, TrieTable};

/// Queries per measured iteration.
const BATCH: usize = 1024;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `n` random non-overlapping prefixes (v4: /20../32, v6: /32../64).
pub fn random_prefixes(n: usize, v6: bool, seed: u64) -> Vec<(IpNet, u32)> {
    let mut rng = Rng(seed);
    let mut out: Vec<IpNet> = Vec::with_capacity(n);
    while out.len() < n {
        let need = (n - out.len()) * 13 / 10 + 16;
        for _ in 0..need {
            let r = rng.next();
            let net = if v6 {
                let len = 32 + (r % 33) as u8;
                let a = ((rng.next() as u128) << 64) | rng.next() as u128;
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc())
            } else {
                let len = 20 + (r % 13) as u8;
                IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from((r >> 32) as u32), len)
                        .unwrap()
                        .trunc(),
                )
            };
            out.push(net);
        }
        let mut drop: Vec<usize> = find_overlaps(&out).into_iter().map(|(_, b)| b).collect();
        drop.sort_unstable();
        drop.dedup();
        for i in drop.into_iter().rev() {
            out.swap_remove(i);
        }
        // Removing the contained one of each pair can leave none overlapping; repeat until clean.
        while !find_overlaps(&out).is_empty() {
            let mut d: Vec<usize> = find_overlaps(&out).into_iter().map(|(_, b)| b).collect();
            d.sort_unstable();
            d.dedup();
            for i in d.into_iter().rev() {
                out.swap_remove(i);
            }
        }
    }
    out.truncate(n);
    out.into_iter()
        .enumerate()
        .map(|(i, p)| (p, (i % 10_000) as u32))
        .collect()
}

/// Queries: half inside a known prefix, half anywhere.
fn queries(entries: &[(IpNet, u32)], v6: bool, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng(seed);
    (0..BATCH)
        .map(|i| {
            if i % 2 == 0 {
                let (net, _) = entries[(rng.next() as usize) % entries.len()];
                net.network()
            } else if v6 {
                IpAddr::V6(Ipv6Addr::from(
                    ((rng.next() as u128) << 64) | rng.next() as u128,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("route-lookup");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, n, v6) in [
        ("v4-1k", 1_000, false),
        ("v4-100k", 100_000, false),
        ("v4-1M", 1_000_000, false),
        ("v6-100k", 100_000, true),
    ] {
        let entries = random_prefixes(n, v6, 0x9e37_79b9 + n as u64);
        let t0 = Instant::now();
        let table = RoutingTable::build(&entries);
        let table_build = t0.elapsed();
        let t0 = Instant::now();
        let trie = TrieTable::build(&entries);
        let trie_build = t0.elapsed();
        eprintln!("build {label}: interval table {table_build:?}, prefix trie {trie_build:?}");
        for (kind, miss) in [("tenant", false), ("scan", true)] {
            let q = queries(&entries, miss, 42);
            let label = format!("{label}-{kind}");
            g.bench_with_input(BenchmarkId::new("interval-table", &label), &q, |b, q| {
                b.iter(|| {
                    let mut hits = 0u32;
                    for a in q {
                        hits += table.lookup(black_box(*a)).is_some() as u32;
                    }
                    hits
                })
            });
            g.bench_with_input(BenchmarkId::new("prefix-trie", &label), &q, |b, q| {
                b.iter(|| {
                    let mut hits = 0u32;
                    for a in q {
                        hits += trie.route(black_box(*a)).is_some() as u32;
                    }
                    hits
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
