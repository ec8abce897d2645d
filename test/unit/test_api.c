/* The HTTP surface (api.c, webhook.c, streams.c, ui.c) on a real server and
 * a real loop, with libuv clients, the real build index and hub, and a fake
 * controller: readiness, listings and their filters, actions and their
 * answers (sync and async, each error code), admin auth and CSRF, triggers,
 * logs, the webhook (signature at the headers and on the body, form
 * encoding, deploy/undeploy, bodies big enough for the thread pool, clients
 * that leave while it works), SSE and WebSocket streams (the default one
 * and ?batch=1: arrays of events, the end-of-snapshot marker), and the UI
 * routes.
 *
 * The fake controller is the set of controller_* definitions below. They
 * replace src/controller.c without any build change: the linker takes a
 * member of librunboat_core.a only for a symbol still undefined, and this
 * file's definitions come first, so controller.o is never linked. If api.c
 * or webhook.c starts calling another controller function, the link fails
 * with a duplicate symbol: add a fake for it here. */
#include "api.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/hmac.h>
#include <zlib.h>

#include "app.h"
#include "build.h"
#include "config.h"
#include "controller.h"
#include "http.h"
#include "hub.h"
#include "index.h"
#include "log.h"
#include "router.h"
#include "unit.h"
#include "util.h"
#include "ws.h"

/* ---- the fake controller ---- */

struct call {
	char what[32];  /* "start", "deploy", "trigger", "undeploy-matching", ... */
	char name[128]; /* build name, or repo */
	char arg[128];  /* branch / sha / filter summary */
	long pr;
};

static struct fake {
	bool ready;
	const char *standby; /* non-NULL: controller_leading is false, with it */
	int rc;            /* what the next call returns */
	char msg[128];     /* and its err message */
	bool hold;         /* keep the callback for fake_complete */
	int done_error;    /* else called back on the next loop turn with this */
	char done_msg[128];
	size_t matching;   /* what controller_undeploy_matching returns */
	/* the log */
	int log_rc; /* what controller_log returns instead of starting */
	int log_error;
	/* recorded */
	struct call calls[16];
	int n_calls;
	controller_done_cb held_cb;
	void *held_data;
	int log_cancels;
} fake;

static uv_loop_t loop;

static void fake_reset(void)
{
	fake = (struct fake){.ready = true};
	snprintf(fake.msg, sizeof fake.msg, "ok");
	snprintf(fake.done_msg, sizeof fake.done_msg, "done");
}

static void record(const char *what, const char *name, const char *arg, long pr)
{
	CHECK(fake.n_calls < (int)ARRAY_SIZE(fake.calls));
	if (fake.n_calls >= (int)ARRAY_SIZE(fake.calls))
		return;
	struct call *c = &fake.calls[fake.n_calls++];
	snprintf(c->what, sizeof c->what, "%s", what);
	snprintf(c->name, sizeof c->name, "%s", name ? name : "");
	snprintf(c->arg, sizeof c->arg, "%s", arg ? arg : "");
	c->pr = pr;
}

struct later {
	uv_timer_t timer;
	controller_done_cb cb;
	void *data;
	int error;
	char msg[128];
};

static void on_later_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_later(uv_timer_t *t)
{
	struct later *l = t->data;
	l->cb(l->error, l->msg, l->data);
	uv_close((uv_handle_t *)&l->timer, on_later_closed);
}

/* What every async fake does: return fake.rc with fake.msg; on 0, call back
 * later (never from inside the call, as the real one) or hold. */
static int fake_async(controller_done_cb cb, void *data, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", fake.msg);
	if (fake.rc != 0 || !cb)
		return fake.rc;
	if (fake.hold) {
		fake.held_cb = cb;
		fake.held_data = data;
		return 0;
	}
	struct later *l = xcalloc(1, sizeof *l);
	l->cb = cb;
	l->data = data;
	l->error = fake.done_error;
	snprintf(l->msg, sizeof l->msg, "%s", fake.done_msg);
	uv_timer_init(&loop, &l->timer);
	l->timer.data = l;
	uv_timer_start(&l->timer, on_later, 1, 0);
	return 0;
}

static void fake_complete(int error, const char *msg)
{
	CHECK(fake.held_cb != NULL);
	controller_done_cb cb = fake.held_cb;
	fake.held_cb = NULL;
	if (cb)
		cb(error, msg, fake.held_data);
}

bool controller_ready(const struct controller *c, const char **reason)
{
	UNUSED(c);
	*reason = "the informers have not synced yet";
	return fake.ready;
}

bool controller_leading(const struct controller *c, const char **reason)
{
	UNUSED(c);
	*reason = fake.standby;
	return !fake.standby;
}

int controller_deploy(struct controller *c, const struct build_commit *commit,
		      controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c);
	char arg[128];
	snprintf(arg, sizeof arg, "%s@%s", commit->target_branch, commit->git_commit);
	record("deploy", commit->repo, arg, commit->pr);
	return fake_async(cb, data, err, errlen);
}

int controller_trigger(struct controller *c, const char *repo, const char *branch, long pr,
		       controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c);
	record("trigger", repo, branch, pr);
	return fake_async(cb, data, err, errlen);
}

int controller_rebuild_pr(struct controller *c, const char *repo, long pr, const char *user,
			  controller_done_cb cb, void *data, char *err, size_t errlen)
{
	UNUSED(c);
	record("rebuild", repo, user, (int)pr);
	return fake_async(cb, data, err, errlen);
}

#define FAKE_ACTION(fn, word)                                                              \
	int fn(struct controller *c, const char *name, controller_done_cb cb, void *data,   \
	       char *err, size_t errlen)                                                    \
	{                                                                                  \
		UNUSED(c);                                                                 \
		record(word, name, NULL, 0);                                               \
		return fake_async(cb, data, err, errlen);                                  \
	}
FAKE_ACTION(controller_start_build, "start")
FAKE_ACTION(controller_stop_build, "stop")
FAKE_ACTION(controller_reset_build, "reset")
FAKE_ACTION(controller_undeploy_build, "undeploy")
FAKE_ACTION(controller_force_undeploy_build, "force-undeploy")

size_t controller_undeploy_matching(struct controller *c, const struct index_filter *f)
{
	UNUSED(c);
	char arg[128];
	snprintf(arg, sizeof arg, "tb=%s br=%s", f->target_branch ? f->target_branch : "-",
		 f->branch ? f->branch : "-");
	record("undeploy-matching", f->repo, arg, f->pr);
	return fake.matching;
}

struct controller_log {
	uv_timer_t timer;
	controller_log_cb cb;
	void *data;
	bool cancelled;
};

static void on_log_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_log_timer(uv_timer_t *t)
{
	struct controller_log *l = t->data;
	if (!l->cancelled) {
		if (fake.log_error)
			l->cb(fake.log_error, "no pod", NULL, 0, l->data);
		else
			l->cb(0, NULL, "line 1\nline 2\n", 14, l->data);
	}
	uv_close((uv_handle_t *)&l->timer, on_log_closed);
}

int controller_log(struct controller *c, const char *name, const char *job_kind,
		   controller_log_cb cb, void *data, struct controller_log **out)
{
	UNUSED(c);
	record(!job_kind ? "log" : strcmp(job_kind, "initialize") == 0 ? "init-log" : job_kind, name,
	       NULL, 0);
	if (fake.log_rc)
		return fake.log_rc;
	struct controller_log *l = xcalloc(1, sizeof *l);
	l->cb = cb;
	l->data = data;
	uv_timer_init(&loop, &l->timer);
	l->timer.data = l;
	uv_timer_start(&l->timer, on_log_timer, fake.hold ? 60000 : 1, 0);
	*out = l;
	return 0;
}

void controller_cancel_log(struct controller_log *l)
{
	fake.log_cancels++;
	l->cancelled = true;
	uv_timer_stop(&l->timer);
	uv_close((uv_handle_t *)&l->timer, on_log_closed);
}

/* ---- the server under test ---- */

#define SECRET "s3cret"

static struct app app;
static struct api *api;
static int port;

static struct build *mk(const char *name, const char *repo, const char *branch, int pr,
			int64_t created, bool is_started)
{
	static const char *sha = "0d35a10f161b410f2baa3d416a338d191b6dabc0";
	struct build_commit c = {repo, branch, pr, sha};
	char dname[80];
	snprintf(dname, sizeof dname, "%s-odoo", name);
	struct build *b = build_new(name, dname, &c, "1", "uid");
	b->init_status = BUILD_INIT_SUCCEEDED;
	b->created = created;
	b->created_ms = created * 1000;
	b->has_finalizer = true;
	if (is_started)
		b->desired_replicas = b->replicas = b->available_replicas = 1;
	b->status = build_derive_status(b);
	return b;
}

static void setup(bool with_secret)
{
	uv_loop_init(&loop);
	fake_reset();
	char err[256];
	app.loop = &loop;
	app.cfg = config_default("ns", "runboat.test", err, sizeof err);
	CHECK(app.cfg != NULL);
	free(app.cfg->server.base_url);
	app.cfg->server.base_url = xstrdup("http://runboat.test");
	app.cfg->admin.password = xstrdup("pw");
	if (with_secret)
		app.cfg->github.webhook_secret = xstrdup(SECRET);
	app.links.base_url = app.cfg->server.base_url;
	app.links.build_domain = app.cfg->build.domain;
	app.links.github_url = "https://github.com";
	app.base_origin = ws_origin_of(app.cfg->server.base_url);
	app.index = index_new();
	app.hub = hub_new(&loop, app.index, &app.links, NULL);
	app.controller = (struct controller *)&fake; /* never dereferenced */
	app.router = router_new();
	api = api_register(app.router, &app);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_body_bytes = 1 << 20;
	lim.shutdown_timeout_ms = 300;
	app.http = http_server_new(&loop, &lim, app.router);
	CHECK_INT(http_server_listen(app.http, "127.0.0.1:0"), 0);
	port = http_server_port(app.http);
	index_upsert(app.index, mk("b1", "oca/a", "16.0", 0, 100, true));
	index_upsert(app.index, mk("b2", "oca/a", "17.0", 0, 200, false));
	index_upsert(app.index, mk("b3", "oca/b", "16.0", 42, 300, false));
}

static bool shut;

static void on_shut(void *data)
{
	UNUSED(data);
	shut = true;
}

static void teardown(void)
{
	if (!shut) /* unless the test shut the server down itself */
		http_server_shutdown(app.http, on_shut, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(shut);
	shut = false;
	hub_free(app.hub);
	uv_run(&loop, UV_RUN_DEFAULT);
	http_server_free(app.http);
	api_free(api);
	router_free(app.router);
	index_free(app.index);
	free(app.base_origin);
	config_free(app.cfg);
	memset(&app, 0, sizeof app);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* ---- a libuv client on the same loop ---- */

struct client {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	struct buf out;
	struct buf got;
	bool closed;
	bool close_after_write;
	const char *until; /* close once this is in what was received */
};

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;
	c->closed = true;
}

static void client_close(struct client *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
	UNUSED(h);
	b->base = xmalloc(n);
	b->len = n;
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct client *c = s->data;
	if (n > 0)
		buf_append(&c->got, b->base, (size_t)n);
	free(b->base);
	if (n < 0 || (c->until && c->got.data && strstr(c->got.data, c->until)))
		client_close(c);
}

/* A client that goes away for good: a reset, not a FIN (after a FIN the
 * server still answers a request: the client may have only half-closed). */
static void client_reset(struct client *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_tcp_close_reset(&c->tcp, on_client_closed);
}

static void on_client_written(uv_write_t *w, int status)
{
	struct client *c = w->data;
	UNUSED(status); /* the server may refuse and close before reading it all */
	if (c->close_after_write)
		client_close(c);
}

static void on_client_connected(uv_connect_t *req, int status)
{
	struct client *c = req->data;
	CHECK_INT(status, 0);
	uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
	c->wr.data = c;
	uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_client_written);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_client_read);
}

static void client_start(struct client *c, const void *data, size_t len)
{
	memset(c, 0, sizeof *c);
	buf_append(&c->out, data, len);
	uv_tcp_init(&loop, &c->tcp);
	c->tcp.data = c;
	c->conn.data = c;
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", port, &addr);
	uv_tcp_connect(&c->conn, &c->tcp, (const struct sockaddr *)&addr, on_client_connected);
}

static bool timed_out;

static void on_deadline(uv_timer_t *t)
{
	UNUSED(t);
	timed_out = true;
}

/* Runs the loop until *flag (at most 10 s: then the check fails). */
static void run_until(const bool *flag)
{
	uv_timer_t deadline;
	timed_out = false;
	uv_timer_init(&loop, &deadline);
	uv_timer_start(&deadline, on_deadline, 10000, 0);
	while (!*flag && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK(!timed_out);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

/* Runs the loop until expr holds (at most 10 s: then the check fails). */
#define RUN_UNTIL(expr)                                                                    \
	do {                                                                               \
		uint64_t _end = uv_now(&loop) + 10000;                                     \
		while (!(expr) && uv_now(&loop) < _end) {                                  \
			uv_run(&loop, UV_RUN_NOWAIT);                                      \
			uv_sleep(1);                                                       \
			uv_update_time(&loop);                                             \
		}                                                                          \
		CHECK(expr);                                                               \
	} while (0)

/* A response: status, the headers' text and the body. */
struct resp {
	int status;
	char *head; /* owned, the status line and headers */
	const char *body;
	json_t *json; /* the body parsed, when it is JSON */
	char *raw;
};

static void resp_free(struct resp *r)
{
	json_decref(r->json);
	free(r->head);
	free(r->raw);
	memset(r, 0, sizeof *r);
}

static struct resp parse_resp(struct buf *got)
{
	struct resp r = {0};
	r.raw = got->data ? got->data : xstrdup("");
	got->data = NULL;
	const char *end = strstr(r.raw, "\r\n\r\n");
	if (strncmp(r.raw, "HTTP/1.1 ", 9) != 0 || !end) {
		fprintf(stderr, "not an HTTP response: \"%.200s\"\n", r.raw);
		CHECK(!"an HTTP response");
		r.body = "";
		r.head = xstrdup("");
		return r;
	}
	r.status = atoi(r.raw + 9);
	r.head = xstrndup(r.raw, (size_t)(end - r.raw));
	r.body = end + 4;
	if (strstr(r.head, "Content-Type: application/json"))
		r.json = json_loads(r.body, 0, NULL);
	return r;
}

/* Sends one request (Connection: close is added) and reads the answer. */
static struct resp request(const char *method, const char *target, const char *headers,
			   const void *body, size_t len)
{
	struct buf b = {0};
	buf_printf(&b, "%s %s HTTP/1.1\r\nHost: runboat.test\r\nConnection: close\r\n%s", method,
		   target, headers ? headers : "");
	if (body || strcmp(method, "POST") == 0)
		buf_printf(&b, "Content-Length: %zu\r\n", len);
	buf_append_str(&b, "\r\n");
	if (body)
		buf_append(&b, body, len);
	struct client c;
	client_start(&c, b.data, b.len);
	buf_free(&b);
	run_until(&c.closed);
	buf_free(&c.out);
	return parse_resp(&c.got);
}

static struct resp get(const char *target)
{
	return request("GET", target, NULL, NULL, 0);
}

static const char *detail(const struct resp *r)
{
	const char *d = json_string_value(json_object_get(r->json, "detail"));
	return d ? d : "(no detail)";
}

/* The names of the builds of a listing, joined by ",". */
static const char *names(const struct resp *r)
{
	static char out[256];
	out[0] = '\0';
	size_t i;
	json_t *b;
	json_array_foreach(r->json, i, b)
		snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? "," : "",
			 json_string_value(json_object_get(b, "name")));
	return out;
}

/* ---- tests ---- */

static void test_health_and_readiness(void)
{
	setup(false);
	struct resp r = get("/healthz");
	CHECK_INT(r.status, 200);
	CHECK_STR(json_string_value(json_object_get(r.json, "status")), "ok");
	resp_free(&r);
	fake.ready = false;
	r = get("/readyz");
	CHECK_INT(r.status, 503);
	CHECK(strstr(detail(&r), "not synced") != NULL);
	resp_free(&r);
	/* every read waits for the sync */
	const char *reads[] = {"/api/v1/status", "/api/v1/repos", "/api/v1/builds",
			       "/api/v1/builds/b1", "/api/v1/builds/b1/log",
			       "/api/v1/build-events"};
	for (size_t i = 0; i < ARRAY_SIZE(reads); i++) {
		r = get(reads[i]);
		CHECK_INT(r.status, 503);
		resp_free(&r);
	}
	CHECK_INT(fake.n_calls, 0);
	fake.ready = true;
	r = get("/readyz");
	CHECK_INT(r.status, 200);
	resp_free(&r);
	teardown();
}

static void test_reads(void)
{
	setup(false);
	struct resp r = get("/api/v1/status");
	CHECK_INT(r.status, 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "deployed")), 3);
	CHECK_INT(json_integer_value(json_object_get(r.json, "started")), 1);
	CHECK_INT(json_integer_value(json_object_get(r.json, "stopped")), 2);
	CHECK_INT(json_integer_value(json_object_get(r.json, "max_started")),
		  app.cfg->limits.max_started);
	CHECK(strstr(r.head, "Cache-Control: no-store") != NULL);
	resp_free(&r);

	r = get("/api/v1/repos");
	CHECK_INT(json_array_size(r.json), 2);
	CHECK_STR(json_string_value(json_object_get(json_array_get(r.json, 0), "link")),
		  "https://github.com/oca/a");
	resp_free(&r);

	/* listings: newest first, with each filter */
	struct {
		const char *target;
		int status;
		const char *names;
	} cases[] = {
		{"/api/v1/builds", 200, "b3,b2,b1"},
		{"/api/v1/builds?repo=OCA/A", 200, "b2,b1"},
		{"/api/v1/builds?target_branch=16.0", 200, "b3,b1"},
		{"/api/v1/builds?branch=16.0", 200, "b1"},
		{"/api/v1/builds?pr=42", 200, "b3"},
		{"/api/v1/builds?status=started", 200, "b1"},
		{"/api/v1/builds?status=stopped&repo=oca/a", 200, "b2"},
		{"/api/v1/builds?repo=nobody/x", 200, ""},
		{"/api/v1/builds?status=sleeping", 400, NULL},
		{"/api/v1/builds?pr=abc", 400, NULL},
		{"/api/v1/builds?pr=0", 400, NULL},
		{"/api/v1/builds?repo=%zz", 400, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		r = get(cases[i].target);
		CHECK_INT(r.status, cases[i].status);
		if (cases[i].names)
			CHECK_STR(names(&r), cases[i].names);
		else
			CHECK(r.json && json_is_string(json_object_get(r.json, "detail")));
		resp_free(&r);
	}
	char target[700] = "/api/v1/builds?repo=";
	memset(target + strlen(target), 'a', 600);
	r = get(target);
	CHECK_INT(r.status, 400);
	CHECK(strstr(detail(&r), "too long") != NULL);
	resp_free(&r);

	r = get("/api/v1/builds/b2");
	CHECK_INT(r.status, 200);
	CHECK_STR(json_string_value(json_object_get(r.json, "name")), "b2");
	CHECK_STR(json_string_value(json_object_get(r.json, "status")), "stopped");
	resp_free(&r);
	r = get("/api/v1/builds/nope");
	CHECK_INT(r.status, 404);
	CHECK(strstr(detail(&r), "nope") != NULL);
	resp_free(&r);
	CHECK_INT(fake.n_calls, 0);
	teardown();
}

static void test_actions(void)
{
	setup(false);
	/* asynchronous success: answered once the controller says so */
	snprintf(fake.done_msg, sizeof fake.done_msg, "b2 started");
	struct resp r = request("POST", "/api/v1/builds/b2/start", NULL, NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(detail(&r), "b2 started");
	CHECK_INT(fake.n_calls, 1);
	CHECK_STR(fake.calls[0].what, "start");
	CHECK_STR(fake.calls[0].name, "b2");
	resp_free(&r);

	/* each outcome and its status */
	struct {
		const char *path;
		int rc, done_error, status;
		const char *what;
	} cases[] = {
		{"/api/v1/builds/b1/stop", 0, -EIO, 502, "stop"},
		{"/api/v1/builds/b1/stop", 0, -EBUSY, 409, "stop"},
		{"/api/v1/builds/b1/stop", 0, -ENOENT, 404, "stop"},
		{"/api/v1/builds/b1/reset", -EBUSY, 0, 409, "reset"},
		{"/api/v1/builds/zz/reset", -ENOENT, 0, 404, "reset"},
		{"/api/v1/builds/b1/start", -EAGAIN, 0, 503, "start"},
		{"/api/v1/builds/b1/start", 1, 0, 200, "start"}, /* nothing to do */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		fake_reset();
		fake.rc = cases[i].rc;
		fake.done_error = cases[i].done_error;
		r = request("POST", cases[i].path, NULL, NULL, 0);
		CHECK_INT(r.status, cases[i].status);
		CHECK_STR(fake.calls[0].what, cases[i].what);
		CHECK_STR(detail(&r), cases[i].rc ? "ok" : "done");
		resp_free(&r);
	}

	/* CSRF: a browser on another origin is refused before the controller */
	fake_reset();
	r = request("POST", "/api/v1/builds/b1/start", "Origin: http://evil.test\r\n", NULL, 0);
	CHECK_INT(r.status, 403);
	resp_free(&r);
	r = request("POST", "/api/v1/builds/b1/stop", "Sec-Fetch-Site: cross-site\r\n", NULL, 0);
	CHECK_INT(r.status, 403);
	resp_free(&r);
	CHECK_INT(fake.n_calls, 0);
	r = request("POST", "/api/v1/builds/b1/stop",
		    "Origin: http://RUNBOAT.test\r\nSec-Fetch-Site: same-origin\r\n", NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_INT(fake.n_calls, 1);
	resp_free(&r);

	/* a client that leaves while the action is on its way: the answer that
	 * comes later touches nothing (ASan watches) */
	fake_reset();
	fake.hold = true;
	struct client c;
	const char *req = "POST /api/v1/builds/b1/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
	client_start(&c, req, strlen(req));
	RUN_UNTIL(fake.n_calls == 1);
	client_reset(&c);
	RUN_UNTIL(c.closed && http_server_connections(app.http) == 0);
	buf_free(&c.out);
	buf_free(&c.got);
	fake_complete(0, "stopped");
	teardown();
}

static void test_admin(void)
{
	setup(false);
	const char *good = "Authorization: Basic YWRtaW46cHc=\r\n"; /* admin:pw */
	struct resp r = request("DELETE", "/api/v1/builds/b1", NULL, NULL, 0);
	CHECK_INT(r.status, 401);
	CHECK(strstr(r.head, "WWW-Authenticate: Basic realm=\"runboat\"") != NULL);
	resp_free(&r);
	const char *bad[] = {
		"Authorization: Basic YWRtaW46cHd4\r\n", /* admin:pwx */
		"Authorization: Basic YWRtaW46\r\n",     /* admin: */
		"Authorization: Basic !!!!\r\n",
		"Authorization: Bearer YWRtaW46cHc=\r\n",
		"Authorization: Basic YWRtaW46cHc\r\n", /* not a multiple of 4 */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		r = request("DELETE", "/api/v1/builds/b1", bad[i], NULL, 0);
		CHECK_INT(r.status, 401);
		resp_free(&r);
	}
	CHECK_INT(fake.n_calls, 0);
	r = request("DELETE", "/api/v1/builds/b1", good, NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(fake.calls[0].what, "undeploy");
	resp_free(&r);
	/* forced: admin only too */
	fake_reset();
	r = request("POST", "/api/v1/builds/b1/force-undeploy", NULL, NULL, 0);
	CHECK_INT(r.status, 401);
	resp_free(&r);
	CHECK_INT(fake.n_calls, 0);
	r = request("POST", "/api/v1/builds/b1/force-undeploy", good, NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(fake.calls[0].what, "force-undeploy");
	CHECK_STR(fake.calls[0].name, "b1");
	resp_free(&r);

	/* undeploy many: a filter is required; the count comes back */
	fake_reset();
	fake.matching = 2;
	r = request("DELETE", "/api/v1/builds", good, NULL, 0);
	CHECK_INT(r.status, 400);
	resp_free(&r);
	r = request("DELETE", "/api/v1/builds?repo=oca/a&branch=feature%2Fx", good, NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_INT(json_integer_value(json_object_get(r.json, "count")), 2);
	CHECK_STR(fake.calls[0].name, "oca/a");
	CHECK_STR(fake.calls[0].arg, "tb=- br=feature/x");
	resp_free(&r);

	/* triggers: validated, repo lowercased, async answer */
	fake_reset();
	r = request("POST", "/api/v1/builds/trigger/branch?repo=OCA/Web&branch=16.0", good, NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(fake.calls[0].what, "trigger");
	CHECK_STR(fake.calls[0].name, "oca/web");
	CHECK_STR(fake.calls[0].arg, "16.0");
	resp_free(&r);
	r = request("POST", "/api/v1/builds/trigger/pr?repo=oca/web&pr=12", good, NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_INT(fake.calls[1].pr, 12);
	resp_free(&r);
	const char *invalid[] = {
		"/api/v1/builds/trigger/branch?repo=oca/web",
		"/api/v1/builds/trigger/branch?repo=oca&branch=16.0",
		"/api/v1/builds/trigger/branch?repo=oca/web&branch=a..b",
		"/api/v1/builds/trigger/pr?repo=oca/web&pr=-1",
		"/api/v1/builds/trigger/pr?repo=oca/web&pr=x",
	};
	for (size_t i = 0; i < ARRAY_SIZE(invalid); i++) {
		r = request("POST", invalid[i], good, NULL, 0);
		CHECK_INT(r.status, 400);
		resp_free(&r);
	}
	CHECK_INT(fake.n_calls, 2);
	r = request("POST", "/api/v1/builds/trigger/pr?repo=oca/web&pr=12", NULL, NULL, 0);
	CHECK_INT(r.status, 401);
	resp_free(&r);
	teardown();
}

static void test_logs(void)
{
	setup(false);
	struct resp r = get("/api/v1/builds/b1/init-log");
	CHECK_INT(r.status, 200);
	CHECK(strstr(r.head, "Content-Type: text/plain") != NULL);
	CHECK_STR(r.body, "line 1\nline 2\n");
	CHECK_STR(fake.calls[0].what, "init-log");
	resp_free(&r);
	r = get("/api/v1/builds/b1/cleanup-log");
	CHECK_INT(r.status, 200);
	CHECK_STR(fake.calls[1].what, "cleanup");
	resp_free(&r);
	fake.log_error = -ENOENT;
	r = get("/api/v1/builds/b1/log");
	CHECK_INT(r.status, 404);
	resp_free(&r);
	fake.log_error = -EIO;
	r = get("/api/v1/builds/b1/log");
	CHECK_INT(r.status, 502);
	resp_free(&r);
	fake.log_rc = -ECANCELED;
	r = get("/api/v1/builds/b1/log");
	CHECK_INT(r.status, 503);
	CHECK(strstr(r.body, "not available") != NULL);
	resp_free(&r);
	fake.log_rc = -EAGAIN; /* CONTROLLER_MAX_LOGS being fetched */
	r = get("/api/v1/builds/b1/log");
	CHECK_INT(r.status, 503);
	CHECK(strstr(r.body, "try again") != NULL);
	resp_free(&r);
	r = get("/api/v1/builds/none/log");
	CHECK_INT(r.status, 404);
	resp_free(&r);
	/* a client that leaves cancels the log request */
	fake_reset();
	fake.hold = true;
	struct client c;
	const char *req = "GET /api/v1/builds/b1/log HTTP/1.1\r\nHost: x\r\n\r\n";
	client_start(&c, req, strlen(req));
	RUN_UNTIL(fake.n_calls == 1);
	client_reset(&c);
	RUN_UNTIL(fake.log_cancels == 1);
	buf_free(&c.out);
	buf_free(&c.got);
	teardown();
}

/* ---- the webhook ---- */

static char *signature(const void *body, size_t len)
{
	unsigned char mac[32];
	unsigned n = 0;
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), body, len, mac, &n);
	char *s = xmalloc(8 + 64 + 1);
	memcpy(s, "sha256=", 7);
	for (int i = 0; i < 32; i++)
		snprintf(s + 7 + 2 * i, 3, "%02x", mac[i]);
	return s;
}

static struct resp webhook(const char *event, const char *body, size_t len, bool sign,
			   const char *ctype)
{
	struct buf h = {0};
	buf_printf(&h, "X-GitHub-Event: %s\r\nX-GitHub-Delivery: d-1\r\nContent-Type: %s\r\n", event,
		   ctype ? ctype : "application/json");
	if (sign) {
		char *sig = signature(body, len);
		buf_printf(&h, "X-Hub-Signature-256: %s\r\n", sig);
		free(sig);
	}
	struct resp r = request("POST", "/webhooks/github", h.data, body, len);
	buf_free(&h);
	return r;
}

static const char *PUSH = "{\"ref\":\"refs/heads/16.0\",\"after\":"
			  "\"1111111111111111111111111111111111111111\",\"deleted\":false,"
			  "\"repository\":{\"full_name\":\"OCA/Web\"}}";
static const char *DELETED = "{\"ref\":\"refs/heads/old\",\"after\":"
			     "\"0000000000000000000000000000000000000000\",\"deleted\":true,"
			     "\"repository\":{\"full_name\":\"oca/web\"}}";

static void test_webhook_unsigned(void)
{
	setup(false);
	struct resp r = webhook("ping", "{\"zen\":\"hi\"}", 12, false, NULL);
	CHECK_INT(r.status, 200);
	CHECK_STR(detail(&r), "pong");
	resp_free(&r);
	/* a push: deployed, answered once the controller says the Deployment
	 * exists */
	snprintf(fake.done_msg, sizeof fake.done_msg, "deployed as bx");
	r = webhook("push", PUSH, strlen(PUSH), false, NULL);
	CHECK_INT(r.status, 202);
	CHECK_STR(detail(&r), "deployed as bx");
	CHECK_STR(fake.calls[0].what, "deploy");
	CHECK_STR(fake.calls[0].name, "oca/web");
	CHECK_STR(fake.calls[0].arg, "16.0@1111111111111111111111111111111111111111");
	CHECK_INT(fake.calls[0].pr, 0);
	resp_free(&r);
	/* not a configured repo: 200, nothing done; timed out: 503 */
	struct {
		int rc, done_error, status;
	} cases[] = {{-ENOTSUP, 0, 200}, {1, 0, 200}, {0, -ETIMEDOUT, 503}, {0, -EIO, 502},
		     {-EAGAIN, 0, 503}};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		fake_reset();
		fake.rc = cases[i].rc;
		fake.done_error = cases[i].done_error;
		r = webhook("push", PUSH, strlen(PUSH), false, NULL);
		CHECK_INT(r.status, cases[i].status);
		resp_free(&r);
	}
	/* a deleted branch: its builds are undeployed */
	fake_reset();
	fake.matching = 3;
	r = webhook("push", DELETED, strlen(DELETED), false, NULL);
	CHECK_INT(r.status, 202);
	CHECK_INT(json_integer_value(json_object_get(r.json, "count")), 3);
	CHECK_STR(fake.calls[0].what, "undeploy-matching");
	CHECK_STR(fake.calls[0].arg, "tb=- br=old");
	resp_free(&r);
	/* the form encoding */
	fake_reset();
	struct buf form = {0};
	buf_append_str(&form, "other=1&payload=");
	buf_append_url_encoded(&form, PUSH);
	r = webhook("push", form.data, form.len, false, "application/x-www-form-urlencoded");
	CHECK_INT(r.status, 202);
	CHECK_STR(fake.calls[0].name, "oca/web");
	resp_free(&r);
	buf_free(&form);
	r = webhook("push", "payloadx=1", 10, false, "application/x-www-form-urlencoded");
	CHECK_INT(r.status, 400);
	resp_free(&r);
	/* malformed payloads */
	r = webhook("push", "{", 1, false, NULL);
	CHECK_INT(r.status, 400);
	resp_free(&r);
	r = webhook("push", "[{},{},{}]", 10, false, NULL);
	CHECK_INT(r.status, 400);
	resp_free(&r);
	CHECK_INT(fake.n_calls, 1);
	teardown();
}

/* An issue_comment delivery on PR pr of oca/web. */
static char *comment(long pr, const char *assoc, const char *body)
{
	return xasprintf("{\"action\":\"created\",\"issue\":{\"number\":%ld,\"pull_request\":"
			 "{\"url\":\"x\"}},\"comment\":{\"id\":5,\"body\":\"%s\","
			 "\"author_association\":\"%s\",\"user\":{\"login\":\"ann-b\"}},"
			 "\"repository\":{\"full_name\":\"OCA/web\"}}",
			 pr, body, assoc);
}

static void test_webhook_rebuild(void)
{
	setup(false);
	snprintf(fake.done_msg, sizeof fake.done_msg, "rebuilding b1 (reset)");
	char *c = comment(7, "MEMBER", "looks odd\\r\\n/runboat rebuild\\r\\nthanks");
	struct resp r = webhook("issue_comment", c, strlen(c), false, NULL);
	CHECK_INT(r.status, 202);
	CHECK_STR(detail(&r), "rebuilding b1 (reset)");
	CHECK_INT(fake.n_calls, 1);
	CHECK_STR(fake.calls[0].what, "rebuild");
	CHECK_STR(fake.calls[0].name, "oca/web");
	CHECK_STR(fake.calls[0].arg, "ann-b");
	CHECK_INT(fake.calls[0].pr, 7);
	resp_free(&r);
	/* the same PR again within a minute: ignored */
	r = webhook("issue_comment", c, strlen(c), false, NULL);
	CHECK_INT(r.status, 200);
	CHECK(strstr(detail(&r), "ignored") != NULL);
	CHECK_INT(fake.n_calls, 1);
	resp_free(&r);
	free(c);
	/* someone who may not, and a comment without the command */
	c = comment(8, "CONTRIBUTOR", "/runboat rebuild");
	r = webhook("issue_comment", c, strlen(c), false, NULL);
	CHECK_INT(r.status, 200);
	CHECK_INT(fake.n_calls, 1);
	resp_free(&r);
	free(c);
	c = comment(8, "OWNER", "please /runboat rebuild");
	r = webhook("issue_comment", c, strlen(c), false, NULL);
	CHECK_INT(r.status, 200);
	CHECK_INT(fake.n_calls, 1);
	resp_free(&r);
	free(c);
	/* refused at once (no GitHub client): 503, and not counted */
	fake_reset();
	fake.rc = -EAGAIN;
	c = comment(9, "COLLABORATOR", "/runboat rebuild");
	r = webhook("issue_comment", c, strlen(c), false, NULL);
	CHECK_INT(r.status, 503);
	resp_free(&r);
	fake.rc = 0;
	r = webhook("issue_comment", c, strlen(c), false, NULL);
	CHECK_INT(r.status, 202);
	CHECK_INT(fake.n_calls, 2);
	resp_free(&r);
	free(c);
	teardown();
}

static void test_webhook_signed(void)
{
	setup(true);
	/* no signature: refused at the headers (the announced body is never
	 * sent: the answer comes anyway) */
	struct client c;
	const char *req = "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
			  "Content-Length: 1000000\r\n\r\n";
	client_start(&c, req, strlen(req));
	run_until(&c.closed);
	struct resp r = parse_resp(&c.got);
	buf_free(&c.out);
	CHECK_INT(r.status, 401);
	CHECK(strstr(detail(&r), "X-Hub-Signature-256") != NULL);
	resp_free(&r);
	/* a bad signature, a body changed after signing */
	r = request("POST", "/webhooks/github",
		    "X-GitHub-Event: ping\r\nX-Hub-Signature-256: sha256=00\r\n", "{}", 2);
	CHECK_INT(r.status, 401);
	resp_free(&r);
	char *sig = signature(PUSH, strlen(PUSH));
	char *h = xasprintf("X-GitHub-Event: push\r\nX-Hub-Signature-256: %s\r\n", sig);
	r = request("POST", "/webhooks/github", h, "{} ", 3);
	CHECK_INT(r.status, 401);
	resp_free(&r);
	CHECK_INT(fake.n_calls, 0);
	/* signed: acted on */
	r = request("POST", "/webhooks/github", h, PUSH, strlen(PUSH));
	CHECK_INT(r.status, 202);
	CHECK_INT(fake.n_calls, 1);
	resp_free(&r);
	free(h);
	free(sig);
	teardown();
}

/* A push padded to len bytes with a field runboat does not read. */
static char *big_push(size_t len)
{
	struct buf b = {0};
	buf_append(&b, PUSH, strlen(PUSH) - 1);
	buf_append_str(&b, ",\"pad\":\"");
	while (b.len < len - 2)
		buf_append_str(&b, "x");
	buf_append_str(&b, "\"}");
	return buf_steal(&b);
}

static uv_sem_t blocker_sem;
static bool blocker_done;

static void on_block(uv_work_t *w)
{
	UNUSED(w);
	uv_sem_wait(&blocker_sem);
}

static void on_blocker_done(uv_work_t *w, int status)
{
	UNUSED(w);
	CHECK_INT(status, 0);
	blocker_done = true;
}

static void test_webhook_big_bodies(void)
{
	setup(true);
	/* 200 KB: authenticated and parsed in the thread pool, same answers */
	char *body = big_push(200000);
	size_t len = strlen(body);
	struct resp r = webhook("push", body, len, true, NULL);
	CHECK_INT(r.status, 202);
	CHECK_INT(fake.n_calls, 1);
	CHECK_STR(fake.calls[0].name, "oca/web");
	resp_free(&r);
	body[len - 3] = 'y'; /* no longer what was signed */
	char *sig = signature(body, len);
	body[len - 3] = 'x';
	char *h = xasprintf("X-GitHub-Event: push\r\nX-Hub-Signature-256: %s\r\n", sig);
	r = request("POST", "/webhooks/github", h, body, len);
	CHECK_INT(r.status, 401);
	resp_free(&r);
	free(h);
	free(sig);

	/* several at once: each answered, in turn */
	struct client cs[4];
	struct buf req = {0};
	sig = signature(body, len);
	buf_printf(&req, "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			 "X-GitHub-Event: push\r\nX-Hub-Signature-256: %s\r\n"
			 "Content-Length: %zu\r\n\r\n", sig, len);
	buf_append(&req, body, len);
	free(sig);
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++)
		client_start(&cs[i], req.data, req.len);
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++) {
		run_until(&cs[i].closed);
		r = parse_resp(&cs[i].got);
		CHECK_INT(r.status, 202);
		resp_free(&r);
		buf_free(&cs[i].out);
	}
	CHECK_INT(fake.n_calls, 1 + (int)ARRAY_SIZE(cs));

	/* clients that send and half-close: still answered (then closed) */
	fake_reset();
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++) {
		client_start(&cs[i], req.data, req.len);
		cs[i].close_after_write = true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++) {
		run_until(&cs[i].closed);
		buf_free(&cs[i].out);
		buf_free(&cs[i].got);
	}
	RUN_UNTIL(fake.n_calls == (int)ARRAY_SIZE(cs));

	/* requests dropped while their bodies wait, one in libuv's queue and
	 * the others in the webhook's: the pool's only thread is held by a
	 * blocker, so none has started, and the server shuts down (its
	 * deadline closes the connections, which aborts the requests). Nothing
	 * is asked of the controller for them, nothing leaks. */
	fake_reset();
	uv_sem_init(&blocker_sem, 0);
	uv_work_t blocker;
	CHECK_INT(uv_queue_work(&loop, &blocker, on_block, on_blocker_done), 0);
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++)
		client_start(&cs[i], req.data, req.len);
	RUN_UNTIL(api_webhooks_pending(api) == ARRAY_SIZE(cs));
	shut = false;
	http_server_shutdown(app.http, on_shut, NULL);
	RUN_UNTIL(shut);
	for (size_t i = 0; i < ARRAY_SIZE(cs); i++) {
		RUN_UNTIL(cs[i].closed);
		CHECK(cs[i].got.len == 0); /* closed unanswered */
		buf_free(&cs[i].out);
		buf_free(&cs[i].got);
	}
	uv_sem_post(&blocker_sem);
	RUN_UNTIL(blocker_done);
	uv_sem_destroy(&blocker_sem);
	buf_free(&req);
	free(body);
	CHECK_INT(api_webhooks_pending(api), 0);
	teardown(); /* runs the loop until the pool's work is over */
	CHECK_INT(fake.n_calls, 0);
}

/* Leader election: a standby serves reads and the UI, says it is not
 * ready (so the Service routes to the leader) and refuses every action and
 * every webhook that would act, without asking the controller. */
static void test_standby(void)
{
	setup(false);
	fake.standby = "standby: leader is rb-0_abc";
	struct resp r = get("/readyz");
	CHECK_INT(r.status, 503);
	CHECK_STR(detail(&r), "standby: leader is rb-0_abc");
	resp_free(&r);
	r = get("/healthz");
	CHECK_INT(r.status, 200);
	resp_free(&r);
	r = get("/api/v1/builds");
	CHECK_INT(r.status, 200);
	CHECK_STR(names(&r), "b3,b2,b1");
	resp_free(&r);
	r = get("/api/v1/status");
	CHECK_INT(r.status, 200);
	resp_free(&r);
	const char *admin = "Authorization: Basic YWRtaW46cHc=\r\n"; /* admin:pw */
	struct {
		const char *method, *target, *headers;
	} acts[] = {
		{"POST", "/api/v1/builds/b1/start", NULL},
		{"POST", "/api/v1/builds/b1/stop", NULL},
		{"POST", "/api/v1/builds/b1/reset", NULL},
		{"DELETE", "/api/v1/builds/b1", admin},
		{"DELETE", "/api/v1/builds?repo=oca/a", admin},
		{"POST", "/api/v1/builds/trigger/branch?repo=oca/a&branch=16.0", admin},
		{"POST", "/api/v1/builds/trigger/pr?repo=oca/a&pr=3", admin},
	};
	for (size_t i = 0; i < ARRAY_SIZE(acts); i++) {
		r = request(acts[i].method, acts[i].target, acts[i].headers, NULL, 0);
		CHECK_INT(r.status, 503);
		CHECK(strstr(detail(&r), "standby: leader is rb-0_abc") != NULL);
		CHECK(strstr(detail(&r), "leader") != NULL);
		CHECK(strstr(r.head, "Retry-After: 2") != NULL);
		resp_free(&r);
	}
	/* webhooks: a ping is answered, a push or a deleted branch is not
	 * accepted (GitHub delivers it again, to the leader) */
	r = webhook("ping", "{\"zen\":\"hi\"}", 12, false, NULL);
	CHECK_INT(r.status, 200);
	resp_free(&r);
	r = webhook("push", PUSH, strlen(PUSH), false, NULL);
	CHECK_INT(r.status, 503);
	CHECK(strstr(detail(&r), "standby: leader is rb-0_abc") != NULL);
	resp_free(&r);
	r = webhook("push", DELETED, strlen(DELETED), false, NULL);
	CHECK_INT(r.status, 503);
	resp_free(&r);
	CHECK_INT(fake.n_calls, 0);
	/* leading again: ready, and actions reach the controller */
	fake.standby = NULL;
	r = get("/readyz");
	CHECK_INT(r.status, 200);
	resp_free(&r);
	r = request("POST", "/api/v1/builds/b1/start", NULL, NULL, 0);
	CHECK_INT(r.status, 200);
	CHECK_INT(fake.n_calls, 1);
	resp_free(&r);
	teardown();
}

static void test_sse(void)
{
	setup(false);
	struct client c;
	const char *req = "GET /api/v1/build-events?repo=oca/a HTTP/1.1\r\nHost: x\r\n\r\n";
	client_start(&c, req, strlen(req));
	/* the snapshot: oca/a's builds, oldest first */
	c.until = "\"name\":\"b2\"";
	run_until(&c.closed);
	CHECK(strstr(c.got.data, "Content-Type: text/event-stream") != NULL);
	const char *b1 = strstr(c.got.data, "data: {\"event\":\"upd\",\"build\":{\"name\":\"b1\"");
	const char *b2 = strstr(c.got.data, "data: {\"event\":\"upd\",\"build\":{\"name\":\"b2\"");
	CHECK(b1 && b2 && b1 < b2);
	CHECK(strstr(c.got.data, "\"b3\"") == NULL);
	buf_free(&c.out);
	buf_free(&c.got);

	/* HTTP/1.0: the same events, close-delimited, without chunk framing
	 * around the shared bytes */
	const char *req10 = "GET /api/v1/build-events?repo=oca/a HTTP/1.0\r\nHost: x\r\n\r\n";
	client_start(&c, req10, strlen(req10));
	c.until = "\"name\":\"b2\"";
	run_until(&c.closed);
	const char *body10 = c.got.data ? strstr(c.got.data, "\r\n\r\n") : NULL;
	CHECK(body10 != NULL);
	if (body10) {
		CHECK(strncmp(body10 + 4, "data: {\"event\":\"upd\",\"build\":{\"name\":\"b1\"", 41) == 0);
		CHECK(strstr(body10, "}\n\ndata: {\"event\":\"upd\",\"build\":{\"name\":\"b2\"") != NULL);
	}
	CHECK(strstr(c.got.data ? c.got.data : "", "Transfer-Encoding") == NULL);
	buf_free(&c.out);
	buf_free(&c.got);

	/* live: a deletion reaches a new subscriber */
	client_start(&c, req, strlen(req));
	while (!c.got.data || !strstr(c.got.data, "\"name\":\"b2\""))
		uv_run(&loop, UV_RUN_ONCE);
	c.until = "\"event\":\"del\"";
	index_remove(app.index, "b1");
	run_until(&c.closed);
	const char *del = strstr(c.got.data, "data: {\"event\":\"del\",\"build\":{\"name\":\"b1\"");
	CHECK(del != NULL);
	if (!del)
		fprintf(stderr, "got: %s\n", c.got.data);
	buf_free(&c.out);
	buf_free(&c.got);
	/* bad filters are refused before the stream begins */
	struct resp r = get("/api/v1/build-events?pr=x");
	CHECK_INT(r.status, 400);
	resp_free(&r);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(hub_subscribers(app.hub), 0);
	teardown();
}

/* setup(false) with a hub of limits hl, and n builds s000, s001 ... of
 * oca/z, created in that order. */
static void setup_many(const struct hub_limits *hl, int n)
{
	setup(false);
	hub_free(app.hub);
	app.hub = hub_new(&loop, app.index, &app.links, hl);
	for (int i = 0; i < n; i++) {
		char name[16];
		snprintf(name, sizeof name, "s%03d", i);
		index_upsert(app.index, mk(name, "oca/z", "16.0", 0, 1000 + i, false));
	}
}

/* A snapshot far beyond the hub's high-water mark is sent as fast as the
 * client reads: the backlog drains when a write completes, not on the
 * hub's timer (set here to an hour), each build once and in order. */
static void test_sse_backlog(void)
{
	enum { N = 300 };
	setup_many(&(struct hub_limits){.high_water = 2048, .flush_ms = 3600000}, N);
	struct client c;
	const char *req = "GET /api/v1/build-events?repo=oca/z HTTP/1.1\r\nHost: x\r\n\r\n";
	client_start(&c, req, strlen(req));
	c.until = "\"name\":\"s299\"";
	run_until(&c.closed);
	const char *p = c.got.data ? c.got.data : "";
	int seen = 0;
	for (int i = 0; i < N; i++) {
		char ev[64];
		snprintf(ev, sizeof ev, "data: {\"event\":\"upd\",\"build\":{\"name\":\"s%03d\"", i);
		const char *at = strstr(p, ev);
		if (!at)
			break;
		p = at + 1;
		seen++;
	}
	CHECK_INT(seen, N);
	buf_free(&c.out);
	buf_free(&c.got);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(hub_subscribers(app.hub), 0);
	teardown();
}

/* The payloads of the unmasked server frames after a 101's headers in got,
 * one string each, joined by "\n" (owned by the caller). */
static char *ws_payloads(const struct buf *got)
{
	struct buf out = {0};
	buf_append(&out, "", 0);
	const char *p = got->data ? strstr(got->data, "\r\n\r\n") : NULL;
	if (!p)
		return xstrdup("");
	const uint8_t *f = (const uint8_t *)p + 4, *end = (const uint8_t *)got->data + got->len;
	while (end - f >= 2) {
		size_t len = f[1] & 0x7f, hl = 2;
		CHECK_INT(f[1] & 0x80, 0); /* never masked */
		if (len == 126) {
			if (end - f < 4)
				break;
			len = (size_t)f[2] << 8 | f[3], hl = 4;
		} else if (len == 127) {
			if (end - f < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | f[2 + i];
			hl = 10;
		}
		if ((size_t)(end - f) < hl + len)
			break;
		CHECK_INT(f[0], 0x81); /* FIN, text: one message per frame */
		if (out.len)
			buf_append(&out, "\n", 1);
		buf_append(&out, f + hl, len);
		f += hl + len;
	}
	if (!out.data)
		return xstrdup("");
	return out.data;
}

static bool starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

#define WS_HANDSHAKE(target)                                                               \
	"GET " target " HTTP/1.1\r\nHost: runboat.test\r\nUpgrade: websocket\r\n"           \
	"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"                              \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

/* ?batch=1 on both streams: the snapshot as JSON arrays of events, the
 * marker right after it, then single events; the default stream (no
 * parameter, or 0) carries neither; bad values are refused. */
static void test_streams_batched(void)
{
	setup(false);
	struct client c;
	/* WebSocket: oca/a's b1, b2 in one array, then the marker */
	const char *req = WS_HANDSHAKE("/api/v1/ws?repo=oca/a&batch=1");
	client_start(&c, req, strlen(req));
	while (!c.got.data || !strstr(c.got.data, "{\"event\":\"synced\"}"))
		uv_run(&loop, UV_RUN_ONCE);
	CHECK(starts(c.got.data, "HTTP/1.1 101"));
	char *msgs = ws_payloads(&c.got);
	CHECK(starts(msgs, "[{\"event\":\"upd\",\"build\":{\"name\":\"b1\""));
	const char *b2 = strstr(msgs, "},{\"event\":\"upd\",\"build\":{\"name\":\"b2\"");
	const char *nl = strchr(msgs, '\n');
	CHECK(b2 && nl && b2 < nl && nl[-1] == ']');
	CHECK_STR(nl ? nl + 1 : "", "{\"event\":\"synced\"}");
	CHECK(strstr(msgs, "\"b3\"") == NULL);
	free(msgs);
	/* live: one event per message after the marker */
	c.until = "\"event\":\"del\"";
	index_remove(app.index, "b1");
	run_until(&c.closed);
	msgs = ws_payloads(&c.got);
	const char *last = strrchr(msgs, '\n');
	CHECK(last && starts(last + 1, "{\"event\":\"del\",\"build\":{\"name\":\"b1\""));
	free(msgs);
	buf_free(&c.out);
	buf_free(&c.got);
	index_upsert(app.index, mk("b1", "oca/a", "16.0", 0, 100, true));

	/* SSE: the same as data: lines */
	const char *sse = "GET /api/v1/build-events?batch=1&repo=oca/a HTTP/1.1\r\nHost: x\r\n\r\n";
	client_start(&c, sse, strlen(sse));
	c.until = "data: {\"event\":\"synced\"}\n\n";
	run_until(&c.closed);
	const char *arr = strstr(c.got.data, "data: [{\"event\":\"upd\",\"build\":{\"name\":\"b1\"");
	const char *mark = strstr(c.got.data, "data: {\"event\":\"synced\"}");
	CHECK(arr && mark && arr < mark);
	CHECK(arr && strstr(arr, "\"name\":\"b2\"") < mark);
	CHECK(strstr(c.got.data, "\"b3\"") == NULL);
	buf_free(&c.out);
	buf_free(&c.got);

	/* an empty snapshot: the marker alone */
	req = WS_HANDSHAKE("/api/v1/ws?repo=oca/none&batch=1");
	client_start(&c, req, strlen(req));
	c.until = "{\"event\":\"synced\"}";
	run_until(&c.closed);
	msgs = ws_payloads(&c.got);
	CHECK_STR(msgs, "{\"event\":\"synced\"}");
	free(msgs);
	buf_free(&c.out);
	buf_free(&c.got);

	/* the default stream, and batch=0: single events, no marker */
	const char *plain[] = {WS_HANDSHAKE("/api/v1/ws?repo=oca/a"),
			       WS_HANDSHAKE("/api/v1/ws?repo=oca/a&batch=0")};
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		client_start(&c, plain[i], strlen(plain[i]));
		while (!c.got.data || !strstr(c.got.data, "\"name\":\"b2\""))
			uv_run(&loop, UV_RUN_ONCE);
		for (int k = 0; k < 20; k++)
			uv_run(&loop, UV_RUN_NOWAIT);
		msgs = ws_payloads(&c.got);
		CHECK(starts(msgs, "{\"event\":\"upd\",\"build\":{\"name\":\"b1\""));
		CHECK(strstr(msgs, "\n{\"event\":\"upd\",\"build\":{\"name\":\"b2\"") != NULL);
		CHECK(strstr(msgs, "synced") == NULL);
		CHECK(msgs[0] != '[' && strstr(msgs, "\n[") == NULL);
		free(msgs);
		client_close(&c);
		run_until(&c.closed);
		buf_free(&c.out);
		buf_free(&c.got);
	}

	/* bad values: 400 before any stream */
	const char *bad[] = {"/api/v1/build-events?batch=2", "/api/v1/build-events?batch=true",
			     "/api/v1/build-events?batch=01", "/api/v1/build-events?batch=%zz"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct resp r = get(bad[i]);
		CHECK_INT(r.status, 400);
		CHECK(strstr(detail(&r), "batch") != NULL);
		resp_free(&r);
	}
	req = WS_HANDSHAKE("/api/v1/ws?batch=yes");
	client_start(&c, req, strlen(req));
	c.until = "\r\n\r\n";
	run_until(&c.closed);
	CHECK(starts(c.got.data ? c.got.data : "", "HTTP/1.1 400"));
	buf_free(&c.out);
	buf_free(&c.got);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(hub_subscribers(app.hub), 0);
	teardown();
}

/* A batched snapshot of many builds, on a hub with a small array bound:
 * every message is an array within the bound (or one event), each build
 * comes once and in order, and the marker comes after the last. */
static void test_streams_batched_bounded(void)
{
	enum { N = 300 };
	setup_many(&(struct hub_limits){.array_bytes = 4096, .flush_ms = 3600000}, N);
	struct client c;
	const char *req = WS_HANDSHAKE("/api/v1/ws?repo=oca/z&batch=1");
	client_start(&c, req, strlen(req));
	c.until = "{\"event\":\"synced\"}";
	run_until(&c.closed);
	char *msgs = ws_payloads(&c.got);
	int next = 0, arrays = 0, markers = 0;
	for (char *m = strtok(msgs, "\n"); m; m = strtok(NULL, "\n")) {
		if (!strcmp(m, "{\"event\":\"synced\"}")) {
			markers++;
			CHECK_INT(next, N);
			continue;
		}
		json_t *a = json_loads(m, 0, NULL);
		CHECK(json_is_array(a));
		CHECK(strlen(m) <= 4096 || json_array_size(a) == 1);
		arrays++;
		size_t i;
		json_t *ev;
		json_array_foreach(a, i, ev) {
			char want[16];
			snprintf(want, sizeof want, "s%03d", next++);
			CHECK_STR(json_string_value(json_object_get(ev, "event")), "upd");
			CHECK_STR(json_string_value(json_object_get(json_object_get(ev, "build"), "name")),
				  want);
		}
		json_decref(a);
	}
	free(msgs);
	CHECK_INT(next, N);
	CHECK_INT(markers, 1);
	CHECK(arrays > 10 && arrays < N / 2);
	buf_free(&c.out);
	buf_free(&c.got);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(hub_subscribers(app.hub), 0);
	teardown();
}

static void test_ui(void)
{
	setup(false);
	struct resp r = get("/");
	CHECK_INT(r.status, 200);
	CHECK(strstr(r.head, "Content-Type: text/html") != NULL);
	CHECK(strstr(r.head, "Content-Security-Policy: default-src 'self'") != NULL);
	const char *etag = strstr(r.head, "ETag: ");
	CHECK(etag != NULL);
	char tag[80] = "";
	if (etag)
		sscanf(etag + 6, "%79[^\r]", tag);
	resp_free(&r);
	char *inm = xasprintf("If-None-Match: %s\r\n", tag);
	r = request("GET", "/webui/index.html", inm, NULL, 0);
	CHECK_INT(r.status, 304);
	resp_free(&r);
	free(inm);
	r = get("/webui/app.js");
	CHECK_INT(r.status, 200);
	CHECK(strstr(r.head, "Content-Type: text/javascript") != NULL);
	CHECK(strstr(r.head, "X-Content-Type-Options: nosniff") != NULL);
	resp_free(&r);
	/* the module app.js imports: a module script needs a JavaScript type */
	r = get("/webui/logic.mjs");
	CHECK_INT(r.status, 200);
	CHECK(strstr(r.head, "Content-Type: text/javascript") != NULL);
	CHECK(strstr(r.body, "export function groupBuilds") != NULL);
	resp_free(&r);
	r = get("/webui/nothing.js");
	CHECK_INT(r.status, 404);
	resp_free(&r);
	/* deep links are the page; ?live sends a started build's visitor on */
	r = get("/builds?repo=oca/a");
	CHECK_INT(r.status, 200);
	CHECK(strstr(r.head, "text/html") != NULL);
	resp_free(&r);
	r = get("/builds/b1?live");
	CHECK_INT(r.status, 302);
	CHECK(strstr(r.head, "Location: http://") != NULL);
	CHECK(strstr(r.head, ".runboat.test") != NULL);
	resp_free(&r);
	r = get("/builds/b2?live"); /* stopped: the page */
	CHECK_INT(r.status, 200);
	resp_free(&r);
	teardown();
}

/* The body of a response by its Content-Length (it may hold NUL bytes). */
static size_t body_len(const struct resp *r)
{
	const char *cl = strstr(r->head, "Content-Length: ");
	return cl ? strtoull(cl + 16, NULL, 10) : 0;
}

static char *gunzip(const char *data, size_t len, size_t *out_len)
{
	z_stream z = {0};
	CHECK_INT(inflateInit2(&z, 15 + 16), Z_OK);
	struct buf out = {0};
	char chunk[16384];
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	int rc;
	do {
		z.next_out = (Bytef *)chunk;
		z.avail_out = sizeof chunk;
		rc = inflate(&z, Z_NO_FLUSH);
		buf_append(&out, chunk, sizeof chunk - z.avail_out);
	} while (rc == Z_OK);
	CHECK_INT(rc, Z_STREAM_END);
	inflateEnd(&z);
	*out_len = out.len;
	return out.data;
}

/* The listing from the builds' cached encodings is what jansson gives for
 * the array of build_to_json; gzip when Accept-Encoding asks for it; a
 * note set on a build shows at once (the cache is dropped). */
static void test_listing_encoding(void)
{
	setup(false);
	const struct build **list = NULL;
	size_t n = index_list(app.index, &(struct index_filter){0}, INDEX_SORT_DESC, &list);
	json_t *want = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(want, build_to_json(list[i], &app.links));
	free(list);
	char *want_s = json_dumps(want, JSON_COMPACT);
	json_decref(want);
	CHECK(strlen(want_s) >= 1024); /* else nothing is compressed */

	struct resp r = get("/api/v1/builds");
	CHECK_INT(r.status, 200);
	CHECK_STR(r.body, want_s);
	CHECK(strstr(r.head, "Vary: Accept-Encoding") != NULL);
	CHECK(strstr(r.head, "Content-Encoding") == NULL);
	resp_free(&r);

	struct {
		const char *accept;
		bool gzip;
	} cases[] = {
		{"gzip", true},
		{"gzip, deflate, br", true},
		{"deflate ,GZIP ; q=1.0", true},
		{"x-gzip", true},
		{"deflate, *;q=0.5", true},
		{"*;q=0, gzip", true},
		{"gzip;q=0", false},
		{"gzip; q=0.000, *", false},
		{"identity", false},
		{"", false},
		{"br;q=1, gzipx", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char h[160];
		snprintf(h, sizeof h, "Accept-Encoding: %s\r\n", cases[i].accept);
		r = request("GET", "/api/v1/builds", h, NULL, 0);
		CHECK_INT(r.status, 200);
		bool gz = strstr(r.head, "Content-Encoding: gzip") != NULL;
		if (gz != cases[i].gzip)
			fprintf(stderr, "Accept-Encoding: %s\n", cases[i].accept);
		CHECK_INT(gz, cases[i].gzip);
		if (gz) {
			size_t len;
			char *plain = gunzip(r.body, body_len(&r), &len);
			CHECK_INT(len, strlen(want_s));
			CHECK_STR(plain, want_s);
			free(plain);
			CHECK(body_len(&r) < len);
		} else {
			CHECK_STR(r.body, want_s);
		}
		resp_free(&r);
	}
	free(want_s);

	/* a small answer is never compressed and does not vary */
	r = request("GET", "/api/v1/status", "Accept-Encoding: gzip\r\n", NULL, 0);
	CHECK(strstr(r.head, "Content-Encoding") == NULL);
	CHECK(strstr(r.head, "Vary") == NULL);
	resp_free(&r);

	/* the encoding of b1 is cached by now; a note replaces it */
	CHECK_INT(index_set_note(app.index, "b1", "retrying the start"), 1);
	r = get("/api/v1/builds?branch=16.0");
	CHECK_STR(json_string_value(json_object_get(json_array_get(r.json, 0), "reason")),
		  "retrying the start");
	resp_free(&r);
	r = get("/api/v1/builds/b1");
	CHECK_STR(json_string_value(json_object_get(r.json, "reason")), "retrying the start");
	resp_free(&r);
	teardown();
}

int main(void)
{
	/* one pool thread, so that test_webhook_big_bodies can hold it (before
	 * the pool's first use, which reads this) */
	setenv("UV_THREADPOOL_SIZE", "1", 1);
	log_set_level(LOG_WARN);
	RUN(test_health_and_readiness);
	RUN(test_reads);
	RUN(test_listing_encoding);
	RUN(test_actions);
	RUN(test_admin);
	RUN(test_standby);
	RUN(test_logs);
	RUN(test_webhook_unsigned);
	RUN(test_webhook_signed);
	RUN(test_webhook_rebuild);
	RUN(test_webhook_big_bodies);
	RUN(test_sse);
	RUN(test_sse_backlog);
	RUN(test_streams_batched);
	RUN(test_streams_batched_bounded);
	RUN(test_ui);
	return UNIT_DONE();
}
