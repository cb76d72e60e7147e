/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>

#include "fileio.h"
#include "format.h"
#include "strv.h"
#include "tests.h"

TEST(parse_size_units) {
        uint64_t v;

        ASSERT_OK(parse_size("4096", &v));
        ASSERT_EQ(v, 4096);
        ASSERT_OK(parse_size("512M", &v));
        ASSERT_EQ(v, 512ULL << 20);
        ASSERT_OK(parse_size("1G", &v));
        ASSERT_EQ(v, 1ULL << 30);
        ASSERT_OK(parse_size("2Gi", &v));
        ASSERT_EQ(v, 2ULL << 30);
        ASSERT_OK(parse_size("10GiB", &v));
        ASSERT_EQ(v, 10ULL << 30);
        ASSERT_OK(parse_size("1.5g", &v));
        ASSERT_EQ(v, 3ULL << 29);
        ASSERT_OK(parse_size("100k", &v));
        ASSERT_EQ(v, 102400);
        return 0;
}

TEST(parse_size_rejects) {
        uint64_t v = 7;

        ASSERT_ERROR(parse_size("", &v), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid size '': expected a number with an optional unit such as 512M or 10G");
        ASSERT_ERROR(parse_size("ten", &v), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid size 'ten': expected a number with an optional unit such as 512M or 10G");
        ASSERT_ERROR(parse_size("-1G", &v), EINVAL);
        ASSERT_ERROR(parse_size("1X", &v), EINVAL);
        ASSERT_ERROR(parse_size("1.G", &v), EINVAL);
        ASSERT_ERROR(parse_size("1 G", &v), EINVAL);
        ASSERT_ERROR(parse_size("99999999999P", &v), ERANGE);
        ASSERT_ERROR_MESSAGE(-ERANGE, "size '99999999999P' is too large");
        ASSERT_ERROR(parse_size("99999999999999999999999", &v), ERANGE);
        ASSERT_EQ(v, 7);
        return 0;
}

TEST(format_sizes) {
        char buf[FORMAT_SIZE_MAX];

        ASSERT_STREQ(format_size_decimal(buf, sizeof(buf), 0), "0B");
        ASSERT_STREQ(format_size_decimal(buf, sizeof(buf), 2200000000ULL), "2.2GB");
        ASSERT_STREQ(format_size_decimal(buf, sizeof(buf), 14260000), "14MB");
        ASSERT_STREQ(format_size_binary(buf, sizeof(buf), 1ULL << 30), "1GiB");
        ASSERT_STREQ(format_size_binary(buf, sizeof(buf), 10ULL << 30), "10GiB");
        ASSERT_STREQ(format_size_binary(buf, sizeof(buf), 512ULL << 20), "512MiB");
        return 0;
}

TEST(timestamps) {
        char buf[FORMAT_TIMESTAMP_MAX];
        struct timespec ts = { .tv_sec = 1764806917, .tv_nsec = 5 };

        ASSERT_STREQ(format_timestamp_rfc3339(buf, sizeof(buf), &ts), "2025-12-04T00:08:37.000000005Z");
        setenv("TZ", "UTC", 1);
        tzset();
        ASSERT_STREQ(format_timestamp_local(buf, sizeof(buf), "2025-12-04T00:08:37.000000005Z"),
                     "2025-12-04 00:08:37");
        ASSERT_STREQ(format_timestamp_local(buf, sizeof(buf), "garbage"), "-");
        return 0;
}

TEST(strv_split_join) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *j = NULL;

        ASSERT_OK(strv_split(" 8.8.8.8, 1.1.1.1;;9.9.9.9 ", ",;", &l));
        ASSERT_EQ(strv_length(l), 3);
        ASSERT_STREQ(l[0], "8.8.8.8");
        ASSERT_STREQ(l[2], "9.9.9.9");
        ASSERT_TRUE(strv_contains(l, "1.1.1.1"));
        j = strv_join(l, ",");
        ASSERT_STREQ(j, "8.8.8.8,1.1.1.1,9.9.9.9");
        return 0;
}

TEST(write_file_atomic_replaces) {
        char dir[] = "/tmp/cocoon-test-XXXXXX";
        _cleanup_free_ char *path = NULL, *data = NULL;
        struct stat st;
        size_t size;

        ASSERT_TRUE(mkdtemp(dir));
        path = strjoin(dir, "/record.json", NULL);
        ASSERT_OK(write_file_atomic(path, "old", 3, 0644));
        ASSERT_OK(write_file_atomic(path, "new content", 11, 0600));
        ASSERT_OK(read_file(path, 1024, &data, &size));
        ASSERT_STREQ(data, "new content");
        ASSERT_EQ(size, 11);
        ASSERT_OK(stat(path, &st));
        ASSERT_EQ(st.st_mode & 0777, 0600);
        free(data);
        data = NULL;
        ASSERT_ERROR(read_file(path, 4, &data, &size), EFBIG);
        ASSERT_OK(rm_rf(dir));
        ASSERT_TRUE(stat(dir, &st) < 0 && errno == ENOENT);
        return 0;
}

TEST(rm_rf_keeps_symlink_target) {
        char dir[] = "/tmp/cocoon-test-XXXXXX", outside[] = "/tmp/cocoon-test-XXXXXX";
        _cleanup_free_ char *link = NULL, *victim = NULL, *nested = NULL;
        struct stat st;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_TRUE(mkdtemp(outside));
        victim = strjoin(outside, "/keep", NULL);
        ASSERT_OK(write_file_atomic(victim, "x", 1, 0644));
        link = strjoin(dir, "/link", NULL);
        ASSERT_TRUE(symlink(outside, link) == 0);
        nested = strjoin(dir, "/a/b/c", NULL);
        ASSERT_OK(mkdir_p(nested, 0755));

        ASSERT_OK(rm_rf(dir));
        ASSERT_OK(stat(victim, &st));
        ASSERT_OK(rm_rf(outside));
        return 0;
}

DEFINE_TEST_MAIN
