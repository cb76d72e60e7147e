/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "vm.h"

/* Build the Cloud Hypervisor argv for a VM. version is the major version of the binary (0 when
 * unknown: assume a current release); keys older releases reject are left out for them. */
int ch_build_argv(const Vm *vm, const char *program, unsigned version, char ***ret);

/* One REST call over the API socket, e.g. ("PUT", "vm.power-button"). */
int ch_api_call(const char *socket, const char *method, const char *endpoint, long *ret_status);

/* A GET request that keeps the answer's body (at most 1 MiB), e.g. "vm.info". */
int ch_api_get(const char *socket, const char *endpoint, long *ret_status, char **ret_body);

/* The PTY path of the virtio console (serial false) or the serial port from a vm.info response.
 * Pure, for tests. */
int ch_console_path_from_info(const char *info, bool serial, char **ret);
