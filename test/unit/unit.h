/* A tiny test harness: CHECK* macros print both values on failure, and the
 * program exits non-zero if any check failed. Include once per test file. */
#ifndef RUNBOAT_UNIT_H
#define RUNBOAT_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failures;
static int unit_checks;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		unit_checks++;                                                             \
		if (!(cond)) {                                                             \
			unit_failures++;                                                   \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
		}                                                                          \
	} while (0)

#define CHECK_INT(a, b)                                                                    \
	do {                                                                               \
		long long _a = (long long)(a), _b = (long long)(b);                        \
		unit_checks++;                                                             \
		if (_a != _b) {                                                            \
			unit_failures++;                                                   \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__,  \
				__LINE__, #a, #b, _a, _b);                                 \
		}                                                                          \
	} while (0)

#define CHECK_STR(a, b)                                                                    \
	do {                                                                               \
		const char *_a = (a), *_b = (b);                                           \
		unit_checks++;                                                             \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                   \
			unit_failures++;                                                   \
			fprintf(stderr, "%s:%d: %s == %s failed:\n  got:      \"%s\"\n  expected: \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)"); \
		}                                                                          \
	} while (0)

#define RUN(fn)                                                                            \
	do {                                                                               \
		int _before = unit_failures;                                               \
		fn();                                                                      \
		fprintf(stderr, "%s %s\n", unit_failures == _before ? "ok  " : "FAIL", #fn);   \
	} while (0)

#define UNIT_DONE()                                                                        \
	(fprintf(stderr, "%d checks, %d failed\n", unit_checks, unit_failures),            \
	 unit_failures ? 1 : 0)

/* Directory of ../shared (fixtures, spec data), from RUNBOAT_SHARED or beside
 * the clone. */
static inline const char *unit_shared_dir(void)
{
	const char *d = getenv("RUNBOAT_SHARED");
	return d && *d ? d : "../shared";
}

#endif
