/* Mustache templates rendered over jansson values: the required parts of the
 * Mustache spec (interpolation, sections, inverted sections, partials with
 * standalone indentation, comments, set delimiters). Lambdas and the optional
 * modules (dynamic names, inheritance) are not supported.
 *
 * Values: strings as they are, integers in decimal, reals in the shortest form
 * that reads back the same ("1.21"), true/false as words, null and missing
 * names as nothing, arrays and objects as compact JSON.
 *
 * Truthiness (the spec's `!!data`, read as JavaScript does): false, null, a
 * missing name, "", 0, 0.0 and the empty array are falsy; everything else,
 * including "0" and the empty object, is truthy. A section over an array is
 * repeated for each element. */
#ifndef RUNBOAT_MUSTACHE_H
#define RUNBOAT_MUSTACHE_H

#include <jansson.h>
#include <stddef.h>

#include "util.h"

/* Returns the text of partial `name` (borrowed, valid until the render ends,
 * NUL-terminated), or NULL if there is no such partial: it renders as
 * nothing, as the spec says. */
typedef const char *(*mustache_partial_cb)(const char *name, void *data);
/* Appends s[0..len) to out, escaped for where `{{name}}` tags are rendered. */
typedef void (*mustache_escape_cb)(struct buf *out, const char *s, size_t len, void *data);

#define MUSTACHE_DEFAULT_MAX_DEPTH 64
#define MUSTACHE_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)
#define MUSTACHE_DEFAULT_MAX_STEPS ((size_t)10000000)

struct mustache_opts {
	mustache_partial_cb partial; /* NULL: no partials */
	mustache_escape_cb escape;   /* NULL: mustache_escape_html */
	void *data;                  /* passed to both callbacks */
	int max_depth;     /* nested sections + partials; <= 0: MUSTACHE_DEFAULT_MAX_DEPTH */
	size_t max_output; /* bytes appended to out; 0: MUSTACHE_DEFAULT_MAX_OUTPUT */
	size_t max_steps;  /* tags and text runs rendered (bounds loops that emit
			    * nothing); 0: MUSTACHE_DEFAULT_MAX_STEPS */
};

/* Renders tmpl against context (borrowed; any JSON value, the bottom of the
 * context stack; NULL is taken as an empty object) and appends the result to
 * out. opts may be NULL (HTML escaping, no partials, default limits).
 * Returns 0; -EINVAL on a template error (unclosed tag or section, mismatched
 * closing tag, bad delimiters, empty or malformed tag name, unsupported tag),
 * with "line N: message" in err (prefixed by "partial 'name': " when the error
 * is inside a partial); -E2BIG when max_depth, max_output or max_steps is
 * exceeded. On error out may hold part of the output. err may be NULL. */
int mustache_render(const char *tmpl, json_t *context, const struct mustache_opts *opts,
		    struct buf *out, char *err, size_t errlen);

/* HTML escaping, the spec's default: & < > " and ' become entities. */
void mustache_escape_html(struct buf *out, const char *s, size_t len, void *data);

/* Escaping for the inside of a YAML double-quoted scalar: \ and " are
 * backslash-escaped, line breaks and tabs become \n \r \t, other control
 * characters \xNN, and U+0085, U+2028, U+2029 (YAML line breaks), the C1
 * controls, U+FEFF, U+FFFE and U+FFFF \uNNNN; bytes that are not valid UTF-8
 * become \uFFFD. The value can thus never end the scalar nor add a line. */
void mustache_escape_yaml_dq(struct buf *out, const char *s, size_t len, void *data);

#endif
