#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Tests doctor/check.sh against fixture trees with --root, so that nothing on the host is read or
# changed: the checks, --fix (with apt-get, sysctl, modprobe and systemctl replaced by recorders)
# and --upgrade against a python3 HTTP server on 127.0.0.1. DOCTOR_CHECK names the script; meson
# passes it. Exits 77 (skipped) when python3, curl, tar or sha256sum is missing.
#
# The stub scripts are single-quoted on purpose, so that they expand their variables when they run.
# shellcheck disable=SC2016
set -uo pipefail

CHECK=${DOCTOR_CHECK:-$(dirname "$0")/../../doctor/check.sh}
# The PATH for check.sh: its own tools come from here, and it looks for the programs it checks
# in the same directories under the fixture root.
SYS_PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin

for tool in python3 curl tar sha256sum; do
        if ! command -v "$tool" >/dev/null; then
                echo "$tool not found, skipping"
                exit 77
        fi
done

unset COCOON_ROOT_DIR COCOON_RUN_DIR COCOON_LOG_DIR COCOON_CNI_CONF_DIR COCOON_CNI_BIN_DIR \
        COCOON_FIRMWARE SHA256SUMS_URL CH_URL CH_REMOTE_URL FIRMWARE_URL CNI_PLUGINS_URL \
        CH_SHA256 CH_REMOTE_SHA256 FIRMWARE_SHA256 CNI_PLUGINS_SHA256 NO_COLOR

tmp=$(mktemp -d)
server_pid=
cleanup() {
        if [ -n "$server_pid" ]; then
                kill "$server_pid" 2>/dev/null
                wait "$server_pid" 2>/dev/null
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
fail() {
        echo "FAIL: $*" >&2
        failures=$((failures + 1))
}

pass() {
        echo "ok: $*"
}

# --- Stubs ----------------------------------------------------------------------------------

stubs=$tmp/stubs
mkdir -p "$stubs"

# write_script PATH BODY: an executable shell script.
write_script() {
        mkdir -p "$(dirname "$1")"
        printf '#!/bin/sh\n%s\n' "$2" >"$1"
        chmod 755 "$1"
}

write_script "$stubs/apt-get" 'echo "apt-get $*" >>"$FIXTURE/.apt.log"'
write_script "$stubs/modprobe" 'echo "modprobe $*" >>"$FIXTURE/.modprobe.log"
mkdir -p "$FIXTURE/proc/sys/net/bridge" && echo 0 >"$FIXTURE/proc/sys/net/bridge/bridge-nf-call-iptables"'
# Records "sysctl -q -w key=value" and writes the value into the fixture's /proc/sys.
write_script "$stubs/sysctl" 'echo "sysctl $*" >>"$FIXTURE/.sysctl.log"
for a; do case $a in *=*) k=${a%%=*}; f="$FIXTURE/proc/sys/$(echo "$k" | tr . /)"
[ -f "$f" ] || exit 1; echo "${a#*=}" >"$f";; esac; done'
write_script "$stubs/systemctl" 'case $1 in
--version) echo "systemd ${FAKE_SYSTEMD_VERSION:-252} (252.39-1~deb12u2)";;
is-active) [ -e "$FIXTURE/.journald-active" ];;
start) echo "systemctl $*" >>"$FIXTURE/.systemctl.log"; touch "$FIXTURE/.journald-active";;
*) exit 1;;
esac'
write_script "$stubs/kvm-ok" 'echo "api 12"; echo "missing "'
write_script "$stubs/kvm-nested" 'echo "api 12"; echo "missing pni sse4_2"'
write_script "$stubs/kvm-denied" 'echo "cannot open $1: Permission denied" >&2; exit 2'
write_script "$stubs/kvm-broken" 'echo "KVM_CREATE_VM failed on $1: Device or resource busy" >&2; exit 1'

# --- Fixtures -------------------------------------------------------------------------------

# make_fixture NAME: a root tree on which every check passes. Prints its path.
make_fixture() {
        local f=$tmp/$1 p

        mkdir -p "$f"
        write_script "$f/usr/bin/cloud-hypervisor" 'echo "cloud-hypervisor v53.0.0"'
        write_script "$f/usr/bin/ch-remote" 'echo "ch-remote v53.0.0"'
        write_script "$f/usr/bin/qemu-system-x86_64" 'echo "QEMU emulator version 7.2.22"'
        write_script "$f/usr/bin/qemu-img" 'echo "qemu-img version 7.2.22"'
        write_script "$f/usr/sbin/mkfs.ext4" 'echo "mke2fs 1.47.0 (5-Feb-2023)"'
        write_script "$f/usr/bin/fsck.erofs" 'echo "fsck.erofs 1.5"'
        mkdir -p "$f/var/lib/cocoon/firmware" "$f/usr/share/OVMF" "$f/dev" "$f/etc/cni/net.d" \
                "$f/proc/sys/net/ipv4" "$f/proc/sys/net/bridge" "$f/proc/1" "$f/run/systemd/system"
        echo firmware >"$f/var/lib/cocoon/firmware/CLOUDHV.fd"
        echo firmware >"$f/usr/share/OVMF/OVMF_CODE_4M.fd"
        : >"$f/dev/kvm"
        chmod 660 "$f/dev/kvm"
        echo '{ "cniVersion": "1.0.0", "name": "testnet", "plugins": [] }' >"$f/etc/cni/net.d/50-test.conflist"
        for p in bridge host-local loopback; do
                write_script "$f/opt/cni/bin/$p" 'exit 0'
        done
        echo 1 >"$f/proc/sys/net/ipv4/ip_forward"
        echo 1 >"$f/proc/sys/net/bridge/bridge-nf-call-iptables"
        install -d -m 750 "$f/var/lib/cocoon" "$f/var/lib/cocoon/run" "$f/var/log/cocoon"
        install -d -m 755 "$f/run/netns"
        echo systemd >"$f/proc/1/comm"
        touch "$f/.journald-active"
        printf '%s\n' "$f"
}

# run_check FIXTURE ARGS...: run check.sh on FIXTURE, storing its output in $out and its exit
# status in $rc. KVM_PROBE and FAKE_* variables set by the caller pass through.
run_check() {
        local f=$1
        shift
        rc=0
        out=$(PATH=$SYS_PATH FIXTURE=$f APT_GET=$stubs/apt-get SYSCTL=$stubs/sysctl \
                MODPROBE=$stubs/modprobe SYSTEMCTL=$stubs/systemctl KVM_PROBE=${KVM_PROBE:-$stubs/kvm-ok} \
                "$CHECK" --root "$f" "$@" 2>&1) || rc=$?
}

# expect_line TEXT: the output has a line that is exactly TEXT.
expect_line() {
        if grep -qxF -- "$1" <<<"$out"; then
                pass "$1"
        else
                fail "no line '$1' in:"$'\n'"$out"
        fi
}

expect_no_match() {
        if grep -qF -- "$1" <<<"$out"; then
                fail "unexpected '$1' in:"$'\n'"$out"
        else
                pass "no '$1'"
        fi
}

# expect_true DESCRIPTION COMMAND...: COMMAND succeeds.
expect_true() {
        local what=$1
        shift
        if "$@"; then
                pass "$what"
        else
                fail "$what: '$*' failed"
        fi
}

expect_mode() {
        local mode

        mode=$(stat -c %a "$1")
        if [ "$mode" = "$2" ]; then
                pass "mode $2 of ${1#"$tmp"/}"
        else
                fail "${1#"$tmp"/} has mode $mode, expected $2"
        fi
}

expect_rc() {
        if [ "$rc" -eq "$1" ]; then
                pass "exit status $1 ($2)"
        else
                fail "$2: exit status $rc, expected $1; output:"$'\n'"$out"
        fi
}

expect_file() {
        if [ "$(cat "$1" 2>/dev/null)" = "$2" ]; then
                pass "content of ${1#"$tmp"/}"
        else
                fail "${1#"$tmp"/} contains '$(cat "$1" 2>&1)', expected '$2'"
        fi
}

# --- Usage ----------------------------------------------------------------------------------

test_usage() {
        rc=0
        out=$("$CHECK" --help 2>&1) || rc=$?
        expect_rc 0 "--help"
        expect_true "--help prints usage" grep -q '^Usage: check.sh \[OPTIONS\]' <<<"$out"

        rc=0
        out=$("$CHECK" --bogus 2>&1) || rc=$?
        expect_rc 2 "unknown option"
        expect_line "check.sh: unknown option '--bogus'"

        rc=0
        out=$("$CHECK" --fix=yes 2>&1) || rc=$?
        expect_rc 2 "value for a flag"
        expect_line "check.sh: option --fix takes no value"
}

# --- Checks ---------------------------------------------------------------------------------

test_all_pass() {
        local f

        f=$(make_fixture all-pass)
        run_check "$f"
        expect_rc 0 "all checks pass"
        expect_line "Pass: 19  Warn: 0  Fail: 0"
        expect_line "[PASS] cloud-hypervisor v53.0.0 (/usr/bin/cloud-hypervisor)"
        expect_line "[INFO] ch-remote v53.0.0 (/usr/bin/ch-remote, optional)"
        expect_line "[PASS] QEMU emulator version 7.2.22 (/usr/bin/qemu-system-x86_64)"
        expect_line "[PASS] qemu-img version 7.2.22 (/usr/bin/qemu-img)"
        expect_line "[PASS] UEFI firmware for Cloud Hypervisor: /var/lib/cocoon/firmware/CLOUDHV.fd (9 bytes)"
        expect_line "[PASS] UEFI firmware for QEMU: /usr/share/OVMF/OVMF_CODE_4M.fd"
        expect_line "[PASS] /dev/kvm works: KVM API 12, created a VM and a vCPU"
        expect_line "[INFO] the KVM probe runs no guest code, so it cannot show whether a guest kernel boots on this host"
        expect_line "[PASS] CNI network configuration: /etc/cni/net.d/50-test.conflist (network testnet)"
        expect_line "[PASS] CNI plugins bridge host-local loopback in /opt/cni/bin"
        expect_line "[PASS] IP forwarding is on (net.ipv4.ip_forward = 1)"
        expect_line "[PASS] br_netfilter is loaded"
        expect_line "[PASS] bridged traffic passes through iptables (net.bridge.bridge-nf-call-iptables = 1)"
        expect_line "[PASS] /var/lib/cocoon exists (mode 750)"
        expect_line "[PASS] /var/lib/cocoon/run exists (mode 750)"
        expect_line "[PASS] /var/log/cocoon exists (mode 750)"
        expect_line "[PASS] /run/netns exists (mode 755)"
        expect_line "[PASS] systemd 252"
        expect_line "[PASS] systemd is PID 1"
        expect_line "[PASS] systemd-journald is running"
        expect_line "[PASS] mkfs.ext4: mke2fs 1.47.0 (5-Feb-2023) (/usr/sbin/mkfs.ext4)"
        expect_line "[INFO] fsck.erofs: fsck.erofs 1.5 (/usr/bin/fsck.erofs, optional)"
}

test_hypervisors() {
        local f

        f=$(make_fixture no-ch)
        rm "$f/usr/bin/cloud-hypervisor" "$f/usr/bin/ch-remote"
        run_check "$f"
        expect_rc 0 "QEMU fallback is only a warning"
        expect_line "[WARN] cloud-hypervisor not found in PATH: Cocoon falls back to QEMU (/usr/bin/qemu-system-x86_64); run --upgrade to install Cloud Hypervisor v53.0"
        expect_line "[INFO] ch-remote not found in PATH (optional: Cocoon calls the API itself, ch-remote helps to debug a running VM)"
        expect_no_match "UEFI firmware for Cloud Hypervisor"

        rm "$f/usr/bin/qemu-system-x86_64" "$f/usr/share/OVMF/OVMF_CODE_4M.fd"
        run_check "$f"
        expect_rc 1 "no hypervisor"
        expect_line "[FAIL] neither cloud-hypervisor nor qemu-system-x86_64 found in PATH: Cocoon has no hypervisor; run --upgrade, or --fix to install QEMU"
        expect_line "[FAIL] qemu-system-x86_64 not found in PATH: install qemu-system-x86 or run --fix"
        expect_line "[FAIL] UEFI firmware for QEMU not found (looked in /var/lib/cocoon/firmware/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE.fd /usr/share/ovmf/OVMF.fd): install ovmf or run --fix"

        f=$(make_fixture old-ch)
        write_script "$f/usr/bin/cloud-hypervisor" 'echo "cloud-hypervisor v37.0"'
        rm "$f/usr/bin/qemu-img" "$f/usr/share/OVMF/OVMF_CODE_4M.fd"
        run_check "$f"
        expect_rc 1 "old Cloud Hypervisor"
        expect_line "[FAIL] cloud-hypervisor v37.0 at /usr/bin/cloud-hypervisor is too old: Cocoon needs v38 or newer; run --upgrade"
        expect_line "[WARN] ch-remote v53.0.0 at /usr/bin/ch-remote does not match cloud-hypervisor v37: its API calls may be rejected; run --upgrade"
        expect_line "[FAIL] qemu-img not found in PATH: cloud images need it; install qemu-utils or run --fix"
        expect_line "[WARN] UEFI firmware for QEMU not found (looked in /var/lib/cocoon/firmware/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE.fd /usr/share/ovmf/OVMF.fd): the QEMU fallback cannot boot cloud images; install ovmf or run --fix"

        f=$(make_fixture no-firmware)
        rm "$f/var/lib/cocoon/firmware/CLOUDHV.fd" "$f/usr/bin/fsck.erofs" "$f/usr/sbin/mkfs.ext4"
        run_check "$f"
        expect_rc 1 "missing firmware"
        expect_line "[FAIL] UEFI firmware not found at /var/lib/cocoon/firmware/CLOUDHV.fd: cloud images cannot boot under Cloud Hypervisor; run --upgrade"
        expect_line "[FAIL] mkfs.ext4 not found in PATH: Cocoon formats the writable disk of OCI VMs with it; install e2fsprogs or run --fix"
        expect_line "[INFO] fsck.erofs not found in PATH (optional: it verifies EROFS layers by hand; install erofs-utils)"
}

test_kvm() {
        local f

        f=$(make_fixture kvm)
        rm "$f/dev/kvm"
        run_check "$f"
        expect_rc 1 "no /dev/kvm"
        expect_line "[FAIL] /dev/kvm not found: enable virtualization in the firmware settings and load kvm_intel or kvm_amd (nested virtualization must be enabled inside a VM)"

        : >"$f/dev/kvm"
        chmod 666 "$f/dev/kvm"
        KVM_PROBE=$stubs/kvm-nested run_check "$f"
        expect_rc 0 "warnings about /dev/kvm"
        expect_line "[WARN] /dev/kvm is readable and writable by every user (mode 666): any local user can create VMs; the usual mode is 0660 with group kvm (this script never changes it)"
        expect_line "[WARN] KVM does not offer guests these CPU features of the host: pni sse4_2 (typical of nested virtualization); guest code built for x86-64-v2 stops with illegal-instruction errors"

        chmod 660 "$f/dev/kvm"
        KVM_PROBE=$stubs/kvm-broken run_check "$f"
        expect_rc 1 "KVM probe failure"
        expect_line "[FAIL] /dev/kvm is not usable: KVM_CREATE_VM failed on $f/dev/kvm: Device or resource busy"

        KVM_PROBE=$stubs/kvm-denied run_check "$f"
        expect_rc 1 "no access to /dev/kvm"
        if [ "$(id -u)" -eq 0 ]; then
                expect_line "[FAIL] root cannot open /dev/kvm (cannot open $f/dev/kvm: Permission denied): a device cgroup or container policy blocks it"
        else
                expect_line "[FAIL] /dev/kvm is not readable and writable by user $(id -un): add the user to the kvm group (usermod -aG kvm $(id -un)) and log in again; --fix never changes the permissions of /dev/kvm"
        fi

        # The built-in probe, on a regular file that is no KVM device.
        KVM_PROBE=builtin run_check "$f"
        expect_line "[FAIL] /dev/kvm is not usable: KVM_GET_API_VERSION failed on $f/dev/kvm: Inappropriate ioctl for device"

        # The built-in probe on the host's device, when this user may open it.
        if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ -c /dev/kvm ]; then
                rm "$f/dev/kvm"
                ln -s /dev/kvm "$f/dev/kvm"
                KVM_PROBE=builtin run_check "$f"
                expect_line "[PASS] /dev/kvm works: KVM API 12, created a VM and a vCPU"
        else
                echo "skip: the built-in probe on the host's /dev/kvm (not usable by this user)"
        fi
}

test_network() {
        local f

        f=$(make_fixture network)
        rm "$f/etc/cni/net.d/50-test.conflist" "$f/opt/cni/bin/bridge"
        echo 0 >"$f/proc/sys/net/ipv4/ip_forward"
        echo 0 >"$f/proc/sys/net/bridge/bridge-nf-call-iptables"
        run_check "$f"
        expect_rc 1 "network problems"
        expect_line "[FAIL] no *.conflist in /etc/cni/net.d: VMs with network interfaces cannot start; run --fix to write 10-cocoon.conflist"
        expect_line "[FAIL] CNI plugins missing from /opt/cni/bin: bridge; run --fix to install containernetworking-plugins, or --upgrade"
        expect_line "[FAIL] IP forwarding is off (net.ipv4.ip_forward = 0): VMs cannot reach other networks; run --fix"
        expect_line "[FAIL] net.bridge.bridge-nf-call-iptables is 0: iptables does not see traffic on the VM bridge; run --fix"

        rm "$f/proc/sys/net/bridge/bridge-nf-call-iptables"
        mkdir -p "$f/usr/lib/cni"
        cp "$f/opt/cni/bin/loopback" "$f/usr/lib/cni/bridge"
        cp "$f/opt/cni/bin/loopback" "$f/usr/lib/cni/host-local"
        cp "$f/opt/cni/bin/loopback" "$f/usr/lib/cni/loopback"
        run_check "$f"
        expect_line "[FAIL] br_netfilter is not loaded (no /proc/sys/net/bridge/bridge-nf-call-iptables): iptables does not see traffic on the VM bridge; run --fix"
        expect_line "[FAIL] CNI plugins missing from /opt/cni/bin: bridge; they are in /usr/lib/cni, so set COCOON_CNI_BIN_DIR=/usr/lib/cni ([Network] CNIBinDir=) or run --fix to link them"

        COCOON_CNI_BIN_DIR=/usr/lib/cni run_check "$f"
        expect_line "[PASS] CNI plugins bridge host-local loopback in /usr/lib/cni"

        echo '{ "name": "broken",' >"$f/etc/cni/net.d/20-broken.conflist"
        run_check "$f"
        expect_line "[FAIL] /etc/cni/net.d/20-broken.conflist is not valid JSON: cocoon cannot load it; fix or remove it"
}

test_directories_and_systemd() {
        local f

        f=$(make_fixture dirs)
        rm -r "$f/var/log/cocoon" "$f/run/netns" "$f/run/systemd" "$f/.journald-active"
        chmod 777 "$f/var/lib/cocoon/run"
        echo init >"$f/proc/1/comm"
        FAKE_SYSTEMD_VERSION=245 run_check "$f"
        expect_rc 1 "directories and systemd"
        expect_line "[WARN] /var/log/cocoon (VM logs) does not exist: cocoon creates it on first use, or run --fix"
        expect_line "[WARN] /run/netns (the VMs' network namespaces) does not exist: cocoon creates it on first use, or run --fix"
        expect_line "[WARN] /var/lib/cocoon/run (VM sockets and disks) has mode 777, more open than 750; run --fix"
        expect_line "[FAIL] systemd 245 is too old: Cocoon needs 246 or newer"
        expect_line "[FAIL] PID 1 is init, not systemd: Cocoon needs systemd as the init system to run VMs as transient units"

        mkdir "$f/run/systemd" "$f/run/systemd/system"
        run_check "$f"
        expect_line "[FAIL] systemd-journald is not running: the output of VMs and hypervisors is lost; run --fix"
}

test_config_sources() {
        local f

        f=$(make_fixture config)
        mkdir -p "$f/etc/cocoon/cocoon.conf.d"
        install -d -m 750 "$f/srv/a" "$f/srv/b" "$f/srv/b/run" "$f/srv/c"
        printf '[Cocoon]\nRootDir = /srv/a\n' >"$f/etc/cocoon/cocoon.conf"
        printf '[Cocoon]\nLogDir=/srv/b\n' >"$f/etc/cocoon/cocoon.conf.d/10-log.conf"
        run_check "$f"
        expect_line "[PASS] /srv/a exists (mode 750)"
        expect_line "[WARN] /srv/a/run (VM sockets and disks) does not exist: cocoon creates it on first use, or run --fix"
        expect_line "[PASS] /srv/b exists (mode 750)"

        COCOON_ROOT_DIR=/srv/b run_check "$f"
        expect_line "[PASS] /srv/b/run exists (mode 750)"
        expect_no_match "/srv/a"

        COCOON_ROOT_DIR=/srv/b run_check "$f" --root-dir /srv/c --run-dir=/var/lib/cocoon/run
        expect_line "[PASS] /srv/c exists (mode 750)"
        expect_line "[PASS] /var/lib/cocoon/run exists (mode 750)"
        expect_line "[FAIL] UEFI firmware not found at /srv/c/firmware/CLOUDHV.fd: cloud images cannot boot under Cloud Hypervisor; run --upgrade"

        run_check "$f" --log-dir relative
        expect_rc 2 "relative directory"
        expect_line "check.sh: log-dir must be an absolute path, got 'relative'"
}

# --- --fix ----------------------------------------------------------------------------------

# expect_gateway CIDR GATEWAY: --fix writes a conflist for CIDR whose gateway is GATEWAY.
expect_gateway() {
        local f got

        f=$(make_fixture "gateway-${1//\//-}")
        rm "$f/etc/cni/net.d/50-test.conflist"
        run_check "$f" --fix --subnet "$1"
        expect_rc 0 "--fix --subnet $1"
        expect_line "[FIXED] wrote /etc/cni/net.d/10-cocoon.conflist: network cocoon on bridge cni0, subnet $1, gateway $2"
        got=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
p = c["plugins"][0]
r = p["ipam"]["ranges"][0][0]
print(c["cniVersion"], c["name"], p["type"], p["bridge"], p["isGateway"], p["ipMasq"], p["hairpinMode"],
      p["ipam"]["type"], r["subnet"], r["gateway"], p["ipam"]["routes"][0]["dst"])
' "$f/etc/cni/net.d/10-cocoon.conflist" 2>&1)
        if [ "$got" = "1.0.0 cocoon bridge cni0 True True True host-local $1 $2 0.0.0.0/0" ]; then
                pass "conflist for $1 has gateway $2"
        else
                fail "conflist for $1: $got"
        fi
        expect_mode "$f/etc/cni/net.d/10-cocoon.conflist" 644
}

test_fix_subnets() {
        local f

        expect_gateway 10.88.0.0/16 10.88.0.1
        expect_gateway 192.168.7.0/24 192.168.7.1
        expect_gateway 192.168.5.128/25 192.168.5.129
        expect_gateway 172.16.3.240/28 172.16.3.241

        f=$(make_fixture bad-subnet)
        rm "$f/etc/cni/net.d/50-test.conflist"
        run_check "$f" --fix --subnet 10.88.0.1/16
        expect_rc 2 "host bits set"
        expect_line "check.sh: invalid --subnet '10.88.0.1/16': host bits are set in 10.88.0.1; the network address is 10.88.0.0/16"
        expect_true "no conflist for a rejected subnet" test ! -e "$f/etc/cni/net.d/10-cocoon.conflist"

        run_check "$f" --fix --subnet=10.88.0.0/31
        expect_rc 2 "prefix too long"
        expect_line "check.sh: invalid --subnet '10.88.0.0/31': the prefix length must be from 8 to 30, so that the network has room for a gateway and VMs"

        run_check "$f" --subnet 10.088.0.0/16
        expect_rc 2 "leading zero"
        expect_line "check.sh: invalid --subnet '10.088.0.0/16': expected an IPv4 network such as 10.88.0.0/16"

        run_check "$f" --subnet 10.256.0.0/16
        expect_line "check.sh: invalid --subnet '10.256.0.0/16': expected an IPv4 network such as 10.88.0.0/16"

        f=$(make_fixture keep-conflist)
        run_check "$f" --fix --subnet 10.99.0.0/16
        expect_rc 0 "--fix with a conflist"
        expect_line "[INFO] --subnet 10.99.0.0/16 not used: a network configuration exists already in /etc/cni/net.d"
        expect_true "no conflist next to an existing one" test ! -e "$f/etc/cni/net.d/10-cocoon.conflist"
}

test_fix_system() {
        local f

        f=$(make_fixture fix)
        rm -r "$f/var/lib/cocoon/run" "$f/var/log/cocoon" "$f/run/netns" "$f/.journald-active"
        rm "$f/proc/sys/net/bridge/bridge-nf-call-iptables"
        echo 0 >"$f/proc/sys/net/ipv4/ip_forward"
        chmod 775 "$f/var/lib/cocoon"
        chmod 666 "$f/dev/kvm"
        run_check "$f" --fix
        expect_rc 0 "everything passes after --fix"
        expect_line "Pass: 19  Warn: 1  Fail: 0"
        expect_line "[FIXED] wrote /etc/sysctl.d/90-cocoon.conf"
        expect_line "[FIXED] set net.ipv4.ip_forward = 1"
        expect_line "[FIXED] wrote /etc/modules-load.d/cocoon.conf"
        expect_line "[FIXED] loaded br_netfilter"
        expect_line "[FIXED] set net.bridge.bridge-nf-call-iptables = 1"
        expect_line "[FIXED] changed the mode of /var/lib/cocoon from 775 to 750"
        expect_line "[FIXED] created /var/lib/cocoon/run with mode 750"
        expect_line "[FIXED] created /var/log/cocoon with mode 750"
        expect_line "[FIXED] created /run/netns with mode 755"
        expect_line "[FIXED] started systemd-journald"
        expect_line "[PASS] IP forwarding is on (net.ipv4.ip_forward = 1)"
        expect_line "[WARN] /dev/kvm is readable and writable by every user (mode 666): any local user can create VMs; the usual mode is 0660 with group kvm (this script never changes it)"
        expect_file "$f/etc/sysctl.d/90-cocoon.conf" "# Written by Cocoon's doctor/check.sh --fix: VMs on the CNI bridge need routing and
# bridged traffic that passes through iptables.
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1"
        expect_file "$f/etc/modules-load.d/cocoon.conf" "br_netfilter"
        expect_file "$f/.sysctl.log" "sysctl -q -w net.ipv4.ip_forward=1
sysctl -q -w net.bridge.bridge-nf-call-iptables=1"
        expect_file "$f/.modprobe.log" "modprobe br_netfilter"
        expect_file "$f/.systemctl.log" "systemctl start systemd-journald.service"
        expect_true "no apt-get call when no package is missing" test ! -e "$f/.apt.log"
        expect_mode "$f/var/lib/cocoon" 750
        expect_mode "$f/var/lib/cocoon/run" 750
        expect_mode "$f/run/netns" 755
        expect_mode "$f/dev/kvm" 666

        f=$(make_fixture fix-packages)
        rm "$f/usr/bin/qemu-img" "$f/usr/bin/fsck.erofs" "$f/opt/cni/bin/host-local" "$f/usr/share/OVMF/OVMF_CODE_4M.fd"
        chmod 600 "$f/dev/kvm"
        KVM_PROBE=$stubs/kvm-denied run_check "$f" --fix
        expect_rc 1 "packages still missing after a recorded apt-get"
        expect_line "[FIXED] installed qemu-utils erofs-utils containernetworking-plugins ovmf with apt-get"
        expect_file "$f/.apt.log" "apt-get update -qq
apt-get install -y -qq --no-install-recommends qemu-utils erofs-utils containernetworking-plugins ovmf"
        expect_line "[FAIL] qemu-img not found in PATH: cloud images need it; install qemu-utils or run --fix"
        expect_mode "$f/dev/kvm" 600

        # Debian's plugins get linked into the configured directory.
        mkdir -p "$f/usr/lib/cni"
        cp "$f/opt/cni/bin/bridge" "$f/opt/cni/bin/loopback" "$f/usr/lib/cni/"
        cp "$f/opt/cni/bin/bridge" "$f/usr/lib/cni/host-local"
        run_check "$f" --fix
        expect_line "[FIXED] linked the CNI plugins bridge host-local loopback from /usr/lib/cni into /opt/cni/bin"
        expect_true "host-local linked" test "$(readlink "$f/opt/cni/bin/host-local")" = /usr/lib/cni/host-local

        rc=0
        out=$(PATH=$SYS_PATH "$CHECK" --root "$f" --fix 2>&1) || rc=$?
        expect_rc 2 "--fix with --root and the real commands"
        expect_line "check.sh: --fix with --root needs APT_GET, SYSCTL, MODPROBE and SYSTEMCTL set to commands that do not change this host (APT_GET is apt-get)"
}

# --- --upgrade ------------------------------------------------------------------------------

start_server() {
        local www=$tmp/www port=

        mkdir -p "$www/cni" "$www/evil"
        write_script "$www/cloud-hypervisor-static" 'echo "cloud-hypervisor v53.0.0"'
        write_script "$www/ch-remote-static" 'echo "ch-remote v53.0.0"'
        printf 'new firmware\n' >"$www/hypervisor-fw"
        for p in bridge host-local loopback portmap; do
                write_script "$www/cni/$p" "echo $p"
        done
        tar -czf "$www/cni-plugins-linux-amd64-v1.9.0.tgz" -C "$www/cni" .
        tar -czf "$www/evil.tgz" -C "$www" cni/bridge
        (cd "$www" && sha256sum cloud-hypervisor-static ch-remote-static hypervisor-fw \
                cni-plugins-linux-amd64-v1.9.0.tgz >SHA256SUMS)

        python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$www" >"$tmp/server.log" 2>&1 &
        server_pid=$!
        for _ in $(seq 100); do
                port=$(sed -n 's/.* port \([0-9]\+\).*/\1/p' "$tmp/server.log" | head -n 1)
                [ -n "$port" ] && break
                sleep 0.05
        done
        [ -n "$port" ] || { fail "the HTTP server did not start: $(cat "$tmp/server.log")"; return 1; }
        base=http://127.0.0.1:$port
}

# run_upgrade FIXTURE ARGS...: check.sh --upgrade with the URLs of the local server.
run_upgrade() {
        CH_URL=${CH_URL:-$base/cloud-hypervisor-static} CH_REMOTE_URL=$base/ch-remote-static \
                FIRMWARE_URL=$base/hypervisor-fw CNI_PLUGINS_URL=${CNI_PLUGINS_URL:-$base/cni-plugins-linux-amd64-v1.9.0.tgz} \
                run_check "$@" --upgrade
}

# make_upgrade_fixture NAME: a fixture without Cloud Hypervisor, firmware and portmap.
make_upgrade_fixture() {
        local f

        f=$(make_fixture "$1")
        rm "$f/usr/bin/cloud-hypervisor" "$f/usr/bin/ch-remote" "$f/var/lib/cocoon/firmware/CLOUDHV.fd"
        printf '%s\n' "$f"
}

expect_nothing_installed() {
        if [ ! -e "$1/usr/local/bin/cloud-hypervisor" ] && [ ! -e "$1/usr/local/bin/ch-remote" ] &&
                [ ! -e "$1/var/lib/cocoon/firmware/CLOUDHV.fd" ] && [ ! -e "$1/opt/cni/bin/portmap" ] &&
                [ "$(cat "$1/opt/cni/bin/bridge")" = "$(printf '#!/bin/sh\nexit 0')" ]; then
                pass "nothing installed ($2)"
        else
                fail "$2: files were installed: $(find "$1/usr/local" "$1/opt" "$1/var/lib/cocoon/firmware" -type f)"
        fi
}

test_upgrade() {
        local f www=$tmp/www sum

        start_server || return

        # Checksums from SHA256SUMS.
        f=$(make_upgrade_fixture upgrade-sums)
        SHA256SUMS_URL=$base/SHA256SUMS run_upgrade "$f"
        expect_rc 0 "--upgrade with SHA256SUMS"
        expect_line "[FIXED] installed cloud-hypervisor and ch-remote from $base/cloud-hypervisor-static into /usr/local/bin"
        expect_line "[FIXED] installed the UEFI firmware from $base/hypervisor-fw as /var/lib/cocoon/firmware/CLOUDHV.fd"
        expect_line "[FIXED] installed the CNI plugins from $base/cni-plugins-linux-amd64-v1.9.0.tgz into /opt/cni/bin"
        expect_line "[PASS] cloud-hypervisor v53.0.0 (/usr/local/bin/cloud-hypervisor)"
        expect_line "[PASS] UEFI firmware for Cloud Hypervisor: /var/lib/cocoon/firmware/CLOUDHV.fd (13 bytes)"
        expect_true "cloud-hypervisor installed" cmp -s "$www/cloud-hypervisor-static" "$f/usr/local/bin/cloud-hypervisor"
        expect_true "ch-remote installed" cmp -s "$www/ch-remote-static" "$f/usr/local/bin/ch-remote"
        expect_true "firmware installed" cmp -s "$www/hypervisor-fw" "$f/var/lib/cocoon/firmware/CLOUDHV.fd"
        expect_true "CNI plugins installed" cmp -s "$www/cni/portmap" "$f/opt/cni/bin/portmap"
        expect_mode "$f/usr/local/bin/cloud-hypervisor" 755
        expect_mode "$f/opt/cni/bin/portmap" 755
        expect_mode "$f/var/lib/cocoon/firmware/CLOUDHV.fd" 644
        expect_true "no temporary files left" test -z "$(find "$f" -name '*.??????')"

        # Checksums from the variables, with one wrong: nothing gets installed.
        f=$(make_upgrade_fixture upgrade-mismatch)
        sum=$(sha256sum "$www/hypervisor-fw" | cut -d ' ' -f 1)
        CH_SHA256=$(sha256sum "$www/cloud-hypervisor-static" | cut -d ' ' -f 1) \
                CH_REMOTE_SHA256=$(sha256sum "$www/ch-remote-static" | cut -d ' ' -f 1) \
                FIRMWARE_SHA256=$(printf '%064d' 0) \
                CNI_PLUGINS_SHA256=$(sha256sum "$www/cni-plugins-linux-amd64-v1.9.0.tgz" | cut -d ' ' -f 1) \
                run_upgrade "$f"
        expect_rc 1 "--upgrade with a wrong checksum"
        expect_line "[FAIL] upgrade aborted: SHA-256 mismatch for hypervisor-fw from $base/hypervisor-fw: expected $(printf '%064d' 0), got $sum; nothing was installed"
        expect_nothing_installed "$f" "checksum mismatch"
        expect_no_match "[PASS]"

        CH_SHA256=$(sha256sum "$www/cloud-hypervisor-static" | cut -d ' ' -f 1) \
                CH_REMOTE_SHA256=$(sha256sum "$www/ch-remote-static" | cut -d ' ' -f 1) \
                FIRMWARE_SHA256=$sum \
                CNI_PLUGINS_SHA256=$(sha256sum "$www/cni-plugins-linux-amd64-v1.9.0.tgz" | cut -d ' ' -f 1) \
                run_upgrade "$f"
        expect_rc 0 "--upgrade with checksums from the variables"
        expect_true "firmware installed" cmp -s "$www/hypervisor-fw" "$f/var/lib/cocoon/firmware/CLOUDHV.fd"

        f=$(make_upgrade_fixture upgrade-no-sum)
        CNI_PLUGINS_SHA256_URL='' run_upgrade "$f"
        expect_rc 1 "--upgrade without checksums"
        expect_line "[FAIL] upgrade aborted: no SHA-256 checksum for cloud-hypervisor-static: set CH_SHA256, CH_SHA256_URL or SHA256SUMS_URL; nothing was installed"
        expect_nothing_installed "$f" "no checksum"

        SHA256SUMS_URL=$base/SHA256SUMS CH_URL=$base/missing run_upgrade "$f"
        expect_rc 1 "--upgrade with a missing asset"
        expect_nothing_installed "$f" "download failure"
        grep -qF "[FAIL] upgrade aborted: no SHA-256 checksum for missing: set CH_SHA256" <<<"$out" ||
                fail "missing asset: $out"

        # An archive entry outside the top level.
        (cd "$www" && sha256sum evil.tgz >>SHA256SUMS)
        SHA256SUMS_URL=$base/SHA256SUMS CNI_PLUGINS_URL=$base/evil.tgz run_upgrade "$f"
        expect_rc 1 "--upgrade with a nested archive entry"
        expect_line "[FAIL] upgrade aborted: unexpected entry 'cni/bridge' in $base/evil.tgz: expected plugin files only; nothing was installed"
        expect_nothing_installed "$f" "nested archive entry"

        SHA256SUMS_URL=$base/SHA256SUMS CH_SHA256=$(printf '%064d' 0) CH_URL=$base/404/cloud-hypervisor-static run_upgrade "$f"
        expect_rc 1 "--upgrade with an unreachable URL"
        expect_line "[FAIL] upgrade aborted: download of $base/404/cloud-hypervisor-static failed: curl: (22) The requested URL returned error: 404; nothing was installed"
}

test_shellcheck() {
        if ! command -v shellcheck >/dev/null; then
                echo "skip: shellcheck not found"
                return
        fi
        if out=$(shellcheck "$CHECK" 2>&1); then
                pass "shellcheck doctor/check.sh"
        else
                fail "shellcheck doctor/check.sh:"$'\n'"$out"
        fi
}

test_usage
test_all_pass
test_hypervisors
test_kvm
test_network
test_directories_and_systemd
test_config_sources
test_fix_subnets
test_fix_system
test_upgrade
test_shellcheck

if [ "$failures" -gt 0 ]; then
        echo "$failures check(s) failed" >&2
        exit 1
fi
echo "all doctor tests passed"
