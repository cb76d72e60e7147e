/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>

#include "cidata.h"
#include "strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count_char(const char *s, char c) {
        size_t n = 0;

        for (; *s; s++)
                n += *s == c;
        return n;
}

/* The input is used as the hostname and, split at newlines, as SSH keys and DNS servers. Whatever
 * it contains, meta-data must keep exactly its two lines, and every key line must stay one item. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL, *meta = NULL, *user = NULL, *network = NULL;
        _cleanup_strv_free_ char **lines = NULL;
        CidataNic nic = { .mac = "52:54:00:12:34:56", .address = (char *) "10.0.0.2", .prefix = 24 };

        s = strndup((const char *) data, size);
        if (!s)
                return 0;

        (void) cidata_validate_ssh_key(s);

        CidataConfig c = { .instance_id = s, .hostname = s, .nics = &nic, .n_nics = 1 };
        if (cidata_render_meta_data(&c, &meta) >= 0 && count_char(meta, '\n') != 2)
                abort();

        if (strv_split(s, "\n", &lines) < 0)
                return 0;

        /* "#cloud-config", and with keys "disable_root" and "ssh_authorized_keys" plus one line per
         * key. */
        c.ssh_authorized_keys = lines;
        if (cidata_render_user_data(&c, &user) >= 0) {
                size_t n = strv_length(lines);

                if (count_char(user, '\n') != (n > 0 ? 3 + n : 1))
                        abort();
        }

        c.dns = lines;
        (void) cidata_render_network_config(&c, &network);
        return 0;
}
