#include "feed.h"

#include <errno.h>
#include <stdlib.h>

#include "build.h"
#include "index.h"
#include "informer.h"
#include "log.h"
#include "util.h"

struct feed {
	struct index *idx;
	struct informer *deployments, *jobs;
	feed_synced_cb synced;
	void *data;
	bool told;
};

static const char *label_of(json_t *obj)
{
	return json_string_value(
		json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), BUILD_LABEL));
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
	index_upsert(f->idx, b);
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
static const char *const DEPLOYMENT_KEEP[] = {"spec.replicas", "status.replicas",
					      "status.readyReplicas",
					      "status.availableReplicas", NULL};
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
	return f;
}

void feed_start(struct feed *f)
{
	informer_start(f->deployments);
	informer_start(f->jobs);
}

bool feed_synced(const struct feed *f)
{
	return informer_synced(f->deployments) && informer_synced(f->jobs);
}

void feed_free(struct feed *f)
{
	if (!f)
		return;
	informer_free(f->deployments);
	informer_free(f->jobs);
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
