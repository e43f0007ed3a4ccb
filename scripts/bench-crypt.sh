#!/usr/bin/env bash
# What sealing costs: the RAW figures of scripts/bench-small.sh (JOBS jobs
# of 4 KiB from 16 connections of two tenants, with the daemon's CPU per
# job; one 1 GiB job against socat writing into a synced file) for the
# daemon before spool documents were sealed (BASE, a git revision) and for
# this tree, alternating, ROUNDS times each, in one run. The base is built
# in a temporary worktree.
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
export JOBS=${JOBS:-10000}
for r in $(seq "$ROUNDS"); do
    echo "######## round $r: base $BASE (documents plain)"
    BIN=$base_bin ONLY=raw scripts/bench-small.sh
    BIN=$base_bin ONLY=big scripts/bench-small.sh
    echo "######## round $r: this tree (documents sealed)"
    ONLY=raw scripts/bench-small.sh
    ONLY=big scripts/bench-small.sh
done
