#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run the whole test suite twice: once in a normal build (with --werror) and once under
# AddressSanitizer and UndefinedBehaviorSanitizer. Suites: unit (no root needed) and
# integration (root; real registry, real systemd in namespaces, the CH test double).
#
#   tests/run.sh                 both builds, all suites
#   tests/run.sh --quick         normal build only
#   tests/run.sh -- ARGS...      extra arguments for "meson test", e.g. -- --suite unit
set -euo pipefail

cd "$(dirname "$0")/.."

quick=0
extra=()
while [ $# -gt 0 ]; do
        case "$1" in
        --quick) quick=1 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "Unknown option '$1'. Usage: tests/run.sh [--quick] [-- MESON-TEST-ARGS...]" >&2; exit 2 ;;
        esac
        shift
done

# run_suite BUILD_DIR "MESON TEST ARGS" SETUP_ARGS...
run_suite() {
        local dir=$1 test_args=$2
        shift 2
        if [ ! -f "$dir/build.ninja" ]; then
                meson setup "$dir" "$@" >/dev/null
        fi
        ninja -C "$dir"
        # shellcheck disable=SC2086 # test_args holds separate words on purpose
        meson test -C "$dir" --print-errorlogs --num-processes 2 $test_args "${extra[@]}"
}

status=0
run_suite build-test "" -Dwerror=true || status=1
if [ "$quick" -eq 0 ]; then
        # The guest boots of the e2e suite run once, in the normal build: under the sanitizers
        # they would only test QEMU's speed again.
        run_suite build-asan "--no-suite e2e" -Dwerror=true -Db_sanitize=address,undefined \
                -Db_lundef=false || status=1
fi

# libFuzzer on every parser of untrusted input, briefly; COCOON_FUZZ_SECONDS=600 is the full run.
if [ "$quick" -eq 0 ]; then
        fuzz_status=0
        tests/fuzz/run-fuzzers.sh "${COCOON_FUZZ_SECONDS:-15}" || fuzz_status=$?
        if [ "$fuzz_status" -ne 0 ] && [ "$fuzz_status" -ne 77 ]; then
                status=1
        fi
fi

# One closing line over both builds, in the "N passed, N failed" form CI reads.
passed=0
failed=0
for dir in build-test build-asan; do
        log=$dir/meson-logs/testlog.txt
        [ -f "$log" ] || continue
        passed=$((passed + $(awk '/^Ok:/ { print $2; exit }' "$log")))
        failed=$((failed + $(awk '/^(Fail|Timeout|Unexpected Pass):/ { n += $NF } END { print n + 0 }' "$log")))
done
if [ "$status" -ne 0 ]; then
        echo "tests/run.sh: FAILED (see the meson logs above)" >&2
        [ "$failed" -gt 0 ] || failed=1
fi
echo "$passed passed, $failed failed"
exit "$status"
