#include "controller.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "actions.h"
#include "backoff.h"
#include "config.h"
#include "events.h"
#include "feed.h"
#include "github_client.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "init_log.h"
#include "pod_log.h"
#include "policy.h"
#include "strmap.h"
#include "util.h"

#define MAX_DEPLOYS 10000       /* deploys in flight at once */
#define MAX_WAITERS 20000       /* callers waiting for an outcome */
#define DEPLOY_FORGET_MS (10 * 60 * 1000)
#define TICK_MS 250
/* the other objects of new builds applied at once, once no Deployment of a
 * new build waits (those answer webhooks) */
#define MAX_RESTS 16
/* test-op refusals in a row waited out on the next change of the
 * Deployment; then the usual backoff */
#define BEHIND_MAX 3

/* A commit being deployed: from the ask until the feed shows its
 * Deployment, so that a redelivery in between does not deploy it twice. */
enum deploy_state {
	DEPLOY_PENDING,  /* to apply (again, after a transient failure) */
	DEPLOY_APPLYING, /* its Deployment is being applied */
	DEPLOY_APPLIED,  /* its Deployment exists; the feed has not shown it yet */
};

struct deploy {
	char *key;  /* commit_key(), the key in c->deploys */
	char name[BUILD_NAME_MAX + 1];
	struct build_commit commit; /* strings owned below */
	char *strings[3];
	int64_t created_ms;
	enum deploy_state state;
	unsigned failures;
	uint64_t retry_at_ms;
	uint64_t since_ms; /* when it entered its state */
	bool told;         /* its Deployed Event was emitted */
};

/* A caller waiting for the outcome of something asked. */
enum wait_kind { WAIT_DEPLOY, WAIT_START, WAIT_STOP, WAIT_RESET, WAIT_UNDEPLOY };

struct waiter {
	struct list link; /* in controller.waiters */
	enum wait_kind kind;
	char name[BUILD_NAME_MAX + 1]; /* the build (a deploy: the name it gets) */
	uint64_t deadline_ms;
	controller_done_cb cb;
	void *data;
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

	struct feed *feed;
	struct actions *actions;
	struct events *events; /* Kubernetes Events of build transitions */
	struct init_log *init_logs; /* init logs kept when the Job ends */
	bool synced;
	bool closing;
	bool sticky_done;
	/* leader election: false while another replica (or none yet) leads;
	 * nothing reaches Kubernetes or GitHub from here then */
	bool active;
	char *standby_why; /* owned; NULL while active */

	uv_timer_t pass_timer, resync_timer, retry_timer, tick_timer;
	int open_handles;
	bool pass_scheduled;
	uint64_t retry_timer_due; /* when retry_timer fires (0: not armed) */
	uint64_t rng;

	struct strmap work;         /* build name -> struct build_work */
	struct strmap dirty;        /* build names to reconcile (value unused) */
	struct strmap backoff;      /* builds waiting out a backoff (value unused) */
	struct strmap undeploys;    /* builds whose undeploy is asked or in flight */
	struct strmap deploys;      /* commit key -> struct deploy (owned) */
	struct strmap deploy_names; /* build name -> the same struct deploy */
	size_t deploys_applying;    /* deploys in DEPLOY_APPLYING */
	struct strmap rests;        /* new builds whose other objects wait (value unused) */
	size_t rests_running;
	struct list waiters; /* struct waiter */
	size_t n_waiters;
	unsigned n_logs; /* pod logs being fetched (controller_log) */
	struct index_filter *queued_undeploys; /* undeploys asked before the sync */
	size_t n_queued_undeploys;
};

static void schedule_pass(struct controller *c);
static void free_deploy(const char *key, void *value, void *data);
static void on_result(const struct action_result *r, void *data);
static void mark_all_dirty(struct controller *c);
static void sticky(struct controller *c);
static void run_rests(struct controller *c);

/* ---- small helpers ---- */

/* init_log's question: the build is undeployed or being undeployed. */
/* The init Job's pod from the pods informer: keeping its log costs one
 * call instead of a list and a read. */
static const char *init_pod(const char *build, const char **container, void *data)
{
	struct controller *c = data;
	return feed_job_pod(c->feed, build, "initialize", container);
}

static bool build_gone(const char *name, void *data)
{
	struct controller *c = data;
	const struct build *b = index_find(c->idx, name);
	return !b || b->deleting;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *commit_key(const struct build_commit *cm)
{
	char *k = xasprintf("%s\n%s\n%d\n%s", cm->repo, cm->target_branch, cm->pr, cm->git_commit);
	for (char *p = k; *p && *p != '\n'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return k;
}

static struct build_work *work_get(struct controller *c, const char *name)
{
	struct build_work *w = strmap_get(&c->work, name);
	if (!w) {
		w = xcalloc(1, sizeof *w);
		strmap_put(&c->work, name, w);
	}
	return w;
}

static void work_free(void *v)
{
	struct build_work *w = v;
	if (w)
		free(w->init_refused);
	free(w);
}

static const struct build_work *work_lookup(const char *name, void *data)
{
	struct controller *c = data;
	return strmap_get(&c->work, name);
}

static void mark_dirty(struct controller *c, const char *name)
{
	strmap_put(&c->dirty, name, (void *)1);
	schedule_pass(c);
}

/* True (with the message in err) when this replica stands by. */
static bool standby(const struct controller *c, char *err, size_t errlen)
{
	if (c->active)
		return false;
	snprintf(err, errlen, "%s: this replica stands by, only the leader acts",
		 c->standby_why ? c->standby_why : "standby");
	return true;
}

static void post_status(struct controller *c, const char *name, const struct build_commit *cm,
			const char *state, const char *description)
{
	if (!c->github)
		return;
	/* the live link: it wakes a stopped build, and leads to the newest
	 * build of the branch or PR once this one is gone (ui.h) */
	struct buf url = {0};
	buf_printf(&url, "%s/builds/", c->links->base_url);
	buf_append_url_encoded(&url, name);
	buf_printf(&url, "?live&repo=");
	buf_append_url_encoded(&url, cm->repo);
	buf_printf(&url, "&target_branch=");
	buf_append_url_encoded(&url, cm->target_branch);
	if (cm->pr)
		buf_printf(&url, "&pr=%d", cm->pr);
	github_client_post_status(c->github, cm->repo, cm->git_commit, state, description, url.data);
	buf_free(&url);
}

/* A GitHub status description: at most 140 characters, on a UTF-8
 * character boundary. */
static void short_description(char *out, size_t outlen, const char *prefix, const char *text)
{
	snprintf(out, outlen, "%s%s", prefix, text);
	size_t n = strlen(out);
	if (n > 140) {
		n = utf8_cut(out, n, 137);
		memcpy(out + n, "...", 4);
	}
}

/* The delay before the n-th retry (n >= 1): capped, jittered, exponential. */
static uint64_t retry_delay(struct controller *c, unsigned n)
{
	uint64_t d = c->opts.retry_ms;
	for (unsigned i = 1; i < n && d < c->opts.retry_max_ms; i++)
		d *= 2;
	if (d > c->opts.retry_max_ms)
		d = c->opts.retry_max_ms;
	return d - (uint64_t)((double)d * 0.25 * backoff_random(&c->rng));
}

static void on_retry(uv_timer_t *t);

/* Makes sure the retry timer fires by when. */
static void arm_retry(struct controller *c, uint64_t when)
{
	if (c->closing)
		return;
	if (c->retry_timer_due && c->retry_timer_due <= when)
		return;
	uint64_t now = now_ms();
	c->retry_timer_due = when;
	uv_timer_start(&c->retry_timer, on_retry, when > now ? when - now : 0, 0);
}

/* ---- waiters ---- */

static void on_tick(uv_timer_t *t);

static int add_waiter(struct controller *c, enum wait_kind kind, const char *name,
		      controller_done_cb cb, void *data, char *err, size_t errlen)
{
	if (!cb)
		return 0;
	if (c->n_waiters >= MAX_WAITERS) {
		snprintf(err, errlen, "too many requests waiting for Kubernetes");
		return -EAGAIN;
	}
	struct waiter *w = xcalloc(1, sizeof *w);
	w->kind = kind;
	snprintf(w->name, sizeof w->name, "%s", name);
	w->deadline_ms = now_ms() + (kind == WAIT_DEPLOY ? c->opts.deploy_wait_ms
							 : c->opts.action_wait_ms);
	w->cb = cb;
	w->data = data;
	list_push(&c->waiters, &w->link);
	c->n_waiters++;
	if (!uv_is_active((uv_handle_t *)&c->tick_timer))
		uv_timer_start(&c->tick_timer, on_tick, TICK_MS, TICK_MS);
	return 0;
}

/* Takes the waiters that match out of the list, into out (in order). */
static void take_waiters(struct controller *c, struct list *out,
			 bool (*match)(const struct waiter *w, const void *arg), const void *arg)
{
	list_init(out);
	struct waiter *w, *tmp;
	list_each_safe(w, tmp, &c->waiters, link)
	{
		if (match(w, arg)) {
			list_remove(&w->link);
			list_push(out, &w->link);
			c->n_waiters--;
		}
	}
}

struct wait_match {
	enum wait_kind kind;
	bool all;
	const char *name;
};

static bool matches(const struct waiter *w, const void *arg)
{
	const struct wait_match *m = arg;
	return (m->all || w->kind == m->kind) && strcmp(w->name, m->name) == 0;
}

/* Tells the waiters of (kind, name) the outcome; every kind when all. */
static void tell(struct controller *c, enum wait_kind kind, bool all, const char *name, int error,
		 const char *message)
{
	/* taken out first: a callback may ask the controller again */
	struct list told;
	struct wait_match m = {kind, all, name};
	take_waiters(c, &told, matches, &m);
	struct waiter *w, *tmp;
	list_each_safe(w, tmp, &told, link)
	{
		w->cb(error, message, w->data);
		free(w);
	}
}

static const char *wait_timeout_message(enum wait_kind kind)
{
	switch (kind) {
	case WAIT_DEPLOY:
		return "Kubernetes has not recorded the build in time; runboat keeps trying "
		       "(a redelivery is harmless)";
	case WAIT_START:
		return "Kubernetes has not confirmed the start in time; runboat keeps trying";
	case WAIT_STOP:
		return "Kubernetes has not confirmed the stop in time; runboat keeps trying";
	case WAIT_RESET:
		return "Kubernetes has not confirmed the reset in time; runboat keeps trying";
	case WAIT_UNDEPLOY:
		return "Kubernetes has not confirmed the undeploy in time; runboat keeps trying";
	}
	return "time-out";
}

static bool late(const struct waiter *w, const void *arg)
{
	return *(const uint64_t *)arg >= w->deadline_ms;
}

static void on_tick(uv_timer_t *t)
{
	struct controller *c = t->data;
	uint64_t now = now_ms();
	struct list due;
	take_waiters(c, &due, late, &now);
	struct waiter *w, *tmp;
	list_each_safe(w, tmp, &due, link)
	{
		char msg[512];
		const struct build *b = index_find(c->idx, w->name);
		snprintf(msg, sizeof msg, "%s%s%s", wait_timeout_message(w->kind),
			 b && b->note ? ": " : "", b && b->note ? b->note : "");
		w->cb(-ETIMEDOUT, msg, w->data);
		free(w);
	}
	if (list_empty(&c->waiters))
		uv_timer_stop(&c->tick_timer);
}

/* ---- deploys ---- */

static struct deploy *deploy_new(struct controller *c, const char *key,
				 const struct build_commit *cm, const char *name)
{
	struct deploy *d = xcalloc(1, sizeof *d);
	d->key = xstrdup(key);
	snprintf(d->name, sizeof d->name, "%s", name);
	d->strings[0] = xstrdup(cm->repo);
	for (char *p = d->strings[0]; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	d->strings[1] = xstrdup(cm->target_branch);
	d->strings[2] = xstrdup(cm->git_commit);
	d->commit = (struct build_commit){d->strings[0], d->strings[1], cm->pr, d->strings[2]};
	d->created_ms = wall_ms();
	d->state = DEPLOY_PENDING;
	d->since_ms = now_ms();
	strmap_put(&c->deploys, key, d);
	strmap_put(&c->deploy_names, d->name, d);
	return d;
}

static void deploy_forget(struct controller *c, struct deploy *d)
{
	strmap_del(&c->deploys, d->key);
	if (strmap_get(&c->deploy_names, d->name) == d)
		strmap_del(&c->deploy_names, d->name);
	free(d->key);
	for (size_t i = 0; i < ARRAY_SIZE(d->strings); i++)
		free(d->strings[i]);
	free(d);
}

int controller_deploy(struct controller *c, const struct build_commit *cm, controller_done_cb cb,
		      void *data, char *err, size_t errlen)
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
	if (!c->kube) {
		snprintf(err, errlen, "Kubernetes is not configured");
		return -EAGAIN;
	}
	if (standby(c, err, errlen))
		return -EAGAIN;
	const struct build *b =
		index_find_commit(c->idx, cm->repo, cm->target_branch, cm->pr, cm->git_commit);
	if (b && !b->deleting) {
		snprintf(err, errlen, "already deployed as %s", b->name);
		return 1;
	}
	char *key = commit_key(cm);
	struct deploy *d = strmap_get(&c->deploys, key);
	if (d && d->state == DEPLOY_APPLIED) {
		free(key);
		snprintf(err, errlen, "already deployed as %s", d->name);
		return 1;
	}
	if (!d) {
		if (c->deploys.count >= MAX_DEPLOYS) {
			free(key);
			snprintf(err, errlen, "too many deploys in flight");
			return -EAGAIN;
		}
		char *name = build_new_name();
		if (!name) {
			free(key);
			snprintf(err, errlen, "cannot draw a build name: no randomness");
			return -EAGAIN;
		}
		d = deploy_new(c, key, cm, name);
		free(name);
		schedule_pass(c);
	}
	free(key);
	int rc = add_waiter(c, WAIT_DEPLOY, d->name, cb, data, err, errlen);
	if (rc)
		return rc;
	snprintf(err, errlen, c->synced ? "deploying as %s" : "deploying as %s once synced with "
							      "Kubernetes", d->name);
	return 0;
}

/* The deploys that pick says yes to (an array to free, its length in *n):
 * taken out first, as what is done with them may forget them. */
struct deploy_pick {
	bool (*pick)(const struct deploy *d, uint64_t now);
	uint64_t now;
	struct deploy **v;
	size_t n;
};

static void pick_one(const char *key, void *value, void *data)
{
	UNUSED(key);
	struct deploy_pick *p = data;
	if (p->pick(value, p->now))
		p->v[p->n++] = value;
}

static struct deploy **deploys_where(struct controller *c,
				     bool (*pick)(const struct deploy *d, uint64_t now), size_t *n)
{
	struct deploy_pick p = {pick, now_ms(), NULL, 0};
	p.v = xcalloc(c->deploys.count ? c->deploys.count : 1, sizeof *p.v);
	strmap_each(&c->deploys, pick_one, &p);
	*n = p.n;
	return p.v;
}

static bool due(const struct deploy *d, uint64_t now)
{
	return d->state == DEPLOY_PENDING && d->retry_at_ms <= now;
}


struct pending_ctx {
	const char *repo, *target_branch;
	int pr;
	int64_t newest;
};

static void newest_pending(const char *key, void *value, void *data)
{
	UNUSED(key);
	const struct deploy *d = value;
	struct pending_ctx *x = data;
	if (d->commit.pr == x->pr && strcasecmp(d->commit.repo, x->repo) == 0 &&
	    strcmp(d->commit.target_branch, x->target_branch) == 0 && d->created_ms > x->newest)
		x->newest = d->created_ms;
}

int64_t controller_deploy_pending(const struct controller *c, const char *repo,
				  const char *target_branch, int pr)
{
	struct pending_ctx x = {repo, target_branch, pr, 0};
	strmap_each(&c->deploys, newest_pending, &x);
	return x.newest;
}

struct rest_ctx {
	struct controller *c;
	const char **start, **drop;
	size_t n_start, n_drop, room;
};

static void pick_rest(const char *name, void *value, void *data)
{
	UNUSED(value);
	struct rest_ctx *x = data;
	const struct build *b = index_find(x->c->idx, name);
	if (b && b->deleting)
		x->drop[x->n_drop++] = name;
	else if (b && x->n_start < x->room)
		x->start[x->n_start++] = name;
	/* not shown by the feed yet: later */
}

/* The other objects of name will not be applied by the queue (its build is
 * being deleted, or its Deployment never showed up): no longer pending. */
static void drop_rest(struct controller *c, const char *name)
{
	struct build_work *w = strmap_get(&c->work, name);
	if (w)
		w->rest_pending = false;
	strmap_del(&c->rests, name);
}

/* Applies the other objects of new builds, a few at a time. */
static void run_rests(struct controller *c)
{
	if (!c->rests.count || c->rests_running >= MAX_RESTS)
		return;
	struct rest_ctx x = {.c = c, .room = MAX_RESTS - c->rests_running};
	x.start = xcalloc(c->rests.count, sizeof *x.start);
	x.drop = xcalloc(c->rests.count, sizeof *x.drop);
	strmap_each(&c->rests, pick_rest, &x);
	for (size_t i = 0; i < x.n_start; i++) {
		const struct build *b = index_find(c->idx, x.start[i]);
		char err[512];
		struct build_work *w = work_get(c, b->name);
		/* counted before: with nothing to apply, the result comes
		 * from inside the call */
		c->rests_running++;
		w->ops |= WORK_DEPLOY;
		if (actions_deploy_rest(c->actions, b, err, sizeof err) != 0) {
			c->rests_running--;
			w->ops &= ~(unsigned)WORK_DEPLOY;
			log_warn("build %s: %s; its initialization applies it", b->name, err);
			w->rest_pending = false;
			mark_dirty(c, b->name);
		}
		strmap_del(&c->rests, x.start[i]); /* after: the key is the map's */
	}
	for (size_t i = 0; i < x.n_drop; i++)
		drop_rest(c, x.drop[i]);
	free(x.start);
	free(x.drop);
}

/* Starts the deploys that are due; forgets those that a build already covers. */
static void run_deploys(struct controller *c)
{
	size_t n;
	struct deploy **todo = deploys_where(c, due, &n);
	uint64_t now = now_ms();
	for (size_t i = 0; i < n; i++) {
		struct deploy *d = todo[i];
		const struct build *b = index_find_commit(c->idx, d->commit.repo, d->commit.target_branch,
							  d->commit.pr, d->commit.git_commit);
		if (b && !b->deleting) {
			char msg[128];
			snprintf(msg, sizeof msg, "already deployed as %s", b->name);
			tell(c, WAIT_DEPLOY, false, d->name, 0, msg);
			deploy_forget(c, d);
			continue;
		}
		char err[512];
		/* set before: the result may come from inside the call (the
		 * client closing), and d is not touched after it */
		enum deploy_state was = d->state;
		uint64_t was_since = d->since_ms;
		d->state = DEPLOY_APPLYING;
		d->since_ms = now;
		c->deploys_applying++;
		struct build_work *w = work_get(c, d->name);
		w->ops |= WORK_DEPLOY;
		int rc = actions_deploy(c->actions, d->name, &d->commit, d->created_ms, err, sizeof err);
		if (rc) {
			d->state = was;
			d->since_ms = was_since;
			c->deploys_applying--;
			w->ops &= ~(unsigned)WORK_DEPLOY;
			log_error("cannot deploy %s %s %.12s: %s", d->commit.repo, d->commit.target_branch,
				  d->commit.git_commit, err);
			post_status(c, d->name, &d->commit, "error", "runboat cannot render this build");
			tell(c, WAIT_DEPLOY, false, d->name, -EIO, err);
			deploy_forget(c, d);
			continue;
		}
	}
	free(todo);
	if (!c->deploys_applying)
		run_rests(c);
}

/* The Deployed Event of d, once, when its build b is in the index (the feed
 * may show it before or after the apply's answer). */
static void deployed_event(struct controller *c, struct deploy *d, const struct build *b)
{
	if (d->told || !b)
		return;
	d->told = true;
	events_emit(c->events, b, EVENTS_DEPLOYED, "Deployed %s %s%s%.0d %.12s", b->commit.repo,
		    b->commit.target_branch, b->commit.pr ? " PR " : "", b->commit.pr,
		    b->commit.git_commit);
}

static void on_deploy_result(struct controller *c, const struct action_result *r)
{
	struct deploy *d = strmap_get(&c->deploy_names, r->name);
	struct build_work *w = work_get(c, r->name);
	w->ops &= ~(unsigned)WORK_DEPLOY;
	if (r->step == DEPLOY_REST) {
		c->rests_running--;
		w->rest_pending = false;
		if (r->error && r->transient)
			log_warn("build %s: %s; its initialization applies it again", r->name, r->message);
		else if (r->error) {
			/* the build exists: it is failed, with the reason */
			log_error("build %s: refused for good: %s", r->name, r->message);
			free(w->init_refused);
			w->init_refused = xstrdup(r->message);
		} else
			w->rest_applied = true;
		mark_dirty(c, r->name);
		return;
	}
	c->deploys_applying--;
	schedule_pass(c); /* the other objects may go now */
	if (!d)
		return;
	if (!r->error) {
		strmap_put(&c->rests, d->name, (void *)1);
		w->rest_pending = true;
		log_info("build %s: deployed %s %s%s%.0d %.12s", d->name, d->commit.repo,
			 d->commit.target_branch, d->commit.pr ? " PR " : "", d->commit.pr,
			 d->commit.git_commit);
		post_status(c, d->name, &d->commit, "pending", "deployed, waiting to initialize");
		d->state = DEPLOY_APPLIED;
		d->since_ms = now_ms();
		deployed_event(c, d, index_find(c->idx, d->name));
		char msg[128];
		snprintf(msg, sizeof msg, "deployed as %s", d->name);
		tell(c, WAIT_DEPLOY, false, d->name, 0, msg);
		return;
	}
	if (r->transient) {
		d->failures++;
		uint64_t delay = retry_delay(c, d->failures);
		log_warn("build %s: deploy of %s %s %.12s failed (%s); retrying in %.1f s", d->name,
			 d->commit.repo, d->commit.target_branch, d->commit.git_commit, r->message,
			 (double)delay / 1000);
		d->state = DEPLOY_PENDING;
		d->retry_at_ms = now_ms() + delay;
		arm_retry(c, d->retry_at_ms);
		return;
	}
	log_error("build %s: not deployed: Kubernetes refused its Deployment: %s", d->name,
		  r->message);
	char desc[160];
	short_description(desc, sizeof desc, "refused by Kubernetes: ", r->message);
	post_status(c, d->name, &d->commit, "error", desc);
	tell(c, WAIT_DEPLOY, false, d->name, -EIO, r->message);
	deploy_forget(c, d);
}

/* ---- outcomes of the plan's actions ---- */

static unsigned op_bit(enum action_kind k)
{
	switch (k) {
	case ACTION_INIT_STATUS: return WORK_PATCH;
	case ACTION_INITIALIZE: return WORK_INIT;
	case ACTION_START:
	case ACTION_STOP: return WORK_SCALE;
	case ACTION_RESET: return WORK_RESET;
	case ACTION_UNDEPLOY: return WORK_UNDEPLOY;
	case ACTION_CLEAN_KILL_INIT:
	case ACTION_CLEAN_SCALE_DOWN:
	case ACTION_CLEAN_APPLY:
	case ACTION_CLEAN_RETRY:
	case ACTION_CLEAN_DELETE: return WORK_CLEAN;
	case ACTION_CLEANUP_FAILED:
	case ACTION_WANT_DROPPED: return 0;
	}
	return 0;
}

static const char *init_status_verb(enum build_init_status s)
{
	switch (s) {
	case BUILD_INIT_TODO: return "initialization queued again";
	case BUILD_INIT_STARTED: return "initializing";
	case BUILD_INIT_SUCCEEDED: return "initialized";
	default: return "initialization failed";
	}
}

/* started: the same patch scaled the build up (start_after_init), which its
 * one Event tells too: one post fewer per build. */
static void init_status_done(struct controller *c, struct build_work *w, const struct build *b,
			     enum build_init_status to, bool started)
{
	log_info("build %s: %s", b->name, init_status_verb(to));
	const struct build_job *job = index_job(c->idx, b->name, BUILD_JOB_INITIALIZE);
	if ((to == BUILD_INIT_SUCCEEDED || to == BUILD_INIT_FAILED) && job && job->created > 0)
		metrics_init_finished(to == BUILD_INIT_SUCCEEDED, (double)(time(NULL) - job->created));
	switch (to) {
	case BUILD_INIT_STARTED:
		events_emit(c->events, b, EVENTS_INIT_STARTED, "Initialization started%s%s",
			    job ? ": job " : "", job ? job->name : "");
		post_status(c, b->name, &b->commit, "pending", "initializing");
		break;
	case BUILD_INIT_SUCCEEDED:
		events_emit(c->events, b, EVENTS_INIT_SUCCEEDED,
			    started ? "Initialized and scaled up" : "Initialized");
		if (c->active)
			init_log_keep(c->init_logs, b->name, job ? job->name : "", true);
		post_status(c, b->name, &b->commit, "success", "ready");
		/* live at once, or stopped as configured (a crash right here
		 * leaves it stopped, which is harmless) */
		w->want = c->cfg->limits.start_after_init ? WANT_START : WANT_STOP;
		break;
	case BUILD_INIT_FAILED:
		events_emit(c->events, b, EVENTS_INIT_FAILED, "Initialization failed%s%s",
			    w->init_refused ? ": refused by Kubernetes: " : "",
			    w->init_refused ? w->init_refused : "");
		/* a Job Kubernetes refused has no pod, hence no log */
		if (c->active && !w->init_refused)
			init_log_keep(c->init_logs, b->name, job ? job->name : "", false);
		if (w->init_refused) {
			char desc[160];
			short_description(desc, sizeof desc, "refused by Kubernetes: ", w->init_refused);
			post_status(c, b->name, &b->commit, "error", desc);
			free(w->init_refused);
			w->init_refused = NULL;
		} else
			post_status(c, b->name, &b->commit, "failure", "initialization failed");
		break;
	default:
		break;
	}
}

static enum wait_kind wait_kind_of(enum action_kind k)
{
	switch (k) {
	case ACTION_START: return WAIT_START;
	case ACTION_STOP: return WAIT_STOP;
	case ACTION_RESET: return WAIT_RESET;
	default: return WAIT_UNDEPLOY;
	}
}

/* What a successful action settles. */
static void action_succeeded(struct controller *c, struct build_work *w, const struct build *b,
			     const struct action_result *r)
{
	switch (r->kind) {
	case ACTION_INIT_STATUS:
		if (b)
			init_status_done(c, w, b, r->to, r->started);
		if (r->started) {
			if (w->want == WANT_START)
				w->want = WANT_NONE;
			log_info("build %s: started", r->name);
			if (b && r->to != BUILD_INIT_SUCCEEDED)
				events_emit(c->events, b, EVENTS_STARTED, "Scaled up");
		}
		break;
	case ACTION_INITIALIZE:
		log_info("build %s: initialization job created", r->name);
		w->init_applied = true;
		break;
	case ACTION_START:
	case ACTION_STOP:
		if (w->want == (r->kind == ACTION_START ? WANT_START : WANT_STOP))
			w->want = WANT_NONE;
		log_info("build %s: %s", r->name, r->kind == ACTION_START ? "started" : "stopped");
		events_emit(c->events, b, r->kind == ACTION_START ? EVENTS_STARTED : EVENTS_STOPPED,
			    r->kind == ACTION_START ? "Scaled up" : "Scaled down");
		tell(c, wait_kind_of(r->kind), false, r->name, 0,
		     r->kind == ACTION_START ? "started" : "stopped");
		if (r->kind == ACTION_START && w->clears_crash && b) {
			/* the "failure" the crash-looping stop sent is no longer true */
			post_status(c, b->name, &b->commit, "success", "ready");
		}
		w->clears_crash = false;
		break;
	case ACTION_RESET:
		w->want_reset = false;
		w->want = WANT_NONE;
		w->rest_applied = true; /* it applied the whole deployment mode */
		log_info("build %s: reset", r->name);
		events_emit(c->events, b, EVENTS_RESET, "Reset: initialization queued again");
		tell(c, WAIT_RESET, false, r->name, 0, "reset");
		break;
	case ACTION_UNDEPLOY:
		w->want_undeploy = false;
		strmap_del(&c->undeploys, r->name);
		tell(c, WAIT_UNDEPLOY, false, r->name, 0, "undeploying");
		break;
	case ACTION_CLEAN_DELETE:
		w->cleaned = true;
		if (w->force_undeploy)
			log_warn("build %s: undeploy forced: every object deleted without a cleanup job",
				 r->name);
		break;
	case ACTION_CLEAN_APPLY:
		w->cleanup_failed_reported = false; /* a new cleanup Job: a new story */
		break;
	case ACTION_CLEAN_RETRY: {
		/* the cleanup mode is applied again after a pause: 10, 20, 40 s */
		w->cleanup_retries++;
		uint64_t delay = 10000ull << (w->cleanup_retries - 1);
		w->retry_at_ms = now_ms() + delay;
		strmap_put(&c->backoff, r->name, (void *)1);
		arm_retry(c, w->retry_at_ms);
		char note[200];
		snprintf(note, sizeof note, "its cleanup job failed: trying again in %llu s (%u of %d)",
			 (unsigned long long)(delay / 1000), w->cleanup_retries, POLICY_CLEANUP_RETRIES);
		log_warn("build %s: %s", r->name, note);
		index_set_note(c->idx, r->name, note);
		break;
	}
	default:
		break;
	}
}

/* What a permanent refusal settles: the step is not retried until the
 * Deployment changes, and whoever asked is told. */
static void action_refused(struct controller *c, struct build_work *w, const struct build *b,
			   const struct action_result *r)
{
	log_error("build %s: %s refused for good: %s", r->name, action_kind_str(r->kind), r->message);
	if (r->kind == ACTION_INITIALIZE) {
		/* the build is failed, with the reason */
		free(w->init_refused);
		w->init_refused = xstrdup(r->message);
		return;
	}
	if (b)
		snprintf(w->blocked_rv, sizeof w->blocked_rv, "%s", b->resource_version);
	switch (r->kind) {
	case ACTION_START:
	case ACTION_STOP:
		w->want = WANT_NONE;
		break;
	case ACTION_RESET:
		w->want_reset = false;
		break;
	case ACTION_UNDEPLOY:
		w->want_undeploy = false;
		strmap_del(&c->undeploys, r->name);
		break;
	default:
		break;
	}
	if (r->kind == ACTION_START || r->kind == ACTION_STOP || r->kind == ACTION_RESET ||
	    r->kind == ACTION_UNDEPLOY)
		tell(c, wait_kind_of(r->kind), false, r->name, -EIO, r->message);
	char note[600];
	snprintf(note, sizeof note, "%s refused by Kubernetes: %s", action_kind_str(r->kind),
		 r->message);
	index_set_note(c->idx, r->name, note);
}

static void on_result(const struct action_result *r, void *data)
{
	struct controller *c = data;
	if (c->closing)
		return;
	if (r->deploy) {
		on_deploy_result(c, r);
		return;
	}
	struct build_work *w = work_get(c, r->name);
	const struct build *b = index_find(c->idx, r->name);
	w->ops &= ~op_bit(r->kind);
	if (r->kind == ACTION_STOP || r->kind == ACTION_CLEAN_SCALE_DOWN)
		w->stopping = false;
	if (r->kind == ACTION_UNDEPLOY && !w->want_undeploy && !(w->ops & WORK_UNDEPLOY))
		strmap_del(&c->undeploys, r->name);
	if (r->stale_rv && r->stale_rv[0])
		snprintf(w->stale_rv, sizeof w->stale_rv, "%s", r->stale_rv);
	if (r->error == -ECANCELED) {
		/* nothing */
	} else if (r->error && r->behind && b && w->behind < BEHIND_MAX) {
		/* the index had not shown the Deployment as the server has it
		 * (our own previous patch, most often): planned again from the
		 * next version the informer shows, no backoff, no warning */
		w->behind++;
		snprintf(w->stale_rv, sizeof w->stale_rv, "%s", b->resource_version);
		/* a Deployment that shows nothing new would hold it for good:
		 * the hold ends after the usual delay at the latest */
		w->behind_until_ms = now_ms() + retry_delay(c, w->behind);
		strmap_put(&c->backoff, r->name, (void *)1);
		arm_retry(c, w->behind_until_ms);
		log_debug("build %s: %s; the index was behind, planned again on its next change",
			  r->name, r->message);
	} else if (!r->error) {
		w->behind = 0;
		w->behind_until_ms = 0;
		if (w->failures) {
			w->failures = 0;
			index_set_note(c->idx, r->name, NULL);
		}
		w->retry_at_ms = 0;
		strmap_del(&c->backoff, r->name);
		action_succeeded(c, w, b, r);
	} else if (r->transient || r->maybe_applied) {
		/* maybe applied: only another try tells, and repeating is safe */
		w->failures++;
		uint64_t delay = retry_delay(c, w->failures);
		w->retry_at_ms = now_ms() + delay;
		strmap_put(&c->backoff, r->name, (void *)1);
		arm_retry(c, w->retry_at_ms);
		char note[700];
		snprintf(note, sizeof note, "%s failed %u time%s (%s); retrying in %.0f s",
			 action_kind_str(r->kind), w->failures, w->failures > 1 ? "s" : "", r->message,
			 (double)delay / 1000 + 0.5);
		log_warn("build %s: %s", r->name, note);
		index_set_note(c->idx, r->name, note);
	} else
		action_refused(c, w, b, r);
	mark_dirty(c, r->name);
}

/* ---- the pass ---- */

static void collect_name(const char *key, void *value, void *data)
{
	UNUSED(value);
	const char ***p = data;
	*(*p)++ = key;
}

static void run_action(struct controller *c, const struct action *a)
{
	const struct build *b = a->b;
	struct build_work *w = work_get(c, b->name);
	switch (a->kind) {
	case ACTION_CLEANUP_FAILED:
		log_error("build %s: its cleanup job failed %d times; it stays undeploying (its log: "
			  "/api/v1/builds/%s/cleanup-log; delete the job to try again, or force the "
			  "undeploy)", b->name, POLICY_CLEANUP_RETRIES + 1, b->name);
		w->cleanup_failed_reported = true;
		events_emit(c->events, b, EVENTS_CLEANUP_FAILED,
			    "Cleanup job failed; the build stays undeploying (delete the job to retry)");
		index_set_note(c->idx, b->name,
			       "cleanup failed: its cleanup job failed (see its cleanup log; an admin "
			       "may force the undeploy)");
		return;
	case ACTION_WANT_DROPPED: {
		enum wait_kind k = w->want == WANT_START ? WAIT_START : WAIT_STOP;
		w->want = WANT_NONE;
		char msg[160];
		snprintf(msg, sizeof msg, "build %s is %s now: %s", b->name, build_status_str(b->status),
			 a->why);
		tell(c, k, false, b->name, -EBUSY, msg);
		return;
	}
	default:
		break;
	}
	log_info("build %s: %s%s%s (%s)", b->name, action_kind_str(a->kind),
		 a->kind == ACTION_INIT_STATUS ? " -> " : "",
		 a->kind == ACTION_INIT_STATUS ? build_init_status_str(a->to) : "", a->why);
	char err[512];
	struct action run = *a;
	run.rest_applied = a->kind == ACTION_INITIALIZE && w->rest_applied;
	/* initialized, then started at once as configured: one patch (the
	 * stopper keeps the started count within its limit afterwards, as
	 * after a separate start) */
	run.start_too = a->kind == ACTION_INIT_STATUS && a->to == BUILD_INIT_SUCCEEDED &&
			c->cfg->limits.start_after_init && !w->want_undeploy;
	/* set before: the result may come from inside the call (no call
	 * needed, or the client closing) */
	unsigned had = w->ops;
	bool was_stopping = w->stopping, was_clearing = w->clears_crash;
	w->ops |= op_bit(a->kind);
	if (a->kind == ACTION_STOP || a->kind == ACTION_CLEAN_SCALE_DOWN)
		w->stopping = true;
	if (a->kind == ACTION_START)
		w->clears_crash = b->reason && strcmp(b->reason, POLICY_CRASH_REASON) == 0;
	if (a->kind == ACTION_UNDEPLOY)
		strmap_put(&c->undeploys, b->name, (void *)1); /* a refusal takes it out */
	if (actions_run(c->actions, &run, err, sizeof err) == 0) {
		if (a->kind == ACTION_STOP && a->reason) {
			log_warn("build %s: its pod restarted %d times%s: stopping it", b->name,
				 b->restarts, b->crash_looping ? " (CrashLoopBackOff)" : "");
			events_emit(c->events, b, EVENTS_CRASH_LOOPING,
				    "Stopping: its pod restarted %d times (max_restarts)", b->restarts);
			post_status(c, b->name, &b->commit, "failure", "crash-looping: stopped");
		}
		if (a->kind == ACTION_UNDEPLOY)
			events_emit(c->events, b, EVENTS_UNDEPLOY_REQUESTED, "Undeploying: %s", a->why);
		return;
	}
	w->ops = had;
	w->stopping = was_stopping;
	w->clears_crash = was_clearing;
	/* it cannot even be rendered: as a permanent refusal */
	struct action_result r = {.name = b->name, .kind = a->kind, .to = a->to, .error = -EIO,
				  .message = err};
	action_refused(c, w, b, &r);
}

struct count_ctx {
	struct controller *c;
	size_t n;
};

static void count_undeploy(const char *name, void *value, void *data)
{
	UNUSED(value);
	struct count_ctx *x = data;
	const struct build *b = index_find(x->c->idx, name);
	if (b && !b->deleting)
		x->n++;
}

static void on_pass(uv_timer_t *t)
{
	struct controller *c = t->data;
	c->pass_scheduled = false;
	if (!c->synced || !c->kube || c->closing || !c->active)
		return;
	run_deploys(c);
	const char **names = xcalloc(c->dirty.count ? c->dirty.count : 1, sizeof *names);
	const char **end = names;
	strmap_each(&c->dirty, collect_name, &end);
	struct strmap dirty = c->dirty; /* the keys stay valid while the plan is made */
	memset(&c->dirty, 0, sizeof c->dirty);
	struct count_ctx undeploys = {.c = c};
	strmap_each(&c->undeploys, count_undeploy, &undeploys);
	struct policy_input in = {
		.idx = c->idx,
		.limits = {(size_t)c->cfg->limits.max_initializing, (size_t)c->cfg->limits.max_started,
			   (size_t)c->cfg->limits.max_deployed,
			   (size_t)c->cfg->limits.max_deployed_per_ref,
			   (int64_t)(c->cfg->limits.stop_idle_after * 1000),
			   (unsigned)c->cfg->limits.max_restarts},
		.work = work_lookup,
		.work_data = c,
		.dirty = names,
		.n_dirty = (size_t)(end - names),
		.now_ms = now_ms(),
		.pending_undeploys = undeploys.n,
		.debounce_ms = (int64_t)(c->cfg->github.debounce * 1000),
		.wall_ms = wall_ms(),
		/* run_deploys above started every deploy that is due */
		.objects_pending = c->deploys_applying + c->rests.count + c->rests_running,
	};
	struct plan plan = {0};
	policy_plan(&in, &plan);
	if (plan.wake_wall_ms) /* a debounced build's wait ends: a pass then */
		arm_retry(c, now_ms() + (uint64_t)(plan.wake_wall_ms > in.wall_ms
							 ? plan.wake_wall_ms - in.wall_ms
							 : 0) + 50);
	free(names);
	strmap_clear(&dirty, NULL);
	/* executing starts calls only: the builds of the plan stay valid */
	for (size_t i = 0; i < plan.n; i++)
		run_action(c, &plan.v[i]);
	plan_free(&plan);
	if (!c->sticky_done) {
		c->sticky_done = true;
		sticky(c);
	}
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

/* Builds whose backoff has ended go back to the pass. */
struct due_ctx {
	struct controller *c;
	uint64_t now, next;
	const char **names;
	size_t n;
};

static void check_backoff(const char *name, void *value, void *data)
{
	UNUSED(value);
	struct due_ctx *x = data;
	const struct build_work *w = strmap_get(&x->c->work, name);
	uint64_t due = w ? w->retry_at_ms : 0;
	if (w && w->behind_until_ms > due)
		due = w->behind_until_ms;
	if (due <= x->now)
		x->names[x->n++] = name;
	else if (!x->next || due < x->next)
		x->next = due;
}

static void check_deploy(const char *key, void *value, void *data)
{
	UNUSED(key);
	struct deploy *d = value;
	struct due_ctx *x = data;
	if (d->state == DEPLOY_PENDING && d->retry_at_ms > x->now &&
	    (!x->next || d->retry_at_ms < x->next))
		x->next = d->retry_at_ms;
}

static void on_retry(uv_timer_t *t)
{
	struct controller *c = t->data;
	c->retry_timer_due = 0;
	struct due_ctx x = {.c = c, .now = now_ms()};
	x.names = xcalloc(c->backoff.count ? c->backoff.count : 1, sizeof *x.names);
	strmap_each(&c->backoff, check_backoff, &x);
	for (size_t i = 0; i < x.n; i++) {
		struct build_work *w = strmap_get(&c->work, x.names[i]);
		if (w && w->behind_until_ms) {
			/* the index never showed what was behind it: plan anew */
			w->behind_until_ms = 0;
			w->stale_rv[0] = '\0';
		}
		strmap_put(&c->dirty, x.names[i], (void *)1);
		strmap_del(&c->backoff, x.names[i]); /* after: the key is the map's */
	}
	free(x.names);
	strmap_each(&c->deploys, check_deploy, &x);
	if (x.next)
		arm_retry(c, x.next);
	schedule_pass(c);
}

/* Applied, but never shown by the feed (deleted at once?). */
static bool stale(const struct deploy *d, uint64_t now)
{
	return d->state == DEPLOY_APPLIED && now - d->since_ms > DEPLOY_FORGET_MS;
}

static void on_resync(uv_timer_t *t)
{
	struct controller *c = t->data;
	/* level-triggered: look at everything now and then, whatever the
	 * events said */
	mark_all_dirty(c);
	/* a deploy whose Deployment never showed up (deleted at once) */
	size_t n;
	struct deploy **old = deploys_where(c, stale, &n);
	for (size_t i = 0; i < n; i++) {
		/* nor will its other objects be applied: they no longer count
		 * as pending (objects first) */
		drop_rest(c, old[i]->name);
		deploy_forget(c, old[i]);
	}
	free(old);
}

static void on_index_event(enum index_event ev, const struct build *b, void *data)
{
	struct controller *c = data;
	if (!b)
		return;
	if (ev == INDEX_DEL) {
		struct deploy *d = strmap_get(&c->deploy_names, b->name);
		if (d && d->state == DEPLOY_APPLIED)
			deploy_forget(c, d);
		tell(c, WAIT_UNDEPLOY, false, b->name, 0, "undeployed");
		tell(c, 0, true, b->name, -ENOENT, "the build is gone");
		work_free(strmap_del(&c->work, b->name));
		strmap_del(&c->dirty, b->name);
		strmap_del(&c->backoff, b->name);
		strmap_del(&c->undeploys, b->name);
		/* held initializations may go when the last pending objects do */
		if (strmap_del(&c->rests, b->name))
			schedule_pass(c);
		return;
	}
	struct build_work *w = strmap_get(&c->work, b->name);
	if (ev == INDEX_JOB && w && w->init_applied && index_job(c->idx, b->name, BUILD_JOB_INITIALIZE))
		w->init_applied = false; /* the Job is seen: it holds the slot now */
	if (ev == INDEX_UPD) {
		struct deploy *d = strmap_get(&c->deploy_names, b->name);
		if (d && d->state == DEPLOY_APPLIED) {
			deployed_event(c, d, b);
			deploy_forget(c, d); /* the feed shows it: no longer "being deployed" */
		}
		if (b->deleting && w && w->want_undeploy) {
			w->want_undeploy = false;
			strmap_del(&c->undeploys, b->name);
			tell(c, WAIT_UNDEPLOY, false, b->name, 0, "undeploying");
		}
	}
	mark_dirty(c, b->name);
}

/* ---- actions asked from outside ---- */

static const struct build *find_or_fail(struct controller *c, const char *name, char *err,
					size_t errlen, int *rc)
{
	if (standby(c, err, errlen)) {
		*rc = -EAGAIN;
		return NULL;
	}
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

/* A person asked: a step held by its backoff or an earlier refusal is
 * tried again at once. */
static void retry_now(struct controller *c, struct build_work *w, const char *name)
{
	w->retry_at_ms = 0;
	w->blocked_rv[0] = '\0';
	if (w->behind_until_ms) {
		/* a hold on the index, which on_retry would have ended */
		w->behind_until_ms = 0;
		w->stale_rv[0] = '\0';
	}
	strmap_del(&c->backoff, name);
	mark_dirty(c, name);
}

static int scale_build(struct controller *c, const char *name, bool start, controller_done_cb cb,
		       void *data, char *err, size_t errlen)
{
	int rc = 0;
	const struct build *b = find_or_fail(c, name, err, errlen, &rc);
	if (!b)
		return rc;
	struct build_work *w = work_get(c, name);
	if (b->deleting || b->init_status != BUILD_INIT_SUCCEEDED || w->want_reset ||
	    w->want_undeploy) {
		snprintf(err, errlen, "build %s is %s: it cannot be %s", name,
			 w->want_undeploy ? "undeploying"
			 : w->want_reset ? "being reset"
					 : build_status_str(b->status),
			 start ? "started" : "stopped");
		return -EBUSY;
	}
	enum work_want want = start ? WANT_START : WANT_STOP;
	/* scaled up while paused (by someone else): not started, a start
	 * unpauses it */
	bool there = start ? b->desired_replicas > 0 && !b->paused : b->desired_replicas == 0;
	if (w->want != want && there && !(w->ops & WORK_SCALE) && w->want == WANT_NONE) {
		snprintf(err, errlen, "build %s is already %s", name, build_status_str(b->status));
		return 1;
	}
	if (w->want != want && w->want != WANT_NONE)
		tell(c, start ? WAIT_STOP : WAIT_START, false, name, -EBUSY,
		     start ? "superseded by a start" : "superseded by a stop");
	rc = add_waiter(c, start ? WAIT_START : WAIT_STOP, name, cb, data, err, errlen);
	if (rc)
		return rc;
	w->want = want;
	retry_now(c, w, name);
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

int controller_reset_build(struct controller *c, const char *name, controller_done_cb cb,
			   void *data, char *err, size_t errlen)
{
	int rc = 0;
	const struct build *b = find_or_fail(c, name, err, errlen, &rc);
	if (!b)
		return rc;
	struct build_work *w = work_get(c, name);
	if (b->deleting || w->want_undeploy) {
		snprintf(err, errlen, "build %s is undeploying: it cannot be reset", name);
		return -EBUSY;
	}
	rc = add_waiter(c, WAIT_RESET, name, cb, data, err, errlen);
	if (rc)
		return rc;
	if (w->want != WANT_NONE) {
		tell(c, w->want == WANT_START ? WAIT_START : WAIT_STOP, false, name, -EBUSY,
		     "superseded by a reset");
		w->want = WANT_NONE;
	}
	w->want_reset = true;
	free(w->init_refused);
	w->init_refused = NULL;
	w->cleanup_failed_reported = false;
	index_set_note(c->idx, name, NULL);
	retry_now(c, w, name);
	return 0;
}

static void ask_undeploy(struct controller *c, const struct build *b, const char *why)
{
	struct build_work *w = work_get(c, b->name);
	if (!w->want_undeploy)
		log_info("build %s: undeploy asked (%s)", b->name, why);
	w->want_undeploy = true;
	w->undeploy_why = why;
	strmap_put(&c->undeploys, b->name, (void *)1);
	retry_now(c, w, b->name);
}

int controller_undeploy_build(struct controller *c, const char *name, controller_done_cb cb,
			      void *data, char *err, size_t errlen)
{
	int rc = 0;
	const struct build *b = find_or_fail(c, name, err, errlen, &rc);
	if (!b)
		return rc;
	if (b->deleting) {
		snprintf(err, errlen, "build %s is already undeploying", name);
		return 1;
	}
	rc = add_waiter(c, WAIT_UNDEPLOY, name, cb, data, err, errlen);
	if (rc)
		return rc;
	ask_undeploy(c, b, "asked");
	return 0;
}

int controller_force_undeploy_build(struct controller *c, const char *name, controller_done_cb cb,
				    void *data, char *err, size_t errlen)
{
	int rc = 0;
	const struct build *b = find_or_fail(c, name, err, errlen, &rc);
	if (!b)
		return rc;
	struct build_work *w = work_get(c, b->name);
	if (!w->force_undeploy)
		log_warn("build %s: undeploy forced by an admin: its objects go without a cleanup job",
			 b->name);
	w->force_undeploy = true;
	if (b->deleting) {
		retry_now(c, w, b->name);
		schedule_pass(c);
		snprintf(err, errlen, "build %s: undeploy forced, its objects are being deleted", name);
		return 1;
	}
	rc = add_waiter(c, WAIT_UNDEPLOY, name, cb, data, err, errlen);
	if (rc)
		return rc;
	ask_undeploy(c, b, "forced by an admin");
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

size_t controller_undeploy_matching(struct controller *c, const struct index_filter *f)
{
	if (!c->active)
		return 0; /* the leader's (callers check controller_leading first) */
	if (!c->synced) {
		/* a PR closed or a branch deleted while runboat starts: done
		 * once the builds are known */
		if (c->n_queued_undeploys < MAX_DEPLOYS) {
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
	size_t asked = 0;
	for (size_t i = 0; i < n; i++)
		if (!list[i]->deleting) {
			ask_undeploy(c, list[i], "its branch or PR is gone");
			asked++;
		}
	free(list);
	return asked;
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
	int rc = t->c->closing ? -ECANCELED
			       : controller_deploy(t->c, &cm, t->cb, t->data, err, sizeof err);
	if (rc)
		t->cb(rc < 0 ? rc : 0, rc == -ECANCELED ? "runboat is stopping" : err, t->data);
	free(t);
}

int controller_trigger(struct controller *c, const char *repo, const char *branch, long pr,
		       controller_done_cb cb, void *data, char *err, size_t errlen)
{
	if (!c->github) {
		snprintf(err, errlen, "no GitHub API client configured");
		return -EAGAIN;
	}
	if (standby(c, err, errlen))
		return -EAGAIN;
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

/* ---- rebuild of a PR's head ---- */

struct rebuild {
	struct controller *c;
	controller_done_cb cb;
	void *data;
	char user[40];
	char name[BUILD_NAME_MAX + 1];
};

static void on_rebuild_reset(int error, const char *message, void *data)
{
	struct rebuild *r = data;
	if (error) {
		r->cb(error, message, r->data);
	} else {
		char *m = xasprintf("rebuilding %s (reset)", r->name);
		r->cb(0, m, r->data);
		free(m);
	}
	free(r);
}

static void on_rebuild_head(int error, const char *message, const struct github_head *head,
			    void *data)
{
	struct rebuild *r = data;
	struct controller *c = r->c;
	if (!error && c->closing) {
		error = -ECANCELED;
		message = "runboat is stopping";
	}
	if (!error && !head->open) {
		error = -ENOENT;
		message = "the pull request is closed";
	}
	if (error) {
		r->cb(error == -ENOENT || error == -ECANCELED ? error : -EIO, message, r->data);
		free(r);
		return;
	}
	struct build_commit cm = {head->repo, head->target_branch, (int)head->pr, head->sha};
	char *desc = xasprintf("rebuild asked by @%s", r->user);
	const struct build *b =
		index_find_commit(c->idx, cm.repo, cm.target_branch, cm.pr, cm.git_commit);
	char err[512];
	int rc;
	if (b && !b->deleting) {
		snprintf(r->name, sizeof r->name, "%s", b->name);
		post_status(c, b->name, &cm, "pending", desc);
		rc = controller_reset_build(c, b->name, on_rebuild_reset, r, err, sizeof err);
		if (rc == 0) {
			free(desc);
			return; /* r goes with on_rebuild_reset */
		}
	} else {
		/* its own pending status says "deployed" once it is */
		rc = controller_deploy(c, &cm, r->cb, r->data, err, sizeof err);
	}
	free(desc);
	if (rc)
		r->cb(rc < 0 ? rc : 0, err, r->data);
	free(r);
}

int controller_rebuild_pr(struct controller *c, const char *repo, long pr, const char *user,
			  controller_done_cb cb, void *data, char *err, size_t errlen)
{
	if (!config_builds_repo(c->cfg, repo)) {
		snprintf(err, errlen, "repository %s is not built here", repo);
		return -ENOTSUP;
	}
	if (!c->github) {
		snprintf(err, errlen, "no GitHub API client configured");
		return -EAGAIN;
	}
	struct rebuild *r = xcalloc(1, sizeof *r);
	r->c = c;
	r->cb = cb;
	r->data = data;
	snprintf(r->user, sizeof r->user, "%s", user);
	int rc = github_client_pr_head(c->github, repo, pr, on_rebuild_head, r);
	if (rc < 0) {
		free(r);
		snprintf(err, errlen, rc == -EINVAL ? "invalid repo or PR" : "GitHub client closing");
		return rc == -EINVAL ? -EINVAL : -EAGAIN;
	}
	snprintf(err, errlen, "looking up the head of PR %ld", pr);
	return 0;
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
	if (!c->github)
		return;
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

/* ---- life ---- */

static void on_synced(void *data)
{
	struct controller *c = data;
	c->synced = true;
	log_info("synced with Kubernetes: %zu builds in namespace %s", index_count(c->idx),
		 c->cfg->kubernetes.namespace);
	for (size_t i = 0; i < c->n_queued_undeploys; i++)
		controller_undeploy_matching(c, &c->queued_undeploys[i]);
	free_queued_undeploys(c);
	mark_all_dirty(c);
}

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
		c->opts.retry_ms = 1000;
	if (!c->opts.retry_max_ms)
		c->opts.retry_max_ms = 300000;
	if (c->opts.retry_max_ms < c->opts.retry_ms)
		c->opts.retry_max_ms = c->opts.retry_ms;
	if (!c->opts.deploy_wait_ms)
		c->opts.deploy_wait_ms = 8000;
	if (!c->opts.action_wait_ms)
		c->opts.action_wait_ms = 20000;
	c->rng = backoff_seed();
	c->active = true;
	list_init(&c->waiters);
	uv_timer_init(c->loop, &c->pass_timer);
	uv_timer_init(c->loop, &c->resync_timer);
	uv_timer_init(c->loop, &c->retry_timer);
	uv_timer_init(c->loop, &c->tick_timer);
	c->pass_timer.data = c->resync_timer.data = c->retry_timer.data = c->tick_timer.data = c;
	c->open_handles = 4;
	if (c->kube) {
		struct actions_deps ad = {.cfg = c->cfg, .idx = c->idx, .kube = c->kube,
					  .kubefiles = c->kubefiles};
		c->actions = actions_new(&ad, on_result, c);
		c->feed = feed_new(c->loop, c->kube, c->cfg->kubernetes.namespace, c->idx, on_synced, c);
		c->events = events_new(c->loop, c->kube, c->cfg->kubernetes.namespace, NULL);
		c->init_logs = init_log_new(c->kube, c->cfg->kubernetes.namespace, build_gone, c);
		init_log_set_pod_lookup(c->init_logs, init_pod, c);
	}
	index_listen(c->idx, on_index_event, c);
	return c;
}

void controller_start(struct controller *c)
{
	if (!c->feed)
		return;
	feed_start(c->feed);
	uv_timer_start(&c->resync_timer, on_resync, c->opts.resync_ms, c->opts.resync_ms);
}

bool controller_leading(const struct controller *c, const char **reason)
{
	if (c->active)
		return true;
	*reason = c->standby_why ? c->standby_why : "standby";
	return false;
}

/* Forgets the work state: what each build's work is, which builds are
 * dirty, their backoffs, the undeploys, deploys and their names, and the
 * undeploys queued before the sync. */
static void forget_work(struct controller *c)
{
	strmap_clear(&c->work, work_free);
	strmap_clear(&c->dirty, NULL);
	strmap_clear(&c->backoff, NULL);
	strmap_clear(&c->undeploys, NULL);
	strmap_clear(&c->rests, NULL);
	strmap_clear(&c->deploy_names, NULL);
	strmap_each(&c->deploys, free_deploy, NULL);
	strmap_clear(&c->deploys, NULL);
	free_queued_undeploys(c);
}

/* Stops every action at once: what is in flight is cancelled (a call
 * already sent may still land; the next leader starts from what Kubernetes
 * says), whoever waits is told to ask again, the work state is forgotten,
 * and GitHub statuses are left to the leader. */
static void stand_down(struct controller *c)
{
	if (c->actions) {
		actions_free(c->actions); /* no callback after this */
		struct actions_deps ad = {.cfg = c->cfg, .idx = c->idx, .kube = c->kube,
					  .kubefiles = c->kubefiles};
		c->actions = actions_new(&ad, on_result, c);
	}
	init_log_stop(c->init_logs);
	c->deploys_applying = 0;
	c->rests_running = 0;
	github_client_hold_statuses(c->github, true);
	uv_timer_stop(&c->retry_timer);
	c->retry_timer_due = 0;
	uv_timer_stop(&c->tick_timer);
	/* taken out first: a callback may ask the controller again */
	struct list told;
	list_init(&told);
	struct waiter *w, *tmp;
	list_each_safe(w, tmp, &c->waiters, link)
	{
		list_remove(&w->link);
		list_push(&told, &w->link);
	}
	c->n_waiters = 0;
	char msg[600];
	snprintf(msg, sizeof msg, "%s: this replica stopped acting before Kubernetes confirmed "
		 "it; ask again, the leader acts", c->standby_why);
	list_each_safe(w, tmp, &told, link)
	{
		w->cb(-EAGAIN, msg, w->data);
		free(w);
	}
	if (c->n_queued_undeploys)
		log_warn("controller: %zu undeploys asked before the sync are dropped (the leader's "
			 "GitHub sync finds closed PRs and deleted branches)", c->n_queued_undeploys);
	forget_work(c);
}

void controller_set_active(struct controller *c, bool active, const char *why)
{
	if (c->closing)
		return;
	free(c->standby_why);
	c->standby_why = active ? NULL : xstrdup(why && *why ? why : "standby");
	if (active == c->active)
		return;
	c->active = active;
	if (!active) {
		log_info("controller: standing by (%s): every action stops", c->standby_why);
		stand_down(c);
		return;
	}
	log_info("controller: acting: a full pass %s", c->synced ? "now" : "once synced");
	github_client_hold_statuses(c->github, false);
	c->sticky_done = false;
	if (c->synced)
		mark_all_dirty(c);
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

static void free_deploy(const char *key, void *value, void *data)
{
	UNUSED(key);
	UNUSED(data);
	struct deploy *d = value;
	free(d->key);
	for (size_t i = 0; i < ARRAY_SIZE(d->strings); i++)
		free(d->strings[i]);
	free(d);
}

static void controller_maybe_free(struct controller *c)
{
	if (c->open_handles)
		return;
	forget_work(c);
	free(c->standby_why);
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
	feed_free(c->feed);
	c->feed = NULL;
	actions_free(c->actions);
	c->actions = NULL;
	events_free(c->events);
	c->events = NULL;
	init_log_free(c->init_logs);
	c->init_logs = NULL;
	struct waiter *w, *tmp;
	list_each_safe(w, tmp, &c->waiters, link)
	{
		list_remove(&w->link);
		w->cb(-ECANCELED, "runboat is stopping", w->data);
		free(w);
	}
	c->n_waiters = 0;
	uv_close((uv_handle_t *)&c->pass_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->resync_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->retry_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->tick_timer, on_handle_closed);
}

/* ---- logs ---- */

struct controller_log {
	struct controller *c;
	struct pod_log *l;
	struct init_log_read *r; /* the initialize job's: live, else kept */
	controller_log_cb cb;
	void *data;
};

static void on_pod_log(int error, const char *message, const char *text, size_t len, void *data)
{
	struct controller_log *l = data;
	l->c->n_logs--;
	l->cb(error, message, text, len, l->data);
	free(l);
}

int controller_log(struct controller *c, const char *name, const char *job_kind,
		   controller_log_cb cb, void *data, struct controller_log **out)
{
	if (!c->kube)
		return -ECANCELED;
	if (c->n_logs >= CONTROLLER_MAX_LOGS)
		return -EAGAIN;
	struct controller_log *l = xcalloc(1, sizeof *l);
	l->c = c;
	l->cb = cb;
	l->data = data;
	if (job_kind && strcmp(job_kind, "initialize") == 0)
		l->r = init_log_read(c->init_logs, name, on_pod_log, l);
	else
		l->l = pod_log_get(c->kube, c->cfg->kubernetes.namespace, name, job_kind,
				   on_pod_log, l);
	if (!l->l && !l->r) {
		free(l);
		return -ECANCELED;
	}
	c->n_logs++;
	*out = l;
	return 0;
}

void controller_cancel_log(struct controller_log *l)
{
	l->c->n_logs--;
	if (l->r)
		init_log_read_cancel(l->r);
	else
		pod_log_cancel(l->l);
	free(l);
}
