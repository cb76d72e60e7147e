/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "console-escape.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first byte picks the escape character, the rest is typed input. Checks the invariants a
 * caller relies on: at most two bytes out per byte in, and input without the escape character
 * passes through unchanged. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char name[16], parsed, out[2];
        ConsoleEscape e;
        bool saw_escape = false;
        size_t n, sent = 0;

        if (size == 0)
                return 0;

        /* Parsing must not crash on any short string. */
        n = MIN(size, sizeof(name) - 1);
        memcpy(name, data, n);
        name[n] = '\0';
        (void) console_escape_parse(name, &parsed);
        error_clear();

        console_escape_init(&e, (char) data[0]);
        for (size_t i = 1; i < size; i++) {
                ConsoleEscapeAction a = console_escape_feed(&e, (char) data[i], out, &n);

                if (n > 2)
                        abort();
                if ((char) data[i] == e.escape)
                        saw_escape = true;
                if (!saw_escape && (a != CONSOLE_ESCAPE_FORWARD || n != 1 || out[0] != (char) data[i]))
                        abort();
                sent += n;
                if (a == CONSOLE_ESCAPE_DISCONNECT)
                        break;
        }
        if (sent > 2 * size)
                abort();
        return 0;
}
