#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Benchmark a cold "cocoon image pull" against "skopeo copy" of the same images from a local
# docker-registry, side by side, and record the result as a Markdown section in
# docs/benchmarks.md.
#
# Images: the test image (tests/image/build-test-image.sh, tag latest, 2 layers) and the larger
# image of bench/pull/build-big-image.sh (tag big, 7 layers of real files from this machine).
# Both are built in BENCH_DIR (default build/bench-pull) and reused while their inputs are
# unchanged, then pushed to a docker-registry on 127.0.0.1 that lives as long as this script.
#
# Each tool pulls each image once to warm the page cache (not counted), then RUNS times, the
# two tools taking turns, into a fresh directory each time:
#   cocoon --root-dir DIR image pull -q 127.0.0.1:PORT/bench/NAME:TAG
#   skopeo copy -q --src-tls-verify=false docker://127.0.0.1:PORT/bench/NAME:TAG oci:DIR/oci:TAG
# Wall time comes from bash's EPOCHREALTIME around the command, peak RSS from /usr/bin/time -v
# (its "Maximum resident set size"). Cocoon also converts every layer to EROFS and extracts the
# kernel and initrd, while skopeo only stores the compressed blobs.
#
# Usage: bench/pull/run.sh [--runs N] [--output FILE | --no-record]
# Environment: COCOON (default build/cocoon), BENCH_DIR (default build/bench-pull).

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
INVOCATION="bench/pull/run.sh${*:+ $*}"
RUNS=3
OUTPUT=$REPO/docs/benchmarks.md
RECORD=1
COCOON=${COCOON:-$REPO/build/cocoon}
BENCH_DIR=${BENCH_DIR:-$REPO/build/bench-pull}

usage() {
        sed -n 's/^# Usage: //p' "${BASH_SOURCE[0]}"
}

die() {
        echo "bench-pull: $*" >&2
        exit 1
}

while [[ $# -gt 0 ]]; do
        case $1 in
        --runs)
                [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive whole number"
                RUNS=$2
                shift 2
                ;;
        --output)
                [[ $# -ge 2 ]] || die "--output needs a file name"
                OUTPUT=$2
                shift 2
                ;;
        --no-record)
                RECORD=0
                shift
                ;;
        -h | --help)
                usage
                exit 0
                ;;
        *)
                usage >&2
                exit 2
                ;;
        esac
done

[[ -x $COCOON ]] || die "$COCOON not found; build it with 'meson setup build && ninja -C build' or set COCOON"
COCOON=$(realpath "$COCOON")
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian package: time)"
for tool in skopeo docker-registry curl jq gzip; do
        command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -n ${EPOCHREALTIME:-} ]] || die "bash 5 or newer is needed for EPOCHREALTIME"

# shellcheck source=tests/lib/common.sh
source "$REPO/tests/lib/common.sh"

mkdir -p "$BENCH_DIR"
"$HERE/build-big-image.sh" "$BENCH_DIR"
BIG_OCI=$BENCH_DIR/oci
SMALL_OCI=$BENCH_DIR/test-image/oci

test_init
registry_start || die "docker-registry did not start"
registry_push "$SMALL_OCI" latest bench/small
registry_push "$BIG_OCI" big bench/big

# Print the total compressed and uncompressed size of the layers of TAG in LAYOUT, in bytes.
image_sizes() {
        local layout=$1 tag=$2 manifest compressed=0 uncompressed=0 digest size

        manifest=$(jq -r --arg t "$tag" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
                "$layout/index.json")
        while read -r digest size; do
                compressed=$((compressed + size))
                uncompressed=$((uncompressed + $(gzip -dc "$layout/blobs/sha256/${digest#sha256:}" | wc -c)))
        done < <(jq -r '.layers[] | "\(.digest) \(.size)"' "$layout/blobs/sha256/${manifest#sha256:}")
        echo "$compressed $uncompressed"
}

layer_count() {
        local layout=$1 tag=$2 manifest

        manifest=$(jq -r --arg t "$tag" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
                "$layout/index.json")
        jq '.layers | length' "$layout/blobs/sha256/${manifest#sha256:}"
}

# Microseconds since the epoch, from EPOCHREALTIME ("seconds.micros" in the C locale).
now_us() {
        local t=$EPOCHREALTIME

        echo $((${t%.*} * 1000000 + 10#${t#*.}))
}

# measure TOOL REF DIR: pull REF with TOOL into the fresh directory DIR and set WALL_US, RSS_KB
# and STORE_BYTES (the size of DIR afterwards). A failed pull stops the benchmark.
measure() {
        local tool=$1 ref=$2 dir=$3 timing=$TEST_DIR/time.out start end

        mkdir -p "$dir"
        case $tool in
        cocoon)
                start=$(now_us)
                /usr/bin/time -v -o "$timing" "$COCOON" --root-dir "$dir" image pull -q "$REGISTRY/$ref" \
                        >"$TEST_DIR/pull.out" 2>&1 || die "cocoon failed to pull $ref: $(cat "$TEST_DIR/pull.out")"
                end=$(now_us)
                ;;
        skopeo)
                start=$(now_us)
                /usr/bin/time -v -o "$timing" skopeo copy -q --src-tls-verify=false "docker://$REGISTRY/$ref" \
                        "oci:$dir/oci:${ref##*:}" >"$TEST_DIR/pull.out" 2>&1 ||
                        die "skopeo failed to copy $ref: $(cat "$TEST_DIR/pull.out")"
                end=$(now_us)
                ;;
        esac
        WALL_US=$((end - start))
        RSS_KB=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$timing")
        [[ -n $RSS_KB ]] || die "no peak RSS in the output of /usr/bin/time"
        STORE_BYTES=$(du -sb "$dir" | cut -f1)
}

# Print the median of the numbers given as arguments (the mean of the two middle ones for an
# even count).
median() {
        printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

max() {
        printf '%s\n' "$@" | sort -n | tail -n 1
}

seconds() {
        awk -v us="$1" 'BEGIN { printf "%.2f s", us / 1e6 }'
}

mib() {
        awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}

# bench NAME REF LAYOUT TAG: run both tools on one image and append a table row to ROWS.
ROWS=()
GOALS=()
bench() {
        local name=$1 ref=$2 layout=$3 tag=$4 i tool sizes
        local -a cocoon_wall=() cocoon_rss=() skopeo_wall=() skopeo_rss=()
        local cocoon_median skopeo_median ratio cocoon_rss_max skopeo_rss_max store=0 time_goal rss_goal

        echo "# $name: warm-up pull with each tool (not counted)"
        measure cocoon "$ref" "$TEST_DIR/warm-cocoon"
        measure skopeo "$ref" "$TEST_DIR/warm-skopeo"
        rm -rf "$TEST_DIR/warm-cocoon" "$TEST_DIR/warm-skopeo"

        for ((i = 1; i <= RUNS; i++)); do
                for tool in cocoon skopeo; do
                        measure "$tool" "$ref" "$TEST_DIR/run-$tool"
                        rm -rf "$TEST_DIR/run-$tool"
                        echo "# $name run $i $tool: $(seconds "$WALL_US"), peak RSS $((RSS_KB / 1024)) MiB"
                        if [[ $tool == cocoon ]]; then
                                cocoon_wall+=("$WALL_US")
                                cocoon_rss+=("$RSS_KB")
                                store=$STORE_BYTES
                        else
                                skopeo_wall+=("$WALL_US")
                                skopeo_rss+=("$RSS_KB")
                        fi
                done
        done

        cocoon_median=$(median "${cocoon_wall[@]}")
        skopeo_median=$(median "${skopeo_wall[@]}")
        ratio=$(awk -v c="$cocoon_median" -v s="$skopeo_median" 'BEGIN { printf "%.2f", c / s }')
        cocoon_rss_max=$(max "${cocoon_rss[@]}")
        skopeo_rss_max=$(max "${skopeo_rss[@]}")
        read -r -a sizes < <(image_sizes "$layout" "$tag")

        ROWS+=("| $name | $(layer_count "$layout" "$tag") | $(mib "${sizes[0]}") | $(mib "${sizes[1]}") | $(mib "$store") | $(seconds "$cocoon_median") | $(seconds "$skopeo_median") | ${ratio}× | $(mib $((cocoon_rss_max * 1024))) | $(mib $((skopeo_rss_max * 1024))) |")

        time_goal=missed
        awk -v r="$ratio" 'BEGIN { exit !(r <= 1.0) }' && time_goal=met
        rss_goal=missed
        [[ $cocoon_rss_max -le $((16 * 1024)) ]] && rss_goal=met
        GOALS+=("- $name: wall-time ratio ${ratio}× ($time_goal), Cocoon peak RSS $(mib $((cocoon_rss_max * 1024))) ($rss_goal); Cocoon runs: $(for w in "${cocoon_wall[@]}"; do seconds "$w"; echo -n ", "; done | sed 's/, $//'), skopeo runs: $(for w in "${skopeo_wall[@]}"; do seconds "$w"; echo -n ", "; done | sed 's/, $//')")
}

bench "test image (latest)" bench/small:latest "$SMALL_OCI" latest
bench "big image (big)" bench/big:big "$BIG_OCI" big

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
cocoon_revision=$("$COCOON" version | sed -n 's/^Git hash:[[:space:]]*//p')
buildtype=$(meson introspect "$(dirname "$COCOON")" --buildoptions 2>/dev/null |
        jq -r '.[] | select(.name == "buildtype") | .value' 2>/dev/null || true)

section=$(
        cat <<EOF

## Image pull: cocoon vs. skopeo, $(date -u +%Y-%m-%d)

Cold pulls from a docker-registry ($(docker-registry --version | awk '{print $3}')) on 127.0.0.1 over plain HTTP.
Each tool pulls each image once as an uncounted warm-up, then $RUNS times (the two tools taking
turns), into a fresh directory every time. Wall time is the median, peak RSS the maximum over
the runs. Cocoon converts every layer to EROFS and extracts the kernel and initrd; skopeo only
stores the compressed blobs in an OCI layout.

- Machine: $(nproc) CPUs ($cpu), $ram RAM, Linux $(uname -r)
- Cocoon: $cocoon_revision${buildtype:+, meson buildtype $buildtype}, PullConcurrency ${COCOON_PULL_CONCURRENCY:-default (4)}; $(skopeo --version)
- Command: \`$INVOCATION\` (COCOON=${COCOON#"$REPO"/})
- Each run: \`cocoon --root-dir DIR image pull -q 127.0.0.1:PORT/bench/NAME:TAG\` and
  \`skopeo copy -q --src-tls-verify=false docker://127.0.0.1:PORT/bench/NAME:TAG oci:DIR/oci:TAG\`,
  timed with bash's EPOCHREALTIME, peak RSS from \`/usr/bin/time -v\`
- Images: the test image of tests/image/build-test-image.sh (busybox, kernel, initramfs and a
  whiteout layer) and bench/pull/build-big-image.sh (that base layer plus 5 layers of this
  machine's /usr/lib/x86_64-linux-gnu and /usr/share, and a whiteout layer), all gzip

| Image | Layers | Compressed | Uncompressed | Cocoon store | Cocoon wall | skopeo wall | Ratio cocoon/skopeo | Cocoon peak RSS | skopeo peak RSS |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(printf '%s\n' "${ROWS[@]}")

Goals (targets, not asserted): wall-time ratio ≤ 1.0× while also converting to EROFS, and Cocoon
peak RSS ≤ 16 MiB.

$(printf '%s\n' "${GOALS[@]}")
EOF
)

echo "$section"
if [[ $RECORD -eq 1 ]]; then
        mkdir -p "$(dirname "$OUTPUT")"
        if [[ ! -s $OUTPUT ]]; then
                cat >"$OUTPUT" <<EOF
# Benchmarks

Measured results, newest last. Each section names the script that produced it, the machine and
the exact command; rerun the script to add a section.
EOF
        fi
        echo "$section" >>"$OUTPUT"
        echo "# appended to $OUTPUT"
fi
