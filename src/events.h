/* Kubernetes Events (events.k8s.io/v1) about builds, so that `kubectl
 * describe deployment <build>-odoo` (or `kubectl get events`) tells a
 * build's story: deployed, initialization started/succeeded/failed,
 * started, stopped, reset, undeploy requested, cleanup failed.
 *
 * Best effort, never in the way of the work: an Event is posted once (a
 * create, never repeated), a failure is logged once at info (until a post
 * succeeds again) and counted in runboat_kube_events_total, and nothing
 * waits for the answer. Bounded: a token bucket (EVENTS_BURST, refilled at
 * EVENTS_RATE per second) caps the rate, at most one Event per (build,
 * reason) per EVENTS_DEDUPE_MS, and at most EVENTS_MAX_IN_FLIGHT posts are
 * in flight; what goes beyond is dropped (and counted). */
#ifndef RUNBOAT_EVENTS_H
#define RUNBOAT_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "build.h"

#define EVENTS_BURST 50
#define EVENTS_RATE 1.0
#define EVENTS_DEDUPE_MS 60000
#define EVENTS_MAX_IN_FLIGHT 32
#define EVENTS_NOTE_MAX 1024 /* the API's limit */

struct events;
struct kube;

/* What happened to a build. */
enum events_reason {
	EVENTS_DEPLOYED,
	EVENTS_INIT_STARTED,
	EVENTS_INIT_SUCCEEDED,
	EVENTS_INIT_FAILED,
	EVENTS_STARTED,
	EVENTS_STOPPED,
	EVENTS_RESET,
	EVENTS_UNDEPLOY_REQUESTED,
	EVENTS_CLEANUP_FAILED,
	EVENTS_CRASH_LOOPING,
	EVENTS_REASON_COUNT
};

/* The Event's reason ("InitializationFailed"), action ("Initialize") and
 * type ("Normal" or "Warning"): static strings. */
const char *events_reason_str(enum events_reason r);
const char *events_action_str(enum events_reason r);
const char *events_type_str(enum events_reason r);

/* The Event object (owned by the caller) about b's Deployment in namespace:
 * regarding apps/v1 Deployment b->deployment_name (with b->uid when
 * known), named "<build>.<hex of now_us>", eventTime now_us (epoch
 * microseconds), reportingController "runboat", reportingInstance instance
 * (cut at 128 bytes). note is cut at EVENTS_NOTE_MAX bytes and anything but
 * printable ASCII in it becomes '?'. Pure. */
json_t *events_object(const struct build *b, const char *namespace, const char *instance,
		      enum events_reason r, const char *note, int64_t now_us);

/* The rate limits, pure: a token bucket and the per-(build, reason) window.
 * Returns true when an Event may go at now_ms, and takes its token. */
struct events_limiter {
	double tokens;
	uint64_t last_ms;
	bool started;
};
bool events_bucket_take(struct events_limiter *l, uint64_t now_ms);

/* The emitter of one namespace: posts through kube (borrowed; it must
 * outlive the emitter, or be closed after events_free). instance NULL: the
 * POD_NAME environment variable, else the host name. NULL kube: every
 * events_emit is a no-op. */
struct events *events_new(uv_loop_t *loop, struct kube *kube, const char *namespace,
			  const char *instance);
/* Cancels the posts in flight and frees the emitter; NULL is fine. */
void events_free(struct events *ev);

/* Posts an Event about b (borrowed for the call) with a printf-style note,
 * unless a limit says no. Never fails visibly. */
void events_emit(struct events *ev, const struct build *b, enum events_reason r, const char *fmt,
		 ...) __attribute__((format(printf, 4, 5)));

#endif
