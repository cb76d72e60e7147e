/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "strv.h"

enum {
        ARG_CONFIG = 0x1000,
        ARG_ROOT_DIR,
        ARG_RUN_DIR,
        ARG_LOG_DIR,
        ARG_CNI_CONF_DIR,
        ARG_CNI_BIN_DIR,
        ARG_DNS,
        ARG_ROOT_PASSWORD,
        ARG_LOG_LEVEL,
        ARG_HELP = 'h',
};

static const CliOption global_options[] = {
        { "config", 0, "FILE", "configuration file (default " CONFIG_FILE_DEFAULT ")", ARG_CONFIG },
        { "root-dir", 0, "DIR", "state directory for images and VMs ($COCOON_ROOT_DIR, default /var/lib/cocoon)", ARG_ROOT_DIR },
        { "run-dir", 0, "DIR", "runtime directory for VM sockets and disks ($COCOON_RUN_DIR, default ROOT-DIR/run)", ARG_RUN_DIR },
        { "log-dir", 0, "DIR", "directory for VM logs ($COCOON_LOG_DIR, default /var/log/cocoon)", ARG_LOG_DIR },
        { "cni-conf-dir", 0, "DIR", "CNI network configurations (default /etc/cni/net.d)", ARG_CNI_CONF_DIR },
        { "cni-bin-dir", 0, "DIRS", "CNI plugin directories, colon-separated (default /opt/cni/bin; Debian installs them in /usr/lib/cni)", ARG_CNI_BIN_DIR },
        { "dns", 0, "IPS", "DNS servers for guests, comma-separated ($COCOON_DNS, default 8.8.8.8,1.1.1.1)", ARG_DNS },
        { "root-password", 0, "PASSWORD", "root password for cloud-image guests (stored hashed)", ARG_ROOT_PASSWORD },
        { "log-level", 0, "LEVEL", "debug, info, warn or error (default info)", ARG_LOG_LEVEL },
        { "help", 'h', NULL, "show this help", ARG_HELP },
        {},
};

static size_t options_count(const CliOption *o) {
        size_t n = 0;

        while (o && o[n].name)
                n++;
        return n;
}

static void print_options(const CliOption *options, FILE *f) {
        for (const CliOption *o = options; o && o->name; o++) {
                char left[64];

                if (o->short_name)
                        snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name,
                                 o->arg ? " " : "", o->arg ?: "");
                else
                        snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "",
                                 o->arg ?: "");
                fprintf(f, "  %-28s %s\n", left, o->help);
        }
}

static const char *const groups[][2] = {
        { "image", "Manage VM images (OCI images and cloud images)" },
        { "vm", "Manage virtual machines" },
};

static void print_main_help(FILE *f) {
        fprintf(f, "Usage: cocoon [GLOBAL OPTIONS] GROUP COMMAND [OPTIONS] [ARGS...]\n\n"
                   "Run microVMs from OCI images and cloud images as systemd units.\n\n"
                   "Groups:\n");
        for (size_t i = 0; i < ELEMENTSOF(groups); i++)
                fprintf(f, "  %-12s %s\n", groups[i][0], groups[i][1]);
        fprintf(f, "\nCommands:\n");
        for (size_t i = 0; cli_commands[i]; i++)
                if (!cli_commands[i]->group)
                        fprintf(f, "  %-12s %s\n", cli_commands[i]->name,
                                cli_commands[i]->summary);
        fprintf(f, "\nGlobal options:\n");
        print_options(global_options, f);
        fprintf(f, "\nRun 'cocoon GROUP --help' or 'cocoon GROUP COMMAND --help' for more.\n");
}

static bool group_exists(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(groups); i++)
                if (streq(groups[i][0], name))
                        return true;
        return false;
}

static void print_group_help(const char *group, FILE *f) {
        fprintf(f, "Usage: cocoon %s COMMAND [OPTIONS] [ARGS...]\n\n", group);
        for (size_t i = 0; i < ELEMENTSOF(groups); i++)
                if (streq(groups[i][0], group))
                        fprintf(f, "%s.\n\n", groups[i][1]);
        fprintf(f, "Commands:\n");
        for (size_t i = 0; cli_commands[i]; i++)
                if (cli_commands[i]->group && streq(cli_commands[i]->group, group) &&
                    !cli_commands[i]->hidden)
                        fprintf(f, "  %-12s %s\n", cli_commands[i]->name,
                                cli_commands[i]->summary);
        fprintf(f, "\nRun 'cocoon %s COMMAND --help' for the options of a command.\n", group);
}

void cli_print_command_help(const CliCommand *c, FILE *f) {
        fprintf(f, "Usage: cocoon %s%s%s%s [OPTIONS]%s%s\n\n", c->group ?: "", c->group ? " " : "",
                c->name, c->alias ? "" : "", c->args ? " " : "", c->args ?: "");
        fprintf(f, "%s.\n", c->summary);
        if (c->alias)
                fprintf(f, "Alias: %s\n", c->alias);
        if (c->description)
                fprintf(f, "\n%s\n", c->description);
        if (options_count(c->options) > 0) {
                fprintf(f, "\nOptions:\n");
                print_options(c->options, f);
        }
        fprintf(f, "\nGlobal options:\n");
        print_options(global_options, f);
}

static const CliCommand *find_command(const char *group, const char *name) {
        for (size_t i = 0; cli_commands[i]; i++) {
                const CliCommand *c = cli_commands[i];

                if ((c->group == NULL) != (group == NULL))
                        continue;
                if (group && !streq(c->group, group))
                        continue;
                if (streq(c->name, name) || (c->alias && streq(c->alias, name)))
                        return c;
        }
        return NULL;
}

static const CliOption *find_global_option(const char *arg) {
        for (const CliOption *o = global_options; o->name; o++) {
                size_t n = strlen(o->name);

                if (startswith(arg, "--") && strneq(arg + 2, o->name, n) &&
                    (arg[2 + n] == '\0' || arg[2 + n] == '='))
                        return o;
        }
        return NULL;
}

/* Locate the group and command words, skipping global options (and their separate
 * arguments) that come before them. Returns the number of command words found (0-2). */
static int locate_command(int argc, char **argv, int ret_index[2]) {
        int found = 0;

        for (int i = 1; i < argc && found < 2; i++) {
                const CliOption *o;

                if (streq(argv[i], "--"))
                        break;
                if (argv[i][0] == '-') {
                        o = find_global_option(argv[i]);
                        if (o && o->arg && !strchr(argv[i], '='))
                                i++;
                        continue;
                }

                ret_index[found++] = i;
                if (found == 1 && !group_exists(argv[i]))
                        break;
        }
        return found;
}

static int build_getopt(const CliOption *cmd, struct option **ret_long, char **ret_short) {
        size_t n = options_count(cmd) + options_count(global_options), k = 0;
        struct option *lo = calloc(n + 1, sizeof(struct option));
        char *so = calloc(2 * n + 3, 1), *p;
        const CliOption *lists[] = { cmd, global_options };

        if (!lo || !so) {
                free(lo);
                free(so);
                return -ENOMEM;
        }

        p = so;
        *p++ = ':';  /* report a missing argument as ':' rather than '?' */
        for (size_t l = 0; l < ELEMENTSOF(lists); l++)
                for (const CliOption *o = lists[l]; o && o->name; o++) {
                        lo[k++] = (struct option) { o->name, o->arg ? required_argument : no_argument,
                                                    NULL, o->id };
                        if (o->short_name) {
                                *p++ = (char) o->short_name;
                                if (o->arg)
                                        *p++ = ':';
                        }
                }

        *ret_long = lo;
        *ret_short = so;
        return 0;
}

static int handle_global_option(ConfigFlags *flags, int id, const char *arg) {
        switch (id) {
        case ARG_CONFIG:
                flags->config_file = arg;
                return 1;
        case ARG_ROOT_DIR:
                flags->root_dir = arg;
                return 1;
        case ARG_RUN_DIR:
                flags->run_dir = arg;
                return 1;
        case ARG_LOG_DIR:
                flags->log_dir = arg;
                return 1;
        case ARG_CNI_CONF_DIR:
                flags->cni_conf_dir = arg;
                return 1;
        case ARG_CNI_BIN_DIR:
                flags->cni_bin_dir = arg;
                return 1;
        case ARG_DNS:
                flags->dns = arg;
                return 1;
        case ARG_ROOT_PASSWORD:
                flags->root_password = arg;
                return 1;
        case ARG_LOG_LEVEL:
                flags->log_level = arg;
                return 1;
        }
        return 0;
}

static int usage_error(const char *hint, const char *fmt, ...) _printf_(2, 3);
static int usage_error(const char *hint, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nRun '%s --help' for usage.\n", hint);
        return EXIT_USAGE;
}

static int run_command(const CliCommand *c, int argc, char **argv) {
        _cleanup_free_ struct option *lo = NULL;
        _cleanup_free_ char *so = NULL, *hint = NULL;
        _cleanup_(config_done) Config config = {};
        ConfigFlags flags = {};
        bool help = false;
        int opt, r;

        hint = c->group ? strjoin("cocoon ", c->group, " ", c->name, NULL)
                        : strjoin("cocoon ", c->name, NULL);
        if (!hint || build_getopt(c->options, &lo, &so) < 0) {
                log_error("Out of memory.");
                return EXIT_FAILURE;
        }

        optind = 0;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, so, lo, NULL)) >= 0) {
                if (opt == '?') {
                        if (optopt)
                                return usage_error(hint, "Unknown option '-%c'.", optopt);
                        return usage_error(hint, "Unknown option '%s'.", argv[optind - 1]);
                }
                if (opt == ':')
                        return usage_error(hint, "Option '%s' requires an argument.",
                                           argv[optind - 1]);
                if (opt == ARG_HELP) {
                        help = true;
                        continue;
                }
                if (handle_global_option(&flags, opt, optarg))
                        continue;

                r = c->parse_option(opt, optarg);
                if (r < 0)
                        return usage_error(hint, "%s.", error_message(r));
        }

        if (help) {
                cli_print_command_help(c, stdout);
                return EXIT_SUCCESS;
        }

        argc -= optind;
        argv += optind;
        if (argc < c->min_args)
                return usage_error(hint, "Missing argument: '%s' needs %s%s", hint, c->args,
                                   endswith(c->args ?: "", "...") ? "" : ".");
        if (c->max_args >= 0 && argc > c->max_args)
                return usage_error(hint, "Too many arguments: '%s' takes %s%s.", hint,
                                   c->max_args == 0 ? "none" : c->args ?: "none",
                                   c->max_args == 0 ? "" : " only");

        r = config_load(&config, &flags);
        if (r < 0) {
                log_error("Invalid configuration: %s", error_message(r));
                return EXIT_FAILURE;
        }
        log_set_max_level(config.log_level);

        return c->run(&config, argc, argv);
}

int cli_main(int argc, char **argv) {
        _cleanup_free_ char **rest = NULL;
        const CliCommand *c;
        int idx[2], found, n = 0;

        found = locate_command(argc, argv, idx);
        if (found == 0) {
                for (int i = 1; i < argc; i++) {
                        if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                                print_main_help(stdout);
                                return EXIT_SUCCESS;
                        }
                        /* As most tools do, --version alone means the version command. */
                        if (streq(argv[i], "--version") && argc == 2)
                                return run_command(find_command(NULL, "version"), 1, argv);
                }
                print_main_help(stderr);
                return EXIT_USAGE;
        }

        if (group_exists(argv[idx[0]])) {
                if (found < 2) {
                        bool help = false;

                        for (int i = 1; i < argc; i++)
                                help = help || streq(argv[i], "--help") || streq(argv[i], "-h");
                        print_group_help(argv[idx[0]], help ? stdout : stderr);
                        return help ? EXIT_SUCCESS : EXIT_USAGE;
                }
                c = find_command(argv[idx[0]], argv[idx[1]]);
                if (!c) {
                        char hint[64];

                        snprintf(hint, sizeof(hint), "cocoon %s", argv[idx[0]]);
                        return usage_error(hint, "Unknown command '%s' for '%s'.", argv[idx[1]],
                                           hint);
                }
        } else {
                c = find_command(NULL, argv[idx[0]]);
                if (!c)
                        return usage_error("cocoon", "Unknown command '%s'.", argv[idx[0]]);
                found = 1;
        }

        /* Hand the command everything but the group and command words. */
        rest = calloc(argc + 1, sizeof(char *));
        if (!rest) {
                log_error("Out of memory.");
                return EXIT_FAILURE;
        }
        for (int i = 0; i < argc; i++)
                if (!(i == idx[0] || (found == 2 && i == idx[1])))
                        rest[n++] = argv[i];

        return run_command(c, n, rest);
}
