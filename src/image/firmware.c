/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "firmware.h"
#include "strv.h"

/* Where Debian's ovmf package (2022.11, bookworm) installs the x86-64 firmware, preferred
 * first: the 4 MiB build, the older 2 MiB build, the combined code and variables image. */
static const char *const ovmf_package_paths[] = {
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/ovmf/OVMF.fd",
};

int firmware_candidates(const Store *s, const char *configured_path, FirmwareKind kind, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        if (kind < 0 || kind >= _FIRMWARE_KIND_MAX)
                return -EINVAL;

        /* A configured path replaces the search: falling back to another file would boot the
         * VM with firmware the user did not choose. */
        if (!isempty(configured_path)) {
                r = strv_extend(&l, configured_path);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(l);
                return 0;
        }

        r = strv_consume(&l, store_path(s, "firmware",
                                        kind == FIRMWARE_CLOUD_HYPERVISOR ? "CLOUDHV.fd" : "OVMF_CODE_4M.fd",
                                        NULL));
        if (r < 0)
                return r;

        if (kind == FIRMWARE_QEMU)
                for (size_t i = 0; i < ELEMENTSOF(ovmf_package_paths); i++) {
                        r = strv_extend(&l, ovmf_package_paths[i]);
                        if (r < 0)
                                return r;
                }

        *ret = TAKE_PTR(l);
        return 0;
}

static bool firmware_usable(const char *path) {
        struct stat st;

        return stat(path, &st) >= 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
               access(path, R_OK) >= 0;
}

int firmware_find(const Store *s, const char *configured_path, FirmwareKind kind, char **ret) {
        _cleanup_strv_free_ char **candidates = NULL;
        _cleanup_free_ char *tried = NULL, *dir = NULL;
        int r;

        r = firmware_candidates(s, configured_path, kind, &candidates);
        if (r < 0)
                return r;

        STRV_FOREACH(c, candidates)
                if (firmware_usable(*c)) {
                        char *p = strdup(*c);

                        if (!p)
                                return -ENOMEM;
                        *ret = p;
                        return 0;
                }

        tried = strv_join(candidates, ", ");
        dir = store_path(s, "firmware", NULL);
        if (!tried || !dir)
                return -ENOMEM;
        if (kind == FIRMWARE_QEMU)
                return error_set(-ENOENT, "UEFI firmware not found: looked in %s; install the "
                                          "ovmf package, or OVMF_CODE_4M.fd into %s, or set "
                                          "[VM] Firmware=", tried, dir);
        return error_set(-ENOENT, "UEFI firmware not found: looked in %s; install CLOUDHV.fd "
                                  "into %s or set [VM] Firmware=", tried, dir);
}
