/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/stat.h>

#include "config.h"
#include "fileio.h"
#include "firmware.h"
#include "strv.h"
#include "tests.h"

TEST(firmware_candidates_order) {
        Store s = { .root = (char *) "/var/lib/cocoon" };
        _cleanup_strv_free_ char **ch = NULL, **qemu = NULL, **configured = NULL;

        ASSERT_OK(firmware_candidates(&s, NULL, FIRMWARE_CLOUD_HYPERVISOR, &ch));
        ASSERT_EQ(strv_length(ch), 1);
        ASSERT_STREQ(ch[0], "/var/lib/cocoon/firmware/CLOUDHV.fd");

        ASSERT_OK(firmware_candidates(&s, "", FIRMWARE_QEMU, &qemu));
        ASSERT_EQ(strv_length(qemu), 4);
        ASSERT_STREQ(qemu[0], "/var/lib/cocoon/firmware/OVMF_CODE_4M.fd");
        ASSERT_STREQ(qemu[1], "/usr/share/OVMF/OVMF_CODE_4M.fd");
        ASSERT_STREQ(qemu[2], "/usr/share/OVMF/OVMF_CODE.fd");
        ASSERT_STREQ(qemu[3], "/usr/share/ovmf/OVMF.fd");

        ASSERT_OK(firmware_candidates(&s, "/opt/fw/CLOUDHV.fd", FIRMWARE_QEMU, &configured));
        ASSERT_EQ(strv_length(configured), 1);
        ASSERT_STREQ(configured[0], "/opt/fw/CLOUDHV.fd");

        ASSERT_ERROR(firmware_candidates(&s, NULL, _FIRMWARE_KIND_MAX, &configured), EINVAL);
        return 0;
}

TEST(firmware_find_in_root) {
        char dir[] = "/tmp/test-firmware-XXXXXX";
        _cleanup_free_ char *fw_dir = NULL, *fw = NULL, *found = NULL, *expected = NULL;
        _cleanup_free_ char *empty = NULL;
        Store s;

        ASSERT_TRUE(mkdtemp(dir));
        s.root = dir;
        fw_dir = store_path(&s, "firmware", NULL);
        fw = store_path(&s, "firmware", "CLOUDHV.fd", NULL);

        ASSERT_ERROR(firmware_find(&s, NULL, FIRMWARE_CLOUD_HYPERVISOR, &found), ENOENT);
        ASSERT_TRUE(asprintf(&expected, "UEFI firmware not found: looked in %s; install CLOUDHV.fd "
                                        "into %s or set [VM] Firmware=", fw, fw_dir) > 0);
        ASSERT_ERROR_MESSAGE(-ENOENT, expected);

        /* An empty file is not firmware. */
        ASSERT_OK(mkdir_p(fw_dir, 0755));
        ASSERT_OK(write_file_atomic(fw, "", 0, 0644));
        ASSERT_ERROR(firmware_find(&s, NULL, FIRMWARE_CLOUD_HYPERVISOR, &found), ENOENT);

        ASSERT_OK(write_file_atomic(fw, "firmware", 8, 0644));
        ASSERT_OK(firmware_find(&s, NULL, FIRMWARE_CLOUD_HYPERVISOR, &found));
        ASSERT_STREQ(found, fw);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(firmware_configured_path_only) {
        char dir[] = "/tmp/test-firmware-XXXXXX";
        _cleanup_free_ char *fw = NULL, *fw_dir = NULL, *missing = NULL, *found = NULL;
        _cleanup_free_ char *expected = NULL;
        Store s;

        ASSERT_TRUE(mkdtemp(dir));
        s.root = dir;
        fw_dir = store_path(&s, "firmware", NULL);
        fw = store_path(&s, "firmware", "CLOUDHV.fd", NULL);
        missing = store_path(&s, "elsewhere.fd", NULL);
        ASSERT_OK(mkdir_p(fw_dir, 0755));
        ASSERT_OK(write_file_atomic(fw, "firmware", 8, 0644));

        /* The default file exists, but a configured path is never replaced by it. */
        ASSERT_ERROR(firmware_find(&s, missing, FIRMWARE_CLOUD_HYPERVISOR, &found), ENOENT);
        ASSERT_TRUE(asprintf(&expected, "UEFI firmware not found: looked in %s; install CLOUDHV.fd "
                                        "into %s or set [VM] Firmware=", missing, fw_dir) > 0);
        ASSERT_ERROR_MESSAGE(-ENOENT, expected);
        ASSERT_TRUE(found == NULL);

        ASSERT_OK(firmware_find(&s, fw, FIRMWARE_QEMU, &found));
        ASSERT_STREQ(found, fw);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(firmware_qemu_message) {
        char dir[] = "/tmp/test-firmware-XXXXXX";
        _cleanup_free_ char *found = NULL, *missing = NULL, *expected = NULL, *fw_dir = NULL;
        Store s;

        ASSERT_TRUE(mkdtemp(dir));
        s.root = dir;
        fw_dir = store_path(&s, "firmware", NULL);
        missing = store_path(&s, "missing.fd", NULL);

        ASSERT_ERROR(firmware_find(&s, missing, FIRMWARE_QEMU, &found), ENOENT);
        ASSERT_TRUE(asprintf(&expected, "UEFI firmware not found: looked in %s; install the ovmf "
                                        "package, or OVMF_CODE_4M.fd into %s, or set [VM] Firmware=",
                             missing, fw_dir) > 0);
        ASSERT_ERROR_MESSAGE(-ENOENT, expected);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(config_firmware_key) {
        _cleanup_(config_done) Config c = {};

        ASSERT_OK(config_parse_ini(&c, "[VM]\nFirmware=/opt/firmware/CLOUDHV.fd\n", "test.conf"));
        ASSERT_STREQ(c.firmware, "/opt/firmware/CLOUDHV.fd");
        return 0;
}

DEFINE_TEST_MAIN
