/* The GitHub REST API client, on the loop through curl_uv: resolves the head
 * of a branch or a pull request, and posts commit statuses.
 *
 * Lookups are asked by the controller and answered through a callback; they
 * are not queued (they go out at once, even while statuses are paused) and
 * are retried a few times on network errors and 5xx only.
 * Commit statuses are fire-and-forget: github_client_post_status queues and
 * returns at once, so a build transition never waits for GitHub. The queue
 * is bounded (the oldest is dropped, with a warning, beyond max_queue),
 * coalesced (a newer status for a (repo, sha) replaces one still queued, and
 * statuses of one (repo, sha) are never in flight together, so they arrive
 * in order), and retried: exponential backoff on network errors and 5xx, a
 * pause of the whole queue when GitHub rate-limits (403/429 with
 * Retry-After, or X-RateLimit-Remaining: 0 with X-RateLimit-Reset). Other
 * 4xx answers are final (logged, dropped).
 *
 * Listings (github_client_list) read every page of a repository's branches
 * or open pull requests for the missed-webhook recovery (github_sync.h):
 * pages are asked conditionally (If-None-Match with the ETag GitHub gave for
 * that URL; a 304 costs nothing against GitHub's rate limit), the ETags and
 * what each page held are kept in memory (bounded, least recently used
 * dropped), Link: rel="next" is followed (only to URLs under api_url), and
 * every entry is validated.
 *
 * Every answer's X-RateLimit-Remaining/-Limit/-Reset is recorded (stats);
 * when Remaining reaches 0 the client pauses statuses and refuses listings
 * until the reset time. */
#ifndef RUNBOAT_GITHUB_CLIENT_H
#define RUNBOAT_GITHUB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct curl_uv;
struct github_client;

/* The "context" of every commit status runboat posts. */
#define GITHUB_STATUS_CONTEXT "runboat/build"
/* The REST API version asked for (X-GitHub-Api-Version). */
#define GITHUB_API_VERSION "2022-11-28"

/* Settings; strings are copied. Zero means the default given. */
struct github_client_opts {
	const char *api_url;      /* required: http(s)://host[/prefix], a trailing '/' is ignored */
	const char *token;        /* NULL or "": anonymous requests */
	bool statuses;            /* false: github_client_post_status does nothing */
	const char *user_agent;   /* NULL: "runboat/<version>" */
	long timeout_ms;          /* per request: 30000 */
	size_t max_queue;         /* queued statuses: 10000 */
	unsigned max_in_flight;   /* concurrent status posts: 4 */
	unsigned max_attempts;    /* per status, rate limits not counted: 12 */
	unsigned lookup_attempts; /* per lookup, on network errors and 5xx: 3 */
	uint64_t retry_base_ms;   /* first backoff delay: 1000 */
	uint64_t retry_max_ms;    /* cap of the backoff: 300000 */
	uint64_t max_pause_ms;    /* cap of a rate-limit pause: 3600000 */
	size_t etag_entries;      /* pages whose ETag is kept: 4096 */
	size_t etag_bytes;        /* memory for them: 16 MiB */
	unsigned max_pages;       /* per listing: 100 */
};

/* The head of a branch or a pull request. Borrowed: valid during the
 * callback only. */
struct github_head {
	const char *repo;          /* lowercase "owner/repo", as asked */
	const char *sha;           /* lowercase hex, validated */
	const char *target_branch; /* the branch asked, or the PR's base.ref (validated) */
	long pr;                   /* the PR asked, 0 for a branch */
	bool open;                 /* the PR's state is "open" (true for a branch) */
};

/* Called exactly once per accepted lookup, never from inside the call that
 * started it. error is 0 (head set) or negative, with message saying what
 * failed ("GET /repos/o/r/branches/x: 404 Branch not found"), head NULL:
 *   -ENOENT   404: no such repository, branch or pull request
 *   -EACCES   401, or 403 that is not a rate limit (token, permissions)
 *   -EAGAIN   rate limited by GitHub (the message says for how long)
 *   -EPROTO   an answer that is not what GitHub sends (bad JSON, invalid sha
 *             or branch, unexpected status)
 *   -EIO      5xx after lookup_attempts attempts
 *   -ECANCELED the client is closing
 *   or curl_uv's network errors (-ECONNREFUSED, -ETIMEDOUT, ...) after
 *   lookup_attempts attempts. */
typedef void (*github_head_cb)(int error, const char *message, const struct github_head *head,
			       void *data);

/* Counters, for tests and metrics. */
struct github_client_stats {
	size_t queued;         /* statuses waiting to be sent */
	size_t in_flight;      /* status posts in flight */
	size_t lookups;        /* lookups started and not yet called back */
	size_t lookups_retrying; /* of which waiting for their next attempt */
	uint64_t sent;         /* statuses GitHub accepted */
	uint64_t coalesced;    /* statuses replaced by a newer one of the same commit */
	uint64_t dropped;      /* statuses dropped because the queue was full */
	uint64_t failed;       /* statuses given up (final 4xx, too many attempts) */
	uint64_t retried;      /* failed status attempts scheduled again */
	uint64_t rate_limited; /* rate-limited answers (statuses and lookups) */
	uint64_t list_requests;     /* listing pages asked (retries included) */
	uint64_t list_not_modified; /* of which answered 304 */
	size_t etag_entries;        /* pages in the ETag cache */
	size_t etag_bytes;          /* its memory */
	/* GitHub's last X-RateLimit-* headers; -1 until one was seen */
	long rate_limit;
	long rate_remaining;
	int64_t rate_reset; /* epoch seconds */
};

/* Creates the client on loop, sending through cu (borrowed; it must outlive
 * the client: close the client first). Returns NULL, with a log line, when
 * api_url is not an http(s) URL or the token or user agent holds characters
 * that cannot go in a header. */
struct github_client *github_client_new(uv_loop_t *loop, struct curl_uv *cu,
					const struct github_client_opts *o);

/* Cancels everything: queued statuses are dropped (logged), pending lookups
 * complete with -ECANCELED (some callbacks may run after this returns). The
 * client frees itself once its last request has completed and its timer is
 * closed. NULL is allowed. Nothing may be called on gc afterwards. */
void github_client_close(struct github_client *gc);

/* Resolves the head commit of a branch (GET /repos/{repo}/branches/{branch},
 * the branch percent-encoded, '/' included). Returns 0 when cb will be
 * called, -EINVAL for an invalid repo or branch (validate_repo/branch),
 * -ECANCELED when closing; cb is not called then. */
int github_client_branch_head(struct github_client *gc, const char *repo, const char *branch,
			      github_head_cb cb, void *data);

/* Resolves the head commit and base branch of a pull request
 * (GET /repos/{repo}/pulls/{pr}). Same returns; pr must be 1..2^31-1. */
int github_client_pr_head(struct github_client *gc, const char *repo, long pr,
			  github_head_cb cb, void *data);

/* Queues a commit status for sha of repo, with context
 * GITHUB_STATUS_CONTEXT. state is "pending", "success", "failure" or
 * "error"; description (NULL: none) is cleaned up (invalid UTF-8 and control
 * characters replaced) and cut to GitHub's 140 characters; target_url (NULL
 * or "": none) must be an http(s) URL of printable ASCII, at most 2048
 * bytes. Returns 0 when queued, or when statuses are turned off; -EINVAL for
 * an invalid argument, -ECANCELED when closing. Never blocks, never calls
 * back. */
int github_client_post_status(struct github_client *gc, const char *repo, const char *sha,
			      const char *state, const char *description, const char *target_url);

/* Leader election: with hold, queued statuses are dropped (logged), new
 * ones are ignored (return 0) and failed ones are not retried, so that a
 * replica that stopped leading never overwrites what the leader posts;
 * without, statuses are taken again. NULL is allowed. */
void github_client_hold_statuses(struct github_client *gc, bool hold);

/* ---- listings ---- */

/* One entry of a listing. Branches: name, sha (commit.sha), pr 0, base "".
 * Pull requests: name NULL, pr (number), base (base.ref), sha (head.sha).
 * A sha or base GitHub sent in an invalid form is "": the entry still says
 * the branch or PR exists, but its head is unknown. Entries without a valid
 * branch name or PR number are dropped (counted in skipped). */
struct github_list_item {
	char *name;
	long pr;
	char *base;
	char sha[65]; /* lowercase hex (40 or 64), or "" */
};

enum github_list_kind {
	GITHUB_LIST_BRANCHES, /* GET /repos/{repo}/branches?per_page=100 */
	GITHUB_LIST_PULLS     /* GET /repos/{repo}/pulls?state=open&per_page=100 */
};

/* A listing, borrowed: valid during the callback only. */
struct github_listing {
	enum github_list_kind kind;
	const char *repo; /* lowercase */
	const struct github_list_item *items;
	size_t n;
	bool complete;         /* every page was read: always when error is 0 */
	unsigned pages;        /* pages read */
	unsigned requests;     /* HTTP requests sent (retries included) */
	unsigned not_modified; /* of which answered 304 */
	unsigned skipped;      /* entries dropped */
};

/* Called exactly once per accepted listing, never from inside the call.
 * error is 0 (complete) or negative with a message; l is never NULL and
 * holds the pages read so far (complete false) on error:
 *   -ENOENT, -EACCES, -EIO, -EPROTO, -ECANCELED, network errors: as lookups
 *   -EAGAIN    rate limited (the client is paused: github_client_paused_ms)
 *   -E2BIG     more than max_pages pages
 *   -EPROTO    also: a Link that leaves api_url or loops, a page that is
 *              not a JSON array or has more than 1000 entries. */
typedef void (*github_list_cb)(int error, const char *message, const struct github_listing *l,
			       void *data);

/* Lists the branches or the open pull requests of repo, every page, pages
 * sent one after the other. Returns 0 when cb will be called, -EINVAL for
 * an invalid repo, -ECANCELED when closing, -EAGAIN while the client is
 * paused by a rate limit (cb is not called then). */
int github_client_list(struct github_client *gc, enum github_list_kind kind, const char *repo,
		       github_list_cb cb, void *data);

/* Milliseconds until the client's rate-limit pause ends (0: not paused). */
uint64_t github_client_paused_ms(const struct github_client *gc);

/* Pure helpers, exposed for tests. */

/* The target of the rel="next" link of a Link header value (RFC 8288: a
 * comma-separated list of <URI>; param=value..., rel possibly quoted and
 * holding several space-separated types, compared case-insensitively), or
 * NULL when there is none or the header is malformed. Owned by the caller. */
char *github_link_next(const char *link);

/* Parses one page of a listing (a JSON array) into *items (owned, free with
 * github_list_items_free; NULL when *n is 0), adding dropped entries to
 * *skipped. Returns 0, or -EPROTO with err set when the body is not a JSON
 * array or has more than 1000 entries. */
int github_parse_list_page(enum github_list_kind kind, const char *body, size_t len,
			   struct github_list_item **items, size_t *n, unsigned *skipped, char *err,
			   size_t errlen);
void github_list_items_free(struct github_list_item *items, size_t n);

/* Current counters. */
void github_client_get_stats(const struct github_client *gc, struct github_client_stats *out);

#endif
