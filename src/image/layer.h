/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Conversion of one OCI image layer (a tar stream, plain or compressed) into a read-only EROFS
 * image that a guest stacks with overlayfs. Tar paths are untrusted: they are checked against a
 * path policy and never used as host paths. */

#include <stdint.h>

#include "macro.h"

#define LAYER_DEFAULT_MAX_ENTRIES UINT64_C(1000000)
#define LAYER_DEFAULT_MAX_FILE_SIZE (UINT64_C(256) << 30)
/* Longest normalised path: PATH_MAX (4096) minus the NUL. */
#define LAYER_PATH_MAX 4095U

typedef struct LayerLimits {
        uint64_t max_entries;       /* 0 = default */
        uint64_t max_file_size;     /* 0 = default */
} LayerLimits;

typedef struct LayerInfo {
        uint64_t entries;           /* tar entries read */
        uint64_t erofs_size;        /* bytes of the EROFS image written */
        char *kernel_name;          /* tar path of the kernel found, or NULL */
        char *initrd_name;          /* tar path of the initrd found, or NULL */
} LayerInfo;

void layer_info_done(LayerInfo *info);

/* Read a layer from input_fd (a pipe or file: plain tar, tar+gzip or tar+zstd, detected from the
 * bytes), write the EROFS image to output_fd (a regular file at offset 0, truncated to the final
 * size), and, when boot_dir_fd >= 0, write the kernel and initrd found in the layer as
 * boot_dir_fd/vmlinuz and boot_dir_fd/initrd.img. uuid names the filesystem. On success input_fd
 * has been read to EOF, also past an early end-of-archive marker; on failure it may be left
 * partly unread. */
int layer_convert(int input_fd, int output_fd, int boot_dir_fd, const uint8_t uuid[16],
                  const LayerLimits *limits, LayerInfo *ret_info);

/* Check one tar entry name against the path policy; on success store the normalised relative
 * path (no leading "./", no trailing "/", "" for the root) in *ret. Pure; fuzzed. */
int layer_path_normalize(const char *name, char **ret);
