/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/stat.h>

#include "fileio.h"
#include "network.h"
#include "strv.h"
#include "tap.h"
#include "tests.h"

static void rm_rf_freep(char **p) {
        if (*p) {
                (void) rm_rf(*p);
                free(*p);
        }
}

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-network.XXXXXX");

        if (d && !mkdtemp(d)) {
                free(d);
                return NULL;
        }
        return d;
}

TEST(vm_id_and_netns_names) {
        _cleanup_free_ char *name = network_netns_name("0123456789abcdef");
        _cleanup_free_ char *path = network_netns_path("0123456789abcdef");

        ASSERT_STREQ(name, "cocoon-0123456789abcdef");
        ASSERT_STREQ(path, "/run/netns/cocoon-0123456789abcdef");
        ASSERT_TRUE(network_vm_id_is_valid("0123456789abcdef"));
        ASSERT_TRUE(!network_vm_id_is_valid("0123456789ABCDEF"));
        ASSERT_TRUE(!network_vm_id_is_valid("0123456789abcde"));
        ASSERT_TRUE(!network_vm_id_is_valid("0123456789abcdef0"));
        ASSERT_TRUE(!network_vm_id_is_valid("../../etc/passwd"));
        ASSERT_TRUE(!network_vm_id_is_valid(NULL));
        return 0;
}

TEST(parse_ipv4_cidr) {
        _cleanup_free_ char *ip = NULL, *zero = NULL;
        char *none = NULL;
        unsigned prefix = 99;

        ASSERT_OK(network_parse_ipv4_cidr("10.99.0.2/24", &ip, &prefix));
        ASSERT_STREQ(ip, "10.99.0.2");
        ASSERT_EQ(prefix, 24);
        ASSERT_OK(network_parse_ipv4_cidr("0.0.0.0/0", &zero, &prefix));
        ASSERT_EQ(prefix, 0);

        ASSERT_ERROR(network_parse_ipv4_cidr("10.99.0.2", &none, &prefix), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid IPv4 address '10.99.0.2'; expected a.b.c.d/N");
        ASSERT_ERROR(network_parse_ipv4_cidr("10.99.0.2/33", &none, &prefix), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid IPv4 address '10.99.0.2/33'; expected a.b.c.d/N");
        ASSERT_ERROR(network_parse_ipv4_cidr("fd00::2/64", &none, &prefix), EINVAL);
        ASSERT_ERROR(network_parse_ipv4_cidr("10.99.0.2/", &none, &prefix), EINVAL);
        ASSERT_ERROR(network_parse_ipv4_cidr("10.99.0.2/-1", &none, &prefix), EINVAL);
        ASSERT_ERROR(network_parse_ipv4_cidr("10.99.0.2/24x", &none, &prefix), EINVAL);
        ASSERT_ERROR(network_parse_ipv4_cidr("/24", &none, &prefix), EINVAL);
        ASSERT_TRUE(!none);
        return 0;
}

TEST(prefix_netmask_round_trip) {
        char mask[INET_ADDRSTRLEN];
        unsigned prefix;

        for (unsigned p = 0; p <= 32; p++) {
                ASSERT_OK(network_prefix_to_netmask(p, mask));
                ASSERT_OK(network_netmask_to_prefix(mask, &prefix));
                ASSERT_EQ(prefix, p);
        }

        ASSERT_OK(network_prefix_to_netmask(24, mask));
        ASSERT_STREQ(mask, "255.255.255.0");
        ASSERT_OK(network_prefix_to_netmask(25, mask));
        ASSERT_STREQ(mask, "255.255.255.128");
        ASSERT_OK(network_prefix_to_netmask(0, mask));
        ASSERT_STREQ(mask, "0.0.0.0");
        ASSERT_OK(network_prefix_to_netmask(32, mask));
        ASSERT_STREQ(mask, "255.255.255.255");

        ASSERT_ERROR(network_prefix_to_netmask(33, mask), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid IPv4 prefix length 33; expected 0-32");
        ASSERT_ERROR(network_netmask_to_prefix("255.0.255.0", &prefix), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid IPv4 netmask '255.0.255.0'; the bits are not contiguous");
        ASSERT_ERROR(network_netmask_to_prefix("255.255.255.1", &prefix), EINVAL);
        ASSERT_ERROR(network_netmask_to_prefix("255.255", &prefix), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid IPv4 netmask '255.255'");
        return 0;
}

TEST(request_ip_args) {
        _cleanup_free_ char *args = NULL;
        char *none = NULL;

        ASSERT_OK(network_request_ip_args("10.99.0.7", &args));
        ASSERT_STREQ(args, "IgnoreUnknown=1;IP=10.99.0.7");
        ASSERT_ERROR(network_request_ip_args("10.99.0.7;X=1", &none), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid IPv4 address '10.99.0.7;X=1'");
        ASSERT_ERROR(network_request_ip_args(NULL, &none), EINVAL);
        ASSERT_TRUE(!none);
        return 0;
}

TEST(mac_parse_and_format) {
        unsigned char mac[6];
        char s[TAP_MAC_STRING_MAX];

        ASSERT_OK(tap_mac_parse("5E:09:0b:20:98:8e", mac));
        ASSERT_EQ(mac[0], 0x5e);
        ASSERT_EQ(mac[5], 0x8e);
        tap_mac_format(mac, s);
        ASSERT_STREQ(s, "5e:09:0b:20:98:8e");

        ASSERT_ERROR(tap_mac_parse("5e:09:0b:20:98", mac), EINVAL);
        ASSERT_ERROR(tap_mac_parse("5e:09:0b:20:98:8g", mac), EINVAL);
        ASSERT_ERROR(tap_mac_parse("5e-09-0b-20-98-8e", mac), EINVAL);
        ASSERT_ERROR(tap_mac_parse(" e:09:0b:20:98:8e", mac), EINVAL);
        ASSERT_ERROR(tap_mac_parse(NULL, mac), EINVAL);
        return 0;
}

TEST(create_without_nics_needs_nothing) {
        NetworkConfig c = { .conf_dir = "/nonexistent", .bin_dir = "/nonexistent", .state_dir = "/nonexistent" };
        VmNic *nics = (VmNic *) 1;
        size_t n = 7;

        ASSERT_OK(network_create(&c, "0123456789abcdef", 0, 1, &nics, &n));
        ASSERT_TRUE(!nics);
        ASSERT_EQ(n, 0);
        /* Nothing to take down or up either. */
        ASSERT_OK(network_down(&c, "0123456789abcdef", NULL, 0));
        ASSERT_OK(network_up(&c, "0123456789abcdef", NULL, 0));
        return 0;
}

TEST(create_checks_before_touching_anything) {
        __attribute__((cleanup(rm_rf_freep))) char *dir = make_tmpdir();
        _cleanup_free_ char *conf = NULL, *state = NULL, *expected = NULL;
        VmNic *nics = NULL;
        size_t n = 0;
        int r;

        ASSERT_TRUE(dir);
        conf = strjoin(dir, "/net.d", NULL);
        state = strjoin(dir, "/cni", NULL);
        ASSERT_TRUE(conf);
        ASSERT_TRUE(state);
        NetworkConfig c = { .conf_dir = conf, .bin_dir = "/usr/lib/cni", .state_dir = state };

        r = network_create(&c, "not-an-id", 1, 1, &nics, &n);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid VM id 'not-an-id'; expected 16 hex digits");

        r = network_create(&c, "0123456789abcdef", 1, 1, &nics, &n);
        ASSERT_ERROR(r, ENOENT);
        expected = strjoin("no CNI network configuration in ", conf, NULL);
        ASSERT_ERROR_MESSAGE(r, expected);
        ASSERT_TRUE(!nics);
        /* No marker was written, so no namespace can have been made. */
        ASSERT_TRUE(access(state, F_OK) < 0);
        return 0;
}

TEST(list_stale_uses_markers) {
        __attribute__((cleanup(rm_rf_freep))) char *dir = make_tmpdir();
        _cleanup_free_ char *markers = NULL;
        _cleanup_strv_free_ char **stale = NULL, **none = NULL;
        const char *ids[] = { "0123456789abcdef", "fedcba9876543210", "00000000000000aa" };
        char *live[] = { (char *) "fedcba9876543210", NULL };

        ASSERT_TRUE(dir);
        NetworkConfig c = { .conf_dir = dir, .bin_dir = dir, .state_dir = dir };

        ASSERT_OK(network_list_stale(&c, live, &none));
        ASSERT_EQ(strv_length(none), 0);

        markers = strjoin(dir, "/netns", NULL);
        ASSERT_TRUE(markers);
        ASSERT_OK(mkdir_p(markers, 0755));
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                _cleanup_free_ char *p = strjoin(markers, "/", ids[i], NULL);

                ASSERT_OK(write_file_atomic(p, "x\n", 2, 0644));
        }
        /* Not a VM id: never reported, so never deleted. */
        {
                _cleanup_free_ char *p = strjoin(markers, "/cocoon-shared", NULL);

                ASSERT_OK(write_file_atomic(p, "x\n", 2, 0644));
        }

        ASSERT_OK(network_list_stale(&c, live, &stale));
        ASSERT_EQ(strv_length(stale), 2);
        ASSERT_STREQ(stale[0], "00000000000000aa");
        ASSERT_STREQ(stale[1], "0123456789abcdef");
        return 0;
}

TEST(remove_without_anything_is_fine) {
        __attribute__((cleanup(rm_rf_freep))) char *dir = make_tmpdir();

        ASSERT_TRUE(dir);
        NetworkConfig c = { .conf_dir = dir, .bin_dir = dir, .state_dir = dir };

        /* No record NICs, no cache, no marker: nothing is deleted, /run/netns is not touched. */
        ASSERT_OK(network_remove(&c, "0123456789abcdef", NULL, 0));
        ASSERT_ERROR(network_remove(&c, "../x", NULL, 0), EINVAL);
        return 0;
}

DEFINE_TEST_MAIN
