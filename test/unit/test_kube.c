/* The kube client: pure helpers (token bucket, Retry-After, Status messages,
 * line framing, paths), then loop tests against a scripted HTTP stub for the
 * client's own logic (discovery cache, pagination, retries, watch framing,
 * cancellation, close, 401 with an exec plugin). Real API server behaviour
 * is covered by test_kube_live. */
#include "kube.h"
#include "kubeconfig.h"
#include "util.h"
#include "unit.h"
#include "http_stub.h"
#include "fault_proxy.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- pure ---- */

static void test_bucket(void)
{
	struct kube_bucket b;
	kube_bucket_init(&b, 10, 3, 1000);
	/* a burst of 3, then one every 100 ms */
	CHECK_INT(kube_bucket_take(&b, 1000), 0);
	CHECK_INT(kube_bucket_take(&b, 1000), 0);
	CHECK_INT(kube_bucket_take(&b, 1000), 0);
	CHECK_INT(kube_bucket_take(&b, 1000), 100);
	CHECK_INT(kube_bucket_take(&b, 1040), 60);
	CHECK_INT(kube_bucket_take(&b, 1100), 0);
	CHECK_INT(kube_bucket_take(&b, 1100), 100);
	/* idle time refills up to the burst only */
	CHECK_INT(kube_bucket_take(&b, 60000), 0);
	CHECK_INT(kube_bucket_take(&b, 60000), 0);
	CHECK_INT(kube_bucket_take(&b, 60000), 0);
	CHECK_INT(kube_bucket_take(&b, 60000), 100);
	/* fractional rates round up, never 0 while waiting */
	kube_bucket_init(&b, 3, 1, 0);
	CHECK_INT(kube_bucket_take(&b, 0), 0);
	CHECK_INT(kube_bucket_take(&b, 0), 334);
	CHECK_INT(kube_bucket_take(&b, 333), 1);
	CHECK_INT(kube_bucket_take(&b, 334), 0);
	/* unlimited */
	kube_bucket_init(&b, -1, 1, 0);
	for (int i = 0; i < 1000; i++)
		CHECK_INT(kube_bucket_take(&b, 0), 0);
	/* burst < 1 is one */
	kube_bucket_init(&b, 1, 0, 0);
	CHECK_INT(kube_bucket_take(&b, 0), 0);
	CHECK_INT(kube_bucket_take(&b, 0), 1000);
}

static void test_retry_after(void)
{
	CHECK_INT(kube_parse_retry_after("1"), 1);
	CHECK_INT(kube_parse_retry_after(" 30 "), 30);
	CHECK_INT(kube_parse_retry_after("0"), 0);
	CHECK_INT(kube_parse_retry_after(NULL), -1);
	CHECK_INT(kube_parse_retry_after(""), -1);
	CHECK_INT(kube_parse_retry_after("-1"), -1);
	CHECK_INT(kube_parse_retry_after("1.5"), -1);
	CHECK_INT(kube_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), -1);
	CHECK_INT(kube_parse_retry_after("99999999999999999999"), -1);
}

static char *status_msg(int status, const char *raw, char **reason)
{
	json_t *body = json_loads(raw, 0, NULL);
	char *m = kube_status_message(status, body, raw, strlen(raw), reason);
	json_decref(body);
	return m;
}

static void test_status_message(void)
{
	char *reason = NULL;
	char *m = status_msg(403,
			     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
			     "\"message\":\"deployments.apps \\\"b123-odoo\\\" is forbidden: User "
			     "\\\"limited\\\" cannot get resource \\\"deployments\\\" in API group "
			     "\\\"apps\\\" in the namespace \\\"default\\\"\",\"reason\":\"Forbidden\","
			     "\"details\":{\"name\":\"b123-odoo\",\"group\":\"apps\",\"kind\":"
			     "\"deployments\"},\"code\":403}",
			     &reason);
	CHECK_STR(m, "deployments.apps \"b123-odoo\" is forbidden: User \"limited\" cannot get "
		     "resource \"deployments\" in API group \"apps\" in the namespace \"default\"");
	CHECK_STR(reason, "Forbidden");
	free(m);
	free(reason);

	/* causes already in the message are not repeated; others are added */
	m = status_msg(422,
		       "{\"kind\":\"Status\",\"message\":\"Deployment.apps \\\"x\\\" is invalid: "
		       "spec.replicas: Invalid value: -1: must be >= 0\",\"reason\":\"Invalid\","
		       "\"details\":{\"causes\":[{\"reason\":\"FieldValueInvalid\",\"message\":"
		       "\"Invalid value: -1: must be >= 0\",\"field\":\"spec.replicas\"},"
		       "{\"message\":\"other problem\",\"field\":\"spec.x\"},{\"message\":"
		       "\"no field\"}]}}",
		       &reason);
	CHECK_STR(m, "Deployment.apps \"x\" is invalid: spec.replicas: Invalid value: -1: must be "
		     ">= 0; spec.x: other problem; no field");
	CHECK_STR(reason, "Invalid");
	free(m);
	free(reason);

	/* not a Status */
	m = status_msg(502, "<html>\nBad\tGateway</html>", &reason);
	CHECK_STR(m, "HTTP 502: <html> Bad Gateway</html>");
	CHECK_STR(reason, "");
	free(m);
	free(reason);
	m = kube_status_message(500, NULL, NULL, 0, NULL);
	CHECK_STR(m, "HTTP 500 with an empty body");
	free(m);
	m = status_msg(409, "{\"kind\":\"Status\",\"reason\":\"Conflict\"}", NULL);
	CHECK_STR(m, "HTTP 409: Conflict");
	free(m);

	/* hostile: control characters replaced, length bounded */
	struct buf big = {0};
	buf_append_str(&big, "{\"message\":\"a\\u001b[31mb");
	for (int i = 0; i < 5000; i++)
		buf_append_str(&big, "\xc3\xa9");
	buf_append_str(&big, "\"}");
	m = status_msg(400, big.data, NULL);
	CHECK(strncmp(m, "a [31mb\xc3\xa9", 9) == 0);
	CHECK(strlen(m) <= 2048 + 3);
	CHECK(str_ends_with(m, "\xc3\xa9...")); /* not cut inside a character */
	free(m);
	buf_free(&big);
}

struct lines_seen {
	int n;
	char got[8][64];
	int stop_at;
};

static int on_test_line(char *line, size_t len, void *data)
{
	struct lines_seen *s = data;
	CHECK_INT(strlen(line), len);
	if (s->n < 8)
		snprintf(s->got[s->n], sizeof(s->got[0]), "%s", line);
	s->n++;
	return s->stop_at && s->n == s->stop_at ? 42 : 0;
}

static void test_lines(void)
{
	struct kube_lines l = {0};
	struct lines_seen s = {0};
	CHECK_INT(kube_lines_feed(&l, "ab", 2, on_test_line, &s), 0);
	CHECK_INT(s.n, 0);
	CHECK_INT(kube_lines_feed(&l, "c\r\n\n{x}\nde", 10, on_test_line, &s), 0);
	CHECK_INT(s.n, 2);
	CHECK_STR(s.got[0], "abc");
	CHECK_STR(s.got[1], "{x}");
	CHECK_INT(kube_lines_feed(&l, "f\n", 2, on_test_line, &s), 0);
	CHECK_INT(s.n, 3);
	CHECK_STR(s.got[2], "def");
	CHECK_INT(l.len, 0);
	/* the callback stops the feeding */
	s.stop_at = 4;
	CHECK_INT(kube_lines_feed(&l, "1\n2\n", 4, on_test_line, &s), 42);
	CHECK_INT(s.n, 4);
	kube_lines_free(&l);

	/* a line longer than the limit, complete or not */
	struct kube_lines m = {.max_line = 4};
	struct lines_seen t = {0};
	CHECK_INT(kube_lines_feed(&m, "1234\n", 5, on_test_line, &t), 0);
	CHECK_INT(kube_lines_feed(&m, "12345\n", 6, on_test_line, &t), -EMSGSIZE);
	kube_lines_free(&m);
	m = (struct kube_lines){.max_line = 4};
	CHECK_INT(kube_lines_feed(&m, "123", 3, on_test_line, &t), 0);
	CHECK_INT(kube_lines_feed(&m, "45", 2, on_test_line, &t), -EMSGSIZE);
	kube_lines_free(&m);
}

static void test_paths(void)
{
	struct kube_resource dep = {.group = "apps", .version = "v1", .plural = "deployments",
				    .namespaced = true};
	struct kube_resource ns = {.group = "", .version = "v1", .plural = "namespaces"};
	char *p = kube_resource_path(&dep, "builds", "b1-odoo", "scale");
	CHECK_STR(p, "/apis/apps/v1/namespaces/builds/deployments/b1-odoo/scale");
	free(p);
	p = kube_resource_path(&dep, NULL, NULL, NULL);
	CHECK_STR(p, "/apis/apps/v1/deployments");
	free(p);
	p = kube_resource_path(&ns, "ignored", "a b/c", NULL);
	CHECK_STR(p, "/api/v1/namespaces/a%20b%2Fc");
	free(p);

	json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "apps/v1", "kind",
				"Deployment", "metadata", "name", "x", "namespace", "ns");
	struct kube_ref ref;
	CHECK_INT(kube_ref_from_object(obj, &ref), 0);
	CHECK_STR(ref.api_version, "apps/v1");
	CHECK_STR(ref.kind, "Deployment");
	CHECK_STR(ref.name, "x");
	CHECK_STR(ref.namespace, "ns");
	json_object_del(obj, "kind");
	CHECK_INT(kube_ref_from_object(obj, &ref), -EINVAL);
	json_decref(obj);
}

/* ---- loop tests against the stub ---- */

struct result {
	int done;
	int error;
	int status;
	bool maybe_applied;
	bool transient;
	uint64_t t0, took_ms;
	char reason[64];
	char message[512];
	json_t *body;
	char plural[64];
	int events;
	char types[256];
	struct kube_call *cancel_on_event;
};

static void on_done(const struct kube_result *r, void *data)
{
	struct result *x = data;
	x->done++;
	x->error = r->error;
	x->status = r->status;
	x->maybe_applied = r->maybe_applied;
	x->transient = kube_result_transient(r);
	x->took_ms = now_ms() - x->t0;
	snprintf(x->reason, sizeof(x->reason), "%s", r->reason);
	snprintf(x->message, sizeof(x->message), "%s", r->message ? r->message : "(null)");
	json_decref(x->body);
	x->body = r->body ? json_incref(r->body) : NULL;
	snprintf(x->plural, sizeof(x->plural), "%s", r->resource ? r->resource->plural : "");
}

static void on_event(const char *type, json_t *object, void *data)
{
	struct result *x = data;
	x->events++;
	const char *name = json_string_value(json_object_get(json_object_get(object, "metadata"), "name"));
	size_t n = strlen(x->types);
	snprintf(x->types + n, sizeof(x->types) - n, "%s%s:%s", n ? "," : "", type,
		 name ? name : "?");
	if (x->cancel_on_event)
		kube_cancel(x->cancel_on_event);
}

static void run_until(uv_loop_t *loop, int *counter, int target)
{
	loop_run_until(loop, counter, target);
}

struct script {
	int apps_discovery;
	int core_discovery;
	int retries_429;
	int n503;
	struct stub_conn *hanging;
	char seen[16][1100];
	int nseen;
};

static const char *APPS_V1 =
	"{\"kind\":\"APIResourceList\",\"groupVersion\":\"apps/v1\",\"resources\":["
	"{\"name\":\"deployments\",\"singularName\":\"deployment\",\"namespaced\":true,\"kind\":\"Deployment\"},"
	"{\"name\":\"deployments/scale\",\"namespaced\":true,\"kind\":\"Scale\"},"
	"{\"name\":\"controllerrevisions\",\"namespaced\":true,\"kind\":\"ControllerRevision\"}]}";
static const char *CORE_V1 =
	"{\"kind\":\"APIResourceList\",\"groupVersion\":\"v1\",\"resources\":["
	"{\"name\":\"configmaps\",\"namespaced\":true,\"kind\":\"ConfigMap\"},"
	"{\"name\":\"namespaces\",\"namespaced\":false,\"kind\":\"Namespace\"}]}";

static void handler(struct stub_conn *c, const struct stub_request *rq, void *data)
{
	struct script *s = data;
	const char *t = rq->target;
	if (s->nseen < 16)
		snprintf(s->seen[s->nseen++], sizeof(s->seen[0]), "%s %s", rq->method, t);
	if (strcmp(t, "/apis/apps/v1") == 0) {
		s->apps_discovery++;
		stub_respond(c, 200, "", APPS_V1);
	} else if (strcmp(t, "/api/v1") == 0) {
		s->core_discovery++;
		stub_respond(c, 200, "", CORE_V1);
	} else if (strcmp(t, "/apis/example.com/v1") == 0) {
		stub_respond(c, 404, "", "{\"kind\":\"Status\",\"reason\":\"NotFound\",\"message\":\"the server could not find the requested resource\"}");
	} else if (strcmp(t, "/apis/apps/v1/namespaces/ns/deployments/d") == 0) {
		stub_respond(c, 200, "", "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\"}}");
	} else if (strcmp(t, "/apis/apps/v1/namespaces/ns/deployments/missing") == 0) {
		stub_respond(c, 404, "", "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"deployments.apps \\\"missing\\\" not found\",\"reason\":\"NotFound\",\"code\":404}");
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps/busy") == 0) {
		if (s->retries_429++ < 2)
			stub_respond(c, 429, "Retry-After: 0\r\n", "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\"}");
		else
			stub_respond(c, 200, "", "{\"kind\":\"ConfigMap\"}");
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps/down") == 0) {
		s->n503++;
		stub_respond(c, 503, "", "upstream down");
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps?labelSelector=a%3Db&limit=2") == 0) {
		stub_respond(c, 200, "", "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"10\",\"continue\":\"tok/1\",\"remainingItemCount\":2},\"items\":[{\"metadata\":{\"name\":\"c1\"}},{\"metadata\":{\"name\":\"c2\"}}]}");
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps?labelSelector=a%3Db&limit=2&continue=tok%2F1") == 0) {
		stub_respond(c, 200, "", "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"11\"},\"items\":[{\"metadata\":{\"name\":\"c3\"}},{\"kind\":\"X\",\"metadata\":{\"name\":\"c4\"}}]}");
	} else if (str_starts_with(t, "/api/v1/namespaces/ns/configmaps?watch=1")) {
		stub_stream_start(c, 200);
		stub_send(c, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"w1\"}}}\n{\"type\":\"MODI");
		stub_send(c, "FIED\",\"object\":{\"metadata\":{\"name\":\"w1\"}}}\r\n\n");
		if (strstr(t, "fieldSelector=metadata.name%3Dbad"))
			stub_send(c, "not json\n");
		else if (strstr(t, "timeoutSeconds=")) /* stays open */
			stub_send(c, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}\n");
		else
			stub_send(c, "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"w1\"}}}\n");
		if (!strstr(t, "timeoutSeconds="))
			stub_end(c);
	} else if (strstr(t, "/hang") || strcmp(t, "/apis/batch/v1") == 0) {
		s->hanging = c; /* never answers */
	} else if (strcmp(rq->method, "PATCH") == 0 || strcmp(rq->method, "DELETE") == 0 ||
		   strcmp(rq->method, "POST") == 0) {
		stub_respond(c, 200, "", "{\"kind\":\"Whatever\"}");
	} else {
		stub_respond(c, 500, "", "{\"kind\":\"Status\",\"message\":\"unexpected request\"}");
	}
}

static struct kubeconfig *stub_config(int port)
{
	struct kubeconfig *kc = xcalloc(1, sizeof(*kc));
	kc->server = xasprintf("http://127.0.0.1:%d", port);
	kc->token = xstrdup("tok");
	kc->namespace = xstrdup("ns");
	return kc;
}

struct env {
	uv_loop_t loop;
	struct stub stub;
	struct script script;
	struct kube *k;
};

static void env_start(struct env *e, const struct kube_options *o)
{
	memset(e, 0, sizeof(*e));
	uv_loop_init(&e->loop);
	CHECK_INT(stub_start(&e->loop, &e->stub, handler, &e->script), 0);
	struct kube_options def = {.qps = -1};
	e->k = kube_new(&e->loop, stub_config(e->stub.port), o ? o : &def);
}

static void env_stop(struct env *e)
{
	kube_close(e->k);
	stub_stop(&e->stub);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&e->loop), 0);
}

static void test_get_and_discovery(void)
{
	struct env e;
	env_start(&e, NULL);
	CHECK_STR(kube_default_namespace(e.k), "ns");
	struct result a = {0}, b = {0}, nf = {0}, unk = {0}, nogv = {0}, nons = {0};
	struct kube_ref ref = {.api_version = "apps/v1", .kind = "Deployment", .namespace = "ns",
			       .name = "d"};
	CHECK(kube_get(e.k, &ref, on_done, &a) != NULL);
	CHECK(kube_get(e.k, &ref, on_done, &b) != NULL);
	CHECK_INT(a.done, 0); /* never from inside the call */
	run_until(&e.loop, &b.done, 1);
	run_until(&e.loop, &a.done, 1);
	CHECK_INT(a.error, 0);
	CHECK_INT(a.status, 200);
	CHECK_STR(a.message, "(null)");
	CHECK_STR(json_string_value(json_object_get(a.body, "kind")), "Deployment");
	CHECK_STR(a.plural, "deployments");
	CHECK_INT(b.error, 0);
	CHECK_INT(e.script.apps_discovery, 1); /* both waited on one discovery */
	CHECK_STR(e.stub.last.auth, "Bearer tok");
	const struct kube_resource *r = kube_resource_cached(e.k, "apps/v1", "Deployment");
	CHECK(r && r->namespaced && strcmp(r->group, "apps") == 0);
	CHECK(kube_resource_cached(e.k, "apps/v1", "Scale") == NULL); /* a subresource */

	ref.name = "missing";
	kube_get(e.k, &ref, on_done, &nf);
	run_until(&e.loop, &nf.done, 1);
	CHECK_INT(nf.error, -EREMOTEIO);
	CHECK_INT(nf.status, 404);
	CHECK_STR(nf.reason, "NotFound");
	CHECK_STR(nf.message, "deployments.apps \"missing\" not found");
	CHECK_INT(e.script.apps_discovery, 1); /* cached */

	/* an unknown kind re-reads its group/version once, then fails */
	struct kube_ref uref = {.api_version = "apps/v1", .kind = "Gadget", .namespace = "ns",
				.name = "g"};
	kube_get(e.k, &uref, on_done, &unk);
	run_until(&e.loop, &unk.done, 1);
	CHECK_INT(unk.error, -ENOENT);
	CHECK_STR(unk.message, "kind \"Gadget\" is not served in apiVersion \"apps/v1\"");
	CHECK_INT(e.script.apps_discovery, 2);

	struct kube_ref gref = {.api_version = "example.com/v1", .kind = "Thing", .name = "t"};
	kube_get(e.k, &gref, on_done, &nogv);
	run_until(&e.loop, &nogv.done, 1);
	CHECK_INT(nogv.error, -ENOENT);
	CHECK_STR(nogv.message, "apiVersion \"example.com/v1\" is not served by the API server (kind \"Thing\")");

	/* a namespaced kind without a namespace */
	struct kube_ref nref = {.api_version = "apps/v1", .kind = "Deployment", .name = "d"};
	kube_get(e.k, &nref, on_done, &nons);
	run_until(&e.loop, &nons.done, 1);
	CHECK_INT(nons.error, -EINVAL);
	CHECK_STR(nons.message, "Deployment d: a namespace is required");

	json_decref(a.body);
	json_decref(b.body);
	json_decref(nf.body);
	env_stop(&e);
}

static void test_retries(void)
{
	struct env e;
	env_start(&e, NULL);
	struct result busy = {0}, down = {0};
	/* the core group is discovered first */
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns",
			       .name = "busy"};
	kube_get(e.k, &ref, on_done, &busy);
	ref.name = "down";
	kube_get(e.k, &ref, on_done, &down);
	run_until(&e.loop, &busy.done, 1);
	run_until(&e.loop, &down.done, 1);
	CHECK_INT(busy.error, 0);
	CHECK_INT(busy.status, 200);
	CHECK_INT(e.script.retries_429, 3);
	/* a 503 without Retry-After is not retried */
	CHECK_INT(down.error, -EREMOTEIO);
	CHECK_INT(down.status, 503);
	CHECK_INT(e.script.n503, 1);
	CHECK_STR(down.message, "HTTP 503: upstream down");
	json_decref(busy.body);
	json_decref(down.body);
	env_stop(&e);

	/* max_retries bounds the attempts */
	struct kube_options o = {.qps = -1, .max_retries = 1};
	env_start(&e, &o);
	struct result busy2 = {0};
	ref.name = "busy";
	kube_get(e.k, &ref, on_done, &busy2);
	run_until(&e.loop, &busy2.done, 1);
	CHECK_INT(busy2.status, 429);
	CHECK_INT(e.script.retries_429, 2);
	json_decref(busy2.body);
	env_stop(&e);
}

static int pages_seen;
static bool on_page(json_t *page, void *data)
{
	UNUSED(data);
	pages_seen++;
	json_t *items = json_object_get(page, "items");
	CHECK_INT(json_array_size(items), 2);
	CHECK_STR(json_string_value(json_object_get(json_array_get(items, 0), "kind")), "ConfigMap");
	return pages_seen < 1; /* stop after the first */
}

/* on_page_text: each page's text as the stub sent it, all pages */
static int text_pages;
static size_t text_bytes;
static bool on_page_text(const char *text, size_t len, void *data)
{
	UNUSED(data);
	text_pages++;
	text_bytes += len;
	json_error_t je;
	json_t *page = json_loadb(text, len, 0, &je);
	CHECK_INT(json_array_size(json_object_get(page, "items")), 2);
	/* not filled in: the caller reads the items itself */
	CHECK(json_object_get(json_array_get(json_object_get(page, "items"), 0), "kind") == NULL);
	json_decref(page);
	return true;
}

static void test_list_pages(void)
{
	struct env e;
	env_start(&e, NULL);
	struct result all = {0}, first = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns"};
	struct kube_list_opts lo = {.label_selector = "a=b", .limit = 2};
	kube_list(e.k, &ref, &lo, on_done, &all);
	run_until(&e.loop, &all.done, 1);
	CHECK_INT(all.error, 0);
	json_t *items = json_object_get(all.body, "items");
	CHECK_INT(json_array_size(items), 4);
	CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(items, 3), "metadata"), "name")), "c4");
	CHECK_STR(json_string_value(json_object_get(json_array_get(items, 0), "kind")), "ConfigMap");
	CHECK_STR(json_string_value(json_object_get(json_array_get(items, 0), "apiVersion")), "v1");
	CHECK_STR(json_string_value(json_object_get(json_array_get(items, 3), "kind")), "X"); /* kept */
	json_t *md = json_object_get(all.body, "metadata");
	CHECK_STR(json_string_value(json_object_get(md, "resourceVersion")), "11");
	CHECK(json_object_get(md, "continue") == NULL);
	CHECK(json_object_get(md, "remainingItemCount") == NULL);

	lo.on_page = on_page;
	int before = e.stub.requests;
	kube_list(e.k, &ref, &lo, on_done, &first);
	run_until(&e.loop, &first.done, 1);
	CHECK_INT(first.error, 0);
	CHECK_INT(pages_seen, 1);
	CHECK_INT(e.stub.requests - before, 1);

	struct result text = {0};
	lo.on_page = NULL;
	lo.on_page_text = on_page_text;
	kube_list(e.k, &ref, &lo, on_done, &text);
	run_until(&e.loop, &text.done, 1);
	CHECK_INT(text.error, 0);
	CHECK_INT(text_pages, 2);
	CHECK(text_bytes > 0);
	/* the body: the last page's metadata only */
	CHECK_STR(json_string_value(json_object_get(json_object_get(text.body, "metadata"),
						    "resourceVersion")), "11");
	CHECK(json_object_get(text.body, "items") == NULL);
	json_decref(text.body);
	json_decref(all.body);
	json_decref(first.body);
	env_stop(&e);
}

/* ---- a list by page text asks for its next page ahead ---- */

/* A keep-alive stub of a three-page ConfigMap list (continue tokens p2, p3),
 * whose second page may fail. */
enum page2 { P2_OK, P2_GONE, P2_ERROR, P2_NOT_JSON, P2_NO_METADATA, P2_RESET_ONCE };

struct pager {
	struct result r; /* first: the list's data is the pager, on_done's too */
	struct stub *stub;
	enum page2 page2;
	int resets;
	char log[512]; /* "req1;page1;req2;..." */
	/* the page callback */
	int pages;
	int ahead;            /* pages during whose callback the next request had arrived */
	bool expect_ahead;    /* ... and whether that is expected */
	int stop_at;          /* return false at that page */
	int cancel_at;        /* kube_cancel at that page */
	int close_at;         /* kube_close at that page */
	struct kube_call *call;
	struct kube *k;
	int done_in_close;    /* completions seen before kube_close returned */
};

static void pager_log(struct pager *p, const char *what)
{
	size_t n = strlen(p->log);
	snprintf(p->log + n, sizeof p->log - n, "%s;", what);
}

static void pager_handler(struct stub_conn *c, const struct stub_request *rq, void *data)
{
	struct pager *p = data;
	const char *t = rq->target;
	if (strcmp(t, "/api/v1") == 0) {
		stub_respond_keepalive(c, 200, "", CORE_V1);
		return;
	}
	const char *cont = strstr(t, "&continue=");
	if (!str_starts_with(t, "/api/v1/namespaces/ns/configmaps?limit=2")) {
		stub_respond(c, 500, "", "{\"kind\":\"Status\",\"message\":\"unexpected request\"}");
	} else if (!cont) {
		pager_log(p, "req1");
		stub_respond_keepalive(c, 200, "", "{\"metadata\":{\"resourceVersion\":\"1\",\"continue\":\"p2\"},"
			"\"items\":[{\"metadata\":{\"name\":\"a\"}},{\"metadata\":{\"name\":\"b\"}}]}");
	} else if (strcmp(cont, "&continue=p2") == 0) {
		pager_log(p, "req2");
		switch (p->page2) {
		case P2_OK:
			break;
		case P2_GONE:
			stub_respond_keepalive(c, 410, "", "{\"kind\":\"Status\",\"reason\":\"Expired\","
				"\"message\":\"The provided continue parameter is too old\",\"code\":410}");
			return;
		case P2_ERROR:
			stub_respond_keepalive(c, 500, "", "{\"kind\":\"Status\",\"message\":\"etcd down\"}");
			return;
		case P2_NOT_JSON:
			stub_respond_keepalive(c, 200, "", "<html>proxy</html>");
			return;
		case P2_NO_METADATA:
			stub_respond_keepalive(c, 200, "", "{\"items\":[],\"metadata\":");
			return;
		case P2_RESET_ONCE:
			if (p->resets++ == 0) {
				stub_close_conn(c); /* no answer: a safe call is repeated */
				return;
			}
			break;
		}
		stub_respond_keepalive(c, 200, "", "{\"metadata\":{\"resourceVersion\":\"2\",\"continue\":\"p3\"},"
			"\"items\":[{\"metadata\":{\"name\":\"c\"}},{\"metadata\":{\"name\":\"d\"}}]}");
	} else if (strcmp(cont, "&continue=p3") == 0) {
		pager_log(p, "req3");
		stub_respond_keepalive(c, 200, "", "{\"metadata\":{\"resourceVersion\":\"3\"},"
			"\"items\":[{\"metadata\":{\"name\":\"e\"}}]}");
	} else {
		stub_respond(c, 500, "", "{\"kind\":\"Status\",\"message\":\"unexpected token\"}");
	}
}

/* Whether the request for continue token tok is already in one of the
 * stub's sockets (peeked, not read), waiting at most wait_ms: the loop does
 * not run meanwhile, so only a request written before the page callback
 * can be there. */
static bool request_arrived(struct stub *s, const char *tok, int wait_ms)
{
	char want[64];
	snprintf(want, sizeof want, "continue=%s ", tok);
	uint64_t end = now_ms() + (uint64_t)wait_ms;
	do {
		for (struct stub_conn *c = s->conns; c; c = c->next) {
			uv_os_fd_t fd;
			if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
				continue;
			char buf[2048];
			ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_PEEK | MSG_DONTWAIT);
			if (n <= 0)
				continue;
			buf[n] = '\0';
			if (strstr(buf, want))
				return true;
		}
		uv_sleep(5);
	} while (now_ms() < end);
	return false;
}

static bool on_pager_page(const char *text, size_t len, void *data)
{
	struct pager *p = data;
	p->pages++;
	char what[16];
	snprintf(what, sizeof what, "page%d", p->pages);
	pager_log(p, what);
	CHECK(len > 0 && text[0] == '{');
	if (p->pages < 3 && p->page2 != P2_NOT_JSON) {
		char tok[16];
		snprintf(tok, sizeof tok, "p%d", p->pages + 1);
		/* expected: at once; not expected: given time to show up anyway */
		bool arrived = request_arrived(p->stub, tok, p->expect_ahead ? 2000 : 200);
		CHECK_INT(arrived, p->expect_ahead);
		p->ahead += arrived;
	}
	if (p->cancel_at == p->pages)
		kube_cancel(p->call);
	if (p->close_at == p->pages) {
		kube_close(p->k);
		p->done_in_close = p->r.done;
	}
	return p->stop_at != p->pages;
}

static void pager_list(struct env *e, struct pager *p)
{
	p->stub = &e->stub;
	p->k = e->k;
	e->stub.handler = pager_handler;
	e->stub.data = p;
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns"};
	struct kube_list_opts lo = {.limit = 2, .on_page_text = on_pager_page};
	p->call = kube_list(e->k, &ref, &lo, on_done, p);
	run_until(&e->loop, &p->r.done, 1);
}

/* The next page's request is on the wire before the page at hand is handed
 * over (the server prepares it meanwhile), the pages still come in order,
 * and without a token the request waits its turn. */
static void test_list_ahead(void)
{
	struct env e;
	env_start(&e, NULL);
	struct pager p = {.expect_ahead = true};
	pager_list(&e, &p);
	CHECK_INT(p.r.error, 0);
	CHECK_INT(p.pages, 3);
	CHECK_INT(p.ahead, 2);
	CHECK_STR(p.log, "req1;page1;req2;page2;req3;page3;");
	CHECK_STR(json_string_value(json_object_get(json_object_get(p.r.body, "metadata"),
						    "resourceVersion")), "3");
	CHECK_INT(e.stub.accepted, 1); /* one kept-alive connection */
	json_decref(p.r.body);
	env_stop(&e);

	/* the rate limiter's tokens are spent: the next page waits for one */
	struct kube_options o = {.qps = 20, .burst = 1};
	env_start(&e, &o);
	struct pager q = {.expect_ahead = false};
	pager_list(&e, &q);
	CHECK_INT(q.r.error, 0);
	CHECK_INT(q.pages, 3);
	CHECK_INT(q.ahead, 0);
	CHECK_STR(q.log, "req1;page1;req2;page2;req3;page3;");
	json_decref(q.r.body);
	env_stop(&e);
}

/* The page asked for ahead fails after the page before was handed over:
 * the call fails with that page's error, no page after it is handed over;
 * a connection that dies before answering is repeated (a list is safe). */
static void test_list_ahead_fails(void)
{
	static const struct {
		enum page2 mode;
		int error, status;
		const char *reason;
	} cases[] = {
		{P2_GONE, -EREMOTEIO, 410, "Expired"},
		{P2_ERROR, -EREMOTEIO, 500, ""},
		{P2_NOT_JSON, -EPROTO, 200, ""},
		{P2_NO_METADATA, -EPROTO, 200, ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct env e;
		env_start(&e, NULL);
		struct pager p = {.page2 = cases[i].mode, .expect_ahead = true};
		pager_list(&e, &p);
		CHECK_INT(p.r.error, cases[i].error);
		CHECK_INT(p.r.status, cases[i].status);
		CHECK_STR(p.r.reason, cases[i].reason);
		CHECK_INT(p.pages, 1);
		CHECK_STR(p.log, "req1;page1;req2;");
		json_decref(p.r.body);
		env_stop(&e);
	}
	struct env e;
	env_start(&e, NULL);
	struct pager p = {.page2 = P2_RESET_ONCE, .expect_ahead = true};
	pager_list(&e, &p);
	CHECK_INT(p.r.error, 0);
	CHECK_INT(p.pages, 3);
	CHECK_STR(p.log, "req1;page1;req2;req2;page2;req3;page3;");
	json_decref(p.r.body);
	env_stop(&e);
}

/* Stopped, cancelled or closed from a page callback while the next page is
 * in flight: one completion, no page callback after, nothing leaked (ASan,
 * uv_loop_close). */
static void test_list_ahead_stop_cancel_close(void)
{
	/* the caller stops: success, the last page handed over is the body */
	struct env e;
	env_start(&e, NULL);
	struct pager p = {.expect_ahead = true, .stop_at = 1};
	pager_list(&e, &p);
	CHECK_INT(p.r.error, 0);
	CHECK_INT(p.r.done, 1);
	CHECK_INT(p.pages, 1);
	CHECK_STR(json_string_value(json_object_get(json_object_get(p.r.body, "metadata"),
						    "continue")), "p2");
	uv_run(&e.loop, UV_RUN_NOWAIT);
	CHECK_INT(p.r.done, 1);
	json_decref(p.r.body);
	env_stop(&e);

	/* stopped at page 1 while the next page waits for a token */
	struct kube_options o = {.qps = 20, .burst = 1};
	env_start(&e, &o);
	struct pager q = {.expect_ahead = false, .stop_at = 1};
	pager_list(&e, &q);
	CHECK_INT(q.r.error, 0);
	CHECK_INT(q.pages, 1);
	json_decref(q.r.body);
	env_stop(&e);

	/* kube_cancel from the callback, the next page in flight */
	for (int at = 1; at <= 3; at++) {
		env_start(&e, NULL);
		struct pager c = {.expect_ahead = true, .cancel_at = at};
		pager_list(&e, &c);
		CHECK_INT(c.r.done, 1);
		CHECK_INT(c.r.error, -ECANCELED);
		CHECK_INT(c.pages, at);
		json_decref(c.r.body);
		env_stop(&e);
	}

	/* kube_close from the callback: the call completes inside kube_close,
	 * is freed once the callback has returned */
	for (int at = 1; at <= 3; at++) {
		env_start(&e, NULL);
		struct pager c = {.expect_ahead = true, .close_at = at};
		pager_list(&e, &c);
		CHECK_INT(c.r.done, 1);
		CHECK_INT(c.done_in_close, 1);
		CHECK_INT(c.r.error, -ECANCELED);
		CHECK_INT(c.pages, at);
		json_decref(c.r.body);
		e.k = NULL; /* closed */
		env_stop(&e);
	}
}

static void test_writes(void)
{
	struct env e;
	env_start(&e, NULL);
	struct result r = {0};
	json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "v1", "kind",
				"ConfigMap", "metadata", "name", "cm", "namespace", "ns", "data",
				"k", "v");
	struct kube_write_opts wo = {.field_manager = "runboat-kubefiles", .force = true,
				     .dry_run = true};
	kube_apply(e.k, obj, &wo, on_done, &r);
	run_until(&e.loop, &r.done, 1);
	CHECK_INT(r.error, 0);
	CHECK_STR(e.stub.last.method, "PATCH");
	CHECK_STR(e.stub.last.target, "/api/v1/namespaces/ns/configmaps/cm?fieldManager=runboat-kubefiles&force=true&dryRun=All");
	CHECK_STR(e.stub.last.content_type, "application/apply-patch+yaml");
	json_t *sent = json_loads(e.stub.last_body, 0, NULL);
	CHECK(json_equal(sent, obj));
	json_decref(sent);

	kube_create(e.k, obj, NULL, on_done, &r);
	run_until(&e.loop, &r.done, 2);
	CHECK_STR(e.stub.last.method, "POST");
	CHECK_STR(e.stub.last.target, "/api/v1/namespaces/ns/configmaps");
	CHECK_STR(e.stub.last.content_type, "application/json");

	json_t *patch = json_pack("[{s:s, s:s, s:s}]", "op", "replace", "path", "/data/k", "value", "w");
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns", .name = "cm"};
	kube_patch(e.k, &ref, KUBE_PATCH_JSON, patch, NULL, on_done, &r);
	run_until(&e.loop, &r.done, 3);
	CHECK_STR(e.stub.last.content_type, "application/json-patch+json");
	CHECK_STR(e.stub.last_body, "[{\"op\":\"replace\",\"path\":\"/data/k\",\"value\":\"w\"}]");
	json_decref(patch);

	struct kube_delete_opts dopt = KUBE_DELETE_OPTS_INIT;
	dopt.propagation = "Foreground";
	dopt.uid = "u-1";
	dopt.resource_version = "42";
	kube_delete(e.k, &ref, &dopt, on_done, &r);
	run_until(&e.loop, &r.done, 4);
	CHECK_STR(e.stub.last.method, "DELETE");
	CHECK_STR(e.stub.last.target, "/api/v1/namespaces/ns/configmaps/cm");
	json_t *d = json_loads(e.stub.last_body, 0, NULL);
	json_t *want = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "apiVersion", "v1", "kind",
				 "DeleteOptions", "propagationPolicy", "Foreground",
				 "preconditions", "uid", "u-1", "resourceVersion", "42");
	CHECK(json_equal(d, want));
	json_decref(d);
	json_decref(want);

	ref.name = NULL;
	struct kube_list_opts sel = {.label_selector = "runboat/build=b1"};
	kube_delete_collection(e.k, &ref, &sel, NULL, on_done, &r);
	run_until(&e.loop, &r.done, 5);
	CHECK_STR(e.stub.last.target, "/api/v1/namespaces/ns/configmaps?labelSelector=runboat%2Fbuild%3Db1");

	/* an object without a kind fails without a request */
	int before = e.stub.requests;
	json_object_del(obj, "kind");
	kube_apply(e.k, obj, NULL, on_done, &r);
	run_until(&e.loop, &r.done, 6);
	CHECK_INT(r.error, -EINVAL);
	CHECK_INT(e.stub.requests, before);
	json_decref(obj);
	json_decref(r.body);
	env_stop(&e);
}

static void test_watch(void)
{
	struct env e;
	env_start(&e, NULL);
	struct result w = {0}, bad = {0}, cancelled = {0};
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns"};
	struct kube_watch_opts wo = {.resource_version = "10", .label_selector = "x"};
	kube_watch(e.k, &ref, &wo, on_event, on_done, &w);
	run_until(&e.loop, &w.done, 1);
	CHECK_INT(w.error, 0);
	CHECK_INT(w.events, 3);
	CHECK_STR(w.types, "ADDED:w1,MODIFIED:w1,DELETED:w1");
	CHECK_STR(e.script.seen[e.script.nseen - 1],
		  "GET /api/v1/namespaces/ns/configmaps?watch=1&labelSelector=x&resourceVersion=10&allowWatchBookmarks=true");

	ref.name = "bad";
	kube_watch(e.k, &ref, NULL, on_event, on_done, &bad);
	run_until(&e.loop, &bad.done, 1);
	CHECK_INT(bad.error, -EPROTO);
	CHECK_INT(bad.events, 2);
	CHECK(strstr(bad.message, "malformed event") != NULL);

	/* cancelled from its own event callback: no further event */
	ref.name = NULL;
	wo.timeout_seconds = 60;
	cancelled.cancel_on_event = kube_watch(e.k, &ref, &wo, on_event, on_done, &cancelled);
	run_until(&e.loop, &cancelled.done, 1);
	CHECK_INT(cancelled.error, -ECANCELED);
	CHECK_INT(cancelled.events, 1);
	env_stop(&e);
}

static void test_cancel_timeout_close(void)
{
	struct kube_options o = {.qps = -1, .timeout_ms = 300};
	struct env e;
	env_start(&e, &o);
	struct result early = {0}, hang = {0}, slow = {0}, p1 = {0}, p2 = {0}, p3 = {0};
	struct kube_call *c = kube_request(e.k, "GET", "/hang/1", NULL, NULL, 0, on_done, &early);
	kube_cancel(c);
	CHECK_INT(early.done, 0);
	run_until(&e.loop, &early.done, 1);
	CHECK_INT(early.error, -ECANCELED);
	CHECK_INT(e.stub.requests, 0);

	c = kube_request(e.k, "GET", "/hang/2", NULL, NULL, 0, on_done, &hang);
	run_until(&e.loop, &e.stub.requests, 1);
	kube_cancel(c);
	run_until(&e.loop, &hang.done, 1);
	CHECK_INT(hang.error, -ECANCELED);

	kube_request(e.k, "GET", "/hang/3", NULL, NULL, 0, on_done, &slow);
	run_until(&e.loop, &slow.done, 1);
	CHECK_INT(slow.error, -ETIMEDOUT);
	CHECK(strstr(slow.message, "GET /hang/3: ") == slow.message);

	CHECK(kube_request(e.k, "get", "/x", NULL, NULL, 0, on_done, &p3) != NULL);
	run_until(&e.loop, &p3.done, 1);
	CHECK_INT(p3.error, -EINVAL);

	/* close with calls in every state: all complete, before close returns */
	struct kube_ref ref = {.api_version = "batch/v1", .kind = "Job", .namespace = "ns", .name = "j"};
	kube_get(e.k, &ref, on_done, &p1); /* waits on discovery (hangs: 500) */
	kube_request(e.k, "GET", "/hang/4", NULL, NULL, 0, on_done, &p2);
	run_until(&e.loop, &e.stub.requests, 4);
	kube_close(e.k);
	CHECK_INT(p1.done + p2.done, 2);
	CHECK_INT(p1.error, -ECANCELED);
	CHECK_INT(p2.error, -ECANCELED);
	struct result late = {0};
	CHECK(kube_request(e.k, "GET", "/x", NULL, NULL, 0, on_done, &late) == NULL);
	stub_stop(&e.stub);
	uv_run(&e.loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&e.loop), 0);
}

/* ---- 401: the exec plugin runs again ---- */

static void auth_handler(struct stub_conn *c, const struct stub_request *rq, void *data)
{
	UNUSED(data);
	if (strcmp(rq->auth, "Bearer good-2") == 0)
		stub_respond(c, 200, "", "{\"ok\":true}");
	else
		stub_respond(c, 401, "", "{\"kind\":\"Status\",\"reason\":\"Unauthorized\",\"message\":\"Unauthorized\"}");
}

static void test_exec_refresh_on_401(void)
{
	char dir[] = "/tmp/runboat-kube-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *script = xasprintf("%s/plugin.sh", dir);
	char *counter = xasprintf("%s/count", dir);
	FILE *f = fopen(script, "w");
	fprintf(f, "#!/bin/sh\n"
		   "n=$(cat \"$COUNTER\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$COUNTER\"\n"
		   "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
		   "\"ExecCredential\",\"status\":{\"token\":\"good-%%s\"}}' $n\n");
	fclose(f);
	chmod(script, 0755);

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct stub stub;
	CHECK_INT(stub_start(&loop, &stub, auth_handler, NULL), 0);
	struct kubeconfig *kc = xcalloc(1, sizeof(*kc));
	kc->server = xasprintf("http://127.0.0.1:%d", stub.port);
	kc->exec = xcalloc(1, sizeof(*kc->exec));
	kc->exec->api_version = xstrdup("client.authentication.k8s.io/v1");
	kc->exec->command = xstrdup(script);
	kc->exec->args = xcalloc(1, sizeof(char *));
	kc->exec->env = xcalloc(2, sizeof(char *));
	kc->exec->env[0] = xasprintf("COUNTER=%s", counter);
	struct kube_options o = {.qps = -1};
	struct kube *k = kube_new(&loop, kc, &o);
	struct result r = {0}, r2 = {0};
	kube_request(k, "GET", "/whoami", NULL, NULL, 0, on_done, &r);
	run_until(&loop, &r.done, 1);
	CHECK_INT(r.error, 0);
	CHECK_INT(r.status, 200);
	CHECK_INT(stub.requests, 2); /* good-1 refused, good-2 accepted */
	CHECK_STR(stub.last.auth, "Bearer good-2");
	/* cached: no third run */
	kube_request(k, "GET", "/whoami", NULL, NULL, 0, on_done, &r2);
	run_until(&loop, &r2.done, 1);
	CHECK_INT(r2.status, 200);
	char *n = NULL;
	size_t len;
	CHECK_INT(kubeconfig_read_file(counter, 100, &n, &len), 0);
	CHECK_STR(n, "2\n");
	free(n);
	json_decref(r.body);
	json_decref(r2.body);
	kube_close(k);
	stub_stop(&stub);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	unlink(script);
	unlink(counter);
	rmdir(dir);
	free(script);
	free(counter);
}

/* ---- transient / permanent ---- */

static void test_transient_table(void)
{
	struct {
		int error, status;
		const char *reason;
		bool transient;
	} t[] = {
		{0, 200, "", false},
		{0, 201, "", false},
		{-ECANCELED, 0, "", false},
		{-EINVAL, 0, "", false},
		{-ENOENT, 0, "NotFound", false},
		{-EMSGSIZE, 0, "", false},
		{-ETIMEDOUT, 0, "", true},
		{-ECONNREFUSED, 0, "", true},
		{-EHOSTUNREACH, 0, "", true},
		{-EIO, 0, "", true},
		{-EPROTO, 0, "", true},
		{-EACCES, 0, "", true},
		{-EREMOTEIO, 500, "InternalError", true},
		{-EREMOTEIO, 502, "", true},
		{-EREMOTEIO, 503, "ServiceUnavailable", true},
		{-EREMOTEIO, 504, "Timeout", true},
		{-EREMOTEIO, 429, "TooManyRequests", true},
		{-EREMOTEIO, 408, "Timeout", true},
		{-EREMOTEIO, 409, "Conflict", true},
		{-EREMOTEIO, 409, "AlreadyExists", false},
		{-EREMOTEIO, 400, "BadRequest", false},
		{-EREMOTEIO, 401, "Unauthorized", false},
		{-EREMOTEIO, 403, "Forbidden", false},
		{-EREMOTEIO, 404, "NotFound", false},
		{-EREMOTEIO, 410, "Gone", false},
		{-EREMOTEIO, 422, "Invalid", false},
		{-EPROTO, 200, "", false}, /* an answer, not JSON */
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct kube_result r = {.error = t[i].error, .status = t[i].status,
					.reason = t[i].reason};
		bool got = kube_result_transient(&r);
		CHECK_INT(got, t[i].transient);
		if (got != t[i].transient)
			fprintf(stderr, "  error %d status %d reason %s\n", t[i].error,
				t[i].status, t[i].reason);
	}
}

/* ---- connection faults: kube -> fault proxy -> keep-alive stub ---- */

struct kscript {
	int gets, creates, patches, deletes, applies;
	int watch_conns;
};

static const char *CM = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm\"}}";

static void ka_handler(struct stub_conn *c, const struct stub_request *rq, void *data)
{
	struct kscript *s = data;
	const char *t = rq->target;
	if (strcmp(t, "/api/v1") == 0) {
		stub_respond_keepalive(c, 200, "", CORE_V1);
	} else if (str_starts_with(t, "/api/v1/namespaces/ns/configmaps?watch=1")) {
		s->watch_conns++;
		stub_stream_start(c, 200);
		stub_send(c, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"w1\"}}}\n");
	} else if (strcmp(t, "/api/v1/namespaces/ns/configmaps/busy") == 0) {
		stub_respond_keepalive(c, 429, "Retry-After: 5\r\n",
				       "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\"}");
	} else if (strcmp(rq->method, "GET") == 0) {
		s->gets++;
		stub_respond_keepalive(c, 200, "", CM);
	} else if (strcmp(rq->method, "POST") == 0) {
		s->creates++;
		stub_respond_keepalive(c, 201, "", CM);
	} else if (strcmp(rq->method, "PATCH") == 0) {
		if (strcmp(rq->content_type, "application/apply-patch+yaml") == 0)
			s->applies++;
		else
			s->patches++;
		stub_respond_keepalive(c, 200, "", CM);
	} else if (strcmp(rq->method, "DELETE") == 0) {
		s->deletes++;
		stub_respond_keepalive(c, 200, "", "{\"kind\":\"Status\",\"status\":\"Success\"}");
	} else {
		stub_respond_keepalive(c, 500, "", "{\"kind\":\"Status\",\"message\":\"unexpected\"}");
	}
}

struct fenv {
	uv_loop_t loop;
	struct stub stub;
	struct fproxy proxy;
	struct kscript script;
	struct kube *k;
};

static void fenv_start_opts(struct fenv *e, const struct kube_options *o)
{
	memset(e, 0, sizeof(*e));
	uv_loop_init(&e->loop);
	CHECK_INT(stub_start(&e->loop, &e->stub, ka_handler, &e->script), 0);
	CHECK_INT(fproxy_start(&e->loop, &e->proxy, e->stub.port), 0);
	e->k = kube_new(&e->loop, stub_config(e->proxy.port), o);
}

static void fenv_start(struct fenv *e, long timeout_ms, long first_byte_ms)
{
	struct kube_options o = {.qps = -1, .timeout_ms = timeout_ms,
				 .first_byte_timeout_ms = first_byte_ms};
	fenv_start_opts(e, &o);
}

static void pause_loop(uv_loop_t *loop, uint64_t ms);

/* Closes every open connection (FIN, as a server's idle close) and lets the
 * client see it. */
static void close_all(struct fenv *e)
{
	for (int id = 1; id <= e->proxy.accepted; id++)
		fproxy_close_id(&e->proxy, id, false);
	pause_loop(&e->loop, 50);
}

static void on_pause(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

static void pause_loop(uv_loop_t *loop, uint64_t ms)
{
	int fired = 0;
	uv_timer_t t;
	uv_timer_init(loop, &t);
	t.data = &fired;
	uv_timer_start(&t, on_pause, ms, 0);
	run_until(loop, &fired, 1);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void fenv_stop(struct fenv *e)
{
	kube_close(e->k);
	fproxy_stop(&e->proxy);
	stub_stop(&e->stub);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&e->loop), 0);
}

enum kop { K_GET, K_CREATE, K_APPLY, K_MERGE, K_MERGE_IDEMPOTENT, K_JSON, K_JSON_TEST,
	   K_DELETE, K_DELETE_PRECOND, K_RAW_GET, K_RAW_POST };
static const char *const KOP_NAMES[] = {"get", "create", "apply", "merge patch",
					"idempotent merge patch", "json patch",
					"json patch with test", "delete",
					"delete with preconditions", "raw GET", "raw POST"};

/* Runs one call of kind op to completion. */
static void kcall(struct fenv *e, enum kop op, struct result *r)
{
	json_decref(r->body);
	memset(r, 0, sizeof(*r));
	r->t0 = now_ms();
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns",
			       .name = "cm"};
	json_t *obj = json_loads(CM, 0, NULL);
	json_object_set_new(json_object_get(obj, "metadata"), "namespace", json_string("ns"));
	json_t *merge = json_pack("{s:{s:s}}", "data", "k", "v");
	json_t *jp = json_pack("[{s:s, s:s, s:s}]", "op", "replace", "path", "/data/k", "value", "v");
	json_t *jpt = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "op", "test", "path",
				"/metadata/resourceVersion", "value", "7", "op", "replace", "path",
				"/data/k", "value", "v");
	struct kube_write_opts idem = {.idempotent = true};
	struct kube_delete_opts pre = KUBE_DELETE_OPTS_INIT;
	pre.uid = "u-1";
	struct kube_call *c = NULL;
	switch (op) {
	case K_GET: c = kube_get(e->k, &ref, on_done, r); break;
	case K_CREATE: c = kube_create(e->k, obj, NULL, on_done, r); break;
	case K_APPLY: c = kube_apply(e->k, obj, NULL, on_done, r); break;
	case K_MERGE: c = kube_patch(e->k, &ref, KUBE_PATCH_MERGE, merge, NULL, on_done, r); break;
	case K_MERGE_IDEMPOTENT:
		c = kube_patch(e->k, &ref, KUBE_PATCH_MERGE, merge, &idem, on_done, r);
		break;
	case K_JSON: c = kube_patch(e->k, &ref, KUBE_PATCH_JSON, jp, NULL, on_done, r); break;
	case K_JSON_TEST: c = kube_patch(e->k, &ref, KUBE_PATCH_JSON, jpt, NULL, on_done, r); break;
	case K_DELETE: c = kube_delete(e->k, &ref, NULL, on_done, r); break;
	case K_DELETE_PRECOND: c = kube_delete(e->k, &ref, &pre, on_done, r); break;
	case K_RAW_GET:
		c = kube_request(e->k, "GET", "/api/v1/namespaces/ns/configmaps/cm", NULL, NULL, 0,
				 on_done, r);
		break;
	case K_RAW_POST:
		c = kube_request(e->k, "POST", "/api/v1/namespaces/ns/configmaps",
				 "application/json", "{}", 2, on_done, r);
		break;
	}
	CHECK(c != NULL);
	json_decref(obj);
	json_decref(merge);
	json_decref(jp);
	json_decref(jpt);
	run_until(&e->loop, &r->done, 1);
}

static int served(const struct kscript *s)
{
	return s->gets + s->creates + s->patches + s->deletes + s->applies;
}

/* After a silent drop of the connection idle for a second, every kind of
 * call: those safe to repeat are tried on it, cut at the first-byte
 * deadline and sent again on a new connection; the others do not trust a
 * connection idle that long: they open a new one at once. Then with a
 * blackhole for new connections: those are sent once, fail at the
 * first-byte deadline and are reported as maybe applied. */
static void test_silent_drop_retries(void)
{
	for (int op = K_GET; op <= K_RAW_POST; op++) {
		struct fenv e;
		fenv_start(&e, 5000, 300);
		struct result r = {0};
		kcall(&e, K_GET, &r); /* discovery, and a kept-alive connection */
		CHECK_INT(r.error, 0);
		int accepted = e.proxy.accepted;
		int before = served(&e.script);
		pause_loop(&e.loop, 1100);
		CHECK_INT(fproxy_silence_all(&e.proxy), 1);

		int swallowed = e.proxy.swallowed;
		kcall(&e, (enum kop)op, &r);
		bool safe = op != K_CREATE && op != K_MERGE && op != K_JSON && op != K_RAW_POST;
		CHECK_INT(r.error, 0);
		CHECK_INT(r.maybe_applied, 0);
		CHECK_INT(served(&e.script) - before, 1);
		CHECK_INT(e.proxy.accepted - accepted, 1); /* one new connection */
		if (safe) {
			CHECK(r.took_ms >= 300 && r.took_ms < 2000);
			CHECK_INT(e.proxy.swallowed - swallowed, 1);
		} else {
			CHECK(r.took_ms < 300);
			CHECK_INT(e.proxy.swallowed - swallowed, 0); /* not tried there */
		}
		if (r.error)
			fprintf(stderr, "  %s: %d %s (%llu ms)\n", KOP_NAMES[op], r.error, r.message,
				(unsigned long long)r.took_ms);

		/* new connections are accepted, then silent; the open ones are
		 * closed (FIN): every attempt needs a new one */
		e.proxy.blackhole = true;
		close_all(&e);
		accepted = e.proxy.accepted;
		before = served(&e.script);
		kcall(&e, (enum kop)op, &r);
		CHECK_INT(r.error, -ETIMEDOUT);
		CHECK_INT(r.status, 0);
		CHECK_INT(r.maybe_applied, 1);
		CHECK_INT(r.transient, 1);
		CHECK_INT(served(&e.script) - before, 0);
		CHECK(strstr(r.message, "first-byte timeout") != NULL);
		if (safe) {
			CHECK_INT(e.proxy.accepted - accepted, 4);
			CHECK(strstr(r.message, "(after 4 attempts)") != NULL);
		} else {
			CHECK_INT(e.proxy.accepted - accepted, 1); /* sent once */
			CHECK(strstr(r.message, "attempts") == NULL);
		}
		json_decref(r.body);
		fenv_stop(&e);
	}
}

/* A connection used just now and dropped at once is trusted even by a call
 * that cannot be repeated: sent once, it fails at the first-byte deadline,
 * reported as maybe applied (and it was not). */
static void test_silent_drop_unrepeatable(void)
{
	struct fenv e;
	fenv_start(&e, 5000, 300);
	struct result r = {0};
	kcall(&e, K_GET, &r);
	CHECK_INT(fproxy_silence_all(&e.proxy), 1);
	int accepted = e.proxy.accepted;
	kcall(&e, K_CREATE, &r);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK_INT(r.maybe_applied, 1);
	CHECK_INT(r.transient, 1);
	CHECK_INT(e.script.creates, 0);
	CHECK_INT(e.proxy.accepted - accepted, 0);
	CHECK(strstr(r.message, "attempts") == NULL);
	json_decref(r.body);
	fenv_stop(&e);
}

/* Reset before any answer byte: the same split; reset after the status line
 * arrived: an answer started, nothing is repeated. */
static void test_reset_retries(void)
{
	struct fenv e;
	fenv_start(&e, 5000, 1000);
	struct result r = {0};
	kcall(&e, K_GET, &r);
	CHECK_INT(fproxy_silence_all(&e.proxy), 1); /* the next call needs a new connection */
	e.proxy.reset_conns = 1;
	e.proxy.reset_after = 0;
	int accepted = e.proxy.accepted;
	kcall(&e, K_APPLY, &r);
	/* the silent connection (first-byte deadline), a new one reset as the
	 * answer came (the server did apply: an apply may be repeated), then a
	 * good one */
	CHECK_INT(r.error, 0);
	CHECK_INT(r.maybe_applied, 0);
	CHECK_INT(e.proxy.accepted - accepted, 2);
	CHECK_INT(e.script.applies, 2);
	CHECK_INT(e.proxy.resets, 1);

	close_all(&e);
	e.proxy.reset_conns = 1;
	e.proxy.reset_after = 0;
	accepted = e.proxy.accepted;
	kcall(&e, K_CREATE, &r); /* a new connection, reset as the answer came */
	CHECK_INT(r.error, -EIO);
	CHECK_INT(r.maybe_applied, 1); /* and it was applied: */
	CHECK_INT(e.script.creates, 1);
	CHECK_INT(r.transient, 1);
	CHECK_INT(e.proxy.accepted - accepted, 1);
	CHECK_INT(e.proxy.resets, 2);

	/* reset in the middle of the answer: not repeated, even a GET */
	kcall(&e, K_GET, &r);
	CHECK_INT(r.error, 0);
	fproxy_silence_all(&e.proxy);
	e.proxy.reset_conns = 2;
	e.proxy.reset_after = 20;
	int gets = e.script.gets;
	kcall(&e, K_GET, &r);
	/* silent (repeated), then the status line and a reset: the end */
	CHECK_INT(r.error, -EIO);
	CHECK_INT(e.script.gets - gets, 1);
	CHECK_INT(e.proxy.resets, 3);
	json_decref(r.body);
	fenv_stop(&e);
}

/* The first-byte deadline, the bound on attempts, the overall deadline. */
static void test_first_byte_and_deadline(void)
{
	struct fenv e;
	fenv_start(&e, 5000, 300);
	struct result r = {0};
	kcall(&e, K_GET, &r);
	fproxy_silence_all(&e.proxy);
	/* a slow answer on the next connection: cut at 300 ms, then repeated */
	e.proxy.delay_conns = 1;
	e.proxy.delay_first_ms = 1500;
	int accepted = e.proxy.accepted;
	kcall(&e, K_GET, &r);
	CHECK_INT(r.error, 0);
	CHECK_INT(e.proxy.accepted - accepted, 2);
	CHECK(r.took_ms >= 600 && r.took_ms < 1400);
	if (r.took_ms < 600 || r.took_ms >= 1400)
		fprintf(stderr, "  took %llu ms\n", (unsigned long long)r.took_ms);

	/* a blackhole: 1 + 3 attempts (the silent connection, then 3 new
	 * ones), then the error says so */
	e.proxy.blackhole = true;
	fproxy_silence_all(&e.proxy);
	accepted = e.proxy.accepted;
	kcall(&e, K_GET, &r);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK_INT(e.proxy.accepted - accepted, 3);
	CHECK(strstr(r.message, "(after 4 attempts)") != NULL);
	CHECK_INT(r.maybe_applied, 1);
	CHECK(r.took_ms >= 1200 && r.took_ms < 3000);
	fprintf(stderr, "  blackhole: %s (%llu ms)\n", r.message, (unsigned long long)r.took_ms);
	json_decref(r.body);
	fenv_stop(&e);

	/* the overall timeout bounds attempts and pauses */
	fenv_start(&e, 1000, 300);
	kcall(&e, K_GET, &r);
	e.proxy.blackhole = true;
	fproxy_silence_all(&e.proxy);
	kcall(&e, K_GET, &r);
	CHECK_INT(r.error, -ETIMEDOUT);
	CHECK(r.took_ms < 1200);
	fprintf(stderr, "  deadline: %s (%llu ms)\n", r.message, (unsigned long long)r.took_ms);
	/* a Retry-After beyond the deadline: the 429 at once */
	e.proxy.blackhole = false;
	struct kube_ref busy = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns",
				.name = "busy"};
	r.done = 0;
	r.t0 = now_ms();
	kube_get(e.k, &busy, on_done, &r);
	run_until(&e.loop, &r.done, 1);
	CHECK_INT(r.status, 429);
	CHECK_INT(r.transient, 1);
	CHECK_INT(r.maybe_applied, 0);
	CHECK(r.took_ms < 900);
	json_decref(r.body);
	fenv_stop(&e);
}

/* A kept-alive connection idle for a second or more gets the short
 * first-byte bound: a silent drop there costs 300 ms, not the full 1500. */
static void test_stale_first_byte(void)
{
	struct kube_options o = {.qps = -1, .timeout_ms = 5000, .first_byte_timeout_ms = 1500,
				 .stale_first_byte_timeout_ms = 300};
	struct fenv e;
	fenv_start_opts(&e, &o);
	struct result r = {0};
	kcall(&e, K_GET, &r);
	pause_loop(&e.loop, 1200);
	fproxy_silence_all(&e.proxy);
	kcall(&e, K_APPLY, &r);
	CHECK_INT(r.error, 0);
	CHECK(r.took_ms >= 300 && r.took_ms < 1200);
	fprintf(stderr, "  stale: apply in %llu ms\n", (unsigned long long)r.took_ms);

	/* a connection used 0.2 s ago is not stale: the plain bound */
	kcall(&e, K_GET, &r);
	pause_loop(&e.loop, 200);
	fproxy_silence_all(&e.proxy);
	kcall(&e, K_GET, &r);
	CHECK_INT(r.error, 0);
	CHECK(r.took_ms >= 1500 && r.took_ms < 3000);
	fprintf(stderr, "  not stale: get in %llu ms\n", (unsigned long long)r.took_ms);
	json_decref(r.body);
	fenv_stop(&e);
}

/* A watch is exempt from the first-byte deadline; a refused connection is
 * "not sent" (not maybe applied), and is repeated for a safe call. */
static void test_watch_exempt_and_refused(void)
{
	struct fenv e;
	fenv_start(&e, 5000, 300);
	struct result r = {0}, w = {0};
	kcall(&e, K_GET, &r);
	e.proxy.delay_conns = 1;
	e.proxy.delay_first_ms = 800;
	struct kube_ref ref = {.api_version = "v1", .kind = "ConfigMap", .namespace = "ns"};
	struct kube_call *wc = kube_watch(e.k, &ref, NULL, on_event, on_done, &w);
	run_until(&e.loop, &w.events, 1);
	CHECK_INT(w.events, 1);
	CHECK_INT(w.done, 0);
	kube_cancel(wc);
	run_until(&e.loop, &w.done, 1);
	CHECK_INT(w.error, -ECANCELED);
	CHECK_INT(e.script.watch_conns, 1);
	json_decref(r.body);
	fenv_stop(&e);

	/* nothing listens */
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct stub st;
	CHECK_INT(stub_start(&loop, &st, ka_handler, NULL), 0);
	int port = st.port;
	stub_stop(&st);
	uv_run(&loop, UV_RUN_DEFAULT);
	struct kube_options o = {.qps = -1, .timeout_ms = 5000};
	struct kube *k = kube_new(&loop, stub_config(port), &o);
	memset(&r, 0, sizeof(r));
	kube_request(k, "GET", "/x", NULL, NULL, 0, on_done, &r);
	run_until(&loop, &r.done, 1);
	CHECK_INT(r.error, -ECONNREFUSED);
	CHECK_INT(r.maybe_applied, 0);
	CHECK_INT(r.transient, 1);
	CHECK(strstr(r.message, "(after 4 attempts)") != NULL);
	struct result p = {0};
	kube_request(k, "POST", "/x", NULL, "{}", 2, on_done, &p);
	run_until(&loop, &p.done, 1);
	CHECK_INT(p.error, -ECONNREFUSED);
	CHECK_INT(p.maybe_applied, 0);
	CHECK(strstr(p.message, "attempts") == NULL); /* not repeated */
	kube_close(k);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
	RUN(test_bucket);
	RUN(test_retry_after);
	RUN(test_status_message);
	RUN(test_lines);
	RUN(test_paths);
	RUN(test_get_and_discovery);
	RUN(test_retries);
	RUN(test_list_pages);
	RUN(test_list_ahead);
	RUN(test_list_ahead_fails);
	RUN(test_list_ahead_stop_cancel_close);
	RUN(test_writes);
	RUN(test_watch);
	RUN(test_cancel_timeout_close);
	RUN(test_exec_refresh_on_401);
	RUN(test_transient_table);
	RUN(test_silent_drop_retries);
	RUN(test_silent_drop_unrepeatable);
	RUN(test_reset_retries);
	RUN(test_first_byte_and_deadline);
	RUN(test_watch_exempt_and_refused);
	RUN(test_stale_first_byte);
	return UNIT_DONE();
}
