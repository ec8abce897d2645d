/* The HTTP surface of runboat. api.c holds the REST routes of /api/v1 (reads
 * of the build index, actions asked of the controller), /healthz and /readyz,
 * and the checks every handler shares (readiness, admin auth, CSRF, listing
 * filters, errno to status). The other handlers live beside it, one concern
 * per file: webhook.c (GitHub), streams.c (SSE and WebSocket subscriptions),
 * ui.c (the bundled dashboard). Handlers read the index and ask the
 * controller; they never talk to Kubernetes themselves. */
#ifndef RUNBOAT_API_H
#define RUNBOAT_API_H

#include <stdbool.h>

#include "index.h"

struct api;
struct app;
struct http_req;
struct router;

/* Registers every route: the REST API, then webhook_register,
 * streams_register and ui_register. app is borrowed and must outlive the
 * router. Returns the state of the handlers, freed with api_free. */
struct api *api_register(struct router *r, struct app *app);
/* Frees what api_register allocated, once no request is in flight any more:
 * after the HTTP server has closed every connection and the loop has run
 * to its end (webhook work in libuv's thread pool). NULL is accepted. */
void api_free(struct api *api);
/* Webhook deliveries waiting for or in the thread pool (tests, metrics). */
unsigned api_webhooks_pending(const struct api *api);

/* ---- checks shared by the handlers (api, webhook, streams) ---- */

/* The HTTP status of a controller result: 0 → 200, -ENOENT → 404, -EBUSY →
 * 409, -EAGAIN → 503, -EINVAL/-ENOTSUP → 400, anything else → 500. */
int api_status_of(int rc);

/* Each check below returns true when the request may go on; false after it
 * has answered the request with the error. */

/* 503 until the controller is ready (informers synced). */
bool api_require_ready(struct http_req *req, struct app *app);
/* 503 on a standby (leader election): actions go to the leader. */
bool api_require_leader(struct http_req *req, struct app *app);
/* 403 for a state-changing request from another origin (CSRF): the Origin
 * header, when present, must be base_url's, and Sec-Fetch-Site must not say
 * cross-site. */
bool api_same_origin(struct http_req *req, struct app *app);
/* 401 unless the request carries the admin's HTTP Basic credentials
 * (compared in constant time); always 401 when no password is configured. */
bool api_require_admin(struct http_req *req, struct app *app);

/* The listing filters of a query (repo, target_branch, branch, pr, and
 * optionally status and build_name). f's strings point into strings[], owned
 * by the filter: release with api_filter_free. */
struct api_filter {
	struct index_filter f;
	char *strings[5];
};

/* Fills q from req's query; with_status reads ?status=, with_name
 * ?build_name=. On false the request got a 400 and q holds nothing. */
bool api_parse_filter(struct http_req *req, struct api_filter *q, bool with_status,
		      bool with_name);
void api_filter_free(struct api_filter *q);

#endif
