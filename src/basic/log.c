/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "log.h"

static LogLevel max_level = LOG_LEVEL_INFO;

static const char *const level_names[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_ERROR] = "error",
        [LOG_LEVEL_WARNING] = "warn",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_DEBUG] = "debug",
};

void log_set_max_level(LogLevel level) {
        max_level = level;
}

LogLevel log_get_max_level(void) {
        return max_level;
}

LogLevel log_level_from_string(const char *s) {
        if (!s)
                return _LOG_LEVEL_INVALID;
        if (strcasecmp(s, "warning") == 0)
                return LOG_LEVEL_WARNING;
        for (LogLevel l = 0; l < _LOG_LEVEL_MAX; l++)
                if (strcasecmp(s, level_names[l]) == 0)
                        return l;
        return _LOG_LEVEL_INVALID;
}

const char *log_level_to_string(LogLevel level) {
        if (level < 0 || level >= _LOG_LEVEL_MAX)
                return NULL;
        return level_names[level];
}

int log_internal(LogLevel level, int r, const char *fmt, ...) {
        char buf[2048];
        va_list ap;
        int saved = errno;

        if (level > max_level)
                return r;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);

        /* Warnings and debug lines carry a prefix; errors are the command's own words. */
        if (level == LOG_LEVEL_WARNING)
                fprintf(stderr, "Warning: %s\n", buf);
        else if (level == LOG_LEVEL_DEBUG)
                fprintf(stderr, "Debug: %s\n", buf);
        else
                fprintf(stderr, "%s\n", buf);

        errno = saved;
        return r;
}
