/* Drives the HTTP server on a real loop with libuv clients: pipelined
 * requests answered in order even when a handler answers later, streams,
 * aborted requests, a shutdown that leaves no handle behind; the check_headers
 * hook, the body budget, backpressure on a client that does not read, the
 * header deadline of a silent socket, the per-client cap, and error bodies
 * that stay valid JSON whatever the client sent. */
#include "http.h"
#include "log.h"
#include "router.h"
#include "unit.h"

struct pending {
	uv_timer_t timer;
	struct http_req *req;
	bool aborted;
};

static int aborts, async_done, shutdown_done;

static void on_pending_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_late(uv_timer_t *t)
{
	struct pending *p = t->data;
	if (!p->aborted) {
		http_respond(p->req, 200, "text/plain", "async", 5);
		async_done++;
	}
	uv_close((uv_handle_t *)&p->timer, on_pending_closed);
}

static void on_abort(struct http_req *req, void *data)
{
	(void)req;
	struct pending *p = data;
	p->aborted = true;
	aborts++;
}

static void h_async(struct http_req *req, void *data)
{
	uv_loop_t *loop = data;
	struct pending *p = xcalloc(1, sizeof *p);
	p->req = req;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	p->timer.data = p;
	uv_timer_start(&p->timer, on_late, 50, 0);
	req->on_abort = on_abort;
	req->abort_data = p;
}

static void h_sync(struct http_req *req, void *data)
{
	(void)data;
	char *v = http_req_query(req, "v", NULL);
	http_respond(req, 200, "text/plain", v ? v : "sync", v ? strlen(v) : 4);
	free(v);
}

static void h_stream(struct http_req *req, void *data)
{
	(void)data;
	http_stream_begin(req, 200, "text/plain");
	http_stream_write(req, "one,", 4);
	http_stream_write(req, "two", 3);
	http_stream_end(req);
}

struct client {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	const char *send;
	struct buf got;
	bool closed;
	bool close_after_write;
};

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;
	c->closed = true;
}

static void on_client_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
	(void)h;
	b->base = xmalloc(n);
	b->len = n;
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct client *c = s->data;
	if (n > 0)
		buf_append(&c->got, b->base, (size_t)n);
	free(b->base);
	if (n < 0)
		uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_client_written(uv_write_t *w, int status)
{
	struct client *c = w->data;
	CHECK_INT(status, 0);
	if (c->close_after_write)
		uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_client_connected(uv_connect_t *req, int status)
{
	struct client *c = req->data;
	CHECK_INT(status, 0);
	uv_buf_t b = uv_buf_init((char *)c->send, (unsigned)strlen(c->send));
	c->wr.data = c;
	uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_client_written);
	if (!c->close_after_write)
		uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read);
}

static void client_start(uv_loop_t *loop, struct client *c, int port, const char *send)
{
	memset(c, 0, sizeof *c);
	c->send = send;
	uv_tcp_init(loop, &c->tcp);
	c->tcp.data = c;
	c->conn.data = c;
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", port, &a);
	uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *)&a, on_client_connected);
}

static void on_shutdown_done(void *data)
{
	(void)data;
	shutdown_done++;
}

static void test_pipelining_async_and_streams(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct router *r = router_new();
	router_add(r, "GET", "/async", h_async, &loop, 0);
	router_add(r, "GET", "/sync", h_sync, NULL, 0);
	router_add(r, "GET", "/stream", h_stream, NULL, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	struct http_server *srv = http_server_new(&loop, &lim, r);
	CHECK_INT(http_server_listen(srv, "127.0.0.1:0"), 0);
	int port = http_server_port(srv);
	CHECK(port > 0);

	struct client a, b;
	client_start(&loop, &a, port,
		     "GET /async HTTP/1.1\r\nHost: x\r\n\r\n"
		     "GET /sync?v=%41b+c HTTP/1.1\r\nHost: x\r\n\r\n"
		     "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	/* b sends a request whose handler answers later, and closes: the
	 * server takes it as a half-close and still answers */
	client_start(&loop, &b, port, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
	b.close_after_write = true;
	while (!a.closed || !b.closed)
		uv_run(&loop, UV_RUN_ONCE);

	const char *s = a.got.data ? a.got.data : "";
	const char *p1 = strstr(s, "\r\n\r\nasync");
	const char *p2 = strstr(s, "\r\n\r\nAb c");
	const char *p3 = strstr(s, "Transfer-Encoding: chunked");
	const char *p4 = strstr(s, "4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n");
	CHECK(p1 && p2 && p3 && p4);
	CHECK(p1 < p2 && p2 < p3 && p3 < p4);
	buf_free(&a.got);
	buf_free(&b.got);

	while (async_done < 2)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK_INT(aborts, 0);

	http_server_shutdown(srv, on_shutdown_done, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(shutdown_done, 1);
	CHECK_INT(http_server_connections(srv), 0);
	http_server_free(srv);
	router_free(r);
	CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_shutdown_waits_for_in_flight(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct router *r = router_new();
	router_add(r, "GET", "/async", h_async, &loop, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	struct http_server *srv = http_server_new(&loop, &lim, r);
	CHECK_INT(http_server_listen(srv, "127.0.0.1:0"), 0);
	struct client a;
	async_done = 0;
	shutdown_done = 0;
	client_start(&loop, &a, http_server_port(srv), "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
	/* wait until the handler holds the request, then shut down */
	while (http_server_connections(srv) == 0)
		uv_run(&loop, UV_RUN_ONCE);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	http_server_shutdown(srv, on_shutdown_done, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(async_done, 1);
	CHECK_INT(shutdown_done, 1);
	CHECK(a.got.data && strstr(a.got.data, "Connection: close") && strstr(a.got.data, "async"));
	buf_free(&a.got);
	http_server_free(srv);
	router_free(r);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* A handler still busy at the shutdown deadline sees its request aborted. */
static void test_shutdown_deadline_aborts(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct router *r = router_new();
	router_add(r, "GET", "/async", h_async, &loop, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.shutdown_timeout_ms = 10; /* shorter than the handler's 50 ms */
	struct http_server *srv = http_server_new(&loop, &lim, r);
	CHECK_INT(http_server_listen(srv, "127.0.0.1:0"), 0);
	struct client a;
	async_done = aborts = shutdown_done = 0;
	client_start(&loop, &a, http_server_port(srv), "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
	while (http_server_connections(srv) == 0)
		uv_run(&loop, UV_RUN_ONCE);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	http_server_shutdown(srv, on_shutdown_done, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(aborts, 1);
	CHECK_INT(async_done, 0);
	CHECK_INT(shutdown_done, 1);
	CHECK(a.closed);
	CHECK(a.got.len == 0);
	buf_free(&a.got);
	http_server_free(srv);
	router_free(r);
	CHECK_INT(uv_loop_close(&loop), 0);
}


/* ---- a client that sends when told, from a chosen address ---- */

struct peer {
	uv_tcp_t tcp;
	uv_connect_t conn;
	struct buf got;
	bool connected, eof, closed;
	int writes_done;
	uint64_t t_connect, t_eof; /* ms */
};

static void on_peer_closed(uv_handle_t *h)
{
	struct peer *c = h->data;
	c->closed = true;
}

static void on_peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct peer *c = s->data;
	if (n > 0)
		buf_append(&c->got, b->base, (size_t)n);
	free(b->base);
	if (n < 0 && !c->eof) {
		c->eof = true;
		c->t_eof = now_ms();
		uv_close((uv_handle_t *)&c->tcp, on_peer_closed);
	}
}

static void on_peer_connected(uv_connect_t *req, int status)
{
	struct peer *c = req->data;
	CHECK_INT(status, 0);
	c->connected = true;
}

/* Connects from address from (NULL: any) to the server. small_buffers:
 * tiny kernel buffers, so that what is not read stays in the server. */
static void peer_start(uv_loop_t *loop, struct peer *c, int port, const char *from,
		       bool small_buffers)
{
	memset(c, 0, sizeof *c);
	uv_tcp_init_ex(loop, &c->tcp, AF_INET);
	c->tcp.data = c;
	c->conn.data = c;
	if (small_buffers) {
		int sz = 4096;
		uv_recv_buffer_size((uv_handle_t *)&c->tcp, &sz);
		sz = 4096;
		uv_send_buffer_size((uv_handle_t *)&c->tcp, &sz);
	}
	if (from) {
		struct sockaddr_in b;
		uv_ip4_addr(from, 0, &b);
		CHECK_INT(uv_tcp_bind(&c->tcp, (struct sockaddr *)&b, 0), 0);
	}
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", port, &a);
	c->t_connect = now_ms();
	uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *)&a, on_peer_connected);
	while (!c->connected)
		uv_run(loop, UV_RUN_ONCE);
}

static void peer_read(struct peer *c)
{
	uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_peer_read);
}

struct peer_write {
	uv_write_t w;
	struct peer *c;
	char data[];
};

static void on_peer_written(uv_write_t *w, int status)
{
	struct peer_write *pw = CONTAINER_OF(w, struct peer_write, w);
	if (status == 0)
		pw->c->writes_done++;
	free(pw);
}

static void peer_send(struct peer *c, const void *data, size_t len)
{
	struct peer_write *pw = xmalloc(sizeof *pw + len);
	pw->c = c;
	memcpy(pw->data, data, len);
	uv_buf_t b = uv_buf_init(pw->data, (unsigned)len);
	CHECK_INT(uv_write(&pw->w, (uv_stream_t *)&c->tcp, &b, 1, on_peer_written), 0);
}

static void peer_sends(struct peer *c, const char *s)
{
	peer_send(c, s, strlen(s));
}

static void peer_close(struct peer *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_peer_closed);
}

/* Runs the loop until cond holds (or for at most ms). */
#define RUN_UNTIL(loop, cond, ms)                                                          \
	do {                                                                               \
		uint64_t _end = now_ms() + (ms);                                           \
		uv_timer_t _t;                                                             \
		uv_timer_init((loop), &_t);                                                \
		uv_timer_start(&_t, on_wake, 5, 5);                                        \
		while (!(cond) && now_ms() < _end)                                         \
			uv_run((loop), UV_RUN_ONCE);                                       \
		uv_close((uv_handle_t *)&_t, NULL);                                        \
		uv_run((loop), UV_RUN_NOWAIT);                                             \
	} while (0)

static void on_wake(uv_timer_t *t)
{
	(void)t;
}

static int status_of(const struct buf *b)
{
	return b->data && strncmp(b->data, "HTTP/1.1 ", 9) == 0 ? atoi(b->data + 9) : 0;
}

/* Occurrences of needle in b, counted from *from on (which moves on). */
static int count_new(const struct buf *b, const char *needle, size_t *from, int *n)
{
	size_t nl = strlen(needle);
	while (b->data && *from < b->len) {
		const char *p = memmem(b->data + *from, b->len - *from, needle, nl);
		if (!p) {
			*from = b->len > nl ? b->len - nl : 0;
			break;
		}
		(*n)++;
		*from = (size_t)(p - b->data) + nl;
	}
	return *n;
}

struct server {
	uv_loop_t loop;
	struct router *router;
	struct http_server *srv;
	int port;
	int checks, handled;
};

static void server_start(struct server *s, const struct http_limits *lim)
{
	uv_loop_init(&s->loop);
	s->srv = http_server_new(&s->loop, lim, s->router);
	CHECK_INT(http_server_listen(s->srv, "127.0.0.1:0"), 0);
	s->port = http_server_port(s->srv);
}

static void server_stop(struct server *s)
{
	shutdown_done = 0;
	http_server_shutdown(s->srv, on_shutdown_done, NULL);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	CHECK_INT(shutdown_done, 1);
	http_server_free(s->srv);
	router_free(s->router);
	CHECK_INT(uv_loop_close(&s->loop), 0);
}

/* ---- check_headers ---- */

static int check_sig(struct http_req *req, void *data, const char **detail)
{
	struct server *s = data;
	s->checks++;
	CHECK_INT(req->body.len, 0);
	CHECK_STR(route_param(req, "name"), "x");
	if (!http_req_header(req, "x-sig")) {
		*detail = "missing X-Sig";
		http_add_header(req, "WWW-Authenticate", "Sig");
		return 401;
	}
	return 0;
}

static void h_count(struct http_req *req, void *data)
{
	struct server *s = data;
	s->handled++;
	char n[32];
	snprintf(n, sizeof n, "%zu", req->body.len);
	http_respond(req, 200, "text/plain", n, strlen(n));
}

static void test_check_headers_refuses_before_the_body(void)
{
	struct server s = {0};
	s.router = router_new();
	struct route_opts o = {.handler = h_count, .data = &s, .check_headers = check_sig};
	router_add_opts(s.router, "POST", "/guarded/{name}", &o);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_body_bytes = 32 << 20;
	server_start(&s, &lim);

	/* announced 20 MB, nothing sent: refused at once, 100 Continue never said */
	struct peer a;
	peer_start(&s.loop, &a, s.port, NULL, false);
	peer_read(&a);
	peer_sends(&a, "POST /guarded/x HTTP/1.1\r\nHost: t\r\nContent-Length: 20000000\r\n"
		       "Expect: 100-continue\r\n\r\n");
	RUN_UNTIL(&s.loop, a.closed, 5000);
	CHECK(a.closed);
	CHECK_INT(status_of(&a.got), 401);
	CHECK(a.got.data && strstr(a.got.data, "Connection: close\r\n"));
	CHECK(a.got.data && strstr(a.got.data, "WWW-Authenticate: Sig\r\n"));
	CHECK(a.got.data && strstr(a.got.data, "{\"detail\":\"missing X-Sig\"}"));
	CHECK(a.got.data && !strstr(a.got.data, "100 Continue"));
	CHECK_INT(s.checks, 1);
	CHECK_INT(s.handled, 0);
	CHECK_INT(http_server_buffered_body(s.srv), 0);
	buf_free(&a.got);

	/* signed: 100 Continue, the body, the handler */
	struct peer b;
	peer_start(&s.loop, &b, s.port, NULL, false);
	peer_read(&b);
	peer_sends(&b, "POST /guarded/x HTTP/1.1\r\nHost: t\r\nX-Sig: ok\r\nContent-Length: 5\r\n"
		       "Expect: 100-continue\r\n\r\n");
	RUN_UNTIL(&s.loop, b.got.len >= 25, 5000);
	CHECK(b.got.data && strncmp(b.got.data, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
	peer_sends(&b, "hello");
	RUN_UNTIL(&s.loop, s.handled == 1 && strstr(b.got.data, "\r\n\r\n5"), 5000);
	CHECK_INT(s.checks, 2);
	CHECK_INT(s.handled, 1);
	peer_close(&b);
	RUN_UNTIL(&s.loop, b.closed, 5000);
	buf_free(&b.got);
	server_stop(&s);
}

/* ---- the server-wide body budget ---- */

static void test_body_budget(void)
{
	struct server s = {0};
	s.router = router_new();
	router_add(s.router, "POST", "/sink", h_count, &s, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_buffered_body_bytes = 1000;
	server_start(&s, &lim);

	struct peer a, b, c;
	peer_start(&s.loop, &a, s.port, NULL, false);
	peer_read(&a);
	peer_sends(&a, "POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 600\r\n\r\nfirst");
	RUN_UNTIL(&s.loop, http_server_buffered_body(s.srv) == 600, 5000);
	CHECK_INT(http_server_buffered_body(s.srv), 600);
	/* a second would go beyond: refused from its Content-Length */
	peer_start(&s.loop, &b, s.port, NULL, false);
	peer_read(&b);
	peer_sends(&b, "POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 600\r\n\r\n");
	RUN_UNTIL(&s.loop, b.closed, 5000);
	CHECK_INT(status_of(&b.got), 503);
	CHECK(b.got.data && strstr(b.got.data, "Retry-After: 1\r\n"));
	CHECK_INT(s.handled, 0);
	/* a chunked one is refused once it crosses the budget */
	peer_start(&s.loop, &c, s.port, NULL, false);
	peer_read(&c);
	peer_sends(&c, "POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
	char chunk[300 + 16];
	snprintf(chunk, sizeof chunk, "12c\r\n%0300d\r\n", 0);
	peer_sends(&c, chunk);
	RUN_UNTIL(&s.loop, http_server_buffered_body(s.srv) == 900, 5000);
	CHECK_INT(http_server_buffered_body(s.srv), 900);
	peer_sends(&c, chunk);
	RUN_UNTIL(&s.loop, c.closed, 5000);
	CHECK_INT(status_of(&c.got), 503);
	CHECK_INT(http_server_buffered_body(s.srv), 600);
	/* the first completes; its budget comes back once answered */
	char rest[600];
	memset(rest, 'r', sizeof rest);
	peer_send(&a, rest, 595);
	RUN_UNTIL(&s.loop, s.handled == 1 && a.got.len, 5000);
	CHECK_INT(status_of(&a.got), 200);
	CHECK(a.got.data && strstr(a.got.data, "\r\n\r\n600"));
	CHECK_INT(http_server_buffered_body(s.srv), 0);
	peer_close(&a);
	RUN_UNTIL(&s.loop, a.closed, 5000);
	buf_free(&a.got);
	buf_free(&b.got);
	buf_free(&c.got);
	server_stop(&s);
}

/* ---- backpressure ---- */

static char big_body[10000];

static void h_big(struct http_req *req, void *data)
{
	struct server *s = data;
	s->handled++;
	http_respond_static(req, 200, "text/plain", big_body, sizeof big_body);
}

/* A client pipelines requests and reads nothing: the server stops reading
 * it once its answers are over max_output_pending; once it reads, every
 * request is answered, in order. */
static void test_pipelining_without_reading(void)
{
	struct server s = {0};
	s.router = router_new();
	router_add(s.router, "GET", "/big", h_big, &s, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	server_start(&s, &lim);
	memset(big_body, 'b', sizeof big_body);

	struct peer a;
	peer_start(&s.loop, &a, s.port, NULL, true);
	enum { N = 2000 }; /* 20 MB of answers */
	struct buf reqs = {0};
	for (int i = 0; i < N; i++)
		buf_printf(&reqs, "GET /big?i=%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
	peer_send(&a, reqs.data, reqs.len);
	buf_free(&reqs);
	RUN_UNTIL(&s.loop, false, 1000);
	/* the kernel's buffers take a few hundred answers, then nothing more
	 * is parsed */
	int stalled_at = s.handled;
	CHECK(stalled_at > 0);
	if (stalled_at >= 1000)
		fprintf(stderr, "  %d requests answered without the client reading\n", stalled_at);
	CHECK(stalled_at < 1000);
	RUN_UNTIL(&s.loop, false, 300);
	CHECK_INT(s.handled, stalled_at);

	peer_read(&a);
	size_t scanned = 0;
	int answers = 0;
	RUN_UNTIL(&s.loop, count_new(&a.got, "HTTP/1.1 200 OK", &scanned, &answers) == N, 30000);
	CHECK_INT(s.handled, N);
	CHECK_INT(answers, N);
	CHECK_INT(a.writes_done, 1);
	peer_close(&a);
	RUN_UNTIL(&s.loop, a.closed, 5000);
	buf_free(&a.got);
	server_stop(&s);
}

/* ---- connections ---- */

static void test_silent_socket_closed_at_header_deadline(void)
{
	struct server s = {0};
	s.router = router_new();
	router_add(s.router, "GET", "/sync", h_sync, NULL, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.header_timeout_ms = 1000;
	lim.keepalive_timeout_ms = 20000;
	server_start(&s, &lim);

	/* never a byte: closed at the header deadline, not the keep-alive */
	struct peer a;
	peer_start(&s.loop, &a, s.port, NULL, false);
	peer_read(&a);
	RUN_UNTIL(&s.loop, a.closed, 5000);
	CHECK(a.closed);
	CHECK(a.t_eof - a.t_connect >= 900 && a.t_eof - a.t_connect < 5000);
	CHECK_INT(a.got.len, 0);
	/* a request begun late does not move the deadline of the first */
	struct peer b;
	peer_start(&s.loop, &b, s.port, NULL, false);
	peer_read(&b);
	RUN_UNTIL(&s.loop, false, 800);
	peer_sends(&b, "GET /sync HTTP/1.1\r\n");
	RUN_UNTIL(&s.loop, b.closed, 5000);
	CHECK_INT(status_of(&b.got), 408);
	/* ~1000 ms; 1800 if the deadline restarted at the first byte */
	CHECK(b.t_eof - b.t_connect >= 900 && b.t_eof - b.t_connect < 1600);
	/* after a request, the keep-alive time applies */
	struct peer c;
	peer_start(&s.loop, &c, s.port, NULL, false);
	peer_read(&c);
	peer_sends(&c, "GET /sync HTTP/1.1\r\nHost: t\r\n\r\n");
	RUN_UNTIL(&s.loop, c.got.len > 0, 5000);
	RUN_UNTIL(&s.loop, c.closed, 1500);
	CHECK_INT(status_of(&c.got), 200);
	CHECK(!c.closed);
	peer_close(&c);
	RUN_UNTIL(&s.loop, c.closed, 5000);
	buf_free(&a.got);
	buf_free(&b.got);
	buf_free(&c.got);
	server_stop(&s);
}

static void test_per_client_cap(void)
{
	struct server s = {0};
	s.router = router_new();
	router_add(s.router, "GET", "/sync", h_sync, NULL, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_connections = 4;
	lim.max_connections_per_client = 2;
	server_start(&s, &lim);

	struct peer a[3], other;
	for (int i = 0; i < 3; i++) {
		peer_start(&s.loop, &a[i], s.port, "127.0.0.2", false);
		peer_read(&a[i]);
		RUN_UNTIL(&s.loop, http_server_connections(s.srv) == (unsigned)(i < 2 ? i + 1 : 2) &&
					   (i < 2 || a[i].closed),
			  5000);
	}
	/* the third from the same address is refused; the first two work */
	CHECK(a[2].closed);
	CHECK_INT(status_of(&a[2].got), 503);
	CHECK(a[2].got.data && strstr(a[2].got.data, "too many connections from your address"));
	CHECK_INT(http_server_connections(s.srv), 2);
	for (int i = 0; i < 2; i++) {
		peer_sends(&a[i], "GET /sync HTTP/1.1\r\nHost: t\r\n\r\n");
		RUN_UNTIL(&s.loop, a[i].got.len > 0, 5000);
		CHECK_INT(status_of(&a[i].got), 200);
	}
	/* another address is served */
	peer_start(&s.loop, &other, s.port, "127.0.0.3", false);
	peer_read(&other);
	peer_sends(&other, "GET /sync HTTP/1.1\r\nHost: t\r\n\r\n");
	RUN_UNTIL(&s.loop, other.got.len > 0, 5000);
	CHECK_INT(status_of(&other.got), 200);
	/* a slot freed is a slot for the same address again */
	peer_close(&a[0]);
	RUN_UNTIL(&s.loop, http_server_connections(s.srv) == 2, 5000);
	buf_free(&a[2].got);
	peer_start(&s.loop, &a[2], s.port, "127.0.0.2", false);
	peer_read(&a[2]);
	peer_sends(&a[2], "GET /sync HTTP/1.1\r\nHost: t\r\n\r\n");
	RUN_UNTIL(&s.loop, a[2].got.len > 0, 5000);
	CHECK_INT(status_of(&a[2].got), 200);
	for (int i = 1; i < 3; i++)
		peer_close(&a[i]);
	peer_close(&other);
	RUN_UNTIL(&s.loop, a[1].closed && a[2].closed && other.closed, 5000);
	for (int i = 0; i < 3; i++)
		buf_free(&a[i].got);
	buf_free(&other.got);
	server_stop(&s);
}

/* ---- error bodies ---- */

static void h_echo_error(struct http_req *req, void *data)
{
	(void)data;
	char *v = http_req_query(req, "v", NULL);
	http_respond_error(req, 404, "no such thing: %s", v ? v : "");
	free(v);
}

/* The JSON body of the only response in b, parsed, or NULL. */
static json_t *body_json(const struct buf *b)
{
	const char *p = b->data ? strstr(b->data, "\r\n\r\n") : NULL;
	return p ? json_loads(p + 4, 0, NULL) : NULL;
}

static void test_error_bodies_are_json(void)
{
	struct server s = {0};
	s.router = router_new();
	router_add(s.router, "GET", "/e", h_echo_error, NULL, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	server_start(&s, &lim);
	struct buf longq = {0};
	buf_append_str(&longq, "GET /e?v=");
	for (int i = 0; i < 700; i++)
		buf_append_str(&longq, "%C3%A9"); /* é: 2 bytes, 1400 in all */
	buf_append_str(&longq, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	const char *reqs[] = {
		"GET /e?v=%ff%fe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		"GET /e?v=a%c0%afb%ed%a0%80c%f4%90%80%80 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		"GET /e?v=%e2%82 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		longq.data,
	};
	const char *want[] = {
		"no such thing: \xef\xbf\xbd\xef\xbf\xbd",
		"no such thing: a\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
		"c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
		"no such thing: \xef\xbf\xbd\xef\xbf\xbd",
		NULL,
	};
	for (size_t i = 0; i < ARRAY_SIZE(reqs); i++) {
		struct peer c;
		peer_start(&s.loop, &c, s.port, NULL, false);
		peer_read(&c);
		peer_sends(&c, reqs[i]);
		RUN_UNTIL(&s.loop, c.closed, 5000);
		CHECK_INT(status_of(&c.got), 404);
		json_t *j = body_json(&c.got);
		CHECK(j != NULL);
		const char *d = json_string_value(json_object_get(j, "detail"));
		if (want[i]) {
			CHECK_STR(d, want[i]);
		} else {
			/* cut at 1 KiB between two characters */
			CHECK(d && strlen(d) <= 1024 && strlen(d) >= 1020);
			CHECK(d && (strlen(d) - strlen("no such thing: ")) % 2 == 0);
		}
		json_decref(j);
		buf_free(&c.got);
	}
	buf_free(&longq);
	server_stop(&s);
}

int main(void)
{
	log_set_level(getenv("DEBUG") ? LOG_DEBUG : LOG_WARN);
	RUN(test_pipelining_async_and_streams);
	RUN(test_shutdown_waits_for_in_flight);
	RUN(test_shutdown_deadline_aborts);
	RUN(test_check_headers_refuses_before_the_body);
	RUN(test_body_budget);
	RUN(test_pipelining_without_reading);
	RUN(test_silent_socket_closed_at_header_deadline);
	RUN(test_per_client_cap);
	RUN(test_error_bodies_are_json);
	return UNIT_DONE();
}
