#include "webhook.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "app.h"
#include "config.h"
#include "controller.h"
#include "github.h"
#include "http.h"
#include "index.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "strmap.h"
#include "util.h"

/* Bodies up to this size are checked and parsed on the loop (about 2 ms of
 * JSON parsing, test/bench/bench_webhook.c); larger ones in libuv's thread
 * pool, so that no delivery holds the loop (a 25 MB body costs seconds to
 * parse and ~35 ms to authenticate). */
#define WEBHOOK_INLINE_MAX (64u << 10)
/* Large bodies decoded at once; the others wait in order. One: the parse of
 * a big body is what costs memory (the JSON tree), so the worst case stays
 * that of one delivery, as when everything ran on the loop. */
#define WEBHOOK_POOL_SLOTS 1
/* JSON values (counted as the ',', '[' and '{' outside strings) a payload may
 * hold. The tree of a hostile 25 MB body ("[{},{},...]") would take about
 * 2 GiB; 2,000,000 values cost at most ~450 MB (~220 bytes per empty object),
 * while GitHub's own JSON runs at 35-55 bytes per value (0.5-0.7 M values in
 * the largest delivery GitHub sends, 25 MB). */
#define WEBHOOK_MAX_JSON_VALUES 2000000u
/* A "/runboat rebuild" comment is acted on at most once per PR in this time;
 * the PRs remembered are bounded (the oldest forgotten first). */
#define REBUILD_INTERVAL_MS 60000u
#define REBUILD_REMEMBERED 4096u

/* The webhook's state: the large deliveries waiting for or in the pool. */
struct webhook {
	struct app *app;
	struct list waiting; /* of struct webhook_job, oldest first */
	unsigned n_waiting;
	unsigned running;    /* jobs submitted to the pool */
	struct strmap rebuilds; /* "repo#pr" -> when last rebuilt (ms, as a pointer) */
};

/* One delivery being decoded: what the decoding needs, copied out of the
 * request so that it may run on another thread, and its outcome. */
struct webhook_job {
	struct list link; /* in webhook.waiting until submitted */
	uv_work_t work;
	struct webhook *w;
	struct http_req *req; /* NULL once the client has gone (on_job_abort) */
	struct buf body;      /* borrowed from req inline, owned in the pool */
	bool owns_body;
	bool submitted;       /* in the pool (running, or queued in libuv) */
	const char *secret;   /* borrowed from the configuration, or NULL */
	char *signature;      /* X-Hub-Signature-256, or NULL */
	char *event;          /* X-GitHub-Event, or NULL */
	bool form;            /* application/x-www-form-urlencoded */
	/* outcome */
	int status; /* 0: action is set; else the HTTP error status with err */
	char err[256];
	struct github_action action;
};

/* GitHub's "application/x-www-form-urlencoded" content type sends the JSON
 * in a payload field (the signature covers the raw body). Returns the
 * decoded payload (owned by the caller), or NULL when the body has no valid
 * payload field. */
static char *form_payload(const char *body, size_t len)
{
	const char *p = len > 8 ? memmem(body, len, "payload=", 8) : NULL;
	if (!p || (p != body && p[-1] != '&'))
		return NULL;
	const char *v = p + 8;
	const char *end = memchr(v, '&', len - (size_t)(v - body));
	return url_decode(v, end ? (size_t)(end - v) : len - (size_t)(v - body), true);
}

/* Whether the JSON text holds at most max values (see
 * WEBHOOK_MAX_JSON_VALUES): counts the ',', '[' and '{' outside strings, an
 * upper bound of the members and elements a parser would allocate. */
static bool json_values_within(const char *s, size_t len, size_t max)
{
	size_t n = 0;
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if ((c == ',' || c == '[' || c == '{') && ++n > max) {
			return false;
		}
	}
	return true;
}

/* Authenticates, decodes and parses the delivery into j's outcome. Pure (no
 * loop, no logging, no request): safe on a thread-pool thread. */
static void webhook_decode(struct webhook_job *j)
{
	const char *body = j->body.data ? j->body.data : "";
	size_t len = j->body.len;
	if (j->secret && !github_verify_signature(j->secret, body, len, j->signature)) {
		j->status = 401;
		snprintf(j->err, sizeof j->err, "missing or invalid X-Hub-Signature-256");
		return;
	}
	char *payload = NULL;
	if (j->form) {
		payload = form_payload(body, len);
		if (!payload) {
			j->status = 400;
			snprintf(j->err, sizeof j->err,
				 "form-encoded webhook without a valid payload field");
			return;
		}
		body = payload;
		len = strlen(payload);
	}
	int rc;
	if (!json_values_within(body, len, WEBHOOK_MAX_JSON_VALUES)) {
		snprintf(j->err, sizeof j->err, "payload: more than %u JSON values",
			 WEBHOOK_MAX_JSON_VALUES);
		rc = -EMSGSIZE;
	} else {
		rc = github_webhook_parse(j->event, body, len, &j->action, j->err, sizeof j->err);
	}
	free(payload);
	j->status = rc == 0 ? 0 : rc == -EMSGSIZE ? 413 : 400;
}

static void job_free(struct webhook_job *j)
{
	if (j->owns_body)
		buf_free(&j->body);
	free(j->signature);
	free(j->event);
	free(j);
}

/* A delivery waiting for its build's Deployment to exist. */
struct pending_deploy {
	struct http_req *req;
	bool aborted;
	char delivery[80];
	char event[16]; /* X-GitHub-Event, for metrics (known ones fit) */
};

static void on_deploy_abort(struct http_req *req, void *data)
{
	UNUSED(req);
	struct pending_deploy *p = data;
	p->aborted = true;
}

static void on_deployed(int error, const char *message, void *data)
{
	struct pending_deploy *p = data;
	log_info("webhook %s: %s%s", p->delivery, error ? "not accepted: " : "", message);
	metrics_webhook(p->event, error ? "failed" : "accepted");
	if (!p->aborted) {
		p->req->on_abort = NULL;
		if (error)
			http_respond_error(p->req, error == -ETIMEDOUT ? 503 : api_status_of(error), "%s",
					   message);
		else
			http_respond_json(p->req, 202, json_pack("{s:s}", "detail", message));
	}
	free(p);
}

/* Asks the controller to deploy what a delivery pushed, and answers once
 * the build's Deployment exists (so that it survives a crash of runboat):
 * 202, or 200 when it was there already or the repo or branch is not one
 * runboat builds; 503 when Kubernetes did not record it in time (runboat
 * keeps trying; a redelivery is harmless), 502 when Kubernetes refused it. */
static void webhook_deploy(struct http_req *req, struct app *app, const struct github_action *a,
			   const char *delivery)
{
	char err[256];
	struct build_commit cm = {a->repo, a->target_branch, (int)a->pr, a->sha};
	struct pending_deploy *p = xcalloc(1, sizeof *p);
	p->req = req;
	snprintf(p->delivery, sizeof p->delivery, "%s", delivery);
	const char *event = http_req_header(req, "x-github-event");
	snprintf(p->event, sizeof p->event, "%s", event ? event : "");
	int rc = controller_deploy(app->controller, &cm, on_deployed, p, err, sizeof err);
	log_info("webhook %s: deploy %s %s%s%.0ld %.12s: %s", delivery, a->repo, a->target_branch,
		 a->pr ? " PR " : "", a->pr, a->sha, err);
	if (rc == 0) {
		req->on_abort = on_deploy_abort;
		req->abort_data = p;
		return;
	}
	metrics_webhook(p->event, rc == -ENOTSUP || rc == 1 ? "ignored" : "failed");
	free(p);
	if (rc == -ENOTSUP || rc == 1)
		http_respond_json(req, 200, json_pack("{s:s}", "detail", err));
	else
		http_respond_error(req, api_status_of(rc), "%s", err);
}

/* Undeploys the builds of a deleted branch or a closed PR; answers 202. */
static void webhook_undeploy(struct http_req *req, struct app *app, const struct github_action *a,
			     const char *delivery)
{
	struct index_filter f = {.repo = a->repo};
	if (a->kind == GITHUB_UNDEPLOY_PR)
		f.pr = (int)a->pr;
	else
		f.branch = a->target_branch;
	size_t n = controller_undeploy_matching(app->controller, &f);
	metrics_webhook(http_req_header(req, "x-github-event"), "accepted");
	log_info("webhook %s: undeploy %s %s: %zu builds", delivery, a->repo,
		 a->kind == GITHUB_UNDEPLOY_PR ? "PR" : a->target_branch, n);
	http_respond_json(req, 202,
			  json_pack("{s:s,s:I}", "detail", "undeploying", "count", (json_int_t)n));
}

struct forget_ctx {
	const char *oldest;
	uint64_t oldest_ms;
};

static void find_oldest(const char *key, void *value, void *data)
{
	struct forget_ctx *f = data;
	uint64_t t = (uint64_t)(uintptr_t)value;
	if (!f->oldest || t < f->oldest_ms) {
		f->oldest = key;
		f->oldest_ms = t;
	}
}

/* Whether a rebuild of repo#pr may go now (and remembers it). */
static bool rebuild_allowed(struct webhook *w, const char *key, uint64_t *ago_ms)
{
	uint64_t now = now_ms();
	uint64_t last = (uint64_t)(uintptr_t)strmap_get(&w->rebuilds, key);
	if (last && now - last < REBUILD_INTERVAL_MS) {
		*ago_ms = now - last;
		return false;
	}
	if (!last && w->rebuilds.count >= REBUILD_REMEMBERED) {
		struct forget_ctx f = {0};
		strmap_each(&w->rebuilds, find_oldest, &f);
		if (f.oldest) {
			char *k = xstrdup(f.oldest);
			strmap_del(&w->rebuilds, k);
			free(k);
		}
	}
	strmap_put(&w->rebuilds, key, (void *)(uintptr_t)now);
	return true;
}

/* A "/runboat rebuild" comment: the PR's head is built again, once per
 * REBUILD_INTERVAL_MS; answered once the build is reset or deployed. */
static void webhook_rebuild(struct http_req *req, struct webhook *w, const struct github_action *a,
			    const char *delivery)
{
	struct app *app = w->app;
	char key[GITHUB_REPO_MAX + 24];
	snprintf(key, sizeof key, "%s#%ld", a->repo, a->pr);
	uint64_t ago = 0;
	if (!rebuild_allowed(w, key, &ago)) {
		log_info("webhook %s: rebuild of %s PR %ld by %s ignored: one was asked %llu s ago",
			 delivery, a->repo, a->pr, a->user, (unsigned long long)(ago / 1000));
		metrics_webhook("issue_comment", "ignored");
		http_respond_json(req, 200,
				  json_pack("{s:s+}", "detail", "ignored: a rebuild of this PR was asked ",
					    ago < 2000 ? "just now" : "less than a minute ago"));
		return;
	}
	char err[256];
	struct pending_deploy *p = xcalloc(1, sizeof *p);
	p->req = req;
	snprintf(p->delivery, sizeof p->delivery, "%s", delivery);
	snprintf(p->event, sizeof p->event, "issue_comment");
	int rc = controller_rebuild_pr(app->controller, a->repo, a->pr, a->user, on_deployed, p, err,
				       sizeof err);
	log_info("webhook %s: rebuild %s PR %ld asked by %s: %s", delivery, a->repo, a->pr, a->user,
		 err);
	if (rc == 0) {
		req->on_abort = on_deploy_abort;
		req->abort_data = p;
		return;
	}
	free(p);
	strmap_del(&w->rebuilds, key); /* not done: a new comment may try again */
	metrics_webhook("issue_comment", rc == -ENOTSUP ? "ignored" : "failed");
	if (rc == -ENOTSUP)
		http_respond_json(req, 200, json_pack("{s:s}", "detail", err));
	else
		http_respond_error(req, api_status_of(rc), "%s", err);
}

/* Answers a decoded delivery (on the loop): the error, or what it asks. */
static void webhook_act(struct webhook_job *j)
{
	struct http_req *req = j->req;
	if (j->status) {
		metrics_webhook(j->event, j->status == 401 ? "unauthorized" : "invalid");
		http_respond_error(req, j->status, "%s", j->err);
		return;
	}
	const struct github_action *a = &j->action;
	const char *delivery = http_req_header(req, "x-github-delivery");
	if (!delivery)
		delivery = "-";
	const char *why;
	if ((a->kind == GITHUB_DEPLOY || a->kind == GITHUB_UNDEPLOY_BRANCH ||
	     a->kind == GITHUB_UNDEPLOY_PR || a->kind == GITHUB_REBUILD_PR) &&
	    !controller_leading(j->w->app->controller, &why)) {
		/* not accepted: GitHub (or the load balancer) delivers it again,
		 * to the leader */
		log_info("webhook %s: not accepted (%s)", delivery, why);
		http_respond_error(req, 503, "%s: this replica stands by, deliver to the leader", why);
		return;
	}
	switch (a->kind) {
	case GITHUB_PING:
		metrics_webhook(j->event, "pong");
		http_respond_json(req, 200, json_pack("{s:s}", "detail", "pong"));
		return;
	case GITHUB_IGNORE:
		metrics_webhook(j->event, "ignored");
		http_respond_json(req, 200, json_pack("{s:s}", "detail", a->reason));
		return;
	case GITHUB_DEPLOY:
		webhook_deploy(req, j->w->app, a, delivery);
		return;
	case GITHUB_UNDEPLOY_BRANCH:
	case GITHUB_UNDEPLOY_PR:
		webhook_undeploy(req, j->w->app, a, delivery);
		return;
	case GITHUB_REBUILD_PR:
		webhook_rebuild(req, j->w, a, delivery);
		return;
	}
}

/* ---- large bodies: decoded in libuv's thread pool ---- */

static void on_job_work(uv_work_t *work)
{
	webhook_decode(work->data);
}

static void on_job_done(uv_work_t *work, int status);

/* Submits waiting jobs while a slot is free. */
static void pool_pump(struct webhook *w)
{
	while (w->running < WEBHOOK_POOL_SLOTS && !list_empty(&w->waiting)) {
		struct webhook_job *j = list_entry(w->waiting.next, struct webhook_job, link);
		list_remove(&j->link);
		w->n_waiting--;
		int rc = uv_queue_work(w->app->loop, &j->work, on_job_work, on_job_done);
		if (rc < 0) {
			/* cannot happen with a valid loop and callbacks: answer anyway */
			j->req->on_abort = NULL;
			metrics_webhook(j->event, "failed");
			http_respond_error(j->req, 503, "the webhook could not be processed: %s",
					   uv_strerror(rc));
			job_free(j);
			continue;
		}
		j->submitted = true;
		w->running++;
	}
}

/* Runs on the loop once the work is done or was cancelled (client gone). */
static void on_job_done(uv_work_t *work, int status)
{
	struct webhook_job *j = work->data;
	struct webhook *w = j->w;
	w->running--;
	if (j->req) {
		j->req->on_abort = NULL;
		if (status == 0)
			webhook_act(j);
		else {
			metrics_webhook(j->event, "failed");
			http_respond_error(j->req, 503, "the webhook could not be processed: %s",
					   uv_strerror(status));
		}
	}
	job_free(j);
	pool_pump(w);
}

/* The client went away: the request is gone. A waiting job is dropped now;
 * one in the pool is cancelled if it has not started, else dropped when it
 * ends (it reads only its own copies). */
static void on_job_abort(struct http_req *req, void *data)
{
	UNUSED(req);
	struct webhook_job *j = data;
	j->req = NULL;
	if (!j->submitted) {
		list_remove(&j->link);
		j->w->n_waiting--;
		job_free(j);
		return;
	}
	uv_cancel((uv_req_t *)&j->work);
}

static void on_webhook(struct http_req *req, void *data)
{
	struct webhook *w = data;
	struct webhook_job *j = xcalloc(1, sizeof *j);
	list_init(&j->link);
	j->w = w;
	j->req = req;
	j->secret = w->app->cfg->github.webhook_secret;
	const char *sig = http_req_header(req, "x-hub-signature-256");
	const char *event = http_req_header(req, "x-github-event");
	const char *ctype = http_req_header(req, "content-type");
	j->signature = sig ? xstrdup(sig) : NULL;
	j->event = event ? xstrdup(event) : NULL;
	j->form = ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0;
	if (req->body.len <= WEBHOOK_INLINE_MAX) {
		j->body = req->body;
		webhook_decode(j);
		webhook_act(j);
		job_free(j);
		return;
	}
	/* The body moves into the job, so that the worker never reads memory
	 * the connection frees when the client goes away. The request keeps an
	 * empty body (http.c frees it as any other). */
	j->body = req->body;
	j->owns_body = true;
	memset(&req->body, 0, sizeof req->body);
	j->work.data = j;
	req->on_abort = on_job_abort;
	req->abort_data = j;
	list_push(&w->waiting, &j->link);
	w->n_waiting++;
	pool_pump(w);
}

/* With a secret configured, a delivery without a signature is refused at
 * its headers: its body (up to 25 MB) is never read. */
static int on_webhook_headers(struct http_req *req, void *data, const char **detail)
{
	struct webhook *w = data;
	if (w->app->cfg->github.webhook_secret && !http_req_header(req, "x-hub-signature-256")) {
		*detail = "missing X-Hub-Signature-256: this server requires signed webhooks";
		metrics_webhook(http_req_header(req, "x-github-event"), "unauthorized");
		return 401;
	}
	return 0;
}

struct webhook *webhook_register(struct router *r, struct app *app)
{
	struct webhook *w = xcalloc(1, sizeof *w);
	w->app = app;
	list_init(&w->waiting);
	struct route_opts o = {
		.handler = on_webhook,
		.data = w,
		.max_body = app->cfg->server.max_webhook_body_bytes,
		.check_headers = on_webhook_headers,
	};
	router_add_opts(r, "POST", "/webhooks/github", &o);
	return w;
}

unsigned webhook_pending(const struct webhook *w)
{
	return w->n_waiting + w->running;
}

void webhook_free(struct webhook *w)
{
	if (!w)
		return;
	if (w->running || !list_empty(&w->waiting))
		log_error("webhook: freed with deliveries in flight");
	strmap_clear(&w->rebuilds, NULL);
	free(w);
}
