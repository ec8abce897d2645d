/* libcurl multi on libuv. The shape follows libcurl's multi-uv example:
 * curl tells us which sockets to watch (on_curl_socket) and when to wake it
 * (on_curl_timer); we tell curl what happened (curl_multi_socket_action) and
 * then collect finished transfers (drain).
 *
 * Lifetimes: a request is created by curl_uv_start and queued on `todo`; the
 * defer timer adds it to the multi. It completes exactly once, in `finish`,
 * called from drain (curl reported it done), from the defer timer (cancelled)
 * or from teardown (closing). finish removes the easy handle first, so no
 * easy handle is ever removed or freed inside a libcurl callback.
 *
 * Streamed requests go to a second instance (`streams`, its own multi handle
 * and connection cache: see curl_uv.h for the libcurl 7.88 bug this avoids).
 * Deadlines are ours too: libcurl's pre-request callback starts the
 * first-byte clock and the first header line stops it; the overall timeout
 * is watched as well, since libcurl 7.88 does not enforce CURLOPT_TIMEOUT
 * on a transfer queued for a free connection (CURLMOPT_MAX_HOST_CONNECTIONS:
 * it checks timeouts only once a connection is attached). One timer
 * (`deadlines`) completes overdue requests from the loop, not from libcurl. */
#include "curl_uv.h"

#include "list.h"
#include "log.h"
#include "util.h"

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DEFAULT_MAX_RESPONSE (64u << 20)
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_MAX_IDLE_S 50L
#define END_GRACE_MS 250
#define PORT_USES 64

struct sock_ctx {
	uv_poll_t poll;
	struct curl_uv *cu;
	curl_socket_t fd;
	struct list link; /* in cu->socks */
};

struct curl_uv_request {
	struct curl_uv *cu;
	CURL *easy;
	struct curl_slist *headers;
	struct buf body;
	size_t max_response;
	curl_uv_data_cb on_data;
	curl_uv_done_cb on_done;
	void *data;
	bool added;     /* in the multi */
	bool cancelled;
	bool aborted;   /* on_data returned false */
	bool too_big;
	bool in_todo;
	bool request_sent;     /* libcurl's pre-request callback ran */
	bool response_started; /* a header line arrived */
	bool fb_expired;       /* completed by the first-byte deadline */
	bool end_expired;      /* completed by our watch of the overall timeout */
	bool in_timed;         /* on cu->timed */
	bool stale;            /* sent on a kept-alive connection idle for a while */
	long fb_timeout_ms;
	long stale_fb_timeout_ms;
	long fb_used_ms;       /* the bound applied */
	long timeout_ms;
	uint64_t fb_deadline;  /* 0: none (not sent yet, or answered) */
	uint64_t end_deadline; /* 0: none */
	struct list link;       /* in cu->reqs */
	struct list todo_link;  /* in cu->todo when in_todo */
	struct list timed_link; /* in cu->timed when in_timed */
	char errbuf[CURL_ERROR_SIZE];
};

struct curl_uv {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer; /* curl's timeout */
	uv_timer_t defer; /* adds new requests, completes cancelled ones */
	uv_timer_t deadlines; /* first-byte and overall deadlines */
	int open_handles; /* uv handles not yet closed; cu is freed at 0 */
	int depth;        /* > 0 while inside curl_multi_socket_action */
	bool closing;
	bool torn_down;
	size_t active;
	unsigned long connections; /* opened so far */
	struct curl_uv_options opt;
	struct curl_uv *streams;   /* streamed requests; NULL in that instance */
	struct list reqs;  /* struct curl_uv_request */
	struct list todo;  /* the same, to add or complete, oldest first */
	struct list timed; /* the same, with a deadline, unordered */
	struct list socks; /* struct sock_ctx */
	/* When each kept-alive connection (known by its local port: unique per
	 * host) was last used: a request's start or end. */
	struct port_use {
		int port;
		uint64_t last_ms;
	} ports[PORT_USES];
};

static void teardown(struct curl_uv *cu);

static void maybe_free(struct curl_uv *cu)
{
	if (cu->open_handles == 0 && cu->torn_down)
		free(cu);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct curl_uv *cu = h->data;
	cu->open_handles--;
	maybe_free(cu);
}

/* ---- sockets ---- */

static void on_sock_closed(uv_handle_t *h)
{
	struct sock_ctx *s = CONTAINER_OF(h, struct sock_ctx, poll);
	struct curl_uv *cu = s->cu;
	free(s);
	cu->open_handles--;
	maybe_free(cu);
}

static void sock_close(struct sock_ctx *s)
{
	list_remove(&s->link);
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void drain(struct curl_uv *cu);

static void socket_action(struct curl_uv *cu, curl_socket_t fd, int flags)
{
	int running = 0;
	cu->depth++;
	curl_multi_socket_action(cu->multi, fd, flags, &running);
	cu->depth--;
	drain(cu);
	if (cu->closing && !cu->torn_down && cu->depth == 0)
		teardown(cu);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct sock_ctx *s = CONTAINER_OF(h, struct sock_ctx, poll);
	struct curl_uv *cu = s->cu;
	if (cu->torn_down)
		return;
	int flags = 0;
	if (status < 0) {
		flags = CURL_CSELECT_ERR;
	} else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	socket_action(cu, s->fd, flags);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	UNUSED(easy);
	struct curl_uv *cu = userp;
	struct sock_ctx *s = socketp;

	if (cu->torn_down && what != CURL_POLL_REMOVE)
		return 0;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(cu->multi, fd, NULL);
			uv_poll_stop(&s->poll);
			sock_close(s);
		}
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->cu = cu;
		s->fd = fd;
		if (uv_poll_init_socket(cu->loop, &s->poll, fd) != 0) {
			log_error("curl_uv: cannot poll socket %d", (int)fd);
			free(s);
			return -1;
		}
		cu->open_handles++;
		list_push_front(&cu->socks, &s->link);
		curl_multi_assign(cu->multi, fd, s);
	}
	int events = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	if (uv_poll_start(&s->poll, events, on_poll) != 0)
		return -1;
	return 0;
}

/* ---- timers ---- */

static void on_timeout(uv_timer_t *t)
{
	struct curl_uv *cu = t->data;
	if (cu->torn_down)
		return;
	socket_action(cu, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	UNUSED(multi);
	struct curl_uv *cu = userp;
	if (cu->torn_down)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&cu->timer);
	else
		uv_timer_start(&cu->timer, on_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- requests ---- */

static void todo_push(struct curl_uv *cu, struct curl_uv_request *r)
{
	if (r->in_todo)
		return;
	r->in_todo = true;
	list_push(&cu->todo, &r->todo_link);
}

static void todo_unlink(struct curl_uv *cu, struct curl_uv_request *r)
{
	UNUSED(cu);
	if (!r->in_todo)
		return;
	list_remove(&r->todo_link);
	r->in_todo = false;
}

static void timed_unlink(struct curl_uv *cu, struct curl_uv_request *r)
{
	UNUSED(cu);
	if (!r->in_timed)
		return;
	list_remove(&r->timed_link);
	r->in_timed = false;
}

static void timed_link(struct curl_uv *cu, struct curl_uv_request *r)
{
	if (r->in_timed)
		return;
	r->in_timed = true;
	list_push_front(&cu->timed, &r->timed_link);
}

static uint64_t next_deadline(const struct curl_uv_request *r)
{
	uint64_t d = UINT64_MAX;
	if (r->fb_deadline)
		d = r->fb_deadline;
	if (r->end_deadline && r->end_deadline < d)
		d = r->end_deadline;
	return d;
}

static void on_deadline(uv_timer_t *t);

/* Arms the deadline timer for the earliest deadline (or stops it). */
static void deadlines_rearm(struct curl_uv *cu)
{
	if (cu->torn_down)
		return;
	uint64_t first = UINT64_MAX;
	struct curl_uv_request *r;
	list_each(r, &cu->timed, timed_link)
	{
		uint64_t d = next_deadline(r);
		if (d < first)
			first = d;
	}
	if (first == UINT64_MAX) {
		uv_timer_stop(&cu->deadlines);
		return;
	}
	uint64_t now = now_ms();
	uv_timer_start(&cu->deadlines, on_deadline, first > now ? first - now : 0, 0);
}

/* The last use of the connection on local port `port` (0: unknown). */
static uint64_t port_last_use(const struct curl_uv *cu, long port)
{
	for (int i = 0; i < PORT_USES; i++)
		if (cu->ports[i].port == port && port > 0)
			return cu->ports[i].last_ms;
	return 0;
}

static void port_used(struct curl_uv *cu, long port, uint64_t now)
{
	if (port <= 0 || port > 65535)
		return;
	int slot = 0;
	for (int i = 0; i < PORT_USES; i++) {
		if (cu->ports[i].port == port) {
			slot = i;
			break;
		}
		if (cu->ports[i].last_ms < cu->ports[slot].last_ms)
			slot = i; /* the least recently used, or a free one */
	}
	cu->ports[slot].port = (int)port;
	cu->ports[slot].last_ms = now;
}

/* Detaches r from cu's lists, so that nothing (teardown included) can reach
 * it while its done callback runs. */
static void req_unlink(struct curl_uv_request *r)
{
	struct curl_uv *cu = r->cu;
	todo_unlink(cu, r);
	timed_unlink(cu, r);
	list_remove(&r->link);
	cu->active--;
}

static void req_free(struct curl_uv_request *r)
{
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	buf_free(&r->body);
	free(r);
}

static int map_curl_error(struct curl_uv_request *r, CURLcode rc)
{
	if (r->cancelled)
		return -ECANCELED;
	if (r->too_big)
		return -EMSGSIZE;
	if (r->aborted)
		return -ECONNABORTED;
	if (r->fb_expired || r->end_expired)
		return -ETIMEDOUT;
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT: {
		long os = 0;
		curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os);
		if (os == EHOSTUNREACH || os == ENETUNREACH)
			return -EHOSTUNREACH;
		return -ECONNREFUSED;
	}
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* Whether a failure with rc is one of the connection (see curl_uv.h). */
static bool is_conn_failure(const struct curl_uv_request *r, CURLcode rc)
{
	if (r->cancelled || r->too_big || r->aborted)
		return false;
	if (r->fb_expired)
		return true;
	if (r->end_expired)
		return false;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	case CURLE_UNSUPPORTED_PROTOCOL:
		/* before sending: a URL we refuse; after: "Received HTTP/0.9" */
		return r->request_sent;
	case CURLE_OPERATION_TIMEDOUT: {
		/* the connect timeout (a blackholed address), not the overall one */
		curl_off_t us = 0;
		curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &us);
		return !r->request_sent && (r->timeout_ms <= 0 || us / 1000 + 50 < r->timeout_ms);
	}
	default:
		return false;
	}
}

/* Completes r exactly once: removes it from the multi, calls on_done, frees.
 * Never called from inside a libcurl callback. */
static void finish(struct curl_uv_request *r, CURLcode rc)
{
	struct curl_uv *cu = r->cu;
	if (r->added && rc == CURLE_OK && r->request_sent) {
		/* the connection may be kept alive: when it was last used */
		long port = 0;
		curl_easy_getinfo(r->easy, CURLINFO_LOCAL_PORT, &port);
		port_used(cu, port, now_ms());
	}
	if (r->added) {
		curl_multi_remove_handle(cu->multi, r->easy);
		r->added = false;
	}
	req_unlink(r);
	struct curl_uv_response res = {0};
	res.error = map_curl_error(r, rc);
	res.request_sent = r->request_sent;
	res.response_started = r->response_started;
	res.first_byte_timeout = r->fb_expired;
	res.stale_connection = r->stale;
	res.conn_failed = res.error != 0 && is_conn_failure(r, rc);
	curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &res.new_connections);
	if (res.new_connections > 0)
		cu->connections += (unsigned long)res.new_connections;
	char fbmsg[128];
	if (res.error == 0 || res.error == -ECONNABORTED)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
	if (res.error == -ECANCELED) {
		res.error_message = "cancelled";
	} else if (res.error == -EMSGSIZE) {
		res.error_message = "response larger than the limit";
	} else if (res.error == -ECONNABORTED) {
		res.error_message = "aborted by the receiver";
	} else if (r->fb_expired) {
		snprintf(fbmsg, sizeof(fbmsg),
			 "no response within %ld ms of sending the request (first-byte timeout%s)",
			 r->fb_used_ms, r->stale ? ", on a connection idle before" : "");
		res.error_message = fbmsg;
	} else if (r->end_expired) {
		snprintf(fbmsg, sizeof(fbmsg), "Operation timed out after %ld milliseconds%s",
			 r->timeout_ms, r->request_sent ? "" : " (waiting for a connection)");
		res.error_message = fbmsg;
	} else if (res.error) {
		res.error_message = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
	} else {
		res.error_message = "";
	}
	res.body = r->body.data ? r->body.data : "";
	res.body_len = r->body.len;
	r->on_done(r, &res, r->data);
	req_free(r);
}

static void drain(struct curl_uv *cu)
{
	CURLMsg *msg;
	int left;
	while (!cu->torn_down && (msg = curl_multi_info_read(cu->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct curl_uv_request *r = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		CURLcode rc = msg->data.result;
		finish(r, rc);
		if (cu->closing)
			break;
	}
}

static void on_defer(uv_timer_t *t)
{
	struct curl_uv *cu = t->data;
	if (cu->torn_down)
		return;
	struct curl_uv_request *r;
	while (!cu->closing && (r = list_first(&cu->todo, struct curl_uv_request, todo_link))) {
		todo_unlink(cu, r);
		if (r->cancelled) {
			finish(r, CURLE_ABORTED_BY_CALLBACK);
		} else if (!r->added) {
			CURLMcode mc = curl_multi_add_handle(cu->multi, r->easy);
			if (mc != CURLM_OK) {
				snprintf(r->errbuf, sizeof(r->errbuf), "curl_multi_add_handle: %s",
					 curl_multi_strerror(mc));
				finish(r, CURLE_FAILED_INIT);
			} else {
				r->added = true;
			}
		}
	}
	/* transfers that completed inside curl_uv_flush */
	if (!cu->closing)
		drain(cu);
	if (cu->closing && !cu->torn_down && cu->depth == 0)
		teardown(cu);
}

static void schedule(struct curl_uv *cu)
{
	uv_timer_start(&cu->defer, on_defer, 0, 0);
}

void curl_uv_flush(struct curl_uv *cu)
{
	if (!cu || cu->closing || cu->torn_down || cu->depth > 0)
		return;
	bool added = false;
	struct curl_uv_request *r, *tmp;
	list_each_safe(r, tmp, &cu->todo, todo_link)
	{
		/* cancelled ones, and a failed add (reported there), are left
		 * to on_defer: it may complete them */
		if (r->cancelled || r->added || curl_multi_add_handle(cu->multi, r->easy) != CURLM_OK)
			continue;
		r->added = true;
		todo_unlink(cu, r);
		added = true;
	}
	if (!added)
		return;
	/* a new handle is due at once: this runs it as far as it can go now
	 * (on a ready connection: the request written); libcurl calls none of
	 * our code that completes a request (no streams in this instance) */
	int running = 0;
	cu->depth++;
	curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	cu->depth--;
	schedule(cu); /* on_defer drains what completed */
}

/* libcurl is about to send the request on a ready connection (also again
 * when it retries on a fresh connection by itself): the first-byte clock
 * starts. */
static int on_prereq(void *userp, char *primary_ip, char *local_ip, int primary_port,
		     int local_port)
{
	UNUSED(primary_ip);
	UNUSED(local_ip);
	UNUSED(primary_port);
	struct curl_uv_request *r = userp;
	struct curl_uv *cu = r->cu;
	uint64_t now = now_ms();
	r->request_sent = true;
	/* a kept-alive connection that was idle for a while may be dead */
	long opened = 0;
	curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &opened);
	uint64_t last = opened ? 0 : port_last_use(cu, local_port);
	r->stale = last && now - last >= CURL_UV_STALE_IDLE_MS;
	port_used(cu, local_port, now);
	r->fb_used_ms = r->fb_timeout_ms;
	if (r->stale && r->stale_fb_timeout_ms > 0 &&
	    (r->fb_used_ms <= 0 || r->stale_fb_timeout_ms < r->fb_used_ms))
		r->fb_used_ms = r->stale_fb_timeout_ms;
	if (r->fb_used_ms > 0 && !r->response_started && !cu->torn_down) {
		r->fb_deadline = now + (uint64_t)r->fb_used_ms;
		timed_link(cu, r);
		deadlines_rearm(cu);
	}
	return CURL_PREREQFUNC_OK;
}

static void got_first_byte(struct curl_uv_request *r)
{
	if (r->response_started)
		return;
	r->response_started = true;
	/* the timer may fire early: it finds nothing expired */
	r->fb_deadline = 0;
	if (!r->end_deadline)
		timed_unlink(r->cu, r);
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userp)
{
	UNUSED(ptr);
	got_first_byte(userp);
	return size * nmemb;
}

/* Completes the requests whose first byte, or whose end, is overdue. From
 * the loop, never from inside libcurl: removing easy handles is allowed. */
static void on_deadline(uv_timer_t *t)
{
	struct curl_uv *cu = t->data;
	if (cu->torn_down || cu->closing)
		return;
	uint64_t now = now_ms();
	for (;;) {
		struct curl_uv_request *r, *due = NULL;
		list_each(r, &cu->timed, timed_link)
		{
			if (next_deadline(r) <= now) {
				due = r;
				break;
			}
		}
		if (!due || cu->closing)
			break;
		r = due;
		timed_unlink(cu, r);
		if (r->fb_deadline && r->fb_deadline <= now)
			r->fb_expired = true;
		else
			r->end_expired = true;
		/* a silent connection is closed, not kept for the next request
		 * (HTTP/1.1 closes it anyway; an HTTP/2 one closes when its
		 * last stream leaves) */
		if (r->fb_expired)
			curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
		finish(r, CURLE_OPERATION_TIMEDOUT);
	}
	if (cu->closing && !cu->torn_down && cu->depth == 0)
		teardown(cu);
	else
		deadlines_rearm(cu);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userp)
{
	struct curl_uv_request *r = userp;
	size_t n = size * nmemb;
	got_first_byte(r);
	if (r->cancelled)
		return 0;
	long status = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (r->on_data && status >= 200 && status < 300) {
		if (!r->on_data(r, ptr, n, r->data)) {
			r->aborted = true;
			return 0;
		}
		return r->cancelled ? 0 : n;
	}
	if (r->body.len + n > r->max_response) {
		r->too_big = true;
		return 0;
	}
	buf_append(&r->body, ptr, n);
	return n;
}

static struct curl_uv *new_instance(uv_loop_t *loop, const struct curl_uv_options *o,
				    bool streams)
{
	static bool global_done;
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			log_error("curl_uv: curl_global_init failed");
			abort();
		}
		global_done = true;
	}
	struct curl_uv *cu = xcalloc(1, sizeof(*cu));
	cu->loop = loop;
	list_init(&cu->reqs);
	list_init(&cu->todo);
	list_init(&cu->timed);
	list_init(&cu->socks);
	cu->multi = curl_multi_init();
	if (!cu->multi) {
		log_error("curl_uv: curl_multi_init failed");
		abort();
	}
	curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
	curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
	if (o)
		cu->opt = *o;
	if (cu->opt.max_idle_s <= 0)
		cu->opt.max_idle_s = DEFAULT_MAX_IDLE_S;
	bool multiplex = !streams && !cu->opt.http1_only;
	curl_multi_setopt(cu->multi, CURLMOPT_PIPELINING,
			  multiplex ? (long)CURLPIPE_MULTIPLEX : (long)CURLPIPE_NOTHING);
	if (!streams && cu->opt.max_host_connections > 0) {
		curl_multi_setopt(cu->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
				  cu->opt.max_host_connections);
		/* keep the pool when a burst ends: by default the cache holds 4
		 * connections per easy handle still added, and shrinks with them */
		curl_multi_setopt(cu->multi, CURLMOPT_MAXCONNECTS, cu->opt.max_host_connections);
	}
	uv_timer_init(loop, &cu->timer);
	cu->timer.data = cu;
	uv_timer_init(loop, &cu->defer);
	cu->defer.data = cu;
	uv_timer_init(loop, &cu->deadlines);
	cu->deadlines.data = cu;
	cu->open_handles = 3;
	if (!streams)
		cu->streams = new_instance(loop, o, true);
	return cu;
}

struct curl_uv *curl_uv_new_opts(uv_loop_t *loop, const struct curl_uv_options *o)
{
	return new_instance(loop, o, false);
}

struct curl_uv *curl_uv_new(uv_loop_t *loop)
{
	return new_instance(loop, NULL, false);
}

static void set_blob(CURL *e, CURLoption opt, const char *data, size_t len)
{
	struct curl_blob blob = {.data = (void *)data, .len = len, .flags = CURL_BLOB_COPY};
	curl_easy_setopt(e, opt, &blob);
}

/* libcurl 7.88 has no option for the keepalive probe count (8.9 added
 * CURLOPT_TCP_KEEPCNT) and Linux's default, 9, makes a vanished peer
 * noticed only after 2 minutes: set on every new socket; a failure leaves
 * the system default (and the connection usable). */
#define CURL_UV_KEEPALIVE_PROBES 3
static int on_sockopt(void *data, curl_socket_t fd, curlsocktype purpose)
{
	(void)data;
#ifdef TCP_KEEPCNT
	if (purpose == CURLSOCKTYPE_IPCXN) {
		int n = CURL_UV_KEEPALIVE_PROBES;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &n, sizeof n);
	}
#else
	(void)fd;
	(void)purpose;
#endif
	return CURL_SOCKOPT_OK;
}

struct curl_uv_request *curl_uv_start(struct curl_uv *cu, const struct curl_uv_request_opts *o)
{
	if (cu->closing || !o->url || !o->on_done)
		return NULL;
	if (o->on_data && cu->streams)
		return curl_uv_start(cu->streams, o);
	struct curl_uv_request *r = xcalloc(1, sizeof(*r));
	r->cu = cu;
	r->easy = curl_easy_init();
	if (!r->easy) {
		log_error("curl_uv: curl_easy_init failed");
		abort();
	}
	r->on_data = o->on_data;
	r->on_done = o->on_done;
	r->data = o->data;
	r->max_response = o->max_response ? o->max_response : DEFAULT_MAX_RESPONSE;

	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_URL, o->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
	curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, cu->opt.max_idle_s);
	r->fb_timeout_ms = o->first_byte_timeout_ms > 0 ? o->first_byte_timeout_ms : 0;
	r->stale_fb_timeout_ms = o->stale_first_byte_timeout_ms > 0 ? o->stale_first_byte_timeout_ms : 0;
	/* libcurl counts idle time in whole seconds: 0 passes over a
	 * connection idle for CURL_UV_STALE_IDLE_MS (1 s) or more */
	if (o->avoid_stale)
		curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, 0L);
	r->timeout_ms = o->timeout_ms;
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	if (o->on_data) {
		/* A long stream (watch, log) gets an HTTP/1.1 connection of its
		 * own, used once (this instance's multi holds streams only, so
		 * no buffered request can be attached to it either). */
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	} else if (cu->opt.http1_only) {
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	} else {
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
		/* Over TLS, ALPN tells at once whether a connection
		 * multiplexes: wait for it rather than open another. Over plain
		 * HTTP/1.1 that wait would last until a response's headers
		 * arrive. */
		if (strncasecmp(o->url, "https://", 8) == 0)
			curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	}
	/* long watches: notice a peer that vanished (no answer to the
	 * probes: host gone, path cut, NAT state lost) within about a minute:
	 * 30 s idle, then CURL_UV_KEEPALIVE_PROBES probes 10 s apart */
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
	/* compressed bodies for buffered responses; a stream stays plain so that
	 * each chunk is delivered as it arrives */
	if (!o->on_data)
		curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS);
	if (o->timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	if (o->user_agent)
		curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
	if (o->userpwd) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERPWD, o->userpwd);
	}

	const char *method = o->method ? o->method : "GET";
	if (o->body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	    strcmp(method, "PATCH") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? (const char *)o->body : "");
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}

	/* No "Expect: 100-continue" round trip for large bodies. */
	r->headers = curl_slist_append(r->headers, "Expect:");
	for (const char *const *h = o->headers; h && *h; h++)
		r->headers = curl_slist_append(r->headers, *h);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);

	if (o->tls) {
		if (o->tls->ca_pem)
			set_blob(e, CURLOPT_CAINFO_BLOB, o->tls->ca_pem, o->tls->ca_len);
		if (o->tls->cert_pem) {
			set_blob(e, CURLOPT_SSLCERT_BLOB, o->tls->cert_pem, o->tls->cert_len);
			curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
		}
		if (o->tls->key_pem) {
			set_blob(e, CURLOPT_SSLKEY_BLOB, o->tls->key_pem, o->tls->key_len);
			curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
		}
		if (o->tls->insecure) {
			curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
			curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
		}
	}

	list_push_front(&cu->reqs, &r->link);
	cu->active++;
	if (o->timeout_ms > 0) {
		/* libcurl reports its own timeout first when it can (grace) */
		r->end_deadline = now_ms() + (uint64_t)o->timeout_ms + END_GRACE_MS;
		timed_link(cu, r);
		deadlines_rearm(cu);
	}
	todo_push(cu, r);
	schedule(cu);
	return r;
}

void curl_uv_cancel(struct curl_uv_request *r)
{
	if (r->cancelled)
		return;
	r->cancelled = true;
	todo_push(r->cu, r);
	if (!r->cu->closing)
		schedule(r->cu);
}

const char *curl_uv_response_header(struct curl_uv_request *r, const char *name)
{
	struct curl_header *h = NULL;
	if (curl_easy_header(r->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
		return NULL;
	if (h->amount > 1 &&
	    curl_easy_header(r->easy, name, h->amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK)
		return NULL;
	return h->value;
}

long curl_uv_response_status(struct curl_uv_request *r)
{
	long status = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

int curl_uv_http_version(struct curl_uv_request *r)
{
	long v = 0;
	curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &v);
	switch (v) {
	case CURL_HTTP_VERSION_1_0:
	case CURL_HTTP_VERSION_1_1:
		return 1;
	case CURL_HTTP_VERSION_2_0:
		return 2;
	default:
		return 0;
	}
}

size_t curl_uv_active(const struct curl_uv *cu)
{
	return cu->active + (cu->streams ? cu->streams->active : 0);
}

unsigned long curl_uv_connections_opened(const struct curl_uv *cu)
{
	return cu->connections + (cu->streams ? cu->streams->connections : 0);
}

static void teardown(struct curl_uv *cu)
{
	/* Completing a request may run code that starts others: refused. */
	struct curl_uv_request *r;
	while ((r = list_first(&cu->reqs, struct curl_uv_request, link))) {
		r->cancelled = true;
		finish(r, CURLE_ABORTED_BY_CALLBACK);
	}
	cu->torn_down = true;
	curl_multi_cleanup(cu->multi);
	cu->multi = NULL;
	struct sock_ctx *s;
	while ((s = list_first(&cu->socks, struct sock_ctx, link))) {
		uv_poll_stop(&s->poll);
		sock_close(s);
	}
	uv_close((uv_handle_t *)&cu->timer, on_handle_closed);
	uv_close((uv_handle_t *)&cu->defer, on_handle_closed);
	uv_close((uv_handle_t *)&cu->deadlines, on_handle_closed);
}

void curl_uv_close(struct curl_uv *cu)
{
	if (!cu || cu->closing)
		return;
	cu->closing = true;
	/* the streams first: their callbacks run before this returns too */
	struct curl_uv *streams = cu->streams;
	cu->streams = NULL;
	curl_uv_close(streams);
	/* From inside on_data: finished after curl_multi_socket_action returns. */
	if (cu->depth > 0)
		return;
	teardown(cu);
}
