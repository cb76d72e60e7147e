/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "erofs-test-util.h"
#include "erofs.h"
#include "tests.h"

#define BUILD_TIME INT64_C(1700000000)

typedef struct Scratch {
        char *dir;
        char img[256];
        char out[256];     /* fsck.erofs --extract target */
        char mnt[256];
        bool mounted;
        int fd;
} Scratch;

static void scratch_done(Scratch *s) {
        if (s->mounted)
                test_umount(s->mnt);
        safe_close(s->fd);
        test_rm_rf(s->dir);
        free(s->dir);
}

static int scratch_init(Scratch *s) {
        *s = (Scratch) { .fd = -EBADF };

        s->dir = test_mkdtemp();
        if (!s->dir)
                return -errno;

        snprintf(s->img, sizeof(s->img), "%s/image.erofs", s->dir);
        snprintf(s->out, sizeof(s->out), "%s/out", s->dir);
        snprintf(s->mnt, sizeof(s->mnt), "%s/mnt", s->dir);
        if (mkdir(s->mnt, 0755) < 0)
                return -errno;

        s->fd = open(s->img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        return s->fd < 0 ? -errno : 0;
}

static const uint8_t test_uuid[16] = { 0xc0, 0xc0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                       0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e };

static ErofsAttr attr_make(uint32_t mode, uint32_t uid, uint32_t gid, int64_t mtime) {
        return (ErofsAttr) { .mode = mode, .uid = uid, .gid = gid, .mtime = mtime };
}

static uint8_t pattern_byte(uint64_t i, unsigned seed) {
        return (uint8_t) ((i * 7 + seed + (i >> 12)) & 0xff);
}

/* Add a file with pattern contents, written in odd-sized chunks as a tar reader would. */
static int add_pattern_file(ErofsWriter *w, const char *path, const ErofsAttr *attr, uint64_t size, unsigned seed) {
        uint8_t chunk[3001];
        ErofsInode *inode;
        int r;

        r = erofs_writer_add_file(w, path, attr, size, &inode);
        if (r < 0)
                return r;

        for (uint64_t off = 0; off < size; off += sizeof(chunk)) {
                size_t n = MIN(sizeof(chunk), size - off);

                for (size_t i = 0; i < n; i++)
                        chunk[i] = pattern_byte(off + i, seed);
                r = erofs_writer_write(w, inode, off, chunk, n);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_pattern_file(const char *root, const char *path, uint64_t size, unsigned seed) {
        _cleanup_free_ uint8_t *buf = NULL;
        char full[PATH_MAX];
        size_t n = 0;

        snprintf(full, sizeof(full), "%s/%s", root, path);
        if (test_read_file(full, &buf, &n) < 0 || n != size) {
                fprintf(stderr, "%s: cannot read %" PRIu64 " bytes\n", full, size);
                return -EIO;
        }

        for (size_t i = 0; i < n; i++)
                if (buf[i] != pattern_byte(i, seed)) {
                        fprintf(stderr, "%s: byte %zu differs\n", full, i);
                        return -EIO;
                }
        return 0;
}

static int stat_at(const char *root, const char *path, struct stat *st) {
        char full[PATH_MAX];

        snprintf(full, sizeof(full), "%s/%s", root, path);
        return lstat(full, st) < 0 ? -errno : 0;
}

static int finish_and_fsck(ErofsWriter *w, Scratch *s) {
        uint64_t size;
        struct stat st;
        int r;

        r = erofs_writer_finish(w, &size);
        if (r < 0)
                return r;

        if (fstat(s->fd, &st) < 0 || (uint64_t) st.st_size != size || size % EROFS_BLOCK_SIZE != 0)
                return -EIO;

        return test_fsck(s->img, s->out);
}

/* Mount the image, or return TEST_SKIP's errno when this machine cannot. */
static int mount_image(Scratch *s) {
        int r;

        if (geteuid() != 0)
                return -EPERM;

        r = test_mount_erofs(s->img, s->mnt);
        if (r < 0)
                return r;

        s->mounted = true;
        return 0;
}

TEST(file_sizes) {
        static const uint64_t sizes[] = { 0, 1, 4095, 4096, 5000, 1024 * 1024 };
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr a;
        struct stat st;
        char name[64];

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                snprintf(name, sizeof(name), "dir/file-%" PRIu64, sizes[i]);
                a = attr_make(S_IFREG | 0640, 1000 + i, 2000 + i, BUILD_TIME);
                ASSERT_OK(add_pattern_file(w, name, &a, sizes[i], i));
        }

        a = attr_make(S_IFREG | 04755, 0, 0, BUILD_TIME - 86400);
        ASSERT_OK(add_pattern_file(w, "setuid", &a, 10, 9));
        a = attr_make(S_IFREG | 0600, 70000, 80000, BUILD_TIME);
        ASSERT_OK(add_pattern_file(w, "bigids", &a, 100, 10));
        a = attr_make(S_IFDIR | 0700, 1000, 1000, BUILD_TIME + 5);
        ASSERT_OK(erofs_writer_mkdir(w, "empty", &a, NULL));

        ASSERT_OK(finish_and_fsck(w, &s));

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                snprintf(name, sizeof(name), "dir/file-%" PRIu64, sizes[i]);
                ASSERT_OK(check_pattern_file(s.out, name, sizes[i], i));
                ASSERT_OK(stat_at(s.out, name, &st));
                ASSERT_EQ(st.st_mode, S_IFREG | 0640);
                ASSERT_EQ(st.st_uid, 1000 + i);
                ASSERT_EQ(st.st_gid, 2000 + i);
                ASSERT_EQ(st.st_mtime, BUILD_TIME);
        }

        /* fsck.erofs 1.5 extracts with chmod() before chown(), which clears the setuid bit, so the
         * full mode is checked on the kernel mount below. */
        ASSERT_OK(check_pattern_file(s.out, "setuid", 10, 9));
        ASSERT_OK(stat_at(s.out, "setuid", &st));
        ASSERT_EQ(st.st_mode & 0777, 0755);
        ASSERT_EQ(st.st_mtime, BUILD_TIME - 86400);

        ASSERT_OK(stat_at(s.out, "bigids", &st));
        ASSERT_EQ(st.st_uid, 70000);
        ASSERT_EQ(st.st_gid, 80000);

        ASSERT_OK(stat_at(s.out, "empty", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0700);
        ASSERT_EQ(st.st_uid, 1000);
        ASSERT_EQ(st.st_mtime, BUILD_TIME + 5);

        /* "dir" was never added itself, so it got the defaults for missing parents. */
        ASSERT_OK(stat_at(s.out, "dir", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0755);
        ASSERT_EQ(st.st_uid, 0);
        ASSERT_EQ(st.st_mtime, BUILD_TIME);

        if (mount_image(&s) < 0)
                return 0;
        ASSERT_OK(stat_at(s.mnt, "setuid", &st));
        ASSERT_EQ(st.st_mode, S_IFREG | 04755);
        ASSERT_OK(check_pattern_file(s.mnt, "dir/file-1048576", 1024 * 1024, 5));
        ASSERT_OK(stat_at(s.mnt, "bigids", &st));
        ASSERT_EQ(st.st_uid, 70000);
        return 0;
}

static int count_entries(const char *path, unsigned *ret) {
        DIR *d = opendir(path);
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        *ret = n;
        return 0;
}

/* Names that sort before "." and between "." and "..", to check that the dot entries are merged
 * into the sort order instead of being put first. */
static const char *const odd_names[] = { "!bang", "-dash", ".-dot", "...", ".a", "Z", "a", "\x7f", "\xff" };

TEST(large_directory) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr a = attr_make(S_IFREG | 0644, 0, 0, BUILD_TIME);
        char name[300], path[PATH_MAX];
        unsigned n = 0;

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));

        /* 450 entries with 255-byte names take 30 directory blocks. */
        for (unsigned i = 0; i < 450; i++) {
                memset(name, 'x', EROFS_NAME_MAX);
                snprintf(name, sizeof(name), "%03u", i);
                name[3] = 'x';
                name[EROFS_NAME_MAX] = '\0';
                snprintf(path, sizeof(path), "big/%s", name);
                ASSERT_OK(add_pattern_file(w, path, &a, i % 3, i));
        }
        for (size_t i = 0; i < ELEMENTSOF(odd_names); i++) {
                snprintf(path, sizeof(path), "big/%s", odd_names[i]);
                ASSERT_OK(add_pattern_file(w, path, &a, 7, i));
                snprintf(path, sizeof(path), "small/%s", odd_names[i]);
                ASSERT_OK(add_pattern_file(w, path, &a, 7, i));
        }

        ASSERT_OK(finish_and_fsck(w, &s));

        snprintf(path, sizeof(path), "%s/big", s.out);
        ASSERT_OK(count_entries(path, &n));
        ASSERT_EQ(n, 450 + ELEMENTSOF(odd_names));
        snprintf(path, sizeof(path), "%s/small", s.out);
        ASSERT_OK(count_entries(path, &n));
        ASSERT_EQ(n, ELEMENTSOF(odd_names));

        for (size_t i = 0; i < ELEMENTSOF(odd_names); i++) {
                snprintf(path, sizeof(path), "small/%s", odd_names[i]);
                ASSERT_OK(check_pattern_file(s.out, path, 7, i));
        }

        /* The kernel binary-searches directory blocks, so a wrong order shows up as a failed lookup. */
        if (mount_image(&s) < 0)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(odd_names); i++) {
                snprintf(path, sizeof(path), "big/%s", odd_names[i]);
                ASSERT_OK(check_pattern_file(s.mnt, path, 7, i));
        }
        snprintf(name, sizeof(name), "big/449");
        memset(name + 7, 'x', EROFS_NAME_MAX - 3);
        name[4 + EROFS_NAME_MAX] = '\0';
        ASSERT_OK(check_pattern_file(s.mnt, name, 449 % 3, 449));
        return 0;
}

TEST(symlinks) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr a = attr_make(S_IFLNK | 0777, 0, 0, BUILD_TIME);
        char long_target[301], max_target[EROFS_SYMLINK_MAX + 1], buf[EROFS_SYMLINK_MAX + 2], path[PATH_MAX];
        uint8_t value[3000] = {};
        ErofsInode *inode;
        ssize_t n;

        if (!test_have_fsck())
                return TEST_SKIP;

        memset(long_target, 'l', sizeof(long_target) - 1);
        long_target[sizeof(long_target) - 1] = '\0';
        memset(max_target, 'm', sizeof(max_target) - 1);
        max_target[sizeof(max_target) - 1] = '\0';

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));
        ASSERT_OK(erofs_writer_add_symlink(w, "short", &a, "a", NULL));
        ASSERT_OK(erofs_writer_add_symlink(w, "long", &a, long_target, NULL));
        ASSERT_OK(erofs_writer_add_symlink(w, "max", &a, max_target, NULL));
        /* With 3000 bytes of xattrs the target no longer fits next to the inode and goes to a block. */
        ASSERT_OK(erofs_writer_add_symlink(w, "plain", &a, max_target, &inode));
        ASSERT_OK(erofs_inode_set_xattr(inode, "user.big", value, sizeof(value)));

        ASSERT_OK(finish_and_fsck(w, &s));

        static const char *const names[] = { "short", "long", "max", "plain" };
        const char *targets[] = { "a", long_target, max_target, max_target };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(path, sizeof(path), "%s/%s", s.out, names[i]);
                n = readlink(path, buf, sizeof(buf));
                ASSERT_TRUE(n >= 0);
                buf[n] = '\0';
                ASSERT_STREQ(buf, targets[i]);
        }

        if (mount_image(&s) < 0)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(path, sizeof(path), "%s/%s", s.mnt, names[i]);
                n = readlink(path, buf, sizeof(buf));
                ASSERT_TRUE(n >= 0);
                buf[n] = '\0';
                ASSERT_STREQ(buf, targets[i]);
        }
        return 0;
}

TEST(special_files) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr a;
        struct stat st;

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));

        a = attr_make(S_IFCHR | 0666, 0, 0, BUILD_TIME);
        a.rdev_major = 1;
        a.rdev_minor = 3;
        ASSERT_OK(erofs_writer_add_special(w, "dev/null", &a, NULL));
        a = attr_make(S_IFBLK | 0660, 0, 6, BUILD_TIME);
        a.rdev_major = 8;
        a.rdev_minor = 1;
        ASSERT_OK(erofs_writer_add_special(w, "dev/sda1", &a, NULL));
        a.rdev_major = 259;
        a.rdev_minor = 70000;
        ASSERT_OK(erofs_writer_add_special(w, "dev/nvme", &a, NULL));
        a = attr_make(S_IFIFO | 0600, 5, 5, BUILD_TIME);
        ASSERT_OK(erofs_writer_add_special(w, "fifo", &a, NULL));
        a = attr_make(S_IFCHR, 0, 0, BUILD_TIME);
        ASSERT_OK(erofs_writer_add_special(w, "whiteout", &a, NULL));

        ASSERT_OK(finish_and_fsck(w, &s));

        ASSERT_OK(stat_at(s.out, "dev/null", &st));
        ASSERT_EQ(st.st_mode, S_IFCHR | 0666);
        ASSERT_EQ(st.st_rdev, makedev(1, 3));
        ASSERT_OK(stat_at(s.out, "dev/sda1", &st));
        ASSERT_EQ(st.st_mode, S_IFBLK | 0660);
        ASSERT_EQ(st.st_gid, 6);
        ASSERT_EQ(st.st_rdev, makedev(8, 1));
        ASSERT_OK(stat_at(s.out, "dev/nvme", &st));
        ASSERT_EQ(st.st_rdev, makedev(259, 70000));
        ASSERT_OK(stat_at(s.out, "fifo", &st));
        ASSERT_EQ(st.st_mode, S_IFIFO | 0600);
        ASSERT_EQ(st.st_uid, 5);
        ASSERT_OK(stat_at(s.out, "whiteout", &st));
        ASSERT_EQ(st.st_mode, S_IFCHR);
        ASSERT_EQ(st.st_rdev, makedev(0, 0));
        return 0;
}

static int xattr_equals(const char *path, const char *name, const char *value, size_t size) {
        char buf[4096];
        ssize_t n = lgetxattr(path, name, buf, sizeof(buf));

        if (n < 0) {
                fprintf(stderr, "%s: cannot read xattr %s: %m\n", path, name);
                return -errno;
        }
        return (size_t) n == size && memcmp(buf, value, size) == 0 ? 0 : -EBADMSG;
}

TEST(mounted_hardlinks_xattrs) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr a = attr_make(S_IFREG | 0644, 0, 0, BUILD_TIME - 1);
        ErofsInode *inode;
        struct stat st1, st2, st3;
        char path[PATH_MAX];
        unsigned n = 0;

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));
        ASSERT_OK(add_pattern_file(w, "data/file", &a, 5000, 1));
        ASSERT_OK(erofs_writer_add_hardlink(w, "data/link1", "data/file"));
        ASSERT_OK(erofs_writer_add_hardlink(w, "other/link2", "data/file"));
        ASSERT_OK(erofs_writer_lookup(w, "data/file", &inode));
        ASSERT_OK(erofs_inode_set_xattr(inode, "user.foo", "bar", 3));
        ASSERT_OK(erofs_inode_set_xattr(inode, "security.test", "\x01\x02\x00", 3));
        ASSERT_OK(erofs_inode_set_xattr(inode, "user.empty", "", 0));
        /* Setting a name again replaces its value. */
        ASSERT_OK(erofs_inode_set_xattr(inode, "user.foo", "baz!", 4));
        ASSERT_TRUE(erofs_inode_has_xattr(inode, "user.foo"));

        ASSERT_OK(erofs_writer_ensure_dir(w, "opq/sub", &inode));
        ASSERT_OK(erofs_writer_ensure_dir(w, "opq", &inode));
        ASSERT_OK(erofs_inode_set_xattr(inode, "trusted.overlay.opaque", "y", 1));
        ASSERT_OK(erofs_writer_add_special(w, "opq/fifo", &(ErofsAttr) { .mode = S_IFIFO | 0644 }, NULL));

        ASSERT_OK(finish_and_fsck(w, &s));

        /* fsck.erofs --extract copies every hard link, so the sharing is checked on the kernel mount. */
        if (mount_image(&s) < 0) {
                fprintf(stderr, "cannot mount erofs here, skipping the kernel checks\n");
                return TEST_SKIP;
        }

        snprintf(path, sizeof(path), "%s/data/file", s.mnt);
        ASSERT_TRUE(lstat(path, &st1) == 0);
        ASSERT_OK(xattr_equals(path, "user.foo", "baz!", 4));
        ASSERT_OK(xattr_equals(path, "security.test", "\x01\x02\x00", 3));
        ASSERT_OK(xattr_equals(path, "user.empty", "", 0));
        snprintf(path, sizeof(path), "%s/data/link1", s.mnt);
        ASSERT_TRUE(lstat(path, &st2) == 0);
        snprintf(path, sizeof(path), "%s/other/link2", s.mnt);
        ASSERT_TRUE(lstat(path, &st3) == 0);
        ASSERT_EQ(st1.st_ino, st2.st_ino);
        ASSERT_EQ(st1.st_ino, st3.st_ino);
        ASSERT_EQ(st1.st_nlink, 3);
        ASSERT_EQ(st1.st_mtime, BUILD_TIME - 1);
        ASSERT_OK(check_pattern_file(s.mnt, "other/link2", 5000, 1));

        snprintf(path, sizeof(path), "%s/opq", s.mnt);
        ASSERT_OK(xattr_equals(path, "trusted.overlay.opaque", "y", 1));
        ASSERT_TRUE(lstat(path, &st1) == 0);
        ASSERT_EQ(st1.st_nlink, 3);     /* ".", its entry in the root and "sub/.." */

        /* The root is nid 1, never 0: readdir() would drop entries with inode number 0. */
        ASSERT_TRUE(lstat(s.mnt, &st1) == 0);
        ASSERT_TRUE(st1.st_ino != 0);
        ASSERT_EQ(st1.st_nlink, 2 + 3);
        DIR *d = opendir(s.mnt);
        ASSERT_TRUE(d);
        n = 0;
        for (struct dirent *de; (de = readdir(d));)
                n += streq(de->d_name, ".") || streq(de->d_name, "..");
        closedir(d);
        ASSERT_EQ(n, 2);
        return 0;
}

TEST(replacement_rules) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr f = attr_make(S_IFREG | 0644, 0, 0, BUILD_TIME);
        ErofsAttr d = attr_make(S_IFDIR | 0711, 7, 7, BUILD_TIME);
        ErofsInode *inode;
        struct stat st;

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));

        /* A directory replaced by a file loses its subtree, except inodes linked from elsewhere. */
        ASSERT_OK(add_pattern_file(w, "tree/keep", &f, 10, 1));
        ASSERT_OK(add_pattern_file(w, "tree/drop", &f, 10, 2));
        ASSERT_OK(erofs_writer_add_hardlink(w, "kept", "tree/keep"));
        ASSERT_OK(add_pattern_file(w, "tree", &f, 20, 3));
        ASSERT_ERROR(erofs_writer_lookup(w, "tree/drop", &inode), ENOTDIR);

        /* A file replaced by a directory. */
        ASSERT_OK(add_pattern_file(w, "was-file", &f, 10, 4));
        ASSERT_OK(erofs_writer_mkdir(w, "was-file", &d, NULL));
        ASSERT_OK(add_pattern_file(w, "was-file/inner", &f, 10, 5));

        /* A directory entry for an existing directory updates its attributes and keeps its entries. */
        ASSERT_OK(add_pattern_file(w, "dir/a", &f, 10, 6));
        ASSERT_OK(erofs_writer_mkdir(w, "dir", &d, NULL));

        /* A later file replaces an earlier one, and linking a file to itself keeps it. */
        ASSERT_OK(add_pattern_file(w, "dup", &f, 10, 7));
        ASSERT_OK(add_pattern_file(w, "dup", &f, 30, 8));
        ASSERT_OK(erofs_writer_add_hardlink(w, "dup", "dup"));

        /* The root directory takes attributes like any other. */
        ASSERT_OK(erofs_writer_mkdir(w, "", &d, NULL));

        ASSERT_OK(finish_and_fsck(w, &s));

        ASSERT_OK(check_pattern_file(s.out, "tree", 20, 3));
        ASSERT_OK(check_pattern_file(s.out, "kept", 10, 1));
        ASSERT_OK(check_pattern_file(s.out, "was-file/inner", 10, 5));
        ASSERT_OK(stat_at(s.out, "was-file", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0711);
        ASSERT_OK(check_pattern_file(s.out, "dir/a", 10, 6));
        ASSERT_OK(stat_at(s.out, "dir", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0711);
        ASSERT_EQ(st.st_uid, 7);
        ASSERT_OK(check_pattern_file(s.out, "dup", 30, 8));
        ASSERT_OK(stat_at(s.out, ".", &st));
        ASSERT_EQ(st.st_mode, S_IFDIR | 0711);
        ASSERT_EQ(st.st_uid, 7);
        return 0;
}

TEST(rejected_entries) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr f = attr_make(S_IFREG | 0644, 0, 0, BUILD_TIME);
        char target[EROFS_SYMLINK_MAX + 2];
        uint8_t value[4020] = {};
        ErofsInode *inode;
        int r;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));
        ASSERT_OK(add_pattern_file(w, "dir/file", &f, 10, 1));

        r = erofs_writer_add_hardlink(w, "link", "missing");
        ASSERT_ERROR(r, ENOENT);
        ASSERT_ERROR_MESSAGE(r, "hard link target 'missing' of 'link' not found");

        r = erofs_writer_add_hardlink(w, "link", "dir");
        ASSERT_ERROR(r, EPERM);
        ASSERT_ERROR_MESSAGE(r, "hard link target 'dir' of 'link' is a directory");

        r = erofs_writer_add_file(w, "dir/file/sub", &f, 1, NULL);
        ASSERT_ERROR(r, ENOTDIR);
        ASSERT_ERROR_MESSAGE(r, "parent 'dir/file' of 'dir/file/sub' is not a directory");

        r = erofs_writer_add_file(w, "", &f, 1, NULL);
        ASSERT_ERROR(r, EISDIR);
        ASSERT_ERROR_MESSAGE(r, "root directory cannot be replaced by a non-directory");

        r = erofs_writer_add_file(w, "a/../b", &f, 1, NULL);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid path 'a/../b'");

        r = erofs_writer_add_symlink(w, "empty", &f, "", NULL);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "symlink 'empty' has an empty target");

        memset(target, 't', sizeof(target) - 1);
        target[sizeof(target) - 1] = '\0';
        r = erofs_writer_add_symlink(w, "long", &f, target, NULL);
        ASSERT_ERROR(r, ENAMETOOLONG);
        ASSERT_ERROR_MESSAGE(r, "symlink 'long' has a target of 4096 bytes, over the limit of 4095");

        ErofsAttr dev = attr_make(S_IFBLK | 0600, 0, 0, BUILD_TIME);
        dev.rdev_major = 4096;
        r = erofs_writer_add_special(w, "dev", &dev, NULL);
        ASSERT_ERROR(r, ERANGE);
        ASSERT_ERROR_MESSAGE(r, "device 'dev' has the number 4096:0, over the maximum of 4095:1048575");

        r = erofs_writer_add_special(w, "reg", &f, NULL);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "'reg' has the unsupported file type 0100000");

        ASSERT_OK(erofs_writer_lookup(w, "dir/file", &inode));
        r = erofs_inode_set_xattr(inode, "system.nfs4_acl", "x", 1);
        ASSERT_ERROR(r, EOPNOTSUPP);
        ASSERT_ERROR_MESSAGE(r, "xattr 'system.nfs4_acl' has a prefix EROFS cannot store");
        ASSERT_ERROR(erofs_inode_set_xattr(inode, "user.", "x", 1), EOPNOTSUPP);
        ASSERT_TRUE(!erofs_xattr_name_supported("system.posix_acl_accessX"));
        ASSERT_TRUE(erofs_xattr_name_supported("system.posix_acl_default"));

        r = erofs_inode_set_xattr(inode, "user.big", value, sizeof(value));
        ASSERT_ERROR(r, E2BIG);
        ASSERT_ERROR_MESSAGE(r, "xattrs take 4040 bytes with 'user.big', over the limit of 4032");
        ASSERT_OK(erofs_inode_set_xattr(inode, "user.big", value, 4032 - 12 - 4 - 3));

        r = erofs_writer_write(w, inode, 5, "123456", 6);
        ASSERT_ERROR(r, EFBIG);
        ASSERT_ERROR_MESSAGE(r, "data of 6 bytes at offset 5 runs past the file size of 10 bytes");

        r = erofs_writer_add_file(w, "huge", &f, UINT64_C(1) << 44, NULL);
        ASSERT_ERROR(r, EFBIG);
        ASSERT_ERROR_MESSAGE(r, "file 'huge' of 17592186044416 bytes does not fit, the EROFS image would be "
                             "over 16 TiB");

        ASSERT_OK(erofs_writer_finish(w, NULL));
        r = erofs_writer_add_file(w, "late", &f, 1, NULL);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "EROFS image is already finished");
        return 0;
}

TEST(xattr_limit_message) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        uint8_t value[4100] = {};
        ErofsInode *inode;
        int r;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));
        ASSERT_OK(erofs_writer_ensure_dir(w, "d", &inode));

        /* 12 (header) + 4 (entry header) + 1 ("x") + 4100, padded to 4 bytes. */
        r = erofs_inode_set_xattr(inode, "user.x", value, sizeof(value));
        ASSERT_ERROR(r, E2BIG);
        ASSERT_ERROR_MESSAGE(r, "xattrs take 4120 bytes with 'user.x', over the limit of 4032");
        return 0;
}

static int build_sample(int fd) {
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr a = attr_make(S_IFREG | 0644, 1, 2, BUILD_TIME + 3);
        ErofsInode *inode;
        int r;

        r = erofs_writer_new(fd, test_uuid, BUILD_TIME, &w);
        if (r < 0)
                return r;

        for (unsigned i = 0; i < 50; i++) {
                char path[64];

                snprintf(path, sizeof(path), "d%u/f%u", i % 7, i);
                r = add_pattern_file(w, path, &a, i * 100, i);
                if (r < 0)
                        return r;
        }

        r = erofs_writer_add_symlink(w, "d1/sym", &a, "f1", &inode);
        if (r < 0)
                return r;
        r = erofs_inode_set_xattr(inode, "trusted.x", "1", 1);
        if (r < 0)
                return r;

        return erofs_writer_finish(w, NULL);
}

TEST(deterministic_output) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_free_ uint8_t *a = NULL, *b = NULL;
        size_t a_size = 0, b_size = 0;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(build_sample(s.fd));
        ASSERT_OK(test_read_file(s.img, &a, &a_size));
        /* The writer truncates the file first, so stale bytes of the first build cannot survive. */
        ASSERT_OK(build_sample(s.fd));
        ASSERT_OK(test_read_file(s.img, &b, &b_size));

        ASSERT_EQ(a_size, b_size);
        ASSERT_TRUE(memcmp(a, b, a_size) == 0);
        return 0;
}

TEST(superblock_fields) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_free_ uint8_t *img = NULL;
        size_t size = 0;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(build_sample(s.fd));
        ASSERT_OK(test_read_file(s.img, &img, &size));

        const uint8_t *sb = img + 1024;
        ASSERT_EQ(sb[0] | sb[1] << 8 | sb[2] << 16 | (uint32_t) sb[3] << 24, 0xE0F5E1E2U);
        ASSERT_EQ(sb[12], 12);                          /* 4 KiB blocks */
        ASSERT_EQ(sb[14] | sb[15] << 8, 1);             /* root nid: first slot, never 0 */
        ASSERT_TRUE(memcmp(sb + 48, test_uuid, 16) == 0);
        ASSERT_EQ(sb[80] | sb[81] | sb[82] | sb[83], 0); /* no incompatible features */
        uint32_t blocks = sb[36] | sb[37] << 8 | sb[38] << 16 | (uint32_t) sb[39] << 24;
        ASSERT_EQ((uint64_t) blocks * EROFS_BLOCK_SIZE, size);

        /* The checksum is the CRC-32C of the rest of block 0 with the checksum field zeroed. */
        uint8_t block[EROFS_BLOCK_SIZE - 1024];
        memcpy(block, sb, sizeof(block));
        memset(block + 4, 0, 4);
        uint32_t crc = sb[4] | sb[5] << 8 | sb[6] << 16 | (uint32_t) sb[7] << 24;
        ASSERT_EQ(crc, erofs_crc32c(UINT32_MAX, block, sizeof(block)));
        /* Reference value: the bitwise NOT of the standard CRC-32C of "123456789" (0xE3069283). */
        ASSERT_EQ(erofs_crc32c(UINT32_MAX, "123456789", 9), ~UINT32_C(0xE3069283));
        return 0;
}

TEST(fsck_catches_corruption) {
        _cleanup_(scratch_done) Scratch s = {};
        uint8_t byte = 0x5a;

        if (!test_have_fsck())
                return TEST_SKIP;

        /* Guards the checks above: one flipped byte covered by the superblock checksum must fail. */
        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(build_sample(s.fd));
        ASSERT_OK(test_fsck(s.img, NULL));
        ASSERT_EQ(pwrite(s.fd, &byte, 1, 1024 + 100), 1);
        ASSERT_ERROR(test_fsck(s.img, NULL), EIO);
        return 0;
}

TEST(sparse_file) {
        _cleanup_(scratch_done) Scratch s = {};
        _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
        ErofsAttr a = attr_make(S_IFREG | 0644, 0, 0, BUILD_TIME);
        _cleanup_free_ uint8_t *buf = NULL;
        const uint64_t size = 64 * 1024 * 1024;
        ErofsInode *inode;
        struct stat st;
        char path[PATH_MAX];
        size_t n = 0;

        if (!test_have_fsck())
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&s));
        ASSERT_OK(erofs_writer_new(s.fd, test_uuid, BUILD_TIME, &w));
        ASSERT_OK(erofs_writer_add_file(w, "sparse", &a, size, &inode));
        ASSERT_OK(erofs_writer_write(w, inode, 0, "head", 4));
        ASSERT_OK(erofs_writer_write(w, inode, size - 4, "tail", 4));
        ASSERT_OK(finish_and_fsck(w, &s));

        /* The holes were never written, so the image takes far less disk space than its size. */
        ASSERT_TRUE(stat(s.img, &st) == 0);
        ASSERT_TRUE((uint64_t) st.st_blocks * 512 < size / 4);

        snprintf(path, sizeof(path), "%s/sparse", s.out);
        ASSERT_OK(test_read_file(path, &buf, &n));
        ASSERT_EQ(n, size);
        ASSERT_TRUE(memcmp(buf, "head", 4) == 0);
        ASSERT_TRUE(memcmp(buf + size - 4, "tail", 4) == 0);
        for (size_t i = 4; i < size - 4; i++)
                if (buf[i] != 0)
                        ASSERT_EQ(buf[i], 0);
        return 0;
}

/* Two images stacked as overlayfs lower layers, the way a guest stacks image layers. */
TEST(overlay_whiteout_opaque) {
        _cleanup_(scratch_done) Scratch lower = {}, upper = {};
        ErofsAttr f = attr_make(S_IFREG | 0644, 0, 0, BUILD_TIME);
        char merged[256], path[PATH_MAX];
        unsigned n = 0;
        int r;

        if (geteuid() != 0)
                return TEST_SKIP;

        ASSERT_OK(scratch_init(&lower));
        ASSERT_OK(scratch_init(&upper));

        {
                _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;

                ASSERT_OK(erofs_writer_new(lower.fd, test_uuid, BUILD_TIME, &w));
                ASSERT_OK(add_pattern_file(w, "gone", &f, 10, 1));
                ASSERT_OK(add_pattern_file(w, "stays", &f, 10, 2));
                ASSERT_OK(add_pattern_file(w, "opq/old", &f, 10, 3));
                ASSERT_OK(add_pattern_file(w, "plain/old", &f, 10, 4));
                ASSERT_OK(erofs_writer_finish(w, NULL));
        }
        {
                _cleanup_(erofs_writer_freep) ErofsWriter *w = NULL;
                ErofsInode *dir;

                ASSERT_OK(erofs_writer_new(upper.fd, test_uuid, BUILD_TIME, &w));
                ASSERT_OK(erofs_writer_add_special(w, "gone", &(ErofsAttr) { .mode = S_IFCHR }, NULL));
                ASSERT_OK(erofs_writer_ensure_dir(w, "opq", &dir));
                ASSERT_OK(erofs_inode_set_xattr(dir, "trusted.overlay.opaque", "y", 1));
                ASSERT_OK(add_pattern_file(w, "opq/new", &f, 10, 5));
                ASSERT_OK(add_pattern_file(w, "plain/new", &f, 10, 6));
                ASSERT_OK(erofs_writer_finish(w, NULL));
        }

        if (mount_image(&lower) < 0 || mount_image(&upper) < 0) {
                fprintf(stderr, "cannot mount erofs here, skipping\n");
                return TEST_SKIP;
        }

        snprintf(merged, sizeof(merged), "%s/merged", upper.dir);
        ASSERT_TRUE(mkdir(merged, 0755) == 0);
        r = test_run("mount -t overlay overlay -o 'lowerdir=%s:%s' '%s' 2>/dev/null", upper.mnt, lower.mnt, merged);
        if (r != 0) {
                fprintf(stderr, "cannot mount overlayfs here, skipping\n");
                return TEST_SKIP;
        }

        snprintf(path, sizeof(path), "%s/gone", merged);
        int gone = access(path, F_OK) < 0 && errno == ENOENT;
        snprintf(path, sizeof(path), "%s/opq/old", merged);
        int hidden = access(path, F_OK) < 0 && errno == ENOENT;
        int stays = check_pattern_file(merged, "stays", 10, 2);
        int opq_new = check_pattern_file(merged, "opq/new", 10, 5);
        int plain_old = check_pattern_file(merged, "plain/old", 10, 4);
        int plain_new = check_pattern_file(merged, "plain/new", 10, 6);
        snprintf(path, sizeof(path), "%s/opq", merged);
        int counted = count_entries(path, &n);
        test_umount(merged);

        ASSERT_TRUE(gone);
        ASSERT_TRUE(hidden);
        ASSERT_OK(stays);
        ASSERT_OK(opq_new);
        ASSERT_OK(plain_old);
        ASSERT_OK(plain_new);
        ASSERT_OK(counted);
        ASSERT_EQ(n, 1);
        return 0;
}

DEFINE_TEST_MAIN
