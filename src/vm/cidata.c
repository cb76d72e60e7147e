/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <crypt.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <archive.h>
#include <archive_entry.h>

#include "cidata.h"
#include "error.h"
#include "fileio.h"
#include "strv.h"

/* YAML output */

static void fclose_and_forget(FILE **f) {
        if (*f) {
                fclose(*f);
                *f = NULL;
        }
}

/* Close an open_memstream() stream and hand its buffer to *ret. */
static int memstream_finish(FILE **f, char **buf, char **ret) {
        if (fflush(*f) != 0 || ferror(*f))
                return -ENOMEM;
        fclose_and_forget(f);

        *ret = TAKE_PTR(*buf);
        return 0;
}

/* Decode one UTF-8 sequence, rejecting overlong forms, surrogates and code points over U+10FFFF.
 * Returns the sequence length. */
static int utf8_decode(const unsigned char *s, uint32_t *ret_cp) {
        static const uint32_t min_cp[] = { 0, 0, 0x80, 0x800, 0x10000 };
        uint32_t cp;
        int n;

        if (s[0] < 0x80) {
                *ret_cp = s[0];
                return 1;
        }
        if ((s[0] & 0xe0) == 0xc0) {
                cp = s[0] & 0x1f;
                n = 2;
        } else if ((s[0] & 0xf0) == 0xe0) {
                cp = s[0] & 0x0f;
                n = 3;
        } else if ((s[0] & 0xf8) == 0xf0) {
                cp = s[0] & 0x07;
                n = 4;
        } else
                return -EINVAL;

        for (int i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return -EINVAL;
                cp = (cp << 6) | (s[i] & 0x3f);
        }

        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return -EINVAL;

        *ret_cp = cp;
        return n;
}

static bool utf8_is_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s, *end = p + n;

        while (p < end) {
                uint32_t cp;
                int k;

                /* utf8_decode() stops at the first byte that is not a continuation byte, so it may
                 * read past end but never past the NUL terminator of the buffer. */
                k = utf8_decode(p, &cp);
                if (k < 0 || k > end - p)
                        return false;
                p += k;
        }

        return true;
}

/* YAML (1.1 and 1.2) treats these as line breaks or rejects them as unprintable even inside a
 * double-quoted scalar, so they are written as escapes. */
static bool yaml_needs_escape(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
                cp == 0xfeff || cp == 0xfffe || cp == 0xffff;
}

/* Write s as a double-quoted YAML scalar. The escapes are the JSON ones, which YAML double-quoted
 * scalars accept, so a newline, '#' or ':' in s stays part of the value. */
static int yaml_write_quoted(FILE *f, const char *s, const char *field) {
        const unsigned char *p = (const unsigned char *) s;

        if (!utf8_is_valid(s, strlen(s)))
                return error_set(-EINVAL, "%s is not valid UTF-8", field);

        fputc('"', f);
        while (*p) {
                uint32_t cp;
                int n = utf8_decode(p, &cp);

                if (cp == '"' || cp == '\\')
                        fprintf(f, "\\%c", (int) cp);
                else if (cp == '\n')
                        fputs("\\n", f);
                else if (cp == '\t')
                        fputs("\\t", f);
                else if (cp == '\r')
                        fputs("\\r", f);
                else if (yaml_needs_escape(cp))
                        fprintf(f, "\\u%04x", (unsigned) cp);
                else
                        fwrite(p, 1, n, f);
                p += n;
        }
        fputc('"', f);

        return 0;
}

/* Write "<indent>key: "value"\n". */
static int yaml_write_pair(FILE *f, const char *indent, const char *key, const char *value,
                           const char *field) {
        int r;

        fprintf(f, "%s%s: ", indent, key);
        r = yaml_write_quoted(f, value, field);
        if (r < 0)
                return r;
        fputc('\n', f);

        return 0;
}

/* Write "<indent>- "value"\n". */
static int yaml_write_item(FILE *f, const char *indent, const char *value, const char *field) {
        int r;

        fprintf(f, "%s- ", indent);
        r = yaml_write_quoted(f, value, field);
        if (r < 0)
                return r;
        fputc('\n', f);

        return 0;
}

/* meta-data */

int cidata_render_meta_data(const CidataConfig *c, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        _cleanup_fclose_ FILE *f = NULL;
        int r;

        if (isempty(c->instance_id))
                return error_set(-EINVAL, "missing instance ID");
        if (isempty(c->hostname))
                return error_set(-EINVAL, "missing hostname");

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        r = yaml_write_pair(f, "", "instance-id", c->instance_id, "instance ID");
        if (r < 0)
                return r;

        r = yaml_write_pair(f, "", "local-hostname", c->hostname, "hostname");
        if (r < 0)
                return r;

        return memstream_finish(&f, &buf, ret);
}

/* SSH public keys */

static const char *const ssh_key_types[] = {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
};

static bool ssh_key_type_is_known(const char *type, size_t n) {
        for (size_t i = 0; i < ELEMENTSOF(ssh_key_types); i++)
                if (strlen(ssh_key_types[i]) == n && memcmp(ssh_key_types[i], type, n) == 0)
                        return true;
        return false;
}

static int base64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Decode padded standard base64 into out, which has room for n / 4 * 3 bytes. */
static int base64_decode(const char *s, size_t n, uint8_t *out, size_t *ret_size) {
        size_t size = 0;

        if (n == 0 || n % 4 != 0)
                return -EINVAL;

        for (size_t i = 0; i < n; i += 4) {
                bool last = i + 4 == n;
                int v[4];
                uint32_t group = 0;
                int padding = 0;

                for (size_t j = 0; j < 4; j++) {
                        if (last && s[i + j] == '=' && j >= 2 && (j == 3 || s[i + 3] == '=')) {
                                v[j] = 0;
                                padding++;
                                continue;
                        }
                        v[j] = base64_value(s[i + j]);
                        if (v[j] < 0)
                                return -EINVAL;
                }

                group = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 | (uint32_t) v[2] << 6 | (uint32_t) v[3];
                out[size++] = group >> 16;
                if (padding < 2)
                        out[size++] = (group >> 8) & 0xff;
                if (padding < 1)
                        out[size++] = group & 0xff;
        }

        *ret_size = size;
        return 0;
}

/* The key blob starts with the key type as an SSH string (a big-endian uint32 length and the
 * bytes), which must repeat the type named in front of it. */
static int ssh_key_check_data(const char *type, size_t type_len, const char *data, size_t data_len) {
        _cleanup_free_ uint8_t *blob = NULL;
        size_t size;
        uint32_t len;

        blob = malloc(data_len / 4 * 3 + 3);
        if (!blob)
                return -ENOMEM;

        if (base64_decode(data, data_len, blob, &size) < 0)
                return error_set(-EINVAL, "invalid base64 in the key data");

        if (size < 4)
                return error_set(-EINVAL, "key data is too short");
        len = (uint32_t) blob[0] << 24 | (uint32_t) blob[1] << 16 | (uint32_t) blob[2] << 8 | blob[3];
        if (len != type_len || len > size - 4 || memcmp(blob + 4, type, type_len) != 0)
                return error_set(-EINVAL, "key data does not contain a '%.*s' key", (int) type_len, type);
        if (size - 4 - len < 16)
                return error_set(-EINVAL, "key data is too short");

        return 0;
}

/* Check one key of n bytes, which need not be NUL-terminated. Records the bare reason, callers
 * add where the key came from. */
static int ssh_key_check(const char *s, size_t n) {
        const char *type, *data, *end = s + n, *p;
        size_t type_len, data_len;

        if (n == 0)
                return error_set(-EINVAL, "empty key");
        if (n > CIDATA_SSH_KEY_LINE_MAX)
                return error_set(-EINVAL, "key is %zu bytes, over the limit of %u", n,
                                 CIDATA_SSH_KEY_LINE_MAX);

        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return error_set(-EINVAL, "control character 0x%02x at column %zu",
                                         (unsigned char) s[i], i + 1);
        if (!utf8_is_valid(s, n))
                return error_set(-EINVAL, "not valid UTF-8");

        type = s;
        p = memchr(s, ' ', n);
        type_len = (p ? p : end) - type;
        if (type_len == 0)
                return error_set(-EINVAL, "missing key type");
        if (!ssh_key_type_is_known(type, type_len))
                return error_set(-EINVAL, "unknown key type '%.*s'", (int) MIN(type_len, (size_t) 64), type);

        data = p ? p : end;
        while (data < end && *data == ' ')
                data++;
        p = memchr(data, ' ', end - data);
        data_len = (p ? p : end) - data;
        if (data_len == 0)
                return error_set(-EINVAL, "missing key data after '%.*s'", (int) type_len, type);

        /* Whatever follows the key data is the comment, free text. */
        return ssh_key_check_data(type, type_len, data, data_len);
}

int cidata_validate_ssh_key(const char *line) {
        int r;

        r = ssh_key_check(line, strlen(line));
        if (r < 0)
                return error_prefix(r, "invalid SSH public key: ");

        return 0;
}

static bool char_is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r';
}

int cidata_read_ssh_key_file(const char *path, char ***ret_keys) {
        _cleanup_strv_free_ char **keys = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t size;
        unsigned line = 0;
        int r;

        r = read_file(path, CIDATA_SSH_KEY_FILE_MAX, &buf, &size);
        if (r == -ENOENT)
                return error_set(r, "SSH key file '%s' not found", path);
        if (r == -EFBIG)
                return error_set(r, "SSH key file '%s' is over the limit of %u bytes", path,
                                 CIDATA_SSH_KEY_FILE_MAX);
        if (r < 0)
                return error_set(r, "failed to read SSH key file '%s': %s", path, strerror(-r));

        for (const char *p = buf, *end = buf + size; p < end;) {
                const char *eol = memchr(p, '\n', end - p) ?: end;
                const char *s = p, *e = eol;

                line++;
                p = eol < end ? eol + 1 : end;

                while (s < e && char_is_blank(*s))
                        s++;
                while (e > s && char_is_blank(e[-1]))
                        e--;
                if (s == e || *s == '#')
                        continue;

                if (e - s >= 10 && strneq(s, "-----BEGIN", 10))
                        return error_set(-EINVAL, "'%s' contains a private key, expected a public key such as '%s.pub'",
                                         path, path);

                r = ssh_key_check(s, e - s);
                if (r < 0)
                        return error_prefix(r, "invalid SSH public key on line %u of '%s': ", line, path);

                r = strv_consume(&keys, strndup(s, e - s));
                if (r < 0)
                        return r;
        }

        if (!keys)
                return error_set(-EINVAL, "no SSH public key found in '%s'", path);

        *ret_keys = TAKE_PTR(keys);
        return 0;
}

/* user-data */

/* chpasswd -e reads "user:hash" lines, so the hash may only use the crypt(3) alphabet: a ':' or
 * a newline in it would change another account. */
static bool password_hash_is_valid(const char *hash) {
        size_t n = strlen(hash);

        if (n < 4 || n > 512 || hash[0] != '$')
                return false;

        return strspn(hash, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./$=,") == n;
}

static int user_data_write_password(FILE *f, const char *password_hash) {
        int r;

        if (!password_hash_is_valid(password_hash))
                return error_set(-EINVAL,
                                 "invalid password hash, expected a crypt(3) hash such as \"$6$<salt>$<hash>\"");

        /* The chpasswd "users" form exists since cloud-init 22.3 and replaces the deprecated
         * "list" of "user:password" strings. */
        fputs("ssh_pwauth: true\n"
              "chpasswd:\n"
              "  expire: false\n"
              "  users:\n"
              "    - name: root\n", f);
        r = yaml_write_pair(f, "      ", "password", password_hash, "password hash");
        if (r < 0)
                return r;
        fputs("      type: hash\n", f);

        return 0;
}

/* cloud-init's ssh module gives these keys to the image's default user, and with
 * disable_root: false to root as well, without the "login as <user>" forced command. */
static int user_data_write_ssh_keys(FILE *f, char **keys) {
        size_t i = 0;
        int r;

        STRV_FOREACH(k, keys) {
                i++;
                r = ssh_key_check(*k, strlen(*k));
                if (r < 0)
                        return error_prefix(r, "invalid SSH public key %zu: ", i);
        }

        fputs("ssh_authorized_keys:\n", f);
        STRV_FOREACH(k, keys) {
                r = yaml_write_item(f, "  ", *k, "SSH public key");
                if (r < 0)
                        return r;
        }

        return 0;
}

int cidata_render_user_data(const CidataConfig *c, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        _cleanup_fclose_ FILE *f = NULL;
        bool has_keys = strv_length(c->ssh_authorized_keys) > 0;
        int r;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        fputs("#cloud-config\n", f);

        if (c->password_hash || has_keys)
                fputs("disable_root: false\n", f);

        if (c->password_hash) {
                r = user_data_write_password(f, c->password_hash);
                if (r < 0)
                        return r;
        }

        if (has_keys) {
                r = user_data_write_ssh_keys(f, c->ssh_authorized_keys);
                if (r < 0)
                        return r;
        }

        return memstream_finish(&f, &buf, ret);
}

/* network-config */

static bool mac_is_valid(const char *mac) {
        for (size_t i = 0; i < 17; i++) {
                if (i % 3 == 2) {
                        if (mac[i] != ':')
                                return false;
                } else if (!strchr("0123456789abcdef", mac[i]) || mac[i] == '\0')
                        return false;
        }

        return mac[17] == '\0';
}

static bool ipv4_is_valid(const char *s) {
        struct in_addr a;

        return inet_pton(AF_INET, s, &a) == 1;
}

static bool ip_is_valid(const char *s) {
        struct in6_addr a;

        return ipv4_is_valid(s) || inet_pton(AF_INET6, s, &a) == 1;
}

static int nic_validate(const CidataNic *nic, size_t index) {
        if (!mac_is_valid(nic->mac))
                return error_set(-EINVAL, "invalid MAC address '%.17s' of NIC %zu", nic->mac, index);

        if (!nic->address) {
                if (nic->gateway)
                        return error_set(-EINVAL, "NIC %zu has a gateway but no address", index);
                return 0;
        }

        if (!ipv4_is_valid(nic->address))
                return error_set(-EINVAL, "invalid IPv4 address '%s' of NIC %zu", nic->address, index);
        if (nic->prefix < 1 || nic->prefix > 32)
                return error_set(-EINVAL, "invalid prefix length %u of NIC %zu, expected 1 to 32",
                                 nic->prefix, index);
        if (nic->gateway && !ipv4_is_valid(nic->gateway))
                return error_set(-EINVAL, "invalid IPv4 gateway '%s' of NIC %zu", nic->gateway, index);

        return 0;
}

static int network_config_write_static(FILE *f, const CidataNic *nic, char **dns) {
        _cleanup_free_ char *cidr = NULL;
        int r;

        if (asprintf(&cidr, "%s/%u", nic->address, nic->prefix) < 0)
                return -ENOMEM;

        fputs("    addresses:\n", f);
        r = yaml_write_item(f, "      ", cidr, "address");
        if (r < 0)
                return r;

        /* netplan 0.99 (Ubuntu 20.04) rejects "to: default", and 0.0.0.0/0 is the same route in
         * every version. */
        if (nic->gateway) {
                fputs("    routes:\n"
                      "      - to: \"0.0.0.0/0\"\n", f);
                r = yaml_write_pair(f, "        ", "via", nic->gateway, "gateway");
                if (r < 0)
                        return r;
        }

        if (strv_length(dns) > 0) {
                fputs("    nameservers:\n"
                      "      addresses:\n", f);
                STRV_FOREACH(d, dns) {
                        r = yaml_write_item(f, "        ", *d, "DNS server");
                        if (r < 0)
                                return r;
                }
        }

        return 0;
}

static int network_config_write_nic(FILE *f, const CidataNic *nic, size_t index, char **dns) {
        char name[32];
        int r;

        fprintf(f, "  id%zu:\n", index);
        fputs("    match:\n", f);
        r = yaml_write_pair(f, "      ", "macaddress", nic->mac, "MAC address");
        if (r < 0)
                return r;

        /* Guest eth<i> is the i-th NIC of the VM, the order the host side configured. */
        snprintf(name, sizeof(name), "eth%zu", index);
        r = yaml_write_pair(f, "    ", "set-name", name, "interface name");
        if (r < 0)
                return r;

        if (!nic->address) {
                fputs("    dhcp4: true\n", f);
                return 0;
        }

        return network_config_write_static(f, nic, dns);
}

int cidata_render_network_config(const CidataConfig *c, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        _cleanup_fclose_ FILE *f = NULL;
        int r;

        if (c->n_nics == 0) {
                *ret = NULL;
                return 0;
        }

        STRV_FOREACH(d, c->dns)
                if (!ip_is_valid(*d))
                        return error_set(-EINVAL, "invalid DNS server address '%s'", *d);

        for (size_t i = 0; i < c->n_nics; i++) {
                r = nic_validate(&c->nics[i], i);
                if (r < 0)
                        return r;
        }

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        fputs("version: 2\n"
              "ethernets:\n", f);
        for (size_t i = 0; i < c->n_nics; i++) {
                r = network_config_write_nic(f, &c->nics[i], i, c->dns);
                if (r < 0)
                        return r;
        }

        return memstream_finish(&f, &buf, ret);
}

/* The seed image */

DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive *, archive_write_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive_entry *, archive_entry_free);

static int iso_add_file(struct archive *a, const char *name, const char *data, time_t mtime) {
        _cleanup_(archive_entry_freep) struct archive_entry *e = NULL;
        size_t size = strlen(data);

        e = archive_entry_new();
        if (!e)
                return -ENOMEM;

        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        /* cloud-init reads the seed as root, and user-data may contain a password hash. */
        archive_entry_set_perm(e, 0400);
        archive_entry_set_size(e, size);
        archive_entry_set_mtime(e, mtime, 0);

        if (archive_write_header(a, e) != ARCHIVE_OK)
                return -EIO;
        if (size > 0 && archive_write_data(a, data, size) != (la_ssize_t) size)
                return -EIO;

        return 0;
}

static int iso_set_options(struct archive *a) {
        /* blkid reports the volume ID as LABEL, and cloud-init's NoCloud looks for LABEL=cidata.
         * Rock Ridge and Joliet keep the lowercase, dashed file names that ISO9660 level 1 would
         * turn into 8.3 uppercase ones. A disk image needs no 300 KiB of zero padding. */
        static const char *const options[][2] = {
                { "volume-id", "cidata" },
                { "rockridge", "1" },
                { "joliet", "1" },
                { "pad", NULL },
        };

        if (archive_write_set_format_iso9660(a) != ARCHIVE_OK)
                return -EIO;

        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (archive_write_set_format_option(a, "iso9660", options[i][0], options[i][1]) != ARCHIVE_OK)
                        return -EIO;

        return 0;
}

static int iso_write(int fd, const char *meta_data, const char *user_data, const char *network_config,
                     const char *path) {
        _cleanup_(archive_write_freep) struct archive *a = NULL;
        time_t now = time(NULL);
        int r;

        a = archive_write_new();
        if (!a)
                return -ENOMEM;

        r = iso_set_options(a);
        if (r >= 0 && archive_write_open_fd(a, fd) != ARCHIVE_OK)
                r = -EIO;
        if (r >= 0)
                r = iso_add_file(a, "meta-data", meta_data, now);
        if (r >= 0)
                r = iso_add_file(a, "user-data", user_data, now);
        if (r >= 0 && network_config)
                r = iso_add_file(a, "network-config", network_config, now);
        if (r >= 0 && archive_write_close(a) != ARCHIVE_OK)
                r = -EIO;

        if (r == -EIO)
                return error_set(r, "failed to write the seed image '%s': %s", path,
                                 archive_error_string(a) ?: "unknown libarchive error");
        return r;
}

int cidata_write_image(const CidataConfig *c, const char *path) {
        _cleanup_free_ char *meta_data = NULL, *user_data = NULL, *network_config = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = cidata_render_meta_data(c, &meta_data);
        if (r < 0)
                return r;
        r = cidata_render_user_data(c, &user_data);
        if (r < 0)
                return r;
        r = cidata_render_network_config(c, &network_config);
        if (r < 0)
                return r;

        if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0)
                return -ENOMEM;

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return error_set(-errno, "failed to create '%s': %s", tmp, strerror(errno));

        r = iso_write(fd, meta_data, user_data, network_config, path);
        if (r >= 0 && fchmod(fd, 0600) < 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = error_set(-errno, "failed to rename '%s' to '%s': %s", tmp, path, strerror(errno));
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }

        return fsync_directory_of(path);
}

/* Passwords */

int cidata_hash_password(const char *password, char **ret) {
        static const char salt_alphabet[] =
                "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        uint8_t random[16];
        char setting[3 + sizeof(random) + 1] = "$6$";
        struct crypt_data *data = NULL;
        const char *hash;
        char *copy;
        ssize_t n;

        if (isempty(password))
                return error_set(-EINVAL, "empty password");

        do
                n = getrandom(random, sizeof(random), 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return error_set(-errno, "getrandom() failed: %s", strerror(errno));
        if ((size_t) n != sizeof(random))
                return error_set(-EIO, "getrandom() returned %zd of %zu bytes", n, sizeof(random));

        /* 64 symbols, so taking 6 bits of each byte keeps the salt uniform.
         * NOTE: the hash uses SHA-512 crypt's default of 5000 rounds, which keeps offline guessing
         * cheap for anyone who can read the image or the guest's cloud-init cache. */
        for (size_t i = 0; i < sizeof(random); i++)
                setting[3 + i] = salt_alphabet[random[i] & 63];
        setting[3 + sizeof(random)] = '\0';

        data = calloc(1, sizeof(*data));
        if (!data)
                return -ENOMEM;

        /* crypt_rn() is libxcrypt's crypt_r() that returns NULL on failure instead of a "*0"
         * string. The ASan runtime defines crypt_r(), so with --as-needed a sanitized build that
         * only called crypt_r() lost libcrypt and crashed in the interceptor. */
        errno = 0;
        hash = crypt_rn(password, setting, data, sizeof(*data));
        if (!hash || !startswith(hash, "$6$")) {
                int r = errno > 0 ? -errno : -EINVAL;

                explicit_bzero(data, sizeof(*data));
                free(data);
                return error_set(r, "hashing the password with SHA-512 crypt failed");
        }

        copy = strdup(hash);
        /* crypt_data contains the password and intermediate state. */
        explicit_bzero(data, sizeof(*data));
        free(data);
        if (!copy)
                return -ENOMEM;

        *ret = copy;
        return 0;
}
