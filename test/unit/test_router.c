#include "router.h"
#include "unit.h"

static int hits;
static void h1(struct http_req *r, void *d) { (void)r; (void)d; hits++; }
static void h2(struct http_req *r, void *d) { (void)r; (void)d; hits += 10; }

static void test_literal_and_params(void)
{
	struct router *r = router_new();
	router_add(r, "GET", "/api/v1/builds", h1, NULL, 0);
	router_add(r, "GET", "/api/v1/builds/{name}", h2, NULL, 0);
	router_add(r, "POST", "/api/v1/builds/{name}/start", h1, NULL, 0);
	router_add(r, "POST", "/webhooks/github", h1, NULL, 25);
	router_add(r, "GET", "/webui/{path*}", h2, NULL, 0);
	struct route_match m;
	char allow[64];

	CHECK_INT(router_match(r, "GET", "/api/v1/builds", &m, allow, sizeof allow), ROUTER_FOUND);
	CHECK(m.handler == h1);
	CHECK_INT(m.n_params, 0);
	route_match_clear(&m);

	CHECK_INT(router_match(r, "GET", "/api/v1/builds/b%2Fx", &m, allow, sizeof allow), ROUTER_FOUND);
	CHECK(m.handler == h2);
	CHECK_INT(m.n_params, 1);
	CHECK_STR(m.names[0], "name");
	CHECK_STR(m.values[0], "b/x");
	route_match_clear(&m);

	CHECK_INT(router_match(r, "POST", "/webhooks/github", &m, allow, sizeof allow), ROUTER_FOUND);
	CHECK_INT(m.max_body, 25);
	route_match_clear(&m);

	/* a trailing slash is tolerated, an empty parameter is not */
	CHECK_INT(router_match(r, "GET", "/api/v1/builds/", &m, allow, sizeof allow), ROUTER_FOUND);
	CHECK(m.handler == h1);
	route_match_clear(&m);

	CHECK_INT(router_match(r, "GET", "/webui/a/b.js", &m, allow, sizeof allow), ROUTER_FOUND);
	CHECK_STR(m.values[0], "a/b.js");
	route_match_clear(&m);
	CHECK_INT(router_match(r, "GET", "/webui/", &m, allow, sizeof allow), ROUTER_FOUND);
	CHECK_STR(m.values[0], "");
	route_match_clear(&m);
	router_free(r);
}

static void test_not_found_and_allow(void)
{
	struct router *r = router_new();
	router_add(r, "GET", "/a/{x}", h1, NULL, 0);
	router_add(r, "DELETE", "/a/{x}", h1, NULL, 0);
	router_add(r, "POST", "/a/{x}/start", h1, NULL, 0);
	struct route_match m;
	char allow[64];
	CHECK_INT(router_match(r, "GET", "/b", &m, allow, sizeof allow), ROUTER_NOT_FOUND);
	CHECK_INT(router_match(r, "GET", "/a/x/y", &m, allow, sizeof allow), ROUTER_NOT_FOUND);
	CHECK_INT(router_match(r, "PUT", "/a/1", &m, allow, sizeof allow), ROUTER_BAD_METHOD);
	CHECK_STR(allow, "GET, HEAD, DELETE");
	CHECK_INT(router_match(r, "HEAD", "/a/1", &m, allow, sizeof allow), ROUTER_FOUND);
	route_match_clear(&m);
	CHECK_INT(router_match(r, "GET", "/a/%zz", &m, allow, sizeof allow), ROUTER_BAD_PATH);
	CHECK_INT(router_match(r, "GET", "/a/%00", &m, allow, sizeof allow), ROUTER_BAD_PATH);
	router_free(r);
}

int main(void)
{
	RUN(test_literal_and_params);
	RUN(test_not_found_and_allow);
	return UNIT_DONE();
}
