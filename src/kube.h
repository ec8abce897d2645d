/* The asynchronous Kubernetes client: typed calls (get, list, create,
 * server-side apply, patch, delete, deletecollection, watch, pod logs) over
 * curl_uv, with API discovery, client-side rate limiting, retries on 429/503,
 * per-call timeouts and cancellation. Nothing here blocks the loop.
 *
 * Connections: calls share a bounded pool of HTTP/1.1 keep-alive
 * connections (or, with the http2 option, multiplexed HTTP/2 connections);
 * watches and streamed logs have connections of their own. A connection
 * idle for max_idle_s is retired rather than reused (kube-apiserver closes
 * idle ones after 90 s). A call waits at most first_byte_timeout_ms for the
 * first byte of an answer once its request is sent (watches and streamed
 * logs exempt; stale_first_byte_timeout_ms on a connection that had been
 * idle), and a call that is safe to repeat is sent again, a few times,
 * after a short jittered pause, when its connection failed before any
 * answer (connect error, reset, nothing received, garbage, silence past the
 * first-byte deadline), always within its overall timeout. Safe to repeat:
 * get, list (page by page), pod logs, discovery, server-side apply, delete,
 * deletecollection, a JSON patch holding a "test" op, a raw GET/HEAD, and a
 * patch marked idempotent (kube_write_opts). A create is never repeated;
 * a call that cannot be repeated opens a new connection rather than trust
 * one that has been idle for a second or more.
 *
 * Every call returns a struct kube_call handle (NULL only when the client is
 * closing) and later invokes its completion callback EXACTLY ONCE, never from
 * inside the call that started it. The handle is valid until the completion
 * callback returns. */
#ifndef RUNBOAT_KUBE_H
#define RUNBOAT_KUBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kube;
struct kube_call;
struct kubeconfig;

/* How the client behaves; a zero field means "the default". */
struct kube_options {
	double qps;            /* token bucket rate; 0: 20/s, < 0: unlimited */
	int burst;             /* bucket size; 0: 2 * qps (at least 1) */
	long timeout_ms;       /* every non-streaming call, all its attempts
	                        * and pauses included (a list: each page),
	                        * from its first request; 0: 30000 */
	int max_retries;       /* on 429/503 (honouring Retry-After); 0: 5, < 0: none */
	size_t max_response;   /* bounded bodies; 0: 64 MiB */
	const char *user_agent; /* 0: "runboat/<version>" */
	/* From sending a request to the first byte of its answer; 0: 10000,
	 * < 0: no bound. Watches and streamed logs are exempt. */
	long first_byte_timeout_ms;
	/* The same bound on a kept-alive connection that had been idle for a
	 * second or more, where a silent drop is likeliest: found out fast, and
	 * the call repeated on another connection if it is safe; 0: 3000,
	 * < 0: first_byte_timeout_ms. A call that is not safe to repeat never
	 * goes on such a connection: it opens a new one. */
	long stale_first_byte_timeout_ms;
	/* Repeats of a call safe to repeat whose connection failed before any
	 * answer; 0: 3, < 0: none. */
	int max_conn_retries;
	/* Calls multiplexed over HTTP/2 instead of a pool of HTTP/1.1
	 * connections (see test/bench/README.md for why the pool is the
	 * default with libcurl 7.88). */
	bool http2;
	/* HTTP/1.1: connections of the call pool; calls beyond wait for one
	 * (the wait counts in timeout_ms). 0: 32. */
	int max_connections;
	/* A connection idle for longer is not reused; 0: 50 s. */
	long max_idle_s;
};

/* A resource type, as API discovery found it. */
struct kube_resource {
	char *group;       /* "" for the core group */
	char *version;     /* "v1" */
	char *api_version; /* "apps/v1" or "v1" */
	char *kind;        /* "Deployment" */
	char *plural;      /* "deployments" */
	bool namespaced;
};

/* Which object(s) a call addresses. All strings borrowed for the duration of
 * the call function only (they are copied). */
struct kube_ref {
	const char *api_version; /* "apps/v1", "v1", "batch/v1", ... */
	const char *kind;        /* "Deployment", ... (resolved through discovery) */
	const char *namespace;   /* NULL: cluster-scoped, or all namespaces for a
	                          * list/watch of a namespaced kind */
	const char *name;        /* NULL for a collection */
	const char *subresource; /* NULL, or "status", "scale", ... */
};

/* What a call produced. Everything is borrowed: valid only during the
 * completion callback (json_incref the body to keep it). */
struct kube_result {
	/* 0 on a 2xx answer; otherwise a negative errno:
	 *   -EREMOTEIO    the server answered with a non-2xx status (see below)
	 *   -ECANCELED    kube_cancel() or kube_close()
	 *   -ETIMEDOUT    the call's timeout elapsed
	 *   -ECONNREFUSED, -EHOSTUNREACH, -EIO  transport failures
	 *   -EMSGSIZE     the response exceeded max_response
	 *   -EPROTO       the response was not the JSON it should be
	 *   -ENOENT       discovery: the apiVersion/kind is not served
	 *   -EINVAL       bad arguments (e.g. no namespace for a namespaced get)
	 *   -EACCES       credentials could not be obtained (exec plugin failed) */
	int error;
	int status;           /* HTTP status, 0 if no answer was received */
	const char *reason;   /* Kubernetes Status reason ("NotFound", "Conflict",
	                       * "AlreadyExists", "Forbidden", "Gone", ...) or "" */
	const char *message;  /* NULL on success; otherwise a precise one-line
	                       * message, e.g. `deployments.apps "b1-odoo" is
	                       * forbidden: User "limited" cannot ...` */
	json_t *body;         /* parsed JSON body, or NULL */
	const char *raw;      /* raw body bytes ("" if none; NUL-terminated) */
	size_t raw_len;
	const struct kube_resource *resource; /* resolved type, or NULL */
	/* The call failed (error != 0), yet what it asked for may have been
	 * done: one of its attempts reached the server, or may have, and no
	 * complete answer came back (a time-out, a broken connection, a
	 * cancel while in flight), or the answer was a 5xx. A later attempt's
	 * 4xx does not clear it: a repeated delete that finds nothing (404), or
	 * a repeated test-guarded patch whose test now fails, may be the
	 * echo of a first attempt that worked. False on success, and when the
	 * server's answer says nothing was done or nothing was sent. */
	bool maybe_applied;
};

/* Whether a failed call is worth trying again later (as a whole, by the
 * caller; the client has already repeated what was safe to repeat):
 *   true   no HTTP answer (time-out, connection refused, reset, protocol
 *          garbage, -EIO, -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH,
 *          credentials not obtained), or an answer saying "not now": 5xx,
 *          429 Too Many Requests, 408 Request Timeout, 409 Conflict (but
 *          not 409 AlreadyExists, the permanent answer to a create);
 *   false  success, -ECANCELED, our own bad arguments (-EINVAL), a kind the
 *          server does not serve (-ENOENT), a response over the size limit
 *          (-EMSGSIZE), and every other 4xx: a permanent refusal (invalid,
 *          forbidden, not found, ...). */
bool kube_result_transient(const struct kube_result *r);

/* How many calls so far found their connection dead before any answer
 * (first-byte deadline passed, reset, nothing received). A hint for the
 * holders of long streams (watches): a connection that died silently for
 * calls may have died the same way under a quiet stream. */
uint64_t kube_dead_connections(const struct kube *k);

typedef void (*kube_done_cb)(const struct kube_result *res, void *data);
/* A watch event: type is "ADDED", "MODIFIED", "DELETED", "BOOKMARK" or
 * "ERROR" (object is then a Status, e.g. code 410 when the resourceVersion is
 * too old: relist). object is borrowed for the duration of the callback. */
typedef void (*kube_event_cb)(const char *type, json_t *object, void *data);
/* Streamed bytes (pod logs), borrowed for the duration of the callback. */
typedef void (*kube_data_cb)(const char *bytes, size_t len, void *data);

/* Creates a client on loop. Takes ownership of kc (freed by the client).
 * Never fails (errors surface in calls). */
struct kube *kube_new(uv_loop_t *loop, struct kubeconfig *kc, const struct kube_options *opts);
/* Cancels every call (each completion callback runs with -ECANCELED, before
 * kube_close returns), then closes the handles; the client is freed once the
 * loop has run their close callbacks. Calls started after this return NULL. */
void kube_close(struct kube *k);
/* The default namespace of the kubeconfig context / service account, or
 * "default". Borrowed. */
const char *kube_default_namespace(const struct kube *k);
/* The API server URL. Borrowed. */
const char *kube_server(const struct kube *k);
/* Connections opened so far, calls and streams (for metrics, benchmarks). */
unsigned long kube_connections_opened(const struct kube *k);

/* Cancels a call: its completion callback runs with -ECANCELED, never from
 * inside kube_cancel (a later loop iteration, or right after the running
 * event/data callback returns); no event/data callback runs after kube_cancel.
 * Must not be called after the completion callback has returned. */
void kube_cancel(struct kube_call *c);

/* Options of list, deletecollection and the selection of a watch. */
struct kube_list_opts {
	const char *label_selector;   /* NULL or "runboat/build" etc. */
	const char *field_selector;
	const char *resource_version; /* NULL, "0", ... */
	int limit;                    /* page size; 0: 500 */
	/* When set, each page is handed over here (borrowed) instead of being
	 * gathered; return false to stop early (the call then completes with
	 * success and the last page as body). */
	bool (*on_page)(json_t *page, void *data);
	/* Or, instead of on_page: each page's JSON text (borrowed, len bytes),
	 * of which the client parses only the metadata (for the continue token
	 * and the resourceVersion), so that the caller parses only what it
	 * needs of the items (json_skim.h); their apiVersion and kind are not
	 * filled in. Same return convention; the call's body is then the last
	 * page's {"metadata": {...}}. A page that does not start as a JSON
	 * object with a metadata object fails the call with -EPROTO; the text
	 * after the metadata is for the caller to check. The next page is
	 * asked for BEFORE this callback runs (its request written to the
	 * connection when the rate limiter has a token), so that the server
	 * prepares it while the caller parses; its answer is read only once
	 * the callback has returned, so pages are handed over in order, at
	 * most one being received while one is parsed. A next page that
	 * fails fails the call after this page was handed over. Returning
	 * false (or kube_cancel, kube_close from the callback) calls the next
	 * page off; no page callback runs after. */
	bool (*on_page_text)(const char *text, size_t len, void *data);
};

/* GET one object (ref->name required; ref->namespace required for a
 * namespaced kind). */
struct kube_call *kube_get(struct kube *k, const struct kube_ref *ref, kube_done_cb done,
			   void *data);

/* GET a collection with limit/continue pagination. Without on_page, the body
 * is ONE List object holding the items of all pages (each item given its
 * apiVersion and kind, which list responses omit) and the resourceVersion of
 * the last page, ready to start a watch from. An expired continue token gives
 * 410 ("Expired"): list again. */
struct kube_call *kube_list(struct kube *k, const struct kube_ref *ref,
			    const struct kube_list_opts *o, kube_done_cb done, void *data);

/* Options of create, apply and patch. */
struct kube_write_opts {
	const char *field_manager; /* apply: required (default "runboat") */
	bool force;                /* apply: take over conflicting fields */
	bool dry_run;              /* dryRun=All */
	/* patch: repeating it is harmless (e.g. a merge patch that only sets
	 * absolute values), so it may be sent again when its connection fails
	 * before any answer. Apply is always repeatable, create never. */
	bool idempotent;
};

/* POST obj (borrowed; serialized at once) to its collection. The type and
 * namespace come from obj's apiVersion, kind, metadata.namespace. */
struct kube_call *kube_create(struct kube *k, const json_t *obj, const struct kube_write_opts *o,
			      kube_done_cb done, void *data);

/* Server-side apply: PATCH application/apply-patch+yaml with obj (borrowed)
 * as a JSON body; the object is addressed by its own apiVersion, kind,
 * metadata.namespace and metadata.name. */
struct kube_call *kube_apply(struct kube *k, const json_t *obj, const struct kube_write_opts *o,
			     kube_done_cb done, void *data);

enum kube_patch_type {
	KUBE_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
	KUBE_PATCH_JSON,      /* application/json-patch+json (RFC 6902) */
	KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json */
};

/* PATCH the object at ref with patch (borrowed; serialized at once). */
struct kube_call *kube_patch(struct kube *k, const struct kube_ref *ref, enum kube_patch_type type,
			     const json_t *patch, const struct kube_write_opts *o,
			     kube_done_cb done, void *data);

/* Options of delete and deletecollection. */
struct kube_delete_opts {
	const char *propagation;      /* NULL, "Foreground", "Background", "Orphan" */
	const char *uid;              /* precondition, or NULL */
	const char *resource_version; /* precondition, or NULL */
	int grace_period_seconds;     /* < 0: the server's default */
	bool dry_run;
};
/* Convenience: an options struct with grace_period_seconds = -1. */
#define KUBE_DELETE_OPTS_INIT { .grace_period_seconds = -1 }

/* DELETE one object. A failed precondition gives 409 (reason "Conflict"). A
 * NULL o means the defaults. */
struct kube_call *kube_delete(struct kube *k, const struct kube_ref *ref,
			      const struct kube_delete_opts *o, kube_done_cb done, void *data);

/* DELETE a collection (ref->name NULL), restricted by sel's selectors. */
struct kube_call *kube_delete_collection(struct kube *k, const struct kube_ref *ref,
					 const struct kube_list_opts *sel,
					 const struct kube_delete_opts *o, kube_done_cb done,
					 void *data);

/* Options of a watch. */
struct kube_watch_opts {
	const char *label_selector;
	const char *field_selector;
	const char *resource_version; /* where to start; NULL: "most recent" */
	int timeout_seconds;          /* server-side end of the watch; 0: none */
	bool no_bookmarks;            /* allowWatchBookmarks is on unless set */
};

/* A streaming GET ?watch=1 on the collection at ref (ref->name NULL; or set,
 * which watches that one object through a metadata.name field selector).
 * Each complete JSON line becomes one on_event call. done runs once when the
 * stream ends: error 0 when the server closed it normally (timeoutSeconds),
 * -EREMOTEIO with status/message when the server refused it (e.g. 403, 410),
 * -EPROTO on a malformed event line. Watches are exempt from the rate limiter
 * and the call timeout. */
struct kube_call *kube_watch(struct kube *k, const struct kube_ref *ref,
			     const struct kube_watch_opts *o, kube_event_cb on_event,
			     kube_done_cb done, void *data);

/* Options of a pod log request. */
struct kube_log_opts {
	const char *container;  /* NULL: the only container */
	long tail_lines;        /* 0: all */
	long limit_bytes;       /* 0: no limit on the server side */
	bool follow;            /* stream until the container ends */
	bool previous;
	bool timestamps;
};

/* GET /api/v1/namespaces/ns/pods/pod/log. With on_data, the bytes are
 * streamed there (no timeout; cancel to stop); otherwise they are gathered
 * (bounded by max_response) and handed over as res->raw. */
struct kube_call *kube_pod_log(struct kube *k, const char *ns, const char *pod,
			       const struct kube_log_opts *o, kube_data_cb on_data,
			       kube_done_cb done, void *data);

/* Resolves (api_version, kind) through discovery (cached; a miss re-reads the
 * group/version once). res->resource is set on success, -ENOENT otherwise. */
struct kube_call *kube_discover(struct kube *k, const char *api_version, const char *kind,
				kube_done_cb done, void *data);
/* The cached resolution, or NULL if not resolved yet. Borrowed. */
const struct kube_resource *kube_resource_cached(struct kube *k, const char *api_version,
						 const char *kind);

/* A raw call: method on path_and_query ("/api/v1/namespaces"), with an
 * optional body (copied) of content_type. Rate limited, retried, timed out
 * like any other call. */
struct kube_call *kube_request(struct kube *k, const char *method, const char *path_and_query,
			       const char *content_type, const void *body, size_t body_len,
			       kube_done_cb done, void *data);

/* ---- pure helpers (exposed for the informer and for tests) ---- */

/* Fills ref from obj's apiVersion, kind, metadata.namespace and metadata.name
 * (pointers borrowed from obj). Returns 0, or -EINVAL if apiVersion or kind
 * is missing. */
int kube_ref_from_object(const json_t *obj, struct kube_ref *ref);

/* The path of ref once resolved: "/apis/apps/v1/namespaces/ns/deployments/x"
 * (segments percent-encoded). Returns a string owned by the caller. */
char *kube_resource_path(const struct kube_resource *r, const char *ns, const char *name,
			 const char *subresource);

/* One line of error text for an HTTP status and its body (a Kubernetes
 * Status, another JSON value, or anything else: raw may be NULL): the Status
 * message, followed by any details.causes[] ("field: message") it does not
 * already contain; otherwise "HTTP <status>: <sanitized start of the body>".
 * Control characters are replaced and the result is bounded (about 2 KiB).
 * Owned by the caller. reason_out, if not NULL, receives Status.reason
 * (owned by the caller, "" if none). */
char *kube_status_message(int status, const json_t *body, const char *raw, size_t raw_len,
			  char **reason_out);

/* A token bucket (client-side rate limiter). */
struct kube_bucket {
	double qps;    /* tokens per second; <= 0: unlimited */
	double burst;  /* capacity */
	double tokens; /* available now */
	uint64_t last_ms;
};
void kube_bucket_init(struct kube_bucket *b, double qps, int burst, uint64_t now_ms);
/* Takes one token and returns 0 if one is available at now_ms; otherwise
 * takes nothing and returns how many milliseconds until one is (>= 1). */
uint64_t kube_bucket_take(struct kube_bucket *b, uint64_t now_ms);

/* Parses a Retry-After value (delta seconds; HTTP dates are not used by the
 * API server and give -1). Returns seconds >= 0, or -1 if absent/invalid. */
long kube_parse_retry_after(const char *value);

/* Splits a byte stream into '\n'-terminated lines (a trailing '\r' is
 * dropped, empty lines skipped). */
struct kube_lines {
	char *data;
	size_t len, cap;
	size_t max_line; /* a longer line is an error; 0: 16 MiB */
};
/* Feeds bytes; calls on_line for each complete line (borrowed, NUL
 * terminated). Returns 0, -EMSGSIZE if a line exceeds max_line, or the first
 * non-zero value on_line returned (which stops the feeding). */
int kube_lines_feed(struct kube_lines *l, const char *bytes, size_t len,
		    int (*on_line)(char *line, size_t len, void *data), void *data);
void kube_lines_free(struct kube_lines *l);

#endif
