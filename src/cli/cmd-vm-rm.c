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

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        int r, ret = 0;

        r = vm_command_context_init(config, &ctx);
        if (r < 0) {
                log_error("Failed to remove VMs: %s", error_message(r));
                return EXIT_FAILURE;
        }

        for (int i = 0; i < argc; i++) {
                _cleanup_(vm_freep) Vm *vm = vm_resolve_or_log(ctx.store, argv[i], "remove");

                if (!vm) {
                        ret = EXIT_FAILURE;
                        continue;
                }
                error_clear();
                r = lifecycle_remove(&ctx.lifecycle, vm, arg_force);
                if (r < 0) {
                        log_error("Failed to remove VM '%s': %s", vm->name, error_message(r));
                        ret = EXIT_FAILURE;
                        continue;
                }
                printf("deleted VM: %s\n", vm->id);
        }
        return ret;
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
