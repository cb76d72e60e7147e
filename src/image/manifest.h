/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define MEDIA_TYPE_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_TYPE_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_TYPE_DOCKER_MANIFEST_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MEDIA_TYPE_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

/* Registries pick the returned type from the Accept header. Distribution 2.8 returns 404 for an OCI
 * manifest when its type is missing from Accept, so all four are always sent. */
#define MANIFEST_ACCEPT                                                                           \
        MEDIA_TYPE_OCI_INDEX ", " MEDIA_TYPE_OCI_MANIFEST ", " MEDIA_TYPE_DOCKER_MANIFEST_LIST ", " \
        MEDIA_TYPE_DOCKER_MANIFEST

#define MEDIA_TYPE_OCI_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"
#define MEDIA_TYPE_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define MEDIA_TYPE_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define MEDIA_TYPE_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

#define MANIFEST_SIZE_MAX_DEFAULT (UINT64_C(4) * 1024 * 1024)
#define MANIFEST_LAYERS_MAX_DEFAULT 128

typedef enum LayerCompression {
        LAYER_COMPRESSION_NONE,
        LAYER_COMPRESSION_GZIP,
        LAYER_COMPRESSION_ZSTD,
        _LAYER_COMPRESSION_MAX,
        _LAYER_COMPRESSION_INVALID = -EINVAL,
} LayerCompression;

typedef struct Descriptor {
        char *media_type;
        char *digest; /* validated "sha256:<hex>" */
        uint64_t size;
        LayerCompression compression; /* layers only */
        /* Index entries only, each NULL when the entry has no platform. */
        char *os;
        char *architecture;
        char *variant;
} Descriptor;

typedef struct Manifest {
        char *media_type; /* one of the four MEDIA_TYPE_* manifest and index types */
        bool is_index;

        /* Image manifests */
        Descriptor config;
        Descriptor *layers;
        size_t n_layers;

        /* Indexes and manifest lists */
        Descriptor *manifests;
        size_t n_manifests;
} Manifest;

typedef struct ManifestLimits {
        uint64_t max_size;   /* 0 = MANIFEST_SIZE_MAX_DEFAULT */
        size_t max_layers;   /* 0 = MANIFEST_LAYERS_MAX_DEFAULT */
} ManifestLimits;

/* Parse an image manifest or index. content_type is the response's Content-Type (parameters
 * allowed) or NULL; generic types such as application/json defer to the body's "mediaType".
 * limits may be NULL for the defaults. Returns -EBADMSG for malformed input, -EPROTONOSUPPORT
 * for a schema version, manifest type or layer type that is not supported, -EFBIG for an
 * oversized body and -E2BIG for too many layers, each with a reason. */
int manifest_parse(const void *body, size_t size, const char *content_type, const ManifestLimits *limits,
                   Manifest **ret);
Manifest *manifest_free(Manifest *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manifest *, manifest_free);

bool media_type_is_index(const char *media_type);
bool media_type_is_image_manifest(const char *media_type);

/* Pick the index entry for os/architecture. Among several matches, arm64 prefers variant "v8",
 * then no variant, and other architectures prefer no variant. Ties go to the first entry.
 * Returns -ENOENT with a reason that lists the platforms the index offers. *ret points into
 * index. */
int manifest_select_platform(const Manifest *index, const char *os, const char *architecture,
                             const Descriptor **ret);

/* The OCI name of the architecture this binary was built for ("amd64", "arm64", …). */
const char *manifest_host_architecture(void);
