#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration test of "cocoon image pull|list|inspect|rm" against a docker-registry on 127.0.0.1,
# with the test image from tests/image/build-test-image.sh.
#
# Environment: COCOON (required) is the cocoon binary; COCOON_TEST_IMAGE_DIR (optional) keeps the
# built test image between runs; TEST_KEEP=1 keeps the temp dir for debugging.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"

[[ -n ${COCOON:-} ]] || test_skip "COCOON is not set"
[[ -x $COCOON ]] || test_skip "$COCOON is not an executable"
test_require_root
test_require_tools docker-registry skopeo curl jq fsck.erofs busybox cpio gzip zstd modprobe tar
test_init

IMAGE_DIR=${COCOON_TEST_IMAGE_DIR:-$TEST_DIR/image}
if ! build_output=$("$HERE/../image/build-test-image.sh" "$IMAGE_DIR" 2>&1); then
        test_abort "build-test-image.sh failed: $build_output"
fi
echo "# $build_output"
# shellcheck source=/dev/null
. "$IMAGE_DIR/image.env"

registry_start || test_abort "registry did not start"
REPOSITORY=cocoon-test/vm
for tag in latest base nokernel zstd; do
        registry_push "$IMAGE_DIR/oci" "$tag" "$REPOSITORY" || test_abort "skopeo could not push tag $tag"
done
REF=$REGISTRY/$REPOSITORY

# ---------------------------------------------------------------------------------------------
# Helpers

# Escape the ERE metacharacters of $1.
regex_escape() {
        # shellcheck disable=SC2001 # one sed call is clearer than a loop of substitutions
        sed 's/[][\\.*^$+?(){}|]/\\&/g' <<<"$1"
}

# Save the raw manifest of TAG as the registry serves it to $TEST_DIR/manifest-TAG.json.
fetch_manifest() {
        skopeo inspect --raw --tls-verify=false "docker://$REF:$1" >"$TEST_DIR/manifest-$1.json" ||
                test_abort "skopeo could not fetch the manifest of $1"
}

# Print the hex digests of the layers of TAG, base layer first.
layer_hexes() {
        jq -r '.layers[].digest | sub("^sha256:"; "")' "$TEST_DIR/manifest-$1.json"
}

record_count() {
        find "$ROOT/images/oci" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l
}

erofs_count() {
        find "$ROOT/blobs/sha256" -maxdepth 1 -name '*.erofs' 2>/dev/null | wc -l
}

# Print what is left in ROOT/tmp after a pull (nothing, when the pull cleaned up).
tmp_leftovers() {
        [[ -d $ROOT/tmp ]] || return 0
        (cd "$ROOT/tmp" && find . -mindepth 1 -printf '%P\n')
}

# One line per entry of a directory tree: path, type, mode and owner, plus the sha256 of files,
# the target of symlinks and the device number of device nodes.
tree_listing() {
        (
                cd "$1"
                find . -mindepth 1 -printf '%P\t%y\n' | sort | while IFS=$'\t' read -r path type; do
                        case $type in
                        f) echo "$path f $(stat -c '%a %u:%g' "$path") $(sha256sum <"$path" | cut -c1-64)" ;;
                        l) echo "$path l -> $(readlink "$path")" ;;
                        c | b) echo "$path $type $(stat -c '%t:%T %u:%g' "$path")" ;;
                        *) echo "$path $type $(stat -c '%a %u:%g' "$path")" ;;
                        esac
                done
        )
}

# Extract the EROFS blob of layer HEX into $TEST_DIR/extract/HEX (once) and print that path.
extract_layer() {
        local hex=$1 dir=$TEST_DIR/extract/$1

        if [[ ! -d $dir ]]; then
                mkdir -p "$dir"
                fsck.erofs --extract="$dir" "$ROOT/blobs/sha256/$hex.erofs" >/dev/null
        fi
        echo "$dir"
}

assert_listing_eq() {
        local description=$1 expected=$2 actual=$3

        if [[ $expected == "$actual" ]]; then
                test_ok "$description"
        else
                test_fail "$description" "$(diff <(echo "$expected") <(echo "$actual") | head -n 40 || true)"
        fi
}

assert_tmp_empty() {
        assert_eq "$1: tmp/ is empty" "" "$(tmp_leftovers)"
}

# Check the blob of every layer of TAG: present, mode 0444, accepted by fsck.erofs.
check_layer_blobs() {
        local tag=$1 hex blob short

        for hex in $(layer_hexes "$tag"); do
                blob=$ROOT/blobs/sha256/$hex.erofs
                short=${hex:0:12}
                if [[ ! -f $blob ]]; then
                        test_fail "$tag: blob $short exists" "missing: $blob"
                        continue
                fi
                test_ok "$tag: blob $short exists"
                assert_eq "$tag: blob $short has mode 0444" 444 "$(stat -c %a "$blob")"
                assert_true "$tag: fsck.erofs accepts blob $short" fsck.erofs "$blob"
        done
}

# Check the contents of the two layers of TAG against the trees the image was built from.
check_layer_contents() {
        local tag=$1 hexes base_dir upper_dir
        local upper=$IMAGE_DIR/tree/upper

        mapfile -t hexes < <(layer_hexes "$tag")
        base_dir=$(extract_layer "${hexes[0]}")
        upper_dir=$(extract_layer "${hexes[1]}")

        assert_true "$tag: layer 0 has bin/busybox" test -x "$base_dir/bin/busybox"
        assert_listing_eq "$tag: layer 0 matches the built tree" \
                "$(tree_listing "$IMAGE_DIR/tree/base")" "$(tree_listing "$base_dir")"

        assert_true "$tag: layer 1 whiteout is a character device" \
                test -c "$upper_dir/etc/cocoon-test/deleted-by-upper"
        assert_eq "$tag: layer 1 whiteout is device 0:0 owned by 0:0" "0:0 0:0" \
                "$(stat -c '%t:%T %u:%g' "$upper_dir/etc/cocoon-test/deleted-by-upper" 2>&1)"
        assert_eq "$tag: layer 1 has no .wh. files left" "" \
                "$(cd "$upper_dir" && find . -name '.wh.*')"
        assert_eq "$tag: layer 1 opaque directory holds upper-only" upper-only \
                "$(ls -A "$upper_dir/etc/cocoon-test/opaque")"
        assert_true "$tag: layer 1 upper-only content" \
                cmp -s "$upper/etc/cocoon-test/opaque/upper-only" "$upper_dir/etc/cocoon-test/opaque/upper-only"
        assert_true "$tag: layer 1 upper-marker content" \
                cmp -s "$upper/etc/cocoon-test/upper-marker" "$upper_dir/etc/cocoon-test/upper-marker"
}

# Check ROOT/boot/<layer 0>/{vmlinuz,initrd.img} against the files in the built layer.
check_boot_files() {
        local tag=$1 base_hex

        base_hex=$(layer_hexes "$tag" | head -n 1)
        assert_true "$tag: boot/${base_hex:0:12}/vmlinuz matches the layer" \
                cmp -s "$IMAGE_DIR/tree/base/boot/vmlinuz-$KVER" "$ROOT/boot/$base_hex/vmlinuz"
        assert_true "$tag: boot/${base_hex:0:12}/initrd.img matches the layer" \
                cmp -s "$IMAGE_DIR/tree/base/boot/initrd.img-$KVER" "$ROOT/boot/$base_hex/initrd.img"
}

# Loop-mount both EROFS layers of TAG and stack them as overlayfs does in the guest, in a private
# mount namespace so that nothing stays mounted if the test dies.
check_overlay_mount() {
        local tag=$1 hexes result

        if ! command -v unshare >/dev/null; then
                test_skip_check "$tag: layers mount as an overlay" "unshare not found"
                return 0
        fi
        if ! grep -qw erofs /proc/filesystems && ! modprobe -q erofs 2>/dev/null; then
                test_skip_check "$tag: layers mount as an overlay" "the kernel has no erofs"
                return 0
        fi

        mapfile -t hexes < <(layer_hexes "$tag")
        mkdir -p "$TEST_DIR/mnt/base" "$TEST_DIR/mnt/upper" "$TEST_DIR/mnt/merged"
        # shellcheck disable=SC2016 # the script expands its own arguments
        if ! result=$(unshare --mount --propagation private bash -euo pipefail -c '
                blobs=$1 base=$2 upper=$3 mnt=$4
                mount -t erofs -o loop,ro "$blobs/$base.erofs" "$mnt/base"
                mount -t erofs -o loop,ro "$blobs/$upper.erofs" "$mnt/upper"
                mount -t overlay overlay -o "lowerdir=$mnt/upper:$mnt/base" "$mnt/merged"
                dir=$mnt/merged/etc/cocoon-test
                if [[ -e $dir/deleted-by-upper ]]; then echo deleted=present; else echo deleted=absent; fi
                echo "opaque=$(ls -A "$dir/opaque" | tr "\n" " ")"
                if [[ -e $dir/upper-marker ]]; then echo marker=present; else echo marker=absent; fi
                if [[ -x $mnt/merged/bin/busybox ]]; then echo busybox=present; else echo busybox=absent; fi
                if command -v getfattr >/dev/null; then
                        echo "xattr=$(getfattr --only-values -n trusted.overlay.opaque "$mnt/upper/etc/cocoon-test/opaque")"
                elif command -v python3 >/dev/null; then
                        echo "xattr=$(python3 -c "import os, sys; print(os.getxattr(sys.argv[1], \"trusted.overlay.opaque\").decode())" \
                                "$mnt/upper/etc/cocoon-test/opaque")"
                fi
        ' sh "$ROOT/blobs/sha256" "${hexes[0]}" "${hexes[1]}" "$TEST_DIR/mnt" 2>&1); then
                test_fail "$tag: layers mount as an overlay" "$result"
                return 0
        fi
        test_ok "$tag: layers mount as an overlay"
        assert_contains "$tag: overlay hides the whited-out file" "$result" "deleted=absent"
        assert_contains "$tag: overlay shows only upper-only in the opaque directory" "$result" "opaque=upper-only "
        assert_contains "$tag: overlay shows the upper marker" "$result" "marker=present"
        assert_contains "$tag: overlay shows the base layer" "$result" "busybox=present"
        if [[ $result == *xattr=* ]]; then
                assert_contains "$tag: opaque directory has trusted.overlay.opaque=y" "$result" "xattr=y"
        fi
}

# check_bad_pull DESCRIPTION ASSERTION EXPECTED REF: the pull of REF fails as ASSERTION
# (assert_fails_with or assert_fails_like) expects, and leaves the store as it was.
check_bad_pull() {
        local description=$1 assertion=$2 expected=$3 ref=$4 before

        before=$(store_snapshot)
        echo "# $description"
        "$assertion" "$expected" cocoon_run image pull "$ref"
        assert_store_unchanged "$description: store unchanged" "$before"
        assert_tmp_empty "$description"
}

# ---------------------------------------------------------------------------------------------
# The fixture: digests that the registry serves equal the ones the build wrote.

for tag in latest base nokernel zstd; do
        fetch_manifest "$tag"
done
assert_eq "registry serves the built manifest of latest" "$DIGEST_LATEST" \
        "sha256:$(sha256sum <"$TEST_DIR/manifest-latest.json" | cut -c1-64)"
abort_if_failed "the registry changed the manifest, so the digests below would not match"
assert_eq "registry serves the built manifest of zstd" "$DIGEST_ZSTD" \
        "sha256:$(sha256sum <"$TEST_DIR/manifest-zstd.json" | cut -c1-64)"
assert_eq "latest and base share layer 0" "$(layer_hexes latest | head -n 1)" "$(layer_hexes base)"

# ---------------------------------------------------------------------------------------------
# Pull the two-layer image.

capture cocoon_run image pull "$REF:latest"
assert_eq "pull latest: exit status" 0 "$CAPTURE_STATUS"
abort_if_failed "the first pull failed: $CAPTURE_STDERR"
assert_eq "pull latest: output" "Pulled $REF:latest ($DIGEST_LATEST)" "$CAPTURE_STDOUT"
assert_tmp_empty "pull latest"
assert_eq "pull latest: one image record" 1 "$(record_count)"
assert_eq "pull latest: two layer blobs" 2 "$(erofs_count)"
check_layer_blobs latest
check_layer_contents latest
check_boot_files latest
check_overlay_mount latest

# ---------------------------------------------------------------------------------------------
# Pull it again, under other spellings of the same reference.

snapshot=$(store_snapshot)
capture cocoon_run image pull "$REF"
assert_eq "pull again without tag: exit status" 0 "$CAPTURE_STATUS"
assert_eq "pull again without tag: output" "Image $REF:latest is up to date ($DIGEST_LATEST)" "$CAPTURE_STDOUT"
assert_store_unchanged "pull again without tag: store unchanged" "$snapshot"

capture cocoon_run image pull -q "$REF:latest"
assert_eq "pull -q again: exit status" 0 "$CAPTURE_STATUS"
assert_eq "pull -q again: output" "Image $REF:latest is up to date ($DIGEST_LATEST)" "$CAPTURE_STDOUT"
assert_eq "pull -q again: no progress on stderr" "" "$CAPTURE_STDERR"
assert_store_unchanged "pull -q again: store unchanged" "$snapshot"
assert_eq "pull again: still one image record" 1 "$(record_count)"

# ---------------------------------------------------------------------------------------------
# zstd layers give the same file systems as the gzip ones.

capture cocoon_run image pull "$REF:zstd"
assert_eq "pull zstd: exit status" 0 "$CAPTURE_STATUS"
assert_eq "pull zstd: output" "Pulled $REF:zstd ($DIGEST_ZSTD)" "$CAPTURE_STDOUT"
assert_tmp_empty "pull zstd"
check_layer_blobs zstd
check_layer_contents zstd
check_boot_files zstd
mapfile -t gzip_hexes < <(layer_hexes latest)
mapfile -t zstd_hexes < <(layer_hexes zstd)
for i in "${!gzip_hexes[@]}"; do
        assert_listing_eq "zstd: layer $i has the same files as with gzip" \
                "$(tree_listing "$(extract_layer "${gzip_hexes[i]}")")" \
                "$(tree_listing "$(extract_layer "${zstd_hexes[i]}")")"
done

# ---------------------------------------------------------------------------------------------
# Two images sharing layer 0 store it once; several references in one pull.

erofs_before=$(erofs_count)
capture cocoon_run image pull "$REF:base" "$REF:latest"
assert_eq "pull base and latest: exit status" 0 "$CAPTURE_STATUS"
assert_eq "pull base and latest: output" \
        "Pulled $REF:base ($DIGEST_BASE)"$'\n'"Image $REF:latest is up to date ($DIGEST_LATEST)" "$CAPTURE_STDOUT"
assert_eq "pull base: shared layer stored once" "$erofs_before" "$(erofs_count)"
assert_eq "pull base: three image records" 3 "$(record_count)"
assert_tmp_empty "pull base"
check_boot_files base

# ---------------------------------------------------------------------------------------------
# image list

capture cocoon_run image list
assert_eq "list: exit status" 0 "$CAPTURE_STATUS"
assert_eq "list: header" "TYPE NAME DIGEST SIZE CREATED" "$(head -n 1 <<<"$CAPTURE_STDOUT" | awk '{ $1 = $1; print }')"
assert_eq "list: one row per image" 4 "$(wc -l <<<"$CAPTURE_STDOUT")"
for tag in base latest zstd; do
        assert_eq "list: row of $tag" "oci $REF:$tag" \
                "$(awk -v name="$REF:$tag" '$2 == name { print $1, $2 }' <<<"$CAPTURE_STDOUT")"
done

capture cocoon_run image list -o json
assert_eq "list -o json: exit status" 0 "$CAPTURE_STATUS"
assert_eq "list -o json: names sorted" "[\"$REF:base\",\"$REF:latest\",\"$REF:zstd\"]" \
        "$(jq -c 'map(.name)' <<<"$CAPTURE_STDOUT" 2>&1)"
assert_eq "list -o json: ids are the manifest digests" "[\"$DIGEST_BASE\",\"$DIGEST_LATEST\",\"$DIGEST_ZSTD\"]" \
        "$(jq -c 'map(.id)' <<<"$CAPTURE_STDOUT" 2>&1)"
assert_eq "list -o json: fields and types" "true" \
        "$(jq 'all(.[]; .type == "oci" and (.size | type) == "number" and .size > 0
                        and (.created_at | type) == "string" and .created_at != "")' <<<"$CAPTURE_STDOUT" 2>&1)"

# ---------------------------------------------------------------------------------------------
# image inspect

mapfile -t hexes < <(layer_hexes latest)
base_hex=${hexes[0]}
upper_hex=${hexes[1]}
capture cocoon_run image inspect "$REF:latest"
assert_eq "inspect: exit status" 0 "$CAPTURE_STATUS"
inspect=$CAPTURE_STDOUT
assert_eq "inspect: id" "$DIGEST_LATEST" "$(jq -r .id <<<"$inspect" 2>&1)"
assert_eq "inspect: name" "$REF:latest" "$(jq -r .name <<<"$inspect" 2>&1)"
assert_eq "inspect: type" oci "$(jq -r .type <<<"$inspect" 2>&1)"
assert_eq "inspect: size and created_at" true \
        "$(jq '(.size | type) == "number" and .size > 0 and (.created_at | type) == "string"' <<<"$inspect" 2>&1)"
assert_eq "inspect: layers" \
        "[{\"digest\":\"sha256:$base_hex\",\"erofs\":\"$ROOT/blobs/sha256/$base_hex.erofs\"},{\"digest\":\"sha256:$upper_hex\",\"erofs\":\"$ROOT/blobs/sha256/$upper_hex.erofs\"}]" \
        "$(jq -c '[.layers[] | {digest, erofs}]' <<<"$inspect" 2>&1)"
assert_eq "inspect: kernel" "$ROOT/boot/$base_hex/vmlinuz" "$(jq -r .kernel <<<"$inspect" 2>&1)"
assert_eq "inspect: initrd" "$ROOT/boot/$base_hex/initrd.img" "$(jq -r .initrd <<<"$inspect" 2>&1)"

capture cocoon_run image inspect "$REF"
assert_eq "inspect without tag: same image" "$DIGEST_LATEST" "$(jq -r .id <<<"$CAPTURE_STDOUT" 2>&1)"

snapshot=$(store_snapshot)
assert_fails_with "Failed to inspect image '$REF:nope': image not found" cocoon_run image inspect "$REF:nope"
assert_store_unchanged "inspect missing: store unchanged" "$snapshot"

# ---------------------------------------------------------------------------------------------
# Bad pulls: exact error, nothing added to the store.
# NOTE: the reasons matched with assert_fails_like have no fixed wording yet.

ref_re=$(regex_escape "$REF")
check_bad_pull "pull unknown repository" assert_fails_like \
        "Failed to pull '$(regex_escape "$REGISTRY")/cocoon-test/nope': .*(not found|unknown).*" \
        "$REGISTRY/cocoon-test/nope"
check_bad_pull "pull unknown tag" assert_fails_like \
        "Failed to pull '$ref_re:nope': .*(not found|unknown).*" "$REF:nope"
missing_digest=sha256:$(printf '0%.0s' {1..64})
check_bad_pull "pull unknown digest" assert_fails_like \
        "Failed to pull '$ref_re@$missing_digest': .*(not found|unknown).*" "$REF@$missing_digest"
check_bad_pull "pull image without kernel" assert_fails_with \
        "Failed to pull '$REF:nokernel': image has no kernel (boot/vmlinuz*) in any layer" "$REF:nokernel"
closed=$(closed_port)
check_bad_pull "pull from a closed port" assert_fails_like \
        "Failed to pull '127\\.0\\.0\\.1:$closed/cocoon-test/vm': .*(refused|connect).*" \
        "127.0.0.1:$closed/cocoon-test/vm"
check_bad_pull "pull invalid reference" assert_fails_like \
        "Failed to pull 'UPPER/case': .*invalid.*" "UPPER/case"
assert_eq "bad pulls: still three image records" 3 "$(record_count)"

# ---------------------------------------------------------------------------------------------
# image rm: records go, blobs stay for gc.

snapshot=$(store_snapshot)
assert_fails_with "Failed to remove image '$REF:nope': image not found" cocoon_run image rm "$REF:nope"
assert_store_unchanged "rm missing: store unchanged" "$snapshot"

erofs_before=$(erofs_count)
base_prefix=${DIGEST_BASE#sha256:}
base_prefix=${base_prefix:0:12}
capture cocoon_run image rm "$REF:zstd" "$base_prefix"
assert_eq "rm by name and digest prefix: exit status" 0 "$CAPTURE_STATUS"
assert_eq "rm by name and digest prefix: output" "Removed $REF:zstd"$'\n'"Removed $REF:base" "$CAPTURE_STDOUT"
assert_eq "rm: one image record left" 1 "$(record_count)"
assert_eq "rm: blobs stay" "$erofs_before" "$(erofs_count)"

capture cocoon_run image rm "$REF"
assert_eq "rm without tag: exit status" 0 "$CAPTURE_STATUS"
assert_eq "rm without tag: output" "Removed $REF:latest" "$CAPTURE_STDOUT"
assert_eq "rm: no image record left" 0 "$(record_count)"

capture cocoon_run image list
assert_eq "list empty: output" "No images found." "$CAPTURE_STDOUT"
capture cocoon_run image list -o json
assert_eq "list -o json empty: output" "[]" "$(jq -c . <<<"$CAPTURE_STDOUT" 2>&1)"

# ---------------------------------------------------------------------------------------------
# A pull after rm reuses the blobs that are still there.

capture cocoon_run image pull "$REF:latest"
assert_eq "pull after rm: exit status" 0 "$CAPTURE_STATUS"
assert_eq "pull after rm: output" "Pulled $REF:latest ($DIGEST_LATEST)" "$CAPTURE_STDOUT"
assert_eq "pull after rm: no new blobs" "$erofs_before" "$(erofs_count)"
check_layer_blobs latest
check_boot_files latest
assert_tmp_empty "pull after rm"

test_finish
