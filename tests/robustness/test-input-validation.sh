#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Input validation wherever a user string reaches a kernel command line, a unit property, the
# cloud-init YAML or a file name: VM names, VM references, --dns, --root-password, --ssh-key
# files, sizes and counts, --property values and the escape character of "vm console". Each
# rejection is checked with its exact message, and no rejected command changes the store.
#
# The reduced and the full run are the same here. Environment as for
# tests/integration/test-vm-lifecycle.sh; also needs qemu-img and python3 with PyYAML.

set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=../lib/systemd-lab.sh
. "$HERE/../lib/systemd-lab.sh"
# shellcheck source-path=SCRIPTDIR source=lib-robustness.sh
. "$HERE/lib-robustness.sh"

robustness_require
test_require_tools qemu-img python3 ssh-keygen
python3 -c 'import yaml' 2>/dev/null || test_skip "python3 has no yaml module"
test_init
robustness_setup

# assert_usage_error EXPECTED_LINE CMD...: exit status 2, EXPECTED_LINE as the first stderr line.
assert_usage_error() {
        local expected=$1

        shift
        capture "$@"
        if [[ $CAPTURE_STATUS -eq 2 && $(head -n1 <<<"$CAPTURE_STDERR") == "$expected" ]]; then
                test_ok "usage error: $expected"
        else
                test_fail "usage error: $expected" "exit status: $CAPTURE_STATUS (expected 2)" \
                        "stderr: $CAPTURE_STDERR"
        fi
}

CREATE_FAILED="Failed to create a VM from '$IMAGE'"
BEFORE=$(store_snapshot)

# ---------------------------------------------------------------------------------------------
# VM names reach the kernel command line (cocoon.hostname=), the unit name, the cloud-init
# hostname and names/<name>.

NL=$'\n'
assert_usage_error "invalid VM name 'my vm': only letters, digits, '.' and '-' are allowed." \
        vm vm create --nics 0 --name "my vm" "$IMAGE"
assert_usage_error "invalid VM name 'a" vm vm create --nics 0 --name "a${NL}b" "$IMAGE"
assert_eq "a newline in a name is named in the message" "b': only letters, digits, '.' and '-' are allowed." \
        "$(sed -n 2p <<<"$CAPTURE_STDERR")"
assert_usage_error "invalid VM name 'x init=/bin/sh': only letters, digits, '.' and '-' are allowed." \
        vm vm create --nics 0 --name "x init=/bin/sh" "$IMAGE"
assert_usage_error "invalid VM name 'init=/bin/sh': only letters, digits, '.' and '-' are allowed." \
        vm vm create --nics 0 --name "init=/bin/sh" "$IMAGE"
assert_usage_error "invalid VM name 'a/b': only letters, digits, '.' and '-' are allowed." \
        vm vm create --nics 0 --name a/b "$IMAGE"
assert_usage_error "invalid VM name '..': it must start with a letter or a digit." \
        vm vm create --nics 0 --name .. "$IMAGE"
assert_usage_error "invalid VM name '../x': it must start with a letter or a digit." \
        vm vm create --nics 0 --name ../x "$IMAGE"
assert_usage_error "invalid VM name 'a..b': a hostname label may not be empty or start or end with '-'." \
        vm vm create --nics 0 --name a..b "$IMAGE"
assert_usage_error "invalid VM name 'a.': a hostname may not end with '.'." \
        vm vm create --nics 0 --name a. "$IMAGE"
assert_usage_error "invalid VM name 'a-': a hostname label may not be empty or start or end with '-'." \
        vm vm create --nics 0 --name a- "$IMAGE"
assert_usage_error "invalid VM name 'vm-ünï': only letters, digits, '.' and '-' are allowed." \
        vm vm create --nics 0 --name "vm-ünï" "$IMAGE"
assert_usage_error "invalid VM name 'ünï': it must start with a letter or a digit." \
        vm vm create --nics 0 --name "ünï" "$IMAGE"
assert_usage_error "invalid VM name 'a\\b': only letters, digits, '.' and '-' are allowed." \
        vm vm create --nics 0 --name 'a\b' "$IMAGE"
assert_usage_error "invalid VM name 'a%i': only letters, digits, '.' and '-' are allowed." \
        vm vm create --nics 0 --name 'a%i' "$IMAGE"
assert_usage_error "invalid VM name 'a_b': '_' is not allowed in a hostname." \
        vm vm create --nics 0 --name a_b "$IMAGE"
assert_usage_error "VM name is empty." vm vm create --nics 0 --name "" "$IMAGE"
long=$(printf 'a%.0s' $(seq 64))
assert_usage_error "invalid VM name '$long': longer than 63 characters." \
        vm vm create --nics 0 --name "$long" "$IMAGE"
assert_store_unchanged "rejected names leave the store unchanged" "$BEFORE"

# The longest name and a dotted name work end to end, unit name included.
max=$(printf 'b%.0s' $(seq 63))
for name in "$max" web.example-1; do
        capture vm vm create --nics 0 --name "$name" "$IMAGE"
        assert_eq "the name '$name' is accepted" 0 "$CAPTURE_STATUS"
        capture vm vm start "$name"
        assert_eq "the VM '$name' starts" 0 "$CAPTURE_STATUS"
        assert_eq "its unit is cocoon-vm@$name.service" active "$(unit_state "$name")"
        assert_contains "its kernel command line carries the name" "$(vm_field "$name" .boot_config.cmdline)" \
                "cocoon.hostname=$name clocksource"
        vm vm rm --force "$name" >/dev/null
done

# References to VMs are looked up, never used as paths.
capture vm vm inspect "a${NL}b"
assert_eq "a reference with a newline is not found" "Failed to inspect VM 'a${NL}b': VM 'a${NL}b' not found" "$CAPTURE_STDERR"
for ref in .. ../names /etc/passwd "x y"; do
        assert_fails_with "Failed to inspect VM '$ref': VM '$ref' not found" vm vm inspect "$ref"
done
assert_fails_with "Failed to remove VM '..': VM '..' not found" vm vm rm --force ..
assert_fails_with "Failed to inspect VM '': empty VM reference" vm vm inspect ""

# ---------------------------------------------------------------------------------------------
# Sizes and counts.

BEFORE=$(store_snapshot)
assert_usage_error "invalid size '-1': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --memory -1 "$IMAGE"
assert_usage_error "invalid size '-1G': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --storage -1G "$IMAGE"
assert_usage_error "size '99999999999999999999' is too large." \
        vm vm create --nics 0 --memory 99999999999999999999 "$IMAGE"
assert_usage_error "size '16384P' is too large." vm vm create --nics 0 --storage 16384P "$IMAGE"
assert_usage_error "invalid size '1E': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --storage 1E "$IMAGE"
assert_usage_error "invalid size '1G2': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --memory 1G2 "$IMAGE"
assert_usage_error "invalid size '0x10G': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --memory 0x10G "$IMAGE"
assert_usage_error "invalid size '1. G': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --memory "1. G" "$IMAGE"
assert_usage_error "invalid size '': expected a number with an optional unit such as 512M or 10G." \
        vm vm create --nics 0 --memory "" "$IMAGE"
assert_usage_error "invalid CPU count '-1': expected a number from 1 to 256." \
        vm vm create --nics 0 --cpu -1 "$IMAGE"
assert_usage_error "invalid CPU count '4294967297': expected a number from 1 to 256." \
        vm vm create --nics 0 --cpu 4294967297 "$IMAGE"
assert_usage_error "invalid CPU count '1e3': expected a number from 1 to 256." \
        vm vm create --nics 0 --cpu 1e3 "$IMAGE"
assert_usage_error "invalid NIC count '17': expected a number from 0 to 16." \
        vm vm create --nics 17 "$IMAGE"
assert_fails_with "$CREATE_FAILED: memory of 134218776 bytes is not a multiple of 4K" \
        vm vm create --nics 0 --memory 128.001M "$IMAGE"
assert_fails_with "$CREATE_FAILED: memory of 0 bytes is below the minimum of 128M" \
        vm vm create --nics 0 --memory 0 "$IMAGE"
assert_store_unchanged "rejected sizes leave the store unchanged" "$BEFORE"

# Sizes at the top of the range must be rejected or stored as they are: a record that stores a
# size as a negative number, or a disk that cannot be created, is a bug.
capture vm vm create --nics 0 --name huge-mem --memory 8192P "$IMAGE"
echo "# --memory 8192P: exit $CAPTURE_STATUS, $CAPTURE_STDOUT$CAPTURE_STDERR"
if [[ $CAPTURE_STATUS -eq 0 ]]; then
        # jq reads numbers as doubles, so the raw digits are compared.
        assert_eq "--memory 8192P is stored as 2^63 bytes" 9223372036854775808 \
                "$(grep -o '"memory": *-*[0-9]*' "$ROOT"/vms/*/vm.json | head -n1 | grep -o -- '-*[0-9]*$')"
        vm vm rm --force huge-mem >/dev/null
else
        test_ok "--memory 8192P is rejected: $CAPTURE_STDERR"
fi
BEFORE=$(store_snapshot)
capture vm vm create --nics 0 --name huge-disk --storage 16383P "$IMAGE"
echo "# --storage 16383P: exit $CAPTURE_STATUS, $CAPTURE_STDOUT$CAPTURE_STDERR"
assert_eq "--storage 16383P fails" 1 "$CAPTURE_STATUS"
assert_store_unchanged "a failed huge disk leaves the store unchanged" "$BEFORE"

# ---------------------------------------------------------------------------------------------
# Unit properties.

assert_fails_with "$CREATE_FAILED: invalid property 'MemoryMax': expected KEY=VALUE" \
        vm vm create --nics 0 --property MemoryMax "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid property '=1G': expected KEY=VALUE" \
        vm vm create --nics 0 --property =1G "$IMAGE"
assert_fails_with "$CREATE_FAILED: unsupported property 'ExecStartPre': Cocoon accepts MemoryMax, MemoryHigh, MemoryLow, MemoryMin, MemorySwapMax, CPUQuota, CPUWeight, IOWeight, TasksMax, Nice and the *Accounting switches" \
        vm vm create --nics 0 --property ExecStartPre=/bin/sh "$IMAGE"
assert_fails_with "$CREATE_FAILED: unsupported property 'memorymax': Cocoon accepts MemoryMax, MemoryHigh, MemoryLow, MemoryMin, MemorySwapMax, CPUQuota, CPUWeight, IOWeight, TasksMax, Nice and the *Accounting switches" \
        vm vm create --nics 0 --property memorymax=1G "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value '1G ExecStart=/bin/sh' for MemoryMax: expected a size such as 512M or 'infinity'" \
        vm vm create --nics 0 --property "MemoryMax=1G ExecStart=/bin/sh" "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value '-1' for MemoryMax: expected a size such as 512M or 'infinity'" \
        vm vm create --nics 0 --property MemoryMax=-1 "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value '0' for CPUWeight: expected 1 to 10000" \
        vm vm create --nics 0 --property CPUWeight=0 "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value '10001' for IOWeight: expected 1 to 10000" \
        vm vm create --nics 0 --property IOWeight=10001 "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value '18446744073709551616' for TasksMax: expected a number or 'infinity'" \
        vm vm create --nics 0 --property TasksMax=18446744073709551616 "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value '20' for Nice: expected -20 to 19" \
        vm vm create --nics 0 --property Nice=20 "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value '5%%' for CPUQuota: expected a percentage such as 50%" \
        vm vm create --nics 0 --property CPUQuota=5%% "$IMAGE"
assert_fails_with "$CREATE_FAILED: invalid value 'maybe' for CPUAccounting: expected yes or no" \
        vm vm create --nics 0 --property CPUAccounting=maybe "$IMAGE"
assert_store_unchanged "rejected properties leave the store unchanged" "$BEFORE"

# ---------------------------------------------------------------------------------------------
# The escape character of "vm console" is checked before the VM is looked up.

for case in "|invalid escape character '': expected one character or caret notation such as ^]." \
        "ab|invalid escape character 'ab': expected one character or caret notation such as ^]." \
        "^?|invalid escape character '^?': NUL, CR, LF and DEL cannot be used." \
        "^1|invalid escape character '^1': caret notation takes one of @, A-Z, [, \\, ], ^ or _." \
        "^@|invalid escape character '^@': NUL, CR, LF and DEL cannot be used." \
        ".|invalid escape character '.': '.' and '?' are escape commands." \
        "é|invalid escape character 'é': expected an ASCII character."; do
        assert_usage_error "${case#*|}" vm vm console --escape-char "${case%%|*}" nosuchvm
done

# ---------------------------------------------------------------------------------------------
# Cloud images: --root-password, --ssh-key and --dns reach the NoCloud seed.

mkdir -p "$TEST_DIR/www" "$ROOT/firmware"
qemu-img create -q -f raw "$TEST_DIR/www/cloud.img" 64M
python3 -m http.server --bind 127.0.0.1 --directory "$TEST_DIR/www" 0 >"$TEST_DIR/http.log" 2>&1 &
HTTP_PID=$!
test_on_exit "kill $HTTP_PID"
HTTP_PORT=
for _ in $(seq 50); do
        HTTP_PORT=$(grep -o 'port [0-9]*' "$TEST_DIR/http.log" | head -n1 | cut -d' ' -f2) && [[ -n $HTTP_PORT ]] && break
        sleep 0.1
done
CLOUD=http://127.0.0.1:$HTTP_PORT/cloud.img
cocoon_run image pull -q "$CLOUD" >/dev/null || test_abort "cloud image pull failed"
head -c 2M /dev/zero >"$ROOT/firmware/CLOUDHV.fd"
CLOUD_FAILED="Failed to create a VM from '$CLOUD'"

# Print the user-data of the seed of VM $1, read from the ISO 9660 image where it is stored
# uncompressed.
user_data() {
        python3 - "$ROOT/vms/$(vm_field "$1" .id)/cidata.img" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
start = data.index(b"#cloud-config")
sys.stdout.write(data[start:data.index(b"\0", start)].decode())
EOF
}

PASSWORD=$'p\'a"s: {x}\n  - [y]: &z *z #c\nssh_pwauth: false\nruncmd: [reboot]'
capture vm --root-password "$PASSWORD" vm create --nics 0 --name pw "$CLOUD"
assert_eq "a password with YAML syntax is accepted" 0 "$CAPTURE_STATUS"
ud=$(user_data pw)
echo "# user-data of the seed:"
printf '#   %s\n' "${ud//$'\n'/$'\n'#   }"
assert_eq "the user-data parses as YAML with only Cocoon's keys" "chpasswd disable_root ssh_pwauth" \
        "$(python3 -c 'import sys, yaml; print(" ".join(sorted(yaml.safe_load(sys.stdin))))' <<<"$ud" 2>&1)"
# shellcheck disable=SC2016 # a literal "$6$"
assert_true "the password is stored as a SHA-512 crypt hash" grep -qE '^ *password: "?\$6\$' <<<"$ud"
assert_true "no part of the password is in the store" sh -c "! grep -rqaF -e 'runcmd' -e '{x}' '$ROOT/vms'"
assert_eq "the password did not add runcmd" "" "$(grep -F runcmd <<<"$ud" || true)"
vm vm rm pw >/dev/null

ssh-keygen -q -t ed25519 -N '' -C 'user@host' -f "$TEST_DIR/id"
GOOD_KEY=$(<"$TEST_DIR/id.pub")
KEY_DATA=$(cut -d' ' -f2 <<<"$GOOD_KEY")
BEFORE=$(store_snapshot)
# key_case CONTENT EXPECTED_REASON: a key file with CONTENT is rejected with EXPECTED_REASON.
key_case() {
        local file=$TEST_DIR/key$((++KEY_N))

        printf '%s' "$1" >"$file"
        assert_fails_with "$CLOUD_FAILED: ${2//@F@/$file}" \
                vm vm create --nics 0 --name keys --ssh-key "$file" "$CLOUD"
}
KEY_N=0
key_case "" "no SSH public key found in '@F@'"
key_case $'# only a comment\n\n' "no SSH public key found in '@F@'"
key_case "garbage" "invalid SSH public key on line 1 of '@F@': unknown key type 'garbage'"
key_case "ssh-ed25519" "invalid SSH public key on line 1 of '@F@': missing key data after 'ssh-ed25519'"
key_case "ssh-ed25519 !!!notbase64" "invalid SSH public key on line 1 of '@F@': invalid base64 in the key data"
key_case "ssh-rsa $KEY_DATA user@host" "invalid SSH public key on line 1 of '@F@': key data does not contain a 'ssh-rsa' key"
key_case "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 x" "invalid SSH public key on line 1 of '@F@': key data is too short"
key_case "$GOOD_KEY"$'\n'"$GOOD_KEY"$'\x1b[2J' "invalid SSH public key on line 2 of '@F@': control character 0x1b at column $((${#GOOD_KEY} + 1))"
key_case "$(<"$TEST_DIR/id")" "'@F@' contains a private key, expected a public key such as '@F@.pub'"
key_case "ssh-ed25519 $KEY_DATA"$'\xff' "invalid SSH public key on line 1 of '@F@': not valid UTF-8"
assert_fails_with "$CLOUD_FAILED: SSH key file '$TEST_DIR/none' not found" \
        vm vm create --nics 0 --name keys --ssh-key "$TEST_DIR/none" "$CLOUD"
head -c 70000 /dev/zero | tr '\0' '#' >"$TEST_DIR/big"
assert_fails_with "$CLOUD_FAILED: SSH key file '$TEST_DIR/big' is over the limit of 65536 bytes" \
        vm vm create --nics 0 --name keys --ssh-key "$TEST_DIR/big" "$CLOUD"
assert_store_unchanged "rejected keys leave the store unchanged" "$BEFORE"

# A key with a YAML-breaking comment is carried as one quoted string.
printf '%s\n' "ssh-ed25519 $KEY_DATA a: b\" - #x" >"$TEST_DIR/odd.pub"
capture vm vm create --nics 0 --name keys --ssh-key "$TEST_DIR/odd.pub" "$CLOUD"
assert_eq "a key with a YAML-breaking comment is accepted" 0 "$CAPTURE_STATUS"
assert_eq "it is one authorized key, unchanged" "ssh-ed25519 $KEY_DATA a: b\" - #x" \
        "$(user_data keys | python3 -c 'import sys, yaml; d = yaml.safe_load(sys.stdin); print("\n".join(d["ssh_authorized_keys"]))' 2>&1)"
vm vm rm keys >/dev/null

# --dns is checked whether or not the VM has NICs, so a bad value never reaches a later start.
before=$(store_snapshot)
# The list is split at ',' and ';', so the first item is 'x'.
assert_fails_with "$CLOUD_FAILED: invalid DNS server 'x': expected an IP address" \
        vm --dns 'x; rm -rf /' vm create --nics 0 --name dns "$CLOUD"
assert_fails_with "$CLOUD_FAILED: invalid DNS server 'x': expected an IP address" \
        vm --dns 'x; rm -rf /' vm create --nics 1 --name dns "$CLOUD"
assert_fails_with "$CLOUD_FAILED: invalid DNS server '1.1.1.1 init=/bin/sh': expected an IP address" \
        vm --dns '1.1.1.1 init=/bin/sh' vm create --nics 0 --name dns "$CLOUD"
assert_store_unchanged "rejected --dns values change nothing" "$before"

check_records "every record parses at the end"
check_no_leaks "nothing is left at the end"
assert_eq "no VM is left" "No VMs found." "$(vm vm list)"

test_finish
