#include <stdbool.h>

#include "build.h"
#include "init_log.h"
#include "kube_fake.h"
#include "unit.h"
#include "util.h"

static void test_tail_short(void)
{
	size_t n;
	bool cut = true;
	char *t = init_log_tail("a\nb\n", 4, 100, &n, &cut);
	CHECK_STR(t, "a\nb\n");
	CHECK_INT(n, 4);
	CHECK(!cut);
	free(t);
	t = init_log_tail(NULL, 0, 100, &n, &cut);
	CHECK_STR(t, "");
	CHECK_INT(n, 0);
	CHECK(!cut);
	free(t);
}

static void test_tail_cut_at_line(void)
{
	size_t n;
	bool cut = false;
	const char *text = "line one\nline two\nline three\n";
	/* the last 15 bytes are "wo\nline three\n": starts after the newline */
	char *t = init_log_tail(text, strlen(text), 15, &n, &cut);
	CHECK_STR(t, "line three\n");
	CHECK_INT(n, 11);
	CHECK(cut);
	free(t);
	/* no newline in the tail: the raw bytes */
	t = init_log_tail("abcdefgh", 8, 3, &n, &cut);
	CHECK_STR(t, "fgh");
	CHECK(cut);
	free(t);
}

static void test_tail_not_utf8(void)
{
	size_t n;
	bool cut;
	/* a NUL, a lone continuation byte, an overlong '/', a surrogate, an
	 * invalid lead, a truncated sequence; valid é and € kept */
	const char text[] = "a\0b\x80 \xc0\xaf \xed\xa0\x80 \xff \xc3\xa9\xe2\x82\xac \xe2\x82";
	char *t = init_log_tail(text, sizeof text - 1, 1000, &n, &cut);
	CHECK_INT(n, sizeof text - 1);
	CHECK_STR(t, "a?b? ?? ??? ? \xc3\xa9\xe2\x82\xac ??");
	free(t);
	/* cut in the middle of a character with no newline: its rest is '?' */
	t = init_log_tail("\xc3\xa9\xc3\xa9", 4, 3, &n, &cut);
	CHECK_STR(t, "?\xc3\xa9");
	free(t);
}

static void test_tail_random(void)
{
	/* whatever the bytes: at most max, valid UTF-8 (jansson takes it), a
	 * suffix of the input where the input was ASCII */
	uint64_t seed = 42;
	for (int round = 0; round < 2000; round++) {
		char in[300];
		size_t len = (size_t)(seed % sizeof in);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			unsigned r = (unsigned)(seed >> 33);
			in[i] = (char)(round % 2 ? (r % 3 == 0 ? '\n' : 'a' + r % 26) : r & 0xff);
		}
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		size_t max = (size_t)(seed >> 40) % 320;
		size_t n;
		bool cut;
		char *t = init_log_tail(in, len, max, &n, &cut);
		CHECK(n <= max);
		CHECK(cut == (len > max));
		CHECK_INT(strlen(t), n);
		json_t *s = json_stringn(t, n);
		CHECK(s != NULL);
		json_decref(s);
		if (round % 2)
			CHECK(memcmp(in + len - n, t, n) == 0);
		free(t);
	}
}

static void test_configmap(void)
{
	json_t *cm = init_log_configmap("ns1", "b1", "b1-initialize-x", false, true, "boom\n");
	CHECK_STR(json_string_value(json_object_get(cm, "kind")), "ConfigMap");
	json_t *md = json_object_get(cm, "metadata");
	CHECK_STR(json_string_value(json_object_get(md, "name")), "b1-initlog");
	CHECK_STR(json_string_value(json_object_get(md, "namespace")), "ns1");
	CHECK_STR(json_string_value(json_object_get(json_object_get(md, "labels"), "runboat/build")),
		  "b1");
	json_t *ann = json_object_get(md, "annotations");
	CHECK_STR(json_string_value(json_object_get(ann, "runboat/init-status")), "failed");
	CHECK_STR(json_string_value(json_object_get(ann, "runboat/init-job")), "b1-initialize-x");
	CHECK_STR(json_string_value(json_object_get(ann, "runboat/log-truncated")), "true");
	size_t len = 0;
	CHECK_STR(init_log_configmap_text(cm, "b1", &len), "boom\n");
	CHECK_INT(len, 5);
	/* another build's, or not ours */
	CHECK(init_log_configmap_text(cm, "b", &len) == NULL);
	CHECK(init_log_configmap_text(cm, "b1x", &len) == NULL);
	json_object_set_new(json_object_get(cm, "data"), "log", json_integer(1));
	CHECK(init_log_configmap_text(cm, "b1", &len) == NULL);
	json_decref(cm);
	CHECK(init_log_configmap_text(NULL, "b1", &len) == NULL);
	cm = json_pack("{s:{s:s,s:{s:s}},s:{s:s}}", "metadata", "name", "b1-initlog", "labels",
		       "runboat/build", "b2", "data", "log", "x");
	CHECK(init_log_configmap_text(cm, "b1", &len) == NULL);
	json_decref(cm);
}

static void test_no_kube(void)
{
	/* without a client nothing is kept or read, and nothing leaks */
	struct init_log *il = init_log_new(NULL, "ns", NULL, NULL);
	init_log_keep(il, "b1", "j", true);
	CHECK_INT(init_log_pending(il), 0);
	CHECK(init_log_read(il, "b1", NULL, NULL) == NULL);
	init_log_free(il);
	init_log_free(NULL);
}

/* ---- keeping, against the fake client: the pod from the cache ---- */

static struct lookup {
	int calls;
	const char *pod, *container;
} lookup;

static const char *find_pod(const char *build, const char **container, void *data)
{
	CHECK(data == &lookup);
	CHECK_STR(build, "b1");
	lookup.calls++;
	*container = lookup.container;
	return lookup.pod;
}

static const char INIT_PODS[] =
	"{\"items\":[{\"metadata\":{\"name\":\"b1-initialize-xyz\","
	"\"creationTimestamp\":\"2026-01-02T10:00:00Z\"},"
	"\"spec\":{\"containers\":[{\"name\":\"init\"}]}}]}";

/* The log's ConfigMap is applied with what was read; answered, the keep ends. */
static void expect_kept(struct kube *k, const char *text)
{
	struct kube_call *c = fake_kube_next(k);
	CHECK_STR(c->verb, "apply");
	CHECK_STR(c->kind, "ConfigMap");
	CHECK_STR(c->name, "b1" INIT_LOG_SUFFIX);
	CHECK_STR(json_string_value(json_object_get(json_object_get(c->sent, "data"), "log")), text);
	fake_kube_answer(c, 200, "{}");
}

static void test_keep_pod_from_cache(void)
{
	uv_loop_t loop;
	struct kube k;
	uv_loop_init(&loop);
	fake_kube_init(&k, &loop);
	struct init_log *il = init_log_new(&k, "ns", NULL, NULL);
	init_log_set_pod_lookup(il, find_pod, &lookup);

	/* known: one call reads it, no listing */
	memset(&lookup, 0, sizeof lookup);
	lookup.pod = "b1-initialize-abc";
	lookup.container = "init";
	init_log_keep(il, "b1", "b1-initialize", true);
	CHECK_INT(lookup.calls, 1);
	struct kube_call *c = fake_kube_next(&k);
	CHECK_STR(c->verb, "log");
	CHECK_STR(c->ns, "ns");
	CHECK_STR(c->name, "b1-initialize-abc");
	CHECK_STR(c->log.container, "init");
	CHECK(c->log.tail_lines > 0);
	fake_kube_answer_raw(c, "from the cache\n", 15);
	expect_kept(&k, "from the cache\n");
	CHECK_INT(init_log_pending(il), 0);
	CHECK_INT(k.n_calls, 2);

	/* the cached pod is gone (404): the pods are listed, then read */
	memset(&lookup, 0, sizeof lookup);
	lookup.pod = "b1-initialize-old";
	init_log_keep(il, "b1", "b1-initialize", false);
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "log");
	CHECK_STR(c->name, "b1-initialize-old");
	CHECK(c->log.container == NULL || !*c->log.container); /* its only one */
	fake_kube_answer(c, 404, "{\"reason\":\"NotFound\",\"message\":\"gone\"}");
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "list");
	CHECK_STR(c->kind, "Pod");
	CHECK_STR(c->selector, BUILD_LABEL "=b1," BUILD_LABEL_JOB_KIND "=initialize");
	CHECK_INT(lookup.calls, 1); /* not asked again */
	fake_kube_answer(c, 200, INIT_PODS);
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "log");
	CHECK_STR(c->name, "b1-initialize-xyz");
	CHECK_STR(c->log.container, "init");
	fake_kube_answer_raw(c, "listed\n", 7);
	expect_kept(&k, "listed\n");
	CHECK_INT(init_log_pending(il), 0);

	/* not known: listed as before */
	memset(&lookup, 0, sizeof lookup);
	init_log_keep(il, "b1", "b1-initialize", true);
	CHECK_INT(lookup.calls, 1);
	c = fake_kube_next(&k);
	CHECK_STR(c->verb, "list");
	fake_kube_answer(c, 200, INIT_PODS);
	fake_kube_answer_raw(fake_kube_next(&k), "x\n", 2);
	expect_kept(&k, "x\n");

	/* another error of the cached pod's read is not retried by listing */
	memset(&lookup, 0, sizeof lookup);
	lookup.pod = "b1-initialize-abc";
	init_log_keep(il, "b1", "b1-initialize", true);
	fake_kube_answer(fake_kube_next(&k), 403, "{\"reason\":\"Forbidden\",\"message\":\"no\"}");
	CHECK_INT(fake_kube_pending(&k), 0);
	CHECK_INT(init_log_pending(il), 0);

	init_log_free(il);
	fake_kube_close(&k);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
	RUN(test_tail_short);
	RUN(test_tail_cut_at_line);
	RUN(test_tail_not_utf8);
	RUN(test_tail_random);
	RUN(test_configmap);
	RUN(test_no_kube);
	RUN(test_keep_pod_from_cache);
	return UNIT_DONE();
}
