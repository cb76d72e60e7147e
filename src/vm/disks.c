/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "disks.h"
#include "error.h"
#include "process.h"

/* Formatting a sparse file takes well under a second; the bound only catches a hung tool. */
#define DISK_TOOL_TIMEOUT_SEC 120

int disks_create_cow(const char *path, uint64_t size) {
        _cleanup_close_ int fd = -EBADF;
        char *argv[] = { (char *) "mkfs.ext4", (char *) "-F", (char *) "-q", (char *) "-m",
                         (char *) "0", (char *) "-E",
                         (char *) "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                         (char *) "-L", (char *) "cocoon-cow", (char *) path, NULL };
        int r;

        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return error_set(-errno, "cannot create '%s': %m", path);
        if (ftruncate(fd, (off_t) size) < 0) {
                r = error_set(-errno, "cannot size '%s' to %" PRIu64 " bytes: %m", path, size);
                (void) unlink(path);
                return r;
        }
        fd = safe_close(fd);

        r = process_run_checked(argv, DISK_TOOL_TIMEOUT_SEC);
        if (r < 0) {
                (void) unlink(path);
                return error_prefix(r, "cannot format the COW disk: ");
        }
        return 0;
}

int disks_create_overlay(const char *path, const char *base, uint64_t size) {
        char size_arg[32];
        char *create[] = { (char *) "qemu-img", (char *) "create", (char *) "-q", (char *) "-f",
                           (char *) "qcow2", (char *) "-F", (char *) "qcow2", (char *) "-b",
                           (char *) base, (char *) path, NULL };
        char *resize[] = { (char *) "qemu-img", (char *) "resize", (char *) "-q", (char *) "-f",
                           (char *) "qcow2", (char *) path, size_arg, NULL };
        _cleanup_free_ char *info = NULL;
        char *info_argv[] = { (char *) "qemu-img", (char *) "info", (char *) "-f", (char *) "qcow2",
                              (char *) "--output=json", (char *) path, NULL };
        uint64_t virtual_size = 0;
        const char *p;
        int r;

        r = process_run_checked(create, DISK_TOOL_TIMEOUT_SEC);
        if (r < 0)
                return error_prefix(r, "cannot create the overlay disk: ");

        r = process_run(info_argv, DISK_TOOL_TIMEOUT_SEC, &info);
        if (r == 0 && (p = strstr(info, "\"virtual-size\":")))
                virtual_size = strtoull(p + strlen("\"virtual-size\":"), NULL, 10);

        /* Grow only: a smaller --storage keeps the image's own size rather than failing. */
        if (size > virtual_size) {
                snprintf(size_arg, sizeof(size_arg), "%" PRIu64, size);
                r = process_run_checked(resize, DISK_TOOL_TIMEOUT_SEC);
                if (r < 0) {
                        (void) unlink(path);
                        return error_prefix(r, "cannot grow the overlay disk: ");
                }
        }
        return 0;
}
