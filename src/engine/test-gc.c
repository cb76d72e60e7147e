/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "fileio.h"
#include "gc.h"
#include "image-index.h"
#include "strv.h"
#include "tests.h"
#include "vm-store.h"

#define HEX_USED "1111111111111111111111111111111111111111111111111111111111111111"
#define HEX_FREE "2222222222222222222222222222222222222222222222222222222222222222"
#define HEX_BUSY "3333333333333333333333333333333333333333333333333333333333333333"
#define HEX_VM   "4444444444444444444444444444444444444444444444444444444444444444"

typedef struct Seen {
        char **removed;
        char **skipped;
} Seen;

static void on_item(void *userdata, GcItemKind kind, const char *what, uint64_t size,
                    GcOutcome outcome, int r) {
        Seen *s = userdata;
        _cleanup_free_ char *line = strjoin(gc_item_kind_to_string(kind), " ", what, NULL);

        if (outcome == GC_SKIPPED_IN_USE)
                strv_extend(&s->skipped, line);
        else if (outcome == GC_REMOVED || outcome == GC_WOULD_REMOVE)
                strv_extend(&s->removed, line);
}

static int touch(const Store *s, const char *rel) {
        _cleanup_free_ char *p = store_path(s, rel, NULL);

        return write_file_atomic(p, "x", 1, 0444);
}

static int make_old(const Store *s, const char *rel, time_t age) {
        _cleanup_free_ char *p = store_path(s, rel, NULL);
        struct timespec ts[2] = { { .tv_sec = time(NULL) - age }, { .tv_sec = time(NULL) - age } };

        return utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static bool exists(const Store *s, const char *rel) {
        _cleanup_free_ char *p = store_path(s, rel, NULL);

        return p && access(p, F_OK) == 0;
}

static int setup(char *dir, Store **ret) {
        _cleanup_(image_record_freep) ImageRecord *img = calloc(1, sizeof(ImageRecord));
        _cleanup_(vm_freep) Vm *vm = calloc(1, sizeof(Vm));
        Store *s;
        int r;

        if (!mkdtemp(dir) || store_open(dir, &s) < 0)
                return -EIO;

        img->type = IMAGE_OCI;
        img->name = strdup("127.0.0.1:5000/t/vm:latest");
        img->manifest_digest = strdup("sha256:" HEX_USED);
        img->layers = calloc(1, sizeof(ImageLayer));
        img->layers[0].digest = strdup("sha256:" HEX_USED);
        img->n_layers = 1;
        r = image_index_put(s, img);

        /* A created VM pins HEX_VM although no image names it any more. */
        vm->id = strdup("abcdef0123456789");
        vm->name = strdup("pinned");
        vm->state = VM_CREATED;
        vm->image = strdup("gone");
        vm->run_dir = strjoin(dir, "/run/abcdef0123456789", NULL);
        vm->image_blob_ids = calloc(1, sizeof(char *));
        strv_extend(&vm->image_blob_ids, HEX_VM);
        if (r >= 0)
                r = vm_store_reserve(s, vm);

        if (r >= 0)
                r = touch(s, "blobs/sha256/" HEX_USED ".erofs");
        if (r >= 0)
                r = touch(s, "blobs/sha256/" HEX_FREE ".erofs");
        if (r >= 0)
                r = touch(s, "blobs/sha256/" HEX_BUSY ".erofs");
        if (r >= 0)
                r = touch(s, "blobs/sha256/" HEX_VM ".erofs");
        if (r >= 0) {
                _cleanup_free_ char *boot = store_path(s, "boot", HEX_FREE, NULL);

                r = mkdir_p(boot, 0755);
        }
        if (r >= 0)
                r = touch(s, "boot/" HEX_FREE "/vmlinuz");
        *ret = s;
        return r;
}

TEST(gc_removes_unreferenced_and_skips_busy) {
        char dir[] = "/tmp/cocoon-gc-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_free_ char *old_tmp = NULL, *new_tmp = NULL;
        Seen seen = {};
        int busy = -1;

        ASSERT_OK(setup(dir, &s));
        ASSERT_OK(store_lock(s, "blobs/" HEX_BUSY, LOCK_SH, &busy));

        /* A killed atomic write leaves its temp file beside the records. */
        ASSERT_OK(touch(s, "images/oci/abc.json.tmp-XyZ123"));
        ASSERT_OK(make_old(s, "images/oci/abc.json.tmp-XyZ123", 7200));
        ASSERT_OK(touch(s, "images/oci/new.json.tmp-XyZ124"));

        ASSERT_OK(store_mkdtemp(s, "pull", &old_tmp));
        ASSERT_OK(store_mkdtemp(s, "pull", &new_tmp));
        ASSERT_OK(make_old(s, old_tmp + strlen(dir) + 1, 7200));

        ASSERT_EQ(gc_run(&(GcOptions) { .store = s, .run_dir = "/nonexistent", .report = on_item,
                                        .userdata = &seen }), 0);

        ASSERT_TRUE(strv_contains(seen.removed, "blob sha256:222222222222"));
        ASSERT_TRUE(strv_contains(seen.removed, "boot files sha256:222222222222"));
        ASSERT_TRUE(strv_contains(seen.skipped, "blob sha256:333333333333"));
        ASSERT_TRUE(!strv_contains(seen.removed, "blob sha256:111111111111"));
        ASSERT_TRUE(!strv_contains(seen.removed, "blob sha256:444444444444"));

        ASSERT_TRUE(exists(s, "blobs/sha256/" HEX_USED ".erofs"));
        ASSERT_TRUE(exists(s, "blobs/sha256/" HEX_VM ".erofs"));
        ASSERT_TRUE(exists(s, "blobs/sha256/" HEX_BUSY ".erofs"));
        ASSERT_TRUE(!exists(s, "blobs/sha256/" HEX_FREE ".erofs"));
        ASSERT_TRUE(!exists(s, "boot/" HEX_FREE));
        ASSERT_TRUE(access(old_tmp, F_OK) < 0);
        ASSERT_TRUE(!exists(s, "images/oci/abc.json.tmp-XyZ123"));
        ASSERT_TRUE(exists(s, "images/oci/new.json.tmp-XyZ124"));
        ASSERT_TRUE(access(new_tmp, F_OK) == 0);

        close(busy);
        strv_free(seen.removed);
        strv_free(seen.skipped);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(gc_dry_run_removes_nothing) {
        char dir[] = "/tmp/cocoon-gc-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        Seen seen = {};

        ASSERT_OK(setup(dir, &s));
        ASSERT_EQ(gc_run(&(GcOptions) { .store = s, .run_dir = "/nonexistent", .dry_run = true,
                                        .report = on_item, .userdata = &seen }), 0);
        ASSERT_TRUE(strv_contains(seen.removed, "blob sha256:222222222222"));
        ASSERT_TRUE(exists(s, "blobs/sha256/" HEX_FREE ".erofs"));
        strv_free(seen.removed);
        strv_free(seen.skipped);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(gc_removes_stuck_creating_vm) {
        char dir[] = "/tmp/cocoon-gc-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(vm_freep) Vm *vm = calloc(1, sizeof(Vm)), *fresh = calloc(1, sizeof(Vm));
        Seen seen = {};
        Vm *found = NULL;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, &s));
        vm->id = strdup("aaaa000000000001");
        vm->name = strdup("stuck");
        vm->state = VM_CREATING;
        vm->image = strdup("x");
        vm->run_dir = strjoin(dir, "/run/aaaa000000000001", NULL);
        ASSERT_OK(vm_store_reserve(s, vm));
        *fresh = (Vm) { .id = strdup("aaaa000000000002"), .name = strdup("young"), .state = VM_CREATING,
                        .image = strdup("x"), .run_dir = strjoin(dir, "/run/aaaa000000000002", NULL) };
        ASSERT_OK(vm_store_reserve(s, fresh));

        /* Two days later, both have been stuck for more than a day. */
        ASSERT_EQ(gc_run(&(GcOptions) { .store = s, .run_dir = "/nonexistent",
                                        .now_sec = time(NULL) + 2 * 86400 - 3600,
                                        .creating_max_age_sec = 86400 + 3000,
                                        .report = on_item, .userdata = &seen }), 0);
        ASSERT_TRUE(strv_contains(seen.removed, "unfinished VM stuck"));
        ASSERT_TRUE(vm_store_resolve(s, "stuck", &found) == -ENOENT);
        strv_free(seen.removed);
        strv_free(seen.skipped);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(gc_skips_creating_vm_being_built) {
        char dir[] = "/tmp/cocoon-gc-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(vm_freep) Vm *vm = calloc(1, sizeof(Vm));
        Seen seen = {};
        Vm *found = NULL;
        int lock = -1;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, &s));
        vm->id = strdup("bbbb000000000001");
        vm->name = strdup("building");
        vm->state = VM_CREATING;
        vm->image = strdup("x");
        vm->run_dir = strjoin(dir, "/run/bbbb000000000001", NULL);
        ASSERT_OK(vm_store_reserve(s, vm));
        ASSERT_OK(vm_store_lock(s, vm->id, LOCK_EX, &lock));

        ASSERT_EQ(gc_run(&(GcOptions) { .store = s, .run_dir = "/nonexistent",
                                        .now_sec = time(NULL) + 3 * 86400,
                                        .report = on_item, .userdata = &seen }), 0);
        ASSERT_TRUE(strv_contains(seen.skipped, "unfinished VM bbbb000000000001"));
        ASSERT_OK(vm_store_resolve(s, "building", &found));
        vm_free(found);
        close(lock);
        strv_free(seen.removed);
        strv_free(seen.skipped);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

DEFINE_TEST_MAIN
