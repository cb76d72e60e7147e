/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/utsname.h>

#include <archive.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <systemd/sd-bus.h>

#include "cocoon-build.h"
#include "commands.h"
#include "version.h"

static int version_parse_option(int id, const char *arg) {
        return -EINVAL;
}

static int version_run(const Config *config, int argc, char **argv) {
        struct utsname u = {};

        (void) uname(&u);

        printf("Version:    %s\n", PROJECT_VERSION);
        printf("Git hash:   %s\n", GIT_REVISION);
        printf("Built:      %s\n", BUILD_TIME);
        printf("OS/Arch:    linux/%s\n", u.machine);
        printf("Libraries:  libsystemd %d, %s, jansson %s, %s, %s\n", LIBSYSTEMD_VERSION,
               curl_version(), jansson_version_str(), archive_version_details(),
               OpenSSL_version(OPENSSL_VERSION));
        return 0;
}

const CliCommand cmd_version = {
        .name = "version",
        .summary = "Show the version, git revision, build time and libraries",
        .max_args = 0,
        .parse_option = version_parse_option,
        .run = version_run,
};
