# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Helpers for the integration tests, sourced after "set -euo pipefail":
#   test_init                 make TEST_DIR (temp dir, removed on exit) and ROOT (the --root-dir)
#   test_require_root, test_require_tools TOOL...   skip (exit 77) when not met
#   registry_start / registry_stop                  docker-registry on 127.0.0.1:$REGISTRY_PORT
#   cocoon_run ARG...         run "$COCOON" --root-dir "$ROOT" ARG...
#   capture CMD...            run CMD, keep $CAPTURE_STATUS, $CAPTURE_STDOUT, $CAPTURE_STDERR
#   assert_* / test_ok / test_fail / test_skip_check   print one "ok N - ..." or "not ok N - ..."
#                             line each. Asserts return 0 even on failure, so "set -e" does not
#                             stop the test. abort_if_failed stops it when later checks depend on it.
#   store_snapshot            list every file under $ROOT except locks/, with size, mode, sha256
#   test_finish               print "1..N" and "N passed, N failed", exit 0 or 1
# Output is TAP: one line per check, diagnostics prefixed with "# ".

TEST_COUNT=0
TEST_PASSED=0
TEST_FAILED=0
TEST_LAST_FAILED=0
TEST_DIR=
ROOT=
REGISTRY_PID=
REGISTRY_PORT=
REGISTRY_DIR=
TEST_CLEANUP_COMMANDS=()

test_skip() {
        echo "1..0 # SKIP $*"
        exit 77
}

test_require_root() {
        [[ $(id -u) -eq 0 ]] || test_skip "needs root"
}

test_require_tools() {
        local tool

        for tool in "$@"; do
                command -v "$tool" >/dev/null || test_skip "$tool not found"
        done
}

# Register a shell command to run at exit, before TEST_DIR is removed. The last one runs first.
test_on_exit() {
        TEST_CLEANUP_COMMANDS+=("$1")
}

test_cleanup() {
        local i

        for ((i = ${#TEST_CLEANUP_COMMANDS[@]} - 1; i >= 0; i--)); do
                eval "${TEST_CLEANUP_COMMANDS[i]}" || true
        done
        registry_stop
        if [[ -n $TEST_DIR && -d $TEST_DIR ]]; then
                if [[ -n ${TEST_KEEP:-} ]]; then
                        echo "# TEST_KEEP is set, leaving $TEST_DIR"
                else
                        rm -rf "$TEST_DIR"
                fi
        fi
}

test_init() {
        TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cocoon-test.XXXXXX")
        trap test_cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        ROOT=$TEST_DIR/root
        mkdir -p "$ROOT"
}

test_ok() {
        TEST_COUNT=$((TEST_COUNT + 1))
        TEST_PASSED=$((TEST_PASSED + 1))
        TEST_LAST_FAILED=0
        echo "ok $TEST_COUNT - $1"
}

# test_skip_check DESCRIPTION REASON: report a check that cannot run here. It counts neither as
# passed nor as failed.
test_skip_check() {
        TEST_COUNT=$((TEST_COUNT + 1))
        TEST_LAST_FAILED=0
        echo "ok $TEST_COUNT - $1 # SKIP $2"
}

# test_fail DESCRIPTION [DIAGNOSTIC...]
test_fail() {
        local line

        TEST_COUNT=$((TEST_COUNT + 1))
        TEST_FAILED=$((TEST_FAILED + 1))
        TEST_LAST_FAILED=1
        echo "not ok $TEST_COUNT - $1"
        shift
        for line in "$@"; do
                printf '%s\n' "$line" | sed 's/^/#   /'
        done
}

# Print "1..N" and the summary line, then exit 0 when every check passed and 1 otherwise.
test_finish() {
        echo "1..$TEST_COUNT"
        echo "$TEST_PASSED passed, $TEST_FAILED failed"
        [[ $TEST_FAILED -eq 0 ]] || exit 1
        exit 0
}

# Stop the test, counting it as failed.
test_abort() {
        test_fail "$*"
        echo "# aborting: $*"
        test_finish
}

# Stop the test when the last check failed, because the checks after it depend on it.
abort_if_failed() {
        [[ $TEST_LAST_FAILED -eq 0 ]] || test_abort "$1"
}

assert_eq() {
        local description=$1 expected=$2 actual=$3

        if [[ $expected == "$actual" ]]; then
                test_ok "$description"
        else
                test_fail "$description" "expected: $expected" "actual:   $actual"
        fi
}

# assert_contains DESCRIPTION HAYSTACK NEEDLE: NEEDLE must occur in HAYSTACK as a substring.
assert_contains() {
        local description=$1 haystack=$2 needle=$3

        if [[ $haystack == *"$needle"* ]]; then
                test_ok "$description"
        else
                test_fail "$description" "expected to contain: $needle" "actual: $haystack"
        fi
}

assert_true() {
        local description=$1

        shift
        if "$@"; then
                test_ok "$description"
        else
                test_fail "$description" "command failed: $*"
        fi
}

# Run CMD and keep its exit status and output, without stopping on failure.
capture() {
        local out=$TEST_DIR/capture.out err=$TEST_DIR/capture.err

        CAPTURE_STATUS=0
        "$@" >"$out" 2>"$err" || CAPTURE_STATUS=$?
        CAPTURE_STDOUT=$(<"$out")
        CAPTURE_STDERR=$(<"$err")
}

# assert_fails_with EXPECTED_STDERR_LINE CMD...: CMD exits with status 1, prints nothing on
# stdout, and one of its stderr lines is exactly EXPECTED_STDERR_LINE.
assert_fails_with() {
        local expected=$1

        shift
        capture "$@"
        check_failure "fails with: $expected" "$(grep -Fxc -- "$expected" <<<"$CAPTURE_STDERR" || true)"
}

# assert_fails_like REGEX CMD...: like assert_fails_with, with a stderr line matching the
# extended regular expression REGEX as a whole. For error reasons whose wording is not fixed yet.
assert_fails_like() {
        local regex=$1

        shift
        capture "$@"
        check_failure "fails like: $regex" "$(grep -Exc -- "$regex" <<<"$CAPTURE_STDERR" || true)"
}

check_failure() {
        local description=$1 matches=$2

        if [[ $CAPTURE_STATUS -eq 1 && -z $CAPTURE_STDOUT && $matches -ge 1 ]]; then
                test_ok "$description"
        else
                test_fail "$description" "exit status: $CAPTURE_STATUS (expected 1)" \
                        "stdout: $CAPTURE_STDOUT" "stderr: $CAPTURE_STDERR"
        fi
}

cocoon_run() {
        "$COCOON" --root-dir "$ROOT" "$@"
}

# Print one line per entry under ROOT (locks/ left out): path, type, mode, size, and the sha256
# of regular files (the modification time of files over 64 MiB). Two equal snapshots mean the
# store did not change.
store_snapshot() {
        local path type mode size

        (cd "$ROOT" && find . -mindepth 1 \( -path ./locks -prune \) -o -printf '%P %y %m %s\n') | sort |
                while read -r path type mode size; do
                        if [[ $type == f && $size -gt 67108864 ]]; then
                                # A VM's sparse 10G disk would take a minute to hash: its
                                # modification time shows a change as well.
                                echo "$path $type $mode $size $(stat -c %Y.%y "$ROOT/$path")"
                        elif [[ $type == f ]]; then
                                echo "$path $type $mode $size $(sha256sum <"$ROOT/$path" | cut -c1-64)"
                        elif [[ $type == d ]]; then
                                echo "$path $type $mode"
                        else
                                echo "$path $type $mode $size"
                        fi
                done
}

# assert_store_unchanged DESCRIPTION SNAPSHOT: the store matches a snapshot taken before.
assert_store_unchanged() {
        local description=$1 before=$2 after

        after=$(store_snapshot)
        if [[ $before == "$after" ]]; then
                test_ok "$description"
        else
                test_fail "$description" "$(diff <(echo "$before") <(echo "$after") || true)"
        fi
}

# Print a TCP port on 127.0.0.1 that refuses connections right now.
closed_port() {
        local port

        for _ in $(seq 50); do
                port=$((20000 + RANDOM % 40000))
                if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                        echo "$port"
                        return 0
                fi
        done
        return 1
}

# Start docker-registry (Distribution 2.x, plain HTTP) on 127.0.0.1 with its storage in
# TEST_DIR. Sets REGISTRY_PORT and REGISTRY_PID, and REGISTRY to "127.0.0.1:PORT".
registry_start() {
        local binary=${REGISTRY_BINARY:-docker-registry} attempt

        REGISTRY_DIR=$TEST_DIR/registry
        mkdir -p "$REGISTRY_DIR/data"
        # A port that looked free may be taken before the registry binds it, so try a few.
        for attempt in 1 2 3 4 5; do
                REGISTRY_PORT=$(closed_port) || break
                cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
                "$binary" serve "$REGISTRY_DIR/config.yml" >"$REGISTRY_DIR/registry.log" 2>&1 &
                REGISTRY_PID=$!
                if registry_wait; then
                        REGISTRY=127.0.0.1:$REGISTRY_PORT
                        echo "# registry pid $REGISTRY_PID on $REGISTRY (attempt $attempt)"
                        return 0
                fi
                registry_stop
        done
        echo "# registry failed to start, log:"
        sed 's/^/#   /' "$REGISTRY_DIR/registry.log"
        return 1
}

# Wait up to 10 s until GET /v2/ succeeds, or until the registry process has exited.
registry_wait() {
        for _ in $(seq 100); do
                kill -0 "$REGISTRY_PID" 2>/dev/null || return 1
                curl -fsS -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/" 2>/dev/null && return 0
                sleep 0.1
        done
        return 1
}

registry_stop() {
        if [[ -n $REGISTRY_PID ]]; then
                kill "$REGISTRY_PID" 2>/dev/null || true
                wait "$REGISTRY_PID" 2>/dev/null || true
                REGISTRY_PID=
        fi
}

# registry_push OCI_LAYOUT TAG REPOSITORY: push one tag of an OCI layout with skopeo.
registry_push() {
        local layout=$1 tag=$2 repository=$3

        skopeo copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$REGISTRY/$repository:$tag"
}
