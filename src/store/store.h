/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <sys/file.h>

#include <jansson.h>

#include "macro.h"

/* The state store under root-dir:
 *
 *   images/oci/<key>.json        one record per OCI image (key = sha256 of the normalised name)
 *   images/cloud/<key>.json      one record per cloud image
 *   blobs/sha256/<hex>.erofs     content-addressed, read-only blobs
 *   boot/<layer hex>/vmlinuz     boot files found in a layer, and initrd.img
 *   vms/<id>/vm.json             one record per VM, beside its disks
 *   names/<name> -> ../vms/<id>  VM name reservations
 *   tmp/<op>-XXXXXX/             per-operation work dirs; gc reclaims stale ones
 *   locks/                       flock(2) lock files; never hold data
 *
 * Every record is written atomically (temp + fsync + rename + directory fsync). */
typedef struct Store {
        char *root;
} Store;

int store_open(const char *root_dir, Store **ret);
Store *store_free(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_free);

/* Join root and the path components (NULL-terminated) into a new heap string. */
char *store_path(const Store *s, const char *first, ...) _sentinel_;

/* Create a fresh work directory tmp/<prefix>-XXXXXX. */
int store_mkdtemp(const Store *s, const char *prefix, char **ret);

/* Take a flock(2) on locks/<name>.lock, creating it if needed. operation is LOCK_SH or LOCK_EX,
 * optionally with LOCK_NB (then -EWOULDBLOCK when busy). Without LOCK_NB the call sleeps in the
 * kernel until the lock is free; nothing polls. The returned fd holds the lock until closed.
 * A lock file may be unlinked by its exclusive holder (gc); a waiter that wakes on an unlinked
 * file notices and locks the new one. */
int store_lock(const Store *s, const char *name, int operation, int *ret_fd);

/* Write a JSON record atomically with mode 0644. */
int store_write_json(const char *path, json_t *j);
/* Read a JSON record; -ENOENT when missing, -EBADMSG with a reason when it does not parse. */
int store_read_json(const char *path, json_t **ret);
