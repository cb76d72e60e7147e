/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>

#include "fileio.h"
#include "qcow2.h"
#include "strv.h"
#include "tests.h"

#define CLUSTER_SIZE 65536U

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, (uint32_t) (v >> 32));
        put_be32(p + 4, (uint32_t) v);
}

/* A header as qemu-img create writes it for a 1 GiB image with 64 KiB clusters, into the first
 * cluster of buf; the extension area is left zero, which reads as the end marker. */
static void make_header(uint8_t *buf, uint32_t version) {
        memset(buf, 0, CLUSTER_SIZE);
        memcpy(buf, QCOW2_MAGIC, 4);
        put_be32(buf + 4, version);
        put_be32(buf + 20, 16);                      /* cluster_bits */
        put_be64(buf + 24, UINT64_C(1) << 30);       /* virtual size */
        put_be32(buf + 36, 2);                       /* l1_size */
        put_be64(buf + 40, 3 * CLUSTER_SIZE);        /* l1_table_offset */
        put_be64(buf + 48, CLUSTER_SIZE);            /* refcount_table_offset */
        put_be32(buf + 56, 1);                       /* refcount_table_clusters */
        if (version == 3) {
                put_be32(buf + 96, 4);               /* refcount_order */
                put_be32(buf + 100, 112);            /* header_length */
        }
}

static uint8_t buf[CLUSTER_SIZE];

TEST(qcow2_v2_header) {
        Qcow2Header h;

        make_header(buf, 2);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_EQ(h.version, 2);
        ASSERT_EQ(h.header_length, 72);
        ASSERT_EQ(h.cluster_bits, 16);
        ASSERT_EQ(h.virtual_size, UINT64_C(1) << 30);
        ASSERT_EQ(h.incompatible_features, 0);
        ASSERT_TRUE(!qcow2_header_has_backing_file(&h));
        ASSERT_TRUE(!qcow2_header_has_data_file(&h));
        ASSERT_OK(qcow2_header_check_self_contained(&h));
        ASSERT_OK(qcow2_header_check_file_size(&h, 4 * CLUSTER_SIZE));
        ASSERT_STREQ(qcow2_compat_to_string(h.version), "0.10");
        return 0;
}

TEST(qcow2_v3_header) {
        Qcow2Header h;

        make_header(buf, 3);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_EQ(h.version, 3);
        ASSERT_EQ(h.header_length, 112);
        ASSERT_EQ(h.l1_size, 2);
        ASSERT_EQ(h.l1_table_offset, 3 * CLUSTER_SIZE);
        ASSERT_OK(qcow2_header_check_self_contained(&h));
        ASSERT_STREQ(qcow2_compat_to_string(h.version), "1.1");
        ASSERT_TRUE(qcow2_compat_to_string(4) == NULL);
        return 0;
}

TEST(qcow2_v3_dirty_bit_accepted) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 72, QCOW2_INCOMPAT_DIRTY);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_OK(qcow2_header_check_self_contained(&h));
        return 0;
}

TEST(qcow2_backing_file_rejected) {
        const char *name = "/etc/hostname";
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 8, 512);
        put_be32(buf + 16, (uint32_t) strlen(name));
        memcpy(buf + 512, name, strlen(name));
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_TRUE(qcow2_header_has_backing_file(&h));
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EPERM);
        ASSERT_ERROR_MESSAGE(-EPERM, "qcow2 image declares a backing file, which would make "
                                     "qemu-img read a file of this host: only self-contained "
                                     "images are accepted");
        return 0;
}

TEST(qcow2_backing_size_alone_rejected) {
        Qcow2Header h;

        make_header(buf, 2);
        put_be32(buf + 16, 13);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EPERM);
        return 0;
}

TEST(qcow2_huge_backing_offset_rejected) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 8, UINT64_MAX);
        put_be32(buf + 16, UINT32_MAX);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EPERM);
        ASSERT_ERROR_MESSAGE(-EPERM, "qcow2 image declares a backing file, which would make "
                                     "qemu-img read a file of this host: only self-contained "
                                     "images are accepted");
        return 0;
}

TEST(qcow2_data_file_bit_rejected) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 72, QCOW2_INCOMPAT_DATA_FILE);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_TRUE(qcow2_header_has_data_file(&h));
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EPERM);
        ASSERT_ERROR_MESSAGE(-EPERM, "qcow2 image declares an external data file, which would "
                                     "make qemu-img read a file of this host: only "
                                     "self-contained images are accepted");
        return 0;
}

TEST(qcow2_data_file_extension_rejected) {
        Qcow2Header h;

        /* The name of a data file without the feature bit is still refused. */
        make_header(buf, 3);
        put_be32(buf + 112, QCOW2_EXT_DATA_FILE);
        put_be32(buf + 116, 13);
        memcpy(buf + 120, "/etc/hostname", 13);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_TRUE(h.has_data_file_ext);
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EPERM);
        return 0;
}

TEST(qcow2_backing_format_extension_noted) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be32(buf + 112, QCOW2_EXT_BACKING_FORMAT);
        put_be32(buf + 116, 3);
        memcpy(buf + 120, "raw", 3);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_TRUE(h.has_backing_format_ext);
        ASSERT_TRUE(!h.has_data_file_ext);
        ASSERT_OK(qcow2_header_check_self_contained(&h));
        return 0;
}

TEST(qcow2_encrypted_rejected) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be32(buf + 32, 2);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EOPNOTSUPP);
        ASSERT_ERROR_MESSAGE(-EOPNOTSUPP, "qcow2 image is encrypted (method 2), which is not supported");
        return 0;
}

TEST(qcow2_corrupt_bit_rejected) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 72, QCOW2_INCOMPAT_CORRUPT);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EOPNOTSUPP);
        ASSERT_ERROR_MESSAGE(-EOPNOTSUPP, "qcow2 image is marked corrupt");
        return 0;
}

TEST(qcow2_zero_virtual_size_rejected) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 24, 0);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EOPNOTSUPP);
        ASSERT_ERROR_MESSAGE(-EOPNOTSUPP, "qcow2 image has a virtual size of 0 bytes");
        return 0;
}

TEST(qcow2_huge_virtual_size_invalid) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 24, UINT64_MAX);
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "invalid qcow2 virtual size 18446744073709551615");
        return 0;
}

TEST(qcow2_bad_magic) {
        Qcow2Header h;

        make_header(buf, 3);
        buf[3] = 0xfc;
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "not a qcow2 image: the magic 'QFI\\xfb' is missing");
        ASSERT_ERROR(qcow2_header_parse(buf, 3, &h), EBADMSG);
        return 0;
}

TEST(qcow2_unsupported_version) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be32(buf + 4, 4);
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EPROTONOSUPPORT);
        ASSERT_ERROR_MESSAGE(-EPROTONOSUPPORT, "unsupported qcow2 version 4: expected 2 or 3");
        put_be32(buf + 4, 1);
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EPROTONOSUPPORT);
        return 0;
}

TEST(qcow2_truncated_header) {
        Qcow2Header h;

        make_header(buf, 2);
        ASSERT_ERROR(qcow2_header_parse(buf, 40, &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 header is truncated: the file has 40 bytes, the "
                                       "header needs 72");

        make_header(buf, 3);
        ASSERT_ERROR(qcow2_header_parse(buf, 80, &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 header is truncated: the file has 80 bytes, a "
                                       "version 3 header needs 104");
        ASSERT_ERROR(qcow2_header_parse(buf, 108, &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 header is truncated: the file has 108 bytes, the "
                                       "header needs 112");
        return 0;
}

TEST(qcow2_truncated_extensions) {
        Qcow2Header h;

        make_header(buf, 3);
        ASSERT_ERROR(qcow2_header_parse(buf, 116, &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 header is truncated: its extensions run past the "
                                       "end of the file at 116 bytes");

        put_be32(buf + 112, QCOW2_EXT_BACKING_FORMAT);
        put_be32(buf + 116, 100);
        ASSERT_ERROR(qcow2_header_parse(buf, 160, &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 header is truncated: its extensions run past the "
                                       "end of the file at 160 bytes");
        return 0;
}

TEST(qcow2_extension_past_cluster) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be32(buf + 112, QCOW2_EXT_BACKING_FORMAT);
        put_be32(buf + 116, UINT32_MAX);
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 header extension 0xe2792aca of 4294967295 bytes is "
                                       "cut off at offset 65536");
        return 0;
}

TEST(qcow2_huge_header_length) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be32(buf + 100, 0xfffffff8U);
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "invalid qcow2 header length 4294967288: larger than a cluster");

        put_be32(buf + 100, 100);
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "invalid qcow2 header length 100: expected a multiple of 8 "
                                       "of at least 104");
        return 0;
}

TEST(qcow2_invalid_cluster_bits) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be32(buf + 20, 63);
        ASSERT_ERROR(qcow2_header_parse(buf, sizeof(buf), &h), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "invalid qcow2 cluster size 2^63: expected 2^9 to 2^21 bytes");
        return 0;
}

TEST(qcow2_huge_table_offsets) {
        Qcow2Header h;

        make_header(buf, 3);
        put_be64(buf + 40, UINT64_MAX - 4);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_file_size(&h, 4 * CLUSTER_SIZE), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 L1 table (offset 18446744073709551611, 16 bytes) lies "
                                       "beyond the end of the file at 262144 bytes; is the "
                                       "download truncated?");

        make_header(buf, 3);
        put_be32(buf + 56, UINT32_MAX);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_file_size(&h, 4 * CLUSTER_SIZE), EBADMSG);

        make_header(buf, 3);
        put_be32(buf + 60, 1);
        put_be64(buf + 64, 4 * CLUSTER_SIZE);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_file_size(&h, 4 * CLUSTER_SIZE), EBADMSG);
        ASSERT_OK(qcow2_header_check_file_size(&h, 5 * CLUSTER_SIZE));
        return 0;
}

TEST(qcow2_truncated_file) {
        Qcow2Header h;

        /* The L1 table sits in the fourth cluster; a file of three clusters lacks it. */
        make_header(buf, 3);
        ASSERT_OK(qcow2_header_parse(buf, sizeof(buf), &h));
        ASSERT_ERROR(qcow2_header_check_file_size(&h, 3 * CLUSTER_SIZE), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "qcow2 L1 table (offset 196608, 16 bytes) lies beyond the end "
                                       "of the file at 196608 bytes; is the download truncated?");
        return 0;
}

/* Headers written by the real qemu-img, when it is installed. */
static int parse_qemu_img_output(const char *dir, const char *args, Qcow2Header *ret) {
        _cleanup_free_ char *cmd = NULL, *path = NULL, *data = NULL;
        size_t size;
        int r;

        if (asprintf(&cmd, "cd '%s' && qemu-img create -q -f qcow2 %s image.qcow2 64M", dir, args) < 0 ||
            asprintf(&path, "%s/image.qcow2", dir) < 0)
                return -ENOMEM;
        if (system(cmd) != 0)
                return -EIO;
        r = read_file(path, 16 * 1024 * 1024, &data, &size);
        if (r < 0)
                return r;
        unlink(path);
        return qcow2_header_parse(data, size, ret);
}

TEST(qcow2_real_qemu_img_headers) {
        char dir[] = "/tmp/test-qcow2-XXXXXX";
        Qcow2Header h;

        if (system("qemu-img --version >/dev/null 2>&1") != 0)
                return TEST_SKIP;
        ASSERT_TRUE(mkdtemp(dir));

        ASSERT_OK(parse_qemu_img_output(dir, "-o compat=0.10", &h));
        ASSERT_EQ(h.version, 2);
        ASSERT_EQ(h.virtual_size, 64 << 20);
        ASSERT_OK(qcow2_header_check_self_contained(&h));

        ASSERT_OK(parse_qemu_img_output(dir, "-o compat=1.1", &h));
        ASSERT_EQ(h.version, 3);
        ASSERT_OK(qcow2_header_check_self_contained(&h));

        ASSERT_OK(parse_qemu_img_output(dir, "-u -F raw -b /etc/hostname", &h));
        ASSERT_TRUE(qcow2_header_has_backing_file(&h));
        ASSERT_TRUE(h.has_backing_format_ext);
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EPERM);

        ASSERT_OK(parse_qemu_img_output(dir, "-o data_file=data.raw", &h));
        ASSERT_TRUE(qcow2_header_has_data_file(&h));
        ASSERT_TRUE(h.has_data_file_ext);
        ASSERT_ERROR(qcow2_header_check_self_contained(&h), EPERM);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

DEFINE_TEST_MAIN
