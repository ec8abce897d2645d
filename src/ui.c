#include "ui.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "assets.h"
#include "controller.h"
#include "http.h"
#include "index.h"
#include "log.h"
#include "router.h"
#include "strmap.h"
#include "util.h"

/* Client addresses remembered for the wake limit; beyond, the table starts
 * afresh (a flood of addresses gets at most this many wakes each). */
#define UI_WAKE_CLIENTS 4096

struct ui {
	struct app *app;
	struct strmap wakes; /* address -> struct wake_bucket */
};

/* A token bucket: UI_WAKES_PER_MINUTE tokens, refilled continuously. */
struct wake_bucket {
	double tokens;
	uint64_t at_ms;
};

static bool wake_allowed(struct ui *ui, const char *peer)
{
	uint64_t now = now_ms();
	struct wake_bucket *w = strmap_get(&ui->wakes, peer);
	if (!w) {
		if (ui->wakes.count >= UI_WAKE_CLIENTS)
			strmap_clear(&ui->wakes, free);
		w = xcalloc(1, sizeof *w);
		w->tokens = UI_WAKES_PER_MINUTE;
		w->at_ms = now;
		strmap_put(&ui->wakes, peer, w);
	}
	w->tokens += (double)(now - w->at_ms) * UI_WAKES_PER_MINUTE / 60000.0;
	if (w->tokens > UI_WAKES_PER_MINUTE)
		w->tokens = UI_WAKES_PER_MINUTE;
	w->at_ms = now;
	if (w->tokens < 1)
		return false;
	w->tokens -= 1;
	return true;
}

/* A visit to a stopped build's live link starts it, within the limit. */
static void wake(struct ui *ui, struct http_req *req, const struct build *b)
{
	struct app *app = ui->app;
	const char *why;
	if (!controller_ready(app->controller, &why) || !controller_leading(app->controller, &why))
		return;
	const char *peer = http_req_peer(req);
	if (!wake_allowed(ui, peer)) {
		log_info("build %s: not woken by a visit from %s: more than %d wakes a minute from "
			 "that address", b->name, peer, UI_WAKES_PER_MINUTE);
		return;
	}
	char err[256];
	int rc = controller_start_build(app->controller, b->name, NULL, NULL, err, sizeof err);
	log_info("build %s: woken by a visit to its link (from %s)%s%s", b->name, peer,
		 rc < 0 ? ": " : "", rc < 0 ? err : "");
}

/* For a build gone: the newest build of the branch or PR named in the
 * query, or NULL. */
static const struct build *newest_of_query(struct app *app, struct http_req *req)
{
	bool bad = false;
	char *repo = http_req_query(req, "repo", &bad);
	char *branch = http_req_query(req, "target_branch", &bad);
	char *pr_s = http_req_query(req, "pr", &bad);
	long pr = 0;
	if (pr_s) {
		char *end;
		pr = strtol(pr_s, &end, 10);
		if (*end || pr < 0 || pr > 2147483647L)
			bad = true;
	}
	const struct build *b = NULL;
	if (!bad && repo && branch) {
		for (char *p = repo; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		b = index_newest(app->index, repo, branch, (int)pr);
	}
	free(repo);
	free(branch);
	free(pr_s);
	return b;
}


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
	struct ui *ui = data;
	struct app *app = ui->app;
	bool bad = false;
	char *live = http_req_query(req, "live", &bad);
	if (live) {
		free(live);
		const char *name = route_param(req, "name");
		const struct build *b = index_find(app->index, name);
		if (!b || b->deleting) {
			const struct build *n = newest_of_query(app, req);
			if (n && n != b) {
				struct buf u = {0};
				buf_printf(&u, "%s/builds/", app->links.base_url);
				buf_append_url_encoded(&u, n->name);
				buf_printf(&u, "?live");
				http_add_header(req, "Cache-Control", "no-store");
				http_redirect(req, 302, u.data);
				buf_free(&u);
				return;
			}
		}
		if (b && b->status == BUILD_STARTED) {
			char *url = xasprintf("http://%s.%s", b->slug, app->links.build_domain);
			http_add_header(req, "Cache-Control", "no-store");
			http_redirect(req, 302, url);
			free(url);
			return;
		}
		if (b && b->status == BUILD_STOPPED && !b->deleting)
			wake(ui, req, b);
		http_add_header(req, "Cache-Control", "no-store");
	}
	serve_asset(req, "/index.html");
}

struct ui *ui_register(struct router *r, struct app *app)
{
	struct ui *ui = xcalloc(1, sizeof *ui);
	ui->app = app;
	router_add(r, "GET", "/", on_index, app, 0);
	router_add(r, "GET", "/webui/{path*}", on_webui, app, 0);
	router_add(r, "GET", "/builds", on_index, app, 0);
	router_add(r, "GET", "/builds/{name}", on_build_page, ui, 0);
	return ui;
}

void ui_free(struct ui *ui)
{
	if (!ui)
		return;
	strmap_clear(&ui->wakes, free);
	free(ui);
}
