/* Pod logs of a build through the Kubernetes API: the newest pod of its
 * initialization Job, or of the build itself (its first container: Odoo in
 * the default kubefiles), gathered up to a bound. */
#ifndef RUNBOAT_POD_LOG_H
#define RUNBOAT_POD_LOG_H

#include <stdbool.h>
#include <stddef.h>

struct kube;
struct pod_log;

/* The outcome: error 0 and the text (borrowed during the call), -ENOENT
 * when there is no such pod, -EIO with a message otherwise. */
typedef void (*pod_log_cb)(int error, const char *message, const char *text, size_t len,
			   void *data);

/* Starts fetching the log of the newest pod of build's job_kind Job
 * ("initialize", "cleanup"), or of its Odoo pod (job_kind NULL), in
 * namespace; cb runs exactly once unless the request is cancelled. NULL when
 * the client is closing (cb is not called). */
struct pod_log *pod_log_get(struct kube *kube, const char *namespace, const char *build,
			    const char *job_kind, pod_log_cb cb, void *data);
/* The same, asking the server for the last tail_lines lines only (0: all),
 * and at most limit_bytes of them (0, or more than 4 MiB: 4 MiB; the
 * server cuts at the end, so a tail longer than limit_bytes comes back
 * without its newest bytes: ask again with fewer lines). */
struct pod_log *pod_log_get_tail(struct kube *kube, const char *namespace, const char *build,
				 const char *job_kind, long tail_lines, long limit_bytes,
				 pod_log_cb cb, void *data);
/* The log of a pod already known (its name; container NULL: the pod's only
 * container), without listing the build's pods: one call. The same bounds
 * and outcomes as pod_log_get_tail (-ENOENT when the pod is gone). */
struct pod_log *pod_log_get_pod(struct kube *kube, const char *namespace, const char *pod,
				const char *container, long tail_lines, long limit_bytes,
				pod_log_cb cb, void *data);
/* Stops a request: its callback will not run. */
void pod_log_cancel(struct pod_log *l);

#endif
