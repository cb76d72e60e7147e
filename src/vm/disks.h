/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

/* Create the writable layer of an OCI VM: a sparse raw file of size bytes, formatted ext4 on the
 * host so the guest mounts it without formatting. The file must not exist yet. */
int disks_create_cow(const char *path, uint64_t size);

/* Create a qcow2 overlay on a cloud image's base and grow it to size bytes; never shrinks: when
 * the base is larger, the overlay keeps the base's size. */
int disks_create_overlay(const char *path, const char *base, uint64_t size);
