#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The network library (src/net) against the real bridge and host-local CNI plugins, driven by
# tests/net/net-tool. The test re-runs itself under "unshare --mount --net": the new network
# namespace plays the host (it gets the CNI bridge), and a tmpfs on /run keeps every
# /run/netns/cocoon-* mount private. When the test exits, its namespaces and everything in them
# go away with it, and the real host's links and /run/netns are never touched.
#
# Environment: NET_TOOL is the net-tool binary; CNI_BIN_DIR (default /usr/lib/cni) the plugins.
# Needs root, ip, tc, jq, unshare and the bridge and host-local plugins; skips (77) without them.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"

CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}

if [[ ${1:-} != --inside ]]; then
        test_require_root
        test_require_tools ip tc jq unshare mount
        [[ -n ${NET_TOOL:-} && -x ${NET_TOOL:-} ]] || test_skip "NET_TOOL is not set to the net-tool binary"
        for plugin in bridge host-local; do
                [[ -x $CNI_BIN_DIR/$plugin ]] || test_skip "CNI plugin $plugin not found in $CNI_BIN_DIR"
        done
        exec unshare --mount --net --propagation private "${BASH_SOURCE[0]}" --inside
fi

# ---------------------------------------------------------------------------------------------
# Inside the test's own mount and network namespaces from here on.

mount -t tmpfs -o mode=0755 cocoon-test-run /run
ip link set lo up
test_init

CONF=$TEST_DIR/net.d
STATE=$TEST_DIR/root/cni
IPAM=$TEST_DIR/ipam
mkdir -p "$CONF" "$STATE" "$IPAM"

# Two networks: "testnet" (first by file name, 10.211.0.0/24) and "tiny" (10.212.0.0/30, room for
# a single address), both on bridges in this test's namespace.
cat >"$CONF/10-testnet.conflist" <<EOF
{ "cniVersion": "1.0.0", "name": "testnet",
  "plugins": [ { "type": "bridge", "bridge": "cocoontest0", "isGateway": true, "ipMasq": false,
                 "ipam": { "type": "host-local", "dataDir": "$IPAM",
                           "ranges": [[{ "subnet": "10.211.0.0/24", "gateway": "10.211.0.1" }]],
                           "routes": [{ "dst": "0.0.0.0/0" }] } } ] }
EOF
cat >"$CONF/20-tiny.conf" <<EOF
{ "cniVersion": "1.0.0", "name": "tiny", "type": "bridge", "bridge": "cocoontest1", "isGateway": true,
  "ipam": { "type": "host-local", "dataDir": "$IPAM",
            "ranges": [[{ "subnet": "10.212.0.0/30", "gateway": "10.212.0.1" }]] } }
EOF

ID1=1111111111111111
ID3=3333333333333333
ID4=4444444444444444
ID5=5555555555555555

net() {
        "$NET_TOOL" --conf-dir "$CONF" --bin-dir "$CNI_BIN_DIR" --state-dir "$STATE" "$@"
}

# nic FILE INDEX FIELD: one field of a NIC that net-tool wrote.
nic() {
        jq -r ".[$2].$3 // empty" "$1"
}

# Print the link flags of IFNAME in namespace NS, e.g. "BROADCAST,MULTICAST,UP,LOWER_UP".
link_flags() {
        ip -n "$1" -o link show dev "$2" | sed -n 's/.*<\([^>]*\)>.*/\1/p'
}

link_is_up() {
        [[ ,$(link_flags "$1" "$2"), == *,UP,* ]]
}

leases_of() {
        grep -l "^$1" "$IPAM"/*/10.* 2>/dev/null | xargs -r -n1 basename | sort | tr '\n' ' ' | sed 's/ $//'
}

netns_list() {
        ip netns list | awk '{ print $1 }' | sort | tr '\n' ' ' | sed 's/ $//'
}

# check_nic FILE INDEX TUN_FLAGS: the wiring of one NIC in its namespace. TUN_FLAGS as sysfs shows
# them: IFF_TAP 0x2, IFF_MULTI_QUEUE 0x100, IFF_PERSIST 0x800, IFF_NO_PI 0x1000, IFF_VNET_HDR 0x4000.
check_nic() {
        local file=$1 i=$2 want_flags=$3 ns ifname tap mac mtu_veth mtu_tap

        ns=$(basename "$(nic "$file" "$i" netns_path)")
        ifname=$(nic "$file" "$i" if_name)
        tap=$(nic "$file" "$i" tap)
        mac=$(nic "$file" "$i" mac)

        assert_eq "NIC $i: names" "eth$i tap$i" "$ifname $tap"
        assert_eq "NIC $i: TAP flags" "$want_flags" \
                "$(ip netns exec "$ns" cat "/sys/class/net/$tap/tun_flags")"
        assert_contains "NIC $i: TAP is persistent" "$(ip -n "$ns" -d link show dev "$tap")" "persist on"
        assert_eq "NIC $i: veth keeps the recorded MAC" "$mac" \
                "$(ip -n "$ns" -o link show dev "$ifname" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')"
        assert_eq "NIC $i: veth has no IPv4 address" "" "$(ip -n "$ns" -4 -o addr show dev "$ifname")"
        assert_eq "NIC $i: no IPv6 on veth and TAP" "" \
                "$(ip -n "$ns" -6 -o addr show dev "$ifname")$(ip -n "$ns" -6 -o addr show dev "$tap")"
        mtu_veth=$(ip -n "$ns" -o link show dev "$ifname" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
        mtu_tap=$(ip -n "$ns" -o link show dev "$tap" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
        assert_eq "NIC $i: TAP MTU copied from the veth" "$mtu_veth" "$mtu_tap"
        assert_contains "NIC $i: veth redirects to the TAP" \
                "$(tc -n "$ns" filter show dev "$ifname" ingress)" "mirred (Egress Redirect to device $tap)"
        assert_contains "NIC $i: TAP redirects to the veth" \
                "$(tc -n "$ns" filter show dev "$tap" ingress)" "mirred (Egress Redirect to device $ifname)"
        assert_contains "NIC $i: u32 match-all filter" "$(tc -n "$ns" filter show dev "$ifname" ingress)" \
                "match 00000000/00000000 at 0"
        assert_true "NIC $i: veth up" link_is_up "$ns" "$ifname"
        assert_true "NIC $i: TAP up" link_is_up "$ns" "$tap"
}

# ---------------------------------------------------------------------------------------------
# Configuration errors come before any namespace is made.

mkdir -p "$TEST_DIR/empty" "$TEST_DIR/broken"
assert_fails_with "net-tool: no CNI network configuration in $TEST_DIR/empty" \
        "$NET_TOOL" --conf-dir "$TEST_DIR/empty" --state-dir "$STATE" create $ID1 1 1 "$TEST_DIR/x.json"
printf '{ "cniVersion": "1.0.0", "name": ' >"$TEST_DIR/broken/10-broken.conflist"
assert_fails_with "net-tool: invalid JSON in CNI configuration $TEST_DIR/broken/10-broken.conflist: unexpected token near end of file (line 1)" \
        "$NET_TOOL" --conf-dir "$TEST_DIR/broken" --state-dir "$STATE" create $ID1 1 1 "$TEST_DIR/x.json"
assert_fails_with "net-tool: CNI network 'nope' not found in $CONF (available: testnet, tiny)" \
        net --network nope create $ID1 1 1 "$TEST_DIR/x.json"
assert_eq "no namespace after configuration errors" "" "$(netns_list)"

# ---------------------------------------------------------------------------------------------
# One NIC, one queue pair.

capture net create $ID1 1 1 "$TEST_DIR/vm1.json"
assert_eq "create with 1 NIC" "0" "$CAPTURE_STATUS"
abort_if_failed "cannot go on without the first VM's network"
assert_eq "namespace cocoon-<id> exists" "cocoon-$ID1" "$(netns_list)"
assert_eq "NIC 0 on the first network" "testnet" "$(nic "$TEST_DIR/vm1.json" 0 network)"
assert_eq "NIC 0: address and gateway" "10.211.0.2/24 via 10.211.0.1" \
        "$(nic "$TEST_DIR/vm1.json" 0 ip)/$(nic "$TEST_DIR/vm1.json" 0 prefix) via $(nic "$TEST_DIR/vm1.json" 0 gateway)"
assert_eq "NIC 0: two queues" "2" "$(nic "$TEST_DIR/vm1.json" 0 num_queues)"
assert_eq "lease of VM 1" "10.211.0.2" "$(leases_of $ID1)"
check_nic "$TEST_DIR/vm1.json" 0 0x5802
assert_true "result cached" test -s "$STATE/cache/testnet-$ID1-eth0.json"
assert_true "marker written" test -f "$STATE/netns/$ID1"

# Frames from the host side reach the TAP through the redirect. Bash's /dev/udp makes the host
# resolve the VM's address, and the ARP request crosses eth0's ingress.
echo probe >"/dev/udp/$(nic "$TEST_DIR/vm1.json" 0 ip)/9" 2>/dev/null || true
sleep 0.3
packets=$(tc -s -n "cocoon-$ID1" filter show dev eth0 ingress | sed -n 's/.*Sent [0-9]* bytes \([0-9]*\) pkt.*/\1/p' | head -1)
assert_true "host traffic is redirected to the TAP ($packets packets)" test "${packets:-0}" -gt 0

capture net check $ID1 "$TEST_DIR/vm1.json"
assert_eq "CNI CHECK passes on a wired NIC" "0 " "$CAPTURE_STATUS $CAPTURE_STDERR"

# ---------------------------------------------------------------------------------------------
# Three NICs, two queue pairs: multi-queue TAPs.

capture net create $ID3 3 2 "$TEST_DIR/vm3.json"
assert_eq "create with 3 NICs" "0" "$CAPTURE_STATUS"
abort_if_failed "cannot go on without the second VM's network"
assert_eq "three addresses for VM 3" "10.211.0.3 10.211.0.4 10.211.0.5" "$(leases_of $ID3)"
for i in 0 1 2; do
        check_nic "$TEST_DIR/vm3.json" $i 0x5902
done
assert_eq "NIC 2: four queues" "4" "$(nic "$TEST_DIR/vm3.json" 2 num_queues)"

# ---------------------------------------------------------------------------------------------
# Quiesce and bring back.

capture net down $ID3 "$TEST_DIR/vm3.json"
assert_eq "down" "0" "$CAPTURE_STATUS"
for i in 0 1 2; do
        assert_true "NIC $i: TAP down after quiesce" eval "! link_is_up cocoon-$ID3 tap$i"
        assert_true "NIC $i: veth down after quiesce" eval "! link_is_up cocoon-$ID3 eth$i"
done
capture net up $ID3 "$TEST_DIR/vm3.json"
assert_eq "up without rebuilding" "0 " "$CAPTURE_STATUS $CAPTURE_STDOUT"
for i in 0 1 2; do
        assert_true "NIC $i: TAP up again" link_is_up "cocoon-$ID3" "tap$i"
        assert_true "NIC $i: veth up again" link_is_up "cocoon-$ID3" "eth$i"
done

# ---------------------------------------------------------------------------------------------
# Host reboot: the namespace is gone, the record, cache and leases are not.

cp "$TEST_DIR/vm3.json" "$TEST_DIR/vm3-before.json"
ip netns del "cocoon-$ID3"
capture net up $ID3 "$TEST_DIR/vm3.json"
assert_eq "up rebuilds a lost namespace" "0 rebuilt" "$CAPTURE_STATUS $CAPTURE_STDOUT"
assert_eq "same addresses and MACs after the rebuild" \
        "$(jq -c '[.[] | {ip, mac, gateway, prefix, tap, if_name}]' "$TEST_DIR/vm3-before.json")" \
        "$(jq -c '[.[] | {ip, mac, gateway, prefix, tap, if_name}]' "$TEST_DIR/vm3.json")"
assert_eq "leases after the rebuild" "10.211.0.3 10.211.0.4 10.211.0.5" "$(leases_of $ID3)"
for i in 0 1 2; do
        check_nic "$TEST_DIR/vm3.json" $i 0x5902
done

# A lost TAP alone is rebuilt the same way.
ip -n "cocoon-$ID1" link del tap0
capture net up $ID1 "$TEST_DIR/vm1.json"
assert_eq "up rebuilds a lost TAP" "0 rebuilt" "$CAPTURE_STATUS $CAPTURE_STDOUT"
check_nic "$TEST_DIR/vm1.json" 0 0x5802

# ---------------------------------------------------------------------------------------------
# A plugin's error reaches the caller, and a failed create leaves nothing behind.

assert_fails_with "net-tool: CNI plugin 'bridge' failed to add eth1: failed to allocate for range 0: no IP addresses available in range set: 10.212.0.1-10.212.0.2" \
        net --network tiny create $ID4 2 1 "$TEST_DIR/vm4.json"
assert_eq "no namespace of the failed create" "cocoon-$ID1 cocoon-$ID3" "$(netns_list)"
assert_eq "no lease of the failed create" "" "$(leases_of $ID4)"
assert_eq "no cache of the failed create" "" "$(ls "$STATE/cache" | grep $ID4 || true)"
assert_true "no marker of the failed create" test ! -e "$STATE/netns/$ID4"

# ---------------------------------------------------------------------------------------------
# Ownership: only namespaces with this installation's marker are deleted.

ip netns add "cocoon-$ID5"
printf '[{"if_name":"eth0","tap":"tap0","network":"testnet"}]' >"$TEST_DIR/vm5.json"
assert_fails_with "net-tool: network namespace cocoon-$ID5 exists but was not created by this installation" \
        net up $ID5 "$TEST_DIR/vm5.json"
capture net remove $ID5
assert_eq "remove of a foreign namespace succeeds" "0" "$CAPTURE_STATUS"
assert_contains "a foreign namespace survives remove" "$(netns_list)" "cocoon-$ID5"
ip netns del "cocoon-$ID5"

assert_eq "stale list: VM 3 has no record" "$ID3" "$(net stale $ID1)"
assert_eq "stale list: both live" "" "$(net stale $ID1 $ID3)"

# ---------------------------------------------------------------------------------------------
# Remove: CNI DEL, namespace, cache and marker gone. VM 3 goes as a stale VM, from the cache alone.

capture net remove $ID1 "$TEST_DIR/vm1.json"
assert_eq "remove VM 1" "0" "$CAPTURE_STATUS"
capture net remove $ID3
assert_eq "remove stale VM 3 without its record" "0" "$CAPTURE_STATUS"
assert_eq "no namespace left" "" "$(netns_list)"
assert_eq "no lease left" "" "$(leases_of $ID1)$(leases_of $ID3)"
assert_eq "no cache left" "" "$(ls -A "$STATE/cache")"
assert_eq "no marker left" "" "$(ls -A "$STATE/netns")"
assert_eq "veths gone from the host side" "" "$(ip -o link show type veth)"
capture net remove $ID1 "$TEST_DIR/vm1.json"
assert_eq "remove twice" "0" "$CAPTURE_STATUS"

test_finish
