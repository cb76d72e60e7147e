/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers shared by test-erofs.c and test-layer.c: scratch directories, fsck.erofs runs and
 * kernel mounts of the images under test. */

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"

static inline int test_run(const char *fmt, ...) _printf_(1, 2);
static inline int test_run(const char *fmt, ...) {
        _cleanup_free_ char *cmd = NULL;
        va_list ap;
        int r, status;

        va_start(ap, fmt);
        r = vasprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        status = system(cmd);
        if (status < 0 || !WIFEXITED(status))
                return -EIO;
        return WEXITSTATUS(status);
}

/* Make a scratch directory under /tmp; remove it with test_rm_rf(). */
static inline char *test_mkdtemp(void) {
        char *d = strdup("/tmp/cocoon-test-XXXXXX");

        if (d && !mkdtemp(d)) {
                free(d);
                return NULL;
        }
        return d;
}

static inline void test_rm_rf(const char *dir) {
        if (dir && strneq(dir, "/tmp/cocoon-test-", 17))
                (void) test_run("rm -rf '%s'", dir);
}

static inline bool test_have_fsck(void) {
        return test_run("command -v fsck.erofs >/dev/null 2>&1") == 0;
}

/* Run fsck.erofs on img and extract its contents into extract_dir (when not NULL). fsck.erofs 1.5
 * exits 0 even on a superblock checksum mismatch, so its output is checked too. Returns 0 when the
 * image is clean. */
static inline int test_fsck(const char *img, const char *extract_dir) {
        int r;

        if (extract_dir)
                r = test_run("fsck.erofs --extract='%s' '%s' >'%s.fsck' 2>&1", extract_dir, img, img);
        else
                r = test_run("fsck.erofs '%s' >'%s.fsck' 2>&1", img, img);
        if (r != 0) {
                (void) test_run("cat '%s.fsck' >&2", img);
                return -EIO;
        }

        r = test_run("grep -Eiq 'chksum|corrupt|wrong|invalid|fail|error|not |cannot' '%s.fsck'", img);
        if (r == 0) {
                (void) test_run("cat '%s.fsck' >&2", img);
                return -EIO;
        }
        return 0;
}

static inline int test_read_file(const char *path, uint8_t **ret, size_t *ret_size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;

        uint8_t *buf = malloc(st.st_size + 1);
        if (!buf)
                return -ENOMEM;

        size_t done = 0;
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + done, st.st_size - done);
                if (n <= 0) {
                        free(buf);
                        return n < 0 ? -errno : -EIO;
                }
                done += n;
        }

        *ret = buf;
        *ret_size = done;
        return 0;
}

/* Loop-mount img read-only on dir. Returns -EPERM-like errors when this machine cannot mount, so
 * that callers can skip the kernel checks. */
static inline int test_mount_erofs(const char *img, const char *dir) {
        int r = test_run("mount -t erofs -o loop,ro '%s' '%s' 2>/dev/null", img, dir);

        return r == 0 ? 0 : -EPERM;
}

static inline void test_umount(const char *dir) {
        (void) test_run("umount '%s' 2>/dev/null", dir);
}
