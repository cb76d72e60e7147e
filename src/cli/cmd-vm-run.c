/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "vm-common.h"

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        _cleanup_(vm_freep) Vm *vm = NULL;
        int r;

        r = vm_command_context_init(config, &ctx);
        if (r >= 0)
                r = lifecycle_create(&ctx.lifecycle, argv[0], vm_create_options_get(), &vm);
        if (r < 0) {
                log_error("Failed to create a VM from '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        printf("VM created: %s (name: %s, state: created)\n", vm->id, vm->name);

        /* The VM stays created when the start fails, so the user can look at it and retry. */
        vm_report_accelerator(&ctx, vm);
        r = lifecycle_start(&ctx.lifecycle, vm);
        if (r < 0) {
                log_error("Failed to start VM '%s': %s", vm->name, error_message(r));
                return EXIT_FAILURE;
        }
        printf("started: %s\n", vm->id);
        return 0;
}

const CliCommand cmd_vm_run = {
        .group = "vm",
        .name = "run",
        .args = "IMAGE",
        .summary = "Create a VM from an image and start it",
        .description = "The same as 'cocoon vm create' followed by 'cocoon vm start'.",
        .options = vm_create_options,
        .min_args = 1,
        .max_args = 1,
        .parse_option = vm_create_parse_option,
        .run = run,
};
