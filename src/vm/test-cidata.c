/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <crypt.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "cidata.h"
#include "fileio.h"
#include "strv.h"
#include "tests.h"

#define KEY_ED25519 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
#define KEY_ECDSA                                                                                  \
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAABAgMEBQYHCAkKCwwNDg8" \
        "QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
#define PASSWORD "correct horse battery staple"

static char *keys_two[] = { (char *) KEY_ED25519 " alice@laptop", (char *) KEY_ECDSA, NULL };
static char *dns_two[] = { (char *) "8.8.8.8", (char *) "2606:4700:4700::1111", NULL };

static const CidataNic nic_static = {
        .mac = "52:54:00:12:34:56",
        .address = (char *) "10.88.0.5",
        .prefix = 24,
        .gateway = (char *) "10.88.0.1",
};
static const CidataNic nic_dhcp = {
        .mac = "52:54:00:ab:cd:ef",
};

static char hash_buffer[256];

/* A real hash, so that the image test can check that the password itself never appears. */
static const char *test_hash(void) {
        _cleanup_free_ char *h = NULL;

        if (hash_buffer[0] == '\0' && cidata_hash_password(PASSWORD, &h) >= 0)
                snprintf(hash_buffer, sizeof(hash_buffer), "%s", h);
        return hash_buffer;
}

/* Parse yaml with PyYAML and return it as sorted JSON, or NULL when python3 or PyYAML is missing. */
static char *yaml_to_json(const char *yaml) {
        static const char script[] =
                "import sys, json\n"
                "try:\n"
                "    import yaml\n"
                "except ImportError:\n"
                "    sys.exit(77)\n"
                "print(json.dumps(yaml.safe_load(open(sys.argv[1])), sort_keys=True))\n";
        char path[] = "/tmp/test-cidata-yaml-XXXXXX";
        _cleanup_free_ char *cmd = NULL, *out = NULL;
        size_t size = 0;
        FILE *p;
        int fd, status;

        fd = mkstemp(path);
        if (fd < 0)
                return NULL;
        if (write(fd, yaml, strlen(yaml)) != (ssize_t) strlen(yaml)) {
                close(fd);
                unlink(path);
                return NULL;
        }
        close(fd);

        if (asprintf(&cmd, "python3 -c '%s' %s 2>/dev/null", script, path) < 0) {
                unlink(path);
                return NULL;
        }
        p = popen(cmd, "r");
        if (!p) {
                unlink(path);
                return NULL;
        }
        if (getdelim(&out, &size, '\0', p) < 0) {
                free(out);
                out = NULL;
        }
        status = pclose(p);
        unlink(path);

        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !out)
                return NULL;
        out[strcspn(out, "\n")] = '\0';
        return TAKE_PTR(out);
}

static bool have_pyyaml(void) {
        _cleanup_free_ char *j = yaml_to_json("a: 1\n");

        return j && streq(j, "{\"a\": 1}");
}

TEST(meta_data_exact) {
        CidataConfig c = { .instance_id = "0123abcd", .hostname = "web-1" };
        _cleanup_free_ char *s = NULL;

        ASSERT_OK(cidata_render_meta_data(&c, &s));
        ASSERT_STREQ(s, "instance-id: \"0123abcd\"\n"
                        "local-hostname: \"web-1\"\n");
        return 0;
}

TEST(meta_data_missing_fields) {
        CidataConfig c = { .hostname = "web-1" };
        char *s = NULL;
        int r;

        r = cidata_render_meta_data(&c, &s);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "missing instance ID");

        c = (CidataConfig) { .instance_id = "0123abcd", .hostname = "" };
        r = cidata_render_meta_data(&c, &s);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "missing hostname");
        ASSERT_TRUE(!s);
        return 0;
}

TEST(user_data_empty) {
        CidataConfig c = { .instance_id = "id", .hostname = "h" };
        _cleanup_free_ char *s = NULL;

        ASSERT_OK(cidata_render_user_data(&c, &s));
        ASSERT_STREQ(s, "#cloud-config\n");
        return 0;
}

TEST(user_data_password_and_keys) {
        CidataConfig c = {
                .instance_id = "id",
                .hostname = "h",
                .password_hash = "$6$saltsaltsaltsalt$abc./XYZ",
                .ssh_authorized_keys = keys_two,
        };
        _cleanup_free_ char *s = NULL, *json = NULL;

        ASSERT_OK(cidata_render_user_data(&c, &s));
        ASSERT_STREQ(s, "#cloud-config\n"
                        "disable_root: false\n"
                        "ssh_pwauth: true\n"
                        "chpasswd:\n"
                        "  expire: false\n"
                        "  users:\n"
                        "    - name: root\n"
                        "      password: \"$6$saltsaltsaltsalt$abc./XYZ\"\n"
                        "      type: hash\n"
                        "ssh_authorized_keys:\n"
                        "  - \"" KEY_ED25519 " alice@laptop\"\n"
                        "  - \"" KEY_ECDSA "\"\n");

        if (!have_pyyaml())
                return 0;
        json = yaml_to_json(s);
        ASSERT_STREQ(json, "{\"chpasswd\": {\"expire\": false, \"users\": [{\"name\": \"root\", "
                           "\"password\": \"$6$saltsaltsaltsalt$abc./XYZ\", \"type\": \"hash\"}]}, "
                           "\"disable_root\": false, \"ssh_authorized_keys\": [\"" KEY_ED25519
                           " alice@laptop\", \"" KEY_ECDSA "\"], \"ssh_pwauth\": true}");
        return 0;
}

TEST(user_data_keys_only) {
        char *keys[] = { (char *) KEY_ED25519, NULL };
        CidataConfig c = { .instance_id = "id", .hostname = "h", .ssh_authorized_keys = keys };
        _cleanup_free_ char *s = NULL;

        ASSERT_OK(cidata_render_user_data(&c, &s));
        ASSERT_STREQ(s, "#cloud-config\n"
                        "disable_root: false\n"
                        "ssh_authorized_keys:\n"
                        "  - \"" KEY_ED25519 "\"\n");
        return 0;
}

TEST(user_data_rejects_bad_hash) {
        static const char *const bad[] = {
                "correct horse",            /* a plaintext password */
                "$6$salt$abc\nroot:$6$x$y", /* a second chpasswd line */
                "$6$salt$abc:0",            /* a ':' ends the chpasswd field */
                "",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                CidataConfig c = { .instance_id = "id", .hostname = "h", .password_hash = bad[i] };
                char *s = NULL;
                int r;

                r = cidata_render_user_data(&c, &s);
                ASSERT_ERROR(r, EINVAL);
                ASSERT_ERROR_MESSAGE(r, "invalid password hash, expected a crypt(3) hash such as \"$6$<salt>$<hash>\"");
                ASSERT_TRUE(!s);
        }
        return 0;
}

TEST(user_data_rejects_bad_key) {
        char *keys[] = { (char *) KEY_ED25519, (char *) KEY_ED25519 "\nssh_pwauth: true", NULL };
        CidataConfig c = { .instance_id = "id", .hostname = "h", .ssh_authorized_keys = keys };
        char *s = NULL;
        int r;

        r = cidata_render_user_data(&c, &s);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid SSH public key 2: control character 0x0a at column 81");
        ASSERT_TRUE(!s);
        return 0;
}

TEST(network_config_no_nics) {
        CidataConfig c = { .instance_id = "id", .hostname = "h", .dns = dns_two };
        char *s = (char *) "unchanged";

        ASSERT_OK(cidata_render_network_config(&c, &s));
        ASSERT_TRUE(!s);
        return 0;
}

TEST(network_config_one_static) {
        CidataConfig c = { .instance_id = "id", .hostname = "h", .dns = dns_two, .nics = &nic_static, .n_nics = 1 };
        _cleanup_free_ char *s = NULL;

        ASSERT_OK(cidata_render_network_config(&c, &s));
        ASSERT_STREQ(s, "version: 2\n"
                        "ethernets:\n"
                        "  id0:\n"
                        "    match:\n"
                        "      macaddress: \"52:54:00:12:34:56\"\n"
                        "    set-name: \"eth0\"\n"
                        "    addresses:\n"
                        "      - \"10.88.0.5/24\"\n"
                        "    routes:\n"
                        "      - to: \"0.0.0.0/0\"\n"
                        "        via: \"10.88.0.1\"\n"
                        "    nameservers:\n"
                        "      addresses:\n"
                        "        - \"8.8.8.8\"\n"
                        "        - \"2606:4700:4700::1111\"\n");
        return 0;
}

TEST(network_config_two_nics_one_dhcp) {
        CidataNic nics[2] = { nic_static, nic_dhcp };
        CidataConfig c = { .instance_id = "id", .hostname = "h", .nics = nics, .n_nics = 2 };
        _cleanup_free_ char *s = NULL, *json = NULL;

        nics[0].gateway = NULL;

        ASSERT_OK(cidata_render_network_config(&c, &s));
        ASSERT_STREQ(s, "version: 2\n"
                        "ethernets:\n"
                        "  id0:\n"
                        "    match:\n"
                        "      macaddress: \"52:54:00:12:34:56\"\n"
                        "    set-name: \"eth0\"\n"
                        "    addresses:\n"
                        "      - \"10.88.0.5/24\"\n"
                        "  id1:\n"
                        "    match:\n"
                        "      macaddress: \"52:54:00:ab:cd:ef\"\n"
                        "    set-name: \"eth1\"\n"
                        "    dhcp4: true\n");

        if (!have_pyyaml())
                return 0;
        json = yaml_to_json(s);
        ASSERT_STREQ(json, "{\"ethernets\": {\"id0\": {\"addresses\": [\"10.88.0.5/24\"], "
                           "\"match\": {\"macaddress\": \"52:54:00:12:34:56\"}, \"set-name\": \"eth0\"}, "
                           "\"id1\": {\"dhcp4\": true, \"match\": {\"macaddress\": \"52:54:00:ab:cd:ef\"}, "
                           "\"set-name\": \"eth1\"}}, \"version\": 2}");
        return 0;
}

static int check_bad_nic(const CidataNic *nic, char **dns, const char *reason) {
        CidataNic nics[2] = { nic_dhcp, *nic };
        CidataConfig c = { .instance_id = "id", .hostname = "h", .dns = dns, .nics = nics, .n_nics = 2 };
        char *s = NULL;
        int r;

        r = cidata_render_network_config(&c, &s);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, reason);
        ASSERT_TRUE(!s);
        return 0;
}

TEST(network_config_invalid) {
        char *bad_dns[] = { (char *) "8.8.8.8", (char *) "8.8.8.8\nversion: 1", NULL };
        CidataNic n;

        n = nic_static;
        memcpy(n.mac, "52:54:00:12:34:5G", 18);
        ASSERT_OK(check_bad_nic(&n, NULL, "invalid MAC address '52:54:00:12:34:5G' of NIC 1"));

        n = nic_static;
        memcpy(n.mac, "52:54:00:12:34:5", 17);
        ASSERT_OK(check_bad_nic(&n, NULL, "invalid MAC address '52:54:00:12:34:5' of NIC 1"));

        n = nic_static;
        n.address = (char *) "10.88.0.256";
        ASSERT_OK(check_bad_nic(&n, NULL, "invalid IPv4 address '10.88.0.256' of NIC 1"));

        n = nic_static;
        n.address = (char *) "fd00::5";
        ASSERT_OK(check_bad_nic(&n, NULL, "invalid IPv4 address 'fd00::5' of NIC 1"));

        n = nic_static;
        n.prefix = 0;
        ASSERT_OK(check_bad_nic(&n, NULL, "invalid prefix length 0 of NIC 1, expected 1 to 32"));

        n = nic_static;
        n.prefix = 33;
        ASSERT_OK(check_bad_nic(&n, NULL, "invalid prefix length 33 of NIC 1, expected 1 to 32"));

        n = nic_static;
        n.gateway = (char *) "10.88.0.1 # x";
        ASSERT_OK(check_bad_nic(&n, NULL, "invalid IPv4 gateway '10.88.0.1 # x' of NIC 1"));

        n = nic_dhcp;
        n.gateway = (char *) "10.88.0.1";
        ASSERT_OK(check_bad_nic(&n, NULL, "NIC 1 has a gateway but no address"));

        ASSERT_OK(check_bad_nic(&nic_static, bad_dns, "invalid DNS server address '8.8.8.8\nversion: 1'"));
        return 0;
}

/* A value that tries to end its line and start a new key must come back as one string. */
TEST(yaml_injection_hostname) {
        CidataConfig c = {
                .instance_id = "i-1\" # \\",
                .hostname = "evil\nssh_pwauth: true\n\"disable_root\": false #\xe2\x80\xa8x",
        };
        _cleanup_free_ char *s = NULL, *json = NULL;

        ASSERT_OK(cidata_render_meta_data(&c, &s));
        ASSERT_STREQ(s, "instance-id: \"i-1\\\" # \\\\\"\n"
                        "local-hostname: \"evil\\nssh_pwauth: true\\n\\\"disable_root\\\": false #\\u2028x\"\n");

        if (!have_pyyaml())
                return 0;
        json = yaml_to_json(s);
        ASSERT_STREQ(json, "{\"instance-id\": \"i-1\\\" # \\\\\", "
                           "\"local-hostname\": \"evil\\nssh_pwauth: true\\n\\\"disable_root\\\": false #\\u2028x\"}");
        return 0;
}

TEST(yaml_injection_key_comment) {
        char *keys[] = { (char *) KEY_ED25519 " a\": b #c \\ d: [e]", NULL };
        CidataConfig c = { .instance_id = "id", .hostname = "h", .ssh_authorized_keys = keys };
        _cleanup_free_ char *s = NULL, *json = NULL;

        ASSERT_OK(cidata_render_user_data(&c, &s));
        ASSERT_STREQ(s, "#cloud-config\n"
                        "disable_root: false\n"
                        "ssh_authorized_keys:\n"
                        "  - \"" KEY_ED25519 " a\\\": b #c \\\\ d: [e]\"\n");

        if (!have_pyyaml())
                return 0;
        json = yaml_to_json(s);
        ASSERT_STREQ(json, "{\"disable_root\": false, \"ssh_authorized_keys\": [\"" KEY_ED25519
                           " a\\\": b #c \\\\ d: [e]\"]}");
        return 0;
}

TEST(yaml_control_and_invalid_utf8) {
        CidataConfig c = { .instance_id = "a\x01\x7f\xc2\x85z", .hostname = "h" };
        _cleanup_free_ char *s = NULL;
        char *t = NULL;
        int r;

        ASSERT_OK(cidata_render_meta_data(&c, &s));
        ASSERT_STREQ(s, "instance-id: \"a\\u0001\\u007f\\u0085z\"\n"
                        "local-hostname: \"h\"\n");

        c.hostname = "h\xc3";
        r = cidata_render_meta_data(&c, &t);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "hostname is not valid UTF-8");

        c.hostname = "h\xc0\xae"; /* an overlong '.' */
        r = cidata_render_meta_data(&c, &t);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "hostname is not valid UTF-8");
        ASSERT_TRUE(!t);
        return 0;
}

TEST(hash_password_format) {
        static const char alphabet[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        _cleanup_free_ char *h1 = NULL, *h2 = NULL;
        struct crypt_data data = {};
        const char *again;

        ASSERT_OK(cidata_hash_password(PASSWORD, &h1));
        ASSERT_OK(cidata_hash_password(PASSWORD, &h2));

        ASSERT_TRUE(startswith(h1, "$6$"));
        ASSERT_EQ(strspn(h1 + 3, alphabet), 16);
        ASSERT_EQ(h1[3 + 16], '$');
        /* SHA-512 crypt encodes 64 bytes as 86 characters. */
        ASSERT_EQ(strlen(h1), 3 + 16 + 1 + 86);
        ASSERT_EQ(strspn(h1 + 20, alphabet), 86);

        /* Checking a login: crypt() with the stored hash as setting reproduces it. */
        again = crypt_r(PASSWORD, h1, &data);
        ASSERT_STREQ(again, h1);
        again = crypt_r("wrong password", h1, &data);
        ASSERT_TRUE(again && !streq(again, h1));

        ASSERT_TRUE(!strstr(h1, PASSWORD));
        ASSERT_TRUE(strncmp(h1, h2, 19) != 0);
        return 0;
}

TEST(hash_password_empty) {
        char *h = NULL;
        int r;

        r = cidata_hash_password("", &h);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "empty password");
        ASSERT_TRUE(!h);
        return 0;
}

TEST(ssh_key_valid) {
        ASSERT_OK(cidata_validate_ssh_key(KEY_ED25519));
        ASSERT_OK(cidata_validate_ssh_key(KEY_ED25519 " alice@laptop"));
        ASSERT_OK(cidata_validate_ssh_key(KEY_ED25519 "   comment with  spaces and ünïcode"));
        ASSERT_OK(cidata_validate_ssh_key(KEY_ECDSA " x"));
        return 0;
}

TEST(ssh_key_invalid) {
        static const struct {
                const char *line;
                const char *reason;
        } cases[] = {
                { "", "empty key" },
                { " " KEY_ED25519, "missing key type" },
                { "ssh-foo AAAA", "unknown key type 'ssh-foo'" },
                { "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "unknown key type 'ssh-dss'" },
                { "no-pty " KEY_ED25519, "unknown key type 'no-pty'" },
                { "ssh-ed25519", "missing key data after 'ssh-ed25519'" },
                { "ssh-ed25519   ", "missing key data after 'ssh-ed25519'" },
                { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                  "invalid base64 in the key data" },
                { "ssh-ed25519 AAAA*3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
                  "invalid base64 in the key data" },
                { "ssh-ed25519 AA==AAAA", "invalid base64 in the key data" },
                { "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
                  "key data does not contain a 'ssh-rsa' key" },
                { "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAA2FiYw==", "key data is too short" },
                { "ssh-ed25519 AAA=", "key data is too short" },
                { KEY_ED25519 " a\tb", "control character 0x09 at column 83" },
                { KEY_ED25519 " a\rb", "control character 0x0d at column 83" },
                { KEY_ED25519 " \xff", "not valid UTF-8" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *expected = NULL;
                int r;

                ASSERT_TRUE(asprintf(&expected, "invalid SSH public key: %s", cases[i].reason) >= 0);
                r = cidata_validate_ssh_key(cases[i].line);
                ASSERT_ERROR(r, EINVAL);
                ASSERT_ERROR_MESSAGE(r, expected);
        }
        return 0;
}

TEST(ssh_key_too_long) {
        _cleanup_free_ char *line = NULL;
        size_t n = CIDATA_SSH_KEY_LINE_MAX + 1;
        int r;

        line = malloc(n + 1);
        ASSERT_TRUE(line);
        memset(line, 'A', n);
        line[n] = '\0';
        memcpy(line, "ssh-rsa ", 8);

        r = cidata_validate_ssh_key(line);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid SSH public key: key is 16385 bytes, over the limit of 16384");
        return 0;
}

static int write_test_file(const char *dir, const char *name, const char *contents, char **ret_path) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        if (write_file_atomic(path, contents, strlen(contents), 0600) < 0)
                return -EIO;
        *ret_path = TAKE_PTR(path);
        return 0;
}

TEST(ssh_key_file) {
        char dir[] = "/tmp/test-cidata-keys-XXXXXX";
        _cleanup_free_ char *good = NULL, *bad = NULL, *private = NULL, *none = NULL, *big = NULL,
                *missing = NULL, *nul = NULL, *expected = NULL, *large = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        char **none_keys = NULL;
        int r;

        ASSERT_TRUE(mkdtemp(dir));

        ASSERT_OK(write_test_file(dir, "good.pub",
                                  "# work laptop\n"
                                  "\n"
                                  "  " KEY_ED25519 " alice@laptop  \r\n"
                                  "\t\n" KEY_ECDSA,
                                  &good));
        ASSERT_OK(cidata_read_ssh_key_file(good, &keys));
        ASSERT_EQ(strv_length(keys), 2);
        ASSERT_STREQ(keys[0], KEY_ED25519 " alice@laptop");
        ASSERT_STREQ(keys[1], KEY_ECDSA);

        ASSERT_OK(write_test_file(dir, "bad.pub", KEY_ED25519 "\nssh-foo AAAA\n", &bad));
        r = cidata_read_ssh_key_file(bad, &none_keys);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_TRUE(asprintf(&expected, "invalid SSH public key on line 2 of '%s': unknown key type 'ssh-foo'", bad) >= 0);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(TAKE_PTR(expected));

        ASSERT_OK(write_test_file(dir, "id_ed25519",
                                  "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                                  "-----END OPENSSH PRIVATE KEY-----\n",
                                  &private));
        r = cidata_read_ssh_key_file(private, &none_keys);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_TRUE(asprintf(&expected, "'%s' contains a private key, expected a public key such as '%s.pub'",
                             private, private) >= 0);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(TAKE_PTR(expected));

        ASSERT_OK(write_test_file(dir, "none.pub", "# nothing here\n\n", &none));
        r = cidata_read_ssh_key_file(none, &none_keys);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_TRUE(asprintf(&expected, "no SSH public key found in '%s'", none) >= 0);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(TAKE_PTR(expected));

        ASSERT_TRUE(asprintf(&missing, "%s/missing.pub", dir) >= 0);
        r = cidata_read_ssh_key_file(missing, &none_keys);
        ASSERT_ERROR(r, ENOENT);
        ASSERT_TRUE(asprintf(&expected, "SSH key file '%s' not found", missing) >= 0);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(TAKE_PTR(expected));

        large = malloc(CIDATA_SSH_KEY_FILE_MAX + 2);
        ASSERT_TRUE(large);
        memset(large, '#', CIDATA_SSH_KEY_FILE_MAX + 1);
        large[CIDATA_SSH_KEY_FILE_MAX + 1] = '\0';
        ASSERT_OK(write_test_file(dir, "big.pub", large, &big));
        r = cidata_read_ssh_key_file(big, &none_keys);
        ASSERT_ERROR(r, EFBIG);
        ASSERT_TRUE(asprintf(&expected, "SSH key file '%s' is over the limit of 65536 bytes", big) >= 0);
        ASSERT_ERROR_MESSAGE(r, expected);
        free(TAKE_PTR(expected));

        /* A NUL byte must not cut a line short and let the rest pass unchecked. */
        ASSERT_TRUE(asprintf(&nul, "%s/nul.pub", dir) >= 0);
        {
                static const char data[] = KEY_ED25519 " x\0\nssh-foo";
                ASSERT_OK(write_file_atomic(nul, data, sizeof(data) - 1, 0600));
        }
        r = cidata_read_ssh_key_file(nul, &none_keys);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_TRUE(asprintf(&expected, "invalid SSH public key on line 1 of '%s': control character 0x00 at column 83",
                             nul) >= 0);
        ASSERT_ERROR_MESSAGE(r, expected);
        ASSERT_TRUE(!none_keys);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

/* Keys made by the real ssh-keygen must pass. */
TEST(ssh_key_file_from_ssh_keygen) {
        static const char *const types[] = { "ed25519", "rsa", "ecdsa" };
        char dir[] = "/tmp/test-cidata-keygen-XXXXXX";

        if (system("command -v ssh-keygen >/dev/null 2>&1") != 0)
                return TEST_SKIP;
        ASSERT_TRUE(mkdtemp(dir));

        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                _cleanup_free_ char *cmd = NULL, *pub = NULL;
                _cleanup_strv_free_ char **keys = NULL;

                ASSERT_TRUE(asprintf(&cmd, "ssh-keygen -q -t %s -N '' -C 'test key' -f %s/id_%s",
                                     types[i], dir, types[i]) >= 0);
                ASSERT_EQ(system(cmd), 0);
                ASSERT_TRUE(asprintf(&pub, "%s/id_%s.pub", dir, types[i]) >= 0);
                ASSERT_OK(cidata_read_ssh_key_file(pub, &keys));
                ASSERT_EQ(strv_length(keys), 1);
                ASSERT_TRUE(endswith(keys[0], " test key"));
        }

        ASSERT_OK(rm_rf(dir));
        return 0;
}

/* Read an ISO back with libarchive: the contents of each regular file by name. */
static int read_iso(const char *path, char **ret_meta, char **ret_user, char **ret_network, unsigned *ret_count) {
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        unsigned count = 0;
        int r = 0;

        archive_read_support_format_iso9660(a);
        if (archive_read_open_filename(a, path, 10240) != ARCHIVE_OK) {
                archive_read_free(a);
                return -EIO;
        }

        while (r >= 0 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                size_t size = archive_entry_size(e);
                char **target = NULL, *buf;

                if (archive_entry_filetype(e) != AE_IFREG)
                        continue;
                count++;
                if (streq(name, "meta-data"))
                        target = ret_meta;
                else if (streq(name, "user-data"))
                        target = ret_user;
                else if (streq(name, "network-config"))
                        target = ret_network;
                if (!target)
                        continue;

                buf = calloc(1, size + 1);
                if (!buf || archive_read_data(a, buf, size) != (la_ssize_t) size) {
                        free(buf);
                        r = -EIO;
                        break;
                }
                *target = buf;
        }

        archive_read_free(a);
        *ret_count = count;
        return r;
}

static char *blkid_label(const char *path) {
        _cleanup_free_ char *cmd = NULL;
        char *out = NULL;
        size_t size = 0;
        FILE *p;

        if (asprintf(&cmd, "blkid -p -o value -s LABEL %s 2>/dev/null", path) < 0)
                return NULL;
        p = popen(cmd, "r");
        if (!p)
                return NULL;
        if (getline(&out, &size, p) < 0) {
                free(out);
                out = NULL;
        }
        pclose(p);
        if (out)
                out[strcspn(out, "\n")] = '\0';
        return out;
}

TEST(write_image) {
        char dir[] = "/tmp/test-cidata-image-XXXXXX";
        char *keys[] = { (char *) KEY_ED25519 " alice@laptop", NULL };
        char *dns[] = { (char *) "1.1.1.1", NULL };
        CidataNic nics[2] = { nic_static, nic_dhcp };
        CidataConfig c = {
                .instance_id = "4f1c9a",
                .hostname = "web-1",
                .password_hash = test_hash(),
                .ssh_authorized_keys = keys,
                .dns = dns,
                .nics = nics,
                .n_nics = 2,
        };
        _cleanup_free_ char *path = NULL, *meta = NULL, *user = NULL, *network = NULL, *image = NULL,
                *want_meta = NULL, *want_user = NULL, *want_network = NULL, *label = NULL;
        size_t size;
        unsigned count;
        struct stat st;
        int entries = 0;
        DIR *d;

        ASSERT_TRUE(startswith(c.password_hash, "$6$"));
        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_TRUE(asprintf(&path, "%s/cidata.img", dir) >= 0);

        /* Write twice: the second write replaces the first. */
        ASSERT_OK(cidata_write_image(&c, path));
        ASSERT_OK(cidata_write_image(&c, path));

        ASSERT_TRUE(stat(path, &st) == 0);
        ASSERT_EQ(st.st_mode & 07777, 0600);
        ASSERT_EQ(st.st_size % 2048, 0);

        d = opendir(dir);
        ASSERT_TRUE(d);
        for (struct dirent *de; (de = readdir(d));)
                if (de->d_name[0] != '.')
                        entries++;
        closedir(d);
        ASSERT_EQ(entries, 1);

        ASSERT_OK(cidata_render_meta_data(&c, &want_meta));
        ASSERT_OK(cidata_render_user_data(&c, &want_user));
        ASSERT_OK(cidata_render_network_config(&c, &want_network));

        ASSERT_OK(read_iso(path, &meta, &user, &network, &count));
        ASSERT_EQ(count, 3);
        ASSERT_STREQ(meta, want_meta);
        ASSERT_STREQ(user, want_user);
        ASSERT_STREQ(network, want_network);
        ASSERT_TRUE(strstr(user, c.password_hash));

        ASSERT_OK(read_file(path, 16 * 1024 * 1024, &image, &size));
        ASSERT_TRUE(!memmem(image, size, PASSWORD, strlen(PASSWORD)));
        ASSERT_TRUE(memmem(image, size, "cidata", 6));

        label = blkid_label(path);
        if (label)
                ASSERT_STREQ(label, "cidata");
        else
                fprintf(stderr, "blkid not found, not checking the label\n");

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(write_image_no_nics) {
        char dir[] = "/tmp/test-cidata-image-XXXXXX";
        CidataConfig c = { .instance_id = "4f1c9a", .hostname = "web-1" };
        _cleanup_free_ char *path = NULL, *meta = NULL, *user = NULL, *network = NULL;
        unsigned count;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_TRUE(asprintf(&path, "%s/cidata.img", dir) >= 0);

        ASSERT_OK(cidata_write_image(&c, path));
        ASSERT_OK(read_iso(path, &meta, &user, &network, &count));
        ASSERT_EQ(count, 2);
        ASSERT_STREQ(user, "#cloud-config\n");
        ASSERT_TRUE(!network);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(write_image_invalid_config) {
        char dir[] = "/tmp/test-cidata-image-XXXXXX";
        CidataNic bad = nic_static;
        CidataConfig c = { .instance_id = "4f1c9a", .hostname = "web-1", .nics = &bad, .n_nics = 1 };
        _cleanup_free_ char *path = NULL;
        int r;

        bad.prefix = 40;
        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_TRUE(asprintf(&path, "%s/cidata.img", dir) >= 0);

        r = cidata_write_image(&c, path);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid prefix length 40 of NIC 0, expected 1 to 32");
        ASSERT_TRUE(access(path, F_OK) < 0);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

DEFINE_TEST_MAIN
