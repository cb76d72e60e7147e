#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# "cocoon image pull" against a registry that misbehaves (tests/registry/test-registry.py on
# 127.0.0.1) and against hostile images: every case fails with its exact error, leaves the store
# unchanged and removes its work directory.
#
# Environment: COCOON (required); COCOON_TEST_IMAGE_DIR (optional cache of the test image).

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"

[[ -n ${COCOON:-} && -x ${COCOON:-} ]] || test_skip "COCOON is not set to an executable"
test_require_root
test_require_tools python3 busybox cpio gzip modprobe
test_init

IMAGE_DIR=${COCOON_TEST_IMAGE_DIR:-$TEST_DIR/image}
build_output=$("$HERE/../image/build-test-image.sh" "$IMAGE_DIR" 2>&1) ||
        test_abort "build-test-image.sh failed: $build_output"
LAYOUT=$TEST_DIR/layout
python3 "$HERE/../registry/make-hostile-layout.py" "$IMAGE_DIR/oci" "$LAYOUT" ||
        test_abort "make-hostile-layout.py failed"

ROOT=$TEST_DIR/root
SERVER_PID=

# Start the test registry with the given flags; sets PORT.
serve() {
        local out=$TEST_DIR/server.out

        stop_server
        python3 "$HERE/../registry/test-registry.py" --root "$LAYOUT" "$@" >"$out" 2>"$TEST_DIR/server.err" &
        SERVER_PID=$!
        for _ in $(seq 100); do
                PORT=$(head -n1 "$out" 2>/dev/null || true)
                [[ -n $PORT ]] && return 0
                sleep 0.05
        done
        test_abort "the test registry did not start: $(cat "$TEST_DIR/server.err")"
}

stop_server() {
        if [[ -n $SERVER_PID ]]; then
                kill "$SERVER_PID" 2>/dev/null || true
                wait "$SERVER_PID" 2>/dev/null || true
                SERVER_PID=
        fi
}
test_on_exit stop_server

# expect_failure DESCRIPTION EXPECTED_REASON REF: the pull fails with "Failed to pull 'REF':
# REASON", the store is unchanged and tmp/ is empty.
expect_failure() {
        local description=$1 reason=$2 ref=$3 before

        before=$(store_snapshot)
        assert_fails_with "Failed to pull '$ref': $reason" "$COCOON" --root-dir "$ROOT" image pull -q "$ref"
        assert_store_unchanged "$description: store unchanged" "$before"
        assert_eq "$description: no work directory is left" "" "$(find "$ROOT/tmp" -mindepth 1 | head -n 3)"
}

mkdir -p "$ROOT"
"$COCOON" --root-dir "$ROOT" image list >/dev/null

serve --corrupt-blobs
before=$(store_snapshot)
capture "$COCOON" --root-dir "$ROOT" image pull -q "127.0.0.1:$PORT/t/vm:base"
assert_eq "a corrupt blob fails" 1 "$CAPTURE_STATUS"
assert_true "a corrupt blob is reported as a digest mismatch of that layer" grep -Eq \
        "^Failed to pull '127.0.0.1:$PORT/t/vm:base': layer sha256:([0-9a-f]{64}): digest mismatch for blob sha256:\1 from 127.0.0.1:$PORT/t/vm: the content hashes to sha256:[0-9a-f]{64}\$" \
        <<<"$CAPTURE_STDERR"
assert_store_unchanged "digest mismatch: store unchanged" "$before"
assert_eq "digest mismatch: no work directory is left" "" "$(find "$ROOT/tmp" -mindepth 1 | head -n 3)"

serve --truncate-blobs
capture "$COCOON" --root-dir "$ROOT" image pull -q "127.0.0.1:$PORT/t/vm:base"
assert_eq "a truncated blob fails" 1 "$CAPTURE_STATUS"
assert_contains "a truncated blob names the layer" "$CAPTURE_STDERR" "Failed to pull '127.0.0.1:$PORT/t/vm:base': layer sha256:"
assert_eq "a truncated blob leaves no work directory" "" "$(find "$ROOT/tmp" -mindepth 1 | head -n 3)"
assert_eq "a truncated blob stores nothing" "" "$(find "$ROOT/blobs" "$ROOT/images" -type f | head -n 3)"

serve --oversized-manifest 5000000
expect_failure "oversized manifest" \
        "manifest 'latest' in 127.0.0.1:$PORT/t/vm is over the limit of 4194304 bytes" \
        "127.0.0.1:$PORT/t/vm:latest"

serve
expect_failure "too many layers" "manifest has 130 layers, over the limit of 128" \
        "127.0.0.1:$PORT/t/vm:manylayers"
expect_failure "unsupported media type" \
        "unsupported layer media type 'application/vnd.oci.image.layer.v1.tar+bzip2' in layers[1]" \
        "127.0.0.1:$PORT/t/vm:badtype"
capture "$COCOON" --root-dir "$ROOT" image pull -q "127.0.0.1:$PORT/t/vm:dotdot"
assert_eq "a layer with ../ fails" 1 "$CAPTURE_STATUS"
assert_contains "a layer with ../ names the path" "$CAPTURE_STDERR" "path '../escaped' has a '..' component"
capture "$COCOON" --root-dir "$ROOT" image pull -q "127.0.0.1:$PORT/t/vm:absolute"
assert_eq "a layer with an absolute path fails" 1 "$CAPTURE_STATUS"
assert_contains "a layer with an absolute path names it" "$CAPTURE_STDERR" "path '/etc/cocoon-escaped' is absolute"
assert_true "nothing was written outside the store" test ! -e /etc/cocoon-escaped -a ! -e "$ROOT/../escaped"
assert_eq "hostile layers leave no work directory" "" "$(find "$ROOT/tmp" -mindepth 1 | head -n 3)"

serve --auth bearer --token-needs-credentials
expect_failure "401 without credentials" \
        "authentication required for 127.0.0.1:$PORT/t/vm and no credentials found (add them to ~/.docker/config.json)" \
        "127.0.0.1:$PORT/t/vm:latest"

serve --fail-status 503 --fail-count 2
capture "$COCOON" --root-dir "$ROOT" image pull -q "127.0.0.1:$PORT/t/vm:latest"
assert_eq "two 503s are retried and the pull succeeds" 0 "$CAPTURE_STATUS"
assert_contains "the retried pull is recorded" "$CAPTURE_STDOUT" "Pulled 127.0.0.1:$PORT/t/vm:latest"

stop_server
test_finish
