/* The controller: keeps the builds of the namespace moving through their
 * lifecycle (DESIGN.md, "Lifecycle" and "Failures"), level-triggered.
 *
 * The feed (src/feed.h) keeps the build index equal to Kubernetes. Any
 * change, and any action asked by the API or a webhook, marks the builds
 * concerned and schedules one coalesced pass: the policy (src/policy.h, a
 * pure function) plans what to do from the index and the controller's
 * per-build work state, and the executor (src/actions.h) carries each step
 * out as a chain of Kubernetes calls. Each outcome is fed back:
 * - success: the step is done (what asked for it is told);
 * - a transient failure (time-out, connection error, 5xx, 429, conflict):
 *   the build is retried after a capped, jittered exponential backoff, for
 *   as long as the step is still wanted, and says so (the build's "reason");
 * - a permanent refusal (a 4xx that says the objects are invalid): no more
 *   retries until the Deployment changes; the build shows the reason, an
 *   initialization refused for good marks the build failed with it, the log
 *   and GitHub are told.
 * Passes are idempotent and nothing acts before the feed has synced, so a
 * restart at any point is harmless: every durable fact lives in the
 * Deployment's labels and annotations, object names are deterministic, and
 * the work state only keeps one process from asking the same thing twice. */
#ifndef RUNBOAT_CONTROLLER_H
#define RUNBOAT_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "build.h"
#include "index.h"

struct config;
struct controller;
struct github_client;
struct kube;
struct kubefiles_cache;

/* What the controller works with; all borrowed, outliving the controller. */
struct controller_deps {
	uv_loop_t *loop;
	const struct config *cfg;
	struct index *idx;
	struct kube *kube;            /* NULL: Kubernetes is not configured */
	const char *kube_error;       /* why kube is NULL (for /readyz) */
	struct github_client *github; /* NULL: no GitHub API */
	struct kubefiles_cache *kubefiles;
	const struct build_links *links;
};

/* Tunables, mostly for tests; zero means the default. */
struct controller_opts {
	uint64_t resync_ms;      /* full pass period: 60000 */
	uint64_t retry_ms;       /* first backoff after a transient failure: 1000 */
	uint64_t retry_max_ms;   /* cap of the backoff: 300000 */
	uint64_t deploy_wait_ms; /* how long a deploy's caller waits for its
	                          * Deployment to exist: 8000 */
	uint64_t action_wait_ms; /* how long start/stop/reset/undeploy wait to
	                          * be applied: 20000 */
};

/* The outcome of an asynchronous action: error 0, or a negative errno with
 * a message (borrowed during the call):
 *   -EIO        Kubernetes refused the change for good: it was not applied
 *   -ETIMEDOUT  not applied within the wait: runboat keeps trying, the
 *               change will be made (unless superseded)
 *   -EBUSY      superseded, or the build left the state that allowed it
 *   -ENOENT     the build is gone
 *   -ECANCELED  runboat is stopping */
typedef void (*controller_done_cb)(int error, const char *message, void *data);

struct controller *controller_new(const struct controller_deps *d, const struct controller_opts *o);
/* Starts the feed. */
void controller_start(struct controller *c);
/* Stops the feed and the timers; cancels what is in flight (every waiting
 * callback runs with -ECANCELED before this returns). The controller is
 * freed once the loop has closed its handles. */
void controller_free(struct controller *c);

/* True once the feed has synced; otherwise *reason says what is missing
 * (static or owned by the controller). Reads (the index) need no more. */
bool controller_ready(const struct controller *c, const char **reason);

/* Leader election (src/lease.h). A controller is active from creation.
 * Inactive (a standby, or a leader that could not renew in time), it keeps
 * its feed (the index stays current for reads) but nothing reaches
 * Kubernetes or GitHub: calls in flight are cancelled, waiting callers get
 * -EAGAIN, the work state is dropped, GitHub statuses are held
 * (github_client_hold_statuses), and every action and deploy answers
 * -EAGAIN with why (copied: "standby: leader is X") in its message. Made
 * active again, it runs a full pass at once from what the index says. */
void controller_set_active(struct controller *c, bool active, const char *why);
/* True while active; otherwise *reason is the why given (owned by the
 * controller, valid until the next controller_set_active). */
bool controller_leading(const struct controller *c, const char **reason);

/* Results of the actions: 0 (asynchronous: cb, when there is one, will be
 * called exactly once, never from inside the call), 1 (nothing to do, say
 * err; cb is not called), or
 *   -ENOENT    no such build (404)
 *   -EBUSY     the build is not in a state that allows it (409)
 *   -EAGAIN    not synced with Kubernetes yet, or too much in flight (503)
 *   -ENOTSUP   repo/branch not configured (the webhook answers 2xx, nothing done)
 *   -EINVAL    invalid input (400)
 * with a message in err. */

/* Deploys a commit unless a build of it exists or is being deployed. cb
 * (may be NULL) is told once the build's Deployment exists (0, "deployed as
 * NAME"), when Kubernetes refused it (-EIO), or when it is still not made
 * after deploy_wait_ms (-ETIMEDOUT: runboat keeps trying). */
int controller_deploy(struct controller *c, const struct build_commit *commit,
		      controller_done_cb cb, void *data, char *err, size_t errlen);
/* When the newest deploy of that branch or PR (pr 0: a branch) still on its
 * way to the index was asked (wall-clock ms), or 0 if none is: a deploy
 * asked after a listing of GitHub's heads is newer than the listing. */
int64_t controller_deploy_pending(const struct controller *c, const char *repo,
				  const char *target_branch, int pr);
/* Resolves the head of a branch or PR through GitHub, then deploys it; the
 * answer comes through cb as for controller_deploy (or a GitHub error). */
int controller_trigger(struct controller *c, const char *repo, const char *branch, long pr,
		       controller_done_cb cb, void *data, char *err, size_t errlen);

/* Builds the head of a PR again (a "/runboat rebuild" comment by user):
 * resolves the head through GitHub; when that commit has a build, resets it
 * (initialized again), else deploys it. A pending commit status says who
 * asked. cb as for controller_trigger; the message says which. */
int controller_rebuild_pr(struct controller *c, const char *repo, long pr, const char *user,
			  controller_done_cb cb, void *data, char *err, size_t errlen);

/* Start, stop, reset and undeploy one build: cb is told once Kubernetes took
 * the change (0), or as above. A second ask while one is on its way waits
 * for the same outcome; a start supersedes a stop not yet applied and the
 * other way round (the superseded one gets -EBUSY). */
int controller_start_build(struct controller *c, const char *name, controller_done_cb cb,
			   void *data, char *err, size_t errlen);
int controller_stop_build(struct controller *c, const char *name, controller_done_cb cb,
			  void *data, char *err, size_t errlen);
int controller_reset_build(struct controller *c, const char *name, controller_done_cb cb,
			   void *data, char *err, size_t errlen);
int controller_undeploy_build(struct controller *c, const char *name, controller_done_cb cb,
			      void *data, char *err, size_t errlen);
/* Undeploys one build without its cleanup Job (an admin's way out of a
 * cleanup that keeps failing): every object of the build is deleted and the
 * finalizer removed. For a build undeploying already, returns 1 at once with
 * err saying so (cb is not called); else as controller_undeploy_build. */
int controller_force_undeploy_build(struct controller *c, const char *name, controller_done_cb cb,
				    void *data, char *err, size_t errlen);
/* Undeploys every build matching f (before the sync: once synced); returns
 * how many were asked. */
size_t controller_undeploy_matching(struct controller *c, const struct index_filter *f);

/* The log of a build's job_kind Job pod ("initialize", "cleanup"), or of
 * its Odoo pod (job_kind NULL); for "initialize", once the pod is gone, the
 * log kept when its Job ended (init_log.h): the
 * text comes through cb (borrowed during the call), or an error (-ENOENT:
 * no pod; -EIO). Returns 0 with *out set (cancel it with
 * controller_cancel_log, after which cb does not run), -EAGAIN when
 * CONTROLLER_MAX_LOGS logs are being fetched already (each may hold up to
 * 4 MiB), -ECANCELED when there is no Kubernetes client. */
#define CONTROLLER_MAX_LOGS 16
struct controller_log;
typedef void (*controller_log_cb)(int error, const char *message, const char *text, size_t len,
				  void *data);
int controller_log(struct controller *c, const char *name, const char *job_kind,
		   controller_log_cb cb, void *data, struct controller_log **out);
void controller_cancel_log(struct controller_log *l);

#endif
