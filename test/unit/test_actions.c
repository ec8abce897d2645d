/* The executor (actions.h) against a fake Kubernetes client (kube_fake.h),
 * with a real config, index and kubefiles (the repository's): for each
 * action and deploy, the chain of calls it makes and in which order, what
 * each call sends, and how its answers become the one report: success,
 * a refusal for good, a transient failure, a test-guarded patch that found
 * the index behind, an object already gone, an answer that may have been
 * applied; a patch seen before the index caught up (stale_rv); actions that
 * cannot start; and actions_free with chains in flight (no report after,
 * nothing leaked, the loop closes). */
#include "actions.h"

#include "build_render.h"
#include "config.h"
#include "index.h"
#include "kube_fake.h"
#include "kubefiles.h"
#include "unit.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"
#define NAME "b0123456789abcdef0123456789abcdef"
#define DEPLOYMENT NAME "-odoo"

static uv_loop_t loop;
static struct kube k;
static struct config *cfg;
static struct index *idx;
static struct kubefiles_cache *kc;
static struct actions *x;

static struct report {
	int n;
	bool deploy;
	enum action_kind kind;
	enum deploy_step step;
	enum build_init_status to;
	int error;
	bool transient, maybe_applied, started;
	char message[512];
	char stale_rv[32];
} rep;

static void on_done(const struct action_result *r, void *data)
{
	CHECK(data == &rep);
	rep.n++;
	CHECK_STR(r->name, NAME);
	rep.deploy = r->deploy;
	rep.kind = r->kind;
	rep.step = r->step;
	rep.to = r->to;
	rep.error = r->error;
	rep.transient = r->transient;
	rep.maybe_applied = r->maybe_applied;
	rep.started = r->started;
	snprintf(rep.message, sizeof rep.message, "%s", r->message ? r->message : "(null)");
	snprintf(rep.stale_rv, sizeof rep.stale_rv, "%s", r->stale_rv ? r->stale_rv : "(null)");
}

static const struct build_commit CM = {"oca/mis-builder", "16.0", 0, SHA};

/* The build in the index, at resourceVersion rv. */
static const struct build *put_build(const char *rv, enum build_init_status init)
{
	struct build *b = build_new(NAME, DEPLOYMENT, &CM, rv, "uid-1");
	b->init_status = init;
	b->desired_replicas = 1;
	b->created = 1638094830;
	b->has_finalizer = true;
	build_derive_status(b);
	index_upsert(idx, b);
	return index_find(idx, NAME);
}

static void setup(void)
{
	memset(&rep, 0, sizeof rep);
	uv_loop_init(&loop);
	fake_kube_init(&k, &loop);
	char err[256];
	cfg = config_default("ns", "runboat.test", err, sizeof err);
	if (!cfg)
		abort();
	idx = index_new();
	kc = kubefiles_cache_new();
	struct actions_deps d = {.cfg = cfg, .idx = idx, .kube = &k, .kubefiles = kc};
	x = actions_new(&d, on_done, &rep);
}

static void teardown(void)
{
	CHECK_INT(actions_in_flight(x), 0);
	actions_free(x);
	CHECK_INT(fake_kube_pending(&k), 0);
	fake_kube_close(&k);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	kubefiles_cache_free(kc);
	index_free(idx);
	config_free(cfg);
}

/* What mode renders for the build (the order the executor must follow). */
static json_t *rendered(enum kubefiles_mode mode)
{
	char err[256];
	json_t *l = build_render(cfg, kc, mode, NAME, &CM, err, sizeof err);
	if (!l) {
		fprintf(stderr, "render: %s\n", err);
		abort();
	}
	return l;
}

static const char *str_at(const json_t *o, const char *a, const char *b)
{
	const char *v = json_string_value(json_object_get(b ? json_object_get(o, a) : o, b ? b : a));
	return v ? v : "";
}

/* Answers 200 to the applies of every object of want except the
 * Deployments (want: what the mode renders), in order, checking each. */
static void answer_applies(const json_t *want, bool skip_deployment)
{
	size_t i;
	json_t *o;
	json_array_foreach(want, i, o)
	{
		if (skip_deployment && strcmp(str_at(o, "kind", NULL), "Deployment") == 0)
			continue;
		struct kube_call *c = fake_kube_next(&k);
		CHECK(c != NULL);
		if (!c)
			return;
		CHECK_STR(c->verb, "apply");
		CHECK(c->force);
		CHECK_STR(c->kind, str_at(o, "kind", NULL));
		CHECK_STR(c->name, str_at(o, "metadata", "name"));
		CHECK_INT(rep.n, 0);
		fake_kube_answer(c, 200, "{}");
	}
}

static void test_deploy(void)
{
	setup();
	char err[256] = "";
	CHECK_INT(actions_deploy(x, NAME, &CM, 1638094830123, err, sizeof err), 0);
	CHECK_INT(actions_in_flight(x), 1);
	CHECK_INT(rep.n, 0); /* never from inside the call that started it */
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "apply");
	CHECK_STR(c->kind, "Deployment");
	CHECK_STR(c->name, DEPLOYMENT);
	CHECK_STR(str_at(json_object_get(c->sent, "metadata"), "annotations", BUILD_ANN_CREATED),
		  "2021-11-28T10:20:30.123Z");
	fake_kube_answer(c, 201, "{}");
	CHECK_INT(fake_kube_pending(&k), 0); /* the Deployment only */
	CHECK_INT(rep.n, 1);
	CHECK(rep.deploy);
	CHECK_INT(rep.step, DEPLOY_DEPLOYMENT);
	CHECK_INT(rep.error, 0);
	CHECK_STR(rep.message, "");

	/* the rest: every other object of deployment mode, in order */
	memset(&rep, 0, sizeof rep);
	const struct build *b = put_build("5", BUILD_INIT_TODO);
	CHECK_INT(actions_deploy_rest(x, b, err, sizeof err), 0);
	json_t *want = rendered(KUBEFILES_DEPLOYMENT);
	CHECK(json_array_size(want) > 1);
	answer_applies(want, true);
	json_decref(want);
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.step, DEPLOY_REST);
	CHECK_INT(rep.error, 0);
	teardown();
}

static void test_apply_failures(void)
{
	setup();
	char err[256] = "";
	const struct build *b = put_build("5", BUILD_INIT_TODO);
	CHECK_INT(actions_deploy_rest(x, b, err, sizeof err), 0);
	/* the first apply fails with a 5xx: reported at once, transient, and
	 * maybe applied; nothing else is sent */
	struct kube_call *c = fake_kube_next(&k);
	char what[400];
	snprintf(what, sizeof what, "applying %s %s failed: ", c->kind, c->name);
	fake_kube_answer(c, 503, "{\"message\":\"etcd is slow\"}");
	CHECK_INT(fake_kube_pending(&k), 0);
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.error, -EIO);
	CHECK(rep.transient);
	CHECK(rep.maybe_applied);
	CHECK(strncmp(rep.message, what, strlen(what)) == 0);
	CHECK(strstr(rep.message, "etcd is slow") != NULL);
	/* a refusal for good */
	memset(&rep, 0, sizeof rep);
	CHECK_INT(actions_deploy_rest(x, b, err, sizeof err), 0);
	fake_kube_answer(fake_kube_next(&k), 422,
			 "{\"reason\":\"Invalid\",\"message\":\"spec.ports: Required value\"}");
	CHECK_INT(rep.n, 1);
	CHECK(!rep.transient);
	CHECK(!rep.maybe_applied);
	/* no answer at all */
	memset(&rep, 0, sizeof rep);
	CHECK_INT(actions_deploy_rest(x, b, err, sizeof err), 0);
	fake_kube_fail(fake_kube_next(&k), -ETIMEDOUT, true);
	CHECK(rep.transient);
	CHECK(rep.maybe_applied);
	teardown();
}

static void test_start_and_stop(void)
{
	setup();
	char err[256] = "";
	const struct build *b = put_build("5", BUILD_INIT_SUCCEEDED);
	struct action a = {.kind = ACTION_START, .b = b};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	json_t *want = rendered(KUBEFILES_START);
	answer_applies(want, false);
	json_decref(want);
	/* then the scale up, a merge patch that can be repeated */
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "patch");
	CHECK_STR(c->kind, "Deployment");
	CHECK_STR(c->name, DEPLOYMENT);
	CHECK_STR(c->ns, "ns");
	CHECK_INT(c->patch_type, KUBE_PATCH_MERGE);
	CHECK(c->idempotent);
	CHECK_INT(json_integer_value(json_object_get(json_object_get(c->sent, "spec"), "replicas")), 1);
	/* a Deployment still paused (deployed so) would make no pod */
	CHECK(json_is_false(json_object_get(json_object_get(c->sent, "spec"), "paused")));
	CHECK(str_at(json_object_get(c->sent, "metadata"), "annotations", BUILD_ANN_LAST_SCALED)[0]);
	/* the index still shows version 5 while the answer is version 9 */
	fake_kube_answer(c, 200, "{\"kind\":\"Deployment\",\"metadata\":{\"resourceVersion\":\"9\"}}");
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.kind, ACTION_START);
	CHECK_INT(rep.error, 0);
	CHECK_STR(rep.stale_rv, "5");

	/* stop, with a reason: the scale down first, then stop mode */
	memset(&rep, 0, sizeof rep);
	b = put_build("9", BUILD_INIT_SUCCEEDED);
	a = (struct action){.kind = ACTION_STOP, .b = b, .reason = POLICY_CRASH_REASON};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "patch");
	CHECK_INT(json_integer_value(json_object_get(json_object_get(c->sent, "spec"), "replicas")), 0);
	/* a stop leaves it unpaused: its ReplicaSet scales down */
	CHECK(json_object_get(json_object_get(c->sent, "spec"), "paused") == NULL);
	CHECK_STR(str_at(json_object_get(c->sent, "metadata"), "annotations", BUILD_ANN_REASON),
		  POLICY_CRASH_REASON);
	/* the index caught up already: nothing stale */
	fake_kube_answer(c, 200, "{\"kind\":\"Deployment\",\"metadata\":{\"resourceVersion\":\"9\"}}");
	want = rendered(KUBEFILES_STOP);
	answer_applies(want, false);
	json_decref(want);
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.kind, ACTION_STOP);
	CHECK_INT(rep.error, 0);
	CHECK_STR(rep.stale_rv, "");

	/* the scale down refused: stop mode is not applied */
	memset(&rep, 0, sizeof rep);
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	fake_kube_answer(fake_kube_next(&k), 403, "{\"reason\":\"Forbidden\",\"message\":\"no\"}");
	CHECK_INT(fake_kube_pending(&k), 0);
	CHECK_INT(rep.n, 1);
	CHECK(strncmp(rep.message, "scaling down failed: ", 21) == 0);
	teardown();
}

static void test_init_status(void)
{
	setup();
	char err[256] = "";
	const struct build *b = put_build("5", BUILD_INIT_STARTED);
	struct action a = {.kind = ACTION_INIT_STATUS, .b = b, .to = BUILD_INIT_FAILED,
			   .reason = "the init job failed"};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "patch");
	CHECK_INT(c->patch_type, KUBE_PATCH_JSON);
	/* a transition from what the controller saw */
	CHECK_INT(json_array_size(c->sent), 4);
	CHECK_STR(str_at(json_array_get(c->sent, 0), "op", NULL), "test");
	CHECK_STR(str_at(json_array_get(c->sent, 0), "value", NULL),
		  build_init_status_str(BUILD_INIT_STARTED));
	CHECK_STR(str_at(json_array_get(c->sent, 1), "op", NULL), "replace");
	CHECK_STR(str_at(json_array_get(c->sent, 1), "value", NULL),
		  build_init_status_str(BUILD_INIT_FAILED));
	CHECK_STR(str_at(json_array_get(c->sent, 2), "value", NULL), "the init job failed");
	/* deployed paused: a plain Deployment from its initialization on */
	CHECK_STR(str_at(json_array_get(c->sent, 3), "op", NULL), "add");
	CHECK_STR(str_at(json_array_get(c->sent, 3), "path", NULL), "/spec/paused");
	CHECK(json_is_false(json_object_get(json_array_get(c->sent, 3), "value")));
	/* the test failed: the index was behind, worth another pass */
	fake_kube_answer(c, 422, "{\"reason\":\"Invalid\",\"message\":\"the test failed\"}");
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.kind, ACTION_INIT_STATUS);
	CHECK_INT(rep.to, BUILD_INIT_FAILED);
	CHECK_INT(rep.error, -EIO);
	CHECK(rep.transient);

	/* todo -> started, without a reason: the unpause third */
	memset(&rep, 0, sizeof rep);
	b = put_build("6", BUILD_INIT_TODO);
	a = (struct action){.kind = ACTION_INIT_STATUS, .b = b, .to = BUILD_INIT_STARTED};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	c = fake_kube_next(&k);
	CHECK_INT(json_array_size(c->sent), 3);
	CHECK_STR(str_at(json_array_get(c->sent, 2), "path", NULL), "/spec/paused");
	CHECK(json_is_false(json_object_get(json_array_get(c->sent, 2), "value")));
	fake_kube_answer(c, 200, "{\"kind\":\"Deployment\",\"metadata\":{\"resourceVersion\":\"7\"}}");
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.error, 0);

	/* started -> succeeded with the start that follows, in one call:
	 * unpaused and scaled up */
	memset(&rep, 0, sizeof rep);
	b = put_build("7", BUILD_INIT_STARTED);
	a = (struct action){.kind = ACTION_INIT_STATUS, .b = b, .to = BUILD_INIT_SUCCEEDED,
			    .start_too = true};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	c = fake_kube_next(&k);
	CHECK_INT(json_array_size(c->sent), 5);
	CHECK_STR(str_at(json_array_get(c->sent, 2), "path", NULL), "/spec/paused");
	CHECK(json_is_false(json_object_get(json_array_get(c->sent, 2), "value")));
	CHECK_STR(str_at(json_array_get(c->sent, 3), "path", NULL),
		  "/metadata/annotations/runboat~1last-scaled");
	CHECK_STR(str_at(json_array_get(c->sent, 4), "path", NULL), "/spec/replicas");
	CHECK_INT(json_integer_value(json_object_get(json_array_get(c->sent, 4), "value")), 1);
	fake_kube_answer(c, 200, "{\"kind\":\"Deployment\",\"metadata\":{\"resourceVersion\":\"8\"}}");
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.error, 0);
	CHECK(rep.started);
	teardown();
}

static void test_undeploy_and_reset(void)
{
	setup();
	char err[256] = "";
	const struct build *b = put_build("5", BUILD_INIT_SUCCEEDED);
	struct action a = {.kind = ACTION_UNDEPLOY, .b = b};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "delete");
	CHECK_STR(c->kind, "Deployment");
	CHECK_STR(c->name, DEPLOYMENT);
	CHECK_STR(c->uid, "uid-1");
	CHECK_STR(c->propagation, "Background");
	/* already gone is as good as deleted */
	fake_kube_answer(c, 404, "{\"reason\":\"NotFound\",\"message\":\"gone\"}");
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.error, 0);

	/* reset: the init jobs go, then deployment mode again, Deployment first */
	memset(&rep, 0, sizeof rep);
	a = (struct action){.kind = ACTION_RESET, .b = b};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "deletecollection");
	CHECK_STR(c->kind, "Job");
	CHECK_STR(c->selector, BUILD_LABEL "=" NAME "," BUILD_LABEL_JOB_KIND "=initialize");
	fake_kube_answer(c, 200, "{}");
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "apply");
	CHECK_STR(c->kind, "Deployment");
	/* as new: paused again until its next initialization */
	CHECK(json_is_true(json_object_get(json_object_get(c->sent, "spec"), "paused")));
	CHECK_INT(json_integer_value(json_object_get(json_object_get(c->sent, "spec"), "replicas")), 0);
	fake_kube_answer(c, 200, "{}");
	while ((c = fake_kube_next(&k))) {
		CHECK_STR(c->verb, "apply");
		CHECK(strcmp(c->kind, "Deployment") != 0);
		fake_kube_answer(c, 200, "{}");
	}
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.kind, ACTION_RESET);
	CHECK_INT(rep.error, 0);

	/* the jobs cannot be deleted: nothing applied */
	memset(&rep, 0, sizeof rep);
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	fake_kube_answer(fake_kube_next(&k), 500, "{\"message\":\"boom\"}");
	CHECK_INT(fake_kube_pending(&k), 0);
	CHECK_INT(rep.n, 1);
	CHECK(strstr(rep.message, "deleting the initialization jobs failed") != NULL);
	teardown();
}

static void test_clean_delete(void)
{
	setup();
	char err[256] = "";
	const struct build *b = put_build("5", BUILD_INIT_SUCCEEDED);
	struct action a = {.kind = ACTION_CLEAN_DELETE, .b = b};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	json_t *kinds = build_render_cleanup_kinds(cfg, kc, &CM);
	size_t i;
	json_t *kind;
	json_array_foreach(kinds, i, kind)
	{
		struct kube_call *c = fake_kube_next(&k);
		CHECK_STR(c->verb, "deletecollection");
		CHECK_STR(c->api_version, str_at(kind, "apiVersion", NULL));
		CHECK_STR(c->kind, str_at(kind, "kind", NULL));
		CHECK_STR(c->selector, BUILD_LABEL "=" NAME);
		/* a kind the server does not serve, or nothing there: fine */
		fake_kube_answer(c, i == 0 ? 404 : 200, "{}");
	}
	json_decref(kinds);
	/* then our finalizer, if the finalizers are what was read */
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "get");
	CHECK_STR(c->name, DEPLOYMENT);
	fake_kube_answer(c, 200, "{\"kind\":\"Deployment\",\"metadata\":{\"resourceVersion\":\"6\","
				 "\"finalizers\":[\"other/keep\",\"" BUILD_FINALIZER "\"]}}");
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "patch");
	CHECK_INT(c->patch_type, KUBE_PATCH_JSON);
	char *sent = json_dumps(c->sent, JSON_COMPACT);
	CHECK_STR(sent, "[{\"op\":\"test\",\"path\":\"/metadata/finalizers\",\"value\":[\"other/keep\","
			"\"" BUILD_FINALIZER "\"]},{\"op\":\"replace\",\"path\":\"/metadata/finalizers\","
			"\"value\":[\"other/keep\"]}]");
	free(sent);
	fake_kube_answer(c, 200, "{}");
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.kind, ACTION_CLEAN_DELETE);
	CHECK_INT(rep.error, 0);

	/* a deletion refused stops the chain */
	memset(&rep, 0, sizeof rep);
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	fake_kube_answer(fake_kube_next(&k), 403, "{\"message\":\"forbidden\"}");
	CHECK_INT(fake_kube_pending(&k), 0);
	CHECK_INT(rep.n, 1);
	CHECK(strstr(rep.message, "deleting the build's objects failed") != NULL);
	teardown();
}

static void test_cannot_start(void)
{
	setup();
	char err[256] = "";
	const struct build *b = put_build("5", BUILD_INIT_SUCCEEDED);
	struct action a = {.kind = ACTION_CLEANUP_FAILED, .b = b};
	CHECK_INT(actions_run(x, &a, err, sizeof err), -EINVAL);
	CHECK(strstr(err, "needs no call") != NULL);
	/* a commit the kubefiles refuse to render */
	struct build_commit bad = {"oca/mis-builder", "16.0", 0, "not-a-sha"};
	err[0] = '\0';
	CHECK_INT(actions_deploy(x, NAME, &bad, 0, err, sizeof err), -EINVAL);
	CHECK(err[0] != '\0');
	CHECK_INT(k.n_calls, 0);
	CHECK_INT(actions_in_flight(x), 0);
	CHECK_INT(rep.n, 0); /* never started: no report */
	teardown();
}

/* actions_free with chains in flight: each call is cancelled, no report
 * follows, and the executor is freed once they have ended. */
static void test_free_in_flight(void)
{
	setup();
	char err[256] = "";
	const struct build *b = put_build("5", BUILD_INIT_SUCCEEDED);
	struct action a = {.kind = ACTION_UNDEPLOY, .b = b};
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	a.kind = ACTION_START;
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	CHECK_INT(actions_deploy(x, NAME, &CM, 0, err, sizeof err), 0);
	CHECK_INT(actions_in_flight(x), 3);
	actions_free(x);
	CHECK_INT(k.n_cancels, 3);
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(fake_kube_pending(&k), 0);
	CHECK_INT(rep.n, 0);
	/* a fresh one for teardown */
	struct actions_deps d = {.cfg = cfg, .idx = idx, .kube = &k, .kubefiles = kc};
	x = actions_new(&d, on_done, &rep);
	/* a call cancelled by someone else (the client closing) is reported */
	CHECK_INT(actions_run(x, &a, err, sizeof err), 0);
	kube_cancel(fake_kube_next(&k));
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(rep.n, 1);
	CHECK_INT(rep.error, -EIO);
	CHECK_STR(rep.message, "cancelled");
	CHECK(!rep.transient);
	teardown();
}

int main(void)
{
	RUN(test_deploy);
	RUN(test_apply_failures);
	RUN(test_start_and_stop);
	RUN(test_init_status);
	RUN(test_undeploy_and_reset);
	RUN(test_clean_delete);
	RUN(test_cannot_start);
	RUN(test_free_in_flight);
	return UNIT_DONE();
}
