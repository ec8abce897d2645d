/* The controller's decisions (src/policy.c): fixtures for each rule, then a
 * model check: random indexes and work states, the plan compared with a
 * brute-force model that scans plain arrays instead of the index's queues,
 * and invariants that hold whatever the rules' details. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "index.h"
#include "policy.h"
#include "strmap.h"
#include "unit.h"
#include "util.h"

#define SHA1 "0d35a10f161b410f2baa3d416a338d191b6dabc0"

/* ---- a small world: an index and the controller's work states ---- */

struct world {
	struct index *idx;
	struct strmap work;
	struct policy_limits lim;
	uint64_t now;
	size_t pending_undeploys;
	int64_t debounce_ms, wall; /* [github] debounce, the wall clock */
	size_t objects_pending;    /* new builds whose objects are being applied */
};

static const struct build_work *lookup(const char *name, void *data)
{
	struct world *w = data;
	return strmap_get(&w->work, name);
}

static void world_init(struct world *w, size_t max_init, size_t max_started, size_t max_deployed)
{
	memset(w, 0, sizeof *w);
	w->idx = index_new();
	w->lim = (struct policy_limits){max_init, max_started, max_deployed, 0, 0, 0};
	w->now = 1000000;
}

static void free_work(void *v)
{
	struct build_work *bw = v;
	free(bw->init_refused);
	free(bw);
}

static void world_free(struct world *w)
{
	index_free(w->idx);
	strmap_clear(&w->work, free_work);
}

static struct build_work *work(struct world *w, const char *name)
{
	struct build_work *bw = strmap_get(&w->work, name);
	if (!bw) {
		bw = calloc(1, sizeof *bw);
		strmap_put(&w->work, name, bw);
	}
	return bw;
}

struct spec {
	const char *name;
	const char *branch; /* NULL: "16.0" */
	int pr;
	enum build_init_status init;
	int desired, available, replicas;
	int64_t created_ms;
	int64_t last_scaled;
	bool deleting;
	bool no_finalizer;
	bool paused;
	const char *rv;
	int restarts; /* of its pods */
};

static const struct build *add(struct world *w, const struct spec *s)
{
	char dname[80];
	snprintf(dname, sizeof dname, "%s-odoo", s->name);
	/* a distinct sha per build, from its name */
	char sha[41];
	unsigned h = 2166136261u;
	for (const char *p = s->name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	snprintf(sha, sizeof sha, "%08x%032x", h, 0);
	struct build_commit c = {"acme/addons", s->branch ? s->branch : "16.0", s->pr, sha};
	struct build *b = build_new(s->name, dname, &c, s->rv ? s->rv : "1", "uid");
	b->init_status = s->init;
	b->desired_replicas = s->desired;
	b->available_replicas = s->available;
	b->replicas = s->replicas;
	b->created_ms = s->created_ms;
	b->created = s->created_ms / 1000;
	b->last_scaled = s->last_scaled;
	b->deleting = s->deleting;
	b->has_finalizer = !s->no_finalizer;
	b->paused = s->paused;
	index_upsert(w->idx, b);
	if (s->restarts) /* else what the index has stays, as for a new Deployment */
		index_set_pods(w->idx, s->name, s->restarts, true);
	return index_find(w->idx, s->name);
}

static void job(struct world *w, const char *build, enum build_job_kind kind,
		enum build_job_state state)
{
	struct build_job j = {.kind = kind, .state = state, .created = 1};
	snprintf(j.build, sizeof j.build, "%s", build);
	snprintf(j.name, sizeof j.name, "%s-%s", build, build_job_kind_str(kind));
	index_set_job(w->idx, &j);
}

static void plan(struct world *w, const char *const *dirty, size_t n, struct plan *out)
{
	struct policy_input in = {.idx = w->idx, .limits = w->lim, .work = lookup, .work_data = w,
				  .dirty = dirty, .n_dirty = n, .now_ms = w->now,
				  .pending_undeploys = w->pending_undeploys,
				  .debounce_ms = w->debounce_ms, .wall_ms = w->wall,
				  .objects_pending = w->objects_pending};
	*out = (struct plan){0};
	policy_plan(&in, out);
}

/* The plan as text: "kind name[->to]" joined by ", ", in plan order. */
static char *show(const struct plan *p)
{
	static char buf[4096];
	buf[0] = '\0';
	for (size_t i = 0; i < p->n; i++) {
		const struct action *a = &p->v[i];
		char one[160];
		snprintf(one, sizeof one, "%s%s %s%s%s", i ? ", " : "", action_kind_str(a->kind),
			 a->b->name, a->kind == ACTION_INIT_STATUS ? "->" : "",
			 a->kind == ACTION_INIT_STATUS ? build_init_status_str(a->to) : "");
		strncat(buf, one, sizeof buf - strlen(buf) - 1);
	}
	return buf;
}

static void expect(struct world *w, const char *const *dirty, size_t n, const char *want)
{
	struct plan p;
	plan(w, dirty, n, &p);
	CHECK_STR(show(&p), want);
	plan_free(&p);
}

/* ---- fixtures ---- */

static void test_initializer_limit_and_order(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	add(&w, &(struct spec){"bc", "c", .created_ms = 3000});
	add(&w, &(struct spec){"ba", "a", .created_ms = 1000});
	add(&w, &(struct spec){"bb", "b", .created_ms = 2000});
	add(&w, &(struct spec){"bd", "d", .created_ms = 4000});
	/* oldest first, two slots */
	expect(&w, NULL, 0, "initialize ba, initialize bb");
	/* one slot held by a started initialization */
	add(&w, &(struct spec){"bz", "z", .init = BUILD_INIT_STARTED, .created_ms = 500});
	job(&w, "bz", BUILD_JOB_INITIALIZE, BUILD_JOB_ACTIVE);
	expect(&w, NULL, 0, "initialize ba");
	/* a todo build whose Job exists holds one too */
	job(&w, "ba", BUILD_JOB_INITIALIZE, BUILD_JOB_PENDING);
	expect(&w, NULL, 0, "");
	world_free(&w);
}

static void test_initializer_in_flight_and_applied(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	add(&w, &(struct spec){"ba", "a", .created_ms = 1000});
	add(&w, &(struct spec){"bb", "b", .created_ms = 2000});
	add(&w, &(struct spec){"bc", "c", .created_ms = 3000});
	work(&w, "ba")->ops = WORK_INIT;        /* being applied */
	work(&w, "bb")->init_applied = true;    /* applied, Job not seen yet */
	expect(&w, NULL, 0, "");
	work(&w, "bb")->init_applied = false;
	expect(&w, NULL, 0, "initialize bb");
	world_free(&w);
}

/* A new build whose other objects are still queued or being applied waits
 * (without a slot): its initialization need not apply them as well. */
static void test_initializer_waits_for_the_rest(void)
{
	struct world w;
	world_init(&w, 1, 10, 100);
	add(&w, &(struct spec){"ba", "a", .created_ms = 1000});
	add(&w, &(struct spec){"bb", "b", .created_ms = 2000});
	work(&w, "ba")->rest_pending = true;
	expect(&w, NULL, 0, "initialize bb");
	/* its Deployment seen before the answer to its apply: still applying */
	work(&w, "ba")->rest_pending = false;
	work(&w, "ba")->ops = WORK_DEPLOY;
	expect(&w, NULL, 0, "initialize bb");
	work(&w, "ba")->ops = 0;
	expect(&w, NULL, 0, "initialize ba");
	world_free(&w);
}

/* A failing build must not block the queue: in its backoff it neither
 * holds nor takes a slot; when it ends, it is next in line. */
static void test_backoff_does_not_block_the_queue(void)
{
	struct world w;
	world_init(&w, 1, 10, 100);
	add(&w, &(struct spec){"ba", "a", .created_ms = 1000});
	add(&w, &(struct spec){"bb", "b", .created_ms = 2000});
	struct build_work *bw = work(&w, "ba");
	bw->failures = 3;
	bw->retry_at_ms = w.now + 5000;
	expect(&w, NULL, 0, "initialize bb");
	w.now += 5000;
	expect(&w, NULL, 0, "initialize ba");
	/* a refusal for good holds it at that resourceVersion only */
	bw->retry_at_ms = 0;
	snprintf(bw->blocked_rv, sizeof bw->blocked_rv, "1");
	expect(&w, NULL, 0, "initialize bb");
	add(&w, &(struct spec){"ba", "a", .created_ms = 1000, .rv = "2"});
	expect(&w, NULL, 0, "initialize ba");
	world_free(&w);
}

static void test_obsolete_queued_build(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	add(&w, &(struct spec){"bold", "a", .created_ms = 1000});
	add(&w, &(struct spec){"bnew", "a", .created_ms = 2000});
	add(&w, &(struct spec){"bpr1", "a", .pr = 7, .created_ms = 1500});
	/* the older commit of branch a is undeployed, the PR is another group */
	expect(&w, NULL, 0, "undeploy bold, initialize bpr1, initialize bnew");
	work(&w, "bold")->ops = WORK_UNDEPLOY;
	expect(&w, NULL, 0, "initialize bpr1, initialize bnew");
	world_free(&w);
}

static void test_init_job_events(void)
{
	struct world w;
	world_init(&w, 0, 10, 100);
	add(&w, &(struct spec){"b1", "a", .created_ms = 1});
	add(&w, &(struct spec){"b2", "b", .init = BUILD_INIT_STARTED, .created_ms = 2});
	add(&w, &(struct spec){"b3", "c", .init = BUILD_INIT_STARTED, .created_ms = 3});
	add(&w, &(struct spec){"b4", "d", .init = BUILD_INIT_STARTED, .created_ms = 4});
	add(&w, &(struct spec){"b5", "e", .init = BUILD_INIT_TODO, .created_ms = 5});
	job(&w, "b1", BUILD_JOB_INITIALIZE, BUILD_JOB_ACTIVE);
	job(&w, "b2", BUILD_JOB_INITIALIZE, BUILD_JOB_SUCCEEDED);
	job(&w, "b3", BUILD_JOB_INITIALIZE, BUILD_JOB_FAILED);
	/* b4's Job is gone; b5 has none yet (the initializer's business) */
	const char *dirty[] = {"b1", "b2", "b3", "b4", "b5"};
	expect(&w, dirty, 5,
	       "init-status b1->started, init-status b2->succeeded, init-status b3->failed, "
	       "init-status b4->todo");
	/* a patch in flight, or the index behind our own patch: later */
	work(&w, "b1")->ops = WORK_PATCH;
	snprintf(work(&w, "b2")->stale_rv, 32, "1");
	expect(&w, dirty, 5, "init-status b3->failed, init-status b4->todo");
	world_free(&w);
}

static void test_init_refused(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	add(&w, &(struct spec){"ba", "a", .created_ms = 1000});
	add(&w, &(struct spec){"bb", "b", .created_ms = 2000});
	work(&w, "ba")->init_refused = strdup("applying Service x failed: invalid");
	const char *dirty[] = {"ba"};
	struct plan p;
	plan(&w, dirty, 1, &p);
	CHECK_STR(show(&p), "init-status ba->failed, initialize bb");
	CHECK(p.n && p.v[0].reason && strstr(p.v[0].reason, "invalid"));
	plan_free(&p);
	world_free(&w);
}

static void test_stopper(void)
{
	struct world w;
	world_init(&w, 2, 2, 100);
	static const char *const names[] = {"b1", "b2", "b3", "b4"};
	static const char *const branches[] = {"br1", "br2", "br3", "br4"};
	for (int i = 1; i <= 4; i++) {
		add(&w, &(struct spec){names[i - 1], branches[i - 1], .init = BUILD_INIT_SUCCEEDED,
				       .desired = 1, .available = 1, .replicas = 1,
				       .created_ms = i * 1000, .last_scaled = 100 - i});
	}
	/* least recently scaled first: b4 (96), b3 (97) */
	expect(&w, NULL, 0, "stop b4, stop b3");
	/* b4's stop is on its way: one more to go */
	work(&w, "b4")->ops = WORK_SCALE;
	work(&w, "b4")->stopping = true;
	expect(&w, NULL, 0, "stop b3");
	/* b3 waits out a backoff: the next one goes */
	work(&w, "b3")->retry_at_ms = w.now + 1;
	expect(&w, NULL, 0, "stop b2");
	world_free(&w);
}

static void test_undeployer(void)
{
	struct world w;
	world_init(&w, 2, 10, 3);
	/* two stopped builds per branch: only the older ones are undeployable */
	add(&w, &(struct spec){"ba1", "a", .init = BUILD_INIT_SUCCEEDED, .created_ms = 1, .last_scaled = 10});
	add(&w, &(struct spec){"ba2", "a", .init = BUILD_INIT_SUCCEEDED, .created_ms = 2, .last_scaled = 11});
	add(&w, &(struct spec){"bb1", "b", .init = BUILD_INIT_FAILED, .created_ms = 3, .last_scaled = 5});
	add(&w, &(struct spec){"bb2", "b", .init = BUILD_INIT_SUCCEEDED, .created_ms = 4, .last_scaled = 1});
	add(&w, &(struct spec){"bc1", "c", .init = BUILD_INIT_SUCCEEDED, .created_ms = 5, .last_scaled = 2});
	/* 5 deployed, 3 allowed: bb1 (5) then ba1 (10); never a newest one */
	expect(&w, NULL, 0, "undeploy bb1, undeploy ba1");
	/* one undeploy is on its way: only one more */
	w.pending_undeploys = 1;
	work(&w, "bb1")->ops = WORK_UNDEPLOY;
	expect(&w, NULL, 0, "undeploy ba1");
	world_free(&w);
}

static void test_ref_cap(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	w.lim.max_deployed_per_ref = 2;
	add(&w, &(struct spec){"a1", "a", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .available = 1,
			       .created_ms = 1});
	add(&w, &(struct spec){"a2", "a", .init = BUILD_INIT_SUCCEEDED, .created_ms = 2});
	add(&w, &(struct spec){"a3", "a", .init = BUILD_INIT_SUCCEEDED, .created_ms = 3});
	add(&w, &(struct spec){"a4", "a", .created_ms = 4});
	/* PR 7 to branch a is a ref of its own */
	add(&w, &(struct spec){"p1", "a", .pr = 7, .init = BUILD_INIT_SUCCEEDED, .created_ms = 5});
	add(&w, &(struct spec){"p2", "a", .pr = 7, .init = BUILD_INIT_SUCCEEDED, .created_ms = 6});
	add(&w, &(struct spec){"p3", "a", .pr = 7, .init = BUILD_INIT_SUCCEEDED, .created_ms = 7});
	/* a new push on a: its two newest stay (the new one queued), the
	 * oldest go, started or not, before the queue is served */
	const char *a4[] = {"a4"};
	expect(&w, a4, 1, "undeploy a2, undeploy a1, initialize a4");
	/* an undeploy on its way counts as gone; a build held is left */
	work(&w, "a2")->ops = WORK_UNDEPLOY;
	expect(&w, a4, 1, "undeploy a1, initialize a4");
	work(&w, "a1")->ops = WORK_SCALE;
	expect(&w, a4, 1, "initialize a4");
	/* the PR's cap is looked at when one of its builds changes */
	const char *p2[] = {"p2"};
	expect(&w, p2, 1, "undeploy p1, initialize a4");
	/* off: nothing */
	w.lim.max_deployed_per_ref = 0;
	expect(&w, p2, 1, "initialize a4");
	world_free(&w);
}

static void test_debounce(void)
{
	struct world w;
	world_init(&w, 3, 10, 100);
	w.debounce_ms = 5000;
	w.wall = 10000;
	add(&w, &(struct spec){"a1", "a", .created_ms = 4000});
	add(&w, &(struct spec){"a2", "a", .created_ms = 6000});
	add(&w, &(struct spec){"b1", "b", .created_ms = 5500});
	add(&w, &(struct spec){"c1", "c", .created_ms = 1000});
	/* a1 is obsolete at once; b1 and a2 wait without holding a slot, c1
	 * goes; the pass says when the first wait ends */
	struct plan p;
	plan(&w, NULL, 0, &p);
	CHECK_STR(show(&p), "initialize c1, undeploy a1");
	CHECK_INT(p.wake_wall_ms, 10500);
	plan_free(&p);
	w.wall = 10600;
	expect(&w, NULL, 0, "initialize c1, undeploy a1, initialize b1");
	w.wall = 11000;
	expect(&w, NULL, 0, "initialize c1, undeploy a1, initialize b1, initialize a2");
	w.debounce_ms = 0;
	expect(&w, NULL, 0, "initialize c1, undeploy a1, initialize b1, initialize a2");
	world_free(&w);
}

/* While new builds' objects are being applied, at most
 * POLICY_OBJECTS_FIRST_INITS initializations run, except for builds created
 * POLICY_OBJECTS_FIRST_MS ago or more; a pass is asked for when that wait
 * ends. */
static void test_objects_first(void)
{
	struct world w;
	world_init(&w, 10, 10, 100);
	w.wall = 20000;
	add(&w, &(struct spec){"ba", "a", .created_ms = 19000});
	add(&w, &(struct spec){"bb", "b", .created_ms = 19100});
	add(&w, &(struct spec){"bc", "c", .created_ms = 19200});
	add(&w, &(struct spec){"bd", "d", .created_ms = 19300});
	w.objects_pending = 3;
	struct plan p;
	plan(&w, NULL, 0, &p);
	CHECK_STR(show(&p), "initialize ba, initialize bb");
	CHECK_INT(p.wake_wall_ms, 19200 + POLICY_OBJECTS_FIRST_MS);
	plan_free(&p);
	/* a running initialization counts */
	add(&w, &(struct spec){"bz", "z", .init = BUILD_INIT_STARTED, .created_ms = 500});
	job(&w, "bz", BUILD_JOB_INITIALIZE, BUILD_JOB_ACTIVE);
	expect(&w, NULL, 0, "initialize ba");
	/* a build waiting for longer goes, whatever the count (and takes
	 * the slot, oldest first) */
	add(&w, &(struct spec){"by", "y", .created_ms = 20000 - POLICY_OBJECTS_FIRST_MS});
	expect(&w, NULL, 0, "initialize by");
	/* the wait ends on the clock; the next wake is the next build's */
	w.wall = 19100 + POLICY_OBJECTS_FIRST_MS;
	plan(&w, NULL, 0, &p);
	CHECK_STR(show(&p), "initialize by, initialize ba, initialize bb");
	CHECK_INT(p.wake_wall_ms, 19200 + POLICY_OBJECTS_FIRST_MS);
	plan_free(&p);
	/* and when the objects are applied */
	w.wall = 20000;
	w.objects_pending = 0;
	expect(&w, NULL, 0,
	       "initialize by, initialize ba, initialize bb, initialize bc, initialize bd");
	world_free(&w);
}

static void test_idle_stopper(void)
{
	struct world w;
	world_init(&w, 2, 2, 100);
	w.lim.stop_idle_after_ms = 3600 * 1000;
	w.wall = 10000 * 1000;
	/* started at 5000 s, 6000 s and 9000 s: the first two are idle */
	add(&w, &(struct spec){"s1", "a", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .available = 1,
			       .created_ms = 1000, .last_scaled = 5000});
	add(&w, &(struct spec){"s2", "b", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .available = 1,
			       .created_ms = 2000, .last_scaled = 6000});
	add(&w, &(struct spec){"s3", "c", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .available = 1,
			       .created_ms = 3000, .last_scaled = 9000});
	struct plan p;
	plan(&w, NULL, 0, &p);
	/* and the stopper has nothing more to do (3 - 2 <= max_started) */
	CHECK_STR(show(&p), "stop s1, stop s2");
	CHECK_INT(p.wake_wall_ms, (9000 + 3600) * 1000);
	plan_free(&p);
	/* one in flight already: left alone, the next idle one still goes */
	work(&w, "s1")->ops = WORK_SCALE;
	expect(&w, NULL, 0, "stop s2");
	w.lim.stop_idle_after_ms = 0;
	work(&w, "s1")->ops = 0;
	expect(&w, NULL, 0, "stop s1");
	world_free(&w);
}

static void test_wants(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	add(&w, &(struct spec){"bs", "a", .init = BUILD_INIT_SUCCEEDED, .created_ms = 1});
	add(&w, &(struct spec){"bt", "b", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .available = 1,
			       .created_ms = 2});
	add(&w, &(struct spec){"bu", "c", .init = BUILD_INIT_FAILED, .created_ms = 3});
	add(&w, &(struct spec){"bv", "d", .init = BUILD_INIT_SUCCEEDED, .created_ms = 4});
	add(&w, &(struct spec){"bw", "e", .init = BUILD_INIT_SUCCEEDED, .created_ms = 5});
	work(&w, "bs")->want = WANT_START;
	work(&w, "bt")->want = WANT_STOP;
	work(&w, "bu")->want = WANT_START; /* cannot: failed */
	work(&w, "bv")->want_reset = true;
	work(&w, "bw")->want_undeploy = true;
	const char *dirty[] = {"bs", "bt", "bu", "bv", "bw"};
	expect(&w, dirty, 5,
	       "start bs, stop bt, want-dropped bu, reset bv, undeploy bw");
	/* held: a scale in flight, an undeploy in flight, a backoff */
	work(&w, "bs")->ops = WORK_SCALE;
	work(&w, "bw")->ops = WORK_UNDEPLOY;
	work(&w, "bv")->retry_at_ms = w.now + 10;
	expect(&w, dirty, 5, "stop bt, want-dropped bu");
	world_free(&w);
}

/* A build scaled up by someone else while still paused as deployed (the
 * Python runboat, an older runboat) would never get a pod: it is started,
 * which unpauses it. Paused with pods (paused by hand while running),
 * paused and stopped, or scaled up and not paused: nothing. */
static void test_paused_scaled_up(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	add(&w, &(struct spec){"bp", "a", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .paused = true,
			       .created_ms = 1});
	add(&w, &(struct spec){"bq", "b", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .replicas = 1,
			       .available = 1, .paused = true, .created_ms = 2});
	add(&w, &(struct spec){"br", "c", .init = BUILD_INIT_SUCCEEDED, .paused = true,
			       .created_ms = 3});
	add(&w, &(struct spec){"bs", "d", .init = BUILD_INIT_SUCCEEDED, .desired = 1,
			       .created_ms = 4});
	const char *dirty[] = {"bp", "bq", "br", "bs"};
	expect(&w, dirty, 4, "start bp");
	/* not again while that start is in flight */
	work(&w, "bp")->ops = WORK_SCALE;
	expect(&w, dirty, 4, "");
	world_free(&w);
}

/* A started build whose pod restarted max_restarts times is stopped, with
 * the crash-looping reason; below it, stopped, off, held or not dirty:
 * nothing. A start or stop asked wins. */
static void test_crash_looping(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	w.lim.max_restarts = 5;
	add(&w, &(struct spec){"bc", "a", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .created_ms = 1,
			       .restarts = 5});
	add(&w, &(struct spec){"bd", "b", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .available = 1,
			       .created_ms = 2, .restarts = 4});
	add(&w, &(struct spec){"be", "c", .init = BUILD_INIT_SUCCEEDED, .created_ms = 3,
			       .replicas = 1, .restarts = 9});
	const char *dirty[] = {"bc", "bd", "be"};
	struct plan p;
	plan(&w, dirty, 3, &p);
	CHECK_STR(show(&p), "stop bc");
	CHECK_STR(p.n ? p.v[0].reason : "(none)", POLICY_CRASH_REASON);
	plan_free(&p);
	/* only a dirty build is looked at */
	expect(&w, NULL, 0, "");
	/* one more restart: bd too */
	index_set_pods(w.idx, "bd", 5, true);
	expect(&w, dirty, 3, "stop bc, stop bd");
	/* the count survives a new Deployment object (it is not in it) */
	add(&w, &(struct spec){"bd", "b", .init = BUILD_INIT_SUCCEEDED, .desired = 1,
			       .created_ms = 2, .rv = "7"});
	expect(&w, dirty + 1, 1, "stop bd");
	/* a stop in flight, a backoff: left alone */
	work(&w, "bc")->ops = WORK_SCALE;
	work(&w, "bd")->retry_at_ms = w.now + 10;
	expect(&w, dirty, 3, "");
	work(&w, "bc")->ops = 0;
	work(&w, "bd")->retry_at_ms = 0;
	/* what a person asks wins */
	work(&w, "bc")->want = WANT_START;
	expect(&w, dirty, 2, "start bc, stop bd");
	work(&w, "bc")->want = WANT_NONE;
	/* off */
	w.lim.max_restarts = 0;
	expect(&w, dirty, 3, "");
	world_free(&w);
}

static void test_cleanup_steps(void)
{
	struct world w;
	world_init(&w, 2, 10, 100);
	add(&w, &(struct spec){"b1", "a", .deleting = true, .created_ms = 1});
	add(&w, &(struct spec){"b2", "b", .init = BUILD_INIT_SUCCEEDED, .desired = 1, .deleting = true,
			       .created_ms = 2});
	add(&w, &(struct spec){"b3", "c", .init = BUILD_INIT_SUCCEEDED, .deleting = true,
			       .created_ms = 3});
	add(&w, &(struct spec){"b4", "d", .deleting = true, .created_ms = 4});
	add(&w, &(struct spec){"b5", "e", .deleting = true, .created_ms = 5});
	add(&w, &(struct spec){"b6", "f", .deleting = true, .no_finalizer = true, .created_ms = 6});
	job(&w, "b1", BUILD_JOB_INITIALIZE, BUILD_JOB_ACTIVE);
	job(&w, "b4", BUILD_JOB_CLEANUP, BUILD_JOB_FAILED);
	job(&w, "b5", BUILD_JOB_CLEANUP, BUILD_JOB_SUCCEEDED);
	/* a failed cleanup job is deleted to try again, POLICY_CLEANUP_RETRIES
	 * times; then the failure is reported, once */
	expect(&w, NULL, 0,
	       "clean:kill-init b1, clean:scale-down b2, clean:apply b3, clean:retry b4, "
	       "clean:delete b5");
	work(&w, "b4")->cleanup_retries = POLICY_CLEANUP_RETRIES;
	expect(&w, NULL, 0,
	       "clean:kill-init b1, clean:scale-down b2, clean:apply b3, cleanup-failed b4, "
	       "clean:delete b5");
	/* forced: every object goes, whatever the jobs */
	work(&w, "b1")->force_undeploy = true;
	work(&w, "b4")->force_undeploy = true;
	expect(&w, NULL, 0,
	       "clean:delete b1, clean:scale-down b2, clean:apply b3, clean:delete b4, "
	       "clean:delete b5");
	work(&w, "b1")->force_undeploy = false;
	work(&w, "b4")->force_undeploy = false;
	work(&w, "b4")->cleanup_failed_reported = true;
	work(&w, "b5")->cleaned = true;
	work(&w, "b1")->ops = WORK_CLEAN;
	work(&w, "b2")->ops = WORK_DEPLOY; /* objects being applied come first */
	expect(&w, NULL, 0, "clean:apply b3");
	world_free(&w);
}

/* ---- the model ---- */

#define NB 24

struct mbuild {
	struct spec s;
	char name[24], branch[24];
	bool has_init_job, init_job_deleting, has_cleanup_job;
	enum build_job_state init_state, cleanup_state;
	const struct build *b;
};

static enum build_status status_of(const struct mbuild *m)
{
	return m->b->status;
}

static const struct build_work *mwork(struct world *w, const struct mbuild *m)
{
	return strmap_get(&w->work, m->name);
}

static bool mheld(struct world *w, const struct mbuild *m, unsigned ops)
{
	return policy_held(mwork(w, m), m->b, ops, w->now);
}

/* Is m the newest (created, then name) non-deleting build of its group? */
static bool newest(struct mbuild *all, size_t n, const struct mbuild *m)
{
	for (size_t i = 0; i < n; i++) {
		const struct mbuild *o = &all[i];
		if (o == m || o->s.deleting || strcmp(o->branch, m->branch) != 0 || o->s.pr != m->s.pr)
			continue;
		if (o->s.created_ms > m->s.created_ms ||
		    (o->s.created_ms == m->s.created_ms && strcmp(o->name, m->name) > 0))
			return false;
	}
	return true;
}

/* Has m's group a build deployed strictly after it? (Equal times: neither
 * is newer, both are initialized.) */
static bool obsolete(struct mbuild *all, size_t n, const struct mbuild *m)
{
	for (size_t i = 0; i < n; i++) {
		const struct mbuild *o = &all[i];
		if (o != m && !o->s.deleting && strcmp(o->branch, m->branch) == 0 && o->s.pr == m->s.pr &&
		    o->s.created_ms > m->s.created_ms)
			return true;
	}
	return false;
}

static int by_created(const void *a, const void *b)
{
	const struct mbuild *x = *(const struct mbuild *const *)a, *y = *(const struct mbuild *const *)b;
	if (x->s.created_ms != y->s.created_ms)
		return x->s.created_ms < y->s.created_ms ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int by_scaled(const void *a, const void *b)
{
	const struct mbuild *x = *(const struct mbuild *const *)a, *y = *(const struct mbuild *const *)b;
	int64_t sx = build_last_scaled(x->b), sy = build_last_scaled(y->b);
	if (sx != sy)
		return sx < sy ? -1 : 1;
	return by_created(a, b);
}

struct mplan {
	char lines[NB * 4][64];
	size_t n;
	bool acted[NB];
};

static void madd(struct mplan *p, struct mbuild *all, const struct mbuild *m, enum action_kind k,
		 int to)
{
	snprintf(p->lines[p->n++], 64, "%s %s%s%s", action_kind_str(k), m->name,
		 k == ACTION_INIT_STATUS ? "->" : "",
		 k == ACTION_INIT_STATUS ? build_init_status_str((enum build_init_status)to) : "");
	if (k != ACTION_WANT_DROPPED && k != ACTION_CLEANUP_FAILED)
		p->acted[m - all] = true;
}

/* The rules of DESIGN.md "Lifecycle", written plainly over arrays. */
static void model(struct world *w, struct mbuild *all, size_t n, const size_t *dirty,
		  size_t n_dirty, struct mplan *p)
{
	memset(p, 0, sizeof *p);
	for (size_t d = 0; d < n_dirty; d++) {
		struct mbuild *m = &all[dirty[d]];
		const struct build_work *bw = mwork(w, m);
		if (m->s.deleting || p->acted[m - all])
			continue;
		if (bw && bw->want_undeploy) {
			if (!mheld(w, m, WORK_UNDEPLOY))
				madd(p, all, m, ACTION_UNDEPLOY, 0);
			continue;
		}
		if (mheld(w, m, WORK_PATCH | WORK_RESET | WORK_INIT | WORK_SCALE) ||
		    (bw && bw->stale_rv[0] && strcmp(bw->stale_rv, m->b->resource_version) == 0))
			continue;
		if (bw && bw->want_reset) {
			madd(p, all, m, ACTION_RESET, 0);
			continue;
		}
		bool queued = m->s.init == BUILD_INIT_TODO || m->s.init == BUILD_INIT_STARTED;
		if (bw && bw->init_refused && queued) {
			madd(p, all, m, ACTION_INIT_STATUS, BUILD_INIT_FAILED);
			continue;
		}
		if (queued) {
			bool job = m->has_init_job && !m->init_job_deleting;
			int to = -1;
			if (!job)
				to = m->s.init == BUILD_INIT_STARTED ? BUILD_INIT_TODO : -1;
			else if (m->init_state == BUILD_JOB_ACTIVE)
				to = m->s.init == BUILD_INIT_TODO ? BUILD_INIT_STARTED : -1;
			else if (m->init_state == BUILD_JOB_SUCCEEDED)
				to = BUILD_INIT_SUCCEEDED;
			else if (m->init_state == BUILD_JOB_FAILED)
				to = BUILD_INIT_FAILED;
			if (to >= 0) {
				madd(p, all, m, ACTION_INIT_STATUS, to);
				continue;
			}
		}
		if (bw && bw->want != WANT_NONE) {
			if (m->s.init != BUILD_INIT_SUCCEEDED)
				madd(p, all, m, ACTION_WANT_DROPPED, 0);
			else
				madd(p, all, m, bw->want == WANT_START ? ACTION_START : ACTION_STOP, 0);
		} else if (w->lim.max_restarts && m->s.desired > 0 && m->s.init == BUILD_INIT_SUCCEEDED &&
			   (unsigned)m->s.restarts >= w->lim.max_restarts) {
			madd(p, all, m, ACTION_STOP, 0); /* crash-looping */
		}
	}
	struct mbuild *order[NB];
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (all[i].s.deleting)
			order[k++] = &all[i];
	qsort(order, k, sizeof *order, by_created);
	for (size_t i = 0; i < k; i++) {
		struct mbuild *m = order[i];
		const struct build_work *bw = mwork(w, m);
		if (p->acted[m - all])
			continue;
		if (bw && bw->want != WANT_NONE)
			madd(p, all, m, ACTION_WANT_DROPPED, 0);
		if (m->s.no_finalizer || (bw && bw->cleaned) ||
		    mheld(w, m, WORK_CLEAN | WORK_RESET | WORK_INIT | WORK_SCALE | WORK_PATCH |
					WORK_DEPLOY))
			continue;
		if (bw && bw->force_undeploy)
			madd(p, all, m, ACTION_CLEAN_DELETE, 0);
		else if (m->has_init_job && !m->init_job_deleting)
			madd(p, all, m, ACTION_CLEAN_KILL_INIT, 0);
		else if (m->s.desired > 0)
			madd(p, all, m, ACTION_CLEAN_SCALE_DOWN, 0);
		else if (!m->has_cleanup_job)
			madd(p, all, m, ACTION_CLEAN_APPLY, 0);
		else if (m->cleanup_state == BUILD_JOB_FAILED) {
			if (!bw || bw->cleanup_retries < POLICY_CLEANUP_RETRIES)
				madd(p, all, m, ACTION_CLEAN_RETRY, 0);
			else if (!bw->cleanup_failed_reported)
				madd(p, all, m, ACTION_CLEANUP_FAILED, 0);
		} else if (m->cleanup_state == BUILD_JOB_SUCCEEDED)
			madd(p, all, m, ACTION_CLEAN_DELETE, 0);
	}
	/* the per-branch cap: the refs of the dirty builds, in dirty order */
	if (w->lim.max_deployed_per_ref) {
		bool seen[NB] = {0};
		for (size_t d = 0; d < n_dirty; d++) {
			struct mbuild *m = &all[dirty[d]];
			if (m->s.deleting || seen[dirty[d]])
				continue;
			/* the ref's builds, newest first */
			size_t r = 0;
			for (size_t i = 0; i < n; i++)
				if (!all[i].s.deleting && strcmp(all[i].branch, m->branch) == 0 &&
				    all[i].s.pr == m->s.pr) {
					order[r++] = &all[i];
					seen[i] = true;
				}
			qsort(order, r, sizeof *order, by_created);
			size_t kept = 0;
			for (size_t i = r; i-- > 0;) {
				struct mbuild *o = order[i];
				const struct build_work *bw = mwork(w, o);
				if (bw && (bw->want_undeploy || (bw->ops & WORK_UNDEPLOY)))
					continue;
				if (kept < w->lim.max_deployed_per_ref) {
					kept++;
					continue;
				}
				if (p->acted[o - all] || mheld(w, o, WORK_UNDEPLOY | WORK_SCALE | WORK_RESET))
					continue;
				madd(p, all, o, ACTION_UNDEPLOY, 0);
			}
		}
	}
	/* initializer */
	size_t used = 0;
	k = 0;
	for (size_t i = 0; i < n; i++) {
		struct mbuild *m = &all[i];
		if (m->s.deleting)
			continue;
		if (m->s.init == BUILD_INIT_STARTED)
			used++;
		if (m->s.init == BUILD_INIT_TODO)
			order[k++] = m;
	}
	qsort(order, k, sizeof *order, by_created);
	bool slot[NB] = {0};
	for (size_t i = 0; i < k; i++) {
		struct mbuild *m = order[i];
		const struct build_work *bw = mwork(w, m);
		slot[i] = (m->has_init_job && !m->init_job_deleting) ||
			  (bw && ((bw->ops & WORK_INIT) || (bw->init_applied && !m->has_init_job)));
		used += slot[i];
	}
	for (size_t i = 0; i < k && used < w->lim.max_initializing; i++) {
		struct mbuild *m = order[i];
		const struct build_work *bw = mwork(w, m);
		if (p->acted[m - all] || slot[i] || mheld(w, m, WORK_DEPLOY | WORK_RESET | WORK_UNDEPLOY | WORK_PATCH) ||
		    (bw && (bw->want_undeploy || bw->init_refused || bw->rest_pending)))
			continue;
		if (obsolete(all, n, m)) {
			madd(p, all, m, ACTION_UNDEPLOY, 0);
			continue;
		}
		if (w->debounce_ms && m->s.created_ms + w->debounce_ms > w->wall)
			continue;
		if (w->objects_pending && used >= POLICY_OBJECTS_FIRST_INITS &&
		    m->s.created_ms + POLICY_OBJECTS_FIRST_MS > w->wall)
			continue;
		madd(p, all, m, ACTION_INITIALIZE, 0);
		used++;
	}
	/* stopper */
	size_t running = 0;
	k = 0;
	for (size_t i = 0; i < n; i++) {
		enum build_status st = status_of(&all[i]);
		if (st == BUILD_STARTED || st == BUILD_STARTING)
			running++;
		if (st == BUILD_STARTED)
			order[k++] = &all[i];
	}
	qsort(order, k, sizeof *order, by_scaled);
	/* idle stopper, least recently scaled first, up to the first in use */
	size_t idle_stops = 0;
	for (size_t i = 0; w->lim.stop_idle_after_ms && i < k; i++) {
		struct mbuild *m = order[i];
		if (build_last_scaled(m->b) * 1000 + w->lim.stop_idle_after_ms > w->wall)
			break;
		if (m->s.desired == 0 || p->acted[m - all] || mheld(w, m, WORK_SCALE | WORK_RESET))
			continue;
		madd(p, all, m, ACTION_STOP, 0);
		idle_stops++;
	}
	running = running > idle_stops ? running - idle_stops : 0;
	if (running > w->lim.max_started) {
		for (size_t i = 0; i < k; i++) {
			const struct build_work *bw = mwork(w, order[i]);
			if (bw && bw->stopping && (bw->ops & WORK_SCALE) && running > 0)
				running--;
		}
		for (size_t i = 0; i < k && running > w->lim.max_started; i++) {
			struct mbuild *m = order[i];
			if (m->s.desired == 0 || p->acted[m - all] || mheld(w, m, WORK_SCALE | WORK_RESET))
				continue;
			madd(p, all, m, ACTION_STOP, 0);
			running--;
		}
	}
	/* undeployer */
	size_t deployed = 0;
	for (size_t i = 0; i < n; i++)
		deployed += !all[i].s.deleting;
	deployed = deployed > w->pending_undeploys ? deployed - w->pending_undeploys : 0;
	for (size_t i = 0; i < n; i++) {
		const struct build_work *bw = mwork(w, &all[i]);
		if (p->acted[i] && !all[i].s.deleting && !(bw && (bw->want_undeploy || (bw->ops & WORK_UNDEPLOY))))
			for (size_t j = 0; j < p->n; j++) {
				char want[64];
				snprintf(want, sizeof want, "undeploy %s", all[i].name);
				if (strcmp(p->lines[j], want) == 0 && deployed > 0)
					deployed--;
			}
	}
	k = 0;
	for (size_t i = 0; i < n; i++) {
		enum build_status st = status_of(&all[i]);
		if (!all[i].s.deleting && all[i].s.init != BUILD_INIT_TODO &&
		    (st == BUILD_STOPPED || st == BUILD_STOPPING || st == BUILD_FAILED) &&
		    !newest(all, n, &all[i]))
			order[k++] = &all[i];
	}
	qsort(order, k, sizeof *order, by_scaled);
	for (size_t i = 0; i < k && deployed > w->lim.max_deployed; i++) {
		struct mbuild *m = order[i];
		const struct build_work *bw = mwork(w, m);
		if (p->acted[m - all] || mheld(w, m, WORK_UNDEPLOY | WORK_SCALE | WORK_RESET) ||
		    (bw && bw->want_undeploy))
			continue;
		madd(p, all, m, ACTION_UNDEPLOY, 0);
		deployed--;
	}
}

static uint64_t rnd(uint64_t *s, uint64_t n)
{
	return (uint64_t)(backoff_random(s) * (double)n);
}

static void random_world(struct world *w, uint64_t *s, struct mbuild *all, size_t n)
{
	/* max_initializing above 2 too: objects first caps it at 2 */
	world_init(w, 1 + rnd(s, 5), rnd(s, 4), 2 + rnd(s, 8));
	w->lim.max_deployed_per_ref = rnd(s, 4); /* 0: no cap */
	w->lim.max_restarts = rnd(s, 3) ? 0 : 1 + (unsigned)rnd(s, 4); /* 0: off */
	w->debounce_ms = rnd(s, 3) ? 0 : 100 * (int64_t)rnd(s, 20);
	w->lim.stop_idle_after_ms = rnd(s, 3) ? 0 : 1000 * (int64_t)rnd(s, 20);
	w->wall = 100 * (int64_t)rnd(s, 40);
	/* builds' objects being applied; and sometimes every build has waited
	 * for them long enough */
	w->objects_pending = rnd(s, 3) ? 0 : 1 + rnd(s, 3);
	if (w->objects_pending && rnd(s, 4) == 0)
		w->wall += POLICY_OBJECTS_FIRST_MS - 100 * (int64_t)rnd(s, 40);
	w->pending_undeploys = rnd(s, 3);
	for (size_t i = 0; i < n; i++) {
		struct mbuild *m = &all[i];
		memset(m, 0, sizeof *m);
		snprintf(m->name, sizeof m->name, "b%02zu", i);
		snprintf(m->branch, sizeof m->branch, "br%d", (int)rnd(s, 4));
		m->s.name = m->name;
		m->s.branch = m->branch;
		m->s.pr = rnd(s, 3) == 0 ? 1 + (int)rnd(s, 2) : 0;
		m->s.init = (enum build_init_status)rnd(s, 4);
		m->s.desired = m->s.init == BUILD_INIT_SUCCEEDED ? (int)rnd(s, 2) : 0;
		m->s.available = m->s.desired && rnd(s, 3) ? 1 : 0;
		m->s.replicas = rnd(s, 4) == 0;
		m->s.created_ms = (int64_t)rnd(s, 40) * 100; /* ties on purpose */
		m->s.last_scaled = rnd(s, 2) ? (int64_t)rnd(s, 20) : 0;
		m->s.deleting = rnd(s, 6) == 0;
		m->s.no_finalizer = rnd(s, 8) == 0;
		m->s.rv = rnd(s, 2) ? "1" : "2";
		m->s.restarts = rnd(s, 3) ? 0 : (int)rnd(s, 7);
		m->b = add(w, &m->s);
		if (rnd(s, 3) == 0) {
			m->has_init_job = true;
			m->init_state = (enum build_job_state)rnd(s, 4);
			m->init_job_deleting = rnd(s, 5) == 0;
		}
		if (m->s.deleting && rnd(s, 2)) {
			m->has_cleanup_job = true;
			m->cleanup_state = (enum build_job_state)rnd(s, 4);
		}
	}
	/* jobs last: an upsert of a build would not change them, but keep it plain */
	for (size_t i = 0; i < n; i++) {
		struct mbuild *m = &all[i];
		if (m->has_init_job) {
			struct build_job j = {.kind = BUILD_JOB_INITIALIZE, .state = m->init_state,
					      .deleting = m->init_job_deleting, .created = 1};
			snprintf(j.build, sizeof j.build, "%s", m->name);
			snprintf(j.name, sizeof j.name, "%s-initialize", m->name);
			index_set_job(w->idx, &j);
		}
		if (m->has_cleanup_job) {
			job(w, m->name, BUILD_JOB_CLEANUP, m->cleanup_state);
		}
		m->b = index_find(w->idx, m->name);
		if (rnd(s, 2)) {
			struct build_work *bw = work(w, m->name);
			static const unsigned bits[] = {WORK_DEPLOY, WORK_INIT, WORK_PATCH, WORK_SCALE,
							WORK_RESET, WORK_UNDEPLOY, WORK_CLEAN};
			for (size_t b = 0; b < ARRAY_SIZE(bits); b++)
				if (rnd(s, 8) == 0)
					bw->ops |= bits[b];
			if (rnd(s, 5) == 0)
				bw->retry_at_ms = w->now + (rnd(s, 2) ? 1 : 0) - rnd(s, 2);
			if (rnd(s, 8) == 0)
				snprintf(bw->stale_rv, sizeof bw->stale_rv, "%s", rnd(s, 2) ? "1" : "2");
			if (rnd(s, 10) == 0)
				snprintf(bw->blocked_rv, sizeof bw->blocked_rv, "%s", rnd(s, 2) ? "1" : "2");
			bw->init_applied = rnd(s, 6) == 0;
			bw->stopping = rnd(s, 3) == 0;
			bw->cleaned = rnd(s, 8) == 0;
			bw->cleanup_failed_reported = rnd(s, 2);
			bw->cleanup_retries = (unsigned)rnd(s, POLICY_CLEANUP_RETRIES + 2);
			bw->force_undeploy = rnd(s, 8) == 0;
			bw->want = (enum work_want)rnd(s, 3);
			bw->want_reset = rnd(s, 8) == 0;
			bw->want_undeploy = rnd(s, 8) == 0;
			if (rnd(s, 8) == 0)
				bw->init_refused = strdup("refused");
		}
	}
}

/* What holds whatever the rules' details. */
static void invariants(struct world *w, struct mbuild *all, size_t n, const struct plan *p)
{
	size_t calls[NB] = {0};
	size_t initializing = 0, inits = 0, slots_before = 0;
	for (size_t i = 0; i < n; i++) {
		const struct build_work *bw = mwork(w, &all[i]);
		if (all[i].s.deleting)
			continue;
		if (all[i].s.init == BUILD_INIT_STARTED)
			slots_before++;
		else if (all[i].s.init == BUILD_INIT_TODO &&
			 ((all[i].has_init_job && !all[i].init_job_deleting) ||
			  (bw && ((bw->ops & WORK_INIT) || (bw->init_applied && !all[i].has_init_job)))))
			slots_before++;
	}
	for (size_t i = 0; i < p->n; i++) {
		const struct action *a = &p->v[i];
		size_t at = (size_t)(a->b->name[1] - '0') * 10 + (size_t)(a->b->name[2] - '0');
		if (a->kind != ACTION_WANT_DROPPED && a->kind != ACTION_CLEANUP_FAILED)
			calls[at]++;
		if (a->kind == ACTION_INITIALIZE) {
			inits++;
			CHECK(a->b->init_status == BUILD_INIT_TODO && !a->b->deleting);
			CHECK(!obsolete(all, n, &all[at]));
		}
		const struct build_work *bw = mwork(w, &all[at]);
		/* nothing starts a call that conflicts with one in flight */
		if (a->kind == ACTION_START || a->kind == ACTION_STOP)
			CHECK(!(bw && (bw->ops & WORK_SCALE)));
		if (a->kind == ACTION_UNDEPLOY)
			CHECK(!(bw && (bw->ops & WORK_UNDEPLOY)) && !a->b->deleting);
		if (a->kind == ACTION_INITIALIZE)
			CHECK(!(bw && (bw->ops & WORK_INIT)) && !(bw && w->now < bw->retry_at_ms));
	}
	initializing = slots_before + inits;
	if (slots_before <= w->lim.max_initializing)
		CHECK(initializing <= w->lim.max_initializing);
	for (size_t i = 0; i < n; i++)
		CHECK(calls[i] <= 1);
}

static void test_model(void)
{
	uint64_t seed = 0x5eed;
	struct mbuild all[NB];
	for (int round = 0; round < 3000; round++) {
		struct world w;
		size_t n = 1 + rnd(&seed, NB);
		random_world(&w, &seed, all, n);
		size_t dirty[NB], nd = 0;
		const char *names[NB];
		for (size_t i = 0; i < n; i++)
			if (rnd(&seed, 3)) {
				dirty[nd] = i;
				names[nd++] = all[i].name;
			}
		struct plan p;
		plan(&w, names, nd, &p);
		struct mplan m;
		model(&w, all, n, dirty, nd, &m);
		char want[4096] = "";
		for (size_t i = 0; i < m.n; i++) {
			strncat(want, i ? ", " : "", sizeof want - strlen(want) - 1);
			strncat(want, m.lines[i], sizeof want - strlen(want) - 1);
		}
		int before = unit_failures;
		CHECK_STR(show(&p), want);
		invariants(&w, all, n, &p);
		if (unit_failures != before) {
			fprintf(stderr, "round %d: %zu builds, limits %zu/%zu/%zu/%zu\n", round, n,
				w.lim.max_initializing, w.lim.max_started, w.lim.max_deployed,
				w.lim.max_deployed_per_ref);
			plan_free(&p);
			world_free(&w);
			return;
		}
		plan_free(&p);
		world_free(&w);
	}
}

int main(void)
{
	RUN(test_initializer_limit_and_order);
	RUN(test_initializer_in_flight_and_applied);
	RUN(test_initializer_waits_for_the_rest);
	RUN(test_backoff_does_not_block_the_queue);
	RUN(test_obsolete_queued_build);
	RUN(test_init_job_events);
	RUN(test_init_refused);
	RUN(test_stopper);
	RUN(test_undeployer);
	RUN(test_ref_cap);
	RUN(test_debounce);
	RUN(test_objects_first);
	RUN(test_idle_stopper);
	RUN(test_wants);
	RUN(test_paused_scaled_up);
	RUN(test_cleanup_steps);
	RUN(test_crash_looping);
	RUN(test_model);
	return UNIT_DONE();
}
