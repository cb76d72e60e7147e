#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks the Cloud Hypervisor test double: the argument grammar and its error messages, the REST
# API over the unix socket (with curl --unix-socket), signals, the PTY and socket consoles and
# the CH_DOUBLE_* fault knobs. Exits 77 (skipped) when curl or python3 is missing. CH_DOUBLE names the
# binary; meson passes it.
set -euo pipefail

CH=${CH_DOUBLE:-$(dirname "$0")/../../build/tests/ch-double/cloud-hypervisor}

for tool in curl python3; do
        if ! command -v "$tool" >/dev/null; then
                echo "$tool not found, skipping"
                exit 77
        fi
done

tmp=$(mktemp -d)
pids=()
cleanup() {
        for p in "${pids[@]}"; do
                kill -KILL "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

pass() {
        echo "ok: $*"
}

# expect_error RC TEXT ARGS...: the double must exit with RC and print TEXT on stderr.
expect_error() {
        local want_rc=$1 text=$2 rc=0
        shift 2
        "$CH" "$@" >"$tmp/stdout" 2>"$tmp/stderr" || rc=$?
        [ "$rc" -eq "$want_rc" ] || fail "$* exited $rc, expected $want_rc; stderr: $(cat "$tmp/stderr")"
        grep -qF -- "$text" "$tmp/stderr" || fail "$*: stderr lacks '$text': $(cat "$tmp/stderr")"
        pass "$text"
}

wait_for_socket() {
        for _ in $(seq 100); do
                [ -S "$1" ] && return 0
                sleep 0.02
        done
        fail "socket $1 did not appear"
}

# wait_for_exit PID: wait up to 3 s and store the exit code in $exit_rc. Not usable in $(...),
# because only this shell can reap its children.
exit_rc=
wait_for_exit() {
        for _ in $(seq 150); do
                if ! kill -0 "$1" 2>/dev/null; then
                        exit_rc=0
                        wait "$1" || exit_rc=$?
                        return 0
                fi
                sleep 0.02
        done
        fail "process $1 did not exit"
}

api() {
        local method=$1 sock=$2 endpoint=$3
        shift 3
        curl -sS --unix-socket "$sock" -X "$method" -o "$tmp/body" -w '%{http_code}' "$@" \
                "http://localhost/api/v1/$endpoint"
}

json_get() {
        python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"
}

cd "$tmp"
truncate -s 1M layer0.erofs layer1.erofs cow.raw
echo kernel >vmlinuz
echo initrd >initrd.img
echo firmware >CLOUDHV.fd

# --- version and help -----------------------------------------------------------------------

[ "$("$CH" --version)" = "cloud-hypervisor v53.0.0 (cocoon test double)" ] || fail "--version"
"$CH" --help | grep -q "test tool only" || fail "--help does not say it is a test tool"
pass "version and help"

# --- grammar errors -------------------------------------------------------------------------

expect_error 2 "error: unexpected argument '--bogus' found" --kernel vmlinuz --bogus
expect_error 2 "error: a value is required for '--cpus <cpus>' but none was supplied" --kernel vmlinuz --cpus
expect_error 2 "error: the argument '--kernel <kernel>' cannot be used multiple times" --kernel vmlinuz --kernel vmlinuz
expect_error 2 "<--firmware <firmware>|--kernel <kernel>>" --disk path=cow.raw
expect_error 1 "unknown option: bogus" --kernel vmlinuz --disk path=cow.raw,bogus=1
expect_error 1 "1: Error parsing --disk" --kernel vmlinuz --disk path=cow.raw,bogus=1
expect_error 1 "unable to convert two for boot" --kernel vmlinuz --cpus boot=two
expect_error 1 "unable to convert maybe for readonly" --kernel vmlinuz --disk path=cow.raw,readonly=maybe
expect_error 1 "unable to convert 1X for size" --kernel vmlinuz --memory size=1X
expect_error 1 "unable to convert 52:54 for mac" --kernel vmlinuz --net tap=t0,mac=52:54
expect_error 1 "Max CPUs lower than boot CPUs" --kernel vmlinuz --cpus boot=4,max=2
expect_error 1 "Block device serial length (21) exceeds maximum allowed length (20)" \
        --kernel vmlinuz --disk path=cow.raw,serial=123456789012345678901
expect_error 1 "Error parsing --console: invalid console mode given" --kernel vmlinuz --console iommu=on
expect_error 1 "Cannot open kernel file" --kernel missing-vmlinuz
expect_error 1 "No such file or directory (os error 2)" --kernel missing-vmlinuz
expect_error 1 "I/O error (path=missing.raw op=open)" --kernel vmlinuz --disk path=missing.raw
expect_error 1 "Cannot open initramfs file" --kernel vmlinuz --initramfs missing-initrd
expect_error 1 "TAP missingtap0 not found in this network namespace" --kernel vmlinuz --net tap=missingtap0

# --- the worked example of Cocoon's generated command line (no --net: it needs a TAP) --------

"$CH" --api-socket "$tmp/api.sock" --cpus boot=2,max=16 --memory size=1073741824 \
        --disk "path=$tmp/layer0.erofs,readonly=on,image_type=raw,num_queues=2,queue_size=512,serial=cocoon-layer0" \
        "path=$tmp/layer1.erofs,readonly=on,image_type=raw,num_queues=2,queue_size=512,serial=cocoon-layer1" \
        "path=$tmp/cow.raw,direct=on,sparse=on,image_type=raw,num_queues=2,queue_size=512,queue_affinity=[0@[0],1@[1]],serial=cocoon-cow" \
        --kernel "$tmp/vmlinuz" --initramfs "$tmp/initrd.img" \
        --cmdline "console=hvc0 loglevel=3 boot=cocoon-overlay cocoon.layers=cocoon-layer1,cocoon-layer0 cocoon.cow=cocoon-cow clocksource=kvm-clock rw net.ifnames=0 cocoon.hostname=web ip=10.88.0.5::10.88.0.1:255.255.0.0:web:eth0:off:8.8.8.8:1.1.1.1" \
        --rng src=/dev/urandom --watchdog --balloon size=268435456,deflate_on_oom=on,free_page_reporting=on \
        --vsock "cid=3,socket=$tmp/vsock.uds" --serial off --console pty 2>"$tmp/example.err" &
pid=$!
pids+=("$pid")
wait_for_socket "$tmp/api.sock"

[ "$(api GET api.sock vmm.ping)" = 200 ] || fail "vmm.ping status"
[ "$(json_get body version)" = v53.0.0 ] || fail "vmm.ping version"
[ "$(json_get body pid)" = "$pid" ] || fail "vmm.ping pid"
pass "vmm.ping"

[ "$(api GET api.sock vm.info)" = 200 ] || fail "vm.info status"
[ "$(json_get body state)" = Running ] || fail "vm.info state"
[ "$(json_get body config cpus boot_vcpus)" = 2 ] || fail "vm.info boot_vcpus"
[ "$(json_get body config disks 2 serial)" = cocoon-cow ] || fail "vm.info disk serial"
[ "$(json_get body config disks 2 queue_affinity 1 host_cpus 0)" = 1 ] || fail "vm.info queue_affinity"
[ "$(json_get body config console mode)" = Pty ] || fail "vm.info console mode"
[ "$(json_get body memory_actual_size)" = 805306368 ] || fail "vm.info memory_actual_size"
pts=$(json_get body config console file)
[[ "$pts" == /dev/pts/* ]] || fail "vm.info console file '$pts' is not a PTY"
pass "vm.info"

[ "$(api GET api.sock vm.nonexistent)" = 404 ] || fail "unknown endpoint is not 404"
[ "$(api PUT api.sock vm.info)" = 400 ] || fail "PUT vm.info is not 400"
[ "$(api PUT api.sock vm.shutdown --data '{}')" = 400 ] || fail "vm.shutdown with a body is not 400"
[ "$(api PUT api.sock vm.snapshot)" = 400 ] || fail "vm.snapshot without a body is not 400"
[ "$(api PUT api.sock vm.snapshot --data '{"destination_url":"file:///x"}')" = 501 ] || fail "vm.snapshot is not 501"
[ "$(api PUT api.sock vm.resume)" = 500 ] || fail "vm.resume of a running VM is not 500"
grep -qF "invalid VM state transition: Running to Running" body || fail "vm.resume error body: $(cat body)"
pass "API status codes"

code=$(curl -sS -v --unix-socket api.sock -X PUT -H 'Expect: 100-continue' --data '{"id":"_disk9"}' \
        -o /dev/null -w '%{http_code}' http://localhost/api/v1/vm.remove-device 2>curl.err)
[ "$code" = 501 ] || fail "vm.remove-device with Expect: 100-continue returned $code"
grep -q "HTTP/1.1 100 Continue" curl.err || fail "no 100 Continue: $(cat curl.err)"
pass "Expect: 100-continue"

connects=$(curl -sS --unix-socket api.sock -o /dev/null -o /dev/null -w '%{num_connects} ' \
        http://localhost/api/v1/vmm.ping http://localhost/api/v1/vm.info)
[ "$connects" = "1 0 " ] || fail "keep-alive: connections per request '$connects'"
pass "keep-alive"

timeout 2 cat "$pts" >pty.out 2>/dev/null &
reader=$!
sleep 0.2
printf 'hostname\r' >"$pts"
sleep 0.2
[ "$(api PUT api.sock vm.power-button)" = 204 ] || fail "vm.power-button status"
wait_for_exit "$pid"; [ "$exit_rc" = 0 ] || fail "VMM did not exit 0 after the power button"
wait "$reader" || true
grep -q "^web" pty.out || fail "PTY shell did not answer hostname: $(cat pty.out)"
grep -q "cocoon-double: ACPI power button, shutting down" pty.out || fail "no power-button line on the PTY"
[ ! -e api.sock ] || fail "API socket left behind"
pass "power button and PTY console"

# --- vm.shutdown keeps the VMM; vmm.shutdown ends it; file console -------------------------------

"$CH" --api-socket api2.sock --kernel vmlinuz --cmdline "cocoon.hostname=db" --serial off \
        --console file="$tmp/console.log" &
pid=$!
pids+=("$pid")
wait_for_socket api2.sock
[ "$(api PUT api2.sock vm.shutdown)" = 204 ] || fail "vm.shutdown status"
[ "$(api GET api2.sock vm.info)" = 200 ] || fail "vm.info status after vm.shutdown"
[ "$(json_get body state)" = Shutdown ] || fail "state after vm.shutdown"
kill -0 "$pid" || fail "VMM exited after vm.shutdown"
[ "$(api PUT api2.sock vm.power-button)" = 500 ] || fail "power button after shutdown is not 500"
[ "$(api PUT api2.sock vmm.shutdown)" = 204 ] || fail "vmm.shutdown status"
wait_for_exit "$pid"; [ "$exit_rc" = 0 ] || fail "VMM did not exit 0 after vmm.shutdown"
grep -q "cocoon-double: guest booted" console.log || fail "console file lacks the boot log"
grep -q "cocoon-double: hostname db" console.log || fail "console file lacks the hostname"
pass "vm.shutdown, vmm.shutdown, file console"

# --- SIGTERM -------------------------------------------------------------------------------------

"$CH" --api-socket api3.sock --kernel vmlinuz --console off 2>sigterm.err &
pid=$!
pids+=("$pid")
wait_for_socket api3.sock
kill -TERM "$pid"
wait_for_exit "$pid"; [ "$exit_rc" = 0 ] || fail "SIGTERM exit code"
grep -q "received SIGTERM" sigterm.err || fail "no line on SIGTERM"
[ ! -e api3.sock ] || fail "API socket left behind after SIGTERM"
pass "SIGTERM"

# --- serial socket console (the UEFI layout) -------------------------------------------------------

{
        "$CH" --api-socket api4.sock --firmware CLOUDHV.fd --disk path=cow.raw \
                --serial socket="$tmp/console.sock" --console off &
        pid=$!
        pids+=("$pid")
        wait_for_socket api4.sock
        python3 - "$tmp/console.sock" >shell.out <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"hostname\necho-me\n")
s.settimeout(0.5)
data = b""
deadline = time.time() + 2
while time.time() < deadline and b"echo-me" not in data:
    try:
        data += s.recv(4096)
    except socket.timeout:
        pass
print(data.decode())
EOF
        grep -q "cocoon-double: guest booted" shell.out || fail "socket console lacks the boot log"
        grep -q "^localhost" shell.out || fail "socket shell did not answer hostname: $(cat shell.out)"
        grep -q "^echo-me" shell.out || fail "socket shell did not echo: $(cat shell.out)"
        kill -TERM "$pid"
        wait_for_exit "$pid"
        pass "serial socket shell"
}

# --- fault knobs -----------------------------------------------------------------------------------

CH_DOUBLE_IGNORE_POWER_BUTTON=1 "$CH" --api-socket api5.sock --kernel vmlinuz --console off 2>/dev/null &
pid=$!
pids+=("$pid")
wait_for_socket api5.sock
[ "$(api PUT api5.sock vm.power-button)" = 204 ] || fail "ignored power button status"
sleep 0.6
kill -0 "$pid" || fail "CH_DOUBLE_IGNORE_POWER_BUTTON: VMM exited"
kill -TERM "$pid"
wait_for_exit "$pid"
pass "CH_DOUBLE_IGNORE_POWER_BUTTON"

CH_DOUBLE_HANG_ON_SIGTERM=1 "$CH" --api-socket api6.sock --kernel vmlinuz --console off 2>hang.err &
pid=$!
pids+=("$pid")
wait_for_socket api6.sock
kill -TERM "$pid"
sleep 0.3
kill -0 "$pid" || fail "CH_DOUBLE_HANG_ON_SIGTERM: VMM exited on SIGTERM"
grep -q "ignoring SIGTERM" hang.err || fail "CH_DOUBLE_HANG_ON_SIGTERM: no line"
kill -KILL "$pid"
wait_for_exit "$pid"
pass "CH_DOUBLE_HANG_ON_SIGTERM"

CH_DOUBLE_CRASH_AFTER=0.2 "$CH" --api-socket api7.sock --kernel vmlinuz --console off 2>/dev/null &
pid=$!
pids+=("$pid")
wait_for_exit "$pid"; [ "$exit_rc" = 134 ] || fail "CH_DOUBLE_CRASH_AFTER: expected SIGABRT (134)"
pass "CH_DOUBLE_CRASH_AFTER"

CH_DOUBLE_BOOT_DELAY_MS=500 "$CH" --api-socket api8.sock --kernel vmlinuz --console off &
pid=$!
pids+=("$pid")
sleep 0.2
[ ! -e api8.sock ] || fail "CH_DOUBLE_BOOT_DELAY_MS: socket appeared early"
wait_for_socket api8.sock
kill -TERM "$pid"
wait_for_exit "$pid"
pass "CH_DOUBLE_BOOT_DELAY_MS"

CH_DOUBLE_RECORD="$tmp/record.jsonl" "$CH" --version >/dev/null
CH_DOUBLE_RECORD="$tmp/record.jsonl" "$CH" --kernel vmlinuz --cpus boot=2 --bogus 2>/dev/null || true
[ "$(wc -l <record.jsonl)" = 2 ] || fail "CH_DOUBLE_RECORD: expected 2 lines"
[ "$(tail -n1 record.jsonl | json_get /dev/stdin argv 3)" = --cpus ] || fail "CH_DOUBLE_RECORD: argv"
[ "$(tail -n1 record.jsonl | json_get /dev/stdin argv 4)" = boot=2 ] || fail "CH_DOUBLE_RECORD: argv"
pass "CH_DOUBLE_RECORD"

# --- TAP checks, in a network namespace of our own (needs root and iproute2) -------------------

if command -v ip >/dev/null && unshare -n true 2>/dev/null; then
        # shellcheck disable=SC2016 # the inner script expands its own variables
        unshare -n bash -c '
                set -e
                ip tuntap add dev tapsq0 mode tap vnet_hdr
                ip tuntap add dev tapmq0 mode tap vnet_hdr multi_queue
                "$0" --kernel vmlinuz --cpus boot=2 --net tap=tapsq0,num_queues=4 --console off 2>mq.err && exit 1
                grep -q "IFF_MULTI_QUEUE must be set" mq.err
                "$0" --kernel vmlinuz --cpus boot=2 --net tap=tapmq0,num_queues=2 --console off 2>sq.err && exit 1
                grep -q "IFF_MULTI_QUEUE must be clear" sq.err
                "$0" --api-socket tap.sock --kernel vmlinuz --cpus boot=2 \
                        --net tap=tapmq0,mac=52:54:00:12:34:56,num_queues=4 --console file=tap.log &
                pid=$!
                for _ in $(seq 100); do [ -S tap.sock ] && break; sleep 0.02; done
                kill -TERM $pid
                wait $pid
                grep -q "eth0: MAC 52:54:00:12:34:56, 2 queue pairs" tap.log
        ' "$CH" || fail "TAP checks in a private network namespace"
        pass "TAP open, multi-queue mismatch"
else
        echo "skip: TAP checks need root, unshare -n and ip"
fi

echo "all checks passed"
