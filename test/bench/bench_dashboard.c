/* The dashboard's server side at the OCA's production size, for
 * bench_dashboard.py: runboat's real HTTP surface (http, router, api,
 * streams, hub, index, ui and the embedded web/ files) on its own loop
 * thread, with a fake controller (always ready, refuses actions) and N
 * synthetic builds (7,000 by default) upserted straight into the index, as
 * the Deployments informer would. The builds look like the OCA's: 150
 * repositories, each with builds of three target branches (two each) and of
 * about twenty pull requests (one to three builds each); mostly stopped,
 * some started, a few initializing or failed with a reason; created over
 * the last 60 days. Deterministic (a fixed seed).
 *
 *   build/bench/bench_dashboard [--builds 7000] [--port 0] [--array-bytes N]
 *
 * --array-bytes sets the hub's bound on a batched stream's arrays (the
 * hub_limits field; default HUB_ARRAY_BYTES), and raises the connections'
 * buffer (stream_buffer_bytes, which bounds the arrays too) to it when it
 * is larger: to measure the page with other message sizes.
 *
 * Prints "port P builds N" on stdout once it serves, then reads commands on
 * stdin, one a line:
 *   burst N TAG   N builds change in one loop turn (started <-> stopped, and
 *                 the reason "TAG i" for the i-th of them); prints
 *                 "burst N last NAME" (the last build changed) when done
 *   quit          (or end of input) stops
 *
 * The fake controller replaces src/controller.c as in test/unit/test_api.c
 * (the linker never takes controller.o). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "app.h"
#include "build.h"
#include "config.h"
#include "controller.h"
#include "http.h"
#include "hub.h"
#include "index.h"
#include "log.h"
#include "router.h"
#include "util.h"
#include "ws.h"

/* ---- the fake controller ---- */

#include "fake_controller.h"

/* ---- synthetic builds ---- */

#define N_REPOS 150

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* xorshift64*: deterministic, good enough to spread builds. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static unsigned rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

static const char *const words[] = {
	"account", "server", "web", "stock", "sale", "purchase", "hr", "project", "mis",
	"reporting", "l10n", "partner", "product", "queue", "connector", "pos", "crm",
	"helpdesk", "contract", "edi", "field-service", "dms", "manufacture", "website",
};

static struct {
	uv_loop_t loop;
	uv_async_t async;
	uv_sem_t done;
	struct app app;
	struct api *api;
	int port;
	/* the command being run (one at a time) */
	enum { CMD_BURST, CMD_QUIT } cmd;
	size_t arg_n;
	char arg_tag[64];
	char last[64];
	/* builds */
	char (*names)[32];
	size_t n_builds;
	size_t next_burst; /* the next build a burst changes */
} srv;

/* Sets the replica counts of a succeeded build for started or stopped. */
static void set_running(struct build *b, bool on)
{
	b->desired_replicas = b->replicas = b->ready_replicas = b->available_replicas = on ? 1 : 0;
}

static void add_build(const char *repo, const char *branch, int pr, int64_t created)
{
	size_t i = srv.n_builds++;
	snprintf(srv.names[i], sizeof srv.names[i], "b%08x%08x", (unsigned)rnd(), (unsigned)rnd());
	char sha[41], dname[64];
	snprintf(sha, sizeof sha, "%08x%08x%08x%08x%08x", (unsigned)rnd(), (unsigned)rnd(),
		 (unsigned)rnd(), (unsigned)rnd(), (unsigned)rnd());
	snprintf(dname, sizeof dname, "%s-odoo", srv.names[i]);
	struct build_commit c = {repo, branch, pr, sha};
	struct build *b = build_new(srv.names[i], dname, &c, "1", "uid");
	unsigned r = rnd_below(1000);
	if (r < 25) {
		b->init_status = BUILD_INIT_STARTED;
	} else if (r < 40) {
		b->init_status = BUILD_INIT_TODO;
	} else if (r < 90) {
		b->init_status = BUILD_INIT_FAILED;
		build_set_reason(b, "init job failed: exit code 1 (module 'x' could not be installed)");
	} else {
		b->init_status = BUILD_INIT_SUCCEEDED;
		set_running(b, r < 120);
	}
	b->created = created;
	b->created_ms = created * 1000;
	b->last_scaled = created + 600;
	b->has_finalizer = true;
	b->status = build_derive_status(b);
	index_upsert(srv.app.index, b);
}

/* About n builds the OCA way (see the header); exactly n. */
static void populate(size_t n)
{
	static const char *const branches[] = {"16.0", "17.0", "18.0"};
	srv.names = xcalloc(n, sizeof *srv.names);
	int64_t now = (int64_t)time(NULL);
	int64_t span = 60 * 24 * 3600;
	int next_pr[N_REPOS];
	for (int r = 0; r < N_REPOS; r++)
		next_pr[r] = 100 + (int)rnd_below(900);
	for (size_t k = 0; srv.n_builds < n; k++) {
		int r = (int)(k % N_REPOS);
		char repo[64];
		snprintf(repo, sizeof repo, "oca/%s-%s-%d", words[r % 24], words[(r / 24 + r) % 24], r);
		/* the first rounds: the branches' builds, then pull requests */
		if (k < (size_t)N_REPOS * 6) {
			const char *br = branches[(k / N_REPOS) % 3];
			add_build(repo, br, 0, now - (int64_t)rnd_below((unsigned)span));
			continue;
		}
		int pr = next_pr[r]++;
		const char *br = branches[rnd_below(3)];
		unsigned nb = 1 + rnd_below(3);
		for (unsigned j = 0; j < nb && srv.n_builds < n; j++)
			add_build(repo, br, pr, now - (int64_t)rnd_below((unsigned)span));
	}
}

/* N builds change in this loop turn: started <-> stopped, a new reason. */
static void burst(size_t n, const char *tag)
{
	for (size_t i = 0; i < n; i++) {
		const char *name = srv.names[srv.next_burst++ % srv.n_builds];
		const struct build *cur = index_find(srv.app.index, name);
		struct build *b = build_dup(cur);
		if (b->init_status != BUILD_INIT_SUCCEEDED) {
			build_set_reason(b, NULL);
			b->init_status = BUILD_INIT_SUCCEEDED;
		}
		set_running(b, b->status != BUILD_STARTED);
		char why[96];
		snprintf(why, sizeof why, "%s %zu", tag, i);
		build_set_reason(b, why);
		b->last_scaled = (int64_t)time(NULL);
		b->status = build_derive_status(b);
		index_upsert(srv.app.index, b);
		snprintf(srv.last, sizeof srv.last, "%s", name);
	}
}

static void on_command(uv_async_t *a)
{
	UNUSED(a);
	switch (srv.cmd) {
	case CMD_BURST:
		burst(srv.arg_n, srv.arg_tag);
		uv_sem_post(&srv.done);
		break;
	case CMD_QUIT:
		http_server_shutdown(srv.app.http, NULL, NULL);
		uv_close((uv_handle_t *)&srv.async, NULL);
		break;
	}
}

static size_t array_bytes; /* --array-bytes, 0: the hub's default */

static void server_setup(const char *listen)
{
	uv_loop_init(&srv.loop);
	uv_sem_init(&srv.done, 0);
	char *base_url = xasprintf("http://%s", listen);
	struct http_limits lim;
	http_limits_default(&lim);
	srv.api = bench_app_start(&srv.app, &srv.loop, &srv, base_url, array_bytes, &lim, listen);
	free(base_url);
	srv.port = http_server_port(srv.app.http);
	uv_async_init(&srv.loop, &srv.async, on_command);
}

static void *server_main(void *arg)
{
	UNUSED(arg);
	uv_run(&srv.loop, UV_RUN_DEFAULT);
	return NULL;
}

int main(int argc, char **argv)
{
	size_t n = 7000;
	int port = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--builds") == 0 && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--array-bytes") == 0 && i + 1 < argc)
			array_bytes = strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--builds N] [--port P] [--array-bytes N]\n",
				argv[0]);
			return 2;
		}
	}
	if (n < 1 || n > 200000 || port < 0 || port > 65535 || array_bytes > (64u << 20)) {
		fprintf(stderr, "--builds 1..200000, --port 0..65535, --array-bytes 0..64 MiB\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_WARN);
	char listen[32];
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	server_setup(listen);
	if (port == 0) {
		/* the real port in the links the API gives */
		free(srv.app.cfg->server.base_url);
		srv.app.cfg->server.base_url = xasprintf("http://127.0.0.1:%d", srv.port);
		srv.app.links.base_url = srv.app.cfg->server.base_url;
		free(srv.app.base_origin);
		srv.app.base_origin = ws_origin_of(srv.app.cfg->server.base_url);
	}
	populate(n);
	pthread_t th;
	pthread_create(&th, NULL, server_main, NULL);
	printf("port %d builds %zu\n", srv.port, srv.n_builds);
	fflush(stdout);
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		size_t k;
		char tag[64];
		if (sscanf(line, "burst %zu %63s", &k, tag) == 2 && k > 0 && k <= srv.n_builds) {
			srv.arg_n = k;
			snprintf(srv.arg_tag, sizeof srv.arg_tag, "%s", tag);
			srv.cmd = CMD_BURST;
			uv_async_send(&srv.async);
			uv_sem_wait(&srv.done);
			printf("burst %zu last %s\n", k, srv.last);
			fflush(stdout);
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		} else {
			fprintf(stderr, "unknown command: %s", line);
		}
	}
	srv.cmd = CMD_QUIT;
	uv_async_send(&srv.async);
	pthread_join(th, NULL);
	return 0;
}
