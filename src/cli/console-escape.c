/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "console-escape.h"
#include "error.h"

void console_escape_init(ConsoleEscape *e, char escape) {
        *e = (ConsoleEscape) { .escape = escape, .line_start = true };
}

static bool is_newline(char c) {
        return c == '\r' || c == '\n';
}

ConsoleEscapeAction console_escape_feed(ConsoleEscape *e, char c, char out[static 2], size_t *ret_n) {
        *ret_n = 0;

        if (e->pending) {
                e->pending = false;
                if (c == '.')
                        return CONSOLE_ESCAPE_DISCONNECT;
                /* The help leaves the line start state alone, so "~?" can be followed by "~.". */
                if (c == '?')
                        return CONSOLE_ESCAPE_HELP;
                out[(*ret_n)++] = e->escape;
                if (c != e->escape)
                        out[(*ret_n)++] = c;
                e->line_start = c != e->escape && is_newline(c);
                return CONSOLE_ESCAPE_FORWARD;
        }

        if (e->line_start && c == e->escape) {
                e->pending = true;
                return CONSOLE_ESCAPE_FORWARD;
        }

        out[(*ret_n)++] = c;
        e->line_start = is_newline(c);
        return CONSOLE_ESCAPE_FORWARD;
}

static int invalid(const char *s, const char *why) {
        return error_set(-EINVAL, "invalid escape character '%s': %s", s, why);
}

int console_escape_parse(const char *s, char *ret) {
        unsigned char c;

        if (isempty(s))
                return error_set(-EINVAL, "invalid escape character '': expected one character or "
                                          "caret notation such as ^]");

        if (s[0] == '^' && s[1] != '\0') {
                unsigned char k = (unsigned char) s[1];

                if (s[2] != '\0')
                        return invalid(s, "expected one character or caret notation such as ^]");
                if (k >= 'a' && k <= 'z')
                        k = (unsigned char) (k - 'a' + 'A');
                if (k == '?')
                        return invalid(s, "NUL, CR, LF and DEL cannot be used");
                if (k < '@' || k > '_')
                        return invalid(s, "caret notation takes one of @, A-Z, [, \\, ], ^ or _");
                c = (unsigned char) (k - '@');
        } else {
                if ((unsigned char) s[0] >= 0x80)
                        return invalid(s, "expected an ASCII character");
                if (s[1] != '\0')
                        return invalid(s, "expected one character or caret notation such as ^]");
                c = (unsigned char) s[0];
        }

        if (c == '\0' || c == '\r' || c == '\n' || c == 0x7f)
                return invalid(s, "NUL, CR, LF and DEL cannot be used");
        if (c >= 0x80)
                return invalid(s, "expected an ASCII character");
        if (c == '.' || c == '?')
                return invalid(s, "'.' and '?' are escape commands");

        *ret = (char) c;
        return 0;
}

const char *console_escape_name(char c, char buf[static 3]) {
        unsigned char u = (unsigned char) c;

        if (u < 0x20) {
                buf[0] = '^';
                buf[1] = (char) (u + '@');
                buf[2] = '\0';
        } else {
                buf[0] = c;
                buf[1] = '\0';
        }
        return buf;
}
