#include "policy.h"

#include <stdlib.h>
#include <string.h>

#include "strmap.h"
#include "util.h"

/* What one pass is computing. */
struct pass {
	const struct policy_input *in;
	struct plan *out;
	struct strmap acted; /* names of the builds given an action this pass */
	size_t idle_stops;   /* stops planned by the idle stopper */
};

const char *action_kind_str(enum action_kind k)
{
	switch (k) {
	case ACTION_INIT_STATUS: return "init-status";
	case ACTION_INITIALIZE: return "initialize";
	case ACTION_START: return "start";
	case ACTION_STOP: return "stop";
	case ACTION_RESET: return "reset";
	case ACTION_UNDEPLOY: return "undeploy";
	case ACTION_CLEAN_KILL_INIT: return "clean:kill-init";
	case ACTION_CLEAN_SCALE_DOWN: return "clean:scale-down";
	case ACTION_CLEAN_APPLY: return "clean:apply";
	case ACTION_CLEAN_DELETE: return "clean:delete";
	case ACTION_CLEAN_RETRY: return "clean:retry";
	case ACTION_CLEANUP_FAILED: return "cleanup-failed";
	case ACTION_WANT_DROPPED: return "want-dropped";
	}
	return "?";
}

bool policy_held(const struct build_work *w, const struct build *b, unsigned ops, uint64_t now_ms)
{
	if (!w)
		return false;
	return (w->ops & ops) || now_ms < w->retry_at_ms ||
	       (w->blocked_rv[0] && strcmp(w->blocked_rv, b->resource_version) == 0);
}

static const struct build_work *work_of(struct pass *p, const struct build *b)
{
	return p->in->work ? p->in->work(b->name, p->in->work_data) : NULL;
}

static bool held(struct pass *p, const struct build *b, unsigned ops)
{
	return policy_held(work_of(p, b), b, ops, p->in->now_ms);
}

static bool acted(struct pass *p, const struct build *b)
{
	return strmap_get(&p->acted, b->name) != NULL;
}

static void add(struct pass *p, enum action_kind kind, const struct build *b,
		enum build_init_status to, const char *why)
{
	struct plan *o = p->out;
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 16;
		o->v = xrealloc(o->v, o->cap * sizeof *o->v);
	}
	o->v[o->n++] = (struct action){.kind = kind, .b = b, .to = to, .why = why};
	if (kind != ACTION_WANT_DROPPED && kind != ACTION_CLEANUP_FAILED)
		strmap_put(&p->acted, b->name, (void *)1);
}

/* Whether the index still shows b as it was before one of our patches. */
static bool behind_our_patch(const struct build_work *w, const struct build *b)
{
	return w && w->stale_rv[0] && strcmp(w->stale_rv, b->resource_version) == 0;
}

/* ---- one build ---- */

/* The init-status that the init Job's state calls for, or -1. */
static int init_status_from_job(const struct index *idx, const struct build *b)
{
	const struct build_job *job = index_job(idx, b->name, BUILD_JOB_INITIALIZE);
	if (job && job->deleting)
		job = NULL;
	if (!job)
		return b->init_status == BUILD_INIT_STARTED ? BUILD_INIT_TODO : -1;
	switch (job->state) {
	case BUILD_JOB_ACTIVE:
		return b->init_status == BUILD_INIT_TODO ? BUILD_INIT_STARTED : -1;
	case BUILD_JOB_SUCCEEDED:
		return BUILD_INIT_SUCCEEDED;
	case BUILD_JOB_FAILED:
		return BUILD_INIT_FAILED;
	case BUILD_JOB_PENDING:
		break;
	}
	return -1;
}

static void reconcile(struct pass *p, const struct build *b)
{
	const struct build_work *w = work_of(p, b);
	uint64_t now = p->in->now_ms;
	if (acted(p, b))
		return;
	if (w && w->want_undeploy) {
		if (!policy_held(w, b, WORK_UNDEPLOY, now))
			add(p, ACTION_UNDEPLOY, b, 0, w->undeploy_why ? w->undeploy_why : "asked");
		return;
	}
	if (policy_held(w, b, WORK_PATCH | WORK_RESET | WORK_INIT | WORK_SCALE, now) ||
	    behind_our_patch(w, b))
		return;
	if (w && w->want_reset) {
		add(p, ACTION_RESET, b, 0, "asked");
		return;
	}
	if (w && w->init_refused &&
	    (b->init_status == BUILD_INIT_TODO || b->init_status == BUILD_INIT_STARTED)) {
		add(p, ACTION_INIT_STATUS, b, BUILD_INIT_FAILED, "its initialization was refused");
		p->out->v[p->out->n - 1].reason = w->init_refused;
		return;
	}
	if (b->init_status == BUILD_INIT_TODO || b->init_status == BUILD_INIT_STARTED) {
		int to = init_status_from_job(p->in->idx, b);
		if (to >= 0) {
			add(p, ACTION_INIT_STATUS, b, (enum build_init_status)to,
			    to == BUILD_INIT_TODO ? "its initialization job disappeared"
						  : "its initialization job moved on");
			return;
		}
	}
	if (w && w->want != WANT_NONE) {
		if (b->init_status != BUILD_INIT_SUCCEEDED)
			add(p, ACTION_WANT_DROPPED, b, 0, "the build is not initialized any more");
		else if (w->want == WANT_START)
			add(p, ACTION_START, b, 0, "asked");
		else
			add(p, ACTION_STOP, b, 0, "asked");
		return;
	}
	if (b->paused && b->desired_replicas > 0 && b->replicas == 0 &&
	    b->init_status == BUILD_INIT_SUCCEEDED) {
		/* scaled up by someone else (the Python runboat, an older
		 * runboat) while paused as deployed: no pod would ever come;
		 * a start unpauses it */
		add(p, ACTION_START, b, 0, "scaled up while paused");
		return;
	}
	if (p->in->limits.max_restarts && b->desired_replicas > 0 &&
	    b->init_status == BUILD_INIT_SUCCEEDED && (unsigned)b->restarts >= p->in->limits.max_restarts) {
		add(p, ACTION_STOP, b, 0, "its pod is crash-looping (max_restarts)");
		p->out->v[p->out->n - 1].reason = POLICY_CRASH_REASON;
	}
}

/* The next step of an undeploying build's cleanup. */
static void clean(struct pass *p, const struct build *b)
{
	const struct build_work *w = work_of(p, b);
	if (acted(p, b))
		return;
	if (w && w->want != WANT_NONE)
		add(p, ACTION_WANT_DROPPED, b, 0, "the build is undeploying");
	/* objects being applied would come back after the cleanup deleted
	 * them: every other call on the build ends first */
	if (!b->has_finalizer || (w && w->cleaned) ||
	    policy_held(w, b,
			WORK_CLEAN | WORK_RESET | WORK_INIT | WORK_SCALE | WORK_PATCH | WORK_DEPLOY,
			p->in->now_ms))
		return;
	const struct index *idx = p->in->idx;
	const struct build_job *init = index_job(idx, b->name, BUILD_JOB_INITIALIZE);
	const struct build_job *cleanup = index_job(idx, b->name, BUILD_JOB_CLEANUP);
	if (w && w->force_undeploy)
		add(p, ACTION_CLEAN_DELETE, b, 0, "undeploy forced: no cleanup job");
	else if (init && !init->deleting)
		add(p, ACTION_CLEAN_KILL_INIT, b, 0, "stopping its initialization");
	else if (b->desired_replicas > 0)
		add(p, ACTION_CLEAN_SCALE_DOWN, b, 0, "scaling down before the cleanup");
	else if (!cleanup || cleanup->deleting)
		add(p, ACTION_CLEAN_APPLY, b, 0, "cleaning up");
	else if (cleanup->state == BUILD_JOB_FAILED) {
		if (!w || w->cleanup_retries < POLICY_CLEANUP_RETRIES)
			add(p, ACTION_CLEAN_RETRY, b, 0, "its cleanup job failed: trying again");
		else if (!w->cleanup_failed_reported)
			add(p, ACTION_CLEANUP_FAILED, b, 0, "its cleanup job failed");
	} else if (cleanup->state == BUILD_JOB_SUCCEEDED)
		add(p, ACTION_CLEAN_DELETE, b, 0, "cleaned up");
}

/* ---- the limits ---- */

/* Whether a todo build holds an initialization slot: its Job exists, or
 * is being (or was just) created. */
static bool holds_slot(struct pass *p, const struct build *b)
{
	const struct build_work *w = work_of(p, b);
	const struct build_job *job = index_job(p->in->idx, b->name, BUILD_JOB_INITIALIZE);
	if (job && !job->deleting)
		return true;
	return w && ((w->ops & WORK_INIT) || (w->init_applied && !job));
}

static void wake_at(struct pass *p, int64_t at)
{
	if (!p->out->wake_wall_ms || at < p->out->wake_wall_ms)
		p->out->wake_wall_ms = at;
}

static void initializer(struct pass *p)
{
	const struct index *idx = p->in->idx;
	size_t used = index_count_init(idx, BUILD_INIT_STARTED);
	const struct build *b;
	for (b = index_next_to_initialize(idx, NULL); b; b = index_next_to_initialize(idx, b))
		if (holds_slot(p, b))
			used++;
	size_t max = p->in->limits.max_initializing;
	for (b = index_next_to_initialize(idx, NULL); b && used < max;
	     b = index_next_to_initialize(idx, b)) {
		const struct build_work *w = work_of(p, b);
		/* a deploy still applying (its Deployment may be seen before the
		 * apply's answer) or its other objects still to apply: wait,
		 * else the initialization applies them all again */
		if (acted(p, b) || holds_slot(p, b) ||
		    held(p, b, WORK_DEPLOY | WORK_RESET | WORK_UNDEPLOY | WORK_PATCH) ||
		    (w && (w->want_undeploy || w->init_refused || w->rest_pending)))
			continue;
		const struct build *newest =
			index_newest(idx, b->commit.repo, b->commit.target_branch, b->commit.pr);
		if (newest && newest != b && newest->created_ms > b->created_ms) {
			add(p, ACTION_UNDEPLOY, b, 0, "a newer commit of its branch or PR was pushed");
			continue;
		}
		if (p->in->debounce_ms && b->created_ms + p->in->debounce_ms > p->in->wall_ms) {
			/* a newer push may come: wait, without holding a slot */
			wake_at(p, b->created_ms + p->in->debounce_ms);
			continue;
		}
		if (p->in->objects_pending && used >= POLICY_OBJECTS_FIRST_INITS &&
		    b->created_ms + POLICY_OBJECTS_FIRST_MS > p->in->wall_ms) {
			/* the burst's objects first; a pass comes when they are
			 * applied (each result marks its build dirty) */
			wake_at(p, b->created_ms + POLICY_OBJECTS_FIRST_MS);
			continue;
		}
		add(p, ACTION_INITIALIZE, b, 0, "its turn came");
		used++;
	}
}

/* Started builds idle (not started again) for stop_idle_after are stopped;
 * the least recently scaled come first in that queue, so the walk stops at
 * the first one still in use. */
static void idle_stopper(struct pass *p)
{
	int64_t idle = p->in->limits.stop_idle_after_ms;
	if (!idle)
		return;
	const struct index *idx = p->in->idx;
	for (const struct build *b = index_next_started(idx, NULL); b; b = index_next_started(idx, b)) {
		int64_t until = build_last_scaled(b) * 1000 + idle;
		if (until > p->in->wall_ms) {
			wake_at(p, until);
			break;
		}
		if (b->desired_replicas == 0 || acted(p, b) || held(p, b, WORK_SCALE | WORK_RESET))
			continue;
		add(p, ACTION_STOP, b, 0, "idle for longer than stop_idle_after");
		p->idle_stops++;
	}
}

static void stopper(struct pass *p)
{
	const struct index *idx = p->in->idx;
	size_t running =
		index_count_status(idx, BUILD_STARTED) + index_count_status(idx, BUILD_STARTING);
	size_t max = p->in->limits.max_started;
	const struct build *b;
	/* the idle ones stopped above do not count */
	running = running > p->idle_stops ? running - p->idle_stops : 0;
	if (running <= max)
		return;
	/* builds whose stop is on its way do not count */
	for (b = index_next_started(idx, NULL); b; b = index_next_started(idx, b)) {
		const struct build_work *w = work_of(p, b);
		if (w && w->stopping && (w->ops & WORK_SCALE) && running > 0)
			running--;
	}
	for (b = index_next_started(idx, NULL); b && running > max; b = index_next_started(idx, b)) {
		if (b->desired_replicas == 0 || acted(p, b) || held(p, b, WORK_SCALE | WORK_RESET))
			continue;
		add(p, ACTION_STOP, b, 0, "more builds started than max_started");
		running--;
	}
}

/* Whether b's undeploy is asked or on its way: as good as gone. */
static bool going(struct pass *p, const struct build *b)
{
	const struct build_work *w = work_of(p, b);
	return w && (w->want_undeploy || (w->ops & WORK_UNDEPLOY));
}

/* At most max_deployed_per_ref builds of the branch or PR of b: the oldest
 * beyond it are undeployed, never the newest. seen holds the refs done. */
static void cap_ref(struct pass *p, const struct build *b, struct strmap *seen)
{
	const struct index *idx = p->in->idx;
	const struct build *newest =
		index_newest(idx, b->commit.repo, b->commit.target_branch, b->commit.pr);
	if (!newest || strmap_get(seen, newest->name))
		return;
	strmap_put(seen, newest->name, (void *)1);
	size_t kept = 0, max = p->in->limits.max_deployed_per_ref;
	for (const struct build *o = newest; o; o = index_older_of_ref(idx, o)) {
		if (going(p, o))
			continue;
		if (kept < max) {
			kept++;
			continue;
		}
		if (acted(p, o) || held(p, o, WORK_UNDEPLOY | WORK_SCALE | WORK_RESET))
			continue;
		add(p, ACTION_UNDEPLOY, o, 0, "more builds of its branch or PR than max_deployed_per_ref");
	}
}

/* The per-branch cap, on the branches and PRs of the dirty builds (a new
 * build is dirty, and every build is at a full resync). */
static void ref_capper(struct pass *p)
{
	if (!p->in->limits.max_deployed_per_ref)
		return;
	struct strmap seen = {0};
	for (size_t i = 0; i < p->in->n_dirty; i++) {
		const struct build *b = index_find(p->in->idx, p->in->dirty[i]);
		if (b && !b->deleting)
			cap_ref(p, b, &seen);
	}
	strmap_clear(&seen, NULL);
}

static void undeployer(struct pass *p)
{
	const struct index *idx = p->in->idx;
	size_t deployed = index_deployed(idx);
	size_t max = p->in->limits.max_deployed;
	/* undeploys asked or on their way, and the ones the initializer
	 * planned above, are as good as done */
	deployed = deployed > p->in->pending_undeploys ? deployed - p->in->pending_undeploys : 0;
	for (size_t i = 0; i < p->out->n; i++) {
		const struct action *a = &p->out->v[i];
		const struct build_work *w = work_of(p, a->b);
		if (a->kind == ACTION_UNDEPLOY && !(w && (w->want_undeploy || (w->ops & WORK_UNDEPLOY))) &&
		    deployed > 0)
			deployed--;
	}
	for (const struct build *b = index_next_undeployable(idx, NULL); b && deployed > max;
	     b = index_next_undeployable(idx, b)) {
		const struct build_work *w = work_of(p, b);
		if (acted(p, b) || held(p, b, WORK_UNDEPLOY | WORK_SCALE | WORK_RESET) ||
		    (w && w->want_undeploy))
			continue;
		add(p, ACTION_UNDEPLOY, b, 0, "more builds deployed than max_deployed");
		deployed--;
	}
}

/* ---- the pass ---- */

void policy_plan(const struct policy_input *in, struct plan *out)
{
	struct pass p = {.in = in, .out = out};
	for (size_t i = 0; i < in->n_dirty; i++) {
		const struct build *b = index_find(in->idx, in->dirty[i]);
		if (b && !b->deleting)
			reconcile(&p, b);
	}
	for (const struct build *b = index_next_undeploying(in->idx, NULL); b;
	     b = index_next_undeploying(in->idx, b))
		clean(&p, b);
	ref_capper(&p);
	initializer(&p);
	idle_stopper(&p);
	stopper(&p);
	undeployer(&p);
	strmap_clear(&p.acted, NULL);
}

void plan_free(struct plan *p)
{
	free(p->v);
	*p = (struct plan){0};
}
