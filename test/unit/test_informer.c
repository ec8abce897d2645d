/* informer: the pure core (re-list diff, event application, resourceVersion
 * handling, the decisions after a watch, silence detection, timeouts) on a
 * detached informer, and the kube_lines framing the watch stream relies on. */
#include "informer.h"
#include "kube.h"
#include "kubeconfig.h"
#include "util.h"
#include "unit.h"
#include "http_stub.h"

#include <errno.h>
#include <stdarg.h>

/* ---- a recorder of callbacks ---- */

struct rec {
	struct buf log;   /* "add b1@5;upd b1@5>6;del b2@7;synced;" */
	int adds, updates, deletes, synced;
	json_t *last_old, *last_new; /* owned copies of the last update's objects */
	/* actions from inside a callback */
	int stop_after;   /* informer_stop after that many callbacks (0: never) */
	int free_after;   /* informer_free after that many callbacks */
	int calls;
};

static const char *name_of(json_t *o)
{
	const char *s = json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
	return s ? s : "?";
}

static const char *rv_of(json_t *o)
{
	const char *s = json_string_value(
		json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
	return s ? s : "?";
}

static void after_callback(struct informer *inf, struct rec *r)
{
	r->calls++;
	if (r->stop_after && r->calls == r->stop_after)
		informer_stop(inf);
	if (r->free_after && r->calls == r->free_after)
		informer_free(inf);
}

static void on_add(struct informer *inf, json_t *obj, void *data)
{
	struct rec *r = data;
	r->adds++;
	buf_printf(&r->log, "add %s@%s;", name_of(obj), rv_of(obj));
	/* the cache already holds it */
	CHECK(informer_get_ns(inf, json_string_value(json_object_get(
					   json_object_get(obj, "metadata"), "namespace")),
			      name_of(obj)) == obj);
	after_callback(inf, r);
}

static void on_update(struct informer *inf, json_t *old, json_t *obj, void *data)
{
	struct rec *r = data;
	r->updates++;
	buf_printf(&r->log, "upd %s@%s>%s;", name_of(obj), rv_of(old), rv_of(obj));
	json_decref(r->last_old);
	json_decref(r->last_new);
	r->last_old = json_incref(old);
	r->last_new = json_incref(obj);
	after_callback(inf, r);
}

static void on_delete(struct informer *inf, json_t *obj, void *data)
{
	struct rec *r = data;
	r->deletes++;
	buf_printf(&r->log, "del %s@%s;", name_of(obj), rv_of(obj));
	after_callback(inf, r);
}

static void on_synced(struct informer *inf, void *data)
{
	struct rec *r = data;
	r->synced++;
	buf_append_str(&r->log, "synced;");
	CHECK(informer_synced(inf));
	after_callback(inf, r);
}

static void rec_reset(struct rec *r)
{
	buf_reset(&r->log);
	buf_append_str(&r->log, "");
	r->adds = r->updates = r->deletes = r->synced = r->calls = 0;
}

static void rec_free(struct rec *r)
{
	buf_free(&r->log);
	json_decref(r->last_old);
	json_decref(r->last_new);
}

static const char *rec_log(struct rec *r)
{
	return r->log.data ? r->log.data : "";
}

static struct informer *detached(struct rec *r, const char *ns)
{
	struct informer_opts o = { .api_version = "v1", .kind = "ConfigMap", .namespace = ns,
				   .label_selector = "runboat/build", .seed = 1 };
	struct informer_callbacks cb = { on_add, on_update, on_delete, on_synced, r };
	memset(r, 0, sizeof(*r));
	rec_reset(r);
	return informer_new(NULL, NULL, &o, &cb);
}

/* {"metadata": {"name", "namespace", "resourceVersion", "uid"}} */
static json_t *obj(const char *ns, const char *name, const char *rv, const char *uid)
{
	json_t *md = json_object();
	if (name)
		json_object_set_new(md, "name", json_string(name));
	if (ns)
		json_object_set_new(md, "namespace", json_string(ns));
	if (rv)
		json_object_set_new(md, "resourceVersion", json_string(rv));
	if (uid)
		json_object_set_new(md, "uid", json_string(uid));
	return json_pack("{s:s, s:s, s:o}", "apiVersion", "v1", "kind", "ConfigMap", "metadata", md);
}

/* A List at rv of the given items (references stolen). NULL-terminated. */
static json_t *list(const char *rv, ...)
{
	json_t *items = json_array();
	va_list ap;
	va_start(ap, rv);
	json_t *it;
	while ((it = va_arg(ap, json_t *)))
		json_array_append_new(items, it);
	va_end(ap);
	return json_pack("{s:s, s:{s:s}, s:o}", "kind", "ConfigMapList", "metadata",
			 "resourceVersion", rv, "items", items);
}

static int event(struct informer *inf, const char *type, json_t *o)
{
	int r = informer_apply_event(inf, type, o);
	json_decref(o);
	return r;
}

/* ---- tests ---- */

static void test_new_validates(void)
{
	struct informer_opts o = { .api_version = "v1" };
	CHECK(informer_new(NULL, NULL, &o, NULL) == NULL);
	o.kind = "";
	CHECK(informer_new(NULL, NULL, &o, NULL) == NULL);
	CHECK(informer_new(NULL, NULL, NULL, NULL) == NULL);
	o.kind = "ConfigMap";
	struct informer *inf = informer_new(NULL, NULL, &o, NULL);
	CHECK(inf != NULL);
	CHECK_INT(informer_start(inf), -EINVAL); /* detached */
	CHECK(!informer_synced(inf));
	CHECK(informer_resource_version(inf) == NULL);
	CHECK_INT(informer_count(inf), 0);
	CHECK(informer_get(inf, "x") == NULL);
	struct informer_iter it = INFORMER_ITER_INIT;
	CHECK(informer_iter_next(inf, &it) == NULL);
	informer_free(inf);
	informer_free(NULL);
}

static void test_first_list_and_relist_diff(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	json_t *l = list("100", obj("ns", "a", "10", "ua"), obj("ns", "b", "11", "ub"),
			 obj("ns", "c", "12", "uc"), NULL);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	CHECK_STR(rec_log(&r), "add a@10;add b@11;add c@12;synced;");
	CHECK(informer_synced(inf));
	CHECK_STR(informer_resource_version(inf), "100");
	CHECK_INT(informer_count(inf), 3);
	CHECK_STR(rv_of(informer_get(inf, "b")), "11");
	CHECK_STR(rv_of(informer_get_ns(inf, "ns", "c")), "12");
	CHECK(informer_get_ns(inf, "other", "c") == NULL);
	CHECK(informer_get(inf, "d") == NULL);
	CHECK_INT(informer_stats(inf).lists_ok, 1);

	/* b vanished, c changed, a unchanged, d is new */
	rec_reset(&r);
	json_t *a_before = informer_get(inf, "a");
	json_t *c_before = json_incref(informer_get(inf, "c"));
	l = list("200", obj("ns", "a", "10", "ua"), obj("ns", "c", "15", "uc"),
		 obj("ns", "d", "16", "ud"), NULL);
	CHECK_INT(informer_replace(inf, l), 0);
	CHECK_STR(rec_log(&r), "upd c@12>15;add d@16;del b@11;");
	CHECK_INT(r.synced, 0); /* only once */
	CHECK(r.last_old == c_before);
	CHECK(r.last_new == json_array_get(json_object_get(l, "items"), 1));
	CHECK(informer_get(inf, "a") == a_before); /* unchanged: the same object kept */
	CHECK(informer_get(inf, "b") == NULL);
	CHECK_STR(rv_of(informer_get(inf, "c")), "15");
	CHECK_INT(informer_count(inf), 3);
	CHECK_STR(informer_resource_version(inf), "200");
	json_decref(l);
	json_decref(c_before);

	/* the same name with another uid: deleted and re-created meanwhile */
	rec_reset(&r);
	l = list("300", obj("ns", "a", "30", "ua2"), obj("ns", "c", "15", "uc"),
		 obj("ns", "d", "16", "ud"), NULL);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	CHECK_STR(rec_log(&r), "del a@10;add a@30;");

	/* an empty list deletes everything */
	rec_reset(&r);
	l = list("400", NULL);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	CHECK_INT(r.deletes, 3);
	CHECK_INT(r.adds + r.updates, 0);
	CHECK_INT(informer_count(inf), 0);
	CHECK_STR(informer_resource_version(inf), "400");

	informer_free(inf);
	rec_free(&r);
}

/* One page (references stolen) of a list in progress: its items at once. */
static int page(struct informer *inf, ...)
{
	json_t *items = json_array();
	va_list ap;
	va_start(ap, inf);
	json_t *it;
	while ((it = va_arg(ap, json_t *)))
		json_array_append_new(items, it);
	va_end(ap);
	json_t *p = json_pack("{s:s, s:{s:s}, s:o}", "kind", "ConfigMapList", "metadata",
			      "continue", "token", "items", items);
	int r = informer_list_page(inf, p);
	json_decref(p);
	return r;
}

/* A paginated re-list: each page's adds and updates are reported as it is
 * applied; the deletions of what the list no longer holds (deleted during
 * the re-list, or before it) come only after the last page, with the
 * resourceVersion. */
static void test_list_by_pages(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "10", "ua"), obj("ns", "b", "11", "ub"), NULL), 0);
	/* the first page is seen before the list ends; not synced yet */
	CHECK_STR(rec_log(&r), "add a@10;add b@11;");
	CHECK(!informer_synced(inf));
	CHECK(informer_resource_version(inf) == NULL);
	CHECK_INT(page(inf, obj("ns", "c", "12", "uc"), obj("ns", "d", "13", "ud"), NULL), 0);
	CHECK_INT(informer_list_end(inf, "100"), 0);
	CHECK_STR(rec_log(&r), "add a@10;add b@11;add c@12;add d@13;synced;");
	CHECK_STR(informer_resource_version(inf), "100");

	/* re-list: b was deleted (it is in no page), c changed, e is new */
	rec_reset(&r);
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "10", "ua"), obj("ns", "c", "15", "uc"), NULL), 0);
	CHECK_STR(rec_log(&r), "upd c@12>15;");
	CHECK(informer_get(inf, "b") != NULL); /* not before the last page */
	CHECK_INT(page(inf, obj("ns", "d", "13", "ud"), obj("ns", "e", "16", "ue"), NULL), 0);
	CHECK_INT(page(inf, NULL), 0); /* etcd may end with an empty page */
	CHECK_INT(r.deletes, 0);
	CHECK_STR(informer_resource_version(inf), "100");
	CHECK_INT(informer_list_end(inf, "200"), 0);
	CHECK_STR(rec_log(&r), "upd c@12>15;add e@16;del b@11;");
	CHECK_INT(informer_count(inf), 4);
	CHECK_STR(informer_resource_version(inf), "200");
	CHECK_INT(r.synced, 0);

	/* an object listed, then deleted before the watch from the list's
	 * resourceVersion starts: the watch's DELETED removes it */
	rec_reset(&r);
	CHECK_INT(event(inf, "DELETED", obj("ns", "e", "201", "ue")), 0);
	CHECK_STR(rec_log(&r), "del e@201;");
	CHECK_INT(informer_count(inf), 3);
	informer_free(inf);
	rec_free(&r);
}

/* A re-list that fails part way (an expired continue token, a dropped
 * connection) and loses objects: the pages applied stay, nothing is
 * deleted and the resourceVersion is not advanced; the next list, begun
 * again from its first page, reports only what changed and then sweeps. A
 * first list that fails is not "synced". */
static void test_list_fails_part_way(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "1", "ua"), obj("ns", "b", "2", "ub"), NULL), 0);
	/* 410 on the second page: a new list */
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "1", "ua"), obj("ns", "b", "3", "ub"), NULL), 0);
	CHECK(!informer_synced(inf));
	CHECK_INT(page(inf, obj("ns", "c", "4", "uc"), NULL), 0);
	CHECK_INT(informer_list_end(inf, "10"), 0);
	CHECK_STR(rec_log(&r), "add a@1;add b@2;upd b@2>3;add c@4;synced;");
	CHECK_INT(r.synced, 1);

	/* a re-list that loses b and c, and fails after its first page */
	rec_reset(&r);
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "5", "ua"), NULL), 0);
	CHECK_STR(rec_log(&r), "upd a@1>5;");
	CHECK_STR(informer_resource_version(inf), "10");
	CHECK_INT(informer_count(inf), 3);
	/* and the next one succeeds */
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "5", "ua"), NULL), 0);
	CHECK_INT(informer_list_end(inf, "20"), 0);
	CHECK_STR(rec_log(&r), "upd a@1>5;del b@3;del c@4;");
	CHECK_INT(informer_count(inf), 1);
	CHECK_STR(informer_resource_version(inf), "20");

	/* malformed: a page without items, an end without a valid
	 * resourceVersion change nothing */
	rec_reset(&r);
	informer_list_begin(inf);
	json_t *bad = json_pack("{s:{s:s}, s:{}}", "metadata", "continue", "x", "items");
	CHECK_INT(informer_list_page(inf, bad), -EPROTO);
	json_decref(bad);
	CHECK_INT(informer_list_end(inf, "bad rv"), -EPROTO);
	CHECK_INT(informer_list_end(inf, NULL), -EPROTO);
	CHECK_INT(r.calls, 0);
	CHECK_INT(informer_count(inf), 1);
	CHECK_STR(informer_resource_version(inf), "20");

	/* items without a valid name are skipped, the others applied */
	CHECK_INT(page(inf, obj("ns", NULL, "6", "ux"), obj("ns", "a/b", "6", "uy"),
		       obj("ns", "f", "7", "uf"), NULL), 0);
	CHECK_INT(informer_list_end(inf, "30"), 0);
	CHECK_STR(rec_log(&r), "add f@7;del a@5;");
	informer_free(inf);
	rec_free(&r);
}

/* informer_stop from a callback in the middle of a page: the rest of the
 * page is not applied and the list does not end; a free from a callback
 * leaves nothing behind (ASan). */
static void test_list_page_stop_and_free(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	r.stop_after = 1;
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "1", NULL), obj("ns", "b", "1", NULL), NULL), 0);
	CHECK_INT(r.calls, 1);
	CHECK_INT(informer_count(inf), 1);
	informer_free(inf);
	rec_free(&r);

	inf = detached(&r, "ns");
	r.free_after = 2;
	informer_list_begin(inf);
	CHECK_INT(page(inf, obj("ns", "a", "1", NULL), obj("ns", "b", "1", NULL),
		       obj("ns", "c", "1", NULL), NULL), 0); /* frees inf */
	CHECK_INT(r.calls, 2);
	rec_free(&r);
}

/* A page's JSON text parsed as the cache keeps it gives the same objects
 * as the whole page parsed then trimmed: on a real Deployment (the bench
 * fixture, with managedFields, a pod template and status), with the feed's
 * keep list, with managedFields kept, with everything kept; escaped keys
 * and duplicate members as jansson reads them. */
static void test_list_page_text(void)
{
	json_error_t e;
	json_t *dep = json_load_file("test/bench/fixtures/deployment.json", 0, &e);
	CHECK(dep != NULL);
	if (!dep)
		return;
	json_object_del(dep, "apiVersion"); /* list items lack them */
	json_object_del(dep, "kind");
	static const char *const keep[] = {"spec.replicas", "status.replicas",
					   "status.readyReplicas", NULL};
	struct informer_opts variants[] = {
		{.api_version = "apps/v1", .kind = "Deployment", .keep = keep},
		{.api_version = "apps/v1", .kind = "Deployment", .keep = keep,
		 .keep_managed_fields = true},
		{.api_version = "apps/v1", .kind = "Deployment"},
		{.api_version = "apps/v1", .kind = "Deployment", .keep_managed_fields = true},
	};
	/* the fixture, and an item with an escaped key and a duplicate member */
	const char *odd = "{\"metadata\":{\"name\":\"odd\",\"namespace\":\"ns\",\"resourceVersion\":\"9\","
			  "\"managedFields\":[{\"x\":1}]},\"sp\\u0065c\":{\"replicas\":1,\"paused\":true},"
			  "\"status\":{\"replicas\":2},\"status\":{\"replicas\":3,\"readyReplicas\":1}}";
	json_t *items = json_array();
	json_array_append(items, dep);
	json_array_append_new(items, json_loads(odd, 0, &e));
	json_t *pg = json_pack("{s:s, s:s, s:{s:s}, s:o}", "kind", "DeploymentList", "apiVersion",
			       "apps/v1", "metadata", "continue", "c", "items", items);
	char *text = json_dumps(pg, JSON_COMPACT);
	for (size_t v = 0; v < ARRAY_SIZE(variants); v++) {
		struct informer *a = informer_new(NULL, NULL, &variants[v], NULL);
		struct informer *b = informer_new(NULL, NULL, &variants[v], NULL);
		json_t *copy = json_deep_copy(pg); /* trimmed in place */
		size_t k;
		json_t *it;
		json_array_foreach(json_object_get(copy, "items"), k, it) {
			/* as kube_list gives them on_page */
			json_object_set_new(it, "apiVersion", json_string("apps/v1"));
			json_object_set_new(it, "kind", json_string("Deployment"));
		}
		informer_list_begin(a);
		CHECK_INT(informer_list_page(a, copy), 0);
		json_decref(copy);
		informer_list_begin(b);
		CHECK_INT(informer_list_page_text(b, text, strlen(text)), 0);
		CHECK_INT(informer_count(b), 2);
		json_t *dmd = json_object_get(dep, "metadata");
		const char *ns[] = {json_string_value(json_object_get(dmd, "namespace")), "ns"};
		const char *names[] = {json_string_value(json_object_get(dmd, "name")), "odd"};
		for (int i = 0; i < 2; i++) {
			json_t *oa = informer_get_ns(a, ns[i], names[i]);
			json_t *ob = informer_get_ns(b, ns[i], names[i]);
			CHECK(oa && ob && json_equal(oa, ob));
			if (oa && ob && !json_equal(oa, ob)) {
				char *sa = json_dumps(oa, JSON_SORT_KEYS | JSON_COMPACT);
				char *sb = json_dumps(ob, JSON_SORT_KEYS | JSON_COMPACT);
				fprintf(stderr, "  variant %zu, %s:\n  tree %.300s\n  text %.300s\n", v,
					names[i], sa, sb);
				free(sa);
				free(sb);
			}
		}
		/* what the feed keeps of the odd item */
		json_t *o = informer_get_ns(b, "ns", "odd");
		CHECK_STR(json_string_value(json_object_get(o, "kind")), "Deployment");
		CHECK_INT(json_integer_value(json_object_get(json_object_get(o, "status"), "replicas")), 3);
		CHECK(json_object_get(json_object_get(o, "metadata"), "managedFields") ==
		      NULL || variants[v].keep_managed_fields);
		CHECK((json_object_get(json_object_get(o, "spec"), "paused") == NULL) ==
		      (variants[v].keep != NULL));
		informer_free(a);
		informer_free(b);
	}
	free(text);
	json_decref(pg);
	json_decref(dep);
}

/* Malformed page texts: refused with -EPROTO, before any item is applied
 * when the JSON is malformed; an item that is well-formed JSON but not
 * valid (an escaped NUL in a key) stops the page there, the items before
 * it applied. */
static void test_list_page_text_rejects(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	static const char *const bad[] = {
		"", "[]", "{}", "{\"items\":{}}", "{\"items\":[1]}", "{\"items\":[{]}",
		"{\"items\":[]", "{\"items\":[]}x", "{\"metadata\":{},\"items\":[{\"metadata\":{\"name\":1e}}]}",
		"{\"items\":[{\"a\\u0000\":1}]}",
	};
	informer_list_begin(inf);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_INT(informer_list_page_text(inf, bad[i], strlen(bad[i])), -EPROTO);
	CHECK_INT(r.calls, 0);
	const char *half = "{\"items\":[{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
			   "\"resourceVersion\":\"1\"}},{\"metadata\":{\"name\":\"b\",\"namespace\":\"ns\","
			   "\"resourceVersion\":\"1\"}},{\"metadata\":{\"a\\u0000\":1}},"
			   "{\"metadata\":{\"name\":\"c\"}}]}";
	const char *broken = "{\"items\":[{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
			     "\"resourceVersion\":\"1\"}},{\"metadata\":[}}]}";
	CHECK_INT(informer_list_page_text(inf, broken, strlen(broken)), -EPROTO);
	CHECK_INT(r.calls, 0);
	CHECK_INT(informer_list_page_text(inf, half, strlen(half)), -EPROTO);
	CHECK_STR(rec_log(&r), "add a@1;add b@1;");
	/* an empty page, and items without a valid name (skipped) are fine */
	const char *ok = "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":{}}]}";
	CHECK_INT(informer_list_page_text(inf, ok, strlen(ok)), 0);
	CHECK_INT(informer_list_page_text(inf, "{\"items\":[]}", 12), 0);
	CHECK_INT(informer_list_end(inf, "5"), 0);
	CHECK_INT(informer_count(inf), 2);
	informer_free(inf);
	rec_free(&r);
}

static void test_replace_rejects(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	json_t *l = list("5", obj("ns", "a", "1", NULL), NULL);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	rec_reset(&r);

	json_t *bad[] = {
		json_pack("{s:[]}", "items"),                                 /* no rv */
		json_pack("{s:{s:s}}", "metadata", "resourceVersion", "9"),   /* no items */
		json_pack("{s:{s:s}, s:{}}", "metadata", "resourceVersion", "9", "items"),
		json_pack("{s:{s:s}, s:[]}", "metadata", "resourceVersion", "9 ; x", "items"),
		json_pack("{s:{s:i}, s:[]}", "metadata", "resourceVersion", 9, "items"),
		json_string("not a list"),
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CHECK_INT(informer_replace(inf, bad[i]), -EPROTO);
		json_decref(bad[i]);
	}
	CHECK_STR(rec_log(&r), "");
	CHECK_INT(informer_count(inf), 1);
	CHECK_STR(informer_resource_version(inf), "5");

	/* items without a valid name are skipped, the rest applies */
	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	l = list("6", obj("ns", "a", "1", NULL), obj("ns", NULL, "2", NULL),
		 obj("ns", "", "3", NULL), obj("ns", longname, "4", NULL),
		 obj("ns", "sl/ash", "5", NULL), json_integer(3), obj("ns", "b", "6", NULL), NULL);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	CHECK_STR(rec_log(&r), "add b@6;");
	CHECK_INT(informer_count(inf), 2);
	informer_free(inf);
	rec_free(&r);
}

static void test_events(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	json_t *l = list("10", obj("ns", "a", "5", "ua"), NULL);
	informer_replace(inf, l);
	json_decref(l);
	rec_reset(&r);

	CHECK_INT(event(inf, "ADDED", obj("ns", "b", "11", "ub")), 0);
	CHECK_STR(informer_resource_version(inf), "11");
	CHECK_INT(event(inf, "ADDED", obj("ns", "b", "11", "ub")), 0); /* duplicate */
	CHECK_INT(event(inf, "MODIFIED", obj("ns", "b", "12", "ub")), 0);
	CHECK_INT(event(inf, "MODIFIED", obj("ns", "b", "12", "ub")), 0); /* duplicate */
	CHECK_INT(event(inf, "MODIFIED", obj("ns", "a", "13", "ua")), 0);
	CHECK_INT(event(inf, "MODIFIED", obj("ns", "c", "14", "uc")), 0); /* unknown: add */
	CHECK_INT(event(inf, "DELETED", obj("ns", "a", "15", "ua")), 0);
	CHECK_INT(event(inf, "DELETED", obj("ns", "zz", "16", "uz")), 0); /* unknown */
	CHECK_STR(informer_resource_version(inf), "16");
	CHECK_INT(event(inf, "BOOKMARK", json_pack("{s:s, s:{s:s}}", "kind", "ConfigMap",
						  "metadata", "resourceVersion", "20")), 0);
	CHECK_STR(informer_resource_version(inf), "20");
	CHECK_STR(rec_log(&r), "add b@11;upd b@11>12;upd a@5>13;add c@14;del a@15;");
	CHECK_INT(informer_count(inf), 2);
	CHECK(informer_get(inf, "a") == NULL);
	struct informer_stats st = informer_stats(inf);
	CHECK_INT(st.bookmarks, 1);
	CHECK_INT(st.events, 8);

	/* uid change through events: delete + add */
	rec_reset(&r);
	CHECK_INT(event(inf, "ADDED", obj("ns", "c", "21", "uc2")), 0);
	CHECK_STR(rec_log(&r), "del c@14;add c@21;");

	/* errors: 410 (by code or reason) means re-list; others are remote errors */
	rec_reset(&r);
	CHECK_INT(event(inf, "ERROR", json_pack("{s:s, s:s, s:i, s:s, s:s}", "kind", "Status",
					       "status", "Failure", "code", 410, "reason",
					       "Expired", "message",
					       "too old resource version: 1 (20)")), -ESTALE);
	CHECK_INT(event(inf, "ERROR", json_pack("{s:s}", "reason", "Gone")), -ESTALE);
	CHECK_INT(event(inf, "ERROR", json_pack("{s:i, s:s}", "code", 500, "message", "boom")),
		  -EREMOTEIO);
	CHECK_INT(event(inf, "ERROR", json_object()), -EREMOTEIO);
	CHECK_INT(informer_stats(inf).expired, 2);
	/* unknown types are ignored, malformed events refused */
	CHECK_INT(event(inf, "SOMETHING", obj("ns", "x", "30", NULL)), 0);
	CHECK_INT(informer_stats(inf).ignored, 1);
	CHECK_INT(event(inf, "ADDED", obj("ns", NULL, "31", NULL)), -EPROTO);
	CHECK_INT(event(inf, "ADDED", obj("ns", "x", NULL, NULL)), -EPROTO);
	CHECK_INT(event(inf, "ADDED", obj("ns", "x", "", NULL)), -EPROTO);
	CHECK_INT(event(inf, "ADDED", obj("ns", "x", "1\n2", NULL)), -EPROTO);
	CHECK_INT(event(inf, "BOOKMARK", json_pack("{s:{}}", "metadata")), -EPROTO);
	CHECK_INT(event(inf, "ADDED", json_string("x")), -EPROTO);
	CHECK_INT(event(inf, NULL, obj("ns", "x", "32", NULL)), -EPROTO);
	CHECK_INT(informer_apply_event(inf, "ADDED", NULL), -EPROTO);
	CHECK_STR(rec_log(&r), "");
	CHECK_STR(informer_resource_version(inf), "21");
	CHECK_INT(informer_count(inf), 2);
	informer_free(inf);
	rec_free(&r);
}

static void test_namespaces_and_iteration(void)
{
	struct rec r;
	struct informer *all = detached(&r, NULL);
	json_t *l = list("1", obj("n1", "x", "1", NULL), obj("n2", "x", "2", NULL),
			 obj(NULL, "x", "3", NULL), NULL);
	informer_replace(all, l);
	json_decref(l);
	CHECK_INT(informer_count(all), 3);
	CHECK_STR(rv_of(informer_get_ns(all, "n1", "x")), "1");
	CHECK_STR(rv_of(informer_get_ns(all, "n2", "x")), "2");
	CHECK_STR(rv_of(informer_get_ns(all, NULL, "x")), "3");
	CHECK_STR(rv_of(informer_get(all, "x")), "3"); /* no namespace: "" */
	CHECK(informer_get_ns(all, "n1", "sl/ash") == NULL);
	CHECK(informer_get_ns(all, "n1", NULL) == NULL);
	informer_free(all);
	rec_free(&r);

	/* many objects: the table grows; iteration visits each exactly once */
	struct informer *inf = detached(&r, "ns");
	json_t *items = json_array();
	for (int i = 0; i < 5000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "o%d", i);
		json_array_append_new(items, obj("ns", name, "1", NULL));
	}
	l = json_pack("{s:{s:s}, s:o}", "metadata", "resourceVersion", "7", "items", items);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	CHECK_INT(informer_count(inf), 5000);
	CHECK_INT(r.adds, 5000);
	char *seen = xcalloc(5000, 1);
	struct informer_iter it = INFORMER_ITER_INIT;
	json_t *o;
	int n = 0, dup = 0;
	while ((o = informer_iter_next(inf, &it))) {
		int k = atoi(name_of(o) + 1);
		if (seen[k])
			dup++;
		seen[k] = 1;
		n++;
	}
	CHECK_INT(n, 5000);
	CHECK_INT(dup, 0);
	CHECK(informer_iter_next(inf, &it) == NULL); /* stays at the end */
	free(seen);
	for (int i = 0; i < 5000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "o%d", i);
		if (!informer_get(inf, name)) {
			CHECK(!"object missing");
			break;
		}
	}
	/* keep the even ones: 2500 deletes */
	rec_reset(&r);
	items = json_array();
	for (int i = 0; i < 5000; i += 2) {
		char name[32];
		snprintf(name, sizeof(name), "o%d", i);
		json_array_append_new(items, obj("ns", name, "1", NULL));
	}
	l = json_pack("{s:{s:s}, s:o}", "metadata", "resourceVersion", "8", "items", items);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	CHECK_INT(r.deletes, 2500);
	CHECK_INT(r.adds + r.updates, 0);
	CHECK_INT(informer_count(inf), 2500);
	CHECK(informer_get(inf, "o2") && !informer_get(inf, "o3"));
	informer_free(inf);
	rec_free(&r);
}

/* informer_stop from a callback: the rest of the diff is not reported, and
 * the resourceVersion is not advanced (so a resumed informer re-does it). */
static void test_stop_and_free_in_callback(void)
{
	struct rec r;
	struct informer *inf = detached(&r, "ns");
	json_t *l = list("10", obj("ns", "a", "1", NULL), obj("ns", "b", "1", NULL),
			 obj("ns", "c", "1", NULL), NULL);
	informer_replace(inf, l);
	json_decref(l);
	rec_reset(&r);
	r.stop_after = 1;
	l = list("20", obj("ns", "a", "2", NULL), obj("ns", "b", "2", NULL), NULL);
	CHECK_INT(informer_replace(inf, l), 0);
	json_decref(l);
	CHECK_INT(r.calls, 1);
	CHECK_STR(informer_resource_version(inf), "10");
	informer_free(inf);
	rec_free(&r);

	/* informer_free from a callback: the memory outlives the dispatch (ASan
	 * would report a use after free otherwise), no callback follows */
	inf = detached(&r, "ns");
	r.free_after = 2;
	l = list("10", obj("ns", "a", "1", NULL), obj("ns", "b", "1", NULL),
		 obj("ns", "c", "1", NULL), NULL);
	informer_replace(inf, l); /* frees inf on the way out */
	json_decref(l);
	CHECK_INT(r.calls, 2);
	CHECK_INT(r.synced, 0);
	rec_free(&r);

	/* and from an event callback (delete + add of a re-created object) */
	inf = detached(&r, "ns");
	l = list("10", obj("ns", "a", "1", "u1"), NULL);
	informer_replace(inf, l);
	json_decref(l);
	rec_reset(&r);
	r.free_after = 1;
	json_t *o = obj("ns", "a", "2", "u2");
	CHECK_INT(informer_apply_event(inf, "MODIFIED", o), 0);
	json_decref(o);
	CHECK_INT(r.calls, 1);
	CHECK_STR(rec_log(&r), "del a@1;");
	rec_free(&r);
}

/* managedFields is dropped before caching, unless asked to keep it */
static void test_managed_fields(void)
{
	for (int keep = 0; keep < 2; keep++) {
		struct informer_opts o = { .api_version = "v1", .kind = "ConfigMap",
					   .namespace = "ns", .keep_managed_fields = keep };
		struct informer *inf = informer_new(NULL, NULL, &o, NULL);
		json_t *a = obj("ns", "a", "1", NULL), *b = obj("ns", "b", "2", NULL);
		json_object_set_new(json_object_get(a, "metadata"), "managedFields",
				    json_pack("[{s:s}]", "manager", "kubectl"));
		json_object_set_new(json_object_get(b, "metadata"), "managedFields",
				    json_pack("[{s:s}]", "manager", "kubectl"));
		json_t *l = list("3", a, NULL);
		informer_replace(inf, l);
		json_decref(l);
		CHECK(informer_apply_event(inf, "ADDED", b) == 0);
		json_decref(b);
		json_t *ma = json_object_get(informer_get(inf, "a"), "metadata");
		json_t *mb = json_object_get(informer_get(inf, "b"), "metadata");
		CHECK(ma && mb);
		CHECK(json_object_get(ma, "name") != NULL);
		CHECK((json_object_get(ma, "managedFields") != NULL) == keep);
		CHECK((json_object_get(mb, "managedFields") != NULL) == keep);
		informer_free(inf);
	}
}

/* With a keep list, only the members and fields listed (and metadata,
 * kind, apiVersion) are cached and given to the callbacks */
static void test_keep(void)
{
	static const char *const keep[] = {"spec.replicas", "status.readyReplicas", "data", NULL};
	struct informer_opts o = {.api_version = "apps/v1", .kind = "Deployment",
				  .namespace = "ns", .keep = keep};
	struct informer *inf = informer_new(NULL, NULL, &o, NULL);
	json_t *a = obj("ns", "a", "1", NULL), *b = obj("ns", "b", "2", NULL);
	json_t *objs[] = {a, b};
	for (int i = 0; i < 2; i++) {
		json_object_set_new(objs[i], "kind", json_string("Deployment"));
		json_object_set_new(objs[i], "spec",
				    json_pack("{s:i,s:{s:{s:[{s:s}]}},s:s}", "replicas", 1, "template",
					      "spec", "containers", "image", "odoo", "strategy", "x"));
		json_object_set_new(objs[i], "status",
				    json_pack("{s:i,s:i,s:[{s:s}]}", "readyReplicas", 1, "replicas", 1,
					      "conditions", "type", "Available"));
		json_object_set_new(objs[i], "data", json_pack("{s:s}", "k", "v"));
		json_object_set_new(objs[i], "extra", json_string("dropped"));
	}
	json_object_set_new(b, "status", json_string("not an object"));
	json_t *l = list("3", a, NULL);
	informer_replace(inf, l);
	json_decref(l);
	CHECK(informer_apply_event(inf, "ADDED", b) == 0);
	json_decref(b);
	json_t *ca = informer_get(inf, "a"), *cb = informer_get(inf, "b");
	char *sa = json_dumps(ca, JSON_COMPACT | JSON_SORT_KEYS);
	char *sb = json_dumps(cb, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR(sa, "{\"apiVersion\":\"v1\",\"data\":{\"k\":\"v\"},\"kind\":\"Deployment\",\"metadata\":"
		      "{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"1\"},"
		      "\"spec\":{\"replicas\":1},\"status\":{\"readyReplicas\":1}}");
	CHECK_STR(sb, "{\"apiVersion\":\"v1\",\"data\":{\"k\":\"v\"},\"kind\":\"Deployment\",\"metadata\":"
		      "{\"name\":\"b\",\"namespace\":\"ns\",\"resourceVersion\":\"2\"},"
		      "\"spec\":{\"replicas\":1}}");
	free(sa);
	free(sb);
	informer_free(inf);
}

static int slim_full_seen, slim_updates;

static void on_slim_update(struct informer *inf, json_t *old, json_t *o, void *data)
{
	UNUSED(inf), UNUSED(data), UNUSED(o);
	CHECK(json_object_get(old, "data") == NULL);
	slim_updates++;
}

static void on_slim_add(struct informer *inf, json_t *o, void *data)
{
	UNUSED(inf), UNUSED(data);
	if (json_object_get(o, "data") && json_object_get(json_object_get(o, "metadata"), "annotations"))
		slim_full_seen++;
}

/* With slim_cache, the callbacks see the whole object, the cache keeps
 * only the identity of each (and still diffs by resourceVersion) */
static void test_slim_cache(void)
{
	struct informer_opts o = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns",
				  .slim_cache = true};
	struct informer_callbacks cb = {.on_add = on_slim_add, .on_update = on_slim_update};
	struct informer *inf = informer_new(NULL, NULL, &o, &cb);
	json_t *a = obj("ns", "a", "1", "u1");
	json_t *md = json_object_get(a, "metadata");
	json_object_set_new(md, "labels", json_pack("{s:s}", "runboat/build", "a"));
	json_object_set_new(md, "annotations", json_pack("{s:s}", "k", "v"));
	json_object_set_new(md, "creationTimestamp", json_string("2026-01-01T00:00:00Z"));
	json_object_set_new(a, "data", json_pack("{s:s}", "k", "v"));
	json_t *l = list("3", a, NULL);
	informer_replace(inf, l);
	json_decref(l);
	CHECK_INT(slim_full_seen, 1);
	char *sa = json_dumps(informer_get(inf, "a"), JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR(sa, "{\"metadata\":{\"creationTimestamp\":\"2026-01-01T00:00:00Z\","
		      "\"labels\":{\"runboat/build\":\"a\"},\"name\":\"a\",\"namespace\":\"ns\","
		      "\"resourceVersion\":\"1\",\"uid\":\"u1\"}}");
	free(sa);
	/* the same resourceVersion again is nothing new; a newer one is */
	json_t *again = obj("ns", "a", "1", "u1");
	l = list("4", again, NULL);
	informer_replace(inf, l);
	json_decref(l);
	CHECK_INT(slim_updates, 0);
	json_t *newer = obj("ns", "a", "2", "u1");
	l = list("5", newer, NULL);
	informer_replace(inf, l);
	json_decref(l);
	CHECK_INT(slim_updates, 1);
	informer_free(inf);
}

static void test_watch_decisions(void)
{
	struct informer_watch_end e = { 0 };
	/* the server ended it at timeoutSeconds */
	e.healthy = true;
	CHECK_INT(informer_watch_next(&e), INFORMER_REWATCH);
	/* closed at once without events: not a tight loop */
	e.healthy = false;
	CHECK_INT(informer_watch_next(&e), INFORMER_REWATCH_BACKOFF);
	/* 410 as an HTTP status or an ERROR event */
	e = (struct informer_watch_end){ .error = -EREMOTEIO, .status = 410 };
	CHECK_INT(informer_watch_next(&e), INFORMER_RELIST);
	e = (struct informer_watch_end){ .error = -ECANCELED, .expired = true };
	CHECK_INT(informer_watch_next(&e), INFORMER_RELIST);
	e = (struct informer_watch_end){ .error = 0, .expired = true, .healthy = true };
	CHECK_INT(informer_watch_next(&e), INFORMER_RELIST);
	/* a malformed stream: events may be lost */
	e = (struct informer_watch_end){ .error = -EPROTO };
	CHECK_INT(informer_watch_next(&e), INFORMER_RELIST);
	e = (struct informer_watch_end){ .error = -ECANCELED, .broken = true };
	CHECK_INT(informer_watch_next(&e), INFORMER_RELIST);
	/* other failures: watch again from the same resourceVersion, later */
	e = (struct informer_watch_end){ .error = -EREMOTEIO, .status = 403 };
	CHECK_INT(informer_watch_next(&e), INFORMER_REWATCH_BACKOFF);
	e = (struct informer_watch_end){ .error = -ECONNREFUSED };
	CHECK_INT(informer_watch_next(&e), INFORMER_REWATCH_BACKOFF);
	e = (struct informer_watch_end){ .error = -EIO, .healthy = true };
	CHECK_INT(informer_watch_next(&e), INFORMER_REWATCH_BACKOFF);
	e = (struct informer_watch_end){ .error = -ECANCELED, .silenced = true };
	CHECK_INT(informer_watch_next(&e), INFORMER_REWATCH_BACKOFF);
	e = (struct informer_watch_end){ .error = -ECANCELED, .errored = true };
	CHECK_INT(informer_watch_next(&e), INFORMER_REWATCH_BACKOFF);
	/* cancelled by nobody here: kube_close */
	e = (struct informer_watch_end){ .error = -ECANCELED };
	CHECK_INT(informer_watch_next(&e), INFORMER_HALT);

	CHECK(informer_watch_healthy(1000, 1001, 1, 60000));
	CHECK(!informer_watch_healthy(1000, 60999, 0, 60000));
	CHECK(informer_watch_healthy(1000, 61000, 0, 60000));
	CHECK(!informer_watch_healthy(5000, 1000, 0, 60000)); /* clock oddity */
}

static void test_silence_and_timeouts(void)
{
	/* the timeoutSeconds rule alone while no periodic bookmark was seen */
	CHECK_INT(informer_silence_deadline(1000, 300, 30000, 0), 1000 + 300000 + 30000);
	CHECK_INT(informer_silence_deadline(0, 5, 0, 0), 5000);
	CHECK_INT(informer_silence_deadline(7, -1, -5, 0), 7);
	/* the bookmark rule: twice the period plus the margin, when sooner */
	CHECK_INT(informer_silence_deadline(1000, 300, 30000, 60500), 1000 + 121000 + 30000);
	CHECK_INT(informer_silence_deadline(1000, 600, 30000, 61000), 1000 + 122000 + 30000);
	/* a period longer than half the time-out changes nothing */
	CHECK_INT(informer_silence_deadline(1000, 300, 30000, 200000), 1000 + 300000 + 30000);
	CHECK_INT(informer_silence_deadline(1000, 100, 0, 50000), 1000 + 100000);
	CHECK_INT(informer_silence_deadline(1000, 100, 0, 49999), 1000 + 99998);
	/* a tiny period counts as INFORMER_MIN_BOOKMARK_PERIOD_MS */
	CHECK_INT(informer_silence_deadline(1000, 300, 30000, 1),
		  1000 + 2 * INFORMER_MIN_BOOKMARK_PERIOD_MS + 30000);
	CHECK_INT(informer_silence_deadline(0, 0, 0, 5), 0); /* no time-out: at once */

	/* periodic bookmarks, not the one right before timeoutSeconds */
	CHECK(informer_periodic_bookmark(1000, 61000, 300));
	CHECK(informer_periodic_bookmark(1000, 1000, 300));
	CHECK(informer_periodic_bookmark(1000, 1000 + 300000 - INFORMER_END_BOOKMARK_SLACK_MS - 1, 300));
	CHECK(!informer_periodic_bookmark(1000, 1000 + 300000 - INFORMER_END_BOOKMARK_SLACK_MS, 300));
	CHECK(!informer_periodic_bookmark(1000, 1000 + 298000, 300)); /* kube-apiserver's, 2 s before */
	CHECK(!informer_periodic_bookmark(1000, 1000 + 400000, 300)); /* after the end */
	CHECK(!informer_periodic_bookmark(5000, 1000, 300));          /* clock oddity */
	CHECK(!informer_periodic_bookmark(1000, 2000, 0));            /* no time-out known */
	/* the period is the shortest gap seen: a first bookmark after a
	 * skipped tick (120 s) is corrected by the next gap (60 s) */
	CHECK_INT(informer_bookmark_period(0, 1000, 121500), 120500);
	CHECK_INT(informer_bookmark_period(120500, 121500, 182000), 60500);
	CHECK_INT(informer_bookmark_period(60500, 182000, 243500), 60500); /* a late one */
	CHECK_INT(informer_bookmark_period(60500, 243500, 303000), 59500);
	CHECK_INT(informer_bookmark_period(60500, 9000, 1000), 60500); /* clock oddity */
	CHECK_INT(informer_bookmark_period(60500, 9000, 9000), 60500);
	CHECK_INT(informer_bookmark_period(0, 9000, 1000), 0);

	uint64_t rng = 77;
	int lo = 1000, hi = 0;
	for (int i = 0; i < 20000; i++) {
		int t = informer_watch_timeout(&rng, 300, 600);
		if (t < 300 || t > 600) {
			CHECK(!"timeout out of [300, 600]");
			return;
		}
		lo = t < lo ? t : lo;
		hi = t > hi ? t : hi;
	}
	CHECK_INT(lo, 300);
	CHECK_INT(hi, 600);
	int t = informer_watch_timeout(&rng, 600, 300); /* swapped */
	CHECK(t >= 300 && t <= 600);
	CHECK_INT(informer_watch_timeout(&rng, 0, 0), 1);
	CHECK_INT(informer_watch_timeout(&rng, 7, 7), 7);
	/* draws differ */
	int a = informer_watch_timeout(&rng, 300, 600), b = informer_watch_timeout(&rng, 300, 600),
	    c = informer_watch_timeout(&rng, 300, 600);
	CHECK(!(a == b && b == c));
}

static void test_valid_rv(void)
{
	CHECK(informer_valid_rv("1"));
	CHECK(informer_valid_rv("123456789012345678"));
	CHECK(informer_valid_rv("a.b-c_D"));
	CHECK(!informer_valid_rv(NULL));
	CHECK(!informer_valid_rv(""));
	CHECK(!informer_valid_rv("1 2"));
	CHECK(!informer_valid_rv("1&watch=0"));
	CHECK(!informer_valid_rv("1%00"));
	char big[80];
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	CHECK(!informer_valid_rv(big));
	big[64] = 0;
	CHECK(informer_valid_rv(big));
}

/* ---- kube_lines: the framing of watch streams ---- */

struct lines {
	struct buf got; /* lines joined with '|' */
	int n;
	int stop_at; /* return 1 from this line on */
};

static int on_line(char *line, size_t len, void *data)
{
	struct lines *l = data;
	l->n++;
	if (strlen(line) != len)
		CHECK(!"line length mismatch");
	buf_append(&l->got, line, len);
	buf_append_str(&l->got, "|");
	return l->stop_at && l->n >= l->stop_at ? 1 : 0;
}

static void test_lines_split_everywhere(void)
{
	const char *stream = "{\"type\":\"ADDED\"}\n\r\n{\"a\":1}\r\n\n{\"type\":\"BOOKMARK\"}\nrest";
	const char *want = "{\"type\":\"ADDED\"}|{\"a\":1}|{\"type\":\"BOOKMARK\"}|";
	size_t len = strlen(stream);
	int bad = 0;
	/* every pair of cut points: three chunks */
	for (size_t i = 0; i <= len && !bad; i++) {
		for (size_t j = i; j <= len && !bad; j++) {
			struct kube_lines kl = { 0 };
			struct lines l = { 0 };
			buf_append_str(&l.got, "");
			int r1 = kube_lines_feed(&kl, stream, i, on_line, &l);
			int r2 = kube_lines_feed(&kl, stream + i, j - i, on_line, &l);
			int r3 = kube_lines_feed(&kl, stream + j, len - j, on_line, &l);
			if (r1 || r2 || r3 || strcmp(l.got.data, want) != 0) {
				bad++;
				fprintf(stderr, "  cut %zu,%zu: got \"%s\"\n", i, j, l.got.data);
			}
			/* the unterminated tail completes with the next bytes */
			kube_lines_feed(&kl, "\n", 1, on_line, &l);
			if (strcmp(l.got.data + strlen(want), "rest|") != 0)
				bad++;
			kube_lines_free(&kl);
			buf_free(&l.got);
		}
	}
	CHECK_INT(bad, 0);

	/* one byte at a time */
	struct kube_lines kl = { 0 };
	struct lines l = { 0 };
	buf_append_str(&l.got, "");
	for (size_t i = 0; i < len; i++)
		CHECK_INT(kube_lines_feed(&kl, stream + i, 1, on_line, &l), 0);
	CHECK_STR(l.got.data, want);
	kube_lines_free(&kl);
	buf_free(&l.got);
}

static void test_lines_limits(void)
{
	/* a line beyond max_line is an error, even when it arrives in pieces */
	struct kube_lines kl = { .max_line = 16 };
	struct lines l = { 0 };
	buf_append_str(&l.got, "");
	CHECK_INT(kube_lines_feed(&kl, "short\n", 6, on_line, &l), 0);
	int r = 0;
	for (int i = 0; i < 10 && r == 0; i++)
		r = kube_lines_feed(&kl, "0123456789", 10, on_line, &l);
	CHECK_INT(r, -EMSGSIZE);
	CHECK_STR(l.got.data, "short|");
	kube_lines_free(&kl);
	buf_free(&l.got);

	/* a non-zero return from on_line stops the feeding and is returned */
	struct kube_lines k2 = { 0 };
	struct lines l2 = { .stop_at = 2 };
	buf_append_str(&l2.got, "");
	CHECK_INT(kube_lines_feed(&k2, "a\nb\nc\n", 6, on_line, &l2), 1);
	CHECK_STR(l2.got.data, "a|b|");
	kube_lines_free(&k2);
	buf_free(&l2.got);
}

/* ---- the informer on the real client, against a scripted server ---- */

/* Three lists of ConfigMaps in pages of 2 over one kept-alive connection
 * (the client asks for each next page before the informer parses the page
 * at hand): the first fails with 410 on its second page, the second has a
 * malformed second page (the informer cancels it while the third page is
 * in flight), the third completes. */
struct relist {
	struct rec *rec;
	int attempt;           /* first pages asked for */
	int watches;
	int synced_at_watch;   /* on_synced calls when the watch was asked */
	char seen[512];        /* "1:p1;1:p2;2:p1;..." */
};

static void relist_seen(struct relist *x, const char *page)
{
	size_t n = strlen(x->seen);
	snprintf(x->seen + n, sizeof x->seen - n, "%d:%s;", x->attempt, page);
}

static void relist_handler(struct stub_conn *c, const struct stub_request *rq, void *data)
{
	struct relist *x = data;
	const char *t = rq->target;
	if (strcmp(t, "/api/v1") == 0) {
		stub_respond_keepalive(c, 200, "", "{\"kind\":\"APIResourceList\",\"groupVersion\":\"v1\","
			"\"resources\":[{\"name\":\"configmaps\",\"namespaced\":true,\"kind\":\"ConfigMap\"}]}");
	} else if (str_starts_with(t, "/api/v1/namespaces/ns/configmaps?watch=1")) {
		x->watches++;
		x->synced_at_watch = x->rec->synced;
		stub_stream_start(c, 200); /* stays open */
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps?limit=2") == 0) {
		x->attempt++;
		relist_seen(x, "p1");
		stub_respond_keepalive(c, 200, "", x->attempt == 1
			? "{\"metadata\":{\"resourceVersion\":\"5\",\"continue\":\"p2\"},\"items\":["
			  "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"1\"}},"
			  "{\"metadata\":{\"name\":\"x\",\"namespace\":\"ns\",\"resourceVersion\":\"1\"}}]}"
			: "{\"metadata\":{\"resourceVersion\":\"7\",\"continue\":\"p2\"},\"items\":["
			  "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\",\"resourceVersion\":\"1\"}},"
			  "{\"metadata\":{\"name\":\"b\",\"namespace\":\"ns\",\"resourceVersion\":\"2\"}}]}");
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps?limit=2&continue=p2") == 0) {
		relist_seen(x, "p2");
		if (x->attempt == 1)
			stub_respond_keepalive(c, 410, "", "{\"kind\":\"Status\",\"reason\":\"Expired\","
				"\"message\":\"The provided continue parameter is too old\",\"code\":410}");
		else if (x->attempt == 2) /* a trailing comma in the item */
			stub_respond_keepalive(c, 200, "", "{\"metadata\":{\"resourceVersion\":\"7\","
				"\"continue\":\"p3\"},\"items\":[{\"metadata\":{\"name\":\"c\"},}]}");
		else
			stub_respond_keepalive(c, 200, "", "{\"metadata\":{\"resourceVersion\":\"7\","
				"\"continue\":\"p3\"},\"items\":[{\"metadata\":{\"name\":\"c\","
				"\"namespace\":\"ns\",\"resourceVersion\":\"3\"}}]}");
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps?limit=2&continue=p3") == 0) {
		relist_seen(x, "p3");
		stub_respond_keepalive(c, 200, "", "{\"metadata\":{\"resourceVersion\":\"9\"},\"items\":[]}");
	} else {
		stub_respond(c, 500, "", "{\"kind\":\"Status\",\"message\":\"unexpected request\"}");
	}
}

static struct kube *relist_kube(uv_loop_t *loop, int port)
{
	struct kubeconfig *kc = xcalloc(1, sizeof(*kc));
	kc->server = xasprintf("http://127.0.0.1:%d", port);
	kc->token = xstrdup("tok");
	kc->namespace = xstrdup("ns");
	struct kube_options ko = {.qps = -1};
	return kube_new(loop, kc, &ko);
}

static struct informer *relist_informer(uv_loop_t *loop, struct kube *k, struct rec *r)
{
	struct informer_opts o = { .api_version = "v1", .kind = "ConfigMap", .namespace = "ns",
				   .page_size = 2, .backoff_base_ms = 5, .backoff_max_ms = 10,
				   .seed = 1 };
	struct informer_callbacks cb = { on_add, on_update, on_delete, on_synced, r };
	memset(r, 0, sizeof(*r));
	rec_reset(r);
	return informer_new(loop, k, &o, &cb);
}

/* Lists that fail part way (410 on the page asked for ahead, a malformed
 * page cancelled with the next one in flight) keep what they applied, the
 * informer lists again and never watches before a complete list; the
 * deletions come after the last page of the complete one. */
static void test_list_ahead_on_the_wire(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct stub stub;
	struct rec r;
	struct relist x = { .rec = &r };
	CHECK_INT(stub_start(&loop, &stub, relist_handler, &x), 0);
	struct kube *k = relist_kube(&loop, stub.port);
	struct informer *inf = relist_informer(&loop, k, &r);
	CHECK_INT(informer_start(inf), 0);
	loop_run_until(&loop, &x.watches, 1);
	CHECK_STR(rec_log(&r), "add a@1;add x@1;add b@2;add c@3;del x@1;synced;");
	CHECK_INT(x.synced_at_watch, 1);
	CHECK_INT(x.attempt, 3);
	/* the third page of the second list was asked for before the second
	 * was found malformed */
	CHECK_STR(x.seen, "1:p1;1:p2;2:p1;2:p2;2:p3;3:p1;3:p2;3:p3;");
	struct informer_stats st = informer_stats(inf);
	CHECK_INT(st.lists, 3);
	CHECK_INT(st.list_failures, 2);
	CHECK_INT(st.expired, 1);
	CHECK_STR(informer_resource_version(inf), "9");
	CHECK_INT(informer_count(inf), 3);
	/* the calls' connection, a new one after the cancelled page (whose
	 * answer was never read), the watch's */
	CHECK_INT(stub.accepted, 3);
	informer_free(inf);
	kube_close(k);
	stub_stop(&stub);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	rec_free(&r);
}

/* informer_stop from the first callback of a page, the next page in
 * flight: nothing more is applied; started again, it lists from the start;
 * freed with a page in flight, nothing leaks. */
static void test_list_ahead_stop(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct stub stub;
	struct rec r;
	struct relist x = { .rec = &r, .attempt = 2 }; /* lists that complete */
	CHECK_INT(stub_start(&loop, &stub, relist_handler, &x), 0);
	struct kube *k = relist_kube(&loop, stub.port);
	struct informer *inf = relist_informer(&loop, k, &r);
	r.stop_after = 1;
	CHECK_INT(informer_start(inf), 0);
	loop_run_until(&loop, &r.calls, 1);
	/* the second page's request had been sent: it reaches the server
	 * (discovery, first page, second page), its answer is not used */
	loop_run_until(&loop, &stub.requests, 3);
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_STR(rec_log(&r), "add a@1;");
	CHECK_STR(x.seen, "3:p1;3:p2;");
	CHECK(!informer_synced(inf));
	r.stop_after = 0;
	CHECK_INT(informer_start(inf), 0);
	loop_run_until(&loop, &x.watches, 1);
	CHECK_STR(rec_log(&r), "add a@1;add b@2;add c@3;synced;");
	/* freed while a third list's first page is asked for */
	informer_free(inf);
	kube_close(k);
	stub_stop(&stub);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	rec_free(&r);
}

int main(void)
{
	RUN(test_new_validates);
	RUN(test_first_list_and_relist_diff);
	RUN(test_list_by_pages);
	RUN(test_list_fails_part_way);
	RUN(test_list_page_stop_and_free);
	RUN(test_list_page_text);
	RUN(test_list_page_text_rejects);
	RUN(test_list_ahead_on_the_wire);
	RUN(test_list_ahead_stop);
	RUN(test_replace_rejects);
	RUN(test_events);
	RUN(test_namespaces_and_iteration);
	RUN(test_stop_and_free_in_callback);
	RUN(test_managed_fields);
	RUN(test_keep);
	RUN(test_slim_cache);
	RUN(test_watch_decisions);
	RUN(test_silence_and_timeouts);
	RUN(test_valid_rv);
	RUN(test_lines_split_everywhere);
	RUN(test_lines_limits);
	return UNIT_DONE();
}
