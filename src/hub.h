/* The event hub: pushes build events ({"event": "upd"|"del", "build": ...})
 * to stream subscribers (WebSocket and SSE), each with a filter.
 *
 * A subscriber that stops reading neither grows memory without bound nor
 * slows the others: while its connection has more than a high-water mark of
 * unsent bytes, its events are conflated (only the latest state of each
 * build is kept, in arrival order) and sent once it drains; one that stays
 * stuck past a deadline is closed. */
#ifndef RUNBOAT_HUB_H
#define RUNBOAT_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "build.h"
#include "index.h"

struct hub;
struct hub_sub;

/* One event as the sinks see it: its JSON text, and slots where each kind
 * of sink keeps the event encoded for its protocol (a WebSocket frame, an
 * SSE chunk), so that the first subscriber of a kind encodes it and the
 * others share those bytes. The hub frees what the slots hold (with
 * slot_free) once the event has been offered to every subscriber. */
#define HUB_MSG_SLOTS 4
struct hub_msg {
	const char *json;
	size_t len;
	void *slot[HUB_MSG_SLOTS];
	void (*slot_free[HUB_MSG_SLOTS])(void *);
};

/* How the hub reaches one subscriber's connection. */
struct hub_sink {
	/* Sends one event (borrowed for the call); returns 0 or -EPIPE. */
	int (*send)(void *conn, struct hub_msg *m);
	/* Bytes queued on the connection and not yet written. */
	size_t (*pending)(void *conn);
	/* The hub gives up on this subscriber (stuck): close the connection.
	 * The owner must still call hub_unsubscribe (e.g. from its close
	 * callback). */
	void (*kick)(void *conn, const char *reason);
};

struct hub_limits {
	size_t high_water;   /* unsent bytes beyond which events are conflated; 0: 256 KiB */
	uint64_t stuck_ms;   /* conflating for longer than this kicks; 0: 60000 */
	/* how often stuck subscribers are looked for (and backlogs retried,
	 * though they are sent on hub_flush, when the connection drains);
	 * 0: 100 */
	uint64_t flush_ms;
	/* batched subscribers: the largest array of events in one message
	 * (one event larger than this goes alone); 0: HUB_ARRAY_BYTES; at
	 * most high_water */
	size_t array_bytes;
};

#define HUB_ARRAY_BYTES (64 * 1024)

/* A hub over idx (borrowed; the hub listens to it until hub_free). links
 * (borrowed, must outlive the hub) shape the builds' JSON. */
struct hub *hub_new(uv_loop_t *loop, struct index *idx, const struct build_links *links,
		    const struct hub_limits *lim);
/* Stops listening and frees the hub; subscribers must be gone (or are
 * forgotten without a kick). */
void hub_free(struct hub *hub);

/* Adds a subscriber: queues an "upd" for every build matching f (copied) in
 * ascending order (a first batch at once, the rest by name in its backlog,
 * sent as the connection drains), then follows changes. conn is borrowed until
 * hub_unsubscribe. */
struct hub_sub *hub_subscribe(struct hub *hub, const struct index_filter *f,
			      const struct hub_sink *sink, void *conn);
/* The same, batched: the snapshot (all of it from the backlog, as the
 * connection drains) and any later backlog go out as JSON arrays of events
 * ("[{"event":"upd","build":...},...]", at most lim.array_bytes each unless
 * one event alone is larger), and right after the snapshot's last event
 * comes one {"event":"synced"}; a change that finds no backlog is sent as
 * one event, as for hub_subscribe. Conflation and the kick apply alike
 * (the marker is never conflated away: every build of the snapshot, or
 * its later state, precedes it). */
struct hub_sub *hub_subscribe_batched(struct hub *hub, const struct index_filter *f,
				      const struct hub_sink *sink, void *conn);
void hub_unsubscribe(struct hub_sub *sub);

/* Sends the next batch (up to 32 KiB unsent) of a subscriber's backlog:
 * call it when the connection has taken what was queued (its write
 * completed), so that a snapshot goes out as fast as the client reads. */
void hub_flush(struct hub_sub *sub);

size_t hub_subscribers(const struct hub *hub);
/* Events conflated (replaced before being sent) since the start, and
 * subscribers kicked: for tests and metrics. */
unsigned long hub_conflated(const struct hub *hub);
unsigned long hub_kicked(const struct hub *hub);

/* The JSON text of one event (owned by the caller), from the build's
 * cached encoding (build_json_text). */
char *hub_event_json(bool deleted, const struct build *b, const struct build_links *links);

#endif
