/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "vm-common.h"

static bool arg_force = false;

enum { ARG_FORCE = 'f' };

static const CliOption options[] = {
        { "force", 'f', NULL, "skip the ACPI shutdown and terminate the hypervisor at once", ARG_FORCE },
        {},
};

static int parse_option(int id, const char *arg) {
        if (id == ARG_FORCE) {
                arg_force = true;
                return 0;
        }
        return -EINVAL;
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        int r, ret = 0;

        r = vm_command_context_init(config, &ctx);
        if (r < 0) {
                log_error("Failed to stop VMs: %s", error_message(r));
                return EXIT_FAILURE;
        }

        for (int i = 0; i < argc; i++) {
                _cleanup_(vm_freep) Vm *vm = vm_resolve_or_log(ctx.store, argv[i], "stop");

                if (!vm) {
                        ret = EXIT_FAILURE;
                        continue;
                }
                error_clear();
                r = lifecycle_stop(&ctx.lifecycle, vm, arg_force);
                if (r < 0) {
                        log_error("Failed to stop VM '%s': %s", vm->name, error_message(r));
                        ret = EXIT_FAILURE;
                        continue;
                }
                printf(r > 0 ? "not running: %s\n" : "stopped: %s\n", vm->id);
        }
        return ret;
}

const CliCommand cmd_vm_stop = {
        .group = "vm",
        .name = "stop",
        .args = "VM...",
        .summary = "Stop VMs gracefully",
        .description = "Presses the ACPI power button and waits up to StopTimeoutSec= (default 30 s)\n"
                       "for the guest to power off; then systemd sends SIGTERM and, later, SIGKILL.\n"
                       "'systemctl stop cocoon-vm@NAME' takes the same path.",
        .options = options,
        .min_args = 1,
        .max_args = -1,
        .parse_option = parse_option,
        .run = run,
};
