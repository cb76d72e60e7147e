/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "vm.h"

/* Build the Cloud Hypervisor argv for a VM. version is the major version of the binary (0 when
 * unknown: assume a current release); keys older releases reject are left out for them. */
int ch_build_argv(const Vm *vm, const char *program, unsigned version, char ***ret);

/* One REST call over the API socket, e.g. ("PUT", "vm.power-button"). */
int ch_api_call(const char *socket, const char *method, const char *endpoint, long *ret_status);
