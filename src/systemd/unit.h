/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <systemd/sd-bus.h>

#include "macro.h"

/* A transient unit described as plain data, so the same description is shown by `vm debug`,
 * checked by unit tests, and sent to systemd by unit_start(). */
typedef enum UnitPropertyType {
        UNIT_PROPERTY_STRING,    /* "s" */
        UNIT_PROPERTY_BOOL,      /* "b" */
        UNIT_PROPERTY_UINT64,    /* "t" */
        UNIT_PROPERTY_INT32,     /* "i" */
        UNIT_PROPERTY_STRV,      /* "as" */
        UNIT_PROPERTY_EXEC,      /* "a(sasb)": one command, argv in strv, ignore-failure in b */
} UnitPropertyType;

typedef struct UnitProperty {
        char *name;
        UnitPropertyType type;
        char *s;
        bool b;
        uint64_t u;
        int32_t i;
        char **strv;
} UnitProperty;

typedef struct UnitSpec {
        char *name;
        UnitProperty *properties;
        size_t n_properties;
} UnitSpec;

UnitSpec *unit_spec_free(UnitSpec *spec);
DEFINE_TRIVIAL_CLEANUP_FUNC(UnitSpec *, unit_spec_free);
int unit_spec_new(const char *name, UnitSpec **ret);

int unit_spec_add_string(UnitSpec *spec, const char *name, const char *value);
int unit_spec_add_bool(UnitSpec *spec, const char *name, bool value);
int unit_spec_add_uint64(UnitSpec *spec, const char *name, uint64_t value);
int unit_spec_add_strv(UnitSpec *spec, const char *name, char *const *value);
int unit_spec_add_exec(UnitSpec *spec, const char *name, char *const *argv, bool ignore_failure);

/* Parse a user's "KEY=VALUE" resource setting (vm create --property) into the spec. Only a known
 * set of resource-control properties is accepted, each with its D-Bus type, so that a property
 * can neither replace what Cocoon sets (ExecStart=, NetworkNamespacePath=...) nor reach systemd
 * with a malformed value. */
int unit_spec_add_assignment(UnitSpec *spec, const char *assignment);

/* Print the unit as "Name=value" lines, quoting each argv word as a shell would need it. */
void unit_spec_print(const UnitSpec *spec, FILE *f);

/* Quote one argv word for display (systemctl status style): bare when safe, else in double
 * quotes with backslash escapes. */
char *unit_quote_word(const char *word);

typedef struct UnitState {
        char *active_state;   /* "active", "inactive", "failed", ... ("inactive" when not loaded) */
        char *sub_state;
        char *result;         /* "success", "exit-code", "signal", ... */
        uint32_t main_pid;
        int32_t exec_main_code;
        int32_t exec_main_status;
        bool loaded;
} UnitState;

void unit_state_done(UnitState *s);

/* Open the system bus (honours $DBUS_SYSTEM_BUS_ADDRESS). */
int unit_bus_open(sd_bus **ret);

/* Start the transient unit and wait for its start job to finish. -EEXIST when a unit of that
 * name is already loaded. A job that ends other than "done" is -EIO with the result as reason. */
int unit_start(sd_bus *bus, const UnitSpec *spec);

/* Stop the unit and wait until its stop job finishes (ExecStop= has run and the processes are
 * gone). A unit that is not loaded counts as stopped. */
int unit_stop(sd_bus *bus, const char *name);

/* Send a signal to the unit's main process. */
int unit_kill(sd_bus *bus, const char *name, int signo);

int unit_reset_failed(sd_bus *bus, const char *name);

int unit_get_state(sd_bus *bus, const char *name, UnitState *ret);

/* Active states of every loaded unit matching pattern, in one call: parallel arrays of unit
 * names and active states, NULL-terminated. */
int unit_list(sd_bus *bus, const char *pattern, char ***ret_names, char ***ret_states);
