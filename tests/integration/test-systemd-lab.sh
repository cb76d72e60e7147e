#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Self-test of tests/lib/systemd-lab.sh, the real systemd manager that the integration tests run
# cocoon against. It checks transient cocoon-vm@ units with their state and journal, unit files
# installed by the test, and an sd-bus and sd-journal client. It also starts a second lab beside
# the first and a lab with its own network namespace, and checks that the host is left as it was.
#
# Environment: LAB_PROBE (optional) is the lab-probe binary from tests/lab/, otherwise the test
# builds it with cc; TEST_KEEP=1 keeps the temp dir and LAB_KEEP=1 the lab's state dir.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/systemd-lab.sh
. "$HERE/../lib/systemd-lab.sh"

# ---------------------------------------------------------------------------------------------
# Helpers

# Print what a lab could change on the host. Other labs, of tests running at the same time, are
# left out: their state dirs and cgroups are named cocoon-lab.*, and this test checks its own
# by path.
host_snapshot() {
        local cgroup2

        cgroup2=$(lab_cgroup2_mount)
        echo "hostname $(hostname)"
        echo "machine-id $(cat /etc/machine-id 2>/dev/null)"
        sysctl -n fs.file-max fs.nr_open net.ipv4.ip_forward 2>/dev/null | sed 's/^/sysctl /'
        find /run /dev /var/log/journal /etc/systemd -xdev \( -path /dev/pts -prune \) -o \
                -printf '%p %y %m %s\n' 2>/dev/null | grep -v 'cocoon-lab\.' | sort
        find "$cgroup2" /sys/fs/cgroup -xdev -type d 2>/dev/null | grep -v 'cocoon-lab\.' | sort
        ip -o link show | awk -F': ' '{ print "link " $2 }' | sort
}

# Print the interface names in the output of "ip -o link show" on stdin, one line, sorted.
link_names() {
        awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort | tr '\n' ' ' | sed 's/ $//'
}

# Wait up to 5 s until the journal of UNIT in the lab contains TEXT, then print that journal.
wait_for_journal() {
        local unit=$1 text=$2 output=

        for _ in $(seq 100); do
                output=$(lab_exec journalctl --no-pager -u "$unit" -o cat 2>/dev/null) || output=
                [[ $output != *"$text"* ]] || break
                sleep 0.05
        done
        echo "$output"
}

# Start a second lab and print facts about it as "key=value" lines. This runs as a process of its
# own ("$0 --second-lab"), so that the first lab's variables stay as they are.
second_lab_facts() {
        echo "pid1=$LAB_PID1"
        echo "cgroup=$LAB_CGROUP"
        echo "t2_load_state=$(lab_unit_property cocoon-vm@t2.service LoadState)"
        echo "links=$(lab_exec ip -o link show | link_names)"
        echo "lo=$(lab_exec ip -o link show lo)"
        # Without a network namespace of its own, these would change the host.
        [[ $LAB_NETNS == 1 ]] || return 0
        if lab_exec ip link add cocoon-lab0 type bridge; then
                echo "bridge_inside=$(lab_exec ip -o link show cocoon-lab0 | link_names)"
                echo "bridge_on_host=$(ip -o link show cocoon-lab0 2>/dev/null | link_names)"
                echo "sys_class_net=$(lab_exec ls /sys/class/net | tr '\n' ' ' | sed 's/ $//')"
        fi
        if lab_exec sh -c "echo 1 >/proc/sys/net/ipv4/ip_forward"; then
                echo "net_sysctl_writable=yes"
        else
                echo "net_sysctl_writable=no"
        fi
}

# Print the value of KEY from "key=value" lines in FILE.
fact() {
        sed -n "s/^$2=//p" "$1" | head -n 1
}

# Start a lab, print facts about it to FILE, and die by SIGKILL so that no trap runs.
killed_lab() {
        LAB_STOP_REGISTERED=1
        lab_start >/dev/null || exit 1
        printf 'pid1=%s\nstart_time=%s\ncgroup=%s\nstate_dir=%s\n' "$LAB_PID1" "$LAB_PID1_START_TIME" \
                "$LAB_CGROUP" "$LAB_STATE_DIR" >"$1"
        kill -KILL $$
}

case ${1:-} in
--second-lab)
        LAB_STOP_REGISTERED=1
        trap lab_stop EXIT
        lab_start || exit 1
        second_lab_facts
        exit 0
        ;;
--killed-lab)
        killed_lab "$2"
        ;;
esac

lab_require
test_init

# ---------------------------------------------------------------------------------------------
# Start

before=$(host_snapshot)
# Lines of systemd or journald in the kernel log would come from a lab, as systemd is not the
# host's PID 1. Their count must stay the same.
kernel_log_before=$(dmesg 2>/dev/null | grep -c systemd || true)
host_links=$(ip -o link show | link_names)
ip_forward=$(sysctl -n net.ipv4.ip_forward)

lab_start || test_abort "the lab did not start"
test_ok "lab starts (in $LAB_START_SECONDS s)"
first_state_dir=$LAB_STATE_DIR
first_cgroup=$LAB_CGROUP
first_pid1=$LAB_PID1

assert_eq "host PID of the lab's PID 1 runs systemd" systemd "$(cat "/proc/$LAB_PID1/comm")"
assert_eq "PID 1 inside the lab is systemd" systemd "$(lab_exec cat /proc/1/comm)"
capture lab_exec systemctl is-system-running
assert_eq "manager inside the lab is running" running "$CAPTURE_STDOUT"
assert_eq "journald is active" active "$(lab_unit_property systemd-journald.service ActiveState)"
assert_eq "dbus-daemon is active" active "$(lab_unit_property dbus.service ActiveState)"
capture lab_busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
        org.freedesktop.systemd1.Manager Virtualization
assert_eq "host reaches the manager in container mode on LAB_BUS_ADDRESS" 's "container-other"' \
        "$CAPTURE_STDOUT"
assert_true "host has no /run/systemd/system" test ! -e /run/systemd/system
assert_true "lab has /run/systemd/system" lab_exec test -d /run/systemd/system
assert_true "lab's /run is LAB_RUN_DIR" test -d "$LAB_RUN_DIR/systemd/system"
assert_true "TEST_DIR is visible inside the lab" lab_exec test -d "$TEST_DIR"

# ---------------------------------------------------------------------------------------------
# A transient cocoon-vm@ unit

capture lab_exec systemd-run --unit=cocoon-vm@t1.service --property=Type=exec sh -c 'echo hello; sleep 30'
assert_eq "systemd-run cocoon-vm@t1 succeeds" 0 "$CAPTURE_STATUS"
abort_if_failed "the first transient unit did not start"
assert_eq "cocoon-vm@t1 becomes active" active \
        "$(lab_wait_unit_property cocoon-vm@t1.service ActiveState active)"
assert_eq "cocoon-vm@t1 is running" running "$(lab_unit_property cocoon-vm@t1.service SubState)"
assert_eq "cocoon-vm@t1 is in the template's slice" 'system-cocoon\x2dvm.slice' \
        "$(lab_unit_property cocoon-vm@t1.service Slice)"
main_pid=$(lab_unit_property cocoon-vm@t1.service MainPID)
host_pid=$(lab_host_pid "$main_pid") || host_pid=
echo "# MainPID $main_pid in the lab is host PID ${host_pid:-unknown}"
assert_true "MainPID maps to a host PID" test -n "$host_pid"

assert_contains "journalctl -u shows the unit's output" "$(wait_for_journal cocoon-vm@t1 hello)" hello
assert_eq "journalctl -u shows the output line as it was" hello \
        "$(lab_exec journalctl --no-pager -u cocoon-vm@t1 -o cat _PID="$main_pid" | head -n 1)"
capture journalctl --no-pager -D "$LAB_JOURNAL_DIR" -u cocoon-vm@t1.service -o cat
assert_contains "host reads the unit's output with journalctl -D" "$CAPTURE_STDOUT" hello
capture lab_busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
        org.freedesktop.systemd1.Manager GetUnit s cocoon-vm@t1.service
assert_contains "host calls GetUnit through LAB_BUS_ADDRESS" "$CAPTURE_STDOUT" \
        '"/org/freedesktop/systemd1/unit/cocoon_2dvm_40t1_2eservice"'

# ---------------------------------------------------------------------------------------------
# sd_bus_open_system() and sd_journal_open() with default paths, as cocoon calls them

probe=${LAB_PROBE:-}
if [[ -z $probe ]] && command -v cc >/dev/null && pkg-config --exists libsystemd 2>/dev/null; then
        probe=$TEST_DIR/lab-probe
        # shellcheck disable=SC2046 # pkg-config prints several flags
        cc -std=gnu11 -D_GNU_SOURCE -I"$HERE/../../src/basic" -o "$probe" "$HERE/../lab/lab-probe.c" \
                $(pkg-config --cflags --libs libsystemd) || probe=
fi
if [[ -n $probe ]]; then
        capture lab_exec "$probe" cocoon-vm@t1.service hello
        assert_eq "lab-probe succeeds inside the lab" 0 "$CAPTURE_STATUS"
        [[ $CAPTURE_STATUS -eq 0 ]] || echo "# lab-probe: $CAPTURE_STDERR"
        assert_contains "sd-bus GetUnit reads ActiveState" "$CAPTURE_STDOUT" ActiveState=active
        assert_contains "sd-journal finds the unit's output" "$CAPTURE_STDOUT" journal_match=MESSAGE=hello
        capture "$probe" cocoon-vm@t1.service hello
        assert_eq "lab-probe on the host does not reach the lab" 1 "$CAPTURE_STATUS"
else
        test_skip_check "sd-bus and sd-journal client inside the lab" "no LAB_PROBE and no cc"
fi

# ---------------------------------------------------------------------------------------------
# Unit files installed by the test

cat >"$LAB_UNIT_DIR/cocoon.slice" <<'EOF'
[Unit]
Description=Cocoon virtual machines
Before=slices.target

[Slice]
TasksMax=4096
EOF
capture lab_exec systemctl daemon-reload
assert_eq "daemon-reload succeeds" 0 "$CAPTURE_STATUS"
assert_eq "cocoon.slice from LAB_UNIT_DIR loads" loaded "$(lab_unit_property cocoon.slice LoadState)"
assert_eq "cocoon.slice comes from LAB_UNIT_DIR" "$LAB_UNIT_DIR/cocoon.slice" \
        "$(lab_unit_property cocoon.slice FragmentPath)"
assert_eq "cocoon.slice has its description" "Cocoon virtual machines" \
        "$(lab_unit_property cocoon.slice Description)"
assert_eq "cocoon-vm@t1 survives daemon-reload" active \
        "$(lab_unit_property cocoon-vm@t1.service ActiveState)"
capture lab_exec systemd-run --unit=cocoon-vm@t2.service --slice=cocoon.slice sleep 60
assert_eq "systemd-run into cocoon.slice succeeds" 0 "$CAPTURE_STATUS"
lab_wait_unit_property cocoon-vm@t2.service ActiveState active >/dev/null || true
assert_eq "cocoon-vm@t2 runs in cocoon.slice" /cocoon.slice/cocoon-vm@t2.service \
        "$(lab_unit_property cocoon-vm@t2.service ControlGroup)"
assert_true "the lab's cgroup of cocoon-vm@t2 is below LAB_CGROUP" \
        test -d "$LAB_CGROUP/manager/cocoon.slice/cocoon-vm@t2.service"

# ---------------------------------------------------------------------------------------------
# StopUnit and a failing unit

capture lab_exec busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
        org.freedesktop.systemd1.Manager StopUnit ss cocoon-vm@t1.service replace
assert_eq "StopUnit of cocoon-vm@t1 succeeds" 0 "$CAPTURE_STATUS"
assert_eq "cocoon-vm@t1 becomes inactive" inactive \
        "$(lab_wait_unit_property cocoon-vm@t1.service ActiveState inactive)"
assert_eq "stopped cocoon-vm@t1 is garbage-collected" not-found \
        "$(lab_wait_unit_property cocoon-vm@t1.service LoadState not-found)"
for _ in $(seq 100); do
        [[ -n $host_pid && -d /proc/$host_pid ]] || break
        sleep 0.05
done
assert_true "the main process of cocoon-vm@t1 is gone" test ! -d "/proc/$host_pid"

capture lab_exec systemd-run --unit=cocoon-vm@fail.service sh -c 'echo bye; exit 3'
assert_eq "systemd-run cocoon-vm@fail succeeds" 0 "$CAPTURE_STATUS"
assert_eq "cocoon-vm@fail becomes failed" failed \
        "$(lab_wait_unit_property cocoon-vm@fail.service ActiveState failed)"
assert_eq "cocoon-vm@fail has SubState failed" failed "$(lab_unit_property cocoon-vm@fail.service SubState)"
assert_eq "cocoon-vm@fail has Result exit-code" exit-code \
        "$(lab_unit_property cocoon-vm@fail.service Result)"
assert_eq "cocoon-vm@fail has ExecMainStatus 3" 3 \
        "$(lab_unit_property cocoon-vm@fail.service ExecMainStatus)"
assert_contains "journal has the output of cocoon-vm@fail" "$(wait_for_journal cocoon-vm@fail bye)" bye

# ---------------------------------------------------------------------------------------------
# Isolation: /proc/sys and a second lab beside the first

capture lab_exec sh -c "echo $ip_forward >/proc/sys/net/ipv4/ip_forward"
assert_true "/proc/sys/net is read-only in a lab without LAB_NETNS" test "$CAPTURE_STATUS" -ne 0

second=$TEST_DIR/second.facts
if LAB_NETNS=0 bash "$0" --second-lab >"$second"; then
        test_ok "a second lab starts while the first runs"
else
        test_fail "a second lab starts while the first runs" "$(cat "$second")"
fi
sed -n 's/^# /# second lab: /p' "$second"
assert_true "the second lab has its own PID 1" test "$(fact "$second" pid1)" != "$first_pid1"
assert_true "the second lab has its own cgroup" test "$(fact "$second" cgroup)" != "$first_cgroup"
assert_eq "the second lab does not see the first lab's units" not-found "$(fact "$second" t2_load_state)"
assert_true "the second lab's cgroup is removed" test ! -d "$(fact "$second" cgroup)"
assert_eq "the first lab still runs cocoon-vm@t2" active \
        "$(lab_unit_property cocoon-vm@t2.service ActiveState)"

# ---------------------------------------------------------------------------------------------
# LAB_NETNS=1

netns=$TEST_DIR/netns.facts
if LAB_NETNS=1 bash "$0" --second-lab >"$netns"; then
        test_ok "a lab with LAB_NETNS=1 starts"
else
        test_fail "a lab with LAB_NETNS=1 starts" "$(cat "$netns")"
fi
sed -n 's/^# /# netns lab: /p' "$netns"
assert_eq "ip link in the LAB_NETNS lab shows only lo" lo "$(fact "$netns" links)"
assert_contains "lo is up in the LAB_NETNS lab" "$(fact "$netns" lo)" LOWER_UP
assert_eq "/sys/class/net in the LAB_NETNS lab shows the lab's devices" "cocoon-lab0 lo" \
        "$(fact "$netns" sys_class_net)"
assert_eq "a bridge made in the LAB_NETNS lab exists there" cocoon-lab0 "$(fact "$netns" bridge_inside)"
assert_eq "the bridge does not exist on the host" "" "$(fact "$netns" bridge_on_host)"
assert_eq "/proc/sys/net is writable in the LAB_NETNS lab" yes "$(fact "$netns" net_sysctl_writable)"
assert_eq "host net.ipv4.ip_forward is untouched" "$ip_forward" "$(sysctl -n net.ipv4.ip_forward)"
assert_eq "host interfaces are untouched" "$host_links" "$(ip -o link show | link_names)"

# ---------------------------------------------------------------------------------------------
# A lab whose test process is killed with SIGKILL, so that no trap runs

orphan=$TEST_DIR/orphan.facts
# The shell reports "Killed" on stderr.
{ bash "$0" --killed-lab "$orphan" || true; } 2>/dev/null
orphan_pid1=$(fact "$orphan" pid1)
if [[ -n $orphan_pid1 ]]; then
        for _ in $(seq 100); do
                lab_process_is "$orphan_pid1" "$(fact "$orphan" start_time)" || break
                sleep 0.05
        done
        if lab_process_is "$orphan_pid1" "$(fact "$orphan" start_time)"; then
                test_fail "the lab ends when its test process is killed" "PID $orphan_pid1 still runs"
        else
                test_ok "the lab ends when its test process is killed"
        fi
        # Only lab_stop removes the state dir and the cgroup, and it could not run.
        find "$(fact "$orphan" cgroup)" -depth -type d -exec rmdir {} + 2>/dev/null || true
        rm -rf "$(fact "$orphan" state_dir)"
else
        test_fail "a lab starts in a test process that is then killed"
fi

# ---------------------------------------------------------------------------------------------
# Stop

capture lab_stop
echo "$CAPTURE_STDOUT"
assert_eq "lab_stop succeeds" 0 "$CAPTURE_STATUS"
assert_true "the lab's PID 1 is gone" test ! -d "/proc/$first_pid1"
assert_true "the lab's cgroup is removed" test ! -e "$first_cgroup"
assert_true "the lab's state dir is removed" test ! -e "$first_state_dir"
assert_true "lab_stop again does nothing" lab_stop
capture lab_exec true
assert_eq "lab_exec fails without a lab" 1 "$CAPTURE_STATUS"

after=$(host_snapshot)
if [[ $before == "$after" ]]; then
        test_ok "host /run, /dev, cgroups, hostname, journal and links are unchanged"
else
        test_fail "host /run, /dev, cgroups, hostname, journal and links are unchanged" \
                "$(diff <(echo "$before") <(echo "$after") || true)"
fi

assert_eq "no lab wrote to the host's kernel log" "$kernel_log_before" \
        "$(dmesg 2>/dev/null | grep -c systemd || true)"

test_finish
