/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cni.h"
#include "error.h"
#include "fileio.h"
#include "netns.h"
#include "network.h"
#include "strv.h"
#include "tap.h"

#define NETNS_PREFIX "cocoon-"
#define VM_ID_LENGTH 16

bool network_vm_id_is_valid(const char *id) {
        if (!id || strlen(id) != VM_ID_LENGTH)
                return false;
        for (size_t i = 0; i < VM_ID_LENGTH; i++)
                if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
                        return false;
        return true;
}

char *network_netns_name(const char *vm_id) {
        return strjoin(NETNS_PREFIX, vm_id, NULL);
}

char *network_netns_path(const char *vm_id) {
        return strjoin(NETNS_RUN_DIR "/" NETNS_PREFIX, vm_id, NULL);
}

int network_parse_ipv4_cidr(const char *cidr, char **ret_ip, unsigned *ret_prefix) {
        const char *slash = cidr ? strchr(cidr, '/') : NULL;
        char addr[INET_ADDRSTRLEN];
        struct in_addr a;
        unsigned long prefix;
        char *end, *ip;
        size_t n;

        if (!slash)
                return error_set(-EINVAL, "invalid IPv4 address '%s'; expected a.b.c.d/N", cidr ?: "");
        n = (size_t) (slash - cidr);
        if (n == 0 || n >= sizeof(addr) || slash[1] < '0' || slash[1] > '9')
                return error_set(-EINVAL, "invalid IPv4 address '%s'; expected a.b.c.d/N", cidr);
        memcpy(addr, cidr, n);
        addr[n] = '\0';
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0' || prefix > 32 || inet_pton(AF_INET, addr, &a) != 1)
                return error_set(-EINVAL, "invalid IPv4 address '%s'; expected a.b.c.d/N", cidr);

        ip = strdup(addr);
        if (!ip)
                return -ENOMEM;
        *ret_ip = ip;
        *ret_prefix = (unsigned) prefix;
        return 0;
}

int network_prefix_to_netmask(unsigned prefix, char ret[static INET_ADDRSTRLEN]) {
        struct in_addr a;

        if (prefix > 32)
                return error_set(-EINVAL, "invalid IPv4 prefix length %u; expected 0-32", prefix);
        a.s_addr = htonl(prefix == 0 ? 0 : ~0U << (32 - prefix));
        if (!inet_ntop(AF_INET, &a, ret, INET_ADDRSTRLEN))
                return -errno;
        return 0;
}

int network_netmask_to_prefix(const char *netmask, unsigned *ret) {
        struct in_addr a;
        uint32_t m;
        unsigned prefix;

        if (!netmask || inet_pton(AF_INET, netmask, &a) != 1)
                return error_set(-EINVAL, "invalid IPv4 netmask '%s'", netmask ?: "");
        m = ntohl(a.s_addr);
        prefix = (unsigned) __builtin_popcount(m);
        /* Contiguous: the set bits are exactly the top prefix bits. */
        if (m != (prefix == 0 ? 0 : ~0U << (32 - prefix)))
                return error_set(-EINVAL, "invalid IPv4 netmask '%s'; the bits are not contiguous", netmask);
        *ret = prefix;
        return 0;
}

int network_request_ip_args(const char *ip, char **ret) {
        _cleanup_free_ char *item = NULL;
        struct in_addr a;

        if (!ip || inet_pton(AF_INET, ip, &a) != 1)
                return error_set(-EINVAL, "invalid IPv4 address '%s'", ip ?: "");
        item = strjoin("IP=", ip, NULL);
        if (!item)
                return -ENOMEM;
        char *items[] = { (char *) "IgnoreUnknown=1", item, NULL };
        return cni_args_build(items, ret);
}

static void nic_done(VmNic *n) {
        free(n->if_name);
        free(n->tap);
        free(n->mac);
        free(n->netns_path);
        free(n->network);
        free(n->ip);
        free(n->gateway);
        *n = (VmNic) {};
}

void network_nics_free(VmNic *nics, size_t n) {
        for (size_t i = 0; nics && i < n; i++)
                nic_done(&nics[i]);
        free(nics);
}

static int replace_string(char **field, const char *value) {
        char *c = NULL;

        if (value && !(c = strdup(value)))
                return -ENOMEM;
        free(*field);
        *field = c;
        return 0;
}

static char *marker_path(const NetworkConfig *c, const char *vm_id) {
        return strjoin(c->state_dir, "/netns/", vm_id, NULL);
}

static CniRuntime runtime_of(const NetworkConfig *c, char *cache_dir) {
        return (CniRuntime) { .bin_dir = c->bin_dir, .cache_dir = cache_dir, .timeout_sec = c->timeout_sec };
}

static char *cache_dir_of(const NetworkConfig *c) {
        return strjoin(c->state_dir, "/cache", NULL);
}

static int check_vm_id(const char *vm_id) {
        if (!network_vm_id_is_valid(vm_id))
                return error_set(-EINVAL, "invalid VM id '%s'; expected 16 hex digits", vm_id ?: "");
        return 0;
}

/* The marker proves that this installation created the namespace; see network.h. */
static int marker_write(const NetworkConfig *c, const char *vm_id) {
        _cleanup_free_ char *path = marker_path(c, vm_id), *dir = NULL, *ns = network_netns_path(vm_id);
        _cleanup_free_ char *text = NULL;
        int r;

        dir = strjoin(c->state_dir, "/netns", NULL);
        if (!path || !dir || !ns || !(text = strjoin(ns, "\n", NULL)))
                return -ENOMEM;
        r = mkdir_p(dir, 0755);
        if (r >= 0)
                r = write_file_atomic(path, text, strlen(text), 0644);
        if (r < 0)
                return error_set(r, "cannot write %s: %s", path, strerror(-r));
        return 0;
}

static int marker_exists(const NetworkConfig *c, const char *vm_id) {
        _cleanup_free_ char *path = marker_path(c, vm_id);

        if (!path)
                return -ENOMEM;
        return access(path, F_OK) >= 0;
}

static int marker_remove(const NetworkConfig *c, const char *vm_id) {
        _cleanup_free_ char *path = marker_path(c, vm_id);

        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0 && errno != ENOENT)
                return error_set(-errno, "cannot remove %s: %s", path, strerror(errno));
        return 0;
}

/* Create the namespace of vm_id with its marker. On failure, a marker that did not exist before
 * is removed again. */
static int namespace_create(const NetworkConfig *c, const char *vm_id) {
        _cleanup_free_ char *name = network_netns_name(vm_id);
        bool had_marker;
        int r;

        if (!name)
                return -ENOMEM;
        r = marker_exists(c, vm_id);
        if (r < 0)
                return r;
        had_marker = r > 0;

        r = marker_write(c, vm_id);
        if (r < 0)
                return r;
        r = netns_create(name);
        if (r < 0 && !had_marker) {
                char *reason = error_save(r);

                (void) marker_remove(c, vm_id);
                return error_restore(r, reason);
        }
        return r;
}

/* Delete the namespace of vm_id, but only with this installation's marker. */
static int namespace_delete(const NetworkConfig *c, const char *vm_id) {
        _cleanup_free_ char *name = network_netns_name(vm_id);
        int r;

        if (!name)
                return -ENOMEM;
        r = marker_exists(c, vm_id);
        if (r <= 0)
                return r;
        return netns_delete(name);
}

/* Run CNI ADD for one NIC and wire its TAP. want_ip and want_mac request the values of an
 * earlier ADD. The NIC's fields are replaced on success. */
static int nic_add(const CniRuntime *rt, const CniNetwork *net, const char *vm_id, const char *ifname,
                   const char *tap, unsigned num_queues, const char *want_ip, const char *want_mac,
                   VmNic *nic) {
        _cleanup_free_ char *ns = network_netns_name(vm_id), *ns_path = network_netns_path(vm_id);
        _cleanup_free_ char *args = NULL, *ip = NULL;
        _cleanup_(cni_result_freep) CniResult *result = NULL;
        char mac[TAP_MAC_STRING_MAX];
        const CniIp *found;
        unsigned mtu, prefix = 0;
        int r;

        if (!ns || !ns_path)
                return -ENOMEM;
        if (want_ip) {
                r = network_request_ip_args(want_ip, &args);
                if (r < 0)
                        return r;
        }

        CniAttachment a = { .container_id = vm_id, .netns = ns_path, .ifname = ifname, .args = args };
        r = cni_add(rt, net, &a, &result);
        if (r < 0)
                return r;

        found = cni_result_find_ipv4(result, ifname);
        if (found) {
                r = network_parse_ipv4_cidr(found->address, &ip, &prefix);
                if (r < 0)
                        return r;
        }

        if (want_mac) {
                r = tap_link_set_mac(ns, ifname, want_mac);
                if (r < 0)
                        return r;
        }
        r = tap_link_get(ns, ifname, mac, &mtu);
        if (r < 0)
                return r;

        /* The guest owns the address. Left on the veth, it would make the namespace's own stack
         * reply to ARP for it. */
        if ((r = tap_flush_ipv4(ns, ifname)) < 0 ||
            (r = tap_link_disable_ipv6(ns, ifname)) < 0 ||
            (r = tap_create(ns, tap, num_queues > 2)) < 0 ||
            (r = tap_link_disable_ipv6(ns, tap)) < 0 ||
            (r = tap_link_set_mtu(ns, tap, mtu)) < 0 ||
            (r = tap_redirect(ns, ifname, tap)) < 0 ||
            (r = tap_link_set_up(ns, ifname, true)) < 0 ||
            (r = tap_link_set_up(ns, tap, true)) < 0)
                return r;

        if ((r = replace_string(&nic->if_name, ifname)) < 0 ||
            (r = replace_string(&nic->tap, tap)) < 0 ||
            (r = replace_string(&nic->mac, mac)) < 0 ||
            (r = replace_string(&nic->netns_path, ns_path)) < 0 ||
            (r = replace_string(&nic->network, net->name)) < 0 ||
            (r = replace_string(&nic->ip, ip)) < 0 ||
            (r = replace_string(&nic->gateway, found && found->gateway &&
                                strchr(found->gateway, '.') ? found->gateway : NULL)) < 0)
                return r;
        nic->prefix = prefix;
        nic->num_queues = num_queues;
        return 0;
}

/* Run CNI DEL for one attachment. The current configuration of network is a fallback only, so a
 * missing or broken file does not stop a DEL that the cache can do alone. */
static int nic_del(const NetworkConfig *c, const CniRuntime *rt, const char *vm_id, const char *network,
                   const char *ifname) {
        _cleanup_(cni_network_freep) CniNetwork *net = NULL;
        _cleanup_free_ char *ns_path = network_netns_path(vm_id);

        if (!ns_path)
                return -ENOMEM;
        if (cni_network_load(c->conf_dir, network, &net) < 0)
                error_clear();

        CniAttachment a = { .container_id = vm_id, .netns = ns_path, .ifname = ifname };
        return cni_del(rt, net, network, &a);
}

int network_create(const NetworkConfig *c, const char *vm_id, unsigned n_nics, unsigned queue_pairs,
                   VmNic **ret_nics, size_t *ret_n) {
        _cleanup_(cni_network_freep) CniNetwork *net = NULL;
        _cleanup_free_ char *cache_dir = cache_dir_of(c);
        VmNic *nics;
        unsigned tried = 0;
        bool created;
        int r;

        if (!cache_dir)
                return -ENOMEM;
        r = check_vm_id(vm_id);
        if (r < 0)
                return r;
        if (n_nics == 0) {
                *ret_nics = NULL;
                *ret_n = 0;
                return 0;
        }

        r = cni_network_load(c->conf_dir, c->network, &net);
        if (r < 0)
                return r;

        nics = calloc(n_nics, sizeof(VmNic));
        if (!nics)
                return -ENOMEM;

        CniRuntime rt = runtime_of(c, cache_dir);
        r = namespace_create(c, vm_id);
        created = r >= 0;
        for (unsigned i = 0; r >= 0 && i < n_nics; i++) {
                char ifname[16], tap[16];

                snprintf(ifname, sizeof(ifname), "eth%u", i);
                snprintf(tap, sizeof(tap), "tap%u", i);
                tried = i + 1;
                r = nic_add(&rt, net, vm_id, ifname, tap, 2 * MAX(queue_pairs, 1U), NULL, NULL, &nics[i]);
        }

        if (r < 0) {
                char *reason = error_save(r);

                /* A failed ADD may have left a veth or a lease behind: DEL it too. */
                for (unsigned i = tried; i > 0; i--) {
                        char ifname[16];

                        snprintf(ifname, sizeof(ifname), "eth%u", i - 1);
                        (void) nic_del(c, &rt, vm_id, net->name, ifname);
                }
                if (created) {
                        (void) namespace_delete(c, vm_id);
                        (void) marker_remove(c, vm_id);
                }
                network_nics_free(nics, n_nics);
                return error_restore(r, reason);
        }

        *ret_nics = nics;
        *ret_n = n_nics;
        return 0;
}

static const char *nic_ifname(const VmNic *nic, size_t i, char buf[static 32]) {
        if (nic->if_name)
                return nic->if_name;
        snprintf(buf, 32, "eth%zu", i);
        return buf;
}

static const char *nic_tap(const VmNic *nic, size_t i, char buf[static 32]) {
        if (nic->tap)
                return nic->tap;
        snprintf(buf, 32, "tap%zu", i);
        return buf;
}

static int nic_check_names(const VmNic *nic, size_t i, const char *ifname, const char *tap) {
        if (!cni_ifname_is_valid(ifname) || !cni_ifname_is_valid(tap))
                return error_set(-EINVAL, "invalid interface names of NIC %zu", i);
        if (!nic->network || !cni_network_name_is_valid(nic->network))
                return error_set(-EINVAL, "NIC %zu has no valid CNI network name", i);
        return 0;
}

/* Return 1 when both links of a NIC exist, 0 when either is missing. */
static int nic_links_present(const char *ns, const char *ifname, const char *tap) {
        int r;

        r = tap_link_exists(ns, ifname);
        if (r <= 0)
                return r;
        return tap_link_exists(ns, tap);
}

static int nic_rebuild(const NetworkConfig *c, const CniRuntime *rt, const char *vm_id, VmNic *nic,
                       const char *ifname, const char *tap) {
        _cleanup_(cni_network_freep) CniNetwork *net = NULL;
        _cleanup_free_ char *ns = network_netns_name(vm_id), *old_ip = NULL, *old_mac = NULL;
        _cleanup_free_ char *if_copy = strdup(ifname), *tap_copy = strdup(tap);
        int r;

        if (!ns || !if_copy || !tap_copy)
                return -ENOMEM;
        if ((nic->ip && !(old_ip = strdup(nic->ip))) || (nic->mac && !(old_mac = strdup(nic->mac))))
                return -ENOMEM;

        r = cni_network_load(c->conf_dir, nic->network, &net);
        if (r < 0)
                return r;

        /* Release the old lease first, because host-local rejects a requested address that is
         * still reserved, even by the same container. */
        r = nic_del(c, rt, vm_id, nic->network, if_copy);
        if (r < 0)
                return r;
        r = tap_link_delete(ns, tap_copy);
        if (r < 0)
                return r;

        return nic_add(rt, net, vm_id, if_copy, tap_copy, nic->num_queues ?: 2, old_ip, old_mac, nic);
}

int network_up(const NetworkConfig *c, const char *vm_id, VmNic *nics, size_t n) {
        _cleanup_free_ char *cache_dir = cache_dir_of(c), *ns = network_netns_name(vm_id);
        _cleanup_free_ char *ns_path = network_netns_path(vm_id);
        bool rebuilt = false;
        int r;

        if (!cache_dir || !ns || !ns_path)
                return -ENOMEM;
        r = check_vm_id(vm_id);
        if (r < 0 || n == 0)
                return r;

        if (netns_is_mounted(ns_path)) {
                r = marker_exists(c, vm_id);
                if (r < 0)
                        return r;
                if (r == 0)
                        return error_set(-EPERM, "network namespace %s exists but was not created by "
                                                 "this installation", ns);
        } else {
                r = namespace_create(c, vm_id);
                if (r < 0)
                        return r;
        }

        CniRuntime rt = runtime_of(c, cache_dir);
        for (size_t i = 0; i < n; i++) {
                char ifbuf[32], tapbuf[32];
                const char *ifname = nic_ifname(&nics[i], i, ifbuf), *tap = nic_tap(&nics[i], i, tapbuf);

                r = nic_check_names(&nics[i], i, ifname, tap);
                if (r < 0)
                        return r;

                r = nic_links_present(ns, ifname, tap);
                if (r < 0)
                        return r;
                if (r == 0) {
                        r = nic_rebuild(c, &rt, vm_id, &nics[i], ifname, tap);
                        if (r < 0)
                                return r;
                        rebuilt = true;
                        continue;
                }

                if ((r = tap_link_set_up(ns, ifname, true)) < 0 ||
                    (r = tap_link_set_up(ns, tap, true)) < 0)
                        return r;
        }
        return rebuilt ? 1 : 0;
}

int network_down(const NetworkConfig *c, const char *vm_id, const VmNic *nics, size_t n) {
        _cleanup_free_ char *ns = network_netns_name(vm_id), *ns_path = network_netns_path(vm_id);
        int r, ret = 0;

        if (!ns || !ns_path)
                return -ENOMEM;
        r = check_vm_id(vm_id);
        if (r < 0)
                return r;
        if (n == 0 || !netns_is_mounted(ns_path))
                return 0;

        for (size_t i = 0; i < n; i++) {
                char ifbuf[32], tapbuf[32];
                const char *ifname = nic_ifname(&nics[i], i, ifbuf), *tap = nic_tap(&nics[i], i, tapbuf);

                /* The TAP first: from then on nothing is redirected towards the VMM. */
                r = tap_link_set_up(ns, tap, false);
                if (r < 0 && r != -ENODEV && ret == 0)
                        ret = r;
                r = tap_link_set_up(ns, ifname, false);
                if (r < 0 && r != -ENODEV && ret == 0)
                        ret = r;
        }
        return ret;
}

int network_remove(const NetworkConfig *c, const char *vm_id, const VmNic *nics, size_t n) {
        _cleanup_free_ char *cache_dir = cache_dir_of(c);
        _cleanup_strv_free_ char **networks = NULL, **ifnames = NULL;
        char *reason = NULL;
        int r, ret = 0;

        if (!cache_dir)
                return -ENOMEM;
        r = check_vm_id(vm_id);
        if (r < 0)
                return r;

        CniRuntime rt = runtime_of(c, cache_dir);
        for (size_t i = n; i > 0; i--) {
                char ifbuf[32];
                const char *ifname = nic_ifname(&nics[i - 1], i - 1, ifbuf);

                if (!nics[i - 1].network || !cni_network_name_is_valid(nics[i - 1].network))
                        continue;
                r = nic_del(c, &rt, vm_id, nics[i - 1].network, ifname);
                if (r < 0 && ret == 0) {
                        ret = r;
                        reason = error_save(r);
                }
        }

        /* Attachments the record does not show, e.g. of a create that was interrupted. */
        r = cni_cache_list(cache_dir, vm_id, &networks, &ifnames);
        for (size_t i = 0; r >= 0 && networks[i]; i++) {
                int q = nic_del(c, &rt, vm_id, networks[i], ifnames[i]);

                if (q < 0 && ret == 0) {
                        ret = q;
                        reason = error_save(q);
                }
        }
        if (r < 0 && ret == 0) {
                ret = r;
                reason = error_save(r);
        }

        r = namespace_delete(c, vm_id);
        if (r < 0 && ret == 0) {
                ret = r;
                reason = error_save(r);
        }

        if (ret < 0)
                return error_restore(ret, reason);
        return marker_remove(c, vm_id);
}

int network_check(const NetworkConfig *c, const char *vm_id, const VmNic *nics, size_t n) {
        _cleanup_free_ char *cache_dir = cache_dir_of(c), *ns = network_netns_name(vm_id);
        _cleanup_free_ char *ns_path = network_netns_path(vm_id);
        int r;

        if (!cache_dir || !ns || !ns_path)
                return -ENOMEM;
        r = check_vm_id(vm_id);
        if (r < 0 || n == 0)
                return r;
        if (!netns_is_mounted(ns_path))
                return error_set(-ENOENT, "network namespace %s not found", ns);

        CniRuntime rt = runtime_of(c, cache_dir);
        for (size_t i = 0; i < n; i++) {
                _cleanup_(cni_network_freep) CniNetwork *net = NULL;
                char ifbuf[32], tapbuf[32];
                const char *ifname = nic_ifname(&nics[i], i, ifbuf), *tap = nic_tap(&nics[i], i, tapbuf);

                r = nic_check_names(&nics[i], i, ifname, tap);
                if (r < 0)
                        return r;
                for (size_t k = 0; k < 2; k++) {
                        const char *link = k == 0 ? ifname : tap;

                        r = tap_link_exists(ns, link);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return error_set(-ENODEV, "interface %s not found in network namespace %s",
                                                 link, ns);
                }

                r = cni_network_load(c->conf_dir, nics[i].network, &net);
                if (r < 0)
                        return r;
                CniAttachment a = { .container_id = vm_id, .netns = ns_path, .ifname = ifname };
                r = cni_check(&rt, net, &a, CNI_CHECK_WITHOUT_ADDRESSES);
                if (r == -EOPNOTSUPP) {
                        error_clear();
                        continue;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int network_list_stale(const NetworkConfig *c, char *const *live_ids, char ***ret_ids) {
        _cleanup_free_ char *dir = strjoin(c->state_dir, "/netns", NULL);
        _cleanup_strv_free_ char **ids = NULL;
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (!dir)
                return -ENOMEM;
        d = opendir(dir);
        if (!d && errno != ENOENT)
                return error_set(-errno, "cannot read %s: %s", dir, strerror(errno));

        while (d && (de = readdir(d))) {
                if (!network_vm_id_is_valid(de->d_name) || strv_contains(live_ids, de->d_name))
                        continue;
                r = strv_extend(&ids, de->d_name);
                if (r < 0)
                        break;
        }
        if (d)
                closedir(d);
        if (r < 0)
                return r;

        if (!ids && !(ids = calloc(1, sizeof(char *))))
                return -ENOMEM;
        qsort(ids, strv_length(ids), sizeof(char *), compare_strings);
        *ret_ids = TAKE_PTR(ids);
        return 0;
}
