#include "controller.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "github_client.h"
#include "informer.h"
#include "kubefiles.h"
#include "log.h"
#include "strmap.h"
#include "util.h"

#define FIELD_MANAGER "runboat"
#define MAX_QUEUED_DEPLOYS 10000

/* What is in flight for one build (bits), so that a pass never asks the
 * same thing twice while Kubernetes has not answered yet. */
enum {
	F_DEPLOY = 1 << 6,   /* applying deployment mode for a new build */
	F_INIT = 1 << 0,     /* applying initialize mode */
	F_PATCH = 1 << 1,    /* an init-status patch */
	F_SCALE = 1 << 2,    /* start or stop */
	F_RESET = 1 << 3,
	F_UNDEPLOY = 1 << 4, /* the DELETE of the Deployment */
	F_CLEAN = 1 << 5,    /* a step of the cleaner */
};

struct flight {
	unsigned ops;
	uint64_t retry_after_ms; /* after a failure, leave the build alone until then */
	/* the resourceVersion a successful patch was based on: until the
	 * informer shows a newer Deployment, the index is behind our own
	 * change and the build is left alone */
	char stale_rv[32];
	bool cleanup_failed_logged;
	bool cleaned; /* finalizer removed: the Deployment is going, hands off */
	/* the initialize Job was created but the informer has not shown it
	 * yet: the build holds an initialization slot meanwhile */
	bool init_applied;
	bool stopping; /* a stop is in flight: it no longer counts as started */
};

struct controller {
	uv_loop_t *loop;
	const struct config *cfg;
	struct index *idx;
	struct kube *kube;
	const char *kube_error;
	struct github_client *github;
	struct kubefiles_cache *kubefiles;
	const struct build_links *links;
	struct controller_opts opts;

	struct informer *deployments, *jobs;
	bool synced;
	bool closing;

	uv_timer_t pass_timer, resync_timer, retry_timer;
	int open_handles;
	bool pass_scheduled;

	struct strmap flights; /* build name -> struct flight */
	struct strmap dirty;   /* build names to reconcile (value unused) */
	struct strmap retry;   /* build names to reconcile after a failure */
	struct strmap deploys; /* commit key -> struct deploying */
	struct op *ops;        /* every operation in flight */
	size_t n_ops;
	struct build_commit *queued; /* deploys asked before the sync */
	size_t n_queued;
	struct index_filter *queued_undeploys; /* undeploys asked before the sync */
	size_t n_queued_undeploys;
	bool sticky_done;
};

/* A commit being deployed: from the webhook until the informer shows its
 * Deployment, so that a redelivery in between does not deploy it twice. */
enum deploy_state { DEPLOY_QUEUED, DEPLOY_APPLYING, DEPLOY_APPLIED };

struct deploying {
	enum deploy_state state;
	uint64_t since_ms;
};

#define DEPLOY_FORGET_MS (10 * 60 * 1000)

/* ---- small helpers ---- */

static void schedule_pass(struct controller *c);

static struct flight *flight_of(struct controller *c, const char *name)
{
	struct flight *f = strmap_get(&c->flights, name);
	if (!f) {
		f = xcalloc(1, sizeof *f);
		strmap_put(&c->flights, name, f);
	}
	return f;
}

static bool busy(struct controller *c, const char *name, unsigned ops)
{
	struct flight *f = strmap_get(&c->flights, name);
	return f && ((f->ops & ops) || now_ms() < f->retry_after_ms);
}

/* Whether the index still shows b as it was before one of our patches. */
static bool behind_our_patch(struct controller *c, const struct build *b)
{
	struct flight *f = strmap_get(&c->flights, b->name);
	return f && f->stale_rv[0] && strcmp(f->stale_rv, b->resource_version) == 0;
}

static void on_retry(uv_timer_t *t);

static void flight_begin(struct controller *c, const char *name, unsigned op)
{
	flight_of(c, name)->ops |= op;
}

static void flight_end(struct controller *c, const char *name, unsigned op, bool failed)
{
	struct flight *f = strmap_get(&c->flights, name);
	if (!f)
		return;
	f->ops &= ~op;
	if (failed) {
		f->retry_after_ms = now_ms() + c->opts.retry_ms;
		strmap_put(&c->retry, name, (void *)1);
		if (!uv_is_active((uv_handle_t *)&c->retry_timer))
			uv_timer_start(&c->retry_timer, on_retry, c->opts.retry_ms + 10, 0);
	}
	strmap_put(&c->dirty, name, (void *)1);
	schedule_pass(c);
}

/* s, or "" when NULL (json_string_value of a missing key). */
static const char *str0(const char *s)
{
	return s ? s : "";
}

static void deploying_set(struct controller *c, const char *key, enum deploy_state state)
{
	struct deploying *d = strmap_get(&c->deploys, key);
	if (!d) {
		d = xcalloc(1, sizeof *d);
		strmap_put(&c->deploys, key, d);
	}
	d->state = state;
	d->since_ms = now_ms();
}

static void deploying_forget(struct controller *c, const char *key)
{
	free(strmap_del(&c->deploys, key));
}

static void now_rfc3339(char out[32])
{
	format_rfc3339((int64_t)time(NULL), out);
}

static char *commit_key(const struct build_commit *cm)
{
	char *k = xasprintf("%s\n%s\n%d\n%s", cm->repo, cm->target_branch, cm->pr, cm->git_commit);
	for (char *p = k; *p && *p != '\n'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return k;
}

static void post_status(struct controller *c, const struct build *b, const char *name,
			const struct build_commit *cm, const char *state, const char *description)
{
	if (!c->github)
		return;
	char *url = xasprintf("%s/builds/%s", c->links->base_url, b ? b->name : name);
	github_client_post_status(c->github, cm->repo, cm->git_commit, state, description, url);
	free(url);
}

/* ---- operations: one chain of Kubernetes calls for one build ---- */

struct op;
typedef void (*op_step_cb)(struct op *op, const struct kube_result *res);

struct op {
	struct controller *c;
	struct op *prev, *next;
	struct kube_call *call;
	char name[BUILD_NAME_MAX + 1];
	unsigned flag;        /* F_* held by this op, released at the end */
	op_step_cb step;      /* runs when the current call completes */
	json_t *objects;      /* objects to apply in turn */
	size_t next_obj;
	bool dry_run;
	op_step_cb after_apply;
	char *deploy_key;     /* a deploy: its commit key */
	struct build_commit commit; /* a deploy: strings owned below */
	char *strings[3];
	int kind_index;       /* the cleaner: which kind is being deleted */
	json_t *kinds;
	char *status_on_success[2]; /* a GitHub status to post when done: state, description */
	bool scale_after;           /* init succeeded: start (or stop) once recorded */
	char sent_rv[32];           /* the Deployment's resourceVersion in the index
	                             * when a patch of it was sent */
	controller_done_cb done;    /* an action asked through the API: told the outcome */
	void *done_data;
	char errmsg[256];           /* the last failure, for done */
};

static struct op *op_new(struct controller *c, const char *name, unsigned flag)
{
	struct op *op = xcalloc(1, sizeof *op);
	op->c = c;
	snprintf(op->name, sizeof op->name, "%s", name);
	op->flag = flag;
	op->next = c->ops;
	if (c->ops)
		c->ops->prev = op;
	c->ops = op;
	c->n_ops++;
	if (flag)
		flight_begin(c, name, flag);
	return op;
}

static void controller_maybe_free(struct controller *c);

/* Ends an operation; failed marks the build for a retry later. */
static void op_end(struct op *op, bool failed)
{
	struct controller *c = op->c;
	if (op->done) {
		controller_done_cb done = op->done;
		op->done = NULL;
		if (c->closing)
			done(-ECANCELED, "runboat is stopping", op->done_data);
		else if (failed)
			done(-EIO, op->errmsg[0] ? op->errmsg : "Kubernetes refused the change",
			     op->done_data);
		else
			done(0, "done", op->done_data);
	}
	if (op->prev)
		op->prev->next = op->next;
	else
		c->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	c->n_ops--;
	if (!c->closing) {
		if (op->flag)
			flight_end(c, op->name, op->flag, failed);
		if (op->deploy_key) {
			if (failed)
				deploying_forget(c, op->deploy_key);
			else
				deploying_set(c, op->deploy_key, DEPLOY_APPLIED);
		}
	}
	if (op->deploy_key && failed && !c->closing)
		free(strmap_del(&c->flights, op->name)); /* no build came of it */
	free(op->deploy_key);
	for (size_t i = 0; i < ARRAY_SIZE(op->strings); i++)
		free(op->strings[i]);
	free(op->status_on_success[0]);
	free(op->status_on_success[1]);
	json_decref(op->objects);
	json_decref(op->kinds);
	free(op);
	if (c->closing)
		controller_maybe_free(c);
}

static void on_op_done(const struct kube_result *res, void *data)
{
	struct op *op = data;
	op->call = NULL;
	if (op->c->closing || res->error == -ECANCELED) {
		op_end(op, true);
		return;
	}
	op->step(op, res);
}

/* Starts the op's next call; NULL call (client closing) ends it. */
static void op_call(struct op *op, struct kube_call *call, op_step_cb step)
{
	op->step = step;
	op->call = call;
	if (!call)
		op_end(op, true);
}

static bool op_failed(struct op *op, const struct kube_result *res, const char *what)
{
	if (res->error == 0)
		return false;
	log_warn("build %s: %s failed: %s", op->name, what,
		 res->message ? res->message : strerror(-res->error));
	snprintf(op->errmsg, sizeof op->errmsg, "%s failed: %s", what,
		 res->message ? res->message : strerror(-res->error));
	return true;
}

/* Applies op->objects in turn (server-side apply), then calls after_apply
 * with the last result (or the failing one). */
static void apply_next(struct op *op, const struct kube_result *res);

static void apply_start(struct op *op, bool dry_run, op_step_cb after)
{
	op->next_obj = 0;
	op->dry_run = dry_run;
	op->after_apply = after;
	static const struct kube_result ok = {0};
	apply_next(op, &ok);
}

static void apply_next(struct op *op, const struct kube_result *res)
{
	if (res->error) {
		const json_t *obj = json_array_get(op->objects, op->next_obj - 1);
		log_warn("build %s: %sapply of %s %s failed: %s", op->name, op->dry_run ? "dry-run " : "",
			 json_string_value(json_object_get(obj, "kind")),
			 json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")),
			 res->message ? res->message : strerror(-res->error));
		snprintf(op->errmsg, sizeof op->errmsg, "applying %s failed: %s",
			 str0(json_string_value(json_object_get(obj, "kind"))),
			 res->message ? res->message : strerror(-res->error));
		op->after_apply(op, res);
		return;
	}
	if (op->next_obj >= json_array_size(op->objects)) {
		op->after_apply(op, res);
		return;
	}
	const json_t *obj = json_array_get(op->objects, op->next_obj++);
	struct kube_write_opts wo = {.field_manager = FIELD_MANAGER, .force = true,
				     .dry_run = op->dry_run};
	op_call(op, kube_apply(op->c->kube, obj, &wo, on_op_done, op), apply_next);
}

/* ---- rendering ---- */

/* Renders mode for a build (or a commit about to become one). Returns the
 * objects (new reference) or NULL with a logged error. */
static json_t *render(struct controller *c, enum kubefiles_mode mode, const char *name,
		      const struct build_commit *cm, char *err, size_t errlen)
{
	const struct config_repo *repo = config_find_repo(c->cfg, cm->repo, cm->target_branch);
	const char *dir = repo ? repo->kubefiles : c->cfg->build.kubefiles;
	const struct kubefiles *kf = kubefiles_cache_get(c->kubefiles, dir, err, errlen);
	if (!kf)
		return NULL;
	if (!kubefiles_has_mode(kf, mode))
		return json_array();
	struct kubefiles_ctx ctx = {0};
	kubefiles_ctx_from_config(&ctx, c->cfg, repo);
	ctx.mode = mode;
	ctx.build_name = name;
	char *slug = build_slug(cm->repo, cm->target_branch, cm->pr, cm->git_commit);
	ctx.build_slug = slug;
	ctx.commit = *cm;
	if (!repo) {
		/* a build whose repo left the configuration: it can still be
		 * cleaned up, with [build]'s kubefiles */
		ctx.image_name = "unconfigured";
		ctx.image_tag = "latest";
	}
	json_t *objects = NULL;
	int rc = kubefiles_render(kf, &ctx, &objects, err, errlen);
	free(slug);
	return rc == 0 ? objects : NULL;
}

/* The Deployment of a rendered list first: it is the build, so it must
 * exist before anything that carries the build's label. */
static void deployment_first(json_t *objects)
{
	for (size_t i = 0; i < json_array_size(objects); i++) {
		json_t *o = json_array_get(objects, i);
		if (strcmp(str0(json_string_value(json_object_get(o, "kind"))), "Deployment") == 0 &&
		    i > 0) {
			json_incref(o);
			json_array_remove(objects, i);
			json_array_insert_new(objects, 0, o);
			return;
		}
	}
}

/* Stamps the rendered Deployment with when the build was deployed, to the
 * millisecond (ms since the epoch), so that pushes within one second keep
 * their order. */
static void stamp_created(json_t *objects, int64_t ms)
{
	char t[32], when[48];
	format_rfc3339(ms / 1000, t);
	snprintf(when, sizeof when, "%.19s.%03dZ", t, (int)(ms % 1000));
	for (size_t i = 0; i < json_array_size(objects); i++) {
		json_t *o = json_array_get(objects, i);
		if (strcmp(str0(json_string_value(json_object_get(o, "kind"))), "Deployment") != 0)
			continue;
		json_t *meta = json_object_get(o, "metadata");
		json_t *ann = json_object_get(meta, "annotations");
		if (!json_is_object(ann)) {
			ann = json_object();
			json_object_set_new(meta, "annotations", ann);
		}
		json_object_set_new(ann, BUILD_ANN_CREATED, json_string(when));
	}
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Removes the Deployment from a rendered list (new reference). */
static json_t *without_deployment(json_t *objects)
{
	json_t *out = json_array();
	for (size_t i = 0; i < json_array_size(objects); i++) {
		json_t *o = json_array_get(objects, i);
		if (strcmp(str0(json_string_value(json_object_get(o, "kind"))), "Deployment") != 0)
			json_array_append(out, o);
	}
	return out;
}

/* ---- deploy ---- */

static void deploy_applied(struct op *op, const struct kube_result *res)
{
	if (res->error) {
		log_error("build %s: deploy of %s %s %.12s failed half-way; a redelivery of the "
			  "webhook or a trigger deploys it again",
			  op->name, op->commit.repo, op->commit.target_branch, op->commit.git_commit);
		post_status(op->c, NULL, op->name, &op->commit, "error",
			    "runboat could not deploy this commit");
		op_end(op, true);
		return;
	}
	log_info("build %s: deployed %s %s%s%.0d %.12s", op->name, op->commit.repo,
		 op->commit.target_branch, op->commit.pr ? " PR " : "", op->commit.pr,
		 op->commit.git_commit);
	post_status(op->c, NULL, op->name, &op->commit, "pending", "deployed, waiting to initialize");
	op_end(op, false);
}

static void deploy_dry_run_done(struct op *op, const struct kube_result *res)
{
	if (res->error) {
		log_error("build %s: not deployed: the cluster refuses its objects (dry run)", op->name);
		post_status(op->c, NULL, op->name, &op->commit, "error",
			    "the build's Kubernetes objects were refused");
		op_end(op, true);
		return;
	}
	apply_start(op, false, deploy_applied);
}

static void deploy_now(struct controller *c, const struct build_commit *cm)
{
	char *key = commit_key(cm);
	char *name = build_new_name();
	if (!name) {
		log_error("cannot draw a build name: no randomness");
		deploying_forget(c, key);
		free(key);
		return;
	}
	char err[512];
	json_t *objects = render(c, KUBEFILES_DEPLOYMENT, name, cm, err, sizeof err);
	if (!objects) {
		log_error("cannot deploy %s %s %.12s: %s", cm->repo, cm->target_branch, cm->git_commit,
			  err);
		deploying_forget(c, key);
		free(key);
		free(name);
		return;
	}
	deployment_first(objects);
	stamp_created(objects, wall_ms());
	struct op *op = op_new(c, name, F_DEPLOY);
	free(name);
	op->objects = objects;
	op->deploy_key = key;
	deploying_set(c, key, DEPLOY_APPLYING);
	op->strings[0] = xstrdup(cm->repo);
	op->strings[1] = xstrdup(cm->target_branch);
	op->strings[2] = xstrdup(cm->git_commit);
	op->commit.repo = op->strings[0];
	op->commit.target_branch = op->strings[1];
	op->commit.git_commit = op->strings[2];
	op->commit.pr = cm->pr;
	apply_start(op, true, deploy_dry_run_done);
}

int controller_deploy(struct controller *c, const struct build_commit *cm, char *err, size_t errlen)
{
	if (!build_valid_commit(cm)) {
		snprintf(err, errlen, "invalid commit: repo, branch, PR or sha");
		return -EINVAL;
	}
	if (!config_find_repo(c->cfg, cm->repo, cm->target_branch)) {
		snprintf(err, errlen, "%s (branch %s) is not a configured repository/branch", cm->repo,
			 cm->target_branch);
		return -ENOTSUP;
	}
	const struct build *b = index_find_commit(c->idx, cm->repo, cm->target_branch, cm->pr,
						  cm->git_commit);
	if (b && !b->deleting) {
		snprintf(err, errlen, "already deployed as %s", b->name);
		return 0;
	}
	char *key = commit_key(cm);
	bool pending = strmap_get(&c->deploys, key) != NULL;
	if (pending) {
		free(key);
		snprintf(err, errlen, "already being deployed");
		return 0;
	}
	if (!c->synced || !c->kube) {
		if (c->n_queued >= MAX_QUEUED_DEPLOYS) {
			free(key);
			snprintf(err, errlen, "too many deploys waiting for the Kubernetes sync");
			return -EAGAIN;
		}
		/* kept until the informers have synced */
		deploying_set(c, key, DEPLOY_QUEUED);
		c->queued = xrealloc(c->queued, (c->n_queued + 1) * sizeof *c->queued);
		struct build_commit *q = &c->queued[c->n_queued++];
		q->repo = xstrdup(cm->repo);
		q->target_branch = xstrdup(cm->target_branch);
		q->git_commit = xstrdup(cm->git_commit);
		q->pr = cm->pr;
		free(key);
		snprintf(err, errlen, "queued until runboat has synced with Kubernetes");
		return 0;
	}
	free(key);
	deploy_now(c, cm);
	snprintf(err, errlen, "deploying");
	return 0;
}

static void free_queued_undeploys(struct controller *c)
{
	for (size_t i = 0; i < c->n_queued_undeploys; i++) {
		struct index_filter *q = &c->queued_undeploys[i];
		free((char *)q->repo);
		free((char *)q->target_branch);
		free((char *)q->branch);
	}
	free(c->queued_undeploys);
	c->queued_undeploys = NULL;
	c->n_queued_undeploys = 0;
}

static void run_queued_deploys(struct controller *c)
{
	struct build_commit *q = c->queued;
	size_t n = c->n_queued;
	c->queued = NULL;
	c->n_queued = 0;
	for (size_t i = 0; i < n; i++) {
		char *key = commit_key(&q[i]);
		deploying_forget(c, key);
		free(key);
		char err[256];
		controller_deploy(c, &q[i], err, sizeof err);
		free((char *)q[i].repo);
		free((char *)q[i].target_branch);
		free((char *)q[i].git_commit);
	}
	free(q);
}

/* ---- trigger (resolve a head through GitHub, then deploy) ---- */

struct trigger {
	struct controller *c;
	controller_done_cb cb;
	void *data;
};

static void on_head(int error, const char *message, const struct github_head *head, void *data)
{
	struct trigger *t = data;
	if (error) {
		t->cb(error == -ENOENT ? -ENOENT : -EIO, message, t->data);
		free(t);
		return;
	}
	struct build_commit cm = {head->repo, head->target_branch, (int)head->pr, head->sha};
	char err[512];
	int rc = t->c->closing ? -ECANCELED : controller_deploy(t->c, &cm, err, sizeof err);
	t->cb(rc, rc ? err : "deploying", t->data);
	free(t);
}

int controller_trigger(struct controller *c, const char *repo, const char *branch, long pr,
		       controller_done_cb cb, void *data, char *err, size_t errlen)
{
	if (!c->github) {
		snprintf(err, errlen, "no GitHub API client configured");
		return -EAGAIN;
	}
	struct trigger *t = xcalloc(1, sizeof *t);
	t->c = c;
	t->cb = cb;
	t->data = data;
	int rc = pr ? github_client_pr_head(c->github, repo, pr, on_head, t)
		    : github_client_branch_head(c->github, repo, branch, on_head, t);
	if (rc < 0) {
		free(t);
		snprintf(err, errlen, rc == -EINVAL ? "invalid repo, branch or PR" : "GitHub client closing");
		return rc == -EINVAL ? -EINVAL : -EAGAIN;
	}
	return 0;
}

/* ---- patches of the Deployment ---- */

/* Patches the build's Deployment (patch stolen). A merge patch touches
 * only what it names, so the controller-manager's status updates in between
 * do not conflict with it; a JSON patch may test what it changes. */
static struct kube_call *patch_deployment(struct op *op, const struct build *b,
					  enum kube_patch_type type, json_t *patch)
{
	struct kube_ref ref = {.api_version = "apps/v1", .kind = "Deployment",
			       .namespace = op->c->cfg->kubernetes.namespace, .name = b->deployment_name};
	snprintf(op->sent_rv, sizeof op->sent_rv, "%s", b->resource_version);
	struct kube_call *call = kube_patch(op->c->kube, &ref, type, patch, NULL, on_op_done, op);
	json_decref(patch);
	return call;
}

/* After a successful patch of the Deployment, remembers what it replaced. */
static void patched(struct op *op, const struct kube_result *res)
{
	const struct build *b = index_find(op->c->idx, op->name);
	if (strcmp(str0(json_string_value(json_object_get(res->body, "kind"))), "Deployment") != 0)
		return;
	const char *rv = json_string_value(
		json_object_get(json_object_get(res->body, "metadata"), "resourceVersion"));
	/* only while the index still shows what the patch was based on: once
	 * it moved on (our write or anyone's), it is not behind any more */
	if (b && rv && strcmp(rv, b->resource_version) != 0 &&
	    strcmp(op->sent_rv, b->resource_version) == 0)
		snprintf(flight_of(op->c, op->name)->stale_rv, sizeof ((struct flight *)0)->stale_rv,
			 "%s", b->resource_version);
}

static struct op *do_scale(struct controller *c, const struct build *b, bool start);

static void patch_done(struct op *op, const struct kube_result *res)
{
	bool failed = op_failed(op, res, "patch");
	if (!failed)
		patched(op, res);
	if (!failed && op->scale_after) {
		/* just initialized: live at once, or stopped as configured (a
		 * crash right here leaves it stopped, which is harmless) */
		const struct build *b = index_find(op->c->idx, op->name);
		if (b && !b->deleting)
			do_scale(op->c, b, op->c->cfg->limits.start_after_init);
	}
	if (!failed && op->status_on_success[0]) {
		const struct build *b = index_find(op->c->idx, op->name);
		if (b)
			post_status(op->c, b, b->name, &b->commit, op->status_on_success[0],
				    op->status_on_success[1]);
	}
	op_end(op, failed);
}

static void set_init_status(struct controller *c, const struct build *b, enum build_init_status s,
			    const char *gh_state, const char *gh_description)
{
	if (busy(c, b->name, F_PATCH))
		return;
	struct op *op = op_new(c, b->name, F_PATCH);
	if (gh_state) {
		op->status_on_success[0] = xstrdup(gh_state);
		op->status_on_success[1] = xstrdup(gh_description);
	}
	op->scale_after = s == BUILD_INIT_SUCCEEDED;
	log_info("build %s: init %s -> %s", b->name, build_init_status_str(b->init_status),
		 build_init_status_str(s));
	/* a transition from what the controller saw: refused (409/422) if the
	 * annotation changed meanwhile (a reset) */
	const char *path = "/metadata/annotations/runboat~1init-status";
	json_t *patch = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s}]", "op", "test", "path", path, "value",
				  build_init_status_str(b->init_status), "op", "replace", "path", path,
				  "value", build_init_status_str(s));
	op_call(op, patch_deployment(op, b, KUBE_PATCH_JSON, patch), patch_done);
}

/* ---- start / stop ---- */

static void scale_patch(struct op *op, int replicas, op_step_cb next)
{
	const struct build *b = index_find(op->c->idx, op->name);
	if (!b) {
		op_end(op, false);
		return;
	}
	char now[32];
	now_rfc3339(now);
	json_t *patch = json_pack("{s:{s:{s:s}},s:{s:i}}", "metadata", "annotations",
				  BUILD_ANN_LAST_SCALED, now, "spec", "replicas", replicas);
	op_call(op, patch_deployment(op, b, KUBE_PATCH_MERGE, patch), next);
}

static void scale_done(struct op *op, const struct kube_result *res)
{
	bool failed = op_failed(op, res, "scaling");
	if (!failed)
		patched(op, res);
	op_end(op, failed);
}

static void start_applied(struct op *op, const struct kube_result *res)
{
	if (op_failed(op, res, "start mode")) {
		op_end(op, true);
		return;
	}
	scale_patch(op, 1, scale_done);
}

static void stop_scaled(struct op *op, const struct kube_result *res)
{
	if (op_failed(op, res, "scaling down")) {
		op_end(op, true);
		return;
	}
	patched(op, res);
	apply_start(op, false, scale_done);
}

static struct op *do_scale(struct controller *c, const struct build *b, bool start)
{
	char err[512];
	json_t *objects = render(c, start ? KUBEFILES_START : KUBEFILES_STOP, b->name, &b->commit, err,
				 sizeof err);
	if (!objects) {
		log_error("build %s: cannot render %s mode: %s", b->name, start ? "start" : "stop", err);
		objects = json_array();
	}
	log_info("build %s: %s", b->name, start ? "starting" : "stopping");
	struct op *op = op_new(c, b->name, F_SCALE);
	flight_of(c, b->name)->stopping = !start;
	op->objects = objects;
	if (start)
		apply_start(op, false, start_applied);
	else
		scale_patch(op, 0, stop_scaled);
	return op;
}

static const struct build *find_or_fail(struct controller *c, const char *name, char *err,
					size_t errlen, int *rc)
{
	if (!c->synced) {
		snprintf(err, errlen, "not synced with Kubernetes yet");
		*rc = -EAGAIN;
		return NULL;
	}
	const struct build *b = index_find(c->idx, name);
	if (!b) {
		snprintf(err, errlen, "no build named %s", name);
		*rc = -ENOENT;
	}
	return b;
}

/* Start or stop asked through the API: only an initialized build can be
 * scaled; asking for the state it is already in does nothing. */
static int scale_build(struct controller *c, const char *name, bool start, controller_done_cb cb,
		       void *data, char *err, size_t errlen)
{
	int rc = 0;
	const struct build *b = find_or_fail(c, name, err, errlen, &rc);
	if (!b)
		return rc;
	if (b->deleting || b->init_status != BUILD_INIT_SUCCEEDED) {
		snprintf(err, errlen, "build %s is %s: it cannot be %s", name,
			 build_status_str(b->status), start ? "started" : "stopped");
		return -EBUSY;
	}
	if ((b->desired_replicas > 0) == start || busy(c, name, F_SCALE | F_RESET)) {
		snprintf(err, errlen, "build %s is already %s", name, build_status_str(b->status));
		return 1;
	}
	struct op *op = do_scale(c, b, start);
	op->done = cb;
	op->done_data = data;
	return 0;
}

int controller_start_build(struct controller *c, const char *name, controller_done_cb cb,
			   void *data, char *err, size_t errlen)
{
	return scale_build(c, name, true, cb, data, err, errlen);
}

int controller_stop_build(struct controller *c, const char *name, controller_done_cb cb,
			  void *data, char *err, size_t errlen)
{
	return scale_build(c, name, false, cb, data, err, errlen);
}

/* ---- initialize ---- */

static void init_applied(struct op *op, const struct kube_result *res)
{
	bool failed = res->error != 0;
	if (!failed) {
		log_info("build %s: initialization job created", op->name);
		flight_of(op->c, op->name)->init_applied = true;
	}
	op_end(op, failed);
}

static void initialize(struct controller *c, const struct build *b)
{
	char err[512];
	json_t *deploy = render(c, KUBEFILES_DEPLOYMENT, b->name, &b->commit, err, sizeof err);
	json_t *init = deploy ? render(c, KUBEFILES_INITIALIZE, b->name, &b->commit, err, sizeof err)
			      : NULL;
	if (!init) {
		log_error("build %s: cannot render its initialization: %s", b->name, err);
		json_decref(deploy);
		flight_of(c, b->name)->retry_after_ms = now_ms() + c->opts.retry_ms;
		return;
	}
	/* what deployment mode made besides the Deployment is applied again,
	 * so that a deploy cut short (a crash) is completed */
	struct op *op = op_new(c, b->name, F_INIT);
	op->objects = without_deployment(deploy);
	json_array_extend(op->objects, init);
	json_decref(deploy);
	json_decref(init);
	apply_start(op, false, init_applied);
}

/* ---- reset ---- */

static void reset_applied(struct op *op, const struct kube_result *res)
{
	bool failed = op_failed(op, res, "reset");
	if (!failed)
		log_info("build %s: reset", op->name);
	op_end(op, failed);
}

static void reset_jobs_deleted(struct op *op, const struct kube_result *res)
{
	if (op_failed(op, res, "deleting the initialization jobs")) {
		op_end(op, true);
		return;
	}
	apply_start(op, false, reset_applied);
}

static struct kube_call *delete_jobs(struct op *op, const char *kind, kube_done_cb cb)
{
	char sel[160];
	snprintf(sel, sizeof sel, "%s=%s,%s=%s", BUILD_LABEL, op->name, BUILD_LABEL_JOB_KIND, kind);
	struct kube_ref ref = {.api_version = "batch/v1", .kind = "Job",
			       .namespace = op->c->cfg->kubernetes.namespace};
	struct kube_list_opts lo = {.label_selector = sel};
	struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
	dopt.propagation = "Background";
	return kube_delete_collection(op->c->kube, &ref, &lo, &dopt, cb, op);
}

int controller_reset_build(struct controller *c, const char *name, controller_done_cb cb,
			   void *data, char *err, size_t errlen)
{
	int rc = 0;
	const struct build *b = find_or_fail(c, name, err, errlen, &rc);
	if (!b)
		return rc;
	if (b->deleting) {
		snprintf(err, errlen, "build %s is undeploying: it cannot be reset", name);
		return -EBUSY;
	}
	if (busy(c, name, F_RESET | F_INIT)) {
		snprintf(err, errlen, "build %s is busy, try again", name);
		return -EBUSY;
	}
	json_t *objects = render(c, KUBEFILES_DEPLOYMENT, b->name, &b->commit, err, errlen);
	if (!objects)
		return -EINVAL;
	deployment_first(objects);
	stamp_created(objects, b->created_ms ? b->created_ms : b->created * 1000);
	struct op *op = op_new(c, b->name, F_RESET);
	op->objects = objects;
	op->done = cb;
	op->done_data = data;
	op_call(op, delete_jobs(op, "initialize", on_op_done), reset_jobs_deleted);
	return 0;
}

/* ---- undeploy and the cleaner ---- */

static void undeploy_done(struct op *op, const struct kube_result *res)
{
	bool failed = res->error && res->status != 404 && op_failed(op, res, "undeploy");
	op_end(op, failed);
}

static struct op *undeploy(struct controller *c, const struct build *b, const char *why)
{
	if (b->deleting || busy(c, b->name, F_UNDEPLOY))
		return NULL;
	log_info("build %s: undeploying (%s)", b->name, why);
	struct op *op = op_new(c, b->name, F_UNDEPLOY);
	struct kube_ref ref = {.api_version = "apps/v1", .kind = "Deployment",
			       .namespace = c->cfg->kubernetes.namespace, .name = b->deployment_name};
	struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
	dopt.propagation = "Background";
	op_call(op, kube_delete(c->kube, &ref, &dopt, on_op_done, op), undeploy_done);
	return op;
}

int controller_undeploy_build(struct controller *c, const char *name, controller_done_cb cb,
			      void *data, char *err, size_t errlen)
{
	int rc = 0;
	const struct build *b = find_or_fail(c, name, err, errlen, &rc);
	if (!b)
		return rc;
	struct op *op = undeploy(c, b, "asked");
	if (!op) {
		snprintf(err, errlen, "build %s is already undeploying", name);
		return 1;
	}
	op->done = cb;
	op->done_data = data;
	return 0;
}

size_t controller_undeploy_matching(struct controller *c, const struct index_filter *f)
{
	if (!c->synced) {
		/* a PR closed or a branch deleted while runboat starts: done
		 * once the builds are known */
		if (c->n_queued_undeploys < MAX_QUEUED_DEPLOYS) {
			c->queued_undeploys = xrealloc(c->queued_undeploys, (c->n_queued_undeploys + 1) *
									 sizeof *c->queued_undeploys);
			struct index_filter *q = &c->queued_undeploys[c->n_queued_undeploys++];
			*q = (struct index_filter){
				.repo = f->repo ? xstrdup(f->repo) : NULL,
				.target_branch = f->target_branch ? xstrdup(f->target_branch) : NULL,
				.branch = f->branch ? xstrdup(f->branch) : NULL,
				.pr = f->pr,
			};
		}
		return 0;
	}
	const struct build **list = NULL;
	size_t n = index_list(c->idx, f, INDEX_SORT_ASC, &list);
	/* copy the names: undeploy() may not change the index, but be safe */
	char **names = xcalloc(n ? n : 1, sizeof *names);
	for (size_t i = 0; i < n; i++)
		names[i] = xstrdup(list[i]->name);
	free(list);
	for (size_t i = 0; i < n; i++) {
		const struct build *b = index_find(c->idx, names[i]);
		if (b)
			undeploy(c, b, "asked for its branch or PR");
		free(names[i]);
	}
	free(names);
	return n;
}

/* The kinds to delete by label once a build is cleaned: what its kubefiles
 * produce, plus the usual ones in case the kubefiles changed since. */
static json_t *cleanup_kinds(struct controller *c, const struct build *b)
{
	json_t *kinds = json_array();
	static const char *const usual[][2] = {
		{"v1", "ConfigMap"}, {"v1", "Secret"}, {"v1", "Service"},
		{"v1", "PersistentVolumeClaim"}, {"networking.k8s.io/v1", "Ingress"},
		{"batch/v1", "Job"},
	};
	const struct config_repo *repo = config_find_repo(c->cfg, b->commit.repo,
							  b->commit.target_branch);
	char err[256];
	const struct kubefiles *kf = kubefiles_cache_get(
		c->kubefiles, repo ? repo->kubefiles : c->cfg->build.kubefiles, err, sizeof err);
	json_t *made = kf ? kubefiles_kinds(kf, NULL, err, sizeof err) : NULL;
	size_t i;
	json_t *k;
	json_array_foreach(made, i, k)
	{
		if (strcmp(str0(json_string_value(json_object_get(k, "kind"))), "Deployment") != 0)
			json_array_append(kinds, k);
	}
	json_decref(made);
	for (i = 0; i < ARRAY_SIZE(usual); i++) {
		bool have = false;
		json_t *x;
		size_t j;
		json_array_foreach(kinds, j, x)
		{
			if (strcmp(str0(json_string_value(json_object_get(x, "apiVersion"))), usual[i][0]) ==
				    0 &&
			    strcmp(str0(json_string_value(json_object_get(x, "kind"))), usual[i][1]) == 0)
				have = true;
		}
		if (!have)
			json_array_append_new(kinds, json_pack("{s:s,s:s}", "apiVersion", usual[i][0],
							       "kind", usual[i][1]));
	}
	return kinds;
}

static void clean_finalizer_removed(struct op *op, const struct kube_result *res)
{
	bool failed = res->error && res->status != 404 && op_failed(op, res, "removing the finalizer");
	if (!failed) {
		log_info("build %s: undeployed", op->name);
		flight_of(op->c, op->name)->cleaned = true;
	}
	op_end(op, failed);
}

static void clean_delete_next(struct op *op, const struct kube_result *res)
{
	struct controller *c = op->c;
	if (res->error && res->status != 404 && res->error != -ENOENT) {
		op_failed(op, res, "deleting the build's objects");
		op_end(op, true);
		return;
	}
	if ((size_t)op->kind_index < json_array_size(op->kinds)) {
		json_t *k = json_array_get(op->kinds, (size_t)op->kind_index++);
		char sel[128];
		snprintf(sel, sizeof sel, "%s=%s", BUILD_LABEL, op->name);
		struct kube_ref ref = {.api_version = json_string_value(json_object_get(k, "apiVersion")),
				       .kind = json_string_value(json_object_get(k, "kind")),
				       .namespace = c->cfg->kubernetes.namespace};
		struct kube_list_opts lo = {.label_selector = sel};
		struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
		dopt.propagation = "Background";
		op_call(op, kube_delete_collection(c->kube, &ref, &lo, &dopt, on_op_done, op),
			clean_delete_next);
		return;
	}
	/* everything else is gone: let the Deployment go */
	const struct build *b = index_find(c->idx, op->name);
	if (!b) {
		op_end(op, false);
		return;
	}
	json_t *fins = json_array();
	json_t *dep = informer_get(c->deployments, b->deployment_name);
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(json_object_get(dep, "metadata"), "finalizers"), i, f)
	{
		if (json_is_string(f) && strcmp(json_string_value(f), BUILD_FINALIZER) != 0)
			json_array_append(fins, f);
	}
	json_t *current = json_object_get(json_object_get(dep, "metadata"), "finalizers");
	if (!json_is_array(current)) {
		json_decref(fins);
		op_end(op, false);
		return;
	}
	/* only if the finalizers are still what was read */
	json_t *patch = json_pack("[{s:s,s:s,s:O},{s:s,s:s,s:o}]", "op", "test", "path",
				  "/metadata/finalizers", "value", current, "op", "replace", "path",
				  "/metadata/finalizers", "value", fins);
	op_call(op, patch_deployment(op, b, KUBE_PATCH_JSON, patch), clean_finalizer_removed);
}

static void clean_step_done(struct op *op, const struct kube_result *res)
{
	op_end(op, op_failed(op, res, "cleaning up"));
}

/* One step of the cleanup of an undeploying build, per pass. */
static void clean(struct controller *c, const struct build *b)
{
	/* objects being applied would come back after the cleanup deleted
	 * them: let every other operation on the build end first */
	struct flight *fl = strmap_get(&c->flights, b->name);
	if (!b->has_finalizer || (fl && fl->cleaned) ||
	    busy(c, b->name, F_CLEAN | F_RESET | F_INIT | F_SCALE | F_PATCH | F_DEPLOY))
		return;
	const struct build_job *init = index_job(c->idx, b->name, BUILD_JOB_INITIALIZE);
	const struct build_job *cleanup = index_job(c->idx, b->name, BUILD_JOB_CLEANUP);
	struct op *op;
	if (init && !init->deleting) {
		op = op_new(c, b->name, F_CLEAN);
		log_info("build %s: stopping its initialization", b->name);
		op_call(op, delete_jobs(op, "initialize", on_op_done), clean_step_done);
		return;
	}
	if (b->desired_replicas > 0) {
		op = op_new(c, b->name, F_CLEAN);
		scale_patch(op, 0, clean_step_done);
		return;
	}
	if (!cleanup || cleanup->deleting) {
		char err[512];
		json_t *objects = render(c, KUBEFILES_CLEANUP, b->name, &b->commit, err, sizeof err);
		if (!objects) {
			log_error("build %s: cannot render its cleanup: %s", b->name, err);
			flight_of(c, b->name)->retry_after_ms = now_ms() + c->opts.retry_ms;
			return;
		}
		log_info("build %s: cleaning up", b->name);
		op = op_new(c, b->name, F_CLEAN);
		op->objects = objects;
		apply_start(op, false, clean_step_done);
		return;
	}
	if (cleanup->state == BUILD_JOB_FAILED) {
		struct flight *f = flight_of(c, b->name);
		if (!f->cleanup_failed_logged) {
			log_error("build %s: its cleanup job failed; it stays undeploying (reset or "
				  "delete the job to retry)",
				  b->name);
			f->cleanup_failed_logged = true;
		}
		return;
	}
	if (cleanup->state != BUILD_JOB_SUCCEEDED)
		return;
	op = op_new(c, b->name, F_CLEAN);
	op->kinds = cleanup_kinds(c, b);
	static const struct kube_result ok = {0};
	clean_delete_next(op, &ok);
}

/* ---- reconcile one build ---- */

static void reconcile(struct controller *c, const struct build *b)
{
	if (b->deleting) {
		clean(c, b);
		return;
	}
	if (busy(c, b->name, F_PATCH | F_RESET | F_INIT | F_SCALE) || behind_our_patch(c, b)) {
		log_debug("build %s: reconcile later (busy or behind our own patch)", b->name);
		return;
	}
	const struct build_job *job = index_job(c->idx, b->name, BUILD_JOB_INITIALIZE);
	if (job && job->deleting)
		job = NULL;
	switch (b->init_status) {
	case BUILD_INIT_TODO:
	case BUILD_INIT_STARTED:
		if (!job) {
			if (b->init_status == BUILD_INIT_STARTED) {
				log_warn("build %s: its initialization job disappeared", b->name);
				set_init_status(c, b, BUILD_INIT_TODO, NULL, NULL);
			}
			break; /* the initializer will create one */
		}
		if (job->state == BUILD_JOB_ACTIVE && b->init_status == BUILD_INIT_TODO)
			set_init_status(c, b, BUILD_INIT_STARTED, "pending", "initializing");
		else if (job->state == BUILD_JOB_SUCCEEDED)
			set_init_status(c, b, BUILD_INIT_SUCCEEDED, "success", "ready");
		else if (job->state == BUILD_JOB_FAILED)
			set_init_status(c, b, BUILD_INIT_FAILED, "failure", "initialization failed");
		break;
	case BUILD_INIT_SUCCEEDED:
	case BUILD_INIT_FAILED:
	case BUILD_INIT_STATUS_COUNT:
		break;
	}
}

/* ---- policies ---- */

static bool initializing_slot(struct controller *c, const struct build *b)
{
	if (b->init_status == BUILD_INIT_STARTED)
		return true;
	const struct build_job *job = index_job(c->idx, b->name, BUILD_JOB_INITIALIZE);
	struct flight *f = strmap_get(&c->flights, b->name);
	if (f && f->init_applied) {
		if (!job)
			return true; /* the Jobs informer is behind */
		f->init_applied = false;
	}
	return (job && !job->deleting) || busy(c, b->name, F_INIT);
}

static void initializer(struct controller *c)
{
	size_t used = index_count_init(c->idx, BUILD_INIT_STARTED);
	const struct build *b;
	for (b = index_next_to_initialize(c->idx, NULL); b; b = index_next_to_initialize(c->idx, b))
		if (initializing_slot(c, b))
			used++;
	size_t max = (size_t)c->cfg->limits.max_initializing;
	for (b = index_next_to_initialize(c->idx, NULL); b && used < max;
	     b = index_next_to_initialize(c->idx, b)) {
		if (initializing_slot(c, b) || busy(c, b->name, F_RESET | F_UNDEPLOY))
			continue;
		const struct build *newest =
			index_newest(c->idx, b->commit.repo, b->commit.target_branch, b->commit.pr);
		if (newest && newest != b && newest->created_ms > b->created_ms) {
			/* a newer commit of the same branch/PR is queued: skip this one */
			undeploy(c, b, "a newer commit of its branch or PR was pushed");
			continue;
		}
		log_info("build %s: initializing (%zu/%zu)", b->name, used + 1, max);
		initialize(c, b);
		used++;
	}
}

static void stopper(struct controller *c)
{
	size_t running = index_count_status(c->idx, BUILD_STARTED) +
			 index_count_status(c->idx, BUILD_STARTING);
	size_t max = (size_t)c->cfg->limits.max_started;
	/* builds whose stop is on its way do not count */
	for (const struct build *b = index_next_started(c->idx, NULL); b && running > max;
	     b = index_next_started(c->idx, b)) {
		struct flight *f = strmap_get(&c->flights, b->name);
		if (f && f->stopping && (f->ops & F_SCALE))
			running--;
	}
	for (const struct build *b = index_next_started(c->idx, NULL); b && running > max;
	     b = index_next_started(c->idx, b)) {
		if (b->desired_replicas == 0 || busy(c, b->name, F_SCALE | F_RESET))
			continue;
		log_info("build %s: stopping, %zu started for %zu allowed", b->name, running, max);
		do_scale(c, b, false);
		running--;
	}
}

static void undeployer(struct controller *c)
{
	size_t deployed = index_deployed(c->idx);
	size_t max = (size_t)c->cfg->limits.max_deployed;
	for (const struct build *b = index_next_undeployable(c->idx, NULL); b && deployed > max;
	     b = index_next_undeployable(c->idx, b)) {
		if (busy(c, b->name, F_UNDEPLOY | F_SCALE | F_RESET))
			continue;
		undeploy(c, b, "more builds deployed than max_deployed");
		deployed--;
	}
}

/* Sticky branches get a build of their head when they have none. */
static void on_sticky_done(int error, const char *message, void *data)
{
	char *what = data;
	if (error)
		log_warn("sticky branch %s: %s", what, message);
	free(what);
}

static void sticky(struct controller *c)
{
	if (c->sticky_done || !c->github)
		return;
	c->sticky_done = true;
	for (size_t i = 0; i < c->cfg->n_sticky_branches; i++) {
		const struct config_sticky_branch *s = &c->cfg->sticky_branches[i];
		if (index_newest(c->idx, s->repo, s->branch, 0))
			continue;
		char err[256];
		char *what = xasprintf("%s %s", s->repo, s->branch);
		if (controller_trigger(c, s->repo, s->branch, 0, on_sticky_done, what, err, sizeof err))
			on_sticky_done(-EIO, err, what);
	}
}

/* ---- the pass ---- */

static void reconcile_one(const char *name, void *value, void *data)
{
	UNUSED(value);
	struct controller *c = data;
	const struct build *b = index_find(c->idx, name);
	if (b)
		reconcile(c, b);
}

static void on_pass(uv_timer_t *t)
{
	struct controller *c = t->data;
	c->pass_scheduled = false;
	if (!c->synced || !c->kube || c->closing)
		return;
	/* reconcile the builds that changed */
	struct strmap dirty = c->dirty;
	memset(&c->dirty, 0, sizeof c->dirty);
	strmap_each(&dirty, reconcile_one, c);
	strmap_clear(&dirty, NULL);
	/* undeploying builds move on by their jobs and deletions */
	for (const struct build *b = index_next_undeploying(c->idx, NULL); b;
	     b = index_next_undeploying(c->idx, b))
		clean(c, b);
	initializer(c);
	stopper(c);
	undeployer(c);
	sticky(c);
}

static void schedule_pass(struct controller *c)
{
	if (c->pass_scheduled || c->closing)
		return;
	c->pass_scheduled = true;
	uv_timer_start(&c->pass_timer, on_pass, 0, 0);
}

static void mark_all_dirty(struct controller *c)
{
	const struct build **list = NULL;
	struct index_filter all = {0};
	size_t n = index_list(c->idx, &all, INDEX_SORT_ASC, &list);
	for (size_t i = 0; i < n; i++)
		strmap_put(&c->dirty, list[i]->name, (void *)1);
	free(list);
	schedule_pass(c);
}

struct stale_deploys {
	char **keys;
	size_t n;
	uint64_t now;
};

static void collect_stale(const char *key, void *value, void *data)
{
	struct deploying *d = value;
	struct stale_deploys *s = data;
	if (d->state == DEPLOY_APPLIED && s->now - d->since_ms > DEPLOY_FORGET_MS) {
		s->keys = xrealloc(s->keys, (s->n + 1) * sizeof *s->keys);
		s->keys[s->n++] = xstrdup(key);
	}
}

static void on_resync(uv_timer_t *t)
{
	struct controller *c = t->data;
	/* level-triggered: look at everything now and then, whatever the
	 * events said */
	mark_all_dirty(c);
	/* a deploy whose Deployment never showed up (deleted at once) */
	struct stale_deploys s = {.now = now_ms()};
	strmap_each(&c->deploys, collect_stale, &s);
	for (size_t i = 0; i < s.n; i++) {
		deploying_forget(c, s.keys[i]);
		free(s.keys[i]);
	}
	free(s.keys);
}

static void move_to_dirty(const char *key, void *value, void *data)
{
	UNUSED(value);
	struct controller *c = data;
	strmap_put(&c->dirty, key, (void *)1);
}

static void on_retry(uv_timer_t *t)
{
	struct controller *c = t->data;
	strmap_each(&c->retry, move_to_dirty, c);
	strmap_clear(&c->retry, NULL);
	schedule_pass(c);
}

static void on_index_event(enum index_event ev, const struct build *b, void *data)
{
	struct controller *c = data;
	if (!b)
		return;
	if (ev == INDEX_DEL) {
		free(strmap_del(&c->flights, b->name));
		strmap_del(&c->dirty, b->name);
	} else {
		strmap_put(&c->dirty, b->name, (void *)1);
		if (c->deploys.count && ev == INDEX_UPD) {
			/* the informer shows it: no longer "being deployed" */
			char *key = commit_key(&b->commit);
			deploying_forget(c, key);
			free(key);
		}
	}
	schedule_pass(c);
}

/* ---- informers ---- */

static const char *label_of(json_t *obj)
{
	return json_string_value(
		json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), BUILD_LABEL));
}

static void on_deployment(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	UNUSED(inf);
	UNUSED(old);
	struct controller *c = data;
	char err[512];
	struct build *b = build_from_deployment(obj, err, sizeof err);
	if (!b) {
		log_warn("ignoring a Deployment: %s", err);
		const char *name = label_of(obj);
		if (name)
			index_remove(c->idx, name);
		return;
	}
	index_upsert(c->idx, b);
}

static void on_deployment_add(struct informer *inf, json_t *obj, void *data)
{
	on_deployment(inf, NULL, obj, data);
}

static void on_deployment_delete(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	struct controller *c = data;
	const char *name = label_of(obj);
	if (name)
		index_remove(c->idx, name);
}

static void on_job(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	UNUSED(inf);
	UNUSED(old);
	struct controller *c = data;
	struct build_job j;
	int rc = build_job_from_job(obj, &j);
	if (rc == -EINVAL)
		log_warn("ignoring a malformed runboat Job");
	if (rc == 0)
		index_set_job(c->idx, &j);
}

static void on_job_add(struct informer *inf, json_t *obj, void *data)
{
	on_job(inf, NULL, obj, data);
}

static void on_job_delete(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	struct controller *c = data;
	struct build_job j;
	if (build_job_from_job(obj, &j) == 0)
		index_remove_job(c->idx, &j);
}

static void on_synced(struct informer *inf, void *data)
{
	UNUSED(inf);
	struct controller *c = data;
	if (c->synced || !informer_synced(c->deployments) || !informer_synced(c->jobs))
		return;
	c->synced = true;
	log_info("synced with Kubernetes: %zu builds in namespace %s", index_count(c->idx),
		 c->cfg->kubernetes.namespace);
	run_queued_deploys(c);
	for (size_t i = 0; i < c->n_queued_undeploys; i++)
		controller_undeploy_matching(c, &c->queued_undeploys[i]);
	free_queued_undeploys(c);
	mark_all_dirty(c);
}

/* ---- life ---- */

struct controller *controller_new(const struct controller_deps *d, const struct controller_opts *o)
{
	struct controller *c = xcalloc(1, sizeof *c);
	c->loop = d->loop;
	c->cfg = d->cfg;
	c->idx = d->idx;
	c->kube = d->kube;
	c->kube_error = d->kube_error;
	c->github = d->github;
	c->kubefiles = d->kubefiles;
	c->links = d->links;
	if (o)
		c->opts = *o;
	if (!c->opts.resync_ms)
		c->opts.resync_ms = 60000;
	if (!c->opts.retry_ms)
		c->opts.retry_ms = 5000;
	uv_timer_init(c->loop, &c->pass_timer);
	uv_timer_init(c->loop, &c->resync_timer);
	uv_timer_init(c->loop, &c->retry_timer);
	c->pass_timer.data = c->resync_timer.data = c->retry_timer.data = c;
	c->open_handles = 3;
	index_listen(c->idx, on_index_event, c);
	return c;
}

void controller_start(struct controller *c)
{
	if (!c->kube)
		return;
	const char *ns = c->cfg->kubernetes.namespace;
	struct informer_opts dopts = {.api_version = "apps/v1", .kind = "Deployment",
				      .namespace = ns, .label_selector = BUILD_LABEL};
	struct informer_callbacks dcb = {.on_add = on_deployment_add, .on_update = on_deployment,
					 .on_delete = on_deployment_delete, .on_synced = on_synced,
					 .data = c};
	c->deployments = informer_new(c->loop, c->kube, &dopts, &dcb);
	struct informer_opts jopts = {.api_version = "batch/v1", .kind = "Job", .namespace = ns,
				      .label_selector = BUILD_LABEL};
	struct informer_callbacks jcb = {.on_add = on_job_add, .on_update = on_job,
					 .on_delete = on_job_delete, .on_synced = on_synced,
					 .data = c};
	c->jobs = informer_new(c->loop, c->kube, &jopts, &jcb);
	informer_start(c->deployments);
	informer_start(c->jobs);
	uv_timer_start(&c->resync_timer, on_resync, c->opts.resync_ms, c->opts.resync_ms);
}

bool controller_ready(const struct controller *c, const char **reason)
{
	if (!c->kube) {
		*reason = c->kube_error ? c->kube_error : "Kubernetes is not configured";
		return false;
	}
	if (!c->synced) {
		*reason = "the Kubernetes informers are not synced yet";
		return false;
	}
	return true;
}

static void free_flight(void *v)
{
	free(v);
}

static void controller_maybe_free(struct controller *c)
{
	if (c->n_ops || c->open_handles)
		return;
	strmap_clear(&c->flights, free_flight);
	strmap_clear(&c->dirty, NULL);
	strmap_clear(&c->retry, NULL);
	strmap_clear(&c->deploys, free);
	for (size_t i = 0; i < c->n_queued; i++) {
		free((char *)c->queued[i].repo);
		free((char *)c->queued[i].target_branch);
		free((char *)c->queued[i].git_commit);
	}
	free(c->queued);
	free_queued_undeploys(c);
	free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct controller *c = h->data;
	c->open_handles--;
	controller_maybe_free(c);
}

void controller_free(struct controller *c)
{
	if (!c)
		return;
	c->closing = true;
	index_unlisten(c->idx, on_index_event, c);
	informer_free(c->deployments);
	informer_free(c->jobs);
	c->deployments = c->jobs = NULL;
	for (struct op *op = c->ops; op; op = op->next)
		if (op->call)
			kube_cancel(op->call);
	uv_close((uv_handle_t *)&c->pass_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->resync_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->retry_timer, on_handle_closed);
}

/* ---- logs ---- */

struct controller_log {
	struct controller *c;
	struct kube_call *call;
	controller_log_cb cb;
	void *data;
	bool init;
	bool cancelled;
};

static void log_finish(struct controller_log *l, int error, const char *message, const char *text,
		       size_t len)
{
	if (!l->cancelled)
		l->cb(error, message, text, len, l->data);
	free(l);
}

static void on_log_text(const struct kube_result *res, void *data)
{
	struct controller_log *l = data;
	l->call = NULL;
	if (res->error) {
		log_finish(l, res->status == 404 ? -ENOENT : -EIO,
			   res->message ? res->message : strerror(-res->error), NULL, 0);
		return;
	}
	log_finish(l, 0, NULL, res->raw, res->raw_len);
}

static void on_log_pods(const struct kube_result *res, void *data)
{
	struct controller_log *l = data;
	l->call = NULL;
	if (l->cancelled || res->error) {
		log_finish(l, -EIO, res->message ? res->message : "cannot list the build's pods", NULL,
			   0);
		return;
	}
	/* the newest pod */
	json_t *best = NULL;
	const char *best_ts = "";
	size_t i;
	json_t *pod;
	json_array_foreach(json_object_get(res->body, "items"), i, pod)
	{
		const char *ts = json_string_value(
			json_object_get(json_object_get(pod, "metadata"), "creationTimestamp"));
		if (ts && strcmp(ts, best_ts) >= 0) {
			best = pod;
			best_ts = ts;
		}
	}
	if (!best) {
		log_finish(l, -ENOENT,
			   l->init ? "no initialization pod for this build"
				   : "no running pod for this build (is it started?)",
			   NULL, 0);
		return;
	}
	const char *pod_name = json_string_value(json_object_get(json_object_get(best, "metadata"), "name"));
	/* the first container: Odoo in the default kubefiles */
	json_t *first = json_array_get(json_object_get(json_object_get(best, "spec"), "containers"), 0);
	struct kube_log_opts lo = {
		.container = json_string_value(json_object_get(first, "name")),
		.limit_bytes = 4 * 1024 * 1024,
	};
	l->call = kube_pod_log(l->c->kube, l->c->cfg->kubernetes.namespace, pod_name, &lo, NULL,
			       on_log_text, l);
	if (!l->call)
		log_finish(l, -EIO, "the Kubernetes client is closing", NULL, 0);
}

struct controller_log *controller_log(struct controller *c, const char *name, bool init,
				      controller_log_cb cb, void *data)
{
	struct controller_log *l = xcalloc(1, sizeof *l);
	l->c = c;
	l->cb = cb;
	l->data = data;
	l->init = init;
	char sel[160];
	if (init)
		snprintf(sel, sizeof sel, "%s=%s,%s=initialize", BUILD_LABEL, name, BUILD_LABEL_JOB_KIND);
	else
		snprintf(sel, sizeof sel, "%s=%s,!%s", BUILD_LABEL, name, BUILD_LABEL_JOB_KIND);
	struct kube_ref ref = {.api_version = "v1", .kind = "Pod",
			       .namespace = c->cfg->kubernetes.namespace};
	struct kube_list_opts lo = {.label_selector = sel};
	l->call = c->kube ? kube_list(c->kube, &ref, &lo, on_log_pods, l) : NULL;
	if (!l->call) {
		free(l);
		return NULL;
	}
	return l;
}

void controller_cancel_log(struct controller_log *l)
{
	l->cancelled = true;
	if (l->call)
		kube_cancel(l->call);
}
