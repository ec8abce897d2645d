/* The HTTP surface of runboat: registers every route on the router. Handlers
 * read the build index and ask the controller; they never talk to Kubernetes
 * themselves. */
#ifndef RUNBOAT_API_H
#define RUNBOAT_API_H

struct app;
struct router;

/* Registers the routes; app is borrowed and must outlive the router. */
void api_register(struct router *r, struct app *app);

#endif
