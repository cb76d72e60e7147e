/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cmdline.h"
#include "error.h"
#include "strv.h"

static int append(char **s, const char *fmt, ...) _printf_(2, 3);
static int append(char **s, const char *fmt, ...) {
        _cleanup_free_ char *piece = NULL;
        va_list ap;
        char *n;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&piece, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        n = *s ? strjoin(*s, " ", piece, NULL) : strdup(piece);
        if (!n)
                return -ENOMEM;
        free(*s);
        *s = n;
        return 0;
}

static bool is_ipv4(const char *s) {
        struct in_addr a;

        return s && inet_pton(AF_INET, s, &a) == 1;
}

static int prefix_to_netmask(unsigned prefix, char buf[INET_ADDRSTRLEN]) {
        struct in_addr a = { .s_addr = htonl(prefix == 0 ? 0 : 0xffffffffU << (32 - prefix)) };

        if (prefix > 32)
                return -EINVAL;
        return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN) ? 0 : -errno;
}

static bool is_serial(const char *s) {
        size_t n = s ? strlen(s) : 0;

        /* Cloud Hypervisor limits a virtio-blk serial to 20 bytes. */
        return n > 0 && n <= 20 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

int cmdline_build(const Vm *vm, const char *console, char *const *dns, char **ret) {
        _cleanup_strv_free_ char **layers = NULL;
        _cleanup_free_ char *s = NULL, *joined = NULL;
        const char *cow = NULL;
        int r;

        r = vm_name_validate(vm->name);
        if (r < 0)
                return r;

        /* Layers are stacked top first; the record lists them base first. */
        for (size_t i = vm->n_storage; i > 0; i--) {
                const VmStorage *st = &vm->storage_configs[i - 1];

                if (st->role == STORAGE_LAYER) {
                        if (!is_serial(st->serial))
                                return error_set(-EINVAL, "invalid disk serial '%s'", st->serial ?: "");
                        r = strv_extend(&layers, st->serial);
                        if (r < 0)
                                return r;
                } else if (st->role == STORAGE_COW)
                        cow = st->serial;
        }
        if (!layers || !cow || !is_serial(cow))
                return error_set(-EINVAL, "an OCI VM needs layer disks and a COW disk");

        joined = strv_join(layers, ",");
        if (!joined)
                return -ENOMEM;

        r = append(&s, "console=%s loglevel=3 boot=cocoon-overlay cocoon.layers=%s cocoon.cow=%s "
                       "cocoon.hostname=%s clocksource=kvm-clock rw", console, joined, cow, vm->name);
        if (r < 0)
                return r;

        STRV_FOREACH(d, dns)
                if (!is_ipv4(*d) && !strchr(*d, ':'))
                        return error_set(-EINVAL, "invalid DNS server '%s'", *d);
        if (dns && dns[0] && strchr(dns[0], ':'))
                dns = NULL;  /* the kernel's ip= format has no room for IPv6 servers */

        if (vm->n_nics > 0) {
                r = append(&s, "net.ifnames=0");
                if (r < 0)
                        return r;
        }

        /* One ip= per NIC in the kernel's format client::gateway:netmask:hostname:device:off.
         * initramfs-tools only acts on the last one, so the guest init of the Cocoon contract
         * reads them all (cocoon-image(7)). */
        for (size_t i = 0; i < vm->n_nics; i++) {
                const VmNic *n = &vm->nics[i];
                char mask[INET_ADDRSTRLEN];

                if (!n->ip)
                        continue;
                if (!is_ipv4(n->ip) || (n->gateway && !is_ipv4(n->gateway)) ||
                    prefix_to_netmask(n->prefix, mask) < 0)
                        return error_set(-EINVAL, "invalid address of NIC %zu", i);
                r = append(&s, "ip=%s::%s:%s:%s:eth%zu:off%s%s%s%s", n->ip, n->gateway ?: "", mask,
                           vm->name, i, dns && dns[0] ? ":" : "", dns && dns[0] ? dns[0] : "",
                           dns && dns[0] && dns[1] ? ":" : "", dns && dns[0] && dns[1] ? dns[1] : "");
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(s);
        return 0;
}
