/* YAML to JSON: libyaml's event stream is folded into jansson values with a
 * stack of open collections. Every node produced counts towards a budget, an
 * alias counting as many nodes as the anchored node holds, so that alias
 * bombs are refused before they are expanded. */
#include "yaml_json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util.h"

#define TAG_PREFIX "tag:yaml.org,2002:"

struct anchor {
	char *name;
	json_t *value; /* a reference to the anchored node */
	size_t count;  /* nodes in it */
	int height;    /* nesting levels in it: 0 for a scalar */
};

struct frame {
	json_t *node; /* borrowed: its parent (or the loader) holds it */
	bool is_map;
	bool have_key, merge_key;
	char *key; /* owned, pending key of a mapping */
	size_t key_len;
	json_t *merges; /* owned: "<<" values to merge at the end, or NULL */
	char *anchor;   /* owned, or NULL */
	size_t start_count;
	int maxh; /* highest child */
	yaml_mark_t mark;
};

struct loader {
	yaml_parser_t parser;
	const char *data;
	size_t len;
	json_t *docs;
	json_t *root; /* owned: the current document's root */
	bool root_empty;
	struct frame frames[YAML_JSON_MAX_DEPTH];
	int depth;
	struct anchor *anchors;
	size_t nanchors, capanchors;
	json_t *anchor_index; /* name -> index in anchors */
	size_t count;
	char *err;
	size_t errlen;
};

static int fail_at(struct loader *l, yaml_mark_t mark, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail_at(struct loader *l, yaml_mark_t mark, const char *fmt, ...)
{
	if (!l->err || !l->errlen)
		return -EINVAL;
	int n = snprintf(l->err, l->errlen, "line %zu, column %zu: ", mark.line + 1,
			 mark.column + 1);
	if (n < 0 || (size_t)n >= l->errlen)
		return -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void parser_error(struct loader *l)
{
	yaml_parser_t *p = &l->parser;
	const char *problem = p->problem ? p->problem : "unknown error";
	if (p->error == YAML_MEMORY_ERROR) {
		snprintf(l->err, l->errlen, "out of memory");
	} else if (p->error == YAML_READER_ERROR) {
		/* only a byte offset is known: count lines up to it */
		yaml_mark_t mark = {0};
		for (size_t i = 0; i < p->problem_offset && i < l->len; i++) {
			if (l->data[i] == '\n') {
				mark.line++;
				mark.column = 0;
			} else {
				mark.column++;
			}
		}
		if (p->problem_value != -1)
			fail_at(l, mark, "%s (byte 0x%02X)", problem, (unsigned)p->problem_value);
		else
			fail_at(l, mark, "%s", problem);
	} else if (p->context) {
		fail_at(l, p->problem_mark, "%s (%s at line %zu, column %zu)", problem, p->context,
			p->context_mark.line + 1, p->context_mark.column + 1);
	} else {
		fail_at(l, p->problem_mark, "%s", problem);
	}
}

/* --- anchors --- */

static void anchors_reset(struct loader *l)
{
	for (size_t i = 0; i < l->nanchors; i++) {
		free(l->anchors[i].name);
		json_decref(l->anchors[i].value);
	}
	l->nanchors = 0;
	json_object_clear(l->anchor_index);
}

static void anchor_add(struct loader *l, const char *name, json_t *value, size_t count,
		       int height)
{
	if (l->nanchors == l->capanchors) {
		l->capanchors = l->capanchors ? l->capanchors * 2 : 16;
		l->anchors = xrealloc(l->anchors, l->capanchors * sizeof(*l->anchors));
	}
	l->anchors[l->nanchors] = (struct anchor){
		.name = xstrdup(name), .value = json_incref(value), .count = count, .height = height,
	};
	/* a name defined again refers to the latest node */
	json_object_set_new(l->anchor_index, name, json_integer((json_int_t)l->nanchors));
	l->nanchors++;
}

static int anchor_find(struct loader *l, const char *name, yaml_mark_t mark,
		       struct anchor **out)
{
	json_t *i = json_object_get(l->anchor_index, name);
	if (i) {
		*out = &l->anchors[json_integer_value(i)];
		return 0;
	}
	for (int d = 0; d < l->depth; d++) {
		if (l->frames[d].anchor && strcmp(l->frames[d].anchor, name) == 0)
			return fail_at(l, mark, "alias '*%s' refers to a node that contains it",
				       name);
	}
	return fail_at(l, mark, "unknown anchor '*%s'", name);
}

/* --- scalars --- */

static bool span_is(const char *s, size_t len, const char *const *words)
{
	for (; *words; words++)
		if (strlen(*words) == len && memcmp(*words, s, len) == 0)
			return true;
	return false;
}

static const char *const NULL_WORDS[] = {"~", "null", "Null", "NULL", NULL};
static const char *const TRUE_WORDS[] = {"true", "True", "TRUE", NULL};
static const char *const FALSE_WORDS[] = {"false", "False", "FALSE", NULL};
static const char *const INF_WORDS[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
					 "-.inf", "-.Inf", "-.INF", NULL};
static const char *const NAN_WORDS[] = {".nan", ".NaN", ".NAN", NULL};

/* The value of a digit of any base up to 16; 99 for anything else. */
static int digit_value(char c)
{
	int v = hex_digit(c);
	return v < 0 ? 99 : v;
}

/* [-+]? then 0x hex, 0o octal, 0b binary, 0 followed by octal digits
 * (go-yaml's octal), or decimal. Returns 0, -EINVAL when s is not an
 * integer, -ERANGE when it does not fit in json_int_t. */
static int parse_int(const char *s, size_t len, json_int_t *out)
{
	size_t i = 0;
	bool neg = false;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		neg = s[i++] == '-';
	unsigned base = 10;
	if (len - i > 2 && s[i] == '0') {
		char x = s[i + 1];
		if (x == 'x' || x == 'X')
			base = 16;
		else if (x == 'o' || x == 'O')
			base = 8;
		else if (x == 'b' || x == 'B')
			base = 2;
		if (base != 10)
			i += 2;
	}
	if (i >= len)
		return -EINVAL;
	if (base == 10 && s[i] == '0' && len - i > 1) {
		base = 8;
		for (size_t j = i; j < len; j++)
			if (s[j] < '0' || s[j] > '7')
				base = 10;
	}
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t v = 0;
	bool overflow = false;
	for (; i < len; i++) {
		unsigned d = (unsigned)digit_value(s[i]);
		if (d >= base)
			return -EINVAL;
		if (v > (limit - d) / base)
			overflow = true;
		else
			v = v * base + d;
	}
	if (overflow)
		return -ERANGE;
	*out = neg ? (json_int_t)(0 - v) : (json_int_t)v;
	return 0;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_float(const char *s, size_t len)
{
	size_t i = 0, digits = 0;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++, digits++;
	if (i < len && s[i] == '.') {
		i++;
		size_t frac = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, frac++;
		if (digits == 0 && frac == 0)
			return false;
	} else if (digits == 0) {
		return false;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		size_t exp = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, exp++;
		if (exp == 0)
			return false;
	}
	return i == len;
}

/* A finite double as JSON: whole values that fit become integers, as Go's
 * encoding/json prints them. */
static json_t *number_json(double d)
{
	if (d == trunc(d) && d >= -9.2e18 && d <= 9.2e18)
		return json_integer((json_int_t)d);
	return json_real(d);
}

static int make_int(struct loader *l, const yaml_event_t *e, const char *s, size_t len,
		    json_t **out)
{
	json_int_t v;
	int rc = parse_int(s, len, &v);
	if (rc == -ERANGE)
		return fail_at(l, e->start_mark, "integer '%.*s' out of range", (int)len, s);
	if (rc < 0)
		return rc;
	*out = json_integer(v);
	return 0;
}

static int make_float(struct loader *l, const yaml_event_t *e, const char *s, size_t len,
		      json_t **out)
{
	if (span_is(s, len, INF_WORDS) || span_is(s, len, NAN_WORDS))
		return fail_at(l, e->start_mark, "'%.*s' cannot be represented in JSON", (int)len, s);
	if (!is_float(s, len))
		return -EINVAL;
	/* libyaml NUL-terminates scalar values */
	double d = strtod(s, NULL);
	if (!isfinite(d))
		return fail_at(l, e->start_mark, "number '%.*s' out of range", (int)len, s);
	*out = number_json(d);
	return 0;
}

/* The plain, untagged scalar s resolved per the core schema. */
static int resolve_plain(struct loader *l, const yaml_event_t *e, const char *s, size_t len,
			 json_t **out)
{
	if (len == 0 || span_is(s, len, NULL_WORDS)) {
		*out = json_null();
		return 0;
	}
	if (span_is(s, len, TRUE_WORDS)) {
		*out = json_true();
		return 0;
	}
	if (span_is(s, len, FALSE_WORDS)) {
		*out = json_false();
		return 0;
	}
	if ((s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '+' || s[0] == '.') {
		int rc = make_int(l, e, s, len, out);
		if (rc != -EINVAL || l->err[0])
			return rc;
		rc = make_float(l, e, s, len, out);
		if (rc != -EINVAL || l->err[0])
			return rc;
	}
	*out = json_stringn(s, len);
	return *out ? 0 : fail_at(l, e->start_mark, "invalid UTF-8 in scalar");
}

static int scalar_json(struct loader *l, const yaml_event_t *e, json_t **out)
{
	const char *s = (const char *)e->data.scalar.value;
	size_t len = e->data.scalar.length;
	const char *tag = (const char *)e->data.scalar.tag;
	*out = NULL;
	if (!tag && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		return resolve_plain(l, e, s, len, out);
	const char *t = tag && str_starts_with(tag, TAG_PREFIX) ? tag + strlen(TAG_PREFIX) : NULL;
	if (!tag || strcmp(tag, "!") == 0 || (t && (strcmp(t, "str") == 0 || strcmp(t, "binary") == 0))) {
		*out = json_stringn(s, len);
		return *out ? 0 : fail_at(l, e->start_mark, "invalid UTF-8 in scalar");
	}
	if (t && strcmp(t, "null") == 0) {
		if (len && !span_is(s, len, NULL_WORDS))
			return fail_at(l, e->start_mark, "'%.*s' is not a valid !!null", (int)len, s);
		*out = json_null();
		return 0;
	}
	if (t && strcmp(t, "bool") == 0) {
		if (span_is(s, len, TRUE_WORDS))
			*out = json_true();
		else if (span_is(s, len, FALSE_WORDS))
			*out = json_false();
		else
			return fail_at(l, e->start_mark, "'%.*s' is not a valid !!bool", (int)len, s);
		return 0;
	}
	if (t && strcmp(t, "int") == 0) {
		int rc = make_int(l, e, s, len, out);
		if (rc == -EINVAL && !l->err[0])
			return fail_at(l, e->start_mark, "'%.*s' is not a valid !!int", (int)len, s);
		return rc;
	}
	if (t && strcmp(t, "float") == 0) {
		json_int_t v;
		if (parse_int(s, len, &v) == 0) {
			*out = json_integer(v);
			return 0;
		}
		int rc = make_float(l, e, s, len, out);
		if (rc == -EINVAL && !l->err[0])
			return fail_at(l, e->start_mark, "'%.*s' is not a valid !!float", (int)len, s);
		return rc;
	}
	return fail_at(l, e->start_mark, "unsupported tag '%s'", tag);
}

/* --- the tree --- */

static int count_nodes(struct loader *l, yaml_mark_t mark, size_t n)
{
	if (n > YAML_JSON_MAX_NODES - l->count)
		return fail_at(l, mark, "document expands to more than %d nodes (alias bomb?)",
			       YAML_JSON_MAX_NODES);
	l->count += n;
	return 0;
}

/* Places v (owned) where the parser is: document root, sequence item or
 * value of the pending key. */
static int add_value(struct loader *l, json_t *v, int height, yaml_mark_t mark)
{
	if (l->depth == 0) {
		l->root = v;
		return 0;
	}
	struct frame *f = &l->frames[l->depth - 1];
	if (height > f->maxh)
		f->maxh = height;
	if (!f->is_map) {
		json_array_append_new(f->node, v);
		return 0;
	}
	int rc = 0;
	if (f->merge_key) {
		if (!f->merges)
			f->merges = json_array();
		json_array_append_new(f->merges, v);
	} else if (json_object_setn_new(f->node, f->key, f->key_len, v) < 0) {
		rc = fail_at(l, mark, "invalid mapping key");
	}
	free(f->key);
	f->key = NULL;
	f->have_key = f->merge_key = false;
	return rc;
}

static int set_key(struct loader *l, const char *key, size_t len, bool merge, yaml_mark_t mark)
{
	struct frame *f = &l->frames[l->depth - 1];
	if (!merge && json_object_getn(f->node, key, len))
		return fail_at(l, mark, "duplicate key '%.*s'", (int)(len > 100 ? 100 : len), key);
	f->key = xstrndup(key, len);
	f->key_len = len;
	f->have_key = true;
	f->merge_key = merge;
	return 0;
}

static bool expecting_key(struct loader *l)
{
	return l->depth > 0 && l->frames[l->depth - 1].is_map && !l->frames[l->depth - 1].have_key;
}

static int on_scalar(struct loader *l, const yaml_event_t *e)
{
	const char *anchor = (const char *)e->data.scalar.anchor;
	int rc = count_nodes(l, e->start_mark, 1);
	if (rc < 0)
		return rc;
	if (expecting_key(l)) {
		const char *s = (const char *)e->data.scalar.value;
		size_t len = e->data.scalar.length;
		bool merge = !e->data.scalar.tag && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
			     len == 2 && memcmp(s, "<<", 2) == 0;
		if (anchor) {
			json_t *k = json_stringn(s, len);
			if (!k)
				return fail_at(l, e->start_mark, "invalid UTF-8 in key");
			anchor_add(l, anchor, k, 1, 0);
			json_decref(k);
		}
		return set_key(l, s, len, merge, e->start_mark);
	}
	json_t *v;
	rc = scalar_json(l, e, &v);
	if (rc < 0)
		return rc;
	if (l->depth == 0)
		l->root_empty = e->data.scalar.length == 0 && !e->data.scalar.tag && !anchor &&
				e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	if (anchor)
		anchor_add(l, anchor, v, 1, 0);
	return add_value(l, v, 0, e->start_mark);
}

/* A scalar value used as a key, as text. */
static char *key_text(json_t *v)
{
	char num[40];
	switch (json_typeof(v)) {
	case JSON_STRING:
		return xstrndup(json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return xstrdup(num);
	case JSON_REAL:
		snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return xstrdup(num);
	case JSON_TRUE:
		return xstrdup("true");
	case JSON_FALSE:
		return xstrdup("false");
	case JSON_NULL:
		return xstrdup("null");
	default:
		return NULL;
	}
}

static int on_alias(struct loader *l, const yaml_event_t *e)
{
	struct anchor *a = NULL;
	int rc = anchor_find(l, (const char *)e->data.alias.anchor, e->start_mark, &a);
	if (rc < 0)
		return rc;
	if (expecting_key(l)) {
		char *k = key_text(a->value);
		if (!k)
			return fail_at(l, e->start_mark, "mapping keys must be scalars");
		rc = count_nodes(l, e->start_mark, 1);
		if (rc == 0)
			rc = set_key(l, k, strlen(k), false, e->start_mark);
		free(k);
		return rc;
	}
	if (l->depth + a->height > YAML_JSON_MAX_DEPTH)
		return fail_at(l, e->start_mark, "nesting deeper than %d levels", YAML_JSON_MAX_DEPTH);
	rc = count_nodes(l, e->start_mark, a->count);
	if (rc < 0)
		return rc;
	/* a copy: callers may change one place without changing the other */
	return add_value(l, json_deep_copy(a->value), a->height, e->start_mark);
}

static int on_collection_start(struct loader *l, const yaml_event_t *e, bool is_map)
{
	const char *tag = (const char *)(is_map ? e->data.mapping_start.tag
						: e->data.sequence_start.tag);
	const char *anchor = (const char *)(is_map ? e->data.mapping_start.anchor
						   : e->data.sequence_start.anchor);
	if (expecting_key(l))
		return fail_at(l, e->start_mark, "mapping keys must be scalars");
	if (tag && strcmp(tag, "!") != 0 &&
	    strcmp(tag, is_map ? TAG_PREFIX "map" : TAG_PREFIX "seq") != 0)
		return fail_at(l, e->start_mark, "unsupported tag '%s' on a %s", tag,
			       is_map ? "mapping" : "sequence");
	if (l->depth >= YAML_JSON_MAX_DEPTH)
		return fail_at(l, e->start_mark, "nesting deeper than %d levels", YAML_JSON_MAX_DEPTH);
	int rc = count_nodes(l, e->start_mark, 1);
	if (rc < 0)
		return rc;
	json_t *node = is_map ? json_object() : json_array();
	rc = add_value(l, node, 0, e->start_mark);
	if (rc < 0)
		return rc;
	if (l->depth == 0)
		l->root_empty = false;
	l->frames[l->depth++] = (struct frame){
		.node = node,
		.is_map = is_map,
		.anchor = anchor ? xstrdup(anchor) : NULL,
		.start_count = l->count - 1,
		.mark = e->start_mark,
	};
	return 0;
}

/* Adds the keys of every "<<" mapping that the mapping does not set itself;
 * of several merged mappings, the first wins. */
static int apply_merges(struct loader *l, struct frame *f)
{
	size_t i;
	json_t *m;
	json_array_foreach(f->merges, i, m) {
		size_t n = json_is_array(m) ? json_array_size(m) : 1;
		for (size_t j = 0; j < n; j++) {
			json_t *src = json_is_array(m) ? json_array_get(m, j) : m;
			if (!json_is_object(src))
				return fail_at(l, f->mark, "the value of a '<<' merge key must be a "
						       "mapping or a sequence of mappings");
			const char *k;
			size_t klen;
			json_t *v;
			json_object_keylen_foreach(src, k, klen, v) {
				if (!json_object_getn(f->node, k, klen))
					json_object_setn(f->node, k, klen, v);
			}
		}
	}
	return 0;
}

static void frame_clear(struct frame *f)
{
	free(f->key);
	free(f->anchor);
	json_decref(f->merges);
	*f = (struct frame){0};
}

static int on_collection_end(struct loader *l)
{
	struct frame *f = &l->frames[l->depth - 1];
	int rc = 0;
	if (f->merges)
		rc = apply_merges(l, f);
	int height = f->maxh + 1;
	if (rc == 0 && f->anchor)
		anchor_add(l, f->anchor, f->node, l->count - f->start_count, height);
	frame_clear(f);
	l->depth--;
	if (l->depth > 0 && height > l->frames[l->depth - 1].maxh)
		l->frames[l->depth - 1].maxh = height;
	return rc;
}

static int on_event(struct loader *l, const yaml_event_t *e)
{
	switch (e->type) {
	case YAML_DOCUMENT_START_EVENT:
		anchors_reset(l);
		l->root = NULL;
		l->root_empty = false;
		return 0;
	case YAML_DOCUMENT_END_EVENT:
		if (l->root && !l->root_empty)
			json_array_append_new(l->docs, l->root);
		else
			json_decref(l->root);
		l->root = NULL;
		anchors_reset(l);
		return 0;
	case YAML_SCALAR_EVENT:
		return on_scalar(l, e);
	case YAML_ALIAS_EVENT:
		return on_alias(l, e);
	case YAML_SEQUENCE_START_EVENT:
		return on_collection_start(l, e, false);
	case YAML_MAPPING_START_EVENT:
		return on_collection_start(l, e, true);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return on_collection_end(l);
	default:
		return 0;
	}
}

json_t *yaml_json_parse_stream(const char *data, size_t len, char *err, size_t errlen)
{
	char dummy[8];
	struct loader *l = xcalloc(1, sizeof(*l));
	if (!data) {
		data = "";
		len = 0;
	}
	l->data = data;
	l->len = len;
	l->err = err && errlen ? err : dummy;
	l->errlen = err && errlen ? errlen : sizeof(dummy);
	l->err[0] = '\0';
	l->docs = json_array();
	l->anchor_index = json_object();
	if (!yaml_parser_initialize(&l->parser)) {
		snprintf(l->err, l->errlen, "out of memory");
		json_decref(l->docs);
		json_decref(l->anchor_index);
		free(l);
		return NULL;
	}
	yaml_parser_set_input_string(&l->parser, (const unsigned char *)data, len);
	json_t *result = l->docs;
	for (;;) {
		yaml_event_t e;
		if (!yaml_parser_parse(&l->parser, &e)) {
			parser_error(l);
			goto fail;
		}
		int rc = on_event(l, &e);
		bool end = e.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&e);
		if (rc < 0) {
			if (!l->err[0])
				snprintf(l->err, l->errlen, "invalid YAML");
			goto fail;
		}
		if (end)
			break;
	}
	goto done;
fail:
	json_decref(l->docs);
	result = NULL;
done:
	while (l->depth > 0)
		frame_clear(&l->frames[--l->depth]);
	json_decref(l->root);
	anchors_reset(l);
	free(l->anchors);
	json_decref(l->anchor_index);
	yaml_parser_delete(&l->parser);
	free(l);
	return result;
}

json_t *yaml_json_parse_one(const char *data, size_t len, char *err, size_t errlen)
{
	json_t *docs = yaml_json_parse_stream(data, len, err, errlen);
	if (!docs)
		return NULL;
	json_t *doc = NULL;
	if (json_array_size(docs) == 1)
		doc = json_incref(json_array_get(docs, 0));
	else if (err && errlen)
		snprintf(err, errlen, json_array_size(docs) == 0
			 ? "no YAML document (the input is empty)"
			 : "expected one YAML document, found %zu", json_array_size(docs));
	json_decref(docs);
	return doc;
}
