#include "init_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "kube.h"
#include "list.h"
#include "log.h"
#include "strmap.h"
#include "util.h"

/* What one fetch may bring back: the server cuts a tail longer than this at
 * its end (its newest bytes), so a cut answer is asked again with fewer
 * lines. */
#define FETCH_LIMIT (4L * 1024 * 1024)
#define FIRST_TAIL_LINES 20000L
#define MIN_TAIL_LINES 200L

/* ---- pure helpers ---- */

char *init_log_tail(const char *text, size_t len, size_t max, size_t *out_len, bool *cut)
{
	const char *p = text ? text : "";
	size_t n = text ? len : 0;
	*cut = false;
	if (n > max) {
		p += n - max;
		n = max;
		*cut = true;
		const char *nl = memchr(p, '\n', n);
		if (nl) {
			n -= (size_t)(nl + 1 - p);
			p = nl + 1;
		}
	}
	char *out = xmalloc(n + 1);
	size_t i = 0;
	while (i < n) {
		/* a NUL would end the ConfigMap's string early */
		size_t l = p[i] ? utf8_decode(p + i, n - i, NULL) : 0;
		if (l == 0) {
			out[i++] = '?';
			continue;
		}
		memcpy(out + i, p + i, l);
		i += l;
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

json_t *init_log_configmap(const char *namespace, const char *build, const char *job,
			   bool succeeded, bool cut, const char *text)
{
	char *name = xasprintf("%s%s", build, INIT_LOG_SUFFIX);
	json_t *cm = json_pack(
		"{s:s,s:s,s:{s:s,s:s,s:{s:s},s:{s:s,s:s,s:s}},s:{s:s}}", "apiVersion", "v1", "kind",
		"ConfigMap", "metadata", "name", name, "namespace", namespace, "labels", BUILD_LABEL,
		build, "annotations", "runboat/init-job", job ? job : "", "runboat/init-status",
		succeeded ? "succeeded" : "failed", "runboat/log-truncated", cut ? "true" : "false",
		"data", "log", text);
	free(name);
	if (!cm)
		abort(); /* only a text that is not UTF-8 can fail: a caller's bug */
	return cm;
}

const char *init_log_configmap_text(const json_t *cm, const char *build, size_t *len)
{
	json_t *md = json_object_get(cm, "metadata");
	const char *owner = json_string_value(json_object_get(json_object_get(md, "labels"),
							      BUILD_LABEL));
	const char *name = json_string_value(json_object_get(md, "name"));
	size_t bl = strlen(build);
	if (!owner || strcmp(owner, build) != 0 || !name || strncmp(name, build, bl) != 0 ||
	    strcmp(name + bl, INIT_LOG_SUFFIX) != 0)
		return NULL;
	json_t *log = json_object_get(json_object_get(cm, "data"), "log");
	if (!json_is_string(log))
		return NULL;
	*len = json_string_length(log);
	return json_string_value(log);
}

/* ---- keeping ---- */

struct keep {
	struct list link;
	struct init_log *il; /* NULL once cancelled (a kube call may still be due) */
	char *build;
	char *job;
	bool succeeded;
	bool running;
	/* asked again while running: done again after, with these */
	bool again;
	char *again_job;
	bool again_succeeded;
	long tail_lines;
	bool by_list; /* the cached pod was gone: list the pods */
	bool by_cache; /* the running fetch reads the cached pod */
	struct pod_log *log;
	struct kube_call *call;
};

struct init_log {
	struct kube *kube;
	char *namespace;
	init_log_gone_cb gone;
	void *gone_data;
	init_log_pod_cb pod;
	void *pod_data;
	struct strmap keeps; /* build -> struct keep */
	struct list queue;   /* struct keep, in the order asked (running ones too) */
	size_t n_running;
};

static void keep_free(struct keep *k)
{
	free(k->build);
	free(k->job);
	free(k->again_job);
	free(k);
}

static void start_next(struct init_log *il);
static void fetch(struct keep *k);

/* The keep has ended (done or failed): again, or gone. */
static void finish(struct keep *k)
{
	struct init_log *il = k->il;
	k->running = false;
	il->n_running--;
	list_remove(&k->link);
	if (k->again) {
		k->again = false;
		free(k->job);
		k->job = k->again_job;
		k->again_job = NULL;
		k->succeeded = k->again_succeeded;
		list_push(&il->queue, &k->link);
	} else {
		strmap_del(&il->keeps, k->build);
		keep_free(k);
	}
	start_next(il);
}

static bool gone(const struct init_log *il, const char *build)
{
	return il->gone && il->gone(build, il->gone_data);
}

static void on_removed(const struct kube_result *res, void *data)
{
	struct keep *k = data;
	k->call = NULL;
	if (!k->il) {
		keep_free(k);
		return;
	}
	if (res->error)
		log_warn("build %s: undeployed, yet its kept init log (ConfigMap %s%s) cannot be "
			 "deleted: %s", k->build, k->build, INIT_LOG_SUFFIX,
			 res->message ? res->message : strerror(-res->error));
	finish(k);
}

static void on_applied(const struct kube_result *res, void *data)
{
	struct keep *k = data;
	struct init_log *il = k->il;
	k->call = NULL;
	if (!il) {
		keep_free(k);
		return;
	}
	if (res->error) {
		log_warn("build %s: its init log is not kept: ConfigMap %s%s: %s", k->build, k->build,
			 INIT_LOG_SUFFIX, res->message ? res->message : strerror(-res->error));
		finish(k);
		return;
	}
	if (!gone(il, k->build)) {
		log_info("build %s: init log kept in ConfigMap %s%s", k->build, k->build,
			 INIT_LOG_SUFFIX);
		finish(k);
		return;
	}
	/* undeployed meanwhile: its objects may have been deleted by label
	 * before this landed (deletecollection: the Role has no delete) */
	char *sel = xasprintf("%s=%s", BUILD_LABEL, k->build);
	char *field = xasprintf("metadata.name=%s%s", k->build, INIT_LOG_SUFFIX);
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = il->namespace};
	struct kube_list_opts lo = {.label_selector = sel, .field_selector = field};
	struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
	k->call = kube_delete_collection(il->kube, &ref, &lo, &dopt, on_removed, k);
	free(sel);
	free(field);
	if (!k->call)
		finish(k); /* the client is closing */
}

static size_t count_lines(const char *text, size_t len)
{
	size_t n = 0;
	for (const char *p = text; (p = memchr(p, '\n', len - (size_t)(p - text))) != NULL; p++)
		n++;
	return n;
}

static void on_fetched(int error, const char *message, const char *text, size_t len, void *data)
{
	struct keep *k = data;
	struct init_log *il = k->il;
	k->log = NULL;
	if (error == -ENOENT && k->by_cache) {
		/* the cache lagged: the pod it named is gone */
		k->by_list = true;
		fetch(k);
		return;
	}
	if (error) {
		log_warn("build %s: its init log is not kept: %s", k->build,
			 message ? message : strerror(-error));
		finish(k);
		return;
	}
	if ((long)len >= FETCH_LIMIT && k->tail_lines > MIN_TAIL_LINES) {
		/* the server cut the newest bytes off: fewer lines */
		k->tail_lines /= 10;
		fetch(k);
		return;
	}
	size_t n;
	bool cut;
	char *tail = init_log_tail(text, len, INIT_LOG_MAX_BYTES, &n, &cut);
	/* as many lines as asked for: older ones may have been left out */
	if ((long)len >= FETCH_LIMIT || (long)count_lines(text, len) >= k->tail_lines)
		cut = true;
	json_t *cm = init_log_configmap(il->namespace, k->build, k->job, k->succeeded, cut, tail);
	free(tail);
	struct kube_write_opts wo = {.field_manager = "runboat", .force = true};
	k->call = kube_apply(il->kube, cm, &wo, on_applied, k);
	json_decref(cm);
	if (!k->call)
		finish(k); /* the client is closing */
}

static void fetch(struct keep *k)
{
	struct init_log *il = k->il;
	const char *container = NULL;
	const char *pod = il->pod && !k->by_list ? il->pod(k->build, &container, il->pod_data) : NULL;
	k->by_cache = pod != NULL;
	if (pod)
		k->log = pod_log_get_pod(il->kube, il->namespace, pod, container, k->tail_lines,
					 FETCH_LIMIT, on_fetched, k);
	else
		k->log = pod_log_get_tail(il->kube, il->namespace, k->build, "initialize",
					  k->tail_lines, FETCH_LIMIT, on_fetched, k);
	if (!k->log) {
		/* the client is closing: nothing more to start (start_next may
		 * be walking the queue: k alone goes) */
		k->running = false;
		il->n_running--;
		list_remove(&k->link);
		strmap_del(&il->keeps, k->build);
		keep_free(k);
	}
}

static void start_next(struct init_log *il)
{
	struct keep *k, *tmp;
	list_each_safe(k, tmp, &il->queue, link)
	{
		if (il->n_running >= INIT_LOG_MAX_KEEPS)
			return;
		if (k->running)
			continue;
		if (gone(il, k->build)) {
			list_remove(&k->link);
			strmap_del(&il->keeps, k->build);
			keep_free(k);
			continue;
		}
		k->running = true;
		il->n_running++;
		k->tail_lines = FIRST_TAIL_LINES;
		k->by_list = false;
		fetch(k); /* may drop k (client closing), never another */
	}
}

struct init_log *init_log_new(struct kube *kube, const char *namespace, init_log_gone_cb gone,
			      void *gone_data)
{
	struct init_log *il = xcalloc(1, sizeof *il);
	il->kube = kube;
	il->gone = gone;
	il->gone_data = gone_data;
	il->namespace = xstrdup(namespace);
	list_init(&il->queue);
	return il;
}

void init_log_set_pod_lookup(struct init_log *il, init_log_pod_cb cb, void *data)
{
	il->pod = cb;
	il->pod_data = data;
}

void init_log_stop(struct init_log *il)
{
	if (!il)
		return;
	struct keep *k, *tmp;
	list_each_safe(k, tmp, &il->queue, link)
	{
		list_remove(&k->link);
		strmap_del(&il->keeps, k->build);
		k->il = NULL;
		if (k->log) {
			pod_log_cancel(k->log); /* its callback does not run */
			keep_free(k);
		} else if (k->call)
			kube_cancel(k->call); /* on_applied frees k */
		else
			keep_free(k);
	}
	il->n_running = 0;
}

void init_log_free(struct init_log *il)
{
	if (!il)
		return;
	init_log_stop(il);
	strmap_clear(&il->keeps, NULL);
	free(il->namespace);
	free(il);
}

void init_log_keep(struct init_log *il, const char *build, const char *job, bool succeeded)
{
	if (!il || !il->kube)
		return;
	struct keep *k = strmap_get(&il->keeps, build);
	if (k && k->running) {
		k->again = true;
		free(k->again_job);
		k->again_job = xstrdup(job ? job : "");
		k->again_succeeded = succeeded;
		return;
	}
	if (k) { /* queued: the newest facts */
		free(k->job);
		k->job = xstrdup(job ? job : "");
		k->succeeded = succeeded;
		return;
	}
	k = xcalloc(1, sizeof *k);
	k->il = il;
	k->build = xstrdup(build);
	k->job = xstrdup(job ? job : "");
	k->succeeded = succeeded;
	list_push(&il->queue, &k->link);
	strmap_put(&il->keeps, build, k);
	start_next(il);
}

size_t init_log_pending(const struct init_log *il)
{
	return il ? il->keeps.count : 0;
}

/* ---- reading ---- */

struct init_log_read {
	struct kube *kube;
	char *namespace;
	char *build;
	struct pod_log *log;
	struct kube_call *call;
	pod_log_cb cb;
	void *data;
	bool cancelled;
};

static void read_free(struct init_log_read *r)
{
	free(r->namespace);
	free(r->build);
	free(r);
}

static void on_kept(const struct kube_result *res, void *data)
{
	struct init_log_read *r = data;
	r->call = NULL;
	if (r->cancelled) {
		read_free(r);
		return;
	}
	if (res->status == 404) {
		r->cb(-ENOENT, "no pod of the initialize job for this build, and no kept init log",
		      NULL, 0, r->data);
	} else if (res->error) {
		char msg[512];
		snprintf(msg, sizeof msg, "the init job's pod is gone and its kept log cannot be "
			 "read: %s", res->message ? res->message : strerror(-res->error));
		r->cb(-EIO, msg, NULL, 0, r->data);
	} else {
		size_t len = 0;
		const char *text = init_log_configmap_text(res->body, r->build, &len);
		if (text)
			r->cb(0, NULL, text, len, r->data);
		else
			r->cb(-EIO, "the kept init log's ConfigMap is not one runboat wrote", NULL,
			      0, r->data);
	}
	read_free(r);
}

static void on_live(int error, const char *message, const char *text, size_t len, void *data)
{
	struct init_log_read *r = data;
	r->log = NULL;
	if (error != -ENOENT) {
		r->cb(error, message, text, len, r->data);
		read_free(r);
		return;
	}
	char *name = xasprintf("%s%s", r->build, INIT_LOG_SUFFIX);
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap",
			       .namespace = r->namespace, .name = name};
	r->call = kube_get(r->kube, &ref, on_kept, r);
	free(name);
	if (!r->call) {
		r->cb(-ENOENT, message, NULL, 0, r->data);
		read_free(r);
	}
}

struct init_log_read *init_log_read(struct init_log *il, const char *build, pod_log_cb cb,
				    void *data)
{
	if (!il || !il->kube)
		return NULL;
	struct init_log_read *r = xcalloc(1, sizeof *r);
	r->kube = il->kube;
	r->namespace = xstrdup(il->namespace);
	r->build = xstrdup(build);
	r->cb = cb;
	r->data = data;
	r->log = pod_log_get(il->kube, il->namespace, build, "initialize", on_live, r);
	if (!r->log) {
		read_free(r);
		return NULL;
	}
	return r;
}

void init_log_read_cancel(struct init_log_read *r)
{
	r->cancelled = true;
	if (r->log) {
		pod_log_cancel(r->log);
		read_free(r);
	} else if (r->call)
		kube_cancel(r->call); /* on_kept frees r */
}
