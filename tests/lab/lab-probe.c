/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* lab-probe UNIT TEXT: check that a program run inside the systemd lab reaches the lab's manager
 * and journal with the default paths, as cocoon does: sd_bus_open_system() and GetUnit(UNIT),
 * then sd_journal_open() and a MESSAGE of UNIT that contains TEXT. Prints what it found, one
 * "key=value" line each, and exits 0 only when both were found. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-journal.h>

#include "macro.h"

static int probe_unit(const char *unit) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *active_state = NULL;
        const char *path;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "sd_bus_open_system() failed: %s\n", strerror(-r));
                return r;
        }

        r = sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "GetUnit", &error, &reply, "s", unit);
        if (r < 0) {
                fprintf(stderr, "GetUnit(%s) failed: %s\n", unit, error.message ?: strerror(-r));
                return r;
        }

        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                fprintf(stderr, "invalid GetUnit reply: %s\n", strerror(-r));
                return r;
        }

        r = sd_bus_get_property_string(bus, "org.freedesktop.systemd1", path,
                                       "org.freedesktop.systemd1.Unit", "ActiveState", &error,
                                       &active_state);
        if (r < 0) {
                fprintf(stderr, "reading ActiveState of %s failed: %s\n", unit,
                        error.message ?: strerror(-r));
                return r;
        }

        printf("unit=%s\npath=%s\nActiveState=%s\n", unit, path, active_state);
        return 0;
}

static int probe_journal(const char *unit, const char *text) {
        _cleanup_(sd_journal_closep) sd_journal *journal = NULL;
        _cleanup_free_ char *match = NULL;
        unsigned entries = 0;
        int r;

        r = sd_journal_open(&journal, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0) {
                fprintf(stderr, "sd_journal_open() failed: %s\n", strerror(-r));
                return r;
        }

        if (asprintf(&match, "_SYSTEMD_UNIT=%s", unit) < 0)
                return -ENOMEM;

        r = sd_journal_add_match(journal, match, 0);
        if (r < 0) {
                fprintf(stderr, "sd_journal_add_match(%s) failed: %s\n", match, strerror(-r));
                return r;
        }

        SD_JOURNAL_FOREACH(journal) {
                const void *data;
                size_t size;

                entries++;
                r = sd_journal_get_data(journal, "MESSAGE", &data, &size);
                if (r < 0)
                        continue;

                /* The field comes as "MESSAGE=..." and is not NUL-terminated. */
                if (memmem(data, size, text, strlen(text))) {
                        printf("journal_entries=%u\njournal_match=%.*s\n", entries, (int) size,
                               (const char *) data);
                        return 0;
                }
        }

        fprintf(stderr, "no journal entry of %s contains '%s' (%u entries)\n", unit, text, entries);
        return -ENOENT;
}

int main(int argc, char **argv) {
        int r;

        if (argc != 3) {
                fprintf(stderr, "Usage: %s UNIT TEXT\n", argv[0]);
                return 2;
        }

        r = probe_unit(argv[1]);
        if (r < 0)
                return 1;

        r = probe_journal(argv[1], argv[2]);
        if (r < 0)
                return 1;

        return 0;
}
