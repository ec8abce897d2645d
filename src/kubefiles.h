/* Kubefiles: the Mustache templates that render a build's Kubernetes objects,
 * and the enforcement of the contract of DESIGN.md ("State lives in
 * Kubernetes") on what they render.
 *
 * A kubefiles directory holds one template per mode (deployment.yaml,
 * initialize.yaml, cleanup.yaml required; start.yaml, stop.yaml optional);
 * every regular file of the directory (the mode templates included, names
 * starting with '.' and subdirectories ignored, symlinks followed, so a
 * ConfigMap volume works) is also a partial, `{{> file-name}}`. A partial
 * that is not there is an error (the spec renders it as nothing; here it is
 * a typo). Files are read by kubefiles_load; kubefiles_cache reloads a
 * directory when its listing or any file's size/mtime/inode changed, checked
 * at each lookup (one readdir and a stat per file: no content is read
 * unless something changed).
 *
 * Rendering: the template of the mode is rendered against the context (see
 * kubefiles_render) with every {{tag}} escaped for the inside of a YAML
 * double-quoted scalar, so templates must quote interpolated values
 * (`value: "{{x}}"`); a value can then never end the scalar nor add a line,
 * whatever it holds. Triple mustaches ({{{x}}}, {{&x}}) bypass that and must
 * not be used for values that come from a webhook. The output is parsed as a
 * multi-document YAML stream, then every object is checked and completed:
 *
 *   - a mapping with string apiVersion, kind and metadata.name; the name
 *     is the build name or starts with "<build name>-" or "<build name>.",
 *     at most 253 characters of [a-z0-9.-];
 *   - not a cluster-scoped kind runboat knows of (Namespace, ClusterRole,
 *     PersistentVolume, StorageClass, CustomResourceDefinition, webhooks,
 *     ...): builds live in one namespace (policy: namespaced kinds only;
 *     the controller checks the rest by discovery);
 *   - metadata.namespace is set to the build namespace (whatever the
 *     template said);
 *   - label runboat/build=<name> on the object, on pod templates
 *     (spec.template of Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
 *     ReplicationController; spec.jobTemplate and its pod template for
 *     CronJob), in the selectors of Deployment, StatefulSet, DaemonSet,
 *     ReplicaSet (spec.selector.matchLabels) and of a Service that has a
 *     selector (as the Python runboat's kustomize commonLabels did: without
 *     it the pods of two builds would share a selector);
 *   - annotations runboat/repo, runboat/target-branch, runboat/pr,
 *     runboat/git-commit on every object (the Python runboat put them on
 *     every object too);
 *   - deployment mode: exactly one Deployment, which gets spec.replicas 0,
 *     spec.paused true, the finalizer runboat/cleanup and
 *     runboat/init-status=todo; the other modes render no Deployment;
 *   - initialize / cleanup modes: exactly one Job, which (and its pod
 *     template) gets runboat/job-kind=initialize / cleanup; that label is
 *     removed from every other object and pod template, and the
 *     runboat/cleanup finalizer from every object but the Deployment (the
 *     controller only ever removes it from the Deployment);
 *   - names are unique per (API group, kind) within a render.
 *
 * Inputs are validated before anything is rendered (build.h rules): build
 * name, repo "owner/repo", branch as a git ref, sha 40/64 lowercase hex, PR
 * 0 (none) or 1..2^31-1, slug and namespace DNS labels, domain a DNS name. */
#ifndef RUNBOAT_KUBEFILES_H
#define RUNBOAT_KUBEFILES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "build.h"
#include "config.h"
#include "util.h"

/* Bounds of a kubefiles directory. */
#define KUBEFILES_MAX_FILES 128
#define KUBEFILES_MAX_FILE_BYTES ((size_t)256 << 10)
#define KUBEFILES_MAX_TOTAL_BYTES ((size_t)4 << 20)
/* Bound of one rendered stream and of the objects it holds. */
#define KUBEFILES_MAX_OUTPUT ((size_t)8 << 20)
#define KUBEFILES_MAX_OBJECTS 256

enum kubefiles_mode {
	KUBEFILES_DEPLOYMENT,
	KUBEFILES_INITIALIZE,
	KUBEFILES_START,
	KUBEFILES_STOP,
	KUBEFILES_CLEANUP,
	KUBEFILES_MODE_COUNT
};

/* "deployment", "initialize", "start", "stop", "cleanup"; "?" if out of
 * range. */
const char *kubefiles_mode_str(enum kubefiles_mode mode);
/* The mode named s (exact), or -1. */
int kubefiles_mode_parse(const char *s);

/* One loaded directory (immutable once loaded). */
struct kubefiles;

/* What a render is about. Everything is borrowed for the duration of the
 * call. */
struct kubefiles_ctx {
	enum kubefiles_mode mode;
	const char *namespace;    /* the build namespace */
	const char *build_name;   /* build_valid_name */
	const char *build_slug;   /* a DNS-1123 label (build_slug) */
	const char *build_domain; /* DNS name */
	struct build_commit commit; /* repo (any case: rendered lowercase),
				     * target_branch, pr (0: none), git_commit */
	const char *image_name;
	const char *image_tag;
	const struct config_env_list *build_env;        /* NULL: none */
	const struct config_env_list *build_secret_env; /* NULL: none */
	json_t *template_vars; /* borrowed object; NULL: {} */
};

/* Fills the fields of ctx that come from the configuration: namespace,
 * domain, image, env, secret env and template vars of the [[repos]] entry
 * repo (whose [build] values are already merged), or of [build] when repo is
 * NULL (image then left as it is). Pointers borrowed from cfg/repo. */
void kubefiles_ctx_from_config(struct kubefiles_ctx *ctx, const struct config *cfg,
			       const struct config_repo *repo);

/* Loads the kubefiles directory dir (bounded, see KUBEFILES_MAX_*). Returns a
 * new set (owned, kubefiles_free) or NULL with "DIR: problem" in err: not a
 * directory, a required template missing, too many or too large files, a
 * file that is not valid UTF-8 or holds a NUL byte. */
struct kubefiles *kubefiles_load(const char *dir, char *err, size_t errlen);
/* NULL is fine. */
void kubefiles_free(struct kubefiles *kf);
/* The directory (borrowed). */
const char *kubefiles_dir(const struct kubefiles *kf);
/* Whether the set has a template for mode (start/stop are optional: a mode
 * without template renders no object). */
bool kubefiles_has_mode(const struct kubefiles *kf, enum kubefiles_mode mode);

/* Renders ctx->mode and enforces the contract (see above). On success returns
 * 0 and sets *objects to a new JSON array of objects (owned by the caller),
 * in template order. Errors (with one line in err, naming the file and,
 * where known, the line or the object): -EINVAL for invalid inputs, a
 * template error, YAML that does not parse, an object breaking the contract;
 * -E2BIG when the output or the object count exceeds its bound. *objects is
 * NULL on error. */
int kubefiles_render(const struct kubefiles *kf, const struct kubefiles_ctx *ctx, json_t **objects,
		     char *err, size_t errlen);

/* The first half of kubefiles_render, for kubefile authors: validates ctx
 * and appends the rendered YAML stream of ctx->mode to out (nothing for a
 * mode without template), without parsing it nor enforcing anything.
 * Returns 0, or -EINVAL / -E2BIG as kubefiles_render. */
int kubefiles_render_text(const struct kubefiles *kf, const struct kubefiles_ctx *ctx,
			  struct buf *out, char *err, size_t errlen);

/* The Mustache context of ctx as kubefiles_render sees it (new reference),
 * documented in kubefiles/README.md: namespace, mode, mode_<mode> (true for
 * the current mode), build_name, build_slug, build_domain, commit_info
 * {repo, target_branch, pr ("" or decimal), git_commit}, image_name,
 * image_tag, build_env and build_secret_env ([{name, value, value_base64}]),
 * template_vars. ctx is NOT validated here. NULL if a string is not valid
 * UTF-8. */
json_t *kubefiles_context(const struct kubefiles_ctx *ctx);

/* The distinct (apiVersion, kind) pairs the templates produce in every
 * mode, as a new JSON array of {"apiVersion", "kind"} sorted by apiVersion
 * then kind (owned by the caller): each mode is rendered with base (NULL: a
 * dummy context; its mode and commit are replaced) for a branch build and
 * for a PR build. Objects that only a particular template_vars value would
 * produce are seen only if base carries that value. NULL with err set when a
 * mode does not render. */
json_t *kubefiles_kinds(const struct kubefiles *kf, const struct kubefiles_ctx *base, char *err,
			size_t errlen);

/* A cache of loaded directories, keyed by path, reloaded when they change. */
struct kubefiles_cache;

struct kubefiles_cache *kubefiles_cache_new(void);
/* Frees the cache and every set it holds; NULL is fine. */
void kubefiles_cache_free(struct kubefiles_cache *c);
/* The set for dir, loaded on first use and reloaded when the directory or a
 * file changed since. Borrowed: valid until the next kubefiles_cache_get of
 * the same dir or kubefiles_cache_free. NULL with err set when the directory
 * does not load (nothing stale is served: the entry is dropped). */
const struct kubefiles *kubefiles_cache_get(struct kubefiles_cache *c, const char *dir, char *err,
					    size_t errlen);

#endif
