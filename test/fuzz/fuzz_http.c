/* libFuzzer target: arbitrary bytes fed to one HTTP connection as a request
 * stream, routed through runboat's real routes. The first byte picks how the
 * stream is split into reads, so that parser state across reads is covered. */
#include <stdint.h>
#include <stdlib.h>

#include "api.h"
#include "app.h"
#include "config.h"
#include "controller.h"
#include "http.h"
#include "hub.h"
#include "index.h"
#include "kubefiles.h"
#include "log.h"
#include "router.h"

static struct app app;
static struct http_server *srv;
static struct api *api;

static void setup(void)
{
	static uv_loop_t loop;
	uv_loop_init(&loop);
	log_set_level(LOG_OFF);
	app.loop = &loop;
	char err[256];
	app.cfg = config_default("fuzz", "fuzz.test", err, sizeof err);
	app.links.base_url = app.cfg->server.base_url;
	app.links.build_domain = app.cfg->build.domain;
	app.links.github_url = "https://github.com";
	app.index = index_new();
	app.kubefiles = kubefiles_cache_new();
	app.hub = hub_new(&loop, app.index, &app.links, NULL);
	/* no Kubernetes: the API answers 503, the webhook queues */
	struct controller_deps deps = {.loop = &loop, .cfg = app.cfg, .idx = app.index,
				       .kubefiles = app.kubefiles, .links = &app.links};
	app.controller = controller_new(&deps, NULL);
	app.router = router_new();
	api = api_register(app.router, &app); /* kept for the process's life */
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_header_bytes = 2048;
	lim.max_request_line_bytes = 512;
	lim.max_body_bytes = 4096;
	srv = http_server_new(&loop, &lim, app.router);
	app.http = srv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!srv)
		setup();
	if (size == 0)
		return 0;
	size_t step = (size_t)(data[0] % 16) + 1;
	data++;
	size--;
	struct http_conn *c = http_conn_new_detached(srv);
	for (size_t off = 0; off < size; off += step) {
		size_t n = size - off < step ? size - off : step;
		http_conn_feed(c, (const char *)data + off, n);
	}
	http_conn_free_detached(c);
	return 0;
}
