#include "lease.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "kube.h"
#include "log.h"
#include "util.h"

#define MAX_DURATION_S 86400
/* After a conflict, the leader reads the Lease again this soon. */
#define REREAD_MS 100

/* ---- the state machine ---- */

static void copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

static int64_t duration_s_of(const struct lease_timing *t)
{
	int64_t s = (int64_t)((t->duration_ms + 999) / 1000);
	return s < 1 ? 1 : s;
}

void lease_state_init(struct lease_state *s, const struct lease_timing *t, const char *identity)
{
	memset(s, 0, sizeof *s);
	s->t = *t;
	if (!s->t.duration_ms)
		s->t.duration_ms = LEASE_DEFAULT_DURATION_MS;
	if (!s->t.renew_deadline_ms)
		s->t.renew_deadline_ms = LEASE_DEFAULT_RENEW_DEADLINE_MS;
	if (!s->t.retry_ms)
		s->t.retry_ms = LEASE_DEFAULT_RETRY_MS;
	copy_str(s->identity, sizeof s->identity, identity);
}

static bool record_equal(const struct lease_record *a, const struct lease_record *b)
{
	return strcmp(a->holder, b->holder) == 0 && a->duration_s == b->duration_s &&
	       a->transitions == b->transitions && strcmp(a->acquire_time, b->acquire_time) == 0 &&
	       strcmp(a->renew_time, b->renew_time) == 0 &&
	       strcmp(a->resource_version, b->resource_version) == 0;
}

static bool ours(const struct lease_state *s, const struct lease_record *r)
{
	return s->identity[0] && strcmp(r->holder, s->identity) == 0;
}

enum lease_move lease_observe(struct lease_state *s, const struct lease_record *current,
			      uint64_t now, const char *wall_now, struct lease_record *out)
{
	memset(out, 0, sizeof *out);
	copy_str(out->holder, sizeof out->holder, s->identity);
	out->duration_s = duration_s_of(&s->t);
	copy_str(out->renew_time, sizeof out->renew_time, wall_now);
	if (!current) {
		/* gone (deleted by hand?): whoever creates it first leads, so a
		 * leader stops until its own create succeeds */
		s->leading = false;
		s->have_observed = false;
		copy_str(out->acquire_time, sizeof out->acquire_time, wall_now);
		return LEASE_CREATE;
	}
	if (!s->have_observed || !record_equal(&s->observed, current)) {
		s->observed = *current;
		s->observed_ms = now;
		s->have_observed = true;
	}
	bool mine = ours(s, current);
	if (s->leading && !mine)
		s->leading = false;
	uint64_t d = (uint64_t)(current->duration_s > 0 ? current->duration_s : 1) * 1000;
	if (current->holder[0] && !mine && now < s->observed_ms + d)
		return LEASE_WAIT;
	if (mine) {
		copy_str(out->acquire_time, sizeof out->acquire_time,
			 current->acquire_time[0] ? current->acquire_time : wall_now);
		out->transitions = current->transitions;
	} else {
		copy_str(out->acquire_time, sizeof out->acquire_time, wall_now);
		out->transitions = current->transitions + 1;
	}
	copy_str(out->resource_version, sizeof out->resource_version, current->resource_version);
	return LEASE_UPDATE;
}

void lease_renewal(const struct lease_state *s, const char *wall_now, struct lease_record *out)
{
	*out = s->observed;
	copy_str(out->holder, sizeof out->holder, s->identity);
	out->duration_s = duration_s_of(&s->t);
	copy_str(out->renew_time, sizeof out->renew_time, wall_now);
	if (!out->acquire_time[0])
		copy_str(out->acquire_time, sizeof out->acquire_time, wall_now);
}

void lease_won(struct lease_state *s, const struct lease_record *written, uint64_t sent_ms,
	       uint64_t now)
{
	if (!s->have_observed || !record_equal(&s->observed, written)) {
		s->observed = *written;
		s->observed_ms = now;
		s->have_observed = true;
	}
	if (!ours(s, written)) {
		s->leading = false;
		return;
	}
	if (now >= sent_ms && now - sent_ms >= s->t.renew_deadline_ms)
		return; /* too late to count: no longer safe to act on it */
	if (!s->leading || sent_ms > s->renewed_ms)
		s->renewed_ms = sent_ms;
	s->leading = true;
}

bool lease_check(struct lease_state *s, uint64_t now)
{
	if (s->leading && now >= s->renewed_ms + s->t.renew_deadline_ms)
		s->leading = false;
	return s->leading;
}

uint64_t lease_deadline(const struct lease_state *s)
{
	return s->renewed_ms + s->t.renew_deadline_ms;
}

bool lease_release_record(const struct lease_state *s, const char *wall_now,
			  struct lease_record *out)
{
	memset(out, 0, sizeof *out);
	if (!s->have_observed || !ours(s, &s->observed))
		return false;
	out->duration_s = 1;
	out->transitions = s->observed.transitions;
	copy_str(out->acquire_time, sizeof out->acquire_time, wall_now);
	copy_str(out->renew_time, sizeof out->renew_time, wall_now);
	copy_str(out->resource_version, sizeof out->resource_version,
		 s->observed.resource_version);
	return true;
}

const char *lease_state_holder(const struct lease_state *s)
{
	return s->have_observed ? s->observed.holder : "";
}

/* ---- JSON ---- */

/* A bounded, single-line copy of a string value (cut at size - 1 bytes). */
static void copy_clean(char *dst, size_t size, const char *src)
{
	copy_str(dst, size, src);
	str_one_line(dst);
}

static bool time_chars(const char *s)
{
	for (; *s; s++)
		if (!strchr("0123456789TZ:.+-", *s))
			return false;
	return true;
}

int lease_record_from_json(const json_t *obj, int64_t default_duration_s, struct lease_record *r)
{
	memset(r, 0, sizeof *r);
	if (!json_is_object(obj))
		return -EINVAL;
	json_t *meta = json_object_get(obj, "metadata");
	const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
	if (!rv || !*rv || strlen(rv) > LEASE_RV_MAX)
		return -EINVAL;
	copy_clean(r->resource_version, sizeof r->resource_version, rv);
	json_t *spec = json_object_get(obj, "spec");
	json_t *h = json_object_get(spec, "holderIdentity");
	if (json_is_string(h))
		copy_clean(r->holder, sizeof r->holder, json_string_value(h));
	else if (h && !json_is_null(h))
		copy_str(r->holder, sizeof r->holder, "(holderIdentity is not a string)");
	json_t *d = json_object_get(spec, "leaseDurationSeconds");
	r->duration_s = default_duration_s > 0 ? default_duration_s : 1;
	if (json_is_integer(d) && json_integer_value(d) > 0)
		r->duration_s = json_integer_value(d) > MAX_DURATION_S ? MAX_DURATION_S
									: json_integer_value(d);
	json_t *n = json_object_get(spec, "leaseTransitions");
	if (json_is_integer(n) && json_integer_value(n) > 0)
		r->transitions = json_integer_value(n) > INT32_MAX - 1 ? INT32_MAX - 1
								     : json_integer_value(n);
	const char *at = json_string_value(json_object_get(spec, "acquireTime"));
	if (at && strlen(at) <= LEASE_TIME_MAX && time_chars(at))
		copy_str(r->acquire_time, sizeof r->acquire_time, at);
	const char *rt = json_string_value(json_object_get(spec, "renewTime"));
	if (rt && strlen(rt) <= LEASE_TIME_MAX && time_chars(rt))
		copy_str(r->renew_time, sizeof r->renew_time, rt);
	return 0;
}

json_t *lease_record_to_json(const struct lease_record *r, const char *namespace, const char *name)
{
	json_t *meta = json_pack("{s:s,s:s}", "name", name, "namespace", namespace);
	if (r->resource_version[0])
		json_object_set_new(meta, "resourceVersion", json_string(r->resource_version));
	json_t *spec = json_pack("{s:I,s:I}", "leaseDurationSeconds", (json_int_t)r->duration_s,
				 "leaseTransitions", (json_int_t)r->transitions);
	if (r->holder[0])
		json_object_set_new(spec, "holderIdentity", json_string(r->holder));
	if (r->acquire_time[0])
		json_object_set_new(spec, "acquireTime", json_string(r->acquire_time));
	if (r->renew_time[0])
		json_object_set_new(spec, "renewTime", json_string(r->renew_time));
	return json_pack("{s:s,s:s,s:o,s:o}", "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
			 "metadata", meta, "spec", spec);
}

void lease_wall_now(char out[LEASE_TIME_MAX + 1])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char day[24];
	if (strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		day[0] = '\0';
	snprintf(out, LEASE_TIME_MAX + 1, "%.20s.%06uZ", day,
		 (unsigned)((unsigned long)ts.tv_nsec / 1000 % 1000000));
}

void lease_identity(char out[LEASE_IDENTITY_MAX + 1])
{
	char host[256] = "";
	const char *pod = getenv("POD_NAME");
	if (pod && *pod)
		snprintf(host, sizeof host, "%s", pod);
	else if (gethostname(host, sizeof host) != 0 || !host[0])
		snprintf(host, sizeof host, "runboat");
	host[sizeof host - 1] = '\0';
	/* room for "_" and 16 hex digits */
	size_t max = LEASE_IDENTITY_MAX - 17;
	if (strlen(host) > max)
		host[max] = '\0';
	for (char *p = host; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-'))
			*p = '-';
	snprintf(out, LEASE_IDENTITY_MAX + 1, "%s_%016llx", host,
		 (unsigned long long)backoff_seed());
}

/* ---- on the loop ---- */

enum call_kind { CALL_NONE, CALL_GET, CALL_CREATE, CALL_UPDATE, CALL_RELEASE, CALL_RELEASE_GET };

struct lease {
	uv_loop_t *loop;
	struct kube *kube;
	char *namespace, *name;
	char *path, *collection;
	struct lease_state st;
	uv_timer_t attempt_timer, deadline_timer;
	int open_handles;
	struct kube_call *call;
	enum call_kind call_kind;
	uint64_t call_sent_ms;
	struct lease_record sent; /* what the write in flight carries */
	bool need_get;            /* the next attempt reads the Lease first */
	lease_change_cb cb;
	void *data;
	bool told_leading;
	bool told_once;
	char told_holder[LEASE_HOLDER_MAX + 1];
	const char *lost_why; /* static */
	bool started, releasing, release_retried, closing;
	lease_done_cb release_cb;
	void *release_data;
	char last_error[256]; /* the last failure logged, to log each kind once */
	unsigned failures;
	uint64_t rng;
};

static void on_call_done(const struct kube_result *res, void *data);
static void tell(struct lease *l);

static void maybe_free(struct lease *l)
{
	if (!l->closing || l->open_handles || l->call)
		return;
	free(l->namespace);
	free(l->name);
	free(l->path);
	free(l->collection);
	free(l);
}

static void on_closed(uv_handle_t *h)
{
	struct lease *l = h->data;
	l->open_handles--;
	maybe_free(l);
}

static int64_t default_duration_s(const struct lease *l)
{
	return duration_s_of(&l->st.t);
}

static void send_get(struct lease *l, enum call_kind kind)
{
	l->call_kind = kind;
	l->call_sent_ms = now_ms();
	l->call = kube_request(l->kube, "GET", l->path, NULL, NULL, 0, on_call_done, l);
}

static void send_write(struct lease *l, enum call_kind kind, const struct lease_record *r)
{
	json_t *obj = lease_record_to_json(r, l->namespace, l->name);
	char *body = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	l->sent = *r;
	l->call_kind = kind;
	l->call_sent_ms = now_ms();
	l->call = kube_request(l->kube, kind == CALL_CREATE ? "POST" : "PUT",
			       kind == CALL_CREATE ? l->collection : l->path, "application/json", body,
			       strlen(body), on_call_done, l);
	free(body);
}

static void on_attempt(uv_timer_t *t);

static void schedule(struct lease *l, uint64_t now)
{
	if (l->closing || l->releasing || l->call)
		return;
	uint64_t delay;
	if (l->st.leading && l->need_get) {
		delay = REREAD_MS;
	} else if (l->st.leading) {
		uint64_t next = l->call_sent_ms + l->st.t.retry_ms;
		delay = next > now ? next - now : 0;
	} else {
		double j = 1.0 + (LEASE_JITTER - 1.0) * backoff_random(&l->rng);
		delay = (uint64_t)((double)l->st.t.retry_ms * j);
	}
	uv_timer_start(&l->attempt_timer, on_attempt, delay, 0);
}

static void attempt(struct lease *l)
{
	if (l->closing || l->releasing || l->call)
		return;
	if (l->st.leading && !l->need_get) {
		char wall[LEASE_TIME_MAX + 1];
		lease_wall_now(wall);
		struct lease_record r;
		lease_renewal(&l->st, wall, &r);
		send_write(l, CALL_UPDATE, &r);
	} else {
		send_get(l, CALL_GET);
	}
}

static void on_attempt(uv_timer_t *t)
{
	attempt(t->data);
}

/* Logs a failure once per distinct message (the first one again after a
 * success), louder while leading. */
static void failed(struct lease *l, const char *what, const struct kube_result *res)
{
	l->failures++;
	char msg[256];
	snprintf(msg, sizeof msg, "%s the Lease %s/%s failed: %s", what, l->namespace, l->name,
		 res->message ? res->message : strerror(-res->error));
	if (strcmp(msg, l->last_error) == 0)
		return;
	snprintf(l->last_error, sizeof l->last_error, "%s", msg);
	if (res->status == 403)
		log_error("leader election: %s (runboat needs get, create and update on "
			  "leases.coordination.k8s.io in namespace %s)", msg, l->namespace);
	else if (l->st.leading)
		log_warn("leader election: %s; leading for at most %.1f s more unless a renewal "
			 "succeeds", msg,
			 (double)(lease_deadline(&l->st) > now_ms() ? lease_deadline(&l->st) - now_ms()
								      : 0) / 1000);
	else
		log_warn("leader election: %s; trying again", msg);
}

static void succeeded(struct lease *l)
{
	if (l->failures && l->last_error[0])
		log_info("leader election: the Lease %s/%s answers again", l->namespace, l->name);
	l->failures = 0;
	l->last_error[0] = '\0';
}

static void got(struct lease *l, const struct kube_result *res, uint64_t now)
{
	struct lease_record cur;
	const struct lease_record *cp = NULL;
	if (res->error == 0) {
		if (lease_record_from_json(res->body, default_duration_s(l), &cur) < 0) {
			struct kube_result bad = *res;
			bad.message = "the answer is not a Lease with a resourceVersion";
			failed(l, "reading", &bad);
			return;
		}
		cp = &cur;
	} else if (res->status != 404) {
		failed(l, "reading", res);
		return;
	}
	succeeded(l);
	l->need_get = false;
	bool was = l->st.leading;
	char wall[LEASE_TIME_MAX + 1];
	lease_wall_now(wall);
	struct lease_record out;
	enum lease_move m = lease_observe(&l->st, cp, now, wall, &out);
	if (was && !l->st.leading)
		l->lost_why = cp ? "another replica holds the Lease now" : "the Lease was deleted";
	if (m == LEASE_CREATE)
		send_write(l, CALL_CREATE, &out);
	else if (m == LEASE_UPDATE)
		send_write(l, CALL_UPDATE, &out);
}

static void wrote(struct lease *l, enum call_kind kind, const struct kube_result *res,
		  uint64_t now)
{
	if (res->error == 0) {
		struct lease_record w;
		if (lease_record_from_json(res->body, default_duration_s(l), &w) < 0) {
			/* it was written, but with what version? read it */
			w = l->sent;
			w.resource_version[0] = '\0';
			l->need_get = true;
		}
		succeeded(l);
		lease_won(&l->st, &w, l->call_sent_ms, now);
		return;
	}
	/* whatever it was, the version we hold may be stale now */
	l->need_get = true;
	if (res->status == 409) {
		/* another replica wrote first (or created it first) */
		log_debug("leader election: %s the Lease %s/%s: conflict, reading it again",
			  kind == CALL_CREATE ? "creating" : "updating", l->namespace, l->name);
		return;
	}
	failed(l, kind == CALL_CREATE ? "creating" : l->st.leading ? "renewing" : "taking over",
	       res);
}

static void release_finish(struct lease *l)
{
	lease_done_cb cb = l->release_cb;
	l->release_cb = NULL;
	if (cb)
		cb(l->release_data);
}

static void on_release_later(uv_timer_t *t)
{
	release_finish(t->data);
}

static void release_send(struct lease *l)
{
	char wall[LEASE_TIME_MAX + 1];
	lease_wall_now(wall);
	struct lease_record r;
	if (lease_release_record(&l->st, wall, &r))
		send_write(l, CALL_RELEASE, &r);
	if (!l->call)
		uv_timer_start(&l->attempt_timer, on_release_later, 0, 0);
}

/* An answer while releasing: the release itself, its re-read after a
 * conflict, or the call that was in flight when the release began. */
static void release_step(struct lease *l, enum call_kind kind, const struct kube_result *res,
			 uint64_t now)
{
	switch (kind) {
	case CALL_RELEASE:
		if (res->error == 0) {
			log_info("leader election: released the Lease %s/%s", l->namespace, l->name);
		} else if (res->status == 409 && !l->release_retried) {
			l->release_retried = true;
			send_get(l, CALL_RELEASE_GET);
			if (l->call)
				return;
		} else {
			log_warn("leader election: releasing the Lease %s/%s failed: %s; a standby "
				 "takes over when it expires", l->namespace, l->name,
				 res->message ? res->message : strerror(-res->error));
		}
		release_finish(l);
		return;
	case CALL_RELEASE_GET: {
		struct lease_record cur;
		if (res->error == 0 &&
		    lease_record_from_json(res->body, default_duration_s(l), &cur) == 0) {
			l->st.observed = cur;
			l->st.have_observed = true;
			release_send(l);
			return;
		}
		release_finish(l);
		return;
	}
	case CALL_CREATE:
	case CALL_UPDATE:
		/* a write that made it: release what it wrote */
		if (res->error == 0) {
			struct lease_record w;
			if (lease_record_from_json(res->body, default_duration_s(l), &w) == 0)
				lease_won(&l->st, &w, l->call_sent_ms, now);
		}
		l->st.leading = false;
		release_send(l);
		return;
	default:
		release_send(l);
		return;
	}
}

static void on_call_done(const struct kube_result *res, void *data)
{
	struct lease *l = data;
	enum call_kind kind = l->call_kind;
	l->call = NULL;
	l->call_kind = CALL_NONE;
	if (l->closing) {
		maybe_free(l);
		return;
	}
	uint64_t now = now_ms();
	if (l->releasing) {
		release_step(l, kind, res, now);
		return;
	}
	if (res->error == -ECANCELED)
		return;
	if (kind == CALL_GET)
		got(l, res, now);
	else
		wrote(l, kind, res, now);
	/* a write just sent after a read says more soon; a leader that read
	 * another holder stops at once */
	if (!l->call || l->told_leading != l->st.leading)
		tell(l);
	schedule(l, now);
}

static void on_deadline(uv_timer_t *t)
{
	struct lease *l = t->data;
	tell(l);
}

/* Tells cb what changed, logs it, and keeps the deadline timer on the
 * leader's deadline. */
static void tell(struct lease *l)
{
	uint64_t now = now_ms();
	bool was = l->st.leading;
	bool leading = lease_check(&l->st, now);
	if (was && !leading)
		l->lost_why = "not renewed within the renew deadline";
	const char *holder = lease_state_holder(&l->st);
	if (leading) {
		uint64_t d = lease_deadline(&l->st);
		uv_timer_start(&l->deadline_timer, on_deadline, d > now ? d - now : 0, 0);
	} else {
		uv_timer_stop(&l->deadline_timer);
	}
	if (l->told_once && leading == l->told_leading &&
	    (leading || strcmp(holder, l->told_holder) == 0))
		return;
	bool first = !l->told_once;
	l->told_once = true;
	if (leading) {
		log_info("leader election: became leader (Lease %s/%s, identity %s, %lld transitions)",
			 l->namespace, l->name, l->st.identity, (long long)l->st.observed.transitions);
	} else if (l->told_leading) {
		log_warn("leader election: lost leadership (Lease %s/%s): %s; every action stops",
			 l->namespace, l->name, l->lost_why ? l->lost_why : "?");
	}
	if (!leading && holder[0] && strcmp(holder, l->st.identity) != 0)
		log_info("leader election: standby: leader is %s", holder);
	else if (!leading && first)
		log_info("leader election: standby: no leader yet");
	l->told_leading = leading;
	copy_str(l->told_holder, sizeof l->told_holder, holder);
	l->cb(leading, holder, l->data);
}

struct lease *lease_new(uv_loop_t *loop, struct kube *kube, const struct lease_opts *o,
			lease_change_cb cb, void *data)
{
	struct lease *l = xcalloc(1, sizeof *l);
	l->loop = loop;
	l->kube = kube;
	l->namespace = xstrdup(o->namespace);
	l->name = xstrdup(o->name);
	l->collection = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases", o->namespace);
	l->path = xasprintf("%s/%s", l->collection, o->name);
	lease_state_init(&l->st, &o->timing, o->identity);
	l->cb = cb;
	l->data = data;
	l->rng = backoff_seed();
	uv_timer_init(loop, &l->attempt_timer);
	uv_timer_init(loop, &l->deadline_timer);
	l->attempt_timer.data = l->deadline_timer.data = l;
	l->open_handles = 2;
	return l;
}

void lease_start(struct lease *l)
{
	if (l->started || l->closing)
		return;
	l->started = true;
	log_info("leader election: Lease %s/%s, identity %s, lease %.1f s, renew deadline %.1f s, "
		 "retry %.1f s", l->namespace, l->name, l->st.identity,
		 (double)l->st.t.duration_ms / 1000, (double)l->st.t.renew_deadline_ms / 1000,
		 (double)l->st.t.retry_ms / 1000);
	attempt(l);
}

bool lease_leading(const struct lease *l)
{
	return l->st.leading;
}

const char *lease_holder(const struct lease *l)
{
	return lease_state_holder(&l->st);
}

void lease_release(struct lease *l, lease_done_cb done, void *data)
{
	if (l->closing || l->releasing)
		return;
	l->releasing = true;
	l->release_cb = done;
	l->release_data = data;
	uv_timer_stop(&l->attempt_timer);
	uv_timer_stop(&l->deadline_timer);
	if (l->st.leading) {
		l->st.leading = false;
		l->told_leading = false;
		log_info("leader election: stepping down (shutdown): every action stops, releasing "
			 "the Lease %s/%s", l->namespace, l->name);
		l->cb(false, "", l->data);
	}
	if (l->call) {
		kube_cancel(l->call); /* on_call_done then releases */
		return;
	}
	release_send(l);
}

void lease_free(struct lease *l)
{
	if (!l || l->closing)
		return;
	l->closing = true;
	l->release_cb = NULL;
	if (l->call)
		kube_cancel(l->call);
	uv_close((uv_handle_t *)&l->attempt_timer, on_closed);
	uv_close((uv_handle_t *)&l->deadline_timer, on_closed);
}
