#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <llhttp.h>
#include <zlib.h>

#include "list.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "strmap.h"

#define READ_BUF_SIZE 65536
#define MAX_HEADERS 100
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1024 * 1024)
#define MAX_DETAIL 1024
#define REFUSAL_LOG_MS 1000
/* bodies from this size are gzipped for a client that accepts it */
#define GZIP_MIN_BYTES 1024

enum conn_state {
	CS_IDLE,     /* between requests */
	CS_HEADERS,  /* reading a request's line and headers */
	CS_BODY,     /* reading its body */
	CS_HANDLING, /* a handler owns the request */
	CS_LINGER,   /* response sent, draining input before the close */
	CS_UPGRADED, /* handed over to another protocol (http_upgrade) */
};

struct http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	bool listening;
	struct http_limits lim;
	struct router *router;
	llhttp_settings_t settings;
	struct list conns; /* struct http_conn */
	unsigned n_conns;
	bool shutting_down;
	uv_timer_t shutdown_timer;
	bool shutdown_timer_init;
	int pending_closes; /* listener and shutdown timer */
	void (*on_done)(void *data);
	void *done_data;
	bool done_called;
	int port;
	/* open connections per client address (values: counts as pointers) */
	struct strmap per_client;
	size_t body_bytes; /* charged to lim.max_buffered_body_bytes */
	/* refused connections, logged once a second */
	uv_timer_t refusal_timer;
	bool refusal_timer_init, refusal_timer_on;
	unsigned long refused_total, refused_client;
	char refused_last[48];
	char read_buf[READ_BUF_SIZE];
	char date[64];
	time_t date_time;
};

struct http_conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct http_server *srv;
	struct list link; /* in http_server.conns */
	llhttp_t parser;
	enum conn_state state;
	struct buf in; /* received; parsed up to in_off */
	size_t in_off;
	/* the last bytes parsed before in.data + in_off: line ends are checked
	 * behind llhttp's spans */
	char tail[4];
	size_t tail_len;
	char peer[48];    /* client address key ("" for detached conns) */
	bool peer_counted;
	unsigned messages; /* requests begun on this connection */
	bool headers_paused; /* llhttp stopped at the end of a header section */
	bool te_chunked;     /* Transfer-Encoding: chunked seen */
	size_t body_charged; /* bytes of srv->body_bytes this request holds */
	bool out_blocked;    /* output over max_output_pending: not read */
	struct http_req req;
	struct route_match match;
	bool have_req;
	/* header accumulation */
	struct buf hname, hvalue;
	struct buf url;
	size_t header_bytes;
	size_t body_limit;
	/* a parse-time failure: answered once the parser stops, then closed */
	int err_status;
	char err_detail[160];
	/* no route for the request: answered, the connection stays usable */
	int route_status;
	const char *route_detail;
	/* response */
	struct buf resp_headers;
	bool responded;
	bool streaming;
	bool chunked;
	int status;
	unsigned long long bytes_out;
	/* output: queued pieces (not yet handed to libuv) and at most one
	 * write in flight; write_pending counts the bytes of both */
	struct seg *outq;
	size_t outq_n, outq_cap;
	bool writing;
	bool hold_flush; /* in a drain callback: one write after it returns */
	size_t write_pending;
	bool close_after;
	bool peer_eof;
	bool reading;
	bool processing;
	bool closing;
	bool detached;
	int open_handles;
	size_t linger_bytes;
	/* upgraded connections */
	struct http_upgrade_cbs up;
	void *up_data;
	bool up_paused;
};

/* A piece of output: len bytes at off in a shared buffer. */
struct seg {
	struct http_bytes *ref;
	size_t off, len;
};

/* One uv_write of every piece queued when it was issued. */
struct write_req {
	uv_write_t w;
	struct http_conn *conn;
	size_t len;
	size_t n;
	struct seg segs[];
};

static void conn_close(struct http_conn *c);
static void conn_process(struct http_conn *c);
static void read_control(struct http_conn *c);
static void conn_finish_request(struct http_conn *c);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* A long stream starts on c: bound its kernel send buffer. */
static void conn_streaming(struct http_conn *c)
{
	int size = c->srv->lim.stream_send_buffer;
	if (size > 0 && !c->detached && !c->closing)
		uv_send_buffer_size((uv_handle_t *)&c->tcp, &size);
}
static void server_check_done(struct http_server *srv);

void http_limits_default(struct http_limits *lim)
{
	lim->max_connections = 1024;
	lim->max_connections_per_client = 256;
	lim->max_header_bytes = 16384;
	lim->max_request_line_bytes = 8192;
	lim->max_body_bytes = 1024 * 1024;
	lim->max_buffered_body_bytes = 64 * 1024 * 1024;
	lim->max_output_pending = 64 * 1024;
	lim->header_timeout_ms = 10000;
	lim->body_timeout_ms = 60000;
	lim->keepalive_timeout_ms = 30000;
	lim->shutdown_timeout_ms = 10000;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- writing ---- */

static void on_shutdown_sent(uv_shutdown_t *sh, int status)
{
	UNUSED(status);
	free(sh);
}

/* Once the last response is out, half-closes and drains what the client
 * still sends for a while, so that it reads the response rather than a
 * reset. */
static void conn_linger(struct http_conn *c)
{
	if (c->closing || c->state != CS_LINGER || c->write_pending || c->detached)
		return;
	uv_shutdown_t *sh = xmalloc(sizeof *sh);
	if (uv_shutdown(sh, (uv_stream_t *)&c->tcp, on_shutdown_sent) < 0) {
		free(sh);
		conn_close(c);
	}
}

struct http_bytes *http_bytes_new(const void *data, size_t len)
{
	struct http_bytes *b = xmalloc(sizeof *b + len);
	b->refs = 1;
	b->len = len;
	if (data && len)
		memcpy(b->data, data, len);
	return b;
}

struct http_bytes *http_bytes_ref(struct http_bytes *b)
{
	b->refs++;
	return b;
}

void http_bytes_unref(struct http_bytes *b)
{
	if (b && --b->refs == 0)
		free(b);
}

static void conn_flush(struct http_conn *c);

static void on_write(uv_write_t *w, int status)
{
	struct write_req *wr = CONTAINER_OF(w, struct write_req, w);
	struct http_conn *c = wr->conn;
	c->write_pending -= wr->len;
	c->writing = false;
	for (size_t i = 0; i < wr->n; i++)
		http_bytes_unref(wr->segs[i].ref);
	free(wr);
	if (status < 0 && status != UV_ECANCELED) {
		log_debug("http: write failed: %s", uv_strerror(status));
		conn_close(c);
		return;
	}
	if (c->closing)
		return;
	/* the socket took everything: a stream may queue more now, and what
	 * it queues goes out with what queued meanwhile, in one write */
	c->hold_flush = true;
	if (c->state == CS_HANDLING && c->streaming && c->req.on_drain)
		c->req.on_drain(&c->req, c->req.abort_data);
	else if (c->state == CS_UPGRADED && c->up.on_drain)
		c->up.on_drain(c->up_data);
	c->hold_flush = false;
	conn_flush(c);
	if (c->out_blocked && c->write_pending <= c->srv->lim.max_output_pending / 2) {
		/* the client reads again: so do we */
		c->out_blocked = false;
		if (!c->processing)
			conn_process(c);
	}
	conn_linger(c);
}

/* Hands every queued piece to libuv in one write, unless one is in flight
 * (on_write issues the next). */
static void conn_flush(struct http_conn *c)
{
	if (c->writing || c->hold_flush || !c->outq_n || c->detached)
		return;
	size_t n = c->outq_n;
	struct write_req *wr = xmalloc(sizeof *wr + n * sizeof wr->segs[0]);
	uv_buf_t small[16];
	uv_buf_t *bufs = n <= ARRAY_SIZE(small) ? small : xmalloc(n * sizeof *bufs);
	wr->conn = c;
	wr->n = n;
	wr->len = 0;
	for (size_t i = 0; i < n; i++) {
		struct seg *sg = &c->outq[i];
		wr->segs[i] = *sg;
		wr->len += sg->len;
		bufs[i] = uv_buf_init(sg->ref->data + sg->off, (unsigned)sg->len);
	}
	c->outq_n = 0;
	c->writing = true;
	int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, bufs, (unsigned)n, on_write);
	if (bufs != small)
		free(bufs);
	if (rc < 0) {
		c->writing = false;
		c->write_pending -= wr->len;
		for (size_t i = 0; i < n; i++)
			http_bytes_unref(wr->segs[i].ref);
		free(wr);
		conn_close(c);
	}
}

/* Queues len bytes at off in ref (the reference is taken over) and sends
 * them at once when no write is in flight. */
static void conn_push(struct http_conn *c, struct http_bytes *ref, size_t off, size_t len)
{
	c->bytes_out += len;
	if (c->closing || c->detached || len == 0) {
		/* detached: the fuzzer's sink */
		http_bytes_unref(ref);
		return;
	}
	if (c->outq_n == c->outq_cap) {
		c->outq_cap = c->outq_cap ? c->outq_cap * 2 : 8;
		c->outq = xrealloc(c->outq, c->outq_cap * sizeof *c->outq);
	}
	c->outq[c->outq_n++] = (struct seg){ref, off, len};
	c->write_pending += len;
	conn_flush(c);
	if (!c->closing && c->write_pending > c->srv->lim.max_output_pending && !c->out_blocked) {
		/* the client does not read: stop reading it (read_control) */
		c->out_blocked = true;
		read_control(c);
	}
}

/* Queues bytes (copied) on the connection. */
static void conn_write(struct http_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
	if (c->closing || c->detached) {
		c->bytes_out += alen + blen;
		return;
	}
	struct http_bytes *ref = http_bytes_new(NULL, alen + blen);
	if (alen)
		memcpy(ref->data, a, alen);
	if (blen)
		memcpy(ref->data + alen, b, blen);
	conn_push(c, ref, 0, alen + blen);
}

/* Drops what was queued and never handed to libuv. */
static void conn_drop_queue(struct http_conn *c)
{
	for (size_t i = 0; i < c->outq_n; i++) {
		c->write_pending -= c->outq[i].len;
		http_bytes_unref(c->outq[i].ref);
	}
	c->outq_n = 0;
}

static const char *http_date(struct http_server *srv)
{
	time_t t = time(NULL);
	if (t != srv->date_time) {
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(srv->date, sizeof srv->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		srv->date_time = t;
	}
	return srv->date;
}

/* Serializes the status line and headers into h. body_len < 0: no
 * Content-Length (streams). */
static void build_head(struct http_conn *c, struct buf *h, int status, const char *content_type,
		       long long body_len)
{
	struct http_req *r = &c->req;
	if (c->srv->shutting_down || !r->keep_alive || c->peer_eof)
		c->close_after = true;
	buf_printf(h, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: runboat\r\n", status,
		   http_status_text(status), http_date(c->srv));
	if (content_type)
		buf_printf(h, "Content-Type: %s\r\n", content_type);
	if (body_len >= 0 && status != 304 && status != 204)
		buf_printf(h, "Content-Length: %lld\r\n", body_len);
	if (c->close_after)
		buf_append_str(h, "Connection: close\r\n");
	else if (r->http_minor == 0)
		buf_append_str(h, "Connection: keep-alive\r\n");
	if (c->resp_headers.len)
		buf_append(h, c->resp_headers.data, c->resp_headers.len);
}

static void respond_common(struct http_req *req, int status, const char *content_type,
			   const void *body, size_t len)
{
	struct http_conn *c = req->conn;
	if (c->responded) {
		log_error("http: second response to %s %s ignored", req->method, req->target);
		return;
	}
	c->responded = true;
	c->status = status;
	struct buf h = {0};
	build_head(c, &h, status, content_type, (long long)len);
	buf_append(&h, "\r\n", 2);
	bool no_body = req->head || status == 304 || status == 204;
	conn_write(c, h.data, h.len, body, no_body ? 0 : len);
	buf_free(&h);
	conn_finish_request(c);
}

void http_respond(struct http_req *req, int status, const char *content_type, const void *body,
		  size_t len)
{
	respond_common(req, status, content_type, body, len);
}

void http_respond_static(struct http_req *req, int status, const char *content_type,
			 const void *body, size_t len)
{
	/* the body is copied into the write anyway: one write per response */
	respond_common(req, status, content_type, body, len);
}

/* Does the request's Accept-Encoding take gzip (RFC 9110 12.5.3): "gzip"
 * or "x-gzip" with a q above 0, or "*" with a q above 0 when gzip is not
 * listed itself. */
static bool accepts_gzip(const struct http_req *req)
{
	const char *v = http_req_header(req, "accept-encoding");
	if (!v)
		return false;
	int gzip = -1, star = -1; /* -1 not listed, 0 refused, 1 accepted */
	char item[128];
	while (*v) {
		size_t n = strcspn(v, ",");
		if (n < sizeof item) {
			memcpy(item, v, n);
			item[n] = '\0';
			/* "coding *( OWS ; OWS param )": only q matters */
			char *save = NULL, *tok = strtok_r(item, ";", &save);
			char *name = tok ? tok + strspn(tok, " \t") : NULL;
			if (name)
				name[strcspn(name, " \t")] = '\0';
			int ok = 1;
			while ((tok = strtok_r(NULL, ";", &save))) {
				tok += strspn(tok, " \t");
				if ((tok[0] == 'q' || tok[0] == 'Q') && tok[1] == '=')
					ok = strtod(tok + 2, NULL) > 0;
			}
			if (name && (!strcasecmp(name, "gzip") || !strcasecmp(name, "x-gzip")))
				gzip = gzip == 1 ? 1 : ok;
			else if (name && !strcmp(name, "*"))
				star = ok;
		}
		v += n;
		if (*v)
			v++;
	}
	return gzip == 1 || (gzip == -1 && star == 1);
}

/* body gzipped into out (level 1: the listing is large and repetitive, the
 * loop waits for it); false if zlib fails. */
static bool gzip_body(const void *body, size_t len, struct buf *out)
{
	z_stream z = {0};
	if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return false;
	size_t cap = deflateBound(&z, (uLong)len);
	buf_reset(out);
	buf_reserve(out, cap);
	z.next_in = (Bytef *)body;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out->data;
	z.avail_out = (uInt)cap;
	int rc = deflate(&z, Z_FINISH);
	out->len = z.total_out;
	deflateEnd(&z);
	return rc == Z_STREAM_END;
}

void http_respond_compressible(struct http_req *req, int status, const char *content_type,
			       const void *body, size_t len)
{
	if (len < GZIP_MIN_BYTES || req->conn->responded) {
		respond_common(req, status, content_type, body, len);
		return;
	}
	http_add_header(req, "Vary", "Accept-Encoding");
	struct buf gz = {0};
	if (accepts_gzip(req) && gzip_body(body, len, &gz)) {
		http_add_header(req, "Content-Encoding", "gzip");
		respond_common(req, status, content_type, gz.data, gz.len);
	} else {
		respond_common(req, status, content_type, body, len);
	}
	buf_free(&gz);
}

void http_respond_json(struct http_req *req, int status, json_t *value)
{
	char *s = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(value);
	if (!s) {
		/* a handler bug (a NULL from json_pack, e.g. invalid UTF-8) */
		log_error("http: %s %s: the handler's JSON could not be serialized", req->method,
			  req->target ? req->target : "-");
		static const char body[] = "{\"detail\":\"could not serialize the response\"}";
		respond_common(req, 500, "application/json", body, sizeof body - 1);
		return;
	}
	http_respond_compressible(req, status, "application/json", s, strlen(s));
	free(s);
}

/* Copies s into out as valid UTF-8 of at most max bytes: each invalid byte
 * becomes U+FFFD, and the cut falls between characters. */
static void utf8_clean(struct buf *out, const char *s, size_t n, size_t max)
{
	static const char replacement[] = "\xef\xbf\xbd";
	size_t i = 0;
	while (i < n && out->len <= max) {
		size_t l = utf8_decode(s + i, n - i, NULL);
		if (l)
			buf_append(out, s + i, l);
		else
			buf_append(out, replacement, 3);
		i += l ? l : 1;
	}
	if (!out->data)
		buf_append(out, "", 0);
	out->len = utf8_cut(out->data, out->len, max);
	out->data[out->len] = '\0';
}

void http_respond_error(struct http_req *req, int status, const char *fmt, ...)
{
	struct buf raw = {0}, detail = {0};
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&raw, fmt, ap);
	va_end(ap);
	utf8_clean(&detail, raw.data ? raw.data : "", raw.len, MAX_DETAIL);
	json_t *body = json_pack("{s:s}", "detail", detail.data ? detail.data : "");
	buf_free(&raw);
	buf_free(&detail);
	http_respond_json(req, status, body);
}

void http_redirect(struct http_req *req, int status, const char *location)
{
	http_add_header(req, "Location", location);
	json_t *body = json_pack("{s:s}", "detail", "redirecting");
	http_respond_json(req, status, body);
}

void http_add_header(struct http_req *req, const char *name, const char *value)
{
	struct http_conn *c = req->conn;
	/* a header value must never split the response */
	buf_append_str(&c->resp_headers, name);
	buf_append(&c->resp_headers, ": ", 2);
	for (const char *p = value; *p; p++)
		if (*p != '\r' && *p != '\n')
			buf_append(&c->resp_headers, p, 1);
	buf_append(&c->resp_headers, "\r\n", 2);
}

void http_stream_begin(struct http_req *req, int status, const char *content_type)
{
	struct http_conn *c = req->conn;
	if (c->responded)
		return;
	c->responded = true;
	c->streaming = true;
	c->status = status;
	c->chunked = req->http_minor >= 1;
	if (!c->chunked)
		req->keep_alive = false;
	conn_streaming(c);
	struct buf h = {0};
	build_head(c, &h, status, content_type, -1);
	if (c->chunked)
		buf_append_str(&h, "Transfer-Encoding: chunked\r\n");
	buf_append_str(&h, "Cache-Control: no-store\r\n\r\n");
	conn_write(c, h.data, h.len, NULL, 0);
	buf_free(&h);
}

int http_stream_write(struct http_req *req, const void *data, size_t len)
{
	struct http_conn *c = req->conn;
	if (c->closing)
		return -EPIPE;
	if (!c->streaming || len == 0 || req->head)
		return 0;
	if (c->chunked) {
		char hdr[32];
		int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
		struct buf b = {0};
		buf_append(&b, hdr, (size_t)n);
		buf_append(&b, data, len);
		buf_append(&b, "\r\n", 2);
		conn_write(c, b.data, b.len, NULL, 0);
		buf_free(&b);
	} else {
		conn_write(c, data, len, NULL, 0);
	}
	return c->closing ? -EPIPE : 0;
}

struct http_bytes *http_chunk_bytes(const void *data, size_t len)
{
	char hdr[32];
	int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
	struct http_bytes *b = http_bytes_new(NULL, (size_t)n + len + 2);
	memcpy(b->data, hdr, (size_t)n);
	memcpy(b->data + n, data, len);
	memcpy(b->data + (size_t)n + len, "\r\n", 2);
	return b;
}

int http_stream_write_chunk(struct http_req *req, struct http_bytes *chunk)
{
	struct http_conn *c = req->conn;
	if (c->closing)
		return -EPIPE;
	if (!c->streaming || req->head || chunk->len < 5)
		return 0;
	if (c->chunked) {
		conn_push(c, http_bytes_ref(chunk), 0, chunk->len);
	} else {
		/* HTTP/1.0: the payload without its chunk framing */
		const char *p = memchr(chunk->data, '\n', chunk->len);
		size_t off = p ? (size_t)(p + 1 - chunk->data) : 0;
		if (off + 2 <= chunk->len)
			conn_push(c, http_bytes_ref(chunk), off, chunk->len - off - 2);
	}
	return c->closing ? -EPIPE : 0;
}

size_t http_stream_pending(const struct http_req *req)
{
	return req->conn->write_pending;
}

void http_stream_end(struct http_req *req)
{
	struct http_conn *c = req->conn;
	if (!c->streaming)
		return;
	if (c->chunked && !req->head)
		conn_write(c, "0\r\n\r\n", 5, NULL, 0);
	conn_finish_request(c);
}

/* ---- requests ---- */

const char *http_req_peer(const struct http_req *req)
{
	return req->conn ? req->conn->peer : "";
}

const char *http_req_header(const struct http_req *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

char *http_req_query(const struct http_req *req, const char *name, bool *bad)
{
	if (bad)
		*bad = false;
	if (!req->query)
		return NULL;
	size_t nlen = strlen(name);
	const char *p = req->query;
	while (*p) {
		const char *end = strchr(p, '&');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		size_t klen = eq ? (size_t)(eq - p) : n;
		char *key = url_decode(p, klen, true);
		if (key && strlen(key) == nlen && memcmp(key, name, nlen) == 0) {
			free(key);
			char *v = eq ? url_decode(eq + 1, n - klen - 1, true) : xstrdup("");
			if (!v && bad)
				*bad = true;
			return v;
		}
		free(key);
		p += n;
		if (*p == '&')
			p++;
	}
	return NULL;
}

static void req_clear(struct http_conn *c)
{
	struct http_req *r = &c->req;
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	free(r->headers);
	free(r->target);
	free(r->path);
	free(r->query);
	buf_free(&r->body);
	c->srv->body_bytes -= c->body_charged;
	c->body_charged = 0;
	route_match_clear(&c->match);
	memset(r, 0, sizeof *r);
	r->conn = c;
	buf_reset(&c->hname);
	buf_reset(&c->hvalue);
	buf_reset(&c->url);
	buf_reset(&c->resp_headers);
	c->header_bytes = 0;
	c->headers_paused = false;
	c->te_chunked = false;
	c->err_status = 0;
	c->err_detail[0] = '\0';
	c->route_status = 0;
	c->route_detail = NULL;
	c->responded = false;
	c->streaming = false;
	c->chunked = false;
	c->status = 0;
	c->bytes_out = 0;
	c->have_req = false;
}

static void timer_set(struct http_conn *c, uint64_t ms);

/* Marks the current request done: logs it and moves on to the next one. */
static void conn_finish_request(struct http_conn *c)
{
	struct http_req *r = &c->req;
	if (r->method) {
		log_access(r->method, r->target ? r->target : "-", c->status, c->bytes_out,
			   (double)(uv_hrtime() / 1000 - r->start_ms) / 1000.0);
		metrics_http_request(r->method, route_pattern(c->match.route), c->status,
				     (double)(uv_hrtime() / 1000 - r->start_ms) / 1e6);
	}
	bool upgrade_left = r->upgrade;
	req_clear(c);
	if (c->closing)
		return;
	if (c->close_after || upgrade_left) {
		/* the bytes after an upgrade request are not HTTP: stop here */
		c->state = CS_LINGER;
		c->linger_bytes = 0;
		buf_free(&c->in);
		c->in_off = 0;
		timer_set(c, LINGER_MS);
		conn_linger(c);
		return;
	}
	c->state = CS_IDLE;
	llhttp_resume(&c->parser);
	timer_set(c, c->srv->lim.keepalive_timeout_ms);
	if (!c->processing)
		conn_process(c);
}

static void dispatch(struct http_conn *c)
{
	struct http_req *r = &c->req;
	c->state = CS_HANDLING;
	timer_set(c, 0);
	if (c->err_status) {
		r->keep_alive = false;
		c->close_after = true;
		http_respond_error(r, c->err_status, "%s", c->err_detail);
		return;
	}
	if (c->route_status) {
		http_respond_error(r, c->route_status, "%s", c->route_detail);
		return;
	}
	r->match = &c->match;
	c->match.handler(r, c->match.data);
}

/* ---- llhttp callbacks ---- */

static struct http_conn *conn_of(llhttp_t *p)
{
	return p->data;
}

static int fail(struct http_conn *c, int status, const char *detail)
{
	if (!c->err_status) {
		c->err_status = status;
		snprintf(c->err_detail, sizeof c->err_detail, "%s", detail);
	}
	return -1;
}

static int on_message_begin(llhttp_t *p)
{
	struct http_conn *c = conn_of(p);
	req_clear(c);
	c->have_req = true;
	c->req.start_ms = uv_hrtime() / 1000;
	c->state = CS_HEADERS;
	/* the first request's deadline runs from the accept */
	if (c->messages++ > 0)
		timer_set(c, c->srv->lim.header_timeout_ms);
	return 0;
}

/* The byte k places (k >= 1) before p, a position in the input being
 * parsed, or -1 if it is not known. */
static int byte_before(const struct http_conn *c, const char *p, size_t k)
{
	const char *base = c->in.data ? c->in.data + c->in_off : NULL;
	size_t off = 0;
	if (base && p >= base && p <= c->in.data + c->in.len)
		off = (size_t)(p - base);
	if (k <= off)
		return (unsigned char)p[-(ptrdiff_t)k];
	size_t back = k - off;
	if (back > c->tail_len)
		return -1;
	return (unsigned char)c->tail[c->tail_len - back];
}

/* Whether at starts a line, i.e. follows a CRLF. */
static bool starts_line(const struct http_conn *c, const char *at)
{
	return byte_before(c, at, 1) == '\n' && byte_before(c, at, 2) == '\r';
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	if (c->url.len + len > c->srv->lim.max_request_line_bytes)
		return fail(c, 414, "request target too long");
	buf_append(&c->url, at, len);
	return 0;
}

/* Accumulates a span of a header name or value, within the header limit. */
static int header_span(struct http_conn *c, struct buf *into, const char *at, size_t len)
{
	c->header_bytes += len;
	if (c->header_bytes > c->srv->lim.max_header_bytes)
		return fail(c, 431, "request header section too large");
	buf_append(into, at, len);
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	/* llhttp takes a bare LF after the request line (RFC 9112 2.2: the
	 * line ends with CRLF; the README promises a 400) */
	if (c->hname.len == 0 && len > 0 && !starts_line(c, at))
		return fail(c, 400, "bare LF line end: lines end with CRLF");
	return header_span(c, &c->hname, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	/* a value piece right after a CRLF continues a folded line, which
	 * llhttp unfolds: RFC 9112 5.2 lets a server refuse it, and a proxy
	 * in front may read it otherwise (smuggling) */
	if (len > 0 && starts_line(c, at))
		return fail(c, 400, "obsolete line folding in a header (a line starting with "
				    "a space or a tab)");
	return header_span(c, &c->hvalue, at, len);
}

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* RFC 9112 3.2: Host = uri-host [ ":" port ], i.e. reg-name or IP-literal
 * characters only (no userinfo, path or whitespace). */
static bool host_valid(const char *v)
{
	for (const unsigned char *s = (const unsigned char *)v; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("-._~%!$&'()*+,;=:[]", *s)))
			return false;
	return true;
}

/* Transfer-Encoding, RFC 9112 6: the codings of a request end with chunked,
 * applied once; we decode no other (501). Elements are comma-separated, with
 * optional whitespace; empty ones are ignored but a field of none is not. */
static int check_transfer_encoding(struct http_conn *c, const char *v)
{
	bool any = false;
	while (*v) {
		size_t n = strcspn(v, ",");
		const char *e = v + n;
		while (v < e && (*v == ' ' || *v == '\t'))
			v++;
		const char *end = e;
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end > v) {
			any = true;
			if (c->te_chunked)
				return fail(c, 400, "chunked must be the last transfer coding, applied once");
			if (!span_ieq(v, (size_t)(end - v), "chunked")) {
				char detail[120];
				snprintf(detail, sizeof detail,
					 "unsupported transfer coding \"%.*s\": send chunked or "
					 "Content-Length", (int)((end - v) > 40 ? 40 : (end - v)), v);
				return fail(c, 501, detail);
			}
			c->te_chunked = true;
		}
		v = *e ? e + 1 : e;
	}
	if (!any)
		return fail(c, 400, "empty Transfer-Encoding");
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct http_conn *c = conn_of(p);
	struct http_req *r = &c->req;
	if (r->n_headers == MAX_HEADERS)
		return fail(c, 431, "too many request headers");
	if (c->hname.len == 0)
		return fail(c, 400, "empty header name");
	for (size_t i = 0; i < c->hname.len; i++)
		if (!is_tchar((unsigned char)c->hname.data[i]))
			return fail(c, 400, "invalid header name");
	for (size_t i = 0; i < c->hvalue.len; i++) {
		unsigned char ch = (unsigned char)c->hvalue.data[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return fail(c, 400, "invalid character in a header value");
	}
	c->header_bytes += 4; /* ": " and CRLF */
	r->headers = xrealloc(r->headers, (r->n_headers + 1) * sizeof *r->headers);
	struct http_header *h = &r->headers[r->n_headers++];
	h->name = xstrndup(c->hname.data ? c->hname.data : "", c->hname.len);
	for (char *s = h->name; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	/* trim optional whitespace */
	const char *v = c->hvalue.data ? c->hvalue.data : "";
	size_t vl = c->hvalue.len;
	while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	while (vl && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	h->value = xstrndup(v, vl);
	buf_reset(&c->hname);
	buf_reset(&c->hvalue);
	if (strcmp(h->name, "host") == 0) {
		if (http_req_header(r, "host") != h->value)
			return fail(c, 400, "more than one Host header");
		if (!host_valid(h->value))
			return fail(c, 400, "invalid Host header");
	} else if (strcmp(h->name, "transfer-encoding") == 0) {
		return check_transfer_encoding(c, h->value);
	}
	return 0;
}

/* Validates the request target (origin-form only) and splits it. */
static int parse_target(struct http_conn *c)
{
	struct http_req *r = &c->req;
	const char *t = c->url.data ? c->url.data : "";
	if (t[0] != '/')
		return fail(c, 400, "request target must be an absolute path");
	for (const char *s = t; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= 0x20 || ch >= 0x7f)
			return fail(c, 400, "invalid character in the request target");
	}
	r->target = xstrndup(t, c->url.len);
	const char *q = strchr(r->target, '?');
	const char *hash = strchr(r->target, '#');
	if (hash && (!q || hash < q))
		return fail(c, 400, "fragment in the request target");
	if (q) {
		r->path = xstrndup(r->target, (size_t)(q - r->target));
		r->query = xstrdup(q + 1);
	} else {
		r->path = xstrdup(r->target);
	}
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct http_conn *c = conn_of(p);
	struct http_req *r = &c->req;
	struct http_server *srv = c->srv;
	r->method = llhttp_method_name(llhttp_get_method(p));
	r->http_major = llhttp_get_http_major(p);
	r->http_minor = llhttp_get_http_minor(p);
	r->keep_alive = llhttp_should_keep_alive(p);
	r->upgrade = llhttp_get_upgrade(p);
	r->head = strcmp(r->method, "HEAD") == 0;
	c->state = CS_BODY;
	timer_set(c, srv->lim.body_timeout_ms);
	c->body_limit = srv->lim.max_body_bytes;
	if (c->err_status)
		return -1;
	if (r->http_major != 1)
		return fail(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
	if (parse_target(c) < 0)
		return -1;
	if (r->http_minor >= 1 && !http_req_header(r, "host"))
		return fail(c, 400, "missing Host header");
	char allow[128];
	enum router_result rr = router_match(srv->router, r->method, r->path, &c->match, allow,
					     sizeof allow);
	if (rr == ROUTER_NOT_FOUND) {
		c->route_status = 404;
		c->route_detail = "not found";
	} else if (rr == ROUTER_BAD_PATH) {
		c->route_status = 400;
		c->route_detail = "malformed percent-encoding in the path";
	} else if (rr == ROUTER_BAD_METHOD) {
		c->route_status = 405;
		c->route_detail = "method not allowed";
		http_add_header(r, "Allow", allow);
	} else if (c->match.max_body)
		c->body_limit = c->match.max_body;
	/* Routing failures still read the (bounded) body so that keep-alive
	 * is preserved, but are answered with the error afterwards. */
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->body_limit)
		return fail(c, 413, "request body too large");
	const char *expect = http_req_header(r, "expect");
	if (expect && strcasecmp(expect, "100-continue") != 0)
		return fail(c, 417, "unsupported expectation");
	/* stop here: conn_process finishes the checks (headers_ready) before
	 * any body byte is parsed */
	c->headers_paused = true;
	return HPE_PAUSED;
}

/* Charges n more body bytes of c's request to the server-wide budget.
 * Returns 0, or -1 (and a 503 to answer) when that would go beyond it. */
static int body_charge(struct http_conn *c, size_t n)
{
	struct http_server *srv = c->srv;
	size_t cap = srv->lim.max_buffered_body_bytes;
	if (cap && (n > cap || srv->body_bytes > cap - n)) {
		http_add_header(&c->req, "Retry-After", "1");
		return fail(c, 503, "too many request bodies in flight, try again later");
	}
	srv->body_bytes += n;
	c->body_charged += n;
	return 0;
}

/* The header section is complete and no body byte has been parsed: checks
 * what llhttp's callbacks cannot see (the section's end), runs the route's
 * check_headers hook, reserves the body budget, then says 100 Continue.
 * end is where the section ends in the input. Returns 0, or -1 with the
 * refusal in c->err_status. */
static int headers_ready(struct http_conn *c, const char *end)
{
	struct http_req *r = &c->req;
	llhttp_t *p = &c->parser;
	static const char crlf2[] = "\r\n\r\n";
	for (size_t k = 1; k <= 4; k++)
		if (byte_before(c, end, k) != crlf2[4 - k])
			return fail(c, 400, "bare LF line end: lines end with CRLF");
	if (!c->route_status && c->match.check_headers) {
		const char *detail = NULL;
		r->match = &c->match;
		int st = c->match.check_headers(r, c->match.data, &detail);
		r->match = NULL;
		if (st) {
			if (st < 400 || st > 599) {
				log_error("http: %s %s: check_headers returned %d", r->method, r->target,
					  st);
				st = 500;
			}
			return fail(c, st, detail ? detail : http_status_text(st));
		}
	}
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0) {
		if (body_charge(c, (size_t)p->content_length) < 0)
			return -1;
		buf_reserve(&r->body, (size_t)p->content_length);
	}
	if (http_req_header(r, "expect") && r->http_minor >= 1)
		conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0);
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	size_t need = c->req.body.len + len;
	if (need > c->body_limit)
		return fail(c, 413, "request body too large");
	if (need > c->body_charged && body_charge(c, need - c->body_charged) < 0)
		return -1;
	buf_append(&c->req.body, at, len);
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	/* stop after each message: requests are handled one at a time */
	UNUSED(p);
	return HPE_PAUSED;
}

/* ---- connection I/O ---- */

static void on_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	if (--c->open_handles > 0)
		return;
	struct http_server *srv = c->srv;
	conn_drop_queue(c);
	free(c->outq);
	buf_free(&c->in);
	buf_free(&c->hname);
	buf_free(&c->hvalue);
	buf_free(&c->url);
	buf_free(&c->resp_headers);
	free(c);
	srv->n_conns--;
	server_check_done(srv);
}

static void conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	struct http_server *srv = c->srv;
	if (c->state == CS_HANDLING && c->req.on_abort) {
		void (*cb)(struct http_req *, void *) = c->req.on_abort;
		c->req.on_abort = NULL;
		cb(&c->req, c->req.abort_data);
	}
	if (c->up.on_close) {
		void (*cb)(void *) = c->up.on_close;
		c->up.on_close = NULL;
		cb(c->up_data);
	}
	if (c->state == CS_HANDLING && c->req.method) /* cut short (a stream's usual end) */
		metrics_http_request(c->req.method, route_pattern(c->match.route),
				     c->responded ? c->status : 0,
				     (double)(uv_hrtime() / 1000 - c->req.start_ms) / 1e6);
	req_clear(c);
	if (c->peer_counted) {
		uintptr_t n = (uintptr_t)strmap_get(&srv->per_client, c->peer);
		if (n > 1)
			strmap_put(&srv->per_client, c->peer, (void *)(n - 1));
		else
			strmap_del(&srv->per_client, c->peer);
		c->peer_counted = false;
	}
	list_remove(&c->link);
	if (c->detached)
		return;
	if (!c->writing && c->outq_n) {
		/* as when every write was issued at once: what the socket takes
		 * now still goes out (libuv tries the write before queueing) */
		c->hold_flush = false;
		conn_flush(c);
	}
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
	struct http_conn *c = t->data;
	if (c->closing)
		return;
	switch (c->state) {
	case CS_HEADERS:
	case CS_BODY:
		log_debug("http: request deadline passed, closing");
		c->state = CS_HANDLING;
		c->close_after = true;
		c->req.keep_alive = false;
		if (!c->req.method)
			c->req.method = "-";
		http_respond_error(&c->req, 408, "request not received in time");
		break;
	default:
		conn_close(c);
	}
}

static void timer_set(struct http_conn *c, uint64_t ms)
{
	if (c->detached || c->closing)
		return;
	if (ms)
		uv_timer_start(&c->timer, on_timeout, ms, 0);
	else
		uv_timer_stop(&c->timer);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	UNUSED(suggested);
	struct http_conn *c = h->data;
	/* one shared buffer: each read is consumed before the next */
	*buf = uv_buf_init(c->srv->read_buf, READ_BUF_SIZE);
}

static void read_control(struct http_conn *c)
{
	if (c->detached || c->closing)
		return;
	bool want;
	if (c->state == CS_LINGER)
		want = true; /* drained and dropped */
	else if (c->out_blocked)
		want = false; /* backpressure: the client is not reading its answers */
	else if (c->state == CS_UPGRADED)
		want = !c->up_paused;
	else
		/* what is read is parsed at once, except while a handler holds
		 * a request: then a bounded amount of what follows (pipelining) */
		want = c->state != CS_HANDLING || c->in.len - c->in_off < c->srv->lim.max_header_bytes +
									 c->srv->lim.max_request_line_bytes;
	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
			c->reading = true;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

/* Marks n more bytes of the input as parsed. */
static void conn_consume(struct http_conn *c, size_t n)
{
	const char *p = c->in.data + c->in_off;
	size_t keep = sizeof c->tail;
	if (n >= keep) {
		memcpy(c->tail, p + n - keep, keep);
		c->tail_len = keep;
	} else if (n) {
		size_t old = c->tail_len + n > keep ? keep - n : c->tail_len;
		memmove(c->tail, c->tail + c->tail_len - old, old);
		memcpy(c->tail + old, p, n);
		c->tail_len = old + n;
	}
	c->in_off += n;
	if (c->in_off >= c->in.len) {
		/* an idle connection keeps no big buffer */
		if (c->in.cap > 4096)
			buf_free(&c->in);
		else
			buf_reset(&c->in);
		c->in_off = 0;
	}
}

/* Parses what is buffered, handing complete requests to their handlers,
 * until input runs out, a handler keeps a request, or the answers to
 * earlier ones wait for the client to read (backpressure). */
static void conn_process(struct http_conn *c)
{
	c->processing = true;
	bool again = false; /* run the parser once more, even on no input */
	while (!c->closing && (c->state == CS_IDLE || c->state == CS_HEADERS || c->state == CS_BODY)) {
		if (c->state == CS_IDLE && c->out_blocked)
			break; /* no new request until the client reads */
		size_t avail = c->in.len - c->in_off;
		if (!avail && !again)
			break;
		again = false;
		const char *data = avail ? c->in.data + c->in_off : "";
		enum llhttp_errno err = llhttp_execute(&c->parser, data, avail);
		size_t used = avail;
		if (err != HPE_OK) {
			const char *pos = llhttp_get_error_pos(&c->parser);
			if (pos && pos >= data && pos <= data + avail)
				used = (size_t)(pos - data);
		}
		if (err == HPE_OK) {
			conn_consume(c, used);
			break;
		}
		if (err == HPE_PAUSED && c->headers_paused) {
			c->headers_paused = false;
			llhttp_resume(&c->parser);
			int rc = headers_ready(c, data + used);
			conn_consume(c, used);
			if (rc == 0) {
				/* a message without a body completes with no more input */
				again = true;
				continue;
			}
			/* refused before the body: answer and close */
			c->close_after = true;
			dispatch(c);
			break;
		}
		if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
			conn_consume(c, used);
			dispatch(c);
			continue;
		}
		/* a protocol error: answer and close */
		if (!c->err_status)
			fail(c, 400, llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
									 : "malformed request");
		if (c->err_status == 400 && c->err_detail[0] == '\0')
			snprintf(c->err_detail, sizeof c->err_detail, "malformed request");
		conn_consume(c, avail);
		if (!c->have_req) {
			c->req.start_ms = uv_hrtime() / 1000;
			c->have_req = true;
		}
		if (!c->req.method)
			c->req.method = "-";
		c->close_after = true;
		dispatch(c);
		break;
	}
	c->processing = false;
	if (!c->closing && c->state == CS_UPGRADED && c->in.len > c->in_off) {
		/* what the client sent right after the upgrade request */
		struct buf early = {0};
		buf_append(&early, c->in.data + c->in_off, c->in.len - c->in_off);
		buf_free(&c->in);
		c->in_off = 0;
		c->up.on_data(c->up_data, early.data, early.len);
		buf_free(&early);
	}
	if (!c->closing && c->state == CS_LINGER && c->detached)
		return;
	read_control(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct http_conn *c = s->data;
	if (c->closing)
		return;
	if (n < 0) {
		if (n != UV_EOF)
			log_debug("http: read error: %s", uv_strerror((int)n));
		if (n == UV_EOF && c->state == CS_HANDLING && !c->streaming) {
			/* the client half-closed after its request: answer, then close */
			c->peer_eof = true;
			c->close_after = true;
			uv_read_stop(s);
			c->reading = false;
			return;
		}
		conn_close(c);
		return;
	}
	if (n == 0)
		return;
	if (c->state == CS_LINGER) {
		c->linger_bytes += (size_t)n;
		if (c->linger_bytes > LINGER_MAX_BYTES)
			conn_close(c);
		return;
	}
	if (c->state == CS_UPGRADED) {
		c->up.on_data(c->up_data, buf->base, (size_t)n);
		return;
	}
	if (c->in_off) {
		/* drop what was parsed before growing the buffer */
		buf_consume(&c->in, c->in_off);
		c->in_off = 0;
	}
	buf_append(&c->in, buf->base, (size_t)n);
	if (!c->processing)
		conn_process(c);
}

static void conn_init(struct http_server *srv, struct http_conn *c)
{
	c->srv = srv;
	c->req.conn = c;
	llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
	c->parser.data = c;
	c->state = CS_IDLE;
	list_push_front(&srv->conns, &c->link);
	srv->n_conns++;
}

/* The key of a client for max_connections_per_client: its IPv4 address, or
 * the /64 of its IPv6 one (what one host or site usually gets); "" if the
 * peer is unknown. */
static void peer_key(uv_tcp_t *t, char out[48])
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	out[0] = '\0';
	if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, out, 48);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a->sin6_addr.s6_addr, v4mapped, 12) == 0) {
			uv_inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], out, 48);
			return;
		}
		memset(&a->sin6_addr.s6_addr[8], 0, 8);
		uv_inet_ntop(AF_INET6, &a->sin6_addr, out, 44);
		strcat(out, "/64");
	}
}

static void on_refusal_tick(uv_timer_t *t)
{
	struct http_server *srv = t->data;
	if (!srv->refused_total) {
		uv_timer_stop(t);
		srv->refusal_timer_on = false;
		return;
	}
	log_warn("http: refused %lu more connections in %.1fs (%lu over max_connections_per_client = "
		 "%u; %u connections open, max_connections = %u); the last from %s",
		 srv->refused_total, REFUSAL_LOG_MS / 1000.0, srv->refused_client,
		 srv->lim.max_connections_per_client, srv->n_conns, srv->lim.max_connections,
		 srv->refused_last);
	srv->refused_total = srv->refused_client = 0;
}

/* Logs a refusal: the first at once, then one summary line a second. */
static void note_refusal(struct http_server *srv, bool per_client, const char *peer)
{
	if (!srv->refusal_timer_on) {
		log_warn("http: refusing a connection from %s: %s (%u open); further refusals are "
			 "counted once a second", peer[0] ? peer : "?",
			 per_client ? "max_connections_per_client reached"
				    : "max_connections reached", srv->n_conns);
		if (!srv->refusal_timer_init) {
			uv_timer_init(srv->loop, &srv->refusal_timer);
			srv->refusal_timer.data = srv;
			uv_unref((uv_handle_t *)&srv->refusal_timer);
			srv->refusal_timer_init = true;
		}
		uv_timer_start(&srv->refusal_timer, on_refusal_tick, REFUSAL_LOG_MS, REFUSAL_LOG_MS);
		srv->refusal_timer_on = true;
		return;
	}
	srv->refused_total++;
	if (per_client)
		srv->refused_client++;
	snprintf(srv->refused_last, sizeof srv->refused_last, "%s", peer[0] ? peer : "?");
}

static void on_refused_closed(uv_handle_t *h)
{
	free(h->data); /* the connection object, never initialized further */
}

/* Over a connection cap: a short 503 and close; the connection object is
 * not linked nor counted, so the others keep being served. */
static void refuse(struct http_conn *c, bool per_client)
{
	char body[128];
	int blen = snprintf(body, sizeof body, "{\"detail\":\"%s\"}",
			    per_client ? "too many connections from your address"
				       : "too many connections");
	char *msg = xasprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
			      "Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s",
			      blen, body);
	uv_buf_t b = uv_buf_init(msg, (unsigned)strlen(msg));
	/* a refusal is short: it goes out at once or not at all */
	int rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	free(msg);
	UNUSED(rc);
	uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct http_server *srv = server->data;
	if (status < 0) {
		log_warn("http: accept failed: %s", uv_strerror(status));
		return;
	}
	if (srv->shutting_down)
		return;
	struct http_conn *c = xcalloc(1, sizeof *c);
	uv_tcp_init(srv->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
		return;
	}
	peer_key(&c->tcp, c->peer);
	unsigned cap = srv->lim.max_connections_per_client;
	uintptr_t from_peer = c->peer[0] ? (uintptr_t)strmap_get(&srv->per_client, c->peer) : 0;
	if (srv->n_conns >= srv->lim.max_connections || (cap && from_peer >= cap)) {
		bool per_client = srv->n_conns < srv->lim.max_connections;
		note_refusal(srv, per_client, c->peer);
		refuse(c, per_client);
		return;
	}
	if (c->peer[0]) {
		strmap_put(&srv->per_client, c->peer, (void *)(from_peer + 1));
		c->peer_counted = true;
	}
	uv_timer_init(srv->loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 2;
	conn_init(srv, c);
	uv_tcp_nodelay(&c->tcp, 1);
	/* the first request's headers are due header_timeout after the accept:
	 * a socket that sends nothing is closed then */
	timer_set(c, srv->lim.header_timeout_ms);
	read_control(c);
}

/* ---- upgraded connections ---- */

struct http_upgraded *http_upgrade(struct http_req *req, const char *head, size_t head_len,
				   const struct http_upgrade_cbs *cbs, void *data)
{
	struct http_conn *c = req->conn;
	c->responded = true;
	c->status = 101;
	conn_write(c, head, head_len, NULL, 0);
	log_access(req->method, req->target ? req->target : "-", 101, c->bytes_out,
		   (double)(uv_hrtime() / 1000 - req->start_ms) / 1000.0);
	metrics_http_request(req->method, route_pattern(c->match.route), 101,
			     (double)(uv_hrtime() / 1000 - req->start_ms) / 1e6);
	req_clear(c);
	c->state = CS_UPGRADED;
	conn_streaming(c);
	c->up = *cbs;
	c->up_data = data;
	timer_set(c, 0);
	/* early bytes are delivered by conn_process once the handler returns */
	return (struct http_upgraded *)c;
}

int http_upgraded_write(struct http_upgraded *u, const void *bytes, size_t len)
{
	struct http_conn *c = (struct http_conn *)u;
	if (c->closing || c->state != CS_UPGRADED)
		return -EPIPE;
	conn_write(c, bytes, len, NULL, 0);
	return c->closing ? -EPIPE : 0;
}

int http_upgraded_write_bytes(struct http_upgraded *u, struct http_bytes *b)
{
	struct http_conn *c = (struct http_conn *)u;
	if (c->closing || c->state != CS_UPGRADED)
		return -EPIPE;
	conn_push(c, http_bytes_ref(b), 0, b->len);
	return c->closing ? -EPIPE : 0;
}

size_t http_upgraded_pending(const struct http_upgraded *u)
{
	return ((const struct http_conn *)u)->write_pending;
}

void http_upgraded_pause(struct http_upgraded *u, bool paused)
{
	struct http_conn *c = (struct http_conn *)u;
	c->up_paused = paused;
	read_control(c);
}

void http_upgraded_close(struct http_upgraded *u)
{
	struct http_conn *c = (struct http_conn *)u;
	if (c->closing || c->state != CS_UPGRADED)
		return;
	c->state = CS_LINGER;
	c->linger_bytes = 0;
	c->up_paused = false;
	timer_set(c, LINGER_MS);
	read_control(c);
	conn_linger(c);
}

void http_upgraded_abort(struct http_upgraded *u)
{
	conn_close((struct http_conn *)u);
}

/* ---- server ---- */

struct http_server *http_server_new(uv_loop_t *loop, const struct http_limits *lim,
				    struct router *router)
{
	struct http_server *srv = xcalloc(1, sizeof *srv);
	srv->loop = loop;
	list_init(&srv->conns);
	srv->lim = *lim;
	srv->router = router;
	llhttp_settings_init(&srv->settings);
	srv->settings.on_message_begin = on_message_begin;
	srv->settings.on_url = on_url;
	srv->settings.on_header_field = on_header_field;
	srv->settings.on_header_value = on_header_value;
	srv->settings.on_header_value_complete = on_header_value_complete;
	srv->settings.on_headers_complete = on_headers_complete;
	srv->settings.on_body = on_body;
	srv->settings.on_message_complete = on_message_complete;
	return srv;
}

int http_server_listen(struct http_server *srv, const char *listen)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	if (!colon || (size_t)(colon - listen) >= sizeof host)
		return UV_EINVAL;
	size_t hl = (size_t)(colon - listen);
	memcpy(host, listen, hl);
	host[hl] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || colon[1] == '\0')
		return UV_EINVAL;
	struct sockaddr_storage ss;
	int rc;
	if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		rc = uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)&ss);
	} else {
		rc = uv_ip4_addr(hl ? host : "0.0.0.0", (int)port, (struct sockaddr_in *)&ss);
	}
	if (rc < 0)
		return rc;
	uv_tcp_init(srv->loop, &srv->listener);
	srv->listener.data = srv;
	srv->listening = true;
	rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
	if (rc < 0)
		return rc;
	struct sockaddr_storage bound;
	int len = sizeof bound;
	uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
	srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						       : ((struct sockaddr_in *)&bound)->sin_port);
	return 0;
}

int http_server_port(const struct http_server *srv)
{
	return srv->port;
}

unsigned http_server_connections(const struct http_server *srv)
{
	return srv->n_conns;
}

size_t http_server_buffered_body(const struct http_server *srv)
{
	return srv->body_bytes;
}

static void on_server_handle_closed(uv_handle_t *h)
{
	struct http_server *srv = h->data;
	srv->pending_closes--;
	server_check_done(srv);
}

/* During a shutdown: once the last connection is gone, closes the deadline
 * timer, then reports completion. */
static void server_check_done(struct http_server *srv)
{
	if (!srv->shutting_down || srv->n_conns)
		return;
	if (srv->shutdown_timer_init && !uv_is_closing((uv_handle_t *)&srv->shutdown_timer)) {
		srv->pending_closes++;
		uv_close((uv_handle_t *)&srv->shutdown_timer, on_server_handle_closed);
	}
	if (srv->pending_closes == 0 && !srv->done_called && srv->on_done) {
		srv->done_called = true;
		srv->on_done(srv->done_data);
	}
}

static void on_shutdown_deadline(uv_timer_t *t)
{
	struct http_server *srv = t->data;
	if (srv->n_conns)
		log_warn("http: %u connections still busy after the shutdown deadline, closing them",
			 srv->n_conns);
	struct http_conn *c, *tmp;
	list_each_safe(c, tmp, &srv->conns, link)
	{
		conn_close(c);
	}
}

void http_server_shutdown(struct http_server *srv, void (*on_done)(void *data), void *data)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	srv->on_done = on_done;
	srv->done_data = data;
	if (srv->listening) {
		srv->pending_closes++;
		uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
	}
	if (srv->refusal_timer_init) {
		if (srv->refused_total)
			on_refusal_tick(&srv->refusal_timer);
		srv->pending_closes++;
		uv_close((uv_handle_t *)&srv->refusal_timer, on_server_handle_closed);
	}
	struct http_conn *c, *tmp;
	list_each_safe(c, tmp, &srv->conns, link)
	{
		if (c->state == CS_HANDLING) {
			c->close_after = true;
			if (c->req.on_shutdown)
				c->req.on_shutdown(&c->req, c->req.abort_data);
		} else if (c->state == CS_UPGRADED) {
			if (c->up.on_shutdown)
				c->up.on_shutdown(c->up_data);
			else
				conn_close(c);
		} else if (c->state != CS_LINGER || !c->write_pending) {
			conn_close(c);
		}
	}
	uv_timer_init(srv->loop, &srv->shutdown_timer);
	srv->shutdown_timer.data = srv;
	srv->shutdown_timer_init = true;
	uv_timer_start(&srv->shutdown_timer, on_shutdown_deadline, srv->lim.shutdown_timeout_ms, 0);
	server_check_done(srv);
}

void http_server_free(struct http_server *srv)
{
	strmap_clear(&srv->per_client, NULL);
	free(srv);
}

/* ---- detached connections (fuzzing) ---- */

struct http_conn *http_conn_new_detached(struct http_server *srv)
{
	struct http_conn *c = xcalloc(1, sizeof *c);
	c->detached = true;
	conn_init(srv, c);
	return c;
}

void http_conn_feed(struct http_conn *c, const char *data, size_t len)
{
	if (c->closing || c->state == CS_LINGER)
		return;
	if (c->state == CS_UPGRADED) {
		c->up.on_data(c->up_data, data, len);
		return;
	}
	if (c->in_off) {
		buf_consume(&c->in, c->in_off);
		c->in_off = 0;
	}
	buf_append(&c->in, data, len);
	if (!c->processing)
		conn_process(c);
}

void http_conn_free_detached(struct http_conn *c)
{
	conn_close(c);
	c->srv->n_conns--;
	buf_free(&c->in);
	buf_free(&c->hname);
	buf_free(&c->hvalue);
	buf_free(&c->url);
	buf_free(&c->resp_headers);
	free(c);
}
