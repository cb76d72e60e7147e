/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "hypervisor.h"
#include "strv.h"
#include "unit.h"
#include "vm-common.h"

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        _cleanup_(unit_spec_freep) UnitSpec *spec = NULL;
        _cleanup_(vm_freep) Vm *vm = NULL;
        _cleanup_free_ char *program = NULL;
        const HypervisorOps *ops;
        unsigned version = 0;
        int r;

        r = vm_command_context_init(config, &ctx);
        if (r >= 0)
                r = lifecycle_plan(&ctx.lifecycle, argv[0], vm_create_options_get(), &vm);
        if (r < 0) {
                log_error("Failed to plan a VM from '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }

        /* Show the real program path when it is installed, the bare name otherwise. */
        ops = hypervisor_ops(vm->hypervisor);
        if (hypervisor_find_program(vm->hypervisor, &program, &version) < 0)
                program = strdup(ops->program);
        error_clear();

        r = program ? lifecycle_unit_spec(&ctx.lifecycle, vm, program, version, &spec) : -ENOMEM;
        if (r < 0) {
                log_error("Failed to build the unit for '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }

        printf("# What 'cocoon vm run' would do for this image (VM id %s is a placeholder).\n",
               vm->id);
        if (vm->kernel_path)
                printf("# The writable layer: a sparse %" PRIu64 "-byte file formatted with mkfs.ext4.\n",
                       vm->storage);
        unit_spec_print(spec, stdout);
        return 0;
}

const CliCommand cmd_vm_debug = {
        .group = "vm",
        .name = "debug",
        .args = "IMAGE",
        .summary = "Print the unit and hypervisor command line 'vm run' would use",
        .description = "Nothing is created. The output comes from the same builder 'vm run' uses.",
        .options = vm_create_options,
        .min_args = 1,
        .max_args = 1,
        .parse_option = vm_create_parse_option,
        .run = run,
};
