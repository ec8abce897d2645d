/* Leader election with a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection package does it, so that two runboat replicas on one
 * namespace have exactly one that acts (DESIGN.md, "Running in production").
 *
 * The rules (the pure state machine, struct lease_state):
 * - A candidate reads the Lease every retry period (jittered up to +20 %).
 *   It creates it when it is absent, and takes it over (an update carrying
 *   the resourceVersion it read: optimistic concurrency, a 409 means another
 *   replica won the race) when it is released (no holderIdentity) or
 *   expired. Expired is measured on OUR clock, never by comparing the
 *   record's renewTime with our wall clock: the record is expired when it has
 *   not changed for leaseDurationSeconds (the record's own) since we first
 *   saw it as it is. A takeover increments leaseTransitions and sets
 *   acquireTime.
 * - The leader renews every retry period (an update with the resourceVersion
 *   of its own last write; on a conflict it reads the Lease again). It leads
 *   only while its last successful write was SENT less than renew_deadline
 *   ago: past that it stops acting at once, whether or not a call is still in
 *   flight. Since a standby waits lease_duration (> renew_deadline) after it
 *   last saw the record change, and saw it change no earlier than our write
 *   was sent, the old leader has stopped before anyone can take over.
 * - On shutdown the leader releases the Lease (holderIdentity empty,
 *   leaseDurationSeconds 1, as client-go's ReleaseOnCancel), so that a
 *   standby takes over at its next attempt instead of after the duration.
 *
 * The I/O (struct lease) drives the machine on the loop with its own
 * struct kube client (so that the controller's calls, and its client-side
 * rate limit, never delay a renewal) and tells one callback when this
 * replica starts or stops leading, or when the leader it sees changes. */
#ifndef RUNBOAT_LEASE_H
#define RUNBOAT_LEASE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kube;

/* Identities we write are shorter; a longer holder read from a Lease is
 * kept cut to this length (and so never equals ours). */
#define LEASE_HOLDER_MAX 255
#define LEASE_IDENTITY_MAX 200
#define LEASE_RV_MAX 127
#define LEASE_TIME_MAX 39

/* The defaults of client-go (and of kube-controller-manager). */
#define LEASE_DEFAULT_DURATION_MS 15000
#define LEASE_DEFAULT_RENEW_DEADLINE_MS 10000
#define LEASE_DEFAULT_RETRY_MS 2000
/* A standby's attempts are spread over [retry, retry * LEASE_JITTER]. */
#define LEASE_JITTER 1.2

/* The spec of a Lease, and the resourceVersion it was read at. */
struct lease_record {
	char holder[LEASE_HOLDER_MAX + 1]; /* "": nobody holds it (released) */
	int64_t duration_s;                /* leaseDurationSeconds, >= 1 */
	int64_t transitions;               /* leaseTransitions, >= 0 */
	char acquire_time[LEASE_TIME_MAX + 1]; /* MicroTime as written, or "" */
	char renew_time[LEASE_TIME_MAX + 1];
	char resource_version[LEASE_RV_MAX + 1];
};

struct lease_timing {
	uint64_t duration_ms;       /* what we write as leaseDurationSeconds (rounded up) */
	uint64_t renew_deadline_ms; /* < duration_ms */
	uint64_t retry_ms;          /* * LEASE_JITTER < renew_deadline_ms */
};

/* ---- the state machine (pure: the clock and the wall time are arguments) ---- */

struct lease_state {
	struct lease_timing t;
	char identity[LEASE_IDENTITY_MAX + 1];
	bool have_observed;          /* a record was read or written */
	struct lease_record observed;
	uint64_t observed_ms;        /* our clock, when observed last changed */
	bool leading;
	uint64_t renewed_ms;         /* when our last successful write was sent */
};

/* What to do after reading the Lease. */
enum lease_move {
	LEASE_WAIT,   /* another replica holds it and it has not expired */
	LEASE_CREATE, /* it does not exist: create *out */
	LEASE_UPDATE, /* ours, released or expired: write *out (it carries the
	               * resourceVersion read) */
};

/* Starts with nothing observed, not leading. identity is copied (cut to
 * LEASE_IDENTITY_MAX). */
void lease_state_init(struct lease_state *s, const struct lease_timing *t, const char *identity);

/* The Lease was read at our clock now: current, or NULL when it does not
 * exist. Records it as observed (observed_ms = now when it differs from what
 * was observed before) and decides; on LEASE_CREATE or LEASE_UPDATE, *out
 * is the record to write, renewTime (and acquireTime on a takeover) set to
 * wall_now (a MicroTime). A leader that reads another holder stops leading
 * here. */
enum lease_move lease_observe(struct lease_state *s, const struct lease_record *current,
			      uint64_t now, const char *wall_now, struct lease_record *out);

/* The renewal a leader sends without reading first (the observed record,
 * ours, renewTime wall_now). Only meaningful while leading. */
void lease_renewal(const struct lease_state *s, const char *wall_now, struct lease_record *out);

/* A create or update sent at our clock sent_ms succeeded, the server
 * storing written (with its new resourceVersion). We lead when it was sent
 * less than renew_deadline before now. */
void lease_won(struct lease_state *s, const struct lease_record *written, uint64_t sent_ms,
	       uint64_t now);

/* Whether we still lead at now; a leader whose last successful write was
 * sent renew_deadline or more before now stops leading here. */
bool lease_check(struct lease_state *s, uint64_t now);

/* Our clock when the leader must stop unless it renews (only while leading). */
uint64_t lease_deadline(const struct lease_state *s);

/* The record that releases the Lease: holder "", duration 1 s, the
 * transitions kept, renewTime = acquireTime = wall_now, the observed
 * resourceVersion. Returns false (nothing to release) unless the observed
 * holder is us. */
bool lease_release_record(const struct lease_state *s, const char *wall_now,
			  struct lease_record *out);

/* The holder we last saw ("" when none or not known yet). Borrowed. */
const char *lease_state_holder(const struct lease_state *s);

/* ---- the Lease object in JSON ---- */

/* Reads a Lease (hostile: types checked, strings bounded, control characters
 * replaced). A missing or non-positive leaseDurationSeconds reads as
 * default_duration_s; a huge one is capped at a day. Returns 0, or -EINVAL
 * when obj is not an object or has no metadata.resourceVersion. */
int lease_record_from_json(const json_t *obj, int64_t default_duration_s, struct lease_record *r);

/* The Lease object to write (owned by the caller): apiVersion, kind,
 * metadata (name, namespace, resourceVersion when r has one) and spec; an
 * empty holder is left out, as client-go does. */
json_t *lease_record_to_json(const struct lease_record *r, const char *namespace, const char *name);

/* The current wall time as a Kubernetes MicroTime ("...T12:00:00.123456Z"). */
void lease_wall_now(char out[LEASE_TIME_MAX + 1]);

/* An identity for this process: $POD_NAME, else the host name, then '_' and
 * 16 random hex digits (a restarted process is a new candidate); characters
 * outside [A-Za-z0-9._-] become '-'. */
void lease_identity(char out[LEASE_IDENTITY_MAX + 1]);

/* ---- on the loop ---- */

struct lease;

struct lease_opts {
	const char *namespace;   /* copied */
	const char *name;        /* copied; a valid object name */
	const char *identity;    /* copied */
	struct lease_timing timing;
};

/* Called when this replica starts or stops leading, and when a standby sees
 * another leader ("" when it is not known, or released). leader borrowed
 * during the call. */
typedef void (*lease_change_cb)(bool leading, const char *leader, void *data);
typedef void (*lease_done_cb)(void *data);

/* A candidate on loop, talking through kube (borrowed; it must outlive the
 * lease: free the lease, then close the client). Nothing happens before
 * lease_start. */
struct lease *lease_new(uv_loop_t *loop, struct kube *kube, const struct lease_opts *o,
			lease_change_cb cb, void *data);
void lease_start(struct lease *l);
bool lease_leading(const struct lease *l);
/* The holder last seen, "" if none. Borrowed. */
const char *lease_holder(const struct lease *l);
/* Stops campaigning. When leading: tells cb (leading false) at once, then
 * releases the Lease; done runs once when that is over (written, refused
 * or failed), never from inside this call. */
void lease_release(struct lease *l, lease_done_cb done, void *data);
/* Stops everything (no callback after this); the lease is freed once its
 * timers are closed and its call in flight has ended. NULL is fine. */
void lease_free(struct lease *l);

#endif
