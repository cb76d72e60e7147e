/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "reference.h"

/* A client for the pull side of the OCI distribution API (v2) on libcurl. */

#define REGISTRY_CONNECT_TIMEOUT_SEC_DEFAULT 30L
#define REGISTRY_LOW_SPEED_TIME_SEC_DEFAULT 60L
#define REGISTRY_LOW_SPEED_LIMIT_BYTES 1024L
#define REGISTRY_MAX_RETRIES_DEFAULT 4U
#define REGISTRY_MAX_REDIRECTS 10L

/* Pass as expected_size to registry_fetch_blob() when the size is not known. */
#define REGISTRY_BLOB_SIZE_UNKNOWN UINT64_MAX

typedef struct RegistryOptions {
        char **insecure_registries; /* NULL-terminated host[:port] list where plain HTTP and unverified TLS are allowed */
        long connect_timeout_sec;   /* 0 = REGISTRY_CONNECT_TIMEOUT_SEC_DEFAULT */
        long low_speed_time_sec;    /* abort a transfer below 1 KiB/s for this long; 0 = the default 60 */
        unsigned max_retries;       /* for 429/500/502/503/504 and dropped connections; 0 = the default 4 */
        uint64_t max_manifest_size; /* 0 = MANIFEST_SIZE_MAX_DEFAULT (4 MiB) */
} RegistryOptions;

typedef struct RegistryClient RegistryClient;

/* Create a client for the registry and repository of ref; opts may be NULL. Reads the basic
 * credentials for the registry (see auth_credentials_find()), so a malformed credentials file
 * fails here. */
int registry_client_new(const Reference *ref, const RegistryOptions *opts, RegistryClient **ret);
RegistryClient *registry_client_free(RegistryClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(RegistryClient *, registry_client_free);

/* GET a manifest by tag or digest, accepting the OCI and Docker manifest and index types. Returns
 * the NUL-terminated body, its size, the Content-Type without parameters (NULL when the response
 * had none) and the sha256 digest of the body. When fetched by digest, a body with another
 * digest fails with -EBADMSG. */
int registry_get_manifest(RegistryClient *c, const char *tag_or_digest, char **ret_body, size_t *ret_size,
                          char **ret_media_type, char **ret_digest);

/* Stream the blob with the given digest into out_fd, hashing every byte. Fails with -EBADMSG if
 * the digest or expected_size (unless REGISTRY_BLOB_SIZE_UNKNOWN) does not match; a dropped
 * connection is resumed with a Range request. progress may be NULL. Safe to call from several
 * threads at once on one client. The caller should ignore SIGPIPE when out_fd is a pipe, so that
 * a reader that went away turns into -EPIPE. */
int registry_fetch_blob(RegistryClient *c, const char *digest, uint64_t expected_size, int out_fd,
                        void (*progress)(void *userdata, uint64_t done), void *userdata);
