/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cloudimg.h"
#include "config.h"
#include "error.h"
#include "fileio.h"
#include "format.h"
#include "strv.h"

#define CONFIG_FILE_MAX (1024 * 1024)

typedef enum ConfigValueType {
        CONFIG_STRING,
        CONFIG_LOG_LEVEL,
        CONFIG_UNSIGNED,
        CONFIG_SIZE,
} ConfigValueType;

typedef struct ConfigKey {
        const char *section;
        const char *key;
        const char *env;
        ConfigValueType type;
        size_t offset;
        unsigned max;      /* CONFIG_UNSIGNED: values from 1 to max */
} ConfigKey;

static const ConfigKey config_keys[] = {
        { "Cocoon", "RootDir", "COCOON_ROOT_DIR", CONFIG_STRING, offsetof(Config, root_dir) },
        { "Cocoon", "RunDir", "COCOON_RUN_DIR", CONFIG_STRING, offsetof(Config, run_dir) },
        { "Cocoon", "LogDir", "COCOON_LOG_DIR", CONFIG_STRING, offsetof(Config, log_dir) },
        { "Cocoon", "LogLevel", "COCOON_LOG_LEVEL", CONFIG_LOG_LEVEL, offsetof(Config, log_level) },
        { "Network", "CNIConfDir", "COCOON_CNI_CONF_DIR", CONFIG_STRING, offsetof(Config, cni_conf_dir) },
        { "Network", "CNIBinDir", "COCOON_CNI_BIN_DIR", CONFIG_STRING, offsetof(Config, cni_bin_dir) },
        { "Network", "DNS", "COCOON_DNS", CONFIG_STRING, offsetof(Config, dns) },
        { "Images", "InsecureRegistries", "COCOON_INSECURE_REGISTRIES", CONFIG_STRING,
          offsetof(Config, insecure_registries) },
        { "Images", "PullConcurrency", "COCOON_PULL_CONCURRENCY", CONFIG_UNSIGNED,
          offsetof(Config, pull_concurrency), 32 },
        { "Images", "CloudImageMaxSize", "COCOON_CLOUD_IMAGE_MAX_SIZE", CONFIG_SIZE,
          offsetof(Config, cloud_image_max_size) },
        { "VM", "StopTimeoutSec", "COCOON_STOP_TIMEOUT_SEC", CONFIG_UNSIGNED,
          offsetof(Config, stop_timeout_sec), 3600 },
        { "VM", "RootPassword", "COCOON_ROOT_PASSWORD", CONFIG_STRING, offsetof(Config, root_password) },
        { "VM", "Accelerator", "COCOON_ACCELERATOR", CONFIG_STRING, offsetof(Config, accelerator) },
        { "VM", "Firmware", "COCOON_FIRMWARE", CONFIG_STRING, offsetof(Config, firmware) },
};

void config_done(Config *c) {
        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++)
                if (config_keys[i].type == CONFIG_STRING) {
                        char **p = (char **) ((char *) c + config_keys[i].offset);
                        free(*p);
                        *p = NULL;
                }
}

static int config_set(Config *c, const ConfigKey *k, const char *value, const char *origin) {
        void *p = (char *) c + k->offset;

        switch (k->type) {
        case CONFIG_STRING: {
                char *v = strdup(value);

                if (!v)
                        return -ENOMEM;
                free(*(char **) p);
                *(char **) p = v;
                return 0;
        }
        case CONFIG_LOG_LEVEL: {
                LogLevel l = log_level_from_string(value);

                if (l < 0)
                        return error_set(-EINVAL, "invalid log level '%s' in %s: expected "
                                                  "debug, info, warn or error", value, origin);
                *(LogLevel *) p = l;
                return 0;
        }
        case CONFIG_UNSIGNED: {
                char *end;
                unsigned long v;

                errno = 0;
                v = strtoul(value, &end, 10);
                if (errno != 0 || end == value || *end || v == 0 || v > k->max || value[0] == '-')
                        return error_set(-EINVAL, "invalid value '%s' for %s in %s: expected a "
                                                  "number from 1 to %u", value, k->key, origin, k->max);
                *(unsigned *) p = (unsigned) v;
                return 0;
        }
        case CONFIG_SIZE: {
                uint64_t v;
                int r;

                r = parse_size(value, &v);
                if (r < 0)
                        return error_prefix(r, "%s in %s: ", k->key, origin);
                if (v == 0)
                        return error_set(-EINVAL, "invalid value '%s' for %s in %s: expected a "
                                                  "size above 0", value, k->key, origin);
                *(uint64_t *) p = v;
                return 0;
        }
        }
        return -EINVAL;
}

static char *strip(char *s) {
        char *e;

        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                *--e = '\0';
        return s;
}

int config_parse_ini(Config *c, const char *text, const char *filename) {
        _cleanup_free_ char *copy = strdup(text), *section = NULL;
        char *line, *saveptr = NULL;
        unsigned lineno = 0;

        if (!copy)
                return -ENOMEM;

        /* strsep keeps empty lines so that line numbers in messages stay right. */
        for (char *rest = copy; (line = strsep(&rest, "\n"));) {
                char *eq, *key, *value, origin[512];
                const ConfigKey *k = NULL;
                int r;

                lineno++;
                line = strip(line);
                if (!*line || *line == '#' || *line == ';')
                        continue;

                snprintf(origin, sizeof(origin), "%s:%u", filename, lineno);

                if (*line == '[') {
                        size_t n = strlen(line);

                        if (n < 3 || line[n - 1] != ']')
                                return error_set(-EINVAL, "invalid section header '%s' at %s",
                                                 line, origin);
                        free(section);
                        section = strndup(line + 1, n - 2);
                        if (!section)
                                return -ENOMEM;
                        continue;
                }

                eq = strchr(line, '=');
                if (!eq)
                        return error_set(-EINVAL, "missing '=' in line '%s' at %s", line, origin);
                if (!section)
                        return error_set(-EINVAL, "assignment outside of any section at %s",
                                         origin);

                *eq = '\0';
                key = strip(line);
                value = strip(eq + 1);

                for (size_t i = 0; i < ELEMENTSOF(config_keys); i++)
                        if (streq(config_keys[i].section, section) &&
                            streq(config_keys[i].key, key))
                                k = &config_keys[i];
                if (!k) {
                        log_warning("%s: unknown key '%s' in section [%s], ignoring.", origin,
                                    key, section);
                        continue;
                }

                r = config_set(c, k, value, origin);
                if (r < 0)
                        return r;
        }

        (void) saveptr;
        return 0;
}

static int config_load_file(Config *c, const char *path, bool must_exist) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = read_file(path, CONFIG_FILE_MAX, &text, NULL);
        if (r == -ENOENT && !must_exist)
                return 0;
        if (r < 0)
                return error_set(r, "cannot read configuration file '%s': %s", path,
                                 strerror(-r));
        return config_parse_ini(c, text, path);
}

static int filter_conf(const struct dirent *de) {
        return de->d_name[0] != '.' && endswith(de->d_name, ".conf");
}

static int config_load_dropins(Config *c, const char *main_file) {
        _cleanup_free_ char *dir = strjoin(main_file, ".d", NULL);
        struct dirent **names = NULL;
        int n, r = 0;

        if (!dir)
                return -ENOMEM;

        /* alphasort gives the lexical order systemd uses for drop-ins. */
        n = scandir(dir, &names, filter_conf, alphasort);
        if (n < 0)
                return errno == ENOENT ? 0 : error_set(-errno, "cannot read '%s': %m", dir);

        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *p = strjoin(dir, "/", names[i]->d_name, NULL);

                if (r >= 0)
                        r = p ? config_load_file(c, p, true) : -ENOMEM;
                free(names[i]);
        }
        free(names);
        return r;
}

static int config_defaults(Config *c) {
        *c = (Config) {
                .root_dir = strdup("/var/lib/cocoon"),
                .log_dir = strdup("/var/log/cocoon"),
                .cni_conf_dir = strdup("/etc/cni/net.d"),
                .cni_bin_dir = strdup("/opt/cni/bin"),
                .dns = strdup("8.8.8.8,1.1.1.1"),
                .root_password = strdup(""),
                .accelerator = strdup("auto"),
                .insecure_registries = strdup(""),
                .log_level = LOG_LEVEL_INFO,
                .pull_concurrency = 4,
                .cloud_image_max_size = CLOUDIMG_MAX_SIZE_DEFAULT,
                .firmware = strdup(""),
                .stop_timeout_sec = 30,
        };
        if (!c->root_dir || !c->log_dir || !c->cni_conf_dir || !c->cni_bin_dir || !c->dns || !c->accelerator ||
            !c->root_password || !c->insecure_registries || !c->firmware)
                return -ENOMEM;
        return 0;
}

static const ConfigKey *config_key_by_offset(size_t offset) {
        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++)
                if (config_keys[i].offset == offset)
                        return &config_keys[i];
        return NULL;
}

int config_load(Config *c, const ConfigFlags *flags) {
        const struct {
                size_t offset;
                const char *value;
        } flag_values[] = {
                { offsetof(Config, root_dir), flags->root_dir },
                { offsetof(Config, run_dir), flags->run_dir },
                { offsetof(Config, log_dir), flags->log_dir },
                { offsetof(Config, cni_conf_dir), flags->cni_conf_dir },
                { offsetof(Config, cni_bin_dir), flags->cni_bin_dir },
                { offsetof(Config, dns), flags->dns },
                { offsetof(Config, root_password), flags->root_password },
                { offsetof(Config, log_level), flags->log_level },
        };
        const char *file = flags->config_file ?: CONFIG_FILE_DEFAULT;
        int r;

        r = config_defaults(c);
        if (r < 0)
                return r;

        r = config_load_file(c, file, flags->config_file != NULL);
        if (r < 0)
                return r;
        r = config_load_dropins(c, file);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++) {
                const char *v = getenv(config_keys[i].env);
                char origin[128];

                if (!v)
                        continue;
                snprintf(origin, sizeof(origin), "$%s", config_keys[i].env);
                r = config_set(c, &config_keys[i], v, origin);
                if (r < 0)
                        return r;
        }

        /* The Go Cocoon read the default root password from this variable. */
        if (!getenv("COCOON_ROOT_PASSWORD") && getenv("COCOON_DEFAULT_ROOT_PASSWORD")) {
                r = config_set(c, config_key_by_offset(offsetof(Config, root_password)),
                               getenv("COCOON_DEFAULT_ROOT_PASSWORD"),
                               "$COCOON_DEFAULT_ROOT_PASSWORD");
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < ELEMENTSOF(flag_values); i++) {
                const ConfigKey *k = config_key_by_offset(flag_values[i].offset);

                if (!flag_values[i].value)
                        continue;
                r = config_set(c, k, flag_values[i].value, "the command line");
                if (r < 0)
                        return r;
        }

        /* The run directory follows the root directory unless it was set on its own, so that a
         * second installation under another --root-dir never shares per-VM runtime files. */
        if (!c->run_dir) {
                c->run_dir = strjoin(c->root_dir, "/run", NULL);
                if (!c->run_dir)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++) {
                const char *v;

                if (config_keys[i].type != CONFIG_STRING ||
                    !strstr(config_keys[i].key, "Dir"))
                        continue;
                v = *(char **) ((char *) c + config_keys[i].offset);
                if (isempty(v) || v[0] != '/')
                        return error_set(-EINVAL, "%s must be an absolute path, got '%s'",
                                         config_keys[i].key, v ?: "");
        }

        return 0;
}

void config_dump(const Config *c, FILE *f) {
        const char *section = NULL;

        for (size_t i = 0; i < ELEMENTSOF(config_keys); i++) {
                const ConfigKey *k = &config_keys[i];
                const void *p = (const char *) c + k->offset;

                if (!section || !streq(section, k->section)) {
                        fprintf(f, "%s[%s]\n", section ? "\n" : "", k->section);
                        section = k->section;
                }
                switch (k->type) {
                case CONFIG_STRING:
                        /* Never print a secret, only whether it is set. */
                        if (k->offset == offsetof(Config, root_password))
                                fprintf(f, "%s=%s\n", k->key,
                                        isempty(c->root_password) ? "" : "(set)");
                        else
                                fprintf(f, "%s=%s\n", k->key, *(char *const *) p ?: "");
                        break;
                case CONFIG_LOG_LEVEL:
                        fprintf(f, "%s=%s\n", k->key, log_level_to_string(*(const LogLevel *) p));
                        break;
                case CONFIG_UNSIGNED:
                        fprintf(f, "%s=%u\n", k->key, *(const unsigned *) p);
                        break;
                case CONFIG_SIZE:
                        fprintf(f, "%s=%" PRIu64 "\n", k->key, *(const uint64_t *) p);
                        break;
                }
        }
}
