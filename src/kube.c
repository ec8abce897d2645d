/* The Kubernetes client. A call goes through these stages, each a queue:
 *
 *   start ──▶ (discovery: waits on its group/version) ──▶ rl (token bucket)
 *         ──▶ send ──(credentials from an exec plugin?)──▶ cred ──▶ in flight
 *         ──▶ 429/503: retry (timer) ──▶ rl ...   401: credentials refreshed, send again
 *         ──▶ connection failed before any answer, call safe to repeat:
 *             retry (timer, jittered backoff) ──▶ rl ...
 *         ──▶ finished (the completion callback, then freed)
 *
 * A call's deadline starts when its first request is sent (a list: each
 * page) and bounds every attempt and every pause between attempts.
 * Watches and streamed logs skip the rate limiter. One uv timer ("wake")
 * drives every stage, so that no completion runs inside the function that
 * started or cancelled a call. */
#include "kube.h"
#include "json_skim.h"

#include "backoff.h"
#include "curl_uv.h"
#include "kube_cred.h"
#include "kubeconfig.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_QPS 20.0
#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_MAX_RETRIES 5
#define DEFAULT_MAX_RESPONSE (64u << 20)
#define DEFAULT_PAGE 500
#define MAX_RETRY_AFTER_S 60
#define STATUS_MESSAGE_MAX 2048
#define DEFAULT_FIRST_BYTE_MS 10000L
#define DEFAULT_STALE_FIRST_BYTE_MS 3000L
#define DEFAULT_CONN_RETRIES 3
#define DEFAULT_MAX_CONNECTIONS 32
/* pauses between repeats of a call whose connection failed: 50-100 ms,
 * 100-200 ms, 200-400 ms, ... at most 1 s */
#define CONN_RETRY_BASE_MS 100
#define CONN_RETRY_MAX_MS 1000
/* how long idle connections are passed over after one was found dead */
#define DISTRUST_IDLE_MS 30000
/* an attempt with less time than this left is not worth starting */
#define MIN_ATTEMPT_MS 200

enum op {
	OP_GET,
	OP_LIST,
	OP_CREATE,
	OP_APPLY,
	OP_PATCH,
	OP_DELETE,
	OP_DELETECOLL,
	OP_WATCH,
	OP_LOG,
	OP_DISCOVER,
	OP_RAW,
	OP_FETCH_GV, /* internal: discovery of one group/version */
};

struct queue {
	struct list calls; /* struct kube_call, by qlink */
};

struct res_entry {
	struct kube_resource r;
	struct res_entry *next;
};

/* A discovered group/version. Entries are never freed before the client,
 * since calls keep pointers to them. */
struct gv {
	char *api_version;
	struct res_entry *res;
	bool loaded;
	bool fetching;
	struct queue waiters;
	struct gv *next;
};

struct kube_call {
	struct kube *k;
	enum op op;
	kube_done_cb done;
	kube_event_cb on_event;
	kube_data_cb on_data;
	bool (*on_page)(json_t *page, void *data);
	bool (*on_page_text)(const char *text, size_t len, void *data);
	void *data;
	/* what */
	char *api_version, *kind, *ns, *name, *sub;
	const struct kube_resource *res;
	bool rediscovered;
	struct gv *fetch_gv; /* OP_FETCH_GV */
	/* the request */
	char method[16];
	char *path;  /* without the query */
	char *query; /* "" or "?a=b&c=d" (without limit/continue) */
	char *content_type;
	char *body;
	size_t body_len;
	bool stream;
	int limit;
	char *cont;
	json_t *acc;
	struct kube_lines lines;
	char *stream_error;
	/* state */
	struct curl_uv_request *req;
	struct queue *q;    /* the stage it waits in, or NULL */
	struct list qlink; /* in q->calls */
	struct list link; /* in kube.calls */
	uint64_t due_ms;
	int retries;
	bool auth_retried;
	bool cancelled;
	bool safe;         /* may be sent again after a connection failure */
	bool follow;       /* a followed log: no first-byte bound */
	bool uncertain;    /* an attempt may have reached the server unanswered */
	int conn_retries;
	uint64_t deadline_ms; /* 0: not sent yet (this page) */
	/* a list by page text: inside the page callback (a completion there
	 * leaves the freeing to list_page), and the body to complete with
	 * once the next page, asked for ahead, is cancelled (the caller
	 * stopped the list) */
	bool in_page, freed_in_page;
	json_t *stop_body;
	struct backoff bo;
	/* result of a call finished from the wake timer */
	int err;
	int status;
	char *message;
	uint64_t started_ns; /* for metrics */
};

struct kube {
	uv_loop_t *loop;
	uint64_t dead_conns; /* calls whose connection failed before any answer */
	/* until then, no call goes on a connection idle for a second or more:
	 * one was found dead, and the others idle as long are likely dead too */
	uint64_t distrust_idle_until_ms;
	struct kubeconfig *kc;
	struct curl_uv *cu;
	struct kube_cred *cred;
	struct kube_options opt;
	char *user_agent;
	char *userpwd;
	struct kube_bucket bucket;
	uint64_t seed;
	uint64_t seq;
	uv_timer_t wake;
	bool closing;
	struct list calls; /* struct kube_call: all of them */
	struct queue start, rl, ready, cred_wait, retry, finished;
	struct gv *gvs;
};

/* ---- queues ---- */

static void q_init(struct queue *q)
{
	list_init(&q->calls);
}

static struct kube_call *q_head(const struct queue *q)
{
	return list_first(&q->calls, struct kube_call, qlink);
}

static void q_push(struct queue *q, struct kube_call *c)
{
	c->q = q;
	list_push(&q->calls, &c->qlink);
}

static void q_remove(struct kube_call *c)
{
	if (!c->q)
		return;
	list_remove(&c->qlink);
	c->q = NULL;
}

static struct kube_call *q_pop(struct queue *q)
{
	struct kube_call *c = q_head(q);
	if (c)
		q_remove(c);
	return c;
}

/* Moves every call of from, in order, to the empty queue to. */
static void q_take(struct queue *to, struct queue *from)
{
	q_init(to);
	struct kube_call *c;
	while ((c = q_pop(from)))
		q_push(to, c);
}

/* ---- pure helpers ---- */

void kube_bucket_init(struct kube_bucket *b, double qps, int burst, uint64_t now)
{
	b->qps = qps;
	b->burst = burst >= 1 ? burst : 1;
	b->tokens = b->burst;
	b->last_ms = now;
}

uint64_t kube_bucket_take(struct kube_bucket *b, uint64_t now)
{
	if (b->qps <= 0)
		return 0;
	if (now > b->last_ms) {
		b->tokens += (double)(now - b->last_ms) * b->qps / 1000.0;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->last_ms = now;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	double ms = ceil((1.0 - b->tokens) * 1000.0 / b->qps);
	return ms < 1 ? 1 : (uint64_t)ms;
}

long kube_parse_retry_after(const char *v)
{
	if (!v)
		return -1;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v < '0' || *v > '9')
		return -1;
	long n = 0;
	for (; *v >= '0' && *v <= '9'; v++) {
		if (n > 100000000)
			return -1;
		n = n * 10 + (*v - '0');
	}
	while (*v == ' ' || *v == '\t')
		v++;
	return *v ? -1 : n;
}

int kube_ref_from_object(const json_t *obj, struct kube_ref *ref)
{
	memset(ref, 0, sizeof(*ref));
	ref->api_version = json_string_value(json_object_get(obj, "apiVersion"));
	ref->kind = json_string_value(json_object_get(obj, "kind"));
	json_t *md = json_object_get(obj, "metadata");
	ref->namespace = json_string_value(json_object_get(md, "namespace"));
	ref->name = json_string_value(json_object_get(md, "name"));
	if (ref->namespace && !*ref->namespace)
		ref->namespace = NULL;
	if (ref->name && !*ref->name)
		ref->name = NULL;
	return ref->api_version && *ref->api_version && ref->kind && *ref->kind ? 0 : -EINVAL;
}

static void append_segment(struct buf *b, const char *s)
{
	buf_append(b, "/", 1);
	buf_append_url_encoded(b, s);
}

char *kube_resource_path(const struct kube_resource *r, const char *ns, const char *name,
			 const char *subresource)
{
	struct buf b = {0};
	if (r->group[0])
		buf_printf(&b, "/apis/%s/%s", r->group, r->version);
	else
		buf_printf(&b, "/api/%s", r->version);
	if (r->namespaced && ns && *ns) {
		buf_append_str(&b, "/namespaces");
		append_segment(&b, ns);
	}
	append_segment(&b, r->plural);
	if (name && *name) {
		append_segment(&b, name);
		if (subresource && *subresource)
			append_segment(&b, subresource);
	}
	return buf_steal(&b);
}

/* Appends s with control characters replaced by spaces. */
static void append_clean(struct buf *b, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			buf_append(b, " ", 1);
		else
			buf_append(b, &s[i], 1);
	}
}

static void bound(struct buf *b, size_t max)
{
	if (b->len <= max)
		return;
	size_t n = utf8_cut(b->data, b->len, max);
	b->len = n;
	b->data[n] = '\0';
	buf_append_str(b, "...");
}

char *kube_status_message(int status, const json_t *body, const char *raw, size_t raw_len,
			  char **reason_out)
{
	struct buf b = {0};
	const char *reason = NULL;
	const char *message = NULL;
	if (json_is_object(body)) {
		reason = json_string_value(json_object_get(body, "reason"));
		message = json_string_value(json_object_get(body, "message"));
	}
	if (message && *message) {
		append_clean(&b, message, strlen(message));
		json_t *causes = json_object_get(json_object_get(body, "details"), "causes");
		size_t i;
		json_t *cause;
		json_array_foreach(causes, i, cause) {
			const char *f = json_string_value(json_object_get(cause, "field"));
			const char *m = json_string_value(json_object_get(cause, "message"));
			if (!m || !*m || strstr(message, m))
				continue;
			buf_append_str(&b, "; ");
			if (f && *f) {
				append_clean(&b, f, strlen(f));
				buf_append_str(&b, ": ");
			}
			append_clean(&b, m, strlen(m));
		}
	} else if (reason && *reason) {
		buf_printf(&b, "HTTP %d: ", status);
		append_clean(&b, reason, strlen(reason));
	} else if (raw && raw_len) {
		buf_printf(&b, "HTTP %d: ", status);
		size_t n = raw_len < 300 ? raw_len : 300;
		append_clean(&b, raw, n);
		while (b.len && b.data[b.len - 1] == ' ')
			b.data[--b.len] = '\0';
		if (n < raw_len)
			buf_append_str(&b, "...");
	} else {
		buf_printf(&b, "HTTP %d with an empty body", status);
	}
	bound(&b, STATUS_MESSAGE_MAX);
	if (reason_out) {
		struct buf r = {0};
		if (reason)
			append_clean(&r, reason, strlen(reason) < 64 ? strlen(reason) : 64);
		*reason_out = r.data ? buf_steal(&r) : xstrdup("");
	}
	return buf_steal(&b);
}

int kube_lines_feed(struct kube_lines *l, const char *bytes, size_t len,
		    int (*on_line)(char *line, size_t len, void *data), void *data)
{
	size_t max = l->max_line ? l->max_line : (16u << 20);
	size_t scanned = l->len;
	if (l->len + len + 1 > l->cap) {
		size_t cap = l->cap ? l->cap : 4096;
		while (cap < l->len + len + 1)
			cap *= 2;
		l->data = xrealloc(l->data, cap);
		l->cap = cap;
	}
	memcpy(l->data + l->len, bytes, len);
	l->len += len;
	size_t start = 0;
	int rc = 0;
	for (;;) {
		char *nl = memchr(l->data + scanned, '\n', l->len - scanned);
		if (!nl)
			break;
		size_t end = (size_t)(nl - l->data);
		size_t n = end - start;
		scanned = end + 1;
		if (n > 0 && l->data[start + n - 1] == '\r')
			n--;
		if (n > max) {
			rc = -EMSGSIZE;
			break;
		}
		l->data[start + n] = '\0';
		size_t line_start = start;
		start = scanned;
		if (n == 0)
			continue;
		rc = on_line(l->data + line_start, n, data);
		if (rc)
			break;
	}
	if (rc == 0 && l->len - start > max)
		rc = -EMSGSIZE;
	memmove(l->data, l->data + start, l->len - start);
	l->len -= start;
	return rc;
}

void kube_lines_free(struct kube_lines *l)
{
	free(l->data);
	l->data = NULL;
	l->len = l->cap = 0;
}

bool kube_result_transient(const struct kube_result *r)
{
	if (r->error == 0)
		return false;
	if (r->status == 0) {
		switch (r->error) {
		case -ECANCELED:
		case -EINVAL:
		case -ENOENT:
		case -EMSGSIZE:
			return false;
		default:
			return true;
		}
	}
	if (r->status >= 500 || r->status == 429 || r->status == 408)
		return true;
	if (r->status == 409)
		return !r->reason || strcmp(r->reason, "AlreadyExists") != 0;
	return false;
}

/* ---- calls: creation, completion ---- */

static void on_wake(uv_timer_t *t);

static void kick(struct kube *k)
{
	uv_timer_start(&k->wake, on_wake, 0, 0);
}

static void call_free(struct kube_call *c)
{
	free(c->api_version);
	free(c->kind);
	free(c->ns);
	free(c->name);
	free(c->sub);
	free(c->path);
	free(c->query);
	free(c->body);
	free(c->content_type);
	free(c->cont);
	json_decref(c->acc);
	json_decref(c->stop_body);
	kube_lines_free(&c->lines);
	free(c->stream_error);
	free(c->message);
	free(c);
}

static void call_unlink(struct kube_call *c)
{
	q_remove(c);
	list_remove(&c->link);
}

/* The call's verb and resource (kind plural, never a name), for metrics. */
static void call_metrics(const struct kube_call *c, int err, int status)
{
	static const char *const verbs[] = {
		[OP_GET] = "get", [OP_LIST] = "list", [OP_CREATE] = "create", [OP_APPLY] = "apply",
		[OP_PATCH] = "patch", [OP_DELETE] = "delete", [OP_DELETECOLL] = "deletecollection",
		[OP_WATCH] = "watch", [OP_LOG] = "get", [OP_DISCOVER] = "discovery", [OP_RAW] = "raw",
		[OP_FETCH_GV] = "discovery"};
	char res[160];
	if (c->op == OP_LOG)
		snprintf(res, sizeof res, "pods/log");
	else if (c->res)
		snprintf(res, sizeof res, "%s%s%s", c->res->plural, c->sub ? "/" : "",
			 c->sub ? c->sub : "");
	else if (c->op == OP_FETCH_GV && c->fetch_gv)
		snprintf(res, sizeof res, "%s", c->fetch_gv->api_version); /* a group/version */
	else
		snprintf(res, sizeof res, "%s", "unknown");
	bool stream = c->op == OP_WATCH || c->follow;
	metrics_kube_request(verbs[c->op], res, status, err,
			     stream ? -1 : (double)(uv_hrtime() - c->started_ns) / 1e9);
}

/* Completes c now: runs its callback once, frees it. Only from loop
 * callbacks (never inside a public entry point). */
static void finish(struct kube_call *c, int err, int status, json_t *body, const char *raw,
		   size_t raw_len, const char *message, const char *reason)
{
	call_unlink(c);
	call_metrics(c, err, status);
	struct kube_result r = {
		.error = err,
		.status = status,
		.reason = reason ? reason : "",
		.message = err ? (message ? message : strerror(-err)) : NULL,
		.body = body,
		.raw = raw ? raw : "",
		.raw_len = raw ? raw_len : 0,
		.resource = c->res,
		.maybe_applied = err != 0 && (c->uncertain || status >= 500),
	};
	if (c->done)
		c->done(&r, c->data);
	if (c->in_page) {
		/* completed from inside its own page callback (kube_close):
		 * list_page frees it once that callback returns */
		c->freed_in_page = true;
		return;
	}
	call_free(c);
}

/* Completes c on the next wake (from entry points and cancel). */
static void finish_later(struct kube_call *c, int err, char *message)
{
	q_remove(c);
	c->err = err;
	free(c->message);
	c->message = message;
	q_push(&c->k->finished, c);
	kick(c->k);
}

static struct kube_call *call_new(struct kube *k, enum op op, kube_done_cb done, void *data)
{
	if (k->closing)
		return NULL;
	struct kube_call *c = xcalloc(1, sizeof(*c));
	list_init(&c->qlink);
	c->k = k;
	c->op = op;
	c->done = done;
	c->data = data;
	c->query = xstrdup("");
	c->started_ns = uv_hrtime();
	c->safe = op != OP_CREATE && op != OP_PATCH && op != OP_RAW;
	k->seq++;
	backoff_init(&c->bo, CONN_RETRY_BASE_MS, CONN_RETRY_MAX_MS, 0.5,
		     k->seed ^ (k->seq * 0x9E3779B97F4A7C15ull));
	list_push_front(&k->calls, &c->link);
	return c;
}

static void call_set_ref(struct kube_call *c, const struct kube_ref *ref)
{
	c->api_version = ref->api_version ? xstrdup(ref->api_version) : NULL;
	c->kind = ref->kind ? xstrdup(ref->kind) : NULL;
	c->ns = ref->namespace && *ref->namespace ? xstrdup(ref->namespace) : NULL;
	c->name = ref->name && *ref->name ? xstrdup(ref->name) : NULL;
	c->sub = ref->subresource && *ref->subresource ? xstrdup(ref->subresource) : NULL;
}

/* Queues c for its first stage, or fails it (later) when ref is unusable. */
static struct kube_call *call_submit(struct kube_call *c)
{
	struct kube *k = c->k;
	bool needs_type = c->op != OP_RAW && c->op != OP_LOG && c->op != OP_FETCH_GV;
	if (needs_type && (!c->api_version || !*c->api_version || !c->kind || !*c->kind)) {
		finish_later(c, -EINVAL, xstrdup("apiVersion and kind are required"));
		return c;
	}
	q_push(&k->start, c);
	kick(k);
	return c;
}

static void query_add(struct kube_call *c, const char *key, const char *value)
{
	if (!value)
		return;
	struct buf b = {0};
	buf_append_str(&b, c->query);
	buf_append_str(&b, b.len ? "&" : "?");
	buf_append_str(&b, key);
	buf_append(&b, "=", 1);
	buf_append_url_encoded(&b, value);
	free(c->query);
	c->query = buf_steal(&b);
}

static void query_add_int(struct kube_call *c, const char *key, long value)
{
	char v[32];
	snprintf(v, sizeof(v), "%ld", value);
	query_add(c, key, v);
}

/* ---- discovery ---- */

static struct gv *gv_find(struct kube *k, const char *api_version, bool create)
{
	for (struct gv *g = k->gvs; g; g = g->next)
		if (strcmp(g->api_version, api_version) == 0)
			return g;
	if (!create)
		return NULL;
	struct gv *g = xcalloc(1, sizeof(*g));
	q_init(&g->waiters);
	g->api_version = xstrdup(api_version);
	g->next = k->gvs;
	k->gvs = g;
	return g;
}

static const struct kube_resource *gv_lookup(const struct gv *g, const char *kind)
{
	for (const struct res_entry *e = g->res; e; e = e->next)
		if (strcmp(e->r.kind, kind) == 0)
			return &e->r;
	return NULL;
}

const struct kube_resource *kube_resource_cached(struct kube *k, const char *api_version,
						 const char *kind)
{
	struct gv *g = gv_find(k, api_version, false);
	return g ? gv_lookup(g, kind) : NULL;
}

static void on_gv_fetched(const struct kube_result *r, void *data);
static void advance(struct kube_call *c);

static void gv_fetch(struct kube *k, struct gv *g)
{
	if (g->fetching)
		return;
	struct kube_call *f = call_new(k, OP_FETCH_GV, on_gv_fetched, g);
	if (!f)
		return;
	g->fetching = true;
	f->fetch_gv = g;
	snprintf(f->method, sizeof(f->method), "GET");
	f->path = strchr(g->api_version, '/') ? xasprintf("/apis/%s", g->api_version)
					      : xasprintf("/api/%s", g->api_version);
	call_submit(f);
}

/* Adds the resources of an APIResourceList not known yet (known entries are
 * kept: calls hold pointers to them). */
static void gv_merge(struct gv *g, const json_t *list)
{
	const char *slash = strchr(g->api_version, '/');
	json_t *arr = json_object_get(list, "resources");
	size_t i;
	json_t *r;
	json_array_foreach(arr, i, r) {
		const char *name = json_string_value(json_object_get(r, "name"));
		const char *kind = json_string_value(json_object_get(r, "kind"));
		if (!name || !kind || !*name || !*kind || strchr(name, '/'))
			continue; /* subresources ("deployments/scale") */
		bool namespaced = json_is_true(json_object_get(r, "namespaced"));
		struct res_entry *e = (struct res_entry *)gv_lookup(g, kind);
		if (e) {
			e->r.namespaced = namespaced;
			continue;
		}
		e = xcalloc(1, sizeof(*e));
		e->r.group = slash ? xstrndup(g->api_version, (size_t)(slash - g->api_version))
				   : xstrdup("");
		e->r.version = xstrdup(slash ? slash + 1 : g->api_version);
		e->r.api_version = xstrdup(g->api_version);
		e->r.kind = xstrdup(kind);
		e->r.plural = xstrdup(name);
		e->r.namespaced = namespaced;
		e->next = g->res;
		g->res = e;
	}
}

static void on_gv_fetched(const struct kube_result *r, void *data)
{
	struct gv *g = data;
	struct kube *k = NULL;
	g->fetching = false;
	if (r->error == 0 && json_is_object(r->body)) {
		gv_merge(g, r->body);
		g->loaded = true;
	} else if (r->status == 404) {
		g->loaded = true; /* not served (yet) */
	}
	/* wake the waiters: they resolve again, or fail with this error */
	struct kube_call *c;
	while ((c = q_pop(&g->waiters))) {
		k = c->k;
		if (k->closing || c->cancelled) {
			finish(c, -ECANCELED, 0, NULL, NULL, 0, "cancelled", NULL);
		} else if (!g->loaded) {
			char *m = xasprintf("discovery of apiVersion \"%s\": %s", g->api_version,
					    r->message ? r->message : "failed");
			finish(c, r->error ? r->error : -EPROTO, r->status, NULL, NULL, 0, m,
			       r->reason);
			free(m);
		} else {
			advance(c);
		}
	}
}

static void fail_unknown_kind(struct kube_call *c, struct gv *g)
{
	char *m = g->res ? xasprintf("kind \"%s\" is not served in apiVersion \"%s\"", c->kind,
				     c->api_version)
			 : xasprintf("apiVersion \"%s\" is not served by the API server (kind "
				     "\"%s\")", c->api_version, c->kind);
	finish(c, -ENOENT, 0, NULL, NULL, 0, m, "NotFound");
	free(m);
}

/* Resolves c's type. Returns true when c->res is set; otherwise c is parked
 * on a discovery or finished. */
static bool resolve(struct kube_call *c)
{
	struct kube *k = c->k;
	struct gv *g = gv_find(k, c->api_version, true);
	if (g->loaded) {
		c->res = gv_lookup(g, c->kind);
		if (c->res)
			return true;
		if (c->rediscovered) {
			fail_unknown_kind(c, g);
			return false;
		}
	}
	/* not loaded yet, or a miss: (re-)read the group/version once */
	c->rediscovered = true;
	q_push(&g->waiters, c);
	gv_fetch(k, g);
	return false;
}

/* ---- building and sending requests ---- */

static bool namespaced_needs_ns(struct kube_call *c)
{
	switch (c->op) {
	case OP_GET:
	case OP_CREATE:
	case OP_APPLY:
	case OP_PATCH:
	case OP_DELETE:
	case OP_DELETECOLL:
		return true;
	default:
		return false;
	}
}

/* Fills c->path once the type is known. Returns false when c was failed. */
static bool build_path(struct kube_call *c)
{
	if (c->op == OP_DISCOVER) {
		finish(c, 0, 0, NULL, NULL, 0, NULL, NULL);
		return false;
	}
	if (c->res->namespaced && !c->ns && namespaced_needs_ns(c)) {
		char *m = xasprintf("%s %s: a namespace is required", c->kind,
				    c->name ? c->name : "(collection)");
		finish(c, -EINVAL, 0, NULL, NULL, 0, m, NULL);
		free(m);
		return false;
	}
	bool needs_name = c->op == OP_GET || c->op == OP_APPLY || c->op == OP_PATCH ||
			  c->op == OP_DELETE;
	if (needs_name && !c->name) {
		char *m = xasprintf("%s: a name is required", c->kind);
		finish(c, -EINVAL, 0, NULL, NULL, 0, m, NULL);
		free(m);
		return false;
	}
	bool collection = c->op == OP_LIST || c->op == OP_CREATE || c->op == OP_DELETECOLL ||
			  c->op == OP_WATCH;
	c->path = kube_resource_path(c->res, c->ns, collection ? NULL : c->name,
				     collection ? NULL : c->sub);
	return true;
}

static void advance(struct kube_call *c)
{
	struct kube *k = c->k;
	bool typed = c->op != OP_RAW && c->op != OP_LOG && c->op != OP_FETCH_GV;
	if (typed && !c->res) {
		if (!resolve(c))
			return;
	}
	if (typed && !c->path && !build_path(c))
		return;
	q_push(c->stream ? &k->ready : &k->rl, c);
	kick(k);
}

static void send_call(struct kube_call *c);
static void send_call_as(struct kube_call *c, bool later);

static void on_cred_ready(int err, const char *message, void *data)
{
	struct kube *k = data;
	UNUSED(err);
	UNUSED(message);
	/* every waiting call tries again: it gets the credentials or the error */
	struct queue waiting;
	q_take(&waiting, &k->cred_wait);
	struct kube_call *c;
	while ((c = q_pop(&waiting)))
		send_call(c);
}

static int on_line(char *line, size_t len, void *data)
{
	struct kube_call *c = data;
	if (c->cancelled)
		return -ECANCELED;
	json_error_t je;
	json_t *ev = json_loadb(line, len, 0, &je);
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");
	if (!type || !json_is_object(obj)) {
		free(c->stream_error);
		c->stream_error = xasprintf("watch %s: malformed event (%s)", c->path,
					    ev ? "no type or object" : je.text);
		json_decref(ev);
		return -EPROTO;
	}
	c->on_event(type, obj, c->data);
	json_decref(ev);
	return c->cancelled ? -ECANCELED : 0;
}

static bool on_stream_data(struct curl_uv_request *req, const char *bytes, size_t len, void *data)
{
	UNUSED(req);
	struct kube_call *c = data;
	if (c->cancelled)
		return false;
	if (c->op == OP_LOG) {
		c->on_data(bytes, len, c->data);
		return !c->cancelled;
	}
	int rc = kube_lines_feed(&c->lines, bytes, len, on_line, c);
	if (rc == -EMSGSIZE && !c->stream_error)
		c->stream_error = xasprintf("watch %s: an event is larger than the limit", c->path);
	return rc == 0;
}

static void on_http_done(struct curl_uv_request *req, const struct curl_uv_response *res,
			 void *data);

/* A call that cannot be sent completes: now, or with later (from inside
 * another completion of the same call) on the next wake. */
static void send_fail(struct kube_call *c, bool later, int err, const char *message)
{
	if (later)
		finish_later(c, err, message ? xstrdup(message) : NULL);
	else
		finish(c, err, 0, NULL, NULL, 0, message, NULL);
}

/* Sends c's request (its credentials first: it may wait for them); a call
 * that cannot be sent completes, on the next wake with later. */
static void send_call_as(struct kube_call *c, bool later)
{
	struct kube *k = c->k;
	struct kube_creds cr;
	const char *why = NULL;
	int rc = kube_cred_get(k->cred, &cr, &why);
	if (rc == -EAGAIN) {
		q_push(&k->cred_wait, c);
		return;
	}
	if (rc) {
		send_fail(c, later, -EACCES, why);
		return;
	}
	long timeout = 0, first_byte = 0, stale_first_byte = 0;
	if (!c->stream) {
		uint64_t now = now_ms();
		if (!c->deadline_ms)
			c->deadline_ms = now + (uint64_t)k->opt.timeout_ms;
		if (c->deadline_ms <= now) {
			char *m = xasprintf("%s %s: no time left for another attempt", c->method,
					    c->path);
			send_fail(c, later, -ETIMEDOUT, m);
			free(m);
			return;
		}
		timeout = (long)(c->deadline_ms - now);
	}
	bool bounded = !c->stream && !c->follow && c->op != OP_WATCH;
	if (bounded && k->opt.first_byte_timeout_ms > 0 && k->opt.first_byte_timeout_ms < timeout)
		first_byte = k->opt.first_byte_timeout_ms;
	if (bounded && k->opt.stale_first_byte_timeout_ms > 0 &&
	    k->opt.stale_first_byte_timeout_ms < timeout)
		stale_first_byte = k->opt.stale_first_byte_timeout_ms;
	char *url;
	if (c->op == OP_LIST) {
		struct buf q = {0};
		buf_append_str(&q, c->query);
		buf_printf(&q, "%slimit=%d", q.len ? "&" : "?", c->limit);
		if (c->cont) {
			buf_append_str(&q, "&continue=");
			buf_append_url_encoded(&q, c->cont);
		}
		url = xasprintf("%s%s%s", k->kc->server, c->path, q.data);
		buf_free(&q);
	} else {
		url = xasprintf("%s%s%s", k->kc->server, c->path, c->query);
	}
	const char *headers[4];
	int nh = 0;
	headers[nh++] = c->op == OP_LOG ? "Accept: */*" : "Accept: application/json";
	char *ct = c->content_type ? xasprintf("Content-Type: %s", c->content_type) : NULL;
	if (ct)
		headers[nh++] = ct;
	char *auth = cr.token ? xasprintf("Authorization: Bearer %s", cr.token) : NULL;
	if (auth)
		headers[nh++] = auth;
	headers[nh] = NULL;
	struct curl_uv_tls tls = {
		.ca_pem = k->kc->ca_pem,
		.ca_len = k->kc->ca_len,
		.cert_pem = cr.cert_pem,
		.cert_len = cr.cert_len,
		.key_pem = cr.key_pem,
		.key_len = cr.key_len,
		.insecure = k->kc->insecure,
	};
	struct curl_uv_request_opts o = {
		.method = c->method,
		.url = url,
		.headers = headers,
		.body = c->body,
		.body_len = c->body_len,
		.timeout_ms = timeout,
		/* the connection (TCP + TLS) is bounded like the first byte */
		.connect_timeout_ms = first_byte,
		.first_byte_timeout_ms = first_byte,
		.stale_first_byte_timeout_ms = stale_first_byte,
		/* a call that cannot be repeated does not trust a connection
		 * that has been idle, nor does a repeat after a failed one, nor
		 * any call for a while after an idle connection was found dead */
		.avoid_stale = !c->stream && (!c->safe || c->conn_retries > 0 ||
					      now_ms() < k->distrust_idle_until_ms),
		.max_response = k->opt.max_response,
		.tls = &tls,
		.user_agent = k->user_agent,
		.userpwd = k->userpwd,
		.on_data = c->stream ? on_stream_data : NULL,
		.on_done = on_http_done,
		.data = c,
	};
	c->req = curl_uv_start(k->cu, &o);
	free(url);
	free(ct);
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	if (!c->req)
		send_fail(c, later, -ECANCELED, "the client is closing");
}

static void send_call(struct kube_call *c)
{
	send_call_as(c, false);
}

static void schedule_retry(struct kube_call *c, long delay_ms)
{
	struct kube *k = c->k;
	c->due_ms = now_ms() + (uint64_t)delay_ms;
	/* keep the retry queue sorted by due time: after the last call due
	 * no later (the head itself when there is none) */
	struct list *after = k->retry.calls.prev;
	while (after != &k->retry.calls &&
	       list_entry(after, struct kube_call, qlink)->due_ms > c->due_ms)
		after = after->prev;
	c->q = &k->retry;
	list_insert_after(after, &c->qlink);
	kick(k);
}

static bool body_is_json(const char *raw, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\r' || raw[i] == '\t')
			continue;
		return raw[i] == '{' || raw[i] == '[';
	}
	return false;
}

/* Gives list items the apiVersion and kind that list responses leave out. */
static void fill_item_types(struct kube_call *c, json_t *page)
{
	json_t *items = json_object_get(page, "items");
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it) {
		if (!json_is_object(it))
			continue;
		if (!json_object_get(it, "apiVersion"))
			json_object_set_new(it, "apiVersion", json_string(c->res->api_version));
		if (!json_object_get(it, "kind"))
			json_object_set_new(it, "kind", json_string(c->res->kind));
	}
}

/* The metadata of a list page's JSON text, as {"metadata": {...}} (new
 * reference), its items skipped (on_page_text parses them); NULL if the
 * text does not start as an object with a valid metadata object. The text
 * after the metadata is not read here. */
static json_t *page_metadata(const char *text, size_t len)
{
	struct json_skim it;
	const char *key, *val;
	size_t klen, vlen;
	bool esc;
	int r;
	json_t *md = NULL;
	if (json_skim_open(&it, text, len, '{') < 0)
		return NULL;
	/* kube-apiserver writes the metadata before the items: the rest is
	 * checked by the caller as it reads it */
	while ((r = json_skim_member(&it, &key, &klen, &esc, &val, &vlen)) > 0) {
		if (json_skim_key_is(key, klen, esc, "metadata")) {
			md = json_skim_parse(val, vlen);
			break;
		}
	}
	if (r < 0 || !json_is_object(md)) {
		json_decref(md);
		return NULL;
	}
	return json_pack("{s:o}", "metadata", md);
}

/* What became of a call once a list page was handed over. */
enum page_outcome {
	PAGE_LAST,    /* the list ends here: complete it with this page */
	PAGE_PENDING, /* the next page was asked for, or the call completes
	               * from the loop (cancelled, or stopped with the next
	               * page in flight) */
	PAGE_GONE,    /* completed and freed inside the page callback */
};

/* Asks for the list's next page, the one after cont. By page text, ahead of
 * the caller's parse of the page at hand: sent at once and written to its
 * connection (curl_uv_flush) when the rate limiter has a token, so that the
 * server prepares it while the caller parses (both sides then work at the
 * same time); otherwise it waits its turn in the limiter's queue. Only the
 * request goes ahead: its answer is read once the parse is over. */
static void list_request_next(struct kube_call *c, const char *cont)
{
	struct kube *k = c->k;
	free(c->cont);
	c->cont = xstrdup(cont);
	c->deadline_ms = 0; /* each page has the call's time */
	c->conn_retries = 0;
	backoff_reset(&c->bo);
	if (!c->on_page_text || q_head(&k->rl) || kube_bucket_take(&k->bucket, now_ms())) {
		q_push(&k->rl, c);
		kick(k);
		return;
	}
	send_call_as(c, true); /* a failure completes c on the next wake */
	if (c->req)
		curl_uv_flush(k->cu);
}

/* A page by text: the next one is asked for, then this one handed over. */
static enum page_outcome list_page_text(struct kube_call *c, const json_t *page,
					const char *text, size_t len, const char *cont)
{
	if (cont)
		list_request_next(c, cont);
	c->in_page = true;
	bool go_on = c->on_page_text(text, len, c->data);
	c->in_page = false;
	if (c->freed_in_page) { /* kube_close from the callback */
		call_free(c);
		return PAGE_GONE;
	}
	if (c->cancelled) /* kube_cancel arranged its completion */
		return PAGE_PENDING;
	if (go_on || !cont)
		return cont ? PAGE_PENDING : PAGE_LAST;
	/* stopped by the caller: the next page, asked for ahead, is called off */
	if (c->req) {
		c->stop_body = json_deep_copy(page);
		curl_uv_cancel(c->req); /* on_http_done completes with stop_body */
		return PAGE_PENDING;
	}
	q_remove(c); /* waiting for a token or credentials, or failed to send */
	free(c->message);
	c->message = NULL;
	c->err = 0;
	return PAGE_LAST;
}

/* A list page arrived (text: its JSON text, for on_page_text). */
static enum page_outcome list_page(struct kube_call *c, json_t *page, const char *text,
				   size_t len)
{
	json_t *md = json_object_get(page, "metadata");
	const char *cont = json_string_value(json_object_get(md, "continue"));
	bool more = cont && *cont;
	if (c->on_page_text)
		return list_page_text(c, page, text, len, more ? cont : NULL);
	fill_item_types(c, page);
	if (c->on_page) {
		if (!c->on_page(page, c->data) || c->cancelled)
			more = false;
	} else if (!c->acc) {
		c->acc = json_incref(page);
	} else {
		json_t *items = json_object_get(c->acc, "items");
		if (!json_is_array(items)) {
			items = json_array();
			json_object_set_new(c->acc, "items", items);
		}
		json_array_extend(items, json_object_get(page, "items"));
		json_t *amd = json_object_get(c->acc, "metadata");
		if (json_is_object(amd))
			json_object_set(amd, "resourceVersion",
					json_object_get(md, "resourceVersion"));
	}
	if (!more) {
		json_t *amd = json_object_get(c->acc, "metadata");
		if (json_is_object(amd)) {
			json_object_del(amd, "continue");
			json_object_del(amd, "remainingItemCount");
		}
		return PAGE_LAST;
	}
	list_request_next(c, cont);
	return PAGE_PENDING;
}

static void on_http_done(struct curl_uv_request *req, const struct curl_uv_response *res,
			 void *data)
{
	struct kube_call *c = data;
	struct kube *k = c->k;
	c->req = NULL;
	/* sent, and no complete answer: it may have been done anyway */
	if (res->error && res->request_sent)
		c->uncertain = true;
	if (c->stop_body && !c->cancelled && !k->closing) {
		/* the list's next page, asked for ahead, called off: the caller
		 * had stopped at the page before */
		json_t *b = c->stop_body;
		c->stop_body = NULL;
		finish(c, 0, 200, b, NULL, 0, NULL, NULL);
		json_decref(b);
		return;
	}
	if (res->error == -ECANCELED || c->cancelled || k->closing) {
		finish(c, -ECANCELED, 0, NULL, NULL, 0, "cancelled", NULL);
		return;
	}
	if (c->stream_error) {
		finish(c, -EPROTO, (int)res->status, NULL, NULL, 0, c->stream_error, NULL);
		return;
	}
	if (res->error) {
		if (res->conn_failed && !res->response_started && !c->stream) {
			k->dead_conns++;
			if (res->stale_connection)
				k->distrust_idle_until_ms = now_ms() + DISTRUST_IDLE_MS;
		}
		if (res->conn_failed && !res->response_started && c->safe && !c->stream &&
		    c->conn_retries < k->opt.max_conn_retries) {
			uint64_t delay = backoff_next(&c->bo);
			if (now_ms() + delay + MIN_ATTEMPT_MS < c->deadline_ms) {
				c->conn_retries++;
				log_info("kube: %s %s: %s; attempt %d in %llu ms", c->method,
					 c->path, res->error_message, c->conn_retries + 1,
					 (unsigned long long)delay);
				schedule_retry(c, (long)delay);
				return;
			}
		}
		char *m = c->conn_retries
				  ? xasprintf("%s %s: %s (after %d attempts)", c->method, c->path,
					      res->error_message, c->conn_retries + 1)
				  : xasprintf("%s %s: %s", c->method, c->path, res->error_message);
		finish(c, res->error, (int)res->status, NULL, NULL, 0, m, NULL);
		free(m);
		return;
	}
	int status = (int)res->status;
	if (status == 401 && !c->auth_retried && kube_cred_invalidate(k->cred)) {
		c->auth_retried = true;
		log_info("kube: %s %s: 401, refreshing credentials", c->method, c->path);
		q_push(&k->ready, c);
		kick(k);
		return;
	}
	if ((status == 429 || status == 503) && c->retries < k->opt.max_retries) {
		long ra = kube_parse_retry_after(curl_uv_response_header(req, "Retry-After"));
		if (ra >= 0 || status == 429) {
			long delay_ms = ra >= 0 ? (ra > MAX_RETRY_AFTER_S ? MAX_RETRY_AFTER_S : ra) * 1000
						: 1000L << (c->retries < 6 ? c->retries : 6);
			if (delay_ms == 0)
				delay_ms = 100;
			if (!c->stream &&
			    now_ms() + (uint64_t)delay_ms + MIN_ATTEMPT_MS >= c->deadline_ms)
				goto answered; /* not within the call's time */
			c->retries++;
			log_info("kube: %s %s: %d, retry %d in %ld ms", c->method, c->path, status,
				 c->retries, delay_ms);
			schedule_retry(c, delay_ms);
			return;
		}
	}
answered:;
	bool ok = status >= 200 && status < 300;
	json_t *body = NULL;
	bool page_text = ok && c->op == OP_LIST && c->on_page_text;
	if (page_text && res->body_len && body_is_json(res->body, res->body_len)) {
		/* only the metadata: the caller parses the items it wants */
		body = page_metadata(res->body, res->body_len);
		if (!body) {
			char *m = xasprintf("%s %s: invalid JSON in the response (or no metadata)",
					    c->method, c->path);
			finish(c, -EPROTO, status, NULL, res->body, res->body_len, m, NULL);
			free(m);
			return;
		}
	} else if ((c->op != OP_LOG || !ok) && res->body_len &&
		   body_is_json(res->body, res->body_len)) {
		json_error_t je;
		body = json_loadb(res->body, res->body_len, 0, &je);
		if (!body && ok) {
			char *m = xasprintf("%s %s: invalid JSON in the response: %s", c->method,
					    c->path, je.text);
			finish(c, -EPROTO, status, NULL, res->body, res->body_len, m, NULL);
			free(m);
			return;
		}
	}
	if (ok && c->op != OP_LOG && !c->stream && !body && c->op != OP_RAW) {
		char *m = xasprintf("%s %s: the response is not JSON", c->method, c->path);
		finish(c, -EPROTO, status, NULL, res->body, res->body_len, m, NULL);
		free(m);
		return;
	}
	if (ok && c->op == OP_LIST) {
		if (list_page(c, body, res->body, res->body_len) != PAGE_LAST) {
			json_decref(body);
			return;
		}
		json_t *final = c->on_page || c->on_page_text ? body : c->acc;
		finish(c, 0, status, final, res->body, res->body_len, NULL, NULL);
		json_decref(body);
		return;
	}
	if (ok) {
		finish(c, 0, status, body, res->body, res->body_len, NULL, NULL);
	} else {
		char *reason = NULL;
		char *m = kube_status_message(status, body, res->body, res->body_len, &reason);
		finish(c, -EREMOTEIO, status, body, res->body, res->body_len, m, reason);
		free(m);
		free(reason);
	}
	json_decref(body);
}

/* ---- the wake timer: every stage runs from here ---- */

static void reschedule(struct kube *k, uint64_t wait_rl)
{
	uint64_t now = now_ms();
	uint64_t next = UINT64_MAX;
	const struct kube_call *due = q_head(&k->retry);
	if (q_head(&k->rl) && wait_rl)
		next = wait_rl;
	if (due) {
		uint64_t r = due->due_ms > now ? due->due_ms - now : 0;
		if (r < next)
			next = r;
	}
	if (q_head(&k->start) || q_head(&k->ready) || q_head(&k->finished))
		next = 0;
	if (next != UINT64_MAX)
		uv_timer_start(&k->wake, on_wake, next, 0);
}

static void on_wake(uv_timer_t *t)
{
	struct kube *k = t->data;
	if (k->closing)
		return;
	struct kube_call *c;
	while (!k->closing && (c = q_pop(&k->finished)))
		finish(c, c->err, 0, NULL, NULL, 0, c->message, NULL);
	uint64_t now = now_ms();
	while (!k->closing && q_head(&k->retry) && q_head(&k->retry)->due_ms <= now) {
		c = q_pop(&k->retry);
		q_push(&k->rl, c);
	}
	/* calls started from callbacks below land on these queues: they run
	 * on the next wake */
	struct queue start, ready;
	q_take(&start, &k->start);
	q_take(&ready, &k->ready);
	while ((c = q_pop(&start))) {
		if (k->closing)
			q_push(&k->start, c);
		else
			advance(c);
	}
	while ((c = q_pop(&ready))) {
		if (k->closing)
			q_push(&k->ready, c);
		else
			send_call(c);
	}
	uint64_t wait = 0;
	while (!k->closing && q_head(&k->rl)) {
		wait = kube_bucket_take(&k->bucket, now_ms());
		if (wait)
			break;
		send_call(q_pop(&k->rl));
	}
	if (!k->closing)
		reschedule(k, wait);
}

/* ---- public entry points ---- */

struct kube *kube_new(uv_loop_t *loop, struct kubeconfig *kc, const struct kube_options *opts)
{
	struct kube *k = xcalloc(1, sizeof(*k));
	list_init(&k->calls);
	struct queue *stages[] = {&k->start, &k->rl, &k->ready, &k->cred_wait, &k->retry,
				  &k->finished};
	for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
		q_init(stages[i]);
	k->loop = loop;
	k->kc = kc;
	if (opts)
		k->opt = *opts;
	if (k->opt.qps == 0)
		k->opt.qps = DEFAULT_QPS;
	if (k->opt.burst <= 0)
		k->opt.burst = k->opt.qps > 0 ? (int)(2 * k->opt.qps) : 1;
	if (k->opt.burst < 1)
		k->opt.burst = 1;
	if (k->opt.timeout_ms <= 0)
		k->opt.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (k->opt.max_retries == 0)
		k->opt.max_retries = DEFAULT_MAX_RETRIES;
	if (k->opt.max_retries < 0)
		k->opt.max_retries = 0;
	if (!k->opt.max_response)
		k->opt.max_response = DEFAULT_MAX_RESPONSE;
	if (k->opt.first_byte_timeout_ms == 0)
		k->opt.first_byte_timeout_ms = DEFAULT_FIRST_BYTE_MS;
	if (k->opt.stale_first_byte_timeout_ms == 0)
		k->opt.stale_first_byte_timeout_ms = DEFAULT_STALE_FIRST_BYTE_MS;
	if (k->opt.max_conn_retries == 0)
		k->opt.max_conn_retries = DEFAULT_CONN_RETRIES;
	if (k->opt.max_conn_retries < 0)
		k->opt.max_conn_retries = 0;
	if (k->opt.max_connections <= 0)
		k->opt.max_connections = DEFAULT_MAX_CONNECTIONS;
	k->user_agent = k->opt.user_agent ? xstrdup(k->opt.user_agent)
					  : xstrdup("runboat/" RUNBOAT_VERSION);
	k->opt.user_agent = k->user_agent;
	if (kc->username)
		k->userpwd = xasprintf("%s:%s", kc->username, kc->password ? kc->password : "");
	kube_bucket_init(&k->bucket, k->opt.qps, k->opt.burst, now_ms());
	struct curl_uv_options co = {
		.http1_only = !k->opt.http2,
		.max_host_connections = k->opt.http2 ? 0 : k->opt.max_connections,
		.max_idle_s = k->opt.max_idle_s,
	};
	k->cu = curl_uv_new_opts(loop, &co);
	k->seed = backoff_seed();
	k->cred = kube_cred_new(loop, kc, on_cred_ready, k);
	uv_timer_init(loop, &k->wake);
	k->wake.data = k;
	return k;
}

static void on_kube_closed(uv_handle_t *h)
{
	struct kube *k = h->data;
	for (struct gv *g = k->gvs; g;) {
		struct gv *next = g->next;
		for (struct res_entry *e = g->res; e;) {
			struct res_entry *en = e->next;
			free(e->r.group);
			free(e->r.version);
			free(e->r.api_version);
			free(e->r.kind);
			free(e->r.plural);
			free(e);
			e = en;
		}
		free(g->api_version);
		free(g);
		g = next;
	}
	kubeconfig_free(k->kc);
	free(k->user_agent);
	if (k->userpwd) {
		memset(k->userpwd, 0, strlen(k->userpwd));
		free(k->userpwd);
	}
	free(k);
}

void kube_close(struct kube *k)
{
	if (!k || k->closing)
		return;
	k->closing = true;
	/* everything not in flight completes here; in-flight ones complete
	 * from curl_uv_close */
	struct kube_call *c;
	list_each(c, &k->calls, link)
	{
		c->cancelled = true; /* no event or data callback after this */
	}
	for (;;) {
		/* the first not in flight; callbacks may finish others: start over */
		struct kube_call *idle = NULL;
		list_each(c, &k->calls, link)
		{
			if (!c->req) {
				idle = c;
				break;
			}
		}
		if (!idle)
			break;
		finish(idle, -ECANCELED, 0, NULL, NULL, 0, "the client is closing", NULL);
	}
	curl_uv_close(k->cu);
	k->cu = NULL;
	kube_cred_close(k->cred);
	k->cred = NULL;
	uv_close((uv_handle_t *)&k->wake, on_kube_closed);
}

const char *kube_default_namespace(const struct kube *k)
{
	return k->kc->namespace ? k->kc->namespace : "default";
}

const char *kube_server(const struct kube *k)
{
	return k->kc->server;
}

unsigned long kube_connections_opened(const struct kube *k)
{
	return k->cu ? curl_uv_connections_opened(k->cu) : 0;
}

void kube_cancel(struct kube_call *c)
{
	if (!c || c->cancelled)
		return;
	c->cancelled = true;
	if (c->req) {
		curl_uv_cancel(c->req);
		return;
	}
	if (c->q == &c->k->finished)
		return; /* already finishing with its own result */
	finish_later(c, -ECANCELED, xstrdup("cancelled"));
}

struct kube_call *kube_get(struct kube *k, const struct kube_ref *ref, kube_done_cb done,
			   void *data)
{
	struct kube_call *c = call_new(k, OP_GET, done, data);
	if (!c)
		return NULL;
	call_set_ref(c, ref);
	snprintf(c->method, sizeof(c->method), "GET");
	return call_submit(c);
}

static void add_selectors(struct kube_call *c, const char *label, const char *field)
{
	if (label && *label)
		query_add(c, "labelSelector", label);
	if (field && *field)
		query_add(c, "fieldSelector", field);
}

struct kube_call *kube_list(struct kube *k, const struct kube_ref *ref,
			    const struct kube_list_opts *o, kube_done_cb done, void *data)
{
	struct kube_call *c = call_new(k, OP_LIST, done, data);
	if (!c)
		return NULL;
	call_set_ref(c, ref);
	snprintf(c->method, sizeof(c->method), "GET");
	c->limit = DEFAULT_PAGE;
	if (o) {
		add_selectors(c, o->label_selector, o->field_selector);
		if (o->resource_version && *o->resource_version)
			query_add(c, "resourceVersion", o->resource_version);
		if (o->limit > 0)
			c->limit = o->limit;
		c->on_page = o->on_page;
		c->on_page_text = o->on_page_text;
	}
	return call_submit(c);
}

static void add_write_opts(struct kube_call *c, const struct kube_write_opts *o, bool apply)
{
	const char *fm = o && o->field_manager && *o->field_manager ? o->field_manager : NULL;
	if (apply && !fm)
		fm = "runboat";
	if (fm)
		query_add(c, "fieldManager", fm);
	if (apply && o && o->force)
		query_add(c, "force", "true");
	if (o && o->dry_run)
		query_add(c, "dryRun", "All");
}

static void set_json_body(struct kube_call *c, const json_t *v, const char *content_type)
{
	/* ASCII only: an apply-patch+yaml body is read as YAML, where a raw
	 * U+0085, U+2028 or U+2029 inside a string is a line break that gets
	 * folded into a space; as \u escapes they stay what they are */
	c->body = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!c->body)
		c->body = xstrdup("null");
	c->body_len = strlen(c->body);
	c->content_type = xstrdup(content_type);
}

static struct kube_call *object_call(struct kube *k, enum op op, const json_t *obj,
				     const struct kube_write_opts *o, kube_done_cb done,
				     void *data)
{
	struct kube_call *c = call_new(k, op, done, data);
	if (!c)
		return NULL;
	struct kube_ref ref;
	if (!json_is_object(obj) || kube_ref_from_object(obj, &ref) != 0) {
		finish_later(c, -EINVAL, xstrdup("the object has no apiVersion or kind"));
		return c;
	}
	call_set_ref(c, &ref);
	if (op == OP_CREATE) {
		snprintf(c->method, sizeof(c->method), "POST");
		set_json_body(c, obj, "application/json");
	} else {
		snprintf(c->method, sizeof(c->method), "PATCH");
		set_json_body(c, obj, "application/apply-patch+yaml");
	}
	add_write_opts(c, o, op == OP_APPLY);
	return call_submit(c);
}

struct kube_call *kube_create(struct kube *k, const json_t *obj, const struct kube_write_opts *o,
			      kube_done_cb done, void *data)
{
	return object_call(k, OP_CREATE, obj, o, done, data);
}

struct kube_call *kube_apply(struct kube *k, const json_t *obj, const struct kube_write_opts *o,
			     kube_done_cb done, void *data)
{
	return object_call(k, OP_APPLY, obj, o, done, data);
}

/* A JSON patch guarded by a "test" op fails rather than applies twice. */
static bool json_patch_has_test(const json_t *patch)
{
	size_t i;
	json_t *op;
	json_array_foreach(patch, i, op) {
		const char *name = json_string_value(json_object_get(op, "op"));
		if (name && strcmp(name, "test") == 0)
			return true;
	}
	return false;
}

struct kube_call *kube_patch(struct kube *k, const struct kube_ref *ref, enum kube_patch_type type,
			     const json_t *patch, const struct kube_write_opts *o,
			     kube_done_cb done, void *data)
{
	struct kube_call *c = call_new(k, OP_PATCH, done, data);
	if (!c)
		return NULL;
	call_set_ref(c, ref);
	snprintf(c->method, sizeof(c->method), "PATCH");
	const char *ct = type == KUBE_PATCH_JSON	     ? "application/json-patch+json"
			 : type == KUBE_PATCH_STRATEGIC ? "application/strategic-merge-patch+json"
							 : "application/merge-patch+json";
	set_json_body(c, patch, ct);
	add_write_opts(c, o, false);
	c->safe = (o && o->idempotent) || (type == KUBE_PATCH_JSON && json_patch_has_test(patch));
	return call_submit(c);
}

static void set_delete_body(struct kube_call *c, const struct kube_delete_opts *o)
{
	json_t *d = json_pack("{s:s, s:s}", "apiVersion", "v1", "kind", "DeleteOptions");
	if (o) {
		if (o->propagation && *o->propagation)
			json_object_set_new(d, "propagationPolicy", json_string(o->propagation));
		if ((o->uid && *o->uid) || (o->resource_version && *o->resource_version)) {
			json_t *pre = json_object();
			if (o->uid && *o->uid)
				json_object_set_new(pre, "uid", json_string(o->uid));
			if (o->resource_version && *o->resource_version)
				json_object_set_new(pre, "resourceVersion",
						    json_string(o->resource_version));
			json_object_set_new(d, "preconditions", pre);
		}
		if (o->grace_period_seconds >= 0)
			json_object_set_new(d, "gracePeriodSeconds",
					    json_integer(o->grace_period_seconds));
		if (o->dry_run)
			json_object_set_new(d, "dryRun", json_pack("[s]", "All"));
	}
	set_json_body(c, d, "application/json");
	json_decref(d);
}

struct kube_call *kube_delete(struct kube *k, const struct kube_ref *ref,
			      const struct kube_delete_opts *o, kube_done_cb done, void *data)
{
	struct kube_call *c = call_new(k, OP_DELETE, done, data);
	if (!c)
		return NULL;
	call_set_ref(c, ref);
	snprintf(c->method, sizeof(c->method), "DELETE");
	set_delete_body(c, o);
	return call_submit(c);
}

struct kube_call *kube_delete_collection(struct kube *k, const struct kube_ref *ref,
					 const struct kube_list_opts *sel,
					 const struct kube_delete_opts *o, kube_done_cb done,
					 void *data)
{
	struct kube_call *c = call_new(k, OP_DELETECOLL, done, data);
	if (!c)
		return NULL;
	call_set_ref(c, ref);
	snprintf(c->method, sizeof(c->method), "DELETE");
	if (sel)
		add_selectors(c, sel->label_selector, sel->field_selector);
	set_delete_body(c, o);
	return call_submit(c);
}

struct kube_call *kube_watch(struct kube *k, const struct kube_ref *ref,
			     const struct kube_watch_opts *o, kube_event_cb on_event,
			     kube_done_cb done, void *data)
{
	struct kube_call *c = call_new(k, OP_WATCH, done, data);
	if (!c)
		return NULL;
	call_set_ref(c, ref);
	snprintf(c->method, sizeof(c->method), "GET");
	c->stream = true;
	c->on_event = on_event;
	c->lines.max_line = k->opt.max_response;
	query_add(c, "watch", "1");
	char *field = NULL;
	if (c->name) {
		field = o && o->field_selector && *o->field_selector
				? xasprintf("%s,metadata.name=%s", o->field_selector, c->name)
				: xasprintf("metadata.name=%s", c->name);
	}
	add_selectors(c, o ? o->label_selector : NULL,
		      field ? field : (o ? o->field_selector : NULL));
	free(field);
	if (o && o->resource_version && *o->resource_version)
		query_add(c, "resourceVersion", o->resource_version);
	if (!o || !o->no_bookmarks)
		query_add(c, "allowWatchBookmarks", "true");
	if (o && o->timeout_seconds > 0)
		query_add_int(c, "timeoutSeconds", o->timeout_seconds);
	if (!on_event) {
		finish_later(c, -EINVAL, xstrdup("a watch needs an event callback"));
		return c;
	}
	return call_submit(c);
}

struct kube_call *kube_pod_log(struct kube *k, const char *ns, const char *pod,
			       const struct kube_log_opts *o, kube_data_cb on_data,
			       kube_done_cb done, void *data)
{
	struct kube_call *c = call_new(k, OP_LOG, done, data);
	if (!c)
		return NULL;
	snprintf(c->method, sizeof(c->method), "GET");
	if (!ns || !*ns || !pod || !*pod) {
		finish_later(c, -EINVAL, xstrdup("pod log: a namespace and a pod are required"));
		return c;
	}
	struct buf p = {0};
	buf_append_str(&p, "/api/v1/namespaces");
	append_segment(&p, ns);
	buf_append_str(&p, "/pods");
	append_segment(&p, pod);
	buf_append_str(&p, "/log");
	c->path = buf_steal(&p);
	c->on_data = on_data;
	c->stream = on_data != NULL;
	if (o) {
		if (o->container && *o->container)
			query_add(c, "container", o->container);
		if (o->tail_lines > 0)
			query_add_int(c, "tailLines", o->tail_lines);
		if (o->limit_bytes > 0)
			query_add_int(c, "limitBytes", o->limit_bytes);
		if (o->follow)
			query_add(c, "follow", "true");
		c->follow = o->follow;
		if (o->previous)
			query_add(c, "previous", "true");
		if (o->timestamps)
			query_add(c, "timestamps", "true");
	}
	return call_submit(c);
}

struct kube_call *kube_discover(struct kube *k, const char *api_version, const char *kind,
				kube_done_cb done, void *data)
{
	struct kube_call *c = call_new(k, OP_DISCOVER, done, data);
	if (!c)
		return NULL;
	struct kube_ref ref = {.api_version = api_version, .kind = kind};
	call_set_ref(c, &ref);
	return call_submit(c);
}

struct kube_call *kube_request(struct kube *k, const char *method, const char *path_and_query,
			       const char *content_type, const void *body, size_t body_len,
			       kube_done_cb done, void *data)
{
	struct kube_call *c = call_new(k, OP_RAW, done, data);
	if (!c)
		return NULL;
	snprintf(c->method, sizeof(c->method), "%s", method && *method ? method : "GET");
	bool method_ok = strlen(method && *method ? method : "GET") < sizeof(c->method);
	for (const char *m = c->method; *m; m++)
		method_ok = method_ok && *m >= 'A' && *m <= 'Z';
	if (!method_ok || !path_and_query || path_and_query[0] != '/' ||
	    strpbrk(path_and_query, " \r\n")) {
		c->path = xstrdup("(none)");
		finish_later(c, -EINVAL,
			     xstrdup("a raw call needs an upper-case method and a path starting "
				     "with '/', without spaces"));
		return c;
	}
	c->path = xstrdup(path_and_query);
	c->safe = strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0;
	if (body) {
		c->body = xmalloc(body_len + 1);
		memcpy(c->body, body, body_len);
		c->body[body_len] = '\0';
		c->body_len = body_len;
	}
	c->content_type = content_type ? xstrdup(content_type) : NULL;
	return call_submit(c);
}

uint64_t kube_dead_connections(const struct kube *k)
{
	return k->dead_conns;
}
