/* The build event streams: GET /api/v1/build-events (Server-Sent Events) and
 * GET /api/v1/ws (WebSocket), each a subscription onto the hub (hub.h) with
 * the listing filters of its query. */
#ifndef RUNBOAT_STREAMS_H
#define RUNBOAT_STREAMS_H

struct app;
struct router;

/* Registers the stream routes; app is borrowed and must outlive the router. */
void streams_register(struct router *r, struct app *app);

#endif
