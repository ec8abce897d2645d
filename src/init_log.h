/* Initialization logs kept with their build. When a build's initialize Job
 * ends (succeeded or failed), the log of its newest pod, its last
 * INIT_LOG_MAX_BYTES, is written (server-side apply) to a ConfigMap
 * "<build>-initlog" labelled runboat/build=<build>, so that it is deleted
 * with the build's other ConfigMaps at undeploy. Reading a build's init log
 * gives the live pod's log while the pod exists, the kept one once the pod
 * is gone (-ENOENT from the pod lookup), and after a restart of runboat.
 *
 * Keeping is best effort: a failure is logged once per keep and never
 * touches the build. At most one keep per build is in flight (a second ask
 * while one runs is done again after it), at most INIT_LOG_MAX_KEEPS at
 * once (the others wait their turn, in order). */
#ifndef RUNBOAT_INIT_LOG_H
#define RUNBOAT_INIT_LOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "pod_log.h"

struct kube;
struct init_log;
struct init_log_read;

/* A ConfigMap's data may hold 1 MiB in all: the log, its key, some room. */
#define INIT_LOG_MAX_BYTES (1024 * 1024 - 1024)
#define INIT_LOG_MAX_KEEPS 4
#define INIT_LOG_SUFFIX "-initlog"

/* ---- pure helpers (exposed for tests) ---- */

/* The last max bytes at most of text[0..len) as a NUL-terminated copy
 * (owned by the caller; *out_len its length): when bytes had to be dropped,
 * it starts after the first newline of what is left (if there is one), and
 * *cut is set. Bytes that are not UTF-8, and NULs, become '?' (a ConfigMap's
 * data is text), so the length never grows. */
char *init_log_tail(const char *text, size_t len, size_t max, size_t *out_len, bool *cut);

/* The ConfigMap that keeps text (borrowed; valid UTF-8, as init_log_tail
 * makes it) for build in namespace, from job (its name, may be "") that
 * succeeded or not. A new reference. */
json_t *init_log_configmap(const char *namespace, const char *build, const char *job,
			   bool succeeded, bool cut, const char *text);

/* The kept log of a ConfigMap (borrowed from cm), or NULL when cm is not
 * one that init_log_configmap made for build. */
const char *init_log_configmap_text(const json_t *cm, const char *build, size_t *len);

/* ---- keeping and reading ---- */

/* Whether build is gone or going (undeployed): its log is not kept, and a
 * kept log that landed after the undeploy's deletion by label is deleted
 * again. */
typedef bool (*init_log_gone_cb)(const char *build, void *data);

/* A keeper on kube (borrowed, outlives it) for namespace (copied); gone (may
 * be NULL) is asked before a keep starts and after it has landed. */
struct init_log *init_log_new(struct kube *kube, const char *namespace, init_log_gone_cb gone,
			      void *gone_data);
/* Where the initialize Job's pod of build is known without asking (a
 * cache): its name and *container (may stay NULL: the pod's only one),
 * borrowed for the call; NULL when it is not known. */
typedef const char *(*init_log_pod_cb)(const char *build, const char **container, void *data);
/* Sets the pod lookup (NULL: none). A keep asks it first and reads that
 * pod's log in one call; without an answer, or when the pod named is gone,
 * it lists the build's pods as init_log_read does. */
void init_log_set_pod_lookup(struct init_log *il, init_log_pod_cb cb, void *data);
/* Cancels every keep (queued or in flight) and frees il. NULL is fine. */
void init_log_free(struct init_log *il);
/* Cancels every keep, queued or in flight (a replica that stands by keeps
 * nothing; a call already sent may still land, which is harmless). */
void init_log_stop(struct init_log *il);

/* Keeps the log of build's initialize Job job (name, may be "") that has
 * just ended. Never fails: what goes wrong is logged. */
void init_log_keep(struct init_log *il, const char *build, const char *job, bool succeeded);
/* Keeps queued or in flight (for tests and metrics). */
size_t init_log_pending(const struct init_log *il);

/* Reads build's init log: the live pod's (as pod_log_get with job_kind
 * "initialize"), else the kept one; cb runs exactly once unless cancelled,
 * with -ENOENT when there is neither. NULL when the client is closing (cb
 * does not run). */
struct init_log_read *init_log_read(struct init_log *il, const char *build, pod_log_cb cb,
				    void *data);
/* Stops a read: its callback will not run. */
void init_log_read_cancel(struct init_log_read *r);

#endif
