#include "yaml_json.h"

#include <jansson.h>

#include "unit.h"
#include "util.h"

/* Parses yaml as a stream and checks it equals the JSON text expected. */
static void check_stream(const char *yaml, const char *expected_json)
{
	char err[256] = "";
	json_t *got = yaml_json_parse_stream(yaml, strlen(yaml), err, sizeof(err));
	json_t *want = json_loads(expected_json, JSON_DECODE_ANY, NULL);
	CHECK(want != NULL);
	CHECK(got != NULL);
	bool eq = got && want && json_equal(got, want);
	CHECK(eq);
	if (!eq) {
		char *g = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL;
		fprintf(stderr, "  yaml: %s\n  got:      %s\n  expected: %s\n  err: %s\n", yaml,
			g ? g : "(null)", expected_json, err);
		free(g);
	}
	json_decref(got);
	json_decref(want);
}

/* Parses one document and checks it equals the JSON text expected. */
static void check_one(const char *yaml, const char *expected_json)
{
	char *stream = xasprintf("[%s]", expected_json);
	check_stream(yaml, stream);
	free(stream);
}

static void check_error(const char *yaml, const char *expected_err)
{
	char err[256] = "";
	json_t *got = yaml_json_parse_stream(yaml, strlen(yaml), err, sizeof(err));
	CHECK(got == NULL);
	CHECK_STR(err, expected_err);
	json_decref(got);
}

static void check_error_has(const char *yaml, size_t len, const char *part)
{
	char err[256] = "";
	json_t *got = yaml_json_parse_stream(yaml, len, err, sizeof(err));
	CHECK(got == NULL);
	CHECK(strstr(err, part) != NULL);
	if (!strstr(err, part))
		fprintf(stderr, "  error \"%s\" lacks \"%s\"\n", err, part);
	json_decref(got);
}

static void test_streams(void)
{
	check_stream("", "[]");
	check_stream("# only a comment\n", "[]");
	check_stream("---\n---\n...\n", "[]");
	check_stream("a: 1\n", "[{\"a\": 1}]");
	check_stream("# leading comment\n"
		     "---\n"
		     "a: 1 # trailing comment\n"
		     "---\n"
		     "# a document of nothing but a comment\n"
		     "---\n"
		     "b: 2\n"
		     "...\n"
		     "---\n"
		     "- x\n"
		     "- y\n"
		     "...\n"
		     "--- plain scalar\n"
		     "---\n"
		     "null\n",
		     "[{\"a\": 1}, {\"b\": 2}, [\"x\", \"y\"], \"plain scalar\", null]");
	/* without a trailing newline, and with CRLF line ends */
	check_stream("a: 1\r\n---\r\nb: [1, 2]", "[{\"a\": 1}, {\"b\": [1, 2]}]");
	/* NULL data with length 0 is an empty stream */
	json_t *docs = yaml_json_parse_stream(NULL, 0, NULL, 0);
	CHECK(json_is_array(docs) && json_array_size(docs) == 0);
	json_decref(docs);
}

static void test_scalars(void)
{
	check_one("n1:\n"
		  "n2: ~\n"
		  "n3: null\n"
		  "n4: Null\n"
		  "n5: NULL\n"
		  "b1: true\n"
		  "b2: False\n"
		  "b3: TRUE\n"
		  "b4: false\n"
		  "s1: yes\n"
		  "s2: on\n"
		  "s3: nULL\n"
		  "s4: tRUE\n",
		  "{\"n1\": null, \"n2\": null, \"n3\": null, \"n4\": null, \"n5\": null,"
		  " \"b1\": true, \"b2\": false, \"b3\": true, \"b4\": false,"
		  " \"s1\": \"yes\", \"s2\": \"on\", \"s3\": \"nULL\", \"s4\": \"tRUE\"}");
	check_one("i1: 42\n"
		  "i2: -17\n"
		  "i3: +5\n"
		  "i4: 0x1F\n"
		  "i5: 0o17\n"
		  "i6: 0755\n"
		  "i7: 09\n"
		  "i8: 0\n"
		  "i9: 9223372036854775807\n"
		  "i10: -9223372036854775808\n"
		  "i11: 0b101\n"
		  "i12: -0x10\n"
		  "i13: 007\n",
		  "{\"i1\": 42, \"i2\": -17, \"i3\": 5, \"i4\": 31, \"i5\": 15, \"i6\": 493,"
		  " \"i7\": 9, \"i8\": 0, \"i9\": 9223372036854775807,"
		  " \"i10\": -9223372036854775808, \"i11\": 5, \"i12\": -16, \"i13\": 7}");
	check_one("f1: 1.5\n"
		  "f2: -.5\n"
		  "f3: 1e3\n"
		  "f4: 2.50\n"
		  "f5: 1.\n"
		  "f6: 6.02e+23\n"
		  "f7: 1.0e-3\n"
		  "f8: -0.0\n",
		  "{\"f1\": 1.5, \"f2\": -0.5, \"f3\": 1000, \"f4\": 2.5, \"f5\": 1,"
		  " \"f6\": 6.02e23, \"f7\": 0.001, \"f8\": 0}");
	/* whole floats become integers, as Go's JSON prints them */
	json_t *doc = yaml_json_parse_one("a: 1.0\nb: 1.25\n", 15, NULL, 0);
	CHECK(json_is_integer(json_object_get(doc, "a")));
	CHECK(json_is_real(json_object_get(doc, "b")));
	json_decref(doc);
	check_one("s1: \"42\"\n"
		  "s2: 'true'\n"
		  "s3: 1.2.3\n"
		  "s4: 0x\n"
		  "s5: 12abc\n"
		  "s6: -a\n"
		  "s7: .\n"
		  "s8: \"null\"\n"
		  "s9: 1_000\n"
		  "s10: 0xZZ\n"
		  "s11: 1e\n"
		  "s12: 10.0.0.1\n"
		  "s13: 2024-01-02\n"
		  "s14: 100m\n"
		  "s15: \"\"\n"
		  "s16: ''\n"
		  "s17: a b  c\n"
		  "s18: ~x\n"
		  "s19: 0o\n"
		  "s20: 12:30\n",
		  "{\"s1\": \"42\", \"s2\": \"true\", \"s3\": \"1.2.3\", \"s4\": \"0x\","
		  " \"s5\": \"12abc\", \"s6\": \"-a\", \"s7\": \".\", \"s8\": \"null\","
		  " \"s9\": \"1_000\", \"s10\": \"0xZZ\", \"s11\": \"1e\", \"s12\": \"10.0.0.1\","
		  " \"s13\": \"2024-01-02\", \"s14\": \"100m\", \"s15\": \"\", \"s16\": \"\","
		  " \"s17\": \"a b  c\", \"s18\": \"~x\", \"s19\": \"0o\", \"s20\": \"12:30\"}");
	/* escapes of double-quoted scalars, '' in single-quoted ones, multi-line plain */
	check_one("q: \"a\\tb\\u00e9\\n\\\"\\\\\\x41\"\n"
		  "s: 'it''s'\n"
		  "p: one\n  two\n\n  three\n",
		  "{\"q\": \"a\\tb\\u00e9\\n\\\"\\\\A\", \"s\": \"it's\", \"p\": \"one two\\nthree\"}");
	/* an escaped NUL is kept */
	doc = yaml_json_parse_one("k: \"a\\0b\"\n", 10, NULL, 0);
	CHECK_INT(json_string_length(json_object_get(doc, "k")), 3);
	json_decref(doc);
	/* keys are strings, whatever they look like */
	check_one("1: a\ntrue: b\nnull: c\n~: d\n0x10: e\n\"q\": f\n",
		  "{\"1\": \"a\", \"true\": \"b\", \"null\": \"c\", \"~\": \"d\", \"0x10\": \"e\","
		  " \"q\": \"f\"}");
	/* a scalar document */
	check_one("--- 12\n", "12");
	check_one("--- \"x\"\n", "\"x\"");

	check_error("a: 9223372036854775808\n",
		    "line 1, column 4: integer '9223372036854775808' out of range");
	check_error("a: -9223372036854775809\n",
		    "line 1, column 4: integer '-9223372036854775809' out of range");
	check_error("a: 0xFFFFFFFFFFFFFFFFF\n",
		    "line 1, column 4: integer '0xFFFFFFFFFFFFFFFFF' out of range");
	check_error("a: .inf\n", "line 1, column 4: '.inf' cannot be represented in JSON");
	check_error("a:\n  - -.Inf\n", "line 2, column 5: '-.Inf' cannot be represented in JSON");
	check_error("a: .NaN\n", "line 1, column 4: '.NaN' cannot be represented in JSON");
	check_error("a: 1e999\n", "line 1, column 4: number '1e999' out of range");
}

static void test_tags(void)
{
	check_one("a: !!str 42\n"
		  "b: !!str true\n"
		  "c: !!int \"42\"\n"
		  "d: !!float 3\n"
		  "e: !!float \"2.5\"\n"
		  "f: !!bool \"true\"\n"
		  "g: !!null \"\"\n"
		  "h: !!binary aGVsbG8=\n"
		  "i: ! 12\n"
		  "j: !!str\n"
		  "k: !!map {x: 1}\n"
		  "l: !!seq [1]\n"
		  "m: !<tag:yaml.org,2002:str> 7\n",
		  "{\"a\": \"42\", \"b\": \"true\", \"c\": 42, \"d\": 3, \"e\": 2.5, \"f\": true,"
		  " \"g\": null, \"h\": \"aGVsbG8=\", \"i\": \"12\", \"j\": \"\", \"k\": {\"x\": 1},"
		  " \"l\": [1], \"m\": \"7\"}");
	/* %TAG directives resolve shorthand tags */
	check_one("%TAG !y! tag:yaml.org,2002:\n---\na: !y!str 1\n", "{\"a\": \"1\"}");
	check_error("a: !!int abc\n", "line 1, column 4: 'abc' is not a valid !!int");
	check_error("a: !!bool yes\n", "line 1, column 4: 'yes' is not a valid !!bool");
	check_error("a: !!null x\n", "line 1, column 4: 'x' is not a valid !!null");
	check_error("a: !!float x\n", "line 1, column 4: 'x' is not a valid !!float");
	check_error("a: !custom x\n", "line 1, column 4: unsupported tag '!custom'");
	check_error("a: !!set {x}\n",
		    "line 1, column 4: unsupported tag 'tag:yaml.org,2002:set' on a mapping");
	check_error("a: !!map [1]\n",
		    "line 1, column 4: unsupported tag 'tag:yaml.org,2002:map' on a sequence");
}

static void test_block_scalars(void)
{
	check_one("lit: |\n"
		  "  line1\n"
		  "    indented\n"
		  "  line3\n"
		  "fold: >\n"
		  "  a\n"
		  "  b\n"
		  "\n"
		  "  c\n"
		  "keep: |+\n"
		  "  x\n"
		  "\n"
		  "strip: |-\n"
		  "  123\n"
		  "num: |\n"
		  "  42\n"
		  "bool: >-\n"
		  "  true\n"
		  "script: |\n"
		  "  #!/bin/bash\n"
		  "  set -e\n"
		  "  echo \"{{not mustache}}\" # kept\n",
		  "{\"lit\": \"line1\\n  indented\\nline3\\n\", \"fold\": \"a b\\nc\\n\","
		  " \"keep\": \"x\\n\\n\", \"strip\": \"123\", \"num\": \"42\\n\", \"bool\": \"true\","
		  " \"script\": \"#!/bin/bash\\nset -e\\necho \\\"{{not mustache}}\\\" # kept\\n\"}");
}

static void test_flow(void)
{
	check_one("{a: [1, 2, {b: c}], d: [], e: {}, f: [a, \"b\", 'c', ~], "
		  "g: [[1], [[2]]], h: {x: {y: z}}}",
		  "{\"a\": [1, 2, {\"b\": \"c\"}], \"d\": [], \"e\": {}, \"f\": [\"a\", \"b\", \"c\", null],"
		  " \"g\": [[1], [[2]]], \"h\": {\"x\": {\"y\": \"z\"}}}");
	check_one("[a, b: 1, {c: 2}]", "[\"a\", {\"b\": 1}, {\"c\": 2}]");
	check_one("a:\n- 1\n- [2, 3]\n- k: v\n  l: w\n", "{\"a\": [1, [2, 3], {\"k\": \"v\", \"l\": \"w\"}]}");
}

static void test_keys(void)
{
	check_error("a: 1\nb: 2\na: 3\n", "line 3, column 1: duplicate key 'a'");
	check_error("x:\n  a: 1\n  \"a\": 3\n", "line 3, column 3: duplicate key 'a'");
	check_error("{a: 1, a: 2}", "line 1, column 8: duplicate key 'a'");
	/* the same key in different mappings is fine */
	check_one("a: {k: 1}\nb: {k: 2}\n", "{\"a\": {\"k\": 1}, \"b\": {\"k\": 2}}");
	check_error("? [a, b]\n: c\n", "line 1, column 3: mapping keys must be scalars");
	check_error("{[1]: 2}", "line 1, column 2: mapping keys must be scalars");
	check_error("? {a: 1}\n: c\n", "line 1, column 3: mapping keys must be scalars");
	check_error("a: &x [1]\n*x : 2\n", "line 2, column 1: mapping keys must be scalars");
	/* an alias to a scalar is a fine key */
	check_one("a: &k name\n*k : 2\n", "{\"a\": \"name\", \"name\": 2}");
	/* an anchored key */
	check_one("&k key: 1\nb: *k\n", "{\"key\": 1, \"b\": \"key\"}");
}

static void test_syntax_errors(void)
{
	check_error("a: 1\nb: [1, 2\nc: 3\n",
		    "line 3, column 2: did not find expected ',' or ']' "
		    "(while parsing a flow sequence at line 2, column 4)");
	check_error("a: 1\n  b: 2\n",
		    "line 2, column 4: mapping values are not allowed in this context");
	check_error("a:\n\tb: 1\n",
		    "line 2, column 1: found character that cannot start any token "
		    "(while scanning for the next token at line 2, column 1)");
	check_error("a: 'unclosed\n",
		    "line 2, column 1: found unexpected end of stream "
		    "(while scanning a quoted scalar at line 1, column 4)");
	check_error("key: value\n- item\n",
		    "line 2, column 1: did not find expected key "
		    "(while parsing a block mapping at line 1, column 1)");
	check_error_has("a: 1\nb: \xff\n", 10, "line 2, column 4: invalid leading UTF-8 octet");
	check_error_has("a: 1\nb: x\0y\n", 11, "line 2, column 5: control characters are not allowed");
	check_error("a: *nope\n", "line 1, column 4: unknown anchor '*nope'");
	/* anchors do not cross documents */
	check_error("a: &x 1\n---\nb: *x\n", "line 3, column 4: unknown anchor '*x'");
	check_error("a: &x [1, *x]\n", "line 1, column 11: alias '*x' refers to a node that contains it");
	check_error("<<: 1\n", "line 1, column 1: the value of a '<<' merge key must be a mapping "
			       "or a sequence of mappings");
}

static void test_aliases(void)
{
	check_one("base: &base {x: 1, y: [1, 2]}\n"
		  "copy: *base\n"
		  "s: &s str\n"
		  "t: *s\n"
		  "u: &u [*s, *base]\n"
		  "v: *u\n",
		  "{\"base\": {\"x\": 1, \"y\": [1, 2]}, \"copy\": {\"x\": 1, \"y\": [1, 2]},"
		  " \"s\": \"str\", \"t\": \"str\", \"u\": [\"str\", {\"x\": 1, \"y\": [1, 2]}],"
		  " \"v\": [\"str\", {\"x\": 1, \"y\": [1, 2]}]}");
	/* aliases are copies: changing one place leaves the other alone */
	const char *y = "a: &a {k: [1]}\nb: *a\n";
	json_t *doc = yaml_json_parse_one(y, strlen(y), NULL, 0);
	json_array_append_new(json_object_get(json_object_get(doc, "b"), "k"), json_integer(2));
	CHECK_INT(json_array_size(json_object_get(json_object_get(doc, "a"), "k")), 1);
	CHECK_INT(json_array_size(json_object_get(json_object_get(doc, "b"), "k")), 2);
	json_decref(doc);
	/* a redefined anchor refers to the latest node */
	check_one("a: &x 1\nb: &x 2\nc: *x\n", "{\"a\": 1, \"b\": 2, \"c\": 2}");
	/* merge keys: explicit keys win, then the first merged mapping */
	check_one("d: &d {a: 1, b: 2}\n"
		  "e: &e {b: 20, c: 30, z: 0}\n"
		  "o1:\n"
		  "  b: 3\n"
		  "  <<: *d\n"
		  "  c: 4\n"
		  "o2:\n"
		  "  <<: [*e, *d]\n"
		  "  z: 9\n"
		  "o3: {<<: {q: 1}}\n",
		  "{\"d\": {\"a\": 1, \"b\": 2}, \"e\": {\"b\": 20, \"c\": 30, \"z\": 0},"
		  " \"o1\": {\"a\": 1, \"b\": 3, \"c\": 4},"
		  " \"o2\": {\"a\": 1, \"b\": 20, \"c\": 30, \"z\": 9}, \"o3\": {\"q\": 1}}");
	/* a quoted "<<" is a plain key */
	check_one("\"<<\": 1\n", "{\"<<\": 1}");
}

static void test_alias_bombs(void)
{
	const char *lol =
		"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
		"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
		"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
		"f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
		"h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
		"i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
	/* 10^6 nodes are reached on line 6 ("f"), long before 10^9 */
	check_error_has(lol, strlen(lol), "more than 1000000 nodes (alias bomb?)");
	check_error_has(lol, strlen(lol), "line 6, column ");
	/* the same bomb through merge keys and mappings */
	const char *maps =
		"a: &a {a0: 1, a1: 1, a2: 1, a3: 1, a4: 1, a5: 1, a6: 1, a7: 1, a8: 1, a9: 1}\n"
		"b: &b {b0: *a, b1: *a, b2: *a, b3: *a, b4: *a, b5: *a, b6: *a, b7: *a, b8: *a, b9: *a}\n"
		"c: &c {c0: *b, c1: *b, c2: *b, c3: *b, c4: *b, c5: *b, c6: *b, c7: *b, c8: *b, c9: *b}\n"
		"d: &d {d0: *c, d1: *c, d2: *c, d3: *c, d4: *c, d5: *c, d6: *c, d7: *c, d8: *c, d9: *c}\n"
		"e: &e {e0: *d, e1: *d, e2: *d, e3: *d, e4: *d, e5: *d, e6: *d, e7: *d, e8: *d, e9: *d}\n"
		"f: &f {f0: *e, f1: *e, f2: *e, f3: *e, f4: *e, f5: *e, f6: *e, f7: *e, f8: *e, f9: *e}\n"
		"g: {<<: [*f, *f]}\n";
	check_error_has(maps, strlen(maps), "alias bomb");
	/* just under the bound is accepted: 10 + 100 + ... + 10^5 leaves, plus lists */
	const char *ok = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
			 "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
			 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
			 "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
			 "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
	char err[256] = "";
	json_t *docs = yaml_json_parse_stream(ok, strlen(ok), err, sizeof(err));
	CHECK(docs != NULL);
	json_t *e = json_object_get(json_array_get(docs, 0), "e");
	CHECK_STR(json_string_value(json_array_get(json_array_get(json_array_get(
			  json_array_get(json_array_get(e, 9), 9), 9), 9), 9)), "x");
	json_decref(docs);
}

static void test_depth(void)
{
	struct buf b = {0};
	for (int i = 0; i < 256; i++)
		buf_append_str(&b, "[");
	for (int i = 0; i < 256; i++)
		buf_append_str(&b, "]");
	char err[256] = "";
	json_t *docs = yaml_json_parse_stream(b.data, b.len, err, sizeof(err));
	CHECK(docs != NULL);
	json_decref(docs);
	buf_reset(&b);

	for (int i = 0; i < 257; i++)
		buf_append_str(&b, "[");
	check_error_has(b.data, b.len, "line 1, column 257: nesting deeper than 256 levels");
	buf_reset(&b);

	/* a very deep flow document is refused as soon as it is too deep */
	for (int i = 0; i < 1000000; i++)
		buf_append_str(&b, "{a: ");
	check_error_has(b.data, b.len, "nesting deeper than 256 levels");
	buf_reset(&b);

	/* block style */
	for (int i = 0; i < 300; i++) {
		for (int j = 0; j < i; j++)
			buf_append_str(&b, " ");
		buf_append_str(&b, "k:\n");
	}
	check_error_has(b.data, b.len, "line 257, column 257: nesting deeper than 256 levels");
	buf_reset(&b);

	/* depth reached through an alias */
	buf_append_str(&b, "a: &a ");
	for (int i = 0; i < 200; i++)
		buf_append_str(&b, "[");
	for (int i = 0; i < 200; i++)
		buf_append_str(&b, "]");
	buf_append_str(&b, "\nb: ");
	for (int i = 0; i < 100; i++)
		buf_append_str(&b, "[");
	buf_append_str(&b, "*a");
	for (int i = 0; i < 100; i++)
		buf_append_str(&b, "]");
	buf_append_str(&b, "\n");
	check_error_has(b.data, b.len, "line 2, column 104: nesting deeper than 256 levels");
	buf_free(&b);
}

static const char *DEPLOYMENT_STREAM =
	"# rendered by runboat\n"
	"---\n"
	"apiVersion: apps/v1\n"
	"kind: Deployment\n"
	"metadata:\n"
	"  name: \"b1234-odoo\"\n"
	"  labels: &labels\n"
	"    runboat/build: \"b1234\"\n"
	"    app.kubernetes.io/managed-by: runboat\n"
	"  annotations:\n"
	"    runboat/repo: \"oca/mis-builder\"\n"
	"    runboat/pr: \"42\"\n"
	"    runboat/git-commit: \"0123abc\"\n"
	"spec:\n"
	"  replicas: 0\n"
	"  strategy:\n"
	"    type: Recreate\n"
	"  selector:\n"
	"    matchLabels: *labels\n"
	"  template:\n"
	"    metadata:\n"
	"      labels: *labels\n"
	"    spec:\n"
	"      containers:\n"
	"        - name: odoo\n"
	"          image: \"ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest\"\n"
	"          args: [\"odoo\", \"--db-filter=^b1234\"]\n"
	"          env:\n"
	"            - name: PGDATABASE\n"
	"              value: \"b1234\"\n"
	"            - name: PORT\n"
	"              value: \"8069\"\n"
	"          ports:\n"
	"            - containerPort: 8069\n"
	"              name: http\n"
	"          resources:\n"
	"            requests: {cpu: 100m, memory: 512Mi}\n"
	"            limits:\n"
	"              cpu: 1.5\n"
	"              memory: 1Gi\n"
	"          readinessProbe:\n"
	"            httpGet: {path: /web/health, port: 8069}\n"
	"            initialDelaySeconds: 5\n"
	"          volumeMounts:\n"
	"            - {name: scripts, mountPath: /runboat}\n"
	"        - name: mailhog\n"
	"          image: mailhog/mailhog\n"
	"      volumes:\n"
	"        - name: scripts\n"
	"          configMap:\n"
	"            name: b1234-scripts\n"
	"            defaultMode: 0755\n"
	"        - name: data\n"
	"          persistentVolumeClaim:\n"
	"            claimName: b1234-data\n"
	"---\n"
	"apiVersion: v1\n"
	"kind: Service\n"
	"metadata:\n"
	"  name: b1234-odoo\n"
	"spec:\n"
	"  selector:\n"
	"    runboat/build: b1234\n"
	"  ports:\n"
	"  - name: http\n"
	"    port: 8069\n"
	"    targetPort: http\n"
	"    protocol: TCP\n"
	"...\n"
	"---\n"
	"# nothing here\n"
	"---\n"
	"apiVersion: v1\n"
	"kind: ConfigMap\n"
	"metadata: {name: b1234-scripts}\n"
	"data:\n"
	"  runboat-initialize.sh: |\n"
	"    #!/bin/bash\n"
	"    set -exo pipefail\n"
	"    oca_install_addons\n"
	"  enabled: \"true\"\n";

static void test_kubernetes_stream(void)
{
	char err[256] = "";
	json_t *docs = yaml_json_parse_stream(DEPLOYMENT_STREAM, strlen(DEPLOYMENT_STREAM), err,
					      sizeof(err));
	CHECK(docs != NULL);
	if (!docs) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_INT(json_array_size(docs), 3);
	json_t *dep = json_array_get(docs, 0);
	CHECK_STR(json_string_value(json_object_get(dep, "kind")), "Deployment");
	json_error_t jerr;
	json_int_t replicas = -1, port = -1, mode = -1, delay = -1;
	const char *pr = NULL, *env1 = NULL, *cpu_req = NULL, *sel = NULL;
	double cpu_limit = 0;
	json_t *args = NULL;
	int rc = json_unpack_ex(dep, &jerr, 0,
				"{s:{s:{s:s}}, s:{s:I, s:{s:{s:s}}, s:{s:{s:[{s:o, s:[{}, {s:s}],"
				" s:[{s:I}], s:{s:{s:s}, s:{s:F}}, s:{s:I}}, {}], s:[{s:{s:I}}, {}]}}}}",
				"metadata", "annotations", "runboat/pr", &pr,
				"spec", "replicas", &replicas,
				"selector", "matchLabels", "runboat/build", &sel,
				"template", "spec", "containers",
				"args", &args,
				"env", "value", &env1,
				"ports", "containerPort", &port,
				"resources", "requests", "cpu", &cpu_req, "limits", "cpu", &cpu_limit,
				"readinessProbe", "initialDelaySeconds", &delay,
				"volumes", "configMap", "defaultMode", &mode);
	CHECK_INT(rc, 0);
	if (rc)
		fprintf(stderr, "  unpack: %s\n", jerr.text);
	CHECK_STR(pr, "42");
	CHECK_INT(replicas, 0);
	CHECK_STR(sel, "b1234");
	CHECK_INT(json_array_size(args), 2);
	CHECK_STR(env1, "8069");
	CHECK_INT(port, 8069);
	CHECK_STR(cpu_req, "100m");
	CHECK(cpu_limit == 1.5);
	CHECK_INT(delay, 5);
	CHECK_INT(mode, 0755);
	/* the aliased labels are equal copies */
	json_t *labels = json_object_get(json_object_get(dep, "metadata"), "labels");
	json_t *tlabels = json_object_get(json_object_get(json_object_get(
		json_object_get(dep, "spec"), "template"), "metadata"), "labels");
	CHECK(json_equal(labels, tlabels));
	CHECK(labels != tlabels);

	json_t *svc = json_array_get(docs, 1);
	CHECK_STR(json_string_value(json_object_get(svc, "kind")), "Service");
	json_t *sport = json_array_get(json_object_get(json_object_get(svc, "spec"), "ports"), 0);
	CHECK_INT(json_integer_value(json_object_get(sport, "port")), 8069);
	CHECK_STR(json_string_value(json_object_get(sport, "targetPort")), "http");

	json_t *cm = json_array_get(docs, 2);
	json_t *data = json_object_get(cm, "data");
	CHECK_STR(json_string_value(json_object_get(data, "runboat-initialize.sh")),
		  "#!/bin/bash\nset -exo pipefail\noca_install_addons\n");
	CHECK_STR(json_string_value(json_object_get(data, "enabled")), "true");
	json_decref(docs);
}

static const char *KUBECONFIG =
	"apiVersion: v1\n"
	"kind: Config\n"
	"preferences: {}\n"
	"clusters:\n"
	"- cluster:\n"
	"    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=\n"
	"    server: https://127.0.0.1:6443\n"
	"  name: kind-runboat\n"
	"- cluster:\n"
	"    insecure-skip-tls-verify: true\n"
	"    server: https://k8s.example.com\n"
	"    proxy-url: http://proxy:3128\n"
	"  name: prod\n"
	"contexts:\n"
	"- context:\n"
	"    cluster: kind-runboat\n"
	"    user: kind-runboat\n"
	"    namespace: runboat-builds\n"
	"  name: kind-runboat\n"
	"- context:\n"
	"    cluster: prod\n"
	"    user: token-user\n"
	"  name: prod\n"
	"current-context: kind-runboat\n"
	"users:\n"
	"- name: kind-runboat\n"
	"  user:\n"
	"    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n"
	"    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ==\n"
	"- name: token-user\n"
	"  user:\n"
	"    token: eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.e30.sig\n"
	"- name: exec-user\n"
	"  user:\n"
	"    exec:\n"
	"      apiVersion: client.authentication.k8s.io/v1beta1\n"
	"      command: aws\n"
	"      args:\n"
	"        - eks\n"
	"        - get-token\n"
	"      env: null\n"
	"      interactiveMode: IfAvailable\n"
	"      provideClusterInfo: false\n";

static void test_kubeconfig(void)
{
	char err[256] = "";
	json_t *cfg = yaml_json_parse_one(KUBECONFIG, strlen(KUBECONFIG), err, sizeof(err));
	CHECK(cfg != NULL);
	if (!cfg) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_STR(json_string_value(json_object_get(cfg, "current-context")), "kind-runboat");
	CHECK(json_is_object(json_object_get(cfg, "preferences")));
	json_t *clusters = json_object_get(cfg, "clusters");
	CHECK_INT(json_array_size(clusters), 2);
	json_t *c0 = json_object_get(json_array_get(clusters, 0), "cluster");
	CHECK_STR(json_string_value(json_object_get(c0, "server")), "https://127.0.0.1:6443");
	CHECK_STR(json_string_value(json_object_get(c0, "certificate-authority-data")),
		  "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=");
	json_t *c1 = json_object_get(json_array_get(clusters, 1), "cluster");
	CHECK(json_is_true(json_object_get(c1, "insecure-skip-tls-verify")));
	json_t *ctx = json_object_get(json_array_get(json_object_get(cfg, "contexts"), 0), "context");
	CHECK_STR(json_string_value(json_object_get(ctx, "namespace")), "runboat-builds");
	json_t *users = json_object_get(cfg, "users");
	CHECK_INT(json_array_size(users), 3);
	json_t *u1 = json_object_get(json_array_get(users, 1), "user");
	CHECK_STR(json_string_value(json_object_get(u1, "token")),
		  "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.e30.sig");
	json_t *exec = json_object_get(json_object_get(json_array_get(users, 2), "user"), "exec");
	CHECK(json_is_null(json_object_get(exec, "env")));
	CHECK(json_is_false(json_object_get(exec, "provideClusterInfo")));
	CHECK_INT(json_array_size(json_object_get(exec, "args")), 2);
	json_decref(cfg);
}

static void test_parse_one(void)
{
	char err[256] = "";
	json_t *v = yaml_json_parse_one("a: 1\n", 5, err, sizeof(err));
	CHECK_INT(json_integer_value(json_object_get(v, "a")), 1);
	json_decref(v);
	v = yaml_json_parse_one("---\na: 1\n...\n# end\n", 19, err, sizeof(err));
	CHECK(json_is_object(v));
	json_decref(v);
	v = yaml_json_parse_one("", 0, err, sizeof(err));
	CHECK(v == NULL);
	CHECK_STR(err, "no YAML document (the input is empty)");
	v = yaml_json_parse_one("# comment\n---\n", 14, err, sizeof(err));
	CHECK(v == NULL);
	CHECK_STR(err, "no YAML document (the input is empty)");
	v = yaml_json_parse_one("a: 1\n---\nb: 2\n", 14, err, sizeof(err));
	CHECK(v == NULL);
	CHECK_STR(err, "expected one YAML document, found 2");
	v = yaml_json_parse_one("a: [\n", 5, err, sizeof(err));
	CHECK(v == NULL);
	CHECK(str_starts_with(err, "line 2, column 1: "));
	/* no error buffer */
	CHECK(yaml_json_parse_one("a: [\n", 5, NULL, 0) == NULL);
	/* the length is honoured, not a NUL */
	v = yaml_json_parse_one("a: 1\nb: 2\n", 5, err, sizeof(err));
	CHECK_INT(json_object_size(v), 1);
	json_decref(v);
}

int main(void)
{
	RUN(test_streams);
	RUN(test_scalars);
	RUN(test_tags);
	RUN(test_block_scalars);
	RUN(test_flow);
	RUN(test_keys);
	RUN(test_syntax_errors);
	RUN(test_aliases);
	RUN(test_alias_bombs);
	RUN(test_depth);
	RUN(test_kubernetes_stream);
	RUN(test_kubeconfig);
	RUN(test_parse_one);
	return UNIT_DONE();
}
