#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader of outside bytes (fuzz/fuzz_targets/): config
# files and --set, WAV/FLAC, IDX, CIFAR-10, PNG/JPEG folders, safetensors checkpoints,
# encoders and recordings, text corpora, the Gymnasium bridge's first line.
#
#   scripts/fuzz.sh                    # every target, 1,000,000 runs each
#   scripts/fuzz.sh --runs 5000 audio  # one target, 5,000 runs
#   scripts/fuzz.sh --seconds 5        # every target, 5 s each (what .ci/run does)
#
# Stable toolchain: libFuzzer (libfuzzer-sys, compiled with the system C++ compiler) and
# rustc's SanitizerCoverage pass, as cargo-fuzz sets it up, without the address
# sanitizer (which needs nightly); debug assertions and overflow checks are on. The
# seed corpora are fuzz/corpus/TARGET (committed); what libFuzzer adds goes to
# fuzz/target/corpus/TARGET, and a crash to fuzz/target/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

limit=(-runs=1000000)
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) limit=(-runs="$2"); shift 2 ;;
        --seconds) limit=(-max_total_time="$2"); shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
all=(config audio idx cifar image_folder checkpoint text bridge)
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# With an explicit --target, RUSTFLAGS reach the targets' code only, not build scripts
# and proc macros (which would not link without libFuzzer's hooks).
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --bins --target "$host"
bin="target/$host/release"

for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t" "target/artifacts/$t"
    echo "== $t (${limit[*]})"
    # -rss_limit_mb: an allocation past 2 GiB is a finding (unbounded sizes).
    "$bin/$t" "target/corpus/$t" "corpus/$t" \
        "${limit[@]}" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
        -artifact_prefix="target/artifacts/$t/" -print_final_stats=1 2>&1 \
        | grep -E "^(#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==|SUMMARY|artifact_prefix|Done)|panicked|ERROR" || true
    if ls "target/artifacts/$t"/* >/dev/null 2>&1; then
        echo "fuzz target '$t' found a failing input: $(ls target/artifacts/$t/*)" >&2
        exit 1
    fi
done
