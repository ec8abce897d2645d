/* pod_log against a fake Kubernetes client (kube_fake.h): which pods it
 * lists, which one it picks (the newest) and which container, the bounds it
 * asks for, how each answer becomes the callback's error, and cancels at
 * each step (no callback, nothing leaked, the loop closes). */
#include "pod_log.h"

#include "build.h"
#include "kube_fake.h"
#include "unit.h"

static uv_loop_t loop;
static struct kube k;

static struct got {
	int calls;
	int error;
	char message[256];
	char text[256];
	size_t len;
} got;

static void on_log(int error, const char *message, const char *text, size_t len, void *data)
{
	CHECK(data == &got);
	got.calls++;
	got.error = error;
	snprintf(got.message, sizeof got.message, "%s", message ? message : "");
	snprintf(got.text, sizeof got.text, "%.*s", (int)len, text ? text : "");
	got.len = len;
}

static void setup(void)
{
	memset(&got, 0, sizeof got);
	uv_loop_init(&loop);
	fake_kube_init(&k, &loop);
}

static void teardown(void)
{
	CHECK_INT(fake_kube_pending(&k), 0);
	fake_kube_close(&k);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
}

static const char PODS[] =
	"{\"items\":["
	"{\"metadata\":{\"name\":\"b1-old\",\"creationTimestamp\":\"2026-01-01T10:00:00Z\"},"
	" \"spec\":{\"containers\":[{\"name\":\"old\"}]}},"
	"{\"metadata\":{\"name\":\"b1-new\",\"creationTimestamp\":\"2026-01-02T10:00:00Z\"},"
	" \"spec\":{\"containers\":[{\"name\":\"odoo\"},{\"name\":\"sidecar\"}]}},"
	"{\"metadata\":{\"name\":\"b1-mid\",\"creationTimestamp\":\"2026-01-01T12:00:00Z\"},"
	" \"spec\":{\"containers\":[{\"name\":\"mid\"}]}},"
	"{\"metadata\":{\"name\":\"b1-nots\"},\"spec\":{\"containers\":[{\"name\":\"x\"}]}}]}";

static void test_odoo_pod_newest_first_container(void)
{
	setup();
	struct pod_log *l = pod_log_get(&k, "ns1", "b1", NULL, on_log, &got);
	CHECK(l != NULL);
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "list");
	CHECK_STR(c->api_version, "v1");
	CHECK_STR(c->kind, "Pod");
	CHECK_STR(c->ns, "ns1");
	CHECK_STR(c->selector, BUILD_LABEL "=b1,!" BUILD_LABEL_JOB_KIND);
	fake_kube_answer(c, 200, PODS);
	CHECK_INT(got.calls, 0);
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "log");
	CHECK_STR(c->ns, "ns1");
	CHECK_STR(c->name, "b1-new");
	CHECK_STR(c->log.container, "odoo");
	CHECK_INT(c->log.tail_lines, 0);
	CHECK_INT(c->log.limit_bytes, 4 * 1024 * 1024);
	CHECK(!c->log.follow);
	fake_kube_answer_raw(c, "line 1\nline 2\n", 14);
	CHECK_INT(got.calls, 1);
	CHECK_INT(got.error, 0);
	CHECK_STR(got.text, "line 1\nline 2\n");
	CHECK_INT(got.len, 14);
	teardown();
}

static void test_job_pod_and_none(void)
{
	setup();
	CHECK(pod_log_get(&k, "ns1", "b2", "initialize", on_log, &got) != NULL);
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->selector, BUILD_LABEL "=b2," BUILD_LABEL_JOB_KIND "=initialize");
	fake_kube_answer(c, 200, "{\"items\":[]}");
	CHECK_INT(got.calls, 1);
	CHECK_INT(got.error, -ENOENT);
	CHECK(strstr(got.message, "no pod of that job") != NULL);

	memset(&got, 0, sizeof got);
	CHECK(pod_log_get(&k, "ns1", "b2", NULL, on_log, &got) != NULL);
	fake_kube_answer(fake_kube_next(&k), 200, "{\"items\":[]}");
	CHECK_INT(got.error, -ENOENT);
	CHECK(strstr(got.message, "is it started?") != NULL);
	teardown();
}

static void test_failures(void)
{
	setup();
	/* the listing refused */
	CHECK(pod_log_get(&k, "ns1", "b3", NULL, on_log, &got) != NULL);
	fake_kube_answer(fake_kube_next(&k), 403,
			 "{\"reason\":\"Forbidden\",\"message\":\"pods is forbidden\"}");
	CHECK_INT(got.calls, 1);
	CHECK_INT(got.error, -EIO);
	CHECK(strstr(got.message, "pods is forbidden") != NULL);
	/* the pod went between the listing and the log: not found */
	memset(&got, 0, sizeof got);
	CHECK(pod_log_get(&k, "ns1", "b3", NULL, on_log, &got) != NULL);
	fake_kube_answer(fake_kube_next(&k), 200, PODS);
	fake_kube_answer(fake_kube_next(&k), 404, "{\"reason\":\"NotFound\",\"message\":\"gone\"}");
	CHECK_INT(got.error, -ENOENT);
	/* the log call fails otherwise */
	memset(&got, 0, sizeof got);
	CHECK(pod_log_get(&k, "ns1", "b3", NULL, on_log, &got) != NULL);
	fake_kube_answer(fake_kube_next(&k), 200, PODS);
	fake_kube_fail(fake_kube_next(&k), -ETIMEDOUT, false);
	CHECK_INT(got.calls, 1);
	CHECK_INT(got.error, -EIO);
	CHECK_STR(got.message, "no answer (fake)");
	teardown();
}

static void test_tail_bounds(void)
{
	static const struct {
		long tail, limit;
		long want_tail, want_limit;
	} cases[] = {
		{200, 1000, 200, 1000},
		{0, 0, 0, 4 * 1024 * 1024},
		{-5, -1, 0, 4 * 1024 * 1024},
		{10, 5L * 1024 * 1024, 10, 4 * 1024 * 1024},
	};
	setup();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		memset(&got, 0, sizeof got);
		CHECK(pod_log_get_tail(&k, "ns1", "b4", "cleanup", cases[i].tail, cases[i].limit,
				       on_log, &got) != NULL);
		fake_kube_answer(fake_kube_next(&k), 200, PODS);
		struct kube_call *c = fake_kube_next(&k);
		CHECK_INT(c->log.tail_lines, cases[i].want_tail);
		CHECK_INT(c->log.limit_bytes, cases[i].want_limit);
		fake_kube_answer_raw(c, "", 0);
		CHECK_INT(got.calls, 1);
		CHECK_INT(got.error, 0);
		CHECK_INT(got.len, 0);
	}
	teardown();
}

static void test_cancel_and_closing(void)
{
	setup();
	/* cancelled while listing: the fake ends the call on the next turn */
	struct pod_log *l = pod_log_get(&k, "ns1", "b5", NULL, on_log, &got);
	pod_log_cancel(l);
	CHECK_INT(k.n_cancels, 1);
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(fake_kube_pending(&k), 0);
	/* cancelled while fetching the log */
	l = pod_log_get(&k, "ns1", "b5", NULL, on_log, &got);
	fake_kube_answer(fake_kube_next(&k), 200, PODS);
	pod_log_cancel(l);
	CHECK_INT(k.n_cancels, 2);
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(got.calls, 0);
	/* no client, or one closing: NULL and no callback */
	CHECK(pod_log_get(NULL, "ns1", "b5", NULL, on_log, &got) == NULL);
	k.closing = true;
	CHECK(pod_log_get(&k, "ns1", "b5", NULL, on_log, &got) == NULL);
	CHECK_INT(got.calls, 0);
	/* closing between the listing and the log: told so */
	k.closing = false;
	CHECK(pod_log_get(&k, "ns1", "b5", NULL, on_log, &got) != NULL);
	k.closing = true;
	fake_kube_answer(fake_kube_next(&k), 200, PODS);
	CHECK_INT(got.calls, 1);
	CHECK_INT(got.error, -EIO);
	CHECK(strstr(got.message, "closing") != NULL);
	teardown();
}

static void test_known_pod(void)
{
	setup();
	/* one call, the pod and container given, the bounds as for a tail */
	CHECK(pod_log_get_pod(&k, "ns1", "b6-initialize-x", "init", 50, 1000, on_log, &got) != NULL);
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "log");
	CHECK_STR(c->ns, "ns1");
	CHECK_STR(c->name, "b6-initialize-x");
	CHECK_STR(c->log.container, "init");
	CHECK_INT(c->log.tail_lines, 50);
	CHECK_INT(c->log.limit_bytes, 1000);
	fake_kube_answer_raw(c, "ok\n", 3);
	CHECK_INT(got.calls, 1);
	CHECK_INT(got.error, 0);
	CHECK_STR(got.text, "ok\n");
	/* gone: -ENOENT; cancelled: no callback; closing: NULL */
	memset(&got, 0, sizeof got);
	CHECK(pod_log_get_pod(&k, "ns1", "p", NULL, 0, 0, on_log, &got) != NULL);
	c = fake_kube_next(&k);
	CHECK_INT(c->log.limit_bytes, 4 * 1024 * 1024);
	fake_kube_answer(c, 404, "{\"reason\":\"NotFound\",\"message\":\"gone\"}");
	CHECK_INT(got.error, -ENOENT);
	memset(&got, 0, sizeof got);
	pod_log_cancel(pod_log_get_pod(&k, "ns1", "p", NULL, 0, 0, on_log, &got));
	uv_run(&loop, UV_RUN_NOWAIT);
	CHECK_INT(got.calls, 0);
	k.closing = true;
	CHECK(pod_log_get_pod(&k, "ns1", "p", NULL, 0, 0, on_log, &got) == NULL);
	CHECK(pod_log_get_pod(NULL, "ns1", "p", NULL, 0, 0, on_log, &got) == NULL);
	CHECK_INT(got.calls, 0);
	teardown();
}

int main(void)
{
	RUN(test_odoo_pod_newest_first_container);
	RUN(test_job_pod_and_none);
	RUN(test_failures);
	RUN(test_tail_bounds);
	RUN(test_cancel_and_closing);
	RUN(test_known_pod);
	return UNIT_DONE();
}
