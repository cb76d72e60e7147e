/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>

#include "cni.h"
#include "fileio.h"
#include "strv.h"
#include "tests.h"

/* A temporary directory removed with everything in it when the variable goes out of scope. */
static void rm_rf_freep(char **p) {
        if (*p) {
                (void) rm_rf(*p);
                free(*p);
        }
}
#define _cleanup_tmpdir_ _cleanup_(rm_rf_freep)

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-cni.XXXXXX");

        if (d && !mkdtemp(d)) {
                free(d);
                return NULL;
        }
        return d;
}

static int write_text(const char *dir, const char *name, const char *text, mode_t mode) {
        _cleanup_free_ char *path = strjoin(dir, "/", name, NULL);

        if (!path)
                return -ENOMEM;
        return write_file_atomic(path, text, strlen(text), mode);
}

static char *read_text(const char *dir, const char *name) {
        _cleanup_free_ char *path = strjoin(dir, "/", name, NULL);
        char *text = NULL;

        if (!path || read_file(path, 1 << 20, &text, NULL) < 0)
                return NULL;
        return text;
}

#define BRIDGE_LIST \
        "{\"cniVersion\":\"1.0.0\",\"name\":\"net-a\",\"plugins\":[" \
        "{\"type\":\"bridge\",\"bridge\":\"br0\",\"ipam\":{\"type\":\"host-local\"}}," \
        "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true,\"mac\":false}}]}"

TEST(network_parse_list) {
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;

        ASSERT_OK(cni_network_parse(BRIDGE_LIST, strlen(BRIDGE_LIST), "a.conflist", true, &n));
        ASSERT_STREQ(n->name, "net-a");
        ASSERT_STREQ(n->cni_version, "1.0.0");
        ASSERT_EQ(json_array_size(n->plugins), 2);
        ASSERT_TRUE(!n->disable_check);
        ASSERT_STREQ(n->file, "a.conflist");
        return 0;
}

TEST(network_parse_single_conf_is_wrapped) {
        const char *conf = "{\"cniVersion\":\"0.4.0\",\"name\":\"single\",\"type\":\"ptp\",\"mtu\":1400}";
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;
        json_t *p;

        ASSERT_OK(cni_network_parse(conf, strlen(conf), "s.conf", false, &n));
        ASSERT_STREQ(n->name, "single");
        ASSERT_STREQ(n->cni_version, "0.4.0");
        ASSERT_EQ(json_array_size(n->plugins), 1);
        p = json_array_get(n->plugins, 0);
        ASSERT_STREQ(json_string_value(json_object_get(p, "type")), "ptp");
        ASSERT_EQ(json_integer_value(json_object_get(p, "mtu")), 1400);
        return 0;
}

TEST(network_parse_disable_check) {
        const char *conf = "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"disableCheck\":true,"
                           "\"plugins\":[{\"type\":\"bridge\"}]}";
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;

        ASSERT_OK(cni_network_parse(conf, strlen(conf), "f", true, &n));
        ASSERT_TRUE(n->disable_check);
        return 0;
}

static int parse_error(const char *text, bool is_list, const char *reason) {
        CniNetwork *n = NULL;
        int r = cni_network_parse(text, strlen(text), "/etc/cni/net.d/10-x.conflist", is_list, &n);

        ASSERT_ERROR(r, EBADMSG);
        ASSERT_ERROR_MESSAGE(r, reason);
        ASSERT_TRUE(!n);
        return 0;
}

TEST(network_parse_error_reasons) {
        static const struct {
                const char *text;
                bool is_list;
                const char *reason;
        } cases[] = {
                { "{\"name\":", true, "invalid JSON in CNI configuration /etc/cni/net.d/10-x.conflist: "
                                       "unexpected token near end of file (line 1)" },
                { "[1]", true, "CNI configuration /etc/cni/net.d/10-x.conflist is not a JSON object" },
                { "{\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"a\"}]}", true,
                  "missing 'name' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"plugins\":[{\"type\":\"a\"}]}", true,
                  "missing 'cniVersion' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\"}", true,
                  "missing 'plugins' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"plugins\":{}}", true,
                  "invalid 'plugins' in CNI configuration /etc/cni/net.d/10-x.conflist; expected an array" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"plugins\":[]}", true,
                  "empty 'plugins' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"a\"},{\"mtu\":1}]}", true,
                  "missing 'type' in plugins[1] of CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"plugins\":[7]}", true,
                  "plugins[0] of CNI configuration /etc/cni/net.d/10-x.conflist is not a JSON object" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"../bin/sh\"}]}", true,
                  "invalid plugin type '../bin/sh' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"-n\",\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"a\"}]}", true,
                  "invalid network name '-n' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"cniVersion\":\"0.2.0\",\"plugins\":[{\"type\":\"a\"}]}", true,
                  "unsupported cniVersion '0.2.0' in CNI configuration /etc/cni/net.d/10-x.conflist; "
                  "0.3.0 or later is required" },
                { "{\"name\":\"n\",\"cniVersion\":\"one\",\"plugins\":[{\"type\":\"a\"}]}", true,
                  "unsupported cniVersion 'one' in CNI configuration /etc/cni/net.d/10-x.conflist; "
                  "0.3.0 or later is required" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"disableCheck\":\"yes\",\"plugins\":[{\"type\":\"a\"}]}",
                  true, "invalid 'disableCheck' in CNI configuration /etc/cni/net.d/10-x.conflist; "
                        "expected true or false" },
                { "{\"cniVersion\":\"1.0.0\",\"type\":\"a\"}", false,
                  "missing 'name' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"type\":\"a\"}", false,
                  "missing 'cniVersion' in CNI configuration /etc/cni/net.d/10-x.conflist" },
                { "{\"name\":\"n\",\"cniVersion\":\"1.0.0\"}", false,
                  "missing 'type' in CNI configuration /etc/cni/net.d/10-x.conflist" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (parse_error(cases[i].text, cases[i].is_list, cases[i].reason) != 0) {
                        fprintf(stderr, "case %zu\n", i);
                        return 1;
                }
        return 0;
}

TEST(network_load_selects_by_name) {
        _cleanup_tmpdir_ char *dir = make_tmpdir();
        _cleanup_(cni_network_freep) CniNetwork *first = NULL, *b = NULL, *single = NULL;
        _cleanup_free_ char *path = NULL;

        ASSERT_TRUE(dir);
        ASSERT_OK(write_text(dir, "20-b.conflist",
                             "{\"cniVersion\":\"1.0.0\",\"name\":\"b\",\"plugins\":[{\"type\":\"bridge\"}]}", 0644));
        ASSERT_OK(write_text(dir, "10-a.conflist",
                             "{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"plugins\":[{\"type\":\"bridge\"}]}", 0644));
        ASSERT_OK(write_text(dir, "30-c.conf", "{\"cniVersion\":\"1.0.0\",\"name\":\"c\",\"type\":\"ptp\"}", 0644));
        /* Not configuration: other suffixes and hidden files. */
        ASSERT_OK(write_text(dir, "00-notes.txt", "not json", 0644));
        ASSERT_OK(write_text(dir, ".00-hidden.conflist", "not json", 0644));

        ASSERT_OK(cni_network_load(dir, NULL, &first));
        ASSERT_STREQ(first->name, "a");
        path = strjoin(dir, "/10-a.conflist", NULL);
        ASSERT_STREQ(first->file, path);

        ASSERT_OK(cni_network_load(dir, "b", &b));
        ASSERT_STREQ(b->name, "b");
        ASSERT_OK(cni_network_load(dir, "c", &single));
        ASSERT_STREQ(single->name, "c");
        ASSERT_EQ(json_array_size(single->plugins), 1);
        return 0;
}

TEST(network_load_first_file_wins_a_name) {
        _cleanup_tmpdir_ char *dir = make_tmpdir();
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;

        ASSERT_TRUE(dir);
        ASSERT_OK(write_text(dir, "10-x.conflist",
                             "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"plugins\":[{\"type\":\"one\"}]}", 0644));
        ASSERT_OK(write_text(dir, "20-x.conflist",
                             "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"plugins\":[{\"type\":\"two\"}]}", 0644));
        ASSERT_OK(cni_network_load(dir, "x", &n));
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(n->plugins, 0), "type")), "one");
        return 0;
}

TEST(network_load_errors) {
        _cleanup_tmpdir_ char *dir = make_tmpdir();
        _cleanup_free_ char *missing = NULL, *expected = NULL, *broken = NULL;
        CniNetwork *n = NULL;
        int r;

        ASSERT_TRUE(dir);
        missing = strjoin(dir, "/none", NULL);
        ASSERT_TRUE(missing);

        r = cni_network_load(missing, NULL, &n);
        ASSERT_ERROR(r, ENOENT);
        expected = strjoin("no CNI network configuration in ", missing, NULL);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(expected);

        r = cni_network_load(dir, NULL, &n);
        ASSERT_ERROR(r, ENOENT);
        expected = strjoin("no CNI network configuration in ", dir, NULL);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(expected);

        ASSERT_OK(write_text(dir, "10-a.conflist",
                             "{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"plugins\":[{\"type\":\"bridge\"}]}", 0644));
        ASSERT_OK(write_text(dir, "20-b.conf", "{\"cniVersion\":\"1.0.0\",\"name\":\"b\",\"type\":\"ptp\"}", 0644));
        r = cni_network_load(dir, "zzz", &n);
        ASSERT_ERROR(r, ENOENT);
        expected = strjoin("CNI network 'zzz' not found in ", dir, " (available: a, b)", NULL);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(expected);

        /* A broken file is reported by name, even when the network asked for is elsewhere. */
        ASSERT_OK(write_text(dir, "30-broken.conflist", "{\"cniVersion\": \"1.0.0\", \"name\": ", 0644));
        r = cni_network_load(dir, "a", &n);
        ASSERT_ERROR(r, EBADMSG);
        broken = strjoin(dir, "/30-broken.conflist", NULL);
        expected = strjoin("invalid JSON in CNI configuration ", broken,
                           ": unexpected token near end of file (line 1)", NULL);
        ASSERT_ERROR_MESSAGE(r, expected);
        ASSERT_TRUE(!n);
        return 0;
}

TEST(network_load_too_large) {
        _cleanup_tmpdir_ char *dir = make_tmpdir();
        _cleanup_free_ char *big = malloc(CNI_CONFIG_SIZE_MAX + 2), *expected = NULL;
        CniNetwork *n = NULL;
        int r;

        ASSERT_TRUE(dir);
        ASSERT_TRUE(big);
        memset(big, ' ', CNI_CONFIG_SIZE_MAX + 1);
        big[CNI_CONFIG_SIZE_MAX + 1] = '\0';
        ASSERT_OK(write_text(dir, "10-big.conflist", big, 0644));
        r = cni_network_load(dir, NULL, &n);
        ASSERT_ERROR(r, EFBIG);
        expected = strjoin("CNI configuration ", dir, "/10-big.conflist is larger than 1024 KiB", NULL);
        ASSERT_ERROR_MESSAGE(r, expected);
        return 0;
}

TEST(name_validation) {
        ASSERT_TRUE(cni_network_name_is_valid("cocoon"));
        ASSERT_TRUE(cni_network_name_is_valid("a_b.c-1"));
        ASSERT_TRUE(!cni_network_name_is_valid(""));
        ASSERT_TRUE(!cni_network_name_is_valid(".hidden"));
        ASSERT_TRUE(!cni_network_name_is_valid("a/b"));
        ASSERT_TRUE(!cni_network_name_is_valid("a b"));
        ASSERT_TRUE(cni_container_id_is_valid("0123456789abcdef"));
        ASSERT_TRUE(!cni_container_id_is_valid("_x"));
        ASSERT_TRUE(cni_ifname_is_valid("eth0"));
        ASSERT_TRUE(cni_ifname_is_valid("123456789012345"));
        ASSERT_TRUE(!cni_ifname_is_valid("1234567890123456"));
        ASSERT_TRUE(!cni_ifname_is_valid(".."));
        ASSERT_TRUE(!cni_ifname_is_valid("a/b"));
        ASSERT_TRUE(!cni_ifname_is_valid("a:1"));
        ASSERT_TRUE(!cni_ifname_is_valid(""));
        return 0;
}

TEST(args_build) {
        _cleanup_free_ char *a = NULL, *empty = NULL;
        char *items[] = { (char *) "IgnoreUnknown=1", (char *) "IP=10.0.0.5", NULL };
        char *bad_semicolon[] = { (char *) "K=a;b", NULL };
        char *bad_no_value[] = { (char *) "K", NULL };
        char *bad_empty_key[] = { (char *) "=v", NULL };
        char *none[] = { NULL };
        char *out = NULL;

        ASSERT_OK(cni_args_build(items, &a));
        ASSERT_STREQ(a, "IgnoreUnknown=1;IP=10.0.0.5");
        ASSERT_OK(cni_args_build(none, &empty));
        ASSERT_STREQ(empty, "");

        ASSERT_ERROR(cni_args_build(bad_semicolon, &out), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid CNI argument 'K=a;b'; expected KEY=VALUE without ';'");
        ASSERT_ERROR(cni_args_build(bad_no_value, &out), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid CNI argument 'K'; expected KEY=VALUE without ';'");
        ASSERT_ERROR(cni_args_build(bad_empty_key, &out), EINVAL);
        ASSERT_TRUE(!out);
        return 0;
}

TEST(build_stdin_first_plugin) {
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;
        _cleanup_free_ char *text = NULL;
        json_t *j, *caps = json_pack("{s:[{s:i}], s:s}", "portMappings", "hostPort", 8080, "mac", "aa");

        ASSERT_TRUE(caps);
        ASSERT_OK(cni_network_parse(BRIDGE_LIST, strlen(BRIDGE_LIST), "a.conflist", true, &n));
        ASSERT_OK(cni_build_stdin(n, 0, caps, NULL, &text));
        j = json_loads(text, 0, NULL);
        ASSERT_TRUE(j);
        ASSERT_STREQ(json_string_value(json_object_get(j, "cniVersion")), "1.0.0");
        ASSERT_STREQ(json_string_value(json_object_get(j, "name")), "net-a");
        ASSERT_STREQ(json_string_value(json_object_get(j, "type")), "bridge");
        ASSERT_STREQ(json_string_value(json_object_get(j, "bridge")), "br0");
        /* Unknown keys pass through, nothing is invented. */
        ASSERT_TRUE(json_is_object(json_object_get(j, "ipam")));
        ASSERT_TRUE(!json_object_get(j, "prevResult"));
        ASSERT_TRUE(!json_object_get(j, "runtimeConfig"));
        json_decref(j);
        json_decref(caps);
        return 0;
}

TEST(build_stdin_chains_and_capabilities) {
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;
        _cleanup_free_ char *text = NULL;
        json_t *j, *rc, *caps = json_pack("{s:[{s:i}], s:s, s:b}", "portMappings", "hostPort", 8080,
                                          "mac", "aa:bb:cc:dd:ee:ff", "bandwidth", 1);
        json_t *prev = json_pack("{s:s, s:[{s:s}]}", "cniVersion", "1.0.0", "interfaces", "name", "eth0");

        ASSERT_TRUE(caps);
        ASSERT_TRUE(prev);
        ASSERT_OK(cni_network_parse(BRIDGE_LIST, strlen(BRIDGE_LIST), "a.conflist", true, &n));
        ASSERT_OK(cni_build_stdin(n, 1, caps, prev, &text));
        j = json_loads(text, 0, NULL);
        ASSERT_TRUE(j);
        ASSERT_STREQ(json_string_value(json_object_get(j, "type")), "portmap");
        ASSERT_STREQ(json_string_value(json_object_get(j, "name")), "net-a");
        ASSERT_TRUE(!json_object_get(j, "capabilities"));
        ASSERT_TRUE(json_equal(json_object_get(j, "prevResult"), prev));
        /* Only capabilities declared true reach runtimeConfig; "mac" is false, "bandwidth" absent. */
        rc = json_object_get(j, "runtimeConfig");
        ASSERT_TRUE(json_is_object(rc));
        ASSERT_EQ(json_object_size(rc), 1);
        ASSERT_TRUE(json_equal(json_object_get(rc, "portMappings"), json_object_get(caps, "portMappings")));
        json_decref(j);
        json_decref(caps);
        json_decref(prev);

        /* The network's plugin objects are left as they were. */
        ASSERT_TRUE(json_object_get(json_array_get(n->plugins, 1), "capabilities"));
        return 0;
}

#define REAL_RESULT \
        "{\"cniVersion\":\"1.0.0\"," \
        "\"interfaces\":[{\"name\":\"cni0\",\"mac\":\"82:37:00:00:00:01\"}," \
        "{\"name\":\"vethbdbc7a29\",\"mac\":\"66:18:00:00:00:02\"}," \
        "{\"name\":\"eth0\",\"mac\":\"c2:a8:00:00:00:03\",\"sandbox\":\"/run/netns/x\"}]," \
        "\"ips\":[{\"interface\":2,\"address\":\"10.99.0.2/24\",\"gateway\":\"10.99.0.1\"}," \
        "{\"interface\":2,\"address\":\"fd00::2/64\",\"gateway\":\"fd00::1\"}]," \
        "\"routes\":[{\"dst\":\"0.0.0.0/0\"},{\"dst\":\"10.1.0.0/16\",\"gw\":\"10.99.0.254\"}]," \
        "\"dns\":{\"nameservers\":[\"10.99.0.1\"],\"domain\":\"example.test\"," \
        "\"search\":[\"example.test\"],\"options\":[\"ndots:2\"]}}"

TEST(result_parse_full) {
        _cleanup_(cni_result_freep) CniResult *r = NULL;
        const CniIp *ip;

        ASSERT_OK(cni_result_parse(REAL_RESULT, strlen(REAL_RESULT), &r));
        ASSERT_STREQ(r->cni_version, "1.0.0");
        ASSERT_EQ(r->n_interfaces, 3);
        ASSERT_STREQ(r->interfaces[2].name, "eth0");
        ASSERT_STREQ(r->interfaces[2].mac, "c2:a8:00:00:00:03");
        ASSERT_STREQ(r->interfaces[2].sandbox, "/run/netns/x");
        ASSERT_TRUE(!r->interfaces[0].sandbox);
        ASSERT_EQ(r->n_ips, 2);
        ASSERT_EQ(r->ips[0].interface, 2);
        ASSERT_STREQ(r->ips[1].address, "fd00::2/64");
        ASSERT_EQ(r->n_routes, 2);
        ASSERT_STREQ(r->routes[0].dst, "0.0.0.0/0");
        ASSERT_TRUE(!r->routes[0].gw);
        ASSERT_STREQ(r->routes[1].gw, "10.99.0.254");
        ASSERT_STREQ(r->dns_nameservers[0], "10.99.0.1");
        ASSERT_STREQ(r->dns_domain, "example.test");
        ASSERT_STREQ(r->dns_search[0], "example.test");
        ASSERT_STREQ(r->dns_options[0], "ndots:2");

        ip = cni_result_find_ipv4(r, "eth0");
        ASSERT_TRUE(ip);
        ASSERT_STREQ(ip->address, "10.99.0.2/24");
        ASSERT_STREQ(ip->gateway, "10.99.0.1");
        ASSERT_TRUE(!cni_result_find_ipv4(r, "eth1"));
        return 0;
}

TEST(result_parse_older_and_minimal) {
        /* 0.4.0 results carry "version" in ips; 0.3.x ones may name no interface. */
        const char *v04 = "{\"cniVersion\":\"0.4.0\",\"ips\":[{\"version\":\"4\",\"address\":\"10.0.0.9/16\"}]}";
        const char *empty = "{\"cniVersion\":\"1.0.0\"}";
        _cleanup_(cni_result_freep) CniResult *a = NULL, *b = NULL;
        const CniIp *ip;

        ASSERT_OK(cni_result_parse(v04, strlen(v04), &a));
        ASSERT_EQ(a->ips[0].interface, -1);
        ip = cni_result_find_ipv4(a, "eth0");
        ASSERT_TRUE(ip);
        ASSERT_STREQ(ip->address, "10.0.0.9/16");
        ASSERT_TRUE(!ip->gateway);

        ASSERT_OK(cni_result_parse(empty, strlen(empty), &b));
        ASSERT_EQ(b->n_interfaces + b->n_ips + b->n_routes, 0);
        ASSERT_TRUE(!cni_result_find_ipv4(b, "eth0"));
        return 0;
}

TEST(result_find_ipv4_skips_host_side) {
        /* The address on the host's bridge must not be taken for the guest's. */
        const char *text = "{\"interfaces\":[{\"name\":\"eth0\"},{\"name\":\"eth0\",\"sandbox\":\"/run/netns/a\"}],"
                           "\"ips\":[{\"interface\":0,\"address\":\"10.0.0.1/24\"},"
                           "{\"interface\":1,\"address\":\"10.0.0.7/24\"}]}";
        _cleanup_(cni_result_freep) CniResult *r = NULL;

        ASSERT_OK(cni_result_parse(text, strlen(text), &r));
        ASSERT_STREQ(cni_result_find_ipv4(r, "eth0")->address, "10.0.0.7/24");
        return 0;
}

TEST(result_parse_errors) {
        static const struct {
                const char *text;
                const char *reason;
        } cases[] = {
                { "not json", "result is not valid JSON: '[' or '{' expected near 'not'" },
                { "[]", "result is not a JSON object" },
                { "{\"interfaces\":{}}", "'interfaces' is not an array" },
                { "{\"interfaces\":[1]}", "interfaces[0] is not a JSON object" },
                { "{\"interfaces\":[{\"mac\":\"x\"}]}", "interfaces[0] has no 'name'" },
                { "{\"interfaces\":[{\"name\":5}]}", "'name' of interfaces[0] is not a string" },
                { "{\"ips\":[{}]}", "ips[0] has no 'address'" },
                { "{\"ips\":[{\"address\":\"10.0.0.1\"}]}",
                  "invalid address '10.0.0.1' in ips[0]; expected CIDR notation" },
                { "{\"ips\":[{\"address\":\"10.0.0.1/33\"}]}",
                  "invalid address '10.0.0.1/33' in ips[0]; expected CIDR notation" },
                { "{\"ips\":[{\"address\":\"10.0.0.1/24\",\"gateway\":\"x\"}]}", "invalid gateway 'x' in ips[0]" },
                { "{\"ips\":[{\"address\":\"10.0.0.1/24\",\"interface\":0}]}",
                  "'interface' of ips[0] is not an index into the 0 interfaces" },
                { "{\"interfaces\":[{\"name\":\"a\"}],\"ips\":[{\"address\":\"10.0.0.1/24\",\"interface\":-1}]}",
                  "'interface' of ips[0] is not an index into the 1 interfaces" },
                { "{\"routes\":[{\"gw\":\"10.0.0.1\"}]}", "routes[0] has no 'dst'" },
                { "{\"routes\":[{\"dst\":\"default\"}]}", "invalid destination 'default' in routes[0]" },
                { "{\"dns\":[]}", "'dns' is not a JSON object" },
                { "{\"dns\":{\"nameservers\":[1]}}", "'nameservers[0]' of dns is not a string" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                CniResult *r = NULL;
                int q = cni_result_parse(cases[i].text, strlen(cases[i].text), &r);

                if (q != -EBADMSG || !streq(error_message(q), cases[i].reason)) {
                        fprintf(stderr, "case %zu: %d \"%s\"\n", i, q, error_message(q));
                        return 1;
                }
                ASSERT_TRUE(!r);
        }
        return 0;
}

TEST(error_message_sources) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL, *g = NULL;

        a = cni_error_message("{\"code\":999,\"msg\":\"no IP addresses available\"}", "", 1);
        ASSERT_STREQ(a, "no IP addresses available");
        b = cni_error_message("{\"code\":1,\"msg\":\"incompatible CNI versions\",\"details\":\"config is \\\"9.9.9\\\"\"}",
                              "ignored", 1);
        ASSERT_STREQ(b, "incompatible CNI versions; config is \"9.9.9\"");
        c = cni_error_message("", "panic: runtime error\n\tgoroutine 1\n", 2);
        ASSERT_STREQ(c, "panic: runtime error goroutine 1");
        d = cni_error_message("", "", 3);
        ASSERT_STREQ(d, "exit status 3 with no error output");
        e = cni_error_message("{\"code\":7}", "", 1);
        ASSERT_STREQ(e, "error code 7 with no message");
        f = cni_error_message("plain text\nsecond line", "", 1);
        ASSERT_STREQ(f, "plain text second line");
        g = cni_error_message("{\"code\":999,\"msg\":\"multi\\nline\"}", "", 1);
        ASSERT_STREQ(g, "multi line");
        return 0;
}

TEST(error_message_long_is_cut) {
        _cleanup_free_ char *text = malloc(2001), *m = NULL;

        ASSERT_TRUE(text);
        memset(text, 'x', 2000);
        text[2000] = '\0';
        m = cni_error_message("", text, 1);
        ASSERT_EQ(strlen(m), 400);
        ASSERT_TRUE(endswith(m, "..."));
        return 0;
}

/* A fake plugin: records its environment, stdin and the order of DELs in dir, and prints a
 * result naming itself. */
static int write_fake_plugin(const char *dir, const char *type, const char *address) {
        _cleanup_free_ char *script = NULL;

        if (asprintf(&script,
                     "#!/bin/sh\n"
                     "env > '%1$s/%2$s-'$CNI_COMMAND'.env'\n"
                     "cat > '%1$s/%2$s-'$CNI_COMMAND'.in'\n"
                     "case $CNI_COMMAND in\n"
                     "ADD) printf '{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"%%s\",\"sandbox\":\"%%s\"}],"
                     "\"ips\":[{\"interface\":0,\"address\":\"%3$s\",\"gateway\":\"10.7.0.1\"}],"
                     "\"dns\":{\"nameservers\":[\"%2$s\"]}}' \"$CNI_IFNAME\" \"$CNI_NETNS\" ;;\n"
                     "DEL) echo %2$s >> '%1$s/del-order' ;;\n"
                     "esac\n",
                     dir, type, address) < 0)
                return -ENOMEM;
        return write_text(dir, type, script, 0755);
}

typedef struct Fixture {
        char *dir;
        char *cache;
        CniNetwork *net;
} Fixture;

static void fixture_done(Fixture *f) {
        cni_network_free(f->net);
        free(f->cache);
        rm_rf_freep(&f->dir);
}

static int fixture_init(Fixture *f, const char *extra_plugin) {
        _cleanup_free_ char *list = NULL;

        *f = (Fixture) {};
        f->dir = make_tmpdir();
        if (!f->dir || !(f->cache = strjoin(f->dir, "/cache", NULL)))
                return -ENOMEM;
        if (write_fake_plugin(f->dir, "fake-a", "10.7.0.5/24") < 0 ||
            write_fake_plugin(f->dir, "fake-b", "10.7.0.6/24") < 0)
                return -EIO;
        if (asprintf(&list, "{\"cniVersion\":\"1.0.0\",\"name\":\"fake\",\"plugins\":["
                            "{\"type\":\"fake-a\",\"capabilities\":{\"mac\":true}},{\"type\":\"fake-b\"}%s]}",
                     extra_plugin ?: "") < 0)
                return -ENOMEM;
        return cni_network_parse(list, strlen(list), "fake.conflist", true, &f->net);
}

#define _cleanup_fixture_ _cleanup_(fixture_done)

TEST(add_chains_caches_and_deletes) {
        _cleanup_fixture_ Fixture f = {};
        _cleanup_(cni_result_freep) CniResult *res = NULL;
        _cleanup_free_ char *env = NULL, *in_a = NULL, *in_b = NULL, *del_in = NULL, *order = NULL;
        _cleanup_free_ char *cache_file = NULL;
        json_t *in, *list = NULL, *cached = NULL, *caps = json_pack("{s:s}", "mac", "02:00:00:00:00:01");

        ASSERT_OK(fixture_init(&f, NULL));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache, .timeout_sec = 10 };
        CniAttachment a = { .container_id = "0123456789abcdef", .netns = "/run/netns/cocoon-test",
                            .ifname = "eth1", .args = "IgnoreUnknown=1;IP=10.7.0.5", .capability_args = caps };

        ASSERT_OK(cni_add(&rt, f.net, &a, &res));
        /* The final result is the last plugin's. */
        ASSERT_STREQ(res->ips[0].address, "10.7.0.6/24");
        ASSERT_STREQ(res->dns_nameservers[0], "fake-b");
        ASSERT_STREQ(res->interfaces[0].sandbox, "/run/netns/cocoon-test");

        env = read_text(f.dir, "fake-a-ADD.env");
        ASSERT_TRUE(env);
        ASSERT_TRUE(strstr(env, "CNI_COMMAND=ADD\n"));
        ASSERT_TRUE(strstr(env, "CNI_CONTAINERID=0123456789abcdef\n"));
        ASSERT_TRUE(strstr(env, "CNI_NETNS=/run/netns/cocoon-test\n"));
        ASSERT_TRUE(strstr(env, "CNI_IFNAME=eth1\n"));
        ASSERT_TRUE(strstr(env, "CNI_ARGS=IgnoreUnknown=1;IP=10.7.0.5\n"));
        ASSERT_TRUE(strstr(env, "CNI_PATH="));
        /* A clean environment: nothing of the test's own. */
        ASSERT_TRUE(!strstr(env, "HOME="));

        in_a = read_text(f.dir, "fake-a-ADD.in");
        in = json_loads(in_a, 0, NULL);
        ASSERT_TRUE(in);
        ASSERT_TRUE(!json_object_get(in, "prevResult"));
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(in, "runtimeConfig"), "mac")),
                     "02:00:00:00:00:01");
        json_decref(in);

        in_b = read_text(f.dir, "fake-b-ADD.in");
        in = json_loads(in_b, 0, NULL);
        ASSERT_TRUE(in);
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(
                             json_object_get(in, "prevResult"), "ips"), 0), "address")), "10.7.0.5/24");
        json_decref(in);

        cache_file = cni_cache_path(f.cache, "fake", "0123456789abcdef", "eth1");
        ASSERT_OK(cni_cache_read(cache_file, "fake", "0123456789abcdef", "eth1", &list, &cached));
        ASSERT_TRUE(json_equal(cached, res->json));
        ASSERT_TRUE(json_equal(list, f.net->json));
        json_decref(list);
        json_decref(cached);

        /* DEL: reverse order, cached result as prevResult, empty CNI_NETNS once the netns is gone. */
        a.args = NULL;
        ASSERT_OK(cni_del(&rt, f.net, NULL, &a));
        order = read_text(f.dir, "del-order");
        ASSERT_STREQ(order, "fake-b\nfake-a\n");
        del_in = read_text(f.dir, "fake-a-DEL.in");
        in = json_loads(del_in, 0, NULL);
        ASSERT_TRUE(json_equal(json_object_get(in, "prevResult"), res->json));
        json_decref(in);
        free(env);
        env = read_text(f.dir, "fake-a-DEL.env");
        ASSERT_TRUE(strstr(env, "CNI_NETNS=\n"));
        ASSERT_ERROR(access(cache_file, F_OK) < 0 ? -errno : 0, ENOENT);

        /* Again, with nothing cached: still success, without prevResult. */
        ASSERT_OK(cni_del(&rt, f.net, NULL, &a));
        free(del_in);
        del_in = read_text(f.dir, "fake-a-DEL.in");
        in = json_loads(del_in, 0, NULL);
        ASSERT_TRUE(in);
        ASSERT_TRUE(!json_object_get(in, "prevResult"));
        json_decref(in);
        json_decref(caps);
        return 0;
}

TEST(del_uses_cached_list) {
        _cleanup_fixture_ Fixture f = {};
        _cleanup_(cni_result_freep) CniResult *res = NULL;
        _cleanup_free_ char *order = NULL;

        ASSERT_OK(fixture_init(&f, NULL));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache };
        CniAttachment a = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0" };

        ASSERT_OK(cni_add(&rt, f.net, &a, &res));
        /* The configuration file is gone: DEL runs from the cached copy of the list. */
        ASSERT_OK(cni_del(&rt, NULL, "fake", &a));
        order = read_text(f.dir, "del-order");
        ASSERT_STREQ(order, "fake-b\nfake-a\n");

        /* Neither cache nor configuration: nothing to run, nothing to fail. */
        ASSERT_OK(cni_del(&rt, NULL, "fake", &a));
        return 0;
}

TEST(check_runs_with_cached_result) {
        _cleanup_fixture_ Fixture f = {};
        _cleanup_(cni_result_freep) CniResult *res = NULL;
        _cleanup_free_ char *in_text = NULL, *expected = NULL;
        json_t *in;
        int r;

        ASSERT_OK(fixture_init(&f, NULL));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache };
        CniAttachment a = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0" };

        r = cni_check(&rt, f.net, &a, 0);
        ASSERT_ERROR(r, ENOENT);
        ASSERT_ERROR_MESSAGE(r, "no cached CNI result for eth0 of c1 in network 'fake'");

        ASSERT_OK(cni_add(&rt, f.net, &a, &res));
        ASSERT_OK(cni_check(&rt, f.net, &a, 0));
        in_text = read_text(f.dir, "fake-b-CHECK.in");
        in = json_loads(in_text, 0, NULL);
        ASSERT_TRUE(json_equal(json_object_get(in, "prevResult"), res->json));
        json_decref(in);

        ASSERT_OK(cni_check(&rt, f.net, &a, CNI_CHECK_WITHOUT_ADDRESSES));
        free(in_text);
        in_text = read_text(f.dir, "fake-a-CHECK.in");
        in = json_loads(in_text, 0, NULL);
        ASSERT_TRUE(json_object_get(json_object_get(in, "prevResult"), "interfaces"));
        ASSERT_TRUE(!json_object_get(json_object_get(in, "prevResult"), "ips"));
        json_decref(in);

        f.net->disable_check = true;
        r = cni_check(&rt, f.net, &a, 0);
        ASSERT_ERROR(r, EOPNOTSUPP);
        ASSERT_ERROR_MESSAGE(r, "CNI network 'fake' sets disableCheck");
        return 0;
}

TEST(check_needs_version_0_4) {
        const char *list = "{\"cniVersion\":\"0.3.1\",\"name\":\"old\",\"plugins\":[{\"type\":\"x\"}]}";
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;
        CniRuntime rt = { .bin_dir = "/nonexistent", .cache_dir = "/nonexistent" };
        CniAttachment a = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0" };
        int r;

        ASSERT_OK(cni_network_parse(list, strlen(list), "old.conflist", true, &n));
        r = cni_check(&rt, n, &a, 0);
        ASSERT_ERROR(r, EOPNOTSUPP);
        ASSERT_ERROR_MESSAGE(r, "CNI network 'old' uses cniVersion 0.3.1, which has no CHECK");
        return 0;
}

TEST(plugin_errors_reach_the_caller) {
        _cleanup_fixture_ Fixture f = {};
        CniResult *res = NULL;
        int r;

        ASSERT_OK(fixture_init(&f, ",{\"type\":\"fails\"}"));
        ASSERT_OK(write_text(f.dir, "fails",
                             "#!/bin/sh\ncat >/dev/null\n"
                             "echo '{\"code\":999,\"msg\":\"failed to allocate for range 0: no IP addresses "
                             "available in range set: 10.7.0.1-10.7.0.6\"}'\nexit 1\n", 0755));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache };
        CniAttachment a = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth3" };

        r = cni_add(&rt, f.net, &a, &res);
        ASSERT_ERROR(r, EIO);
        ASSERT_ERROR_MESSAGE(r, "CNI plugin 'fails' failed to add eth3: failed to allocate for range 0: "
                                "no IP addresses available in range set: 10.7.0.1-10.7.0.6");
        ASSERT_TRUE(!res);
        /* Nothing is cached for a failed ADD. */
        ASSERT_TRUE(access(f.cache, F_OK) < 0);
        return 0;
}

TEST(plugin_stderr_and_bad_output) {
        _cleanup_fixture_ Fixture f = {};
        CniResult *res = NULL;
        int r;

        ASSERT_OK(fixture_init(&f, ",{\"type\":\"stderr\"}"));
        ASSERT_OK(write_text(f.dir, "stderr", "#!/bin/sh\necho 'netlink: permission denied' >&2\nexit 1\n", 0755));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache };
        CniAttachment a = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0" };

        r = cni_add(&rt, f.net, &a, &res);
        ASSERT_ERROR(r, EIO);
        ASSERT_ERROR_MESSAGE(r, "CNI plugin 'stderr' failed to add eth0: netlink: permission denied");

        ASSERT_OK(write_text(f.dir, "stderr", "#!/bin/sh\necho 'not a result'\n", 0755));
        r = cni_add(&rt, f.net, &a, &res);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_ERROR_MESSAGE(r, "invalid result from CNI plugin 'stderr' for eth0: result is not valid JSON: "
                                "'[' or '{' expected near 'not'");

        ASSERT_OK(write_text(f.dir, "stderr", "#!/bin/sh\nkill -9 $$\n", 0755));
        r = cni_add(&rt, f.net, &a, &res);
        ASSERT_ERROR(r, ECHILD);
        ASSERT_ERROR_MESSAGE(r, "CNI plugin 'stderr' failed to add eth0: killed by signal 9");
        return 0;
}

TEST(plugin_missing_and_timeout) {
        _cleanup_fixture_ Fixture f = {};
        _cleanup_free_ char *expected = NULL;
        CniResult *res = NULL;
        int r;

        ASSERT_OK(fixture_init(&f, ",{\"type\":\"slow\"}"));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache, .timeout_sec = 1 };
        CniAttachment a = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0" };

        r = cni_add(&rt, f.net, &a, &res);
        ASSERT_ERROR(r, ENOENT);
        expected = strjoin("CNI plugin 'slow' not found in ", f.dir, NULL);
        ASSERT_ERROR_MESSAGE(r, expected);

        /* exec keeps the pid, so the kill reaches the sleeping process itself. */
        ASSERT_OK(write_text(f.dir, "slow", "#!/bin/sh\nexec sleep 30\n", 0755));
        r = cni_add(&rt, f.net, &a, &res);
        ASSERT_ERROR(r, ETIMEDOUT);
        ASSERT_ERROR_MESSAGE(r, "CNI plugin 'slow' timed out after 1 s while trying to add eth0");
        return 0;
}

TEST(plugin_exits_without_reading_stdin) {
        _cleanup_fixture_ Fixture f = {};
        _cleanup_free_ char *pad = malloc(512 * 1024), *extra = NULL;
        CniResult *res = NULL;
        int r;

        /* stdin larger than a pipe buffer, and a plugin that exits without reading it. */
        ASSERT_TRUE(pad);
        memset(pad, 'x', 512 * 1024 - 1);
        pad[512 * 1024 - 1] = '\0';
        extra = strjoin(",{\"type\":\"early\",\"pad\":\"", pad, "\"}", NULL);
        ASSERT_TRUE(extra);
        ASSERT_OK(fixture_init(&f, extra));
        ASSERT_OK(write_text(f.dir, "early", "#!/bin/sh\necho '{\"code\":4,\"msg\":\"bad env\"}'\nexit 1\n", 0755));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache };
        CniAttachment a = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0" };

        r = cni_add(&rt, f.net, &a, &res);
        ASSERT_ERROR(r, EIO);
        ASSERT_ERROR_MESSAGE(r, "CNI plugin 'early' failed to add eth0: bad env");
        return 0;
}

TEST(attachment_validation) {
        _cleanup_fixture_ Fixture f = {};
        CniResult *res = NULL;
        int r;

        ASSERT_OK(fixture_init(&f, NULL));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache };
        CniAttachment bad_id = { .container_id = "../x", .netns = "/run/netns/x", .ifname = "eth0" };
        CniAttachment bad_if = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0/../x" };
        CniAttachment no_ns = { .container_id = "c1", .ifname = "eth0" };

        r = cni_add(&rt, f.net, &bad_id, &res);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid CNI container id '../x'");
        r = cni_del(&rt, f.net, NULL, &bad_if);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid interface name 'eth0/../x'");
        r = cni_add(&rt, f.net, &no_ns, &res);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "CNI ADD of eth0 needs a network namespace");
        return 0;
}

TEST(cache_list_by_container) {
        _cleanup_fixture_ Fixture f = {};
        _cleanup_(cni_result_freep) CniResult *r1 = NULL, *r2 = NULL, *r3 = NULL;
        _cleanup_strv_free_ char **networks = NULL, **ifnames = NULL, **none_n = NULL, **none_i = NULL;

        ASSERT_OK(fixture_init(&f, NULL));
        CniRuntime rt = { .bin_dir = f.dir, .cache_dir = f.cache };
        CniAttachment a0 = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth0" };
        CniAttachment a1 = { .container_id = "c1", .netns = "/run/netns/x", .ifname = "eth1" };
        CniAttachment other = { .container_id = "c2", .netns = "/run/netns/y", .ifname = "eth0" };

        ASSERT_OK(cni_add(&rt, f.net, &a0, &r1));
        ASSERT_OK(cni_add(&rt, f.net, &a1, &r2));
        ASSERT_OK(cni_add(&rt, f.net, &other, &r3));
        ASSERT_OK(write_text(f.cache, "garbage.json", "{", 0600));

        ASSERT_OK(cni_cache_list(f.cache, "c1", &networks, &ifnames));
        ASSERT_EQ(strv_length(networks), 2);
        ASSERT_STREQ(networks[0], "fake");
        ASSERT_TRUE(strv_contains(ifnames, "eth0"));
        ASSERT_TRUE(strv_contains(ifnames, "eth1"));

        ASSERT_OK(cni_cache_list("/nonexistent", "c1", &none_n, &none_i));
        ASSERT_EQ(strv_length(none_n), 0);
        return 0;
}

TEST(cache_entry_must_match) {
        _cleanup_tmpdir_ char *dir = make_tmpdir();
        _cleanup_free_ char *path = NULL, *expected = NULL;
        json_t *list = NULL, *result = NULL;
        int r;

        ASSERT_TRUE(dir);
        path = cni_cache_path(dir, "n", "c1", "eth0");
        ASSERT_STREQ(path + strlen(dir), "/n-c1-eth0.json");
        ASSERT_ERROR(cni_cache_read(path, "n", "c1", "eth0", &list, &result), ENOENT);

        /* An entry of another attachment at this path is not used. */
        ASSERT_OK(write_text(dir, "n-c1-eth0.json",
                             "{\"kind\":\"cniCacheV1\",\"containerId\":\"c1-eth0\",\"ifName\":\"eth0\","
                             "\"networkName\":\"n\",\"result\":{}}", 0600));
        r = cni_cache_read(path, "n", "c1", "eth0", &list, &result);
        ASSERT_ERROR(r, EBADMSG);
        expected = strjoin("invalid CNI cache entry ", path, NULL);
        ASSERT_ERROR_MESSAGE(r, expected);
        return 0;
}

DEFINE_TEST_MAIN
