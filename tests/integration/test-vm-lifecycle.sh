#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration test of the VM lifecycle: "cocoon vm create|run|start|stop|list|inspect|rm|debug|
# autostart" against a real systemd manager (tests/lib/systemd-lab.sh) with the Cloud Hypervisor
# test double (tests/ch-double) first on PATH, using the test image pulled from a docker-registry
# on 127.0.0.1.
#
# Environment: COCOON (required), CH_DOUBLE_DIR (directory of the double's cloud-hypervisor),
# COCOON_TEST_IMAGE_DIR (optional cache of the test image), TEST_KEEP=1 keeps the temp dir.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/systemd-lab.sh
. "$HERE/../lib/systemd-lab.sh"

[[ -n ${COCOON:-} && -x ${COCOON:-} ]] || test_skip "COCOON is not set to an executable"
[[ -x ${CH_DOUBLE_DIR:-}/cloud-hypervisor ]] || test_skip "CH_DOUBLE_DIR has no cloud-hypervisor"
test_require_root
test_require_tools docker-registry skopeo curl jq busybox cpio gzip modprobe mkfs.ext4
lab_require
test_init

IMAGE_DIR=${COCOON_TEST_IMAGE_DIR:-$TEST_DIR/image}
build_output=$("$HERE/../image/build-test-image.sh" "$IMAGE_DIR" 2>&1) ||
        test_abort "build-test-image.sh failed: $build_output"
registry_start || test_abort "registry did not start"
registry_push "$IMAGE_DIR/oci" latest cocoon-test/vm || test_abort "push failed"
IMAGE=$REGISTRY/cocoon-test/vm:latest

ROOT=$TEST_DIR/root
cocoon_run image pull -q "$IMAGE" >/dev/null || test_abort "image pull failed"

lab_start || test_abort "the systemd lab did not start"
cp "$HERE/../../units/cocoon.slice" "$LAB_UNIT_DIR/"
lab_exec systemctl daemon-reload

# ---------------------------------------------------------------------------------------------
# Helpers

# Run cocoon inside the lab, with the Cloud Hypervisor double first on PATH.
vm() {
        PATH="$CH_DOUBLE_DIR:$PATH" lab_exec "$COCOON" --root-dir "$ROOT" "$@"
}

unit_state() {
        lab_exec systemctl show -p ActiveState --value "cocoon-vm@$1.service"
}

journal_of() {
        lab_exec journalctl --no-pager -u "cocoon-vm@$1.service" -o cat 2>/dev/null || true
}

# Wait up to 10 s until the journal of VM $1 holds $3 lines containing $2.
# shellcheck disable=SC2317 # called through assert_true
wait_journal_count() {
        local name=$1 text=$2 count=$3


        for _ in $(seq 100); do
                [[ $(journal_of "$name" | grep -cF -- "$text" || true) -ge $count ]] && return 0
                sleep 0.1
        done
        return 1
}

vm_field() {
        vm vm inspect "$1" | jq -r "$2"
}

vmm_count() {
        lab_exec pgrep -c -f "api-socket path=.*/$1/api.sock" || true
}

# assert_usage_error EXPECTED_LINE CMD...: exit status 2 and the line on stderr.
assert_usage_error() {
        local expected=$1

        shift
        capture "$@"
        if [[ $CAPTURE_STATUS -eq 2 ]] && grep -Fxq -- "$expected" <<<"$CAPTURE_STDERR"; then
                test_ok "usage error: $expected"
        else
                test_fail "usage error: $expected" "exit status: $CAPTURE_STATUS (expected 2)" \
                        "stderr: $CAPTURE_STDERR"
        fi
}

# ---------------------------------------------------------------------------------------------
# Bad input: each a clear error, and nothing changes on disk.

before=$(store_snapshot)
assert_usage_error "invalid VM name 'bad_name': '_' is not allowed in a hostname." \
        vm vm create --nics 0 --name bad_name "$IMAGE"
assert_usage_error "invalid VM name '-x': it must start with a letter or a digit." \
        vm vm create --nics 0 --name -x "$IMAGE"
assert_usage_error "invalid size 'lots': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --memory lots "$IMAGE"
assert_usage_error "invalid CPU count 'two': expected a number from 1 to 256." \
        vm vm create --nics 0 --cpu two "$IMAGE"
assert_usage_error "unknown hypervisor 'xen': expected cloud-hypervisor, qemu or auto." \
        vm vm create --nics 0 --hypervisor xen "$IMAGE"
assert_fails_with "Failed to create a VM from '$IMAGE': memory of 67108864 bytes is below the minimum of 128M" \
        vm vm create --nics 0 --memory 64M "$IMAGE"
assert_usage_error "invalid CPU count '0': expected a number from 1 to 256." \
        vm vm create --nics 0 --cpu 0 "$IMAGE"
assert_fails_with "Failed to create a VM from '$IMAGE': storage of 1048576 bytes is below the minimum of 1G" \
        vm vm create --nics 0 --storage 1M "$IMAGE"
assert_fails_with "Failed to create a VM from '$REGISTRY/cocoon-test/nope': image '$REGISTRY/cocoon-test/nope' not found; pull it first with 'cocoon image pull $REGISTRY/cocoon-test/nope'" \
        vm vm create --nics 0 "$REGISTRY/cocoon-test/nope"
assert_fails_like "Failed to create a VM from '.*': unsupported property 'ExecStart': Cocoon accepts .*" \
        vm vm create --nics 0 --property ExecStart=/bin/sh "$IMAGE"
assert_fails_with "Failed to create a VM from '$IMAGE': invalid value '50' for CPUQuota: expected a percentage such as 50%" \
        vm vm create --nics 0 --property CPUQuota=50 "$IMAGE"
assert_store_unchanged "failed creates leave the store unchanged" "$before"

# ---------------------------------------------------------------------------------------------
# Create

capture vm vm create --nics 0 --name web --property MemoryMax=2G "$IMAGE"
assert_eq "create exits 0" 0 "$CAPTURE_STATUS"
assert_contains "create names the VM" "$CAPTURE_STDOUT" "(name: web, state: created)"
ID=$(vm_field web .id)
assert_eq "the id has 16 hex digits" 16 "${#ID}"
assert_eq "state is created" created "$(vm_field web .state)"
assert_eq "the unit is named after the VM" cocoon-vm@web.service "$(vm_field web .unit)"
assert_eq "the hypervisor is recorded" cloud-hypervisor "$(vm_field web .hypervisor)"
COW=$ROOT/vms/$ID/cow.raw
assert_true "the COW disk exists" test -f "$COW"
assert_eq "the COW disk has the default 10G size" 10737418240 "$(stat -c %s "$COW")"
assert_true "the COW disk is sparse" test "$(stat -c %b "$COW")" -lt 409600
assert_contains "the COW disk is ext4" "$(file -b "$COW" 2>/dev/null || blkid -o value -s TYPE "$COW")" "ext4"
assert_eq "layers are disks cocoon-layer0 and 1, then the COW" "cocoon-layer0 cocoon-layer1 cocoon-cow" \
        "$(vm_field web '[.storage_configs[].serial] | join(" ")')"
assert_contains "the kernel command line follows the guest contract" "$(vm_field web .boot_config.cmdline)" \
        "boot=cocoon-overlay cocoon.layers=cocoon-layer1,cocoon-layer0 cocoon.cow=cocoon-cow cocoon.hostname=web"

before=$(store_snapshot)
assert_fails_with "Failed to create a VM from '$IMAGE': VM name 'web' already exists (id: $ID)" \
        vm vm create --nics 0 --name web "$IMAGE"
assert_store_unchanged "a duplicate name changes nothing" "$before"

capture vm vm list
assert_contains "list shows the created VM" "$CAPTURE_STDOUT" "$ID"
assert_eq "list header" "ID NAME STATE CPU MEMORY STORAGE IP IMAGE CREATED HYPERVISOR" \
        "$(head -n1 <<<"$CAPTURE_STDOUT" | tr -s ' ')"

# ---------------------------------------------------------------------------------------------
# Start, status, graceful stop

capture vm vm start web
assert_eq "start exits 0" 0 "$CAPTURE_STATUS"
assert_eq "start prints the id" "started: $ID" "$CAPTURE_STDOUT"
assert_eq "the unit is active" active "$(unit_state web)"
assert_eq "inspect says running" running "$(vm_field web .state)"
assert_true "inspect shows the VMM's pid" test "$(vm_field web .pid)" -gt 0
status=$(lab_exec systemctl status --no-pager cocoon-vm@web.service 2>&1 || true)
assert_contains "systemctl status shows the description" "$status" "Cocoon VM web ($IMAGE)"
assert_contains "systemctl status shows the VMM argv" "$status" "--api-socket path="
assert_contains "the unit is in cocoon.slice" "$(lab_exec systemctl show -p Slice --value cocoon-vm@web.service)" "cocoon.slice"
assert_eq "--property reaches the unit" 2147483648 "$(lab_exec systemctl show -p MemoryMax --value cocoon-vm@web.service)"
assert_true "the guest's console reaches the journal" wait_journal_count web "cocoon-double: guest booted" 1

capture vm vm start web
assert_eq "a second start is a no-op" "already running: $ID" "$CAPTURE_STDOUT"
assert_eq "one VMM runs" 1 "$(vmm_count "$ID")"

capture vm vm stop web
assert_eq "stop exits 0" 0 "$CAPTURE_STATUS"
assert_eq "stop prints the id" "stopped: $ID" "$CAPTURE_STDOUT"
assert_true "stop pressed the power button" wait_journal_count web "ACPI power button" 1
assert_eq "the unit is inactive" inactive "$(unit_state web)"
assert_eq "inspect says stopped" stopped "$(vm_field web .state)"
assert_true "stopped_at is set" test "$(vm_field web .stopped_at)" != null
capture vm vm stop web
assert_eq "stopping a stopped VM is a no-op" "not running: $ID" "$CAPTURE_STDOUT"

# systemctl stop takes the same graceful path through ExecStop=.
vm vm start web >/dev/null
lab_exec systemctl stop cocoon-vm@web.service
assert_true "systemctl stop pressed the power button" wait_journal_count web "ACPI power button" 2
assert_eq "inspect says stopped after systemctl stop" stopped "$(vm_field web .state)"

# --force skips the power button.
vm vm start web >/dev/null
capture vm vm stop --force web
assert_eq "forced stop exits 0" 0 "$CAPTURE_STATUS"
assert_eq "a forced stop does not press the power button" 2 \
        "$(journal_of web | grep -cF "ACPI power button" || true)"
assert_eq "the unit is inactive after a forced stop" inactive "$(unit_state web)"

# ---------------------------------------------------------------------------------------------
# Concurrency: two shells starting the same VM produce one VMM.

vm vm start web >/tmp/cocoon-start-1.$$ 2>&1 &
pid1=$!
vm vm start web >/tmp/cocoon-start-2.$$ 2>&1 &
pid2=$!
wait "$pid1" && status1=0 || status1=$?
wait "$pid2" && status2=0 || status2=$?
assert_eq "both concurrent starts succeed" "0 0" "$status1 $status2"
assert_eq "one of them started it, one found it running" "already running: $ID started: $ID" \
        "$(cat /tmp/cocoon-start-1.$$ /tmp/cocoon-start-2.$$ | sort | tr '\n' ' ' | sed 's/ $//')"
rm -f /tmp/cocoon-start-1.$$ /tmp/cocoon-start-2.$$
assert_eq "two concurrent starts run one VMM" 1 "$(vmm_count "$ID")"

# ---------------------------------------------------------------------------------------------
# The VMM dies: the VM shows an error, and a start brings it back.

lab_exec systemctl kill -s KILL cocoon-vm@web.service
for _ in $(seq 50); do [[ $(unit_state web) == failed ]] && break; sleep 0.1; done
assert_eq "a killed VMM leaves the unit failed" failed "$(unit_state web)"
assert_eq "list shows the VM in error" error "$(vm vm list -o json | jq -r '.[] | select(.name == "web") | .state')"
capture vm vm start web
assert_eq "a failed VM starts again" "started: $ID" "$CAPTURE_STDOUT"
assert_eq "running again" active "$(unit_state web)"

# ---------------------------------------------------------------------------------------------
# Remove

assert_fails_with "Failed to remove VM 'web': VM 'web' is running; stop it first or use --force" \
        vm vm rm web
assert_eq "a refused rm leaves the VM running" active "$(unit_state web)"
capture vm vm rm --force web
assert_eq "rm --force exits 0" 0 "$CAPTURE_STATUS"
assert_eq "rm prints the id" "deleted VM: $ID" "$CAPTURE_STDOUT"
assert_eq "no unit is left" inactive "$(unit_state web)"
assert_true "the VM's directory is gone" test ! -e "$ROOT/vms/$ID"
assert_true "the run directory is gone" test ! -e "$ROOT/run/$ID"
assert_true "the name is free" test ! -e "$ROOT/names/web"
assert_fails_with "Failed to inspect VM 'web': VM 'web' not found" vm vm inspect web

# ---------------------------------------------------------------------------------------------
# run, debug, autostart

capture vm vm run --nics 0 --name auto1 --autostart "$IMAGE"
assert_eq "run exits 0" 0 "$CAPTURE_STATUS"
assert_eq "run starts the VM" active "$(unit_state auto1)"
vm vm stop auto1 >/dev/null
capture vm vm autostart auto1 off
assert_eq "autostart off" false "$(vm_field auto1 .config.autostart)"
capture vm vm autostart auto1 on
assert_eq "autostart on" true "$(vm_field auto1 .config.autostart)"
vm vm create --nics 0 --name manual "$IMAGE" >/dev/null

sed -e "s|@BINDIR@/cocoon vm start|/usr/bin/env PATH=$CH_DOUBLE_DIR:/usr/sbin:/usr/bin:/sbin:/bin $COCOON --root-dir $ROOT vm start|" \
        "$HERE/../../units/cocoon-autostart.service.in" >"$LAB_UNIT_DIR/cocoon-autostart.service"
lab_exec systemctl daemon-reload
lab_exec systemctl start cocoon-autostart.service
assert_eq "the autostart unit starts flagged VMs" active "$(unit_state auto1)"
assert_eq "the autostart unit leaves other VMs alone" inactive "$(unit_state manual)"

capture vm vm debug --nics 0 --name dbg "$IMAGE"
assert_eq "debug exits 0" 0 "$CAPTURE_STATUS"
assert_contains "debug prints the unit" "$CAPTURE_STDOUT" "# cocoon-vm@dbg.service"
assert_contains "debug prints the VMM argv" "$CAPTURE_STDOUT" "--kernel $ROOT/boot/"
assert_true "debug creates nothing" test ! -e "$ROOT/names/dbg"

# A second VM with the default name points the user to --name.
vm vm create --nics 0 "$IMAGE" >/dev/null
DEFAULT_ID=$(vm_field cocoon-cocoon-test-vm .id)
assert_fails_with "Failed to create a VM from '$IMAGE': VM name 'cocoon-cocoon-test-vm' already exists (id: $DEFAULT_ID); the name was derived from the image, choose another with --name" \
        vm vm create --nics 0 "$IMAGE"
vm vm rm cocoon-cocoon-test-vm >/dev/null

vm vm rm --force auto1 manual >/dev/null
assert_eq "no VM is left" "No VMs found." "$(vm vm list)"
assert_eq "no cocoon unit is left" "" "$(lab_exec systemctl list-units --no-legend --all 'cocoon-vm@*' || true)"

# ---------------------------------------------------------------------------------------------
# Cloud images: a qcow2 overlay on the base, a cidata seed, UEFI firmware.

mkdir -p "$TEST_DIR/www"
qemu-img create -q -f raw "$TEST_DIR/www/cloud.img" 64M
python3 -m http.server --bind 127.0.0.1 --directory "$TEST_DIR/www" 0 >"$TEST_DIR/http.log" 2>&1 &
HTTP_PID=$!
test_on_exit "kill $HTTP_PID"
for _ in $(seq 50); do
        HTTP_PORT=$(grep -o 'port [0-9]*' "$TEST_DIR/http.log" | head -n1 | cut -d' ' -f2) && [[ -n $HTTP_PORT ]] && break
        sleep 0.1
done
CLOUD=http://127.0.0.1:$HTTP_PORT/cloud.img
cocoon_run image pull -q "$CLOUD" >/dev/null || test_fail "cloud image pull" "failed"

before=$(store_snapshot)
assert_fails_like "Failed to create a VM from '$CLOUD': UEFI firmware not found: looked in .*CLOUDHV.fd.*" \
        vm vm create --nics 0 --name cloud1 "$CLOUD"
assert_store_unchanged "missing firmware leaves the store unchanged" "$before"

mkdir -p "$ROOT/firmware"
head -c 2M /dev/zero >"$ROOT/firmware/CLOUDHV.fd"
ssh-keygen -q -t ed25519 -N '' -C test@cocoon -f "$TEST_DIR/id_test"
capture vm --root-password 's3cret-Pa55' vm create --nics 0 --name cloud1 \
        --storage 2G --ssh-key "$TEST_DIR/id_test.pub" "$CLOUD"
assert_eq "a cloud-image VM is created" 0 "$CAPTURE_STATUS"
CID=$(vm_field cloud1 .id)
assert_contains "the overlay is backed by the base blob" \
        "$(qemu-img info -U --output=json "$ROOT/vms/$CID/overlay.qcow2" | jq -r '."backing-filename"')" "$ROOT/blobs/sha256/"
assert_eq "the overlay grew to --storage" 2147483648 \
        "$(qemu-img info -U --output=json "$ROOT/vms/$CID/overlay.qcow2" | jq -r '."virtual-size"')"
assert_eq "the cidata seed has the label cidata" cidata "$(blkid -o value -s LABEL "$ROOT/vms/$CID/cidata.img" 2>/dev/null || echo missing)"
assert_true "the root password is not stored in plain text" \
        sh -c "! grep -rqa 's3cret-Pa55' '$ROOT'"
assert_true "the seed holds a SHA-512 crypt hash" grep -qaF "\$6\$" "$ROOT/vms/$CID/cidata.img"
assert_true "the seed holds the SSH key" grep -qa 'test@cocoon' "$ROOT/vms/$CID/cidata.img"
capture vm vm start cloud1
assert_eq "a cloud-image VM starts" "started: $CID" "$CAPTURE_STDOUT"
assert_contains "it boots with the firmware" "$(lab_exec systemctl show -p ExecStart --value cocoon-vm@cloud1.service)" \
        "--firmware $ROOT/firmware/CLOUDHV.fd"
vm vm rm --force cloud1 >/dev/null
cocoon_run image rm "$CLOUD" >/dev/null

# ---------------------------------------------------------------------------------------------
# gc: with the image removed and no VM left, every blob, boot file and leftover goes.

vm vm create --nics 0 --name keep "$IMAGE" >/dev/null
cocoon_run image rm "$IMAGE" >/dev/null
capture vm gc
assert_eq "gc exits 0" 0 "$CAPTURE_STATUS"
assert_true "gc keeps the blobs a VM uses" test "$(find "$ROOT/blobs/sha256" -name '*.erofs' | wc -l)" -eq 2
capture vm gc --dry-run
assert_contains "a dry run with nothing to do says so" "$CAPTURE_STDOUT" "gc: would remove 0 items"
vm vm rm keep >/dev/null
capture vm gc --dry-run
assert_contains "a dry run lists the blobs" "$CAPTURE_STDOUT" "Would remove blob sha256:"
assert_true "a dry run removes nothing" test "$(find "$ROOT/blobs/sha256" -name '*.erofs' | wc -l)" -eq 2
capture vm gc
assert_contains "gc reports what it removed" "$CAPTURE_STDOUT" "Removed blob sha256:"
assert_eq "no blob is left" "" "$(find "$ROOT/blobs" "$ROOT/boot" -mindepth 2 | head -n 3)"
assert_eq "nothing but empty directories is left in the store" "" \
        "$(find "$ROOT" -type f -not -path "$ROOT/locks/*" -not -path "$ROOT/firmware/*" | head -n 3)"

test_finish
