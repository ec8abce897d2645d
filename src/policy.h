/* The controller's decisions: what one pass will do, as a pure function of
 * the build index, the controller's per-build work state, the limits and the
 * time (DESIGN.md, "Lifecycle"). No I/O, no clock, no allocation visible to
 * the caller beyond the plan: src/controller.c executes the plan through
 * src/actions.c and feeds each outcome back into the work state, which the
 * next pass reads. test/unit/test_policy.c checks it on fixtures and against
 * a brute-force model.
 *
 * A pass looks at
 * - the builds marked dirty (something changed, or their backoff ended):
 *   init Job events become init-status patches, actions asked through the
 *   API (start, stop, reset, undeploy) become calls, a step refused for good
 *   becomes "failed" with its reason; a build asked to run (replicas 1)
 *   whose pod restarted max_restarts times is stopped, with the reason
 *   POLICY_CRASH_REASON (recorded in runboat/reason: a stop for good,
 *   not retried by anyone but a person starting it again); an initialized
 *   build scaled up by someone else while still paused as deployed (no pod
 *   would come) is started, which unpauses it;
 * - every undeploying build: the next step of its cleanup;
 * - the cap per branch or PR (max_deployed_per_ref), on the branches and PRs
 *   of the dirty builds: the oldest beyond it are undeployed, whatever
 *   their state, never the newest;
 * - the three limits: the initializer (oldest todo first, within
 *   max_initializing; a queued build made obsolete by a newer commit of its
 *   branch or PR is undeployed instead), the stopper (least recently scaled
 *   first, within max_started) and the undeployer (least recently scaled
 *   stopped or failed builds, never the newest of a branch or PR, within
 *   max_deployed).
 * A build with a call in flight that the action would conflict with, or
 * waiting out its backoff after a failure, is left alone: it neither holds
 * nor blocks an initialization slot. */
#ifndef RUNBOAT_POLICY_H
#define RUNBOAT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "build.h"
#include "index.h"

/* What is in flight for one build (bits of build_work.ops). */
enum work_op {
	WORK_DEPLOY = 1 << 0,   /* applying deployment mode for a new build */
	WORK_INIT = 1 << 1,     /* applying initialize mode */
	WORK_PATCH = 1 << 2,    /* an init-status patch */
	WORK_SCALE = 1 << 3,    /* start or stop */
	WORK_RESET = 1 << 4,
	WORK_UNDEPLOY = 1 << 5, /* the DELETE of the Deployment */
	WORK_CLEAN = 1 << 6,    /* a step of the cleanup */
};

/* A start or stop asked for a build (through the API, or right after its
 * initialization), kept until it is applied, refused, or superseded. */
enum work_want { WANT_NONE, WANT_START, WANT_STOP };

/* The controller's memory of one build, beside what Kubernetes says. */
struct build_work {
	unsigned ops;          /* enum work_op bits in flight */
	uint64_t retry_at_ms;  /* after a transient failure: left alone until then */
	unsigned failures;     /* transient failures in a row (the backoff's attempt) */
	/* the resourceVersion one of our patches was based on: until the
	 * informer shows a newer Deployment, the index is behind our own
	 * change and the build is left alone */
	char stale_rv[32];
	/* patches refused in a row because the index was behind (each one
	 * waits for the Deployment to change, not for a backoff) */
	unsigned behind;
	uint64_t behind_until_ms; /* should the index not move, the hold ends then */
	/* a step was refused for good while the Deployment was at this
	 * resourceVersion: no retry until the Deployment changes */
	char blocked_rv[32];
	bool init_applied;     /* initialize applied, its Job not seen yet: holds a slot */
	/* deployment mode's other objects were applied by this process (the
	 * deploy's second step or a reset): the initialization need not apply
	 * them again */
	bool rest_applied;
	/* the Deployment of a new build was applied and its other objects are
	 * queued or being applied: its initialization waits for them, so
	 * that it need not apply them too */
	bool rest_pending;
	bool stopping;         /* a stop is in flight: no longer counts as started */
	bool cleaned;          /* finalizer removed: the Deployment is going, hands off */
	bool cleanup_failed_reported;
	unsigned cleanup_retries; /* failed cleanup Jobs deleted to try again */
	bool force_undeploy;      /* an admin forced the undeploy: no cleanup Job */
	bool clears_crash;        /* this start ends a crash-looping stop: GitHub hears "ready" again */
	enum work_want want;
	bool want_reset;
	bool want_undeploy;
	const char *undeploy_why; /* static */
	/* initialization refused for good: record init-status failed with
	 * this reason (owned by the controller) */
	char *init_refused;
};

/* Failed cleanup Jobs retried (with a growing pause) before the build is
 * shown as "cleanup failed". */
#define POLICY_CLEANUP_RETRIES 3

/* The reason a crash-looping build is stopped with (runboat/reason). */
#define POLICY_CRASH_REASON "crash-looping: its pod restarted max_restarts times; stopped"

/* What the limits are. */
struct policy_limits {
	size_t max_initializing, max_started, max_deployed;
	size_t max_deployed_per_ref; /* builds of one branch or PR; 0: no cap */
	/* a started build is stopped this long after its last start (wall
	 * clock ms, from last_scaled); 0: never */
	int64_t stop_idle_after_ms;
	/* a started build whose Odoo pod restarted this many times (or
	 * more) is stopped as crash-looping; 0: never */
	unsigned max_restarts;
};

/* The work state of a build, or NULL when the controller has none (a build
 * it never touched: nothing in flight, no backoff). */
typedef const struct build_work *(*policy_work_fn)(const char *name, void *data);

struct policy_input {
	const struct index *idx;
	struct policy_limits limits;
	policy_work_fn work;
	void *work_data;
	const char *const *dirty; /* names of the builds to reconcile */
	size_t n_dirty;
	uint64_t now_ms;          /* the clock of retry_at_ms */
	/* builds not being deleted yet whose undeploy is asked (want_undeploy)
	 * or in flight (WORK_UNDEPLOY): the undeployer counts them as gone */
	size_t pending_undeploys;
	/* [github] debounce: a todo build is not initialized before its
	 * created_ms + debounce_ms, on the wall clock wall_ms */
	int64_t debounce_ms;
	int64_t wall_ms;
	/* new builds whose deployment mode is being applied (a Deployment, or
	 * the other objects, queued or in flight): see POLICY_OBJECTS_FIRST_MS */
	size_t objects_pending;
};

/* Objects first. While new builds' objects are being applied, at most
 * POLICY_OBJECTS_FIRST_INITS initializations run (whatever max_initializing
 * says): in a burst of pushes every build gets all its objects before the
 * initialization Jobs, their pods and the starts after them compete with
 * those applies for the apiserver (test/bench/README.md has the figures
 * of a burst of 100 with and without it). A build whose push was accepted
 * (created_ms) POLICY_OBJECTS_FIRST_MS ago or more no longer waits, so that
 * a steady stream of pushes delays an initialization by no more than that. */
#define POLICY_OBJECTS_FIRST_MS 10000
#define POLICY_OBJECTS_FIRST_INITS 2

enum action_kind {
	ACTION_INIT_STATUS,   /* patch runboat/init-status from b's to .to */
	ACTION_INITIALIZE,    /* apply what deployment mode makes besides the
	                       * Deployment (unless .rest_applied), then
	                       * initialize mode */
	ACTION_START,         /* apply start mode, then scale to 1 */
	ACTION_STOP,          /* scale to 0, then apply stop mode */
	ACTION_RESET,         /* delete the init Jobs, apply deployment mode again */
	ACTION_UNDEPLOY,      /* delete the Deployment (its finalizer holds it) */
	ACTION_CLEAN_KILL_INIT,  /* undeploying: delete the init Job */
	ACTION_CLEAN_SCALE_DOWN, /* undeploying: scale to 0 */
	ACTION_CLEAN_APPLY,      /* undeploying: apply cleanup mode */
	ACTION_CLEAN_DELETE,     /* cleanup Job succeeded: delete every object
	                          * of the build, then remove the finalizer */
	ACTION_CLEAN_RETRY,      /* the cleanup Job failed: delete it, so that
	                          * the next pass applies cleanup mode again */
	ACTION_CLEANUP_FAILED,   /* the cleanup Job failed POLICY_CLEANUP_RETRIES
	                          * times more: say so, once */
	ACTION_WANT_DROPPED,     /* a start/stop asked can no longer happen (the
	                          * build was reset or is undeploying) */
};

/* One step of a plan. The build is borrowed from the index: valid until the
 * index changes (the executor only starts calls, so it is valid while the
 * plan is executed). */
struct action {
	enum action_kind kind;
	const struct build *b;
	enum build_init_status to; /* ACTION_INIT_STATUS */
	const char *reason;        /* ACTION_INIT_STATUS to failed: why, recorded
	                            * in runboat/reason (borrowed from the work);
	                            * ACTION_STOP of a crash-looping build:
	                            * POLICY_CRASH_REASON, recorded likewise */
	const char *why;           /* a static phrase for the log */
	bool rest_applied;         /* ACTION_INITIALIZE: deployment mode's other
	                            * objects are known applied (set by the
	                            * controller from its work, not the policy) */
	bool start_too;            /* ACTION_INIT_STATUS to succeeded: start the
	                            * build in the same patch when start mode
	                            * renders nothing (set by the controller) */
};

struct plan {
	struct action *v;
	size_t n, cap;
	/* when a build left waiting by the debounce may be initialized, or a
	 * started build becomes idle (wall clock ms), the earliest; 0 if none */
	int64_t wake_wall_ms;
};

/* The actions of one pass, appended to out (which may hold earlier ones),
 * in the order they should run: per-build reconciles first, then cleanups,
 * the initializer, the stopper, the undeployer. A build appears in at most
 * one action that starts calls. */
void policy_plan(const struct policy_input *in, struct plan *out);

/* Frees the plan's array (not the builds); the plan is empty afterwards. */
void plan_free(struct plan *p);

/* Static names of actions ("initialize", "start", ...), for logs and tests. */
const char *action_kind_str(enum action_kind k);

/* True when w says the build is left alone now: a call among ops is in
 * flight, its backoff has not ended, or a permanent refusal holds it at its
 * current resourceVersion. */
bool policy_held(const struct build_work *w, const struct build *b, unsigned ops, uint64_t now_ms);

#endif
