#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build the cloud image of the end-to-end test as OUTDIR/cloud.qcow2: a 64 MiB disk with a GPT
# and one EFI system partition (FAT32) that holds systemd-boot as \EFI\BOOT\BOOTX64.EFI, the
# host's Debian kernel (an EFI stub) and a busybox initramfs whose /init is
# tests/e2e/cloud-guest-init. UEFI firmware (OVMF) starts systemd-boot from the removable-media
# path, and systemd-boot starts the kernel with the console on ttyS0, as a cloud image's
# bootloader does. The guest reads the cidata seed and reports on the console.
#
# A second run with the same kernel, busybox, systemd-boot and scripts reuses OUTDIR.
# Environment: KVER selects the kernel (default: the newest /boot/vmlinuz-* with modules).
# Needs: busybox (static), cpio, gzip, modprobe, sfdisk (fdisk), mkfs.vfat (dosfstools), mcopy
# and mmd (mtools), qemu-img, and systemd-boot's EFI binary (Debian: systemd-boot-efi).

set -euo pipefail
umask 022
export LC_ALL=C

if [[ $# -ne 1 ]]; then
        echo "Usage: $0 OUTDIR" >&2
        exit 2
fi

OUTDIR=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STARTED=$SECONDS
SYSTEMD_BOOT=${SYSTEMD_BOOT:-/usr/lib/systemd/boot/efi/systemd-bootx64.efi}
DISK_MIB=64

# virtio for the disks and the NIC, cdrom and isofs for the ISO 9660 seed, vfat for the EFI
# system partition, button and evdev for the ACPI power button.
MODULES=(virtio_pci virtio_blk virtio_net cdrom isofs vfat nls_cp437 nls_ascii nls_utf8 button evdev)

die() {
        echo "build-cloud-image: $*" >&2
        exit 1
}

for tool in busybox cpio gzip modprobe sfdisk mkfs.vfat mcopy mmd qemu-img sha256sum; do
        command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -r $SYSTEMD_BOOT ]] || die "$SYSTEMD_BOOT not found (Debian: apt-get install systemd-boot-efi)"
BUSYBOX=$(command -v busybox)

pick_kernel() {
        local path version best=

        for path in /boot/vmlinuz-*; do
                [[ -e $path ]] || continue
                version=${path#/boot/vmlinuz-}
                [[ -d /lib/modules/$version/kernel ]] || continue
                best=$(printf '%s\n%s\n' "$best" "$version" | sort -V | tail -n 1)
        done
        [[ -n $best ]] || die "no /boot/vmlinuz-* with modules in /lib/modules"
        echo "$best"
}

KVER=${KVER:-$(pick_kernel)}
KERNEL=/boot/vmlinuz-$KVER
[[ -r $KERNEL ]] || die "$KERNEL is missing or not readable"

STAMP="kver=$KVER kernel=$(sha256sum <"$KERNEL" | cut -c1-64)"
STAMP+=" busybox=$(sha256sum <"$BUSYBOX" | cut -c1-64)"
STAMP+=" systemd-boot=$(sha256sum <"$SYSTEMD_BOOT" | cut -c1-64)"
STAMP+=" scripts=$(cat "$HERE/build-cloud-image.sh" "$HERE/cloud-guest-init" | sha256sum | cut -c1-64)"

if [[ -f $OUTDIR/stamp && $(<"$OUTDIR/stamp") == "$STAMP" && -f $OUTDIR/cloud.qcow2 ]]; then
        echo "build-cloud-image: $OUTDIR/cloud.qcow2 is up to date (kernel $KVER)"
        exit 0
fi

rm -rf "$OUTDIR/work" "$OUTDIR/stamp" "$OUTDIR/cloud.qcow2"
WORK=$OUTDIR/work
mkdir -p "$WORK"

# Print the module files to load, in dependency order, without duplicates.
resolve_modules() {
        local module

        for module in "${MODULES[@]}"; do
                modprobe -S "$KVER" --show-depends "$module" || die "modprobe cannot resolve $module for $KVER"
        done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }'
}

make_initramfs() {
        local root=$WORK/initramfs output=$1 path name applet

        mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
        install -m 0755 "$BUSYBOX" "$root/bin/busybox"
        for applet in $("$BUSYBOX" --list); do
                [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
        done
        install -m 0755 "$HERE/cloud-guest-init" "$root/init"

        : >"$root/lib/modules/load.order"
        while read -r path; do
                name=${path##*/}
                case $name in
                *.ko) install -m 0644 "$path" "$root/lib/modules/$name" ;;
                *.ko.xz) xz -dc "$path" >"$root/lib/modules/${name%.xz}" ;;
                *.ko.zst) zstd -q -dc "$path" >"$root/lib/modules/${name%.zst}" ;;
                *) die "unexpected module file $path" ;;
                esac
                echo "${name%%.ko*}" >>"$root/lib/modules/load.order"
        done < <(resolve_modules)

        (cd "$root" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -n -6 >"$output"
}

make_initramfs "$WORK/initrd.img"

# The EFI system partition, from 1 MiB to the end of the disk.
cat >"$WORK/loader.conf" <<EOF
default cocoon-e2e.conf
timeout 0
EOF
cat >"$WORK/cocoon-e2e.conf" <<EOF
title Cocoon e2e cloud image ($KVER)
linux /vmlinuz
initrd /initrd.img
options console=ttyS0 panic=-1 loglevel=4
EOF
ESP_MIB=$((DISK_MIB - 2))
ESP=$WORK/esp.img
rm -f "$ESP"
mkfs.vfat -C -F 32 -n ESP "$ESP" $((ESP_MIB * 1024)) >/dev/null
mmd -i "$ESP" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$ESP" "$SYSTEMD_BOOT" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$ESP" "$KERNEL" ::/vmlinuz
mcopy -i "$ESP" "$WORK/initrd.img" ::/initrd.img
mcopy -i "$ESP" "$WORK/loader.conf" ::/loader/loader.conf
mcopy -i "$ESP" "$WORK/cocoon-e2e.conf" ::/loader/entries/cocoon-e2e.conf

RAW=$WORK/disk.raw
truncate -s "${DISK_MIB}M" "$RAW"
echo "label: gpt
start=2048, size=$((ESP_MIB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP" |
        sfdisk -q "$RAW" >/dev/null
dd if="$ESP" of="$RAW" bs=1M seek=1 conv=notrunc,sparse status=none

qemu-img convert -f raw -O qcow2 -c "$RAW" "$OUTDIR/cloud.qcow2"
rm -rf "$WORK"
echo "$STAMP" >"$OUTDIR/stamp"
echo "build-cloud-image: built $OUTDIR/cloud.qcow2 in $((SECONDS - STARTED)) s (kernel $KVER," \
        "$(stat -c %s "$OUTDIR/cloud.qcow2") bytes)"
