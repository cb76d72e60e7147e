/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "macro.h"

/* An image reference in the Docker grammar, normalised so that the short and long spellings of
 * one image compare equal: "ubuntu:24.04" becomes registry "docker.io", repository
 * "library/ubuntu", tag "24.04". */
typedef struct Reference {
        char *registry;   /* host[:port], "docker.io" for Docker Hub */
        char *repository; /* lowercase path components, e.g. "library/ubuntu" */
        char *tag;        /* "latest" when neither tag nor digest is given, NULL with only a digest */
        char *digest;     /* "sha256:<hex>" or NULL */
} Reference;

#define REFERENCE_DEFAULT_REGISTRY "docker.io"
#define REFERENCE_DEFAULT_TAG "latest"
#define REFERENCE_NAME_MAX 255
#define REFERENCE_TAG_MAX 128

/* Parse s. Returns -EINVAL with a reason naming s on bad input, or -EPROTONOSUPPORT for a digest
 * of an algorithm other than sha256. */
int reference_parse(const char *s, Reference **ret);
Reference *reference_free(Reference *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Reference *, reference_free);

/* The normalised form "registry/repository[:tag][@digest]", or NULL when out of memory. */
char *reference_to_string(const Reference *r);

/* The host[:port] that serves the registry API ("registry-1.docker.io" for Docker Hub). */
const char *reference_api_host(const Reference *r);
