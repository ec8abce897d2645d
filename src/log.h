/* Leveled logs on stderr, and the access log. Lines are buffered and flushed
 * once per loop iteration (log_flush), so logging costs no syscall per line.
 *
 * Two formats: "text" (one human-readable line per record) and "json" (one
 * JSON object per line, for log shippers):
 *   {"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"..."}
 * and for the access log, with "msg" the same words as the text line:
 *   {"time":...,"level":"info","msg":"GET /p 200","kind":"access",
 *    "method":"GET","path":"/p","status":200,"bytes":12,"duration_ms":0.51}
 * Every string is escaped so that any message (control characters, invalid
 * UTF-8, replaced by U+FFFD) still gives one valid JSON line. */
#ifndef RUNBOAT_LOG_H
#define RUNBOAT_LOG_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int log_level_parse(const char *s);
void log_set_access(bool enabled);
bool log_access_enabled(void);
void log_set_format(enum log_format format);
/* Parses "text", "json"; returns -1 if unknown. */
int log_format_parse(const char *s);

/* Holds the records logged from now on (while the configuration, which
 * names the level and format, is loaded) instead of formatting them;
 * log_release formats those of the level then set, in the format then set,
 * and flushes. At most 256 records are held; later ones are dropped. */
void log_hold(void);
void log_release(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line per HTTP request. */
void log_access(const char *method, const char *path, int status, unsigned long long bytes,
		double duration_ms);
/* Writes what is buffered to stderr. */
void log_flush(void);

/* Appends s[0..len) to b as a quoted JSON string: '"', '\\' and control
 * characters escaped, valid UTF-8 copied, each byte of an invalid sequence
 * (overlong, surrogate, beyond U+10FFFF, truncated) written as \ufffd. */
void log_json_string(struct buf *b, const char *s, size_t len);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
