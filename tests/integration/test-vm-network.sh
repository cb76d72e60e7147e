#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration test of VM networking: "cocoon vm create --nics N" with real CNI plugins (bridge +
# host-local) inside a systemd lab that has a network namespace of its own (LAB_NETNS=1), so the
# bridge, the VM namespaces and their addresses exist only there. The Cloud Hypervisor test double
# opens each TAP the way the real one does, so a wrong TAP fails the start.
#
# Environment: COCOON, CH_DOUBLE_DIR (required); COCOON_TEST_IMAGE_DIR (optional cache).

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
test_require_tools docker-registry skopeo curl jq busybox cpio gzip modprobe mkfs.ext4 ip tc
CNI_BIN=/usr/lib/cni
[[ -x $CNI_BIN/bridge && -x $CNI_BIN/host-local ]] || test_skip "CNI plugins are not installed in $CNI_BIN"
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

CONF=$TEST_DIR/cni
IPAM=$TEST_DIR/ipam
mkdir -p "$CONF" "$IPAM"
cat >"$CONF/10-test.conflist" <<JSON
{ "cniVersion": "1.0.0", "name": "test-net",
  "plugins": [ { "type": "bridge", "bridge": "cni-test0", "isGateway": true, "ipMasq": false,
                 "ipam": { "type": "host-local", "dataDir": "$IPAM",
                           "ranges": [[{ "subnet": "10.203.0.0/24", "gateway": "10.203.0.1" }]],
                           "routes": [{ "dst": "0.0.0.0/0" }] } } ] }
JSON

export LAB_NETNS=1
lab_start || test_abort "the systemd lab did not start"

vm() {
        PATH="$CH_DOUBLE_DIR:$PATH" lab_exec "$COCOON" --root-dir "$ROOT" --cni-conf-dir "$CONF" \
                --cni-bin-dir "$CNI_BIN" --dns 10.203.0.53,1.1.1.1 "$@"
}

vm_field() {
        vm vm inspect "$1" | jq -r "$2"
}

link_state() {
        lab_exec ip -n "cocoon-$1" -o link show "$2" 2>/dev/null | grep -o 'state [A-Z]*' | cut -d' ' -f2
}

leases() {
        find "$IPAM" -type f -name '10.203.0.*' | wc -l
}

# ---------------------------------------------------------------------------------------------
# Bad input: clear errors, no namespace or lease left behind.

before=$(store_snapshot)
assert_fails_with "Failed to create a VM from '$IMAGE': invalid DNS server 'nine.nine': expected an IP address" \
        vm --dns nine.nine vm create --name bad "$IMAGE"
assert_fails_with "Failed to create a VM from '$IMAGE': CNI network 'nope' not found in $CONF (available: test-net)" \
        vm vm create --name bad --network nope "$IMAGE"
mkdir -p "$TEST_DIR/empty"
assert_fails_with "Failed to create a VM from '$IMAGE': no CNI network configuration in $TEST_DIR/empty" \
        vm --cni-conf-dir "$TEST_DIR/empty" vm create --name bad "$IMAGE"
assert_store_unchanged "failed creates leave the store unchanged" "$before"
assert_eq "failed creates leave no namespace" "" "$(lab_exec ip netns list)"
assert_eq "failed creates leave no lease" 0 "$(leases)"

# ---------------------------------------------------------------------------------------------
# One NIC

capture vm vm create --name n1 --cpu 2 "$IMAGE"
assert_eq "create with one NIC exits 0" 0 "$CAPTURE_STATUS"
ID=$(vm_field n1 .id)
IP=$(vm_field n1 '.network_configs[0].network.ip')
MAC=$(vm_field n1 '.network_configs[0].mac')
assert_true "the NIC got an address of the CNI range" grep -Eq '^10\.203\.0\.[0-9]+$' <<<"$IP"
assert_eq "the gateway is recorded" 10.203.0.1 "$(vm_field n1 '.network_configs[0].network.gateway')"
assert_eq "the prefix is recorded" 24 "$(vm_field n1 '.network_configs[0].network.prefix')"
assert_eq "the TAP is tap0" tap0 "$(vm_field n1 '.network_configs[0].tap')"
assert_eq "the netns is the VM's own" "/run/netns/cocoon-$ID" "$(vm_field n1 '.network_configs[0].netns_path')"
assert_eq "the guest reuses the veth's MAC" "$MAC" \
        "$(lab_exec ip -n "cocoon-$ID" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"
assert_eq "the veth keeps no IPv4 address (the guest owns it)" "" \
        "$(lab_exec ip -n "cocoon-$ID" -4 -o addr show eth0)"
assert_contains "the TAP is multi-queue for 2 vCPUs" \
        "$(lab_exec ip netns exec "cocoon-$ID" cat /sys/class/net/tap0/tun_flags)" "0x5902"
assert_contains "the kernel command line carries ip= with DNS" "$(vm_field n1 .boot_config.cmdline)" \
        "net.ifnames=0 ip=$IP::10.203.0.1:255.255.255.0:n1:eth0:off:10.203.0.53:1.1.1.1"
assert_contains "vm list shows the address" "$(vm vm list)" "$IP"
assert_contains "tc redirects the veth to the TAP" \
        "$(lab_exec tc -n "cocoon-$ID" filter show dev eth0 ingress)" "Redirect to device tap0"
assert_contains "tc redirects the TAP to the veth" \
        "$(lab_exec tc -n "cocoon-$ID" filter show dev tap0 ingress)" "Redirect to device eth0"

capture vm vm start n1
assert_eq "a VM with a NIC starts" "started: $ID" "$CAPTURE_STDOUT"
assert_eq "the unit runs in the VM's namespace" "/run/netns/cocoon-$ID" \
        "$(lab_exec systemctl show -p NetworkNamespacePath --value cocoon-vm@n1.service)"
assert_eq "the TAP is up while the VM runs" UP "$(link_state "$ID" tap0 || true)"

vm vm stop n1 >/dev/null
assert_eq "stop takes the TAP down" DOWN "$(link_state "$ID" tap0 || true)"
assert_true "stop takes the veth down" test "$(link_state "$ID" eth0 || true)" != UP

vm vm start n1 >/dev/null
assert_eq "start brings the TAP up again" UP "$(link_state "$ID" tap0 || true)"
lab_exec systemctl stop cocoon-vm@n1.service
assert_eq "systemctl stop takes the TAP down too" DOWN "$(link_state "$ID" tap0 || true)"

# A host reboot loses /run/netns: the next start rebuilds it with the same address and MAC.
lab_exec ip netns del "cocoon-$ID"
capture vm vm start n1
assert_eq "start after a lost namespace succeeds" "started: $ID" "$CAPTURE_STDOUT"
assert_eq "the address survives the rebuild" "$IP" "$(vm_field n1 '.network_configs[0].network.ip')"
assert_eq "the MAC survives the rebuild" "$MAC" \
        "$(lab_exec ip -n "cocoon-$ID" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)"

# ---------------------------------------------------------------------------------------------
# Three NICs

capture vm vm create --name n3 --nics 3 --cpu 1 "$IMAGE"
assert_eq "create with three NICs exits 0" 0 "$CAPTURE_STATUS"
ID3=$(vm_field n3 .id)
assert_eq "three NICs are recorded" 3 "$(vm_field n3 '.network_configs | length')"
assert_eq "their TAPs are tap0..2" "tap0 tap1 tap2" "$(vm_field n3 '[.network_configs[].tap] | join(" ")')"
assert_eq "all addresses differ" 3 "$(vm_field n3 '[.network_configs[].network.ip] | unique | length')"
assert_contains "a single-queue TAP for 1 vCPU" \
        "$(lab_exec ip netns exec "cocoon-$ID3" cat /sys/class/net/tap2/tun_flags)" "0x5802"
assert_eq "the kernel command line has one ip= per NIC" 3 \
        "$(vm_field n3 .boot_config.cmdline | grep -o ' ip=' | wc -l)"
capture vm vm start n3
assert_eq "a VM with three NICs starts" "started: $ID3" "$CAPTURE_STDOUT"
assert_eq "four leases are taken" 4 "$(leases)"

# ---------------------------------------------------------------------------------------------
# Remove releases everything

vm vm rm --force n1 n3 >/dev/null
assert_eq "rm releases every lease" 0 "$(leases)"
assert_eq "rm deletes the namespaces" "" "$(lab_exec ip netns list)"
assert_eq "rm leaves no CNI cache" "" "$(find "$ROOT/cni" -type f 2>/dev/null | head -n 3)"

# ---------------------------------------------------------------------------------------------
# gc removes the network of a VM whose record is gone, and never another installation's.

vm vm create --name lost "$IMAGE" >/dev/null
LOST=$(vm_field lost .id)
rm -rf "${ROOT:?}/vms/$LOST" "$ROOT/names/lost"
lab_exec ip netns add cocoon-0123456789abcdef
capture vm gc
assert_eq "gc exits 0" 0 "$CAPTURE_STATUS"
assert_contains "gc reports the stale network" "$CAPTURE_STDOUT" "Removed network of no VM $LOST"
assert_eq "gc released the lease" 0 "$(leases)"
assert_eq "gc deleted the stale namespace and kept the foreign one" "cocoon-0123456789abcdef" \
        "$(lab_exec ip netns list | cut -d' ' -f1)"
lab_exec ip netns del cocoon-0123456789abcdef

test_finish
