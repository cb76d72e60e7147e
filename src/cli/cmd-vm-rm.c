/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "vm-common.h"

static bool arg_force = false;

enum { ARG_FORCE = 'f' };

static const CliOption options[] = {
        { "force", 'f', NULL, "stop a running VM first", ARG_FORCE },
        {},
};

static int parse_option(int id, const char *arg) {
        if (id == ARG_FORCE) {
                arg_force = true;
                return 0;
        }
        return -EINVAL;
}

static int remove_one(VmCommandContext *ctx, Vm *vm) {
        int r = lifecycle_remove(&ctx->lifecycle, vm, arg_force);

        if (r >= 0)
                printf("deleted VM: %s\n", vm->id);
        return r;
}

static int run(const Config *config, int argc, char **argv) {
        return vm_for_each_argument(config, argc, argv, "remove", remove_one);
}

const CliCommand cmd_vm_rm = {
        .group = "vm",
        .name = "rm",
        .args = "VM...",
        .summary = "Remove VMs and their disks",
        .options = options,
        .min_args = 1,
        .max_args = -1,
        .parse_option = parse_option,
        .run = run,
};
