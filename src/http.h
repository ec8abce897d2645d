/* The HTTP/1.1 server: libuv TCP, llhttp in strict mode, bounded buffers,
 * deadlines, keep-alive and pipelining (one request at a time per connection,
 * answered in order). It knows nothing of builds: requests go to a router
 * (router.h) whose handlers answer through the http_respond* functions. */
#ifndef RUNBOAT_HTTP_H
#define RUNBOAT_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

struct router;
struct route_match;

struct http_limits {
	unsigned max_connections;
	/* connections from one client address (IPv4 address, IPv6 /64);
	 * beyond: 503 and close; 0: no per-client cap */
	unsigned max_connections_per_client;
	size_t max_header_bytes;       /* whole header section; beyond: 431 */
	size_t max_request_line_bytes; /* request target; beyond: 414 */
	size_t max_body_bytes;         /* default body limit; beyond: 413 */
	/* request body bytes buffered across all connections; a request that
	 * would go beyond gets 503 and a close, from its Content-Length before
	 * any body byte is read when it has one; 0: no cap */
	size_t max_buffered_body_bytes;
	/* response bytes queued for one client beyond which the connection is
	 * not read (no request parsed, no WebSocket frame read) until half of
	 * it has drained; one response is always queued whole */
	size_t max_output_pending;
	/* end of headers: from the first byte of a request, and for the first
	 * request of a connection from its accept (a silent socket is closed) */
	uint64_t header_timeout_ms;
	uint64_t body_timeout_ms;      /* end of headers to end of body */
	uint64_t keepalive_timeout_ms; /* idle between requests */
	uint64_t shutdown_timeout_ms;  /* in-flight responses get this long at exit */
	/* the kernel send buffer of long streams (SSE, WebSocket): bounded, so
	 * that a client that stops reading costs little kernel memory and its
	 * backlog shows in userspace, where it is conflated; 0: the kernel's
	 * autotuning (up to megabytes per connection) */
	int stream_send_buffer;
};

/* The defaults documented in runboat.toml.sample. */
void http_limits_default(struct http_limits *lim);

struct http_header {
	char *name; /* lowercased */
	char *value;
};

/* A parsed request. Owned by the connection; valid until the response is
 * finished or the abort callback has run. */
struct http_req {
	struct http_conn *conn;
	const char *method; /* static string ("GET", ...) */
	char *target;       /* raw request target */
	char *path;         /* path as sent (not decoded), without the query */
	char *query;        /* raw query string (after '?'), or NULL */
	struct http_header *headers;
	size_t n_headers;
	struct buf body;
	unsigned http_major, http_minor;
	bool keep_alive;
	bool upgrade;
	bool head; /* HEAD: answer as GET without a body */
	const struct route_match *match;
	uint64_t start_ms;
	/* Set by a handler that answers later: called if the connection goes
	 * away first; after it, the request must not be touched. */
	void (*on_abort)(struct http_req *req, void *data);
	void *abort_data;
	/* Set by a handler that answers later: called when the server shuts
	 * down, so that long streams can end themselves. */
	void (*on_shutdown)(struct http_req *req, void *data);
	/* Set by a streaming handler: called (with abort_data) each time the
	 * socket has taken everything queued so far, so that a backlog is
	 * sent as fast as the client reads, not on a timer. What it queues
	 * goes out in one write. */
	void (*on_drain)(struct http_req *req, void *data);
};

struct http_server;

/* Creates a server on loop that dispatches to router (borrowed; must outlive
 * the server). */
struct http_server *http_server_new(uv_loop_t *loop, const struct http_limits *lim,
				    struct router *router);
/* Binds and listens on "host:port", "[v6]:port" or ":port". Returns 0 or a
 * UV_* error; the bound port is then in http_server_port(). */
int http_server_listen(struct http_server *srv, const char *listen);
int http_server_port(const struct http_server *srv);
/* Stops accepting, closes idle connections and lets in-flight responses
 * finish within shutdown_timeout_ms; then closes the rest. on_done runs once
 * every connection is closed. */
void http_server_shutdown(struct http_server *srv, void (*on_done)(void *data), void *data);
/* Frees a server whose shutdown has completed. */
void http_server_free(struct http_server *srv);
unsigned http_server_connections(const struct http_server *srv);
/* Request body bytes buffered (charged to max_buffered_body_bytes) now. */
size_t http_server_buffered_body(const struct http_server *srv);

/* Request accessors. */
/* Value of a header (name in lowercase), or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);
/* The client's address key (its IPv4 address, or its IPv6 /64: as for
 * max_connections_per_client); "" when unknown. Borrowed from the request. */
const char *http_req_peer(const struct http_req *req);
/* Percent-decoded value of a query parameter, fresh string owned by the
 * caller; NULL when absent. Sets *bad when the parameter is malformed. */
char *http_req_query(const struct http_req *req, const char *name, bool *bad);

/* Responding. Exactly one of http_respond / http_respond_json /
 * http_respond_error / http_redirect / http_stream_begin per request. */

/* Adds a header to the pending response (copied). */
void http_add_header(struct http_req *req, const char *name, const char *value);
/* Answers with body (copied). */
void http_respond(struct http_req *req, int status, const char *content_type, const void *body,
		  size_t len);
/* Answers with a static body that outlives the server (not copied). */
void http_respond_static(struct http_req *req, int status, const char *content_type,
			 const void *body, size_t len);
/* Answers with body (copied), gzipped when it is 1 KiB or more and the
 * client's Accept-Encoding takes gzip (Vary: Accept-Encoding then). For
 * dynamic bodies only: a static asset with an ETag must not vary. */
void http_respond_compressible(struct http_req *req, int status, const char *content_type,
			       const void *body, size_t len);
/* Answers with value serialized as JSON (http_respond_compressible); steals
 * the reference. */
void http_respond_json(struct http_req *req, int status, json_t *value);
/* Answers {"detail": "..."} with status. The detail may hold client input:
 * it is cut at 1 KiB on a character boundary and invalid UTF-8 becomes
 * U+FFFD, so the body is always valid JSON. */
void http_respond_error(struct http_req *req, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void http_redirect(struct http_req *req, int status, const char *location);

/* Bytes shared by several writes (one event sent to many subscribers):
 * reference-counted, not to be changed once handed to a write. */
struct http_bytes {
	size_t refs;
	size_t len;
	char data[];
};

/* A new buffer of len bytes with one reference, holding a copy of data
 * (data NULL: uninitialized, to be filled by the caller). */
struct http_bytes *http_bytes_new(const void *data, size_t len);
struct http_bytes *http_bytes_ref(struct http_bytes *b);
/* Drops a reference; the last one frees. NULL is fine. */
void http_bytes_unref(struct http_bytes *b);

/* Streaming responses (SSE, logs): sends the status line and headers with
 * chunked encoding (or close-delimited for HTTP/1.0). */
void http_stream_begin(struct http_req *req, int status, const char *content_type);
/* Queues data; returns 0, or -EPIPE if the client is gone. */
int http_stream_write(struct http_req *req, const void *data, size_t len);
/* data framed as one chunk of a chunked stream (owned by the caller):
 * encode once, then http_stream_write_chunk it on many streams. */
struct http_bytes *http_chunk_bytes(const void *data, size_t len);
/* Queues a chunk made by http_chunk_bytes, shared (a reference is taken,
 * the bytes are not copied); on an HTTP/1.0 stream its payload only.
 * Returns 0, or -EPIPE if the client is gone. */
int http_stream_write_chunk(struct http_req *req, struct http_bytes *chunk);
/* Bytes queued for the client but not yet written (backpressure). */
size_t http_stream_pending(const struct http_req *req);
/* Ends the stream; the request is finished. */
void http_stream_end(struct http_req *req);

/* Upgraded connections (WebSocket): after http_upgrade, the connection's
 * bytes go to on_data and writes are raw. */
struct http_upgrade_cbs {
	/* Bytes from the client, borrowed for the call. */
	void (*on_data)(void *data, const char *bytes, size_t len);
	/* The connection is gone (peer closed, error, shutdown deadline, or
	 * after http_upgraded_close); the handle must not be used any more. */
	void (*on_close)(void *data);
	/* The server is shutting down: say goodbye and http_upgraded_close. */
	void (*on_shutdown)(void *data);
	/* Optional: the socket has taken everything queued so far (see
	 * http_req.on_drain). */
	void (*on_drain)(void *data);
};

struct http_upgraded;

/* Takes over req's connection: head (the 101 response, copied) is written,
 * the request is finished, and every later byte, starting with those the
 * client sent right after the request, goes to cbs (copied) with data.
 * on_data is first called after the handler has returned. */
struct http_upgraded *http_upgrade(struct http_req *req, const char *head, size_t head_len,
				   const struct http_upgrade_cbs *cbs, void *data);
/* Queues raw bytes (copied). Returns 0 or -EPIPE when the connection is
 * closing. */
int http_upgraded_write(struct http_upgraded *u, const void *bytes, size_t len);
/* Queues b shared (a reference is taken, the bytes are not copied).
 * Returns 0 or -EPIPE when the connection is closing. */
int http_upgraded_write_bytes(struct http_upgraded *u, struct http_bytes *b);
/* Bytes queued and not yet written. */
size_t http_upgraded_pending(const struct http_upgraded *u);
/* Stops or resumes reading from the client (backpressure). */
void http_upgraded_pause(struct http_upgraded *u, bool paused);
/* Sends what is queued, then closes; on_close follows. */
void http_upgraded_close(struct http_upgraded *u);
/* Closes at once, dropping what is queued; on_close follows. */
void http_upgraded_abort(struct http_upgraded *u);

/* The reason phrase of a status code. */
const char *http_status_text(int status);

/* Feeds raw bytes to a connection that is not attached to a socket, for the
 * fuzzer: parses, routes and answers into a discarded sink. */
struct http_conn *http_conn_new_detached(struct http_server *srv);
void http_conn_feed(struct http_conn *conn, const char *data, size_t len);
void http_conn_free_detached(struct http_conn *conn);

#endif
