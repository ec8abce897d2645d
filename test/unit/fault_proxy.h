/* A fault-injecting TCP proxy on a libuv loop, for client tests: it forwards
 * 127.0.0.1:port to an upstream port (plain HTTP or TLS alike: it never
 * looks at the bytes) and, on demand, misbehaves the way networks do:
 *
 *   fproxy_silence_all()   every open connection goes silent for good: bytes
 *                          from either side are swallowed, nothing is sent,
 *                          no FIN, no RST (a NAT or load balancer that forgot
 *                          an idle connection); new connections work
 *   blackhole = true       new connections are accepted and then silent
 *   delay_first_ms/_conns  the next N connections hold back the first bytes
 *                          of the upstream's answer for that long
 *   reset_after/_conns     the next N connections are reset (RST to the
 *                          client) once that many answer bytes were passed
 *                          (0: at the first answer byte, passing nothing)
 *
 * Connections are numbered in accept order (1, 2, ...) and can be closed
 * (FIN, as a server closing an idle connection) or reset one by one.
 * Counters tell what happened (accepted connections, requests seen as
 * client->upstream chunks, ...). Include once per test file. */
#ifndef RUNBOAT_TEST_FAULT_PROXY_H
#define RUNBOAT_TEST_FAULT_PROXY_H

#include "util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct fproxy;

struct fp_conn {
	uv_tcp_t client;
	uv_tcp_t upstream;
	uv_timer_t delay;
	struct fproxy *p;
	int id;                /* accept order, from 1 */
	int open;              /* handles not yet closed */
	bool closing;
	bool upstream_ready;
	bool silent;
	bool delaying;         /* first answer bytes held in `held` */
	bool upstream_eof;     /* close once `held` is passed on */
	long delay_ms;         /* 0: no delay for this connection */
	bool reset;            /* reset after reset_after answer bytes */
	long reset_after;
	size_t answer_bytes;   /* upstream -> client so far */
	struct buf to_upstream; /* client bytes before the upstream connected */
	struct buf held;
	struct fp_conn *next;
};

struct fproxy {
	uv_tcp_t tcp;
	uv_loop_t *loop;
	int port;
	int upstream_port;
	struct fp_conn *conns;
	/* faults (set by the test at any time) */
	bool blackhole;
	long delay_first_ms;
	int delay_conns;
	long reset_after;
	int reset_conns;
	/* counters */
	int accepted;
	int client_chunks;   /* reads from clients that were forwarded */
	int swallowed;       /* reads dropped by silent connections */
	int resets;
};

struct fp_write {
	uv_write_t w;
	char data[];
};

static void fp_on_write(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static inline void fp_send(uv_tcp_t *to, const char *data, size_t len)
{
	if (len == 0 || uv_is_closing((uv_handle_t *)to))
		return;
	struct fp_write *fw = xmalloc(sizeof(*fw) + len);
	memcpy(fw->data, data, len);
	uv_buf_t b = uv_buf_init(fw->data, (unsigned)len);
	if (uv_write(&fw->w, (uv_stream_t *)to, &b, 1, fp_on_write) != 0)
		free(fw);
}

static void fp_on_handle_closed(uv_handle_t *h)
{
	struct fp_conn *c = h->data;
	if (--c->open == 0) {
		buf_free(&c->to_upstream);
		buf_free(&c->held);
		free(c);
	}
}

static void fp_unlink(struct fp_conn *c)
{
	for (struct fp_conn **pp = &c->p->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			return;
		}
	}
}

/* Closes both sides; with reset, the client gets an RST instead of a FIN. */
static inline void fp_close(struct fp_conn *c, bool reset)
{
	if (c->closing)
		return;
	c->closing = true;
	fp_unlink(c);
	uv_timer_stop(&c->delay);
	uv_close((uv_handle_t *)&c->delay, fp_on_handle_closed);
	if (!reset || uv_tcp_close_reset(&c->client, fp_on_handle_closed) != 0)
		uv_close((uv_handle_t *)&c->client, fp_on_handle_closed);
	uv_close((uv_handle_t *)&c->upstream, fp_on_handle_closed);
}

static void fp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	b->base = xmalloc(suggested);
	b->len = suggested;
}

static void fp_on_reset_timer(uv_timer_t *t)
{
	fp_close(t->data, true);
}

/* Upstream bytes towards the client, honouring delay and reset. */
static void fp_answer(struct fp_conn *c, const char *data, size_t len)
{
	if (c->reset && c->answer_bytes + len > (size_t)c->reset_after) {
		size_t n = (size_t)c->reset_after - c->answer_bytes;
		fp_send(&c->client, data, n);
		c->answer_bytes += n;
		c->p->resets++;
		c->reset = false;
		c->silent = true; /* the rest is dropped */
		if (n == 0) {
			fp_close(c, true);
		} else {
			/* a moment for the client to read what it got: an RST
			 * makes the kernel drop unread bytes */
			uv_timer_start(&c->delay, fp_on_reset_timer, 50, 0);
		}
		return;
	}
	c->answer_bytes += len;
	fp_send(&c->client, data, len);
}

static void fp_on_delay(uv_timer_t *t)
{
	struct fp_conn *c = t->data;
	c->delaying = false;
	c->delay_ms = 0;
	struct buf held = c->held;
	memset(&c->held, 0, sizeof(c->held));
	if (!c->silent && held.len)
		fp_answer(c, held.data, held.len);
	buf_free(&held);
	if (c->upstream_eof && !c->silent)
		fp_close(c, false);
}

static void fp_on_upstream_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct fp_conn *c = st->data;
	if (n < 0) {
		free(b->base);
		/* a silent connection shows the client nothing, not even this */
		c->upstream_eof = true;
		if (!c->silent && !c->delaying)
			fp_close(c, false);
		return;
	}
	if (n > 0 && !c->silent && !c->closing) {
		if (c->delay_ms > 0 && !c->delaying && c->answer_bytes == 0 && !c->held.len) {
			c->delaying = true;
			uv_timer_start(&c->delay, fp_on_delay, (uint64_t)c->delay_ms, 0);
		}
		if (c->delaying)
			buf_append(&c->held, b->base, (size_t)n);
		else
			fp_answer(c, b->base, (size_t)n);
	}
	free(b->base);
}

static void fp_on_client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct fp_conn *c = st->data;
	if (n < 0) {
		free(b->base);
		fp_close(c, false);
		return;
	}
	if (n > 0) {
		if (c->silent) {
			c->p->swallowed++;
		} else {
			c->p->client_chunks++;
			if (c->upstream_ready)
				fp_send(&c->upstream, b->base, (size_t)n);
			else
				buf_append(&c->to_upstream, b->base, (size_t)n);
		}
	}
	free(b->base);
}

static void fp_on_upstream_connect(uv_connect_t *req, int status)
{
	struct fp_conn *c = req->data;
	free(req);
	if (c->closing)
		return;
	if (status < 0) {
		fp_close(c, false);
		return;
	}
	c->upstream_ready = true;
	if (!c->silent)
		fp_send(&c->upstream, c->to_upstream.data, c->to_upstream.len);
	buf_free(&c->to_upstream);
	uv_read_start((uv_stream_t *)&c->upstream, fp_alloc, fp_on_upstream_read);
}

static void fp_on_connection(uv_stream_t *st, int status)
{
	struct fproxy *p = st->data;
	if (status < 0)
		return;
	struct fp_conn *c = xcalloc(1, sizeof(*c));
	c->p = p;
	uv_tcp_init(p->loop, &c->client);
	uv_tcp_init(p->loop, &c->upstream);
	uv_timer_init(p->loop, &c->delay);
	c->client.data = c->upstream.data = c->delay.data = c;
	c->open = 3;
	c->next = p->conns;
	p->conns = c;
	if (uv_accept(st, (uv_stream_t *)&c->client) != 0) {
		fp_close(c, false);
		return;
	}
	p->accepted++;
	c->id = p->accepted;
	c->silent = p->blackhole;
	if (p->delay_conns > 0) {
		p->delay_conns--;
		c->delay_ms = p->delay_first_ms;
	}
	if (p->reset_conns > 0) {
		p->reset_conns--;
		c->reset = true;
		c->reset_after = p->reset_after;
	}
	uv_read_start((uv_stream_t *)&c->client, fp_alloc, fp_on_client_read);
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", p->upstream_port, &addr);
	uv_connect_t *req = xcalloc(1, sizeof(*req));
	req->data = c;
	if (uv_tcp_connect(req, &c->upstream, (const struct sockaddr *)&addr,
			   fp_on_upstream_connect) != 0) {
		free(req);
		fp_close(c, false);
	}
}

/* Listens on 127.0.0.1 (a free port, in p->port) towards upstream_port.
 * Returns 0 or -1. */
static inline int fproxy_start(uv_loop_t *loop, struct fproxy *p, int upstream_port)
{
	memset(p, 0, sizeof(*p));
	p->loop = loop;
	p->upstream_port = upstream_port;
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", 0, &addr);
	uv_tcp_init(loop, &p->tcp);
	p->tcp.data = p;
	if (uv_tcp_bind(&p->tcp, (const struct sockaddr *)&addr, 0) != 0 ||
	    uv_listen((uv_stream_t *)&p->tcp, 128, fp_on_connection) != 0)
		return -1;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uv_tcp_getsockname(&p->tcp, (struct sockaddr *)&ss, &len);
	p->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

/* Every open connection goes silent (see above). Returns how many. */
static inline int fproxy_silence_all(struct fproxy *p)
{
	int n = 0;
	for (struct fp_conn *c = p->conns; c; c = c->next) {
		if (!c->silent) {
			c->silent = true;
			n++;
		}
	}
	return n;
}

/* Closes connection id (FIN both ways, or an RST to the client). Returns 0,
 * or -1 if it is not open. */
static inline int fproxy_close_id(struct fproxy *p, int id, bool reset)
{
	for (struct fp_conn *c = p->conns; c; c = c->next) {
		if (c->id == id) {
			fp_close(c, reset);
			return 0;
		}
	}
	return -1;
}

/* Open connections (silent ones included). */
static inline int fproxy_open(const struct fproxy *p)
{
	int n = 0;
	for (const struct fp_conn *c = p->conns; c; c = c->next)
		n++;
	return n;
}

/* Closes everything; the loop then runs the close callbacks. */
static inline void fproxy_stop(struct fproxy *p)
{
	while (p->conns)
		fp_close(p->conns, false);
	uv_close((uv_handle_t *)&p->tcp, NULL);
}

#endif
