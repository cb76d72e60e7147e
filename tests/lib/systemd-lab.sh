# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A real systemd system manager for integration tests: systemd runs as PID 1 of new pid, mount,
# uts and cgroup namespaces (and a network namespace with LAB_NETNS=1), in container mode, with
# journald and dbus-daemon, a private /run and a volatile journal. Source this file after
# tests/lib/common.sh, and call lab_start after test_init: lab_start registers lab_stop with
# test_on_exit, so the EXIT trap of test_init stops the lab however the test ends. A shell runs
# one lab at a time, and test processes running in parallel each get their own state dir and
# cgroup. Call lab_start in the test's own shell, not in $(...) or a pipeline: the lab is killed
# when the shell process that started it exits, and the variables must reach the test. Needs root, util-linux (unshare, nsenter, setpriv), systemd and dbus-daemon. Tested
# with systemd 252 and util-linux 2.38.
#
#   lab_require               skip the test (exit 77) without root, systemd or a needed tool
#   lab_start                 start the lab, return once SystemState is running or degraded
#   lab_stop                  stop it and remove everything it created (idempotent)
#   lab_exec CMD [ARG...]     run CMD inside the lab's namespaces
#   lab_busctl ARG...         busctl --system from the host, on the lab's bus
#   lab_unit_property UNIT PROPERTY          print one property, as "systemctl show -P" does
#   lab_wait_unit_property UNIT PROPERTY VALUE [SECONDS]   poll until it has VALUE (default 10 s)
#   lab_host_pid PID          print the host PID of the lab's PID
#
# Variables set by lab_start:
#   LAB_STATE_DIR     host directory holding everything of this lab, removed by lab_stop
#   LAB_UNIT_DIR      directory for the test's own unit files (first in the manager's unit path),
#                     picked up by "lab_exec systemctl daemon-reload"
#   LAB_RUN_DIR       host path of the lab's /run
#   LAB_BUS_ADDRESS   address of the lab's system bus, usable from the host as
#                     DBUS_SYSTEM_BUS_ADDRESS (exported)
#   LAB_JOURNAL_DIR   host path of the lab's journal, for "journalctl -D" (exported)
#   LAB_PID1          host PID of the lab's PID 1, the systemd manager (exported)
#   LAB_CGROUP        host cgroup2 directory of the lab
#   LAB_START_SECONDS, LAB_STOP_SECONDS      how long lab_start and lab_stop took
# Input variables: LAB_NETNS=1 gives the lab a network namespace with only lo, so that bridges,
# taps, registries and guests of the test exist only inside it. LAB_START_TIMEOUT (seconds,
# default 30) bounds lab_start. LAB_LOG_LEVEL sets the manager's log level (default info).
# LAB_KEEP=1 makes lab_stop leave LAB_STATE_DIR (manager.log, the journal) for debugging.
#
# Inside or from the host?
# Run cocoon, systemctl, systemd-run and journalctl through lab_exec. There sd_bus_open_system(),
# sd_journal_open(), "journalctl -u" and the /run paths behave as on a host booted with systemd,
# and PIDs such as MainPID are in the PID namespace that the manager reports them in. From the
# host, systemctl and systemd-run do not work, because they check for /run/systemd/system, which
# exists only in the lab's /run, and plain journalctl reads the host's journal. The host can
# still use plain sd-bus clients with DBUS_SYSTEM_BUS_ADDRESS=$LAB_BUS_ADDRESS (busctl,
# lab_busctl), and read the journal with "journalctl -D $LAB_JOURNAL_DIR" or
# sd_journal_open_directory(). PIDs read that way are lab PIDs (map them with lab_host_pid). The
# manager's own socket /run/systemd/private rejects clients from outside the lab's PID namespace.
# Without LAB_NETNS=1 the lab shares the host's network namespace.
#
# Files shared with the host: the lab's mount namespace is a private copy of the host's taken by
# lab_start. Every path outside the mounts listed below is the same file on the host and in the
# lab, so a test's TEST_DIR (under TMPDIR, default /tmp) and cocoon's --root-dir below it are
# reachable at the same path in both, whether created before or after lab_start. Mounts made
# after lab_start do not propagate in either direction, so mounts made by cocoon inside the lab
# stay there. Paths that differ inside the lab: /run (LAB_RUN_DIR on the host), /var/log/journal
# (an empty tmpfs), /etc/systemd/system (an empty tmpfs, so "systemctl enable" cannot change the
# host), /sys (a fresh read-only sysfs with a cgroup2 mount rooted at LAB_CGROUP/manager), /proc (the
# lab's PIDs), /proc/sys (read-only, except /proc/sys/net with LAB_NETNS=1) and /dev/console.
# /dev is the host's, so /dev/kvm, /dev/net/tun and loop devices are usable.

LAB_STATE_DIR=
LAB_UNIT_DIR=
LAB_RUN_DIR=
LAB_BUS_ADDRESS=
LAB_JOURNAL_DIR=
LAB_PID1=
LAB_CGROUP=
LAB_START_SECONDS=
LAB_STOP_SECONDS=
LAB_LAUNCHER_PID=
LAB_LAUNCHER_START_TIME=
LAB_PID1_START_TIME=
LAB_STOP_REGISTERED=

# The UNIX socket path limit (sun_path) is 108 bytes including the terminating NUL.
LAB_SOCKET_PATH_MAX=107

lab_log() {
        printf '# %s\n' "$*"
}

# Print the start time of PID in clock ticks since boot (field 22 of /proc/PID/stat). It
# distinguishes a process from a later one that reuses its PID.
lab_process_start_time() {
        local stat fields

        read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
        # The command name in field 2 may contain spaces and parentheses, so split after it.
        read -ra fields <<<"${stat##*) }"
        echo "${fields[19]}"
}

# Succeed when PID is still the process recorded with START_TIME and has not exited.
lab_process_is() {
        local pid=$1 start_time=$2 stat

        [[ -n $pid && -n $start_time ]] || return 1
        read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
        stat=${stat##*) }
        [[ ${stat%% *} != Z ]] || return 1
        [[ $(lab_process_start_time "$pid" 2>/dev/null) == "$start_time" ]]
}

lab_elapsed() {
        awk -v start="$1" -v end="$EPOCHREALTIME" 'BEGIN { printf "%.2f", end - start }'
}

lab_find_binary() {
        local path

        for path in "$@"; do
                if [[ -x $path ]]; then
                        echo "$path"
                        return 0
                fi
        done
        return 1
}

# Print the cgroup2 mount point of the host: /sys/fs/cgroup/unified on hybrid hosts.
lab_cgroup2_mount() {
        local mount

        for mount in /sys/fs/cgroup /sys/fs/cgroup/unified; do
                if [[ $(stat -f -c %T "$mount" 2>/dev/null) == cgroup2fs ]]; then
                        echo "$mount"
                        return 0
                fi
        done
        return 1
}

# Skip the test (exit 77) when the lab cannot run on this host.
lab_require() {
        local tool

        [[ $(id -u) -eq 0 ]] || test_skip "the systemd lab needs root"
        for tool in unshare nsenter setpriv busctl systemctl dbus-daemon mount ip; do
                command -v "$tool" >/dev/null || test_skip "the systemd lab needs $tool"
        done
        lab_find_binary /usr/lib/systemd/systemd /lib/systemd/systemd >/dev/null ||
                test_skip "the systemd lab needs systemd, and /usr/lib/systemd/systemd is missing"
        lab_cgroup2_mount >/dev/null || test_skip "the systemd lab needs a cgroup2 mount"
}

# Write the lab's only unit directory besides LAB_UNIT_DIR. The targets that
# DefaultDependencies=yes of services pulls in exist but are empty, so that nothing of the
# host's units is ever loaded.
lab_write_units() {
        local dir=$1 libexec=$2 target

        mkdir -p "$dir"
        cat >"$dir/cocoon-lab.target" <<'EOF'
[Unit]
Description=Cocoon test lab
Requires=systemd-journald.socket dbus.socket
Wants=systemd-journald.service dbus.service
After=systemd-journald.socket dbus.socket systemd-journald.service
AllowIsolate=yes
EOF
        for target in sysinit basic sockets timers paths slices local-fs local-fs-pre swap network \
                network-online; do
                printf '[Unit]\nDescription=Lab %s target\nDefaultDependencies=no\n' "$target" \
                        >"$dir/$target.target"
        done
        printf '[Unit]\nDescription=System slice\nDefaultDependencies=no\nBefore=slices.target\n' \
                >"$dir/system.slice"

        # The stop path of "systemctl exit": every unit conflicts with shutdown.target, and
        # systemd-exit.service makes the manager exit once all of them are stopped.
        for target in shutdown umount final; do
                printf '[Unit]\nDescription=Lab %s target\nDefaultDependencies=no\n' "$target" \
                        >"$dir/$target.target"
        done
        cat >"$dir/exit.target" <<'EOF'
[Unit]
Description=Lab exit
DefaultDependencies=no
Requires=systemd-exit.service
After=systemd-exit.service
AllowIsolate=yes
EOF
        cat >"$dir/systemd-exit.service" <<'EOF'
[Unit]
Description=Lab manager exit
DefaultDependencies=no
Requires=shutdown.target umount.target final.target
After=shutdown.target umount.target final.target
SuccessAction=exit-force
EOF

        # journald without the /dev/log and audit sockets of the stock unit: /dev is the
        # host's, and Symlinks=/dev/log would replace the host's /dev/log. journald logs about
        # itself to /dev/kmsg by default, the host's kernel log, so its console is a file.
        cat >"$dir/systemd-journald.socket" <<'EOF'
[Unit]
Description=Lab journal sockets
DefaultDependencies=no
Before=sockets.target
IgnoreOnIsolate=yes

[Socket]
ListenStream=/run/systemd/journal/stdout
ListenDatagram=/run/systemd/journal/socket
SocketMode=0666
PassCredentials=yes
PassSecurity=yes
ReceiveBuffer=8M
Timestamping=us
Service=systemd-journald.service
EOF
        cat >"$dir/systemd-journald.service" <<EOF
[Unit]
Description=Lab journal service
DefaultDependencies=no
Requires=systemd-journald.socket
After=systemd-journald.socket
Before=sysinit.target
IgnoreOnIsolate=yes

[Service]
Type=notify
ExecStart=$libexec/systemd-journald
Sockets=systemd-journald.socket
Environment=SYSTEMD_LOG_TARGET=console
StandardOutput=append:$LAB_STATE_DIR/console
Restart=always
RestartSec=0
FileDescriptorStoreMax=4224
RuntimeDirectory=systemd/journal
RuntimeDirectoryPreserve=yes
EOF

        # dbus-daemon logs to stderr, which goes to the journal, because its syslog output
        # would go to the host's /dev/log.
        cat >"$dir/dbus.socket" <<'EOF'
[Unit]
Description=Lab system bus socket

[Socket]
ListenStream=/run/dbus/system_bus_socket
EOF
        cat >"$dir/dbus.service" <<EOF
[Unit]
Description=Lab system bus
Requires=dbus.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart=$(command -v dbus-daemon) --system --address=systemd: --nofork --nopidfile \\
        --systemd-activation --nosyslog
EOF
}

lab_write_config() {
        local run=$1

        mkdir -p "$run/systemd/journald.conf.d" "$run/systemd/system.conf.d"
        cat >"$run/systemd/journald.conf.d/cocoon-lab.conf" <<'EOF'
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitBurst=0
EOF
        cat >"$run/systemd/system.conf.d/cocoon-lab.conf" <<'EOF'
[Manager]
ShowStatus=no
DefaultTimeoutStartSec=30s
DefaultTimeoutStopSec=10s
DefaultStandardOutput=journal
EOF
}

# Write the script that runs as PID 1 of the new namespaces. Stage "cgroup" moves itself into
# LAB_CGROUP/manager and enters a new cgroup namespace rooted there. The unshare process stays in
# LAB_CGROUP/launcher, because systemd can enable controllers for its children only in a cgroup
# without other processes. Stage "mounts" builds the lab's view of the file system and starts
# systemd.
lab_write_init() {
        local init=$1 systemd=$2

        cat >"$init" <<EOF
#!/bin/sh
set -eu
if [ "\$1" = cgroup ]; then
        echo 0 >"$LAB_CGROUP/manager/cgroup.procs"
        exec unshare --cgroup /bin/sh "\$0" mounts
fi

# mount(8) would otherwise create /run/mount/utab on the host.
export LIBMOUNT_UTAB="$LAB_STATE_DIR/utab"

if [ "${LAB_NETNS:-0}" = 1 ]; then
        ip link set lo up
fi

# A new sysfs shows the lab's network devices, and its cgroup2 mount is rooted at the lab's
# cgroup. Both are read-only or namespaced, so the manager cannot change the host's. The kernel
# rejects a second mount of the same sysfs on /sys, so the host's copy goes first.
umount -R /sys
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup

# systemd raises fs.file-max and fs.nr_open at start-up, so /proc/sys stays read-only. In a
# network namespace of its own, /proc/sys/net belongs to the lab, and CNI plugins write to it.
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
if [ "${LAB_NETNS:-0}" = 1 ]; then
        mount --bind /proc/sys/net /proc/sys/net
        mount -o remount,bind,rw /proc/sys/net
fi
if [ -e /proc/sysrq-trigger ]; then
        mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
        mount -o remount,bind,ro /proc/sysrq-trigger
fi

mount --bind "$LAB_RUN_DIR" /run
if [ -d /var/log/journal ]; then
        mount -t tmpfs -o mode=2755,size=16m tmpfs /var/log/journal
fi
if [ -d /etc/systemd/system ]; then
        mount -t tmpfs -o mode=755,size=1m tmpfs /etc/systemd/system
fi
if [ -e /dev/console ]; then
        mount --bind "$LAB_STATE_DIR/console" /dev/console
fi

# Until journald runs, the manager logs to the console, which is a file in LAB_STATE_DIR.
# A target of "kmsg" would write into the host's kernel log.
exec "$systemd" --system --unit=cocoon-lab.target --show-status=no --log-target=journal \\
        --log-color=no --log-level="${LAB_LOG_LEVEL:-info}"
EOF
}

# Print the host PID of the first child of the unshare process: the lab's PID 1.
lab_find_pid1() {
        local children

        children=$(cat "/proc/$LAB_LAUNCHER_PID/task/$LAB_LAUNCHER_PID/children" 2>/dev/null) || return 1
        children=${children%% *}
        [[ -n $children ]] || return 1
        echo "$children"
}

lab_system_state() {
        DBUS_SYSTEM_BUS_ADDRESS=$LAB_BUS_ADDRESS busctl --system --timeout=2 get-property \
                org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
                SystemState 2>/dev/null
}

lab_show_log() {
        lab_log "manager output:"
        tail -n 40 "$LAB_STATE_DIR/manager.log" 2>/dev/null | sed 's/^/#   /'
        if [[ -d $LAB_JOURNAL_DIR ]]; then
                lab_log "journal:"
                journalctl -D "$LAB_JOURNAL_DIR" --no-pager -o short-monotonic 2>/dev/null | tail -n 40 |
                        sed 's/^/#   /'
        fi
}

lab_start_failed() {
        lab_log "lab_start: $*"
        lab_show_log
        lab_stop
        return 1
}

lab_start() {
        local parent systemd libexec cgroup2 start deadline state socket controller netns_flag=()

        if [[ -n $LAB_STATE_DIR ]]; then
                lab_log "lab_start: a lab is already running in $LAB_STATE_DIR"
                return 1
        fi
        start=$EPOCHREALTIME
        systemd=$(lab_find_binary /usr/lib/systemd/systemd /lib/systemd/systemd) ||
                { lab_log "lab_start: systemd not found"; return 1; }
        libexec=${systemd%/*}
        cgroup2=$(lab_cgroup2_mount) || { lab_log "lab_start: no cgroup2 mount found"; return 1; }

        # The lab's /run is bind-mounted over /run inside, so it must not be below /run itself.
        parent=${TMPDIR:-/tmp}
        [[ $parent != /run && $parent != /run/* ]] || parent=/tmp
        LAB_STATE_DIR=$(mktemp -d "$parent/cocoon-lab.XXXXXX") ||
                { LAB_STATE_DIR=; lab_log "lab_start: mktemp failed in $parent"; return 1; }

        # Register the stop before anything exists, so that a failure half-way is cleaned up.
        if [[ -z $LAB_STOP_REGISTERED ]]; then
                # Without test_init, the trap of common.sh is not set yet.
                if declare -F test_on_exit >/dev/null; then
                        test_on_exit lab_stop
                fi
                if [[ -z ${TEST_DIR:-} ]]; then
                        trap lab_stop EXIT
                fi
                LAB_STOP_REGISTERED=1
        fi

        LAB_UNIT_DIR=$LAB_STATE_DIR/units
        LAB_RUN_DIR=$LAB_STATE_DIR/run
        LAB_BUS_ADDRESS=unix:path=$LAB_RUN_DIR/dbus/system_bus_socket
        LAB_JOURNAL_DIR=$LAB_RUN_DIR/log/journal
        LAB_CGROUP=$cgroup2/${LAB_STATE_DIR##*/}
        export LAB_BUS_ADDRESS LAB_JOURNAL_DIR LAB_PID1
        # The longest socket path in the lab's /run, as a host path.
        socket=$LAB_RUN_DIR/dbus/system_bus_socket
        if ((${#socket} > LAB_SOCKET_PATH_MAX)); then
                lab_start_failed "$LAB_RUN_DIR is too long for UNIX socket paths, set a shorter TMPDIR"
                return 1
        fi

        mkdir -p "$LAB_UNIT_DIR" "$LAB_RUN_DIR" "$LAB_STATE_DIR/empty"
        chmod 755 "$LAB_STATE_DIR" "$LAB_RUN_DIR"
        : >"$LAB_STATE_DIR/console"
        lab_write_units "$LAB_STATE_DIR/base-units" "$libexec"
        lab_write_config "$LAB_RUN_DIR"
        lab_write_init "$LAB_STATE_DIR/init.sh" "$systemd"
        mkdir "$LAB_CGROUP" "$LAB_CGROUP/launcher" "$LAB_CGROUP/manager" ||
                { lab_start_failed "cannot create cgroup $LAB_CGROUP"; return 1; }
        # Hand every controller that the host gives LAB_CGROUP on to the manager. This works
        # because LAB_CGROUP itself never has processes.
        for controller in $(<"$LAB_CGROUP/cgroup.controllers"); do
                echo "+$controller" >"$LAB_CGROUP/cgroup.subtree_control" 2>/dev/null || true
        done

        [[ ${LAB_NETNS:-0} != 1 ]] || netns_flag=(--net)
        # lab_exec must enter the lab's network namespace for the lab's whole life, whatever
        # LAB_NETNS says later: "LAB_NETNS=1 lab_start" sets it for lab_start alone.
        LAB_OWN_NETNS=${LAB_NETNS:-0}
        # The launcher puts itself into the lab's cgroup and becomes the unshare process. With
        # --pdeathsig, the kernel kills unshare when this shell dies without running lab_stop,
        # and --kill-child then kills the lab's PID 1, which ends the whole PID namespace.
        # SYSTEMD_UNIT_PATH without a trailing ":" replaces the manager's unit path, so that no
        # unit of the host is loaded. No generators run.
        # shellcheck disable=SC2016 # expanded by the launcher shell
        sh -c 'echo $$ >"$1/launcher/cgroup.procs" && shift && exec "$@"' sh "$LAB_CGROUP" \
                setpriv --pdeathsig KILL \
                unshare --pid --fork --kill-child --mount --uts "${netns_flag[@]}" --mount-proc \
                --propagation private \
                env -i container=cocoon-lab \
                PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                SYSTEMD_UNIT_PATH="$LAB_UNIT_DIR:$LAB_STATE_DIR/base-units" \
                SYSTEMD_GENERATOR_PATH="$LAB_STATE_DIR/empty" \
                SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$LAB_STATE_DIR/empty" \
                /bin/sh "$LAB_STATE_DIR/init.sh" cgroup \
                </dev/null >"$LAB_STATE_DIR/manager.log" 2>&1 &
        LAB_LAUNCHER_PID=$!
        # The shell still reaps the launcher, but does not report "Killed" when lab_stop kills it.
        disown "$LAB_LAUNCHER_PID"
        LAB_LAUNCHER_START_TIME=$(lab_process_start_time "$LAB_LAUNCHER_PID") ||
                { lab_start_failed "the launcher exited at once"; return 1; }

        deadline=$(awk -v now="$EPOCHREALTIME" -v timeout="${LAB_START_TIMEOUT:-30}" \
                'BEGIN { printf "%.3f", now + timeout }')
        while :; do
                if ! lab_process_is "$LAB_LAUNCHER_PID" "$LAB_LAUNCHER_START_TIME"; then
                        lab_start_failed "the manager exited during start-up"
                        return 1
                fi
                if [[ -z $LAB_PID1 ]] && LAB_PID1=$(lab_find_pid1); then
                        LAB_PID1_START_TIME=$(lab_process_start_time "$LAB_PID1") || LAB_PID1=
                fi
                if [[ -n $LAB_PID1 && -S $LAB_RUN_DIR/dbus/system_bus_socket ]]; then
                        state=$(lab_system_state) || state=
                        [[ $state != *'"running"'* && $state != *'"degraded"'* ]] || break
                fi
                if awk -v now="$EPOCHREALTIME" -v end="$deadline" 'BEGIN { exit !(now > end) }'; then
                        lab_start_failed "timed out after ${LAB_START_TIMEOUT:-30} s," \
                                "SystemState ${state:-unknown}"
                        return 1
                fi
                sleep 0.02
        done

        LAB_START_SECONDS=$(lab_elapsed "$start")
        lab_log "systemd lab started in $LAB_START_SECONDS s: PID 1 is host PID $LAB_PID1," \
                "state dir $LAB_STATE_DIR${LAB_NETNS:+, LAB_NETNS=$LAB_NETNS}"
        if [[ $state == *degraded* ]]; then
                lab_log "the lab is degraded, failed units:"
                lab_exec systemctl --no-pager --failed | sed 's/^/#   /'
        fi
}

# Signal PID with SIGNAL only while it is still the process recorded with START_TIME.
lab_kill() {
        local signal=$1 pid=$2 start_time=$3

        lab_process_is "$pid" "$start_time" || return 0
        kill "-$signal" "$pid" 2>/dev/null || true
}

# Wait up to SECONDS for the launcher to exit. It reaps the lab's PID 1, so once it is gone the
# whole PID namespace is gone.
lab_wait_launcher() {
        local tries=$(($1 * 50))

        while ((tries-- > 0)); do
                lab_process_is "$LAB_LAUNCHER_PID" "$LAB_LAUNCHER_START_TIME" || return 0
                sleep 0.02
        done
        return 1
}

lab_remove_cgroup() {
        local tries=50 dir

        [[ -n $LAB_CGROUP && -d $LAB_CGROUP ]] || return 0
        # Cgroups become removable only after the kernel has released their last process.
        while ((tries-- > 0)); do
                while read -r dir; do
                        rmdir "$dir" 2>/dev/null || true
                done < <(find "$LAB_CGROUP" -depth -type d 2>/dev/null)
                [[ -d $LAB_CGROUP ]] || return 0
                sleep 0.02
        done
        lab_log "lab_stop: cannot remove cgroup $LAB_CGROUP"
        return 1
}

lab_stop() {
        local start=$EPOCHREALTIME status=0

        [[ -n $LAB_STATE_DIR ]] || return 0
        if lab_process_is "$LAB_LAUNCHER_PID" "$LAB_LAUNCHER_START_TIME"; then
                # Stop every unit in order, so that ExecStop= and cocoon's own clean-up run, then
                # exit. Manager.Exit skips the unit stops. A manager that cannot be asked, for
                # example during start-up, gets SIGKILL, and the kernel then kills every process
                # of its PID namespace.
                if lab_exec systemctl --no-block exit >/dev/null 2>&1 ||
                        lab_busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
                                org.freedesktop.systemd1.Manager Exit >/dev/null 2>&1; then
                        lab_wait_launcher 20 ||
                                lab_log "lab_stop: the manager did not exit within 20 s, killing it"
                fi
                if [[ -n $LAB_PID1 ]] && lab_process_is "$LAB_LAUNCHER_PID" "$LAB_LAUNCHER_START_TIME"; then
                        lab_kill KILL "$LAB_PID1" "$LAB_PID1_START_TIME"
                        lab_wait_launcher 5 || true
                fi
                # Before the lab's PID 1 is known, unshare --kill-child passes SIGKILL on to it.
                if lab_process_is "$LAB_LAUNCHER_PID" "$LAB_LAUNCHER_START_TIME"; then
                        lab_kill KILL "$LAB_LAUNCHER_PID" "$LAB_LAUNCHER_START_TIME"
                        lab_wait_launcher 5 || status=1
                fi
        fi

        lab_remove_cgroup || status=1
        if [[ -n ${LAB_KEEP:-} ]]; then
                lab_log "LAB_KEEP is set, leaving $LAB_STATE_DIR"
        else
                rm -rf "$LAB_STATE_DIR"
        fi
        LAB_STOP_SECONDS=$(lab_elapsed "$start")
        lab_log "systemd lab stopped in $LAB_STOP_SECONDS s"
        LAB_STATE_DIR=
        LAB_UNIT_DIR=
        LAB_RUN_DIR=
        LAB_BUS_ADDRESS=
        LAB_JOURNAL_DIR=
        LAB_PID1=
        LAB_PID1_START_TIME=
        LAB_CGROUP=
        LAB_LAUNCHER_PID=
        LAB_LAUNCHER_START_TIME=
        return "$status"
}

# Run CMD inside the lab: in its mount, PID, UTS and cgroup namespaces, and its network
# namespace with LAB_NETNS=1. CMD must be a program, not a shell function. The working directory
# stays the same; DBUS_SYSTEM_BUS_ADDRESS is removed so that sd-bus uses the lab's default path.
# NOTE: the command starts in the caller's cgroup, outside the lab's cgroup namespace root.
# "systemd-run --scope" still moves it into a lab unit where the host's cgroup2 mount lacks
# nsdelegate (tested), but the kernel may reject that move on hosts that mount with nsdelegate.
lab_exec() {
        local flags=(--mount --pid --uts --cgroup) dir=$PWD

        if [[ -z $LAB_PID1 ]]; then
                echo "lab_exec: no lab is running" >&2
                return 1
        fi
        [[ ${LAB_OWN_NETNS:-0} != 1 ]] || flags+=(--net)
        [[ $dir != /run && $dir != /run/* ]] || dir=/
        nsenter --target "$LAB_PID1" "${flags[@]}" --wd="$dir" -- \
                env -u DBUS_SYSTEM_BUS_ADDRESS "$@"
}

lab_busctl() {
        DBUS_SYSTEM_BUS_ADDRESS=$LAB_BUS_ADDRESS busctl --system "$@"
}

lab_unit_property() {
        lab_exec systemctl show --property="$2" --value "$1"
}

# lab_wait_unit_property UNIT PROPERTY VALUE [SECONDS]: poll every 50 ms. Prints the last value
# read and fails when it never became VALUE.
lab_wait_unit_property() {
        local unit=$1 property=$2 expected=$3 tries=$((${4:-10} * 20)) value=

        while ((tries-- > 0)); do
                value=$(lab_unit_property "$unit" "$property" 2>/dev/null) || value=
                [[ $value != "$expected" ]] || break
                sleep 0.05
        done
        echo "$value"
        [[ $value == "$expected" ]]
}

# Print the host PID of the process with PID LAB_PID in the lab's PID namespace.
lab_host_pid() {
        local lab_pid=$1 namespace status pid fields

        namespace=$(readlink "/proc/$LAB_PID1/ns/pid") || return 1
        for status in /proc/[0-9]*/status; do
                pid=${status#/proc/}
                pid=${pid%/status}
                [[ $(readlink "/proc/$pid/ns/pid" 2>/dev/null) == "$namespace" ]] || continue
                fields=$(grep '^NSpid:' "$status" 2>/dev/null) || continue
                if [[ ${fields##*[[:space:]]} == "$lab_pid" ]]; then
                        echo "$pid"
                        return 0
                fi
        done
        return 1
}
