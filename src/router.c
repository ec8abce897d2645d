#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "util.h"

struct segment {
	char *text; /* literal text, or the parameter name */
	enum { SEG_LITERAL, SEG_PARAM, SEG_REST } kind;
};

struct route {
	char *method;
	char *pattern; /* as registered, for metrics */
	struct segment *segs;
	size_t n_segs;
	route_handler_cb handler;
	void *data;
	size_t max_body;
	route_check_cb check_headers;
};

struct router {
	struct route *routes;
	size_t n_routes;
};

struct router *router_new(void)
{
	return xcalloc(1, sizeof(struct router));
}

void router_free(struct router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_routes; i++) {
		for (size_t j = 0; j < r->routes[i].n_segs; j++)
			free(r->routes[i].segs[j].text);
		free(r->routes[i].segs);
		free(r->routes[i].method);
		free(r->routes[i].pattern);
	}
	free(r->routes);
	free(r);
}

void router_add(struct router *r, const char *method, const char *pattern, route_handler_cb handler,
		void *data, size_t max_body)
{
	struct route_opts o = {.handler = handler, .data = data, .max_body = max_body};
	router_add_opts(r, method, pattern, &o);
}

void router_add_opts(struct router *r, const char *method, const char *pattern,
		     const struct route_opts *opts)
{
	r->routes = xrealloc(r->routes, (r->n_routes + 1) * sizeof(struct route));
	struct route *rt = &r->routes[r->n_routes++];
	memset(rt, 0, sizeof *rt);
	rt->method = xstrdup(method);
	rt->pattern = xstrdup(pattern);
	rt->handler = opts->handler;
	rt->data = opts->data;
	rt->max_body = opts->max_body;
	rt->check_headers = opts->check_headers;
	const char *p = pattern;
	while (*p == '/') {
		p++;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		rt->segs = xrealloc(rt->segs, (rt->n_segs + 1) * sizeof(struct segment));
		struct segment *s = &rt->segs[rt->n_segs++];
		if (n >= 3 && p[0] == '{' && p[n - 1] == '}') {
			bool rest = p[n - 2] == '*';
			s->kind = rest ? SEG_REST : SEG_PARAM;
			s->text = xstrndup(p + 1, n - (rest ? 3 : 2));
		} else {
			s->kind = SEG_LITERAL;
			s->text = xstrndup(p, n);
		}
		p += n;
	}
}

void route_match_clear(struct route_match *m)
{
	for (size_t i = 0; i < m->n_params; i++)
		free(m->values[i]);
	memset(m, 0, sizeof *m);
}

/* Matches the path against one route; on success the decoded parameters are
 * left in m. Returns 1 (match), 0 (no match) or -1 (malformed escape). */
static int match_route(const struct route *rt, const char *path, struct route_match *m)
{
	const char *p = path;
	m->n_params = 0;
	for (size_t i = 0; i < rt->n_segs; i++) {
		const struct segment *s = &rt->segs[i];
		if (*p != '/')
			goto no;
		p++;
		if (s->kind == SEG_REST) {
			char *v = url_decode(p, strlen(p), false);
			if (!v)
				goto bad;
			m->names[m->n_params] = s->text;
			m->values[m->n_params++] = v;
			return 1;
		}
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (s->kind == SEG_LITERAL) {
			if (strlen(s->text) != n || memcmp(s->text, p, n) != 0)
				goto no;
		} else {
			if (n == 0 || m->n_params == ROUTE_MAX_PARAMS)
				goto no;
			char *v = url_decode(p, n, false);
			if (!v)
				goto bad;
			m->names[m->n_params] = s->text;
			m->values[m->n_params++] = v;
		}
		p += n;
	}
	if (*p == '\0' || (p[0] == '/' && p[1] == '\0' && rt->n_segs > 0))
		return 1;
no:
	route_match_clear(m);
	return 0;
bad:
	route_match_clear(m);
	return -1;
}

static void allow_add(char *allow, size_t allow_len, const char *method)
{
	/* keep each method once */
	size_t ml = strlen(method);
	for (const char *a = allow; (a = strstr(a, method)); a += ml)
		if ((a == allow || a[-1] == ' ') && (a[ml] == ',' || a[ml] == '\0'))
			return;
	size_t len = strlen(allow);
	snprintf(allow + len, allow_len - len, "%s%s", len ? ", " : "", method);
}

enum router_result router_match(const struct router *r, const char *method, const char *path,
				struct route_match *m, char *allow, size_t allow_len)
{
	memset(m, 0, sizeof *m);
	if (allow_len)
		allow[0] = '\0';
	bool path_known = false;
	for (size_t i = 0; i < r->n_routes; i++) {
		const struct route *rt = &r->routes[i];
		int rc = match_route(rt, path, m);
		if (rc < 0)
			return ROUTER_BAD_PATH;
		if (rc == 0)
			continue;
		bool ok = strcmp(rt->method, method) == 0 ||
			  (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0);
		if (ok) {
			m->route = rt;
			m->handler = rt->handler;
			m->data = rt->data;
			m->max_body = rt->max_body;
			m->check_headers = rt->check_headers;
			return ROUTER_FOUND;
		}
		path_known = true;
		allow_add(allow, allow_len, rt->method);
		if (strcmp(rt->method, "GET") == 0)
			allow_add(allow, allow_len, "HEAD");
		route_match_clear(m);
	}
	return path_known ? ROUTER_BAD_METHOD : ROUTER_NOT_FOUND;
}

const char *route_pattern(const struct route *rt)
{
	return rt ? rt->pattern : NULL;
}

const char *route_param(const struct http_req *req, const char *name)
{
	const struct route_match *m = req->match;
	if (!m)
		return NULL;
	for (size_t i = 0; i < m->n_params; i++)
		if (strcmp(m->names[i], name) == 0)
			return m->values[i];
	return NULL;
}
