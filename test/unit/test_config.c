/* config.c and toml_json.cc: the sample loads, defaults, every class of
 * error names file, line and key, secrets, repo matching. Test files are
 * written to a fresh temporary directory. */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "toml_json.h"
#include "unit.h"
#include "util.h"

static char tmpdir[] = "/tmp/runboat-test-config-XXXXXX";
static char cfg_path[512];
static char err[1024];

/* The two required values, and kubefiles/ beside the file. */
#define REQUIRED "[kubernetes]\nnamespace = \"builds\"\n[build]\ndomain = \"rb.example.com\"\n"

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(2);
	}
	fputs(content, f);
	fclose(f);
}

/* The three required templates in dir (what config_load checks; their
 * content is only rendered at deploy time). */
static void make_kubefiles(const char *dir)
{
	static const char *const required[] = { "deployment.yaml", "initialize.yaml",
						"cleanup.yaml" };
	mkdir(dir, 0755);
	for (size_t i = 0; i < 3; i++) {
		char path[700];
		snprintf(path, sizeof path, "%s/%s", dir, required[i]);
		write_file(path, "# template\n");
	}
}

/* Writes content to <tmpdir>/runboat.toml and loads it. */
static struct config *load(const char *content)
{
	write_file(cfg_path, content);
	err[0] = '\0';
	return config_load(cfg_path, err, sizeof err);
}

/* Checks that content fails with exactly "<file>:<expected>". */
static void expect_error(int line, const char *content, const char *expected_fmt, ...)
{
	struct config *c = load(content);
	char expected[1024], full[1600];
	va_list ap;
	va_start(ap, expected_fmt);
	vsnprintf(expected, sizeof expected, expected_fmt, ap);
	va_end(ap);
	snprintf(full, sizeof full, "%s:%s", cfg_path, expected);
	unit_checks++;
	if (c || strcmp(err, full) != 0) {
		unit_failures++;
		fprintf(stderr, "%s:%d: config error mismatch%s\n  got:      \"%s\"\n  expected: \"%s\"\n",
			__FILE__, line, c ? " (it loaded!)" : "", c ? "" : err, full);
	}
	config_free(c);
}

#define EXPECT_ERROR(content, ...) expect_error(__LINE__, content, __VA_ARGS__)

/* Fails and the message starts with "<file>:<prefix>" and contains needle. */
static void expect_error_like(int line, const char *content, const char *prefix, const char *needle)
{
	struct config *c = load(content);
	char full[1200];
	snprintf(full, sizeof full, "%s:%s", cfg_path, prefix);
	unit_checks++;
	if (c || !str_starts_with(err, full) || (needle && !strstr(err, needle))) {
		unit_failures++;
		fprintf(stderr, "%s:%d: config error mismatch%s\n  got:      \"%s\"\n  expected: \"%s...%s...\"\n",
			__FILE__, line, c ? " (it loaded!)" : "", c ? "" : err, full, needle ? needle : "");
	}
	config_free(c);
}

#define EXPECT_ERROR_LIKE(content, prefix, needle) expect_error_like(__LINE__, content, prefix, needle)

static void clear_secret_env(void)
{
	unsetenv(CONFIG_ENV_ADMIN_PASSWORD);
	unsetenv(CONFIG_ENV_GITHUB_TOKEN);
	unsetenv(CONFIG_ENV_WEBHOOK_SECRET);
}

static const char *env_get(const struct config_env_list *l, const char *name)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i].name, name) == 0)
			return l->items[i].value;
	return NULL;
}

static void test_sample_loads(void)
{
	struct config *c = config_load("runboat.toml.sample", err, sizeof err);
	if (!c)
		fprintf(stderr, "sample: %s\n", err);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STR(c->kubernetes.namespace, "runboat-builds");
	CHECK_STR(c->build.domain, "runboat.example.com");
	/* the sample leaves kubefiles to its default */
	char *def = config_default_kubefiles(err, sizeof err);
	CHECK_STR(c->build.kubefiles, def);
	free(def);
	CHECK_STR(c->server.listen_host, "127.0.0.1");
	CHECK_INT(c->server.listen_port, 8000);
	CHECK_STR(env_get(&c->build.env, "PGPORT"), "5432");
	CHECK_INT(c->n_repos, 2);
	CHECK_STR(c->repos[0].image_name, "ghcr.io/oca/oca-ci/py3.10-odoo16.0");
	CHECK_STR(c->repos[0].image_tag, "latest");
	CHECK_STR(c->repos[1].image_name, "registry.example.com/acme/odoo@sha256");
	CHECK_STR(json_string_value(json_object_get(c->repos[0].template_vars, "storageClassName")),
		  "standard");
	CHECK_STR(json_string_value(json_object_get(c->repos[1].template_vars, "storageClassName")),
		  "fast");
	CHECK_INT(c->n_sticky_branches, 1);
	CHECK(config_is_sticky(c, "OCA/mis-builder", "16.0"));
	CHECK(!config_is_sticky(c, "oca/mis-builder", "15.0"));
	CHECK(config_find_repo(c, "oca/mis-builder", "16.0") == &c->repos[0]);
	CHECK(config_find_repo(c, "oca/mis-builder", "13.0") == NULL);
	CHECK(config_builds_repo(c, "oca/mis-builder"));
	CHECK(config_builds_repo(c, "oca/other-thing"));
	CHECK(!config_builds_repo(c, "someone/else"));
	CHECK(c->admin.password == NULL);
	CHECK(c->github.webhook_secret == NULL);
	config_free(c);
}

static void test_defaults(void)
{
	struct config *c = load(REQUIRED);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STR(c->server.listen, "127.0.0.1:8000");
	CHECK_STR(c->server.base_url, "http://127.0.0.1:8000");
	CHECK_INT(c->server.log_level, LOG_INFO);
	CHECK(c->server.access_log);
	CHECK_INT(c->server.max_connections, 1024);
	CHECK_INT(c->server.max_header_bytes, 16384);
	CHECK_INT(c->server.max_request_line_bytes, 8192);
	CHECK_INT(c->server.max_body_bytes, 1048576);
	CHECK_INT(c->server.max_webhook_body_bytes, 26214400);
	CHECK(c->server.header_timeout == 10.0 && c->server.body_timeout == 60.0);
	CHECK(c->server.keepalive_timeout == 30.0 && c->server.shutdown_timeout == 10.0);
	CHECK_STR(c->admin.user, "admin");
	CHECK(c->admin.password == NULL);
	CHECK_INT(c->limits.max_initializing, 2);
	CHECK_INT(c->limits.max_started, 6);
	CHECK_INT(c->limits.max_deployed, 20);
	CHECK(c->limits.start_after_init);
	CHECK_STR(c->kubernetes.kubeconfig, "");
	CHECK_STR(c->kubernetes.context, "");
	CHECK(c->kubernetes.qps == 200.0 && c->kubernetes.request_timeout == 30.0);
	CHECK_INT(c->kubernetes.burst, 400);
	CHECK_INT(c->server.log_format, LOG_FORMAT_TEXT);
	/* no kubefiles key: the default kubefiles, not a kubefiles/ beside the
	 * file (there is one in tmpdir); this test runs from the build tree,
	 * so the default is the source tree's (the working directory) */
	char real[PATH_MAX];
	CHECK(realpath("kubefiles", real) != NULL);
	CHECK_STR(c->build.kubefiles, real);
	CHECK_INT(c->build.env.count, 0);
	CHECK(json_is_object(c->build.template_vars) && json_object_size(c->build.template_vars) == 0);
	CHECK_STR(c->github.api_url, "https://api.github.com");
	CHECK(c->github.token == NULL && c->github.webhook_secret == NULL);
	CHECK(c->github.statuses);
	CHECK_INT(c->n_repos, 0);
	CHECK(config_find_repo(c, "oca/x", "16.0") == NULL);
	config_free(c);

	c = config_default("ns", "example.org", err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->kubernetes.namespace, "ns");
		CHECK_STR(c->build.domain, "example.org");
		CHECK_INT(c->limits.max_deployed, 20);
		CHECK_STR(c->build.kubefiles, "kubefiles");
	}
	config_free(c);
	CHECK(config_default("Bad_NS", "example.org", err, sizeof err) == NULL);
	CHECK_STR(err, "<defaults>: kubernetes.namespace: expected a DNS-1123 label");
	config_free(NULL);
}

static void test_values(void)
{
	struct config *c = load("[server]\n"
				"listen = \"[::1]:0\"\n"
				"base_url = \"https://runboat.example.com/sub/\"\n"
				"log_level = \"debug\"\n"
				"log_format = \"json\"\n"
				"header_timeout = 5\n" /* an integer where a float is expected */
				"[limits]\nmax_deployed = 100\nstart_after_init = false\n"
				"max_deployed_per_ref = 3\nstop_idle_after = 3600\n"
				"[kubernetes]\nnamespace = \"b-1\"\nkubeconfig = \"kc\"\n"
				"[build]\ndomain = \"RB.Example.COM\"\n"
				"[github]\napi_url = \"http://127.0.0.1:9999/api/v3/\"\nstatuses = false\n");
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STR(c->server.listen_host, "::1");
	CHECK_INT(c->server.listen_port, 0);
	CHECK_STR(c->server.base_url, "https://runboat.example.com/sub");
	CHECK_INT(c->server.log_level, LOG_DEBUG);
	CHECK_INT(c->server.log_format, LOG_FORMAT_JSON);
	CHECK(c->server.header_timeout == 5.0);
	CHECK_INT(c->limits.max_deployed, 100);
	CHECK_INT(c->limits.max_deployed_per_ref, 3);
	CHECK(c->limits.stop_idle_after == 3600.0);
	CHECK(!c->limits.start_after_init);
	char *kc = xasprintf("%s/kc", tmpdir);
	CHECK_STR(c->kubernetes.kubeconfig, kc);
	free(kc);
	CHECK_STR(c->build.domain, "rb.example.com");
	CHECK_STR(c->github.api_url, "http://127.0.0.1:9999/api/v3");
	CHECK(!c->github.statuses);
	config_free(c);

	/* "~/" is $HOME */
	const char *old_home = getenv("HOME");
	char *saved_home = old_home ? xstrdup(old_home) : NULL;
	setenv("HOME", tmpdir, 1);
	c = load("[kubernetes]\nnamespace = \"n\"\n[build]\ndomain = \"x.org\"\nkubefiles = \"~/kubefiles\"\n");
	CHECK(c != NULL);
	if (c) {
		char *want = xasprintf("%s/kubefiles", tmpdir);
		CHECK_STR(c->build.kubefiles, want);
		free(want);
	}
	config_free(c);
	if (saved_home)
		setenv("HOME", saved_home, 1);
	else
		unsetenv("HOME");
	free(saved_home);

	c = load("[server]\nlisten = \":8080\"\n" REQUIRED);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->server.listen_host, "");
		CHECK_INT(c->server.listen_port, 8080);
	}
	config_free(c);
}

static void test_unknown_keys(void)
{
	EXPECT_ERROR("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n" REQUIRED,
		     "3: server.lisen: unknown key, did you mean \"listen\"?");
	EXPECT_ERROR(REQUIRED "[serveur]\nx = 1\n",
		     "5: serveur: unknown key, did you mean \"server\"?");
	EXPECT_ERROR("namespace = \"x\"\n" REQUIRED,
		     "1: namespace: unknown key, did you mean \"namespace\" in [kubernetes]?");
	EXPECT_ERROR(REQUIRED "[limits]\nfoo = 1\n",
		     "6: limits.foo: unknown key, expected one of: max_initializing, max_started, "
		     "max_deployed, max_deployed_per_ref, start_after_init, stop_idle_after, "
		     "max_restarts");
	/* the first by line, although "aaa" sorts first */
	EXPECT_ERROR(REQUIRED "[github]\nzzz = 1\naaa = 2\n",
		     "6: github.zzz: unknown key, expected one of: api_url, token, token_file, "
		     "webhook_secret, webhook_secret_file, statuses, sync_interval, sync_repos, "
		     "debounce");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/b'\nimage = 'x'\nbrnch = 'main'\n",
		     "8: repos[0].brnch: unknown key, did you mean \"branch\"?");
	EXPECT_ERROR(REQUIRED "[[sticky_branches]]\nrepo = 'a/b'\nbranches = 'x'\n",
		     "7: sticky_branches[0].branches: unknown key, did you mean \"branch\"?");
}

static void test_wrong_types(void)
{
	EXPECT_ERROR("[server]\nmax_connections = \"10\"\n" REQUIRED,
		     "2: server.max_connections: got a string, expected an integer");
	EXPECT_ERROR("[server]\nmax_connections = 10.5\n" REQUIRED,
		     "2: server.max_connections: got a float, expected an integer");
	EXPECT_ERROR("[server]\naccess_log = \"yes\"\n" REQUIRED,
		     "2: server.access_log: got a string, expected true or false");
	EXPECT_ERROR("[server]\nlog_format = \"logfmt\"\n" REQUIRED,
		     "2: server.log_format: \"logfmt\" is not a log format, expected \"text\" or "
		     "\"json\"");
	EXPECT_ERROR("[server]\nlog_format = \"JSON\"\n" REQUIRED,
		     "2: server.log_format: \"JSON\" is not a log format, expected \"text\" or "
		     "\"json\"");
	EXPECT_ERROR("[server]\nlog_format = 1\n" REQUIRED,
		     "2: server.log_format: got an integer, expected a string");
	EXPECT_ERROR("[server]\nbody_timeout = true\n" REQUIRED,
		     "2: server.body_timeout: got a boolean, expected a number");
	EXPECT_ERROR("server = 1\n" REQUIRED, "1: server: got an integer, expected a table");
	EXPECT_ERROR(REQUIRED "[repos]\nrepo = 'x'\n",
		     "5: repos: got a table, expected an array of tables ([[repos]])");
	EXPECT_ERROR("repos = [1]\n" REQUIRED, "1: repos[0]: got an integer, expected a table ([[repos]])");
	EXPECT_ERROR(REQUIRED "[build.env]\nFOO = 1\n",
		     "6: build.env.FOO: got an integer, expected a string");
	EXPECT_ERROR(REQUIRED "[build.env]\n\"A-B\" = \"x\"\n",
		     "6: build.env.A-B: invalid environment variable name, expected "
		     "[A-Za-z_][A-Za-z0-9_]*");
	EXPECT_ERROR(REQUIRED "[build.secret_env]\n\"1X\" = \"x\"\n",
		     "6: build.secret_env.1X: invalid environment variable name, expected "
		     "[A-Za-z_][A-Za-z0-9_]*");
	EXPECT_ERROR(REQUIRED "[build.secret_env]\n\"a.b\" = \"x\"\n",
		     "6: build.secret_env.\"a.b\": invalid environment variable name, expected "
		     "[A-Za-z_][A-Za-z0-9_]*");
	EXPECT_ERROR("[kubernetes]\nnamespace = 1\n", "2: kubernetes.namespace: got an integer, expected a string");
}

static void test_bad_regex(void)
{
	EXPECT_ERROR_LIKE(REQUIRED "[[repos]]\nrepo = 'oca/(x'\nimage = 'img'\n",
			  "6: repos[0].repo: invalid regex \"oca/(x\": ", ", expected a POSIX extended regex");
	/* regerror's own text is quoted */
	char want[256];
	regex_t re;
	int rc = regcomp(&re, "[a", REG_EXTENDED | REG_NOSUB);
	char why[128];
	regerror(rc, &re, why, sizeof why);
	regfree(&re);
	snprintf(want, sizeof want, "invalid regex \"[a\": %s, expected", why);
	EXPECT_ERROR_LIKE(REQUIRED "[[repos]]\nrepo = 'a/b'\nimage = 'img'\n\n[[repos]]\nrepo = 'x/y'\n"
			  "branch = '[a'\nimage = 'img'\n",
			  "11: repos[1].branch: ", want);
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = ''\nimage = 'img'\n",
		     "6: repos[0].repo: is empty, expected a POSIX extended regex");
}

static void test_missing_required(void)
{
	EXPECT_ERROR("[build]\ndomain = \"x.org\"\n",
		     " kubernetes.namespace: missing, expected a [kubernetes] section with "
		     "namespace = \"...\"");
	EXPECT_ERROR("# comment\n[kubernetes]\ncontext = \"c\"\n[build]\ndomain = \"x.org\"\n",
		     "2: kubernetes.namespace: missing, expected the namespace of the builds");
	EXPECT_ERROR("[kubernetes]\nnamespace = \"n\"\n",
		     " build.domain: missing, expected a [build] section with domain = \"...\"");
	EXPECT_ERROR(REQUIRED "\n[[repos]]\nbranch = 'main'\nimage = 'img'\n",
		     "6: repos[0].repo: missing, expected a regex matching \"owner/repo\"");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/b'\nimage = 'i'\n[[repos]]\nrepo = 'c/d'\n",
		     "8: repos[1].image: missing, expected a container image (\"name:tag\" or "
		     "\"name@sha256:...\")");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/.*'\nimage = 'i'\n[[sticky_branches]]\nrepo = 'a/b'\n",
		     "8: sticky_branches[0].branch: missing, expected a branch name");
}

static void test_out_of_range(void)
{
	EXPECT_ERROR(REQUIRED "[limits]\nmax_started = 0\n",
		     "6: limits.max_started: 0 is out of range, expected 1..100000");
	EXPECT_ERROR(REQUIRED "[limits]\nmax_initializing = -3\n",
		     "6: limits.max_initializing: -3 is out of range, expected 1..100000");
	EXPECT_ERROR("[server]\nkeepalive_timeout = 0\n" REQUIRED,
		     "2: server.keepalive_timeout: 0 is out of range, expected a number > 0 and <= 86400");
	EXPECT_ERROR("[server]\nmax_body_bytes = -1\n" REQUIRED,
		     "2: server.max_body_bytes: -1 is out of range, expected 1..1073741824");
	EXPECT_ERROR("[kubernetes]\nnamespace = \"n\"\nqps = -1.5\n[build]\ndomain = \"x.org\"\n",
		     "3: kubernetes.qps: -1.5 is out of range, expected a number > 0 and <= 1000000");
	EXPECT_ERROR("[server]\nlisten = \"127.0.0.1:65536\"\n" REQUIRED,
		     "2: server.listen: the port must be a number 0..65535, expected \"host:port\", "
		     "\"[ipv6]:port\" or \":port\"");
	EXPECT_ERROR("[server]\nlisten = \"::1:80\"\n" REQUIRED,
		     "2: server.listen: an IPv6 address must be in brackets, expected \"host:port\", "
		     "\"[ipv6]:port\" or \":port\"");
	EXPECT_ERROR("[server]\nlisten = \"localhost\"\n" REQUIRED,
		     "2: server.listen: missing :port, expected \"host:port\", \"[ipv6]:port\" or \":port\"");
	EXPECT_ERROR("[server]\nbase_url = \"ftp://x.org\"\n" REQUIRED,
		     "2: server.base_url: not an http:// or https:// URL, expected the public http:// "
		     "or https:// URL of runboat");
	EXPECT_ERROR(REQUIRED "[limits]\nstop_idle_after = 30\n",
		     "6: limits.stop_idle_after: 30 is out of range, expected 0 (never) or "
		     "60..2592000 seconds");
	EXPECT_ERROR(REQUIRED "[github]\ndebounce = -1\n",
		     "6: github.debounce: -1 is out of range, expected 0 (off) to 3600 seconds");
	EXPECT_ERROR(REQUIRED "[github]\ndebounce = \"5\"\n",
		     "6: github.debounce: got a string, expected a number of seconds");
	EXPECT_ERROR(REQUIRED "[github]\napi_url = \"https://\"\n",
		     "6: github.api_url: has no host, expected the http:// or https:// base URL of "
		     "the GitHub API");
	EXPECT_ERROR(REQUIRED "[github]\napi_url = \"https://u:p@h/\"\n",
		     "6: github.api_url: must not hold credentials, expected the http:// or https:// "
		     "base URL of the GitHub API");
	EXPECT_ERROR("[server]\nlog_level = \"verbose\"\n" REQUIRED,
		     "2: server.log_level: \"verbose\" is not a log level, expected debug, info, warn, "
		     "error or off");
	/* control characters of a value never break the line */
	EXPECT_ERROR("[kubernetes]\nnamespace = \"a\\nb\"\n[build]\ndomain = \"x.org\"\n",
		     "2: kubernetes.namespace: \"a?b\" is not a valid namespace, expected a DNS-1123 "
		     "label ([a-z0-9-], at most 63, no '-' at either end)");
	EXPECT_ERROR("[kubernetes]\nnamespace = \"Bad_NS\"\n[build]\ndomain = \"x.org\"\n",
		     "2: kubernetes.namespace: \"Bad_NS\" is not a valid namespace, expected a DNS-1123 "
		     "label ([a-z0-9-], at most 63, no '-' at either end)");
	EXPECT_ERROR("[kubernetes]\nnamespace = \"n\"\n[build]\ndomain = \"-x.org\"\n",
		     "4: build.domain: \"-x.org\" is not a valid DNS name, expected dot-separated "
		     "labels of [a-z0-9-] (at most 184 characters)");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/b'\nimage = 'bad image'\n",
		     "7: repos[0].image: \"bad image\" contains an invalid character, expected a "
		     "container image (\"name:tag\" or \"name@sha256:...\")");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/.*'\nimage = 'i'\n[[sticky_branches]]\n"
			      "repo = 'b/c'\nbranch = 'main'\n",
		     "8: sticky_branches[0]: b/c branch main is not matched by any [[repos]] entry, "
		     "expected a repo/branch that runboat builds");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/.*'\nimage = 'i'\n[[sticky_branches]]\n"
			      "repo = 'nope'\nbranch = 'main'\n",
		     "9: sticky_branches[0].repo: \"nope\" is not a repository name, expected \"owner/repo\"");
	/* sticky branches follow the same rules as webhooks and Deployments
	 * (validate.h): "a..b" used to pass here and fail at run time */
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/.*'\nimage = 'i'\n[[sticky_branches]]\n"
			      "repo = 'a/b'\nbranch = 'a..b'\n",
		     "10: sticky_branches[0].branch: \"a..b\" is not a valid branch name, expected a "
		     "git branch name (git check-ref-format rules, UTF-8, at most 255 bytes)");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/.*'\nimage = 'i'\n[[sticky_branches]]\n"
			      "repo = 'a/b'\nbranch = 'x.lock'\n",
		     "10: sticky_branches[0].branch: \"x.lock\" is not a valid branch name, expected "
		     "a git branch name (git check-ref-format rules, UTF-8, at most 255 bytes)");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = '.*'\nimage = 'i'\n[[sticky_branches]]\n"
			      "repo = 'o_a/b'\nbranch = 'main'\n",
		     "9: sticky_branches[0].repo: \"o_a/b\" is not a repository name, expected "
		     "\"owner/repo\"");
	struct config *sticky = load(REQUIRED "[[repos]]\nrepo = 'a/.*'\nimage = 'i'\n"
					      "[[sticky_branches]]\nrepo = 'A/b'\nbranch = 'a.b/c'\n");
	CHECK(sticky != NULL);
	if (sticky)
		CHECK(config_is_sticky(sticky, "a/b", "a.b/c"));
	config_free(sticky);
	EXPECT_ERROR("[kubernetes]\nnamespace = \"n\"\n[build]\ndomain = \"x.org\"\nkubefiles = \"nowhere\"\n",
		     "5: build.kubefiles: \"%s/nowhere\": No such file or directory, expected the "
		     "directory of the kubefiles",
		     tmpdir);
}

static void test_syntax_errors(void)
{
	EXPECT_ERROR_LIKE("[server]\nlisten = \"a:1\"\nbroken = \n", "3:10: ", "expected value");
	EXPECT_ERROR_LIKE("[server]\nlisten = \"a:1\"\nlisten = \"b:2\"\n", "3:", "redefine");
	EXPECT_ERROR_LIKE(REQUIRED "[kubernetes]\n", "5:", "kubernetes");
	EXPECT_ERROR("[kubernetes]\nnamespace = \"n\"\nqps = nan\n",
		     "3:7: kubernetes.qps: nan and inf are not supported, expected a finite number");
	/* hostile nesting fails cleanly */
	struct buf deep = { 0 };
	buf_append_str(&deep, "a = ");
	for (int i = 0; i < 5000; i++)
		buf_append_str(&deep, "[");
	EXPECT_ERROR_LIKE(deep.data, "1:", NULL);
	buf_reset(&deep);
	buf_append_str(&deep, "a = ");
	for (int i = 0; i < 5000; i++)
		buf_append_str(&deep, "{b=");
	EXPECT_ERROR_LIKE(deep.data, "1:", NULL);
	buf_free(&deep);
	/* dotted keys are bounded before the parser recurses on them... */
	buf_reset(&deep);
	for (int i = 0; i < 3000; i++)
		buf_append_str(&deep, "a.");
	buf_append_str(&deep, "a = 1\n");
	EXPECT_ERROR_LIKE(deep.data, "1:", "too many dotted keys");
	buf_reset(&deep);
	for (int i = 0; i < 3000; i++)
		buf_append_str(&deep, "\"k\".");
	buf_append_str(&deep, "a = 1\n");
	EXPECT_ERROR_LIKE(deep.data, "1:", "too many dotted keys");
	/* ...but dots in numbers, times, strings and comments do not count */
	buf_reset(&deep);
	buf_append_str(&deep, REQUIRED "[build.template_vars]\nf = [");
	for (int i = 0; i < 3000; i++)
		buf_append_str(&deep, "1.5, ");
	buf_append_str(&deep, "]\nt = [");
	for (int i = 0; i < 1500; i++)
		buf_append_str(&deep, "07:32:00.25, 1979-05-27T07:32:00.5Z, ");
	buf_append_str(&deep, "]\ns = \"");
	for (int i = 0; i < 3000; i++)
		buf_append_str(&deep, "x.\\\"");
	buf_append_str(&deep, "\"\nl = 'a.b\\'\nm = \"\"\"\n");
	for (int i = 0; i < 3000; i++)
		buf_append_str(&deep, ".\"");
	buf_append_str(&deep, "\"\"\"\"\n# ");
	for (int i = 0; i < 3000; i++)
		buf_append_str(&deep, "...");
	buf_append_str(&deep, "\nml = '''\n");
	for (int i = 0; i < 3000; i++)
		buf_append_str(&deep, "..'");
	buf_append_str(&deep, "'''\n");
	struct config *ok = load(deep.data);
	CHECK(ok != NULL);
	if (!ok)
		fprintf(stderr, "%s\n", err);
	else
		CHECK_INT(json_array_size(json_object_get(ok->build.template_vars, "f")), 3000);
	config_free(ok);
	buf_free(&deep);
	/* a missing file */
	struct config *c = config_load("/nonexistent/runboat.toml", err, sizeof err);
	CHECK(c == NULL);
	CHECK_STR(err, "/nonexistent/runboat.toml: cannot open: No such file or directory");
	/* the same parser on a string, with positions */
	struct toml_positions *pos = NULL;
	const char *doc = "a = 1\n[t]\nd = 1979-05-27T07:32:00Z\nf = 1.5\n[[arr]]\nx = [1, 2]\n";
	json_t *j = toml_json_parse_string(doc, strlen(doc), "mem", &pos, err, sizeof err);
	CHECK(j != NULL);
	if (j) {
		CHECK_STR(json_string_value(json_object_get(json_object_get(j, "t"), "d")),
			  "1979-05-27T07:32:00Z");
		CHECK(json_is_real(json_object_get(json_object_get(j, "t"), "f")));
		CHECK(json_is_integer(json_object_get(j, "a")));
		CHECK_INT(toml_positions_line(pos, "t.d"), 3);
		CHECK_INT(toml_positions_line(pos, "arr[0]"), 5);
		CHECK_INT(toml_positions_line(pos, "arr[0].x[1]"), 6);
		CHECK_INT(toml_positions_column(pos, "arr[0].x[1]"), 9);
		CHECK_INT(toml_positions_line(pos, "nope"), 0);
	}
	json_decref(j);
	toml_positions_free(pos);
	char *p = toml_path_key("a", "b c");
	CHECK_STR(p, "a.\"b c\"");
	free(p);
	j = toml_json_parse_string("x = [", 5, "mem", &pos, err, sizeof err);
	CHECK(j == NULL && pos == NULL);
	CHECK(str_starts_with(err, "mem:1:"));
}

/* Writes len bytes (NULs included) as the config file and loads it. */
static struct config *load_bytes(const char *content, size_t len)
{
	FILE *f = fopen(cfg_path, "wb");
	if (!f || fwrite(content, 1, len, f) != len) {
		perror(cfg_path);
		exit(2);
	}
	fclose(f);
	err[0] = '\0';
	return config_load(cfg_path, err, sizeof err);
}

/* A NUL byte anywhere: one error line naming file, line and column, never
 * a hang (the pre-scan of dotted keys used to stop advancing on a NUL
 * outside strings). */
static void test_nul_bytes(void)
{
	static const struct {
		const char *doc;
		size_t len;
		const char *where; /* expected "LINE:COL:" */
	} cases[] = {
		{ "\0", 1, "1:1:" },
		{ "x = 1\n\0\n", 8, "2:1:" },
		{ "x = 1\0\n", 7, "1:6:" },
		{ "[server\0]\n", 10, "1:8:" },
		{ "[kubernetes]\nname\0space = \"n\"\n", 31, "2:5:" },
		{ "a.\0b = 1\n", 9, "1:3:" },
		{ "x = [1,\0]\n", 10, "1:8:" },
		{ "x = \"a\0b\"\n", 10, "1:" },    /* in a string */
		{ "# a\0b\nx = 1\n", 12, "1:" },   /* in a comment */
		{ "x = '''\0'''\n", 12, "1:" },   /* in a multi-line literal string */
	};
	struct config *c;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		c = load_bytes(cases[i].doc, cases[i].len);
		char prefix[700];
		snprintf(prefix, sizeof prefix, "%s:%s", cfg_path, cases[i].where);
		CHECK(c == NULL);
		if (!str_starts_with(err, prefix))
			fprintf(stderr, "case %zu: \"%s\" does not start with \"%s\"\n", i, err, prefix);
		CHECK(str_starts_with(err, prefix));
		CHECK(strchr(err, '\n') == NULL);
		config_free(c);
	}
	/* Unicode line breaks that the parser or a value quotes stay on the line */
	c = load("x\xe2\x80\xa8 = 1\n");
	CHECK(c == NULL);
	CHECK(strstr(err, "saw '?'") != NULL && !strstr(err, "\xe2\x80\xa8"));
	config_free(c);
	EXPECT_ERROR("[kubernetes]\nnamespace = \"a\\u2028b\\u0085c\\u2029\"\n[build]\n"
		     "domain = \"x.org\"\n",
		     "2: kubernetes.namespace: \"a?b?c?\" is not a valid namespace, expected a "
		     "DNS-1123 label ([a-z0-9-], at most 63, no '-' at either end)");
	/* the same through the in-memory parser */
	json_t *j = toml_json_parse_string("a = 1\n\0", 7, "mem", NULL, err, sizeof err);
	CHECK(j == NULL);
	CHECK(str_starts_with(err, "mem:2:1:"));
}

/* The kubefiles directory is loaded at config time: empty or incomplete is
 * an error of the key that names it. */
static void test_kubefiles_dir(void)
{
	char dir[600], path[800];
	snprintf(dir, sizeof dir, "%s/kf-empty", tmpdir);
	mkdir(dir, 0755);
	EXPECT_ERROR("[kubernetes]\nnamespace = \"n\"\n[build]\ndomain = \"x.org\"\n"
		     "kubefiles = \"kf-empty\"\n",
		     "5: build.kubefiles: %s: no kubefile in the directory, expected a kubefiles "
		     "directory with deployment.yaml, initialize.yaml and cleanup.yaml (start.yaml, "
		     "stop.yaml optional)",
		     dir);
	snprintf(path, sizeof path, "%s/deployment.yaml", dir);
	write_file(path, "x: 1\n");
	snprintf(path, sizeof path, "%s/README.md", dir);
	write_file(path, "notes\n");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/b'\nimage = 'i'\nkubefiles = 'kf-empty'\n",
		     "8: repos[0].kubefiles: %s: missing initialize.yaml, cleanup.yaml, expected a "
		     "kubefiles directory with deployment.yaml, initialize.yaml and cleanup.yaml "
		     "(start.yaml, stop.yaml optional)",
		     dir);
	/* with no kubefiles key, an (empty) kubefiles/ beside the file is not
	 * looked at: the default kubefiles are used wherever the file is */
	char sub[700];
	snprintf(sub, sizeof sub, "%s/sub", tmpdir);
	mkdir(sub, 0755);
	snprintf(path, sizeof path, "%s/kubefiles", sub);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/runboat.toml", sub);
	write_file(path, "[kubernetes]\nnamespace = \"n\"\n[build]\ndomain = \"x.org\"\n");
	struct config *c = config_load(path, err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		char *def = config_default_kubefiles(err, sizeof err);
		CHECK_STR(c->build.kubefiles, def);
		free(def);
	} else
		fprintf(stderr, "  %s\n", err);
	config_free(c);
	/* an explicit relative path stays relative to the file */
	write_file(path, "[kubernetes]\nnamespace = \"n\"\n[build]\ndomain = \"x.org\"\n"
			 "kubefiles = \"kubefiles\"\n");
	c = config_load(path, err, sizeof err);
	CHECK(c == NULL);
	char want[2000];
	snprintf(want, sizeof want, "%s:5: build.kubefiles: %s/kubefiles: no kubefile in the "
		 "directory, expected", path, sub);
	CHECK(str_starts_with(err, want));
	if (!str_starts_with(err, want))
		fprintf(stderr, "  got:      \"%s\"\n  expected: \"%s...\"\n", err, want);
	config_free(c);
	/* a template that is not text */
	snprintf(path, sizeof path, "%s/initialize.yaml", dir);
	write_file(path, "\xff\xfe\n");
	snprintf(path, sizeof path, "%s/cleanup.yaml", dir);
	write_file(path, "x: 1\n");
	EXPECT_ERROR(REQUIRED "[[repos]]\nrepo = 'a/b'\nimage = 'i'\nkubefiles = 'kf-empty'\n",
		     "8: repos[0].kubefiles: %s/initialize.yaml: not valid UTF-8", dir);
	snprintf(path, sizeof path, "%s/initialize.yaml", dir);
	write_file(path, "x: 1\n");
	c = load(REQUIRED "[[repos]]\nrepo = 'a/b'\nimage = 'i'\nkubefiles = 'kf-empty'\n");
	CHECK(c != NULL);
	config_free(c);
}

/* A FIFO (as config or secret file) is refused at once, never waited on. */
static void test_special_files(void)
{
	char fifo[600];
	snprintf(fifo, sizeof fifo, "%s/fifo", tmpdir);
	CHECK_INT(mkfifo(fifo, 0600), 0);
	struct config *c = config_load(fifo, err, sizeof err);
	CHECK(c == NULL);
	char want[700];
	snprintf(want, sizeof want, "%s: not a regular file", fifo);
	CHECK_STR(err, want);
	EXPECT_ERROR(REQUIRED "[admin]\npassword_file = \"fifo\"\n",
		     "6: admin.password_file: cannot read \"%s\": not a regular file, expected a "
		     "readable file holding the secret",
		     fifo);
	c = config_load(tmpdir, err, sizeof err);
	CHECK(c == NULL);
	snprintf(want, sizeof want, "%s: not a regular file", tmpdir);
	CHECK_STR(err, want);
	unlink(fifo);
}

static void test_secrets(void)
{
	char path[600];
	clear_secret_env();

	/* both inline and file: an error that never shows the secret */
	EXPECT_ERROR(REQUIRED "[admin]\npassword = \"hunter2\"\npassword_file = \"pw\"\n",
		     "7: admin.password_file: both password and password_file are set, expected "
		     "only one of them");
	CHECK(strstr(err, "hunter2") == NULL);

	/* unreadable file: named in the error */
	EXPECT_ERROR(REQUIRED "[github]\ntoken_file = \"missing-token\"\n",
		     "6: github.token_file: cannot read \"%s/missing-token\": No such file or "
		     "directory, expected a readable file holding the secret",
		     tmpdir);

	/* a file, relative to the config's directory; trailing newline stripped */
	snprintf(path, sizeof path, "%s/secret-token", tmpdir);
	write_file(path, "s3cr3t-token\r\n");
	snprintf(path, sizeof path, "%s/webhook", tmpdir);
	write_file(path, "whsec\n\n");
	snprintf(path, sizeof path, "%s/empty", tmpdir);
	write_file(path, "\n");
	struct config *c = load(REQUIRED "[github]\ntoken_file = \"secret-token\"\n"
				"webhook_secret_file = \"" "webhook\"\n"
				"[admin]\nuser = \"root\"\npassword = \"inline-pw\"\n");
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->github.token, "s3cr3t-token");
		CHECK_STR(c->github.webhook_secret, "whsec");
		CHECK_STR(c->admin.password, "inline-pw");
		CHECK_STR(c->admin.user, "root");
	}
	config_free(c);
	EXPECT_ERROR(REQUIRED "[admin]\npassword_file = \"empty\"\n",
		     "6: admin.password_file: cannot read \"%s/empty\": the file is empty, expected "
		     "a readable file holding the secret",
		     tmpdir);
	EXPECT_ERROR(REQUIRED "[admin]\npassword = \"\"\n",
		     "6: admin.password: is empty, expected a non-empty secret (leave the key out to "
		     "set none)");
	EXPECT_ERROR(REQUIRED "[github]\nwebhook_secret = 42\n",
		     "6: github.webhook_secret: got an integer, expected a string");

	/* the environment overrides the file and the TOML */
	setenv(CONFIG_ENV_ADMIN_PASSWORD, "from-env", 1);
	setenv(CONFIG_ENV_GITHUB_TOKEN, "tok-env", 1);
	setenv(CONFIG_ENV_WEBHOOK_SECRET, "", 1); /* empty: unset */
	c = load(REQUIRED "[github]\ntoken_file = \"secret-token\"\nwebhook_secret = \"inline\"\n"
			  "[admin]\npassword = \"inline-pw\"\n");
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->admin.password, "from-env");
		CHECK_STR(c->github.token, "tok-env");
		CHECK_STR(c->github.webhook_secret, "inline");
	}
	config_free(c);
	c = load(REQUIRED);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->admin.password, "from-env");
		CHECK(c->github.webhook_secret == NULL);
	}
	config_free(c);
	c = config_default("ns", "example.org", err, sizeof err);
	CHECK(c != NULL);
	if (c)
		CHECK_STR(c->github.token, "tok-env");
	config_free(c);
	clear_secret_env();
}

static void test_leader_election(void)
{
	/* defaults: off, the Lease "runboat", client-go's durations */
	struct config *c = load(REQUIRED);
	CHECK(c != NULL);
	if (c) {
		CHECK(!c->kubernetes.leader_election);
		CHECK_STR(c->kubernetes.lease_name, "runboat");
		CHECK(c->kubernetes.lease_duration == 15.0 && c->kubernetes.renew_deadline == 10.0 &&
		      c->kubernetes.retry_period == 2.0);
	}
	config_free(c);
	c = load("[kubernetes]\nnamespace = \"b\"\nleader_election = true\n"
		 "leader_election_lease = \"runboat.leader\"\nleader_election_lease_duration = 6\n"
		 "leader_election_renew_deadline = 4.5\nleader_election_retry_period = 0.5\n"
		 "[build]\ndomain = \"x.org\"\n");
	CHECK(c != NULL);
	if (c) {
		CHECK(c->kubernetes.leader_election);
		CHECK_STR(c->kubernetes.lease_name, "runboat.leader");
		CHECK(c->kubernetes.lease_duration == 6.0 && c->kubernetes.renew_deadline == 4.5 &&
		      c->kubernetes.retry_period == 0.5);
	} else {
		fprintf(stderr, "  %s\n", err);
	}
	config_free(c);
	EXPECT_ERROR("[kubernetes]\nnamespace = \"b\"\nleader_election = \"yes\"\n",
		     "3: kubernetes.leader_election: got a string, expected true or false");
	EXPECT_ERROR_LIKE("[kubernetes]\nnamespace = \"b\"\nleader_election_lease = \"Run_Boat\"\n",
			  "3: kubernetes.leader_election_lease: \"Run_Boat\" is not a valid object name",
			  "DNS-1123 subdomain");
	EXPECT_ERROR("[kubernetes]\nnamespace = \"b\"\nleader_election_lease_duration = 1.5\n",
		     "3: kubernetes.leader_election_lease_duration: got a float, expected an integer");
	EXPECT_ERROR_LIKE("[kubernetes]\nnamespace = \"b\"\nleader_election_lease_duration = 10\n"
			  "[build]\ndomain = \"x.org\"\n",
			  "", "leader_election_renew_deadline: 10 is not below "
			  "leader_election_lease_duration (10)");
	EXPECT_ERROR_LIKE("[kubernetes]\nnamespace = \"b\"\nleader_election_retry_period = 9\n"
			  "[build]\ndomain = \"x.org\"\n",
			  "3: kubernetes.leader_election_retry_period: 9 is too long", "* 1.2");
	EXPECT_ERROR_LIKE("[kubernetes]\nnamespace = \"b\"\nleadership = true\n", "3: ",
			  "unknown key");
}

static void test_repos(void)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/kf-special", tmpdir);
	make_kubefiles(dir);
	struct config *c = load(REQUIRED
				"[build.env]\nA = \"1\"\nB = \"2\"\n"
				"[build.secret_env]\nS = \"s\"\n"
				"[build.template_vars]\nsize = \"1Gi\"\nnested = { k = [1, 2] }\n"
				"[[repos]]\nrepo = 'oca/server-tools'\nbranch = '16\\.0|17\\.0'\n"
				"image = 'reg:5000/odoo'\nkubefiles = 'kf-special'\n"
				"env = { B = \"two\", C = \"3\" }\ntemplate_vars = { size = \"5Gi\" }\n"
				"[[repos]]\nrepo = 'OCA/.*'\nimage = 'odoo:16.0'\n"
				"[[repos]]\nrepo = '^acme/x$'\nbranch = 'main'\nimage = 'a@sha256:beef'\n");
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_INT(c->n_repos, 3);
	const struct config_repo *r0 = &c->repos[0], *r1 = &c->repos[1], *r2 = &c->repos[2];
	CHECK_INT(r0->line, 13);
	/* first match wins; anchored; repo case-insensitive, branch not */
	CHECK(config_find_repo(c, "oca/server-tools", "16.0") == r0);
	CHECK(config_find_repo(c, "oca/server-tools", "17.0") == r0);
	CHECK(config_find_repo(c, "oca/server-tools", "16x0") == r1);
	CHECK(config_find_repo(c, "oca/server-tools", "16.0-mig") == r1);
	CHECK(config_find_repo(c, "oca/web", "anything") == r1);
	CHECK(config_find_repo(c, "notoca/web", "16.0") == NULL);
	CHECK(config_find_repo(c, "acme/x", "main") == r2);
	CHECK(config_find_repo(c, "acme/x", "Main") == NULL);
	CHECK(config_find_repo(c, "acme/xy", "main") == NULL);
	CHECK(config_find_repo(c, "xacme/x", "main") == NULL);
	CHECK(config_find_repo(c, "acme/x", "main2") == NULL);
	CHECK(config_find_repo(NULL, "acme/x", "main") == NULL);
	/* image split */
	CHECK_STR(r0->image_name, "reg:5000/odoo");
	CHECK_STR(r0->image_tag, "latest");
	CHECK_STR(r1->image_name, "odoo");
	CHECK_STR(r1->image_tag, "16.0");
	CHECK_STR(r2->image_name, "a@sha256");
	CHECK_STR(r2->image_tag, "beef");
	/* overrides: kubefiles replaces, env and template_vars merge by key */
	CHECK_STR(r0->kubefiles, dir);
	CHECK_STR(r1->kubefiles, c->build.kubefiles);
	CHECK_INT(r0->env.count, 3);
	CHECK_STR(env_get(&r0->env, "A"), "1");
	CHECK_STR(env_get(&r0->env, "B"), "two");
	CHECK_STR(env_get(&r0->env, "C"), "3");
	CHECK_STR(env_get(&r1->env, "B"), "2");
	CHECK_STR(env_get(&r0->secret_env, "S"), "s");
	CHECK_STR(env_get(&c->build.env, "B"), "2");
	CHECK_STR(json_string_value(json_object_get(r0->template_vars, "size")), "5Gi");
	CHECK(json_is_object(json_object_get(r0->template_vars, "nested")));
	CHECK_STR(json_string_value(json_object_get(r1->template_vars, "size")), "1Gi");
	CHECK_STR(json_string_value(json_object_get(c->build.template_vars, "size")), "1Gi");
	CHECK_INT(json_integer_value(json_array_get(
			  json_object_get(json_object_get(r1->template_vars, "nested"), "k"), 1)),
		  2);
	config_free(c);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(cfg_path, sizeof cfg_path, "%s/runboat.toml", tmpdir);
	char kf[600];
	snprintf(kf, sizeof kf, "%s/kubefiles", tmpdir);
	make_kubefiles(kf);
	log_set_level(LOG_ERROR);
	clear_secret_env();

	RUN(test_sample_loads);
	RUN(test_defaults);
	RUN(test_values);
	RUN(test_unknown_keys);
	RUN(test_wrong_types);
	RUN(test_bad_regex);
	RUN(test_missing_required);
	RUN(test_out_of_range);
	RUN(test_syntax_errors);
	RUN(test_nul_bytes);
	RUN(test_kubefiles_dir);
	RUN(test_special_files);
	RUN(test_secrets);
	RUN(test_repos);
	RUN(test_leader_election);

	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	log_flush();
	return UNIT_DONE();
}
