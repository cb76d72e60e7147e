/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "output.h"
#include "vm-common.h"

static int parse_option(int id, const char *arg) {
        return -EINVAL;
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(unit_state_done) UnitState state = {};
        _cleanup_(vm_freep) Vm *vm = NULL;
        _cleanup_free_ char *unit = NULL;
        json_t *j;
        int r;

        r = store_open(config->root_dir, &store);
        if (r < 0) {
                log_error("Failed to inspect VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        vm = vm_resolve_or_log(store, argv[0], "inspect");
        if (!vm)
                return EXIT_FAILURE;

        unit = vm_unit_name(vm->name);
        if (!unit)
                return EXIT_FAILURE;
        r = unit_bus_open(&bus);
        if (r >= 0)
                r = unit_get_state(bus, unit, &state);
        if (r < 0)
                log_warning("The state comes from the record only: %s", error_message(r));

        j = vm_public_json(vm, state.active_state, state.main_pid);
        r = j ? output_json(j) : -ENOMEM;
        json_decref(j);
        if (r < 0) {
                log_error("Failed to print VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        return 0;
}

const CliCommand cmd_vm_inspect = {
        .group = "vm",
        .name = "inspect",
        .args = "VM",
        .summary = "Show a VM as JSON",
        .min_args = 1,
        .max_args = 1,
        .parse_option = parse_option,
        .run = run,
};
