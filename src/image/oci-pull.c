/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "digest.h"
#include "error.h"
#include "fileio.h"
#include "format.h"
#include "layer.h"
#include "manifest.h"
#include "oci-pull.h"
#include "reference.h"
#include "registry.h"
#include "strv.h"

typedef enum LayerState {
        LAYER_CACHED,     /* the blob was already in the store */
        LAYER_FETCH,      /* to be fetched and converted into the work directory */
} LayerState;

typedef struct PullLayer {
        const Descriptor *desc;
        size_t index;
        LayerState state;
        int lock_fd;
        /* Results of a fetch, filled by the worker. */
        int result;
        char *reason;
        uint64_t erofs_size;
        bool has_kernel, has_initrd;
        char *kernel_name, *initrd_name;
} PullLayer;

typedef struct PullJob {
        const Store *store;
        RegistryClient *client;
        const PullOptions *opts;
        char *workdir;
        PullLayer *layers;
        size_t n_layers;

        pthread_mutex_t lock;
        size_t next;          /* next layer to hand to a worker */
        bool failed;
        PullLayer *first_failure;
        int fds[64];          /* both ends of every running transfer */
        size_t n_fds;
} PullJob;

/* The pull in progress, so that oci_pull_cancel_all() can reach its transfers from a signal
 * handling thread. */
static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;
static PullJob *active_job;
static volatile bool cancelled;

/* Shut down every transfer of the job; shutdown() on a socket is safe while other threads read
 * or write it, unlike close(). Called with job->lock held. */
static void job_shutdown_transfers(PullJob *job) {
        for (size_t i = 0; i < job->n_fds; i++)
                shutdown(job->fds[i], SHUT_RDWR);
}

static void transfer_register(PullJob *job, int fd) {
        pthread_mutex_lock(&job->lock);
        if (job->n_fds < ELEMENTSOF(job->fds))
                job->fds[job->n_fds++] = fd;
        if (job->failed || cancelled)
                shutdown(fd, SHUT_RDWR);
        pthread_mutex_unlock(&job->lock);
}

static void transfer_unregister(PullJob *job, int fd) {
        pthread_mutex_lock(&job->lock);
        for (size_t i = 0; i < job->n_fds; i++)
                if (job->fds[i] == fd) {
                        job->fds[i] = job->fds[--job->n_fds];
                        break;
                }
        pthread_mutex_unlock(&job->lock);
}

void oci_pull_cancel_all(void) {
        pthread_mutex_lock(&active_lock);
        cancelled = true;
        if (active_job) {
                pthread_mutex_lock(&active_job->lock);
                job_shutdown_transfers(active_job);
                pthread_mutex_unlock(&active_job->lock);
        }
        pthread_mutex_unlock(&active_lock);
}

static void pull_layer_done(PullLayer *l) {
        safe_close(l->lock_fd);
        free(l->reason);
        free(l->kernel_name);
        free(l->initrd_name);
}

/* The EROFS UUID is derived from the layer digest, so one layer always yields the same image. */
static int layer_uuid(const char *digest, uint8_t uuid[16]) {
        _cleanup_free_ char *d = NULL;
        _cleanup_free_ char *seed = strjoin("cocoon-erofs-uuid:", digest, NULL);
        const char *hex;
        int r;

        if (!seed)
                return -ENOMEM;
        r = digest_buffer(seed, strlen(seed), &d);
        if (r < 0)
                return r;
        hex = digest_hex(d);
        for (size_t i = 0; i < 16; i++)
                sscanf(hex + 2 * i, "%2hhx", &uuid[i]);
        uuid[6] = (uuid[6] & 0x0f) | 0x50;  /* name-based, SHA-derived */
        uuid[8] = (uuid[8] & 0x3f) | 0x80;  /* RFC 4122 variant */
        return 0;
}

static int boot_file_exists(const Store *s, const char *digest, const char *file) {
        _cleanup_free_ char *dir = image_layer_boot_dir(s, digest);
        _cleanup_free_ char *p = dir ? strjoin(dir, "/", file, NULL) : NULL;
        struct stat st;

        if (!p)
                return -ENOMEM;
        return stat(p, &st) >= 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

static bool blob_exists(const Store *s, const char *digest) {
        _cleanup_free_ char *p = image_layer_blob_path(s, digest);
        struct stat st;

        return p && stat(p, &st) >= 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

typedef struct FetchArgs {
        PullJob *job;
        PullLayer *layer;
        int fd;
        int result;
        char *reason;
} FetchArgs;

static void fetch_progress(void *userdata, uint64_t done) {
        FetchArgs *a = userdata;
        const PullProgress *p = a->job->opts->progress;

        if (p && p->layer_bytes) {
                pthread_mutex_lock(&a->job->lock);
                p->layer_bytes(p->userdata, a->layer->index, done);
                pthread_mutex_unlock(&a->job->lock);
        }
}

static void *fetch_thread(void *userdata) {
        FetchArgs *a = userdata;

        a->result = registry_fetch_blob(a->job->client, a->layer->desc->digest, a->layer->desc->size,
                                        a->fd, fetch_progress, a);
        a->reason = error_save(a->result);

        /* The converter reads the end of the stream only after our side is shut down. */
        shutdown(a->fd, SHUT_WR);
        return NULL;
}

static int layer_fetch_and_convert(PullJob *job, PullLayer *l) {
        const char *hex = digest_hex(l->desc->digest);
        _cleanup_free_ char *erofs_path = NULL, *boot_path = NULL;
        _cleanup_close_ int out_fd = -EBADF, boot_fd = -EBADF;
        _cleanup_(layer_info_done) LayerInfo info = {};
        int sv[2], r;
        FetchArgs args = { .job = job, .layer = l };
        pthread_t thread;
        uint8_t uuid[16];

        if (asprintf(&erofs_path, "%s/%s.erofs", job->workdir, hex) < 0 ||
            asprintf(&boot_path, "%s/%s.boot", job->workdir, hex) < 0)
                return -ENOMEM;

        r = layer_uuid(l->desc->digest, uuid);
        if (r < 0)
                return r;

        out_fd = open(erofs_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (out_fd < 0)
                return error_set(-errno, "cannot create '%s': %m", erofs_path);
        if (mkdir(boot_path, 0755) < 0)
                return error_set(-errno, "cannot create '%s': %m", boot_path);
        boot_fd = open(boot_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (boot_fd < 0)
                return -errno;

        /* A socket pair, not a pipe: shutdown() lets a cancel wake both ends safely. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        transfer_register(job, sv[0]);
        transfer_register(job, sv[1]);

        args.fd = sv[1];
        r = -pthread_create(&thread, NULL, fetch_thread, &args);
        if (r < 0) {
                transfer_unregister(job, sv[0]);
                transfer_unregister(job, sv[1]);
                safe_close(sv[0]);
                safe_close(sv[1]);
                return r;
        }

        r = layer_convert(sv[0], out_fd, boot_fd, uuid, NULL, &info);

        /* Whatever happened to the converter, the fetch must stop writing and end. */
        shutdown(sv[0], SHUT_RDWR);
        pthread_join(thread, NULL);
        transfer_unregister(job, sv[0]);
        transfer_unregister(job, sv[1]);
        safe_close(sv[0]);
        safe_close(sv[1]);

        if (cancelled) {
                free(args.reason);
                return error_set(-ECANCELED, "interrupted");
        }

        /* A transfer error explains a converter failure (truncated stream), not the reverse:
         * but a converter that rejected the content stops reading, which the fetch sees as a
         * broken connection. Prefer the converter's reason unless the fetch failed on its own. */
        if (args.result < 0 && (r >= 0 || args.result != -EPIPE)) {
                r = error_restore(args.result, args.reason);
                return r;
        }
        free(args.reason);
        if (r < 0)
                return r;

        if (fsync(out_fd) < 0 || fchmod(out_fd, 0444) < 0)
                return -errno;

        l->erofs_size = info.erofs_size;
        l->has_kernel = info.kernel_name != NULL;
        l->has_initrd = info.initrd_name != NULL;
        l->kernel_name = TAKE_PTR(info.kernel_name);
        l->initrd_name = TAKE_PTR(info.initrd_name);
        return 0;
}

static void *worker_thread(void *userdata) {
        PullJob *job = userdata;
        const PullProgress *p = job->opts->progress;

        for (;;) {
                PullLayer *l = NULL;
                int r;

                pthread_mutex_lock(&job->lock);
                while (job->next < job->n_layers && !job->failed) {
                        PullLayer *c = &job->layers[job->next++];

                        if (c->state == LAYER_FETCH) {
                                l = c;
                                break;
                        }
                }
                if (l && p && p->layer_started)
                        p->layer_started(p->userdata, l->index, l->desc->digest, l->desc->size);
                pthread_mutex_unlock(&job->lock);
                if (!l)
                        return NULL;

                error_clear();
                r = layer_fetch_and_convert(job, l);

                pthread_mutex_lock(&job->lock);
                l->result = r;
                if (r < 0) {
                        l->reason = error_save(r);
                        /* The first failure stops the other transfers: the pull has failed. */
                        if (!job->failed) {
                                job->failed = true;
                                job->first_failure = l;
                                job_shutdown_transfers(job);
                        }
                } else if (p && p->layer_done)
                        p->layer_done(p->userdata, l->index, l->erofs_size);
                pthread_mutex_unlock(&job->lock);
        }
}

static int fetch_manifest(RegistryClient *client, const char *what, Manifest **ret,
                          char **ret_digest) {
        _cleanup_free_ char *body = NULL, *media_type = NULL, *digest = NULL;
        size_t size = 0;
        int r;

        r = registry_get_manifest(client, what, &body, &size, &media_type, &digest);
        if (r < 0)
                return r;

        r = manifest_parse(body, size, media_type, NULL, ret);
        if (r < 0)
                return r;

        *ret_digest = TAKE_PTR(digest);
        return 0;
}

/* Fetch the manifest for this host's platform, going through an index when there is one. */
static int resolve_manifest(RegistryClient *client, const Reference *ref, Manifest **ret,
                            char **ret_digest) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_free_ char *digest = NULL;
        const Descriptor *d;
        int r;

        r = fetch_manifest(client, ref->digest ?: ref->tag, &m, &digest);
        if (r < 0)
                return r;

        if (m->is_index) {
                r = manifest_select_platform(m, "linux", manifest_host_architecture(), &d);
                if (r < 0)
                        return r;

                _cleanup_(manifest_freep) Manifest *platform = NULL;
                _cleanup_free_ char *platform_digest = NULL;

                r = fetch_manifest(client, d->digest, &platform, &platform_digest);
                if (r < 0)
                        return r;
                if (platform->is_index)
                        return error_set(-EPROTONOSUPPORT, "index entry %s is itself an index; "
                                         "nested indexes are not supported", d->digest);

                manifest_free(m);
                m = TAKE_PTR(platform);
                free(digest);
                digest = TAKE_PTR(platform_digest);
        }

        if (m->n_layers == 0)
                return error_set(-EBADMSG, "image manifest %s has no layers", digest);

        *ret = TAKE_PTR(m);
        *ret_digest = TAKE_PTR(digest);
        return 0;
}

static int compare_layer_digest(const void *a, const void *b) {
        const PullLayer *x = *(PullLayer *const *) a, *y = *(PullLayer *const *) b;

        return strcmp(x->desc->digest, y->desc->digest);
}

/* Lock every layer's blob: shared for a blob that is already there (so gc leaves it alone until
 * our record names it), exclusive for one we convert (so a concurrent pull of the same layer waits
 * for ours instead of converting it twice). Locks are taken in digest order so that two pulls
 * sharing layers cannot deadlock. */
static int lock_layers(PullJob *job) {
        _cleanup_free_ PullLayer **sorted = calloc(job->n_layers, sizeof(PullLayer *));
        const char *previous = NULL;

        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < job->n_layers; i++)
                sorted[i] = &job->layers[i];
        qsort(sorted, job->n_layers, sizeof(PullLayer *), compare_layer_digest);

        for (size_t i = 0; i < job->n_layers; i++) {
                PullLayer *l = sorted[i];
                _cleanup_free_ char *name = NULL;
                int r;

                /* A layer listed twice is locked, and fetched, once. */
                if (previous && streq(previous, l->desc->digest)) {
                        l->state = LAYER_CACHED;
                        continue;
                }
                previous = l->desc->digest;

                name = strjoin("blobs/", digest_hex(l->desc->digest), NULL);
                if (!name)
                        return -ENOMEM;

                if (blob_exists(job->store, l->desc->digest)) {
                        r = store_lock(job->store, name, LOCK_SH, &l->lock_fd);
                        if (r < 0)
                                return r;
                        if (blob_exists(job->store, l->desc->digest)) {
                                l->state = LAYER_CACHED;
                                continue;
                        }
                        l->lock_fd = safe_close(l->lock_fd);
                }

                r = store_lock(job->store, name, LOCK_EX, &l->lock_fd);
                if (r < 0)
                        return r;
                /* Another pull may have committed it while we waited. */
                l->state = blob_exists(job->store, l->desc->digest) ? LAYER_CACHED : LAYER_FETCH;
        }
        return 0;
}

static int run_workers(PullJob *job, unsigned concurrency) {
        pthread_t threads[32];
        size_t n_threads = 0, n_fetch = 0;
        const PullProgress *p = job->opts->progress;

        for (size_t i = 0; i < job->n_layers; i++) {
                if (job->layers[i].state == LAYER_FETCH)
                        n_fetch++;
                else if (p && p->layer_cached)
                        p->layer_cached(p->userdata, i, job->layers[i].desc->digest);
        }

        concurrency = MIN(MIN(concurrency ?: 4, ELEMENTSOF(threads)), MAX(n_fetch, 1));
        for (size_t i = 0; i < concurrency && n_fetch > 0; i++) {
                if (pthread_create(&threads[n_threads], NULL, worker_thread, job) != 0)
                        break;
                n_threads++;
        }
        if (n_fetch > 0 && n_threads == 0)
                return error_set(-EAGAIN, "cannot start download threads");

        for (size_t i = 0; i < n_threads; i++)
                pthread_join(threads[i], NULL);

        if (job->failed) {
                PullLayer *l = job->first_failure;

                error_restore(l->result, TAKE_PTR(l->reason));
                return error_prefix(l->result, "layer %s: ", l->desc->digest);
        }
        return 0;
}

static PullLayer *layer_primary(PullJob *job, PullLayer *l) {
        /* A duplicate entry shares the results of the first entry with the same digest. */
        for (size_t i = 0; i < job->n_layers; i++)
                if (streq(job->layers[i].desc->digest, l->desc->digest))
                        return &job->layers[i];
        return l;
}

static int layer_has_boot_file(PullJob *job, PullLayer *l, bool kernel) {
        PullLayer *primary = layer_primary(job, l);

        if (primary->state == LAYER_FETCH)
                return kernel ? primary->has_kernel : primary->has_initrd;
        return boot_file_exists(job->store, l->desc->digest, kernel ? "vmlinuz" : "initrd.img");
}

/* The kernel and initrd come from the last layer that has each, as later layers override
 * earlier ones in the root file system. */
static int find_boot_layers(PullJob *job, const char **ret_kernel, const char **ret_initrd) {
        const char *kernel = NULL, *initrd = NULL;

        for (size_t i = 0; i < job->n_layers; i++) {
                PullLayer *l = &job->layers[i];
                int k = layer_has_boot_file(job, l, true), n = layer_has_boot_file(job, l, false);

                if (k < 0 || n < 0)
                        return -ENOMEM;
                if (k)
                        kernel = l->desc->digest;
                if (n)
                        initrd = l->desc->digest;
        }

        if (!kernel)
                return error_set(-ENOENT, "image has no kernel (boot/vmlinuz*) in any layer");
        if (!initrd)
                return error_set(-ENOENT, "image has no initrd (boot/initrd.img*) in any layer");

        *ret_kernel = kernel;
        *ret_initrd = initrd;
        return 0;
}

static int commit_layer(PullJob *job, PullLayer *l) {
        const char *hex = digest_hex(l->desc->digest);
        _cleanup_free_ char *staged = NULL, *staged_boot = NULL, *blob = NULL, *boot = NULL;

        if (asprintf(&staged, "%s/%s.erofs", job->workdir, hex) < 0 ||
            asprintf(&staged_boot, "%s/%s.boot", job->workdir, hex) < 0)
                return -ENOMEM;
        blob = image_layer_blob_path(job->store, l->desc->digest);
        boot = image_layer_boot_dir(job->store, l->desc->digest);
        if (!blob || !boot)
                return -ENOMEM;

        /* Boot files go first: a blob in place means its boot files are complete. Anything at
         * the boot path now is a leftover of an interrupted commit; we hold the layer's
         * exclusive lock, so nobody else is writing it. */
        if (l->has_kernel || l->has_initrd) {
                (void) rm_rf(boot);
                if (rename(staged_boot, boot) < 0)
                        return error_set(-errno, "cannot move boot files to '%s': %m", boot);
        }

        if (rename(staged, blob) < 0)
                return error_set(-errno, "cannot move the layer to '%s': %m", blob);
        return 0;
}

static int commit(PullJob *job, const Manifest *m, const char *name, const char *manifest_digest,
                  const char *kernel, const char *initrd, ImageRecord **ret) {
        _cleanup_(image_record_freep) ImageRecord *rec = calloc(1, sizeof(ImageRecord));
        char created[FORMAT_TIMESTAMP_MAX];
        struct timespec now;
        int r;

        if (!rec)
                return -ENOMEM;

        for (size_t i = 0; i < job->n_layers; i++)
                if (job->layers[i].state == LAYER_FETCH) {
                        r = commit_layer(job, &job->layers[i]);
                        if (r < 0)
                                return r;
                }

        {
                _cleanup_free_ char *blobs = store_path(job->store, "blobs", "sha256", NULL);
                _cleanup_free_ char *boot = store_path(job->store, "boot", NULL);

                if (!blobs || !boot)
                        return -ENOMEM;
                (void) fsync_path(blobs);
                (void) fsync_path(boot);
        }

        clock_gettime(CLOCK_REALTIME, &now);
        rec->type = IMAGE_OCI;
        rec->name = strdup(name);
        rec->manifest_digest = strdup(manifest_digest);
        rec->kernel_layer = strdup(kernel);
        rec->initrd_layer = strdup(initrd);
        rec->created_at = strdup(format_timestamp_rfc3339(created, sizeof(created), &now));
        rec->layers = calloc(m->n_layers, sizeof(ImageLayer));
        if (!rec->name || !rec->manifest_digest || !rec->kernel_layer || !rec->initrd_layer ||
            !rec->created_at || !rec->layers)
                return -ENOMEM;

        for (size_t i = 0; i < m->n_layers; i++) {
                ImageLayer *dst = &rec->layers[rec->n_layers++];
                _cleanup_free_ char *blob = image_layer_blob_path(job->store, m->layers[i].digest);
                struct stat st;

                dst->digest = strdup(m->layers[i].digest);
                dst->media_type = strdup(m->layers[i].media_type);
                dst->size = m->layers[i].size;
                if (!dst->digest || !dst->media_type || !blob)
                        return -ENOMEM;

                /* A layer listed twice is stored, and counted, once. */
                if (layer_primary(job, &job->layers[i]) == &job->layers[i] && stat(blob, &st) >= 0)
                        rec->size += st.st_size;
        }

        for (int k = 0; k < 2; k++) {
                _cleanup_free_ char *dir = image_layer_boot_dir(job->store, k ? initrd : kernel);
                _cleanup_free_ char *p = dir ? strjoin(dir, k ? "/initrd.img" : "/vmlinuz", NULL) : NULL;
                struct stat st;

                if (!p)
                        return -ENOMEM;
                if (stat(p, &st) < 0)
                        return error_set(-errno, "boot file '%s' vanished: %m", p);
                rec->size += st.st_size;
        }

        r = image_index_put(job->store, rec);
        if (r < 0)
                return error_set(r, "cannot write the image record: %s", strerror(-r));

        *ret = TAKE_PTR(rec);
        return 0;
}

static bool record_is_complete(const Store *s, const ImageRecord *rec, const char *manifest_digest) {
        if (!streq(rec->manifest_digest, manifest_digest))
                return false;
        for (size_t i = 0; i < rec->n_layers; i++)
                if (!blob_exists(s, rec->layers[i].digest))
                        return false;
        return rec->kernel_layer && rec->initrd_layer &&
               boot_file_exists(s, rec->kernel_layer, "vmlinuz") > 0 &&
               boot_file_exists(s, rec->initrd_layer, "initrd.img") > 0;
}

static void job_done(PullJob *job) {
        for (size_t i = 0; i < job->n_layers; i++)
                pull_layer_done(&job->layers[i]);
        free(job->layers);
        if (job->workdir) {
                (void) rm_rf(job->workdir);
                free(job->workdir);
        }
        pthread_mutex_destroy(&job->lock);
}

int oci_pull(const Store *s, const char *image, const PullOptions *opts, ImageRecord **ret,
             bool *ret_up_to_date) {
        _cleanup_(reference_freep) Reference *ref = NULL;
        _cleanup_(registry_client_freep) RegistryClient *client = NULL;
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_(image_record_freep) ImageRecord *existing = NULL;
        _cleanup_free_ char *name = NULL, *manifest_digest = NULL;
        RegistryOptions ropts = { .insecure_registries = opts->insecure_registries };
        PullJob job = { .store = s, .opts = opts, .lock = PTHREAD_MUTEX_INITIALIZER };
        const char *kernel = NULL, *initrd = NULL;
        int r;

        r = reference_parse(image, &ref);
        if (r < 0)
                return r;
        name = reference_to_string(ref);
        if (!name)
                return -ENOMEM;

        r = registry_client_new(ref, &ropts, &client);
        if (r < 0)
                return r;

        r = resolve_manifest(client, ref, &m, &manifest_digest);
        if (r < 0)
                return r;

        if (image_index_get(s, IMAGE_OCI, name, &existing) >= 0 &&
            record_is_complete(s, existing, manifest_digest)) {
                *ret = TAKE_PTR(existing);
                *ret_up_to_date = true;
                return 0;
        }
        error_clear();

        if (opts->progress && opts->progress->start)
                opts->progress->start(opts->progress->userdata, name, m->n_layers);

        job.client = client;
        job.n_layers = m->n_layers;
        job.layers = calloc(m->n_layers, sizeof(PullLayer));
        if (!job.layers)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_layers; i++)
                job.layers[i] = (PullLayer) { .desc = &m->layers[i], .index = i, .lock_fd = -EBADF };

        r = store_mkdtemp(s, "pull", &job.workdir);
        if (r < 0)
                goto finish;

        pthread_mutex_lock(&active_lock);
        active_job = &job;
        pthread_mutex_unlock(&active_lock);

        r = lock_layers(&job);
        if (r >= 0)
                r = run_workers(&job, opts->concurrency);

        pthread_mutex_lock(&active_lock);
        active_job = NULL;
        pthread_mutex_unlock(&active_lock);

        if (r >= 0 && cancelled)
                r = error_set(-ECANCELED, "interrupted");
        if (r >= 0)
                r = find_boot_layers(&job, &kernel, &initrd);
        if (r >= 0)
                r = commit(&job, m, name, manifest_digest, kernel, initrd, ret);
        if (r >= 0)
                *ret_up_to_date = false;

finish:
        job_done(&job);
        return r;
}
