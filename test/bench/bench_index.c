/* The build index at scale: 100,000 builds, then 1,000,000 random status
 * updates, removals and the queries the API and the controller make.
 * Prints nanoseconds per operation and the peak RSS. Only the index calls
 * are timed (builds are prepared outside the timed sections), in CPU time
 * of the thread, so that a busy machine inflates the figures less. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "build.h"
#include "index.h"
#include "util.h"

#define NBUILDS 100000
#define NUPDATES 1000000
#define BATCH 1000
#define NREPOS 200
#define NBRANCHES 5

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint64_t rnd64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned rnd(unsigned n)
{
	return (unsigned)(rnd64() % n);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static long rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static const char *BRANCHES[NBRANCHES] = {"14.0", "15.0", "16.0", "17.0", "feature/long-lived"};
static char repos[NREPOS][32];
static char names[NBUILDS][40];
static struct build_commit commits[NBUILDS];
static char shas[NBUILDS][41];
static int64_t created[NBUILDS];

static struct build *make(int i, enum build_init_status init, int desired, int replicas,
			  int available, int64_t last_scaled, bool deleting)
{
	char dname[48];
	snprintf(dname, sizeof(dname), "%s-odoo", names[i]);
	struct build *b = build_new(names[i], dname, &commits[i], "1", "uid");
	b->init_status = init;
	b->desired_replicas = desired;
	b->replicas = replicas;
	b->available_replicas = available;
	b->created = created[i];
	b->last_scaled = last_scaled;
	b->deleting = deleting;
	b->has_finalizer = true;
	b->status = build_derive_status(b);
	return b;
}

static struct build *random_state(int i)
{
	switch (rnd(8)) {
	case 0: return make(i, BUILD_INIT_TODO, 0, 0, 0, 0, false);
	case 1: return make(i, BUILD_INIT_STARTED, 0, 0, 0, 0, false);
	case 2: return make(i, BUILD_INIT_FAILED, 0, 0, 0, 0, false);
	case 3: return make(i, BUILD_INIT_SUCCEEDED, 1, 1, 1, 1700000000 + rnd(1000000), false);
	case 4: return make(i, BUILD_INIT_SUCCEEDED, 1, 0, 0, 1700000000 + rnd(1000000), false);
	case 5: return make(i, BUILD_INIT_SUCCEEDED, 0, 1, 0, 1700000000 + rnd(1000000), false);
	case 6: return make(i, BUILD_INIT_SUCCEEDED, 0, 0, 0, 1700000000 + rnd(1000000), false);
	default: return make(i, BUILD_INIT_SUCCEEDED, 0, 0, 0, 1700000000 + rnd(1000000),
			     rnd(8) == 0);
	}
}

static unsigned long events;

static void on_event(enum index_event ev, const struct build *b, void *data)
{
	UNUSED(ev);
	UNUSED(b);
	UNUSED(data);
	events++;
}

static void report(const char *what, uint64_t ns, unsigned long n)
{
	printf("%-44s %10lu ops %9.1f ns/op\n", what, n, (double)ns / (double)n);
}

int main(void)
{
	for (int r = 0; r < NREPOS; r++)
		snprintf(repos[r], sizeof(repos[r]), "oca/repo-%03d", r);
	for (int i = 0; i < NBUILDS; i++) {
		snprintf(names[i], sizeof(names[i]), "b%016" PRIx64 "%016" PRIx64, rnd64(), rnd64());
		for (int k = 0; k < 40; k++)
			shas[i][k] = "0123456789abcdef"[rnd(16)];
		shas[i][40] = '\0';
		commits[i] = (struct build_commit){
			.repo = repos[rnd(NREPOS)],
			.target_branch = BRANCHES[rnd(NBRANCHES)],
			.pr = rnd(3) ? (int)rnd(2000) + 1 : 0,
			.git_commit = shas[i],
		};
		created[i] = 1600000000 + rnd(100000000);
	}
	long rss0 = rss_kb();

	struct index *idx = index_new();
	index_listen(idx, on_event, NULL);
	struct build **batch = xmalloc(BATCH * sizeof(*batch));
	uint64_t ns = 0;

	/* insert */
	for (int i = 0; i < NBUILDS; i += BATCH) {
		for (int k = 0; k < BATCH; k++)
			batch[k] = random_state(i + k);
		uint64_t t0 = now_ns();
		for (int k = 0; k < BATCH; k++)
			index_upsert(idx, batch[k]);
		ns += now_ns() - t0;
	}
	report("upsert (new build)", ns, NBUILDS);
	long rss_loaded = rss_kb();

	/* random status updates */
	unsigned long changed = 0;
	ns = 0;
	for (int i = 0; i < NUPDATES; i += BATCH) {
		int which[BATCH];
		for (int k = 0; k < BATCH; k++) {
			which[k] = (int)rnd(NBUILDS);
			batch[k] = random_state(which[k]);
		}
		uint64_t t0 = now_ns();
		for (int k = 0; k < BATCH; k++)
			changed += (unsigned long)index_upsert(idx, batch[k]);
		ns += now_ns() - t0;
	}
	report("upsert (status update)", ns, NUPDATES);
	printf("  (%lu of them visible changes)\n", changed);

	/* unchanged re-upserts (a relist, resourceVersion bumps) */
	ns = 0;
	for (int i = 0; i < NBUILDS; i += BATCH) {
		for (int k = 0; k < BATCH; k++)
			batch[k] = build_dup(index_find(idx, names[i + k]));
		uint64_t t0 = now_ns();
		for (int k = 0; k < BATCH; k++)
			index_upsert(idx, batch[k]);
		ns += now_ns() - t0;
	}
	report("upsert (nothing visible changed)", ns, NBUILDS);

	/* lookups */
	volatile size_t sink = 0;
	uint64_t t0 = now_ns();
	for (int i = 0; i < NUPDATES; i++)
		sink += index_find(idx, names[rnd(NBUILDS)]) != NULL;
	report("index_find", now_ns() - t0, NUPDATES);
	t0 = now_ns();
	for (int i = 0; i < NUPDATES; i++) {
		int k = (int)rnd(NBUILDS);
		sink += index_find_commit(idx, commits[k].repo, commits[k].target_branch, commits[k].pr,
					  commits[k].git_commit) != NULL;
	}
	report("index_find_commit", now_ns() - t0, NUPDATES);
	t0 = now_ns();
	for (int i = 0; i < NUPDATES; i++) {
		int k = (int)rnd(NBUILDS);
		sink += index_newest(idx, commits[k].repo, commits[k].target_branch, commits[k].pr) !=
			NULL;
	}
	report("index_newest", now_ns() - t0, NUPDATES);
	t0 = now_ns();
	for (int i = 0; i < NUPDATES; i++)
		sink += index_count_status(idx, (enum build_status)(i % BUILD_STATUS_COUNT)) +
			index_count_init(idx, BUILD_INIT_STARTED) + index_deployed(idx);
	report("counts (3 per op)", now_ns() - t0, NUPDATES);
	t0 = now_ns();
	for (int i = 0; i < NUPDATES; i++)
		sink += index_next_to_initialize(idx, NULL) != NULL;
	report("oldest to initialize", now_ns() - t0, NUPDATES);
	t0 = now_ns();
	for (int i = 0; i < NUPDATES; i++)
		sink += index_next_started(idx, NULL) != NULL;
	report("least recently scaled started", now_ns() - t0, NUPDATES);
	t0 = now_ns();
	for (int i = 0; i < NUPDATES; i++)
		sink += index_next_undeployable(idx, NULL) != NULL;
	report("oldest undeployable", now_ns() - t0, NUPDATES);
	unsigned long walked = 0;
	t0 = now_ns();
	for (const struct build *b = index_next_undeployable(idx, NULL); b;
	     b = index_next_undeployable(idx, b))
		walked++;
	report("walk of the undeployable queue (per build)", now_ns() - t0, walked ? walked : 1);

	const struct build **v;
	size_t listed = 0;
	t0 = now_ns();
	for (int i = 0; i < 1000; i++) {
		struct index_filter f = {.repo = repos[rnd(NREPOS)]};
		listed += index_list(idx, &f, INDEX_SORT_DESC, &v);
		free(v);
	}
	report("index_list repo=X (~500 builds)", now_ns() - t0, 1000);
	t0 = now_ns();
	for (int i = 0; i < 1000; i++) {
		struct index_filter f = {.repo = repos[rnd(NREPOS)], .branch = BRANCHES[rnd(NBRANCHES)]};
		listed += index_list(idx, &f, INDEX_SORT_DESC, &v);
		free(v);
	}
	report("index_list repo=X branch=Y", now_ns() - t0, 1000);
	t0 = now_ns();
	for (int i = 0; i < 10; i++) {
		listed += index_list(idx, NULL, INDEX_SORT_DESC, &v);
		free(v);
	}
	report("index_list everything (100k builds)", now_ns() - t0, 10);
	const char **rl;
	t0 = now_ns();
	for (int i = 0; i < 1000; i++) {
		listed += index_repos(idx, &rl);
		free(rl);
	}
	report("index_repos (200 repos)", now_ns() - t0, 1000);

	/* removals */
	t0 = now_ns();
	for (int i = 0; i < NBUILDS; i++)
		index_remove(idx, names[i]);
	report("index_remove", now_ns() - t0, NBUILDS);

	printf("events delivered: %lu (sink %zu, listed %zu)\n", events, (size_t)sink, listed);
	printf("peak RSS: %ld KiB before, %ld KiB with 100k builds loaded, %ld KiB at the end\n",
	       rss0, rss_loaded, rss_kb());
	printf("  => about %ld bytes per build (build + index overhead)\n",
	       (rss_loaded - rss0) * 1024 / NBUILDS);
	free(batch);
	index_free(idx);
	return 0;
}
