//! `wire::sniff` on the heads a RAW job hands it: the load generator's
//! binary pattern (no PJL, a newline every few hundred bytes) of 4 KiB and
//! of the full SNIFF_LIMIT, and a PJL-headed PostScript job.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use printroute::wire::sniff::{sniff, SNIFF_LIMIT};

/// The bytes `examples/loadgen` sends.
fn loadgen_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn pjl_job(n: usize) -> Vec<u8> {
    let mut v = b"\x1b%-12345X@PJL JOB NAME = \"Quarterly report\"\r\n@PJL SET USERNAME = \"alice\"\r\n@PJL ENTER LANGUAGE = POSTSCRIPT\r\n%!PS-Adobe-3.0\n%%Title: (report)\n".to_vec();
    while v.len() < n {
        v.extend_from_slice(b"0 0 moveto 72 72 lineto stroke\n");
    }
    v.truncate(n);
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sniff");
    for (name, head) in [
        ("loadgen-4KiB", loadgen_pattern(4096)),
        ("loadgen-16KiB", loadgen_pattern(SNIFF_LIMIT)),
        ("pjl-ps-16KiB", pjl_job(SNIFF_LIMIT)),
    ] {
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| b.iter(|| sniff(black_box(&head))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
