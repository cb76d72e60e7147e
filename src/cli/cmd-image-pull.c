/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloudimg.h"
#include "commands.h"
#include "error.h"
#include "format.h"
#include "oci-pull.h"
#include "strv.h"

static bool arg_quiet = false;
static bool arg_force = false;
static uint64_t arg_max_size = 0;
static const char *arg_checksum = NULL;

enum { ARG_QUIET = 'q', ARG_INSECURE = 0x100, ARG_FORCE, ARG_MAX_SIZE, ARG_CHECKSUM };

static const CliOption options[] = {
        { "quiet", 'q', NULL, "print no progress, only the result lines", ARG_QUIET },
        { "insecure", 0, NULL, "allow plain HTTP and unverified TLS for the registries of these images", ARG_INSECURE },
        { "force", 0, NULL, "download cloud images again even when they are up to date", ARG_FORCE },
        { "max-size", 0, "SIZE", "largest cloud image download accepted, e.g. 30G (default CloudImageMaxSize=, 20G)", ARG_MAX_SIZE },
        { "checksum", 0, "sha256:HEX", "expected sha256 of the one cloud image URL given", ARG_CHECKSUM },
        {},
};

static bool insecure_all_named = false;

static int parse_option(int id, const char *arg) {
        switch (id) {
        case ARG_QUIET:
                arg_quiet = true;
                return 0;
        case ARG_INSECURE:
                insecure_all_named = true;
                return 0;
        case ARG_FORCE:
                arg_force = true;
                return 0;
        case ARG_MAX_SIZE: {
                int r = parse_size(arg, &arg_max_size);

                if (r < 0)
                        return r;
                if (arg_max_size == 0)
                        return error_set(-EINVAL, "invalid size '%s' for --max-size: expected a "
                                                  "size above 0", arg);
                return 0;
        }
        case ARG_CHECKSUM:
                arg_checksum = arg;
                return 0;
        }
        return -EINVAL;
}

/* Progress rendering: on a terminal one bar per layer, redrawn in place at most ten times a
 * second; otherwise one plain line when a layer starts and when it is done. */
typedef struct LayerView {
        char short_digest[20];
        uint64_t size, done;
        const char *state;
} LayerView;

typedef struct ProgressView {
        bool tty;
        size_t n;
        LayerView *layers;
        size_t drawn;              /* lines drawn last time, to move the cursor back up */
        struct timespec last_draw;
} ProgressView;

static void short_digest(char *buf, size_t len, const char *digest) {
        snprintf(buf, len, "%.19s", digest);
}

static void view_draw(ProgressView *v, bool force) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!force && (now.tv_sec - v->last_draw.tv_sec) * 1000000000L +
                                      (now.tv_nsec - v->last_draw.tv_nsec) < 100000000L)
                return;
        v->last_draw = now;

        if (v->drawn > 0)
                fprintf(stderr, "\033[%zuA", v->drawn);
        for (size_t i = 0; i < v->n; i++) {
                LayerView *l = &v->layers[i];
                char done[FORMAT_SIZE_MAX], total[FORMAT_SIZE_MAX], bar[31];
                unsigned fill = l->size > 0 ? (unsigned) (MIN(l->done, l->size) * 30 / l->size) : 0;

                memset(bar, ' ', 30);
                memset(bar, '=', fill);
                bar[30] = '\0';
                fprintf(stderr, "\033[2K%s: %-12s [%s] %s / %s\n", l->short_digest,
                        l->state ?: "waiting", bar, format_size_decimal(done, sizeof(done), l->done),
                        format_size_decimal(total, sizeof(total), l->size));
        }
        v->drawn = v->n;
        fflush(stderr);
}

static void on_start(void *userdata, const char *name, size_t n_layers) {
        ProgressView *v = userdata;

        v->n = n_layers;
        v->layers = calloc(n_layers, sizeof(LayerView));
        if (!v->layers)
                v->n = 0;
        fprintf(stderr, "Pulling %s (%zu %s)\n", name, n_layers, n_layers == 1 ? "layer" : "layers");
}

static void on_layer_cached(void *userdata, size_t index, const char *digest) {
        ProgressView *v = userdata;

        if (index >= v->n)
                return;
        short_digest(v->layers[index].short_digest, sizeof(v->layers[index].short_digest), digest);
        v->layers[index].state = "present";
        if (v->tty)
                view_draw(v, true);
        else
                fprintf(stderr, "Layer %s: already present\n", v->layers[index].short_digest);
}

static void on_layer_started(void *userdata, size_t index, const char *digest, uint64_t size) {
        ProgressView *v = userdata;

        if (index >= v->n)
                return;
        short_digest(v->layers[index].short_digest, sizeof(v->layers[index].short_digest), digest);
        v->layers[index].size = size;
        v->layers[index].state = "downloading";
        if (v->tty)
                view_draw(v, true);
        else {
                char total[FORMAT_SIZE_MAX];

                fprintf(stderr, "Layer %s: downloading %s\n", v->layers[index].short_digest,
                        format_size_decimal(total, sizeof(total), size));
        }
}

static void on_layer_bytes(void *userdata, size_t index, uint64_t done) {
        ProgressView *v = userdata;

        if (index >= v->n)
                return;
        v->layers[index].done = done;
        if (v->tty)
                view_draw(v, false);
}

static void on_layer_done(void *userdata, size_t index, uint64_t erofs_size) {
        ProgressView *v = userdata;

        if (index >= v->n)
                return;
        v->layers[index].done = v->layers[index].size;
        v->layers[index].state = "done";
        if (v->tty)
                view_draw(v, true);
        else {
                char size[FORMAT_SIZE_MAX];

                fprintf(stderr, "Layer %s: done, EROFS image %s\n", v->layers[index].short_digest,
                        format_size_decimal(size, sizeof(size), erofs_size));
        }
}

/* Progress of a cloud image download. On a terminal, one bar is redrawn in place at most ten
 * times a second. Otherwise each step prints one plain line. */
typedef struct CloudView {
        bool tty;
        bool bar_drawn;            /* the cursor is at the end of a bar line */
        struct timespec last_draw;
} CloudView;

static void cloud_end_bar(CloudView *v) {
        if (v->bar_drawn)
                fputc('\n', stderr);
        v->bar_drawn = false;
}

static void cloud_draw(CloudView *v, uint64_t done, uint64_t size, bool force) {
        char done_s[FORMAT_SIZE_MAX], size_s[FORMAT_SIZE_MAX], bar[31];
        struct timespec now;
        unsigned fill;

        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!force && (now.tv_sec - v->last_draw.tv_sec) * 1000000000L +
                                      (now.tv_nsec - v->last_draw.tv_nsec) < 100000000L)
                return;
        v->last_draw = now;

        format_size_decimal(done_s, sizeof(done_s), done);
        if (size > 0) {
                fill = (unsigned) (MIN(done, size) * 30 / size);
                memset(bar, ' ', 30);
                memset(bar, '=', fill);
                bar[30] = '\0';
                fprintf(stderr, "\r\033[2KDownloading [%s] %s / %s", bar, done_s,
                        format_size_decimal(size_s, sizeof(size_s), size));
        } else
                fprintf(stderr, "\r\033[2KDownloading %s", done_s);
        v->bar_drawn = true;
        fflush(stderr);
}

static void on_download_started(void *userdata, const char *url, uint64_t offset, uint64_t size) {
        CloudView *v = userdata;
        char offset_s[FORMAT_SIZE_MAX], size_s[FORMAT_SIZE_MAX];

        if (v->tty) {
                cloud_end_bar(v);
                fprintf(stderr, "%s %s\n", offset > 0 ? "Resuming" : "Downloading", url);
                cloud_draw(v, offset, size, true);
                return;
        }

        if (size > 0)
                format_size_decimal(size_s, sizeof(size_s), size);
        else
                snprintf(size_s, sizeof(size_s), "size unknown");
        if (offset > 0)
                fprintf(stderr, "Resuming %s at %s of %s\n", url,
                        format_size_decimal(offset_s, sizeof(offset_s), offset), size_s);
        else
                fprintf(stderr, "Downloading %s (%s)\n", url, size_s);
}

static void on_download_bytes(void *userdata, uint64_t done, uint64_t size) {
        CloudView *v = userdata;

        if (v->tty)
                cloud_draw(v, done, size, false);
}

static void on_download_retry(void *userdata, unsigned attempt, unsigned max_attempts,
                              const char *reason) {
        CloudView *v = userdata;

        cloud_end_bar(v);
        fprintf(stderr, "Download failed: %s; trying again (attempt %u of %u)\n", reason, attempt,
                max_attempts);
}

static void on_download_done(void *userdata, uint64_t size) {
        CloudView *v = userdata;
        char size_s[FORMAT_SIZE_MAX];

        if (v->tty) {
                cloud_draw(v, size, size, true);
                cloud_end_bar(v);
        } else
                fprintf(stderr, "Downloaded %s\n", format_size_decimal(size_s, sizeof(size_s), size));
}

static void on_convert_started(void *userdata, CloudImgFormat format) {
        CloudView *v = userdata;

        cloud_end_bar(v);
        fprintf(stderr, "Converting the %s image to a qcow2 version 3 base\n",
                cloudimg_format_to_string(format));
}

static const char *verification_to_string(CloudImgVerification v) {
        switch (v) {
        case CLOUDIMG_VERIFIED_BY_SHA256SUMS:
                return "verified by SHA256SUMS";
        case CLOUDIMG_VERIFIED_BY_CHECKSUM:
                return "verified by --checksum";
        default:
                return "not verified";
        }
}

static int pull_cloud(const Store *store, const char *url, const Config *config) {
        _cleanup_(image_record_freep) ImageRecord *rec = NULL;
        CloudView view = { .tty = isatty(STDERR_FILENO) };
        CloudImgProgress progress = {
                .userdata = &view,
                .download_started = on_download_started,
                .download_bytes = on_download_bytes,
                .download_retry = on_download_retry,
                .download_done = on_download_done,
                .convert_started = on_convert_started,
        };
        CloudImgOptions opts = {
                .max_size = arg_max_size ?: config->cloud_image_max_size,
                .checksum = arg_checksum,
                .force = arg_force,
                .progress = arg_quiet ? NULL : &progress,
        };
        CloudImgVerification verification = CLOUDIMG_NOT_VERIFIED;
        bool up_to_date = false;
        int r;

        error_clear();
        r = cloudimg_pull(store, url, &opts, &rec, &verification, &up_to_date);
        cloud_end_bar(&view);
        if (r < 0) {
                log_error("Failed to pull '%s': %s", url, error_message(r));
                return r;
        }

        if (up_to_date)
                printf("Image %s is up to date (%s)\n", rec->name, rec->content_sum);
        else
                printf("Pulled %s (%s, %s)\n", rec->name, rec->content_sum,
                       verification_to_string(verification));
        fflush(stdout);
        return 0;
}

/* SIGINT and SIGTERM are blocked in every thread and taken here, so an interrupted pull stops
 * its transfers and still removes its work directory before the process exits. */
static void *signal_thread(void *userdata) {
        sigset_t *set = userdata;
        int sig;

        while (sigwait(set, &sig) == 0) {
                if (sig == SIGUSR1)
                        return NULL;
                oci_pull_cancel_all();
                cloudimg_pull_cancel_all();
        }
        return NULL;
}

static int pull_one(const Store *store, const char *image, const Config *config, char **insecure) {
        _cleanup_(image_record_freep) ImageRecord *rec = NULL;
        ProgressView view = { .tty = isatty(STDERR_FILENO) };
        PullProgress progress = {
                .userdata = &view,
                .start = on_start,
                .layer_cached = on_layer_cached,
                .layer_started = on_layer_started,
                .layer_bytes = on_layer_bytes,
                .layer_done = on_layer_done,
        };
        PullOptions opts = {
                .insecure_registries = insecure,
                .concurrency = config->pull_concurrency,
                .progress = arg_quiet ? NULL : &progress,
        };
        bool up_to_date = false;
        int r;

        if (cloudimg_is_url(image))
                return pull_cloud(store, image, config);

        error_clear();
        r = oci_pull(store, image, &opts, &rec, &up_to_date);
        free(view.layers);
        if (r < 0) {
                log_error("Failed to pull '%s': %s", image, error_message(r));
                return r;
        }

        if (up_to_date)
                printf("Image %s is up to date (%s)\n", rec->name, rec->manifest_digest);
        else
                printf("Pulled %s (%s)\n", rec->name, rec->manifest_digest);
        fflush(stdout);
        return 0;
}

static int insecure_registries(const Config *config, int argc, char **argv, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        r = strv_split(config->insecure_registries, " ,", &l);
        if (r < 0)
                return r;

        /* --insecure covers exactly the registries named on this command line. */
        for (int i = 0; insecure_all_named && i < argc; i++) {
                _cleanup_free_ char *host = strndup(argv[i], strcspn(argv[i], "/"));

                if (!host)
                        return -ENOMEM;
                if (strchr(argv[i], '/') && (strchr(host, '.') || strchr(host, ':') ||
                                             streq(host, "localhost")))
                        r = strv_extend(&l, host);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_strv_free_ char **insecure = NULL;
        pthread_t sig_thread;
        sigset_t set;
        int r, ret = 0;

        /* One checksum cannot describe several images. */
        if (arg_checksum && (argc != 1 || !cloudimg_is_url(argv[0]))) {
                log_error("--checksum needs exactly one cloud image URL.");
                return EXIT_USAGE;
        }

        r = store_open(config->root_dir, &store);
        if (r < 0) {
                log_error("Failed to open the store: %s", error_message(r));
                return EXIT_FAILURE;
        }

        r = insecure_registries(config, argc, argv, &insecure);
        if (r < 0) {
                log_error("Out of memory.");
                return EXIT_FAILURE;
        }

        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        if (pthread_create(&sig_thread, NULL, signal_thread, &set) != 0) {
                log_error("Failed to start the signal thread.");
                return EXIT_FAILURE;
        }

        /* Images are pulled one after another, and the first failure stops the rest, as in the
         * Go Cocoon. Each failed pull has already cleaned up after itself. */
        for (int i = 0; i < argc; i++) {
                r = pull_one(store, argv[i], config, insecure);
                if (r < 0) {
                        ret = r == -ECANCELED ? 130 : EXIT_FAILURE;
                        break;
                }
        }

        pthread_kill(sig_thread, SIGUSR1);
        pthread_join(sig_thread, NULL);
        return ret;
}

const CliCommand cmd_image_pull = {
        .group = "image",
        .name = "pull",
        .args = "IMAGE...",
        .summary = "Pull OCI VM images from a registry, or cloud images over HTTP(S)",
        .description =
                "IMAGE is a reference such as ubuntu:24.04 (docker.io/library/ubuntu:24.04) or\n"
                "registry.example.com:5000/team/vm@sha256:<digest>. Each layer is fetched,\n"
                "verified against its digest and converted to an EROFS image; the image is\n"
                "recorded only once every layer checked out. Registries on localhost and\n"
                "127.0.0.0/8 may use plain HTTP; name others with --insecure or the\n"
                "InsecureRegistries= setting. Credentials come from ~/.docker/config.json or\n"
                "$REGISTRY_AUTH_FILE.\n\n"
                "An IMAGE starting with http:// or https:// is a cloud image (a qcow2 or raw\n"
                "disk such as Ubuntu's noble-server-cloudimg-amd64.img). It is checked against\n"
                "--checksum, or against the SHA256SUMS file in the same directory when the\n"
                "server publishes one, converted to a read-only qcow2 base and stored by the\n"
                "sha256 of the downloaded bytes. A cut transfer is resumed where the server\n"
                "supports ranges. qcow2 images that name a backing file or an external data\n"
                "file are rejected.",
        .options = options,
        .min_args = 1,
        .max_args = -1,
        .parse_option = parse_option,
        .run = run,
};
