/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "error.h"
#include "fileio.h"
#include "netns.h"
#include "strv.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

char *netns_path(const char *name) {
        return strjoin(NETNS_RUN_DIR "/", name, NULL);
}

bool netns_is_mounted(const char *path) {
        struct statfs sfs;

        return statfs(path, &sfs) >= 0 && sfs.f_type == NSFS_MAGIC;
}

/* Make /run/netns a shared mount, bind-mounting it on itself first when it is no mount point, as
 * "ip netns add" does. The namespace mounts below it then propagate into mount namespaces created
 * later, such as the one of a service with PrivateMounts=, so they see the same namespaces. */
static int make_run_dir_shared(void) {
        int r;

        r = mkdir_p(NETNS_RUN_DIR, 0755);
        if (r < 0)
                return error_set(r, "cannot create %s: %s", NETNS_RUN_DIR, strerror(-r));

        if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) >= 0)
                return 0;
        if (errno != EINVAL)
                return error_set(-errno, "cannot make %s a shared mount: %s", NETNS_RUN_DIR,
                                 strerror(errno));

        if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0 ||
            mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) < 0)
                return error_set(-errno, "cannot make %s a shared mount: %s", NETNS_RUN_DIR,
                                 strerror(errno));
        return 0;
}

/* Runs on its own thread: unshare() moves only this thread into the new namespace, and the bind
 * mount keeps the namespace alive after the thread exits. */
static void *create_thread(void *userdata) {
        const char *path = userdata;

        if (unshare(CLONE_NEWNET) < 0)
                return (void *) (intptr_t) -errno;
        if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0)
                return (void *) (intptr_t) -errno;
        return NULL;
}

int netns_create(const char *name) {
        _cleanup_free_ char *path = netns_path(name);
        _cleanup_close_ int fd = -EBADF;
        pthread_t thread;
        void *result;
        int r;

        if (!path)
                return -ENOMEM;

        r = make_run_dir_shared();
        if (r < 0)
                return r;

        fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
        if (fd < 0 && errno == EEXIST && !netns_is_mounted(path)) {
                (void) unlink(path);
                fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
        }
        if (fd < 0) {
                if (errno == EEXIST)
                        return error_set(-EEXIST, "network namespace %s already exists", name);
                return error_set(-errno, "cannot create %s: %s", path, strerror(errno));
        }
        fd = safe_close(fd);

        r = -pthread_create(&thread, NULL, create_thread, path);
        if (r == 0) {
                (void) pthread_join(thread, &result);
                r = (int) (intptr_t) result;
        }
        if (r < 0) {
                (void) unlink(path);
                return error_set(r, "cannot create network namespace %s: %s", name, strerror(-r));
        }
        return 0;
}

int netns_delete(const char *name) {
        _cleanup_free_ char *path = netns_path(name);

        if (!path)
                return -ENOMEM;

        /* MNT_DETACH: a process still inside keeps the namespace, but the name goes now. */
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                return error_set(-errno, "cannot unmount %s: %s", path, strerror(errno));
        if (unlink(path) < 0 && errno != ENOENT)
                return error_set(-errno, "cannot remove %s: %s", path, strerror(errno));
        return 0;
}

typedef struct RunContext {
        const char *path;
        int (*fn)(void *userdata);
        void *userdata;
        int r;
        char *reason;
} RunContext;

static void *run_thread(void *userdata) {
        RunContext *c = userdata;
        _cleanup_close_ int fd = open(c->path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                c->r = error_set(-errno, "cannot open network namespace %s: %s", c->path, strerror(errno));
        else if (setns(fd, CLONE_NEWNET) < 0)
                c->r = error_set(-errno, "cannot enter network namespace %s: %s", c->path,
                                 strerror(errno));
        else
                c->r = c->fn(c->userdata);

        /* The reason is thread-local: hand it over to the joining thread. */
        c->reason = error_save(c->r);
        return NULL;
}

int netns_run(const char *path, int (*fn)(void *userdata), void *userdata) {
        RunContext c = { .path = path, .fn = fn, .userdata = userdata };
        pthread_t thread;
        int r;

        r = pthread_create(&thread, NULL, run_thread, &c);
        if (r != 0)
                return error_set(-r, "cannot start a thread: %s", strerror(r));
        (void) pthread_join(thread, NULL);

        if (c.r < 0)
                return error_restore(c.r, c.reason);
        free(c.reason);
        return c.r;
}
