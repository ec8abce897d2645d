/* A controller that does nothing, for the benchmarks that serve runboat's
 * HTTP surface (api, streams, ui) over an index they fill themselves
 * (bench_stream, bench_dashboard): ready and leading, every action refused
 * with -ENOTSUP, no logs. Its functions take the place of controller.c at
 * link time; include this once, in the benchmark's one C file. Also the
 * start of that surface over it (bench_app_start). */
#ifndef RUNBOAT_BENCH_FAKE_CONTROLLER_H
#define RUNBOAT_BENCH_FAKE_CONTROLLER_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "app.h"
#include "config.h"
#include "controller.h"
#include "http.h"
#include "hub.h"
#include "index.h"
#include "router.h"
#include "util.h"
#include "ws.h"

bool controller_ready(const struct controller *c, const char **reason)
{
	UNUSED(c);
	*reason = "";
	return true;
}

bool controller_leading(const struct controller *c, const char **reason)
{
	UNUSED(c);
	*reason = "";
	return true;
}

int controller_deploy(struct controller *c, const struct build_commit *commit,
		      controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c), UNUSED(commit), UNUSED(cb), UNUSED(data);
	snprintf(err, errlen, "not in this benchmark");
	return -ENOTSUP;
}

int controller_trigger(struct controller *c, const char *repo, const char *branch, long pr,
		       controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c), UNUSED(repo), UNUSED(branch), UNUSED(pr), UNUSED(cb), UNUSED(data);
	snprintf(err, errlen, "not in this benchmark");
	return -ENOTSUP;
}

#define FAKE_ACTION(fn)                                                                    \
	int fn(struct controller *c, const char *name, controller_done_cb cb, void *data,   \
	       char *err, size_t errlen)                                                    \
	{                                                                                  \
		UNUSED(c), UNUSED(name), UNUSED(cb), UNUSED(data);                         \
		snprintf(err, errlen, "not in this benchmark");                            \
		return -ENOTSUP;                                                           \
	}
FAKE_ACTION(controller_start_build)
FAKE_ACTION(controller_stop_build)
FAKE_ACTION(controller_reset_build)
FAKE_ACTION(controller_undeploy_build)
FAKE_ACTION(controller_force_undeploy_build)

int controller_rebuild_pr(struct controller *c, const char *repo, long pr, const char *user,
			  controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c), UNUSED(repo), UNUSED(pr), UNUSED(user), UNUSED(cb), UNUSED(data);
	snprintf(err, errlen, "not in this benchmark");
	return -ENOTSUP;
}

size_t controller_undeploy_matching(struct controller *c, const struct index_filter *f)
{
	UNUSED(c), UNUSED(f);
	return 0;
}

int controller_log(struct controller *c, const char *name, const char *job_kind,
		   controller_log_cb cb, void *data, struct controller_log **out)
{
	UNUSED(c), UNUSED(name), UNUSED(job_kind), UNUSED(cb), UNUSED(data), UNUSED(out);
	return -ECANCELED;
}

void controller_cancel_log(struct controller_log *l)
{
	UNUSED(l);
}

/* runboat's HTTP surface as main.c assembles it, in app on loop, over an
 * empty index and this file's controller (ctl: any non-NULL address, never
 * dereferenced): the configuration's defaults with base_url, the hub's
 * limits of runboat.toml.sample (array_bytes: its batch arrays, 0 for the
 * default; a larger one raises stream_buffer_bytes to it), lim with the
 * stream send buffer set, listening on listen. Returns the API; exits on
 * failure. */
static struct api *bench_app_start(struct app *app, uv_loop_t *loop, void *ctl,
				   const char *base_url, size_t array_bytes,
				   struct http_limits *lim, const char *listen)
{
	char err[256];
	app->loop = loop;
	app->cfg = config_default("ns", "runboat.test", err, sizeof err);
	if (!app->cfg) {
		fprintf(stderr, "config: %s\n", err);
		exit(1);
	}
	free(app->cfg->server.base_url);
	app->cfg->server.base_url = xstrdup(base_url);
	app->links.base_url = app->cfg->server.base_url;
	app->links.build_domain = app->cfg->build.domain;
	app->links.github_url = "https://github.com";
	app->base_origin = ws_origin_of(app->cfg->server.base_url);
	app->index = index_new();
	if (array_bytes > app->cfg->server.stream_buffer_bytes)
		app->cfg->server.stream_buffer_bytes = array_bytes;
	struct hub_limits hl = {.high_water = app->cfg->server.stream_buffer_bytes,
				.stuck_ms = (uint64_t)(app->cfg->server.stream_stall_timeout * 1000),
				.array_bytes = array_bytes};
	app->hub = hub_new(loop, app->index, &app->links, &hl);
	app->controller = ctl;
	app->router = router_new();
	struct api *api = api_register(app->router, app);
	lim->stream_send_buffer = (int)app->cfg->server.stream_buffer_bytes;
	app->http = http_server_new(loop, lim, app->router);
	if (http_server_listen(app->http, listen) != 0) {
		fprintf(stderr, "listen on %s failed\n", listen);
		exit(1);
	}
	return api;
}

#endif
