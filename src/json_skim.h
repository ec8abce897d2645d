/* Walking JSON text without building values: for reading a few members of
 * large documents (the pages of a list: kube.c reads their metadata,
 * informer.c the parts of each item its cache keeps) and parsing only those
 * with jansson. What is skipped is checked against the JSON grammar as it
 * is passed over (strings and their escapes, numbers, literals, commas and
 * colons, nesting up to JSON_SKIM_MAX_DEPTH levels), never read past the
 * end of the text, and never decoded (its strings' UTF-8 is not checked).
 * Errors are -EPROTO. Pure functions, no allocation. */
#ifndef RUNBOAT_JSON_SKIM_H
#define RUNBOAT_JSON_SKIM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define JSON_SKIM_MAX_DEPTH 512

/* The members of an object or the elements of an array, one at a time. */
struct json_skim {
	const char *s;
	size_t len, pos;
	char close;  /* '}' or ']' */
	bool first;  /* no member read yet */
	bool done;
};

/* Starts walking the object (open '{') or array (open '[') that text (len
 * bytes) holds, after optional whitespace. Returns 0, or -EPROTO if it does
 * not start so. */
int json_skim_open(struct json_skim *it, const char *text, size_t len, char open);

/* The next member of an object: its key as written (between the quotes,
 * escapes not decoded; *escaped tells whether it has any) and its value's
 * text (*val, *vlen: from its first to its last byte). Returns 1, 0 after
 * the last member (and the closing brace must end the text but for
 * whitespace), or -EPROTO. */
int json_skim_member(struct json_skim *it, const char **key, size_t *klen, bool *escaped,
		     const char **val, size_t *vlen);

/* The next element of an array: its text. Returns 1, 0 after the last, or
 * -EPROTO (as json_skim_member). */
int json_skim_element(struct json_skim *it, const char **val, size_t *vlen);

/* Whether a key from json_skim_member is name: compared as written, or
 * decoded first when it has escapes. */
bool json_skim_key_is(const char *key, size_t klen, bool escaped, const char *name);

/* A new string (jansson) of a key from json_skim_member, decoded, or NULL
 * if it is not valid (e.g. an escaped NUL). */
json_t *json_skim_key(const char *key, size_t klen, bool escaped);

/* Parses a value's text with jansson (any JSON value, the whole text).
 * Returns a new reference, or NULL if it is not valid JSON. */
json_t *json_skim_parse(const char *val, size_t vlen);

#endif
