/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Drives the network library for tests/integration/test-network.sh:
 *
 *   net-tool [OPTIONS] create VM_ID NICS QUEUE_PAIRS FILE   write the NICs to FILE (JSON)
 *   net-tool [OPTIONS] up VM_ID FILE                        rewrite FILE when a NIC was rebuilt
 *   net-tool [OPTIONS] down|check|remove VM_ID [FILE]       no FILE: no NICs
 *   net-tool [OPTIONS] stale [LIVE_ID...]                   print the stale VM ids
 *
 * OPTIONS: --conf-dir DIR --bin-dir DIR --state-dir DIR [--network NAME] [--timeout SEC].
 * A failure prints "net-tool: REASON" and exits 1. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "network.h"
#include "store.h"
#include "strv.h"

static json_t *nics_to_json(const VmNic *nics, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++) {
                const VmNic *x = &nics[i];
                json_t *o = json_pack("{s:s?, s:s?, s:s?, s:i, s:i, s:s?, s:s?, s:s?, s:s?, s:i}",
                                      "if_name", x->if_name, "tap", x->tap, "mac", x->mac, "num_queues",
                                      (int) x->num_queues, "queue_size", (int) x->queue_size,
                                      "netns_path", x->netns_path, "network", x->network, "ip", x->ip,
                                      "gateway", x->gateway, "prefix", (int) x->prefix);

                if (!o || json_array_append_new(a, o) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static char *dup_member(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));

        return s ? strdup(s) : NULL;
}

static int nics_load(const char *path, VmNic **ret, size_t *ret_n) {
        json_t *a, *o;
        VmNic *nics;
        size_t i;
        int r;

        r = store_read_json(path, &a);
        if (r < 0)
                return r;
        nics = calloc(json_array_size(a) + 1, sizeof(VmNic));
        if (!nics) {
                json_decref(a);
                return -ENOMEM;
        }
        json_array_foreach(a, i, o) {
                nics[i] = (VmNic) {
                        .if_name = dup_member(o, "if_name"), .tap = dup_member(o, "tap"),
                        .mac = dup_member(o, "mac"), .netns_path = dup_member(o, "netns_path"),
                        .network = dup_member(o, "network"), .ip = dup_member(o, "ip"),
                        .gateway = dup_member(o, "gateway"),
                        .num_queues = (unsigned) json_integer_value(json_object_get(o, "num_queues")),
                        .queue_size = (unsigned) json_integer_value(json_object_get(o, "queue_size")),
                        .prefix = (unsigned) json_integer_value(json_object_get(o, "prefix")),
                };
        }
        *ret_n = json_array_size(a);
        *ret = nics;
        json_decref(a);
        return 0;
}

static int nics_save(const char *path, const VmNic *nics, size_t n) {
        json_t *a = nics_to_json(nics, n);
        int r;

        if (!a)
                return -ENOMEM;
        r = store_write_json(path, a);
        json_decref(a);
        return r;
}

static int run(NetworkConfig *c, char **args, int n_args) {
        const char *verb = args[0];
        VmNic *nics = NULL;
        size_t n = 0;
        int r;

        if (streq(verb, "create") && n_args == 5) {
                r = network_create(c, args[1], (unsigned) atoi(args[2]), (unsigned) atoi(args[3]), &nics, &n);
                if (r >= 0)
                        r = nics_save(args[4], nics, n);
        } else if (streq(verb, "stale")) {
                _cleanup_strv_free_ char **ids = NULL;

                r = network_list_stale(c, args + 1, &ids);
                STRV_FOREACH(id, ids)
                        printf("%s\n", *id);
                return r;
        } else if (n_args == 2 || n_args == 3) {
                r = n_args == 3 ? nics_load(args[2], &nics, &n) : 0;
                if (r < 0)
                        return r;
                if (streq(verb, "up")) {
                        r = network_up(c, args[1], nics, n);
                        if (r > 0 && n_args == 3) {
                                printf("rebuilt\n");
                                r = nics_save(args[2], nics, n);
                        }
                } else if (streq(verb, "down"))
                        r = network_down(c, args[1], nics, n);
                else if (streq(verb, "check"))
                        r = network_check(c, args[1], nics, n);
                else if (streq(verb, "remove"))
                        r = network_remove(c, args[1], nics, n);
                else
                        r = error_set(-EINVAL, "unknown command '%s'", verb);
        } else
                r = error_set(-EINVAL, "wrong arguments for '%s'", verb);

        network_nics_free(nics, n);
        return r;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "conf-dir", required_argument, NULL, 'c' },
                { "bin-dir", required_argument, NULL, 'b' },
                { "state-dir", required_argument, NULL, 's' },
                { "network", required_argument, NULL, 'n' },
                { "timeout", required_argument, NULL, 't' },
                {}
        };
        NetworkConfig c = { .bin_dir = "/usr/lib/cni" };
        int opt, r;

        while ((opt = getopt_long(argc, argv, "+", options, NULL)) >= 0)
                switch (opt) {
                case 'c': c.conf_dir = optarg; break;
                case 'b': c.bin_dir = optarg; break;
                case 's': c.state_dir = optarg; break;
                case 'n': c.network = optarg; break;
                case 't': c.timeout_sec = (unsigned) atoi(optarg); break;
                default: return 2;
                }
        if (optind >= argc || !c.conf_dir || !c.state_dir) {
                fprintf(stderr, "usage: net-tool --conf-dir DIR --state-dir DIR COMMAND ...\n");
                return 2;
        }

        r = run(&c, argv + optind, argc - optind);
        if (r < 0) {
                fprintf(stderr, "net-tool: %s\n", error_message(r));
                return 1;
        }
        return 0;
}
