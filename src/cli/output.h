/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdio.h>

#include <jansson.h>

#include "macro.h"

typedef enum OutputFormat {
        OUTPUT_TABLE,
        OUTPUT_JSON,
} OutputFormat;

int output_format_parse(const char *s, OutputFormat *ret);

/* Print j as indented JSON with a final newline on stdout. */
int output_json(json_t *j);

/* A text table whose columns are as wide as their widest cell, separated by three spaces. */
typedef struct Table Table;
Table *table_new(const char *first_header, ...) _sentinel_;
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
int table_add_row(Table *t, const char *first_cell, ...) _sentinel_;
int table_print(const Table *t, FILE *f);
