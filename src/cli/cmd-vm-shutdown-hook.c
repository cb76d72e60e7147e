/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"
#include "error.h"
#include "vm-common.h"
#include "vm-store.h"

static unsigned arg_timeout = 0;

enum { ARG_TIMEOUT = 0x100 };

static const CliOption options[] = {
        { "timeout", 0, "SECONDS", "how long to wait for the guest to power off", ARG_TIMEOUT },
        {},
};

static int parse_option(int id, const char *arg) {
        char *end;
        unsigned long v;

        if (id != ARG_TIMEOUT)
                return -EINVAL;
        errno = 0;
        v = strtoul(arg, &end, 10);
        if (errno != 0 || end == arg || *end || v == 0 || v > 3600)
                return error_set(-EINVAL, "invalid timeout '%s': expected 1 to 3600 seconds", arg);
        arg_timeout = (unsigned) v;
        return 0;
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
        if (r >= 0 && arg_timeout > 0)
                ctx.lifecycle.stop_timeout_sec = arg_timeout;
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
        .options = options,
        .min_args = 1,
        .max_args = 1,
        .hidden = true,
        .parse_option = parse_option,
        .run = run,
};
