#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build a larger OCI VM image for the pull benchmark, as an OCI image layout in OUTDIR/oci with
# the tag "big". Its layers hold real files copied from this machine, so that a pull sees the mix
# of large shared libraries and many small files that distribution images have:
#
#   layer 0  the base layer of tests/image (busybox root file system, /boot/vmlinuz-<kver>,
#            /boot/initrd.img-<kver>), so the image boots under the cocoon-overlay contract
#   layer 1  usr/lib/x86_64-linux-gnu: top-level files and symlinks, without libLLVM*, libclang*
#            and static archives
#   layer 2  usr/lib/x86_64-linux-gnu/{perl,dri,gconv}
#   layer 3  usr/share/doc
#   layer 4  usr/share/{man,i18n}
#   layer 5  usr/share/{vim,icons,perl}
#   layer 6  a small upper layer: a whiteout, an opaque directory and a marker file
#
# Directories missing on this machine are left out. Layers are deterministic for a given set of
# host files: tar entries are sorted, owned by 0:0 with mtime 0, and gzip runs with -n. The test
# image is built (or reused) in OUTDIR/test-image. OUTDIR/image.env records the layer count and
# the compressed and uncompressed sizes in bytes. A second run reuses OUTDIR when neither the
# scripts nor the listed host files (paths, sizes, mtimes) changed.
#
# Usage: build-big-image.sh OUTDIR

set -euo pipefail
umask 022
export LC_ALL=C

if [[ $# -ne 1 ]]; then
        echo "Usage: $0 OUTDIR" >&2
        exit 2
fi

OUTDIR=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STARTED=$SECONDS
TAG=big

die() {
        echo "build-big-image: $*" >&2
        exit 1
}

for tool in gzip jq tar sha256sum find; do
        command -v "$tool" >/dev/null || die "$tool not found"
done

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
"$REPO/tests/image/build-test-image.sh" "$OUTDIR/test-image" >&2
TEST_OCI=$OUTDIR/test-image/oci

# Each layer is a list of paths relative to /. find_layer_paths prints them with the parent
# directories that the tar needs, so that the layer is a complete tree, and list_layer sorts them.
LIB=usr/lib/x86_64-linux-gnu
LAYER_NAMES=(libs lib-subdirs doc man-i18n vim-icons-perl)

print_parents() {
        local path

        for path in "$@"; do
                while [[ $path == */* ]]; do
                        path=${path%/*}
                        echo "$path"
                done
        done
}

find_layer_paths() {
        local name=$1 dir roots=()

        case $name in
        libs)
                [[ -d /$LIB ]] || return 0
                print_parents "$LIB/x"
                echo "$LIB"
                (cd / && find "$LIB" -mindepth 1 -maxdepth 1 \( -type f -o -type l \) \
                        ! -name 'libLLVM*' ! -name 'libclang*' ! -name '*.a')
                ;;
        lib-subdirs) roots=("$LIB/perl" "$LIB/dri" "$LIB/gconv") ;;
        doc) roots=(usr/share/doc) ;;
        man-i18n) roots=(usr/share/man usr/share/i18n) ;;
        vim-icons-perl) roots=(usr/share/vim usr/share/icons usr/share/perl) ;;
        *) die "unknown layer $name" ;;
        esac

        for dir in "${roots[@]}"; do
                [[ -d /$dir ]] || continue
                print_parents "$dir"
                (cd / && find "$dir")
        done
} 2>/dev/null

list_layer() {
        find_layer_paths "$1" | sort -u
}

# The cache key: the scripts, the test image, and path, size and mtime of every host file used.
stamp() {
        local name

        cat "$HERE/build-big-image.sh" "$OUTDIR/test-image/stamp" | sha256sum | cut -c1-64
        for name in "${LAYER_NAMES[@]}"; do
                echo "$name $(list_layer "$name" | (cd / && xargs -d '\n' stat -c '%n %s %Y %f') | sha256sum | cut -c1-64)"
        done
}

STAMP=$(stamp)
if [[ -f $OUTDIR/stamp && $(<"$OUTDIR/stamp") == "$STAMP" && -f $OUTDIR/oci/index.json && -f $OUTDIR/image.env ]]; then
        echo "build-big-image: $OUTDIR/oci is up to date (tag $TAG)"
        exit 0
fi

rm -rf "$OUTDIR/oci" "$OUTDIR/work" "$OUTDIR/stamp" "$OUTDIR/image.env"
mkdir -p "$OUTDIR/oci/blobs/sha256" "$OUTDIR/work"
OCI=$OUTDIR/oci
WORK=$OUTDIR/work

TAR_OPTIONS_DETERMINISTIC=(--owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix
        '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime')

# Move FILE into the blob store and print its hex digest.
add_blob() {
        local file=$1 hex

        hex=$(sha256sum "$file" | cut -c1-64)
        mv "$file" "$OCI/blobs/sha256/$hex"
        echo "$hex"
}

# Compress TAR into a gzip layer blob, append its descriptor to DESCRIPTORS and its diff_id to
# DIFF_IDS, add its sizes to the totals, and remove TAR.
DESCRIPTORS=()
DIFF_IDS=()
COMPRESSED_BYTES=0
UNCOMPRESSED_BYTES=0

add_layer() {
        local tar=$1 blob=$WORK/layer.tmp hex size

        gzip -n -6 -c "$tar" >"$blob"
        DIFF_IDS+=("sha256:$(sha256sum "$tar" | cut -c1-64)")
        UNCOMPRESSED_BYTES=$((UNCOMPRESSED_BYTES + $(stat -c %s "$tar")))
        hex=$(add_blob "$blob")
        size=$(stat -c %s "$OCI/blobs/sha256/$hex")
        COMPRESSED_BYTES=$((COMPRESSED_BYTES + size))
        DESCRIPTORS+=("$(jq -cn --arg d "sha256:$hex" --argjson s "$size" \
                '{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d, size: $s}')")
        rm -f "$tar"
}

# Layer 0 is the test image's base layer, copied blob for blob.
base_manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "base") | .digest' \
        "$TEST_OCI/index.json")
[[ -n $base_manifest ]] || die "the test image has no tag base"
base_layer=$(jq -c '.layers[0]' "$TEST_OCI/blobs/sha256/${base_manifest#sha256:}")
base_config=$(jq -r '.config.digest' "$TEST_OCI/blobs/sha256/${base_manifest#sha256:}")
base_hex=$(jq -r '.digest' <<<"$base_layer")
base_hex=${base_hex#sha256:}
cp "$TEST_OCI/blobs/sha256/$base_hex" "$OCI/blobs/sha256/$base_hex"
DESCRIPTORS+=("$base_layer")
DIFF_IDS+=("$(jq -r '.rootfs.diff_ids[0]' "$TEST_OCI/blobs/sha256/${base_config#sha256:}")")
COMPRESSED_BYTES=$(jq -r '.size' <<<"$base_layer")
UNCOMPRESSED_BYTES=$(gzip -dc "$OCI/blobs/sha256/$base_hex" | wc -c)

for name in "${LAYER_NAMES[@]}"; do
        list_layer "$name" >"$WORK/$name.list"
        [[ -s $WORK/$name.list ]] || die "no files for layer $name on this machine"
        tar -C / --no-recursion -T "$WORK/$name.list" -cf "$WORK/$name.tar" "${TAR_OPTIONS_DETERMINISTIC[@]}"
        add_layer "$WORK/$name.tar"
        echo "build-big-image: layer $name: $(wc -l <"$WORK/$name.list") entries" >&2
done

# The upper layer deletes a file of layer 3 and hides the lower contents of one directory.
UPPER=$WORK/upper
mkdir -p "$UPPER/usr/share/doc" "$UPPER/etc/cocoon-bench"
victim=$(grep -m1 '^usr/share/doc/[^/]*/copyright$' "$WORK/doc.list" || true)
if [[ -n $victim ]]; then
        mkdir -p "$UPPER/$(dirname "$victim")"
        : >"$UPPER/$(dirname "$victim")/.wh.copyright"
fi
mkdir -p "$UPPER/usr/share/man/man1"
: >"$UPPER/usr/share/man/man1/.wh..wh..opq"
echo "the upper layer of the benchmark image is mounted" >"$UPPER/etc/cocoon-bench/upper-marker"
(cd "$UPPER" && find . -mindepth 1 -printf '%P\n' | sort) |
        tar -C "$UPPER" --no-recursion -T - -cf "$WORK/upper.tar" "${TAR_OPTIONS_DETERMINISTIC[@]}"
add_layer "$WORK/upper.tar"

case $(uname -m) in
x86_64) ARCH=amd64 ;;
aarch64) ARCH=arm64 ;;
*) ARCH=$(uname -m) ;;
esac

diff_ids=$(printf '%s\n' "${DIFF_IDS[@]}" | jq -cRs 'split("\n") | map(select(. != ""))')
layers=$(printf '%s\n' "${DESCRIPTORS[@]}" | jq -cs '.')

jq -cn --arg arch "$ARCH" --argjson diff_ids "$diff_ids" '{
        architecture: $arch,
        os: "linux",
        created: "2025-01-01T00:00:00Z",
        config: {Cmd: ["/sbin/init"], Labels: {"org.cocoon.bench.image": "big"}},
        rootfs: {type: "layers", diff_ids: $diff_ids}
}' >"$WORK/config.json"
config_hex=$(add_blob "$WORK/config.json")

jq -cn --arg d "sha256:$config_hex" --argjson s "$(stat -c %s "$OCI/blobs/sha256/$config_hex")" \
        --argjson layers "$layers" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $d, size: $s},
        layers: $layers
}' >"$WORK/manifest.json"
manifest_hex=$(add_blob "$WORK/manifest.json")

echo '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"
jq -cn --arg d "sha256:$manifest_hex" --argjson s "$(stat -c %s "$OCI/blobs/sha256/$manifest_hex")" --arg t "$TAG" \
        '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d,
          size: $s, annotations: {"org.opencontainers.image.ref.name": $t}}]}' >"$OCI/index.json"

cat >"$OUTDIR/image.env" <<EOF
LAYERS=${#DESCRIPTORS[@]}
COMPRESSED_BYTES=$COMPRESSED_BYTES
UNCOMPRESSED_BYTES=$UNCOMPRESSED_BYTES
DIGEST=sha256:$manifest_hex
EOF

rm -rf "$WORK"
echo "$STAMP" >"$OUTDIR/stamp"
echo "build-big-image: built $OUTDIR/oci in $((SECONDS - STARTED)) s (tag $TAG, ${#DESCRIPTORS[@]} layers," \
        "$((COMPRESSED_BYTES / 1048576)) MiB compressed, $((UNCOMPRESSED_BYTES / 1048576)) MiB uncompressed)"
