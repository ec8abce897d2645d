/* A fake Kubernetes client at kube.h's seam, for the modules that only make
 * calls through it (pod_log, actions, and the controller with its feed,
 * events and init_log). The kube_* functions they call are
 * defined here and replace src/kube.c without any build change: the linker
 * takes a member of librunboat_core.a only for a symbol still undefined, so
 * kube.o is never linked. If one of those modules starts calling another
 * kube function, the link fails with a duplicate symbol: fake it here.
 *
 * Each call is recorded (its verb, what it names, a copy of what it sends)
 * and waits, in order, until the test answers it (fake_kube_answer,
 * fake_kube_fail). kube_cancel completes the call with -ECANCELED on the
 * next loop turn, never inside kube_cancel, as the real client does. With
 * closing set, every call returns NULL (a client being closed).
 * kube_result_transient follows kube.h's documented table. Include once per
 * test file. */
#ifndef RUNBOAT_TEST_KUBE_FAKE_H
#define RUNBOAT_TEST_KUBE_FAKE_H

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "kube.h"
#include "list.h"
#include "util.h"

struct kube {
	uv_loop_t *loop;
	uv_timer_t cancel_timer; /* completes the cancelled calls */
	struct list calls;       /* struct kube_call, oldest first */
	int n_calls;             /* made so far */
	int n_cancels;
	bool closing;
};

struct kube_call {
	struct list link;
	struct kube *k;
	char verb[24]; /* "list", "watch", "get", "create", "apply", "patch", "delete",
	                * "deletecollection", "log" */
	char api_version[64];
	char kind[64];
	char ns[64];
	char name[256];     /* the object's name, the applied object's, or the pod's */
	char selector[256]; /* label selector of a list or deletecollection */
	char propagation[16];
	char uid[64];       /* delete precondition */
	enum kube_patch_type patch_type;
	bool force, idempotent;
	struct kube_log_opts log; /* log: container points into log_container */
	char log_container[64];
	json_t *sent; /* a copy of the applied object or the patch */
	bool (*on_page_text)(const char *text, size_t len, void *data); /* list */
	kube_event_cb on_event; /* watch */
	kube_done_cb done;
	void *data;
	bool cancelled;
};

static void fake_kube_on_cancel_timer(uv_timer_t *t);
static inline void fake_kube_fail(struct kube_call *c, int error, bool maybe_applied);

static inline void fake_kube_init(struct kube *k, uv_loop_t *loop)
{
	memset(k, 0, sizeof *k);
	k->loop = loop;
	list_init(&k->calls);
	uv_timer_init(loop, &k->cancel_timer);
	k->cancel_timer.data = k;
}

/* The calls still waiting for an answer. */
static inline size_t fake_kube_pending(const struct kube *k)
{
	size_t n = 0;
	for (const struct list *l = k->calls.next; l != &k->calls; l = l->next)
		n++;
	return n;
}

/* The oldest call waiting for an answer (not cancelled), or NULL. */
static inline struct kube_call *fake_kube_next(struct kube *k)
{
	for (struct list *l = k->calls.next; l != &k->calls; l = l->next) {
		struct kube_call *c = list_entry(l, struct kube_call, link);
		if (!c->cancelled)
			return c;
	}
	return NULL;
}

static inline void fake_kube_complete(struct kube_call *c, const struct kube_result *r)
{
	list_remove(&c->link);
	c->done(r, c->data);
	json_decref(c->sent);
	free(c);
}

/* Answers c with an HTTP status and a JSON body (NULL: "{}"). A non-2xx
 * answer is -EREMOTEIO with the body's reason and message, as kube.c makes
 * them; a 5xx may have been applied. */
static inline void fake_kube_answer(struct kube_call *c, int status, const char *body)
{
	const char *text = body ? body : "{}";
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	struct kube_result r = {.status = status, .body = j, .raw = text, .raw_len = strlen(text),
				.reason = ""};
	char message[512];
	if (status < 200 || status > 299) {
		r.error = -EREMOTEIO;
		const char *reason = json_string_value(json_object_get(j, "reason"));
		const char *msg = json_string_value(json_object_get(j, "message"));
		r.reason = reason ? reason : "";
		snprintf(message, sizeof message, "%s (HTTP %d)", msg ? msg : "refused", status);
		r.message = message;
		r.maybe_applied = status >= 500;
	}
	fake_kube_complete(c, &r);
	json_decref(j);
}

/* Answers a list call with one page, the JSON text of a List (its
 * metadata carries the resourceVersion): handed to the caller's
 * on_page_text first when it gave one, as kube.c does. */
static inline void fake_kube_answer_list(struct kube_call *c, const char *list)
{
	if (c->on_page_text && !c->on_page_text(list, strlen(list), c->data)) {
		fake_kube_fail(c, -EPROTO, false);
		return;
	}
	fake_kube_answer(c, 200, list);
}

/* Answers c with raw bytes that are not JSON (a pod log). */
static inline void fake_kube_answer_raw(struct kube_call *c, const char *raw, size_t len)
{
	struct kube_result r = {.status = 200, .raw = raw, .raw_len = len, .reason = ""};
	fake_kube_complete(c, &r);
}

/* Ends c with no HTTP answer (-ETIMEDOUT, -ECONNREFUSED, ...). */
static inline void fake_kube_fail(struct kube_call *c, int error, bool maybe_applied)
{
	struct kube_result r = {.error = error, .reason = "", .message = "no answer (fake)",
				.raw = "", .maybe_applied = maybe_applied};
	fake_kube_complete(c, &r);
}

static void fake_kube_on_cancel_timer(uv_timer_t *t)
{
	struct kube *k = t->data;
	struct kube_call *c, *tmp;
	list_each_safe(c, tmp, &k->calls, link)
	{
		if (!c->cancelled)
			continue;
		struct kube_result r = {.error = -ECANCELED, .reason = "", .message = "cancelled",
					.raw = ""};
		fake_kube_complete(c, &r);
	}
}

/* Closes the fake's timer; every call must have ended. */
static inline void fake_kube_close(struct kube *k)
{
	uv_close((uv_handle_t *)&k->cancel_timer, NULL);
}

static struct kube_call *fake_kube_call(struct kube *k, const char *verb, const struct kube_ref *ref,
					kube_done_cb done, void *data)
{
	k->n_calls++;
	if (k->closing)
		return NULL;
	struct kube_call *c = xcalloc(1, sizeof *c);
	c->k = k;
	snprintf(c->verb, sizeof c->verb, "%s", verb);
	if (ref) {
		snprintf(c->api_version, sizeof c->api_version, "%s", ref->api_version ? ref->api_version : "");
		snprintf(c->kind, sizeof c->kind, "%s", ref->kind ? ref->kind : "");
		snprintf(c->ns, sizeof c->ns, "%s", ref->namespace ? ref->namespace : "");
		snprintf(c->name, sizeof c->name, "%s", ref->name ? ref->name : "");
	}
	c->done = done;
	c->data = data;
	list_push(&k->calls, &c->link);
	return c;
}

void kube_cancel(struct kube_call *c)
{
	if (c->cancelled)
		return;
	c->cancelled = true;
	c->k->n_cancels++;
	uv_timer_start(&c->k->cancel_timer, fake_kube_on_cancel_timer, 0, 0);
}

bool kube_result_transient(const struct kube_result *r)
{
	if (r->error == 0 || r->error == -ECANCELED || r->error == -EINVAL || r->error == -ENOENT ||
	    r->error == -EMSGSIZE)
		return false;
	if (r->status == 0)
		return true;
	if (r->status == 409)
		return strcmp(r->reason ? r->reason : "", "AlreadyExists") != 0;
	return r->status >= 500 || r->status == 429 || r->status == 408;
}

struct kube_call *kube_get(struct kube *k, const struct kube_ref *ref, kube_done_cb done, void *data)
{
	return fake_kube_call(k, "get", ref, done, data);
}

struct kube_call *kube_list(struct kube *k, const struct kube_ref *ref,
			    const struct kube_list_opts *o, kube_done_cb done, void *data)
{
	struct kube_call *c = fake_kube_call(k, "list", ref, done, data);
	if (c && o && o->label_selector)
		snprintf(c->selector, sizeof c->selector, "%s", o->label_selector);
	if (c && o)
		c->on_page_text = o->on_page_text;
	return c;
}

/* A watch waits like any call: until answered (the stream's end) or
 * cancelled; its events are not faked. */
struct kube_call *kube_watch(struct kube *k, const struct kube_ref *ref,
			     const struct kube_watch_opts *o, kube_event_cb on_event,
			     kube_done_cb done, void *data)
{
	struct kube_call *c = fake_kube_call(k, "watch", ref, done, data);
	if (c && o && o->label_selector)
		snprintf(c->selector, sizeof c->selector, "%s", o->label_selector);
	if (c)
		c->on_event = on_event;
	return c;
}

uint64_t kube_dead_connections(const struct kube *k)
{
	UNUSED(k);
	return 0;
}

/* What obj (a whole object: created or applied) names. Borrowed from obj. */
static struct kube_ref fake_kube_ref_of(const json_t *obj)
{
	json_t *meta = json_object_get(obj, "metadata");
	return (struct kube_ref){
		.api_version = json_string_value(json_object_get(obj, "apiVersion")),
		.kind = json_string_value(json_object_get(obj, "kind")),
		.namespace = json_string_value(json_object_get(meta, "namespace")),
		.name = json_string_value(json_object_get(meta, "name")),
	};
}

struct kube_call *kube_create(struct kube *k, const json_t *obj, const struct kube_write_opts *o,
			      kube_done_cb done, void *data)
{
	UNUSED(o);
	struct kube_ref ref = fake_kube_ref_of(obj);
	struct kube_call *c = fake_kube_call(k, "create", &ref, done, data);
	if (c)
		c->sent = json_deep_copy(obj);
	return c;
}

struct kube_call *kube_apply(struct kube *k, const json_t *obj, const struct kube_write_opts *o,
			     kube_done_cb done, void *data)
{
	struct kube_ref ref = fake_kube_ref_of(obj);
	struct kube_call *c = fake_kube_call(k, "apply", &ref, done, data);
	if (c) {
		c->sent = json_deep_copy(obj);
		c->force = o && o->force;
	}
	return c;
}

struct kube_call *kube_patch(struct kube *k, const struct kube_ref *ref, enum kube_patch_type type,
			     const json_t *patch, const struct kube_write_opts *o, kube_done_cb done,
			     void *data)
{
	struct kube_call *c = fake_kube_call(k, "patch", ref, done, data);
	if (c) {
		c->patch_type = type;
		c->sent = json_deep_copy(patch);
		c->idempotent = o && o->idempotent;
	}
	return c;
}

static void fake_kube_delete_opts(struct kube_call *c, const struct kube_delete_opts *o)
{
	if (!c || !o)
		return;
	snprintf(c->propagation, sizeof c->propagation, "%s", o->propagation ? o->propagation : "");
	snprintf(c->uid, sizeof c->uid, "%s", o->uid ? o->uid : "");
}

struct kube_call *kube_delete(struct kube *k, const struct kube_ref *ref,
			      const struct kube_delete_opts *o, kube_done_cb done, void *data)
{
	struct kube_call *c = fake_kube_call(k, "delete", ref, done, data);
	fake_kube_delete_opts(c, o);
	return c;
}

struct kube_call *kube_delete_collection(struct kube *k, const struct kube_ref *ref,
					 const struct kube_list_opts *sel,
					 const struct kube_delete_opts *o, kube_done_cb done,
					 void *data)
{
	struct kube_call *c = fake_kube_call(k, "deletecollection", ref, done, data);
	fake_kube_delete_opts(c, o);
	if (c && sel && sel->label_selector)
		snprintf(c->selector, sizeof c->selector, "%s", sel->label_selector);
	return c;
}

struct kube_call *kube_pod_log(struct kube *k, const char *ns, const char *pod,
			       const struct kube_log_opts *o, kube_data_cb on_data,
			       kube_done_cb done, void *data)
{
	UNUSED(on_data);
	struct kube_ref ref = {.api_version = "v1", .kind = "Pod", .namespace = ns, .name = pod};
	struct kube_call *c = fake_kube_call(k, "log", &ref, done, data);
	if (c && o) {
		c->log = *o;
		snprintf(c->log_container, sizeof c->log_container, "%s", o->container ? o->container : "");
		c->log.container = o->container ? c->log_container : NULL;
	}
	return c;
}

#endif
