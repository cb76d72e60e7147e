#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# VMM faults: the VMM killed with SIGKILL, a VMM that fails to start, a VMM that hangs on
# shutdown, and a unit property that systemd rejects. The VMM runs under systemd, so the
# environment of cocoon never reaches it: each fault is a wrapper script named cloud-hypervisor
# in BIN_DIR, first on PATH, that sets a fault knob of the CH test double and execs it.
#
# The reduced and the full run are the same here (each fault is one deterministic case).
# Environment as for tests/integration/test-vm-lifecycle.sh.

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

# install_wrapper BODY: make BIN_DIR/cloud-hypervisor a script with BODY; the double is $DOUBLE.
install_wrapper() {
        printf '#!/bin/sh\nDOUBLE=%s/cloud-hypervisor\n%s\n' "$CH_DOUBLE_DIR" "$1" >"$BIN_DIR/cloud-hypervisor"
        chmod 755 "$BIN_DIR/cloud-hypervisor"
}

remove_wrapper() {
        rm -f "$BIN_DIR/cloud-hypervisor"
}

main_pid() {
        lab_exec systemctl show -p MainPID --value "cocoon-vm@$1.service"
}

# ---------------------------------------------------------------------------------------------
# The VMM is killed with SIGKILL: the unit fails, the VM shows "error", and it starts again.

vm vm create --nics 0 --name killed "$IMAGE" >/dev/null
ID=$(vm_field killed .id)
vm vm start killed >/dev/null
pid=$(main_pid killed)
assert_true "the VMM has a main PID" test "$pid" -gt 0
lab_exec kill -KILL "$pid"
assert_eq "a VMM killed with SIGKILL leaves the unit failed" failed \
        "$(lab_wait_unit_property cocoon-vm@killed.service ActiveState failed 10)"
assert_eq "the unit result names the signal" signal \
        "$(lab_exec systemctl show -p Result --value cocoon-vm@killed.service)"
assert_eq "list shows the VM in error" error \
        "$(vm vm list -o json | jq -r '.[] | select(.name == "killed") | .state')"
assert_eq "inspect shows the VM in error" error "$(vm_field killed .state)"
check_records "the records parse after the VMM died"
capture vm vm start killed
assert_eq "the VM starts again" "started: $ID" "$CAPTURE_STDOUT"
assert_eq "one VMM runs after the restart" 1 "$(vmm_count "$ID")"
assert_eq "list shows it running" running "$(vm_field killed .state)"
capture vm vm rm --force killed
assert_eq "the VM is removed" "deleted VM: $ID" "$CAPTURE_STDOUT"

# ---------------------------------------------------------------------------------------------
# The VMM fails to start: "vm start" fails with the VMM's own message.

VMM_MESSAGE="Error: Cloud Hypervisor exited with the following chain of errors: 0: Error booting VM 1: cannot open /dev/kvm: No such file or directory"
# The wrapper answers --version as the real VMM does, because Cocoon asks for it first.
install_wrapper "[ \"\$1\" = --version ] && exec \"\$DOUBLE\" --version
echo '$VMM_MESSAGE' >&2
exit 1"
vm vm create --nics 0 --name failing "$IMAGE" >/dev/null
ID=$(vm_field failing .id)
start=$EPOCHREALTIME
capture vm vm start failing
echo "# the failed start took $(elapsed "$start") s"
echo "# its stderr: $CAPTURE_STDERR"
assert_eq "a VMM that exits 1 fails the start" 1 "$CAPTURE_STATUS"
assert_eq "the error carries the VMM's message" \
        "Failed to start VM 'failing': $BIN_DIR/cloud-hypervisor exited during start: $VMM_MESSAGE" \
        "$CAPTURE_STDERR"
assert_true "no VMM is left" test "$(vmm_count "$ID")" -eq 0
state=$(vm_field failing .state)
assert_true "the VM is not shown running after a failed start (state: $state)" test "$state" != running
remove_wrapper
capture vm vm start failing
assert_eq "the VM starts once the VMM works" "started: $ID" "$CAPTURE_STDOUT"
vm vm rm --force failing >/dev/null

# ---------------------------------------------------------------------------------------------
# The VMM hangs on shutdown: it ignores the power button and SIGTERM. "vm stop" still completes,
# because systemd sends SIGKILL after TimeoutStopSec, which Cocoon sets to StopTimeoutSec + 10 s.

cat >"$TEST_DIR/cocoon.conf" <<EOF
[VM]
StopTimeoutSec=2
EOF
STOP_TIMEOUT=2
install_wrapper "export CH_DOUBLE_HANG_ON_SIGTERM=1 CH_DOUBLE_IGNORE_POWER_BUTTON=1
exec \"\$DOUBLE\" \"\$@\""
vm --config "$TEST_DIR/cocoon.conf" vm create --nics 0 --name hang "$IMAGE" >/dev/null
ID=$(vm_field hang .id)
vm --config "$TEST_DIR/cocoon.conf" vm start hang >/dev/null
TIMEOUT_STOP_USEC=$(lab_exec systemctl show -p TimeoutStopUSec --value cocoon-vm@hang.service)
assert_eq "TimeoutStopSec is StopTimeoutSec + 10 s" 12s "$TIMEOUT_STOP_USEC"
# systemd's SIGKILL at the end of TimeoutStopSec and the reaping after it take a moment more.
LIMIT=$((STOP_TIMEOUT + 12 + 2))
start=$EPOCHREALTIME
capture vm --config "$TEST_DIR/cocoon.conf" vm stop hang
took=$(elapsed "$start")
echo "# vm stop of a hanging VMM took $took s (limit StopTimeoutSec + TimeoutStopSec = $LIMIT s)"
assert_eq "vm stop of a hanging VMM completes" "stopped: $ID" "$CAPTURE_STDOUT"
assert_true "it completes within StopTimeoutSec + TimeoutStopSec ($took s <= $LIMIT s)" \
        awk -v t="$took" -v l="$LIMIT" 'BEGIN { exit !(t <= l) }'
assert_true "it waited for the guest first ($took s >= $STOP_TIMEOUT s)" \
        awk -v t="$took" -v l="$STOP_TIMEOUT" 'BEGIN { exit !(t >= l) }'
assert_eq "no VMM is left" 0 "$(vmm_count "$ID")"
journal=$(lab_exec journalctl --no-pager -u cocoon-vm@hang.service -o cat 2>/dev/null || true)
assert_contains "systemd escalated to SIGKILL" "$journal" "Killing process"
assert_eq "the VM is stopped" stopped "$(vm_field hang .state)"
vm vm rm --force hang >/dev/null
remove_wrapper

# ---------------------------------------------------------------------------------------------
# Properties: values that pass Cocoon's check but that systemd rejects when the unit starts.

# prop_case PROPERTY EXPECTED_ERROR: a VM with PROPERTY is created; "vm start" fails with
# EXPECTED_ERROR, leaves no unit, and the VM stays usable (removed at the end).
prop_case() {
        local property=$1 expected=$2 name=prop$((++PROP_N))

        capture vm vm create --nics 0 --name "$name" --property "$property" "$IMAGE"
        assert_eq "$property passes Cocoon's check" 0 "$CAPTURE_STATUS"
        assert_fails_with "$expected" vm vm start "$name"
        echo "# $property: $CAPTURE_STDERR"
        assert_eq "$property: no unit is left" inactive "$(unit_state "$name")"
        assert_true "$property: the VM is not shown running" test "$(vm_field "$name" .state)" != running
        capture vm vm rm "$name"
        assert_eq "$property: the VM is removed" 0 "$CAPTURE_STATUS"
}
PROP_N=0
prop_case TasksMax=0 \
        "Failed to start VM 'prop1': systemd refused to start cocoon-vm@prop1.service: Value specified in TasksMax is out of range"

# Values Cocoon rejects never reach systemd.
assert_fails_with "Failed to create a VM from '$IMAGE': invalid value '0%' for CPUQuota: expected a percentage such as 50%" \
        vm vm create --nics 0 --name propbad --property CPUQuota=0% "$IMAGE"
assert_fails_with "Failed to create a VM from '$IMAGE': invalid value '-1' for TasksMax: expected a number or 'infinity'" \
        vm vm create --nics 0 --name propbad --property TasksMax=-1 "$IMAGE"

check_records "every record parses at the end"
check_no_leaks "nothing is left at the end"
assert_eq "no VM is left" "No VMs found." "$(vm vm list)"

test_finish
