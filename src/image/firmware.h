/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "macro.h"
#include "store.h"

/* UEFI firmware for booting cloud images. */
typedef enum FirmwareKind {
        FIRMWARE_CLOUD_HYPERVISOR,  /* CLOUDHV.fd, given to cloud-hypervisor --firmware */
        FIRMWARE_QEMU,              /* OVMF code, as Debian's ovmf package installs it */
        _FIRMWARE_KIND_MAX,
        _FIRMWARE_KIND_INVALID = -EINVAL,
} FirmwareKind;

/* The paths firmware_find() tries, in order: only configured_path when it is set, otherwise
 * <root>/firmware/CLOUDHV.fd for Cloud Hypervisor, or for QEMU <root>/firmware/OVMF_CODE_4M.fd,
 * then the ovmf package's /usr/share/OVMF/OVMF_CODE_4M.fd, /usr/share/OVMF/OVMF_CODE.fd and
 * /usr/share/ovmf/OVMF.fd. A NULL-terminated list. */
int firmware_candidates(const Store *s, const char *configured_path, FirmwareKind kind, char ***ret);

/* Find the firmware file of kind: the first candidate that is a non-empty, readable regular
 * file. Returns -ENOENT with a reason that lists the paths tried and what to do.
 * NOTE: for QEMU this is only the code image; a split OVMF_CODE*.fd also needs the matching
 * OVMF_VARS*.fd template, which the caller must find next to it. */
int firmware_find(const Store *s, const char *configured_path, FirmwareKind kind, char **ret);
