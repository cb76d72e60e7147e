/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include <systemd/sd-journal.h>

#include "error.h"
#include "journal.h"
#include "strv.h"


int journal_last_messages(const char *unit, unsigned n, char ***ret) {
        _cleanup_(sd_journal_closep) sd_journal *j = NULL;
        _cleanup_strv_free_ char **lines = calloc(n + 1, sizeof(char *));
        _cleanup_free_ char *match = strjoin("_SYSTEMD_UNIT=", unit, NULL);
        unsigned count = 0;
        int r;

        if (!lines || !match)
                return -ENOMEM;

        r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0)
                return r;
        r = sd_journal_add_match(j, match, 0);
        if (r < 0)
                return r;
        r = sd_journal_seek_tail(j);
        if (r < 0)
                return r;

        /* Walk backwards, filling the array from its end so the result reads oldest first. */
        while (count < n && sd_journal_previous(j) > 0) {
                const void *data;
                size_t len;

                if (sd_journal_get_data(j, "MESSAGE", &data, &len) < 0 || len < 8)
                        continue;
                lines[n - 1 - count] = strndup((const char *) data + 8, len - 8);
                if (!lines[n - 1 - count])
                        return -ENOMEM;
                count++;
        }

        memmove(lines, lines + (n - count), count * sizeof(char *));
        for (unsigned i = count; i < n; i++)
                lines[i] = NULL;
        *ret = TAKE_PTR(lines);
        return 0;
}
