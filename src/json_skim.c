#include "json_skim.h"

#include <errno.h>
#include <string.h>

static size_t ws(const char *s, size_t len, size_t p)
{
	while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r'))
		p++;
	return p;
}

static bool hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The bytes that end a run of plain string characters: '"', '\\' and the
 * control characters (refused in strings). */
static const bool STRING_STOP[256] = {
	[0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
	[0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
	[0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
	[0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
	[0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1, ['\\'] = 1,
};

/* The string at s[*pp] == '"'; *pp moves past its closing quote. */
static int skip_string(const char *s, size_t len, size_t *pp, bool *escaped)
{
	size_t p = *pp + 1;
	const unsigned char *u = (const unsigned char *)s;
	for (;;) {
		while (p + 4 <= len && !STRING_STOP[u[p]] && !STRING_STOP[u[p + 1]] &&
		       !STRING_STOP[u[p + 2]] && !STRING_STOP[u[p + 3]])
			p += 4;
		while (p < len && !STRING_STOP[u[p]])
			p++;
		if (p >= len || (unsigned char)s[p] < 0x20)
			return -EPROTO;
		if (s[p] == '"')
			break;
		/* a backslash */
		if (escaped)
			*escaped = true;
		if (++p >= len)
			return -EPROTO;
		if (s[p] == 'u') {
			if (len - p < 5 || !hex(s[p + 1]) || !hex(s[p + 2]) || !hex(s[p + 3]) ||
			    !hex(s[p + 4]))
				return -EPROTO;
			p += 5;
		} else if (strchr("\"\\/bfnrt", s[p]) && s[p]) {
			p++;
		} else {
			return -EPROTO;
		}
	}
	*pp = p + 1;
	return 0;
}

static int skip_digits(const char *s, size_t len, size_t *pp)
{
	size_t p = *pp;
	if (p >= len || !digit(s[p]))
		return -EPROTO;
	while (p < len && digit(s[p]))
		p++;
	*pp = p;
	return 0;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(const char *s, size_t len, size_t *pp)
{
	size_t p = *pp;
	if (p < len && s[p] == '-')
		p++;
	if (p < len && s[p] == '0')
		p++;
	else if (skip_digits(s, len, &p) < 0)
		return -EPROTO;
	if (p < len && s[p] == '.') {
		p++;
		if (skip_digits(s, len, &p) < 0)
			return -EPROTO;
	}
	if (p < len && (s[p] == 'e' || s[p] == 'E')) {
		p++;
		if (p < len && (s[p] == '+' || s[p] == '-'))
			p++;
		if (skip_digits(s, len, &p) < 0)
			return -EPROTO;
	}
	*pp = p;
	return 0;
}

static int skip_literal(const char *s, size_t len, size_t *pp, const char *lit)
{
	size_t n = strlen(lit);
	if (len - *pp < n || memcmp(s + *pp, lit, n) != 0)
		return -EPROTO;
	*pp += n;
	return 0;
}

/* A key and its colon at s[*pp] (after whitespace); *pp moves to the value. */
static int skip_key(const char *s, size_t len, size_t *pp)
{
	size_t p = ws(s, len, *pp);
	if (p >= len || s[p] != '"' || skip_string(s, len, &p, NULL) < 0)
		return -EPROTO;
	p = ws(s, len, p);
	if (p >= len || s[p] != ':')
		return -EPROTO;
	*pp = ws(s, len, p + 1);
	return 0;
}

/* One value at s[*pp] (after whitespace), nesting tracked on a stack of
 * closing characters (no recursion); *pp moves past it. */
static int skip_value(const char *s, size_t len, size_t *pp)
{
	char stack[JSON_SKIM_MAX_DEPTH];
	int depth = 0;
	size_t p = ws(s, len, *pp);
	for (;;) {
		/* a value at p */
		if (p >= len)
			return -EPROTO;
		char c = s[p];
		int r = 0;
		if (c == '{' || c == '[') {
			if (depth == JSON_SKIM_MAX_DEPTH)
				return -EPROTO;
			stack[depth++] = c == '{' ? '}' : ']';
			p = ws(s, len, p + 1);
			if (p < len && s[p] == stack[depth - 1]) {
				p++;
				depth--;
			} else {
				if (c == '{' && skip_key(s, len, &p) < 0)
					return -EPROTO;
				continue;
			}
		} else if (c == '"') {
			r = skip_string(s, len, &p, NULL);
		} else if (c == '-' || digit(c)) {
			r = skip_number(s, len, &p);
		} else if (c == 't') {
			r = skip_literal(s, len, &p, "true");
		} else if (c == 'f') {
			r = skip_literal(s, len, &p, "false");
		} else if (c == 'n') {
			r = skip_literal(s, len, &p, "null");
		} else {
			return -EPROTO;
		}
		if (r < 0)
			return r;
		/* after a value: a comma, or the end of containers */
		for (;;) {
			if (depth == 0) {
				*pp = p;
				return 0;
			}
			p = ws(s, len, p);
			if (p >= len)
				return -EPROTO;
			if (s[p] == stack[depth - 1]) {
				p++;
				depth--;
				continue;
			}
			if (s[p] != ',')
				return -EPROTO;
			p = ws(s, len, p + 1);
			if (stack[depth - 1] == '}' && skip_key(s, len, &p) < 0)
				return -EPROTO;
			break;
		}
	}
}

int json_skim_open(struct json_skim *it, const char *text, size_t len, char open)
{
	memset(it, 0, sizeof(*it));
	size_t p = ws(text, len, 0);
	if (!text || p >= len || text[p] != open || (open != '{' && open != '['))
		return -EPROTO;
	it->s = text;
	it->len = len;
	it->pos = p + 1;
	it->close = open == '{' ? '}' : ']';
	it->first = true;
	return 0;
}

/* Before the next member or element: 1 if there is one (it->pos at it), 0
 * at the end of the container, -EPROTO. */
static int next(struct json_skim *it)
{
	if (it->done)
		return 0;
	size_t p = ws(it->s, it->len, it->pos);
	if (p >= it->len)
		return -EPROTO;
	if (it->s[p] == it->close) {
		it->done = true;
		it->pos = p + 1;
		return ws(it->s, it->len, it->pos) == it->len ? 0 : -EPROTO;
	}
	if (!it->first) {
		if (it->s[p] != ',')
			return -EPROTO;
		p = ws(it->s, it->len, p + 1);
		if (p >= it->len)
			return -EPROTO;
	}
	it->first = false;
	it->pos = p;
	return 1;
}

static int value(struct json_skim *it, const char **val, size_t *vlen)
{
	size_t start = ws(it->s, it->len, it->pos), p = start;
	if (skip_value(it->s, it->len, &p) < 0)
		return -EPROTO;
	*val = it->s + start;
	*vlen = p - start;
	it->pos = p;
	return 1;
}

int json_skim_member(struct json_skim *it, const char **key, size_t *klen, bool *escaped,
		     const char **val, size_t *vlen)
{
	if (it->close != '}')
		return -EPROTO;
	int r = next(it);
	if (r <= 0)
		return r;
	size_t p = it->pos;
	bool esc = false;
	if (it->s[p] != '"' || skip_string(it->s, it->len, &p, &esc) < 0)
		return -EPROTO;
	*key = it->s + it->pos + 1;
	*klen = p - it->pos - 2;
	*escaped = esc;
	p = ws(it->s, it->len, p);
	if (p >= it->len || it->s[p] != ':')
		return -EPROTO;
	it->pos = p + 1;
	return value(it, val, vlen);
}

int json_skim_element(struct json_skim *it, const char **val, size_t *vlen)
{
	if (it->close != ']')
		return -EPROTO;
	int r = next(it);
	if (r <= 0)
		return r;
	return value(it, val, vlen);
}

json_t *json_skim_key(const char *key, size_t klen, bool escaped)
{
	if (!escaped)
		return json_stringn(key, klen);
	json_error_t e;
	json_t *v = json_loadb(key - 1, klen + 2, JSON_DECODE_ANY, &e);
	if (!json_is_string(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

bool json_skim_key_is(const char *key, size_t klen, bool escaped, const char *name)
{
	if (!escaped)
		return klen == strlen(name) && memcmp(key, name, klen) == 0;
	json_t *k = json_skim_key(key, klen, escaped);
	bool same = k && json_string_length(k) == strlen(name) &&
		    memcmp(json_string_value(k), name, strlen(name)) == 0;
	json_decref(k);
	return same;
}

json_t *json_skim_parse(const char *val, size_t vlen)
{
	json_error_t e;
	return json_loadb(val, vlen, JSON_DECODE_ANY, &e);
}
