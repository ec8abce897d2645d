#include "streams.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "config.h"
#include "http.h"
#include "hub.h"
#include "metrics.h"
#include "router.h"
#include "util.h"
#include "ws.h"

#define SSE_KEEPALIVE_MS 15000
#define WS_MAX_MESSAGE 4096

/* The hub_msg slots of this file's encodings. */
enum { SLOT_SSE, SLOT_WS };

static void unref_bytes(void *b)
{
	http_bytes_unref(b);
}

/* The event's bytes in slot, encoded by make on first use. */
static struct http_bytes *encoded(struct hub_msg *m, int slot,
				  struct http_bytes *(*make)(const char *json, size_t len))
{
	if (!m->slot[slot]) {
		m->slot[slot] = make(m->json, m->len);
		m->slot_free[slot] = unref_bytes;
	}
	return m->slot[slot];
}

/* "data: JSON\n\n" as one chunk. */
static struct http_bytes *sse_chunk(const char *json, size_t len)
{
	struct buf b = {0};
	buf_append_str(&b, "data: ");
	buf_append(&b, json, len);
	buf_append_str(&b, "\n\n");
	struct http_bytes *c = http_chunk_bytes(b.data, b.len);
	buf_free(&b);
	return c;
}

/* ?batch= of a stream request: 0 (or absent or empty, as the filters: the
 * default stream, one event per message) or 1 (hub_subscribe_batched:
 * arrays, then {"event":"synced"}). On false the request got a 400. */
static bool parse_batch(struct http_req *req, bool *batched)
{
	bool bad = false;
	char *v = http_req_query(req, "batch", &bad);
	bool ok = !bad && (!v || !*v || !strcmp(v, "0") || !strcmp(v, "1"));
	*batched = ok && v && !strcmp(v, "1");
	if (!ok)
		http_respond_error(req, 400, "batch must be 0 or 1, got \"%.40s\"", v ? v : "");
	free(v);
	return ok;
}

static struct hub_sub *subscribe(struct app *app, const struct index_filter *f, bool batched,
				 const struct hub_sink *sink, void *conn)
{
	return batched ? hub_subscribe_batched(app->hub, f, sink, conn)
		       : hub_subscribe(app->hub, f, sink, conn);
}

/* ---- streams: Server-Sent Events ---- */

struct sse {
	struct http_req *req;
	struct hub_sub *sub;
	uv_timer_t keepalive;
	bool ended;
};

static int sse_send(void *conn, struct hub_msg *m)
{
	struct sse *s = conn;
	if (s->ended)
		return -EPIPE;
	return http_stream_write_chunk(s->req, encoded(m, SLOT_SSE, sse_chunk));
}

static size_t sse_pending(void *conn)
{
	struct sse *s = conn;
	return s->ended ? 0 : http_stream_pending(s->req);
}

static void on_sse_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Ends the subscription; the stream too unless the connection is gone. */
static void sse_finish(struct sse *s, bool end_stream)
{
	if (s->ended)
		return;
	s->ended = true;
	hub_unsubscribe(s->sub);
	metrics_stream_subscribers("sse", -1);
	s->req->on_abort = NULL;
	s->req->on_shutdown = NULL;
	s->req->on_drain = NULL;
	if (end_stream)
		http_stream_end(s->req);
	uv_close((uv_handle_t *)&s->keepalive, on_sse_timer_closed);
}

static void sse_kick(void *conn, const char *reason)
{
	UNUSED(reason);
	sse_finish(conn, true);
}

static void on_sse_abort(struct http_req *req, void *data)
{
	UNUSED(req);
	sse_finish(data, false);
}

static void on_sse_shutdown(struct http_req *req, void *data)
{
	UNUSED(req);
	sse_finish(data, true);
}

static void on_sse_drain(struct http_req *req, void *data)
{
	UNUSED(req);
	struct sse *s = data;
	if (!s->ended && s->sub)
		hub_flush(s->sub);
}

static void on_sse_keepalive(uv_timer_t *t)
{
	struct sse *s = t->data;
	if (!s->ended)
		http_stream_write(s->req, ": keepalive\n\n", 13);
}

static const struct hub_sink sse_sink = {sse_send, sse_pending, sse_kick};

static void on_build_events(struct http_req *req, void *data)
{
	struct app *app = data;
	struct api_filter q;
	bool batched;
	if (!api_require_ready(req, app) || !parse_batch(req, &batched) ||
	    !api_parse_filter(req, &q, false, true))
		return;
	struct sse *s = xcalloc(1, sizeof *s);
	s->req = req;
	http_add_header(req, "X-Accel-Buffering", "no");
	http_stream_begin(req, 200, "text/event-stream");
	req->on_abort = on_sse_abort;
	req->on_shutdown = on_sse_shutdown;
	req->on_drain = on_sse_drain;
	req->abort_data = s;
	uv_timer_init(app->loop, &s->keepalive);
	s->keepalive.data = s;
	uv_timer_start(&s->keepalive, on_sse_keepalive, SSE_KEEPALIVE_MS, SSE_KEEPALIVE_MS);
	s->sub = subscribe(app, &q.f, batched, &sse_sink, s);
	metrics_stream_subscribers("sse", 1);
	api_filter_free(&q);
}

/* ---- streams: WebSocket ---- */

struct wsconn {
	struct ws *ws;
	struct hub_sub *sub;
};

static int wsc_send(void *conn, struct hub_msg *m)
{
	struct wsconn *w = conn;
	return ws_send_frame(w->ws, encoded(m, SLOT_WS, ws_text_frame));
}

static size_t wsc_pending(void *conn)
{
	struct wsconn *w = conn;
	return ws_pending(w->ws);
}

static void wsc_kick(void *conn, const char *reason)
{
	struct wsconn *w = conn;
	ws_close(w->ws, 1008, reason);
}

static const struct hub_sink ws_sink = {wsc_send, wsc_pending, wsc_kick};

static void on_ws_message(struct ws *ws, const char *msg, size_t len, bool text, void *data)
{
	UNUSED(ws);
	UNUSED(msg);
	UNUSED(len);
	UNUSED(text);
	UNUSED(data);
	/* the stream is one-way: what clients send is ignored */
}

static void on_ws_drain(struct ws *ws, void *data)
{
	UNUSED(ws);
	struct wsconn *w = data;
	if (w->sub)
		hub_flush(w->sub);
}

static void on_ws_close(struct ws *ws, void *data)
{
	UNUSED(ws);
	struct wsconn *w = data;
	if (w->sub) {
		hub_unsubscribe(w->sub);
		metrics_stream_subscribers("websocket", -1);
	}
	free(w);
}

static void on_ws(struct http_req *req, void *data)
{
	struct app *app = data;
	char accept[32];
	const char *detail = NULL;
	int st = ws_handshake_check(req, app->cfg->server.base_url, accept, &detail);
	if (st) {
		if (st == 426)
			http_add_header(req, "Upgrade", "websocket");
		http_respond_error(req, st, "%s", detail);
		return;
	}
	struct api_filter q;
	bool batched;
	if (!api_require_ready(req, app) || !parse_batch(req, &batched) ||
	    !api_parse_filter(req, &q, false, true))
		return;
	struct wsconn *w = xcalloc(1, sizeof *w);
	struct ws_opts wo = {.max_message = WS_MAX_MESSAGE};
	struct ws_cbs cbs = {.on_message = on_ws_message, .on_close = on_ws_close,
			     .on_drain = on_ws_drain};
	w->ws = ws_accept(req, app->loop, accept, &wo, &cbs, w);
	w->sub = subscribe(app, &q.f, batched, &ws_sink, w);
	metrics_stream_subscribers("websocket", 1);
	api_filter_free(&q);
}

void streams_register(struct router *r, struct app *app)
{
	router_add(r, "GET", "/api/v1/build-events", on_build_events, app, 0);
	router_add(r, "GET", "/api/v1/ws", on_ws, app, 0);
}
