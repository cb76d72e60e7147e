/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

#include "macro.h"

typedef enum AuthScheme {
        AUTH_SCHEME_BASIC,
        AUTH_SCHEME_BEARER,
        _AUTH_SCHEME_MAX,
        _AUTH_SCHEME_INVALID = -EINVAL,
} AuthScheme;

/* One challenge of a WWW-Authenticate header (RFC 7235) with the parameters registries send. */
typedef struct AuthChallenge {
        AuthScheme scheme;
        char *realm;
        char *service;
        char *scope; /* space-separated scopes "type:name:action[,action]", as sent */
        char *error; /* e.g. "insufficient_scope" */
} AuthChallenge;

/* Parse a WWW-Authenticate header value. When it carries several challenges, the Bearer one is
 * preferred over Basic. Returns -EINVAL with a reason for malformed input, -EOPNOTSUPP when no
 * challenge uses a supported scheme, and -EBADMSG for a Bearer challenge without a realm. */
int auth_challenge_parse(const char *header, AuthChallenge **ret);
AuthChallenge *auth_challenge_free(AuthChallenge *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuthChallenge *, auth_challenge_free);

typedef struct AuthCredentials {
        char *username;
        char *password;
} AuthCredentials;

AuthCredentials *auth_credentials_free(AuthCredentials *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(AuthCredentials *, auth_credentials_free);

/* The path of the credentials file: $REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json, else
 * ~/.docker/config.json. Returns -ENOENT when none of these can be built (no $HOME). */
int auth_config_path(char **ret);

/* Look up the credentials for registry (host[:port] as in a Reference) in the JSON text of a
 * Docker config file. For "docker.io" the "https://index.docker.io/v1/" key matches too. path is
 * only used in reasons. Returns 0 and *ret = NULL when the file has no entry for the registry. */
int auth_credentials_from_json(const char *json, size_t size, const char *path, const char *registry,
                               AuthCredentials **ret);

/* Look up basic credentials for registry in the file named by auth_config_path(). A missing file
 * means no credentials (returns 0 and *ret = NULL); a malformed one is an error naming the file. */
int auth_credentials_find(const char *registry, AuthCredentials **ret);

/* "Basic <base64(user:password)>", the value of an Authorization header. */
int auth_basic_header_value(const AuthCredentials *c, char **ret);
