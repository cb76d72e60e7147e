/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The guest's serial port or virtio console as the test double shows it on the host: standard
 * output (tty), a file, a PTY or a listening unix socket. PTY and socket endpoints also serve a
 * tiny line-based "shell" that echoes lines and replies to "hostname". */

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "ch-config.h"

#define CONSOLE_CLIENTS_MAX 8
#define CONSOLE_LINE_MAX 1024
#define CONSOLE_HISTORY_MAX (64 * 1024)

typedef struct ConsoleClient {
        int fd;
        char line[CONSOLE_LINE_MAX];
        size_t len;
} ConsoleClient;

typedef struct Console {
        ChConsoleConfig *config; /* the PTY path is stored into config->file */
        const char *what;        /* "serial" or "console" */
        int out_fd;              /* tty and file modes */
        int pty_master_fd, pty_slave_fd;
        int listen_fd;
        ConsoleClient clients[CONSOLE_CLIENTS_MAX];
        size_t n_clients;
        char *history; /* socket mode: output so far, replayed to each new client */
        size_t history_len;
        const char *hostname;
} Console;

/* Create the host side of the endpoint. On failure fills chain and returns < 0. */
int console_open(Console *c, ChConsoleConfig *config, const char *what, ChErrorChain *chain);
void console_close(Console *c);

/* Write guest output; "\n" becomes "\r\n" on PTY and socket endpoints, as a guest tty does. */
void console_write(Console *c, const char *s);

/* Add the endpoint's fds to pfds (at most CONSOLE_CLIENTS_MAX + 2). Returns how many. */
size_t console_fill_pollfds(Console *c, struct pollfd *pfds);

/* Handle the revents for the fds added by console_fill_pollfds(). */
void console_dispatch(Console *c, const struct pollfd *pfds, size_t n);
