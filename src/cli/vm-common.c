/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "format.h"
#include "strv.h"
#include "qemu.h"
#include "vm-common.h"
#include "vm-store.h"

static const char *accelerator_flag = NULL;

int vm_command_context_init(const Config *config, VmCommandContext *ret) {
        char self[PATH_MAX];
        ssize_t n;
        int r;

        *ret = (VmCommandContext) {};

        r = store_open(config->root_dir, &ret->store);
        if (r < 0)
                return r;

        r = qemu_accelerator_set_preference(accelerator_flag ?: config->accelerator);
        if (r < 0)
                return r;
        ret->accelerator = accelerator_flag ?: config->accelerator;

        /* The unit's ExecStop= calls back into this very binary. */
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n < 0)
                return error_set(-errno, "cannot find the cocoon executable: %m");
        self[n] = '\0';
        ret->cocoon_path = strdup(self);
        if (!ret->cocoon_path)
                return -ENOMEM;

        r = strv_split(config->dns, ",;", &ret->dns);
        if (r < 0)
                return r;

        ret->cni_state_dir = store_path(ret->store, "cni", NULL);
        if (!ret->cni_state_dir)
                return -ENOMEM;

        ret->lifecycle = (LifecycleContext) {
                .store = ret->store,
                .root_dir = config->root_dir,
                .run_dir = config->run_dir,
                .cocoon_path = ret->cocoon_path,
                .stop_timeout_sec = config->stop_timeout_sec,
                .root_password = isempty(config->root_password) ? NULL : config->root_password,
                .firmware = isempty(config->firmware) ? NULL : config->firmware,
                .network = {
                        .conf_dir = config->cni_conf_dir,
                        .bin_dir = config->cni_bin_dir,
                        .state_dir = ret->cni_state_dir,
                },
                .dns = ret->dns,
        };
        return 0;
}

void vm_command_context_done(VmCommandContext *c) {
        store_free(c->store);
        free(c->cocoon_path);
        free(c->cni_state_dir);
        strv_free(c->dns);
        *c = (VmCommandContext) {};
}

enum {
        ARG_PROPERTY = 'p',
        ARG_NAME = 0x100,
        ARG_CPU,
        ARG_MEMORY,
        ARG_STORAGE,
        ARG_NICS,
        ARG_AUTOSTART,
        ARG_HYPERVISOR,
        ARG_SSH_KEY,
        ARG_NETWORK,
        ARG_ACCELERATOR,
};


int vm_accelerator_parse_option(const char *arg) {
        if (!streq(arg, "auto") && !streq(arg, "kvm") && !streq(arg, "tcg"))
                return error_set(-EINVAL, "invalid accelerator '%s': expected kvm, tcg or auto", arg);
        accelerator_flag = arg;
        return 0;
}

void vm_report_accelerator(VmCommandContext *ctx, const Vm *vm) {
        _cleanup_free_ char *note = NULL;
        QemuAccelerator a;

        /* The probe's verdict is cached per boot, so the fallback is reported once. */
        if (vm->hypervisor != HYPERVISOR_QEMU)
                return;
        if (qemu_accelerator_choose(ctx->accelerator, ctx->lifecycle.run_dir, &a, &note) >= 0 && note)
                log_info("%s", note);
        error_clear();
}

const CliOption vm_create_options[] = {
        { "name", 0, "NAME", "VM name (default: derived from the image)", ARG_NAME },
        { "cpu", 0, "N", "virtual CPUs (default 2)", ARG_CPU },
        { "memory", 0, "SIZE", "memory, binary units such as 512M or 2G (default 1G)", ARG_MEMORY },
        { "storage", 0, "SIZE", "writable disk size, binary units (default 10G)", ARG_STORAGE },
        { "nics", 0, "N", "network interfaces, 0 for none (default 1)", ARG_NICS },
        { "autostart", 0, NULL, "start the VM when the host boots", ARG_AUTOSTART },
        { "hypervisor", 0, "NAME", "cloud-hypervisor, qemu or auto (default auto)", ARG_HYPERVISOR },
        { "property", 'p', "KEY=VALUE", "unit resource setting such as MemoryMax=2G or CPUQuota=50% (repeatable)", ARG_PROPERTY },
        { "ssh-key", 0, "FILE", "authorized keys file for cloud-image guests (repeatable)", ARG_SSH_KEY },
        { "network", 0, "NAME", "CNI network to attach the NICs to (default: the first configuration)", ARG_NETWORK },
        { "accelerator", 0, "NAME", "QEMU accelerator: kvm, tcg or auto (default: [VM] Accelerator=, auto)", ARG_ACCELERATOR },
        {},
};

static VmCreateOptions create_options = {
        .cpu = 2,
        .memory = 1ULL << 30,
        .storage = 10ULL << 30,
        .nics = 1,
        .hypervisor = "auto",
};
static char **create_properties = NULL;
static char **create_ssh_keys = NULL;

static int parse_count(const char *arg, const char *what, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(arg, &end, 10);
        if (errno != 0 || end == arg || *end || arg[0] == '-' || v < min || v > max)
                return error_set(-EINVAL, "invalid %s '%s': expected a number from %u to %u", what,
                                 arg, min, max);
        *ret = (unsigned) v;
        return 0;
}

int vm_create_parse_option(int id, const char *arg) {
        switch (id) {
        case ARG_NAME:
                create_options.name = arg;
                return vm_name_validate(arg);
        case ARG_CPU:
                return parse_count(arg, "CPU count", 1, 256, &create_options.cpu);
        case ARG_MEMORY:
                return parse_size(arg, &create_options.memory);
        case ARG_STORAGE:
                return parse_size(arg, &create_options.storage);
        case ARG_NICS:
                return parse_count(arg, "NIC count", 0, 16, &create_options.nics);
        case ARG_AUTOSTART:
                create_options.autostart = true;
                return 0;
        case ARG_HYPERVISOR:
                if (!streq(arg, "auto") && hypervisor_type_from_string(arg) < 0)
                        return error_set(-EINVAL, "unknown hypervisor '%s': expected "
                                                  "cloud-hypervisor, qemu or auto", arg);
                create_options.hypervisor = arg;
                return 0;
        case ARG_PROPERTY:
                return strv_extend(&create_properties, arg);
        case ARG_SSH_KEY:
                return strv_extend(&create_ssh_keys, arg);
        case ARG_NETWORK:
                create_options.network = arg;
                return 0;
        case ARG_ACCELERATOR:
                return vm_accelerator_parse_option(arg);
        }
        return -EINVAL;
}

VmCreateOptions *vm_create_options_get(void) {
        create_options.properties = create_properties;
        create_options.ssh_key_files = create_ssh_keys;
        return &create_options;
}

json_t *vm_public_json(const Vm *vm, const char *active_state, uint32_t main_pid) {
        json_t *j = vm_to_json(vm);
        _cleanup_free_ char *socket = strjoin(vm->run_dir, "/api.sock", NULL);
        VmState state = lifecycle_effective_state(vm, active_state);

        if (!j || !socket)
                return json_decref(j), NULL;

        if (json_object_set_new(j, "state", json_string(vm_state_to_string(state))) < 0 ||
            json_object_set_new(j, "socket_path", json_string(socket)) < 0)
                return json_decref(j), NULL;
        if (state == VM_RUNNING && main_pid > 0 &&
            json_object_set_new(j, "pid", json_integer(main_pid)) < 0)
                return json_decref(j), NULL;
        return j;
}

int vm_for_each_argument(const Config *config, int argc, char **argv, const char *verb,
                         VmAction action) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        int r, ret = 0;

        r = vm_command_context_init(config, &ctx);
        if (r < 0) {
                log_error("Failed to %s VMs: %s", verb, error_message(r));
                return EXIT_FAILURE;
        }

        for (int i = 0; i < argc; i++) {
                _cleanup_(vm_freep) Vm *vm = vm_resolve_or_log(ctx.store, argv[i], verb);

                if (!vm) {
                        ret = EXIT_FAILURE;
                        continue;
                }
                error_clear();
                r = action(&ctx, vm);
                if (r < 0) {
                        log_error("Failed to %s VM '%s': %s", verb, vm->name, error_message(r));
                        ret = EXIT_FAILURE;
                }
        }
        return ret;
}

Vm *vm_resolve_or_log(const Store *s, const char *ref, const char *action) {
        Vm *vm = NULL;
        int r;

        error_clear();
        r = vm_store_resolve(s, ref, &vm);
        if (r < 0) {
                log_error("Failed to %s VM '%s': %s", action, ref, error_message(r));
                return NULL;
        }
        return vm;
}
