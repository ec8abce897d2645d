/* Routes requests by method and path pattern. Patterns are made of literal
 * segments, "{name}" (one non-empty segment, percent-decoded) and a final
 * "{name*}" (the rest of the path, possibly empty). */
#ifndef RUNBOAT_ROUTER_H
#define RUNBOAT_ROUTER_H

#include <stddef.h>

struct http_req;

typedef void (*route_handler_cb)(struct http_req *req, void *data);

#define ROUTE_MAX_PARAMS 4

struct route;

struct route_match {
	const struct route *route;
	route_handler_cb handler;
	void *data;
	size_t max_body; /* 0: the server's default */
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

enum router_result { ROUTER_FOUND = 0, ROUTER_NOT_FOUND = 404, ROUTER_BAD_METHOD = 405, ROUTER_BAD_PATH = 400 };

/* Matches method and raw path. On ROUTER_FOUND fills *m (release it with
 * route_match_clear). On ROUTER_BAD_METHOD writes the allowed methods
 * ("GET, HEAD") into allow. A HEAD request matches GET routes. */
enum router_result router_match(const struct router *r, const char *method, const char *path,
				struct route_match *m, char *allow, size_t allow_len);
void route_match_clear(struct route_match *m);

/* A path parameter of the request's route, or NULL. */
const char *route_param(const struct http_req *req, const char *name);

#endif
