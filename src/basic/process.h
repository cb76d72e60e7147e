/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/* Run argv[0] (looked up in PATH when it has no '/') with argv, no shell, stdin from /dev/null,
 * a minimal environment (PATH and LC_ALL=C only) and a timeout in seconds (0 = none). stdout and
 * stderr are captured together, up to 64 KiB, into *ret_output when it is not NULL.
 * Returns the exit status (>= 0), or a negative errno: -ETIMEDOUT when it was killed after the
 * timeout, -ECHILD when it died from a signal, -ENOENT when the program is missing. */
int process_run(char *const *argv, unsigned timeout_sec, char **ret_output);

/* Run and require exit status 0; otherwise record a reason naming the program and the last line
 * of its output, and return -EIO (or the error of process_run()). */
int process_run_checked(char *const *argv, unsigned timeout_sec);

/* Find a program in PATH; -ENOENT when absent. */
int process_find_program(const char *name, char **ret);
