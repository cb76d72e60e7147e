/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>

#include "config.h"
#include "fileio.h"
#include "strv.h"
#include "tests.h"

static int write_string(const char *path, const char *s) {
        return write_file_atomic(path, s, strlen(s), 0644);
}

static void clear_env(void) {
        const char *vars[] = { "COCOON_ROOT_DIR", "COCOON_RUN_DIR", "COCOON_LOG_DIR", "COCOON_DNS",
                               "COCOON_LOG_LEVEL", "COCOON_ROOT_PASSWORD",
                               "COCOON_DEFAULT_ROOT_PASSWORD", "COCOON_PULL_CONCURRENCY" };

        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                unsetenv(vars[i]);
}

TEST(ini_parses_sections_and_keys) {
        _cleanup_(config_done) Config c = {};

        ASSERT_OK(config_parse_ini(&c,
                                   "# comment\n"
                                   "[Cocoon]\n"
                                   "RootDir = /srv/cocoon\n"
                                   "LogLevel=debug\n"
                                   "; another comment\n"
                                   "[Network]\n"
                                   "DNS=10.0.0.1,10.0.0.2\n"
                                   "[Images]\n"
                                   "PullConcurrency=8\n",
                                   "test.conf"));
        ASSERT_STREQ(c.root_dir, "/srv/cocoon");
        ASSERT_EQ(c.log_level, LOG_LEVEL_DEBUG);
        ASSERT_STREQ(c.dns, "10.0.0.1,10.0.0.2");
        ASSERT_EQ(c.pull_concurrency, 8);
        return 0;
}

TEST(ini_rejects_bad_lines) {
        _cleanup_(config_done) Config c = {};
        int r;

        r = config_parse_ini(&c, "RootDir=/x\n", "a.conf");
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "assignment outside of any section at a.conf:1");

        r = config_parse_ini(&c, "[Cocoon]\n\nRootDir\n", "b.conf");
        ASSERT_ERROR_MESSAGE(r, "missing '=' in line 'RootDir' at b.conf:3");

        r = config_parse_ini(&c, "[Cocoon\n", "c.conf");
        ASSERT_ERROR_MESSAGE(r, "invalid section header '[Cocoon' at c.conf:1");

        r = config_parse_ini(&c, "[Cocoon]\nLogLevel=loud\n", "d.conf");
        ASSERT_ERROR_MESSAGE(r, "invalid log level 'loud' in d.conf:2: expected debug, info, warn or error");

        r = config_parse_ini(&c, "[Images]\nPullConcurrency=0\n", "e.conf");
        ASSERT_ERROR_MESSAGE(r, "invalid value '0' for PullConcurrency in e.conf:2: expected a number from 1 to 32");
        return 0;
}

TEST(precedence_flag_env_file_default) {
        char dir[] = "/tmp/cocoon-test-XXXXXX";
        _cleanup_free_ char *file = NULL, *dropdir = NULL, *drop = NULL;
        _cleanup_(config_done) Config c = {};
        ConfigFlags flags = {};

        clear_env();
        ASSERT_TRUE(mkdtemp(dir));
        file = strjoin(dir, "/cocoon.conf", NULL);
        dropdir = strjoin(dir, "/cocoon.conf.d", NULL);
        drop = strjoin(dropdir, "/50-dns.conf", NULL);
        ASSERT_OK(write_string(file, "[Cocoon]\nRootDir=/from/file\nLogDir=/from/file/log\n"
                                     "[Network]\nDNS=1.2.3.4\n"));
        ASSERT_OK(mkdir_p(dropdir, 0755));
        ASSERT_OK(write_string(drop, "[Network]\nDNS=5.6.7.8\n"));

        flags.config_file = file;
        ASSERT_OK(config_load(&c, &flags));
        ASSERT_STREQ(c.root_dir, "/from/file");
        ASSERT_STREQ(c.run_dir, "/from/file/run");
        ASSERT_STREQ(c.log_dir, "/from/file/log");
        ASSERT_STREQ(c.dns, "5.6.7.8");              /* the drop-in overrides the file */
        ASSERT_STREQ(c.cni_bin_dir, "/opt/cni/bin"); /* default */
        config_done(&c);

        setenv("COCOON_ROOT_DIR", "/from/env", 1);
        ASSERT_OK(config_load(&c, &flags));
        ASSERT_STREQ(c.root_dir, "/from/env");
        config_done(&c);

        flags.root_dir = "/from/flag";
        ASSERT_OK(config_load(&c, &flags));
        ASSERT_STREQ(c.root_dir, "/from/flag");
        config_done(&c);

        clear_env();
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(missing_explicit_config_fails) {
        _cleanup_(config_done) Config c = {};
        ConfigFlags flags = { .config_file = "/nonexistent/cocoon.conf" };
        int r;

        clear_env();
        r = config_load(&c, &flags);
        ASSERT_ERROR(r, ENOENT);
        ASSERT_ERROR_MESSAGE(r, "cannot read configuration file '/nonexistent/cocoon.conf': No such file or directory");
        return 0;
}

TEST(relative_root_dir_rejected) {
        _cleanup_(config_done) Config c = {};
        ConfigFlags flags = { .config_file = "/dev/null", .root_dir = "relative/dir" };
        int r;

        clear_env();
        r = config_load(&c, &flags);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "RootDir must be an absolute path, got 'relative/dir'");
        return 0;
}

DEFINE_TEST_MAIN
