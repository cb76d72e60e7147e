/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* NULL-terminated arrays of heap strings. */
char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
int strv_extend(char ***l, const char *s);
int strv_consume(char ***l, char *s);
char **strv_copy(char *const *l);
/* Split s at any of the separator characters, dropping empty items and trimming spaces. */
int strv_split(const char *s, const char *separators, char ***ret);
char *strv_join(char *const *l, const char *separator);

#define STRV_FOREACH(s, l) for (char *const *s = (l); s && *s; s++)

/* Concatenate strings up to a NULL argument into a new heap string. */
char *strjoin(const char *first, ...) _sentinel_;
bool startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);
