/* HTTP client requests on the libuv loop: the libcurl multi interface driven
 * by one uv_poll_t per socket and one uv_timer_t. Generic (no Kubernetes
 * knowledge): used by the kube client and the GitHub client.
 *
 * Connections. Buffered requests share keep-alive connections: HTTP/2
 * (multiplexed) when the server offers it, or with http1_only a bounded pool
 * of HTTP/1.1 connections, one request at a time each. Streamed requests
 * (on_data: watches, followed logs) run in a SEPARATE libcurl multi handle,
 * on connections of their own: libcurl 7.88 keeps one "can multiplex" flag
 * per host, and once an HTTP/2 connection has set it, a new request may be
 * attached to a busy HTTP/1.1 stream connection of the same host as if it
 * were multiplexed (ConnectionExists does not check that the candidate
 * multiplexes); the request then waits behind the stream until its timeout
 * ("0 bytes received") or reads the stream's bytes ("Received HTTP/0.9 when
 * not allowed"). Separate connection caches rule that out.
 *
 * Liveness. A connection idle longer than max_idle_s is never reused (the
 * default, 50 s, is below the 90 s after which Go servers, kube-apiserver
 * among them, close idle connections, and below common NAT/load-balancer
 * idle limits); a request may also bound the wait for its first response
 * byte (first_byte_timeout_ms), which catches a connection that went silent
 * (a middlebox dropped it: no FIN, no RST). With HTTP/1.1 the connection of a
 * request stopped that way is closed; with HTTP/2 it is shared and stays.
 *
 * Every started request invokes its done callback EXACTLY ONCE, never from
 * inside curl_uv_start, never from inside a libcurl callback. */
#ifndef RUNBOAT_CURL_UV_H
#define RUNBOAT_CURL_UV_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct curl_uv;
struct curl_uv_request;

/* TLS material for one request. PEM bytes are copied by libcurl. */
struct curl_uv_tls {
	const char *ca_pem;   /* NULL: system CAs */
	size_t ca_len;
	const char *cert_pem; /* client certificate or NULL */
	size_t cert_len;
	const char *key_pem;  /* client key or NULL */
	size_t key_len;
	bool insecure;        /* no peer/host verification */
};

/* The outcome of a request. Borrowed: valid during the done callback. */
struct curl_uv_response {
	/* 0 when a complete HTTP response was received (any status), otherwise a
	 * negative errno: -ECANCELED, -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH,
	 * -EMSGSIZE (body beyond max_response), -EPROTO (TLS/HTTP protocol),
	 * -ECONNABORTED (on_data asked to stop), -EIO (anything else). */
	int error;
	const char *error_message; /* "" on success; libcurl's detailed text */
	long status;               /* HTTP status, 0 if none */
	const char *body;          /* buffered body ("" if none, NUL-terminated) */
	size_t body_len;
	/* The request was handed to a connection (libcurl's pre-request step):
	 * the server may have received it, even when error != 0. False when it
	 * failed before that (connect, TLS handshake, queue, cancel). */
	bool request_sent;
	/* The status line of a response to this request arrived (bytes that
	 * are not one, e.g. "HTTP/0.9", do not count). */
	bool response_started;
	/* When error != 0: the CONNECTION failed (could not be made, broke, went
	 * silent past first_byte_timeout_ms, or spoke garbage: reset, nothing
	 * received, HTTP/2 framing, HTTP/0.9) rather than a limit or a
	 * decision of ours (overall timeout, size limit, cancel, TLS
	 * verification, bad URL). Repeating the request on another connection
	 * may succeed; whether that is SAFE depends on the request (see
	 * request_sent / response_started). */
	bool conn_failed;
	/* The first-byte deadline elapsed (error is then -ETIMEDOUT). */
	bool first_byte_timeout;
	/* The request went on a kept-alive connection idle for
	 * CURL_UV_STALE_IDLE_MS or more. */
	bool stale_connection;
	/* New connections this request opened (0: it reused one). */
	long new_connections;
};

/* Called once per request. req is valid during the call only: use
 * curl_uv_response_header(req, ...) here. */
typedef void (*curl_uv_done_cb)(struct curl_uv_request *req, const struct curl_uv_response *res,
				void *data);
/* Streaming mode: body bytes of a 2xx response (non-2xx bodies are buffered
 * for the done callback instead). Return false to abort the transfer
 * (done then runs with -ECONNABORTED, unless cancelled). */
typedef bool (*curl_uv_data_cb)(struct curl_uv_request *req, const char *bytes, size_t len,
				void *data);

struct curl_uv_request_opts {
	const char *method;              /* "GET" (default), "POST", "PATCH", ... */
	const char *url;
	const char *const *headers;      /* NULL-terminated "Name: value" list, or NULL */
	const void *body;                /* copied; NULL for none */
	size_t body_len;
	long timeout_ms;                 /* whole transfer; 0: none */
	long connect_timeout_ms;         /* 0: 10000 */
	/* From the moment the request is sent (connection ready) to the first
	 * byte of the response; 0: no such bound. Not for long polls. */
	long first_byte_timeout_ms;
	/* The same bound when the request goes on a kept-alive connection that
	 * had been idle for CURL_UV_STALE_IDLE_MS or more, where a silent drop
	 * is likeliest (lower than first_byte_timeout_ms, so that a dead
	 * connection is found out fast); 0: first_byte_timeout_ms. */
	long stale_first_byte_timeout_ms;
	/* Never on a kept-alive connection that has been idle for
	 * CURL_UV_STALE_IDLE_MS or more: a new one instead (for a request that
	 * cannot be repeated; such a connection may have died silently). The
	 * idle connections passed over are closed. */
	bool avoid_stale;
	size_t max_response;             /* buffered bytes limit; 0: 64 MiB */
	const struct curl_uv_tls *tls;   /* NULL: defaults */
	const char *user_agent;          /* NULL: none sent */
	const char *userpwd;             /* basic auth "user:password", or NULL */
	curl_uv_data_cb on_data;         /* NULL: buffer the body */
	curl_uv_done_cb on_done;         /* required */
	void *data;
};

/* Idle time after which a kept-alive connection counts as stale. */
#define CURL_UV_STALE_IDLE_MS 1000

/* How an instance uses connections; a zero field means "the default". */
struct curl_uv_options {
	/* Buffered requests over HTTP/1.1 only (a pool of keep-alive
	 * connections) instead of HTTP/2 when the server offers it. */
	bool http1_only;
	/* Buffered requests: at most this many connections per host; requests
	 * beyond wait for a free one (the wait counts in their timeout_ms, not
	 * in first_byte_timeout_ms). 0: no limit. */
	long max_host_connections;
	/* A connection idle for longer is closed instead of reused; 0: 50. */
	long max_idle_s;
};

/* Creates the glue on loop with the defaults (HTTP/2 when offered, no
 * connection limit, 50 s idle age). Never fails (aborts if libcurl cannot
 * start). */
struct curl_uv *curl_uv_new(uv_loop_t *loop);
/* The same with options (o may be NULL: the defaults). */
struct curl_uv *curl_uv_new_opts(uv_loop_t *loop, const struct curl_uv_options *o);
/* Completes every request with -ECANCELED (their callbacks run before this
 * returns), then closes the handles; the object is freed by their close
 * callbacks. Requests started afterwards are refused (NULL). */
void curl_uv_close(struct curl_uv *cu);

/* Starts a request. Everything in o is copied. Returns the request handle,
 * valid until its done callback returns, or NULL if cu is closing or o is
 * invalid (no url, no on_done). */
struct curl_uv_request *curl_uv_start(struct curl_uv *cu, const struct curl_uv_request_opts *o);
/* Hands the requests started so far to libcurl at once and lets it run
 * them, instead of on the loop's next turn: a request started just before
 * a long synchronous job (parsing a large answer) is then written to its
 * connection before that job, when the connection is ready (kept alive,
 * idle); a new connection is only begun. No done callback runs inside this
 * call: what completes is collected from the loop. Does nothing when called
 * from inside a libcurl callback or once cu is closing. Streamed requests
 * (their own instance) are not concerned. */
void curl_uv_flush(struct curl_uv *cu);
/* Stops a request: done runs with -ECANCELED, never from inside this call
 * (on a later loop iteration, or right after on_data returns when called from
 * on_data), and no on_data call happens after this one. Must not be called
 * after done has returned. */
void curl_uv_cancel(struct curl_uv_request *req);

/* The last value of a response header (case-insensitive name), or NULL.
 * Borrowed, valid during the current callback. */
const char *curl_uv_response_header(struct curl_uv_request *req, const char *name);
/* HTTP status of the current response, available from the first on_data. */
long curl_uv_response_status(struct curl_uv_request *req);
/* The HTTP version used: 1 (1.x), 2, or 0 if unknown. */
int curl_uv_http_version(struct curl_uv_request *req);

/* Number of requests started and not yet completed (for tests/metrics). */
size_t curl_uv_active(const struct curl_uv *cu);
/* Connections opened so far, buffered and streamed requests (for tests and
 * benchmarks). */
unsigned long curl_uv_connections_opened(const struct curl_uv *cu);

#endif
