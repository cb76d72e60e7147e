/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "erofs-test-util.h"
#include "fileio.h"
#include "layer.h"
#include "strv.h"
#include "tests.h"

#define MTIME INT64_C(1690000000)

typedef enum Compression {
        COMPRESSION_NONE,
        COMPRESSION_GZIP,
        COMPRESSION_ZSTD,
} Compression;

typedef struct TarEntry {
        const char *path;
        mode_t type;            /* AE_IF*; 0 = regular file */
        mode_t perm;
        const char *data;       /* regular files */
        const char *link;       /* symlink target */
        const char *hardlink;
        uint32_t uid, gid;
        int64_t mtime;          /* 0 = MTIME */
        const char *xattr_name;
        const char *xattr_value;
        uint32_t major, minor;
} TarEntry;

typedef struct Scratch {
        char *dir;
        char tar[256];
        char img[256];
        char out[256];
        char mnt[256];
        char boot[256];
        bool mounted;
        int boot_fd;
} Scratch;

static const uint8_t uuid[16] = { 0x1a, 0x7e, 0x40 };

static void scratch_done(Scratch *s) {
        if (s->mounted)
                test_umount(s->mnt);
        safe_close(s->boot_fd);
        test_rm_rf(s->dir);
        free(s->dir);
}

static int scratch_init(Scratch *s) {
        *s = (Scratch) { .boot_fd = -EBADF };

        s->dir = test_mkdtemp();
        if (!s->dir)
                return -errno;

        snprintf(s->tar, sizeof(s->tar), "%s/layer.tar", s->dir);
        snprintf(s->img, sizeof(s->img), "%s/layer.erofs", s->dir);
        snprintf(s->out, sizeof(s->out), "%s/out", s->dir);
        snprintf(s->mnt, sizeof(s->mnt), "%s/mnt", s->dir);
        snprintf(s->boot, sizeof(s->boot), "%s/boot", s->dir);
        if (mkdir(s->mnt, 0755) < 0 || mkdir(s->boot, 0755) < 0)
                return -errno;

        s->boot_fd = open(s->boot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return s->boot_fd < 0 ? -errno : 0;
}

/* Write a tar of entries to path with libarchive, followed by trailer bytes when given. */
static int tar_write(const char *path, Compression compression, const TarEntry *entries, size_t n,
                     const char *trailer) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        struct archive *a;
        int r = 0;

        if (fd < 0)
                return -errno;

        a = archive_write_new();
        if (!a)
                return -ENOMEM;
        archive_write_set_format_pax_restricted(a);
        if (compression == COMPRESSION_GZIP)
                archive_write_add_filter_gzip(a);
        else if (compression == COMPRESSION_ZSTD)
                archive_write_add_filter_zstd(a);
        archive_write_set_bytes_in_last_block(a, 1);
        if (archive_write_open_fd(a, fd) != ARCHIVE_OK) {
                archive_write_free(a);
                return -EIO;
        }

        for (size_t i = 0; i < n && r == 0; i++) {
                const TarEntry *t = entries + i;
                struct archive_entry *e = archive_entry_new();
                size_t size = t->data ? strlen(t->data) : 0;

                archive_entry_set_pathname(e, t->path);
                archive_entry_set_filetype(e, t->type ?: AE_IFREG);
                archive_entry_set_perm(e, t->perm ?: 0644);
                archive_entry_set_uid(e, t->uid);
                archive_entry_set_gid(e, t->gid);
                archive_entry_set_mtime(e, t->mtime ?: MTIME, 0);
                archive_entry_set_size(e, size);
                if (t->link)
                        archive_entry_set_symlink(e, t->link);
                if (t->hardlink) {
                        archive_entry_set_hardlink(e, t->hardlink);
                        archive_entry_set_size(e, 0);
                }
                if (t->xattr_name)
                        archive_entry_xattr_add_entry(e, t->xattr_name, t->xattr_value, strlen(t->xattr_value));
                if (t->type == AE_IFCHR || t->type == AE_IFBLK) {
                        archive_entry_set_rdevmajor(e, t->major);
                        archive_entry_set_rdevminor(e, t->minor);
                }

                if (archive_write_header(a, e) != ARCHIVE_OK)
                        r = -EIO;
                else if (size > 0 && archive_write_data(a, t->data, size) != (ssize_t) size)
                        r = -EIO;
                archive_entry_free(e);
        }

        if (archive_write_close(a) != ARCHIVE_OK)
                r = -EIO;
        archive_write_free(a);

        if (r == 0 && trailer && write(fd, trailer, strlen(trailer)) != (ssize_t) strlen(trailer))
                r = -EIO;
        return r;
}

/* Convert s->tar into s->img and check that the whole input was read. */
static int convert(Scratch *s, const LayerLimits *limits, LayerInfo *ret_info) {
        _cleanup_close_ int in = open(s->tar, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(s->img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        struct stat st;
        int r;

        if (in < 0 || out < 0)
                return -errno;

        r = layer_convert(in, out, s->boot_fd, uuid, limits, ret_info);
        if (r < 0)
                return r;

        if (fstat(in, &st) < 0 || lseek(in, 0, SEEK_CUR) != st.st_size) {
                fprintf(stderr, "input was not read to EOF\n");
                return -EIO;
        }
        return 0;
}

static int convert_entries(Scratch *s, Compression compression, const TarEntry *entries, size_t n,
                           LayerInfo *ret_info) {
        int r = tar_write(s->tar, compression, entries, n, NULL);

        return r < 0 ? r : convert(s, NULL, ret_info);
}

static int file_equals(const char *root, const char *path, const char *data) {
        _cleanup_free_ uint8_t *buf = NULL;
        char full[PATH_MAX];
        size_t n = 0;

        snprintf(full, sizeof(full), "%s/%s", root, path);
        if (test_read_file(full, &buf, &n) < 0) {
                fprintf(stderr, "%s: cannot read\n", full);
                return -EIO;
        }
        if (n != strlen(data) || memcmp(buf, data, n) != 0) {
                fprintf(stderr, "%s: unexpected contents\n", full);
                return -EIO;
        }
        return 0;
}

static int stat_at(const char *root, const char *path, struct stat *st) {
        char full[PATH_MAX];

        snprintf(full, sizeof(full), "%s/%s", root, path);
        return lstat(full, st) < 0 ? -errno : 0;
}

static bool exists_at(const char *root, const char *path) {
        struct stat st;

        return stat_at(root, path, &st) == 0;
}

static const TarEntry basic_layer[] = {
        { .path = "./", .type = AE_IFDIR, .perm = 0755 },
        { .path = "./etc/", .type = AE_IFDIR, .perm = 0750, .uid = 0, .gid = 42 },
        { .path = "./etc/hosts", .data = "127.0.0.1 localhost\n", .perm = 0644,
          .xattr_name = "user.origin", .xattr_value = "test" },
        { .path = "./etc/hosts.hard", .hardlink = "./etc/hosts" },
        { .path = "./bin", .type = AE_IFLNK, .link = "usr/bin", .perm = 0777 },
        { .path = "./usr/bin/su", .data = "#!/bin/true\n", .perm = 04755, .mtime = MTIME - 3600 },
        { .path = "./home/user/.profile", .data = "PS1=x\n", .uid = 100000, .gid = 100000 },
        { .path = "./dev/null", .type = AE_IFCHR, .perm = 0666, .major = 1, .minor = 3 },
        { .path = "./run/fifo", .type = AE_IFIFO, .perm = 0600 },
        { .path = "./xattrs", .data = "x", .xattr_name = "trusted.overlay.redirect", .xattr_value = "/evil" },
        { .path = "./nfs", .data = "y", .xattr_name = "system.nfs4_acl", .xattr_value = "acl" },
};

static int check_basic_layer(Scratch *s, Compression compression) {
        _cleanup_(layer_info_done) LayerInfo info = {};
        struct stat st, st2;
        char target[PATH_MAX], link[64];
        int r;

        r = convert_entries(s, compression, basic_layer, ELEMENTSOF(basic_layer), &info);
        if (r < 0)
                return r;
        if (info.entries != ELEMENTSOF(basic_layer) || info.erofs_size % 4096 != 0 || info.kernel_name)
                return -EBADMSG;
        if (test_fsck(s->img, s->out) < 0)
                return -EIO;

        if (file_equals(s->out, "etc/hosts", "127.0.0.1 localhost\n") < 0 ||
            file_equals(s->out, "etc/hosts.hard", "127.0.0.1 localhost\n") < 0 ||
            file_equals(s->out, "usr/bin/su", "#!/bin/true\n") < 0)
                return -EIO;

        if (stat_at(s->out, "etc", &st) < 0 || st.st_mode != (S_IFDIR | 0750) || st.st_gid != 42)
                return -EBADMSG;
        if (stat_at(s->out, "usr", &st) < 0 || st.st_mode != (S_IFDIR | 0755) || st.st_uid != 0)
                return -EBADMSG;
        if (stat_at(s->out, "usr/bin/su", &st) < 0 || st.st_mtime != MTIME - 3600)
                return -EBADMSG;
        if (stat_at(s->out, "home/user/.profile", &st) < 0 || st.st_uid != 100000 || st.st_gid != 100000)
                return -EBADMSG;
        if (stat_at(s->out, "dev/null", &st) < 0 || st.st_mode != (S_IFCHR | 0666) || st.st_rdev != makedev(1, 3))
                return -EBADMSG;
        if (stat_at(s->out, "run/fifo", &st) < 0 || st.st_mode != (S_IFIFO | 0600))
                return -EBADMSG;

        snprintf(target, sizeof(target), "%s/bin", s->out);
        ssize_t n = readlink(target, link, sizeof(link));
        if (n != 7 || memcmp(link, "usr/bin", 7) != 0)
                return -EBADMSG;

        /* Hard links, the setuid bit and xattrs are only visible through the kernel. */
        if (geteuid() != 0 || test_mount_erofs(s->img, s->mnt) < 0)
                return 0;
        s->mounted = true;

        char buf[64];
        snprintf(target, sizeof(target), "%s/etc/hosts", s->mnt);
        if (lgetxattr(target, "user.origin", buf, sizeof(buf)) != 4 || memcmp(buf, "test", 4) != 0)
                return -EBADMSG;
        snprintf(target, sizeof(target), "%s/xattrs", s->mnt);
        if (lgetxattr(target, "trusted.overlay.redirect", buf, sizeof(buf)) >= 0)
                return -EBADMSG;
        snprintf(target, sizeof(target), "%s/nfs", s->mnt);
        if (llistxattr(target, buf, sizeof(buf)) != 0)
                return -EBADMSG;

        if (stat_at(s->mnt, "etc/hosts", &st) < 0 || stat_at(s->mnt, "etc/hosts.hard", &st2) < 0 ||
            st.st_ino != st2.st_ino || st.st_nlink != 2)
                return -EBADMSG;
        if (stat_at(s->mnt, "usr/bin/su", &st) < 0 || st.st_mode != (S_IFREG | 04755))
                return -EBADMSG;

        test_umount(s->mnt);
        s->mounted = false;
        return 0;
}

TEST(convert_plain_gzip_zstd) {
        static const Compression compressions[] = { COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_ZSTD };

        if (!test_have_fsck())
                return TEST_SKIP;

        for (size_t i = 0; i < ELEMENTSOF(compressions); i++) {
                _cleanup_(scratch_done) Scratch s = {};

                ASSERT_OK(scratch_init(&s));
                ASSERT_OK(check_basic_layer(&s, compressions[i]));
        }
        return 0;
}

TEST(whiteouts) {
        _cleanup_(scratch_done) Scratch s = {};
        static const TarEntry entries[] = {
                { .path = "gone/.wh.file", .data = "" },
                { .path = ".wh.deleted", .data = "" },
                { .path = "keep", .data = "kept" },
                /* A whiteout only hides lower layers, never an entry of its own layer. */
                { .path = ".wh.keep", .data = "" },
                { .path = "opq/", .type = AE_IFDIR, .perm = 0700 },
                { .path = "opq/.wh..wh..opq", .data = "" },
                { .path = "opq/new", .data = "new" },
                { .path = "implicit/.wh..wh..opq", .data = "" },
                { .path = ".wh..wh.plnk", .data = "" },
                /* A directory entry after the marker keeps the directory opaque. */
                { .path = "opq/", .type = AE_IFDIR, .perm = 0755 },
        };
        struct stat st;
        char path[PATH_MAX], buf[8];

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(convert_entries(&s, COMPRESSION_NONE, entries, ELEMENTSOF(entries), NULL));
        ASSERT_OK(test_fsck(s.img, s.out));

        ASSERT_OK(stat_at(s.out, "gone/file", &st));
        ASSERT_EQ(st.st_mode & S_IFMT, S_IFCHR);
        ASSERT_EQ(st.st_rdev, makedev(0, 0));
        ASSERT_OK(stat_at(s.out, "deleted", &st));
        ASSERT_EQ(st.st_mode & S_IFMT, S_IFCHR);
        ASSERT_OK(file_equals(s.out, "keep", "kept"));
        ASSERT_OK(file_equals(s.out, "opq/new", "new"));
        ASSERT_TRUE(!exists_at(s.out, "opq/.wh..wh..opq"));
        ASSERT_TRUE(!exists_at(s.out, ".wh..wh.plnk"));
        ASSERT_TRUE(!exists_at(s.out, "plnk"));
        ASSERT_TRUE(!exists_at(s.out, ".wh.keep"));
        ASSERT_OK(stat_at(s.out, "opq", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0755);

        if (geteuid() != 0 || test_mount_erofs(s.img, s.mnt) < 0)
                return 0;
        s.mounted = true;

        snprintf(path, sizeof(path), "%s/opq", s.mnt);
        ASSERT_EQ(lgetxattr(path, "trusted.overlay.opaque", buf, sizeof(buf)), 1);
        ASSERT_EQ(buf[0], 'y');
        snprintf(path, sizeof(path), "%s/implicit", s.mnt);
        ASSERT_EQ(lgetxattr(path, "trusted.overlay.opaque", buf, sizeof(buf)), 1);
        snprintf(path, sizeof(path), "%s/gone", s.mnt);
        ASSERT_TRUE(lgetxattr(path, "trusted.overlay.opaque", buf, sizeof(buf)) < 0);
        return 0;
}

TEST(path_normalize) {
        static const struct {
                const char *name;
                const char *expected;
        } good[] = {
                { "./",                 ""                },
                { ".",                  ""                },
                { "./a/b/",             "a/b"             },
                { "a//b/./c",           "a/b/c"           },
                { "...",                "..."             },
                { "a/..b",              "a/..b"           },
                { "./.wh..wh..opq",     ".wh..wh..opq"    },
                { "d/.wh.x",            "d/.wh.x"         },
                { ".wh.../x",           ".wh.../x"        },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *p = NULL;

                ASSERT_OK(layer_path_normalize(good[i].name, &p));
                ASSERT_STREQ(p, good[i].expected);
        }
        return 0;
}

static int normalize_fails(const char *name, int err, const char *reason) {
        char *p = NULL;
        int r = layer_path_normalize(name, &p);

        if (r != -err || !streq(error_message(r), reason) || p) {
                fprintf(stderr, "'%s': got %d '%s', expected -%d '%s'\n", name, r, error_message(r), err, reason);
                free(p);
                return -EBADMSG;
        }
        return 0;
}

TEST(path_policy_reasons) {
        char long_name[300], expected[512];

        ASSERT_OK(normalize_fails("../x", EINVAL, "path '../x' has a '..' component"));
        ASSERT_OK(normalize_fails("a/../../x", EINVAL, "path 'a/../../x' has a '..' component"));
        ASSERT_OK(normalize_fails("./..", EINVAL, "path './..' has a '..' component"));
        ASSERT_OK(normalize_fails("/etc/passwd", EINVAL, "path '/etc/passwd' is absolute"));
        ASSERT_OK(normalize_fails("", EINVAL, "tar entry has an empty path"));
        ASSERT_OK(normalize_fails("a/.wh...", EINVAL, "path 'a/.wh...' is a whiteout for the invalid name '..'"));
        ASSERT_OK(normalize_fails(".wh..", EINVAL, "path '.wh..' is a whiteout for the invalid name '.'"));
        ASSERT_OK(normalize_fails("d/.wh./", EINVAL, "path 'd/.wh./' is a whiteout for the invalid name ''"));
        ASSERT_OK(normalize_fails("bad\x1b[0m/../x", EINVAL, "path 'bad\\x1b[0m/../x' has a '..' component"));

        /* 256 bytes: one over the EROFS name limit. Messages cut paths at 200 bytes. */
        memset(long_name, 'n', 256);
        long_name[256] = '\0';
        snprintf(expected, sizeof(expected), "path '%.200s...' has a component of 256 bytes, over the limit of 255",
                 long_name);
        ASSERT_OK(normalize_fails(long_name, ENAMETOOLONG, expected));
        long_name[255] = '\0';
        _cleanup_free_ char *p = NULL;
        ASSERT_OK(layer_path_normalize(long_name, &p));

        /* 16 components of 255 bytes make 4095 bytes with the slashes, the maximum; one more
         * component goes over. */
        _cleanup_free_ char *deep = malloc(16 * 256 + 2);
        ASSERT_TRUE(deep);
        for (size_t i = 0; i < 16; i++) {
                memset(deep + i * 256, 'd', 255);
                deep[i * 256 + 255] = '/';
        }
        deep[16 * 256] = '\0';
        free(p);
        p = NULL;
        ASSERT_OK(layer_path_normalize(deep, &p));
        ASSERT_EQ(strlen(p), 4095);
        deep[16 * 256] = 'a';
        deep[16 * 256 + 1] = '\0';
        snprintf(expected, sizeof(expected), "path '%.200s...' is 4097 bytes, over the limit of 4095", deep);
        ASSERT_OK(normalize_fails(deep, ENAMETOOLONG, expected));
        return 0;
}

static int convert_fails(const TarEntry *entries, size_t n, const LayerLimits *limits, int err,
                         const char *reason) {
        _cleanup_(scratch_done) Scratch s = {};
        int r;

        r = scratch_init(&s);
        if (r < 0)
                return r;
        r = tar_write(s.tar, COMPRESSION_NONE, entries, n, NULL);
        if (r < 0)
                return r;

        r = convert(&s, limits, NULL);
        if (r != -err || !streq(error_message(r), reason)) {
                fprintf(stderr, "got %d '%s', expected -%d '%s'\n", r, error_message(r), err, reason);
                return -EBADMSG;
        }
        return 0;
}

TEST(convert_rejects) {
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "ok", .data = "1" }, { .path = "../x", .data = "" } },
                                2, NULL, EINVAL, "path '../x' has a '..' component"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "/etc/passwd", .data = "" } },
                                1, NULL, EINVAL, "path '/etc/passwd' is absolute"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "a/.wh...", .data = "" } },
                                1, NULL, EINVAL, "path 'a/.wh...' is a whiteout for the invalid name '..'"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "link", .hardlink = "missing" } },
                                1, NULL, ENOENT, "hard link target 'missing' of 'link' not found"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "link", .hardlink = "../etc/shadow" } },
                                1, NULL, EINVAL, "hard link 'link': path '../etc/shadow' has a '..' component"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "d", .type = AE_IFDIR }, { .path = "l", .hardlink = "d" } },
                                2, NULL, EPERM, "hard link target 'd' of 'l' is a directory"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "f", .data = "x" }, { .path = "f/g", .data = "y" } },
                                2, NULL, ENOTDIR, "parent 'f' of 'f/g' is not a directory"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "lib", .type = AE_IFLNK, .link = "/usr/lib" },
                                                     { .path = "lib/evil", .data = "y" } },
                                2, NULL, ENOTDIR, "parent 'lib' of 'lib/evil' is not a directory"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = ".", .data = "x" } },
                                1, NULL, EISDIR, "root directory cannot be replaced by a non-directory"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "a", .data = "1" }, { .path = "b", .data = "2" },
                                                     { .path = "c", .data = "3" } },
                                3, &(LayerLimits) { .max_entries = 2 }, E2BIG,
                                "layer has more than 2 tar entries, over the limit"));
        ASSERT_OK(convert_fails((const TarEntry[]) { { .path = "big", .data = "12345678901" } },
                                1, &(LayerLimits) { .max_file_size = 10 }, EFBIG,
                                "file 'big' is 11 bytes, over the limit of 10"));
        return 0;
}

/* Set the size field of the first ustar header to size in the base-256 form libarchive reads for
 * values over 8 GiB, and fix the header checksum. */
static int tar_patch_size(const char *path, uint64_t size) {
        _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
        uint8_t h[512];
        unsigned sum = 0;

        if (fd < 0 || pread(fd, h, sizeof(h), 0) != sizeof(h))
                return -EIO;

        memset(h + 124, 0, 12);
        h[124] = 0x80;
        for (int i = 0; i < 8; i++)
                h[135 - i] = size >> (8 * i);

        memset(h + 148, ' ', 8);
        for (size_t i = 0; i < sizeof(h); i++)
                sum += h[i];
        snprintf((char *) h + 148, 8, "%06o", sum);
        h[155] = ' ';

        return pwrite(fd, h, sizeof(h), 0) == sizeof(h) ? 0 : -EIO;
}

TEST(convert_rejects_huge_file) {
        _cleanup_(scratch_done) Scratch s = {};
        static const TarEntry entries[] = { { .path = "huge", .data = "x" } };
        int r;

        /* A 1 TiB (sparse or truncated) file is rejected from its header alone, before any data. */
        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(tar_write(s.tar, COMPRESSION_NONE, entries, ELEMENTSOF(entries), NULL));
        ASSERT_OK(tar_patch_size(s.tar, UINT64_C(1) << 40));

        r = convert(&s, NULL, NULL);
        ASSERT_ERROR(r, EFBIG);
        ASSERT_ERROR_MESSAGE(r, "file 'huge' is 1099511627776 bytes, over the limit of 274877906944");
        return 0;
}

TEST(convert_rejects_garbage) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_close_ int fd = -EBADF;
        char junk[2048];
        int r;

        ASSERT_OK(scratch_init(&s));
        fd = open(s.tar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        memset(junk, 'j', sizeof(junk));
        ASSERT_EQ(write(fd, junk, sizeof(junk)), (ssize_t) sizeof(junk));

        r = convert(&s, NULL, NULL);
        ASSERT_TRUE(r < 0);
        ASSERT_STREQ(error_message(r), "failed to read the layer: Unrecognized archive format");
        return 0;
}

TEST(duplicates_and_implicit_parents) {
        _cleanup_(scratch_done) Scratch s = {};
        static const TarEntry entries[] = {
                { .path = "a/b/c", .data = "deep" },
                { .path = "file", .data = "first" },
                { .path = "file", .data = "second" },
                { .path = "tree/x", .data = "x" },
                { .path = "tree", .data = "now a file" },
                { .path = "was-file", .data = "f" },
                { .path = "was-file/", .type = AE_IFDIR, .perm = 0700 },
                { .path = "was-file/y", .data = "y" },
                { .path = "dir/z", .data = "z" },
                { .path = "dir/", .type = AE_IFDIR, .perm = 0711, .uid = 5 },
        };
        struct stat st;

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(convert_entries(&s, COMPRESSION_NONE, entries, ELEMENTSOF(entries), NULL));
        ASSERT_OK(test_fsck(s.img, s.out));

        ASSERT_OK(file_equals(s.out, "a/b/c", "deep"));
        ASSERT_OK(stat_at(s.out, "a", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0755);
        ASSERT_EQ(st.st_uid, 0);
        ASSERT_OK(stat_at(s.out, "a/b", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0755);

        ASSERT_OK(file_equals(s.out, "file", "second"));
        ASSERT_OK(file_equals(s.out, "tree", "now a file"));
        ASSERT_OK(stat_at(s.out, "was-file", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0700);
        ASSERT_OK(file_equals(s.out, "was-file/y", "y"));
        ASSERT_OK(file_equals(s.out, "dir/z", "z"));
        ASSERT_OK(stat_at(s.out, "dir", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0711);
        ASSERT_EQ(st.st_uid, 5);
        return 0;
}

static int boot_file_equals(Scratch *s, const char *name, const char *data) {
        return file_equals(s->boot, name, data);
}

static int boot_dir_count(Scratch *s, unsigned *ret) {
        DIR *d = opendir(s->boot);
        unsigned n = 0;

        if (!d)
                return -errno;
        for (struct dirent *de; (de = readdir(d));)
                n += !streq(de->d_name, ".") && !streq(de->d_name, "..");
        closedir(d);
        *ret = n;
        return 0;
}

TEST(boot_files_pairing) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(layer_info_done) LayerInfo info = {};
        static const TarEntry entries[] = {
                { .path = "boot/vmlinuz-6.1.0-1", .data = "kernel 1" },
                { .path = "boot/initrd.img-6.1.0-1", .data = "initrd 1" },
                { .path = "boot/vmlinuz-6.1.0-2", .data = "kernel 2 without initrd" },
                { .path = "boot/vmlinuz.old", .data = "old kernel" },
                { .path = "vmlinuz", .type = AE_IFLNK, .link = "boot/vmlinuz-6.1.0-2" },
                { .path = "boot/config-6.1.0-1", .data = "config" },
        };
        unsigned n = 0;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(convert_entries(&s, COMPRESSION_GZIP, entries, ELEMENTSOF(entries), &info));
        ASSERT_STREQ(info.kernel_name, "boot/vmlinuz-6.1.0-1");
        ASSERT_STREQ(info.initrd_name, "boot/initrd.img-6.1.0-1");
        ASSERT_OK(boot_file_equals(&s, "vmlinuz", "kernel 1"));
        ASSERT_OK(boot_file_equals(&s, "initrd.img", "initrd 1"));
        /* No temporary copies are left behind. */
        ASSERT_OK(boot_dir_count(&s, &n));
        ASSERT_EQ(n, 2);
        return 0;
}

TEST(boot_files_last_wins) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(layer_info_done) LayerInfo info = {};
        static const TarEntry entries[] = {
                { .path = "vmlinuz-a", .data = "kernel a" },
                { .path = "initrd.img-b", .data = "initrd b" },
                { .path = "boot/vmlinuz-c", .data = "kernel c" },
                { .path = "initrd.img.old", .data = "old initrd" },
                { .path = "boot/initrd.img", .type = AE_IFLNK, .link = "initrd.img-b" },
                /* Not at the root or directly in boot/. */
                { .path = "usr/boot/vmlinuz-d", .data = "kernel d" },
        };
        unsigned n = 0;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(convert_entries(&s, COMPRESSION_ZSTD, entries, ELEMENTSOF(entries), &info));
        ASSERT_STREQ(info.kernel_name, "boot/vmlinuz-c");
        ASSERT_STREQ(info.initrd_name, "initrd.img-b");
        ASSERT_OK(boot_file_equals(&s, "vmlinuz", "kernel c"));
        ASSERT_OK(boot_file_equals(&s, "initrd.img", "initrd b"));
        ASSERT_OK(boot_dir_count(&s, &n));
        ASSERT_EQ(n, 2);
        return 0;
}

TEST(boot_files_replaced_entry) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(layer_info_done) LayerInfo info = {};
        static const TarEntry entries[] = {
                { .path = "boot/vmlinuz-1", .data = "kernel 1" },
                { .path = "boot/vmlinuz-2", .data = "kernel 2" },
                /* The later entry replaces the kernel in the image, so it is no candidate any more. */
                { .path = "boot/vmlinuz-2", .type = AE_IFLNK, .link = "vmlinuz-1" },
        };
        unsigned n = 0;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(convert_entries(&s, COMPRESSION_NONE, entries, ELEMENTSOF(entries), &info));
        ASSERT_STREQ(info.kernel_name, "boot/vmlinuz-1");
        ASSERT_TRUE(!info.initrd_name);
        ASSERT_OK(boot_file_equals(&s, "vmlinuz", "kernel 1"));
        ASSERT_OK(boot_dir_count(&s, &n));
        ASSERT_EQ(n, 1);
        return 0;
}

TEST(input_drained_after_end_marker) {
        static const Compression compressions[] = { COMPRESSION_NONE, COMPRESSION_GZIP };
        static const TarEntry entries[] = { { .path = "f", .data = "data" } };
        _cleanup_free_ char *trailer = malloc(200001);

        ASSERT_TRUE(trailer);
        memset(trailer, 'g', 200000);
        trailer[200000] = '\0';

        for (size_t i = 0; i < ELEMENTSOF(compressions); i++) {
                _cleanup_(scratch_done) Scratch s = {};
                _cleanup_(layer_info_done) LayerInfo info = {};

                ASSERT_OK(scratch_init(&s));
                ASSERT_OK(tar_write(s.tar, compressions[i], entries, ELEMENTSOF(entries), trailer));
                /* convert() fails unless the file offset reached the end of the input. */
                ASSERT_OK(convert(&s, NULL, &info));
                ASSERT_EQ(info.entries, 1);
        }
        return 0;
}

TEST(sparse_file_stays_sparse) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_free_ uint8_t *buf = NULL;
        char path[PATH_MAX];
        struct stat st;
        size_t n = 0;

        if (!test_have_fsck() || test_run("command -v tar >/dev/null 2>&1") != 0)
                return TEST_SKIP;

        /* GNU tar writes the PAX sparse format, which libarchive hands over as data blocks with holes
         * between them. */
        ASSERT_OK(scratch_init(&s));
        ASSERT_EQ(test_run("cd '%s' && mkdir src && printf head >src/sparse && truncate -s 64M src/sparse && "
                           "printf tail >>src/sparse && tar -S --format=pax -C src -cf '%s' sparse",
                           s.dir, s.tar), 0);
        ASSERT_OK(convert(&s, NULL, NULL));
        ASSERT_OK(test_fsck(s.img, s.out));

        ASSERT_TRUE(stat(s.img, &st) == 0);
        ASSERT_TRUE(st.st_size > 64 << 20);
        ASSERT_TRUE(st.st_blocks * 512 < 1 << 20);

        snprintf(path, sizeof(path), "%s/sparse", s.out);
        ASSERT_OK(test_read_file(path, &buf, &n));
        ASSERT_EQ(n, (64 << 20) + 4);
        ASSERT_TRUE(memcmp(buf, "head", 4) == 0);
        ASSERT_TRUE(memcmp(buf + (64 << 20), "tail", 4) == 0);
        for (size_t i = 4; i < (size_t) (64 << 20); i++)
                if (buf[i] != 0)
                        ASSERT_EQ(buf[i], 0);
        return 0;
}

#define LONG "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll"

TEST(utf8_names) {
        _cleanup_(scratch_done) Scratch s = {};

        if (!test_have_fsck() || test_run("command -v tar >/dev/null 2>&1") != 0)
                return TEST_SKIP;

        /* PAX stores names as UTF-8; they must pass through unchanged whatever the locale. The long
         * directory name makes tar use a PAX path record instead of the ustar name field. */
        ASSERT_OK(scratch_init(&s));
        ASSERT_EQ(test_run("cd '%s' && mkdir -p src/caf\xc3\xa9-" LONG " && printf utf8 >src/caf\xc3\xa9-" LONG "/\xe6\x97\xa5 && "
                           "LC_ALL=C.UTF-8 tar --format=pax -C src -cf '%s' caf\xc3\xa9-" LONG "",
                           s.dir, s.tar), 0);
        ASSERT_OK(convert(&s, NULL, NULL));
        ASSERT_OK(test_fsck(s.img, s.out));
        ASSERT_OK(file_equals(s.out, "caf\xc3\xa9-" LONG "/\xe6\x97\xa5", "utf8"));
        return 0;
}

TEST(deterministic_output) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_free_ uint8_t *a = NULL, *b = NULL;
        size_t a_size = 0, b_size = 0;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(tar_write(s.tar, COMPRESSION_GZIP, basic_layer, ELEMENTSOF(basic_layer), NULL));
        ASSERT_OK(convert(&s, NULL, NULL));
        ASSERT_OK(test_read_file(s.img, &a, &a_size));
        ASSERT_OK(convert(&s, NULL, NULL));
        ASSERT_OK(test_read_file(s.img, &b, &b_size));

        ASSERT_EQ(a_size, b_size);
        ASSERT_TRUE(memcmp(a, b, a_size) == 0);
        return 0;
}

static int file_read_all(const char *path, char **ret, size_t *ret_size) {
        return read_file(path, 64 * 1024 * 1024, ret, ret_size);
}

static int file_write_all(const char *path, const void *data, size_t size) {
        return write_file_atomic(path, data, size, 0644);
}

/* Layers compressed with several gzip members (as pigz and some registries produce) are one
 * stream: the tar may cross member boundaries. */
TEST(gzip_multiple_members) {
        static const TarEntry entries[] = { { .path = "f", .data = "data of f" },
                                            { .path = "g", .data = "data of g" } };
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(layer_info_done) LayerInfo info = {};
        _cleanup_free_ char *tar = NULL, *joined = NULL, *half1 = NULL, *half2 = NULL;
        size_t size = 0;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(tar_write(s.tar, COMPRESSION_NONE, entries, ELEMENTSOF(entries), NULL));
        ASSERT_OK(file_read_all(s.tar, &tar, &size));

        /* Split the tar at its middle and gzip each part as a member of its own. */
        ASSERT_TRUE(asprintf(&half1, "head -c %zu %s | gzip -n > %s.1", size / 2, s.tar, s.tar) > 0);
        ASSERT_TRUE(asprintf(&half2, "tail -c +%zu %s | gzip -n > %s.2", size / 2 + 1, s.tar, s.tar) > 0);
        ASSERT_EQ(system(half1), 0);
        ASSERT_EQ(system(half2), 0);
        joined = strjoin("cat ", s.tar, ".1 ", s.tar, ".2 > ", s.tar, NULL);
        ASSERT_EQ(system(joined), 0);

        ASSERT_OK(convert(&s, NULL, &info));
        ASSERT_EQ(info.entries, 2);
        return 0;
}

TEST(gzip_corrupt_crc_rejected) {
        static const TarEntry entries[] = { { .path = "f", .data = "data" } };
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_free_ char *gz = NULL;
        size_t size = 0;
        int r;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(tar_write(s.tar, COMPRESSION_GZIP, entries, ELEMENTSOF(entries), NULL));
        ASSERT_OK(file_read_all(s.tar, &gz, &size));
        ASSERT_TRUE(size > 8);
        gz[size - 8] ^= 0xff;   /* the CRC-32 of the gzip trailer */
        ASSERT_OK(file_write_all(s.tar, gz, size));

        r = convert(&s, NULL, NULL);
        ASSERT_TRUE(r < 0);
        ASSERT_TRUE(strstr(error_message(r), "gzip CRC-32 or size mismatch"));
        return 0;
}

TEST(gzip_truncated_rejected) {
        static const TarEntry entries[] = { { .path = "f", .data = "data" } };
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_free_ char *gz = NULL;
        size_t size = 0;
        int r;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(tar_write(s.tar, COMPRESSION_GZIP, entries, ELEMENTSOF(entries), NULL));
        ASSERT_OK(file_read_all(s.tar, &gz, &size));
        ASSERT_OK(file_write_all(s.tar, gz, size / 2));

        r = convert(&s, NULL, NULL);
        ASSERT_TRUE(r < 0);
        ASSERT_TRUE(startswith(error_message(r), "failed to read"));
        return 0;
}

DEFINE_TEST_MAIN
