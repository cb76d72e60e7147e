/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A test double of Cloud Hypervisor v53 for Cocoon's test suite, for hosts where the real VMM
 * cannot run. It enforces CH's command-line grammar, opens the host resources CH would open,
 * prints a made-up guest boot log and serves CH's REST API on the API socket. It runs no guest.
 * Fault-injection knobs come from CH_DOUBLE_* environment variables (see README.md). */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ch-config.h"
#include "ch-console.h"
#include "ch-http.h"
#include "ch-util.h"
#include "ch-vm.h"

#define VERSION_LINE "cloud-hypervisor v53.0.0 (cocoon test double)"
#define CONN_MAX 32
#define POWER_OFF_DELAY_USEC (300 * 1000) /* between the ACPI power button and the VMM exit */
#define USEC_PER_SEC UINT64_C(1000000)

typedef enum LogLevel { LEVEL_ERROR, LEVEL_WARN, LEVEL_INFO, LEVEL_DEBUG } LogLevel;

typedef struct Conn {
        int fd;
        char *in;
        size_t in_len;
        char *out;
        size_t out_len;
        bool close_after_write, sent_continue;
} Conn;

typedef struct Knobs {
        bool ignore_power_button, hang_on_sigterm;
        uint64_t crash_after_usec; /* 0: never */
        unsigned boot_delay_ms;
} Knobs;

typedef struct Vmm {
        ChConfig config;
        Knobs knobs;
        VmState state;
        VmDevices devices;
        Console serial, console;
        Console *guest_output; /* the endpoint that shows the boot log */
        char *hostname;
        int api_fd, signal_fd, event_fd;
        Conn conns[CONN_MAX];
        size_t n_conns;
        FILE *log;
        uint64_t start_usec, power_off_usec, crash_usec;
        bool exiting;
} Vmm;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* CH's log line format: "cloud-hypervisor: <seconds>s: <thread> LEVEL:location -- message". */
static void vmm_log(Vmm *v, LogLevel level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vmm_log(Vmm *v, LogLevel level, const char *fmt, ...) {
        static const char *const names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
        LogLevel max = LEVEL_DEBUG;
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        if (v->config.verbosity == 0)
                max = LEVEL_WARN;
        else if (v->config.verbosity == 1)
                max = LEVEL_INFO;
        if (level > max)
                return;

        va_start(ap, fmt);
        msg = xvasprintf(fmt, ap);
        va_end(ap);
        fprintf(v->log ?: stderr, "cloud-hypervisor: %10.6fs: <vmm> %s:cocoon-double -- %s\r\n",
                (double) (now_usec() - v->start_usec) / USEC_PER_SEC, names[level], msg);
        fflush(v->log ?: stderr);
}

/* One JSON object per event, as CH's --event-monitor writes them. */
static void vmm_event(Vmm *v, const char *source, const char *event) {
        struct timespec ts;
        _cleanup_free_ char *line = NULL;
        json_t *j;

        if (v->event_fd < 0)
                return;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        j = json_pack("{s:{s:I,s:i},s:s,s:s,s:n}", "timestamp", "secs", (json_int_t) ts.tv_sec, "nanos",
                      (int) ts.tv_nsec, "source", source, "event", event, "properties");
        line = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (line) {
                dprintf(v->event_fd, "%s\n", line);
        }
}

static void guest_print(Vmm *v, const char *s) {
        if (v->guest_output)
                console_write(v->guest_output, s);
}

/* ---- fault knobs and argv recording ---------------------------------------------------- */

static int parse_knobs(Knobs *k) {
        const char *crash = getenv("CH_DOUBLE_CRASH_AFTER"), *delay = getenv("CH_DOUBLE_BOOT_DELAY_MS");
        char *end;

        *k = (Knobs) {
                .ignore_power_button = streq(getenv("CH_DOUBLE_IGNORE_POWER_BUTTON") ?: "", "1"),
                .hang_on_sigterm = streq(getenv("CH_DOUBLE_HANG_ON_SIGTERM") ?: "", "1"),
        };

        if (!isempty(crash)) {
                double s = strtod(crash, &end);

                if (*end != '\0' || s < 0) {
                        fprintf(stderr, "cloud-hypervisor (cocoon test double): invalid CH_DOUBLE_CRASH_AFTER=%s, "
                                        "expected seconds\n", crash);
                        return -EINVAL;
                }
                k->crash_after_usec = MAX((uint64_t) (s * USEC_PER_SEC), UINT64_C(1));
        }
        if (!isempty(delay)) {
                unsigned long ms = strtoul(delay, &end, 10);

                if (*end != '\0' || ms > 600000) {
                        fprintf(stderr, "cloud-hypervisor (cocoon test double): invalid CH_DOUBLE_BOOT_DELAY_MS=%s, "
                                        "expected milliseconds up to 600000\n", delay);
                        return -EINVAL;
                }
                k->boot_delay_ms = (unsigned) ms;
        }
        return 0;
}

/* Append {"pid":N,"argv":[...]} as one line with a single write, so concurrent starts do not
 * interleave. */
static int record_argv(int argc, char **argv) {
        const char *path = getenv("CH_DOUBLE_RECORD");
        _cleanup_free_ char *line = NULL, *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        json_t *args, *record;

        if (isempty(path))
                return 0;

        args = json_array();
        for (int i = 0; i < argc; i++)
                json_array_append_new(args, json_string(argv[i]));
        record = json_pack("{s:i,s:o}", "pid", (int) getpid(), "argv", args);
        text = json_dumps(record, JSON_COMPACT);
        json_decref(record);
        if (!text)
                return -ENOMEM;
        line = xasprintf("%s\n", text);

        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t) strlen(line)) {
                fprintf(stderr, "cloud-hypervisor (cocoon test double): failed to append to CH_DOUBLE_RECORD=%s: %m\n",
                        path);
                return -errno;
        }
        return 0;
}

/* ---- VM lifecycle ---------------------------------------------------------------------- */

static int vm_boot(Vmm *v, ChErrorChain *chain) {
        _cleanup_free_ char *log = NULL;
        int r;

        vmm_event(v, "vm", "booting");
        r = vm_devices_open(&v->config, &v->devices, chain);
        if (r < 0)
                return r;

        v->state = VM_STATE_RUNNING;
        log = vm_boot_log(&v->config);
        guest_print(v, log);
        vmm_event(v, "vm", "booted");
        vmm_log(v, LEVEL_INFO, "VM booted (test double, no guest runs)");
        return 0;
}

static void vm_stop(Vmm *v, VmState new_state) {
        vm_devices_close(&v->devices);
        v->state = new_state;
        vmm_event(v, "vm", "shutdown");
}

/* ---- REST API -------------------------------------------------------------------------- */

static void conn_queue(Conn *c, const char *p, size_t n) {
        c->out = xrealloc_array(c->out, c->out_len + n, 1);
        memcpy(c->out + c->out_len, p, n);
        c->out_len += n;
}

static void respond(Conn *c, int status, json_t *body, bool keep_alive) {
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        _cleanup_free_ char *out = NULL;
        size_t n;

        json_decref(body);
        out = ch_http_format_response(status, text, keep_alive, &n);
        conn_queue(c, out, n);
        if (!keep_alive)
                c->close_after_write = true;
}

/* CH's error body: the JSON array of its error chain, outermost first. */
static json_t *chain_json(const char *first, ...) {
        json_t *a = json_array();
        va_list ap;

        va_start(ap, first);
        for (const char *s = first; s; s = va_arg(ap, const char *))
                json_array_append_new(a, json_string(s));
        va_end(ap);
        return a;
}

typedef struct ApiCall {
        Vmm *vmm;
        Conn *conn;
        const ChHttpRequest *request;
        json_t *body; /* parsed request body for endpoints that take one */
} ApiCall;

static void api_error(ApiCall *a, const char *action, const char *reason) {
        respond(a->conn, 500, chain_json("Error from API", action, reason, NULL), a->request->keep_alive);
}

static void api_no_content(ApiCall *a) {
        respond(a->conn, 204, NULL, a->request->keep_alive);
}

/* Fail the call unless the VM is in one of the allowed states. */
static bool api_require(ApiCall *a, const char *action, VmState s1, VmState s2, const char *target) {
        _cleanup_free_ char *reason = NULL;
        VmState s = a->vmm->state;

        if (s == s1 || s == s2)
                return true;

        if (s == VM_STATE_NONE)
                reason = xstrdup("VM is not created");
        else
                reason = xasprintf("invalid VM state transition: %s to %s", vm_state_to_string(s), target);
        api_error(a, action, reason);
        return false;
}

static void api_vmm_ping(ApiCall *a) {
        json_t *j = json_pack("{s:s,s:s,s:i,s:[]}", "build_version", "v53.0.0-double", "version", "v53.0.0", "pid",
                              (int) getpid(), "features");
        respond(a->conn, 200, j, a->request->keep_alive);
}

static void api_vmm_shutdown(ApiCall *a) {
        vmm_log(a->vmm, LEVEL_INFO, "vmm.shutdown requested");
        if (a->vmm->state == VM_STATE_RUNNING || a->vmm->state == VM_STATE_PAUSED)
                vm_stop(a->vmm, VM_STATE_SHUTDOWN);
        vmm_event(a->vmm, "vmm", "shutdown");
        api_no_content(a);
        a->vmm->exiting = true;
}

static void api_vm_info(ApiCall *a) {
        if (a->vmm->state == VM_STATE_NONE)
                return api_error(a, "The VM info is not available", "VM is not created");
        respond(a->conn, 200, vm_info_json(&a->vmm->config, a->vmm->state), a->request->keep_alive);
}

static void api_vm_counters(ApiCall *a) {
        if (!api_require(a, "The VM counters are not available", VM_STATE_RUNNING, VM_STATE_PAUSED, "Running"))
                return;
        respond(a->conn, 200, vm_counters_json(&a->vmm->config), a->request->keep_alive);
}

static void api_vm_power_button(ApiCall *a) {
        Vmm *v = a->vmm;

        if (!api_require(a, "The VM could not be powered off", VM_STATE_RUNNING, VM_STATE_RUNNING, "Shutdown"))
                return;

        api_no_content(a);
        if (v->knobs.ignore_power_button) {
                vmm_log(v, LEVEL_WARN, "ignoring the ACPI power button (CH_DOUBLE_IGNORE_POWER_BUTTON=1)");
                return;
        }
        guest_print(v, "cocoon-double: ACPI power button, shutting down\n");
        if (v->power_off_usec == 0)
                v->power_off_usec = now_usec() + POWER_OFF_DELAY_USEC;
}

static void api_vm_shutdown(ApiCall *a) {
        if (!api_require(a, "The VM could not shutdown", VM_STATE_RUNNING, VM_STATE_PAUSED, "Shutdown"))
                return;
        vm_stop(a->vmm, VM_STATE_SHUTDOWN);
        vmm_log(a->vmm, LEVEL_INFO, "VM shut down by vm.shutdown; the VMM keeps running");
        api_no_content(a);
}

static void api_vm_reboot(ApiCall *a) {
        _cleanup_free_ char *log = NULL;

        if (!api_require(a, "The VM could not reboot", VM_STATE_RUNNING, VM_STATE_RUNNING, "Running"))
                return;
        guest_print(a->vmm, "reboot: Restarting system\n");
        log = vm_boot_log(&a->vmm->config);
        guest_print(a->vmm, log);
        vmm_event(a->vmm, "vm", "reboot");
        api_no_content(a);
}

static void api_vm_pause(ApiCall *a) {
        if (!api_require(a, "The VM could not pause", VM_STATE_RUNNING, VM_STATE_RUNNING, "Paused"))
                return;
        a->vmm->state = VM_STATE_PAUSED;
        vmm_event(a->vmm, "vm", "paused");
        api_no_content(a);
}

static void api_vm_resume(ApiCall *a) {
        if (!api_require(a, "The VM could not resume", VM_STATE_PAUSED, VM_STATE_PAUSED, "Running"))
                return;
        a->vmm->state = VM_STATE_RUNNING;
        vmm_event(a->vmm, "vm", "resumed");
        api_no_content(a);
}

static void api_vm_boot(ApiCall *a) {
        ChErrorChain chain = {};
        json_t *body;

        if (!api_require(a, "The VM could not boot", VM_STATE_CREATED, VM_STATE_SHUTDOWN, "Running"))
                return;

        if (vm_boot(a->vmm, &chain) >= 0)
                return api_no_content(a);

        /* Drop "Error booting VM", which is the command line's context, not the API's. */
        body = chain_json("Error from API", NULL);
        for (size_t i = 1; i < chain.n; i++)
                json_array_append_new(body, json_string(chain.items[i]));
        ch_chain_clear(&chain);
        respond(a->conn, 500, body, a->request->keep_alive);
}

static void api_vm_delete(ApiCall *a) {
        if (a->vmm->state == VM_STATE_RUNNING || a->vmm->state == VM_STATE_PAUSED)
                vm_stop(a->vmm, VM_STATE_NONE);
        a->vmm->state = VM_STATE_NONE;
        api_no_content(a);
}

static void api_vm_nmi(ApiCall *a) {
        if (!api_require(a, "The NMI could not be injected", VM_STATE_RUNNING, VM_STATE_RUNNING, "Running"))
                return;
        guest_print(a->vmm, "Uhhuh. NMI received for unknown reason 00 on CPU 0.\n");
        api_no_content(a);
}

static void api_vm_create(ApiCall *a) {
        if (a->vmm->state != VM_STATE_NONE)
                return api_error(a, "The VM could not be created", "VM is already created");
        respond(a->conn, 501, chain_json("Error from API", "vm.create is not implemented by the cocoon test double",
                                         NULL),
                a->request->keep_alive);
}

static void api_not_implemented(ApiCall *a) {
        const char *name = strrchr(a->request->path, '/') + 1;
        _cleanup_free_ char *msg = xasprintf("%s is not implemented by the cocoon test double", name);

        respond(a->conn, 501, chain_json("Error from API", msg, NULL), a->request->keep_alive);
}

typedef enum EndpointKind {
        ENDPOINT_GET,
        ENDPOINT_PUT,      /* a body is an error */
        ENDPOINT_PUT_BODY, /* a JSON body is required */
} EndpointKind;

static const struct {
        const char *name;
        EndpointKind kind;
        void (*handler)(ApiCall *a);
} endpoints[] = {
        { "vmm.ping", ENDPOINT_GET, api_vmm_ping },
        { "vmm.shutdown", ENDPOINT_PUT, api_vmm_shutdown },
        { "vm.info", ENDPOINT_GET, api_vm_info },
        { "vm.counters", ENDPOINT_GET, api_vm_counters },
        { "vm.power-button", ENDPOINT_PUT, api_vm_power_button },
        { "vm.shutdown", ENDPOINT_PUT, api_vm_shutdown },
        { "vm.reboot", ENDPOINT_PUT, api_vm_reboot },
        { "vm.pause", ENDPOINT_PUT, api_vm_pause },
        { "vm.resume", ENDPOINT_PUT, api_vm_resume },
        { "vm.boot", ENDPOINT_PUT, api_vm_boot },
        { "vm.delete", ENDPOINT_PUT, api_vm_delete },
        { "vm.nmi", ENDPOINT_PUT, api_vm_nmi },
        { "vm.create", ENDPOINT_PUT_BODY, api_vm_create },
        { "vm.add-device", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-user-device", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-disk", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-fs", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-generic-vhost-user", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-net", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-pmem", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-vdpa", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.add-vsock", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.remove-device", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.resize", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.resize-disk", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.resize-zone", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.snapshot", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.restore", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.coredump", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.send-migration", ENDPOINT_PUT_BODY, api_not_implemented },
        { "vm.receive-migration", ENDPOINT_PUT_BODY, api_not_implemented },
};

/* Route a request the way CH's API server does: unknown path 404, a method the endpoint does not
 * take 400, a body where none belongs (or none where one is needed) 400, state errors 500. */
static void api_dispatch(Vmm *v, Conn *c, const ChHttpRequest *r) {
        const char *prefix = "/api/v1/";
        ApiCall a = { .vmm = v, .conn = c, .request = r };
        bool get = streq(r->method, "GET"), put = streq(r->method, "PUT");

        vmm_log(v, LEVEL_DEBUG, "API request %s %s", r->method, r->path);

        for (size_t i = 0; i < ELEMENTSOF(endpoints); i++) {
                json_error_t err;

                if (!strneq(r->path, prefix, strlen(prefix)) || !streq(r->path + strlen(prefix), endpoints[i].name))
                        continue;

                if (!get && !put)
                        return respond(c, 400, NULL, r->keep_alive);
                if (get != (endpoints[i].kind == ENDPOINT_GET) ||
                    (endpoints[i].kind == ENDPOINT_PUT && r->body) ||
                    (endpoints[i].kind == ENDPOINT_PUT_BODY && !r->body))
                        return respond(c, 400, chain_json("Bad Request", NULL), r->keep_alive);

                if (endpoints[i].kind == ENDPOINT_PUT_BODY) {
                        a.body = json_loadb(r->body, r->body_len, 0, &err);
                        if (!a.body)
                                return respond(c, 400, chain_json("Failed to deserialize JSON", err.text, NULL),
                                               r->keep_alive);
                }
                endpoints[i].handler(&a);
                json_decref(a.body);
                return;
        }

        respond(c, 404, chain_json("Not Found", NULL), r->keep_alive);
}

/* ---- connections ----------------------------------------------------------------------- */

static void conn_free(Conn *c) {
        safe_close(c->fd);
        free(c->in);
        free(c->out);
}

static void conn_drop(Vmm *v, size_t i) {
        conn_free(&v->conns[i]);
        v->conns[i] = v->conns[--v->n_conns];
}

static void accept_conn(Vmm *v) {
        int fd = accept4(v->api_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0)
                return;
        if (v->n_conns >= CONN_MAX) {
                vmm_log(v, LEVEL_WARN, "too many API connections, closing a new one");
                close(fd);
                return;
        }
        v->conns[v->n_conns++] = (Conn) { .fd = fd };
}

static void conn_process(Vmm *v, Conn *c) {
        while (c->in_len > 0 && !c->close_after_write) {
                ChHttpRequest r = {};
                bool expect_continue;
                int used = ch_http_parse_request(c->in, c->in_len, &r, &expect_continue);

                if (used == 0) {
                        if (expect_continue && !c->sent_continue) {
                                conn_queue(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                                c->sent_continue = true;
                        }
                        return;
                }
                if (used < 0) {
                        vmm_log(v, LEVEL_WARN, "malformed API request: %s", strerror(-used));
                        respond(c, used == -E2BIG ? 413 : 400, NULL, false);
                        return;
                }

                api_dispatch(v, c, &r);
                ch_http_request_done(&r);
                memmove(c->in, c->in + used, c->in_len - (size_t) used);
                c->in_len -= (size_t) used;
                c->sent_continue = false;
        }
}

/* Returns false when the connection is finished. */
static bool conn_read(Vmm *v, Conn *c) {
        char buf[16384];
        ssize_t k = read(c->fd, buf, sizeof(buf));

        if (k < 0)
                return errno == EAGAIN || errno == EINTR;
        if (k == 0)
                return false;

        c->in = xrealloc_array(c->in, c->in_len + (size_t) k, 1);
        memcpy(c->in + c->in_len, buf, (size_t) k);
        c->in_len += (size_t) k;
        conn_process(v, c);
        return true;
}

static bool conn_write(Conn *c) {
        ssize_t k = write(c->fd, c->out, c->out_len);

        if (k < 0)
                return errno == EAGAIN || errno == EINTR;
        memmove(c->out, c->out + k, c->out_len - (size_t) k);
        c->out_len -= (size_t) k;
        return !(c->out_len == 0 && c->close_after_write);
}

/* Before exiting, hand each client what is still queued for it. */
static void flush_conns(Vmm *v) {
        for (size_t i = 0; i < v->n_conns; i++) {
                Conn *c = &v->conns[i];
                int flags = fcntl(c->fd, F_GETFL);

                if (flags >= 0)
                        (void) fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
                while (c->out_len > 0 && conn_write(c))
                        ;
                conn_free(c);
        }
        v->n_conns = 0;
}

/* ---- start-up -------------------------------------------------------------------------- */

static int open_api_socket(Vmm *v, ChErrorChain *chain) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = v->config.api_socket_path;
        int fd, err;

        if (v->config.api_socket_fd >= 0) {
                v->api_fd = v->config.api_socket_fd;
                (void) fcntl(v->api_fd, F_SETFL, O_NONBLOCK);
                (void) listen(v->api_fd, 16);
                return 0;
        }
        if (!path)
                return 0;

        /* Like CH, do not replace an existing file: a stale socket is the caller's to remove. */
        if (strlen(path) >= sizeof(sa.sun_path)) {
                err = ENAMETOOLONG;
                goto fail;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
                err = errno;
                safe_close(fd);
                goto fail;
        }
        v->api_fd = fd;
        return 0;

fail:
        /* NOTE: the middle message is a guess at CH's wording; the outer one and the errno are CH's. */
        ch_chain_push(chain, "Failed to start the VMM thread");
        ch_chain_push(chain, "Error creating API server socket: %s", path);
        ch_chain_push(chain, "%s (os error %d)", strerror(err), err);
        return -err;
}

static int open_outputs(Vmm *v, ChErrorChain *chain) {
        if (v->config.log_file) {
                v->log = fopen(v->config.log_file, "we");
                if (!v->log) {
                        ch_chain_push(chain, "Error creating log file");
                        ch_chain_push(chain, "%s (os error %d)", strerror(errno), errno);
                        return -EIO;
                }
        }

        if (v->config.event_monitor_fd >= 0)
                v->event_fd = v->config.event_monitor_fd;
        else if (v->config.event_monitor_path) {
                v->event_fd = open(v->config.event_monitor_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (v->event_fd < 0) {
                        ch_chain_push(chain, "Error doing event monitor I/O");
                        ch_chain_push(chain, "%s (os error %d)", strerror(errno), errno);
                        return -EIO;
                }
        }
        return 0;
}

/* Create the console endpoints and boot. The boot log goes to the virtio console when it has a
 * host endpoint, else to the serial port. */
static int prepare_vm(Vmm *v, ChErrorChain *chain) {
        ChConsoleMode cm = v->config.console.mode;

        if (!v->config.has_vm)
                return 0;

        for (size_t i = 0; i < v->config.n_landlock_rules; i++)
                if (access(v->config.landlock_rules[i].path, F_OK) < 0) {
                        ch_chain_push(chain, "Error parsing config");
                        ch_chain_push(chain, "Error validating configuration");
                        ch_chain_push(chain, "Path \"%s\" provided in landlock-rules does not exist",
                                      v->config.landlock_rules[i].path);
                        return -ENOENT;
                }

        v->hostname = vm_guest_hostname(&v->config);
        if (console_open(&v->serial, &v->config.serial, "serial", chain) < 0 ||
            console_open(&v->console, &v->config.console, "console", chain) < 0)
                return -EIO;
        v->serial.hostname = v->console.hostname = v->hostname;
        v->guest_output = cm == CH_CONSOLE_TTY || cm == CH_CONSOLE_FILE || cm == CH_CONSOLE_PTY ||
                                          cm == CH_CONSOLE_SOCKET
                                  ? &v->console
                                  : &v->serial;

        v->state = VM_STATE_CREATED;
        return vm_boot(v, chain);
}

static int setup_signals(Vmm *v) {
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        v->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (v->signal_fd < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        return 0;
}

/* ---- main loop ------------------------------------------------------------------------- */

static void handle_signal(Vmm *v) {
        struct signalfd_siginfo si;

        while (read(v->signal_fd, &si, sizeof(si)) == sizeof(si)) {
                const char *name = si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT";

                if (si.ssi_signo == SIGTERM && v->knobs.hang_on_sigterm) {
                        fprintf(stderr, "cloud-hypervisor: ignoring SIGTERM (CH_DOUBLE_HANG_ON_SIGTERM=1)\n");
                        continue;
                }
                fprintf(stderr, "cloud-hypervisor: received %s, shutting down the VMM\n", name);
                vmm_event(v, "vmm", "shutdown");
                v->exiting = true;
        }
}

static int poll_timeout_ms(Vmm *v) {
        uint64_t now = now_usec(), next = UINT64_MAX;

        if (v->power_off_usec)
                next = MIN(next, v->power_off_usec);
        if (v->crash_usec)
                next = MIN(next, v->crash_usec);
        if (next == UINT64_MAX)
                return -1;
        return next <= now ? 0 : (int) DIV_ROUND_UP(next - now, 1000);
}

static void handle_timers(Vmm *v) {
        uint64_t now = now_usec();

        if (v->crash_usec && now >= v->crash_usec) {
                fprintf(stderr, "cloud-hypervisor: crashing on purpose (CH_DOUBLE_CRASH_AFTER)\n");
                abort();
        }
        if (v->power_off_usec && now >= v->power_off_usec) {
                guest_print(v, "reboot: Power down\n");
                vm_stop(v, VM_STATE_SHUTDOWN);
                vmm_log(v, LEVEL_INFO, "guest powered off, exiting");
                vmm_event(v, "vmm", "shutdown");
                v->exiting = true;
        }
}

static void accept_vsock(Vmm *v) {
        int fd = accept4(v->devices.vsock_fd, NULL, NULL, SOCK_CLOEXEC);

        /* No guest listens on any vsock port, so CH would close the connection as well. */
        if (fd >= 0)
                close(fd);
}

static void run_loop(Vmm *v) {
        enum { MAX_FDS = 4 + CONN_MAX + 2 * (CONSOLE_CLIENTS_MAX + 2) };

        while (!v->exiting) {
                struct pollfd pfds[MAX_FDS];
                size_t n = 0, first_conn, first_serial, n_serial, first_console, n_console;

                pfds[n++] = (struct pollfd) { .fd = v->signal_fd, .events = POLLIN };
                pfds[n++] = (struct pollfd) { .fd = v->api_fd, .events = v->api_fd >= 0 ? POLLIN : 0 };
                pfds[n++] = (struct pollfd) { .fd = v->devices.vsock_fd, .events = POLLIN };
                first_conn = n;
                for (size_t i = 0; i < v->n_conns; i++)
                        pfds[n++] = (struct pollfd) { .fd = v->conns[i].fd,
                                                      .events = POLLIN | (v->conns[i].out_len ? POLLOUT : 0) };
                first_serial = n;
                n_serial = console_fill_pollfds(&v->serial, pfds + n);
                n += n_serial;
                first_console = n;
                n_console = console_fill_pollfds(&v->console, pfds + n);
                n += n_console;

                if (poll(pfds, n, poll_timeout_ms(v)) < 0 && errno != EINTR) {
                        vmm_log(v, LEVEL_ERROR, "poll() failed: %s", strerror(errno));
                        return;
                }

                if (pfds[0].revents)
                        handle_signal(v);
                if (pfds[1].revents)
                        accept_conn(v);
                if (pfds[2].revents && v->devices.vsock_fd >= 0)
                        accept_vsock(v);

                /* Walk backwards: conn_drop() moves the last connection into the freed slot. */
                for (size_t i = v->n_conns; i-- > 0;) {
                        short re = first_conn + i < first_serial ? pfds[first_conn + i].revents : 0;
                        bool alive = true;

                        if (re & (POLLIN | POLLHUP | POLLERR))
                                alive = conn_read(v, &v->conns[i]);
                        if (alive && v->conns[i].out_len > 0)
                                alive = conn_write(&v->conns[i]);
                        if (!alive)
                                conn_drop(v, i);
                }

                console_dispatch(&v->serial, pfds + first_serial, n_serial);
                console_dispatch(&v->console, pfds + first_console, n_console);
                handle_timers(v);
        }
}

static int run(Vmm *v) {
        ChErrorChain chain = {};
        int r;

        /* Like CH: files and sockets it creates are for its own user only. */
        umask(0077);

        r = setup_signals(v);
        if (r < 0) {
                fprintf(stderr, "cloud-hypervisor: failed to set up signal handling: %s\n", strerror(-r));
                return CH_EXIT_FAILURE;
        }

        if (open_outputs(v, &chain) < 0)
                goto fail;
        vmm_event(v, "vmm", "starting");
        if (prepare_vm(v, &chain) < 0)
                goto fail;

        if (v->knobs.boot_delay_ms > 0)
                usleep(v->knobs.boot_delay_ms * 1000u);
        if (open_api_socket(v, &chain) < 0)
                goto fail;

        if (v->knobs.crash_after_usec)
                v->crash_usec = now_usec() + v->knobs.crash_after_usec;
        run_loop(v);

        flush_conns(v);
        return 0;

fail:
        ch_chain_print(&chain);
        ch_chain_clear(&chain);
        return CH_EXIT_FAILURE;
}

static void vmm_done(Vmm *v) {
        flush_conns(v);
        if (v->api_fd >= 0 && v->config.api_socket_path && v->config.api_socket_fd < 0)
                (void) unlink(v->config.api_socket_path);
        safe_close(v->api_fd);
        safe_close(v->signal_fd);
        if (v->event_fd >= 0 && v->event_fd != v->config.event_monitor_fd)
                close(v->event_fd);
        vm_devices_close(&v->devices);
        console_close(&v->serial);
        console_close(&v->console);
        if (v->log)
                fclose(v->log);
        free(v->hostname);
        ch_config_done(&v->config);
}

int main(int argc, char **argv) {
        Vmm v = { .api_fd = -1, .signal_fd = -1, .event_fd = -1, .devices = VM_DEVICES_INIT };
        _cleanup_free_ char *message = NULL;
        ChErrorChain chain = {};
        int r;

        v.start_usec = now_usec();
        v.serial = v.console = (Console) { .out_fd = -1, .pty_master_fd = -1, .pty_slave_fd = -1, .listen_fd = -1 };

        if (record_argv(argc, argv) < 0 || parse_knobs(&v.knobs) < 0)
                return CH_EXIT_FAILURE;

        if (argc <= 1) {
                /* clap's arg_required_else_help: usage on stderr, exit 2 */
                (void) dup2(STDERR_FILENO, STDOUT_FILENO);
                ch_config_print_help();
                return CH_EXIT_USAGE;
        }

        r = ch_config_parse(argc, argv, &v.config, &message, &chain);
        if (r != 0) {
                if (message)
                        fputs(message, stderr);
                else
                        ch_chain_print(&chain);
                ch_chain_clear(&chain);
                ch_config_done(&v.config);
                return r;
        }

        if (v.config.show_help || v.config.show_version) {
                if (v.config.show_help)
                        ch_config_print_help();
                else
                        printf("%s\n", VERSION_LINE);
                ch_config_done(&v.config);
                return 0;
        }

        r = run(&v);
        vmm_done(&v);
        return r;
}
