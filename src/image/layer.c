/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cocoon-build.h"
#include "erofs.h"
#include "error.h"
#include "layer.h"

#if HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"

/* Paths in error messages are cut to this many bytes, and control bytes are escaped, because
 * they come from the tar and end up on a terminal. */
#define PATH_QUOTE_MAX 200U

/* Maximum number of kernel (or initrd) candidates kept. Beyond it the oldest one is dropped. */
#define BOOT_CANDIDATES_MAX 16U

/* Bytes read from the layer stream at a time, and the size of the blocks of inflated tar handed
 * to libarchive. */
#define LAYER_READ_SIZE (64U * 1024U)
#define LAYER_INFLATE_SIZE (64U * 1024U)

#define BOOT_KERNEL_NAME "vmlinuz"
#define BOOT_INITRD_NAME "initrd.img"

typedef struct PathQuote {
        char text[PATH_QUOTE_MAX * 4 + 4];
} PathQuote;

static const char *path_quote(const char *s, PathQuote *q) {
        size_t len = strlen(s), o = 0;

        for (size_t i = 0; i < MIN(len, (size_t) PATH_QUOTE_MAX); i++) {
                unsigned char c = s[i];

                if (c < 0x20 || c == 0x7f || c == '\\')
                        o += sprintf(q->text + o, "\\x%02x", c);
                else
                        q->text[o++] = c;
        }
        if (len > PATH_QUOTE_MAX)
                o += sprintf(q->text + o, "...");
        q->text[o] = '\0';
        return q->text;
}

void layer_info_done(LayerInfo *info) {
        if (!info)
                return;

        free(info->kernel_name);
        free(info->initrd_name);
        *info = (LayerInfo) {};
}

static int path_check_whiteout(const char *name, const char *component, size_t len) {
        PathQuote q;

        if (len < strlen(WHITEOUT_PREFIX) || !strneq(component, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)))
                return 0;

        const char *target = component + strlen(WHITEOUT_PREFIX);
        size_t target_len = len - strlen(WHITEOUT_PREFIX);
        if (target_len == 0 || (target_len == 1 && target[0] == '.') ||
            (target_len == 2 && strneq(target, "..", 2)))
                return error_set(-EINVAL, "path '%s' is a whiteout for the invalid name '%.*s'",
                                 path_quote(name, &q), (int) target_len, target);
        return 0;
}

int layer_path_normalize(const char *name, char **ret) {
        _cleanup_free_ char *path = NULL;
        const char *last = NULL;
        size_t n = 0, last_len = 0;
        PathQuote q;
        int r;

        if (isempty(name))
                return error_set(-EINVAL, "tar entry has an empty path");
        if (name[0] == '/')
                return error_set(-EINVAL, "path '%s' is absolute", path_quote(name, &q));

        path = malloc(strlen(name) + 1);
        if (!path)
                return -ENOMEM;

        /* Empty and "." components are dropped, so "./a//b/" becomes "a/b". */
        for (const char *p = name; *p;) {
                size_t len = strcspn(p, "/");

                if (len == 2 && strneq(p, "..", 2))
                        return error_set(-EINVAL, "path '%s' has a '..' component", path_quote(name, &q));
                if (len > EROFS_NAME_MAX)
                        return error_set(-ENAMETOOLONG, "path '%s' has a component of %zu bytes, over the "
                                         "limit of %u", path_quote(name, &q), len, EROFS_NAME_MAX);

                if (len > 0 && !(len == 1 && p[0] == '.')) {
                        if (n > 0)
                                path[n++] = '/';
                        memcpy(path + n, p, len);
                        last = p;
                        last_len = len;
                        n += len;
                }

                p += len;
                if (*p == '/')
                        p++;
        }
        path[n] = '\0';

        if (n > LAYER_PATH_MAX)
                return error_set(-ENAMETOOLONG, "path '%s' is %zu bytes, over the limit of %u",
                                 path_quote(name, &q), n, LAYER_PATH_MAX);

        if (last) {
                r = path_check_whiteout(name, last, last_len);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(path);
        return 0;
}

typedef enum BootKind {
        BOOT_KERNEL,
        BOOT_INITRD,
        _BOOT_KIND_MAX,
} BootKind;

typedef struct BootCandidate {
        BootKind kind;
        char *path;             /* normalised tar path */
        const char *suffix;     /* points into path, after "vmlinuz" or "initrd.img" */
        uint64_t seq;           /* entry number, for "the last one seen wins" */
        unsigned tmp_id;        /* its copy in the boot directory, see boot_tmp_name() */
} BootCandidate;

typedef struct LayerSource LayerSource;

typedef struct LayerConverter {
        struct archive *archive;
        LayerSource *source;
        ErofsWriter *writer;
        uint64_t max_entries;
        uint64_t max_file_size;
        uint64_t entries;

        int boot_dir_fd;
        BootCandidate candidates[_BOOT_KIND_MAX * BOOT_CANDIDATES_MAX];
        size_t n_candidates;
        unsigned next_tmp_id;
} LayerConverter;

static void boot_tmp_name(unsigned id, char buf[static 64]) {
        snprintf(buf, 64, ".cocoon-boot-%u.tmp", id);
}

static void boot_candidate_drop(LayerConverter *c, size_t i) {
        BootCandidate *b = c->candidates + i;

        if (c->boot_dir_fd >= 0) {
                char tmp[64];

                boot_tmp_name(b->tmp_id, tmp);
                (void) unlinkat(c->boot_dir_fd, tmp, 0);
        }
        free(b->path);

        memmove(b, b + 1, (c->n_candidates - i - 1) * sizeof(BootCandidate));
        c->n_candidates--;
}

static void layer_converter_done(LayerConverter *c) {
        while (c->n_candidates > 0)
                boot_candidate_drop(c, c->n_candidates - 1);

        if (c->archive)
                archive_read_free(c->archive);
        free(c->source);
        erofs_writer_free(c->writer);
}

/* A later entry at a candidate's path replaces it, and a non-directory replacing a directory
 * removes all candidates below it. */
static void boot_candidates_forget(LayerConverter *c, const char *path, bool is_dir) {
        size_t len = strlen(path);

        for (size_t i = c->n_candidates; i > 0; i--) {
                const char *p = c->candidates[i - 1].path;

                if (streq(p, path) || (!is_dir && (len == 0 || (strneq(p, path, len) && p[len] == '/'))))
                        boot_candidate_drop(c, i - 1);
        }
}

static bool boot_path_match(const char *path, const char *stem, const char **ret_suffix) {
        const char *base = path;
        size_t len;

        if (strneq(path, "boot/", 5))
                base = path + 5;
        if (strchr(base, '/') || !strneq(base, stem, strlen(stem)))
                return false;

        len = strlen(base);
        if (len >= 4 && streq(base + len - 4, ".old"))
                return false;

        *ret_suffix = base + strlen(stem);
        return true;
}

/* Register a regular file as a kernel or initrd candidate, and return the fd its bytes are copied
 * to (or -EBADF when there is no boot directory or the file is not a candidate). */
static int boot_candidate_add(LayerConverter *c, const char *path, int *ret_fd) {
        const char *suffix;
        BootKind kind;
        size_t count = 0, oldest = SIZE_MAX;

        *ret_fd = -EBADF;

        if (boot_path_match(path, BOOT_KERNEL_NAME, &suffix))
                kind = BOOT_KERNEL;
        else if (boot_path_match(path, BOOT_INITRD_NAME, &suffix))
                kind = BOOT_INITRD;
        else
                return 0;

        for (size_t i = 0; i < c->n_candidates; i++)
                if (c->candidates[i].kind == kind) {
                        count++;
                        if (oldest == SIZE_MAX)
                                oldest = i;
                }
        if (count >= BOOT_CANDIDATES_MAX)
                boot_candidate_drop(c, oldest);

        BootCandidate *b = c->candidates + c->n_candidates;
        *b = (BootCandidate) {
                .kind = kind,
                .path = strdup(path),
                .seq = c->entries,
                .tmp_id = c->next_tmp_id++,
        };
        if (!b->path)
                return -ENOMEM;
        b->suffix = b->path + (suffix - path);
        c->n_candidates++;

        if (c->boot_dir_fd < 0)
                return 0;

        char tmp[64];
        boot_tmp_name(b->tmp_id, tmp);
        int fd = openat(c->boot_dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return error_set(negative_errno(), "failed to create '%s' in the boot directory: %m", tmp);

        *ret_fd = fd;
        return 0;
}

/* Choose the newest kernel that has an initrd with the same suffix (vmlinuz-6.1.0-x and
 * initrd.img-6.1.0-x), or else the newest kernel and the newest initrd. */
static void boot_choose(const LayerConverter *c, const BootCandidate **ret_kernel, const BootCandidate **ret_initrd) {
        const BootCandidate *kernel = NULL, *initrd = NULL;

        for (size_t i = 0; i < c->n_candidates; i++) {
                const BootCandidate *k = c->candidates + i;

                if (k->kind != BOOT_KERNEL)
                        continue;
                for (size_t j = 0; j < c->n_candidates; j++) {
                        const BootCandidate *d = c->candidates + j;

                        if (d->kind != BOOT_INITRD || !streq(d->suffix, k->suffix))
                                continue;
                        if (!kernel || k->seq > kernel->seq || (k == kernel && d->seq > initrd->seq)) {
                                kernel = k;
                                initrd = d;
                        }
                }
        }

        if (!kernel)
                for (size_t i = 0; i < c->n_candidates; i++) {
                        const BootCandidate *b = c->candidates + i;
                        const BootCandidate **slot = b->kind == BOOT_KERNEL ? &kernel : &initrd;

                        if (!*slot || b->seq > (*slot)->seq)
                                *slot = b;
                }

        *ret_kernel = kernel;
        *ret_initrd = initrd;
}

static int boot_install(LayerConverter *c, const BootCandidate *b, const char *name) {
        char tmp[64];

        boot_tmp_name(b->tmp_id, tmp);
        if (renameat(c->boot_dir_fd, tmp, c->boot_dir_fd, name) < 0)
                return error_set(negative_errno(), "failed to install '%s' in the boot directory: %m", name);
        return 0;
}

static int boot_finish(LayerConverter *c, LayerInfo *info) {
        const BootCandidate *kernel, *initrd;
        int r;

        boot_choose(c, &kernel, &initrd);

        if (kernel) {
                info->kernel_name = strdup(kernel->path);
                if (!info->kernel_name)
                        return -ENOMEM;
        }
        if (initrd) {
                info->initrd_name = strdup(initrd->path);
                if (!info->initrd_name)
                        return -ENOMEM;
        }

        if (c->boot_dir_fd < 0)
                return 0;

        if (kernel) {
                r = boot_install(c, kernel, BOOT_KERNEL_NAME);
                if (r < 0)
                        return r;
        }
        if (initrd) {
                r = boot_install(c, initrd, BOOT_INITRD_NAME);
                if (r < 0)
                        return r;
        }

        /* The installed files were renamed away, so this only removes the copies of the others. */
        while (c->n_candidates > 0)
                boot_candidate_drop(c, c->n_candidates - 1);
        return 0;
}

static int archive_failed(LayerConverter *c, const char *path) {
        const char *msg = archive_error_string(c->archive);
        int e = archive_errno(c->archive);
        int r = e > 0 ? -e : -EBADMSG;
        PathQuote q;

        if (path)
                return error_set(r, "failed to read tar entry '%s': %s", path_quote(path, &q),
                                 msg ?: "unknown error");
        return error_set(r, "failed to read the layer: %s", msg ?: "unknown error");
}

static int entry_attr(const char *path, struct archive_entry *e, ErofsAttr *ret) {
        int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        PathQuote q;

        if (uid < 0 || uid > UINT32_MAX - 1 || gid < 0 || gid > UINT32_MAX - 1)
                return error_set(-ERANGE, "tar entry '%s' has the invalid owner %" PRId64 ":%" PRId64,
                                 path_quote(path, &q), uid, gid);

        *ret = (ErofsAttr) {
                .mode = archive_entry_mode(e),
                .uid = uid,
                .gid = gid,
                .mtime = archive_entry_mtime_is_set(e) ? archive_entry_mtime(e) : 0,
                .mtime_nsec = archive_entry_mtime_is_set(e) ? archive_entry_mtime_nsec(e) : 0,
                .rdev_major = archive_entry_rdevmajor(e),
                .rdev_minor = archive_entry_rdevminor(e),
        };
        if (ret->mtime_nsec >= 1000000000)
                ret->mtime_nsec = 0;
        return 0;
}

/* Copy the xattrs EROFS can index. The tar's trusted.overlay.* xattrs are dropped because overlayfs
 * would act on them (redirect, metacopy). Opaque markers set from this layer's whiteouts stay. */
static int entry_xattrs(const char *path, struct archive_entry *e, ErofsInode *inode) {
        bool opaque = erofs_inode_has_xattr(inode, "trusted.overlay.opaque");
        const char *name;
        const void *value;
        size_t size;
        PathQuote q;
        int r;

        erofs_inode_clear_xattrs(inode);
        if (opaque) {
                r = erofs_inode_set_xattr(inode, "trusted.overlay.opaque", "y", 1);
                if (r < 0)
                        return r;
        }

        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
                if (!name || strneq(name, "trusted.overlay.", strlen("trusted.overlay.")) ||
                    !erofs_xattr_name_supported(name))
                        continue;

                r = erofs_inode_set_xattr(inode, name, value, size);
                if (r < 0)
                        return error_prefix(r, "tar entry '%s': ", path_quote(path, &q));
        }
        return 0;
}

static int entry_file_data(LayerConverter *c, const char *path, ErofsInode *inode, int boot_fd, uint64_t size) {
        PathQuote q;
        int r;

        for (;;) {
                const void *buf;
                size_t n;
                int64_t offset;

                r = archive_read_data_block(c->archive, &buf, &n, &offset);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return archive_failed(c, path);
                if (offset < 0)
                        return error_set(-EBADMSG, "tar entry '%s' has data at an invalid offset",
                                         path_quote(path, &q));

                r = erofs_writer_write(c->writer, inode, offset, buf, n);
                if (r < 0)
                        return error_prefix(r, "tar entry '%s': ", path_quote(path, &q));

                if (boot_fd >= 0 && pwrite(boot_fd, buf, n, offset) != (ssize_t) n)
                        return error_set(errno > 0 ? -errno : -EIO,
                                         "failed to write '%s' to the boot directory: %m", path_quote(path, &q));
        }

        /* A sparse file may end in a hole, which the boot copy must keep as its size. */
        if (boot_fd >= 0 && ftruncate(boot_fd, size) < 0)
                return error_set(negative_errno(), "failed to write '%s' to the boot directory: %m",
                                 path_quote(path, &q));
        return 0;
}

static int entry_regular(LayerConverter *c, const char *path, struct archive_entry *e, const ErofsAttr *attr) {
        _cleanup_close_ int boot_fd = -EBADF;
        int64_t size = archive_entry_size(e);
        ErofsInode *inode;
        PathQuote q;
        int r;

        if (size < 0)
                return error_set(-EBADMSG, "tar entry '%s' has an invalid size", path_quote(path, &q));
        if ((uint64_t) size > c->max_file_size)
                return error_set(-EFBIG, "file '%s' is %" PRId64 " bytes, over the limit of %" PRIu64,
                                 path_quote(path, &q), size, c->max_file_size);

        r = erofs_writer_add_file(c->writer, path, attr, size, &inode);
        if (r < 0)
                return r;

        r = entry_xattrs(path, e, inode);
        if (r < 0)
                return r;

        r = boot_candidate_add(c, path, &boot_fd);
        if (r < 0)
                return r;

        return entry_file_data(c, path, inode, boot_fd, size);
}

/* ".wh.NAME" marks NAME of a lower layer as deleted, ".wh..wh..opq" hides all of the lower layers'
 * entries in its directory. Both only act on lower layers, so a whiteout never replaces an entry
 * of this layer. Returns 1 when path was a whiteout and is handled. */
static int entry_whiteout(LayerConverter *c, const char *path, const ErofsAttr *attr) {
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        size_t dir_len = slash ? (size_t) (slash - path) : 0;
        _cleanup_free_ char *dir = NULL, *target = NULL;
        ErofsInode *inode;
        int r;

        if (!strneq(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)))
                return 0;

        dir = strndup(path, dir_len);
        if (!dir)
                return -ENOMEM;

        if (streq(base, WHITEOUT_OPAQUE)) {
                r = erofs_writer_ensure_dir(c->writer, dir, &inode);
                if (r < 0)
                        return r;
                r = erofs_inode_set_xattr(inode, "trusted.overlay.opaque", "y", 1);
                return r < 0 ? r : 1;
        }

        /* Other ".wh..wh." names are aufs bookkeeping with no meaning for overlayfs. */
        if (strneq(base, WHITEOUT_META_PREFIX, strlen(WHITEOUT_META_PREFIX)))
                return 1;

        if (asprintf(&target, "%.*s%s%s", (int) dir_len, path, slash ? "/" : "",
                     base + strlen(WHITEOUT_PREFIX)) < 0)
                return -ENOMEM;

        r = erofs_writer_lookup(c->writer, target, &inode);
        if (r >= 0 && !erofs_inode_is_whiteout(inode))
                return 1;

        boot_candidates_forget(c, target, /* is_dir= */ false);

        ErofsAttr whiteout = *attr;
        whiteout.mode = S_IFCHR;
        whiteout.rdev_major = whiteout.rdev_minor = 0;
        r = erofs_writer_add_special(c->writer, target, &whiteout, NULL);
        return r < 0 ? r : 1;
}

static int entry_hardlink(LayerConverter *c, const char *path, const char *link) {
        _cleanup_free_ char *target = NULL;
        PathQuote q;
        int r;

        r = layer_path_normalize(link, &target);
        if (r < 0)
                return error_prefix(r, "hard link '%s': ", path_quote(path, &q));

        return erofs_writer_add_hardlink(c->writer, path, target);
}

static int entry_process(LayerConverter *c, struct archive_entry *e) {
        _cleanup_free_ char *path = NULL;
        const char *name = archive_entry_pathname(e);
        ErofsInode *inode;
        ErofsAttr attr;
        PathQuote q;
        int r;

        if (!name)
                name = archive_entry_pathname_utf8(e);
        if (!name)
                return error_set(-EBADMSG, "tar entry %" PRIu64 " has no path", c->entries);

        r = layer_path_normalize(name, &path);
        if (r < 0)
                return r;

        r = entry_attr(path, e, &attr);
        if (r < 0)
                return r;

        /* Inodes whose mtime equals the build time take 32 instead of 64 bytes. Many layers use one
         * mtime for most entries, so the first entry's mtime is a cheap guess at the common one. */
        if (c->entries == 1)
                erofs_writer_set_build_time(c->writer, attr.mtime);

        r = entry_whiteout(c, path, &attr);
        if (r != 0)
                return r < 0 ? r : 0;

        const char *link = archive_entry_hardlink(e);
        mode_t type = archive_entry_filetype(e);
        boot_candidates_forget(c, path, /* is_dir= */ !link && type == AE_IFDIR);

        if (link)
                return entry_hardlink(c, path, link);

        switch (type) {
        case AE_IFREG:
                return entry_regular(c, path, e, &attr);

        case AE_IFDIR:
                r = erofs_writer_mkdir(c->writer, path, &attr, &inode);
                break;

        case AE_IFLNK:
                r = erofs_writer_add_symlink(c->writer, path, &attr, archive_entry_symlink(e) ?: "", &inode);
                break;

        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO:
        case AE_IFSOCK:
                r = erofs_writer_add_special(c->writer, path, &attr, &inode);
                break;

        default:
                return error_set(-EBADMSG, "tar entry '%s' has the unsupported type 0%o",
                                 path_quote(path, &q), (unsigned) type);
        }
        if (r < 0)
                return r;

        return entry_xattrs(path, e, inode);
}

static int layer_drain(int fd) {
        uint8_t buf[16384];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n == 0)
                        return 0;
                if (n < 0 && errno != EINTR)
                        return error_set(negative_errno(), "failed to read the layer: %m");
        }
}

/* The layer stream as libarchive reads it. A gzip stream is inflated here with ISA-L, which took 1.8 times
 * less CPU time than the zlib inflate behind libarchive's gzip filter in bench/pull/run.sh (see
 * docs/benchmarks.md). Anything else (plain tar, zstd, or bytes that are no archive at all) is passed
 * through for libarchive to detect. */
typedef struct LayerSource {
        int fd;
        bool gzip;
        size_t pending;         /* passthrough: bytes of in[] read while detecting, not yet handed out */
#if HAVE_ISAL
        struct inflate_state inflate;
#endif
        uint8_t in[LAYER_READ_SIZE];
        uint8_t out[LAYER_INFLATE_SIZE];
} LayerSource;

static ssize_t source_read_fd(struct archive *a, LayerSource *s, uint8_t *buf, size_t size) {
        for (;;) {
                ssize_t n = read(s->fd, buf, size);

                if (n >= 0)
                        return n;
                if (errno != EINTR) {
                        /* The same text as libarchive's own fd reader. */
                        archive_set_error(a, errno, "Error reading fd");
                        return -1;
                }
        }
}

static ssize_t source_read_plain(struct archive *a, void *userdata, const void **ret) {
        LayerSource *s = userdata;
        ssize_t n;

        *ret = s->in;
        if (s->pending > 0) {
                n = s->pending;
                s->pending = 0;
                return n;
        }
        return source_read_fd(a, s, s->in, sizeof(s->in));
}

#if HAVE_ISAL
/* Read until the input contains at least min bytes, unless the stream ends first. */
static int source_fill(struct archive *a, LayerSource *s, size_t min) {
        struct inflate_state *z = &s->inflate;

        memmove(s->in, z->next_in, z->avail_in);
        z->next_in = s->in;

        while (z->avail_in < min) {
                ssize_t n = source_read_fd(a, s, s->in + z->avail_in, sizeof(s->in) - z->avail_in);

                if (n < 0)
                        return -1;
                if (n == 0)
                        break;
                z->avail_in += n;
        }
        return 0;
}

static bool gzip_magic(const uint8_t *p, size_t size) {
        return size >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

static ssize_t source_read_gzip(struct archive *a, void *userdata, const void **ret) {
        LayerSource *s = userdata;
        struct inflate_state *z = &s->inflate;
        int r;

        for (;;) {
                if (z->block_state == ISAL_BLOCK_FINISH) {
                        /* Like libarchive, go on with the next gzip member and stop at anything else. The
                         * bytes after the last member are read later by layer_drain(). */
                        if (source_fill(a, s, 2) < 0)
                                return -1;
                        if (!gzip_magic(z->next_in, z->avail_in))
                                return 0;
                        isal_inflate_reset(z);
                }

                if (z->avail_in == 0) {
                        ssize_t n = source_read_fd(a, s, s->in, sizeof(s->in));

                        if (n < 0)
                                return -1;
                        if (n == 0) {
                                archive_set_error(a, EBADMSG, "truncated gzip input");
                                return -1;
                        }
                        z->next_in = s->in;
                        z->avail_in = n;
                }

                z->next_out = s->out;
                z->avail_out = sizeof(s->out);
                r = isal_inflate(z);
                if (r == ISAL_INCORRECT_CHECKSUM) {
                        archive_set_error(a, EBADMSG, "gzip CRC-32 or size mismatch");
                        return -1;
                }
                if (r != ISAL_DECOMP_OK) {
                        archive_set_error(a, EBADMSG, "gzip decompression failed");
                        return -1;
                }

                if (z->avail_out < sizeof(s->out)) {
                        *ret = s->out;
                        return sizeof(s->out) - z->avail_out;
                }
        }
}
#endif

/* Read the first bytes of the stream to choose between inflating gzip here and passing it through. */
static int source_detect(LayerSource *s) {
        while (s->pending < 4) {
                ssize_t n = read(s->fd, s->in + s->pending, sizeof(s->in) - s->pending);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return error_set(negative_errno(), "failed to read the layer: %m");
                if (n == 0)
                        break;
                s->pending += n;
        }

#if HAVE_ISAL
        /* The gzip magic, the deflate method and no reserved flag bits: what libarchive's gzip filter
         * accepts too. */
        if (s->pending >= 4 && gzip_magic(s->in, s->pending) && s->in[2] == 8 && (s->in[3] & 0xe0) == 0) {
                s->gzip = true;
                isal_inflate_init(&s->inflate);
                s->inflate.crc_flag = ISAL_GZIP;
                s->inflate.next_in = s->in;
                s->inflate.avail_in = s->pending;
                s->pending = 0;
        }
#endif
        return 0;
}

static int layer_open(LayerConverter *c, int input_fd) {
        int r;

        c->source = malloc(sizeof(LayerSource));
        if (!c->source)
                return -ENOMEM;
        *c->source = (LayerSource) { .fd = input_fd };

        r = source_detect(c->source);
        if (r < 0)
                return r;

        c->archive = archive_read_new();
        if (!c->archive)
                return -ENOMEM;

        /* Only what OCI layers use: tar (ustar, pax, GNU), plain or gzip or zstd compressed. */
        if (archive_read_support_format_tar(c->archive) != ARCHIVE_OK ||
            archive_read_support_filter_gzip(c->archive) != ARCHIVE_OK ||
            archive_read_support_filter_zstd(c->archive) != ARCHIVE_OK)
                return error_set(-EOPNOTSUPP, "libarchive lacks tar, gzip or zstd support: %s",
                                 archive_error_string(c->archive) ?: "unknown error");

#if HAVE_ISAL
        if (c->source->gzip)
                r = archive_read_open(c->archive, c->source, NULL, source_read_gzip, NULL);
        else
#endif
                r = archive_read_open(c->archive, c->source, NULL, source_read_plain, NULL);
        if (r != ARCHIVE_OK)
                return archive_failed(c, NULL);
        return 0;
}

int layer_convert(int input_fd, int output_fd, int boot_dir_fd, const uint8_t uuid[16],
                  const LayerLimits *limits, LayerInfo *ret_info) {
        _cleanup_(layer_converter_done) LayerConverter c = {
                .boot_dir_fd = boot_dir_fd,
                .max_entries = limits && limits->max_entries ? limits->max_entries : LAYER_DEFAULT_MAX_ENTRIES,
                .max_file_size = limits && limits->max_file_size ? limits->max_file_size :
                                                                    LAYER_DEFAULT_MAX_FILE_SIZE,
        };
        _cleanup_(layer_info_done) LayerInfo info = {};
        int r;

        r = erofs_writer_new(output_fd, uuid, 0, &c.writer);
        if (r < 0)
                return r;

        r = layer_open(&c, input_fd);
        if (r < 0)
                return r;

        for (;;) {
                struct archive_entry *e;

                r = archive_read_next_header(c.archive, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return archive_failed(&c, NULL);

                if (c.entries >= c.max_entries)
                        return error_set(-E2BIG, "layer has more than %" PRIu64 " tar entries, over the limit",
                                         c.max_entries);
                c.entries++;

                r = entry_process(&c, e);
                if (r < 0)
                        return r;
        }

        /* The caller hashes the stream while it flows, so whatever follows the end-of-archive
         * marker must be consumed too. */
        r = layer_drain(input_fd);
        if (r < 0)
                return r;

        r = erofs_writer_finish(c.writer, &info.erofs_size);
        if (r < 0)
                return r;

        r = boot_finish(&c, &info);
        if (r < 0)
                return r;

        info.entries = c.entries;
        if (ret_info)
                *ret_info = info;
        else
                layer_info_done(&info);
        info = (LayerInfo) {};
        return 0;
}
