/* The feed (informers to index) on detached informers, fed lists as the
 * apiserver would send them (informer_replace): Deployments become builds
 * (and a Deployment that no longer decodes takes its build out), Jobs
 * become the builds' jobs, the Odoo pods' restarts and CrashLoopBackOff
 * reach the build (Job pods and terminating pods do not), pods listed
 * before their Deployment count once it comes, and "synced" is told once,
 * after the third informer. */
#include "feed.h"

#include <jansson.h>

#include "build.h"
#include "index.h"
#include "informer.h"
#include "k8s_objects.h"
#include "unit.h"
#include "util.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"
#define B1 "b0123456789abcdef0123456789abcdef"
#define B2 "bfedcba9876543210fedcba9876543210"

static json_t *job(const char *build, const char *kind, const char *rv, int active)
{
	json_t *j = json_pack("{s:s,s:s,s:{s:s++,s:s,s:s,s:s,s:s,s:{s:s,s:s}},s:{s:i}}", "kind",
			      "Job", "apiVersion", "batch/v1", "metadata", "name", build, "-", kind,
			      "namespace", "ns", "uid", "0f9e8d7c-6b5a-4321-9876-543210fedcba",
			      "resourceVersion", rv, "creationTimestamp", "2021-11-28T10:21:00Z",
			      "labels", BUILD_LABEL, build, BUILD_LABEL_JOB_KIND, kind, "status",
			      "active", active);
	if (!j)
		abort();
	return j;
}

/* A pod of build at resourceVersion rv: job_kind NULL for an Odoo pod;
 * restarts of its two containers; waiting: the second one's waiting reason,
 * or NULL. */
static json_t *pod(const char *name, const char *rv, const char *build, const char *job_kind,
		   int r1, int r2, const char *waiting, bool terminating)
{
	json_t *labels = json_pack("{s:s}", BUILD_LABEL, build);
	if (job_kind)
		json_object_set_new(labels, BUILD_LABEL_JOB_KIND, json_string(job_kind));
	json_t *second = json_pack("{s:s,s:i}", "name", "b", "restartCount", r2);
	if (waiting)
		json_object_set_new(second, "state", json_pack("{s:{s:s}}", "waiting", "reason", waiting));
	json_t *p = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:o},s:{s:[{s:s,s:i},o]}}", "kind", "Pod",
			      "apiVersion", "v1", "metadata", "name", name, "namespace", "ns",
			      "resourceVersion", rv, "labels", labels, "status",
			      "containerStatuses", "name", "a", "restartCount", r1, second);
	if (terminating)
		json_object_set_new(json_object_get(p, "metadata"), "deletionTimestamp",
				    json_string("2021-11-28T12:00:00Z"));
	return p;
}

/* A List of the given items (stolen), at resourceVersion rv. */
static json_t *list_of(const char *rv, json_t *a, json_t *b, json_t *c)
{
	json_t *items = json_array();
	json_t *in[] = {a, b, c};
	for (size_t i = 0; i < ARRAY_SIZE(in); i++)
		if (in[i])
			json_array_append_new(items, in[i]);
	return json_pack("{s:{s:s},s:o}", "metadata", "resourceVersion", rv, "items", items);
}

static int replace(struct informer *inf, json_t *list)
{
	int rc = informer_replace(inf, list);
	json_decref(list);
	return rc;
}

static int synced_calls;
static void on_synced(void *data)
{
	CHECK(data == &synced_calls);
	synced_calls++;
}

static int upd, del, jobs;
static void on_index(enum index_event ev, const struct build *b, void *data)
{
	UNUSED(b);
	UNUSED(data);
	if (ev == INDEX_UPD)
		upd++;
	else if (ev == INDEX_DEL)
		del++;
	else
		jobs++;
}

static struct index *idx;
static struct feed *f;

static void setup(void)
{
	synced_calls = upd = del = jobs = 0;
	idx = index_new();
	index_listen(idx, on_index, NULL);
	f = feed_new(NULL, NULL, "ns", idx, on_synced, &synced_calls);
	CHECK(f != NULL);
}

static void teardown(void)
{
	feed_free(f);
	index_free(idx);
}

static void test_synced_once_after_all_three(void)
{
	setup();
	CHECK(!feed_synced(f));
	CHECK_INT(replace(feed_deployments(f), list_of("10", NULL, NULL, NULL)), 0);
	CHECK_INT(replace(feed_jobs(f), list_of("10", NULL, NULL, NULL)), 0);
	CHECK(!feed_synced(f));
	CHECK_INT(synced_calls, 0);
	CHECK_INT(replace(feed_pods(f), list_of("10", NULL, NULL, NULL)), 0);
	CHECK(feed_synced(f));
	CHECK_INT(synced_calls, 1);
	/* a re-list does not tell again */
	CHECK_INT(replace(feed_deployments(f), list_of("11", NULL, NULL, NULL)), 0);
	CHECK_INT(synced_calls, 1);
	teardown();
}

static void test_deployments(void)
{
	setup();
	CHECK_INT(replace(feed_deployments(f), list_of("10", deployment(B1, "1", 1, SHA),
						       deployment(B2, "2", 0, SHA), NULL)),
		  0);
	CHECK_INT(index_count(idx), 2);
	CHECK_INT(upd, 2);
	const struct build *b = index_find(idx, B1);
	CHECK(b != NULL);
	if (b) {
		CHECK_STR(b->commit.repo, "oca/mis-builder");
		CHECK_STR(b->commit.git_commit, SHA);
		CHECK_STR(b->resource_version, "1");
	}
	/* a change reaches the index */
	CHECK_INT(replace(feed_deployments(f), list_of("11", deployment(B1, "5", 0, SHA),
						       deployment(B2, "2", 0, SHA), NULL)),
		  0);
	b = index_find(idx, B1);
	CHECK(b && strcmp(b->resource_version, "5") == 0);
	CHECK_INT(upd, 3);
	/* a Deployment that no longer decodes takes its build out */
	CHECK_INT(replace(feed_deployments(f), list_of("12", deployment(B1, "6", 0, "not-a-sha"),
						       deployment(B2, "2", 0, SHA), NULL)),
		  0);
	CHECK(index_find(idx, B1) == NULL);
	CHECK_INT(del, 1);
	/* gone from the list: gone from the index */
	CHECK_INT(replace(feed_deployments(f), list_of("13", NULL, NULL, NULL)), 0);
	CHECK_INT(index_count(idx), 0);
	CHECK_INT(del, 2);
	teardown();
}

static void test_jobs(void)
{
	setup();
	CHECK_INT(replace(feed_deployments(f), list_of("10", deployment(B1, "1", 1, SHA), NULL, NULL)),
		  0);
	json_t *stray = job(B1, "initialize", "3", 0);
	json_object_del(json_object_get(json_object_get(stray, "metadata"), "labels"), BUILD_LABEL);
	json_object_set_new(json_object_get(stray, "metadata"), "name", json_string("other-job"));
	CHECK_INT(replace(feed_jobs(f), list_of("10", job(B1, "initialize", "2", 1),
						job(B1, "cleanup", "3", 0), stray)),
		  0);
	const struct build_job *j = index_job(idx, B1, BUILD_JOB_INITIALIZE);
	CHECK(j != NULL);
	if (j) {
		CHECK_STR(j->name, B1 "-initialize");
		CHECK_INT(j->state, BUILD_JOB_ACTIVE);
	}
	CHECK(index_job(idx, B1, BUILD_JOB_CLEANUP) != NULL);
	CHECK_INT(jobs, 2); /* the job without the label is not runboat's */
	/* the initialize job goes */
	CHECK_INT(replace(feed_jobs(f), list_of("11", job(B1, "cleanup", "3", 0), NULL, NULL)), 0);
	CHECK(index_job(idx, B1, BUILD_JOB_INITIALIZE) == NULL);
	CHECK(index_job(idx, B1, BUILD_JOB_CLEANUP) != NULL);
	teardown();
}

static void test_pods(void)
{
	setup();
	/* listed before their Deployment: nothing to set yet */
	CHECK_INT(replace(feed_pods(f),
			  list_of("10", pod("p1", "1", B1, NULL, 3, 7, "CrashLoopBackOff", false),
				  pod("p2", "1", B1, "initialize", 99, 99, NULL, false),
				  pod("p3", "1", B1, NULL, 50, 50, NULL, true))),
		  0);
	CHECK(index_find(idx, B1) == NULL);
	/* the Deployment comes: the Odoo pod's restarts are its build's, not
	 * the Job pod's nor the terminating pod's */
	CHECK_INT(replace(feed_deployments(f), list_of("10", deployment(B1, "1", 1, SHA), NULL, NULL)),
		  0);
	const struct build *b = index_find(idx, B1);
	CHECK(b != NULL);
	if (b) {
		CHECK_INT(b->restarts, 7);
		CHECK(b->crash_looping);
	}
	/* the pod recovers (a new resourceVersion: the informer passes on only
	 * those), another one restarted more */
	CHECK_INT(replace(feed_pods(f), list_of("11", pod("p1", "2", B1, NULL, 3, 7, NULL, false),
						pod("p4", "1", B1, NULL, 9, 0, NULL, false), NULL)),
		  0);
	b = index_find(idx, B1);
	CHECK(b && b->restarts == 9 && !b->crash_looping);
	/* a Deployment update keeps what the pods said */
	CHECK_INT(replace(feed_deployments(f), list_of("11", deployment(B1, "2", 1, SHA), NULL, NULL)),
		  0);
	b = index_find(idx, B1);
	CHECK(b && b->restarts == 9);
	/* the pods go */
	CHECK_INT(replace(feed_pods(f), list_of("12", NULL, NULL, NULL)), 0);
	b = index_find(idx, B1);
	CHECK(b && b->restarts == 0 && !b->crash_looping);
	/* a pod of an unknown build changes nothing */
	CHECK_INT(replace(feed_pods(f), list_of("13", pod("p9", "1", B2, NULL, 4, 4, NULL, false), NULL,
						NULL)),
		  0);
	CHECK(index_find(idx, B2) == NULL);
	CHECK_INT(index_count(idx), 1);
	teardown();
}

/* A Job pod of build created at ts, with one container, or two. */
static json_t *job_pod(const char *name, const char *build, const char *kind, const char *ts,
		       bool two)
{
	json_t *p = pod(name, "1", build, kind, 0, 0, NULL, false);
	json_t *md = json_object_get(p, "metadata");
	if (ts)
		json_object_set_new(md, "creationTimestamp", json_string(ts));
	if (!two)
		json_array_remove(json_object_get(json_object_get(p, "status"), "containerStatuses"), 1);
	return p;
}

static void test_job_pod(void)
{
	setup();
	const char *container = "x";
	/* not synced yet: the cache cannot stand for a list */
	CHECK(feed_job_pod(f, B1, "initialize", &container) == NULL);
	CHECK(container == NULL);
	CHECK_INT(replace(feed_pods(f),
			  list_of("10", job_pod("i-old", B1, "initialize", "2026-01-01T10:00:00Z", false),
				  job_pod("i-new", B1, "initialize", "2026-01-02T10:00:00Z", false),
				  job_pod("c-1", B1, "cleanup", "2026-01-03T10:00:00Z", false))),
		  0);
	/* the newest of that kind and build, with its only container */
	CHECK_STR(feed_job_pod(f, B1, "initialize", &container), "i-new");
	CHECK_STR(container, "a");
	CHECK_STR(feed_job_pod(f, B1, "cleanup", &container), "c-1");
	CHECK(feed_job_pod(f, B2, "initialize", &container) == NULL);
	CHECK(feed_job_pod(f, B1, "other", &container) == NULL);
	/* two containers (which one is first is in the spec, not cached), or
	 * no creation time: not known */
	CHECK_INT(replace(feed_pods(f),
			  list_of("11", job_pod("i-two", B1, "initialize", "2026-01-02T10:00:00Z", true),
				  job_pod("i-nots", B2, "initialize", NULL, false), NULL)),
		  0);
	CHECK(feed_job_pod(f, B1, "initialize", &container) == NULL);
	CHECK(container == NULL);
	CHECK(feed_job_pod(f, B2, "initialize", &container) == NULL);
	teardown();
}

int main(void)
{
	RUN(test_synced_once_after_all_three);
	RUN(test_deployments);
	RUN(test_jobs);
	RUN(test_pods);
	RUN(test_job_pod);
	return UNIT_DONE();
}
