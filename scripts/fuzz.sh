#!/usr/bin/env bash
# Fuzzes every parser for a bounded time: each cargo-fuzz target in
# fuzz/fuzz_targets runs FUZZ_SECONDS (default 20) seconds under libFuzzer,
# starting from its seeds (fuzz/seeds/<target>, with fuzz/dicts/<target>.dict
# if there is one) and past crashes
# (fuzz/regressions/<target>), copied into fuzz/corpus/<target> (not in git).
#
# cargo-fuzz needs the nightly toolchain: without it this says why it skips
# and exits 0. Exit status 1 when a target crashed (the input is kept under
# fuzz/artifacts/<target>/ and its path printed), or the build failed.
# The last line is always "fuzz: N targets, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
# Largest input per target: past each parser's own limits where that is
# cheap (LPD lines: 4 KiB), small enough to keep runs fast.
declare -A max_len=([lpd_command]=8192 [lpd_control]=8192 [ipp_decode]=8192 [sniff]=4096 [config]=8192)
# The crate forbids unsafe code, so memory errors are not what the targets
# hunt: panics and broken invariants are. Without AddressSanitizer the build
# and every run are about twice as fast.
build_flags=(--sanitizer none)
# Per input: longest run in seconds, most memory in MiB (the parsers hold
# at most a few copies of an input).
run_flags=(-timeout=10 -rss_limit_mb=1024)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly toolchain ('cargo +nightly' fails), which cargo-fuzz needs"
    echo "fuzz: 0 targets, 0 failed (skipped)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
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

failed=0
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    artifacts=fuzz/artifacts/$t/
    mkdir -p "$corpus" "$artifacts"
    for src in fuzz/seeds/"$t" fuzz/regressions/"$t"; do
        [[ -d $src ]] && cp -n "$src"/* "$corpus"/ 2>/dev/null
    done
    log=fuzz/artifacts/$t.log
    # A target's dictionary (tokens of its language), if it has one.
    dict=()
    [[ -f fuzz/dicts/$t.dict ]] && dict=(-dict="fuzz/dicts/$t.dict")
    before=$(ls "$artifacts" | wc -l)
    cargo +nightly fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
        -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" "${run_flags[@]}" "${dict[@]}" \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)
    if ((status != 0)) || (($(ls "$artifacts" | wc -l) > before)); then
        failed=$((failed + 1))
        echo "fuzz: $t FAILED (exit $status); log $log" >&2
        grep -E "panicked at|^SUMMARY|Test unit written to" "$log" | head -n 5 >&2
        ls -t "$artifacts" | head -n 3 | sed "s|^|fuzz: $t input: $artifacts|" >&2
    else
        echo "fuzz: $t ok, ${runs:-?} runs in ${seconds}s"
    fi
done
echo "fuzz: ${#targets[@]} targets, $failed failed"
((failed == 0))
