/* Routes requests by method and path pattern. Patterns are made of literal
 * segments, "{name}" (one non-empty segment, percent-decoded) and a final
 * "{name*}" (the rest of the path, possibly empty). */
#ifndef RUNBOAT_ROUTER_H
#define RUNBOAT_ROUTER_H

#include <stddef.h>

struct http_req;

typedef void (*route_handler_cb)(struct http_req *req, void *data);

/* Runs as soon as a request's header section is complete, before any byte of
 * its body is read (and before "100 Continue"), for requests this route will
 * handle. req has its method, target, headers and route parameters; its body
 * is empty. Returns 0 to go on, or a 4xx/5xx status to refuse the request:
 * the server then answers {"detail": *detail} (a static string; NULL: the
 * reason phrase) with that status, plus any header the hook added with
 * http_add_header, and closes the connection without reading the body. */
typedef int (*route_check_cb)(struct http_req *req, void *data, const char **detail);

#define ROUTE_MAX_PARAMS 4

struct route;

struct route_match {
	const struct route *route;
	route_handler_cb handler;
	void *data;
	size_t max_body; /* 0: the server's default */
	route_check_cb check_headers; /* NULL: none */
	size_t n_params;
	const char *names[ROUTE_MAX_PARAMS];
	char *values[ROUTE_MAX_PARAMS]; /* owned by the match */
};

struct router;

struct router *router_new(void);
void router_free(struct router *r);
/* Registers handler for method ("GET", "POST", ...) and pattern; max_body
 * overrides the server's body limit when non-zero. data is borrowed. */
void router_add(struct router *r, const char *method, const char *pattern, route_handler_cb handler,
		void *data, size_t max_body);

/* What a route does, for router_add_opts. */
struct route_opts {
	route_handler_cb handler;
	void *data;                   /* borrowed, passed to handler and check_headers */
	size_t max_body;              /* 0: the server's body limit */
	route_check_cb check_headers; /* optional: refuse at the headers */
};

/* Registers a route with every option (opts is copied). */
void router_add_opts(struct router *r, const char *method, const char *pattern,
		     const struct route_opts *opts);

enum router_result { ROUTER_FOUND = 0, ROUTER_NOT_FOUND = 404, ROUTER_BAD_METHOD = 405, ROUTER_BAD_PATH = 400 };

/* Matches method and raw path. On ROUTER_FOUND fills *m (release it with
 * route_match_clear). On ROUTER_BAD_METHOD writes the allowed methods
 * ("GET, HEAD") into allow. A HEAD request matches GET routes. */
enum router_result router_match(const struct router *r, const char *method, const char *path,
				struct route_match *m, char *allow, size_t allow_len);
void route_match_clear(struct route_match *m);

/* The pattern a route was registered with (bounded: for metrics), or NULL
 * for NULL. Borrowed from the router. */
const char *route_pattern(const struct route *rt);

/* A path parameter of the request's route, or NULL. */
const char *route_param(const struct http_req *req, const char *name);

#endif
