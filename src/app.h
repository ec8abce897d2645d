/* The long-lived parts of one runboat process, passed explicitly to every
 * module that needs more than its own state. */
#ifndef RUNBOAT_APP_H
#define RUNBOAT_APP_H

#include <stdbool.h>
#include <uv.h>

struct config;
struct http_server;
struct router;

struct app {
	uv_loop_t *loop;
	struct config *cfg; /* owned */
	struct router *router;
	struct http_server *http;
	uint64_t started_ms;
	/* Readiness: false until the informers have synced; ready_reason says
	 * what is missing, for /readyz. */
	bool ready;
	const char *ready_reason;
	bool stopping;
};

#endif
