#!/usr/bin/env bash
# What sealing costs: the figures of scripts/bench-load.sh (RAW only:
# 10,000 jobs of 4 KiB from 8 clients of two tenants; one 1 GiB job against
# socat writing into a synced file) for the daemon before spool documents
# were sealed (BASE, a git revision) and for this tree, alternating, ROUNDS
# times each, in one run. The base is built in a temporary worktree.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-66d2c66}
ROUNDS=${ROUNDS:-2}
# BASE_BIN: a daemon already built from BASE (skips the build).
base_bin=${BASE_BIN:-}
if [[ -z $base_bin ]]; then
    base_tree=$(mktemp -d /var/tmp/printroute-base.XXXXXX)
    trap 'git worktree remove --force "$base_tree" 2>/dev/null || rm -rf "$base_tree"' EXIT
    git worktree add -q --detach "$base_tree" "$BASE"
    mkdir -p target/bench-base
    base_target=$(cd target/bench-base && pwd)
    echo "building $BASE (base)"
    (cd "$base_tree" && CARGO_TARGET_DIR=$base_target cargo build --release --quiet --bins)
    base_bin=$base_target/release/printroute
fi
cargo build --release --quiet --bins --examples
for r in $(seq "$ROUNDS"); do
    echo "######## round $r: base $BASE (documents plain)"
    PRINTROUTE_BIN=$base_bin RAW_ONLY=1 scripts/bench-load.sh
    echo "######## round $r: this tree (documents sealed)"
    RAW_ONLY=1 scripts/bench-load.sh
done
