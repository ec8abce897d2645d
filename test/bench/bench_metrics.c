/* The cost of instrumentation: nanoseconds per hook call (what every HTTP
 * request and every Kubernetes call pays) with realistic label sets, and
 * the time and size of a scrape, for a registry with the label sets of a
 * busy runboat and for one whose families are all at their label bounds.
 * Thread CPU time, so that a busy machine inflates the figures less. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "util.h"

#define N 1000000

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *const ROUTES[] = {"/api/v1/builds", "/api/v1/builds/{name}", "/api/v1/status",
				     "/webhooks/github", "/metrics", "/webui/{path*}", "/healthz",
				     "/api/v1/builds/{name}/start"};
static const char *const RES[] = {"deployments", "jobs", "configmaps", "secrets", "services",
				  "ingresses", "persistentvolumeclaims", "events", "pods/log"};
static const char *const VERBS[] = {"get", "list", "apply", "patch", "delete", "create", "watch"};

static void scrape_figures(const char *what)
{
	struct buf out = {0};
	double t0 = cpu_ns();
	int rounds = 200;
	for (int i = 0; i < rounds; i++) {
		buf_reset(&out);
		metrics_scrape(NULL, &out);
	}
	double per = (cpu_ns() - t0) / rounds;
	size_t lines = 0;
	for (size_t i = 0; i < out.len; i++)
		lines += out.data[i] == '\n';
	printf("scrape (%s): %.0f us, %zu bytes, %zu lines\n", what, per / 1000, out.len, lines);
	buf_free(&out);
}

int main(void)
{
	metrics_init();
	double t0 = cpu_ns();
	for (int i = 0; i < N; i++)
		metrics_http_request("GET", ROUTES[i % 8], i % 17 ? 200 : 404, 0.003);
	printf("metrics_http_request: %.0f ns/call\n", (cpu_ns() - t0) / N);
	t0 = cpu_ns();
	for (int i = 0; i < N; i++)
		metrics_kube_request(VERBS[i % 7], RES[i % 9], 200, 0, 0.02);
	printf("metrics_kube_request: %.0f ns/call\n", (cpu_ns() - t0) / N);
	t0 = cpu_ns();
	for (int i = 0; i < N; i++)
		metrics_webhook("push", "accepted");
	printf("metrics_webhook: %.0f ns/call\n", (cpu_ns() - t0) / N);
	scrape_figures("busy runboat");
	/* every label at its bound, every combination seen */
	char code[8], res[32];
	for (int r = 0; r < 40; r++)
		for (int v = 0; v < 7; v++)
			for (int c = 0; c < 40; c++) {
				snprintf(code, sizeof code, "%d", 200 + c);
				snprintf(res, sizeof res, "kind%d", r);
				metrics_kube_request(VERBS[v], res, atoi(code), 0, 0.02);
			}
	t0 = cpu_ns();
	for (int i = 0; i < N / 10; i++)
		metrics_kube_request("apply", "other", 299, 0, 0.02);
	printf("metrics_kube_request at the label bounds: %.0f ns/call\n", (cpu_ns() - t0) / (N / 10));
	scrape_figures("kube families at their label bounds");
	metrics_shutdown();
	return 0;
}
