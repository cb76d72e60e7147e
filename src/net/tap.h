/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/* Links inside a named network namespace: the TAP a VMM opens, the CNI veth it is wired to, and
 * the tc redirect between them. netns is a name under /run/netns. */

#define TAP_MAC_STRING_MAX 18

/* Create the persistent TAP name with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, plus IFF_MULTI_QUEUE when
 * multi_queue is set (the VMM uses more than one queue pair). The TUNSETIFF runs inside the
 * namespace, so the TAP is born there. The file descriptor is closed again: the VMM opens the
 * TAP by name. */
int tap_create(const char *netns, const char *name, bool multi_queue);

/* True when the interface exists in the namespace; -errno when the namespace cannot be entered. */
int tap_link_exists(const char *netns, const char *ifname);

/* Read the MAC address ("aa:bb:cc:dd:ee:ff") and MTU of an interface. */
int tap_link_get(const char *netns, const char *ifname, char ret_mac[static TAP_MAC_STRING_MAX],
                 unsigned *ret_mtu);

/* Set the MAC address; the link is taken down first because not every driver changes the
 * address of a running link. */
int tap_link_set_mac(const char *netns, const char *ifname, const char *mac);

int tap_link_set_mtu(const char *netns, const char *ifname, unsigned mtu);

/* Bring a link up or down. A missing link is -ENODEV. */
int tap_link_set_up(const char *netns, const char *ifname, bool up);

/* Turn IPv6 off on an interface, so that the namespace's own stack sends no router solicitations
 * or duplicate address probes through a link that belongs to the guest. Success on a kernel
 * without IPv6. */
int tap_link_disable_ipv6(const char *netns, const char *ifname);

/* Remove the IPv4 addresses of an interface ("ip -4 addr flush"). */
int tap_flush_ipv4(const char *netns, const char *ifname);

/* Add an ingress qdisc on both links and a u32 match-all filter on each that redirects every
 * frame to the egress of the other link (tc mirred). u32 and not matchall: some kernels are
 * built without the matchall classifier. */
int tap_redirect(const char *netns, const char *veth, const char *tap);

/* Delete a link ("ip link del"). A missing link is success. */
int tap_link_delete(const char *netns, const char *ifname);

/* Parse and format MAC addresses; the parser accepts upper and lower case hex. */
int tap_mac_parse(const char *s, unsigned char ret[static 6]);
void tap_mac_format(const unsigned char mac[static 6], char ret[static TAP_MAC_STRING_MAX]);
