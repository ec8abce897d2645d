/* libFuzzer target: the WebSocket frame path. A fixed, valid handshake opens
 * a WebSocket on a detached HTTP connection (the real http and ws modules,
 * no socket), then the input is fed to it as client frames, in reads of a
 * size the first byte picks. Text messages are echoed back (the send path),
 * "close" starts the close handshake. Checked: no crash, leak or undefined
 * behaviour; every message handed to on_message is at most max_message
 * bytes, and valid UTF-8 when it is text (RFC 6455 8.1: invalid UTF-8
 * fails the connection); on_close comes exactly once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "http.h"
#include "log.h"
#include "router.h"
#include "ws.h"

#define MAX_MESSAGE 256

static const char HANDSHAKE[] = "GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
				"Connection: Upgrade\r\n"
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				"Sec-WebSocket-Version: 13\r\n\r\n";

static uv_loop_t loop;
static struct http_server *srv;
static int accepted, closed;

static void on_message(struct ws *ws, const char *msg, size_t len, bool text, void *data)
{
	(void)data;
	if (len > MAX_MESSAGE)
		abort(); /* ws.h: larger messages close with 1009 */
	if (text && len) { /* (an empty message may come as NULL) */
		json_t *utf8 = json_stringn(msg, len); /* NULL: not UTF-8 */
		if (!utf8)
			abort();
		json_decref(utf8);
	}
	if (text && len == 5 && memcmp(msg, "close", 5) == 0)
		ws_close(ws, 1000, "bye");
	else if (text)
		ws_send_text(ws, msg, len);
}

static void on_close(struct ws *ws, void *data)
{
	(void)ws;
	(void)data;
	closed++;
}

static void on_ws(struct http_req *req, void *data)
{
	(void)data;
	char accept[32];
	const char *detail;
	if (ws_handshake_check(req, NULL, accept, &detail) != 0)
		abort(); /* the handshake is fixed and valid */
	struct ws_opts wo = {.max_message = MAX_MESSAGE};
	struct ws_cbs cbs = {.on_message = on_message, .on_close = on_close};
	ws_accept(req, &loop, accept, &wo, &cbs, NULL);
	accepted++;
}

static void setup(void)
{
	uv_loop_init(&loop);
	log_set_level(LOG_OFF);
	struct router *r = router_new();
	router_add(r, "GET", "/ws", on_ws, NULL, 0);
	struct http_limits lim;
	http_limits_default(&lim);
	srv = http_server_new(&loop, &lim, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!srv)
		setup();
	if (size == 0)
		return 0;
	size_t step = (size_t)(data[0] % 32) + 1;
	bool with_handshake = data[0] & 0x80; /* frames in the handshake's read */
	data++;
	size--;
	accepted = closed = 0;
	struct http_conn *c = http_conn_new_detached(srv);
	size_t off = 0;
	if (with_handshake) {
		size_t n = size < step ? size : step;
		char *first = malloc(sizeof HANDSHAKE - 1 + n);
		memcpy(first, HANDSHAKE, sizeof HANDSHAKE - 1);
		memcpy(first + sizeof HANDSHAKE - 1, data, n);
		http_conn_feed(c, first, sizeof HANDSHAKE - 1 + n);
		free(first);
		off = n;
	} else {
		http_conn_feed(c, HANDSHAKE, sizeof HANDSHAKE - 1);
	}
	if (accepted != 1)
		abort();
	for (; off < size; off += step) {
		size_t n = size - off < step ? size - off : step;
		http_conn_feed(c, (const char *)data + off, n);
	}
	http_conn_free_detached(c);
	uv_run(&loop, UV_RUN_NOWAIT); /* the ws timer's close callback frees it */
	if (closed != 1)
		abort();
	return 0;
}
