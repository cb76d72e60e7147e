/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "vm-common.h"
#include "vm-store.h"

static bool arg_autostart = false;

enum { ARG_AUTOSTART = 0x100, ARG_ACCELERATOR };

static const CliOption options[] = {
        { "autostart", 0, NULL, "start every VM created with --autostart (used at boot)", ARG_AUTOSTART },
        { "accelerator", 0, "NAME", "QEMU accelerator: kvm, tcg or auto (default: [VM] Accelerator=, auto)", ARG_ACCELERATOR },
        {},
};

static int parse_option(int id, const char *arg) {
        switch (id) {
        case ARG_AUTOSTART:
                arg_autostart = true;
                return 0;
        case ARG_ACCELERATOR:
                return vm_accelerator_parse_option(arg);
        }
        return -EINVAL;
}

static int start_one(VmCommandContext *ctx, Vm *vm) {
        int r;

        vm_report_accelerator(ctx, vm);
        r = lifecycle_start(&ctx->lifecycle, vm);
        if (r >= 0)
                printf(r > 0 ? "already running: %s\n" : "started: %s\n", vm->id);
        return r;
}

static int start_autostart(const Config *config) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        Vm **all = NULL;
        size_t n = 0;
        int r, ret = 0;

        r = vm_command_context_init(config, &ctx);
        if (r >= 0)
                r = vm_store_list(ctx.store, &all, &n, NULL);
        if (r < 0) {
                log_error("Failed to start VMs: %s", error_message(r));
                return EXIT_FAILURE;
        }

        for (size_t i = 0; i < n; i++) {
                if (!all[i]->autostart || all[i]->state == VM_CREATING)
                        continue;
                error_clear();
                r = start_one(&ctx, all[i]);
                if (r < 0) {
                        log_error("Failed to start VM '%s': %s", all[i]->name, error_message(r));
                        ret = EXIT_FAILURE;
                }
        }
        vm_array_free(all, n);
        return ret;
}

static int run(const Config *config, int argc, char **argv) {
        if (arg_autostart)
                return start_autostart(config);
        if (argc == 0) {
                log_error("Missing argument: 'cocoon vm start' needs VM... or --autostart.");
                return EXIT_USAGE;
        }

        /* Every VM is tried; the exit status reports whether all of them started. */
        return vm_for_each_argument(config, argc, argv, "start", start_one);
}

const CliCommand cmd_vm_start = {
        .group = "vm",
        .name = "start",
        .args = "VM...",
        .summary = "Start VMs",
        .description = "VM is a name, an id or a unique id prefix of at least 3 characters. Each VM\n"
                       "runs as the systemd unit cocoon-vm@NAME.service; the command returns when\n"
                       "the hypervisor answers on its control socket.",
        .options = options,
        .min_args = 0,
        .max_args = -1,
        .parse_option = parse_option,
        .run = run,
};
