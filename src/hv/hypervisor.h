/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "vm.h"

/* What a hypervisor backend provides. Everything above this table (the engine, the commands)
 * works with any backend; each backend keeps its own argv grammar and control protocol. */
typedef struct HypervisorOps {
        HypervisorType type;
        const char *program;        /* default executable name, looked up in PATH */
        const char *guest_console;  /* console device for the guest kernel, e.g. "hvc0" */

        /* Build the argv that runs the VM. Pure: depends only on vm, the program path and the
         * version (major number, 0 when unknown). */
        int (*build_argv)(const Vm *vm, const char *program, unsigned version, char ***ret);

        /* Create files the argv refers to that the engine does not make itself (e.g. a UEFI
         * variable store). Called before every start; may be NULL. */
        int (*prepare)(const Vm *vm);

        /* Ask the guest to shut down (ACPI power button). Returns once the request is sent. */
        int (*power_button)(const Vm *vm);

        /* Check that the VMM responds on its control socket: 0 when it does. */
        int (*ping)(const Vm *vm);

        /* Path of the guest console's host side while the VM runs, or -EOPNOTSUPP. With
         * console_needs_relay it is what the console relay opens (a PTY or a stream socket);
         * without, `cocoon vm console` connects to it as a unix stream socket itself. */
        int (*console_endpoint)(const Vm *vm, char **ret);

        /* True when the VMM cannot both log the guest console to the journal and serve a
         * client: the unit then runs `cocoon vm console-relay` (ExecStartPost=), which copies
         * the output to the journal and serves clients on <run_dir>/console.sock. */
        bool console_needs_relay;
} HypervisorOps;

const HypervisorOps *hypervisor_ops(HypervisorType type);

/* Resolve "cloud-hypervisor", "qemu" or "auto" (Cloud Hypervisor when installed, else QEMU when
 * that backend is available). */
int hypervisor_choose(const char *wanted, HypervisorType *ret);

/* Find the backend's program (configured path, else PATH) and its major version. */
int hypervisor_find_program(HypervisorType type, char **ret_path, unsigned *ret_version);

/* The control socket path of a VM: <run_dir>/api.sock for Cloud Hypervisor. */
char *hypervisor_socket_path(const Vm *vm);
