/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <systemd/sd-journal.h>

#include "error.h"
#include "journal.h"
#include "strv.h"


int journal_last_messages(const char *unit, const char *identifier, unsigned n, char ***ret) {
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
        if (identifier) {
                _cleanup_free_ char *m = strjoin("SYSLOG_IDENTIFIER=", identifier, NULL);

                if (!m)
                        return -ENOMEM;
                r = sd_journal_add_match(j, m, 0);
                if (r < 0)
                        return r;
        }
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

static int entry_field(sd_journal *j, const char *field, char **ret) {
        const void *data;
        size_t len, flen = strlen(field);

        if (sd_journal_get_data(j, field, &data, &len) < 0 || len <= flen)
                return -ENOENT;
        *ret = strndup((const char *) data + flen + 1, len - flen - 1);
        return *ret ? 0 : -ENOMEM;
}

static int print_entry(sd_journal *j, JournalFormat format, FILE *f) {
        _cleanup_free_ char *message = NULL, *ident = NULL, *pid = NULL;
        uint64_t usec = 0;

        if (entry_field(j, "MESSAGE", &message) < 0)
                return 0;
        (void) sd_journal_get_realtime_usec(j, &usec);

        if (format == JOURNAL_FORMAT_CAT) {
                fprintf(f, "%s\n", message);
                return 0;
        }

        (void) entry_field(j, "SYSLOG_IDENTIFIER", &ident);
        (void) entry_field(j, "_PID", &pid);

        if (format == JOURNAL_FORMAT_JSON) {
                json_t *o = json_pack("{s:s, s:s?, s:s?, s:I}", "MESSAGE", message,
                                      "SYSLOG_IDENTIFIER", ident, "_PID", pid,
                                      "__REALTIME_TIMESTAMP", (json_int_t) usec);
                char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

                json_decref(o);
                if (!s)
                        return -ENOMEM;
                fprintf(f, "%s\n", s);
                free(s);
                return 0;
        }

        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        char when[32];

        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%b %d %H:%M:%S", &tm);
        fprintf(f, "%s %s%s%s%s: %s\n", when, ident ?: "unknown", pid ? "[" : "", pid ?: "",
                pid ? "]" : "", message);
        return 0;
}

int journal_show(const JournalQuery *q, FILE *f) {
        _cleanup_(sd_journal_closep) sd_journal *j = NULL;
        _cleanup_free_ char *match = strjoin("_SYSTEMD_UNIT=", q->unit, NULL);
        int r;

        if (!match)
                return -ENOMEM;

        r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0)
                return error_set(r, "cannot open the journal: %s", strerror(-r));
        r = sd_journal_add_match(j, match, 0);
        if (r < 0)
                return r;

        if (q->lines > 0) {
                r = sd_journal_seek_tail(j);
                if (r >= 0)
                        r = sd_journal_previous_skip(j, q->lines);
                if (r < 0)
                        return r;
                /* previous_skip leaves us on the first entry to print: step back once so the
                 * loop's next() lands on it. */
                if (r > 0)
                        (void) sd_journal_previous(j);
                else
                        (void) sd_journal_seek_head(j);
        } else if (q->since_usec > 0)
                r = sd_journal_seek_realtime_usec(j, q->since_usec);
        else
                r = sd_journal_seek_head(j);
        if (r < 0)
                return r;

        for (;;) {
                r = sd_journal_next(j);
                if (r < 0)
                        return error_set(r, "cannot read the journal: %s", strerror(-r));
                if (r > 0) {
                        uint64_t usec = 0;

                        (void) sd_journal_get_realtime_usec(j, &usec);
                        if (q->since_usec > 0 && usec < q->since_usec)
                                continue;
                        r = print_entry(j, q->format, f);
                        if (r < 0)
                                return r;
                        continue;
                }

                if (!q->follow)
                        return 0;
                fflush(f);
                if (ferror(f))
                        return -EPIPE;

                /* Wake up now and then to notice a stop request from a signal. */
                do {
                        if (q->stop && *q->stop)
                                return 0;
                        r = sd_journal_wait(j, 250 * 1000);
                } while (r == SD_JOURNAL_NOP);
                if (r < 0)
                        return error_set(r, "cannot wait for the journal: %s", strerror(-r));
        }
}

int journal_parse_since(const char *s, uint64_t now_usec, uint64_t *ret) {
        struct tm tm = {};
        const char *end;
        char unit;
        unsigned long n;
        time_t t;

        if (!s || !*s)
                goto invalid;

        if (s[0] == '-' && sscanf(s, "-%lu%c", &n, &unit) == 2 && strlen(s) == strspn(s + 1, "0123456789") + 2) {
                uint64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : unit == 'd' ? 86400 : 0;

                if (mult == 0 || n * mult * 1000000ULL > now_usec)
                        goto invalid;
                *ret = now_usec - n * mult * 1000000ULL;
                return 0;
        }

        if (s[0] == '@') {
                char *e;

                errno = 0;
                n = strtoul(s + 1, &e, 10);
                if (errno != 0 || e == s + 1 || *e)
                        goto invalid;
                *ret = (uint64_t) n * 1000000ULL;
                return 0;
        }

        t = (time_t) (now_usec / 1000000ULL);
        localtime_r(&t, &tm);
        end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
        if (!end || *end) {
                tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
                end = strptime(s, "%Y-%m-%d", &tm);
        }
        if (!end || *end) {
                localtime_r(&t, &tm);
                end = strptime(s, "%H:%M:%S", &tm);
        }
        if (!end || *end)
                goto invalid;

        tm.tm_isdst = -1;
        t = mktime(&tm);
        if (t == (time_t) -1)
                goto invalid;
        *ret = (uint64_t) t * 1000000ULL;
        return 0;

invalid:
        return error_set(-EINVAL, "invalid time '%s': expected YYYY-MM-DD [HH:MM:SS], HH:MM:SS, "
                                  "-5m, -2h, -1d or @SECONDS", s ?: "");
}
