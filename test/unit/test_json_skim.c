/* json_skim: walking members and elements of JSON text, with the grammar
 * of what is skipped checked (it agrees with jansson on valid and invalid
 * documents), bounded nesting, and no read past the end. */
#include "json_skim.h"
#include "util.h"
#include "unit.h"

#include <errno.h>

/* Walks text as an object (or array) and every value inside it, down
 * to the leaves; returns 0 if all of it is accepted, -EPROTO otherwise.
 * The text is copied into an exact-size buffer, so that ASan catches a
 * read past its end. */
static int walk(const char *text, size_t len, int depth);

static int walk_value(const char *v, size_t n, int depth)
{
	if (depth > 4)
		return 0;
	if (n && (v[0] == '{' || v[0] == '['))
		return walk(v, n, depth + 1);
	return 0;
}

static int walk(const char *text, size_t len, int depth)
{
	char *copy = xmalloc(len ? len : 1);
	memcpy(copy, text, len);
	struct json_skim it;
	size_t p = 0;
	while (p < len && (text[p] == ' ' || text[p] == '\n'))
		p++;
	char open = p < len ? text[p] : '{';
	int r = json_skim_open(&it, copy, len, open == '[' ? '[' : '{');
	if (r == 0) {
		const char *key, *val;
		size_t klen, vlen;
		bool esc;
		while ((r = open == '[' ? json_skim_element(&it, &val, &vlen)
					: json_skim_member(&it, &key, &klen, &esc, &val, &vlen)) > 0) {
			if (walk_value(val, vlen, depth) < 0) {
				r = -EPROTO;
				break;
			}
		}
	}
	free(copy);
	return r < 0 ? -EPROTO : 0;
}

static int walk_str(const char *text)
{
	return walk(text, strlen(text), 0);
}

/* Whether jansson takes text as a whole document. */
static bool jansson_ok(const char *text)
{
	json_error_t e;
	json_t *v = json_loadb(text, strlen(text), 0, &e);
	json_decref(v);
	return v != NULL;
}

static void test_members(void)
{
	const char *t = " {\"kind\" : \"List\", \"metadata\":{\"continue\":\"x\\\"y\"},"
			"\"it\\u0065ms\":[1, -2.5e+3, true, false, null, \"s\", {}, [[]]]} \n";
	struct json_skim it;
	const char *key, *val;
	size_t klen, vlen;
	bool esc;
	CHECK_INT(json_skim_open(&it, t, strlen(t), '{'), 0);
	CHECK_INT(json_skim_member(&it, &key, &klen, &esc, &val, &vlen), 1);
	CHECK(json_skim_key_is(key, klen, esc, "kind") && !esc);
	CHECK_INT(vlen, 6);
	CHECK(memcmp(val, "\"List\"", 6) == 0);
	CHECK_INT(json_skim_member(&it, &key, &klen, &esc, &val, &vlen), 1);
	CHECK(json_skim_key_is(key, klen, esc, "metadata"));
	json_t *md = json_skim_parse(val, vlen);
	CHECK_STR(json_string_value(json_object_get(md, "continue")), "x\"y");
	json_decref(md);
	CHECK_INT(json_skim_member(&it, &key, &klen, &esc, &val, &vlen), 1);
	CHECK(esc);
	CHECK(json_skim_key_is(key, klen, esc, "items")); /* decoded: \u0065 is e */
	CHECK(!json_skim_key_is(key, klen, esc, "item"));
	json_t *k = json_skim_key(key, klen, esc);
	CHECK_STR(json_string_value(k), "items");
	json_decref(k);
	struct json_skim arr;
	CHECK_INT(json_skim_open(&arr, val, vlen, '['), 0);
	int n = 0;
	const char *ev;
	size_t elen;
	while (json_skim_element(&arr, &ev, &elen) > 0)
		n++;
	CHECK_INT(n, 8);
	CHECK_INT(json_skim_member(&it, &key, &klen, &esc, &val, &vlen), 0);
	CHECK_INT(json_skim_member(&it, &key, &klen, &esc, &val, &vlen), 0); /* stays done */
	/* walking the wrong kind of container */
	CHECK_INT(json_skim_open(&it, t, strlen(t), '['), -EPROTO);
	CHECK_INT(json_skim_open(&arr, "[]", 2, '['), 0);
	CHECK_INT(json_skim_member(&arr, &key, &klen, &esc, &val, &vlen), -EPROTO);
	CHECK_INT(json_skim_element(&arr, &val, &vlen), 0);
	/* an escaped NUL is not a key */
	CHECK(json_skim_key("a\\u0000", 7, true) == NULL);
}

/* Valid and invalid documents: json_skim agrees with jansson. */
static void test_grammar(void)
{
	static const char *const docs[] = {
		"{}", "[]", " { } ", "{\"a\":1}", "{\"a\":[1,2,{\"b\":null}]}", "[0, -0, 1.5, 1e5, 1E-5, -0.0e+1]",
		"[\"\\u00e9\\n\\t\\\\\\/\\b\\f\\r\"]", "{\"a\":{\"b\":{\"c\":[[[]]]}}}",
		/* invalid */
		"", "{", "}", "[", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[,1]", "{,}",
		"{\"a\" 1}", "{\"a\":1 \"b\":2}", "[01]", "[1.]", "[.5]", "[1e]", "[-]", "[+1]",
		"[tru]", "[truex]", "[nul]", "[\"a]", "[\"\\x\"]", "[\"\\u12\"]", "[\"\\u12g4\"]",
		"[\"a\nb\"]", "{1:2}", "{\"a\":1}}", "{\"a\":1} x", "[1]]", "[1 2]", "{\"a\":[}",
		"[\"\\", "[\"\\u", "[1e+", "[-0.", "{\"a\":tr", "[{\"a\":1]", "[}",
		"{\"a\":1,", "{\"a\":1, ", "[1,", "[1, ",
	};
	for (size_t i = 0; i < ARRAY_SIZE(docs); i++) {
		bool want = jansson_ok(docs[i]);
		int got = walk_str(docs[i]);
		if ((got == 0) != want)
			fprintf(stderr, "  disagreement on %s: skim %d, jansson %d\n", docs[i], got, want);
		CHECK((got == 0) == want);
	}
	/* every prefix of a valid document is refused, without reading past it */
	const char *t = "{\"items\":[{\"metadata\":{\"name\":\"a\\\"b\",\"n\":-1.5e3},\"x\":[true,false,null]}]}";
	for (size_t n = 0; n < strlen(t); n++)
		CHECK_INT(walk(t, n, 0), -EPROTO);
	CHECK_INT(walk(t, strlen(t), 0), 0);
}

static void test_depth(void)
{
	struct buf b = { 0 };
	buf_append_str(&b, "{\"a\":");
	for (int i = 0; i < JSON_SKIM_MAX_DEPTH; i++)
		buf_append_str(&b, "[");
	for (int i = 0; i < JSON_SKIM_MAX_DEPTH; i++)
		buf_append_str(&b, "]");
	buf_append_str(&b, "}");
	CHECK_INT(walk(b.data, b.len, 0), 0);
	buf_reset(&b);
	buf_append_str(&b, "{\"a\":");
	for (int i = 0; i < JSON_SKIM_MAX_DEPTH + 1; i++)
		buf_append_str(&b, "[");
	for (int i = 0; i < JSON_SKIM_MAX_DEPTH + 1; i++)
		buf_append_str(&b, "]");
	buf_append_str(&b, "}");
	CHECK_INT(walk(b.data, b.len, 0), -EPROTO);
	buf_free(&b);
}

int main(void)
{
	RUN(test_members);
	RUN(test_grammar);
	RUN(test_depth);
	return UNIT_DONE();
}
