/* A tiny HTTP/1.1 server on a libuv loop for client tests: one request per
 * connection, handed to a handler that answers (stub_respond), streams
 * (stub_send ... stub_end) or never answers; or keep-alive answers
 * (stub_respond_keepalive), after which the connection reads the next
 * request. Not a fake Kubernetes: tests script exactly the answers they
 * need. Include once per test file. */
#ifndef RUNBOAT_TEST_HTTP_STUB_H
#define RUNBOAT_TEST_HTTP_STUB_H

#include "util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct stub;

struct stub_conn {
	uv_tcp_t tcp;
	struct stub *stub;
	struct buf in;
	bool got_request;
	bool closing;
	bool keepalive; /* answered: read the next request once the handler returns */
	struct stub_conn *next;
};

struct stub_request {
	char method[16];
	char target[1024]; /* path and query */
	char content_type[128];
	char auth[512];
	char *body; /* NUL-terminated */
	size_t body_len;
};

typedef void (*stub_handler)(struct stub_conn *c, const struct stub_request *req, void *data);

struct stub {
	uv_tcp_t tcp;
	int port;
	int requests;
	int accepted; /* connections */
	struct stub_conn *conns;
	stub_handler handler;
	void *data;
	struct stub_request last;
	char last_body[4096];
};

static void stub_on_conn_closed(uv_handle_t *h)
{
	struct stub_conn *c = h->data;
	buf_free(&c->in);
	free(c);
}

static inline void stub_close_conn(struct stub_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	struct stub *s = c->stub;
	for (struct stub_conn **p = &s->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	uv_close((uv_handle_t *)&c->tcp, stub_on_conn_closed);
}

struct stub_write {
	uv_write_t w;
	struct stub_conn *c;
	bool close_after;
	char data[];
};

static void stub_on_written(uv_write_t *w, int status)
{
	(void)status;
	struct stub_write *sw = (struct stub_write *)w;
	if (sw->close_after)
		stub_close_conn(sw->c);
	free(sw);
}

static inline void stub_write(struct stub_conn *c, const char *data, size_t len, bool close_after)
{
	if (c->closing)
		return;
	struct stub_write *sw = xmalloc(sizeof(*sw) + len + 1);
	memset(&sw->w, 0, sizeof(sw->w));
	sw->c = c;
	sw->close_after = close_after;
	memcpy(sw->data, data, len);
	uv_buf_t b = uv_buf_init(sw->data, (unsigned)len);
	if (uv_write(&sw->w, (uv_stream_t *)&c->tcp, &b, 1, stub_on_written) != 0) {
		free(sw);
		stub_close_conn(c);
	}
}

/* A complete response, then the connection closes. extra_headers: "" or
 * lines ending in \r\n. */
static inline void stub_respond(struct stub_conn *c, int status, const char *extra_headers,
				const char *body)
{
	struct buf r = {0};
	buf_printf(&r, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		       "Connection: close\r\n%s\r\n%s",
		   status, strlen(body), extra_headers ? extra_headers : "", body);
	stub_write(c, r.data, r.len, true);
	buf_free(&r);
}

/* A complete response on a connection that stays open for the next request. */
static inline void stub_respond_keepalive(struct stub_conn *c, int status,
					  const char *extra_headers, const char *body)
{
	struct buf r = {0};
	buf_printf(&r, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		       "%s\r\n%s",
		   status, strlen(body), extra_headers ? extra_headers : "", body);
	stub_write(c, r.data, r.len, false);
	buf_free(&r);
	c->keepalive = true;
}

/* Streaming: headers (connection-close delimited body), then stub_send. */
static inline void stub_stream_start(struct stub_conn *c, int status)
{
	char h[160];
	int n = snprintf(h, sizeof(h), "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
				       "Connection: close\r\n\r\n", status);
	stub_write(c, h, (size_t)n, false);
}

static inline void stub_send(struct stub_conn *c, const char *s)
{
	stub_write(c, s, strlen(s), false);
}

static inline void stub_end(struct stub_conn *c)
{
	stub_write(c, "", 0, true);
}

static void stub_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	b->base = xmalloc(suggested);
	b->len = suggested;
}

static void stub_header(const char *head, const char *end, const char *name, char *out,
			size_t outlen)
{
	out[0] = '\0';
	const char *h = strcasestr(head, name);
	if (!h || h > end)
		return;
	h += strlen(name);
	while (*h == ' ')
		h++;
	size_t n = strcspn(h, "\r");
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, h, n);
	out[n] = '\0';
}

static void stub_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct stub_conn *c = st->data;
	if (n < 0) {
		free(b->base);
		stub_close_conn(c);
		return;
	}
	if (!c->got_request)
		buf_append(&c->in, b->base, (size_t)n);
	free(b->base);
	if (c->got_request || !c->in.data)
		return;
	char *end = strstr(c->in.data, "\r\n\r\n");
	if (!end)
		return;
	size_t head = (size_t)(end + 4 - c->in.data);
	char cl[32];
	stub_header(c->in.data, end, "\r\ncontent-length:", cl, sizeof(cl));
	size_t clen = strtoul(cl, NULL, 10);
	if (c->in.len < head + clen)
		return;
	c->got_request = true;
	struct stub *s = c->stub;
	struct stub_request req = {0};
	sscanf(c->in.data, "%15s %1023s", req.method, req.target);
	stub_header(c->in.data, end, "\r\ncontent-type:", req.content_type, sizeof(req.content_type));
	stub_header(c->in.data, end, "\r\nauthorization:", req.auth, sizeof(req.auth));
	req.body = c->in.data + head;
	req.body_len = clen;
	c->in.data[head + clen] = '\0';
	s->requests++;
	s->last = req;
	snprintf(s->last_body, sizeof(s->last_body), "%s", req.body);
	s->last.body = s->last_body;
	s->handler(c, &req, s->data);
	if (c->keepalive && !c->closing) {
		/* the request's bytes are done with: ready for the next one */
		c->keepalive = false;
		c->got_request = false;
		buf_consume(&c->in, head + clen);
	}
}

static void stub_on_connection(uv_stream_t *st, int status)
{
	struct stub *s = st->data;
	if (status < 0)
		return;
	struct stub_conn *c = xcalloc(1, sizeof(*c));
	c->stub = s;
	s->accepted++;
	uv_tcp_init(st->loop, &c->tcp);
	c->tcp.data = c;
	c->next = s->conns;
	s->conns = c;
	if (uv_accept(st, (uv_stream_t *)&c->tcp) != 0) {
		stub_close_conn(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->tcp, stub_alloc, stub_on_read);
}

static inline int stub_start(uv_loop_t *loop, struct stub *s, stub_handler h, void *data)
{
	memset(s, 0, sizeof(*s));
	s->handler = h;
	s->data = data;
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", 0, &addr);
	uv_tcp_init(loop, &s->tcp);
	s->tcp.data = s;
	if (uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0) != 0 ||
	    uv_listen((uv_stream_t *)&s->tcp, 64, stub_on_connection) != 0)
		return -1;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len);
	s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

static inline void stub_stop(struct stub *s)
{
	while (s->conns)
		stub_close_conn(s->conns);
	uv_close((uv_handle_t *)&s->tcp, NULL);
}

/* Runs loop until *counter >= target (or nothing is left to run). A prepare
 * handle stops the loop before it would block in poll, so completions that
 * come from timers are seen at once. */
struct loop_until {
	int *counter;
	int target;
};

static void loop_until_check(uv_prepare_t *p)
{
	struct loop_until *u = p->data;
	if (*u->counter >= u->target)
		uv_stop(p->loop);
}

static inline void loop_run_until(uv_loop_t *loop, int *counter, int target)
{
	struct loop_until u = {counter, target};
	uv_prepare_t p;
	uv_prepare_init(loop, &p);
	p.data = &u;
	uv_prepare_start(&p, loop_until_check);
	if (*counter < target)
		uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&p, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

#endif
