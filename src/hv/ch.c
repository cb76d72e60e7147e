/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ch.h"
#include "error.h"
#include "strv.h"

/* Disk keys that Cloud Hypervisor accepts only from v51.0 on (its release notes introduced
 * image_type= and backing_files= there; sparse= is assumed to be as recent), older releases
 * reject unknown keys. */
#define CH_VERSION_DISK_TYPE_KEYS 51

#define CH_QUEUE_SIZE 256

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

static int push_disk(char ***argv, const Vm *vm, const VmStorage *d, unsigned version) {
        bool typed = version == 0 || version >= CH_VERSION_DISK_TYPE_KEYS;
        bool qcow2 = d->format && streq(d->format, "qcow2");
        _cleanup_free_ char *extra = NULL;
        int r;

        /* Writable disks bypass the host page cache; read-only layers are shared by many VMs
         * and profit from it. */
        r = asprintf(&extra, "%s%s%s%s",
                     d->ro ? ",readonly=on" : ",readonly=off,direct=on",
                     typed ? (qcow2 ? ",image_type=qcow2" : ",image_type=raw") : "",
                     typed && qcow2 && !d->ro ? ",backing_files=on" : "",
                     typed && !qcow2 && !d->ro ? ",sparse=on" : "");
        if (r < 0)
                return -ENOMEM;

        return push(argv, "path=%s%s,num_queues=%u,queue_size=%u%s%s", d->path, extra, vm->cpu,
                    CH_QUEUE_SIZE, d->serial ? ",serial=" : "", d->serial ?: "");
}

int ch_build_argv(const Vm *vm, const char *program, unsigned version, char ***ret) {
        _cleanup_strv_free_ char **argv = calloc(1, sizeof(char *));
        _cleanup_free_ char *socket = NULL;
        bool direct_boot = vm->kernel_path != NULL;
        int r;

        if (!argv)
                return -ENOMEM;
        if (!direct_boot && !vm->firmware_path)
                return error_set(-EINVAL, "VM %s has neither a kernel nor firmware", vm->name);

        socket = strjoin(vm->run_dir, "/api.sock", NULL);
        if (!socket)
                return -ENOMEM;

        if ((r = strv_extend(&argv, program)) < 0 ||
            (r = strv_extend(&argv, "--api-socket")) < 0 ||
            (r = push(&argv, "path=%s", socket)) < 0 ||
            (r = strv_extend(&argv, "--cpus")) < 0 ||
            (r = push(&argv, "boot=%u,max=%u", vm->cpu, vm->cpu)) < 0 ||
            (r = strv_extend(&argv, "--memory")) < 0 ||
            (r = push(&argv, "size=%" PRIu64, vm->memory)) < 0)
                return r;

        if (vm->n_storage > 0) {
                r = strv_extend(&argv, "--disk");
                /* cidata stays attached after the first boot: cloud-init only acts on it again
                 * for a new instance id, and keeping it lets a later boot see changed data. */
                for (size_t i = 0; r >= 0 && i < vm->n_storage; i++)
                        r = push_disk(&argv, vm, &vm->storage_configs[i], version);
                if (r < 0)
                        return r;
        }

        if (direct_boot) {
                if ((r = strv_extend(&argv, "--kernel")) < 0 ||
                    (r = strv_extend(&argv, vm->kernel_path)) < 0)
                        return r;
                if (vm->initrd_path && ((r = strv_extend(&argv, "--initramfs")) < 0 ||
                                        (r = strv_extend(&argv, vm->initrd_path)) < 0))
                        return r;
                if (vm->cmdline && ((r = strv_extend(&argv, "--cmdline")) < 0 ||
                                    (r = strv_extend(&argv, vm->cmdline)) < 0))
                        return r;
        } else if ((r = strv_extend(&argv, "--firmware")) < 0 ||
                   (r = strv_extend(&argv, vm->firmware_path)) < 0)
                return r;

        if (vm->n_nics > 0) {
                r = strv_extend(&argv, "--net");
                for (size_t i = 0; r >= 0 && i < vm->n_nics; i++)
                        r = push(&argv, "tap=%s,mac=%s,num_queues=%u,queue_size=%u", vm->nics[i].tap,
                                 vm->nics[i].mac, vm->nics[i].num_queues ?: 2,
                                 vm->nics[i].queue_size ?: CH_QUEUE_SIZE);
                if (r < 0)
                        return r;
        }

        /* The guest console is a PTY: the virtio console for direct boot (guest console=hvc0),
         * the serial port for UEFI. The console relay of the unit opens it, copies the output
         * to the journal and serves `cocoon vm console`. With "tty" the output would reach the
         * journal too, but the VMM's stdin is /dev/null, so no input could reach the guest. */
        if ((r = strv_extend(&argv, "--rng")) < 0 ||
            (r = strv_extend(&argv, "src=/dev/urandom")) < 0 ||
            (r = strv_extend(&argv, "--watchdog")) < 0 ||
            (r = strv_extend(&argv, "--serial")) < 0 ||
            (r = strv_extend(&argv, direct_boot ? "off" : "pty")) < 0 ||
            (r = strv_extend(&argv, "--console")) < 0 ||
            (r = strv_extend(&argv, direct_boot ? "pty" : "off")) < 0)
                return r;

        *ret = TAKE_PTR(argv);
        return 0;
}

static size_t discard_body(char *ptr, size_t size, size_t n, void *userdata) {
        return size * n;
}

#define CH_API_BODY_MAX (1024 * 1024)

typedef struct Body {
        char *data;
        size_t len;
} Body;

static size_t keep_body(char *ptr, size_t size, size_t n, void *userdata) {
        Body *b = userdata;
        size_t k = size * n;
        char *t;

        /* Returning less than k makes curl fail the transfer. */
        if (b->len + k > CH_API_BODY_MAX)
                return 0;
        t = realloc(b->data, b->len + k + 1);
        if (!t)
                return 0;
        memcpy(t + b->len, ptr, k);
        b->data = t;
        b->len += k;
        b->data[b->len] = '\0';
        return k;
}

static int api_request(const char *socket, const char *method, const char *endpoint, long *ret_status,
                       char **ret_body) {
        _cleanup_free_ char *url = strjoin("http://localhost/api/v1/", endpoint, NULL);
        char errbuf[CURL_ERROR_SIZE] = "";
        Body body = {};
        CURL *c;
        CURLcode cc;
        long status = 0;

        if (!url)
                return -ENOMEM;
        c = curl_easy_init();
        if (!c)
                return -ENOMEM;

        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (ret_body) {
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_body);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
        } else
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (streq(method, "PUT")) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
        }

        cc = curl_easy_perform(c);
        if (cc == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);

        if (cc != CURLE_OK)
                free(body.data);
        if (cc == CURLE_COULDNT_CONNECT)
                return error_set(-ECONNREFUSED, "nothing answers on the API socket %s", socket);
        if (cc != CURLE_OK)
                return error_set(-EIO, "API request %s %s failed: %s", method, endpoint,
                                 errbuf[0] ? errbuf : curl_easy_strerror(cc));
        if (ret_status)
                *ret_status = status;
        if (ret_body)
                *ret_body = body.data ? body.data : strdup("");
        return ret_body && !*ret_body ? -ENOMEM : 0;
}

int ch_api_call(const char *socket, const char *method, const char *endpoint, long *ret_status) {
        return api_request(socket, method, endpoint, ret_status, NULL);
}

int ch_api_get(const char *socket, const char *endpoint, long *ret_status, char **ret_body) {
        return api_request(socket, "GET", endpoint, ret_status, ret_body);
}

int ch_console_path_from_info(const char *info, bool serial, char **ret) {
        const char *device = serial ? "serial" : "console";
        json_t *root, *mode, *file;
        json_error_t err;
        int r = 0;

        root = json_loads(info, 0, &err);
        if (!root)
                return error_set(-EBADMSG, "invalid vm.info answer: %s", err.text);

        mode = json_object_get(json_object_get(json_object_get(root, "config"), device), "mode");
        file = json_object_get(json_object_get(json_object_get(root, "config"), device), "file");
        if (!json_is_string(mode) || !streq(json_string_value(mode), "Pty"))
                r = error_set(-EOPNOTSUPP, "the %s of the VM is not a PTY (mode %s)", device,
                              json_is_string(mode) ? json_string_value(mode) : "missing");
        else if (!json_is_string(file) || isempty(json_string_value(file)))
                r = error_set(-EBADMSG, "vm.info has no PTY path for the %s", device);
        else if (!(*ret = strdup(json_string_value(file))))
                r = -ENOMEM;

        json_decref(root);
        return r;
}
