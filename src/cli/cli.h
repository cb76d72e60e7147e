/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "config.h"

/* Exit codes: 0 success, 1 the command failed, 2 the command line was invalid. */
#define EXIT_USAGE 2

typedef struct CliOption {
        const char *name;    /* long name, without "--" */
        int short_name;      /* 0 when there is none */
        const char *arg;     /* argument name shown in --help; NULL for a plain flag */
        const char *help;
        int id;              /* handed to parse_option; must be >= 0x100 or a short name */
} CliOption;

typedef struct CliCommand {
        const char *group;       /* "image", "vm", or NULL for a top-level command */
        const char *name;
        const char *alias;       /* e.g. "ls" for "list"; may be NULL */
        const char *args;        /* positional arguments shown in --help, e.g. "IMAGE..." */
        const char *summary;     /* one line for the command list */
        const char *description; /* paragraph for --help; may be NULL */
        const CliOption *options; /* terminated by an entry with name == NULL; may be NULL */
        int min_args;
        int max_args;            /* -1 = no limit */
        bool hidden;             /* internal: called by units, not listed in help */
        /* Set the command's own option; returns < 0 (with a reason) for an invalid value. */
        int (*parse_option)(int id, const char *arg);
        /* Run with the resolved configuration and the positional arguments. Returns the exit
         * code; the command prints its own errors. */
        int (*run)(const Config *config, int argc, char **argv);
} CliCommand;

extern const CliCommand *const cli_commands[];

/* Parse argv (global flags, group, command, its flags and arguments), load the configuration and
 * run the command. Returns the process exit code. */
int cli_main(int argc, char **argv);

void cli_print_command_help(const CliCommand *c, FILE *f);
