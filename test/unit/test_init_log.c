#include <stdbool.h>

#include "init_log.h"
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

int main(void)
{
	RUN(test_tail_short);
	RUN(test_tail_cut_at_line);
	RUN(test_tail_not_utf8);
	RUN(test_tail_random);
	RUN(test_configmap);
	RUN(test_no_kube);
	return UNIT_DONE();
}
