#include "api.h"

#include <string.h>

#include "app.h"
#include "assets.h"
#include "config.h"
#include "http.h"
#include "router.h"
#include "util.h"

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
	if (!app->ready) {
		http_respond_error(req, 503, "not ready: %s",
				   app->ready_reason ? app->ready_reason : "starting");
		return;
	}
	http_respond_static(req, 200, "application/json", "{\"status\":\"ready\"}", 18);
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

void api_register(struct router *r, struct app *app)
{
	router_add(r, "GET", "/healthz", on_healthz, app, 0);
	router_add(r, "GET", "/readyz", on_readyz, app, 0);
	router_add(r, "GET", "/", on_index, app, 0);
	router_add(r, "GET", "/webui/{path*}", on_webui, app, 0);
	router_add(r, "GET", "/builds", on_index, app, 0);
	router_add(r, "GET", "/builds/{name}", on_index, app, 0);
}
