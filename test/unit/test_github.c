/* github: webhook signatures and payloads, with GitHub's own example
 * deliveries (fixtures/github-webhooks) and hostile mutations of them. */
#include "github.h"
#include "util.h"
#include "unit.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>

#define OPENED_SHA "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
#define NEW_BRANCH_SHA "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
#define SHA256_HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* ---- helpers ---- */

static char *load_fixture(const char *name, size_t *len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/fixtures/github-webhooks/%s", unit_shared_dir(), name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open fixture %s\n", path);
		exit(2);
	}
	struct buf b = {0};
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len = b.len;
	return buf_steal(&b);
}

static json_t *load_json(const char *name)
{
	size_t len;
	char *s = load_fixture(name, &len);
	json_t *j = json_loadb(s, len, 0, NULL);
	free(s);
	if (!j) {
		fprintf(stderr, "fixture %s is not JSON\n", name);
		exit(2);
	}
	return j;
}

/* Parses a fixture file as is. */
static int parse_fixture(const char *event, const char *name, struct github_action *a,
			 char *err, size_t errlen)
{
	size_t len;
	char *s = load_fixture(name, &len);
	int rc = github_webhook_parse(event, s, len, a, err, errlen);
	free(s);
	return rc;
}

/* Parses a (mutated) JSON document; steals j. */
static int parse_json(const char *event, json_t *j, struct github_action *a, char *err,
		      size_t errlen)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	int rc = github_webhook_parse(event, s, strlen(s), a, err, errlen);
	free(s);
	return rc;
}

static int parse_str(const char *event, const char *s, struct github_action *a, char *err,
		     size_t errlen)
{
	return github_webhook_parse(event, s, strlen(s), a, err, errlen);
}

/* Sets a string at a dotted path of j (objects must exist). */
static void set_path(json_t *j, const char *path, json_t *value)
{
	char *copy = xstrdup(path);
	char *dot, *key = copy;
	while ((dot = strchr(key, '.'))) {
		*dot = '\0';
		j = json_object_get(j, key);
		key = dot + 1;
	}
	json_object_set_new(j, key, value);
	free(copy);
}

static void del_path(json_t *j, const char *path)
{
	char *copy = xstrdup(path);
	char *dot, *key = copy;
	while ((dot = strchr(key, '.'))) {
		*dot = '\0';
		j = json_object_get(j, key);
		key = dot + 1;
	}
	json_object_del(j, key);
	free(copy);
}

/* push-with-new-branch with its ref replaced. */
static int push_ref(const char *ref, struct github_action *a, char *err, size_t errlen)
{
	json_t *j = load_json("push-with-new-branch.payload.json");
	set_path(j, "ref", json_string(ref));
	return parse_json("push", j, a, err, errlen);
}

/* ---- signatures ---- */

/* The example of GitHub's documentation ("Validating webhook deliveries"). */
#define DOC_SECRET "It's a Secret to Everybody"
#define DOC_BODY "Hello, World!"
#define DOC_SIG "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

static void test_signature_good(void)
{
	CHECK(github_verify_signature(DOC_SECRET, DOC_BODY, strlen(DOC_BODY), DOC_SIG));
	/* hex is case-insensitive */
	CHECK(github_verify_signature(
		DOC_SECRET, DOC_BODY, strlen(DOC_BODY),
		"sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"));
}

static void test_signature_bad(void)
{
	size_t n = strlen(DOC_BODY);
	/* one digit changed, first and last */
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "sha256=857107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18"));
	/* other body, other secret */
	CHECK(!github_verify_signature(DOC_SECRET, "Hello, World?", n, DOC_SIG));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n - 1, DOC_SIG));
	CHECK(!github_verify_signature("It's a Secret to Everybody!", DOC_BODY, n, DOC_SIG));
	/* malformed headers */
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1"));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17a"));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 "));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n,
				       "sha256=g57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n, "sha256="));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n, ""));
	CHECK(!github_verify_signature(DOC_SECRET, DOC_BODY, n, NULL));
	/* no secret configured: nothing verifies */
	CHECK(!github_verify_signature(NULL, DOC_BODY, n, DOC_SIG));
	CHECK(!github_verify_signature("", DOC_BODY, n, DOC_SIG));
}

static void test_signature_fixture(void)
{
	/* Values computed independently: `openssl dgst -sha256 -hmac s3cret` over
	 * the fixture file, and the HMAC example of Wikipedia. */
	size_t len;
	char *body = load_fixture("push-with-new-branch.payload.json", &len);
	const char *sig = "sha256=9306fc32a9a9f92ec83dcf25593837bc455e5e2d8664e9c82ef04aef3ffd8842";
	CHECK(github_verify_signature("s3cret", body, len, sig));
	CHECK(!github_verify_signature("s3cret", body, len - 1, sig));
	body[len / 2] ^= 1; /* one flipped bit */
	CHECK(!github_verify_signature("s3cret", body, len, sig));
	free(body);
	CHECK(github_verify_signature(
		"key", "The quick brown fox jumps over the lazy dog", 43,
		"sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"));
}

/* ---- fixtures ---- */

static void test_fixture_ping(void)
{
	struct github_action a;
	char err[256];
	CHECK_INT(parse_fixture("ping", "ping-payload.json", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_PING);
	CHECK_STR(a.repo, "octocoders/hello-world");
	CHECK_STR(github_action_kind_name(a.kind), "ping");
}

static void test_fixture_push_tag_deleted(void)
{
	/* push-payload.json is the deletion of the tag simple-tag */
	struct github_action a;
	char err[256];
	CHECK_INT(parse_fixture("push", "push-payload.json", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK(strstr(a.reason, "tag") != NULL);
	CHECK_STR(a.repo, "codertocat/hello-world");
}

static void test_fixture_push_new_branch(void)
{
	struct github_action a;
	char err[256];
	CHECK_INT(parse_fixture("push", "push-with-new-branch.payload.json", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_DEPLOY);
	CHECK_STR(a.repo, "codertocat/hello-world");
	CHECK_STR(a.target_branch, "master");
	CHECK_INT(a.pr, 0);
	CHECK_STR(a.sha, NEW_BRANCH_SHA);
}

static void test_fixture_pull_requests(void)
{
	static const char *const deploys[] = {"opened", "synchronize", "reopened"};
	for (size_t i = 0; i < ARRAY_SIZE(deploys); i++) {
		char name[128];
		struct github_action a;
		char err[256];
		snprintf(name, sizeof(name), "pull_request-%s.payload.json", deploys[i]);
		CHECK_INT(parse_fixture("pull_request", name, &a, err, sizeof(err)), 0);
		CHECK_INT(a.kind, GITHUB_DEPLOY);
		CHECK_STR(a.repo, "codertocat/hello-world");
		CHECK_STR(a.target_branch, "master");
		CHECK_INT(a.pr, 2);
		CHECK_STR(a.sha, OPENED_SHA);
	}
	struct github_action a;
	char err[256];
	CHECK_INT(parse_fixture("pull_request", "pull_request-closed.payload.json", &a, err,
				sizeof(err)),
		  0);
	CHECK_INT(a.kind, GITHUB_UNDEPLOY_PR);
	CHECK_STR(a.repo, "codertocat/hello-world");
	CHECK_INT(a.pr, 2);
	CHECK_STR(a.target_branch, "master");
	CHECK_STR(a.sha, "");

	CHECK_INT(parse_fixture("pull_request", "pull_request-labeled.payload.json", &a, err,
				sizeof(err)),
		  0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK(strstr(a.reason, "labeled") != NULL);
}

static void test_fixture_create_delete(void)
{
	struct github_action a;
	char err[256];
	CHECK_INT(parse_fixture("create", "create-payload.json", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK_INT(parse_fixture("delete", "delete-payload.json", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	/* a branch create event is ignored too: the push (created: true) acts */
	json_t *j = load_json("create-payload.json");
	set_path(j, "ref_type", json_string("branch"));
	set_path(j, "ref", json_string("feature"));
	CHECK_INT(parse_json("create", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
}

static void test_fixture_wrong_event(void)
{
	/* the event header decides, not the shape of the body */
	struct github_action a;
	char err[256];
	CHECK_INT(parse_fixture("issues", "pull_request-opened.payload.json", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK(strstr(a.reason, "issues") != NULL);
	/* a pull_request body announced as a push: no ref */
	CHECK_INT(parse_fixture("push", "pull_request-opened.payload.json", &a, err, sizeof(err)),
		  -EINVAL);
	CHECK_STR(err, "ref: missing");
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK_STR(a.repo, "");
}

/* ---- push mutations ---- */

static void test_push_branches(void)
{
	struct github_action a;
	char err[256];
	CHECK_INT(push_ref("refs/heads/feature/x-1", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_DEPLOY);
	CHECK_STR(a.target_branch, "feature/x-1");
	CHECK_INT(push_ref("refs/heads/16.0", &a, err, sizeof(err)), 0);
	CHECK_STR(a.target_branch, "16.0");
	CHECK_INT(push_ref("refs/heads/refs/heads/x", &a, err, sizeof(err)), 0);
	CHECK_STR(a.target_branch, "refs/heads/x");
	CHECK_INT(push_ref("refs/heads/dependabot/npm_and_yarn/x-1.2.3", &a, err, sizeof(err)), 0);
	CHECK_STR(a.target_branch, "dependabot/npm_and_yarn/x-1.2.3");
	/* git allows UTF-8 branch names; so do the build annotations */
	CHECK_INT(push_ref("refs/heads/caf\xc3\xa9", &a, err, sizeof(err)), 0);
	CHECK_STR(a.target_branch, "caf\xc3\xa9");

	static const char *const bad[] = {
		"refs/heads/a\nb", "refs/heads/", "refs/heads/a..b", "refs/heads/-x",
		"refs/heads/x.lock", "refs/heads/a/.b", "refs/heads/a b", "refs/heads/a~1",
		"refs/heads/a^", "refs/heads/a:b", "refs/heads/a?", "refs/heads/a*",
		"refs/heads/a[", "refs/heads/a\\b", "refs/heads/a@{1}", "refs/heads/@",
		"refs/heads/a//b", "refs/heads/a/", "refs/heads//a", "refs/heads/a.",
		"refs/heads/a\x7f", "refs/heads/a\tb", "refs/heads/a.lock/b", "refs/heads/.hidden",
		"refs/heads/\"x\": y",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int rc = push_ref(bad[i], &a, err, sizeof(err));
		CHECK_INT(rc, -EINVAL);
		if (rc != -EINVAL)
			fprintf(stderr, "  accepted ref %s\n", bad[i]);
		else
			CHECK(strstr(err, "ref: not a valid branch name") == err);
		CHECK_INT(a.kind, GITHUB_IGNORE);
	}
	/* longest accepted branch, one more byte refused */
	char ref[11 + GITHUB_BRANCH_MAX + 2];
	strcpy(ref, "refs/heads/");
	memset(ref + 11, 'b', GITHUB_BRANCH_MAX);
	ref[11 + GITHUB_BRANCH_MAX] = '\0';
	CHECK_INT(push_ref(ref, &a, err, sizeof(err)), 0);
	CHECK_INT((long)strlen(a.target_branch), GITHUB_BRANCH_MAX);
	ref[11 + GITHUB_BRANCH_MAX] = 'b';
	ref[11 + GITHUB_BRANCH_MAX + 1] = '\0';
	CHECK_INT(push_ref(ref, &a, err, sizeof(err)), -EINVAL);

	/* huge ref */
	char *huge = xmalloc(200001);
	strcpy(huge, "refs/heads/");
	memset(huge + 11, 'a', 200000 - 11);
	huge[200000] = '\0';
	CHECK_INT(push_ref(huge, &a, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "ref: longer than") == err);
	free(huge);
}

static void test_push_other_refs(void)
{
	struct github_action a;
	char err[256];
	CHECK_INT(push_ref("refs/tags/v1.0", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK_INT(push_ref("refs/notes/commits", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	/* a bare branch name is not a ref */
	CHECK_INT(push_ref("master", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
}

static void test_push_deleted(void)
{
	struct github_action a;
	char err[256];
	json_t *j = load_json("push-payload.json");
	set_path(j, "ref", json_string("refs/heads/feature/gone"));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_UNDEPLOY_BRANCH);
	CHECK_STR(a.repo, "codertocat/hello-world");
	CHECK_STR(a.target_branch, "feature/gone");
	CHECK_INT(a.pr, 0);
	CHECK_STR(a.sha, "");

	/* deleted must be a boolean */
	j = load_json("push-payload.json");
	set_path(j, "ref", json_string("refs/heads/x"));
	set_path(j, "deleted", json_string("true"));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "deleted: expected true or false");

	/* after=000..0 and not deleted: nothing to build */
	j = load_json("push-with-new-branch.payload.json");
	set_path(j, "after", json_string("0000000000000000000000000000000000000000"));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
}

static void test_push_sha(void)
{
	struct github_action a;
	char err[256];
	static const char *const bad[] = {
		"6113728f27ae82c7b1a177c8d03f9e96e0adf24",   /* 39 */
		"6113728f27ae82c7b1a177c8d03f9e96e0adf2466", /* 41 */
		"6113728f27ae82c7b1a177c8d03f9e96e0adf24g",
		"6113728f27ae82c7b1a177c8d03f9e96e0adf24\n",
		"",
		"HEAD",
		"../../etc/passwd",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *j = load_json("push-with-new-branch.payload.json");
		set_path(j, "after", json_string(bad[i]));
		CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "after: ") == err);
	}
	json_t *j = load_json("push-with-new-branch.payload.json");
	set_path(j, "after", json_integer(42));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "after: expected a string");

	j = load_json("push-with-new-branch.payload.json");
	del_path(j, "after");
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "after: missing");

	/* uppercase is normalized, SHA-256 repositories work */
	j = load_json("push-with-new-branch.payload.json");
	set_path(j, "after", json_string("6113728F27AE82C7B1A177C8D03F9E96E0ADF246"));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), 0);
	CHECK_STR(a.sha, NEW_BRANCH_SHA);
	j = load_json("push-with-new-branch.payload.json");
	set_path(j, "after", json_string(SHA256_HEX));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_DEPLOY);
	CHECK_STR(a.sha, SHA256_HEX);
}

static void test_push_repo(void)
{
	struct github_action a;
	char err[256];
	static const char *const bad[] = {
		"evil", "a/b/c", "own er/x", "/x", "x/", "o/..", "o/.", "o\n/x", "o/x\n",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/x", /* 40-char owner */
		"o_o/x", "o/caf\xc3\xa9",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *j = load_json("push-with-new-branch.payload.json");
		set_path(j, "repository.full_name", json_string(bad[i]));
		int rc = parse_json("push", j, &a, err, sizeof(err));
		CHECK_INT(rc, -EINVAL);
		if (rc != -EINVAL)
			fprintf(stderr, "  accepted repo %s\n", bad[i]);
		CHECK(strstr(err, "repository.full_name: ") == err);
	}
	json_t *j = load_json("push-with-new-branch.payload.json");
	set_path(j, "repository.full_name", json_string("OCA/Server-Tools_2.x"));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), 0);
	CHECK_STR(a.repo, "oca/server-tools_2.x");

	j = load_json("push-with-new-branch.payload.json");
	set_path(j, "repository", json_string("OCA/x"));
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "repository.full_name: missing");

	j = load_json("push-with-new-branch.payload.json");
	set_path(j, "repository.full_name", json_null());
	CHECK_INT(parse_json("push", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "repository.full_name: expected a string");
}

/* ---- pull_request mutations ---- */

static json_t *opened(void)
{
	return load_json("pull_request-opened.payload.json");
}

static void test_pr_numbers(void)
{
	struct github_action a;
	char err[256];
	json_t *j = opened();
	set_path(j, "number", json_integer(GITHUB_PR_MAX));
	set_path(j, "pull_request.number", json_integer(GITHUB_PR_MAX));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.pr, GITHUB_PR_MAX);

	static const json_int_t bad[] = {0, -1, (json_int_t)GITHUB_PR_MAX + 1, LLONG_MAX};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		j = opened();
		set_path(j, "number", json_integer(bad[i]));
		set_path(j, "pull_request.number", json_integer(bad[i]));
		CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "pull_request.number: expected a pull request number") == err);
	}
	j = opened();
	set_path(j, "pull_request.number", json_string("2"));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "pull_request.number: expected an integer");

	j = opened();
	set_path(j, "pull_request.number", json_real(2.0));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);

	/* top-level number and pull_request.number disagree */
	j = opened();
	set_path(j, "number", json_integer(3));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "number: does not match pull_request.number");

	/* only the top-level number */
	j = opened();
	del_path(j, "pull_request.number");
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.pr, 2);

	j = opened();
	del_path(j, "pull_request.number");
	del_path(j, "number");
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "pull_request.number: missing");
}

static void test_pr_fields(void)
{
	struct github_action a;
	char err[256];
	json_t *j = opened();
	del_path(j, "pull_request.head.sha");
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "pull_request.head.sha: missing");

	j = opened();
	set_path(j, "pull_request.head.sha", json_string("not-a-sha"));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "pull_request.head.sha: expected a commit sha") == err);

	j = opened();
	set_path(j, "pull_request.base.ref", json_string("main\n  evil: true"));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "pull_request.base.ref: not a valid branch name") == err);

	j = opened();
	set_path(j, "pull_request.base.ref", json_string("release/16.0"));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), 0);
	CHECK_STR(a.target_branch, "release/16.0");

	j = opened();
	set_path(j, "pull_request", json_array());
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "pull_request: expected an object");

	j = opened();
	set_path(j, "action", json_integer(1));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "action: expected a string");

	/* closed needs no head sha */
	j = load_json("pull_request-closed.payload.json");
	del_path(j, "pull_request.head");
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_UNDEPLOY_PR);

	/* a hostile action name is not echoed */
	j = opened();
	set_path(j, "action", json_string("x\ny"));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK(strchr(a.reason, '\n') == NULL);
}

static void test_pr_edited(void)
{
	struct github_action a;
	char err[256];
	/* the base branch changed: deploy for the new target */
	json_t *j = opened();
	set_path(j, "action", json_string("edited"));
	set_path(j, "pull_request.base.ref", json_string("16.0"));
	json_t *changes = json_pack("{s:{s:{s:s}}}", "base", "ref", "from", "master");
	set_path(j, "changes", changes);
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_DEPLOY);
	CHECK_STR(a.target_branch, "16.0");
	CHECK_INT(a.pr, 2);

	/* only the title changed */
	j = opened();
	set_path(j, "action", json_string("edited"));
	set_path(j, "changes", json_pack("{s:{s:s}}", "title", "from", "old"));
	CHECK_INT(parse_json("pull_request", j, &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
}

/* ---- issue comments: "/runboat rebuild" ---- */

/* A comment created on PR 12 of OCA/Web (the shape GitHub documents). */
static json_t *comment(const char *body, const char *assoc)
{
	return json_pack("{s:s,s:{s:i,s:{s:s}},s:{s:I,s:s,s:s,s:{s:s}},s:{s:s}}", "action", "created",
			 "issue", "number", 12, "pull_request", "url", "https://x/pulls/12",
			 "comment", "id", (json_int_t)99, "body", body, "author_association", assoc,
			 "user", "login", "Ann-B", "repository", "full_name", "OCA/Web");
}

static void test_issue_comment(void)
{
	struct github_action a;
	char err[256];
	const char *yes[] = {"/runboat rebuild", "  /runboat rebuild \r\n", "it fails\r\n/runboat rebuild",
			     "hm\n\t/runboat rebuild\nthanks"};
	const char *assocs[] = {"OWNER", "MEMBER", "COLLABORATOR"};
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		CHECK_INT(parse_json("issue_comment", comment(yes[i], assocs[i % 3]), &a, err,
				     sizeof err), 0);
		CHECK_INT(a.kind, GITHUB_REBUILD_PR);
		CHECK_STR(a.repo, "oca/web");
		CHECK_INT(a.pr, 12);
		CHECK_STR(a.user, "Ann-B");
	}
	/* not the command alone on a line, or not allowed to */
	const char *no[] = {"please /runboat rebuild", "/runboat rebuilding", "/runboat", "",
			    "`/runboat rebuild`"};
	for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
		CHECK_INT(parse_json("issue_comment", comment(no[i], "OWNER"), &a, err, sizeof err), 0);
		CHECK_INT(a.kind, GITHUB_IGNORE);
	}
	const char *others[] = {"CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "NONE", "owner", "<b>"};
	for (size_t i = 0; i < ARRAY_SIZE(others); i++) {
		CHECK_INT(parse_json("issue_comment", comment("/runboat rebuild", others[i]), &a, err,
				     sizeof err), 0);
		CHECK_INT(a.kind, GITHUB_IGNORE);
		CHECK(strstr(a.reason, "<b>") == NULL);
	}
	/* edited or deleted comments, comments on issues */
	json_t *j = comment("/runboat rebuild", "OWNER");
	set_path(j, "action", json_string("edited"));
	CHECK_INT(parse_json("issue_comment", j, &a, err, sizeof err), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	j = comment("/runboat rebuild", "OWNER");
	del_path(j, "issue.pull_request");
	CHECK_INT(parse_json("issue_comment", j, &a, err, sizeof err), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	/* hostile values: 400 */
	j = comment("/runboat rebuild", "OWNER");
	set_path(j, "comment.user.login", json_string("a b"));
	CHECK_INT(parse_json("issue_comment", j, &a, err, sizeof err), -EINVAL);
	j = comment("/runboat rebuild", "OWNER");
	set_path(j, "issue.number", json_integer(0));
	CHECK_INT(parse_json("issue_comment", j, &a, err, sizeof err), -EINVAL);
	j = comment("/runboat rebuild", "OWNER");
	set_path(j, "comment.body", json_integer(1));
	CHECK_INT(parse_json("issue_comment", j, &a, err, sizeof err), -EINVAL);
	CHECK(strstr(err, "comment.body") != NULL);
}

/* ---- malformed documents and headers ---- */

static void test_malformed(void)
{
	struct github_action a;
	char err[256];
	CHECK_INT(parse_str("push", "", &a, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "payload: invalid JSON") == err);
	CHECK_INT(parse_str("push", "{\"ref\":", &a, err, sizeof(err)), -EINVAL);
	CHECK_INT(parse_str("push", "[1,2]", &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "payload: expected a JSON object");
	CHECK_INT(parse_str("ping", "\"zen\"", &a, err, sizeof(err)), -EINVAL);
	/* duplicate keys are ambiguous: refused */
	CHECK_INT(parse_str("push",
			    "{\"ref\":\"refs/heads/a\",\"ref\":\"refs/heads/b\",\"after\":\"" NEW_BRANCH_SHA
			    "\",\"repository\":{\"full_name\":\"o/r\"}}",
			    &a, err, sizeof(err)),
		  -EINVAL);
	/* an escaped NUL inside a string */
	CHECK_INT(parse_str("push",
			    "{\"ref\":\"refs/heads/a\\u0000b\",\"after\":\"" NEW_BRANCH_SHA
			    "\",\"repository\":{\"full_name\":\"o/r\"}}",
			    &a, err, sizeof(err)),
		  -EINVAL);
	/* a raw NUL in the body */
	static const char nul_body[] = "{\"zen\":\"a\0\"}";
	CHECK_INT(github_webhook_parse("ping", nul_body, sizeof(nul_body) - 1, &a, err, sizeof(err)),
		  -EINVAL);
	/* deep nesting */
	struct buf deep = {0};
	for (int i = 0; i < 100000; i++)
		buf_append_str(&deep, "[");
	CHECK_INT(github_webhook_parse("ping", deep.data, deep.len, &a, err, sizeof(err)), -EINVAL);
	buf_free(&deep);
	/* minimal valid push */
	CHECK_INT(parse_str("push",
			    "{\"ref\":\"refs/heads/main\",\"after\":\"" NEW_BRANCH_SHA
			    "\",\"repository\":{\"full_name\":\"o/r\"}}",
			    &a, err, sizeof(err)),
		  0);
	CHECK_INT(a.kind, GITHUB_DEPLOY);
	CHECK_STR(a.target_branch, "main");
	/* too large: refused before reading */
	CHECK_INT(github_webhook_parse("push", "{}", (size_t)GITHUB_WEBHOOK_MAX_BODY + 1, &a, err,
				       sizeof(err)),
		  -EMSGSIZE);
	/* err may be tiny or absent */
	char tiny[4];
	CHECK_INT(parse_str("push", "[]", &a, tiny, sizeof(tiny)), -EINVAL);
	CHECK_STR(tiny, "pay");
	CHECK_INT(parse_str("push", "[]", &a, NULL, 0), -EINVAL);
}

static void test_event_header(void)
{
	struct github_action a;
	char err[256];
	CHECK_INT(parse_str(NULL, "{}", &a, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "X-GitHub-Event: missing");
	CHECK_INT(parse_str("", "{}", &a, err, sizeof(err)), -EINVAL);
	CHECK_INT(parse_str("Push", "{}", &a, err, sizeof(err)), -EINVAL);
	CHECK_INT(parse_str("push\r\nX: y", "{}", &a, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "X-GitHub-Event: expected") == err);
	CHECK_INT(parse_str("workflow_run", "{}", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_IGNORE);
	CHECK_INT(parse_str("ping", "{}", &a, err, sizeof(err)), 0);
	CHECK_INT(a.kind, GITHUB_PING);
	CHECK_STR(a.repo, "");
}

static void test_sha_normalize(void)
{
	char out[GITHUB_SHA_MAX + 1];
	CHECK(github_sha_normalize(NEW_BRANCH_SHA, out));
	CHECK_STR(out, NEW_BRANCH_SHA);
	CHECK(github_sha_normalize("6113728F27AE82C7B1A177C8D03F9E96E0ADF246", out));
	CHECK_STR(out, NEW_BRANCH_SHA);
	CHECK(github_sha_normalize(SHA256_HEX, out));
	CHECK_STR(out, SHA256_HEX);
	CHECK(!github_sha_normalize("0000000000000000000000000000000000000000", out));
	CHECK_STR(out, "");
	CHECK(!github_sha_normalize("6113728f", out));
	CHECK(!github_sha_normalize("", out));
	CHECK(!github_sha_normalize(SHA256_HEX "0", out)); /* 65 */
	CHECK(!github_sha_normalize("g113728f27ae82c7b1a177c8d03f9e96e0adf246", out));
}

int main(void)
{
	RUN(test_signature_good);
	RUN(test_signature_bad);
	RUN(test_signature_fixture);
	RUN(test_fixture_ping);
	RUN(test_fixture_push_tag_deleted);
	RUN(test_fixture_push_new_branch);
	RUN(test_fixture_pull_requests);
	RUN(test_fixture_create_delete);
	RUN(test_fixture_wrong_event);
	RUN(test_push_branches);
	RUN(test_issue_comment);
	RUN(test_push_other_refs);
	RUN(test_push_deleted);
	RUN(test_push_sha);
	RUN(test_push_repo);
	RUN(test_pr_numbers);
	RUN(test_pr_fields);
	RUN(test_pr_edited);
	RUN(test_malformed);
	RUN(test_event_header);
	RUN(test_sha_normalize);
	return UNIT_DONE();
}
