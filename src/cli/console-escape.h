/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The escape sequences of `cocoon vm console`, as in OpenSSH: the escape character (default '~')
 * is special only at the start of a line, which is the start of the session or right after a
 * CR or LF was sent. Then "<esc>." disconnects, "<esc>?" shows the help, "<esc><esc>" sends one
 * escape character, and "<esc>" followed by any other byte sends both bytes. Pure code: no I/O. */

#define CONSOLE_ESCAPE_DEFAULT '~'

typedef enum ConsoleEscapeAction {
        CONSOLE_ESCAPE_FORWARD,     /* send the output bytes (possibly none) to the guest */
        CONSOLE_ESCAPE_DISCONNECT,  /* "<esc>.": end the session */
        CONSOLE_ESCAPE_HELP,        /* "<esc>?": show the help */
} ConsoleEscapeAction;

typedef struct ConsoleEscape {
        char escape;
        bool line_start;   /* the last byte sent was CR or LF, or nothing was sent yet */
        bool pending;      /* the escape character was typed at the start of a line */
} ConsoleEscape;

void console_escape_init(ConsoleEscape *e, char escape);

/* Feed one typed byte. Stores 0 to 2 bytes to send to the guest in out and their count in
 * ret_n, and returns what the caller must do besides sending them. */
ConsoleEscapeAction console_escape_feed(ConsoleEscape *e, char c, char out[static 2], size_t *ret_n);

/* Parse --escape-char: one ASCII character, or caret notation for a control character ("^]",
 * "^a" and "^A" are the same). NUL, CR, LF, DEL, non-ASCII bytes, '.' and '?' are rejected. */
int console_escape_parse(const char *s, char *ret);

/* Write the escape character as the user types it ("~", "^]") into buf. Returns buf. */
const char *console_escape_name(char c, char buf[static 3]);
