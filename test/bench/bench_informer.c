/* Benchmark of the informer against a live kube-apiserver (the test control
 * plane: RUNBOAT_TEST_CLUSTER=DIR, or KUBECONFIG=FILE).
 *
 *   bench_informer [OBJECTS [PATCHES]]      (defaults 10000 and 2000)
 *
 * In a fresh namespace it creates OBJECTS Deployments (0 replicas, so
 * nothing runs) carrying the runboat/build label, then prints:
 *   - how long a watching informer takes to see every creation;
 *   - the time, CPU and memory a new informer needs to list them all
 *     (paginated) and sync;
 *   - the latency from a patch's answer to the informer's update callback,
 *     and the process's CPU time per event, for PATCHES patches;
 *   - the pure cost of the informer's core: parsing an event line and
 *     applying it, and a re-list diff of OBJECTS objects.
 * The namespace is deleted at the end. Build without sanitizers for
 * meaningful figures (test/bench/bench_informer.sh does). */
#include "backoff.h"
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define LABEL "runboat/build"
#define INFLIGHT 64

static uv_loop_t *loop;
static struct kube *kube;
static char ns[64];

/* ---- measuring ---- */

static double now_s(void)
{
	return (double)uv_hrtime() / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

static double rss_mb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* Bytes malloc has handed out and not got back (independent of how much the
 * heap keeps from the kernel). */
static double heap_mb(void)
{
	struct mallinfo2 mi = mallinfo2();
	return (double)(mi.uordblks + mi.hblkhd) / (1024.0 * 1024.0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* ---- the loop ---- */

static void on_tick(uv_timer_t *t)
{
	UNUSED(t);
}

static bool wait_for(bool (*cond)(void *), void *arg, double timeout_s)
{
	double deadline = now_s() + timeout_s;
	while (!cond(arg)) {
		if (now_s() > deadline)
			return false;
		uv_run(loop, UV_RUN_ONCE);
		log_flush();
	}
	return true;
}

struct done {
	bool done;
	int error;
	char *message;
	json_t **body; /* if set, receives a reference to the body */
};

static void on_done(const struct kube_result *r, void *data)
{
	struct done *d = data;
	d->done = true;
	d->error = r->error;
	d->message = r->message ? xstrdup(r->message) : NULL;
	if (d->body)
		*d->body = json_incref(r->body);
}

static bool is_done(void *arg)
{
	return ((struct done *)arg)->done;
}

static int call_wait(struct kube_call *c, const char *what, struct done *d)
{
	if (!c || !wait_for(is_done, d, 120)) {
		fprintf(stderr, "bench_informer: %s: no answer\n", what);
		return -ETIMEDOUT;
	}
	if (d->error)
		fprintf(stderr, "bench_informer: %s: %s\n", what, d->message);
	free(d->message);
	return d->error;
}

/* ---- objects ---- */

static json_t *deployment(int i)
{
	char build[32], name[48];
	snprintf(build, sizeof(build), "b%05dbench", i);
	snprintf(name, sizeof(name), "%s-odoo", build);
	json_t *env = json_array();
	const char *vars[][2] = { { "PGHOST", "postgres" }, { "PGUSER", "odoo" },
				  { "PGDATABASE", "odoo" }, { "ADDONS_DIR", "/mnt/data/addons" },
				  { "RUNBOAT_GIT_REPO", "oca/mis-builder" } };
	for (size_t k = 0; k < ARRAY_SIZE(vars); k++)
		json_array_append_new(env, json_pack("{s:s, s:s}", "name", vars[k][0], "value",
						     vars[k][1]));
	return json_pack(
		"{s:s, s:s,"
		" s:{s:s, s:s, s:{s:s}, s:{s:s, s:s, s:s, s:s, s:s, s:s}},"
		" s:{s:i, s:{s:{s:s}},"
		"    s:{s:{s:{s:s}},"
		"       s:{s:[{s:s, s:s, s:[{s:i, s:s}], s:o,"
		"              s:{s:{s:s, s:s}, s:{s:s}},"
		"              s:[{s:s, s:s}]},"
		"             {s:s, s:s, s:[{s:i}, {s:i}]}],"
		"          s:[{s:s, s:{s:s}}]}}}}",
		"apiVersion", "apps/v1", "kind", "Deployment",
		"metadata", "name", name, "namespace", ns, "labels", LABEL, build,
		"annotations", "runboat/repo", "oca/mis-builder", "runboat/target-branch", "16.0",
		"runboat/pr", "", "runboat/git-commit", "0123456789abcdef0123456789abcdef01234567",
		"runboat/init-status", "todo", "runboat/last-scaled", "2024-01-01T00:00:00Z",
		"spec", "replicas", 0, "selector", "matchLabels", LABEL, build,
		"template", "metadata", "labels", LABEL, build,
		"spec", "containers",
		"name", "odoo", "image", "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest",
		"ports", "containerPort", 8069, "name", "http", "env", env,
		"resources", "limits", "cpu", "1", "memory", "1Gi", "requests", "memory", "256Mi",
		"volumeMounts", "name", "data", "mountPath", "/mnt/data",
		"name", "mailhog", "image", "docker.io/mailhog/mailhog",
		"ports", "containerPort", 1025, "containerPort", 8025,
		"volumes", "name", "data", "emptyDir", "medium", "");
}

/* Concurrent calls, at most INFLIGHT at once: creations, then patches. */
struct bulk {
	int n, next, inflight, done, failed;
	bool patch;
	int seq; /* the annotation value patches set */
	double *sent, *answered; /* per object, for patches */
};

static void bulk_pump(struct bulk *b);

struct bulk_call {
	struct bulk *b;
	int i;
};

static void on_bulk_done(const struct kube_result *r, void *data)
{
	struct bulk_call *bc = data;
	struct bulk *b = bc->b;
	if (b->answered)
		b->answered[bc->i] = now_s();
	free(bc);
	b->inflight--;
	b->done++;
	if (r->error && r->status != 409) {
		if (!b->failed)
			fprintf(stderr, "bench_informer: %s\n", r->message ? r->message : "?");
		b->failed++;
	}
	bulk_pump(b);
}

static void bulk_pump(struct bulk *b)
{
	while (b->inflight < INFLIGHT && b->next < b->n) {
		int i = b->next++;
		struct bulk_call *bc = xmalloc(sizeof(*bc));
		bc->b = b;
		bc->i = i;
		struct kube_call *c;
		if (b->patch) {
			char name[48], seq[32];
			snprintf(name, sizeof(name), "b%05dbench-odoo", i);
			snprintf(seq, sizeof(seq), "%d", b->seq);
			struct kube_ref ref = { .api_version = "apps/v1", .kind = "Deployment",
						.namespace = ns, .name = name };
			json_t *p = json_pack("{s:{s:{s:s}}}", "metadata", "annotations",
					      "bench/seq", seq);
			b->sent[i] = now_s();
			c = kube_patch(kube, &ref, KUBE_PATCH_MERGE, p, NULL, on_bulk_done, bc);
			json_decref(p);
		} else {
			json_t *o = deployment(i);
			c = kube_create(kube, o, NULL, on_bulk_done, bc);
			json_decref(o);
		}
		if (c) {
			b->inflight++;
		} else {
			free(bc);
			b->failed++;
			b->done++;
		}
	}
}

static bool bulk_finished(void *arg)
{
	struct bulk *b = arg;
	return b->done >= b->n;
}

/* ---- informers ---- */

struct counter {
	struct informer *inf;
	long adds, updates, deletes;
	/* latency of patches: the update carrying bench/seq == seq */
	int seq;
	double *answered, *latency, *latency_sent;
	int seen;
};

static int index_of(json_t *obj)
{
	const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
	return name && name[0] == 'b' ? atoi(name + 1) : -1;
}

static void c_add(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	UNUSED(obj);
	((struct counter *)data)->adds++;
}

static void c_update(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	UNUSED(inf);
	struct counter *c = data;
	c->updates++;
	if (!c->latency)
		return;
	json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
	json_t *old_ann = json_object_get(json_object_get(old, "metadata"), "annotations");
	const char *seq = json_string_value(json_object_get(ann, "bench/seq"));
	const char *old_seq = json_string_value(json_object_get(old_ann, "bench/seq"));
	if (!seq || atoi(seq) != c->seq || (old_seq && strcmp(seq, old_seq) == 0))
		return;
	int i = index_of(obj);
	if (i < 0 || c->latency[i] >= 0)
		return;
	double t = now_s();
	c->latency[i] = c->answered[i] > 0 ? t - c->answered[i] : 0;
	c->seen++;
}

static void c_delete(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	UNUSED(obj);
	((struct counter *)data)->deletes++;
}

static struct informer *counted_informer(struct counter *c)
{
	struct informer_opts o = { .api_version = "apps/v1", .kind = "Deployment",
				   .namespace = ns, .label_selector = LABEL };
	struct informer_callbacks cb = { c_add, c_update, c_delete, NULL, c };
	c->inf = informer_new(loop, kube, &o, &cb);
	return c->inf;
}

static bool synced(void *arg)
{
	return informer_synced(((struct counter *)arg)->inf);
}

static long target;
static bool count_reached(void *arg)
{
	return (long)informer_count(((struct counter *)arg)->inf) >= target;
}

static bool seen_all(void *arg)
{
	struct counter *c = arg;
	return c->seen >= target;
}

/* ---- the pure core ---- */

/* src: the objects as listed (with their managedFields). */
static void bench_core(json_t *src, int n)
{
	/* event lines as the stream carries them, each with a new resourceVersion */
	char **lines = xcalloc((size_t)n, sizeof(*lines));
	json_t *items = json_array();
	json_t *obj;
	int k = 0;
	size_t bytes = 0;
	while (k < n && (obj = json_array_get(json_object_get(src, "items"), (size_t)k))) {
		json_t *copy = json_deep_copy(obj);
		json_array_append(items, copy);
		json_t *mod = json_deep_copy(obj);
		char rv[32];
		snprintf(rv, sizeof(rv), "%d", 900000000 + k);
		json_object_set_new(json_object_get(mod, "metadata"), "resourceVersion",
				    json_string(rv));
		json_t *ev = json_pack("{s:s, s:o}", "type", "MODIFIED", "object", mod);
		lines[k] = json_dumps(ev, JSON_COMPACT);
		bytes += strlen(lines[k]);
		json_decref(ev);
		json_decref(copy);
		k++;
	}
	n = k;
	if (n == 0) {
		free(lines);
		json_decref(items);
		return;
	}
	struct informer_opts o = { .api_version = "apps/v1", .kind = "Deployment", .namespace = ns };
	struct counter c = { 0 };
	struct informer_callbacks cb = { c_add, c_update, c_delete, NULL, &c };
	struct informer *inf = informer_new(NULL, NULL, &o, &cb);
	json_t *list = json_pack("{s:{s:s}, s:O}", "metadata", "resourceVersion", "1", "items", items);
	double t0 = now_s();
	informer_replace(inf, list);
	double t1 = now_s();
	informer_replace(inf, list); /* nothing changed */
	double t2 = now_s();
	double parse = 0, apply = 0;
	for (int i = 0; i < n; i++) {
		double a = now_s();
		json_t *ev = json_loads(lines[i], 0, NULL);
		double b = now_s();
		informer_apply_event(inf, json_string_value(json_object_get(ev, "type")),
				     json_object_get(ev, "object"));
		double e = now_s();
		json_decref(ev);
		parse += b - a;
		apply += e - b;
		free(lines[i]);
	}
	printf("core: first list of %d into the cache     %8.1f ms (%.2f us/object)\n", n,
	       (t1 - t0) * 1e3, (t1 - t0) * 1e6 / n);
	printf("core: re-list diff, nothing changed       %8.1f ms (%.2f us/object)\n",
	       (t2 - t1) * 1e3, (t2 - t1) * 1e6 / n);
	printf("core: parse one event line (%zu B avg)    %8.2f us\n", bytes / (size_t)n,
	       parse * 1e6 / n);
	printf("core: apply one MODIFIED event            %8.2f us (%ld updates)\n",
	       apply * 1e6 / n, c.updates);
	informer_free(inf);
	json_decref(list);
	json_decref(items);
	free(lines);
}

static bool loop_idle(void *arg)
{
	UNUSED(arg);
	return !uv_loop_alive(loop);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000;
	int patches = argc > 2 ? atoi(argv[2]) : 2000;
	if (n <= 0 || n > 99999 || patches < 0) {
		fprintf(stderr, "usage: bench_informer [OBJECTS (1-99999) [PATCHES]]\n");
		return 2;
	}
	if (patches > n)
		patches = n;
	log_set_level(LOG_WARN);
	const char *dir = getenv("RUNBOAT_TEST_CLUSTER");
	char *path = dir && *dir ? xasprintf("%s/kubeconfig", dir)
				 : getenv("KUBECONFIG") ? xstrdup(getenv("KUBECONFIG")) : NULL;
	if (!path) {
		fprintf(stderr, "bench_informer: set RUNBOAT_TEST_CLUSTER or KUBECONFIG\n");
		return 2;
	}
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(path, NULL, err, sizeof(err));
	free(path);
	if (!kc) {
		fprintf(stderr, "bench_informer: %s\n", err);
		return 1;
	}
	loop = xmalloc(sizeof(*loop));
	uv_loop_init(loop);
	uv_timer_t ticker;
	uv_timer_init(loop, &ticker);
	uv_timer_start(&ticker, on_tick, 20, 20);
	struct kube_options ko = { .qps = -1, .timeout_ms = 120000 };
	kube = kube_new(loop, kc, &ko);
	snprintf(ns, sizeof(ns), "bench-inf-%08x", (unsigned)backoff_seed());
	int rc = 1;

	struct done d = { 0 };
	json_t *nso = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
				"metadata", "name", ns);
	int r = call_wait(kube_create(kube, nso, NULL, on_done, &d), "create namespace", &d);
	json_decref(nso);
	if (r)
		goto out;
	printf("bench_informer: %d Deployments, %d patches, namespace %s, %d calls in flight\n", n,
	       patches, ns, INFLIGHT);

	/* 1. a watching informer sees the creations */
	struct counter w = { 0 };
	counted_informer(&w);
	informer_start(w.inf);
	if (!wait_for(synced, &w, 60))
		goto out_w;
	double heap0 = heap_mb();
	double t0 = now_s();
	struct bulk create = { .n = n };
	bulk_pump(&create);
	wait_for(bulk_finished, &create, 3600);
	double t1 = now_s();
	printf("create: %d Deployments in %.1f s (%.0f/s), %d failed\n", n, t1 - t0,
	       n / (t1 - t0), create.failed);
	target = n;
	if (!wait_for(count_reached, &w, 300)) {
		fprintf(stderr, "bench_informer: the watch saw %zu of %d\n", informer_count(w.inf), n);
		goto out_w;
	}
	double t2 = now_s();
	printf("watch: all %d ADDED seen %.3f s after the last creation answer\n", n, t2 - t1);
	printf("watch: heap in use %.1f MB -> %.1f MB with %d objects cached (%.1f KB/object); "
	       "RSS %.1f MB\n", heap0, heap_mb(), n, (heap_mb() - heap0) * 1024 / n, rss_mb());
	informer_free(w.inf);
	w.inf = NULL;
	for (int i = 0; i < 5; i++)
		uv_run(loop, UV_RUN_NOWAIT);

	/* 2. a new informer lists them all */
	double rss0 = rss_mb(), cpu0 = cpu_s(), heap1 = heap_mb();
	struct counter l = { 0 };
	counted_informer(&l);
	double t3 = now_s();
	informer_start(l.inf);
	if (!wait_for(synced, &l, 600))
		goto out_l;
	double t4 = now_s(), cpu1 = cpu_s(), rss1 = rss_mb(), heap2 = heap_mb();
	printf("list: %zu objects synced in %.2f s (%.0f objects/s), CPU %.2f s (%.1f us/object)\n",
	       informer_count(l.inf), t4 - t3, (double)informer_count(l.inf) / (t4 - t3),
	       cpu1 - cpu0, (cpu1 - cpu0) * 1e6 / (double)informer_count(l.inf));
	printf("list: heap in use %.1f MB -> %.1f MB (%.1f KB/object); RSS %.1f MB -> %.1f MB; "
	       "peak RSS so far %.1f MB\n",
	       heap1, heap2, (heap2 - heap1) * 1024 / (double)informer_count(l.inf), rss0, rss1,
	       peak_rss_mb());

	/* 3. per-event cost: patches seen through the watch */
	if (patches > 0) {
		double *sent = xcalloc((size_t)n, sizeof(double));
		double *answered = xcalloc((size_t)n, sizeof(double));
		double *lat = xmalloc((size_t)n * sizeof(double));
		for (int i = 0; i < n; i++)
			lat[i] = -1;
		l.seq = 1;
		l.answered = answered;
		l.latency = lat;
		struct informer_stats st0 = informer_stats(l.inf);
		double c0 = cpu_s(), p0 = now_s();
		struct bulk pb = { .n = patches, .patch = true, .seq = 1, .sent = sent,
				   .answered = answered };
		bulk_pump(&pb);
		target = patches;
		bool all = wait_for(seen_all, &l, 600);
		wait_for(bulk_finished, &pb, 60);
		double p1 = now_s(), c1 = cpu_s();
		struct informer_stats st1 = informer_stats(l.inf);
		double *v = xmalloc((size_t)patches * sizeof(double));
		int m = 0;
		for (int i = 0; i < patches; i++)
			if (lat[i] >= 0)
				v[m++] = lat[i];
		qsort(v, (size_t)m, sizeof(double), cmp_double);
		unsigned long events = st1.events - st0.events;
		printf("patch: %d patches answered and seen in %.2f s (%.0f/s)%s, %d failed\n",
		       patches, p1 - p0, patches / (p1 - p0), all ? "" : " (NOT all seen)",
		       pb.failed);
		if (m > 0)
			printf("patch: answer -> update callback: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			       v[m / 2] * 1e3, v[(m * 95) / 100] * 1e3, v[(m * 99) / 100] * 1e3,
			       v[m - 1] * 1e3);
		printf("patch: %lu watch events in the phase; process CPU %.2f s = %.1f us per event "
		       "(includes sending the patches)\n",
		       events, c1 - c0, events ? (c1 - c0) * 1e6 / (double)events : 0);
		free(v);
		free(sent);
		free(answered);
		free(lat);
		l.latency = NULL;
	}
	printf("peak RSS of the process: %.1f MB\n", peak_rss_mb());

	/* 4. the pure core on the same objects, as the server sends them */
	{
		struct done dl = { 0 };
		struct kube_ref ref = { .api_version = "apps/v1", .kind = "Deployment",
					.namespace = ns };
		struct kube_list_opts lo = { .label_selector = LABEL };
		json_t *body = NULL;
		dl.body = &body;
		if (call_wait(kube_list(kube, &ref, &lo, on_done, &dl), "list", &dl) == 0)
			bench_core(body, n);
		json_decref(body);
	}
	rc = 0;
out_l:
	informer_free(l.inf);
out_w:
	informer_free(w.inf);
	{
		struct done dd = { 0 };
		struct kube_ref ref = { .api_version = "v1", .kind = "Namespace", .name = ns };
		call_wait(kube_delete(kube, &ref, NULL, on_done, &dd), "delete namespace", &dd);
	}
out:
	kube_close(kube);
	uv_timer_stop(&ticker);
	uv_close((uv_handle_t *)&ticker, NULL);
	wait_for(loop_idle, NULL, 30);
	if (uv_loop_close(loop) != 0) {
		fprintf(stderr, "bench_informer: handles left open\n");
		rc = 1;
	}
	free(loop);
	log_flush();
	return rc;
}
