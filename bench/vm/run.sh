#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Benchmark of the VM lifecycle next to systemd's own tools, in one run inside a systemd lab
# (tests/lib/systemd-lab.sh), with the Cloud Hypervisor test double first on PATH and the test
# image pulled from a docker-registry on 127.0.0.1:
#   1. "cocoon vm list" over 1,000 VM records, 200 of them running, vs.
#      "systemctl list-units 'cocoon-vm@*'". Goal: at most 2x and at most 50 ms.
#   2. "cocoon vm start" of a VM without NICs vs. "systemd-run" of the same ExecStart argv,
#      followed by a vmm.ping on the API socket every 20 ms until it responds, as cocoon does.
#      Both are stopped (untimed) before each run. Goal: at most 1.5x.
#   3. 100 VMs created and started, 16 at a time (xargs -P16), in 2 rounds: failures are
#      counted, VMs per second reported. Goal: every VM starts, at least 20 VMs/s.
#   4. "cocoon vm create --nics 0 --storage 10G". Goal: median at most 50 ms.
# The two rounds of (3) leave 200 running VMs (more are started if some failed). (1) then adds
# VM records in the store format (vms/<id>/vm.json and the names/<name> symlink), copied from a
# real created VM with a new id, name and created_at, up to 1,000 records. Those records have no
# disks, which "vm list" does not read.
#
# Timing runs inside the lab, so that entering its namespaces is not counted. It uses hyperfine
# (-N, without a shell) when it is installed, else bash's EPOCHREALTIME around each run, and
# reports the median run. Nothing is asserted: the goals are reported as met or missed.
#
# Usage: bench/vm/run.sh [--runs N] [--output FILE | --no-record]
# Environment: COCOON (default build/cocoon), CH_DOUBLE_DIR (default: tests/ch-double in the
# build directory of COCOON), BENCH_DIR (default build/bench-vm, caches the test image).

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
INVOCATION="bench/vm/run.sh${*:+ $*}"
RUNS=20
OUTPUT=$REPO/docs/benchmarks.md
RECORD=1
COCOON=${COCOON:-$REPO/build/cocoon}
BENCH_DIR=${BENCH_DIR:-$REPO/build/bench-vm}

RECORDS=1000
RUNNING=200
PARALLEL_VMS=100
PARALLEL_JOBS=16
PARALLEL_ROUNDS=2
# cocoon sleeps this long between two pings of a starting VMM (READY_INTERVAL_MS in
# src/engine/lifecycle.c), so the systemd-run side polls at the same interval.
PING_INTERVAL_MS=20

usage() {
        sed -n 's/^# Usage: //p' "${BASH_SOURCE[0]}"
}

die() {
        echo "bench-vm: $*" >&2
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
CH_DOUBLE_DIR=${CH_DOUBLE_DIR:-$(dirname "$COCOON")/tests/ch-double}
[[ -x $CH_DOUBLE_DIR/cloud-hypervisor ]] || die "$CH_DOUBLE_DIR/cloud-hypervisor not found; set CH_DOUBLE_DIR"
CH_DOUBLE_DIR=$(realpath "$CH_DOUBLE_DIR")
[[ $(id -u) -eq 0 ]] || die "the systemd lab needs root"
for tool in docker-registry skopeo curl jq busybox cpio gzip mkfs.ext4 xargs; do
        command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -n ${EPOCHREALTIME:-} ]] || die "bash 5 or newer is needed for EPOCHREALTIME"
HYPERFINE=$(command -v hyperfine || true)

# shellcheck source=tests/lib/common.sh
source "$REPO/tests/lib/common.sh"
# shellcheck source=tests/lib/systemd-lab.sh
source "$REPO/tests/lib/systemd-lab.sh"

# lab_require skips with exit 77 and a TAP line, but a benchmark stops with a reason instead.
lab_require >/dev/null || die "the systemd lab cannot run here (see tests/lib/systemd-lab.sh)"

mkdir -p "$BENCH_DIR"
test_init
build_output=$("$REPO/tests/image/build-test-image.sh" "$BENCH_DIR/test-image" 2>&1) ||
        die "build-test-image.sh failed: $build_output"
registry_start >/dev/null || die "docker-registry did not start"
registry_push "$BENCH_DIR/test-image/oci" latest bench/vm || die "skopeo could not push the test image"
IMAGE=$REGISTRY/bench/vm:latest
cocoon_run image pull -q "$IMAGE" >/dev/null || die "cocoon could not pull $IMAGE"
# The VMs never contact the registry, so it stops here to stay out of the timings.
registry_stop

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
lab_start >/dev/null || die "the systemd lab did not start"
cp "$REPO/units/cocoon.slice" "$LAB_UNIT_DIR/"
lab_exec systemctl daemon-reload
LAB_SYSTEMD_VERSION=$(lab_exec systemctl --version | head -n 1)

# ---------------------------------------------------------------------------------------------
# Helpers

# Run cocoon inside the lab, with the Cloud Hypervisor double first on PATH.
vm() {
        PATH="$CH_DOUBLE_DIR:$PATH" lab_exec "$COCOON" --root-dir "$ROOT" "$@"
}

# The same, as one command line for hyperfine or the fallback timer (no path has spaces).
VM_COMMAND="$COCOON --root-dir $ROOT"

now_us() {
        local t=$EPOCHREALTIME

        echo $((${t%.*} * 1000000 + 10#${t#*.}))
}

# Print the median of the numbers given as arguments (the mean of the two middle ones for an
# even count).
median() {
        printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ms() {
        awk -v us="$1" 'BEGIN { printf "%.1f ms", us / 1000 }'
}

ratio() {
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

# at_most VALUE LIMIT: print "met" when VALUE <= LIMIT, else "missed".
at_most() {
        awk -v v="$1" -v l="$2" 'BEGIN { print (v <= l) ? "met" : "missed" }'
}

# Quote one word for /bin/sh.
sh_quote() {
        printf "'%s'" "${1//\'/\'\\\'\'}"
}

# time_runs PREPARE COMMAND: run COMMAND $RUNS times inside the lab, after 2 uncounted warm-up
# runs, with PREPARE (untimed) before each run. Both are command lines split into words as a
# shell does. Sets TIMES_US to the wall time of each counted run in microseconds. With hyperfine,
# it also sets CPU_US to the mean CPU time (user + system) of the command and the children it
# waited for, which leaves out the processes that systemd starts. A failing run stops the
# benchmark.
TIMES_US=()
CPU_US=
time_runs() {
        local prepare=$1 command=$2 json=$TEST_DIR/hyperfine.json

        TIMES_US=()
        CPU_US=
        if [[ -n $HYPERFINE ]]; then
                PATH="$CH_DOUBLE_DIR:$PATH" lab_exec "$HYPERFINE" -N --style none --warmup 2 --runs "$RUNS" \
                        --prepare "$prepare" --export-json "$json" "$command" >"$TEST_DIR/hyperfine.out" 2>&1 ||
                        die "hyperfine failed on '$command': $(tail -n 5 "$TEST_DIR/hyperfine.out")"
                mapfile -t TIMES_US < <(jq -r '.results[0].times[] | . * 1000000 | floor' "$json")
                CPU_US=$(jq -r '(.results[0].user + .results[0].system) * 1000000 | floor' "$json")
        else
                # shellcheck disable=SC2016 # the inner bash expands these
                mapfile -t TIMES_US < <(PATH="$CH_DOUBLE_DIR:$PATH" lab_exec bash -c '
                        runs=$1 prepare=$2 command=$3
                        for ((i = -2; i < runs; i++)); do
                                eval "$prepare" >/dev/null 2>&1 </dev/null
                                start=$EPOCHREALTIME
                                eval "$command" >/dev/null 2>&1 </dev/null || exit 1
                                end=$EPOCHREALTIME
                                ((i < 0)) || echo $(((${end%.*} - ${start%.*}) * 1000000 + 10#${end#*.} - 10#${start#*.}))
                        done' bench-vm-timer "$RUNS" "$prepare" "$command") || die "'$command' failed"
        fi
        [[ ${#TIMES_US[@]} -eq $RUNS ]] || die "expected $RUNS timings of '$command', got ${#TIMES_US[@]}"
}

# Print ", CPU time N ms" for a CPU time in microseconds, or nothing without one.
cpu_note() {
        [[ -z $1 ]] || echo ", CPU time $(ms "$1")"
}

list_us() {
        local us out=

        for us in "$@"; do
                out+="${out:+, }$(ms "$us")"
        done
        echo "$out"
}

running_units() {
        lab_exec systemctl list-units --no-legend --plain --state=active 'cocoon-vm@*' | wc -l
}

RESULTS=()
DETAILS=()

# ---------------------------------------------------------------------------------------------
# 4. vm create --nics 0 with a 10G COW disk. The prepare step removes the VM of the last run.

echo "# vm create: $RUNS runs"
vm vm create --nics 0 --storage 10G --name bench-create "$IMAGE" >/dev/null
time_runs "sh -c '$VM_COMMAND vm rm bench-create; true'" \
        "$VM_COMMAND vm create --nics 0 --storage 10G --name bench-create $IMAGE"
CREATE_MEDIAN=$(median "${TIMES_US[@]}")
CREATE_TIMES=("${TIMES_US[@]}")
CREATE_CPU=$CPU_US
# The last created VM is kept as the template of the records of measurement 1.
TEMPLATE_ID=$(vm vm inspect bench-create | jq -r .id)

# ---------------------------------------------------------------------------------------------
# 2. vm start vs. systemd-run of the same argv, stopped (untimed) before each run.

echo "# vm start vs. systemd-run: $RUNS runs each"
vm vm create --nics 0 --name bench-start "$IMAGE" >/dev/null
vm vm start bench-start >/dev/null
START_ID=$(vm vm inspect bench-start | jq -r .id)
START_SOCKET=$ROOT/run/$START_ID/api.sock
unit_path=$(lab_busctl --json=short call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
        org.freedesktop.systemd1.Manager GetUnit s cocoon-vm@bench-start.service | jq -r '.data[0]')
mapfile -t EXEC_ARGV < <(lab_busctl --json=short get-property org.freedesktop.systemd1 "$unit_path" \
        org.freedesktop.systemd1.Service ExecStart | jq -r '.data[0][1][]')
[[ ${#EXEC_ARGV[@]} -gt 1 ]] || die "cannot read the ExecStart argv of cocoon-vm@bench-start.service"
vm vm stop --force bench-start >/dev/null

# The peer gets the unit settings that matter for starting (Type, Slice, KillMode, output), not
# cocoon's ExecStartPost console relay and ExecStop hook.
PEER_UNIT=bench-systemd-run.service
PEER_SCRIPT=$TEST_DIR/systemd-run-start.sh
{
        echo '#!/bin/sh'
        printf 'systemd-run --quiet --unit=%s --slice=cocoon.slice --property=Type=exec' "$PEER_UNIT"
        printf ' --property=KillMode=mixed --property=StandardOutput=journal --property=StandardError=journal --'
        for word in "${EXEC_ARGV[@]}"; do
                printf ' %s' "$(sh_quote "$word")"
        done
        echo ' || exit 1'
        echo "until curl -fs -o /dev/null --unix-socket $(sh_quote "$START_SOCKET") http://localhost/api/v1/vmm.ping; do"
        echo "        sleep $(awk -v ms="$PING_INTERVAL_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
        echo 'done'
} >"$PEER_SCRIPT"
chmod +x "$PEER_SCRIPT"
STOP_BOTH="sh -c '$VM_COMMAND vm stop --force bench-start; systemctl stop $PEER_UNIT; systemctl reset-failed $PEER_UNIT; true'"

time_runs "$STOP_BOTH" "$VM_COMMAND vm start bench-start"
START_COCOON_TIMES=("${TIMES_US[@]}")
START_COCOON_CPU=$CPU_US
time_runs "$STOP_BOTH" "$PEER_SCRIPT"
START_PEER_TIMES=("${TIMES_US[@]}")
START_PEER_CPU=$CPU_US
lab_exec sh -c "$STOP_BOTH" >/dev/null 2>&1

# What one curl ping of a running VMM costs the peer.
vm vm start bench-start >/dev/null
time_runs true "curl -fs -o /dev/null --unix-socket $START_SOCKET http://localhost/api/v1/vmm.ping"
PING_MEDIAN=$(median "${TIMES_US[@]}")
vm vm stop --force bench-start >/dev/null

START_COCOON_MEDIAN=$(median "${START_COCOON_TIMES[@]}")
START_PEER_MEDIAN=$(median "${START_PEER_TIMES[@]}")

# ---------------------------------------------------------------------------------------------
# 3. Create and start VMs in parallel. Each VM's failure is logged with its output.

PARALLEL_SCRIPT=$TEST_DIR/create-start.sh
cat >"$PARALLEL_SCRIPT" <<EOF
#!/bin/sh
# create-start.sh NAME: create and start one VM, and on failure log the name and the output.
out=\$($(sh_quote "$COCOON") --root-dir $(sh_quote "$ROOT") vm create --nics 0 --name "\$1" $(sh_quote "$IMAGE") 2>&1 &&
        $(sh_quote "$COCOON") --root-dir $(sh_quote "$ROOT") vm start "\$1" 2>&1) ||
        printf '%s: %s\n' "\$1" "\$(echo \$out)" >>$(sh_quote "$TEST_DIR/failures.log")
EOF
chmod +x "$PARALLEL_SCRIPT"
: >"$TEST_DIR/failures.log"

PARALLEL_TIMES=()
PARALLEL_FAILURES=()
for ((round = 1; round <= PARALLEL_ROUNDS; round++)); do
        before=$(wc -l <"$TEST_DIR/failures.log")
        echo "# parallel create+start, round $round: $PARALLEL_VMS VMs, $PARALLEL_JOBS at a time"
        # shellcheck disable=SC2016 # the inner bash expands these
        us=$(PATH="$CH_DOUBLE_DIR:$PATH" lab_exec bash -c '
                start=$EPOCHREALTIME
                seq -f "$1%g" "$2" | xargs -P "$3" -n 1 "$4" || true
                end=$EPOCHREALTIME
                echo $(((${end%.*} - ${start%.*}) * 1000000 + 10#${end#*.} - 10#${start#*.}))' \
                bench-vm-parallel "par$round-" "$PARALLEL_VMS" "$PARALLEL_JOBS" "$PARALLEL_SCRIPT")
        PARALLEL_TIMES+=("$us")
        PARALLEL_FAILURES+=($(($(wc -l <"$TEST_DIR/failures.log") - before)))
done
PARALLEL_MEDIAN=$(median "${PARALLEL_TIMES[@]}")
PARALLEL_RATE=$(awk -v n="$PARALLEL_VMS" -v us="$PARALLEL_MEDIAN" 'BEGIN { printf "%.1f", n / (us / 1e6) }')
PARALLEL_FAILED=$(($(wc -l <"$TEST_DIR/failures.log")))
if [[ $PARALLEL_FAILED -gt 0 ]]; then
        echo "# failed VMs (the first 5):"
        head -n 5 "$TEST_DIR/failures.log" | sed 's/^/#   /'
fi

# ---------------------------------------------------------------------------------------------
# 1. vm list vs. systemctl list-units, with RUNNING running VMs among RECORDS records.

running=$(running_units)
for ((i = 1; running < RUNNING; i++)); do
        vm vm create --nics 0 --name "extra$i" "$IMAGE" >/dev/null || die "VM extra$i was not created"
        vm vm start "extra$i" >/dev/null || die "VM extra$i did not start"
        running=$(running_units)
done
[[ $running -eq $RUNNING ]] || die "$running VMs run, expected $RUNNING"

existing=$(find "$ROOT/vms" -mindepth 1 -maxdepth 1 -type d | wc -l)
echo "# writing $((RECORDS - existing)) VM records next to the $existing real ones"
template=$ROOT/vms/$TEMPLATE_ID/vm.json
# One jq run prints every record as one line "ID NAME JSON": the template with its id and name
# replaced in every string (paths, unit name and kernel command line included), and created_at
# one second apart.
jq -c -r --arg old "$TEMPLATE_ID" --arg old_name bench-create --argjson first "$((existing + 1))" \
        --argjson last "$RECORDS" '
        . as $vm
        | range($first; $last + 1)
        | . as $i
        | ($i | tostring) as $n
        | ("f0000000000" + ("00000" + $n)[-5:]) as $id
        | ("record" + $n) as $name
        | ("2026-01-01T00:00:00Z" | fromdateiso8601 + $i | todateiso8601 | sub("Z$"; ".000000000Z")) as $created
        | $vm
        | walk(if type == "string" then gsub($old; $id) | gsub($old_name; $name) else . end)
        | .id = $id | .name = $name | .created_at = $created | .updated_at = $created
        | "\($id) \($name) \(tojson)"' "$template" |
        while read -r id name record; do
                mkdir "$ROOT/vms/$id"
                printf '%s\n' "$record" >"$ROOT/vms/$id/vm.json"
                ln -s "../vms/$id" "$ROOT/names/$name"
        done
records=$(vm vm list -o json | jq length)
[[ $records -eq $RECORDS ]] || die "vm list shows $records VMs, expected $RECORDS"
listed_running=$(vm vm list -o json | jq '[.[] | select(.state == "running")] | length')
[[ $listed_running -eq $RUNNING ]] || die "vm list shows $listed_running running VMs, expected $RUNNING"

echo "# vm list vs. systemctl list-units: $RUNS runs each"
time_runs true "$VM_COMMAND vm list"
LIST_COCOON_TIMES=("${TIMES_US[@]}")
LIST_COCOON_CPU=$CPU_US
time_runs true "systemctl list-units 'cocoon-vm@*'"
LIST_PEER_TIMES=("${TIMES_US[@]}")
LIST_PEER_CPU=$CPU_US
LIST_COCOON_MEDIAN=$(median "${LIST_COCOON_TIMES[@]}")
LIST_PEER_MEDIAN=$(median "${LIST_PEER_TIMES[@]}")

# ---------------------------------------------------------------------------------------------
# Report

list_ratio=$(ratio "$LIST_COCOON_MEDIAN" "$LIST_PEER_MEDIAN")
list_goal=missed
[[ $(at_most "$list_ratio" 2) == met && $(at_most "$LIST_COCOON_MEDIAN" 50000) == met ]] && list_goal=met
start_ratio=$(ratio "$START_COCOON_MEDIAN" "$START_PEER_MEDIAN")
start_goal=$(at_most "$start_ratio" 1.5)
parallel_goal=missed
[[ $PARALLEL_FAILED -eq 0 && $(awk -v r="$PARALLEL_RATE" 'BEGIN { print (r >= 20) }') == 1 ]] && parallel_goal=met
create_goal=$(at_most "$CREATE_MEDIAN" 50000)

RESULTS+=("| 1. \`vm list\`, $RECORDS records, $RUNNING running | $(ms "$LIST_COCOON_MEDIAN") | \`systemctl list-units 'cocoon-vm@*'\`: $(ms "$LIST_PEER_MEDIAN") | ${list_ratio}× | ≤ 2× and ≤ 50 ms | $list_goal |")
RESULTS+=("| 2. \`vm start\`, no NIC | $(ms "$START_COCOON_MEDIAN") | \`systemd-run\` + ping: $(ms "$START_PEER_MEDIAN") | ${start_ratio}× | ≤ 1.5× | $start_goal |")
RESULTS+=("| 3. $PARALLEL_VMS × (\`vm create\` + \`vm start\`), $PARALLEL_JOBS at a time | $(awk -v us="$PARALLEL_MEDIAN" 'BEGIN { printf "%.2f s", us / 1e6 }'), $PARALLEL_RATE VMs/s, $PARALLEL_FAILED failed | – | – | all start, ≥ 20 VMs/s | $parallel_goal |")
RESULTS+=("| 4. \`vm create --nics 0 --storage 10G\` | $(ms "$CREATE_MEDIAN") | – | – | ≤ 50 ms | $create_goal |")

DETAILS+=("- 1. \`vm list\`$(cpu_note "$LIST_COCOON_CPU"), runs: $(list_us "${LIST_COCOON_TIMES[@]}"); \`systemctl list-units\`$(cpu_note "$LIST_PEER_CPU"), runs: $(list_us "${LIST_PEER_TIMES[@]}")")
DETAILS+=("- 2. \`vm start\`$(cpu_note "$START_COCOON_CPU"), runs: $(list_us "${START_COCOON_TIMES[@]}"); \`systemd-run\` script$(cpu_note "$START_PEER_CPU"), runs: $(list_us "${START_PEER_TIMES[@]}"). One curl ping of a running VMM takes $(ms "$PING_MEDIAN") (median), which the peer pays for each try.")
DETAILS+=("- 3. rounds: $(for ((i = 0; i < PARALLEL_ROUNDS; i++)); do awk -v us="${PARALLEL_TIMES[i]}" -v n="$PARALLEL_VMS" -v f="${PARALLEL_FAILURES[i]}" 'BEGIN { printf "%.2f s (%.1f VMs/s, %d failed)", us / 1e6, n / (us / 1e6), f }'; ((i == PARALLEL_ROUNDS - 1)) || echo -n ", "; done)")
DETAILS+=("- 4. \`vm create\`$(cpu_note "$CREATE_CPU") (mkfs.ext4 included), runs: $(list_us "${CREATE_TIMES[@]}")")

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
cocoon_revision=$("$COCOON" version | sed -n 's/^Git hash:[[:space:]]*//p')
buildtype=$(meson introspect "$(dirname "$COCOON")" --buildoptions 2>/dev/null |
        jq -r '.[] | select(.name == "buildtype") | .value' 2>/dev/null || true)
if [[ -n $HYPERFINE ]]; then
        timer="$("$HYPERFINE" --version) (\`hyperfine -N --warmup 2 --runs $RUNS\`, with \`--prepare\` for the untimed step before each run)"
else
        timer="bash's EPOCHREALTIME around each of $RUNS runs after 2 warm-up runs (hyperfine is not installed)"
fi

section=$(
        cat <<EOF

## VM lifecycle: cocoon vs. systemctl and systemd-run, $(date -u +%Y-%m-%d)

All commands run inside a systemd lab (tests/lib/systemd-lab.sh: systemd as PID 1 of its own
namespaces) with the Cloud Hypervisor test double (tests/ch-double) as \`cloud-hypervisor\`, so
the VMM starts, creates its API socket and idles, but boots no guest. Times are medians of
wall time measured inside the lab.

- Machine: $(nproc) CPUs ($cpu), $ram RAM, Linux $(uname -r), $LAB_SYSTEMD_VERSION; load
  average (1, 5, 15 min) $LOAD_BEFORE before and $LOAD_AFTER after the run
- Cocoon: $cocoon_revision${buildtype:+, meson buildtype $buildtype}
- Command: \`$INVOCATION\` (COCOON=${COCOON#"$REPO"/})
- Timer: $timer
- 1: $RECORDS VM records, $RUNNING of them running. The running ones and a few stopped ones are
  real VMs; the rest are copies of a real record with a new id, name and created_at.
  \`cocoon --root-dir DIR vm list\` vs. \`systemctl list-units 'cocoon-vm@*'\`, output to
  /dev/null.
- 2: \`cocoon --root-dir DIR vm start NAME\` vs. a /bin/sh script running \`systemd-run
  --unit=$PEER_UNIT --slice=cocoon.slice --property=Type=exec --property=KillMode=mixed
  --property=StandardOutput=journal --property=StandardError=journal -- ARGV\`, with ARGV the
  ExecStart of the VM's unit, then \`curl --unix-socket API.SOCK http://localhost/api/v1/vmm.ping\`
  every $PING_INTERVAL_MS ms until it responds. Before each run, both units are stopped (not timed).
  Cocoon's unit also runs the console relay as ExecStartPost, which the peer does not.
- 3: \`seq | xargs -P$PARALLEL_JOBS -n1\` of a script running \`cocoon vm create --nics 0 --name
  NAME IMAGE && cocoon vm start NAME\`, $PARALLEL_ROUNDS rounds of $PARALLEL_VMS new VMs; the time is the median round.
- 4: \`cocoon --root-dir DIR vm create --nics 0 --storage 10G --name NAME IMAGE\`, the VM
  removed (not timed) before each run. The test image has 2 layers.

| Measurement | Cocoon | Peer | Ratio | Goal | Met |
| --- | ---: | ---: | ---: | --- | --- |
$(printf '%s\n' "${RESULTS[@]}")

Goals are targets, not asserted.

$(printf '%s\n' "${DETAILS[@]}")
EOF
)

echo "$section"
if [[ $RECORD -eq 1 ]]; then
        mkdir -p "$(dirname "$OUTPUT")"
        echo "$section" >>"$OUTPUT"
        echo "# appended to $OUTPUT"
fi
