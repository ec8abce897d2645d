#include "api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "app.h"
#include "assets.h"
#include "config.h"
#include "controller.h"
#include "github.h"
#include "http.h"
#include "hub.h"
#include "index.h"
#include "log.h"
#include "router.h"
#include "util.h"
#include "ws.h"

#define SSE_KEEPALIVE_MS 15000
#define WS_MAX_MESSAGE 4096

/* ---- common checks ---- */

static int http_status_of(int rc)
{
	switch (rc) {
	case 0: return 200;
	case -ENOENT: return 404;
	case -EBUSY: return 409;
	case -EAGAIN: return 503;
	case -ENOTSUP:
	case -EINVAL: return 400;
	default: return 500;
	}
}

/* API reads answer 503 until the informers have synced. */
static bool require_ready(struct http_req *req, struct app *app)
{
	const char *reason = NULL;
	if (controller_ready(app->controller, &reason))
		return true;
	http_respond_error(req, 503, "not ready: %s", reason);
	return false;
}

/* State-changing requests sent by a browser from another origin are
 * refused (CSRF): the Origin header, when present, must be base_url's, and
 * Sec-Fetch-Site must not say cross-site. */
static bool same_origin(struct http_req *req, struct app *app)
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

/* HTTP Basic auth of the admin, compared in constant time. */
static bool require_admin(struct http_req *req, struct app *app)
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

/* Reads the listing filters of the query. Strings are owned by q. Returns
 * false after answering 400. */
struct query_filter {
	struct index_filter f;
	char *strings[5];
};

static void query_filter_free(struct query_filter *q)
{
	for (size_t i = 0; i < ARRAY_SIZE(q->strings); i++)
		free(q->strings[i]);
}

static bool parse_filter(struct http_req *req, struct query_filter *q, bool with_status,
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
	if (q->strings[3] && *q->strings[3] && build_parse_pr(q->strings[3], &q->f.pr) < 0) {
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
	query_filter_free(q);
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
	if (!require_ready(req, app))
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
	if (!require_ready(req, app))
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
	struct query_filter q;
	if (!require_ready(req, app) || !parse_filter(req, &q, true, false))
		return;
	const struct build **list = NULL;
	size_t n = index_list(app->index, &q.f, INDEX_SORT_DESC, &list);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, build_to_json(list[i], &app->links));
	free(list);
	query_filter_free(&q);
	http_add_header(req, "Cache-Control", "no-store");
	http_respond_json(req, 200, out);
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
	if (!require_ready(req, app))
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
			http_respond_error(p->req, error == -EIO ? 502 : http_status_of(error), "%s",
					   message);
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
	if (!same_origin(req, app) || !require_ready(req, app))
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
		http_respond_error(req, http_status_of(rc), "%s", msg);
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
	if (!same_origin(req, app) || !require_admin(req, app))
		return;
	act(req, app, controller_undeploy_build);
}

static void on_undeploy_many(struct http_req *req, void *data)
{
	struct app *app = data;
	struct query_filter q;
	if (!same_origin(req, app) || !require_admin(req, app) || !require_ready(req, app) ||
	    !parse_filter(req, &q, false, false))
		return;
	if (!q.f.repo && !q.f.target_branch && !q.f.branch && !q.f.pr) {
		query_filter_free(&q);
		http_respond_error(req, 400, "give at least one of repo, target_branch, branch, pr");
		return;
	}
	size_t n = controller_undeploy_matching(app->controller, &q.f);
	query_filter_free(&q);
	http_respond_json(req, 200, json_pack("{s:s,s:I}", "detail", "undeploying", "count",
					      (json_int_t)n));
}

/* Triggers answer once GitHub said what the head is (pending_action). */

static void trigger(struct http_req *req, struct app *app, bool pr)
{
	if (!same_origin(req, app) || !require_admin(req, app) || !require_ready(req, app))
		return;
	bool bad1 = false, bad2 = false;
	char *repo = http_req_query(req, "repo", &bad1);
	char *what = http_req_query(req, pr ? "pr" : "branch", &bad2);
	int prn = 0;
	if (bad1 || bad2 || !repo || !what || !build_valid_repo(repo) ||
	    (pr ? build_parse_pr(what, &prn) < 0 : !build_valid_branch(what))) {
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
		http_respond_error(req, http_status_of(rc), "%s", err);
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

static void serve_log(struct http_req *req, struct app *app, bool init)
{
	if (!require_ready(req, app))
		return;
	const struct build *b = build_or_404(req, app);
	if (!b)
		return;
	struct pending_log *p = xcalloc(1, sizeof *p);
	p->req = req;
	p->log = controller_log(app->controller, b->name, init, on_log_done, p);
	if (!p->log) {
		free(p);
		http_respond_error(req, 503, "the Kubernetes client is not available");
		return;
	}
	req->on_abort = on_log_abort;
	req->abort_data = p;
}

static void on_init_log(struct http_req *req, void *data)
{
	serve_log(req, data, true);
}

static void on_log(struct http_req *req, void *data)
{
	serve_log(req, data, false);
}

/* ---- streams: Server-Sent Events ---- */

struct sse {
	struct http_req *req;
	struct hub_sub *sub;
	uv_timer_t keepalive;
	bool ended;
};

static int sse_send(void *conn, const char *json, size_t len)
{
	struct sse *s = conn;
	if (s->ended)
		return -EPIPE;
	struct buf b = {0};
	buf_append_str(&b, "data: ");
	buf_append(&b, json, len);
	buf_append_str(&b, "\n\n");
	int rc = http_stream_write(s->req, b.data, b.len);
	buf_free(&b);
	return rc;
}

static size_t sse_pending(void *conn)
{
	struct sse *s = conn;
	return s->ended ? 0 : http_stream_pending(s->req);
}

static void on_sse_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Ends the subscription; the stream too unless the connection is gone. */
static void sse_finish(struct sse *s, bool end_stream)
{
	if (s->ended)
		return;
	s->ended = true;
	hub_unsubscribe(s->sub);
	s->req->on_abort = NULL;
	s->req->on_shutdown = NULL;
	if (end_stream)
		http_stream_end(s->req);
	uv_close((uv_handle_t *)&s->keepalive, on_sse_timer_closed);
}

static void sse_kick(void *conn, const char *reason)
{
	UNUSED(reason);
	sse_finish(conn, true);
}

static void on_sse_abort(struct http_req *req, void *data)
{
	UNUSED(req);
	sse_finish(data, false);
}

static void on_sse_shutdown(struct http_req *req, void *data)
{
	UNUSED(req);
	sse_finish(data, true);
}

static void on_sse_keepalive(uv_timer_t *t)
{
	struct sse *s = t->data;
	if (!s->ended)
		http_stream_write(s->req, ": keepalive\n\n", 13);
}

static const struct hub_sink sse_sink = {sse_send, sse_pending, sse_kick};

static void on_build_events(struct http_req *req, void *data)
{
	struct app *app = data;
	struct query_filter q;
	if (!require_ready(req, app) || !parse_filter(req, &q, false, true))
		return;
	struct sse *s = xcalloc(1, sizeof *s);
	s->req = req;
	http_add_header(req, "X-Accel-Buffering", "no");
	http_stream_begin(req, 200, "text/event-stream");
	req->on_abort = on_sse_abort;
	req->on_shutdown = on_sse_shutdown;
	req->abort_data = s;
	uv_timer_init(app->loop, &s->keepalive);
	s->keepalive.data = s;
	uv_timer_start(&s->keepalive, on_sse_keepalive, SSE_KEEPALIVE_MS, SSE_KEEPALIVE_MS);
	s->sub = hub_subscribe(app->hub, &q.f, &sse_sink, s);
	query_filter_free(&q);
}

/* ---- streams: WebSocket ---- */

struct wsconn {
	struct ws *ws;
	struct hub_sub *sub;
};

static int wsc_send(void *conn, const char *json, size_t len)
{
	struct wsconn *w = conn;
	return ws_send_text(w->ws, json, len);
}

static size_t wsc_pending(void *conn)
{
	struct wsconn *w = conn;
	return ws_pending(w->ws);
}

static void wsc_kick(void *conn, const char *reason)
{
	struct wsconn *w = conn;
	ws_close(w->ws, 1008, reason);
}

static const struct hub_sink ws_sink = {wsc_send, wsc_pending, wsc_kick};

static void on_ws_message(struct ws *ws, const char *msg, size_t len, bool text, void *data)
{
	UNUSED(ws);
	UNUSED(msg);
	UNUSED(len);
	UNUSED(text);
	UNUSED(data);
	/* the stream is one-way: what clients send is ignored */
}

static void on_ws_close(struct ws *ws, void *data)
{
	UNUSED(ws);
	struct wsconn *w = data;
	if (w->sub)
		hub_unsubscribe(w->sub);
	free(w);
}

static void on_ws(struct http_req *req, void *data)
{
	struct app *app = data;
	char accept[32];
	const char *detail = NULL;
	int st = ws_handshake_check(req, app->cfg->server.base_url, accept, &detail);
	if (st) {
		if (st == 426)
			http_add_header(req, "Upgrade", "websocket");
		http_respond_error(req, st, "%s", detail);
		return;
	}
	struct query_filter q;
	if (!require_ready(req, app) || !parse_filter(req, &q, false, true))
		return;
	struct wsconn *w = xcalloc(1, sizeof *w);
	struct ws_opts wo = {.max_message = WS_MAX_MESSAGE};
	struct ws_cbs cbs = {.on_message = on_ws_message, .on_close = on_ws_close};
	w->ws = ws_accept(req, app->loop, accept, &wo, &cbs, w);
	w->sub = hub_subscribe(app->hub, &q.f, &ws_sink, w);
	query_filter_free(&q);
}

/* ---- GitHub webhook ---- */

static void on_webhook(struct http_req *req, void *data)
{
	struct app *app = data;
	const char *secret = app->cfg->github.webhook_secret;
	if (secret && !github_verify_signature(secret, req->body.data ? req->body.data : "",
					       req->body.len,
					       http_req_header(req, "x-hub-signature-256"))) {
		http_respond_error(req, 401, "missing or invalid X-Hub-Signature-256");
		return;
	}
	const char *event = http_req_header(req, "x-github-event");
	struct github_action a;
	char err[256];
	/* GitHub's "application/x-www-form-urlencoded" content type sends the
	 * JSON in a payload field; the signature covers the raw body */
	const char *ctype = http_req_header(req, "content-type");
	char *form_payload = NULL;
	const char *json = req->body.data ? req->body.data : "";
	size_t json_len = req->body.len;
	if (ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0) {
		const char *p = json_len > 8 ? memmem(json, json_len, "payload=", 8) : NULL;
		if (p && (p == json || p[-1] == '&')) {
			const char *v = p + 8;
			const char *end = memchr(v, '&', json_len - (size_t)(v - json));
			form_payload = url_decode(v, end ? (size_t)(end - v) : json_len - (size_t)(v - json),
						  true);
		}
		if (!form_payload) {
			http_respond_error(req, 400, "form-encoded webhook without a valid payload field");
			return;
		}
		json = form_payload;
		json_len = strlen(form_payload);
	}
	int rc = github_webhook_parse(event, json, json_len, &a, err, sizeof err);
	free(form_payload);
	if (rc) {
		http_respond_error(req, rc == -EMSGSIZE ? 413 : 400, "%s", err);
		return;
	}
	const char *delivery = http_req_header(req, "x-github-delivery");
	switch (a.kind) {
	case GITHUB_PING:
		http_respond_json(req, 200, json_pack("{s:s}", "detail", "pong"));
		return;
	case GITHUB_IGNORE:
		http_respond_json(req, 200, json_pack("{s:s}", "detail", a.reason));
		return;
	case GITHUB_DEPLOY: {
		struct build_commit cm = {a.repo, a.target_branch, (int)a.pr, a.sha};
		rc = controller_deploy(app->controller, &cm, err, sizeof err);
		log_info("webhook %s: deploy %s %s%s%.0ld %.12s: %s", delivery ? delivery : "-", a.repo,
			 a.target_branch, a.pr ? " PR " : "", a.pr, a.sha, err);
		if (rc == -ENOTSUP)
			http_respond_json(req, 200, json_pack("{s:s}", "detail", err));
		else if (rc)
			http_respond_error(req, http_status_of(rc), "%s", err);
		else
			http_respond_json(req, 202, json_pack("{s:s}", "detail", err));
		return;
	}
	case GITHUB_UNDEPLOY_BRANCH:
	case GITHUB_UNDEPLOY_PR: {
		struct index_filter f = {.repo = a.repo};
		if (a.kind == GITHUB_UNDEPLOY_PR)
			f.pr = (int)a.pr;
		else
			f.branch = a.target_branch;
		rc = controller_undeploy_matching(app->controller, &f);
		log_info("webhook %s: undeploy %s %s: %d builds", delivery ? delivery : "-", a.repo,
			 a.kind == GITHUB_UNDEPLOY_PR ? "PR" : a.target_branch, rc);
		http_respond_json(req, 202, json_pack("{s:s,s:i}", "detail", "undeploying", "count", rc));
		return;
	}
	}
}

/* ---- the UI ---- */

/* Serves one embedded file with validators. */
static void serve_asset(struct http_req *req, const char *path)
{
	const struct asset *a = assets_find(path);
	if (!a) {
		http_respond_error(req, 404, "no such file: %s", path);
		return;
	}
	http_add_header(req, "ETag", a->etag);
	http_add_header(req, "Cache-Control", "no-cache");
	http_add_header(req, "X-Content-Type-Options", "nosniff");
	const char *inm = http_req_header(req, "if-none-match");
	if (inm && (strstr(inm, a->etag) || strcmp(inm, "*") == 0)) {
		http_respond_static(req, 304, NULL, "", 0);
		return;
	}
	if (str_ends_with(path, ".html")) {
		http_add_header(req, "Content-Security-Policy",
				"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
				"style-src 'self'; frame-ancestors 'none'");
		http_add_header(req, "Referrer-Policy", "same-origin");
	}
	http_respond_static(req, 200, assets_content_type(path), a->data, a->len);
}

static void on_index(struct http_req *req, void *data)
{
	UNUSED(data);
	serve_asset(req, "/index.html");
}

static void on_webui(struct http_req *req, void *data)
{
	UNUSED(data);
	const char *rest = route_param(req, "path");
	if (!rest || !*rest || strstr(rest, "..")) {
		serve_asset(req, "/index.html");
		return;
	}
	char *p = xasprintf("/%s", rest);
	serve_asset(req, p);
	free(p);
}

/* /builds/{name}?live sends a started build's visitor to the instance. */
static void on_build_page(struct http_req *req, void *data)
{
	struct app *app = data;
	bool bad = false;
	char *live = http_req_query(req, "live", &bad);
	if (live) {
		free(live);
		const char *name = route_param(req, "name");
		const struct build *b = index_find(app->index, name);
		if (b && b->status == BUILD_STARTED) {
			char *url = xasprintf("http://%s.%s", b->slug, app->links.build_domain);
			http_add_header(req, "Cache-Control", "no-store");
			http_redirect(req, 302, url);
			free(url);
			return;
		}
	}
	serve_asset(req, "/index.html");
}

void api_register(struct router *r, struct app *app)
{
	size_t webhook_max = app->cfg ? app->cfg->server.max_webhook_body_bytes : 25u << 20;
	router_add(r, "GET", "/healthz", on_healthz, app, 0);
	router_add(r, "GET", "/readyz", on_readyz, app, 0);
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
	router_add(r, "GET", "/api/v1/build-events", on_build_events, app, 0);
	router_add(r, "GET", "/api/v1/ws", on_ws, app, 0);
	router_add(r, "POST", "/webhooks/github", on_webhook, app, webhook_max);
	router_add(r, "GET", "/", on_index, app, 0);
	router_add(r, "GET", "/webui/{path*}", on_webui, app, 0);
	router_add(r, "GET", "/builds", on_index, app, 0);
	router_add(r, "GET", "/builds/{name}", on_build_page, app, 0);
}
