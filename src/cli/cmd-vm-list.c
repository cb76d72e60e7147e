/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "format.h"
#include "output.h"
#include "strv.h"
#include "vm-common.h"
#include "vm-store.h"

static OutputFormat arg_format = OUTPUT_TABLE;
static bool arg_quiet = false;

enum { ARG_OUTPUT = 'o', ARG_QUIET = 'q' };

static const CliOption options[] = {
        { "output", 'o', "FORMAT", "output format: table or json (default table)", ARG_OUTPUT },
        { "format", 0, "FORMAT", "same as --output", ARG_OUTPUT },
        { "quiet", 'q', NULL, "print VM names only", ARG_QUIET },
        {},
};

static int parse_option(int id, const char *arg) {
        switch (id) {
        case ARG_OUTPUT:
                return output_format_parse(arg, &arg_format);
        case ARG_QUIET:
                arg_quiet = true;
                return 0;
        }
        return -EINVAL;
}

/* The active state of each VM's unit, from one ListUnitsByPatterns call for all of them. */
static const char *unit_state_of(const Vm *vm, char **names, char **states) {
        _cleanup_free_ char *unit = vm_unit_name(vm->name);

        for (size_t i = 0; unit && names && names[i]; i++)
                if (streq(names[i], unit))
                        return states[i];
        return NULL;
}

static char *ip_list(const Vm *vm) {
        _cleanup_strv_free_ char **ips = NULL;

        for (size_t i = 0; i < vm->n_nics; i++)
                if (vm->nics[i].ip && strv_extend(&ips, vm->nics[i].ip) < 0)
                        return NULL;
        return ips ? strv_join(ips, ",") : strdup("-");
}

static int print_table(Vm **vms, size_t n, char **names, char **states) {
        _cleanup_(table_freep) Table *t = table_new("ID", "NAME", "STATE", "CPU", "MEMORY", "STORAGE",
                                                    "IP", "IMAGE", "CREATED", "HYPERVISOR", NULL);

        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Vm *vm = vms[i];
                char cpu[16], mem[FORMAT_SIZE_MAX], sto[FORMAT_SIZE_MAX], created[FORMAT_TIMESTAMP_MAX];
                _cleanup_free_ char *ips = ip_list(vm);
                VmState st = lifecycle_effective_state(vm, unit_state_of(vm, names, states));

                snprintf(cpu, sizeof(cpu), "%u", vm->cpu);
                if (!ips || table_add_row(t, vm->id, vm->name, vm_state_to_string(st), cpu,
                                          format_size_binary(mem, sizeof(mem), vm->memory),
                                          format_size_binary(sto, sizeof(sto), vm->storage), ips,
                                          vm->image,
                                          format_timestamp_local(created, sizeof(created), vm->created_at),
                                          hypervisor_type_to_string(vm->hypervisor), NULL) < 0)
                        return -ENOMEM;
        }
        return table_print(t, stdout);
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_strv_free_ char **names = NULL, **states = NULL;
        Vm **vms = NULL;
        size_t n = 0, skipped = 0;
        int r;

        r = store_open(config->root_dir, &store);
        if (r >= 0)
                r = vm_store_list(store, &vms, &n, &skipped);
        if (r < 0) {
                log_error("Failed to list VMs: %s", error_message(r));
                return EXIT_FAILURE;
        }
        if (skipped > 0)
                log_warning("%zu VM records could not be read and are not shown.", skipped);

        /* Without systemd the records still list; the states then come from the records. */
        if (n > 0) {
                r = unit_bus_open(&bus);
                if (r >= 0)
                        r = unit_list(bus, "cocoon-vm@*.service", &names, &states);
                if (r < 0)
                        log_warning("States come from the records only: %s", error_message(r));
                r = 0;
        }

        if (arg_quiet) {
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", vms[i]->name);
        } else if (arg_format == OUTPUT_JSON) {
                json_t *a = json_array();

                for (size_t i = 0; a && i < n; i++)
                        if (json_array_append_new(a, vm_public_json(vms[i], unit_state_of(vms[i], names, states), 0)) < 0)
                                r = -ENOMEM;
                r = a && r >= 0 ? output_json(a) : -ENOMEM;
                json_decref(a);
        } else if (n == 0)
                printf("No VMs found.\n");
        else
                r = print_table(vms, n, names, states);

        vm_array_free(vms, n);
        /* A reader that went away (cocoon vm list | head) is not an error. */
        if (r < 0 && r != -EPIPE) {
                log_error("Failed to print VMs: %s", error_message(r));
                return EXIT_FAILURE;
        }
        return 0;
}

const CliCommand cmd_vm_list = {
        .group = "vm",
        .name = "list",
        .alias = "ls",
        .summary = "List VMs",
        .description = "Columns: ID NAME STATE CPU MEMORY STORAGE IP IMAGE CREATED HYPERVISOR, oldest first.\n"
                       "STATE comes from the VM's systemd unit.",
        .options = options,
        .max_args = 0,
        .parse_option = parse_option,
        .run = run,
};
