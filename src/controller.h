/* The controller: keeps the builds of the namespace moving through their
 * lifecycle (DESIGN.md, "Lifecycle").
 *
 * Its inputs are two informers (the build Deployments and their Jobs, by the
 * runboat/build label) that feed the build index, and the actions asked by
 * the API and the webhooks. Any change marks the builds concerned and
 * schedules one coalesced pass: each build is reconciled from what
 * Kubernetes says (init job events, undeploy cleanup), then the policies run
 * (initializer within max_initializing, stopper within max_started,
 * undeployer within max_deployed). Passes are idempotent and nothing acts
 * before both informers have synced, so a restart at any point is harmless:
 * every durable fact lives in the Deployment's labels and annotations, object
 * names are deterministic (one "<build>-initialize" Job per build), and an
 * in-flight table only keeps one process from asking the same thing twice. */
#ifndef RUNBOAT_CONTROLLER_H
#define RUNBOAT_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "build.h"
#include "index.h"
#include "kube.h"

struct config;
struct controller;
struct github_client;
struct kubefiles_cache;

/* What the controller works with; all borrowed, outliving the controller. */
/* The outcome of an asynchronous action. */
typedef void (*controller_done_cb)(int error, const char *message, void *data);

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
	uint64_t retry_ms;       /* after a failed action on a build: 5000 */
};

struct controller *controller_new(const struct controller_deps *d, const struct controller_opts *o);
/* Starts the informers. */
void controller_start(struct controller *c);
/* Stops the informers and the timers; cancels what is in flight. The
 * controller is freed once the loop has closed its handles. */
void controller_free(struct controller *c);

/* True once both informers have synced; otherwise *reason says what is
 * missing (static or owned by the controller). */
bool controller_ready(const struct controller *c, const char **reason);

/* Results of the actions: 0 (asynchronous: cb, when there is one, will be
 * called exactly once, never from inside the call, with 0, -EIO and a
 * message when Kubernetes refused, or -ECANCELED at shutdown), 1 (nothing to
 * do, say err; cb is not called), or
 *   -ENOENT    no such build (404)
 *   -EBUSY     the build is not in a state that allows it (409)
 *   -EAGAIN    not synced with Kubernetes yet (503)
 *   -ENOTSUP   repo/branch not configured (the webhook answers 2xx, nothing done)
 *   -EINVAL    invalid input (400)
 * with a message in err. */

/* Deploys a commit unless a build of it exists (or is being deployed):
 * asynchronous, returns once queued. */
int controller_deploy(struct controller *c, const struct build_commit *commit, char *err,
		      size_t errlen);
/* Resolves the head of a branch or PR through GitHub, then deploys it; the
 * answer comes later through cb (error as above, or a GitHub error). */
int controller_trigger(struct controller *c, const char *repo, const char *branch, long pr,
		       controller_done_cb cb, void *data, char *err, size_t errlen);

int controller_start_build(struct controller *c, const char *name, controller_done_cb cb,
			   void *data, char *err, size_t errlen);
int controller_stop_build(struct controller *c, const char *name, controller_done_cb cb,
			  void *data, char *err, size_t errlen);
int controller_reset_build(struct controller *c, const char *name, controller_done_cb cb,
			   void *data, char *err, size_t errlen);
int controller_undeploy_build(struct controller *c, const char *name, controller_done_cb cb,
			      void *data, char *err, size_t errlen);
/* Undeploys every build matching f; returns how many were asked. */
size_t controller_undeploy_matching(struct controller *c, const struct index_filter *f);

/* The log of a build's initialize job pod (init) or of its Odoo pod: the
 * text comes through done (res->raw), or an error (-ENOENT: no pod). The
 * returned call can be cancelled with controller_cancel_log. */
struct controller_log;
typedef void (*controller_log_cb)(int error, const char *message, const char *text, size_t len,
				  void *data);
struct controller_log *controller_log(struct controller *c, const char *name, bool init,
				      controller_log_cb cb, void *data);
/* Stops a log request: its callback will not run. */
void controller_cancel_log(struct controller_log *l);

#endif
