#include "api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "app.h"
#include "config.h"
#include "controller.h"
#include "http.h"
#include "index.h"
#include "metrics.h"
#include "router.h"
#include "streams.h"
#include "ui.h"
#include "util.h"
#include "validate.h"
#include "webhook.h"

/* ---- checks shared by the handlers ---- */

int api_status_of(int rc)
{
	switch (rc) {
	case 0: return 200;
	case -ENOENT: return 404;
	case -EBUSY: return 409;
	case -EAGAIN:
	case -ECANCELED: return 503;
	case -EIO: return 502;
	case -ETIMEDOUT: return 504;
	case -ENOTSUP:
	case -EINVAL: return 400;
	default: return 500;
	}
}

bool api_require_ready(struct http_req *req, struct app *app)
{
	const char *reason = NULL;
	if (controller_ready(app->controller, &reason))
		return true;
	http_respond_error(req, 503, "not ready: %s", reason);
	return false;
}

bool api_require_leader(struct http_req *req, struct app *app)
{
	const char *reason = NULL;
	if (controller_leading(app->controller, &reason))
		return true;
	http_add_header(req, "Retry-After", "2");
	http_respond_error(req, 503, "%s: this replica stands by and serves reads only; actions go "
			   "to the leader", reason);
	return false;
}

bool api_same_origin(struct http_req *req, struct app *app)
{
	const char *origin = http_req_header(req, "origin");
	const char *site = http_req_header(req, "sec-fetch-site");
	if ((origin && (!app->base_origin || strcasecmp(origin, app->base_origin) != 0)) ||
	    (site && strcmp(site, "cross-site") == 0)) {
		http_respond_error(req, 403, "cross-origin request refused: this action must come from %s",
				   app->cfg->server.base_url);
		return false;
	}
	return true;
}

bool api_require_admin(struct http_req *req, struct app *app)
{
	const struct config_admin *adm = &app->cfg->admin;
	const char *auth = http_req_header(req, "authorization");
	bool ok = false;
	if (adm->password && auth && strncasecmp(auth, "Basic ", 6) == 0) {
		const char *b64 = auth + 6;
		while (*b64 == ' ')
			b64++;
		size_t n = strlen(b64);
		if (n > 0 && n <= 1024 && n % 4 == 0) {
			unsigned char *raw = xmalloc(n);
			int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
			if (len > 0) {
				/* EVP_DecodeBlock counts padding bytes as zeros */
				if (b64[n - 1] == '=')
					len--;
				if (b64[n - 2] == '=')
					len--;
				char *expected = xasprintf("%s:%s", adm->user, adm->password);
				ok = secure_equal(raw, (size_t)len, expected, strlen(expected));
				OPENSSL_cleanse(expected, strlen(expected));
				free(expected);
			}
			free(raw);
		}
	}
	if (!ok) {
		http_add_header(req, "WWW-Authenticate", "Basic realm=\"runboat\", charset=\"UTF-8\"");
		http_respond_error(req, 401,
				   adm->password ? "admin credentials required"
						 : "admin actions are disabled: no admin password is configured");
	}
	return ok;
}

void api_filter_free(struct api_filter *q)
{
	for (size_t i = 0; i < ARRAY_SIZE(q->strings); i++)
		free(q->strings[i]);
}

bool api_parse_filter(struct http_req *req, struct api_filter *q, bool with_status,
		      bool with_name)
{
	static const char *const keys[] = {"repo", "target_branch", "branch", "pr", "build_name"};
	memset(q, 0, sizeof *q);
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		bool bad = false;
		q->strings[i] = http_req_query(req, keys[i], &bad);
		if (bad) {
			http_respond_error(req, 400, "malformed query parameter %s", keys[i]);
			goto fail;
		}
		if (q->strings[i] && strlen(q->strings[i]) > 512) {
			http_respond_error(req, 400, "query parameter %s too long", keys[i]);
			goto fail;
		}
	}
	q->f.repo = q->strings[0];
	q->f.target_branch = q->strings[1];
	q->f.branch = q->strings[2];
	if (q->strings[3] && *q->strings[3] && validate_parse_pr(q->strings[3], &q->f.pr) < 0) {
		http_respond_error(req, 400, "pr must be a pull request number, got \"%.40s\"",
				   q->strings[3]);
		goto fail;
	}
	if (with_name)
		q->f.name = q->strings[4];
	if (with_status) {
		bool bad = false;
		char *st = http_req_query(req, "status", &bad);
		if (st && *st) {
			int s = build_status_parse(st);
			if (s < 0) {
				http_respond_error(req, 400,
						   "unknown status \"%.40s\": expected initializing, failed, "
						   "stopped, stopping, starting, started or undeploying",
						   st);
				free(st);
				goto fail;
			}
			q->f.by_status = true;
			q->f.status = (enum build_status)s;
		}
		free(st);
	}
	return true;
fail:
	api_filter_free(q);
	return false;
}

/* ---- health ---- */

static void on_healthz(struct http_req *req, void *data)
{
	UNUSED(data);
	http_add_header(req, "Cache-Control", "no-store");
	http_respond_static(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void on_readyz(struct http_req *req, void *data)
{
	struct app *app = data;
	http_add_header(req, "Cache-Control", "no-store");
	const char *reason = NULL;
	/* a standby is not ready: the Service sends traffic to the leader */
	if (!controller_leading(app->controller, &reason)) {
		http_respond_error(req, 503, "%s", reason);
		return;
	}
	if (!controller_ready(app->controller, &reason)) {
		http_respond_error(req, 503, "not ready: %s", reason);
		return;
	}
	http_respond_static(req, 200, "application/json", "{\"status\":\"ready\"}", 18);
}

/* ---- reads ---- */

static void on_status(struct http_req *req, void *data)
{
	struct app *app = data;
	if (!api_require_ready(req, app))
		return;
	const struct config_limits *l = &app->cfg->limits;
	struct index *idx = app->index;
	json_t *st = json_pack(
		"{s:I,s:i,s:I,s:I,s:I,s:i,s:I,s:I,s:i,s:I}", "deployed",
		(json_int_t)index_deployed(idx), "max_deployed", l->max_deployed, "failed",
		(json_int_t)index_count_status(idx, BUILD_FAILED), "stopped",
		(json_int_t)index_count_status(idx, BUILD_STOPPED), "started",
		(json_int_t)(index_count_status(idx, BUILD_STARTED) +
			     index_count_status(idx, BUILD_STARTING)),
		"max_started", l->max_started, "to_initialize",
		(json_int_t)index_count_init(idx, BUILD_INIT_TODO), "initializing",
		(json_int_t)index_count_init(idx, BUILD_INIT_STARTED), "max_initializing",
		l->max_initializing, "undeploying",
		(json_int_t)index_count_status(idx, BUILD_UNDEPLOYING));
	http_add_header(req, "Cache-Control", "no-store");
	http_respond_json(req, 200, st);
}

static void on_repos(struct http_req *req, void *data)
{
	struct app *app = data;
	if (!api_require_ready(req, app))
		return;
	const char **repos = NULL;
	size_t n = index_repos(app->index, &repos);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++) {
		char *link = xasprintf("%s/%s", app->links.github_url, repos[i]);
		json_array_append_new(out, json_pack("{s:s,s:s}", "name", repos[i], "link", link));
		free(link);
	}
	free(repos);
	http_add_header(req, "Cache-Control", "no-store");
	http_respond_json(req, 200, out);
}

static void on_builds(struct http_req *req, void *data)
{
	struct app *app = data;
	struct api_filter q;
	if (!api_require_ready(req, app) || !api_parse_filter(req, &q, true, false))
		return;
	const struct build **list = NULL;
	size_t n = index_list(app->index, &q.f, INDEX_SORT_DESC, &list);
	/* each build's cached encoding, shared with the streams */
	struct buf out = {0};
	buf_append(&out, "[", 1);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const char *j = build_json_text(list[i], &app->links, &len);
		if (i)
			buf_append(&out, ",", 1);
		buf_append(&out, j, len);
	}
	buf_append(&out, "]", 1);
	free(list);
	api_filter_free(&q);
	http_add_header(req, "Cache-Control", "no-store");
	http_respond_compressible(req, 200, "application/json", out.data, out.len);
	buf_free(&out);
}

static const struct build *build_or_404(struct http_req *req, struct app *app)
{
	const char *name = route_param(req, "name");
	const struct build *b = name ? index_find(app->index, name) : NULL;
	if (!b)
		http_respond_error(req, 404, "no build named %.80s", name ? name : "");
	return b;
}

static void on_build(struct http_req *req, void *data)
{
	struct app *app = data;
	if (!api_require_ready(req, app))
		return;
	const struct build *b = build_or_404(req, app);
	if (b) {
		http_add_header(req, "Cache-Control", "no-store");
		http_respond_json(req, 200, build_to_json(b, &app->links));
	}
}

/* ---- actions ---- */

/* A request waiting for the outcome of an asynchronous action. */
struct pending_action {
	struct http_req *req;
	bool aborted;
};

static void on_action_abort(struct http_req *req, void *data)
{
	UNUSED(req);
	struct pending_action *p = data;
	p->aborted = true;
}

static void on_action_done(int error, const char *message, void *data)
{
	struct pending_action *p = data;
	if (!p->aborted) {
		p->req->on_abort = NULL;
		if (error)
			http_respond_error(p->req, api_status_of(error), "%s", message);
		else
			http_respond_json(p->req, 200, json_pack("{s:s}", "detail", message));
	}
	free(p);
}

typedef int (*build_action_fn)(struct controller *, const char *, controller_done_cb, void *,
			       char *, size_t);

/* Asks the controller and answers once Kubernetes has taken the change. */
static void act(struct http_req *req, struct app *app, build_action_fn fn)
{
	if (!api_same_origin(req, app) || !api_require_ready(req, app) || !api_require_leader(req, app))
		return;
	const char *name = route_param(req, "name");
	char msg[512];
	struct pending_action *p = xcalloc(1, sizeof *p);
	p->req = req;
	int rc = fn(app->controller, name, on_action_done, p, msg, sizeof msg);
	if (rc == 0) {
		req->on_abort = on_action_abort;
		req->abort_data = p;
		return;
	}
	free(p);
	if (rc < 0)
		http_respond_error(req, api_status_of(rc), "%s", msg);
	else
		http_respond_json(req, 200, json_pack("{s:s}", "detail", msg));
}

static void on_start(struct http_req *req, void *data)
{
	act(req, data, controller_start_build);
}

static void on_stop(struct http_req *req, void *data)
{
	act(req, data, controller_stop_build);
}

static void on_reset(struct http_req *req, void *data)
{
	act(req, data, controller_reset_build);
}

static void on_undeploy(struct http_req *req, void *data)
{
	struct app *app = data;
	if (!api_same_origin(req, app) || !api_require_admin(req, app))
		return;
	act(req, app, controller_undeploy_build);
}

static void on_force_undeploy(struct http_req *req, void *data)
{
	struct app *app = data;
	if (!api_same_origin(req, app) || !api_require_admin(req, app))
		return;
	act(req, app, controller_force_undeploy_build);
}

static void on_undeploy_many(struct http_req *req, void *data)
{
	struct app *app = data;
	struct api_filter q;
	if (!api_same_origin(req, app) || !api_require_admin(req, app) || !api_require_ready(req, app) ||
	    !api_require_leader(req, app) || !api_parse_filter(req, &q, false, false))
		return;
	if (!q.f.repo && !q.f.target_branch && !q.f.branch && !q.f.pr) {
		api_filter_free(&q);
		http_respond_error(req, 400, "give at least one of repo, target_branch, branch, pr");
		return;
	}
	size_t n = controller_undeploy_matching(app->controller, &q.f);
	api_filter_free(&q);
	http_respond_json(req, 200, json_pack("{s:s,s:I}", "detail", "undeploying", "count",
					      (json_int_t)n));
}

/* Triggers answer once GitHub said what the head is (pending_action). */

static void trigger(struct http_req *req, struct app *app, bool pr)
{
	if (!api_same_origin(req, app) || !api_require_admin(req, app) || !api_require_ready(req, app) ||
	    !api_require_leader(req, app))
		return;
	bool bad1 = false, bad2 = false;
	char *repo = http_req_query(req, "repo", &bad1);
	char *what = http_req_query(req, pr ? "pr" : "branch", &bad2);
	int prn = 0;
	if (bad1 || bad2 || !repo || !what || !validate_repo(repo) ||
	    (pr ? validate_parse_pr(what, &prn) < 0 : !validate_branch(what))) {
		http_respond_error(req, 400, pr ? "expected ?repo=owner/name&pr=NUMBER"
						: "expected ?repo=owner/name&branch=NAME");
		goto out;
	}
	for (char *p = repo; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	struct pending_action *t = xcalloc(1, sizeof *t);
	t->req = req;
	char err[256];
	int rc = controller_trigger(app->controller, repo, pr ? NULL : what, prn, on_action_done, t,
				    err, sizeof err);
	if (rc) {
		free(t);
		http_respond_error(req, api_status_of(rc), "%s", err);
		goto out;
	}
	req->on_abort = on_action_abort;
	req->abort_data = t;
out:
	free(repo);
	free(what);
}

static void on_trigger_branch(struct http_req *req, void *data)
{
	trigger(req, data, false);
}

static void on_trigger_pr(struct http_req *req, void *data)
{
	trigger(req, data, true);
}

/* ---- logs ---- */

struct pending_log {
	struct http_req *req;
	struct controller_log *log;
};

static void on_log_abort(struct http_req *req, void *data)
{
	UNUSED(req);
	struct pending_log *p = data;
	controller_cancel_log(p->log);
	free(p);
}

static void on_log_done(int error, const char *message, const char *text, size_t len, void *data)
{
	struct pending_log *p = data;
	p->req->on_abort = NULL;
	if (error)
		http_respond_error(p->req, error == -ENOENT ? 404 : 502, "%s", message);
	else
		http_respond(p->req, 200, "text/plain; charset=utf-8", text, len);
	free(p);
}

static void serve_log(struct http_req *req, struct app *app, const char *job_kind)
{
	if (!api_require_ready(req, app))
		return;
	const struct build *b = build_or_404(req, app);
	if (!b)
		return;
	struct pending_log *p = xcalloc(1, sizeof *p);
	p->req = req;
	int rc = controller_log(app->controller, b->name, job_kind, on_log_done, p, &p->log);
	if (rc) {
		free(p);
		if (rc == -EAGAIN)
			http_respond_error(req, 503, "%d logs are being fetched already: try again shortly",
					   CONTROLLER_MAX_LOGS);
		else
			http_respond_error(req, 503, "the Kubernetes client is not available");
		return;
	}
	req->on_abort = on_log_abort;
	req->abort_data = p;
}

static void on_init_log(struct http_req *req, void *data)
{
	serve_log(req, data, "initialize");
}

static void on_cleanup_log(struct http_req *req, void *data)
{
	serve_log(req, data, "cleanup");
}

static void on_log(struct http_req *req, void *data)
{
	serve_log(req, data, NULL);
}

/* The state of the handlers that keep some. */
struct api {
	struct webhook *webhook;
	struct ui *ui;
};

struct api *api_register(struct router *r, struct app *app)
{
	struct api *api = xcalloc(1, sizeof *api);
	router_add(r, "GET", "/healthz", on_healthz, app, 0);
	router_add(r, "GET", "/readyz", on_readyz, app, 0);
	metrics_register(r, app);
	router_add(r, "GET", "/api/v1/status", on_status, app, 0);
	router_add(r, "GET", "/api/v1/repos", on_repos, app, 0);
	router_add(r, "GET", "/api/v1/builds", on_builds, app, 0);
	router_add(r, "DELETE", "/api/v1/builds", on_undeploy_many, app, 0);
	router_add(r, "POST", "/api/v1/builds/trigger/branch", on_trigger_branch, app, 0);
	router_add(r, "POST", "/api/v1/builds/trigger/pr", on_trigger_pr, app, 0);
	router_add(r, "GET", "/api/v1/builds/{name}", on_build, app, 0);
	router_add(r, "DELETE", "/api/v1/builds/{name}", on_undeploy, app, 0);
	router_add(r, "POST", "/api/v1/builds/{name}/start", on_start, app, 0);
	router_add(r, "POST", "/api/v1/builds/{name}/stop", on_stop, app, 0);
	router_add(r, "POST", "/api/v1/builds/{name}/reset", on_reset, app, 0);
	router_add(r, "GET", "/api/v1/builds/{name}/init-log", on_init_log, app, 0);
	router_add(r, "GET", "/api/v1/builds/{name}/log", on_log, app, 0);
	router_add(r, "GET", "/api/v1/builds/{name}/cleanup-log", on_cleanup_log, app, 0);
	router_add(r, "POST", "/api/v1/builds/{name}/force-undeploy", on_force_undeploy, app, 0);
	streams_register(r, app);
	api->webhook = webhook_register(r, app);
	api->ui = ui_register(r, app);
	return api;
}

unsigned api_webhooks_pending(const struct api *api)
{
	return webhook_pending(api->webhook);
}

void api_free(struct api *api)
{
	if (!api)
		return;
	webhook_free(api->webhook);
	ui_free(api->ui);
	free(api);
}
