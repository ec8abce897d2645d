/* The in-memory build index: every build of the namespace, fed by the
 * informers (Deployments, Jobs), read by the API, the controller and the ws
 * hub. It never does I/O.
 *
 * Every change the API would show emits exactly one event to the listeners,
 * after the index is updated (so a listener sees the new state). Costs with n
 * builds: upsert/remove O(log n), lookups by name O(1), the policy queries
 * O(log n) (next: amortized O(1)), counts O(1), listing O(k + log n) for a
 * repo filter, O(n) without one.
 *
 * Orders:
 * - listing (as the Python runboat's BuildsDb.search): ascending is repo,
 *   then PRs by number, then branch builds (pr null sorts after every PR),
 *   then target branch, then created (oldest first), then name; descending
 *   (the API default) is the exact reverse.
 * - to initialize: created, oldest first (init todo, not being deleted).
 * - started: least recently scaled first (last_scaled, else created).
 * - undeployable: least recently scaled first; stopped, stopping or failed,
 *   never the newest build of its (repo, target_branch, pr).
 * - undeploying: created, oldest first.
 * "Newest of its (repo, target_branch, pr)" is by created (then name) among
 * the builds that are not being deleted.
 *
 * Pointers to builds handed out are borrowed: valid until the next change of
 * that build (upsert or remove), never to be freed by the caller. */
#ifndef RUNBOAT_INDEX_H
#define RUNBOAT_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "build.h"

struct index;

enum index_event {
	INDEX_UPD, /* b was added or changed (b: the new state) */
	INDEX_DEL, /* b was removed (b: its last state, freed after the call) */
	INDEX_JOB  /* a Job of a build changed or went away; b is that build, or
		    * NULL if no Deployment carries its name (yet); the API/ws hub
		    * ignore these, the controller schedules a pass */
};

typedef void (*index_event_cb)(enum index_event ev, const struct build *b, void *data);

/* A new empty index, owned by the caller (index_free). */
struct index *index_new(void);
/* Frees the index, its builds and jobs; no event is emitted. NULL is fine. */
void index_free(struct index *idx);

/* Adds a listener, called in registration order. A listener may call
 * index_listen/index_unlisten and any read function, but must not change
 * the index (upsert/remove/set_job from a listener aborts). */
void index_listen(struct index *idx, index_event_cb cb, void *data);
/* Removes the first listener registered with (cb, data); 0 or -ENOENT. */
int index_unlisten(struct index *idx, index_event_cb cb, void *data);

/* Adds or replaces the build named b->name (b->status is re-derived); takes
 * ownership of b. The index always keeps b, the fresher object, and frees the
 * previous one, so borrowed pointers to that build are invalid afterwards
 * even when nothing visible changed. Returns 1 if an INDEX_UPD was emitted,
 * 0 if nothing visible changed (build_same_view: e.g. only resourceVersion). */
int index_upsert(struct index *idx, struct build *b);
/* Sets what the controller says of a build now (copied; NULL or "" clears
 * it): b->note, kept across upserts until cleared. Returns 1 if it changed
 * (INDEX_UPD emitted), 0 if not or if there is no such build. */
int index_set_note(struct index *idx, const char *name, const char *note);
/* Sets what the build's Odoo pods say (b->restarts, b->crash_looping; see
 * build.h), kept across upserts. Returns 1 if it changed (INDEX_UPD
 * emitted), 0 if not or if there is no such build. */
int index_set_pods(struct index *idx, const char *name, int restarts, bool crash_looping);
/* Removes the build; returns 1 if it was there (INDEX_DEL emitted), else 0. */
int index_remove(struct index *idx, const char *name);

/* Relist support for the informers: after index_resync_begin, every build
 * upserted (changed or not) is marked; index_resync_end removes the unmarked
 * ones (one INDEX_DEL each) and returns how many. */
void index_resync_begin(struct index *idx);
size_t index_resync_end(struct index *idx);

/* The build of that name, or NULL. */
const struct build *index_find(const struct index *idx, const char *name);
/* A build of exactly that commit (repo compared case-insensitively, pr 0 =
 * a branch build), preferring one that is not being deleted; NULL if none. */
const struct build *index_find_commit(const struct index *idx, const char *repo,
				      const char *target_branch, int pr, const char *sha);
/* The build of b's branch or PR created just before b (not being deleted),
 * or NULL: from index_newest, the builds of a branch or PR newest first.
 * b must not be being deleted. */
const struct build *index_older_of_ref(const struct index *idx, const struct build *b);
/* The newest build (not being deleted) of that branch or PR, or NULL. */
const struct build *index_newest(const struct index *idx, const char *repo,
				 const char *target_branch, int pr);

/* Counts. */
size_t index_count(const struct index *idx);
size_t index_count_status(const struct index *idx, enum build_status s);
/* Builds by init-status, not counting those being deleted (an undeploying
 * build neither waits for nor holds an initialization slot). */
size_t index_count_init(const struct index *idx, enum build_init_status s);
/* Builds not being deleted (the API's "deployed"). */
size_t index_deployed(const struct index *idx);

/* The policy queues. Each returns the first build of its order when after is
 * NULL, else the one following after (NULL at the end, or if after is not in
 * that queue). */
const struct build *index_next_to_initialize(const struct index *idx, const struct build *after);
const struct build *index_next_started(const struct index *idx, const struct build *after);
const struct build *index_next_undeployable(const struct index *idx, const struct build *after);
const struct build *index_next_undeploying(const struct index *idx, const struct build *after);

/* Distinct repos of all builds, sorted; *out is a new array (free it) of
 * borrowed strings valid until the next change. Returns the count. */
size_t index_repos(const struct index *idx, const char ***out);

/* A listing filter; zero-initialized = everything. Strings are borrowed;
 * NULL or "" means "any". */
struct index_filter {
	const char *repo;          /* case-insensitive */
	const char *target_branch; /* branch builds and PRs targeting it */
	const char *branch;        /* branch builds of that branch only (pr null) */
	int pr;                    /* 0: any */
	const char *name;
	bool by_status;            /* then only builds with that status */
	enum build_status status;
};

enum index_sort {
	INDEX_SORT_DESC, /* the API's /builds order */
	INDEX_SORT_ASC   /* the order a stream starts with */
};

/* Does b pass the filter? (For event streams.) */
bool index_filter_match(const struct index_filter *f, const struct build *b);
/* The builds passing f in that order; *out is a new array (free it, NULL when
 * the count is 0) of borrowed builds. Returns the count. */
size_t index_list(const struct index *idx, const struct index_filter *f, enum index_sort sort,
		  const struct build ***out);

/* Jobs, from the Jobs informer. Jobs may arrive before their Deployment and
 * outlive it; they are kept by (build, job name). */

/* Records j (copied). Returns 1 and emits INDEX_JOB if something changed
 * (new job, state, deleting, uid), else 0. */
int index_set_job(struct index *idx, const struct build_job *j);
/* Forgets the job j->name of j->build; 1 (INDEX_JOB emitted) or 0. */
int index_remove_job(struct index *idx, const struct build_job *j);
/* The job of that kind for that build: the newest one not being deleted,
 * else the newest one; NULL if none. Borrowed until the next job change. */
const struct build_job *index_job(const struct index *idx, const char *build,
				  enum build_job_kind kind);
/* Relist support, as index_resync_* for builds. */
void index_resync_jobs_begin(struct index *idx);
size_t index_resync_jobs_end(struct index *idx);

#endif
