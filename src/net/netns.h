/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/* Named network namespaces, compatible with "ip netns": a namespace NAME is kept alive by a bind
 * mount of its nsfs file on /run/netns/NAME. */

#define NETNS_RUN_DIR "/run/netns"

/* /run/netns/NAME, or NULL when out of memory. */
char *netns_path(const char *name);

/* True when path is a mounted network namespace, not just a file left behind: /run/netns may
 * survive a reboot on hosts where /run is not a tmpfs, and then contains empty files. */
bool netns_is_mounted(const char *path);

/* Create the namespace NAME. -EEXIST when it exists; a leftover empty file of that name is
 * replaced. */
int netns_create(const char *name);

/* Unmount and remove /run/netns/NAME. A missing namespace is success. The kernel frees the
 * namespace, and every interface in it, once no process uses it any more. */
int netns_delete(const char *name);

/* Run fn(userdata) on a short-lived thread that has entered the network namespace at path, so that
 * sockets, ioctls and TUNSETIFF act inside it while the caller's threads stay where they are.
 * Returns what fn returns; an error reason fn records reaches the caller. */
int netns_run(const char *path, int (*fn)(void *userdata), void *userdata);
