/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "reference.h"
#include "tests.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int check_parse(const char *input, const char *registry, const char *repository, const char *tag,
                       const char *digest, const char *normalized, const char *api_host) {
        _cleanup_(reference_freep) Reference *ref = NULL;
        _cleanup_free_ char *s = NULL;

        ASSERT_OK(reference_parse(input, &ref));
        ASSERT_STREQ(ref->registry, registry);
        ASSERT_STREQ(ref->repository, repository);
        if (tag)
                ASSERT_STREQ(ref->tag, tag);
        else
                ASSERT_TRUE(!ref->tag);
        if (digest)
                ASSERT_STREQ(ref->digest, digest);
        else
                ASSERT_TRUE(!ref->digest);

        s = reference_to_string(ref);
        ASSERT_STREQ(s, normalized);
        ASSERT_STREQ(reference_api_host(ref), api_host);
        return 0;
}

#define CHECK_PARSE(...) ASSERT_TRUE(check_parse(__VA_ARGS__) == 0)

TEST(reference_docker_hub_short_forms) {
        CHECK_PARSE("ubuntu", "docker.io", "library/ubuntu", "latest", NULL,
                    "docker.io/library/ubuntu:latest", "registry-1.docker.io");
        CHECK_PARSE("ubuntu:24.04", "docker.io", "library/ubuntu", "24.04", NULL,
                    "docker.io/library/ubuntu:24.04", "registry-1.docker.io");
        CHECK_PARSE("docker.io/library/ubuntu:24.04", "docker.io", "library/ubuntu", "24.04", NULL,
                    "docker.io/library/ubuntu:24.04", "registry-1.docker.io");
        CHECK_PARSE("docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", NULL,
                    "docker.io/library/ubuntu:latest", "registry-1.docker.io");
        CHECK_PARSE("index.docker.io/cocoonstack/os:22.04", "docker.io", "cocoonstack/os", "22.04", NULL,
                    "docker.io/cocoonstack/os:22.04", "registry-1.docker.io");
        CHECK_PARSE("cocoonstack/cocoon/ubuntu", "docker.io", "cocoonstack/cocoon/ubuntu", "latest", NULL,
                    "docker.io/cocoonstack/cocoon/ubuntu:latest", "registry-1.docker.io");
        return 0;
}

TEST(reference_short_and_long_forms_equal) {
        _cleanup_(reference_freep) Reference *a = NULL, *b = NULL;
        _cleanup_free_ char *sa = NULL, *sb = NULL;

        ASSERT_OK(reference_parse("ubuntu:24.04", &a));
        ASSERT_OK(reference_parse("docker.io/library/ubuntu:24.04", &b));
        sa = reference_to_string(a);
        sb = reference_to_string(b);
        ASSERT_STREQ(sa, sb);
        return 0;
}

TEST(reference_registries) {
        CHECK_PARSE("localhost:5000/a/b@sha256:" HEX64, "localhost:5000", "a/b", NULL, "sha256:" HEX64,
                    "localhost:5000/a/b@sha256:" HEX64, "localhost:5000");
        CHECK_PARSE("127.0.0.1:5000/x:tag", "127.0.0.1:5000", "x", "tag", NULL,
                    "127.0.0.1:5000/x:tag", "127.0.0.1:5000");
        CHECK_PARSE("localhost/x", "localhost", "x", "latest", NULL, "localhost/x:latest", "localhost");
        CHECK_PARSE("ghcr.io/cocoonstack/cocoon/ubuntu:24.04", "ghcr.io", "cocoonstack/cocoon/ubuntu", "24.04", NULL,
                    "ghcr.io/cocoonstack/cocoon/ubuntu:24.04", "ghcr.io");
        CHECK_PARSE("[::1]:5000/e2e/vm:v1", "[::1]:5000", "e2e/vm", "v1", NULL, "[::1]:5000/e2e/vm:v1", "[::1]:5000");
        CHECK_PARSE("Registry.Example.COM/x", "Registry.Example.COM", "x", "latest", NULL,
                    "Registry.Example.COM/x:latest", "Registry.Example.COM");
        return 0;
}

TEST(reference_tag_and_digest) {
        CHECK_PARSE("ubuntu:24.04@sha256:" HEX64, "docker.io", "library/ubuntu", "24.04", "sha256:" HEX64,
                    "docker.io/library/ubuntu:24.04@sha256:" HEX64, "registry-1.docker.io");
        CHECK_PARSE("ubuntu@sha256:" HEX64, "docker.io", "library/ubuntu", NULL, "sha256:" HEX64,
                    "docker.io/library/ubuntu@sha256:" HEX64, "registry-1.docker.io");
        return 0;
}

TEST(reference_repository_separators) {
        CHECK_PARSE("a.b/c__d-e.f---g_h:T_1.x-", "a.b", "c__d-e.f---g_h", "T_1.x-", NULL,
                    "a.b/c__d-e.f---g_h:T_1.x-", "a.b");
        CHECK_PARSE("x:_tag", "docker.io", "library/x", "_tag", NULL, "docker.io/library/x:_tag", "registry-1.docker.io");
        return 0;
}

static int check_error(const char *input, int err, const char *reason) {
        Reference *ref = NULL;
        int r;

        r = reference_parse(input, &ref);
        ASSERT_ERROR(r, err);
        ASSERT_ERROR_MESSAGE(r, reason);
        ASSERT_TRUE(!ref);
        return 0;
}

#define CHECK_ERROR(...) ASSERT_TRUE(check_error(__VA_ARGS__) == 0)

TEST(reference_invalid) {
        char long_tag[200], long_name[300], reason[1024];

        CHECK_ERROR("", EINVAL, "invalid image reference '': empty string");
        CHECK_ERROR("ubuntu:24.04 ", EINVAL,
                    "invalid image reference 'ubuntu:24.04 ': contains whitespace or a non-ASCII character");
        CHECK_ERROR("Ubuntu", EINVAL, "invalid image reference 'Ubuntu': repository name must be lowercase");
        CHECK_ERROR("a//b", EINVAL, "invalid image reference 'a//b': empty path component in the repository name");
        CHECK_ERROR("ubuntu/", EINVAL, "invalid image reference 'ubuntu/': empty path component in the repository name");
        CHECK_ERROR("-ubuntu", EINVAL,
                    "invalid image reference '-ubuntu': invalid repository path component '-ubuntu' "
                    "(expected lowercase letters and digits, joined by '.', '_', '__' or '-')");
        CHECK_ERROR("a___b", EINVAL,
                    "invalid image reference 'a___b': invalid repository path component 'a___b' "
                    "(expected lowercase letters and digits, joined by '.', '_', '__' or '-')");
        CHECK_ERROR("a..b", EINVAL,
                    "invalid image reference 'a..b': invalid repository path component 'a..b' "
                    "(expected lowercase letters and digits, joined by '.', '_', '__' or '-')");
        CHECK_ERROR("ubuntu.", EINVAL,
                    "invalid image reference 'ubuntu.': invalid repository path component 'ubuntu.' "
                    "(expected lowercase letters and digits, joined by '.', '_', '__' or '-')");
        CHECK_ERROR("ubuntu:", EINVAL, "invalid image reference 'ubuntu:': empty tag after ':'");
        CHECK_ERROR("ubuntu:-x", EINVAL,
                    "invalid image reference 'ubuntu:-x': invalid tag '-x' (expected letters, digits, "
                    "'_', '.' or '-', not starting with '.' or '-')");
        CHECK_ERROR("ubuntu:a:b", EINVAL,
                    "invalid image reference 'ubuntu:a:b': invalid tag 'a:b' (expected letters, digits, "
                    "'_', '.' or '-', not starting with '.' or '-')");
        CHECK_ERROR("ubuntu@", EINVAL, "invalid image reference 'ubuntu@': empty digest after '@'");
        CHECK_ERROR("ubuntu@sha256:abc", EINVAL,
                    "invalid image reference 'ubuntu@sha256:abc': invalid digest 'sha256:abc': "
                    "expected 'sha256:' followed by 64 lowercase hex digits");
        CHECK_ERROR("ubuntu@sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", EINVAL,
                    "invalid image reference 'ubuntu@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef"
                    "0123456789abcdef': invalid digest 'sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef"
                    "0123456789abcdef': expected 'sha256:' followed by 64 lowercase hex digits");
        CHECK_ERROR("ubuntu@sha512:abcd", EPROTONOSUPPORT,
                    "invalid image reference 'ubuntu@sha512:abcd': unsupported digest algorithm 'sha512' in "
                    "'sha512:abcd' (only sha256 is supported)");
        CHECK_ERROR("foo_bar.com/x", EINVAL, "invalid image reference 'foo_bar.com/x': invalid registry 'foo_bar.com'");
        CHECK_ERROR("localhost:99999/x", EINVAL,
                    "invalid image reference 'localhost:99999/x': invalid registry 'localhost:99999'");
        CHECK_ERROR("localhost:/x", EINVAL, "invalid image reference 'localhost:/x': invalid registry 'localhost:'");
        CHECK_ERROR("-a.com/x", EINVAL, "invalid image reference '-a.com/x': invalid registry '-a.com'");
        CHECK_ERROR("a..com/x", EINVAL, "invalid image reference 'a..com/x': invalid registry 'a..com'");
        CHECK_ERROR("[zz]:5000/x", EINVAL, "invalid image reference '[zz]:5000/x': invalid registry '[zz]:5000'");
        CHECK_ERROR("_x", EINVAL,
                    "invalid image reference '_x': invalid repository path component '_x' "
                    "(expected lowercase letters and digits, joined by '.', '_', '__' or '-')");
        CHECK_ERROR("/x", EINVAL, "invalid image reference '/x': empty path component in the repository name");

        memset(long_tag, 'a', 129);
        long_tag[129] = '\0';
        snprintf(long_name, sizeof(long_name), "x:%s", long_tag);
        snprintf(reason, sizeof(reason), "invalid image reference '%s': tag is 129 characters, over the limit of 128",
                 long_name);
        CHECK_ERROR(long_name, EINVAL, reason);

        memset(long_tag, 'a', 128);
        long_tag[128] = '\0';
        snprintf(long_name, sizeof(long_name), "x:%s", long_tag);
        snprintf(reason, sizeof(reason), "docker.io/library/x:%s", long_tag);
        CHECK_PARSE(long_name, "docker.io", "library/x", long_tag, NULL, reason, "registry-1.docker.io");

        memset(long_name, 'a', 255);
        memcpy(long_name, "a.io/", 5);
        long_name[255] = '\0';
        snprintf(reason, sizeof(reason), "%s:latest", long_name);
        CHECK_PARSE(long_name, "a.io", long_name + 5, "latest", NULL, reason, "a.io");

        memset(long_name, 'a', 256);
        memcpy(long_name, "a.io/", 5);
        long_name[256] = '\0';
        snprintf(reason, sizeof(reason), "invalid image reference '%s': name is 256 characters, over the limit of 255",
                 long_name);
        CHECK_ERROR(long_name, EINVAL, reason);
        return 0;
}

DEFINE_TEST_MAIN
