/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cloudimg.h"
#include "config.h"
#include "fileio.h"
#include "tests.h"

#define HEX_A "5c0c4a5d3d8e8f29c9e3f0ab4c1b8f0b4d2e6a7c9d1f3e5a7b9c1d3e5f7a9b1c"
#define HEX_B "0000000000000000000000000000000000000000000000000000000000000001"

static int sniff_text(const char *text, uint64_t file_size, CloudImgFormat *ret) {
        uint8_t head[512] = {};

        memcpy(head, text, strlen(text));
        return cloudimg_sniff(head, sizeof(head), file_size, ret);
}

TEST(cloudimg_is_url_cases) {
        ASSERT_TRUE(cloudimg_is_url("https://cloud-images.ubuntu.com/noble/current/x.img"));
        ASSERT_TRUE(cloudimg_is_url("http://127.0.0.1:8080/x.img"));
        ASSERT_TRUE(cloudimg_is_url("HTTPS://example.com/x.img"));
        ASSERT_TRUE(!cloudimg_is_url("ubuntu:24.04"));
        ASSERT_TRUE(!cloudimg_is_url("ftp://example.com/x.img"));
        ASSERT_TRUE(!cloudimg_is_url("http:/x"));
        ASSERT_TRUE(!cloudimg_is_url(NULL));
        return 0;
}

TEST(cloudimg_blob_path_layout) {
        Store s = { .root = (char *) "/var/lib/cocoon" };
        _cleanup_free_ char *a = cloudimg_blob_path(&s, "sha256:" HEX_A);
        _cleanup_free_ char *b = cloudimg_blob_path(&s, HEX_A);

        ASSERT_STREQ(a, "/var/lib/cocoon/blobs/sha256/" HEX_A ".qcow2");
        ASSERT_STREQ(b, a);
        return 0;
}

TEST(sniff_qcow2_and_raw) {
        CloudImgFormat f;

        ASSERT_OK(sniff_text("QFI\xfb", 196608, &f));
        ASSERT_EQ(f, CLOUDIMG_FORMAT_QCOW2);
        ASSERT_STREQ(cloudimg_format_to_string(f), "qcow2");

        /* A raw disk: an MBR boot sector. */
        ASSERT_OK(sniff_text("\xeb\x63\x90", 1048576, &f));
        ASSERT_EQ(f, CLOUDIMG_FORMAT_RAW);
        ASSERT_STREQ(cloudimg_format_to_string(f), "raw");
        return 0;
}

TEST(sniff_raw_size_rule) {
        CloudImgFormat f;

        ASSERT_ERROR(sniff_text("", 0, &f), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received an empty file, not a disk image");

        ASSERT_ERROR(sniff_text("Not Found", 9, &f), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received 9 bytes that are neither a qcow2 image nor a "
                                           "raw disk image (a raw image is a multiple of 512 bytes)");

        ASSERT_ERROR(sniff_text("", 1048577, &f), EMEDIUMTYPE);
        ASSERT_OK(sniff_text("", 512, &f));
        return 0;
}

TEST(sniff_html) {
        static const char *const pages[] = {
                "<!DOCTYPE html><html>", "<!doctype html>", "  \r\n\t<html lang=en>",
                "\xef\xbb\xbf<!DOCTYPE html>", "<HTML>", "<head><title>404</title>",
                "<!-- error page -->",
        };
        CloudImgFormat f;

        for (size_t i = 0; i < ELEMENTSOF(pages); i++) {
                ASSERT_ERROR(sniff_text(pages[i], 1024, &f), EMEDIUMTYPE);
                ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received an HTML page, not a disk image: check "
                                                   "the URL, it may point to a download page or "
                                                   "an error page");
        }

        ASSERT_ERROR(sniff_text("<?xml version=\"1.0\"?><Error>", 1024, &f), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received an XML document, not a disk image: check the "
                                           "URL, it may point to an error page");
        return 0;
}

TEST(sniff_compressed) {
        static const struct {
                const char *magic;
                size_t length;
                const char *what;
        } cases[] = {
                { "\x1f\x8b\x08", 3, "a gzip file" },
                { "\xfd" "7zXZ\x00", 6, "an xz file" },
                { "BZh91AY", 7, "a bzip2 file" },
                { "\x28\xb5\x2f\xfd", 4, "a zstd file" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t head[512] = {};
                char expected[256];

                memcpy(head, cases[i].magic, cases[i].length);
                snprintf(expected, sizeof(expected), "received %s, not a disk image: decompress "
                         "it first or use the uncompressed image URL", cases[i].what);
                ASSERT_ERROR(cloudimg_sniff_reject(head, sizeof(head)), EMEDIUMTYPE);
                ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, expected);
        }
        return 0;
}

TEST(sniff_archives) {
        uint8_t head[512] = {};

        memcpy(head, "PK\x03\x04", 4);
        ASSERT_ERROR(cloudimg_sniff_reject(head, sizeof(head)), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received a zip archive, not a disk image: extract it "
                                           "first or use the uncompressed image URL");

        memcpy(head, "7z\xbc\xaf\x27\x1c", 6);
        ASSERT_ERROR(cloudimg_sniff_reject(head, sizeof(head)), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received a 7z archive, not a disk image: extract it "
                                           "first or use the uncompressed image URL");

        memset(head, 0, sizeof(head));
        memcpy(head, "disk.img", 8);
        memcpy(head + 257, "ustar", 5);
        ASSERT_ERROR(cloudimg_sniff_reject(head, sizeof(head)), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received a tar archive, not a disk image: extract it "
                                           "first or use the uncompressed image URL");
        return 0;
}

TEST(sniff_other_disk_formats) {
        uint8_t head[512] = {};

        memcpy(head, "KDMV", 4);
        ASSERT_ERROR(cloudimg_sniff_reject(head, sizeof(head)), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received a VMDK image, which is not supported: convert "
                                           "it to qcow2 or raw first");

        memset(head, 0, sizeof(head));
        memcpy(head + 64, "\x7f\x10\xda\xbe", 4);
        ASSERT_ERROR(cloudimg_sniff_reject(head, sizeof(head)), EMEDIUMTYPE);
        ASSERT_ERROR_MESSAGE(-EMEDIUMTYPE, "received a VDI image, which is not supported: convert "
                                           "it to qcow2 or raw first");
        return 0;
}

TEST(sniff_short_head) {
        /* Signatures beyond the data are not looked at. */
        ASSERT_OK(cloudimg_sniff_reject("PK", 2));
        ASSERT_OK(cloudimg_sniff_reject("", 0));
        ASSERT_ERROR(cloudimg_sniff_reject("\x1f\x8b", 2), EMEDIUMTYPE);
        return 0;
}

TEST(sha256sums_gnu_formats) {
        const char *text =
                HEX_B " *other.img\n"
                HEX_A " *noble-server-cloudimg-amd64.img\n"
                HEX_B "  debian-12-generic-amd64.qcow2\r\n";
        _cleanup_free_ char *a = NULL, *b = NULL;

        ASSERT_OK(cloudimg_sha256sums_find(text, strlen(text), "noble-server-cloudimg-amd64.img", &a));
        ASSERT_STREQ(a, "sha256:" HEX_A);
        ASSERT_OK(cloudimg_sha256sums_find(text, strlen(text), "debian-12-generic-amd64.qcow2", &b));
        ASSERT_STREQ(b, "sha256:" HEX_B);
        return 0;
}

TEST(sha256sums_bsd_format_and_case) {
        const char *text = "SHA256 (Fedora-Cloud.qcow2) = 5C0C4A5D3D8E8F29C9E3F0AB4C1B8F0B4D2E6A7C9D1F3E5A7B9C1D3E5F7A9B1C\n";
        _cleanup_free_ char *a = NULL;

        ASSERT_OK(cloudimg_sha256sums_find(text, strlen(text), "Fedora-Cloud.qcow2", &a));
        ASSERT_STREQ(a, "sha256:" HEX_A);
        return 0;
}

TEST(sha256sums_dot_slash_and_no_newline) {
        const char *text = HEX_A "  ./image.img";
        _cleanup_free_ char *a = NULL;

        ASSERT_OK(cloudimg_sha256sums_find(text, strlen(text), "image.img", &a));
        ASSERT_STREQ(a, "sha256:" HEX_A);
        return 0;
}

TEST(sha256sums_signed_file) {
        const char *text =
                "-----BEGIN PGP SIGNED MESSAGE-----\n"
                "Hash: SHA256\n"
                "\n"
                HEX_A " *image.img\n"
                "-----BEGIN PGP SIGNATURE-----\n"
                "iQIzBAEBCAAdFiEE\n"
                "-----END PGP SIGNATURE-----\n";
        _cleanup_free_ char *a = NULL;

        ASSERT_OK(cloudimg_sha256sums_find(text, strlen(text), "image.img", &a));
        ASSERT_STREQ(a, "sha256:" HEX_A);
        return 0;
}

TEST(sha256sums_not_listed) {
        const char *text =
                HEX_A " *image.img.gz\n"
                HEX_A " *other/image.img\n"
                HEX_A "image.img\n"           /* no separator */
                "abc *image.img\n"            /* short checksum */
                HEX_A "\t*image.img\n"        /* a tab is not a separator */
                "<html><body>Not Found</body></html>\n";
        char *a = NULL;

        ASSERT_ERROR(cloudimg_sha256sums_find(text, strlen(text), "image.img", &a), ENOENT);
        ASSERT_TRUE(a == NULL);
        ASSERT_ERROR(cloudimg_sha256sums_find("", 0, "image.img", &a), ENOENT);
        return 0;
}

TEST(sha256sums_duplicates) {
        const char *same = HEX_A " *image.img\n" HEX_A "  image.img\n";
        const char *different = HEX_A " *image.img\n" HEX_B " *image.img\n";
        _cleanup_free_ char *a = NULL;
        char *b = NULL;

        ASSERT_OK(cloudimg_sha256sums_find(same, strlen(same), "image.img", &a));
        ASSERT_STREQ(a, "sha256:" HEX_A);
        ASSERT_ERROR(cloudimg_sha256sums_find(different, strlen(different), "image.img", &b), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "SHA256SUMS lists 'image.img' twice with different checksums");
        return 0;
}

TEST(sha256sums_embedded_nul) {
        const char text[] = HEX_B " *x\0\n" HEX_A " *image.img\n";
        _cleanup_free_ char *a = NULL;

        ASSERT_OK(cloudimg_sha256sums_find(text, sizeof(text) - 1, "image.img", &a));
        ASSERT_STREQ(a, "sha256:" HEX_A);
        return 0;
}

TEST(sha256sums_url_cases) {
        static const struct {
                const char *url, *sums, *filename;
        } cases[] = {
                { "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img",
                  "https://cloud-images.ubuntu.com/noble/current/SHA256SUMS",
                  "noble-server-cloudimg-amd64.img" },
                { "http://127.0.0.1:8080/a/b.img?token=1#frag", "http://127.0.0.1:8080/a/SHA256SUMS", "b.img" },
                { "http://example.com/image.img", "http://example.com/SHA256SUMS", "image.img" },
                { "http://example.com/d%20x/my%2Bimage.img", "http://example.com/d%20x/SHA256SUMS", "my+image.img" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *sums = NULL, *filename = NULL;

                ASSERT_OK(cloudimg_sha256sums_url(cases[i].url, &sums, &filename));
                ASSERT_STREQ(sums, cases[i].sums);
                ASSERT_STREQ(filename, cases[i].filename);
        }
        return 0;
}

TEST(sha256sums_url_without_file) {
        char *sums = NULL, *filename = NULL;

        ASSERT_ERROR(cloudimg_sha256sums_url("http://example.com/images/", &sums, &filename), ENOENT);
        ASSERT_ERROR(cloudimg_sha256sums_url("http://example.com", &sums, &filename), ENOENT);
        ASSERT_ERROR(cloudimg_sha256sums_url("http://exa mple.com/x.img", &sums, &filename), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid URL 'http://exa mple.com/x.img'");
        return 0;
}

TEST(content_range_parse) {
        uint64_t first, last, total;

        ASSERT_OK(cloudimg_parse_content_range("bytes 100-199/200", &first, &last, &total));
        ASSERT_EQ(first, 100);
        ASSERT_EQ(last, 199);
        ASSERT_EQ(total, 200);

        ASSERT_OK(cloudimg_parse_content_range("bytes 0-0/*", &first, &last, &total));
        ASSERT_EQ(total, 0);

        ASSERT_ERROR(cloudimg_parse_content_range("bytes 100-99/200", &first, &last, &total), EBADMSG);
        ASSERT_ERROR_MESSAGE(-EBADMSG, "invalid Content-Range 'bytes 100-99/200'");
        ASSERT_ERROR(cloudimg_parse_content_range("bytes 100-200/200", &first, &last, &total), EBADMSG);
        ASSERT_ERROR(cloudimg_parse_content_range("bytes */200", &first, &last, &total), EBADMSG);
        ASSERT_ERROR(cloudimg_parse_content_range("items 1-2/3", &first, &last, &total), EBADMSG);
        ASSERT_ERROR(cloudimg_parse_content_range("bytes 1-2/3 ", &first, &last, &total), EBADMSG);
        ASSERT_ERROR(cloudimg_parse_content_range("bytes 99999999999999999999-1/2", &first, &last, &total), EBADMSG);
        ASSERT_ERROR(cloudimg_parse_content_range(NULL, &first, &last, &total), EBADMSG);
        return 0;
}

TEST(pull_rejects_bad_arguments) {
        char dir[] = "/tmp/test-cloudimg-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        CloudImgOptions opts = { .checksum = "sha256:abc" };
        CloudImgVerification v;
        ImageRecord *rec = NULL;
        bool up_to_date;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, &s));

        ASSERT_ERROR(cloudimg_pull(s, "http://127.0.0.1/x.img", &opts, &rec, &v, &up_to_date), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid checksum 'sha256:abc': expected sha256: followed by "
                                      "64 lowercase hex digits");

        opts.checksum = NULL;
        ASSERT_ERROR(cloudimg_pull(s, "http://127.0.0.1/a b.img", &opts, &rec, &v, &up_to_date), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid URL 'http://127.0.0.1/a b.img': it contains a space "
                                      "or a control character");
        ASSERT_ERROR(cloudimg_pull(s, "ubuntu:24.04", &opts, &rec, &v, &up_to_date), EINVAL);
        ASSERT_TRUE(rec == NULL);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(config_cloud_image_max_size) {
        _cleanup_(config_done) Config c = {};

        ASSERT_OK(config_parse_ini(&c, "[Images]\nCloudImageMaxSize=30G\n", "test.conf"));
        ASSERT_EQ(c.cloud_image_max_size, UINT64_C(30) << 30);
        ASSERT_OK(config_parse_ini(&c, "[Images]\nCloudImageMaxSize=1048576\n", "test.conf"));
        ASSERT_EQ(c.cloud_image_max_size, 1048576);

        ASSERT_ERROR(config_parse_ini(&c, "[Images]\nCloudImageMaxSize=0\n", "test.conf"), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "invalid value '0' for CloudImageMaxSize in test.conf:2: "
                                      "expected a size above 0");
        ASSERT_ERROR(config_parse_ini(&c, "[Images]\nCloudImageMaxSize=lots\n", "test.conf"), EINVAL);
        ASSERT_ERROR_MESSAGE(-EINVAL, "CloudImageMaxSize in test.conf:2: invalid size 'lots': "
                                      "expected a number with an optional unit such as 512M or 10G");
        return 0;
}

DEFINE_TEST_MAIN
