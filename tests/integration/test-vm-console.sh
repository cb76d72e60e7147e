#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration test of the guest console: "cocoon vm console" driven through a pseudo-terminal
# (tests/console/pty-driver.py), the console relay of the unit, and the guest output in the
# journal ("cocoon vm logs"), against a real systemd manager (tests/lib/systemd-lab.sh) with the
# Cloud Hypervisor test double first on PATH. The double's PTY console echoes each line it
# receives and answers "hostname" with the guest's hostname.
#
# Environment: COCOON (required), CH_DOUBLE_DIR (directory of the double's cloud-hypervisor),
# COCOON_TEST_IMAGE_DIR (optional cache of the test image), TEST_KEEP=1 keeps the temp dir.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/systemd-lab.sh
. "$HERE/../lib/systemd-lab.sh"

[[ -n ${COCOON:-} && -x ${COCOON:-} ]] || test_skip "COCOON is not set to an executable"
[[ -x ${CH_DOUBLE_DIR:-}/cloud-hypervisor ]] || test_skip "CH_DOUBLE_DIR has no cloud-hypervisor"
test_require_root
test_require_tools docker-registry skopeo curl jq busybox cpio gzip modprobe mkfs.ext4 python3 stty
lab_require
test_init

DRIVER=$HERE/../console/pty-driver.py
IMAGE_DIR=${COCOON_TEST_IMAGE_DIR:-$TEST_DIR/image}
build_output=$("$HERE/../image/build-test-image.sh" "$IMAGE_DIR" 2>&1) ||
        test_abort "build-test-image.sh failed: $build_output"
registry_start || test_abort "registry did not start"
registry_push "$IMAGE_DIR/oci" latest cocoon-test/vm || test_abort "push failed"
IMAGE=$REGISTRY/cocoon-test/vm:latest

ROOT=$TEST_DIR/root
cocoon_run image pull -q "$IMAGE" >/dev/null || test_abort "image pull failed"

lab_start || test_abort "the systemd lab did not start"
cp "$HERE/../../units/cocoon.slice" "$LAB_UNIT_DIR/"
lab_exec systemctl daemon-reload

# ---------------------------------------------------------------------------------------------
# Helpers

vm() {
        PATH="$CH_DOUBLE_DIR:$PATH" lab_exec "$COCOON" --root-dir "$ROOT" "$@"
}

# The guest's output in the journal, one message per line.
guest_journal() {
        lab_exec journalctl --no-pager -u "cocoon-vm@$1.service" -t guest -o cat 2>/dev/null || true
}

# Wait up to 10 s until the guest's journal of VM $1 has a line that is exactly $2.
# shellcheck disable=SC2317 # called through assert_true
wait_guest_line() {
        for _ in $(seq 100); do
                guest_journal "$1" | grep -Fxq -- "$2" && return 0
                sleep 0.1
        done
        return 1
}

# console STEP... [-- ARG...]: run "cocoon vm console" in the lab through the PTY driver.
# Arguments after "--" go to "vm console"; the VM name comes last.
console() {
        local steps=() args=()

        while [[ $# -gt 0 && $1 != -- ]]; do
                steps+=("$1")
                shift
        done
        [[ $# -eq 0 ]] || shift
        args=("$@")
        PATH="$CH_DOUBLE_DIR:$PATH" python3 "$DRIVER" --timeout 10 --transcript "$TEST_DIR/transcript" \
                "${steps[@]}" -- nsenter --target "$LAB_PID1" --mount --pid --uts --cgroup -- \
                env -u DBUS_SYSTEM_BUS_ADDRESS "$COCOON" --root-dir "$ROOT" vm console "${args[@]}"
}

assert_console() {
        local description=$1

        shift
        if console "$@" 2>"$TEST_DIR/driver.err"; then
                test_ok "$description"
        else
                test_fail "$description" "$(cat "$TEST_DIR/driver.err")"
        fi
}

transcript_has() {
        grep -Fq -- "$1" "$TEST_DIR/transcript"
}

# ---------------------------------------------------------------------------------------------
# Errors before attaching

vm vm create --nics 0 --name web "$IMAGE" >/dev/null
assert_fails_with "Failed to attach to VM 'web': VM 'web' is not running" vm vm console web
assert_fails_with "Failed to attach to VM 'nope': VM 'nope' not found" vm vm console nope
assert_usage_error() {
        local expected=$1

        shift
        capture "$@"
        if [[ $CAPTURE_STATUS -eq 2 ]] && grep -Fxq -- "$expected" <<<"$CAPTURE_STDERR"; then
                test_ok "usage error: $expected"
        else
                test_fail "usage error: $expected" "exit status: $CAPTURE_STATUS (expected 2)" \
                        "stderr: $CAPTURE_STDERR"
        fi
}
assert_usage_error "invalid escape character '.': '.' and '?' are escape commands." \
        vm vm console --escape-char . web
assert_usage_error "invalid escape character '^M': NUL, CR, LF and DEL cannot be used." \
        vm vm console --escape-char '^M' web

capture vm vm start web
assert_eq "start exits 0" "0" "$CAPTURE_STATUS"
ID=$(vm vm inspect web | jq -r .id)
assert_true "the relay serves the console socket" lab_exec test -S "$ROOT/run/$ID/console.sock"
assert_contains "the unit runs the relay after the VMM" \
        "$(lab_exec systemctl show -p ExecStartPost --value cocoon-vm@web.service)" "console-relay $ID"
assert_fails_with "Failed to attach to VM 'web': stdin is not a terminal" vm vm console web </dev/null

# ---------------------------------------------------------------------------------------------
# The guest's output reaches the journal from the first kernel line, apart from the VMM's.

CMDLINE=$(vm vm inspect web | jq -r .boot_config.cmdline)
assert_true "the journal has the last boot line" wait_guest_line web "cocoon-double: guest booted"
first=$(guest_journal web | head -n1)
assert_contains "the journal starts at the first kernel line" "$first" "] Linux version 6.12.0-cocoon-double"
assert_true "the journal has the kernel command line" \
        grep -Fxq -- "[    0.000000] Command line: $CMDLINE" <(guest_journal web)
assert_true "the journal has the guest's hostname" wait_guest_line web "cocoon-double: hostname web"
assert_eq "no journal line keeps the guest's CR" 0 "$(guest_journal web | grep -c $'\r' || true)"
relay_lines=$(lab_exec journalctl --no-pager -u cocoon-vm@web.service -t cocoon -o cat 2>/dev/null || true)
assert_contains "the relay logs its start with the VMM's messages" "$relay_lines" \
        "Console relay of VM web attached to /dev/pts/"

capture vm vm logs -n 5 -o cat web
assert_eq "logs -n 5 prints 5 lines" 5 "$(wc -l <<<"$CAPTURE_STDOUT")"
assert_contains "logs -n 5 shows the last boot line" "$CAPTURE_STDOUT" "cocoon-double: hostname web"
capture vm vm logs -o json web
assert_contains "logs -o json tags guest lines" "$CAPTURE_STDOUT" '"SYSLOG_IDENTIFIER":"guest"'

# ---------------------------------------------------------------------------------------------
# An interactive session

assert_console "type a line and see the echo; ~. restores the terminal" \
        save-termios "expect:Connected to VM web (escape character: ~, ~? for help)" check-raw \
        'send:echo-one\r' 'expect:echo-one\r\n' \
        'send:~.' 'expect:Disconnected from VM web.' exit:0 check-restored -- web
assert_true "the typed line reaches the journal" wait_guest_line web "echo-one"

assert_console "the guest answers hostname" \
        "expect:Connected to VM web" 'send:hostname\r' 'expect:\r\nweb\r\n' 'send:~.' exit:0 -- web

assert_console "~? shows the help" \
        "expect:Connected" 'send:~?' 'expect:~.  disconnect' 'expect:~~  send ~ itself' \
        'send:after-help\r' 'expect:after-help\r\n' 'send:~.' exit:0 -- web

assert_console "~~ sends one ~ and an escape mid-line passes through" \
        "expect:Connected" 'send:~~tilde\r' 'expect:~tilde\r\n' \
        'send:a~.b~?c\r' 'expect:a~.b~?c\r\n' 'send:~x\r' 'expect:~x\r\n' 'send:~.' exit:0 -- web
assert_true "~~ sent a single ~" test "$(grep -c -F '~~tilde' "$TEST_DIR/transcript" || true)" -eq 0

assert_console "--escape-char ^] replaces ~" \
        'expect:Connected to VM web (escape character: ^], ^]? for help)' \
        'send:~.still-here\r' 'expect:~.still-here\r\n' 'send:\x1d.' exit:0 -- --escape-char '^]' web

# SIGTERM and SIGHUP end the session with the terminal restored.
for signal in TERM HUP; do
        assert_console "SIG$signal restores the terminal" \
                save-termios "expect:Connected" check-raw "signal:$signal" \
                'expect:Disconnected from VM web.' exit:0 check-restored -- web
done

# Window size: the relay sets it on the VMM's PTY.
PTY=$(lab_exec curl -s --unix-socket "$ROOT/run/$ID/api.sock" http://localhost/api/v1/vm.info |
        jq -r .config.console.file)
assert_console "the window size follows the terminal" \
        "expect:Connected" "wait-cmd:nsenter --target $LAB_PID1 --mount stty -F $PTY size | grep -qx '24 80'" \
        resize:40:132 "wait-cmd:nsenter --target $LAB_PID1 --mount stty -F $PTY size | grep -qx '40 132'" \
        'send:~.' exit:0 -- web

# ---------------------------------------------------------------------------------------------
# A second client: busy, or read-only

rm -f "$TEST_DIR/ro-ready" "$TEST_DIR/first-attached" "$TEST_DIR/done"
console "expect:Connected" "touch:$TEST_DIR/first-attached" "wait-file:$TEST_DIR/ro-ready" \
        'send:shared-line\r' 'expect:shared-line\r\n' "wait-file:$TEST_DIR/done" 'send:~.' exit:0 -- web \
        >"$TEST_DIR/first.out" 2>&1 &
first_pid=$!
for _ in $(seq 100); do [[ -e $TEST_DIR/first-attached ]] && break; sleep 0.1; done

assert_console "a second client is told the console is busy" \
        "expect:Failed to attach to VM 'web': console of VM 'web' is in use by another client; use --read-only to watch" \
        exit:1 -- web
assert_console "a read-only client watches alongside" \
        "expect:Connected to VM web read-only (escape character: ~, ~? for help)" \
        "touch:$TEST_DIR/ro-ready" 'expect:shared-line\r\n' 'send:typed-read-only\r' sleep:0.5 \
        'send:~.' exit:0 -- --read-only web
touch "$TEST_DIR/done"
wait "$first_pid" && first_status=0 || first_status=$?
assert_eq "the first client ends normally" 0 "$first_status"
[[ $first_status -eq 0 ]] || sed 's/^/# /' "$TEST_DIR/first.out"
assert_eq "a read-only client's input is dropped" 0 "$(guest_journal web | grep -c typed-read-only || true)"

assert_console "the console is free again after the first client left" \
        "expect:Connected to VM web (" 'send:free-again\r' 'expect:free-again\r\n' 'send:~.' exit:0 -- web

# ---------------------------------------------------------------------------------------------
# vm logs -f follows new guest output

lab_exec timeout -s INT 4 "$COCOON" --root-dir "$ROOT" vm logs -f -o cat web >"$TEST_DIR/follow.out" 2>&1 &
follow_pid=$!
sleep 1
console "expect:Connected" 'send:followed-line\r' 'expect:followed-line\r\n' 'send:~.' exit:0 -- web \
        2>/dev/null || true
wait "$follow_pid" || true
assert_true "logs -f shows the boot lines" grep -Fxq "cocoon-double: guest booted" "$TEST_DIR/follow.out"
assert_true "logs -f shows new guest output" grep -Fxq "followed-line" "$TEST_DIR/follow.out"

# ---------------------------------------------------------------------------------------------
# The relay ends with the VM; a client sees the console close.

console "expect:Connected" "wait-cmd:PATH=$CH_DOUBLE_DIR:\$PATH nsenter --target $LAB_PID1 --mount --pid --uts --cgroup -- env -u DBUS_SYSTEM_BUS_ADDRESS $COCOON --root-dir $ROOT vm stop web" \
        'expect:ACPI power button' 'expect:Disconnected from VM web.' exit:0 -- web 2>"$TEST_DIR/driver.err" &&
        test_ok "stopping the VM ends an attached session" ||
        test_fail "stopping the VM ends an attached session" "$(cat "$TEST_DIR/driver.err")"
assert_true "the console socket is gone after the stop" lab_exec test ! -e "$ROOT/run/$ID/console.sock"
assert_true "the power-off line reached the journal" \
        wait_guest_line web "cocoon-double: ACPI power button, shutting down"
assert_fails_with "Failed to attach to VM 'web': VM 'web' is not running" vm vm console web

vm vm rm --force web >/dev/null
test_finish
