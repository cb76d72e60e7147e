/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "error.h"
#include "output.h"

int output_format_parse(const char *s, OutputFormat *ret) {
        if (streq(s, "table"))
                *ret = OUTPUT_TABLE;
        else if (streq(s, "json"))
                *ret = OUTPUT_JSON;
        else
                return error_set(-EINVAL, "invalid output format '%s': expected table or json", s);
        return 0;
}

int output_json(json_t *j) {
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0)
                return -EIO;
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -errno;
}

struct Table {
        size_t n_columns;
        size_t n_cells;
        char **cells;
};

static int table_append(Table *t, const char *first, va_list ap) {
        size_t added = 0;
        char **c;

        c = realloc(t->cells, (t->n_cells + t->n_columns) * sizeof(char *));
        if (!c)
                return -ENOMEM;
        t->cells = c;

        for (const char *s = first; s && added < t->n_columns; s = va_arg(ap, const char *), added++) {
                t->cells[t->n_cells + added] = strdup(s);
                if (!t->cells[t->n_cells + added])
                        return -ENOMEM;
        }
        for (; added < t->n_columns; added++)
                t->cells[t->n_cells + added] = strdup("");
        t->n_cells += t->n_columns;
        return 0;
}

Table *table_new(const char *first_header, ...) {
        Table *t = calloc(1, sizeof(Table));
        va_list ap;

        if (!t)
                return NULL;

        va_start(ap, first_header);
        for (const char *s = first_header; s; s = va_arg(ap, const char *))
                t->n_columns++;
        va_end(ap);

        va_start(ap, first_header);
        if (table_append(t, first_header, ap) < 0) {
                va_end(ap);
                return table_free(t);
        }
        va_end(ap);
        return t;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

int table_add_row(Table *t, const char *first_cell, ...) {
        va_list ap;
        int r;

        va_start(ap, first_cell);
        r = table_append(t, first_cell, ap);
        va_end(ap);
        return r;
}

int table_print(const Table *t, FILE *f) {
        _cleanup_free_ size_t *width = calloc(t->n_columns, sizeof(size_t));

        if (!width)
                return -ENOMEM;

        for (size_t i = 0; i < t->n_cells; i++)
                width[i % t->n_columns] = MAX(width[i % t->n_columns], strlen(t->cells[i] ?: ""));

        for (size_t i = 0; i < t->n_cells; i++) {
                size_t col = i % t->n_columns;
                bool last = col == t->n_columns - 1;

                if (last)
                        fprintf(f, "%s\n", t->cells[i] ?: "");
                else
                        fprintf(f, "%-*s   ", (int) width[col], t->cells[i] ?: "");
        }
        return fflush(f) == 0 ? 0 : -errno;
}
