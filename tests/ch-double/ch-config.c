/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Argument grammar of Cloud Hypervisor v53, re-implemented from its documented behaviour:
 *  - the outer layer follows clap: "--name value", "--name=value", several values after the
 *    options that take a device list, grammar errors exit 2 with "error: ..." on stderr;
 *  - each value is a comma-separated list of key=value pairs (brackets and double quotes
 *    protect commas), parsed per option against a fixed key set; an unknown key, a value that
 *    does not convert or a failed cross-check exits 1 with CH's chain of error messages. */

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ch-config.h"
#include "ch-util.h"

#define DISK_SERIAL_MAX 20 /* VIRTIO_BLK_ID_BYTES */
#define DISK_QUEUE_SIZE_MIN 2
#define NET_MTU_MIN 1280

void ch_chain_push(ChErrorChain *c, const char *fmt, ...) {
        va_list ap;

        if (c->n >= CH_CHAIN_MAX)
                return;

        va_start(ap, fmt);
        c->items[c->n++] = xvasprintf(fmt, ap);
        va_end(ap);
}

void ch_chain_clear(ChErrorChain *c) {
        for (size_t i = 0; i < c->n; i++)
                free(c->items[i]);
        c->n = 0;
}

void ch_chain_print(const ChErrorChain *c) {
        if (c->n == 1) {
                fprintf(stderr, "Error: Cloud Hypervisor exited with the following error:\n  %s\n", c->items[0]);
                return;
        }

        fprintf(stderr, "Error: Cloud Hypervisor exited with the following chain of errors:\n");
        for (size_t i = 0; i < c->n; i++)
                fprintf(stderr, "  %zu: %s\n", i, c->items[i]);
}

const char *ch_console_mode_to_string(ChConsoleMode mode) {
        static const char *const names[] = {
                [CH_CONSOLE_OFF] = "Off",       [CH_CONSOLE_PTY] = "Pty",
                [CH_CONSOLE_TTY] = "Tty",       [CH_CONSOLE_FILE] = "File",
                [CH_CONSOLE_SOCKET] = "Socket", [CH_CONSOLE_NULL] = "Null",
        };
        return names[mode];
}

/* Drop the innermost context again once the step it described succeeded. */
static void chain_pop(ChErrorChain *c) {
        if (c->n > 0)
                free(c->items[--c->n]);
}

/* ---- key=value lists ------------------------------------------------------------------- */

typedef struct Key {
        const char *name;
        bool valueless; /* "off", "pty", ... in --console take no value */
        bool set;
        char *value;    /* trimmed; empty counts as not given, as in CH */
} Key;

#define KEYS_MAX 40

typedef struct KeyList {
        Key keys[KEYS_MAX];
        size_t n;
} KeyList;

static void keys_init(KeyList *l, const char *const *names) {
        *l = (KeyList) {};
        for (; *names; names++) {
                bool valueless = (*names)[0] == '!';

                l->keys[l->n++] = (Key) { .name = *names + valueless, .valueless = valueless };
        }
}

static void keys_done(KeyList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->keys[i].value);
}

static Key *keys_find(KeyList *l, const char *name) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->keys[i].name, name))
                        return &l->keys[i];
        return NULL;
}

static char *strip(const char *s, size_t n) {
        while (n > 0 && isspace((unsigned char) *s))
                s++, n--;
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                n--;
        return xstrndup(s, n);
}

/* Split at commas outside brackets and double quotes. The quotes themselves are dropped.
 * Returns the number of items, or -EINVAL for unbalanced brackets or quotes. */
static int split_commas(const char *s, char ***ret) {
        _cleanup_free_ char *input = strip(s, strlen(s));
        char **items = NULL;
        size_t n = 0, len = 0;
        int depth = 0;
        bool quoted = false;
        char *cur = xmalloc0(strlen(input) + 1);

        for (const char *p = input;; p++) {
                if (*p == '\0' || (*p == ',' && depth == 0 && !quoted)) {
                        cur[len] = '\0';
                        items = xrealloc_array(items, n + 2, sizeof(char *));
                        items[n++] = xstrdup(cur);
                        items[n] = NULL;
                        len = 0;
                        if (*p == '\0')
                                break;
                        continue;
                }
                if (*p == '"') {
                        quoted = !quoted;
                        continue;
                }
                if (*p == '[')
                        depth++;
                else if (*p == ']' && --depth < 0)
                        break;
                cur[len++] = *p;
        }
        free(cur);

        if (depth != 0 || quoted) {
                for (size_t i = 0; i < n; i++)
                        free(items[i]);
                free(items);
                return -EINVAL;
        }

        *ret = items;
        return (int) n;
}

static void free_items(char **items, int n) {
        for (int i = 0; i < n; i++)
                free(items[i]);
        free(items);
}

/* Parse input against the keys of l. On failure pushes the option parser's message onto
 * chain and returns -EINVAL. */
static int keys_parse(KeyList *l, const char *input, ChErrorChain *chain) {
        _cleanup_free_ char *trimmed = strip(input, strlen(input));
        char **items;
        int n;

        if (isempty(trimmed))
                return 0;

        n = split_commas(input, &items);
        if (n < 0) {
                ch_chain_push(chain, "invalid syntax:%s", input);
                return -EINVAL;
        }

        for (int i = 0; i < n; i++) {
                const char *eq = strchr(items[i], '=');
                _cleanup_free_ char *name = eq ? xstrndup(items[i], eq - items[i]) : xstrdup(items[i]);
                Key *k = keys_find(l, name);

                if (!k) {
                        ch_chain_push(chain, "unknown option: %s", name);
                        free_items(items, n);
                        return -EINVAL;
                }
                if (!k->valueless && !eq) {
                        ch_chain_push(chain, "invalid syntax:%s", items[i]);
                        free_items(items, n);
                        return -EINVAL;
                }

                free(k->value);
                k->value = k->valueless ? xstrdup("") : strip(eq + 1, strlen(eq + 1));
                k->set = true;
        }

        free_items(items, n);
        return 0;
}

/* The value of a key, or NULL when it was not given or given empty. */
static const char *keys_get(KeyList *l, const char *name) {
        Key *k = keys_find(l, name);

        if (!k || !k->set || isempty(k->value))
                return NULL;
        return k->value;
}

static bool keys_is_set(KeyList *l, const char *name) {
        Key *k = keys_find(l, name);
        return k && k->set;
}

static int conversion_error(ChErrorChain *chain, const char *name, const char *value) {
        ch_chain_push(chain, "unable to convert %s for %s", value, name);
        return -EINVAL;
}

/* Rust's u64::from_str: an optional '+', then decimal digits only. */
static bool parse_uint(const char *s, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (*s == '+')
                s++;
        if (*s == '\0')
                return false;
        for (; *s; s++) {
                if (!isdigit((unsigned char) *s))
                        return false;
                if (v > (max - (uint64_t) (*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (*s - '0');
        }

        *ret = v;
        return true;
}

static int keys_uint(KeyList *l, const char *name, uint64_t max, uint64_t def, uint64_t *ret,
                     ChErrorChain *chain) {
        const char *v = keys_get(l, name);

        if (!v) {
                *ret = def;
                return 0;
        }
        if (!parse_uint(v, max, ret))
                return conversion_error(chain, name, v);
        return 0;
}

static int keys_unsigned(KeyList *l, const char *name, uint64_t max, unsigned def, unsigned *ret,
                         ChErrorChain *chain) {
        uint64_t v;
        int r = keys_uint(l, name, max, def, &v, chain);

        if (r < 0)
                return r;
        *ret = (unsigned) v;
        return 0;
}

/* CH's Toggle: empty, on, off, true or false, in any case. */
static int keys_toggle(KeyList *l, const char *name, bool def, bool *ret, ChErrorChain *chain) {
        const char *v = keys_get(l, name);

        if (!v)
                *ret = def;
        else if (strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0)
                *ret = true;
        else if (strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0)
                *ret = false;
        else
                return conversion_error(chain, name, v);
        return 0;
}

/* CH's ByteSized: decimal bytes with an optional K, M or G suffix (binary multiples). */
static bool parse_byte_size(const char *s, uint64_t *ret) {
        _cleanup_free_ char *copy = xstrdup(s);
        size_t n = strlen(copy);
        unsigned shift = 0;
        uint64_t v;

        if (n > 0 && copy[n - 1] == 'K')
                shift = 10;
        else if (n > 0 && copy[n - 1] == 'M')
                shift = 20;
        else if (n > 0 && copy[n - 1] == 'G')
                shift = 30;
        while (n > 0 && strchr("KMG", copy[n - 1]))
                copy[--n] = '\0';

        if (!parse_uint(copy, UINT64_MAX >> shift, &v))
                return false;
        *ret = v << shift;
        return true;
}

static int keys_byte_size(KeyList *l, const char *name, uint64_t def, uint64_t *ret, ChErrorChain *chain) {
        const char *v = keys_get(l, name);

        if (!v) {
                *ret = def;
                return 0;
        }
        if (!parse_byte_size(v, ret))
                return conversion_error(chain, name, v);
        return 0;
}

/* A value from a fixed set: names[i] on the command line maps to values[i] in the config. */
static int keys_enum(KeyList *l, const char *name, const char *const *names, const char *const *values,
                     const char *def, char **ret, ChErrorChain *chain) {
        const char *v = keys_get(l, name);

        if (!v) {
                *ret = xstrdup(def);
                return 0;
        }
        for (size_t i = 0; names[i]; i++)
                if (strcasecmp(v, names[i]) == 0) {
                        *ret = xstrdup(values[i]);
                        return 0;
                }
        return conversion_error(chain, name, v);
}

static char *keys_strdup(KeyList *l, const char *name) {
        return xstrdup(keys_get(l, name));
}

/* CH's IntegerList: "[1,3-5]" or "1". Ranges expand to every member. */
static bool parse_integer_list(const char *s, unsigned *out, size_t max, size_t *ret_n) {
        _cleanup_free_ char *copy = strip(s, strlen(s));
        char *body = copy, *save = NULL;
        size_t n = 0;

        while (*body == '[')
                body++;
        for (size_t len = strlen(body); len > 0 && body[len - 1] == ']'; len--)
                body[len - 1] = '\0';

        for (char *tok = strtok_r(body, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char *dash = strchr(tok, '-');
                uint64_t start, end;

                if (dash)
                        *dash = '\0';
                if (!parse_uint(tok, UINT32_MAX, &start))
                        return false;
                end = start;
                if (dash && (!parse_uint(dash + 1, UINT32_MAX, &end) || start >= end))
                        return false;
                for (uint64_t v = start; v <= end; v++) {
                        if (n >= max)
                                return false;
                        out[n++] = (unsigned) v;
                }
        }

        *ret_n = n;
        return n > 0;
}

/* CH's Tuple: "[<a>@<integer list>,...]", as in queue_affinity=[0@[0],1@[1,2]]. */
static bool parse_affinity(const char *s, ChQueueAffinity **ret, size_t *ret_n) {
        _cleanup_free_ char *copy = strip(s, strlen(s));
        size_t len = strlen(copy);
        ChQueueAffinity *list = NULL;
        char **items;
        int n;

        if (len < 2 || copy[0] != '[' || copy[len - 1] != ']')
                return false;
        copy[len - 1] = '\0';

        n = split_commas(copy + 1, &items);
        if (n < 0)
                return false;

        list = xmalloc0(sizeof(ChQueueAffinity) * (size_t) n);
        for (int i = 0; i < n; i++) {
                char *at = strchr(items[i], '@');
                uint64_t index;

                if (!at || strchr(at + 1, '@')) {
                        free(list);
                        free_items(items, n);
                        return false;
                }
                *at = '\0';
                if (!parse_uint(items[i], UINT32_MAX, &index) ||
                    !parse_integer_list(at + 1, list[i].host_cpus, ELEMENTSOF(list[i].host_cpus),
                                        &list[i].n_host_cpus)) {
                        free(list);
                        free_items(items, n);
                        return false;
                }
                list[i].queue_index = (unsigned) index;
        }

        free_items(items, n);
        *ret = list;
        *ret_n = (size_t) n;
        return true;
}

static bool parse_mac(const char *s) {
        unsigned b[6];
        char end;

        return strlen(s) == 17 &&
               sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) == 6;
}

static bool parse_ip(const char *s) {
        unsigned char buf[sizeof(struct in6_addr)];

        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* ---- per-option parsers; each pushes "Error parsing --x" and the key-level reason ------- */

#define TRY(expr)                         \
        do {                              \
                if ((expr) < 0)           \
                        goto fail;        \
        } while (0)

static int parse_cpus(ChConfig *c, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "boot", "max", "topology", "kvm_hyperv", "max_phys_bits",
                                             "affinity", "features", "nested", "core_scheduling", NULL };
        static const char *const sched_names[] = { "vm", "vcpu", "off", NULL };
        static const char *const sched_values[] = { "Vm", "Vcpu", "Off", NULL };
        KeyList l;
        const char *v;
        uint64_t boot;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --cpus");
        TRY(keys_parse(&l, value, chain));
        TRY(keys_uint(&l, "boot", UINT32_MAX, 1, &boot, chain));
        c->boot_vcpus = (unsigned) boot;
        TRY(keys_unsigned(&l, "max", UINT32_MAX, c->boot_vcpus, &c->max_vcpus, chain));
        TRY(keys_unsigned(&l, "max_phys_bits", UINT8_MAX, 46, &c->max_phys_bits, chain));
        TRY(keys_toggle(&l, "kvm_hyperv", false, &c->kvm_hyperv, chain));
        TRY(keys_toggle(&l, "nested", true, &c->nested, chain));
        TRY(keys_enum(&l, "core_scheduling", sched_names, sched_values, "Vm", &c->core_scheduling, chain));

        v = keys_get(&l, "topology");
        if (v) {
                unsigned a, b, d, p;
                char end;

                if (sscanf(v, "%u:%u:%u:%u%c", &a, &b, &d, &p, &end) != 4 || a > 255 || b > 255 || d > 255 ||
                    p > 255) {
                        conversion_error(chain, "topology", v);
                        goto fail;
                }
        }

        v = keys_get(&l, "affinity");
        if (v) {
                _cleanup_free_ ChQueueAffinity *affinity = NULL;
                size_t n;

                if (!parse_affinity(v, &affinity, &n)) {
                        conversion_error(chain, "affinity", v);
                        goto fail;
                }
        }

        v = keys_get(&l, "features");
        if (v) {
                _cleanup_free_ char *copy = strip(v, strlen(v));
                char *body = copy + strspn(copy, "["), *save = NULL;

                body[strcspn(body, "]")] = '\0';
                for (char *f = strtok_r(body, ",", &save); f; f = strtok_r(NULL, ",", &save))
                        if (!streq(f, "amx")) {
                                /* CH reports this one without the "Error parsing --cpus" level. */
                                chain_pop(chain);
                                ch_chain_push(chain, "Invalid feature in --cpus features list: %s", f);
                                goto fail;
                        }
        }

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static int parse_memory(ChConfig *c, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "size", "mergeable", "hotplug_method", "hotplug_size",
                                             "hotplugged_size", "shared", "hugepages", "hugepage_size",
                                             "prefault", "thp", NULL };
        static const char *const method_names[] = { "acpi", "virtio-mem", NULL };
        static const char *const method_values[] = { "Acpi", "VirtioMem", NULL };
        KeyList l;
        uint64_t hotplugged;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --memory");
        TRY(keys_parse(&l, value, chain));
        TRY(keys_byte_size(&l, "size", UINT64_C(512) << 20, &c->memory_size, chain));
        TRY(keys_toggle(&l, "mergeable", false, &c->mergeable, chain));
        TRY(keys_enum(&l, "hotplug_method", method_names, method_values, "Acpi", &c->hotplug_method, chain));
        TRY(keys_byte_size(&l, "hotplug_size", 0, &c->hotplug_size, chain));
        TRY(keys_byte_size(&l, "hotplugged_size", 0, &hotplugged, chain));
        TRY(keys_toggle(&l, "shared", false, &c->shared, chain));
        TRY(keys_toggle(&l, "hugepages", false, &c->hugepages, chain));
        TRY(keys_byte_size(&l, "hugepage_size", 0, &c->hugepage_size, chain));
        TRY(keys_toggle(&l, "prefault", false, &c->prefault, chain));
        TRY(keys_toggle(&l, "thp", true, &c->thp, chain));

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static const char *const rate_limiter_keys[] = { "bw_size", "bw_one_time_burst", "bw_refill_time",
                                                 "ops_size", "ops_one_time_burst", "ops_refill_time", NULL };

static int check_rate_limiter(KeyList *l, ChErrorChain *chain) {
        for (size_t i = 0; rate_limiter_keys[i]; i++) {
                uint64_t v;

                if (keys_uint(l, rate_limiter_keys[i], UINT64_MAX, 0, &v, chain) < 0)
                        return -EINVAL;
        }
        return 0;
}

static int parse_disk(ChDiskConfig *d, const char *value, ChErrorChain *chain) {
        static const char *const names[] = {
                "path", "readonly", "direct", "iommu", "queue_size", "num_queues", "vhost_user", "socket",
                "bw_size", "bw_one_time_burst", "bw_refill_time", "ops_size", "ops_one_time_burst",
                "ops_refill_time", "id", "_disable_io_uring", "_disable_aio", "pci_segment", "pci_device_id",
                "serial", "rate_limit_group", "queue_affinity", "backing_files", "sparse", "image_type",
                "lock_granularity", NULL
        };
        static const char *const type_names[] = { "raw", "qcow2", "vhd", "vhdx", NULL };
        static const char *const type_values[] = { "Raw", "Qcow2", "FixedVhd", "Vhdx", NULL };
        static const char *const lock_names[] = { "byte-range", "full", NULL };
        static const char *const lock_values[] = { "ByteRange", "Full", NULL };
        KeyList l;
        const char *v;
        bool ignored;
        unsigned pci;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --disk");
        TRY(keys_parse(&l, value, chain));
        d->path = keys_strdup(&l, "path");
        d->id = keys_strdup(&l, "id");
        d->serial = keys_strdup(&l, "serial");
        d->rate_limit_group = keys_strdup(&l, "rate_limit_group");
        d->vhost_socket = keys_strdup(&l, "socket");
        TRY(keys_toggle(&l, "readonly", false, &d->readonly, chain));
        TRY(keys_toggle(&l, "direct", false, &d->direct, chain));
        TRY(keys_toggle(&l, "iommu", false, &d->iommu, chain));
        TRY(keys_unsigned(&l, "queue_size", UINT16_MAX, 128, &d->queue_size, chain));
        TRY(keys_unsigned(&l, "num_queues", UINT32_MAX, 1, &d->num_queues, chain));
        TRY(keys_toggle(&l, "vhost_user", false, &d->vhost_user, chain));
        TRY(check_rate_limiter(&l, chain));
        TRY(keys_toggle(&l, "_disable_io_uring", false, &ignored, chain));
        TRY(keys_toggle(&l, "_disable_aio", false, &ignored, chain));
        TRY(keys_unsigned(&l, "pci_segment", UINT16_MAX, 0, &pci, chain));
        d->pci_segment = (int) pci;
        TRY(keys_unsigned(&l, "pci_device_id", UINT8_MAX, 0, &pci, chain));
        TRY(keys_toggle(&l, "backing_files", false, &d->backing_files, chain));
        TRY(keys_toggle(&l, "sparse", true, &d->sparse, chain));
        TRY(keys_enum(&l, "image_type", type_names, type_values, "Unknown", &d->image_type, chain));
        TRY(keys_enum(&l, "lock_granularity", lock_names, lock_values, "ByteRange", &d->lock_granularity,
                      chain));

        v = keys_get(&l, "queue_affinity");
        if (v && !parse_affinity(v, &d->queue_affinity, &d->n_queue_affinity)) {
                conversion_error(chain, "queue_affinity", v);
                goto fail;
        }

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static int parse_net(ChNetConfig *n, const char *value, ChErrorChain *chain) {
        static const char *const names[] = {
                "tap", "ip", "mask", "mac", "host_mac", "offload_tso", "offload_ufo", "offload_csum", "mtu",
                "iommu", "queue_size", "num_queues", "vhost_user", "socket", "vhost_mode", "id", "fd",
                "bw_size", "bw_one_time_burst", "bw_refill_time", "ops_size", "ops_one_time_burst",
                "ops_refill_time", "pci_segment", "pci_device_id", NULL
        };
        static const char *const mode_names[] = { "client", "server", NULL };
        static const char *const mode_values[] = { "Client", "Server", NULL };
        static const char *const addr_keys[] = { "ip", "mask", NULL };
        static const char *const mac_keys[] = { "mac", "host_mac", NULL };
        KeyList l;
        const char *v;
        unsigned pci;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --net");
        TRY(keys_parse(&l, value, chain));
        n->tap = keys_strdup(&l, "tap");
        n->id = keys_strdup(&l, "id");
        n->vhost_socket = keys_strdup(&l, "socket");

        for (size_t i = 0; addr_keys[i]; i++) {
                v = keys_get(&l, addr_keys[i]);
                if (v && !parse_ip(v)) {
                        conversion_error(chain, addr_keys[i], v);
                        goto fail;
                }
        }
        n->ip = xstrdup(keys_get(&l, "ip") ?: "192.168.249.1");
        n->mask = xstrdup(keys_get(&l, "mask") ?: "255.255.255.0");

        for (size_t i = 0; mac_keys[i]; i++) {
                v = keys_get(&l, mac_keys[i]);
                if (v && !parse_mac(v)) {
                        conversion_error(chain, mac_keys[i], v);
                        goto fail;
                }
        }
        n->mac = keys_strdup(&l, "mac");
        n->host_mac = keys_strdup(&l, "host_mac");

        TRY(keys_toggle(&l, "offload_tso", true, &n->offload_tso, chain));
        TRY(keys_toggle(&l, "offload_ufo", true, &n->offload_ufo, chain));
        TRY(keys_toggle(&l, "offload_csum", true, &n->offload_csum, chain));
        TRY(keys_unsigned(&l, "mtu", UINT16_MAX, 0, &n->mtu, chain));
        TRY(keys_toggle(&l, "iommu", false, &n->iommu, chain));
        TRY(keys_unsigned(&l, "queue_size", UINT16_MAX, 256, &n->queue_size, chain));
        TRY(keys_unsigned(&l, "num_queues", UINT32_MAX, 2, &n->num_queues, chain));
        TRY(keys_toggle(&l, "vhost_user", false, &n->vhost_user, chain));
        TRY(keys_enum(&l, "vhost_mode", mode_names, mode_values, "Client", &n->vhost_mode, chain));
        TRY(check_rate_limiter(&l, chain));
        TRY(keys_unsigned(&l, "pci_segment", UINT16_MAX, 0, &pci, chain));
        n->pci_segment = (int) pci;
        TRY(keys_unsigned(&l, "pci_device_id", UINT8_MAX, 0, &pci, chain));

        v = keys_get(&l, "fd");
        if (v) {
                unsigned fds[64];
                size_t n_fds;

                if (!parse_integer_list(v, fds, ELEMENTSOF(fds), &n_fds)) {
                        conversion_error(chain, "fd", v);
                        goto fail;
                }
        }

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static int parse_rng(ChConfig *c, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "src", "iommu", NULL };
        KeyList l;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --rng");
        TRY(keys_parse(&l, value, chain));
        c->rng_src = xstrdup(keys_get(&l, "src") ?: "/dev/urandom");
        TRY(keys_toggle(&l, "iommu", false, &c->rng_iommu, chain));

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static int parse_balloon(ChConfig *c, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "size", "deflate_on_oom", "free_page_reporting", NULL };
        KeyList l;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --balloon");
        TRY(keys_parse(&l, value, chain));
        TRY(keys_byte_size(&l, "size", 0, &c->balloon_size, chain));
        TRY(keys_toggle(&l, "deflate_on_oom", false, &c->balloon_deflate_on_oom, chain));
        TRY(keys_toggle(&l, "free_page_reporting", false, &c->balloon_free_page_reporting, chain));
        c->has_balloon = true;

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static int parse_vsock(ChConfig *c, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "cid", "socket", "iommu", "id", "pci_segment", NULL };
        KeyList l;
        uint64_t cid;
        unsigned pci;
        bool iommu;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --vsock");
        TRY(keys_parse(&l, value, chain));
        if (!keys_get(&l, "socket")) {
                chain_pop(chain);
                ch_chain_push(chain, "Error parsing --vsock: socket missing");
                goto fail;
        }
        if (!keys_get(&l, "cid")) {
                chain_pop(chain);
                ch_chain_push(chain, "Error parsing --vsock: cid missing");
                goto fail;
        }
        TRY(keys_uint(&l, "cid", UINT32_MAX, 0, &cid, chain));
        TRY(keys_toggle(&l, "iommu", false, &iommu, chain));
        TRY(keys_unsigned(&l, "pci_segment", UINT16_MAX, 0, &pci, chain));
        c->vsock_cid = (uint32_t) cid;
        c->vsock_socket = keys_strdup(&l, "socket");
        c->vsock_id = keys_strdup(&l, "id");
        c->has_vsock = true;

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

/* --serial and --console share one parser in CH, and both report errors as "--console". */
static int parse_console(ChConsoleConfig *cc, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "!off", "!pty", "!tty", "!null", "file", "socket", "iommu", NULL };
        KeyList l;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --console");
        TRY(keys_parse(&l, value, chain));
        TRY(keys_toggle(&l, "iommu", false, &cc->iommu, chain));

        if (keys_is_set(&l, "off"))
                cc->mode = CH_CONSOLE_OFF;
        else if (keys_is_set(&l, "pty"))
                cc->mode = CH_CONSOLE_PTY;
        else if (keys_is_set(&l, "tty"))
                cc->mode = CH_CONSOLE_TTY;
        else if (keys_is_set(&l, "null"))
                cc->mode = CH_CONSOLE_NULL;
        else if (keys_is_set(&l, "file")) {
                cc->mode = CH_CONSOLE_FILE;
                cc->file = keys_strdup(&l, "file");
        } else if (keys_is_set(&l, "socket")) {
                cc->mode = CH_CONSOLE_SOCKET;
                cc->socket = keys_strdup(&l, "socket");
        } else {
                chain_pop(chain);
                ch_chain_push(chain, "Error parsing --console: invalid console mode given");
                goto fail;
        }

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static int parse_landlock_rule(ChLandlockRule *rule, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "path", "access", NULL };
        KeyList l;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --landlock-rules");
        TRY(keys_parse(&l, value, chain));
        if (!keys_get(&l, "path") || !keys_get(&l, "access")) {
                chain_pop(chain);
                ch_chain_push(chain, "Error parsing --landlock-rules: path/access field missing");
                goto fail;
        }
        rule->path = keys_strdup(&l, "path");
        rule->access = keys_strdup(&l, "access");

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

/* ---- cross-checks done by CH's VmConfig::validate() ------------------------------------ */

static int validation_error(ChErrorChain *chain, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int validation_error(ChErrorChain *chain, const char *fmt, ...) {
        va_list ap;

        ch_chain_push(chain, "Error validating configuration");
        va_start(ap, fmt);
        if (chain->n < CH_CHAIN_MAX)
                chain->items[chain->n++] = xvasprintf(fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static bool id_seen(const char **ids, size_t n, const char *id) {
        for (size_t i = 0; i < n; i++)
                if (streq(ids[i], id))
                        return true;
        return false;
}

static int validate_console(const ChConsoleConfig *cc, ChErrorChain *chain) {
        if (cc->mode == CH_CONSOLE_FILE && isempty(cc->file))
                return validation_error(chain, "Path missing when using file console mode");
        if (cc->mode == CH_CONSOLE_SOCKET && isempty(cc->socket))
                return validation_error(chain, "Path missing when using socket console mode");
        return 0;
}

static int validate_disks(const ChConfig *c, const char **ids, size_t *n_ids, ChErrorChain *chain) {
        for (size_t i = 0; i < c->n_disks; i++) {
                const ChDiskConfig *d = &c->disks[i];

                if (d->path && d->vhost_socket)
                        return validation_error(chain, "Disk path and vhost socket both provided");
                if (d->vhost_user && !c->shared && !c->hugepages)
                        return validation_error(chain,
                                                "Using vhost-user requires using shared memory or huge pages");
                if (d->vhost_user && !d->vhost_socket)
                        return validation_error(chain, "No socket provided when using vhost-user");
                if (d->num_queues > c->boot_vcpus)
                        return validation_error(chain, "Number of vCPUs is insufficient for number of queues");
                if (d->queue_size < DISK_QUEUE_SIZE_MIN)
                        return validation_error(chain, "Queue size is smaller than %d: %u", DISK_QUEUE_SIZE_MIN,
                                                d->queue_size);
                if (d->serial && strlen(d->serial) > DISK_SERIAL_MAX)
                        return validation_error(chain,
                                                "Block device serial length (%zu) exceeds maximum allowed length (%d)",
                                                strlen(d->serial), DISK_SERIAL_MAX);
                for (size_t j = 0; j < i; j++)
                        if (d->path && c->disks[j].path && streq(d->path, c->disks[j].path))
                                return validation_error(chain, "Duplicated device path: %s", d->path);
                if (d->id) {
                        if (id_seen(ids, *n_ids, d->id))
                                return validation_error(chain, "Identifier %s is not unique", d->id);
                        ids[(*n_ids)++] = d->id;
                }
        }
        return 0;
}

static int validate_nets(const ChConfig *c, const char **ids, size_t *n_ids, ChErrorChain *chain) {
        for (size_t i = 0; i < c->n_nets; i++) {
                const ChNetConfig *n = &c->nets[i];

                if (n->num_queues < 2)
                        return validation_error(chain, "Number of queues to virtio_net less than 2");
                if (n->vhost_user && !c->shared && !c->hugepages)
                        return validation_error(chain,
                                                "Using vhost-user requires using shared memory or huge pages");
                if (n->vhost_user && !n->vhost_socket)
                        return validation_error(chain, "No socket provided when using vhost-user");
                if ((n->offload_tso || n->offload_ufo) && !n->offload_csum)
                        return validation_error(chain, "\"offload_tso\" and \"offload_ufo\" depend on \"offload_csum\"");
                if (n->mtu != 0 && n->mtu < NET_MTU_MIN)
                        return validation_error(
                                chain, "Provided MTU %u is lower than 1280 (expected by VIRTIO specification)", n->mtu);
                if (n->id) {
                        if (id_seen(ids, *n_ids, n->id))
                                return validation_error(chain, "Identifier %s is not unique", n->id);
                        ids[(*n_ids)++] = n->id;
                }
        }
        return 0;
}

static int validate_config(const ChConfig *c, ChErrorChain *chain) {
        _cleanup_free_ const char **ids = xmalloc0(sizeof(char *) * (c->n_disks + c->n_nets + 2));
        size_t n_ids = 0;

        if (validate_console(&c->serial, chain) < 0 || validate_console(&c->console, chain) < 0)
                return -EINVAL;
        if (c->max_vcpus < c->boot_vcpus)
                return validation_error(chain, "Max CPUs lower than boot CPUs");
        if (c->hugepage_size != 0 && !c->hugepages)
                return validation_error(chain, "Huge page size specified but huge pages not enabled");
        if (c->hugepage_size != 0 && (c->hugepage_size & (c->hugepage_size - 1)) != 0)
                return validation_error(chain, "Huge page size is not power of 2: %" PRIu64, c->hugepage_size);
        if (validate_disks(c, ids, &n_ids, chain) < 0 || validate_nets(c, ids, &n_ids, chain) < 0)
                return -EINVAL;
        if (c->has_balloon && c->balloon_size >= c->memory_size)
                /* "Ballon" is spelled as CH v53 spells it. */
                return validation_error(chain, "Ballon size (%" PRIu64 ") greater than RAM (%" PRIu64 ")",
                                        c->balloon_size, c->memory_size);
        if (c->has_vsock && (c->vsock_cid <= 2 || c->vsock_cid == UINT32_MAX))
                return validation_error(chain, "%" PRIu32 " is a special VSOCK CID", c->vsock_cid);
        for (size_t i = 0; i < c->n_landlock_rules; i++) {
                const char *a = c->landlock_rules[i].access;

                if (!streq(a, "r") && !streq(a, "w") && !streq(a, "rw"))
                        return validation_error(chain, "access provided in landlock-rules in invalid");
        }
        return 0;
}

/* ---- the outer, clap-style layer ------------------------------------------------------- */

typedef enum ArgKind {
        ARG_ONE,   /* exactly one value, at most once */
        ARG_MANY,  /* one or more values per use, may repeat */
        ARG_FLAG,  /* no value */
        ARG_COUNT, /* no value, counted (-v -v or -vv) */
} ArgKind;

typedef enum ArgGroup {
        GROUP_NONE,
        GROUP_VM,      /* VM options: need --kernel or --firmware */
        GROUP_VMM,
        GROUP_PAYLOAD, /* --kernel, --firmware */
        GROUP_LOGGING,
} ArgGroup;

typedef struct ArgSpec {
        const char *name; /* long name, NULL for short-only options */
        char short_name;
        ArgKind kind;
        ArgGroup group;
        const char *help;
} ArgSpec;

/* The options listed for CH v53 in the CLI reference, sorted by name as CH's --help sorts
 * them. Options CH has beyond these (--fs, --pmem, --device, --numa, --platform, --tpm, ...)
 * are rejected as unknown, because the double cannot emulate them. */
static const ArgSpec arg_specs[] = {
        { "api-socket", 0, ARG_ONE, GROUP_VMM, "HTTP API socket (unix domain socket): path=<path> or fd=<fd>" },
        { "balloon", 0, ARG_ONE, GROUP_VM,
          "Balloon: size=<bytes>,deflate_on_oom=on|off,free_page_reporting=on|off" },
        { "cmdline", 0, ARG_ONE, GROUP_VM, "Kernel command line" },
        { "console", 0, ARG_ONE, GROUP_VM,
          "virtio console: off|null|pty|tty|file=<path>|socket=<path>[,iommu=on|off] (default tty)" },
        { "cpus", 0, ARG_ONE, GROUP_VM,
          "boot=<n>,max=<n>,topology=<t>:<c>:<d>:<p>,kvm_hyperv=on|off,max_phys_bits=<n>,"
          "affinity=<list>,features=<list>,nested=on|off,core_scheduling=vm|vcpu|off" },
        { "disk", 0, ARG_MANY, GROUP_VM,
          "path=<file>,readonly=on|off,direct=on|off,num_queues=<n>,queue_size=<n>,serial=<s>,id=<id>,"
          "image_type=raw|qcow2|vhd|vhdx,sparse=on|off,backing_files=on|off,queue_affinity=<list>,..." },
        { "event-monitor", 0, ARG_ONE, GROUP_VMM, "File to report events on: path=<path> or fd=<fd>" },
        { "firmware", 0, ARG_ONE, GROUP_PAYLOAD, "Path to the firmware (CLOUDHV.fd, hypervisor-fw)" },
        { "help", 'h', ARG_FLAG, GROUP_NONE, "Print help" },
        { "initramfs", 0, ARG_ONE, GROUP_VM, "Path to the initramfs image" },
        { "kernel", 0, ARG_ONE, GROUP_PAYLOAD, "Path to the kernel image" },
        { "landlock", 0, ARG_FLAG, GROUP_VM, "Enable Landlock (accepted, not applied by the double)" },
        { "landlock-rules", 0, ARG_MANY, GROUP_VM, "Extra Landlock rules: path=<path>,access=r|w|rw" },
        { "log-file", 0, ARG_ONE, GROUP_LOGGING, "Log file (default: standard error)" },
        { "memory", 0, ARG_ONE, GROUP_VM,
          "size=<bytes|nK|nM|nG>,mergeable=on|off,shared=on|off,hugepages=on|off,hugepage_size=<size>,"
          "hotplug_method=acpi|virtio-mem,hotplug_size=<size>,prefault=on|off,thp=on|off" },
        { "net", 0, ARG_MANY, GROUP_VM,
          "tap=<ifname>,mac=<mac>,ip=<ip>,mask=<mask>,num_queues=<n>,queue_size=<n>,id=<id>,"
          "offload_tso=on|off,offload_ufo=on|off,offload_csum=on|off,..." },
        { "rng", 0, ARG_ONE, GROUP_VM, "Entropy source: src=<path>,iommu=on|off (default /dev/urandom)" },
        { "seccomp", 0, ARG_ONE, GROUP_NONE, "true|false|log (accepted, not applied by the double)" },
        { "serial", 0, ARG_ONE, GROUP_VM, "Serial port: off|null|pty|tty|file=<path>|socket=<path> (default null)" },
        { NULL, 'v', ARG_COUNT, GROUP_LOGGING, "Raise the log level (repeatable)" },
        { "version", 'V', ARG_FLAG, GROUP_NONE, "Print the version" },
        { "vsock", 0, ARG_ONE, GROUP_VM, "vsock device: cid=<n>,socket=<path>" },
        { "watchdog", 0, ARG_FLAG, GROUP_VM, "Enable the virtio watchdog" },
};

typedef struct ArgValues {
        char **values;
        size_t n_values;
        unsigned count; /* times given */
} ArgValues;

static const char usage_tail[] = "\n\nUsage: cloud-hypervisor [OPTIONS]\n\nFor more information, try '--help'.\n";

static int usage_error(char **ret_message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(char **ret_message, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = xvasprintf(fmt, ap);
        va_end(ap);

        *ret_message = xasprintf("error: %s%s", msg, usage_tail);
        return CH_EXIT_USAGE;
}

static const ArgSpec *find_long(const char *name, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(arg_specs); i++)
                if (arg_specs[i].name && strlen(arg_specs[i].name) == len && strneq(arg_specs[i].name, name, len))
                        return &arg_specs[i];
        return NULL;
}

static const ArgSpec *find_short(char c) {
        for (size_t i = 0; i < ELEMENTSOF(arg_specs); i++)
                if (arg_specs[i].short_name == c)
                        return &arg_specs[i];
        return NULL;
}

/* clap treats any word starting with '-' (other than "-" itself) as an option, never a value. */
static bool looks_like_option(const char *s) {
        return s[0] == '-' && s[1] != '\0';
}

static void add_value(ArgValues *v, const char *value) {
        v->values = xrealloc_array(v->values, v->n_values + 1, sizeof(char *));
        v->values[v->n_values++] = xstrdup(value);
}

static int parse_long_option(const ArgSpec *spec, const char *inline_value, int argc, char **argv, int *i,
                             ArgValues *v, char **ret_message) {
        if (spec->kind == ARG_FLAG) {
                if (inline_value)
                        return usage_error(ret_message,
                                           "unexpected value '%s' for '--%s' found; no more were expected",
                                           inline_value, spec->name);
                v->count++;
                return 0;
        }

        if (spec->kind == ARG_ONE && v->count > 0)
                return usage_error(ret_message, "the argument '--%s <%s>' cannot be used multiple times",
                                   spec->name, spec->name);
        v->count++;

        if (inline_value)
                add_value(v, inline_value);
        else if (*i + 1 < argc && !looks_like_option(argv[*i + 1]))
                add_value(v, argv[++*i]);
        else
                return usage_error(ret_message, "a value is required for '--%s <%s>' but none was supplied",
                                   spec->name, spec->name);

        if (spec->kind == ARG_MANY)
                while (*i + 1 < argc && !looks_like_option(argv[*i + 1]))
                        add_value(v, argv[++*i]);
        return 0;
}

static int parse_argv_options(int argc, char **argv, ArgValues *values, char **ret_message) {
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (strneq(a, "--", 2) && a[2] != '\0') {
                        const char *name = a + 2, *eq = strchr(name, '=');
                        const ArgSpec *spec = find_long(name, eq ? (size_t) (eq - name) : strlen(name));
                        int r;

                        if (!spec)
                                return usage_error(ret_message, "unexpected argument '%.*s' found",
                                                   eq ? (int) (eq - a) : (int) strlen(a), a);
                        r = parse_long_option(spec, eq ? eq + 1 : NULL, argc, argv, &i,
                                              &values[spec - arg_specs], ret_message);
                        if (r != 0)
                                return r;
                        continue;
                }

                if (looks_like_option(a) && a[1] != '-') {
                        for (const char *p = a + 1; *p; p++) {
                                const ArgSpec *spec = find_short(*p);

                                if (!spec)
                                        return usage_error(ret_message, "unexpected argument '-%c' found", *p);
                                values[spec - arg_specs].count++;
                        }
                        continue;
                }

                return usage_error(ret_message, "unexpected argument '%s' found", a);
        }
        return 0;
}

/* name is the long name, or the letter of a short-only option such as "v". */
static ArgValues *arg_values(ArgValues *values, const char *name) {
        const ArgSpec *spec = name[1] == '\0' ? find_short(name[0]) : find_long(name, strlen(name));

        assert(spec);
        return &values[spec - arg_specs];
}

static const char *arg_one(ArgValues *values, const char *name, const char *def) {
        ArgValues *v = arg_values(values, name);
        return v->n_values > 0 ? v->values[0] : def;
}

static int check_groups(ArgValues *values, char **ret_message) {
        bool vm = false, payload = false;

        for (size_t i = 0; i < ELEMENTSOF(arg_specs); i++) {
                if (values[i].count == 0)
                        continue;
                vm = vm || arg_specs[i].group == GROUP_VM;
                payload = payload || arg_specs[i].group == GROUP_PAYLOAD;
        }

        if (vm && !payload) {
                *ret_message = xasprintf(
                        "error: the following required arguments were not provided:\n"
                        "  <--firmware <firmware>|--kernel <kernel>>\n\n"
                        "Usage: cloud-hypervisor [OPTIONS] <--firmware <firmware>|--kernel <kernel>>\n\n"
                        "For more information, try '--help'.\n");
                return CH_EXIT_USAGE;
        }
        return 0;
}

/* --api-socket: "path=<p>", "fd=<n>" or a bare path. CH ignores key errors here and falls
 * back to taking the whole value as the path. */
static int parse_api_socket(ChConfig *c, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "path", "fd", NULL };
        ChErrorChain ignored = {};
        const char *fd;
        KeyList l;
        uint64_t n;

        keys_init(&l, names);
        if (keys_parse(&l, value, &ignored) < 0) {
                ch_chain_clear(&ignored);
                keys_done(&l);
                c->api_socket_path = xstrdup(value);
                return 0;
        }

        fd = keys_get(&l, "fd");
        if (fd) {
                if (!parse_uint(fd, INT32_MAX, &n)) {
                        ch_chain_push(chain, "Error parsing --api-socket");
                        ch_chain_push(chain, "invalid digit found in string");
                        keys_done(&l);
                        return -EINVAL;
                }
                c->api_socket_fd = (int) n;
        } else
                c->api_socket_path = xstrdup(keys_get(&l, "path") ?: value);

        keys_done(&l);
        return 0;
}

static int parse_event_monitor(ChConfig *c, const char *value, ChErrorChain *chain) {
        static const char *const names[] = { "path", "fd", NULL };
        KeyList l;
        uint64_t fd;

        keys_init(&l, names);
        ch_chain_push(chain, "Error parsing --event-monitor");
        TRY(keys_parse(&l, value, chain));
        if (keys_get(&l, "fd")) {
                TRY(keys_uint(&l, "fd", INT32_MAX, 0, &fd, chain));
                c->event_monitor_fd = (int) fd;
        } else if (keys_get(&l, "path"))
                c->event_monitor_path = keys_strdup(&l, "path");
        else {
                chain_pop(chain);
                ch_chain_push(chain, "Error parsing --event-monitor: path or fd required");
                goto fail;
        }

        chain_pop(chain);
        keys_done(&l);
        return 0;
fail:
        keys_done(&l);
        return -EINVAL;
}

static int parse_vm_options(ChConfig *c, ArgValues *values, ChErrorChain *chain) {
        ArgValues *disks = arg_values(values, "disk"), *nets = arg_values(values, "net"),
                  *rules = arg_values(values, "landlock-rules");
        const char *balloon = arg_one(values, "balloon", NULL), *vsock = arg_one(values, "vsock", NULL);

        ch_chain_push(chain, "Error parsing config");
        if (parse_cpus(c, arg_one(values, "cpus", "boot=1,max_phys_bits=46"), chain) < 0 ||
            parse_memory(c, arg_one(values, "memory", "size=512M"), chain) < 0)
                return -EINVAL;

        c->kernel = xstrdup(arg_one(values, "kernel", NULL));
        c->firmware = xstrdup(arg_one(values, "firmware", NULL));
        c->initramfs = xstrdup(arg_one(values, "initramfs", NULL));
        c->cmdline = xstrdup(arg_one(values, "cmdline", NULL));

        c->disks = xmalloc0(sizeof(ChDiskConfig) * (disks->n_values + 1));
        for (size_t i = 0; i < disks->n_values; i++, c->n_disks++)
                if (parse_disk(&c->disks[i], disks->values[i], chain) < 0)
                        return -EINVAL;

        c->nets = xmalloc0(sizeof(ChNetConfig) * (nets->n_values + 1));
        for (size_t i = 0; i < nets->n_values; i++, c->n_nets++)
                if (parse_net(&c->nets[i], nets->values[i], chain) < 0)
                        return -EINVAL;

        if (parse_rng(c, arg_one(values, "rng", "src=/dev/urandom"), chain) < 0 ||
            (balloon && parse_balloon(c, balloon, chain) < 0) ||
            parse_console(&c->console, arg_one(values, "console", "tty"), chain) < 0 ||
            parse_console(&c->serial, arg_one(values, "serial", "null"), chain) < 0 ||
            (vsock && parse_vsock(c, vsock, chain) < 0))
                return -EINVAL;

        c->landlock_rules = xmalloc0(sizeof(ChLandlockRule) * (rules->n_values + 1));
        for (size_t i = 0; i < rules->n_values; i++, c->n_landlock_rules++)
                if (parse_landlock_rule(&c->landlock_rules[i], rules->values[i], chain) < 0)
                        return -EINVAL;

        c->watchdog = arg_values(values, "watchdog")->count > 0;
        c->has_vm = true;

        if (validate_config(c, chain) < 0)
                return -EINVAL;

        chain_pop(chain);
        return 0;
}

static int parse_vmm_options(ChConfig *c, ArgValues *values, char **ret_message, ChErrorChain *chain) {
        const char *seccomp = arg_one(values, "seccomp", "true");
        const char *api = arg_one(values, "api-socket", NULL), *monitor = arg_one(values, "event-monitor", NULL);

        if (!streq(seccomp, "true") && !streq(seccomp, "false") && !streq(seccomp, "log")) {
                *ret_message = xasprintf("error: invalid value '%s' for '--seccomp <seccomp>'\n"
                                         "  [possible values: true, false, log]\n\n"
                                         "For more information, try '--help'.\n",
                                         seccomp);
                return CH_EXIT_USAGE;
        }
        c->seccomp = xstrdup(seccomp);
        c->verbosity = arg_values(values, "v")->count;
        c->log_file = xstrdup(arg_one(values, "log-file", NULL));
        c->landlock = arg_values(values, "landlock")->count > 0;

        if ((api && parse_api_socket(c, api, chain) < 0) || (monitor && parse_event_monitor(c, monitor, chain) < 0))
                return CH_EXIT_FAILURE;
        return 0;
}

int ch_config_parse(int argc, char **argv, ChConfig *ret_config, char **ret_message, ChErrorChain *ret_chain) {
        ArgValues values[ELEMENTSOF(arg_specs)] = {};
        ChConfig *c = ret_config;
        int r;

        *c = (ChConfig) { .api_socket_fd = -1, .event_monitor_fd = -1 };

        r = parse_argv_options(argc, argv, values, ret_message);
        if (r != 0)
                goto finish;

        c->show_help = arg_values(values, "help")->count > 0;
        c->show_version = arg_values(values, "version")->count > 0;
        c->verbosity = arg_values(values, "v")->count;
        if (c->show_help || c->show_version)
                goto finish;

        r = check_groups(values, ret_message);
        if (r != 0)
                goto finish;

        r = parse_vmm_options(c, values, ret_message, ret_chain);
        if (r != 0)
                goto finish;

        if (arg_values(values, "kernel")->count > 0 || arg_values(values, "firmware")->count > 0)
                if (parse_vm_options(c, values, ret_chain) < 0)
                        r = CH_EXIT_FAILURE;

finish:
        for (size_t i = 0; i < ELEMENTSOF(arg_specs); i++)
                free_items(values[i].values, (int) values[i].n_values);
        return r;
}

static void console_done(ChConsoleConfig *cc) {
        free(cc->file);
        free(cc->socket);
}

void ch_config_done(ChConfig *c) {
        free(c->api_socket_path);
        free(c->event_monitor_path);
        free(c->log_file);
        free(c->seccomp);
        free(c->core_scheduling);
        free(c->hotplug_method);
        free(c->kernel);
        free(c->initramfs);
        free(c->cmdline);
        free(c->firmware);

        /* Each list has one spare entry, which contains what a device that failed to parse half-way
         * had already parsed, so "<=" frees that too. */
        for (size_t i = 0; c->disks && i <= c->n_disks; i++) {
                ChDiskConfig *d = &c->disks[i];

                free(d->path);
                free(d->id);
                free(d->serial);
                free(d->image_type);
                free(d->lock_granularity);
                free(d->rate_limit_group);
                free(d->vhost_socket);
                free(d->queue_affinity);
        }
        free(c->disks);

        for (size_t i = 0; c->nets && i <= c->n_nets; i++) {
                ChNetConfig *n = &c->nets[i];

                free(n->tap);
                free(n->ip);
                free(n->mask);
                free(n->mac);
                free(n->host_mac);
                free(n->id);
                free(n->vhost_socket);
                free(n->vhost_mode);
        }
        free(c->nets);

        free(c->rng_src);
        free(c->vsock_socket);
        free(c->vsock_id);
        console_done(&c->serial);
        console_done(&c->console);

        for (size_t i = 0; c->landlock_rules && i <= c->n_landlock_rules; i++) {
                free(c->landlock_rules[i].path);
                free(c->landlock_rules[i].access);
        }
        free(c->landlock_rules);

        *c = (ChConfig) { .api_socket_fd = -1, .event_monitor_fd = -1 };
}

void ch_config_print_help(void) {
        printf("Cloud Hypervisor v53 test double for Cocoon's test suite.\n\n"
               "This program is a test tool only. It runs no virtual machine: it checks the command line\n"
               "the way Cloud Hypervisor v53 does, prints a made-up guest boot log on the console and\n"
               "answers the REST API on --api-socket.\n\n"
               "Usage: cloud-hypervisor [OPTIONS]\n\nOptions:\n");
        for (size_t i = 0; i < ELEMENTSOF(arg_specs); i++) {
                const ArgSpec *s = &arg_specs[i];
                _cleanup_free_ char *left = NULL;

                if (s->name && s->short_name)
                        left = xasprintf("-%c, --%s", s->short_name, s->name);
                else if (s->name)
                        left = xasprintf("    --%s%s", s->name,
                                         s->kind == ARG_ONE || s->kind == ARG_MANY ? " <value>" : "");
                else
                        left = xasprintf("-%c", s->short_name);
                printf("  %-28s %s\n", left, s->help);
        }
        printf("\nFault injection (environment): CH_DOUBLE_IGNORE_POWER_BUTTON=1, CH_DOUBLE_HANG_ON_SIGTERM=1,\n"
               "CH_DOUBLE_CRASH_AFTER=<seconds>, CH_DOUBLE_BOOT_DELAY_MS=<ms>, CH_DOUBLE_RECORD=<file>.\n");
}
