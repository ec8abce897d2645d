/* The GitHub API client. Every request is a `job`; a job is in exactly one
 * of three lists: `queue` (statuses waiting, oldest first), `retry` (lookups
 * waiting for their next attempt) or `inflight`. One timer wakes the client
 * when the queue may resume (backoff, rate limit) or a lookup is due.
 *
 * Lifetimes: a job in flight is owned by its curl_uv request and is freed in
 * on_done, after its callback. github_client_close cancels requests, and the
 * client is freed by whichever comes last: the timer's close callback or the
 * last on_done.
 *
 * A listing is one job that walks its pages: on_done appends the page's
 * entries, then sends the same job for the next page. The ETag cache maps a
 * page's path (api_url removed) to its ETag, its entries and its next page,
 * so that a 304 replays what the page held. */
#include "github_client.h"

#include "backoff.h"
#include "build.h"
#include "curl_uv.h"
#include "github.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "strmap.h"
#include "util.h"
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef RUNBOAT_VERSION
#define RUNBOAT_VERSION "dev"
#endif

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_MAX_QUEUE 10000
#define DEFAULT_MAX_IN_FLIGHT 4
#define DEFAULT_MAX_ATTEMPTS 12
#define DEFAULT_LOOKUP_ATTEMPTS 3
#define DEFAULT_RETRY_BASE_MS 1000
#define DEFAULT_RETRY_MAX_MS 300000
#define DEFAULT_MAX_PAUSE_MS 3600000
/* A rate limit without any hint of its length (GitHub: "wait at least one
 * minute"). */
#define DEFAULT_RATE_PAUSE_MS 60000
#define MAX_TARGET_URL 2048
#define MAX_LOOKUP_RESPONSE (8u << 20)
#define MAX_STATUS_RESPONSE (1u << 20)
/* A page of 100 pull requests is 1-3 MB (each holds its repositories). */
#define MAX_LIST_RESPONSE (16u << 20)
#define MAX_PAGE_ENTRIES 1000
#define MAX_ETAG_LEN 256
#define MAX_LINK_URL 2048
#define DEFAULT_ETAG_ENTRIES 4096
#define DEFAULT_ETAG_BYTES (16u << 20)
#define DEFAULT_MAX_PAGES 100
#define PER_PAGE 100 /* asked; GitHub's maximum */

enum job_kind { JOB_BRANCH, JOB_PR, JOB_STATUS, JOB_LIST };

/* What one page held, kept with its ETag. */
struct etag_entry {
	char *path; /* the key */
	char *etag;
	struct github_list_item *items;
	size_t n;
	unsigned skipped;
	char *next; /* the next page's path, or NULL */
	size_t bytes;
	struct list lru; /* in github_client.lru */
};

struct job {
	struct github_client *gc;
	enum job_kind kind;
	char repo[GITHUB_REPO_MAX + 1];
	char sha[GITHUB_SHA_MAX + 1];    /* JOB_STATUS */
	char state[8];                   /* JOB_STATUS, for logs */
	char *branch;                    /* JOB_BRANCH */
	long pr;                         /* JOB_PR */
	char *path;                      /* API path, for the URL and logs */
	char *body;                      /* JOB_STATUS: JSON to post */
	github_head_cb cb;               /* lookups */
	void *data;
	/* JOB_LIST */
	enum github_list_kind list_kind;
	github_list_cb list_cb;
	struct github_list_item *items;
	size_t n_items, cap_items;
	unsigned pages, requests, not_modified, skipped;
	size_t first_page_n;             /* entries of the first page read */
	char **seen;                     /* paths asked, to detect a loop */
	size_t n_seen;
	bool conditional;                /* the request in flight has If-None-Match */
	bool unconditional;              /* ask the next one without it */
	unsigned attempts;               /* failed attempts (rate limits not counted) */
	uint64_t due;                    /* in `retry`: loop time of the next attempt */
	struct curl_uv_request *req;     /* in `inflight` */
	struct list link; /* in one of the client's job lists */
};

/* A list of jobs and its length. */
struct job_list {
	struct list jobs;
	size_t n;
};

struct github_client {
	uv_loop_t *loop;
	struct curl_uv *cu;
	uv_timer_t timer;
	char *api_url;
	char *auth_header; /* "Authorization: Bearer ..." or NULL */
	char *user_agent;
	bool statuses;
	long timeout_ms;
	size_t max_queue;
	unsigned max_in_flight;
	unsigned max_attempts;
	unsigned lookup_attempts;
	uint64_t max_pause_ms;
	size_t etag_max_entries, etag_max_bytes;
	unsigned max_pages;
	struct strmap etags;                  /* path -> struct etag_entry */
	struct list lru;                      /* struct etag_entry, oldest first */
	size_t etag_n, etag_bytes;
	struct backoff backoff;        /* the status queue's, reset on success */
	struct backoff lookup_backoff; /* nominal delays only */
	uint64_t resume_at;            /* loop time before which no status is sent */
	struct job_list queue, retry, inflight;
	size_t status_in_flight;
	struct github_client_stats stats;
	bool closing;
	bool timer_closed;
	bool held; /* github_client_hold_statuses: statuses are not this replica's */
};

static bool header_safe(const char *s);

/* ---- lists ---- */

static void jobs_push(struct job_list *l, struct job *j)
{
	list_push(&l->jobs, &j->link);
	l->n++;
}

static void jobs_push_front(struct job_list *l, struct job *j)
{
	list_push_front(&l->jobs, &j->link);
	l->n++;
}

static void jobs_remove(struct job_list *l, struct job *j)
{
	list_remove(&j->link);
	l->n--;
}

/* The first job of l, or NULL. */
static struct job *jobs_first(struct job_list *l)
{
	return list_first(&l->jobs, struct job, link);
}

void github_list_items_free(struct github_list_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(items[i].name);
		free(items[i].base);
	}
	free(items);
}

static void job_free(struct job *j)
{
	free(j->branch);
	free(j->path);
	free(j->body);
	github_list_items_free(j->items, j->n_items);
	for (size_t i = 0; i < j->n_seen; i++)
		free(j->seen[i]);
	free(j->seen);
	free(j);
}

/* ---- the ETag cache ---- */

static struct etag_entry *etag_oldest(struct github_client *gc)
{
	return list_first(&gc->lru, struct etag_entry, lru);
}

static void etag_drop(struct github_client *gc, struct etag_entry *e)
{
	list_remove(&e->lru);
	strmap_del(&gc->etags, e->path);
	gc->etag_n--;
	gc->etag_bytes -= e->bytes;
	github_list_items_free(e->items, e->n);
	free(e->path);
	free(e->etag);
	free(e->next);
	free(e);
}

static struct etag_entry *etag_get(struct github_client *gc, const char *path)
{
	return strmap_get(&gc->etags, path);
}

/* Remembers what the page at path held (items stolen). An entry larger
 * than the whole budget is not kept. */
static void etag_put(struct github_client *gc, const char *path, const char *etag,
		     struct github_list_item *items, size_t n, unsigned skipped, const char *next)
{
	struct etag_entry *old = etag_get(gc, path);
	if (old)
		etag_drop(gc, old);
	size_t bytes = sizeof(struct etag_entry) + 2 * strlen(path) + strlen(etag) +
		       (next ? strlen(next) : 0) + n * sizeof(*items) + 64;
	for (size_t i = 0; i < n; i++)
		bytes += (items[i].name ? strlen(items[i].name) + 1 : 0) +
			 (items[i].base ? strlen(items[i].base) + 1 : 0);
	if (bytes > gc->etag_max_bytes) {
		github_list_items_free(items, n);
		return;
	}
	while (!list_empty(&gc->lru) &&
	       (gc->etag_n + 1 > gc->etag_max_entries || gc->etag_bytes + bytes > gc->etag_max_bytes))
		etag_drop(gc, etag_oldest(gc));
	struct etag_entry *e = xcalloc(1, sizeof(*e));
	e->path = xstrdup(path);
	e->etag = xstrdup(etag);
	e->items = items;
	e->n = n;
	e->skipped = skipped;
	e->next = next ? xstrdup(next) : NULL;
	e->bytes = bytes;
	strmap_put(&gc->etags, path, e);
	list_push(&gc->lru, &e->lru);
	gc->etag_n++;
	gc->etag_bytes += bytes;
}

static void etag_clear(struct github_client *gc)
{
	struct etag_entry *e, *tmp;
	list_each_safe(e, tmp, &gc->lru, lru)
	{
		etag_drop(gc, e);
	}
	strmap_clear(&gc->etags, NULL);
}

static bool same_commit(const struct job *a, const struct job *b)
{
	return strcmp(a->repo, b->repo) == 0 && strcmp(a->sha, b->sha) == 0;
}

/* The queued status of the same commit as j, if any. */
static struct job *queued_for(struct github_client *gc, const struct job *j)
{
	struct job *q;
	list_each(q, &gc->queue.jobs, link)
	{
		if (q != j && same_commit(q, j))
			return q;
	}
	return NULL;
}

static bool in_flight_for(struct github_client *gc, const struct job *j)
{
	struct job *q;
	list_each(q, &gc->inflight.jobs, link)
	{
		if (q->kind == JOB_STATUS && same_commit(q, j))
			return true;
	}
	return false;
}

/* ---- lifetime ---- */

static void maybe_free(struct github_client *gc)
{
	if (!gc->closing || !gc->timer_closed || gc->inflight.n)
		return;
	etag_clear(gc);
	free(gc->api_url);
	free(gc->auth_header);
	free(gc->user_agent);
	free(gc);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct github_client *gc = h->data;
	gc->timer_closed = true;
	maybe_free(gc);
}

/* ---- requests ---- */

static void on_done(struct curl_uv_request *req, const struct curl_uv_response *res, void *data);

/* Sends j and moves it to `inflight`. Returns false when curl_uv refuses
 * (it is closing); j is then in no list. */
static bool job_start(struct github_client *gc, struct job *j)
{
	const char *headers[7];
	char *inm = NULL;
	size_t n = 0;
	headers[n++] = "Accept: application/vnd.github+json";
	headers[n++] = "X-GitHub-Api-Version: " GITHUB_API_VERSION;
	if (gc->auth_header)
		headers[n++] = gc->auth_header;
	if (j->kind == JOB_STATUS)
		headers[n++] = "Content-Type: application/json";
	if (j->kind == JOB_LIST) {
		struct etag_entry *e = j->unconditional ? NULL : etag_get(gc, j->path);
		j->conditional = e != NULL;
		if (e) {
			inm = xasprintf("If-None-Match: %s", e->etag);
			headers[n++] = inm;
		}
	}
	headers[n] = NULL;
	size_t max_response = j->kind == JOB_STATUS ? MAX_STATUS_RESPONSE
			      : j->kind == JOB_LIST ? MAX_LIST_RESPONSE
						    : MAX_LOOKUP_RESPONSE;

	char *url = xasprintf("%s%s", gc->api_url, j->path);
	struct curl_uv_request_opts o = {
		.method = j->kind == JOB_STATUS ? "POST" : "GET",
		.url = url,
		.headers = headers,
		.body = j->body,
		.body_len = j->body ? strlen(j->body) : 0,
		.timeout_ms = gc->timeout_ms,
		.max_response = max_response,
		.user_agent = gc->user_agent,
		.on_done = on_done,
		.data = j,
	};
	j->req = curl_uv_start(gc->cu, &o);
	free(url);
	free(inm);
	if (!j->req)
		return false;
	jobs_push(&gc->inflight, j);
	if (j->kind == JOB_STATUS)
		gc->status_in_flight++;
	if (j->kind == JOB_LIST) {
		j->requests++;
		gc->stats.list_requests++;
	}
	return true;
}

static void on_timer(uv_timer_t *t);

/* Arms the timer for the earliest of: the queue's resume time (when statuses
 * wait) and the lookups' retries. */
static void arm_timer(struct github_client *gc)
{
	if (gc->closing)
		return;
	uint64_t now = uv_now(gc->loop), due = UINT64_MAX;
	if (gc->queue.n && gc->resume_at > now)
		due = gc->resume_at;
	struct job *j;
	list_each(j, &gc->retry.jobs, link)
	{
		if (j->due < due)
			due = j->due;
	}
	if (due == UINT64_MAX)
		uv_timer_stop(&gc->timer);
	else
		uv_timer_start(&gc->timer, on_timer, due > now ? due - now : 0, 0);
}

/* Sends queued statuses while the queue is not paused and there is room. */
static void pump(struct github_client *gc)
{
	if (gc->closing)
		return;
	uint64_t now = uv_now(gc->loop);
	struct job *j, *tmp;
	list_each_safe(j, tmp, &gc->queue.jobs, link)
	{
		if (now < gc->resume_at || gc->status_in_flight >= gc->max_in_flight)
			break;
		if (!in_flight_for(gc, j)) {
			jobs_remove(&gc->queue, j);
			if (!job_start(gc, j)) {
				log_warn("github: commit status %s for %s@%.12s dropped: the HTTP client is closed",
					 j->state, j->repo, j->sha);
				gc->stats.failed++;
				job_free(j);
			}
		}
	}
	arm_timer(gc);
}

/* Calls a listing back with what it read (complete when error is 0). */
static void list_finish(struct job *j, int error, const char *message)
{
	struct github_listing l = {
		.kind = j->list_kind,
		.repo = j->repo,
		.items = j->items,
		.n = j->n_items,
		.complete = error == 0,
		.pages = j->pages,
		.requests = j->requests,
		.not_modified = j->not_modified,
		.skipped = j->skipped,
	};
	j->list_cb(error, message, &l, j->data);
}

/* A lookup or a listing fails. */
static void lookup_fail(struct job *j, int error, const char *message)
{
	if (j->kind == JOB_LIST)
		list_finish(j, error, message);
	else
		j->cb(error, message, NULL, j->data);
}

static void on_timer(uv_timer_t *t)
{
	struct github_client *gc = t->data;
	if (gc->closing)
		return;
	uint64_t now = uv_now(gc->loop);
	struct job *j, *tmp;
	list_each_safe(j, tmp, &gc->retry.jobs, link)
	{
		if (j->due <= now) {
			jobs_remove(&gc->retry, j);
			if (!job_start(gc, j)) {
				lookup_fail(j, -ECANCELED, "the HTTP client is closed");
				job_free(j);
			}
		}
	}
	pump(gc);
}

/* ---- answers ---- */

/* GitHub's "message" of an error answer, cleaned for a log line, into out. */
static void api_message(const struct curl_uv_response *res, char *out, size_t outlen)
{
	out[0] = '\0';
	json_t *root = json_loadb(res->body, res->body_len, 0, NULL);
	json_t *m = root ? json_object_get(root, "message") : NULL;
	const char *s = json_is_string(m) ? json_string_value(m) : "";
	size_t i = 0;
	for (; *s && i + 1 < outlen; s++)
		out[i++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	out[i] = '\0';
	json_decref(root);
}

/* Whether the answer is a rate limit, and for how long to pause (ms).
 * See GitHub's "Rate limits for the REST API": Retry-After first, then
 * X-RateLimit-Remaining: 0 with X-RateLimit-Reset (epoch seconds), then at
 * least a minute. */
static bool rate_limited(struct github_client *gc, struct curl_uv_request *req,
			 const struct curl_uv_response *res, uint64_t *pause_ms)
{
	if (res->status != 403 && res->status != 429)
		return false;
	const char *retry_after = curl_uv_response_header(req, "Retry-After");
	const char *remaining = curl_uv_response_header(req, "X-RateLimit-Remaining");
	const char *reset = curl_uv_response_header(req, "X-RateLimit-Reset");
	char *end;
	uint64_t pause;
	if (retry_after && isdigit((unsigned char)*retry_after)) {
		unsigned long long s = strtoull(retry_after, &end, 10);
		pause = s > gc->max_pause_ms / 1000 ? gc->max_pause_ms : (uint64_t)s * 1000;
	} else if (remaining && strcmp(remaining, "0") == 0 && reset &&
		   isdigit((unsigned char)*reset)) {
		long long at = strtoll(reset, &end, 10);
		long long wait = at - (long long)time(NULL);
		if (wait < 1)
			wait = 1;
		pause = (uint64_t)wait > gc->max_pause_ms / 1000 ? gc->max_pause_ms
							      : (uint64_t)wait * 1000;
	} else if (res->status == 429 || (remaining && strcmp(remaining, "0") == 0)) {
		pause = DEFAULT_RATE_PAUSE_MS;
	} else {
		/* a secondary rate limit may come as a bare 403 */
		char msg[256];
		api_message(res, msg, sizeof(msg));
		if (!strcasestr(msg, "rate limit"))
			return false;
		pause = DEFAULT_RATE_PAUSE_MS;
	}
	if (pause > gc->max_pause_ms)
		pause = gc->max_pause_ms;
	*pause_ms = pause ? pause : 1;
	return true;
}

/* Pauses the status queue for at least pause_ms. */
static void pause_queue(struct github_client *gc, uint64_t pause_ms)
{
	uint64_t until = uv_now(gc->loop) + pause_ms;
	if (until > gc->resume_at)
		gc->resume_at = until;
	gc->stats.rate_limited++;
}

static bool retryable(const struct curl_uv_response *res)
{
	return (res->error && res->error != -ECANCELED && res->error != -EMSGSIZE) ||
	       (!res->error && res->status >= 500);
}

/* A status answered: done, retried later, or given up. */
static void status_done(struct github_client *gc, struct job *j, struct curl_uv_request *req,
			const struct curl_uv_response *res)
{
	char msg[256];
	uint64_t pause;
	if (!res->error && res->status >= 200 && res->status < 300) {
		gc->stats.sent++;
		backoff_reset(&gc->backoff);
		log_debug("github: commit status %s posted for %s@%.12s", j->state, j->repo, j->sha);
		job_free(j);
		return;
	}
	if (!res->error && rate_limited(gc, req, res, &pause)) {
		pause_queue(gc, pause);
		log_warn("github: rate limited (HTTP %ld), commit statuses paused for %llu s",
			 res->status, (unsigned long long)(pause + 999) / 1000);
	} else if (retryable(res)) {
		j->attempts++;
		if (res->error)
			snprintf(msg, sizeof(msg), "%s", res->error_message);
		else
			snprintf(msg, sizeof(msg), "HTTP %ld", res->status);
		if (j->attempts >= gc->max_attempts) {
			log_warn("github: commit status %s for %s@%.12s given up after %u attempts: %s",
				 j->state, j->repo, j->sha, j->attempts, msg);
			gc->stats.failed++;
			job_free(j);
			return;
		}
		gc->stats.retried++;
		uint64_t delay = backoff_next(&gc->backoff);
		uint64_t until = uv_now(gc->loop) + delay;
		if (until > gc->resume_at)
			gc->resume_at = until;
		log_info("github: commit status for %s@%.12s failed (%s), retrying in %llu ms",
			 j->repo, j->sha, msg, (unsigned long long)delay);
	} else if (res->error) {
		/* cancelled (the HTTP client closed under us) or an oversize answer */
		log_warn("github: commit status %s for %s@%.12s dropped: %s", j->state, j->repo,
			 j->sha, res->error_message);
		gc->stats.failed++;
		job_free(j);
		return;
	} else {
		api_message(res, msg, sizeof(msg));
		log_warn("github: commit status %s for %s@%.12s refused: HTTP %ld %s", j->state,
			 j->repo, j->sha, res->status, msg);
		gc->stats.failed++;
		job_free(j);
		return;
	}
	/* retry, unless a newer status of the same commit is already queued,
	 * or this replica no longer posts statuses */
	if (gc->held) {
		log_info("github: commit status %s for %s@%.12s dropped: this replica stopped leading",
			 j->state, j->repo, j->sha);
		job_free(j);
		return;
	}
	if (queued_for(gc, j)) {
		gc->stats.coalesced++;
		job_free(j);
		return;
	}
	jobs_push_front(&gc->queue, j);
}

/* Parses a successful lookup answer into a head and calls back. */
static void lookup_answer(struct job *j, const struct curl_uv_response *res)
{
	char msg[512];
	json_error_t jerr;
	json_t *root = json_loadb(res->body, res->body_len, 0, &jerr);
	json_t *sha, *base = NULL, *state = NULL;
	char lower[GITHUB_SHA_MAX + 1];
	if (j->kind == JOB_BRANCH) {
		sha = json_object_get(json_object_get(root, "commit"), "sha");
	} else {
		sha = json_object_get(json_object_get(root, "head"), "sha");
		base = json_object_get(json_object_get(root, "base"), "ref");
		state = json_object_get(root, "state");
	}
	if (!json_is_object(root)) {
		snprintf(msg, sizeof(msg), "GET %s: answer is not a JSON object", j->path);
	} else if (!json_is_string(sha) || !github_sha_normalize(json_string_value(sha), lower)) {
		snprintf(msg, sizeof(msg), "GET %s: answer has no valid %s", j->path,
			 j->kind == JOB_BRANCH ? "commit.sha" : "head.sha");
	} else if (j->kind == JOB_PR &&
		   (!json_is_string(base) || !validate_branch(json_string_value(base)))) {
		snprintf(msg, sizeof(msg), "GET %s: answer has no valid base.ref", j->path);
	} else {
		struct github_head head = {
			.repo = j->repo,
			.sha = lower,
			.target_branch = j->kind == JOB_BRANCH ? j->branch : json_string_value(base),
			.pr = j->kind == JOB_PR ? j->pr : 0,
			.open = j->kind == JOB_BRANCH ||
				(json_is_string(state) && strcmp(json_string_value(state), "open") == 0),
		};
		j->cb(0, "", &head, j->data);
		json_decref(root);
		return;
	}
	json_decref(root);
	lookup_fail(j, -EPROTO, msg);
}

/* What a failed GET of path (not retried) comes to, for a lookup or a
 * listing: the error (-ENOENT 404, -EACCES 401/403, -EIO 5xx, -EAGAIN rate
 * limited, which also pauses the queue, -EPROTO otherwise, or the transport
 * error) and a one-line message in msg. */
static int get_failure(struct github_client *gc, struct curl_uv_request *req,
		       const struct curl_uv_response *res, const char *path, char *msg,
		       size_t msglen)
{
	char api[256];
	uint64_t pause;
	if (res->error) {
		snprintf(msg, msglen, "GET %s: %s", path, res->error_message);
		return res->error == -EMSGSIZE ? -EPROTO : res->error;
	}
	api_message(res, api, sizeof(api));
	if (rate_limited(gc, req, res, &pause)) {
		pause_queue(gc, pause);
		snprintf(msg, msglen, "GET %s: rate limited by GitHub for %llu s (%s)", path,
			 (unsigned long long)(pause + 999) / 1000, api);
		return -EAGAIN;
	}
	snprintf(msg, msglen, "GET %s: %ld %s", path, res->status, api[0] ? api : "(no message)");
	return res->status == 404			       ? -ENOENT
	       : res->status == 401 || res->status == 403 ? -EACCES
	       : res->status >= 500		       ? -EIO
							       : -EPROTO;
}

/* A lookup answered: called back, or retried later. */
/* A GET that failed in a way worth repeating, with attempts left: queued
 * again after its backoff (true), else false. */
static bool retry_later(struct github_client *gc, struct job *j, const struct curl_uv_response *res)
{
	if (!retryable(res) || ++j->attempts >= gc->lookup_attempts)
		return false;
	j->due = uv_now(gc->loop) + backoff_nominal(&gc->lookup_backoff, j->attempts - 1);
	if (res->error)
		log_info("github: GET %s failed (%s), retrying", j->path, res->error_message);
	else
		log_info("github: GET %s failed (HTTP %ld), retrying", j->path, res->status);
	jobs_push(&gc->retry, j);
	arm_timer(gc);
	return true;
}

static void lookup_done(struct github_client *gc, struct job *j, struct curl_uv_request *req,
			const struct curl_uv_response *res)
{
	char msg[512];
	if (res->error == -ECANCELED || gc->closing) {
		lookup_fail(j, -ECANCELED, "cancelled");
		job_free(j);
		return;
	}
	if (!res->error && res->status >= 200 && res->status < 300) {
		lookup_answer(j, res);
		job_free(j);
		return;
	}
	if (retry_later(gc, j, res))
		return;
	lookup_fail(j, get_failure(gc, req, res, j->path, msg, sizeof(msg)), msg);
	job_free(j);
}

/* A non-negative decimal header value, or -1. */
static long long header_number(struct curl_uv_request *req, const char *name)
{
	const char *v = curl_uv_response_header(req, name);
	if (!v || !isdigit((unsigned char)*v))
		return -1;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	return errno || *end ? -1 : n;
}

/* Records GitHub's X-RateLimit-* headers; pauses the client until the reset
 * when nothing is left, so that no request is sent only to be refused. */
static void record_rate(struct github_client *gc, struct curl_uv_request *req,
			const struct curl_uv_response *res)
{
	if (res->error)
		return;
	long long limit = header_number(req, "X-RateLimit-Limit");
	long long remaining = header_number(req, "X-RateLimit-Remaining");
	long long reset = header_number(req, "X-RateLimit-Reset");
	if (remaining < 0 || remaining > LONG_MAX)
		return;
	gc->stats.rate_remaining = (long)remaining;
	if (limit >= 0 && limit <= LONG_MAX)
		gc->stats.rate_limit = (long)limit;
	if (reset >= 0)
		gc->stats.rate_reset = reset;
	if (remaining == 0 && reset >= 0) {
		long long wait = reset - (long long)time(NULL);
		if (wait < 1)
			wait = 1;
		uint64_t pause = (uint64_t)wait > gc->max_pause_ms / 1000 ? gc->max_pause_ms
									 : (uint64_t)wait * 1000;
		uint64_t until = uv_now(gc->loop) + pause;
		if (until > gc->resume_at)
			gc->resume_at = until;
	}
}

static void append_items(struct job *j, const struct github_list_item *items, size_t n)
{
	if (j->n_items + n > j->cap_items) {
		j->cap_items = (j->n_items + n) * 2;
		j->items = xrealloc(j->items, j->cap_items * sizeof(*j->items));
	}
	for (size_t i = 0; i < n; i++) {
		struct github_list_item *d = &j->items[j->n_items++];
		*d = items[i];
		d->name = items[i].name ? xstrdup(items[i].name) : NULL;
		d->base = items[i].base ? xstrdup(items[i].base) : NULL;
	}
}

/* The path (under api_url) of a next-page URL, or NULL when the URL leaves
 * api_url or holds what a path should not. Borrowed from url. */
static const char *next_path(struct github_client *gc, const char *url)
{
	size_t n = strlen(gc->api_url);
	if (strlen(url) > MAX_LINK_URL || strncmp(url, gc->api_url, n) != 0 || url[n] != '/' ||
	    !header_safe(url) || strpbrk(url, " \\#") || strstr(url, "/../") || strstr(url, "/./"))
		return NULL;
	return url + n;
}

/* A listing page answered: entries appended and the next page asked, or the
 * listing finished (j freed either way unless it was sent again). */
/* Ends a listing job: its outcome to the caller, then the job freed. */
static void list_end(struct job *j, int error, const char *message)
{
	list_finish(j, error, message);
	job_free(j);
}

/* Sends the job's request again (its path may have changed). */
static void list_resend(struct github_client *gc, struct job *j)
{
	if (!job_start(gc, j))
		list_end(j, -ECANCELED, "the HTTP client is closed");
}

/* The path of the next page from a Link header: *next is NULL at the last
 * page. False (the job ended) when the link leaves the API. */
static bool link_next(struct github_client *gc, struct job *j, const char *link, char **next)
{
	*next = NULL;
	char *url = link ? github_link_next(link) : NULL;
	if (!url)
		return true;
	const char *p = next_path(gc, url); /* into url */
	if (!p) {
		free(url);
		char msg[512];
		snprintf(msg, sizeof(msg), "GET %s: the next page's link leaves %s", j->path,
			 gc->api_url);
		list_end(j, -EPROTO, msg);
		return false;
	}
	*next = xstrdup(p);
	free(url);
	return true;
}

/* A 304: the page is the cached one. True when the listing goes on with
 * *next (NULL: it was the last); false when the job was ended or sent again. */
static bool page_not_modified(struct github_client *gc, struct job *j, struct curl_uv_request *req,
			      char **next)
{
	struct etag_entry *e = etag_get(gc, j->path);
	if (!e || !j->conditional) {
		if (j->conditional) {
			/* forgotten while the request was in flight: ask again */
			j->unconditional = true;
			list_resend(gc, j);
			return false;
		}
		char msg[512];
		snprintf(msg, sizeof(msg), "GET %s: 304 to a request without If-None-Match", j->path);
		list_end(j, -EPROTO, msg);
		return false;
	}
	/* the next page: from the 304's own Link when it has one, else from
	 * the cache */
	const char *link = curl_uv_response_header(req, "Link");
	if (link) {
		if (!link_next(gc, j, link, next))
			return false;
	} else {
		*next = e->next ? xstrdup(e->next) : NULL;
	}
	/* An unchanged last page that is full may have been followed by a new
	 * one (a branch sorting after all the others): an ETag need not cover
	 * the Link header, so read it again. */
	if (!*next && !link && !j->unconditional &&
	    (e->n >= PER_PAGE || (j->pages > 0 && e->n >= j->first_page_n))) {
		j->unconditional = true;
		list_resend(gc, j);
		return false;
	}
	j->not_modified++;
	gc->stats.list_not_modified++;
	list_remove(&e->lru);
	list_push(&gc->lru, &e->lru); /* the newest now */
	if (j->pages == 0)
		j->first_page_n = e->n;
	append_items(j, e->items, e->n);
	j->skipped += e->skipped;
	return true;
}

/* A 2xx: the page parsed, kept with its ETag. As page_not_modified. */
static bool page_fresh(struct github_client *gc, struct job *j, struct curl_uv_request *req,
		       const struct curl_uv_response *res, char **next)
{
	struct github_list_item *items = NULL;
	size_t n = 0;
	unsigned skipped = 0;
	char err[256];
	if (github_parse_list_page(j->list_kind, res->body, res->body_len, &items, &n, &skipped, err,
				   sizeof(err)) < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "GET %s: %s", j->path, err);
		list_end(j, -EPROTO, msg);
		return false;
	}
	if (!link_next(gc, j, curl_uv_response_header(req, "Link"), next)) {
		github_list_items_free(items, n);
		return false;
	}
	if (j->pages == 0)
		j->first_page_n = n;
	append_items(j, items, n);
	j->skipped += skipped;
	const char *etag = curl_uv_response_header(req, "ETag");
	if (etag && *etag && strlen(etag) <= MAX_ETAG_LEN && header_safe(etag)) {
		etag_put(gc, j->path, etag, items, n, skipped, *next);
	} else {
		struct etag_entry *e = etag_get(gc, j->path);
		if (e)
			etag_drop(gc, e);
		github_list_items_free(items, n);
	}
	return true;
}

/* A page was read: the listing ends at the last one, or asks for next
 * (owned) unless the pages loop, are too many or the rate limit is out. */
static void list_follow(struct github_client *gc, struct job *j, char *next)
{
	char msg[512];
	j->pages++;
	if (!next) {
		list_end(j, 0, "");
		return;
	}
	int error = 0;
	for (size_t i = 0; i < j->n_seen && !error; i++)
		if (strcmp(j->seen[i], next) == 0)
			error = -EPROTO;
	if (error) {
		snprintf(msg, sizeof(msg), "GET %s: the pages loop back to %s", j->path, next);
	} else if (j->pages >= gc->max_pages) {
		error = -E2BIG;
		snprintf(msg, sizeof(msg), "GET %s: more than %u pages", j->seen[0], gc->max_pages);
	} else if (uv_now(gc->loop) < gc->resume_at) {
		error = -EAGAIN;
		snprintf(msg, sizeof(msg), "GET %s: the rate limit is used up for %llu s", next,
			 (unsigned long long)(gc->resume_at - uv_now(gc->loop) + 999) / 1000);
	}
	if (error) {
		free(next);
		list_end(j, error, msg);
		return;
	}
	free(j->path);
	j->path = next;
	j->seen = xrealloc(j->seen, (j->n_seen + 1) * sizeof(*j->seen));
	j->seen[j->n_seen++] = xstrdup(next);
	j->attempts = 0;
	j->unconditional = false;
	list_resend(gc, j);
}

static void list_done(struct github_client *gc, struct job *j, struct curl_uv_request *req,
		      const struct curl_uv_response *res)
{
	char *next = NULL;
	if (res->error == -ECANCELED || gc->closing) {
		list_end(j, -ECANCELED, "cancelled");
		return;
	}
	if (!res->error && res->status == 304) {
		if (!page_not_modified(gc, j, req, &next))
			return;
	} else if (!res->error && res->status >= 200 && res->status < 300) {
		if (!page_fresh(gc, j, req, res, &next))
			return;
	} else if (retry_later(gc, j, res)) {
		return;
	} else {
		char msg[512];
		list_end(j, get_failure(gc, req, res, j->path, msg, sizeof(msg)), msg);
		return;
	}
	list_follow(gc, j, next);
}

static void on_done(struct curl_uv_request *req, const struct curl_uv_response *res, void *data)
{
	struct job *j = data;
	struct github_client *gc = j->gc;
	jobs_remove(&gc->inflight, j);
	j->req = NULL;
	record_rate(gc, req, res);
	static const char *const calls[] = {"branch", "pr", "status", "list"};
	const char *call = calls[j->kind];
	uint64_t rate_limited = gc->stats.rate_limited;
	if (j->kind == JOB_LIST) {
		list_done(gc, j, req, res);
	} else if (j->kind == JOB_STATUS) {
		gc->status_in_flight--;
		if (gc->closing)
			job_free(j);
		else
			status_done(gc, j, req, res);
	} else {
		lookup_done(gc, j, req, res);
	}
	metrics_github_call(call, res->error, res->status, gc->stats.rate_limited != rate_limited);
	if (gc->closing)
		maybe_free(gc);
	else
		pump(gc);
}

/* ---- public ---- */

static bool header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

struct github_client *github_client_new(uv_loop_t *loop, struct curl_uv *cu,
					const struct github_client_opts *o)
{
	const char *url = o->api_url;
	if (!url || !(str_starts_with(url, "http://") || str_starts_with(url, "https://")) ||
	    !header_safe(url) || strchr(url, ' ')) {
		log_error("github: api_url must be an http(s) URL");
		return NULL;
	}
	if (o->token && (!header_safe(o->token) || strchr(o->token, ' '))) {
		log_error("github: the token holds characters that cannot go in a header");
		return NULL;
	}
	if (o->user_agent && !header_safe(o->user_agent)) {
		log_error("github: the user agent holds characters that cannot go in a header");
		return NULL;
	}
	struct github_client *gc = xcalloc(1, sizeof(*gc));
	gc->loop = loop;
	list_init(&gc->lru);
	list_init(&gc->queue.jobs);
	list_init(&gc->retry.jobs);
	list_init(&gc->inflight.jobs);
	gc->cu = cu;
	gc->api_url = xstrdup(url);
	size_t n = strlen(gc->api_url);
	while (n > 0 && gc->api_url[n - 1] == '/')
		gc->api_url[--n] = '\0';
	if (o->token && *o->token)
		gc->auth_header = xasprintf("Authorization: Bearer %s", o->token);
	gc->user_agent = xstrdup(o->user_agent ? o->user_agent : "runboat/" RUNBOAT_VERSION);
	gc->statuses = o->statuses;
	gc->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	gc->max_queue = o->max_queue ? o->max_queue : DEFAULT_MAX_QUEUE;
	gc->max_in_flight = o->max_in_flight ? o->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
	gc->max_attempts = o->max_attempts ? o->max_attempts : DEFAULT_MAX_ATTEMPTS;
	gc->lookup_attempts = o->lookup_attempts ? o->lookup_attempts : DEFAULT_LOOKUP_ATTEMPTS;
	gc->max_pause_ms = o->max_pause_ms ? o->max_pause_ms : DEFAULT_MAX_PAUSE_MS;
	gc->etag_max_entries = o->etag_entries ? o->etag_entries : DEFAULT_ETAG_ENTRIES;
	gc->etag_max_bytes = o->etag_bytes ? o->etag_bytes : DEFAULT_ETAG_BYTES;
	gc->max_pages = o->max_pages ? o->max_pages : DEFAULT_MAX_PAGES;
	gc->stats.rate_limit = gc->stats.rate_remaining = -1;
	gc->stats.rate_reset = -1;
	uint64_t base = o->retry_base_ms ? o->retry_base_ms : DEFAULT_RETRY_BASE_MS;
	uint64_t max = o->retry_max_ms ? o->retry_max_ms : DEFAULT_RETRY_MAX_MS;
	backoff_init(&gc->backoff, base, max, 0.2, backoff_seed());
	backoff_init(&gc->lookup_backoff, base, max, 0, 0);
	uv_timer_init(loop, &gc->timer);
	gc->timer.data = gc;
	return gc;
}

void github_client_close(struct github_client *gc)
{
	if (!gc || gc->closing)
		return;
	gc->closing = true;
	if (gc->queue.n)
		log_warn("github: %zu unsent commit statuses dropped at shutdown", gc->queue.n);
	struct job *j;
	while ((j = jobs_first(&gc->queue))) {
		jobs_remove(&gc->queue, j);
		job_free(j);
	}
	while ((j = jobs_first(&gc->retry))) {
		jobs_remove(&gc->retry, j);
		lookup_fail(j, -ECANCELED, "cancelled");
		job_free(j);
	}
	struct job *tmp;
	list_each_safe(j, tmp, &gc->inflight.jobs, link)
	{
		curl_uv_cancel(j->req);
	}
	uv_close((uv_handle_t *)&gc->timer, on_timer_closed);
}

static struct job *job_new(struct github_client *gc, enum job_kind kind, const char *repo)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->gc = gc;
	j->kind = kind;
	size_t i;
	for (i = 0; repo[i]; i++)
		j->repo[i] = (char)tolower((unsigned char)repo[i]);
	j->repo[i] = '\0';
	return j;
}

static int lookup_start(struct github_client *gc, struct job *j)
{
	if (!job_start(gc, j)) {
		job_free(j);
		return -ECANCELED;
	}
	log_debug("github: GET %s", j->path);
	return 0;
}

int github_client_branch_head(struct github_client *gc, const char *repo, const char *branch,
			      github_head_cb cb, void *data)
{
	if (!cb || !validate_repo(repo) || !validate_branch(branch))
		return -EINVAL;
	if (gc->closing)
		return -ECANCELED;
	struct job *j = job_new(gc, JOB_BRANCH, repo);
	j->branch = xstrdup(branch);
	j->cb = cb;
	j->data = data;
	struct buf path = {0};
	buf_printf(&path, "/repos/%s/branches/", j->repo);
	buf_append_url_encoded(&path, branch);
	j->path = buf_steal(&path);
	return lookup_start(gc, j);
}

int github_client_pr_head(struct github_client *gc, const char *repo, long pr, github_head_cb cb,
			  void *data)
{
	if (!cb || !validate_repo(repo) || pr < 1 || pr > GITHUB_PR_MAX)
		return -EINVAL;
	if (gc->closing)
		return -ECANCELED;
	struct job *j = job_new(gc, JOB_PR, repo);
	j->pr = pr;
	j->cb = cb;
	j->data = data;
	j->path = xasprintf("/repos/%s/pulls/%ld", j->repo, pr);
	return lookup_start(gc, j);
}

/* description cleaned (valid UTF-8, no control characters) and cut to
 * GITHUB_STATUS_DESCRIPTION_MAX characters, ending with an ellipsis when
 * cut. Owned by the caller. */
static char *clean_description(const char *in)
{
	struct buf out = {0};
	size_t cut = 0, chars = 0;
	const unsigned char *s = (const unsigned char *)in, *end = s + strlen(in);
	while (*s) {
		size_t n = utf8_decode(s, (size_t)(end - s), NULL);
		if (chars == GITHUB_STATUS_DESCRIPTION_MAX - 1)
			cut = out.len;
		if (chars == GITHUB_STATUS_DESCRIPTION_MAX) {
			out.len = cut;
			out.data[cut] = '\0';
			buf_append_str(&out, "\xe2\x80\xa6"); /* U+2026 */
			break;
		}
		if (n == 0) {
			buf_append(&out, "?", 1);
			n = 1;
		} else if (n == 1 && (*s < 0x20 || *s == 0x7f)) {
			buf_append(&out, " ", 1);
		} else {
			buf_append(&out, s, n);
		}
		s += n;
		chars++;
	}
	return buf_steal(&out);
}

static bool valid_target_url(const char *u)
{
	return strlen(u) <= MAX_TARGET_URL &&
	       (str_starts_with(u, "http://") || str_starts_with(u, "https://")) &&
	       header_safe(u) && !strchr(u, ' ');
}

int github_client_post_status(struct github_client *gc, const char *repo, const char *sha,
			      const char *state, const char *description, const char *target_url)
{
	char lower_sha[GITHUB_SHA_MAX + 1];
	if (!validate_repo(repo) || !sha || !github_sha_normalize(sha, lower_sha) || !state)
		return -EINVAL;
	if (strcmp(state, "pending") != 0 && strcmp(state, "success") != 0 &&
	    strcmp(state, "failure") != 0 && strcmp(state, "error") != 0)
		return -EINVAL;
	if (target_url && *target_url && !valid_target_url(target_url))
		return -EINVAL;
	if (gc->closing)
		return -ECANCELED;
	if (!gc->statuses || gc->held)
		return 0;

	struct job *j = job_new(gc, JOB_STATUS, repo);
	memcpy(j->sha, lower_sha, sizeof(j->sha));
	snprintf(j->state, sizeof(j->state), "%s", state);
	j->path = xasprintf("/repos/%s/statuses/%s", j->repo, j->sha);
	json_t *body = json_pack("{s:s, s:s}", "state", state, "context", GITHUB_STATUS_CONTEXT);
	if (description) {
		char *d = clean_description(description);
		json_object_set_new(body, "description", json_string(d));
		free(d);
	}
	if (target_url && *target_url)
		json_object_set_new(body, "target_url", json_string(target_url));
	j->body = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!j->body)
		abort(); /* out of memory */

	/* a newer status replaces the queued one, keeping its place in line */
	struct job *old = queued_for(gc, j);
	if (old) {
		free(old->body);
		old->body = j->body;
		j->body = NULL;
		memcpy(old->state, j->state, sizeof(old->state));
		old->attempts = 0;
		gc->stats.coalesced++;
		job_free(j);
		pump(gc);
		return 0;
	}
	jobs_push(&gc->queue, j);
	if (gc->queue.n > gc->max_queue) {
		struct job *oldest = jobs_first(&gc->queue);
		jobs_remove(&gc->queue, oldest);
		gc->stats.dropped++;
		if (gc->stats.dropped == 1 || gc->stats.dropped % 1000 == 0)
			log_warn("github: commit status queue full (%zu): dropped the oldest "
				 "(%s for %s@%.12s), %llu dropped so far",
				 gc->max_queue, oldest->state, oldest->repo, oldest->sha,
				 (unsigned long long)gc->stats.dropped);
		job_free(oldest);
	}
	pump(gc);
	return 0;
}

void github_client_hold_statuses(struct github_client *gc, bool hold)
{
	if (!gc || gc->closing || gc->held == hold)
		return;
	gc->held = hold;
	if (!hold) {
		pump(gc);
		return;
	}
	if (gc->queue.n)
		log_warn("github: %zu unsent commit statuses dropped: this replica stopped leading "
			 "(the leader posts its own)", gc->queue.n);
	struct job *j;
	while ((j = jobs_first(&gc->queue))) {
		jobs_remove(&gc->queue, j);
		job_free(j);
	}
}

void github_client_get_stats(const struct github_client *gc, struct github_client_stats *out)
{
	*out = gc->stats;
	out->queued = gc->queue.n;
	out->in_flight = gc->status_in_flight;
	out->lookups = gc->inflight.n - gc->status_in_flight + gc->retry.n;
	out->lookups_retrying = gc->retry.n;
	out->etag_entries = gc->etag_n;
	out->etag_bytes = gc->etag_bytes;
}

uint64_t github_client_paused_ms(const struct github_client *gc)
{
	uint64_t now = uv_now(gc->loop);
	return gc->resume_at > now ? gc->resume_at - now : 0;
}

int github_client_list(struct github_client *gc, enum github_list_kind kind, const char *repo,
		       github_list_cb cb, void *data)
{
	if (!cb || !validate_repo(repo) ||
	    (kind != GITHUB_LIST_BRANCHES && kind != GITHUB_LIST_PULLS))
		return -EINVAL;
	if (gc->closing)
		return -ECANCELED;
	if (github_client_paused_ms(gc))
		return -EAGAIN;
	struct job *j = job_new(gc, JOB_LIST, repo);
	j->list_kind = kind;
	j->list_cb = cb;
	j->data = data;
	j->path = xasprintf(kind == GITHUB_LIST_BRANCHES ? "/repos/%s/branches?per_page=%d"
							 : "/repos/%s/pulls?state=open&per_page=%d",
			    j->repo, PER_PAGE);
	j->seen = xmalloc(sizeof(*j->seen));
	j->seen[j->n_seen++] = xstrdup(j->path);
	return lookup_start(gc, j);
}

/* ---- pure helpers ---- */

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Whether the rel value [v, v+len) holds "next" among its space-separated
 * relation types. */
static bool rel_has_next(const char *v, size_t len)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t start = i;
		while (i < len && v[i] != ' ' && v[i] != '\t')
			i++;
		if (i - start == 4 && strncasecmp(v + start, "next", 4) == 0)
			return true;
	}
	return false;
}

char *github_link_next(const char *link)
{
	const char *p = link;
	if (!p)
		return NULL;
	for (;;) {
		p = skip_ws(p);
		while (*p == ',')
			p = skip_ws(p + 1);
		if (!*p)
			return NULL;
		if (*p != '<')
			return NULL;
		const char *uri = p + 1;
		const char *end = strchr(uri, '>');
		if (!end)
			return NULL;
		p = end + 1;
		bool next = false;
		/* parameters, up to the ',' that ends this link */
		for (;;) {
			p = skip_ws(p);
			if (*p == ',' || !*p)
				break;
			if (*p != ';')
				return NULL;
			p = skip_ws(p + 1);
			const char *name = p;
			while (*p && *p != '=' && *p != ';' && *p != ',' && *p != ' ' && *p != '\t')
				p++;
			size_t name_len = (size_t)(p - name);
			p = skip_ws(p);
			const char *val = "";
			size_t val_len = 0;
			if (*p == '=') {
				p = skip_ws(p + 1);
				if (*p == '"') {
					val = ++p;
					while (*p && *p != '"') {
						if (*p == '\\' && p[1])
							p++;
						p++;
					}
					if (*p != '"')
						return NULL;
					val_len = (size_t)(p - val);
					p++;
				} else {
					val = p;
					while (*p && *p != ';' && *p != ',' && *p != ' ' && *p != '\t')
						p++;
					val_len = (size_t)(p - val);
				}
			}
			if (name_len == 3 && strncasecmp(name, "rel", 3) == 0 &&
			    rel_has_next(val, val_len))
				next = true;
		}
		if (next && end > uri)
			return xstrndup(uri, (size_t)(end - uri));
	}
}

/* A copy of a JSON string that passes valid, or NULL. */
static char *valid_string(json_t *v, bool (*valid)(const char *))
{
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
	    !valid(json_string_value(v)))
		return NULL;
	return xstrdup(json_string_value(v));
}

int github_parse_list_page(enum github_list_kind kind, const char *body, size_t len,
			   struct github_list_item **items, size_t *n, unsigned *skipped, char *err,
			   size_t errlen)
{
	*items = NULL;
	*n = 0;
	json_error_t jerr;
	json_t *root = json_loadb(body ? body : "", len, 0, &jerr);
	if (!json_is_array(root)) {
		snprintf(err, errlen, root ? "the answer is not a JSON array"
					   : "the answer is not JSON (%s)", jerr.text);
		json_decref(root);
		return -EPROTO;
	}
	size_t count = json_array_size(root);
	if (count > MAX_PAGE_ENTRIES) {
		snprintf(err, errlen, "%zu entries in one page, expected at most %d", count,
			 MAX_PAGE_ENTRIES);
		json_decref(root);
		return -EPROTO;
	}
	struct github_list_item *out = count ? xcalloc(count, sizeof(*out)) : NULL;
	size_t k = 0, i;
	json_t *e;
	json_array_foreach(root, i, e) {
		struct github_list_item *it = &out[k];
		json_t *sha;
		if (kind == GITHUB_LIST_BRANCHES) {
			it->name = valid_string(json_object_get(e, "name"), validate_branch);
			if (!it->name) {
				(*skipped)++;
				continue;
			}
			it->base = xstrdup("");
			sha = json_object_get(json_object_get(e, "commit"), "sha");
		} else {
			json_t *num = json_object_get(e, "number");
			if (!json_is_integer(num) || !validate_pr(json_integer_value(num))) {
				(*skipped)++;
				continue;
			}
			json_t *state = json_object_get(e, "state");
			if (json_is_string(state) && strcmp(json_string_value(state), "open") != 0) {
				(*skipped)++;
				continue;
			}
			it->pr = (long)json_integer_value(num);
			it->base = valid_string(json_object_get(json_object_get(e, "base"), "ref"),
						validate_branch);
			if (!it->base)
				it->base = xstrdup("");
			sha = json_object_get(json_object_get(e, "head"), "sha");
		}
		if (!json_is_string(sha) || !github_sha_normalize(json_string_value(sha), it->sha))
			it->sha[0] = '\0';
		k++;
	}
	json_decref(root);
	if (!k) {
		free(out);
		out = NULL;
	}
	*items = out;
	*n = k;
	return 0;
}
