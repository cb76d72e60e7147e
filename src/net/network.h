/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <arpa/inet.h>
#include <stddef.h>

#include "vm.h"

/* The network of a VM: one named network namespace, /run/netns/cocoon-<vm id>, in which the
 * hypervisor runs. Per NIC i, CNI ADD (container id = VM id) puts the veth eth<i> there; the
 * persistent TAP tap<i> beside it is wired to the veth with tc mirred redirects, and the guest
 * takes over the veth's MAC and IPv4 address.
 *
 * Ownership: <state_dir>/netns/<vm id> is written before the namespace is created and removed
 * last. Cocoon deletes a namespace only when it is named cocoon-<vm id> and that marker exists
 * in its own state_dir, so another installation's namespaces are never touched. CNI results are
 * cached in <state_dir>/cache.
 *
 * The caller serialises operations on one VM (the per-VM lock). */

typedef struct NetworkConfig {
        const char *conf_dir;    /* CNI configuration directory */
        const char *bin_dir;     /* CNI plugin directories (CNI_PATH), ':'-separated */
        const char *network;     /* network name for network_create(); NULL = the first list */
        const char *state_dir;   /* <root-dir>/cni */
        unsigned timeout_sec;    /* per plugin run; 0 = CNI_TIMEOUT_DEFAULT_SEC */
} NetworkConfig;

/* "cocoon-<vm id>" and "/run/netns/cocoon-<vm id>"; NULL when out of memory. */
char *network_netns_name(const char *vm_id);
char *network_netns_path(const char *vm_id);

/* Create the namespace and n_nics NICs on the network c->network. queue_pairs is the number of
 * virtio-net queue pairs of the VMM (0 counts as 1); with more than one the TAPs are
 * multi-queue. Every VmNic is filled: if_name eth<i>, tap tap<i>, mac (of the veth), num_queues
 * 2 * queue_pairs, queue_size 0 (the VMM's default), netns_path, network, and ip/gateway/prefix of
 * the first IPv4 address (ip NULL when the plugins returned none: the guest uses DHCP). With
 * n_nics 0 nothing is created and no configuration is needed. On failure everything made so far
 * is undone (CNI DEL of every NIC tried, namespace and marker removed). */
int network_create(const NetworkConfig *c, const char *vm_id, unsigned n_nics, unsigned queue_pairs,
                   VmNic **ret_nics, size_t *ret_n);

/* Bring the links of every NIC up before the VMM starts. A NIC whose veth or TAP is missing is
 * rebuilt, and so is every NIC when the namespace itself is gone (after a host reboot). A rebuild
 * runs CNI DEL of the stale attachment and ADD with CNI_ARGS "IgnoreUnknown=1;IP=<recorded ip>",
 * sets the recorded MAC on the new veth, then makes TAP and redirects as network_create() does.
 * Returns 1 when something was rebuilt. The IPAM plugin may have handed out another address,
 * so the caller then saves nics, which contains the current values. Returns 0 when all links
 * were present. */
int network_up(const NetworkConfig *c, const char *vm_id, VmNic *nics, size_t n);

/* Take every TAP and veth down, so that a stopped VM's TAP without a reader gets no frames
 * redirected to it. A missing namespace or link is fine. Tries every link and returns the first
 * error. */
int network_down(const NetworkConfig *c, const char *vm_id, const VmNic *nics, size_t n);

/* CNI DEL of every NIC, and of every other attachment of this VM in the cache, then delete the
 * namespace (only with its marker) and the marker. Works when the namespace is already gone and
 * with nics NULL, n 0 (a stale VM found by network_list_stale()). The marker stays when a DEL
 * failed, so a later call can retry from the cache. Tries everything and returns the first
 * error. */
int network_remove(const NetworkConfig *c, const char *vm_id, const VmNic *nics, size_t n);

/* Check that the namespace and every veth and TAP exist, then run CNI CHECK per NIC. The cached
 * result goes to CHECK without its addresses and routes, because the guest owns them and the veth
 * has none. The CNI part is skipped for a network that sets disableCheck or predates CHECK. */
int network_check(const NetworkConfig *c, const char *vm_id, const VmNic *nics, size_t n);

/* The VM ids with a marker in c->state_dir but not in live_ids: leftovers of this installation
 * to pass to network_remove(). Sorted; an empty list when there are none. */
int network_list_stale(const NetworkConfig *c, char *const *live_ids, char ***ret_ids);

/* Free the strings of n NICs and the array. */
void network_nics_free(VmNic *nics, size_t n);

/* Helpers, pure. */
bool network_vm_id_is_valid(const char *id);
/* Split an IPv4 "a.b.c.d/N" into the address and the prefix length. */
int network_parse_ipv4_cidr(const char *cidr, char **ret_ip, unsigned *ret_prefix);
int network_prefix_to_netmask(unsigned prefix, char ret[static INET_ADDRSTRLEN]);
/* The prefix length of a contiguous IPv4 netmask; -EINVAL for "255.0.255.0". */
int network_netmask_to_prefix(const char *netmask, unsigned *ret);
/* CNI_ARGS asking the IPAM plugin for ip again: "IgnoreUnknown=1;IP=<ip>". */
int network_request_ip_args(const char *ip, char **ret);
