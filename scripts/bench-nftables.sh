#!/usr/bin/env bash
# The nftables ruleset at scale: `export nftables` for TENANTS (default
# 10,000) tenants with RANGES (default 1,000,000) ranges, then `nft -f` in a
# network namespace made for it (never the root namespace): file size,
# export time, load time and nft's peak memory. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${TENANTS:-10000}
RANGES=${RANGES:-1000000}
work=$(mktemp -d /var/tmp/printroute-nft.XXXXXX)
ns=printroute-bench-nft-$$
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet --bins --examples
target/release/examples/gen_tenants "$TENANTS" "$RANGES" "$work/data" | sed "s/127.0.0.1:0/0.0.0.0:9100/" > "$work/big.toml"
/usr/bin/time -f "export: %e s, %M KiB peak" target/release/printroute export nftables --config "$work/big.toml" --out "$work/big.nft"
echo "ruleset: $(du -h "$work/big.nft" | cut -f1)"
ip netns add "$ns"
/usr/bin/time -f "nft -f (first load): %e s, %M KiB peak" ip netns exec "$ns" nft -f "$work/big.nft"
/usr/bin/time -f "nft -f (replacing it): %e s, %M KiB peak" ip netns exec "$ns" nft -f "$work/big.nft"
