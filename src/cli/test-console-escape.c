/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "console-escape.h"
#include "tests.h"

/* Feed a whole string; returns the bytes sent to the guest, with each action recorded as
 * "<D>" (disconnect) or "<H>" (help) in their place. Feeding stops at a disconnect. */
static const char *feed(ConsoleEscape *e, const char *in, size_t n) {
        static char result[256];
        size_t k = 0;

        for (size_t i = 0; i < n && k + 4 < sizeof(result); i++) {
                char out[2];
                size_t m;
                ConsoleEscapeAction a = console_escape_feed(e, in[i], out, &m);

                memcpy(result + k, out, m);
                k += m;
                if (a == CONSOLE_ESCAPE_HELP) {
                        memcpy(result + k, "<H>", 3);
                        k += 3;
                } else if (a == CONSOLE_ESCAPE_DISCONNECT) {
                        memcpy(result + k, "<D>", 3);
                        k += 3;
                        break;
                }
        }
        result[k] = '\0';
        return result;
}

static const char *feed_fresh(char escape, const char *in) {
        ConsoleEscape e;

        console_escape_init(&e, escape);
        return feed(&e, in, strlen(in));
}

TEST(escape_dot_at_session_start_disconnects) {
        ASSERT_STREQ(feed_fresh('~', "~."), "<D>");
        return 0;
}

TEST(escape_dot_after_newline_disconnects) {
        ASSERT_STREQ(feed_fresh('~', "ls\r~."), "ls\r<D>");
        ASSERT_STREQ(feed_fresh('~', "ls\n~."), "ls\n<D>");
        return 0;
}

TEST(escape_mid_line_passes_through) {
        ASSERT_STREQ(feed_fresh('~', "a~.b"), "a~.b");
        ASSERT_STREQ(feed_fresh('~', "echo ~?"), "echo ~?");
        return 0;
}

TEST(escape_question_mark_shows_help) {
        ASSERT_STREQ(feed_fresh('~', "~?"), "<H>");
        /* Still at the start of a line after the help. */
        ASSERT_STREQ(feed_fresh('~', "~?~."), "<H><D>");
        return 0;
}

TEST(escape_doubled_sends_one) {
        ASSERT_STREQ(feed_fresh('~', "~~"), "~");
        /* The sent '~' starts the line, so a following "~." is text. */
        ASSERT_STREQ(feed_fresh('~', "~~~."), "~~.");
        return 0;
}

TEST(escape_other_byte_sends_both) {
        ASSERT_STREQ(feed_fresh('~', "~x"), "~x");
        ASSERT_STREQ(feed_fresh('~', "~/home"), "~/home");
        return 0;
}

TEST(escape_then_newline_keeps_line_start) {
        ASSERT_STREQ(feed_fresh('~', "~\r~."), "~\r<D>");
        return 0;
}

TEST(escape_custom_character) {
        ASSERT_STREQ(feed_fresh(0x1d, "\x1d."), "<D>");
        ASSERT_STREQ(feed_fresh(0x1d, "~."), "~.");
        ASSERT_STREQ(feed_fresh(0x1d, "\x1d\x1d"), "\x1d");
        return 0;
}

TEST(escape_state_spans_reads) {
        ConsoleEscape e;

        console_escape_init(&e, '~');
        ASSERT_STREQ(feed(&e, "x\r~", 3), "x\r");
        ASSERT_STREQ(feed(&e, ".", 1), "<D>");
        return 0;
}

TEST(escape_parse_plain_and_caret) {
        char c = 0;

        ASSERT_OK(console_escape_parse("~", &c));
        ASSERT_EQ(c, '~');
        ASSERT_OK(console_escape_parse("^]", &c));
        ASSERT_EQ(c, 0x1d);
        ASSERT_OK(console_escape_parse("^a", &c));
        ASSERT_EQ(c, 0x01);
        ASSERT_OK(console_escape_parse("^A", &c));
        ASSERT_EQ(c, 0x01);
        ASSERT_OK(console_escape_parse("^", &c));
        ASSERT_EQ(c, '^');
        ASSERT_OK(console_escape_parse("\x1d", &c));
        ASSERT_EQ(c, 0x1d);
        return 0;
}

TEST(escape_parse_rejects_bad_characters) {
        char c = 'x';
        int r;

        r = console_escape_parse("", &c);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '': expected one character or caret notation such as ^]");
        r = console_escape_parse("ab", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character 'ab': expected one character or caret notation such as ^]");
        r = console_escape_parse("^]x", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '^]x': expected one character or caret notation such as ^]");
        r = console_escape_parse("^@", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '^@': NUL, CR, LF and DEL cannot be used");
        r = console_escape_parse("^M", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '^M': NUL, CR, LF and DEL cannot be used");
        r = console_escape_parse("^j", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '^j': NUL, CR, LF and DEL cannot be used");
        r = console_escape_parse("^?", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '^?': NUL, CR, LF and DEL cannot be used");
        r = console_escape_parse("\r", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '\r': NUL, CR, LF and DEL cannot be used");
        r = console_escape_parse("\x7f", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '\x7f': NUL, CR, LF and DEL cannot be used");
        r = console_escape_parse("\xe9", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '\xe9': expected an ASCII character");
        r = console_escape_parse("\xc3\xa9", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '\xc3\xa9': expected an ASCII character");
        r = console_escape_parse(".", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '.': '.' and '?' are escape commands");
        r = console_escape_parse("?", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '?': '.' and '?' are escape commands");
        r = console_escape_parse("^1", &c);
        ASSERT_ERROR_MESSAGE(r, "invalid escape character '^1': caret notation takes one of @, A-Z, [, \\, ], ^ or _");
        ASSERT_EQ(c, 'x');
        return 0;
}

TEST(escape_name_formats) {
        char buf[3];

        ASSERT_STREQ(console_escape_name('~', buf), "~");
        ASSERT_STREQ(console_escape_name(0x1d, buf), "^]");
        ASSERT_STREQ(console_escape_name(0x01, buf), "^A");
        return 0;
}

DEFINE_TEST_MAIN
