#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Check whether this host can run Cocoon VMs, and with --fix or --upgrade, repair what can be
# repaired. Run with --help for the options. Exit status: 0 when no check failed (warnings are
# allowed), 1 when a check or an upgrade failed, 2 on invalid usage.
#
# No "set -e": every check must run even after an earlier one failed.
set -uo pipefail

PROGRAM=${0##*/}

# Pinned releases for --upgrade. Every URL and checksum can be overridden from the environment.
CH_VERSION=${CH_VERSION:-v53.0}
FIRMWARE_VERSION=${FIRMWARE_VERSION:-0.5.0}
CNI_VERSION=${CNI_VERSION:-v1.9.0}

# Commands that change the host, replaceable by tests.
APT_GET=${APT_GET:-apt-get}
SYSCTL=${SYSCTL:-sysctl}
MODPROBE=${MODPROBE:-modprobe}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
# "builtin" opens /dev/kvm with ioctls (python3) or QEMU; anything else is a command that gets
# the device path and prints the same lines as kvm_probe_python.
KVM_PROBE=${KVM_PROBE:-builtin}

CH_MIN_VERSION=38
SYSTEMD_MIN_VERSION=246
SUBNET_DEFAULT=10.88.0.0/16

# Debian's containernetworking-plugins package installs the plugins here.
DEBIAN_CNI_BIN_DIR=/usr/lib/cni
CNI_PLUGINS=(bridge host-local loopback)
# Where Cocoon looks for QEMU's UEFI firmware after <root>/firmware, in order.
OVMF_PACKAGE_PATHS=(/usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE.fd /usr/share/ovmf/OVMF.fd)

fix=0
upgrade=0
# The prefix of every system path (--root): empty for the real host.
sysroot=
subnet=
config_file=
flag_root_dir=
flag_run_dir=
flag_log_dir=
flag_cni_conf_dir=
flag_cni_bin_dir=

pass_count=0
warn_count=0
fail_count=0
missing_packages=()

usage() {
        cat <<EOF
Usage: $PROGRAM [OPTIONS]

Check that this host has what Cocoon needs to run VMs: a hypervisor, UEFI firmware, a usable
/dev/kvm, CNI plugins and a network configuration, IP forwarding, bridge netfilter, Cocoon's
directories and systemd. Prints one PASS, WARN, FAIL, INFO or FIXED line per check and a summary.

Options:
  --fix                 install missing Debian/Ubuntu packages with apt-get, write a CNI
                        network configuration, create directories, set and persist the sysctls
                        and load br_netfilter; never changes the permissions of /dev/kvm
  --upgrade             download Cloud Hypervisor, ch-remote, the UEFI firmware and the CNI
                        plugins, verify their SHA-256 checksums, then install them; nothing is
                        installed unless every checksum matches
  --subnet CIDR         IPv4 subnet of the network that --fix writes (default $SUBNET_DEFAULT)
  --config FILE         Cocoon configuration file (default /etc/cocoon/cocoon.conf)
  --root-dir DIR        Cocoon's state directory (\$COCOON_ROOT_DIR, default /var/lib/cocoon)
  --run-dir DIR         runtime directory (\$COCOON_RUN_DIR, default ROOT-DIR/run)
  --log-dir DIR         log directory (\$COCOON_LOG_DIR, default /var/log/cocoon)
  --cni-conf-dir DIR    CNI network configurations (\$COCOON_CNI_CONF_DIR, default /etc/cni/net.d)
  --cni-bin-dir DIR     CNI plugins (\$COCOON_CNI_BIN_DIR, default /opt/cni/bin)
  --root PATH           prefix for every system path the script reads or writes (/etc, /proc,
                        /sys, /dev, /run, /usr, PATH entries), for testing against a fixture
                        tree; --fix then requires APT_GET, SYSCTL, MODPROBE and SYSTEMCTL to be set
  -h, --help            show this help

Settings come from the defaults, then the configuration file and its .d/*.conf drop-ins, then
the COCOON_* environment variables, then the options, as in cocoon itself.

Environment for --upgrade (defaults are the upstream GitHub release assets):
  CH_URL, CH_REMOTE_URL, FIRMWARE_URL, CNI_PLUGINS_URL       what to download
  CH_SHA256, CH_REMOTE_SHA256, FIRMWARE_SHA256, CNI_PLUGINS_SHA256
                                                             expected SHA-256 of each download
  CH_SHA256_URL, CH_REMOTE_SHA256_URL, FIRMWARE_SHA256_URL, CNI_PLUGINS_SHA256_URL
                                                             a checksum file for one download
  SHA256SUMS_URL                                             a sha256sum file listing downloads
                                                             by file name
  CH_VERSION ($CH_VERSION), FIRMWARE_VERSION ($FIRMWARE_VERSION), CNI_VERSION ($CNI_VERSION)

Commands that change the host (overridable for tests): APT_GET, SYSCTL, MODPROBE, SYSTEMCTL.
KVM_PROBE names a command that probes the KVM device instead of the built-in probe.

Exit status: 0 if no check failed, 1 if a check or the upgrade failed, 2 on invalid usage.
EOF
}

# --- Output ---------------------------------------------------------------------------------

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
        color_pass=$'\e[32m' color_warn=$'\e[33m' color_fail=$'\e[31m' color_info=$'\e[34m'
        color_off=$'\e[0m'
else
        color_pass='' color_warn='' color_fail='' color_info='' color_off=''
fi

pass() {
        pass_count=$((pass_count + 1))
        printf '%s[PASS]%s %s\n' "$color_pass" "$color_off" "$*"
}

warn() {
        warn_count=$((warn_count + 1))
        printf '%s[WARN]%s %s\n' "$color_warn" "$color_off" "$*"
}

fail() {
        fail_count=$((fail_count + 1))
        printf '%s[FAIL]%s %s\n' "$color_fail" "$color_off" "$*"
}

info() {
        printf '%s[INFO]%s %s\n' "$color_info" "$color_off" "$*"
}

fixed() {
        printf '%s[FIXED]%s %s\n' "$color_pass" "$color_off" "$*"
}

die_usage() {
        printf '%s: %s\nRun %s --help for usage.\n' "$PROGRAM" "$*" "$PROGRAM" >&2
        exit 2
}

# --- Helpers --------------------------------------------------------------------------------

# Find a program the way cocoon does, in the directories of $PATH (under --root). Prints the
# host path, without the --root prefix.
find_program() {
        local dir
        local -a dirs

        IFS=: read -ra dirs <<<"$PATH"
        for dir in "${dirs[@]}"; do
                [ -n "$dir" ] || continue
                if [ -f "$sysroot$dir/$1" ] && [ -x "$sysroot$dir/$1" ]; then
                        printf '%s\n' "$dir/$1"
                        return 0
                fi
        done
        return 1
}

# Print the first line a program writes for ARGS, or nothing if it fails or hangs.
program_version_line() {
        local program=$1
        shift
        timeout 10 "$sysroot$program" "$@" 2>&1 </dev/null | head -n 1
}

need_package() {
        local p

        for p in "${missing_packages[@]}"; do
                [ "$p" = "$1" ] && return 0
        done
        missing_packages+=("$1")
}

# Write CONTENT to PATH atomically, creating the parent directory. MODE is the file's mode.
write_file() {
        local path=$1 mode=$2 content=$3 tmp

        mkdir -p "$(dirname "$path")" || return 1
        tmp=$(mktemp "$path.XXXXXX") || return 1
        if ! printf '%s' "$content" >"$tmp" || ! chmod "$mode" "$tmp" || ! mv -f "$tmp" "$path"; then
                rm -f "$tmp"
                return 1
        fi
}

# Print the octal permission bits of a file, following symbolic links, or 0 if stat fails.
file_mode() {
        stat -L -c %a "$1" 2>/dev/null || echo 0
}

# --- Configuration --------------------------------------------------------------------------

# Read the keys the doctor needs from a cocoon.conf-style INI file into cfg_* variables.
read_config_file() {
        local file=$1 line section='' key value

        [ -f "$file" ] || return 0
        while IFS= read -r line || [ -n "$line" ]; do
                line=${line#"${line%%[![:space:]]*}"}
                line=${line%"${line##*[![:space:]]}"}
                case $line in
                "" | "#"* | ";"*)
                        continue
                        ;;
                "["*"]")
                        section=${line:1:${#line}-2}
                        continue
                        ;;
                *=*) ;;
                *)
                        continue
                        ;;
                esac
                key=${line%%=*}
                key=${key%"${key##*[![:space:]]}"}
                value=${line#*=}
                value=${value#"${value%%[![:space:]]*}"}
                case "$section/$key" in
                Cocoon/RootDir) cfg_root_dir=$value ;;
                Cocoon/RunDir) cfg_run_dir=$value ;;
                Cocoon/LogDir) cfg_log_dir=$value ;;
                Network/CNIConfDir) cfg_cni_conf_dir=$value ;;
                Network/CNIBinDir) cfg_cni_bin_dir=$value ;;
                VM/Firmware) cfg_firmware=$value ;;
                esac
        done <"$file"
}

load_config() {
        local file dropin

        cfg_root_dir=/var/lib/cocoon
        cfg_run_dir=
        cfg_log_dir=/var/log/cocoon
        cfg_cni_conf_dir=/etc/cni/net.d
        cfg_cni_bin_dir=/opt/cni/bin
        cfg_firmware=

        file=${config_file:-/etc/cocoon/cocoon.conf}
        if [ -n "$config_file" ] && [ ! -f "$sysroot$file" ]; then
                die_usage "configuration file '$file' not found"
        fi
        read_config_file "$sysroot$file"
        for dropin in "$sysroot$file.d"/*.conf; do
                [ -f "$dropin" ] && read_config_file "$dropin"
        done

        root_dir=${flag_root_dir:-${COCOON_ROOT_DIR:-$cfg_root_dir}}
        run_dir=${flag_run_dir:-${COCOON_RUN_DIR:-$cfg_run_dir}}
        log_dir=${flag_log_dir:-${COCOON_LOG_DIR:-$cfg_log_dir}}
        cni_conf_dir=${flag_cni_conf_dir:-${COCOON_CNI_CONF_DIR:-$cfg_cni_conf_dir}}
        cni_bin_dir=${flag_cni_bin_dir:-${COCOON_CNI_BIN_DIR:-$cfg_cni_bin_dir}}
        firmware=${COCOON_FIRMWARE:-$cfg_firmware}
        # Like cocoon, the run directory follows the root directory unless it is set on its own.
        run_dir=${run_dir:-$root_dir/run}

        local name value
        for name in root_dir run_dir log_dir cni_conf_dir cni_bin_dir; do
                value=${!name}
                [ "${value:0:1}" = / ] || die_usage "${name//_/-} must be an absolute path, got '$value'"
        done
}

detect_arch() {
        host_arch=$(uname -m)
        case $host_arch in
        x86_64)
                asset_suffix=
                go_arch=amd64
                qemu_system=qemu-system-x86_64
                qemu_package=qemu-system-x86
                firmware_package=ovmf
                ;;
        aarch64)
                asset_suffix=-aarch64
                go_arch=arm64
                qemu_system=qemu-system-aarch64
                qemu_package=qemu-system-arm
                firmware_package=qemu-efi-aarch64
                ;;
        *)
                printf '%s: unsupported architecture %s: Cocoon runs on x86_64 and aarch64\n' \
                        "$PROGRAM" "$host_arch" >&2
                exit 1
                ;;
        esac
}

# --- Subnet arithmetic ----------------------------------------------------------------------

# Parse an IPv4 address into a 32-bit integer on stdout. Rejects leading zeros, which some
# tools read as octal.
ipv4_to_int() {
        local -a octets
        local octet value=0

        [[ $1 =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || return 1
        IFS=. read -ra octets <<<"$1"
        for octet in "${octets[@]}"; do
                [[ $octet =~ ^(0|[1-9][0-9]*)$ ]] && [ "$octet" -le 255 ] || return 1
                value=$(((value << 8) | octet))
        done
        printf '%d\n' "$value"
}

int_to_ipv4() {
        printf '%d.%d.%d.%d\n' $((($1 >> 24) & 255)) $((($1 >> 16) & 255)) $((($1 >> 8) & 255)) $(($1 & 255))
}

# Validate an IPv4 network in CIDR form and set subnet_gateway to its first host address.
# Prints the reason and returns 1 when the subnet is unusable.
compute_gateway() {
        local cidr=$1 address prefix network mask

        if [[ ! $cidr =~ ^([0-9.]+)/([0-9]{1,2})$ ]] || ! network=$(ipv4_to_int "${BASH_REMATCH[1]}"); then
                printf "invalid --subnet '%s': expected an IPv4 network such as %s\n" "$cidr" "$SUBNET_DEFAULT"
                return 1
        fi
        address=${BASH_REMATCH[1]}
        prefix=$((10#${BASH_REMATCH[2]}))
        if [ "$prefix" -lt 8 ] || [ "$prefix" -gt 30 ]; then
                printf "invalid --subnet '%s': the prefix length must be from 8 to 30, so that the network has room for a gateway and VMs\n" "$cidr"
                return 1
        fi

        mask=$(((0xffffffff << (32 - prefix)) & 0xffffffff))
        if [ $((network & ~mask & 0xffffffff)) -ne 0 ]; then
                printf "invalid --subnet '%s': host bits are set in %s; the network address is %s/%d\n" \
                        "$cidr" "$address" "$(int_to_ipv4 $((network & mask)))" "$prefix"
                return 1
        fi
        subnet_gateway=$(int_to_ipv4 $((network + 1)))
}

# --- Hypervisors and tools ------------------------------------------------------------------

# Print the major version from "cloud-hypervisor v53.0.0"-style output, or nothing.
major_version() {
        [[ $1 =~ v([0-9]+)\. ]] && printf '%d\n' "$((10#${BASH_REMATCH[1]}))"
}

check_cloud_hypervisor() {
        local output major

        if ! ch_path=$(find_program cloud-hypervisor); then
                ch_path=
                if qemu_path=$(find_program "$qemu_system"); then
                        warn "cloud-hypervisor not found in PATH: Cocoon falls back to QEMU ($qemu_path); run --upgrade to install Cloud Hypervisor $CH_VERSION"
                else
                        fail "neither cloud-hypervisor nor $qemu_system found in PATH: Cocoon has no hypervisor; run --upgrade, or --fix to install QEMU"
                fi
                return
        fi

        output=$(program_version_line "$ch_path" --version)
        major=$(major_version "$output")
        if [ -z "$major" ]; then
                warn "cannot read the version of $ch_path from '$output': Cocoon needs v$CH_MIN_VERSION or newer"
        elif [ "$major" -lt "$CH_MIN_VERSION" ]; then
                fail "$output at $ch_path is too old: Cocoon needs v$CH_MIN_VERSION or newer; run --upgrade"
        else
                pass "$output ($ch_path)"
        fi
        ch_major=$major
}

check_ch_remote() {
        local path output major

        if ! path=$(find_program ch-remote); then
                info "ch-remote not found in PATH (optional: Cocoon calls the API itself, ch-remote helps to debug a running VM)"
                return
        fi

        output=$(program_version_line "$path" --version)
        major=$(major_version "$output")
        if [ -n "$ch_path" ] && [ -n "${ch_major:-}" ] && [ -n "$major" ] && [ "$major" != "$ch_major" ]; then
                warn "$output at $path does not match cloud-hypervisor v$ch_major: its API calls may be rejected; run --upgrade"
        else
                info "${output:-ch-remote} ($path, optional)"
        fi
}

check_qemu() {
        local output

        if qemu_path=$(find_program "$qemu_system"); then
                output=$(program_version_line "$qemu_path" --version)
                pass "${output:-$qemu_system} ($qemu_path)"
        elif [ -n "$ch_path" ]; then
                warn "$qemu_system not found in PATH: no fallback hypervisor where Cloud Hypervisor cannot run; install $qemu_package or run --fix"
        else
                fail "$qemu_system not found in PATH: install $qemu_package or run --fix"
        fi

        if qemu_img_path=$(find_program qemu-img); then
                output=$(program_version_line "$qemu_img_path" --version)
                pass "${output:-qemu-img} ($qemu_img_path)"
        else
                fail "qemu-img not found in PATH: cloud images need it; install qemu-utils or run --fix"
        fi
}

# A firmware file is usable when it is a non-empty, readable regular file, as cocoon requires.
firmware_usable() {
        [ -f "$sysroot$1" ] && [ -s "$sysroot$1" ] && [ -r "$sysroot$1" ]
}

check_firmware() {
        local ch_firmware=${firmware:-$root_dir/firmware/CLOUDHV.fd} candidate found=
        local -a candidates

        if [ -n "$ch_path" ]; then
                if firmware_usable "$ch_firmware"; then
                        pass "UEFI firmware for Cloud Hypervisor: $ch_firmware ($(stat -c %s "$sysroot$ch_firmware") bytes)"
                else
                        fail "UEFI firmware not found at $ch_firmware: cloud images cannot boot under Cloud Hypervisor; run --upgrade"
                fi
        fi

        [ -n "$qemu_path" ] || [ -z "$ch_path" ] || return
        if [ -n "$firmware" ]; then
                candidates=("$firmware")
        else
                candidates=("$root_dir/firmware/OVMF_CODE_4M.fd" "${OVMF_PACKAGE_PATHS[@]}")
        fi
        for candidate in "${candidates[@]}"; do
                if firmware_usable "$candidate"; then
                        found=$candidate
                        break
                fi
        done
        if [ -n "$found" ]; then
                pass "UEFI firmware for QEMU: $found"
                return
        fi

        if [ -n "$ch_path" ]; then
                warn "UEFI firmware for QEMU not found (looked in ${candidates[*]}): the QEMU fallback cannot boot cloud images; install $firmware_package or run --fix"
        else
                fail "UEFI firmware for QEMU not found (looked in ${candidates[*]}): install $firmware_package or run --fix"
        fi
}

check_filesystem_tools() {
        local path output

        if path=$(find_program mkfs.ext4); then
                output=$(program_version_line "$path" -V)
                pass "mkfs.ext4: ${output:-found} ($path)"
        else
                fail "mkfs.ext4 not found in PATH: Cocoon formats the writable disk of OCI VMs with it; install e2fsprogs or run --fix"
        fi

        if path=$(find_program fsck.erofs); then
                output=$(program_version_line "$path" -V)
                info "fsck.erofs: ${output:-found} ($path, optional)"
        else
                info "fsck.erofs not found in PATH (optional: it verifies EROFS layers by hand; install erofs-utils)"
        fi
}

# --- KVM ------------------------------------------------------------------------------------

# Open the KVM device, check the API version, create a VM and a vCPU, and compare the CPUID
# features KVM offers guests with the host's. Arguments: device path, /proc/cpuinfo path.
# Prints "api N" and "missing FLAG..." on success. Exits 2 when the device cannot be opened for
# lack of permission, 1 on any other failure, with the reason on stderr.
kvm_probe_python() {
        python3 - "$@" <<'EOF'
import errno, fcntl, os, struct, sys

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CREATE_VCPU = 0xAE41
KVM_GET_SUPPORTED_CPUID = 0xC008AE05  # _IOWR(0xAE, 0x05, struct kvm_cpuid2)

# The x86-64-v2 features: (CPUID leaf, register index in eax..edx, bit, /proc/cpuinfo flag).
FEATURES = [(1, 2, 0, "pni"), (1, 2, 9, "ssse3"), (1, 2, 13, "cx16"), (1, 2, 19, "sse4_1"),
            (1, 2, 20, "sse4_2"), (1, 2, 23, "popcnt"), (0x80000001, 2, 0, "lahf_lm")]

device, cpuinfo = sys.argv[1], sys.argv[2]
try:
    fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
except OSError as e:
    print(f"cannot open {device}: {e.strerror}", file=sys.stderr)
    sys.exit(2 if e.errno in (errno.EACCES, errno.EPERM) else 1)

step = "KVM_GET_API_VERSION"
try:
    api = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    if api != 12:
        print(f"{device} reports KVM API version {api}, expected 12", file=sys.stderr)
        sys.exit(1)
    step = "KVM_CREATE_VM"
    vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
    step = "KVM_CREATE_VCPU"
    fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
except OSError as e:
    print(f"{step} failed on {device}: {e.strerror}", file=sys.stderr)
    sys.exit(1)
print(f"api {api}")

try:
    entries = 256
    buf = bytearray(struct.pack("II", entries, 0) + bytes(40 * entries))
    fcntl.ioctl(fd, KVM_GET_SUPPORTED_CPUID, buf, True)
except OSError:
    sys.exit(0)  # not x86: no CPUID to compare
offered = {}
for i in range(struct.unpack_from("I", buf)[0]):
    function, index, _, *registers = struct.unpack_from("7I", buf, 8 + 40 * i)
    if index == 0:
        offered[function] = registers
try:
    with open(cpuinfo) as f:
        flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
except OSError:
    flags = []
missing = [name for leaf, reg, bit, name in FEATURES
           if name in flags and not (offered.get(leaf, [0] * 4)[reg] >> bit) & 1]
print("missing " + " ".join(missing))
EOF
}

# QEMU opens the fixed path /dev/kvm, so this fallback ignores --root.
kvm_probe_qemu() {
        local output

        if ! output=$(printf 'quit\n' | timeout 20 "$qemu_system" -accel kvm -M none -nodefaults \
                -display none -monitor stdio 2>&1 >/dev/null); then
                printf '%s\n' "${output:-$qemu_system -accel kvm failed}" >&2
                return 1
        fi
        printf 'api 12\n'
}

run_kvm_probe() {
        if [ "$KVM_PROBE" != builtin ]; then
                "$KVM_PROBE" "$sysroot/dev/kvm" "$sysroot/proc/cpuinfo"
        elif command -v python3 >/dev/null; then
                kvm_probe_python "$sysroot/dev/kvm" "$sysroot/proc/cpuinfo"
        elif command -v "$qemu_system" >/dev/null && [ -z "$sysroot" ]; then
                kvm_probe_qemu
        else
                return 3
        fi
}

check_kvm() {
        local kvm user mode output rc=0 api missing

        kvm=$sysroot/dev/kvm
        user=${SUDO_USER:-$(id -un)}
        if [ ! -e "$kvm" ]; then
                fail "/dev/kvm not found: enable virtualization in the firmware settings and load kvm_intel or kvm_amd (nested virtualization must be enabled inside a VM)"
                return
        fi

        mode=$(file_mode "$kvm")
        if [ $((8#$mode & 8#006)) -eq 6 ]; then
                warn "/dev/kvm is readable and writable by every user (mode $mode): any local user can create VMs; the usual mode is 0660 with group kvm (this script never changes it)"
        fi

        output=$(run_kvm_probe 2>&1) || rc=$?
        case $rc in
        0) ;;
        2)
                if [ "$(id -u)" -eq 0 ]; then
                        fail "root cannot open /dev/kvm ($output): a device cgroup or container policy blocks it"
                else
                        fail "/dev/kvm is not readable and writable by user $user: add the user to the kvm group (usermod -aG kvm $user) and log in again; --fix never changes the permissions of /dev/kvm"
                fi
                return
                ;;
        3)
                warn "cannot probe /dev/kvm: neither python3 nor $qemu_system is installed; only checked that it exists"
                return
                ;;
        *)
                fail "/dev/kvm is not usable: ${output//$'\n'/; }"
                return
                ;;
        esac

        api=$(sed -n 's/^api //p' <<<"$output")
        missing=$(sed -n 's/^missing //p' <<<"$output")
        pass "/dev/kvm works: KVM API ${api:-12}, created a VM and a vCPU"
        if [ -n "$missing" ]; then
                warn "KVM does not offer guests these CPU features of the host: $missing (typical of nested virtualization); guest code built for x86-64-v2 stops with illegal-instruction errors"
        fi
        info "the KVM probe runs no guest code, so it cannot show whether a guest kernel boots on this host"
}

# --- Networking -----------------------------------------------------------------------------

cocoon_conflist() {
        cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cocoon",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$1", "gateway": "$2" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
EOF
}

first_conflist() {
        local f

        for f in "$sysroot$cni_conf_dir"/*.conflist; do
                if [ -f "$f" ]; then
                        printf '%s\n' "$f"
                        return 0
                fi
        done
        return 1
}

# Print the "name" of a conflist. Returns 1 when python3 finds that the file is not JSON.
conflist_name() {
        if command -v python3 >/dev/null; then
                python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("name", ""))' "$1" 2>/dev/null
        else
                grep -o '"name"[[:space:]]*:[[:space:]]*"[^"]*"' "$1" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/'
        fi
}

check_cni_config() {
        local file name path

        if [ "$fix" -eq 1 ] && ! first_conflist >/dev/null; then
                path=$cni_conf_dir/10-cocoon.conflist
                if write_file "$sysroot$path" 644 "$(cocoon_conflist "$subnet" "$subnet_gateway")"$'\n'; then
                        fixed "wrote $path: network cocoon on bridge cni0, subnet $subnet, gateway $subnet_gateway"
                else
                        fail "cannot write $path"
                fi
        elif [ "$fix" -eq 1 ] && [ "$subnet_given" -eq 1 ]; then
                info "--subnet $subnet not used: a network configuration exists already in $cni_conf_dir"
        fi

        if file=$(first_conflist); then
                if ! name=$(conflist_name "$file"); then
                        fail "${file#"$sysroot"} is not valid JSON: cocoon cannot load it; fix or remove it"
                        return
                fi
                pass "CNI network configuration: ${file#"$sysroot"} (network ${name:-without a name})"
        else
                fail "no *.conflist in $cni_conf_dir: VMs with network interfaces cannot start; run --fix to write 10-cocoon.conflist"
        fi
}

missing_cni_plugins() {
        local dir=$1 plugin

        for plugin in "${CNI_PLUGINS[@]}"; do
                [ -f "$sysroot$dir/$plugin" ] && [ -x "$sysroot$dir/$plugin" ] || printf '%s ' "$plugin"
        done
}

# Link Debian's packaged plugins into the configured directory, so that cocoon finds them.
link_debian_cni_plugins() {
        local plugin

        [ "$cni_bin_dir" != "$DEBIAN_CNI_BIN_DIR" ] || return 0
        [ -z "$(missing_cni_plugins "$DEBIAN_CNI_BIN_DIR")" ] || return 0
        mkdir -p "$sysroot$cni_bin_dir" || return 1
        for plugin in "${CNI_PLUGINS[@]}"; do
                if [ ! -e "$sysroot$cni_bin_dir/$plugin" ]; then
                        ln -s "$DEBIAN_CNI_BIN_DIR/$plugin" "$sysroot$cni_bin_dir/$plugin" || return 1
                fi
        done
        fixed "linked the CNI plugins ${CNI_PLUGINS[*]} from $DEBIAN_CNI_BIN_DIR into $cni_bin_dir"
}

check_cni_plugins() {
        local missing

        missing=$(missing_cni_plugins "$cni_bin_dir")
        if [ -n "$missing" ] && [ "$fix" -eq 1 ]; then
                link_debian_cni_plugins || fail "cannot link the CNI plugins into $cni_bin_dir"
                missing=$(missing_cni_plugins "$cni_bin_dir")
        fi

        if [ -z "$missing" ]; then
                pass "CNI plugins ${CNI_PLUGINS[*]} in $cni_bin_dir"
        elif [ -z "$(missing_cni_plugins "$DEBIAN_CNI_BIN_DIR")" ]; then
                fail "CNI plugins missing from $cni_bin_dir: ${missing% }; they are in $DEBIAN_CNI_BIN_DIR, so set COCOON_CNI_BIN_DIR=$DEBIAN_CNI_BIN_DIR ([Network] CNIBinDir=) or run --fix to link them"
        else
                fail "CNI plugins missing from $cni_bin_dir: ${missing% }; run --fix to install containernetworking-plugins, or --upgrade"
        fi
}

# Decide up front which packages --fix installs, so that apt-get runs once and before the checks.
plan_packages() {
        find_program "$qemu_system" >/dev/null || need_package "$qemu_package"
        find_program qemu-img >/dev/null || need_package qemu-utils
        find_program mkfs.ext4 >/dev/null || need_package e2fsprogs
        find_program fsck.erofs >/dev/null || need_package erofs-utils
        [ -z "$(missing_cni_plugins "$cni_bin_dir")" ] || [ -z "$(missing_cni_plugins "$DEBIAN_CNI_BIN_DIR")" ] ||
                need_package containernetworking-plugins

        local path
        [ -n "$firmware" ] && return
        for path in "$root_dir/firmware/OVMF_CODE_4M.fd" "${OVMF_PACKAGE_PATHS[@]}"; do
                firmware_usable "$path" && return
        done
        need_package "$firmware_package"
}

install_packages() {
        local rc=0

        [ "${#missing_packages[@]}" -gt 0 ] || return 0
        if ! command -v "$APT_GET" >/dev/null; then
                fail "cannot install ${missing_packages[*]}: $APT_GET not found; install them with the package manager of this system"
                return
        fi

        DEBIAN_FRONTEND=noninteractive "$APT_GET" update -qq || rc=$?
        if [ "$rc" -eq 0 ]; then
                DEBIAN_FRONTEND=noninteractive "$APT_GET" install -y -qq --no-install-recommends \
                        "${missing_packages[@]}" || rc=$?
        fi
        if [ "$rc" -eq 0 ]; then
                fixed "installed ${missing_packages[*]} with apt-get"
        else
                fail "apt-get failed with exit status $rc while installing ${missing_packages[*]}"
        fi
}

sysctl_value() {
        local file

        file=$sysroot/proc/sys/${1//.//}
        [ -r "$file" ] && tr -d '[:space:]' <"$file"
}

persist_sysctls() {
        local path=/etc/sysctl.d/90-cocoon.conf

        [ "$sysctls_persisted" -eq 0 ] || return 0
        sysctls_persisted=1
        # systemd-sysctl runs after systemd-modules-load, so the bridge key exists at boot.
        if write_file "$sysroot$path" 644 "# Written by Cocoon's doctor/check.sh --fix: VMs on the CNI bridge need routing and
# bridged traffic that passes through iptables.
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
"; then
                fixed "wrote $path"
        else
                fail "cannot write $path"
        fi
}

# Set a sysctl to 1 now and persistently. Prints a FIXED line on success.
fix_sysctl() {
        persist_sysctls
        if "$SYSCTL" -q -w "$1=1"; then
                fixed "set $1 = 1"
        else
                fail "$SYSCTL -w $1=1 failed"
        fi
}

check_ip_forward() {
        local key=net.ipv4.ip_forward

        if [ "$(sysctl_value $key)" != 1 ] && [ "$fix" -eq 1 ]; then
                fix_sysctl $key
        fi

        case $(sysctl_value $key) in
        1) pass "IP forwarding is on ($key = 1)" ;;
        "") fail "cannot read $key from /proc/sys/net/ipv4/ip_forward" ;;
        *) fail "IP forwarding is off ($key = $(sysctl_value $key)): VMs cannot reach other networks; run --fix" ;;
        esac
}

check_bridge_netfilter() {
        local key=net.bridge.bridge-nf-call-iptables path=/etc/modules-load.d/cocoon.conf

        # The key exists exactly when br_netfilter is active, as a module or built in.
        if [ -z "$(sysctl_value $key)" ] && [ "$fix" -eq 1 ]; then
                if write_file "$sysroot$path" 644 $'br_netfilter\n'; then
                        fixed "wrote $path"
                else
                        fail "cannot write $path"
                fi
                if "$MODPROBE" br_netfilter; then
                        fixed "loaded br_netfilter"
                else
                        fail "$MODPROBE br_netfilter failed"
                fi
        fi
        if [ -z "$(sysctl_value $key)" ]; then
                fail "br_netfilter is not loaded (no /proc/sys/net/bridge/bridge-nf-call-iptables): iptables does not see traffic on the VM bridge; run --fix"
                return
        fi
        pass "br_netfilter is loaded"

        if [ "$(sysctl_value $key)" != 1 ] && [ "$fix" -eq 1 ]; then
                fix_sysctl $key
        fi
        if [ "$(sysctl_value $key)" = 1 ]; then
                pass "bridged traffic passes through iptables ($key = 1)"
        else
                fail "$key is $(sysctl_value $key): iptables does not see traffic on the VM bridge; run --fix"
        fi
}

# --- Directories and systemd ----------------------------------------------------------------

# check_directory PATH MODE CONTENTS: PATH should exist with at most MODE's permissions.
check_directory() {
        local dir=$1 mode=$2 contents=$3 actual

        if [ ! -d "$sysroot$dir" ] && [ "$fix" -eq 1 ]; then
                if install -d -m "$mode" "$sysroot$dir"; then
                        fixed "created $dir with mode $mode"
                else
                        fail "cannot create $dir"
                        return
                fi
        fi
        if [ ! -d "$sysroot$dir" ]; then
                warn "$dir ($contents) does not exist: cocoon creates it on first use, or run --fix"
                return
        fi

        actual=$(file_mode "$sysroot$dir")
        if [ $((8#$actual & ~8#$mode)) -ne 0 ] && [ "$fix" -eq 1 ]; then
                if chmod "$mode" "$sysroot$dir"; then
                        fixed "changed the mode of $dir from $actual to $mode"
                        actual=$mode
                fi
        fi
        if [ $((8#$actual & ~8#$mode)) -ne 0 ]; then
                warn "$dir ($contents) has mode $actual, more open than $mode; run --fix"
        else
                pass "$dir exists (mode $actual)"
        fi
}

check_directories() {
        check_directory "$root_dir" 750 "images and VM records"
        check_directory "$run_dir" 750 "VM sockets and disks"
        check_directory "$log_dir" 750 "VM logs"
        check_directory /run/netns 755 "the VMs' network namespaces"
}

check_systemd() {
        local output version comm

        if ! command -v "$SYSTEMCTL" >/dev/null; then
                fail "systemctl not found: Cocoon runs each VM as a transient systemd unit"
                return
        fi

        output=$("$SYSTEMCTL" --version 2>/dev/null | head -n 1)
        version=$(sed -n 's/^systemd \([0-9]\+\).*/\1/p' <<<"$output")
        if [ -z "$version" ]; then
                warn "cannot read the systemd version from '$output': Cocoon needs $SYSTEMD_MIN_VERSION or newer"
        elif [ "$version" -lt "$SYSTEMD_MIN_VERSION" ]; then
                fail "systemd $version is too old: Cocoon needs $SYSTEMD_MIN_VERSION or newer"
        else
                pass "systemd $version"
        fi

        # sd_booted(3) makes the same test.
        if [ -d "$sysroot/run/systemd/system" ]; then
                pass "systemd is PID 1"
        else
                comm=$(cat "$sysroot/proc/1/comm" 2>/dev/null)
                fail "PID 1 is ${comm:-unknown}, not systemd: Cocoon needs systemd as the init system to run VMs as transient units"
                return
        fi

        if ! "$SYSTEMCTL" is-active --quiet systemd-journald.service && [ "$fix" -eq 1 ]; then
                "$SYSTEMCTL" start systemd-journald.service && fixed "started systemd-journald"
        fi
        if "$SYSTEMCTL" is-active --quiet systemd-journald.service; then
                pass "systemd-journald is running"
        else
                fail "systemd-journald is not running: the output of VMs and hypervisors is lost; run --fix"
        fi
}

# --- Upgrade --------------------------------------------------------------------------------

set_upgrade_defaults() {
        local ch_base=https://github.com/cloud-hypervisor/cloud-hypervisor/releases/download/$CH_VERSION
        local fw_base=https://github.com/cloud-hypervisor/rust-hypervisor-firmware/releases/download/$FIRMWARE_VERSION
        local cni_base=https://github.com/containernetworking/plugins/releases/download/$CNI_VERSION

        CH_URL=${CH_URL:-$ch_base/cloud-hypervisor-static$asset_suffix}
        CH_REMOTE_URL=${CH_REMOTE_URL:-$ch_base/ch-remote-static$asset_suffix}
        # rust-hypervisor-firmware, which Cloud Hypervisor accepts with --firmware, saved under the
        # name cocoon looks for. NOTE: Ubuntu 24.04 and Debian 13 cloud images are reported not to
        # boot with version 0.5.0.
        FIRMWARE_URL=${FIRMWARE_URL:-$fw_base/hypervisor-fw$asset_suffix}
        CNI_PLUGINS_URL=${CNI_PLUGINS_URL:-$cni_base/cni-plugins-linux-$go_arch-$CNI_VERSION.tgz}

        # No checksum is pinned for Cloud Hypervisor and the firmware, because none could be
        # verified when this script was written. Set CH_SHA256, CH_REMOTE_SHA256 and
        # FIRMWARE_SHA256, or SHA256SUMS_URL.
        CH_SHA256=${CH_SHA256:-}
        CH_REMOTE_SHA256=${CH_REMOTE_SHA256:-}
        FIRMWARE_SHA256=${FIRMWARE_SHA256:-}
        CNI_PLUGINS_SHA256=${CNI_PLUGINS_SHA256:-}
        CH_SHA256_URL=${CH_SHA256_URL:-}
        CH_REMOTE_SHA256_URL=${CH_REMOTE_SHA256_URL:-}
        FIRMWARE_SHA256_URL=${FIRMWARE_SHA256_URL:-}
        # NOTE: assumes the .sha256 file that CNI plugin releases publish next to each tarball;
        # not checked against a real release, because this script was written offline.
        CNI_PLUGINS_SHA256_URL=${CNI_PLUGINS_SHA256_URL-$CNI_PLUGINS_URL.sha256}
        SHA256SUMS_URL=${SHA256SUMS_URL:-}
}

download() {
        local url=$1 dest=$2 err

        if ! err=$(curl -fsSL --proto =http,https,file --connect-timeout 20 --retry 2 -o "$dest" "$url" 2>&1); then
                upgrade_error="download of $url failed: ${err:-curl failed}"
                return 1
        fi
}

# Print the checksum for file NAME from a sha256sum-format FILE. A file with a single line may
# name no file, as some projects publish it.
checksum_from_file() {
        local file=$1 name=$2 sum

        sum=$(awk -v name="$name" '{ f = $2; sub(/^\*/, "", f); sub(/^.*\//, "", f); if (f == name) { print $1; exit } }' "$file")
        if [ -z "$sum" ] && [ "$(grep -c . "$file")" -eq 1 ]; then
                sum=$(awk 'NF { print $1 }' "$file")
        fi
        printf '%s\n' "$sum"
}

# Set expected_sha256 for download PREFIX (CH, CH_REMOTE, FIRMWARE or CNI_PLUGINS): from
# PREFIX_SHA256, from SHA256SUMS_URL, or from PREFIX_SHA256_URL, in that order.
resolve_checksum() {
        local prefix=$1 name=$2 sum_var=${1}_SHA256 url_var=${1}_SHA256_URL sums_file

        expected_sha256=${!sum_var}
        if [ -z "$expected_sha256" ] && [ -n "$SHA256SUMS_URL" ]; then
                expected_sha256=$(checksum_from_file "$workdir/SHA256SUMS" "$name")
        fi
        if [ -z "$expected_sha256" ] && [ -n "${!url_var}" ]; then
                sums_file=$workdir/$prefix.sha256
                download "${!url_var}" "$sums_file" || return 1
                expected_sha256=$(checksum_from_file "$sums_file" "$name")
        fi
        if [ -z "$expected_sha256" ]; then
                upgrade_error="no SHA-256 checksum for $name: set $sum_var, $url_var or SHA256SUMS_URL"
                return 1
        fi
        expected_sha256=$(tr '[:upper:]' '[:lower:]' <<<"$expected_sha256")
        if [[ ! $expected_sha256 =~ ^[0-9a-f]{64}$ ]]; then
                upgrade_error="invalid SHA-256 checksum '$expected_sha256' for $name: expected 64 hexadecimal digits"
                return 1
        fi
}

# Download one release asset into the work directory and verify it.
fetch_verified() {
        local prefix=$1 url_var=${1}_URL name actual

        name=${!url_var##*/}
        name=${name%%[?#]*}
        resolve_checksum "$prefix" "$name" || return 1
        download "${!url_var}" "$workdir/$prefix" || return 1
        actual=$(sha256sum "$workdir/$prefix" | cut -d ' ' -f 1)
        if [ "$actual" != "$expected_sha256" ]; then
                upgrade_error="SHA-256 mismatch for $name from ${!url_var}: expected $expected_sha256, got $actual"
                return 1
        fi
}

# Unpack the CNI tarball into the work directory. Only regular files at the top level are
# accepted, so that the archive cannot write outside the plugin directory.
unpack_cni_plugins() {
        local listing entry file plugin

        mkdir "$workdir/cni" || return 1
        if ! listing=$(tar -tzf "$workdir/CNI_PLUGINS" 2>&1); then
                upgrade_error="cannot read $CNI_PLUGINS_URL as a gzip-compressed tar archive: $listing"
                return 1
        fi
        while IFS= read -r entry; do
                entry=${entry#./}
                [ -n "$entry" ] || continue
                if [[ $entry == */* || $entry == .* ]]; then
                        upgrade_error="unexpected entry '$entry' in $CNI_PLUGINS_URL: expected plugin files only"
                        return 1
                fi
        done <<<"$listing"

        if ! tar -xzf "$workdir/CNI_PLUGINS" -C "$workdir/cni" --no-same-owner --no-same-permissions; then
                upgrade_error="cannot unpack $CNI_PLUGINS_URL"
                return 1
        fi
        for file in "$workdir"/cni/*; do
                if [ -L "$file" ] || [ ! -f "$file" ]; then
                        upgrade_error="unexpected entry '${file##*/}' in $CNI_PLUGINS_URL: expected regular files only"
                        return 1
                fi
        done
        for plugin in "${CNI_PLUGINS[@]}"; do
                if [ ! -f "$workdir/cni/$plugin" ]; then
                        upgrade_error="$CNI_PLUGINS_URL lacks the $plugin plugin"
                        return 1
                fi
        done
}

# Install SOURCE as DEST (a host path) with MODE, replacing DEST atomically.
install_file() {
        local source=$1 dest=$2 mode=$3 tmp

        mkdir -p "$(dirname "$sysroot$dest")" || return 1
        tmp=$(mktemp "$sysroot$dest.XXXXXX") || return 1
        if ! install -m "$mode" "$source" "$tmp" || ! mv -f "$tmp" "$sysroot$dest"; then
                rm -f "$tmp"
                return 1
        fi
}

run_upgrade() {
        local prefix file ok=1

        set_upgrade_defaults
        if ! command -v curl >/dev/null; then
                fail "--upgrade needs curl: install it, then try again; nothing was installed"
                return 1
        fi
        workdir=$(mktemp -d) || return 1
        upgrade_error=

        # Download and verify everything before installing anything.
        if [ -n "$SHA256SUMS_URL" ] && ! download "$SHA256SUMS_URL" "$workdir/SHA256SUMS"; then
                ok=0
        fi
        for prefix in CH CH_REMOTE FIRMWARE CNI_PLUGINS; do
                [ "$ok" -eq 1 ] || break
                fetch_verified "$prefix" || ok=0
        done
        [ "$ok" -eq 0 ] || unpack_cni_plugins || ok=0
        if [ "$ok" -eq 0 ]; then
                fail "upgrade aborted: $upgrade_error; nothing was installed"
                rm -rf "$workdir"
                return 1
        fi

        if install_file "$workdir/CH" /usr/local/bin/cloud-hypervisor 755 &&
                install_file "$workdir/CH_REMOTE" /usr/local/bin/ch-remote 755 &&
                install_file "$workdir/FIRMWARE" "$root_dir/firmware/CLOUDHV.fd" 644; then
                fixed "installed cloud-hypervisor and ch-remote from $CH_URL into /usr/local/bin"
                fixed "installed the UEFI firmware from $FIRMWARE_URL as $root_dir/firmware/CLOUDHV.fd"
        else
                fail "installing Cloud Hypervisor or the firmware failed"
                ok=0
        fi
        for file in "$workdir"/cni/*; do
                install_file "$file" "$cni_bin_dir/${file##*/}" 755 || ok=0
        done
        if [ "$ok" -eq 1 ]; then
                fixed "installed the CNI plugins from $CNI_PLUGINS_URL into $cni_bin_dir"
        else
                fail "installing the CNI plugins into $cni_bin_dir failed"
        fi
        rm -rf "$workdir"
        [ "$ok" -eq 1 ]
}

# --- Main -----------------------------------------------------------------------------------

parse_args() {
        local opt value

        subnet_given=0
        while [ $# -gt 0 ]; do
                opt=${1%%=*}
                value=${1#*=}
                case $opt in
                --subnet | --config | --root-dir | --run-dir | --log-dir | --cni-conf-dir | --cni-bin-dir | --root)
                        if [ "$1" = "$opt" ]; then
                                [ $# -ge 2 ] || die_usage "option $opt needs a value"
                                value=$2
                                shift
                        fi
                        ;;
                *)
                        [ "$1" = "$opt" ] || die_usage "option $opt takes no value"
                        ;;
                esac
                case $opt in
                --fix) fix=1 ;;
                --upgrade) upgrade=1 ;;
                --subnet)
                        subnet=$value
                        subnet_given=1
                        ;;
                --config) config_file=$value ;;
                --root-dir) flag_root_dir=$value ;;
                --run-dir) flag_run_dir=$value ;;
                --log-dir) flag_log_dir=$value ;;
                --cni-conf-dir) flag_cni_conf_dir=$value ;;
                --cni-bin-dir) flag_cni_bin_dir=$value ;;
                --root) sysroot=${value%/} ;;
                -h | --help)
                        usage
                        exit 0
                        ;;
                *) die_usage "unknown option '$1'" ;;
                esac
                shift
        done
}

# With --root, the file changes go to the fixture tree, so commands must not touch the host.
check_root_commands() {
        local name

        [ -n "$sysroot" ] && [ "$fix" -eq 1 ] || return 0
        for name in APT_GET SYSCTL MODPROBE SYSTEMCTL; do
                case ${!name} in
                apt-get | sysctl | modprobe | systemctl)
                        die_usage "--fix with --root needs APT_GET, SYSCTL, MODPROBE and SYSTEMCTL set to commands that do not change this host ($name is ${!name})"
                        ;;
                esac
        done
}

main() {
        local reason

        parse_args "$@"
        subnet=${subnet:-$SUBNET_DEFAULT}
        if ! reason=$(compute_gateway "$subnet"); then
                die_usage "$reason"
        fi
        # compute_gateway ran in a subshell above, to capture the reason.
        compute_gateway "$subnet" >/dev/null
        if [ -n "$sysroot" ] && [ ! -d "$sysroot" ]; then
                die_usage "--root '$sysroot' is not a directory"
        fi
        check_root_commands
        if [ $((fix + upgrade)) -gt 0 ] && [ -z "$sysroot" ] && [ "$(id -u)" -ne 0 ]; then
                printf '%s: --fix and --upgrade change system files: run them as root\n' "$PROGRAM" >&2
                exit 1
        fi
        detect_arch
        load_config
        sysctls_persisted=0
        ch_path=
        ch_major=
        qemu_path=

        if [ "$upgrade" -eq 1 ] && ! run_upgrade; then
                printf '\nPass: %d  Warn: %d  Fail: %d\n' "$pass_count" "$warn_count" "$fail_count"
                exit 1
        fi
        if [ "$fix" -eq 1 ]; then
                plan_packages
                install_packages
        fi

        check_cloud_hypervisor
        check_ch_remote
        check_qemu
        check_firmware
        check_kvm
        check_cni_config
        check_cni_plugins
        check_ip_forward
        check_bridge_netfilter
        check_directories
        check_systemd
        check_filesystem_tools

        printf '\nPass: %d  Warn: %d  Fail: %d\n' "$pass_count" "$warn_count" "$fail_count"
        if [ "$fail_count" -gt 0 ]; then
                if [ "$fix" -eq 0 ]; then
                        printf 'Run %s --fix to repair what can be repaired, and --upgrade to install Cloud Hypervisor.\n' "$PROGRAM"
                fi
                exit 1
        fi
        exit 0
}

main "$@"
