/* The kubefiles of one build: what the controller renders for each mode,
 * with the build's identity and the configuration of its repository, and
 * the kinds of objects to delete when it is cleaned up. Pure but for the
 * kubefiles cache (which reads the directory once). */
#ifndef RUNBOAT_BUILD_RENDER_H
#define RUNBOAT_BUILD_RENDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "build.h"
#include "kubefiles.h"

struct config;

/* The objects that mode renders for the build named name (or the commit
 * about to become one), as a new JSON array (an empty one when the
 * kubefiles have no template for an optional mode), or NULL with a message
 * in err. A build whose repository left the configuration is rendered with
 * [build]'s kubefiles, so that it can still be cleaned up. */
json_t *build_render(const struct config *cfg, struct kubefiles_cache *kubefiles,
		     enum kubefiles_mode mode, const char *name, const struct build_commit *cm,
		     char *err, size_t errlen);

/* Deployment mode, ready to apply: the Deployment first (it is the build:
 * it exists before anything that carries the build's label), stamped with
 * when the build was deployed (created_ms, ms since the epoch, in
 * runboat/created) and with an empty runboat/reason. NULL with err as
 * build_render. */
json_t *build_render_deployment(const struct config *cfg, struct kubefiles_cache *kubefiles,
				const char *name, const struct build_commit *cm, int64_t created_ms,
				char *err, size_t errlen);

/* A new array of the objects of list except its Deployments. */
json_t *build_render_without_deployment(const json_t *list);

/* Appends to out (borrowed) the objects of list (borrowed) that neither
 * known (borrowed, may be NULL) nor out already holds an equal copy of
 * (json_equal: same kind, name and content). Applying an object twice with
 * one field manager changes nothing the second time, so a mode's objects
 * that another mode already applied as they are need no second call. */
void build_render_add_new(json_t *out, const json_t *list, const json_t *known);

/* The kinds ({apiVersion, kind}) to delete by label once a build is cleaned:
 * what its kubefiles produce but the Deployment, plus the usual ones in case
 * the kubefiles changed since it was deployed. A new array. */
json_t *build_render_cleanup_kinds(const struct config *cfg, struct kubefiles_cache *kubefiles,
				   const struct build_commit *cm);

#endif
