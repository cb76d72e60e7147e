/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "digest.h"
#include "tests.h"

#define EMPTY_SHA256 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC_SHA256 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

TEST(digest_buffer_known_values) {
        _cleanup_free_ char *empty = NULL, *abc = NULL;

        ASSERT_OK(digest_buffer("", 0, &empty));
        ASSERT_STREQ(empty, EMPTY_SHA256);
        ASSERT_OK(digest_buffer("abc", 3, &abc));
        ASSERT_STREQ(abc, ABC_SHA256);
        return 0;
}

TEST(digest_streaming_equals_one_shot) {
        _cleanup_(digest_freep) Digest *d = NULL;
        _cleanup_free_ char *s = NULL, *again = NULL;

        ASSERT_OK(digest_new(&d));
        ASSERT_OK(digest_update(d, "a", 1));
        ASSERT_OK(digest_update(d, "", 0));
        ASSERT_OK(digest_update(d, "bc", 2));
        ASSERT_OK(digest_final(d, &s));
        ASSERT_STREQ(s, ABC_SHA256);
        ASSERT_ERROR(digest_update(d, "x", 1), ESTALE);
        ASSERT_ERROR(digest_final(d, &again), ESTALE);
        return 0;
}

TEST(digest_is_valid_cases) {
        ASSERT_TRUE(digest_is_valid(EMPTY_SHA256));
        ASSERT_TRUE(!digest_is_valid(NULL));
        ASSERT_TRUE(!digest_is_valid(""));
        ASSERT_TRUE(!digest_is_valid("sha256:"));
        ASSERT_TRUE(!digest_is_valid("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
        ASSERT_TRUE(!digest_is_valid(EMPTY_SHA256 "0"));
        ASSERT_TRUE(!digest_is_valid("SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        ASSERT_TRUE(!digest_is_valid("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        ASSERT_STREQ(digest_hex(EMPTY_SHA256), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        return 0;
}

TEST(digest_validate_reasons) {
        int r;

        ASSERT_OK(digest_validate(ABC_SHA256));

        r = digest_validate("sha256:xyz");
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid digest 'sha256:xyz': expected 'sha256:' followed by 64 lowercase hex digits");

        r = digest_validate("md5");
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid digest 'md5': expected 'sha256:' followed by 64 lowercase hex digits");

        r = digest_validate("sha512:abcd");
        ASSERT_ERROR(r, EPROTONOSUPPORT);
        ASSERT_ERROR_MESSAGE(r, "unsupported digest algorithm 'sha512' in 'sha512:abcd' (only sha256 is supported)");

        r = digest_validate("SHA512:abcd");
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid digest 'SHA512:abcd': expected 'sha256:' followed by 64 lowercase hex digits");
        return 0;
}

TEST(hex_helpers) {
        char out[7];

        hex_encode((const uint8_t *) "\x00\xab\xff", 3, out);
        ASSERT_STREQ(out, "00abff");
        ASSERT_TRUE(hex_is_lower("00abff", 6));
        ASSERT_TRUE(!hex_is_lower("00ABff", 6));
        ASSERT_TRUE(!hex_is_lower("00ab", 6));
        return 0;
}

DEFINE_TEST_MAIN
