#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end test of the main job: pull the test image from a docker-registry on 127.0.0.1 and
# boot it as a real guest with the QEMU backend (KVM when it works, TCG otherwise). The guest
# runs as the unit cocoon-vm@e2e.service of a real systemd manager (tests/lib/systemd-lab.sh). It
# checks what the guest's /sbin/init reports on the console (tests/image/rootfs-init): the layers
# are mounted, OCI whiteouts work, the COW disk is writable and keeps its files across a restart,
# and the hostname is the VM name. "cocoon vm stop" and "systemctl stop" both shut the guest down
# through the ACPI power button, and "cocoon vm rm" leaves no unit and no files.
#
# Environment: COCOON (required), COCOON_TEST_IMAGE_DIR (optional cache of the test image),
# E2E_BOOT_TIMEOUT (seconds to wait for each boot, default 240), TEST_KEEP=1 keeps the temp dir.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/systemd-lab.sh
. "$HERE/../lib/systemd-lab.sh"

TEST_STARTED=$EPOCHREALTIME
BOOT_TIMEOUT=${E2E_BOOT_TIMEOUT:-240}
UNIT=cocoon-vm@e2e.service

[[ -n ${COCOON:-} && -x ${COCOON:-} ]] || test_skip "COCOON is not set to an executable"
test_require_root
command -v qemu-system-x86_64 >/dev/null || command -v qemu-system-aarch64 >/dev/null ||
        test_skip "QEMU is missing (Debian: apt-get install qemu-system-x86 ovmf)"
test_require_tools docker-registry skopeo curl jq busybox cpio gzip modprobe mkfs.ext4
lab_require
test_init

seconds_since() {
        awk -v start="$1" -v end="$EPOCHREALTIME" 'BEGIN { printf "%.1f", end - start }'
}

IMAGE_DIR=${COCOON_TEST_IMAGE_DIR:-$TEST_DIR/image}
build_output=$("$HERE/../image/build-test-image.sh" "$IMAGE_DIR" 2>&1) ||
        test_abort "build-test-image.sh failed: $build_output"
registry_start || test_abort "registry did not start"
registry_push "$IMAGE_DIR/oci" latest cocoon-test/vm || test_abort "push failed"
IMAGE=$REGISTRY/cocoon-test/vm:latest

ROOT=$TEST_DIR/root
cocoon_run image pull -q "$IMAGE" >/dev/null || test_abort "image pull failed"
echo "# image built, pushed and pulled in $(seconds_since "$TEST_STARTED") s"

lab_start || test_abort "the systemd lab did not start"
cp "$HERE/../../units/cocoon.slice" "$LAB_UNIT_DIR/"
lab_exec systemctl daemon-reload

# ---------------------------------------------------------------------------------------------
# Helpers

vm() {
        lab_exec "$COCOON" --root-dir "$ROOT" "$@"
}

unit_property() {
        lab_exec systemctl show -p "$1" --value "$UNIT"
}

# The unit's journal, one "SECONDS.MICROSECONDS MESSAGE" line per entry.
journal() {
        lab_exec journalctl --no-pager -a -u "$UNIT" -o short-unix 2>/dev/null | grep -v '^-- ' || true
}

# Follow the journal until a line contains TEXT for the COUNT-th time, for at most SECONDS.
# Prints that line.
wait_journal() {
        local text=$1 count=$2 seconds=$3 line

        line=$(lab_exec timeout "$seconds" journalctl --no-pager -a -u "$UNIT" -o short-unix -f -n all |
                grep -F --line-buffered -m "$count" -- "$text" | tail -n 1) || true
        [[ -n $line ]] || return 1
        echo "$line"
}

# Succeed once a line contains TEXT for the COUNT-th time, within SECONDS.
# shellcheck disable=SC2317 # called through assert_true
journal_shows() {
        wait_journal "$@" >/dev/null
}

# marker_field LINE KEY: the value of KEY=value in the marker line.
marker_field() {
        sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}

check_marker() {
        local line=$1 boot_count=$2

        assert_eq "boot $boot_count: the hostname is the VM name" e2e "$(marker_field "$line" hostname)"
        assert_eq "boot $boot_count: the root is an overlay" overlay "$(marker_field "$line" root)"
        assert_eq "boot $boot_count: the upper layer is mounted" present "$(marker_field "$line" upper-layer)"
        assert_eq "boot $boot_count: the whiteout deleted the file" absent "$(marker_field "$line" deleted-file)"
        assert_eq "boot $boot_count: the opaque directory hides the lower layer" ok "$(marker_field "$line" opaque)"
        assert_eq "boot $boot_count: the COW disk is writable" writable "$(marker_field "$line" cow)"
        assert_eq "boot $boot_count: the COW disk kept the boot count" "$boot_count" \
                "$(marker_field "$line" boot-count)"
}

# Wait for the marker of boot N, check it, and report the boot time.
boot_and_check() {
        local n=$1 line

        if ! line=$(wait_journal COCOON-TEST-MARKER "$n" "$BOOT_TIMEOUT"); then
                test_fail "boot $n: the guest printed its marker within $BOOT_TIMEOUT s" \
                        "$(journal | tail -n 40)"
                test_abort "the guest did not boot"
        fi
        test_ok "boot $n: the guest printed its marker"
        # The guest's uptime counts from the kernel's start, after firmware and decompression.
        echo "# boot $n: marker $(seconds_since "$BOOT_STARTED") s after the start command," \
                "$(marker_field "$line" uptime) s after the kernel started (guest uptime)"
        check_marker "$line" "$n"
}

# ---------------------------------------------------------------------------------------------
# Create and boot

BOOT_STARTED=$EPOCHREALTIME
capture vm vm run --hypervisor qemu --nics 0 --name e2e "$IMAGE"
assert_eq "vm run exits 0" 0 "$CAPTURE_STATUS"
[[ $CAPTURE_STATUS -eq 0 ]] || test_abort "vm run failed: $CAPTURE_STDERR"
[[ -z $CAPTURE_STDERR ]] || printf '%s\n' "$CAPTURE_STDERR" | sed 's/^/# vm run: /'
echo "# vm run returned after $(seconds_since "$BOOT_STARTED") s"
ID=$(vm vm inspect e2e | jq -r .id)
assert_eq "the VM runs on QEMU" qemu "$(vm vm inspect e2e | jq -r .hypervisor)"
assert_eq "the unit is active" active "$(unit_property ActiveState)"
assert_contains "the unit runs QEMU" "$(unit_property ExecStart)" "qemu-system-"
accel=$(unit_property ExecStart | grep -o -- '-accel [a-z]*' || true)
echo "# accelerator: ${accel#-accel }"

boot_and_check 1
log=$(journal)
assert_contains "the initramfs mounted the upper layer" "$log" "cocoon-init: mounted layer cocoon-layer1 (erofs)"
assert_contains "the initramfs mounted the base layer" "$log" "cocoon-init: mounted layer cocoon-layer0 (erofs)"
assert_contains "the initramfs mounted the COW disk" "$log" "cocoon-init: mounted cow cocoon-cow (ext4)"

# ---------------------------------------------------------------------------------------------
# Graceful stop with cocoon, start again: the COW disk keeps the boot count.

STOP_STARTED=$EPOCHREALTIME
capture vm vm stop e2e
assert_eq "vm stop exits 0" 0 "$CAPTURE_STATUS"
echo "# vm stop took $(seconds_since "$STOP_STARTED") s"
assert_true "vm stop shut the guest down through the power button" \
        journal_shows COCOON-TEST-SHUTDOWN 1 10
assert_eq "the unit is inactive after vm stop" inactive "$(unit_property ActiveState)"
assert_eq "the VM is stopped" stopped "$(vm vm inspect e2e | jq -r .state)"

BOOT_STARTED=$EPOCHREALTIME
capture vm vm start e2e
assert_eq "vm start exits 0" 0 "$CAPTURE_STATUS"
boot_and_check 2

# ---------------------------------------------------------------------------------------------
# systemctl stop takes the same graceful path (ExecStop= runs cocoon's shutdown hook).

STOP_STARTED=$EPOCHREALTIME
lab_exec systemctl stop "$UNIT"
echo "# systemctl stop took $(seconds_since "$STOP_STARTED") s"
assert_true "systemctl stop shut the guest down through the power button" \
        journal_shows COCOON-TEST-SHUTDOWN 2 10
assert_eq "the unit is inactive after systemctl stop" inactive "$(unit_property ActiveState)"
assert_eq "the VM is stopped after systemctl stop" stopped "$(vm vm inspect e2e | jq -r .state)"
assert_eq "QEMU exited cleanly" 0 "$(unit_property ExecMainStatus)"

# ---------------------------------------------------------------------------------------------
# Remove: no unit and no files are left.

capture vm vm rm e2e
assert_eq "vm rm exits 0" 0 "$CAPTURE_STATUS"
assert_eq "no unit is left" not-found "$(unit_property LoadState)"
assert_true "the VM's data directory is gone" test ! -e "$ROOT/vms/$ID"
assert_true "the VM's run directory is gone" test ! -e "$ROOT/run/$ID"
assert_eq "no VM is listed" "" "$(vm vm list -q)"
assert_eq "no QEMU process is left" 0 "$(lab_exec pgrep -c -f "qemu-system-.*$ID" || true)"

echo "# the whole test took $(seconds_since "$TEST_STARTED") s"
test_finish
