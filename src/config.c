/* runboat.toml: the TOML document (as JSON, with source positions, from
 * toml_json) is checked section by section into a typed struct config.
 * The first problem found stops the load with one precise line. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "kubefiles.h"
#include "log.h"
#include "toml_json.h"
#include "util.h"
#include "validate.h"

#define SECRET_FILE_MAX_BYTES (64 * 1024)
#define MAX_URL_LEN 2048
#define MAX_IMAGE_LEN 512
#define MAX_REGEX_LEN 1024
/* A slug is at most 63 characters and builds also answer on
 * <slug>.mail.<domain>: keep that within a DNS name's 253. */
#define MAX_DOMAIN_LEN (253 - 63 - 6)

/* Set by CMakeLists.txt for this file: where the default kubefiles are
 * looked for (config_default_kubefiles). */
#ifndef RUNBOAT_DATADIR
#define RUNBOAT_DATADIR "/usr/local/share/runboat"
#endif
#ifndef RUNBOAT_BIN_TO_DATADIR
#define RUNBOAT_BIN_TO_DATADIR "../share/runboat"
#endif

struct loader {
	const char *name;     /* file name in errors */
	const char *base_dir; /* relative paths are relative to it; NULL: cwd */
	const struct toml_positions *pos;
	char *err;
	size_t errlen;
};

/* ---- errors ---- */

/* Length of the parent of a path ("a.b[2]" -> "a.b", "a" -> 0), skipping
 * separators inside quoted keys. */
static size_t path_parent_len(const char *path)
{
	size_t last = 0;
	bool quoted = false;
	for (size_t i = 0; path[i]; i++) {
		char c = path[i];
		if (quoted) {
			if (c == '\\' && path[i + 1])
				i++;
			else if (c == '"')
				quoted = false;
		} else if (c == '"') {
			quoted = true;
		} else if (c == '.' || c == '[') {
			last = i;
		}
	}
	return last;
}

/* The line of path, or of its nearest ancestor that has one (a missing key
 * is reported at its table's header). */
static unsigned path_line(const struct loader *ld, const char *path)
{
	char *p = xstrdup(path);
	unsigned line = 0;
	for (;;) {
		line = toml_positions_line(ld->pos, p);
		if (line || !*p)
			break;
		p[path_parent_len(p)] = '\0';
	}
	free(p);
	return line;
}

static int fail_path(struct loader *ld, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes "FILE:LINE: path: message" into ld->err; returns -1. */
static int fail_path(struct loader *ld, const char *path, const char *fmt, ...)
{
	struct buf b = { 0 };
	unsigned line = path_line(ld, path);
	if (line)
		buf_printf(&b, "%s:%u: %s: ", ld->name, line, path);
	else
		buf_printf(&b, "%s: %s: ", ld->name, path);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	str_one_line(b.data); /* values are quoted as written */
	if (ld->err && ld->errlen)
		snprintf(ld->err, ld->errlen, "%s", b.data);
	buf_free(&b);
	return -1;
}

static int fail_key(struct loader *ld, const char *tpath, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail_key(struct loader *ld, const char *tpath, const char *key, const char *fmt, ...)
{
	char *path = toml_path_key(tpath, key);
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fail_path(ld, path, "%s", msg);
	free(path);
	return -1;
}

static const char *kind_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "a table";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a float";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		break;
	}
	return "nothing";
}

/* ---- unknown keys ---- */

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const char *const TOP_KEYS[] = { "server", "admin", "limits", "kubernetes", "build",
					"github", "repos", "sticky_branches", NULL };
static const char *const SERVER_KEYS[] = { "listen", "base_url", "log_level", "log_format",
					   "access_log",
					   "max_connections", "max_connections_per_client",
					   "max_header_bytes", "max_buffered_body_bytes",
					   "max_request_line_bytes", "max_body_bytes",
					   "max_webhook_body_bytes", "header_timeout",
					   "body_timeout", "keepalive_timeout",
					   "shutdown_timeout", "stream_buffer_bytes",
					   "stream_stall_timeout", NULL };
static const char *const ADMIN_KEYS[] = { "user", "password", "password_file", NULL };
static const char *const LIMITS_KEYS[] = { "max_initializing", "max_started", "max_deployed",
					   "max_deployed_per_ref", "start_after_init", "stop_idle_after",
					   "max_restarts", NULL };
static const char *const KUBERNETES_KEYS[] = { "namespace", "kubeconfig", "context", "qps",
					       "burst", "request_timeout", "leader_election",
					       "leader_election_lease",
					       "leader_election_lease_duration",
					       "leader_election_renew_deadline",
					       "leader_election_retry_period", NULL };
static const char *const BUILD_KEYS[] = { "domain", "kubefiles", "env", "secret_env",
					  "template_vars", NULL };
static const char *const GITHUB_KEYS[] = { "api_url", "token", "token_file", "webhook_secret",
					   "webhook_secret_file", "statuses", "sync_interval",
					   "sync_repos", "debounce", NULL };
static const char *const REPO_KEYS[] = { "repo", "branch", "image", "kubefiles", "env",
					 "secret_env", "template_vars", NULL };
static const char *const STICKY_KEYS[] = { "repo", "branch", NULL };

/* Sections whose keys a misplaced top-level key is compared with. */
static const struct {
	const char *name;
	const char *const *keys;
} SECTIONS[] = {
	{ "server", SERVER_KEYS },	   { "admin", ADMIN_KEYS }, { "limits", LIMITS_KEYS },
	{ "kubernetes", KUBERNETES_KEYS }, { "build", BUILD_KEYS }, { "github", GITHUB_KEYS },
};

static bool key_known(const char *key, const char *const *known)
{
	for (size_t i = 0; known[i]; i++)
		if (strcmp(key, known[i]) == 0)
			return true;
	return false;
}

static void describe_unknown(struct buf *b, const char *key, const char *const *known, bool top)
{
	const char *best = NULL;
	size_t best_d = 3;
	for (size_t i = 0; known[i]; i++) {
		size_t d = edit_distance(key, known[i]);
		if (d < best_d) {
			best_d = d;
			best = known[i];
		}
	}
	if (best) {
		buf_printf(b, "unknown key, did you mean \"%s\"?", best);
		return;
	}
	if (top) {
		for (size_t s = 0; s < ARRAY_SIZE(SECTIONS); s++)
			if (key_known(key, SECTIONS[s].keys)) {
				buf_printf(b, "unknown key, did you mean \"%s\" in [%s]?", key,
					   SECTIONS[s].name);
				return;
			}
	}
	buf_append_str(b, "unknown key, expected one of: ");
	for (size_t i = 0; known[i]; i++)
		buf_printf(b, "%s%s", i ? ", " : "", known[i]);
}

/* Fails on the first (by line) key of tbl that is not in known. */
static int check_keys(struct loader *ld, json_t *tbl, const char *tpath, const char *const *known)
{
	const char *key;
	json_t *value;
	const char *worst = NULL;
	char *worst_path = NULL;
	unsigned worst_line = 0;
	json_object_foreach(tbl, key, value) {
		if (key_known(key, known))
			continue;
		char *path = toml_path_key(tpath, key);
		unsigned line = toml_positions_line(ld->pos, path);
		if (!worst || (line && (!worst_line || line < worst_line))) {
			free(worst_path);
			worst = key;
			worst_path = path;
			worst_line = line;
		} else {
			free(path);
		}
	}
	if (!worst)
		return 0;
	struct buf b = { 0 };
	describe_unknown(&b, worst, known, !*tpath);
	fail_path(ld, worst_path, "%s", b.data);
	buf_free(&b);
	free(worst_path);
	return -1;
}

/* ---- typed getters: 1 found, 0 absent, -1 error (ld->err set) ---- */

static int get_table(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
		     json_t **out)
{
	json_t *v = json_object_get(tbl, key);
	if (!v)
		return 0;
	if (!json_is_object(v))
		return fail_key(ld, tpath, key, "got %s, expected a table", kind_name(v));
	*out = v;
	return 1;
}

/* *out is borrowed from the document. */
static int get_str(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
		   const char **out)
{
	json_t *v = json_object_get(tbl, key);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return fail_key(ld, tpath, key, "got %s, expected a string", kind_name(v));
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return fail_key(ld, tpath, key, "contains a NUL character, expected plain text");
	*out = s;
	return 1;
}

static int get_int(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
		   long long min, long long max, long long *out)
{
	json_t *v = json_object_get(tbl, key);
	if (!v)
		return 0;
	if (!json_is_integer(v))
		return fail_key(ld, tpath, key, "got %s, expected an integer", kind_name(v));
	long long n = json_integer_value(v);
	if (n < min || n > max)
		return fail_key(ld, tpath, key, "%lld is out of range, expected %lld..%lld", n, min,
				max);
	*out = n;
	return 1;
}

/* A positive number of at most max; an integer is accepted. */
static int get_positive(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
			double max, double *out)
{
	json_t *v = json_object_get(tbl, key);
	if (!v)
		return 0;
	if (!json_is_number(v))
		return fail_key(ld, tpath, key, "got %s, expected a number", kind_name(v));
	double d = json_number_value(v);
	if (!(d > 0) || d > max)
		return fail_key(ld, tpath, key,
				"%.15g is out of range, expected a number > 0 and <= %.15g", d, max);
	*out = d;
	return 1;
}

static int get_bool(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
		    bool *out)
{
	json_t *v = json_object_get(tbl, key);
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return fail_key(ld, tpath, key, "got %s, expected true or false", kind_name(v));
	*out = json_is_true(v);
	return 1;
}

static void set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? xstrdup(src) : NULL;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static int get_int_into(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
			long long min, long long max, int *out)
{
	long long n = 0;
	int r = get_int(ld, tbl, tpath, key, min, max, &n);
	if (r == 1)
		*out = (int)n;
	return r;
}

static int get_size_into(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
			 long long min, long long max, size_t *out)
{
	long long n = 0;
	int r = get_int(ld, tbl, tpath, key, min, max, &n);
	if (r == 1)
		*out = (size_t)n;
	return r;
}

/* ---- value checks: NULL when fine, else what is wrong ---- */

/* A relative path is taken relative to the config file's directory; a
 * leading "~/" is $HOME. */
static char *resolve_path(const struct loader *ld, const char *p)
{
	const char *home = getenv("HOME");
	if (p[0] == '~' && p[1] == '/' && home && *home)
		return xasprintf("%s%s", home, p + 1);
	if (p[0] == '/' || !ld->base_dir || !*ld->base_dir || strcmp(ld->base_dir, ".") == 0)
		return xstrdup(p);
	return xasprintf("%s%s%s", ld->base_dir, str_ends_with(ld->base_dir, "/") ? "" : "/", p);
}

/* A build domain: a DNS name short enough for "<slug>.mail.<domain>". */
static bool is_domain(const char *s)
{
	return strlen(s) <= MAX_DOMAIN_LEN && validate_dns_name(s);
}

static bool parse_port(const char *s, int *port)
{
	size_t n = strlen(s);
	if (n == 0 || n > 5)
		return false;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = v;
	return true;
}

/* "host:port", "[v6]:port" or ":port" into a fresh host and a port. */
static const char *parse_listen(const char *s, char **host, int *port)
{
	const char *colon;
	char *h;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close == s + 1)
			return "unterminated or empty [address]";
		if (close[1] != ':')
			return "missing :port after [address]";
		colon = close + 1;
		h = xstrndup(s + 1, (size_t)(close - s - 1));
		for (const char *c = h; *c; c++)
			if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.' && *c != '%' &&
			    !isalnum((unsigned char)*c)) {
				free(h);
				return "invalid IPv6 address";
			}
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return "missing :port";
		if (memchr(s, ':', (size_t)(colon - s)))
			return "an IPv6 address must be in brackets";
		h = xstrndup(s, (size_t)(colon - s));
		if (strlen(h) > 253) {
			free(h);
			return "host name too long";
		}
		for (const char *c = h; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-') {
				free(h);
				return "invalid host name";
			}
	}
	if (!parse_port(colon + 1, port)) {
		free(h);
		return "the port must be a number 0..65535";
	}
	*host = h;
	return NULL;
}

/* http:// or https:// URL with a host, no query, fragment or credentials. */
static const char *check_url(const char *s)
{
	size_t len = strlen(s);
	if (len > MAX_URL_LEN)
		return "too long";
	const char *rest;
	if (strncasecmp(s, "http://", 7) == 0)
		rest = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		rest = s + 8;
	else
		return "not an http:// or https:// URL";
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f)
			return "contains a space or a control character";
	size_t host_len = strcspn(rest, "/");
	if (host_len == 0)
		return "has no host";
	if (memchr(rest, '@', host_len))
		return "must not hold credentials";
	if (strpbrk(s, "?#"))
		return "must not have a query or fragment";
	for (size_t i = 0; i < host_len; i++) {
		char c = rest[i];
		if (!isalnum((unsigned char)c) && !strchr(".-:[]_", c))
			return "has an invalid host";
	}
	return NULL;
}

/* URL without its trailing slashes. */
static char *trim_url(const char *s)
{
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		n--;
	return xstrndup(s, n);
}

static const char *check_image(const char *s)
{
	size_t n = strlen(s);
	if (n == 0)
		return "is empty";
	if (n > MAX_IMAGE_LEN)
		return "is too long";
	if (!isalnum((unsigned char)s[0]))
		return "must start with a letter or digit";
	for (const char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._/:@+-", *c))
			return "contains an invalid character";
	if (s[n - 1] == ':' || s[n - 1] == '@' || s[n - 1] == '/')
		return "has an empty tag or digest";
	return NULL;
}

static void split_image(const char *image, char **name, char **tag)
{
	const char *slash = strrchr(image, '/');
	const char *colon = strrchr(slash ? slash : image, ':');
	if (colon) {
		*name = xstrndup(image, (size_t)(colon - image));
		*tag = xstrdup(colon + 1);
	} else {
		*name = xstrdup(image);
		*tag = xstrdup("latest");
	}
}

/* ---- secrets ---- */

/* Reads a secret file: at most SECRET_FILE_MAX_BYTES, trailing newlines
 * stripped, not empty, no NUL. Returns NULL and sets *why on failure. */
static char *read_secret_file(const char *path, const char **why)
{
	/* O_NONBLOCK: a FIFO must not block the open (it is refused below) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		*why = strerror(errno);
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		*why = "not a regular file";
		return NULL;
	}
	char *data = xmalloc(SECRET_FILE_MAX_BYTES + 1);
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, data + len, SECRET_FILE_MAX_BYTES + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*why = strerror(errno);
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > SECRET_FILE_MAX_BYTES) {
			*why = "larger than 64 KiB";
			goto fail;
		}
	}
	close(fd);
	fd = -1;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	data[len] = '\0';
	if (len == 0) {
		*why = "the file is empty";
		goto fail;
	}
	if (memchr(data, '\0', len)) {
		*why = "the file contains a NUL byte";
		goto fail;
	}
	char *secret = xstrndup(data, len);
	explicit_bzero(data, len);
	free(data);
	return secret;
fail:
	if (fd >= 0)
		close(fd);
	explicit_bzero(data, SECRET_FILE_MAX_BYTES + 1);
	free(data);
	return NULL;
}

/* A secret from tbl.key, tbl.file_key or the environment (which wins).
 * *out stays NULL when none is set. */
static int get_secret(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
		      const char *file_key, const char *env_name, char **out)
{
	const char *inline_value = NULL, *file = NULL;
	int r_inline = tbl ? get_str(ld, tbl, tpath, key, &inline_value) : 0;
	if (r_inline < 0)
		return -1;
	int r_file = tbl ? get_str(ld, tbl, tpath, file_key, &file) : 0;
	if (r_file < 0)
		return -1;
	if (r_inline && r_file)
		return fail_key(ld, tpath, file_key,
				"both %s and %s are set, expected only one of them", key, file_key);
	if (r_inline) {
		if (!*inline_value)
			return fail_key(ld, tpath, key,
					"is empty, expected a non-empty secret (leave the key out "
					"to set none)");
		*out = xstrdup(inline_value);
	}
	if (r_file) {
		if (!*file)
			return fail_key(ld, tpath, file_key, "is empty, expected a file name");
		char *path = resolve_path(ld, file);
		const char *why = NULL;
		char *secret = read_secret_file(path, &why);
		if (!secret) {
			fail_key(ld, tpath, file_key, "cannot read \"%s\": %s, expected a readable file "
				 "holding the secret", path, why);
			free(path);
			return -1;
		}
		free(path);
		*out = secret;
	}
	const char *env = getenv(env_name);
	if (env && *env) {
		free_secret(*out);
		*out = xstrdup(env);
	}
	return 0;
}

/* ---- env lists ---- */

static void env_list_set(struct config_env_list *l, const char *name, const char *value)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i].name, name) == 0) {
			free_secret(l->items[i].value);
			l->items[i].value = xstrdup(value);
			return;
		}
	l->items = xrealloc(l->items, (l->count + 1) * sizeof *l->items);
	l->items[l->count].name = xstrdup(name);
	l->items[l->count].value = xstrdup(value);
	l->count++;
}

static void env_list_copy(struct config_env_list *dst, const struct config_env_list *src)
{
	for (size_t i = 0; i < src->count; i++)
		env_list_set(dst, src->items[i].name, src->items[i].value);
}

static void env_list_free(struct config_env_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].name);
		free_secret(l->items[i].value);
	}
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

/* Merges the string table tbl.key into l (names validated). */
static int get_env(struct loader *ld, json_t *tbl, const char *tpath, const char *key,
		   struct config_env_list *l)
{
	json_t *env = NULL;
	int r = get_table(ld, tbl, tpath, key, &env);
	if (r <= 0)
		return r;
	char *epath = toml_path_key(tpath, key);
	const char *name;
	json_t *value;
	json_object_foreach(env, name, value) {
		if (!validate_env_name(name)) {
			fail_key(ld, epath, name,
				 "invalid environment variable name, expected [A-Za-z_][A-Za-z0-9_]*");
			goto fail;
		}
		const char *s;
		if (get_str(ld, env, epath, name, &s) < 0)
			goto fail;
		env_list_set(l, name, s);
	}
	free(epath);
	return 1;
fail:
	free(epath);
	return -1;
}

static int check_dir(struct loader *ld, const char *tpath, const char *key, const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return fail_key(ld, tpath, key, "\"%s\": %s, expected the directory of the kubefiles",
				dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail_key(ld, tpath, key, "\"%s\" is not a directory, expected the directory "
				"of the kubefiles", dir);
	/* Loaded once here so that a directory runboat cannot deploy from
	 * (empty, a required template missing, a file too large or not text)
	 * fails --check-config and start-up, not the first deploy. The
	 * templates are not rendered: that needs a build. */
	char why[1024];
	struct kubefiles *kf = kubefiles_load(dir, why, sizeof why);
	if (!kf)
		return fail_key(ld, tpath, key, "%s", why);
	kubefiles_free(kf);
	return 0;
}

/* path, resolved (no "..", no symlink), when it is a directory; else NULL. */
static char *existing_dir(const char *path)
{
	char real[PATH_MAX];
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || !realpath(path, real))
		return NULL;
	return xstrdup(real);
}

/* Whether path (resolved) is dir or inside it. */
static bool path_inside(const char *path, const char *dir)
{
	char real[PATH_MAX];
	if (!*dir || !realpath(dir, real))
		return false;
	size_t n = strlen(real);
	return strncmp(path, real, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

char *config_default_kubefiles(char *err, size_t errlen)
{
	char exe[PATH_MAX], bindir[PATH_MAX];
	size_t size = sizeof exe;
	char *installed = NULL, *found = NULL;
	if (uv_exepath(exe, &size) == 0 && realpath(exe, bindir)) {
		char *slash = strrchr(bindir, '/');
		if (slash)
			*slash = '\0';
		installed = xasprintf("%s/%s/kubefiles", bindir, RUNBOAT_BIN_TO_DATADIR);
		found = existing_dir(installed);
#ifdef RUNBOAT_BUILD_DIR
		if (!found && path_inside(bindir, RUNBOAT_BUILD_DIR))
			found = existing_dir(RUNBOAT_SOURCE_DIR "/kubefiles");
#endif
	}
	if (!found)
		found = existing_dir(RUNBOAT_DATADIR "/kubefiles");
	if (!found)
		snprintf(err, errlen, "no default kubefiles directory found (looked in %s%s%s)",
			 installed ? installed : "", installed ? " and " : "",
			 RUNBOAT_DATADIR "/kubefiles");
	free(installed);
	return found;
}

/* ---- sections ---- */

static void set_defaults(struct config *c)
{
	c->server.listen = xstrdup("127.0.0.1:8000");
	c->server.listen_host = xstrdup("127.0.0.1");
	c->server.listen_port = 8000;
	c->server.base_url = xstrdup("http://127.0.0.1:8000");
	c->server.log_level = LOG_INFO;
	c->server.log_format = LOG_FORMAT_TEXT;
	c->server.access_log = true;
	c->server.max_connections = 1024;
	c->server.max_connections_per_client = 256;
	c->server.max_buffered_body_bytes = 67108864;
	c->server.max_header_bytes = 16384;
	c->server.max_request_line_bytes = 8192;
	c->server.max_body_bytes = 1048576;
	c->server.max_webhook_body_bytes = 26214400;
	c->server.header_timeout = 10.0;
	c->server.body_timeout = 60.0;
	c->server.keepalive_timeout = 30.0;
	c->server.shutdown_timeout = 10.0;
	c->server.stream_buffer_bytes = 262144;
	c->server.stream_stall_timeout = 60.0;
	c->admin.user = xstrdup("admin");
	c->limits.max_initializing = 2;
	c->limits.max_started = 6;
	c->limits.max_deployed = 20;
	c->limits.start_after_init = true;
	c->limits.max_restarts = 5;
	c->kubernetes.kubeconfig = xstrdup("");
	c->kubernetes.context = xstrdup("");
	c->kubernetes.qps = 200.0;
	c->kubernetes.burst = 400;
	c->kubernetes.request_timeout = 30.0;
	c->kubernetes.leader_election = false;
	c->kubernetes.lease_name = xstrdup("runboat");
	c->kubernetes.lease_duration = 15.0;
	c->kubernetes.renew_deadline = 10.0;
	c->kubernetes.retry_period = 2.0;
	c->build.kubefiles = xstrdup("kubefiles");
	c->build.template_vars = json_object();
	c->github.api_url = xstrdup("https://api.github.com");
	c->github.statuses = true;
	c->github.sync_interval = -1; /* resolved by resolve_sync_interval */
}

/* The sync is on by default only with a token (anonymous calls have 60 an
 * hour, and a 304 is free only when authorized). */
static void resolve_sync_interval(struct config *c)
{
	if (c->github.sync_interval < 0)
		c->github.sync_interval = c->github.token ? 600.0 : 0.0;
}

/* [github] sync_repos: an array of "owner/repo", lowercased, duplicates
 * dropped. */
static int get_sync_repos(struct loader *ld, json_t *tbl, const char *tpath,
			  struct config_github *g)
{
	json_t *a = json_object_get(tbl, "sync_repos");
	if (!a)
		return 0;
	if (!json_is_array(a))
		return fail_key(ld, tpath, "sync_repos", "got %s, expected an array of "
				"\"owner/repo\" strings", kind_name(a));
	if (json_array_size(a) > 10000)
		return fail_key(ld, tpath, "sync_repos", "has %zu entries, expected at most 10000",
				json_array_size(a));
	g->sync_repos = xcalloc(json_array_size(a) + 1, sizeof *g->sync_repos);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) {
		const char *r = json_string_value(v);
		if (!json_is_string(v) || strlen(r) != json_string_length(v) || !validate_repo(r))
			return fail_key(ld, tpath, "sync_repos", "entry %zu is not a repository name, "
					"expected \"owner/repo\"", i + 1);
		char *lower = xstrdup(r);
		for (char *p = lower; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		bool dup = false;
		for (size_t k = 0; k < g->n_sync_repos && !dup; k++)
			dup = strcmp(g->sync_repos[k], lower) == 0;
		if (dup)
			free(lower);
		else
			g->sync_repos[g->n_sync_repos++] = lower;
	}
	return 0;
}

#define ONE_DAY 86400.0
#define ONE_GIB (1024LL * 1024 * 1024)

static int load_server(struct loader *ld, json_t *root, struct config *c)
{
	static const char *const P = "server";
	json_t *t = NULL;
	int r = get_table(ld, root, "", P, &t);
	if (r <= 0)
		return r;
	if (check_keys(ld, t, P, SERVER_KEYS) < 0)
		return -1;
	struct config_server *s = &c->server;
	const char *str;

	if ((r = get_str(ld, t, P, "listen", &str)) < 0)
		return -1;
	if (r) {
		char *host = NULL;
		const char *why = parse_listen(str, &host, &s->listen_port);
		if (why)
			return fail_key(ld, P, "listen", "%s, expected \"host:port\", \"[ipv6]:port\" "
					"or \":port\"", why);
		free(s->listen_host);
		s->listen_host = host;
		set_str(&s->listen, str);
	}
	if ((r = get_str(ld, t, P, "base_url", &str)) < 0)
		return -1;
	if (r) {
		const char *why = check_url(str);
		if (why)
			return fail_key(ld, P, "base_url", "%s, expected the public http:// or "
					"https:// URL of runboat", why);
		free(s->base_url);
		s->base_url = trim_url(str);
	}
	if ((r = get_str(ld, t, P, "log_level", &str)) < 0)
		return -1;
	if (r) {
		int level = log_level_parse(str);
		if (level < 0)
			return fail_key(ld, P, "log_level", "\"%s\" is not a log level, expected "
					"debug, info, warn, error or off", str);
		s->log_level = level;
	}
	if ((r = get_str(ld, t, P, "log_format", &str)) < 0)
		return -1;
	if (r) {
		int f = log_format_parse(str);
		if (f < 0)
			return fail_key(ld, P, "log_format", "\"%s\" is not a log format, expected "
					"\"text\" or \"json\"", str);
		s->log_format = f;
	}
	if (get_bool(ld, t, P, "access_log", &s->access_log) < 0 ||
	    get_int_into(ld, t, P, "max_connections", 1, 1000000, &s->max_connections) < 0 ||
	    get_int_into(ld, t, P, "max_connections_per_client", 0, 1000000,
			 &s->max_connections_per_client) < 0 ||
	    get_size_into(ld, t, P, "max_buffered_body_bytes", 0, 16 * ONE_GIB,
			  &s->max_buffered_body_bytes) < 0 ||
	    get_size_into(ld, t, P, "max_header_bytes", 1024, 16 * 1024 * 1024,
			  &s->max_header_bytes) < 0 ||
	    get_size_into(ld, t, P, "max_request_line_bytes", 256, 16 * 1024 * 1024,
			  &s->max_request_line_bytes) < 0 ||
	    get_size_into(ld, t, P, "max_body_bytes", 1, ONE_GIB, &s->max_body_bytes) < 0 ||
	    get_size_into(ld, t, P, "max_webhook_body_bytes", 1, ONE_GIB,
			  &s->max_webhook_body_bytes) < 0 ||
	    get_positive(ld, t, P, "header_timeout", ONE_DAY, &s->header_timeout) < 0 ||
	    get_positive(ld, t, P, "body_timeout", ONE_DAY, &s->body_timeout) < 0 ||
	    get_positive(ld, t, P, "keepalive_timeout", ONE_DAY, &s->keepalive_timeout) < 0 ||
	    get_positive(ld, t, P, "shutdown_timeout", ONE_DAY, &s->shutdown_timeout) < 0 ||
	    get_size_into(ld, t, P, "stream_buffer_bytes", 1024, ONE_GIB,
			  &s->stream_buffer_bytes) < 0 ||
	    get_positive(ld, t, P, "stream_stall_timeout", ONE_DAY, &s->stream_stall_timeout) < 0)
		return -1;
	return 0;
}

static int load_admin(struct loader *ld, json_t *root, struct config *c)
{
	static const char *const P = "admin";
	json_t *t = NULL;
	if (get_table(ld, root, "", P, &t) < 0)
		return -1;
	if (t) {
		const char *user;
		int r;
		if (check_keys(ld, t, P, ADMIN_KEYS) < 0 || (r = get_str(ld, t, P, "user", &user)) < 0)
			return -1;
		if (r) {
			if (!*user || strchr(user, ':'))
				return fail_key(ld, P, "user", "expected a non-empty user name "
						"without ':'");
			set_str(&c->admin.user, user);
		}
	}
	return get_secret(ld, t, P, "password", "password_file", CONFIG_ENV_ADMIN_PASSWORD,
			  &c->admin.password);
}

static int load_limits(struct loader *ld, json_t *root, struct config *c)
{
	static const char *const P = "limits";
	json_t *t = NULL;
	int r = get_table(ld, root, "", P, &t);
	if (r <= 0)
		return r;
	struct config_limits *l = &c->limits;
	if (check_keys(ld, t, P, LIMITS_KEYS) < 0 ||
	    get_int_into(ld, t, P, "max_initializing", 1, 100000, &l->max_initializing) < 0 ||
	    get_int_into(ld, t, P, "max_started", 1, 100000, &l->max_started) < 0 ||
	    get_int_into(ld, t, P, "max_deployed", 1, 100000, &l->max_deployed) < 0 ||
	    get_int_into(ld, t, P, "max_deployed_per_ref", 0, 100000, &l->max_deployed_per_ref) < 0 ||
	    get_bool(ld, t, P, "start_after_init", &l->start_after_init) < 0 ||
	    get_int_into(ld, t, P, "max_restarts", 0, 100000, &l->max_restarts) < 0)
		return -1;
	json_t *idle = json_object_get(t, "stop_idle_after");
	if (idle) {
		if (!json_is_number(idle))
			return fail_key(ld, P, "stop_idle_after", "got %s, expected a number of seconds",
					kind_name(idle));
		double d = json_number_value(idle);
		if (!(d == 0 || (d >= 60 && d <= 30 * ONE_DAY)))
			return fail_key(ld, P, "stop_idle_after", "%.15g is out of range, expected 0 "
					"(never) or 60..%.15g seconds", d, 30 * ONE_DAY);
		l->stop_idle_after = d;
	}
	return 0;
}

/* [kubernetes] leader_election*: the Lease's name and the three durations
 * of client-go, checked as client-go checks them. */
static int load_leader_election(struct loader *ld, json_t *t, struct config_kubernetes *k)
{
	static const char *const P = "kubernetes";
	const char *str;
	int r;
	long long dur = (long long)k->lease_duration;
	if (get_bool(ld, t, P, "leader_election", &k->leader_election) < 0 ||
	    (r = get_str(ld, t, P, "leader_election_lease", &str)) < 0)
		return -1;
	if (r) {
		if (!validate_dns_name(str) || strlen(str) > 253)
			return fail_key(ld, P, "leader_election_lease",
					"\"%s\" is not a valid object name, expected a DNS-1123 "
					"subdomain ([a-z0-9-.], at most 253)", str);
		set_str(&k->lease_name, str);
	}
	if (get_int(ld, t, P, "leader_election_lease_duration", 1, 3600, &dur) < 0 ||
	    get_positive(ld, t, P, "leader_election_renew_deadline", 3600, &k->renew_deadline) < 0 ||
	    get_positive(ld, t, P, "leader_election_retry_period", 3600, &k->retry_period) < 0)
		return -1;
	k->lease_duration = (double)dur;
	if (!(k->renew_deadline < k->lease_duration))
		return fail_key(ld, P, "leader_election_renew_deadline",
				"%.15g is not below leader_election_lease_duration (%lld): a leader "
				"must stop acting before a standby may take over", k->renew_deadline,
				dur);
	if (!(k->retry_period * 1.2 < k->renew_deadline))
		return fail_key(ld, P, "leader_election_retry_period",
				"%.15g is too long for leader_election_renew_deadline (%.15g), expected "
				"retry_period * 1.2 < renew_deadline", k->retry_period,
				k->renew_deadline);
	return 0;
}

static int load_kubernetes(struct loader *ld, json_t *root, struct config *c)
{
	static const char *const P = "kubernetes";
	struct config_kubernetes *k = &c->kubernetes;
	json_t *t = NULL;
	const char *str;
	int r = get_table(ld, root, "", P, &t);
	if (r < 0)
		return -1;
	if (r == 0)
		return fail_path(ld, "kubernetes.namespace",
				 "missing, expected a [kubernetes] section with namespace = \"...\"");
	if (check_keys(ld, t, P, KUBERNETES_KEYS) < 0 ||
	    (r = get_str(ld, t, P, "namespace", &str)) < 0)
		return -1;
	if (r == 0)
		return fail_key(ld, P, "namespace", "missing, expected the namespace of the builds");
	if (!validate_dns_label(str, strlen(str)))
		return fail_key(ld, P, "namespace", "\"%s\" is not a valid namespace, expected a "
				"DNS-1123 label ([a-z0-9-], at most 63, no '-' at either end)", str);
	set_str(&k->namespace, str);
	if ((r = get_str(ld, t, P, "kubeconfig", &str)) < 0)
		return -1;
	if (r)
		set_str(&k->kubeconfig, str);
	if ((r = get_str(ld, t, P, "context", &str)) < 0)
		return -1;
	if (r)
		set_str(&k->context, str);
	if (get_positive(ld, t, P, "qps", 1e6, &k->qps) < 0 ||
	    get_int_into(ld, t, P, "burst", 1, 1000000, &k->burst) < 0 ||
	    get_positive(ld, t, P, "request_timeout", ONE_DAY, &k->request_timeout) < 0)
		return -1;
	if (load_leader_election(ld, t, k) < 0)
		return -1;
	if (*k->kubeconfig) {
		char *resolved = resolve_path(ld, k->kubeconfig);
		free(k->kubeconfig);
		k->kubeconfig = resolved;
	}
	return 0;
}

static int get_template_vars(struct loader *ld, json_t *tbl, const char *tpath, json_t *into)
{
	json_t *vars = NULL;
	int r = get_table(ld, tbl, tpath, "template_vars", &vars);
	if (r <= 0)
		return r;
	json_t *copy = json_deep_copy(vars);
	if (!copy)
		abort();
	json_object_update(into, copy);
	json_decref(copy);
	return 1;
}

static int load_build(struct loader *ld, json_t *root, struct config *c)
{
	static const char *const P = "build";
	struct config_build *b = &c->build;
	json_t *t = NULL;
	const char *str;
	int r = get_table(ld, root, "", P, &t);
	if (r < 0)
		return -1;
	if (r == 0)
		return fail_path(ld, "build.domain",
				 "missing, expected a [build] section with domain = \"...\"");
	if (check_keys(ld, t, P, BUILD_KEYS) < 0 || (r = get_str(ld, t, P, "domain", &str)) < 0)
		return -1;
	if (r == 0)
		return fail_key(ld, P, "domain", "missing, expected the DNS domain of the builds "
				"(e.g. \"runboat.example.com\")");
	char *lower = xstrdup(str);
	for (char *p = lower; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!is_domain(lower)) {
		free(lower);
		return fail_key(ld, P, "domain", "\"%s\" is not a valid DNS name, expected "
				"dot-separated labels of [a-z0-9-] (at most %d characters)", str,
				MAX_DOMAIN_LEN);
	}
	free(b->domain);
	b->domain = lower;
	if ((r = get_str(ld, t, P, "kubefiles", &str)) < 0)
		return -1;
	if (r) {
		if (!*str)
			return fail_key(ld, P, "kubefiles", "is empty, expected a directory");
		free(b->kubefiles);
		b->kubefiles = resolve_path(ld, str);
	} else {
		char why[PATH_MAX * 2 + 100];
		char *dir = config_default_kubefiles(why, sizeof why);
		if (!dir)
			return fail_key(ld, P, "kubefiles", "not set, and %s, expected an installed "
					"runboat (cmake --install) or kubefiles = \"DIR\"", why);
		free(b->kubefiles);
		b->kubefiles = dir;
	}
	if (check_dir(ld, P, "kubefiles", b->kubefiles) < 0 ||
	    get_env(ld, t, P, "env", &b->env) < 0 ||
	    get_env(ld, t, P, "secret_env", &b->secret_env) < 0 ||
	    get_template_vars(ld, t, P, b->template_vars) < 0)
		return -1;
	return 0;
}

static int load_github(struct loader *ld, json_t *root, struct config *c)
{
	static const char *const P = "github";
	struct config_github *g = &c->github;
	json_t *t = NULL;
	const char *str;
	int r;
	if (get_table(ld, root, "", P, &t) < 0)
		return -1;
	if (t) {
		if (check_keys(ld, t, P, GITHUB_KEYS) < 0 ||
		    (r = get_str(ld, t, P, "api_url", &str)) < 0)
			return -1;
		if (r) {
			const char *why = check_url(str);
			if (why)
				return fail_key(ld, P, "api_url", "%s, expected the http:// or "
						"https:// base URL of the GitHub API", why);
			free(g->api_url);
			g->api_url = trim_url(str);
		}
		if (get_bool(ld, t, P, "statuses", &g->statuses) < 0)
			return -1;
		json_t *si = json_object_get(t, "sync_interval");
		if (si) {
			double d = json_is_number(si) ? json_number_value(si) : -1;
			if (!json_is_number(si))
				return fail_key(ld, P, "sync_interval", "got %s, expected a number "
						"of seconds", kind_name(si));
			if (!(d == 0 || (d >= 1 && d <= ONE_DAY)))
				return fail_key(ld, P, "sync_interval", "%.15g is out of range, "
						"expected 0 (off) or 1..%.15g seconds", d, ONE_DAY);
			g->sync_interval = d;
		}
		json_t *db = json_object_get(t, "debounce");
		if (db) {
			if (!json_is_number(db))
				return fail_key(ld, P, "debounce", "got %s, expected a number of seconds",
						kind_name(db));
			double d = json_number_value(db);
			if (!(d >= 0 && d <= 3600))
				return fail_key(ld, P, "debounce", "%.15g is out of range, expected 0 "
						"(off) to 3600 seconds", d);
			g->debounce = d;
		}
		if (get_sync_repos(ld, t, P, g) < 0)
			return -1;
	}
	if (get_secret(ld, t, P, "token", "token_file", CONFIG_ENV_GITHUB_TOKEN, &g->token) < 0 ||
	    get_secret(ld, t, P, "webhook_secret", "webhook_secret_file",
		       CONFIG_ENV_WEBHOOK_SECRET, &g->webhook_secret) < 0)
		return -1;
	resolve_sync_interval(c);
	return 0;
}

/* Compiles re anchored (^(re)$); on error names the key and quotes
 * regerror. */
static int compile_regex(struct loader *ld, const char *tpath, const char *key, const char *re,
			 int flags, regex_t *out)
{
	if (!*re)
		return fail_key(ld, tpath, key, "is empty, expected a POSIX extended regex");
	if (strlen(re) > MAX_REGEX_LEN)
		return fail_key(ld, tpath, key, "is too long, expected at most %d characters",
				MAX_REGEX_LEN);
	regex_t probe;
	int rc = regcomp(&probe, re, REG_EXTENDED | REG_NOSUB | flags);
	if (rc != 0) {
		char why[256];
		regerror(rc, &probe, why, sizeof why);
		regfree(&probe);
		return fail_key(ld, tpath, key, "invalid regex \"%s\": %s, expected a POSIX "
				"extended regex", re, why);
	}
	regfree(&probe);
	char *anchored = xasprintf("^(%s)$", re);
	rc = regcomp(out, anchored, REG_EXTENDED | REG_NOSUB | flags);
	free(anchored);
	if (rc != 0) {
		char why[256];
		regerror(rc, out, why, sizeof why);
		regfree(out);
		return fail_key(ld, tpath, key, "invalid regex \"%s\": %s, expected a POSIX "
				"extended regex", re, why);
	}
	return 0;
}

static int load_repo(struct loader *ld, json_t *t, const char *P, struct config *c,
		     struct config_repo *repo)
{
	const char *str;
	int r;
	repo->line = toml_positions_line(ld->pos, P);
	repo->template_vars = json_deep_copy(c->build.template_vars);
	if (!repo->template_vars)
		abort();
	env_list_copy(&repo->env, &c->build.env);
	env_list_copy(&repo->secret_env, &c->build.secret_env);
	repo->kubefiles = xstrdup(c->build.kubefiles);
	if (check_keys(ld, t, P, REPO_KEYS) < 0 || (r = get_str(ld, t, P, "repo", &str)) < 0)
		return -1;
	if (r == 0)
		return fail_key(ld, P, "repo", "missing, expected a regex matching \"owner/repo\"");
	repo->repo = xstrdup(str);
	repo->branch = xstrdup(".*");
	if ((r = get_str(ld, t, P, "branch", &str)) < 0)
		return -1;
	if (r)
		set_str(&repo->branch, str);
	if ((r = get_str(ld, t, P, "image", &str)) < 0)
		return -1;
	if (r == 0)
		return fail_key(ld, P, "image", "missing, expected a container image "
				"(\"name:tag\" or \"name@sha256:...\")");
	const char *why = check_image(str);
	if (why)
		return fail_key(ld, P, "image", "\"%s\" %s, expected a container image "
				"(\"name:tag\" or \"name@sha256:...\")", str, why);
	repo->image = xstrdup(str);
	split_image(str, &repo->image_name, &repo->image_tag);
	if ((r = get_str(ld, t, P, "kubefiles", &str)) < 0)
		return -1;
	if (r) {
		if (!*str)
			return fail_key(ld, P, "kubefiles", "is empty, expected a directory");
		free(repo->kubefiles);
		repo->kubefiles = resolve_path(ld, str);
		if (check_dir(ld, P, "kubefiles", repo->kubefiles) < 0)
			return -1;
	}
	if (get_env(ld, t, P, "env", &repo->env) < 0 ||
	    get_env(ld, t, P, "secret_env", &repo->secret_env) < 0)
		return -1;
	if (get_template_vars(ld, t, P, repo->template_vars) < 0)
		return -1;
	if (compile_regex(ld, P, "repo", repo->repo, REG_ICASE, &repo->repo_re) < 0)
		return -1;
	if (compile_regex(ld, P, "branch", repo->branch, 0, &repo->branch_re) < 0) {
		regfree(&repo->repo_re);
		return -1;
	}
	repo->compiled = true;
	return 0;
}

/* An array of tables at root.key: *out gets it, or stays NULL. */
static int get_table_array(struct loader *ld, json_t *root, const char *key, json_t **out)
{
	json_t *a = json_object_get(root, key);
	if (!a)
		return 0;
	if (!json_is_array(a))
		return fail_key(ld, "", key, "got %s, expected an array of tables ([[%s]])",
				kind_name(a), key);
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e) {
		if (!json_is_object(e)) {
			char *p = toml_path_index(key, i);
			fail_path(ld, p, "got %s, expected a table ([[%s]])", kind_name(e), key);
			free(p);
			return -1;
		}
	}
	*out = a;
	return 1;
}

static int load_repos(struct loader *ld, json_t *root, struct config *c)
{
	json_t *a = NULL;
	int r = get_table_array(ld, root, "repos", &a);
	if (r <= 0)
		return r;
	c->repos = xcalloc(json_array_size(a) ? json_array_size(a) : 1, sizeof *c->repos);
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e) {
		char *p = toml_path_index("repos", i);
		c->n_repos = i + 1;
		r = load_repo(ld, e, p, c, &c->repos[i]);
		free(p);
		if (r < 0)
			return -1;
	}
	return 0;
}

static int load_one_sticky(struct loader *ld, json_t *e, const char *P, struct config *c,
			   struct config_sticky_branch *s)
{
	const char *repo = NULL, *branch = NULL;
	int rr, rb;
	if (check_keys(ld, e, P, STICKY_KEYS) < 0 || (rr = get_str(ld, e, P, "repo", &repo)) < 0 ||
	    (rb = get_str(ld, e, P, "branch", &branch)) < 0)
		return -1;
	if (rr == 0)
		return fail_key(ld, P, "repo", "missing, expected \"owner/repo\"");
	if (!validate_repo(repo))
		return fail_key(ld, P, "repo", "\"%s\" is not a repository name, expected "
				"\"owner/repo\"", repo);
	if (rb == 0)
		return fail_key(ld, P, "branch", "missing, expected a branch name");
	if (!validate_branch(branch))
		return fail_key(ld, P, "branch", "\"%s\" is not a valid branch name, expected a "
				"git branch name (git check-ref-format rules, UTF-8, at most %d "
				"bytes)", branch, VALIDATE_BRANCH_MAX);
	s->repo = xstrdup(repo);
	for (char *p = s->repo; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	s->branch = xstrdup(branch);
	if (!config_find_repo(c, s->repo, s->branch))
		return fail_path(ld, P, "%s branch %s is not matched by any [[repos]] entry, "
				 "expected a repo/branch that runboat builds", s->repo, s->branch);
	return 0;
}

static int load_sticky(struct loader *ld, json_t *root, struct config *c)
{
	json_t *a = NULL;
	int r = get_table_array(ld, root, "sticky_branches", &a);
	if (r <= 0)
		return r;
	c->sticky_branches = xcalloc(json_array_size(a) ? json_array_size(a) : 1,
				     sizeof *c->sticky_branches);
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e) {
		char *p = toml_path_index("sticky_branches", i);
		c->n_sticky_branches = i + 1;
		r = load_one_sticky(ld, e, p, c, &c->sticky_branches[i]);
		free(p);
		if (r < 0)
			return -1;
	}
	return 0;
}

static void log_warnings(const struct config *c)
{
	if (!c->github.webhook_secret)
		log_warn("%s: no GitHub webhook secret (github.webhook_secret, "
			 "github.webhook_secret_file or " CONFIG_ENV_WEBHOOK_SECRET
			 "): webhooks are accepted unsigned",
			 c->path);
	if (!c->admin.password)
		log_info("%s: no admin password (admin.password, admin.password_file or "
			 CONFIG_ENV_ADMIN_PASSWORD "): admin routes are refused",
			 c->path);
	if (c->github.statuses && !c->github.token)
		log_warn("%s: github.statuses is on but no GitHub token is set: posting commit "
			 "statuses will fail",
			 c->path);
}

static struct config *load_doc(json_t *doc, const struct toml_positions *pos, const char *name,
			       const char *base_dir, char *err, size_t errlen)
{
	struct loader ld = { .name = name, .base_dir = base_dir, .pos = pos, .err = err,
			     .errlen = errlen };
	struct config *c = xcalloc(1, sizeof *c);
	c->path = xstrdup(name);
	set_defaults(c);
	if (check_keys(&ld, doc, "", TOP_KEYS) < 0 || load_server(&ld, doc, c) < 0 ||
	    load_admin(&ld, doc, c) < 0 || load_limits(&ld, doc, c) < 0 ||
	    load_kubernetes(&ld, doc, c) < 0 || load_build(&ld, doc, c) < 0 ||
	    load_github(&ld, doc, c) < 0 || load_repos(&ld, doc, c) < 0 ||
	    load_sticky(&ld, doc, c) < 0)
		goto fail;
	log_warnings(c);
	return c;
fail:
	config_free(c);
	return NULL;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct toml_positions *pos = NULL;
	json_t *doc = toml_json_parse_file(path, &pos, err, errlen);
	if (!doc)
		return NULL;
	/* the directory of path, for relative paths in it */
	const char *slash = strrchr(path, '/');
	char *dir = !slash ? xstrdup(".") : slash == path ? xstrdup("/")
							  : xstrndup(path, (size_t)(slash - path));
	struct config *c = load_doc(doc, pos, path, dir, err, errlen);
	free(dir);
	json_decref(doc);
	toml_positions_free(pos);
	return c;
}

struct config *config_load_string(const char *text, const char *name, const char *base_dir,
				  char *err, size_t errlen)
{
	struct toml_positions *pos = NULL;
	if (!name)
		name = "<string>";
	json_t *doc = toml_json_parse_string(text, text ? strlen(text) : 0, name, &pos, err, errlen);
	if (!doc)
		return NULL;
	struct config *c = load_doc(doc, pos, name, base_dir, err, errlen);
	json_decref(doc);
	toml_positions_free(pos);
	return c;
}

struct config *config_default(const char *namespace, const char *domain, char *err,
			      size_t errlen)
{
	struct loader ld = { .name = "<defaults>", .err = err, .errlen = errlen };
	struct config *c = xcalloc(1, sizeof *c);
	c->path = xstrdup(ld.name);
	set_defaults(c);
	if (!namespace || !validate_dns_label(namespace, strlen(namespace))) {
		fail_path(&ld, "kubernetes.namespace", "expected a DNS-1123 label");
		goto fail;
	}
	c->kubernetes.namespace = xstrdup(namespace);
	c->build.domain = domain ? xstrdup(domain) : NULL;
	if (!domain || !is_domain(domain)) {
		fail_path(&ld, "build.domain", "expected a lowercase DNS name");
		goto fail;
	}
	if (get_secret(&ld, NULL, "admin", "password", "password_file", CONFIG_ENV_ADMIN_PASSWORD,
		       &c->admin.password) < 0 ||
	    get_secret(&ld, NULL, "github", "token", "token_file", CONFIG_ENV_GITHUB_TOKEN,
		       &c->github.token) < 0 ||
	    get_secret(&ld, NULL, "github", "webhook_secret", "webhook_secret_file",
		       CONFIG_ENV_WEBHOOK_SECRET, &c->github.webhook_secret) < 0)
		goto fail;
	resolve_sync_interval(c);
	return c;
fail:
	config_free(c);
	return NULL;
}

static void repo_free(struct config_repo *r)
{
	free(r->repo);
	free(r->branch);
	if (r->compiled) {
		regfree(&r->repo_re);
		regfree(&r->branch_re);
	}
	free(r->image);
	free(r->image_name);
	free(r->image_tag);
	free(r->kubefiles);
	env_list_free(&r->env);
	env_list_free(&r->secret_env);
	json_decref(r->template_vars);
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->server.listen);
	free(c->server.listen_host);
	free(c->server.base_url);
	free(c->admin.user);
	free_secret(c->admin.password);
	free(c->kubernetes.namespace);
	free(c->kubernetes.kubeconfig);
	free(c->kubernetes.context);
	free(c->kubernetes.lease_name);
	free(c->build.domain);
	free(c->build.kubefiles);
	env_list_free(&c->build.env);
	env_list_free(&c->build.secret_env);
	json_decref(c->build.template_vars);
	free(c->github.api_url);
	free_secret(c->github.token);
	free_secret(c->github.webhook_secret);
	for (size_t i = 0; i < c->github.n_sync_repos; i++)
		free(c->github.sync_repos[i]);
	free(c->github.sync_repos);
	for (size_t i = 0; i < c->n_repos; i++)
		repo_free(&c->repos[i]);
	free(c->repos);
	for (size_t i = 0; i < c->n_sticky_branches; i++) {
		free(c->sticky_branches[i].repo);
		free(c->sticky_branches[i].branch);
	}
	free(c->sticky_branches);
	free(c);
}

const struct config_repo *config_find_repo(const struct config *cfg, const char *repo,
					   const char *branch)
{
	if (!cfg || !repo || !branch)
		return NULL;
	for (size_t i = 0; i < cfg->n_repos; i++) {
		const struct config_repo *r = &cfg->repos[i];
		if (!r->compiled)
			continue;
		if (regexec(&r->repo_re, repo, 0, NULL, 0) == 0 &&
		    regexec(&r->branch_re, branch, 0, NULL, 0) == 0)
			return r;
	}
	return NULL;
}

bool config_builds_repo(const struct config *cfg, const char *repo)
{
	if (!cfg || !repo)
		return false;
	for (size_t i = 0; i < cfg->n_repos; i++)
		if (cfg->repos[i].compiled && regexec(&cfg->repos[i].repo_re, repo, 0, NULL, 0) == 0)
			return true;
	return false;
}

bool config_is_sticky(const struct config *cfg, const char *repo, const char *branch)
{
	if (!cfg || !repo || !branch)
		return false;
	for (size_t i = 0; i < cfg->n_sticky_branches; i++) {
		const struct config_sticky_branch *s = &cfg->sticky_branches[i];
		if (strcasecmp(s->repo, repo) == 0 && strcmp(s->branch, branch) == 0)
			return true;
	}
	return false;
}
