/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "ch.h"
#include "strv.h"
#include "tests.h"

static Vm *make_oci_vm(void) {
        Vm *vm = calloc(1, sizeof(Vm));

        vm->id = strdup("0123456789abcdef");
        vm->name = strdup("web");
        vm->cpu = 2;
        vm->memory = 1ULL << 30;
        vm->run_dir = strdup("/run/cocoon/0123456789abcdef");
        vm->kernel_path = strdup("/var/lib/cocoon/boot/L1/vmlinuz");
        vm->initrd_path = strdup("/var/lib/cocoon/boot/L1/initrd.img");
        vm->cmdline = strdup("console=hvc0 boot=cocoon-overlay");
        vm->storage_configs = calloc(2, sizeof(VmStorage));
        vm->storage_configs[0] = (VmStorage) { strdup("/b/L0.erofs"), true, strdup("cocoon-layer0"), STORAGE_LAYER, strdup("raw") };
        vm->storage_configs[1] = (VmStorage) { strdup("/v/cow.raw"), false, strdup("cocoon-cow"), STORAGE_COW, strdup("raw") };
        vm->n_storage = 2;
        return vm;
}

TEST(argv_oci_direct_boot) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        ASSERT_OK(ch_build_argv(vm, "/usr/bin/cloud-hypervisor", 53, &argv));
        joined = strv_join(argv, " ");
        ASSERT_STREQ(joined,
                     "/usr/bin/cloud-hypervisor --api-socket path=/run/cocoon/0123456789abcdef/api.sock "
                     "--cpus boot=2,max=2 --memory size=1073741824 "
                     "--disk path=/b/L0.erofs,readonly=on,image_type=raw,num_queues=2,queue_size=256,serial=cocoon-layer0 "
                     "path=/v/cow.raw,readonly=off,direct=on,image_type=raw,sparse=on,num_queues=2,queue_size=256,serial=cocoon-cow "
                     "--kernel /var/lib/cocoon/boot/L1/vmlinuz --initramfs /var/lib/cocoon/boot/L1/initrd.img "
                     "--cmdline console=hvc0 boot=cocoon-overlay "
                     "--rng src=/dev/urandom --watchdog --serial off --console pty");
        /* The command line stays one argv word. */
        ASSERT_TRUE(strv_contains(argv, "console=hvc0 boot=cocoon-overlay"));
        /* No hidden balloon and no automatic hugepages. */
        ASSERT_TRUE(!strstr(joined, "--balloon"));
        ASSERT_TRUE(!strstr(joined, "hugepages"));
        return 0;
}

TEST(argv_old_version_omits_recent_keys) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        ASSERT_OK(ch_build_argv(vm, "cloud-hypervisor", 40, &argv));
        joined = strv_join(argv, " ");
        ASSERT_TRUE(!strstr(joined, "image_type="));
        ASSERT_TRUE(!strstr(joined, "sparse="));
        ASSERT_TRUE(strstr(joined, "path=/v/cow.raw,readonly=off,direct=on,num_queues=2"));
        return 0;
}

TEST(argv_uefi_cloud_image) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        vm->kernel_path = (free(vm->kernel_path), NULL);
        vm->initrd_path = (free(vm->initrd_path), NULL);
        vm->cmdline = (free(vm->cmdline), NULL);
        vm->firmware_path = strdup("/var/lib/cocoon/firmware/CLOUDHV.fd");
        free(vm->storage_configs[1].format);
        vm->storage_configs[1].format = strdup("qcow2");

        ASSERT_OK(ch_build_argv(vm, "cloud-hypervisor", 53, &argv));
        joined = strv_join(argv, " ");
        ASSERT_TRUE(strstr(joined, "path=/v/cow.raw,readonly=off,direct=on,image_type=qcow2,backing_files=on,"));
        ASSERT_TRUE(strstr(joined, "--firmware /var/lib/cocoon/firmware/CLOUDHV.fd"));
        ASSERT_TRUE(strstr(joined, "--serial pty --console off"));
        ASSERT_TRUE(!strstr(joined, "--kernel"));
        return 0;
}

TEST(argv_needs_kernel_or_firmware) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        int r;

        vm->kernel_path = (free(vm->kernel_path), NULL);
        r = ch_build_argv(vm, "cloud-hypervisor", 53, &argv);
        ASSERT_ERROR_MESSAGE(r, "VM web has neither a kernel nor firmware");
        return 0;
}

TEST(console_path_from_vm_info) {
        const char *info = "{\"config\":{\"console\":{\"file\":\"/dev/pts/7\",\"mode\":\"Pty\"},"
                           "\"serial\":{\"file\":null,\"mode\":\"Off\"}},\"state\":\"Running\"}";
        _cleanup_free_ char *path = NULL;
        int r;

        ASSERT_OK(ch_console_path_from_info(info, false, &path));
        ASSERT_STREQ(path, "/dev/pts/7");

        r = ch_console_path_from_info(info, true, &path);
        ASSERT_ERROR(r, EOPNOTSUPP);
        ASSERT_ERROR_MESSAGE(r, "the serial of the VM is not a PTY (mode Off)");
        return 0;
}

TEST(console_path_rejects_bad_info) {
        char *path = NULL;
        int r;

        r = ch_console_path_from_info("{\"config\":{\"serial\":{\"mode\":\"Pty\",\"file\":null}}}", true, &path);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_ERROR_MESSAGE(r, "vm.info has no PTY path for the serial");
        r = ch_console_path_from_info("{}", false, &path);
        ASSERT_ERROR_MESSAGE(r, "the console of the VM is not a PTY (mode missing)");
        r = ch_console_path_from_info("not json", false, &path);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_TRUE(path == NULL);
        return 0;
}

DEFINE_TEST_MAIN
