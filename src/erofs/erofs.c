/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "erofs.h"
#include "error.h"

/* On-disk constants, from the kernel's fs/erofs/erofs_fs.h. */
#define EROFS_SUPER_OFFSET 1024U
#define EROFS_SUPER_SIZE 128U
#define EROFS_SUPER_MAGIC 0xE0F5E1E2U
#define EROFS_BLOCK_BITS 12U
#define EROFS_FEATURE_COMPAT_SB_CHKSUM 0x1U
#define EROFS_INODE_COMPACT_SIZE 32U
#define EROFS_INODE_EXTENDED_SIZE 64U
#define EROFS_INODE_SLOT_SIZE 32U
#define EROFS_INODE_FLAT_PLAIN 0U
#define EROFS_INODE_FLAT_INLINE 2U
#define EROFS_DIRENT_SIZE 12U
#define EROFS_XATTR_IBODY_HEADER_SIZE 12U
#define EROFS_XATTR_ENTRY_HEADER_SIZE 4U
#define EROFS_NULL_ADDR UINT32_MAX

/* File data is collected into runs of up to this many bytes before it is written, because the
 * files of a layer are mostly small and a write per file (or per tar data block) costs syscalls. */
#define DATA_BUFFER_SIZE (128U * 1024U)
/* Writeback of the file data is started every this many bytes, so that the caller's fsync() at the
 * end finds most of the image on disk already instead of waiting for all of it. */
#define DATA_WRITEBACK_SIZE (8U * 1024U * 1024U)

/* The ibody must fit in one block together with an extended inode, so that no inode crosses a
 * block boundary (inline tails that do not fit fall back to FLAT_PLAIN). */
#define EROFS_XATTR_IBODY_MAX (EROFS_BLOCK_SIZE - EROFS_INODE_EXTENDED_SIZE)

enum {
        EROFS_FT_UNKNOWN,
        EROFS_FT_REG_FILE,
        EROFS_FT_DIR,
        EROFS_FT_CHRDEV,
        EROFS_FT_BLKDEV,
        EROFS_FT_FIFO,
        EROFS_FT_SOCK,
        EROFS_FT_SYMLINK,
};

enum {
        EROFS_XATTR_INDEX_USER = 1,
        EROFS_XATTR_INDEX_POSIX_ACL_ACCESS = 2,
        EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT = 3,
        EROFS_XATTR_INDEX_TRUSTED = 4,
        EROFS_XATTR_INDEX_SECURITY = 6,
};

typedef struct ErofsDentry ErofsDentry;

/* One per inode of the layer. The field order and the unions keep it at 88 bytes, because a layer can
 * have hundreds of thousands of entries. */
struct ErofsInode {
        uint32_t mode;
        uint32_t uid;
        uint32_t gid;
        uint32_t refs;          /* dentries naming this inode, i.e. nlink of a non-directory */
        int64_t mtime;
        uint64_t size;
        uint8_t *xattrs;        /* packed on-disk xattr entries, each padded to 4 bytes */
        union {
                char *symlink;                  /* symlinks */
                ErofsDentry **children;         /* directories, with room for children_capacity() */
        };
        ErofsInode *parent;     /* directories only */
        union {
                uint32_t rdev;          /* character and block devices, in the kernel's "new" encoding */
                uint32_t blkaddr;       /* first block of the data stored outside the metadata area */
        };
        uint32_t mtime_nsec;
        uint32_t n_children;    /* directories only */
        uint16_t xattrs_size;   /* at most EROFS_XATTR_IBODY_MAX */
        bool implicit_mtime:1;  /* created as a missing parent: its mtime is the build time */

        /* Set by erofs_writer_finish(). */
        bool extended:1;
        bool inline_tail:1;
        uint32_t n_subdirs;     /* directories only */
        uint32_t ino;           /* 1-based position in the layout order, or 0 before collection */
        uint64_t nid;
};

struct ErofsDentry {
        ErofsDentry *hash_next;
        ErofsInode *dir;
        ErofsInode *inode;
        uint8_t name_len;
        char name[];
};

struct ErofsWriter {
        int fd;
        uint8_t uuid[16];
        int64_t build_time;
        ErofsInode *root;

        /* All dentries, hashed by (directory, name), for lookups while the tar is read. */
        ErofsDentry **buckets;
        size_t n_buckets;
        size_t n_dentries;

        uint64_t next_block;    /* next free data block */
        bool finished;

        /* File data not written yet: buffer_used bytes that belong at buffer_offset in the image. */
        uint8_t *buffer;
        size_t buffer_used;
        uint64_t buffer_offset;
        uint64_t data_end;              /* end of the file data passed in so far, buffered or written */
        uint64_t writeback_offset;      /* start of the written data whose writeback was not started */
};

static void put_le16(uint8_t *p, uint16_t v) {
        p[0] = v;
        p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v) {
        put_le16(p, v);
        put_le16(p + 2, v >> 16);
}

static void put_le64(uint8_t *p, uint64_t v) {
        put_le32(p, v);
        put_le32(p + 4, v >> 32);
}

uint32_t erofs_crc32c(uint32_t crc, const void *data, size_t size) {
        const uint8_t *p = data;

        for (size_t i = 0; i < size; i++) {
                crc ^= p[i];
                for (unsigned k = 0; k < 8; k++)
                        crc = (crc >> 1) ^ (0x82F63B78U & -(crc & 1));
        }
        return crc;
}

static int write_full(int fd, const void *data, size_t size, uint64_t offset) {
        const uint8_t *p = data;

        while (size > 0) {
                ssize_t n = pwrite(fd, p, size, (off_t) offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return error_set(negative_errno(), "failed to write the EROFS image: %m");
                }
                p += n;
                size -= n;
                offset += n;
        }
        return 0;
}

static uint64_t name_hash(const ErofsInode *dir, const char *name, size_t len) {
        uint64_t h = 0xcbf29ce484222325ULL ^ ((uintptr_t) dir * 0x9E3779B97F4A7C15ULL);

        for (size_t i = 0; i < len; i++) {
                h ^= (uint8_t) name[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

static ErofsDentry **hash_slot(ErofsWriter *w, const ErofsInode *dir, const char *name, size_t len) {
        ErofsDentry **slot = &w->buckets[name_hash(dir, name, len) & (w->n_buckets - 1)];

        for (; *slot; slot = &(*slot)->hash_next)
                if ((*slot)->dir == dir && (*slot)->name_len == len && memcmp((*slot)->name, name, len) == 0)
                        break;
        return slot;
}

static int hash_grow(ErofsWriter *w) {
        size_t n = w->n_buckets * 2;
        ErofsDentry **buckets;

        buckets = calloc(n, sizeof(ErofsDentry *));
        if (!buckets)
                return -ENOMEM;

        for (size_t i = 0; i < w->n_buckets; i++)
                while (w->buckets[i]) {
                        ErofsDentry *d = w->buckets[i];
                        size_t b = name_hash(d->dir, d->name, d->name_len) & (n - 1);

                        w->buckets[i] = d->hash_next;
                        d->hash_next = buckets[b];
                        buckets[b] = d;
                }

        free(w->buckets);
        w->buckets = buckets;
        w->n_buckets = n;
        return 0;
}

static ErofsDentry *dentry_find(ErofsWriter *w, const ErofsInode *dir, const char *name, size_t len) {
        return *hash_slot(w, dir, name, len);
}

static void inode_unref(ErofsWriter *w, ErofsInode *inode);

/* Drop a directory's entries, which frees the subtree unless hard links elsewhere keep parts of it. */
static void inode_drop_children(ErofsWriter *w, ErofsInode *dir) {
        for (uint32_t i = 0; i < dir->n_children; i++) {
                ErofsDentry *d = dir->children[i];
                ErofsDentry **slot = hash_slot(w, d->dir, d->name, d->name_len);

                *slot = d->hash_next;
                w->n_dentries--;
                inode_unref(w, d->inode);
                free(d);
        }

        free(dir->children);
        dir->children = NULL;
        dir->n_children = 0;
}

static void inode_unref(ErofsWriter *w, ErofsInode *inode) {
        if (!inode || --inode->refs > 0)
                return;

        if (S_ISDIR(inode->mode))
                inode_drop_children(w, inode);
        free(inode->xattrs);
        free(inode->symlink);
        free(inode);
}

static ErofsInode *inode_new(const ErofsAttr *attr) {
        ErofsInode *inode = calloc(1, sizeof(ErofsInode));

        if (!inode)
                return NULL;

        inode->mode = attr->mode;
        inode->uid = attr->uid;
        inode->gid = attr->gid;
        inode->mtime = attr->mtime;
        inode->mtime_nsec = attr->mtime_nsec;
        return inode;
}

int erofs_writer_new(int fd, const uint8_t uuid[16], int64_t build_time, ErofsWriter **ret) {
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;

        if (ftruncate(fd, 0) < 0)
                return error_set(negative_errno(), "failed to truncate the EROFS image: %m");

        w = calloc(1, sizeof(ErofsWriter));
        if (!w)
                return -ENOMEM;

        w->fd = fd;
        memcpy(w->uuid, uuid, sizeof(w->uuid));
        w->build_time = build_time;
        w->next_block = 1;      /* block 0 holds the superblock */

        w->n_buckets = 1024;
        w->buckets = calloc(w->n_buckets, sizeof(ErofsDentry *));
        if (!w->buckets)
                return -ENOMEM;

        w->root = inode_new(&(ErofsAttr) { .mode = S_IFDIR | 0755 });
        if (!w->root)
                return -ENOMEM;
        w->root->refs = 1;
        w->root->implicit_mtime = true;
        w->root->parent = w->root;

        *ret = TAKE_PTR(w);
        return 0;
}

ErofsWriter *erofs_writer_free(ErofsWriter *w) {
        if (!w)
                return NULL;

        inode_unref(w, w->root);
        free(w->buckets);
        free(w->buffer);
        free(w);
        return NULL;
}

void erofs_writer_set_build_time(ErofsWriter *w, int64_t build_time) {
        w->build_time = build_time;
}

static bool component_valid(const char *name, size_t len) {
        if (len == 0 || len > EROFS_NAME_MAX)
                return false;
        if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
                return false;
        return !memchr(name, '\0', len);
}

/* The children array has room for 4 entries, then for the next power of two. */
static uint32_t children_capacity(uint32_t n_children) {
        uint32_t capacity = 4;

        while (capacity < n_children)
                capacity *= 2;
        return capacity;
}

static int dir_add_child(ErofsWriter *w, ErofsInode *dir, const char *name, size_t len, ErofsInode *inode) {
        ErofsDentry *d;

        if (!dir->children || dir->n_children == children_capacity(dir->n_children)) {
                uint32_t n = dir->children ? dir->n_children * 2 : 4;
                ErofsDentry **children = reallocarray(dir->children, n, sizeof(ErofsDentry *));

                if (!children)
                        return -ENOMEM;
                dir->children = children;
        }

        if (w->n_dentries >= w->n_buckets && hash_grow(w) < 0)
                return -ENOMEM;

        d = malloc(sizeof(ErofsDentry) + len);
        if (!d)
                return -ENOMEM;
        d->dir = dir;
        d->inode = inode;
        d->name_len = len;
        memcpy(d->name, name, len);

        ErofsDentry **slot = hash_slot(w, dir, name, len);
        d->hash_next = *slot;
        *slot = d;
        w->n_dentries++;
        dir->children[dir->n_children++] = d;

        inode->refs++;
        if (S_ISDIR(inode->mode))
                inode->parent = dir;
        return 0;
}

/* Walk to the directory that contains path's last component. With create, missing directories are
 * made with default attributes. */
static int writer_walk(ErofsWriter *w, const char *path, bool create, ErofsInode **ret_dir,
                       const char **ret_name, size_t *ret_len) {
        ErofsInode *dir = w->root;
        const char *p = path;
        int r;

        for (;;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t) (slash - p) : strlen(p);

                if (!component_valid(p, len))
                        return error_set(-EINVAL, "invalid path '%s'", path);

                if (!slash) {
                        *ret_dir = dir;
                        *ret_name = p;
                        *ret_len = len;
                        return 0;
                }

                ErofsDentry *d = dentry_find(w, dir, p, len);
                if (!d) {
                        if (!create)
                                return -ENOENT;

                        ErofsInode *sub = inode_new(&(ErofsAttr) { .mode = S_IFDIR | 0755 });
                        if (!sub)
                                return -ENOMEM;
                        sub->implicit_mtime = true;

                        r = dir_add_child(w, dir, p, len, sub);
                        if (r < 0) {
                                free(sub);
                                return r;
                        }
                        dir = sub;
                } else if (!S_ISDIR(d->inode->mode))
                        return error_set(-ENOTDIR, "parent '%.*s' of '%s' is not a directory",
                                         (int) (slash - path), path, path);
                else
                        dir = d->inode;

                p = slash + 1;
        }
}

/* Name inode at path, replacing whatever was there. On failure the caller still owns inode. */
static int writer_link(ErofsWriter *w, const char *path, ErofsInode *inode) {
        ErofsInode *dir;
        const char *name;
        size_t len;
        int r;

        if (w->finished)
                return error_set(-EINVAL, "EROFS image is already finished");
        if (isempty(path))
                return error_set(-EISDIR, "root directory cannot be replaced by a non-directory");

        r = writer_walk(w, path, /* create= */ true, &dir, &name, &len);
        if (r < 0)
                return r;

        ErofsDentry *d = dentry_find(w, dir, name, len);
        if (!d)
                return dir_add_child(w, dir, name, len, inode);

        /* Take the new reference first: the old inode may be the same one (a file linked to itself). */
        ErofsInode *old = d->inode;
        inode->refs++;
        d->inode = inode;
        if (S_ISDIR(inode->mode))
                inode->parent = dir;
        inode_unref(w, old);
        return 0;
}

static int writer_add_inode(ErofsWriter *w, const char *path, ErofsInode *inode, ErofsInode **ret) {
        int r;

        r = writer_link(w, path, inode);
        if (r < 0) {
                free(inode->symlink);
                free(inode);
                return r;
        }

        if (ret)
                *ret = inode;
        return 0;
}

int erofs_writer_lookup(ErofsWriter *w, const char *path, ErofsInode **ret) {
        ErofsInode *dir;
        const char *name;
        size_t len;
        int r;

        if (isempty(path)) {
                *ret = w->root;
                return 0;
        }

        r = writer_walk(w, path, /* create= */ false, &dir, &name, &len);
        if (r < 0)
                return r;

        ErofsDentry *d = dentry_find(w, dir, name, len);
        if (!d)
                return -ENOENT;

        *ret = d->inode;
        return 0;
}

int erofs_writer_ensure_dir(ErofsWriter *w, const char *path, ErofsInode **ret) {
        ErofsInode *inode;
        int r;

        r = erofs_writer_lookup(w, path, &inode);
        if (r == -ENOENT) {
                ErofsInode *dir = inode_new(&(ErofsAttr) { .mode = S_IFDIR | 0755 });
                if (!dir)
                        return -ENOMEM;
                dir->implicit_mtime = true;
                return writer_add_inode(w, path, dir, ret);
        }
        if (r < 0)
                return r;
        if (!S_ISDIR(inode->mode))
                return error_set(-ENOTDIR, "'%s' is not a directory", path);

        *ret = inode;
        return 0;
}

int erofs_writer_mkdir(ErofsWriter *w, const char *path, const ErofsAttr *attr, ErofsInode **ret) {
        ErofsInode *inode;
        int r;

        r = erofs_writer_lookup(w, path, &inode);
        if (r >= 0 && S_ISDIR(inode->mode)) {
                inode->mode = S_IFDIR | (attr->mode & 07777);
                inode->uid = attr->uid;
                inode->gid = attr->gid;
                inode->mtime = attr->mtime;
                inode->mtime_nsec = attr->mtime_nsec;
                inode->implicit_mtime = false;
                if (ret)
                        *ret = inode;
                return 0;
        }
        if (r < 0 && r != -ENOENT && r != -ENOTDIR)
                return r;

        inode = inode_new(attr);
        if (!inode)
                return -ENOMEM;
        inode->mode = S_IFDIR | (attr->mode & 07777);

        return writer_add_inode(w, path, inode, ret);
}

int erofs_writer_add_file(ErofsWriter *w, const char *path, const ErofsAttr *attr, uint64_t size,
                          ErofsInode **ret) {
        uint64_t blocks = DIV_ROUND_UP(size, (uint64_t) EROFS_BLOCK_SIZE);
        ErofsInode *inode;
        int r;

        /* Block addresses are 32 bits wide, which caps the image at 16 TiB. */
        if (size > UINT64_MAX - EROFS_BLOCK_SIZE || w->next_block + blocks > UINT32_MAX)
                return error_set(-EFBIG, "file '%s' of %" PRIu64 " bytes does not fit, the EROFS image "
                                 "would be over 16 TiB", path, size);

        inode = inode_new(attr);
        if (!inode)
                return -ENOMEM;
        inode->mode = S_IFREG | (attr->mode & 07777);
        inode->size = size;
        inode->blkaddr = blocks > 0 ? (uint32_t) w->next_block : 0;

        r = writer_add_inode(w, path, inode, ret);
        if (r < 0)
                return r;

        w->next_block += blocks;
        return 0;
}

static int data_flush(ErofsWriter *w) {
        uint64_t end = w->buffer_offset + w->buffer_used;
        int r;

        if (w->buffer_used == 0)
                return 0;

        r = write_full(w->fd, w->buffer, w->buffer_used, w->buffer_offset);
        if (r < 0)
                return r;
        w->buffer_used = 0;

        /* The layer converter writes in ascending order. A run that ends below the start of the next
         * writeback range moves that start back, which at worst repeats a request. Errors are
         * ignored because this only starts writeback early, and the caller's fsync() still makes
         * the data durable. */
        if (end < w->writeback_offset)
                w->writeback_offset = end;
        if (end - w->writeback_offset >= DATA_WRITEBACK_SIZE) {
                (void) sync_file_range(w->fd, (off_t) w->writeback_offset, (off_t) (end - w->writeback_offset),
                                       SYNC_FILE_RANGE_WRITE);
                w->writeback_offset = end;
        }
        return 0;
}

int erofs_writer_write(ErofsWriter *w, ErofsInode *file, uint64_t offset, const void *data, size_t size) {
        uint64_t pos, buffer_end = w->buffer_offset + w->buffer_used;
        int r;

        if (!S_ISREG(file->mode))
                return error_set(-EINVAL, "data written to an inode that is not a regular file");
        if (offset > file->size || size > file->size - offset)
                return error_set(-EFBIG, "data of %zu bytes at offset %" PRIu64 " runs past the file size "
                                 "of %" PRIu64 " bytes", size, offset, file->size);
        if (size == 0)
                return 0;

        pos = (uint64_t) file->blkaddr * EROFS_BLOCK_SIZE + offset;

        /* Data goes on the current run when it follows it within less than a block. The gap is then
         * padding after a file or a small hole of a sparse file, and because the run ends at
         * data_end, nothing was written there, so it is filled with zeros. Bigger holes stay holes. */
        if (w->buffer_used > 0 &&
            (buffer_end != w->data_end || pos < buffer_end || pos - buffer_end >= EROFS_BLOCK_SIZE ||
             pos + size - w->buffer_offset > DATA_BUFFER_SIZE)) {
                r = data_flush(w);
                if (r < 0)
                        return r;
        }

        if (size >= DATA_BUFFER_SIZE) {
                r = write_full(w->fd, data, size, pos);
                if (r < 0)
                        return r;
        } else {
                if (!w->buffer) {
                        w->buffer = malloc(DATA_BUFFER_SIZE);
                        if (!w->buffer)
                                return -ENOMEM;
                }
                if (w->buffer_used == 0)
                        w->buffer_offset = pos;
                memset(w->buffer + w->buffer_used, 0, pos - (w->buffer_offset + w->buffer_used));
                memcpy(w->buffer + (pos - w->buffer_offset), data, size);
                w->buffer_used = pos + size - w->buffer_offset;
        }

        w->data_end = MAX(w->data_end, pos + size);
        return 0;
}

int erofs_writer_add_symlink(ErofsWriter *w, const char *path, const ErofsAttr *attr, const char *target,
                             ErofsInode **ret) {
        size_t len = strlen(target);
        ErofsInode *inode;

        if (len == 0)
                return error_set(-EINVAL, "symlink '%s' has an empty target", path);
        if (len > EROFS_SYMLINK_MAX)
                return error_set(-ENAMETOOLONG, "symlink '%s' has a target of %zu bytes, over the limit "
                                 "of %u", path, len, EROFS_SYMLINK_MAX);

        inode = inode_new(attr);
        if (!inode)
                return -ENOMEM;
        inode->mode = S_IFLNK | (attr->mode & 07777);
        inode->size = len;
        inode->symlink = strdup(target);
        if (!inode->symlink) {
                free(inode);
                return -ENOMEM;
        }

        return writer_add_inode(w, path, inode, ret);
}

int erofs_writer_add_special(ErofsWriter *w, const char *path, const ErofsAttr *attr, ErofsInode **ret) {
        uint32_t rdev = 0;
        ErofsInode *inode;

        if (S_ISCHR(attr->mode) || S_ISBLK(attr->mode)) {
                /* The kernel's "new" dev_t encoding has 12 bits of major and 20 bits of minor. */
                if (attr->rdev_major > 0xfff || attr->rdev_minor > 0xfffff)
                        return error_set(-ERANGE, "device '%s' has the number %" PRIu32 ":%" PRIu32
                                         ", over the maximum of 4095:1048575", path,
                                         attr->rdev_major, attr->rdev_minor);
                rdev = (attr->rdev_minor & 0xff) | (attr->rdev_major << 8) | ((attr->rdev_minor & ~0xffU) << 12);
        } else if (!S_ISFIFO(attr->mode) && !S_ISSOCK(attr->mode))
                return error_set(-EINVAL, "'%s' has the unsupported file type 0%o", path,
                                 attr->mode & S_IFMT);

        inode = inode_new(attr);
        if (!inode)
                return -ENOMEM;
        inode->rdev = rdev;

        return writer_add_inode(w, path, inode, ret);
}

int erofs_writer_add_hardlink(ErofsWriter *w, const char *path, const char *target) {
        ErofsInode *inode;
        int r;

        r = erofs_writer_lookup(w, target, &inode);
        if (r == -ENOENT || r == -ENOTDIR)
                return error_set(-ENOENT, "hard link target '%s' of '%s' not found", target, path);
        if (r < 0)
                return r;
        if (S_ISDIR(inode->mode))
                return error_set(-EPERM, "hard link target '%s' of '%s' is a directory", target, path);

        return writer_link(w, path, inode);
}

uint32_t erofs_inode_mode(const ErofsInode *inode) {
        return inode->mode;
}

bool erofs_inode_is_whiteout(const ErofsInode *inode) {
        return S_ISCHR(inode->mode) && inode->rdev == 0;
}

static int xattr_name_index(const char *name, const char **ret_suffix) {
        static const struct {
                const char *prefix;
                int index;
                bool whole_name;
        } table[] = {
                { "user.",                    EROFS_XATTR_INDEX_USER,              false },
                { "trusted.",                 EROFS_XATTR_INDEX_TRUSTED,           false },
                { "security.",                EROFS_XATTR_INDEX_SECURITY,          false },
                { "system.posix_acl_access",  EROFS_XATTR_INDEX_POSIX_ACL_ACCESS,  true  },
                { "system.posix_acl_default", EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT, true  },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                size_t n = strlen(table[i].prefix);

                if (!strneq(name, table[i].prefix, n))
                        continue;
                if (table[i].whole_name ? name[n] != '\0' : name[n] == '\0')
                        continue;

                *ret_suffix = name + n;
                return table[i].index;
        }
        return -EOPNOTSUPP;
}

bool erofs_xattr_name_supported(const char *name) {
        const char *suffix;

        return xattr_name_index(name, &suffix) >= 0 && strlen(suffix) <= EROFS_NAME_MAX;
}

static uint32_t xattr_entry_size(const uint8_t *e) {
        return ALIGN_TO(EROFS_XATTR_ENTRY_HEADER_SIZE + e[0] + (uint32_t) (e[2] | e[3] << 8), 4U);
}

/* Return the offset of the entry (index, suffix) in the packed xattrs, or -ENOENT. */
static int64_t xattr_find(const ErofsInode *inode, int index, const char *suffix) {
        size_t len = strlen(suffix);

        for (uint32_t off = 0; off < inode->xattrs_size; off += xattr_entry_size(inode->xattrs + off)) {
                const uint8_t *e = inode->xattrs + off;

                if (e[1] == index && e[0] == len && memcmp(e + EROFS_XATTR_ENTRY_HEADER_SIZE, suffix, len) == 0)
                        return off;
        }
        return -ENOENT;
}

bool erofs_inode_has_xattr(const ErofsInode *inode, const char *name) {
        const char *suffix;
        int index = xattr_name_index(name, &suffix);

        return index >= 0 && xattr_find(inode, index, suffix) >= 0;
}

void erofs_inode_clear_xattrs(ErofsInode *inode) {
        free(inode->xattrs);
        inode->xattrs = NULL;
        inode->xattrs_size = 0;
}

int erofs_inode_set_xattr(ErofsInode *inode, const char *name, const void *value, size_t size) {
        const char *suffix;
        int index;

        index = xattr_name_index(name, &suffix);
        if (index < 0)
                return error_set(-EOPNOTSUPP, "xattr '%s' has a prefix EROFS cannot store", name);

        size_t suffix_len = strlen(suffix);
        if (suffix_len > EROFS_NAME_MAX)
                return error_set(-ENAMETOOLONG, "xattr name '%s' is over the limit of %u bytes",
                                 name, EROFS_NAME_MAX);

        /* Remove an old value first, then check the ibody limit with the new entry. */
        int64_t old = xattr_find(inode, index, suffix);
        if (old >= 0) {
                uint32_t n = xattr_entry_size(inode->xattrs + old);

                memmove(inode->xattrs + old, inode->xattrs + old + n, inode->xattrs_size - old - n);
                inode->xattrs_size -= n;
        }

        uint64_t entry_size = ALIGN_TO(EROFS_XATTR_ENTRY_HEADER_SIZE + suffix_len + (uint64_t) size, 4U);
        uint64_t total = EROFS_XATTR_IBODY_HEADER_SIZE + inode->xattrs_size + entry_size;
        if (size > UINT16_MAX || total > EROFS_XATTR_IBODY_MAX)
                return error_set(-E2BIG, "xattrs take %" PRIu64 " bytes with '%s', over the limit of %u",
                                 total, name, EROFS_XATTR_IBODY_MAX);

        uint8_t *xattrs = realloc(inode->xattrs, inode->xattrs_size + entry_size);
        if (!xattrs)
                return -ENOMEM;
        inode->xattrs = xattrs;

        uint8_t *e = xattrs + inode->xattrs_size;
        memset(e, 0, entry_size);
        e[0] = suffix_len;
        e[1] = index;
        put_le16(e + 2, size);
        memcpy(e + EROFS_XATTR_ENTRY_HEADER_SIZE, suffix, suffix_len);
        if (size > 0)
                memcpy(e + EROFS_XATTR_ENTRY_HEADER_SIZE + suffix_len, value, size);
        inode->xattrs_size += entry_size;
        return 0;
}

/* ---- Layout and output, all in erofs_writer_finish() ---- */

static int dentry_compare(const void *a, const void *b) {
        const ErofsDentry *x = *(ErofsDentry * const *) a, *y = *(ErofsDentry * const *) b;
        int c = memcmp(x->name, y->name, MIN(x->name_len, y->name_len));

        if (c != 0)
                return c;
        return (int) x->name_len - (int) y->name_len;
}

static int name_compare(const char *a, size_t a_len, const char *b, size_t b_len) {
        int c = memcmp(a, b, MIN(a_len, b_len));

        return c != 0 ? c : (a_len > b_len) - (a_len < b_len);
}

/* A directory's entries in on-disk order: the sorted children with "." and ".." merged in, because
 * the kernel binary-searches the whole directory and names such as "-x" sort before ".". */
typedef struct DirEntries {
        const ErofsInode *dir;
        uint32_t count;
        uint32_t dot;           /* position of "." */
        uint32_t dotdot;        /* position of ".." */
} DirEntries;

static DirEntries dir_entries(const ErofsInode *dir) {
        DirEntries e = { .dir = dir, .count = dir->n_children + 2 };
        uint32_t below_dot = 0, below_dotdot = 0;

        for (uint32_t i = 0; i < dir->n_children; i++) {
                const ErofsDentry *d = dir->children[i];

                below_dot += name_compare(d->name, d->name_len, ".", 1) < 0;
                below_dotdot += name_compare(d->name, d->name_len, "..", 2) < 0;
        }

        e.dot = below_dot;
        e.dotdot = below_dotdot + 1;
        return e;
}

static void dir_entry_get(const DirEntries *e, uint32_t k, const char **ret_name, size_t *ret_len,
                          const ErofsInode **ret_inode) {
        if (k == e->dot) {
                *ret_name = ".";
                *ret_len = 1;
                *ret_inode = e->dir;
        } else if (k == e->dotdot) {
                *ret_name = "..";
                *ret_len = 2;
                *ret_inode = e->dir->parent;
        } else {
                const ErofsDentry *d = e->dir->children[k - (k > e->dot) - (k > e->dotdot)];

                *ret_name = d->name;
                *ret_len = d->name_len;
                *ret_inode = d->inode;
        }
}

static uint8_t file_type(uint32_t mode) {
        switch (mode & S_IFMT) {
        case S_IFREG:
                return EROFS_FT_REG_FILE;
        case S_IFDIR:
                return EROFS_FT_DIR;
        case S_IFCHR:
                return EROFS_FT_CHRDEV;
        case S_IFBLK:
                return EROFS_FT_BLKDEV;
        case S_IFIFO:
                return EROFS_FT_FIFO;
        case S_IFSOCK:
                return EROFS_FT_SOCK;
        case S_IFLNK:
                return EROFS_FT_SYMLINK;
        default:
                return EROFS_FT_UNKNOWN;
        }
}

typedef int (*dir_block_fn)(const uint8_t *block, uint32_t index, uint32_t used, void *userdata);

/* Pack the directory into blocks. An entry never spans two blocks, so a block ends where the next
 * entry does not fit. With fn == NULL only the size is computed (no nids are needed for that). */
static int dir_pack(const ErofsInode *dir, uint8_t *block, dir_block_fn fn, void *userdata, uint64_t *ret_size) {
        DirEntries e = dir_entries(dir);
        uint32_t index = 0, k = 0;
        uint64_t size = 0;
        int r;

        while (k < e.count) {
                uint32_t first = k, used = 0;
                const char *name;
                size_t len;
                const ErofsInode *inode;

                for (; k < e.count; k++) {
                        dir_entry_get(&e, k, &name, &len, &inode);
                        if (used + EROFS_DIRENT_SIZE + len > EROFS_BLOCK_SIZE)
                                break;
                        used += EROFS_DIRENT_SIZE + len;
                }

                if (fn) {
                        uint32_t nameoff = (k - first) * EROFS_DIRENT_SIZE;

                        memset(block, 0, EROFS_BLOCK_SIZE);
                        for (uint32_t i = first; i < k; i++) {
                                uint8_t *de = block + (i - first) * EROFS_DIRENT_SIZE;

                                dir_entry_get(&e, i, &name, &len, &inode);
                                put_le64(de, inode->nid);
                                put_le16(de + 8, nameoff);
                                de[10] = file_type(inode->mode);
                                memcpy(block + nameoff, name, len);
                                nameoff += len;
                        }

                        r = fn(block, index, used, userdata);
                        if (r < 0)
                                return r;
                }

                size = (uint64_t) index * EROFS_BLOCK_SIZE + used;
                index++;
        }

        if (ret_size)
                *ret_size = size;
        return 0;
}

typedef struct Layout {
        ErofsInode **inodes;    /* in layout order, root first */
        size_t n_inodes;
        size_t n_allocated;
        uint64_t meta_blkaddr;
        uint64_t meta_size;     /* bytes used in the metadata area */
        uint64_t total_blocks;
} Layout;

static int layout_push(Layout *l, ErofsInode *inode) {
        if (l->n_inodes == l->n_allocated) {
                size_t n = l->n_allocated ? l->n_allocated * 2 : 64;
                ErofsInode **inodes = reallocarray(l->inodes, n, sizeof(ErofsInode *));

                if (!inodes)
                        return -ENOMEM;
                l->inodes = inodes;
                l->n_allocated = n;
        }

        l->inodes[l->n_inodes++] = inode;
        inode->ino = l->n_inodes;
        return 0;
}

/* Collect all inodes breadth-first, sort every directory and compute directory sizes. A hard-linked
 * inode is collected once, where it is met first. */
static int layout_collect(ErofsWriter *w, Layout *l) {
        int r;

        r = layout_push(l, w->root);
        if (r < 0)
                return r;

        for (size_t i = 0; i < l->n_inodes; i++) {
                ErofsInode *dir = l->inodes[i];

                if (!S_ISDIR(dir->mode))
                        continue;

                if (dir->n_children > 0)
                        qsort(dir->children, dir->n_children, sizeof(ErofsDentry *), dentry_compare);

                dir->n_subdirs = 0;
                for (uint32_t k = 0; k < dir->n_children; k++) {
                        ErofsInode *child = dir->children[k]->inode;

                        if (S_ISDIR(child->mode))
                                dir->n_subdirs++;
                        if (child->ino != 0)
                                continue;

                        r = layout_push(l, child);
                        if (r < 0)
                                return r;
                }

                r = dir_pack(dir, NULL, NULL, NULL, &dir->size);
                if (r < 0)
                        return r;
        }
        return 0;
}

static uint32_t inode_nlink(const ErofsInode *inode) {
        if (S_ISDIR(inode->mode))
                return 2 + inode->n_subdirs;
        return inode->refs;
}

static int64_t inode_mtime(const ErofsWriter *w, const ErofsInode *inode) {
        return inode->implicit_mtime ? w->build_time : inode->mtime;
}

static uint32_t inode_mtime_nsec(const ErofsInode *inode) {
        return inode->implicit_mtime ? 0 : inode->mtime_nsec;
}

static uint32_t inode_xattr_ibody_size(const ErofsInode *inode) {
        return inode->xattrs_size > 0 ? EROFS_XATTR_IBODY_HEADER_SIZE + inode->xattrs_size : 0;
}

/* The bytes that would sit right after the inode with FLAT_INLINE. Regular files are always
 * FLAT_PLAIN: inlining their tails would mean keeping the tails of all files in memory. */
static uint32_t inode_tail_size(const ErofsInode *inode) {
        if (S_ISDIR(inode->mode) || S_ISLNK(inode->mode))
                return inode->size % EROFS_BLOCK_SIZE;
        return 0;
}

/* Give every inode its nid. Inodes are placed on 32-byte slots after the data, and an inode with its
 * xattrs and inline tail never crosses a block boundary. The root comes first at nid 1: nid 0 would
 * be st_ino 0, which readdir() hides, and the superblock stores the root nid in 16 bits. */
static int layout_place(ErofsWriter *w, Layout *l) {
        uint64_t pos = EROFS_INODE_SLOT_SIZE;

        l->meta_blkaddr = w->next_block;

        for (size_t i = 0; i < l->n_inodes; i++) {
                ErofsInode *inode = l->inodes[i];
                uint32_t isize, xsize = inode_xattr_ibody_size(inode), tail = inode_tail_size(inode);

                inode->extended = inode->uid > UINT16_MAX || inode->gid > UINT16_MAX ||
                                  inode->size > UINT32_MAX || inode_nlink(inode) > UINT16_MAX ||
                                  inode_mtime(w, inode) != w->build_time || inode_mtime_nsec(inode) != 0;
                isize = inode->extended ? EROFS_INODE_EXTENDED_SIZE : EROFS_INODE_COMPACT_SIZE;

                inode->inline_tail = tail > 0 && isize + xsize + tail <= EROFS_BLOCK_SIZE;
                if (!inode->inline_tail)
                        tail = 0;

                if (pos % EROFS_BLOCK_SIZE + isize + xsize + tail > EROFS_BLOCK_SIZE)
                        pos = ALIGN_TO(pos, (uint64_t) EROFS_BLOCK_SIZE);

                inode->nid = pos / EROFS_INODE_SLOT_SIZE;
                pos = ALIGN_TO(pos + isize + xsize + tail, (uint64_t) EROFS_INODE_SLOT_SIZE);
        }
        l->meta_size = pos;

        /* Directory blocks that are not inline, and symlinks whose target did not fit inline, go after
         * the metadata area. */
        uint64_t block = l->meta_blkaddr + DIV_ROUND_UP(pos, (uint64_t) EROFS_BLOCK_SIZE);
        for (size_t i = 0; i < l->n_inodes; i++) {
                ErofsInode *inode = l->inodes[i];
                uint64_t n;

                if (!S_ISDIR(inode->mode) && !S_ISLNK(inode->mode))
                        continue;

                n = inode->inline_tail ? inode->size / EROFS_BLOCK_SIZE :
                                         DIV_ROUND_UP(inode->size, (uint64_t) EROFS_BLOCK_SIZE);
                inode->blkaddr = n > 0 ? (uint32_t) block : EROFS_NULL_ADDR;
                block += n;

                if (block > UINT32_MAX)
                        break;
        }
        l->total_blocks = block;

        if (l->total_blocks > UINT32_MAX)
                return error_set(-EFBIG, "EROFS image would be over 16 TiB");
        return 0;
}

static void inode_encode(const ErofsWriter *w, const ErofsInode *inode, uint8_t *p) {
        uint32_t layout = inode->inline_tail ? EROFS_INODE_FLAT_INLINE : EROFS_INODE_FLAT_PLAIN;
        uint32_t xsize = inode_xattr_ibody_size(inode);
        uint16_t icount = xsize > 0 ? 1 + (xsize - EROFS_XATTR_IBODY_HEADER_SIZE) / 4 : 0;
        uint32_t u;

        if (S_ISCHR(inode->mode) || S_ISBLK(inode->mode))
                u = inode->rdev;
        else if (S_ISREG(inode->mode) || S_ISDIR(inode->mode) || S_ISLNK(inode->mode))
                u = inode->blkaddr;
        else
                u = 0;

        put_le16(p + 0, (layout << 1) | inode->extended);
        put_le16(p + 2, icount);
        put_le16(p + 4, inode->mode);
        put_le32(p + 16, u);
        put_le32(p + 20, inode->ino);

        if (inode->extended) {
                put_le64(p + 8, inode->size);
                put_le32(p + 24, inode->uid);
                put_le32(p + 28, inode->gid);
                put_le64(p + 32, (uint64_t) inode_mtime(w, inode));
                put_le32(p + 40, inode_mtime_nsec(inode));
                put_le32(p + 44, inode_nlink(inode));
        } else {
                put_le16(p + 6, inode_nlink(inode));
                put_le32(p + 8, inode->size);
                put_le16(p + 24, inode->uid);
                put_le16(p + 26, inode->gid);
        }

        if (xsize > 0)
                /* The 12-byte header stays zero: no name filter, no shared xattrs. */
                memcpy(p + (inode->extended ? EROFS_INODE_EXTENDED_SIZE : EROFS_INODE_COMPACT_SIZE) +
                       EROFS_XATTR_IBODY_HEADER_SIZE, inode->xattrs, inode->xattrs_size);
}

typedef struct MetaWriter {
        ErofsWriter *w;
        uint8_t block[EROFS_BLOCK_SIZE];
        uint64_t block_index;   /* absolute block number of block[] */
        bool dirty;

        /* The inode being written: where its inline tail goes. */
        const ErofsInode *inode;
        uint8_t *tail;
} MetaWriter;

static int meta_flush(MetaWriter *m) {
        int r;

        if (!m->dirty)
                return 0;

        r = write_full(m->w->fd, m->block, EROFS_BLOCK_SIZE, m->block_index * EROFS_BLOCK_SIZE);
        if (r < 0)
                return r;

        memset(m->block, 0, sizeof(m->block));
        m->dirty = false;
        return 0;
}

static int dir_block_write(const uint8_t *block, uint32_t index, uint32_t used, void *userdata) {
        MetaWriter *m = userdata;
        const ErofsInode *dir = m->inode;
        bool last = (uint64_t) index * EROFS_BLOCK_SIZE + used == dir->size;

        if (last && dir->inline_tail) {
                memcpy(m->tail, block, used);
                return 0;
        }

        return write_full(m->w->fd, block, last ? used : EROFS_BLOCK_SIZE,
                          ((uint64_t) dir->blkaddr + index) * EROFS_BLOCK_SIZE);
}

static int meta_write_inode(MetaWriter *m, const Layout *l, ErofsInode *inode, uint8_t *dir_block) {
        uint64_t pos = l->meta_blkaddr * EROFS_BLOCK_SIZE + inode->nid * EROFS_INODE_SLOT_SIZE;
        uint32_t isize = inode->extended ? EROFS_INODE_EXTENDED_SIZE : EROFS_INODE_COMPACT_SIZE;
        int r;

        if (pos / EROFS_BLOCK_SIZE != m->block_index) {
                r = meta_flush(m);
                if (r < 0)
                        return r;
                m->block_index = pos / EROFS_BLOCK_SIZE;
        }

        uint8_t *p = m->block + pos % EROFS_BLOCK_SIZE;
        inode_encode(m->w, inode, p);
        m->dirty = true;
        m->inode = inode;
        m->tail = p + isize + inode_xattr_ibody_size(inode);

        if (S_ISDIR(inode->mode))
                return dir_pack(inode, dir_block, dir_block_write, m, NULL);

        if (S_ISLNK(inode->mode)) {
                if (inode->inline_tail) {
                        memcpy(m->tail, inode->symlink, inode->size);
                        return 0;
                }
                return write_full(m->w->fd, inode->symlink, inode->size,
                                  (uint64_t) inode->blkaddr * EROFS_BLOCK_SIZE);
        }

        return 0;
}

static int superblock_write(ErofsWriter *w, const Layout *l) {
        uint8_t block[EROFS_BLOCK_SIZE] = {};
        uint8_t *sb = block + EROFS_SUPER_OFFSET;

        put_le32(sb + 0, EROFS_SUPER_MAGIC);
        put_le32(sb + 8, EROFS_FEATURE_COMPAT_SB_CHKSUM);
        sb[12] = EROFS_BLOCK_BITS;
        put_le16(sb + 14, w->root->nid);
        put_le64(sb + 16, l->n_inodes);
        put_le64(sb + 24, (uint64_t) w->build_time);
        put_le32(sb + 36, l->total_blocks);
        put_le32(sb + 40, l->meta_blkaddr);
        memcpy(sb + 48, w->uuid, sizeof(w->uuid));

        /* The checksum covers the rest of block 0, computed with the checksum field zero. */
        put_le32(sb + 4, erofs_crc32c(UINT32_MAX, sb, EROFS_BLOCK_SIZE - EROFS_SUPER_OFFSET));

        return write_full(w->fd, block, sizeof(block), 0);
}

int erofs_writer_finish(ErofsWriter *w, uint64_t *ret_size) {
        _cleanup_free_ MetaWriter *m = NULL;
        _cleanup_free_ uint8_t *dir_block = NULL;
        Layout l = {};
        int r;

        if (w->finished)
                return error_set(-EINVAL, "EROFS image is already finished");
        w->finished = true;

        r = data_flush(w);
        if (r < 0)
                return r;
        free(w->buffer);
        w->buffer = NULL;

        m = calloc(1, sizeof(MetaWriter));
        dir_block = malloc(EROFS_BLOCK_SIZE);
        if (!m || !dir_block)
                return -ENOMEM;
        m->w = w;

        r = layout_collect(w, &l);
        if (r < 0)
                goto finish;

        r = layout_place(w, &l);
        if (r < 0)
                goto finish;

        m->block_index = l.meta_blkaddr;
        for (size_t i = 0; i < l.n_inodes; i++) {
                r = meta_write_inode(m, &l, l.inodes[i], dir_block);
                if (r < 0)
                        goto finish;
        }

        r = meta_flush(m);
        if (r < 0)
                goto finish;

        r = superblock_write(w, &l);
        if (r < 0)
                goto finish;

        uint64_t size = l.total_blocks * EROFS_BLOCK_SIZE;
        if (ftruncate(w->fd, (off_t) size) < 0) {
                r = error_set(negative_errno(), "failed to resize the EROFS image: %m");
                goto finish;
        }

        if (ret_size)
                *ret_size = size;
        r = 0;

finish:
        free(l.inodes);
        return r;
}
