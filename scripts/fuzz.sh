#!/usr/bin/env bash
# Fuzzes every parser for a bounded time: each cargo-fuzz target in
# fuzz/fuzz_targets runs FUZZ_SECONDS (default 20) seconds under libFuzzer,
# starting from its seeds (fuzz/seeds/<target>) and past crashes
# (fuzz/regressions/<target>), copied into fuzz/corpus/<target> (not in git),
# with fuzz/dicts/<target>.dict if there is one.
#
# cargo-fuzz needs the nightly toolchain: without it this says why it skips
# and exits 0. Exit status 1 when a target crashed (the input is kept under
# fuzz/artifacts/<target>/ and its path printed), or the build failed.
# The last line is always "fuzz: N targets, M failed".
#
#   scripts/fuzz.sh               # build, then fuzz every target
#   scripts/fuzz.sh --build-only  # build the targets only (scripts/test
#                                 # builds while its tests run)
#
# With CARGO_TARGET_DIR set, the fuzz build goes to $CARGO_TARGET_DIR/fuzz
# (nightly, instrumented: never the same artifacts as the stable builds, and
# never waiting for their lock); without it, to fuzz/target.
set -uo pipefail
cd "$(dirname "$0")/.."

build_only=0
[[ ${1:-} == --build-only ]] && build_only=1

seconds=${FUZZ_SECONDS:-20}
# Largest input per target: past each parser's own limits where that is
# cheap (LPD lines: 4 KiB), small enough to keep runs fast.
declare -A max_len=([lpd_command]=8192 [lpd_control]=8192 [ipp_decode]=8192 [sniff]=4096 [config]=8192 [proxy_header]=2048)
# The crate forbids unsafe code, so memory errors are not what the targets
# hunt: panics and broken invariants are; without AddressSanitizer the build
# and the runs are faster. 16 codegen units (cargo-fuzz's default is 1)
# shorten the build of the dependencies.
build_flags=(--sanitizer none --codegen-units 16)
if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    build_flags+=(--target-dir "$CARGO_TARGET_DIR/fuzz")
fi
# Per input: longest run in seconds, most memory in MiB (the parsers hold
# at most a few copies of an input).
run_flags=(-timeout=10 -rss_limit_mb=1024)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly toolchain ('cargo +nightly' fails), which cargo-fuzz needs"
    echo "fuzz: 0 targets, 0 failed (skipped)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    if ! cargo install cargo-fuzz --locked --quiet; then
        echo "fuzz: cannot install cargo-fuzz" >&2
        echo "fuzz: 0 targets, 1 failed"
        exit 1
    fi
fi

mapfile -t targets < <(cargo +nightly fuzz list)
if ! cargo +nightly fuzz build "${build_flags[@]}"; then
    echo "fuzz: the fuzz targets do not build" >&2
    echo "fuzz: ${#targets[@]} targets, ${#targets[@]} failed"
    exit 1
fi
if ((build_only)); then
    echo "fuzz: ${#targets[@]} targets built"
    exit 0
fi

# Runs one target; its libFuzzer log goes to fuzz/artifacts/<target>.log,
# its verdict (first line "ok" or "FAILED") to fuzz/artifacts/<target>.verdict.
run_target() {
    local t=$1
    local corpus=fuzz/corpus/$t artifacts=fuzz/artifacts/$t/
    local log=fuzz/artifacts/$t.log verdict=fuzz/artifacts/$t.verdict
    mkdir -p "$corpus" "$artifacts"
    for src in fuzz/seeds/"$t" fuzz/regressions/"$t"; do
        [[ -d $src ]] && cp -n "$src"/* "$corpus"/ 2>/dev/null
    done
    # A target's dictionary (tokens of its language), if it has one.
    local dict=()
    [[ -f fuzz/dicts/$t.dict ]] && dict=(-dict="fuzz/dicts/$t.dict")
    local before status runs
    before=$(ls "$artifacts" | wc -l)
    cargo +nightly fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
        -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" "${run_flags[@]}" "${dict[@]}" \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)
    if ((status != 0)) || (($(ls "$artifacts" | wc -l) > before)); then
        {
            echo "FAILED"
            echo "fuzz: $t FAILED (exit $status); log $log"
            grep -E "panicked at|^SUMMARY" "$log" | head -n 4
            ls -t "$artifacts" | head -n 3 | sed "s|^|fuzz: $t input: $artifacts|"
        } >"$verdict"
    else
        printf 'ok\nfuzz: %s ok, %s runs in %ss\n' "$t" "${runs:-?}" "$seconds" >"$verdict"
    fi
}

# Targets run side by side, one per core (FUZZ_JOBS), each single-threaded.
jobs_max=${FUZZ_JOBS:-$(nproc)}
for t in "${targets[@]}"; do
    rm -f fuzz/artifacts/"$t".verdict
    while (($(jobs -rp | wc -l) >= jobs_max)); do
        wait -n
    done
    run_target "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
    verdict=fuzz/artifacts/$t.verdict
    if [[ $(head -n 1 "$verdict" 2>/dev/null) == ok ]]; then
        tail -n +2 "$verdict"
    else
        failed=$((failed + 1))
        tail -n +2 "$verdict" >&2 2>/dev/null || echo "fuzz: $t did not report" >&2
    fi
done
echo "fuzz: ${#targets[@]} targets, $failed failed"
((failed == 0))
