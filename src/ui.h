/* The bundled dashboard's routes: /, /webui/{path} (the embedded files of
 * web/, assets.h) and the deep links /builds and /builds/{name}[?live].
 *
 * /builds/{name}?live (the link of the GitHub statuses) redirects to a
 * started build's instance; on a stopped build it wakes it (a start, at most
 * UI_WAKES_PER_MINUTE per client address, so that a crawler cannot start
 * every build) and serves the page, which follows the build and goes to the
 * instance once started. For a build that is gone, the repo, target_branch
 * and pr query parameters (the status links carry them) lead to the newest
 * build of that branch or PR. */
#ifndef RUNBOAT_UI_H
#define RUNBOAT_UI_H

struct app;
struct router;

#define UI_WAKES_PER_MINUTE 6

struct ui;

/* Registers the UI routes; app is borrowed and must outlive the router and
 * the returned state (freed by ui_free, after the server). */
struct ui *ui_register(struct router *r, struct app *app);
void ui_free(struct ui *ui);

#endif
