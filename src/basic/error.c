/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <string.h>

#include "error.h"

static _Thread_local int recorded_errno;
static _Thread_local char recorded_message[1024];

static int error_setv(int r, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static int error_setv(int r, const char *fmt, va_list ap) {
        vsnprintf(recorded_message, sizeof(recorded_message), fmt, ap);
        recorded_errno = r;
        return r;
}

int error_set(int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        error_setv(r, fmt, ap);
        va_end(ap);
        return r;
}

int error_set_default(int r, const char *fmt, ...) {
        va_list ap;

        if (recorded_errno == r && recorded_message[0])
                return r;

        va_start(ap, fmt);
        error_setv(r, fmt, ap);
        va_end(ap);
        return r;
}

int error_prefix(int r, const char *fmt, ...) {
        char prefix[512], old[sizeof(recorded_message)];
        va_list ap;

        snprintf(old, sizeof(old), "%s", error_message(r));

        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);

        /* Concatenate by hand: a reason cut short is fine, and snprintf would warn about it. */
        size_t a = strnlen(prefix, sizeof(prefix)), b = strnlen(old, sizeof(old));

        a = MIN(a, sizeof(recorded_message) - 1);
        b = MIN(b, sizeof(recorded_message) - 1 - a);
        memcpy(recorded_message, prefix, a);
        memcpy(recorded_message + a, old, b);
        recorded_message[a + b] = '\0';
        recorded_errno = r;
        return r;
}

const char *error_message(int r) {
        if (r < 0 && recorded_errno == r && recorded_message[0])
                return recorded_message;
        return strerror(r < 0 ? -r : r);
}

void error_clear(void) {
        recorded_errno = 0;
        recorded_message[0] = '\0';
}

char *error_save(int r) {
        if (r >= 0 || recorded_errno != r || !recorded_message[0])
                return NULL;
        return strdup(recorded_message);
}

int error_restore(int r, char *saved) {
        if (saved) {
                error_set(r, "%s", saved);
                free(saved);
        }
        return r;
}
