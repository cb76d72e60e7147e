/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "ch-console.h"
#include "ch-util.h"

static int console_error(ChErrorChain *chain, const char *what, const char *path, int err) {
        ch_chain_push(chain, "Error booting VM");
        ch_chain_push(chain, "The VM could not boot");
        ch_chain_push(chain, "Error from device manager");
        ch_chain_push(chain, "Error creating %s output: %s", what, path);
        ch_chain_push(chain, "%s (os error %d)", strerror(err), err);
        return -err;
}

static int open_pty(Console *c, ChErrorChain *chain) {
        struct termios t;
        const char *name;
        int master, slave;

        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || !(name = ptsname(master))) {
                int err = errno;

                safe_close(master);
                return console_error(chain, c->what, "/dev/ptmx", err);
        }

        /* Keep the slave open ourselves so that the master does not report a hang-up while no
         * client is attached, and make it raw: the pretend guest does its own line handling. */
        slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
                int err = errno;

                close(master);
                return console_error(chain, c->what, name, err);
        }
        if (tcgetattr(slave, &t) >= 0) {
                cfmakeraw(&t);
                (void) tcsetattr(slave, TCSANOW, &t);
        }

        free_and_replace_str(&c->config->file, name);
        c->pty_master_fd = master;
        c->pty_slave_fd = slave;
        c->clients[0] = (ConsoleClient) { .fd = master };
        c->n_clients = 1;
        return 0;
}

static int open_socket(Console *c, ChErrorChain *chain) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = c->config->socket;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return console_error(chain, c->what, path, ENAMETOOLONG);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
                int err = errno;

                safe_close(fd);
                return console_error(chain, c->what, path, err);
        }

        c->listen_fd = fd;
        return 0;
}

int console_open(Console *c, ChConsoleConfig *config, const char *what, ChErrorChain *chain) {
        *c = (Console) { .config = config, .what = what, .out_fd = -1, .pty_master_fd = -1, .pty_slave_fd = -1,
                         .listen_fd = -1 };

        switch (config->mode) {
        case CH_CONSOLE_TTY:
                c->out_fd = STDOUT_FILENO;
                return 0;
        case CH_CONSOLE_FILE:
                c->out_fd = open(config->file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                if (c->out_fd < 0)
                        return console_error(chain, what, config->file, errno);
                return 0;
        case CH_CONSOLE_PTY:
                return open_pty(c, chain);
        case CH_CONSOLE_SOCKET:
                return open_socket(c, chain);
        default:
                return 0;
        }
}

void console_close(Console *c) {
        if (c->out_fd > STDERR_FILENO)
                close(c->out_fd);
        safe_close(c->pty_slave_fd);
        safe_close(c->listen_fd);
        for (size_t i = 0; i < c->n_clients; i++)
                safe_close(c->clients[i].fd);
        free(c->history);
        c->n_clients = 0;
        c->out_fd = c->pty_master_fd = c->pty_slave_fd = c->listen_fd = -1;
        c->history = NULL;
}

static void write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return; /* Output to a PTY without a reader, or to a slow socket client, is dropped. */
                p += k;
                n -= (size_t) k;
        }
}

static void drop_client(Console *c, size_t i) {
        close(c->clients[i].fd);
        c->clients[i] = c->clients[--c->n_clients];
}

static void append_history(Console *c, const char *s, size_t n) {
        if (n >= CONSOLE_HISTORY_MAX)
                return;
        if (c->history_len + n > CONSOLE_HISTORY_MAX) {
                size_t drop = c->history_len + n - CONSOLE_HISTORY_MAX;

                memmove(c->history, c->history + drop, c->history_len - drop);
                c->history_len -= drop;
        }
        c->history = xrealloc_array(c->history, c->history_len + n, 1);
        memcpy(c->history + c->history_len, s, n);
        c->history_len += n;
}

void console_write(Console *c, const char *s) {
        _cleanup_free_ char *crlf = NULL;
        size_t n = 0;

        if (c->out_fd >= 0) {
                write_all(c->out_fd, s, strlen(s));
                return;
        }
        if (c->pty_master_fd < 0 && c->listen_fd < 0)
                return;

        crlf = xmalloc0(strlen(s) * 2 + 1);
        for (const char *p = s; *p; p++) {
                if (*p == '\n')
                        crlf[n++] = '\r';
                crlf[n++] = *p;
        }

        if (c->listen_fd >= 0)
                append_history(c, crlf, n);
        for (size_t i = 0; i < c->n_clients; i++)
                write_all(c->clients[i].fd, crlf, n);
}

size_t console_fill_pollfds(Console *c, struct pollfd *pfds) {
        size_t n = 0;

        if (c->listen_fd >= 0)
                pfds[n++] = (struct pollfd) { .fd = c->listen_fd, .events = POLLIN };
        for (size_t i = 0; i < c->n_clients; i++)
                pfds[n++] = (struct pollfd) { .fd = c->clients[i].fd, .events = POLLIN };
        return n;
}

static void accept_client(Console *c) {
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0)
                return;
        if (c->n_clients >= CONSOLE_CLIENTS_MAX) {
                close(fd);
                return;
        }

        c->clients[c->n_clients++] = (ConsoleClient) { .fd = fd };
        write_all(fd, c->history, c->history_len);
}

static void run_line(Console *c, const char *line) {
        _cleanup_free_ char *out = NULL;

        if (isempty(line))
                return;
        if (streq(line, "hostname"))
                out = xasprintf("%s\n", c->hostname ?: "localhost");
        else
                out = xasprintf("%s\n", line);
        console_write(c, out);
}

/* Returns false when the client went away. */
static bool read_client(Console *c, ConsoleClient *cl) {
        char buf[512];
        ssize_t k = read(cl->fd, buf, sizeof(buf));

        if (k < 0)
                return errno == EAGAIN || errno == EINTR;
        if (k == 0)
                return false;

        for (ssize_t i = 0; i < k; i++) {
                if (buf[i] == '\r' || buf[i] == '\n') {
                        cl->line[cl->len] = '\0';
                        cl->len = 0;
                        run_line(c, cl->line);
                } else if (cl->len < CONSOLE_LINE_MAX - 1)
                        cl->line[cl->len++] = buf[i];
        }
        return true;
}

void console_dispatch(Console *c, const struct pollfd *pfds, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (pfds[i].revents == 0)
                        continue;

                if (pfds[i].fd == c->listen_fd) {
                        accept_client(c);
                        continue;
                }

                for (size_t k = 0; k < c->n_clients; k++) {
                        if (c->clients[k].fd != pfds[i].fd)
                                continue;
                        /* The PTY master stays; only socket clients are dropped on hang-up. */
                        if (!read_client(c, &c->clients[k]) && c->clients[k].fd != c->pty_master_fd)
                                drop_client(c, k);
                        break;
                }
        }
}
