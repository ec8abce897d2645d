/* HTTP client requests on the libuv loop: the libcurl multi interface driven
 * by one uv_poll_t per socket and one uv_timer_t. Generic (no Kubernetes
 * knowledge): used by the kube client and the GitHub client. HTTP/2 is used
 * when the server offers it, and connections are reused and multiplexed.
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
	size_t max_response;             /* buffered bytes limit; 0: 64 MiB */
	const struct curl_uv_tls *tls;   /* NULL: defaults */
	const char *user_agent;          /* NULL: none sent */
	const char *userpwd;             /* basic auth "user:password", or NULL */
	curl_uv_data_cb on_data;         /* NULL: buffer the body */
	curl_uv_done_cb on_done;         /* required */
	void *data;
};

/* Creates the glue on loop. Never fails (aborts if libcurl cannot start). */
struct curl_uv *curl_uv_new(uv_loop_t *loop);
/* Completes every request with -ECANCELED (their callbacks run before this
 * returns), then closes the handles; the object is freed by their close
 * callbacks. Requests started afterwards are refused (NULL). */
void curl_uv_close(struct curl_uv *cu);

/* Starts a request. Everything in o is copied. Returns the request handle,
 * valid until its done callback returns, or NULL if cu is closing or o is
 * invalid (no url, no on_done). */
struct curl_uv_request *curl_uv_start(struct curl_uv *cu, const struct curl_uv_request_opts *o);
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

#endif
