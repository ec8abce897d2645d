/* build_render: what each mode renders for a build from the kubefiles of
 * its repository (or [build]'s for a repository that left the
 * configuration), the Deployment put first and stamped for a deploy, the
 * rest without it, the kinds a cleanup deletes, and the errors of a
 * kubefiles directory that no longer renders. Real config, real kubefiles
 * cache, templates written to a temporary directory. */
#include "build_render.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"
#include "util.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"
#define NAME "b0123456789abcdef0123456789abcdef"

static char dir[64];

static void write_file(const char *name, const char *content)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		abort();
	}
	fputs(content, f);
	fclose(f);
}

/* deployment mode with the Service before the Deployment; no start or
 * stop template */
static void make_kubefiles(void)
{
	snprintf(dir, sizeof dir, "/tmp/rb-test-render-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	write_file("deployment.yaml",
		   "apiVersion: v1\nkind: Service\nmetadata:\n  name: \"{{build_name}}-svc\"\n"
		   "spec:\n  ports: [{port: 8069}]\n---\n"
		   "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: \"{{build_name}}-odoo\"\n"
		   "spec:\n  selector: {matchLabels: {app: odoo}}\n  template:\n"
		   "    metadata: {labels: {app: odoo}}\n"
		   "    spec:\n      containers: [{name: odoo, image: \"{{image_name}}:{{image_tag}}\"}]\n");
	write_file("initialize.yaml",
		   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-init\"\n---\n"
		   "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: \"{{build_name}}-sa\"\n---\n"
		   "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: \"{{build_name}}-initialize\"\n"
		   "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
		   "      containers: [{name: init, image: busybox}]\n");
	write_file("cleanup.yaml",
		   "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: \"{{build_name}}-cleanup\"\n"
		   "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
		   "      containers: [{name: clean, image: busybox}]\n");
}

static void remove_kubefiles(void)
{
	static const char *const files[] = {"deployment.yaml", "initialize.yaml", "cleanup.yaml"};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char path[128];
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static struct config *load(void)
{
	char text[1024], err[512] = "";
	/* [build]'s kubefiles: the repository's, from the test's directory */
	snprintf(text, sizeof text,
		 "[kubernetes]\nnamespace = \"builds\"\n[build]\ndomain = \"rb.example.com\"\n"
		 "[[repos]]\nrepo = 'acme/web'\nimage = \"registry.example.com/acme/odoo:17\"\n"
		 "kubefiles = \"%s\"\n",
		 dir);
	struct config *cfg = config_load_string(text, "t.toml", NULL, err, sizeof err);
	if (!cfg)
		fprintf(stderr, "config: %s\n", err);
	return cfg;
}

static const char *kind_of(const json_t *o)
{
	const char *k = json_string_value(json_object_get(o, "kind"));
	return k ? k : "";
}

static const char *meta_str(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(json_object_get(o, "metadata"), key));
	return v ? v : "";
}

static const char *image_of(const json_t *deployment)
{
	json_t *c = json_array_get(
		json_object_get(json_object_get(json_object_get(json_object_get(deployment, "spec"),
								"template"),
						"spec"),
				"containers"),
		0);
	const char *v = json_string_value(json_object_get(c, "image"));
	return v ? v : "";
}

static const struct build_commit WEB = {"acme/web", "17.0", 0, SHA};

static void test_modes(struct config *cfg, struct kubefiles_cache *kc)
{
	char err[512] = "";
	json_t *list = build_render(cfg, kc, KUBEFILES_DEPLOYMENT, NAME, &WEB, err, sizeof err);
	CHECK(list != NULL);
	if (!list) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_INT(json_array_size(list), 2);
	CHECK_STR(kind_of(json_array_get(list, 0)), "Service");
	json_t *d = json_array_get(list, 1);
	CHECK_STR(kind_of(d), "Deployment");
	CHECK_STR(meta_str(d, "name"), NAME "-odoo");
	CHECK_STR(meta_str(d, "namespace"), "builds");
	CHECK_STR(image_of(d), "registry.example.com/acme/odoo:17");

	/* the rest, without the Deployment; the list given is not changed */
	json_t *rest = build_render_without_deployment(list);
	CHECK_INT(json_array_size(rest), 1);
	CHECK_STR(kind_of(json_array_get(rest, 0)), "Service");
	CHECK_INT(json_array_size(list), 2);
	json_decref(rest);
	json_decref(list);

	/* an optional mode without its template: nothing to apply */
	list = build_render(cfg, kc, KUBEFILES_START, NAME, &WEB, err, sizeof err);
	CHECK(list != NULL && json_is_array(list) && json_array_size(list) == 0);
	json_decref(list);
	list = build_render(cfg, kc, KUBEFILES_INITIALIZE, NAME, &WEB, err, sizeof err);
	CHECK(list != NULL && json_array_size(list) == 3);
	json_decref(list);
}

static void test_deploy_stamp(struct config *cfg, struct kubefiles_cache *kc)
{
	char err[512] = "";
	int64_t created_ms = 1638094830123; /* 2021-11-28T10:20:30.123Z */
	json_t *list = build_render_deployment(cfg, kc, NAME, &WEB, created_ms, err, sizeof err);
	CHECK(list != NULL);
	if (!list)
		return;
	CHECK_INT(json_array_size(list), 2);
	json_t *d = json_array_get(list, 0); /* first: it is the build */
	CHECK_STR(kind_of(d), "Deployment");
	json_t *ann = json_object_get(json_object_get(d, "metadata"), "annotations");
	CHECK_STR(json_string_value(json_object_get(ann, BUILD_ANN_CREATED)),
		  "2021-11-28T10:20:30.123Z");
	CHECK_STR(json_string_value(json_object_get(ann, BUILD_ANN_REASON)), "");
	CHECK_STR(json_string_value(json_object_get(ann, BUILD_ANN_GIT_COMMIT)), SHA);
	CHECK_STR(kind_of(json_array_get(list, 1)), "Service");
	json_decref(list);
}

/* A repository no [[repos]] entry matches any more: [build]'s kubefiles,
 * so that the build can still be cleaned up. */
static void test_unconfigured(struct config *cfg, struct kubefiles_cache *kc)
{
	char err[512] = "";
	struct build_commit gone = {"oca/gone", "16.0", 3, SHA};
	json_t *list = build_render(cfg, kc, KUBEFILES_DEPLOYMENT, NAME, &gone, err, sizeof err);
	CHECK(list != NULL);
	if (!list) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	size_t deployments = 0;
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o)
	{
		if (strcmp(kind_of(o), "Deployment") == 0) {
			deployments++;
			CHECK_STR(image_of(o), "unconfigured:latest");
		}
	}
	CHECK_INT(deployments, 1);
	json_decref(list);
}

static bool has(const json_t *kinds, const char *api_version, const char *kind, size_t *count)
{
	size_t i, n = 0;
	json_t *k;
	json_array_foreach(kinds, i, k)
	{
		if (strcmp(json_string_value(json_object_get(k, "apiVersion")), api_version) == 0 &&
		    strcmp(kind_of(k), kind) == 0)
			n++;
	}
	if (count)
		*count = n;
	return n > 0;
}

static const char *const USUAL[][2] = {
	{"v1", "ConfigMap"}, {"v1", "Secret"}, {"v1", "Service"}, {"v1", "PersistentVolumeClaim"},
	{"networking.k8s.io/v1", "Ingress"}, {"batch/v1", "Job"},
};

static void test_cleanup_kinds(struct config *cfg, struct kubefiles_cache *kc)
{
	json_t *kinds = build_render_cleanup_kinds(cfg, kc, &WEB);
	CHECK(!has(kinds, "apps/v1", "Deployment", NULL));
	for (size_t i = 0; i < ARRAY_SIZE(USUAL); i++) {
		size_t n = 0;
		has(kinds, USUAL[i][0], USUAL[i][1], &n);
		CHECK_INT(n, 1); /* each once, made by the templates or not */
	}
	/* made by the templates, not a usual one */
	CHECK(has(kinds, "v1", "ServiceAccount", NULL));
	CHECK_INT(json_array_size(kinds), ARRAY_SIZE(USUAL) + 1);
	json_decref(kinds);
}

/* The directory loses its templates: renders fail with a message, the
 * cleanup still deletes the usual kinds. */
static void test_broken_dir(struct config *cfg, struct kubefiles_cache *kc)
{
	char path[128];
	snprintf(path, sizeof path, "%s/deployment.yaml", dir);
	unlink(path);
	char err[512] = "";
	CHECK(build_render(cfg, kc, KUBEFILES_DEPLOYMENT, NAME, &WEB, err, sizeof err) == NULL);
	CHECK(err[0] != '\0');
	err[0] = '\0';
	CHECK(build_render_deployment(cfg, kc, NAME, &WEB, 0, err, sizeof err) == NULL);
	CHECK(err[0] != '\0');
	json_t *kinds = build_render_cleanup_kinds(cfg, kc, &WEB);
	CHECK_INT(json_array_size(kinds), ARRAY_SIZE(USUAL));
	json_decref(kinds);
	/* a template that renders an invalid object */
	write_file("deployment.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
				      "  name: \"someone-else\"\n");
	err[0] = '\0';
	CHECK(build_render(cfg, kc, KUBEFILES_DEPLOYMENT, NAME, &WEB, err, sizeof err) == NULL);
	CHECK(strstr(err, "someone-else") != NULL);
	if (!strstr(err, "someone-else"))
		fprintf(stderr, "  err: %s\n", err);
}

int main(void)
{
	make_kubefiles();
	struct config *cfg = load();
	CHECK(cfg != NULL);
	if (cfg) {
		struct kubefiles_cache *kc = kubefiles_cache_new();
		test_modes(cfg, kc);
		test_deploy_stamp(cfg, kc);
		test_unconfigured(cfg, kc);
		test_cleanup_kinds(cfg, kc);
		test_broken_dir(cfg, kc);
		kubefiles_cache_free(kc);
		config_free(cfg);
	}
	remove_kubefiles();
	return UNIT_DONE();
}
