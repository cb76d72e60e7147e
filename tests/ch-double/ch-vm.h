/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The pretend VM of the Cloud Hypervisor test double. This module opens the host resources CH
 * keeps open while a guest runs: payload files, disk images with their locks, TAP queues and
 * the vsock socket. It also builds the made-up guest boot log and the JSON of vm.info. */

#include <jansson.h>
#include <stdbool.h>

#include "ch-config.h"

typedef enum VmState {
        VM_STATE_NONE, /* no VM created */
        VM_STATE_CREATED,
        VM_STATE_RUNNING,
        VM_STATE_PAUSED,
        VM_STATE_SHUTDOWN,
} VmState;

const char *vm_state_to_string(VmState state);

typedef struct VmDevices {
        int *disk_fds;
        size_t n_disk_fds;
        int *tap_fds;
        size_t n_tap_fds;
        int vsock_fd;
} VmDevices;

#define VM_DEVICES_INIT { .vsock_fd = -1 }

/* Check the payload files and open every device as CH does when it boots the VM. On failure,
 * fill chain with CH's messages and return < 0. On success, devices contains the open fds, and
 * NICs without a MAC address get a random one in config. */
int vm_devices_open(ChConfig *config, VmDevices *devices, ChErrorChain *chain);
void vm_devices_close(VmDevices *devices);

/* The guest's hostname: cocoon.hostname= from the kernel command line, else the host field of
 * the first ip=, else "localhost". Returns a heap string. */
char *vm_guest_hostname(const ChConfig *config);

/* The made-up boot log as one heap string, lines ending in "\n". */
char *vm_boot_log(const ChConfig *config);

json_t *vm_info_json(const ChConfig *config, VmState state);
json_t *vm_counters_json(const ChConfig *config);
