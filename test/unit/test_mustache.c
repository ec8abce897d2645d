#include "mustache.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>

#include "unit.h"
#include "yaml_json.h"

static const char *spec_partial(const char *name, void *data)
{
	json_t *partials = data;
	return json_string_value(json_object_get(partials, name));
}

static int spec_total;

/* Runs every test of one spec file; returns the number that passed. */
static void run_spec_file(const char *dir, const char *file)
{
	char *path = xasprintf("%s/%s", dir, file);
	json_error_t jerr;
	json_t *spec = json_load_file(path, 0, &jerr);
	CHECK(spec != NULL);
	if (!spec) {
		fprintf(stderr, "%s: %s\n", path, jerr.text);
		free(path);
		return;
	}
	json_t *tests = json_object_get(spec, "tests");
	CHECK(json_array_size(tests) > 0);
	size_t i, passed = 0;
	json_t *t;
	json_array_foreach(tests, i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));
		const char *tmpl = json_string_value(json_object_get(t, "template"));
		const char *expected = json_string_value(json_object_get(t, "expected"));
		json_t *partials = json_object_get(t, "partials");
		struct mustache_opts opts = {
			.partial = spec_partial,
			.escape = mustache_escape_html,
			.data = partials,
		};
		struct buf out = {0};
		char err[256];
		int rc = mustache_render(tmpl, json_object_get(t, "data"), &opts, &out, err,
					 sizeof(err));
		bool ok = rc == 0 && out.data && strcmp(out.data, expected) == 0;
		CHECK(ok);
		if (ok) {
			passed++;
		} else {
			fprintf(stderr, "  spec %s \"%s\": rc %d %s\n    got:      \"%s\"\n    expected: \"%s\"\n",
				file, name, rc, rc ? err : "", out.data ? out.data : "(null)", expected);
		}
		buf_free(&out);
	}
	fprintf(stderr, "  spec %s: %zu passed of %zu\n", file, passed, json_array_size(tests));
	spec_total += (int)json_array_size(tests);
	json_decref(spec);
	free(path);
}

static void test_spec(void)
{
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s/spec/mustache", unit_shared_dir());
	DIR *d = opendir(dir);
	CHECK(d != NULL);
	if (!d) {
		fprintf(stderr, "cannot open %s\n", dir);
		return;
	}
	int files = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '~' || e->d_name[0] == '.' || !str_ends_with(e->d_name, ".json"))
			continue;
		run_spec_file(dir, e->d_name);
		files++;
	}
	closedir(d);
	/* comments, delimiters, interpolation, inverted, partials, sections */
	CHECK_INT(files, 6);
	CHECK(spec_total >= 130);
}

/* Renders with no partials and the given escaping; returns a fresh string
 * (or NULL on error, with the message in err). */
static char *render(const char *tmpl, const char *json, mustache_escape_cb esc, int *rc,
		    char *err, size_t errlen)
{
	json_t *ctx = json_loads(json, 0, NULL);
	struct mustache_opts opts = {.escape = esc};
	struct buf out = {0};
	*rc = mustache_render(tmpl, ctx, &opts, &out, err, errlen);
	json_decref(ctx);
	if (*rc) {
		buf_free(&out);
		return NULL;
	}
	return buf_steal(&out);
}

static void check_render(const char *tmpl, const char *json, const char *expected)
{
	int rc;
	char err[256];
	char *s = render(tmpl, json, NULL, &rc, err, sizeof(err));
	CHECK_INT(rc, 0);
	CHECK_STR(s, expected);
	free(s);
}

static void check_error(const char *tmpl, int want_rc, const char *want_msg)
{
	int rc;
	char err[256];
	char *s = render(tmpl, "{}", NULL, &rc, err, sizeof(err));
	CHECK(s == NULL);
	free(s);
	CHECK_INT(rc, want_rc);
	CHECK_STR(err, want_msg);
}

static void yaml_dq(const char *in, size_t len, const char *expected)
{
	struct buf b = {0};
	mustache_escape_yaml_dq(&b, in, len, NULL);
	CHECK_STR(b.data, expected);
	buf_free(&b);
}

#define YDQ(lit, expected) yaml_dq(lit, sizeof(lit) - 1, expected)

static void test_escape_yaml_dq(void)
{
	YDQ("plain text", "plain text");
	YDQ("", "");
	YDQ("say \"hi\"", "say \\\"hi\\\"");
	YDQ("C:\\dir\\", "C:\\\\dir\\\\");
	YDQ("a\nb\r\nc\td", "a\\nb\\r\\nc\\td");
	YDQ("\x01\x1b\x7f", "\\x01\\x1B\\x7F");
	YDQ("nul\0x", "nul\\x00x");
	/* U+0085 NEL, U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR */
	YDQ("a\xc2\x85" "b\xe2\x80\xa8" "c\xe2\x80\xa9", "a\\u0085b\\u2028c\\u2029");
	/* other C1 controls, BOM, noncharacters */
	YDQ("\xc2\x80\xc2\x9f\xef\xbb\xbf\xef\xbf\xbe", "\\u0080\\u009F\\uFEFF\\uFFFE");
	/* printable non-ASCII is kept */
	YDQ("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	/* invalid UTF-8: lone continuation, truncated sequence, overlong, surrogate */
	YDQ("a\x80z", "a\\uFFFDz");
	YDQ("\xe2\x80", "\\uFFFD\\uFFFD");
	YDQ("\xc0\xaf", "\\uFFFD\\uFFFD");
	YDQ("\xed\xa0\x80", "\\uFFFD\\uFFFD\\uFFFD");
	/* an attempt to break out of the scalar and add a key */
	YDQ("x\"\nevil: true", "x\\\"\\nevil: true");

	/* as the escape of a render */
	int rc;
	char err[256];
	char *s = render("value: \"{{v}}\"\n", "{\"v\": \"a\\\"\\n- b: \\\\\"}",
			 mustache_escape_yaml_dq, &rc, err, sizeof(err));
	CHECK_INT(rc, 0);
	CHECK_STR(s, "value: \"a\\\"\\n- b: \\\\\"\n");
	free(s);
}

/* Renders v into a double-quoted YAML scalar and parses the result back: the
 * value must come back unchanged and the document keep its two keys. */
static void yaml_roundtrip(const char *v, size_t len, const char *expected, size_t elen)
{
	json_t *ctx = json_object();
	json_object_set_new(ctx, "v", json_stringn_nocheck(v, len));
	struct mustache_opts opts = {.escape = mustache_escape_yaml_dq};
	struct buf out = {0};
	char err[256] = "";
	CHECK_INT(mustache_render("k: \"{{v}}\"\nafter: 1\n", ctx, &opts, &out, err, sizeof(err)), 0);
	json_t *doc = yaml_json_parse_one(out.data, out.len, err, sizeof(err));
	CHECK(doc != NULL);
	if (!doc)
		fprintf(stderr, "  %s\n  in: %s\n", err, out.data);
	json_t *k = json_object_get(doc, "k");
	CHECK_INT(json_object_size(doc), 2);
	CHECK_INT(json_integer_value(json_object_get(doc, "after")), 1);
	CHECK_INT(json_string_length(k), elen);
	CHECK(json_string_length(k) == elen && memcmp(json_string_value(k), expected, elen) == 0);
	json_decref(doc);
	json_decref(ctx);
	buf_free(&out);
}

#define ROUNDTRIP(lit) yaml_roundtrip(lit, sizeof(lit) - 1, lit, sizeof(lit) - 1)

static void test_escape_yaml_roundtrip(void)
{
	ROUNDTRIP("plain");
	ROUNDTRIP("");
	ROUNDTRIP("\"\nafter: 2\nx: \"");
	ROUNDTRIP("\\\"\\");
	ROUNDTRIP("---\n- a: b\n...\n");
	ROUNDTRIP("# not a comment: {x} [y] &a *a !tag %d '' {{v}}");
	ROUNDTRIP("line\xe2\x80\xa8" "sep\xe2\x80\xa9" "par\xc2\x85" "nel\xef\xbb\xbf" "bom");
	ROUNDTRIP("\xc2\x80\xc2\x9f\xc2\xa0\xef\xbf\xbd\xf0\x9f\x98\x80 caf\xc3\xa9");
	ROUNDTRIP("nul\0byte");
	/* every ASCII byte */
	char all[128];
	for (int i = 0; i < 128; i++)
		all[i] = (char)i;
	yaml_roundtrip(all, sizeof(all), all, sizeof(all));
	/* invalid UTF-8 comes back as U+FFFD */
	yaml_roundtrip("a\xff" "b", 3, "a\xef\xbf\xbd" "b", 5);
}

static void test_escape_html(void)
{
	struct buf b = {0};
	mustache_escape_html(&b, "<a href=\"x\">'&'</a>", 19, NULL);
	CHECK_STR(b.data, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
	buf_free(&b);
}

static void test_values(void)
{
	check_render("{{a}}|{{b}}|{{c}}|{{d}}|{{e}}|{{f}}",
		     "{\"a\": 1.21, \"b\": 85, \"c\": -3, \"d\": 0.1, \"e\": 1e21, \"f\": 2.0}",
		     "1.21|85|-3|0.1|1e+21|2");
	check_render("{{t}}|{{f}}|{{n}}|{{missing}}|{{{o}}}|{{{l}}}",
		     "{\"t\": true, \"f\": false, \"n\": null, \"o\": {\"k\": \"v\"}, \"l\": [1, \"x\"]}",
		     "true|false|||{\"k\":\"v\"}|[1,\"x\"]");
	/* truthiness: "", 0, 0.0 falsy; "0", {} truthy */
	check_render("{{#s}}S{{/s}}{{^s}}s{{/s}}{{#z}}Z{{/z}}{{^z}}z{{/z}}"
		     "{{#r}}R{{/r}}{{^r}}r{{/r}}{{#q}}Q{{/q}}{{#o}}O{{/o}}",
		     "{\"s\": \"\", \"z\": 0, \"r\": 0.0, \"q\": \"0\", \"o\": {}}", "szrQO");
	/* NULL context is an empty object */
	struct buf out = {0};
	CHECK_INT(mustache_render("[{{x}}]{{^x}}none{{/x}}", NULL, NULL, &out, NULL, 0), 0);
	CHECK_STR(out.data, "[]none");
	buf_free(&out);
	/* a kubefile-like template */
	check_render("env:\n{{#build_env}}\n  - name: {{name}}\n    value: \"{{value}}\"\n{{/build_env}}\n",
		     "{\"build_env\": [{\"name\": \"A\", \"value\": \"1\"}, {\"name\": \"B\", \"value\": \"x\"}]}",
		     "env:\n  - name: A\n    value: \"1\"\n  - name: B\n    value: \"x\"\n");
}

static void test_errors(void)
{
	check_error("a\n{{#list}}\nb\n", -EINVAL, "line 2: unclosed section 'list'");
	check_error("{{#a}}\n{{#b}}\n{{/a}}\n{{/b}}", -EINVAL,
		    "line 3: closing tag 'a' does not match section 'b' opened on line 2");
	check_error("x\ny\n{{/a}}", -EINVAL, "line 3: closing tag 'a' without an open section");
	check_error("line one\n{{name", -EINVAL, "line 2: unclosed tag '{{name'");
	check_error("{{{name}}", -EINVAL, "line 1: unclosed tag '{{{name}}'");
	check_error("\n\n{{=<% %}}", -EINVAL, "line 3: unclosed tag '{{=<% %}}'");
	check_error("{{=<%=}}", -EINVAL,
		    "line 1: invalid set delimiter tag '{{=<%=}}' (expected two delimiters "
		    "without whitespace or '=', at most 16 bytes each)");
	check_error("{{= a= b =}}", -EINVAL,
		    "line 1: invalid set delimiter tag '{{= a= b =}}' (expected two delimiters "
		    "without whitespace or '=', at most 16 bytes each)");
	check_error("{{}}", -EINVAL, "line 1: invalid tag name in '{{}}'");
	check_error("{{a b}}", -EINVAL, "line 1: invalid tag name in '{{a b}}'");
	check_error("{{a..b}}", -EINVAL, "line 1: invalid tag name in '{{a..b}}'");
	check_error("{{#}}{{/}}", -EINVAL, "line 1: invalid tag name in '{{#}}'");
	check_error("{{<parent}}{{/parent}}", -EINVAL,
		    "line 1: template inheritance ({{<...}}) is not supported");
	/* errors inside a partial name it */
	json_t *partials = json_pack("{s:s}", "p", "ok\n{{#x}}\n");
	struct mustache_opts opts = {.partial = spec_partial, .data = partials};
	struct buf out = {0};
	char err[256];
	CHECK_INT(mustache_render("a\n{{>p}}", NULL, &opts, &out, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "partial 'p': line 2: unclosed section 'x'");
	buf_free(&out);
	json_decref(partials);
}

static void test_limits(void)
{
	char err[256];
	struct buf out = {0};

	/* a partial that includes itself forever */
	json_t *partials = json_pack("{s:s}", "self", "x{{>self}}");
	struct mustache_opts opts = {.partial = spec_partial, .data = partials};
	CHECK_INT(mustache_render("{{>self}}", NULL, &opts, &out, err, sizeof(err)), -E2BIG);
	CHECK_STR(err, "partial 'self': line 1: partial 'self' nested deeper than 64 (recursive partial?)");
	CHECK_INT(out.len, 64); /* levels 1..64 rendered, the 65th refused */
	buf_reset(&out);
	opts.max_depth = 5;
	CHECK_INT(mustache_render("{{>self}}", NULL, &opts, &out, err, sizeof(err)), -E2BIG);
	CHECK_INT(out.len, 5);
	buf_free(&out);
	json_decref(partials);

	/* recursion through a standalone, indented partial over a deep context */
	partials = json_pack("{s:s}", "node", "{{name}}\n{{#kids}}\n  {{>node}}\n{{/kids}}\n");
	json_t *ctx = json_loads("{\"name\": \"a\", \"kids\": [{\"name\": \"b\", \"kids\": "
				 "[{\"name\": \"c\", \"kids\": []}]}, {\"name\": \"d\", \"kids\": []}]}", 0, NULL);
	opts = (struct mustache_opts){.partial = spec_partial, .data = partials};
	CHECK_INT(mustache_render("{{>node}}", ctx, &opts, &out, err, sizeof(err)), 0);
	CHECK_STR(out.data, "a\n  b\n    c\n  d\n");
	buf_free(&out);
	json_decref(ctx);
	json_decref(partials);

	/* exponential partials with no output are stopped by the step bound */
	partials = json_object();
	for (int i = 0; i < 40; i++) {
		char name[16], text[64];
		snprintf(name, sizeof(name), "p%d", i);
		snprintf(text, sizeof(text), "{{>p%d}}{{>p%d}}", i + 1, i + 1);
		json_object_set_new(partials, name, json_string(text));
	}
	opts = (struct mustache_opts){.partial = spec_partial, .data = partials, .max_steps = 100000};
	CHECK_INT(mustache_render("{{>p0}}", NULL, &opts, &out, err, sizeof(err)), -E2BIG);
	CHECK(strstr(err, "more than 100000 steps") != NULL);
	buf_free(&out);
	json_decref(partials);

	/* nested loops that render nothing */
	ctx = json_loads("{\"l\": [1,2,3,4,5,6,7,8,9,10]}", 0, NULL);
	opts = (struct mustache_opts){.max_steps = 10000};
	CHECK_INT(mustache_render("{{#l}}{{#l}}{{#l}}{{#l}}{{#l}}{{/l}}{{/l}}{{/l}}{{/l}}{{/l}}",
				  ctx, &opts, &out, err, sizeof(err)), -E2BIG);
	buf_free(&out);

	/* output bound */
	opts = (struct mustache_opts){.max_output = 25};
	CHECK_INT(mustache_render("{{#l}}abc{{/l}}", ctx, &opts, &out, err, sizeof(err)), -E2BIG);
	CHECK_STR(err, "line 1: output larger than 25 bytes");
	CHECK(out.len <= 25);
	buf_free(&out);
	opts.max_output = 30;
	CHECK_INT(mustache_render("{{#l}}abc{{/l}}", ctx, &opts, &out, err, sizeof(err)), 0);
	CHECK_INT(out.len, 30);
	buf_free(&out);
	json_decref(ctx);

	/* section nesting bound at parse time */
	struct buf deep = {0};
	for (int i = 0; i < 100; i++)
		buf_append_str(&deep, "{{#a}}");
	for (int i = 0; i < 100; i++)
		buf_append_str(&deep, "{{/a}}");
	CHECK_INT(mustache_render(deep.data, NULL, NULL, &out, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "line 1: sections nested deeper than 64");
	buf_free(&out);
	buf_free(&deep);
}

static void test_appends(void)
{
	/* output is appended to what the buffer holds */
	struct buf out = {0};
	buf_append_str(&out, "head:");
	json_t *ctx = json_pack("{s:s}", "x", "<y>");
	CHECK_INT(mustache_render("{{x}}", ctx, NULL, &out, NULL, 0), 0);
	CHECK_STR(out.data, "head:&lt;y&gt;");
	struct mustache_opts opts = {.max_output = 3};
	CHECK_INT(mustache_render("{{{x}}}", ctx, &opts, &out, NULL, 0), 0);
	CHECK_STR(out.data, "head:&lt;y&gt;<y>");
	buf_free(&out);
	json_decref(ctx);
}

int main(void)
{
	RUN(test_spec);
	RUN(test_escape_yaml_dq);
	RUN(test_escape_yaml_roundtrip);
	RUN(test_escape_html);
	RUN(test_values);
	RUN(test_errors);
	RUN(test_limits);
	RUN(test_appends);
	return UNIT_DONE();
}
