#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end test of the main job, as a user runs it: build the test image, push it to a
# docker-registry on 127.0.0.1, "cocoon image pull" it, and "cocoon vm run --hypervisor qemu
# --nics 1" it as a real guest (KVM when it works, TCG otherwise). The guest runs as the unit
# cocoon-vm@e2e.service of a real systemd manager in a network namespace of its own
# (tests/lib/systemd-lab.sh with LAB_NETNS=1), with its NIC on a CNI bridge (bridge +
# host-local plugins, configured in the test directory).
#
# It follows the guest's console with "cocoon vm logs -f" and checks what the guest's /sbin/init
# reports (tests/image/rootfs-init): the layers are mounted, OCI whiteouts work, the COW disk is
# writable and keeps its files across a restart, the hostname is the VM name, and the NIC has
# the CNI address and reaches its gateway. It types a command on "cocoon vm console" through a
# pseudo-terminal (tests/console/pty-driver.py). "cocoon vm stop" and "systemctl stop" both shut
# the guest down through the ACPI power button. "cocoon vm rm" and "cocoon gc" leave no unit,
# network namespace, TAP, veth, address lease or file behind.
#
# Environment: COCOON (required), COCOON_TEST_IMAGE_DIR (optional cache of the test image),
# CNI_BIN_DIR (default /usr/lib/cni), E2E_BOOT_TIMEOUT (seconds to wait for each boot, default
# 240), TEST_KEEP=1 keeps the temp dir.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/systemd-lab.sh
. "$HERE/../lib/systemd-lab.sh"
# shellcheck source-path=SCRIPTDIR source=e2e-lib.sh
. "$HERE/e2e-lib.sh"

TEST_STARTED=$EPOCHREALTIME
BOOT_TIMEOUT=${E2E_BOOT_TIMEOUT:-240}
VM_NAME=e2e
UNIT=cocoon-vm@$VM_NAME.service

[[ -n ${COCOON:-} && -x ${COCOON:-} ]] || test_skip "COCOON is not set to an executable"
test_require_root
command -v qemu-system-x86_64 >/dev/null || command -v qemu-system-aarch64 >/dev/null ||
        test_skip "QEMU is missing (Debian: apt-get install qemu-system-x86 ovmf)"
test_require_tools docker-registry skopeo curl jq busybox cpio gzip modprobe mkfs.ext4 python3 ip
e2e_require_cni
lab_require
test_init

# ---------------------------------------------------------------------------------------------
# Build, push and pull the image on the host: the registry listens on the host's 127.0.0.1.

IMAGE_DIR=${COCOON_TEST_IMAGE_DIR:-$TEST_DIR/image}
build_output=$("$HERE/../image/build-test-image.sh" "$IMAGE_DIR" 2>&1) ||
        test_abort "build-test-image.sh failed: $build_output"
echo "# ${build_output##*$'\n'}"
registry_start || test_abort "registry did not start"
registry_push "$IMAGE_DIR/oci" latest cocoon-test/vm || test_abort "push failed"
IMAGE=$REGISTRY/cocoon-test/vm:latest

capture cocoon_run image pull -q "$IMAGE"
assert_eq "image pull exits 0" 0 "$CAPTURE_STATUS"
[[ $CAPTURE_STATUS -eq 0 ]] || test_abort "image pull failed: $CAPTURE_STDERR"
assert_contains "the image is listed" "$(cocoon_run image list)" "cocoon-test/vm"
echo "# image built, pushed and pulled in $(e2e_seconds_since "$TEST_STARTED") s"
STORE_BEFORE_VM=$(e2e_store_snapshot)

e2e_write_cni_config 10.207.0
lab_start || test_abort "the systemd lab did not start"
cp "$HERE/../../units/cocoon.slice" "$LAB_UNIT_DIR/"
lab_exec systemctl daemon-reload

# marker_field LINE KEY: the value of KEY=value in the marker line.
marker_field() {
        sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}

check_marker() {
        local line=$1 boot_count=$2

        assert_eq "boot $boot_count: the hostname is the VM name" "$VM_NAME" "$(marker_field "$line" hostname)"
        assert_eq "boot $boot_count: the root is an overlay" overlay "$(marker_field "$line" root)"
        assert_eq "boot $boot_count: the upper layer is mounted" present "$(marker_field "$line" upper-layer)"
        assert_eq "boot $boot_count: the whiteout deleted the file" absent "$(marker_field "$line" deleted-file)"
        assert_eq "boot $boot_count: the opaque directory hides the lower layer" ok "$(marker_field "$line" opaque)"
        assert_eq "boot $boot_count: the COW disk is writable" writable "$(marker_field "$line" cow)"
        assert_eq "boot $boot_count: the COW disk kept the boot count" "$boot_count" \
                "$(marker_field "$line" boot-count)"
        assert_eq "boot $boot_count: the guest pinged its gateway" ok "$(marker_field "$line" ping-gateway)"
}

# Wait for the marker of boot N with "vm logs -f", check it, and report the boot time.
boot_and_check() {
        local n=$1 line

        if ! line=$(e2e_follow_until COCOON-TEST-MARKER "$n" "$BOOT_TIMEOUT"); then
                test_fail "boot $n: the guest printed its marker within $BOOT_TIMEOUT s" \
                        "$(tail -n 40 "$FOLLOW_LOG")"
                test_abort "the guest did not boot"
        fi
        test_ok "boot $n: vm logs -f shows the guest's marker"
        # rootfs-init starts acpid after the marker and the console shell after acpid, so the
        # shell's banner means the power button and the console work.
        e2e_follow_until "built-in shell" "$n" 30 >/dev/null ||
                test_fail "boot $n: the guest started its console shell" "$(tail -n 10 "$FOLLOW_LOG")"
        # The guest's uptime counts from the kernel's start, after firmware and decompression.
        echo "# boot $n: marker $(e2e_seconds_since "$BOOT_STARTED") s after the start command," \
                "$(marker_field "$line" uptime) s after the kernel started (guest uptime)"
        check_marker "$line" "$n"
        assert_contains "boot $n: the guest configured the CNI address" "$(cat "$FOLLOW_LOG")" \
                "COCOON-TEST-NET dev=eth0 addr=$IP/24 gateway=$GATEWAY"
}

# ---------------------------------------------------------------------------------------------
# Create and boot

BOOT_STARTED=$EPOCHREALTIME
capture vm vm run --hypervisor qemu --nics 1 --name "$VM_NAME" "$IMAGE"
assert_eq "vm run exits 0" 0 "$CAPTURE_STATUS"
[[ $CAPTURE_STATUS -eq 0 ]] || test_abort "vm run failed: $CAPTURE_STDERR"
[[ -z $CAPTURE_STDERR ]] || printf '%s\n' "$CAPTURE_STDERR" | sed 's/^/# vm run: /'
echo "# vm run returned after $(e2e_seconds_since "$BOOT_STARTED") s"
ID=$(vm_field .id)
IP=$(vm_field '.network_configs[0].network.ip')
GATEWAY=$(vm_field '.network_configs[0].network.gateway')
NETNS=cocoon-$ID
assert_eq "the VM runs on QEMU" qemu "$(vm_field .hypervisor)"
assert_true "the NIC got an address of the CNI range" grep -Eq '^10\.207\.0\.[0-9]+$' <<<"$IP"
assert_eq "the gateway is the bridge's" 10.207.0.1 "$GATEWAY"
assert_eq "the unit is active" active "$(unit_property ActiveState)"
assert_eq "the unit runs in the VM's network namespace" "/run/netns/$NETNS" "$(unit_property NetworkNamespacePath)"
EXEC_START=$(unit_property ExecStart)
assert_contains "the unit runs QEMU" "$EXEC_START" "qemu-system-"
assert_contains "QEMU opens the TAP" "$EXEC_START" "tap,id=net0,ifname=tap0,script=no,downscript=no"
accel=$(grep -o -- '-accel [a-z]*' <<<"$EXEC_START" || true)
echo "# accelerator: ${accel#-accel }"
assert_eq "one lease is taken" 1 "$(e2e_leases)"

e2e_follow_start
boot_and_check 1
e2e_follow_stop
log=$(cat "$FOLLOW_LOG")
assert_contains "the initramfs mounted the upper layer" "$log" "cocoon-init: mounted layer cocoon-layer1 (erofs)"
assert_contains "the initramfs mounted the base layer" "$log" "cocoon-init: mounted layer cocoon-layer0 (erofs)"
assert_contains "the initramfs mounted the COW disk" "$log" "cocoon-init: mounted cow cocoon-cow (ext4)"
assert_true "the follower was stopped" e2e_follow_gone

# ---------------------------------------------------------------------------------------------
# The console: type commands in the guest's shell and read their output.

CONSOLE_STARTED=$EPOCHREALTIME
# shellcheck disable=SC2016 # $((6*7)) is for the guest's shell
e2e_assert_console "the console runs a command in the guest" \
        "expect:Connected to VM $VM_NAME (escape character: ~, ~? for help)" \
        'send:\r' 'send:echo "answer=$((6*7))"\r' 'expect:answer=42\r\n' \
        'send:cat /etc/hostname\r' "expect:\\r\\n$VM_NAME\\r\\n" \
        'send:~.' "expect:Disconnected from VM $VM_NAME." exit:0 -- "$VM_NAME"
echo "# console session took $(e2e_seconds_since "$CONSOLE_STARTED") s"
assert_true "the typed command reached the journal" journal_has "answer=42"

# ---------------------------------------------------------------------------------------------
# Graceful stop with cocoon, start again: the COW disk keeps the boot count.

STOP_STARTED=$EPOCHREALTIME
capture vm vm stop "$VM_NAME"
assert_eq "vm stop exits 0" 0 "$CAPTURE_STATUS"
echo "# vm stop took $(e2e_seconds_since "$STOP_STARTED") s"
assert_eq "vm stop shut the guest down through the power button" 1 "$(journal_count COCOON-TEST-SHUTDOWN)"
assert_eq "the unit is inactive after vm stop" inactive "$(unit_property ActiveState)"
assert_eq "the VM is stopped" stopped "$(vm_field .state)"
assert_eq "vm stop takes the TAP down" DOWN "$(e2e_link_state "$NETNS" tap0)"

BOOT_STARTED=$EPOCHREALTIME
capture vm vm start "$VM_NAME"
assert_eq "vm start exits 0" 0 "$CAPTURE_STATUS"
assert_eq "the address survives the restart" "$IP" "$(vm_field '.network_configs[0].network.ip')"
e2e_follow_start
boot_and_check 2
e2e_follow_stop

# ---------------------------------------------------------------------------------------------
# systemctl stop takes the same graceful path (ExecStop= runs cocoon's shutdown hook).

STOP_STARTED=$EPOCHREALTIME
lab_exec systemctl stop "$UNIT"
echo "# systemctl stop took $(e2e_seconds_since "$STOP_STARTED") s"
assert_eq "systemctl stop shut the guest down through the power button" 2 \
        "$(journal_count COCOON-TEST-SHUTDOWN)"
assert_eq "the unit is inactive after systemctl stop" inactive "$(unit_property ActiveState)"
assert_eq "the VM is stopped after systemctl stop" stopped "$(vm_field .state)"
assert_eq "QEMU exited cleanly" 0 "$(unit_property ExecMainStatus)"

# ---------------------------------------------------------------------------------------------
# Remove and collect garbage: nothing of the VM is left.

capture vm vm rm "$VM_NAME"
assert_eq "vm rm exits 0" 0 "$CAPTURE_STATUS"
assert_eq "vm rm prints the id" "deleted VM: $ID" "$CAPTURE_STDOUT"
capture vm gc
assert_eq "gc exits 0" 0 "$CAPTURE_STATUS"
echo "# gc: ${CAPTURE_STDOUT//$'\n'/; }"
e2e_assert_vm_gone "$ID" "$VM_NAME"
after=$(e2e_store_snapshot)
if [[ $after == "$STORE_BEFORE_VM" ]]; then
        test_ok "the store is as it was before vm run"
else
        test_fail "the store is as it was before vm run" "$(diff <(echo "$STORE_BEFORE_VM") <(echo "$after") || true)"
fi

echo "# the whole test took $(e2e_seconds_since "$TEST_STARTED") s"
test_finish
