#include "feed.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "index.h"
#include "informer.h"
#include "log.h"
#include "util.h"

struct feed {
	struct index *idx;
	struct informer *deployments, *jobs, *pods;
	feed_synced_cb synced;
	void *data;
	bool told;
};

static const char *label_of(json_t *obj)
{
	return json_string_value(
		json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), BUILD_LABEL));
}

/* ---- pods: restarts of the builds' Odoo pods ---- */

/* Whether pod is one of build's Odoo pods (not a Job's, not terminating),
 * and if so its highest container restartCount and whether a container
 * waits in CrashLoopBackOff. Hostile input: anything unexpected is 0. */
static bool odoo_pod(json_t *pod, const char *build, int *restarts, bool *crash)
{
	json_t *md = json_object_get(pod, "metadata");
	json_t *labels = json_object_get(md, "labels");
	const char *l = json_string_value(json_object_get(labels, BUILD_LABEL));
	if (!l || strcmp(l, build) != 0 || json_object_get(labels, BUILD_LABEL_JOB_KIND) ||
	    json_object_get(labels, "job-name") || json_object_get(labels, "batch.kubernetes.io/job-name") ||
	    json_is_string(json_object_get(md, "deletionTimestamp")))
		return false;
	*restarts = 0;
	*crash = false;
	json_t *cs = json_object_get(json_object_get(pod, "status"), "containerStatuses");
	size_t i;
	json_t *c;
	json_array_foreach(cs, i, c) {
		json_int_t n = json_integer_value(json_object_get(c, "restartCount"));
		if (n > *restarts)
			*restarts = n > INT_MAX ? INT_MAX : (int)n;
		const char *why = json_string_value(json_object_get(
			json_object_get(json_object_get(c, "state"), "waiting"), "reason"));
		if (why && strcmp(why, "CrashLoopBackOff") == 0)
			*crash = true;
	}
	return true;
}

/* Recomputes what the pods of build say, over the cached pods (few: the
 * started builds' and the running Jobs'), into the index. */
static void pods_changed(struct feed *f, const char *build)
{
	if (!f->pods || !build)
		return;
	int restarts = 0;
	bool crash = false;
	struct informer_iter it = INFORMER_ITER_INIT;
	json_t *pod;
	while ((pod = informer_iter_next(f->pods, &it))) {
		int r;
		bool c;
		if (!odoo_pod(pod, build, &r, &c))
			continue;
		if (r > restarts)
			restarts = r;
		crash = crash || c;
	}
	index_set_pods(f->idx, build, restarts, crash);
}

static void on_pod(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	UNUSED(inf);
	UNUSED(old);
	pods_changed(data, label_of(obj));
}

static void on_pod_add(struct informer *inf, json_t *obj, void *data)
{
	on_pod(inf, NULL, obj, data);
}

static void on_deployment(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	UNUSED(inf);
	UNUSED(old);
	struct feed *f = data;
	char err[512];
	struct build *b = build_from_deployment(obj, err, sizeof err);
	if (!b) {
		/* it can no longer be trusted: out of the index */
		log_warn("ignoring a Deployment: %s", err);
		const char *name = label_of(obj);
		if (name)
			index_remove(f->idx, name);
		return;
	}
	char name[BUILD_NAME_MAX + 1];
	snprintf(name, sizeof name, "%s", b->name);
	index_upsert(f->idx, b);
	/* its pods may have been listed before it */
	pods_changed(f, name);
}

static void on_deployment_add(struct informer *inf, json_t *obj, void *data)
{
	on_deployment(inf, NULL, obj, data);
}

static void on_deployment_delete(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	struct feed *f = data;
	const char *name = label_of(obj);
	if (name)
		index_remove(f->idx, name);
}

static void on_job(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	UNUSED(inf);
	UNUSED(old);
	struct feed *f = data;
	struct build_job j;
	int rc = build_job_from_job(obj, &j);
	if (rc == -EINVAL)
		log_warn("ignoring a malformed runboat Job");
	if (rc == 0)
		index_set_job(f->idx, &j);
}

static void on_job_add(struct informer *inf, json_t *obj, void *data)
{
	on_job(inf, NULL, obj, data);
}

static void on_job_delete(struct informer *inf, json_t *obj, void *data)
{
	UNUSED(inf);
	struct feed *f = data;
	struct build_job j;
	if (build_job_from_job(obj, &j) == 0)
		index_remove_job(f->idx, &j);
}

static void on_synced(struct informer *inf, void *data)
{
	UNUSED(inf);
	struct feed *f = data;
	if (f->told || !feed_synced(f))
		return;
	f->told = true;
	f->synced(f->data);
}

/* What build_from_deployment and build_job_from_job read, beside the
 * metadata: the informers cache only that (a Deployment's pod template is
 * most of its size). */
static const char *const DEPLOYMENT_KEEP[] = {"spec.replicas", "spec.paused", "status.replicas",
					      "status.readyReplicas",
					      "status.availableReplicas", NULL};
static const char *const POD_KEEP[] = {"status.containerStatuses", NULL};
static const char *const JOB_KEEP[] = {"status.active", "status.succeeded", "status.failed",
				       "status.conditions", NULL};

struct feed *feed_new(uv_loop_t *loop, struct kube *kube, const char *namespace,
		      struct index *idx, feed_synced_cb synced, void *data)
{
	struct feed *f = xcalloc(1, sizeof *f);
	f->idx = idx;
	f->synced = synced;
	f->data = data;
	struct informer_opts dopts = {.api_version = "apps/v1", .kind = "Deployment",
				      .namespace = namespace, .label_selector = BUILD_LABEL,
				      .keep = DEPLOYMENT_KEEP, .slim_cache = true};
	struct informer_callbacks dcb = {.on_add = on_deployment_add, .on_update = on_deployment,
					 .on_delete = on_deployment_delete, .on_synced = on_synced,
					 .data = f};
	f->deployments = informer_new(loop, kube, &dopts, &dcb);
	struct informer_opts jopts = {.api_version = "batch/v1", .kind = "Job",
				      .namespace = namespace, .label_selector = BUILD_LABEL,
				      .keep = JOB_KEEP, .slim_cache = true};
	struct informer_callbacks jcb = {.on_add = on_job_add, .on_update = on_job,
					 .on_delete = on_job_delete, .on_synced = on_synced,
					 .data = f};
	f->jobs = informer_new(loop, kube, &jopts, &jcb);
	/* not slim: a pod's restarts are recomputed from every cached pod of
	 * its build, so the cache keeps their container statuses */
	struct informer_opts popts = {.api_version = "v1", .kind = "Pod", .namespace = namespace,
				      .label_selector = BUILD_LABEL, .keep = POD_KEEP};
	struct informer_callbacks pcb = {.on_add = on_pod_add, .on_update = on_pod,
					 .on_delete = on_pod_add, .on_synced = on_synced,
					 .data = f};
	f->pods = informer_new(loop, kube, &popts, &pcb);
	return f;
}

void feed_start(struct feed *f)
{
	informer_start(f->deployments);
	informer_start(f->jobs);
	informer_start(f->pods);
}

bool feed_synced(const struct feed *f)
{
	return informer_synced(f->deployments) && informer_synced(f->jobs) &&
	       informer_synced(f->pods);
}

void feed_free(struct feed *f)
{
	if (!f)
		return;
	informer_free(f->deployments);
	informer_free(f->jobs);
	informer_free(f->pods);
	free(f);
}

struct informer *feed_deployments(struct feed *f)
{
	return f->deployments;
}

struct informer *feed_jobs(struct feed *f)
{
	return f->jobs;
}

struct informer *feed_pods(struct feed *f)
{
	return f->pods;
}

const char *feed_job_pod(struct feed *f, const char *build, const char *job_kind,
			 const char **container)
{
	*container = NULL;
	if (!f->pods || !informer_synced(f->pods))
		return NULL;
	json_t *best = NULL;
	const char *best_ts = "";
	struct informer_iter it = INFORMER_ITER_INIT;
	json_t *pod;
	while ((pod = informer_iter_next(f->pods, &it))) {
		json_t *md = json_object_get(pod, "metadata");
		json_t *labels = json_object_get(md, "labels");
		const char *b = json_string_value(json_object_get(labels, BUILD_LABEL));
		const char *k = json_string_value(json_object_get(labels, BUILD_LABEL_JOB_KIND));
		const char *ts = json_string_value(json_object_get(md, "creationTimestamp"));
		if (b && k && ts && strcmp(b, build) == 0 && strcmp(k, job_kind) == 0 &&
		    strcmp(ts, best_ts) >= 0) {
			best = pod;
			best_ts = ts;
		}
	}
	json_t *cs = json_object_get(json_object_get(best, "status"), "containerStatuses");
	const char *name = json_string_value(json_object_get(json_object_get(best, "metadata"), "name"));
	const char *c = json_string_value(json_object_get(json_array_get(cs, 0), "name"));
	if (!name || json_array_size(cs) != 1 || !c)
		return NULL;
	*container = c;
	return name;
}
