/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

typedef enum ImageType {
        IMAGE_OCI,
        IMAGE_CLOUD,
        _IMAGE_TYPE_MAX,
        _IMAGE_TYPE_INVALID = -EINVAL,
} ImageType;

const char *image_type_to_string(ImageType t);
ImageType image_type_from_string(const char *s);

typedef struct ImageLayer {
        char *digest;     /* compressed layer digest; names the EROFS blob */
        char *media_type;
        uint64_t size;    /* compressed size from the manifest */
} ImageLayer;

/* One image index entry. OCI images use manifest_digest, layers and the boot layers; cloud images
 * use content_sum (the sha256 of the downloaded bytes) as their id. */
typedef struct ImageRecord {
        char *name;                /* normalised reference, or the URL of a cloud image */
        ImageType type;
        char *manifest_digest;
        ImageLayer *layers;
        size_t n_layers;
        char *kernel_layer;
        char *initrd_layer;
        char *content_sum;
        uint64_t size;             /* bytes on disk: blobs plus boot files */
        char *created_at;          /* RFC 3339 */
} ImageRecord;

ImageRecord *image_record_free(ImageRecord *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(ImageRecord *, image_record_free);
void image_record_array_free(ImageRecord **a, size_t n);

/* The image's id: the manifest digest of an OCI image, the content sum of a cloud image. */
const char *image_record_id(const ImageRecord *r);

/* Pure conversions between a record and its on-disk JSON. */
json_t *image_record_to_json(const ImageRecord *r);
int image_record_from_json(json_t *j, ImageRecord **ret);

/* The public view shown by `image list -o json` and `image inspect`: id, name, type, size,
 * created_at; with details, also the layers, the EROFS blob paths and the boot files. */
json_t *image_record_to_public_json(const Store *s, const ImageRecord *r, bool details);

int image_index_put(const Store *s, const ImageRecord *r);
int image_index_get(const Store *s, ImageType type, const char *name, ImageRecord **ret);
int image_index_remove(const Store *s, const ImageRecord *r);

/* All records, OCI first then cloud images, each sorted by name. Unreadable records are skipped
 * and counted in *ret_skipped (if given) rather than failing the whole listing. */
int image_index_list(const Store *s, ImageRecord ***ret, size_t *ret_n, size_t *ret_skipped);

/* Path of a layer's EROFS blob and of its boot directory. */
char *image_layer_blob_path(const Store *s, const char *digest);
char *image_layer_boot_dir(const Store *s, const char *digest);

/* Find the records a user's argument names: an image name (an OCI reference is compared in its
 * normalised form, so "ubuntu" finds docker.io/library/ubuntu:latest), a full image id with or
 * without "sha256:", or an id prefix of at least 4 hex digits. A name match wins over id matches.
 * -ENOENT when nothing matches; -ENOTUNIQ (with a reason) when a prefix names several ids. */
int image_index_find(const Store *s, const char *query, ImageRecord ***ret, size_t *ret_n);
