/* Leveled logs on stderr, and the access log. Lines are buffered and flushed
 * once per loop iteration (log_flush), so logging costs no syscall per line. */
#ifndef RUNBOAT_LOG_H
#define RUNBOAT_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int log_level_parse(const char *s);
void log_set_access(bool enabled);
bool log_access_enabled(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line per HTTP request. */
void log_access(const char *method, const char *path, int status, unsigned long long bytes,
		double duration_ms);
/* Writes what is buffered to stderr. */
void log_flush(void);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
