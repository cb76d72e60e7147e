/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/* The NoCloud seed that cloud-init reads on the first boot of a cloud-image VM: an ISO9660 image
 * labelled "cidata" with the files meta-data, user-data and (with at least one NIC)
 * network-config. Every string that comes from the caller is written as a double-quoted YAML
 * scalar with JSON-style escapes, so no value can start a new key. */

typedef struct CidataNic {
        char mac[18];           /* "aa:bb:cc:dd:ee:ff", lowercase */
        char *address;          /* IPv4 address such as "10.88.0.5", or NULL for DHCP */
        unsigned prefix;        /* prefix length of address, 1 to 32 */
        char *gateway;          /* IPv4 default gateway, or NULL */
} CidataNic;

typedef struct CidataConfig {
        const char *instance_id;          /* the VM ID */
        const char *hostname;             /* the VM name, validated as a hostname by the caller */
        const char *password_hash;        /* root password as a crypt(3) hash, or NULL for none */
        char **ssh_authorized_keys;       /* root's SSH public keys, NULL-terminated, may be NULL */
        char **dns;                       /* DNS server addresses, NULL-terminated, may be NULL */
        const CidataNic *nics;
        size_t n_nics;
} CidataConfig;

/* The maximum size of an SSH public key file, and of one key line. */
#define CIDATA_SSH_KEY_FILE_MAX (64U * 1024U)
#define CIDATA_SSH_KEY_LINE_MAX (16U * 1024U)

int cidata_render_meta_data(const CidataConfig *c, char **ret);
int cidata_render_user_data(const CidataConfig *c, char **ret);
/* Sets *ret to NULL when the VM has no NICs, because then the seed has no network-config. */
int cidata_render_network_config(const CidataConfig *c, char **ret);

/* Write the seed image to path atomically, with mode 0600. */
int cidata_write_image(const CidataConfig *c, const char *path);

/* Hash password as SHA-512 crypt ("$6$<16 random salt characters>$<hash>") with a salt from
 * getrandom(). */
int cidata_hash_password(const char *password, char **ret);

/* Check one authorized_keys line: a known key type, base64 key data whose embedded type matches,
 * and an optional comment, with no options and no control characters. */
int cidata_validate_ssh_key(const char *line);

/* Read the SSH public keys of a file such as ~/.ssh/id_ed25519.pub: one key per line, blank
 * lines and '#' comments skipped, at least one key. */
int cidata_read_ssh_key_file(const char *path, char ***ret_keys);
