/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "network.h"
#include "store.h"
#include "unit.h"
#include "vm.h"

/* Where things are and how long to wait: what the engine needs from the configuration. */
typedef struct LifecycleContext {
        const Store *store;
        const char *root_dir;
        const char *run_dir;           /* per-VM runtime directories go below it */
        const char *cocoon_path;       /* this program, for ExecStop= to call back */
        unsigned stop_timeout_sec;     /* graceful shutdown before systemd's SIGTERM */
        const char *root_password;     /* cloud images: hashed into cidata; may be NULL */
        const char *firmware;          /* configured UEFI firmware; NULL = search the defaults */
        char **dns;                    /* guest DNS servers */
        NetworkConfig network;         /* CNI directories; network selects the CNI network */
} LifecycleContext;

typedef struct VmCreateOptions {
        const char *name;              /* NULL: derived from the image */
        unsigned cpu;
        uint64_t memory;
        uint64_t storage;
        unsigned nics;
        bool autostart;
        const char *hypervisor;        /* "cloud-hypervisor", "qemu" or "auto" */
        char **properties;             /* "KEY=VALUE" unit resource settings */
        char **ssh_key_files;          /* cloud images: authorized keys files; may be NULL */
        const char *network;           /* CNI network name; NULL = the first configuration */
} VmCreateOptions;

/* Validate the options, resolve the image, reserve the name and a "creating" record that pins the
 * image's blobs, then build the disks. On failure everything the call made is removed. */
int lifecycle_create(const LifecycleContext *ctx, const char *image, const VmCreateOptions *opts,
                     Vm **ret);

/* Everything lifecycle_create() would record, without creating anything: for `vm debug`. */
int lifecycle_plan(const LifecycleContext *ctx, const char *image, const VmCreateOptions *opts,
                   Vm **ret);

/* Start the VM's unit and wait until the VMM responds on its control socket. Returns 0, or 1 when
 * the VM was already running. */
int lifecycle_start(const LifecycleContext *ctx, Vm *vm);

/* Stop the VM's unit: ACPI power button and up to stop_timeout_sec for the guest to power off
 * (the unit's ExecStop=), then SIGTERM and SIGKILL from systemd. force skips the power button.
 * Returns 0, or 1 when the VM was not running. */
int lifecycle_stop(const LifecycleContext *ctx, Vm *vm, bool force);

/* Remove a VM: its unit, runtime and data directories, and its record. A running VM needs force
 * (it is stopped first). */
int lifecycle_remove(const LifecycleContext *ctx, Vm *vm, bool force);

/* The unit that runs the VM, as `vm start` sends it and `vm debug` prints it. */
int lifecycle_unit_spec(const LifecycleContext *ctx, const Vm *vm, const char *program,
                        unsigned version, UnitSpec **ret);

/* The state to show: the unit's state wins over the record (running units are "running",
 * failed units "error", a record in state running with no unit behind it is "stopped"). */
VmState lifecycle_effective_state(const Vm *vm, const char *active_state);

/* Body of the unit's ExecStopPost=: take the VM's TAPs and veths down, so that a stopped VM
 * cannot keep receiving redirected frames, whichever way the unit stopped. */
int lifecycle_network_down(const LifecycleContext *ctx, const Vm *vm);

/* Body of the unit's ExecStop=: press the power button and wait for the VMM (main_pid) to
 * exit, up to the stop timeout. Errors are only reported: systemd sends SIGTERM afterwards
 * in any case. */
int lifecycle_shutdown_hook(const LifecycleContext *ctx, Vm *vm, int main_pid);
