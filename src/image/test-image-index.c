/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/stat.h>

#include "fileio.h"
#include "image-index.h"
#include "strv.h"
#include "tests.h"

#define DIGEST_A "sha256:aaaa000000000000000000000000000000000000000000000000000000000001"
#define DIGEST_B "sha256:aaaab00000000000000000000000000000000000000000000000000000000002"
#define LAYER_0 "sha256:1111111111111111111111111111111111111111111111111111111111111111"

static ImageRecord *make_record(const char *name, const char *digest) {
        ImageRecord *r = calloc(1, sizeof(ImageRecord));

        r->type = IMAGE_OCI;
        r->name = strdup(name);
        r->manifest_digest = strdup(digest);
        r->kernel_layer = strdup(LAYER_0);
        r->initrd_layer = strdup(LAYER_0);
        r->created_at = strdup("2026-12-04T20:00:00.000000000Z");
        r->size = 1234;
        r->layers = calloc(1, sizeof(ImageLayer));
        r->layers[0].digest = strdup(LAYER_0);
        r->layers[0].media_type = strdup("application/vnd.oci.image.layer.v1.tar+gzip");
        r->layers[0].size = 99;
        r->n_layers = 1;
        return r;
}

TEST(record_json_roundtrip) {
        _cleanup_(image_record_freep) ImageRecord *r = make_record("docker.io/library/ubuntu:24.04", DIGEST_A);
        _cleanup_(image_record_freep) ImageRecord *back = NULL;
        json_t *j = image_record_to_json(r);

        ASSERT_TRUE(j);
        ASSERT_STREQ(json_string_value(json_object_get(j, "ref")), "docker.io/library/ubuntu:24.04");
        ASSERT_OK(image_record_from_json(j, &back));
        json_decref(j);
        ASSERT_STREQ(back->name, r->name);
        ASSERT_EQ(back->type, IMAGE_OCI);
        ASSERT_STREQ(back->manifest_digest, DIGEST_A);
        ASSERT_EQ(back->n_layers, 1);
        ASSERT_STREQ(back->layers[0].digest, LAYER_0);
        ASSERT_EQ(back->layers[0].size, 99);
        ASSERT_EQ(back->size, 1234);
        return 0;
}

TEST(record_from_bad_json) {
        ImageRecord *r = NULL;
        json_t *j;
        int q;

        j = json_pack("{s:s}", "type", "oci");
        q = image_record_from_json(j, &r);
        json_decref(j);
        ASSERT_ERROR_MESSAGE(q, "image record lacks the field 'name'");

        j = json_pack("{s:s, s:s}", "name", "x", "type", "floppy");
        q = image_record_from_json(j, &r);
        json_decref(j);
        ASSERT_ERROR_MESSAGE(q, "image record has an unknown type 'floppy'");

        j = json_pack("{s:s, s:s}", "name", "x", "type", "oci");
        q = image_record_from_json(j, &r);
        json_decref(j);
        ASSERT_ERROR_MESSAGE(q, "OCI image record 'x' lacks its manifest digest or layers");
        ASSERT_TRUE(!r);
        return 0;
}

TEST(index_put_list_find_remove) {
        char dir[] = "/tmp/cocoon-index-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(image_record_freep) ImageRecord *a = make_record("docker.io/library/ubuntu:24.04", DIGEST_A);
        _cleanup_(image_record_freep) ImageRecord *b = make_record("127.0.0.1:5000/team/vm:latest", DIGEST_B);
        ImageRecord **l = NULL, *c = NULL;
        size_t n = 0, skipped = 0;
        int q;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, &s));
        ASSERT_OK(image_index_put(s, a));
        ASSERT_OK(image_index_put(s, b));

        ASSERT_OK(image_index_list(s, &l, &n, &skipped));
        ASSERT_EQ(n, 2);
        ASSERT_EQ(skipped, 0);
        ASSERT_STREQ(l[0]->name, "127.0.0.1:5000/team/vm:latest");  /* sorted by name */
        ASSERT_STREQ(l[1]->name, "docker.io/library/ubuntu:24.04");
        image_record_array_free(l, n);

        /* The short spelling names the same image. */
        ASSERT_OK(image_index_find(s, "ubuntu:24.04", &l, &n));
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(l[0]->name, "docker.io/library/ubuntu:24.04");
        image_record_array_free(l, n);

        ASSERT_OK(image_index_find(s, "aaaa0000", &l, &n));
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(l[0]->manifest_digest, DIGEST_A);
        image_record_array_free(l, n);

        ASSERT_OK(image_index_find(s, DIGEST_B, &l, &n));
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(l[0]->name, "127.0.0.1:5000/team/vm:latest");
        image_record_array_free(l, n);

        q = image_index_find(s, "aaa", &l, &n);
        ASSERT_ERROR(q, ENOENT);   /* under 4 digits is no prefix */

        q = image_index_find(s, "sha256:aaaa", &l, &n);
        ASSERT_ERROR(q, ENOTUNIQ);
        ASSERT_ERROR_MESSAGE(q, "'sha256:aaaa' matches several image ids; give more digits");

        q = image_index_find(s, "nothing:here", &l, &n);
        ASSERT_ERROR(q, ENOENT);
        ASSERT_ERROR_MESSAGE(q, "image not found");

        ASSERT_OK(image_index_remove(s, a));
        ASSERT_ERROR(image_index_get(s, IMAGE_OCI, a->name, &c), ENOENT);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(list_skips_corrupt_record) {
        char dir[] = "/tmp/cocoon-index-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(image_record_freep) ImageRecord *a = make_record("docker.io/library/ubuntu:24.04", DIGEST_A);
        _cleanup_free_ char *bad = NULL;
        ImageRecord **l = NULL;
        size_t n = 0, skipped = 0;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, &s));
        ASSERT_OK(image_index_put(s, a));
        bad = store_path(s, "images", "oci", "zz.json", NULL);
        ASSERT_OK(write_file_atomic(bad, "not json", 8, 0644));
        ASSERT_OK(image_index_list(s, &l, &n, &skipped));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(skipped, 1);
        image_record_array_free(l, n);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

DEFINE_TEST_MAIN
