#include "events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "strmap.h"
#include "util.h"

#define INSTANCE_MAX 128
/* the dedupe table is swept of expired entries when it grows past this */
#define DEDUPE_SWEEP 4096

static const struct {
	const char *reason, *action;
	bool warning;
} KINDS[EVENTS_REASON_COUNT] = {
	[EVENTS_DEPLOYED] = {"Deployed", "Deploy", false},
	[EVENTS_INIT_STARTED] = {"InitializationStarted", "Initialize", false},
	[EVENTS_INIT_SUCCEEDED] = {"InitializationSucceeded", "Initialize", false},
	[EVENTS_INIT_FAILED] = {"InitializationFailed", "Initialize", true},
	[EVENTS_STARTED] = {"Started", "Start", false},
	[EVENTS_STOPPED] = {"Stopped", "Stop", false},
	[EVENTS_RESET] = {"Reset", "Reset", false},
	[EVENTS_UNDEPLOY_REQUESTED] = {"UndeployRequested", "Undeploy", false},
	[EVENTS_CLEANUP_FAILED] = {"CleanupFailed", "Cleanup", true},
	[EVENTS_CRASH_LOOPING] = {"CrashLooping", "Stop", true},
};

const char *events_reason_str(enum events_reason r)
{
	return r < EVENTS_REASON_COUNT ? KINDS[r].reason : "Unknown";
}

const char *events_action_str(enum events_reason r)
{
	return r < EVENTS_REASON_COUNT ? KINDS[r].action : "Unknown";
}

const char *events_type_str(enum events_reason r)
{
	return r < EVENTS_REASON_COUNT && KINDS[r].warning ? "Warning" : "Normal";
}

/* A copy of s of at most max bytes, printable ASCII only. */
static char *clean(const char *s, size_t max)
{
	size_t n = strnlen(s ? s : "", max);
	char *out = xstrndup(s ? s : "", n);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return out;
}

json_t *events_object(const struct build *b, const char *namespace, const char *instance,
		      enum events_reason r, const char *note, int64_t now_us)
{
	char name[BUILD_NAME_MAX + 24], when[48], secs[32];
	snprintf(name, sizeof name, "%s.%llx", b->name, (unsigned long long)now_us);
	format_rfc3339(now_us / 1000000, secs);
	/* MicroTime: "2006-01-02T15:04:05.000000Z" */
	snprintf(when, sizeof when, "%.*s.%06lldZ", (int)strlen(secs) - 1, secs,
		 (long long)(now_us % 1000000));
	json_t *regarding = json_pack("{s:s,s:s,s:s,s:s}", "apiVersion", "apps/v1", "kind",
				      "Deployment", "name", b->deployment_name, "namespace", namespace);
	if (b->uid && b->uid[0])
		json_object_set_new(regarding, "uid", json_string(b->uid));
	char *inst = clean(instance, INSTANCE_MAX);
	char *text = clean(note, EVENTS_NOTE_MAX);
	json_t *o = json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}",
			      "apiVersion", "events.k8s.io/v1", "kind", "Event", "metadata", "name",
			      name, "namespace", namespace, "eventTime", when, "reportingController",
			      "runboat", "reportingInstance", inst[0] ? inst : "runboat", "action",
			      events_action_str(r), "reason", events_reason_str(r), "note", text,
			      "type", events_type_str(r), "regarding", regarding);
	free(inst);
	free(text);
	return o;
}

bool events_bucket_take(struct events_limiter *l, uint64_t now_ms)
{
	if (!l->started) {
		l->started = true;
		l->tokens = EVENTS_BURST;
		l->last_ms = now_ms;
	}
	if (now_ms > l->last_ms) {
		l->tokens += (double)(now_ms - l->last_ms) / 1000.0 * EVENTS_RATE;
		if (l->tokens > EVENTS_BURST)
			l->tokens = EVENTS_BURST;
		l->last_ms = now_ms;
	}
	if (l->tokens < 1)
		return false;
	l->tokens -= 1;
	return true;
}

/* ---- the emitter ---- */

struct post {
	struct list link;     /* in events.posts */
	struct events *ev;    /* NULL once the emitter is gone */
	struct kube_call *call;
	enum events_reason reason;
	char build[BUILD_NAME_MAX + 1];
};

struct events {
	uv_loop_t *loop;
	struct kube *kube;
	char *namespace;
	char *instance;
	struct events_limiter bucket;
	struct strmap recent; /* "build\nreason" -> (last post ms + 1) */
	struct list posts;
	size_t in_flight;
	int64_t last_us;
	bool failing; /* the last post failed: further failures are not logged */
};

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct events *events_new(uv_loop_t *loop, struct kube *kube, const char *namespace,
			  const char *instance)
{
	struct events *ev = xcalloc(1, sizeof *ev);
	ev->loop = loop;
	ev->kube = kube;
	ev->namespace = xstrdup(namespace ? namespace : "default");
	char host[256] = "";
	if (!instance || !*instance)
		instance = getenv("POD_NAME");
	if (!instance || !*instance) {
		size_t n = sizeof host;
		if (uv_os_gethostname(host, &n) == 0)
			instance = host;
	}
	ev->instance = xstrdup(instance && *instance ? instance : "runboat");
	list_init(&ev->posts);
	return ev;
}

void events_free(struct events *ev)
{
	if (!ev)
		return;
	/* the posts' callbacks run later, with -ECANCELED: they free themselves */
	while (!list_empty(&ev->posts)) {
		struct post *p = list_entry(ev->posts.next, struct post, link);
		list_remove(&p->link);
		list_init(&p->link);
		p->ev = NULL;
		kube_cancel(p->call);
	}
	strmap_clear(&ev->recent, NULL);
	free(ev->namespace);
	free(ev->instance);
	free(ev);
}

static void on_posted(const struct kube_result *res, void *data)
{
	struct post *p = data;
	struct events *ev = p->ev;
	if (!ev) {
		free(p);
		return;
	}
	list_remove(&p->link);
	ev->in_flight--;
	const char *reason = events_reason_str(p->reason);
	if (!res->error) {
		ev->failing = false;
		metrics_event(reason, "posted");
	} else {
		metrics_event(reason, "failed");
		if (!ev->failing && res->error != -ECANCELED)
			log_info("events: cannot post the %s Event of build %s: %s (further failures "
				 "are not logged until one succeeds)",
				 reason, p->build, res->message ? res->message : "?");
		ev->failing = true;
	}
	free(p);
}

struct sweep {
	struct strmap *m;
	uint64_t before;
	char **keys;
	size_t n;
};

static void collect_old(const char *key, void *value, void *data)
{
	struct sweep *s = data;
	if ((uint64_t)(uintptr_t)value - 1 < s->before)
		s->keys[s->n++] = xstrdup(key);
}

/* Whether (build, reason) had no Event within the window; records now. */
static bool dedupe_pass(struct events *ev, const char *build, enum events_reason r, uint64_t now)
{
	char key[BUILD_NAME_MAX + 8];
	snprintf(key, sizeof key, "%s\n%d", build, (int)r);
	uintptr_t last = (uintptr_t)strmap_get(&ev->recent, key);
	if (last && now < (uint64_t)last - 1 + EVENTS_DEDUPE_MS)
		return false;
	if (!last && ev->recent.count >= DEDUPE_SWEEP) {
		struct sweep s = {.m = &ev->recent,
				  .before = now > EVENTS_DEDUPE_MS ? now - EVENTS_DEDUPE_MS : 0};
		s.keys = xcalloc(ev->recent.count, sizeof *s.keys);
		strmap_each(&ev->recent, collect_old, &s);
		for (size_t i = 0; i < s.n; i++) {
			strmap_del(&ev->recent, s.keys[i]);
			free(s.keys[i]);
		}
		free(s.keys);
		if (ev->recent.count >= DEDUPE_SWEEP)
			strmap_clear(&ev->recent, NULL); /* more than the bucket lets through: forget */
	}
	strmap_put(&ev->recent, key, (void *)(uintptr_t)(now + 1));
	return true;
}

void events_emit(struct events *ev, const struct build *b, enum events_reason r, const char *fmt,
		 ...)
{
	if (!ev || !ev->kube || !b || !b->deployment_name || !b->deployment_name[0] ||
	    r >= EVENTS_REASON_COUNT)
		return;
	const char *reason = events_reason_str(r);
	uint64_t now = uv_now(ev->loop);
	if (!dedupe_pass(ev, b->name, r, now)) {
		metrics_event(reason, "duplicate");
		return;
	}
	if (ev->in_flight >= EVENTS_MAX_IN_FLIGHT || !events_bucket_take(&ev->bucket, now)) {
		metrics_event(reason, "rate_limited");
		return;
	}
	char note[EVENTS_NOTE_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(note, sizeof note, fmt, ap);
	va_end(ap);
	int64_t us = wall_us();
	if (us <= ev->last_us)
		us = ev->last_us + 1; /* unique names */
	ev->last_us = us;
	json_t *obj = events_object(b, ev->namespace, ev->instance, r, note, us);
	struct post *p = xcalloc(1, sizeof *p);
	p->ev = ev;
	p->reason = r;
	snprintf(p->build, sizeof p->build, "%s", b->name);
	struct kube_write_opts wo = {0};
	p->call = kube_create(ev->kube, obj, &wo, on_posted, p);
	json_decref(obj);
	if (!p->call) {
		free(p); /* the client is closing */
		return;
	}
	list_push(&ev->posts, &p->link);
	ev->in_flight++;
}
