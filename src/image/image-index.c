/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cloudimg.h"
#include "error.h"
#include "fileio.h"
#include "image-index.h"
#include "reference.h"
#include "strv.h"

static const char *const image_type_names[_IMAGE_TYPE_MAX] = {
        [IMAGE_OCI] = "oci",
        [IMAGE_CLOUD] = "cloudimg",
};

static const char *const image_type_dirs[_IMAGE_TYPE_MAX] = {
        [IMAGE_OCI] = "images/oci",
        [IMAGE_CLOUD] = "images/cloud",
};

const char *image_type_to_string(ImageType t) {
        if (t < 0 || t >= _IMAGE_TYPE_MAX)
                return NULL;
        return image_type_names[t];
}

ImageType image_type_from_string(const char *s) {
        for (ImageType t = 0; t < _IMAGE_TYPE_MAX; t++)
                if (s && streq(s, image_type_names[t]))
                        return t;
        return _IMAGE_TYPE_INVALID;
}

static void image_layer_done(ImageLayer *l) {
        free(l->digest);
        free(l->media_type);
}

ImageRecord *image_record_free(ImageRecord *r) {
        if (!r)
                return NULL;
        free(r->name);
        free(r->manifest_digest);
        for (size_t i = 0; i < r->n_layers; i++)
                image_layer_done(&r->layers[i]);
        free(r->layers);
        free(r->kernel_layer);
        free(r->initrd_layer);
        free(r->content_sum);
        free(r->created_at);
        free(r);
        return NULL;
}

void image_record_array_free(ImageRecord **a, size_t n) {
        for (size_t i = 0; i < n; i++)
                image_record_free(a[i]);
        free(a);
}

const char *image_record_id(const ImageRecord *r) {
        return r->type == IMAGE_CLOUD ? r->content_sum : r->manifest_digest;
}

static int json_set_string(json_t *o, const char *key, const char *value) {
        if (!value)
                return 0;
        return json_object_set_new(o, key, json_string(value)) < 0 ? -ENOMEM : 0;
}

json_t *image_record_to_json(const ImageRecord *r) {
        json_t *o = json_object(), *layers;

        if (!o)
                return NULL;
        if (json_set_string(o, "name", r->name) < 0 ||
            json_set_string(o, "ref", r->name) < 0 ||
            json_set_string(o, "type", image_type_to_string(r->type)) < 0 ||
            json_set_string(o, "manifest_digest", r->manifest_digest) < 0 ||
            json_set_string(o, "kernel_layer", r->kernel_layer) < 0 ||
            json_set_string(o, "initrd_layer", r->initrd_layer) < 0 ||
            json_set_string(o, "content_sum", r->content_sum) < 0 ||
            json_set_string(o, "created_at", r->created_at) < 0 ||
            json_object_set_new(o, "size", json_integer((json_int_t) r->size)) < 0)
                goto fail;

        if (r->type == IMAGE_OCI) {
                layers = json_array();
                if (!layers || json_object_set_new(o, "layers", layers) < 0)
                        goto fail;
                for (size_t i = 0; i < r->n_layers; i++) {
                        json_t *l = json_pack("{s:s, s:s?, s:I}", "digest", r->layers[i].digest,
                                              "media_type", r->layers[i].media_type, "size",
                                              (json_int_t) r->layers[i].size);
                        if (!l || json_array_append_new(layers, l) < 0)
                                goto fail;
                }
        }
        return o;

fail:
        json_decref(o);
        return NULL;
}

static int dup_field(json_t *o, const char *key, bool required, char **ret) {
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v)) {
                if (required)
                        return error_set(-EBADMSG, "image record lacks the field '%s'", key);
                return 0;
        }
        if (!json_is_string(v))
                return error_set(-EBADMSG, "image record field '%s' is not a string", key);
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

int image_record_from_json(json_t *j, ImageRecord **ret) {
        _cleanup_(image_record_freep) ImageRecord *r = calloc(1, sizeof(ImageRecord));
        _cleanup_free_ char *type = NULL;
        json_t *layers, *size;
        int q;

        if (!r)
                return -ENOMEM;
        if (!json_is_object(j))
                return error_set(-EBADMSG, "image record is not a JSON object");

        if ((q = dup_field(j, "name", true, &r->name)) < 0 ||
            (q = dup_field(j, "type", true, &type)) < 0 ||
            (q = dup_field(j, "manifest_digest", false, &r->manifest_digest)) < 0 ||
            (q = dup_field(j, "kernel_layer", false, &r->kernel_layer)) < 0 ||
            (q = dup_field(j, "initrd_layer", false, &r->initrd_layer)) < 0 ||
            (q = dup_field(j, "content_sum", false, &r->content_sum)) < 0 ||
            (q = dup_field(j, "created_at", false, &r->created_at)) < 0)
                return q;

        r->type = image_type_from_string(type);
        if (r->type < 0)
                return error_set(-EBADMSG, "image record has an unknown type '%s'", type);

        size = json_object_get(j, "size");
        if (json_is_integer(size) && json_integer_value(size) >= 0)
                r->size = (uint64_t) json_integer_value(size);

        layers = json_object_get(j, "layers");
        if (r->type == IMAGE_OCI) {
                size_t i;
                json_t *l;

                if (!r->manifest_digest || !json_is_array(layers) || json_array_size(layers) == 0)
                        return error_set(-EBADMSG, "OCI image record '%s' lacks its manifest "
                                                   "digest or layers", r->name);

                r->layers = calloc(json_array_size(layers), sizeof(ImageLayer));
                if (!r->layers)
                        return -ENOMEM;
                json_array_foreach(layers, i, l) {
                        ImageLayer *dst = &r->layers[r->n_layers++];
                        json_t *sz = json_object_get(l, "size");

                        if ((q = dup_field(l, "digest", true, &dst->digest)) < 0 ||
                            (q = dup_field(l, "media_type", false, &dst->media_type)) < 0)
                                return q;
                        if (json_is_integer(sz) && json_integer_value(sz) >= 0)
                                dst->size = (uint64_t) json_integer_value(sz);
                }
        } else if (!r->content_sum)
                return error_set(-EBADMSG, "cloud image record '%s' lacks its content sum",
                                 r->name);

        *ret = TAKE_PTR(r);
        return 0;
}

char *image_layer_blob_path(const Store *s, const char *digest) {
        const char *hex = startswith(digest, "sha256:") ? digest + 7 : digest;
        _cleanup_free_ char *name = strjoin(hex, ".erofs", NULL);

        return name ? store_path(s, "blobs", "sha256", name, NULL) : NULL;
}

char *image_layer_boot_dir(const Store *s, const char *digest) {
        const char *hex = startswith(digest, "sha256:") ? digest + 7 : digest;

        return store_path(s, "boot", hex, NULL);
}

json_t *image_record_to_public_json(const Store *s, const ImageRecord *r, bool details) {
        json_t *o = json_pack("{s:s?, s:s, s:s, s:I, s:s?}", "id", image_record_id(r), "name",
                              r->name, "type", image_type_to_string(r->type), "size",
                              (json_int_t) r->size, "created_at", r->created_at);
        json_t *layers;

        if (!o || !details)
                return o;

        /* A cloud image is one qcow2 base, which VMs use as the backing file of their disk. */
        if (r->type == IMAGE_CLOUD) {
                _cleanup_free_ char *blob = cloudimg_blob_path(s, r->content_sum);

                if (!blob || json_object_set_new(o, "blob", json_string(blob)) < 0)
                        goto fail;
                return o;
        }

        layers = json_array();
        if (!layers || json_object_set_new(o, "layers", layers) < 0)
                goto fail;
        for (size_t i = 0; i < r->n_layers; i++) {
                _cleanup_free_ char *blob = image_layer_blob_path(s, r->layers[i].digest);
                json_t *l = json_pack("{s:s, s:s?, s:I, s:s?}", "digest", r->layers[i].digest,
                                      "media_type", r->layers[i].media_type, "size",
                                      (json_int_t) r->layers[i].size, "erofs", blob);

                if (!l || json_array_append_new(layers, l) < 0)
                        goto fail;
        }

        if (r->kernel_layer) {
                _cleanup_free_ char *dir = image_layer_boot_dir(s, r->kernel_layer);
                _cleanup_free_ char *p = dir ? strjoin(dir, "/vmlinuz", NULL) : NULL;

                if (!p || json_object_set_new(o, "kernel", json_string(p)) < 0)
                        goto fail;
        }
        if (r->initrd_layer) {
                _cleanup_free_ char *dir = image_layer_boot_dir(s, r->initrd_layer);
                _cleanup_free_ char *p = dir ? strjoin(dir, "/initrd.img", NULL) : NULL;

                if (!p || json_object_set_new(o, "initrd", json_string(p)) < 0)
                        goto fail;
        }
        if (json_set_string(o, "manifest_digest", r->manifest_digest) < 0)
                goto fail;
        return o;

fail:
        json_decref(o);
        return NULL;
}

/* Records are named by the sha256 of the image name: fixed length, safe for any name or URL. */
static char *image_record_path(const Store *s, ImageType type, const char *name) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        char file[2 * 32 + sizeof(".json")];

        if (EVP_Digest(name, strlen(name), md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
                return NULL;
        for (unsigned i = 0; i < md_len; i++)
                sprintf(file + 2 * i, "%02x", md[i]);
        strcpy(file + 64, ".json");

        return store_path(s, image_type_dirs[type], file, NULL);
}

int image_index_put(const Store *s, const ImageRecord *r) {
        _cleanup_free_ char *path = image_record_path(s, r->type, r->name);
        json_t *j;
        int q;

        if (!path)
                return -ENOMEM;
        j = image_record_to_json(r);
        if (!j)
                return -ENOMEM;
        q = store_write_json(path, j);
        json_decref(j);
        return q;
}

int image_index_get(const Store *s, ImageType type, const char *name, ImageRecord **ret) {
        _cleanup_free_ char *path = image_record_path(s, type, name);
        json_t *j;
        int q;

        if (!path)
                return -ENOMEM;
        q = store_read_json(path, &j);
        if (q < 0)
                return q;
        q = image_record_from_json(j, ret);
        json_decref(j);
        return q;
}

int image_index_remove(const Store *s, const ImageRecord *r) {
        _cleanup_free_ char *path = image_record_path(s, r->type, r->name);

        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0)
                return -errno;
        return fsync_directory_of(path);
}

static int record_compare(const void *a, const void *b) {
        const ImageRecord *x = *(ImageRecord *const *) a, *y = *(ImageRecord *const *) b;

        if (x->type != y->type)
                return x->type < y->type ? -1 : 1;
        return strcmp(x->name, y->name);
}

int image_index_list(const Store *s, ImageRecord ***ret, size_t *ret_n, size_t *ret_skipped) {
        ImageRecord **a = NULL;
        size_t n = 0, skipped = 0;

        for (ImageType t = 0; t < _IMAGE_TYPE_MAX; t++) {
                _cleanup_free_ char *dir = store_path(s, image_type_dirs[t], NULL);
                DIR *d;
                struct dirent *de;

                if (!dir)
                        goto oom;
                d = opendir(dir);
                if (!d) {
                        if (errno == ENOENT)
                                continue;
                        image_record_array_free(a, n);
                        return error_set(-errno, "cannot read '%s': %m", dir);
                }

                while ((de = readdir(d))) {
                        _cleanup_free_ char *p = NULL;
                        ImageRecord *r, **t2;
                        json_t *j;

                        if (de->d_name[0] == '.' || !endswith(de->d_name, ".json"))
                                continue;
                        p = strjoin(dir, "/", de->d_name, NULL);
                        if (!p) {
                                closedir(d);
                                goto oom;
                        }
                        if (store_read_json(p, &j) < 0) {
                                skipped++;
                                continue;
                        }
                        if (image_record_from_json(j, &r) < 0 || r->type != t) {
                                json_decref(j);
                                skipped++;
                                continue;
                        }
                        json_decref(j);

                        t2 = realloc(a, (n + 1) * sizeof(ImageRecord *));
                        if (!t2) {
                                image_record_free(r);
                                closedir(d);
                                goto oom;
                        }
                        a = t2;
                        a[n++] = r;
                }
                closedir(d);
        }

        error_clear();
        if (n > 1)
                qsort(a, n, sizeof(ImageRecord *), record_compare);
        *ret = a;
        *ret_n = n;
        if (ret_skipped)
                *ret_skipped = skipped;
        return 0;

oom:
        image_record_array_free(a, n);
        return -ENOMEM;
}

static bool id_matches(const char *id, const char *query) {
        const char *hex = startswith(query, "sha256:") ? query + 7 : query;
        size_t n = strlen(hex);

        if (!id || !startswith(id, "sha256:") || n < 4 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("0123456789abcdef", hex[i]))
                        return false;
        return strneq(id + 7, hex, n);
}

int image_index_find(const Store *s, const char *query, ImageRecord ***ret, size_t *ret_n) {
        _cleanup_free_ char *normalized = NULL;
        _cleanup_(reference_freep) Reference *ref = NULL;
        ImageRecord **all = NULL, **found = NULL;
        size_t n_all = 0, n_found = 0;
        const char *first_id = NULL;
        bool by_name = false;
        int r;

        /* A query that is not a valid reference may still be an id or a URL. */
        if (reference_parse(query, &ref) >= 0)
                normalized = reference_to_string(ref);
        error_clear();

        r = image_index_list(s, &all, &n_all, NULL);
        if (r < 0)
                return r;

        found = calloc(n_all + 1, sizeof(ImageRecord *));
        if (!found) {
                image_record_array_free(all, n_all);
                return -ENOMEM;
        }

        for (size_t i = 0; i < n_all; i++)
                if (streq(all[i]->name, query) || (normalized && streq(all[i]->name, normalized))) {
                        found[n_found++] = TAKE_PTR(all[i]);
                        by_name = true;
                }

        if (!by_name)
                for (size_t i = 0; i < n_all; i++) {
                        const char *id = image_record_id(all[i]);

                        if (!id_matches(id, query))
                                continue;
                        if (first_id && !streq(first_id, id)) {
                                image_record_array_free(all, n_all);
                                image_record_array_free(found, n_found);
                                return error_set(-ENOTUNIQ, "'%s' matches several image ids; "
                                                            "give more digits", query);
                        }
                        first_id = id;
                        found[n_found++] = TAKE_PTR(all[i]);
                }

        image_record_array_free(all, n_all);

        if (n_found == 0) {
                free(found);
                return error_set(-ENOENT, "image not found");
        }

        *ret = found;
        *ret_n = n_found;
        return 0;
}
