/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fileio.h"
#include "store.h"
#include "strv.h"
#include "tests.h"

static int make_store(char *dir, Store **ret) {
        if (!mkdtemp(dir))
                return -errno;
        return store_open(dir, ret);
}

TEST(open_creates_layout) {
        char dir[] = "/tmp/cocoon-store-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        const char *subdirs[] = { "images/oci", "images/cloud", "blobs/sha256", "boot", "tmp", "locks" };
        struct stat st;

        ASSERT_OK(make_store(dir, &s));
        for (size_t i = 0; i < ELEMENTSOF(subdirs); i++) {
                _cleanup_free_ char *p = store_path(s, subdirs[i], NULL);

                ASSERT_OK(stat(p, &st));
                ASSERT_TRUE(S_ISDIR(st.st_mode));
        }
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(open_rejects_relative_root) {
        Store *s = NULL;
        int r = store_open("var/lib/cocoon", &s);

        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "root directory 'var/lib/cocoon' is not an absolute path");
        ASSERT_TRUE(!s);
        return 0;
}

TEST(json_roundtrip_and_corrupt_record) {
        char dir[] = "/tmp/cocoon-store-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_free_ char *path = NULL, *bad = NULL;
        json_t *j, *back = NULL;
        int r;

        ASSERT_OK(make_store(dir, &s));
        path = store_path(s, "images", "oci", "x.json", NULL);
        j = json_pack("{s:s, s:i}", "name", "x", "size", 42);
        ASSERT_OK(store_write_json(path, j));
        json_decref(j);
        ASSERT_OK(store_read_json(path, &back));
        ASSERT_EQ(json_integer_value(json_object_get(back, "size")), 42);
        json_decref(back);

        bad = store_path(s, "images", "oci", "bad.json", NULL);
        ASSERT_OK(write_file_atomic(bad, "{\"name\":", 8, 0644));
        r = store_read_json(bad, &back);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_TRUE(strstr(error_message(r), "is not valid JSON"));
        ASSERT_ERROR(store_read_json("/nonexistent/x.json", &back), ENOENT);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(lock_excludes_and_shares) {
        char dir[] = "/tmp/cocoon-store-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        int a = -1, b = -1, c = -1;

        ASSERT_OK(make_store(dir, &s));
        ASSERT_OK(store_lock(s, "blobs/abc", LOCK_SH, &a));
        ASSERT_OK(store_lock(s, "blobs/abc", LOCK_SH | LOCK_NB, &b));
        ASSERT_ERROR(store_lock(s, "blobs/abc", LOCK_EX | LOCK_NB, &c), EWOULDBLOCK);
        close(a);
        close(b);
        ASSERT_OK(store_lock(s, "blobs/abc", LOCK_EX | LOCK_NB, &c));
        ASSERT_ERROR(store_lock(s, "blobs/abc", LOCK_SH | LOCK_NB, &a), EWOULDBLOCK);
        close(c);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

/* A waiter blocked on a lock file that its holder unlinks must end up holding the lock on the
 * file now at the path, not on the orphaned inode. */
TEST(lock_survives_unlink_by_holder) {
        char dir[] = "/tmp/cocoon-store-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_free_ char *path = NULL;
        int holder = -1, other = -1, status;
        pid_t pid;

        ASSERT_OK(make_store(dir, &s));
        path = store_path(s, "locks", "gc-test.lock", NULL);
        ASSERT_OK(store_lock(s, "gc-test", LOCK_EX, &holder));

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                int fd = -1;

                /* The inherited descriptor shares the parent's lock; drop it, or we would wait
                 * for ourselves. Then block until the parent unlinks and unlocks. */
                close(holder);
                if (store_lock(s, "gc-test", LOCK_EX, &fd) < 0)
                        _exit(1);
                sleep(1);
                _exit(0);
        }

        usleep(200 * 1000);
        ASSERT_OK(unlink(path));
        close(holder);

        /* The child now holds the lock on the new file, so we cannot take it. */
        usleep(300 * 1000);
        ASSERT_ERROR(store_lock(s, "gc-test", LOCK_EX | LOCK_NB, &other), EWOULDBLOCK);

        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_OK(store_lock(s, "gc-test", LOCK_EX | LOCK_NB, &other));
        close(other);
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(mkdtemp_under_tmp) {
        char dir[] = "/tmp/cocoon-store-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_free_ char *work = NULL, *prefix = NULL;
        struct stat st;

        ASSERT_OK(make_store(dir, &s));
        ASSERT_OK(store_mkdtemp(s, "pull", &work));
        prefix = strjoin(dir, "/tmp/pull-", NULL);
        ASSERT_TRUE(startswith(work, prefix));
        ASSERT_OK(stat(work, &st));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
        ASSERT_OK(rm_rf(dir));
        return 0;
}

DEFINE_TEST_MAIN
