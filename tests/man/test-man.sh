#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Check the built man pages given as arguments (cocoon.1, cocoon-image.1, ...):
#   - each renders with "man --warnings" without a single warning;
#   - when $COCOON is an executable, every long option that "cocoon --help" and
#     "cocoon image COMMAND --help" print appears in cocoon(1) or cocoon-image(1);
#   - when $COCOON_CONFIG_SOURCE names src/cli/config.c, every key of its table appears in
#     cocoon.conf(5) as "Key=" with its environment variable, and the variable in cocoon(1).
# Exits 77 (skipped) when man is not installed.

set -euo pipefail
export LC_ALL=C.UTF-8

PASSED=0
FAILED=0
COUNT=0

ok() {
        COUNT=$((COUNT + 1))
        PASSED=$((PASSED + 1))
        echo "ok $COUNT - $1"
}

not_ok() {
        COUNT=$((COUNT + 1))
        FAILED=$((FAILED + 1))
        echo "not ok $COUNT - $1"
        shift
        printf '%s\n' "$@" | sed 's/^/#   /'
}

finish() {
        echo "1..$COUNT"
        echo "$PASSED passed, $FAILED failed"
        [[ $FAILED -eq 0 ]]
}

if ! command -v man >/dev/null; then
        echo "1..0 # SKIP man not found"
        exit 77
fi
if [[ $# -eq 0 ]]; then
        echo "Usage: $0 PAGE..." >&2
        exit 2
fi

declare -A TEXT=()

for page in "$@"; do
        name=${page##*/}
        if [[ ! -s $page ]]; then
                not_ok "$name is built" "missing or empty: $page"
                continue
        fi

        # man prints its warnings (and groff's) on standard error.
        status=0
        warnings=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) || status=$?
        if [[ $status -eq 0 && -z $warnings ]]; then
                ok "$name renders without warnings"
        else
                not_ok "$name renders without warnings" "exit status: $status" "$warnings"
        fi
        # The option and key checks read the roff source without font escapes, because the
        # rendered text may hyphenate a long name across two lines.
        TEXT[$name]=$(sed 's/\\f[BIRP]//g; s/\\&//g' "$page")
done

# help_options SECTION COMMAND...: print the long options ("--name") that the section SECTION
# ("Options" or "Global options") of "cocoon COMMAND... --help" lists, one per line.
help_options() {
        local section=$1

        shift
        "$COCOON" "$@" --help |
                awk -v header="$section:" '$0 == header { listed = 1; next } /^[A-Z].*:$/ { listed = 0 } listed' |
                grep -oE '(^|[ ,])--[a-z][a-z-]*' | sed 's/^[ ,]*//' | sort -u
}

# check_options PAGE SECTION COMMAND...: every option in SECTION of "cocoon COMMAND... --help"
# appears in PAGE.
check_options() {
        local page=$1 section=$2 text missing=() option count=0 what

        shift 2
        what="$section of 'cocoon${*:+ $*} --help'"
        text=${TEXT[$page]:-}
        if [[ -z $text ]]; then
                not_ok "$page documents the $what" "$page was not given"
                return
        fi
        while read -r option; do
                count=$((count + 1))
                grep -qF -- "$option" <<<"$text" || missing+=("$option")
        done < <(help_options "$section" "$@")

        if [[ ${#missing[@]} -eq 0 ]]; then
                ok "$page documents the $what ($count options)"
        else
                not_ok "$page documents the $what" "not documented: ${missing[*]}"
        fi
}

if [[ -x ${COCOON:-} ]]; then
        check_options cocoon.1 "Global options"
        for command in pull list inspect rm; do
                check_options cocoon-image.1 Options image "$command"
        done
        for command in create run start stop list inspect logs console rm debug autostart; do
                check_options cocoon-vm.1 Options vm "$command"
        done
else
        echo "# COCOON is not set to an executable, the option checks do not run"
fi

# check_config_keys: every { "Section", "Key", "COCOON_VARIABLE", ... } entry of the table in
# config.c is documented.
check_config_keys() {
        local section key variable missing=() count=0

        while read -r section key variable; do
                count=$((count + 1))
                grep -qF -- "[$section]" <<<"${TEXT[cocoon.conf.5]:-}" || missing+=("[$section]")
                grep -qF -- "$key=" <<<"${TEXT[cocoon.conf.5]:-}" || missing+=("$key=")
                grep -qF -- "$variable" <<<"${TEXT[cocoon.conf.5]:-}" || missing+=("$variable in cocoon.conf.5")
                grep -qF -- "$variable" <<<"${TEXT[cocoon.1]:-}" || missing+=("$variable in cocoon.1")
        done < <(grep -oE '\{ "[A-Za-z]+", "[A-Za-z]+", "COCOON_[A-Z_]+"' "$COCOON_CONFIG_SOURCE" | tr -d '{",')

        if [[ $count -eq 0 ]]; then
                not_ok "cocoon.conf.5 documents every configuration key" \
                        "no keys found in $COCOON_CONFIG_SOURCE"
        elif [[ ${#missing[@]} -eq 0 ]]; then
                ok "cocoon.conf.5 documents every configuration key ($count keys)"
        else
                not_ok "cocoon.conf.5 documents every configuration key" "not documented: ${missing[*]}"
        fi
}

if [[ -r ${COCOON_CONFIG_SOURCE:-} ]]; then
        check_config_keys
else
        echo "# COCOON_CONFIG_SOURCE is not set to a readable file, the key check does not run"
fi

finish
