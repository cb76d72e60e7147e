/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL;
        _cleanup_(auth_credentials_freep) AuthCredentials *creds = NULL;
        _cleanup_free_ char *s = NULL;

        s = strndup((const char *) data, size);
        if (!s)
                return 0;

        if (auth_challenge_parse(s, &c) >= 0 && c->scheme == AUTH_SCHEME_BEARER && !c->realm)
                abort();

        /* The same bytes as a credentials file. */
        (void) auth_credentials_from_json((const char *) data, size, "fuzz.json", "docker.io", &creds);
        return 0;
}
