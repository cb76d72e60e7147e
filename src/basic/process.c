/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "error.h"
#include "process.h"
#include "strv.h"

#define OUTPUT_MAX (64 * 1024)

extern char **environ;

int process_find_program(const char *name, char **ret) {
        _cleanup_strv_free_ char **dirs = NULL;
        const char *path = getenv("PATH") ?: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        int r;

        if (strchr(name, '/')) {
                if (access(name, X_OK) < 0)
                        return -errno;
                *ret = strdup(name);
                return *ret ? 0 : -ENOMEM;
        }

        r = strv_split(path, ":", &dirs);
        if (r < 0)
                return r;
        STRV_FOREACH(d, dirs) {
                _cleanup_free_ char *p = strjoin(*d, "/", name, NULL);
                struct stat st;

                if (!p)
                        return -ENOMEM;
                if (stat(p, &st) >= 0 && S_ISREG(st.st_mode) && access(p, X_OK) >= 0) {
                        *ret = TAKE_PTR(p);
                        return 0;
                }
        }
        return -ENOENT;
}

static long elapsed_ms(const struct timespec *start) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

int process_run(char *const *argv, unsigned timeout_sec, char **ret_output) {
        _cleanup_free_ char *program = NULL, *out = NULL, *path_env = NULL;
        posix_spawn_file_actions_t actions;
        int pipefd[2], status, r;
        size_t out_len = 0;
        struct timespec start;
        pid_t pid;
        bool timed_out = false;

        r = process_find_program(argv[0], &program);
        if (r < 0)
                return error_set(r, "program '%s' not found", argv[0]);

        out = malloc(OUTPUT_MAX + 1);
        path_env = strjoin("PATH=", getenv("PATH") ?: "/usr/sbin:/usr/bin:/sbin:/bin", NULL);
        if (!out || !path_env)
                return -ENOMEM;
        char *envp[] = { path_env, (char *) "LC_ALL=C", NULL };

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;

        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDERR_FILENO);
        r = posix_spawn(&pid, program, &actions, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&actions);
        safe_close(pipefd[1]);
        if (r != 0) {
                safe_close(pipefd[0]);
                return error_set(-r, "cannot run '%s': %s", program, strerror(r));
        }

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                int timeout = -1;
                char buf[4096];
                ssize_t n;

                if (timeout_sec > 0) {
                        long left = (long) timeout_sec * 1000 - elapsed_ms(&start);

                        if (left <= 0) {
                                timed_out = true;
                                kill(pid, SIGKILL);
                                break;
                        }
                        timeout = (int) left;
                }

                r = poll(&p, 1, timeout);
                if (r < 0 && errno != EINTR)
                        break;
                if (r <= 0)
                        continue;

                n = read(pipefd[0], buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (out_len < OUTPUT_MAX) {
                        size_t take = MIN((size_t) n, OUTPUT_MAX - out_len);

                        memcpy(out + out_len, buf, take);
                        out_len += take;
                }
        }
        safe_close(pipefd[0]);

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;

        out[out_len] = '\0';
        if (ret_output)
                *ret_output = TAKE_PTR(out);

        if (timed_out)
                return error_set(-ETIMEDOUT, "'%s' timed out after %u s", argv[0], timeout_sec);
        if (WIFSIGNALED(status))
                return error_set(-ECHILD, "'%s' was killed by signal %d", argv[0], WTERMSIG(status));
        return WEXITSTATUS(status);
}

int process_run_checked(char *const *argv, unsigned timeout_sec) {
        _cleanup_free_ char *output = NULL;
        const char *last;
        char *end;
        int r;

        r = process_run(argv, timeout_sec, &output);
        if (r == 0)
                return 0;
        if (r < 0)
                return r;

        /* The last non-empty line usually says what went wrong. */
        end = output + strlen(output);
        while (end > output && (end[-1] == '\n' || end[-1] == ' '))
                *--end = '\0';
        last = strrchr(output, '\n');
        last = last ? last + 1 : output;
        return error_set(-EIO, "%s failed with exit status %d%s%s", argv[0], r, *last ? ": " : "",
                         last);
}
