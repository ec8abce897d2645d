#include "ui.h"

#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "assets.h"
#include "http.h"
#include "index.h"
#include "router.h"
#include "util.h"


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

void ui_register(struct router *r, struct app *app)
{
	router_add(r, "GET", "/", on_index, app, 0);
	router_add(r, "GET", "/webui/{path*}", on_webui, app, 0);
	router_add(r, "GET", "/builds", on_index, app, 0);
	router_add(r, "GET", "/builds/{name}", on_build_page, app, 0);
}
