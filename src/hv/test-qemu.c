/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "fileio.h"
#include "qemu.h"
#include "strv.h"
#include "tests.h"

static Vm *make_oci_vm(void) {
        Vm *vm = calloc(1, sizeof(Vm));

        vm->id = strdup("0123456789abcdef");
        vm->name = strdup("web");
        vm->cpu = 2;
        vm->memory = 1ULL << 30;
        vm->run_dir = strdup("/run/cocoon/0123456789abcdef");
        vm->data_dir = strdup("/var/lib/cocoon/vms/0123456789abcdef");
        vm->kernel_path = strdup("/var/lib/cocoon/boot/L1/vmlinuz");
        vm->initrd_path = strdup("/var/lib/cocoon/boot/L1/initrd.img");
        vm->cmdline = strdup("console=ttyS0 boot=cocoon-overlay");
        vm->storage_configs = calloc(3, sizeof(VmStorage));
        vm->storage_configs[0] = (VmStorage) { strdup("/b/L0.erofs"), true, strdup("cocoon-layer0"), STORAGE_LAYER, strdup("raw") };
        vm->storage_configs[1] = (VmStorage) { strdup("/b/L1,x.erofs"), true, strdup("cocoon-layer1"), STORAGE_LAYER, strdup("raw") };
        vm->storage_configs[2] = (VmStorage) { strdup("/v/cow.raw"), false, strdup("cocoon-cow"), STORAGE_COW, strdup("raw") };
        vm->n_storage = 3;
        return vm;
}

static Vm *make_cloud_vm(const char *firmware, bool first_booted) {
        Vm *vm = make_oci_vm();

        vm->kernel_path = (free(vm->kernel_path), NULL);
        vm->initrd_path = (free(vm->initrd_path), NULL);
        vm->cmdline = (free(vm->cmdline), NULL);
        vm->firmware_path = strdup(firmware);
        for (size_t i = 0; i < vm->n_storage; i++) {
                free(vm->storage_configs[i].path);
                free(vm->storage_configs[i].serial);
                free(vm->storage_configs[i].format);
        }
        vm->storage_configs[0] = (VmStorage) { strdup("/v/overlay.qcow2"), false, NULL, STORAGE_OVERLAY, strdup("qcow2") };
        vm->storage_configs[1] = (VmStorage) { strdup("/v/cidata.img"), true, NULL, STORAGE_CIDATA, strdup("raw") };
        vm->n_storage = 2;
        vm->first_booted = first_booted;
        return vm;
}

TEST(argv_oci_direct_boot) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        ASSERT_OK(qemu_build_argv_accel(vm, "/usr/bin/qemu-system-x86_64", QEMU_ACCELERATOR_TCG, &argv));
        joined = strv_join(argv, " ");
        ASSERT_STREQ(joined,
                     "/usr/bin/qemu-system-x86_64 -name web -machine q35 -accel tcg -cpu max -smp 2 -m 1024M "
                     "-nodefaults -no-user-config -display none -no-reboot -msg timestamp=off "
                     "-chardev socket,id=qmp,path=/run/cocoon/0123456789abcdef/qmp.sock,server=on,wait=off "
                     "-mon chardev=qmp,mode=control "
                     "-chardev socket,id=serial,path=/run/cocoon/0123456789abcdef/serial.sock,server=on,wait=on "
                     "-serial chardev:serial "
                     "-kernel /var/lib/cocoon/boot/L1/vmlinuz -initrd /var/lib/cocoon/boot/L1/initrd.img "
                     "-append console=ttyS0 boot=cocoon-overlay "
                     "-drive file=/b/L0.erofs,if=none,id=disk0,format=raw,readonly=on "
                     "-device virtio-blk-pci,drive=disk0,serial=cocoon-layer0 "
                     "-drive file=/b/L1,,x.erofs,if=none,id=disk1,format=raw,readonly=on "
                     "-device virtio-blk-pci,drive=disk1,serial=cocoon-layer1 "
                     "-drive file=/v/cow.raw,if=none,id=disk2,format=raw,discard=unmap,detect-zeroes=unmap "
                     "-device virtio-blk-pci,drive=disk2,serial=cocoon-cow "
                     "-object rng-random,id=rng,filename=/dev/urandom -device virtio-rng-pci,rng=rng");
        /* The kernel command line stays one argv word. */
        ASSERT_TRUE(strv_contains(argv, "console=ttyS0 boot=cocoon-overlay"));
        /* No NIC at all without --nics, not even QEMU's default user-mode network. */
        ASSERT_TRUE(!strstr(joined, "-netdev"));
        ASSERT_TRUE(!strstr(joined, "-nic "));
        return 0;
}

TEST(argv_kvm_uses_host_cpu) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        ASSERT_OK(qemu_build_argv_accel(vm, "qemu-system-x86_64", QEMU_ACCELERATOR_KVM, &argv));
        joined = strv_join(argv, " ");
        ASSERT_TRUE(strstr(joined, " -accel kvm -cpu host "));
        ASSERT_TRUE(!strstr(joined, "tcg"));
        return 0;
}

TEST(argv_memory_rounds_up_to_mib) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;

        vm->memory = (256ULL << 20) + 1;
        ASSERT_OK(qemu_build_argv_accel(vm, "qemu-system-x86_64", QEMU_ACCELERATOR_TCG, &argv));
        ASSERT_TRUE(strv_contains(argv, "257M"));
        return 0;
}

TEST(argv_uefi_split_firmware) {
        _cleanup_(vm_freep) Vm *vm = make_cloud_vm("/usr/share/OVMF/OVMF_CODE_4M.fd", false);
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        ASSERT_OK(qemu_build_argv_accel(vm, "qemu-system-x86_64", QEMU_ACCELERATOR_TCG, &argv));
        joined = strv_join(argv, " ");
        ASSERT_STREQ(strstr(joined, "-serial chardev:serial "),
                     "-serial chardev:serial "
                     "-drive if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on "
                     "-drive if=pflash,format=raw,unit=1,file=/var/lib/cocoon/vms/0123456789abcdef/efivars.fd "
                     "-drive file=/v/overlay.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,detect-zeroes=unmap "
                     "-device virtio-blk-pci,drive=disk0,bootindex=0 "
                     "-drive file=/v/cidata.img,if=none,id=disk1,format=raw,readonly=on "
                     "-device virtio-blk-pci,drive=disk1 "
                     "-object rng-random,id=rng,filename=/dev/urandom -device virtio-rng-pci,rng=rng");
        ASSERT_TRUE(!strstr(joined, "-kernel"));
        ASSERT_TRUE(!strstr(joined, "-append"));
        return 0;
}

TEST(argv_uefi_combined_firmware_after_first_boot) {
        _cleanup_(vm_freep) Vm *vm = make_cloud_vm("/usr/share/ovmf/OVMF.fd", true);
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        ASSERT_OK(qemu_build_argv_accel(vm, "qemu-system-x86_64", QEMU_ACCELERATOR_TCG, &argv));
        joined = strv_join(argv, " ");
        ASSERT_TRUE(strstr(joined, " -bios /usr/share/ovmf/OVMF.fd -drive file=/v/overlay.qcow2,"));
        ASSERT_TRUE(!strstr(joined, "pflash"));
        /* cidata only matters until cloud-init has run once. */
        ASSERT_TRUE(!strstr(joined, "cidata"));
        return 0;
}

TEST(argv_nics) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *joined = NULL;

        vm->nics = calloc(2, sizeof(VmNic));
        vm->nics[0] = (VmNic) { .tap = strdup("tap0"), .mac = strdup("02:00:00:00:00:01"), .num_queues = 2 };
        vm->nics[1] = (VmNic) { .tap = strdup("tap1"), .mac = strdup("02:00:00:00:00:02"), .num_queues = 4 };
        vm->n_nics = 2;

        ASSERT_OK(qemu_build_argv_accel(vm, "qemu-system-x86_64", QEMU_ACCELERATOR_TCG, &argv));
        joined = strv_join(argv, " ");
        ASSERT_TRUE(strstr(joined, " -netdev tap,id=net0,ifname=tap0,script=no,downscript=no "
                                   "-device virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01 "));
        ASSERT_TRUE(strstr(joined, " -netdev tap,id=net1,ifname=tap1,script=no,downscript=no,queues=2 "
                                   "-device virtio-net-pci,netdev=net1,mac=02:00:00:00:00:02,mq=on,vectors=6 "));
        return 0;
}

TEST(argv_needs_kernel_or_firmware) {
        _cleanup_(vm_freep) Vm *vm = make_oci_vm();
        _cleanup_strv_free_ char **argv = NULL;
        int r;

        vm->kernel_path = (free(vm->kernel_path), NULL);
        r = qemu_build_argv_accel(vm, "qemu-system-x86_64", QEMU_ACCELERATOR_TCG, &argv);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "VM web has neither a kernel nor firmware");
        return 0;
}

TEST(accelerator_forced) {
        QemuAccelerator a = _QEMU_ACCELERATOR_INVALID;
        char *note = (char *) "unset";

        /* A forced value never runs the probe nor reads the cache. */
        ASSERT_OK(qemu_accelerator_choose("tcg", "/nonexistent", &a, &note));
        ASSERT_EQ(a, QEMU_ACCELERATOR_TCG);
        ASSERT_TRUE(note == NULL);
        return 0;
}

TEST(accelerator_forced_invalid) {
        QemuAccelerator a;
        int r;

        r = qemu_accelerator_choose("hvf", NULL, &a, NULL);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid accelerator 'hvf': expected kvm, tcg or auto");

        r = qemu_accelerator_set_preference("xen");
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid accelerator 'xen': expected kvm, tcg or auto");
        ASSERT_OK(qemu_accelerator_set_preference("auto"));
        ASSERT_OK(qemu_accelerator_set_preference(NULL));
        return 0;
}

TEST(accelerator_auto_reads_cache) {
        char dir[] = "/tmp/test-qemu.XXXXXX";
        _cleanup_free_ char *cache = NULL;
        QemuAccelerator a = _QEMU_ACCELERATOR_INVALID;
        char *note = (char *) "unset";

        ASSERT_TRUE(mkdtemp(dir));
        cache = strjoin(dir, "/" QEMU_ACCELERATOR_CACHE, NULL);

        /* The cached result stands for the probe, whatever this host's KVM does. */
        ASSERT_OK(write_file_atomic(cache, "kvm\n\n", 5, 0644));
        ASSERT_OK(qemu_accelerator_choose("auto", dir, &a, &note));
        ASSERT_EQ(a, QEMU_ACCELERATOR_KVM);
        ASSERT_TRUE(note == NULL);

        ASSERT_OK(write_file_atomic(cache, "tcg\nsome reason\n", 16, 0644));
        ASSERT_OK(qemu_accelerator_choose(NULL, dir, &a, &note));
        ASSERT_EQ(a, QEMU_ACCELERATOR_TCG);
        ASSERT_TRUE(note == NULL);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(accelerator_auto_probes_once) {
        char dir[] = "/tmp/test-qemu.XXXXXX";
        _cleanup_free_ char *cache = NULL, *text = NULL, *note = NULL, *note2 = NULL;
        QemuAccelerator a, b;

        ASSERT_TRUE(mkdtemp(dir));
        cache = strjoin(dir, "/" QEMU_ACCELERATOR_CACHE, NULL);

        /* Whatever the probe finds here, it is written to the cache and a second call returns the
         * same accelerator without a note. */
        ASSERT_OK(qemu_accelerator_choose(NULL, dir, &a, &note));
        ASSERT_OK(read_file(cache, 4096, &text, NULL));
        ASSERT_TRUE(startswith(text, qemu_accelerator_to_string(a)));
        ASSERT_TRUE(a == QEMU_ACCELERATOR_KVM ? note == NULL : startswith(note, "KVM is not usable on this host ("));
        ASSERT_OK(qemu_accelerator_choose(NULL, dir, &b, &note2));
        ASSERT_EQ(a, b);
        ASSERT_TRUE(note2 == NULL);

        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(qmp_parse_greeting) {
        QmpMessage m = {};

        ASSERT_OK(qmp_message_parse("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
                                    "\"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}", &m));
        ASSERT_EQ(m.type, QMP_MESSAGE_GREETING);
        ASSERT_TRUE(json_is_array(json_object_get(m.value, "capabilities")));
        qmp_message_done(&m);
        return 0;
}

TEST(qmp_parse_return) {
        QmpMessage m = {};

        ASSERT_OK(qmp_message_parse("{\"return\": {\"status\": \"running\", \"singlestep\": false, "
                                    "\"running\": true}}\r", &m));
        ASSERT_EQ(m.type, QMP_MESSAGE_RETURN);
        ASSERT_STREQ(json_string_value(json_object_get(m.value, "status")), "running");
        qmp_message_done(&m);

        ASSERT_OK(qmp_message_parse("{\"return\": {}}", &m));
        ASSERT_EQ(m.type, QMP_MESSAGE_RETURN);
        ASSERT_TRUE(json_is_object(m.value));
        qmp_message_done(&m);
        return 0;
}

TEST(qmp_parse_error) {
        QmpMessage m = {};

        ASSERT_OK(qmp_message_parse("{\"error\": {\"class\": \"CommandNotFound\", "
                                    "\"desc\": \"The command foo has not been found\"}}", &m));
        ASSERT_EQ(m.type, QMP_MESSAGE_ERROR);
        ASSERT_STREQ(m.error_class, "CommandNotFound");
        ASSERT_STREQ(m.error_desc, "The command foo has not been found");
        qmp_message_done(&m);
        return 0;
}

TEST(qmp_parse_event) {
        QmpMessage m = {};

        ASSERT_OK(qmp_message_parse("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
                                    "\"event\": \"POWERDOWN\"}", &m));
        ASSERT_EQ(m.type, QMP_MESSAGE_EVENT);
        ASSERT_STREQ(m.event, "POWERDOWN");
        qmp_message_done(&m);
        return 0;
}

TEST(qmp_parse_invalid) {
        QmpMessage m = {};
        int r;

        r = qmp_message_parse("[1, 2]", &m);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_ERROR_MESSAGE(r, "invalid QMP message: not a JSON object");

        r = qmp_message_parse("{\"id\": 1}", &m);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_ERROR_MESSAGE(r, "invalid QMP message: no return, error, event or QMP member");

        r = qmp_message_parse("{\"event\": 5}", &m);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_ERROR_MESSAGE(r, "invalid QMP message: event name is not a string");

        r = qmp_message_parse("{\"return\": ", &m);
        ASSERT_ERROR(r, EBADMSG);
        ASSERT_TRUE(startswith(error_message(r), "invalid QMP message: "));
        return 0;
}

/* A fake QEMU: serves one connection on path with the given script of replies. Each element
 * is sent after one line was read, except the first (the greeting). */
static pid_t fake_qmp_server(const char *path, const char *const *replies, int *ret_listen) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pid_t pid;

        strcpy(sa.sun_path, path);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                int c = accept(fd, NULL, NULL);
                char buf[4096];

                if (c < 0)
                        _exit(1);
                for (size_t i = 0; replies[i]; i++) {
                        if (i > 0) {
                                /* Read one command line. */
                                size_t n = 0;

                                while (n < sizeof(buf) - 1 && read(c, buf + n, 1) == 1 && buf[n] != '\n')
                                        n++;
                        }
                        if (write(c, replies[i], strlen(replies[i])) < 0)
                                _exit(1);
                }
                _exit(0);
        }
        *ret_listen = fd;
        return pid;
}

static int run_fake(const char *const *replies, const char *command, json_t **ret) {
        char dir[] = "/tmp/test-qmp.XXXXXX";
        _cleanup_free_ char *path = NULL;
        int fd = -1, r, status;
        pid_t pid;

        if (!mkdtemp(dir))
                return -errno;
        path = strjoin(dir, "/qmp.sock", NULL);
        pid = fake_qmp_server(path, replies, &fd);
        if (pid < 0)
                return -EIO;
        r = qmp_execute(path, command, 2000, ret);
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, &status, 0);
        safe_close(fd);
        (void) rm_rf(dir);
        return r;
}

#define GREETING "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n"

TEST(qmp_execute_skips_events) {
        const char *const replies[] = {
                GREETING,
                "{\"event\": \"RESUME\", \"timestamp\": {}}\r\n{\"return\": {}}\r\n",
                "{\"event\": \"POWERDOWN\", \"timestamp\": {}}\r\n\r\n"
                "{\"return\": {\"status\": \"running\", \"running\": true}}\r\n",
                NULL,
        };
        json_t *ret = NULL;

        ASSERT_OK(run_fake(replies, "query-status", &ret));
        ASSERT_STREQ(json_string_value(json_object_get(ret, "status")), "running");
        json_decref(ret);
        return 0;
}

TEST(qmp_execute_error_reply) {
        const char *const replies[] = {
                GREETING,
                "{\"return\": {}}\r\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"not now\"}}\r\n",
                NULL,
        };
        int r;

        r = run_fake(replies, "system_powerdown", NULL);
        ASSERT_ERROR(r, EIO);
        ASSERT_ERROR_MESSAGE(r, "QMP command system_powerdown failed: not now (GenericError)");
        return 0;
}

TEST(qmp_execute_needs_greeting) {
        const char *const replies[] = { "{\"return\": {}}\r\n", NULL };
        int r;

        r = run_fake(replies, "query-status", NULL);
        ASSERT_ERROR(r, EPROTO);
        ASSERT_TRUE(strstr(error_message(r), "did not start"));
        return 0;
}

TEST(qmp_execute_closed_connection) {
        const char *const replies[] = { GREETING, NULL };
        int r;

        r = run_fake(replies, "query-status", NULL);
        ASSERT_ERROR(r, ECONNRESET);
        ASSERT_TRUE(startswith(error_message(r), "QEMU closed the QMP connection on /tmp/test-qmp."));
        return 0;
}

TEST(qmp_execute_nothing_listening) {
        int r = qmp_execute("/nonexistent/qmp.sock", "query-status", 100, NULL);

        ASSERT_ERROR(r, ECONNREFUSED);
        ASSERT_ERROR_MESSAGE(r, "nothing answers on the QMP socket /nonexistent/qmp.sock");
        return 0;
}

DEFINE_TEST_MAIN
