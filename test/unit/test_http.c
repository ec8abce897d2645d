/* Drives the HTTP server on a real loop with libuv clients: pipelined
 * requests answered in order even when a handler answers later, streams,
 * aborted requests, and a shutdown that leaves no handle behind. */
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

int main(void)
{
	log_set_level(getenv("DEBUG") ? LOG_DEBUG : LOG_WARN);
	RUN(test_pipelining_async_and_streams);
	RUN(test_shutdown_waits_for_in_flight);
	RUN(test_shutdown_deadline_aborts);
	return UNIT_DONE();
}
