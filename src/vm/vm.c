/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <inttypes.h>
#include <string.h>
#include <sys/random.h>

#include "error.h"
#include "reference.h"
#include "strv.h"
#include "vm.h"

static const char *const vm_state_names[_VM_STATE_MAX] = {
        [VM_CREATING] = "creating", [VM_CREATED] = "created", [VM_RUNNING] = "running",
        [VM_STOPPED] = "stopped",   [VM_ERROR] = "error",
};

static const char *const hypervisor_names[_HYPERVISOR_TYPE_MAX] = {
        [HYPERVISOR_CLOUD_HYPERVISOR] = "cloud-hypervisor",
        [HYPERVISOR_QEMU] = "qemu",
};

static const char *const storage_role_names[_STORAGE_ROLE_MAX] = {
        [STORAGE_LAYER] = "layer",
        [STORAGE_COW] = "cow",
        [STORAGE_OVERLAY] = "overlay",
        [STORAGE_CIDATA] = "cidata",
};

#define DEFINE_STRING_TABLE(name, type, table, max)                     \
        const char *name##_to_string(type v) {                          \
                if ((int) v < 0 || (int) v >= (max))                    \
                        return NULL;                                    \
                return table[v];                                        \
        }                                                               \
        type name##_from_string(const char *s) {                        \
                for (int i = 0; s && i < (max); i++)                    \
                        if (streq(table[i], s))                         \
                                return (type) i;                        \
                return (type) -EINVAL;                                  \
        }

DEFINE_STRING_TABLE(vm_state, VmState, vm_state_names, _VM_STATE_MAX)
DEFINE_STRING_TABLE(hypervisor_type, HypervisorType, hypervisor_names, _HYPERVISOR_TYPE_MAX)
DEFINE_STRING_TABLE(storage_role, StorageRole, storage_role_names, _STORAGE_ROLE_MAX)

static void vm_storage_done(VmStorage *s) {
        free(s->path);
        free(s->serial);
        free(s->format);
}

static void vm_nic_done(VmNic *n) {
        free(n->if_name);
        free(n->tap);
        free(n->mac);
        free(n->netns_path);
        free(n->network);
        free(n->ip);
        free(n->gateway);
}

Vm *vm_free(Vm *vm) {
        if (!vm)
                return NULL;
        free(vm->id);
        free(vm->name);
        free(vm->image);
        free(vm->image_digest);
        for (size_t i = 0; i < vm->n_storage; i++)
                vm_storage_done(&vm->storage_configs[i]);
        free(vm->storage_configs);
        for (size_t i = 0; i < vm->n_nics; i++)
                vm_nic_done(&vm->nics[i]);
        free(vm->nics);
        free(vm->kernel_path);
        free(vm->initrd_path);
        free(vm->cmdline);
        free(vm->firmware_path);
        strv_free(vm->image_blob_ids);
        strv_free(vm->properties);
        free(vm->run_dir);
        free(vm->data_dir);
        free(vm->created_at);
        free(vm->updated_at);
        free(vm->started_at);
        free(vm->stopped_at);
        free(vm);
        return NULL;
}

void vm_array_free(Vm **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                vm_free(a[i]);
        free(a);
}

char *vm_unit_name(const char *name) {
        return strjoin("cocoon-vm@", name, ".service", NULL);
}

static int set_str(json_t *o, const char *key, const char *v) {
        if (!v)
                return 0;
        return json_object_set_new(o, key, json_string(v)) < 0 ? -ENOMEM : 0;
}

static json_t *storage_to_json(const VmStorage *s) {
        json_t *o = json_pack("{s:s, s:b, s:s, s:s?}", "path", s->path, "ro", s->ro, "role",
                              storage_role_to_string(s->role), "format", s->format);

        if (o && s->serial && set_str(o, "serial", s->serial) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *nic_to_json(const VmNic *n) {
        json_t *net = json_pack("{s:s?, s:s?, s:i, s:s?}", "ip", n->ip, "gateway", n->gateway,
                                "prefix", (int) n->prefix, "type", n->network);

        if (!net)
                return NULL;
        return json_pack("{s:s?, s:s?, s:s?, s:i, s:i, s:s?, s:o}", "if_name", n->if_name, "tap",
                         n->tap, "mac", n->mac, "num_queues", (int) n->num_queues, "queue_size",
                         (int) n->queue_size, "netns_path", n->netns_path, "network", net);
}

json_t *vm_to_json(const Vm *vm) {
        _cleanup_free_ char *unit = vm_unit_name(vm->name);
        json_t *o = NULL, *config, *storage, *nics, *boot, *blobs, *props;

        if (!unit)
                return NULL;

        config = json_pack("{s:s, s:i, s:I, s:I, s:s, s:s, s:s?, s:i, s:b}", "name", vm->name,
                           "cpu", (int) vm->cpu, "memory", (json_int_t) vm->memory, "storage",
                           (json_int_t) vm->storage, "image", vm->image, "image_type",
                           image_type_to_string(vm->image_type), "image_digest", vm->image_digest,
                           "nics", (int) vm->nics_requested, "autostart", vm->autostart);
        boot = json_pack("{s:s?, s:s?, s:s?, s:s?}", "kernel_path", vm->kernel_path, "initrd_path",
                         vm->initrd_path, "cmdline", vm->cmdline, "firmware_path", vm->firmware_path);
        storage = json_array();
        nics = json_array();
        blobs = json_array();
        props = json_array();
        if (!config || !boot || !storage || !nics || !blobs || !props ||
            json_object_set_new(config, "properties", props) < 0)
                goto fail;
        STRV_FOREACH(p, vm->properties)
                if (json_array_append_new(props, json_string(*p)) < 0)
                        goto fail;

        for (size_t i = 0; i < vm->n_storage; i++)
                if (json_array_append_new(storage, storage_to_json(&vm->storage_configs[i])) < 0)
                        goto fail;
        for (size_t i = 0; i < vm->n_nics; i++)
                if (json_array_append_new(nics, nic_to_json(&vm->nics[i])) < 0)
                        goto fail;
        STRV_FOREACH(b, vm->image_blob_ids)
                if (json_array_append_new(blobs, json_string(*b)) < 0)
                        goto fail;

        o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:b, s:s?, s:s?, s:s?, "
                      "s:s?, s:s?, s:s?}",
                      "id", vm->id, "name", vm->name, "state", vm_state_to_string(vm->state),
                      "hypervisor", hypervisor_type_to_string(vm->hypervisor), "unit", unit,
                      "config", config, "storage_configs", storage, "network_configs", nics,
                      "boot_config", boot, "image_blob_ids", blobs, "first_booted",
                      vm->first_booted, "run_dir", vm->run_dir, "data_dir", vm->data_dir,
                      "created_at", vm->created_at, "updated_at", vm->updated_at, "started_at",
                      vm->started_at, "stopped_at", vm->stopped_at);
        return o;

fail:
        json_decref(config);
        json_decref(boot);
        json_decref(storage);
        json_decref(nics);
        json_decref(blobs);
        return NULL;
}

static int get_str(json_t *o, const char *key, bool required, char **ret) {
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v)) {
                if (required)
                        return error_set(-EBADMSG, "VM record lacks the field '%s'", key);
                return 0;
        }
        if (!json_is_string(v))
                return error_set(-EBADMSG, "VM record field '%s' is not a string", key);
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static uint64_t get_uint(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);

        return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t) json_integer_value(v) : 0;
}

static int storage_from_json(json_t *j, VmStorage *s) {
        _cleanup_free_ char *role = NULL;
        int r;

        if ((r = get_str(j, "path", true, &s->path)) < 0 ||
            (r = get_str(j, "serial", false, &s->serial)) < 0 ||
            (r = get_str(j, "format", false, &s->format)) < 0 ||
            (r = get_str(j, "role", true, &role)) < 0)
                return r;
        s->ro = json_is_true(json_object_get(j, "ro"));
        s->role = storage_role_from_string(role);
        if (s->role < 0)
                return error_set(-EBADMSG, "VM record has an unknown storage role '%s'", role);
        return 0;
}

static int nic_from_json(json_t *j, VmNic *n) {
        json_t *net = json_object_get(j, "network");
        int r;

        if ((r = get_str(j, "if_name", false, &n->if_name)) < 0 ||
            (r = get_str(j, "tap", false, &n->tap)) < 0 ||
            (r = get_str(j, "mac", false, &n->mac)) < 0 ||
            (r = get_str(j, "netns_path", false, &n->netns_path)) < 0)
                return r;
        n->num_queues = (unsigned) get_uint(j, "num_queues");
        n->queue_size = (unsigned) get_uint(j, "queue_size");
        if (json_is_object(net)) {
                if ((r = get_str(net, "ip", false, &n->ip)) < 0 ||
                    (r = get_str(net, "gateway", false, &n->gateway)) < 0 ||
                    (r = get_str(net, "type", false, &n->network)) < 0)
                        return r;
                n->prefix = (unsigned) get_uint(net, "prefix");
        }
        return 0;
}

int vm_from_json(json_t *j, Vm **ret) {
        _cleanup_(vm_freep) Vm *vm = calloc(1, sizeof(Vm));
        _cleanup_free_ char *state = NULL, *hv = NULL, *image_type = NULL;
        json_t *config, *boot, *a, *e;
        size_t i;
        int r;

        if (!vm)
                return -ENOMEM;
        if (!json_is_object(j))
                return error_set(-EBADMSG, "VM record is not a JSON object");

        config = json_object_get(j, "config");
        boot = json_object_get(j, "boot_config");
        if (!json_is_object(config))
                return error_set(-EBADMSG, "VM record lacks the field 'config'");

        if ((r = get_str(j, "id", true, &vm->id)) < 0 ||
            (r = get_str(j, "state", true, &state)) < 0 ||
            (r = get_str(j, "hypervisor", true, &hv)) < 0 ||
            (r = get_str(config, "name", true, &vm->name)) < 0 ||
            (r = get_str(config, "image", true, &vm->image)) < 0 ||
            (r = get_str(config, "image_type", true, &image_type)) < 0 ||
            (r = get_str(config, "image_digest", false, &vm->image_digest)) < 0 ||
            (r = get_str(j, "run_dir", false, &vm->run_dir)) < 0 ||
            (r = get_str(j, "data_dir", false, &vm->data_dir)) < 0 ||
            (r = get_str(j, "created_at", false, &vm->created_at)) < 0 ||
            (r = get_str(j, "updated_at", false, &vm->updated_at)) < 0 ||
            (r = get_str(j, "started_at", false, &vm->started_at)) < 0 ||
            (r = get_str(j, "stopped_at", false, &vm->stopped_at)) < 0)
                return r;

        if (json_is_object(boot) &&
            ((r = get_str(boot, "kernel_path", false, &vm->kernel_path)) < 0 ||
             (r = get_str(boot, "initrd_path", false, &vm->initrd_path)) < 0 ||
             (r = get_str(boot, "cmdline", false, &vm->cmdline)) < 0 ||
             (r = get_str(boot, "firmware_path", false, &vm->firmware_path)) < 0))
                return r;

        vm->state = vm_state_from_string(state);
        vm->hypervisor = hypervisor_type_from_string(hv);
        vm->image_type = image_type_from_string(image_type);
        if (vm->state < 0 || vm->hypervisor < 0 || vm->image_type < 0)
                return error_set(-EBADMSG, "VM record '%s' has an unknown state, hypervisor or "
                                           "image type", vm->id);

        vm->cpu = (unsigned) get_uint(config, "cpu");
        vm->memory = get_uint(config, "memory");
        vm->storage = get_uint(config, "storage");
        vm->nics_requested = (unsigned) get_uint(config, "nics");
        vm->autostart = json_is_true(json_object_get(config, "autostart"));
        vm->first_booted = json_is_true(json_object_get(j, "first_booted"));

        a = json_object_get(j, "storage_configs");
        if (json_is_array(a) && json_array_size(a) > 0) {
                vm->storage_configs = calloc(json_array_size(a), sizeof(VmStorage));
                if (!vm->storage_configs)
                        return -ENOMEM;
                json_array_foreach(a, i, e) {
                        r = storage_from_json(e, &vm->storage_configs[vm->n_storage++]);
                        if (r < 0)
                                return r;
                }
        }

        a = json_object_get(j, "network_configs");
        if (json_is_array(a) && json_array_size(a) > 0) {
                vm->nics = calloc(json_array_size(a), sizeof(VmNic));
                if (!vm->nics)
                        return -ENOMEM;
                json_array_foreach(a, i, e) {
                        r = nic_from_json(e, &vm->nics[vm->n_nics++]);
                        if (r < 0)
                                return r;
                }
        }

        vm->image_blob_ids = calloc(1, sizeof(char *));
        if (!vm->image_blob_ids)
                return -ENOMEM;
        a = json_object_get(j, "image_blob_ids");
        json_array_foreach(a, i, e)
                if (json_is_string(e) && strv_extend(&vm->image_blob_ids, json_string_value(e)) < 0)
                        return -ENOMEM;

        vm->properties = calloc(1, sizeof(char *));
        if (!vm->properties)
                return -ENOMEM;
        a = json_object_get(config, "properties");
        json_array_foreach(a, i, e)
                if (json_is_string(e) && strv_extend(&vm->properties, json_string_value(e)) < 0)
                        return -ENOMEM;

        *ret = TAKE_PTR(vm);
        return 0;
}

int vm_name_validate(const char *name) {
        size_t n = name ? strlen(name) : 0;

        if (n == 0)
                return error_set(-EINVAL, "VM name is empty");
        if (n > 63)
                return error_set(-EINVAL, "invalid VM name '%.80s': longer than 63 characters", name);
        if (!isalnum((unsigned char) name[0]))
                return error_set(-EINVAL, "invalid VM name '%s': it must start with a letter or "
                                          "a digit", name);

        for (size_t i = 0; i < n; i++) {
                unsigned char c = name[i];

                if (isalnum(c) || c == '-' || c == '.')
                        continue;
                if (c == '_')
                        return error_set(-EINVAL, "invalid VM name '%s': '_' is not allowed in a "
                                                  "hostname", name);
                return error_set(-EINVAL, "invalid VM name '%s': only letters, digits, '.' and "
                                          "'-' are allowed", name);
        }

        /* Each dot-separated label must be a valid hostname label. */
        for (const char *p = name; *p;) {
                size_t l = strcspn(p, ".");

                if (l == 0 || p[0] == '-' || p[l - 1] == '-')
                        return error_set(-EINVAL, "invalid VM name '%s': a hostname label may not "
                                                  "be empty or start or end with '-'", name);
                p += l;
                if (*p == '.')
                        p++;
                if (*p == '\0' && p[-1] == '.')
                        return error_set(-EINVAL, "invalid VM name '%s': a hostname may not end "
                                                  "with '.'", name);
        }
        return 0;
}

static void sanitize_name(char *s) {
        char *w = s;

        for (char *p = s; *p; p++) {
                char c = isalnum((unsigned char) *p) || *p == '.' ? *p : '-';

                /* Collapse runs of '-' and never put '-' next to '.'. */
                if (c == '-' && (w == s || w[-1] == '-' || w[-1] == '.'))
                        continue;
                if (c == '.' && (w == s || w[-1] == '.' || w[-1] == '-'))
                        continue;
                *w++ = c;
        }
        while (w > s && (w[-1] == '-' || w[-1] == '.'))
                w--;
        *w = '\0';
}

int vm_default_name(const char *image, ImageType type, char **ret) {
        _cleanup_free_ char *base = NULL, *name = NULL;

        if (type == IMAGE_CLOUD) {
                const char *file = strrchr(image, '/');
                char *dot;

                base = strdup(file ? file + 1 : image);
                if (!base)
                        return -ENOMEM;
                base[strcspn(base, "?#")] = '\0';
                dot = strchr(base, '.');
                if (dot)
                        *dot = '\0';
        } else {
                _cleanup_(reference_freep) Reference *ref = NULL;
                const char *repo;
                int r;

                r = reference_parse(image, &ref);
                if (r < 0)
                        return r;
                repo = startswith(ref->repository, "library/") ? ref->repository + 8 : ref->repository;
                if (ref->tag && !streq(ref->tag, "latest"))
                        base = strjoin(repo, "-", ref->tag, NULL);
                else
                        base = strdup(repo);
                if (!base)
                        return -ENOMEM;
        }

        name = strjoin("cocoon-", base, NULL);
        if (!name)
                return -ENOMEM;
        sanitize_name(name);
        if (strlen(name) > 63) {
                name[63] = '\0';
                sanitize_name(name);
        }

        *ret = TAKE_PTR(name);
        return 0;
}

int vm_resources_validate(unsigned cpu, uint64_t memory, uint64_t storage, unsigned nics) {
        if (cpu < 1 || cpu > 256)
                return error_set(-EINVAL, "invalid CPU count %u: expected 1 to 256", cpu);
        if (memory < (128ULL << 20))
                return error_set(-EINVAL, "memory of %" PRIu64 " bytes is below the minimum of "
                                          "128M", memory);
        if (memory % 4096 != 0)
                return error_set(-EINVAL, "memory of %" PRIu64 " bytes is not a multiple of 4K",
                                 memory);
        /* Upper bounds keep every size a signed 64-bit JSON integer and far above any host. */
        if (memory > (16ULL << 40))
                return error_set(-EINVAL, "memory of %" PRIu64 " bytes is above the maximum of "
                                          "16T", memory);
        if (storage > (256ULL << 40))
                return error_set(-EINVAL, "storage of %" PRIu64 " bytes is above the maximum of "
                                          "256T", storage);
        if (storage < (1ULL << 30))
                return error_set(-EINVAL, "storage of %" PRIu64 " bytes is below the minimum of "
                                          "1G", storage);
        if (nics > 16)
                return error_set(-EINVAL, "invalid NIC count %u: expected 0 to 16", nics);
        return 0;
}

int vm_generate_id(char **ret) {
        uint8_t b[8];
        char *id;

        if (getrandom(b, sizeof(b), 0) != sizeof(b))
                return -errno;
        id = malloc(17);
        if (!id)
                return -ENOMEM;
        for (size_t i = 0; i < sizeof(b); i++)
                sprintf(id + 2 * i, "%02x", b[i]);
        *ret = id;
        return 0;
}
