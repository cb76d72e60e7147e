/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <string.h>

#include "strv.h"

char **strv_free(char **l) {
        if (!l)
                return NULL;
        for (char **s = l; *s; s++)
                free(*s);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;

        while (l && l[n])
                n++;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        STRV_FOREACH(i, l)
                if (streq(*i, s))
                        return true;
        return false;
}

int strv_consume(char ***l, char *s) {
        size_t n = strv_length(*l);
        char **t;

        if (!s)
                return -ENOMEM;

        t = realloc(*l, sizeof(char *) * (n + 2));
        if (!t) {
                free(s);
                return -ENOMEM;
        }
        t[n] = s;
        t[n + 1] = NULL;
        *l = t;
        return 0;
}

int strv_extend(char ***l, const char *s) {
        return strv_consume(l, strdup(s));
}

char **strv_copy(char *const *l) {
        _cleanup_strv_free_ char **c = calloc(1, sizeof(char *));

        if (!c)
                return NULL;
        STRV_FOREACH(s, l)
                if (strv_extend(&c, *s) < 0)
                        return NULL;
        return TAKE_PTR(c);
}

int strv_split(const char *s, const char *separators, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        const char *p = s;

        if (!l)
                return -ENOMEM;

        while (p && *p) {
                size_t n = strcspn(p, separators);
                const char *b = p, *e = p + n;

                while (b < e && (*b == ' ' || *b == '\t'))
                        b++;
                while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                if (e > b && strv_consume(&l, strndup(b, e - b)) < 0)
                        return -ENOMEM;

                p += n;
                if (*p)
                        p++;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

char *strv_join(char *const *l, const char *separator) {
        size_t len = 1, sl = strlen(separator);
        char *r, *p;

        STRV_FOREACH(s, l)
                len += strlen(*s) + sl;
        r = p = malloc(len);
        if (!r)
                return NULL;
        *p = '\0';
        STRV_FOREACH(s, l) {
                if (s != l)
                        p = stpcpy(p, separator);
                p = stpcpy(p, *s);
        }
        return r;
}

char *strjoin(const char *first, ...) {
        va_list ap;
        size_t len = 0;
        char *r, *p;

        va_start(ap, first);
        for (const char *s = first; s; s = va_arg(ap, const char *))
                len += strlen(s);
        va_end(ap);

        r = p = malloc(len + 1);
        if (!r)
                return NULL;

        va_start(ap, first);
        for (const char *s = first; s; s = va_arg(ap, const char *))
                p = stpcpy(p, s);
        va_end(ap);

        *p = '\0';
        return r;
}

bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool endswith(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);

        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}
