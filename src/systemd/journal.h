/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The last n messages a unit wrote to the journal (oldest first), to explain a failed start.
 * identifier, when not NULL, keeps only the lines of that SYSLOG_IDENTIFIER (a program's own
 * output, without the console relay's and systemd's lines). */
int journal_last_messages(const char *unit, const char *identifier, unsigned n, char ***ret);

typedef enum JournalFormat {
        JOURNAL_FORMAT_SHORT,  /* "Dec 04 20:08:37 identifier[pid]: message" */
        JOURNAL_FORMAT_CAT,    /* the message only */
        JOURNAL_FORMAT_JSON,   /* one JSON object per line */
} JournalFormat;

typedef struct JournalQuery {
        const char *unit;
        unsigned lines;        /* 0 = all */
        uint64_t since_usec;   /* realtime; 0 = from the start */
        bool follow;
        JournalFormat format;
        volatile int *stop;    /* follow ends when *stop becomes non-zero; may be NULL */
} JournalQuery;

/* Print a unit's journal entries to f. With follow, wait for new entries until *stop is set. */
int journal_show(const JournalQuery *q, FILE *f);

/* Parse "YYYY-MM-DD HH:MM:SS", "YYYY-MM-DD", "HH:MM:SS" (today), "-5m"/"-2h"/"-1d" (relative to
 * now) or "@SECONDS" into realtime microseconds. */
int journal_parse_since(const char *s, uint64_t now_usec, uint64_t *ret);
