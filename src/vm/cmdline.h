/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "vm.h"

/* Build the kernel command line of an OCI VM, following the guest contract of cocoon-image(7):
 *
 *   console=<console> loglevel=3 boot=cocoon-overlay cocoon.layers=<top,...,base>
 *   cocoon.cow=cocoon-cow cocoon.hostname=<name> [net.ifnames=0 ip=... per NIC]
 *
 * Each ip= carries the first two DNS servers in its dns0 and dns1 fields. console is the guest device the backend wires to the journal ("hvc0" for Cloud Hypervisor's
 * virtio console, "ttyS0" for a serial port). Every value is validated before it is inserted, so
 * nothing a user typed can add another kernel argument. */
int cmdline_build(const Vm *vm, const char *console, char *const *dns, char **ret);
