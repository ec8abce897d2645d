/* The WebSocket frame path (ws.c on http.c) on a real loop, with a raw
 * libuv client that sends what a library would not: the close code of every
 * kind of protocol error (RFC 6455: 1002, 1007, 1009), ping/pong, and a ping
 * flood from a client that never reads, which must stop being read instead
 * of growing the server's memory. */
#include "http.h"
#include "log.h"
#include "router.h"
#include "unit.h"
#include "ws.h"

struct server {
	uv_loop_t *loop;
	struct router *router;
	struct http_server *http;
	struct ws_opts opts;
	struct ws *ws;   /* the last accepted */
	int ws_closed;   /* on_close calls */
	int messages;    /* on_message calls */
	int shutdown_done;
};

static void on_ws_message(struct ws *ws, const char *msg, size_t len, bool text, void *data)
{
	UNUSED(ws);
	UNUSED(msg);
	UNUSED(len);
	UNUSED(text);
	struct server *s = data;
	s->messages++;
}

static void on_ws_close(struct ws *ws, void *data)
{
	struct server *s = data;
	if (s->ws == ws)
		s->ws = NULL;
	s->ws_closed++;
}

static void h_ws(struct http_req *req, void *data)
{
	struct server *s = data;
	char accept[32];
	const char *detail = NULL;
	int st = ws_handshake_check(req, NULL, accept, &detail);
	if (st) {
		http_respond_error(req, st, "%s", detail);
		return;
	}
	struct ws_cbs cbs = {.on_message = on_ws_message, .on_close = on_ws_close};
	s->ws = ws_accept(req, s->loop, accept, &s->opts, &cbs, s);
}

static void server_start(struct server *s, uv_loop_t *loop, const struct http_limits *lim)
{
	memset(s, 0, sizeof *s);
	s->loop = loop;
	s->opts.max_message = 1024;
	s->router = router_new();
	router_add(s->router, "GET", "/ws", h_ws, s, 0);
	s->http = http_server_new(loop, lim, s->router);
	CHECK_INT(http_server_listen(s->http, "127.0.0.1:0"), 0);
}

static void on_server_done(void *data)
{
	struct server *s = data;
	s->shutdown_done++;
}

static void server_stop(struct server *s)
{
	http_server_shutdown(s->http, on_server_done, s);
	uv_run(s->loop, UV_RUN_DEFAULT);
	CHECK_INT(s->shutdown_done, 1);
	http_server_free(s->http);
	router_free(s->router);
}

/* ---- a raw client ---- */

struct client {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_timer_t guard;
	struct buf got;   /* everything received */
	size_t parsed;    /* frames parsed in got, from after the 101 head */
	bool head_done;
	int status;       /* of the handshake answer */
	int pongs;
	size_t pong_bytes;
	int close_code;   /* -1: no close frame yet; 0: one without a code */
	bool eof, closed, timed_out, masked;
	int writes_done;
};

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;
	c->closed = true;
}

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
	UNUSED(h);
	b->base = xmalloc(n);
	b->len = n;
}

/* Parses the server's frames received so far (servers never mask). */
static void client_parse(struct client *c)
{
	if (!c->head_done) {
		const char *end = c->got.data ? strstr(c->got.data, "\r\n\r\n") : NULL;
		if (!end)
			return;
		c->head_done = true;
		c->status = atoi(c->got.data + 9);
		c->parsed = (size_t)(end + 4 - c->got.data);
	}
	for (;;) {
		const unsigned char *p = (const unsigned char *)c->got.data + c->parsed;
		size_t avail = c->got.len - c->parsed;
		if (avail < 2)
			return;
		if (p[1] & 0x80)
			c->masked = true; /* servers must not mask */
		uint64_t n = p[1] & 0x7f;
		size_t off = 2;
		if (n == 126) {
			if (avail < 4)
				return;
			n = ((uint64_t)p[2] << 8) | p[3];
			off = 4;
		} else if (n == 127) {
			if (avail < 10)
				return;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = (n << 8) | p[2 + i];
			off = 10;
		}
		if (avail < off + n)
			return;
		int op = p[0] & 0x0f;
		if (getenv("DEBUG_FRAMES"))
			fprintf(stderr, "  frame op %d len %llu\n", op, (unsigned long long)n);
		if (op == 0xA) {
			c->pongs++;
			c->pong_bytes += n;
		} else if (op == 0x8) {
			c->close_code = n >= 2 ? (p[off] << 8) | p[off + 1] : 0;
		}
		c->parsed += off + n;
	}
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct client *c = s->data;
	if (n > 0) {
		buf_append(&c->got, b->base, (size_t)n);
		client_parse(c);
	}
	free(b->base);
	if (n < 0) {
		c->eof = true;
		uv_timer_stop(&c->guard);
		if (!uv_is_closing((uv_handle_t *)&c->tcp))
			uv_close((uv_handle_t *)&c->tcp, on_client_closed);
	}
}

struct client_write {
	uv_write_t w;
	struct client *c;
	char data[];
};

static void on_client_written(uv_write_t *w, int status)
{
	struct client_write *cw = CONTAINER_OF(w, struct client_write, w);
	if (status == 0)
		cw->c->writes_done++;
	free(cw);
}

static void client_send(struct client *c, const void *data, size_t len)
{
	struct client_write *cw = xmalloc(sizeof *cw + len);
	cw->c = c;
	memcpy(cw->data, data, len);
	uv_buf_t b = uv_buf_init(cw->data, (unsigned)len);
	CHECK_INT(uv_write(&cw->w, (uv_stream_t *)&c->tcp, &b, 1, on_client_written), 0);
}

static const char HANDSHAKE[] = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
				"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

struct connect_ctx {
	struct client *c;
	struct buf first; /* sent once connected */
};

static void on_client_connected(uv_connect_t *req, int status)
{
	struct connect_ctx *x = req->data;
	CHECK_INT(status, 0);
	if (x->first.len)
		client_send(x->c, x->first.data, x->first.len);
	buf_free(&x->first);
	uv_read_start((uv_stream_t *)&x->c->tcp, on_alloc, on_client_read);
	free(x);
}

static void on_guard(uv_timer_t *t)
{
	struct client *c = t->data;
	c->timed_out = true;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

/* Connects and sends the handshake followed by frames (early bytes of the
 * upgraded connection). small_buffers: tiny kernel buffers, so that what
 * the client does not read stays in the server. */
static void client_start(struct client *c, uv_loop_t *loop, int port, const struct buf *frames,
			 bool small_buffers)
{
	memset(c, 0, sizeof *c);
	c->close_code = -1;
	uv_tcp_init_ex(loop, &c->tcp, AF_INET);
	c->tcp.data = c;
	if (small_buffers) {
		int sz = 4096;
		uv_send_buffer_size((uv_handle_t *)&c->tcp, &sz);
		sz = 4096;
		uv_recv_buffer_size((uv_handle_t *)&c->tcp, &sz);
	}
	uv_timer_init(loop, &c->guard);
	c->guard.data = c;
	uv_timer_start(&c->guard, on_guard, 20000, 0);
	struct connect_ctx *x = xcalloc(1, sizeof *x);
	x->c = c;
	buf_append(&x->first, HANDSHAKE, sizeof HANDSHAKE - 1);
	if (frames)
		buf_append(&x->first, frames->data, frames->len);
	c->conn.data = x;
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", port, &a);
	uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *)&a, on_client_connected);
}

static void client_free(struct client *c)
{
	uv_close((uv_handle_t *)&c->guard, NULL);
	buf_free(&c->got);
}

/* Appends one client frame: masked unless told otherwise; len126 forces the
 * 16-bit length form even for a short payload (not the shortest form). */
static void frame(struct buf *b, int b0, const void *payload, size_t n, bool mask, bool len126)
{
	unsigned char h[14];
	size_t hl = 0;
	h[hl++] = (unsigned char)b0;
	unsigned char m = mask ? 0x80 : 0;
	if (n < 126 && !len126) {
		h[hl++] = (unsigned char)(m | n);
	} else if (n < 65536) {
		h[hl++] = m | 126;
		h[hl++] = (unsigned char)(n >> 8);
		h[hl++] = (unsigned char)n;
	} else {
		h[hl++] = m | 127;
		for (int i = 7; i >= 0; i--)
			h[hl++] = (unsigned char)((uint64_t)n >> (8 * i));
	}
	static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
	if (mask) {
		memcpy(h + hl, key, 4);
		hl += 4;
	}
	buf_append(b, h, hl);
	const unsigned char *p = payload;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = mask ? p[i] ^ key[i % 4] : p[i];
		buf_append(b, &ch, 1);
	}
}

#define FIN 0x80

/* Sends the handshake and frames, runs until the server has closed the
 * connection; returns the close code the server sent. */
static int close_code_for(const struct buf *frames, int *pongs)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct http_limits lim;
	http_limits_default(&lim);
	struct server s;
	server_start(&s, &loop, &lim);
	struct client c;
	client_start(&c, &loop, http_server_port(s.http), frames, false);
	while (!c.closed)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK(!c.timed_out);
	CHECK_INT(c.status, 101);
	/* the server closed, and told its owner */
	while (s.ws_closed < 1)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK(!c.masked);
	int code = c.close_code;
	if (pongs)
		*pongs = c.pongs;
	client_free(&c);
	server_stop(&s);
	CHECK_INT(uv_loop_close(&loop), 0);
	return code;
}

static void test_ping_pong_and_close(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct http_limits lim;
	http_limits_default(&lim);
	struct server s;
	server_start(&s, &loop, &lim);
	struct buf f = {0};
	frame(&f, FIN | 0x9, "hello", 5, true, false);
	frame(&f, 0x1, "frag", 4, true, false);       /* text, not final */
	frame(&f, FIN | 0x9, "mid", 3, true, false);  /* control frames interleave */
	frame(&f, FIN | 0x0, "ment", 4, true, false); /* the end of the text */
	struct client c;
	client_start(&c, &loop, http_server_port(s.http), &f, false);
	buf_free(&f);
	while (c.pongs < 2 && !c.closed)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK_INT(c.status, 101);
	CHECK_INT(c.pongs, 2);
	CHECK_INT(c.pong_bytes, 8);
	CHECK_INT(s.messages, 1);
	/* the close handshake: the server answers with the same code */
	frame(&f, FIN | 0x8, "\x03\xe8" "bye", 5, true, false);
	client_send(&c, f.data, f.len);
	buf_free(&f);
	while (!c.closed)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK(!c.timed_out);
	CHECK_INT(c.close_code, 1000);
	while (s.ws_closed < 1)
		uv_run(&loop, UV_RUN_ONCE);
	client_free(&c);
	server_stop(&s);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* Each protocol error closes with its RFC 6455 code. */
static void test_close_codes(void)
{
	struct {
		const char *name;
		int b0;
		const char *payload;
		size_t n;
		bool mask, len126;
		int code;
	} cases[] = {
		{"unmasked", FIN | 0x1, "x", 1, false, false, 1002},
		{"reserved opcode", FIN | 0x3, "x", 1, true, false, 1002},
		{"rsv1 without extension", FIN | 0x40 | 0x1, "x", 1, true, false, 1002},
		{"continuation first", FIN | 0x0, "x", 1, true, false, 1002},
		/* frame-level errors, which wslay closes without a code */
		{"fragmented ping", 0x9, "x", 1, true, false, 1002},
		{"length not in shortest form", FIN | 0x1, "abc", 3, true, true, 1002},
		{"close of one byte", FIN | 0x8, "\x03", 1, true, false, 1002},
		{"close code 1005 on the wire", FIN | 0x8, "\x03\xed", 2, true, false, 1002},
		{"close code 999", FIN | 0x8, "\x03\xe7", 2, true, false, 1002},
		{"invalid UTF-8 text", FIN | 0x1, "a\xff" "b", 3, true, false, 1007},
		{"overlong UTF-8", FIN | 0x1, "\xc0\xaf", 2, true, false, 1007},
		{"invalid UTF-8 close reason", FIN | 0x8, "\x03\xe8\xff", 3, true, false, 1007},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct buf f = {0};
		frame(&f, cases[i].b0, cases[i].payload, cases[i].n, cases[i].mask, cases[i].len126);
		int code = close_code_for(&f, NULL);
		if (code != cases[i].code)
			fprintf(stderr, "  case \"%s\":\n", cases[i].name);
		CHECK_INT(code, cases[i].code);
		buf_free(&f);
	}
	/* a ping of 126 bytes: control frames carry at most 125 */
	char big[200];
	memset(big, 'p', sizeof big);
	struct buf f = {0};
	frame(&f, FIN | 0x9, big, 126, true, false);
	CHECK_INT(close_code_for(&f, NULL), 1002);
	buf_free(&f);
	/* over max_message (1024 here), whole or in fragments */
	char msg[1500];
	memset(msg, 'm', sizeof msg);
	frame(&f, FIN | 0x1, msg, 1500, true, false);
	CHECK_INT(close_code_for(&f, NULL), 1009);
	buf_free(&f);
	frame(&f, 0x1, msg, 800, true, false);
	frame(&f, FIN | 0x0, msg, 800, true, false);
	CHECK_INT(close_code_for(&f, NULL), 1009);
	buf_free(&f);
	/* UTF-8 cut between two fragments is fine; invalid across them is not */
	frame(&f, 0x1, "\xe2\x82", 2, true, false);
	frame(&f, FIN | 0x0, "\xac", 1, true, false);
	frame(&f, FIN | 0x8, "\x03\xe8", 2, true, false);
	CHECK_INT(close_code_for(&f, NULL), 1000);
	buf_free(&f);
	frame(&f, 0x1, "\xe2\x82", 2, true, false);
	frame(&f, FIN | 0x0, "x", 1, true, false);
	CHECK_INT(close_code_for(&f, NULL), 1007);
	buf_free(&f);
}

struct flood {
	struct client *c;
	struct server *s;
	size_t max_pending;
	int ticks;
};

static void on_flood_tick(uv_timer_t *t)
{
	struct flood *f = t->data;
	if (f->s->ws) {
		size_t p = ws_pending(f->s->ws);
		if (p > f->max_pending)
			f->max_pending = p;
	}
	f->ticks++;
}

/* A client floods pings and reads nothing: the server stops reading it once
 * its pongs are over max_output_pending, so what it holds stays bounded; once
 * the client reads, every ping gets its pong. */
static void test_ping_flood_without_reading(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.stream_send_buffer = 4096; /* a small kernel buffer for upgraded conns */
	struct server s;
	server_start(&s, &loop, &lim);
	s.opts.ping_ms = 60000; /* no keepalive ping of ours in the count */
	struct client c;
	client_start(&c, &loop, http_server_port(s.http), NULL, true);
	while (!c.head_done && !c.closed)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK_INT(c.status, 101);
	uv_read_stop((uv_stream_t *)&c.tcp);

	char payload[125];
	memset(payload, 'z', sizeof payload);
	struct buf pings = {0};
	const int n_pings = 64000; /* 8 MiB of pings, 8 MiB of pongs */
	for (int i = 0; i < n_pings; i++)
		frame(&pings, FIN | 0x9, payload, sizeof payload, true, false);
	client_send(&c, pings.data, pings.len);
	buf_free(&pings);

	struct flood fl = {.c = &c, .s = &s};
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	tick.data = &fl;
	uv_timer_start(&tick, on_flood_tick, 10, 10);
	while (fl.ticks < 100)
		uv_run(&loop, UV_RUN_ONCE);
	/* one second later: the server stopped reading (the client's write is
	 * stuck) and holds little */
	CHECK_INT(c.writes_done, 1); /* the handshake only */
	CHECK(s.ws != NULL);
	CHECK(fl.max_pending > 0);
	if (fl.max_pending > 256 * 1024)
		fprintf(stderr, "  max pending %zu\n", fl.max_pending);
	CHECK(fl.max_pending <= 256 * 1024);

	/* the client reads: everything flows, nothing is lost */
	uv_read_start((uv_stream_t *)&c.tcp, on_alloc, on_client_read);
	while ((c.writes_done < 2 || c.pongs < n_pings) && !c.closed)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK_INT(c.writes_done, 2);
	CHECK_INT(c.pongs, n_pings);
	CHECK_INT(c.pong_bytes, (size_t)n_pings * sizeof payload);
	CHECK(fl.max_pending <= 256 * 1024);
	struct buf bye = {0};
	frame(&bye, FIN | 0x8, "\x03\xe8", 2, true, false);
	client_send(&c, bye.data, bye.len);
	buf_free(&bye);
	while (!c.closed)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK_INT(c.close_code, 1000);
	uv_close((uv_handle_t *)&tick, NULL);
	while (s.ws_closed < 1)
		uv_run(&loop, UV_RUN_ONCE);
	client_free(&c);
	server_stop(&s);
	CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
	log_set_level(getenv("DEBUG") ? LOG_DEBUG : LOG_ERROR);
	RUN(test_ping_pong_and_close);
	RUN(test_close_codes);
	RUN(test_ping_flood_without_reading);
	return UNIT_DONE();
}
