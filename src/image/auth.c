/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "auth.h"
#include "error.h"

/* A config file is a few KiB; anything far larger is not a credentials file. */
#define AUTH_CONFIG_SIZE_MAX (4U * 1024U * 1024U)

typedef struct ChallengeParser {
        const char *input;
        const char *p;
} ChallengeParser;

static bool char_is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool char_is_token68(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                (c != '\0' && strchr("-._~+/", c));
}

static void parser_skip_space(ChallengeParser *cp) {
        while (*cp->p == ' ' || *cp->p == '\t')
                cp->p++;
}

static size_t parser_token(ChallengeParser *cp) {
        size_t n = 0;

        while (char_is_tchar(cp->p[n]))
                n++;

        return n;
}

static int parser_quoted_string(ChallengeParser *cp, char **ret) {
        _cleanup_free_ char *value = NULL;
        size_t n = 0;

        value = malloc(strlen(cp->p) + 1);
        if (!value)
                return -ENOMEM;

        /* cp->p is at the opening quote. */
        for (cp->p++;; cp->p++) {
                char c = *cp->p;

                if (c == '\0')
                        return error_set(-EINVAL, "invalid WWW-Authenticate header '%s': unterminated quoted string",
                                         cp->input);
                if (c == '"')
                        break;
                if (c == '\\') {
                        cp->p++;
                        c = *cp->p;
                        if (c == '\0')
                                return error_set(-EINVAL,
                                                 "invalid WWW-Authenticate header '%s': unterminated quoted string",
                                                 cp->input);
                }
                value[n++] = c;
        }
        cp->p++;

        value[n] = '\0';
        *ret = TAKE_PTR(value);
        return 0;
}

static int parser_param_value(ChallengeParser *cp, const char *name, size_t name_length, char **ret) {
        size_t n;
        char *value;

        if (*cp->p == '"')
                return parser_quoted_string(cp, ret);

        n = parser_token(cp);
        if (n == 0)
                return error_set(-EINVAL, "invalid WWW-Authenticate header '%s': missing value for parameter '%.*s'",
                                 cp->input, (int) name_length, name);

        value = strndup(cp->p, n);
        if (!value)
                return -ENOMEM;
        cp->p += n;

        *ret = value;
        return 0;
}

static char **challenge_param_slot(AuthChallenge *c, const char *name, size_t length) {
        static const struct {
                const char *name;
                size_t offset;
        } table[] = {
                { "realm", offsetof(AuthChallenge, realm) },
                { "service", offsetof(AuthChallenge, service) },
                { "scope", offsetof(AuthChallenge, scope) },
                { "error", offsetof(AuthChallenge, error) },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strlen(table[i].name) == length && strncasecmp(table[i].name, name, length) == 0)
                        return (char **) ((uint8_t *) c + table[i].offset);

        return NULL;
}

/* Parse "name = value" pairs up to the end of the challenge. Stops in front of a token that is
 * not followed by '=', which starts the next challenge. */
static int parser_params(ChallengeParser *cp, AuthChallenge *c) {
        for (;;) {
                _cleanup_free_ char *value = NULL;
                const char *start = cp->p, *name = cp->p;
                size_t name_length;
                char **slot;
                int r;

                name_length = parser_token(cp);
                if (name_length == 0)
                        return 0;
                cp->p += name_length;
                parser_skip_space(cp);

                if (*cp->p != '=') {
                        cp->p = start;
                        return 0;
                }
                cp->p++;
                parser_skip_space(cp);

                r = parser_param_value(cp, name, name_length, &value);
                if (r < 0)
                        return r;

                slot = challenge_param_slot(c, name, name_length);
                if (slot) {
                        if (*slot)
                                return error_set(-EINVAL, "invalid WWW-Authenticate header '%s': duplicate parameter '%.*s'",
                                                 cp->input, (int) name_length, name);
                        *slot = TAKE_PTR(value);
                }

                parser_skip_space(cp);
                if (*cp->p == '\0')
                        return 0;
                if (*cp->p != ',')
                        return error_set(-EINVAL,
                                         "invalid WWW-Authenticate header '%s': expected ',' after parameter '%.*s'",
                                         cp->input, (int) name_length, name);

                while (*cp->p == ',' || *cp->p == ' ' || *cp->p == '\t')
                        cp->p++;
        }
}

/* A token68 credential ("Negotiate abc=="): only the schemes we do not support send one. */
static bool parser_skip_token68(ChallengeParser *cp) {
        const char *p = cp->p;

        while (char_is_token68(*p))
                p++;
        if (p == cp->p)
                return false;
        while (*p == '=')
                p++;

        while (*p == ' ' || *p == '\t')
                p++;
        if (*p != '\0' && *p != ',')
                return false;

        cp->p = p;
        return true;
}

static AuthScheme auth_scheme_from_string(const char *s, size_t length) {
        if (length == 5 && strncasecmp(s, "Basic", 5) == 0)
                return AUTH_SCHEME_BASIC;
        if (length == 6 && strncasecmp(s, "Bearer", 6) == 0)
                return AUTH_SCHEME_BEARER;
        return _AUTH_SCHEME_INVALID;
}

static int parser_challenge(ChallengeParser *cp, AuthChallenge **ret, const char **ret_scheme, size_t *ret_length) {
        _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL;
        const char *scheme = cp->p;
        size_t length;
        int r;

        length = parser_token(cp);
        if (length == 0)
                return error_set(-EINVAL, "invalid WWW-Authenticate header '%s': expected an authentication scheme at '%s'",
                                 cp->input, cp->p);
        cp->p += length;

        if (*cp->p != '\0' && *cp->p != ' ' && *cp->p != '\t' && *cp->p != ',')
                return error_set(-EINVAL, "invalid WWW-Authenticate header '%s': expected a space after scheme '%.*s'",
                                 cp->input, (int) length, scheme);

        c = calloc(1, sizeof(AuthChallenge));
        if (!c)
                return -ENOMEM;
        c->scheme = auth_scheme_from_string(scheme, length);

        parser_skip_space(cp);
        if (!parser_skip_token68(cp)) {
                const char *params = cp->p;

                r = parser_params(cp, c);
                if (r < 0)
                        return r;

                /* What follows the scheme is neither a token68 nor a parameter list. */
                if (cp->p == params && *cp->p != '\0' && *cp->p != ',')
                        return error_set(-EINVAL,
                                         "invalid WWW-Authenticate header '%s': unexpected text '%s' after scheme '%.*s'",
                                         cp->input, cp->p, (int) length, scheme);
        }

        *ret_scheme = scheme;
        *ret_length = length;
        *ret = TAKE_PTR(c);
        return 0;
}

int auth_challenge_parse(const char *header, AuthChallenge **ret) {
        _cleanup_(auth_challenge_freep) AuthChallenge *basic = NULL, *bearer = NULL;
        ChallengeParser cp = { .input = header, .p = header };
        const char *first_scheme = NULL;
        size_t first_length = 0;
        int r;

        for (;;) {
                _cleanup_(auth_challenge_freep) AuthChallenge *c = NULL;
                const char *scheme = NULL;
                size_t length = 0;

                while (*cp.p == ',' || *cp.p == ' ' || *cp.p == '\t')
                        cp.p++;
                if (*cp.p == '\0')
                        break;

                r = parser_challenge(&cp, &c, &scheme, &length);
                if (r < 0)
                        return r;

                if (!first_scheme) {
                        first_scheme = scheme;
                        first_length = length;
                }

                if (c->scheme == AUTH_SCHEME_BEARER && !bearer)
                        bearer = TAKE_PTR(c);
                else if (c->scheme == AUTH_SCHEME_BASIC && !basic)
                        basic = TAKE_PTR(c);
        }

        if (!first_scheme)
                return error_set(-EINVAL, "invalid WWW-Authenticate header '%s': missing authentication scheme", header);

        if (bearer) {
                if (isempty(bearer->realm))
                        return error_set(-EBADMSG, "invalid WWW-Authenticate header '%s': Bearer challenge without a realm",
                                         header);
                *ret = TAKE_PTR(bearer);
                return 0;
        }

        if (basic) {
                *ret = TAKE_PTR(basic);
                return 0;
        }

        return error_set(-EOPNOTSUPP, "unsupported authentication scheme '%.*s' (only Basic and Bearer are supported)",
                         (int) first_length, first_scheme);
}

AuthChallenge *auth_challenge_free(AuthChallenge *c) {
        if (!c)
                return NULL;

        free(c->realm);
        free(c->service);
        free(c->scope);
        free(c->error);
        free(c);
        return NULL;
}

AuthCredentials *auth_credentials_free(AuthCredentials *c) {
        if (!c)
                return NULL;

        free(c->username);
        if (c->password) {
                explicit_bzero(c->password, strlen(c->password));
                free(c->password);
        }
        free(c);
        return NULL;
}

int auth_config_path(char **ret) {
        const char *e;
        char *path;

        e = getenv("REGISTRY_AUTH_FILE");
        if (!isempty(e))
                path = strdup(e);
        else if (!isempty(e = getenv("DOCKER_CONFIG"))) {
                if (asprintf(&path, "%s/config.json", e) < 0)
                        path = NULL;
        } else if (!isempty(e = getenv("HOME"))) {
                if (asprintf(&path, "%s/.docker/config.json", e) < 0)
                        path = NULL;
        } else
                return error_set(-ENOENT, "cannot locate the registry credentials file: $HOME is not set");

        if (!path)
                return -ENOMEM;

        *ret = path;
        return 0;
}

static int base64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Strict RFC 4648 decoding; padding is optional. */
static int base64_decode(const char *s, char **ret) {
        _cleanup_free_ char *out = NULL;
        size_t length = strlen(s), n = 0;
        uint32_t bits = 0;
        unsigned nbits = 0;

        while (length > 0 && s[length - 1] == '=')
                length--;
        if (strlen(s) - length > 2 || length % 4 == 1)
                return -EINVAL;

        out = malloc(length / 4 * 3 + 3 + 1);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; i < length; i++) {
                int v = base64_value(s[i]);

                if (v < 0)
                        return -EINVAL;
                bits = (bits << 6) | (uint32_t) v;
                nbits += 6;
                if (nbits >= 8) {
                        nbits -= 8;
                        out[n++] = (char) ((bits >> nbits) & 0xff);
                }
        }

        out[n] = '\0';
        if (memchr(out, '\0', n))
                return -EINVAL;

        *ret = TAKE_PTR(out);
        return 0;
}

/* Docker writes keys as "host", "https://host" or "https://host/v1/"; compare the host part. */
static bool auth_key_matches(const char *key, const char *registry) {
        static const char *const docker_hub[] = { "docker.io", "index.docker.io", "registry-1.docker.io" };
        const char *host = key;
        size_t length;

        if (strneq(host, "https://", 8))
                host += 8;
        else if (strneq(host, "http://", 7))
                host += 7;
        length = strcspn(host, "/");

        if (strlen(registry) == length && strneq(host, registry, length))
                return true;

        if (!streq(registry, "docker.io"))
                return false;

        for (size_t i = 0; i < ELEMENTSOF(docker_hub); i++)
                if (strlen(docker_hub[i]) == length && strneq(host, docker_hub[i], length))
                        return true;

        return false;
}

static json_t *auth_find_entry(json_t *auths, const char *registry, const char **ret_key) {
        const char *key, *found_key = NULL;
        json_t *value, *found = NULL;

        json_object_foreach(auths, key, value) {
                if (streq(key, registry)) {
                        *ret_key = key;
                        return value;
                }
                if (!found && auth_key_matches(key, registry)) {
                        found = value;
                        found_key = key;
                }
        }

        *ret_key = found_key;
        return found;
}

static int auth_entry_parse(json_t *entry, const char *path, const char *key, AuthCredentials **ret) {
        _cleanup_(auth_credentials_freep) AuthCredentials *c = NULL;
        json_t *auth, *username, *password;
        int r;

        if (!json_is_object(entry))
                return error_set(-EBADMSG, "invalid credentials file %s: entry '%s' in \"auths\" is not an object", path, key);

        c = calloc(1, sizeof(AuthCredentials));
        if (!c)
                return -ENOMEM;

        auth = json_object_get(entry, "auth");
        username = json_object_get(entry, "username");
        password = json_object_get(entry, "password");

        if (auth && !json_is_string(auth))
                return error_set(-EBADMSG, "invalid credentials file %s: \"auth\" of '%s' is not a string", path, key);

        if (auth && json_string_length(auth) > 0) {
                _cleanup_free_ char *decoded = NULL;
                char *colon;

                r = base64_decode(json_string_value(auth), &decoded);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return error_set(-EBADMSG, "invalid credentials file %s: \"auth\" of '%s' is not valid base64",
                                         path, key);

                colon = strchr(decoded, ':');
                if (!colon) {
                        explicit_bzero(decoded, strlen(decoded));
                        return error_set(-EBADMSG,
                                         "invalid credentials file %s: decoded \"auth\" of '%s' has no ':' between "
                                         "username and password", path, key);
                }

                c->username = strndup(decoded, colon - decoded);
                c->password = strdup(colon + 1);
                explicit_bzero(decoded, strlen(decoded));
        } else if (username || password) {
                if (!json_is_string(username) || !json_is_string(password))
                        return error_set(-EBADMSG,
                                         "invalid credentials file %s: \"username\" and \"password\" of '%s' must both be strings",
                                         path, key);

                c->username = strdup(json_string_value(username));
                c->password = strdup(json_string_value(password));
        } else {
                /* An empty entry is what "docker login" leaves when a credential helper keeps the
                 * secret. Helpers are not supported, so there is nothing to use. */
                *ret = NULL;
                return 0;
        }

        if (!c->username || !c->password)
                return -ENOMEM;

        *ret = TAKE_PTR(c);
        return 0;
}

int auth_credentials_from_json(const char *json, size_t size, const char *path, const char *registry,
                               AuthCredentials **ret) {
        json_t *auths, *entry;
        json_error_t error;
        json_t *root;
        const char *key;
        int r;

        root = json_loadb(json, size, JSON_REJECT_DUPLICATES, &error);
        if (!root)
                return error_set(-EBADMSG, "invalid credentials file %s: %s (line %d, column %d)",
                                 path, error.text, error.line, error.column);

        if (!json_is_object(root)) {
                json_decref(root);
                return error_set(-EBADMSG, "invalid credentials file %s: top level is not a JSON object", path);
        }

        auths = json_object_get(root, "auths");
        if (!auths) {
                json_decref(root);
                *ret = NULL;
                return 0;
        }
        if (!json_is_object(auths)) {
                json_decref(root);
                return error_set(-EBADMSG, "invalid credentials file %s: \"auths\" is not an object", path);
        }

        entry = auth_find_entry(auths, registry, &key);
        if (!entry) {
                json_decref(root);
                *ret = NULL;
                return 0;
        }

        r = auth_entry_parse(entry, path, key, ret);
        json_decref(root);
        return r;
}

static int read_config_file(const char *path, char **ret, size_t *ret_size) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n;

        f = fopen(path, "re");
        if (!f)
                return -errno;

        if (fstat(fileno(f), &st) < 0)
                return error_set(-errno, "failed to stat credentials file %s: %m", path);
        if (!S_ISREG(st.st_mode))
                return error_set(-EBADMSG, "invalid credentials file %s: not a regular file", path);
        if ((uint64_t) st.st_size > AUTH_CONFIG_SIZE_MAX)
                return error_set(-EFBIG, "invalid credentials file %s: %jd bytes, over the limit of %u",
                                 path, (intmax_t) st.st_size, AUTH_CONFIG_SIZE_MAX);

        buf = malloc(st.st_size + 1);
        if (!buf)
                return -ENOMEM;

        n = fread(buf, 1, st.st_size, f);
        if (ferror(f))
                return error_set(-EIO, "failed to read credentials file %s", path);
        buf[n] = '\0';

        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

int auth_credentials_find(const char *registry, AuthCredentials **ret) {
        _cleanup_free_ char *path = NULL, *json = NULL;
        size_t size = 0;
        int r;

        r = auth_config_path(&path);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r;

        r = read_config_file(path, &json, &size);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return error_set_default(r, "failed to open credentials file %s: %s", path, strerror(-r));

        return auth_credentials_from_json(json, size, path, registry, ret);
}

int auth_basic_header_value(const AuthCredentials *c, char **ret) {
        _cleanup_free_ char *plain = NULL, *encoded = NULL;
        char *value;
        int length;

        length = asprintf(&plain, "%s:%s", c->username, c->password);
        if (length < 0)
                return -ENOMEM;

        encoded = malloc(4 * ((size_t) length / 3 + 1) + 1);
        if (!encoded) {
                explicit_bzero(plain, length);
                return -ENOMEM;
        }

        EVP_EncodeBlock((unsigned char *) encoded, (const unsigned char *) plain, length);
        explicit_bzero(plain, length);

        if (asprintf(&value, "Basic %s", encoded) < 0)
                value = NULL;
        explicit_bzero(encoded, strlen(encoded));
        if (!value)
                return -ENOMEM;

        *ret = value;
        return 0;
}
