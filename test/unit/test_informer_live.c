/* informer against the real kube-apiserver of the test control plane
 * (test/cluster/cluster.sh). Skipped unless RUNBOAT_TEST_CLUSTER names a
 * running cluster's directory. Destructive: kills, stops and restarts
 * kube-apiserver and compacts etcd, so run it alone (ctest runs tests one at
 * a time unless -j is given).
 *
 * Every informer here feeds a "view": the state a consumer rebuilds from the
 * callbacks alone (name -> resourceVersion). The view must never see an add
 * for a name it holds, nor an update or delete for a name it does not, and
 * must end equal to a fresh list: no missed and no ghost objects. */
#include "backoff.h"
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "util.h"
#include "unit.h"

#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#define LABEL "runboat/build"
#define CLUSTER_SH "test/cluster/cluster.sh"

static uv_loop_t *loop;
static uv_timer_t ticker;
static struct kube *kube;
static const char *cluster_dir;
static char ns_small[64], ns_big[64];
static pid_t stopped_apiserver; /* SIGCONT at exit if set */
static uint64_t started;

/* ------------------------------------------------------------ helpers -- */

static void on_tick(uv_timer_t *t)
{
	UNUSED(t);
}

/* Runs the loop until cond(arg) or timeout_s; returns whether cond held. */
static bool wait_for(bool (*cond)(void *), void *arg, double timeout_s)
{
	uint64_t deadline = now_ms() + (uint64_t)(timeout_s * 1000);
	while (!cond(arg)) {
		if (now_ms() > deadline)
			return false;
		uv_run(loop, UV_RUN_ONCE);
		log_flush();
	}
	return true;
}

static bool never(void *arg)
{
	UNUSED(arg);
	return false;
}

static void pump(double seconds)
{
	wait_for(never, NULL, seconds);
}

struct done {
	bool done;
	int error, status;
	json_t *body;
	char *message;
};

static void on_done(const struct kube_result *r, void *data)
{
	struct done *d = data;
	d->done = true;
	d->error = r->error;
	d->status = r->status;
	d->body = json_incref(r->body);
	d->message = r->message ? xstrdup(r->message) : NULL;
}

static bool is_done(void *arg)
{
	return ((struct done *)arg)->done;
}

static void done_clear(struct done *d)
{
	json_decref(d->body);
	free(d->message);
	memset(d, 0, sizeof(*d));
}

/* Waits for call c (reporting into d). Returns d->error. */
static int call_wait(struct kube_call *c, struct done *d, const char *what)
{
	if (!c)
		return -ECANCELED;
	if (!wait_for(is_done, d, 60)) {
		kube_cancel(c);
		wait_for(is_done, d, 10);
		fprintf(stderr, "  %s: timed out\n", what);
		return -ETIMEDOUT;
	}
	if (d->error && d->error != -ECANCELED)
		fprintf(stderr, "  %s: %s\n", what, d->message ? d->message : strerror(-d->error));
	return d->error;
}

static json_t *configmap(const char *ns, const char *name, bool labelled, const char *value)
{
	json_t *labels = labelled ? json_pack("{s:s}", LABEL, name) : json_object();
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:{s:s}}", "apiVersion", "v1", "kind",
			 "ConfigMap", "metadata", "name", name, "namespace", ns, "labels", labels,
			 "data", "v", value);
}

static const char *rv_of(const json_t *o)
{
	const char *s = json_string_value(
		json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
	return s ? s : "";
}

static const char *name_of(const json_t *o)
{
	const char *s = json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
	return s ? s : "";
}

/* Creates a ConfigMap; returns its resourceVersion (owned) or NULL. */
static char *cm_create(const char *ns, const char *name, bool labelled)
{
	struct done d = { 0 };
	json_t *o = configmap(ns, name, labelled, "0");
	int r = call_wait(kube_create(kube, o, NULL, on_done, &d), &d, "create");
	json_decref(o);
	char *rv = r == 0 ? xstrdup(rv_of(d.body)) : NULL;
	done_clear(&d);
	return rv;
}

static char *cm_patch(const char *ns, const char *name, const char *value)
{
	struct done d = { 0 };
	struct kube_ref ref = { .api_version = "v1", .kind = "ConfigMap", .namespace = ns,
				.name = name };
	json_t *p = json_pack("{s:{s:s}}", "data", "v", value);
	int r = call_wait(kube_patch(kube, &ref, KUBE_PATCH_MERGE, p, NULL, on_done, &d), &d,
			  "patch");
	json_decref(p);
	char *rv = r == 0 ? xstrdup(rv_of(d.body)) : NULL;
	done_clear(&d);
	return rv;
}

static int cm_delete(const char *ns, const char *name)
{
	struct done d = { 0 };
	struct kube_ref ref = { .api_version = "v1", .kind = "ConfigMap", .namespace = ns,
				.name = name };
	int r = call_wait(kube_delete(kube, &ref, NULL, on_done, &d), &d, "delete");
	done_clear(&d);
	return r;
}

/* name -> resourceVersion of what a fresh list returns, or NULL. */
static json_t *fresh_list(const char *ns)
{
	struct done d = { 0 };
	struct kube_ref ref = { .api_version = "v1", .kind = "ConfigMap", .namespace = ns };
	struct kube_list_opts lo = { .label_selector = LABEL };
	if (call_wait(kube_list(kube, &ref, &lo, on_done, &d), &d, "list") != 0) {
		done_clear(&d);
		return NULL;
	}
	json_t *m = json_object();
	size_t i;
	json_t *it;
	json_array_foreach(json_object_get(d.body, "items"), i, it)
		json_object_set_new(m, name_of(it), json_string(rv_of(it)));
	done_clear(&d);
	return m;
}

/* Concurrent creation of n labelled ConfigMaps prefix-0..n-1, at most
 * inflight at a time. */
struct bulk {
	const char *ns, *prefix;
	int n, next, inflight, max, done, failed;
};

static void bulk_pump(struct bulk *b);

static void on_bulk_done(const struct kube_result *r, void *data)
{
	struct bulk *b = data;
	b->inflight--;
	b->done++;
	if (r->error && r->status != 409) {
		if (!b->failed)
			fprintf(stderr, "  bulk create: %s\n", r->message ? r->message : "?");
		b->failed++;
	}
	bulk_pump(b);
}

static void bulk_pump(struct bulk *b)
{
	while (b->inflight < b->max && b->next < b->n) {
		char name[64];
		snprintf(name, sizeof(name), "%s-%d", b->prefix, b->next++);
		json_t *o = configmap(b->ns, name, true, "0");
		if (kube_create(kube, o, NULL, on_bulk_done, b))
			b->inflight++;
		else
			b->failed++, b->done++;
		json_decref(o);
	}
}

static bool bulk_finished(void *arg)
{
	struct bulk *b = arg;
	return b->done >= b->n;
}

static int cluster(const char *verb)
{
	char *cmd = xasprintf("%s %s '%s' >/dev/null 2>&1", CLUSTER_SH, verb, cluster_dir);
	int r = system(cmd);
	free(cmd);
	return r;
}

static pid_t apiserver_pid(void)
{
	char *path = xasprintf("%s/pids/kube-apiserver.pid", cluster_dir);
	FILE *f = fopen(path, "r");
	free(path);
	long pid = 0;
	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return (pid_t)pid;
}

static void resume_apiserver(void)
{
	if (stopped_apiserver > 0)
		kill(stopped_apiserver, SIGCONT);
	stopped_apiserver = 0;
}

/* Whether kube-apiserver runs with its watch cache (cluster.sh's
 * RUNBOAT_WATCH_CACHE): it changes when a 410 happens and whether bookmarks
 * are sent. */
static bool watch_cache(void)
{
	static int known = -1;
	if (known >= 0)
		return known;
	char *path = xasprintf("%s/run/kube-apiserver.sh", cluster_dir);
	FILE *f = fopen(path, "r");
	free(path);
	char line[4096];
	known = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "--watch-cache=true"))
			known = 1;
	if (f)
		fclose(f);
	return known;
}

/* ---------------------------------------------------- a consumer view -- */

struct view {
	json_t *names;   /* name -> resourceVersion, from callbacks only */
	struct buf log;  /* "A name rv;" "U name rv;" "D name;" */
	int adds, updates, deletes, synced;
	int violations;  /* add of a known name, update/delete of an unknown one */
	struct informer *inf;
	void (*on_add_hook)(struct view *v); /* run after each add, or NULL */
};

static void view_violation(struct view *v, const char *what, const char *name)
{
	if (v->violations++ < 5)
		fprintf(stderr, "  view: %s %s\n", what, name);
}

static void v_add(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	struct view *v = data;
	v->adds++;
	if (json_object_get(v->names, name_of(obj)))
		view_violation(v, "add of a known", name_of(obj));
	json_object_set_new(v->names, name_of(obj), json_string(rv_of(obj)));
	buf_printf(&v->log, "A %s %s;", name_of(obj), rv_of(obj));
	if (v->on_add_hook)
		v->on_add_hook(v);
}

static void v_update(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	UNUSED(inf);
	struct view *v = data;
	v->updates++;
	const char *had = json_string_value(json_object_get(v->names, name_of(obj)));
	if (!had)
		view_violation(v, "update of an unknown", name_of(obj));
	else if (strcmp(had, rv_of(old)) != 0)
		view_violation(v, "update from another old version of", name_of(obj));
	if (strcmp(rv_of(old), rv_of(obj)) == 0)
		view_violation(v, "update without a new resourceVersion of", name_of(obj));
	json_object_set_new(v->names, name_of(obj), json_string(rv_of(obj)));
	buf_printf(&v->log, "U %s %s;", name_of(obj), rv_of(obj));
}

static void v_delete(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	struct view *v = data;
	v->deletes++;
	if (!json_object_get(v->names, name_of(obj)))
		view_violation(v, "delete of an unknown", name_of(obj));
	json_object_del(v->names, name_of(obj));
	buf_printf(&v->log, "D %s;", name_of(obj));
}

static void v_synced(struct informer *inf, void *data)
{
	UNUSED(inf);
	struct view *v = data;
	v->synced++;
}

static void view_init(struct view *v, const char *ns, const struct informer_opts *extra)
{
	memset(v, 0, sizeof(*v));
	v->names = json_object();
	buf_append_str(&v->log, "");
	struct informer_opts o = { 0 };
	if (extra)
		o = *extra;
	o.api_version = "v1";
	o.kind = "ConfigMap";
	o.namespace = ns;
	o.label_selector = LABEL;
	struct informer_callbacks cb = { v_add, v_update, v_delete, v_synced, v };
	v->inf = informer_new(loop, kube, &o, &cb);
}

static void view_free(struct view *v)
{
	informer_free(v->inf);
	json_decref(v->names);
	buf_free(&v->log);
}

static bool view_synced(void *arg)
{
	return informer_synced(((struct view *)arg)->inf);
}

/* The view, the informer's cache and want (name -> rv) hold the same. */
static bool view_equals(struct view *v, json_t *want, bool verbose)
{
	if (!want)
		return false;
	bool ok = json_equal(v->names, want) && informer_count(v->inf) == json_object_size(want);
	const char *name;
	json_t *rv;
	json_object_foreach(want, name, rv) {
		json_t *o = informer_get(v->inf, name);
		if (!o || strcmp(rv_of(o), json_string_value(rv)) != 0) {
			ok = false;
			break;
		}
	}
	if (!ok && verbose) {
		fprintf(stderr, "  view %zu objects, cache %zu, list %zu\n",
			json_object_size(v->names), informer_count(v->inf), json_object_size(want));
		json_object_foreach(want, name, rv) {
			const char *got = json_string_value(json_object_get(v->names, name));
			if (!got || strcmp(got, json_string_value(rv)) != 0) {
				fprintf(stderr, "  missing/stale: %s (view %s, list %s)\n", name,
					got ? got : "-", json_string_value(rv));
				break;
			}
		}
		json_object_foreach(v->names, name, rv) {
			if (!json_object_get(want, name)) {
				fprintf(stderr, "  ghost: %s\n", name);
				break;
			}
		}
	}
	return ok;
}

struct converge {
	struct view *v;
	const char *ns;
	uint64_t next_check;
	json_t *last;
};

/* True once the view equals a fresh list (checked at most every 300 ms). */
static bool converged(void *arg)
{
	struct converge *c = arg;
	if (now_ms() < c->next_check)
		return false;
	c->next_check = now_ms() + 300;
	json_decref(c->last);
	c->last = fresh_list(c->ns);
	return view_equals(c->v, c->last, false);
}

static bool wait_converged(struct view *v, const char *ns, double timeout_s)
{
	struct converge c = { .v = v, .ns = ns };
	bool ok = wait_for(converged, &c, timeout_s);
	if (!ok)
		view_equals(v, c.last, true);
	json_decref(c.last);
	return ok;
}

/* -------------------------------------------------------------- tests -- */

static int create_namespace(const char *name)
{
	struct done d = { 0 };
	json_t *o = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
			      "metadata", "name", name);
	int r = call_wait(kube_create(kube, o, NULL, on_done, &d), &d, "create namespace");
	json_decref(o);
	done_clear(&d);
	return r;
}

static void delete_namespace(const char *name)
{
	struct done d = { 0 };
	struct kube_ref ref = { .api_version = "v1", .kind = "Namespace", .name = name };
	call_wait(kube_delete(kube, &ref, NULL, on_done, &d), &d, "delete namespace");
	done_clear(&d);
}

struct log_wait {
	struct view *v;
	int n;
};

static bool log_has(void *arg)
{
	struct log_wait *w = arg;
	return w->v->adds + w->v->updates + w->v->deletes >= w->n;
}

/* Creates, updates and deletes while informing: every change arrives, in
 * order, with the resourceVersions the writes returned; unlabelled objects
 * are not seen. */
static struct view watcher; /* kept running for the whole file */

static void test_watch_sees_everything_in_order(void)
{
	char *pre = cm_create(ns_small, "pre", true);
	CHECK(pre != NULL);
	view_init(&watcher, ns_small, NULL);
	CHECK(watcher.inf != NULL);
	CHECK_INT(informer_start(watcher.inf), 0);
	CHECK_INT(informer_start(watcher.inf), 0); /* again: nothing */
	CHECK(wait_for(view_synced, &watcher, 30));
	CHECK_INT(watcher.synced, 1);
	CHECK_INT(informer_count(watcher.inf), 1);
	CHECK(informer_get(watcher.inf, "pre") != NULL);
	const char *listed_rv = informer_resource_version(watcher.inf);
	CHECK(listed_rv && informer_valid_rv(listed_rv));

	buf_reset(&watcher.log);
	buf_append_str(&watcher.log, "");
	watcher.adds = watcher.updates = watcher.deletes = 0;
	char *rv1 = cm_create(ns_small, "w1", true);
	char *un = cm_create(ns_small, "unlabelled", false);
	char *rv2 = cm_patch(ns_small, "w1", "1");
	char *rv3 = cm_create(ns_small, "w2", true);
	int d1 = cm_delete(ns_small, "w1");
	char *rv4 = cm_patch(ns_small, "w2", "2");
	char *rv5 = cm_patch(ns_small, "w2", "3");
	int d2 = cm_delete(ns_small, "pre");
	CHECK(rv1 && un && rv2 && rv3 && rv4 && rv5 && d1 == 0 && d2 == 0);
	struct log_wait w = { &watcher, 7 };
	CHECK(wait_for(log_has, &w, 30));
	pump(0.3); /* nothing more may come */
	char *want = xasprintf("A w1 %s;U w1 %s;A w2 %s;D w1;U w2 %s;U w2 %s;D pre;", rv1, rv2, rv3,
			       rv4, rv5);
	CHECK_STR(watcher.log.data, want);
	free(want);
	CHECK_INT(watcher.violations, 0);
	CHECK(informer_get(watcher.inf, "w1") == NULL);
	CHECK(informer_get(watcher.inf, "unlabelled") == NULL);
	CHECK_STR(rv_of(informer_get(watcher.inf, "w2")), rv5);
	/* the stored resourceVersion is at least the last event's */
	CHECK(strtoull(informer_resource_version(watcher.inf), NULL, 10) >= strtoull(rv5, NULL, 10));
	struct informer_stats st = informer_stats(watcher.inf);
	CHECK_INT(st.lists, 1);
	CHECK(st.watches >= 1);
	CHECK(st.last_timeout_s >= 300 && st.last_timeout_s <= 600);
	CHECK(wait_converged(&watcher, ns_small, 45));
	free(pre);
	free(rv1);
	free(un);
	free(rv2);
	free(rv3);
	free(rv4);
	free(rv5);
}

/* A stopped informer keeps its cache and resumes from its resourceVersion
 * (no re-list) when nothing expired meanwhile. */
static void test_stop_and_resume(void)
{
	struct informer_stats before = informer_stats(watcher.inf);
	informer_stop(watcher.inf);
	CHECK(informer_synced(watcher.inf));
	char *rv = cm_create(ns_small, "while-stopped", true);
	pump(0.3);
	CHECK(informer_get(watcher.inf, "while-stopped") == NULL); /* stopped: not seen */
	CHECK_INT(informer_start(watcher.inf), 0);
	CHECK(wait_converged(&watcher, ns_small, 45));
	struct informer_stats st = informer_stats(watcher.inf);
	CHECK_INT(st.lists, before.lists); /* resumed by a watch */
	CHECK(st.watches > before.watches);
	CHECK(informer_get(watcher.inf, "while-stopped") != NULL);
	CHECK_INT(watcher.violations, 0);
	free(rv);
}

struct pages {
	struct done d; /* first: on_page gets the done's pointer */
	int pages;
	size_t items;
};

static bool on_page(json_t *page, void *data)
{
	struct pages *p = data;
	p->pages++;
	p->items += json_array_size(json_object_get(page, "items"));
	return true;
}

/* 10,000 objects: the watch delivers every creation, and a new informer
 * lists them with pagination. */
static void test_ten_thousand(void)
{
	struct view big_watch;
	view_init(&big_watch, ns_big, NULL);
	informer_start(big_watch.inf);
	CHECK(wait_for(view_synced, &big_watch, 30));

	uint64_t t0 = now_ms();
	struct bulk b = { .ns = ns_big, .prefix = "cm", .n = 10000, .max = 64 };
	bulk_pump(&b);
	CHECK(wait_for(bulk_finished, &b, 600));
	CHECK_INT(b.failed, 0);
	uint64_t t1 = now_ms();
	struct log_wait w = { &big_watch, 10000 };
	CHECK(wait_for(log_has, &w, 60));
	uint64_t t2 = now_ms();
	CHECK_INT(big_watch.adds, 10000);
	CHECK_INT(informer_count(big_watch.inf), 10000);
	CHECK_INT(big_watch.violations, 0);
	fprintf(stderr, "  created 10000 ConfigMaps in %.1f s; watch caught up %.2f s later\n",
		(double)(t1 - t0) / 1000, (double)(t2 - t1) / 1000);

	/* the pagination itself: 20 pages at limit 500 (etcd may add an empty
	 * last one) */
	struct kube_ref ref = { .api_version = "v1", .kind = "ConfigMap", .namespace = ns_big };
	struct pages pg = { 0 };
	struct kube_list_opts lo = { .label_selector = LABEL, .limit = 500, .on_page = on_page };
	uint64_t tp = now_ms();
	int lr = call_wait(kube_list(kube, &ref, &lo, on_done, &pg.d), &pg.d, "list");
	if (lr == -ETIMEDOUT) {
		/* see /work/notes/kube-bugs.md: a list page sometimes stalls on the
		 * HTTP/2 connection shared with watches; the informer retries, so
		 * does this check (once), loudly */
		fprintf(stderr, "  NOTE: list stalled (kube/curl_uv transport bug); once more\n");
		done_clear(&pg.d);
		pg.pages = 0;
		pg.items = 0;
		tp = now_ms();
		lr = call_wait(kube_list(kube, &ref, &lo, on_done, &pg.d), &pg.d, "list");
	}
	CHECK_INT(lr, 0);
	fprintf(stderr, "  %d pages, %zu items in %.2f s\n", pg.pages, pg.items,
		(double)(now_ms() - tp) / 1000);
	CHECK(pg.pages == 20 || pg.pages == 21);
	CHECK_INT(pg.items, 10000);
	done_clear(&pg.d);

	struct view lister;
	struct informer_opts o = { .page_size = 500 };
	view_init(&lister, ns_big, &o);
	uint64_t t3 = now_ms();
	informer_start(lister.inf);
	CHECK(wait_for(view_synced, &lister, 120));
	uint64_t t4 = now_ms();
	fprintf(stderr, "  listed 10000 in %.2f s (pages of 500)\n", (double)(t4 - t3) / 1000);
	CHECK_INT(lister.adds, 10000);
	CHECK_INT(lister.synced, 1);
	CHECK_INT(informer_count(lister.inf), 10000);
	/* one list delivered; more were started only if a page stalled (see
	 * kube-bugs.md): the informer then retried, as it should */
	CHECK_INT(informer_stats(lister.inf).lists_ok, 1);
	if (informer_stats(lister.inf).lists != 1)
		fprintf(stderr, "  NOTE: the informer's list was retried %lu time(s)\n",
			informer_stats(lister.inf).lists - 1);
	CHECK(informer_get(lister.inf, "cm-0") && informer_get(lister.inf, "cm-9999"));
	CHECK(wait_converged(&lister, ns_big, 90));
	CHECK(view_equals(&big_watch, json_object_size(lister.names) ? lister.names : NULL, true));
	view_free(&lister);
	view_free(&big_watch);
}

struct failures_wait {
	struct informer *inf;
	unsigned long n;
};

static bool watch_failed(void *arg)
{
	struct failures_wait *w = arg;
	return informer_stats(w->inf).watch_failures >= w->n;
}

/* kube-apiserver killed during a watch and restarted: the informer
 * reconnects (backoff) and its cache equals a fresh list again. */
static void test_apiserver_restart(void)
{
	char name[32];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		free(cm_create(ns_small, name, true));
	}
	CHECK(wait_converged(&watcher, ns_small, 45));
	struct informer_stats before = informer_stats(watcher.inf);
	CHECK_INT(cluster("kill-apiserver"), 0);
	struct failures_wait fw = { watcher.inf, before.watch_failures + 1 };
	CHECK(wait_for(watch_failed, &fw, 20));
	pump(2); /* a few failed reconnections, growing delays */
	struct informer_stats down = informer_stats(watcher.inf);
	fprintf(stderr, "  apiserver down: %lu watch failures, last delay %.1f s\n",
		down.watch_failures - before.watch_failures, (double)down.last_delay_ms / 1000);
	CHECK(down.last_delay_ms >= 600 && down.last_delay_ms <= 30000);
	CHECK_INT(cluster("start-apiserver"), 0);
	/* changes right after the restart, while the informer may still wait */
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		CHECK_INT(cm_delete(ns_small, name), 0);
		snprintf(name, sizeof(name), "r%d", i + 5);
		char *rv = cm_patch(ns_small, name, "x");
		CHECK(rv != NULL);
		free(rv);
		snprintf(name, sizeof(name), "n%d", i);
		free(cm_create(ns_small, name, true));
	}
	uint64_t t0 = now_ms();
	CHECK(wait_converged(&watcher, ns_small, 90));
	fprintf(stderr, "  converged %.1f s after the restart\n", (double)(now_ms() - t0) / 1000);
	CHECK_INT(watcher.violations, 0);
	CHECK(informer_get(watcher.inf, "r0") == NULL);
	CHECK(strstr(watcher.log.data, "D r4;") != NULL);
	CHECK(informer_get(watcher.inf, "n4") != NULL);
	CHECK(informer_stats(watcher.inf).watches > down.watches);
}

struct expired_wait {
	struct informer *inf;
	unsigned long lists;
};

static bool relisted(void *arg)
{
	struct expired_wait *w = arg;
	struct informer_stats st = informer_stats(w->inf);
	return st.expired > 0 && st.lists_ok >= w->lists;
}

/* 410: the informer resumes from a resourceVersion that etcd compacted
 * away (and, after a restart of kube-apiserver, older than its watch
 * cache's window if it has one); it re-lists, and the diff reports the
 * objects deleted meanwhile. */
static void test_expired_relist(void)
{
	CHECK(wait_converged(&watcher, ns_small, 45));
	struct informer_stats before = informer_stats(watcher.inf);
	informer_stop(watcher.inf);
	size_t deletes = (size_t)watcher.deletes;
	char name[32];
	for (int i = 5; i < 10; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		CHECK_INT(cm_delete(ns_small, name), 0);
	}
	for (int i = 10; i < 13; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		free(cm_patch(ns_small, name, "y"));
	}
	free(cm_create(ns_small, "after-compaction", true));
	CHECK_INT(cluster("compact"), 0);
	CHECK_INT(cluster("restart-apiserver"), 0);
	CHECK_INT(informer_start(watcher.inf), 0);
	struct expired_wait ew = { watcher.inf, before.lists_ok + 1 };
	CHECK(wait_for(relisted, &ew, 60));
	struct informer_stats st = informer_stats(watcher.inf);
	fprintf(stderr, "  410 seen %lu time(s); lists %lu -> %lu\n", st.expired, before.lists,
		st.lists);
	CHECK(st.expired >= 1);
	CHECK(st.lists > before.lists);
	CHECK(wait_converged(&watcher, ns_small, 45));
	CHECK_INT((size_t)watcher.deletes - deletes, 5);
	CHECK(strstr(watcher.log.data, "D r9;") != NULL);
	CHECK(informer_get(watcher.inf, "after-compaction") != NULL);
	CHECK_INT(watcher.violations, 0);
	CHECK_INT(watcher.synced, 1); /* synced is reported once */
}

/* Once, from the first add of the list in test_expired_mid_list (its first
 * page is being applied; the next page is not asked yet): deletes pg-01
 * (on that page) and pg-30 (on a later one), creates pg-new, then compacts
 * etcd past the list's resourceVersion, so that the next page's continue
 * token has expired. Blocking (the loop waits): curl and cluster.sh. */
static char ns_pages[80];
static int mid_list_runs, mid_list_rc;

static void mid_list_hook(struct view *v)
{
	UNUSED(v);
	if (mid_list_runs++)
		return;
	char *cmd = xasprintf(
		". '%s/env' && k() { curl -sf -o /dev/null --cacert \"$CA_CERT\" "
		"-H \"Authorization: Bearer $ADMIN_TOKEN\" \"$@\"; } && "
		"u=\"$APISERVER_URL/api/v1/namespaces/%s/configmaps\" && "
		"k -X DELETE \"$u/pg-01\" && k -X DELETE \"$u/pg-30\" && "
		"k -X POST -H 'Content-Type: application/json' -d "
		"'{\"metadata\":{\"name\":\"pg-new\",\"labels\":{\"" LABEL "\":\"pg-new\"}}}' \"$u\" && "
		"%s compact '%s' >/dev/null 2>&1",
		cluster_dir, ns_pages, CLUSTER_SH, cluster_dir);
	mid_list_rc = system(cmd);
	free(cmd);
}

struct list_wait {
	struct informer *inf;
};

static bool listed_once(void *arg)
{
	return informer_stats(((struct list_wait *)arg)->inf).lists_ok >= 1;
}

/* A list applied page by page that gets 410 part way (its continue token
 * expired: etcd compacted past it), while objects are deleted and created:
 * the pages applied stay, the informer lists again from the start, reports
 * only what changed (no second add of what the first pages added), deletes
 * what is gone after the last page of that list, and ends equal to a fresh
 * list. With the watch cache, kube-apiserver may serve the rest of the list
 * from its snapshot instead (no 410): then only the convergence is checked. */
static void test_expired_mid_list(void)
{
	snprintf(ns_pages, sizeof ns_pages, "%s-pg", ns_small);
	CHECK_INT(create_namespace(ns_pages), 0);
	char name[32];
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof name, "pg-%02d", i);
		char *rv = cm_create(ns_pages, name, true);
		CHECK(rv != NULL);
		free(rv);
	}
	struct view v;
	struct informer_opts o = { .page_size = 5, .backoff_base_ms = 200 };
	view_init(&v, ns_pages, &o);
	v.on_add_hook = mid_list_hook;
	informer_start(v.inf);
	struct list_wait lw = { v.inf };
	CHECK(wait_for(listed_once, &lw, 60));
	CHECK_INT(mid_list_rc, 0);
	CHECK(wait_converged(&v, ns_pages, 45));
	struct informer_stats st = informer_stats(v.inf);
	fprintf(stderr, "  lists %lu (%lu failed, 410 seen %lu time(s)), %d adds, %d deletes\n",
		st.lists, st.list_failures, st.expired, v.adds, v.deletes);
	CHECK_INT(v.violations, 0);
	CHECK_INT(v.synced, 1);
	CHECK_INT(informer_count(v.inf), 39);
	CHECK(informer_get(v.inf, "pg-01") == NULL && informer_get(v.inf, "pg-30") == NULL);
	CHECK(informer_get(v.inf, "pg-new") != NULL);
	if (!watch_cache()) {
		CHECK(st.expired >= 1);
		CHECK(st.list_failures >= 1);
		CHECK_INT(st.lists_ok, 1);
		/* pg-01 came with the first page, and went with the end of the
		 * second list; pg-30 was never seen */
		CHECK(strstr(v.log.data, "A pg-01 ") != NULL);
		CHECK(strstr(v.log.data, "D pg-01;") != NULL);
		CHECK(strstr(v.log.data, "A pg-30 ") == NULL);
		CHECK_INT(v.deletes, 1);
		CHECK_INT(v.adds, 40);
	}
	view_free(&v);
	delete_namespace(ns_pages);
}

struct silent_wait {
	struct informer *inf;
};

static bool went_silent(void *arg)
{
	return informer_stats(((struct silent_wait *)arg)->inf).silent > 0;
}

/* A stream that goes silent (kube-apiserver frozen with SIGSTOP: the
 * connection stays open, nothing arrives) is cancelled and watched again. */
static void test_silent_stream(void)
{
	struct view v;
	struct informer_opts o = { .watch_timeout_min_s = 2, .watch_timeout_max_s = 2,
				   .silence_margin_ms = 1500, .healthy_ms = 1000 };
	view_init(&v, ns_small, &o);
	informer_start(v.inf);
	CHECK(wait_for(view_synced, &v, 30));
	pump(2.5); /* at least one normal end of a 2 s watch, re-watched */
	struct informer_stats st = informer_stats(v.inf);
	CHECK(st.watches >= 2);
	CHECK_INT(st.silent, 0);
	CHECK_INT(st.last_timeout_s, 2);

	pid_t pid = apiserver_pid();
	CHECK(pid > 0);
	if (pid > 0 && kill(pid, SIGSTOP) == 0) {
		stopped_apiserver = pid;
		struct silent_wait sw = { v.inf };
		uint64_t t0 = now_ms();
		CHECK(wait_for(went_silent, &sw, 15));
		fprintf(stderr, "  silence detected after %.1f s\n", (double)(now_ms() - t0) / 1000);
		resume_apiserver();
	}
	char *rv = cm_create(ns_small, "after-silence", true);
	CHECK(rv != NULL);
	free(rv);
	CHECK(wait_converged(&v, ns_small, 60));
	CHECK(informer_get(v.inf, "after-silence") != NULL);
	CHECK_INT(v.violations, 0);
	view_free(&v);
}

/* Bookmarks: the watch asks for them (kube_watch's default); the watch
 * cache sends one about every minute, so this is only checked when the
 * cluster runs with the watch cache and the watcher has run long enough. */
static void test_bookmarks(void)
{
	struct informer_stats st = informer_stats(watcher.inf);
	fprintf(stderr, "  %lu bookmark(s) in %.0f s (watch cache %s)\n", st.bookmarks,
		(double)(now_ms() - started) / 1000, watch_cache() ? "on" : "off");
	if (watch_cache() && now_ms() - started > 90000)
		CHECK(st.bookmarks > 0);
}

static bool closed_all(void *arg)
{
	UNUSED(arg);
	return !uv_loop_alive(loop);
}

int main(void)
{
	cluster_dir = getenv("RUNBOAT_TEST_CLUSTER");
	if (!cluster_dir || !*cluster_dir) {
		printf("test_informer_live: skipped (RUNBOAT_TEST_CLUSTER is not set)\n");
		return 0;
	}
	if (access(CLUSTER_SH, X_OK) != 0) {
		fprintf(stderr, "test_informer_live: %s not found (run from the repository root)\n",
			CLUSTER_SH);
		return 1;
	}
	atexit(resume_apiserver);
	const char *lv = getenv("RUNBOAT_TEST_LOG");
	log_set_level(lv && log_level_parse(lv) >= 0 ? (enum log_level)log_level_parse(lv) : LOG_WARN);
	char err[512];
	char *kc_path = xasprintf("%s/kubeconfig", cluster_dir);
	struct kubeconfig *kc = kubeconfig_load(kc_path, NULL, err, sizeof(err));
	free(kc_path);
	if (!kc) {
		fprintf(stderr, "test_informer_live: %s\n", err);
		return 1;
	}
	loop = xmalloc(sizeof(*loop));
	uv_loop_init(loop);
	uv_timer_init(loop, &ticker);
	uv_timer_start(&ticker, on_tick, 20, 20);
	/* 20 s per call: a stalled list page (kube-bugs.md) is retried sooner */
	struct kube_options ko = { .qps = -1, .timeout_ms = 20000 };
	kube = kube_new(loop, kc, &ko);

	unsigned r = (unsigned)backoff_seed();
	snprintf(ns_small, sizeof(ns_small), "inf-%08x", r);
	snprintf(ns_big, sizeof(ns_big), "inf-big-%08x", r);
	started = now_ms();
	if (create_namespace(ns_small) != 0 || create_namespace(ns_big) != 0) {
		fprintf(stderr, "test_informer_live: cannot create namespaces\n");
		unit_failures++;
	} else {
		RUN(test_watch_sees_everything_in_order);
		RUN(test_stop_and_resume);
		RUN(test_ten_thousand);
		RUN(test_apiserver_restart);
		RUN(test_expired_relist);
		RUN(test_expired_mid_list);
		RUN(test_silent_stream);
		RUN(test_bookmarks);
	}
	view_free(&watcher);
	delete_namespace(ns_small);
	delete_namespace(ns_big);

	/* lifetimes: everything cancels and closes */
	kube_close(kube);
	uv_timer_stop(&ticker);
	uv_close((uv_handle_t *)&ticker, NULL);
	wait_for(closed_all, NULL, 10);
	CHECK_INT(uv_loop_close(loop), 0);
	free(loop);
	log_flush();
	return UNIT_DONE();
}
