#include "pod_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "kube.h"
#include "util.h"

#define POD_LOG_MAX_BYTES (4 * 1024 * 1024)

struct pod_log {
	struct kube *kube;
	char *namespace;
	struct kube_call *call;
	pod_log_cb cb;
	void *data;
	bool job; /* a Job's pod, not the Odoo one */
	bool cancelled;
	long tail_lines;
	long limit_bytes;
};

static void finish(struct pod_log *l, int error, const char *message, const char *text, size_t len)
{
	if (!l->cancelled)
		l->cb(error, message, text, len, l->data);
	free(l->namespace);
	free(l);
}

static void on_text(const struct kube_result *res, void *data)
{
	struct pod_log *l = data;
	l->call = NULL;
	if (res->error) {
		finish(l, res->status == 404 ? -ENOENT : -EIO,
		       res->message ? res->message : strerror(-res->error), NULL, 0);
		return;
	}
	finish(l, 0, NULL, res->raw, res->raw_len);
}

static void on_pods(const struct kube_result *res, void *data)
{
	struct pod_log *l = data;
	l->call = NULL;
	if (l->cancelled || res->error) {
		finish(l, -EIO, res->message ? res->message : "cannot list the build's pods", NULL, 0);
		return;
	}
	json_t *best = NULL;
	const char *best_ts = "";
	size_t i;
	json_t *pod;
	json_array_foreach(json_object_get(res->body, "items"), i, pod)
	{
		const char *ts = json_string_value(
			json_object_get(json_object_get(pod, "metadata"), "creationTimestamp"));
		if (ts && strcmp(ts, best_ts) >= 0) {
			best = pod;
			best_ts = ts;
		}
	}
	if (!best) {
		finish(l, -ENOENT,
		       l->job ? "no pod of that job for this build (gone with its job?)"
			      : "no running pod for this build (is it started?)",
		       NULL, 0);
		return;
	}
	const char *pod_name =
		json_string_value(json_object_get(json_object_get(best, "metadata"), "name"));
	json_t *first = json_array_get(json_object_get(json_object_get(best, "spec"), "containers"), 0);
	struct kube_log_opts lo = {
		.container = json_string_value(json_object_get(first, "name")),
		.tail_lines = l->tail_lines,
		.limit_bytes = l->limit_bytes,
	};
	l->call = kube_pod_log(l->kube, l->namespace, pod_name, &lo, NULL, on_text, l);
	if (!l->call)
		finish(l, -EIO, "the Kubernetes client is closing", NULL, 0);
}

struct pod_log *pod_log_get(struct kube *kube, const char *namespace, const char *build,
			    const char *job_kind, pod_log_cb cb, void *data)
{
	return pod_log_get_tail(kube, namespace, build, job_kind, 0, POD_LOG_MAX_BYTES, cb, data);
}

static struct pod_log *request_new(struct kube *kube, const char *namespace, long tail_lines,
				   long limit_bytes, pod_log_cb cb, void *data)
{
	struct pod_log *l = xcalloc(1, sizeof *l);
	l->kube = kube;
	l->tail_lines = tail_lines > 0 ? tail_lines : 0;
	l->limit_bytes = limit_bytes > 0 && limit_bytes < POD_LOG_MAX_BYTES ? limit_bytes
									   : POD_LOG_MAX_BYTES;
	l->namespace = xstrdup(namespace);
	l->cb = cb;
	l->data = data;
	return l;
}

struct pod_log *pod_log_get_pod(struct kube *kube, const char *namespace, const char *pod,
				const char *container, long tail_lines, long limit_bytes,
				pod_log_cb cb, void *data)
{
	struct pod_log *l = request_new(kube, namespace, tail_lines, limit_bytes, cb, data);
	l->job = true;
	struct kube_log_opts lo = {
		.container = container,
		.tail_lines = l->tail_lines,
		.limit_bytes = l->limit_bytes,
	};
	l->call = kube ? kube_pod_log(kube, namespace, pod, &lo, NULL, on_text, l) : NULL;
	if (!l->call) {
		free(l->namespace);
		free(l);
		return NULL;
	}
	return l;
}

struct pod_log *pod_log_get_tail(struct kube *kube, const char *namespace, const char *build,
				 const char *job_kind, long tail_lines, long limit_bytes,
				 pod_log_cb cb, void *data)
{
	struct pod_log *l = request_new(kube, namespace, tail_lines, limit_bytes, cb, data);
	l->job = job_kind != NULL;
	char sel[160];
	if (job_kind)
		snprintf(sel, sizeof sel, "%s=%s,%s=%s", BUILD_LABEL, build, BUILD_LABEL_JOB_KIND,
			 job_kind);
	else
		snprintf(sel, sizeof sel, "%s=%s,!%s", BUILD_LABEL, build, BUILD_LABEL_JOB_KIND);
	struct kube_ref ref = {.api_version = "v1", .kind = "Pod", .namespace = namespace};
	struct kube_list_opts lo = {.label_selector = sel};
	l->call = kube ? kube_list(kube, &ref, &lo, on_pods, l) : NULL;
	if (!l->call) {
		free(l->namespace);
		free(l);
		return NULL;
	}
	return l;
}

void pod_log_cancel(struct pod_log *l)
{
	l->cancelled = true;
	if (l->call)
		kube_cancel(l->call);
}
