#include "hub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"
#include "strmap.h"
#include "util.h"

/* A build waiting to be sent to one subscriber. An update is serialized
 * from the index's current state when it is sent (so a backlog costs a name
 * per build, not a document); a deletion keeps its last JSON. */
struct pending {
	struct list link; /* in hub_sub.backlog, arrival order */
	char *del_json;   /* NULL for an update */
	size_t del_len;
	bool marker;      /* the end of the snapshot (batched), not in by_name */
	char name[];
};

struct hub_sub {
	struct hub *hub;
	struct list link; /* in hub.subs */
	struct index_filter filter;
	char *strings[4]; /* owned copies behind filter's pointers */
	struct hub_sink sink;
	void *conn;
	/* backlog */
	struct list backlog;    /* struct pending, oldest first */
	struct strmap by_name; /* the same, by build name */
	size_t n_pending;
	uint64_t last_progress_ms;
	size_t last_pending_bytes;
	bool kicked;
	bool batched; /* arrays of events and the end-of-snapshot marker */
};

struct hub {
	uv_loop_t *loop;
	struct index *idx;
	const struct build_links *links;
	struct hub_limits lim;
	struct list subs; /* struct hub_sub */
	size_t n_subs;
	uv_timer_t timer;
	bool timer_running;
	unsigned long conflated, kicked;
};

/* Appends {"event":"upd"|"del","build":<the build's cached JSON>} to out. */
static void event_append(struct buf *out, bool deleted, const struct build *b,
			 const struct build_links *links)
{
	size_t len;
	const char *bj = build_json_text(b, links, &len);
	buf_append_str(out, deleted ? "{\"event\":\"del\",\"build\":" : "{\"event\":\"upd\",\"build\":");
	buf_append(out, bj, len);
	buf_append(out, "}", 1);
}

/* The same event as the whole of out. */
static void event_text(struct buf *out, bool deleted, const struct build *b,
		       const struct build_links *links)
{
	buf_reset(out);
	event_append(out, deleted, b, links);
}

char *hub_event_json(bool deleted, const struct build *b, const struct build_links *links)
{
	struct buf out = {0};
	event_text(&out, deleted, b, links);
	return out.data;
}

static void msg_init(struct hub_msg *m, const char *json, size_t len)
{
	memset(m, 0, sizeof *m);
	m->json = json;
	m->len = len;
}

/* Frees what the sinks put in m's slots. */
static void msg_done(struct hub_msg *m)
{
	for (size_t i = 0; i < HUB_MSG_SLOTS; i++)
		if (m->slot[i] && m->slot_free[i])
			m->slot_free[i](m->slot[i]);
	memset(m->slot, 0, sizeof m->slot);
}

/* ---- the backlog: FIFO + map by build name ---- */

static bool has_backlog(const struct hub_sub *sub)
{
	return !list_empty(&sub->backlog);
}

static void backlog_put(struct hub_sub *sub, const char *name, const char *del_json, size_t del_len)
{
	struct pending *p = strmap_get(&sub->by_name, name);
	if (p) {
		/* conflate: only the latest state of a build is kept */
		free(p->del_json);
		p->del_json = del_json ? xstrndup(del_json, del_len) : NULL;
		p->del_len = del_len;
		sub->hub->conflated++;
		return;
	}
	size_t nl = strlen(name);
	p = xcalloc(1, sizeof *p + nl + 1);
	memcpy(p->name, name, nl + 1);
	p->del_json = del_json ? xstrndup(del_json, del_len) : NULL;
	p->del_len = del_len;
	list_push(&sub->backlog, &p->link);
	strmap_put(&sub->by_name, name, p);
	sub->n_pending++;
}

/* Queues the end-of-snapshot marker after what the backlog holds. */
static void backlog_put_marker(struct hub_sub *sub)
{
	struct pending *p = xcalloc(1, sizeof *p + 1);
	p->marker = true;
	list_push(&sub->backlog, &p->link);
}

static void backlog_pop(struct hub_sub *sub, struct pending *p)
{
	if (!p->marker) {
		strmap_del(&sub->by_name, p->name);
		sub->n_pending--;
	}
	list_remove(&p->link);
	free(p->del_json);
	free(p);
}

static void backlog_clear(struct hub_sub *sub)
{
	struct pending *p, *tmp;
	list_each_safe(p, tmp, &sub->backlog, link)
	{
		backlog_pop(sub, p);
	}
	strmap_clear(&sub->by_name, NULL); /* its buckets */
}

/* ---- delivery ---- */

static void ensure_timer(struct hub *hub);

/* A backlog (a snapshot, mostly) goes out in batches of this many unsent
 * bytes at most, the next one when the connection has taken the previous
 * one: as fast as the client reads, without holding a whole snapshot in
 * memory per subscriber while many subscribe at once. */
#define HUB_BATCH_BYTES (32 * 1024)

static size_t batch_limit(const struct hub *hub)
{
	return hub->lim.high_water < HUB_BATCH_BYTES ? hub->lim.high_water : HUB_BATCH_BYTES;
}

/* Sends the next batch of the backlog, one message per event. */
static void drain_events(struct hub_sub *sub)
{
	struct hub *hub = sub->hub;
	struct buf text = {0};
	size_t limit = batch_limit(hub);
	while (has_backlog(sub) && !sub->kicked && sub->sink.pending(sub->conn) < limit) {
		struct pending *p = list_first(&sub->backlog, struct pending, link);
		struct hub_msg m;
		const struct build *b = p->del_json ? NULL : index_find(hub->idx, p->name);
		if (p->del_json) {
			msg_init(&m, p->del_json, p->del_len);
		} else if (b) {
			event_text(&text, false, b, hub->links);
			msg_init(&m, text.data, text.len);
		}
		if (p->del_json || b) {
			sub->sink.send(sub->conn, &m);
			msg_done(&m);
		}
		backlog_pop(sub, p);
		sub->last_progress_ms = now_ms();
	}
	buf_free(&text);
}

static const char SYNCED[] = "{\"event\":\"synced\"}";

/* Sends text (borrowed) as one message. */
static void send_text(struct hub_sub *sub, const char *text, size_t len)
{
	struct hub_msg m;
	msg_init(&m, text, len);
	sub->sink.send(sub->conn, &m);
	msg_done(&m);
}

/* Appends to arr (a JSON array being built) the events at the head of the
 * backlog that fit in the hub's array_bytes (at least one, however large),
 * popping them, up to the marker. Returns how many were appended. */
static size_t fill_array(struct hub_sub *sub, struct buf *arr)
{
	struct hub *hub = sub->hub;
	size_t n = 0;
	buf_reset(arr);
	buf_append(arr, "[", 1);
	while (has_backlog(sub)) {
		struct pending *p = list_first(&sub->backlog, struct pending, link);
		if (p->marker)
			break;
		size_t before = arr->len;
		if (n)
			buf_append(arr, ",", 1);
		const struct build *b = p->del_json ? NULL : index_find(hub->idx, p->name);
		if (p->del_json)
			buf_append(arr, p->del_json, p->del_len);
		else if (b)
			event_append(arr, false, b, hub->links);
		else
			arr->len = before; /* gone, and its deletion already sent */
		if (arr->len == before) {
			backlog_pop(sub, p);
			continue;
		}
		if (n && arr->len + 1 > hub->lim.array_bytes) {
			arr->len = before; /* the next message starts with it */
			break;
		}
		n++;
		backlog_pop(sub, p);
	}
	buf_append(arr, "]", 1);
	return n;
}

/* Sends the next batch of the backlog as JSON arrays of events, and the
 * marker where it stands. */
static void drain_batched(struct hub_sub *sub)
{
	struct hub *hub = sub->hub;
	struct buf arr = {0};
	size_t limit = batch_limit(hub);
	while (has_backlog(sub) && !sub->kicked && sub->sink.pending(sub->conn) < limit) {
		struct pending *p = list_first(&sub->backlog, struct pending, link);
		if (p->marker) {
			send_text(sub, SYNCED, sizeof SYNCED - 1);
			backlog_pop(sub, p);
		} else if (fill_array(sub, &arr)) {
			send_text(sub, arr.data, arr.len);
		}
		sub->last_progress_ms = now_ms();
	}
	buf_free(&arr);
}

static void drain(struct hub_sub *sub)
{
	if (sub->batched)
		drain_batched(sub);
	else
		drain_events(sub);
}

static void deliver(struct hub_sub *sub, const struct build *b, struct hub_msg *m, bool deleted)
{
	struct hub *hub = sub->hub;
	if (sub->kicked)
		return;
	if (!has_backlog(sub) && sub->sink.pending(sub->conn) < hub->lim.high_water) {
		sub->sink.send(sub->conn, m);
		return;
	}
	if (!has_backlog(sub)) {
		sub->last_progress_ms = now_ms();
		sub->last_pending_bytes = sub->sink.pending(sub->conn);
	}
	backlog_put(sub, b->name, deleted ? m->json : NULL, m->len);
	ensure_timer(hub);
}

static void on_index_event(enum index_event ev, const struct build *b, void *data)
{
	struct hub *hub = data;
	if (ev == INDEX_JOB || !b)
		return;
	bool deleted = ev == INDEX_DEL;
	if (!deleted) {
		/* encoded as it arrives, so that the first listing or snapshot
		 * after a (re)sync does not encode every build at once */
		size_t len;
		build_json_text(b, hub->links, &len);
	}
	struct buf text = {0};
	struct hub_msg m;
	msg_init(&m, NULL, 0);
	struct hub_sub *sub, *tmp;
	list_each_safe(sub, tmp, &hub->subs, link)
	{
		if (!index_filter_match(&sub->filter, b))
			continue;
		if (!m.json) {
			/* encoded once, shared by every subscriber */
			event_text(&text, deleted, b, hub->links);
			msg_init(&m, text.data, text.len);
		}
		deliver(sub, b, &m, deleted);
	}
	msg_done(&m);
	buf_free(&text);
}

static void on_tick(uv_timer_t *t)
{
	struct hub *hub = t->data;
	bool busy = false;
	uint64_t now = now_ms();
	struct hub_sub *sub, *tmp;
	list_each_safe(sub, tmp, &hub->subs, link)
	{
		if (has_backlog(sub) && !sub->kicked) {
			size_t pend = sub->sink.pending(sub->conn);
			if (pend < sub->last_pending_bytes)
				sub->last_progress_ms = now;
			sub->last_pending_bytes = pend;
			drain(sub);
			/* drain() may have stamped progress after now was read */
			if (has_backlog(sub) && now > sub->last_progress_ms &&
			    now - sub->last_progress_ms > hub->lim.stuck_ms) {
				log_warn("hub: a subscriber has read nothing for %llums with %zu builds "
					 "pending, closing it",
					 (unsigned long long)(now - sub->last_progress_ms),
					 sub->n_pending);
				sub->kicked = true;
				hub->kicked++;
				backlog_clear(sub);
				/* may unsubscribe, and free sub, at once (SSE) */
				sub->sink.kick(sub->conn, "too slow");
				continue;
			}
			busy = busy || has_backlog(sub);
		}
	}
	if (!busy) {
		uv_timer_stop(&hub->timer);
		hub->timer_running = false;
	}
}

static void ensure_timer(struct hub *hub)
{
	if (hub->timer_running)
		return;
	hub->timer_running = true;
	uv_timer_start(&hub->timer, on_tick, hub->lim.flush_ms, hub->lim.flush_ms);
}

/* ---- public ---- */

struct hub *hub_new(uv_loop_t *loop, struct index *idx, const struct build_links *links,
		    const struct hub_limits *lim)
{
	struct hub *hub = xcalloc(1, sizeof *hub);
	hub->loop = loop;
	hub->idx = idx;
	hub->links = links;
	list_init(&hub->subs);
	if (lim)
		hub->lim = *lim;
	if (!hub->lim.high_water)
		hub->lim.high_water = 256 * 1024;
	if (!hub->lim.stuck_ms)
		hub->lim.stuck_ms = 60000;
	if (!hub->lim.flush_ms)
		hub->lim.flush_ms = 100;
	/* one message never exceeds what a connection may hold unsent */
	if (!hub->lim.array_bytes)
		hub->lim.array_bytes = HUB_ARRAY_BYTES;
	if (hub->lim.array_bytes > hub->lim.high_water)
		hub->lim.array_bytes = hub->lim.high_water;
	uv_timer_init(loop, &hub->timer);
	hub->timer.data = hub;
	uv_unref((uv_handle_t *)&hub->timer);
	index_listen(idx, on_index_event, hub);
	return hub;
}

static void on_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

void hub_free(struct hub *hub)
{
	if (!hub)
		return;
	index_unlisten(hub->idx, on_index_event, hub);
	struct hub_sub *sub, *tmp;
	list_each_safe(sub, tmp, &hub->subs, link)
	{
		hub_unsubscribe(sub);
	}
	uv_close((uv_handle_t *)&hub->timer, on_timer_closed);
}

static const char *keep(struct hub_sub *sub, int i, const char *s)
{
	if (!s || !*s)
		return NULL;
	sub->strings[i] = xstrdup(s);
	return sub->strings[i];
}

static struct hub_sub *subscribe(struct hub *hub, const struct index_filter *f,
				 const struct hub_sink *sink, void *conn, bool batched)
{
	struct hub_sub *sub = xcalloc(1, sizeof *sub);
	sub->hub = hub;
	sub->filter = *f;
	sub->filter.repo = keep(sub, 0, f->repo);
	sub->filter.target_branch = keep(sub, 1, f->target_branch);
	sub->filter.branch = keep(sub, 2, f->branch);
	sub->filter.name = keep(sub, 3, f->name);
	sub->sink = *sink;
	sub->conn = conn;
	sub->batched = batched;
	list_init(&sub->backlog);
	list_push_front(&hub->subs, &sub->link);
	hub->n_subs++;

	const struct build **list = NULL;
	size_t n = index_list(hub->idx, &sub->filter, INDEX_SORT_ASC, &list);
	if (batched) {
		/* the whole snapshot by name, then its end: drained as arrays */
		sub->last_progress_ms = now_ms();
		for (size_t i = 0; i < n; i++)
			backlog_put(sub, list[i]->name, NULL, 0);
		backlog_put_marker(sub);
		free(list);
		drain(sub);
		if (has_backlog(sub))
			ensure_timer(hub);
		return sub;
	}
	struct buf text = {0};
	size_t limit = batch_limit(hub);
	for (size_t i = 0; i < n; i++) {
		if (has_backlog(sub) || sub->sink.pending(sub->conn) >= limit) {
			/* a batch is queued: the rest waits by name (and is
			 * encoded when sent) */
			if (!has_backlog(sub))
				sub->last_progress_ms = now_ms();
			backlog_put(sub, list[i]->name, NULL, 0);
			ensure_timer(hub);
			continue;
		}
		struct hub_msg m;
		event_text(&text, false, list[i], hub->links);
		msg_init(&m, text.data, text.len);
		deliver(sub, list[i], &m, false);
		msg_done(&m);
	}
	buf_free(&text);
	free(list);
	return sub;
}

struct hub_sub *hub_subscribe(struct hub *hub, const struct index_filter *f,
			      const struct hub_sink *sink, void *conn)
{
	return subscribe(hub, f, sink, conn, false);
}

struct hub_sub *hub_subscribe_batched(struct hub *hub, const struct index_filter *f,
				      const struct hub_sink *sink, void *conn)
{
	return subscribe(hub, f, sink, conn, true);
}

void hub_unsubscribe(struct hub_sub *sub)
{
	struct hub *hub = sub->hub;
	backlog_clear(sub);
	list_remove(&sub->link);
	hub->n_subs--;
	for (size_t i = 0; i < ARRAY_SIZE(sub->strings); i++)
		free(sub->strings[i]);
	free(sub);
}

void hub_flush(struct hub_sub *sub)
{
	drain(sub);
}

size_t hub_subscribers(const struct hub *hub)
{
	return hub->n_subs;
}

unsigned long hub_conflated(const struct hub *hub)
{
	return hub->conflated;
}

unsigned long hub_kicked(const struct hub *hub)
{
	return hub->kicked;
}
