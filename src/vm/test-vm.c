/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cmdline.h"
#include "fileio.h"
#include "strv.h"
#include "tests.h"
#include "vm-store.h"

TEST(name_validate_accepts) {
        ASSERT_OK(vm_name_validate("web"));
        ASSERT_OK(vm_name_validate("a"));
        ASSERT_OK(vm_name_validate("web-1.prod"));
        ASSERT_OK(vm_name_validate("0abc"));
        ASSERT_OK(vm_name_validate("123456789012345678901234567890123456789012345678901234567890123"));
        return 0;
}

TEST(name_validate_rejects) {
        int r;

        r = vm_name_validate("");
        ASSERT_ERROR_MESSAGE(r, "VM name is empty");
        r = vm_name_validate("-web");
        ASSERT_ERROR_MESSAGE(r, "invalid VM name '-web': it must start with a letter or a digit");
        r = vm_name_validate("a_b");
        ASSERT_ERROR_MESSAGE(r, "invalid VM name 'a_b': '_' is not allowed in a hostname");
        r = vm_name_validate("a b");
        ASSERT_ERROR_MESSAGE(r, "invalid VM name 'a b': only letters, digits, '.' and '-' are allowed");
        r = vm_name_validate("a\ninit=/bin/sh");
        ASSERT_ERROR(r, EINVAL);
        r = vm_name_validate("web-.x");
        ASSERT_ERROR_MESSAGE(r, "invalid VM name 'web-.x': a hostname label may not be empty or start or end with '-'");
        r = vm_name_validate("a..b");
        ASSERT_ERROR(r, EINVAL);
        r = vm_name_validate("web.");
        ASSERT_ERROR_MESSAGE(r, "invalid VM name 'web.': a hostname may not end with '.'");
        r = vm_name_validate("1234567890123456789012345678901234567890123456789012345678901234");
        ASSERT_ERROR_MESSAGE(r, "invalid VM name '1234567890123456789012345678901234567890123456789012345678901234': longer than 63 characters");
        return 0;
}

TEST(default_names) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        ASSERT_OK(vm_default_name("ubuntu:24.04", IMAGE_OCI, &a));
        ASSERT_STREQ(a, "cocoon-ubuntu-24.04");
        ASSERT_OK(vm_default_name("ghcr.io/team/vm_img:latest", IMAGE_OCI, &b));
        ASSERT_STREQ(b, "cocoon-team-vm-img");
        ASSERT_OK(vm_default_name("https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img",
                                  IMAGE_CLOUD, &c));
        ASSERT_STREQ(c, "cocoon-noble-server-cloudimg-amd64");
        ASSERT_OK(vm_name_validate(c));
        ASSERT_OK(vm_default_name("127.0.0.1:5000/a/very/long/repository/path/that/goes/on/and/on/and/on:tag",
                                  IMAGE_OCI, &d));
        ASSERT_TRUE(strlen(d) <= 63);
        ASSERT_OK(vm_name_validate(d));
        return 0;
}

TEST(resources_validate) {
        int r;

        ASSERT_OK(vm_resources_validate(2, 1ULL << 30, 10ULL << 30, 1));
        r = vm_resources_validate(0, 1ULL << 30, 10ULL << 30, 1);
        ASSERT_ERROR_MESSAGE(r, "invalid CPU count 0: expected 1 to 256");
        r = vm_resources_validate(1, 64ULL << 20, 10ULL << 30, 1);
        ASSERT_ERROR_MESSAGE(r, "memory of 67108864 bytes is below the minimum of 128M");
        r = vm_resources_validate(1, (1ULL << 30) + 1, 10ULL << 30, 1);
        ASSERT_ERROR_MESSAGE(r, "memory of 1073741825 bytes is not a multiple of 4K");
        r = vm_resources_validate(1, 1ULL << 30, 1000, 1);
        ASSERT_ERROR_MESSAGE(r, "storage of 1000 bytes is below the minimum of 1G");
        r = vm_resources_validate(1, 1ULL << 30, 10ULL << 30, 17);
        ASSERT_ERROR_MESSAGE(r, "invalid NIC count 17: expected 0 to 16");
        return 0;
}

static Vm *make_vm(const char *id, const char *name) {
        Vm *vm = calloc(1, sizeof(Vm));

        vm->id = strdup(id);
        vm->name = strdup(name);
        vm->state = VM_CREATED;
        vm->hypervisor = HYPERVISOR_CLOUD_HYPERVISOR;
        vm->cpu = 2;
        vm->memory = 1ULL << 30;
        vm->storage = 10ULL << 30;
        vm->image = strdup("127.0.0.1:5000/cocoon-test/vm:latest");
        vm->image_type = IMAGE_OCI;
        vm->image_digest = strdup("sha256:0123");
        vm->run_dir = strdup("/run/cocoon/x");
        vm->data_dir = strdup("/var/lib/cocoon/vms/x");
        vm->kernel_path = strdup("/k");
        vm->storage_configs = calloc(3, sizeof(VmStorage));
        vm->storage_configs[0] = (VmStorage) { strdup("/l0.erofs"), true, strdup("cocoon-layer0"), STORAGE_LAYER, strdup("raw") };
        vm->storage_configs[1] = (VmStorage) { strdup("/l1.erofs"), true, strdup("cocoon-layer1"), STORAGE_LAYER, strdup("raw") };
        vm->storage_configs[2] = (VmStorage) { strdup("/cow.raw"), false, strdup("cocoon-cow"), STORAGE_COW, strdup("raw") };
        vm->n_storage = 3;
        vm->image_blob_ids = calloc(1, sizeof(char *));
        strv_extend(&vm->image_blob_ids, "aaaa");
        vm->properties = calloc(1, sizeof(char *));
        strv_extend(&vm->properties, "MemoryMax=2G");
        return vm;
}

TEST(json_roundtrip) {
        _cleanup_(vm_freep) Vm *vm = make_vm("0123456789abcdef", "web"), *back = NULL;
        json_t *j = vm_to_json(vm);

        ASSERT_TRUE(j);
        ASSERT_STREQ(json_string_value(json_object_get(j, "unit")), "cocoon-vm@web.service");
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "config"), "memory")), 1LL << 30);
        ASSERT_OK(vm_from_json(j, &back));
        json_decref(j);
        ASSERT_STREQ(back->id, "0123456789abcdef");
        ASSERT_STREQ(back->name, "web");
        ASSERT_EQ(back->state, VM_CREATED);
        ASSERT_EQ(back->n_storage, 3);
        ASSERT_STREQ(back->storage_configs[2].serial, "cocoon-cow");
        ASSERT_TRUE(!back->storage_configs[2].ro);
        ASSERT_STREQ(back->image_blob_ids[0], "aaaa");
        ASSERT_STREQ(back->properties[0], "MemoryMax=2G");
        return 0;
}

TEST(cmdline_oci) {
        _cleanup_(vm_freep) Vm *vm = make_vm("0123456789abcdef", "web");
        _cleanup_free_ char *c = NULL;

        ASSERT_OK(cmdline_build(vm, "hvc0", NULL, &c));
        ASSERT_STREQ(c, "console=hvc0 loglevel=3 boot=cocoon-overlay cocoon.layers=cocoon-layer1,cocoon-layer0 "
                        "cocoon.cow=cocoon-cow cocoon.hostname=web clocksource=kvm-clock rw");
        return 0;
}

TEST(cmdline_with_nics) {
        _cleanup_(vm_freep) Vm *vm = make_vm("0123456789abcdef", "web");
        _cleanup_free_ char *c = NULL;

        vm->nics = calloc(2, sizeof(VmNic));
        vm->nics[0] = (VmNic) { .ip = strdup("10.88.0.5"), .gateway = strdup("10.88.0.1"), .prefix = 24 };
        vm->nics[1] = (VmNic) { .ip = strdup("10.89.0.7"), .prefix = 16 };
        vm->n_nics = 2;
        char *dns[] = { (char *) "10.0.0.53", (char *) "1.1.1.1", (char *) "9.9.9.9", NULL };

        ASSERT_OK(cmdline_build(vm, "ttyS0", dns, &c));
        ASSERT_TRUE(strstr(c, " net.ifnames=0 ip=10.88.0.5::10.88.0.1:255.255.255.0:web:eth0:off:10.0.0.53:1.1.1.1 "
                              "ip=10.89.0.7:::255.255.0.0:web:eth1:off:10.0.0.53:1.1.1.1"));
        return 0;
}

TEST(cmdline_rejects_injection) {
        _cleanup_(vm_freep) Vm *vm = make_vm("0123456789abcdef", "web");
        _cleanup_free_ char *c = NULL;
        int r;

        free(vm->name);
        vm->name = strdup("web init=/bin/sh");
        r = cmdline_build(vm, "hvc0", NULL, &c);
        ASSERT_ERROR(r, EINVAL);

        free(vm->name);
        vm->name = strdup("web");
        vm->nics = calloc(1, sizeof(VmNic));
        vm->nics[0] = (VmNic) { .ip = strdup("10.0.0.1 init=/bin/sh"), .prefix = 24 };
        vm->n_nics = 1;
        r = cmdline_build(vm, "hvc0", NULL, &c);
        ASSERT_ERROR_MESSAGE(r, "invalid address of NIC 0");
        return 0;
}

TEST(store_reserve_resolve_remove) {
        char dir[] = "/tmp/cocoon-vm-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(vm_freep) Vm *a = make_vm("abc0000000000001", "web");
        _cleanup_(vm_freep) Vm *b = make_vm("abc0000000000002", "db");
        _cleanup_(vm_freep) Vm *dup = make_vm("fff0000000000003", "web");
        Vm *found = NULL, **all = NULL;
        size_t n = 0;
        int r;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, &s));
        ASSERT_OK(vm_store_reserve(s, a));
        ASSERT_OK(vm_store_reserve(s, b));

        r = vm_store_reserve(s, dup);
        ASSERT_ERROR(r, EEXIST);
        ASSERT_ERROR_MESSAGE(r, "VM name 'web' already exists (id: abc0000000000001)");

        ASSERT_OK(vm_store_resolve(s, "web", &found));
        ASSERT_STREQ(found->id, "abc0000000000001");
        found = vm_free(found);
        ASSERT_OK(vm_store_resolve(s, "abc0000000000002", &found));
        ASSERT_STREQ(found->name, "db");
        found = vm_free(found);
        ASSERT_OK(vm_store_resolve(s, "abc0000000000002", &found));
        found = vm_free(found);

        r = vm_store_resolve(s, "abc", &found);
        ASSERT_ERROR(r, ENOTUNIQ);
        ASSERT_ERROR_MESSAGE(r, "ambiguous VM reference 'abc': matches abc0000000000001 and abc0000000000002");
        r = vm_store_resolve(s, "ab", &found);
        ASSERT_ERROR_MESSAGE(r, "VM 'ab' not found");
        r = vm_store_resolve(s, "nope", &found);
        ASSERT_ERROR_MESSAGE(r, "VM 'nope' not found");

        ASSERT_OK(vm_store_list(s, &all, &n, NULL));
        ASSERT_EQ(n, 2);
        vm_array_free(all, n);

        ASSERT_OK(vm_store_remove(s, a));
        r = vm_store_resolve(s, "web", &found);
        ASSERT_ERROR(r, ENOENT);
        /* The name is free again. */
        ASSERT_OK(vm_store_reserve(s, dup));
        ASSERT_OK(rm_rf(dir));
        return 0;
}

TEST(store_reclaims_stale_name) {
        char dir[] = "/tmp/cocoon-vm-XXXXXX";
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(vm_freep) Vm *a = make_vm("abc0000000000001", "web");
        _cleanup_free_ char *link = NULL;

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, &s));
        link = store_path(s, "names", "web", NULL);
        ASSERT_TRUE(symlink("../vms/dead000000000000", link) == 0);
        ASSERT_OK(vm_store_reserve(s, a));
        ASSERT_OK(rm_rf(dir));
        return 0;
}

DEFINE_TEST_MAIN
