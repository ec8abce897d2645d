/* runboat: command line, start-up and shutdown of the one loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <uv.h>

#include "api.h"
#include "app.h"
#include "config.h"
#include "controller.h"
#include "curl_uv.h"
#include "github_client.h"
#include "github_sync.h"
#include "http.h"
#include "hub.h"
#include "index.h"
#include "kube.h"
#include "kubeconfig.h"
#include "kubefiles.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "render_cmd.h"
#include "router.h"
#include "util.h"
#include "version.h"
#include "ws.h"

#define EXIT_CONFIG 2

static void usage(FILE *out)
{
	fprintf(out,
		"usage: runboat [--config FILE]\n"
		"       runboat --check-config FILE\n"
		"       runboat render --config FILE --mode MODE --repo OWNER/REPO --target-branch B\n"
		"                      [--pr N] --sha SHA [--build-name NAME] [--format json|yaml|raw]\n"
		"                      (renders a build's kubefiles; runboat render --help)\n"
		"       runboat --version | --help\n"
		"\n"
		"Runs the runboat operator: an HTTP API, a dashboard and a controller that\n"
		"deploys one Odoo instance per commit of GitHub branches and pull requests.\n"
		"\n"
		"  -c, --config FILE        configuration (default: $RUNBOAT_CONFIG, then ./runboat.toml)\n"
		"      --check-config FILE  validate FILE, print the first problem, exit 0 or 2\n"
		"  -V, --version            print the version, those of the libraries and\n"
		"                           where the default kubefiles are\n"
		"  -h, --help               print this help\n"
		"\n"
		"Secrets may come from RUNBOAT_ADMIN_PASSWORD, RUNBOAT_GITHUB_TOKEN and\n"
		"RUNBOAT_GITHUB_WEBHOOK_SECRET. See runboat.toml.sample for every setting.\n");
}

struct signals {
	uv_signal_t sigint, sigterm;
	uv_prepare_t flush;
	struct app *app;
	int received;
	int pending; /* shutdown steps still running: the HTTP drain, the release */
};

static void on_flush(uv_prepare_t *p)
{
	UNUSED(p);
	log_flush();
}

static void on_closed_nothing(uv_handle_t *h)
{
	UNUSED(h);
}

/* Every connection is closed and the Lease released: stop the rest, in
 * dependency order. */
static void on_stopped(struct signals *s)
{
	struct app *app = s->app;
	lease_free(app->lease);
	app->lease = NULL;
	if (app->lease_kube)
		kube_close(app->lease_kube);
	app->lease_kube = NULL;
	github_sync_free(app->github_sync);
	app->github_sync = NULL;
	controller_free(app->controller);
	app->controller = NULL;
	hub_free(app->hub);
	app->hub = NULL;
	github_client_close(app->github);
	app->github = NULL;
	if (app->kube)
		kube_close(app->kube);
	app->kube = NULL;
	curl_uv_close(app->curl);
	app->curl = NULL;
	log_info("shutdown complete");
	uv_close((uv_handle_t *)&s->sigint, on_closed_nothing);
	uv_close((uv_handle_t *)&s->sigterm, on_closed_nothing);
	uv_close((uv_handle_t *)&s->flush, on_closed_nothing);
}

static void on_shutdown_step(void *data)
{
	struct signals *s = data;
	if (--s->pending == 0)
		on_stopped(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct signals *s = h->data;
	if (s->received++) {
		log_warn("second signal (%s): exiting now", strsignal(signum));
		log_flush();
		_exit(1);
	}
	log_info("%s: stopping; in-flight requests get %.1fs", strsignal(signum),
		 s->app->cfg->server.shutdown_timeout);
	s->app->stopping = true;
	s->pending = s->app->lease ? 2 : 1;
	/* first: a leader stops acting (waiting requests are answered 503)
	 * and hands the Lease over at once */
	if (s->app->lease)
		lease_release(s->app->lease, on_shutdown_step, s);
	http_server_shutdown(s->app->http, on_shutdown_step, s);
}

static void limits_from_config(const struct config *cfg, struct http_limits *lim)
{
	http_limits_default(lim);
	lim->max_connections = (unsigned)cfg->server.max_connections;
	lim->max_connections_per_client = (unsigned)cfg->server.max_connections_per_client;
	lim->max_buffered_body_bytes = cfg->server.max_buffered_body_bytes;
	lim->max_header_bytes = cfg->server.max_header_bytes;
	lim->max_request_line_bytes = cfg->server.max_request_line_bytes;
	lim->max_body_bytes = cfg->server.max_body_bytes;
	lim->header_timeout_ms = (uint64_t)(cfg->server.header_timeout * 1000);
	lim->body_timeout_ms = (uint64_t)(cfg->server.body_timeout * 1000);
	lim->keepalive_timeout_ms = (uint64_t)(cfg->server.keepalive_timeout * 1000);
	lim->shutdown_timeout_ms = (uint64_t)(cfg->server.shutdown_timeout * 1000);
	lim->stream_send_buffer = (int)(cfg->server.stream_buffer_bytes > (1 << 24)
						? (1 << 24)
						: cfg->server.stream_buffer_bytes);
}

/* The Kubernetes client, or NULL with the reason in app->kube_error:
 * runboat then serves anyway (the UI, /healthz, webhooks queue). */
static void kube_setup(struct app *app)
{
	const struct config *cfg = app->cfg;
	char err[400];
	struct kubeconfig *kc = kubeconfig_resolve(cfg->kubernetes.kubeconfig,
						   cfg->kubernetes.context, err, sizeof err);
	if (!kc) {
		snprintf(app->kube_error, sizeof app->kube_error, "Kubernetes: %s", err);
		log_error("%s", app->kube_error);
		return;
	}
	log_info("Kubernetes API server %s (%s), namespace %s", kc->server,
		 kc->path ? kc->path : "in-cluster", cfg->kubernetes.namespace);
	struct kube_options ko = {
		.qps = cfg->kubernetes.qps,
		.burst = cfg->kubernetes.burst,
		.timeout_ms = (long)(cfg->kubernetes.request_timeout * 1000),
	};
	app->kube = kube_new(app->loop, kc, &ko);
}

static void on_lease_change(bool leading, const char *leader, void *data)
{
	struct app *app = data;
	metrics_set_leader(leading);
	if (leading) {
		controller_set_active(app->controller, true, NULL);
		return;
	}
	char why[LEASE_HOLDER_MAX + 64];
	if (app->stopping)
		snprintf(why, sizeof why, "standby: this replica is shutting down");
	else if (!leader || !*leader)
		snprintf(why, sizeof why, "standby: no leader elected yet");
	else if (strcmp(leader, app->lease_identity) == 0)
		snprintf(why, sizeof why, "standby: this replica could not renew its Lease in time, "
			 "trying again");
	else
		snprintf(why, sizeof why, "standby: leader is %s", leader);
	controller_set_active(app->controller, false, why);
}

/* With [kubernetes] leader_election: a Lease candidate on a client of its
 * own, and the controller inactive until it leads. */
static void lease_setup(struct app *app)
{
	const struct config_kubernetes *k = &app->cfg->kubernetes;
	if (!k->leader_election || !app->kube)
		return;
	char err[400];
	struct kubeconfig *kc = kubeconfig_resolve(k->kubeconfig, k->context, err, sizeof err);
	if (!kc) {
		log_error("leader election: Kubernetes: %s", err);
		controller_set_active(app->controller, false, "standby: no Kubernetes client for the "
				      "Lease");
		return;
	}
	/* a renewal never waits behind the controller's calls, and a call
	 * that hangs gives up well within the renew deadline */
	long t = (long)(k->renew_deadline * 1000 / 2);
	if (t < 1000)
		t = 1000;
	struct kube_options ko = {
		.qps = -1,
		.timeout_ms = t,
		.first_byte_timeout_ms = t,
		.stale_first_byte_timeout_ms = t < 3000 ? t : 3000,
		.max_connections = 2,
	};
	app->lease_kube = kube_new(app->loop, kc, &ko);
	char id[LEASE_IDENTITY_MAX + 1];
	lease_identity(id);
	snprintf(app->lease_identity, sizeof app->lease_identity, "%s", id);
	struct lease_opts lo = {
		.namespace = k->namespace,
		.name = k->lease_name,
		.identity = id,
		.timing = {(uint64_t)(k->lease_duration * 1000), (uint64_t)(k->renew_deadline * 1000),
			   (uint64_t)(k->retry_period * 1000)},
	};
	app->lease = lease_new(app->loop, app->lease_kube, &lo, on_lease_change, app);
	metrics_set_leader(false);
	controller_set_active(app->controller, false, "standby: no leader elected yet");
}

static void github_setup(struct app *app)
{
	const struct config_github *g = &app->cfg->github;
	struct github_client_opts go = {
		.api_url = g->api_url,
		.token = g->token,
		.statuses = g->statuses,
	};
	app->github = github_client_new(app->loop, app->curl, &go);
}

static int run(struct config *cfg)
{
	uv_loop_t loop;
	struct app app = {0};
	struct signals sig = {0};
	int rc = 1;

	uv_loop_init(&loop);
	app.loop = &loop;
	app.cfg = cfg;
	app.started_ms = now_ms();
	app.links.base_url = cfg->server.base_url;
	app.links.build_domain = cfg->build.domain;
	app.links.github_url = "https://github.com";
	app.base_origin = ws_origin_of(cfg->server.base_url);
	app.index = index_new();
	app.kubefiles = kubefiles_cache_new();
	app.curl = curl_uv_new(&loop);
	kube_setup(&app);
	github_setup(&app);
	struct hub_limits hl = {
		.high_water = cfg->server.stream_buffer_bytes,
		.stuck_ms = (uint64_t)(cfg->server.stream_stall_timeout * 1000),
	};
	app.hub = hub_new(&loop, app.index, &app.links, &hl);
	struct controller_deps deps = {
		.loop = &loop,
		.cfg = cfg,
		.idx = app.index,
		.kube = app.kube,
		.kube_error = app.kube_error[0] ? app.kube_error : NULL,
		.github = app.github,
		.kubefiles = app.kubefiles,
		.links = &app.links,
	};
	app.controller = controller_new(&deps, NULL);
	lease_setup(&app);
	if (cfg->github.sync_interval > 0) {
		struct github_sync_deps sd = {.loop = &loop, .cfg = cfg, .idx = app.index,
					      .controller = app.controller, .github = app.github};
		struct github_sync_opts so = {
			.interval_ms = (uint64_t)(cfg->github.sync_interval * 1000)};
		app.github_sync = github_sync_new(&sd, &so);
	}

	app.router = router_new();
	struct api *api = api_register(app.router, &app);

	struct http_limits lim;
	limits_from_config(cfg, &lim);
	app.http = http_server_new(&loop, &lim, app.router);
	int err = http_server_listen(app.http, cfg->server.listen);
	if (err < 0) {
		log_error("cannot listen on %s: %s", cfg->server.listen, uv_strerror(err));
		goto out;
	}
	log_info("runboat %s listening on %s (port %d), base URL %s", RUNBOAT_VERSION,
		 cfg->server.listen, http_server_port(app.http), cfg->server.base_url);

	sig.app = &app;
	uv_signal_init(&loop, &sig.sigint);
	uv_signal_init(&loop, &sig.sigterm);
	sig.sigint.data = sig.sigterm.data = &sig;
	uv_signal_start(&sig.sigint, on_signal, SIGINT);
	uv_signal_start(&sig.sigterm, on_signal, SIGTERM);
	uv_prepare_init(&loop, &sig.flush);
	uv_prepare_start(&sig.flush, on_flush);
	uv_unref((uv_handle_t *)&sig.flush);

	controller_start(app.controller);
	if (app.lease)
		lease_start(app.lease);
	github_sync_start(app.github_sync);
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = 0;
out:
	if (rc) {
		/* nothing to drain: close what was opened */
		sig.app = &app;
		http_server_shutdown(app.http, NULL, NULL);
		lease_free(app.lease);
		if (app.lease_kube)
			kube_close(app.lease_kube);
		github_sync_free(app.github_sync);
		controller_free(app.controller);
		hub_free(app.hub);
		github_client_close(app.github);
		if (app.kube)
			kube_close(app.kube);
		curl_uv_close(app.curl);
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	http_server_free(app.http);
	api_free(api);
	router_free(app.router);
	index_free(app.index);
	kubefiles_cache_free(app.kubefiles);
	free(app.base_origin);
	if (uv_loop_close(&loop) != 0)
		log_warn("the loop still had handles at exit");
	log_flush();
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", required_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config_path = NULL;
	const char *check_path = NULL;
	int ch;
	if (argc > 1 && strcmp(argv[1], "render") == 0)
		return render_cmd_main(argc - 1, argv + 1);
	while ((ch = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config_path = optarg;
			break;
		case 'C':
			check_path = optarg;
			break;
		case 'V': {
			struct buf b = {0};
			version_describe(&b);
			fputs(b.data, stdout);
			buf_free(&b);
			return 0;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "runboat: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_CONFIG;
	}

	char err[1024];
	if (check_path) {
		struct config *cfg = config_load(check_path, err, sizeof err);
		log_flush();
		if (!cfg) {
			fprintf(stderr, "%s\n", err);
			return EXIT_CONFIG;
		}
		printf("%s: ok\n", check_path);
		config_free(cfg);
		return 0;
	}
	if (!config_path)
		config_path = getenv("RUNBOAT_CONFIG");
	if (!config_path || !*config_path) {
		if (access("runboat.toml", F_OK) != 0) {
			fprintf(stderr, "runboat: no configuration: pass --config FILE, set RUNBOAT_CONFIG, "
					"or create ./runboat.toml (see runboat.toml.sample)\n");
			return EXIT_CONFIG;
		}
		config_path = "runboat.toml";
	}
	/* what config_load logs waits for the level and format it names */
	log_hold();
	struct config *cfg = config_load(config_path, err, sizeof err);
	if (!cfg) {
		log_release();
		fprintf(stderr, "%s\n", err);
		return EXIT_CONFIG;
	}
	log_set_level((enum log_level)cfg->server.log_level);
	log_set_format((enum log_format)cfg->server.log_format);
	log_set_access(cfg->server.access_log);
	log_release();

	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	metrics_init();
	int rc = run(cfg);
	metrics_shutdown();
	config_free(cfg);
	curl_global_cleanup();
	return rc;
}
