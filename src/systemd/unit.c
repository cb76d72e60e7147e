/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <inttypes.h>
#include <string.h>

#include "error.h"
#include "format.h"
#include "strv.h"
#include "unit.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"

static void unit_property_done(UnitProperty *p) {
        free(p->name);
        free(p->s);
        strv_free(p->strv);
}

UnitSpec *unit_spec_free(UnitSpec *spec) {
        if (!spec)
                return NULL;
        for (size_t i = 0; i < spec->n_properties; i++)
                unit_property_done(&spec->properties[i]);
        free(spec->properties);
        free(spec->name);
        free(spec);
        return NULL;
}

int unit_spec_new(const char *name, UnitSpec **ret) {
        UnitSpec *spec = calloc(1, sizeof(UnitSpec));

        if (!spec)
                return -ENOMEM;
        spec->name = strdup(name);
        if (!spec->name)
                return unit_spec_free(spec), -ENOMEM;
        *ret = spec;
        return 0;
}

static UnitProperty *unit_spec_push(UnitSpec *spec, const char *name, UnitPropertyType type) {
        UnitProperty *p = realloc(spec->properties, (spec->n_properties + 1) * sizeof(UnitProperty));

        if (!p)
                return NULL;
        spec->properties = p;
        p = &spec->properties[spec->n_properties];
        *p = (UnitProperty) { .name = strdup(name), .type = type };
        if (!p->name)
                return NULL;
        spec->n_properties++;
        return p;
}

int unit_spec_add_string(UnitSpec *spec, const char *name, const char *value) {
        UnitProperty *p = unit_spec_push(spec, name, UNIT_PROPERTY_STRING);

        if (!p || !(p->s = strdup(value)))
                return -ENOMEM;
        return 0;
}

int unit_spec_add_bool(UnitSpec *spec, const char *name, bool value) {
        UnitProperty *p = unit_spec_push(spec, name, UNIT_PROPERTY_BOOL);

        if (!p)
                return -ENOMEM;
        p->b = value;
        return 0;
}

int unit_spec_add_uint64(UnitSpec *spec, const char *name, uint64_t value) {
        UnitProperty *p = unit_spec_push(spec, name, UNIT_PROPERTY_UINT64);

        if (!p)
                return -ENOMEM;
        p->u = value;
        return 0;
}

static int unit_spec_add_int32(UnitSpec *spec, const char *name, int32_t value) {
        UnitProperty *p = unit_spec_push(spec, name, UNIT_PROPERTY_INT32);

        if (!p)
                return -ENOMEM;
        p->i = value;
        return 0;
}

int unit_spec_add_strv(UnitSpec *spec, const char *name, char *const *value) {
        UnitProperty *p = unit_spec_push(spec, name, UNIT_PROPERTY_STRV);

        if (!p || !(p->strv = strv_copy(value)))
                return -ENOMEM;
        return 0;
}

int unit_spec_add_exec(UnitSpec *spec, const char *name, char *const *argv, bool ignore_failure) {
        UnitProperty *p = unit_spec_push(spec, name, UNIT_PROPERTY_EXEC);

        if (!p || !(p->strv = strv_copy(argv)))
                return -ENOMEM;
        p->b = ignore_failure;
        return 0;
}

/* Resource settings a user may pass with --property, and how each value is parsed. */
typedef enum AssignmentKind {
        ASSIGN_SIZE,        /* bytes with K/M/G suffixes, or "infinity" */
        ASSIGN_WEIGHT,      /* 1..10000 */
        ASSIGN_COUNT,       /* a plain number, or "infinity" */
        ASSIGN_PERCENT,     /* CPUQuota: "50%" becomes CPUQuotaPerSecUSec */
        ASSIGN_NICE,        /* -20..19 */
        ASSIGN_BOOL,
} AssignmentKind;

static const struct {
        const char *name;
        AssignmentKind kind;
} assignments[] = {
        { "MemoryMax", ASSIGN_SIZE },     { "MemoryHigh", ASSIGN_SIZE },
        { "MemoryLow", ASSIGN_SIZE },     { "MemoryMin", ASSIGN_SIZE },
        { "MemorySwapMax", ASSIGN_SIZE }, { "CPUWeight", ASSIGN_WEIGHT },
        { "IOWeight", ASSIGN_WEIGHT },    { "TasksMax", ASSIGN_COUNT },
        { "CPUQuota", ASSIGN_PERCENT },   { "Nice", ASSIGN_NICE },
        { "MemoryAccounting", ASSIGN_BOOL }, { "CPUAccounting", ASSIGN_BOOL },
        { "IOAccounting", ASSIGN_BOOL },  { "TasksAccounting", ASSIGN_BOOL },
};

static int parse_number(const char *s, uint64_t max, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

int unit_spec_add_assignment(UnitSpec *spec, const char *assignment) {
        _cleanup_free_ char *key = NULL;
        const char *eq = strchr(assignment, '='), *value;
        uint64_t v;
        int r;

        if (!eq || eq == assignment)
                return error_set(-EINVAL, "invalid property '%s': expected KEY=VALUE", assignment);
        key = strndup(assignment, eq - assignment);
        if (!key)
                return -ENOMEM;
        value = eq + 1;

        for (size_t i = 0; i < ELEMENTSOF(assignments); i++) {
                if (!streq(assignments[i].name, key))
                        continue;

                switch (assignments[i].kind) {
                case ASSIGN_SIZE:
                        if (streq(value, "infinity"))
                                return unit_spec_add_uint64(spec, key, UINT64_MAX);
                        r = parse_size(value, &v);
                        if (r < 0)
                                return error_set(-EINVAL, "invalid value '%s' for %s: expected a "
                                                          "size such as 512M or 'infinity'", value, key);
                        return unit_spec_add_uint64(spec, key, v);

                case ASSIGN_WEIGHT:
                        if (parse_number(value, 10000, &v) < 0 || v < 1)
                                return error_set(-EINVAL, "invalid value '%s' for %s: expected 1 "
                                                          "to 10000", value, key);
                        return unit_spec_add_uint64(spec, key, v);

                case ASSIGN_COUNT:
                        if (streq(value, "infinity"))
                                return unit_spec_add_uint64(spec, key, UINT64_MAX);
                        if (parse_number(value, UINT64_MAX - 1, &v) < 0)
                                return error_set(-EINVAL, "invalid value '%s' for %s: expected a "
                                                          "number or 'infinity'", value, key);
                        return unit_spec_add_uint64(spec, key, v);

                case ASSIGN_PERCENT: {
                        _cleanup_free_ char *digits = NULL;
                        size_t n = strlen(value);

                        if (n < 2 || value[n - 1] != '%' || !(digits = strndup(value, n - 1)) ||
                            parse_number(digits, 100000, &v) < 0 || v == 0)
                                return error_set(-EINVAL, "invalid value '%s' for CPUQuota: "
                                                          "expected a percentage such as 50%%", value);
                        /* systemd stores CPU time per second of wall time, in microseconds. */
                        return unit_spec_add_uint64(spec, "CPUQuotaPerSecUSec", v * 10000);
                }

                case ASSIGN_NICE: {
                        char *end;
                        long n;

                        errno = 0;
                        n = strtol(value, &end, 10);
                        if (errno != 0 || end == value || *end || n < -20 || n > 19)
                                return error_set(-EINVAL, "invalid value '%s' for Nice: expected "
                                                          "-20 to 19", value);
                        return unit_spec_add_int32(spec, key, (int32_t) n);
                }

                case ASSIGN_BOOL:
                        if (streq(value, "yes") || streq(value, "true") || streq(value, "1"))
                                return unit_spec_add_bool(spec, key, true);
                        if (streq(value, "no") || streq(value, "false") || streq(value, "0"))
                                return unit_spec_add_bool(spec, key, false);
                        return error_set(-EINVAL, "invalid value '%s' for %s: expected yes or no",
                                         value, key);
                }
        }

        return error_set(-EOPNOTSUPP, "unsupported property '%s': Cocoon accepts MemoryMax, "
                                      "MemoryHigh, MemoryLow, MemoryMin, MemorySwapMax, CPUQuota, "
                                      "CPUWeight, IOWeight, TasksMax, Nice and the *Accounting "
                                      "switches", key);
}

char *unit_quote_word(const char *word) {
        size_t n = strlen(word), len = 3;
        bool plain = n > 0;
        char *r, *p;

        for (const char *c = word; *c; c++)
                if (!isalnum((unsigned char) *c) && !strchr("-_./=:,@%+[]", *c))
                        plain = false;
        if (plain)
                return strdup(word);

        for (const char *c = word; *c; c++)
                len += strchr("\"\\$`", *c) ? 2 : 1;
        r = p = malloc(len);
        if (!r)
                return NULL;
        *p++ = '"';
        for (const char *c = word; *c; c++) {
                if (strchr("\"\\$`", *c))
                        *p++ = '\\';
                *p++ = *c;
        }
        *p++ = '"';
        *p = '\0';
        return r;
}

void unit_spec_print(const UnitSpec *spec, FILE *f) {
        fprintf(f, "# %s\n", spec->name);
        for (size_t i = 0; i < spec->n_properties; i++) {
                const UnitProperty *p = &spec->properties[i];

                fprintf(f, "%s=", p->name);
                switch (p->type) {
                case UNIT_PROPERTY_STRING:
                        fprintf(f, "%s", p->s);
                        break;
                case UNIT_PROPERTY_BOOL:
                        fprintf(f, "%s", p->b ? "yes" : "no");
                        break;
                case UNIT_PROPERTY_UINT64:
                        if (p->u == UINT64_MAX)
                                fprintf(f, "infinity");
                        else
                                fprintf(f, "%" PRIu64, p->u);
                        break;
                case UNIT_PROPERTY_INT32:
                        fprintf(f, "%" PRIi32, p->i);
                        break;
                case UNIT_PROPERTY_STRV:
                case UNIT_PROPERTY_EXEC:
                        if (p->type == UNIT_PROPERTY_EXEC && p->b)
                                fputc('-', f);
                        STRV_FOREACH(w, p->strv) {
                                _cleanup_free_ char *q = unit_quote_word(*w);

                                fprintf(f, "%s%s", w == p->strv ? "" : " ", q ?: *w);
                        }
                        break;
                }
                fputc('\n', f);
        }
}

void unit_state_done(UnitState *s) {
        free(s->active_state);
        free(s->sub_state);
        free(s->result);
        *s = (UnitState) {};
}

int unit_bus_open(sd_bus **ret) {
        int r = sd_bus_open_system(ret);

        if (r < 0)
                return error_set(r, "cannot connect to the system bus: %s (is systemd running?)",
                                 strerror(-r));
        return 0;
}

static int append_property(sd_bus_message *m, const UnitProperty *p) {
        int r;

        switch (p->type) {
        case UNIT_PROPERTY_STRING:
                return sd_bus_message_append(m, "(sv)", p->name, "s", p->s);
        case UNIT_PROPERTY_BOOL:
                return sd_bus_message_append(m, "(sv)", p->name, "b", (int) p->b);
        case UNIT_PROPERTY_UINT64:
                return sd_bus_message_append(m, "(sv)", p->name, "t", p->u);
        case UNIT_PROPERTY_INT32:
                return sd_bus_message_append(m, "(sv)", p->name, "i", p->i);
        case UNIT_PROPERTY_STRV:
                r = sd_bus_message_open_container(m, 'r', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", p->name);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, p->strv);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        case UNIT_PROPERTY_EXEC:
                r = sd_bus_message_open_container(m, 'r', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", p->name);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "a(sasb)");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "(sasb)");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'r', "sasb");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", p->strv[0]);
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, p->strv);
                if (r >= 0)
                        r = sd_bus_message_append(m, "b", (int) p->b);
                for (int k = 0; k < 4 && r >= 0; k++)
                        r = sd_bus_message_close_container(m);
                return r;
        }
        return -EINVAL;
}

typedef struct JobWait {
        const char *path;   /* the job we wait for, once known */
        char *result;       /* its result, once JobRemoved arrived */
        /* JobRemoved may arrive before the method reply tells us the job path, so every
         * removal is remembered until then. */
        char **seen_paths;
        char **seen_results;
} JobWait;

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        JobWait *w = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;

        if (w->path) {
                if (streq(path, w->path) && !w->result)
                        w->result = strdup(result);
                return 0;
        }
        (void) strv_extend(&w->seen_paths, path);
        (void) strv_extend(&w->seen_results, result);
        return 0;
}

static int wait_for_job(sd_bus *bus, JobWait *w, const char *job) {
        w->path = job;
        for (size_t i = 0; w->seen_paths && w->seen_paths[i]; i++)
                if (streq(w->seen_paths[i], job) && w->seen_results[i])
                        w->result = strdup(w->seen_results[i]);

        while (!w->result) {
                int r = sd_bus_process(bus, NULL);

                if (r < 0)
                        return error_set(r, "lost the connection to systemd: %s", strerror(-r));
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return error_set(r, "lost the connection to systemd: %s", strerror(-r));
        }
        return 0;
}

static void job_wait_done(JobWait *w) {
        free(w->result);
        strv_free(w->seen_paths);
        strv_free(w->seen_results);
}

int unit_start(sd_bus *bus, const UnitSpec *spec) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_(job_wait_done) JobWait w = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *job;
        int r;

        /* Subscribe before the call, so the job's end cannot slip past us. */
        r = sd_bus_match_signal(bus, &slot, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                "JobRemoved", on_job_removed, &w);
        if (r < 0)
                return error_set(r, "cannot watch systemd jobs: %s", strerror(-r));

        r = sd_bus_message_new_method_call(bus, &m, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "StartTransientUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", spec->name, "fail");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        for (size_t i = 0; r >= 0 && i < spec->n_properties; i++)
                r = append_property(m, &spec->properties[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0);
        if (r < 0)
                return error_set(r, "cannot build the request for %s: %s", spec->name, strerror(-r));

        r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, "org.freedesktop.systemd1.UnitExists"))
                        r = error_set(-EEXIST, "unit %s already exists", spec->name);
                else
                        r = error_set(r, "systemd refused to start %s: %s", spec->name,
                                      error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                return r;
        }

        r = sd_bus_message_read(reply, "o", &job);
        if (r < 0)
                return error_set(r, "unexpected reply from systemd: %s", strerror(-r));

        r = wait_for_job(bus, &w, job);
        if (r < 0)
                return r;
        if (!streq(w.result, "done"))
                return error_set(-EIO, "the start job of %s ended with result '%s'", spec->name,
                                 w.result);
        return 0;
}

static int call_unit_method(sd_bus *bus, const char *method, const char *name, bool wait) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_(job_wait_done) JobWait w = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *job;
        int r;

        if (wait) {
                r = sd_bus_match_signal(bus, &slot, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                        "JobRemoved", on_job_removed, &w);
                if (r < 0)
                        return error_set(r, "cannot watch systemd jobs: %s", strerror(-r));
        }

        if (streq(method, "StopUnit"))
                r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, method,
                                       &error, &reply, "ss", name, "replace");
        else
                r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, method,
                                       &error, &reply, "s", name);
        if (r < 0) {
                bool missing = sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit");

                r = missing ? -ENOENT
                            : error_set(r, "%s of %s failed: %s", method, name,
                                        error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                return r;
        }
        if (!wait)
                return 0;

        r = sd_bus_message_read(reply, "o", &job);
        if (r < 0)
                return error_set(r, "unexpected reply from systemd: %s", strerror(-r));
        return wait_for_job(bus, &w, job);
}

int unit_stop(sd_bus *bus, const char *name) {
        int r = call_unit_method(bus, "StopUnit", name, true);

        return r == -ENOENT ? 0 : r;
}

int unit_reset_failed(sd_bus *bus, const char *name) {
        int r = call_unit_method(bus, "ResetFailedUnit", name, false);

        return r == -ENOENT ? 0 : r;
}

int unit_kill(sd_bus *bus, const char *name, int signo) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "KillUnit", &error,
                               NULL, "ssi", name, "main", (int32_t) signo);
        if (r < 0) {
                r = error_set(r, "cannot signal %s: %s", name, error.message ?: strerror(-r));
                sd_bus_error_free(&error);
        }
        return r;
}

static int get_string_property(sd_bus *bus, const char *path, const char *iface, const char *prop,
                               char **ret) {
        return sd_bus_get_property_string(bus, SYSTEMD_DEST, path, iface, prop, NULL, ret);
}

int unit_get_state(sd_bus *bus, const char *name, UnitState *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(unit_state_done) UnitState s = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        int r;

        r = sd_bus_call_method(bus, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "GetUnit", &error,
                               &reply, "s", name);
        if (r < 0) {
                bool missing = sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit");

                sd_bus_error_free(&error);
                if (!missing)
                        return error_set(r, "cannot query %s: %s", name, strerror(-r));
                /* Units that ended cleanly are collected at once: not loaded means inactive. */
                s.active_state = strdup("inactive");
                s.sub_state = strdup("dead");
                if (!s.active_state || !s.sub_state)
                        return -ENOMEM;
                *ret = s;
                s = (UnitState) {};
                return 0;
        }

        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return r;

        s.loaded = true;
        if ((r = get_string_property(bus, path, "org.freedesktop.systemd1.Unit", "ActiveState",
                                     &s.active_state)) < 0 ||
            (r = get_string_property(bus, path, "org.freedesktop.systemd1.Unit", "SubState",
                                     &s.sub_state)) < 0 ||
            (r = get_string_property(bus, path, "org.freedesktop.systemd1.Service", "Result",
                                     &s.result)) < 0)
                return error_set(r, "cannot read the state of %s: %s", name, strerror(-r));

        (void) sd_bus_get_property_trivial(bus, SYSTEMD_DEST, path, "org.freedesktop.systemd1.Service",
                                           "MainPID", NULL, 'u', &s.main_pid);
        (void) sd_bus_get_property_trivial(bus, SYSTEMD_DEST, path, "org.freedesktop.systemd1.Service",
                                           "ExecMainCode", NULL, 'i', &s.exec_main_code);
        (void) sd_bus_get_property_trivial(bus, SYSTEMD_DEST, path, "org.freedesktop.systemd1.Service",
                                           "ExecMainStatus", NULL, 'i', &s.exec_main_status);

        *ret = s;
        s = (UnitState) {};
        return 0;
}

int unit_list(sd_bus *bus, const char *pattern, char ***ret_names, char ***ret_states) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_strv_free_ char **names = calloc(1, sizeof(char *)), **states = calloc(1, sizeof(char *));
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *name, *active;
        int r;

        if (!names || !states)
                return -ENOMEM;

        r = sd_bus_message_new_method_call(bus, &m, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "ListUnitsByPatterns");
        if (r >= 0)
                r = sd_bus_message_append(m, "as", 0);
        if (r >= 0)
                r = sd_bus_message_append(m, "as", 1, pattern);
        if (r < 0)
                return r;

        r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r < 0) {
                r = error_set(r, "cannot list units: %s", error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                return r;
        }

        r = sd_bus_message_enter_container(reply, 'a', "(ssssssouso)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "(ssssssouso)", &name, NULL, NULL, &active, NULL,
                                        NULL, NULL, NULL, NULL, NULL)) > 0)
                if (strv_extend(&names, name) < 0 || strv_extend(&states, active) < 0)
                        return -ENOMEM;
        if (r < 0)
                return r;

        *ret_names = TAKE_PTR(names);
        *ret_states = TAKE_PTR(states);
        return 0;
}
