/* validate.c: a table of accepted and refused inputs for each validator,
 * then the consumers checked against it: a branch, repo or PR that the
 * validator accepts is accepted by the configuration (sticky branches), the
 * webhook parser, the kubefiles and build_from_deployment, and one it
 * refuses is refused by all of them. */
#include "validate.h"

#include <errno.h>
#include <limits.h>

#include "build.h"
#include "config.h"
#include "github.h"
#include "kubefiles.h"
#include "log.h"
#include "unit.h"
#include "util.h"

#define SHA "0d35a10f161b410f2baa3d416a338d191b6dabc0"

enum what { REPO, BRANCH, SHA_, PR_TEXT, DNS_LABEL, DNS_NAME, ENV_NAME };

static const char *const WHAT[] = { "repo", "branch", "sha", "pr", "dns label", "dns name",
				    "env name" };

struct row {
	enum what what;
	const char *in;
	bool ok;
};

/* Long values are built at run time; these mark them. */
#define LONG_OWNER_39 "\x01" "owner39"
#define LONG_OWNER_40 "\x01" "owner40"
#define LONG_NAME_100 "\x01" "name100"
#define LONG_NAME_101 "\x01" "name101"
#define LONG_BRANCH_255 "\x01" "branch255"
#define LONG_BRANCH_256 "\x01" "branch256"
#define LONG_SHA_64 "\x01" "sha64"
#define LONG_LABEL_63 "\x01" "label63"
#define LONG_LABEL_64 "\x01" "label64"
#define LONG_DNS_253 "\x01" "dns253"
#define LONG_DNS_254 "\x01" "dns254"

static const struct row ROWS[] = {
	/* repositories: GitHub's owner and repository name rules */
	{ REPO, "oca/mis-builder", true },
	{ REPO, "OCA/server-tools", true },
	{ REPO, "a/b", true },
	{ REPO, "a-b/.github", true },
	{ REPO, "x/a_b.c-d", true },
	{ REPO, "x/...", true },
	{ REPO, LONG_OWNER_39, true },
	{ REPO, LONG_NAME_100, true },
	{ REPO, "", false },
	{ REPO, "oca", false },
	{ REPO, "/x", false },
	{ REPO, "oca/", false },
	{ REPO, "oca/.", false },
	{ REPO, "oca/..", false },
	{ REPO, "o_a/x", false }, /* config's old check took '_' and '.' in owners */
	{ REPO, "o.a/x", false },
	{ REPO, "oca/x/y", false },
	{ REPO, "oca/x y", false },
	{ REPO, "oca/\xc3\xa9", false },
	{ REPO, "oca/x\n", false },
	{ REPO, LONG_OWNER_40, false },
	{ REPO, LONG_NAME_101, false },
	/* branches: git check-ref-format, UTF-8, 255 bytes */
	{ BRANCH, "16.0", true },
	{ BRANCH, "main", true },
	{ BRANCH, "feature/x", true },
	{ BRANCH, "a/b/c", true },
	{ BRANCH, "fix-\xc3\xa9t\xc3\xa9", true },
	{ BRANCH, "v1.2.3", true },
	{ BRANCH, "16.0-mig-foo_bar", true },
	{ BRANCH, "@x", true },
	{ BRANCH, "a@b", true },
	{ BRANCH, "x.lockx", true },
	{ BRANCH, "a.b/c.d", true },
	{ BRANCH, "fix/\"quoted\"#not-a-comment", true },
	{ BRANCH, "feat/{{build_name}}/---/it's", true },
	{ BRANCH, "\xe2\x80\xa8sep", true }, /* U+2028: valid in git, escaped in YAML */
	{ BRANCH, LONG_BRANCH_255, true },
	{ BRANCH, "", false },
	{ BRANCH, "-x", false },
	{ BRANCH, "/x", false },
	{ BRANCH, "x/", false },
	{ BRANCH, "a//b", false },
	{ BRANCH, "a..b", false }, /* the sticky branch config used to accept */
	{ BRANCH, ".x", false },
	{ BRANCH, "a/.b", false },
	{ BRANCH, "x.", false },
	{ BRANCH, "x.lock", false },
	{ BRANCH, "a.lock/b", false },
	{ BRANCH, "a b", false },
	{ BRANCH, "a~b", false },
	{ BRANCH, "a^b", false },
	{ BRANCH, "a:b", false },
	{ BRANCH, "a?b", false },
	{ BRANCH, "a*b", false },
	{ BRANCH, "a[b", false },
	{ BRANCH, "a\\b", false },
	{ BRANCH, "a@{b", false },
	{ BRANCH, "@", false },
	{ BRANCH, "a\tb", false },
	{ BRANCH, "a\nkind: Namespace", false },
	{ BRANCH, "a\x7f", false },
	{ BRANCH, "\xff", false },
	{ BRANCH, "\xc3", false },
	{ BRANCH, "\xc0\xaf", false },     /* overlong '/' */
	{ BRANCH, "\xed\xa0\x80", false }, /* a surrogate */
	{ BRANCH, LONG_BRANCH_256, false },
	/* commits */
	{ SHA_, SHA, true },
	{ SHA_, LONG_SHA_64, true },
	{ SHA_, "0D35A10F161B410F2BAA3D416A338D191B6DABC0", false },
	{ SHA_, SHA "0", false },
	{ SHA_, "0d35a10f", false },
	{ SHA_, "g d35a10f161b410f2baa3d416a338d191b6dabc", false },
	{ SHA_, "", false },
	/* pull request numbers, as text */
	{ PR_TEXT, "1", true },
	{ PR_TEXT, "42", true },
	{ PR_TEXT, "2147483647", true },
	{ PR_TEXT, "0", false },
	{ PR_TEXT, "042", false },
	{ PR_TEXT, "-1", false },
	{ PR_TEXT, "+1", false },
	{ PR_TEXT, "1 ", false },
	{ PR_TEXT, "2147483648", false },
	{ PR_TEXT, "4294967338", false },
	{ PR_TEXT, "", false },
	/* DNS-1123 labels */
	{ DNS_LABEL, "runboat-builds", true },
	{ DNS_LABEL, "a", true },
	{ DNS_LABEL, "0", true },
	{ DNS_LABEL, LONG_LABEL_63, true },
	{ DNS_LABEL, "", false },
	{ DNS_LABEL, "-a", false },
	{ DNS_LABEL, "a-", false },
	{ DNS_LABEL, "A", false },
	{ DNS_LABEL, "a_b", false },
	{ DNS_LABEL, "a.b", false },
	{ DNS_LABEL, LONG_LABEL_64, false },
	/* DNS names */
	{ DNS_NAME, "runboat.example.com", true },
	{ DNS_NAME, "localhost", true },
	{ DNS_NAME, LONG_DNS_253, true },
	{ DNS_NAME, "", false },
	{ DNS_NAME, ".a", false },
	{ DNS_NAME, "a.", false },
	{ DNS_NAME, "a..b", false },
	{ DNS_NAME, "-x.org", false },
	{ DNS_NAME, "X.org", false },
	{ DNS_NAME, LONG_DNS_254, false },
	/* environment variable names */
	{ ENV_NAME, "PGHOST", true },
	{ ENV_NAME, "_x1", true },
	{ ENV_NAME, "a", true },
	{ ENV_NAME, "", false },
	{ ENV_NAME, "1X", false },
	{ ENV_NAME, "A-B", false },
	{ ENV_NAME, "a.b", false },
	{ ENV_NAME, "\xc3\xa9", false },
};

static char *repeat(char c, size_t n)
{
	char *s = xmalloc(n + 1);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* The input of a row (long ones built; owned by the caller). */
static char *input_of(const char *in)
{
	if (in[0] != '\x01')
		return xstrdup(in);
	const char *tag = in + 1;
	char *a, *r;
	if (strcmp(tag, "owner39") == 0 || strcmp(tag, "owner40") == 0) {
		a = repeat('o', tag[5] == '3' ? 39 : 40);
		r = xasprintf("%s/r", a);
	} else if (strcmp(tag, "name100") == 0 || strcmp(tag, "name101") == 0) {
		a = repeat('n', tag[6] == '0' ? 100 : 101);
		r = xasprintf("o/%s", a);
	} else if (strcmp(tag, "branch255") == 0 || strcmp(tag, "branch256") == 0) {
		a = NULL;
		r = repeat('b', tag[8] == '5' ? 255 : 256);
	} else if (strcmp(tag, "sha64") == 0) {
		a = NULL;
		r = repeat('f', 64);
	} else if (strcmp(tag, "label63") == 0 || strcmp(tag, "label64") == 0) {
		a = NULL;
		r = repeat('l', tag[6] == '3' ? 63 : 64);
	} else {
		/* three labels of 63 and one of 61 (253 bytes) or 62 (254) */
		a = repeat('d', 63);
		char *last = repeat('e', strcmp(tag, "dns253") == 0 ? 61 : 62);
		r = xasprintf("%s.%s.%s.%s", a, a, a, last);
		free(last);
	}
	free(a);
	return r;
}

static bool check(enum what what, const char *s)
{
	int pr = -1;
	switch (what) {
	case REPO:
		return validate_repo(s);
	case BRANCH:
		return validate_branch(s);
	case SHA_:
		return validate_sha(s);
	case PR_TEXT: {
		int rc = validate_parse_pr(s, &pr);
		if (rc == 0 && !validate_pr(pr))
			return false;
		if (rc != 0 && rc != -EINVAL)
			return false;
		return rc == 0;
	}
	case DNS_LABEL:
		return validate_dns_label(s, strlen(s));
	case DNS_NAME:
		return validate_dns_name(s);
	case ENV_NAME:
		return validate_env_name(s);
	}
	return false;
}

static void test_table(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(ROWS); i++) {
		char *s = input_of(ROWS[i].in);
		bool got = check(ROWS[i].what, s);
		unit_checks++;
		if (got != ROWS[i].ok) {
			unit_failures++;
			fprintf(stderr, "%s \"%s\" (%zu bytes): %s, expected %s\n", WHAT[ROWS[i].what],
				s, strlen(s), got ? "accepted" : "refused",
				ROWS[i].ok ? "accepted" : "refused");
		}
		free(s);
	}
	/* the length bounds of the table are the header's */
	char *s = input_of(LONG_DNS_253);
	CHECK_INT(strlen(s), VALIDATE_DNS_NAME_MAX);
	free(s);
	/* NULL is refused everywhere; parse_pr leaves *pr alone on error */
	CHECK(!validate_repo(NULL) && !validate_branch(NULL) && !validate_sha(NULL));
	CHECK(!validate_dns_label(NULL, 0) && !validate_dns_name(NULL) && !validate_env_name(NULL));
	int pr = 7;
	CHECK_INT(validate_parse_pr(NULL, &pr), -EINVAL);
	CHECK_INT(validate_parse_pr("99999999999", &pr), -EINVAL);
	CHECK_INT(pr, 7);
	CHECK_INT(validate_parse_pr("2147483647", &pr), 0);
	CHECK_INT(pr, 2147483647);
	CHECK(validate_pr(1) && validate_pr(VALIDATE_PR_MAX));
	CHECK(!validate_pr(0) && !validate_pr(-1) && !validate_pr((long long)VALIDATE_PR_MAX + 1));
	CHECK(!validate_pr(LLONG_MIN) && !validate_pr(LLONG_MAX));
	/* a DNS label is a length-bounded span: the rest is not read */
	CHECK(validate_dns_label("ab-", 2));
}

/* s as the inside of a TOML basic string or a JSON string (both take
 * \" \\ and \uXXXX; bytes >= 0x80 are copied: invalid UTF-8 stays invalid). */
static void append_quoted(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			buf_printf(b, "\\u%04x", *p);
		else
			buf_append(b, (const char *)p, 1);
	}
}

/* Whether runboat.toml accepts (repo, branch) as a sticky branch. */
static bool config_accepts_sticky(const char *repo, const char *branch)
{
	struct buf b = { 0 };
	buf_append_str(&b, "[kubernetes]\nnamespace = \"n\"\n[build]\ndomain = \"x.org\"\n"
			   "kubefiles = \"kubefiles\"\n[[repos]]\nrepo = '.*'\nimage = 'i'\n"
			   "[[sticky_branches]]\nrepo = \"");
	append_quoted(&b, repo);
	buf_append_str(&b, "\"\nbranch = \"");
	append_quoted(&b, branch);
	buf_append_str(&b, "\"\n");
	char err[1024];
	struct config *c = config_load_string(b.data, "sticky.toml", NULL, err, sizeof err);
	buf_free(&b);
	bool ok = c != NULL;
	config_free(c);
	return ok;
}

/* Whether a push webhook of branch to repo is accepted as a deploy. */
static bool webhook_accepts(const char *repo, const char *branch, long long pr)
{
	struct buf b = { 0 };
	if (pr) {
		buf_printf(&b, "{\"action\":\"opened\",\"number\":%lld,\"pull_request\":{\"number\":"
			       "%lld,\"head\":{\"sha\":\"" SHA "\"},\"base\":{\"ref\":\"",
			   pr, pr);
		append_quoted(&b, branch);
		buf_append_str(&b, "\"}},\"repository\":{\"full_name\":\"");
	} else {
		buf_append_str(&b, "{\"ref\":\"refs/heads/");
		append_quoted(&b, branch);
		buf_append_str(&b, "\",\"after\":\"" SHA "\",\"deleted\":false,\"head_commit\":{\"id\":\""
				   SHA "\"},\"repository\":{\"full_name\":\"");
	}
	append_quoted(&b, repo);
	buf_append_str(&b, "\"}}");
	struct github_action a;
	char err[256];
	int rc = github_webhook_parse(pr ? "pull_request" : "push", b.data, b.len, &a, err,
				      sizeof err);
	buf_free(&b);
	return rc == 0 && a.kind == GITHUB_DEPLOY;
}

/* Whether the kubefiles render a build of (repo, branch, pr). */
static bool kubefiles_accept(const struct kubefiles *kf, const char *repo, const char *branch,
			     int pr)
{
	struct kubefiles_ctx ctx = {
		.mode = KUBEFILES_DEPLOYMENT,
		.namespace = "n",
		.build_name = "b1",
		.build_slug = "slug",
		.build_domain = "x.org",
		.commit = { .repo = repo, .target_branch = branch, .pr = pr, .git_commit = SHA },
		.image_name = "i",
		.image_tag = "t",
	};
	struct buf out = { 0 };
	char err[512];
	int rc = kubefiles_render_text(kf, &ctx, &out, err, sizeof err);
	buf_free(&out);
	return rc == 0;
}

/* Whether a Deployment annotated with (repo, branch, pr) is read as a build. */
static bool deployment_accepts(const char *repo, const char *branch, const char *pr)
{
	json_t *d = json_pack("{s:{s:s, s:s, s:{s:s}, s:{s:s, s:s, s:s, s:s, s:s}}, s:{s:i}}",
			      "metadata", "name", "b1-odoo", "creationTimestamp",
			      "2024-01-01T00:00:00Z", "labels", BUILD_LABEL, "b1", "annotations",
			      BUILD_ANN_REPO, "x/x", BUILD_ANN_TARGET_BRANCH, "main", BUILD_ANN_PR, "",
			      BUILD_ANN_GIT_COMMIT, SHA, BUILD_ANN_INIT_STATUS, "todo", "spec",
			      "replicas", 0);
	json_t *a = json_object_get(json_object_get(d, "metadata"), "annotations");
	json_t *r = json_string(repo), *br = json_string(branch), *p = json_string(pr);
	if (!r || !br || !p) { /* not UTF-8: no Kubernetes object can carry it */
		json_decref(r);
		json_decref(br);
		json_decref(p);
		json_decref(d);
		return false;
	}
	json_object_set_new(a, BUILD_ANN_REPO, r);
	json_object_set_new(a, BUILD_ANN_TARGET_BRANCH, br);
	json_object_set_new(a, BUILD_ANN_PR, p);
	char err[256];
	struct build *b = build_from_deployment(d, err, sizeof err);
	json_decref(d);
	bool ok = b != NULL;
	build_free(b);
	return ok;
}

static void agree(const char *who, const char *what, const char *in, bool want, bool got)
{
	unit_checks++;
	if (want != got) {
		unit_failures++;
		fprintf(stderr, "%s %s \"%s\": %s, the validator says %s\n", who, what, in,
			got ? "accepted" : "refused", want ? "accept" : "refuse");
	}
}

static void test_consumers_agree(void)
{
	char err[512];
	struct kubefiles *kf = kubefiles_load("kubefiles", err, sizeof err);
	CHECK(kf != NULL);
	if (!kf) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ROWS); i++) {
		char *s = input_of(ROWS[i].in);
		bool want = ROWS[i].ok;
		switch (ROWS[i].what) {
		case BRANCH:
			agree("config sticky_branches", "branch", s, want,
			      config_accepts_sticky("a/b", s));
			agree("push webhook", "branch", s, want, webhook_accepts("a/b", s, 0));
			agree("pull_request webhook", "base", s, want, webhook_accepts("a/b", s, 9));
			agree("kubefiles", "target branch", s, want, kubefiles_accept(kf, "a/b", s, 0));
			agree("deployment", "target branch", s, want, deployment_accepts("a/b", s, ""));
			break;
		case REPO:
			agree("config sticky_branches", "repo", s, want,
			      config_accepts_sticky(s, "main"));
			agree("push webhook", "repo", s, want, webhook_accepts(s, "main", 0));
			agree("kubefiles", "repo", s, want, kubefiles_accept(kf, s, "main", 0));
			agree("deployment", "repo", s, want, deployment_accepts(s, "main", ""));
			break;
		case PR_TEXT: {
			/* (an empty runboat/pr is a branch build) */
			if (*s)
				agree("deployment", "pr", s, want, deployment_accepts("a/b", "main", s));
			/* a number that parses: the webhook and the kubefiles take it */
			char *end;
			long long n = strtoll(s, &end, 10);
			if (*s && !*end && n > 0 && n <= INT_MAX) {
				agree("pull_request webhook", "number", s, validate_pr(n),
				      webhook_accepts("a/b", "main", n));
				agree("kubefiles", "pr", s, validate_pr(n),
				      kubefiles_accept(kf, "a/b", "main", (int)n));
			}
			break;
		}
		default:
			break;
		}
		free(s);
	}
	/* out of range numbers, which the text rows cannot give the webhook */
	agree("pull_request webhook", "number", "2147483648", false,
	      webhook_accepts("a/b", "main", 2147483648LL));
	agree("kubefiles", "pr", "-1", false, kubefiles_accept(kf, "a/b", "main", -1));
	kubefiles_free(kf);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	RUN(test_table);
	RUN(test_consumers_agree);
	log_flush();
	return UNIT_DONE();
}
