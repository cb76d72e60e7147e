#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Set up a fresh Debian 12 machine for Cocoon: install the build and runtime packages, build,
# and install. Run as root from the source tree. Re-running it is safe.
#
#   tools/setup-debian.sh [--no-install]     --no-install stops after the build
set -euo pipefail

cd "$(dirname "$0")/.."

install=1
if [ "${1:-}" = "--no-install" ]; then
        install=0
fi

if [ "$(id -u)" -ne 0 ]; then
        echo "tools/setup-debian.sh must run as root (it installs packages)." >&2
        exit 1
fi

# Build: compiler, meson, and the libraries Cocoon links against.
build_packages=(
        gcc clang libclang-rt-14-dev meson ninja-build pkg-config git
        libsystemd-dev libcurl4-openssl-dev libjansson-dev libarchive-dev libssl-dev libisal-dev libcrypt-dev
        scdoc man-db
)
# Runtime: what the commands run (qemu-img, mkfs.ext4), the QEMU backend and its firmware,
# CNI plugins, and systemd with dbus.
runtime_packages=(
        qemu-utils qemu-system-x86 ovmf e2fsprogs erofs-utils
        containernetworking-plugins iproute2 systemd dbus
)
# Tests: a real registry, skopeo, a guest kernel and busybox for the test VM image, and the
# tools the test scripts use.
test_packages=(
        docker-registry skopeo linux-image-amd64 busybox-static cpio zstd jq curl python3
        shellcheck kmod util-linux openssh-client file mtools dosfstools fdisk systemd-boot-efi
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
        "${build_packages[@]}" "${runtime_packages[@]}" "${test_packages[@]}" >/dev/null

if [ ! -f build/build.ninja ]; then
        meson setup build --buildtype=debugoptimized
fi
ninja -C build

if [ "$install" -eq 1 ]; then
        meson install -C build --quiet
        # Directories with their modes, and VMs flagged --autostart started at boot. systemctl
        # enable works on the unit files even where systemd is not running.
        systemd-tmpfiles --create /usr/local/lib/tmpfiles.d/cocoon.conf || \
                echo "Warning: systemd-tmpfiles could not create Cocoon's directories." >&2
        systemctl enable --quiet cocoon-autostart.service || \
                echo "Warning: could not enable cocoon-autostart.service." >&2
fi

echo "Cocoon is built$( [ "$install" -eq 1 ] && echo " and installed"): $(build/cocoon version | head -1)"
