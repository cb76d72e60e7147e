/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "error.h"
#include "reference.h"

#define DOCKER_HUB_LEGACY_REGISTRY "index.docker.io"
#define DOCKER_HUB_API_HOST "registry-1.docker.io"
#define DOCKER_HUB_OFFICIAL_PREFIX "library/"

static bool char_is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool char_is_alnum(char c) {
        return char_is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* A DNS label: alphanumerics and inner hyphens. */
static bool domain_component_is_valid(const char *s, size_t length) {
        if (length == 0 || !char_is_alnum(s[0]) || !char_is_alnum(s[length - 1]))
                return false;

        for (size_t i = 0; i < length; i++)
                if (!char_is_alnum(s[i]) && s[i] != '-')
                        return false;

        return true;
}

static bool port_is_valid(const char *s, size_t length) {
        unsigned long port = 0;

        if (length == 0 || length > 5)
                return false;

        for (size_t i = 0; i < length; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                port = port * 10 + (s[i] - '0');
        }

        return port > 0 && port <= 65535;
}

/* host[:port], where host is a dotted domain name, an IPv4 address or a bracketed IPv6 address. */
static bool registry_is_valid(const char *s, size_t length) {
        const char *end = s + length, *host_end, *p;

        if (length > 0 && s[0] == '[') {
                host_end = memchr(s, ']', length);
                if (!host_end || host_end == s + 1)
                        return false;
                for (p = s + 1; p < host_end; p++)
                        if (!strchr("0123456789abcdefABCDEF:.", *p) || *p == '\0')
                                return false;
                host_end++;
        } else {
                host_end = memchr(s, ':', length);
                if (!host_end)
                        host_end = end;

                for (p = s; p <= host_end; p++) {
                        const char *dot = memchr(p, '.', host_end - p);

                        if (!dot)
                                dot = host_end;
                        if (!domain_component_is_valid(p, dot - p))
                                return false;
                        p = dot;
                }
        }

        if (host_end == end)
                return true;

        return *host_end == ':' && port_is_valid(host_end + 1, end - host_end - 1);
}

/* The separators the distribution grammar allows between alphanumeric runs: one '.', one or two
 * '_', or any number of '-'. */
static size_t separator_length(const char *s, size_t length) {
        size_t n = 0;

        if (length == 0)
                return 0;

        if (s[0] == '.')
                return 1;

        if (s[0] == '_')
                return length > 1 && s[1] == '_' ? 2 : 1;

        while (n < length && s[n] == '-')
                n++;

        return n;
}

static int path_component_check(const char *input, const char *s, size_t length) {
        size_t i = 0;

        if (length == 0)
                return error_set(-EINVAL, "invalid image reference '%s': empty path component in the repository name",
                                 input);

        for (size_t k = 0; k < length; k++)
                if (s[k] >= 'A' && s[k] <= 'Z')
                        return error_set(-EINVAL, "invalid image reference '%s': repository name must be lowercase",
                                         input);

        while (i < length) {
                size_t run = 0, sep;

                while (i + run < length && char_is_lower_alnum(s[i + run]))
                        run++;
                if (run == 0)
                        break;
                i += run;

                if (i == length)
                        return 0;

                sep = separator_length(s + i, length - i);
                if (sep == 0)
                        break;
                i += sep;
                if (i == length)
                        break;
        }

        return error_set(-EINVAL,
                         "invalid image reference '%s': invalid repository path component '%.*s' "
                         "(expected lowercase letters and digits, joined by '.', '_', '__' or '-')",
                         input, (int) length, s);
}

static int repository_check(const char *input, const char *s) {
        const char *p = s;

        for (;;) {
                const char *slash = strchr(p, '/');
                size_t length = slash ? (size_t) (slash - p) : strlen(p);
                int r;

                r = path_component_check(input, p, length);
                if (r < 0)
                        return r;

                if (!slash)
                        return 0;
                p = slash + 1;
        }
}

static int tag_check(const char *input, const char *tag) {
        size_t length = strlen(tag);

        if (length > REFERENCE_TAG_MAX)
                return error_set(-EINVAL, "invalid image reference '%s': tag is %zu characters, over the limit of %d",
                                 input, length, REFERENCE_TAG_MAX);

        for (size_t i = 0; i < length; i++) {
                bool ok = char_is_alnum(tag[i]) || tag[i] == '_' || (i > 0 && (tag[i] == '.' || tag[i] == '-'));

                if (!ok)
                        return error_set(-EINVAL,
                                         "invalid image reference '%s': invalid tag '%s' (expected letters, digits, "
                                         "'_', '.' or '-', not starting with '.' or '-')",
                                         input, tag);
        }

        if (length == 0)
                return error_set(-EINVAL, "invalid image reference '%s': empty tag after ':'", input);

        return 0;
}

static int digest_check(const char *input, const char *digest) {
        int r;

        if (isempty(digest))
                return error_set(-EINVAL, "invalid image reference '%s': empty digest after '@'", input);

        r = digest_validate(digest);
        if (r < 0)
                return error_prefix(r, "invalid image reference '%s': ", input);

        return 0;
}

/* Docker treats the first path component as a registry only when it looks like a host name:
 * "localhost", or anything with a '.' or ':' (a domain, an address or a port). */
static bool first_component_is_registry(const char *s, size_t length) {
        if (length == 9 && strneq(s, "localhost", 9))
                return true;

        return memchr(s, '.', length) || memchr(s, ':', length) || (length > 0 && s[0] == '[');
}

static int reference_split(const char *input, Reference *ref) {
        _cleanup_free_ char *copy = NULL;
        char *name, *at, *last_slash, *colon, *slash;

        copy = strdup(input);
        if (!copy)
                return -ENOMEM;
        name = copy;

        at = strchr(name, '@');
        if (at) {
                *at = '\0';
                ref->digest = strdup(at + 1);
                if (!ref->digest)
                        return -ENOMEM;
        }

        last_slash = strrchr(name, '/');
        colon = strchr(last_slash ? last_slash : name, ':');
        if (colon) {
                *colon = '\0';
                ref->tag = strdup(colon + 1);
                if (!ref->tag)
                        return -ENOMEM;
        }

        slash = strchr(name, '/');
        if (slash && first_component_is_registry(name, slash - name)) {
                ref->registry = strndup(name, slash - name);
                ref->repository = strdup(slash + 1);
        } else {
                ref->registry = strdup(REFERENCE_DEFAULT_REGISTRY);
                ref->repository = strdup(name);
        }
        if (!ref->registry || !ref->repository)
                return -ENOMEM;

        return 0;
}

static int reference_normalize(Reference *ref) {
        if (streq(ref->registry, DOCKER_HUB_LEGACY_REGISTRY)) {
                free(ref->registry);
                ref->registry = strdup(REFERENCE_DEFAULT_REGISTRY);
                if (!ref->registry)
                        return -ENOMEM;
        }

        /* Official Docker Hub images live under "library/": "ubuntu" is "library/ubuntu". */
        if (streq(ref->registry, REFERENCE_DEFAULT_REGISTRY) && !strchr(ref->repository, '/')) {
                char *p;

                if (asprintf(&p, DOCKER_HUB_OFFICIAL_PREFIX "%s", ref->repository) < 0)
                        return -ENOMEM;
                free(ref->repository);
                ref->repository = p;
        }

        if (!ref->tag && !ref->digest) {
                ref->tag = strdup(REFERENCE_DEFAULT_TAG);
                if (!ref->tag)
                        return -ENOMEM;
        }

        return 0;
}

int reference_parse(const char *s, Reference **ret) {
        _cleanup_(reference_freep) Reference *ref = NULL;
        size_t name_length;
        int r;

        if (isempty(s))
                return error_set(-EINVAL, "invalid image reference '': empty string");

        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
                        return error_set(-EINVAL, "invalid image reference '%s': contains whitespace or a non-ASCII character", s);

        ref = calloc(1, sizeof(Reference));
        if (!ref)
                return -ENOMEM;

        r = reference_split(s, ref);
        if (r < 0)
                return r;

        if (ref->registry[0] == '\0' || !registry_is_valid(ref->registry, strlen(ref->registry)))
                return error_set(-EINVAL, "invalid image reference '%s': invalid registry '%s'", s, ref->registry);

        r = repository_check(s, ref->repository);
        if (r < 0)
                return r;

        if (ref->tag) {
                r = tag_check(s, ref->tag);
                if (r < 0)
                        return r;
        }

        if (ref->digest) {
                r = digest_check(s, ref->digest);
                if (r < 0)
                        return r;
        }

        r = reference_normalize(ref);
        if (r < 0)
                return r;

        name_length = strlen(ref->registry) + 1 + strlen(ref->repository);
        if (name_length > REFERENCE_NAME_MAX)
                return error_set(-EINVAL, "invalid image reference '%s': name is %zu characters, over the limit of %d",
                                 s, name_length, REFERENCE_NAME_MAX);

        *ret = TAKE_PTR(ref);
        return 0;
}

Reference *reference_free(Reference *r) {
        if (!r)
                return NULL;

        free(r->registry);
        free(r->repository);
        free(r->tag);
        free(r->digest);
        free(r);
        return NULL;
}

char *reference_to_string(const Reference *r) {
        char *s;

        if (asprintf(&s, "%s/%s%s%s%s%s", r->registry, r->repository,
                     r->tag ? ":" : "", r->tag ?: "",
                     r->digest ? "@" : "", r->digest ?: "") < 0)
                return NULL;

        return s;
}

const char *reference_api_host(const Reference *r) {
        if (streq(r->registry, REFERENCE_DEFAULT_REGISTRY))
                return DOCKER_HUB_API_HOST;

        return r->registry;
}
