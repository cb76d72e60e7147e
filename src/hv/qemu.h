/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "hypervisor.h"
#include "vm.h"

/* The QEMU backend: q35 (x86_64) or virt (aarch64), direct kernel boot or UEFI, virtio-blk
 * disks, virtio-net on TAP devices, the guest console on a serial port, and control over QMP on
 * <run_dir>/qmp.sock. */

extern const HypervisorOps qemu_ops;

typedef enum QemuAccelerator {
        QEMU_ACCELERATOR_KVM,
        QEMU_ACCELERATOR_TCG,
        _QEMU_ACCELERATOR_MAX,
        _QEMU_ACCELERATOR_INVALID = -EINVAL,
} QemuAccelerator;

const char *qemu_accelerator_to_string(QemuAccelerator a);
QemuAccelerator qemu_accelerator_from_string(const char *s);

/* The file under the run directory (e.g. /run/cocoon) that keeps the KVM probe result, so the
 * probe runs once per boot. */
#define QEMU_ACCELERATOR_CACHE "qemu-accelerator"

/* Run a tiny guest under KVM: it clears 8 MiB of its memory in 64-bit mode, which takes
 * milliseconds where KVM works. Returns 1 when KVM is usable, 0 when it is not (with a reason
 * in *ret_reason), or a negative errno when the probe itself failed. */
int qemu_kvm_probe(char **ret_reason);

/* Pick the accelerator. forced is "kvm", "tcg", "auto", or NULL/empty for auto. auto runs the KVM
 * probe, or reads its result from <cache_dir>/qemu-accelerator, and cache_dir NULL disables the
 * cache. *ret_note (may be NULL) receives a sentence for the user when the probe has just found
 * KVM unusable and TCG is used instead, NULL otherwise, so that the fallback is reported once
 * per boot. A forced "kvm" fails when /dev/kvm cannot be opened. */
int qemu_accelerator_choose(const char *forced, const char *cache_dir, QemuAccelerator *ret,
                            char **ret_note);

/* Set the accelerator preference ("kvm", "tcg" or "auto") that the backend's build_argv uses,
 * for example from "[VM] Accelerator=" or a command-line flag. NULL means auto. */
int qemu_accelerator_set_preference(const char *value);

/* Build the argv of a VM for the given accelerator. Pure. */
int qemu_build_argv_accel(const Vm *vm, const char *program, QemuAccelerator accel, char ***ret);

/* Per-VM paths in vm->run_dir: the QMP socket, and the serial port's socket that the console
 * relay connects to. */
char *qemu_qmp_socket_path(const Vm *vm);
char *qemu_serial_socket_path(const Vm *vm);

/* The per-VM UEFI variable store, <data_dir>/efivars.fd, used with a split OVMF_CODE image. */
char *qemu_uefi_vars_path(const Vm *vm);

/* Create the files the argv refers to that the engine does not create itself: the UEFI
 * variable store, a copy of the OVMF_VARS template next to vm->firmware_path. Does nothing for
 * direct kernel boot, for a combined OVMF.fd, or when the store exists already. */
int qemu_prepare(const Vm *vm);

typedef enum QmpMessageType {
        QMP_MESSAGE_GREETING,
        QMP_MESSAGE_RETURN,
        QMP_MESSAGE_ERROR,
        QMP_MESSAGE_EVENT,
        _QMP_MESSAGE_TYPE_MAX,
        _QMP_MESSAGE_TYPE_INVALID = -EINVAL,
} QmpMessageType;

typedef struct QmpMessage {
        QmpMessageType type;
        json_t *value;       /* "return" value, "QMP" greeting object, or the event object */
        char *error_class;   /* for QMP_MESSAGE_ERROR */
        char *error_desc;
        char *event;         /* for QMP_MESSAGE_EVENT: the event name */
} QmpMessage;

void qmp_message_done(QmpMessage *m);

/* Parse one QMP line (one JSON object). Pure. */
int qmp_message_parse(const char *line, QmpMessage *ret);

/* Connect to a QMP socket, negotiate capabilities, run command (no arguments) and return its
 * "return" value in *ret (may be NULL). Asynchronous events are skipped. Each step is bounded by
 * timeout_ms. */
int qmp_execute(const char *socket_path, const char *command, int timeout_ms, json_t **ret);

/* Ask QEMU to exit at once, without involving the guest. */
int qemu_quit(const Vm *vm);
