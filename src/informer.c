#include "informer.h"

#include "backoff.h"
#include "hmap.h"
#include "json_skim.h"
#include "kube.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PAGE_SIZE 500
#define DEFAULT_TIMEOUT_MIN_S 300
#define DEFAULT_TIMEOUT_MAX_S 600
#define DEFAULT_SILENCE_MARGIN_MS 30000
/* how often a watch looks at the client's count of dead connections, and
 * how long it must have been quiet to be suspected with them */
#define PROBE_MS 1000
#define PROBE_QUIET_MS 1000
#define DEFAULT_HEALTHY_MS 60000
/* how often routine re-watches of quiet watches (the bookmark rule) are
 * logged at info level; the others go to debug */
#define QUIET_LOG_MS (10 * 60 * 1000)
#define MAX_NAME 253
#define MAX_NAMESPACE 63
#define KEY_MAX (MAX_NAMESPACE + 1 + MAX_NAME + 1)
#define MAX_RV 64

/* One cached object, in the cache's hash map by key. */
struct entry {
	struct hnode hn; /* hn.key is key */
	unsigned gen; /* the re-list that saw it last */
	json_t *obj;  /* owned reference */
	char key[];   /* "namespace/name" */
};

enum step { STEP_BEGIN, STEP_LIST, STEP_WATCH };
enum call_kind { CALL_NONE, CALL_LIST, CALL_WATCH };
enum cancel_reason { CANCEL_NONE, CANCEL_EVENT, CANCEL_SILENT, CANCEL_STOP };

/* How often a list refused by RBAC (403) is logged again while it lasts. */
#define INFORMER_FORBIDDEN_LOG_MS (10 * 60 * 1000)

struct informer {
	uv_loop_t *loop;
	struct kube *kube;
	struct informer_callbacks cb;
	/* options (strings owned) */
	char *api_version, *kind, *namespace, *label_selector, *field_selector;
	int page_size, timeout_min_s, timeout_max_s;
	long silence_margin_ms, healthy_ms;
	bool keep_managed_fields;
	char **keep; /* NULL-terminated, or NULL: every member */
	bool slim_cache;
	char *desc; /* for logs: "Deployment apps/v1 in b-ns [runboat/build]" */

	/* the cache */
	struct hmap cache; /* struct entry by key */
	unsigned gen;
	char *rv;
	bool synced;
	/* a list's pages were applied and its end not reached yet: the cache
	 * mixes that list's objects with older ones, so the next step is a
	 * list, never a watch from rv */
	bool list_open;
	size_t list_skipped; /* items of the list in progress without a valid name */

	/* the machinery */
	bool running, freeing, timers_init;
	unsigned epoch; /* bumped by stop/free: callbacks of an older epoch are dropped */
	int busy;       /* dispatch depth: no free while > 0 */
	int open_handles;
	struct kube_call *call;
	enum call_kind call_kind;
	bool list_broken; /* a page of the list in progress was not a List */
	bool call_cancelled;
	enum cancel_reason cancel_reason;
	bool ev_expired, ev_errored, ev_broken; /* what the current watch saw */
	uint64_t watch_started_ms, last_activity_ms;
	unsigned long watch_events;
	int watch_timeout_s;
	enum step next_step;
	uv_timer_t retry_timer;
	uv_timer_t watchdog;
	uint64_t seen_dead_conns; /* kube_dead_connections() when last looked at */
	/* periodic bookmarks: the shortest gap seen between a watch's start or
	 * periodic bookmark and its next one (0: none seen yet, the
	 * timeoutSeconds rule alone applies), and when this watch had its last */
	uint64_t bookmark_period_ms, last_bookmark_ms;
	uint64_t quiet_logged_ms;     /* last bookmark-rule re-watch logged, 0: none */
	unsigned long quiet_unlogged; /* bookmark-rule re-watches since, not logged */
	struct backoff backoff;
	uint64_t rng;
	struct informer_stats stats;
	uint64_t forbidden_logged_ms; /* last 403 of a list logged, 0: none */
};

/* ------------------------------------------------------------ pure parts -- */

bool informer_valid_rv(const char *s)
{
	if (!s || !*s)
		return false;
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= MAX_RV)
			return false;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

bool informer_watch_healthy(uint64_t started_ms, uint64_t ended_ms, unsigned long events,
			    long healthy_ms)
{
	if (events > 0)
		return true;
	uint64_t need = (uint64_t)(healthy_ms > 0 ? healthy_ms : 0);
	return ended_ms >= started_ms && ended_ms - started_ms >= need;
}

uint64_t informer_silence_deadline(uint64_t last_activity_ms, int timeout_s, long margin_ms,
				   uint64_t bookmark_period_ms)
{
	uint64_t margin = (uint64_t)(margin_ms > 0 ? margin_ms : 0);
	uint64_t d = last_activity_ms + (uint64_t)(timeout_s > 0 ? timeout_s : 0) * 1000 + margin;
	if (bookmark_period_ms > 0) {
		uint64_t p = bookmark_period_ms > INFORMER_MIN_BOOKMARK_PERIOD_MS
				     ? bookmark_period_ms
				     : INFORMER_MIN_BOOKMARK_PERIOD_MS;
		uint64_t b = last_activity_ms + 2 * p + margin;
		if (b < d)
			d = b;
	}
	return d;
}

bool informer_periodic_bookmark(uint64_t started_ms, uint64_t now_ms, int timeout_s)
{
	uint64_t end = started_ms + (uint64_t)(timeout_s > 0 ? timeout_s : 0) * 1000;
	return now_ms >= started_ms && now_ms + INFORMER_END_BOOKMARK_SLACK_MS < end;
}

uint64_t informer_bookmark_period(uint64_t period_ms, uint64_t prev_ms, uint64_t now_ms)
{
	if (now_ms <= prev_ms)
		return period_ms; /* clock oddity: nothing learnt */
	uint64_t gap = now_ms - prev_ms;
	return !period_ms || gap < period_ms ? gap : period_ms;
}

int informer_watch_timeout(uint64_t *rng, int min_s, int max_s)
{
	if (min_s > max_s) {
		int t = min_s;
		min_s = max_s;
		max_s = t;
	}
	if (min_s < 1)
		min_s = 1;
	if (max_s < min_s)
		max_s = min_s;
	int span = max_s - min_s + 1;
	int r = (int)(backoff_random(rng) * span);
	return min_s + (r >= span ? span - 1 : r);
}

enum informer_action informer_watch_next(const struct informer_watch_end *e)
{
	if (e->expired || (e->error == -EREMOTEIO && e->status == 410))
		return INFORMER_RELIST;
	if (e->broken || e->error == -EPROTO)
		return INFORMER_RELIST;
	if (e->silenced || e->errored)
		return INFORMER_REWATCH_BACKOFF;
	if (e->error == -ECANCELED)
		return INFORMER_HALT; /* nobody here cancelled it: the client is closing */
	if (e->error == 0)
		return e->healthy ? INFORMER_REWATCH : INFORMER_REWATCH_BACKOFF;
	return INFORMER_REWATCH_BACKOFF;
}

/* ------------------------------------------------------------- the cache -- */

static uint64_t key_hash(const struct informer *inf, const char *key)
{
	return hmap_hash(&inf->cache, key);
}

static struct entry *cache_find(const struct informer *inf, const char *key, uint64_t h)
{
	struct hnode *n = hmap_find_hashed(&inf->cache, key, h);
	return n ? CONTAINER_OF(n, struct entry, hn) : NULL;
}

/* Inserts key (absent) holding obj (a new reference is taken). */
static struct entry *cache_insert(struct informer *inf, const char *key, json_t *obj)
{
	size_t len = strlen(key);
	struct entry *e = xmalloc(sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	e->hn.key = e->key;
	e->gen = inf->gen;
	e->obj = json_incref(obj);
	hmap_insert(&inf->cache, &e->hn);
	return e;
}

/* Unlinks e and returns its object (the caller owns the reference). */
static json_t *cache_remove(struct informer *inf, struct entry *e)
{
	hmap_remove(&inf->cache, &e->hn);
	json_t *obj = e->obj;
	free(e);
	return obj;
}

static void cache_clear(struct informer *inf)
{
	struct hnode *n, *next;
	hmap_each_safe(n, next, &inf->cache) {
		struct entry *e = CONTAINER_OF(n, struct entry, hn);
		json_decref(e->obj);
		free(e);
	}
	hmap_free_buckets(&inf->cache);
}

static const char *meta_str(const json_t *obj, const char *field)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), field));
}

static bool valid_name(const char *s, size_t max)
{
	if (!s)
		return false;
	size_t n = strnlen(s, max + 1);
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || s[i] == '/' || s[i] == 0x7f)
			return false;
	return true;
}

/* "namespace/name" of obj into key (KEY_MAX bytes). Returns 0 or -EPROTO. */
static int object_key(const json_t *obj, char *key)
{
	const char *name = meta_str(obj, "name");
	const char *ns = meta_str(obj, "namespace");
	if (!ns)
		ns = "";
	if (!name || !*name || !valid_name(name, MAX_NAME) || !valid_name(ns, MAX_NAMESPACE))
		return -EPROTO;
	snprintf(key, KEY_MAX, "%s/%s", ns, name);
	return 0;
}

static bool same_str(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Callbacks run only while the informer is alive and not stopped since the
 * dispatch began (epoch). */
static bool live(const struct informer *inf, unsigned epoch)
{
	return !inf->freeing && inf->epoch == epoch;
}

static void emit_add(struct informer *inf, unsigned epoch, json_t *obj)
{
	if (inf->cb.on_add && live(inf, epoch))
		inf->cb.on_add(inf, obj, inf->cb.data);
}

static void emit_update(struct informer *inf, unsigned epoch, json_t *old, json_t *obj)
{
	if (inf->cb.on_update && live(inf, epoch))
		inf->cb.on_update(inf, old, obj, inf->cb.data);
}

static void emit_delete(struct informer *inf, unsigned epoch, json_t *obj)
{
	if (inf->cb.on_delete && live(inf, epoch))
		inf->cb.on_delete(inf, obj, inf->cb.data);
}

/* Is member (or member.field, field non-NULL) in the keep list? */
static bool kept(char *const *keep, const char *member, const char *field)
{
	size_t ml = strlen(member);
	for (; *keep; keep++) {
		const char *k = *keep;
		if (strncmp(k, member, ml) != 0)
			continue;
		if (!field && k[ml] == '\0')
			return true;
		if (field && k[ml] == '.' && strcmp(k + ml + 1, field) == 0)
			return true;
	}
	return false;
}

/* Does the keep list name fields of member ("member.x")? */
static bool kept_fields(char *const *keep, const char *member)
{
	size_t ml = strlen(member);
	for (; *keep; keep++)
		if (strncmp(*keep, member, ml) == 0 && (*keep)[ml] == '.')
			return true;
	return false;
}

/* What the cache keeps of an object. */
static void trim(const struct informer *inf, json_t *obj)
{
	if (!inf->keep_managed_fields)
		json_object_del(json_object_get(obj, "metadata"), "managedFields");
	if (!inf->keep || !json_is_object(obj))
		return;
	const char *key;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(obj, tmp, key, v) {
		if (!strcmp(key, "metadata") || !strcmp(key, "kind") || !strcmp(key, "apiVersion") ||
		    kept(inf->keep, key, NULL))
			continue;
		if (!json_is_object(v) || !kept_fields(inf->keep, key)) {
			json_object_del(obj, key);
			continue;
		}
		const char *fk;
		json_t *fv;
		void *ftmp;
		json_object_foreach_safe(v, ftmp, fk, fv) {
			if (!kept(inf->keep, key, fk))
				json_object_del(v, fk);
		}
	}
}

/* With slim_cache, once the callbacks have seen obj: the cached entry of key
 * (if it still holds obj) keeps only what the informer itself and a
 * deletion need. */
static void slim(struct informer *inf, const char *key, uint64_t h, json_t *obj)
{
	if (!inf->slim_cache || inf->freeing)
		return;
	struct entry *e = cache_find(inf, key, h);
	if (!e || e->obj != obj)
		return;
	static const char *const kept_meta[] = {"name", "namespace", "resourceVersion", "uid",
						"labels", "creationTimestamp"};
	json_t *md = json_object_get(obj, "metadata"), *smd = json_object();
	for (size_t i = 0; i < ARRAY_SIZE(kept_meta); i++) {
		json_t *v = json_object_get(md, kept_meta[i]);
		if (v)
			json_object_set(smd, kept_meta[i], v); /* shared, not copied */
	}
	json_t *s = json_object();
	json_object_set_new(s, "metadata", smd);
	e->obj = s;
	json_decref(obj);
}

/* Stores obj under key (replacing what was there) and reports the change. */
static void upsert(struct informer *inf, unsigned epoch, const char *key, json_t *obj)
{
	trim(inf, obj);
	uint64_t h = key_hash(inf, key);
	struct entry *e = cache_find(inf, key, h);
	if (!e) {
		cache_insert(inf, key, obj);
		emit_add(inf, epoch, obj);
		slim(inf, key, h, obj);
		return;
	}
	e->gen = inf->gen;
	json_t *old = e->obj;
	const char *old_uid = meta_str(old, "uid"), *uid = meta_str(obj, "uid");
	if (old_uid && uid && strcmp(old_uid, uid) != 0) {
		/* the same name, another object: it was deleted and re-created */
		e->obj = json_incref(obj);
		emit_delete(inf, epoch, old);
		emit_add(inf, epoch, obj);
		json_decref(old);
		slim(inf, key, h, obj);
		return;
	}
	if (old == obj || same_str(meta_str(old, "resourceVersion"), meta_str(obj, "resourceVersion")))
		return; /* nothing new */
	e->obj = json_incref(obj);
	emit_update(inf, epoch, old, obj);
	json_decref(old);
	slim(inf, key, h, obj);
}

static void set_rv(struct informer *inf, const char *rv)
{
	if (inf->rv && strcmp(inf->rv, rv) == 0)
		return;
	free(inf->rv);
	inf->rv = xstrdup(rv);
}

/* A list begins: the objects its pages hold are marked with a new
 * generation, so that its end can tell which cached objects it no longer
 * holds. */
static void list_begin(struct informer *inf)
{
	inf->gen++;
	inf->list_skipped = 0;
}

/* Applies one page of the list in progress: add or update for each item,
 * at once (the callbacks see each object while its page is parsed; the
 * cache keeps only what it must). Items without a valid name are counted
 * and skipped. Returns false if a callback stopped or freed the informer
 * (the rest of the page is not applied). */
static bool list_apply_item(struct informer *inf, unsigned epoch, json_t *item)
{
	char key[KEY_MAX];
	if (!json_is_object(item) || object_key(item, key) < 0) {
		inf->list_skipped++;
		return true;
	}
	/* from here until list_end, the cache mixes this list's objects with
	 * older ones: only a complete list may be watched from (run_step) */
	inf->list_open = true;
	upsert(inf, epoch, key, item);
	return live(inf, epoch);
}

static bool list_apply_items(struct informer *inf, unsigned epoch, json_t *items)
{
	size_t i;
	json_t *item;
	json_array_foreach(items, i, item) {
		if (!list_apply_item(inf, epoch, item))
			return false;
	}
	return true;
}

/* A member's key as a C string: in buf when written without escapes
 * (and short), else decoded into *own (a new string). NULL if invalid. */
static const char *key_name(const char *key, size_t klen, bool esc, char *buf, size_t size,
			    json_t **own)
{
	*own = NULL;
	if (!esc && klen < size) {
		memcpy(buf, key, klen); /* no NUL: control characters are refused */
		buf[klen] = '\0';
		return buf;
	}
	*own = json_skim_key(key, klen, esc);
	return json_string_value(*own);
}

/* What the cache keeps of one member of an object being parsed. */
enum pick { PICK_SKIP, PICK_WHOLE, PICK_FIELDS };

/* For member name (object: its value is an object) of an item (member
 * NULL), or of the item's object member: what trim() would leave of it.
 * Only an item's members may be PICK_FIELDS: metadata without
 * managedFields, or an object whose fields the keep list names. */
static enum pick pick(const struct informer *inf, const char *member, const char *name,
		      bool object)
{
	if (member)
		return (strcmp(member, "metadata") == 0 ? strcmp(name, "managedFields") != 0
							: kept(inf->keep, member, name))
			       ? PICK_WHOLE
			       : PICK_SKIP;
	if (!strcmp(name, "metadata") && object && !inf->keep_managed_fields)
		return PICK_FIELDS;
	if (!inf->keep || !strcmp(name, "metadata") || !strcmp(name, "kind") ||
	    !strcmp(name, "apiVersion") || kept(inf->keep, name, NULL))
		return PICK_WHOLE;
	return object && kept_fields(inf->keep, name) ? PICK_FIELDS : PICK_SKIP;
}

/* The object text of an item (member NULL), or of the item's object
 * member, with only what the cache keeps (pick): the rest is only
 * skimmed over (json_skim.h), never built. NULL if malformed. */
static json_t *parse_kept(const struct informer *inf, const char *member, const char *text,
			  size_t len)
{
	struct json_skim it;
	const char *key, *val;
	size_t klen, vlen;
	bool esc;
	int r;
	if (json_skim_open(&it, text, len, '{') < 0)
		return NULL;
	json_t *o = json_object();
	while ((r = json_skim_member(&it, &key, &klen, &esc, &val, &vlen)) > 0) {
		char buf[128];
		json_t *own;
		const char *name = key_name(key, klen, esc, buf, sizeof buf, &own);
		if (!name) {
			r = -EPROTO;
			break;
		}
		enum pick p = pick(inf, member, name, vlen && val[0] == '{');
		json_t *v = p == PICK_WHOLE    ? json_skim_parse(val, vlen)
			    : p == PICK_FIELDS ? parse_kept(inf, name, val, vlen)
					       : NULL;
		if (p != PICK_SKIP && !v) {
			json_decref(own);
			r = -EPROTO;
			break;
		}
		if (v)
			json_object_set_new(o, name, v);
		json_decref(own);
	}
	if (r < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Parses a listed item's JSON text into what trim() would leave of it,
 * without building the rest. Returns a new reference, or NULL if the text
 * is not a valid JSON object. */
static json_t *parse_item(const struct informer *inf, const char *text, size_t len)
{
	if (!inf->keep && inf->keep_managed_fields) {
		json_t *o = json_skim_parse(text, len);
		if (!json_is_object(o)) {
			json_decref(o);
			return NULL;
		}
		return o;
	}
	return parse_kept(inf, NULL, text, len);
}

/* Applies the items of a list page's JSON text one at a time, each parsed
 * as the cache keeps it (given the apiVersion and kind that list items
 * lack) and applied before the next is parsed. Returns 0, 1 if a callback
 * stopped or freed the informer, -EPROTO if the page is not an object with
 * an items array or an item is malformed (the items before it were
 * applied). */
static int list_apply_text(struct informer *inf, unsigned epoch, const char *text, size_t len)
{
	struct json_skim page, items;
	const char *key, *val, *ival;
	size_t klen, vlen, ilen;
	bool esc, seen = false;
	int r;
	if (json_skim_open(&page, text, len, '{') < 0)
		return -EPROTO;
	while ((r = json_skim_member(&page, &key, &klen, &esc, &val, &vlen)) > 0) {
		if (!json_skim_key_is(key, klen, esc, "items"))
			continue;
		if (json_skim_open(&items, val, vlen, '[') < 0)
			return -EPROTO;
		seen = true;
		while ((r = json_skim_element(&items, &ival, &ilen)) > 0) {
			json_t *item = parse_item(inf, ival, ilen);
			if (!item)
				return -EPROTO;
			if (!json_object_get(item, "apiVersion"))
				json_object_set_new(item, "apiVersion", json_string(inf->api_version));
			if (!json_object_get(item, "kind"))
				json_object_set_new(item, "kind", json_string(inf->kind));
			bool go_on = list_apply_item(inf, epoch, item);
			json_decref(item);
			if (!go_on)
				return 1;
		}
		if (r < 0)
			return -EPROTO;
	}
	return r < 0 || !seen ? -EPROTO : 0;
}

/* The list's last page was applied: what the list did not hold is gone
 * (delete for each), then its resourceVersion is stored and, the first
 * time, on_synced is called. Returns 0, or -EPROTO (nothing done) if rv is
 * not a valid resourceVersion. Stopped or freed by a callback: returns 0,
 * the rest waits for the next list. */
static int list_end(struct informer *inf, unsigned epoch, const char *rv)
{
	if (!informer_valid_rv(rv)) {
		log_warn("informer %s: the list answer is not a List with a resourceVersion",
			 inf->desc);
		return -EPROTO;
	}
	if (inf->list_skipped)
		log_warn("informer %s: %zu listed item(s) without a valid name ignored", inf->desc,
			 inf->list_skipped);
	/* the sweep: what the list no longer holds is gone */
	size_t n = 0, cap = 0;
	struct entry **gone = NULL;
	struct hnode *hn;
	hmap_each(hn, &inf->cache) {
		struct entry *e = CONTAINER_OF(hn, struct entry, hn);
		if (e->gen == inf->gen)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			gone = xrealloc(gone, cap * sizeof(*gone));
		}
		gone[n++] = e;
	}
	for (size_t k = 0; k < n; k++) {
		json_t *old = cache_remove(inf, gone[k]);
		emit_delete(inf, epoch, old);
		json_decref(old);
		if (!live(inf, epoch)) {
			/* stopped: the rest stays cached (and the resourceVersion
			 * old), so the next list sweeps it with callbacks */
			free(gone);
			return 0;
		}
	}
	free(gone);
	set_rv(inf, rv);
	inf->list_open = false;
	inf->stats.lists_ok++;
	if (!inf->synced) {
		inf->synced = true;
		if (inf->cb.on_synced && live(inf, epoch))
			inf->cb.on_synced(inf, inf->cb.data);
	}
	return 0;
}

static int replace_locked(struct informer *inf, json_t *list)
{
	json_t *items = json_object_get(list, "items");
	const char *rv = meta_str(list, "resourceVersion");
	if (!json_is_array(items) || !informer_valid_rv(rv)) {
		log_warn("informer %s: the list answer is not a List with a resourceVersion",
			 inf->desc);
		return -EPROTO;
	}
	unsigned epoch = inf->epoch;
	list_begin(inf);
	if (!list_apply_items(inf, epoch, items))
		return 0; /* stopped meanwhile: the rest waits for the next list */
	return list_end(inf, epoch, rv);
}

static int apply_locked(struct informer *inf, const char *type, json_t *obj)
{
	if (!type || !json_is_object(obj)) {
		log_warn("informer %s: watch event without a type or an object", inf->desc);
		return -EPROTO;
	}
	if (strcmp(type, "ERROR") == 0) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		const char *reason = json_string_value(json_object_get(obj, "reason"));
		const char *msg = json_string_value(json_object_get(obj, "message"));
		if (code == 410 || same_str(reason, "Expired") || same_str(reason, "Gone")) {
			log_info("informer %s: resourceVersion %s expired (%s): re-listing", inf->desc,
				 inf->rv ? inf->rv : "-", msg ? msg : "410");
			inf->stats.expired++;
			return -ESTALE;
		}
		log_warn("informer %s: watch error %lld %s: %s", inf->desc, (long long)code,
			 reason ? reason : "", msg ? msg : "(no message)");
		return -EREMOTEIO;
	}
	bool bookmark = strcmp(type, "BOOKMARK") == 0;
	bool added = strcmp(type, "ADDED") == 0, modified = strcmp(type, "MODIFIED") == 0;
	bool deleted = strcmp(type, "DELETED") == 0;
	if (!bookmark && !added && !modified && !deleted) {
		log_warn("informer %s: unknown watch event type \"%.32s\" ignored", inf->desc, type);
		inf->stats.ignored++;
		return 0;
	}
	const char *rv = meta_str(obj, "resourceVersion");
	if (!informer_valid_rv(rv)) {
		log_warn("informer %s: %s event without a valid resourceVersion", inf->desc, type);
		return -EPROTO;
	}
	if (bookmark) {
		set_rv(inf, rv);
		inf->stats.bookmarks++;
		return 0;
	}
	char key[KEY_MAX];
	if (object_key(obj, key) < 0) {
		log_warn("informer %s: %s event for an object without a valid name", inf->desc,
			 type);
		return -EPROTO;
	}
	unsigned epoch = inf->epoch;
	/* the stored resourceVersion first: a callback sees where we are */
	set_rv(inf, rv);
	inf->stats.events++;
	if (deleted) {
		uint64_t h = key_hash(inf, key);
		struct entry *e = cache_find(inf, key, h);
		if (!e)
			return 0; /* not known: nothing to report */
		json_t *old = cache_remove(inf, e);
		trim(inf, obj);
		emit_delete(inf, epoch, obj);
		json_decref(old);
		return 0;
	}
	upsert(inf, epoch, key, obj);
	return 0;
}

/* ------------------------------------------------------------ lifetimes -- */

static void destroy(struct informer *inf)
{
	cache_clear(inf);
	free(inf->rv);
	free(inf->api_version);
	free(inf->kind);
	free(inf->namespace);
	free(inf->label_selector);
	free(inf->field_selector);
	for (char **k = inf->keep; k && *k; k++)
		free(*k);
	free(inf->keep);
	free(inf->desc);
	free(inf);
}

/* Frees a freeing informer once nothing refers to it any more. Returns true
 * if it did. */
static bool maybe_free(struct informer *inf)
{
	if (!inf->freeing || inf->busy > 0 || inf->call || inf->open_handles > 0)
		return false;
	destroy(inf);
	return true;
}

int informer_replace(struct informer *inf, json_t *list)
{
	inf->busy++;
	int r = replace_locked(inf, list);
	inf->busy--;
	maybe_free(inf);
	return r;
}

void informer_list_begin(struct informer *inf)
{
	list_begin(inf);
}

int informer_list_page(struct informer *inf, json_t *page)
{
	json_t *items = json_object_get(page, "items");
	if (!json_is_array(items))
		return -EPROTO;
	inf->busy++;
	list_apply_items(inf, inf->epoch, items);
	inf->busy--;
	maybe_free(inf);
	return 0;
}

int informer_list_page_text(struct informer *inf, const char *text, size_t len)
{
	inf->busy++;
	int r = list_apply_text(inf, inf->epoch, text, len);
	inf->busy--;
	maybe_free(inf);
	return r < 0 ? r : 0;
}

int informer_list_end(struct informer *inf, const char *rv)
{
	inf->busy++;
	int r = list_end(inf, inf->epoch, rv);
	inf->busy--;
	maybe_free(inf);
	return r;
}

int informer_apply_event(struct informer *inf, const char *type, json_t *obj)
{
	inf->busy++;
	int r = apply_locked(inf, type, obj);
	inf->busy--;
	maybe_free(inf);
	return r;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

struct informer *informer_new(uv_loop_t *loop, struct kube *k, const struct informer_opts *o,
			      const struct informer_callbacks *cb)
{
	if (!o || !o->api_version || !*o->api_version || !o->kind || !*o->kind)
		return NULL;
	struct informer *inf = xcalloc(1, sizeof(*inf));
	inf->loop = loop;
	inf->kube = k;
	if (cb)
		inf->cb = *cb;
	inf->api_version = xstrdup(o->api_version);
	inf->kind = xstrdup(o->kind);
	inf->namespace = dup_or_null(o->namespace);
	inf->label_selector = dup_or_null(o->label_selector);
	inf->field_selector = dup_or_null(o->field_selector);
	inf->page_size = o->page_size > 0 ? o->page_size : DEFAULT_PAGE_SIZE;
	inf->timeout_min_s = o->watch_timeout_min_s > 0 ? o->watch_timeout_min_s
							 : DEFAULT_TIMEOUT_MIN_S;
	inf->timeout_max_s = o->watch_timeout_max_s > 0 ? o->watch_timeout_max_s
							 : DEFAULT_TIMEOUT_MAX_S;
	inf->silence_margin_ms = o->silence_margin_ms > 0 ? o->silence_margin_ms
							  : DEFAULT_SILENCE_MARGIN_MS;
	inf->healthy_ms = o->healthy_ms > 0 ? o->healthy_ms : DEFAULT_HEALTHY_MS;
	inf->keep_managed_fields = o->keep_managed_fields;
	inf->slim_cache = o->slim_cache;
	if (o->keep) {
		size_t n = 0;
		while (o->keep[n])
			n++;
		inf->keep = xcalloc(n + 1, sizeof *inf->keep);
		for (size_t i = 0; i < n; i++)
			inf->keep[i] = xstrdup(o->keep[i]);
	}
	uint64_t seed = o->seed ? o->seed : backoff_seed();
	backoff_init(&inf->backoff, o->backoff_base_ms > 0 ? (uint64_t)o->backoff_base_ms : 0,
		     o->backoff_max_ms > 0 ? (uint64_t)o->backoff_max_ms : 0, -1, seed);
	inf->rng = seed ^ 0x5851f42d4c957f2dULL;
	hmap_init(&inf->cache, seed * 0x9e3779b97f4a7c15ULL);
	inf->desc = xasprintf("%s %s in %s%s%s%s", inf->kind, inf->api_version,
			      inf->namespace ? inf->namespace : "all namespaces",
			      inf->label_selector ? " [" : "",
			      inf->label_selector ? inf->label_selector : "",
			      inf->label_selector ? "]" : "");
	return inf;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct informer *inf = h->data;
	inf->open_handles--;
	maybe_free(inf);
}

static void cancel_call(struct informer *inf, enum cancel_reason reason)
{
	if (!inf->call)
		return;
	if (reason == CANCEL_STOP || inf->cancel_reason == CANCEL_NONE)
		inf->cancel_reason = reason;
	if (!inf->call_cancelled) {
		inf->call_cancelled = true;
		kube_cancel(inf->call);
	}
}

void informer_stop(struct informer *inf)
{
	if (!inf)
		return;
	inf->running = false;
	inf->epoch++;
	cancel_call(inf, CANCEL_STOP);
	if (inf->timers_init) {
		uv_timer_stop(&inf->retry_timer);
		uv_timer_stop(&inf->watchdog);
	}
}

void informer_free(struct informer *inf)
{
	if (!inf || inf->freeing)
		return;
	informer_stop(inf);
	inf->freeing = true;
	if (inf->timers_init) {
		inf->open_handles += 2;
		uv_close((uv_handle_t *)&inf->retry_timer, on_timer_closed);
		uv_close((uv_handle_t *)&inf->watchdog, on_timer_closed);
	}
	maybe_free(inf);
}

/* ------------------------------------------------------- list and watch -- */

static void run_step(struct informer *inf, enum step s);

static void on_retry(uv_timer_t *t)
{
	struct informer *inf = t->data;
	if (inf->freeing || !inf->running || inf->call)
		return; /* a cancelled call still completing re-schedules us */
	run_step(inf, inf->next_step);
}

static void schedule(struct informer *inf, enum step s, uint64_t delay_ms)
{
	inf->next_step = s;
	uv_timer_start(&inf->retry_timer, on_retry, delay_ms, 0);
}

static uint64_t next_delay(struct informer *inf, bool healthy)
{
	if (healthy)
		backoff_reset(&inf->backoff);
	inf->stats.last_delay_ms = backoff_next(&inf->backoff);
	return inf->stats.last_delay_ms;
}

/* After a call we cancelled on informer_stop completed: a start may have
 * happened since. */
static void resume_if_started(struct informer *inf)
{
	if (inf->running && !uv_is_active((uv_handle_t *)&inf->retry_timer))
		schedule(inf, STEP_BEGIN, 0);
}

/* A page of the list in progress: its items are parsed and applied one at
 * a time (add or update), so that only the objects the cache keeps outlive
 * the page; what the list no longer holds is deleted after its last page. */
static bool on_list_page(const char *text, size_t len, void *data)
{
	struct informer *inf = data;
	if (inf->freeing || inf->call_cancelled)
		return true; /* the cancellation ends the call */
	inf->busy++;
	int r = list_apply_text(inf, inf->epoch, text, len);
	inf->busy--;
	if (r < 0 && !inf->freeing && !inf->call_cancelled) {
		log_warn("informer %s: a list page is not a List of valid objects", inf->desc);
		inf->list_broken = true;
		cancel_call(inf, CANCEL_EVENT);
	}
	return true; /* a stop or free in a callback cancelled the call */
}

static void on_list_done(const struct kube_result *res, void *data)
{
	struct informer *inf = data;
	enum cancel_reason reason = inf->cancel_reason;
	bool broken = inf->list_broken;
	inf->list_broken = false;
	inf->call = NULL;
	inf->call_kind = CALL_NONE;
	inf->call_cancelled = false;
	inf->cancel_reason = CANCEL_NONE;
	if (maybe_free(inf) || inf->freeing)
		return;
	if (reason == CANCEL_STOP) {
		resume_if_started(inf);
		return;
	}
	if (!inf->running)
		return;
	if (res->error == -ECANCELED && !broken) {
		log_info("informer %s: list cancelled (client closing)", inf->desc);
		return;
	}
	if (res->error || broken) {
		/* the pages applied so far stay (each object as it was listed);
		 * the next list, complete, sweeps what is gone */
		inf->stats.list_failures++;
		if (res->error == -EREMOTEIO && res->status == 410)
			inf->stats.expired++;
		uint64_t d = next_delay(inf, false);
		/* a missing permission repeats at every retry: said once, then
		 * every 10 minutes while it lasts */
		uint64_t now = uv_now(inf->loop);
		bool quiet = res->status == 403 && inf->forbidden_logged_ms &&
			     now - inf->forbidden_logged_ms < INFORMER_FORBIDDEN_LOG_MS;
		if (res->status == 403 && !quiet)
			inf->forbidden_logged_ms = now;
		log_msg(quiet ? LOG_DEBUG : LOG_WARN, "informer %s: list failed: %s; retrying in %.1f s",
			inf->desc, broken ? "a page is not a List"
			: res->message ? res->message : strerror(-res->error),
			(double)d / 1000);
		schedule(inf, STEP_LIST, d);
		return;
	}
	/* the last page carries the resourceVersion of the whole list */
	unsigned epoch = inf->epoch;
	inf->busy++;
	int r = list_end(inf, epoch, meta_str(res->body, "resourceVersion"));
	inf->busy--;
	if (maybe_free(inf) || inf->freeing)
		return;
	if (inf->epoch != epoch) { /* stopped (and maybe started) by a callback */
		resume_if_started(inf);
		return;
	}
	if (r < 0) {
		inf->stats.list_failures++;
		schedule(inf, STEP_LIST, next_delay(inf, false));
		return;
	}
	log_debug("informer %s: listed %zu object(s) at resourceVersion %s", inf->desc,
		  inf->cache.count, inf->rv);
	run_step(inf, STEP_WATCH);
}

/* A bookmark arrived on the current watch: learn the period of periodic
 * ones, which shortens the silence rule (informer_silence_deadline). */
static void note_bookmark(struct informer *inf)
{
	uint64_t now = uv_now(inf->loop);
	if (!informer_periodic_bookmark(inf->watch_started_ms, now, inf->watch_timeout_s))
		return;
	uint64_t p = informer_bookmark_period(inf->bookmark_period_ms, inf->last_bookmark_ms, now);
	if (!inf->bookmark_period_ms) {
		uint64_t d = informer_silence_deadline(0, inf->watch_timeout_s, inf->silence_margin_ms, p);
		log_info("informer %s: the server sends periodic bookmarks (%.1f s after the last): "
			 "a watch that receives nothing for %.0f s is now taken for dead",
			 inf->desc, (double)p / 1000, (double)d / 1000);
	}
	inf->bookmark_period_ms = inf->stats.bookmark_period_ms = p;
	inf->last_bookmark_ms = now;
}

static void on_watch_event(const char *type, json_t *obj, void *data)
{
	struct informer *inf = data;
	if (inf->freeing || inf->call_cancelled || inf->call_kind != CALL_WATCH)
		return;
	inf->last_activity_ms = uv_now(inf->loop);
	inf->busy++;
	int r = apply_locked(inf, type, obj);
	inf->busy--;
	if (inf->freeing || inf->call_cancelled)
		return; /* stopped by a callback; the call is still pending */
	if (r == 0) {
		inf->watch_events++;
		if (type && strcmp(type, "BOOKMARK") == 0)
			note_bookmark(inf);
		return;
	}
	if (r == -ESTALE)
		inf->ev_expired = true;
	else if (r == -EREMOTEIO)
		inf->ev_errored = true;
	else
		inf->ev_broken = true;
	cancel_call(inf, CANCEL_EVENT);
}

static void on_watch_done(const struct kube_result *res, void *data)
{
	struct informer *inf = data;
	enum cancel_reason reason = inf->cancel_reason;
	struct informer_watch_end end = {
		.error = res->error,
		.status = res->status,
		.expired = inf->ev_expired,
		.errored = inf->ev_errored,
		.broken = inf->ev_broken,
		.silenced = reason == CANCEL_SILENT,
	};
	inf->call = NULL;
	inf->call_kind = CALL_NONE;
	inf->call_cancelled = false;
	inf->cancel_reason = CANCEL_NONE;
	inf->ev_expired = inf->ev_errored = inf->ev_broken = false;
	if (maybe_free(inf) || inf->freeing)
		return;
	uv_timer_stop(&inf->watchdog);
	if (reason == CANCEL_STOP) {
		resume_if_started(inf);
		return;
	}
	if (!inf->running)
		return;
	uint64_t now = uv_now(inf->loop);
	end.healthy = informer_watch_healthy(inf->watch_started_ms, now, inf->watch_events,
					     inf->healthy_ms);
	if (end.error == -EREMOTEIO && end.status == 410)
		inf->stats.expired++;
	enum informer_action a = informer_watch_next(&end);
	if (a != INFORMER_REWATCH && a != INFORMER_HALT)
		inf->stats.watch_failures++;
	uint64_t d;
	switch (a) {
	case INFORMER_HALT:
		log_info("informer %s: watch cancelled (client closing)", inf->desc);
		return;
	case INFORMER_REWATCH:
		if (end.healthy)
			backoff_reset(&inf->backoff);
		log_debug("informer %s: watch ended after %.1f s, %lu event(s)", inf->desc,
			  (double)(now - inf->watch_started_ms) / 1000, inf->watch_events);
		run_step(inf, STEP_WATCH);
		return;
	case INFORMER_REWATCH_BACKOFF:
		d = next_delay(inf, end.healthy);
		if (!end.silenced) /* the watchdog logged already */
			log_warn("informer %s: watch ended: %s; again in %.1f s", inf->desc,
				 end.errored ? "error event"
				 : res->message ? res->message
				 : end.error ? strerror(-end.error) : "closed without events",
				 (double)d / 1000);
		schedule(inf, STEP_WATCH, d);
		return;
	case INFORMER_RELIST:
		d = next_delay(inf, end.healthy);
		if (!end.expired && !(end.error == -EREMOTEIO && end.status == 410))
			log_warn("informer %s: watch stream unusable (%s): re-listing in %.1f s",
				 inf->desc, res->message ? res->message : "malformed event",
				 (double)d / 1000);
		schedule(inf, STEP_LIST, d);
		return;
	}
}

static void on_watchdog(uv_timer_t *t)
{
	struct informer *inf = t->data;
	if (inf->freeing || !inf->call || inf->call_kind != CALL_WATCH || inf->call_cancelled)
		return;
	uint64_t now = uv_now(inf->loop);
	uint64_t deadline = informer_silence_deadline(inf->last_activity_ms, inf->watch_timeout_s,
						      inf->silence_margin_ms, inf->bookmark_period_ms);
	uint64_t dead = kube_dead_connections(inf->kube);
	double quiet_s = (double)(now - inf->last_activity_ms) / 1000;
	if (dead != inf->seen_dead_conns && now - inf->last_activity_ms >= PROBE_QUIET_MS) {
		/* calls found dead connections (a silent drop by the network
		 * or a frozen server): a quiet watch may sit on one too, and
		 * nothing else would tell until its time-out; watching again
		 * from the last resourceVersion costs one request */
		inf->seen_dead_conns = dead;
		inf->stats.silent++;
		log_warn("informer %s: calls found dead connections and the watch has been quiet for "
			 "%.1f s: watching again", inf->desc, quiet_s);
		cancel_call(inf, CANCEL_SILENT);
		return;
	}
	inf->seen_dead_conns = dead;
	if (now < deadline) {
		uint64_t next = deadline - now;
		uv_timer_start(&inf->watchdog, on_watchdog, next < PROBE_MS ? next : PROBE_MS, 0);
		return;
	}
	inf->stats.silent++;
	if (deadline < informer_silence_deadline(inf->last_activity_ms, inf->watch_timeout_s,
						 inf->silence_margin_ms, 0)) {
		/* the bookmark rule: a dead connection, or a watch started from
		 * the newest resourceVersion of a resource nothing changed since
		 * (kube-apiserver sends bookmarks only past the watch's start).
		 * Nothing here tells them apart and a new watch costs one
		 * request, so the routine case is logged every 10 minutes. */
		inf->stats.quiet++;
		if (!inf->quiet_logged_ms || now - inf->quiet_logged_ms >= QUIET_LOG_MS) {
			char more[64] = "";
			if (inf->quiet_unlogged)
				snprintf(more, sizeof more, "; %lu more like it since last said",
					 inf->quiet_unlogged);
			log_info("informer %s: nothing received for %.1f s (periodic bookmarks came "
				 "%.1f s apart): watching again from resourceVersion %s%s",
				 inf->desc, quiet_s, (double)inf->bookmark_period_ms / 1000,
				 inf->rv ? inf->rv : "-", more);
			inf->quiet_logged_ms = now;
			inf->quiet_unlogged = 0;
		} else {
			inf->quiet_unlogged++;
			log_debug("informer %s: nothing received for %.1f s: watching again",
				  inf->desc, quiet_s);
		}
	} else {
		log_warn("informer %s: watch silent for %.1f s (timeoutSeconds %d): reconnecting",
			 inf->desc, quiet_s, inf->watch_timeout_s);
	}
	cancel_call(inf, CANCEL_SILENT);
}

static void start_list(struct informer *inf)
{
	struct kube_ref ref = { .api_version = inf->api_version, .kind = inf->kind,
				.namespace = inf->namespace };
	struct kube_list_opts lo = {
		.label_selector = inf->label_selector,
		.field_selector = inf->field_selector,
		.limit = inf->page_size,
		.on_page_text = on_list_page,
	};
	inf->stats.lists++;
	inf->call_kind = CALL_LIST;
	inf->list_broken = false;
	list_begin(inf);
	inf->call = kube_list(inf->kube, &ref, &lo, on_list_done, inf);
	if (!inf->call) {
		inf->call_kind = CALL_NONE;
		log_info("informer %s: client closing, not listing", inf->desc);
	}
}

static void start_watch(struct informer *inf)
{
	struct kube_ref ref = { .api_version = inf->api_version, .kind = inf->kind,
				.namespace = inf->namespace };
	inf->watch_timeout_s = informer_watch_timeout(&inf->rng, inf->timeout_min_s,
						      inf->timeout_max_s);
	struct kube_watch_opts wo = {
		.label_selector = inf->label_selector,
		.field_selector = inf->field_selector,
		.resource_version = inf->rv,
		.timeout_seconds = inf->watch_timeout_s,
	};
	inf->stats.watches++;
	inf->stats.last_timeout_s = inf->watch_timeout_s;
	inf->watch_started_ms = inf->last_activity_ms = inf->last_bookmark_ms = uv_now(inf->loop);
	inf->watch_events = 0;
	inf->call_kind = CALL_WATCH;
	inf->call = kube_watch(inf->kube, &ref, &wo, on_watch_event, on_watch_done, inf);
	if (!inf->call) {
		inf->call_kind = CALL_NONE;
		log_info("informer %s: client closing, not watching", inf->desc);
		return;
	}
	inf->seen_dead_conns = kube_dead_connections(inf->kube);
	uv_timer_start(&inf->watchdog, on_watchdog, PROBE_MS, 0);
}

static void run_step(struct informer *inf, enum step s)
{
	if (s == STEP_BEGIN)
		s = inf->synced && inf->rv ? STEP_WATCH : STEP_LIST;
	if (s == STEP_WATCH && (!inf->rv || inf->list_open))
		s = STEP_LIST;
	if (s == STEP_LIST)
		start_list(inf);
	else
		start_watch(inf);
}

int informer_start(struct informer *inf)
{
	if (!inf || !inf->loop || !inf->kube || inf->freeing)
		return -EINVAL;
	if (inf->running)
		return 0;
	if (!inf->timers_init) {
		uv_timer_init(inf->loop, &inf->retry_timer);
		uv_timer_init(inf->loop, &inf->watchdog);
		inf->retry_timer.data = inf->watchdog.data = inf;
		inf->timers_init = true;
	}
	inf->running = true;
	inf->epoch++;
	/* from the loop, never from inside the caller (which may be a callback) */
	schedule(inf, STEP_BEGIN, 0);
	return 0;
}

/* --------------------------------------------------------------- reads -- */

bool informer_synced(const struct informer *inf)
{
	return inf->synced;
}

json_t *informer_get_ns(const struct informer *inf, const char *ns, const char *name)
{
	char key[KEY_MAX];
	if (!ns)
		ns = "";
	if (!name || !valid_name(name, MAX_NAME) || !valid_name(ns, MAX_NAMESPACE))
		return NULL;
	snprintf(key, sizeof(key), "%s/%s", ns, name);
	struct entry *e = cache_find(inf, key, key_hash(inf, key));
	return e ? e->obj : NULL;
}

json_t *informer_get(const struct informer *inf, const char *name)
{
	return informer_get_ns(inf, inf->namespace, name);
}

size_t informer_count(const struct informer *inf)
{
	return inf->cache.count;
}

json_t *informer_iter_next(const struct informer *inf, struct informer_iter *it)
{
	/* it->bucket: 0 before the first call, 1 after; it->entry: the node
	 * returned last, NULL at the end */
	const struct hnode *n = !it->bucket ? hmap_first(&inf->cache)
			      : it->entry  ? hmap_next(&inf->cache, it->entry)
					   : NULL;
	it->bucket = 1;
	it->entry = n;
	return n ? CONTAINER_OF(n, struct entry, hn)->obj : NULL;
}

const char *informer_resource_version(const struct informer *inf)
{
	return inf->rv;
}

struct informer_stats informer_stats(const struct informer *inf)
{
	return inf->stats;
}
