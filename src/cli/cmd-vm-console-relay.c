/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "commands.h"
#include "console-relay.h"
#include "error.h"
#include "hypervisor.h"
#include "strv.h"
#include "vm-common.h"
#include "vm-store.h"

/* SYSLOG_IDENTIFIER of the guest's output in the unit's journal, which distinguishes it from the
 * hypervisor's own messages: journalctl -u cocoon-vm@NAME -t guest. */
#define GUEST_IDENTIFIER "guest"

#define RELAY_CLIENTS_MAX 16
#define RELAY_INPUT_MAX (64 * 1024)
/* How long the relay waits for the VMM to report its console endpoint, and how long
 * ExecStartPost= waits for the relay to attach, so that `vm start` returns with a console. */
#define ENDPOINT_TIMEOUT_MS 30000
#define ENDPOINT_INTERVAL_MS 50
#define ATTACH_TIMEOUT_MS 35000

typedef struct RelayClient {
        int fd;
        bool greeted;       /* HELLO received and attached */
        bool interactive;
} RelayClient;

typedef struct Relay {
        const Vm *vm;
        int listen_fd;
        int endpoint_fd;
        bool endpoint_is_tty;
        int journal_fd;
        bool journal_failed;
        bool pending_cr;
        int signal_fd;
        int vmm_pidfd;
        RelayClient clients[RELAY_CLIENTS_MAX];
        size_t n_clients;
        char input[RELAY_INPUT_MAX]; /* typed input the VMM has not taken yet */
        size_t input_len;
} Relay;

static int parse_option(int id, const char *arg) {
        return -EINVAL;
}

static long elapsed_ms(const struct timespec *start) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

static int listen_console(const char *path, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;

        if (strlen(path) >= sizeof(sa.sun_path))
                return error_set(-ENAMETOOLONG, "socket path '%s' is too long", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return error_set(-errno, "cannot create a socket: %m");
        (void) unlink(path);
        /* Only root may attach: the console is a root shell on many guests. */
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
            listen(fd, 8) < 0)
                return error_set(-errno, "cannot listen on '%s': %m", path);

        *ret = TAKE_FD(fd);
        return 0;
}

/* Query the backend for the endpoint until it returns one, the VMM exits or the time is up. */
static int wait_endpoint(Relay *relay, char **ret) {
        const HypervisorOps *ops = hypervisor_ops(relay->vm->hypervisor);
        struct timespec start;
        int r;

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct pollfd p = { .fd = relay->vmm_pidfd, .events = POLLIN };

                error_clear();
                r = ops->console_endpoint(relay->vm, ret);
                if (r >= 0 || r == -EOPNOTSUPP || r == -EBADMSG)
                        return r;
                if (elapsed_ms(&start) > ENDPOINT_TIMEOUT_MS)
                        return error_prefix(r, "no console endpoint within %d s",
                                            ENDPOINT_TIMEOUT_MS / 1000);
                if (relay->vmm_pidfd >= 0 && poll(&p, 1, 0) > 0)
                        return error_set(-ESRCH, "the hypervisor exited before its console was ready");
                nanosleep(&(struct timespec) { .tv_nsec = ENDPOINT_INTERVAL_MS * 1000000L }, NULL);
        }
}

static int open_endpoint(Relay *relay, const char *path) {
        struct stat st;
        int fd;

        if (stat(path, &st) < 0)
                return error_set(-errno, "cannot access the console endpoint '%s': %m", path);

        if (S_ISCHR(st.st_mode)) {
                struct termios t;

                fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
                if (fd < 0)
                        return error_set(-errno, "cannot open the console PTY '%s': %m", path);
                /* Raw, so that the PTY neither echoes the guest's output back as input nor
                 * rewrites line endings. Cloud Hypervisor sets this too. */
                if (tcgetattr(fd, &t) >= 0) {
                        cfmakeraw(&t);
                        (void) tcsetattr(fd, TCSANOW, &t);
                }
                relay->endpoint_is_tty = true;
        } else if (S_ISSOCK(st.st_mode)) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                if (strlen(path) >= sizeof(sa.sun_path))
                        return error_set(-ENAMETOOLONG, "socket path '%s' is too long", path);
                strcpy(sa.sun_path, path);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return error_set(-errno, "cannot create a socket: %m");
                if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
                        int r = error_set(-errno, "cannot connect to the console socket '%s': %m", path);

                        close(fd);
                        return r;
                }
        } else
                return error_set(-EINVAL, "console endpoint '%s' is neither a PTY nor a socket", path);

        relay->endpoint_fd = fd;
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

/* Send output to the journal as lines. The guest's tty ends lines with CRLF: a CR right before
 * LF is dropped, any other CR is kept. journald splits the stream at LF. */
static void journal_output(Relay *relay, const char *buf, size_t n) {
        char out[2 * CONSOLE_MESSAGE_MAX];
        size_t k = 0;
        int r;

        for (size_t i = 0; i < n; i++) {
                if (relay->pending_cr) {
                        relay->pending_cr = false;
                        if (buf[i] != '\n')
                                out[k++] = '\r';
                }
                if (buf[i] == '\r')
                        relay->pending_cr = true;
                else
                        out[k++] = buf[i];
        }

        r = relay->journal_fd >= 0 ? write_all(relay->journal_fd, out, k) : -EPIPE;
        if (r < 0) {
                /* journald was restarted: connect again once per failure. */
                relay->journal_fd = safe_close(relay->journal_fd);
                relay->journal_fd = sd_journal_stream_fd(GUEST_IDENTIFIER, LOG_INFO, false);
                r = relay->journal_fd >= 0 ? write_all(relay->journal_fd, out, k) : relay->journal_fd;
        }
        if (r < 0 && !relay->journal_failed)
                log_warning("Console relay of VM %s cannot write to the journal, guest output is "
                            "not logged: %s", relay->vm->name, strerror(-r));
        relay->journal_failed = r < 0;
}

static void drop_client(Relay *relay, size_t i) {
        close(relay->clients[i].fd);
        relay->clients[i] = relay->clients[--relay->n_clients];
}

static int send_message(int fd, char type, const void *data, size_t n) {
        char buf[CONSOLE_MESSAGE_MAX];

        buf[0] = type;
        memcpy(buf + 1, data, n);
        return send(fd, buf, n + 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void broadcast(Relay *relay, const char *buf, size_t n) {
        for (size_t i = 0; i < relay->n_clients;) {
                if (!relay->clients[i].greeted) {
                        i++;
                        continue;
                }
                /* Sends never block (MSG_DONTWAIT), so the journal keeps up with the guest. A client
                 * whose socket buffer is full has stopped reading. */
                if (send_message(relay->clients[i].fd, CONSOLE_MESSAGE_DATA, buf, n) < 0) {
                        log_warning("Console relay of VM %s dropped a client that stopped reading.",
                                    relay->vm->name);
                        drop_client(relay, i);
                        continue;
                }
                i++;
        }
}

/* Returns false when the VMM closed the console. */
static bool read_endpoint(Relay *relay) {
        char buf[CONSOLE_MESSAGE_MAX - 1];

        for (;;) {
                ssize_t k = read(relay->endpoint_fd, buf, sizeof(buf));

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN)
                        return true;
                /* A PTY reports EIO once the VMM's side is closed. */
                if (k <= 0)
                        return false;
                journal_output(relay, buf, (size_t) k);
                broadcast(relay, buf, (size_t) k);
        }
}

static void flush_input(Relay *relay) {
        ssize_t k = write(relay->endpoint_fd, relay->input, relay->input_len);

        if (k <= 0)
                return;
        memmove(relay->input, relay->input + k, relay->input_len - (size_t) k);
        relay->input_len -= (size_t) k;
}

static bool has_interactive(const Relay *relay) {
        for (size_t i = 0; i < relay->n_clients; i++)
                if (relay->clients[i].interactive)
                        return true;
        return false;
}

static void greet(Relay *relay, RelayClient *c, char mode) {
        char status = CONSOLE_STATUS_ATTACHED;

        if (mode == CONSOLE_MODE_INTERACTIVE && has_interactive(relay))
                status = CONSOLE_STATUS_BUSY;
        else
                c->interactive = mode == CONSOLE_MODE_INTERACTIVE;
        (void) send_message(c->fd, CONSOLE_MESSAGE_STATUS, &status, 1);
        c->greeted = status == CONSOLE_STATUS_ATTACHED;
}

/* Returns false when the client is to be dropped. */
static bool read_client(Relay *relay, RelayClient *c) {
        char buf[CONSOLE_MESSAGE_MAX];
        ssize_t k = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (k < 0)
                return errno == EAGAIN || errno == EINTR;
        if (k == 0)
                return false;

        if (!c->greeted) {
                if (buf[0] != CONSOLE_MESSAGE_HELLO || k != 2)
                        return false;
                greet(relay, c, buf[1]);
                /* A busy reply ends the connection. */
                return c->greeted;
        }

        if (!c->interactive)
                return true;
        if (buf[0] == CONSOLE_MESSAGE_DATA) {
                size_t n = MIN((size_t) k - 1, sizeof(relay->input) - relay->input_len);

                memcpy(relay->input + relay->input_len, buf + 1, n);
                relay->input_len += n;
                flush_input(relay);
        } else if (buf[0] == CONSOLE_MESSAGE_WINSIZE && k == 1 + (ssize_t) sizeof(struct winsize) &&
                   relay->endpoint_is_tty) {
                struct winsize ws;

                /* The VMM learns the new size from the SIGWINCH the kernel sends to the PTY's
                 * foreground process group, and passes it on to the guest. */
                memcpy(&ws, buf + 1, sizeof(ws));
                (void) ioctl(relay->endpoint_fd, TIOCSWINSZ, &ws);
        }
        return true;
}

static void accept_client(Relay *relay) {
        int fd = accept4(relay->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0)
                return;
        if (relay->n_clients >= RELAY_CLIENTS_MAX) {
                log_warning("Console relay of VM %s rejected a client: %d clients are attached.",
                            relay->vm->name, RELAY_CLIENTS_MAX);
                close(fd);
                return;
        }
        relay->clients[relay->n_clients++] = (RelayClient) { .fd = fd };
}

enum { POLL_SIGNAL, POLL_ENDPOINT, POLL_LISTEN, POLL_VMM, _POLL_FIXED };

static int relay_loop(Relay *relay) {
        for (;;) {
                struct pollfd p[_POLL_FIXED + RELAY_CLIENTS_MAX];
                size_t n_clients = relay->n_clients;
                bool backlog = relay->input_len > 0;

                p[POLL_SIGNAL] = (struct pollfd) { .fd = relay->signal_fd, .events = POLLIN };
                p[POLL_ENDPOINT] = (struct pollfd) { .fd = relay->endpoint_fd,
                                                     .events = POLLIN | (backlog ? POLLOUT : 0) };
                p[POLL_LISTEN] = (struct pollfd) { .fd = relay->listen_fd, .events = POLLIN };
                p[POLL_VMM] = (struct pollfd) { .fd = relay->vmm_pidfd, .events = POLLIN };
                /* While typed input waits for the VMM, take no more from the typing client. */
                for (size_t i = 0; i < n_clients; i++)
                        p[_POLL_FIXED + i] = (struct pollfd) {
                                .fd = relay->clients[i].fd,
                                .events = backlog && relay->clients[i].interactive ? 0 : POLLIN,
                        };

                if (poll(p, _POLL_FIXED + n_clients, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return error_set(-errno, "poll failed: %m");
                }

                if (p[POLL_ENDPOINT].revents & POLLOUT)
                        flush_input(relay);
                if (p[POLL_ENDPOINT].revents & (POLLIN | POLLHUP | POLLERR) && !read_endpoint(relay))
                        return 0;
                /* The VMM exited: take what it wrote last, then stop. */
                if (p[POLL_VMM].revents) {
                        (void) read_endpoint(relay);
                        return 0;
                }
                if (p[POLL_SIGNAL].revents) {
                        (void) read_endpoint(relay);
                        return 0;
                }

                /* Walk backwards, so that dropping a client (which moves the last one into its
                 * slot) does not skip one. Clients accepted below are polled next time. */
                for (size_t i = n_clients; i-- > 0;)
                        if (p[_POLL_FIXED + i].revents && !read_client(relay, &relay->clients[i]))
                                drop_client(relay, i);
                if (p[POLL_LISTEN].revents)
                        accept_client(relay);
        }
}

static int open_vmm_pidfd(void) {
        const char *pid = getenv("MAINPID");
        int fd;

        if (!pid || atoi(pid) <= 0)
                return -EBADF;
        fd = (int) syscall(SYS_pidfd_open, (pid_t) atoi(pid), 0);
        if (fd < 0 && errno == ESRCH)
                return -ESRCH;  /* the VMM is gone already: nothing to relay */
        return fd >= 0 ? fd : -EBADF;
}

static int open_signal_fd(void) {
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        return signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

static void relay_done(Relay *relay) {
        for (size_t i = 0; i < relay->n_clients; i++)
                close(relay->clients[i].fd);
        safe_close(relay->listen_fd);
        safe_close(relay->endpoint_fd);
        safe_close(relay->journal_fd);
        safe_close(relay->signal_fd);
        safe_close(relay->vmm_pidfd);
}

/* Attach to the endpoint and serve clients until the VMM goes away. ready_fd gets one byte once
 * the socket is served, and is closed in any case. */
static int relay_run(const Vm *vm, int ready_fd) {
        _cleanup_free_ char *socket_path = strjoin(vm->run_dir, "/" CONSOLE_RELAY_SOCKET_NAME, NULL);
        _cleanup_free_ char *endpoint = NULL;
        Relay relay = {
                .vm = vm,
                .listen_fd = -EBADF,
                .endpoint_fd = -EBADF,
                .journal_fd = -EBADF,
                .signal_fd = -EBADF,
                .vmm_pidfd = open_vmm_pidfd(),
        };
        int r;

        if (!socket_path)
                r = -ENOMEM;
        else if (relay.vmm_pidfd == -ESRCH)
                r = error_set(-ESRCH, "the hypervisor exited before its console was ready");
        else if ((relay.signal_fd = open_signal_fd()) < 0)
                r = error_set(relay.signal_fd, "cannot block signals: %s", strerror(-relay.signal_fd));
        else if ((r = wait_endpoint(&relay, &endpoint)) >= 0 && (r = open_endpoint(&relay, endpoint)) >= 0)
                r = listen_console(socket_path, &relay.listen_fd);
        if (r >= 0) {
                relay.journal_fd = sd_journal_stream_fd(GUEST_IDENTIFIER, LOG_INFO, false);
                if (relay.journal_fd < 0)
                        log_warning("Console relay of VM %s cannot connect to the journal, guest "
                                    "output is not logged: %s", vm->name, strerror(-relay.journal_fd));
                log_info("Console relay of VM %s attached to %s, serving %s.", vm->name, endpoint,
                         socket_path);
                (void) write(ready_fd, "1", 1);
        }
        safe_close(ready_fd);

        if (r >= 0)
                r = relay_loop(&relay);
        if (socket_path && relay.listen_fd >= 0)
                (void) unlink(socket_path);
        relay_done(&relay);
        return r;
}

/* Wait until the child relay has attached, so that the console works once `vm start` returns.
 * The relay's own messages explain a failure. */
static int wait_attached(int ready_fd) {
        struct pollfd p = { .fd = ready_fd, .events = POLLIN };
        char c;

        while (poll(&p, 1, ATTACH_TIMEOUT_MS) < 0 && errno == EINTR)
                ;
        return read(ready_fd, &c, 1) == 1 ? 0 : -EIO;
}

/* ExecStartPost= of units whose backend needs a relay: fork a relay that stays in the unit's
 * cgroup (no daemon of its own) and ends when the VMM closes the console or the unit stops. */
static int run(const Config *config, int argc, char **argv) {
        _cleanup_(vm_command_context_done) VmCommandContext ctx = {};
        _cleanup_(vm_freep) Vm *vm = NULL;
        int pipe_fds[2], r;
        pid_t pid;

        r = vm_command_context_init(config, &ctx);
        if (r >= 0)
                r = vm_store_load(ctx.store, argv[0], &vm);
        if (r >= 0 && (!hypervisor_ops(vm->hypervisor) || !hypervisor_ops(vm->hypervisor)->console_endpoint))
                r = error_set(-EOPNOTSUPP, "the %s backend has no console in this build",
                              hypervisor_type_to_string(vm->hypervisor));
        if (r < 0) {
                log_error("Failed to start the console relay of VM %s: %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }

        if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
                log_error("Failed to start the console relay of VM %s: %m", vm->name);
                return EXIT_FAILURE;
        }

        pid = fork();
        if (pid < 0) {
                log_error("Failed to start the console relay of VM %s: %m", vm->name);
                return EXIT_FAILURE;
        }
        if (pid == 0) {
                close(pipe_fds[0]);
                /* systemd waits for ExecStartPost= only, not for its children. */
                (void) setsid();
                r = relay_run(vm, pipe_fds[1]);
                if (r < 0) {
                        log_error("Console relay of VM %s failed, the guest runs on without a "
                                  "console: %s", vm->name, error_message(r));
                        _exit(EXIT_FAILURE);
                }
                log_info("Console relay of VM %s stopped.", vm->name);
                _exit(EXIT_SUCCESS);
        }

        close(pipe_fds[1]);
        r = wait_attached(pipe_fds[0]);
        close(pipe_fds[0]);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

const CliCommand cmd_vm_console_relay = {
        .group = "vm",
        .name = "console-relay",
        .args = "ID",
        .summary = "Copy a VM's console to the journal and serve 'vm console' (ExecStartPost= of its unit)",
        .min_args = 1,
        .max_args = 1,
        .hidden = true,
        .parse_option = parse_option,
        .run = run,
};
