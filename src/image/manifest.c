/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "digest.h"
#include "error.h"
#include "manifest.h"

static const struct {
        const char *media_type;
        LayerCompression compression;
} layer_types[] = {
        { MEDIA_TYPE_OCI_LAYER_TAR, LAYER_COMPRESSION_NONE },
        { MEDIA_TYPE_OCI_LAYER_GZIP, LAYER_COMPRESSION_GZIP },
        { MEDIA_TYPE_OCI_LAYER_ZSTD, LAYER_COMPRESSION_ZSTD },
        { MEDIA_TYPE_DOCKER_LAYER_GZIP, LAYER_COMPRESSION_GZIP },
};

bool media_type_is_index(const char *media_type) {
        return media_type && (streq(media_type, MEDIA_TYPE_OCI_INDEX) || streq(media_type, MEDIA_TYPE_DOCKER_MANIFEST_LIST));
}

bool media_type_is_image_manifest(const char *media_type) {
        return media_type && (streq(media_type, MEDIA_TYPE_OCI_MANIFEST) || streq(media_type, MEDIA_TYPE_DOCKER_MANIFEST));
}

static LayerCompression layer_compression_from_media_type(const char *media_type) {
        for (size_t i = 0; i < ELEMENTSOF(layer_types); i++)
                if (streq(media_type, layer_types[i].media_type))
                        return layer_types[i].compression;

        return _LAYER_COMPRESSION_INVALID;
}

static void descriptor_done(Descriptor *d) {
        free(d->media_type);
        free(d->digest);
        free(d->os);
        free(d->architecture);
        free(d->variant);
}

Manifest *manifest_free(Manifest *m) {
        if (!m)
                return NULL;

        free(m->media_type);
        descriptor_done(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
                descriptor_done(&m->layers[i]);
        free(m->layers);
        for (size_t i = 0; i < m->n_manifests; i++)
                descriptor_done(&m->manifests[i]);
        free(m->manifests);
        free(m);
        return NULL;
}

/* Copy an optional string member; a member of another JSON type is an error. */
static int json_string_member(json_t *object, const char *key, const char *kind, const char *where, char **ret) {
        json_t *v = json_object_get(object, key);

        if (!v) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v))
                return error_set(-EBADMSG, "invalid %s: %s: \"%s\" is not a string", kind, where, key);

        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int descriptor_parse(json_t *object, const char *kind, const char *where, Descriptor *d) {
        json_t *size;
        int r;

        if (!json_is_object(object))
                return error_set(-EBADMSG, "invalid %s: %s is not an object", kind, where);

        r = json_string_member(object, "mediaType", kind, where, &d->media_type);
        if (r < 0)
                return r;
        if (!d->media_type)
                return error_set(-EBADMSG, "invalid %s: %s: missing \"mediaType\"", kind, where);

        r = json_string_member(object, "digest", kind, where, &d->digest);
        if (r < 0)
                return r;
        if (!d->digest)
                return error_set(-EBADMSG, "invalid %s: %s: missing \"digest\"", kind, where);

        r = digest_validate(d->digest);
        if (r < 0)
                return error_prefix(r, "invalid %s: %s: ", kind, where);

        size = json_object_get(object, "size");
        if (!json_is_integer(size) || json_integer_value(size) < 0)
                return error_set(-EBADMSG, "invalid %s: %s: missing or invalid \"size\"", kind, where);
        d->size = (uint64_t) json_integer_value(size);

        return 0;
}

static int platform_parse(json_t *object, const char *where, Descriptor *d) {
        json_t *platform = json_object_get(object, "platform");
        int r;

        if (!platform)
                return 0;
        if (!json_is_object(platform))
                return error_set(-EBADMSG, "invalid index: %s: \"platform\" is not an object", where);

        r = json_string_member(platform, "os", "index", where, &d->os);
        if (r < 0)
                return r;

        r = json_string_member(platform, "architecture", "index", where, &d->architecture);
        if (r < 0)
                return r;

        return json_string_member(platform, "variant", "index", where, &d->variant);
}

static int manifest_parse_index(json_t *root, Manifest *m) {
        json_t *manifests = json_object_get(root, "manifests");
        size_t n;

        if (!json_is_array(manifests))
                return error_set(-EBADMSG, "invalid index: missing \"manifests\" array");

        n = json_array_size(manifests);
        m->manifests = calloc(MAX(n, 1u), sizeof(Descriptor));
        if (!m->manifests)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                json_t *entry = json_array_get(manifests, i);
                char where[32];
                int r;

                snprintf(where, sizeof(where), "manifests[%zu]", i);
                m->n_manifests++;

                r = descriptor_parse(entry, "index", where, &m->manifests[i]);
                if (r < 0)
                        return r;

                r = platform_parse(entry, where, &m->manifests[i]);
                if (r < 0)
                        return r;
        }

        return 0;
}

static int manifest_parse_image(json_t *root, const ManifestLimits *limits, Manifest *m) {
        json_t *layers = json_object_get(root, "layers");
        size_t n;
        int r;

        r = descriptor_parse(json_object_get(root, "config"), "manifest", "config", &m->config);
        if (r == -EBADMSG && !json_object_get(root, "config"))
                return error_set(-EBADMSG, "invalid manifest: missing \"config\"");
        if (r < 0)
                return r;

        if (!json_is_array(layers))
                return error_set(-EBADMSG, "invalid manifest: missing \"layers\" array");

        n = json_array_size(layers);
        if (n == 0)
                return error_set(-EBADMSG, "invalid manifest: no layers");
        if (n > limits->max_layers)
                return error_set(-E2BIG, "manifest has %zu layers, over the limit of %zu", n, limits->max_layers);

        m->layers = calloc(n, sizeof(Descriptor));
        if (!m->layers)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                Descriptor *d = &m->layers[i];
                char where[32];

                snprintf(where, sizeof(where), "layers[%zu]", i);
                m->n_layers++;

                r = descriptor_parse(json_array_get(layers, i), "manifest", where, d);
                if (r < 0)
                        return r;

                d->compression = layer_compression_from_media_type(d->media_type);
                if (d->compression < 0)
                        return error_set(-EPROTONOSUPPORT, "unsupported layer media type '%s' in %s",
                                         d->media_type, where);
        }

        return 0;
}

/* The Content-Type without parameters, or NULL when it does not name a manifest kind. */
static int content_type_normalize(const char *content_type, char **ret) {
        static const char *const generic[] = { "application/json", "application/octet-stream", "text/plain" };
        size_t length;

        if (!content_type) {
                *ret = NULL;
                return 0;
        }

        content_type += strspn(content_type, " \t");
        length = strcspn(content_type, ";");
        while (length > 0 && strchr(" \t", content_type[length - 1]))
                length--;

        if (length == 0) {
                *ret = NULL;
                return 0;
        }

        for (size_t i = 0; i < ELEMENTSOF(generic); i++)
                if (strlen(generic[i]) == length && strncasecmp(content_type, generic[i], length) == 0) {
                        *ret = NULL;
                        return 0;
                }

        *ret = strndup(content_type, length);
        if (!*ret)
                return -ENOMEM;

        /* Media types compare case-insensitively (RFC 6838). */
        for (char *p = *ret; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p += 'a' - 'A';

        return 0;
}

/* Content-Type first, then the body's "mediaType"; old OCI writers left both out, in which case
 * the members tell an index from a manifest. */
static int manifest_media_type(json_t *root, const char *content_type, char **ret) {
        _cleanup_free_ char *header_type = NULL;
        json_t *body_type = json_object_get(root, "mediaType");
        const char *type;
        int r;

        if (body_type && !json_is_string(body_type))
                return error_set(-EBADMSG, "invalid manifest: \"mediaType\" is not a string");

        r = content_type_normalize(content_type, &header_type);
        if (r < 0)
                return r;

        if (header_type && body_type && !streq(header_type, json_string_value(body_type)))
                return error_set(-EBADMSG, "manifest media type '%s' does not match Content-Type '%s'",
                                 json_string_value(body_type), header_type);

        if (header_type)
                type = header_type;
        else if (body_type)
                type = json_string_value(body_type);
        else if (json_object_get(root, "manifests"))
                type = MEDIA_TYPE_OCI_INDEX;
        else if (json_object_get(root, "layers"))
                type = MEDIA_TYPE_OCI_MANIFEST;
        else
                return error_set(-EBADMSG, "invalid manifest: no media type in Content-Type or \"mediaType\"");

        if (!media_type_is_index(type) && !media_type_is_image_manifest(type))
                return error_set(-EPROTONOSUPPORT, "unsupported manifest media type '%s'", type);

        *ret = strdup(type);
        return *ret ? 0 : -ENOMEM;
}

static int manifest_parse_json(json_t *root, const char *content_type, const ManifestLimits *limits, Manifest *m) {
        json_t *version;
        int r;

        if (!json_is_object(root))
                return error_set(-EBADMSG, "invalid manifest: top level is not a JSON object");

        version = json_object_get(root, "schemaVersion");
        if (!json_is_integer(version))
                return error_set(-EBADMSG, "invalid manifest: missing or invalid \"schemaVersion\"");
        if (json_integer_value(version) != 2)
                return error_set(-EPROTONOSUPPORT, "unsupported manifest schema version %" JSON_INTEGER_FORMAT
                                 " (only version 2 is supported)", json_integer_value(version));

        r = manifest_media_type(root, content_type, &m->media_type);
        if (r < 0)
                return r;

        m->is_index = media_type_is_index(m->media_type);
        if (m->is_index)
                return manifest_parse_index(root, m);

        return manifest_parse_image(root, limits, m);
}

int manifest_parse(const void *body, size_t size, const char *content_type, const ManifestLimits *limits,
                   Manifest **ret) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        ManifestLimits l = {
                .max_size = limits && limits->max_size > 0 ? limits->max_size : MANIFEST_SIZE_MAX_DEFAULT,
                .max_layers = limits && limits->max_layers > 0 ? limits->max_layers : MANIFEST_LAYERS_MAX_DEFAULT,
        };
        json_error_t error;
        json_t *root;
        int r;

        if (size > l.max_size)
                return error_set(-EFBIG, "manifest is %zu bytes, over the limit of %" PRIu64, size, l.max_size);

        root = json_loadb(body, size, JSON_REJECT_DUPLICATES, &error);
        if (!root)
                return error_set(-EBADMSG, "invalid manifest JSON: %s (line %d, column %d)",
                                 error.text, error.line, error.column);

        m = calloc(1, sizeof(Manifest));
        if (!m) {
                json_decref(root);
                return -ENOMEM;
        }

        r = manifest_parse_json(root, content_type, &l, m);
        json_decref(root);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

/* Rank how well an entry's variant fits the host. arm64 hosts run v8 code, so an explicit "v8" is
 * best there. Elsewhere an entry without a variant is the baseline that every host runs. */
static int variant_rank(const char *architecture, const char *variant) {
        if (streq(architecture, "arm64") && variant && streq(variant, "v8"))
                return 2;
        if (isempty(variant))
                return 1;
        return 0;
}

/* buildx stores attestations as index entries with the platform unknown/unknown. */
static bool descriptor_is_attestation(const Descriptor *d) {
        return d->os && d->architecture && streq(d->os, "unknown") && streq(d->architecture, "unknown");
}

static int platforms_list(const Manifest *index, char **ret) {
        _cleanup_free_ char *list = NULL;
        size_t length = 0;

        for (size_t i = 0; i < index->n_manifests; i++) {
                const Descriptor *d = &index->manifests[i];
                char *p;
                int n;

                if (descriptor_is_attestation(d))
                        continue;

                n = asprintf(&p, "%s%s%s/%s%s%s", list ?: "", list ? ", " : "", d->os ?: "?", d->architecture ?: "?",
                             d->variant ? "/" : "", d->variant ?: "");
                if (n < 0)
                        return -ENOMEM;
                free(list);
                list = p;
                length = n;
        }

        if (length == 0) {
                list = strdup("none");
                if (!list)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(list);
        return 0;
}

int manifest_select_platform(const Manifest *index, const char *os, const char *architecture,
                             const Descriptor **ret) {
        _cleanup_free_ char *available = NULL;
        const Descriptor *found = NULL;
        int found_rank = -1, r;

        for (size_t i = 0; i < index->n_manifests; i++) {
                const Descriptor *d = &index->manifests[i];
                int rank;

                if (!media_type_is_image_manifest(d->media_type) || !d->os || !d->architecture)
                        continue;
                if (!streq(d->os, os) || !streq(d->architecture, architecture))
                        continue;

                rank = variant_rank(architecture, d->variant);
                if (rank > found_rank) {
                        found = d;
                        found_rank = rank;
                }
        }

        if (found) {
                *ret = found;
                return 0;
        }

        r = platforms_list(index, &available);
        if (r < 0)
                return r;

        return error_set(-ENOENT, "no manifest for %s/%s in index (available: %s)", os, architecture, available);
}

const char *manifest_host_architecture(void) {
#if defined(__x86_64__)
        return "amd64";
#elif defined(__aarch64__)
        return "arm64";
#elif defined(__i386__)
        return "386";
#elif defined(__riscv) && __riscv_xlen == 64
        return "riscv64";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return "ppc64le";
#elif defined(__s390x__)
        return "s390x";
#elif defined(__arm__)
        return "arm";
#else
#error "unknown architecture: add its OCI name to manifest_host_architecture()"
#endif
}
