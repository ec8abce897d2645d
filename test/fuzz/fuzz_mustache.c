/* libFuzzer target: the Mustache renderer, two ways.
 *
 * Read-back (first byte even): the rest of the input is a value v. It is
 * rendered with the kubefiles' escaping (mustache_escape_yaml_dq) into
 * double-quoted YAML scalars in several places (a mapping value, within a
 * longer string, a flow mapping, a block sequence from a section, a nested
 * mapping, a key), the YAML is parsed back (yaml_json) and must be exactly
 * the document built directly from v: the value reads back unchanged and
 * never changes the structure. Context values are JSON strings, so valid
 * UTF-8: v goes in with each invalid byte replaced by U+FFFD, and the
 * escaper is also run on the raw bytes, which must read back the same way
 * (mustache.h: invalid bytes become U+FFFD).
 *
 * Templates (first byte odd): the rest is a template rendered against a
 * fixed context with partials (one of them recursive), with HTML and with
 * YAML escaping, under small limits: any result is fine; a crash, a leak,
 * undefined behaviour, an unknown error code or output beyond the limit is
 * not. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mustache.h"
#include "util.h"
#include "yaml_json.h"

static const char READBACK_TEMPLATE[] =
	"plain: \"{{v}}\"\n"
	"inside: \"<{{v}}>{{v}}\"\n"
	"flow: {a: \"{{v}}\", b: [\"{{v}}\", 1]}\n"
	"list:\n"
	"{{#items}}\n"
	"  - \"{{.}}\"\n"
	"{{/items}}\n"
	"nested:\n"
	"  deeper:\n"
	"    value: \"{{v}}\" # a comment\n"
	"    after: 1\n";

static const char KEY_TEMPLATE[] = "\"{{v}}\": key\n";

/* Length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0], min, cp;
	size_t len;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0)
		len = 2, min = 0x80, cp = c & 0x1f;
	else if ((c & 0xf0) == 0xe0)
		len = 3, min = 0x800, cp = c & 0x0f;
	else if ((c & 0xf8) == 0xf0)
		len = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* v with each byte that does not start a valid UTF-8 sequence replaced by
 * U+FFFD, as a new JSON string. */
static json_t *valid_form(const uint8_t *v, size_t n)
{
	struct buf b = {0};
	for (size_t i = 0; i < n;) {
		size_t l = utf8_len(v + i, n - i);
		buf_append(&b, l ? (const char *)v + i : "\xef\xbf\xbd", l ? l : 3);
		i += l ? l : 1;
	}
	json_t *s = json_stringn(b.data ? b.data : "", b.len);
	buf_free(&b);
	if (!s)
		abort();
	return s;
}

/* Renders tmpl over ctx with the YAML escaping, parses it back and aborts
 * unless it equals want. */
static void expect_readback(const char *tmpl, json_t *ctx, json_t *want)
{
	struct mustache_opts opts = {.escape = mustache_escape_yaml_dq, .max_output = 1 << 22};
	struct buf out = {0};
	char err[256];
	if (mustache_render(tmpl, ctx, &opts, &out, err, sizeof err) != 0) {
		fprintf(stderr, "read-back: render failed: %s\n", err);
		abort();
	}
	json_t *got = yaml_json_parse_one(out.data, out.len, err, sizeof err);
	if (!got || !json_equal(got, want)) {
		char *g = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL;
		char *w = json_dumps(want, JSON_ENCODE_ANY);
		fprintf(stderr, "read-back mismatch\n  got:  %s\n  want: %s\n  yaml:\n%.*s\n",
			g ? g : err, w, (int)out.len, out.data);
		abort();
	}
	json_decref(got);
	buf_free(&out);
}

static void readback(const uint8_t *v, size_t n)
{
	json_t *s = valid_form(v, n);
	const char *sv = json_string_value(s);
	size_t sl = json_string_length(s);
	json_t *ctx = json_pack("{s:O, s:[O, O]}", "v", s, "items", s, s);

	struct buf inside = {0};
	buf_append(&inside, "<", 1);
	buf_append(&inside, sv, sl);
	buf_append(&inside, ">", 1);
	buf_append(&inside, sv, sl);
	json_t *want = json_pack("{s:O, s:s%, s:{s:O, s:[O, i]}, s:[O, O], s:{s:{s:O, s:i}}}",
				 "plain", s, "inside", inside.data, inside.len, "flow", "a", s, "b",
				 s, 1, "list", s, s, "nested", "deeper", "value", s, "after", 1);
	buf_free(&inside);
	if (!want)
		abort();
	expect_readback(READBACK_TEMPLATE, ctx, want);
	json_decref(want);

	/* as a key (compared by hand: json_equal looks keys up as C strings,
	 * so it cannot compare keys holding a NUL) */
	struct mustache_opts opts = {.escape = mustache_escape_yaml_dq};
	struct buf out = {0};
	char err[256];
	if (mustache_render(KEY_TEMPLATE, ctx, &opts, &out, err, sizeof err) != 0)
		abort();
	json_t *got = yaml_json_parse_one(out.data, out.len, err, sizeof err);
	const char *k = NULL;
	size_t kl = 0;
	json_t *kv = NULL;
	void *it = got ? json_object_iter(got) : NULL;
	if (it) {
		k = json_object_iter_key(it);
		kl = json_object_iter_key_len(it);
		kv = json_object_iter_value(it);
	}
	if (!got || json_object_size(got) != 1 || kl != sl || memcmp(k, sv, sl) != 0 ||
	    !json_is_string(kv) || strcmp(json_string_value(kv), "key") != 0) {
		fprintf(stderr, "read-back of a key: mismatch (%s)\n%.*s\n", got ? "" : err,
			(int)out.len, out.data);
		abort();
	}
	json_decref(got);
	buf_reset(&out);
	json_decref(ctx);

	/* the escaper on the raw bytes, invalid UTF-8 included */
	buf_append(&out, "k: \"", 4);
	mustache_escape_yaml_dq(&out, (const char *)v, n, NULL);
	buf_append(&out, "\"\n", 2);
	got = yaml_json_parse_one(out.data, out.len, err, sizeof err);
	if (!got || json_object_size(got) != 1 || !json_equal(json_object_get(got, "k"), s)) {
		fprintf(stderr, "escaped raw bytes do not read back: %s\n%.*s\n", got ? "" : err,
			(int)out.len, out.data);
		abort();
	}
	json_decref(got);
	buf_free(&out);
	json_decref(s);
}

static const char *on_partial(const char *name, void *data)
{
	(void)data;
	if (strcmp(name, "p") == 0)
		return "[{{name}}]";
	if (strcmp(name, "rec") == 0)
		return "{{#list}}{{> rec}}{{/list}}";
	if (strcmp(name, "indent") == 0)
		return "a\n  {{x}}\nb\n";
	return NULL;
}

static void templates(const uint8_t *t, size_t n)
{
	char *tmpl = xstrndup((const char *)t, n); /* a NUL ends the template */
	json_t *ctx = json_pack("{s:s, s:i, s:f, s:b, s:n, s:[i, s, {s:s}], s:{s:{s:s}}, s:[], s:{}}",
				"name", "<a & \"b\">\n", "x", 42, "f", 1.5, "t", 1, "z", "list",
				1, "two", "name", "inner", "o", "p", "q", "deep", "empty", "eo");
	if (!ctx)
		abort();
	for (int pass = 0; pass < 2; pass++) {
		struct mustache_opts opts = {
			.partial = on_partial,
			.escape = pass ? mustache_escape_yaml_dq : NULL,
			.max_depth = 16,
			.max_output = 1 << 16,
			.max_steps = 20000,
		};
		struct buf out = {0};
		char err[256] = "";
		int rc = mustache_render(tmpl, ctx, &opts, &out, err, sizeof err);
		if (rc != 0 && rc != -EINVAL && rc != -E2BIG)
			abort();
		if (out.len > opts.max_output)
			abort();
		if (rc == -EINVAL && !err[0])
			abort(); /* a template error always says what */
		buf_free(&out);
	}
	json_decref(ctx);
	free(tmpl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		templates(data + 1, size - 1);
	else
		readback(data + 1, size - 1);
	return 0;
}
