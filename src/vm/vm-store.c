/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "error.h"
#include "fileio.h"
#include "format.h"
#include "strv.h"
#include "vm-store.h"

char *vm_store_dir(const Store *s, const char *id) {
        return store_path(s, "vms", id, NULL);
}

static char *vm_record_path(const Store *s, const char *id) {
        return store_path(s, "vms", id, "vm.json", NULL);
}

static void touch_updated(Vm *vm) {
        char buf[FORMAT_TIMESTAMP_MAX];
        struct timespec now;

        clock_gettime(CLOCK_REALTIME, &now);
        free(vm->updated_at);
        vm->updated_at = strdup(format_timestamp_rfc3339(buf, sizeof(buf), &now));
        if (!vm->created_at)
                vm->created_at = strdup(buf);
}

int vm_store_save(const Store *s, Vm *vm) {
        _cleanup_free_ char *path = vm_record_path(s, vm->id);
        json_t *j;
        int r;

        if (!path)
                return -ENOMEM;
        touch_updated(vm);
        j = vm_to_json(vm);
        if (!j)
                return -ENOMEM;
        r = store_write_json(path, j);
        json_decref(j);
        if (r < 0)
                return error_set(r, "cannot write the record of VM %s: %s", vm->id, strerror(-r));
        return 0;
}

int vm_store_load(const Store *s, const char *id, Vm **ret) {
        _cleanup_free_ char *path = vm_record_path(s, id);
        json_t *j;
        int r;

        if (!path)
                return -ENOMEM;
        r = store_read_json(path, &j);
        if (r < 0)
                return r;
        r = vm_from_json(j, ret);
        json_decref(j);
        return r;
}

/* The id a name reservation points to, or -ENOENT. */
static int name_target(const Store *s, const char *name, char **ret_id) {
        _cleanup_free_ char *link = store_path(s, "names", name, NULL);
        char buf[PATH_MAX];
        ssize_t n;
        const char *slash;

        if (!link)
                return -ENOMEM;
        n = readlink(link, buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        slash = strrchr(buf, '/');
        *ret_id = strdup(slash ? slash + 1 : buf);
        return *ret_id ? 0 : -ENOMEM;
}

int vm_store_reserve(const Store *s, const Vm *vm) {
        _cleanup_free_ char *dir = vm_store_dir(s, vm->id), *link = NULL, *target = NULL;
        int r;

        link = store_path(s, "names", vm->name, NULL);
        target = strjoin("../vms/", vm->id, NULL);
        if (!dir || !link || !target)
                return -ENOMEM;

        for (int attempt = 0; attempt < 2; attempt++) {
                _cleanup_free_ char *owner = NULL;
                _cleanup_(vm_freep) Vm *other = NULL;

                if (symlink(target, link) >= 0)
                        break;
                if (errno != EEXIST)
                        return error_set(-errno, "cannot reserve the name '%s': %m", vm->name);

                /* A reservation whose record is gone is a leftover of an interrupted create or
                 * remove; reclaim it once. A create in progress holds its VM lock from before
                 * it reserves the name until its record is written, so a busy lock means the
                 * name is taken even though no record exists yet. */
                r = name_target(s, vm->name, &owner);
                if (r >= 0 && vm_store_load(s, owner, &other) >= 0)
                        return error_set(-EEXIST, "VM name '%s' already exists (id: %s)",
                                         vm->name, owner);
                error_clear();
                if (r >= 0 && !streq(owner, vm->id)) {
                        _cleanup_close_ int owner_lock = -EBADF;

                        if (vm_store_lock(s, owner, LOCK_EX | LOCK_NB, &owner_lock) < 0) {
                                error_clear();
                                return error_set(-EEXIST, "VM name '%s' already exists (id: %s, "
                                                          "being created)", vm->name, owner);
                        }
                        if (vm_store_load(s, owner, &other) >= 0)
                                return error_set(-EEXIST, "VM name '%s' already exists (id: %s)",
                                                 vm->name, owner);
                        error_clear();
                }
                if (attempt == 1 || (unlink(link) < 0 && errno != ENOENT))
                        return error_set(-EEXIST, "VM name '%s' is reserved", vm->name);
        }

        if (mkdir(dir, 0750) < 0) {
                r = -errno;
                (void) unlink(link);
                return error_set(r, "cannot create '%s': %s", dir, strerror(-r));
        }

        r = vm_store_save(s, (Vm *) vm);
        if (r < 0) {
                (void) rm_rf(dir);
                (void) unlink(link);
                return r;
        }
        (void) fsync_directory_of(link);
        return 0;
}

static int compare_vms(const void *a, const void *b) {
        const Vm *x = *(Vm *const *) a, *y = *(Vm *const *) b;
        int c = strcmp(x->created_at ?: "", y->created_at ?: "");

        return c != 0 ? c : strcmp(x->id, y->id);
}

int vm_store_list(const Store *s, Vm ***ret, size_t *ret_n, size_t *ret_skipped) {
        _cleanup_free_ char *dir = store_path(s, "vms", NULL);
        Vm **a = NULL;
        size_t n = 0, skipped = 0;
        int r;
        struct dirent *de;
        DIR *d;

        if (!dir)
                return -ENOMEM;
        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return error_set(-errno, "cannot read '%s': %m", dir);
        } else {
                while ((de = readdir(d))) {
                        Vm *vm, **t;

                        if (de->d_name[0] == '.')
                                continue;
                        r = vm_store_load(s, de->d_name, &vm);
                        /* A directory without a record is a create or remove in progress (or
                         * its leftover, which gc removes): not an unreadable record. */
                        if (r == -ENOENT)
                                continue;
                        if (r < 0) {
                                skipped++;
                                continue;
                        }
                        t = realloc(a, (n + 1) * sizeof(Vm *));
                        if (!t) {
                                vm_free(vm);
                                vm_array_free(a, n);
                                closedir(d);
                                return -ENOMEM;
                        }
                        a = t;
                        a[n++] = vm;
                }
                closedir(d);
        }

        error_clear();
        if (n > 1)
                qsort(a, n, sizeof(Vm *), compare_vms);
        *ret = a;
        *ret_n = n;
        if (ret_skipped)
                *ret_skipped = skipped;
        return 0;
}

static bool looks_like_id(const char *ref) {
        size_t n = strlen(ref);

        return n >= 3 && n <= 16 && strspn(ref, "0123456789abcdef") == n;
}

int vm_store_resolve(const Store *s, const char *ref, Vm **ret) {
        _cleanup_free_ char *id = NULL;
        Vm **all = NULL;
        size_t n = 0;
        Vm *match = NULL;
        int r;

        if (isempty(ref))
                return error_set(-EINVAL, "empty VM reference");

        if (looks_like_id(ref) && strlen(ref) == 16 && vm_store_load(s, ref, ret) >= 0)
                return 0;

        if (!strchr(ref, '/') && name_target(s, ref, &id) >= 0 && vm_store_load(s, id, ret) >= 0)
                return 0;
        error_clear();

        if (!looks_like_id(ref))
                return error_set(-ENOENT, "VM '%s' not found", ref);

        r = vm_store_list(s, &all, &n, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (!startswith(all[i]->id, ref))
                        continue;
                if (match) {
                        r = error_set(-ENOTUNIQ, "ambiguous VM reference '%s': matches %s and %s",
                                      ref, match->id, all[i]->id);
                        vm_array_free(all, n);
                        return r;
                }
                match = all[i];
        }

        if (!match) {
                vm_array_free(all, n);
                return error_set(-ENOENT, "VM '%s' not found", ref);
        }

        for (size_t i = 0; i < n; i++)
                if (all[i] == match)
                        all[i] = NULL;
        vm_array_free(all, n);
        *ret = match;
        return 0;
}

int vm_store_remove(const Store *s, const Vm *vm) {
        _cleanup_free_ char *dir = vm_store_dir(s, vm->id), *link = NULL, *owner = NULL, *record = NULL;
        int r;

        link = store_path(s, "names", vm->name, NULL);
        if (!dir || !link)
                return -ENOMEM;

        /* The record goes first, so an interrupted remove never leaves a record whose disks
         * are gone; the directory left without a record is an orphan for gc, and a name
         * without a record is reclaimed by the next create. */
        record = vm_record_path(s, vm->id);
        if (!record)
                return -ENOMEM;
        if (unlink(record) < 0 && errno != ENOENT)
                return error_set(-errno, "cannot remove '%s': %m", record);
        (void) fsync_directory_of(record);

        r = rm_rf(dir);
        if (r < 0)
                return error_set(r, "cannot remove '%s': %s", dir, strerror(-r));

        if (name_target(s, vm->name, &owner) >= 0 && streq(owner, vm->id))
                (void) unlink(link);
        (void) fsync_directory_of(link);
        return 0;
}

int vm_store_lock(const Store *s, const char *id, int operation, int *ret_fd) {
        _cleanup_free_ char *name = strjoin("vm-", id, NULL);

        if (!name)
                return -ENOMEM;
        return store_lock(s, name, operation, ret_fd);
}
