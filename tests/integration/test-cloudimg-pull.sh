#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration test of "cocoon image pull URL" (cloud images) against tests/http/test-http-server.py
# on 127.0.0.1, with small raw and qcow2 images made by qemu-img here. Every failure must leave
# the store as it was.
#
# Environment: COCOON (required) is the cocoon binary; TEST_KEEP=1 keeps the temp dir.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"

[[ -n ${COCOON:-} ]] || test_skip "COCOON is not set"
[[ -x $COCOON ]] || test_skip "$COCOON is not an executable"
test_require_tools python3 qemu-img sha256sum gzip jq
test_init

WWW=$TEST_DIR/www
HTTP_LOG=$TEST_DIR/http.log
HTTP_PID=

# ---------------------------------------------------------------------------------------------
# Fixtures

mkdir -p "$WWW/good" "$WWW/copy" "$WWW/badsums" "$WWW/bad" "$WWW/big" "$WWW/other"

# The raw image is random data, so that its sha256 is unique to this run.
head -c 1048576 /dev/urandom >"$WWW/good/disk.raw"
cp "$WWW/good/disk.raw" "$WWW/copy/disk.raw"
cp "$WWW/good/disk.raw" "$WWW/badsums/disk.raw"
head -c 2097152 /dev/urandom >"$TEST_DIR/v2-source.raw"
qemu-img convert -q -f raw -O qcow2 -o compat=0.10 "$TEST_DIR/v2-source.raw" "$WWW/good/disk-v2.qcow2"
(cd "$WWW/good" && sha256sum -b disk.raw disk-v2.qcow2 >SHA256SUMS)
echo "$(printf '0%.0s' {1..64}) *disk.raw" >"$WWW/badsums/SHA256SUMS"

RAW_HEX=$(sha256sum <"$WWW/good/disk.raw" | cut -c1-64)
V2_HEX=$(sha256sum <"$WWW/good/disk-v2.qcow2" | cut -c1-64)

printf '<!DOCTYPE html>\n<html><body>Download page</body></html>\n' >"$WWW/bad/page.img"
gzip -c "$WWW/good/disk.raw" >"$WWW/bad/disk.img.gz"
# A qcow2 whose backing file is a file of the host running the pull.
qemu-img create -q -f qcow2 -u -F raw -b /etc/hostname "$WWW/bad/backing.qcow2" 64M
qemu-img create -q -f qcow2 -o data_file="$TEST_DIR/data-file.raw" "$WWW/bad/datafile.qcow2" 64M
head -c 100000 "$WWW/good/disk-v2.qcow2" >"$WWW/bad/truncated-header.qcow2"
head -c 2097152 /dev/urandom >"$TEST_DIR/data.raw"
qemu-img convert -q -f raw -O qcow2 "$TEST_DIR/data.raw" "$TEST_DIR/data.qcow2"
head -c 1048576 "$TEST_DIR/data.qcow2" >"$WWW/bad/truncated-data.qcow2"
head -c 1000 /dev/urandom >"$WWW/bad/odd-size.img"

head -c 4194304 /dev/urandom >"$WWW/big/concurrent.raw"
head -c 16777216 /dev/urandom >"$WWW/big/interrupted.raw"
head -c 1048576 /dev/urandom >"$WWW/other/cut.raw"
head -c 1048576 /dev/urandom >"$WWW/other/cut-norange.raw"

http_stop() {
        if [[ -n $HTTP_PID ]]; then
                kill "$HTTP_PID" 2>/dev/null || true
                wait "$HTTP_PID" 2>/dev/null || true
                HTTP_PID=
        fi
}
test_on_exit http_stop

coproc HTTP { exec python3 "$HERE/../http/test-http-server.py" --root "$WWW" --log "$HTTP_LOG"; }
HTTP_PID=$HTTP_PID
read -r -t 10 PORT <&"${HTTP[0]}" || test_abort "the test HTTP server did not start"
BASE=http://127.0.0.1:$PORT
echo "# test HTTP server pid $HTTP_PID on $BASE"

# ---------------------------------------------------------------------------------------------
# Helpers

# How many requests the server got for PATH.
requests_for() {
        grep -c "^GET $1 " "$HTTP_LOG" || true
}

# The Range headers sent for PATH, one per line.
ranges_for() {
        grep "^GET $1 " "$HTTP_LOG" | cut -d' ' -f3
}

tmp_leftovers() {
        [[ -d $ROOT/tmp ]] || return 0
        (cd "$ROOT/tmp" && find . -mindepth 1 -printf '%P\n')
}

blob_count() {
        find "$ROOT/blobs/sha256" -maxdepth 1 -name '*.qcow2' 2>/dev/null | wc -l
}

# assert_pull_fails DESCRIPTION URL REASON [FLAGS...]: the pull fails with exactly that reason
# and leaves the store as it was.
assert_pull_fails() {
        local description=$1 url=$2 reason=$3 before

        shift 3
        before=$(store_snapshot)
        assert_fails_with "Failed to pull '$url': $reason" cocoon_run image pull "$@" "$url"
        assert_store_unchanged "$description: store unchanged" "$before"
}

# Check the blob of HEX: mode 0444, a qcow2 version 3 image without a backing file whose
# content equals RAW_FILE.
check_blob() {
        local what=$1 hex=$2 raw_file=$3 blob info

        blob=$ROOT/blobs/sha256/$hex.qcow2
        assert_true "$what: blob exists" test -f "$blob"
        abort_if_failed "$what: no blob"
        assert_eq "$what: blob has mode 0444" 444 "$(stat -c %a "$blob")"
        info=$(qemu-img info -U --output=json "$blob")
        assert_eq "$what: blob is qcow2" qcow2 "$(jq -r .format <<<"$info")"
        assert_eq "$what: blob has compat 1.1" 1.1 "$(jq -r '."format-specific".data.compat' <<<"$info")"
        assert_eq "$what: blob has no backing file" null "$(jq -r '."backing-filename"' <<<"$info")"
        assert_true "$what: blob content equals the source" \
                qemu-img compare -q -U -f qcow2 -F raw "$blob" "$raw_file"
}

# ---------------------------------------------------------------------------------------------
# A raw image, verified by SHA256SUMS

URL=$BASE/files/good/disk.raw
capture cocoon_run image pull "$URL"
assert_eq "raw: pull succeeds" 0 "$CAPTURE_STATUS"
assert_eq "raw: result line" "Pulled $URL (sha256:$RAW_HEX, verified by SHA256SUMS)" "$CAPTURE_STDOUT"
assert_contains "raw: progress names the URL" "$CAPTURE_STDERR" "Downloading $URL (1.0MB)"
assert_contains "raw: progress shows the conversion" "$CAPTURE_STDERR" \
        "Converting the raw image to a qcow2 version 3 base"
check_blob raw "$RAW_HEX" "$WWW/good/disk.raw"
assert_eq "raw: tmp/ is empty" "" "$(tmp_leftovers)"
assert_eq "raw: one record in images/cloud" 1 "$(find "$ROOT/images/cloud" -name '*.json' | wc -l)"

capture cocoon_run image list
assert_true "raw: image list shows a cloudimg row" \
        grep -Eq "^cloudimg +$URL +sha256:${RAW_HEX:0:12} " <<<"$CAPTURE_STDOUT"

capture cocoon_run image inspect "$URL"
assert_eq "raw: inspect shows the blob path" "$ROOT/blobs/sha256/$RAW_HEX.qcow2" \
        "$(jq -r .blob <<<"$CAPTURE_STDOUT")"
assert_eq "raw: inspect id is the content sum" "sha256:$RAW_HEX" "$(jq -r .id <<<"$CAPTURE_STDOUT")"
assert_eq "raw: inspect type" cloudimg "$(jq -r .type <<<"$CAPTURE_STDOUT")"
assert_eq "raw: record size is the blob size" "$(stat -c %s "$ROOT/blobs/sha256/$RAW_HEX.qcow2")" \
        "$(jq -r .size <<<"$CAPTURE_STDOUT")"

# ---------------------------------------------------------------------------------------------
# Up to date, --force, and the same bytes from another URL

before=$(store_snapshot)
capture cocoon_run image pull "$URL"
assert_eq "again: result line" "Image $URL is up to date (sha256:$RAW_HEX)" "$CAPTURE_STDOUT"
assert_eq "again: the image was fetched once" 1 "$(requests_for /files/good/disk.raw)"
assert_store_unchanged "again: store unchanged" "$before"

capture cocoon_run image pull -q --force "$URL"
assert_eq "force: result line" "Pulled $URL (sha256:$RAW_HEX, verified by SHA256SUMS)" "$CAPTURE_STDOUT"
assert_eq "force: -q prints no progress" "" "$CAPTURE_STDERR"
assert_eq "force: the image was fetched again" 2 "$(requests_for /files/good/disk.raw)"
assert_eq "force: still one blob" 1 "$(blob_count)"

COPY_URL=$BASE/files/copy/disk.raw
capture cocoon_run image pull "$COPY_URL"
assert_eq "dedup: result line" "Pulled $COPY_URL (sha256:$RAW_HEX, not verified)" "$CAPTURE_STDOUT"
assert_eq "dedup: the same bytes are stored once" 1 "$(blob_count)"
assert_true "dedup: no conversion for stored content" \
        test "$(grep -c Converting <<<"$CAPTURE_STDERR" || true)" -eq 0
assert_eq "dedup: two records" 2 "$(find "$ROOT/images/cloud" -name '*.json' | wc -l)"

capture cocoon_run image rm "$COPY_URL"
assert_eq "rm: removes the record" "Removed $COPY_URL" "$CAPTURE_STDOUT"
assert_true "rm: blob stays for the other record" test -f "$ROOT/blobs/sha256/$RAW_HEX.qcow2"

# ---------------------------------------------------------------------------------------------
# qcow2 version 2 input, --checksum, redirects

V2_URL=$BASE/files/good/disk-v2.qcow2
sums_requests=$(requests_for /files/good/SHA256SUMS)
capture cocoon_run image pull --checksum "sha256:$V2_HEX" "$V2_URL"
assert_eq "qcow2 v2: result line" "Pulled $V2_URL (sha256:$V2_HEX, verified by --checksum)" "$CAPTURE_STDOUT"
assert_contains "qcow2 v2: converted" "$CAPTURE_STDERR" "Converting the qcow2 image to a qcow2 version 3 base"
check_blob "qcow2 v2" "$V2_HEX" "$TEST_DIR/v2-source.raw"
assert_eq "qcow2 v2: SHA256SUMS not fetched with --checksum" "$sums_requests" \
        "$(requests_for /files/good/SHA256SUMS)"

REDIRECT_URL=$BASE/redirect/3/good/disk.raw
capture cocoon_run image pull "$REDIRECT_URL"
assert_eq "redirect chain: result line" "Pulled $REDIRECT_URL (sha256:$RAW_HEX, verified by SHA256SUMS)" \
        "$CAPTURE_STDOUT"
assert_eq "redirect chain: followed to the file" 1 "$(requests_for /redirect/1/good/disk.raw)"

# ---------------------------------------------------------------------------------------------
# Failures, each with its exact reason and an unchanged store

WRONG=sha256:$(printf 'f%.0s' {1..64})
assert_pull_fails "wrong --checksum" "$URL" \
        "checksum mismatch for $URL: --checksum expects $WRONG, the download is sha256:$RAW_HEX" \
        --force --checksum "$WRONG"

BAD_URL=$BASE/files/badsums/disk.raw
assert_pull_fails "wrong SHA256SUMS" "$BAD_URL" \
        "checksum mismatch for $BAD_URL: $BASE/files/badsums/SHA256SUMS expects sha256:$(printf '0%.0s' {1..64}), the download is sha256:$RAW_HEX"

assert_pull_fails "404" "$BASE/files/good/missing.img" \
        "server returned HTTP status 404 for $BASE/files/good/missing.img"
assert_pull_fails "500" "$BASE/status/500/disk.raw" \
        "download of $BASE/status/500/disk.raw failed after 5 attempts: server returned HTTP status 500 for $BASE/status/500/disk.raw"

assert_pull_fails "SHA256SUMS fails" "$BASE/sums-status/500/good/disk.raw" \
        "download of $BASE/sums-status/500/good/SHA256SUMS failed after 5 attempts: server returned HTTP status 500 for $BASE/sums-status/500/good/SHA256SUMS"

assert_pull_fails "too many redirects" "$BASE/redirect/11/good/disk.raw" \
        "too many redirects: more than 10, starting at $BASE/redirect/11/good/disk.raw"
assert_pull_fails "redirect loop" "$BASE/loop/a/good/disk.raw" \
        "redirect loop: $BASE/loop/b/good/disk.raw redirects to $BASE/loop/a/good/disk.raw, which was already requested"

assert_pull_fails "HTML page" "$BASE/files/bad/page.img" \
        "received an HTML page, not a disk image: check the URL, it may point to a download page or an error page"
assert_pull_fails "gzip file" "$BASE/files/bad/disk.img.gz" \
        "received a gzip file, not a disk image: decompress it first or use the uncompressed image URL"
assert_pull_fails "odd size" "$BASE/files/bad/odd-size.img" \
        "received 1000 bytes that are neither a qcow2 image nor a raw disk image (a raw image is a multiple of 512 bytes)"

assert_pull_fails "backing file" "$BASE/files/bad/backing.qcow2" \
        "qcow2 image declares a backing file, which would make qemu-img read a file of this host: only self-contained images are accepted"
assert_pull_fails "external data file" "$BASE/files/bad/datafile.qcow2" \
        "qcow2 image declares an external data file, which would make qemu-img read a file of this host: only self-contained images are accepted"
assert_pull_fails "truncated qcow2 header area" "$BASE/files/bad/truncated-header.qcow2" \
        "qcow2 L1 table (offset 196608, 8 bytes) lies beyond the end of the file at 100000 bytes; is the download truncated?"

before=$(store_snapshot)
TRUNC_URL=$BASE/files/bad/truncated-data.qcow2
assert_fails_like "Failed to pull '$(sed 's/[.]/\\./g' <<<"$TRUNC_URL")': qcow2 image is corrupt: qemu-img check found [0-9]+ corruptions; is the download truncated\\?" \
        cocoon_run image pull "$TRUNC_URL"
assert_store_unchanged "truncated qcow2 data: store unchanged" "$before"

assert_pull_fails "--max-size" "$BASE/files/other/cut.raw" \
        "$BASE/files/other/cut.raw is 1048576 bytes, over the size limit of 512KiB; raise it with --max-size or [Images] CloudImageMaxSize=" \
        --max-size 512K
printf '[Images]\nCloudImageMaxSize=100K\n' >"$TEST_DIR/small.conf"
before=$(store_snapshot)
assert_fails_with "Failed to pull '$BASE/norange/other/cut.raw': $BASE/norange/other/cut.raw is 1048576 bytes, over the size limit of 100KiB; raise it with --max-size or [Images] CloudImageMaxSize=" \
        "$COCOON" --config "$TEST_DIR/small.conf" --root-dir "$ROOT" image pull "$BASE/norange/other/cut.raw"
assert_store_unchanged "CloudImageMaxSize=: store unchanged" "$before"

CLOSED=$(closed_port)
assert_pull_fails "connection refused" "http://127.0.0.1:$CLOSED/disk.raw" \
        "cannot connect to 127.0.0.1:$CLOSED: connection refused"

capture cocoon_run image pull --checksum "sha256:$RAW_HEX" "$URL" "$COPY_URL"
assert_eq "--checksum with two URLs: usage error" 2 "$CAPTURE_STATUS"
assert_contains "--checksum with two URLs: message" "$CAPTURE_STDERR" "--checksum needs exactly one cloud image URL."

# ---------------------------------------------------------------------------------------------
# Cut connections

CUT_URL=$BASE/cut/other/cut.raw
CUT_HEX=$(sha256sum <"$WWW/other/cut.raw" | cut -c1-64)
capture cocoon_run image pull "$CUT_URL"
assert_eq "cut, ranges: result line" "Pulled $CUT_URL (sha256:$CUT_HEX, not verified)" "$CAPTURE_STDOUT"
assert_eq "cut, ranges: resumed with a Range request" "- bytes=524288-" "$(ranges_for /cut/other/cut.raw | tr '\n' ' ' | sed 's/ $//')"
assert_contains "cut, ranges: progress reports the resume" "$CAPTURE_STDERR" "Resuming $CUT_URL at 524kB of 1.0MB"
check_blob "cut, ranges" "$CUT_HEX" "$WWW/other/cut.raw"

CUTNR_URL=$BASE/cut-norange/other/cut-norange.raw
CUTNR_HEX=$(sha256sum <"$WWW/other/cut-norange.raw" | cut -c1-64)
capture cocoon_run image pull "$CUTNR_URL"
assert_eq "cut, no ranges: result line" "Pulled $CUTNR_URL (sha256:$CUTNR_HEX, not verified)" "$CAPTURE_STDOUT"
assert_eq "cut, no ranges: fetched twice" 2 "$(requests_for /cut-norange/other/cut-norange.raw)"
check_blob "cut, no ranges" "$CUTNR_HEX" "$WWW/other/cut-norange.raw"

ALWAYS_URL=$BASE/always-cut/other/cut-norange.raw
assert_pull_fails "always cut, no ranges" "$ALWAYS_URL" \
        "download of $ALWAYS_URL failed after 5 attempts: connection to 127.0.0.1:$PORT closed after 524288 of 1048576 bytes (the server does not support resuming: it ignored the Range request)"

# ---------------------------------------------------------------------------------------------
# Two concurrent pulls of one URL: both succeed, one converts

CONC_URL=$BASE/slow/big/concurrent.raw
CONC_HEX=$(sha256sum <"$WWW/big/concurrent.raw" | cut -c1-64)
cocoon_run image pull "$CONC_URL" >"$TEST_DIR/conc1.out" 2>"$TEST_DIR/conc1.err" &
pid1=$!
cocoon_run image pull "$CONC_URL" >"$TEST_DIR/conc2.out" 2>"$TEST_DIR/conc2.err" &
pid2=$!
status1=0
status2=0
wait "$pid1" || status1=$?
wait "$pid2" || status2=$?
assert_eq "concurrent: first pull succeeds" 0 "$status1"
assert_eq "concurrent: second pull succeeds" 0 "$status2"
assert_eq "concurrent: both downloaded" 2 "$(requests_for /slow/big/concurrent.raw)"
assert_eq "concurrent: converted once" 1 "$(cat "$TEST_DIR/conc1.err" "$TEST_DIR/conc2.err" | grep -c Converting || true)"
assert_eq "concurrent: first result line" "Pulled $CONC_URL (sha256:$CONC_HEX, not verified)" "$(<"$TEST_DIR/conc1.out")"
assert_eq "concurrent: second result line" "Pulled $CONC_URL (sha256:$CONC_HEX, not verified)" "$(<"$TEST_DIR/conc2.out")"
check_blob concurrent "$CONC_HEX" "$WWW/big/concurrent.raw"
assert_eq "concurrent: tmp/ is empty" "" "$(tmp_leftovers)"

# ---------------------------------------------------------------------------------------------
# SIGINT and SIGTERM during a download leave nothing behind

for sig in INT TERM; do
        INT_URL=$BASE/slow/big/interrupted.raw
        before=$(store_snapshot)
        # Started directly, not through cocoon_run, so that $! is the cocoon process.
        "$COCOON" --root-dir "$ROOT" image pull "$INT_URL" >"$TEST_DIR/int.out" 2>"$TEST_DIR/int.err" &
        pid=$!
        # Wait until the download is under way.
        for _ in $(seq 100); do
                [[ -n $(tmp_leftovers) ]] && break
                sleep 0.1
        done
        sleep 0.5
        kill -s "$sig" "$pid" || true
        status=0
        wait "$pid" || status=$?
        assert_eq "SIG$sig: exit status 130" 130 "$status"
        assert_contains "SIG$sig: reason" "$(<"$TEST_DIR/int.err")" "Failed to pull '$INT_URL': interrupted"
        assert_store_unchanged "SIG$sig: store unchanged" "$before"
done

test_finish
