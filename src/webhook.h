/* The GitHub webhook (POST /webhooks/github): checks the signature, decodes
 * the form encoding GitHub may use, parses the event (github.h) and asks the
 * controller to deploy or undeploy.
 *
 * With a secret configured, a delivery without X-Hub-Signature-256 is
 * refused (401) at its headers, before its body is read. Bodies up to 64 KiB
 * are authenticated and parsed on the loop; larger ones in libuv's thread
 * pool, one at a time, in order of arrival, so that no delivery holds the
 * loop; a payload of more than 2,000,000 JSON values is refused (413). */
#ifndef RUNBOAT_WEBHOOK_H
#define RUNBOAT_WEBHOOK_H

struct app;
struct router;
struct webhook;

/* Registers the webhook route. app is borrowed and must outlive the router.
 * Returns the webhook's state, freed with webhook_free. */
struct webhook *webhook_register(struct router *r, struct app *app);
/* Deliveries waiting for or in the thread pool (for tests and metrics). */
unsigned webhook_pending(const struct webhook *w);
/* Frees the state once no request is in flight any more (every connection
 * closed and the loop run until its thread-pool work has ended). NULL is
 * accepted. */
void webhook_free(struct webhook *w);

#endif
