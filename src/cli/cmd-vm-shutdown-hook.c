/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"
#include "error.h"
#include "vm-common.h"
#include "vm-store.h"

static int parse_option(int id, const char *arg) {
        return -EINVAL;
}

/* ExecStop= of every VM unit: the graceful part of both 'cocoon vm stop' and
 * 'systemctl stop'. Its output lands in the unit's journal. It always exits 0, because systemd
 * sends SIGTERM next anyway and a failure here must not hide the stop. */
static int run(const Config *config, int argc, char **argv) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        _cleanup_(vm_freep) Vm *vm = NULL;
        const char *pid = getenv("MAINPID");
        int r;

        r = vm_command_context_init(config, &ctx);
        if (r >= 0)
                r = vm_store_load(ctx.store, argv[0], &vm);
        if (r >= 0)
                r = lifecycle_shutdown_hook(&ctx.lifecycle, vm, pid ? atoi(pid) : 0);
        if (r < 0)
                log_warning("Graceful shutdown of VM %s failed, systemd terminates it: %s", argv[0],
                            error_message(r));
        return 0;
}

const CliCommand cmd_vm_shutdown_hook = {
        .group = "vm",
        .name = "shutdown-hook",
        .args = "ID",
        .summary = "Shut a VM down gracefully (ExecStop= of its unit)",
        .min_args = 1,
        .max_args = 1,
        .hidden = true,
        .parse_option = parse_option,
        .run = run,
};
