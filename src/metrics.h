/* Metrics in the Prometheus text exposition format 0.0.4.
 *
 * Two layers:
 * - a small registry (struct metrics): counters, gauges and histograms with
 *   fixed buckets, each a family of series told apart by label values. The
 *   label values of a family are bounded: each label keeps at most
 *   max_values distinct values; a value beyond those is counted under
 *   METRICS_OVERFLOW ("other"), so hostile or unbounded input (paths, event
 *   names, a misbehaving server) can never grow memory or the scrape.
 *   Pure: no I/O, no loop; unit-tested in test/unit/test_metrics.c.
 * - runboat's own metrics: one process-wide registry (the one exception to
 *   "no hidden globals": instrumentation is reached from every module, as
 *   the log is) created by metrics_init, recorded through the metrics_*
 *   hooks below (each a no-op before metrics_init, so that unit tests of the
 *   instrumented modules need nothing), and served at GET /metrics by
 *   metrics_register. README.md "Metrics" lists every metric. */
#ifndef RUNBOAT_METRICS_H
#define RUNBOAT_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define METRICS_MAX_LABELS 4
#define METRICS_MAX_BUCKETS 24
#define METRICS_OVERFLOW "other"
/* The Content-Type of the text format. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics;
struct metric;

/* An empty registry, owned by the caller (metrics_free). */
struct metrics *metrics_new(void);
/* Frees the registry and its families; NULL is fine. */
void metrics_free(struct metrics *m);

/* What a family is. name, help and the label names are copied. Counters'
 * names end in "_total" (the caller's job; checked by an assertion). */
struct metric_desc {
	enum metric_type type;
	const char *name;
	const char *help;
	const char *labels[METRICS_MAX_LABELS]; /* NULL-terminated when fewer */
	size_t max_values;      /* distinct values per label; 0: 32 */
	const double *buckets;  /* histograms: upper bounds, strictly increasing,
	                         * without +Inf (added); at most METRICS_MAX_BUCKETS */
	size_t n_buckets;
};

/* Adds a family; the pointer is owned by the registry. Families are
 * rendered in the order they were added. Aborts on a malformed desc (a
 * programming error): bad name, too many buckets, unsorted buckets. */
struct metric *metrics_add(struct metrics *m, const struct metric_desc *d);

/* Recording. values holds one string per label of the family (borrowed;
 * NULL stands for ""), or is NULL for a family without labels. */
/* Counter: adds v (>= 0; negative values are ignored). Gauge: adds v. */
void metric_add(struct metric *f, const char *const *values, double v);
/* Gauge: sets the series to v. */
void metric_set(struct metric *f, const char *const *values, double v);
/* Histogram: records one observation. */
void metric_observe(struct metric *f, const char *const *values, double v);
/* Forgets every series of the family (for gauges recomputed at each
 * scrape, so that a series whose source disappeared is no longer shown).
 * The distinct label values seen stay counted against max_values. */
void metric_reset(struct metric *f);

/* The current value of one series (counter or gauge), or of a histogram's
 * count; -1 if the series does not exist. For tests. */
double metric_value(const struct metric *f, const char *const *values);

/* Appends the whole registry in the text format to out: per family "# HELP",
 * "# TYPE", then its series (histograms: cumulative _bucket series with le,
 * then _sum and _count). Label values are escaped (\\, \", \n); other
 * control bytes and bytes >= 0x80 become '?', so the output is always
 * ASCII. A family without any series shows its HELP and TYPE only. */
void metrics_render(const struct metrics *m, struct buf *out);

/* A number as the text format writes it: "+Inf", "-Inf", "NaN", integers
 * without a fraction, others in the shortest form that reads back exactly. */
void metrics_format_number(double v, char out[32]);

/* ---- runboat's metrics ---- */

struct app;
struct router;

/* Creates the process-wide registry and runboat's families. Call once,
 * early (it records the process start time). */
void metrics_init(void);
/* Frees it; the hooks are no-ops again. */
void metrics_shutdown(void);
/* The process-wide registry, or NULL before metrics_init. */
struct metrics *metrics_default(void);

/* Registers GET /metrics (unauthenticated, as /healthz). app is borrowed
 * and must outlive the router: builds, the init queue and GitHub's rate
 * limit are read from it at each scrape. */
void metrics_register(struct router *r, struct app *app);
/* Appends the scrape (what GET /metrics answers) to out. app may be NULL
 * (then only what hooks recorded and the process metrics). */
void metrics_scrape(struct app *app, struct buf *out);

/* Hooks, one per instrumented module. Every string is borrowed for the call
 * and may be NULL. */

/* An HTTP request answered: method, the route's pattern (NULL: none
 * matched), the status sent, seconds from its first byte to its end. */
void metrics_http_request(const char *method, const char *route, int status, double seconds);
/* A Kubernetes call finished: verb ("get", "list", "apply", ...), resource
 * (plural, with "/subresource"), HTTP status (0: no answer), error (the
 * kube_result error), seconds from its start (< 0: not observed, for
 * streams such as watches). */
void metrics_kube_request(const char *verb, const char *resource, int status, int error,
			  double seconds);
/* A webhook delivery answered: the X-GitHub-Event (anything but push,
 * pull_request and ping counts as "other") and the outcome. */
void metrics_webhook(const char *event, const char *outcome);
/* A GitHub API answer: what was asked ("status", "branch", "pr", "list"),
 * the transport error (0 or -errno), the HTTP status, whether it was a rate
 * limit. */
void metrics_github_call(const char *call, int error, long status, bool rate_limited);
/* A stream subscriber came (+1) or went (-1): kind "sse" or "websocket". */
void metrics_stream_subscribers(const char *kind, int delta);
/* Whether this process leads (acts on Kubernetes and GitHub); 1 until told
 * otherwise. */
void metrics_set_leader(bool leader);
/* An initialization ended (succeeded or not) after seconds. */
void metrics_init_finished(bool succeeded, double seconds);
/* A Kubernetes Event: reason and outcome ("posted", "failed",
 * "rate_limited", "duplicate"). */
void metrics_event(const char *reason, const char *outcome);

#endif
