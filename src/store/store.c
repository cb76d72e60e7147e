/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "fileio.h"
#include "store.h"
#include "strv.h"

/* Records larger than this are not records: refuse them instead of loading them. */
#define STORE_RECORD_MAX (16U * 1024 * 1024)

static const char *const store_dirs[] = {
        "images/oci", "images/cloud", "blobs/sha256", "boot", "tmp", "locks/blobs", "vms", "names",
};

int store_open(const char *root_dir, Store **ret) {
        _cleanup_(store_freep) Store *s = NULL;
        int r;

        if (isempty(root_dir) || root_dir[0] != '/')
                return error_set(-EINVAL, "root directory '%s' is not an absolute path",
                                 root_dir ?: "");

        s = calloc(1, sizeof(Store));
        if (!s)
                return -ENOMEM;
        s->root = strdup(root_dir);
        if (!s->root)
                return -ENOMEM;

        r = mkdir_p(root_dir, 0750);
        if (r < 0)
                return error_set(r, "cannot create root directory '%s': %s", root_dir,
                                 strerror(-r));

        for (size_t i = 0; i < ELEMENTSOF(store_dirs); i++) {
                _cleanup_free_ char *p = store_path(s, store_dirs[i], NULL);

                if (!p)
                        return -ENOMEM;
                r = mkdir_p(p, 0750);
                if (r < 0)
                        return error_set(r, "cannot create '%s': %s", p, strerror(-r));
        }

        *ret = TAKE_PTR(s);
        return 0;
}

Store *store_free(Store *s) {
        if (!s)
                return NULL;
        free(s->root);
        free(s);
        return NULL;
}

char *store_path(const Store *s, const char *first, ...) {
        size_t len = strlen(s->root) + 1;
        va_list ap;
        char *r, *p;

        va_start(ap, first);
        for (const char *c = first; c; c = va_arg(ap, const char *))
                len += strlen(c) + 1;
        va_end(ap);

        r = p = malloc(len);
        if (!r)
                return NULL;
        p = stpcpy(p, s->root);

        va_start(ap, first);
        for (const char *c = first; c; c = va_arg(ap, const char *)) {
                *p++ = '/';
                p = stpcpy(p, c);
        }
        va_end(ap);
        return r;
}

int store_mkdtemp(const Store *s, const char *prefix, char **ret) {
        _cleanup_free_ char *p = NULL;

        if (asprintf(&p, "%s/tmp/%s-XXXXXX", s->root, prefix) < 0)
                return -ENOMEM;
        if (!mkdtemp(p))
                return error_set(-errno, "cannot create a work directory in '%s/tmp': %m",
                                 s->root);
        *ret = TAKE_PTR(p);
        return 0;
}

int store_lock(const Store *s, const char *name, int operation, int *ret_fd) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/locks/%s.lock", s->root, name) < 0)
                return -ENOMEM;

        for (;;) {
                _cleanup_close_ int fd = -EBADF;
                struct stat a, b;

                fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return error_set(-errno, "cannot open lock file '%s': %m", path);

                while (flock(fd, operation) < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EWOULDBLOCK)
                                return -EWOULDBLOCK;
                        return error_set(-errno, "cannot lock '%s': %m", path);
                }

                /* The file we locked must still be the one at path; otherwise its holder
                 * unlinked it and we must lock the current one. */
                if (fstat(fd, &a) < 0)
                        return -errno;
                if (stat(path, &b) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return -errno;
                }
                if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
                        continue;

                *ret_fd = TAKE_FD(fd);
                return 0;
        }
}

int store_write_json(const char *path, json_t *j) {
        _cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        _cleanup_free_ char *line = NULL;

        if (!s)
                return -ENOMEM;
        line = strjoin(s, "\n", NULL);
        if (!line)
                return -ENOMEM;
        return write_file_atomic(path, line, strlen(line), 0644);
}

int store_read_json(const char *path, json_t **ret) {
        _cleanup_free_ char *data = NULL;
        json_error_t e;
        json_t *j;
        size_t size;
        int r;

        r = read_file(path, STORE_RECORD_MAX, &data, &size);
        if (r == -EFBIG)
                return error_set(r, "record '%s' is over %u bytes", path, STORE_RECORD_MAX);
        if (r < 0)
                return r;

        j = json_loadb(data, size, 0, &e);
        if (!j)
                return error_set(-EBADMSG, "record '%s' is not valid JSON: %s (line %d)", path,
                                 e.text, e.line);
        *ret = j;
        return 0;
}
