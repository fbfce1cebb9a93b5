#!/usr/bin/env bash
# The Swift unit tests under AddressSanitizer and ThreadSanitizer (each in its own scratch
# path), and a C program going through every C API path (Tests/consumers/lifecycle.c:
# load -> segment -> CRF -> evaluate -> image I/O -> free, and the error paths) under
# valgrind --leak-check=full against the release library. Prints the counts the issue
# asks for; exits non-zero on any ASan report, TSan warning, valgrind error or definitely
# lost byte.
#   tools/sanitizers.sh [asan] [tsan] [valgrind]     default: all three
set -euo pipefail
cd "$(dirname "$0")/.."
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(asan tsan valgrind)
out=.build-sanitizers
mkdir -p "$out"
status=0
for step in "${steps[@]}"; do
    case "$step" in
    asan|tsan)
        sanitizer=$([ "$step" = asan ] && echo address || echo thread)
        log="$out/$step.log"
        # halt_on_error=0: count every report instead of stopping at the first.
        ASAN_OPTIONS=halt_on_error=0:detect_leaks=0 TSAN_OPTIONS=halt_on_error=0 \
            swift test --scratch-path ".build-$step" -Xswiftc -sanitize="$sanitizer" > "$log" 2>&1 || status=1
        reports=$(grep -c "ERROR: AddressSanitizer\|WARNING: ThreadSanitizer" "$log" || true)
        summary=$(grep -E "Executed [0-9]+ tests" "$log" | tail -1 || true)
        echo "$step: $reports reports; ${summary:-tests did not finish} (log $log)"
        [ "$reports" = 0 ] || status=1
        ;;
    valgrind)
        make build > /dev/null
        PYTHONPATH=bindings/python python3 - "$out/small.safetensors" <<'PY'
import sys, liverseg
arch = liverseg.paper_architecture()
arch.update(conv_channels=[3, 4, 4, 5, 5, 4], main_deconv_channels=3, branch2_deconv_channels=2)
pre = dict(liverseg.model_file.DEFAULT_PREPROCESSING, spacing_mm=[4.0, 4.0, 4.0])
liverseg.save_model(sys.argv[1], arch, liverseg.random_weights(arch, seed=1), preprocessing=pre)
PY
        # The program needs the library by its SONAME.
        ln -sf "$PWD/.build/release/libliverseg.so" "$out/libliverseg.so.0"
        cc -std=c11 -Wall -Werror -g -Iinclude Tests/consumers/lifecycle.c -L.build/release -lliverseg \
            -Wl,-rpath,"$PWD/$out" -lm -o "$out/lifecycle"
        mkdir -p "$out/images"
        log="$out/valgrind.log"
        valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=3 \
            "$out/lifecycle" "$out/small.safetensors" "$out/images" > "$log" 2>&1 || status=1
        lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1)
        errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tail -1)
        grep -q '^ok$' "$log" || { echo "lifecycle program failed:"; grep -v '^==' "$log" | tail -20; status=1; }
        echo "valgrind: ${errors:-?} errors, ${lost:-0} bytes definitely lost (log $log)"
        ;;
    *) echo "unknown step $step"; exit 2 ;;
    esac
done
exit $status
