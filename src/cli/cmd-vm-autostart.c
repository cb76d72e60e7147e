/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "vm-common.h"
#include "vm-store.h"

static int parse_option(int id, const char *arg) {
        return -EINVAL;
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_(vm_freep) Vm *vm = NULL, *fresh = NULL;
        _cleanup_close_ int lock = -EBADF;
        bool on;
        int r;

        if (streq(argv[1], "on"))
                on = true;
        else if (streq(argv[1], "off"))
                on = false;
        else {
                log_error("Invalid value '%s': expected on or off.", argv[1]);
                return EXIT_USAGE;
        }

        r = store_open(config->root_dir, &store);
        if (r < 0) {
                log_error("Failed to change autostart of VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        vm = vm_resolve_or_log(store, argv[0], "change autostart of");
        if (!vm)
                return EXIT_FAILURE;

        r = vm_store_lock(store, vm->id, LOCK_EX, &lock);
        if (r >= 0)
                r = vm_store_load(store, vm->id, &fresh);
        if (r >= 0) {
                fresh->autostart = on;
                r = vm_store_save(store, fresh);
        }
        if (r < 0) {
                log_error("Failed to change autostart of VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        printf("autostart %s: %s\n", on ? "on" : "off", vm->id);
        return 0;
}

const CliCommand cmd_vm_autostart = {
        .group = "vm",
        .name = "autostart",
        .args = "VM on|off",
        .summary = "Turn starting a VM at boot on or off",
        .description = "VMs with autostart on are started by cocoon-autostart.service at boot.",
        .min_args = 2,
        .max_args = 2,
        .parse_option = parse_option,
        .run = run,
};
