#include <errno.h>

#include "build.h"
#include "index.h"
#include "unit.h"
#include "util.h"

static const char *SHAS[] = {
	"0d35a10f161b410f2baa3d416a338d191b6dabc0",
	"1111111111111111111111111111111111111111",
	"2222222222222222222222222222222222222222",
	"3333333333333333333333333333333333333333",
};

struct spec {
	const char *name, *repo, *branch;
	int pr, sha;
	enum build_init_status init;
	int desired, replicas, available;
	int64_t created, last_scaled;
	bool deleting;
	const char *rv;
};

static struct build *mk(const struct spec *s)
{
	struct build_commit c = {s->repo ? s->repo : "oca/a", s->branch ? s->branch : "16.0",
				 s->pr, SHAS[s->sha]};
	char dname[80];
	snprintf(dname, sizeof(dname), "%s-odoo", s->name);
	struct build *b = build_new(s->name, dname, &c, s->rv ? s->rv : "1", "uid");
	b->init_status = s->init;
	b->desired_replicas = s->desired;
	b->replicas = s->replicas;
	b->available_replicas = s->available;
	b->created = s->created ? s->created : 1000;
	b->last_scaled = s->last_scaled;
	b->deleting = s->deleting;
	b->has_finalizer = true;
	b->status = build_derive_status(b);
	return b;
}

/* Shorthands for the usual states. */
#define STOPPED .init = BUILD_INIT_SUCCEEDED
#define STARTED .init = BUILD_INIT_SUCCEEDED, .desired = 1, .replicas = 1, .available = 1
#define FAILED .init = BUILD_INIT_FAILED

struct rec {
	int upd, del, job, job_null;
	char last[64];
	enum build_status last_status;
	struct index *idx;
	size_t count_seen; /* index_count() seen from inside the callback */
};

static void on_event(enum index_event ev, const struct build *b, void *data)
{
	struct rec *r = data;
	if (ev == INDEX_JOB) {
		r->job++;
		if (!b)
			r->job_null++;
		return;
	}
	if (ev == INDEX_UPD)
		r->upd++;
	else
		r->del++;
	snprintf(r->last, sizeof(r->last), "%s", b->name);
	r->last_status = b->status;
	if (r->idx)
		r->count_seen = index_count(r->idx);
}

static void test_upsert_remove_events(void)
{
	struct index *idx = index_new();
	struct rec r = {.idx = idx};
	index_listen(idx, on_event, &r);

	CHECK_INT(index_upsert(idx, mk(&(struct spec){.name = "b1"})), 1);
	CHECK_INT(r.upd, 1);
	CHECK_STR(r.last, "b1");
	CHECK_INT(r.count_seen, 1); /* listeners see the updated index */
	CHECK_INT(index_count(idx), 1);
	const struct build *b = index_find(idx, "b1");
	CHECK(b && b->status == BUILD_INITIALIZING);

	/* only the resourceVersion changes: no event, but the new object is kept */
	CHECK_INT(index_upsert(idx, mk(&(struct spec){.name = "b1", .rv = "2"})), 0);
	CHECK_INT(r.upd, 1);
	CHECK_STR(index_find(idx, "b1")->resource_version, "2");

	/* a status change: exactly one event */
	CHECK_INT(index_upsert(idx, mk(&(struct spec){.name = "b1", STARTED})), 1);
	CHECK_INT(r.upd, 1 + 1);
	CHECK_INT(r.last_status, BUILD_STARTED);
	/* the ready count alone changes nothing visible */
	struct build *x = mk(&(struct spec){.name = "b1", STARTED});
	x->ready_replicas = 1;
	CHECK_INT(index_upsert(idx, x), 0);
	/* a stale status is re-derived */
	x = mk(&(struct spec){.name = "b1", STARTED});
	x->status = BUILD_FAILED;
	CHECK_INT(index_upsert(idx, x), 0);
	CHECK_INT(index_find(idx, "b1")->status, BUILD_STARTED);

	CHECK_INT(index_remove(idx, "nope"), 0);
	CHECK_INT(r.del, 0);
	CHECK_INT(index_remove(idx, "b1"), 1);
	CHECK_INT(r.del, 1);
	CHECK_STR(r.last, "b1");
	CHECK_INT(r.count_seen, 0);
	CHECK(index_find(idx, "b1") == NULL);
	CHECK_INT(index_remove(idx, "b1"), 0);
	CHECK_INT(r.del, 1);
	CHECK(index_find(idx, NULL) == NULL);

	/* unlisten */
	CHECK_INT(index_unlisten(idx, on_event, &r), 0);
	CHECK_INT(index_unlisten(idx, on_event, &r), -ENOENT);
	index_upsert(idx, mk(&(struct spec){.name = "b2"}));
	CHECK_INT(r.upd, 2);
	index_free(idx);
}

/* A listener that removes itself and adds another while being called. */
struct selfish {
	struct index *idx;
	int calls;
	struct rec *other;
};

static void on_selfish(enum index_event ev, const struct build *b, void *data)
{
	UNUSED(ev);
	UNUSED(b);
	struct selfish *s = data;
	s->calls++;
	CHECK_INT(index_unlisten(s->idx, on_selfish, s), 0);
	index_listen(s->idx, on_event, s->other);
}

static void test_listener_changes_during_dispatch(void)
{
	struct index *idx = index_new();
	struct rec a = {0}, late = {0};
	struct selfish s = {.idx = idx, .other = &late};
	index_listen(idx, on_selfish, &s);
	index_listen(idx, on_event, &a);
	index_upsert(idx, mk(&(struct spec){.name = "b1"}));
	CHECK_INT(s.calls, 1);
	CHECK_INT(a.upd, 1);   /* still called after a removal before it */
	CHECK_INT(late.upd, 0); /* added during the dispatch: not for this event */
	index_upsert(idx, mk(&(struct spec){.name = "b2"}));
	CHECK_INT(s.calls, 1);
	CHECK_INT(a.upd, 2);
	CHECK_INT(late.upd, 1);
	index_free(idx);
}

static void test_find_commit(void)
{
	struct index *idx = index_new();
	index_upsert(idx, mk(&(struct spec){.name = "b1", .repo = "oca/a", .branch = "16.0"}));
	index_upsert(idx, mk(&(struct spec){.name = "b2", .repo = "oca/a", .branch = "16.0",
					    .pr = 5}));
	index_upsert(idx, mk(&(struct spec){.name = "b3", .repo = "oca/a", .branch = "16.0",
					    .sha = 1}));
	const struct build *b = index_find_commit(idx, "OCA/A", "16.0", 0, SHAS[0]);
	CHECK(b && strcmp(b->name, "b1") == 0);
	b = index_find_commit(idx, "oca/a", "16.0", 5, SHAS[0]);
	CHECK(b && strcmp(b->name, "b2") == 0);
	b = index_find_commit(idx, "oca/a", "16.0", 0, SHAS[1]);
	CHECK(b && strcmp(b->name, "b3") == 0);
	CHECK(index_find_commit(idx, "oca/a", "16.0", 6, SHAS[0]) == NULL);
	CHECK(index_find_commit(idx, "oca/a", "17.0", 0, SHAS[0]) == NULL);
	CHECK(index_find_commit(idx, "oca/b", "16.0", 0, SHAS[0]) == NULL);
	CHECK(index_find_commit(idx, "oca/a", "16.0", 0, SHAS[2]) == NULL);
	CHECK(index_find_commit(idx, "oca/a", "16", 0, SHAS[0]) == NULL);
	/* a longer prefix-sharing value does not match either */
	CHECK(index_find_commit(idx, "oca/a", "16.0.1", 0, SHAS[0]) == NULL);
	char longrepo[300];
	memset(longrepo, 'a', sizeof(longrepo) - 1);
	longrepo[sizeof(longrepo) - 1] = '\0';
	CHECK(index_find_commit(idx, longrepo, "16.0", 0, SHAS[0]) == NULL);
	CHECK(index_find_commit(idx, NULL, "16.0", 0, SHAS[0]) == NULL);

	/* a build being deleted is found, but a live one is preferred */
	index_upsert(idx, mk(&(struct spec){.name = "a0", .sha = 1, .deleting = true}));
	b = index_find_commit(idx, "oca/a", "16.0", 0, SHAS[1]);
	CHECK(b && strcmp(b->name, "b3") == 0);
	index_remove(idx, "b3");
	b = index_find_commit(idx, "oca/a", "16.0", 0, SHAS[1]);
	CHECK(b && strcmp(b->name, "a0") == 0 && b->deleting);
	index_free(idx);
}

static void test_counts(void)
{
	struct index *idx = index_new();
	index_upsert(idx, mk(&(struct spec){.name = "b1"}));
	index_upsert(idx, mk(&(struct spec){.name = "b2", .init = BUILD_INIT_STARTED}));
	index_upsert(idx, mk(&(struct spec){.name = "b3", STARTED}));
	index_upsert(idx, mk(&(struct spec){.name = "b4", STOPPED}));
	index_upsert(idx, mk(&(struct spec){.name = "b5", FAILED}));
	index_upsert(idx, mk(&(struct spec){.name = "b6", STOPPED, .replicas = 1}));
	index_upsert(idx, mk(&(struct spec){.name = "b7", STOPPED, .desired = 1}));
	index_upsert(idx, mk(&(struct spec){.name = "b8", .init = BUILD_INIT_STARTED,
					    .deleting = true}));
	CHECK_INT(index_count(idx), 8);
	CHECK_INT(index_deployed(idx), 7);
	CHECK_INT(index_count_status(idx, BUILD_INITIALIZING), 2);
	CHECK_INT(index_count_status(idx, BUILD_STARTED), 1);
	CHECK_INT(index_count_status(idx, BUILD_STOPPED), 1);
	CHECK_INT(index_count_status(idx, BUILD_STOPPING), 1);
	CHECK_INT(index_count_status(idx, BUILD_STARTING), 1);
	CHECK_INT(index_count_status(idx, BUILD_FAILED), 1);
	CHECK_INT(index_count_status(idx, BUILD_UNDEPLOYING), 1);
	CHECK_INT(index_count_status(idx, (enum build_status)42), 0);
	CHECK_INT(index_count_init(idx, BUILD_INIT_TODO), 1);
	CHECK_INT(index_count_init(idx, BUILD_INIT_STARTED), 1); /* b8 is being deleted */
	CHECK_INT(index_count_init(idx, BUILD_INIT_SUCCEEDED), 4);
	CHECK_INT(index_count_init(idx, BUILD_INIT_FAILED), 1);
	index_upsert(idx, mk(&(struct spec){.name = "b3", STOPPED}));
	CHECK_INT(index_count_status(idx, BUILD_STARTED), 0);
	CHECK_INT(index_count_status(idx, BUILD_STOPPED), 2);
	index_remove(idx, "b8");
	CHECK_INT(index_count_status(idx, BUILD_UNDEPLOYING), 0);
	CHECK_INT(index_deployed(idx), 7);
	index_free(idx);
}

/* Names of a queue, in order, joined by ','. */
static void queue_names(struct index *idx,
			const struct build *(*next)(const struct index *, const struct build *),
			char *out, size_t len)
{
	out[0] = '\0';
	size_t n = 0;
	for (const struct build *b = next(idx, NULL); b; b = next(idx, b))
		n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s", n ? "," : "", b->name);
}

#define CHECK_QUEUE(idx, fn, want)                              \
	do {                                                    \
		char _q[4096];                                  \
		queue_names((idx), (fn), _q, sizeof(_q));       \
		CHECK_STR(_q, (want));                          \
	} while (0)

static void test_queues(void)
{
	struct index *idx = index_new();
	/* to initialize: todo, oldest first, not the deleting ones */
	index_upsert(idx, mk(&(struct spec){.name = "t3", .created = 300}));
	index_upsert(idx, mk(&(struct spec){.name = "t1", .created = 100}));
	index_upsert(idx, mk(&(struct spec){.name = "t2", .created = 200, .branch = "17.0"}));
	index_upsert(idx, mk(&(struct spec){.name = "t0", .created = 50, .deleting = true}));
	index_upsert(idx, mk(&(struct spec){.name = "t4", .created = 60,
					    .init = BUILD_INIT_STARTED}));
	index_upsert(idx, mk(&(struct spec){.name = "t5", .created = 100})); /* tie: by name */
	CHECK_QUEUE(idx, index_next_to_initialize, "t1,t5,t2,t3");
	/* starting one moves it out */
	index_upsert(idx, mk(&(struct spec){.name = "t1", .created = 100,
					    .init = BUILD_INIT_STARTED}));
	CHECK_QUEUE(idx, index_next_to_initialize, "t5,t2,t3");
	/* after a build that is not in the queue: NULL */
	CHECK(index_next_to_initialize(idx, index_find(idx, "t1")) == NULL);

	/* started: least recently scaled first, never scaled = created */
	index_upsert(idx, mk(&(struct spec){.name = "s1", STARTED, .created = 10,
					    .last_scaled = 500}));
	index_upsert(idx, mk(&(struct spec){.name = "s2", STARTED, .created = 400}));
	index_upsert(idx, mk(&(struct spec){.name = "s3", STARTED, .created = 10,
					    .last_scaled = 450}));
	index_upsert(idx, mk(&(struct spec){.name = "s4", .init = BUILD_INIT_SUCCEEDED,
					    .desired = 1, .created = 1}));
	CHECK_QUEUE(idx, index_next_started, "s2,s3,s1");
	index_upsert(idx, mk(&(struct spec){.name = "s2", STARTED, .created = 400,
					    .last_scaled = 600}));
	CHECK_QUEUE(idx, index_next_started, "s3,s1,s2");

	/* undeploying: oldest created first */
	index_upsert(idx, mk(&(struct spec){.name = "u2", STARTED, .created = 20,
					    .deleting = true}));
	index_upsert(idx, mk(&(struct spec){.name = "u1", FAILED, .created = 5,
					    .deleting = true}));
	CHECK_QUEUE(idx, index_next_undeploying, "u1,u2,t0");
	CHECK_QUEUE(idx, index_next_started, "s3,s1,s2");
	index_free(idx);
}

static void test_newest_protection(void)
{
	struct index *idx = index_new();
	/* three stopped builds of oca/a 16.0 */
	index_upsert(idx, mk(&(struct spec){.name = "a1", STOPPED, .created = 100,
					    .last_scaled = 900}));
	index_upsert(idx, mk(&(struct spec){.name = "a2", FAILED, .created = 200}));
	index_upsert(idx, mk(&(struct spec){.name = "a3", STOPPED, .created = 300}));
	CHECK_QUEUE(idx, index_next_undeployable, "a2,a1");
	CHECK_STR(index_newest(idx, "oca/a", "16.0", 0)->name, "a3");
	CHECK_STR(index_newest(idx, "OCA/A", "16.0", 0)->name, "a3");
	/* a lone build of another branch and of a PR: protected */
	index_upsert(idx, mk(&(struct spec){.name = "c1", STOPPED, .branch = "17.0", .created = 1}));
	index_upsert(idx, mk(&(struct spec){.name = "p1", STOPPED, .pr = 7, .created = 2}));
	CHECK_QUEUE(idx, index_next_undeployable, "a2,a1");
	/* a second build of the PR: the older one may go */
	index_upsert(idx, mk(&(struct spec){.name = "p2", FAILED, .pr = 7, .created = 3}));
	CHECK_QUEUE(idx, index_next_undeployable, "p1,a2,a1");
	CHECK_STR(index_newest(idx, "oca/a", "16.0", 7)->name, "p2");
	/* a newer build (initializing) takes over: a3 becomes undeployable */
	index_upsert(idx, mk(&(struct spec){.name = "a4", .created = 400}));
	CHECK_QUEUE(idx, index_next_undeployable, "p1,a2,a3,a1");
	CHECK_STR(index_newest(idx, "oca/a", "16.0", 0)->name, "a4");
	/* it goes away: a3 is the newest again */
	index_remove(idx, "a4");
	CHECK_QUEUE(idx, index_next_undeployable, "p1,a2,a1");
	/* the newest being deleted: the previous one becomes the newest */
	index_upsert(idx, mk(&(struct spec){.name = "a3", STOPPED, .created = 300,
					    .deleting = true}));
	CHECK_STR(index_newest(idx, "oca/a", "16.0", 0)->name, "a2");
	CHECK_QUEUE(idx, index_next_undeployable, "p1,a1");
	/* a build inserted in the middle changes nothing for the newest */
	index_upsert(idx, mk(&(struct spec){.name = "a15", STOPPED, .created = 150}));
	CHECK_QUEUE(idx, index_next_undeployable, "p1,a15,a1");
	/* a started build is never undeployable, newest or not */
	index_upsert(idx, mk(&(struct spec){.name = "a15", STARTED, .created = 150}));
	CHECK_QUEUE(idx, index_next_undeployable, "p1,a1");
	/* stopping counts as stopped */
	index_upsert(idx, mk(&(struct spec){.name = "a15", STOPPED, .replicas = 1,
					    .created = 150}));
	CHECK_QUEUE(idx, index_next_undeployable, "p1,a15,a1");
	CHECK(index_newest(idx, "oca/a", "18.0", 0) == NULL);
	CHECK(index_newest(idx, "oca/a", "16.0", 8) == NULL);
	CHECK(index_newest(idx, "oca/b", "16.0", 0) == NULL);
	/* the newest of the last group of the tree */
	index_upsert(idx, mk(&(struct spec){.name = "z1", STOPPED, .repo = "zz/z", .created = 1}));
	index_upsert(idx, mk(&(struct spec){.name = "z2", STOPPED, .repo = "zz/z", .created = 2}));
	CHECK_STR(index_newest(idx, "zz/z", "16.0", 0)->name, "z2");
	CHECK_QUEUE(idx, index_next_undeployable, "z1,p1,a15,a1");
	index_free(idx);
}

static void list_names(struct index *idx, const struct index_filter *f, enum index_sort s,
		       char *out, size_t len)
{
	const struct build **v;
	size_t n = index_list(idx, f, s, &v), k = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(out + k, k < len ? len - k : 0, "%s%s", i ? "," : "",
				      v[i]->name);
	free(v);
}

#define CHECK_LIST(idx, f, s, want)                             \
	do {                                                    \
		char _l[4096];                                  \
		list_names((idx), (f), (s), _l, sizeof(_l));    \
		CHECK_STR(_l, (want));                          \
	} while (0)

static void test_listing(void)
{
	struct index *idx = index_new();
	index_upsert(idx, mk(&(struct spec){.name = "r1", .repo = "oca/b", .created = 5}));
	index_upsert(idx, mk(&(struct spec){.name = "r2", .repo = "oca/a", .branch = "17.0",
					    .created = 5}));
	index_upsert(idx, mk(&(struct spec){.name = "r3", .repo = "oca/a", .branch = "16.0",
					    .created = 9}));
	index_upsert(idx, mk(&(struct spec){.name = "r4", .repo = "oca/a", .branch = "16.0",
					    .created = 1, STARTED}));
	index_upsert(idx, mk(&(struct spec){.name = "r5", .repo = "oca/a", .branch = "16.0",
					    .pr = 12, .created = 3}));
	index_upsert(idx, mk(&(struct spec){.name = "r6", .repo = "oca/a", .branch = "17.0",
					    .pr = 3, .created = 7}));
	index_upsert(idx, mk(&(struct spec){.name = "r7", .repo = "oca/a", .branch = "16.0",
					    .pr = 12, .created = 2}));
	/* ascending: repo, PRs by number, then branches, then branch, created */
	CHECK_LIST(idx, NULL, INDEX_SORT_ASC, "r6,r7,r5,r4,r3,r2,r1");
	/* descending (the API default): the exact reverse */
	CHECK_LIST(idx, NULL, INDEX_SORT_DESC, "r1,r2,r3,r4,r5,r7,r6");
	struct index_filter f = {.repo = "OCA/A"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r6,r7,r5,r4,r3,r2");
	f = (struct index_filter){.repo = "oca/b"};
	CHECK_LIST(idx, &f, INDEX_SORT_DESC, "r1");
	f = (struct index_filter){.repo = "oca"};
	CHECK_LIST(idx, &f, INDEX_SORT_DESC, "");
	f = (struct index_filter){.target_branch = "16.0"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r7,r5,r4,r3,r1");
	f = (struct index_filter){.branch = "16.0"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r4,r3,r1");
	f = (struct index_filter){.repo = "oca/a", .branch = "16.0"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r4,r3");
	f = (struct index_filter){.repo = "oca/a", .pr = 12};
	CHECK_LIST(idx, &f, INDEX_SORT_DESC, "r5,r7");
	f = (struct index_filter){.repo = "oca/a", .pr = 12, .target_branch = "16.0"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r7,r5");
	f = (struct index_filter){.repo = "oca/a", .pr = 12, .target_branch = "17.0"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "");
	f = (struct index_filter){.pr = 3};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r6");
	f = (struct index_filter){.repo = "oca/a", .pr = 3, .branch = "17.0"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "");
	f = (struct index_filter){.by_status = true, .status = BUILD_STARTED};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r4");
	f = (struct index_filter){.by_status = true, .status = BUILD_INITIALIZING, .repo = "oca/a",
				  .target_branch = "16.0"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r7,r5,r3");
	f = (struct index_filter){.name = "r3"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r3");
	f = (struct index_filter){.name = "r3", .repo = "oca/b"};
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "");
	f = (struct index_filter){.repo = "", .branch = ""}; /* empty = any */
	CHECK_LIST(idx, &f, INDEX_SORT_ASC, "r6,r7,r5,r4,r3,r2,r1");

	CHECK(index_filter_match(NULL, index_find(idx, "r1")));
	f = (struct index_filter){.branch = "16.0"};
	CHECK(!index_filter_match(&f, index_find(idx, "r5")));
	CHECK(index_filter_match(&f, index_find(idx, "r4")));

	const char **repos;
	size_t n = index_repos(idx, &repos);
	CHECK_INT(n, 2);
	if (n == 2) {
		CHECK_STR(repos[0], "oca/a");
		CHECK_STR(repos[1], "oca/b");
	}
	free(repos);
	index_remove(idx, "r1");
	n = index_repos(idx, &repos);
	CHECK_INT(n, 1);
	free(repos);
	const struct build **v;
	f = (struct index_filter){.repo = "nobody/x"};
	CHECK_INT(index_list(idx, &f, INDEX_SORT_ASC, &v), 0);
	CHECK(v == NULL);
	index_free(idx);
	struct index *empty = index_new();
	CHECK_INT(index_repos(empty, &repos), 0);
	CHECK(repos == NULL);
	CHECK(index_next_started(empty, NULL) == NULL);
	index_free(empty);
}

static struct build_job jb(const char *build, const char *name, enum build_job_kind kind,
			   enum build_job_state state, int64_t created, bool deleting)
{
	struct build_job j = {0};
	snprintf(j.build, sizeof(j.build), "%s", build);
	snprintf(j.name, sizeof(j.name), "%s", name);
	snprintf(j.uid, sizeof(j.uid), "u-%s", name);
	j.kind = kind;
	j.state = state;
	j.created = created;
	j.deleting = deleting;
	return j;
}

static void test_jobs(void)
{
	struct index *idx = index_new();
	struct rec r = {0};
	index_listen(idx, on_event, &r);
	/* a job before its deployment */
	struct build_job j = jb("b1", "b1-initialize", BUILD_JOB_INITIALIZE, BUILD_JOB_ACTIVE, 10,
				false);
	CHECK_INT(index_set_job(idx, &j), 1);
	CHECK_INT(r.job, 1);
	CHECK_INT(r.job_null, 1);
	CHECK_INT(index_set_job(idx, &j), 0); /* no change, no event */
	CHECK_INT(r.job, 1);
	const struct build_job *got = index_job(idx, "b1", BUILD_JOB_INITIALIZE);
	CHECK(got && got->state == BUILD_JOB_ACTIVE);
	CHECK(index_job(idx, "b1", BUILD_JOB_CLEANUP) == NULL);
	CHECK(index_job(idx, "b2", BUILD_JOB_INITIALIZE) == NULL);

	index_upsert(idx, mk(&(struct spec){.name = "b1"}));
	j.state = BUILD_JOB_SUCCEEDED;
	CHECK_INT(index_set_job(idx, &j), 1);
	CHECK_INT(r.job, 2);
	CHECK_INT(r.job_null, 1); /* the build is known now */
	CHECK_INT(index_job(idx, "b1", BUILD_JOB_INITIALIZE)->state, BUILD_JOB_SUCCEEDED);

	/* reset: the old job is being deleted, a new one exists: the new one wins */
	j.deleting = true;
	index_set_job(idx, &j);
	struct build_job j2 = jb("b1", "b1-initialize-2", BUILD_JOB_INITIALIZE, BUILD_JOB_PENDING,
				 5, false);
	index_set_job(idx, &j2);
	CHECK_STR(index_job(idx, "b1", BUILD_JOB_INITIALIZE)->name, "b1-initialize-2");
	struct build_job c = jb("b1", "b1-cleanup", BUILD_JOB_CLEANUP, BUILD_JOB_FAILED, 20, false);
	index_set_job(idx, &c);
	CHECK_INT(index_job(idx, "b1", BUILD_JOB_CLEANUP)->state, BUILD_JOB_FAILED);
	/* two live ones: the newest */
	struct build_job j3 = jb("b1", "b1-initialize-3", BUILD_JOB_INITIALIZE, BUILD_JOB_ACTIVE,
				 30, false);
	index_set_job(idx, &j3);
	CHECK_STR(index_job(idx, "b1", BUILD_JOB_INITIALIZE)->name, "b1-initialize-3");

	int before = r.job;
	CHECK_INT(index_remove_job(idx, &j3), 1);
	CHECK_INT(r.job, before + 1);
	CHECK_INT(index_remove_job(idx, &j3), 0);
	CHECK_INT(r.job, before + 1);
	CHECK_STR(index_job(idx, "b1", BUILD_JOB_INITIALIZE)->name, "b1-initialize-2");

	/* relist: only j2 is still there */
	index_resync_jobs_begin(idx);
	index_set_job(idx, &j2);
	CHECK_INT(index_resync_jobs_end(idx), 2);
	CHECK_STR(index_job(idx, "b1", BUILD_JOB_INITIALIZE)->name, "b1-initialize-2");
	CHECK(index_job(idx, "b1", BUILD_JOB_CLEANUP) == NULL);
	/* removing the build keeps its jobs (the controller cleans them up) */
	index_remove(idx, "b1");
	CHECK(index_job(idx, "b1", BUILD_JOB_INITIALIZE) != NULL);
	CHECK_INT(index_remove_job(idx, &j2), 1);
	CHECK(index_job(idx, "b1", BUILD_JOB_INITIALIZE) == NULL);
	/* garbage is refused */
	struct build_job bad = jb("NOT OK", "x", BUILD_JOB_INITIALIZE, BUILD_JOB_ACTIVE, 1, false);
	CHECK_INT(index_set_job(idx, &bad), 0);
	index_free(idx);
}

static void test_resync(void)
{
	struct index *idx = index_new();
	struct rec r = {0};
	index_upsert(idx, mk(&(struct spec){.name = "b1"}));
	index_upsert(idx, mk(&(struct spec){.name = "b2"}));
	index_upsert(idx, mk(&(struct spec){.name = "b3"}));
	index_listen(idx, on_event, &r);
	index_resync_begin(idx);
	index_upsert(idx, mk(&(struct spec){.name = "b2"}));                  /* unchanged */
	index_upsert(idx, mk(&(struct spec){.name = "b4", STARTED}));          /* new */
	CHECK_INT(index_resync_end(idx), 2);
	CHECK_INT(r.del, 2);
	CHECK_INT(r.upd, 1);
	CHECK(index_find(idx, "b1") == NULL && index_find(idx, "b3") == NULL);
	CHECK(index_find(idx, "b2") && index_find(idx, "b4"));
	CHECK_INT(index_count(idx), 2);
	index_resync_begin(idx);
	CHECK_INT(index_resync_end(idx), 2);
	CHECK_INT(index_count(idx), 0);
	index_free(idx);
}

/* ---- random sequences against a brute-force model ---- */

#define NNAMES 200

static uint64_t rng_state = 88172645463325252ULL;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

struct model {
	struct build *b[NNAMES]; /* copies of what the index should hold */
};

static int cmp_i64(int64_t a, int64_t b)
{
	return (a > b) - (a < b);
}

static int64_t prk(const struct build *b)
{
	return b->commit.pr ? b->commit.pr : 1LL << 40;
}

static int by_list(const void *x, const void *y)
{
	const struct build *a = *(const struct build *const *)x, *b = *(const struct build *const *)y;
	int r = strcmp(a->commit.repo, b->commit.repo);
	if (!r)
		r = cmp_i64(prk(a), prk(b));
	if (!r)
		r = strcmp(a->commit.target_branch, b->commit.target_branch);
	if (!r)
		r = cmp_i64(a->created, b->created);
	return r ? r : strcmp(a->name, b->name);
}

static int by_created(const void *x, const void *y)
{
	const struct build *a = *(const struct build *const *)x, *b = *(const struct build *const *)y;
	int r = cmp_i64(a->created, b->created);
	return r ? r : strcmp(a->name, b->name);
}

static int by_scaled(const void *x, const void *y)
{
	const struct build *a = *(const struct build *const *)x, *b = *(const struct build *const *)y;
	int r = cmp_i64(build_last_scaled(a), build_last_scaled(b));
	return r ? r : by_created(x, y);
}

static bool model_newest(const struct model *m, const struct build *b)
{
	for (int i = 0; i < NNAMES; i++) {
		const struct build *o = m->b[i];
		if (!o || o == b || o->deleting || o->commit.pr != b->commit.pr ||
		    strcmp(o->commit.repo, b->commit.repo) ||
		    strcmp(o->commit.target_branch, b->commit.target_branch))
			continue;
		if (by_created(&o, &b) > 0)
			return false;
	}
	return true;
}

/* Model builds matching kind, sorted with cmp, names joined. */
static void model_queue(const struct model *m, int kind, int (*cmp)(const void *, const void *),
			char *out, size_t len)
{
	const struct build *v[NNAMES];
	size_t n = 0;
	for (int i = 0; i < NNAMES; i++) {
		const struct build *b = m->b[i];
		if (!b)
			continue;
		bool in = false;
		switch (kind) {
		case 0: in = b->init_status == BUILD_INIT_TODO && !b->deleting; break;
		case 1: in = b->status == BUILD_STARTED; break;
		case 2:
			in = !b->deleting && (b->status == BUILD_STOPPED || b->status == BUILD_STOPPING ||
					      b->status == BUILD_FAILED) && !model_newest(m, b);
			break;
		case 3: in = b->deleting; break;
		case 4: in = true; break;
		}
		if (in)
			v[n++] = b;
	}
	qsort(v, n, sizeof(*v), cmp);
	size_t k = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(out + k, k < len ? len - k : 0, "%s%s", i ? "," : "", v[i]->name);
}

static const char *REPOS[] = {"oca/a", "oca/b", "x/y"};
static const char *BRANCHES[] = {"16.0", "17.0", "main"};

static struct build *random_build(int i)
{
	char name[16];
	snprintf(name, sizeof(name), "b%03d", i);
	struct spec s = {
		.name = name,
		.repo = REPOS[rnd(3)],
		.branch = BRANCHES[rnd(3)],
		.pr = (int)rnd(4) < 2 ? 0 : (int)rnd(3) + 1,
		.sha = (int)rnd(4),
		.init = (enum build_init_status)rnd(4),
		.desired = (int)rnd(2),
		.replicas = (int)rnd(2),
		.available = (int)rnd(2),
		.created = 1000 + rnd(10),
		.last_scaled = rnd(3) ? 0 : 995 + rnd(20),
		.deleting = rnd(10) == 0,
	};
	return mk(&s);
}

static void check_against_model(struct index *idx, const struct model *m, int step)
{
	char want[16384], got[16384];
	size_t counts[BUILD_STATUS_COUNT] = {0}, inits[BUILD_INIT_STATUS_COUNT] = {0};
	size_t total = 0, deleting = 0;
	for (int i = 0; i < NNAMES; i++) {
		const struct build *b = m->b[i];
		if (!b)
			continue;
		total++;
		counts[b->status]++;
		if (b->deleting)
			deleting++;
		else
			inits[b->init_status]++;
	}
	int bad = 0;
	bad += index_count(idx) != total;
	bad += index_deployed(idx) != total - deleting;
	for (int s = 0; s < BUILD_STATUS_COUNT; s++)
		bad += index_count_status(idx, s) != counts[s];
	for (int s = 0; s < BUILD_INIT_STATUS_COUNT; s++)
		bad += index_count_init(idx, s) != inits[s];
	if (bad) {
		fprintf(stderr, "step %d: counts differ\n", step);
		CHECK(0);
	}

	const struct build *(*queues[])(const struct index *, const struct build *) = {
		index_next_to_initialize, index_next_started, index_next_undeployable,
		index_next_undeploying};
	int (*cmps[])(const void *, const void *) = {by_created, by_scaled, by_scaled, by_created};
	for (int q = 0; q < 4; q++) {
		model_queue(m, q, cmps[q], want, sizeof(want));
		queue_names(idx, queues[q], got, sizeof(got));
		if (strcmp(want, got) != 0) {
			fprintf(stderr, "step %d queue %d:\n  want %s\n  got  %s\n", step, q, want, got);
			CHECK(0);
		}
	}
	model_queue(m, 4, by_list, want, sizeof(want));
	list_names(idx, NULL, INDEX_SORT_ASC, got, sizeof(got));
	if (strcmp(want, got) != 0) {
		fprintf(stderr, "step %d listing:\n  want %s\n  got  %s\n", step, want, got);
		CHECK(0);
	}
	/* newest of every group and find_commit */
	for (int r = 0; r < 3; r++)
		for (int br = 0; br < 3; br++)
			for (int pr = 0; pr < 4; pr++) {
				const struct build *best = NULL;
				for (int i = 0; i < NNAMES; i++) {
					const struct build *b = m->b[i];
					if (b && !b->deleting && b->commit.pr == pr &&
					    !strcmp(b->commit.repo, REPOS[r]) &&
					    !strcmp(b->commit.target_branch, BRANCHES[br]) &&
					    (!best || by_created(&b, &best) > 0))
						best = b;
				}
				const struct build *n = index_newest(idx, REPOS[r], BRANCHES[br], pr);
				if ((best == NULL) != (n == NULL) ||
				    (best && strcmp(best->name, n->name) != 0)) {
					fprintf(stderr, "step %d: newest of %s %s %d\n", step,
						REPOS[r], BRANCHES[br], pr);
					CHECK(0);
				}
				for (int s = 0; s < 4; s++) {
					bool any = false, live = false;
					for (int i = 0; i < NNAMES; i++) {
						const struct build *b = m->b[i];
						if (b && b->commit.pr == pr &&
						    !strcmp(b->commit.repo, REPOS[r]) &&
						    !strcmp(b->commit.target_branch, BRANCHES[br]) &&
						    !strcmp(b->commit.git_commit, SHAS[s])) {
							any = true;
							live |= !b->deleting;
						}
					}
					const struct build *f = index_find_commit(
						idx, REPOS[r], BRANCHES[br], pr, SHAS[s]);
					if (any != (f != NULL) || (f && live && f->deleting)) {
						fprintf(stderr, "step %d: find_commit\n", step);
						CHECK(0);
					}
				}
			}
}

static void test_random_against_model(void)
{
	struct index *idx = index_new();
	struct model m = {0};
	struct rec r = {0};
	index_listen(idx, on_event, &r);
	int upd = 0, del = 0;
	for (int step = 0; step < 30000; step++) {
		int i = (int)rnd(NNAMES);
		unsigned op = rnd(10);
		if (op < 6) {
			struct build *b = random_build(i);
			bool visible = !m.b[i] || !build_same_view(m.b[i], b);
			build_free(m.b[i]);
			m.b[i] = build_dup(b);
			int got = index_upsert(idx, b);
			if (got != visible) {
				fprintf(stderr, "step %d: upsert returned %d\n", step, got);
				CHECK(0);
			}
			upd += visible;
		} else if (op < 8) {
			int got = index_remove(idx, m.b[i] ? m.b[i]->name : "b999");
			CHECK_INT(got, m.b[i] != NULL);
			del += m.b[i] != NULL;
			build_free(m.b[i]);
			m.b[i] = NULL;
		} else if (op == 8 && m.b[i]) {
			/* the usual change: status, replicas, last-scaled */
			struct build *b = build_dup(m.b[i]);
			b->init_status = (enum build_init_status)rnd(4);
			b->desired_replicas = (int)rnd(2);
			b->replicas = (int)rnd(2);
			b->available_replicas = (int)rnd(2);
			b->last_scaled = rnd(3) ? 0 : 995 + rnd(20);
			b->status = build_derive_status(b);
			bool visible = !build_same_view(m.b[i], b);
			build_free(m.b[i]);
			m.b[i] = build_dup(b);
			CHECK_INT(index_upsert(idx, b), visible);
			upd += visible;
		} else if (m.b[i]) {
			/* a new resourceVersion only */
			struct build *b = build_dup(m.b[i]);
			struct build_commit c = b->commit;
			struct build *n = build_new(b->name, b->deployment_name, &c, "999", "u2");
			n->init_status = b->init_status;
			n->desired_replicas = b->desired_replicas;
			n->replicas = b->replicas;
			n->available_replicas = b->available_replicas;
			n->ready_replicas = b->ready_replicas + 1;
			n->created = b->created;
			n->last_scaled = b->last_scaled;
			n->deleting = b->deleting;
			n->has_finalizer = b->has_finalizer;
			build_free(b);
			CHECK_INT(index_upsert(idx, n), 0);
		}
		if (r.upd != upd || r.del != del) {
			fprintf(stderr, "step %d: events upd %d/%d del %d/%d\n", step, r.upd, upd, r.del,
				del);
			CHECK(0);
			break;
		}
		if (step % 50 == 0 || step > 29900)
			check_against_model(idx, &m, step);
	}
	for (int i = 0; i < NNAMES; i++)
		build_free(m.b[i]);
	index_free(idx);
}

int main(void)
{
	RUN(test_upsert_remove_events);
	RUN(test_listener_changes_during_dispatch);
	RUN(test_find_commit);
	RUN(test_counts);
	RUN(test_queues);
	RUN(test_newest_protection);
	RUN(test_listing);
	RUN(test_jobs);
	RUN(test_resync);
	RUN(test_random_against_model);
	return UNIT_DONE();
}
