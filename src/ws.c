#include "ws.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "http.h"
#include "log.h"
#include "util.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define CLOSE_WAIT_MS 5000
#define SHUTDOWN_CLOSE_WAIT_MS 1000

struct ws {
	struct http_upgraded *up;
	wslay_event_context_ptr ctx;
	uv_timer_t timer;
	struct ws_opts opts;
	struct ws_cbs cbs;
	void *data;
	struct buf in;   /* received, not yet given to wslay */
	size_t in_off;
	struct buf out;  /* produced by wslay, not yet written */
	size_t queued;   /* bytes of messages queued in wslay */
	uint64_t last_rx_ms;
	bool ping_outstanding;
	bool closing;    /* close frame queued or connection going */
	bool gone;       /* the connection is closed */
	bool in_proceed;
	/* a frame-level protocol error: wslay queues a close without a status
	 * code for those, which on_wslay_send turns into a 1002 */
	bool proto_error;
	uint64_t close_started_ms;
	uint64_t close_wait_ms; /* how long the peer gets to answer our close */
};

/* ---- handshake ---- */

static bool header_has_token(const char *value, const char *token)
{
	size_t n = strlen(token);
	const char *p = value;
	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *end = p;
		while (*end && *end != ',')
			end++;
		const char *e = end;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == n && strncasecmp(p, token, n) == 0)
			return true;
		p = end;
	}
	return false;
}

char *ws_origin_of(const char *url)
{
	const char *sep = strstr(url, "://");
	if (!sep)
		return NULL;
	const char *host = sep + 3;
	size_t n = strcspn(host, "/?#");
	if (n == 0)
		return NULL;
	char *o = xstrndup(url, (size_t)(host - url) + n);
	for (char *s = o; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	return o;
}

int ws_handshake_check(const struct http_req *req, const char *allowed_origin, char accept[32],
		       const char **detail)
{
	const char *upgrade = http_req_header(req, "upgrade");
	const char *connection = http_req_header(req, "connection");
	const char *version = http_req_header(req, "sec-websocket-version");
	const char *key = http_req_header(req, "sec-websocket-key");
	const char *origin = http_req_header(req, "origin");
	if (strcmp(req->method, "GET") != 0 || req->http_minor < 1) {
		*detail = "a WebSocket handshake is a GET over HTTP/1.1";
		return 400;
	}
	if (!upgrade || !header_has_token(upgrade, "websocket") || !connection ||
	    !header_has_token(connection, "upgrade")) {
		*detail = "this endpoint speaks WebSocket: send Upgrade: websocket";
		return 426;
	}
	if (!version || strcmp(version, "13") != 0) {
		*detail = "unsupported Sec-WebSocket-Version, expected 13";
		return 426;
	}
	unsigned char raw[32];
	if (!key || strlen(key) != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 ||
	    key[22] != '=' || key[23] != '=') {
		*detail = "invalid Sec-WebSocket-Key, expected 16 bytes in base64";
		return 400;
	}
	if (origin && allowed_origin) {
		char *want = ws_origin_of(allowed_origin);
		bool ok = want && strcasecmp(origin, want) == 0;
		free(want);
		if (!ok) {
			*detail = "cross-origin WebSocket refused: Origin does not match base_url";
			return 403;
		}
	}
	unsigned char digest[SHA_DIGEST_LENGTH];
	char cat[64];
	snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)cat, strlen(cat), digest);
	EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
	*detail = NULL;
	return 0;
}

/* ---- the wslay glue ---- */

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
			     void *user)
{
	UNUSED(flags);
	struct ws *ws = user;
	size_t avail = ws->in.len - ws->in_off;
	if (avail == 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	size_t n = avail < len ? avail : len;
	memcpy(buf, ws->in.data + ws->in_off, n);
	ws->in_off += n;
	return (ssize_t)n;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
			     void *user)
{
	UNUSED(ctx);
	UNUSED(flags);
	struct ws *ws = user;
	if (ws->proto_error && len == 2 && data[0] == 0x88 && data[1] == 0x00) {
		/* RFC 6455 7.4.1: a protocol error closes with 1002 */
		static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
		buf_append(&ws->out, close_1002, sizeof close_1002);
		ws->proto_error = false;
		return (ssize_t)len;
	}
	buf_append(&ws->out, data, len);
	return (ssize_t)len;
}

/* From here on, only the close handshake remains, within CLOSE_WAIT_MS. */
static void mark_closing(struct ws *ws)
{
	if (!ws->closing) {
		ws->closing = true;
		ws->close_started_ms = now_ms();
	}
}

static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
			 void *user)
{
	UNUSED(ctx);
	struct ws *ws = user;
	ws->ping_outstanding = false;
	if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
		if (!ws->closing && ws->cbs.on_message)
			ws->cbs.on_message(ws, (const char *)arg->msg, arg->msg_length,
					   arg->opcode == WSLAY_TEXT_FRAME, ws->data);
	} else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
		/* a close body is empty or a code and a reason: one byte is a
		 * protocol error (RFC 6455 5.5.1), which wslay echoes as a
		 * close without a code */
		if (arg->msg_length == 1)
			ws->proto_error = true;
		mark_closing(ws);
	}
}

static void on_timer_closed(uv_handle_t *h)
{
	struct ws *ws = h->data;
	wslay_event_context_free(ws->ctx);
	buf_free(&ws->in);
	buf_free(&ws->out);
	free(ws);
}

static void on_up_close(void *data)
{
	struct ws *ws = data;
	ws->gone = true;
	ws->up = NULL;
	if (ws->cbs.on_close)
		ws->cbs.on_close(ws, ws->data);
	uv_close((uv_handle_t *)&ws->timer, on_timer_closed);
}

/* Alternates wslay's receive and send until neither progresses, then
 * issues one write; closes the connection when the protocol is done. */
static void proceed(struct ws *ws)
{
	if (ws->gone || ws->in_proceed)
		return;
	ws->in_proceed = true;
	for (;;) {
		bool progressed = false;
		if (wslay_event_want_read(ws->ctx) && ws->in_off < ws->in.len) {
			size_t before = ws->in_off;
			int rc = wslay_event_recv(ws->ctx);
			if (rc != 0) {
				/* our receive callback never fails: this is a
				 * frame-level protocol error (a control frame too
				 * long or fragmented, a length not in its shortest
				 * form), for which wslay queued a close without a
				 * code */
				if (rc == WSLAY_ERR_CALLBACK_FAILURE)
					ws->proto_error = true;
				mark_closing(ws);
			}
			progressed = ws->in_off != before;
		}
		if (wslay_event_want_write(ws->ctx)) {
			size_t before = ws->out.len;
			if (wslay_event_send(ws->ctx) != 0)
				mark_closing(ws);
			progressed = progressed || ws->out.len != before;
		}
		if (!progressed)
			break;
	}
	if (ws->in_off == ws->in.len) {
		buf_reset(&ws->in);
		ws->in_off = 0;
	}
	ws->queued = wslay_event_get_queued_msg_length(ws->ctx);
	ws->in_proceed = false;
	if (ws->out.len && ws->up) {
		http_upgraded_write(ws->up, ws->out.data, ws->out.len);
		buf_reset(&ws->out);
	}
	if (ws->up && !wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx)) {
		/* both sides are done (close sent and received, or an error) */
		http_upgraded_close(ws->up);
	}
}

static void on_up_data(void *data, const char *bytes, size_t len)
{
	struct ws *ws = data;
	ws->last_rx_ms = now_ms();
	ws->ping_outstanding = false;
	buf_append(&ws->in, bytes, len);
	proceed(ws);
}

static void on_up_drain(void *data)
{
	struct ws *ws = data;
	if (!ws->gone && !ws->closing && ws->cbs.on_drain)
		ws->cbs.on_drain(ws, ws->data);
}

static void on_tick(uv_timer_t *t);

static void on_up_shutdown(void *data)
{
	struct ws *ws = data;
	/* the process is leaving: the peer's answer is not worth a long wait */
	ws->close_wait_ms = SHUTDOWN_CLOSE_WAIT_MS;
	uv_timer_start(&ws->timer, on_tick, 100, 100);
	ws_close(ws, WSLAY_CODE_GOING_AWAY, "server shutting down");
}

static void on_tick(uv_timer_t *t)
{
	struct ws *ws = t->data;
	if (ws->gone || !ws->up)
		return;
	uint64_t now = now_ms();
	if (ws->closing) {
		if (ws->close_started_ms && now - ws->close_started_ms > ws->close_wait_ms)
			http_upgraded_abort(ws->up);
		return;
	}
	if (ws->ping_outstanding && now - ws->last_rx_ms > ws->opts.pong_timeout_ms) {
		log_info("ws: no answer to ping for %llums, closing",
			 (unsigned long long)(now - ws->last_rx_ms));
		ws_close(ws, WSLAY_CODE_POLICY_VIOLATION, "ping timeout");
		return;
	}
	if (now - ws->last_rx_ms >= ws->opts.ping_ms && !ws->ping_outstanding) {
		struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"", 0};
		wslay_event_queue_msg(ws->ctx, &m);
		ws->ping_outstanding = true;
		proceed(ws);
	}
}

struct ws *ws_accept(struct http_req *req, uv_loop_t *loop, const char accept[32],
		     const struct ws_opts *opts, const struct ws_cbs *cbs, void *data)
{
	struct ws *ws = xcalloc(1, sizeof *ws);
	ws->opts = *opts;
	if (!ws->opts.max_message)
		ws->opts.max_message = 64 * 1024;
	if (!ws->opts.ping_ms)
		ws->opts.ping_ms = 30000;
	if (!ws->opts.pong_timeout_ms)
		ws->opts.pong_timeout_ms = 2 * ws->opts.ping_ms;
	ws->cbs = *cbs;
	ws->data = data;
	ws->last_rx_ms = now_ms();
	ws->close_wait_ms = CLOSE_WAIT_MS;
	static const struct wslay_event_callbacks wcbs = {
		.recv_callback = on_wslay_recv,
		.send_callback = on_wslay_send,
		.on_msg_recv_callback = on_wslay_msg,
	};
	wslay_event_context_server_init(&ws->ctx, &wcbs, ws);
	wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->opts.max_message);
	uv_timer_init(loop, &ws->timer);
	ws->timer.data = ws;
	uint64_t tick = ws->opts.ping_ms < 1000 ? ws->opts.ping_ms : 1000;
	uv_timer_start(&ws->timer, on_tick, tick, tick);

	char head[256];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			 accept);
	static const struct http_upgrade_cbs ucbs = {
		.on_data = on_up_data,
		.on_close = on_up_close,
		.on_shutdown = on_up_shutdown,
		.on_drain = on_up_drain,
	};
	ws->up = http_upgrade(req, head, (size_t)n, &ucbs, ws);
	return ws;
}

int ws_send_text(struct ws *ws, const char *msg, size_t len)
{
	if (ws->gone || ws->closing)
		return -EPIPE;
	struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, len};
	if (wslay_event_queue_msg(ws->ctx, &m) != 0)
		return -EPIPE;
	proceed(ws);
	return 0;
}

struct http_bytes *ws_text_frame(const char *msg, size_t len)
{
	uint8_t head[10];
	size_t hl;
	head[0] = 0x81; /* FIN, text */
	if (len < 126) {
		head[1] = (uint8_t)len;
		hl = 2;
	} else if (len <= 0xffff) {
		head[1] = 126;
		head[2] = (uint8_t)(len >> 8);
		head[3] = (uint8_t)len;
		hl = 4;
	} else {
		head[1] = 127;
		for (int i = 0; i < 8; i++)
			head[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		hl = 10;
	}
	struct http_bytes *b = http_bytes_new(NULL, hl + len);
	memcpy(b->data, head, hl);
	memcpy(b->data + hl, msg, len);
	return b;
}

int ws_send_frame(struct ws *ws, struct http_bytes *frame)
{
	if (ws->gone || ws->closing || !ws->up)
		return -EPIPE;
	if (ws->in_proceed || ws->out.len) {
		/* behind what wslay is producing: keep the order */
		buf_append(&ws->out, frame->data, frame->len);
		if (!ws->in_proceed)
			proceed(ws);
		return 0;
	}
	return http_upgraded_write_bytes(ws->up, frame);
}

size_t ws_pending(const struct ws *ws)
{
	return ws->queued + ws->out.len + (ws->up ? http_upgraded_pending(ws->up) : 0);
}

void ws_close(struct ws *ws, uint16_t code, const char *reason)
{
	if (ws->gone || ws->closing)
		return;
	mark_closing(ws);
	size_t rl = reason ? strlen(reason) : 0;
	if (rl > 123)
		rl = 123;
	wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rl);
	proceed(ws);
}
