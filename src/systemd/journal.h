/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The last n messages a unit wrote to the journal (oldest first), to explain a failed start. */
int journal_last_messages(const char *unit, unsigned n, char ***ret);
