#include "build_render.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "util.h"

/* s, or "" when NULL (json_string_value of a missing key). */
static const char *str0(const char *s)
{
	return s ? s : "";
}

static bool is_kind(const json_t *o, const char *kind)
{
	return strcmp(str0(json_string_value(json_object_get(o, "kind"))), kind) == 0;
}

static const char *kubefiles_dir_of(const struct config *cfg, const struct build_commit *cm,
				    const struct config_repo **repo)
{
	*repo = config_find_repo(cfg, cm->repo, cm->target_branch);
	return *repo ? (*repo)->kubefiles : cfg->build.kubefiles;
}

json_t *build_render(const struct config *cfg, struct kubefiles_cache *kubefiles,
		     enum kubefiles_mode mode, const char *name, const struct build_commit *cm,
		     char *err, size_t errlen)
{
	const struct config_repo *repo;
	const struct kubefiles *kf =
		kubefiles_cache_get(kubefiles, kubefiles_dir_of(cfg, cm, &repo), err, errlen);
	if (!kf)
		return NULL;
	if (!kubefiles_has_mode(kf, mode))
		return json_array();
	struct kubefiles_ctx ctx = {0};
	kubefiles_ctx_from_config(&ctx, cfg, repo);
	ctx.mode = mode;
	ctx.build_name = name;
	char *slug = build_slug(cm->repo, cm->target_branch, cm->pr, cm->git_commit);
	ctx.build_slug = slug;
	ctx.commit = *cm;
	if (!repo) {
		ctx.image_name = "unconfigured";
		ctx.image_tag = "latest";
	}
	json_t *objects = NULL;
	int rc = kubefiles_render(kf, &ctx, &objects, err, errlen);
	free(slug);
	return rc == 0 ? objects : NULL;
}

static void stamp(json_t *deployment, int64_t created_ms)
{
	char t[32], when[48];
	format_rfc3339(created_ms / 1000, t);
	snprintf(when, sizeof when, "%.19s.%03dZ", t, (int)(created_ms % 1000));
	json_t *meta = json_object_get(deployment, "metadata");
	json_t *ann = json_object_get(meta, "annotations");
	if (!json_is_object(ann)) {
		ann = json_object();
		json_object_set_new(meta, "annotations", ann);
	}
	json_object_set_new(ann, BUILD_ANN_CREATED, json_string(when));
	/* owned by the kubefiles' field manager from now on: a reset (which
	 * applies this again) clears a reason recorded by a patch */
	json_object_set_new(ann, BUILD_ANN_REASON, json_string(""));
}

json_t *build_render_deployment(const struct config *cfg, struct kubefiles_cache *kubefiles,
				const char *name, const struct build_commit *cm, int64_t created_ms,
				char *err, size_t errlen)
{
	json_t *objects = build_render(cfg, kubefiles, KUBEFILES_DEPLOYMENT, name, cm, err, errlen);
	if (!objects)
		return NULL;
	for (size_t i = 0; i < json_array_size(objects); i++) {
		json_t *o = json_array_get(objects, i);
		if (!is_kind(o, "Deployment"))
			continue;
		stamp(o, created_ms);
		if (i > 0) {
			json_incref(o);
			json_array_remove(objects, i);
			json_array_insert_new(objects, 0, o);
		}
		break;
	}
	return objects;
}

json_t *build_render_without_deployment(const json_t *list)
{
	json_t *out = json_array();
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o)
	{
		if (!is_kind(o, "Deployment"))
			json_array_append(out, o);
	}
	return out;
}

static bool holds_equal(const json_t *list, const json_t *o)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		if (json_equal(v, o))
			return true;
	}
	return false;
}

void build_render_add_new(json_t *out, const json_t *list, const json_t *known)
{
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o)
	{
		if (!(known && holds_equal(known, o)) && !holds_equal(out, o))
			json_array_append(out, o);
	}
}

static bool has_kind(const json_t *kinds, const char *api_version, const char *kind)
{
	size_t i;
	json_t *k;
	json_array_foreach(kinds, i, k)
	{
		if (strcmp(str0(json_string_value(json_object_get(k, "apiVersion"))), api_version) == 0 &&
		    is_kind(k, kind))
			return true;
	}
	return false;
}

json_t *build_render_cleanup_kinds(const struct config *cfg, struct kubefiles_cache *kubefiles,
				   const struct build_commit *cm)
{
	static const char *const usual[][2] = {
		{"v1", "ConfigMap"}, {"v1", "Secret"}, {"v1", "Service"},
		{"v1", "PersistentVolumeClaim"}, {"networking.k8s.io/v1", "Ingress"},
		{"batch/v1", "Job"},
	};
	json_t *kinds = json_array();
	const struct config_repo *repo;
	char err[256];
	const struct kubefiles *kf =
		kubefiles_cache_get(kubefiles, kubefiles_dir_of(cfg, cm, &repo), err, sizeof err);
	json_t *made = kf ? kubefiles_kinds(kf, NULL, err, sizeof err) : NULL;
	size_t i;
	json_t *k;
	json_array_foreach(made, i, k)
	{
		if (!is_kind(k, "Deployment"))
			json_array_append(kinds, k);
	}
	json_decref(made);
	for (i = 0; i < ARRAY_SIZE(usual); i++)
		if (!has_kind(kinds, usual[i][0], usual[i][1]))
			json_array_append_new(kinds, json_pack("{s:s,s:s}", "apiVersion", usual[i][0],
							       "kind", usual[i][1]));
	return kinds;
}
