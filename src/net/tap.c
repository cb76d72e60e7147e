/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "error.h"
#include "netns.h"
#include "process.h"
#include "strv.h"
#include "tap.h"

/* ip and tc finish in milliseconds; this only bounds a hung tool. */
#define TOOL_TIMEOUT_SEC 30

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

int tap_mac_parse(const char *s, unsigned char ret[static 6]) {
        unsigned char mac[6];

        if (!s || strlen(s) != 17)
                return -EINVAL;
        for (size_t i = 0; i < 6; i++) {
                int hi = hex_digit(s[i * 3]), lo = hex_digit(s[i * 3 + 1]);

                if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
                        return -EINVAL;
                mac[i] = (unsigned char) (hi << 4 | lo);
        }
        memcpy(ret, mac, 6);
        return 0;
}

void tap_mac_format(const unsigned char mac[static 6], char ret[static TAP_MAC_STRING_MAX]) {
        snprintf(ret, TAP_MAC_STRING_MAX, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                 mac[4], mac[5]);
}

/* One ioctl-level operation on one interface, run inside the namespace by netns_run(). */
typedef struct LinkOp {
        const char *netns;
        const char *ifname;
        enum { OP_TAP_CREATE, OP_EXISTS, OP_GET, OP_SET_MAC, OP_SET_MTU, OP_SET_UP, OP_DISABLE_IPV6 } op;
        bool flag;
        unsigned mtu;
        unsigned char mac[6];
} LinkOp;

static int ifreq_prepare(const LinkOp *o, struct ifreq *ifr) {
        *ifr = (struct ifreq) {};
        if (strlen(o->ifname) >= sizeof(ifr->ifr_name))
                return error_set(-EINVAL, "interface name '%s' is too long", o->ifname);
        strncpy(ifr->ifr_name, o->ifname, sizeof(ifr->ifr_name) - 1);
        return 0;
}

static int op_fail(const LinkOp *o, const char *what) {
        int r = negative_errno();

        if (r == -ENODEV)
                return error_set(r, "interface %s not found in network namespace %s", o->ifname, o->netns);
        return error_set(r, "cannot %s %s in network namespace %s: %s", what, o->ifname, o->netns,
                         strerror(-r));
}

static int op_tap_create(LinkOp *o) {
        _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        struct ifreq ifr;
        int r;

        if (fd < 0)
                return error_set(-errno, "cannot open /dev/net/tun: %s", strerror(errno));
        r = ifreq_prepare(o, &ifr);
        if (r < 0)
                return r;
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (o->flag ? IFF_MULTI_QUEUE : 0);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                return op_fail(o, "create TAP");
        if (ioctl(fd, TUNSETPERSIST, 1) < 0)
                return op_fail(o, "make persistent TAP");
        return 0;
}

/* /proc/sys/net shows the network namespace of the thread that opens it, which is the one
 * netns_run() entered. */
static int op_disable_ipv6(const LinkOp *o) {
        _cleanup_free_ char *path = strjoin("/proc/sys/net/ipv6/conf/", o->ifname, "/disable_ipv6", NULL);
        _cleanup_close_ int fd = -EBADF;

        if (!path)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && access("/proc/sys/net/ipv6", F_OK) < 0)
                return 0;  /* a kernel without IPv6 */
        if (fd < 0 || write(fd, "1", 1) != 1)
                return op_fail(o, "disable IPv6 on");
        return 0;
}

static int op_run(void *userdata) {
        LinkOp *o = userdata;
        _cleanup_close_ int fd = -EBADF;
        struct ifreq ifr;
        int r;

        if (o->op == OP_TAP_CREATE)
                return op_tap_create(o);
        if (o->op == OP_DISABLE_IPV6)
                return op_disable_ipv6(o);
        if (o->op == OP_EXISTS)
                return if_nametoindex(o->ifname) > 0;

        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = ifreq_prepare(o, &ifr);
        if (r < 0)
                return r;

        switch (o->op) {
        case OP_GET:
                if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
                        return op_fail(o, "read the MAC address of");
                memcpy(o->mac, ifr.ifr_hwaddr.sa_data, 6);
                if (ioctl(fd, SIOCGIFMTU, &ifr) < 0)
                        return op_fail(o, "read the MTU of");
                o->mtu = (unsigned) ifr.ifr_mtu;
                return 0;

        case OP_SET_MAC:
                if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                        return op_fail(o, "read the flags of");
                ifr.ifr_flags &= ~IFF_UP;
                if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                        return op_fail(o, "take down");
                ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
                memcpy(ifr.ifr_hwaddr.sa_data, o->mac, 6);
                if (ioctl(fd, SIOCSIFHWADDR, &ifr) < 0)
                        return op_fail(o, "set the MAC address of");
                return 0;

        case OP_SET_MTU:
                ifr.ifr_mtu = (int) o->mtu;
                if (ioctl(fd, SIOCSIFMTU, &ifr) < 0)
                        return op_fail(o, "set the MTU of");
                return 0;

        case OP_SET_UP:
                if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                        return op_fail(o, "read the flags of");
                if (o->flag)
                        ifr.ifr_flags |= IFF_UP;
                else
                        ifr.ifr_flags &= ~IFF_UP;
                if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                        return op_fail(o, o->flag ? "bring up" : "take down");
                return 0;

        default:
                return -EINVAL;
        }
}

static int link_op(LinkOp *o) {
        _cleanup_free_ char *path = netns_path(o->netns);

        if (!path)
                return -ENOMEM;
        return netns_run(path, op_run, o);
}

int tap_create(const char *netns, const char *name, bool multi_queue) {
        LinkOp o = { .netns = netns, .ifname = name, .op = OP_TAP_CREATE, .flag = multi_queue };

        return link_op(&o);
}

int tap_link_exists(const char *netns, const char *ifname) {
        LinkOp o = { .netns = netns, .ifname = ifname, .op = OP_EXISTS };

        return link_op(&o);
}

int tap_link_get(const char *netns, const char *ifname, char ret_mac[static TAP_MAC_STRING_MAX],
                 unsigned *ret_mtu) {
        LinkOp o = { .netns = netns, .ifname = ifname, .op = OP_GET };
        int r;

        r = link_op(&o);
        if (r < 0)
                return r;
        tap_mac_format(o.mac, ret_mac);
        *ret_mtu = o.mtu;
        return 0;
}

int tap_link_set_mac(const char *netns, const char *ifname, const char *mac) {
        LinkOp o = { .netns = netns, .ifname = ifname, .op = OP_SET_MAC };

        if (tap_mac_parse(mac, o.mac) < 0)
                return error_set(-EINVAL, "invalid MAC address '%s'", mac);
        return link_op(&o);
}

int tap_link_set_mtu(const char *netns, const char *ifname, unsigned mtu) {
        LinkOp o = { .netns = netns, .ifname = ifname, .op = OP_SET_MTU, .mtu = mtu };

        return link_op(&o);
}

int tap_link_set_up(const char *netns, const char *ifname, bool up) {
        LinkOp o = { .netns = netns, .ifname = ifname, .op = OP_SET_UP, .flag = up };

        return link_op(&o);
}

int tap_link_disable_ipv6(const char *netns, const char *ifname) {
        LinkOp o = { .netns = netns, .ifname = ifname, .op = OP_DISABLE_IPV6 };

        return link_op(&o);
}

static int run_tool(char *const *argv) {
        return process_run_checked(argv, TOOL_TIMEOUT_SEC);
}

int tap_flush_ipv4(const char *netns, const char *ifname) {
        char *argv[] = { (char *) "ip", (char *) "-n", (char *) netns, (char *) "-4", (char *) "addr",
                         (char *) "flush", (char *) "dev", (char *) ifname, NULL };

        return run_tool(argv);
}

int tap_link_delete(const char *netns, const char *ifname) {
        char *argv[] = { (char *) "ip", (char *) "-n", (char *) netns, (char *) "link", (char *) "del",
                         (char *) "dev", (char *) ifname, NULL };
        int r;

        r = tap_link_exists(netns, ifname);
        if (r <= 0)
                return r;
        return run_tool(argv);
}

static int add_ingress(const char *netns, const char *dev) {
        char *argv[] = { (char *) "tc", (char *) "-n", (char *) netns, (char *) "qdisc", (char *) "add",
                         (char *) "dev", (char *) dev, (char *) "ingress", NULL };

        return run_tool(argv);
}

static int add_redirect(const char *netns, const char *from, const char *to) {
        char *argv[] = { (char *) "tc", (char *) "-n", (char *) netns, (char *) "filter", (char *) "add",
                         (char *) "dev", (char *) from, (char *) "parent", (char *) "ffff:",
                         (char *) "protocol", (char *) "all", (char *) "prio", (char *) "1",
                         (char *) "u32", (char *) "match", (char *) "u8", (char *) "0", (char *) "0",
                         (char *) "action", (char *) "mirred", (char *) "egress", (char *) "redirect",
                         (char *) "dev", (char *) to, NULL };

        return run_tool(argv);
}

int tap_redirect(const char *netns, const char *veth, const char *tap) {
        int r;

        if ((r = add_ingress(netns, veth)) < 0 ||
            (r = add_ingress(netns, tap)) < 0 ||
            (r = add_redirect(netns, veth, tap)) < 0 ||
            (r = add_redirect(netns, tap, veth)) < 0)
                return r;
        return 0;
}
