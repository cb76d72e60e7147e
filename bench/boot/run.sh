#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Benchmark of guest boot time: a VM started with "cocoon vm start" vs. the same QEMU command
# line started by hand on the same files. The test image (tests/image) is pulled from a
# docker-registry on 127.0.0.1 and created as a QEMU VM without NICs inside a systemd lab
# (tests/lib/systemd-lab.sh). Each run is timed to the guest's COCOON-TEST-MARKER line:
#   cocoon  from just before "cocoon vm start" (taken inside the lab) to the journal's receive
#           time of the marker line. This covers the transient unit, QEMU, the console relay
#           that QEMU waits for (wait=on), the guest's boot and the journal.
#   raw     from just before QEMU is started by hand to the moment a poller (every 10 ms) finds
#           the marker in its serial file. The argv is the unit's ExecStart= with the serial
#           port moved from the relay's socket to a file and the QMP socket to a bench path.
# Both sides shut the guest down through the power button after each run (untimed), so the COW
# disk stays clean; the two sides take turns. Reported: the median of each side, their ratio and
# difference. Goal: Cocoon adds at most 0.3 s. Nothing is asserted.
#
# Usage: bench/boot/run.sh [--runs N] [--output FILE | --no-record]
# Environment: COCOON (default build/cocoon), BENCH_DIR (default build/bench-boot, caches the
# test image), BOOT_TIMEOUT (seconds per boot, default 120).

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
INVOCATION="bench/boot/run.sh${*:+ $*}"
RUNS=5
OUTPUT=$REPO/docs/benchmarks.md
RECORD=1
COCOON=${COCOON:-$REPO/build/cocoon}
BENCH_DIR=${BENCH_DIR:-$REPO/build/bench-boot}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-120}
GOAL_SECONDS=0.3
VM_NAME=bench-boot
UNIT=cocoon-vm@$VM_NAME.service

usage() {
        sed -n 's/^# Usage: //p' "${BASH_SOURCE[0]}"
}

die() {
        echo "bench-boot: $*" >&2
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
[[ $(id -u) -eq 0 ]] || die "the systemd lab needs root"
for tool in docker-registry skopeo curl jq busybox cpio gzip mkfs.ext4 python3 qemu-system-x86_64; do
        command -v "$tool" >/dev/null || die "$tool not found"
done

# shellcheck source=tests/lib/common.sh
source "$REPO/tests/lib/common.sh"
# shellcheck source=tests/lib/systemd-lab.sh
source "$REPO/tests/lib/systemd-lab.sh"

lab_require >/dev/null || die "the systemd lab cannot run here (see tests/lib/systemd-lab.sh)"

mkdir -p "$BENCH_DIR"
test_init
build_output=$("$REPO/tests/image/build-test-image.sh" "$BENCH_DIR/test-image" 2>&1) ||
        die "build-test-image.sh failed: $build_output"
registry_start >/dev/null || die "docker-registry did not start"
registry_push "$BENCH_DIR/test-image/oci" latest bench/boot || die "skopeo could not push the test image"
IMAGE=$REGISTRY/bench/boot:latest
cocoon_run image pull -q "$IMAGE" >/dev/null || die "cocoon could not pull $IMAGE"
# The guests never contact the registry, so it stops here to stay out of the timings.
registry_stop

lab_start >/dev/null || die "the systemd lab did not start"
cp "$REPO/units/cocoon.slice" "$LAB_UNIT_DIR/"
lab_exec systemctl daemon-reload

vm() {
        lab_exec "$COCOON" --root-dir "$ROOT" "$@"
}

vm vm create --hypervisor qemu --nics 0 --name "$VM_NAME" "$IMAGE" >/dev/null 2>&1 ||
        die "cocoon vm create failed"

# Print the difference END - START of two EPOCHREALTIME values, in seconds.
seconds_between() {
        awk -v start="$1" -v end="$2" 'BEGIN { printf "%.3f", end - start }'
}

median() {
        printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------------------------------
# One run through cocoon: the start time is taken inside the lab, right before cocoon runs.

# Print the journal's receive time (EPOCHREALTIME format) of the first marker line after START.
marker_time_in_journal() {
        lab_exec journalctl --no-pager -a -u "$UNIT" -o short-unix --since "@${1%.*}" 2>/dev/null |
                awk -v start="$1" '/COCOON-TEST-MARKER/ && $1 >= start { print $1; exit }'
}

cocoon_run_once() {
        local start end='' tries=$((BOOT_TIMEOUT * 10))

        # shellcheck disable=SC2016 # expanded by the bash inside the lab
        start=$(lab_exec bash -c 'echo "$EPOCHREALTIME" && exec "$@" >/dev/null' bash \
                "$COCOON" --root-dir "$ROOT" vm start "$VM_NAME") || die "cocoon vm start failed"
        while ((tries-- > 0)); do
                end=$(marker_time_in_journal "$start")
                [[ -z $end ]] || break
                sleep 0.1
        done
        [[ -n $end ]] || die "no marker within $BOOT_TIMEOUT s after cocoon vm start"
        # rootfs-init starts acpid after the marker and the console shell after acpid: a stop
        # before the shell's banner could press the power button before anything listens.
        tries=$((BOOT_TIMEOUT * 10))
        while ((tries-- > 0)); do
                lab_exec journalctl --no-pager -a -u "$UNIT" -o short-unix --since "@${start%.*}" 2>/dev/null |
                        grep -q "built-in shell" && break
                sleep 0.1
        done
        vm vm stop "$VM_NAME" >/dev/null || die "cocoon vm stop failed"
        seconds_between "$start" "$end"
}

# ---------------------------------------------------------------------------------------------
# One run of QEMU by hand, with the unit's argv.

# Print the unit's ExecStart= argv, one word per line. systemctl shows the words joined by
# spaces. Only QEMU's -append value contains spaces (the paths here have none), so it is kept whole.
unit_argv() {
        lab_exec systemctl show -p ExecStart --value "$UNIT" | python3 -c '
import re, sys
text = sys.stdin.read()
argv = re.search(r"argv\[\]=(.*?) ; ignore_errors=", text).group(1)
words, rest = [], argv
while rest:
        if rest.startswith("-append "):
                words.append("-append")
                value, _, rest = rest[len("-append "):].partition(" -")
                words.append(value)
                rest = "-" + rest if rest else ""
                continue
        word, _, rest = rest.partition(" ")
        words.append(word)
print("\n".join(words))'
}

RAW_DIR=$TEST_DIR/raw
mkdir -p "$RAW_DIR"

# Print the unit's argv with the serial port on RAW_DIR/serial.log and QMP on RAW_DIR/qmp.sock.
raw_argv() {
        local word

        while IFS= read -r word; do
                case $word in
                socket,id=serial,*) echo "file,id=serial,path=$RAW_DIR/serial.log" ;;
                socket,id=qmp,*) echo "socket,id=qmp,path=$RAW_DIR/qmp.sock,server=on,wait=off" ;;
                *) echo "$word" ;;
                esac
        done < <(unit_argv)
}

# wait_serial TEXT: wait for TEXT in the serial file; print the time it was found.
wait_serial() {
        python3 - "$RAW_DIR/serial.log" "$BOOT_TIMEOUT" "$1" <<'EOF'
import sys, time
path, timeout, text = sys.argv[1], float(sys.argv[2]), sys.argv[3].encode()
deadline = time.time() + timeout
data = b""
while time.time() < deadline:
        try:
                with open(path, "rb") as f:
                        f.seek(len(data))
                        data += f.read()
        except FileNotFoundError:
                pass
        if text in data:
                print(f"{time.time():.6f}")
                sys.exit(0)
        time.sleep(0.01)
sys.exit(1)
EOF
}

# Press the power button through QMP, as cocoon's stop does.
raw_power_button() {
        python3 - "$RAW_DIR/qmp.sock" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for command in ("qmp_capabilities", "system_powerdown"):
        f.write(json.dumps({"execute": command}) + "\n")
        f.flush()
        while "return" not in json.loads(f.readline()):
                pass
EOF
}

RAW_ARGV=()
raw_run_once() {
        local start end qemu_pid

        rm -f "$RAW_DIR/serial.log" "$RAW_DIR/qmp.sock"
        start=$EPOCHREALTIME
        "${RAW_ARGV[@]}" </dev/null >"$RAW_DIR/qemu.log" 2>&1 &
        qemu_pid=$!
        end=$(wait_serial COCOON-TEST-MARKER) ||
                { kill "$qemu_pid" 2>/dev/null; die "no marker from raw QEMU: $(tail -n 5 "$RAW_DIR/qemu.log")"; }
        wait_serial "built-in shell" >/dev/null || true
        raw_power_button || kill "$qemu_pid"
        wait "$qemu_pid" || true
        seconds_between "$start" "$end"
}

# ---------------------------------------------------------------------------------------------
# Runs: one uncounted warm-up each, then the two sides take turns.

vm vm start "$VM_NAME" >/dev/null 2>&1 || die "cocoon vm start failed"
mapfile -t RAW_ARGV < <(raw_argv)
[[ ${#RAW_ARGV[@]} -gt 10 ]] || die "cannot read the unit's ExecStart="
ACCEL=$(printf '%s\n' "${RAW_ARGV[@]}" | grep -A1 -x -- -accel | tail -n 1)
vm vm stop "$VM_NAME" >/dev/null

echo "# warm-up" >&2
cocoon_run_once >/dev/null
raw_run_once >/dev/null
COCOON_TIMES=()
RAW_TIMES=()
for ((i = 1; i <= RUNS; i++)); do
        COCOON_TIMES+=("$(cocoon_run_once)")
        RAW_TIMES+=("$(raw_run_once)")
        echo "# run $i: cocoon ${COCOON_TIMES[-1]} s, raw QEMU ${RAW_TIMES[-1]} s" >&2
done

COCOON_MEDIAN=$(median "${COCOON_TIMES[@]}")
RAW_MEDIAN=$(median "${RAW_TIMES[@]}")
DIFFERENCE=$(awk -v a="$COCOON_MEDIAN" -v b="$RAW_MEDIAN" 'BEGIN { printf "%.2f", a - b }')
RATIO=$(awk -v a="$COCOON_MEDIAN" -v b="$RAW_MEDIAN" 'BEGIN { printf "%.2f", a / b }')
GOAL=$(awk -v d="$DIFFERENCE" -v g="$GOAL_SECONDS" 'BEGIN { print (d <= g) ? "met" : "missed" }')

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEMORY=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
QEMU_VERSION=$(qemu-system-x86_64 --version | head -n 1)
REVISION=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
KVER=$(sed -n 's/^KVER=//p' "$BENCH_DIR/test-image/image.env")

section=$(cat <<EOF

## Guest boot: cocoon vm start vs. QEMU by hand, $(date -u +%Y-%m-%d)

Time to the test guest's COCOON-TEST-MARKER line (tests/image: Debian kernel $KVER, busybox
initramfs, two EROFS layers and an ext4 COW disk, no NICs), $RUNS runs per side after one
warm-up each, the two sides taking turns. "cocoon" is measured from just before
\`cocoon vm start\` to the journal's receive time of the marker: the transient unit, QEMU, the
console relay and the guest boot. "raw" starts the unit's own ExecStart= argv by hand with the
serial port in a file (polled every 10 ms) instead of the relay's socket. Both shut the guest
down through the ACPI power button between runs.

- Machine: $(nproc) CPUs ($CPU_MODEL), $MEMORY RAM, Linux $(uname -r); accelerator: $ACCEL
- Cocoon: $REVISION; $QEMU_VERSION
- Command: \`$INVOCATION\` (COCOON=${COCOON#"$REPO"/})

| Side | Median | Runs |
| --- | ---: | --- |
| cocoon vm start | $COCOON_MEDIAN s | ${COCOON_TIMES[*]} |
| QEMU by hand | $RAW_MEDIAN s | ${RAW_TIMES[*]} |

Cocoon adds $DIFFERENCE s (ratio ${RATIO}×). Goal (a target, not asserted): at most $GOAL_SECONDS s
($GOAL).
EOF
)

echo "$section"
if [[ $RECORD -eq 1 ]]; then
        mkdir -p "$(dirname "$OUTPUT")"
        echo "$section" >>"$OUTPUT"
        echo "# appended to $OUTPUT" >&2
fi
