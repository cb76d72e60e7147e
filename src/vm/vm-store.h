/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "store.h"
#include "vm.h"

/* VM records live in vms/<id>/vm.json, one file each; names/<name> is a symlink to ../vms/<id>
 * that reserves the name: symlink(2) fails with EEXIST when the name is taken, atomically. */

/* Reserve vm->name and write the record (normally in state "creating"). -EEXIST with a reason
 * when the name is taken by another VM. */
int vm_store_reserve(const Store *s, const Vm *vm);

/* Rewrite the record atomically. */
int vm_store_save(const Store *s, Vm *vm);

int vm_store_load(const Store *s, const char *id, Vm **ret);

/* Every readable record, sorted by creation time, then id. Unreadable ones are counted. */
int vm_store_list(const Store *s, Vm ***ret, size_t *ret_n, size_t *ret_skipped);

/* Find a VM by exact id, exact name, or unique id prefix of at least 3 characters, in that order.
 * -ENOENT "VM 'x' not found"; -ENOTUNIQ "ambiguous VM reference 'x': matches ...". */
int vm_store_resolve(const Store *s, const char *ref, Vm **ret);

/* Remove the record, its directory and its name reservation. */
int vm_store_remove(const Store *s, const Vm *vm);

/* Lock a VM for a lifecycle operation (blocking, exclusive; LOCK_NB may be or-ed in). */
int vm_store_lock(const Store *s, const char *id, int operation, int *ret_fd);

char *vm_store_dir(const Store *s, const char *id);
