#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Concurrency test: N shells run random lifecycle commands (create, start, stop, stop --force,
# rm, rm --force, list, inspect) on M VMs for T seconds, with the CH test double as the VMM.
# While they run, a monitor checks every 0.5 s that no VM has two VMMs and that every record
# parses. At the end:
#   - every stderr line of every command matches one of the expected messages below;
#   - no VM has two VMMs, every record parses, and every VM left can be stopped and removed;
#   - nothing is left behind: no temp file, runtime directory, name or unit of a removed VM.
#
# Reduced run: 8 shells, 5 VMs, 20 s. COCOON_ROBUSTNESS_FULL=1: 16 shells, 10 VMs, 60 s.
# COCOON_ROBUSTNESS_SHELLS, _VMS and _SECONDS override them, COCOON_ROBUSTNESS_SEED fixes the
# random choices. Environment as for tests/integration/test-vm-lifecycle.sh.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/systemd-lab.sh
. "$HERE/../lib/systemd-lab.sh"
# shellcheck source-path=SCRIPTDIR source=lib-robustness.sh
. "$HERE/lib-robustness.sh"

robustness_require
test_init
robustness_setup

if [[ $FULL == 1 ]]; then
        SHELLS=${COCOON_ROBUSTNESS_SHELLS:-16} VMS=${COCOON_ROBUSTNESS_VMS:-10} DURATION=${COCOON_ROBUSTNESS_SECONDS:-60}
else
        SHELLS=${COCOON_ROBUSTNESS_SHELLS:-8} VMS=${COCOON_ROBUSTNESS_VMS:-5} DURATION=${COCOON_ROBUSTNESS_SECONDS:-20}
fi
SEED=${COCOON_ROBUSTNESS_SEED:-$((RANDOM * 32768 + RANDOM))}
echo "# $SHELLS shells, $VMS VMs, $DURATION s, seed $SEED"

# Every message a command may print on stderr when it loses a race. Anything else fails the test.
# NAME is a VM name of this test, ID a VM id.
NAME="cc[0-9]+"
ID="[0-9a-f]{16}"
ALLOWED=(
        "Failed to (start|stop|remove|inspect) VM '$NAME': VM '$NAME' not found"
        "Failed to create a VM from '.*': VM name '$NAME' already exists \\(id: $ID(, being created)?\\)"
        "Failed to (start|stop) VM '$NAME': VM '$NAME' is still being created"
        "Failed to remove VM '$NAME': VM '$NAME' is running; stop it first or use --force"
        "Failed to (start|stop) VM '$NAME': VM '$NAME' was removed"
)

OPS=(create start stop stop-force rm rm-force list inspect)

# worker INDEX: run random commands until DEADLINE. Each command's stderr lines go to
# $TEST_DIR/stderr.INDEX prefixed with the command, and one line per command to
# $TEST_DIR/ops.INDEX: "OP STATUS".
worker() {
        local index=$1 op name status err=$TEST_DIR/err.$1

        RANDOM=$((SEED + index))
        while [[ ${EPOCHREALTIME%.*} -lt $DEADLINE ]]; do
                op=${OPS[RANDOM % ${#OPS[@]}]}
                name=cc$((RANDOM % VMS + 1))
                status=0
                case $op in
                create) vm vm create --nics 0 --name "$name" "$IMAGE" >/dev/null 2>"$err" || status=$? ;;
                start) vm vm start "$name" >/dev/null 2>"$err" || status=$? ;;
                stop) vm vm stop "$name" >/dev/null 2>"$err" || status=$? ;;
                stop-force) vm vm stop --force "$name" >/dev/null 2>"$err" || status=$? ;;
                rm) vm vm rm "$name" >/dev/null 2>"$err" || status=$? ;;
                rm-force) vm vm rm --force "$name" >/dev/null 2>"$err" || status=$? ;;
                list) vm vm list >/dev/null 2>"$err" || status=$? ;;
                inspect) vm vm inspect "$name" >/dev/null 2>"$err" || status=$? ;;
                esac
                echo "$op $status" >>"$TEST_DIR/ops.$index"
                sed "s/^/$op $status: /" "$err" >>"$TEST_DIR/stderr.$index"
        done
}

# Print "ID COUNT" for each VM id with more than one VMM process. A task whose parent is itself
# a VMM is not a second VMM: under AddressSanitizer the leak checker clones a tracer with the
# same command line when the VMM exits.
duplicate_vmms() {
        lab_exec ps -eo pid=,ppid=,args= 2>/dev/null |
                awk '/api-socket path=/ { pid[$1] = 1; ppid[$1] = $2; line[$1] = $0 }
                     END { for (p in pid) if (!(ppid[p] in pid)) print line[p] }' |
                { grep -o 'api-socket path=[^ ]*/[0-9a-f]\{16\}/api.sock' || true; } |
                sed 's|.*/\([0-9a-f]\{16\}\)/api.sock|\1|' | sort | uniq -c | awk '$1 > 1 { print $2, $1 }' || true
}

# Records that exist and do not parse. A record removed between find and jq is no failure.
corrupt_records() {
        bad_records | grep -v 'No such file or directory' || true
}

# Two creates of one name at the same moment make one VM, ten times over.
duplicates=0
for ((i = 1; i <= 10; i++)); do
        vm vm create --nics 0 --name same "$IMAGE" >/dev/null 2>&1 &
        first=$!
        vm vm create --nics 0 --name same "$IMAGE" >/dev/null 2>&1 &
        second=$!
        wait "$first" "$second" || true
        count=$(vm vm list -o json | jq '[.[] | select(.name == "same")] | length')
        ((count <= 1)) || duplicates=$((duplicates + 1))
        for id in $(vm vm list -o json | jq -r '.[] | select(.name == "same") | .id'); do
                vm vm rm "$id" >/dev/null
        done
done
assert_eq "two concurrent creates of one name never make two VMs (10 tries)" 0 "$duplicates"

DEADLINE=$((${EPOCHREALTIME%.*} + DURATION))
WORKERS=()
for ((i = 1; i <= SHELLS; i++)); do
        worker "$i" &
        WORKERS+=($!)
done

SAMPLES=0
MAX_VMMS=0
DOUBLE=
CORRUPT=
while [[ ${EPOCHREALTIME%.*} -lt $DEADLINE ]]; do
        found=$(duplicate_vmms)
        [[ -z $found ]] || DOUBLE+="${DOUBLE:+$'\n'}at $(date +%T): $found"
        found=$(corrupt_records)
        [[ -z $found ]] || CORRUPT+="${CORRUPT:+$'\n'}at $(date +%T): $found"
        running=$(lab_exec pgrep -c -f 'api-socket path=' 2>/dev/null || true)
        ((running <= MAX_VMMS)) || MAX_VMMS=$running
        SAMPLES=$((SAMPLES + 1))
        sleep 0.5
done
for pid in "${WORKERS[@]}"; do
        wait "$pid" || true
done

echo "# the monitor took $SAMPLES samples, at most $MAX_VMMS VMMs ran at once"
assert_eq "no VM had two VMMs while the shells ran" "" "$DOUBLE"
assert_eq "no record was corrupt while the shells ran" "" "$CORRUPT"
assert_eq "no VM has two VMMs at the end" "" "$(duplicate_vmms)"
check_records "every record parses at the end"

# Totals per operation: commands run, and how many failed.
cat "$TEST_DIR"/ops.* >"$TEST_DIR/ops"
echo "# $(wc -l <"$TEST_DIR/ops") commands in $DURATION s:"
awk '{ n[$1]++; if ($2 != 0) f[$1]++ } END { for (o in n) printf "#   %-10s %5d run, %5d failed\n", o, n[o], f[o] }' \
        "$TEST_DIR/ops" | sort
assert_eq "list never fails" "" "$(grep '^list [^0]' "$TEST_DIR/ops" | head -n3 || true)"
assert_eq "every failed command exits 1" "" "$(awk '$2 != 0 && $2 != 1' "$TEST_DIR/ops" | sort -u)"

# Every stderr line must be an expected message.
cat "$TEST_DIR"/stderr.* >"$TEST_DIR/stderr" 2>/dev/null || : >"$TEST_DIR/stderr"
unexpected=$(sed 's/^[a-z-]* [0-9]*: //' "$TEST_DIR/stderr" | grep -vxE "$(IFS='|'; echo "${ALLOWED[*]}")" | sort | uniq -c || true)
echo "# stderr lines by message:"
sed -E 's/^[a-z-]+ [0-9]+: //; s/[0-9a-f]{16}/ID/g; s/cc[0-9]+/ccN/g' "$TEST_DIR/stderr" | sort | uniq -c |
        sed 's/^/#   /'
assert_eq "every stderr line is an expected message" "" "$unexpected"

# Names stay unique, and each VM is found by its name.
vm vm list -o json >"$TEST_DIR/list.json"
assert_eq "no two VMs share a name" "" "$(jq -r '.[].name' "$TEST_DIR/list.json" | sort | uniq -d)"
while read -r id name; do
        capture vm vm inspect "$name"
        assert_eq "VM $name ($id) is found by its name" "$id" "$(jq -r .id <<<"${CAPTURE_STDOUT:-null}" 2>/dev/null)"
done < <(jq -r '.[] | "\(.id) \(.name)"' "$TEST_DIR/list.json")

# Every VM left works: it stops and is removed, by id because a name may be lost (see above).
while read -r id name state; do
        [[ $state != creating ]] || test_fail "VM $name ($id) is left in state creating with no create running"
        capture vm vm stop "$id"
        assert_eq "VM $name ($id, state $state) stops at the end" 0 "$CAPTURE_STATUS"
        capture vm vm rm "$id"
        assert_eq "VM $name ($id) is removed at the end" 0 "$CAPTURE_STATUS"
done < <(jq -r '.[] | "\(.id) \(.name) \(.state)"' "$TEST_DIR/list.json")
assert_eq "no VMM is left" 0 "$(lab_exec pgrep -c -f 'api-socket path=' || true)"
check_no_leaks "nothing is left behind"

test_finish
