/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The protocol of <run_dir>/console.sock, the SOCK_SEQPACKET unix socket on which
 * `cocoon vm console-relay` serves `cocoon vm console`. Every message starts with a type byte.
 * A client first sends HELLO and waits for STATUS. After an 'O' status the relay sends the
 * guest's output as DATA messages, and an interactive client sends typed input as DATA and its
 * terminal size as WINSIZE. */

#define CONSOLE_RELAY_SOCKET_NAME "console.sock"

/* The largest message, type byte included. */
#define CONSOLE_MESSAGE_MAX 4097

enum {
        CONSOLE_MESSAGE_HELLO = 'H',   /* one byte: CONSOLE_MODE_* */
        CONSOLE_MESSAGE_STATUS = 'S',  /* one byte: CONSOLE_STATUS_* */
        CONSOLE_MESSAGE_DATA = 'D',    /* console bytes */
        CONSOLE_MESSAGE_WINSIZE = 'W', /* a struct winsize, in host byte order */
};

enum {
        CONSOLE_MODE_INTERACTIVE = 'w',
        CONSOLE_MODE_READ_ONLY = 'r',
        CONSOLE_STATUS_ATTACHED = 'O',
        CONSOLE_STATUS_BUSY = 'B',     /* another client already types on this console */
};
