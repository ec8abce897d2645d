/* The controller's hands: each action of a plan (src/policy.h), and each
 * deploy, carried out as one chain of Kubernetes calls for one build, whose
 * outcome is reported once through the callback given to actions_new. The
 * executor decides nothing: what to do and when to retry is the
 * controller's. */
#ifndef RUNBOAT_ACTIONS_H
#define RUNBOAT_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "build.h"
#include "policy.h"

struct actions;
struct config;
struct index;
struct kube;
struct kubefiles_cache;

/* What the executor works with; all borrowed, outliving it. */
struct actions_deps {
	const struct config *cfg;
	struct index *idx;
	struct kube *kube;
	struct kubefiles_cache *kubefiles;
};

/* The two steps of a deploy, reported like the plan's actions. */
enum deploy_step {
	DEPLOY_DEPLOYMENT, /* the build's Deployment was applied: it exists */
	DEPLOY_REST,       /* every other object of deployment mode was applied */
};

/* What a chain of calls came to. Borrowed: valid during the callback. */
struct action_result {
	const char *name;          /* the build */
	bool deploy;               /* a deploy step (step), else an action (kind) */
	enum action_kind kind;
	enum deploy_step step;
	enum build_init_status to; /* ACTION_INIT_STATUS: the status recorded */
	int error;                 /* 0; -ECANCELED at shutdown; else -EIO */
	bool transient;            /* a time-out, connection error, 5xx, 429 or
	                            * conflict: worth retrying */
	bool maybe_applied;        /* no answer came: the change may have been made */
	/* a JSON patch refused by its test op (409/422): the index was
	 * behind the Deployment, most likely behind our own previous patch */
	bool behind;
	const char *message;       /* what failed, in words ("" on success) */
	/* a patch of the Deployment succeeded while the index still shows the
	 * version it replaced: that version ("" otherwise) */
	const char *stale_rv;
	/* ACTION_INIT_STATUS to succeeded with .start_too: the same patch
	 * scaled the Deployment to 1 (start mode renders nothing) */
	bool started;
};

typedef void (*actions_done_cb)(const struct action_result *r, void *data);

/* A new executor; done is called once per started action or deploy,
 * usually when its last call completes, but from inside the call that
 * started it when none is needed (nothing to apply) or the client is
 * closing: keep the books of an action before starting it. */
struct actions *actions_new(const struct actions_deps *d, actions_done_cb done, void *data);

/* Starts a. Returns 0, or -EINVAL with a message in err when it cannot even
 * start (its kubefiles do not render): a permanent failure, not reported
 * through the callback. Actions that need no call (ACTION_CLEANUP_FAILED,
 * ACTION_WANT_DROPPED) are the controller's, not the executor's. */
int actions_run(struct actions *x, const struct action *a, char *err, size_t errlen);

/* Deploys a new build named name: applies its Deployment and reports
 * DEPLOY_DEPLOYMENT. created_ms orders it among its branch's builds.
 * Returns as actions_run. */
int actions_deploy(struct actions *x, const char *name, const struct build_commit *cm,
		   int64_t created_ms, char *err, size_t errlen);
/* Applies every other object of b's deployment mode and reports
 * DEPLOY_REST. Returns as actions_run. */
int actions_deploy_rest(struct actions *x, const struct build *b, char *err, size_t errlen);

/* Chains in flight. */
size_t actions_in_flight(const struct actions *x);

/* Cancels every chain; no callback runs after this returns. The executor
 * is freed once the last cancelled call has ended. */
void actions_free(struct actions *x);

#endif
