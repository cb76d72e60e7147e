/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "ch.h"
#include "error.h"
#include "hypervisor.h"
#include "process.h"
#include "qemu.h"
#include "strv.h"

char *hypervisor_socket_path(const Vm *vm) {
        return strjoin(vm->run_dir, "/api.sock", NULL);
}

static int ch_power_button(const Vm *vm) {
        _cleanup_free_ char *socket = hypervisor_socket_path(vm);
        long status = 0;
        int r;

        if (!socket)
                return -ENOMEM;
        r = ch_api_call(socket, "PUT", "vm.power-button", &status);
        if (r < 0)
                return r;
        if (status != 204 && status != 200)
                return error_set(-EIO, "cloud-hypervisor answered HTTP %ld to the power button", status);
        return 0;
}

static int ch_ping(const Vm *vm) {
        _cleanup_free_ char *socket = hypervisor_socket_path(vm);
        long status = 0;
        int r;

        if (!socket)
                return -ENOMEM;
        r = ch_api_call(socket, "GET", "vmm.ping", &status);
        if (r < 0)
                return r;
        return status == 200 ? 0 : error_set(-EIO, "cloud-hypervisor answered HTTP %ld to a ping", status);
}

/* The PTY that Cloud Hypervisor allocated, as vm.info reports it now: a PTY path recorded at
 * an earlier start would be stale. */
static int ch_console_endpoint(const Vm *vm, char **ret) {
        _cleanup_free_ char *socket = hypervisor_socket_path(vm), *info = NULL;
        long status = 0;
        int r;

        if (!socket)
                return -ENOMEM;
        r = ch_api_get(socket, "vm.info", &status, &info);
        if (r < 0)
                return r;
        if (status != 200)
                return error_set(-EIO, "cloud-hypervisor answered HTTP %ld to vm.info", status);

        /* Direct boot talks on the virtio console (hvc0), UEFI on the serial port (ttyS0). */
        return ch_console_path_from_info(info, vm->kernel_path == NULL, ret);
}

static const HypervisorOps ch_ops = {
        .type = HYPERVISOR_CLOUD_HYPERVISOR,
        .program = "cloud-hypervisor",
        .guest_console = "hvc0",
        .build_argv = ch_build_argv,
        .power_button = ch_power_button,
        .ping = ch_ping,
        .console_endpoint = ch_console_endpoint,
        .console_needs_relay = true,
};

const HypervisorOps *hypervisor_ops(HypervisorType type) {
        switch (type) {
        case HYPERVISOR_CLOUD_HYPERVISOR:
                return &ch_ops;
        case HYPERVISOR_QEMU:
                return &qemu_ops;
        default:
                return NULL;
        }
}

int hypervisor_find_program(HypervisorType type, char **ret_path, unsigned *ret_version) {
        const HypervisorOps *ops = hypervisor_ops(type);
        _cleanup_free_ char *path = NULL, *output = NULL;
        char *argv[] = { NULL, (char *) "--version", NULL };
        const char *v;
        int r;

        if (!ops)
                return error_set(-EOPNOTSUPP, "the %s backend is not available in this build",
                                 hypervisor_type_to_string(type));

        r = process_find_program(ops->program, &path);
        if (r < 0)
                return error_set(r, "%s not found in PATH; install it or choose another "
                                    "hypervisor with --hypervisor", ops->program);

        /* "cloud-hypervisor v53.0.0" */
        argv[0] = path;
        *ret_version = 0;
        if (process_run(argv, 10, &output) == 0 && (v = strstr(output, " v")))
                *ret_version = (unsigned) strtoul(v + 2, NULL, 10);
        error_clear();

        *ret_path = TAKE_PTR(path);
        return 0;
}

int hypervisor_choose(const char *wanted, HypervisorType *ret) {
        _cleanup_free_ char *path = NULL;

        if (!wanted || streq(wanted, "auto")) {
                if (process_find_program("cloud-hypervisor", &path) >= 0) {
                        *ret = HYPERVISOR_CLOUD_HYPERVISOR;
                        return 0;
                }
                if (hypervisor_ops(HYPERVISOR_QEMU)) {
                        *ret = HYPERVISOR_QEMU;
                        return 0;
                }
                return error_set(-ENOENT, "cloud-hypervisor not found in PATH and the qemu backend "
                                          "is not available; install Cloud Hypervisor");
        }

        HypervisorType t = hypervisor_type_from_string(wanted);
        if (t < 0)
                return error_set(-EINVAL, "unknown hypervisor '%s': expected cloud-hypervisor, "
                                          "qemu or auto", wanted);
        if (!hypervisor_ops(t))
                return error_set(-EOPNOTSUPP, "the %s backend is not available in this build", wanted);
        *ret = t;
        return 0;
}
