#include "kubeconfig.h"

#include "util.h"
#include "yaml_json.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KUBECONFIG_MAX_BYTES (4u << 20)
#define PEM_MAX_BYTES (1u << 20)
#define TOKEN_MAX_BYTES (64u << 10)
#define DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

int kubeconfig_read_file(const char *path, size_t max, char **out, size_t *len)
{
	/* O_NONBLOCK: opening a FIFO would wait for a writer (for ever) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	struct buf b = {0};
	buf_reserve(&b, st.st_size > 0 && (size_t)st.st_size <= max ? (size_t)st.st_size : 4096);
	int rc = 0;
	for (;;) {
		char chunk[16384];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > max) {
			rc = -EFBIG;
			break;
		}
		buf_append(&b, chunk, (size_t)n);
	}
	close(fd);
	if (rc) {
		buf_free(&b);
		return rc;
	}
	if (!b.data) {
		buf_reserve(&b, 1);
		b.data[0] = '\0';
	}
	*len = b.len;
	*out = buf_steal(&b);
	return 0;
}

/* ---- parsing context: the file name for messages ---- */

struct pctx {
	const char *path;
	char *dir; /* for relative references */
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3))) static void fail(struct pctx *p, const char *fmt, ...)
{
	if (!p->err || !p->errlen)
		return;
	int n = snprintf(p->err, p->errlen, "%s: ", p->path);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static const char *file_error(int rc)
{
	switch (rc) {
	case -EFBIG:
		return "file too large";
	case -EINVAL:
		return "not a regular file";
	default:
		return strerror(-rc);
	}
}

static char *resolve_path(struct pctx *p, const char *ref)
{
	if (ref[0] == '/' || !p->dir)
		return xstrdup(ref);
	return xasprintf("%s/%s", p->dir, ref);
}

/* Reads obj[key]: absent or null gives *out = NULL; a non-string fails. */
static int get_str(struct pctx *p, const json_t *obj, const char *key, const char *where,
		   const char **out)
{
	*out = NULL;
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		fail(p, "%s: \"%s\" must be a string", where, key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static int get_bool(struct pctx *p, const json_t *obj, const char *key, const char *where,
		    bool *out)
{
	*out = false;
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	/* quoted "true"/"false" appear in hand-written files */
	if (json_is_string(v) && strcmp(json_string_value(v), "true") == 0) {
		*out = true;
		return 0;
	}
	if (json_is_string(v) && strcmp(json_string_value(v), "false") == 0)
		return 0;
	fail(p, "%s: \"%s\" must be true or false", where, key);
	return -1;
}

/* Finds the entry named name in root[list] (an array of {name, <field>}) and
 * returns its <field> object (borrowed), or NULL. */
static const json_t *find_named(struct pctx *p, json_t *root, const char *list,
				const char *field, const char *name, bool *bad)
{
	*bad = false;
	json_t *arr = json_object_get(root, list);
	if (!arr || json_is_null(arr))
		return NULL;
	if (!json_is_array(arr)) {
		fail(p, "\"%s\" must be a list", list);
		*bad = true;
		return NULL;
	}
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (!n || strcmp(n, name) != 0)
			continue;
		json_t *f = json_object_get(e, field);
		if (!f || json_is_null(f)) {
			/* an entry without a body is an empty one ("user: {}") */
			f = json_object();
			json_object_set_new(e, field, f);
			return f;
		}
		if (!json_is_object(f)) {
			fail(p, "%s[\"%s\"].%s must be a mapping", list, name, field);
			*bad = true;
			return NULL;
		}
		return f;
	}
	return NULL;
}

static void list_names(const json_t *root, const char *list, struct buf *out)
{
	json_t *arr = json_object_get(root, list);
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (!n)
			continue;
		buf_printf(out, "%s\"%s\"", out->len ? ", " : "", n);
	}
	if (!out->len)
		buf_append_str(out, "none");
}

static int base64_decode(const char *in, char **out, size_t *outlen)
{
	size_t inlen = strlen(in);
	unsigned char *dst = xmalloc(inlen / 4 * 3 + 4);
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	if (!ctx)
		abort();
	int n = 0, m = 0;
	EVP_DecodeInit(ctx);
	int rc = EVP_DecodeUpdate(ctx, dst, &n, (const unsigned char *)in, (int)inlen);
	if (rc >= 0 && EVP_DecodeFinal(ctx, dst + n, &m) == 1) {
		EVP_ENCODE_CTX_free(ctx);
		*outlen = (size_t)(n + m);
		dst[*outlen] = '\0';
		*out = (char *)dst;
		return 0;
	}
	EVP_ENCODE_CTX_free(ctx);
	free(dst);
	return -EINVAL;
}

/* PEM material from key-data (base64) or key (a file). */
static int load_pem(struct pctx *p, const json_t *obj, const char *where, const char *data_key,
		    const char *file_key, char **out, size_t *len)
{
	const char *data, *file;
	if (get_str(p, obj, data_key, where, &data) || get_str(p, obj, file_key, where, &file))
		return -1;
	if (data && *data) {
		if (strlen(data) > PEM_MAX_BYTES * 2) {
			fail(p, "%s: \"%s\" is too large", where, data_key);
			return -1;
		}
		if (base64_decode(data, out, len) != 0) {
			fail(p, "%s: \"%s\" is not valid base64", where, data_key);
			return -1;
		}
		if (!strstr(*out, "-----BEGIN ")) {
			fail(p, "%s: \"%s\" does not hold PEM data", where, data_key);
			free(*out);
			*out = NULL;
			return -1;
		}
		return 0;
	}
	if (file && *file) {
		char *full = resolve_path(p, file);
		int rc = kubeconfig_read_file(full, PEM_MAX_BYTES, out, len);
		if (rc) {
			fail(p, "%s: cannot read %s \"%s\": %s", where, file_key, full, file_error(rc));
			free(full);
			return -1;
		}
		if (!strstr(*out, "-----BEGIN ")) {
			fail(p, "%s: %s \"%s\" does not hold PEM data", where, file_key, full);
			free(full);
			free(*out);
			*out = NULL;
			return -1;
		}
		free(full);
	}
	return 0;
}

static char **string_list(struct pctx *p, const json_t *arr, const char *where)
{
	if (!arr || json_is_null(arr))
		return xcalloc(1, sizeof(char *));
	if (!json_is_array(arr)) {
		fail(p, "%s must be a list of strings", where);
		return NULL;
	}
	char **out = xcalloc(json_array_size(arr) + 1, sizeof(char *));
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v)) {
			fail(p, "%s[%zu] must be a string", where, i);
			for (size_t j = 0; j < i; j++)
				free(out[j]);
			free(out);
			return NULL;
		}
		out[i] = xstrdup(json_string_value(v));
	}
	return out;
}

static void free_strv(char **v)
{
	for (char **s = v; s && *s; s++)
		free(*s);
	free(v);
}

static void exec_free(struct kubeconfig_exec *e)
{
	if (!e)
		return;
	free(e->api_version);
	free(e->command);
	free_strv(e->args);
	free_strv(e->env);
	free(e);
}

static struct kubeconfig_exec *parse_exec(struct pctx *p, const json_t *ex, const char *where)
{
	if (!json_is_object(ex)) {
		fail(p, "%s: \"exec\" must be a mapping", where);
		return NULL;
	}
	const char *api, *cmd, *mode;
	if (get_str(p, ex, "apiVersion", where, &api) || get_str(p, ex, "command", where, &cmd) ||
	    get_str(p, ex, "interactiveMode", where, &mode))
		return NULL;
	if (!api || (strcmp(api, "client.authentication.k8s.io/v1") != 0 &&
		     strcmp(api, "client.authentication.k8s.io/v1beta1") != 0)) {
		fail(p, "%s: exec apiVersion %s%s%s is not supported (expected "
			"client.authentication.k8s.io/v1 or v1beta1)",
		     where, api ? "\"" : "", api ? api : "(missing)", api ? "\"" : "");
		return NULL;
	}
	if (!cmd || !*cmd) {
		fail(p, "%s: exec has no command", where);
		return NULL;
	}
	if (mode && strcmp(mode, "Always") == 0) {
		fail(p, "%s: exec interactiveMode \"Always\" is not possible in a daemon", where);
		return NULL;
	}
	struct kubeconfig_exec *e = xcalloc(1, sizeof(*e));
	e->api_version = xstrdup(api);
	e->command = strchr(cmd, '/') ? resolve_path(p, cmd) : xstrdup(cmd);
	char *w = xasprintf("%s: exec args", where);
	e->args = string_list(p, json_object_get(ex, "args"), w);
	free(w);
	if (!e->args)
		goto fail;
	json_t *env = json_object_get(ex, "env");
	if (env && !json_is_null(env) && !json_is_array(env)) {
		fail(p, "%s: exec env must be a list of {name, value}", where);
		goto fail;
	}
	e->env = xcalloc(json_array_size(env) + 1, sizeof(char *));
	size_t i;
	json_t *v;
	json_array_foreach(env, i, v) {
		const char *n = json_string_value(json_object_get(v, "name"));
		const char *val = json_string_value(json_object_get(v, "value"));
		if (!n || !*n || strchr(n, '=') || !val) {
			fail(p, "%s: exec env[%zu] must have a string name (without '=') and a "
				"string value", where, i);
			goto fail;
		}
		e->env[i] = xasprintf("%s=%s", n, val);
	}
	if (get_bool(p, ex, "provideClusterInfo", where, &e->provide_cluster_info))
		goto fail;
	return e;
fail:
	exec_free(e);
	return NULL;
}

static bool valid_server(const char *s)
{
	if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
		return false;
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return false;
	return true;
}

struct kubeconfig *kubeconfig_parse(const char *path, const char *data, size_t len,
				    const char *context, char *err, size_t errlen)
{
	struct pctx p = {.path = path ? path : "kubeconfig", .err = err, .errlen = errlen};
	struct kubeconfig *kc = NULL;
	const char *slash = path ? strrchr(path, '/') : NULL;
	p.dir = slash ? xstrndup(path, (size_t)((slash - path) ? (slash - path) : 1)) : xstrdup(".");

	char yerr[256] = "";
	json_t *root = yaml_json_parse_one(data, len, yerr, sizeof(yerr));
	if (!root) {
		fail(&p, "not valid YAML: %s", yerr);
		goto fail;
	}
	if (!json_is_object(root)) {
		fail(&p, "not a kubeconfig (the top level must be a mapping)");
		goto fail;
	}
	const char *cur;
	if (get_str(&p, root, "current-context", "top level", &cur))
		goto fail;
	const char *ctx_name = context && *context ? context : cur;
	if (!ctx_name || !*ctx_name) {
		fail(&p, "no current-context is set and no context was given");
		goto fail;
	}
	bool bad;
	const json_t *ctx = find_named(&p, root, "contexts", "context", ctx_name, &bad);
	if (bad)
		goto fail;
	if (!ctx) {
		struct buf names = {0};
		list_names(root, "contexts", &names);
		fail(&p, "context \"%s\" not found (contexts: %s)", ctx_name, names.data);
		buf_free(&names);
		goto fail;
	}
	char *where = xasprintf("context \"%s\"", ctx_name);
	const char *cluster_name, *user_name, *ns;
	int rc = get_str(&p, ctx, "cluster", where, &cluster_name) ||
		 get_str(&p, ctx, "user", where, &user_name) ||
		 get_str(&p, ctx, "namespace", where, &ns);
	free(where);
	if (rc)
		goto fail;
	if (!cluster_name || !*cluster_name) {
		fail(&p, "context \"%s\" names no cluster", ctx_name);
		goto fail;
	}
	const json_t *cluster = find_named(&p, root, "clusters", "cluster", cluster_name, &bad);
	if (bad)
		goto fail;
	if (!cluster) {
		fail(&p, "context \"%s\" refers to cluster \"%s\", which is not in clusters",
		     ctx_name, cluster_name);
		goto fail;
	}

	kc = xcalloc(1, sizeof(*kc));
	kc->path = xstrdup(p.path);
	kc->context = xstrdup(ctx_name);
	if (ns && *ns)
		kc->namespace = xstrdup(ns);

	where = xasprintf("cluster \"%s\"", cluster_name);
	const char *server;
	rc = get_str(&p, cluster, "server", where, &server);
	if (!rc && (!server || !*server)) {
		fail(&p, "%s has no server", where);
		rc = -1;
	}
	if (!rc && !valid_server(server)) {
		fail(&p, "%s: server \"%s\" is not an http(s):// URL", where, server);
		rc = -1;
	}
	if (!rc) {
		kc->server = xstrdup(server);
		/* "https://host:port/" and "https://host:port" are the same */
		size_t sl = strlen(kc->server);
		while (sl > 8 && kc->server[sl - 1] == '/')
			kc->server[--sl] = '\0';
	}
	if (!rc)
		rc = get_bool(&p, cluster, "insecure-skip-tls-verify", where, &kc->insecure);
	if (!rc)
		rc = load_pem(&p, cluster, where, "certificate-authority-data",
			      "certificate-authority", &kc->ca_pem, &kc->ca_len);
	free(where);
	if (rc)
		goto fail;

	if (user_name && *user_name) {
		const json_t *user = find_named(&p, root, "users", "user", user_name, &bad);
		if (bad)
			goto fail;
		if (!user) {
			fail(&p, "context \"%s\" refers to user \"%s\", which is not in users",
			     ctx_name, user_name);
			goto fail;
		}
		where = xasprintf("user \"%s\"", user_name);
		const char *token, *token_file, *username, *password;
		rc = get_str(&p, user, "token", where, &token) ||
		     get_str(&p, user, "tokenFile", where, &token_file) ||
		     get_str(&p, user, "username", where, &username) ||
		     get_str(&p, user, "password", where, &password);
		if (!rc)
			rc = load_pem(&p, user, where, "client-certificate-data",
				      "client-certificate", &kc->cert_pem, &kc->cert_len);
		if (!rc)
			rc = load_pem(&p, user, where, "client-key-data", "client-key",
				      &kc->key_pem, &kc->key_len);
		if (!rc && !kc->cert_pem != !kc->key_pem) {
			fail(&p, "%s has a client %s but no client %s", where,
			     kc->cert_pem ? "certificate" : "key",
			     kc->cert_pem ? "key" : "certificate");
			rc = -1;
		}
		json_t *ap = json_object_get(user, "auth-provider");
		if (!rc && ap && !json_is_null(ap)) {
			const char *apn = json_string_value(json_object_get(ap, "name"));
			fail(&p, "%s: auth-provider \"%s\" is not supported (use an exec credential "
				 "plugin)", where, apn ? apn : "?");
			rc = -1;
		}
		json_t *ex = json_object_get(user, "exec");
		if (!rc && ex && !json_is_null(ex)) {
			kc->exec = parse_exec(&p, ex, where);
			if (!kc->exec)
				rc = -1;
		}
		if (!rc && token && *token) {
			if (strpbrk(token, "\r\n")) {
				fail(&p, "%s: token contains a line break", where);
				rc = -1;
			} else {
				kc->token = xstrdup(token);
			}
		}
		if (!rc && token_file && *token_file) {
			kc->token_file = resolve_path(&p, token_file);
			char *t = NULL;
			size_t tl;
			int frc = kubeconfig_read_file(kc->token_file, TOKEN_MAX_BYTES, &t, &tl);
			if (frc) {
				fail(&p, "%s: cannot read tokenFile \"%s\": %s", where,
				     kc->token_file, file_error(frc));
				rc = -1;
			}
			free(t);
		}
		if (!rc && username && *username) {
			kc->username = xstrdup(username);
			kc->password = xstrdup(password ? password : "");
		}
		free(where);
		if (rc)
			goto fail;
	}
	json_decref(root);
	free(p.dir);
	return kc;
fail:
	json_decref(root);
	kubeconfig_free(kc);
	free(p.dir);
	return NULL;
}

struct kubeconfig *kubeconfig_load(const char *path, const char *context, char *err,
				   size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	int rc = kubeconfig_read_file(path, KUBECONFIG_MAX_BYTES, &data, &len);
	if (rc) {
		snprintf(err, errlen, "%s: cannot read kubeconfig: %s", path, file_error(rc));
		return NULL;
	}
	struct kubeconfig *kc = kubeconfig_parse(path, data, len, context, err, errlen);
	free(data);
	return kc;
}

struct kubeconfig *kubeconfig_in_cluster(const char *sa_dir, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host || !port || !*port) {
		snprintf(err, errlen, "not running in a cluster: KUBERNETES_SERVICE_HOST and "
				      "KUBERNETES_SERVICE_PORT are not set");
		return NULL;
	}
	for (const char *c = port; *c; c++) {
		if (*c < '0' || *c > '9') {
			snprintf(err, errlen, "KUBERNETES_SERVICE_PORT \"%.32s\" is not a port number",
				 port);
			return NULL;
		}
	}
	for (const char *c = host; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == '/' || *c == '@') {
			snprintf(err, errlen, "KUBERNETES_SERVICE_HOST \"%.64s\" is not a host", host);
			return NULL;
		}
	}
	if (!sa_dir)
		sa_dir = DEFAULT_SA_DIR;
	struct kubeconfig *kc = xcalloc(1, sizeof(*kc));
	bool v6 = strchr(host, ':') != NULL;
	kc->server = xasprintf("https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
	kc->token_file = xasprintf("%s/token", sa_dir);
	char *tok = NULL, *ca_path = xasprintf("%s/ca.crt", sa_dir);
	char *ns_path = xasprintf("%s/namespace", sa_dir);
	size_t len;
	int rc = kubeconfig_read_file(kc->token_file, TOKEN_MAX_BYTES, &tok, &len);
	if (rc) {
		snprintf(err, errlen, "in-cluster: cannot read the service account token %s: %s",
			 kc->token_file, file_error(rc));
		goto fail;
	}
	rc = kubeconfig_read_file(ca_path, PEM_MAX_BYTES, &kc->ca_pem, &kc->ca_len);
	if (rc) {
		snprintf(err, errlen, "in-cluster: cannot read the cluster CA %s: %s", ca_path,
			 file_error(rc));
		goto fail;
	}
	char *ns = NULL;
	if (kubeconfig_read_file(ns_path, 1024, &ns, &len) == 0) {
		while (len && (ns[len - 1] == '\n' || ns[len - 1] == '\r' || ns[len - 1] == ' '))
			ns[--len] = '\0';
		if (len)
			kc->namespace = ns;
		else
			free(ns);
	}
	free(tok);
	free(ca_path);
	free(ns_path);
	return kc;
fail:
	free(tok);
	free(ca_path);
	free(ns_path);
	kubeconfig_free(kc);
	return NULL;
}

struct kubeconfig *kubeconfig_resolve(const char *explicit_path, const char *context,
				      char *err, size_t errlen)
{
	if (explicit_path && *explicit_path)
		return kubeconfig_load(explicit_path, context, err, errlen);
	const char *env = getenv("KUBECONFIG");
	if (env && *env) {
		char *list = xstrdup(env), *save = NULL;
		for (char *f = strtok_r(list, ":", &save); f; f = strtok_r(NULL, ":", &save)) {
			if (access(f, F_OK) == 0) {
				struct kubeconfig *kc = kubeconfig_load(f, context, err, errlen);
				free(list);
				return kc;
			}
		}
		free(list);
	}
	const char *home = getenv("HOME");
	if (home && *home) {
		char *f = xasprintf("%s/.kube/config", home);
		if (access(f, F_OK) == 0) {
			struct kubeconfig *kc = kubeconfig_load(f, context, err, errlen);
			free(f);
			return kc;
		}
		free(f);
	}
	char why[512] = "";
	const char *sa_dir = getenv(KUBECONFIG_SA_DIR_ENV);
	struct kubeconfig *kc = kubeconfig_in_cluster(sa_dir && *sa_dir ? sa_dir : NULL, why,
						      sizeof(why));
	if (!kc)
		snprintf(err, errlen, "no kubeconfig found (no file in $KUBECONFIG%s%s%s, no "
				      "~/.kube/config) and %s",
			 env ? "=\"" : "", env ? env : "", env ? "\"" : "", why);
	return kc;
}

void kubeconfig_free(struct kubeconfig *kc)
{
	if (!kc)
		return;
	free(kc->path);
	free(kc->context);
	free(kc->server);
	free(kc->namespace);
	free(kc->ca_pem);
	free(kc->cert_pem);
	if (kc->key_pem)
		memset(kc->key_pem, 0, kc->key_len);
	free(kc->key_pem);
	free(kc->token);
	free(kc->token_file);
	exec_free(kc->exec);
	free(kc->username);
	free(kc->password);
	free(kc);
}
