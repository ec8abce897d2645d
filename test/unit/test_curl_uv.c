/* curl_uv against a tiny HTTP/1.1 server running on the same loop, directly
 * or through a fault-injecting proxy (fault_proxy.h). Each test counts
 * callbacks and ends with uv_loop_close() == 0. */
#include "curl_uv.h"
#include "util.h"
#include "unit.h"
#include "fault_proxy.h"

#include <errno.h>
#include <string.h>
#include <uv.h>

/* ---- a tiny server: answers by path, one request per connection, except
 * /ka and /ka-slow (keep-alive; /ka-slow answers on the next 50 ms tick) ---- */

struct conn {
	uv_tcp_t tcp;
	struct buf in;
	bool responded;
	bool slow_pending;
	struct conn *next;
	struct server *srv;
};

struct server {
	uv_tcp_t tcp;
	uv_timer_t tick;
	int port;
	struct conn *conns;
	int requests;
	int accepted;
	int open, peak_open;
	char last_method[16];
	char last_body[256];
	char last_auth[256];
};

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->srv->open--;
	buf_free(&c->in);
	free(c);
}

static void conn_close(struct conn *c)
{
	struct server *s = c->srv;
	for (struct conn **p = &s->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_written(uv_write_t *w, int status)
{
	UNUSED(status);
	struct conn *c = w->data;
	free(w);
	conn_close(c);
}

static void on_partial_written(uv_write_t *w, int status)
{
	UNUSED(status);
	free(w->data);
	free(w);
}

static void send_str(struct conn *c, const char *s, size_t len, bool close_after)
{
	uv_write_t *w = xcalloc(1, sizeof(*w));
	char *copy = xmalloc(len);
	memcpy(copy, s, len);
	uv_buf_t b = uv_buf_init(copy, (unsigned)len);
	if (close_after) {
		w->data = c;
		/* copy leaks unless freed: attach it to the conn input buffer */
		buf_free(&c->in);
		c->in.data = copy;
		c->in.len = c->in.cap = len;
		uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
	} else {
		w->data = copy;
		uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_partial_written);
	}
}

static const char KA_RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* A keep-alive answer; the connection then waits for the next request. */
static void respond_ka(struct conn *c)
{
	c->responded = false;
	c->slow_pending = false;
	buf_reset(&c->in);
	send_str(c, KA_RESPONSE, strlen(KA_RESPONSE), false);
}

static void on_tick(uv_timer_t *t)
{
	struct server *s = t->data;
	for (struct conn *c = s->conns; c; c = c->next)
		if (c->slow_pending)
			respond_ka(c);
}

static void respond(struct conn *c, const char *path)
{
	struct buf r = {0};
	if (strcmp(path, "/ka") == 0) {
		respond_ka(c);
		return;
	} else if (strcmp(path, "/ka-slow") == 0) {
		c->slow_pending = true;
		return;
	} else if (strcmp(path, "/ok") == 0) {
		buf_append_str(&r, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: a\r\n"
				   "X-Test: b\r\nRetry-After: 7\r\nConnection: close\r\n\r\nhello");
	} else if (strcmp(path, "/big") == 0) {
		buf_append_str(&r, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n");
		for (int i = 0; i < 100000; i++)
			buf_append(&r, "x", 1);
	} else if (strcmp(path, "/stream") == 0) {
		buf_append_str(&r, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nline1\nline2\nline3\n");
	} else if (strcmp(path, "/notfound") == 0) {
		buf_append_str(&r, "HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
				   "{\"kind\":\"Status\"}");
	} else if (strcmp(path, "/echo") == 0) {
		buf_printf(&r, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			   strlen(c->srv->last_body), c->srv->last_body);
	} else if (strcmp(path, "/hang") == 0) {
		buf_free(&r);
		return; /* never answers */
	} else {
		buf_append_str(&r, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	}
	c->responded = true;
	send_str(c, r.data, r.len, true);
	buf_free(&r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	UNUSED(h);
	b->base = xmalloc(suggested);
	b->len = suggested;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = st->data;
	if (n < 0) {
		free(b->base);
		conn_close(c);
		return;
	}
	if (!c->responded)
		buf_append(&c->in, b->base, (size_t)n);
	free(b->base);
	if (c->responded || !c->in.data)
		return;
	char *end = strstr(c->in.data, "\r\n\r\n");
	if (!end)
		return;
	size_t head = (size_t)(end + 4 - c->in.data);
	size_t clen = 0;
	const char *cl = strcasestr(c->in.data, "\r\ncontent-length:");
	if (cl && cl < end)
		clen = strtoul(cl + 17, NULL, 10);
	if (c->in.len < head + clen)
		return;
	struct server *s = c->srv;
	s->requests++;
	sscanf(c->in.data, "%15s", s->last_method);
	size_t bl = clen < sizeof(s->last_body) - 1 ? clen : sizeof(s->last_body) - 1;
	memcpy(s->last_body, c->in.data + head, bl);
	s->last_body[bl] = '\0';
	s->last_auth[0] = '\0';
	const char *auth = strcasestr(c->in.data, "\r\nauthorization: ");
	if (auth && auth < end) {
		auth += 17;
		size_t al = strcspn(auth, "\r");
		if (al >= sizeof(s->last_auth))
			al = sizeof(s->last_auth) - 1;
		memcpy(s->last_auth, auth, al);
		s->last_auth[al] = '\0';
	}
	char path[128] = "";
	sscanf(c->in.data, "%*s %127s", path);
	respond(c, path);
}

static void on_connection(uv_stream_t *st, int status)
{
	struct server *s = st->data;
	if (status < 0)
		return;
	struct conn *c = xcalloc(1, sizeof(*c));
	c->srv = s;
	uv_tcp_init(st->loop, &c->tcp);
	c->tcp.data = c;
	s->accepted++;
	if (++s->open > s->peak_open)
		s->peak_open = s->open;
	if (uv_accept(st, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	c->next = s->conns;
	s->conns = c;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void server_start(uv_loop_t *loop, struct server *s)
{
	memset(s, 0, sizeof(*s));
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", 0, &addr);
	uv_tcp_init(loop, &s->tcp);
	s->tcp.data = s;
	CHECK_INT(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0), 0);
	CHECK_INT(uv_listen((uv_stream_t *)&s->tcp, 64, on_connection), 0);
	uv_timer_init(loop, &s->tick);
	s->tick.data = s;
	uv_timer_start(&s->tick, on_tick, 50, 50);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len);
	s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void server_stop(struct server *s)
{
	while (s->conns)
		conn_close(s->conns);
	uv_close((uv_handle_t *)&s->tcp, NULL);
	uv_close((uv_handle_t *)&s->tick, NULL);
}

/* ---- test state ---- */

struct result {
	int done;
	int error;
	long status;
	char body[256];
	size_t body_len;
	char xtest[32];
	char retry_after[32];
	int data_calls;
	struct buf streamed;
	bool cancel_in_data;
	struct curl_uv *cu;
	bool close_in_done;
	bool request_sent, response_started, conn_failed, fb_timeout, stale;
	long new_connections;
	uint64_t t0, took_ms;
	char message[256];
};

static void on_done(struct curl_uv_request *req, const struct curl_uv_response *res, void *data)
{
	struct result *r = data;
	r->done++;
	r->error = res->error;
	r->status = res->status;
	r->request_sent = res->request_sent;
	r->response_started = res->response_started;
	r->conn_failed = res->conn_failed;
	r->fb_timeout = res->first_byte_timeout;
	r->stale = res->stale_connection;
	r->new_connections = res->new_connections;
	r->took_ms = now_ms() - r->t0;
	snprintf(r->message, sizeof(r->message), "%s", res->error_message);
	r->body_len = res->body_len;
	snprintf(r->body, sizeof(r->body), "%s", res->body);
	const char *h = curl_uv_response_header(req, "x-test");
	snprintf(r->xtest, sizeof(r->xtest), "%s", h ? h : "(none)");
	h = curl_uv_response_header(req, "Retry-After");
	snprintf(r->retry_after, sizeof(r->retry_after), "%s", h ? h : "(none)");
	if (r->close_in_done)
		curl_uv_close(r->cu);
}

static bool on_data(struct curl_uv_request *req, const char *bytes, size_t len, void *data)
{
	struct result *r = data;
	r->data_calls++;
	CHECK_INT(curl_uv_response_status(req), 200);
	buf_append(&r->streamed, bytes, len);
	if (r->cancel_in_data)
		curl_uv_cancel(req);
	return true;
}

static char *url(struct server *s, const char *path)
{
	return xasprintf("http://127.0.0.1:%d%s", s->port, path);
}

static struct curl_uv_request *start(struct curl_uv *cu, struct server *s, const char *path,
				     struct result *r, struct curl_uv_request_opts *extra)
{
	struct curl_uv_request_opts o = {0};
	if (extra)
		o = *extra;
	char *u = url(s, path);
	o.url = u;
	o.on_done = on_done;
	o.data = r;
	r->t0 = now_ms();
	struct curl_uv_request *req = curl_uv_start(cu, &o);
	free(u);
	return req;
}

static void finish_loop(uv_loop_t *loop, struct curl_uv *cu, struct server *s)
{
	curl_uv_close(cu);
	if (s)
		server_stop(s);
	uv_run(loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(loop), 0);
}

static void test_connection_refused(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	/* find a closed port: bind, read the port, close */
	struct server s;
	server_start(&loop, &s);
	int port = s.port;
	server_stop(&s);
	uv_run(&loop, UV_RUN_DEFAULT);

	struct curl_uv *cu = curl_uv_new(&loop);
	struct result r[3] = {0};
	for (int i = 0; i < 3; i++) {
		char *u = xasprintf("http://127.0.0.1:%d/x", port);
		struct curl_uv_request_opts o = {.url = u, .on_done = on_done, .data = &r[i]};
		CHECK(curl_uv_start(cu, &o) != NULL);
		free(u);
	}
	CHECK_INT(curl_uv_active(cu), 3);
	CHECK_INT(r[0].done, 0); /* never from inside curl_uv_start */
	uv_run(&loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(r[i].done, 1);
		CHECK_INT(r[i].error, -ECONNREFUSED);
		CHECK_INT(r[i].status, 0);
	}
	CHECK_INT(curl_uv_active(cu), 0);
	finish_loop(&loop, cu, NULL);
}

static void test_get_post_and_headers(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct result ok = {0}, nf = {0}, echo = {0};
	start(cu, &s, "/ok", &ok, NULL);
	start(cu, &s, "/notfound", &nf, NULL);
	const char *hdrs[] = {"Content-Type: application/json", "Authorization: Bearer abc", NULL};
	struct curl_uv_request_opts po = {.method = "PATCH", .body = "{\"a\":1}", .body_len = 7,
					  .headers = hdrs};
	start(cu, &s, "/echo", &echo, &po);
	while (ok.done + nf.done + echo.done < 3 && uv_run(&loop, UV_RUN_ONCE))
		;
	CHECK_INT(ok.done, 1);
	CHECK_INT(ok.error, 0);
	CHECK_INT(ok.status, 200);
	CHECK_STR(ok.body, "hello");
	CHECK_INT(ok.body_len, 5);
	CHECK_STR(ok.xtest, "b"); /* the last of repeated headers */
	CHECK_STR(ok.retry_after, "7");
	CHECK_INT(nf.error, 0); /* an HTTP error is a complete response */
	CHECK_INT(nf.status, 404);
	CHECK_STR(nf.body, "{\"kind\":\"Status\"}");
	CHECK_STR(nf.xtest, "(none)");
	CHECK_INT(echo.status, 201);
	CHECK_STR(echo.body, "{\"a\":1}");
	CHECK_STR(s.last_method, "PATCH");
	CHECK_STR(s.last_auth, "Bearer abc");
	CHECK_INT(s.requests, 3);
	finish_loop(&loop, cu, &s);
}

static void test_limits_timeout_stream(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct result big = {0}, hang = {0}, st = {0}, st404 = {0};
	struct curl_uv_request_opts bo = {.max_response = 1000};
	start(cu, &s, "/big", &big, &bo);
	struct curl_uv_request_opts ho = {.timeout_ms = 200};
	start(cu, &s, "/hang", &hang, &ho);
	struct curl_uv_request_opts so = {.on_data = on_data};
	start(cu, &s, "/stream", &st, &so);
	start(cu, &s, "/notfound", &st404, &so);
	while (big.done + hang.done + st.done + st404.done < 4 && uv_run(&loop, UV_RUN_ONCE))
		;
	CHECK_INT(big.error, -EMSGSIZE);
	CHECK_INT(hang.error, -ETIMEDOUT);
	CHECK_INT(st.error, 0);
	CHECK_INT(st.status, 200);
	CHECK_INT(st.body_len, 0); /* streamed, not buffered */
	CHECK(st.data_calls >= 1);
	CHECK_STR(st.streamed.data, "line1\nline2\nline3\n");
	/* a non-2xx body is buffered even in streaming mode */
	CHECK_INT(st404.status, 404);
	CHECK_INT(st404.data_calls, 0);
	CHECK_STR(st404.body, "{\"kind\":\"Status\"}");
	buf_free(&st.streamed);
	finish_loop(&loop, cu, &s);
}

static void test_cancel(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct result a = {0}, b = {0}, c = {0};
	/* cancelled before it even started */
	struct curl_uv_request *ra = start(cu, &s, "/ok", &a, NULL);
	curl_uv_cancel(ra);
	CHECK_INT(a.done, 0);
	/* cancelled from inside on_data */
	struct curl_uv_request_opts so = {.on_data = on_data};
	c.cancel_in_data = true;
	start(cu, &s, "/stream", &c, &so);
	/* cancelled while hanging */
	struct curl_uv_request *rb = start(cu, &s, "/hang", &b, NULL);
	while (s.requests < 2 && uv_run(&loop, UV_RUN_ONCE))
		;
	uv_run(&loop, UV_RUN_NOWAIT);
	curl_uv_cancel(rb);
	while (a.done + b.done + c.done < 3 && uv_run(&loop, UV_RUN_ONCE))
		;
	CHECK_INT(a.done, 1);
	CHECK_INT(a.error, -ECANCELED);
	CHECK_INT(b.done, 1);
	CHECK_INT(b.error, -ECANCELED);
	CHECK_INT(c.done, 1);
	CHECK_INT(c.error, -ECANCELED);
	CHECK_INT(c.data_calls, 1);
	buf_free(&c.streamed);
	finish_loop(&loop, cu, &s);
}

static void test_close_with_pending(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct result r[4] = {0};
	for (int i = 0; i < 4; i++)
		start(cu, &s, "/hang", &r[i], NULL);
	while (s.requests < 2 && uv_run(&loop, UV_RUN_ONCE))
		;
	curl_uv_close(cu);
	for (int i = 0; i < 4; i++) {
		CHECK_INT(r[i].done, 1);
		CHECK_INT(r[i].error, -ECANCELED);
	}
	struct result late = {0};
	CHECK(start(cu, &s, "/ok", &late, NULL) == NULL);
	server_stop(&s);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_close_from_done(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct result ok = {0}, hang = {0};
	ok.cu = cu;
	ok.close_in_done = true;
	start(cu, &s, "/hang", &hang, NULL);
	start(cu, &s, "/ok", &ok, NULL);
	while (ok.done == 0 && uv_run(&loop, UV_RUN_ONCE))
		;
	CHECK_INT(ok.done, 1);
	CHECK_INT(ok.status, 200);
	CHECK_INT(hang.done, 1);
	CHECK_INT(hang.error, -ECANCELED);
	server_stop(&s);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* ---- through the fault-injecting proxy ---- */

static void on_sleep(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

static void sleep_loop(uv_loop_t *loop, uint64_t ms)
{
	int fired = 0;
	uv_timer_t t;
	uv_timer_init(loop, &t);
	t.data = &fired;
	uv_timer_start(&t, on_sleep, ms, 0);
	while (!fired && uv_run(loop, UV_RUN_ONCE))
		;
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* A GET to the proxy; runs the loop until it is done. */
static void get_via_opts(uv_loop_t *loop, struct curl_uv *cu, struct fproxy *p, const char *path,
			 struct result *r, struct curl_uv_request_opts o)
{
	memset(r, 0, sizeof(*r));
	char *u = xasprintf("http://127.0.0.1:%d%s", p->port, path);
	o.url = u;
	o.on_done = on_done;
	o.data = r;
	r->t0 = now_ms();
	CHECK(curl_uv_start(cu, &o) != NULL);
	free(u);
	while (!r->done && uv_run(loop, UV_RUN_ONCE))
		;
}

static void get_via(uv_loop_t *loop, struct curl_uv *cu, struct fproxy *p, const char *path,
		    struct result *r, long timeout_ms, long first_byte_ms)
{
	struct curl_uv_request_opts o = {.timeout_ms = timeout_ms,
					 .first_byte_timeout_ms = first_byte_ms};
	get_via_opts(loop, cu, p, path, r, o);
}

/* The quiet-spell failure: a keep-alive connection silently dropped (no
 * FIN, no RST) while idle. The next request on it gets nothing back: with a
 * first-byte deadline it fails fast, as a connection failure, and the
 * connection is closed, so the next request opens a new one. */
static void test_silent_drop_first_byte(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct fproxy p;
	CHECK_INT(fproxy_start(&loop, &p, s.port), 0);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct result r;
	get_via(&loop, cu, &p, "/ka", &r, 5000, 300);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.new_connections, 1);
	CHECK(r.request_sent && r.response_started && !r.conn_failed);
	get_via(&loop, cu, &p, "/ka", &r, 5000, 300);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.new_connections, 0); /* kept alive */
	CHECK_INT(p.accepted, 1);

	CHECK_INT(fproxy_silence_all(&p), 1);
	get_via(&loop, cu, &p, "/ka", &r, 5000, 300);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK_INT(r.fb_timeout, 1);
	CHECK_INT(r.conn_failed, 1);
	CHECK_INT(r.request_sent, 1);
	CHECK_INT(r.response_started, 0);
	CHECK_INT(r.status, 0);
	CHECK(r.took_ms >= 290 && r.took_ms < 2000);
	if (r.took_ms < 290 || r.took_ms >= 2000)
		fprintf(stderr, "  took %llu ms\n", (unsigned long long)r.took_ms);
	CHECK_STR(r.message, "no response within 300 ms of sending the request (first-byte timeout)");
	CHECK(p.swallowed >= 1);

	get_via(&loop, cu, &p, "/ka", &r, 5000, 300);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.new_connections, 1);
	CHECK_INT(p.accepted, 2);
	CHECK_INT(curl_uv_connections_opened(cu), 2);
	fproxy_stop(&p);
	finish_loop(&loop, cu, &s);
}

/* A connection idle longer than max_idle_s is not reused: a silently
 * dropped idle connection is never even tried. */
static void test_idle_age(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct fproxy p;
	CHECK_INT(fproxy_start(&loop, &p, s.port), 0);
	struct curl_uv_options co = {.max_idle_s = 1};
	struct curl_uv *cu = curl_uv_new_opts(&loop, &co);
	struct result r;
	get_via(&loop, cu, &p, "/ka", &r, 3000, 0);
	CHECK_INT(r.error, 0);
	sleep_loop(&loop, 200);
	get_via(&loop, cu, &p, "/ka", &r, 3000, 0);
	CHECK_INT(r.new_connections, 0); /* young enough: reused */
	sleep_loop(&loop, 2100);
	CHECK_INT(fproxy_silence_all(&p), 1);
	get_via(&loop, cu, &p, "/ka", &r, 3000, 0); /* no first-byte bound */
	CHECK_INT(r.error, 0);
	CHECK_INT(r.new_connections, 1);
	CHECK(r.took_ms < 1000);
	CHECK_INT(p.accepted, 2);
	fproxy_stop(&p);
	finish_loop(&loop, cu, &s);
}

/* A kept-alive connection idle for CURL_UV_STALE_IDLE_MS is "stale": it
 * gets the short first-byte bound; avoid_stale never reuses one. */
static void test_stale_and_fresh(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct fproxy p;
	CHECK_INT(fproxy_start(&loop, &p, s.port), 0);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct curl_uv_request_opts o = {.timeout_ms = 5000, .first_byte_timeout_ms = 3000,
					 .stale_first_byte_timeout_ms = 300};
	struct result r;
	get_via_opts(&loop, cu, &p, "/ka", &r, o);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.stale, 0); /* a new connection */
	get_via_opts(&loop, cu, &p, "/ka", &r, o);
	CHECK_INT(r.new_connections, 0);
	CHECK_INT(r.stale, 0); /* reused at once */
	sleep_loop(&loop, CURL_UV_STALE_IDLE_MS + 200);
	get_via_opts(&loop, cu, &p, "/ka", &r, o);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.new_connections, 0);
	CHECK_INT(r.stale, 1); /* reused after a second: alive here */

	sleep_loop(&loop, CURL_UV_STALE_IDLE_MS + 200);
	fproxy_silence_all(&p);
	get_via_opts(&loop, cu, &p, "/ka", &r, o);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK_INT(r.stale, 1);
	CHECK_INT(r.fb_timeout, 1);
	CHECK(r.took_ms >= 290 && r.took_ms < 2000);
	CHECK_STR(r.message, "no response within 300 ms of sending the request (first-byte "
			     "timeout, on a connection idle before)");

	/* avoid_stale: a connection used just now is fine, one idle for a
	 * second is not */
	get_via_opts(&loop, cu, &p, "/ka", &r, o);
	CHECK_INT(r.new_connections, 1);
	o.avoid_stale = true;
	sleep_loop(&loop, 200);
	get_via_opts(&loop, cu, &p, "/ka", &r, o);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.new_connections, 0);
	sleep_loop(&loop, CURL_UV_STALE_IDLE_MS + 200);
	fproxy_silence_all(&p);
	get_via_opts(&loop, cu, &p, "/ka", &r, o);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.new_connections, 1);
	CHECK(r.took_ms < 290);
	fproxy_stop(&p);
	finish_loop(&loop, cu, &s);
}

/* What each fault looks like to the caller. */
static void test_fault_kinds(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct fproxy p;
	CHECK_INT(fproxy_start(&loop, &p, s.port), 0);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct result r;

	/* reset before any answer byte, on a fresh connection */
	p.reset_conns = 1;
	p.reset_after = 0;
	get_via(&loop, cu, &p, "/ka", &r, 3000, 1000);
	CHECK_INT(r.error, -EIO);
	CHECK_INT(r.conn_failed, 1);
	CHECK_INT(r.request_sent, 1);
	CHECK_INT(r.response_started, 0);
	CHECK_INT(p.resets, 1);

	/* reset in the middle of the answer: the status line came */
	p.reset_conns = 1;
	p.reset_after = 20;
	get_via(&loop, cu, &p, "/big", &r, 3000, 1000);
	CHECK(r.error == -EIO);
	CHECK_INT(r.conn_failed, 1);
	CHECK_INT(r.response_started, 1);
	CHECK_INT(p.resets, 2);

	/* a slow first byte: within the bound it is fine, beyond it fails */
	p.delay_conns = 1;
	p.delay_first_ms = 300;
	get_via(&loop, cu, &p, "/ok", &r, 3000, 2000);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.status, 200);
	CHECK(r.took_ms >= 290);
	p.delay_conns = 1;
	p.delay_first_ms = 1500;
	get_via(&loop, cu, &p, "/ok", &r, 3000, 300);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK_INT(r.fb_timeout, 1);
	CHECK(r.took_ms < 1200);

	/* a blackhole: connected, then nothing */
	p.blackhole = true;
	get_via(&loop, cu, &p, "/ok", &r, 3000, 300);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK_INT(r.fb_timeout, 1);
	CHECK_INT(r.conn_failed, 1);
	CHECK_INT(r.request_sent, 1);
	p.blackhole = false;

	/* the overall timeout is not a connection failure */
	get_via(&loop, cu, &p, "/hang", &r, 300, 0);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK_INT(r.fb_timeout, 0);
	CHECK_INT(r.conn_failed, 0);
	CHECK_INT(r.request_sent, 1);
	fproxy_stop(&p);
	uv_run(&loop, UV_RUN_NOWAIT);

	/* nothing listens: not sent */
	struct fproxy gone = p;
	get_via(&loop, cu, &gone, "/ok", &r, 3000, 300);
	CHECK_INT(r.error, -ECONNREFUSED);
	CHECK_INT(r.conn_failed, 1);
	CHECK_INT(r.request_sent, 0);
	finish_loop(&loop, cu, &s);
}

/* HTTP/1.1 pool: no more than max_host_connections, the others wait and
 * reuse them. */
static void test_pool_limit(void)
{
	for (int limited = 0; limited < 2; limited++) {
		uv_loop_t loop;
		uv_loop_init(&loop);
		struct server s;
		server_start(&loop, &s);
		struct curl_uv_options co = {.http1_only = true,
					     .max_host_connections = limited ? 2 : 0};
		struct curl_uv *cu = curl_uv_new_opts(&loop, &co);
		struct result r[8] = {0};
		int done = 0;
		for (int i = 0; i < 8; i++)
			start(cu, &s, "/ka-slow", &r[i], NULL);
		for (;;) {
			done = 0;
			for (int i = 0; i < 8; i++)
				done += r[i].done;
			if (done == 8 || !uv_run(&loop, UV_RUN_ONCE))
				break;
		}
		CHECK_INT(done, 8);
		for (int i = 0; i < 8; i++)
			CHECK_INT(r[i].status, 200);
		if (limited) {
			CHECK_INT(s.peak_open, 2);
			CHECK_INT(s.accepted, 2);
		} else {
			CHECK_INT(s.peak_open, 8);
		}
		finish_loop(&loop, cu, &s);
	}

	/* a request queued for a connection still has its timeout (libcurl
	 * 7.88 alone would let it wait as long as the pool stays busy) */
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server s;
	server_start(&loop, &s);
	struct curl_uv_options co = {.http1_only = true, .max_host_connections = 1};
	struct curl_uv *cu = curl_uv_new_opts(&loop, &co);
	struct result hang = {0}, queued = {0};
	start(cu, &s, "/hang", &hang, NULL);
	struct curl_uv_request_opts qo = {.timeout_ms = 300};
	start(cu, &s, "/ok", &queued, &qo);
	while (!queued.done && uv_run(&loop, UV_RUN_ONCE))
		;
	CHECK_INT(queued.error, -ETIMEDOUT);
	CHECK_INT(queued.request_sent, 0);
	CHECK_INT(queued.conn_failed, 0);
	CHECK_STR(queued.message, "Operation timed out after 300 milliseconds (waiting for a connection)");
	CHECK(queued.took_ms >= 300 && queued.took_ms < 1500);
	CHECK_INT(hang.done, 0);
	CHECK_INT(s.accepted, 1);
	finish_loop(&loop, cu, &s);
	CHECK_INT(hang.error, -ECANCELED);
}

int main(void)
{
	RUN(test_connection_refused);
	RUN(test_get_post_and_headers);
	RUN(test_limits_timeout_stream);
	RUN(test_cancel);
	RUN(test_close_with_pending);
	RUN(test_close_from_done);
	RUN(test_silent_drop_first_byte);
	RUN(test_idle_age);
	RUN(test_stale_and_fresh);
	RUN(test_fault_kinds);
	RUN(test_pool_limit);
	return UNIT_DONE();
}
