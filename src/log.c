#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Process-wide logging state: the one exception to "no globals", as every
 * module logs and the sink is the process's stderr. */
static enum log_level min_level = LOG_INFO;
static bool access_enabled = true;
static struct buf pending;

#define FLUSH_THRESHOLD 16384

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

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

static void stamp(struct buf *b)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char t[32];
	strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
	buf_printf(b, "%s.%03dZ ", t, (int)(tv.tv_usec / 1000));
}

static void maybe_flush(enum log_level level)
{
	if (pending.len >= FLUSH_THRESHOLD || level >= LOG_WARN)
		log_flush();
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level < min_level)
		return;
	stamp(&pending);
	buf_printf(&pending, "%-5s ", level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&pending, fmt, ap);
	va_end(ap);
	buf_append(&pending, "\n", 1);
	maybe_flush(level);
}

void log_access(const char *method, const char *path, int status, unsigned long long bytes,
		double duration_ms)
{
	if (!log_access_enabled())
		return;
	stamp(&pending);
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
