#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# End-to-end test of cloud images, as a user runs them: build a small qcow2 cloud image
# (tests/e2e/build-cloud-image.sh: GPT, EFI system partition, systemd-boot, the Debian kernel and
# a busybox initramfs that reads the NoCloud seed), serve it from python3's http.server on
# 127.0.0.1, "cocoon image pull" the URL, and "cocoon vm run --hypervisor qemu --nics 1
# --root-password ... --ssh-key ..." it. QEMU boots it under UEFI (OVMF) as the unit
# cocoon-vm@e2e-cloud.service of a real systemd manager in a network namespace of its own, with
# the NIC on a CNI bridge.
#
# The guest reports what the cidata disk holds (tests/e2e/cloud-guest-init): the hostname and
# instance id from meta-data, that user-data has a SHA-512 crypt hash of the root password (the
# test checks that the password itself is nowhere), the SSH key, and the network-config, which
# the guest applies before it pings the gateway. After "cocoon vm stop" and "vm start" the seed
# is gone and the disk kept the guest's boot count. "vm rm", "image rm" and "gc" leave nothing.
#
# Environment: COCOON (required), COCOON_TEST_IMAGE_DIR (optional: the cloud image is cached in
# COCOON_TEST_IMAGE_DIR-cloud), CNI_BIN_DIR (default /usr/lib/cni), E2E_BOOT_TIMEOUT (seconds to
# wait for each boot, default 240), TEST_KEEP=1 keeps the temp dir.

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
VM_NAME=e2e-cloud
UNIT=cocoon-vm@$VM_NAME.service
# A password that shows up nowhere else, so that finding it anywhere means a leak.
ROOT_PASSWORD=e2e-Cloud-Pa55-$RANDOM$RANDOM

[[ -n ${COCOON:-} && -x ${COCOON:-} ]] || test_skip "COCOON is not set to an executable"
test_require_root
[[ $(uname -m) == x86_64 ]] || test_skip "the cloud image is built for x86-64 UEFI"
command -v qemu-system-x86_64 >/dev/null || test_skip "QEMU is missing (Debian: apt-get install qemu-system-x86 ovmf)"
[[ -r /usr/share/OVMF/OVMF_CODE_4M.fd ]] || test_skip "OVMF is missing (Debian: apt-get install ovmf)"
[[ -r /usr/lib/systemd/boot/efi/systemd-bootx64.efi ]] ||
        test_skip "systemd-boot is missing (Debian: apt-get install systemd-boot-efi)"
test_require_tools busybox cpio gzip modprobe sfdisk mkfs.vfat mcopy mmd qemu-img python3 curl jq ip \
        ssh-keygen
e2e_require_cni
lab_require
test_init

# ---------------------------------------------------------------------------------------------
# Build the image, serve it over HTTP on the host's 127.0.0.1, pull it.

CLOUD_DIR=${COCOON_TEST_IMAGE_DIR:+$COCOON_TEST_IMAGE_DIR-cloud}
CLOUD_DIR=${CLOUD_DIR:-$TEST_DIR/cloud-image}
build_output=$("$HERE/build-cloud-image.sh" "$CLOUD_DIR" 2>&1) ||
        test_abort "build-cloud-image.sh failed: $build_output"
echo "# ${build_output##*$'\n'}"

mkdir -p "$TEST_DIR/www"
ln "$CLOUD_DIR/cloud.qcow2" "$TEST_DIR/www/e2e-cloud.qcow2" 2>/dev/null ||
        cp "$CLOUD_DIR/cloud.qcow2" "$TEST_DIR/www/e2e-cloud.qcow2"
python3 -m http.server --bind 127.0.0.1 --directory "$TEST_DIR/www" 0 >"$TEST_DIR/http.log" 2>&1 &
HTTP_PID=$!
test_on_exit "kill $HTTP_PID"
HTTP_PORT=
for _ in $(seq 100); do
        HTTP_PORT=$(grep -o 'port [0-9]*' "$TEST_DIR/http.log" | head -n 1 | cut -d' ' -f2) || true
        [[ -z $HTTP_PORT ]] || break
        sleep 0.1
done
[[ -n $HTTP_PORT ]] || test_abort "http.server did not start: $(cat "$TEST_DIR/http.log")"
URL=http://127.0.0.1:$HTTP_PORT/e2e-cloud.qcow2

capture cocoon_run image pull -q "$URL"
assert_eq "image pull of the URL exits 0" 0 "$CAPTURE_STATUS"
[[ $CAPTURE_STATUS -eq 0 ]] || test_abort "image pull failed: $CAPTURE_STDERR"
assert_contains "the cloud image is listed" "$(cocoon_run image list)" "e2e-cloud.qcow2"
echo "# image built, served and pulled in $(e2e_seconds_since "$TEST_STARTED") s"
STORE_BEFORE_VM=$(e2e_store_snapshot)

ssh-keygen -q -t ed25519 -N '' -C e2e@cocoon-test -f "$TEST_DIR/id_e2e"
e2e_write_cni_config 10.208.0
lab_start || test_abort "the systemd lab did not start"
cp "$HERE/../../units/cocoon.slice" "$LAB_UNIT_DIR/"
lab_exec systemctl daemon-reload

marker_field() {
        sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}

# Wait for the marker of boot N with "vm logs -f", and set BOOT_LINE to it.
wait_boot() {
        local n=$1

        e2e_follow_start
        if ! BOOT_LINE=$(e2e_follow_until COCOON-CLOUD-MARKER "$n" "$BOOT_TIMEOUT"); then
                test_fail "boot $n: the guest printed its marker within $BOOT_TIMEOUT s" \
                        "$(tail -n 40 "$FOLLOW_LOG")"
                test_abort "the guest did not boot"
        fi
        test_ok "boot $n: vm logs -f shows the guest's marker"
        # The console shell starts last, so the guest is ready for the console and the power button.
        e2e_follow_until "built-in shell" "$n" 30 >/dev/null ||
                test_fail "boot $n: the guest started its console shell" "$(tail -n 10 "$FOLLOW_LOG")"
        e2e_follow_stop
        echo "# boot $n: marker $(e2e_seconds_since "$BOOT_STARTED") s after the start command," \
                "$(marker_field "$BOOT_LINE" uptime) s after the kernel started (guest uptime)"
}

# ---------------------------------------------------------------------------------------------
# Create and boot under UEFI

BOOT_STARTED=$EPOCHREALTIME
capture vm --root-password "$ROOT_PASSWORD" vm run --hypervisor qemu --nics 1 --name "$VM_NAME" \
        --ssh-key "$TEST_DIR/id_e2e.pub" "$URL"
assert_eq "vm run exits 0" 0 "$CAPTURE_STATUS"
[[ $CAPTURE_STATUS -eq 0 ]] || test_abort "vm run failed: $CAPTURE_STDERR"
echo "# vm run returned after $(e2e_seconds_since "$BOOT_STARTED") s"
ID=$(vm_field .id)
IP=$(vm_field '.network_configs[0].network.ip')
GATEWAY=$(vm_field '.network_configs[0].network.gateway')
MAC=$(vm_field '.network_configs[0].mac')
DATA=$ROOT/vms/$ID
EXEC_START=$(unit_property ExecStart)
assert_eq "the unit is active" active "$(unit_property ActiveState)"
assert_contains "QEMU boots OVMF from pflash" "$EXEC_START" "if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on"
assert_contains "the VM has its own UEFI variable store" "$EXEC_START" "if=pflash,format=raw,unit=1,file=$DATA/efivars.fd"
assert_true "the variable store exists" test -s "$DATA/efivars.fd"
assert_contains "the overlay is disk 0" "$EXEC_START" "file=$DATA/overlay.qcow2,if=none,id=disk0,format=qcow2"
assert_contains "disk 0 boots first" "$EXEC_START" "virtio-blk-pci,drive=disk0,bootindex=0"
assert_contains "the cidata disk is attached" "$EXEC_START" "file=$DATA/cidata.img"
assert_true "no kernel is passed to QEMU" test "${EXEC_START/ -kernel /}" == "$EXEC_START"

wait_boot 1
line=$BOOT_LINE
log=$(cat "$FOLLOW_LOG")
assert_eq "the hostname is the VM name, from meta-data" "$VM_NAME" "$(marker_field "$line" hostname)"
assert_eq "the instance id is the VM id, from meta-data" "$ID" "$(marker_field "$line" instance-id)"
assert_eq "user-data has a SHA-512 crypt hash of the root password" sha512-hash \
        "$(marker_field "$line" root-password)"
assert_eq "user-data has the SSH key" 1 "$(marker_field "$line" ssh-keys)"
assert_eq "the seed has a network-config" present "$(marker_field "$line" network-config)"
assert_eq "the cidata disk is attached on the first boot" present "$(marker_field "$line" cidata)"
assert_eq "the guest pinged its gateway" ok "$(marker_field "$line" ping-gateway)"
assert_eq "the guest's disk starts empty" 1 "$(marker_field "$line" boot-count)"
assert_contains "OVMF started the bootloader of the boot disk" "$log" "BdsDxe: starting Boot"
assert_contains "the kernel's EFI stub got the initrd from systemd-boot" "$log" "EFI stub: Loaded initrd"
# cloud-init accepts either case. ISO 9660 volume ids are upper case, Joliet ones keep the case.
assert_true "the seed is ISO 9660 labelled cidata with the three files" grep -Eq \
        "^COCOON-CLOUD-SEED label=(cidata|CIDATA) files=meta-data,network-config,user-data\$" "$FOLLOW_LOG"
assert_contains "network-config gives the CNI address, gateway and DNS to the NIC with the VM's MAC" "$log" \
        "COCOON-CLOUD-NET dev=eth0 mac=$MAC addr=$IP/24 gateway=$GATEWAY dns=$E2E_DNS"

# The password is stored hashed only: not in the store, the seed or the guest's output.
assert_true "the seed holds a SHA-512 crypt hash" grep -qaF "\$6\$" "$DATA/cidata.img"
assert_eq "the root password is nowhere in the store" "" "$(grep -rlaF -- "$ROOT_PASSWORD" "$ROOT" || true)"
assert_eq "the root password is not in the journal" 0 "$(e2e_journal | grep -cF -- "$ROOT_PASSWORD" || true)"
assert_eq "the root password is not in the unit" 0 \
        "$(lab_exec systemctl show "$UNIT" | grep -cF -- "$ROOT_PASSWORD" || true)"

# The console of a UEFI guest is its first serial port.
e2e_assert_console "the console runs a command in the cloud guest" \
        "expect:Connected to VM $VM_NAME" 'send:\r' 'send:cat /etc/hostname\r' "expect:\\r\\n$VM_NAME\\r\\n" \
        'send:~.' "expect:Disconnected from VM $VM_NAME." exit:0 -- "$VM_NAME"

# ---------------------------------------------------------------------------------------------
# Stop, start: the seed is only attached until the first boot, and the disk keeps its writes.

STOP_STARTED=$EPOCHREALTIME
capture vm vm stop "$VM_NAME"
assert_eq "vm stop exits 0" 0 "$CAPTURE_STATUS"
echo "# vm stop took $(e2e_seconds_since "$STOP_STARTED") s"
assert_eq "vm stop shut the guest down through the power button" 1 "$(journal_count COCOON-TEST-SHUTDOWN)"
assert_eq "the VM is stopped" stopped "$(vm_field .state)"

BOOT_STARTED=$EPOCHREALTIME
capture vm vm start "$VM_NAME"
assert_eq "vm start exits 0" 0 "$CAPTURE_STATUS"
EXEC_START=$(unit_property ExecStart)
assert_true "the cidata disk is not attached again" test "${EXEC_START/cidata.img/}" == "$EXEC_START"
wait_boot 2
line=$BOOT_LINE
assert_eq "boot 2: the guest sees no seed" absent "$(marker_field "$line" cidata)"
assert_eq "boot 2: the disk kept the guest's boot count" 2 "$(marker_field "$line" boot-count)"

STOP_STARTED=$EPOCHREALTIME
lab_exec systemctl stop "$UNIT"
echo "# systemctl stop took $(e2e_seconds_since "$STOP_STARTED") s"
assert_eq "systemctl stop shut the guest down through the power button" 2 \
        "$(journal_count COCOON-TEST-SHUTDOWN 2)"
assert_eq "QEMU exited cleanly" 0 "$(unit_property ExecMainStatus)"

# ---------------------------------------------------------------------------------------------
# Remove the VM and the image, collect garbage: nothing is left.

capture vm vm rm "$VM_NAME"
assert_eq "vm rm exits 0" 0 "$CAPTURE_STATUS"
capture vm gc
assert_eq "gc exits 0" 0 "$CAPTURE_STATUS"
e2e_assert_vm_gone "$ID" "$VM_NAME"
after=$(e2e_store_snapshot)
if [[ $after == "$STORE_BEFORE_VM" ]]; then
        test_ok "the store is as it was before vm run"
else
        test_fail "the store is as it was before vm run" "$(diff <(echo "$STORE_BEFORE_VM") <(echo "$after") || true)"
fi

capture cocoon_run image rm "$URL"
assert_eq "image rm exits 0" 0 "$CAPTURE_STATUS"
capture vm gc
assert_eq "gc after image rm exits 0" 0 "$CAPTURE_STATUS"
assert_eq "no file is left in the store" "" \
        "$(find "$ROOT" -type f -not -path "$ROOT/locks/*" -not -path "$ROOT/run/qemu-accelerator" | head -n 3)"

echo "# the whole test took $(e2e_seconds_since "$TEST_STARTED") s"
test_finish
