/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A writer for uncompressed EROFS images that streams file data straight into the output file.
 *
 * Block 0 of the image contains the superblock. File data follows from block 1 on, in the order
 * the files were added. erofs_writer_finish() writes the metadata after the data: inodes, inline
 * directory tails, symlink targets, xattrs and full directory blocks. Only the tree (inodes,
 * names, xattrs, symlink targets) is kept in memory, never file contents.
 *
 * Paths are relative and '/'-separated, with no empty, "." or ".." components; "" is the root.
 * Callers that take paths from untrusted input normalise them first (see layer_path_normalize()).
 * Adding an entry at a path that exists replaces the old entry, except that erofs_writer_mkdir()
 * on an existing directory only updates its attributes. Missing parent directories are created
 * with mode 0755, owner root:root and the build time as mtime. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define EROFS_BLOCK_SIZE 4096U
#define EROFS_NAME_MAX 255U
/* Maximum symlink target length: PATH_MAX (4096) minus the NUL. */
#define EROFS_SYMLINK_MAX 4095U

typedef struct ErofsWriter ErofsWriter;
typedef struct ErofsInode ErofsInode;

typedef struct ErofsAttr {
        uint32_t mode;          /* st_mode, including the S_IFMT bits */
        uint32_t uid;
        uint32_t gid;
        int64_t mtime;          /* seconds since the epoch */
        uint32_t mtime_nsec;
        uint32_t rdev_major;    /* character and block devices only */
        uint32_t rdev_minor;
} ErofsAttr;

/* Create a writer for the regular file fd, which it truncates to zero. It does not take
 * ownership of fd. build_time is the timestamp of inodes stored in the compact form. */
int erofs_writer_new(int fd, const uint8_t uuid[16], int64_t build_time, ErofsWriter **ret);
ErofsWriter *erofs_writer_free(ErofsWriter *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(ErofsWriter *, erofs_writer_free);

/* Change the build time before erofs_writer_finish(). Inodes whose mtime equals the build time
 * are stored in the 32-byte compact form, so the most common mtime is the best choice. */
void erofs_writer_set_build_time(ErofsWriter *w, int64_t build_time);

/* Create the directory at path, or update the attributes of the existing directory there
 * (its entries and xattrs stay). */
int erofs_writer_mkdir(ErofsWriter *w, const char *path, const ErofsAttr *attr, ErofsInode **ret);

/* Add a regular file of size bytes and reserve its data blocks. Its contents are then passed with
 * erofs_writer_write(); any range never written reads back as zeros, so holes of sparse files
 * cost nothing. */
int erofs_writer_add_file(ErofsWriter *w, const char *path, const ErofsAttr *attr, uint64_t size,
                          ErofsInode **ret);
int erofs_writer_write(ErofsWriter *w, ErofsInode *file, uint64_t offset, const void *data, size_t size);

int erofs_writer_add_symlink(ErofsWriter *w, const char *path, const ErofsAttr *attr, const char *target,
                             ErofsInode **ret);

/* Add a character or block device, FIFO or socket, as chosen by the S_IFMT bits of attr->mode. */
int erofs_writer_add_special(ErofsWriter *w, const char *path, const ErofsAttr *attr, ErofsInode **ret);

/* Add path as another name of the non-directory inode at target. */
int erofs_writer_add_hardlink(ErofsWriter *w, const char *path, const char *target);

/* Find the inode at path, or return -ENOENT (or -ENOTDIR when a parent is not a directory). */
int erofs_writer_lookup(ErofsWriter *w, const char *path, ErofsInode **ret);

/* Return the directory at path, creating it and its missing parents with default attributes. */
int erofs_writer_ensure_dir(ErofsWriter *w, const char *path, ErofsInode **ret);

/* Set the xattr name (with its prefix, e.g. "user.foo") to value, replacing an old value.
 * Returns -EOPNOTSUPP when EROFS cannot store the prefix: only "user.", "trusted.",
 * "security.", "system.posix_acl_access" and "system.posix_acl_default" are indexable. */
int erofs_inode_set_xattr(ErofsInode *inode, const char *name, const void *value, size_t size);
bool erofs_inode_has_xattr(const ErofsInode *inode, const char *name);
void erofs_inode_clear_xattrs(ErofsInode *inode);
bool erofs_xattr_name_supported(const char *name);

uint32_t erofs_inode_mode(const ErofsInode *inode);
/* An overlayfs whiteout: a character device 0:0. */
bool erofs_inode_is_whiteout(const ErofsInode *inode);

/* Write the metadata and the superblock and truncate the file to the image size, which is
 * returned in ret_size. The writer accepts no more entries afterwards. */
int erofs_writer_finish(ErofsWriter *w, uint64_t *ret_size);

/* CRC-32C as EROFS stores it in the superblock: seed 0xFFFFFFFF and no final inversion. */
uint32_t erofs_crc32c(uint32_t crc, const void *data, size_t size);
