/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* Content digests as OCI writes them: "sha256:" followed by 64 lowercase hex digits. Only sha256
 * is supported, which is what every registry in use produces for manifests and layers. */

#define DIGEST_SHA256_PREFIX "sha256:"
#define DIGEST_SHA256_HEX_LENGTH 64
#define DIGEST_STRING_MAX (sizeof(DIGEST_SHA256_PREFIX) - 1 + DIGEST_SHA256_HEX_LENGTH + 1)

typedef struct Digest Digest;

/* Streaming sha256 over libcrypto's EVP interface. */
int digest_new(Digest **ret);
int digest_update(Digest *d, const void *data, size_t size);
/* Finish the hash and return "sha256:<hex>". The context cannot be updated afterwards. */
int digest_final(Digest *d, char **ret);
Digest *digest_free(Digest *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Digest *, digest_free);

/* Hash a whole buffer in one call. */
int digest_buffer(const void *data, size_t size, char **ret);

bool digest_is_valid(const char *s);

/* Check s like digest_is_valid(), recording a reason that names s on failure: -EINVAL for bad
 * syntax, -EPROTONOSUPPORT for a well-formed digest of another algorithm (sha512:…). */
int digest_validate(const char *s);

/* The hex part of a valid digest ("sha256:abc…" → "abc…"). */
const char *digest_hex(const char *digest);

/* Write 2*size lowercase hex digits and a NUL to out, which has room for at least 2*size+1 bytes. */
void hex_encode(const uint8_t *data, size_t size, char *out);
bool hex_is_lower(const char *s, size_t length);
