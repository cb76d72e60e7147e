/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Replace path with contents atomically: write a temp file in the same directory, fsync it,
 * rename it over path and fsync the directory, so that a crash leaves either the old or the new
 * file, never a torn one. */
int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode);

/* Read a whole file, refusing files over max_size bytes (-EFBIG). The buffer is NUL-terminated. */
int read_file(const char *path, size_t max_size, char **ret, size_t *ret_size);

/* mkdir -p with mode for every directory it creates. */
int mkdir_p(const char *path, mode_t mode);

/* rm -rf that stays on one file system and never follows symlinks. Missing path is success. */
int rm_rf(const char *path);

int fsync_directory_of(const char *path);
int fsync_path(const char *path);
