/* Informers: a local cache of one resource type in one namespace (with label
 * and field selectors), kept up to date by list + watch, Kubernetes style.
 *
 *   start ──▶ LIST (paginated) ──▶ diff with the cache ──▶ WATCH from the
 *             ▲                    (add/update/delete)      list's resourceVersion
 *             │                                                  │
 *             └──── 410 Gone / malformed stream (after backoff) ◀┤
 *                   WATCH again from the stored resourceVersion ◀┘ server timeout
 *                   (at once), or after a jittered backoff on errors
 *
 * A list is applied page by page: each page's adds and updates are reported
 * (and cached) as the page arrives, so that only what the cache keeps
 * outlives it; the deletions of the objects the list no longer holds come
 * after its last page, then the list's resourceVersion is stored. A list
 * that fails part way (410 of an expired continue token, an error, a
 * malformed page) leaves the pages applied so far (each object as it was
 * listed: a state it had) and is listed again, after the backoff; until a
 * list is complete the informer never watches (the stored resourceVersion
 * is older than some cached objects).
 *
 * Watches ask for bookmarks and a randomized timeoutSeconds (5 to 10 min); a
 * stream silent for longer than timeoutSeconds plus a margin is cancelled and
 * watched again from its resourceVersion. Once the server has been seen to
 * send periodic bookmarks (kube-apiserver with its watch cache: about every
 * 60 s), a stream with no byte for twice the gap between them plus
 * the margin is cancelled and watched again too (a connection dropped
 * without FIN or RST, a hung server). The backoff (0.8 s to 30 s) is reset by a healthy watch (one
 * that delivered events or lasted 60 s).
 *
 * The informer never acts on the objects: it reports changes through
 * callbacks. Objects are jansson values shared with the cache: callbacks and
 * informer_get() hand out BORROWED references (valid until the callback
 * returns / until the loop runs again); json_incref them to keep them, and
 * never modify them. */
#ifndef RUNBOAT_INFORMER_H
#define RUNBOAT_INFORMER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct informer;
struct kube;

struct informer_callbacks {
	/* An object appeared (first list, re-list or ADDED). */
	void (*on_add)(struct informer *inf, json_t *obj, void *data);
	/* An object changed: its resourceVersion differs from the cached one. */
	void (*on_update)(struct informer *inf, json_t *old_obj, json_t *new_obj, void *data);
	/* An object is gone: the DELETED event's object, or the last cached
	 * state when a re-list no longer returns it. An object replaced by
	 * another of the same name (different uid) is a delete then an add. */
	void (*on_delete)(struct informer *inf, json_t *obj, void *data);
	/* Once, when the first complete list has been delivered. */
	void (*on_synced)(struct informer *inf, void *data);
	void *data;
};

/* What to inform about. Strings are copied. Zero fields take the defaults. */
struct informer_opts {
	const char *api_version;    /* required: "apps/v1", "batch/v1", "v1" */
	const char *kind;           /* required: "Deployment", "Job", ... */
	const char *namespace;      /* NULL: every namespace (or cluster-scoped) */
	const char *label_selector; /* e.g. "runboat/build", or NULL */
	const char *field_selector; /* or NULL */
	int page_size;              /* list page size; 0: 500 */
	int watch_timeout_min_s;    /* timeoutSeconds drawn in [min, max]; 0: 300 */
	int watch_timeout_max_s;    /* 0: 600 */
	long silence_margin_ms;     /* added to timeoutSeconds; 0: 30000 */
	long healthy_ms;            /* a watch that lasted this long is healthy;
	                             * 0: 60000 */
	long backoff_base_ms;       /* 0: 800 */
	long backoff_max_ms;        /* 0: 30000 */
	uint64_t seed;              /* randomness; 0: from the system */
	/* metadata.managedFields is dropped from every object before it is
	 * cached (it is large and of no use to a reader: about half the memory
	 * of a cached Deployment) unless this is set */
	bool keep_managed_fields;
	/* What else the cache keeps of each object, when the readers need
	 * little of it (a cached Deployment is mostly its pod template): a
	 * NULL-terminated list (copied) of top-level members ("metadata") and
	 * of fields of object members ("spec.replicas"); members not listed
	 * are dropped before the object is cached or given to a callback.
	 * "metadata", "kind" and "apiVersion" are always kept. NULL keeps
	 * every member. */
	const char *const *keep;
	/* Once the callbacks have seen an object, the cache keeps only its
	 * metadata name, namespace, resourceVersion, uid, labels and
	 * creationTimestamp: for a
	 * reader that keeps its own view of the objects (feed.c: the build
	 * index), so that the cache costs little. informer_get, and the
	 * cached objects given to on_update (old) and on_delete (the last
	 * state, when a re-list no longer holds an object), then carry only
	 * those. */
	bool slim_cache;
};

/* Counters, for tests, benchmarks and metrics. */
struct informer_stats {
	unsigned long lists;          /* lists started */
	unsigned long lists_ok;       /* lists delivered to the cache */
	unsigned long list_failures;
	unsigned long watches;        /* watches started */
	unsigned long watch_failures; /* watches that ended with an error */
	unsigned long expired;        /* 410 Gone seen (status or ERROR event) */
	unsigned long silent;         /* watches cancelled for silence (either rule) */
	unsigned long quiet;          /* of which by the bookmark rule */
	unsigned long events;         /* ADDED/MODIFIED/DELETED applied */
	unsigned long bookmarks;
	unsigned long ignored;        /* events ignored (unknown type, ...) */
	int last_timeout_s;           /* timeoutSeconds of the last watch */
	uint64_t last_delay_ms;       /* the last backoff delay used */
	uint64_t bookmark_period_ms;  /* shortest gap between periodic bookmarks
	                               * seen, 0: none seen (see
	                               * informer_silence_deadline) */
};

/* Creates an informer (not started) on loop with the client k (borrowed: it
 * must outlive the informer's kube calls, i.e. call informer_free before
 * kube_close, or kube_close first, which cancels them). loop and k may be
 * NULL for a detached informer whose cache is fed by informer_replace and
 * informer_apply_event only (tests). Returns NULL if api_version or kind is
 * missing. */
struct informer *informer_new(uv_loop_t *loop, struct kube *k, const struct informer_opts *o,
			      const struct informer_callbacks *cb);

/* Starts (or resumes) informing: lists first, or, when the cache already
 * holds a complete list (a stopped informer), watches from the stored
 * resourceVersion (a 410 then re-lists). Returns 0, -EINVAL for a detached
 * or freed informer. Starting a running informer does nothing. */
int informer_start(struct informer *inf);

/* Stops informing: cancels the current kube call and timers; no callback
 * runs after this returns. The cache and resourceVersion are kept (reads
 * still work; informer_start resumes). May be called from a callback. */
void informer_stop(struct informer *inf);

/* Stops and frees the informer. Its memory is released once the cancelled
 * kube call has completed and its timers are closed, i.e. after the loop ran
 * (or at once for a detached informer). No callback runs after this
 * returns. May be called from a callback. NULL is a no-op. */
void informer_free(struct informer *inf);

/* True once the first complete list has been delivered (stays true across
 * re-lists and reconnects). */
bool informer_synced(const struct informer *inf);

/* The cached object name in the informer's namespace ("" for cluster-scoped
 * kinds or an all-namespaces informer), or NULL. Borrowed. */
json_t *informer_get(const struct informer *inf, const char *name);
/* The cached object ns/name (ns NULL or "" when cluster-scoped), or NULL.
 * Borrowed. */
json_t *informer_get_ns(const struct informer *inf, const char *ns, const char *name);

/* Number of cached objects. */
size_t informer_count(const struct informer *inf);

/* Iteration over the cache, in no particular order:
 *   struct informer_iter it = INFORMER_ITER_INIT;
 *   json_t *obj;
 *   while ((obj = informer_iter_next(inf, &it))) ...
 * Returns borrowed objects, then NULL. The cache must not change during an
 * iteration (do not let the loop run). */
struct informer_iter {
	size_t bucket;
	const void *entry;
};
#define INFORMER_ITER_INIT { 0, NULL }
json_t *informer_iter_next(const struct informer *inf, struct informer_iter *it);

/* The resourceVersion the next watch starts from (of the last list, event or
 * bookmark), or NULL before the first list. Borrowed. */
const char *informer_resource_version(const struct informer *inf);

/* A snapshot of the counters. */
struct informer_stats informer_stats(const struct informer *inf);

/* ---- the pure core (exposed for tests) ---- */

/* Note: both functions below take over the objects they are given: unless
 * keep_managed_fields is set, their metadata.managedFields is removed in
 * place.
 *
 * Applies a complete List (borrowed; {"metadata": {"resourceVersion"},
 * "items": [...]}) to the cache: add for new objects, update for those whose
 * resourceVersion changed, delete for cached objects the list no longer
 * holds; stores the list's resourceVersion; the first time, marks the
 * informer synced and calls on_synced. Items without a valid name are
 * skipped (logged). Returns 0, or -EPROTO (nothing changed) if list is not a
 * List with a resourceVersion. The same as informer_list_begin, one
 * informer_list_page and informer_list_end. */
int informer_replace(struct informer *inf, json_t *list);

/* The same, page by page, as a paginated list is applied (a detached
 * informer's tests): informer_list_begin starts a list (a list begun again
 * before its end is abandoned: what it applied stays, and the new one
 * sweeps); informer_list_page applies the items of one page (borrowed) at
 * once, add or update, and returns 0 or -EPROTO (nothing changed) if page
 * has no items array; informer_list_end, after the last page, deletes what
 * the list did not hold, stores rv and calls on_synced the first time, and
 * returns 0 or -EPROTO (nothing changed) if rv is not valid. A callback may
 * stop the informer (the rest of that call is not applied) or free it (no
 * further call then). */
void informer_list_begin(struct informer *inf);
int informer_list_page(struct informer *inf, json_t *page);
int informer_list_end(struct informer *inf, const char *rv);
/* informer_list_page from a page's JSON text (len bytes), as a running
 * informer applies the pages kube_list hands it: each item is parsed as
 * the cache keeps it (the members and fields it drops are only checked,
 * never built; the result is the trimmed object informer_list_page would
 * give the callbacks) and applied before the next is parsed. Returns 0, or
 * -EPROTO if the text is not an object with an items array of JSON objects
 * (malformed JSON is found before any item is applied; an item refused
 * by jansson, e.g. for an escaped NUL in a key, stops the page after the
 * items before it were applied). */
int informer_list_page_text(struct informer *inf, const char *text, size_t len);

/* Applies one watch event (object borrowed) to the cache with its callback,
 * and advances the stored resourceVersion. BOOKMARK only advances it.
 * Returns 0 (applied, or ignored: unknown type, duplicate), -ESTALE for an
 * ERROR event with code 410 (the resourceVersion is too old: re-list),
 * -EREMOTEIO for another ERROR event, -EPROTO for a malformed event (no
 * object, no name, bad resourceVersion): the stream cannot be trusted. */
int informer_apply_event(struct informer *inf, const char *type, json_t *obj);

/* What to do after a watch ended. */
enum informer_action {
	INFORMER_REWATCH,         /* watch again from the stored resourceVersion now */
	INFORMER_REWATCH_BACKOFF, /* the same, after the backoff delay */
	INFORMER_RELIST,          /* list again, after the backoff delay */
	INFORMER_HALT,            /* the client is closing: do nothing more */
};

/* How a watch ended. */
struct informer_watch_end {
	int error;     /* kube_result.error of the watch */
	int status;    /* its HTTP status */
	bool expired;  /* an ERROR event with code 410 was seen */
	bool errored;  /* another ERROR event was seen */
	bool broken;   /* a malformed event was seen */
	bool silenced; /* cancelled by the silence watchdog */
	bool healthy;  /* informer_watch_healthy() */
};
enum informer_action informer_watch_next(const struct informer_watch_end *e);

/* A watch is healthy (resets the backoff) if it delivered events (bookmarks
 * included) or lasted at least healthy_ms. */
bool informer_watch_healthy(uint64_t started_ms, uint64_t ended_ms, unsigned long events,
			    long healthy_ms);

/* When a watch whose last event or bookmark (or start) was at
 * last_activity_ms counts as silent (dead): last_activity_ms + timeout_s s +
 * margin_ms; and once periodic bookmarks have been seen (bookmark_period_ms >
 * 0, the shortest gap seen between them; at least
 * INFORMER_MIN_BOOKMARK_PERIOD_MS is assumed), no later than
 * last_activity_ms + 2 * period + margin_ms. */
uint64_t informer_silence_deadline(uint64_t last_activity_ms, int timeout_s, long margin_ms,
				   uint64_t bookmark_period_ms);
#define INFORMER_MIN_BOOKMARK_PERIOD_MS 15000

/* Whether a bookmark received at now_ms on a watch started at started_ms
 * with timeoutSeconds timeout_s is a periodic one: kube-apiserver also sends
 * one just before timeoutSeconds (2 s before), which says nothing of a
 * period, so one within INFORMER_END_BOOKMARK_SLACK_MS of the end is not. */
bool informer_periodic_bookmark(uint64_t started_ms, uint64_t now_ms, int timeout_s);
#define INFORMER_END_BOOKMARK_SLACK_MS 10000

/* The bookmark period known after a periodic bookmark at now_ms whose
 * predecessor on the same watch (or the watch's start) was at prev_ms: the
 * shorter of period_ms (0: none known) and the gap; period_ms if the clock
 * did not move forward. kube-apiserver skips a tick when the resource's
 * revision has not moved past the watch's start (or the watcher's buffer is
 * full), so every gap is about a multiple of the period and the shortest is
 * the best estimate (the first one, from the watch's start, may be 120 s). */
uint64_t informer_bookmark_period(uint64_t period_ms, uint64_t prev_ms, uint64_t now_ms);

/* A timeoutSeconds drawn uniformly in [min_s, max_s] (swapped if reversed;
 * at least 1) from the PRNG state *rng (see backoff_random). */
int informer_watch_timeout(uint64_t *rng, int min_s, int max_s);

/* True if s is an acceptable resourceVersion: 1 to 64 characters of
 * [A-Za-z0-9._-] (etcd revisions are decimal; treated as opaque). */
bool informer_valid_rv(const char *s);

#endif
