/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manifest.h"
#include "tests.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D4 "sha256:4444444444444444444444444444444444444444444444444444444444444444"

#define CONFIG(type) "\"config\":{\"mediaType\":\"" type "\",\"digest\":\"" D1 "\",\"size\":7023}"
#define LAYER(type, digest, size) "{\"mediaType\":\"" type "\",\"digest\":\"" digest "\",\"size\":" #size "}"

static const char oci_manifest[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_MANIFEST "\","
        CONFIG("application/vnd.oci.image.config.v1+json") ","
        "\"layers\":[" LAYER(MEDIA_TYPE_OCI_LAYER_GZIP, D2, 32654) "," LAYER(MEDIA_TYPE_OCI_LAYER_ZSTD, D3, 16724) ","
        LAYER(MEDIA_TYPE_OCI_LAYER_TAR, D4, 0) "]}";

static const char docker_manifest[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_DOCKER_MANIFEST "\","
        CONFIG("application/vnd.docker.container.image.v1+json") ","
        "\"layers\":[" LAYER(MEDIA_TYPE_DOCKER_LAYER_GZIP, D2, 1) "]}";

#define PLATFORM_ENTRY(type, digest, platform) \
        "{\"mediaType\":\"" type "\",\"digest\":\"" digest "\",\"size\":500,\"platform\":" platform "}"

static const char oci_index[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_INDEX "\",\"manifests\":["
        PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D1, "{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}") ","
        PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D2, "{\"architecture\":\"arm64\",\"os\":\"linux\"}") ","
        PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D3, "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}") ","
        PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D4, "{\"architecture\":\"unknown\",\"os\":\"unknown\"}")
        "]}";

static const char docker_list[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_DOCKER_MANIFEST_LIST "\",\"manifests\":["
        PLATFORM_ENTRY(MEDIA_TYPE_DOCKER_MANIFEST, D1, "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v9\"}") ","
        PLATFORM_ENTRY(MEDIA_TYPE_DOCKER_MANIFEST, D2, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"variant\":\"v3\"}") ","
        PLATFORM_ENTRY(MEDIA_TYPE_DOCKER_MANIFEST, D3, "{\"architecture\":\"amd64\",\"os\":\"linux\"}") ","
        PLATFORM_ENTRY(MEDIA_TYPE_DOCKER_MANIFEST, D4, "{\"architecture\":\"amd64\",\"os\":\"windows\"}")
        "]}";

static int parse(const char *json, const char *content_type, Manifest **ret) {
        return manifest_parse(json, strlen(json), content_type, NULL, ret);
}

TEST(manifest_oci) {
        _cleanup_(manifest_freep) Manifest *m = NULL;

        ASSERT_OK(parse(oci_manifest, MEDIA_TYPE_OCI_MANIFEST, &m));
        ASSERT_TRUE(!m->is_index);
        ASSERT_STREQ(m->media_type, MEDIA_TYPE_OCI_MANIFEST);
        ASSERT_STREQ(m->config.digest, D1);
        ASSERT_EQ(m->config.size, 7023);
        ASSERT_EQ(m->n_layers, 3);
        ASSERT_STREQ(m->layers[0].digest, D2);
        ASSERT_EQ(m->layers[0].size, 32654);
        ASSERT_EQ(m->layers[0].compression, LAYER_COMPRESSION_GZIP);
        ASSERT_EQ(m->layers[1].compression, LAYER_COMPRESSION_ZSTD);
        ASSERT_EQ(m->layers[2].compression, LAYER_COMPRESSION_NONE);
        ASSERT_EQ(m->layers[2].size, 0);
        return 0;
}

TEST(manifest_docker_with_content_type_parameters) {
        _cleanup_(manifest_freep) Manifest *m = NULL;

        ASSERT_OK(parse(docker_manifest, "Application/VND.docker.distribution.manifest.v2+json; charset=utf-8", &m));
        ASSERT_STREQ(m->media_type, MEDIA_TYPE_DOCKER_MANIFEST);
        ASSERT_EQ(m->n_layers, 1);
        ASSERT_EQ(m->layers[0].compression, LAYER_COMPRESSION_GZIP);
        return 0;
}

TEST(manifest_media_type_sources) {
        _cleanup_(manifest_freep) Manifest *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        static const char no_type_index[] = "{\"schemaVersion\":2,\"manifests\":[]}";
        static const char no_type_manifest[] =
                "{\"schemaVersion\":2," CONFIG("x") ",\"layers\":[" LAYER(MEDIA_TYPE_OCI_LAYER_TAR, D2, 3) "]}";

        /* The body's mediaType when the header says nothing specific. */
        ASSERT_OK(parse(docker_manifest, "application/json", &a));
        ASSERT_STREQ(a->media_type, MEDIA_TYPE_DOCKER_MANIFEST);

        /* The Content-Type when the body has no mediaType. */
        ASSERT_OK(parse(no_type_index, MEDIA_TYPE_DOCKER_MANIFEST_LIST, &b));
        ASSERT_TRUE(b->is_index);
        ASSERT_STREQ(b->media_type, MEDIA_TYPE_DOCKER_MANIFEST_LIST);

        /* Neither: the members decide. */
        ASSERT_OK(parse(no_type_index, NULL, &c));
        ASSERT_STREQ(c->media_type, MEDIA_TYPE_OCI_INDEX);
        ASSERT_OK(parse(no_type_manifest, NULL, &d));
        ASSERT_STREQ(d->media_type, MEDIA_TYPE_OCI_MANIFEST);
        return 0;
}

TEST(manifest_index_select) {
        _cleanup_(manifest_freep) Manifest *oci = NULL, *docker = NULL;
        const Descriptor *d;
        int r;

        ASSERT_OK(parse(oci_index, NULL, &oci));
        ASSERT_TRUE(oci->is_index);
        ASSERT_EQ(oci->n_manifests, 4);
        ASSERT_STREQ(oci->manifests[0].variant, "v7");

        /* An explicit v8 beats an arm64 entry without a variant. */
        ASSERT_OK(manifest_select_platform(oci, "linux", "arm64", &d));
        ASSERT_STREQ(d->digest, D3);

        r = manifest_select_platform(oci, "linux", "amd64", &d);
        ASSERT_ERROR(r, ENOENT);
        ASSERT_ERROR_MESSAGE(r, "no manifest for linux/amd64 in index (available: linux/arm/v7, linux/arm64, linux/arm64/v8)");

        ASSERT_OK(parse(docker_list, NULL, &docker));
        ASSERT_OK(manifest_select_platform(docker, "linux", "amd64", &d));
        ASSERT_STREQ(d->digest, D3);
        ASSERT_OK(manifest_select_platform(docker, "linux", "arm64", &d));
        ASSERT_STREQ(d->digest, D1);

        r = manifest_select_platform(docker, "linux", "riscv64", &d);
        ASSERT_ERROR(r, ENOENT);
        ASSERT_ERROR_MESSAGE(r, "no manifest for linux/riscv64 in index (available: linux/arm64/v9, linux/amd64/v3, "
                             "linux/amd64, windows/amd64)");
        return 0;
}

TEST(manifest_select_arm64_v8) {
        _cleanup_(manifest_freep) Manifest *m = NULL, *empty = NULL;
        static const char index[] =
                "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_INDEX "\",\"manifests\":["
                PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D1, "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v9\"}") ","
                PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D2, "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}")
                "]}";
        const Descriptor *d;
        int r;

        ASSERT_OK(parse(index, NULL, &m));
        ASSERT_OK(manifest_select_platform(m, "linux", "arm64", &d));
        ASSERT_STREQ(d->digest, D2);

        ASSERT_OK(parse("{\"schemaVersion\":2,\"manifests\":[]}", NULL, &empty));
        r = manifest_select_platform(empty, "linux", "amd64", &d);
        ASSERT_ERROR(r, ENOENT);
        ASSERT_ERROR_MESSAGE(r, "no manifest for linux/amd64 in index (available: none)");
        return 0;
}

TEST(manifest_host_architecture_known) {
#if defined(__x86_64__)
        ASSERT_STREQ(manifest_host_architecture(), "amd64");
#elif defined(__aarch64__)
        ASSERT_STREQ(manifest_host_architecture(), "arm64");
#else
        ASSERT_TRUE(manifest_host_architecture());
#endif
        return 0;
}

static int check_error(const char *json, const char *content_type, const ManifestLimits *limits, int err,
                       const char *reason) {
        Manifest *m = NULL;
        int r;

        r = manifest_parse(json, strlen(json), content_type, limits, &m);
        ASSERT_ERROR(r, err);
        ASSERT_ERROR_MESSAGE(r, reason);
        ASSERT_TRUE(!m);
        return 0;
}

#define CHECK_ERROR(...) ASSERT_TRUE(check_error(__VA_ARGS__) == 0)

#define WITH_LAYER(layer) \
        "{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_MANIFEST "\"," CONFIG("c") ",\"layers\":[" layer "]}"

TEST(manifest_invalid_document) {
        CHECK_ERROR("{", NULL, NULL, EBADMSG, "invalid manifest JSON: string or '}' expected near end of file (line 1, column 1)");
        CHECK_ERROR("[]", NULL, NULL, EBADMSG, "invalid manifest: top level is not a JSON object");
        CHECK_ERROR("{}", NULL, NULL, EBADMSG, "invalid manifest: missing or invalid \"schemaVersion\"");
        CHECK_ERROR("{\"schemaVersion\":\"2\"}", NULL, NULL, EBADMSG, "invalid manifest: missing or invalid \"schemaVersion\"");
        CHECK_ERROR("{\"schemaVersion\":1,\"name\":\"x\"}", NULL, NULL, EPROTONOSUPPORT,
                    "unsupported manifest schema version 1 (only version 2 is supported)");
        CHECK_ERROR("{\"schemaVersion\":2}", NULL, NULL, EBADMSG,
                    "invalid manifest: no media type in Content-Type or \"mediaType\"");
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":7}", NULL, NULL, EBADMSG,
                    "invalid manifest: \"mediaType\" is not a string");
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.artifact.manifest.v1+json\"}", NULL, NULL,
                    EPROTONOSUPPORT, "unsupported manifest media type 'application/vnd.oci.artifact.manifest.v1+json'");
        CHECK_ERROR(docker_manifest, "application/vnd.docker.distribution.manifest.v1+prettyjws", NULL, EBADMSG,
                    "manifest media type '" MEDIA_TYPE_DOCKER_MANIFEST "' does not match Content-Type "
                    "'application/vnd.docker.distribution.manifest.v1+prettyjws'");
        CHECK_ERROR("{\"schemaVersion\":2,\"layers\":[]}", "application/vnd.docker.distribution.manifest.v1+prettyjws", NULL,
                    EPROTONOSUPPORT, "unsupported manifest media type 'application/vnd.docker.distribution.manifest.v1+prettyjws'");
        CHECK_ERROR("{\"schemaVersion\":2,\"schemaVersion\":2}", NULL, NULL, EBADMSG,
                    "invalid manifest JSON: duplicate object key near '\"schemaVersion\"' (line 1, column 34)");
        return 0;
}

TEST(manifest_invalid_index) {
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_INDEX "\"}", NULL, NULL, EBADMSG,
                    "invalid index: missing \"manifests\" array");
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_INDEX "\",\"manifests\":[1]}", NULL, NULL,
                    EBADMSG, "invalid index: manifests[0] is not an object");
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_INDEX "\",\"manifests\":["
                    PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D1, "\"linux\"") "]}", NULL, NULL,
                    EBADMSG, "invalid index: manifests[0]: \"platform\" is not an object");
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_INDEX "\",\"manifests\":["
                    PLATFORM_ENTRY(MEDIA_TYPE_OCI_MANIFEST, D1, "{\"os\":5}") "]}", NULL, NULL,
                    EBADMSG, "invalid index: manifests[0]: \"os\" is not a string");
        return 0;
}

TEST(manifest_invalid_descriptors) {
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_MANIFEST "\",\"layers\":[]}", NULL, NULL,
                    EBADMSG, "invalid manifest: missing \"config\"");
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_MANIFEST "\"," CONFIG("c") "}", NULL, NULL,
                    EBADMSG, "invalid manifest: missing \"layers\" array");
        CHECK_ERROR(WITH_LAYER(""), NULL, NULL, EBADMSG, "invalid manifest: no layers");
        CHECK_ERROR(WITH_LAYER("{\"digest\":\"" D2 "\",\"size\":1}"), NULL, NULL, EBADMSG,
                    "invalid manifest: layers[0]: missing \"mediaType\"");
        CHECK_ERROR(WITH_LAYER("{\"mediaType\":\"" MEDIA_TYPE_OCI_LAYER_TAR "\",\"size\":1}"), NULL, NULL, EBADMSG,
                    "invalid manifest: layers[0]: missing \"digest\"");
        CHECK_ERROR(WITH_LAYER(LAYER(MEDIA_TYPE_OCI_LAYER_TAR, D2, 1) "," LAYER(MEDIA_TYPE_OCI_LAYER_TAR, "sha256:abc", 1)),
                    NULL, NULL, EINVAL,
                    "invalid manifest: layers[1]: invalid digest 'sha256:abc': expected 'sha256:' followed by 64 lowercase hex digits");
        CHECK_ERROR(WITH_LAYER(LAYER(MEDIA_TYPE_OCI_LAYER_TAR, "sha512:abcd", 1)), NULL, NULL, EPROTONOSUPPORT,
                    "invalid manifest: layers[0]: unsupported digest algorithm 'sha512' in 'sha512:abcd' "
                    "(only sha256 is supported)");
        CHECK_ERROR(WITH_LAYER(LAYER(MEDIA_TYPE_OCI_LAYER_TAR, D2, -1)), NULL, NULL, EBADMSG,
                    "invalid manifest: layers[0]: missing or invalid \"size\"");
        CHECK_ERROR(WITH_LAYER(LAYER(MEDIA_TYPE_OCI_LAYER_TAR, D2, "1")), NULL, NULL, EBADMSG,
                    "invalid manifest: layers[0]: missing or invalid \"size\"");
        CHECK_ERROR(WITH_LAYER("{\"mediaType\":\"" MEDIA_TYPE_OCI_LAYER_TAR "\",\"digest\":\"" D2 "\"}"), NULL, NULL, EBADMSG,
                    "invalid manifest: layers[0]: missing or invalid \"size\"");
        CHECK_ERROR(WITH_LAYER(LAYER("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", D2, 1)), NULL, NULL,
                    EPROTONOSUPPORT, "unsupported layer media type "
                    "'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip' in layers[0]");
        CHECK_ERROR("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_MANIFEST "\",\"config\":{\"mediaType\":\"c\","
                    "\"digest\":\"" D1 "\",\"size\":1.5},\"layers\":[]}", NULL, NULL, EBADMSG,
                    "invalid manifest: config: missing or invalid \"size\"");
        return 0;
}

TEST(manifest_limits) {
        ManifestLimits small = { .max_size = 100 }, few = { .max_layers = 2 };
        _cleanup_free_ char *big = NULL;
        _cleanup_(manifest_freep) Manifest *m = NULL;
        char reason[128];
        size_t n = 4 * 1024 * 1024 + 1;

        snprintf(reason, sizeof(reason), "manifest is %zu bytes, over the limit of 100", strlen(oci_manifest));
        CHECK_ERROR(oci_manifest, NULL, &small, EFBIG, reason);
        CHECK_ERROR(oci_manifest, NULL, &few, E2BIG, "manifest has 3 layers, over the limit of 2");

        big = malloc(n);
        ASSERT_TRUE(big);
        memset(big, ' ', n);
        ASSERT_ERROR(manifest_parse(big, n, NULL, NULL, &m), EFBIG);
        ASSERT_ERROR_MESSAGE(-EFBIG, "manifest is 4194305 bytes, over the limit of 4194304");
        /* A body exactly at the limit passes the size check and fails only as JSON. */
        ASSERT_ERROR(manifest_parse(big, n - 1, NULL, NULL, &m), EBADMSG);
        return 0;
}

TEST(manifest_layer_limit_default) {
        _cleanup_free_ char *json = NULL;
        size_t length;
        FILE *f;

        f = open_memstream(&json, &length);
        ASSERT_TRUE(f);
        fputs("{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_TYPE_OCI_MANIFEST "\"," CONFIG("c") ",\"layers\":[", f);
        for (int i = 0; i < 129; i++)
                fprintf(f, "%s" LAYER(MEDIA_TYPE_OCI_LAYER_GZIP, D2, 1), i ? "," : "");
        fputs("]}", f);
        ASSERT_TRUE(fclose(f) == 0);

        CHECK_ERROR(json, NULL, NULL, E2BIG, "manifest has 129 layers, over the limit of 128");
        return 0;
}

DEFINE_TEST_MAIN
