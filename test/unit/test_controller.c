/* The controller (controller.h) with a real config, index and kubefiles
 * (the repository's) against a fake Kubernetes client (kube_fake.h): its
 * feed lists the Deployments, Jobs and Pods through the fake (answered here
 * with Lists as the apiserver sends them) before anything acts. Contracts
 * only the controller holds: a deploy's caller is told once the
 * Deployment's apply is answered (0), or -EIO on a refusal for good with
 * nothing more applied; a transient failure of a start is retried after the
 * backoff and the start is told 0 once it went through; a start of an
 * unknown build is -ENOENT; leadership lost cancels what is in flight,
 * tells the waiting callers -EAGAIN and makes no further calls; and
 * controller_free runs every waiting callback with -ECANCELED before it
 * returns. Waits are for events (bounded only against a hang), never
 * wall-clock races: the caller's waits (deploy_wait_ms, action_wait_ms)
 * are far longer than any test. */
#include "controller.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "config.h"
#include "index.h"
#include "k8s_objects.h"
#include "kube_fake.h"
#include "kubefiles.h"
#include "unit.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"
#define SHA2 "89abcdef0123456789abcdef0123456789abcdef"
#define B1 "b0123456789abcdef0123456789abcdef"

static uv_loop_t loop;
static struct kube k;
static struct config *cfg;
static struct index *idx;
static struct kubefiles_cache *kc;
static struct controller *ctl;

struct told {
	int n;
	int error;
	char message[512];
};

static void on_told(int error, const char *message, void *data)
{
	struct told *t = data;
	t->n++;
	t->error = error;
	snprintf(t->message, sizeof t->message, "%s", message ? message : "(null)");
}

/* The calls still waiting that the test is about: not the informers'
 * watches (they wait for the whole test) nor the Events' creates. */
static struct kube_call *next_call(void)
{
	for (struct list *l = k.calls.next; l != &k.calls; l = l->next) {
		struct kube_call *c = list_entry(l, struct kube_call, link);
		if (!c->cancelled && strcmp(c->verb, "watch") != 0 && strcmp(c->verb, "create") != 0)
			return c;
	}
	return NULL;
}

static size_t count_verb(const char *verb)
{
	size_t n = 0;
	for (struct list *l = k.calls.next; l != &k.calls; l = l->next) {
		struct kube_call *c = list_entry(l, struct kube_call, link);
		if (!c->cancelled && strcmp(c->verb, verb) == 0)
			n++;
	}
	return n;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One turn of the loop that never blocks: what is due runs (UV_RUN_ONCE
 * could block in its poll until the next timer, the 60 s resync, after
 * running a due one), then a millisecond's pause. */
static void turn(void)
{
	uv_run(&loop, UV_RUN_NOWAIT);
	struct timespec ts = {0, 1000000};
	nanosleep(&ts, NULL);
}

/* Runs the loop until a call the test is about waits (or, 20 s on, gives
 * up: a hang, not a race). */
static struct kube_call *wait_call(void)
{
	uint64_t end = mono_ms() + 20000;
	struct kube_call *c;
	while (!(c = next_call()) && mono_ms() < end)
		turn();
	CHECK(c != NULL);
	return c;
}

/* A few turns of the loop: what is ready (the pass) runs. */
static void settle(void)
{
	for (int i = 0; i < 10; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
}

static void answer_list(const char *kind, json_t *items)
{
	struct kube_call *c = wait_call();
	if (!c)
		abort();
	CHECK_STR(c->verb, "list");
	CHECK_STR(c->kind, kind);
	CHECK_STR(c->ns, "ns");
	json_t *l = json_pack("{s:s+,s:s,s:{s:s},s:o}", "kind", kind, "List", "apiVersion",
			      strcmp(kind, "Deployment") == 0 ? "apps/v1"
			      : strcmp(kind, "Job") == 0      ? "batch/v1"
							      : "v1",
			      "metadata", "resourceVersion", "100", "items", items);
	char *text = json_dumps(l, JSON_COMPACT);
	fake_kube_answer_list(c, text);
	free(text);
	json_decref(l);
}

/* Creates and starts the controller (a [[repos]] entry for 'oca/.*', the
 * repository's kubefiles), then syncs its feed: the Deployments listed are
 * deployments (a JSON array, stolen), no Jobs, no Pods; the three
 * informers then watch (those calls wait until teardown). */
static void setup_with(json_t *deployments, json_t *jobs);
/* the controller's first retry delay (then up to twice that) */
static uint64_t retry_ms = 20;
/* [build] kubefiles, when not the repository's */
static const char *test_kubefiles;
/* more of the configuration (whole tables) */
static const char *test_extra_toml;

static void setup(json_t *deployments)
{
	setup_with(deployments, json_array());
}

/* The same with the Jobs listed (a JSON array, stolen). */
static void setup_with(json_t *deployments, json_t *jobs)
{
	uv_loop_init(&loop);
	fake_kube_init(&k, &loop);
	char err[512] = "";
	char *toml = xasprintf("[kubernetes]\nnamespace = \"ns\"\n[build]\n"
			       "domain = \"runboat.test\"\n%s%s%s%s[[repos]]\nrepo = 'oca/.*'\n"
			       "image = \"ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest\"\n",
			       test_kubefiles ? "kubefiles = \"" : "", test_kubefiles ? test_kubefiles : "",
			       test_kubefiles ? "\"\n" : "", test_extra_toml ? test_extra_toml : "");
	cfg = config_load_string(toml, "t.toml", NULL, err, sizeof err);
	free(toml);
	if (!cfg) {
		fprintf(stderr, "config: %s\n", err);
		abort();
	}
	idx = index_new();
	kc = kubefiles_cache_new();
	struct controller_deps d = {.loop = &loop, .cfg = cfg, .idx = idx, .kube = &k,
				    .kubefiles = kc};
	struct controller_opts o = {.retry_ms = retry_ms, .retry_max_ms = 2 * retry_ms,
				    .deploy_wait_ms = 600000, .action_wait_ms = 600000};
	ctl = controller_new(&d, &o);
	controller_start(ctl);
	const char *why = NULL;
	CHECK(!controller_ready(ctl, &why));
	answer_list("Deployment", deployments);
	answer_list("Job", jobs);
	answer_list("Pod", json_array());
	settle();
	CHECK(controller_ready(ctl, &why));
	CHECK_INT(count_verb("watch"), 3);
}

static void teardown(void)
{
	controller_free(ctl);
	/* the feed's watches, the Events' creates: cancelled, ended next turn */
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(fake_kube_pending(&k), 0);
	fake_kube_close(&k);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	kubefiles_cache_free(kc);
	index_free(idx);
	config_free(cfg);
}

static const struct build_commit CM = {"oca/mis-builder", "16.0", 0, SHA};
static const struct build_commit CM2 = {"oca/mis-builder", "16.0", 0, SHA2};

static void test_deploy(void)
{
	setup(json_array());
	struct told t = {0};
	char err[256] = "";
	CHECK_INT(controller_deploy(ctl, &CM, on_told, &t, err, sizeof err), 0);
	CHECK(strncmp(err, "deploying as b", 14) == 0);
	CHECK_INT(t.n, 0); /* never from inside the call */
	/* the Deployment first, alone */
	struct kube_call *c = wait_call();
	if (!c)
		abort();
	CHECK_STR(c->verb, "apply");
	CHECK_STR(c->kind, "Deployment");
	char name[64];
	snprintf(name, sizeof name, "%.*s", (int)(strlen(c->name) - strlen("-odoo")), c->name);
	CHECK(strcmp(c->name + strlen(name), "-odoo") == 0);
	CHECK_STR(err + strlen("deploying as "), name);
	settle();
	CHECK_INT(t.n, 0); /* not before the apply is answered */
	CHECK(next_call() == c);
	CHECK_INT(count_verb("apply"), 1);
	/* a second ask of the same commit waits for the same outcome */
	struct told t2 = {0};
	CHECK_INT(controller_deploy(ctl, &CM, on_told, &t2, err, sizeof err), 0);
	settle();
	CHECK_INT(count_verb("apply"), 1);
	fake_kube_answer(c, 200, "{}");
	CHECK_INT(t.n, 1);
	CHECK_INT(t.error, 0);
	char want[128];
	snprintf(want, sizeof want, "deployed as %s", name);
	CHECK_STR(t.message, want);
	CHECK_INT(t2.n, 1);
	CHECK_INT(t2.error, 0);
	/* asked again once applied: nothing to do */
	CHECK_INT(controller_deploy(ctl, &CM, on_told, &t, err, sizeof err), 1);
	CHECK(strstr(err, want) != NULL); /* "already deployed as NAME" */
	/* (the build's other objects follow: test_actions checks them) a
	 * Deployment of another commit refused for good: -EIO, and nothing of
	 * that build is asked after */
	struct told t3 = {0};
	CHECK_INT(controller_deploy(ctl, &CM2, on_told, &t3, err, sizeof err), 0);
	char name2[300];
	snprintf(name2, sizeof name2, "%s-odoo", err + strlen("deploying as "));
	struct kube_call *c2 = NULL;
	uint64_t end = mono_ms() + 20000;
	for (;;) {
		c2 = NULL;
		for (struct list *l = k.calls.next; l != &k.calls; l = l->next) {
			struct kube_call *x = list_entry(l, struct kube_call, link);
			if (!x->cancelled && strcmp(x->name, name2) == 0)
				c2 = x;
		}
		if (c2 || mono_ms() >= end)
			break;
		turn();
	}
	CHECK(c2 != NULL);
	if (!c2)
		abort();
	CHECK_STR(c2->verb, "apply");
	CHECK_STR(c2->kind, "Deployment");
	fake_kube_answer(c2, 422, "{\"reason\":\"Invalid\",\"message\":\"spec.x: Required value\"}");
	CHECK_INT(t3.n, 1);
	CHECK_INT(t3.error, -EIO);
	CHECK(strstr(t3.message, "spec.x: Required value") != NULL);
	settle();
	/* nothing of the refused build's is asked after */
	char prefix[300];
	snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(name2) - strlen("-odoo")), name2);
	for (struct list *l = k.calls.next; l != &k.calls; l = l->next) {
		struct kube_call *x = list_entry(l, struct kube_call, link);
		CHECK(strncmp(x->name, prefix, strlen(prefix)) != 0);
	}
	teardown();
}

static json_t *stopped_b1(void)
{
	json_t *l = json_array();
	json_array_append_new(l, deployment(B1, "7", 0, SHA));
	return l;
}

/* The start's call: a scale of B1's Deployment (whatever verb the executor
 * uses for it). */
static struct kube_call *start_call(void)
{
	struct kube_call *c = wait_call();
	if (!c)
		abort();
	CHECK_STR(c->kind, "Deployment");
	CHECK_STR(c->name, B1 "-odoo");
	return c;
}

/* What c sends, as text, but for the wall-clock second of the scale
 * (BUILD_ANN_LAST_SCALED, checked to be there): a retry may be a second
 * later. Owned by the caller. */
static char *sent_text(const struct kube_call *c)
{
	if (!c->sent)
		return xstrdup("");
	json_t *s = json_deep_copy(c->sent);
	json_t *ann = json_object_get(json_object_get(s, "metadata"), "annotations");
	const char *when = json_string_value(json_object_get(ann, BUILD_ANN_LAST_SCALED));
	CHECK(when != NULL && strlen(when) == strlen("2021-11-28T11:00:00Z"));
	json_object_del(ann, BUILD_ANN_LAST_SCALED);
	char *text = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(s);
	return text;
}

static void test_start_retried(void)
{
	setup(stopped_b1());
	CHECK(index_find(idx, B1) != NULL);
	settle();
	CHECK(next_call() == NULL); /* a stopped, initialized build: nothing to do */
	char err[256] = "";
	struct told t = {0};
	CHECK_INT(controller_start_build(ctl, "bnosuchbuild", on_told, &t, err, sizeof err), -ENOENT);
	CHECK_STR(err, "no build named bnosuchbuild");
	CHECK_INT(controller_start_build(ctl, B1, on_told, &t, err, sizeof err), 0);
	CHECK_INT(t.n, 0);
	struct kube_call *c = start_call();
	char verb[24];
	snprintf(verb, sizeof verb, "%s", c->verb);
	char *sent = sent_text(c);
	CHECK(strstr(sent, "\"replicas\":1") != NULL);
	fake_kube_answer(c, 503, "{\"message\":\"etcd is slow\"}");
	CHECK_INT(t.n, 0); /* transient: not told, retried */
	settle();
	/* after the backoff (20-40 ms), the same call again */
	c = start_call();
	CHECK_STR(c->verb, verb);
	char *again = sent_text(c);
	CHECK_STR(again, sent);
	free(again);
	/* a failure with no answer at all: retried the same way */
	fake_kube_fail(c, -ETIMEDOUT, true);
	CHECK_INT(t.n, 0);
	c = start_call();
	CHECK_STR(c->verb, verb);
	again = sent_text(c);
	CHECK_STR(again, sent);
	free(again);
	free(sent);
	fake_kube_answer(c, 200, "{}");
	CHECK_INT(t.n, 1);
	CHECK_INT(t.error, 0);
	CHECK_STR(t.message, "started");
	settle();
	CHECK(next_call() == NULL);
	teardown();
}

static void test_leadership_lost(void)
{
	setup(stopped_b1());
	char err[256] = "";
	struct told t = {0}, td = {0};
	CHECK_INT(controller_start_build(ctl, B1, on_told, &t, err, sizeof err), 0);
	struct kube_call *c = start_call();
	CHECK(!c->cancelled);
	CHECK_INT(controller_deploy(ctl, &CM2, on_told, &td, err, sizeof err), 0);
	int cancels = k.n_cancels;
	controller_set_active(ctl, false, "standby: leader is other-pod");
	/* the waiting callers are told to ask again, the call in flight is
	 * cancelled */
	CHECK_INT(t.n, 1);
	CHECK_INT(t.error, -EAGAIN);
	CHECK(strstr(t.message, "standby: leader is other-pod") != NULL);
	CHECK_INT(td.n, 1);
	CHECK_INT(td.error, -EAGAIN);
	CHECK(k.n_cancels > cancels);
	const char *why = NULL;
	CHECK(!controller_leading(ctl, &why));
	CHECK_STR(why, "standby: leader is other-pod");
	int calls = k.n_calls;
	settle();
	CHECK(next_call() == NULL); /* the cancelled one ended, nothing new */
	/* every action answers -EAGAIN with why, and nothing is called */
	struct told t2 = {0};
	CHECK_INT(controller_start_build(ctl, B1, on_told, &t2, err, sizeof err), -EAGAIN);
	CHECK(strstr(err, "standby: leader is other-pod") != NULL);
	CHECK_INT(controller_deploy(ctl, &CM, on_told, &t2, err, sizeof err), -EAGAIN);
	settle();
	CHECK_INT(k.n_calls, calls);
	CHECK_INT(t2.n, 0);
	CHECK_INT(t.n, 1);
	/* the feed goes on (the index stays current for reads): the Deployment
	 * now says the build is to be initialized again; a standby does not act
	 * on it */
	struct kube_call *w = NULL;
	for (struct list *l = k.calls.next; l != &k.calls; l = l->next) {
		struct kube_call *x = list_entry(l, struct kube_call, link);
		if (strcmp(x->verb, "watch") == 0 && strcmp(x->kind, "Deployment") == 0)
			w = x;
	}
	CHECK(w != NULL);
	if (!w)
		abort();
	json_t *dep = deployment(B1, "8", 0, SHA);
	json_object_set_new(json_object_get(json_object_get(dep, "metadata"), "annotations"),
			    BUILD_ANN_INIT_STATUS, json_string("todo"));
	w->on_event("MODIFIED", dep, w->data);
	json_decref(dep);
	const struct build *b = index_find(idx, B1);
	CHECK(b != NULL && b->init_status == BUILD_INIT_TODO);
	settle();
	CHECK_INT(k.n_calls, calls);
	CHECK(next_call() == NULL);
	/* made active again: a full pass at once from what the index says */
	controller_set_active(ctl, true, NULL);
	CHECK(controller_leading(ctl, &why));
	struct kube_call *c2 = wait_call();
	CHECK(c2 != NULL && strncmp(c2->name, B1, strlen(B1)) == 0);
	teardown();
}

static void test_free_tells_waiters(void)
{
	setup(stopped_b1());
	char err[256] = "";
	struct told ts = {0}, td = {0}, tq = {0};
	CHECK_INT(controller_start_build(ctl, B1, on_told, &ts, err, sizeof err), 0);
	start_call(); /* in flight, unanswered */
	CHECK_INT(controller_deploy(ctl, &CM2, on_told, &td, err, sizeof err), 0);
	CHECK_INT(controller_deploy(ctl, &CM2, on_told, &tq, err, sizeof err), 0);
	controller_free(ctl);
	CHECK_INT(ts.n, 1);
	CHECK_INT(ts.error, -ECANCELED);
	CHECK_INT(td.n, 1);
	CHECK_INT(td.error, -ECANCELED);
	CHECK_INT(tq.n, 1);
	CHECK_INT(tq.error, -ECANCELED);
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(fake_kube_pending(&k), 0);
	CHECK_INT(ts.n, 1); /* once */
	fake_kube_close(&k);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	kubefiles_cache_free(kc);
	index_free(idx);
	config_free(cfg);
}

/* The watch of kind the feed has open. */
static struct kube_call *watch_of(const char *kind)
{
	for (struct list *l = k.calls.next; l != &k.calls; l = l->next) {
		struct kube_call *x = list_entry(l, struct kube_call, link);
		if (!x->cancelled && strcmp(x->verb, "watch") == 0 && strcmp(x->kind, kind) == 0)
			return x;
	}
	abort();
}

/* B1 at resourceVersion rv with init-status started. */
static json_t *initializing_b1(const char *rv)
{
	json_t *dep = deployment(B1, rv, 0, SHA);
	json_object_set_new(json_object_get(json_object_get(dep, "metadata"), "annotations"),
			    BUILD_ANN_INIT_STATUS, json_string("started"));
	return dep;
}

/* An init-status patch refused by its test op (the index behind the
 * Deployment) is not a failure with a backoff and a note: it is planned
 * again as soon as the informer shows the Deployment changed, or, should
 * nothing new show, after the usual delay. */
static void test_init_status_behind(void)
{
	json_t *deps = json_array();
	json_array_append_new(deps, initializing_b1("7"));
	json_t *jobs = json_array();
	json_t *job = json_pack("{s:s,s:s,s:{s:s+,s:s,s:s,s:s,s:s,s:{s:s,s:s}},s:{s:i,s:i}}",
				"kind", "Job", "apiVersion", "batch/v1", "metadata", "name", B1,
				"-initialize", "namespace", "ns", "uid", "0f9e8d7c-6b5a-4321-9876-543210fedcba",
				"resourceVersion", "9", "creationTimestamp", "2021-11-28T10:21:00Z",
				"labels", BUILD_LABEL, B1, BUILD_LABEL_JOB_KIND, "initialize", "status",
				"active", 0, "succeeded", 1);
	CHECK(job != NULL);
	json_array_append_new(jobs, job);
	retry_ms = 300;
	setup_with(deps, jobs);
	retry_ms = 20;
	struct kube_call *c = wait_call();
	CHECK_STR(c->verb, "patch");
	CHECK_STR(c->name, B1 "-odoo");
	CHECK_INT(c->patch_type, KUBE_PATCH_JSON);
	char *first = json_dumps(c->sent, JSON_COMPACT);
	CHECK(strstr(first, "\"op\":\"test\"") && strstr(first, "\"value\":\"started\"") &&
	      strstr(first, "\"value\":\"succeeded\""));
	static const char REFUSED[] = "{\"reason\":\"Invalid\",\"message\":\"testing value failed\"}";
	fake_kube_answer(c, 422, REFUSED);
	settle();
	CHECK(next_call() == NULL); /* held: the index shows what the patch was planned from */
	const struct build *b = index_find(idx, B1);
	CHECK(b && !b->note); /* no "failed, retrying" on the build */
	/* the informer shows the Deployment changed: planned again at once */
	json_t *dep = initializing_b1("8");
	json_object_set_new(json_object_get(json_object_get(dep, "metadata"), "annotations"),
			    BUILD_ANN_LAST_SCALED, json_string("2021-11-28T12:00:00Z"));
	struct kube_call *w = watch_of("Deployment");
	w->on_event("MODIFIED", dep, w->data);
	json_decref(dep);
	settle();
	c = next_call();
	CHECK(c != NULL);
	if (!c)
		abort();
	CHECK_STR(c->verb, "patch");
	CHECK_INT(c->patch_type, KUBE_PATCH_JSON);
	/* refused again, and this time nothing new shows: after the delay */
	fake_kube_answer(c, 422, REFUSED);
	settle();
	CHECK(next_call() == NULL);
	c = wait_call();
	CHECK_STR(c->verb, "patch");
	CHECK_INT(c->patch_type, KUBE_PATCH_JSON);
	b = index_find(idx, B1);
	CHECK(b && !b->note);
	free(first);
	fake_kube_answer(c, 200, "{\"kind\":\"Deployment\",\"metadata\":{\"resourceVersion\":\"10\"}}");
	settle();
	/* then only the init log's calls (no pod cached: listed), no patch */
	while ((c = next_call()) != NULL) {
		CHECK(strcmp(c->verb, "patch") != 0);
		fake_kube_answer(c, 404, "{\"reason\":\"NotFound\",\"message\":\"x\"}");
		settle();
	}
	teardown();
}

static void write_file(const char *dir, const char *file, const char *content)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	FILE *f = fopen(path, "w");
	if (!f || fputs(content, f) < 0 || fclose(f) != 0)
		abort();
}

/* Kubefiles whose deployment mode is the Deployment alone: the deploy's
 * second step has nothing to apply, so its result comes from inside the
 * call that starts it; the build must still be initialized (the
 * controller's books were kept before the call, not after). */
static void test_deploy_nothing_else(void)
{
	char dir[] = "/tmp/rb-test-ctl-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	write_file(dir, "deployment.yaml",
		   "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: \"{{build_name}}-odoo\"\n"
		   "spec:\n  selector: {matchLabels: {app: odoo}}\n  template:\n"
		   "    metadata: {labels: {app: odoo}}\n"
		   "    spec:\n      containers: [{name: odoo, image: \"{{image_name}}:{{image_tag}}\"}]\n");
	write_file(dir, "initialize.yaml",
		   "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: \"{{build_name}}-initialize\"\n"
		   "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
		   "      containers: [{name: init, image: busybox}]\n");
	write_file(dir, "cleanup.yaml",
		   "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: \"{{build_name}}-cleanup\"\n"
		   "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
		   "      containers: [{name: clean, image: busybox}]\n");
	test_kubefiles = dir;
	setup(json_array());
	test_kubefiles = NULL;
	struct told t = {0};
	char err[256] = "";
	CHECK_INT(controller_deploy(ctl, &CM, on_told, &t, err, sizeof err), 0);
	struct kube_call *c = wait_call();
	CHECK_STR(c->verb, "apply");
	CHECK_STR(c->kind, "Deployment");
	json_t *dep = json_deep_copy(c->sent);
	fake_kube_answer(c, 200, "{}");
	CHECK_INT(t.n, 1);
	CHECK_INT(t.error, 0);
	/* the informer shows the new Deployment */
	json_t *md = json_object_get(dep, "metadata");
	json_object_set_new(md, "resourceVersion", json_string("11"));
	json_object_set_new(md, "uid", json_string("8d3c7c1e-5d0e-4b0a-9d6e-1c2b3a4d5e70"));
	json_object_set_new(md, "creationTimestamp", json_string("2021-11-28T10:20:30Z"));
	struct kube_call *w = watch_of("Deployment");
	w->on_event("ADDED", dep, w->data);
	json_decref(dep);
	/* its turn comes: the init Job, alone (nothing else in deployment mode) */
	c = wait_call();
	CHECK_STR(c->verb, "apply");
	CHECK_STR(c->kind, "Job");
	fake_kube_answer(c, 200, "{}");
	settle();
	CHECK(next_call() == NULL);
	teardown();
	char path[256];
	static const char *const files[] = {"deployment.yaml", "initialize.yaml", "cleanup.yaml"};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* Whether c is a call in flight about build (its objects' names start with
 * it), not a watch or an Event's create. */
static bool is_call_of(const struct kube_call *c, const char *build)
{
	return !c->cancelled && strcmp(c->verb, "watch") != 0 && strcmp(c->verb, "create") != 0 &&
	       strncmp(c->name, build, strlen(build)) == 0;
}

/* The first call in flight about build, or NULL. */
static struct kube_call *call_of(const char *build)
{
	for (struct list *l = k.calls.next; l != &k.calls; l = l->next) {
		struct kube_call *c = list_entry(l, struct kube_call, link);
		if (is_call_of(c, build))
			return c;
	}
	return NULL;
}

static size_t calls_of(const char *build)
{
	size_t n = 0;
	for (struct list *l = k.calls.next; l != &k.calls; l = l->next)
		n += is_call_of(list_entry(l, struct kube_call, link), build);
	return n;
}

/* Answers every call about build in flight with 200, until none is left
 * (its objects are applied one after the other). */
static void answer_all_of(const char *build)
{
	uint64_t end = mono_ms() + 20000;
	struct kube_call *c;
	while ((c = call_of(build)) && mono_ms() < end) {
		fake_kube_answer(c, 200, "{}");
		for (int i = 0; i < 5; i++)
			turn();
	}
}

/* A todo build of PR pr whose push was accepted just now. */
static json_t *todo_build(const char *name, int pr)
{
	json_t *d = deployment(name, "5", 0, SHA);
	json_t *ann = json_object_get(json_object_get(d, "metadata"), "annotations");
	json_object_set_new(ann, BUILD_ANN_INIT_STATUS, json_string("todo"));
	json_object_set_new(ann, BUILD_ANN_PR, json_sprintf("%d", pr));
	json_object_del(ann, BUILD_ANN_LAST_SCALED);
	time_t now = time(NULL);
	char when[40];
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S.000Z", gmtime(&now));
	json_object_set_new(ann, BUILD_ANN_CREATED, json_string(when));
	return d;
}

/* Objects first, through the controller's books: while a new build's
 * Deployment is being applied, and then while its other objects are queued
 * and applied, only 2 of 3 young todo builds initialize (max_initializing
 * 10); the third goes once the last object is applied. */
static void test_objects_first(void)
{
	test_extra_toml = "[limits]\nmax_initializing = 10\nmax_started = 10\n";
	setup(json_array());
	test_extra_toml = NULL;
	struct told t = {0};
	char err[256] = "";
	CHECK_INT(controller_deploy(ctl, &CM, on_told, &t, err, sizeof err), 0);
	char name[256];
	snprintf(name, sizeof name, "%s", err + strlen("deploying as "));
	struct kube_call *dep = wait_call();
	CHECK_STR(dep->kind, "Deployment");
	json_t *sent = json_deep_copy(dep->sent);
	static const char *const todo[] = {"b1111111111111111111111111111111a",
					   "b2222222222222222222222222222222b",
					   "b3333333333333333333333333333333c"};
	struct kube_call *w = watch_of("Deployment");
	for (int i = 0; i < 3; i++) {
		json_t *d = todo_build(todo[i], i + 1);
		w->on_event("ADDED", d, w->data);
		json_decref(d);
	}
	for (int i = 0; i < 50; i++)
		turn();
	/* the Deployment's apply unanswered: two initialize, the third waits */
	size_t busy = 0;
	for (int i = 0; i < 3; i++)
		busy += calls_of(todo[i]) > 0;
	CHECK_INT(busy, 2);
	const char *waiting = NULL;
	for (int i = 0; i < 3; i++)
		if (!calls_of(todo[i]))
			waiting = todo[i];
	/* answered: its other objects are queued until the informer shows it */
	fake_kube_answer(dep, 200, "{}");
	CHECK_INT(t.n, 1);
	for (int i = 0; i < 50; i++)
		turn();
	CHECK_INT(calls_of(waiting), 0);
	json_t *md = json_object_get(sent, "metadata");
	json_object_set_new(md, "resourceVersion", json_string("11"));
	json_object_set_new(md, "uid", json_string("8d3c7c1e-5d0e-4b0a-9d6e-1c2b3a4d5e70"));
	json_object_set_new(md, "creationTimestamp", json_string("2021-11-28T10:20:30Z"));
	w->on_event("ADDED", sent, w->data);
	json_decref(sent);
	for (int i = 0; i < 50; i++)
		turn();
	/* being applied: still waiting */
	CHECK(calls_of(name) > 0);
	CHECK_INT(calls_of(waiting), 0);
	/* the last of them applied: its turn comes */
	answer_all_of(name);
	uint64_t end = mono_ms() + 20000;
	while (!calls_of(waiting) && mono_ms() < end)
		turn();
	CHECK(calls_of(waiting) > 0);
	teardown();
}

int main(void)
{
	RUN(test_deploy);
	RUN(test_start_retried);
	RUN(test_leadership_lost);
	RUN(test_free_tells_waiters);
	RUN(test_init_status_behind);
	RUN(test_deploy_nothing_else);
	RUN(test_objects_first);
	return UNIT_DONE();
}
