/* Small helpers shared by every module: allocation that aborts on failure,
 * a growable byte buffer, time, and string utilities. */
#ifndef RUNBOAT_UTIL_H
#define RUNBOAT_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED(x) ((void)(x))
#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))

/* Allocation: out of memory aborts here, call sites never check. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh string owned by the caller. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer, always NUL-terminated after len (when data != NULL). */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Hands the storage to the caller (who frees it) and empties the buffer. */
char *buf_steal(struct buf *b);

/* Monotonic clock in milliseconds. */
uint64_t now_ms(void);
/* Wall clock, seconds since the epoch, and RFC 3339 (UTC) formatting. */
void format_rfc3339(int64_t epoch_seconds, char out[32]);
/* Parses "2006-01-02T15:04:05Z" (and with fractional seconds or an offset);
 * returns 0 and sets *out, or -EINVAL. */
int parse_rfc3339(const char *s, int64_t *out);

/* The value of a hexadecimal digit (either case), or -1. */
int hex_digit(char c);

bool str_starts_with(const char *s, const char *prefix);
bool str_ends_with(const char *s, const char *suffix);
/* Case-insensitive comparison of a span to a NUL-terminated string. */
bool span_ieq(const char *span, size_t len, const char *s);

/* Constant-time comparison of two byte strings (lengths may differ). */
bool secure_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Percent-decodes src[0..len) into a fresh string; '+' becomes ' ' when
 * plus_is_space. Returns NULL on a malformed escape or an embedded NUL. */
char *url_decode(const char *src, size_t len, bool plus_is_space);
/* Appends s percent-encoded for a query string or path segment. */
void buf_append_url_encoded(struct buf *b, const char *s);

/* Makes s (NUL-terminated, edited in place) a single line for an error or a
 * log message, whatever it quotes: control characters and the Unicode line
 * breaks U+0085, U+2028 and U+2029 each become one '?'. */
void str_one_line(char *s);

/* The one UTF-8 decoder. Returns the length (1 to 4) of the well-formed
 * character at s, of which n >= 1 bytes are available, and sets *cp to its
 * code point (cp may be NULL); returns 0 if s does not start with one: a
 * continuation byte, a lead byte no character uses (C0, C1, F5-FF), an
 * overlong form, a surrogate (U+D800-U+DFFF), a value beyond U+10FFFF or a
 * sequence cut short by n. Any ASCII byte, NUL and controls included, is a
 * character of length 1: callers that refuse those check them first. The
 * rules are jansson's, so json_string accepts whatever passes. */
size_t utf8_decode(const void *s, size_t n, uint32_t *cp);

/* Where to cut s[0..len) to keep at most max bytes: len if len <= max, else
 * the largest n <= max at which no character is split (s[n] is not a
 * continuation byte). A cut of valid UTF-8 is valid UTF-8. */
size_t utf8_cut(const char *s, size_t len, size_t max);

#endif
