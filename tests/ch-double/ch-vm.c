/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ch-util.h"
#include "ch-vm.h"

#define CAP_NET_ADMIN_BIT 12
#define VIRTIO_NET_HDR_LEN 12 /* struct virtio_net_hdr_v1, as CH sets it on its TAP queues */

const char *vm_state_to_string(VmState state) {
        static const char *const names[] = {
                [VM_STATE_NONE] = "Created", [VM_STATE_CREATED] = "Created", [VM_STATE_RUNNING] = "Running",
                [VM_STATE_PAUSED] = "Paused", [VM_STATE_SHUTDOWN] = "Shutdown",
        };
        return names[state];
}

/* Rust prints an io::Error as "<strerror> (os error <n>)"; CH's chains end with that. */
static void push_os_error(ChErrorChain *chain, int err) {
        ch_chain_push(chain, "%s (os error %d)", strerror(err), err);
}

static int open_payload(const char *path, const char *what, ChErrorChain *chain) {
        int fd;

        if (!path)
                return 0;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int err = errno;

                ch_chain_push(chain, "Cannot open %s file", what);
                push_os_error(chain, err);
                return -err;
        }
        close(fd);
        return 0;
}

static int lock_disk(int fd, const ChDiskConfig *d, ChErrorChain *chain) {
        struct flock lock = {
                .l_type = d->readonly ? F_RDLCK : F_WRLCK,
                .l_whence = SEEK_SET,
        };

        /* CH takes an open-file-description lock on each image, shared for read-only disks and
         * exclusive for writable ones, so two VMs cannot write one image. */
        if (fcntl(fd, F_OFD_SETLK, &lock) >= 0)
                return 0;
        if (errno != EAGAIN && errno != EACCES)
                return 0;

        ch_chain_push(chain, "Error locking disk images: Another instance likely holds a lock");
        ch_chain_push(chain, "Failed to get %s lock for disk image: %s", d->readonly ? "Read" : "Write", d->path);
        ch_chain_push(chain, "The file is already locked");
        return -EBUSY;
}

static int open_disk(const ChDiskConfig *d, int *ret_fd, ChErrorChain *chain) {
        int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (d->direct ? O_DIRECT : 0);
        int fd, err;

        if (d->vhost_user) {
                /* NOTE: vhost-user disks are accepted but not connected; Cocoon does not use them. */
                *ret_fd = -1;
                return 0;
        }
        if (!d->path) {
                ch_chain_push(chain, "Error from device manager");
                ch_chain_push(chain, "Cannot open disk path");
                ch_chain_push(chain, "the cocoon test double supports only disks given with path=");
                return -EINVAL;
        }

        fd = open(d->path, flags);
        if (fd < 0) {
                err = errno;
                ch_chain_push(chain, "Error from device manager");
                ch_chain_push(chain, "Cannot open disk path");
                ch_chain_push(chain, "I/O error (path=%s op=open)", d->path);
                push_os_error(chain, err);
                return -err;
        }

        err = lock_disk(fd, d, chain);
        if (err < 0) {
                close(fd);
                return err;
        }

        *ret_fd = fd;
        return 0;
}

static bool have_cap_net_admin(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
        char line[256];

        while (f && fgets(line, sizeof(line), f)) {
                unsigned long long caps;

                if (sscanf(line, "CapEff: %llx", &caps) == 1)
                        return (caps >> CAP_NET_ADMIN_BIT) & 1;
        }
        return false;
}

static int tap_error(ChErrorChain *chain, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tap_error(ChErrorChain *chain, const char *fmt, ...) {
        va_list ap;

        ch_chain_push(chain, "Error from device manager");
        ch_chain_push(chain, "Cannot create virtio-net device");
        ch_chain_push(chain, "Failed to open taps");
        ch_chain_push(chain, "Open tap device failed");
        va_start(ap, fmt);
        if (chain->n < CH_CHAIN_MAX)
                chain->items[chain->n++] = xvasprintf(fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* Attach one queue to the existing TAP n->tap, as CH's Tap::open_named() does. */
static int open_tap_queue(const ChNetConfig *n, bool multi_queue, int *ret_fd, ChErrorChain *chain) {
        struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0) };
        int hdr_len = VIRTIO_NET_HDR_LEN, fd, err;

        fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
                err = errno;
                tap_error(chain, "Couldn't open /dev/net/tun");
                push_os_error(chain, err);
                return -err;
        }

        strncpy(ifr.ifr_name, n->tap, IFNAMSIZ - 1);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
                err = errno;
                close(fd);
                tap_error(chain, "Unable to configure tap interface");
                push_os_error(chain, err);
                if (err == EPERM && !have_cap_net_admin())
                        ch_chain_push(chain, "cocoon test double: this process lacks CAP_NET_ADMIN, which "
                                             "opening TAP %s needs", n->tap);
                else if (err == EINVAL)
                        ch_chain_push(chain, "cocoon test double: %s is not a TAP with matching flags "
                                             "(IFF_MULTI_QUEUE must be %s because num_queues=%u)",
                                      n->tap, multi_queue ? "set" : "clear", n->num_queues);
                return -err;
        }

        (void) ioctl(fd, TUNSETVNETHDRSZ, &hdr_len);
        *ret_fd = fd;
        return 0;
}

static int open_tap(const ChNetConfig *n, VmDevices *devices, ChErrorChain *chain) {
        unsigned pairs = MAX(n->num_queues / 2, 1u);

        if (n->vhost_user)
                return 0; /* NOTE: vhost-user NICs are accepted but not connected. */
        if (!n->tap)
                return tap_error(chain, "the cocoon test double only opens existing TAPs: pass tap=<name>");
        if (strlen(n->tap) >= IFNAMSIZ)
                return tap_error(chain, "Invalid interface name");

        /* Real CH creates a TAP that does not exist yet; Cocoon always creates the TAP first, so
         * the double reports a missing one instead of hiding that mistake. */
        if (if_nametoindex(n->tap) == 0)
                return tap_error(chain, "cocoon test double: TAP %s not found in this network namespace", n->tap);

        for (unsigned q = 0; q < pairs; q++) {
                int fd = -EBADF, r;

                r = open_tap_queue(n, pairs > 1, &fd, chain);
                if (r < 0)
                        return r;
                devices->tap_fds = xrealloc_array(devices->tap_fds, devices->n_tap_fds + 1, sizeof(int));
                devices->tap_fds[devices->n_tap_fds++] = fd;
        }
        return 0;
}

static int open_vsock(const ChConfig *c, VmDevices *devices, ChErrorChain *chain) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = -EBADF, err;

        if (!c->has_vsock)
                return 0;

        if (strlen(c->vsock_socket) >= sizeof(sa.sun_path)) {
                err = ENAMETOOLONG;
                goto fail;
        }
        strcpy(sa.sun_path, c->vsock_socket);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                err = errno;
                goto fail;
        }
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
                err = errno;
                close(fd);
                goto fail;
        }

        devices->vsock_fd = fd;
        return 0;
fail:
        ch_chain_push(chain, "Error from device manager");
        ch_chain_push(chain, "Cannot create virtio-vsock device");
        push_os_error(chain, err);
        return -err;
}

static int open_rng(const ChConfig *c, ChErrorChain *chain) {
        int fd = open(c->rng_src, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
                int err = errno;

                ch_chain_push(chain, "Error from device manager");
                ch_chain_push(chain, "Cannot create virtio-rng device");
                push_os_error(chain, err);
                return -err;
        }
        close(fd);
        return 0;
}

static void fill_random_macs(ChConfig *c) {
        for (size_t i = 0; i < c->n_nets; i++) {
                unsigned char b[6];
                int fd;

                if (c->nets[i].mac)
                        continue;

                fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
                if (fd < 0 || read(fd, b, sizeof(b)) != sizeof(b))
                        for (size_t k = 0; k < sizeof(b); k++)
                                b[k] = (unsigned char) rand();
                if (fd >= 0)
                        close(fd);
                b[0] = (unsigned char) ((b[0] & 0xfe) | 0x02); /* unicast, locally administered */
                c->nets[i].mac = xasprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
        }
}

int vm_devices_open(ChConfig *c, VmDevices *devices, ChErrorChain *chain) {
        int r;

        ch_chain_push(chain, "Error booting VM");
        ch_chain_push(chain, "The VM could not boot");

        r = open_payload(c->kernel, "kernel", chain);
        if (r >= 0)
                r = open_payload(c->initramfs, "initramfs", chain);
        if (r >= 0)
                r = open_payload(c->firmware, "firmware", chain);
        if (r < 0)
                return r;

        devices->disk_fds = xmalloc0(sizeof(int) * (c->n_disks + 1));
        for (size_t i = 0; i < c->n_disks; i++) {
                r = open_disk(&c->disks[i], &devices->disk_fds[i], chain);
                if (r < 0) {
                        vm_devices_close(devices);
                        return r;
                }
                devices->n_disk_fds++;
        }

        for (size_t i = 0; i < c->n_nets; i++) {
                r = open_tap(&c->nets[i], devices, chain);
                if (r < 0) {
                        vm_devices_close(devices);
                        return r;
                }
        }

        r = open_rng(c, chain);
        if (r >= 0)
                r = open_vsock(c, devices, chain);
        if (r < 0) {
                vm_devices_close(devices);
                return r;
        }

        fill_random_macs(c);
        ch_chain_clear(chain);
        return 0;
}

void vm_devices_close(VmDevices *devices) {
        for (size_t i = 0; i < devices->n_disk_fds; i++)
                safe_close(devices->disk_fds[i]);
        free(devices->disk_fds);
        for (size_t i = 0; i < devices->n_tap_fds; i++)
                safe_close(devices->tap_fds[i]);
        free(devices->tap_fds);
        safe_close(devices->vsock_fd);
        *devices = (VmDevices) VM_DEVICES_INIT;
}

/* ---- the guest's view ------------------------------------------------------------------ */

/* Each whitespace-separated word of the kernel command line that starts with prefix. */
static const char *cmdline_next(const char *cmdline, const char *prefix, const char **cursor, size_t *ret_len) {
        const char *p = *cursor ? *cursor : cmdline;
        size_t plen = strlen(prefix);

        while (p && *p) {
                size_t len;

                p += strspn(p, " \t");
                len = strcspn(p, " \t");
                if (len >= plen && strneq(p, prefix, plen)) {
                        *cursor = p + len;
                        *ret_len = len - plen;
                        return p + plen;
                }
                p += len;
        }
        return NULL;
}

/* Field i (0-based) of a kernel ip= value "client:server:gw:mask:host:dev:autoconf:dns0:dns1". */
static char *ip_field(const char *v, size_t len, unsigned i) {
        const char *p = v, *end = v + len;

        for (; i > 0; i--) {
                p = memchr(p, ':', (size_t) (end - p));
                if (!p)
                        return xstrdup("");
                p++;
        }
        const char *colon = memchr(p, ':', (size_t) (end - p));

        return xstrndup(p, (size_t) ((colon ?: end) - p));
}

char *vm_guest_hostname(const ChConfig *c) {
        const char *cursor = NULL, *v;
        size_t len;

        if (!c->cmdline)
                return xstrdup("localhost");

        v = cmdline_next(c->cmdline, "cocoon.hostname=", &cursor, &len);
        if (v && len > 0)
                return xstrndup(v, len);

        cursor = NULL;
        v = cmdline_next(c->cmdline, "ip=", &cursor, &len);
        if (v) {
                char *host = ip_field(v, len, 4);

                if (!isempty(host))
                        return host;
                free(host);
        }
        return xstrdup("localhost");
}

static void print_disks(FILE *f, const ChConfig *c, double *t) {
        for (size_t i = 0; i < c->n_disks; i++) {
                const ChDiskConfig *d = &c->disks[i];
                struct stat st = {};

                if (d->path)
                        (void) stat(d->path, &st);
                *t += 0.0125;
                fprintf(f, "[%12.6f] virtio_blk virtio%zu: [vd%c] %" PRIu64 " 512-byte logical blocks%s, serial %s\n",
                        *t, i, (char) ('a' + (i % 26)), (uint64_t) st.st_size / 512,
                        d->readonly ? " (read-only)" : "", d->serial ?: "(none)");
        }
}

static void print_nics(FILE *f, const ChConfig *c, double *t) {
        for (size_t i = 0; i < c->n_nets; i++) {
                *t += 0.0125;
                fprintf(f, "[%12.6f] virtio_net virtio%zu eth%zu: MAC %s, %u queue pairs\n", *t, c->n_disks + i, i,
                        c->nets[i].mac ?: "(none)", MAX(c->nets[i].num_queues / 2, 1u));
        }
}

/* Print what the guest learned from ip= arguments, one line per NIC. */
static void print_ip_config(FILE *f, const ChConfig *c) {
        const char *cursor = NULL, *v;
        size_t len;

        while (c->cmdline && (v = cmdline_next(c->cmdline, "ip=", &cursor, &len))) {
                _cleanup_free_ char *client = ip_field(v, len, 0), *gw = ip_field(v, len, 2),
                                    *mask = ip_field(v, len, 3), *dev = ip_field(v, len, 5),
                                    *dns0 = ip_field(v, len, 7), *dns1 = ip_field(v, len, 8);

                if (!strchr(client, '.') && !strchr(client, ':')) {
                        fprintf(f, "cocoon-double: ip=%.*s\n", (int) len, v);
                        continue;
                }
                fprintf(f, "cocoon-double: ip %s/%s gateway %s dev %s dns %s %s\n", client, mask, gw,
                        isempty(dev) ? "eth0" : dev, isempty(dns0) ? "-" : dns0, isempty(dns1) ? "-" : dns1);
        }
}

char *vm_boot_log(const ChConfig *c) {
        _cleanup_free_ char *hostname = vm_guest_hostname(c);
        char *buf = NULL;
        size_t size = 0;
        double t = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                abort();

        if (c->firmware && !c->kernel)
                fprintf(f, "cocoon-double: UEFI firmware %s, booting from the first disk\n", c->firmware);
        fprintf(f, "[%12.6f] Linux version 6.12.0-cocoon-double (Cloud Hypervisor test double, no guest runs)\n", t);
        if (c->kernel)
                fprintf(f, "[%12.6f] Command line: %s\n", t, c->cmdline ?: "");
        fprintf(f, "[%12.6f] Memory: %" PRIu64 "K available, %u of %u CPUs online\n", t, c->memory_size >> 10,
                c->boot_vcpus, c->max_vcpus);
        print_disks(f, c, &t);
        print_nics(f, c, &t);
        fprintf(f, "cocoon-double: guest booted\n");
        if (c->kernel) {
                fprintf(f, "cocoon-double: hostname %s\n", hostname);
                print_ip_config(f, c);
        }

        if (fclose(f) != 0)
                abort();
        return buf;
}

/* ---- vm.info --------------------------------------------------------------------------- */

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *console_json(const ChConsoleConfig *cc) {
        return json_pack("{s:o,s:o,s:s,s:b}", "file", string_or_null(cc->file), "socket", string_or_null(cc->socket),
                         "mode", ch_console_mode_to_string(cc->mode), "iommu", cc->iommu);
}

static json_t *disk_json(const ChDiskConfig *d, size_t index) {
        json_t *affinity = json_null();
        _cleanup_free_ char *id = d->id ? NULL : xasprintf("_disk%zu", index);

        if (d->queue_affinity) {
                affinity = json_array();
                for (size_t i = 0; i < d->n_queue_affinity; i++) {
                        json_t *cpus = json_array();

                        for (size_t k = 0; k < d->queue_affinity[i].n_host_cpus; k++)
                                json_array_append_new(cpus, json_integer(d->queue_affinity[i].host_cpus[k]));
                        json_array_append_new(affinity, json_pack("{s:i,s:o}", "queue_index",
                                                                  d->queue_affinity[i].queue_index, "host_cpus", cpus));
                }
        }

        return json_pack("{s:o,s:b,s:b,s:b,s:i,s:i,s:b,s:o,s:o,s:s,s:i,s:o,s:o,s:b,s:b,s:s,s:s}",
                         "path", string_or_null(d->path), "readonly", d->readonly, "direct", d->direct, "iommu",
                         d->iommu, "num_queues", d->num_queues, "queue_size", d->queue_size, "vhost_user",
                         d->vhost_user, "vhost_socket", string_or_null(d->vhost_socket), "rate_limit_group",
                         string_or_null(d->rate_limit_group), "id", d->id ?: id, "pci_segment", d->pci_segment,
                         "serial", string_or_null(d->serial), "queue_affinity", affinity, "backing_files",
                         d->backing_files, "sparse", d->sparse, "image_type", d->image_type, "lock_granularity",
                         d->lock_granularity);
}

static json_t *net_json(const ChNetConfig *n, size_t index) {
        _cleanup_free_ char *id = n->id ? NULL : xasprintf("_net%zu", index);

        return json_pack("{s:o,s:s,s:s,s:o,s:o,s:o,s:b,s:i,s:i,s:b,s:o,s:s,s:s,s:i,s:b,s:b,s:b}",
                         "tap", string_or_null(n->tap), "ip", n->ip, "mask", n->mask, "mac", string_or_null(n->mac),
                         "host_mac", string_or_null(n->host_mac), "mtu", n->mtu ? json_integer(n->mtu) : json_null(),
                         "iommu", n->iommu, "num_queues", n->num_queues, "queue_size", n->queue_size, "vhost_user",
                         n->vhost_user, "vhost_socket", string_or_null(n->vhost_socket), "vhost_mode", n->vhost_mode,
                         "id", n->id ?: id, "pci_segment", n->pci_segment, "offload_tso", n->offload_tso,
                         "offload_ufo", n->offload_ufo, "offload_csum", n->offload_csum);
}

static json_t *config_json(const ChConfig *c) {
        json_t *disks = json_array(), *nets = json_array(), *config;

        /* CH numbers devices with one counter across device kinds: _disk0, _disk1, _net2, ... */
        for (size_t i = 0; i < c->n_disks; i++)
                json_array_append_new(disks, disk_json(&c->disks[i], i));
        for (size_t i = 0; i < c->n_nets; i++)
                json_array_append_new(nets, net_json(&c->nets[i], c->n_disks + i));

        config = json_pack(
                "{s:{s:i,s:i,s:b,s:i,s:b,s:s},"
                " s:{s:I,s:b,s:s,s:o,s:b,s:b,s:o,s:b,s:b},"
                " s:{s:o,s:o,s:o,s:o},"
                " s:o,s:o,s:{s:s,s:b},s:o,s:o,s:b,s:b}",
                "cpus", "boot_vcpus", c->boot_vcpus, "max_vcpus", c->max_vcpus, "kvm_hyperv", c->kvm_hyperv,
                "max_phys_bits", c->max_phys_bits, "nested", c->nested, "core_scheduling", c->core_scheduling,
                "memory", "size", (json_int_t) c->memory_size, "mergeable", c->mergeable, "hotplug_method",
                c->hotplug_method, "hotplug_size", c->hotplug_size ? json_integer((json_int_t) c->hotplug_size) : json_null(),
                "shared", c->shared, "hugepages", c->hugepages, "hugepage_size",
                c->hugepage_size ? json_integer((json_int_t) c->hugepage_size) : json_null(), "prefault", c->prefault,
                "thp", c->thp,
                "payload", "firmware", string_or_null(c->firmware), "kernel", string_or_null(c->kernel), "cmdline",
                string_or_null(c->cmdline), "initramfs", string_or_null(c->initramfs),
                "disks", disks, "net", nets, "rng", "src", c->rng_src, "iommu", c->rng_iommu,
                "serial", console_json(&c->serial), "console", console_json(&c->console),
                "watchdog", c->watchdog, "landlock_enable", c->landlock);
        if (!config)
                abort();

        json_object_set_new(config, "balloon",
                            c->has_balloon ? json_pack("{s:I,s:b,s:b}", "size", (json_int_t) c->balloon_size,
                                                       "deflate_on_oom", c->balloon_deflate_on_oom,
                                                       "free_page_reporting", c->balloon_free_page_reporting)
                                           : json_null());
        json_object_set_new(config, "vsock",
                            c->has_vsock ? json_pack("{s:I,s:s,s:b,s:o,s:i}", "cid", (json_int_t) c->vsock_cid,
                                                     "socket", c->vsock_socket, "iommu", 0, "id",
                                                     string_or_null(c->vsock_id), "pci_segment", 0)
                                         : json_null());
        return config;
}

json_t *vm_info_json(const ChConfig *c, VmState state) {
        /* The guest inflates the balloon to its target right after boot. */
        uint64_t actual = c->memory_size - (c->has_balloon && state == VM_STATE_RUNNING ? c->balloon_size : 0);
        json_t *info = json_pack("{s:o,s:s,s:I,s:{}}", "config", config_json(c), "state", vm_state_to_string(state),
                                 "memory_actual_size", (json_int_t) actual, "device_tree");

        if (!info)
                abort();
        return info;
}

json_t *vm_counters_json(const ChConfig *c) {
        json_t *counters = json_object();

        for (size_t i = 0; i < c->n_disks; i++) {
                _cleanup_free_ char *id = c->disks[i].id ? NULL : xasprintf("_disk%zu", i);

                json_object_set_new(counters, c->disks[i].id ?: id,
                                    json_pack("{s:i,s:i,s:i,s:i}", "read_bytes", 0, "write_bytes", 0, "read_ops", 0,
                                              "write_ops", 0));
        }
        for (size_t i = 0; i < c->n_nets; i++) {
                _cleanup_free_ char *id = c->nets[i].id ? NULL : xasprintf("_net%zu", c->n_disks + i);

                json_object_set_new(counters, c->nets[i].id ?: id,
                                    json_pack("{s:i,s:i,s:i,s:i}", "rx_bytes", 0, "rx_frames", 0, "tx_bytes", 0,
                                              "tx_frames", 0));
        }
        return counters;
}
