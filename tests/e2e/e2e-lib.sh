# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Helpers shared by the end-to-end tests, sourced after tests/lib/common.sh and
# tests/lib/systemd-lab.sh. The test sets VM_NAME (the VM name) and UNIT (its unit). Sourcing it
# exports LAB_NETNS=1: lab_start then gives the lab a network namespace of its own, and lab_exec
# enters it, so the CNI bridge, the VM's namespace and its leases never touch the host's network.
#
#   e2e_require_cni              skip without the bridge and host-local plugins in CNI_BIN_DIR
#   e2e_write_cni_config PREFIX  write CONF/10-e2e.conflist: bridge cni-e2e0, PREFIX.0/24, IPAM
#                                state in IPAM, gateway PREFIX.1
#   vm ARG...                    cocoon inside the lab, with the test's CNI configuration
#   vm_field JQ                  one field of "vm inspect VM_NAME"
#   unit_property PROPERTY       one property of UNIT
#   e2e_follow_start / e2e_follow_stop    "cocoon vm logs -f -o cat VM_NAME" into FOLLOW_LOG, in the
#                                background, ended by its PID
#   e2e_follow_until TEXT N SECONDS       wait until FOLLOW_LOG has N lines containing TEXT, print
#                                the N-th one
#   e2e_assert_console DESCRIPTION STEP... -- ARG...   "cocoon vm console ARG..." through
#                                tests/console/pty-driver.py
#   e2e_assert_vm_gone ID NAME   no unit, process, namespace, TAP, veth, lease or file of the VM

export LAB_NETNS=1
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
CONF=
IPAM=
FOLLOW_LOG=
FOLLOW_PID=
FOLLOW_JOB=
FOLLOW_COUNT=0
FOLLOW_CLEANUP_REGISTERED=

e2e_seconds_since() {
        awk -v start="$1" -v end="$EPOCHREALTIME" 'BEGIN { printf "%.1f", end - start }'
}

e2e_require_cni() {
        local plugin

        for plugin in bridge host-local; do
                [[ -x $CNI_BIN_DIR/$plugin ]] ||
                        test_skip "CNI plugin $plugin not found in $CNI_BIN_DIR (Debian: containernetworking-plugins)"
        done
}

# The bridge lives in the lab's network namespace, and host-local keeps its leases in the test
# directory. ipMasq is off, so no firewall rule is added anywhere.
e2e_write_cni_config() {
        local prefix=$1

        CONF=$TEST_DIR/cni-conf
        IPAM=$TEST_DIR/ipam
        mkdir -p "$CONF" "$IPAM"
        cat >"$CONF/10-e2e.conflist" <<JSON
{ "cniVersion": "1.0.0", "name": "e2e-net",
  "plugins": [ { "type": "bridge", "bridge": "cni-e2e0", "isGateway": true, "ipMasq": false,
                 "ipam": { "type": "host-local", "dataDir": "$IPAM",
                           "ranges": [[{ "subnet": "$prefix.0/24", "gateway": "$prefix.1" }]],
                           "routes": [{ "dst": "0.0.0.0/0" }] } } ] }
JSON
        E2E_DNS=$prefix.53
}

vm() {
        lab_exec "$COCOON" --root-dir "$ROOT" --cni-conf-dir "$CONF" --cni-bin-dir "$CNI_BIN_DIR" \
                --dns "$E2E_DNS" "$@"
}

vm_field() {
        vm vm inspect "$VM_NAME" | jq -r "$1"
}

unit_property() {
        lab_exec systemctl show -p "$1" --value "$UNIT"
}

e2e_leases() {
        find "$IPAM" -type f -name '10.*' | wc -l
}

e2e_link_state() {
        lab_exec ip -n "$1" -o link show "$2" 2>/dev/null | grep -o 'state [A-Z]*' | cut -d' ' -f2 || true
}

e2e_journal() {
        lab_exec journalctl --no-pager -a -u "$UNIT" -o cat 2>/dev/null || true
}

# Succeed once the unit's journal contains TEXT, within 10 s.
# shellcheck disable=SC2317 # called through assert_true
journal_has() {
        for _ in $(seq 100); do
                e2e_journal | grep -Fq -- "$1" && return 0
                sleep 0.1
        done
        return 1
}

# Print how many lines of the unit's journal contain TEXT, once that is at least MIN (default 1)
# or after 10 s.
journal_count() {
        local count=0

        for _ in $(seq 100); do
                count=$(e2e_journal | grep -cF -- "$1" || true)
                [[ $count -lt ${2:-1} ]] || break
                sleep 0.1
        done
        echo "$count"
}

# The follower runs inside the lab like every cocoon command. A small shell records its lab PID
# before it becomes cocoon, and lab_host_pid maps that to the host PID that the test signals.
e2e_follow_start() {
        local pid_file lab_pid=

        FOLLOW_COUNT=$((FOLLOW_COUNT + 1))
        FOLLOW_LOG=$TEST_DIR/follow.$FOLLOW_COUNT.log
        pid_file=$TEST_DIR/follow.$FOLLOW_COUNT.pid
        # shellcheck disable=SC2016 # expanded by the shell inside the lab
        lab_exec sh -c 'echo $$ >"$1" && shift && exec "$@"' sh "$pid_file" \
                "$COCOON" --root-dir "$ROOT" vm logs -f -o cat "$VM_NAME" >"$FOLLOW_LOG" 2>&1 &
        FOLLOW_JOB=$!
        FOLLOW_PID=
        for _ in $(seq 100); do
                [[ -s $pid_file ]] && lab_pid=$(<"$pid_file") && FOLLOW_PID=$(lab_host_pid "$lab_pid") && break
                sleep 0.05
        done
        if [[ -z $FOLLOW_CLEANUP_REGISTERED ]]; then
                test_on_exit e2e_follow_stop
                FOLLOW_CLEANUP_REGISTERED=1
        fi
        [[ -n $FOLLOW_PID ]] || test_abort "vm logs -f did not start"
}

e2e_follow_stop() {
        local tries=50

        [[ -n $FOLLOW_PID ]] || return 0
        kill "$FOLLOW_PID" 2>/dev/null || true
        while ((tries-- > 0)) && kill -0 "$FOLLOW_PID" 2>/dev/null; do
                sleep 0.1
        done
        # The background job is nsenter, which exits with its child.
        wait "$FOLLOW_JOB" 2>/dev/null || true
}

# shellcheck disable=SC2317 # called through assert_true
e2e_follow_gone() {
        ! kill -0 "$FOLLOW_PID" 2>/dev/null
}

# e2e_follow_until TEXT N SECONDS: fails when the follower exits or the time is up first.
e2e_follow_until() {
        local text=$1 count=$2 tries=$(($3 * 10)) line

        while ((tries-- > 0)); do
                line=$(grep -F -m "$count" -- "$text" "$FOLLOW_LOG" 2>/dev/null | sed -n "${count}p") || true
                if [[ -n $line ]]; then
                        echo "$line"
                        return 0
                fi
                kill -0 "$FOLLOW_PID" 2>/dev/null || { echo "# vm logs -f exited" >&2; return 1; }
                sleep 0.1
        done
        return 1
}

# e2e_assert_console DESCRIPTION STEP... -- ARG...: run "cocoon vm console ARG..." in the lab
# through the PTY driver. The transcript is kept in TEST_DIR/console.transcript.
e2e_assert_console() {
        local description=$1 steps=()

        shift
        while [[ $# -gt 0 && $1 != -- ]]; do
                steps+=("$1")
                shift
        done
        [[ $# -eq 0 ]] || shift
        if python3 "$HERE/../console/pty-driver.py" --timeout 30 --transcript "$TEST_DIR/console.transcript" \
                "${steps[@]}" -- nsenter --target "$LAB_PID1" --mount --pid --uts --cgroup --net -- \
                env -u DBUS_SYSTEM_BUS_ADDRESS "$COCOON" --root-dir "$ROOT" vm console "$@" \
                2>"$TEST_DIR/driver.err"; then
                test_ok "$description"
        else
                test_fail "$description" "$(cat "$TEST_DIR/driver.err")"
        fi
}

# The store as store_snapshot lists it, without what the first VM adds for good: the cached
# QEMU accelerator choice (run/qemu-accelerator) and the empty directories run/ and cni/.
e2e_store_snapshot() {
        store_snapshot | grep -Ev '^(run|cni|cni/cache|cni/netns) d |^run/qemu-accelerator f ' || true
}

# e2e_assert_vm_gone ID NAME: after "vm rm" and "gc".
e2e_assert_vm_gone() {
        local id=$1 name=$2

        assert_eq "no unit is left" not-found "$(unit_property LoadState)"
        assert_eq "no cocoon unit is listed" "" \
                "$(lab_exec systemctl list-units --no-legend --all 'cocoon-vm@*' || true)"
        assert_eq "no QEMU process is left" 0 "$(lab_exec pgrep -c -f "qemu-system-.*$id" || true)"
        assert_eq "no network namespace is left" "" "$(lab_exec ip netns list)"
        assert_true "the namespace file is gone" lab_exec test ! -e "/run/netns/cocoon-$id"
        assert_eq "no TAP is left" "" "$(lab_exec ip -o link show type tun)"
        assert_eq "no veth is left" "" "$(lab_exec ip -o link show type veth)"
        assert_eq "the bridge has no ports" "" "$(lab_exec ip -o link show master cni-e2e0)"
        assert_eq "no lease is left" 0 "$(e2e_leases)"
        assert_eq "no CNI cache is left" "" "$(find "$ROOT/cni" -type f 2>/dev/null | head -n 3)"
        assert_true "the VM's data directory is gone" test ! -e "$ROOT/vms/$id"
        assert_true "the VM's run directory is gone" test ! -e "$ROOT/run/$id"
        assert_true "the name is free" test ! -e "$ROOT/names/$name"
        assert_eq "no VM is listed" "" "$(vm vm list -q)"
}
