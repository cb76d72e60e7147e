/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>
#include <time.h>

#include "journal.h"
#include "tests.h"

#define NOW_USEC (1764806917ULL * 1000000ULL)  /* 2025-12-04 00:08:37 UTC */

TEST(since_relative_and_absolute) {
        uint64_t v;

        setenv("TZ", "UTC", 1);
        tzset();

        ASSERT_OK(journal_parse_since("-5m", NOW_USEC, &v));
        ASSERT_EQ(v, NOW_USEC - 300ULL * 1000000ULL);
        ASSERT_OK(journal_parse_since("-2h", NOW_USEC, &v));
        ASSERT_EQ(v, NOW_USEC - 7200ULL * 1000000ULL);
        ASSERT_OK(journal_parse_since("@1700000000", NOW_USEC, &v));
        ASSERT_EQ(v, 1700000000ULL * 1000000ULL);
        ASSERT_OK(journal_parse_since("2025-12-03 10:00:00", NOW_USEC, &v));
        ASSERT_EQ(v, 1764756000ULL * 1000000ULL);
        ASSERT_OK(journal_parse_since("2025-12-03", NOW_USEC, &v));
        ASSERT_EQ(v, 1764720000ULL * 1000000ULL);
        ASSERT_OK(journal_parse_since("00:00:00", NOW_USEC, &v));
        ASSERT_EQ(v, 1764806400ULL * 1000000ULL);
        return 0;
}

TEST(since_rejects) {
        uint64_t v = 0;
        int r;

        r = journal_parse_since("yesterday", NOW_USEC, &v);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid time 'yesterday': expected YYYY-MM-DD [HH:MM:SS], HH:MM:SS, -5m, -2h, -1d or @SECONDS");
        ASSERT_ERROR(journal_parse_since("-5x", NOW_USEC, &v), EINVAL);
        ASSERT_ERROR(journal_parse_since("-5m3", NOW_USEC, &v), EINVAL);
        ASSERT_ERROR(journal_parse_since("@", NOW_USEC, &v), EINVAL);
        ASSERT_ERROR(journal_parse_since("", NOW_USEC, &v), EINVAL);
        ASSERT_EQ(v, 0);
        return 0;
}

DEFINE_TEST_MAIN
