/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

#include "cocoon-build.h"
#include "log.h"

#define CONFIG_FILE_DEFAULT SYSCONFDIR "/cocoon/cocoon.conf"

/* Settings shared by all commands. Each value comes, by precedence, from a command-line flag, an
 * environment variable, the configuration file, or the built-in default. */
typedef struct Config {
        char *root_dir;
        char *run_dir;
        char *log_dir;
        char *cni_conf_dir;
        char *cni_bin_dir;
        char *dns;                  /* comma- or semicolon-separated IP addresses */
        char *root_password;
        LogLevel log_level;
        char *insecure_registries;  /* space- or comma-separated registry hosts */
        unsigned pull_concurrency;  /* layers downloaded at once */
        uint64_t cloud_image_max_size; /* bytes; the largest cloud image download accepted */
        char *accelerator;          /* QEMU: "auto", "kvm" or "tcg" */
        char *firmware;             /* UEFI firmware for cloud images; empty = search the defaults */
        unsigned stop_timeout_sec;  /* graceful guest shutdown before SIGTERM */
} Config;

/* Values given on the command line; NULL means "not given". */
typedef struct ConfigFlags {
        const char *config_file;
        const char *root_dir;
        const char *run_dir;
        const char *log_dir;
        const char *cni_conf_dir;
        const char *cni_bin_dir;
        const char *dns;
        const char *root_password;
        const char *log_level;
} ConfigFlags;

void config_done(Config *c);

/* Fill c from defaults, then the configuration file(s), then the environment, then flags. When
 * flags->config_file is NULL, read CONFIG_FILE_DEFAULT and its cocoon.conf.d drop-ins if present;
 * when it is given, that file must exist. */
int config_load(Config *c, const ConfigFlags *flags);

/* Apply the INI text of one file on top of c. Pure apart from warnings for unknown keys; the
 * filename is only used in messages. */
int config_parse_ini(Config *c, const char *text, const char *filename);

/* Print every key, its section and its value, as `cocoon config show` would. */
void config_dump(const Config *c, FILE *f);
