/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "image-index.h"
#include "macro.h"

typedef enum VmState {
        VM_CREATING,
        VM_CREATED,
        VM_RUNNING,
        VM_STOPPED,
        VM_ERROR,
        _VM_STATE_MAX,
        _VM_STATE_INVALID = -EINVAL,
} VmState;

typedef enum HypervisorType {
        HYPERVISOR_CLOUD_HYPERVISOR,
        HYPERVISOR_QEMU,
        _HYPERVISOR_TYPE_MAX,
        _HYPERVISOR_TYPE_INVALID = -EINVAL,
} HypervisorType;

typedef enum StorageRole {
        STORAGE_LAYER,
        STORAGE_COW,
        STORAGE_OVERLAY,
        STORAGE_CIDATA,
        _STORAGE_ROLE_MAX,
        _STORAGE_ROLE_INVALID = -EINVAL,
} StorageRole;

const char *vm_state_to_string(VmState s);
VmState vm_state_from_string(const char *s);
const char *hypervisor_type_to_string(HypervisorType t);
HypervisorType hypervisor_type_from_string(const char *s);
const char *storage_role_to_string(StorageRole r);
StorageRole storage_role_from_string(const char *s);

typedef struct VmStorage {
        char *path;
        bool ro;
        char *serial;      /* virtio serial shown to the guest, or NULL */
        StorageRole role;
        char *format;      /* "raw" or "qcow2" */
} VmStorage;

typedef struct VmNic {
        char *if_name;     /* eth<i> in the VM's network namespace */
        char *tap;
        char *mac;
        unsigned num_queues;
        unsigned queue_size;
        char *netns_path;
        char *network;     /* CNI network name */
        char *ip;          /* IPv4 address, or NULL for DHCP */
        char *gateway;
        unsigned prefix;
} VmNic;

/* A VM record: what `vm inspect` shows and what every lifecycle command reads. */
typedef struct Vm {
        char *id;
        char *name;
        VmState state;
        HypervisorType hypervisor;

        unsigned cpu;
        uint64_t memory;
        uint64_t storage;
        unsigned nics_requested;
        char *image;          /* image name as recorded in the index */
        ImageType image_type;
        char *image_digest;
        bool autostart;
        char **properties;    /* unit resource settings, "KEY=VALUE", applied at every start */

        VmStorage *storage_configs;
        size_t n_storage;
        VmNic *nics;
        size_t n_nics;

        /* Boot: a kernel (direct boot, OCI images) or firmware (UEFI, cloud images). */
        char *kernel_path;
        char *initrd_path;
        char *cmdline;
        char *firmware_path;

        char **image_blob_ids;   /* hex digests of the blobs this VM uses; gc keeps them */
        bool first_booted;
        char *run_dir;           /* per-VM runtime directory: sockets */
        char *data_dir;          /* per-VM data directory: disks */

        char *created_at;
        char *updated_at;
        char *started_at;
        char *stopped_at;
} Vm;

Vm *vm_free(Vm *vm);
DEFINE_TRIVIAL_CLEANUP_FUNC(Vm *, vm_free);
void vm_array_free(Vm **a, size_t n);

/* The systemd unit of a VM, "cocoon-vm@NAME.service". */
char *vm_unit_name(const char *name);

/* Pure conversions to and from the record JSON (the `vm inspect` format plus internal fields). */
json_t *vm_to_json(const Vm *vm);
int vm_from_json(json_t *j, Vm **ret);

/* Validate a VM name: 1-63 characters of [a-zA-Z0-9.-] starting with a letter or digit, usable as
 * a hostname (no empty label, no label starting or ending with '-') and as a unit instance. */
int vm_name_validate(const char *name);

/* Derive the default VM name from an image name: "cocoon-" plus the repository path ('/' becomes
 * '-', Docker Hub's "library/" dropped) plus "-TAG" unless the tag is "latest"; for a URL, the
 * file name without its extension. Characters a name cannot hold become '-'. */
int vm_default_name(const char *image, ImageType type, char **ret);

/* Validate the sizes and counts of a VM: cpu 1..256, memory >= 128 MiB, storage >= 1 GiB for OCI
 * images, nics 0..16. */
int vm_resources_validate(unsigned cpu, uint64_t memory, uint64_t storage, unsigned nics);

/* 16 lowercase hex digits from getrandom(). */
int vm_generate_id(char **ret);
