/* Kubefiles: load a template directory, render a mode with Mustache, parse
 * the YAML stream, and enforce the Kubernetes contract on every object. */
#include "kubefiles.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mustache.h"
#include "validate.h"
#include "yaml_json.h"

static const char *const MODE_NAMES[KUBEFILES_MODE_COUNT] = {
	[KUBEFILES_DEPLOYMENT] = "deployment", [KUBEFILES_INITIALIZE] = "initialize",
	[KUBEFILES_START] = "start",           [KUBEFILES_STOP] = "stop",
	[KUBEFILES_CLEANUP] = "cleanup",
};

static const bool MODE_REQUIRED[KUBEFILES_MODE_COUNT] = {
	[KUBEFILES_DEPLOYMENT] = true,
	[KUBEFILES_INITIALIZE] = true,
	[KUBEFILES_CLEANUP] = true,
};

/* Cluster-scoped kinds of Kubernetes itself (group, kind): refused, builds
 * live in their namespace. */
static const struct {
	const char *group, *kind;
} CLUSTER_SCOPED[] = {
	{"", "Namespace"},
	{"", "Node"},
	{"", "PersistentVolume"},
	{"", "ComponentStatus"},
	{"rbac.authorization.k8s.io", "ClusterRole"},
	{"rbac.authorization.k8s.io", "ClusterRoleBinding"},
	{"apiextensions.k8s.io", "CustomResourceDefinition"},
	{"apiregistration.k8s.io", "APIService"},
	{"admissionregistration.k8s.io", "MutatingWebhookConfiguration"},
	{"admissionregistration.k8s.io", "ValidatingWebhookConfiguration"},
	{"admissionregistration.k8s.io", "ValidatingAdmissionPolicy"},
	{"admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"},
	{"admissionregistration.k8s.io", "MutatingAdmissionPolicy"},
	{"admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"},
	{"storage.k8s.io", "StorageClass"},
	{"storage.k8s.io", "CSIDriver"},
	{"storage.k8s.io", "CSINode"},
	{"storage.k8s.io", "VolumeAttachment"},
	{"storage.k8s.io", "VolumeAttributesClass"},
	{"scheduling.k8s.io", "PriorityClass"},
	{"node.k8s.io", "RuntimeClass"},
	{"networking.k8s.io", "IngressClass"},
	{"networking.k8s.io", "IPAddress"},
	{"networking.k8s.io", "ServiceCIDR"},
	{"certificates.k8s.io", "CertificateSigningRequest"},
	{"certificates.k8s.io", "ClusterTrustBundle"},
	{"flowcontrol.apiserver.k8s.io", "FlowSchema"},
	{"flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"},
	{"resource.k8s.io", "DeviceClass"},
	{"resource.k8s.io", "ResourceSlice"},
	{"internal.apiserver.k8s.io", "StorageVersion"},
	{"storagemigration.k8s.io", "StorageVersionMigration"},
	{"authentication.k8s.io", "TokenReview"},
	{"authentication.k8s.io", "SelfSubjectReview"},
	{"authorization.k8s.io", "SubjectAccessReview"},
	{"authorization.k8s.io", "SelfSubjectAccessReview"},
	{"authorization.k8s.io", "SelfSubjectRulesReview"},
};

/* Workload kinds whose spec.template is a pod template. */
static const struct {
	const char *group, *kind;
	bool selector; /* spec.selector.matchLabels selects the pods */
} WORKLOADS[] = {
	{"apps", "Deployment", true},
	{"apps", "StatefulSet", true},
	{"apps", "DaemonSet", true},
	{"apps", "ReplicaSet", true},
	{"batch", "Job", false},
	{"", "ReplicationController", false},
};

const char *kubefiles_mode_str(enum kubefiles_mode mode)
{
	return (unsigned)mode < KUBEFILES_MODE_COUNT ? MODE_NAMES[mode] : "?";
}

int kubefiles_mode_parse(const char *s)
{
	for (int i = 0; s && i < KUBEFILES_MODE_COUNT; i++)
		if (strcmp(s, MODE_NAMES[i]) == 0)
			return i;
	return -1;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	str_one_line(err); /* whatever a path or a parser quotes */
}

/* A value for an error message: at most 64 bytes, non-printable bytes as
 * '?', so hostile input cannot forge log lines. */
static const char *shown(const char *s, char out[72])
{
	size_t n = 0;
	if (!s)
		s = "(null)";
	for (; *s && n < 64; s++)
		out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	if (*s) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
	return out;
}

/* --- loading --- */

struct kf_file {
	char *name;
	char *text; /* NUL-terminated */
	size_t len;
	struct stat st;
};

struct kubefiles {
	char *dir;
	struct kf_file *files; /* sorted by name */
	size_t nfiles;
	const struct kf_file *modes[KUBEFILES_MODE_COUNT];
	struct buf fingerprint;
};

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct kf_file *)a)->name, ((const struct kf_file *)b)->name);
}

static void files_free(struct kf_file *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(files[i].name);
		free(files[i].text);
	}
	free(files);
}

/* The regular files of dir (names not starting with '.', symlinks
 * followed), sorted by name, with their stat; text not read. */
static int scan_dir(const char *dir, struct kf_file **out, size_t *nout, char *err, size_t errlen)
{
	*out = NULL;
	*nout = 0;
	DIR *d = opendir(dir);
	if (!d) {
		int e = errno;
		set_err(err, errlen, "%s: cannot open the kubefiles directory: %s", dir, strerror(e));
		return -e;
	}
	struct kf_file *files = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *path = xasprintf("%s/%s", dir, de->d_name);
		struct stat st;
		int src = stat(path, &st);
		free(path);
		if (src != 0 || !S_ISREG(st.st_mode))
			continue; /* dangling link, directory, fifo...: not a kubefile */
		if (n == KUBEFILES_MAX_FILES) {
			set_err(err, errlen, "%s: more than %d files", dir, KUBEFILES_MAX_FILES);
			rc = -E2BIG;
			goto fail;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			files = xrealloc(files, cap * sizeof(*files));
		}
		files[n] = (struct kf_file){.name = xstrdup(de->d_name), .st = st};
		n++;
	}
	if (errno) {
		rc = -errno;
		set_err(err, errlen, "%s: cannot read the directory: %s", dir, strerror(errno));
		goto fail;
	}
	closedir(d);
	if (n)
		qsort(files, n, sizeof(*files), cmp_file);
	*out = files;
	*nout = n;
	return 0;
fail:
	closedir(d);
	files_free(files, n);
	return rc;
}

/* What identifies the state of the files: names, devices, inodes, sizes and
 * modification times. */
static void fingerprint(const struct kf_file *files, size_t n, struct buf *out)
{
	buf_reset(out);
	for (size_t i = 0; i < n; i++) {
		const struct stat *st = &files[i].st;
		buf_printf(out, "%ju %ju %jd %jd.%09ld ", (uintmax_t)st->st_dev,
			   (uintmax_t)st->st_ino, (intmax_t)st->st_size, (intmax_t)st->st_mtim.tv_sec,
			   (long)st->st_mtim.tv_nsec);
		buf_append(out, files[i].name, strlen(files[i].name) + 1);
	}
	if (!out->data)
		buf_append(out, "", 0);
}

/* Reads path into f->text, at most KUBEFILES_MAX_FILE_BYTES. */
static int read_file(const char *dir, struct kf_file *f, char *err, size_t errlen)
{
	char *path = xasprintf("%s/%s", dir, f->name);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	free(path);
	if (fd < 0) {
		int e = errno;
		set_err(err, errlen, "%s/%s: cannot open: %s", dir, f->name, strerror(e));
		return -e;
	}
	struct buf b = {0};
	char chunk[16384];
	int rc = 0;
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			set_err(err, errlen, "%s/%s: cannot read: %s", dir, f->name, strerror(errno));
			break;
		}
		if (r == 0)
			break;
		if (b.len + (size_t)r > KUBEFILES_MAX_FILE_BYTES) {
			rc = -E2BIG;
			set_err(err, errlen, "%s/%s: larger than %zu bytes", dir, f->name,
				KUBEFILES_MAX_FILE_BYTES);
			break;
		}
		buf_append(&b, chunk, (size_t)r);
	}
	close(fd);
	if (rc == 0 && !b.data)
		buf_append(&b, "", 0);
	if (rc == 0 && memchr(b.data, '\0', b.len)) {
		rc = -EINVAL;
		set_err(err, errlen, "%s/%s: holds a NUL byte (not a text file)", dir, f->name);
	}
	if (rc == 0) {
		/* jansson checks UTF-8 */
		json_t *s = json_stringn(b.data, b.len);
		if (!s) {
			rc = -EINVAL;
			set_err(err, errlen, "%s/%s: not valid UTF-8", dir, f->name);
		}
		json_decref(s);
	}
	if (rc < 0) {
		buf_free(&b);
		return rc;
	}
	f->len = b.len;
	f->text = buf_steal(&b);
	return 0;
}

static const struct kf_file *find_file(const struct kubefiles *kf, const char *name)
{
	if (kf->nfiles == 0)
		return NULL; /* files is NULL then: bsearch(NULL, 0) is undefined */
	struct kf_file key = {.name = (char *)name};
	return bsearch(&key, kf->files, kf->nfiles, sizeof(key), cmp_file);
}

struct kubefiles *kubefiles_load(const char *dir, char *err, size_t errlen)
{
	struct kubefiles *kf = xcalloc(1, sizeof(*kf));
	kf->dir = xstrdup(dir);
	if (scan_dir(dir, &kf->files, &kf->nfiles, err, errlen) < 0)
		goto fail;
	size_t total = 0;
	for (size_t i = 0; i < kf->nfiles; i++) {
		if (read_file(dir, &kf->files[i], err, errlen) < 0)
			goto fail;
		total += kf->files[i].len;
		if (total > KUBEFILES_MAX_TOTAL_BYTES) {
			set_err(err, errlen, "%s: files larger than %zu bytes in all", dir,
				KUBEFILES_MAX_TOTAL_BYTES);
			goto fail;
		}
	}
	struct buf missing = {0};
	for (int m = 0; m < KUBEFILES_MODE_COUNT; m++) {
		char name[32];
		snprintf(name, sizeof name, "%s.yaml", MODE_NAMES[m]);
		kf->modes[m] = find_file(kf, name);
		if (!kf->modes[m] && MODE_REQUIRED[m])
			buf_printf(&missing, "%s%s", missing.len ? ", " : "", name);
	}
	if (missing.len) {
		/* one line naming everything to add */
		set_err(err, errlen, "%s: %s%s, expected a kubefiles directory with deployment.yaml, "
			"initialize.yaml and cleanup.yaml (start.yaml, stop.yaml optional)", dir,
			kf->nfiles ? "missing " : "no kubefile in the directory",
			kf->nfiles ? missing.data : "");
		buf_free(&missing);
		goto fail;
	}
	fingerprint(kf->files, kf->nfiles, &kf->fingerprint);
	return kf;
fail:
	kubefiles_free(kf);
	return NULL;
}

void kubefiles_free(struct kubefiles *kf)
{
	if (!kf)
		return;
	files_free(kf->files, kf->nfiles);
	buf_free(&kf->fingerprint);
	free(kf->dir);
	free(kf);
}

const char *kubefiles_dir(const struct kubefiles *kf)
{
	return kf->dir;
}

bool kubefiles_has_mode(const struct kubefiles *kf, enum kubefiles_mode mode)
{
	return (unsigned)mode < KUBEFILES_MODE_COUNT && kf->modes[mode] != NULL;
}

/* --- context --- */

void kubefiles_ctx_from_config(struct kubefiles_ctx *ctx, const struct config *cfg,
			       const struct config_repo *repo)
{
	ctx->namespace = cfg->kubernetes.namespace;
	ctx->build_domain = cfg->build.domain;
	if (repo) {
		ctx->image_name = repo->image_name;
		ctx->image_tag = repo->image_tag;
		ctx->build_env = &repo->env;
		ctx->build_secret_env = &repo->secret_env;
		ctx->template_vars = repo->template_vars;
	} else {
		ctx->build_env = &cfg->build.env;
		ctx->build_secret_env = &cfg->build.secret_env;
		ctx->template_vars = cfg->build.template_vars;
	}
}

/* Sets key to a string copy of val (NULL: ""); false if val is not UTF-8. */
static bool set_str(json_t *obj, const char *key, const char *val)
{
	json_t *s = json_string(val ? val : "");
	if (!s)
		return false;
	json_object_set_new(obj, key, s);
	return true;
}

static json_t *env_list_json(const struct config_env_list *l, bool *ok)
{
	json_t *arr = json_array();
	for (size_t i = 0; l && i < l->count; i++) {
		const char *v = l->items[i].value ? l->items[i].value : "";
		size_t len = strlen(v);
		char *b64 = xmalloc(4 * ((len + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)v, (int)len);
		json_t *e = json_object();
		*ok = set_str(e, "name", l->items[i].name) && *ok;
		*ok = set_str(e, "value", v) && *ok;
		*ok = set_str(e, "value_base64", b64) && *ok;
		free(b64);
		json_array_append_new(arr, e);
	}
	return arr;
}

static void lowercase_into(const char *s, char *out, size_t outlen)
{
	size_t i = 0;
	for (; s && s[i] && i + 1 < outlen; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
}

json_t *kubefiles_context(const struct kubefiles_ctx *ctx)
{
	bool ok = true;
	json_t *c = json_object();
	ok = set_str(c, "namespace", ctx->namespace) && ok;
	ok = set_str(c, "mode", kubefiles_mode_str(ctx->mode)) && ok;
	for (int m = 0; m < KUBEFILES_MODE_COUNT; m++) {
		char key[32];
		snprintf(key, sizeof key, "mode_%s", MODE_NAMES[m]);
		json_object_set_new(c, key, json_boolean((int)ctx->mode == m));
	}
	ok = set_str(c, "build_name", ctx->build_name) && ok;
	ok = set_str(c, "build_slug", ctx->build_slug) && ok;
	ok = set_str(c, "build_domain", ctx->build_domain) && ok;

	json_t *ci = json_object();
	char repo[BUILD_REPO_MAX + 1];
	lowercase_into(ctx->commit.repo, repo, sizeof repo);
	ok = set_str(ci, "repo", repo) && ok;
	ok = set_str(ci, "target_branch", ctx->commit.target_branch) && ok;
	char pr[24] = "";
	if (ctx->commit.pr > 0)
		snprintf(pr, sizeof pr, "%d", ctx->commit.pr);
	ok = set_str(ci, "pr", pr) && ok;
	ok = set_str(ci, "git_commit", ctx->commit.git_commit) && ok;
	json_object_set_new(c, "commit_info", ci);

	ok = set_str(c, "image_name", ctx->image_name) && ok;
	ok = set_str(c, "image_tag", ctx->image_tag) && ok;
	json_object_set_new(c, "build_env", env_list_json(ctx->build_env, &ok));
	json_object_set_new(c, "build_secret_env", env_list_json(ctx->build_secret_env, &ok));
	json_object_set_new(c, "template_vars", json_is_object(ctx->template_vars)
							 ? json_incref(ctx->template_vars)
							 : json_object());
	if (!ok) {
		json_decref(c);
		return NULL;
	}
	return c;
}

/* --- input validation --- */

static int validate_env(const struct config_env_list *l, const char *what, char *err,
			size_t errlen)
{
	char b[72];
	for (size_t i = 0; l && i < l->count; i++) {
		if (!validate_env_name(l->items[i].name)) {
			set_err(err, errlen, "%s: invalid variable name \"%s\", expected [A-Za-z_][A-Za-z0-9_]*",
				what, shown(l->items[i].name, b));
			return -EINVAL;
		}
	}
	return 0;
}

static int validate_ctx(const struct kubefiles_ctx *c, char *err, size_t errlen)
{
	char b[72];
	if ((unsigned)c->mode >= KUBEFILES_MODE_COUNT) {
		set_err(err, errlen, "invalid mode %d", (int)c->mode);
		return -EINVAL;
	}
	if (!c->namespace || !validate_dns_label(c->namespace, strlen(c->namespace))) {
		set_err(err, errlen, "invalid namespace \"%s\", expected a DNS-1123 label",
			shown(c->namespace, b));
		return -EINVAL;
	}
	if (!c->build_name || !build_valid_name(c->build_name)) {
		set_err(err, errlen, "invalid build name \"%s\", expected [a-z][a-z0-9-]* (at most %d)",
			shown(c->build_name, b), BUILD_NAME_MAX);
		return -EINVAL;
	}
	if (!c->build_slug || !validate_dns_label(c->build_slug, strlen(c->build_slug))) {
		set_err(err, errlen, "invalid build slug \"%s\", expected a DNS-1123 label",
			shown(c->build_slug, b));
		return -EINVAL;
	}
	if (!validate_dns_name(c->build_domain)) {
		set_err(err, errlen, "invalid build domain \"%s\", expected a lowercase DNS name",
			shown(c->build_domain, b));
		return -EINVAL;
	}
	if (!c->commit.repo || !validate_repo(c->commit.repo)) {
		set_err(err, errlen, "invalid repo \"%s\", expected owner/name", shown(c->commit.repo, b));
		return -EINVAL;
	}
	if (!c->commit.target_branch || !validate_branch(c->commit.target_branch)) {
		set_err(err, errlen, "invalid target branch \"%s\", expected a git branch name",
			shown(c->commit.target_branch, b));
		return -EINVAL;
	}
	if (c->commit.pr != 0 && !validate_pr(c->commit.pr)) {
		set_err(err, errlen, "invalid PR number %d", c->commit.pr);
		return -EINVAL;
	}
	if (!c->commit.git_commit || !validate_sha(c->commit.git_commit)) {
		set_err(err, errlen, "invalid commit sha \"%s\", expected 40 or 64 lowercase hex digits",
			shown(c->commit.git_commit, b));
		return -EINVAL;
	}
	if (!c->image_name || !*c->image_name || !c->image_tag || !*c->image_tag) {
		set_err(err, errlen, "no image name or tag");
		return -EINVAL;
	}
	if (c->template_vars && !json_is_object(c->template_vars)) {
		set_err(err, errlen, "template_vars is not an object");
		return -EINVAL;
	}
	if (validate_env(c->build_env, "build env", err, errlen) < 0 ||
	    validate_env(c->build_secret_env, "build secret env", err, errlen) < 0)
		return -EINVAL;
	return 0;
}

/* --- rendering --- */

struct partials {
	const struct kubefiles *kf;
	char missing[128]; /* first unknown partial, "" if none */
};

static const char *on_partial(const char *name, void *data)
{
	struct partials *p = data;
	const struct kf_file *f = find_file(p->kf, name);
	if (f)
		return f->text;
	if (!p->missing[0])
		snprintf(p->missing, sizeof p->missing, "%s", name);
	return NULL;
}

static const char *mode_file(enum kubefiles_mode mode, char out[32])
{
	snprintf(out, 32, "%s.yaml", kubefiles_mode_str(mode));
	return out;
}

int kubefiles_render_text(const struct kubefiles *kf, const struct kubefiles_ctx *ctx,
			  struct buf *out, char *err, size_t errlen)
{
	int rc = validate_ctx(ctx, err, errlen);
	if (rc < 0)
		return rc;
	const struct kf_file *f = kf->modes[ctx->mode];
	if (!f) {
		if (!out->data)
			buf_append(out, "", 0);
		return 0;
	}
	json_t *c = kubefiles_context(ctx);
	if (!c) {
		set_err(err, errlen, "a value of the build (env, secret env) is not valid UTF-8");
		return -EINVAL;
	}
	struct partials p = {.kf = kf};
	struct mustache_opts opts = {
		.partial = on_partial,
		.escape = mustache_escape_yaml_dq,
		.data = &p,
		.max_output = KUBEFILES_MAX_OUTPUT,
	};
	char merr[512];
	rc = mustache_render(f->text, c, &opts, out, merr, sizeof merr);
	json_decref(c);
	if (rc < 0) {
		set_err(err, errlen, "%s/%s: %s", kf->dir, f->name, merr);
		return rc;
	}
	if (p.missing[0]) {
		char b[72];
		set_err(err, errlen, "%s/%s: unknown partial '%s' (no such file in the directory)",
			kf->dir, f->name, shown(p.missing, b));
		return -EINVAL;
	}
	return 0;
}

/* --- the contract --- */

struct enforce {
	const struct kubefiles_ctx *ctx;
	const char *file;
	char repo[BUILD_REPO_MAX + 1];
	char pr[24];
	json_t *seen; /* "group/kind/name" -> true */
	int deployments, jobs;
	char *err;
	size_t errlen;
};

static int obj_fail(struct enforce *e, size_t idx, const char *kind, const char *name,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int obj_fail(struct enforce *e, size_t idx, const char *kind, const char *name,
		    const char *fmt, ...)
{
	if (!e->err || !e->errlen)
		return -EINVAL;
	char b[72];
	int n;
	if (kind && name)
		n = snprintf(e->err, e->errlen, "%s: object %zu (%s \"%s\"): ", e->file, idx + 1,
			     kind, shown(name, b));
	else
		n = snprintf(e->err, e->errlen, "%s: object %zu: ", e->file, idx + 1);
	if (n < 0 || (size_t)n >= e->errlen)
		return -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->err + n, e->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* The mapping at parent[key], created when absent or null; NULL when it is
 * something else. */
static json_t *child_object(json_t *parent, const char *key)
{
	json_t *v = json_object_get(parent, key);
	if (!v || json_is_null(v)) {
		v = json_object();
		json_object_set_new(parent, key, v);
	}
	return json_is_object(v) ? v : NULL;
}

static const char *str_field(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* "apps" of "apps/v1", "" of "v1". */
static void api_group(const char *api_version, char *out, size_t outlen)
{
	const char *slash = strchr(api_version, '/');
	size_t n = slash ? (size_t)(slash - api_version) : 0;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, api_version, n);
	out[n] = '\0';
}

static bool is_kind(const char *group, const char *kind, const char *g, const char *k)
{
	return strcmp(group, g) == 0 && strcmp(kind, k) == 0;
}

/* DNS-1123 subdomain characters; the build name or "<build>-..." or
 * "<build>.<...>". */
static const char *check_name(const char *name, const char *build)
{
	size_t len = strlen(name), blen = strlen(build);
	if (len > 253)
		return "is longer than 253 characters";
	for (const char *s = name; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.'))
			return "has characters outside [a-z0-9.-]";
	if (strncmp(name, build, blen) != 0 ||
	    (name[blen] != '\0' && name[blen] != '-' && name[blen] != '.'))
		return "does not start with the build name";
	return NULL;
}

/* Sets (value != NULL) or removes the runboat labels of a labels mapping. */
static void set_labels(json_t *labels, const char *build, const char *job_kind)
{
	json_object_set_new(labels, BUILD_LABEL, json_string(build));
	if (job_kind)
		json_object_set_new(labels, BUILD_LABEL_JOB_KIND, json_string(job_kind));
	else
		json_object_del(labels, BUILD_LABEL_JOB_KIND);
}

/* Labels the pod template at tmpl (a mapping) when there is one; -1 when its
 * metadata or labels are not mappings. */
static int label_template(json_t *tmpl, const char *build, const char *job_kind)
{
	if (!json_is_object(tmpl))
		return 0;
	json_t *md = child_object(tmpl, "metadata");
	json_t *labels = md ? child_object(md, "labels") : NULL;
	if (!labels)
		return -1;
	set_labels(labels, build, job_kind);
	return 0;
}

static int enforce_object(struct enforce *e, json_t *obj, size_t idx)
{
	const struct kubefiles_ctx *ctx = e->ctx;
	if (!json_is_object(obj))
		return obj_fail(e, idx, NULL, NULL, "is not a mapping");
	const char *api = str_field(obj, "apiVersion");
	const char *kind = str_field(obj, "kind");
	if (!api || !kind)
		return obj_fail(e, idx, NULL, NULL, "has no apiVersion or kind (strings)");
	json_t *md = json_object_get(obj, "metadata");
	const char *name = json_is_object(md) ? str_field(md, "name") : NULL;
	if (!name)
		return obj_fail(e, idx, NULL, NULL, "%s without metadata.name", kind);
	/* copies: the strings below may be replaced in obj */
	char group[128], kind_c[128], name_c[254];
	api_group(api, group, sizeof group);
	snprintf(kind_c, sizeof kind_c, "%s", kind);
	snprintf(name_c, sizeof name_c, "%s", name);
	kind = kind_c;

	const char *why = check_name(name, ctx->build_name);
	if (why)
		return obj_fail(e, idx, kind, name, "name %s (\"%s\")", why, ctx->build_name);
	name = name_c;
	for (size_t i = 0; i < ARRAY_SIZE(CLUSTER_SCOPED); i++)
		if (is_kind(group, kind, CLUSTER_SCOPED[i].group, CLUSTER_SCOPED[i].kind))
			return obj_fail(e, idx, kind, name,
					"is cluster-scoped: builds may only create objects in "
					"their namespace");

	char key[128 + 128 + 256 + 3];
	snprintf(key, sizeof key, "%s/%s/%s", group, kind, name);
	if (json_object_get(e->seen, key))
		return obj_fail(e, idx, kind, name, "is rendered twice");
	json_object_set_new(e->seen, key, json_true());

	json_object_set_new(md, "namespace", json_string(ctx->namespace));

	bool is_deployment = is_kind(group, kind, "apps", "Deployment");
	bool is_job = is_kind(group, kind, "batch", "Job");
	const char *job_kind = NULL;
	if (is_job) {
		e->jobs++;
		if (ctx->mode == KUBEFILES_INITIALIZE)
			job_kind = "initialize";
		else if (ctx->mode == KUBEFILES_CLEANUP)
			job_kind = "cleanup";
	}

	json_t *labels = child_object(md, "labels");
	if (!labels)
		return obj_fail(e, idx, kind, name, "metadata.labels is not a mapping");
	set_labels(labels, ctx->build_name, job_kind);

	json_t *ann = child_object(md, "annotations");
	if (!ann)
		return obj_fail(e, idx, kind, name, "metadata.annotations is not a mapping");
	json_object_set_new(ann, BUILD_ANN_REPO, json_string(e->repo));
	json_object_set_new(ann, BUILD_ANN_TARGET_BRANCH, json_string(ctx->commit.target_branch));
	json_object_set_new(ann, BUILD_ANN_PR, json_string(e->pr));
	json_object_set_new(ann, BUILD_ANN_GIT_COMMIT, json_string(ctx->commit.git_commit));

	json_t *fin = json_object_get(md, "finalizers");
	if (fin && !json_is_null(fin) && !json_is_array(fin))
		return obj_fail(e, idx, kind, name, "metadata.finalizers is not a list");

	json_t *spec = json_object_get(obj, "spec");
	for (size_t i = 0; i < ARRAY_SIZE(WORKLOADS); i++) {
		if (!is_kind(group, kind, WORKLOADS[i].group, WORKLOADS[i].kind) ||
		    !json_is_object(spec))
			continue;
		if (label_template(json_object_get(spec, "template"), ctx->build_name, job_kind) < 0)
			return obj_fail(e, idx, kind, name,
					"spec.template.metadata(.labels) is not a mapping");
		json_t *sel = json_object_get(spec, "selector");
		if (WORKLOADS[i].selector && json_is_object(sel)) {
			json_t *ml = child_object(sel, "matchLabels");
			if (!ml)
				return obj_fail(e, idx, kind, name,
						"spec.selector.matchLabels is not a mapping");
			json_object_set_new(ml, BUILD_LABEL, json_string(ctx->build_name));
		}
	}
	if (is_kind(group, kind, "batch", "CronJob") && json_is_object(spec)) {
		json_t *jt = json_object_get(spec, "jobTemplate");
		if (label_template(jt, ctx->build_name, NULL) < 0)
			return obj_fail(e, idx, kind, name, "spec.jobTemplate.metadata is not a mapping");
		json_t *jspec = json_is_object(jt) ? json_object_get(jt, "spec") : NULL;
		if (json_is_object(jspec) &&
		    label_template(json_object_get(jspec, "template"), ctx->build_name, NULL) < 0)
			return obj_fail(e, idx, kind, name,
					"spec.jobTemplate.spec.template.metadata is not a mapping");
	}
	if (is_kind(group, kind, "", "Service") && json_is_object(spec)) {
		json_t *sel = json_object_get(spec, "selector");
		if (json_is_object(sel) && json_object_size(sel) > 0)
			json_object_set_new(sel, BUILD_LABEL, json_string(ctx->build_name));
	}

	if (is_deployment) {
		e->deployments++;
		if (ctx->mode != KUBEFILES_DEPLOYMENT)
			return obj_fail(e, idx, kind, name,
					"a Deployment may only be rendered in deployment mode");
		json_object_set_new(ann, BUILD_ANN_INIT_STATUS, json_string("todo"));
		spec = child_object(obj, "spec");
		if (!spec)
			return obj_fail(e, idx, kind, name, "spec is not a mapping");
		json_object_set_new(spec, "replicas", json_integer(0));
		/* no ReplicaSet until its initialization begins: the
		 * controller-manager's writes for a new Deployment (a
		 * ReplicaSet, its status, the Deployment's) wait until then,
		 * not during a burst of deploys (actions.c unpauses it) */
		json_object_set_new(spec, "paused", json_true());
		if (!json_is_array(fin)) {
			fin = json_array();
			json_object_set_new(md, "finalizers", fin);
		}
		bool have = false;
		for (size_t i = 0; i < json_array_size(fin); i++) {
			const char *f = json_string_value(json_array_get(fin, i));
			have = have || (f && strcmp(f, BUILD_FINALIZER) == 0);
		}
		if (!have)
			json_array_append_new(fin, json_string(BUILD_FINALIZER));
	} else if (json_is_array(fin)) {
		/* only the Deployment's is removed by the cleaner: elsewhere it
		 * would keep the object forever */
		for (size_t i = json_array_size(fin); i-- > 0;) {
			const char *f = json_string_value(json_array_get(fin, i));
			if (f && strcmp(f, BUILD_FINALIZER) == 0)
				json_array_remove(fin, i);
		}
	}
	return 0;
}

static int enforce_all(const struct kubefiles_ctx *ctx, const char *file, json_t *objs, char *err,
		       size_t errlen)
{
	struct enforce e = {.ctx = ctx, .file = file, .err = err, .errlen = errlen};
	lowercase_into(ctx->commit.repo, e.repo, sizeof e.repo);
	if (ctx->commit.pr > 0)
		snprintf(e.pr, sizeof e.pr, "%d", ctx->commit.pr);
	e.seen = json_object();
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < json_array_size(objs); i++)
		rc = enforce_object(&e, json_array_get(objs, i), i);
	json_decref(e.seen);
	if (rc < 0)
		return rc;
	if (ctx->mode == KUBEFILES_DEPLOYMENT && e.deployments != 1) {
		set_err(err, errlen, "%s: renders %d Deployments in deployment mode, exactly one is required",
			file, e.deployments);
		return -EINVAL;
	}
	if ((ctx->mode == KUBEFILES_INITIALIZE || ctx->mode == KUBEFILES_CLEANUP) && e.jobs != 1) {
		set_err(err, errlen, "%s: renders %d Jobs in %s mode, exactly one is required", file,
			e.jobs, kubefiles_mode_str(ctx->mode));
		return -EINVAL;
	}
	return 0;
}

int kubefiles_render(const struct kubefiles *kf, const struct kubefiles_ctx *ctx, json_t **objects,
		     char *err, size_t errlen)
{
	*objects = NULL;
	struct buf out = {0};
	int rc = kubefiles_render_text(kf, ctx, &out, err, errlen);
	if (rc < 0) {
		buf_free(&out);
		return rc;
	}
	char fbuf[32];
	char *file = xasprintf("%s/%s", kf->dir, mode_file(ctx->mode, fbuf));
	char yerr[256];
	json_t *objs = yaml_json_parse_stream(out.data, out.len, yerr, sizeof yerr);
	buf_free(&out);
	if (!objs) {
		set_err(err, errlen, "%s: rendered YAML: %s (see it with runboat render --format raw)",
			file, yerr);
		rc = -EINVAL;
		goto out;
	}
	if (json_array_size(objs) > KUBEFILES_MAX_OBJECTS) {
		set_err(err, errlen, "%s: renders %zu objects, at most %d are allowed", file,
			json_array_size(objs), KUBEFILES_MAX_OBJECTS);
		rc = -E2BIG;
		goto out;
	}
	rc = enforce_all(ctx, file, objs, err, errlen);
	if (rc == 0) {
		*objects = objs;
		objs = NULL;
	}
out:
	json_decref(objs);
	free(file);
	return rc;
}

/* --- kinds --- */

static int cmp_kind(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int c = strcmp(json_string_value(json_object_get(x, "apiVersion")),
		       json_string_value(json_object_get(y, "apiVersion")));
	return c ? c : strcmp(json_string_value(json_object_get(x, "kind")),
			      json_string_value(json_object_get(y, "kind")));
}

json_t *kubefiles_kinds(const struct kubefiles *kf, const struct kubefiles_ctx *base, char *err,
			size_t errlen)
{
	struct kubefiles_ctx c = {0};
	if (base)
		c = *base;
	if (!c.namespace)
		c.namespace = "runboat-kinds";
	if (!c.build_name)
		c.build_name = "b0123456789abcdef0123456789abcdef";
	if (!c.build_slug)
		c.build_slug = "owner-repo-main-0123456789ab";
	if (!c.build_domain)
		c.build_domain = "runboat.invalid";
	if (!c.image_name || !*c.image_name)
		c.image_name = "image";
	if (!c.image_tag || !*c.image_tag)
		c.image_tag = "latest";
	c.commit = (struct build_commit){
		.repo = "owner/repo",
		.target_branch = "main",
		.git_commit = "0123456789abcdef0123456789abcdef01234567",
	};
	json_t *seen = json_object(); /* "apiVersion kind" -> {apiVersion, kind} */
	for (int pass = 0; pass < 2; pass++) {
		c.commit.pr = pass; /* a branch build, then PR #1 */
		for (int m = 0; m < KUBEFILES_MODE_COUNT; m++) {
			c.mode = (enum kubefiles_mode)m;
			json_t *objs;
			if (kubefiles_render(kf, &c, &objs, err, errlen) < 0) {
				json_decref(seen);
				return NULL;
			}
			size_t i;
			json_t *o;
			json_array_foreach(objs, i, o)
			{
				const char *api = str_field(o, "apiVersion");
				const char *kind = str_field(o, "kind");
				char *key = xasprintf("%s %s", api, kind);
				if (!json_object_get(seen, key))
					json_object_set_new(seen, key,
							    json_pack("{s:s, s:s}", "apiVersion", api,
								      "kind", kind));
				free(key);
			}
			json_decref(objs);
		}
	}
	size_t n = json_object_size(seen), i = 0;
	json_t **items = xcalloc(n ? n : 1, sizeof(*items));
	const char *k;
	json_t *v;
	json_object_foreach(seen, k, v)
		items[i++] = v;
	qsort(items, n, sizeof(*items), cmp_kind);
	json_t *arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append(arr, items[i]);
	free(items);
	json_decref(seen);
	return arr;
}

/* --- cache --- */

struct cache_entry {
	char *dir;
	struct kubefiles *kf;
};

struct kubefiles_cache {
	struct cache_entry *entries;
	size_t n, cap;
};

struct kubefiles_cache *kubefiles_cache_new(void)
{
	return xcalloc(1, sizeof(struct kubefiles_cache));
}

void kubefiles_cache_free(struct kubefiles_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->entries[i].dir);
		kubefiles_free(c->entries[i].kf);
	}
	free(c->entries);
	free(c);
}

static void cache_drop(struct kubefiles_cache *c, size_t i)
{
	free(c->entries[i].dir);
	kubefiles_free(c->entries[i].kf);
	c->entries[i] = c->entries[--c->n];
}

const struct kubefiles *kubefiles_cache_get(struct kubefiles_cache *c, const char *dir, char *err,
					    size_t errlen)
{
	size_t i = 0;
	while (i < c->n && strcmp(c->entries[i].dir, dir) != 0)
		i++;
	if (i < c->n) {
		struct kf_file *files;
		size_t n;
		if (scan_dir(dir, &files, &n, err, errlen) < 0) {
			cache_drop(c, i);
			return NULL;
		}
		struct buf fp = {0};
		fingerprint(files, n, &fp);
		files_free(files, n);
		const struct buf *old = &c->entries[i].kf->fingerprint;
		bool same = fp.len == old->len && memcmp(fp.data, old->data, fp.len) == 0;
		buf_free(&fp);
		if (same)
			return c->entries[i].kf;
		cache_drop(c, i);
	}
	struct kubefiles *kf = kubefiles_load(dir, err, errlen);
	if (!kf)
		return NULL;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 4;
		c->entries = xrealloc(c->entries, c->cap * sizeof(*c->entries));
	}
	c->entries[c->n++] = (struct cache_entry){.dir = xstrdup(dir), .kf = kf};
	return kf;
}
