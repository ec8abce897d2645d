/* WebSocket (RFC 6455) server connections with wslay, on connections the
 * HTTP server hands over (http_upgrade). Text messages in and out, ping
 * keepalive, a maximum message size, close codes. */
#ifndef RUNBOAT_WS_H
#define RUNBOAT_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_req;
struct ws;

struct ws_opts {
	size_t max_message;    /* larger incoming messages close with 1009; 0: 64 KiB */
	uint64_t ping_ms;      /* keepalive ping interval; 0: 30000 */
	uint64_t pong_timeout_ms; /* no frame at all for this long after a ping closes; 0: 2 * ping_ms */
};

struct ws_cbs {
	/* A complete text or binary message, borrowed for the call. */
	void (*on_message)(struct ws *ws, const char *msg, size_t len, bool text, void *data);
	/* The connection is gone; ws is freed right after this returns. */
	void (*on_close)(struct ws *ws, void *data);
	/* Optional: the socket has taken everything queued so far; what is
	 * sent from here goes out in one write. */
	void (*on_drain)(struct ws *ws, void *data);
};

/* Checks a WebSocket handshake request. allowed_origin is the scheme://host[:port]
 * a browser's Origin must equal (NULL: any). Returns 0 and fills accept with
 * the Sec-WebSocket-Accept value, or an HTTP status (400, 403, 426) with
 * *detail set to a static explanation. */
int ws_handshake_check(const struct http_req *req, const char *allowed_origin, char accept[32],
		       const char **detail);

/* Accepts the upgrade: answers 101 and takes the connection over. Call only
 * after ws_handshake_check succeeded. cbs and opts are copied; data is
 * borrowed. Returns the connection, owned by this module until on_close. */
struct ws *ws_accept(struct http_req *req, uv_loop_t *loop, const char accept[32],
		     const struct ws_opts *opts, const struct ws_cbs *cbs, void *data);

/* Queues a text message (copied). Returns 0, or -EPIPE when closing. */
int ws_send_text(struct ws *ws, const char *msg, size_t len);
/* An unmasked, unfragmented server text frame of msg, owned by the caller
 * (http_bytes_unref): encode a message once, ws_send_frame it to many
 * connections. */
struct http_bytes *ws_text_frame(const char *msg, size_t len);
/* Queues a frame made by ws_text_frame, shared (a reference is taken, the
 * bytes are not copied). Returns 0, or -EPIPE when closing. */
int ws_send_frame(struct ws *ws, struct http_bytes *frame);
/* Bytes accepted by ws_send_text that the client has not been sent yet. */
size_t ws_pending(const struct ws *ws);
/* Starts the close handshake with code and reason (at most 123 bytes);
 * on_close follows once it completes or times out. */
void ws_close(struct ws *ws, uint16_t code, const char *reason);

/* "scheme://host[:port]" of an absolute URL (for Origin checks); owned by
 * the caller, NULL if url is not absolute. */
char *ws_origin_of(const char *url);

#endif
