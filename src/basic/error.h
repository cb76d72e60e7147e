/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "macro.h"

/* The error model: every function that can fail returns a negative errno. Where the errno alone
 * would leave a user guessing (a registry's error text, a digest that did not match, a bad path
 * inside a layer), the failing function records a one-line reason for this thread with
 * error_set(). Modules never print; the command layer prints the reason once, prefixed with what
 * it was doing ("Failed to pull 'x': reason"). */

/* Record fmt as the reason for the failure r (a negative errno) and return r. */
int error_set(int r, const char *fmt, ...) _printf_(2, 3);

/* Like error_set(), but only when no reason is recorded for r yet, so that the innermost and most
 * specific reason survives while an error travels up the stack. */
int error_set_default(int r, const char *fmt, ...) _printf_(2, 3);

/* Prefix the recorded reason with context ("layer sha256:…: " + reason), or start one from
 * strerror(-r) when none is recorded. Returns r. */
int error_prefix(int r, const char *fmt, ...) _printf_(2, 3);

/* The recorded reason for r, or strerror(-r) when the recorded one belongs to another errno.
 * The string stays valid until the next error_*() call in this thread. */
const char *error_message(int r);

/* Forget the recorded reason, after a failure was handled and must not leak into a later one. */
void error_clear(void);

/* Copy this thread's recorded reason for r into a heap string, so a worker thread can hand it to
 * the thread that reports it (see error_restore()). Returns NULL when none is recorded. */
char *error_save(int r);
int error_restore(int r, char *saved);
