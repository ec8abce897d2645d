/* The feed: keeps the build index equal to what Kubernetes says. Three
 * informers (list + watch) of the Deployments, the Jobs and the Pods that
 * carry the runboat/build label in the build namespace (of the pods, only
 * the restarts of the builds' Odoo pods are kept: index_set_pods); each
 * object is decoded
 * (build_from_deployment, build_job_from_job: hostile input, validated) into
 * the index, which tells its listeners. The feed never acts. */
#ifndef RUNBOAT_FEED_H
#define RUNBOAT_FEED_H

#include <stdbool.h>
#include <uv.h>

struct feed;
struct index;
struct kube;

/* Called once, when the three informers have listed everything. */
typedef void (*feed_synced_cb)(void *data);

/* A feed of idx (borrowed, as kube and namespace: they outlive the feed).
 * Nothing happens before feed_start. */
struct feed *feed_new(uv_loop_t *loop, struct kube *kube, const char *namespace,
		      struct index *idx, feed_synced_cb synced, void *data);
void feed_start(struct feed *f);
/* True once the three informers have synced. */
bool feed_synced(const struct feed *f);
/* Stops the informers; no callback after this. NULL is fine. */
void feed_free(struct feed *f);
/* The Deployments, Jobs and Pods informers (borrowed), for benchmarks and
 * tests: with kube NULL they are detached, fed by informer_replace. */
struct informer *feed_deployments(struct feed *f);
struct informer *feed_jobs(struct feed *f);
struct informer *feed_pods(struct feed *f);

/* The newest cached pod of build's job_kind Job ("initialize", "cleanup"),
 * as pod_log_get picks it from a list, when the cache can stand for that
 * list: the pods informer is synced and the pod reports exactly one
 * container (*container: its name). Else NULL (list the pods instead). Both
 * borrowed from the cache: valid until the loop runs again. */
const char *feed_job_pod(struct feed *f, const char *build, const char *job_kind,
			 const char **container);

#endif
