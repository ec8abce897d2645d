/* The kube client against a REAL kube-apiserver (test/cluster). Skipped
 * unless RUNBOAT_TEST_KUBECONFIG names an admin kubeconfig, e.g.:
 *
 *   test/cluster/cluster.sh start /tmp/c && . /tmp/c/env
 *   RUNBOAT_TEST_KUBECONFIG=$KUBECONFIG build/unit/test_kube_live
 *
 * The token and limited-user kubeconfigs are taken from $KUBECONFIG_TOKEN and
 * $KUBECONFIG_LIMITED, or else from kubeconfig-token / kubeconfig-limited
 * beside RUNBOAT_TEST_KUBECONFIG (as cluster.sh writes them). Everything
 * happens in a fresh namespace, deleted at the end.
 *
 * Connection faults go through a fault-injecting TCP proxy (fault_proxy.h)
 * between the client and the API server: the server's idle close of a call
 * connection beside an open watch (the "quiet spell" failure of libcurl
 * 7.88), silent drops, resets, slow first bytes, a blackhole. */
#include "curl_uv.h"
#include "kube.h"
#include "kubeconfig.h"
#include "util.h"
#include "unit.h"
#include "http_stub.h"
#include "fault_proxy.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uv_loop_t loop;
static char ns[64];
static char tmpdir[64];
static const char *admin_path;
static struct kube *admin;

struct res {
	int done;
	int error;
	int status;
	bool maybe_applied;
	bool transient;
	uint64_t t0, took_ms;
	char reason[64];
	char message[1024];
	json_t *body;
	char plural[64];
	bool namespaced;
};

static void on_done(const struct kube_result *r, void *data)
{
	struct res *x = data;
	x->done++;
	x->error = r->error;
	x->status = r->status;
	x->maybe_applied = r->maybe_applied;
	x->transient = kube_result_transient(r);
	x->took_ms = now_ms() - x->t0;
	snprintf(x->reason, sizeof(x->reason), "%s", r->reason);
	snprintf(x->message, sizeof(x->message), "%s", r->message ? r->message : "");
	json_decref(x->body);
	x->body = r->body ? json_incref(r->body) : NULL;
	x->plural[0] = '\0';
	if (r->resource) {
		snprintf(x->plural, sizeof(x->plural), "%s", r->resource->plural);
		x->namespaced = r->resource->namespaced;
	}
}

static void wait_res(struct res *r)
{
	loop_run_until(&loop, &r->done, 1);
}

static void res_reset(struct res *r)
{
	json_decref(r->body);
	memset(r, 0, sizeof(*r));
}

static const char *jstr(json_t *v, const char *path)
{
	/* "a.b.c" */
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	char *save = NULL;
	for (char *p = strtok_r(buf, ".", &save); p && v; p = strtok_r(NULL, ".", &save))
		v = json_object_get(v, p);
	return json_string_value(v);
}

static struct kube *client(const char *path, const struct kube_options *o)
{
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(path, NULL, err, sizeof(err));
	if (!kc) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return kube_new(&loop, kc, o);
}

static json_t *configmap(const char *name, const char *labels_k, const char *labels_v)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s}}", "apiVersion", "v1", "kind",
			 "ConfigMap", "metadata", "name", name, "namespace", ns, "labels",
			 labels_k, labels_v, "data", "k", name);
}

/* ---- steps ---- */

static void test_discovery(struct kube *k)
{
	struct {
		const char *api_version, *kind, *plural;
		bool namespaced;
	} want[] = {
		{"apps/v1", "Deployment", "deployments", true},
		{"batch/v1", "Job", "jobs", true},
		{"networking.k8s.io/v1", "Ingress", "ingresses", true},
		{"v1", "ConfigMap", "configmaps", true},
		{"v1", "Namespace", "namespaces", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		struct res r = {0};
		kube_discover(k, want[i].api_version, want[i].kind, on_done, &r);
		wait_res(&r);
		CHECK_INT(r.error, 0);
		CHECK_STR(r.plural, want[i].plural);
		CHECK_INT(r.namespaced, want[i].namespaced);
		res_reset(&r);
	}
	struct res r = {0};
	kube_discover(k, "apps/v1", "Gizmo", on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, -ENOENT);
	CHECK_STR(r.message, "kind \"Gizmo\" is not served in apiVersion \"apps/v1\"");
	res_reset(&r);
	kube_discover(k, "nothing.example.com/v9", "Gizmo", on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, -ENOENT);
	res_reset(&r);
}

/* HTTP/2 is negotiated with the API server (ALPN), through curl_uv itself. */
static int h2_version;
static void on_h2_done(struct curl_uv_request *req, const struct curl_uv_response *res, void *data)
{
	int *done = data;
	(*done)++;
	CHECK_INT(res->error, 0);
	CHECK_INT(res->status, 200);
	h2_version = curl_uv_http_version(req);
}

static void test_http2(void)
{
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(admin_path, NULL, err, sizeof(err));
	struct curl_uv *cu = curl_uv_new(&loop);
	struct curl_uv_tls tls = {.ca_pem = kc->ca_pem, .ca_len = kc->ca_len,
				  .cert_pem = kc->cert_pem, .cert_len = kc->cert_len,
				  .key_pem = kc->key_pem, .key_len = kc->key_len};
	char *url = xasprintf("%s/version", kc->server);
	int done = 0;
	struct curl_uv_request_opts o = {.url = url, .tls = &tls, .on_done = on_h2_done,
					 .data = &done, .timeout_ms = 10000};
	curl_uv_start(cu, &o);
	loop_run_until(&loop, &done, 1);
	CHECK_INT(h2_version, 2);
	free(url);
	curl_uv_close(cu);
	kubeconfig_free(kc);
}

static void test_namespace(struct kube *k, bool create)
{
	struct res r = {0};
	if (create) {
		json_t *o = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
				      "metadata", "name", ns);
		kube_create(k, o, NULL, on_done, &r);
		json_decref(o);
		wait_res(&r);
		CHECK_INT(r.error, 0);
		CHECK_INT(r.status, 201);
	} else {
		struct kube_ref ref = {.api_version = "v1", .kind = "Namespace", .name = ns};
		kube_delete(k, &ref, NULL, on_done, &r);
		wait_res(&r);
		CHECK_INT(r.error, 0);
	}
	res_reset(&r);
}

static int pages;
static size_t paged_items;
static bool on_page(json_t *page, void *data)
{
	UNUSED(data);
	pages++;
	size_t n = json_array_size(json_object_get(page, "items"));
	CHECK(n <= 50);
	paged_items += n;
	return true;
}

static void test_create_list(struct kube *k)
{
	enum { N = 300 };
	static struct res r[N];
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof(name), "cm-%03d", i);
		json_t *o = configmap(name, "batch", i % 2 ? "odd" : "even");
		CHECK(kube_create(k, o, NULL, on_done, &r[i]) != NULL);
		json_decref(o);
	}
	for (int i = 0; i < N; i++)
		wait_res(&r[i]);
	int created = 0;
	for (int i = 0; i < N; i++) {
		created += r[i].status == 201;
		if (r[i].status != 201 && created + 5 > i)
			fprintf(stderr, "  create cm-%03d: status %d error %d: %s\n", i, r[i].status,
				r[i].error, r[i].message);
		res_reset(&r[i]);
	}
	CHECK_INT(created, N);

	struct res l = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns};
	struct kube_list_opts lo = {.label_selector = "batch", .limit = 50};
	kube_list(k, &ref, &lo, on_done, &l);
	wait_res(&l);
	CHECK_INT(l.error, 0);
	json_t *items = json_object_get(l.body, "items");
	CHECK_INT(json_array_size(items), N);
	CHECK_STR(jstr(json_array_get(items, 0), "kind"), "ConfigMap");
	CHECK_STR(jstr(json_array_get(items, 0), "apiVersion"), "v1");
	CHECK_STR(jstr(json_array_get(items, 299), "metadata.name"), "cm-299");
	CHECK(jstr(l.body, "metadata.resourceVersion") != NULL);
	CHECK(jstr(l.body, "metadata.continue") == NULL);
	res_reset(&l);

	lo.on_page = on_page;
	lo.label_selector = "batch=odd";
	kube_list(k, &ref, &lo, on_done, &l);
	wait_res(&l);
	CHECK_INT(l.error, 0);
	CHECK(pages >= 3); /* selectors filter after paging: pages may be short */
	CHECK_INT(paged_items, 150);
	res_reset(&l);

	/* get one, and create it twice */
	struct kube_ref one = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns,
			       .name = "cm-042"};
	kube_get(k, &one, on_done, &l);
	wait_res(&l);
	CHECK_INT(l.status, 200);
	CHECK_STR(jstr(l.body, "data.k"), "cm-042");
	res_reset(&l);
	json_t *o = configmap("cm-042", "batch", "even");
	kube_create(k, o, NULL, on_done, &l);
	json_decref(o);
	wait_res(&l);
	CHECK_INT(l.error, -EREMOTEIO);
	CHECK_INT(l.status, 409);
	CHECK_STR(l.reason, "AlreadyExists");
	CHECK_STR(l.message, "configmaps \"cm-042\" already exists");
	res_reset(&l);

	/* deletecollection by label, then nothing is left */
	ref.name = NULL;
	struct kube_list_opts sel = {.label_selector = "batch in (odd,even)"};
	kube_delete_collection(k, &ref, &sel, NULL, on_done, &l);
	wait_res(&l);
	CHECK_INT(l.error, 0);
	res_reset(&l);
	lo.on_page = NULL;
	lo.label_selector = "batch";
	kube_list(k, &ref, &lo, on_done, &l);
	wait_res(&l);
	CHECK_INT(json_array_size(json_object_get(l.body, "items")), 0);
	res_reset(&l);
}

static bool manager_present(json_t *obj, const char *manager)
{
	json_t *mf = json_object_get(json_object_get(obj, "metadata"), "managedFields");
	size_t i;
	json_t *e;
	json_array_foreach(mf, i, e) {
		const char *m = json_string_value(json_object_get(e, "manager"));
		if (m && strcmp(m, manager) == 0)
			return true;
	}
	return false;
}

static void test_apply_patch_delete(struct kube *k)
{
	struct res r = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns,
			       .name = "ssa"};
	json_t *o = configmap("ssa", "app", "live");
	struct kube_write_opts wo = {.field_manager = "runboat-test", .force = true,
				     .dry_run = true};
	kube_apply(k, o, &wo, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.status, 201);
	res_reset(&r);
	kube_get(k, &ref, on_done, &r); /* the dry run left nothing */
	wait_res(&r);
	CHECK_INT(r.status, 404);
	CHECK_STR(r.reason, "NotFound");
	CHECK_STR(r.message, "configmaps \"ssa\" not found");
	res_reset(&r);

	wo.dry_run = false;
	kube_apply(k, o, &wo, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.status, 201);
	CHECK(manager_present(r.body, "runboat-test"));
	res_reset(&r);
	json_object_set_new(json_object_get(o, "data"), "k", json_string("changed"));
	kube_apply(k, o, &wo, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.status, 200);
	CHECK_STR(jstr(r.body, "data.k"), "changed");
	char uid[64];
	snprintf(uid, sizeof(uid), "%s", jstr(r.body, "metadata.uid"));
	res_reset(&r);
	json_decref(o);

	/* SSA conflict without force: another manager owns data.k */
	json_t *o2 = configmap("ssa", "app", "live");
	struct kube_write_opts other = {.field_manager = "someone-else"};
	kube_apply(k, o2, &other, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.status, 409);
	CHECK_STR(r.reason, "Conflict");
	CHECK(strstr(r.message, "conflict") != NULL || strstr(r.message, "Apply failed") != NULL);
	res_reset(&r);
	json_decref(o2);

	json_t *mp = json_pack("{s:{s:s}}", "data", "k2", "v2");
	kube_patch(k, &ref, KUBE_PATCH_MERGE, mp, NULL, on_done, &r);
	json_decref(mp);
	wait_res(&r);
	CHECK_INT(r.status, 200);
	CHECK_STR(jstr(r.body, "data.k2"), "v2");
	CHECK_STR(jstr(r.body, "data.k"), "changed");
	res_reset(&r);

	json_t *jp = json_pack("[{s:s, s:s, s:s}]", "op", "replace", "path", "/data/k2", "value", "v3");
	kube_patch(k, &ref, KUBE_PATCH_JSON, jp, NULL, on_done, &r);
	json_decref(jp);
	wait_res(&r);
	CHECK_INT(r.status, 200);
	CHECK_STR(jstr(r.body, "data.k2"), "v3");
	res_reset(&r);
	jp = json_pack("[{s:s, s:s, s:s}]", "op", "test", "path", "/data/k2", "value", "nope");
	kube_patch(k, &ref, KUBE_PATCH_JSON, jp, NULL, on_done, &r);
	json_decref(jp);
	wait_res(&r);
	/* the API server says no more than this about a failed "test" */
	CHECK_INT(r.status, 422);
	CHECK_STR(r.reason, "Invalid");
	CHECK_STR(r.message, "the server rejected our request due to an error in our request");
	res_reset(&r);

	/* delete with preconditions */
	struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
	dopt.uid = "00000000-0000-0000-0000-000000000000";
	kube_delete(k, &ref, &dopt, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, -EREMOTEIO);
	CHECK_INT(r.status, 409);
	CHECK_STR(r.reason, "Conflict");
	CHECK(strstr(r.message, "the UID in the precondition "
				"(00000000-0000-0000-0000-000000000000) does not match") != NULL);
	fprintf(stderr, "  409 message: %s\n", r.message);
	res_reset(&r);
	dopt.uid = uid;
	dopt.grace_period_seconds = 0;
	dopt.propagation = "Background";
	kube_delete(k, &ref, &dopt, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.status, 200);
	res_reset(&r);

	/* an invalid object: a precise message */
	json_t *dep = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:{s:{s:[]}}}}", "apiVersion",
				"apps/v1", "kind", "Deployment", "metadata", "name", "b123-odoo",
				"namespace", ns, "spec", "template", "spec", "containers");
	kube_create(k, dep, NULL, on_done, &r);
	json_decref(dep);
	wait_res(&r);
	CHECK_INT(r.status, 422);
	CHECK_STR(r.reason, "Invalid");
	CHECK(strstr(r.message, "Deployment.apps \"b123-odoo\" is invalid: ") == r.message);
	CHECK(strstr(r.message, "spec.selector: Required value") != NULL);
	fprintf(stderr, "  422 message: %s\n", r.message);
	res_reset(&r);
}

struct watch_state {
	struct res r;
	char seen[512];
	int events;
	int bookmarks;
};

static void on_watch_event(const char *type, json_t *obj, void *data)
{
	struct watch_state *w = data;
	if (strcmp(type, "BOOKMARK") == 0) {
		w->bookmarks++;
		return;
	}
	w->events++;
	size_t n = strlen(w->seen);
	snprintf(w->seen + n, sizeof(w->seen) - n, "%s%s:%s", n ? "," : "", type,
		 jstr(obj, "metadata.name") ? jstr(obj, "metadata.name") : "?");
}

static void test_watch(struct kube *k)
{
	struct res l = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns};
	kube_list(k, &ref, NULL, on_done, &l);
	wait_res(&l);
	char rv[64];
	snprintf(rv, sizeof(rv), "%s", jstr(l.body, "metadata.resourceVersion"));
	res_reset(&l);

	struct watch_state w = {0};
	struct kube_watch_opts wo = {.resource_version = rv, .label_selector = "w=1"};
	struct kube_call *wc = kube_watch(k, &ref, &wo, on_watch_event, on_done, &w);
	CHECK(wc != NULL);

	json_t *o = configmap("watched", "w", "1");
	kube_create(k, o, NULL, on_done, &l);
	json_decref(o);
	wait_res(&l);
	res_reset(&l);
	struct kube_ref one = ref;
	one.name = "watched";
	json_t *mp = json_pack("{s:{s:s}}", "data", "x", "y");
	kube_patch(k, &one, KUBE_PATCH_MERGE, mp, NULL, on_done, &l);
	json_decref(mp);
	wait_res(&l);
	res_reset(&l);
	kube_delete(k, &one, NULL, on_done, &l);
	wait_res(&l);
	res_reset(&l);
	loop_run_until(&loop, &w.events, 3);
	CHECK_STR(w.seen, "ADDED:watched,MODIFIED:watched,DELETED:watched");
	CHECK_INT(w.r.done, 0);
	kube_cancel(wc);
	wait_res(&w.r);
	CHECK_INT(w.r.error, -ECANCELED);
	res_reset(&w.r);

	/* the server ends a watch at timeoutSeconds: a normal end */
	struct watch_state t = {0};
	wo.timeout_seconds = 1;
	wo.resource_version = NULL;
	kube_watch(k, &ref, &wo, on_watch_event, on_done, &t);
	wait_res(&t.r);
	CHECK_INT(t.r.error, 0);
	CHECK_INT(t.r.status, 200);
	res_reset(&t.r);

	/* a refused watch: a Status, not a stream */
	struct watch_state bad = {0};
	wo.label_selector = "!!bad";
	kube_watch(k, &ref, &wo, on_watch_event, on_done, &bad);
	wait_res(&bad.r);
	CHECK_INT(bad.r.error, -EREMOTEIO);
	CHECK_INT(bad.r.status, 400);
	CHECK(strstr(bad.r.message, "unable to parse requirement") != NULL ||
	      strstr(bad.r.message, "invalid") != NULL);
	fprintf(stderr, "  400 watch message: %s\n", bad.r.message);
	res_reset(&bad.r);
}

struct log_state {
	struct res r; /* first: on_done sees a struct res */
	struct buf text;
};

static void on_log_data(const char *bytes, size_t len, void *data)
{
	struct log_state *l = data;
	buf_append(&l->text, bytes, len);
}

static void test_pod_log(struct kube *k)
{
	struct res r = {0};
	json_t *pod = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:[{s:s, s:s}]}}", "apiVersion", "v1",
				"kind", "Pod", "metadata", "name", "logger", "namespace", ns,
				"spec", "containers", "name", "main", "image", "busybox");
	kube_create(k, pod, NULL, on_done, &r);
	json_decref(pod);
	wait_res(&r);
	CHECK_INT(r.status, 201);
	res_reset(&r);
	/* wait until podsim has it running */
	struct kube_ref ref = {.api_version = "v1", .kind = "Pod", .namespace = ns, .name = "logger"};
	for (int i = 0; i < 100; i++) {
		kube_get(k, &ref, on_done, &r);
		wait_res(&r);
		const char *phase = jstr(r.body, "status.phase");
		bool running = phase && strcmp(phase, "Running") == 0;
		res_reset(&r);
		if (running)
			break;
		usleep(100000);
	}
	struct kube_log_opts lo = {.container = "main"};
	kube_pod_log(k, ns, "logger", &lo, NULL, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.status, 200);
	res_reset(&r);
	/* streamed to a data callback */
	struct log_state ls = {0};
	lo.follow = true;
	kube_pod_log(k, ns, "logger", &lo, on_log_data, on_done, &ls);
	wait_res(&ls.r);
	CHECK_INT(ls.r.error, 0);
	CHECK(ls.text.data && strstr(ls.text.data, "podsim: log of ") == ls.text.data);
	buf_free(&ls.text);
	res_reset(&ls.r);
	kube_pod_log(k, ns, "no-such-pod", NULL, NULL, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.status, 404);
	CHECK_STR(r.message, "pods \"no-such-pod\" not found");
	res_reset(&r);
}

static char *raw_log;
static void on_raw_log(const struct kube_result *r, void *data)
{
	on_done(r, data);
	free(raw_log);
	raw_log = xstrndup(r->raw, r->raw_len);
}

static void test_pod_log_raw(struct kube *k)
{
	struct res r = {0};
	struct kube_log_opts lo = {.container = "main"};
	kube_pod_log(k, ns, "logger", &lo, NULL, on_raw_log, &r);
	wait_res(&r);
	CHECK(raw_log && strstr(raw_log, "podsim: log of ") == raw_log);
	CHECK(r.body == NULL);
	res_reset(&r);
	free(raw_log);
	raw_log = NULL;
}

static void on_tick(uv_timer_t *t)
{
	(*(int *)t->data)++;
}

static void check_get_ns(struct kube *k, int want_status)
{
	struct res r = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "Namespace", .name = ns};
	kube_get(k, &ref, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.status, want_status);
	if (r.status != want_status)
		fprintf(stderr, "  %s\n", r.message);
	res_reset(&r);
}

static char *sibling(const char *env, const char *name)
{
	const char *e = getenv(env);
	if (e && *e)
		return xstrdup(e);
	const char *slash = strrchr(admin_path, '/');
	char *p = slash ? xasprintf("%.*s/%s", (int)(slash - admin_path), admin_path, name)
			: xstrdup(name);
	if (access(p, R_OK) == 0)
		return p;
	free(p);
	return NULL;
}

static void test_token_and_rbac(void)
{
	char *tok = sibling("KUBECONFIG_TOKEN", "kubeconfig-token");
	char *lim = sibling("KUBECONFIG_LIMITED", "kubeconfig-limited");
	if (!tok || !lim) {
		fprintf(stderr, "  (no kubeconfig-token / kubeconfig-limited: token and RBAC skipped)\n");
		CHECK(tok && lim);
		free(tok);
		free(lim);
		return;
	}
	struct kube *k = client(tok, NULL);
	check_get_ns(k, 200);
	kube_close(k);

	k = client(lim, NULL);
	struct res r = {0};
	struct kube_ref ref = {.api_version = "apps/v1", .kind = "Deployment", .namespace = ns,
			       .name = "b123-odoo"};
	kube_get(k, &ref, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, -EREMOTEIO);
	CHECK_INT(r.status, 403);
	CHECK_STR(r.reason, "Forbidden");
	char *want = xasprintf("deployments.apps \"b123-odoo\" is forbidden: User \"limited\" cannot "
			       "get resource \"deployments\" in API group \"apps\" in the namespace "
			       "\"%s\"", ns);
	CHECK_STR(r.message, want);
	free(want);
	res_reset(&r);
	kube_close(k);
	free(tok);
	free(lim);
}

/* An exec plugin that hands out a bad token first, then the admin token:
 * the 401 makes the client run it again. */
static void test_exec_plugin(void)
{
	char *tokpath = sibling("KUBECONFIG_TOKEN", "kubeconfig-token");
	if (!tokpath) {
		CHECK(tokpath != NULL);
		return;
	}
	char err[512];
	struct kubeconfig *tkc = kubeconfig_load(tokpath, NULL, err, sizeof(err));
	CHECK(tkc && tkc->token);
	if (!tkc || !tkc->token) {
		free(tokpath);
		kubeconfig_free(tkc);
		return;
	}
	char *script = xasprintf("%s/plugin.sh", tmpdir);
	FILE *f = fopen(script, "w");
	fprintf(f, "#!/bin/sh\n"
		   "n=$(cat \"$DIR/count\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$DIR/count\"\n"
		   "tok=%s; [ $n = 1 ] && tok=wrong-token\n"
		   "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
		   "\"ExecCredential\",\"status\":{\"token\":\"%%s\"}}' \"$tok\"\n",
		   tkc->token);
	fclose(f);
	chmod(script, 0700);
	unsigned char *ca64 = xmalloc(4 * ((tkc->ca_len + 2) / 3) + 1);
	EVP_EncodeBlock(ca64, (const unsigned char *)tkc->ca_pem, (int)tkc->ca_len);
	char *cfg = xasprintf("%s/exec-kubeconfig", tmpdir);
	f = fopen(cfg, "w");
	fprintf(f, "apiVersion: v1\nkind: Config\n"
		   "clusters:\n- name: c\n  cluster:\n    server: %s\n    certificate-authority-data: %s\n"
		   "users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
		   "      command: ./plugin.sh\n      env: [{name: DIR, value: '%s'}]\n"
		   "      interactiveMode: Never\n"
		   "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
		   tkc->server, ca64, tmpdir);
	fclose(f);
	struct kube *k = client(cfg, NULL);
	check_get_ns(k, 200);
	check_get_ns(k, 200);
	kube_close(k);
	char *count = xasprintf("%s/count", tmpdir), *n = NULL;
	size_t len;
	CHECK_INT(kubeconfig_read_file(count, 64, &n, &len), 0);
	CHECK_STR(n, "2\n"); /* the bad token, then the good one, then cached */
	free(n);
	free(count);
	free(cfg);
	free(ca64);
	free(script);
	free(tokpath);
	kubeconfig_free(tkc);
}

/* A client that cannot reach the server: a transport error, not a hang. */
static void test_unreachable(void)
{
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(admin_path, NULL, err, sizeof(err));
	free(kc->server);
	kc->server = xstrdup("https://127.0.0.1:1");
	struct kube *k = kube_new(&loop, kc, NULL);
	struct res r = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "Namespace", .name = "default"};
	kube_get(k, &ref, on_done, &r);
	wait_res(&r);
	CHECK_INT(r.error, -ECONNREFUSED);
	CHECK(strstr(r.message, "discovery of apiVersion \"v1\": GET /api/v1: ") == r.message);
	fprintf(stderr, "  unreachable: %s\n", r.message);
	res_reset(&r);
	kube_close(k);
}

/* With RUNBOAT_TEST_FAULTS=1 and RUNBOAT_CLUSTER_DIR (from DIR/env): the API
 * server is killed under a watch and restarted; the watch ends with a
 * transport error and the same client works again (new connection). */
static void test_apiserver_restart(struct kube *k)
{
	const char *faults = getenv("RUNBOAT_TEST_FAULTS");
	const char *dir = getenv("RUNBOAT_CLUSTER_DIR");
	if (!faults || strcmp(faults, "1") != 0 || !dir) {
		fprintf(stderr, "  (set RUNBOAT_TEST_FAULTS=1 and RUNBOAT_CLUSTER_DIR to kill the "
				"API server under a watch)\n");
		return;
	}
	check_get_ns(k, 200);
	struct watch_state w = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns};
	kube_watch(k, &ref, NULL, on_watch_event, on_done, &w);
	int started = 0;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	t.data = &started;
	uv_timer_start(&t, on_tick, 500, 0);
	loop_run_until(&loop, &started, 1);
	char *cmd = xasprintf("test/cluster/cluster.sh kill-apiserver '%s' KILL >/dev/null 2>&1", dir);
	CHECK_INT(system(cmd), 0);
	free(cmd);
	wait_res(&w.r);
	CHECK(w.r.error != 0 && w.r.error != -ECANCELED);
	fprintf(stderr, "  watch ended: %d %s\n", w.r.error, w.r.message);
	res_reset(&w.r);
	cmd = xasprintf("test/cluster/cluster.sh start-apiserver '%s' >/dev/null 2>&1", dir);
	CHECK_INT(system(cmd), 0);
	free(cmd);
	check_get_ns(k, 200);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

/* ---- connection faults through the proxy ---- */

static void on_stop_timer(uv_timer_t *t)
{
	*(int *)t->data = 1;
	uv_stop(t->loop);
}

/* Runs the loop until *counter >= target or ms elapsed; true if reached. */
static bool wait_for(int *counter, int target, uint64_t ms)
{
	int expired = 0;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	t.data = &expired;
	uv_timer_start(&t, on_stop_timer, ms, 0);
	while (*counter < target && !expired)
		loop_run_until(&loop, counter, target);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return *counter >= target;
}

static void pause_ms(uint64_t ms)
{
	int never = 0;
	wait_for(&never, 1, ms);
}

static int upstream_port(void)
{
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(admin_path, NULL, err, sizeof(err));
	const char *colon = kc ? strrchr(kc->server, ':') : NULL;
	int port = colon ? atoi(colon + 1) : 0;
	kubeconfig_free(kc);
	return port;
}

/* A client of the API server through proxy p. */
static struct kube *proxied(struct fproxy *p, const struct kube_options *o)
{
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(admin_path, NULL, err, sizeof(err));
	free(kc->server);
	kc->server = xasprintf("https://127.0.0.1:%d", p->port);
	return kube_new(&loop, kc, o);
}

/* Starts r's clock; the caller then starts the call with on_done, r. */
static struct res *fresh(struct res *r)
{
	res_reset(r);
	r->t0 = now_ms();
	return r;
}

static int admin_get_status(const char *name)
{
	struct res r = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns,
			       .name = name};
	kube_get(admin, &ref, on_done, &r);
	wait_res(&r);
	int st = r.status;
	res_reset(&r);
	return st;
}

/* The quiet-spell failure, in seconds: calls and a watch share the API
 * server; the server closes the idle call connection (as it does after 90 s
 * without requests, here the proxy closes it); the next PATCH must take a
 * new connection, not ride the watch's (libcurl 7.88 attaches it there when
 * one connection cache holds both: the PATCH then waits "with 0 bytes
 * received" until its timeout, or reads watch events as "HTTP/0.9"). */
static void idle_close_beside_watch(bool http2)
{
	struct fproxy p;
	CHECK_INT(fproxy_start(&loop, &p, upstream_port()), 0);
	struct kube_options o = {.qps = -1, .timeout_ms = 8000, .http2 = http2};
	struct kube *k = proxied(&p, &o);
	struct res r = {0};
	json_t *cm = configmap("quiet", "quiet", http2 ? "h2" : "h1");
	struct kube_write_opts wo = {.field_manager = "runboat-test", .force = true};
	kube_apply(k, cm, &wo, on_done, fresh(&r));
	json_decref(cm);
	wait_res(&r);
	CHECK_INT(r.error, 0);
	int call_conns = p.accepted;

	struct watch_state w = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns};
	struct kube_watch_opts wopt = {.resource_version = "0",
				       .label_selector = http2 ? "quiet=h2" : "quiet=h1"};
	struct kube_call *wc = kube_watch(k, &ref, &wopt, on_watch_event, on_done, &w);
	CHECK(wait_for(&w.events, 1, 10000)); /* the ADDED of the existing one */
	CHECK_INT(p.accepted, call_conns + 1);
	/* a call while the watch runs (with HTTP/2 its answer marks the host
	 * "can multiplex" again in libcurl's connection cache) */
	struct kube_ref one = ref;
	one.name = "quiet";
	kube_get(k, &one, on_done, fresh(&r));
	wait_res(&r);
	CHECK_INT(r.status, 200);
	CHECK_INT(p.accepted, call_conns + 1);
	/* the server closes the idle call connections (FIN) */
	for (int id = 1; id <= call_conns; id++)
		fproxy_close_id(&p, id, false);
	pause_ms(200);

	json_t *mp = json_pack("{s:{s:s}}", "data", "k", "after the quiet spell");
	kube_patch(k, &one, KUBE_PATCH_MERGE, mp, NULL, on_done, fresh(&r)); /* not repeatable */
	json_decref(mp);
	wait_res(&r);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.status, 200);
	CHECK(r.took_ms < 3000);
	fprintf(stderr, "  %s: PATCH after the idle close: %d %s in %llu ms\n",
		http2 ? "HTTP/2" : "HTTP/1.1", r.status, r.message, (unsigned long long)r.took_ms);
	/* and the watch is untouched: it sees the change */
	CHECK(wait_for(&w.events, 2, 10000));
	CHECK(strstr(w.seen, "MODIFIED:quiet") != NULL);
	CHECK_INT(w.r.done, 0);
	kube_cancel(wc);
	wait_res(&w.r);
	CHECK_INT(w.r.error, -ECANCELED);
	res_reset(&w.r);
	res_reset(&r);
	kube_close(k);
	fproxy_stop(&p);
	pause_ms(50);
}

static void idle_close_beside_watch_h2(void) { idle_close_beside_watch(true); }
static void idle_close_beside_watch_h1(void) { idle_close_beside_watch(false); }

/* Silent drops (no FIN, no RST), resets, a slow first byte, a blackhole:
 * calls safe to repeat succeed, others fail fast and say whether they may
 * have been applied. */
static void faults(bool http2)
{
	struct fproxy p;
	CHECK_INT(fproxy_start(&loop, &p, upstream_port()), 0);
	struct kube_options o = {.qps = -1, .timeout_ms = 10000, .first_byte_timeout_ms = 1000,
				 .http2 = http2};
	struct kube *k = proxied(&p, &o);
	const char *mode = http2 ? "HTTP/2" : "HTTP/1.1";
	struct res r = {0};
	char name_a[32], name_b[32], name_c[32];
	snprintf(name_a, sizeof(name_a), "drop-a-%s", http2 ? "h2" : "h1");
	snprintf(name_b, sizeof(name_b), "drop-b-%s", http2 ? "h2" : "h1");
	snprintf(name_c, sizeof(name_c), "drop-c-%s", http2 ? "h2" : "h1");
	struct kube_write_opts wo = {.field_manager = "runboat-test", .force = true};
	json_t *cm = configmap(name_a, "drop", "1");
	kube_apply(k, cm, &wo, on_done, fresh(&r));
	wait_res(&r);
	CHECK_INT(r.error, 0);
	char uid[64];
	snprintf(uid, sizeof(uid), "%s", jstr(r.body, "metadata.uid") ? jstr(r.body, "metadata.uid") : "");

	/* apply after a silent drop: repeated on a new connection */
	fproxy_silence_all(&p);
	json_object_set_new(json_object_get(cm, "data"), "k", json_string("again"));
	kube_apply(k, cm, &wo, on_done, fresh(&r));
	wait_res(&r);
	CHECK_INT(r.error, 0);
	CHECK(r.took_ms >= 900 && r.took_ms < 4000);
	fprintf(stderr, "  %s: apply after a silent drop: %d in %llu ms\n", mode, r.status,
		(unsigned long long)r.took_ms);

	/* create after a silent drop: not repeated, maybe applied (it was
	 * not: the request never left the proxy) */
	fproxy_silence_all(&p);
	json_t *cb = configmap(name_b, "drop", "1");
	kube_create(k, cb, NULL, on_done, fresh(&r));
	json_decref(cb);
	wait_res(&r);
	if (r.error == 0) {
		/* the connection had been idle for a second or more by then (a
		 * loaded machine): the create avoided it and went on a new one */
		CHECK_INT(admin_get_status(name_b), 200);
	} else {
		CHECK_INT(r.error, -ETIMEDOUT);
		CHECK_INT(r.maybe_applied, 1);
		CHECK_INT(r.transient, 1);
		CHECK(r.took_ms < 3000);
		CHECK_INT(admin_get_status(name_b), 404);
	}

	/* idempotent merge patch, test-guarded JSON patch, delete with a
	 * precondition: each after a silent drop */
	fproxy_silence_all(&p);
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = ns,
			       .name = name_a};
	json_t *mp = json_pack("{s:{s:s}}", "data", "k", "merged");
	struct kube_write_opts idem = {.idempotent = true};
	kube_patch(k, &ref, KUBE_PATCH_MERGE, mp, &idem, on_done, fresh(&r));
	json_decref(mp);
	wait_res(&r);
	CHECK_INT(r.status, 200);
	fproxy_silence_all(&p);
	json_t *jp = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "op", "test", "path",
			       "/data/k", "value", "merged", "op", "replace", "path", "/data/k",
			       "value", "tested");
	kube_patch(k, &ref, KUBE_PATCH_JSON, jp, NULL, on_done, fresh(&r));
	json_decref(jp);
	wait_res(&r);
	CHECK_INT(r.status, 200);
	CHECK_STR(jstr(r.body, "data.k"), "tested");

	/* a slow first byte on the next connection (the TLS handshake waits):
	 * cut, then repeated */
	fproxy_silence_all(&p);
	p.delay_conns = 1;
	p.delay_first_ms = 3000;
	kube_get(k, &ref, on_done, fresh(&r));
	wait_res(&r);
	CHECK_INT(r.status, 200);
	CHECK(r.took_ms >= 900 && r.took_ms < 3000);

	/* reset during the TLS handshake: a get is repeated; a create was not
	 * sent at all, so it is not maybe applied */
	fproxy_silence_all(&p);
	p.reset_conns = 1;
	p.reset_after = 0;
	kube_get(k, &ref, on_done, fresh(&r));
	wait_res(&r);
	CHECK_INT(r.status, 200);
	/* the idle connections closed (FIN): the create needs a new one */
	for (int id = 1; id <= p.accepted; id++)
		fproxy_close_id(&p, id, false);
	pause_ms(100);
	p.reset_conns = 1;
	p.reset_after = 0;
	json_t *cc = configmap(name_c, "drop", "1");
	kube_create(k, cc, NULL, on_done, fresh(&r));
	json_decref(cc);
	wait_res(&r);
	CHECK(r.error != 0);
	CHECK_INT(r.maybe_applied, 0);
	CHECK_INT(r.transient, 1);
	fprintf(stderr, "  %s: create, handshake reset: %d %s\n", mode, r.error, r.message);
	CHECK_INT(admin_get_status(name_c), 404);

	/* a delete with its precondition after a silent drop */
	fproxy_silence_all(&p);
	struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
	dopt.uid = uid;
	kube_delete(k, &ref, &dopt, on_done, fresh(&r));
	wait_res(&r);
	CHECK_INT(r.status, 200);
	CHECK_INT(admin_get_status(name_a), 404);

	/* a blackhole: bounded attempts, within the call's timeout */
	p.blackhole = true;
	fproxy_silence_all(&p);
	kube_get(k, &ref, on_done, fresh(&r));
	wait_res(&r);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK(r.took_ms < 10500);
	CHECK(strstr(r.message, "attempts)") != NULL);
	fprintf(stderr, "  %s: blackhole: %s (%llu ms)\n", mode, r.message,
		(unsigned long long)r.took_ms);
	json_decref(cm);
	res_reset(&r);
	kube_close(k);
	fproxy_stop(&p);
	pause_ms(50);
}

static void faults_h1(void) { faults(false); }
static void faults_h2(void) { faults(true); }

static void apiserver_restart(void) { test_apiserver_restart(admin); }
static void discovery(void) { test_discovery(admin); }
static void create_list_deletecollection(void) { test_create_list(admin); }
static void apply_patch_delete(void) { test_apply_patch_delete(admin); }
static void watch(void) { test_watch(admin); }
static void pod_log(void) { test_pod_log(admin); test_pod_log_raw(admin); }

int main(void)
{
	admin_path = getenv("RUNBOAT_TEST_KUBECONFIG");
	if (!admin_path || !*admin_path) {
		fprintf(stderr, "skipped: no cluster (set RUNBOAT_TEST_KUBECONFIG)\n");
		return 0;
	}
	uv_loop_init(&loop);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	snprintf(ns, sizeof(ns), "kube-live-%06x", (unsigned)rand() & 0xffffff);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/runboat-live-XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	struct kube_options o = {.qps = 200, .burst = 400};
	admin = client(admin_path, &o);
	test_namespace(admin, true);
	RUN(test_http2);
	RUN(discovery);
	RUN(create_list_deletecollection);
	RUN(apply_patch_delete);
	RUN(watch);
	RUN(pod_log);
	RUN(test_token_and_rbac);
	RUN(test_exec_plugin);
	RUN(test_unreachable);
	RUN(idle_close_beside_watch_h2);
	RUN(idle_close_beside_watch_h1);
	RUN(faults_h1);
	RUN(faults_h2);
	RUN(apiserver_restart);
	test_namespace(admin, false);
	kube_close(admin);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	free(cmd);
	return UNIT_DONE();
}
