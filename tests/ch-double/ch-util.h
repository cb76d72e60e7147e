/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers shared by the files of the Cloud Hypervisor test double. The double is a test
 * tool, so running out of memory aborts instead of unwinding through every caller. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

static inline void *xmalloc0(size_t n) {
        void *p = calloc(1, n ? n : 1);
        if (!p)
                abort();
        return p;
}

static inline void *xrealloc_array(void *p, size_t n, size_t size) {
        void *q = reallocarray(p, n ? n : 1, size);
        if (!q)
                abort();
        return q;
}

static inline char *xstrdup(const char *s) {
        char *p;

        if (!s)
                return NULL;
        p = strdup(s);
        if (!p)
                abort();
        return p;
}

static inline char *xstrndup(const char *s, size_t n) {
        char *p = strndup(s, n);
        if (!p)
                abort();
        return p;
}

static inline char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static inline char *xvasprintf(const char *fmt, va_list ap) {
        char *p;

        if (vasprintf(&p, fmt, ap) < 0)
                abort();
        return p;
}

static inline char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *xasprintf(const char *fmt, ...) {
        va_list ap;
        char *p;

        va_start(ap, fmt);
        p = xvasprintf(fmt, ap);
        va_end(ap);
        return p;
}

static inline void free_and_replace_str(char **p, const char *s) {
        free(*p);
        *p = xstrdup(s);
}
