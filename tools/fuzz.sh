#!/usr/bin/env bash
# Fuzzes liverseg's input surfaces with libFuzzer (Sources/LiversegFuzz): builds the
# harness with -sanitize=fuzzer,address in its own scratch path (release -O: Swift's
# overflow and bounds checks stay on), writes synthetic seed corpora, then runs each target.
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 600 s each, all targets
#   FUZZ_RUNS=1000000 tools/fuzz.sh 3600                 stop each target after 10^6 inputs
# CI runs `tools/fuzz.sh 10`. Corpora and crash files go to .build-fuzz/ (git-ignored);
# a crash stops the script with libFuzzer's report and the crashing input's path. Per
# target it prints the executions done. RSS is limited to 3 GiB, so an input may inflate to
# hundreds of MiB (decompression bombs are reachable) without the harness being killed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(nifti nrrd metaimage model crf evaluate)
scratch=.build-fuzz
LIVERSEG_FUZZ_BUILD=1 swift build -c release --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address -Xswiftc -DLIVERSEG_FUZZ \
    --product LiversegFuzz
fuzzer="$scratch/release/LiversegFuzz"
python3 tools/fuzz_seeds.py "$scratch/seeds" > /dev/null
for target in "${targets[@]}"; do
    corpus="$scratch/corpus/$target" artifacts="$scratch/crashes/$target/"
    mkdir -p "$corpus" "$artifacts"
    log="$scratch/$target.log"
    if ! LIVERSEG_FUZZ_TARGET="$target" "$fuzzer" "$corpus" "$scratch/seeds/$target" \
            -max_total_time="$seconds" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -max_len=65536 -rss_limit_mb=3072 -timeout=30 \
            -artifact_prefix="$artifacts" -print_final_stats=1 > "$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target FAILED (log $log, inputs in $artifacts)"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    time=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
    echo "fuzz target $target: $runs executions in ${time:-$seconds} s, no crash"
done
