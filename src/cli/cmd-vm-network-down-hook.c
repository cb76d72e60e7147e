/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "commands.h"
#include "error.h"
#include "vm-common.h"
#include "vm-store.h"

static int parse_option(int id, const char *arg) {
        return -EINVAL;
}

/* ExecStopPost= of VM units with NICs: quiesce the network however the unit stopped (cocoon vm
 * stop, systemctl stop, a crashed VMM). It takes no VM lock, because 'cocoon vm stop' holds that
 * lock while it waits for the unit, and taking links down twice is harmless. */
static int run(const Config *config, int argc, char **argv) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        _cleanup_(vm_freep) Vm *vm = NULL;
        int r;

        r = vm_command_context_init(config, &ctx);
        if (r >= 0)
                r = vm_store_load(ctx.store, argv[0], &vm);
        if (r >= 0)
                r = lifecycle_network_down(&ctx.lifecycle, vm);
        if (r < 0) {
                log_error("Failed to take the network of VM %s down: %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        return 0;
}

const CliCommand cmd_vm_network_down_hook = {
        .group = "vm",
        .name = "network-down-hook",
        .args = "ID",
        .summary = "Take a stopped VM's TAPs and veths down (ExecStopPost= of its unit)",
        .min_args = 1,
        .max_args = 1,
        .hidden = true,
        .parse_option = parse_option,
        .run = run,
};
