/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <linux/kvm.h>

#include <jansson.h>

#include "error.h"
#include "fileio.h"
#include "qemu.h"
#include "strv.h"

#if defined(__aarch64__)
#define QEMU_PROGRAM "qemu-system-aarch64"
#define QEMU_MACHINE "virt"
#define QEMU_GUEST_CONSOLE "ttyAMA0"
#else
#define QEMU_PROGRAM "qemu-system-x86_64"
#define QEMU_MACHINE "q35"
#define QEMU_GUEST_CONSOLE "ttyS0"
#endif

/* A working KVM clears the probe's 8 MiB in a few milliseconds. One second leaves room for a
 * loaded host and still catches a KVM that needs seconds for it (2 MiB/s was measured on a
 * nested PVM host, where stock kernels seem to hang). */
#define KVM_PROBE_TIMEOUT_SEC 1

#define QMP_LINE_MAX (256 * 1024)

static const char *const accelerator_table[_QEMU_ACCELERATOR_MAX] = {
        [QEMU_ACCELERATOR_KVM] = "kvm",
        [QEMU_ACCELERATOR_TCG] = "tcg",
};

const char *qemu_accelerator_to_string(QemuAccelerator a) {
        return a >= 0 && a < _QEMU_ACCELERATOR_MAX ? accelerator_table[a] : NULL;
}

QemuAccelerator qemu_accelerator_from_string(const char *s) {
        for (int i = 0; s && i < _QEMU_ACCELERATOR_MAX; i++)
                if (streq(s, accelerator_table[i]))
                        return i;
        return _QEMU_ACCELERATOR_INVALID;
}

char *qemu_qmp_socket_path(const Vm *vm) {
        return strjoin(vm->run_dir, "/qmp.sock", NULL);
}

char *qemu_serial_socket_path(const Vm *vm) {
        return strjoin(vm->run_dir, "/serial.sock", NULL);
}

char *qemu_uefi_vars_path(const Vm *vm) {
        return strjoin(vm->data_dir, "/efivars.fd", NULL);
}

static int push(char ***argv, const char *fmt, ...) _printf_(2, 3);
static int push(char ***argv, const char *fmt, ...) {
        char *s;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return strv_consume(argv, s);
}

static int push_pair(char ***argv, const char *option, const char *value) {
        int r = strv_extend(argv, option);

        return r < 0 ? r : strv_extend(argv, value);
}

/* QEMU option values separate keys with ',', so a literal comma is written twice. */
static char *escape_value(const char *s) {
        size_t n = strlen(s) + 1;
        char *e, *p;

        for (const char *c = s; *c; c++)
                if (*c == ',')
                        n++;
        e = p = malloc(n);
        if (!e)
                return NULL;
        for (const char *c = s; *c; c++) {
                *p++ = *c;
                if (*c == ',')
                        *p++ = ',';
        }
        *p = '\0';
        return e;
}

/* A split OVMF image (OVMF_CODE*.fd) needs a writable variable store next to it in pflash. A
 * combined one (OVMF.fd) is loaded with -bios. */
static bool firmware_is_split(const char *path) {
        const char *base = strrchr(path, '/');

        return strstr(base ? base + 1 : path, "_CODE") != NULL;
}

static int push_disk(char ***argv, const VmStorage *d, size_t index, bool boot) {
        _cleanup_free_ char *file = escape_value(d->path);
        bool qcow2 = d->format && streq(d->format, "qcow2");
        int r;

        if (!file)
                return -ENOMEM;

        /* Read-only layers are shared by every VM of an image. Writable disks keep their holes:
         * discards and written zeros become unmapped ranges of the file. */
        r = push(argv, "-drive");
        if (r >= 0)
                r = push(argv, "file=%s,if=none,id=disk%zu,format=%s,%s", file, index,
                         qcow2 ? "qcow2" : "raw",
                         d->ro ? "readonly=on" : "discard=unmap,detect-zeroes=unmap");
        if (r >= 0)
                r = push(argv, "-device");
        if (r >= 0)
                r = push(argv, "virtio-blk-pci,drive=disk%zu%s%s%s", index,
                         d->serial ? ",serial=" : "", d->serial ?: "", boot ? ",bootindex=0" : "");
        return r;
}

static int push_firmware(char ***argv, const Vm *vm) {
        _cleanup_free_ char *code = escape_value(vm->firmware_path), *vars = NULL, *vars_escaped = NULL;
        int r;

        if (!code)
                return -ENOMEM;
        if (!firmware_is_split(vm->firmware_path))
                return push_pair(argv, "-bios", vm->firmware_path);

        vars = qemu_uefi_vars_path(vm);
        vars_escaped = vars ? escape_value(vars) : NULL;
        if (!vars_escaped)
                return -ENOMEM;
        r = push(argv, "-drive");
        if (r >= 0)
                r = push(argv, "if=pflash,format=raw,unit=0,file=%s,readonly=on", code);
        if (r >= 0)
                r = push(argv, "-drive");
        if (r >= 0)
                r = push(argv, "if=pflash,format=raw,unit=1,file=%s", vars_escaped);
        return r;
}

static int push_machine(char ***argv, const Vm *vm, QemuAccelerator accel) {
        int r;

        r = push_pair(argv, "-machine", QEMU_MACHINE);
        if (r >= 0)
                r = push_pair(argv, "-accel", qemu_accelerator_to_string(accel));
        if (r >= 0)
                r = push_pair(argv, "-cpu", accel == QEMU_ACCELERATOR_KVM ? "host" : "max");
        if (r >= 0)
                r = push(argv, "-smp");
        if (r >= 0)
                r = push(argv, "%u", vm->cpu);
        if (r >= 0)
                r = push(argv, "-m");
        if (r >= 0)
                r = push(argv, "%" PRIu64 "M", DIV_ROUND_UP(vm->memory, UINT64_C(1) << 20));
        return r;
}

/* QMP listens on its own socket. The guest console is the first serial port, whose chardev
 * listens on serial.sock for the console relay, which copies the output to the journal and
 * serves `cocoon vm console`. With wait=on QEMU starts the guest only after the relay has
 * connected, so no early boot output is lost. */
static int push_sockets(char ***argv, const Vm *vm) {
        _cleanup_free_ char *qmp = qemu_qmp_socket_path(vm), *serial = qemu_serial_socket_path(vm);
        _cleanup_free_ char *qmp_escaped = NULL, *serial_escaped = NULL;
        int r;

        if (!qmp || !serial)
                return -ENOMEM;
        qmp_escaped = escape_value(qmp);
        serial_escaped = escape_value(serial);
        if (!qmp_escaped || !serial_escaped)
                return -ENOMEM;

        r = push(argv, "-chardev");
        if (r >= 0)
                r = push(argv, "socket,id=qmp,path=%s,server=on,wait=off", qmp_escaped);
        if (r >= 0)
                r = push_pair(argv, "-mon", "chardev=qmp,mode=control");
        if (r >= 0)
                r = push(argv, "-chardev");
        if (r >= 0)
                r = push(argv, "socket,id=serial,path=%s,server=on,wait=on", serial_escaped);
        if (r >= 0)
                r = push_pair(argv, "-serial", "chardev:serial");
        return r;
}

static int push_nic(char ***argv, const VmNic *n, size_t index) {
        _cleanup_free_ char *tap = escape_value(n->tap);
        /* Cloud Hypervisor counts RX and TX queues separately, but QEMU counts queue pairs. */
        unsigned pairs = MAX(n->num_queues / 2, 1U);
        int r;

        if (!tap)
                return -ENOMEM;
        r = push(argv, "-netdev");
        if (r >= 0 && pairs > 1)
                r = push(argv, "tap,id=net%zu,ifname=%s,script=no,downscript=no,queues=%u", index, tap, pairs);
        else if (r >= 0)
                r = push(argv, "tap,id=net%zu,ifname=%s,script=no,downscript=no", index, tap);
        if (r >= 0)
                r = push(argv, "-device");
        if (r >= 0 && pairs > 1)
                r = push(argv, "virtio-net-pci,netdev=net%zu,mac=%s,mq=on,vectors=%u", index, n->mac,
                         2 * pairs + 2);
        else if (r >= 0)
                r = push(argv, "virtio-net-pci,netdev=net%zu,mac=%s", index, n->mac);
        return r;
}

int qemu_build_argv_accel(const Vm *vm, const char *program, QemuAccelerator accel, char ***ret) {
        _cleanup_strv_free_ char **argv = calloc(1, sizeof(char *));
        bool direct_boot = vm->kernel_path != NULL, boot_disk_set = false;
        int r;

        if (!argv)
                return -ENOMEM;
        if (!direct_boot && !vm->firmware_path)
                return error_set(-EINVAL, "VM %s has neither a kernel nor firmware", vm->name);
        if (!qemu_accelerator_to_string(accel))
                return -EINVAL;

        if ((r = strv_extend(&argv, program)) < 0 ||
            (r = push_pair(&argv, "-name", vm->name)) < 0 ||
            (r = push_machine(&argv, vm, accel)) < 0)
                return r;

        /* No default devices, no user networking and no display. A guest reboot ends QEMU, and
         * with it the unit. */
        if ((r = strv_extend(&argv, "-nodefaults")) < 0 ||
            (r = strv_extend(&argv, "-no-user-config")) < 0 ||
            (r = push_pair(&argv, "-display", "none")) < 0 ||
            (r = strv_extend(&argv, "-no-reboot")) < 0 ||
            (r = push_pair(&argv, "-msg", "timestamp=off")) < 0 ||
            (r = push_sockets(&argv, vm)) < 0)
                return r;

        if (direct_boot) {
                if ((r = push_pair(&argv, "-kernel", vm->kernel_path)) < 0)
                        return r;
                if (vm->initrd_path && (r = push_pair(&argv, "-initrd", vm->initrd_path)) < 0)
                        return r;
                if (vm->cmdline && (r = push_pair(&argv, "-append", vm->cmdline)) < 0)
                        return r;
        } else if ((r = push_firmware(&argv, vm)) < 0)
                return r;

        for (size_t i = 0; i < vm->n_storage; i++) {
                const VmStorage *d = &vm->storage_configs[i];
                bool boot = false;

                /* cidata only matters until cloud-init has run once. */
                if (d->role == STORAGE_CIDATA && vm->first_booted)
                        continue;
                /* UEFI boots the cloud image's disk first, not the cidata disk. */
                if (!direct_boot && !boot_disk_set && d->role == STORAGE_OVERLAY)
                        boot = boot_disk_set = true;
                r = push_disk(&argv, d, i, boot);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < vm->n_nics; i++) {
                r = push_nic(&argv, &vm->nics[i], i);
                if (r < 0)
                        return r;
        }

        if ((r = push_pair(&argv, "-object", "rng-random,id=rng,filename=/dev/urandom")) < 0 ||
            (r = push_pair(&argv, "-device", "virtio-rng-pci,rng=rng")) < 0)
                return r;

        *ret = TAKE_PTR(argv);
        return 0;
}

static int copy_file(const char *from, const char *to) {
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r;

        r = read_file(from, 64U << 20, &data, &size);
        if (r < 0)
                return error_set(r, "cannot read the UEFI variable template '%s': %s", from, strerror(-r));
        r = write_file_atomic(to, data, size, 0600);
        if (r < 0)
                return error_set(r, "cannot write '%s': %s", to, strerror(-r));
        return 0;
}

int qemu_prepare(const Vm *vm) {
        _cleanup_free_ char *vars = NULL, *template = NULL;
        const char *base;
        char *code;

        if (vm->kernel_path || !vm->firmware_path || !firmware_is_split(vm->firmware_path))
                return 0;

        vars = qemu_uefi_vars_path(vm);
        template = strdup(vm->firmware_path);
        if (!vars || !template)
                return -ENOMEM;
        if (access(vars, F_OK) >= 0)
                return 0;

        /* OVMF_CODE_4M.fd pairs with OVMF_VARS_4M.fd in the same directory. */
        base = strrchr(template, '/');
        code = strstr(base ? base + 1 : template, "_CODE");
        memcpy(code, "_VARS", 5);
        if (access(template, R_OK) < 0)
                return error_set(-ENOENT, "UEFI variable template '%s' not found next to '%s'", template,
                                 vm->firmware_path);
        return copy_file(template, vars);
}

#if defined(__x86_64__)
/* Guest memory layout of the probe: code at 0x1000, page tables at 0x2000-0x4fff, and the
 * cleared range 2 MiB..10 MiB, identity-mapped with 2 MiB pages. */
#define PROBE_MEMORY_SIZE (10U << 20)
#define PROBE_CODE 0x1000
#define PROBE_PML4 0x2000
#define PROBE_PDPT 0x3000
#define PROBE_PD 0x4000

static const uint8_t probe_code[] = {
        0xbf, 0x00, 0x00, 0x20, 0x00,   /* mov edi, 0x200000 */
        0xb9, 0x00, 0x00, 0x80, 0x00,   /* mov ecx, 0x800000 */
        0x31, 0xc0,                     /* xor eax, eax */
        0xf3, 0xaa,                     /* rep stosb */
        0xf4,                           /* hlt */
};

/* Runs in a child process: returns the exit status (0: the guest reached hlt). */
static int kvm_probe_child(void) {
        struct kvm_userspace_memory_region region = {};
        struct kvm_segment code_segment, data_segment;
        struct kvm_sregs sregs;
        struct kvm_regs regs = {};
        struct kvm_run *run;
        uint64_t *pml4, *pdpt, *pd;
        uint8_t *memory;
        int kvm, vm, vcpu, size;

        kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0)
                return 10;
        vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm < 0)
                return 11;
        memory = mmap(NULL, PROBE_MEMORY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED)
                return 12;
        region = (struct kvm_userspace_memory_region) {
                .memory_size = PROBE_MEMORY_SIZE,
                .userspace_addr = (uintptr_t) memory,
        };
        if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
                return 13;
        vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
        size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (vcpu < 0 || size <= 0)
                return 14;
        run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
        if (run == MAP_FAILED)
                return 12;

        memcpy(memory + PROBE_CODE, probe_code, sizeof(probe_code));
        pml4 = (uint64_t *) (memory + PROBE_PML4);
        pdpt = (uint64_t *) (memory + PROBE_PDPT);
        pd = (uint64_t *) (memory + PROBE_PD);
        pml4[0] = PROBE_PDPT | 0x3;                     /* present, writable */
        pdpt[0] = PROBE_PD | 0x3;
        for (uint64_t i = 0; i < PROBE_MEMORY_SIZE >> 21; i++)
                pd[i] = (i << 21) | 0x83;               /* present, writable, 2 MiB page */

        if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
                return 15;
        code_segment = (struct kvm_segment) {
                .limit = 0xffffffff, .selector = 0x8, .type = 0xb, .present = 1, .s = 1, .l = 1, .g = 1,
        };
        data_segment = (struct kvm_segment) {
                .limit = 0xffffffff, .selector = 0x10, .type = 0x3, .present = 1, .s = 1, .db = 1, .g = 1,
        };
        sregs.cs = code_segment;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data_segment;
        sregs.cr3 = PROBE_PML4;
        sregs.cr4 = 1U << 5;                            /* PAE */
        sregs.cr0 = 0x80050033;                         /* PG, AM, WP, NE, ET, MP, PE */
        sregs.efer = 0x500;                             /* LMA, LME */
        regs.rip = PROBE_CODE;
        regs.rflags = 0x2;
        if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
                return 15;

        for (;;) {
                if (ioctl(vcpu, KVM_RUN, 0) < 0)
                        return errno == EINTR ? 16 : 17;
                if (run->exit_reason == KVM_EXIT_HLT)
                        return 0;
                if (run->exit_reason != KVM_EXIT_INTR)
                        return 18;
        }
}
#else
/* NOTE: on other architectures the probe only checks that a VM can be created, so a KVM that is
 * there but unusable is not detected. */
static int kvm_probe_child(void) {
        int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);

        if (kvm < 0)
                return 10;
        return ioctl(kvm, KVM_CREATE_VM, 0) < 0 ? 11 : 0;
}
#endif

static long elapsed_ms(const struct timespec *start) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

int qemu_kvm_probe(char **ret_reason) {
        struct timespec start;
        char *reason = NULL;
        int status, fd;
        pid_t pid;

        fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                if (asprintf(&reason, "/dev/kvm cannot be opened: %s", strerror(errno)) < 0)
                        return -ENOMEM;
                *ret_reason = reason;
                return 0;
        }
        safe_close(fd);

        /* The test guest runs in a child, so that a KVM_RUN that never returns ends with the
         * child, killed by its alarm, and this process keeps its signal handlers. */
        clock_gettime(CLOCK_MONOTONIC, &start);
        pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                signal(SIGALRM, SIG_DFL);
                alarm(KVM_PROBE_TIMEOUT_SEC);
                _exit(kvm_probe_child());
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();

        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 1;

        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
                asprintf(&reason, "a test guest did not clear 8 MiB of memory within %d s, which takes "
                                  "milliseconds with a working KVM", KVM_PROBE_TIMEOUT_SEC);
        else if (WIFEXITED(status))
                asprintf(&reason, "a test guest failed to run (probe step %d) after %ld ms",
                         WEXITSTATUS(status), elapsed_ms(&start));
        else
                asprintf(&reason, "the KVM probe died from signal %d", WTERMSIG(status));
        if (!reason)
                return -ENOMEM;
        *ret_reason = reason;
        return 0;
}

static QemuAccelerator accelerator_preference = _QEMU_ACCELERATOR_INVALID;

int qemu_accelerator_set_preference(const char *value) {
        QemuAccelerator a;

        if (isempty(value) || streq(value, "auto")) {
                accelerator_preference = _QEMU_ACCELERATOR_INVALID;
                return 0;
        }
        a = qemu_accelerator_from_string(value);
        if (a < 0)
                return error_set(-EINVAL, "invalid accelerator '%s': expected kvm, tcg or auto", value);
        accelerator_preference = a;
        return 0;
}

static int read_cache(const char *path, QemuAccelerator *ret) {
        _cleanup_free_ char *text = NULL;
        QemuAccelerator a;
        char *nl;

        if (read_file(path, 4096, &text, NULL) < 0)
                return -ENOENT;
        nl = strchr(text, '\n');
        if (nl)
                *nl = '\0';
        a = qemu_accelerator_from_string(text);
        if (a < 0)
                return -EINVAL;
        *ret = a;
        return 0;
}

int qemu_accelerator_choose(const char *forced, const char *cache_dir, QemuAccelerator *ret,
                            char **ret_note) {
        _cleanup_free_ char *cache = NULL, *reason = NULL, *text = NULL;
        QemuAccelerator a;
        int r;

        if (!isempty(forced) && !streq(forced, "auto")) {
                a = qemu_accelerator_from_string(forced);
                if (a < 0)
                        return error_set(-EINVAL, "invalid accelerator '%s': expected kvm, tcg or auto", forced);
                if (a == QEMU_ACCELERATOR_KVM) {
                        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

                        if (fd < 0)
                                return error_set(negative_errno(), "KVM was requested but /dev/kvm cannot be "
                                                 "opened: %s", strerror(errno));
                        safe_close(fd);
                }
                *ret = a;
                if (ret_note)
                        *ret_note = NULL;
                return 0;
        }

        if (cache_dir) {
                cache = strjoin(cache_dir, "/" QEMU_ACCELERATOR_CACHE, NULL);
                if (!cache)
                        return -ENOMEM;
                if (read_cache(cache, &a) >= 0) {
                        *ret = a;
                        if (ret_note)
                                *ret_note = NULL;
                        return 0;
                }
        }

        r = qemu_kvm_probe(&reason);
        if (r < 0) {
                reason = strdup(error_message(r));
                if (!reason)
                        return -ENOMEM;
                error_clear();
        }
        a = r > 0 ? QEMU_ACCELERATOR_KVM : QEMU_ACCELERATOR_TCG;

        /* Best effort: without the cache the probe runs again next time. */
        if (cache && asprintf(&text, "%s\n%s\n", qemu_accelerator_to_string(a), reason ?: "") >= 0 &&
            mkdir_p(cache_dir, 0755) >= 0)
                (void) write_file_atomic(cache, text, strlen(text), 0644);

        if (ret_note) {
                char *note = NULL;

                if (a == QEMU_ACCELERATOR_TCG &&
                    asprintf(&note, "KVM is not usable on this host (%s); QEMU runs the guest with TCG "
                                    "software emulation, which is much slower", reason) < 0)
                        return -ENOMEM;
                *ret_note = note;
        }
        *ret = a;
        return 0;
}

void qmp_message_done(QmpMessage *m) {
        json_decref(m->value);
        free(m->error_class);
        free(m->error_desc);
        free(m->event);
        *m = (QmpMessage) {};
}

int qmp_message_parse(const char *line, QmpMessage *ret) {
        json_t *j, *v;
        QmpMessage m = {};
        json_error_t e;

        j = json_loads(line, 0, &e);
        if (!j)
                return error_set(-EBADMSG, "invalid QMP message: %s", e.text);
        if (!json_is_object(j)) {
                json_decref(j);
                return error_set(-EBADMSG, "invalid QMP message: not a JSON object");
        }

        if ((v = json_object_get(j, "return"))) {
                m.type = QMP_MESSAGE_RETURN;
                m.value = json_incref(v);
        } else if ((v = json_object_get(j, "error"))) {
                const char *class = json_string_value(json_object_get(v, "class"));
                const char *desc = json_string_value(json_object_get(v, "desc"));

                m.type = QMP_MESSAGE_ERROR;
                m.error_class = strdup(class ?: "GenericError");
                m.error_desc = strdup(desc ?: "no description");
                if (!m.error_class || !m.error_desc) {
                        qmp_message_done(&m);
                        json_decref(j);
                        return -ENOMEM;
                }
        } else if ((v = json_object_get(j, "event"))) {
                if (!json_is_string(v)) {
                        json_decref(j);
                        return error_set(-EBADMSG, "invalid QMP message: event name is not a string");
                }
                m.type = QMP_MESSAGE_EVENT;
                m.event = strdup(json_string_value(v));
                m.value = json_incref(j);
                if (!m.event) {
                        qmp_message_done(&m);
                        json_decref(j);
                        return -ENOMEM;
                }
        } else if ((v = json_object_get(j, "QMP"))) {
                m.type = QMP_MESSAGE_GREETING;
                m.value = json_incref(v);
        } else {
                json_decref(j);
                return error_set(-EBADMSG, "invalid QMP message: no return, error, event or QMP member");
        }

        json_decref(j);
        *ret = m;
        return 0;
}

typedef struct QmpConnection {
        int fd;
        const char *path;
        int timeout_ms;
        char *buffer;
        size_t size;
} QmpConnection;

static void qmp_connection_done(QmpConnection *c) {
        safe_close(c->fd);
        free(c->buffer);
}

static int qmp_connect(const char *path, int timeout_ms, QmpConnection *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return error_set(-ENAMETOOLONG, "QMP socket path '%s' is too long", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = negative_errno();

                safe_close(fd);
                if (r == -ENOENT || r == -ECONNREFUSED)
                        return error_set(-ECONNREFUSED, "nothing answers on the QMP socket %s", path);
                return error_set(r, "cannot connect to the QMP socket %s: %s", path, strerror(-r));
        }

        *ret = (QmpConnection) { .fd = fd, .path = path, .timeout_ms = timeout_ms };
        return 0;
}

/* Read the next line, waiting at most the connection's timeout for each chunk. */
static int qmp_read_line(QmpConnection *c, char **ret) {
        for (;;) {
                char *nl = c->buffer ? memchr(c->buffer, '\n', c->size) : NULL;
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                char chunk[4096];
                ssize_t n;
                char *t;
                int r;

                if (nl) {
                        size_t len = nl - c->buffer;
                        char *line = strndup(c->buffer, len);

                        if (!line)
                                return -ENOMEM;
                        memmove(c->buffer, nl + 1, c->size - len - 1);
                        c->size -= len + 1;
                        *ret = line;
                        return 0;
                }
                if (c->size > QMP_LINE_MAX)
                        return error_set(-EMSGSIZE, "QMP message on %s is over %d bytes", c->path, QMP_LINE_MAX);

                r = poll(&p, 1, c->timeout_ms);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return negative_errno();
                if (r == 0)
                        return error_set(-ETIMEDOUT, "QEMU did not answer on %s within %d ms", c->path,
                                         c->timeout_ms);

                n = read(c->fd, chunk, sizeof(chunk));
                if (n < 0 && errno == EINTR)
                        continue;
                /* A reset means QEMU closed the socket with our command unread, e.g. on quit. */
                if (n == 0 || (n < 0 && errno == ECONNRESET))
                        return error_set(-ECONNRESET, "QEMU closed the QMP connection on %s", c->path);
                if (n < 0)
                        return error_set(negative_errno(), "cannot read from %s: %s", c->path, strerror(errno));

                t = realloc(c->buffer, c->size + n + 1);
                if (!t)
                        return -ENOMEM;
                c->buffer = t;
                memcpy(c->buffer + c->size, chunk, n);
                c->size += n;
        }
}

static int qmp_read_message(QmpConnection *c, QmpMessage *ret) {
        for (;;) {
                _cleanup_free_ char *line = NULL;
                int r;

                r = qmp_read_line(c, &line);
                if (r < 0)
                        return r;
                /* QEMU ends lines with "\r\n", and blank lines carry nothing. */
                if (strspn(line, " \t\r") == strlen(line))
                        continue;
                return qmp_message_parse(line, ret);
        }
}

static int qmp_send(QmpConnection *c, const char *command) {
        _cleanup_free_ char *text = NULL;
        size_t done = 0, n;

        if (asprintf(&text, "{\"execute\":\"%s\"}\n", command) < 0)
                return -ENOMEM;
        n = strlen(text);
        while (done < n) {
                ssize_t k = send(c->fd, text + done, n - done, MSG_NOSIGNAL);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return error_set(negative_errno(), "cannot send QMP command %s on %s: %s", command,
                                         c->path, strerror(errno));
                done += k;
        }
        return 0;
}

/* Send command and wait for its reply, skipping events that arrive in between. */
static int qmp_command(QmpConnection *c, const char *command, json_t **ret) {
        int r;

        r = qmp_send(c, command);
        if (r < 0)
                return r;

        for (;;) {
                QmpMessage m = {};

                r = qmp_read_message(c, &m);
                if (r < 0)
                        return r;
                switch (m.type) {
                case QMP_MESSAGE_RETURN:
                        if (ret)
                                *ret = json_incref(m.value);
                        qmp_message_done(&m);
                        return 0;
                case QMP_MESSAGE_ERROR:
                        r = error_set(-EIO, "QMP command %s failed: %s (%s)", command, m.error_desc,
                                      m.error_class);
                        qmp_message_done(&m);
                        return r;
                case QMP_MESSAGE_GREETING:
                        qmp_message_done(&m);
                        return error_set(-EPROTO, "unexpected QMP greeting in reply to %s", command);
                default:
                        qmp_message_done(&m);
                        break;
                }
        }
}

int qmp_execute(const char *socket_path, const char *command, int timeout_ms, json_t **ret) {
        QmpConnection c = { .fd = -EBADF };
        QmpMessage greeting = {};
        int r;

        r = qmp_connect(socket_path, timeout_ms, &c);
        if (r < 0)
                return r;

        r = qmp_read_message(&c, &greeting);
        if (r >= 0 && greeting.type != QMP_MESSAGE_GREETING)
                r = error_set(-EPROTO, "QEMU did not start %s with a QMP greeting", socket_path);
        qmp_message_done(&greeting);
        if (r >= 0)
                r = qmp_command(&c, "qmp_capabilities", NULL);
        if (r >= 0)
                r = qmp_command(&c, command, ret);

        qmp_connection_done(&c);
        return r;
}

#define QMP_TIMEOUT_MS 5000

static int qemu_vm_command(const Vm *vm, const char *command) {
        _cleanup_free_ char *socket = qemu_qmp_socket_path(vm);

        if (!socket)
                return -ENOMEM;
        return qmp_execute(socket, command, QMP_TIMEOUT_MS, NULL);
}

int qemu_quit(const Vm *vm) {
        return qemu_vm_command(vm, "quit");
}

static int qemu_power_button(const Vm *vm) {
        return qemu_vm_command(vm, "system_powerdown");
}

static int qemu_ping(const Vm *vm) {
        _cleanup_free_ char *socket = qemu_qmp_socket_path(vm);
        json_t *status = NULL;
        int r;

        if (!socket)
                return -ENOMEM;
        r = qmp_execute(socket, "query-status", QMP_TIMEOUT_MS, &status);
        if (r < 0)
                return r;
        if (!json_is_string(json_object_get(status, "status")))
                r = error_set(-EBADMSG, "QEMU answered query-status without a status");
        json_decref(status);
        return r;
}

/* The relay calls this again until QEMU has created the socket. */
static int qemu_console_endpoint(const Vm *vm, char **ret) {
        char *path = qemu_serial_socket_path(vm);
        struct stat st;

        if (!path)
                return -ENOMEM;
        if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
                free(path);
                return error_set(-ENOENT, "QEMU has not created its serial socket yet");
        }
        *ret = path;
        return 0;
}

/* The run directory of cocoon is the parent of the VM's run directory, and the probe result is
 * cached there. */
static char *run_root(const Vm *vm) {
        const char *slash = vm->run_dir ? strrchr(vm->run_dir, '/') : NULL;

        return slash && slash != vm->run_dir ? strndup(vm->run_dir, slash - vm->run_dir) : NULL;
}

static int qemu_build_argv(const Vm *vm, const char *program, unsigned version, char ***ret) {
        _cleanup_free_ char *cache_dir = run_root(vm);
        QemuAccelerator accel = accelerator_preference;
        int r;

        if (accel < 0) {
                r = qemu_accelerator_choose(NULL, cache_dir, &accel, NULL);
                if (r < 0)
                        return r;
        }
        return qemu_build_argv_accel(vm, program, accel, ret);
}

const HypervisorOps qemu_ops = {
        .prepare = qemu_prepare,
        .type = HYPERVISOR_QEMU,
        .program = QEMU_PROGRAM,
        .guest_console = QEMU_GUEST_CONSOLE,
        .build_argv = qemu_build_argv,
        .power_button = qemu_power_button,
        .ping = qemu_ping,
        .console_endpoint = qemu_console_endpoint,
        .console_needs_relay = true,
};
