/* The bundled dashboard's routes: /, /webui/{path} (the embedded files of
 * web/, assets.h) and the deep links /builds and /builds/{name}[?live]. */
#ifndef RUNBOAT_UI_H
#define RUNBOAT_UI_H

struct app;
struct router;

/* Registers the UI routes; app is borrowed and must outlive the router. */
void ui_register(struct router *r, struct app *app);

#endif
