/* Mustache: a template is parsed into a flat token list (a section token
 * knows how many tokens its body holds), then rendered against a context
 * stack. Standalone-line rules are applied while parsing; a standalone
 * partial's indentation is inserted into the partial's text before it is
 * parsed, as the spec describes. Partials are parsed when they are rendered,
 * each with the default delimiters. */
#include "mustache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DELIM 16

enum tok_type { TOK_TEXT, TOK_VAR, TOK_SECTION, TOK_PARTIAL };

struct tok {
	enum tok_type type;
	int line;
	bool escape;     /* TOK_VAR */
	bool inverted;   /* TOK_SECTION */
	const char *text; /* TOK_TEXT: span of the source (borrowed) */
	size_t len;
	char *name;   /* owned; TOK_VAR, TOK_SECTION, TOK_PARTIAL */
	char *indent; /* owned; TOK_PARTIAL when standalone and indented */
	size_t nbody; /* TOK_SECTION: tokens in the body, which follow it */
};

struct tmpl {
	struct tok *toks;
	size_t n, cap;
};

struct parser {
	const char *src;
	size_t len;
	const char *where; /* partial name for messages, or NULL */
	char otag[MAX_DELIM + 1], ctag[MAX_DELIM + 1];
	size_t olen, clen;
	int max_depth;
	struct tmpl *t;
	size_t lpos; /* line_at() cache: line number of offset lpos */
	int lline;
	char *err;
	size_t errlen;
};

struct render {
	mustache_partial_cb partial;
	mustache_escape_cb escape;
	void *data;
	int max_depth;
	size_t max_output, max_steps;
	json_t **stack; /* borrowed values; [0] is the root context */
	size_t nstack, capstack;
	struct buf *out;
	size_t out_start;
	size_t steps;
	char *err;
	size_t errlen;
};

static void set_err(char *err, size_t errlen, const char *where, int line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void set_err(char *err, size_t errlen, const char *where, int line, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	int n = 0;
	if (where)
		n = snprintf(err, errlen, "partial '%s': line %d: ", where, line);
	else
		n = snprintf(err, errlen, "line %d: ", line);
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Line of offset pos; offsets mostly grow, so count from the last one. */
static int line_at(struct parser *p, size_t pos)
{
	if (pos < p->lpos) {
		p->lpos = 0;
		p->lline = 1;
	}
	for (size_t i = p->lpos; i < pos; i++)
		if (p->src[i] == '\n')
			p->lline++;
	p->lpos = pos;
	return p->lline;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void tmpl_free(struct tmpl *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->toks[i].name);
		free(t->toks[i].indent);
	}
	free(t->toks);
	t->toks = NULL;
	t->n = t->cap = 0;
}

static struct tok *tmpl_push(struct tmpl *t, enum tok_type type, int line)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->toks = xrealloc(t->toks, t->cap * sizeof(*t->toks));
	}
	struct tok *k = &t->toks[t->n++];
	memset(k, 0, sizeof(*k));
	k->type = type;
	k->line = line;
	return k;
}

static void add_text(struct parser *p, size_t from, size_t to)
{
	if (to <= from)
		return;
	struct tok *k = tmpl_push(p->t, TOK_TEXT, line_at(p, from));
	k->text = p->src + from;
	k->len = to - from;
}

/* A name is "." or dot-separated non-empty parts without whitespace. */
static bool valid_name(const char *s, size_t len)
{
	if (len == 0)
		return false;
	if (len == 1 && s[0] == '.')
		return true;
	if (s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (is_space(s[i]) || (s[i] == '.' && s[i + 1] == '.'))
			return false;
	}
	return true;
}

static void trim(const char **s, size_t *len)
{
	while (*len && is_space(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && is_space((*s)[*len - 1]))
		(*len)--;
}

/* Parses "{{=<open> <close>=}}" content into the parser's delimiters. */
static bool set_delims(struct parser *p, const char *s, size_t len)
{
	trim(&s, &len);
	size_t i = 0;
	while (i < len && !is_space(s[i]))
		i++;
	size_t olen = i;
	while (i < len && is_space(s[i]))
		i++;
	const char *c = s + i;
	size_t clen = len - i;
	if (olen == 0 || clen == 0 || olen > MAX_DELIM || clen > MAX_DELIM)
		return false;
	for (size_t j = 0; j < clen; j++)
		if (is_space(c[j]) || c[j] == '=')
			return false;
	for (size_t j = 0; j < olen; j++)
		if (s[j] == '=')
			return false;
	memcpy(p->otag, s, olen);
	p->otag[olen] = '\0';
	p->olen = olen;
	memcpy(p->ctag, c, clen);
	p->ctag[clen] = '\0';
	p->clen = clen;
	return true;
}

/* Parses p->src into p->t. Returns 0 or -EINVAL with a message. */
static int parse(struct parser *p)
{
	const char *src = p->src;
	size_t len = p->len;
	size_t cur = 0;
	/* token index of each open section */
	size_t *open = xmalloc(sizeof(*open) * ((size_t)p->max_depth + 1));
	int nopen = 0;
	int rc = 0;

	for (;;) {
		const char *o = memmem(src + cur, len - cur, p->otag, p->olen);
		if (!o) {
			add_text(p, cur, len);
			break;
		}
		size_t ts = (size_t)(o - src);
		size_t q = ts + p->olen;
		char sigil = q < len ? src[q] : '\0';
		char needle[MAX_DELIM + 2];
		size_t nlen = 0;
		size_t cs = q;
		if (sigil == '{' || sigil == '=') {
			needle[nlen++] = sigil == '{' ? '}' : '=';
			cs = q + 1;
		}
		memcpy(needle + nlen, p->ctag, p->clen);
		nlen += p->clen;
		const char *c = cs <= len ? memmem(src + cs, len - cs, needle, nlen) : NULL;
		if (!c) {
			set_err(p->err, p->errlen, p->where, line_at(p, ts), "unclosed tag '%.*s'",
				(int)(len - ts > 20 ? 20 : len - ts), src + ts);
			rc = -EINVAL;
			goto done;
		}
		size_t ce = (size_t)(c - src);
		size_t te = ce + nlen;
		int line = line_at(p, ts);

		/* the kind of tag and its name */
		char kind;
		const char *name = src + cs;
		size_t name_len = ce - cs;
		if (sigil == '{') {
			kind = '&';
		} else if (sigil == '=') {
			kind = '=';
		} else if (name_len && strchr("#^/>!&<$", name[0])) {
			kind = name[0];
			name++;
			name_len--;
		} else {
			kind = 'v';
		}
		if (kind == '<' || kind == '$') {
			set_err(p->err, p->errlen, p->where, line,
				"template inheritance ({{%c...}}) is not supported", kind);
			rc = -EINVAL;
			goto done;
		}
		trim(&name, &name_len);

		/* standalone: the only thing on its line but whitespace */
		bool standalone = false;
		size_t ls = ts, after = te;
		if (kind != 'v' && kind != '&') {
			while (ls > cur && src[ls - 1] != '\n')
				ls--;
			bool ok = ls == 0 || src[ls - 1] == '\n';
			for (size_t i = ls; ok && i < ts; i++)
				ok = src[i] == ' ' || src[i] == '\t';
			size_t r = te;
			while (ok && r < len && (src[r] == ' ' || src[r] == '\t'))
				r++;
			if (ok && r < len) {
				if (src[r] == '\n')
					r++;
				else if (src[r] == '\r' && r + 1 < len && src[r + 1] == '\n')
					r += 2;
				else
					ok = false;
			}
			if (ok) {
				standalone = true;
				after = r;
			}
		}
		if (standalone) {
			add_text(p, cur, ls);
			cur = after;
		} else {
			add_text(p, cur, ts);
			cur = te;
		}

		if (kind == '!')
			continue;
		if (kind == '=') {
			if (!set_delims(p, name, name_len)) {
				set_err(p->err, p->errlen, p->where, line,
					"invalid set delimiter tag '%.*s' (expected two delimiters "
					"without whitespace or '=', at most %d bytes each)",
					(int)(te - ts > 60 ? 60 : te - ts), src + ts, MAX_DELIM);
				rc = -EINVAL;
				goto done;
			}
			continue;
		}
		if (!valid_name(name, name_len)) {
			set_err(p->err, p->errlen, p->where, line, "invalid tag name in '%.*s'",
				(int)(te - ts > 60 ? 60 : te - ts), src + ts);
			rc = -EINVAL;
			goto done;
		}
		if (kind == '/') {
			if (nopen == 0) {
				set_err(p->err, p->errlen, p->where, line,
					"closing tag '%.*s' without an open section", (int)name_len, name);
				rc = -EINVAL;
				goto done;
			}
			struct tok *sec = &p->t->toks[open[nopen - 1]];
			if (strlen(sec->name) != name_len || memcmp(sec->name, name, name_len) != 0) {
				set_err(p->err, p->errlen, p->where, line,
					"closing tag '%.*s' does not match section '%s' opened on line %d",
					(int)name_len, name, sec->name, sec->line);
				rc = -EINVAL;
				goto done;
			}
			sec->nbody = p->t->n - open[nopen - 1] - 1;
			nopen--;
			continue;
		}
		if (kind == '#' || kind == '^') {
			if (nopen >= p->max_depth) {
				set_err(p->err, p->errlen, p->where, line,
					"sections nested deeper than %d", p->max_depth);
				rc = -EINVAL;
				goto done;
			}
			struct tok *k = tmpl_push(p->t, TOK_SECTION, line);
			k->name = xstrndup(name, name_len);
			k->inverted = kind == '^';
			open[nopen++] = p->t->n - 1;
			continue;
		}
		if (kind == '>') {
			struct tok *k = tmpl_push(p->t, TOK_PARTIAL, line);
			k->name = xstrndup(name, name_len);
			if (standalone && ts > ls)
				k->indent = xstrndup(src + ls, ts - ls);
			continue;
		}
		struct tok *k = tmpl_push(p->t, TOK_VAR, line);
		k->name = xstrndup(name, name_len);
		k->escape = kind == 'v';
	}
	if (nopen) {
		struct tok *sec = &p->t->toks[open[nopen - 1]];
		set_err(p->err, p->errlen, p->where, sec->line, "unclosed section '%s'", sec->name);
		rc = -EINVAL;
	}
done:
	free(open);
	return rc;
}

static int parse_template(const char *src, size_t len, const char *where, int max_depth,
			  struct tmpl *t, char *err, size_t errlen)
{
	struct parser p = {
		.src = src, .len = len, .where = where, .max_depth = max_depth,
		.t = t, .err = err, .errlen = errlen,
		.otag = "{{", .ctag = "}}", .olen = 2, .clen = 2, .lline = 1,
	};
	int rc = parse(&p);
	if (rc < 0)
		tmpl_free(t);
	return rc;
}

/* --- rendering --- */

static bool truthy(json_t *v)
{
	if (!v)
		return false;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return true;
	case JSON_ARRAY:
		return json_array_size(v) > 0;
	case JSON_STRING:
		return json_string_length(v) > 0;
	case JSON_INTEGER:
		return json_integer_value(v) != 0;
	case JSON_REAL:
		return json_real_value(v) != 0.0;
	case JSON_TRUE:
		return true;
	default:
		return false;
	}
}

/* The shortest %g form that reads back as the same double. */
static void format_real(double d, char out[40])
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, 40, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static json_t *lookup(struct render *r, const char *name)
{
	json_t *top = r->stack[r->nstack - 1];
	if (name[0] == '.' && name[1] == '\0')
		return top;
	const char *dot = strchr(name, '.');
	size_t first = dot ? (size_t)(dot - name) : strlen(name);
	json_t *v = NULL;
	for (size_t i = r->nstack; i-- > 0;) {
		if (json_is_object(r->stack[i])) {
			v = json_object_getn(r->stack[i], name, first);
			if (v)
				break;
		}
	}
	while (v && dot) {
		const char *part = dot + 1;
		dot = strchr(part, '.');
		size_t plen = dot ? (size_t)(dot - part) : strlen(part);
		v = json_is_object(v) ? json_object_getn(v, part, plen) : NULL;
	}
	return v;
}

static int check_output(struct render *r, const char *where, int line)
{
	if (r->out->len - r->out_start > r->max_output) {
		set_err(r->err, r->errlen, where, line, "output larger than %zu bytes", r->max_output);
		return -E2BIG;
	}
	return 0;
}

static int emit(struct render *r, const char *s, size_t len, bool escape, const char *where,
		int line)
{
	if (r->out->len - r->out_start + len > r->max_output) {
		set_err(r->err, r->errlen, where, line, "output larger than %zu bytes", r->max_output);
		return -E2BIG;
	}
	if (escape)
		r->escape(r->out, s, len, r->data);
	else
		buf_append(r->out, s, len);
	return check_output(r, where, line);
}

static int emit_value(struct render *r, json_t *v, bool escape, const char *where, int line)
{
	char num[40];
	if (!v)
		return 0;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return emit(r, json_string_value(v), json_string_length(v), escape, where, line);
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit(r, num, strlen(num), escape, where, line);
	case JSON_REAL:
		format_real(json_real_value(v), num);
		return emit(r, num, strlen(num), escape, where, line);
	case JSON_TRUE:
		return emit(r, "true", 4, escape, where, line);
	case JSON_FALSE:
		return emit(r, "false", 5, escape, where, line);
	case JSON_NULL:
		return 0;
	default: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!s)
			return 0;
		int rc = emit(r, s, strlen(s), escape, where, line);
		free(s);
		return rc;
	}
	}
}

static void push(struct render *r, json_t *v)
{
	if (r->nstack == r->capstack) {
		r->capstack = r->capstack ? r->capstack * 2 : 16;
		r->stack = xrealloc(r->stack, r->capstack * sizeof(*r->stack));
	}
	r->stack[r->nstack++] = v;
}

/* The partial's text with indent inserted at the start of every line. */
static char *indent_text(const char *text, const char *indent)
{
	struct buf b = {0};
	size_t ilen = strlen(indent);
	bool bol = true;
	for (const char *s = text; *s; s++) {
		if (bol)
			buf_append(&b, indent, ilen);
		buf_append(&b, s, 1);
		bol = *s == '\n';
	}
	if (!b.data)
		return xstrdup("");
	return buf_steal(&b);
}

static int render_toks(struct render *r, const struct tok *toks, size_t n, const char *where,
		       int depth);

static int render_partial(struct render *r, const struct tok *k, const char *where, int depth)
{
	const char *text = r->partial ? r->partial(k->name, r->data) : NULL;
	if (!text)
		return 0;
	if (depth + 1 > r->max_depth) {
		set_err(r->err, r->errlen, where, k->line,
			"partial '%s' nested deeper than %d (recursive partial?)", k->name,
			r->max_depth);
		return -E2BIG;
	}
	char *indented = k->indent ? indent_text(text, k->indent) : NULL;
	const char *src = indented ? indented : text;
	size_t len = strlen(src);
	r->steps += len / 64 + 1;
	if (r->steps > r->max_steps) {
		free(indented);
		set_err(r->err, r->errlen, where, k->line, "template takes more than %zu steps",
			r->max_steps);
		return -E2BIG;
	}
	struct tmpl t = {0};
	int rc = parse_template(src, len, k->name, r->max_depth, &t, r->err, r->errlen);
	if (rc == 0)
		rc = render_toks(r, t.toks, t.n, k->name, depth + 1);
	tmpl_free(&t);
	free(indented);
	return rc;
}

static int render_section(struct render *r, const struct tok *k, const char *where, int depth)
{
	json_t *v = lookup(r, k->name);
	const struct tok *body = k + 1;
	if (k->inverted) {
		if (truthy(v))
			return 0;
		return render_toks(r, body, k->nbody, where, depth);
	}
	if (!truthy(v))
		return 0;
	if (depth + 1 > r->max_depth) {
		set_err(r->err, r->errlen, where, k->line, "sections nested deeper than %d",
			r->max_depth);
		return -E2BIG;
	}
	int rc = 0;
	if (json_is_array(v)) {
		for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
			push(r, json_array_get(v, i));
			rc = render_toks(r, body, k->nbody, where, depth + 1);
			r->nstack--;
		}
	} else {
		push(r, v);
		rc = render_toks(r, body, k->nbody, where, depth + 1);
		r->nstack--;
	}
	return rc;
}

static int render_toks(struct render *r, const struct tok *toks, size_t n, const char *where,
		       int depth)
{
	for (size_t i = 0; i < n; i++) {
		const struct tok *k = &toks[i];
		int rc = 0;
		if (++r->steps > r->max_steps) {
			set_err(r->err, r->errlen, where, k->line,
				"template takes more than %zu steps", r->max_steps);
			return -E2BIG;
		}
		switch (k->type) {
		case TOK_TEXT:
			rc = emit(r, k->text, k->len, false, where, k->line);
			break;
		case TOK_VAR:
			rc = emit_value(r, lookup(r, k->name), k->escape, where, k->line);
			break;
		case TOK_SECTION:
			rc = render_section(r, k, where, depth);
			i += k->nbody;
			break;
		case TOK_PARTIAL:
			rc = render_partial(r, k, where, depth);
			break;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

int mustache_render(const char *tmpl, json_t *context, const struct mustache_opts *opts,
		    struct buf *out, char *err, size_t errlen)
{
	static const struct mustache_opts defaults = {0};
	if (!opts)
		opts = &defaults;
	if (err && errlen)
		err[0] = '\0';
	struct render r = {
		.partial = opts->partial,
		.escape = opts->escape ? opts->escape : mustache_escape_html,
		.data = opts->data,
		.max_depth = opts->max_depth > 0 ? opts->max_depth : MUSTACHE_DEFAULT_MAX_DEPTH,
		.max_output = opts->max_output ? opts->max_output : MUSTACHE_DEFAULT_MAX_OUTPUT,
		.max_steps = opts->max_steps ? opts->max_steps : MUSTACHE_DEFAULT_MAX_STEPS,
		.out = out,
		.out_start = out->len,
		.err = err,
		.errlen = errlen,
	};
	json_t *empty = NULL;
	if (!context)
		context = empty = json_object();
	struct tmpl t = {0};
	int rc = parse_template(tmpl, strlen(tmpl), NULL, r.max_depth, &t, err, errlen);
	if (rc == 0) {
		push(&r, context);
		rc = render_toks(&r, t.toks, t.n, NULL, 0);
	}
	tmpl_free(&t);
	free(r.stack);
	json_decref(empty);
	/* keep out a valid (empty) string even when nothing was appended */
	if (!out->data)
		buf_append(out, "", 0);
	return rc;
}

/* --- escaping --- */

void mustache_escape_html(struct buf *out, const char *s, size_t len, void *data)
{
	UNUSED(data);
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		const char *rep;
		switch (s[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: continue;
		}
		buf_append(out, s + start, i - start);
		buf_append_str(out, rep);
		start = i + 1;
	}
	buf_append(out, s + start, len - start);
}

void mustache_escape_yaml_dq(struct buf *out, const char *s, size_t len, void *data)
{
	UNUSED(data);
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		uint32_t cp;
		size_t n = utf8_decode(u + i, len - i, &cp);
		if (n == 0) {
			buf_append_str(out, "\\uFFFD");
			i++;
			continue;
		}
		if (cp == '\\')
			buf_append_str(out, "\\\\");
		else if (cp == '"')
			buf_append_str(out, "\\\"");
		else if (cp == '\n')
			buf_append_str(out, "\\n");
		else if (cp == '\r')
			buf_append_str(out, "\\r");
		else if (cp == '\t')
			buf_append_str(out, "\\t");
		else if (cp < 0x20 || cp == 0x7F)
			buf_printf(out, "\\x%02X", (unsigned)cp);
		else if ((cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
			 cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF)
			buf_printf(out, "\\u%04X", (unsigned)cp);
		else
			buf_append(out, s + i, n);
		i += n;
	}
	if (!out->data)
		buf_append(out, "", 0);
}
