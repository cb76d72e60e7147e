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

static int stop_one(VmCommandContext *ctx, Vm *vm) {
        int r = lifecycle_stop(&ctx->lifecycle, vm, arg_force);

        if (r >= 0)
                printf(r > 0 ? "not running: %s\n" : "stopped: %s\n", vm->id);
        return r;
}

static int run(const Config *config, int argc, char **argv) {
        return vm_for_each_argument(config, argc, argv, "stop", stop_one);
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
