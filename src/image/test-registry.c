/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs the registry client against tests/registry/test-registry.py, a local test registry that
 * misbehaves on request, and checks the results and the exact reasons. */
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "digest.h"
#include "manifest.h"
#include "reference.h"
#include "registry.h"
#include "test-registry-script.h"
#include "tests.h"

#define LAYER_SIZE (64 * 1024)
#define REPOSITORY "e2e/vm"
#define SERVER_START_TIMEOUT_MS 10000

typedef struct Fixture {
        char root[64];
        char credentials_path[128];
        char no_credentials_path[128];
        uint8_t layer[LAYER_SIZE];
        char *layer_digest;
        char *config_digest;
        char *manifest;
        char *manifest_digest;
        char *index_digest;
        char *docker_digest;
        char *mismatch_digest;      /* a file name under blobs/ that does not match its content */
        char *mismatch_real_digest; /* what that content hashes to */
        char *missing_digest;
        bool ready;
} Fixture;

static Fixture fixture;

static int write_file(const char *path, const void *data, size_t size) {
        FILE *f = fopen(path, "we");

        if (!f)
                return -errno;
        if (fwrite(data, 1, size, f) != size) {
                fclose(f);
                return -EIO;
        }
        return fclose(f) == 0 ? 0 : -errno;
}

/* Store data as blobs/sha256/<hex> and return its digest. */
static int write_blob(const void *data, size_t size, char **ret_digest) {
        _cleanup_free_ char *digest = NULL;
        char path[256];
        int r;

        r = digest_buffer(data, size, &digest);
        if (r < 0)
                return r;

        snprintf(path, sizeof(path), "%s/blobs/sha256/%s", fixture.root, digest_hex(digest));
        r = write_file(path, data, size);
        if (r < 0)
                return r;

        *ret_digest = TAKE_PTR(digest);
        return 0;
}

static int fixture_write_manifests(void) {
        _cleanup_free_ char *index = NULL, *docker = NULL, *layout = NULL, *mismatch_body = NULL;
        char path[256];
        int r;

        if (asprintf(&fixture.manifest,
                     "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                     "\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%d}]}",
                     MEDIA_TYPE_OCI_MANIFEST, fixture.config_digest, MEDIA_TYPE_OCI_LAYER_TAR, fixture.layer_digest,
                     LAYER_SIZE) < 0)
                return -ENOMEM;
        r = write_blob(fixture.manifest, strlen(fixture.manifest), &fixture.manifest_digest);
        if (r < 0)
                return r;

        if (asprintf(&index,
                     "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
                     "\"size\":%zu,\"platform\":{\"os\":\"linux\",\"architecture\":\"%s\"}}]}",
                     MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, fixture.manifest_digest, strlen(fixture.manifest),
                     manifest_host_architecture()) < 0)
                return -ENOMEM;
        r = write_blob(index, strlen(index), &fixture.index_digest);
        if (r < 0)
                return r;

        if (asprintf(&docker,
                     "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
                     "\"digest\":\"%s\",\"size\":2},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%d}]}",
                     MEDIA_TYPE_DOCKER_MANIFEST, fixture.config_digest, MEDIA_TYPE_DOCKER_LAYER_GZIP, fixture.layer_digest,
                     LAYER_SIZE) < 0)
                return -ENOMEM;
        r = write_blob(docker, strlen(docker), &fixture.docker_digest);
        if (r < 0)
                return r;

        /* A manifest stored under the digest of other bytes. */
        r = digest_buffer("other bytes", 11, &fixture.mismatch_digest);
        if (r < 0)
                return r;
        if (asprintf(&mismatch_body, "%s ", fixture.manifest) < 0)
                return -ENOMEM;
        r = digest_buffer(mismatch_body, strlen(mismatch_body), &fixture.mismatch_real_digest);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "%s/blobs/sha256/%s", fixture.root, digest_hex(fixture.mismatch_digest));
        r = write_file(path, mismatch_body, strlen(mismatch_body));
        if (r < 0)
                return r;

        if (asprintf(&layout,
                     "{\"schemaVersion\":2,\"manifests\":["
                     "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\"}},"
                     "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":\"multi\"}},"
                     "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":\"docker\"}}]}",
                     MEDIA_TYPE_OCI_MANIFEST, fixture.manifest_digest, strlen(fixture.manifest),
                     MEDIA_TYPE_OCI_INDEX, fixture.index_digest, strlen(index),
                     MEDIA_TYPE_DOCKER_MANIFEST, fixture.docker_digest, strlen(docker)) < 0)
                return -ENOMEM;
        snprintf(path, sizeof(path), "%s/index.json", fixture.root);
        return write_file(path, layout, strlen(layout));
}

static int fixture_setup(void) {
        char path[256];
        uint32_t x = 12345;
        int r;

        if (fixture.ready)
                return 0;

        snprintf(fixture.root, sizeof(fixture.root), "/tmp/test-registry-XXXXXX");
        if (!mkdtemp(fixture.root))
                return -errno;

        snprintf(path, sizeof(path), "%s/blobs", fixture.root);
        if (mkdir(path, 0755) < 0)
                return -errno;
        snprintf(path, sizeof(path), "%s/blobs/sha256", fixture.root);
        if (mkdir(path, 0755) < 0)
                return -errno;

        for (size_t i = 0; i < LAYER_SIZE; i++) {
                x = x * 1103515245 + 12345;
                fixture.layer[i] = (uint8_t) (x >> 16);
        }
        r = write_blob(fixture.layer, LAYER_SIZE, &fixture.layer_digest);
        if (r < 0)
                return r;
        r = write_blob("{}", 2, &fixture.config_digest);
        if (r < 0)
                return r;
        r = digest_buffer("never stored", 12, &fixture.missing_digest);
        if (r < 0)
                return r;

        r = fixture_write_manifests();
        if (r < 0)
                return r;

        snprintf(fixture.credentials_path, sizeof(fixture.credentials_path), "%s/auth.json", fixture.root);
        snprintf(fixture.no_credentials_path, sizeof(fixture.no_credentials_path), "%s/none.json", fixture.root);

        /* Keep the credentials of the user running the tests out of reach. */
        setenv("HOME", fixture.root, 1);
        unsetenv("DOCKER_CONFIG");
        setenv("REGISTRY_AUTH_FILE", fixture.no_credentials_path, 1);

        /* A client writing to a pipe whose reader is gone must see EPIPE, not die. */
        signal(SIGPIPE, SIG_IGN);

        fixture.ready = true;
        return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void __attribute__((destructor)) fixture_cleanup(void) {
        if (!fixture.ready)
                return;

        nftw(fixture.root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(fixture.layer_digest);
        free(fixture.config_digest);
        free(fixture.manifest);
        free(fixture.manifest_digest);
        free(fixture.index_digest);
        free(fixture.docker_digest);
        free(fixture.mismatch_digest);
        free(fixture.mismatch_real_digest);
        free(fixture.missing_digest);
}

/* Make the client find user:password for the test registry on port, or no credentials with NULL. */
static int use_credentials(int port, const char *user, const char *password) {
        char json[512];
        int r;

        if (!user)
                return setenv("REGISTRY_AUTH_FILE", fixture.no_credentials_path, 1) < 0 ? -errno : 0;

        snprintf(json, sizeof(json), "{\"auths\":{\"127.0.0.1:%d\":{\"username\":\"%s\",\"password\":\"%s\"}}}",
                 port, user, password);
        r = write_file(fixture.credentials_path, json, strlen(json));
        if (r < 0)
                return r;

        return setenv("REGISTRY_AUTH_FILE", fixture.credentials_path, 1) < 0 ? -errno : 0;
}

/* ---- The server process ---- */

typedef struct Server {
        pid_t pid;
        int port;
} Server;

static void server_stop(Server *s) {
        if (s->pid <= 0)
                return;

        kill(s->pid, SIGTERM);
        (void) waitpid(s->pid, NULL, 0);
        s->pid = 0;
}

static bool python3_available(void) {
        _cleanup_free_ char *path = NULL;
        const char *p = getenv("PATH");

        path = strdup(p ?: "/usr/bin:/bin");
        if (!path)
                return false;

        for (char *save = NULL, *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
                char candidate[4096];

                snprintf(candidate, sizeof(candidate), "%s/python3", dir);
                if (access(candidate, X_OK) == 0)
                        return true;
        }

        return false;
}

static int read_port(int fd) {
        char line[32];
        size_t n = 0;

        while (n < sizeof(line) - 1) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                ssize_t k;

                if (poll(&pfd, 1, SERVER_START_TIMEOUT_MS) <= 0)
                        return -ETIMEDOUT;

                k = read(fd, line + n, sizeof(line) - 1 - n);
                if (k <= 0)
                        return -EIO;
                n += k;
                line[n] = '\0';
                if (strchr(line, '\n'))
                        return atoi(line);
        }

        return -EIO;
}

/* Start the test registry with extra flags (NULL-terminated). Returns TEST_SKIP without python3. */
static int server_start(Server *ret, const char *const *flags) {
        const char *script = getenv("TEST_REGISTRY_SCRIPT") ?: TEST_REGISTRY_SCRIPT;
        const char *argv[32] = { "python3", script, "--root", fixture.root };
        size_t n = 4;
        int fds[2], port;
        pid_t pid;

        if (!python3_available())
                return TEST_SKIP;

        for (const char *const *f = flags; f && *f && n < ELEMENTSOF(argv) - 1; f++)
                argv[n++] = *f;
        argv[n] = NULL;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

                dup2(fds[1], STDOUT_FILENO);
                if (!getenv("TEST_REGISTRY_VERBOSE") && null >= 0)
                        dup2(null, STDERR_FILENO);
                execvp("python3", (char **) argv);
                _exit(127);
        }

        close(fds[1]);
        port = read_port(fds[0]);
        close(fds[0]);

        ret->pid = pid;
        if (port <= 0) {
                server_stop(ret);
                fprintf(stderr, "test registry did not start: %s\n", strerror(port < 0 ? -port : EIO));
                return -EIO;
        }

        ret->port = port;
        return 0;
}

/* Start a server for a test: skips the test without python3 and fails it if the server does not come up. */
#define START_SERVER(server, ...)                                                        \
        do {                                                                             \
                static const char *const _flags_[] = { __VA_ARGS__, NULL };              \
                int _start_r_;                                                           \
                ASSERT_OK(fixture_setup());                                              \
                _start_r_ = server_start(&(server), _flags_);                           \
                if (_start_r_ == TEST_SKIP)                                              \
                        return TEST_SKIP;                                                \
                ASSERT_OK(_start_r_);                                                    \
        } while (0)

/* ---- Client helpers ---- */

static int client_new(int port, const char *repository, const RegistryOptions *opts, RegistryClient **ret) {
        _cleanup_(reference_freep) Reference *ref = NULL;
        char s[256];
        int r;

        snprintf(s, sizeof(s), "127.0.0.1:%d/%s:latest", port, repository);
        r = reference_parse(s, &ref);
        if (r < 0)
                return r;

        return registry_client_new(ref, opts, ret);
}

typedef struct Progress {
        uint64_t last;
        unsigned calls;
} Progress;

static void progress_record(void *userdata, uint64_t done) {
        Progress *p = userdata;

        p->last = done;
        p->calls++;
}

/* Fetch a blob into a memfd and compare it with the fixture's layer. */
static int fetch_layer(RegistryClient *c, const char *digest, uint64_t expected_size, Progress *progress) {
        _cleanup_close_ int fd = -EBADF;
        uint8_t *data;
        struct stat st;
        int r;

        fd = memfd_create("blob", MFD_CLOEXEC);
        if (fd < 0)
                return -errno;

        r = registry_fetch_blob(c, digest, expected_size, fd, progress ? progress_record : NULL, progress);
        if (r < 0)
                return r;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size != LAYER_SIZE)
                return error_set(-EBADMSG, "fetched %jd bytes, expected %d", (intmax_t) st.st_size, LAYER_SIZE);

        data = mmap(NULL, LAYER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
        if (data == MAP_FAILED)
                return -errno;
        r = memcmp(data, fixture.layer, LAYER_SIZE) == 0 ? 0 : error_set(-EBADMSG, "fetched bytes differ");
        munmap(data, LAYER_SIZE);
        return r;
}

static int get_manifest(RegistryClient *c, const char *reference, const char *expected_media_type,
                        const char *expected_digest) {
        _cleanup_free_ char *body = NULL, *media_type = NULL, *digest = NULL;
        size_t size;
        int r;

        r = registry_get_manifest(c, reference, &body, &size, &media_type, &digest);
        if (r < 0)
                return r;

        ASSERT_STREQ(media_type, expected_media_type);
        ASSERT_STREQ(digest, expected_digest);
        ASSERT_EQ(strlen(body), size);
        return 0;
}

static long elapsed_ms(const struct timespec *start) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

#define FAST_OPTIONS { .connect_timeout_sec = 5, .low_speed_time_sec = 2 }

/* ---- Tests ---- */

TEST(registry_pull_manifests_and_blob) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        _cleanup_free_ char *body = NULL, *media_type = NULL, *digest = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        Progress progress = {};
        size_t size;

        START_SERVER(server, "--auth", "none");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        ASSERT_OK(registry_get_manifest(c, "latest", &body, &size, &media_type, &digest));
        ASSERT_EQ(size, strlen(fixture.manifest));
        ASSERT_STREQ(body, fixture.manifest);
        ASSERT_STREQ(media_type, MEDIA_TYPE_OCI_MANIFEST);
        ASSERT_STREQ(digest, fixture.manifest_digest);

        ASSERT_OK(get_manifest(c, fixture.manifest_digest, MEDIA_TYPE_OCI_MANIFEST, fixture.manifest_digest));
        ASSERT_OK(get_manifest(c, "multi", MEDIA_TYPE_OCI_INDEX, fixture.index_digest));
        ASSERT_OK(get_manifest(c, "docker", MEDIA_TYPE_DOCKER_MANIFEST, fixture.docker_digest));

        ASSERT_OK(fetch_layer(c, fixture.layer_digest, LAYER_SIZE, &progress));
        ASSERT_EQ(progress.last, LAYER_SIZE);
        ASSERT_TRUE(progress.calls > 0);
        ASSERT_OK(fetch_layer(c, fixture.layer_digest, REGISTRY_BLOB_SIZE_UNKNOWN, NULL));
        return 0;
}

TEST(registry_not_found_reasons) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL, *missing = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--auth", "none");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = get_manifest(c, "nope", NULL, NULL);
        ASSERT_ERROR(r, ENOENT);
        snprintf(reason, sizeof(reason), "manifest unknown: tag 'nope' not found in 127.0.0.1:%d/e2e/vm", server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        r = get_manifest(c, fixture.missing_digest, NULL, NULL);
        ASSERT_ERROR(r, ENOENT);
        snprintf(reason, sizeof(reason), "manifest unknown: digest '%s' not found in 127.0.0.1:%d/e2e/vm",
                 fixture.missing_digest, server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        r = fetch_layer(c, fixture.missing_digest, 12, NULL);
        ASSERT_ERROR(r, ENOENT);
        snprintf(reason, sizeof(reason), "blob %s not found in 127.0.0.1:%d/e2e/vm", fixture.missing_digest, server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        ASSERT_OK(client_new(server.port, "e2e/missing", &opts, &missing));
        r = get_manifest(missing, "latest", NULL, NULL);
        ASSERT_ERROR(r, ENOENT);
        snprintf(reason, sizeof(reason), "repository 'e2e/missing' not found in 127.0.0.1:%d", server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        r = get_manifest(c, "bad tag", NULL, NULL);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid tag or digest 'bad tag'");

        r = fetch_layer(c, "sha256:beef", 1, NULL);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid digest 'sha256:beef': expected 'sha256:' followed by 64 lowercase hex digits");
        return 0;
}

TEST(registry_size_and_digest_checks) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL, *small = NULL;
        RegistryOptions opts = FAST_OPTIONS, small_opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--auth", "none");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = fetch_layer(c, fixture.layer_digest, LAYER_SIZE - 1, NULL);
        ASSERT_ERROR(r, EBADMSG);
        snprintf(reason, sizeof(reason), "blob %s is larger than the expected %d bytes", fixture.layer_digest, LAYER_SIZE - 1);
        ASSERT_ERROR_MESSAGE(r, reason);

        r = fetch_layer(c, fixture.layer_digest, LAYER_SIZE + 1, NULL);
        ASSERT_ERROR(r, EBADMSG);
        snprintf(reason, sizeof(reason), "blob %s from 127.0.0.1:%d/e2e/vm is %d bytes, expected %d",
                 fixture.layer_digest, server.port, LAYER_SIZE, LAYER_SIZE + 1);
        ASSERT_ERROR_MESSAGE(r, reason);

        r = get_manifest(c, fixture.mismatch_digest, NULL, NULL);
        ASSERT_ERROR(r, EBADMSG);
        snprintf(reason, sizeof(reason), "digest mismatch for manifest %s from 127.0.0.1:%d/e2e/vm: the content hashes to %s",
                 fixture.mismatch_digest, server.port, fixture.mismatch_real_digest);
        ASSERT_ERROR_MESSAGE(r, reason);

        small_opts.max_manifest_size = 100;
        ASSERT_OK(client_new(server.port, REPOSITORY, &small_opts, &small));
        r = get_manifest(small, "latest", NULL, NULL);
        ASSERT_ERROR(r, EFBIG);
        snprintf(reason, sizeof(reason), "manifest 'latest' in 127.0.0.1:%d/e2e/vm is %zu bytes, over the limit of 100",
                 server.port, strlen(fixture.manifest));
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

TEST(registry_oversized_manifest_stream) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--oversized-manifest", "6000000");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = get_manifest(c, "latest", NULL, NULL);
        ASSERT_ERROR(r, EFBIG);
        snprintf(reason, sizeof(reason), "manifest 'latest' in 127.0.0.1:%d/e2e/vm is over the limit of 4194304 bytes",
                 server.port);
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

TEST(registry_bearer_anonymous) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;

        /* The challenge requests two scopes. The token endpoint returns 400 unless both arrive as
         * separate scope parameters, and it sends the token as "access_token". */
        START_SERVER(server, "--auth", "bearer", "--extra-scope", "repository:other/repo:pull",
                     "--token-key", "access_token");
        ASSERT_OK(use_credentials(0, NULL, NULL));
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        ASSERT_OK(get_manifest(c, "latest", MEDIA_TYPE_OCI_MANIFEST, fixture.manifest_digest));
        ASSERT_OK(fetch_layer(c, fixture.layer_digest, LAYER_SIZE, NULL));
        return 0;
}

TEST(registry_bearer_credentials) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *anonymous = NULL, *good = NULL, *bad = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--auth", "bearer", "--token-needs-credentials");

        ASSERT_OK(use_credentials(0, NULL, NULL));
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &anonymous));
        r = get_manifest(anonymous, "latest", NULL, NULL);
        ASSERT_ERROR(r, EACCES);
        snprintf(reason, sizeof(reason),
                 "authentication required for 127.0.0.1:%d/e2e/vm and no credentials found "
                 "(add them to ~/.docker/config.json)", server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        ASSERT_OK(use_credentials(server.port, "alice", "secret"));
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &good));
        ASSERT_OK(get_manifest(good, "latest", MEDIA_TYPE_OCI_MANIFEST, fixture.manifest_digest));
        ASSERT_OK(fetch_layer(good, fixture.layer_digest, LAYER_SIZE, NULL));

        ASSERT_OK(use_credentials(server.port, "alice", "wrong"));
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &bad));
        r = get_manifest(bad, "latest", NULL, NULL);
        ASSERT_ERROR(r, EACCES);
        snprintf(reason, sizeof(reason),
                 "token server http://127.0.0.1:%d/token rejected the credentials of user 'alice' (HTTP 401)", server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        ASSERT_OK(use_credentials(0, NULL, NULL));
        return 0;
}

TEST(registry_basic_auth) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *anonymous = NULL, *good = NULL, *bad = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--auth", "basic");

        ASSERT_OK(use_credentials(0, NULL, NULL));
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &anonymous));
        r = get_manifest(anonymous, "latest", NULL, NULL);
        ASSERT_ERROR(r, EACCES);
        snprintf(reason, sizeof(reason),
                 "authentication required for 127.0.0.1:%d/e2e/vm and no credentials found "
                 "(add them to ~/.docker/config.json)", server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        ASSERT_OK(use_credentials(server.port, "alice", "secret"));
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &good));
        ASSERT_OK(get_manifest(good, "latest", MEDIA_TYPE_OCI_MANIFEST, fixture.manifest_digest));
        ASSERT_OK(fetch_layer(good, fixture.layer_digest, LAYER_SIZE, NULL));

        ASSERT_OK(use_credentials(server.port, "alice", "wrong"));
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &bad));
        r = get_manifest(bad, "latest", NULL, NULL);
        ASSERT_ERROR(r, EACCES);
        snprintf(reason, sizeof(reason),
                 "authentication failed for 127.0.0.1:%d/e2e/vm as user 'alice': UNAUTHORIZED: authentication required",
                 server.port);
        ASSERT_ERROR_MESSAGE(r, reason);

        ASSERT_OK(use_credentials(0, NULL, NULL));
        return 0;
}

TEST(registry_token_endpoint_failure) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--auth", "bearer", "--token-fail");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = get_manifest(c, "latest", NULL, NULL);
        ASSERT_ERROR(r, EIO);
        snprintf(reason, sizeof(reason), "failed to get a token from http://127.0.0.1:%d/token: HTTP 500", server.port);
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

TEST(registry_redirect_keeps_token_home) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;

        /* The storage port returns 400 when the registry's bearer token arrives with the request. */
        START_SERVER(server, "--auth", "bearer", "--redirect-blobs");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        ASSERT_OK(fetch_layer(c, fixture.layer_digest, LAYER_SIZE, NULL));
        return 0;
}

TEST(registry_redirect_loop) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--redirect-loop");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = fetch_layer(c, fixture.layer_digest, LAYER_SIZE, NULL);
        ASSERT_ERROR(r, ELOOP);
        snprintf(reason, sizeof(reason), "too many redirects (more than 10) fetching blob %s from 127.0.0.1:%d/e2e/vm",
                 fixture.layer_digest, server.port);
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

TEST(registry_blob_digest_mismatch) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        _cleanup_free_ char *corrupt_digest = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        uint8_t corrupt[LAYER_SIZE];
        char reason[512];
        int r;

        START_SERVER(server, "--corrupt-blobs");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        memcpy(corrupt, fixture.layer, LAYER_SIZE);
        corrupt[LAYER_SIZE - 1] ^= 0xff;
        ASSERT_OK(digest_buffer(corrupt, LAYER_SIZE, &corrupt_digest));

        r = fetch_layer(c, fixture.layer_digest, LAYER_SIZE, NULL);
        ASSERT_ERROR(r, EBADMSG);
        snprintf(reason, sizeof(reason), "digest mismatch for blob %s from 127.0.0.1:%d/e2e/vm: the content hashes to %s",
                 fixture.layer_digest, server.port, corrupt_digest);
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

TEST(registry_truncated_blob) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char prefix[512];
        int r;

        START_SERVER(server, "--truncate-blobs");
        opts.max_retries = 1;
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = fetch_layer(c, fixture.layer_digest, LAYER_SIZE, NULL);
        ASSERT_ERROR(r, EIO);
        /* The rest of the reason is libcurl's own text. */
        snprintf(prefix, sizeof(prefix), "transfer of blob %s from 127.0.0.1:%d failed after 2 attempts: ",
                 fixture.layer_digest, server.port);
        ASSERT_TRUE(strneq(error_message(r), prefix, strlen(prefix)));
        return 0;
}

TEST(registry_resume_with_range) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        Progress progress = {};

        /* The first response stops after half of the blob. The retry requests the rest with
         * Range and gets 206. */
        START_SERVER(server, "--truncate-first-blob");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        ASSERT_OK(fetch_layer(c, fixture.layer_digest, LAYER_SIZE, &progress));
        ASSERT_EQ(progress.last, LAYER_SIZE);
        return 0;
}

TEST(registry_resume_without_range) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        Progress progress = {};

        /* The retry gets the whole blob with 200, and the part already written is skipped. */
        START_SERVER(server, "--truncate-first-blob", "--ignore-range");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        ASSERT_OK(fetch_layer(c, fixture.layer_digest, LAYER_SIZE, &progress));
        ASSERT_EQ(progress.last, LAYER_SIZE);
        return 0;
}

TEST(registry_retry_then_success) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        struct timespec start;

        START_SERVER(server, "--fail-status", "503", "--fail-count", "3");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        clock_gettime(CLOCK_MONOTONIC, &start);
        ASSERT_OK(get_manifest(c, "latest", MEDIA_TYPE_OCI_MANIFEST, fixture.manifest_digest));
        /* Backoff of 200, 400 and 800 ms. */
        ASSERT_TRUE(elapsed_ms(&start) >= 1400);
        return 0;
}

TEST(registry_retry_after) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        struct timespec start;

        START_SERVER(server, "--fail-status", "429", "--fail-count", "1", "--retry-after", "1");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        clock_gettime(CLOCK_MONOTONIC, &start);
        ASSERT_OK(fetch_layer(c, fixture.layer_digest, LAYER_SIZE, NULL));
        ASSERT_TRUE(elapsed_ms(&start) >= 1000);
        return 0;
}

TEST(registry_retries_exhausted) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--fail-status", "500", "--fail-count", "100", "--retry-after", "0");
        opts.max_retries = 2;
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = get_manifest(c, "latest", NULL, NULL);
        ASSERT_ERROR(r, EIO);
        snprintf(reason, sizeof(reason),
                 "127.0.0.1:%d returned HTTP 500 for manifest 'latest', giving up after 3 attempts: "
                 "UNAVAILABLE: injected failure", server.port);
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

TEST(registry_slow_blob_times_out) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int r;

        START_SERVER(server, "--slow-blobs");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        r = fetch_layer(c, fixture.layer_digest, LAYER_SIZE, NULL);
        ASSERT_ERROR(r, ETIMEDOUT);
        snprintf(reason, sizeof(reason), "transfer of blob %s from 127.0.0.1:%d timed out: less than 1024 bytes/s for 2 s",
                 fixture.layer_digest, server.port);
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

TEST(registry_connection_refused) {
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t length = sizeof(sa);
        RegistryOptions opts = FAST_OPTIONS;
        char reason[512];
        int fd, port, r;

        ASSERT_OK(fixture_setup());

        /* A port that was free a moment ago and has no listener now. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        ASSERT_TRUE(getsockname(fd, (struct sockaddr *) &sa, &length) == 0);
        port = ntohs(sa.sin_port);
        close(fd);

        ASSERT_OK(client_new(port, REPOSITORY, &opts, &c));
        r = get_manifest(c, "latest", NULL, NULL);
        ASSERT_ERROR(r, ECONNREFUSED);
        snprintf(reason, sizeof(reason), "failed to connect to 127.0.0.1:%d: connection refused", port);
        ASSERT_ERROR_MESSAGE(r, reason);
        return 0;
}

typedef struct Worker {
        RegistryClient *client;
        int result;
        char *reason;
} Worker;

static void *worker_run(void *userdata) {
        Worker *w = userdata;

        w->result = fetch_layer(w->client, fixture.layer_digest, LAYER_SIZE, NULL);
        w->reason = error_save(w->result);
        return NULL;
}

TEST(registry_parallel_blobs) {
        _cleanup_(server_stop) Server server = {};
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions opts = FAST_OPTIONS;
        pthread_t threads[4];
        Worker workers[4];

        START_SERVER(server, "--auth", "bearer", "--redirect-blobs");
        ASSERT_OK(client_new(server.port, REPOSITORY, &opts, &c));

        for (size_t i = 0; i < ELEMENTSOF(threads); i++) {
                workers[i] = (Worker) { .client = c };
                ASSERT_TRUE(pthread_create(&threads[i], NULL, worker_run, &workers[i]) == 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(threads); i++)
                ASSERT_TRUE(pthread_join(threads[i], NULL) == 0);

        for (size_t i = 0; i < ELEMENTSOF(threads); i++) {
                if (workers[i].result < 0)
                        fprintf(stderr, "worker %zu: %s\n", i, workers[i].reason ?: strerror(-workers[i].result));
                free(workers[i].reason);
        }
        for (size_t i = 0; i < ELEMENTSOF(threads); i++)
                ASSERT_OK(workers[i].result);
        return 0;
}

DEFINE_TEST_MAIN
