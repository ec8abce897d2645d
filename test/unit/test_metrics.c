/* The metrics registry and its text format: exact output, escaping,
 * histogram cumulativity, bounded label values, and runboat's hooks. */
#include <errno.h>
#include <math.h>

#include "metrics.h"
#include "unit.h"

static char *render(const struct metrics *m)
{
	struct buf out = {0};
	metrics_render(m, &out);
	return out.data ? buf_steal(&out) : xstrdup("");
}

static void test_numbers(void)
{
	char s[32];
	metrics_format_number(0, s);
	CHECK_STR(s, "0");
	metrics_format_number(-0.0, s);
	CHECK_STR(s, "0");
	metrics_format_number(42, s);
	CHECK_STR(s, "42");
	metrics_format_number(0.1, s);
	CHECK_STR(s, "0.1");
	metrics_format_number(0.005, s);
	CHECK_STR(s, "0.005");
	metrics_format_number(2.5, s);
	CHECK_STR(s, "2.5");
	metrics_format_number(1.0 / 3, s);
	CHECK(strtod(s, NULL) == 1.0 / 3);
	metrics_format_number(INFINITY, s);
	CHECK_STR(s, "+Inf");
	metrics_format_number(-INFINITY, s);
	CHECK_STR(s, "-Inf");
	metrics_format_number(NAN, s);
	CHECK_STR(s, "NaN");
	metrics_format_number(1e20, s);
	CHECK(strtod(s, NULL) == 1e20);
}

static void test_counter_gauge_format(void)
{
	struct metrics *m = metrics_new();
	struct metric_desc cd = {.type = METRIC_COUNTER, .name = "t_requests_total",
				 .help = "Requests.", .labels = {"verb", "code"}};
	struct metric *c = metrics_add(m, &cd);
	struct metric_desc gd = {.type = METRIC_GAUGE, .name = "t_up", .help = "Up."};
	struct metric *gg = metrics_add(m, &gd);
	const char *a[] = {"get", "200"}, *b[] = {"list", "500"};
	metric_add(c, a, 1);
	metric_add(c, a, 2);
	metric_add(c, b, 1);
	metric_add(c, b, -5); /* ignored: counters only go up */
	metric_set(gg, NULL, 1);
	metric_add(gg, NULL, -0.5);
	char *s = render(m);
	CHECK_STR(s, "# HELP t_requests_total Requests.\n"
		     "# TYPE t_requests_total counter\n"
		     "t_requests_total{verb=\"get\",code=\"200\"} 3\n"
		     "t_requests_total{verb=\"list\",code=\"500\"} 1\n"
		     "# HELP t_up Up.\n"
		     "# TYPE t_up gauge\n"
		     "t_up 0.5\n");
	free(s);
	CHECK(metric_value(c, a) == 3);
	CHECK(metric_value(gg, NULL) == 0.5);
	const char *none[] = {"x", "y"};
	CHECK(metric_value(c, none) == -1);
	/* a reset family shows HELP and TYPE only */
	metric_reset(c);
	s = render(m);
	CHECK(strstr(s, "# TYPE t_requests_total counter\n# HELP t_up") != NULL);
	free(s);
	metrics_free(m);
}

static void test_escaping(void)
{
	struct metrics *m = metrics_new();
	struct metric_desc d = {.type = METRIC_GAUGE, .name = "t_g",
				.help = "Back\\slash, \"quotes\"\nand a newline.", .labels = {"v"}};
	struct metric *f = metrics_add(m, &d);
	const char *v[] = {"a\\b\"c\nd\x01\xc3\xa9"};
	metric_set(f, v, 1);
	const char *empty[] = {NULL};
	metric_set(f, empty, 2);
	char *s = render(m);
	CHECK_STR(s, "# HELP t_g Back\\\\slash, \"quotes\"\\nand a newline.\n"
		     "# TYPE t_g gauge\n"
		     "t_g{v=\"a\\\\b\\\"c\\nd???\"} 1\n"
		     "t_g{v=\"\"} 2\n");
	free(s);
	metrics_free(m);
}

static void test_histogram(void)
{
	struct metrics *m = metrics_new();
	static const double bk[] = {0.1, 1, 10};
	struct metric_desc d = {.type = METRIC_HISTOGRAM, .name = "t_seconds", .help = "Time.",
				.labels = {"op"}, .buckets = bk, .n_buckets = 3};
	struct metric *h = metrics_add(m, &d);
	const char *op[] = {"x"};
	metric_observe(h, op, 0.05);
	metric_observe(h, op, 0.1); /* le is inclusive */
	metric_observe(h, op, 5);
	metric_observe(h, op, 100);
	metric_observe(h, op, NAN); /* ignored */
	char *s = render(m);
	CHECK_STR(s, "# HELP t_seconds Time.\n"
		     "# TYPE t_seconds histogram\n"
		     "t_seconds_bucket{op=\"x\",le=\"0.1\"} 2\n"
		     "t_seconds_bucket{op=\"x\",le=\"1\"} 2\n"
		     "t_seconds_bucket{op=\"x\",le=\"10\"} 3\n"
		     "t_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n"
		     "t_seconds_sum{op=\"x\"} 105.15\n"
		     "t_seconds_count{op=\"x\"} 4\n");
	free(s);
	CHECK(metric_value(h, op) == 4);
	metrics_free(m);

	/* cumulativity over random observations: every bucket counts what is
	 * <= its bound, the buckets never decrease, +Inf equals _count */
	m = metrics_new();
	static const double b2[] = {0.001, 0.01, 0.1, 1, 10, 100};
	struct metric_desc d2 = {.type = METRIC_HISTOGRAM, .name = "r_seconds", .help = "",
				 .buckets = b2, .n_buckets = 6};
	h = metrics_add(m, &d2);
	unsigned long long expect[6] = {0};
	unsigned seed = 12345;
	for (int i = 0; i < 5000; i++) {
		seed = seed * 1103515245u + 12345u;
		double v = pow(10, (double)(seed >> 8 & 0xffff) / 65535.0 * 7 - 4); /* 1e-4..1e3 */
		metric_observe(h, NULL, v);
		for (int k = 0; k < 6; k++)
			if (v <= b2[k])
				expect[k]++;
	}
	s = render(m);
	unsigned long long prev = 0;
	for (int k = 0; k < 6; k++) {
		char le[32], key[64];
		metrics_format_number(b2[k], le);
		snprintf(key, sizeof key, "r_seconds_bucket{le=\"%s\"} ", le);
		const char *p = strstr(s, key);
		CHECK(p != NULL);
		unsigned long long got = p ? strtoull(p + strlen(key), NULL, 10) : 0;
		CHECK_INT(got, expect[k]);
		CHECK(got >= prev);
		prev = got;
	}
	CHECK(strstr(s, "r_seconds_bucket{le=\"+Inf\"} 5000\n") != NULL);
	CHECK(strstr(s, "r_seconds_count 5000\n") != NULL);
	free(s);
	metrics_free(m);
}

static void test_label_overflow(void)
{
	struct metrics *m = metrics_new();
	struct metric_desc d = {.type = METRIC_COUNTER, .name = "t_total", .help = "",
				.labels = {"path", "code"}, .max_values = 3};
	struct metric *c = metrics_add(m, &d);
	char path[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(path, sizeof path, "/p%d", i);
		const char *v[] = {path, i % 2 ? "200" : "404"};
		metric_add(c, v, 1);
	}
	/* /p0, /p1, /p2 kept; the 997 others counted under "other" */
	const char *p0[] = {"/p0", "404"}, *p1[] = {"/p1", "200"}, *p2[] = {"/p2", "404"};
	CHECK(metric_value(c, p0) == 1);
	CHECK(metric_value(c, p1) == 1);
	CHECK(metric_value(c, p2) == 1);
	const char *o200[] = {"other", "200"}, *o404[] = {"other", "404"};
	CHECK(metric_value(c, o200) == 499);
	CHECK(metric_value(c, o404) == 498);
	const char *p999[] = {"/p999", "200"};
	CHECK(metric_value(c, p999) == -1);
	char *s = render(m);
	size_t lines = 0;
	for (const char *p = s; *p; p++)
		lines += *p == '\n';
	CHECK_INT(lines, 2 + 5); /* HELP, TYPE and 5 series */
	free(s);
	/* known values stay themselves once the label is full */
	const char *again[] = {"/p1", "404"};
	metric_add(c, again, 1);
	CHECK(metric_value(c, again) == 1);
	/* a third code value still fits; a fourth overflows */
	const char *c500[] = {"/p0", "500"}, *c503[] = {"/p0", "503"};
	metric_add(c, c500, 1);
	metric_add(c, c503, 1);
	CHECK(metric_value(c, c500) == 1);
	const char *p0o[] = {"/p0", "other"};
	CHECK(metric_value(c, p0o) == 1);
	metrics_free(m);
}

/* Many series (the lookup table grows many times): each keeps its own
 * value, checked against metric_value's plain scan. */
static void test_many_series(void)
{
	struct metrics *m = metrics_new();
	struct metric_desc d = {.type = METRIC_COUNTER, .name = "t_many_total", .help = "",
				.labels = {"a", "b", "c"}, .max_values = 40};
	struct metric *c = metrics_add(m, &d);
	char a[8], b[8], cc[8];
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 30; i++)
			for (int j = 0; j < 30; j++)
				for (int k = 0; k < 3; k++) {
					snprintf(a, sizeof a, "a%d", i);
					snprintf(b, sizeof b, "b%d", j);
					snprintf(cc, sizeof cc, "c%d", k);
					const char *v[] = {a, b, cc};
					metric_add(c, v, (double)(i * 100 + j * 3 + k + 1));
				}
	int bad = 0;
	for (int i = 0; i < 30; i++)
		for (int j = 0; j < 30; j++)
			for (int k = 0; k < 3; k++) {
				snprintf(a, sizeof a, "a%d", i);
				snprintf(b, sizeof b, "b%d", j);
				snprintf(cc, sizeof cc, "c%d", k);
				const char *v[] = {a, b, cc};
				bad += metric_value(c, v) != 3.0 * (i * 100 + j * 3 + k + 1);
			}
	CHECK_INT(bad, 0);
	char *s = render(m);
	size_t lines = 0;
	for (const char *p = s; *p; p++)
		lines += *p == '\n';
	CHECK_INT(lines, 2 + 30 * 30 * 3);
	free(s);
	metrics_free(m);
}

/* The runboat families: every hook lands where README.md says. */
static void test_hooks(void)
{
	/* no-ops before metrics_init */
	metrics_http_request("GET", "/x", 200, 0.1);
	CHECK(metrics_default() == NULL);
	metrics_init();
	metrics_http_request("GET", "/api/v1/builds/{name}", 200, 0.002);
	metrics_http_request("GET", NULL, 404, 0.001);
	metrics_kube_request("apply", "deployments", 200, 0, 0.03);
	metrics_kube_request("watch", "jobs", 0, -ECANCELED, -1);
	metrics_kube_request("get", NULL, 0, -ETIMEDOUT, 30);
	metrics_webhook("push", "accepted");
	metrics_webhook("evil\"event\n", "invalid");
	metrics_github_call("status", 0, 201, false);
	metrics_github_call("list", 0, 304, false);
	metrics_github_call("branch", 0, 403, true);
	metrics_stream_subscribers("sse", 1);
	metrics_stream_subscribers("sse", 1);
	metrics_stream_subscribers("sse", -1);
	metrics_init_finished(true, 42);
	metrics_event("Started", "posted");
	metrics_set_leader(false);
	struct buf out = {0};
	metrics_scrape(NULL, &out);
	char *s = buf_steal(&out);
	CHECK(strstr(s, "runboat_http_requests_total{method=\"GET\",route=\"/api/v1/builds/{name}\","
			"code=\"200\"} 1\n"));
	CHECK(strstr(s, "runboat_http_requests_total{method=\"GET\",route=\"unmatched\",code=\"404\"} 1\n"));
	CHECK(strstr(s, "runboat_kube_requests_total{verb=\"apply\",resource=\"deployments\",code=\"200\"} 1\n"));
	CHECK(strstr(s, "runboat_kube_requests_total{verb=\"watch\",resource=\"jobs\",code=\"cancelled\"} 1\n"));
	CHECK(strstr(s, "runboat_kube_requests_total{verb=\"get\",resource=\"unknown\",code=\"error\"} 1\n"));
	CHECK(strstr(s, "runboat_kube_request_duration_seconds_count{verb=\"apply\",resource=\"deployments\"} 1\n"));
	CHECK(!strstr(s, "runboat_kube_request_duration_seconds_count{verb=\"watch\""));
	CHECK(strstr(s, "runboat_webhook_deliveries_total{event=\"push\",outcome=\"accepted\"} 1\n"));
	CHECK(strstr(s, "runboat_webhook_deliveries_total{event=\"other\",outcome=\"invalid\"} 1\n"));
	CHECK(strstr(s, "runboat_github_requests_total{call=\"status\",outcome=\"ok\"} 1\n"));
	CHECK(strstr(s, "runboat_github_requests_total{call=\"list\",outcome=\"not_modified\"} 1\n"));
	CHECK(strstr(s, "runboat_github_requests_total{call=\"branch\",outcome=\"rate_limited\"} 1\n"));
	CHECK(strstr(s, "runboat_stream_subscribers{kind=\"sse\"} 1\n"));
	CHECK(strstr(s, "runboat_stream_subscribers{kind=\"websocket\"} 0\n"));
	CHECK(strstr(s, "runboat_init_duration_seconds_bucket{outcome=\"succeeded\",le=\"60\"} 1\n"));
	CHECK(strstr(s, "runboat_init_duration_seconds_bucket{outcome=\"succeeded\",le=\"30\"} 0\n"));
	CHECK(strstr(s, "runboat_kube_events_total{reason=\"Started\",outcome=\"posted\"} 1\n"));
	CHECK(strstr(s, "runboat_leader 0\n"));
	CHECK(strstr(s, "runboat_builds{status=\"initializing\"} 0\n"));
	CHECK(strstr(s, "# TYPE process_cpu_seconds_total counter\n"));
	CHECK(strstr(s, "\nprocess_open_fds "));
	CHECK(strstr(s, "\nprocess_resident_memory_bytes "));
	CHECK(strstr(s, "\nprocess_start_time_seconds "));
	if (!strstr(s, "runboat_leader 0\n"))
		fprintf(stderr, "%s", s);
	free(s);
	metrics_set_leader(true);
	metrics_shutdown();
	CHECK(metrics_default() == NULL);
	metrics_webhook("push", "accepted"); /* no-op again */
}

int main(void)
{
	RUN(test_numbers);
	RUN(test_counter_gauge_format);
	RUN(test_escaping);
	RUN(test_histogram);
	RUN(test_label_overflow);
	RUN(test_many_series);
	RUN(test_hooks);
	return UNIT_DONE();
}
