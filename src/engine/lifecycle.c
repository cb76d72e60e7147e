/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "cidata.h"
#include "cmdline.h"
#include "disks.h"
#include "error.h"
#include "fileio.h"
#include "firmware.h"
#include "format.h"
#include "hypervisor.h"
#include "image-index.h"
#include "journal.h"
#include "lifecycle.h"
#include "log.h"
#include "strv.h"
#include "vm-store.h"

/* How long a started VMM gets to respond on its control socket. */
#define READY_TIMEOUT_MS 10000
#define READY_INTERVAL_MS 20


static char *now_rfc3339(void) {
        char buf[FORMAT_TIMESTAMP_MAX];
        struct timespec now;

        clock_gettime(CLOCK_REALTIME, &now);
        return strdup(format_timestamp_rfc3339(buf, sizeof(buf), &now));
}

static int set_string(char **field, const char *value) {
        char *c = value ? strdup(value) : NULL;

        if (value && !c)
                return -ENOMEM;
        free(*field);
        *field = c;
        return 0;
}

/* Find exactly one image for the user's argument. */
static int resolve_image(const Store *s, const char *image, ImageRecord **ret) {
        ImageRecord **found = NULL;
        size_t n = 0;
        int r;

        r = image_index_find(s, image, &found, &n);
        if (r == -ENOENT)
                return error_set(r, "image '%s' not found; pull it first with 'cocoon image pull %s'",
                                 image, image);
        if (r < 0)
                return r;
        if (n > 1) {
                image_record_array_free(found, n);
                return error_set(-ENOTUNIQ, "'%s' names %zu images; use the full name", image, n);
        }

        *ret = found[0];
        free(found);
        return 0;
}

static const char *hex_of(const char *digest) {
        return startswith(digest, "sha256:") ? digest + 7 : digest;
}

/* Pin the image's blobs with shared locks while the VM is created, so gc cannot take them
 * before the record that names them exists. */
static int pin_blobs(const Store *s, char *const *hexes, int **ret_fds) {
        size_t n = strv_length(hexes);
        _cleanup_free_ int *fds = calloc(n + 1, sizeof(int));

        if (!fds)
                return -ENOMEM;
        for (size_t i = 0; i <= n; i++)
                fds[i] = -EBADF;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *name = strjoin("blobs/", hexes[i], NULL);
                int r;

                if (!name)
                        return -ENOMEM;
                r = store_lock(s, name, LOCK_SH, &fds[i]);
                if (r < 0) {
                        for (size_t k = 0; k < i; k++)
                                safe_close(fds[k]);
                        return r;
                }
        }

        *ret_fds = TAKE_PTR(fds);
        return 0;
}

static void unpin_blobs(int *fds) {
        for (size_t i = 0; fds && fds[i] >= 0; i++)
                safe_close(fds[i]);
        free(fds);
}

static int add_storage(Vm *vm, const char *path, bool ro, const char *serial, StorageRole role,
                       const char *format) {
        VmStorage *t = realloc(vm->storage_configs, (vm->n_storage + 1) * sizeof(VmStorage));

        if (!t)
                return -ENOMEM;
        vm->storage_configs = t;
        t = &vm->storage_configs[vm->n_storage];
        *t = (VmStorage) { .path = strdup(path), .ro = ro, .serial = serial ? strdup(serial) : NULL,
                           .role = role, .format = strdup(format) };
        vm->n_storage++;
        if (!t->path || !t->format || (serial && !t->serial))
                return -ENOMEM;
        return 0;
}

static int file_must_exist(const char *path, const char *what) {
        struct stat st;

        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
                return error_set(-ENOENT, "%s '%s' is missing; pull the image again", what, path);
        return 0;
}

static int prepare_oci(const LifecycleContext *ctx, Vm *vm, const ImageRecord *img, bool dry_run) {
        const HypervisorOps *ops = hypervisor_ops(vm->hypervisor);
        _cleanup_free_ char *cow = NULL, *kdir = NULL, *idir = NULL;
        int r;

        for (size_t i = 0; i < img->n_layers; i++) {
                _cleanup_free_ char *blob = image_layer_blob_path(ctx->store, img->layers[i].digest);
                char serial[48];

                if (!blob)
                        return -ENOMEM;
                r = dry_run ? 0 : file_must_exist(blob, "layer blob");
                if (r < 0)
                        return r;
                snprintf(serial, sizeof(serial), "cocoon-layer%zu", i);
                r = add_storage(vm, blob, true, serial, STORAGE_LAYER, "raw");
                if (r < 0)
                        return r;
        }

        cow = strjoin(vm->data_dir, "/cow.raw", NULL);
        kdir = image_layer_boot_dir(ctx->store, img->kernel_layer);
        idir = image_layer_boot_dir(ctx->store, img->initrd_layer);
        if (!cow || !kdir || !idir)
                return -ENOMEM;

        vm->kernel_path = strjoin(kdir, "/vmlinuz", NULL);
        vm->initrd_path = strjoin(idir, "/initrd.img", NULL);
        if (!vm->kernel_path || !vm->initrd_path)
                return -ENOMEM;
        if (!dry_run && ((r = file_must_exist(vm->kernel_path, "kernel")) < 0 ||
                         (r = file_must_exist(vm->initrd_path, "initrd")) < 0))
                return r;

        r = dry_run ? 0 : disks_create_cow(cow, vm->storage);
        if (r < 0)
                return r;
        r = add_storage(vm, cow, false, "cocoon-cow", STORAGE_COW, "raw");
        if (r < 0)
                return r;

        return cmdline_build(vm, ops->guest_console, ctx->dns, &vm->cmdline);
}

/* The NoCloud seed: hostname, the root password as a SHA-512 crypt hash (never in plain text),
 * SSH keys, and the network configuration of every NIC matched by MAC. */
static int write_cidata(const LifecycleContext *ctx, const VmCreateOptions *opts, Vm *vm,
                        const char *path) {
        _cleanup_free_ char *hash = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        _cleanup_free_ CidataNic *nics = calloc(vm->n_nics + 1, sizeof(CidataNic));
        CidataConfig c;
        int r;

        if (!nics)
                return -ENOMEM;
        if (ctx->root_password) {
                r = cidata_hash_password(ctx->root_password, &hash);
                if (r < 0)
                        return r;
        }
        STRV_FOREACH(f, opts->ssh_key_files) {
                _cleanup_strv_free_ char **more = NULL;

                r = cidata_read_ssh_key_file(*f, &more);
                if (r < 0)
                        return r;
                STRV_FOREACH(k, more)
                        if (strv_extend(&keys, *k) < 0)
                                return -ENOMEM;
        }
        for (size_t i = 0; i < vm->n_nics; i++) {
                snprintf(nics[i].mac, sizeof(nics[i].mac), "%s", vm->nics[i].mac ?: "");
                nics[i].address = vm->nics[i].ip;
                nics[i].prefix = vm->nics[i].prefix;
                nics[i].gateway = vm->nics[i].gateway;
        }

        c = (CidataConfig) {
                .instance_id = vm->id,
                .hostname = vm->name,
                .password_hash = hash,
                .ssh_authorized_keys = keys,
                .dns = vm->n_nics > 0 ? ctx->dns : NULL,
                .nics = nics,
                .n_nics = vm->n_nics,
        };
        return cidata_write_image(&c, path);
}

static int prepare_cloud(const LifecycleContext *ctx, const VmCreateOptions *opts, Vm *vm,
                         const ImageRecord *img, bool dry_run) {
        _cleanup_free_ char *base = NULL, *overlay = NULL, *name = NULL, *firmware = NULL, *cidata = NULL;
        int r;

        name = strjoin(hex_of(img->content_sum), ".qcow2", NULL);
        base = name ? store_path(ctx->store, "blobs", "sha256", name, NULL) : NULL;
        overlay = strjoin(vm->data_dir, "/overlay.qcow2", NULL);
        if (!base || !overlay)
                return -ENOMEM;

        r = dry_run ? 0 : file_must_exist(base, "cloud image");
        if (r < 0)
                return r;

        r = firmware_find(ctx->store, ctx->firmware,
                          vm->hypervisor == HYPERVISOR_QEMU ? FIRMWARE_QEMU : FIRMWARE_CLOUD_HYPERVISOR,
                          &firmware);
        if (r < 0 && !dry_run)
                return r;
        if (r < 0) {
                /* vm debug shows where the firmware would be expected. */
                error_clear();
                firmware = store_path(ctx->store, "firmware", "CLOUDHV.fd", NULL);
                if (!firmware)
                        return -ENOMEM;
        }
        vm->firmware_path = TAKE_PTR(firmware);

        r = dry_run ? 0 : disks_create_overlay(overlay, base, vm->storage);
        if (r < 0)
                return r;
        r = add_storage(vm, overlay, false, NULL, STORAGE_OVERLAY, "qcow2");
        if (r < 0)
                return r;

        cidata = strjoin(vm->data_dir, "/cidata.img", NULL);
        if (!cidata)
                return -ENOMEM;
        r = dry_run ? 0 : write_cidata(ctx, opts, vm, cidata);
        if (r < 0)
                return r;
        return add_storage(vm, cidata, true, NULL, STORAGE_CIDATA, "raw");
}

static int validate_dns(char *const *dns) {
        STRV_FOREACH(d, dns) {
                struct in6_addr a6;
                struct in_addr a4;

                if (inet_pton(AF_INET, *d, &a4) != 1 && inet_pton(AF_INET6, *d, &a6) != 1)
                        return error_set(-EINVAL, "invalid DNS server '%s': expected an IP address", *d);
        }
        return 0;
}

/* One queue pair per vCPU for Cloud Hypervisor; the QEMU backend uses one. */
static unsigned queue_pairs(const Vm *vm) {
        return vm->hypervisor == HYPERVISOR_CLOUD_HYPERVISOR ? MAX(vm->cpu, 1U) : 1;
}

static int create_network(const LifecycleContext *ctx, const VmCreateOptions *opts, Vm *vm) {
        NetworkConfig c = ctx->network;
        int r;

        if (opts->nics == 0)
                return 0;
        if (opts->network)
                c.network = opts->network;

        r = network_create(&c, vm->id, opts->nics, queue_pairs(vm), &vm->nics, &vm->n_nics);
        if (r < 0)
                return r;
        return vm_store_save(ctx->store, vm);
}

static int new_vm(const LifecycleContext *ctx, const ImageRecord *img, const VmCreateOptions *opts,
                  HypervisorType hv, Vm **ret) {
        _cleanup_(vm_freep) Vm *vm = calloc(1, sizeof(Vm));
        _cleanup_(unit_spec_freep) UnitSpec *check = NULL;
        int r;

        if (!vm)
                return -ENOMEM;

        r = vm_generate_id(&vm->id);
        if (r < 0)
                return r;

        if (opts->name)
                vm->name = strdup(opts->name);
        else {
                r = vm_default_name(img->name, img->type, &vm->name);
                if (r < 0)
                        return r;
        }
        if (!vm->name)
                return -ENOMEM;
        r = vm_name_validate(vm->name);
        if (r < 0)
                return r;

        /* Properties are checked now, not at the first start. */
        r = unit_spec_new("check.service", &check);
        STRV_FOREACH(p, opts->properties)
                if (r >= 0)
                        r = unit_spec_add_assignment(check, *p);
        if (r < 0)
                return r;

        vm->state = VM_CREATING;
        vm->hypervisor = hv;
        vm->cpu = opts->cpu;
        vm->memory = opts->memory;
        vm->storage = opts->storage;
        vm->nics_requested = opts->nics;
        vm->autostart = opts->autostart;
        vm->image = strdup(img->name);
        vm->image_type = img->type;
        vm->image_digest = strdup(image_record_id(img));
        vm->properties = strv_copy(opts->properties);
        vm->image_blob_ids = calloc(1, sizeof(char *));
        vm->run_dir = strjoin(ctx->run_dir, "/", vm->id, NULL);
        vm->data_dir = store_path(ctx->store, "vms", vm->id, NULL);
        if (!vm->image || !vm->image_digest || !vm->properties || !vm->image_blob_ids ||
            !vm->run_dir || !vm->data_dir)
                return -ENOMEM;

        if (img->type == IMAGE_OCI) {
                for (size_t i = 0; i < img->n_layers; i++)
                        if (!strv_contains(vm->image_blob_ids, hex_of(img->layers[i].digest)) &&
                            strv_extend(&vm->image_blob_ids, hex_of(img->layers[i].digest)) < 0)
                                return -ENOMEM;
        } else if (strv_extend(&vm->image_blob_ids, hex_of(img->content_sum)) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(vm);
        return 0;
}

int lifecycle_create(const LifecycleContext *ctx, const char *image, const VmCreateOptions *opts,
                     Vm **ret) {
        _cleanup_(image_record_freep) ImageRecord *img = NULL;
        _cleanup_(vm_freep) Vm *vm = NULL;
        _cleanup_close_ int lock = -EBADF;
        HypervisorType hv;
        int *pins = NULL, r;

        r = vm_resources_validate(opts->cpu, opts->memory, opts->storage, opts->nics);
        if (r < 0)
                return r;
        r = validate_dns(ctx->dns);
        if (r < 0)
                return r;
        if (opts->name) {
                r = vm_name_validate(opts->name);
                if (r < 0)
                        return r;
        }

        r = hypervisor_choose(opts->hypervisor, &hv);
        if (r < 0)
                return r;

        r = resolve_image(ctx->store, image, &img);
        if (r < 0)
                return r;

        r = new_vm(ctx, img, opts, hv, &vm);
        if (r < 0)
                return r;

        /* Held until the record is in state "created", so gc never takes a VM that is being built. */
        r = vm_store_lock(ctx->store, vm->id, LOCK_EX, &lock);
        if (r < 0)
                return r;

        r = pin_blobs(ctx->store, vm->image_blob_ids, &pins);
        if (r < 0)
                return r;

        /* The record exists, pinning the blobs, before any network or disk is built, so gc
         * never mistakes them for leftovers. */
        r = vm_store_reserve(ctx->store, vm);
        if (r < 0) {
                unpin_blobs(pins);
                if (r == -EEXIST && !opts->name) {
                        _cleanup_free_ char *reason = error_save(r);

                        return error_set(r, "%s; the name was derived from the image, choose "
                                            "another with --name", reason ?: "VM name exists");
                }
                return r;
        }

        r = create_network(ctx, opts, vm);
        if (r >= 0)
                r = img->type == IMAGE_OCI ? prepare_oci(ctx, vm, img, false)
                                           : prepare_cloud(ctx, opts, vm, img, false);
        if (r >= 0) {
                vm->state = VM_CREATED;
                r = vm_store_save(ctx->store, vm);
        }
        unpin_blobs(pins);

        if (r < 0) {
                /* Keep the reason of the failure, not of the cleanup. */
                char *reason = error_save(r);

                (void) network_remove(&ctx->network, vm->id, vm->nics, vm->n_nics);
                (void) vm_store_remove(ctx->store, vm);
                (void) rm_rf(vm->run_dir);
                return error_restore(r, reason);
        }

        *ret = TAKE_PTR(vm);
        return 0;
}

int lifecycle_plan(const LifecycleContext *ctx, const char *image, const VmCreateOptions *opts,
                   Vm **ret) {
        _cleanup_(image_record_freep) ImageRecord *img = NULL;
        _cleanup_(vm_freep) Vm *vm = NULL;
        HypervisorType hv;
        int r;

        r = vm_resources_validate(opts->cpu, opts->memory, opts->storage, opts->nics);
        if (r < 0)
                return r;
        r = hypervisor_choose(opts->hypervisor, &hv);
        if (r < 0)
                return r;
        r = resolve_image(ctx->store, image, &img);
        if (r < 0)
                return r;
        r = new_vm(ctx, img, opts, hv, &vm);
        if (r < 0)
                return r;
        r = img->type == IMAGE_OCI ? prepare_oci(ctx, vm, img, true) : prepare_cloud(ctx, opts, vm, img, true);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(vm);
        return 0;
}

int lifecycle_unit_spec(const LifecycleContext *ctx, const Vm *vm, const char *program,
                        unsigned version, UnitSpec **ret) {
        const HypervisorOps *ops = hypervisor_ops(vm->hypervisor);
        _cleanup_(unit_spec_freep) UnitSpec *spec = NULL;
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *unit = vm_unit_name(vm->name), *description = NULL;
        char timeout[32];
        char *stop[] = { (char *) ctx->cocoon_path, (char *) "--root-dir", (char *) ctx->root_dir,
                         (char *) "--run-dir", (char *) ctx->run_dir, (char *) "vm",
                         (char *) "shutdown-hook", (char *) "--timeout", timeout, vm->id, NULL };
        char *relay[] = { (char *) ctx->cocoon_path, (char *) "--root-dir", (char *) ctx->root_dir,
                          (char *) "--run-dir", (char *) ctx->run_dir, (char *) "vm",
                          (char *) "console-relay", vm->id, NULL };
        char *stop_post[] = { (char *) ctx->cocoon_path, (char *) "--root-dir", (char *) ctx->root_dir,
                              (char *) "--run-dir", (char *) ctx->run_dir, (char *) "vm",
                              (char *) "network-down-hook", vm->id, NULL };
        int r;

        if (!ops)
                return error_set(-EOPNOTSUPP, "the %s backend is not available in this build",
                                 hypervisor_type_to_string(vm->hypervisor));
        /* The hook gets the timeout on its command line: it may not see the same --config. */
        snprintf(timeout, sizeof(timeout), "%u", ctx->stop_timeout_sec);
        if (!unit || asprintf(&description, "Cocoon VM %s (%s)", vm->name, vm->image) < 0)
                return -ENOMEM;

        r = ops->build_argv(vm, program, version, &argv);
        if (r < 0)
                return r;

        r = unit_spec_new(unit, &spec);
        if (r >= 0)
                r = unit_spec_add_string(spec, "Description", description);
        if (r >= 0)
                r = unit_spec_add_exec(spec, "ExecStart", argv, false);
        /* The relay forks into the background and stays in the unit's cgroup, so it ends with
         * the VM. Its failure is ignored: the guest runs on without a console. */
        if (r >= 0 && ops->console_needs_relay)
                r = unit_spec_add_exec(spec, "ExecStartPost", relay, true);
        if (r >= 0)
                r = unit_spec_add_exec(spec, "ExecStop", stop, true);
        if (r >= 0)
                r = unit_spec_add_string(spec, "Type", "exec");
        if (r >= 0)
                r = unit_spec_add_string(spec, "Slice", "cocoon.slice");
        /* SIGTERM to the VMM alone first, then SIGKILL to whatever is left in the unit. */
        if (r >= 0)
                r = unit_spec_add_string(spec, "KillMode", "mixed");
        if (r >= 0)
                r = unit_spec_add_uint64(spec, "TimeoutStopUSec",
                                         ((uint64_t) ctx->stop_timeout_sec + 10) * 1000000ULL);
        if (r >= 0 && vm->n_nics > 0 && vm->nics[0].netns_path)
                r = unit_spec_add_string(spec, "NetworkNamespacePath", vm->nics[0].netns_path);
        if (r >= 0 && vm->n_nics > 0)
                r = unit_spec_add_exec(spec, "ExecStopPost", stop_post, true);
        if (r >= 0)
                r = unit_spec_add_string(spec, "StandardOutput", "journal");
        if (r >= 0)
                r = unit_spec_add_string(spec, "StandardError", "journal");
        STRV_FOREACH(p, vm->properties)
                if (r >= 0)
                        r = unit_spec_add_assignment(spec, *p);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(spec);
        return 0;
}

VmState lifecycle_effective_state(const Vm *vm, const char *active_state) {
        if (vm->state == VM_CREATING)
                return VM_CREATING;
        if (active_state && (streq(active_state, "active") || streq(active_state, "activating") ||
                             streq(active_state, "reloading") || streq(active_state, "deactivating")))
                return VM_RUNNING;
        if (active_state && streq(active_state, "failed"))
                return VM_ERROR;
        if (vm->state == VM_RUNNING)
                return VM_STOPPED;
        return vm->state;
}

static bool state_is_running(const UnitState *s) {
        return streq(s->active_state, "active") || streq(s->active_state, "activating") ||
               streq(s->active_state, "reloading") || streq(s->active_state, "deactivating");
}

/* Explain a VMM that died while starting with the last lines it wrote. */
static int start_failure(const char *unit, const char *program, int r) {
        _cleanup_strv_free_ char **lines = NULL;
        _cleanup_free_ char *joined = NULL;

        const char *base = strrchr(program, '/') ? strrchr(program, '/') + 1 : program;

        /* systemd tags the VMM's output with its program name. */
        if (journal_last_messages(unit, base, 3, &lines) >= 0 && lines && lines[0])
                joined = strv_join(lines, " | ");
        error_clear();
        if (joined)
                return error_set(r, "%s exited during start: %s", program, joined);
        return error_set(r, "%s exited during start (see journalctl -u %s)", program, unit);
}

static int wait_ready(sd_bus *bus, const HypervisorOps *ops, const Vm *vm, const char *unit,
                      const char *program) {
        struct timespec start, now;

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                _cleanup_(unit_state_done) UnitState s = {};
                long elapsed;

                if (ops->ping(vm) >= 0)
                        return 0;

                if (unit_get_state(bus, unit, &s) >= 0 && !state_is_running(&s))
                        return start_failure(unit, program, -EIO);

                clock_gettime(CLOCK_MONOTONIC, &now);
                elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
                if (elapsed > READY_TIMEOUT_MS)
                        return error_set(-ETIMEDOUT, "%s did not answer on its control socket "
                                                     "within %d s", program, READY_TIMEOUT_MS / 1000);
                /* The VMM creates its socket within milliseconds; a short sleep between tries
                 * keeps this cheap without inotify plumbing. */
                nanosleep(&(struct timespec) { .tv_nsec = READY_INTERVAL_MS * 1000000L }, NULL);
        }
}

static int start_locked(const LifecycleContext *ctx, sd_bus *bus, Vm *vm) {
        const HypervisorOps *ops = hypervisor_ops(vm->hypervisor);
        _cleanup_(unit_spec_freep) UnitSpec *spec = NULL;
        _cleanup_(unit_state_done) UnitState state = {};
        _cleanup_free_ char *unit = vm_unit_name(vm->name), *program = NULL;
        unsigned version = 0;
        int r;

        if (!unit)
                return -ENOMEM;
        if (vm->state == VM_CREATING)
                return error_set(-EBUSY, "VM '%s' is still being created", vm->name);

        r = unit_get_state(bus, unit, &state);
        if (r < 0)
                return r;
        if (state_is_running(&state)) {
                /* A start killed after the unit came up left the record behind. */
                if (vm->state != VM_RUNNING) {
                        vm->state = VM_RUNNING;
                        (void) vm_store_save(ctx->store, vm);
                }
                return 1;
        }
        if (streq(state.active_state, "failed"))
                (void) unit_reset_failed(bus, unit);

        r = hypervisor_find_program(vm->hypervisor, &program, &version);
        if (r < 0)
                return r;

        r = mkdir_p(vm->run_dir, 0750);
        if (r < 0)
                return error_set(r, "cannot create '%s': %s", vm->run_dir, strerror(-r));
        /* Sockets of a VMM that died are stale; a relay would connect to them and fail. */
        /* Also the forced-stop marker of a stop that was killed before it removed it: the next
         * stop must press the power button again. */
        static const char *const sockets[] = { "api.sock", "qmp.sock", "serial.sock", "console.sock",
                                               "stop-force" };
        for (size_t i = 0; i < ELEMENTSOF(sockets); i++) {
                _cleanup_free_ char *p = strjoin(vm->run_dir, "/", sockets[i], NULL);

                if (!p)
                        return -ENOMEM;
                (void) unlink(p);
        }

        if (ops->prepare) {
                r = ops->prepare(vm);
                if (r < 0)
                        return r;
        }

        /* Links come up now; a namespace lost in a reboot is rebuilt with the same addresses. */
        if (vm->n_nics > 0) {
                r = network_up(&ctx->network, vm->id, vm->nics, vm->n_nics);
                if (r < 0)
                        return r;
                if (r > 0) {
                        r = vm_store_save(ctx->store, vm);
                        if (r < 0)
                                return r;
                }
        }

        r = lifecycle_unit_spec(ctx, vm, program, version, &spec);
        if (r < 0)
                return r;

        r = unit_start(bus, spec);
        if (r == -EEXIST)
                return error_set(r, "unit %s is already loaded by another installation or "
                                    "by hand; stop it first", unit);
        if (r == -EIO) {
                /* The VMM died before the start job finished: its last words explain why. */
                r = start_failure(unit, program, r);
                (void) unit_reset_failed(bus, unit);
                vm->state = VM_ERROR;
                (void) vm_store_save(ctx->store, vm);
                return r;
        }
        if (r < 0)
                return r;

        r = wait_ready(bus, ops, vm, unit, program);
        if (r < 0) {
                char *reason = error_save(r);

                (void) unit_stop(bus, unit);
                vm->state = VM_ERROR;
                (void) vm_store_save(ctx->store, vm);
                return error_restore(r, reason);
        }

        vm->state = VM_RUNNING;
        vm->first_booted = true;
        if (set_string(&vm->started_at, NULL) < 0 || !(vm->started_at = now_rfc3339()))
                return -ENOMEM;
        return vm_store_save(ctx->store, vm);
}

int lifecycle_start(const LifecycleContext *ctx, Vm *vm) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_close_ int lock = -EBADF;
        _cleanup_(vm_freep) Vm *fresh = NULL;
        int r;

        r = vm_store_lock(ctx->store, vm->id, LOCK_EX, &lock);
        if (r < 0)
                return r;

        /* Another command may have changed the record while we waited for the lock. */
        r = vm_store_load(ctx->store, vm->id, &fresh);
        if (r < 0)
                return r == -ENOENT ? error_set(r, "VM '%s' was removed", vm->name) : r;

        r = unit_bus_open(&bus);
        if (r < 0)
                return r;

        r = start_locked(ctx, bus, fresh);
        if (r >= 0) {
                vm->state = fresh->state;
                (void) set_string(&vm->started_at, fresh->started_at);
        }
        return r;
}

static char *force_marker_path(const Vm *vm) {
        return strjoin(vm->run_dir, "/stop-force", NULL);
}

static int stop_locked(const LifecycleContext *ctx, sd_bus *bus, Vm *vm, bool force) {
        _cleanup_(unit_state_done) UnitState state = {};
        _cleanup_free_ char *unit = vm_unit_name(vm->name), *marker = force_marker_path(vm);
        int r, ret = 0;

        if (!unit || !marker)
                return -ENOMEM;

        r = unit_get_state(bus, unit, &state);
        if (r < 0)
                return r;

        if (state_is_running(&state)) {
                if (force) {
                        (void) mkdir_p(vm->run_dir, 0750);
                        r = write_file_atomic(marker, "", 0, 0600);
                        if (r < 0)
                                return error_set(r, "cannot write '%s': %s", marker, strerror(-r));
                }
                r = unit_stop(bus, unit);
                (void) unlink(marker);
                if (r < 0)
                        return r;
                /* A VMM that systemd had to kill leaves the unit failed; the stop the user asked
                 * for still succeeded, so the VM is stopped, not in error. */
                (void) unit_reset_failed(bus, unit);
                /* ExecStopPost= did this already unless the unit lost it; it is idempotent. */
                if (vm->n_nics > 0)
                        (void) network_down(&ctx->network, vm->id, vm->nics, vm->n_nics);
        } else {
                ret = 1;
                /* A forced stop killed midway may have left its marker. */
                (void) unlink(marker);
                if (streq(state.active_state, "failed"))
                        (void) unit_reset_failed(bus, unit);
        }

        if (vm->state == VM_RUNNING || vm->state == VM_ERROR || ret == 0) {
                vm->state = VM_STOPPED;
                free(vm->stopped_at);
                vm->stopped_at = now_rfc3339();
                if (!vm->stopped_at)
                        return -ENOMEM;
                r = vm_store_save(ctx->store, vm);
                if (r < 0)
                        return r;
        }
        return ret;
}

int lifecycle_stop(const LifecycleContext *ctx, Vm *vm, bool force) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_close_ int lock = -EBADF;
        _cleanup_(vm_freep) Vm *fresh = NULL;
        int r;

        r = vm_store_lock(ctx->store, vm->id, LOCK_EX, &lock);
        if (r < 0)
                return r;
        r = vm_store_load(ctx->store, vm->id, &fresh);
        if (r < 0)
                return r == -ENOENT ? error_set(r, "VM '%s' was removed", vm->name) : r;
        if (fresh->state == VM_CREATING)
                return error_set(-EBUSY, "VM '%s' is still being created", vm->name);

        r = unit_bus_open(&bus);
        if (r < 0)
                return r;
        return stop_locked(ctx, bus, fresh, force);
}

int lifecycle_remove(const LifecycleContext *ctx, Vm *vm, bool force) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(unit_state_done) UnitState state = {};
        _cleanup_close_ int lock = -EBADF;
        _cleanup_(vm_freep) Vm *fresh = NULL;
        _cleanup_free_ char *unit = vm_unit_name(vm->name);
        int r;

        if (!unit)
                return -ENOMEM;

        r = vm_store_lock(ctx->store, vm->id, LOCK_EX, &lock);
        if (r < 0)
                return r;
        r = vm_store_load(ctx->store, vm->id, &fresh);
        if (r == -ENOENT)
                return 1;
        if (r < 0)
                return r;

        /* A VM that never ran, or was stopped, has no unit to ask about: it can go even where
         * systemd is not running. */
        r = unit_bus_open(&bus);
        if (r < 0 && fresh->state != VM_RUNNING && fresh->state != VM_ERROR) {
                error_clear();
                goto remove;
        }
        if (r < 0)
                return r;
        r = unit_get_state(bus, unit, &state);
        if (r < 0)
                return r;

        if (state_is_running(&state)) {
                if (!force)
                        return error_set(-EBUSY, "VM '%s' is running; stop it first or use --force",
                                         vm->name);
                r = stop_locked(ctx, bus, fresh, true);
                if (r < 0)
                        return r;
        }
        (void) unit_reset_failed(bus, unit);

remove:
        r = network_remove(&ctx->network, fresh->id, fresh->nics, fresh->n_nics);
        if (r < 0)
                return error_prefix(r, "cannot remove the network of VM '%s': ", vm->name);

        r = rm_rf(fresh->run_dir);
        if (r < 0)
                return error_set(r, "cannot remove '%s': %s", fresh->run_dir, strerror(-r));
        return vm_store_remove(ctx->store, fresh);
}

int lifecycle_network_down(const LifecycleContext *ctx, const Vm *vm) {
        if (vm->n_nics == 0)
                return 0;
        return network_down(&ctx->network, vm->id, vm->nics, vm->n_nics);
}

static int pidfd_open_compat(pid_t pid) {
        return (int) syscall(SYS_pidfd_open, pid, 0);
}

int lifecycle_shutdown_hook(const LifecycleContext *ctx, Vm *vm, int main_pid) {
        const HypervisorOps *ops = hypervisor_ops(vm->hypervisor);
        _cleanup_free_ char *marker = force_marker_path(vm);
        _cleanup_close_ int pidfd = -EBADF;
        struct pollfd p;
        int r;

        if (!ops || !marker)
                return -ENOMEM;

        /* A forced stop skips the guest and lets systemd send SIGTERM right away. */
        if (access(marker, F_OK) >= 0)
                return 0;

        r = ops->power_button(vm);
        if (r < 0)
                return r;

        if (main_pid <= 0)
                return 0;
        pidfd = pidfd_open_compat(main_pid);
        if (pidfd < 0)
                return 0;

        /* The pidfd becomes readable when the VMM exits: no polling loop. */
        p = (struct pollfd) { .fd = pidfd, .events = POLLIN };
        while (poll(&p, 1, (int) ctx->stop_timeout_sec * 1000) < 0 && errno == EINTR)
                ;
        return 0;
}
