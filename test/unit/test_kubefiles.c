/* kubefiles.c: the default kubefiles in every mode, the contract enforced on
 * what templates render, hostile inputs (refused, or escaped and read back
 * intact), broken kubefiles directories with clear errors, the kinds
 * listing and the reloading cache. Custom kubefiles are written to fresh
 * temporary directories. */
#include "kubefiles.h"
#include "build_render.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "unit.h"
#include "util.h"
#include "validate.h"
#include "yaml_json.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"
#define BUILD "b0123abcd"

static char err[1024];

static struct config_env env_items[] = {{"PGHOST", "postgres.infra"}, {"PGUSER", "odoo"}};
static struct config_env secret_items[] = {{"PGPASSWORD", "p\"w: #x\nline2"}};
static struct config_env_list env = {env_items, 2};
static struct config_env_list secret_env = {secret_items, 1};

static struct kubefiles_ctx sample_ctx(enum kubefiles_mode mode)
{
	return (struct kubefiles_ctx){
		.mode = mode,
		.namespace = "runboat-builds",
		.build_name = BUILD,
		.build_slug = "oca-mis-builder-16-0-pr42-0123456789ab",
		.build_domain = "runboat.example.com",
		.commit = {.repo = "OCA/mis-builder", .target_branch = "16.0", .pr = 42,
			   .git_commit = SHA},
		.image_name = "ghcr.io/oca/oca-ci/py3.10-odoo16.0",
		.image_tag = "latest",
		.build_env = &env,
		.build_secret_env = &secret_env,
		.template_vars = NULL,
	};
}

/* o[k1][k2]... (NULL-terminated keys); "#N" indexes an array. Borrowed. */
static json_t *jget(json_t *o, ...)
{
	va_list ap;
	va_start(ap, o);
	const char *k;
	while (o && (k = va_arg(ap, const char *)) != NULL) {
		if (k[0] == '#')
			o = json_array_get(o, (size_t)atoi(k + 1));
		else
			o = json_object_get(o, k);
	}
	va_end(ap);
	return o;
}

#define JSTR(...) json_string_value(jget(__VA_ARGS__, NULL))

/* The first object of that kind and name (NULL: any name). Borrowed. */
static json_t *find_obj(json_t *objs, const char *kind, const char *name)
{
	size_t i;
	json_t *o;
	json_array_foreach(objs, i, o)
	{
		if (strcmp(JSTR(o, "kind"), kind) == 0 &&
		    (!name || strcmp(JSTR(o, "metadata", "name"), name) == 0))
			return o;
	}
	return NULL;
}

static size_t count_kind(json_t *objs, const char *kind)
{
	size_t i, n = 0;
	json_t *o;
	json_array_foreach(objs, i, o)
		n += strcmp(JSTR(o, "kind"), kind) == 0;
	return n;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct buf b = {0};
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	if (!b.data)
		buf_append(&b, "", 0);
	return buf_steal(&b);
}

/* --- temporary kubefiles directories --- */

static void write_file(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	free(path);
}

static void remove_file(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	unlink(path);
	free(path);
}

static void rm_dir(char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			remove_file(dir, de->d_name);
	if (d)
		closedir(d);
	rmdir(dir);
	free(dir);
}

#define MIN_DEPLOYMENT                                                                      \
	"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: \"{{build_name}}-odoo\"\n" \
	"spec:\n  selector:\n    matchLabels:\n      app: x\n  template:\n    metadata:\n"     \
	"      labels:\n        app: x\n    spec:\n      containers: []\n"
#define MIN_JOB                                                                             \
	"apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: \"{{build_name}}-{{mode}}\"\n"   \
	"spec:\n  template:\n    spec:\n      containers: []\n"

/* A fresh directory with the three required templates (NULL: a minimal
 * valid one). Owned by the caller (rm_dir). */
static char *make_dir(const char *deployment, const char *initialize, const char *cleanup)
{
	char *dir = xstrdup("/tmp/runboat-test-kubefiles-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(2);
	}
	write_file(dir, "deployment.yaml", deployment ? deployment : MIN_DEPLOYMENT);
	write_file(dir, "initialize.yaml", initialize ? initialize : MIN_JOB);
	write_file(dir, "cleanup.yaml", cleanup ? cleanup : MIN_JOB);
	return dir;
}

/* Renders mode of a directory holding deployment_yaml as deployment.yaml;
 * returns the render's code, objects in *out (or NULL). */
static int render_dir(char *dir, enum kubefiles_mode mode, json_t **out)
{
	*out = NULL;
	err[0] = '\0';
	struct kubefiles *kf = kubefiles_load(dir, err, sizeof err);
	if (!kf)
		return -1000;
	struct kubefiles_ctx ctx = sample_ctx(mode);
	int rc = kubefiles_render(kf, &ctx, out, err, sizeof err);
	kubefiles_free(kf);
	return rc;
}

/* Expects rendering deployment_yaml (in deployment mode) to fail with an
 * error containing want. */
static void expect_render_error(int line, const char *deployment_yaml, enum kubefiles_mode mode,
				const char *want)
{
	char *dir = make_dir(deployment_yaml, NULL, NULL);
	json_t *objs;
	int rc = render_dir(dir, mode, &objs);
	unit_checks++;
	if (rc >= 0 || objs || !strstr(err, want) || !strstr(err, dir)) {
		unit_failures++;
		fprintf(stderr, "%s:%d: render should fail with \"%s\": rc %d, err \"%s\"\n", __FILE__,
			line, want, rc, err);
	}
	json_decref(objs);
	rm_dir(dir);
}

/* --- tests --- */

static void test_modes(void)
{
	for (int m = 0; m < KUBEFILES_MODE_COUNT; m++)
		CHECK_INT(kubefiles_mode_parse(kubefiles_mode_str((enum kubefiles_mode)m)), m);
	CHECK_STR(kubefiles_mode_str(KUBEFILES_INITIALIZE), "initialize");
	CHECK_STR(kubefiles_mode_str(KUBEFILES_MODE_COUNT), "?");
	CHECK_INT(kubefiles_mode_parse("Deployment"), -1);
	CHECK_INT(kubefiles_mode_parse(""), -1);
	CHECK_INT(kubefiles_mode_parse(NULL), -1);
}

static void test_context(void)
{
	struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_START);
	json_t *tv = json_pack("{s:s}", "storageClassName", "fast");
	ctx.template_vars = tv;
	json_t *c = kubefiles_context(&ctx);
	CHECK(c != NULL);
	CHECK_STR(JSTR(c, "mode"), "start");
	CHECK(json_is_true(jget(c, "mode_start", NULL)));
	CHECK(json_is_false(jget(c, "mode_deployment", NULL)));
	CHECK(json_is_false(jget(c, "mode_cleanup", NULL)));
	CHECK_STR(JSTR(c, "commit_info", "repo"), "oca/mis-builder");
	CHECK_STR(JSTR(c, "commit_info", "pr"), "42");
	CHECK_STR(JSTR(c, "commit_info", "git_commit"), SHA);
	CHECK_STR(JSTR(c, "build_env", "#1", "name"), "PGUSER");
	CHECK_STR(JSTR(c, "build_env", "#1", "value_base64"), "b2Rvbw==");
	CHECK_STR(JSTR(c, "build_secret_env", "#0", "value"), "p\"w: #x\nline2");
	CHECK_STR(JSTR(c, "template_vars", "storageClassName"), "fast");
	json_decref(c);
	ctx.commit.pr = 0;
	ctx.build_env = NULL;
	ctx.template_vars = NULL;
	c = kubefiles_context(&ctx);
	CHECK_STR(JSTR(c, "commit_info", "pr"), "");
	CHECK_INT(json_array_size(jget(c, "build_env", NULL)), 0);
	CHECK(json_is_object(jget(c, "template_vars", NULL)));
	json_decref(c);
	json_decref(tv);
}

/* The contract on every object of a render. */
static void check_contract(json_t *objs, const struct kubefiles_ctx *ctx)
{
	size_t i;
	json_t *o;
	json_array_foreach(objs, i, o)
	{
		const char *name = JSTR(o, "metadata", "name");
		CHECK(name && strncmp(name, BUILD "-", strlen(BUILD) + 1) == 0);
		CHECK_STR(JSTR(o, "metadata", "namespace"), ctx->namespace);
		CHECK_STR(JSTR(o, "metadata", "labels", "runboat/build"), BUILD);
		CHECK_STR(JSTR(o, "metadata", "annotations", "runboat/repo"), "oca/mis-builder");
		CHECK_STR(JSTR(o, "metadata", "annotations", "runboat/target-branch"),
			  ctx->commit.target_branch);
		CHECK_STR(JSTR(o, "metadata", "annotations", "runboat/pr"),
			  ctx->commit.pr ? "42" : "");
		CHECK_STR(JSTR(o, "metadata", "annotations", "runboat/git-commit"), SHA);
		json_t *tmpl = jget(o, "spec", "template", NULL);
		if (tmpl)
			CHECK_STR(JSTR(tmpl, "metadata", "labels", "runboat/build"), BUILD);
	}
}

static void test_defaults_deployment(void)
{
	struct kubefiles *kf = kubefiles_load("kubefiles", err, sizeof err);
	CHECK(kf != NULL);
	if (!kf) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	for (int m = 0; m < KUBEFILES_MODE_COUNT; m++)
		CHECK(kubefiles_has_mode(kf, (enum kubefiles_mode)m));
	struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_DEPLOYMENT);
	json_t *objs = NULL;
	CHECK_INT(kubefiles_render(kf, &ctx, &objs, err, sizeof err), 0);
	if (!objs) {
		fprintf(stderr, "  %s\n", err);
		kubefiles_free(kf);
		return;
	}
	check_contract(objs, &ctx);
	CHECK_INT(json_array_size(objs), 8);
	CHECK(find_obj(objs, "PersistentVolumeClaim", BUILD "-data") != NULL);
	CHECK(find_obj(objs, "Service", BUILD "-odoo") != NULL);
	CHECK_INT(count_kind(objs, "Deployment"), 1);
	CHECK_INT(count_kind(objs, "Job"), 0);

	json_t *d = find_obj(objs, "Deployment", BUILD "-odoo");
	CHECK(d != NULL);
	CHECK_STR(JSTR(d, "apiVersion"), "apps/v1");
	CHECK(json_integer_value(jget(d, "spec", "replicas", NULL)) == 0 &&
	      json_is_integer(jget(d, "spec", "replicas", NULL)));
	/* no ReplicaSet until its initialization unpauses it */
	CHECK(json_is_true(jget(d, "spec", "paused", NULL)));
	CHECK_STR(JSTR(d, "metadata", "annotations", "runboat/init-status"), "todo");
	CHECK_INT(json_array_size(jget(d, "metadata", "finalizers", NULL)), 1);
	CHECK_STR(JSTR(d, "metadata", "finalizers", "#0"), "runboat/cleanup");
	CHECK_STR(JSTR(d, "spec", "selector", "matchLabels", "runboat/build"), BUILD);
	CHECK_STR(JSTR(d, "spec", "selector", "matchLabels", "app"), "odoo");
	CHECK_STR(JSTR(d, "spec", "template", "metadata", "labels", "app"), "odoo");
	json_t *odoo = jget(d, "spec", "template", "spec", "containers", "#0", NULL);
	json_t *mailhog = jget(d, "spec", "template", "spec", "containers", "#1", NULL);
	CHECK_STR(JSTR(odoo, "image"), "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest");
	CHECK_STR(JSTR(odoo, "envFrom", "#0", "secretRef", "name"), BUILD "-odoosecretenv");
	CHECK_STR(JSTR(odoo, "envFrom", "#1", "configMapRef", "name"), BUILD "-odooenv");
	CHECK_STR(JSTR(mailhog, "name"), "mailhog");
	CHECK_STR(JSTR(d, "spec", "template", "spec", "volumes", "#1", "persistentVolumeClaim",
		       "claimName"),
		  BUILD "-data");

	json_t *svc = find_obj(objs, "Service", BUILD "-odoo");
	CHECK_STR(JSTR(svc, "spec", "selector", "runboat/build"), BUILD);
	json_t *ing = find_obj(objs, "Ingress", BUILD "-odoo");
	CHECK_STR(JSTR(ing, "spec", "rules", "#0", "host"),
		  "oca-mis-builder-16-0-pr42-0123456789ab.runboat.example.com");
	json_t *mail = find_obj(objs, "Ingress", BUILD "-mailhog");
	CHECK_STR(JSTR(mail, "spec", "rules", "#0", "host"),
		  "oca-mis-builder-16-0-pr42-0123456789ab.mail.runboat.example.com");
	CHECK(jget(ing, "spec", "ingressClassName", NULL) == NULL);

	json_t *envcm = find_obj(objs, "ConfigMap", BUILD "-odooenv");
	CHECK_STR(JSTR(envcm, "data", "PGDATABASE"), BUILD);
	CHECK_STR(JSTR(envcm, "data", "RUNBOAT_GIT_REPO"), "oca/mis-builder");
	CHECK_STR(JSTR(envcm, "data", "RUNBOAT_GIT_REF"), SHA);
	CHECK_STR(JSTR(envcm, "data", "PGHOST"), "postgres.infra");
	json_t *sec = find_obj(objs, "Secret", BUILD "-odoosecretenv");
	const char *b64 = JSTR(sec, "data", "PGPASSWORD");
	unsigned char dec[128] = {0};
	int n = b64 ? EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)strlen(b64)) : -1;
	CHECK(n >= (int)strlen(secret_items[0].value));
	CHECK(memcmp(dec, secret_items[0].value, strlen(secret_items[0].value)) == 0);

	/* the scripts, included as indented partials, come back byte for byte */
	json_t *scripts = find_obj(objs, "ConfigMap", BUILD "-runboat-scripts");
	const char *names[] = {"runboat-initialize.sh", "runboat-start.sh", "runboat-cleanup.sh"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char *path = xasprintf("kubefiles/%s", names[i]);
		char *want = read_text(path);
		CHECK(want != NULL);
		CHECK_STR(JSTR(scripts, "data", names[i]), want);
		free(want);
		free(path);
	}
	json_decref(objs);

	/* template_vars reach the templates */
	json_t *tv = json_pack("{s:s, s:s, s:s}", "storageClassName", "fast", "ingressClassName",
			       "nginx", "storageSize", "1Gi");
	ctx.template_vars = tv;
	ctx.commit.pr = 0;
	CHECK_INT(kubefiles_render(kf, &ctx, &objs, err, sizeof err), 0);
	check_contract(objs, &ctx);
	json_t *pvc = find_obj(objs, "PersistentVolumeClaim", NULL);
	CHECK_STR(JSTR(pvc, "spec", "storageClassName"), "fast");
	CHECK_STR(JSTR(pvc, "spec", "resources", "requests", "storage"), "1Gi");
	/* storageSize alone: the limit follows, or the PVC would be invalid */
	CHECK_STR(JSTR(pvc, "spec", "resources", "limits", "storage"), "1Gi");
	CHECK_STR(JSTR(find_obj(objs, "Ingress", BUILD "-mailhog"), "spec", "ingressClassName"),
		  "nginx");
	json_decref(objs);
	json_decref(tv);
	kubefiles_free(kf);
}

/* The default kubefiles' initialize mode renders the PVC, ConfigMaps and
 * Secret exactly as deployment mode does: once deployment mode's objects
 * are applied, the initialization applies only its Job. And an object that
 * differs is kept, as is one the list holds twice only once. */
static void test_defaults_init_after_deploy(void)
{
	struct kubefiles *kf = kubefiles_load("kubefiles", err, sizeof err);
	CHECK(kf != NULL);
	if (!kf)
		return;
	struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_DEPLOYMENT);
	json_t *deploy = NULL, *init = NULL;
	CHECK_INT(kubefiles_render(kf, &ctx, &deploy, err, sizeof err), 0);
	ctx = sample_ctx(KUBEFILES_INITIALIZE);
	CHECK_INT(kubefiles_render(kf, &ctx, &init, err, sizeof err), 0);
	json_t *rest = build_render_without_deployment(deploy);
	CHECK_INT(count_kind(rest, "Deployment"), 0);
	CHECK_INT(json_array_size(rest), json_array_size(deploy) - 1);
	json_t *out = json_array();
	build_render_add_new(out, init, rest);
	CHECK_INT(json_array_size(out), 1);
	CHECK_INT(count_kind(out, "Job"), 1);
	/* nothing known: all of it, each once */
	json_t *all = json_array();
	build_render_add_new(all, init, NULL);
	build_render_add_new(all, init, NULL);
	CHECK_INT(json_array_size(all), json_array_size(init));
	/* a changed copy is not the same object */
	json_t *pvc = json_deep_copy(find_obj(init, "PersistentVolumeClaim", BUILD "-data"));
	json_object_set_new(json_object_get(pvc, "metadata"), "annotations",
			    json_pack("{s:s}", "x", "y"));
	json_t *one = json_pack("[o]", pvc);
	json_t *out2 = json_array();
	build_render_add_new(out2, one, rest);
	CHECK_INT(json_array_size(out2), 1);
	json_decref(out2);
	json_decref(one);
	json_decref(all);
	json_decref(out);
	json_decref(rest);
	json_decref(init);
	json_decref(deploy);
	kubefiles_free(kf);
}

static void test_defaults_other_modes(void)
{
	struct kubefiles *kf = kubefiles_load("kubefiles", err, sizeof err);
	CHECK(kf != NULL);
	if (!kf)
		return;
	struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_INITIALIZE);
	json_t *objs = NULL;
	CHECK_INT(kubefiles_render(kf, &ctx, &objs, err, sizeof err), 0);
	check_contract(objs, &ctx);
	CHECK_INT(count_kind(objs, "Deployment"), 0);
	CHECK_INT(count_kind(objs, "Job"), 1);
	/* the Python runboat's PVC exactly (its spec is immutable) */
	json_t *pvc = find_obj(objs, "PersistentVolumeClaim", BUILD "-data");
	CHECK(pvc != NULL);
	CHECK_STR(JSTR(pvc, "spec", "accessModes", "#0"), "ReadWriteOnce");
	CHECK_INT(json_array_size(jget(pvc, "spec", "accessModes", NULL)), 1);
	CHECK_STR(JSTR(pvc, "spec", "resources", "requests", "storage"), "200Mi");
	CHECK_STR(JSTR(pvc, "spec", "resources", "limits", "storage"), "250Mi");
	json_t *job = find_obj(objs, "Job", BUILD "-initialize");
	CHECK(job != NULL);
	CHECK_STR(JSTR(job, "metadata", "labels", "runboat/job-kind"), "initialize");
	CHECK_STR(JSTR(job, "spec", "template", "metadata", "labels", "runboat/job-kind"),
		  "initialize");
	CHECK_STR(JSTR(job, "spec", "template", "metadata", "labels", "runboat/build"), BUILD);
	CHECK_INT(json_integer_value(jget(job, "spec", "backoffLimit", NULL)), 0);
	CHECK_INT(json_integer_value(jget(job, "spec", "activeDeadlineSeconds", NULL)), 1200);
	CHECK_STR(JSTR(job, "spec", "template", "spec", "restartPolicy"), "Never");
	CHECK_STR(JSTR(job, "spec", "template", "spec", "containers", "#0", "image"),
		  "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest");
	json_decref(objs);

	ctx.mode = KUBEFILES_CLEANUP;
	CHECK_INT(kubefiles_render(kf, &ctx, &objs, err, sizeof err), 0);
	check_contract(objs, &ctx);
	CHECK_INT(count_kind(objs, "Job"), 1);
	CHECK_INT(count_kind(objs, "PersistentVolumeClaim"), 0);
	job = find_obj(objs, "Job", BUILD "-cleanup");
	CHECK_STR(JSTR(job, "metadata", "labels", "runboat/job-kind"), "cleanup");
	CHECK_STR(JSTR(job, "spec", "template", "metadata", "labels", "runboat/job-kind"), "cleanup");
	/* the Python runboat's cleanup Job (immutable pod template) */
	CHECK_INT(json_integer_value(jget(job, "spec", "completions", NULL)), 1);
	CHECK_INT(json_integer_value(jget(job, "spec", "backoffLimit", NULL)), 6);
	CHECK(jget(job, "spec", "activeDeadlineSeconds", NULL) == NULL);
	CHECK_STR(JSTR(job, "spec", "template", "spec", "containers", "#0", "image"), "postgres");
	CHECK(jget(job, "spec", "template", "spec", "containers", "#0", "resources", NULL) == NULL);
	CHECK_STR(JSTR(job, "spec", "template", "metadata", "annotations", "runboat/git-commit"),
		  ctx.commit.git_commit);
	CHECK(find_obj(objs, "ConfigMap", BUILD "-runboat-scripts") != NULL);
	json_decref(objs);

	/* start and stop render nothing with the defaults */
	for (int m = KUBEFILES_START; m <= KUBEFILES_STOP; m++) {
		ctx.mode = (enum kubefiles_mode)m;
		CHECK_INT(kubefiles_render(kf, &ctx, &objs, err, sizeof err), 0);
		CHECK(json_is_array(objs) && json_array_size(objs) == 0);
		json_decref(objs);
	}
	kubefiles_free(kf);
}

/* Every interpolation of the default templates sits inside a double-quoted
 * scalar (the escape is made for that place), and nothing bypasses the
 * escape. */
static void test_defaults_quoting(void)
{
	const char *files[] = {"deployment.yaml", "initialize.yaml", "cleanup.yaml", "start.yaml",
			       "stop.yaml", "_data.yaml", "_env.yaml"};
	for (size_t f = 0; f < ARRAY_SIZE(files); f++) {
		char *path = xasprintf("kubefiles/%s", files[f]);
		char *text = read_text(path);
		CHECK(text != NULL);
		if (!text) {
			free(path);
			continue;
		}
		CHECK(strstr(text, "{{{") == NULL && strstr(text, "{{&") == NULL &&
		      strstr(text, "{{=") == NULL);
		int lineno = 1;
		for (char *line = text; *line; lineno++) {
			char *eol = strchr(line, '\n');
			size_t len = eol ? (size_t)(eol - line) : strlen(line);
			for (char *t = line; (t = strstr(t, "{{")) && t < line + len; t += 2) {
				char c = t[2];
				if (c == '#' || c == '^' || c == '/' || c == '>' || c == '!')
					continue;
				/* a variable: an odd number of quotes before it */
				int quotes = 0;
				for (char *q = line; q < t; q++)
					quotes += *q == '"';
				unit_checks++;
				if (quotes % 2 != 1) {
					unit_failures++;
					fprintf(stderr, "%s:%d: unquoted interpolation: %.*s\n", path,
						lineno, (int)len, line);
				}
			}
			line += len + (eol ? 1 : 0);
		}
		free(text);
		free(path);
	}
}

/* A template that puts the branch (and the repo) in several YAML places. */
#define ECHO_DEPLOYMENT                                                                    \
	MIN_DEPLOYMENT "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n"                   \
		       "  name: \"{{build_name}}-echo\"\n"                                    \
		       "  annotations:\n    echo: \"{{commit_info.target_branch}}\"\n"         \
		       "data:\n  \"{{commit_info.target_branch}}\": \"{{commit_info.target_branch}}\"\n" \
		       "  list: [\"{{commit_info.target_branch}}\", \"{{commit_info.repo}}\"]\n" \
		       "  flow: {a: \"x{{commit_info.target_branch}}y\"}\n"                   \
		       "  after: \"fixed\"\n"

static void test_hostile_branches(void)
{
	/* valid git branch names that a naive template would choke on */
	static const struct {
		const char *branch;
		bool valid; /* a git branch name (else refused before rendering) */
	} hostile[] = {
		{"a\"b", true},
		{"a\"\nkind: Namespace", false}, /* newline */
		{"x#y", true},
		{"#comment", true},
		{"{{build_name}}", true},
		{"{{>deployment.yaml}}", true},
		{"{{> deployment.yaml}}", false}, /* space */
		{"---", false},                   /* leading '-' */
		{"x/---", true},
		{"feat/---/x", true},
		{"a\xe2\x80\xa8" "b", true}, /* U+2028 LINE SEPARATOR */
		{"a\xc2\x85" "b", true},      /* U+0085 NEXT LINE */
		{"a\xe2\x80\xa9" "b", true}, /* U+2029 */
		{"\xef\xbb\xbf" "bom", true}, /* U+FEFF */
		{"it's", true},
		{"\"]},{\"a\",\"b", true},
		{"&anchor", true},
		{"*alias", false}, /* '*' */
		{"!!binary", true},
		{"%YAML", true},
		{"|", true},
		{">-", true},
		{"'single'", true},
		{"a,b{c}", true},
		{"\xc3\xa9t\xc3\xa9", true}, /* été */
		{"trailing\\", false},
		{"key: value", false},
		{"a:b", false},
		{"a\tb", false},
		{"a\x7f" "b", false},
		{"bad\xff" "utf8", false},
		{"..", false},
	};
	char *dir = make_dir(ECHO_DEPLOYMENT, NULL, NULL);
	struct kubefiles *kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf != NULL);
	size_t nvalid = 0;
	for (size_t i = 0; kf && i < ARRAY_SIZE(hostile); i++) {
		const char *b = hostile[i].branch;
		bool valid = hostile[i].valid;
		CHECK_INT(validate_branch(b), valid);
		nvalid += valid;
		struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_DEPLOYMENT);
		ctx.commit.target_branch = b;
		json_t *objs = NULL;
		err[0] = '\0';
		int rc = kubefiles_render(kf, &ctx, &objs, err, sizeof err);
		if (!valid) {
			CHECK_INT(rc, -EINVAL);
			CHECK(objs == NULL);
			CHECK(strstr(err, "invalid target branch") != NULL);
			CHECK(strchr(err, '\n') == NULL);
			continue;
		}
		CHECK_INT(rc, 0);
		if (rc != 0) {
			fprintf(stderr, "  branch #%zu: %s\n", i, err);
			continue;
		}
		/* same objects, same structure, the value read back intact */
		CHECK_INT(json_array_size(objs), 2);
		json_t *cm = find_obj(objs, "ConfigMap", BUILD "-echo");
		CHECK(cm != NULL);
		CHECK_STR(JSTR(cm, "metadata", "annotations", "echo"), b);
		CHECK_STR(json_string_value(json_object_get(jget(cm, "data", NULL), b)), b);
		CHECK_STR(JSTR(cm, "data", "list", "#0"), b);
		CHECK_INT(json_array_size(jget(cm, "data", "list", NULL)), 2);
		char *xy = xasprintf("x%sy", b);
		CHECK_STR(JSTR(cm, "data", "flow", "a"), xy);
		free(xy);
		CHECK_STR(JSTR(cm, "data", "after"), "fixed");
		CHECK_INT(json_object_size(jget(cm, "data", NULL)), 4);
		json_t *d = find_obj(objs, "Deployment", NULL);
		CHECK_STR(JSTR(d, "metadata", "annotations", "runboat/target-branch"), b);
		json_decref(objs);
	}
	/* both kinds are exercised: the refused ones are marked above */
	CHECK_INT(nvalid, 21);
	kubefiles_free(kf);
	rm_dir(dir);
}

static void expect_invalid(int line, struct kubefiles_ctx ctx, const char *want)
{
	struct kubefiles *kf = kubefiles_load("kubefiles", err, sizeof err);
	json_t *objs = NULL;
	err[0] = '\0';
	int rc = kf ? kubefiles_render(kf, &ctx, &objs, err, sizeof err) : -1;
	unit_checks++;
	if (rc != -EINVAL || objs || !strstr(err, want) || strchr(err, '\n')) {
		unit_failures++;
		fprintf(stderr, "%s:%d: expected -EINVAL with \"%s\": rc %d, err \"%s\"\n", __FILE__,
			line, want, rc, err);
	}
	json_decref(objs);
	kubefiles_free(kf);
}

static void test_invalid_inputs(void)
{
	struct kubefiles_ctx c;
#define INVALID(field, value, want)                                                         \
	do {                                                                                \
		c = sample_ctx(KUBEFILES_DEPLOYMENT);                                        \
		c.field = value;                                                            \
		expect_invalid(__LINE__, c, want);                                          \
	} while (0)
	INVALID(commit.repo, "mis-builder", "invalid repo");
	INVALID(commit.repo, "a/b/c", "invalid repo");
	INVALID(commit.repo, "oca/..", "invalid repo");
	INVALID(commit.repo, "oca/x\ny", "invalid repo");
	INVALID(commit.repo, "oca/x\"y", "invalid repo");
	INVALID(commit.repo, NULL, "invalid repo");
	INVALID(commit.git_commit, "0123456789abcdef", "invalid commit sha");
	INVALID(commit.git_commit, "0123456789ABCDEF0123456789ABCDEF01234567", "invalid commit sha");
	INVALID(commit.git_commit, "0123456789abcdef0123456789abcdef0123456g", "invalid commit sha");
	INVALID(commit.git_commit, SHA "\n", "invalid commit sha");
	INVALID(commit.pr, -1, "invalid PR number");
	INVALID(commit.target_branch, "", "invalid target branch");
	INVALID(commit.target_branch, NULL, "invalid target branch");
	INVALID(commit.target_branch, "a\nb", "invalid target branch");
	INVALID(build_name, "B123", "invalid build name");
	INVALID(build_name, "b1\"", "invalid build name");
	INVALID(build_name, "", "invalid build name");
	INVALID(build_slug, "a.b", "invalid build slug");
	INVALID(build_slug, "-a", "invalid build slug");
	INVALID(namespace, "Builds", "invalid namespace");
	INVALID(build_domain, "example..com", "invalid build domain");
	INVALID(build_domain, "ex ample.com", "invalid build domain");
	INVALID(mode, KUBEFILES_MODE_COUNT, "invalid mode");
	INVALID(image_tag, "", "no image");
	static struct config_env bad_env_items[] = {{"1PG", "x"}};
	static struct config_env_list bad_env = {bad_env_items, 1};
	INVALID(build_env, &bad_env, "invalid variable name");
	static struct config_env bad_utf8_items[] = {{"PG", "\xff"}};
	static struct config_env_list bad_utf8 = {bad_utf8_items, 1};
	INVALID(build_secret_env, &bad_utf8, "not valid UTF-8");
	json_t *arr = json_array();
	INVALID(template_vars, arr, "template_vars");
	json_decref(arr);
#undef INVALID
	/* a hostile value never reaches the message raw */
	c = sample_ctx(KUBEFILES_DEPLOYMENT);
	c.commit.repo = "evil\n2026-01-01 fake log line";
	expect_invalid(__LINE__, c, "invalid repo \"evil?2026");
}

static void test_contract_errors(void)
{
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n",
			    KUBEFILES_DEPLOYMENT, "object 2 (ConfigMap \"other\"): name does not start with the build name");
	/* a longer build name is not a prefix of ours */
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}x\"\n",
			    KUBEFILES_DEPLOYMENT, "does not start with the build name");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-A\"\n",
			    KUBEFILES_DEPLOYMENT, "characters outside [a-z0-9.-]");
	expect_render_error(__LINE__, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-x\"\n",
			    KUBEFILES_DEPLOYMENT, "renders 0 Deployments in deployment mode, exactly one");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\n" "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: \"{{build_name}}-two\"\n",
			    KUBEFILES_DEPLOYMENT, "renders 2 Deployments");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\n" MIN_DEPLOYMENT, KUBEFILES_DEPLOYMENT,
			    "object 2 (Deployment \"" BUILD "-odoo\"): is rendered twice");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"{{build_name}}\"\n",
			    KUBEFILES_DEPLOYMENT, "(Namespace \"" BUILD "\"): is cluster-scoped");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: \"{{build_name}}-x\"\n",
			    KUBEFILES_DEPLOYMENT, "is cluster-scoped");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\n- a\n- b\n", KUBEFILES_DEPLOYMENT,
			    "object 2: is not a mapping");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-x\"\n",
			    KUBEFILES_DEPLOYMENT, "object 2: has no apiVersion or kind");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x\n",
			    KUBEFILES_DEPLOYMENT, "ConfigMap without metadata.name");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-x\"\n  labels: [a]\n",
			    KUBEFILES_DEPLOYMENT, "metadata.labels is not a mapping");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-x\"\n  finalizers: x\n",
			    KUBEFILES_DEPLOYMENT, "metadata.finalizers is not a list");
	/* invalid YAML, template errors, unknown partials */
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\na: [unclosed\n", KUBEFILES_DEPLOYMENT,
			    "deployment.yaml: rendered YAML: line");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "---\na: b\n a: c\n", KUBEFILES_DEPLOYMENT,
			    "rendered YAML");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "{{#build_env}}\n", KUBEFILES_DEPLOYMENT,
			    "deployment.yaml: line 15: unclosed section 'build_env'");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "{{> nope.yaml}}\n", KUBEFILES_DEPLOYMENT,
			    "deployment.yaml: unknown partial 'nope.yaml'");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "{{> ../initialize.yaml}}\n", KUBEFILES_DEPLOYMENT,
			    "invalid tag name");
	expect_render_error(__LINE__, MIN_DEPLOYMENT "{{> deployment.yaml}}\n", KUBEFILES_DEPLOYMENT,
			    "nested deeper");

	/* a Deployment outside deployment mode; Job counts */
	char *dir = make_dir(NULL, MIN_DEPLOYMENT, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-x\"\n");
	json_t *objs;
	CHECK(render_dir(dir, KUBEFILES_INITIALIZE, &objs) == -EINVAL);
	CHECK(strstr(err, "a Deployment may only be rendered in deployment mode") != NULL);
	CHECK(render_dir(dir, KUBEFILES_CLEANUP, &objs) == -EINVAL);
	CHECK(strstr(err, "cleanup.yaml: renders 0 Jobs in cleanup mode, exactly one is required") != NULL);
	rm_dir(dir);
	dir = make_dir(NULL, MIN_JOB "---\n" "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: \"{{build_name}}-two\"\n", NULL);
	CHECK(render_dir(dir, KUBEFILES_INITIALIZE, &objs) == -EINVAL);
	CHECK(strstr(err, "renders 2 Jobs in initialize mode") != NULL);
	rm_dir(dir);
}

/* What runboat sets or removes whatever the template says. */
static void test_contract_overrides(void)
{
	const char *tmpl =
		"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: \"{{build_name}}\"\n"
		"  namespace: kube-system\n  labels:\n    runboat/build: someone-else\n    keep: me\n"
		"  annotations:\n    runboat/init-status: succeeded\n    runboat/repo: evil/repo\n"
		"  finalizers: [other/finalizer]\n"
		"spec:\n  replicas: 3\n  paused: false\n  selector:\n    matchLabels:\n"
		"      runboat/build: x\n  template:\n    spec:\n      containers: []\n"
		"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}.cfg\"\n"
		"  finalizers: [runboat/cleanup, other/keep]\n"
		"---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: \"{{build_name}}-warmup\"\n"
		"  labels:\n    runboat/job-kind: initialize\nspec:\n  template:\n    metadata:\n"
		"      labels:\n        runboat/job-kind: initialize\n    spec:\n      containers: []\n"
		"---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: \"{{build_name}}-cron\"\n"
		"spec:\n  schedule: \"@daily\"\n  jobTemplate:\n    spec:\n      template:\n"
		"        spec:\n          containers: []\n"
		"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: \"{{build_name}}-nosel\"\n"
		"spec:\n  type: ExternalName\n  externalName: example.com\n"
		"---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: \"{{build_name}}-db\"\n"
		"spec:\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n"
		"      labels:\n        app: db\n"
		"---\napiVersion: example.com/v1\nkind: Namespace\nmetadata:\n  name: \"{{build_name}}-crd\"\n";
	char *dir = make_dir(tmpl, NULL, NULL);
	json_t *objs;
	CHECK_INT(render_dir(dir, KUBEFILES_DEPLOYMENT, &objs), 0);
	if (!objs) {
		fprintf(stderr, "  %s\n", err);
		rm_dir(dir);
		return;
	}
	json_t *d = find_obj(objs, "Deployment", BUILD);
	CHECK_STR(JSTR(d, "metadata", "namespace"), "runboat-builds");
	CHECK_STR(JSTR(d, "metadata", "labels", "runboat/build"), BUILD);
	CHECK_STR(JSTR(d, "metadata", "labels", "keep"), "me");
	CHECK_STR(JSTR(d, "metadata", "annotations", "runboat/init-status"), "todo");
	CHECK_STR(JSTR(d, "metadata", "annotations", "runboat/repo"), "oca/mis-builder");
	CHECK_INT(json_integer_value(jget(d, "spec", "replicas", NULL)), 0);
	CHECK(json_is_true(jget(d, "spec", "paused", NULL)));
	CHECK_INT(json_array_size(jget(d, "metadata", "finalizers", NULL)), 2);
	CHECK_STR(JSTR(d, "metadata", "finalizers", "#0"), "other/finalizer");
	CHECK_STR(JSTR(d, "metadata", "finalizers", "#1"), "runboat/cleanup");
	CHECK_STR(JSTR(d, "spec", "selector", "matchLabels", "runboat/build"), BUILD);
	CHECK_STR(JSTR(d, "spec", "template", "metadata", "labels", "runboat/build"), BUILD);

	json_t *cm = find_obj(objs, "ConfigMap", BUILD ".cfg");
	CHECK_INT(json_array_size(jget(cm, "metadata", "finalizers", NULL)), 1);
	CHECK_STR(JSTR(cm, "metadata", "finalizers", "#0"), "other/keep");

	/* job-kind only where the contract puts it */
	json_t *job = find_obj(objs, "Job", NULL);
	CHECK(jget(job, "metadata", "labels", "runboat/job-kind", NULL) == NULL);
	CHECK(jget(job, "spec", "template", "metadata", "labels", "runboat/job-kind", NULL) == NULL);
	CHECK_STR(JSTR(job, "spec", "template", "metadata", "labels", "runboat/build"), BUILD);

	json_t *cron = find_obj(objs, "CronJob", NULL);
	CHECK_STR(JSTR(cron, "spec", "jobTemplate", "metadata", "labels", "runboat/build"), BUILD);
	CHECK_STR(JSTR(cron, "spec", "jobTemplate", "spec", "template", "metadata", "labels",
		       "runboat/build"),
		  BUILD);
	json_t *svc = find_obj(objs, "Service", NULL);
	CHECK(jget(svc, "spec", "selector", NULL) == NULL);
	json_t *sts = find_obj(objs, "StatefulSet", NULL);
	CHECK_STR(JSTR(sts, "spec", "selector", "matchLabels", "runboat/build"), BUILD);
	CHECK_STR(JSTR(sts, "spec", "selector", "matchLabels", "app"), "db");
	CHECK_STR(JSTR(sts, "spec", "template", "metadata", "labels", "runboat/build"), BUILD);
	/* a custom kind named Namespace, in another group, is namespaced */
	CHECK(find_obj(objs, "Namespace", NULL) != NULL);
	json_decref(objs);
	rm_dir(dir);
}

static void test_load_errors(void)
{
	struct kubefiles *kf = kubefiles_load("/nonexistent/kubefiles", err, sizeof err);
	CHECK(kf == NULL);
	CHECK(strstr(err, "/nonexistent/kubefiles: cannot open the kubefiles directory") != NULL);

	char *dir = make_dir(NULL, NULL, NULL);
	remove_file(dir, "cleanup.yaml");
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf == NULL);
	char *want = xasprintf("%s: missing cleanup.yaml, expected a kubefiles directory with "
			       "deployment.yaml, initialize.yaml and cleanup.yaml (start.yaml, "
			       "stop.yaml optional)", dir);
	CHECK_STR(err, want);
	free(want);
	/* every missing template in one line */
	remove_file(dir, "deployment.yaml");
	write_file(dir, "start.yaml", MIN_JOB);
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf == NULL);
	CHECK(strstr(err, ": missing deployment.yaml, cleanup.yaml, expected") != NULL);
	/* an empty directory (no file at all: bsearch must not see files == NULL) */
	remove_file(dir, "start.yaml");
	remove_file(dir, "initialize.yaml");
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf == NULL);
	want = xasprintf("%s: no kubefile in the directory, expected a kubefiles directory with "
			 "deployment.yaml, initialize.yaml and cleanup.yaml (start.yaml, stop.yaml "
			 "optional)", dir);
	CHECK_STR(err, want);
	free(want);
	write_file(dir, "deployment.yaml", MIN_DEPLOYMENT);
	write_file(dir, "initialize.yaml", MIN_JOB);
	write_file(dir, "cleanup.yaml", MIN_JOB);

	/* optional modes render nothing */
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf != NULL);
	CHECK(!kubefiles_has_mode(kf, KUBEFILES_START));
	struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_STOP);
	json_t *objs = NULL;
	CHECK_INT(kubefiles_render(kf, &ctx, &objs, err, sizeof err), 0);
	CHECK_INT(json_array_size(objs), 0);
	json_decref(objs);
	/* ... but inputs are still checked */
	ctx.commit.git_commit = "nope";
	CHECK_INT(kubefiles_render(kf, &ctx, &objs, err, sizeof err), -EINVAL);
	kubefiles_free(kf);

	/* hidden files and subdirectories are ignored, binary files refused */
	write_file(dir, ".hidden", "\xff\xfe");
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf != NULL);
	kubefiles_free(kf);
	write_file(dir, "logo.png", "\x89PNG\xff");
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf == NULL);
	CHECK(strstr(err, "logo.png: not valid UTF-8") != NULL);
	remove_file(dir, "logo.png");

	char *path = xasprintf("%s/nul.txt", dir);
	FILE *f = fopen(path, "w");
	fwrite("a\0b", 1, 3, f);
	fclose(f);
	free(path);
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf == NULL);
	CHECK(strstr(err, "nul.txt: holds a NUL byte") != NULL);
	remove_file(dir, "nul.txt");

	char *big = xmalloc(KUBEFILES_MAX_FILE_BYTES + 2);
	memset(big, '#', KUBEFILES_MAX_FILE_BYTES + 1);
	big[KUBEFILES_MAX_FILE_BYTES + 1] = '\0';
	write_file(dir, "big.sh", big);
	free(big);
	kf = kubefiles_load(dir, err, sizeof err);
	CHECK(kf == NULL);
	CHECK(strstr(err, "big.sh: larger than") != NULL);
	remove_file(dir, "big.sh");
	rm_dir(dir);
}

static void test_kinds(void)
{
	struct kubefiles *kf = kubefiles_load("kubefiles", err, sizeof err);
	CHECK(kf != NULL);
	if (!kf)
		return;
	json_t *kinds = kubefiles_kinds(kf, NULL, err, sizeof err);
	CHECK(kinds != NULL);
	char *s = json_dumps(kinds, JSON_COMPACT);
	CHECK_STR(s, "[{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\"},"
		     "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\"},"
		     "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"Ingress\"},"
		     "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"},"
		     "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\"},"
		     "{\"apiVersion\":\"v1\",\"kind\":\"Secret\"},"
		     "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}]");
	free(s);
	json_decref(kinds);
	/* a base context from the configuration only */
	struct kubefiles_ctx base = {.build_env = &env, .build_secret_env = &secret_env};
	kinds = kubefiles_kinds(kf, &base, err, sizeof err);
	CHECK_INT(json_array_size(kinds), 7);
	json_decref(kinds);
	kubefiles_free(kf);

	/* objects only PR builds, or only one mode, produce are listed */
	char *dir = make_dir(NULL, NULL, NULL);
	write_file(dir, "stop.yaml",
		   "{{#commit_info.pr}}\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n"
		   "  name: \"{{build_name}}-pr\"\n{{/commit_info.pr}}\n");
	kf = kubefiles_load(dir, err, sizeof err);
	kinds = kubefiles_kinds(kf, NULL, err, sizeof err);
	s = json_dumps(kinds, JSON_COMPACT);
	CHECK_STR(s, "[{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\"},"
		     "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\"},"
		     "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\"}]");
	free(s);
	json_decref(kinds);
	kubefiles_free(kf);
	/* a mode that does not render: NULL and the error */
	write_file(dir, "start.yaml", "{{#x}}\n");
	kf = kubefiles_load(dir, err, sizeof err);
	kinds = kubefiles_kinds(kf, NULL, err, sizeof err);
	CHECK(kinds == NULL);
	CHECK(strstr(err, "start.yaml") != NULL);
	kubefiles_free(kf);
	rm_dir(dir);
}

static void touch_later(const char *dir, const char *name, int seconds)
{
	char *path = xasprintf("%s/%s", dir, name);
	struct timespec ts[2] = {{.tv_sec = 1700000000 + seconds}, {.tv_sec = 1700000000 + seconds}};
	CHECK_INT(utimensat(AT_FDCWD, path, ts, 0), 0);
	free(path);
}

static void test_cache(void)
{
	struct kubefiles_cache *c = kubefiles_cache_new();
	char *dir = make_dir(NULL, NULL, NULL);
	const struct kubefiles *a = kubefiles_cache_get(c, dir, err, sizeof err);
	CHECK(a != NULL);
	const struct kubefiles *b = kubefiles_cache_get(c, dir, err, sizeof err);
	CHECK(a == b); /* nothing changed: no reload */
	CHECK_STR(kubefiles_dir(b), dir);
	CHECK(!kubefiles_has_mode(b, KUBEFILES_START));

	/* a new file, then a changed file, are seen */
	write_file(dir, "start.yaml", "");
	b = kubefiles_cache_get(c, dir, err, sizeof err);
	CHECK(b != NULL && kubefiles_has_mode(b, KUBEFILES_START));
	write_file(dir, "start.yaml",
		   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-s\"\n");
	touch_later(dir, "start.yaml", 1);
	b = kubefiles_cache_get(c, dir, err, sizeof err);
	struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_START);
	json_t *objs = NULL;
	CHECK(b != NULL);
	if (b) {
		CHECK_INT(kubefiles_render(b, &ctx, &objs, err, sizeof err), 0);
		CHECK_INT(json_array_size(objs), 1);
		json_decref(objs);
	}
	/* same size, only the mtime differs */
	write_file(dir, "start.yaml",
		   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{build_name}}-t\"\n");
	touch_later(dir, "start.yaml", 2);
	b = kubefiles_cache_get(c, dir, err, sizeof err);
	CHECK(b != NULL);
	if (b) {
		CHECK_INT(kubefiles_render(b, &ctx, &objs, err, sizeof err), 0);
		CHECK_STR(JSTR(objs, "#0", "metadata", "name"), BUILD "-t");
		json_decref(objs);
	}
	/* broken: an error, nothing stale */
	remove_file(dir, "deployment.yaml");
	CHECK(kubefiles_cache_get(c, dir, err, sizeof err) == NULL);
	CHECK(strstr(err, "missing deployment.yaml") != NULL);
	write_file(dir, "deployment.yaml", MIN_DEPLOYMENT);
	CHECK(kubefiles_cache_get(c, dir, err, sizeof err) != NULL);
	/* two directories side by side */
	CHECK(kubefiles_cache_get(c, "kubefiles", err, sizeof err) != NULL);
	CHECK(kubefiles_cache_get(c, dir, err, sizeof err) != NULL);
	rm_dir(dir);
	kubefiles_cache_free(c);
	kubefiles_cache_free(NULL);
	kubefiles_free(NULL);
}

/* The rendered text (what `runboat render --format raw` prints). */
static void test_render_text(void)
{
	struct kubefiles *kf = kubefiles_load("kubefiles", err, sizeof err);
	CHECK(kf != NULL);
	if (!kf)
		return;
	struct kubefiles_ctx ctx = sample_ctx(KUBEFILES_DEPLOYMENT);
	struct buf out = {0};
	CHECK_INT(kubefiles_render_text(kf, &ctx, &out, err, sizeof err), 0);
	CHECK(out.data && strstr(out.data, "name: \"" BUILD "-odoo\"") != NULL);
	/* the secret value, escaped but readable in the ConfigMap? no: base64 */
	CHECK(out.data && strstr(out.data, "line2") == NULL);
	json_t *docs = out.data ? yaml_json_parse_stream(out.data, out.len, err, sizeof err) : NULL;
	CHECK_INT(json_array_size(docs), 8);
	json_decref(docs);
	buf_free(&out);
	kubefiles_free(kf);
}

int main(void)
{
	RUN(test_modes);
	RUN(test_context);
	RUN(test_defaults_deployment);
	RUN(test_defaults_other_modes);
	RUN(test_defaults_init_after_deploy);
	RUN(test_defaults_quoting);
	RUN(test_hostile_branches);
	RUN(test_invalid_inputs);
	RUN(test_contract_errors);
	RUN(test_contract_overrides);
	RUN(test_load_errors);
	RUN(test_kinds);
	RUN(test_cache);
	RUN(test_render_text);
	return UNIT_DONE();
}
