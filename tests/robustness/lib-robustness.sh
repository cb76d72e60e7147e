# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Set-up and checks shared by the robustness tests, sourced after tests/lib/common.sh and
# tests/lib/systemd-lab.sh:
#   robustness_setup          build and push the test image, pull it into ROOT, start the lab
#   vm ARG...                 run cocoon inside the lab with BIN_DIR, then the CH double, first on PATH
#   vm_bg ARG...              the same in the background; $! is the nsenter process
#   cocoon_pid_of NSENTER_PID print the host PID of the cocoon process that nsenter started
#   vmm_count ID              number of VMM processes with the API socket of VM ID
#   check_records DESCRIPTION every vms/*/vm.json and images/*/*.json parses with jq
#   check_no_leaks DESCRIPTION no temp file, stray run dir, name or cocoon unit without a VM
#   elapsed START             seconds since EPOCHREALTIME was START, with 3 decimals
# COCOON_ROBUSTNESS_FULL=1 selects the full run of each test; FULL is 1 then, else 0.

FULL=${COCOON_ROBUSTNESS_FULL:-0}
[[ $FULL == 1 ]] || FULL=0

robustness_require() {
        [[ -n ${COCOON:-} && -x ${COCOON:-} ]] || test_skip "COCOON is not set to an executable"
        [[ -x ${CH_DOUBLE_DIR:-}/cloud-hypervisor ]] || test_skip "CH_DOUBLE_DIR has no cloud-hypervisor"
        test_require_root
        test_require_tools docker-registry skopeo curl jq busybox cpio gzip modprobe mkfs.ext4 pgrep
        lab_require
}

# Build the test image, serve it from a registry on 127.0.0.1, pull it, and start the lab.
# Sets IMAGE (the image reference) and BIN_DIR (a directory that tests fill with wrappers and
# that comes first on PATH inside the lab).
robustness_setup() {
        local image_dir build_output

        image_dir=${COCOON_TEST_IMAGE_DIR:-$TEST_DIR/image}
        build_output=$("$HERE/../image/build-test-image.sh" "$image_dir" 2>&1) ||
                test_abort "build-test-image.sh failed: $build_output"
        registry_start >/dev/null || test_abort "registry did not start"
        registry_push "$image_dir/oci" latest cocoon-test/vm || test_abort "push failed"
        IMAGE=$REGISTRY/cocoon-test/vm:latest
        cocoon_run image pull -q "$IMAGE" >/dev/null || test_abort "image pull failed"

        BIN_DIR=$TEST_DIR/bin
        mkdir -p "$BIN_DIR"

        lab_start || test_abort "the systemd lab did not start"
        cp "$HERE/../../units/cocoon.slice" "$LAB_UNIT_DIR/"
        lab_exec systemctl daemon-reload
}

vm() {
        PATH="$BIN_DIR:$CH_DOUBLE_DIR:$PATH" lab_exec "$COCOON" --root-dir "$ROOT" "$@"
}

# Like vm, but meant for "&": the background subshell becomes nsenter, so $! is its PID, and the
# cocoon process is its only child (nsenter forks to enter the PID namespace).
vm_bg() {
        PATH="$BIN_DIR:$CH_DOUBLE_DIR:$PATH" exec nsenter --target "$LAB_PID1" --mount --pid --uts --cgroup \
                --wd="$PWD" -- env -u DBUS_SYSTEM_BUS_ADDRESS "$COCOON" --root-dir "$ROOT" "$@"
}

# Wait up to 2 s for the child of nsenter PID $1 and print its host PID.
cocoon_pid_of() {
        local parent=$1 children

        for _ in $(seq 400); do
                children=$(cat "/proc/$parent/task/$parent/children" 2>/dev/null) || return 1
                children=${children%% *}
                if [[ -n $children ]]; then
                        echo "$children"
                        return 0
                fi
                sleep 0.005
        done
        return 1
}

vmm_count() {
        lab_exec pgrep -c -f "api-socket path=.*/$1/api.sock" || true
}

unit_state() {
        lab_exec systemctl show -p ActiveState --value "cocoon-vm@$1.service"
}

vm_field() {
        vm vm inspect "$1" | jq -r "$2"
}

elapsed() {
        awk -v now="$EPOCHREALTIME" -v start="$1" 'BEGIN { printf "%.3f", now - start }'
}

# Print each record under ROOT that jq cannot parse, with jq's message.
bad_records() {
        local f

        while IFS= read -r -d '' f; do
                jq -e . "$f" >/dev/null 2>&1 || echo "${f#"$ROOT"/}: $(jq . "$f" 2>&1 >/dev/null | head -n1)"
        done < <(find "$ROOT/vms" "$ROOT/images" -name '*.json' -print0 2>/dev/null)
}

check_records() {
        local bad

        bad=$(bad_records)
        if [[ -z $bad ]]; then
                test_ok "$1"
        else
                test_fail "$1" "$bad"
        fi
}

# Print what no operation should leave behind once every command has ended: temp files of atomic
# writes, work directories, VM directories without a record, runtime directories and name
# reservations of no VM, and cocoon units of no VM.
leftovers() {
        local ids=() id dir link unit

        for dir in "$ROOT"/vms/*/; do
                [[ -d $dir ]] || continue
                id=$(basename "$dir")
                if [[ -f $dir/vm.json ]]; then
                        ids+=("$id")
                else
                        echo "VM directory without a record: vms/$id ($(find "$dir" -mindepth 1 -printf '%P ' 2>/dev/null))"
                fi
        done
        find "$ROOT" -path "$ROOT/locks" -prune -o \( -name '*.tmp*' -o -name '.#*' \) -print 2>/dev/null |
                sed "s|^$ROOT/|temp file: |"
        find "$ROOT/tmp" -mindepth 1 -maxdepth 1 2>/dev/null | sed "s|^$ROOT/|work directory: |"
        for dir in "$ROOT"/run/*/; do
                [[ -d $dir ]] || continue
                id=$(basename "$dir")
                [[ " ${ids[*]} " == *" $id "* ]] || echo "runtime directory of no VM: run/$id"
        done
        for link in "$ROOT"/names/*; do
                [[ -L $link ]] || continue
                id=$(basename "$(readlink "$link")")
                [[ " ${ids[*]} " == *" $id "* ]] || echo "name of no VM: names/$(basename "$link") -> $id"
        done
        while read -r unit; do
                [[ -n $unit ]] || continue
                unit=${unit#cocoon-vm@}
                unit=${unit%.service}
                [[ -L $ROOT/names/$unit ]] || echo "unit of no VM: cocoon-vm@$unit.service"
        done < <(lab_exec systemctl list-units --all --no-legend --plain 'cocoon-vm@*' 2>/dev/null | awk '{print $1}')
}

check_no_leaks() {
        local found

        found=$(leftovers)
        if [[ -z $found ]]; then
                test_ok "$1"
        else
                test_fail "$1" "$found"
        fi
}
