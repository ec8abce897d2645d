#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Process-wide logging state: the one exception to "no globals", as every
 * module logs and the sink is the process's stderr. */
static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_FORMAT_TEXT;
static bool access_enabled = true;
static struct buf pending;
static struct buf scratch; /* a message being formatted (json) */

#define FLUSH_THRESHOLD 16384
#define MAX_HELD 256

struct held_record {
	struct timeval tv;
	enum log_level level;
	char *msg;
};
static bool holding;
static struct held_record held[MAX_HELD];
static size_t n_held;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *format_names[] = {"text", "json"};

void log_set_level(enum log_level level)
{
	min_level = level;
}

enum log_level log_get_level(void)
{
	return min_level;
}

int log_level_parse(const char *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	if (strcmp(s, "warning") == 0)
		return LOG_WARN;
	return -1;
}

void log_set_access(bool enabled)
{
	access_enabled = enabled;
}

bool log_access_enabled(void)
{
	return access_enabled && min_level <= LOG_INFO;
}

void log_set_format(enum log_format f)
{
	format = f;
}

int log_format_parse(const char *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(format_names); i++)
		if (strcmp(s, format_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_json_string(struct buf *b, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	buf_append(b, "\"", 1);
	size_t i = 0;
	while (i < len) {
		size_t run = i;
		/* the common case: printable ASCII, copied in one go */
		while (run < len && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' &&
		       s[run] != '\\')
			run++;
		buf_append(b, s + i, run - i);
		i = run;
		if (i >= len)
			break;
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			buf_append(b, esc, 2);
			i++;
		} else if (c == '\n') {
			buf_append(b, "\\n", 2);
			i++;
		} else if (c == '\t') {
			buf_append(b, "\\t", 2);
			i++;
		} else if (c == '\r') {
			buf_append(b, "\\r", 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\u%04x", c);
			i++;
		} else {
			size_t n = utf8_decode(s + i, len - i, NULL);
			if (n) {
				buf_append(b, s + i, n);
				i += n;
			} else {
				buf_append(b, "\\ufffd", 6);
				i++;
			}
		}
	}
	buf_append(b, "\"", 1);
}

static void stamp_text(struct buf *b, const struct timeval *tv, const char *after)
{
	struct tm tm;
	gmtime_r(&tv->tv_sec, &tm);
	char t[32];
	strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
	buf_printf(b, "%s.%03dZ%s", t, (int)(tv->tv_usec / 1000), after);
}

/* The start of a JSON record, up to and including "msg": */
static void json_head(struct buf *b, const struct timeval *tv, enum log_level level)
{
	buf_append_str(b, "{\"time\":\"");
	stamp_text(b, tv, "\"");
	buf_printf(b, ",\"level\":\"%s\",\"msg\":", level_names[level]);
}

static void maybe_flush(enum log_level level)
{
	if (pending.len >= FLUSH_THRESHOLD || level >= LOG_WARN)
		log_flush();
}

/* Formats one record of msg[0..len) into pending. */
static void emit(const struct timeval *tv, enum log_level level, const char *msg, size_t len)
{
	if (format == LOG_FORMAT_JSON) {
		json_head(&pending, tv, level);
		log_json_string(&pending, msg, len);
		buf_append(&pending, "}\n", 2);
	} else {
		stamp_text(&pending, tv, " ");
		buf_printf(&pending, "%-5s ", level_names[level]);
		buf_append(&pending, msg, len);
		buf_append(&pending, "\n", 1);
	}
}

void log_hold(void)
{
	holding = true;
}

void log_release(void)
{
	holding = false;
	for (size_t i = 0; i < n_held; i++) {
		if (held[i].level >= min_level)
			emit(&held[i].tv, held[i].level, held[i].msg, strlen(held[i].msg));
		free(held[i].msg);
	}
	n_held = 0;
	log_flush();
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level >= LOG_OFF || (level < min_level && !holding))
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	va_list ap;
	va_start(ap, fmt);
	buf_reset(&scratch);
	buf_vprintf(&scratch, fmt, ap);
	va_end(ap);
	const char *msg = scratch.data ? scratch.data : "";
	if (holding) {
		if (n_held < MAX_HELD)
			held[n_held++] = (struct held_record){tv, level, xstrdup(msg)};
		return;
	}
	emit(&tv, level, msg, scratch.len);
	maybe_flush(level);
}

void log_access(const char *method, const char *path, int status, unsigned long long bytes,
		double duration_ms)
{
	if (!log_access_enabled())
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	if (format == LOG_FORMAT_JSON) {
		buf_reset(&scratch);
		buf_printf(&scratch, "%s %s %d", method, path, status);
		json_head(&pending, &tv, LOG_INFO);
		log_json_string(&pending, scratch.data, scratch.len);
		buf_append_str(&pending, ",\"kind\":\"access\",\"method\":");
		log_json_string(&pending, method, strlen(method));
		buf_append_str(&pending, ",\"path\":");
		log_json_string(&pending, path, strlen(path));
		buf_printf(&pending, ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.2f}\n", status,
			   bytes, duration_ms);
		maybe_flush(LOG_INFO);
		return;
	}
	stamp_text(&pending, &tv, " ");
	buf_append_str(&pending, "http  ");
	buf_append_str(&pending, method);
	buf_append(&pending, " ", 1);
	/* the path comes from the client: keep the log one line per request */
	for (const char *p = path; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f || c == '"')
			buf_printf(&pending, "\\x%02x", c);
		else
			buf_append(&pending, p, 1);
	}
	buf_printf(&pending, " %d %llu %.2fms\n", status, bytes, duration_ms);
	maybe_flush(LOG_INFO);
}

void log_flush(void)
{
	size_t off = 0;
	while (off < pending.len) {
		ssize_t n = write(STDERR_FILENO, pending.data + off, pending.len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	buf_reset(&pending);
}
