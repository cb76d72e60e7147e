/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "format.h"
#include "oci-pull.h"
#include "strv.h"

static bool arg_quiet = false;

enum { ARG_QUIET = 'q', ARG_INSECURE = 0x100 };

static const CliOption options[] = {
        { "quiet", 'q', NULL, "print no progress, only the result lines", ARG_QUIET },
        { "insecure", 0, NULL, "allow plain HTTP and unverified TLS for the registries of these images", ARG_INSECURE },
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
        fprintf(stderr, "Pulling %s (%zu layers)\n", name, n_layers);
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

/* SIGINT and SIGTERM are blocked in every thread and taken here, so an interrupted pull stops
 * its transfers and still removes its work directory before the process exits. */
static void *signal_thread(void *userdata) {
        sigset_t *set = userdata;
        int sig;

        while (sigwait(set, &sig) == 0) {
                if (sig == SIGUSR1)
                        return NULL;
                oci_pull_cancel_all();
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

        /* Images are pulled one after another and the first failure stops the rest, as with
         * the Go Cocoon; each failed pull has already cleaned up after itself. */
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
        .summary = "Pull OCI VM images from a registry",
        .description =
                "IMAGE is a reference such as ubuntu:24.04 (docker.io/library/ubuntu:24.04) or\n"
                "registry.example.com:5000/team/vm@sha256:<digest>. Each layer is fetched,\n"
                "verified against its digest and converted to an EROFS image; the image is\n"
                "recorded only once every layer checked out. Registries on localhost and\n"
                "127.0.0.0/8 may use plain HTTP; name others with --insecure or the\n"
                "InsecureRegistries= setting. Credentials come from ~/.docker/config.json or\n"
                "$REGISTRY_AUTH_FILE.",
        .options = options,
        .min_args = 1,
        .max_args = -1,
        .parse_option = parse_option,
        .run = run,
};
