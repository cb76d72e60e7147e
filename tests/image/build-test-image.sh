#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build the VM image used by the integration tests as an OCI image layout in OUTDIR/oci, from the
# host's busybox-static and Debian kernel. The output is byte-for-byte reproducible: tar entries
# are sorted and owned by 0:0 with mtime 0, and gzip runs with -n.
#
# Tags:
#   latest    layer 0 (base: busybox root file system, /boot/vmlinuz-<kver>, /boot/initrd.img-<kver>)
#             plus layer 1 (upper: an OCI whiteout, an opaque directory and a marker file)
#   base      layer 0 alone, so that two images share one layer
#   nokernel  a single layer without /boot
#   zstd      the layers of "latest" compressed with zstd instead of gzip
# OUTDIR/tree/{base,upper,nokernel} keep the unpacked layer contents for comparisons, and
# OUTDIR/image.env records KVER and the manifest digests.
#
# A second run with the same kernel version, busybox and scripts reuses OUTDIR.
# Environment: KVER selects the kernel (default: the newest /boot/vmlinuz-* with modules).
#
# Push one tag with:
#   skopeo copy --dest-tls-verify=false oci:OUTDIR/oci:latest docker://127.0.0.1:PORT/cocoon-test/vm:latest

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

# Modules the initramfs loads, with their dependencies resolved by modprobe. virtio_mmio is for
# microvm machine types, virtio_console for console=hvc0, button and evdev for the ACPI power button.
MODULES=(virtio_pci virtio_mmio virtio_blk virtio_net virtio_console crc32c_generic erofs overlay ext4 button evdev)

die() {
        echo "build-test-image: $*" >&2
        exit 1
}

for tool in busybox cpio gzip zstd jq tar sha256sum modprobe; do
        command -v "$tool" >/dev/null || die "$tool not found"
done

# The guest has no libc, so this must be a static busybox (Debian: busybox-static).
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
[[ -d /lib/modules/$KVER ]] || die "/lib/modules/$KVER is missing"

# The cache key covers every input that shapes the output.
STAMP="kver=$KVER kernel=$(sha256sum <"$KERNEL" | cut -c1-64)"
STAMP+=" busybox=$(sha256sum <"$BUSYBOX" | cut -c1-64)"
STAMP+=" scripts=$(cat "$HERE/build-test-image.sh" "$HERE/initramfs-init" "$HERE/rootfs-init" | sha256sum | cut -c1-64)"

if [[ -f $OUTDIR/stamp && $(<"$OUTDIR/stamp") == "$STAMP" && -f $OUTDIR/oci/index.json ]]; then
        echo "build-test-image: $OUTDIR/oci is up to date (kernel $KVER, tags latest base nokernel zstd)"
        exit 0
fi

rm -rf "$OUTDIR/oci" "$OUTDIR/tree" "$OUTDIR/work" "$OUTDIR/stamp" "$OUTDIR/image.env"
mkdir -p "$OUTDIR/oci/blobs/sha256" "$OUTDIR/tree" "$OUTDIR/work"
OCI=$OUTDIR/oci
WORK=$OUTDIR/work

install_busybox() {
        local root=$1 applet

        mkdir -p "$root/bin"
        install -m 0755 "$BUSYBOX" "$root/bin/busybox"
        for applet in $("$BUSYBOX" --list); do
                [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
        done
}

# The root file system of layer 0, without /boot.
make_rootfs() {
        local root=$1

        mkdir -p "$root"/{dev,proc,sys,run,tmp,root,sbin,usr/bin,usr/sbin,var/lib/cocoon-test,etc/acpi/PWRF}
        chmod 1777 "$root/tmp"
        chmod 0700 "$root/root"
        install_busybox "$root"
        install -m 0755 "$HERE/rootfs-init" "$root/sbin/init"

        echo cocoon-test >"$root/etc/hostname"
        echo "root::0:0:root:/root:/bin/sh" >"$root/etc/passwd"
        echo "root:x:0:" >"$root/etc/group"
        printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
        printf '#!/bin/sh\nkill -PWR 1\n' >"$root/etc/acpi/PWRF/00000080"
        chmod 0755 "$root/etc/acpi/PWRF/00000080"

        mkdir -p "$root/etc/cocoon-test/opaque"
        echo "the upper layer deletes this file with a whiteout" >"$root/etc/cocoon-test/deleted-by-upper"
        echo "hidden once the upper layer makes this directory opaque" >"$root/etc/cocoon-test/opaque/lower-only"
}

# Print the module files to load for MODULES, in dependency order, without duplicates.
# crc32c-intel is left out: it fails to load on CPUs without SSE4.2, and crc32c_generic serves
# ext4 and erofs everywhere.
resolve_modules() {
        local module

        for module in "${MODULES[@]}"; do
                modprobe -S "$KVER" --show-depends "$module" || die "modprobe cannot resolve $module for $KVER"
        done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | grep -v '/crc32c-intel\.ko'
}

make_initramfs() {
        local root=$WORK/initramfs output=$1 path name

        rm -rf "$root"
        mkdir -p "$root"/{dev,proc,sys,newroot,lib/modules}
        install_busybox "$root"
        install -m 0755 "$HERE/initramfs-init" "$root/init"

        : >"$root/lib/modules/load.order"
        while read -r path; do
                name=${path##*/}
                case $name in
                *.ko) install -m 0644 "$path" "$root/lib/modules/$name" ;;
                *.ko.xz) xz -dc "$path" >"$root/lib/modules/${name%.xz}" ;;
                *.ko.zst) zstd -q -dc "$path" >"$root/lib/modules/${name%.zst}" ;;
                *) die "unexpected module file $path" ;;
                esac
                name=${name%%.ko*}
                echo "$name" >>"$root/lib/modules/load.order"
        done < <(resolve_modules)
        [[ -s $root/lib/modules/load.order ]] || die "no modules resolved for $KVER"
        chmod 0644 "$root/lib/modules/"*

        find "$root" -exec touch -h -d @0 {} +
        (cd "$root" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
                gzip -n -9 >"$output"
}

# Write a deterministic tar of TREE to OUTPUT.
make_tar() {
        local tree=$1 output=$2

        (cd "$tree" && find . -mindepth 1 -printf '%P\n' | sort) |
                tar -C "$tree" --no-recursion -T - -cf "$output" \
                        --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
                        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
}

# Move FILE into the blob store and print its hex digest.
add_blob() {
        local file=$1 hex

        hex=$(sha256sum "$file" | cut -c1-64)
        mv "$file" "$OCI/blobs/sha256/$hex"
        echo "$hex"
}

# Compress TAR with gzip or zstd into a blob and print its layer descriptor as JSON.
make_layer_blob() {
        local tar=$1 compression=$2 blob=$WORK/layer.tmp media_type hex

        case $compression in
        gzip)
                gzip -n -6 -c "$tar" >"$blob"
                media_type=application/vnd.oci.image.layer.v1.tar+gzip
                ;;
        zstd)
                zstd -q -3 -c "$tar" >"$blob"
                media_type=application/vnd.oci.image.layer.v1.tar+zstd
                ;;
        esac
        hex=$(add_blob "$blob")
        jq -cn --arg m "$media_type" --arg d "sha256:$hex" --argjson s "$(stat -c %s "$OCI/blobs/sha256/$hex")" \
                '{mediaType: $m, digest: $d, size: $s}'
}

case $(uname -m) in
x86_64) ARCH=amd64 ;;
aarch64) ARCH=arm64 ;;
*) ARCH=$(uname -m) ;;
esac

# Write config and manifest for TAG from a JSON array of layer descriptors and the uncompressed
# layer tars, add it to index.json and print the manifest digest.
add_image() {
        local tag=$1 descriptors=$2 diff_ids config_hex manifest_hex tar

        shift 2
        diff_ids=$(for tar in "$@"; do echo "sha256:$(sha256sum "$tar" | cut -c1-64)"; done | jq -cRs 'split("\n") | map(select(. != ""))')
        jq -cn --arg arch "$ARCH" --arg tag "$tag" --argjson diff_ids "$diff_ids" '{
                architecture: $arch,
                os: "linux",
                created: "2025-01-01T00:00:00Z",
                config: {Cmd: ["/sbin/init"], Labels: {"org.cocoon.test.variant": $tag}},
                rootfs: {type: "layers", diff_ids: $diff_ids}
        }' >"$WORK/config.json"
        config_hex=$(add_blob "$WORK/config.json")

        jq -cn --arg d "sha256:$config_hex" --argjson s "$(stat -c %s "$OCI/blobs/sha256/$config_hex")" \
                --argjson layers "$descriptors" '{
                schemaVersion: 2,
                mediaType: "application/vnd.oci.image.manifest.v1+json",
                config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $d, size: $s},
                layers: $layers
        }' >"$WORK/manifest.json"
        manifest_hex=$(add_blob "$WORK/manifest.json")

        jq -c --arg d "sha256:$manifest_hex" --argjson s "$(stat -c %s "$OCI/blobs/sha256/$manifest_hex")" --arg t "$tag" \
                '.manifests += [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
                                 annotations: {"org.opencontainers.image.ref.name": $t}}]' \
                "$OCI/index.json" >"$WORK/index.json"
        mv "$WORK/index.json" "$OCI/index.json"
        echo "sha256:$manifest_hex"
}

# Layer 0: root file system plus kernel and initramfs.
BASE=$OUTDIR/tree/base
make_rootfs "$BASE"
mkdir -p "$BASE/boot"
install -m 0644 "$KERNEL" "$BASE/boot/vmlinuz-$KVER"
make_initramfs "$BASE/boot/initrd.img-$KVER"

# Layer 1: deletes a file and makes a directory opaque, with OCI whiteouts.
UPPER=$OUTDIR/tree/upper
mkdir -p "$UPPER/etc/cocoon-test/opaque"
: >"$UPPER/etc/cocoon-test/.wh.deleted-by-upper"
: >"$UPPER/etc/cocoon-test/opaque/.wh..wh..opq"
echo "only in the upper layer" >"$UPPER/etc/cocoon-test/opaque/upper-only"
echo "the upper layer is mounted" >"$UPPER/etc/cocoon-test/upper-marker"

# The image without a kernel.
NOKERNEL=$OUTDIR/tree/nokernel
make_rootfs "$NOKERNEL"

make_tar "$BASE" "$WORK/base.tar"
make_tar "$UPPER" "$WORK/upper.tar"
make_tar "$NOKERNEL" "$WORK/nokernel.tar"

echo '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"
echo '{"schemaVersion":2,"manifests":[]}' >"$OCI/index.json"

base_gzip=$(make_layer_blob "$WORK/base.tar" gzip)
upper_gzip=$(make_layer_blob "$WORK/upper.tar" gzip)
nokernel_gzip=$(make_layer_blob "$WORK/nokernel.tar" gzip)
base_zstd=$(make_layer_blob "$WORK/base.tar" zstd)
upper_zstd=$(make_layer_blob "$WORK/upper.tar" zstd)

digest_latest=$(add_image latest "[$base_gzip,$upper_gzip]" "$WORK/base.tar" "$WORK/upper.tar")
digest_base=$(add_image base "[$base_gzip]" "$WORK/base.tar")
digest_nokernel=$(add_image nokernel "[$nokernel_gzip]" "$WORK/nokernel.tar")
digest_zstd=$(add_image zstd "[$base_zstd,$upper_zstd]" "$WORK/base.tar" "$WORK/upper.tar")

cat >"$OUTDIR/image.env" <<EOF
KVER=$KVER
DIGEST_LATEST=$digest_latest
DIGEST_BASE=$digest_base
DIGEST_NOKERNEL=$digest_nokernel
DIGEST_ZSTD=$digest_zstd
EOF

rm -rf "$WORK"
echo "$STAMP" >"$OUTDIR/stamp"
echo "build-test-image: built $OUTDIR/oci in $((SECONDS - STARTED)) s (kernel $KVER, tags latest base nokernel zstd)"
