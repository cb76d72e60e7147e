/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "commands.h"
#include "console-escape.h"
#include "console-relay.h"
#include "error.h"
#include "hypervisor.h"
#include "strv.h"
#include "vm-common.h"

/* How long the relay gets to reply to the HELLO. */
#define STATUS_TIMEOUT_MS 5000

static char arg_escape = CONSOLE_ESCAPE_DEFAULT;
static bool arg_read_only = false;

enum { ARG_ESCAPE_CHAR = 'e', ARG_READ_ONLY = 0x100 };

static const CliOption options[] = {
        { "escape-char", 'e', "C", "escape character, a character or caret notation such as ^] (default ~)", ARG_ESCAPE_CHAR },
        { "read-only", 0, NULL, "watch the console without typing, also while another client is attached", ARG_READ_ONLY },
        {},
};

static int parse_option(int id, const char *arg) {
        switch (id) {
        case ARG_ESCAPE_CHAR:
                return console_escape_parse(arg, &arg_escape);
        case ARG_READ_ONLY:
                arg_read_only = true;
                return 0;
        }
        return -EINVAL;
}

/* A session: the local terminal and the connection to the console. relay is true for the
 * relay's message protocol and false for a plain byte stream straight to the VMM. */
typedef struct Session {
        const char *name;
        int fd;
        bool relay;
        bool read_only;
        ConsoleEscape escape;
        struct termios saved;
        bool raw;
} Session;

static void session_restore_terminal(Session *s) {
        if (s->raw)
                (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &s->saved);
        s->raw = false;
}

static int connect_unix(const char *path, int type, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;

        if (strlen(path) >= sizeof(sa.sun_path))
                return error_set(-ENAMETOOLONG, "socket path '%s' is too long", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        *ret = TAKE_FD(fd);
        return 0;
}

static int busy_error(const Vm *vm) {
        return error_set(-EBUSY, "console of VM '%s' is in use by another client; use --read-only "
                                 "to watch", vm->name);
}

/* Attach through the relay of the unit: HELLO, then wait for its STATUS. */
static int attach_relay(const Vm *vm, bool read_only, int *ret) {
        _cleanup_free_ char *path = strjoin(vm->run_dir, "/" CONSOLE_RELAY_SOCKET_NAME, NULL);
        _cleanup_close_ int fd = -EBADF;
        char hello[2] = { CONSOLE_MESSAGE_HELLO, read_only ? CONSOLE_MODE_READ_ONLY : CONSOLE_MODE_INTERACTIVE };
        char status[2];
        struct pollfd p;
        int r;

        if (!path)
                return -ENOMEM;
        r = connect_unix(path, SOCK_SEQPACKET, &fd);
        if (r == -ENOENT || r == -ECONNREFUSED)
                return error_set(r, "the console relay of VM '%s' is not running; see 'cocoon vm "
                                    "logs %s' for why", vm->name, vm->name);
        if (r < 0)
                return error_set_default(r, "cannot connect to '%s': %s", path, strerror(-r));

        if (send(fd, hello, sizeof(hello), MSG_NOSIGNAL) < 0)
                return error_set(-errno, "cannot talk to the console relay: %m");
        p = (struct pollfd) { .fd = fd, .events = POLLIN };
        r = poll(&p, 1, STATUS_TIMEOUT_MS);
        if (r == 0)
                return error_set(-ETIMEDOUT, "the console relay did not answer within %d s",
                                 STATUS_TIMEOUT_MS / 1000);
        if (r < 0 || recv(fd, status, sizeof(status), 0) != 2 || status[0] != CONSOLE_MESSAGE_STATUS)
                return error_set(-EPROTO, "invalid answer from the console relay");
        if (status[1] == CONSOLE_STATUS_BUSY)
                return busy_error(vm);

        *ret = TAKE_FD(fd);
        return 0;
}

/* Attach to a VMM that serves its console itself (a stream socket with room for one client).
 * A lock on <run_dir>/console.lock, held while attached, shows a second client that the console
 * is busy. */
static int attach_direct(const Vm *vm, const HypervisorOps *ops, int *ret_fd, int *ret_lock) {
        _cleanup_free_ char *endpoint = NULL, *lock_path = strjoin(vm->run_dir, "/console.lock", NULL);
        _cleanup_close_ int fd = -EBADF, lock = -EBADF;
        int r;

        if (!lock_path)
                return -ENOMEM;
        r = ops->console_endpoint(vm, &endpoint);
        if (r < 0)
                return error_set_default(r, "no console endpoint: %s", strerror(-r));

        lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (lock < 0)
                return error_set(-errno, "cannot open '%s': %m", lock_path);
        if (flock(lock, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? busy_error(vm) : error_set(-errno, "cannot lock '%s': %m", lock_path);

        r = connect_unix(endpoint, SOCK_STREAM, &fd);
        if (r < 0)
                return error_set_default(r, "cannot connect to the console socket '%s': %s", endpoint,
                                         strerror(-r));

        *ret_fd = TAKE_FD(fd);
        *ret_lock = TAKE_FD(lock);
        return 0;
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static void send_window_size(Session *s) {
        char buf[1 + sizeof(struct winsize)] = { CONSOLE_MESSAGE_WINSIZE };
        struct winsize ws;

        if (!s->relay || s->read_only || ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0)
                return;
        memcpy(buf + 1, &ws, sizeof(ws));
        (void) send(s->fd, buf, sizeof(buf), MSG_NOSIGNAL);
}

static int send_input(Session *s, const char *p, size_t n) {
        char buf[CONSOLE_MESSAGE_MAX];

        if (n == 0 || s->read_only)
                return 0;
        if (!s->relay)
                return write_all(s->fd, p, n);
        buf[0] = CONSOLE_MESSAGE_DATA;
        memcpy(buf + 1, p, n);
        return send(s->fd, buf, n + 1, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void print_help(const Session *s) {
        char name[3];
        const char *e = console_escape_name(s->escape.escape, name);

        /* The terminal is raw: every line ends in CR LF. */
        fprintf(stderr, "\r\nEscape sequences, recognized at the start of a line:\r\n"
                        "  %s.  disconnect\r\n"
                        "  %s?  show this help\r\n"
                        "  %s%s  send %s itself\r\n", e, e, e, e, e);
}

/* Handle typed bytes. Returns 1 when the user asked to disconnect. */
static int handle_input(Session *s, const char *in, size_t n) {
        char out[2 * 1024];
        size_t k = 0;
        int r;

        for (size_t i = 0; i < n; i++) {
                size_t m;
                ConsoleEscapeAction a = console_escape_feed(&s->escape, in[i], out + k, &m);

                k += m;
                if (a == CONSOLE_ESCAPE_FORWARD)
                        continue;
                r = send_input(s, out, k);
                if (r < 0)
                        return r;
                k = 0;
                if (a == CONSOLE_ESCAPE_DISCONNECT)
                        return 1;
                print_help(s);
        }
        return send_input(s, out, k);
}

/* Copy console output to stdout. Returns 1 when the console closed. */
static int handle_output(Session *s) {
        char buf[CONSOLE_MESSAGE_MAX];
        ssize_t k = s->relay ? recv(s->fd, buf, sizeof(buf), 0) : read(s->fd, buf, sizeof(buf));

        if (k < 0)
                return errno == EINTR || errno == EAGAIN ? 0 : -errno;
        if (k == 0)
                return 1;
        if (!s->relay)
                return write_all(STDOUT_FILENO, buf, (size_t) k);
        if (buf[0] != CONSOLE_MESSAGE_DATA)
                return 0;
        return write_all(STDOUT_FILENO, buf + 1, (size_t) k - 1);
}

static int session_loop(Session *s, int signal_fd) {
        for (;;) {
                struct pollfd p[3] = {
                        { .fd = STDIN_FILENO, .events = POLLIN },
                        { .fd = s->fd, .events = POLLIN },
                        { .fd = signal_fd, .events = POLLIN },
                };
                int r;

                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }

                if (p[2].revents) {
                        struct signalfd_siginfo si;

                        if (read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
                                if (si.ssi_signo != SIGWINCH)
                                        return 0;
                                send_window_size(s);
                        }
                }
                if (p[1].revents) {
                        r = handle_output(s);
                        if (r != 0)
                                return r > 0 ? 0 : r;
                }
                if (p[0].revents) {
                        char buf[1024];
                        ssize_t k = read(STDIN_FILENO, buf, sizeof(buf));

                        /* A closed terminal ends the session like "~.". */
                        if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
                                return 0;
                        if (k > 0) {
                                r = handle_input(s, buf, (size_t) k);
                                if (r != 0)
                                        return r > 0 ? 0 : r;
                        }
                }
        }
}

static int check_running(const Vm *vm) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(unit_state_done) UnitState state = {};
        _cleanup_free_ char *unit = vm_unit_name(vm->name);
        int r;

        if (!unit)
                return -ENOMEM;
        r = unit_bus_open(&bus);
        if (r >= 0)
                r = unit_get_state(bus, unit, &state);
        if (r < 0)
                return r;
        if (lifecycle_effective_state(vm, state.active_state) != VM_RUNNING)
                return error_set(-ESRCH, "VM '%s' is not running", vm->name);
        return 0;
}

static int attach(const Vm *vm, Session *s, int *ret_lock) {
        const HypervisorOps *ops = hypervisor_ops(vm->hypervisor);
        int r;

        if (!ops)
                return error_set(-EOPNOTSUPP, "the %s backend is not available in this build",
                                 hypervisor_type_to_string(vm->hypervisor));
        if (!ops->console_endpoint)
                return error_set(-EOPNOTSUPP, "the %s backend has no console",
                                 hypervisor_type_to_string(vm->hypervisor));
        r = check_running(vm);
        if (r < 0)
                return r;
        if (!isatty(STDIN_FILENO))
                return error_set(-ENOTTY, "stdin is not a terminal");

        s->relay = ops->console_needs_relay;
        if (s->relay)
                return attach_relay(vm, s->read_only, &s->fd);
        if (s->read_only)
                return error_set(-EOPNOTSUPP, "the %s backend serves one console client only; "
                                              "use 'cocoon vm logs -f %s' to watch",
                                 hypervisor_type_to_string(vm->hypervisor), vm->name);
        return attach_direct(vm, ops, &s->fd, ret_lock);
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_(vm_freep) Vm *vm = NULL;
        _cleanup_close_ int lock = -EBADF, signal_fd = -EBADF;
        Session s = { .fd = -EBADF, .read_only = arg_read_only };
        struct termios raw;
        sigset_t mask;
        char name[3];
        int r;

        r = store_open(config->root_dir, &store);
        if (r < 0) {
                log_error("Failed to attach to VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        vm = vm_resolve_or_log(store, argv[0], "attach to");
        if (!vm)
                return EXIT_FAILURE;

        r = attach(vm, &s, &lock);
        if (r < 0) {
                log_error("Failed to attach to VM '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }

        /* Signals arrive through a file descriptor, so that every way out passes the terminal
         * restore below. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGQUIT);
        sigaddset(&mask, SIGWINCH);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
            (signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0 ||
            tcgetattr(STDIN_FILENO, &s.saved) < 0) {
                log_error("Failed to attach to VM '%s': cannot set up the terminal: %m", argv[0]);
                safe_close(s.fd);
                return EXIT_FAILURE;
        }

        raw = s.saved;
        cfmakeraw(&raw);
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0) {
                log_error("Failed to attach to VM '%s': cannot make the terminal raw: %m", argv[0]);
                safe_close(s.fd);
                return EXIT_FAILURE;
        }
        s.raw = true;
        /* After the switch to raw mode, so that a client (or test) seeing the banner can type. */
        fprintf(stderr, "Connected to VM %s%s (escape character: %s, %s? for help)\r\n", vm->name,
                s.read_only ? " read-only" : "", console_escape_name(arg_escape, name), name);
        s.name = vm->name;
        console_escape_init(&s.escape, arg_escape);

        send_window_size(&s);
        r = session_loop(&s, signal_fd);

        session_restore_terminal(&s);
        safe_close(s.fd);
        fprintf(stderr, "\nDisconnected from VM %s.\n", vm->name);
        if (r < 0) {
                log_error("Console of VM '%s' failed: %s", vm->name, strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

const CliCommand cmd_vm_console = {
        .group = "vm",
        .name = "console",
        .args = "VM",
        .summary = "Attach the terminal to a VM's console",
        .description = "Type on the guest's console (hvc0 for direct kernel boot, ttyS0 for UEFI) while\n"
                       "its output keeps going to the journal. One client types at a time; more may\n"
                       "watch with --read-only. At the start of a line, ~. disconnects, ~? shows the\n"
                       "escape sequences and ~~ sends a ~.",
        .options = options,
        .min_args = 1,
        .max_args = 1,
        .parse_option = parse_option,
        .run = run,
};
