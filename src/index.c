#include "index.h"

#include <bsd/sys/tree.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hmap.h"
#include "log.h"
#include "util.h"

/* tree.h's RB_GENERATE_STATIC relies on a BSD __unused that libbsd leaves
 * undefined; spell the attribute out. */
#define RB_GENERATE_LOCAL(name, type, field, cmp) \
	RB_GENERATE_INTERNAL(name, type, field, cmp, __attribute__((unused)) static)

/* ---- entries and their orders ---- */

enum queue { Q_NONE, Q_TODO, Q_STARTED, Q_UNDEPLOYABLE, Q_UNDEPLOYING };

struct entry {
	struct hnode hn; /* by name */
	struct build *b; /* owned */
	RB_ENTRY(entry) by_list;   /* every build */
	RB_ENTRY(entry) by_commit; /* every build */
	RB_ENTRY(entry) by_group;  /* builds not being deleted */
	RB_ENTRY(entry) by_queue;  /* at most one queue (they are exclusive by status) */
	enum queue queue;
	bool in_group;
	unsigned gen;
	/* Probes (stack entries used as search keys) compare their first depth
	 * key fields, then sort before (probe = -1) or after (+1) every real
	 * entry sharing them. */
	signed char probe;
	unsigned char depth;
};

static int cmp_str(const char *a, const char *b)
{
	int r = strcmp(a, b);
	return (r > 0) - (r < 0);
}

static int cmp_i64(int64_t a, int64_t b)
{
	return (a > b) - (a < b);
}

/* Branch builds (pr 0) sort after every PR, as COALESCE(pr, 999999). */
static int64_t pr_key(const struct build *b)
{
	return b->commit.pr > 0 ? b->commit.pr : (int64_t)INT32_MAX + 1;
}

static int probe_result(const struct entry *a, const struct entry *b)
{
	return a->probe ? a->probe : b->probe ? -b->probe : 0;
}

static int probe_depth(const struct entry *a, const struct entry *b, int full)
{
	return a->probe ? a->depth : b->probe ? b->depth : full;
}

/* When a build was deployed, in ms: created_ms, or created for builds made
 * without it (tests, build_new). */
static int64_t deploy_order(const struct build *b)
{
	return b->created_ms ? b->created_ms : b->created * 1000;
}

/* The first d listing key fields: repo, pr key, target branch, created, name. */
static int list_fields_cmp(const struct build *a, const struct build *b, int d)
{
	int r;
	if (d >= 1 && (r = cmp_str(a->commit.repo, b->commit.repo)))
		return r;
	if (d >= 2 && (r = cmp_i64(pr_key(a), pr_key(b))))
		return r;
	if (d >= 3 && (r = cmp_str(a->commit.target_branch, b->commit.target_branch)))
		return r;
	if (d >= 4 && (r = cmp_i64(deploy_order(a), deploy_order(b))))
		return r;
	if (d >= 5 && (r = cmp_str(a->name, b->name)))
		return r;
	return 0;
}

static int cmp_list(struct entry *x, struct entry *y)
{
	int r = list_fields_cmp(x->b, y->b, probe_depth(x, y, 5));
	return r ? r : probe_result(x, y);
}

/* The first d commit key fields: repo, target branch, pr, sha, deleting, name. */
static int commit_fields_cmp(const struct build *a, const struct build *b, int d)
{
	int r;
	if (d >= 1 && (r = cmp_str(a->commit.repo, b->commit.repo)))
		return r;
	if (d >= 2 && (r = cmp_str(a->commit.target_branch, b->commit.target_branch)))
		return r;
	if (d >= 3 && (r = cmp_i64(a->commit.pr, b->commit.pr)))
		return r;
	if (d >= 4 && (r = cmp_str(a->commit.git_commit, b->commit.git_commit)))
		return r;
	if (d >= 5 && (r = cmp_i64(a->deleting, b->deleting)))
		return r;
	if (d >= 6 && (r = cmp_str(a->name, b->name)))
		return r;
	return 0;
}

static int cmp_commit(struct entry *x, struct entry *y)
{
	int r = commit_fields_cmp(x->b, y->b, probe_depth(x, y, 6));
	return r ? r : probe_result(x, y);
}

/* created, name */
static int cmp_created(struct entry *x, struct entry *y)
{
	int r = cmp_i64(deploy_order(x->b), deploy_order(y->b));
	return r ? r : cmp_str(x->b->name, y->b->name);
}

/* last scaled, created, name */
static int cmp_scaled(struct entry *x, struct entry *y)
{
	int r = cmp_i64(build_last_scaled(x->b), build_last_scaled(y->b));
	return r ? r : cmp_created(x, y);
}

RB_HEAD(list_tree, entry);
RB_GENERATE_LOCAL(list_tree, entry, by_list, cmp_list)
RB_HEAD(group_tree, entry);
RB_GENERATE_LOCAL(group_tree, entry, by_group, cmp_list)
RB_HEAD(commit_tree, entry);
RB_GENERATE_LOCAL(commit_tree, entry, by_commit, cmp_commit)
RB_HEAD(created_tree, entry);
RB_GENERATE_LOCAL(created_tree, entry, by_queue, cmp_created)
RB_HEAD(scaled_tree, entry);
RB_GENERATE_LOCAL(scaled_tree, entry, by_queue, cmp_scaled)

struct repo_node {
	RB_ENTRY(repo_node) link;
	size_t refs;
	char name[]; /* lowercase owner/repo */
};

static int cmp_repo(struct repo_node *a, struct repo_node *b)
{
	return cmp_str(a->name, b->name);
}

RB_HEAD(repo_tree, repo_node);
RB_GENERATE_LOCAL(repo_tree, repo_node, link, cmp_repo)

struct job_rec {
	struct build_job job;
	unsigned gen;
};

struct job_slot {
	struct hnode hn; /* by build name */
	struct job_rec *jobs;
	size_t count;
	char build[BUILD_NAME_MAX + 1];
};

struct listener {
	index_event_cb cb;
	void *data;
	bool removed;
};

struct index {
	struct hmap names; /* struct entry by build name */
	struct list_tree list;
	struct group_tree groups;
	struct commit_tree commits;
	struct created_tree todo;
	struct scaled_tree started;
	struct scaled_tree undeployable;
	struct created_tree undeploying;
	struct repo_tree repos;
	size_t by_status[BUILD_STATUS_COUNT];
	size_t by_init[BUILD_INIT_STATUS_COUNT]; /* not being deleted */
	size_t deleting;
	unsigned gen;

	struct hmap jobs; /* struct job_slot by build name */
	unsigned job_gen;

	struct listener *listeners;
	size_t nlisteners;
	int dispatching;
};

static struct entry *entry_of(const struct index *idx, const char *name)
{
	struct hnode *n = hmap_find(&idx->names, name);
	return n ? CONTAINER_OF(n, struct entry, hn) : NULL;
}

/* ---- lifecycle and listeners ---- */

struct index *index_new(void)
{
	struct index *idx = xcalloc(1, sizeof(*idx));
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1)
		seed = 0x9e3779b97f4a7c15ULL;
	hmap_init(&idx->names, seed);
	hmap_init(&idx->jobs, seed);
	RB_INIT(&idx->list);
	RB_INIT(&idx->groups);
	RB_INIT(&idx->commits);
	RB_INIT(&idx->todo);
	RB_INIT(&idx->started);
	RB_INIT(&idx->undeployable);
	RB_INIT(&idx->undeploying);
	RB_INIT(&idx->repos);
	return idx;
}

void index_free(struct index *idx)
{
	if (!idx)
		return;
	struct hnode *n, *next;
	hmap_each_safe(n, next, &idx->names) {
		struct entry *e = CONTAINER_OF(n, struct entry, hn);
		build_free(e->b);
		free(e);
	}
	hmap_each_safe(n, next, &idx->jobs) {
		struct job_slot *s = CONTAINER_OF(n, struct job_slot, hn);
		free(s->jobs);
		free(s);
	}
	struct repo_node *r, *rn;
	RB_FOREACH_SAFE(r, repo_tree, &idx->repos, rn) {
		RB_REMOVE(repo_tree, &idx->repos, r);
		free(r);
	}
	hmap_free_buckets(&idx->names);
	hmap_free_buckets(&idx->jobs);
	free(idx->listeners);
	free(idx);
}

void index_listen(struct index *idx, index_event_cb cb, void *data)
{
	idx->listeners = xrealloc(idx->listeners, (idx->nlisteners + 1) * sizeof(*idx->listeners));
	idx->listeners[idx->nlisteners++] = (struct listener){.cb = cb, .data = data};
}

int index_unlisten(struct index *idx, index_event_cb cb, void *data)
{
	for (size_t i = 0; i < idx->nlisteners; i++) {
		struct listener *l = &idx->listeners[i];
		if (l->removed || l->cb != cb || l->data != data)
			continue;
		if (idx->dispatching) {
			l->removed = true; /* compacted after the dispatch */
		} else {
			memmove(l, l + 1, (idx->nlisteners - i - 1) * sizeof(*l));
			idx->nlisteners--;
		}
		return 0;
	}
	return -ENOENT;
}

static void emit(struct index *idx, enum index_event ev, const struct build *b)
{
	idx->dispatching++;
	/* Listeners added during the dispatch are not called for this event. */
	size_t n = idx->nlisteners;
	for (size_t i = 0; i < n; i++) {
		struct listener l = idx->listeners[i];
		if (!l.removed)
			l.cb(ev, b, l.data);
	}
	idx->dispatching--;
	if (!idx->dispatching) {
		size_t j = 0;
		for (size_t i = 0; i < idx->nlisteners; i++)
			if (!idx->listeners[i].removed)
				idx->listeners[j++] = idx->listeners[i];
		idx->nlisteners = j;
	}
}

static void check_not_dispatching(const struct index *idx, const char *what)
{
	if (idx->dispatching) {
		log_error("index: %s called from an index listener", what);
		log_flush();
		abort();
	}
}

/* ---- keeping the orders ---- */

static bool same_group(const struct build *a, const struct build *b)
{
	return a->commit.pr == b->commit.pr && strcmp(a->commit.repo, b->commit.repo) == 0 &&
	       strcmp(a->commit.target_branch, b->commit.target_branch) == 0;
}

/* e (in the group tree) is the newest of its branch/PR. */
static bool is_newest(struct entry *e)
{
	struct entry *next = RB_NEXT(group_tree, NULL, e);
	return !next || !same_group(next->b, e->b);
}

static enum queue wanted_queue(struct entry *e)
{
	const struct build *b = e->b;
	if (b->deleting)
		return Q_UNDEPLOYING;
	if (b->status == BUILD_STARTED)
		return Q_STARTED;
	if (b->init_status == BUILD_INIT_TODO)
		return Q_TODO;
	if ((b->status == BUILD_STOPPED || b->status == BUILD_STOPPING ||
	     b->status == BUILD_FAILED) && !is_newest(e))
		return Q_UNDEPLOYABLE;
	return Q_NONE;
}

static void queue_leave(struct index *idx, struct entry *e)
{
	switch (e->queue) {
	case Q_TODO: RB_REMOVE(created_tree, &idx->todo, e); break;
	case Q_STARTED: RB_REMOVE(scaled_tree, &idx->started, e); break;
	case Q_UNDEPLOYABLE: RB_REMOVE(scaled_tree, &idx->undeployable, e); break;
	case Q_UNDEPLOYING: RB_REMOVE(created_tree, &idx->undeploying, e); break;
	case Q_NONE: break;
	}
	e->queue = Q_NONE;
}

static void queue_refresh(struct index *idx, struct entry *e)
{
	enum queue q = wanted_queue(e);
	if (q == e->queue)
		return;
	queue_leave(idx, e);
	switch (q) {
	case Q_TODO: RB_INSERT(created_tree, &idx->todo, e); break;
	case Q_STARTED: RB_INSERT(scaled_tree, &idx->started, e); break;
	case Q_UNDEPLOYABLE: RB_INSERT(scaled_tree, &idx->undeployable, e); break;
	case Q_UNDEPLOYING: RB_INSERT(created_tree, &idx->undeploying, e); break;
	case Q_NONE: break;
	}
	e->queue = q;
}

/* The node of that repo, or NULL. */
static struct repo_node *repo_find(const struct index *idx, const char *name)
{
	_Alignas(struct repo_node) char raw[sizeof(struct repo_node) + BUILD_REPO_MAX + 1];
	struct repo_node *key = (struct repo_node *)raw;
	size_t n = strlen(name);
	if (n > BUILD_REPO_MAX)
		return NULL;
	memcpy(key->name, name, n + 1);
	return RB_FIND(repo_tree, (struct repo_tree *)&idx->repos, key);
}

static void repo_ref(struct index *idx, const char *name)
{
	struct repo_node *r = repo_find(idx, name);
	if (!r) {
		size_t n = strlen(name);
		r = xmalloc(sizeof(*r) + n + 1);
		memcpy(r->name, name, n + 1);
		r->refs = 0;
		RB_INSERT(repo_tree, &idx->repos, r);
	}
	r->refs++;
}

static void repo_unref(struct index *idx, const char *name)
{
	struct repo_node *r = repo_find(idx, name);
	if (r && --r->refs == 0) {
		RB_REMOVE(repo_tree, &idx->repos, r);
		free(r);
	}
}

static void count(struct index *idx, const struct build *b, int delta)
{
	idx->by_status[b->status] += (size_t)delta;
	if (b->deleting)
		idx->deleting += (size_t)delta;
	else
		idx->by_init[b->init_status] += (size_t)delta;
}

/* a and b sort at the same place in the listing, commit and branch orders
 * (and belong to the same branch group the same way). */
static bool same_place(const struct build *a, const struct build *b)
{
	return a->created == b->created && a->created_ms == b->created_ms &&
	       a->deleting == b->deleting &&
	       a->commit.pr == b->commit.pr && strcmp(a->commit.repo, b->commit.repo) == 0 &&
	       strcmp(a->commit.target_branch, b->commit.target_branch) == 0 &&
	       strcmp(a->commit.git_commit, b->commit.git_commit) == 0;
}

static void attach(struct index *idx, struct entry *e)
{
	const struct build *b = e->b;
	RB_INSERT(list_tree, &idx->list, e);
	RB_INSERT(commit_tree, &idx->commits, e);
	count(idx, b, +1);
	repo_ref(idx, b->commit.repo);
	e->queue = Q_NONE;
	e->in_group = !b->deleting;
	if (e->in_group) {
		RB_INSERT(group_tree, &idx->groups, e);
		struct entry *prev = RB_PREV(group_tree, &idx->groups, e);
		/* e became the newest: the previous newest may now go. */
		if (prev && same_group(prev->b, b) && is_newest(e))
			queue_refresh(idx, prev);
	}
	queue_refresh(idx, e);
}

static void detach(struct index *idx, struct entry *e)
{
	const struct build *b = e->b;
	queue_leave(idx, e);
	if (e->in_group) {
		struct entry *prev = RB_PREV(group_tree, &idx->groups, e);
		bool was_newest = is_newest(e);
		RB_REMOVE(group_tree, &idx->groups, e);
		e->in_group = false;
		/* The previous build of the branch becomes its newest. */
		if (prev && was_newest && same_group(prev->b, b))
			queue_refresh(idx, prev);
	}
	RB_REMOVE(list_tree, &idx->list, e);
	RB_REMOVE(commit_tree, &idx->commits, e);
	count(idx, b, -1);
	repo_unref(idx, b->commit.repo);
}

/* ---- changes ---- */

int index_upsert(struct index *idx, struct build *b)
{
	check_not_dispatching(idx, "index_upsert");
	/* Derived here too, so that no caller can store an inconsistent status. */
	b->status = build_derive_status(b);
	build_json_forget(b);
	struct entry *e = entry_of(idx, b->name);
	if (e && !b->note && e->b->note) {
		/* the controller's note is not in Kubernetes: it stays */
		b->note = e->b->note;
		e->b->note = NULL;
	}
	if (e) {
		/* nor are its pods' restarts */
		b->restarts = e->b->restarts;
		b->crash_looping = e->b->crash_looping;
	}
	if (e && build_same_view(e->b, b)) {
		/* Same keys everywhere: swap in the fresher object (new
		 * resourceVersion) without touching the orders. The JSON is the
		 * same too: its cached encoding moves over (a relist re-encodes
		 * nothing). */
		b->json_text = e->b->json_text;
		b->json_len = e->b->json_len;
		b->json_links = e->b->json_links;
		e->b->json_text = NULL;
		e->hn.key = b->name;
		build_free(e->b);
		e->b = b;
		e->gen = idx->gen;
		return 0;
	}
	if (e && same_place(e->b, b)) {
		/* The usual change (status, replicas, last-scaled): the listing,
		 * commit and branch orders keep their keys, only the queue and
		 * the counts move. */
		queue_leave(idx, e);
		count(idx, e->b, -1);
		build_free(e->b);
		e->b = b;
		e->hn.key = b->name;
		e->gen = idx->gen;
		count(idx, b, +1);
		queue_refresh(idx, e);
		emit(idx, INDEX_UPD, e->b);
		return 1;
	}
	if (e) {
		detach(idx, e);
		build_free(e->b);
		e->b = b;
		e->hn.key = b->name; /* same string value, same hash and bucket */
	} else {
		e = xcalloc(1, sizeof(*e));
		e->b = b;
		e->hn.key = b->name;
		hmap_insert(&idx->names, &e->hn);
	}
	e->gen = idx->gen;
	attach(idx, e);
	emit(idx, INDEX_UPD, e->b);
	return 1;
}

int index_set_note(struct index *idx, const char *name, const char *note)
{
	check_not_dispatching(idx, "index_set_note");
	struct entry *e = entry_of(idx, name);
	if (!e)
		return 0;
	const char *cur = e->b->note ? e->b->note : "";
	if (strcmp(cur, note ? note : "") == 0)
		return 0;
	build_set_note(e->b, note);
	emit(idx, INDEX_UPD, e->b);
	return 1;
}

int index_set_pods(struct index *idx, const char *name, int restarts, bool crash_looping)
{
	check_not_dispatching(idx, "index_set_pods");
	struct entry *e = entry_of(idx, name);
	if (!e || (e->b->restarts == restarts && e->b->crash_looping == crash_looping))
		return 0;
	e->b->restarts = restarts;
	e->b->crash_looping = crash_looping;
	build_json_forget(e->b);
	emit(idx, INDEX_UPD, e->b);
	return 1;
}

int index_remove(struct index *idx, const char *name)
{
	check_not_dispatching(idx, "index_remove");
	struct entry *e = entry_of(idx, name);
	if (!e)
		return 0;
	detach(idx, e);
	hmap_remove(&idx->names, &e->hn);
	emit(idx, INDEX_DEL, e->b);
	build_free(e->b);
	free(e);
	return 1;
}

void index_resync_begin(struct index *idx)
{
	idx->gen++;
}

size_t index_resync_end(struct index *idx)
{
	check_not_dispatching(idx, "index_resync_end");
	size_t n = 0, cap = 0;
	char **stale = NULL;
	struct hnode *h;
	hmap_each(h, &idx->names) {
		struct entry *e = CONTAINER_OF(h, struct entry, hn);
		if (e->gen == idx->gen)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			stale = xrealloc(stale, cap * sizeof(*stale));
		}
		stale[n++] = xstrdup(e->b->name);
	}
	for (size_t i = 0; i < n; i++) {
		index_remove(idx, stale[i]);
		free(stale[i]);
	}
	free(stale);
	return n;
}

/* ---- reads ---- */

const struct build *index_find(const struct index *idx, const char *name)
{
	if (!name)
		return NULL;
	struct entry *e = entry_of(idx, name);
	return e ? e->b : NULL;
}

/* Lowercases a repo into out (BUILD_REPO_MAX + 1); false if too long. */
static bool lower_repo(const char *repo, char *out)
{
	size_t i = 0;
	for (; repo[i]; i++) {
		if (i >= BUILD_REPO_MAX)
			return false;
		out[i] = (repo[i] >= 'A' && repo[i] <= 'Z') ? (char)(repo[i] - 'A' + 'a') : repo[i];
	}
	out[i] = '\0';
	return true;
}

/* A stack search key: fields not given stay "". */
struct probe {
	struct entry e;
	struct build b;
	char repo[BUILD_REPO_MAX + 1];
};

static bool probe_init(struct probe *p, const char *repo, const char *branch, int pr,
		       const char *sha, int depth, int dir)
{
	memset(p, 0, sizeof(*p));
	if (!lower_repo(repo ? repo : "", p->repo))
		return false;
	p->b.name = "";
	p->b.commit.repo = p->repo;
	p->b.commit.target_branch = branch ? branch : "";
	p->b.commit.pr = pr;
	p->b.commit.git_commit = sha ? sha : "";
	p->e.b = &p->b;
	p->e.probe = (signed char)dir;
	p->e.depth = (unsigned char)depth;
	return true;
}

const struct build *index_find_commit(const struct index *idx, const char *repo,
				      const char *target_branch, int pr, const char *sha)
{
	struct probe p;
	if (!repo || !target_branch || !sha || !probe_init(&p, repo, target_branch, pr, sha, 4, -1))
		return NULL;
	struct entry *e = RB_NFIND(commit_tree, (struct commit_tree *)&idx->commits, &p.e);
	/* The first entry after the probe matches iff its 4 first fields do. */
	return e && commit_fields_cmp(&p.b, e->b, 4) == 0 ? e->b : NULL;
}

const struct build *index_newest(const struct index *idx, const char *repo,
				 const char *target_branch, int pr)
{
	struct probe p;
	if (!repo || !target_branch || !probe_init(&p, repo, target_branch, pr, NULL, 3, +1))
		return NULL;
	struct group_tree *t = (struct group_tree *)&idx->groups;
	struct entry *after = RB_NFIND(group_tree, t, &p.e);
	struct entry *e = after ? RB_PREV(group_tree, t, after) : RB_MAX(group_tree, t);
	if (!e || !same_group(e->b, &p.b))
		return NULL;
	return e->b;
}

const struct build *index_older_of_ref(const struct index *idx, const struct build *b)
{
	struct entry *e = b ? entry_of(idx, b->name) : NULL;
	if (!e || !e->in_group)
		return NULL;
	struct entry *prev = RB_PREV(group_tree, (struct group_tree *)&idx->groups, e);
	return prev && same_group(prev->b, b) ? prev->b : NULL;
}

size_t index_count(const struct index *idx)
{
	return idx->names.count;
}

size_t index_count_status(const struct index *idx, enum build_status s)
{
	return (unsigned)s < BUILD_STATUS_COUNT ? idx->by_status[s] : 0;
}

size_t index_count_init(const struct index *idx, enum build_init_status s)
{
	return (unsigned)s < BUILD_INIT_STATUS_COUNT ? idx->by_init[s] : 0;
}

size_t index_deployed(const struct index *idx)
{
	return idx->names.count - idx->deleting;
}

/* The entry of after if it is in queue q. */
static struct entry *queued(const struct index *idx, const struct build *after, enum queue q)
{
	struct entry *e = entry_of(idx, after->name);
	return e && e->b == after && e->queue == q ? e : NULL;
}

static const struct build *next_created(const struct index *idx, const struct created_tree *tree,
					const struct build *after, enum queue q)
{
	struct created_tree *t = (struct created_tree *)tree;
	struct entry *e = after ? queued(idx, after, q) : NULL;
	if (after && !e)
		return NULL;
	e = e ? RB_NEXT(created_tree, t, e) : RB_MIN(created_tree, t);
	return e ? e->b : NULL;
}

static const struct build *next_scaled(const struct index *idx, const struct scaled_tree *tree,
				       const struct build *after, enum queue q)
{
	struct scaled_tree *t = (struct scaled_tree *)tree;
	struct entry *e = after ? queued(idx, after, q) : NULL;
	if (after && !e)
		return NULL;
	e = e ? RB_NEXT(scaled_tree, t, e) : RB_MIN(scaled_tree, t);
	return e ? e->b : NULL;
}

const struct build *index_next_to_initialize(const struct index *idx, const struct build *after)
{
	return next_created(idx, &idx->todo, after, Q_TODO);
}

const struct build *index_next_started(const struct index *idx, const struct build *after)
{
	return next_scaled(idx, &idx->started, after, Q_STARTED);
}

const struct build *index_next_undeployable(const struct index *idx, const struct build *after)
{
	return next_scaled(idx, &idx->undeployable, after, Q_UNDEPLOYABLE);
}

const struct build *index_next_undeploying(const struct index *idx, const struct build *after)
{
	return next_created(idx, &idx->undeploying, after, Q_UNDEPLOYING);
}

size_t index_repos(const struct index *idx, const char ***out)
{
	size_t n = 0;
	struct repo_node *r;
	struct repo_tree *t = (struct repo_tree *)&idx->repos;
	RB_FOREACH(r, repo_tree, t)
		n++;
	*out = n ? xmalloc(n * sizeof(**out)) : NULL;
	size_t i = 0;
	RB_FOREACH(r, repo_tree, t)
		(*out)[i++] = r->name;
	return n;
}

static bool given(const char *s)
{
	return s && *s;
}

bool index_filter_match(const struct index_filter *f, const struct build *b)
{
	if (!f)
		return true;
	if (given(f->repo) && strcasecmp(f->repo, b->commit.repo) != 0)
		return false;
	if (given(f->target_branch) && strcmp(f->target_branch, b->commit.target_branch) != 0)
		return false;
	if (given(f->branch) &&
	    (b->commit.pr != 0 || strcmp(f->branch, b->commit.target_branch) != 0))
		return false;
	if (f->pr && b->commit.pr != f->pr)
		return false;
	if (given(f->name) && strcmp(f->name, b->name) != 0)
		return false;
	if (f->by_status && b->status != f->status)
		return false;
	return true;
}

static void push(const struct build ***out, size_t *n, size_t *cap, const struct build *b)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 16;
		*out = xrealloc(*out, *cap * sizeof(**out));
	}
	(*out)[(*n)++] = b;
}

size_t index_list(const struct index *idx, const struct index_filter *f, enum index_sort sort,
		  const struct build ***out)
{
	static const struct index_filter all;
	size_t n = 0, cap = 0;
	*out = NULL;
	if (!f)
		f = &all;
	struct list_tree *t = (struct list_tree *)&idx->list;
	if (given(f->name)) {
		const struct build *b = index_find(idx, f->name);
		if (b && index_filter_match(f, b))
			push(out, &n, &cap, b);
		return n;
	}
	struct entry *e;
	struct probe p;
	if (given(f->repo)) {
		/* Jump to the first entry of the repo (and PR or branch), walk
		 * while the probe's prefix still matches. */
		const char *branch = NULL;
		int pr = 1, depth = 1;
		if (f->pr) {
			pr = f->pr, depth = 2;
			if (given(f->target_branch))
				branch = f->target_branch, depth = 3;
		} else if (given(f->branch)) {
			pr = 0, branch = f->branch, depth = 3;
		}
		if (!probe_init(&p, f->repo, branch, pr, NULL, depth, -1))
			return 0;
		for (e = RB_NFIND(list_tree, t, &p.e);
		     e && list_fields_cmp(&p.b, e->b, depth) == 0; e = RB_NEXT(list_tree, t, e))
			if (index_filter_match(f, e->b))
				push(out, &n, &cap, e->b);
	} else {
		RB_FOREACH(e, list_tree, t)
			if (index_filter_match(f, e->b))
				push(out, &n, &cap, e->b);
	}
	if (sort == INDEX_SORT_DESC)
		for (size_t i = 0; i < n / 2; i++) {
			const struct build *tmp = (*out)[i];
			(*out)[i] = (*out)[n - 1 - i];
			(*out)[n - 1 - i] = tmp;
		}
	return n;
}

/* ---- jobs ---- */

static struct job_slot *slot_of(const struct index *idx, const char *build)
{
	struct hnode *n = hmap_find(&idx->jobs, build);
	return n ? CONTAINER_OF(n, struct job_slot, hn) : NULL;
}

static void job_event(struct index *idx, const char *build)
{
	emit(idx, INDEX_JOB, index_find(idx, build));
}

int index_set_job(struct index *idx, const struct build_job *j)
{
	check_not_dispatching(idx, "index_set_job");
	if (!build_valid_name(j->build) || !j->name[0])
		return 0;
	struct job_slot *s = slot_of(idx, j->build);
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		memcpy(s->build, j->build, strlen(j->build) + 1);
		s->hn.key = s->build;
		hmap_insert(&idx->jobs, &s->hn);
	}
	for (size_t i = 0; i < s->count; i++) {
		struct job_rec *r = &s->jobs[i];
		if (strcmp(r->job.name, j->name) != 0)
			continue;
		r->gen = idx->job_gen;
		if (r->job.state == j->state && r->job.deleting == j->deleting &&
		    r->job.kind == j->kind && r->job.created == j->created &&
		    strcmp(r->job.uid, j->uid) == 0)
			return 0;
		r->job = *j;
		job_event(idx, j->build);
		return 1;
	}
	s->jobs = xrealloc(s->jobs, (s->count + 1) * sizeof(*s->jobs));
	s->jobs[s->count++] = (struct job_rec){.job = *j, .gen = idx->job_gen};
	job_event(idx, j->build);
	return 1;
}

int index_remove_job(struct index *idx, const struct build_job *j)
{
	check_not_dispatching(idx, "index_remove_job");
	struct job_slot *s = slot_of(idx, j->build);
	if (!s)
		return 0;
	for (size_t i = 0; i < s->count; i++) {
		if (strcmp(s->jobs[i].job.name, j->name) != 0)
			continue;
		memmove(&s->jobs[i], &s->jobs[i + 1], (s->count - i - 1) * sizeof(*s->jobs));
		s->count--;
		char build[BUILD_NAME_MAX + 1];
		memcpy(build, s->build, sizeof(build));
		if (!s->count) {
			hmap_remove(&idx->jobs, &s->hn);
			free(s->jobs);
			free(s);
		}
		job_event(idx, build);
		return 1;
	}
	return 0;
}

const struct build_job *index_job(const struct index *idx, const char *build,
				  enum build_job_kind kind)
{
	struct job_slot *s = build ? slot_of(idx, build) : NULL;
	const struct build_job *best = NULL;
	for (size_t i = 0; s && i < s->count; i++) {
		const struct build_job *j = &s->jobs[i].job;
		if (j->kind != kind)
			continue;
		if (!best || (best->deleting && !j->deleting) ||
		    (best->deleting == j->deleting &&
		     (j->created > best->created ||
		      (j->created == best->created && strcmp(j->name, best->name) > 0))))
			best = j;
	}
	return best;
}

void index_resync_jobs_begin(struct index *idx)
{
	idx->job_gen++;
}

size_t index_resync_jobs_end(struct index *idx)
{
	check_not_dispatching(idx, "index_resync_jobs_end");
	size_t n = 0, cap = 0;
	struct build_job *stale = NULL;
	struct hnode *h;
	hmap_each(h, &idx->jobs) {
		struct job_slot *s = CONTAINER_OF(h, struct job_slot, hn);
		for (size_t k = 0; k < s->count; k++) {
			if (s->jobs[k].gen == idx->job_gen)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 16;
				stale = xrealloc(stale, cap * sizeof(*stale));
			}
			stale[n++] = s->jobs[k].job;
		}
	}
	for (size_t i = 0; i < n; i++)
		index_remove_job(idx, &stale[i]);
	free(stale);
	return n;
}
