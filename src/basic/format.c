/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "format.h"

static int unit_shift(const char *unit, unsigned *ret) {
        static const struct {
                const char *name;
                unsigned shift;
        } units[] = {
                { "", 0 },    { "b", 0 },    { "k", 10 },   { "kb", 10 },  { "ki", 10 },
                { "kib", 10 }, { "m", 20 },  { "mb", 20 },  { "mi", 20 },  { "mib", 20 },
                { "g", 30 },  { "gb", 30 },  { "gi", 30 },  { "gib", 30 }, { "t", 40 },
                { "tb", 40 }, { "ti", 40 },  { "tib", 40 }, { "p", 50 },   { "pb", 50 },
                { "pi", 50 }, { "pib", 50 },
        };

        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcasecmp(unit, units[i].name) == 0) {
                        *ret = units[i].shift;
                        return 0;
                }
        return -EINVAL;
}

int parse_size(const char *s, uint64_t *ret) {
        uint64_t whole = 0, frac = 0, frac_div = 1;
        const char *p = s;
        unsigned shift;

        if (isempty(s))
                return error_set(-EINVAL, "invalid size '': expected a number with an optional "
                                          "unit such as 512M or 10G");

        if (!isdigit((unsigned char) *p))
                goto invalid;

        for (; isdigit((unsigned char) *p); p++) {
                if (whole > (UINT64_MAX - 9) / 10)
                        return error_set(-ERANGE, "size '%s' is too large", s);
                whole = whole * 10 + (*p - '0');
        }

        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char) *p))
                        goto invalid;
                /* Nine digits of fraction are plenty for byte precision up to petabytes. */
                for (; isdigit((unsigned char) *p); p++)
                        if (frac_div < 1000000000) {
                                frac = frac * 10 + (*p - '0');
                                frac_div *= 10;
                        }
        }

        if (unit_shift(p, &shift) < 0)
                goto invalid;

        if (shift > 0 && whole > (UINT64_MAX >> shift))
                return error_set(-ERANGE, "size '%s' is too large", s);

        *ret = (whole << shift) + (uint64_t) (((__uint128_t) frac << shift) / frac_div);
        return 0;

invalid:
        return error_set(-EINVAL, "invalid size '%s': expected a number with an optional unit "
                                  "such as 512M or 10G", s);
}

static char *format_size(char *buf, size_t len, uint64_t bytes, unsigned base, const char *const *units) {
        double v = (double) bytes;
        size_t i = 0;

        while (v >= base && units[i + 1]) {
                v /= base;
                i++;
        }

        if (i == 0)
                snprintf(buf, len, "%" PRIu64 "%s", bytes, units[0]);
        else if (v < 10 && v != (uint64_t) v)
                snprintf(buf, len, "%.1f%s", v, units[i]);
        else
                snprintf(buf, len, "%.0f%s", v, units[i]);
        return buf;
}

char *format_size_decimal(char *buf, size_t len, uint64_t bytes) {
        static const char *const units[] = { "B", "kB", "MB", "GB", "TB", "PB", NULL };

        return format_size(buf, len, bytes, 1000, units);
}

char *format_size_binary(char *buf, size_t len, uint64_t bytes) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", NULL };

        return format_size(buf, len, bytes, 1024, units);
}

char *format_timestamp_rfc3339(char *buf, size_t len, const struct timespec *ts) {
        struct tm tm;
        char base[32];

        gmtime_r(&ts->tv_sec, &tm);
        strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, len, "%s.%09ldZ", base, ts->tv_nsec);
        return buf;
}

char *format_timestamp_local(char *buf, size_t len, const char *rfc3339) {
        struct tm tm = {};
        time_t t;

        if (!rfc3339 || !strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm)) {
                snprintf(buf, len, "-");
                return buf;
        }

        t = timegm(&tm);
        localtime_r(&t, &tm);
        strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
        return buf;
}
