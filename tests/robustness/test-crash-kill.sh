#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Crash test: kill cocoon with SIGKILL at a random moment of "image pull", "vm create",
# "vm start", "vm stop" and "vm rm", then check that nothing is lost or left half-done.
#
# Each round runs one trial of every operation on a fresh VM. The delay before the kill is
# random between 0 and the duration of the operation, measured before the first round. After
# each kill:
#   - "cocoon gc" exits 0 and every record parses (jq);
#   - the killed operation left a state that the next command handles: a killed pull is pulled
#     again, a killed create left no record or a "creating" record that "vm rm --force" or an
#     aged gc removes, a killed start or stop is completed by running it again, and a killed rm
#     left either a VM that "vm rm --force" removes or a free name;
#   - the VM works afterwards: start, a graceful stop that presses the ACPI power button, rm.
# At the end of each round the store is aged past gc's thresholds (one hour for work
# directories and VM directories without a record, a day for "creating" records) and gc must
# leave no work directory, temp file, runtime directory, name or unit of a removed VM.
#
# Reduced run: 4 rounds (20 kills). COCOON_ROBUSTNESS_FULL=1: 20 rounds (100 kills).
# COCOON_ROBUSTNESS_ROUNDS overrides the count, COCOON_ROBUSTNESS_SEED fixes the random delays.
# Environment as for tests/integration/test-vm-lifecycle.sh: COCOON, CH_DOUBLE_DIR,
# COCOON_TEST_IMAGE_DIR, TEST_KEEP=1.

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
        ROUNDS=${COCOON_ROBUSTNESS_ROUNDS:-20}
else
        ROUNDS=${COCOON_ROBUSTNESS_ROUNDS:-4}
fi
SEED=${COCOON_ROBUSTNESS_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
echo "# $ROUNDS rounds, seed $SEED (set COCOON_ROBUSTNESS_SEED=$SEED to repeat the delays)"

# ---------------------------------------------------------------------------------------------
# Helpers

power_button_count() {
        lab_exec journalctl --no-pager -u "cocoon-vm@$1.service" -o cat 2>/dev/null |
                grep -cF "ACPI power button" || true
}

# Print the median of the durations of CMD... run 3 times, in seconds, after running PREPARE
# before each one.
measure() {
        local prepare=$1 times=() start

        shift
        for _ in 1 2 3; do
                eval "$prepare"
                start=$EPOCHREALTIME
                "$@" >/dev/null 2>&1 || true
                times+=("$(elapsed "$start")")
        done
        printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}

# Print a random delay between 0 and $1 seconds, with millisecond steps.
random_delay() {
        awk -v max="$1" -v r="$RANDOM" 'BEGIN { printf "%.3f", max * r / 32767 }'
}

# kill_during MAX_DELAY CMD...: start CMD (a cocoon command line), SIGKILL the cocoon process after
# a random delay and wait for it. Sets KILL_DELAY, and KILLED=1 when the process was still running.
kill_during() {
        local max=$1 launcher pid

        shift
        KILL_DELAY=$(random_delay "$max")
        KILLED=0
        if [[ $1 == pull ]]; then
                shift
                "$COCOON" --root-dir "$ROOT" "$@" >/dev/null 2>&1 &
                launcher=$!
                pid=$launcher
        else
                vm_bg "$@" >/dev/null 2>&1 &
                launcher=$!
                pid=$(cocoon_pid_of "$launcher") || pid=
        fi
        sleep "$KILL_DELAY"
        [[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true
        # A zombie accepts the signal too, so the exit status tells whether it hit a running
        # process. nsenter passes a deadly signal of its child on to itself.
        wait "$launcher" 2>/dev/null || [[ $? -ne 137 ]] || KILLED=1
}

# Age every work directory, VM directory and name past gc's thresholds, and move the updated_at
# of each "creating" record two days back, as if gc ran two days later.
age_store() {
        local old record

        old=$(date -u -d '-2 days' +%Y-%m-%dT%H:%M:%SZ)
        for record in "$ROOT"/vms/*/vm.json; do
                [[ -f $record ]] || continue
                [[ $(jq -r .state "$record" 2>/dev/null) == creating ]] || continue
                jq --arg t "$old" '.updated_at = $t' "$record" >"$record.aged"
                mv "$record.aged" "$record"
        done
        find "$ROOT/tmp" "$ROOT/vms" "$ROOT/names" -mindepth 1 -exec touch -h -d '-2 days' {} + 2>/dev/null || true
}

# The command run by the last capture exited 0.
assert_succeeds() {
        if [[ $CAPTURE_STATUS -eq 0 ]]; then
                test_ok "$1"
        else
                test_fail "$1" "exit status: $CAPTURE_STATUS" "stdout: $CAPTURE_STDOUT" "stderr: $CAPTURE_STDERR"
        fi
}

gc_ok() {
        capture vm gc
        if [[ $CAPTURE_STATUS -eq 0 ]]; then
                test_ok "$1"
        else
                test_fail "$1" "exit status: $CAPTURE_STATUS" "stdout: $CAPTURE_STDOUT" "stderr: $CAPTURE_STDERR"
        fi
}

# Print the state of VM $1 from "vm list", or "absent".
listed_state() {
        vm vm list -o json | jq -r --arg n "$1" '[.[] | select(.name == $n) | .state][0] // "absent"'
}

# The VM works: it starts with one VMM, a graceful stop presses the power button, it is removed.
check_vm_works() {
        local name=$1 label=$2 id presses

        id=$(vm_field "$name" .id)
        capture vm vm start "$name"
        assert_succeeds "$label: the VM starts afterwards"
        assert_eq "$label: one VMM runs" 1 "$(vmm_count "$id")"
        presses=$(power_button_count "$name")
        capture vm vm stop "$name"
        assert_eq "$label: the VM stops afterwards" "stopped: $id" "$CAPTURE_STDOUT"
        assert_eq "$label: the graceful stop pressed the power button" $((presses + 1)) \
                "$(power_button_count "$name")"
        capture vm vm rm "$name"
        assert_eq "$label: the VM is removed afterwards" "deleted VM: $id" "$CAPTURE_STDOUT"
}

# ---------------------------------------------------------------------------------------------
# Durations of the operations, measured before any kill.

D_PULL=$(measure "cocoon_run image rm '$IMAGE' >/dev/null 2>&1; cocoon_run gc >/dev/null 2>&1" \
        cocoon_run image pull -q "$IMAGE")
cocoon_run image pull -q "$IMAGE" >/dev/null
D_CREATE=$(measure "vm vm rm --force m >/dev/null 2>&1 || true" vm vm create --nics 0 --name m "$IMAGE")
D_START=$(measure "vm vm stop --force m >/dev/null 2>&1" vm vm start m)
D_STOP=$(measure "vm vm start m >/dev/null 2>&1" vm vm stop m)
D_RM=$(measure "vm vm create --nics 0 --name m2 '$IMAGE' >/dev/null 2>&1; vm vm start m2 >/dev/null 2>&1" \
        vm vm rm --force m2)
vm vm rm --force m >/dev/null
echo "# measured durations (s): pull $D_PULL, create $D_CREATE, start $D_START, stop $D_STOP, rm --force $D_RM"

declare -A OUTCOMES=()
outcome() {
        OUTCOMES[$1]=$((${OUTCOMES[$1]:-0} + 1))
}

TRIALS=0
KILLS=0
START_ALL=$EPOCHREALTIME

for ((round = 1; round <= ROUNDS; round++)); do
        name=crash$round

        # --- image pull: the image is removed and its blobs collected first, so the pull is fresh.
        cocoon_run image rm "$IMAGE" >/dev/null
        cocoon_run gc >/dev/null
        kill_during "$D_PULL" pull image pull -q "$IMAGE"
        TRIALS=$((TRIALS + 1)) KILLS=$((KILLS + KILLED))
        echo "# round $round: pull killed after $KILL_DELAY s (killed: $KILLED)"
        gc_ok "pull $round: gc succeeds after the kill"
        check_records "pull $round: every record parses"
        capture cocoon_run image pull -q "$IMAGE"
        assert_succeeds "pull $round: the next pull succeeds"
        assert_eq "pull $round: the image is listed once" 1 \
                "$(cocoon_run image list -o json | jq --arg i "$IMAGE" '[.[] | select(.name == $i)] | length')"

        # --- vm create
        kill_during "$D_CREATE" vm create --nics 0 --name "$name" "$IMAGE"
        TRIALS=$((TRIALS + 1)) KILLS=$((KILLS + KILLED))
        gc_ok "create $round: gc succeeds after the kill"
        check_records "create $round: every record parses"
        state=$(listed_state "$name")
        echo "# round $round: create killed after $KILL_DELAY s (killed: $KILLED), VM state: $state"
        outcome "create:$state"
        case $state in
        absent)
                test_ok "create $round: the killed create left no VM"
                ;;
        creating)
                test_ok "create $round: the killed create left a creating record"
                assert_fails_with "Failed to start VM '$name': VM '$name' is still being created" \
                        vm vm start "$name"
                if ((round % 2 == 1)); then
                        # A day later, gc removes the unfinished VM by itself.
                        age_store
                        gc_ok "create $round: gc succeeds a day later"
                        assert_eq "create $round: gc removed the unfinished VM" absent "$(listed_state "$name")"
                else
                        capture vm vm rm --force "$name"
                        assert_succeeds "create $round: rm --force removes the unfinished VM"
                fi
                ;;
        created)
                test_ok "create $round: the create finished before the kill"
                vm vm rm "$name" >/dev/null
                ;;
        *)
                test_fail "create $round: the killed create left a VM in state '$state'"
                vm vm rm --force "$name" >/dev/null 2>&1 || true
                ;;
        esac
        capture vm vm create --nics 0 --name "$name" "$IMAGE"
        assert_succeeds "create $round: the name can be created again"
        abort_if_failed "the VM of round $round cannot be created"
        id=$(vm_field "$name" .id)

        # --- vm start
        kill_during "$D_START" vm start "$name"
        TRIALS=$((TRIALS + 1)) KILLS=$((KILLS + KILLED))
        gc_ok "start $round: gc succeeds after the kill"
        check_records "start $round: every record parses"
        echo "# round $round: start killed after $KILL_DELAY s (killed: $KILLED), unit $(unit_state "$name")"
        capture vm vm start "$name"
        assert_succeeds "start $round: the next start succeeds"
        outcome "start:${CAPTURE_STDOUT%%:*}"
        assert_eq "start $round: one VMM runs" 1 "$(vmm_count "$id")"
        assert_eq "start $round: list says running" running "$(listed_state "$name")"

        # --- vm stop, forced in even rounds: a forced stop writes a marker that must not outlive it.
        stop_flags=()
        ((round % 2 == 1)) || stop_flags=(--force)
        kill_during "$D_STOP" vm stop "${stop_flags[@]}" "$name"
        TRIALS=$((TRIALS + 1)) KILLS=$((KILLS + KILLED))
        gc_ok "stop $round: gc succeeds after the kill"
        check_records "stop $round: every record parses"
        echo "# round $round: stop ${stop_flags[*]} killed after $KILL_DELAY s (killed: $KILLED), unit $(unit_state "$name")"
        capture vm vm stop "$name"
        assert_succeeds "stop $round: the next stop succeeds"
        assert_eq "stop $round: no VMM is left" 0 "$(vmm_count "$id")"
        assert_eq "stop $round: list says stopped" stopped "$(listed_state "$name")"
        if [[ -e $ROOT/run/$id/stop-force ]]; then
                test_fail "stop $round: no forced-stop marker outlives the killed stop" \
                        "$ROOT/run/$id/stop-force exists, so the next graceful stop skips the guest"
        else
                test_ok "stop $round: no forced-stop marker outlives the killed stop"
        fi
        capture vm vm start "$name"
        presses=$(power_button_count "$name")
        capture vm vm stop "$name"
        assert_eq "stop $round: a graceful stop after the killed stop presses the power button" \
                $((presses + 1)) "$(power_button_count "$name")"

        # --- vm rm --force, of a running VM in odd rounds.
        ((round % 2 == 0)) || vm vm start "$name" >/dev/null
        kill_during "$D_RM" vm rm --force "$name"
        TRIALS=$((TRIALS + 1)) KILLS=$((KILLS + KILLED))
        gc_ok "rm $round: gc succeeds after the kill"
        check_records "rm $round: every record parses"
        state=$(listed_state "$name")
        echo "# round $round: rm killed after $KILL_DELAY s (killed: $KILLED), VM state: $state"
        outcome "rm:$state"
        if [[ $state != absent ]]; then
                missing=$(vm_field "$name" '.storage_configs[].path' | while read -r disk; do
                        [[ -e $disk ]] || echo "$disk"
                done)
                assert_eq "rm $round: a VM that outlives the killed rm keeps its disks" "" "$missing"
        fi
        if [[ $state == absent ]]; then
                assert_eq "rm $round: a removed VM has no unit" inactive "$(unit_state "$name")"
                assert_eq "rm $round: a removed VM has no VMM" 0 "$(vmm_count "$id")"
                capture vm vm create --nics 0 --name "$name" "$IMAGE"
                assert_succeeds "rm $round: the name of the removed VM is free"
        fi
        check_vm_works "$name" "rm $round"

        # --- a day later, gc leaves nothing of the round behind.
        age_store
        gc_ok "round $round: gc succeeds a day later"
        check_no_leaks "round $round: nothing is left a day later"
done

TOTAL=$(elapsed "$START_ALL")
echo "# $TRIALS trials, $KILLS kills while cocoon ran, in $TOTAL s"
while IFS= read -r key; do
        echo "# outcome $key: ${OUTCOMES[$key]}"
done < <(printf '%s\n' "${!OUTCOMES[@]}" | sort)
assert_eq "no VM is left" "No VMs found." "$(vm vm list)"

test_finish
