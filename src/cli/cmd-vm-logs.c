/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "error.h"
#include "journal.h"
#include "vm-common.h"

static bool arg_follow = false;
static unsigned arg_lines = 0;
static const char *arg_since = NULL;
static JournalFormat arg_format = JOURNAL_FORMAT_SHORT;

enum { ARG_FOLLOW = 'f', ARG_LINES = 'n', ARG_OUTPUT = 'o', ARG_SINCE = 0x100 };

static const CliOption options[] = {
        { "follow", 'f', NULL, "keep printing new lines as the guest writes them", ARG_FOLLOW },
        { "lines", 'n', "N", "print only the last N lines", ARG_LINES },
        { "since", 0, "TIME", "lines from TIME on: YYYY-MM-DD [HH:MM:SS], HH:MM:SS, -5m, -2h, -1d", ARG_SINCE },
        { "output", 'o', "FORMAT", "short, cat or json (default short)", ARG_OUTPUT },
        {},
};

static int parse_option(int id, const char *arg) {
        char *end;
        unsigned long n;
        uint64_t ignored;

        switch (id) {
        case ARG_FOLLOW:
                arg_follow = true;
                return 0;
        case ARG_LINES:
                errno = 0;
                n = strtoul(arg, &end, 10);
                if (errno != 0 || end == arg || *end || arg[0] == '-' || n > 1000000)
                        return error_set(-EINVAL, "invalid line count '%s': expected 0 to 1000000", arg);
                arg_lines = (unsigned) n;
                return 0;
        case ARG_SINCE:
                arg_since = arg;
                return journal_parse_since(arg, (uint64_t) time(NULL) * 1000000ULL, &ignored);
        case ARG_OUTPUT:
                if (streq(arg, "short"))
                        arg_format = JOURNAL_FORMAT_SHORT;
                else if (streq(arg, "cat"))
                        arg_format = JOURNAL_FORMAT_CAT;
                else if (streq(arg, "json"))
                        arg_format = JOURNAL_FORMAT_JSON;
                else
                        return error_set(-EINVAL, "invalid output format '%s': expected short, cat or json", arg);
                return 0;
        }
        return -EINVAL;
}

static volatile int stop_requested = 0;

static void on_signal(int sig) {
        stop_requested = 1;
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_(vm_freep) Vm *vm = NULL;
        _cleanup_free_ char *unit = NULL;
        JournalQuery q = {
                .lines = arg_lines,
                .follow = arg_follow,
                .format = arg_format,
                .stop = &stop_requested,
        };
        struct sigaction sa = { .sa_handler = on_signal };
        int r;

        r = store_open(config->root_dir, &store);
        if (r < 0) {
                log_error("Failed to show the logs of VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        vm = vm_resolve_or_log(store, argv[0], "show the logs of");
        if (!vm)
                return EXIT_FAILURE;

        unit = vm_unit_name(vm->name);
        if (!unit)
                return EXIT_FAILURE;
        q.unit = unit;
        if (arg_since)
                (void) journal_parse_since(arg_since, (uint64_t) time(NULL) * 1000000ULL, &q.since_usec);

        /* Ctrl-C ends --follow cleanly instead of killing the process mid-line. */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        r = journal_show(&q, stdout);
        if (r == -EPIPE)
                return 0;
        if (r < 0) {
                log_error("Failed to show the logs of VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        return 0;
}

const CliCommand cmd_vm_logs = {
        .group = "vm",
        .name = "logs",
        .args = "VM",
        .summary = "Show a VM's console output and hypervisor messages from the journal",
        .description = "Reads the journal of cocoon-vm@NAME.service, also after the VM stopped.",
        .options = options,
        .min_args = 1,
        .max_args = 1,
        .parse_option = parse_option,
        .run = run,
};
