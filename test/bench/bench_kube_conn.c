/* Benchmark of the kube client's connections against a live kube-apiserver
 * (the test control plane: RUNBOAT_TEST_CLUSTER=DIR, or KUBECONFIG=FILE):
 * bursts of concurrent calls over HTTP/2 or over a pool of HTTP/1.1
 * keep-alive connections, with or without watches streaming beside them.
 *
 *   bench_kube_conn [--mode h2|h1] [--pool N] [--calls N] [--inflight N]
 *                   [--rounds N] [--watches N] [--objects N] [--drop-one]
 *   (defaults: h1, 32, 2000, 100, 3, 0, 100)
 *
 * In a fresh namespace it creates OBJECTS ConfigMaps, opens WATCHES watches
 * on them (every PATCH then streams an event to each), and runs ROUNDS
 * rounds of CALLS calls, INFLIGHT at a time, in turn a merge PATCH, a GET
 * and a server-side apply of one of the ConfigMaps. Per round it prints the
 * throughput, the latency p50/p99/max of a call (start to completion), the
 * errors by kind and the connections opened. No client-side rate limit:
 * the figures are the connections'. With --drop-one the client talks to the
 * API server through an in-process TCP proxy (test/unit/fault_proxy.h) that,
 * half-way through each round, silently drops the oldest open connection (no
 * FIN, no RST: a NAT entry or a load balancer that forgot it), to compare
 * how many calls one dead connection takes down in each mode (a merge
 * PATCH is not repeated, so each one caught fails). The namespace is deleted
 * at the end.
 * Build without sanitizers (test/bench/bench_kube_conn.sh does). */
#include "backoff.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "util.h"

#include "../unit/fault_proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uv_loop_t *loop;
static struct kube *kube;
static char ns[64];

static double now_s(void)
{
	return (double)uv_hrtime() / 1e9;
}

/* ---- one call, waited for ---- */

struct done {
	int n;
	int error;
	int status;
	char message[256];
};

static void on_done(const struct kube_result *r, void *data)
{
	struct done *d = data;
	d->n++;
	d->error = r->error;
	d->status = r->status;
	snprintf(d->message, sizeof(d->message), "%s", r->message ? r->message : "");
}

static void on_stop(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

/* Runs the loop until *counter >= target or seconds elapsed. */
static bool wait_count(int *counter, int target, double seconds)
{
	int expired = 0;
	uv_timer_t t;
	uv_timer_init(loop, &t);
	t.data = &expired;
	uv_timer_start(&t, on_stop, (uint64_t)(seconds * 1000), 0);
	while (*counter < target && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return *counter >= target;
}

static int call_wait(struct kube_call *c, const char *what, struct done *d)
{
	if (!c || !wait_count(&d->n, 1, 120)) {
		fprintf(stderr, "bench_kube_conn: %s: no answer\n", what);
		return -1;
	}
	if (d->error) {
		fprintf(stderr, "bench_kube_conn: %s: %s\n", what, d->message);
		return -1;
	}
	return 0;
}

static json_t *configmap(int i, int value)
{
	char name[32], v[32];
	snprintf(name, sizeof(name), "cm-%04d", i);
	snprintf(v, sizeof(v), "%d", value);
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s}}", "apiVersion", "v1", "kind",
			 "ConfigMap", "metadata", "name", name, "namespace", ns, "labels", "bench",
			 "conn", "data", "v", v);
}

/* ---- watches ---- */

struct watches {
	unsigned long events;
	int ended;
	int ended_early; /* not by our cancel */
	char last_end[256];
};

struct watch {
	struct watches *all;
	struct kube_call *call;
	bool ended;
};

static void on_event(const char *type, json_t *obj, void *data)
{
	UNUSED(type);
	UNUSED(obj);
	((struct watch *)data)->all->events++;
}

static void on_watch_done(const struct kube_result *r, void *data)
{
	struct watch *one = data;
	struct watches *w = one->all;
	one->ended = true;
	w->ended++;
	if (r->error != -ECANCELED) {
		w->ended_early++;
		snprintf(w->last_end, sizeof(w->last_end), "%d %s", r->error,
			 r->message ? r->message : "");
	}
}

/* ---- a burst ---- */

enum { KIND_TIMEOUT, KIND_FIRST_BYTE, KIND_HTTP09, KIND_CONN, KIND_HTTP, KIND_OTHER, KINDS };
static const char *const KIND_NAMES[KINDS] = {"timeout", "first-byte", "HTTP/0.9",
					      "connection", "HTTP status", "other"};

static struct fproxy *proxy;

/* Silences the oldest open connection that is not silent yet. */
static int drop_one(void)
{
	struct fp_conn *oldest = NULL;
	for (struct fp_conn *c = proxy->conns; c; c = c->next)
		if (!c->silent && (!oldest || c->id < oldest->id))
			oldest = c;
	if (!oldest)
		return 0;
	oldest->silent = true;
	return oldest->id;
}

struct burst {
	int calls, inflight, objects;
	bool drop;
	int started, finished;
	int running;
	int errors[KINDS];
	char first_error[KINDS][200];
	double *lat;
};

struct one {
	struct burst *b;
	double t0;
};

static void pump(struct burst *b);

static int classify(const struct kube_result *r)
{
	const char *m = r->message ? r->message : "";
	if (r->status)
		return KIND_HTTP;
	if (strstr(m, "HTTP/0.9"))
		return KIND_HTTP09;
	if (strstr(m, "first-byte"))
		return KIND_FIRST_BYTE;
	if (r->error == -ETIMEDOUT)
		return KIND_TIMEOUT;
	if (r->error == -EIO || r->error == -EPROTO || r->error == -ECONNREFUSED ||
	    r->error == -EHOSTUNREACH)
		return KIND_CONN;
	return KIND_OTHER;
}

static void on_call_done(const struct kube_result *r, void *data)
{
	struct one *o = data;
	struct burst *b = o->b;
	double t = now_s() - o->t0;
	b->lat[b->finished++] = t;
	b->running--;
	if (r->error) {
		int k = classify(r);
		if (!b->errors[k]++)
			snprintf(b->first_error[k], sizeof(b->first_error[k]), "%s",
				 r->message ? r->message : "");
	}
	free(o);
	pump(b);
}

static void pump(struct burst *b)
{
	while (b->running < b->inflight && b->started < b->calls) {
		int i = b->started++;
		if (b->drop && i == b->calls / 2)
			drop_one();
		struct one *o = xcalloc(1, sizeof(*o));
		o->b = b;
		o->t0 = now_s();
		int target = i % b->objects;
		struct kube_call *c = NULL;
		char name[32];
		snprintf(name, sizeof(name), "cm-%04d", target);
		struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns,
				       .name = name};
		if (i % 3 == 0) {
			char v[32];
			snprintf(v, sizeof(v), "%d", i);
			json_t *p = json_pack("{s:{s:s}}", "data", "p", v);
			c = kube_patch(kube, &ref, KUBE_PATCH_MERGE, p, NULL, on_call_done, o);
			json_decref(p);
		} else if (i % 3 == 1) {
			c = kube_get(kube, &ref, on_call_done, o);
		} else {
			json_t *obj = configmap(target, i);
			struct kube_write_opts wo = {.field_manager = "bench-conn", .force = true};
			c = kube_apply(kube, obj, &wo, on_call_done, o);
			json_decref(obj);
		}
		if (!c) {
			free(o);
			b->finished++;
			continue;
		}
		b->running++;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

int main(int argc, char **argv)
{
	bool http2 = false;
	int pool = 32, calls = 2000, inflight = 100, rounds = 3, nwatch = 0, objects = 100;
	bool drop = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		bool ok = true;
		if (strcmp(a, "--drop-one") == 0) {
			drop = true;
			continue;
		}
		if (strcmp(a, "--mode") == 0) {
			ok = strcmp(v, "h2") == 0 || strcmp(v, "h1") == 0;
			http2 = strcmp(v, "h2") == 0;
		} else if (strcmp(a, "--pool") == 0) {
			ok = parse_int(v, 1, 10000, &pool);
		} else if (strcmp(a, "--calls") == 0) {
			ok = parse_int(v, 1, 1000000, &calls);
		} else if (strcmp(a, "--inflight") == 0) {
			ok = parse_int(v, 1, 10000, &inflight);
		} else if (strcmp(a, "--rounds") == 0) {
			ok = parse_int(v, 1, 1000, &rounds);
		} else if (strcmp(a, "--watches") == 0) {
			ok = parse_int(v, 0, 1000, &nwatch);
		} else if (strcmp(a, "--objects") == 0) {
			ok = parse_int(v, 1, 10000, &objects);
		} else {
			ok = false;
		}
		if (!ok) {
			fprintf(stderr, "usage: bench_kube_conn [--mode h2|h1] [--pool N] [--calls N] "
					"[--inflight N] [--rounds N] [--watches N] [--objects N] "
					"[--drop-one]\n");
			return 2;
		}
		i++;
	}
	log_set_level(LOG_WARN);
	const char *dir = getenv("RUNBOAT_TEST_CLUSTER");
	char *path = dir && *dir ? xasprintf("%s/kubeconfig", dir)
				 : getenv("KUBECONFIG") ? xstrdup(getenv("KUBECONFIG")) : NULL;
	if (!path) {
		fprintf(stderr, "bench_kube_conn: set RUNBOAT_TEST_CLUSTER or KUBECONFIG\n");
		return 2;
	}
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(path, NULL, err, sizeof(err));
	free(path);
	if (!kc) {
		fprintf(stderr, "bench_kube_conn: %s\n", err);
		return 1;
	}
	loop = xmalloc(sizeof(*loop));
	uv_loop_init(loop);
	if (drop) {
		const char *colon = strrchr(kc->server, ':');
		proxy = xcalloc(1, sizeof(*proxy));
		if (!colon || strncmp(kc->server, "https://127.0.0.1:", 18) != 0 ||
		    fproxy_start(loop, proxy, atoi(colon + 1)) != 0) {
			fprintf(stderr, "bench_kube_conn: --drop-one needs a server at https://127.0.0.1:PORT\n");
			return 1;
		}
		free(kc->server);
		kc->server = xasprintf("https://127.0.0.1:%d", proxy->port);
	}
	struct kube_options ko = {.qps = -1, .http2 = http2, .max_connections = pool};
	kube = kube_new(loop, kc, &ko);
	snprintf(ns, sizeof(ns), "bench-conn-%08x", (unsigned)backoff_seed());
	int rc = 1;
	struct watches w = {0};
	struct watch *watch = xcalloc((size_t)(nwatch ? nwatch : 1), sizeof(*watch));
	double *lat = xcalloc((size_t)calls, sizeof(double));

	struct done d = {0};
	json_t *nso = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
				"metadata", "name", ns);
	int r = call_wait(kube_create(kube, nso, NULL, on_done, &d), "create namespace", &d);
	json_decref(nso);
	if (r)
		goto out;
	for (int i = 0; i < objects; i++) {
		json_t *o = configmap(i, 0);
		d.n = 0;
		r = call_wait(kube_create(kube, o, NULL, on_done, &d), "create", &d);
		json_decref(o);
		if (r)
			goto out_ns;
	}
	unsigned long conns0 = kube_connections_opened(kube);
	if (http2)
		printf("mode HTTP/2");
	else
		printf("mode HTTP/1.1, pool of %d", pool);
	printf(", %d watches, %d rounds of %d calls (PATCH/GET/apply), %d in flight%s, "
	       "namespace %s\n", nwatch, rounds, calls, inflight,
	       drop ? ", one connection silently dropped mid-round" : "", ns);
	for (int i = 0; i < nwatch; i++) {
		struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns};
		struct kube_watch_opts wo = {.label_selector = "bench=conn"};
		watch[i].all = &w;
		watch[i].call = kube_watch(kube, &ref, &wo, on_event, on_watch_done, &watch[i]);
	}
	if (nwatch) {
		/* let them start */
		int never = 0;
		wait_count(&never, 1, 1.0);
	}
	int total_errors = 0;
	for (int round = 0; round < rounds; round++) {
		struct burst b = {.calls = calls, .inflight = inflight, .objects = objects, .lat = lat,
				  .drop = drop};
		unsigned long ev0 = w.events;
		unsigned long c0 = kube_connections_opened(kube);
		double t0 = now_s();
		pump(&b);
		if (!wait_count(&b.finished, calls, 600)) {
			fprintf(stderr, "bench_kube_conn: round %d did not finish\n", round + 1);
			goto out_w;
		}
		double t1 = now_s();
		qsort(lat, (size_t)calls, sizeof(double), cmp_double);
		int errors = 0;
		for (int k = 0; k < KINDS; k++)
			errors += b.errors[k];
		total_errors += errors;
		printf("round %d: %d calls in %.2f s = %.0f calls/s; latency p50 %.1f ms, p99 %.1f ms, "
		       "max %.1f ms; errors %d",
		       round + 1, calls, t1 - t0, calls / (t1 - t0), lat[calls / 2] * 1e3,
		       lat[(calls * 99) / 100] * 1e3, lat[calls - 1] * 1e3, errors);
		for (int k = 0; k < KINDS; k++)
			if (b.errors[k])
				printf(" %s=%d", KIND_NAMES[k], b.errors[k]);
		printf("; connections opened %lu", kube_connections_opened(kube) - c0);
		if (nwatch)
			printf("; watch events %lu", w.events - ev0);
		printf("\n");
		for (int k = 0; k < KINDS; k++)
			if (b.errors[k])
				printf("  first %s error: %s\n", KIND_NAMES[k], b.first_error[k]);
	}
	printf("total: errors %d, connections opened by calls %lu, watches ended early %d%s%s\n",
	       total_errors, kube_connections_opened(kube) - conns0, w.ended_early,
	       w.ended_early ? ": " : "", w.ended_early ? w.last_end : "");
	rc = 0;
out_w:
	for (int i = 0; i < nwatch; i++)
		if (watch[i].call && !watch[i].ended)
			kube_cancel(watch[i].call);
	wait_count(&w.ended, nwatch, 10);
out_ns:
	{
		struct done dd = {0};
		struct kube_ref ref = {.api_version = "v1", .kind = "Namespace", .name = ns};
		call_wait(kube_delete(kube, &ref, NULL, on_done, &dd), "delete namespace", &dd);
	}
out:
	kube_close(kube);
	if (proxy)
		fproxy_stop(proxy);
	uv_run(loop, UV_RUN_DEFAULT);
	if (uv_loop_close(loop) != 0) {
		fprintf(stderr, "bench_kube_conn: handles left open\n");
		rc = 1;
	}
	free(loop);
	free(proxy);
	free(lat);
	free(watch);
	log_flush();
	return rc;
}
