#include "metrics.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "app.h"
#include "github_client.h"
#include "http.h"
#include "index.h"
#include "router.h"

#define DEFAULT_MAX_VALUES 32
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the registry ---- */

/* The distinct values one label has taken, interned: series compare their
 * values by pointer. */
struct label_values {
	char **v;
	size_t n;
};

struct series {
	const char *values[METRICS_MAX_LABELS]; /* interned, borrowed */
	uint64_t key;                           /* the values' indices, 16 bits each */
	double value;                           /* counter, gauge */
	double sum;                             /* histogram */
	unsigned long long count;
	unsigned long long *buckets;            /* per bucket, not cumulative */
};

struct metric {
	enum metric_type type;
	char *name, *help;
	char *labels[METRICS_MAX_LABELS];
	size_t n_labels;
	size_t max_values;
	struct label_values lv[METRICS_MAX_LABELS];
	double buckets[METRICS_MAX_BUCKETS];
	size_t n_buckets;
	struct series *series;
	size_t n_series, cap_series;
	/* open addressing over the series' keys: series index + 1, 0 = free;
	 * a power of two at least twice n_series */
	uint32_t *slots;
	size_t n_slots;
};

struct metrics {
	struct metric **f;
	size_t n;
};

struct metrics *metrics_new(void)
{
	return xcalloc(1, sizeof(struct metrics));
}

static void series_clear(struct metric *f)
{
	for (size_t i = 0; i < f->n_series; i++)
		free(f->series[i].buckets);
	f->n_series = 0;
	free(f->slots);
	f->slots = NULL;
	f->n_slots = 0;
}

static void metric_free(struct metric *f)
{
	series_clear(f);
	free(f->series);
	for (size_t i = 0; i < f->n_labels; i++) {
		for (size_t j = 0; j < f->lv[i].n; j++)
			free(f->lv[i].v[j]);
		free(f->lv[i].v);
		free(f->labels[i]);
	}
	free(f->name);
	free(f->help);
	free(f);
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		metric_free(m->f[i]);
	free(m->f);
	free(m);
}

static bool valid_name(const char *s)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == ':'))
			return false;
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

struct metric *metrics_add(struct metrics *m, const struct metric_desc *d)
{
	if (!valid_name(d->name) || (d->type == METRIC_COUNTER && !ends_with(d->name, "_total")) ||
	    (d->type == METRIC_HISTOGRAM && (d->n_buckets == 0 || d->n_buckets > METRICS_MAX_BUCKETS))) {
		fprintf(stderr, "metrics: malformed family %s\n", d->name ? d->name : "(null)");
		abort();
	}
	struct metric *f = xcalloc(1, sizeof *f);
	f->type = d->type;
	f->name = xstrdup(d->name);
	f->help = xstrdup(d->help ? d->help : "");
	for (size_t i = 0; i < METRICS_MAX_LABELS && d->labels[i]; i++) {
		if (!valid_name(d->labels[i]) || strcmp(d->labels[i], "le") == 0)
			abort();
		f->labels[f->n_labels++] = xstrdup(d->labels[i]);
	}
	f->max_values = d->max_values ? d->max_values : DEFAULT_MAX_VALUES;
	if (f->max_values > 4096) /* indices are packed in 16 bits */
		f->max_values = 4096;
	for (size_t i = 0; d->type == METRIC_HISTOGRAM && i < d->n_buckets; i++) {
		if (i > 0 && !(d->buckets[i] > d->buckets[i - 1]))
			abort();
		f->buckets[i] = d->buckets[i];
	}
	f->n_buckets = d->type == METRIC_HISTOGRAM ? d->n_buckets : 0;
	m->f = xrealloc(m->f, (m->n + 1) * sizeof *m->f);
	m->f[m->n++] = f;
	return f;
}

/* The index of the interned value of label i: the overflow value's once
 * max_values distinct ones are known. */
static size_t intern(struct metric *f, size_t i, const char *v)
{
	struct label_values *lv = &f->lv[i];
	if (!v)
		v = "";
	for (size_t j = 0; j < lv->n; j++)
		if (strcmp(lv->v[j], v) == 0)
			return j;
	if (lv->n >= f->max_values) {
		v = METRICS_OVERFLOW;
		for (size_t j = 0; j < lv->n; j++)
			if (strcmp(lv->v[j], v) == 0)
				return j;
	}
	/* the overflow value itself may go one beyond max_values */
	lv->v = xrealloc(lv->v, (lv->n + 1) * sizeof *lv->v);
	lv->v[lv->n] = xstrdup(v);
	return lv->n++;
}

static struct series *series_get(struct metric *f, const char *const *values)
{
	const char *key[METRICS_MAX_LABELS] = {0};
	uint64_t k = 0;
	for (size_t i = 0; i < f->n_labels; i++) {
		size_t j = intern(f, i, values ? values[i] : NULL);
		key[i] = f->lv[i].v[j];
		k |= (uint64_t)j << (16 * i);
	}
	size_t mask = f->n_slots - 1, h = 0;
	if (f->n_slots) {
		h = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & mask;
		for (; f->slots[h]; h = (h + 1) & mask)
			if (f->series[f->slots[h] - 1].key == k)
				return &f->series[f->slots[h] - 1];
	}
	if (2 * (f->n_series + 1) > f->n_slots) {
		free(f->slots);
		f->n_slots = f->n_slots ? f->n_slots * 2 : 8;
		f->slots = xcalloc(f->n_slots, sizeof *f->slots);
		mask = f->n_slots - 1;
		for (size_t i = 0; i < f->n_series; i++) {
			size_t g = (size_t)((f->series[i].key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
			while (f->slots[g])
				g = (g + 1) & mask;
			f->slots[g] = (uint32_t)i + 1;
		}
		h = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & mask;
		while (f->slots[h])
			h = (h + 1) & mask;
	}
	f->slots[h] = (uint32_t)f->n_series + 1;
	if (f->n_series == f->cap_series) {
		f->cap_series = f->cap_series ? f->cap_series * 2 : 4;
		f->series = xrealloc(f->series, f->cap_series * sizeof *f->series);
	}
	struct series *s = &f->series[f->n_series++];
	memset(s, 0, sizeof *s);
	memcpy(s->values, key, sizeof key);
	s->key = k;
	if (f->type == METRIC_HISTOGRAM)
		s->buckets = xcalloc(f->n_buckets, sizeof *s->buckets);
	return s;
}

void metric_add(struct metric *f, const char *const *values, double v)
{
	if (!f || f->type == METRIC_HISTOGRAM || (f->type == METRIC_COUNTER && !(v >= 0)))
		return;
	series_get(f, values)->value += v;
}

void metric_set(struct metric *f, const char *const *values, double v)
{
	if (!f || f->type != METRIC_GAUGE)
		return;
	series_get(f, values)->value = v;
}

void metric_observe(struct metric *f, const char *const *values, double v)
{
	if (!f || f->type != METRIC_HISTOGRAM || isnan(v))
		return;
	struct series *s = series_get(f, values);
	s->count++;
	s->sum += v;
	for (size_t i = 0; i < f->n_buckets; i++)
		if (v <= f->buckets[i]) {
			s->buckets[i]++;
			break;
		}
}

void metric_reset(struct metric *f)
{
	if (f)
		series_clear(f);
}

double metric_value(const struct metric *f, const char *const *values)
{
	for (size_t s = 0; s < f->n_series; s++) {
		size_t i = 0;
		while (i < f->n_labels &&
		       strcmp(f->series[s].values[i], values && values[i] ? values[i] : "") == 0)
			i++;
		if (i == f->n_labels)
			return f->type == METRIC_HISTOGRAM ? (double)f->series[s].count
							   : f->series[s].value;
	}
	return -1;
}

/* ---- the text format ---- */

void metrics_format_number(double v, char out[32])
{
	if (isnan(v)) {
		strcpy(out, "NaN");
		return;
	}
	if (isinf(v)) {
		strcpy(out, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(out, 32, "%.0f", v == 0 ? 0.0 : v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, 32, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* Appends s escaped for a label value (help: for a HELP line, where '"'
 * stays as it is). */
static void append_escaped(struct buf *out, const char *s, bool help)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '\\')
			buf_append(out, "\\\\", 2);
		else if (ch == '\n')
			buf_append(out, "\\n", 2);
		else if (ch == '"' && !help)
			buf_append(out, "\\\"", 2);
		else if (ch < 0x20 || ch >= 0x7f)
			buf_append(out, "?", 1);
		else
			buf_append(out, s, 1);
	}
}

/* name{labels[,le="..."]} value */
static void append_sample(struct buf *out, const struct metric *f, const char *suffix,
			  const struct series *s, const char *le, double v)
{
	char num[32];
	buf_append_str(out, f->name);
	buf_append_str(out, suffix);
	if (f->n_labels || le) {
		buf_append(out, "{", 1);
		for (size_t i = 0; i < f->n_labels; i++) {
			buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
			append_escaped(out, s->values[i], false);
			buf_append(out, "\"", 1);
		}
		if (le)
			buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
		buf_append(out, "}", 1);
	}
	metrics_format_number(v, num);
	buf_printf(out, " %s\n", num);
}

static const char *type_name(enum metric_type t)
{
	return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

void metrics_render(const struct metrics *m, struct buf *out)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct metric *f = m->f[i];
		buf_printf(out, "# HELP %s ", f->name);
		append_escaped(out, f->help, true);
		buf_printf(out, "\n# TYPE %s %s\n", f->name, type_name(f->type));
		for (size_t j = 0; j < f->n_series; j++) {
			const struct series *s = &f->series[j];
			if (f->type != METRIC_HISTOGRAM) {
				append_sample(out, f, "", s, NULL, s->value);
				continue;
			}
			unsigned long long cum = 0;
			char le[32];
			for (size_t b = 0; b < f->n_buckets; b++) {
				cum += s->buckets[b];
				metrics_format_number(f->buckets[b], le);
				append_sample(out, f, "_bucket", s, le, (double)cum);
			}
			append_sample(out, f, "_bucket", s, "+Inf", (double)s->count);
			append_sample(out, f, "_sum", s, NULL, s->sum);
			append_sample(out, f, "_count", s, NULL, (double)s->count);
		}
	}
}

/* ---- runboat's metrics ---- */

static const double LATENCY_BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					 0.5,   1,    2.5,   5,    10,  30};
static const double INIT_BUCKETS[] = {10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600};

static struct runboat_metrics {
	struct metrics *reg;
	double start_time;
	bool leader;
	struct metric *build_info, *builds, *init_queue, *initializing, *init_duration;
	struct metric *kube_requests, *kube_duration;
	struct metric *webhooks, *github_calls, *github_rate_remaining, *github_rate_limit;
	struct metric *subscribers, *http_requests, *http_duration, *events, *leader_g;
	struct metric *rss, *vms, *fds, *max_fds, *cpu, *start;
} g;

static struct metric *family(enum metric_type t, const char *name, const char *help,
			     const char *l0, const char *l1, const char *l2, size_t max_values)
{
	struct metric_desc d = {.type = t, .name = name, .help = help, .max_values = max_values,
				.labels = {l0, l0 ? l1 : NULL, l0 && l1 ? l2 : NULL}};
	return metrics_add(g.reg, &d);
}

static struct metric *histogram(const char *name, const char *help, const char *l0,
				const double *b, size_t nb, size_t max_values)
{
	struct metric_desc d = {.type = METRIC_HISTOGRAM, .name = name, .help = help,
				.labels = {l0}, .buckets = b, .n_buckets = nb,
				.max_values = max_values};
	return metrics_add(g.reg, &d);
}

void metrics_init(void)
{
	if (g.reg)
		return;
	g.reg = metrics_new();
	g.leader = true;
	g.start_time = (double)time(NULL);
	g.build_info = family(METRIC_GAUGE, "runboat_build_info",
			      "Always 1; the version of runboat in a label.", "version", NULL, NULL, 1);
	g.leader_g = family(METRIC_GAUGE, "runboat_leader",
			    "1 when this process is the leader (acts on Kubernetes and GitHub), else 0.",
			    NULL, NULL, NULL, 0);
	g.builds = family(METRIC_GAUGE, "runboat_builds",
			  "Builds in the index by derived status.", "status", NULL, NULL, 16);
	g.init_queue = family(METRIC_GAUGE, "runboat_init_queue_length",
			      "Builds waiting to be initialized (init-status todo).", NULL, NULL, NULL, 0);
	g.initializing = family(METRIC_GAUGE, "runboat_initializing_builds",
				"Builds being initialized (init-status started).", NULL, NULL, NULL, 0);
	g.init_duration = histogram("runboat_init_duration_seconds",
				    "Initializations, from the creation of the init Job to the "
				    "succeeded or failed init-status.",
				    "outcome", INIT_BUCKETS, ARRAY_LEN(INIT_BUCKETS), 4);
	g.kube_requests = family(METRIC_COUNTER, "runboat_kube_requests_total",
				 "Kubernetes API calls finished, by verb, resource and HTTP code "
				 "(\"error\": no answer, \"cancelled\").",
				 "verb", "resource", "code", 32);
	struct metric_desc kd = {.type = METRIC_HISTOGRAM, .name = "runboat_kube_request_duration_seconds",
				 .help = "Kubernetes API calls (not watches), from the call to its "
					 "outcome, retries and client-side rate limiting included.",
				 .labels = {"verb", "resource"}, .buckets = LATENCY_BUCKETS,
				 .n_buckets = ARRAY_LEN(LATENCY_BUCKETS), .max_values = 32};
	g.kube_duration = metrics_add(g.reg, &kd);
	g.webhooks = family(METRIC_COUNTER, "runboat_webhook_deliveries_total",
			    "GitHub webhook deliveries answered, by event and outcome.", "event",
			    "outcome", NULL, 16);
	g.github_calls = family(METRIC_COUNTER, "runboat_github_requests_total",
				"GitHub API answers, by call and outcome.", "call", "outcome", NULL, 16);
	g.github_rate_remaining = family(METRIC_GAUGE, "runboat_github_rate_limit_remaining",
					 "GitHub's last X-RateLimit-Remaining (absent until seen).",
					 NULL, NULL, NULL, 0);
	g.github_rate_limit = family(METRIC_GAUGE, "runboat_github_rate_limit",
				     "GitHub's last X-RateLimit-Limit (absent until seen).", NULL,
				     NULL, NULL, 0);
	g.subscribers = family(METRIC_GAUGE, "runboat_stream_subscribers",
			       "Build event stream subscribers connected now, by kind.", "kind", NULL,
			       NULL, 4);
	g.http_requests = family(METRIC_COUNTER, "runboat_http_requests_total",
				 "HTTP requests answered, by method, route pattern (\"unmatched\": "
				 "no route) and status code.",
				 "method", "route", "code", 48);
	struct metric_desc hd = {.type = METRIC_HISTOGRAM, .name = "runboat_http_request_duration_seconds",
				 .help = "HTTP requests, from their first byte to the end of the "
					 "response (streams: their whole life), by route pattern.",
				 .labels = {"route"}, .buckets = LATENCY_BUCKETS,
				 .n_buckets = ARRAY_LEN(LATENCY_BUCKETS), .max_values = 48};
	g.http_duration = metrics_add(g.reg, &hd);
	g.events = family(METRIC_COUNTER, "runboat_kube_events_total",
			  "Kubernetes Events about builds, by reason and outcome (posted, failed, "
			  "rate_limited, duplicate).",
			  "reason", "outcome", NULL, 16);
	g.cpu = family(METRIC_COUNTER, "process_cpu_seconds_total",
		       "Total user and system CPU time spent in seconds.", NULL, NULL, NULL, 0);
	g.rss = family(METRIC_GAUGE, "process_resident_memory_bytes",
		       "Resident memory size in bytes.", NULL, NULL, NULL, 0);
	g.vms = family(METRIC_GAUGE, "process_virtual_memory_bytes",
		       "Virtual memory size in bytes.", NULL, NULL, NULL, 0);
	g.fds = family(METRIC_GAUGE, "process_open_fds", "Number of open file descriptors.", NULL,
		       NULL, NULL, 0);
	g.max_fds = family(METRIC_GAUGE, "process_max_fds",
			   "Maximum number of open file descriptors.", NULL, NULL, NULL, 0);
	g.start = family(METRIC_GAUGE, "process_start_time_seconds",
			 "Start time of the process since unix epoch in seconds.", NULL, NULL, NULL, 0);
	const char *version[] = {RUNBOAT_VERSION};
	metric_set(g.build_info, version, 1);
	/* the known values first, so that they are never pushed into "other" */
	for (int s = 0; s < BUILD_STATUS_COUNT; s++) {
		const char *v[] = {build_status_str((enum build_status)s)};
		metric_set(g.builds, v, 0);
	}
	const char *sse[] = {"sse"}, *ws[] = {"websocket"};
	metric_set(g.subscribers, sse, 0);
	metric_set(g.subscribers, ws, 0);
}

void metrics_shutdown(void)
{
	metrics_free(g.reg);
	memset(&g, 0, sizeof g);
}

struct metrics *metrics_default(void)
{
	return g.reg;
}

void metrics_http_request(const char *method, const char *route, int status, double seconds)
{
	if (!g.reg)
		return;
	char code[16];
	snprintf(code, sizeof code, "%d", status);
	const char *v[] = {method, route ? route : "unmatched", code};
	metric_add(g.http_requests, v, 1);
	metric_observe(g.http_duration, v + 1, seconds);
}

void metrics_kube_request(const char *verb, const char *resource, int status, int error,
			  double seconds)
{
	if (!g.reg)
		return;
	char code[16];
	if (status > 0)
		snprintf(code, sizeof code, "%d", status);
	else
		snprintf(code, sizeof code, "%s", error == -ECANCELED ? "cancelled" : "error");
	const char *v[] = {verb, resource && *resource ? resource : "unknown", code};
	metric_add(g.kube_requests, v, 1);
	if (seconds >= 0)
		metric_observe(g.kube_duration, v, seconds);
}

void metrics_webhook(const char *event, const char *outcome)
{
	if (!g.reg)
		return;
	static const char *const known[] = {"push", "pull_request", "ping"};
	const char *e = "other";
	for (size_t i = 0; event && i < ARRAY_LEN(known); i++)
		if (strcmp(event, known[i]) == 0)
			e = known[i];
	const char *v[] = {e, outcome};
	metric_add(g.webhooks, v, 1);
}

void metrics_github_call(const char *call, int error, long status, bool rate_limited)
{
	if (!g.reg)
		return;
	const char *o;
	if (error == -ECANCELED)
		o = "cancelled";
	else if (error)
		o = "error";
	else if (rate_limited)
		o = "rate_limited";
	else if (status == 304)
		o = "not_modified";
	else if (status >= 200 && status < 300)
		o = "ok";
	else if (status >= 500)
		o = "server_error";
	else
		o = "client_error";
	const char *v[] = {call, o};
	metric_add(g.github_calls, v, 1);
}

void metrics_stream_subscribers(const char *kind, int delta)
{
	if (!g.reg)
		return;
	const char *v[] = {kind};
	metric_add(g.subscribers, v, delta);
}

void metrics_set_leader(bool leader)
{
	g.leader = leader;
}

void metrics_init_finished(bool succeeded, double seconds)
{
	if (!g.reg)
		return;
	const char *v[] = {succeeded ? "succeeded" : "failed"};
	metric_observe(g.init_duration, v, seconds < 0 ? 0 : seconds);
}

void metrics_event(const char *reason, const char *outcome)
{
	if (!g.reg)
		return;
	const char *v[] = {reason, outcome};
	metric_add(g.events, v, 1);
}

/* ---- what is read at each scrape ---- */

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n > 0 ? n - 1 : 0; /* not the directory's own descriptor */
}

static void collect_process(void)
{
	size_t rss = 0;
	if (uv_resident_set_memory(&rss) == 0)
		metric_set(g.rss, NULL, (double)rss);
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		unsigned long pages;
		if (fscanf(f, "%lu", &pages) == 1)
			metric_set(g.vms, NULL, (double)pages * (double)sysconf(_SC_PAGESIZE));
		fclose(f);
	}
	metric_set(g.fds, NULL, count_fds());
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		metric_set(g.max_fds, NULL, (double)rl.rlim_cur);
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
		metric_reset(g.cpu);
		metric_add(g.cpu, NULL, cpu);
	}
	metric_set(g.start, NULL, g.start_time);
}

static void collect_app(struct app *app)
{
	metric_set(g.leader_g, NULL, g.leader ? 1 : 0);
	if (!app)
		return;
	for (int s = 0; s < BUILD_STATUS_COUNT; s++) {
		const char *v[] = {build_status_str((enum build_status)s)};
		metric_set(g.builds, v, (double)index_count_status(app->index, (enum build_status)s));
	}
	metric_set(g.init_queue, NULL, (double)index_count_init(app->index, BUILD_INIT_TODO));
	metric_set(g.initializing, NULL, (double)index_count_init(app->index, BUILD_INIT_STARTED));
	metric_reset(g.github_rate_remaining);
	metric_reset(g.github_rate_limit);
	if (app->github) {
		struct github_client_stats st;
		github_client_get_stats(app->github, &st);
		if (st.rate_remaining >= 0)
			metric_set(g.github_rate_remaining, NULL, (double)st.rate_remaining);
		if (st.rate_limit >= 0)
			metric_set(g.github_rate_limit, NULL, (double)st.rate_limit);
	}
}

void metrics_scrape(struct app *app, struct buf *out)
{
	if (!g.reg)
		return;
	collect_app(app);
	collect_process();
	metrics_render(g.reg, out);
}

static void on_metrics(struct http_req *req, void *data)
{
	struct buf out = {0};
	metrics_scrape(data, &out);
	http_add_header(req, "Cache-Control", "no-store");
	http_respond(req, 200, METRICS_CONTENT_TYPE, out.data ? out.data : "", out.len);
	buf_free(&out);
}

void metrics_register(struct router *r, struct app *app)
{
	router_add(r, "GET", "/metrics", on_metrics, app, 0);
}
