/* The hub through a fake sink: the snapshot a subscription starts with,
 * filters, live updates and deletions, conflation while a connection is
 * backed up (latest state of each build, arrival order), draining, the kick
 * of a subscriber stuck past its deadline, and unsubscribing; the batched
 * mode (arrays of events within their bound, the end-of-snapshot marker
 * after exactly the snapshot, with conflation and the kick). The index is
 * the real one; the loop runs the hub's timer and ends with nothing left. */
#include "hub.h"

#include <errno.h>
#include <jansson.h>

#include "build.h"
#include "index.h"
#include "unit.h"
#include "util.h"

static const struct build_links LINKS = {"http://runboat.test", "runboat.test", NULL};

static const char *sha_of(int n)
{
	static char shas[16][41];
	snprintf(shas[n], sizeof shas[n], "%040x", n + 1);
	return shas[n];
}

/* A stopped build of repo/branch, deployed at created (seconds). */
static struct build *mk(const char *name, const char *repo, const char *branch, int pr,
			int64_t created)
{
	struct build_commit c = {repo, branch, pr, sha_of((int)(created % 16))};
	char dname[80];
	snprintf(dname, sizeof dname, "%s-odoo", name);
	struct build *b = build_new(name, dname, &c, "1", "uid");
	b->init_status = BUILD_INIT_SUCCEEDED;
	b->created = created;
	b->created_ms = created * 1000;
	b->has_finalizer = true;
	b->status = build_derive_status(b);
	return b;
}

static struct build *started(struct build *b)
{
	b->desired_replicas = b->replicas = b->available_replicas = 1;
	b->status = build_derive_status(b);
	return b;
}

/* ---- the fake connection ---- */

#define MAX_EVENTS 64

struct fake {
	/* one per message: "upd b1 started", "del b2 stopped", "synced", an
	 * array as "[upd b1 started, upd b2 stopped]" */
	char *events[MAX_EVENTS];
	size_t lens[MAX_EVENTS]; /* each message's length */
	size_t n;
	size_t pending;       /* what pending() answers */
	bool grow;            /* each send adds its length to pending */
	size_t fill;          /* each send raises pending to at least this */
	int kicks;
	char reason[64];
	int send_rc;          /* what send() returns */
};

/* "upd <name> <status>" from an event, checking its shape. */
static char *event_summary(json_t *ev)
{
	const char *kind = json_string_value(json_object_get(ev, "event"));
	json_t *b = json_object_get(ev, "build");
	const char *name = json_string_value(json_object_get(b, "name"));
	const char *status = json_string_value(json_object_get(b, "status"));
	CHECK(kind && name && status);
	CHECK(json_object_get(b, "commit_info") != NULL);
	return xasprintf("%s %s %s", kind ? kind : "?", name ? name : "?", status ? status : "?");
}

/* The summary of one message: an event, an array of them (never empty) or
 * the marker (exactly {"event":"synced"}). */
static char *summary(const char *json, size_t len)
{
	json_error_t e;
	json_t *msg = json_loadb(json, len, 0, &e);
	CHECK(msg != NULL);
	char *s;
	if (json_is_array(msg)) {
		CHECK(json_array_size(msg) > 0);
		struct buf b = {0};
		buf_append_str(&b, "[");
		size_t i;
		json_t *ev;
		json_array_foreach(msg, i, ev) {
			char *one = event_summary(ev);
			buf_printf(&b, "%s%s", i ? ", " : "", one);
			free(one);
		}
		buf_append_str(&b, "]");
		s = b.data;
	} else if (json_object_size(msg) == 1 &&
		   !strcmp(json_string_value(json_object_get(msg, "event")) ?: "", "synced")) {
		s = xstrdup("synced");
	} else {
		s = event_summary(msg);
	}
	json_decref(msg);
	return s;
}

static int fake_send(void *conn, struct hub_msg *m)
{
	struct fake *f = conn;
	CHECK(f->n < MAX_EVENTS);
	if (f->n < MAX_EVENTS) {
		f->lens[f->n] = m->len;
		f->events[f->n++] = summary(m->json, m->len);
	}
	if (f->grow)
		f->pending += m->len;
	if (f->pending < f->fill)
		f->pending = f->fill;
	return f->send_rc;
}

static size_t fake_pending(void *conn)
{
	struct fake *f = conn;
	return f->pending;
}

static void fake_kick(void *conn, const char *reason)
{
	struct fake *f = conn;
	f->kicks++;
	snprintf(f->reason, sizeof f->reason, "%s", reason);
}

static const struct hub_sink SINK = {fake_send, fake_pending, fake_kick};

static void fake_reset(struct fake *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->events[i]);
	f->n = 0;
}

/* The events received, joined by ", ". */
static const char *got(struct fake *f)
{
	static char out[4096];
	out[0] = '\0';
	for (size_t i = 0; i < f->n; i++)
		snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? ", " : "",
			 f->events[i]);
	return out;
}

/* ---- tests ---- */

static void test_event_json(void)
{
	struct build *b = mk("b1", "oca/a", "16.0", 0, 100);
	char *s = hub_event_json(false, b, &LINKS);
	json_t *ev = json_loads(s, 0, NULL);
	CHECK_STR(json_string_value(json_object_get(ev, "event")), "upd");
	CHECK_STR(json_string_value(json_object_get(json_object_get(ev, "build"), "name")), "b1");
	CHECK_INT(json_object_size(ev), 2);
	json_decref(ev);
	free(s);
	s = hub_event_json(true, b, &LINKS);
	CHECK(strncmp(s, "{\"event\":\"del\",", 15) == 0);
	free(s);
	build_free(b);
}

static void test_snapshot_filters_and_live(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	index_upsert(idx, mk("b2", "oca/a", "16.0", 0, 200));
	index_upsert(idx, mk("b1", "oca/a", "16.0", 0, 100));
	index_upsert(idx, mk("b3", "oca/b", "16.0", 7, 300));
	struct hub *hub = hub_new(&loop, idx, &LINKS, NULL);

	/* the snapshot: every matching build, oldest first */
	struct fake all = {0}, a = {0}, pr = {0}, one = {0};
	struct hub_sub *s_all = hub_subscribe(hub, &(struct index_filter){0}, &SINK, &all);
	CHECK_STR(got(&all), "upd b1 stopped, upd b2 stopped, upd b3 stopped");
	char repo[] = "OCA/A"; /* case-insensitive, and copied by the hub */
	struct hub_sub *s_a = hub_subscribe(hub, &(struct index_filter){.repo = repo}, &SINK, &a);
	repo[0] = 'x';
	CHECK_STR(got(&a), "upd b1 stopped, upd b2 stopped");
	struct hub_sub *s_pr = hub_subscribe(hub, &(struct index_filter){.pr = 7}, &SINK, &pr);
	CHECK_STR(got(&pr), "upd b3 stopped");
	struct hub_sub *s_one = hub_subscribe(hub, &(struct index_filter){.name = "b2"}, &SINK, &one);
	CHECK_STR(got(&one), "upd b2 stopped");
	CHECK_INT(hub_subscribers(hub), 4);
	fake_reset(&all), fake_reset(&a), fake_reset(&pr), fake_reset(&one);

	/* live: each change to the subscribers whose filter matches */
	index_upsert(idx, started(mk("b2", "oca/a", "16.0", 0, 200)));
	index_upsert(idx, mk("b4", "oca/b", "17.0", 0, 400));
	index_remove(idx, "b1");
	CHECK_STR(got(&all), "upd b2 started, upd b4 stopped, del b1 stopped");
	CHECK_STR(got(&a), "upd b2 started, del b1 stopped");
	CHECK_STR(got(&pr), "");
	CHECK_STR(got(&one), "upd b2 started");
	/* nothing for changes that the API does not show (only the version) */
	fake_reset(&all);
	struct build *same = started(mk("b2", "oca/a", "16.0", 0, 200));
	index_upsert(idx, same);
	CHECK_STR(got(&all), "");

	/* an unsubscribed sink hears nothing more */
	hub_unsubscribe(s_a);
	fake_reset(&a), fake_reset(&all);
	index_remove(idx, "b2");
	CHECK_STR(got(&a), "");
	CHECK_STR(got(&all), "del b2 started");
	CHECK_INT(hub_subscribers(hub), 3);

	hub_unsubscribe(s_all);
	hub_unsubscribe(s_pr);
	hub_unsubscribe(s_one);
	CHECK_INT(hub_subscribers(hub), 0);
	CHECK_INT(hub_conflated(hub), 0);
	hub_free(hub);
	fake_reset(&all), fake_reset(&a), fake_reset(&pr), fake_reset(&one);
	uv_run(&loop, UV_RUN_DEFAULT);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_conflation_and_drain(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	index_upsert(idx, mk("b1", "oca/a", "16.0", 0, 100));
	index_upsert(idx, mk("b2", "oca/a", "16.0", 0, 200));
	struct hub_limits lim = {.high_water = 1000, .stuck_ms = 60000, .flush_ms = 10};
	struct hub *hub = hub_new(&loop, idx, &LINKS, &lim);
	struct fake f = {0};
	struct hub_sub *sub = hub_subscribe(hub, &(struct index_filter){0}, &SINK, &f);
	CHECK_STR(got(&f), "upd b1 stopped, upd b2 stopped");
	fake_reset(&f);

	/* backed up: nothing is sent, the latest state of each build waits */
	f.pending = 1000;
	index_upsert(idx, started(mk("b1", "oca/a", "16.0", 0, 100)));
	index_upsert(idx, mk("b3", "oca/a", "16.0", 0, 300));
	struct build *b1 = mk("b1", "oca/a", "16.0", 0, 100);
	b1->desired_replicas = 0, b1->replicas = 1; /* stopping */
	b1->status = build_derive_status(b1);
	index_upsert(idx, b1);
	index_upsert(idx, started(mk("b2", "oca/a", "16.0", 0, 200)));
	index_remove(idx, "b3");
	CHECK_STR(got(&f), "");
	/* b1 twice, b3 upd then del: two replacements */
	CHECK_INT(hub_conflated(hub), 2);

	/* still backed up: a flush sends nothing */
	hub_flush(sub);
	CHECK_STR(got(&f), "");
	/* drained: in the order of each build's first change, its latest
	 * state (an update is read from the index when sent; b3's deletion
	 * replaced its update and keeps its last JSON) */
	f.pending = 0;
	hub_flush(sub);
	CHECK_STR(got(&f), "upd b1 stopping, del b3 stopped, upd b2 started");
	fake_reset(&f);
	/* then live again */
	index_remove(idx, "b1");
	CHECK_STR(got(&f), "del b1 stopping");
	hub_unsubscribe(sub);
	hub_free(hub);
	fake_reset(&f);
	uv_run(&loop, UV_RUN_DEFAULT);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* A tick of the loop timer: runs the loop for ms. */
static void on_stop(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	uv_timer_start(&t, on_stop, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void test_timer_drains_and_kicks(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	struct hub_limits lim = {.high_water = 100, .stuck_ms = 150, .flush_ms = 10};
	struct hub *hub = hub_new(&loop, idx, &LINKS, &lim);
	struct fake slow = {0}, ok = {0};
	struct hub_sub *s_slow = hub_subscribe(hub, &(struct index_filter){0}, &SINK, &slow);
	struct hub_sub *s_ok = hub_subscribe(hub, &(struct index_filter){0}, &SINK, &ok);

	/* ok's connection fills up, then drains by itself: the timer sends */
	ok.grow = true;
	index_upsert(idx, mk("b1", "oca/a", "16.0", 0, 100)); /* sent: pending > 100 now */
	index_upsert(idx, mk("b2", "oca/a", "16.0", 0, 200)); /* waits */
	CHECK_STR(got(&ok), "upd b1 stopped");
	ok.pending = 0;
	ok.grow = false;
	run_for(&loop, 60);
	CHECK_STR(got(&ok), "upd b1 stopped, upd b2 stopped");
	CHECK_INT(ok.kicks, 0);

	/* slow never drains: after stuck_ms it is kicked, once, and its backlog
	 * is dropped; the other subscriber is unaffected */
	fake_reset(&slow);
	slow.pending = 1 << 20;
	index_upsert(idx, mk("b3", "oca/a", "16.0", 0, 300));
	CHECK_STR(got(&slow), "");
	run_for(&loop, 60);
	CHECK_INT(slow.kicks, 0);
	run_for(&loop, 400);
	CHECK_INT(slow.kicks, 1);
	CHECK_STR(slow.reason, "too slow");
	CHECK_INT(hub_kicked(hub), 1);
	/* kicked: no more events even once its connection looks drained */
	slow.pending = 0;
	index_upsert(idx, mk("b4", "oca/a", "16.0", 0, 400));
	run_for(&loop, 30);
	CHECK_STR(got(&slow), "");
	CHECK_INT(slow.kicks, 1);
	CHECK(strstr(got(&ok), "upd b4 stopped") != NULL);
	/* the owner unsubscribes (from its close callback) */
	hub_unsubscribe(s_slow);
	CHECK_INT(hub_subscribers(hub), 1);

	/* the hub forgets remaining subscribers at hub_free, without a kick */
	(void)s_ok;
	hub_free(hub);
	CHECK_INT(ok.kicks, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	fake_reset(&slow), fake_reset(&ok);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_send_errors_do_not_stop_the_others(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	struct hub *hub = hub_new(&loop, idx, &LINKS, NULL);
	struct fake gone = {.send_rc = -EPIPE}, ok = {0};
	struct hub_sub *s1 = hub_subscribe(hub, &(struct index_filter){0}, &SINK, &gone);
	struct hub_sub *s2 = hub_subscribe(hub, &(struct index_filter){0}, &SINK, &ok);
	index_upsert(idx, mk("b1", "oca/a", "16.0", 0, 100));
	index_upsert(idx, mk("b2", "oca/a", "16.0", 0, 200));
	CHECK_STR(got(&ok), "upd b1 stopped, upd b2 stopped");
	CHECK_INT(gone.n, 2);
	hub_unsubscribe(s1);
	hub_unsubscribe(s2);
	hub_free(hub);
	uv_run(&loop, UV_RUN_DEFAULT);
	fake_reset(&gone), fake_reset(&ok);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* Batched: the snapshot as arrays, then the marker, then single events;
 * filters as for the default stream; an empty snapshot is the marker
 * alone. */
static void test_batched_snapshot_and_live(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	index_upsert(idx, mk("b2", "oca/a", "16.0", 0, 200));
	index_upsert(idx, mk("b1", "oca/a", "16.0", 0, 100));
	index_upsert(idx, mk("b3", "oca/b", "16.0", 7, 300));
	struct hub *hub = hub_new(&loop, idx, &LINKS, NULL);
	struct fake all = {0}, a = {0}, none = {0}, plain = {0};
	struct hub_sub *s_all = hub_subscribe_batched(hub, &(struct index_filter){0}, &SINK, &all);
	CHECK_STR(got(&all), "[upd b1 stopped, upd b2 stopped, upd b3 stopped], synced");
	struct hub_sub *s_a =
		hub_subscribe_batched(hub, &(struct index_filter){.repo = "oca/a"}, &SINK, &a);
	CHECK_STR(got(&a), "[upd b1 stopped, upd b2 stopped], synced");
	struct hub_sub *s_none =
		hub_subscribe_batched(hub, &(struct index_filter){.pr = 99}, &SINK, &none);
	CHECK_STR(got(&none), "synced");
	/* the default stream beside it is unchanged */
	struct hub_sub *s_plain = hub_subscribe(hub, &(struct index_filter){0}, &SINK, &plain);
	CHECK_STR(got(&plain), "upd b1 stopped, upd b2 stopped, upd b3 stopped");
	fake_reset(&all), fake_reset(&a), fake_reset(&none), fake_reset(&plain);

	/* live, nothing backed up: one event per message, no marker again */
	index_upsert(idx, started(mk("b2", "oca/a", "16.0", 0, 200)));
	index_remove(idx, "b1");
	CHECK_STR(got(&all), "upd b2 started, del b1 stopped");
	CHECK_STR(got(&a), "upd b2 started, del b1 stopped");
	CHECK_STR(got(&none), "");
	CHECK_STR(got(&plain), "upd b2 started, del b1 stopped");

	hub_unsubscribe(s_all);
	hub_unsubscribe(s_a);
	hub_unsubscribe(s_none);
	hub_unsubscribe(s_plain);
	hub_free(hub);
	fake_reset(&all), fake_reset(&a), fake_reset(&none), fake_reset(&plain);
	uv_run(&loop, UV_RUN_DEFAULT);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* Arrays stay within array_bytes (as many events as fit, at least one),
 * the snapshot goes out in batches as the connection drains, each build
 * once and in order, and the marker comes once, right after the last. */
static void test_batched_arrays_are_bounded(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	enum { N = 40 };
	for (int i = 0; i < N; i++) {
		char name[8];
		snprintf(name, sizeof name, "b%02d", i);
		index_upsert(idx, mk(name, "oca/a", "16.0", 0, 100 + i));
	}
	char *one = hub_event_json(false, index_find(idx, "b00"), &LINKS);
	size_t ev = strlen(one);
	free(one);
	/* three events and a bit: "[" + 3 events + 2 commas + "]" fit, not 4 */
	struct hub_limits lim = {.high_water = 4 * ev, .array_bytes = 3 * ev + 10,
				 .flush_ms = 3600000};
	struct hub *hub = hub_new(&loop, idx, &LINKS, &lim);
	struct fake f = {.grow = true};
	struct hub_sub *sub = hub_subscribe_batched(hub, &(struct index_filter){0}, &SINK, &f);
	/* the first batch: min(high_water, 32 KiB) unsent, so two arrays */
	CHECK_INT(f.n, 2);
	for (int turn = 0; turn < 100 && (f.n == 0 || strcmp(f.events[f.n - 1], "synced")); turn++) {
		f.pending = 0; /* the connection took it all */
		hub_flush(sub);
	}
	CHECK(f.n > 0 && !strcmp(f.events[f.n - 1], "synced"));
	/* 40 builds by 3: 13 arrays of 3 and one of 1, then the marker */
	CHECK_INT(f.n, 15);
	int next = 0, markers = 0;
	for (size_t i = 0; i < f.n; i++) {
		if (!strcmp(f.events[i], "synced")) {
			markers++;
			continue;
		}
		CHECK(f.lens[i] <= lim.array_bytes);
		/* each build once, in order */
		const char *p = f.events[i];
		int in_this = 0;
		for (;;) {
			char want[32];
			snprintf(want, sizeof want, "upd b%02d stopped", next);
			const char *at = strstr(p, want);
			if (!at)
				break;
			p = at + strlen(want);
			next++, in_this++;
		}
		CHECK_INT(in_this, i < 13 ? 3 : 1);
	}
	CHECK_INT(next, N);
	CHECK_INT(markers, 1);
	/* one event larger than the bound goes alone */
	hub_unsubscribe(sub);
	hub_free(hub);
	fake_reset(&f);
	struct hub_limits tiny = {.array_bytes = 10};
	hub = hub_new(&loop, idx, &LINKS, &tiny);
	struct fake g = {0};
	sub = hub_subscribe_batched(hub, &(struct index_filter){.name = "b01"}, &SINK, &g);
	CHECK_STR(got(&g), "[upd b01 stopped], synced");
	hub_unsubscribe(sub);
	hub_free(hub);
	fake_reset(&g);
	uv_run(&loop, UV_RUN_DEFAULT);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* Changes while the snapshot is still going out: a build of the snapshot
 * not yet sent is conflated in place (before the marker, at its latest
 * state: a deletion if it went), a new build and changes to builds already
 * sent come after the marker. */
static void test_batched_marker_with_changes(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	for (int i = 0; i < 6; i++) {
		char name[8];
		snprintf(name, sizeof name, "b%d", i);
		index_upsert(idx, mk(name, "oca/a", "16.0", 0, 100 + i));
	}
	char *one = hub_event_json(false, index_find(idx, "b0"), &LINKS);
	size_t ev = strlen(one);
	free(one);
	/* one message per flush (the first fills the connection), two events
	 * in each */
	struct hub_limits lim = {.array_bytes = 2 * ev + 10, .flush_ms = 3600000};
	struct hub *hub = hub_new(&loop, idx, &LINKS, &lim);
	struct fake f = {.fill = 1 << 20};
	struct hub_sub *sub = hub_subscribe_batched(hub, &(struct index_filter){0}, &SINK, &f);
	CHECK_STR(got(&f), "[upd b0 stopped, upd b1 stopped]");
	index_upsert(idx, started(mk("b3", "oca/a", "16.0", 0, 103))); /* waiting: in place */
	index_remove(idx, "b4");                                      /* waiting: in place */
	index_upsert(idx, mk("b9", "oca/a", "16.0", 0, 109));         /* new: after */
	index_upsert(idx, started(mk("b0", "oca/a", "16.0", 0, 100))); /* sent: after */
	for (int turn = 0; turn < 10; turn++) {
		f.pending = 0;
		hub_flush(sub);
	}
	CHECK_STR(got(&f), "[upd b0 stopped, upd b1 stopped], [upd b2 stopped, upd b3 started], "
			   "[del b4 stopped, upd b5 stopped], synced, [upd b9 stopped, upd b0 started]");
	fake_reset(&f);
	/* drained: live single events again */
	f.pending = f.fill = 0;
	index_remove(idx, "b9");
	CHECK_STR(got(&f), "del b9 stopped");
	hub_unsubscribe(sub);
	hub_free(hub);
	fake_reset(&f);
	uv_run(&loop, UV_RUN_DEFAULT);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

/* A batched subscriber that stops reading mid-snapshot is kicked like any
 * other, and gets no marker. */
static void test_batched_stuck_is_kicked(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct index *idx = index_new();
	for (int i = 0; i < 5; i++) {
		char name[8];
		snprintf(name, sizeof name, "b%d", i);
		index_upsert(idx, mk(name, "oca/a", "16.0", 0, 100 + i));
	}
	struct hub_limits lim = {.high_water = 100, .stuck_ms = 100, .flush_ms = 10};
	struct hub *hub = hub_new(&loop, idx, &LINKS, &lim);
	struct fake f = {.grow = true};
	struct hub_sub *sub = hub_subscribe_batched(hub, &(struct index_filter){0}, &SINK, &f);
	CHECK_STR(got(&f), "[upd b0 stopped]");
	run_for(&loop, 400);
	CHECK_INT(f.kicks, 1);
	CHECK_STR(f.reason, "too slow");
	f.pending = 0;
	hub_flush(sub);
	index_upsert(idx, mk("b7", "oca/a", "16.0", 0, 107));
	CHECK_STR(got(&f), "[upd b0 stopped]");
	hub_unsubscribe(sub);
	hub_free(hub);
	fake_reset(&f);
	uv_run(&loop, UV_RUN_DEFAULT);
	index_free(idx);
	CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
	RUN(test_event_json);
	RUN(test_snapshot_filters_and_live);
	RUN(test_conflation_and_drain);
	RUN(test_timer_drains_and_kicks);
	RUN(test_send_errors_do_not_stop_the_others);
	RUN(test_batched_snapshot_and_live);
	RUN(test_batched_arrays_are_bounded);
	RUN(test_batched_marker_with_changes);
	RUN(test_batched_stuck_is_kicked);
	return UNIT_DONE();
}
