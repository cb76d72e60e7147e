/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include <openssl/evp.h>

#include "digest.h"
#include "error.h"

struct Digest {
        EVP_MD_CTX *ctx;
        bool finished;
};

int digest_new(Digest **ret) {
        Digest *d;

        d = calloc(1, sizeof(Digest));
        if (!d)
                return -ENOMEM;

        d->ctx = EVP_MD_CTX_new();
        if (!d->ctx) {
                free(d);
                return -ENOMEM;
        }

        if (EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1) {
                digest_free(d);
                return error_set(-EIO, "failed to initialise sha256 in libcrypto");
        }

        *ret = d;
        return 0;
}

int digest_update(Digest *d, const void *data, size_t size) {
        if (d->finished)
                return -ESTALE;

        if (size > 0 && EVP_DigestUpdate(d->ctx, data, size) != 1)
                return error_set(-EIO, "failed to update sha256 in libcrypto");

        return 0;
}

int digest_final(Digest *d, char **ret) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned length = 0;
        char *s;

        if (d->finished)
                return -ESTALE;

        if (EVP_DigestFinal_ex(d->ctx, md, &length) != 1 || length * 2 != DIGEST_SHA256_HEX_LENGTH)
                return error_set(-EIO, "failed to finish sha256 in libcrypto");
        d->finished = true;

        s = malloc(DIGEST_STRING_MAX);
        if (!s)
                return -ENOMEM;

        memcpy(s, DIGEST_SHA256_PREFIX, strlen(DIGEST_SHA256_PREFIX));
        hex_encode(md, length, s + strlen(DIGEST_SHA256_PREFIX));

        *ret = s;
        return 0;
}

Digest *digest_free(Digest *d) {
        if (!d)
                return NULL;

        EVP_MD_CTX_free(d->ctx);
        free(d);
        return NULL;
}

int digest_buffer(const void *data, size_t size, char **ret) {
        _cleanup_(digest_freep) Digest *d = NULL;
        int r;

        r = digest_new(&d);
        if (r < 0)
                return r;

        r = digest_update(d, data, size);
        if (r < 0)
                return r;

        return digest_final(d, ret);
}

bool hex_is_lower(const char *s, size_t length) {
        for (size_t i = 0; i < length; i++)
                if (!strchr("0123456789abcdef", s[i]) || s[i] == '\0')
                        return false;
        return true;
}

void hex_encode(const uint8_t *data, size_t size, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < size; i++) {
                out[2 * i] = digits[data[i] >> 4];
                out[2 * i + 1] = digits[data[i] & 0xf];
        }
        out[2 * size] = '\0';
}

bool digest_is_valid(const char *s) {
        size_t prefix = strlen(DIGEST_SHA256_PREFIX);

        return s && strneq(s, DIGEST_SHA256_PREFIX, prefix) &&
                strlen(s + prefix) == DIGEST_SHA256_HEX_LENGTH &&
                hex_is_lower(s + prefix, DIGEST_SHA256_HEX_LENGTH);
}

/* The OCI grammar for an algorithm name: lowercase alphanumerics joined by '+', '.', '_' or '-'. */
static bool digest_algorithm_is_valid(const char *s, size_t length) {
        if (length == 0)
                return false;

        for (size_t i = 0; i < length; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789+._-", s[i]) || s[i] == '\0')
                        return false;

        return true;
}

int digest_validate(const char *s) {
        const char *colon;

        if (digest_is_valid(s))
                return 0;

        if (!s)
                return error_set(-EINVAL, "missing digest");

        colon = strchr(s, ':');
        if (colon && !strneq(s, DIGEST_SHA256_PREFIX, strlen(DIGEST_SHA256_PREFIX)) &&
            digest_algorithm_is_valid(s, colon - s) && colon[1] != '\0')
                return error_set(-EPROTONOSUPPORT, "unsupported digest algorithm '%.*s' in '%s' (only sha256 is supported)",
                                 (int) (colon - s), s, s);

        return error_set(-EINVAL, "invalid digest '%s': expected 'sha256:' followed by 64 lowercase hex digits", s);
}

const char *digest_hex(const char *digest) {
        return digest + strlen(DIGEST_SHA256_PREFIX);
}
