/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Parse a size such as "512M", "1G", "2Gi", "10GiB", "1.5g" or "4096" into bytes. Every unit is
 * binary (1G = 2^30), as in the Go Cocoon and Docker. */
int parse_size(const char *s, uint64_t *ret);

/* "2.2GB": decimal units, as `image list` shows them. */
char *format_size_decimal(char *buf, size_t len, uint64_t bytes);
/* "1GiB", "512MiB": binary units, as `vm list` shows them. */
char *format_size_binary(char *buf, size_t len, uint64_t bytes);
#define FORMAT_SIZE_MAX 32

/* RFC 3339 with nanoseconds in UTC ("2026-12-04T20:08:37.123456789Z"), for records. */
char *format_timestamp_rfc3339(char *buf, size_t len, const struct timespec *ts);
/* Local time "YYYY-MM-DD HH:MM:SS" from an RFC 3339 timestamp, for tables. */
char *format_timestamp_local(char *buf, size_t len, const char *rfc3339);
#define FORMAT_TIMESTAMP_MAX 64
