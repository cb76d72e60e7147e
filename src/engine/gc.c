/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "error.h"
#include "fileio.h"
#include "gc.h"
#include "image-index.h"
#include "strv.h"
#include "vm-store.h"

#define TEMP_MAX_AGE_DEFAULT (60 * 60)
#define CREATING_MAX_AGE_DEFAULT (24 * 60 * 60)

static const char *const kind_names[_GC_ITEM_KIND_MAX] = {
        [GC_BLOB] = "blob",
        [GC_BOOT] = "boot files",
        [GC_VM_CREATING] = "unfinished VM",
        [GC_VM_ORPHAN] = "orphaned VM directory",
        [GC_RUN_DIR] = "orphaned runtime directory",
        [GC_NAME] = "stale name reservation",
        [GC_TEMP] = "stale work directory",
        [GC_LOCK] = "stale lock file",
        [GC_NETWORK] = "network of no VM",
};

const char *gc_item_kind_to_string(GcItemKind k) {
        return k >= 0 && k < _GC_ITEM_KIND_MAX ? kind_names[k] : NULL;
}

typedef struct GcState {
        const GcOptions *opts;
        uint64_t now;
        char **referenced;      /* blob hexes some image or VM uses */
        char **vm_ids;          /* ids of every readable VM record */
        int failures;
} GcState;

static void report(GcState *st, GcItemKind kind, const char *what, uint64_t size, GcOutcome o, int r) {
        if (o == GC_FAILED)
                st->failures++;
        if (st->opts->report)
                st->opts->report(st->opts->userdata, kind, what, size, o, r);
}

static const char *hex_of(const char *digest) {
        return startswith(digest, "sha256:") ? digest + 7 : digest;
}

/* The blobs in use, read fresh from every image and VM record. */
static int collect_references(GcState *st) {
        ImageRecord **images = NULL;
        Vm **vms = NULL;
        size_t n_images = 0, n_vms = 0;
        int r;

        st->referenced = strv_free(st->referenced);
        st->vm_ids = strv_free(st->vm_ids);
        st->referenced = calloc(1, sizeof(char *));
        st->vm_ids = calloc(1, sizeof(char *));
        if (!st->referenced || !st->vm_ids)
                return -ENOMEM;

        r = image_index_list(st->opts->store, &images, &n_images, NULL);
        if (r < 0)
                return r;
        r = vm_store_list(st->opts->store, &vms, &n_vms, NULL);
        if (r < 0) {
                image_record_array_free(images, n_images);
                return r;
        }

        for (size_t i = 0; r >= 0 && i < n_images; i++) {
                const ImageRecord *img = images[i];

                if (img->type == IMAGE_CLOUD && img->content_sum)
                        r = strv_extend(&st->referenced, hex_of(img->content_sum));
                for (size_t k = 0; r >= 0 && k < img->n_layers; k++)
                        r = strv_extend(&st->referenced, hex_of(img->layers[k].digest));
        }
        for (size_t i = 0; r >= 0 && i < n_vms; i++) {
                r = strv_extend(&st->vm_ids, vms[i]->id);
                STRV_FOREACH(b, vms[i]->image_blob_ids)
                        if (r >= 0)
                                r = strv_extend(&st->referenced, *b);
        }

        image_record_array_free(images, n_images);
        vm_array_free(vms, n_vms);
        return r;
}

/* Bytes a file or a whole directory tree takes on disk. */
static uint64_t tree_size(int dirfd_parent, const char *name, unsigned depth) {
        struct stat st;
        uint64_t size;
        struct dirent *de;
        DIR *d;
        int fd;

        if (fstatat(dirfd_parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0;
        size = (uint64_t) st.st_blocks * 512;
        if (!S_ISDIR(st.st_mode) || depth > 16)
                return size;

        fd = openat(dirfd_parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return size;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return size;
        }
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        size += tree_size(dirfd(d), de->d_name, depth + 1);
        closedir(d);
        return size;
}

static uint64_t path_size(const char *path) {
        return tree_size(AT_FDCWD, path, 0);
}

static int remove_path(GcState *st, GcItemKind kind, const char *path, const char *what) {
        uint64_t size = path_size(path);
        int r;

        if (st->opts->dry_run) {
                report(st, kind, what, size, GC_WOULD_REMOVE, 0);
                return 0;
        }
        r = rm_rf(path);
        report(st, kind, what, size, r < 0 ? GC_FAILED : GC_REMOVED, r);
        return r;
}

typedef struct BlobCandidate {
        char *hex;
        char *blob;     /* path of the blob file, or NULL when only boot files are left */
        int lock_fd;
} BlobCandidate;

/* Remove unreferenced blobs. Each candidate is locked exclusively without waiting: a pull or
 * create holding the blob is skipped. Then the records are read again, because a pull that
 * finished between the first read and our lock has a record naming the blob by now, and nothing
 * new can pin it while we hold the lock. */
static int gc_blobs(GcState *st) {
        _cleanup_free_ char *blob_dir = store_path(st->opts->store, "blobs", "sha256", NULL);
        _cleanup_free_ char *boot_dir = store_path(st->opts->store, "boot", NULL);
        BlobCandidate *c = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r;

        if (!blob_dir || !boot_dir)
                return -ENOMEM;

        /* Candidates: blob files and boot directories whose hex no record references. */
        for (int pass = 0; pass < 2; pass++) {
                d = opendir(pass == 0 ? blob_dir : boot_dir);
                if (!d)
                        continue;
                while ((de = readdir(d))) {
                        _cleanup_free_ char *hex = NULL;
                        const char *dot;
                        bool known = false;
                        BlobCandidate *t;

                        if (de->d_name[0] == '.')
                                continue;
                        dot = pass == 0 ? strrchr(de->d_name, '.') : NULL;
                        if (pass == 0 && (!dot || strstr(de->d_name, ".tmp-")))
                                continue;
                        hex = dot ? strndup(de->d_name, dot - de->d_name) : strdup(de->d_name);
                        if (!hex || strlen(hex) != 64 || strspn(hex, "0123456789abcdef") != 64)
                                continue;
                        if (strv_contains(st->referenced, hex))
                                continue;
                        for (size_t i = 0; i < n; i++)
                                known = known || streq(c[i].hex, hex);
                        if (known)
                                continue;

                        t = realloc(c, (n + 1) * sizeof(BlobCandidate));
                        if (!t)
                                break;
                        c = t;
                        c[n++] = (BlobCandidate) {
                                .hex = TAKE_PTR(hex),
                                .blob = pass == 0 ? strjoin(blob_dir, "/", de->d_name, NULL) : NULL,
                                .lock_fd = -EBADF,
                        };
                }
                closedir(d);
        }

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *name = strjoin("blobs/", c[i].hex, NULL);

                if (!name)
                        continue;
                r = store_lock(st->opts->store, name, LOCK_EX | LOCK_NB, &c[i].lock_fd);
                if (r == -EWOULDBLOCK) {
                        char what[96];

                        snprintf(what, sizeof(what), "sha256:%.12s", c[i].hex);
                        report(st, GC_BLOB, what, 0, GC_SKIPPED_IN_USE, 0);
                }
        }

        r = collect_references(st);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *boot = strjoin(boot_dir, "/", c[i].hex, NULL);
                _cleanup_free_ char *lock = NULL;
                char what[96];

                snprintf(what, sizeof(what), "sha256:%.12s", c[i].hex);
                if (r >= 0 && c[i].lock_fd >= 0 && !strv_contains(st->referenced, c[i].hex) && boot) {
                        if (c[i].blob)
                                (void) remove_path(st, GC_BLOB, c[i].blob, what);
                        if (access(boot, F_OK) >= 0)
                                (void) remove_path(st, GC_BOOT, boot, what);

                        /* The lock file goes last, while we still hold it. */
                        lock = store_path(st->opts->store, "locks", "blobs", NULL);
                        if (!st->opts->dry_run && lock) {
                                _cleanup_free_ char *file = strjoin(lock, "/", c[i].hex, ".lock", NULL);

                                if (file)
                                        (void) unlink(file);
                        }
                }
                safe_close(c[i].lock_fd);
                free(c[i].hex);
                free(c[i].blob);
        }
        free(c);
        return r;
}

/* The newest modification time anywhere in a tree: a work directory is stale only when nothing
 * in it changed for the whole threshold. */
static uint64_t newest_mtime(int dirfd_parent, const char *name, unsigned depth) {
        struct stat st;
        uint64_t newest;
        int fd;
        DIR *d;
        struct dirent *de;

        if (fstatat(dirfd_parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0;
        newest = (uint64_t) st.st_mtime;
        if (!S_ISDIR(st.st_mode) || depth > 16)
                return newest;

        fd = openat(dirfd_parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return newest;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return newest;
        }
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        newest = MAX(newest, newest_mtime(dirfd(d), de->d_name, depth + 1));
        closedir(d);
        return newest;
}

static int gc_temp(GcState *st) {
        _cleanup_free_ char *dir = store_path(st->opts->store, "tmp", NULL);
        uint64_t max_age = st->opts->temp_max_age_sec ?: TEMP_MAX_AGE_DEFAULT;
        struct dirent *de;
        DIR *d;

        if (!dir)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (newest_mtime(dirfd(d), de->d_name, 0) + max_age > st->now)
                        continue;
                path = strjoin(dir, "/", de->d_name, NULL);
                if (path)
                        (void) remove_path(st, GC_TEMP, path, de->d_name);
        }
        closedir(d);
        return 0;
}

static uint64_t parse_rfc3339(const char *s) {
        struct tm tm = {};

        if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
                return 0;
        return (uint64_t) timegm(&tm);
}

/* VMs left in "creating" by a create that was killed, and VM directories without a record.
 * Each is locked without waiting, so a create in progress is skipped. */
static int gc_vms(GcState *st) {
        _cleanup_free_ char *dir = store_path(st->opts->store, "vms", NULL);
        uint64_t max_age = st->opts->creating_max_age_sec ?: CREATING_MAX_AGE_DEFAULT;
        struct dirent *de;
        DIR *d;

        if (!dir)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                _cleanup_(vm_freep) Vm *vm = NULL;
                _cleanup_free_ char *path = NULL;
                _cleanup_close_ int lock = -EBADF;
                int r;

                if (de->d_name[0] == '.')
                        continue;
                path = strjoin(dir, "/", de->d_name, NULL);
                if (!path)
                        continue;

                r = vm_store_lock(st->opts->store, de->d_name, LOCK_EX | LOCK_NB, &lock);
                if (r == -EWOULDBLOCK) {
                        /* Held by a running create (or start): not ours to judge now. */
                        report(st, GC_VM_CREATING, de->d_name, 0, GC_SKIPPED_IN_USE, 0);
                        continue;
                }
                if (r < 0)
                        continue;

                r = vm_store_load(st->opts->store, de->d_name, &vm);
                error_clear();
                if (r == -ENOENT || r == -EBADMSG) {
                        /* A directory younger than the temp threshold may be a create between
                         * mkdir and its first record write; leave it for the next run. */
                        if (newest_mtime(AT_FDCWD, path, 0) + (st->opts->temp_max_age_sec ?: TEMP_MAX_AGE_DEFAULT) <= st->now)
                                (void) remove_path(st, GC_VM_ORPHAN, path, de->d_name);
                        continue;
                }
                if (r < 0 || vm->state != VM_CREATING)
                        continue;
                if (parse_rfc3339(vm->updated_at) + max_age > st->now)
                        continue;

                if (st->opts->dry_run) {
                        report(st, GC_VM_CREATING, vm->name, path_size(path), GC_WOULD_REMOVE, 0);
                        continue;
                }
                (void) rm_rf(vm->run_dir);
                r = vm_store_remove(st->opts->store, vm);
                report(st, GC_VM_CREATING, vm->name, 0, r < 0 ? GC_FAILED : GC_REMOVED, r);
        }
        closedir(d);
        return 0;
}

/* Runtime directories, name reservations and VM lock files that belong to no VM. */
static int gc_vm_leftovers(GcState *st) {
        _cleanup_free_ char *names = store_path(st->opts->store, "names", NULL);
        _cleanup_free_ char *locks = store_path(st->opts->store, "locks", NULL);
        struct dirent *de;
        DIR *d;

        if (!names || !locks)
                return -ENOMEM;

        d = opendir(st->opts->run_dir);
        while (d && (de = readdir(d))) {
                _cleanup_free_ char *path = NULL;
                _cleanup_close_ int lock = -EBADF;

                /* Only directories named like a VM id are ours to judge. */
                if (strlen(de->d_name) != 16 || strspn(de->d_name, "0123456789abcdef") != 16 ||
                    strv_contains(st->vm_ids, de->d_name))
                        continue;
                if (vm_store_lock(st->opts->store, de->d_name, LOCK_EX | LOCK_NB, &lock) < 0) {
                        report(st, GC_RUN_DIR, de->d_name, 0, GC_SKIPPED_IN_USE, 0);
                        continue;
                }
                path = strjoin(st->opts->run_dir, "/", de->d_name, NULL);
                if (path)
                        (void) remove_path(st, GC_RUN_DIR, path, de->d_name);
        }
        if (d)
                closedir(d);

        d = opendir(names);
        while (d && (de = readdir(d))) {
                _cleanup_free_ char *link = NULL;
                char target[PATH_MAX];
                ssize_t len;
                const char *id;

                if (de->d_name[0] == '.')
                        continue;
                link = strjoin(names, "/", de->d_name, NULL);
                if (!link || (len = readlink(link, target, sizeof(target) - 1)) < 0)
                        continue;
                target[len] = '\0';
                id = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
                if (strv_contains(st->vm_ids, id))
                        continue;
                /* A create reserves the name just before it writes the record. */
                if (newest_mtime(AT_FDCWD, link, 0) + 60 > st->now)
                        continue;
                (void) remove_path(st, GC_NAME, link, de->d_name);
        }
        if (d)
                closedir(d);

        d = opendir(locks);
        while (d && (de = readdir(d))) {
                _cleanup_free_ char *id = NULL, *lock_name = NULL, *path = NULL;
                _cleanup_close_ int lock = -EBADF;

                if (!startswith(de->d_name, "vm-") || !endswith(de->d_name, ".lock"))
                        continue;
                id = strndup(de->d_name + 3, strlen(de->d_name) - 3 - 5);
                if (!id || strv_contains(st->vm_ids, id))
                        continue;
                lock_name = strjoin("vm-", id, NULL);
                if (!lock_name || store_lock(st->opts->store, lock_name, LOCK_EX | LOCK_NB, &lock) < 0)
                        continue;
                path = strjoin(locks, "/", de->d_name, NULL);
                if (path && st->opts->dry_run)
                        report(st, GC_LOCK, de->d_name, 0, GC_WOULD_REMOVE, 0);
                else if (path && unlink(path) >= 0)
                        report(st, GC_LOCK, de->d_name, 0, GC_REMOVED, 0);
        }
        if (d)
                closedir(d);
        return 0;
}

/* Namespaces, TAPs and leases this installation made for a VM that no longer exists. Only ids
 * with this root directory's marker are listed, so another installation's are never touched; a
 * VM being created is locked and skipped. */
static int gc_networks(GcState *st) {
        _cleanup_strv_free_ char **stale = NULL;
        int r;

        if (!st->opts->network)
                return 0;
        r = network_list_stale(st->opts->network, st->vm_ids, &stale);
        if (r < 0)
                return r;

        STRV_FOREACH(id, stale) {
                _cleanup_(vm_freep) Vm *vm = NULL;
                _cleanup_close_ int lock = -EBADF;

                if (vm_store_lock(st->opts->store, *id, LOCK_EX | LOCK_NB, &lock) < 0) {
                        report(st, GC_NETWORK, *id, 0, GC_SKIPPED_IN_USE, 0);
                        continue;
                }
                /* The record may have appeared since the list was read. */
                if (vm_store_load(st->opts->store, *id, &vm) >= 0)
                        continue;
                error_clear();
                if (st->opts->dry_run) {
                        report(st, GC_NETWORK, *id, 0, GC_WOULD_REMOVE, 0);
                        continue;
                }
                r = network_remove(st->opts->network, *id, NULL, 0);
                report(st, GC_NETWORK, *id, 0, r < 0 ? GC_FAILED : GC_REMOVED, r);
        }
        return 0;
}

/* Temp files of atomic writes ("NAME.tmp-XXXXXX") that a killed command left beside the
 * records and blobs; removed once untouched for the temp threshold, like work directories. */
static void gc_atomic_temps_in(GcState *st, const char *dir) {
        uint64_t max_age = st->opts->temp_max_age_sec ?: TEMP_MAX_AGE_DEFAULT;
        struct dirent *de;
        DIR *d = opendir(dir);

        if (!d)
                return;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL;

                if (!strstr(de->d_name, ".tmp-"))
                        continue;
                if (newest_mtime(dirfd(d), de->d_name, 0) + max_age > st->now)
                        continue;
                path = strjoin(dir, "/", de->d_name, NULL);
                if (path)
                        (void) remove_path(st, GC_TEMP, path, de->d_name);
        }
        closedir(d);
}

static int gc_atomic_temps(GcState *st) {
        static const char *const dirs[] = { "images/oci", "images/cloud", "blobs/sha256", "cni/cache" };
        _cleanup_free_ char *vms = store_path(st->opts->store, "vms", NULL);
        struct dirent *de;
        DIR *d;

        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_free_ char *dir = store_path(st->opts->store, dirs[i], NULL);

                if (!dir)
                        return -ENOMEM;
                gc_atomic_temps_in(st, dir);
        }

        if (!vms)
                return -ENOMEM;
        d = opendir(vms);
        while (d && (de = readdir(d))) {
                _cleanup_free_ char *dir = NULL;

                if (de->d_name[0] == '.')
                        continue;
                dir = strjoin(vms, "/", de->d_name, NULL);
                if (dir)
                        gc_atomic_temps_in(st, dir);
        }
        if (d)
                closedir(d);
        return 0;
}

int gc_run(const GcOptions *opts) {
        GcState st = { .opts = opts, .now = opts->now_sec ?: (uint64_t) time(NULL) };
        int r;

        r = collect_references(&st);
        if (r >= 0)
                r = gc_vms(&st);
        /* Unfinished VMs pinned blobs; read the references again now that they are gone. */
        if (r >= 0)
                r = collect_references(&st);
        if (r >= 0)
                r = gc_vm_leftovers(&st);
        if (r >= 0)
                r = gc_networks(&st);
        if (r >= 0)
                r = gc_blobs(&st);
        if (r >= 0)
                r = gc_temp(&st);
        if (r >= 0)
                r = gc_atomic_temps(&st);

        strv_free(st.referenced);
        strv_free(st.vm_ids);
        return r < 0 ? r : st.failures;
}
