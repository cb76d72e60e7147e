#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for a while on a copy of
# its corpus. A crash leaves its input in build-fuzz/crashes/ and fails the run; add that input
# to tests/fuzz/corpus/TARGET/ once fixed, so the normal test suite replays it.
#
#   tests/fuzz/run-fuzzers.sh [SECONDS]     default 20 s per target; CI's full run uses 600
set -euo pipefail

cd "$(dirname "$0")/../.."
seconds=${1:-20}

if ! command -v clang >/dev/null; then
        echo "run-fuzzers.sh: clang is not installed, skipping the fuzzers" >&2
        exit 77
fi

if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
                -Db_lundef=false --buildtype=debugoptimized >/dev/null
fi
ninja -C build-fuzz >/dev/null

mkdir -p build-fuzz/crashes
status=0
for target in build-fuzz/fuzz-*; do
        name=$(basename "$target")
        case $name in *-regress | *.p) continue ;; esac
        [ -x "$target" ] || continue

        corpus=$(mktemp -d)
        if [ -d "tests/fuzz/corpus/$name" ]; then
                cp -r "tests/fuzz/corpus/$name/." "$corpus/"
        fi
        printf '%-28s ' "$name"
        if "$target" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
                -artifact_prefix="build-fuzz/crashes/$name-" -print_final_stats=1 \
                >"build-fuzz/$name.log" 2>&1; then
                echo "ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$name.log" | grep -o '[0-9]*$') runs)"
        else
                echo "FAILED (see build-fuzz/$name.log and build-fuzz/crashes/)"
                status=1
        fi
        rm -rf "$corpus"
done
exit "$status"
