/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "cli.h"
#include "lifecycle.h"

/* State every vm command needs: the open store and the engine's context, built from the
 * configuration. */
typedef struct VmCommandContext {
        Store *store;
        LifecycleContext lifecycle;
        char *cocoon_path;
        char *cni_state_dir;
        char **dns;
        const char *accelerator;
} VmCommandContext;

int vm_command_context_init(const Config *config, VmCommandContext *ret);
void vm_command_context_done(VmCommandContext *c);

/* --accelerator of vm run and vm start: overrides [VM] Accelerator=. */
int vm_accelerator_parse_option(const char *arg);

/* Tell the user, once per boot, that QEMU falls back to TCG because KVM is unusable here. */
void vm_report_accelerator(VmCommandContext *ctx, const Vm *vm);

/* The options shared by vm create, vm run and vm debug. */
extern const CliOption vm_create_options[];
int vm_create_parse_option(int id, const char *arg);
/* The options as parsed, with defaults for those not given. */
VmCreateOptions *vm_create_options_get(void);

/* The JSON of a VM as `vm inspect` and `vm list -o json` show it: the record with the state
 * taken from its unit, plus pid and socket_path while it runs. */
json_t *vm_public_json(const Vm *vm, const char *active_state, uint32_t main_pid);

/* Run action on the VM each argument names, in order. A failure is printed as "Failed to VERB
 * VM 'x': reason" and the remaining VMs still get their turn. Returns the exit status. */
typedef int (*VmAction)(VmCommandContext *ctx, Vm *vm);
int vm_for_each_argument(const Config *config, int argc, char **argv, const char *verb,
                         VmAction action);

/* Resolve the VM argument or print the error; returns NULL after printing. */
Vm *vm_resolve_or_log(const Store *s, const char *ref, const char *action);
