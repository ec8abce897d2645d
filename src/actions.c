#include "actions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build_render.h"
#include "config.h"
#include "index.h"
#include "kube.h"
#include "list.h"
#include "log.h"
#include "util.h"

#define FIELD_MANAGER "runboat"

struct op;
typedef void (*op_step_cb)(struct op *op, const struct kube_result *res);

/* One chain of calls for one build. */
struct op {
	struct actions *x;
	struct list link; /* in actions.ops */
	struct kube_call *call;
	char name[BUILD_NAME_MAX + 1];
	char deployment_name[254];
	bool deploy;
	enum action_kind kind;
	enum deploy_step step;
	enum build_init_status to;
	op_step_cb on_result; /* runs when the current call completes */
	json_t *objects;      /* to apply in turn */
	size_t next_obj;
	op_step_cb after_apply;
	json_t *kinds;        /* the cleanup: kinds to delete by label */
	size_t kind_index;
	bool test_guarded;    /* a JSON patch with a test op: 409/422 means the
	                       * index is behind, not that the change is invalid */
	char sent_rv[32];     /* the resourceVersion a patch was based on */
	char stale_rv[32];
	char message[512];
	bool transient, maybe_applied, behind;
	bool started; /* an init-status patch that scaled up too */
};

struct actions {
	struct actions_deps d;
	actions_done_cb done;
	void *data;
	struct list ops; /* struct op */
	size_t n_ops;
	bool closing;
};

/* s, or "" when NULL. */
static const char *str0(const char *s)
{
	return s ? s : "";
}

struct actions *actions_new(const struct actions_deps *d, actions_done_cb done, void *data)
{
	struct actions *x = xcalloc(1, sizeof *x);
	x->d = *d;
	x->done = done;
	x->data = data;
	list_init(&x->ops);
	return x;
}

size_t actions_in_flight(const struct actions *x)
{
	return x->n_ops;
}

static struct op *op_new(struct actions *x, const char *name)
{
	struct op *op = xcalloc(1, sizeof *op);
	op->x = x;
	snprintf(op->name, sizeof op->name, "%s", name);
	list_push(&x->ops, &op->link);
	x->n_ops++;
	return op;
}

static void op_free(struct op *op)
{
	struct actions *x = op->x;
	list_remove(&op->link);
	x->n_ops--;
	json_decref(op->objects);
	json_decref(op->kinds);
	free(op);
	if (x->closing && !x->n_ops)
		free(x);
}

static void report(struct op *op, bool failed)
{
	struct action_result r = {
		.name = op->name, .deploy = op->deploy, .kind = op->kind, .step = op->step,
		.to = op->to, .error = failed ? -EIO : 0, .transient = failed && op->transient,
		.maybe_applied = failed && op->maybe_applied, .behind = failed && op->behind,
		.message = failed ? op->message : "",
		.stale_rv = op->stale_rv, .started = !failed && op->started,
	};
	op->x->done(&r, op->x->data);
}

/* Ends the chain, reporting its outcome. */
static void op_end(struct op *op, bool failed)
{
	report(op, failed);
	op_free(op);
}

/* Is a failed call worth repeating? As the client says (no answer, 5xx,
 * 429, 408, 409), and also a JSON patch whose test failed: the index was
 * behind, not wrong. */
static bool transient(const struct op *op, const struct kube_result *res)
{
	if (op->test_guarded && (res->status == 409 || res->status == 422))
		return true;
	return kube_result_transient(res);
}

/* Records why a call failed; true if it did. */
static bool failed(struct op *op, const struct kube_result *res, const char *what)
{
	if (res->error == 0)
		return false;
	const char *why = res->message ? res->message : strerror(-res->error);
	snprintf(op->message, sizeof op->message, "%s failed: %s", what, why);
	op->transient = transient(op, res);
	/* only the reconciler's init-status patches wait for the index
	 * (the cleanup's finalizer patch is planned without that hold) */
	op->behind = op->test_guarded && op->kind == ACTION_INIT_STATUS && !op->deploy &&
		     (res->status == 409 || res->status == 422);
	op->maybe_applied = res->maybe_applied;
	/* the controller logs the outcome once (retried or refused for good),
	 * with this message: one line per failure, not two */
	log_debug("build %s: %s", op->name, op->message);
	return true;
}

static void on_call_done(const struct kube_result *res, void *data)
{
	struct op *op = data;
	op->call = NULL;
	if (op->x->closing || res->error == -ECANCELED) {
		if (op->x->closing) {
			op_free(op);
			return;
		}
		snprintf(op->message, sizeof op->message, "cancelled");
		op_end(op, true);
		return;
	}
	op->on_result(op, res);
}

/* Starts the op's next call; a NULL call (client closing) ends it. */
static void op_call(struct op *op, struct kube_call *call, op_step_cb next)
{
	op->on_result = next;
	op->call = call;
	if (!call) {
		snprintf(op->message, sizeof op->message, "the Kubernetes client is closing");
		op_end(op, true);
	}
}

/* ---- applying a list of objects in turn ---- */

static void apply_next(struct op *op, const struct kube_result *res);

static void apply_all(struct op *op, op_step_cb after)
{
	op->next_obj = 0;
	op->after_apply = after;
	static const struct kube_result ok = {0};
	apply_next(op, &ok);
}

static void apply_next(struct op *op, const struct kube_result *res)
{
	if (res->error) {
		const json_t *obj = json_array_get(op->objects, op->next_obj - 1);
		char what[320];
		snprintf(what, sizeof what, "applying %s %s",
			 str0(json_string_value(json_object_get(obj, "kind"))),
			 str0(json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"))));
		failed(op, res, what);
		op->after_apply(op, res);
		return;
	}
	if (op->next_obj >= json_array_size(op->objects)) {
		op->after_apply(op, res);
		return;
	}
	const json_t *obj = json_array_get(op->objects, op->next_obj++);
	struct kube_write_opts wo = {.field_manager = FIELD_MANAGER, .force = true};
	op_call(op, kube_apply(op->x->d.kube, obj, &wo, on_call_done, op), apply_next);
}

static void end_after_apply(struct op *op, const struct kube_result *res)
{
	op_end(op, res->error != 0);
}

/* ---- patches of the Deployment ---- */

/* Patches the build's Deployment (patch stolen). A merge patch touches only
 * what it names, so the controller-manager's status updates in between do
 * not conflict with it; a JSON patch may test what it changes. */
static struct kube_call *patch_deployment(struct op *op, const struct build *b,
					  enum kube_patch_type type, json_t *patch)
{
	struct kube_ref ref = {.api_version = "apps/v1", .kind = "Deployment",
			       .namespace = op->x->d.cfg->kubernetes.namespace,
			       .name = b->deployment_name};
	snprintf(op->sent_rv, sizeof op->sent_rv, "%s", b->resource_version);
	op->test_guarded = type == KUBE_PATCH_JSON;
	/* every patch here sets absolute values or is guarded by a test:
	 * repeating it after a broken connection is harmless */
	struct kube_write_opts wo = {.idempotent = true};
	struct kube_call *call = kube_patch(op->x->d.kube, &ref, type, patch, &wo, on_call_done, op);
	json_decref(patch);
	return call;
}

/* After a successful patch of the Deployment, remembers what it replaced
 * while the index has not caught up with it. */
static void patched(struct op *op, const struct kube_result *res)
{
	const struct build *b = index_find(op->x->d.idx, op->name);
	if (strcmp(str0(json_string_value(json_object_get(res->body, "kind"))), "Deployment") != 0)
		return;
	const char *rv = json_string_value(
		json_object_get(json_object_get(res->body, "metadata"), "resourceVersion"));
	if (b && rv && strcmp(rv, b->resource_version) != 0 &&
	    strcmp(op->sent_rv, b->resource_version) == 0)
		snprintf(op->stale_rv, sizeof op->stale_rv, "%s", b->resource_version);
}

static void patch_done(struct op *op, const struct kube_result *res)
{
	bool bad = failed(op, res, "patching the Deployment");
	if (!bad)
		patched(op, res);
	op_end(op, bad);
}

static int init_status(struct op *op, const struct build *b, const char *reason, bool start_too)
{
	/* a transition from what the controller saw: refused if the
	 * annotation changed meanwhile (a reset) */
	const char *path = "/metadata/annotations/runboat~1init-status";
	json_t *patch = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "op", "test", "path", path, "value",
				  build_init_status_str(b->init_status), "op", "replace", "path", path,
				  "value", build_init_status_str(op->to));
	if (reason)
		json_array_append_new(patch, json_pack("{s:s,s:s,s:s}", "op", "add", "path",
						       "/metadata/annotations/runboat~1reason",
						       "value", reason));
	/* deployed paused (kubefiles.c): from its initialization on, the
	 * build's Deployment is a plain one, in the same call */
	json_array_append_new(patch, json_pack("{s:s,s:s,s:b}", "op", "add", "path", "/spec/paused",
					       "value", 0));
	if (start_too && op->to == BUILD_INIT_SUCCEEDED) {
		/* the start that follows an initialization, in the same call
		 * (what scale_patch writes): one patch instead of two */
		char now[32];
		format_rfc3339((int64_t)time(NULL), now);
		json_array_append_new(patch, json_pack("{s:s,s:s,s:s}", "op", "add", "path",
						       "/metadata/annotations/runboat~1last-scaled",
						       "value", now));
		json_array_append_new(patch, json_pack("{s:s,s:s,s:i}", "op", "add", "path",
						       "/spec/replicas", "value", 1));
		op->started = true;
	}
	op_call(op, patch_deployment(op, b, KUBE_PATCH_JSON, patch), patch_done);
	return 0;
}

/* ---- start / stop ---- */

/* Scales to replicas and stamps last-scaled. reason: recorded in
 * runboat/reason when not NULL (a crash-looping build's stop); a start
 * drops a crash-looping stop's reason (the build gets another chance). */
static void scale_patch(struct op *op, int replicas, const char *reason, op_step_cb next)
{
	const struct build *b = index_find(op->x->d.idx, op->name);
	if (!b) {
		snprintf(op->message, sizeof op->message, "the build is gone");
		op_end(op, true);
		return;
	}
	char now[32];
	format_rfc3339((int64_t)time(NULL), now);
	json_t *patch = json_pack("{s:{s:{s:s}},s:{s:i}}", "metadata", "annotations",
				  BUILD_ANN_LAST_SCALED, now, "spec", "replicas", replicas);
	json_t *ann = json_object_get(json_object_get(patch, "metadata"), "annotations");
	if (replicas > 0) /* a paused Deployment would not make its pod */
		json_object_set_new(json_object_get(patch, "spec"), "paused", json_false());
	if (reason)
		json_object_set_new(ann, BUILD_ANN_REASON, json_string(reason));
	else if (replicas > 0 && b->reason && strcmp(b->reason, POLICY_CRASH_REASON) == 0)
		json_object_set_new(ann, BUILD_ANN_REASON, json_null());
	op_call(op, patch_deployment(op, b, KUBE_PATCH_MERGE, patch), next);
}

static void start_applied(struct op *op, const struct kube_result *res)
{
	if (res->error) {
		op_end(op, true);
		return;
	}
	scale_patch(op, 1, NULL, patch_done);
}

static void stop_scaled(struct op *op, const struct kube_result *res)
{
	if (failed(op, res, "scaling down")) {
		op_end(op, true);
		return;
	}
	patched(op, res);
	apply_all(op, end_after_apply);
}

/* ---- reset and the cleanup ---- */

static struct kube_call *delete_jobs(struct op *op, const char *kind)
{
	char sel[160];
	snprintf(sel, sizeof sel, "%s=%s,%s=%s", BUILD_LABEL, op->name, BUILD_LABEL_JOB_KIND, kind);
	struct kube_ref ref = {.api_version = "batch/v1", .kind = "Job",
			       .namespace = op->x->d.cfg->kubernetes.namespace};
	struct kube_list_opts lo = {.label_selector = sel};
	struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
	dopt.propagation = "Background";
	return kube_delete_collection(op->x->d.kube, &ref, &lo, &dopt, on_call_done, op);
}

static void reset_jobs_deleted(struct op *op, const struct kube_result *res)
{
	if (failed(op, res, "deleting the initialization jobs")) {
		op_end(op, true);
		return;
	}
	apply_all(op, end_after_apply);
}

static void delete_done(struct op *op, const struct kube_result *res)
{
	/* already gone is as good as deleted */
	op_end(op, res->status != 404 && failed(op, res, "deleting"));
}

static void clean_finalizer_removed(struct op *op, const struct kube_result *res)
{
	bool bad = res->status != 404 && failed(op, res, "removing the finalizer");
	if (!bad)
		log_info("build %s: undeployed", op->name);
	op_end(op, bad);
}

static void clean_got_deployment(struct op *op, const struct kube_result *res);

static void clean_delete_next(struct op *op, const struct kube_result *res)
{
	struct actions *x = op->x;
	if (res->error && res->status != 404 && res->error != -ENOENT &&
	    failed(op, res, "deleting the build's objects")) {
		op_end(op, true);
		return;
	}
	const char *ns = x->d.cfg->kubernetes.namespace;
	if (op->kind_index < json_array_size(op->kinds)) {
		json_t *k = json_array_get(op->kinds, op->kind_index++);
		char sel[128];
		snprintf(sel, sizeof sel, "%s=%s", BUILD_LABEL, op->name);
		struct kube_ref ref = {.api_version = json_string_value(json_object_get(k, "apiVersion")),
				       .kind = json_string_value(json_object_get(k, "kind")),
				       .namespace = ns};
		struct kube_list_opts lo = {.label_selector = sel};
		struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
		dopt.propagation = "Background";
		op_call(op, kube_delete_collection(x->d.kube, &ref, &lo, &dopt, on_call_done, op),
			clean_delete_next);
		return;
	}
	/* everything else is gone: let the Deployment go */
	struct kube_ref ref = {.api_version = "apps/v1", .kind = "Deployment", .namespace = ns,
			       .name = op->deployment_name};
	op_call(op, kube_get(x->d.kube, &ref, on_call_done, op), clean_got_deployment);
}

/* Removes our finalizer, if the finalizers are still what was read. */
static void clean_got_deployment(struct op *op, const struct kube_result *res)
{
	if (res->status == 404) {
		op_end(op, false);
		return;
	}
	if (failed(op, res, "reading the Deployment")) {
		op_end(op, true);
		return;
	}
	json_t *meta = json_object_get(res->body, "metadata");
	json_t *current = json_object_get(meta, "finalizers");
	const struct build *b = index_find(op->x->d.idx, op->name);
	if (!b || !json_is_array(current)) {
		op_end(op, false);
		return;
	}
	json_t *rest = json_array();
	size_t i;
	json_t *f;
	json_array_foreach(current, i, f)
	{
		if (!json_is_string(f) || strcmp(json_string_value(f), BUILD_FINALIZER) != 0)
			json_array_append(rest, f);
	}
	json_t *patch = json_pack("[{s:s,s:s,s:O},{s:s,s:s,s:o}]", "op", "test", "path",
				  "/metadata/finalizers", "value", current, "op", "replace", "path",
				  "/metadata/finalizers", "value", rest);
	op_call(op, patch_deployment(op, b, KUBE_PATCH_JSON, patch), clean_finalizer_removed);
}

/* ---- starting an action ---- */

static int render_into(struct op *op, const struct build *b, enum kubefiles_mode mode, char *err,
		       size_t errlen)
{
	json_t *objects = build_render(op->x->d.cfg, op->x->d.kubefiles, mode, b->name, &b->commit,
				       err, errlen);
	if (!objects)
		return -EINVAL;
	if (!op->objects)
		op->objects = json_array();
	json_array_extend(op->objects, objects);
	json_decref(objects);
	return 0;
}

int actions_run(struct actions *x, const struct action *a, char *err, size_t errlen)
{
	const struct build *b = a->b;
	struct op *op = op_new(x, b->name);
	op->kind = a->kind;
	op->to = a->to;
	snprintf(op->deployment_name, sizeof op->deployment_name, "%s", b->deployment_name);
	int rc = 0;
	switch (a->kind) {
	case ACTION_INIT_STATUS: {
		bool start_too = false;
		if (a->start_too) {
			json_t *start = build_render(x->d.cfg, x->d.kubefiles, KUBEFILES_START, b->name,
						     &b->commit, err, errlen);
			start_too = start && json_array_size(start) == 0;
			json_decref(start);
		}
		return init_status(op, b, a->reason, start_too);
	}
	case ACTION_INITIALIZE: {
		/* what deployment mode made besides the Deployment is applied
		 * again, so that a deploy cut short (or made by a runboat that
		 * was restarted since) is completed; not when it is known applied */
		json_t *deploy = build_render(x->d.cfg, x->d.kubefiles, KUBEFILES_DEPLOYMENT, b->name,
					      &b->commit, err, errlen);
		json_t *init = deploy ? build_render(x->d.cfg, x->d.kubefiles, KUBEFILES_INITIALIZE,
						     b->name, &b->commit, err, errlen)
				      : NULL;
		if (!init) {
			json_decref(deploy);
			rc = -EINVAL;
			break;
		}
		json_t *rest = build_render_without_deployment(deploy);
		json_decref(deploy);
		/* what initialize mode renders as deployment mode did (the
		 * default kubefiles' PVC, ConfigMaps and Secret) is applied once */
		op->objects = json_array();
		if (!a->rest_applied)
			json_array_extend(op->objects, rest);
		build_render_add_new(op->objects, init, rest);
		json_decref(rest);
		json_decref(init);
		apply_all(op, end_after_apply);
		break;
	}
	case ACTION_START:
		if ((rc = render_into(op, b, KUBEFILES_START, err, errlen)) == 0)
			apply_all(op, start_applied);
		break;
	case ACTION_STOP:
		if ((rc = render_into(op, b, KUBEFILES_STOP, err, errlen)) == 0)
			scale_patch(op, 0, a->reason, stop_scaled);
		break;
	case ACTION_RESET: {
		op->objects = build_render_deployment(x->d.cfg, x->d.kubefiles, b->name, &b->commit,
						      b->created_ms ? b->created_ms : b->created * 1000,
						      err, errlen);
		if (!op->objects) {
			rc = -EINVAL;
			break;
		}
		op_call(op, delete_jobs(op, "initialize"), reset_jobs_deleted);
		break;
	}
	case ACTION_UNDEPLOY: {
		struct kube_ref ref = {.api_version = "apps/v1", .kind = "Deployment",
				       .namespace = x->d.cfg->kubernetes.namespace,
				       .name = b->deployment_name};
		struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
		dopt.propagation = "Background";
		dopt.uid = b->uid[0] ? b->uid : NULL;
		op_call(op, kube_delete(x->d.kube, &ref, &dopt, on_call_done, op), delete_done);
		break;
	}
	case ACTION_CLEAN_KILL_INIT:
		op_call(op, delete_jobs(op, "initialize"), delete_done);
		break;
	case ACTION_CLEAN_RETRY:
		op_call(op, delete_jobs(op, "cleanup"), delete_done);
		break;
	case ACTION_CLEAN_SCALE_DOWN:
		scale_patch(op, 0, NULL, patch_done);
		break;
	case ACTION_CLEAN_APPLY:
		if ((rc = render_into(op, b, KUBEFILES_CLEANUP, err, errlen)) == 0)
			apply_all(op, end_after_apply);
		break;
	case ACTION_CLEAN_DELETE: {
		op->kinds = build_render_cleanup_kinds(x->d.cfg, x->d.kubefiles, &b->commit);
		static const struct kube_result ok = {0};
		clean_delete_next(op, &ok);
		break;
	}
	case ACTION_CLEANUP_FAILED:
	case ACTION_WANT_DROPPED:
		snprintf(err, errlen, "%s needs no call", action_kind_str(a->kind));
		rc = -EINVAL;
		break;
	}
	if (rc)
		op_free(op); /* never started: no report */
	return rc;
}

/* ---- deploy ---- */

static void deploy_done(struct op *op, const struct kube_result *res)
{
	op_end(op, res->error != 0);
}

int actions_deploy(struct actions *x, const char *name, const struct build_commit *cm,
		   int64_t created_ms, char *err, size_t errlen)
{
	json_t *objects =
		build_render_deployment(x->d.cfg, x->d.kubefiles, name, cm, created_ms, err, errlen);
	if (!objects)
		return -EINVAL;
	json_t *deployment = json_array_get(objects, 0);
	if (strcmp(str0(json_string_value(json_object_get(deployment, "kind"))), "Deployment") != 0) {
		snprintf(err, errlen, "deployment mode renders no Deployment");
		json_decref(objects);
		return -EINVAL;
	}
	struct op *op = op_new(x, name);
	op->deploy = true;
	op->step = DEPLOY_DEPLOYMENT;
	op->objects = json_pack("[O]", deployment);
	json_decref(objects);
	apply_all(op, deploy_done);
	return 0;
}

int actions_deploy_rest(struct actions *x, const struct build *b, char *err, size_t errlen)
{
	json_t *objects = build_render(x->d.cfg, x->d.kubefiles, KUBEFILES_DEPLOYMENT, b->name,
				       &b->commit, err, errlen);
	if (!objects)
		return -EINVAL;
	struct op *op = op_new(x, b->name);
	op->deploy = true;
	op->step = DEPLOY_REST;
	op->objects = build_render_without_deployment(objects);
	json_decref(objects);
	apply_all(op, deploy_done);
	return 0;
}

void actions_free(struct actions *x)
{
	if (!x)
		return;
	x->closing = true;
	if (!x->n_ops) {
		free(x);
		return;
	}
	struct op *op, *tmp;
	list_each_safe(op, tmp, &x->ops, link)
	{
		if (op->call)
			kube_cancel(op->call);
	}
}
