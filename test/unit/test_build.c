#include <errno.h>
#include <limits.h>

#include "build.h"
#include "unit.h"
#include "util.h"

#define SHA "0d35a10f161b410f2baa3d416a338d191b6dabc0"
#define SHA12 "0d35a10f161b"

/* A Deployment as kube-apiserver returns it (trimmed of nothing that
 * matters: managedFields, template and conditions are kept). */
static const char *DEPLOYMENT =
	"{\"kind\":\"Deployment\",\"apiVersion\":\"apps/v1\","
	"\"metadata\":{\"name\":\"b0123456789abcdef0123456789abcdef-odoo\","
	"\"namespace\":\"runboat-builds\",\"uid\":\"8d3c7c1e-5d0e-4b0a-9d6e-1c2b3a4d5e6f\","
	"\"resourceVersion\":\"123456\",\"generation\":3,"
	"\"creationTimestamp\":\"2021-11-28T10:20:30Z\","
	"\"labels\":{\"app.kubernetes.io/managed-by\":\"runboat\","
	"\"runboat/build\":\"b0123456789abcdef0123456789abcdef\"},"
	"\"annotations\":{\"deployment.kubernetes.io/revision\":\"1\","
	"\"runboat/repo\":\"oca/mis-builder\",\"runboat/target-branch\":\"16.0\","
	"\"runboat/pr\":\"\",\"runboat/git-commit\":\"" SHA "\","
	"\"runboat/init-status\":\"succeeded\","
	"\"runboat/last-scaled\":\"2021-11-28T11:00:00Z\"},"
	"\"finalizers\":[\"runboat/cleanup\"],"
	"\"managedFields\":[{\"manager\":\"runboat\",\"operation\":\"Apply\","
	"\"apiVersion\":\"apps/v1\",\"time\":\"2021-11-28T10:20:30Z\",\"fieldsType\":\"FieldsV1\","
	"\"fieldsV1\":{\"f:spec\":{\"f:replicas\":{}}}}]},"
	"\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"runboat/build\":"
	"\"b0123456789abcdef0123456789abcdef\"}},"
	"\"template\":{\"metadata\":{\"labels\":{\"runboat/build\":"
	"\"b0123456789abcdef0123456789abcdef\"}},\"spec\":{\"containers\":[{\"name\":\"odoo\","
	"\"image\":\"ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest\"}]}},"
	"\"strategy\":{\"type\":\"Recreate\"},\"revisionHistoryLimit\":10,"
	"\"progressDeadlineSeconds\":600},"
	"\"status\":{\"observedGeneration\":3,\"replicas\":1,\"updatedReplicas\":1,"
	"\"readyReplicas\":1,\"availableReplicas\":1,"
	"\"conditions\":[{\"type\":\"Available\",\"status\":\"True\"}]}}";

static json_t *deployment(void)
{
	json_error_t e;
	json_t *d = json_loads(DEPLOYMENT, 0, &e);
	if (!d) {
		fprintf(stderr, "fixture: %s\n", e.text);
		abort();
	}
	return d;
}

static json_t *meta(json_t *d)
{
	return json_object_get(d, "metadata");
}

static json_t *ann(json_t *d)
{
	return json_object_get(meta(d), "annotations");
}

static json_t *dstatus(json_t *d)
{
	return json_object_get(d, "status");
}

static json_t *spec(json_t *d)
{
	return json_object_get(d, "spec");
}

/* Parses d (stolen) and returns the status, or -1 if refused. */
static int status_of(json_t *d)
{
	char err[256] = "";
	struct build *b = build_from_deployment(d, err, sizeof(err));
	json_decref(d);
	if (!b) {
		fprintf(stderr, "  (refused: %s)\n", err);
		return -1;
	}
	int s = b->status;
	build_free(b);
	return s;
}

/* Refused, with an error mentioning want. Steals d. */
static void check_refused(json_t *d, const char *want, int line)
{
	char err[256] = "";
	struct build *b = build_from_deployment(d, err, sizeof(err));
	json_decref(d);
	unit_checks++;
	if (b) {
		unit_failures++;
		fprintf(stderr, "test_build.c:%d: accepted, expected refusal about %s\n", line, want);
		build_free(b);
		return;
	}
	if (!strstr(err, want)) {
		unit_failures++;
		fprintf(stderr, "test_build.c:%d: error \"%s\" does not mention \"%s\"\n", line, err,
			want);
	}
}
#define REFUSED(d, want) check_refused((d), (want), __LINE__)

static void test_enums(void)
{
	for (int i = 0; i < BUILD_STATUS_COUNT; i++)
		CHECK_INT(build_status_parse(build_status_str(i)), i);
	for (int i = 0; i < BUILD_INIT_STATUS_COUNT; i++)
		CHECK_INT(build_init_status_parse(build_init_status_str(i)), i);
	CHECK_STR(build_status_str(BUILD_UNDEPLOYING), "undeploying");
	CHECK_STR(build_status_str(BUILD_STOPPING), "stopping");
	CHECK_STR(build_init_status_str(BUILD_INIT_SUCCEEDED), "succeeded");
	CHECK_INT(build_status_parse("Started"), -1);
	CHECK_INT(build_status_parse(""), -1);
	CHECK_INT(build_status_parse(NULL), -1);
	CHECK_INT(build_init_status_parse("done"), -1);
	CHECK_STR(build_status_str((enum build_status)99), "?");
	CHECK_STR(build_job_kind_str(BUILD_JOB_CLEANUP), "cleanup");
	CHECK_STR(build_job_state_str(BUILD_JOB_FAILED), "failed");
}

static void test_parse_fields(void)
{
	json_t *d = deployment();
	char err[256] = "";
	struct build *b = build_from_deployment(d, err, sizeof(err));
	CHECK(b != NULL);
	if (!b) {
		fprintf(stderr, "%s\n", err);
		json_decref(d);
		return;
	}
	CHECK_STR(b->name, "b0123456789abcdef0123456789abcdef");
	CHECK_STR(b->deployment_name, "b0123456789abcdef0123456789abcdef-odoo");
	CHECK_STR(b->commit.repo, "oca/mis-builder");
	CHECK_STR(b->commit.target_branch, "16.0");
	CHECK_INT(b->commit.pr, 0);
	CHECK_STR(b->commit.git_commit, SHA);
	CHECK_STR(b->slug, "oca-mis-builder-16-0-" SHA12);
	CHECK_STR(b->resource_version, "123456");
	CHECK_STR(b->uid, "8d3c7c1e-5d0e-4b0a-9d6e-1c2b3a4d5e6f");
	CHECK_INT(b->init_status, BUILD_INIT_SUCCEEDED);
	CHECK_INT(b->status, BUILD_STARTED);
	CHECK_INT(b->desired_replicas, 1);
	CHECK_INT(b->replicas, 1);
	CHECK_INT(b->ready_replicas, 1);
	CHECK_INT(b->available_replicas, 1);
	CHECK_INT(b->created, 1638094830);
	CHECK_INT(b->last_scaled, 1638097200);
	CHECK_INT(build_last_scaled(b), 1638097200);
	CHECK(!b->deleting);
	CHECK(b->has_finalizer);
	CHECK(!b->paused);

	/* a deep copy is equal and independent */
	struct build *c = build_dup(b);
	CHECK(build_same_view(b, c));
	CHECK(c->name != b->name);
	CHECK_STR(c->slug, b->slug);
	c->desired_replicas = 0;
	CHECK(!build_same_view(b, c));
	build_free(c);
	c = build_dup(b);
	c->paused = true;
	CHECK(!build_same_view(b, c));
	build_free(c);
	build_free(b);

	/* paused (deployed so); false is what the apiserver leaves out */
	json_object_set_new(spec(d), "paused", json_true());
	b = build_from_deployment(d, err, sizeof(err));
	CHECK(b && b->paused);
	c = b ? build_dup(b) : NULL;
	CHECK(c && c->paused);
	build_free(c);
	build_free(b);
	json_object_set_new(spec(d), "paused", json_false());
	b = build_from_deployment(d, err, sizeof(err));
	CHECK(b && !b->paused);
	build_free(b);
	json_object_del(spec(d), "paused");

	/* PR build, uppercase repo normalized, no last-scaled, no finalizer */
	json_object_set_new(ann(d), "runboat/pr", json_string("123"));
	json_object_set_new(ann(d), "runboat/repo", json_string("OCA/Mis-Builder"));
	json_object_del(ann(d), "runboat/last-scaled");
	json_object_del(meta(d), "finalizers");
	b = build_from_deployment(d, err, sizeof(err));
	CHECK(b != NULL);
	if (b) {
		CHECK_INT(b->commit.pr, 123);
		CHECK_STR(b->commit.repo, "oca/mis-builder");
		CHECK_STR(b->slug, "oca-mis-builder-16-0-pr123-" SHA12);
		CHECK_INT(b->last_scaled, 0);
		CHECK_INT(build_last_scaled(b), b->created);
		CHECK(!b->has_finalizer);
		build_free(b);
	}
	/* absent pr annotation = branch build; empty last-scaled = absent */
	json_object_del(ann(d), "runboat/pr");
	json_object_set_new(ann(d), "runboat/last-scaled", json_string(""));
	b = build_from_deployment(d, err, sizeof(err));
	CHECK(b && b->commit.pr == 0 && b->last_scaled == 0);
	build_free(b);
	/* fractional seconds and offsets in timestamps */
	json_object_set_new(meta(d), "creationTimestamp",
			    json_string("2021-11-28T12:20:30.5+02:00"));
	b = build_from_deployment(d, err, sizeof(err));
	CHECK(b && b->created == 1638094830);
	build_free(b);
	/* the deployment may be named exactly like the build */
	json_object_set_new(meta(d), "name", json_string("b0123456789abcdef0123456789abcdef"));
	b = build_from_deployment(d, NULL, 0);
	CHECK(b != NULL);
	build_free(b);
	json_decref(d);
}

static void test_status_derivation(void)
{
	json_t *d;
	const char *init[] = {"todo", "started"};
	for (size_t i = 0; i < 2; i++) {
		d = deployment();
		json_object_set_new(ann(d), "runboat/init-status", json_string(init[i]));
		CHECK_INT(status_of(d), BUILD_INITIALIZING);
	}
	/* init failed, whatever the replicas */
	d = deployment();
	json_object_set_new(ann(d), "runboat/init-status", json_string("failed"));
	CHECK_INT(status_of(d), BUILD_FAILED);

	/* started: available >= desired */
	CHECK_INT(status_of(deployment()), BUILD_STARTED);
	/* starting: 1 desired, not yet available (ready but not available too) */
	d = deployment();
	json_object_set_new(dstatus(d), "availableReplicas", json_integer(0));
	CHECK_INT(status_of(d), BUILD_STARTING);
	d = deployment();
	json_object_del(dstatus(d), "availableReplicas");
	CHECK_INT(status_of(d), BUILD_STARTING);
	/* just scaled up: the status is still the stopped one */
	d = deployment();
	json_object_set_new(d, "status", json_object());
	CHECK_INT(status_of(d), BUILD_STARTING);
	/* stopping: 0 desired, a pod still there */
	d = deployment();
	json_object_set_new(spec(d), "replicas", json_integer(0));
	CHECK_INT(status_of(d), BUILD_STOPPING);
	/* stopped: 0 desired, no pods (the API omits zero counts) */
	d = deployment();
	json_object_set_new(spec(d), "replicas", json_integer(0));
	json_object_set_new(d, "status", json_pack("{s:i}", "observedGeneration", 4));
	CHECK_INT(status_of(d), BUILD_STOPPED);
	/* no status at all, no spec.replicas: 0 desired as in Python */
	d = deployment();
	json_object_del(d, "status");
	json_object_del(spec(d), "replicas");
	CHECK_INT(status_of(d), BUILD_STOPPED);
	/* more available than desired (surge) still counts as started */
	d = deployment();
	json_object_set_new(dstatus(d), "availableReplicas", json_integer(2));
	CHECK_INT(status_of(d), BUILD_STARTED);
	/* undeploying wins over everything */
	const char *all[] = {"todo", "started", "succeeded", "failed"};
	for (size_t i = 0; i < 4; i++) {
		d = deployment();
		json_object_set_new(ann(d), "runboat/init-status", json_string(all[i]));
		json_object_set_new(meta(d), "deletionTimestamp", json_string("2021-11-29T00:00:00Z"));
		CHECK_INT(status_of(d), BUILD_UNDEPLOYING);
	}
	/* deletionTimestamp null = not deleting */
	d = deployment();
	json_object_set_new(meta(d), "deletionTimestamp", json_null());
	CHECK_INT(status_of(d), BUILD_STARTED);

	/* derive on a hand-made build */
	struct build_commit c = {"oca/x", "16.0", 0, SHA};
	struct build *b = build_new("bx", "bx-odoo", &c, NULL, NULL);
	CHECK_INT(b->status, BUILD_INITIALIZING);
	CHECK_STR(b->resource_version, "");
	b->init_status = BUILD_INIT_SUCCEEDED;
	CHECK_INT(build_derive_status(b), BUILD_STOPPED);
	b->replicas = 1;
	CHECK_INT(build_derive_status(b), BUILD_STOPPING);
	b->desired_replicas = 1;
	CHECK_INT(build_derive_status(b), BUILD_STARTING);
	b->available_replicas = 1;
	CHECK_INT(build_derive_status(b), BUILD_STARTED);
	b->deleting = true;
	CHECK_INT(build_derive_status(b), BUILD_UNDEPLOYING);
	build_free(b);
}

static json_t *with_ann(const char *key, json_t *value)
{
	json_t *d = deployment();
	if (value)
		json_object_set_new(ann(d), key, value);
	else
		json_object_del(ann(d), key);
	return d;
}

static json_t *with_meta(const char *key, json_t *value)
{
	json_t *d = deployment();
	if (value)
		json_object_set_new(meta(d), key, value);
	else
		json_object_del(meta(d), key);
	return d;
}

static char *huge(size_t n, char c)
{
	char *s = xmalloc(n + 1);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void test_hostile(void)
{
	char err[256];
	CHECK(build_from_deployment(NULL, err, sizeof(err)) == NULL);
	json_t *arr = json_array();
	REFUSED(arr, "not a JSON object");
	REFUSED(with_meta("name", NULL), "metadata.name");
	REFUSED(with_meta("name", json_integer(3)), "metadata.name");
	REFUSED(with_meta("name", json_string("Bad_Name")), "metadata.name");
	json_t *d = deployment();
	json_object_set_new(d, "metadata", json_string("x"));
	REFUSED(d, "metadata missing");
	REFUSED(with_meta("labels", NULL), "metadata.labels");
	REFUSED(with_meta("labels", json_array()), "metadata.labels");
	REFUSED(with_meta("annotations", NULL), "metadata.annotations");
	REFUSED(with_meta("annotations", json_string("x")), "metadata.annotations");

	/* the build label */
	d = deployment();
	json_object_set_new(json_object_get(meta(d), "labels"), "runboat/build", json_integer(1));
	REFUSED(d, "runboat/build");
	d = deployment();
	json_object_set_new(json_object_get(meta(d), "labels"), "runboat/build",
			    json_string("B0123"));
	REFUSED(d, "runboat/build");
	/* a name that is a prefix without separator, or another build's */
	d = deployment();
	json_object_set_new(json_object_get(meta(d), "labels"), "runboat/build",
			    json_string("b0123456789abcdef0123456789abcde"));
	REFUSED(d, "does not start with its build name");
	d = deployment();
	json_object_set_new(json_object_get(meta(d), "labels"), "runboat/build", json_string("bother"));
	REFUSED(d, "does not start with its build name");

	/* repo */
	REFUSED(with_ann("runboat/repo", NULL), "runboat/repo");
	REFUSED(with_ann("runboat/repo", json_integer(1)), "runboat/repo");
	REFUSED(with_ann("runboat/repo", json_string("oca")), "runboat/repo");
	REFUSED(with_ann("runboat/repo", json_string("oca/..")), "runboat/repo");
	REFUSED(with_ann("runboat/repo", json_string("o ca/x")), "runboat/repo");
	REFUSED(with_ann("runboat/repo", json_string("oca/x/y")), "runboat/repo");
	REFUSED(with_ann("runboat/repo", json_stringn("oca/x\0evil", 10)), "runboat/repo");
	char *big = huge(1 << 20, 'a');
	big[10] = '/';
	REFUSED(with_ann("runboat/repo", json_string(big)), "runboat/repo");
	free(big);

	/* branch */
	REFUSED(with_ann("runboat/target-branch", NULL), "runboat/target-branch");
	REFUSED(with_ann("runboat/target-branch", json_string("")), "runboat/target-branch");
	REFUSED(with_ann("runboat/target-branch", json_string("a..b")), "runboat/target-branch");
	REFUSED(with_ann("runboat/target-branch", json_string("x\n- evil: 1")),
		"runboat/target-branch");
	REFUSED(with_ann("runboat/target-branch", json_true()), "runboat/target-branch");
	big = huge(256, 'b');
	REFUSED(with_ann("runboat/target-branch", json_string(big)), "runboat/target-branch");
	free(big);

	/* pr */
	const char *bad_pr[] = {"0", "01", "-1", "+1", "1a", "abc", " 1", "2147483648",
				"99999999999999999999"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_pr); i++)
		REFUSED(with_ann("runboat/pr", json_string(bad_pr[i])), "runboat/pr");
	REFUSED(with_ann("runboat/pr", json_integer(12)), "runboat/pr");
	CHECK_INT(status_of(with_ann("runboat/pr", json_string("2147483647"))), BUILD_STARTED);
	CHECK_INT(status_of(with_ann("runboat/pr", json_null())), BUILD_STARTED);

	/* sha */
	REFUSED(with_ann("runboat/git-commit", NULL), "runboat/git-commit");
	REFUSED(with_ann("runboat/git-commit", json_string("0D35A10F161B410F2BAA3D416A338D191B6DABC0")),
		"runboat/git-commit");
	REFUSED(with_ann("runboat/git-commit", json_string("0d35a10f161b410f2baa3d416a338d191b6dabc")),
		"runboat/git-commit");
	REFUSED(with_ann("runboat/git-commit", json_string("zd35a10f161b410f2baa3d416a338d191b6dabc0")),
		"runboat/git-commit");
	big = huge(64, 'a');
	CHECK_INT(status_of(with_ann("runboat/git-commit", json_string(big))), BUILD_STARTED);
	free(big);

	/* init-status */
	REFUSED(with_ann("runboat/init-status", NULL), "runboat/init-status missing");
	REFUSED(with_ann("runboat/init-status", json_string("done")), "\"done\"");
	REFUSED(with_ann("runboat/init-status", json_string("\x01\x02")), "runboat/init-status");
	REFUSED(with_ann("runboat/init-status", json_integer(0)), "runboat/init-status");

	/* times (the last ones used to read past the end in a naive parser) */
	const char *bad_time[] = {"yesterday",
				  "2021-11-28 10:20:30Z",
				  "2021-11-28T10:20:30",
				  "2021-11-28T10:20:30+02",
				  "2021-11-28T10:20:30+-5:0",
				  "2021-11-28T10:20:30+1:2",
				  "2021-11-28T10:20:30.Z",
				  "2021-13-28T10:20:30Z",
				  "2021-11-28T10:20:30Zjunk"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_time); i++) {
		REFUSED(with_ann("runboat/last-scaled", json_string(bad_time[i])),
			"runboat/last-scaled");
		REFUSED(with_meta("creationTimestamp", json_string(bad_time[i])),
			"creationTimestamp");
		REFUSED(with_meta("deletionTimestamp", json_string(bad_time[i])),
			"deletionTimestamp");
	}
	REFUSED(with_meta("creationTimestamp", NULL), "creationTimestamp");
	REFUSED(with_meta("creationTimestamp", json_integer(1638094830)), "creationTimestamp");
	REFUSED(with_meta("deletionTimestamp", json_true()), "deletionTimestamp");

	/* finalizers, resourceVersion, uid */
	REFUSED(with_meta("finalizers", json_string("runboat/cleanup")), "finalizers");
	REFUSED(with_meta("finalizers", json_pack("[i]", 1)), "finalizers");
	REFUSED(with_meta("resourceVersion", json_integer(1)), "resourceVersion");
	big = huge(200, '7');
	REFUSED(with_meta("uid", json_string(big)), "uid");
	free(big);

	/* replicas */
	d = deployment();
	json_object_set_new(spec(d), "replicas", json_integer(-1));
	REFUSED(d, "spec.replicas");
	d = deployment();
	json_object_set_new(spec(d), "replicas", json_real(1.0));
	REFUSED(d, "spec.replicas");
	d = deployment();
	json_object_set_new(spec(d), "replicas", json_string("1"));
	REFUSED(d, "spec.replicas");
	d = deployment();
	json_object_set_new(spec(d), "replicas", json_integer(1LL << 40));
	REFUSED(d, "spec.replicas");
	d = deployment();
	json_object_set_new(dstatus(d), "availableReplicas", json_integer(-3));
	REFUSED(d, "availableReplicas");
	d = deployment();
	json_object_set_new(dstatus(d), "replicas", json_string("2"));
	REFUSED(d, "status.replicas");
	d = deployment();
	json_object_set_new(d, "status", json_integer(0));
	REFUSED(d, "status is not an object");
	d = deployment();
	json_object_del(d, "spec");
	REFUSED(d, "spec missing");

	/* the error names the deployment */
	d = with_ann("runboat/git-commit", json_string("nope"));
	CHECK(build_from_deployment(d, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "deployment b0123456789abcdef0123456789abcdef-odoo: ") == err);
	json_decref(d);
	/* a tiny error buffer is fine */
	char tiny[8];
	CHECK(build_from_deployment(d = with_ann("runboat/repo", NULL), tiny, sizeof(tiny)) == NULL);
	CHECK_INT(strlen(tiny), 7);
	json_decref(d);
}

/* Systematic abuse: every interesting field replaced by values of every JSON
 * type. A build that is accepted must still be fully valid. */
static void test_hostile_matrix(void)
{
	const char *meta_keys[] = {"name", "labels", "annotations", "creationTimestamp",
				   "deletionTimestamp", "finalizers", "resourceVersion", "uid"};
	const char *ann_keys[] = {"runboat/repo", "runboat/target-branch", "runboat/pr",
				  "runboat/git-commit", "runboat/init-status", "runboat/last-scaled"};
	char *big = huge(100000, 'x');
	json_t *values[] = {json_null(),          json_true(),        json_integer(-1),
			    json_integer(LLONG_MAX), json_real(1e300),  json_string(""),
			    json_string("x"),     json_string(big),   json_array(),
			    json_object(),        json_pack("[s]", "runboat/cleanup"),
			    json_stringn("a\0b", 3)};
	free(big);
	int accepted = 0, refused = 0;
	for (size_t v = 0; v < ARRAY_SIZE(values); v++) {
		for (size_t k = 0; k < ARRAY_SIZE(meta_keys) + ARRAY_SIZE(ann_keys) + 6; k++) {
			json_t *d = deployment();
			if (k < ARRAY_SIZE(meta_keys)) {
				json_object_set(meta(d), meta_keys[k], values[v]);
			} else if (k < ARRAY_SIZE(meta_keys) + ARRAY_SIZE(ann_keys)) {
				json_object_set(ann(d), ann_keys[k - ARRAY_SIZE(meta_keys)], values[v]);
			} else {
				size_t i = k - ARRAY_SIZE(meta_keys) - ARRAY_SIZE(ann_keys);
				if (i == 0)
					json_object_set(d, "spec", values[v]);
				else if (i == 1)
					json_object_set(d, "status", values[v]);
				else if (i == 2)
					json_object_set(spec(d), "replicas", values[v]);
				else if (i == 3)
					json_object_set(dstatus(d), "availableReplicas", values[v]);
				else if (i == 4)
					json_object_set(json_object_get(meta(d), "labels"),
							"runboat/build", values[v]);
				else
					json_object_set(d, "metadata", values[v]);
			}
			char err[256] = "";
			struct build *b = build_from_deployment(d, err, sizeof(err));
			if (b) {
				accepted++;
				CHECK(build_valid_commit(&b->commit));
				CHECK(build_valid_name(b->name));
				CHECK(b->desired_replicas >= 0 && b->available_replicas >= 0);
				CHECK(b->created > 0);
				build_free(b);
			} else {
				refused++;
				CHECK(err[0] != '\0');
			}
			json_decref(d);
		}
	}
	for (size_t v = 0; v < ARRAY_SIZE(values); v++)
		json_decref(values[v]);
	CHECK(accepted > 0);
	CHECK(refused > accepted);
}

/* Build names and commits; repo, branch, sha and PR rules are validate.c's
 * (test_validate.c). */
static void test_validation(void)
{
	CHECK(build_valid_name("b0123456789abcdef0123456789abcdef"));
	CHECK(build_valid_name("b3f1e2a4c-1234-4abc-8def-0123456789ab")); /* Python's b+uuid4 */
	CHECK(!build_valid_name(""));
	CHECK(!build_valid_name("0abc"));
	CHECK(!build_valid_name("bAbc"));
	CHECK(!build_valid_name("b-"));
	CHECK(!build_valid_name("b_c"));
	char *n63 = huge(63, 'b'), *n64 = huge(64, 'b');
	CHECK(build_valid_name(n63));
	CHECK(!build_valid_name(n64));
	free(n63);
	free(n64);

	struct build_commit c = {"OCA/x", "16.0", 0, SHA};
	CHECK(build_valid_commit(&c));
	c.pr = -1;
	CHECK(!build_valid_commit(&c));
}

static bool dns_label(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return s[0] != '-' && s[n - 1] != '-' && !strstr(s, "--");
}

static void test_slug(void)
{
	char *s = build_slug("oca/mis-builder", "16.0", 0, SHA);
	CHECK_STR(s, "oca-mis-builder-16-0-" SHA12);
	free(s);
	s = build_slug("OCA/Mis-Builder", "16.0", 123, SHA);
	CHECK_STR(s, "oca-mis-builder-16-0-pr123-" SHA12);
	free(s);
	/* runs collapsed, ends trimmed */
	s = build_slug("-a-/--b__", "feat/-_x__", 0, SHA);
	CHECK_STR(s, "a-b-feat-x-" SHA12);
	CHECK(dns_label(s));
	free(s);
	s = build_slug("a/b", "fix-été", 7, SHA);
	CHECK_STR(s, "a-b-fix-t-pr7-" SHA12);
	free(s);

	/* long: shortened with a hash, the PR and the sha kept */
	char owner[40], name[101], branch[256];
	memset(owner, 'o', 39), owner[39] = '\0';
	memset(name, 'n', 100), name[100] = '\0';
	memset(branch, 'b', 255), branch[255] = '\0';
	char repo[141];
	snprintf(repo, sizeof(repo), "%s/%s", owner, name);
	char *l1 = build_slug(repo, branch, 2147483647, SHA);
	CHECK(dns_label(l1));
	CHECK_INT(strlen(l1), 63);
	CHECK(str_ends_with(l1, "-pr2147483647-" SHA12));
	CHECK(str_starts_with(l1, "ooooooooooooooooooooooooooo"));
	branch[254] = 'c';
	char *l2 = build_slug(repo, branch, 2147483647, SHA);
	CHECK(dns_label(l2));
	CHECK(strcmp(l1, l2) != 0);
	/* same slug text before shortening, different inputs: still distinct */
	branch[200] = '.';
	char *l3 = build_slug(repo, branch, 2147483647, SHA);
	branch[200] = '-';
	char *l4 = build_slug(repo, branch, 2147483647, SHA);
	CHECK(strcmp(l3, l4) != 0);
	/* deterministic */
	char *l5 = build_slug(repo, branch, 2147483647, SHA);
	CHECK_STR(l5, l4);
	/* the repo's case does not matter */
	char *up = xstrdup(repo);
	up[0] = 'O';
	char *l6 = build_slug(up, branch, 2147483647, SHA);
	CHECK_STR(l6, l4);
	free(l1), free(l2), free(l3), free(l4), free(l5), free(l6), free(up);

	/* exactly 63 is kept as is; 64 is shortened */
	memset(branch, 'x', 46), branch[46] = '\0';
	s = build_slug("a/b", branch, 0, SHA); /* 4 + 46 + 13 = 63 */
	CHECK_INT(strlen(s), 63);
	CHECK(str_starts_with(s, "a-b-xxxx"));
	CHECK(strstr(s, "-" SHA12) == s + 50);
	free(s);
	memset(branch, 'x', 47), branch[47] = '\0';
	s = build_slug("a/b", branch, 0, SHA); /* 64: shortened */
	CHECK(strlen(s) <= 63);
	CHECK(dns_label(s));
	CHECK(str_ends_with(s, "-" SHA12));
	free(s);
	/* a cut that lands on a '-' never leaves "--" or a trailing '-' */
	for (int cut = 0; cut < 40; cut++) {
		memset(branch, 'y', 120);
		branch[120] = '\0';
		for (int i = cut; i < 120; i += 7)
			branch[i] = '/';
		s = build_slug("a/b", branch, 5, SHA);
		if (!dns_label(s)) {
			fprintf(stderr, "  not a DNS label: %s\n", s);
			CHECK(0);
		}
		free(s);
	}
}

static void test_new_name(void)
{
	char *a = build_new_name(), *b = build_new_name();
	CHECK(a && b);
	CHECK_INT(strlen(a), 33);
	CHECK(a[0] == 'b');
	CHECK(strspn(a + 1, "0123456789abcdef") == 32);
	CHECK(build_valid_name(a));
	CHECK(strcmp(a, b) != 0);
	/* room for the longest object suffix */
	CHECK(strlen(a) + strlen("-initialize") <= 63);
	free(a);
	free(b);
}

static void test_json(void)
{
	json_t *d = deployment();
	struct build *b = build_from_deployment(d, NULL, 0);
	json_decref(d);
	if (!b) {
		CHECK(0);
		return;
	}
	struct build_links links = {.base_url = "https://runboat.example.com/",
				    .build_domain = "runboat.example.com"};
	json_t *j = build_to_json(b, &links);
	char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(text,
		  "{\"commit_info\":{\"git_commit\":\"" SHA "\",\"pr\":null,"
		  "\"repo\":\"oca/mis-builder\",\"target_branch\":\"16.0\"},"
		  "\"created\":\"2021-11-28T10:20:30Z\","
		  "\"deploy_link\":\"http://oca-mis-builder-16-0-" SHA12 ".runboat.example.com\","
		  "\"deploy_link_mailhog\":\"http://oca-mis-builder-16-0-" SHA12
		  ".mail.runboat.example.com\","
		  "\"desired_replicas\":1,\"init_status\":\"succeeded\","
		  "\"last_scaled\":\"2021-11-28T11:00:00Z\","
		  "\"name\":\"b0123456789abcdef0123456789abcdef\",\"reason\":null,"
		  "\"repo_commit_link\":\"https://github.com/oca/mis-builder/commit/" SHA "\","
		  "\"repo_pr_link\":null,"
		  "\"repo_target_branch_link\":\"https://github.com/oca/mis-builder/tree/16.0\","
		  "\"slug\":\"oca-mis-builder-16-0-" SHA12 "\",\"status\":\"started\","
		  "\"webui_link\":\"https://runboat.example.com/builds/"
		  "b0123456789abcdef0123456789abcdef\"}");
	free(text);
	json_decref(j);
	build_free(b);

	/* a PR build, never scaled, custom GitHub, odd branch */
	struct build_commit c = {"oca/x", "feat/a#b c", 42, SHA};
	b = build_new("bpr", "bpr-odoo", &c, "1", "u");
	b->init_status = BUILD_INIT_TODO;
	b->created = 1638094830;
	b->status = build_derive_status(b);
	links = (struct build_links){.base_url = "http://h:8000", .build_domain = "d.test",
				     .github_url = "https://ghe.example/"};
	j = build_to_json(b, &links);
	CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "commit_info"), "pr")), 42);
	CHECK_STR(json_string_value(json_object_get(j, "repo_pr_link")),
		  "https://ghe.example/oca/x/pull/42");
	CHECK_STR(json_string_value(json_object_get(j, "repo_commit_link")),
		  "https://ghe.example/oca/x/pull/42/commits/" SHA);
	CHECK_STR(json_string_value(json_object_get(j, "repo_target_branch_link")),
		  "https://ghe.example/oca/x/tree/feat/a%23b%20c");
	CHECK_STR(json_string_value(json_object_get(j, "last_scaled")), "2021-11-28T10:20:30Z");
	CHECK_STR(json_string_value(json_object_get(j, "status")), "initializing");
	CHECK_STR(json_string_value(json_object_get(j, "init_status")), "todo");
	CHECK_STR(json_string_value(json_object_get(j, "deploy_link")),
		  "http://oca-x-feat-a-b-c-pr42-" SHA12 ".d.test");
	CHECK_STR(json_string_value(json_object_get(j, "webui_link")), "http://h:8000/builds/bpr");
	CHECK_INT(json_object_size(j), 15);
	json_decref(j);
	/* the controller's note wins over the recorded reason */
	build_set_reason(b, "Service refused");
	j = build_to_json(b, &links);
	CHECK_STR(json_string_value(json_object_get(j, "reason")), "Service refused");
	json_decref(j);
	build_set_note(b, "start failed 2 times; retrying in 4 s");
	struct build *copy = build_dup(b);
	CHECK(build_same_view(b, copy));
	j = build_to_json(copy, &links);
	CHECK_STR(json_string_value(json_object_get(j, "reason")),
		  "start failed 2 times; retrying in 4 s");
	json_decref(j);
	build_set_note(copy, "");
	CHECK(copy->note == NULL);
	CHECK(!build_same_view(b, copy));
	build_free(copy);
	json_decref(j = NULL);
	/* no links at all: still well-formed */
	j = build_to_json(b, NULL);
	CHECK_STR(json_string_value(json_object_get(j, "repo_pr_link")),
		  "https://github.com/oca/x/pull/42");
	json_decref(j);
	build_free(b);
}

static const char *JOB =
	"{\"kind\":\"Job\",\"apiVersion\":\"batch/v1\","
	"\"metadata\":{\"name\":\"b0123456789abcdef0123456789abcdef-initialize\","
	"\"namespace\":\"runboat-builds\",\"uid\":\"0f9e8d7c-6b5a-4321-9876-543210fedcba\","
	"\"resourceVersion\":\"777\",\"creationTimestamp\":\"2021-11-28T10:21:00Z\","
	"\"labels\":{\"runboat/build\":\"b0123456789abcdef0123456789abcdef\","
	"\"runboat/job-kind\":\"initialize\"}},"
	"\"spec\":{\"backoffLimit\":6,\"completions\":1,\"parallelism\":1},"
	"\"status\":{\"startTime\":\"2021-11-28T10:21:00Z\",\"active\":1,\"ready\":0}}";

static json_t *job(void)
{
	return json_loads(JOB, 0, NULL);
}

static int job_state(json_t *j)
{
	struct build_job out;
	int r = build_job_from_job(j, &out);
	json_decref(j);
	return r < 0 ? r : (int)out.state;
}

static json_t *cond(const char *type, const char *status)
{
	return json_pack("[{s:s,s:s,s:s}]", "type", type, "status", status, "lastTransitionTime",
			 "2021-11-28T10:30:00Z");
}

static void test_job(void)
{
	struct build_job out;
	json_t *j = job();
	CHECK_INT(build_job_from_job(j, &out), 0);
	CHECK_STR(out.build, "b0123456789abcdef0123456789abcdef");
	CHECK_STR(out.name, "b0123456789abcdef0123456789abcdef-initialize");
	CHECK_STR(out.uid, "0f9e8d7c-6b5a-4321-9876-543210fedcba");
	CHECK_INT(out.kind, BUILD_JOB_INITIALIZE);
	CHECK_INT(out.state, BUILD_JOB_ACTIVE);
	CHECK_INT(out.created, 1638094860);
	CHECK(!out.deleting);
	json_decref(j);

	/* succeeded, with and without the condition */
	j = job();
	json_object_set_new(json_object_get(j, "status"), "active", json_integer(0));
	json_object_set_new(json_object_get(j, "status"), "succeeded", json_integer(1));
	json_object_set_new(json_object_get(j, "status"), "conditions", cond("Complete", "True"));
	CHECK_INT(job_state(j), BUILD_JOB_SUCCEEDED);
	j = job();
	json_object_set_new(j, "status", json_pack("{s:i}", "succeeded", 1));
	CHECK_INT(job_state(j), BUILD_JOB_SUCCEEDED);
	/* failed: only with the terminal condition; a retry is pending */
	j = job();
	json_object_set_new(j, "status", json_pack("{s:i,s:o}", "failed", 7, "conditions",
						   cond("Failed", "True")));
	CHECK_INT(job_state(j), BUILD_JOB_FAILED);
	j = job();
	json_object_set_new(j, "status", json_pack("{s:i,s:i,s:o}", "failed", 1, "active", 1,
						   "conditions", cond("FailureTarget", "True")));
	CHECK_INT(job_state(j), BUILD_JOB_FAILED);
	j = job();
	json_object_set_new(j, "status", json_pack("{s:i}", "failed", 1));
	CHECK_INT(job_state(j), BUILD_JOB_PENDING);
	j = job();
	json_object_set_new(j, "status", json_pack("{s:i,s:o}", "failed", 1, "conditions",
						   cond("Failed", "False")));
	CHECK_INT(job_state(j), BUILD_JOB_PENDING);
	j = job();
	json_object_del(j, "status");
	CHECK_INT(job_state(j), BUILD_JOB_PENDING);

	/* cleanup kind, being deleted */
	j = job();
	json_object_set_new(json_object_get(json_object_get(j, "metadata"), "labels"),
			    "runboat/job-kind", json_string("cleanup"));
	json_object_set_new(json_object_get(j, "metadata"), "deletionTimestamp",
			    json_string("2021-11-28T11:00:00Z"));
	CHECK_INT(build_job_from_job(j, &out), 0);
	CHECK_INT(out.kind, BUILD_JOB_CLEANUP);
	CHECK(out.deleting);
	json_decref(j);

	/* not ours */
	j = job();
	json_object_del(json_object_get(j, "metadata"), "labels");
	CHECK_INT(job_state(j), -ENOENT);
	j = job();
	json_object_del(json_object_get(json_object_get(j, "metadata"), "labels"), "runboat/build");
	CHECK_INT(job_state(j), -ENOENT);
	j = job();
	json_object_set_new(json_object_get(json_object_get(j, "metadata"), "labels"),
			    "runboat/job-kind", json_string("backup"));
	CHECK_INT(job_state(j), -ENOENT);
	/* hostile */
	CHECK_INT(build_job_from_job(NULL, &out), -EINVAL);
	j = job();
	json_object_set_new(json_object_get(json_object_get(j, "metadata"), "labels"),
			    "runboat/build", json_integer(5));
	CHECK_INT(job_state(j), -EINVAL);
	j = job();
	json_object_set_new(json_object_get(json_object_get(j, "metadata"), "labels"),
			    "runboat/build", json_string("NOT A NAME"));
	CHECK_INT(job_state(j), -EINVAL);
	j = job();
	json_object_set_new(json_object_get(j, "status"), "conditions", json_string("Complete"));
	CHECK_INT(job_state(j), -EINVAL);
	j = job();
	json_object_set_new(json_object_get(j, "status"), "conditions", json_pack("[i]", 1));
	CHECK_INT(job_state(j), -EINVAL);
	j = job();
	json_object_set_new(json_object_get(j, "status"), "active", json_integer(-1));
	CHECK_INT(job_state(j), -EINVAL);
	j = job();
	json_object_set_new(json_object_get(j, "metadata"), "creationTimestamp", json_string("x"));
	CHECK_INT(job_state(j), -EINVAL);
	char *big = huge(300, 'a');
	j = job();
	json_object_set_new(json_object_get(j, "metadata"), "name", json_string(big));
	CHECK_INT(job_state(j), -EINVAL);
	free(big);
	j = job();
	json_object_set_new(json_object_get(j, "metadata"), "uid", json_string("x\ny"));
	CHECK_INT(build_job_from_job(j, &out), 0); /* opaque, bounded, kept as is */
	json_decref(j);
}

/* runboat/reason: read, bounded on a character boundary, never a reason to
 * refuse the build. */
static void test_reason(void)
{
	json_t *d = deployment();
	struct build *b = build_from_deployment(d, NULL, 0);
	CHECK(b && b->reason == NULL);
	build_free(b);
	json_object_set_new(ann(d), BUILD_ANN_REASON, json_string(""));
	b = build_from_deployment(d, NULL, 0);
	CHECK(b && b->reason == NULL);
	build_free(b);
	json_object_set_new(ann(d), BUILD_ANN_REASON, json_string("applying Service x: refused"));
	b = build_from_deployment(d, NULL, 0);
	CHECK(b && b->reason && strcmp(b->reason, "applying Service x: refused") == 0);
	build_free(b);
	/* 2-byte characters across the bound */
	char big[3000];
	size_t n = 0;
	big[n++] = 'x';
	while (n + 2 < sizeof big) {
		big[n++] = (char)0xC3;
		big[n++] = (char)0xA9;
	}
	big[n] = '\0';
	json_object_set_new(ann(d), BUILD_ANN_REASON, json_string(big));
	b = build_from_deployment(d, NULL, 0);
	CHECK(b && b->reason);
	if (b && b->reason) {
		CHECK(strlen(b->reason) <= BUILD_REASON_MAX);
		json_t *t = json_string(b->reason); /* still valid UTF-8 */
		CHECK(t != NULL);
		json_decref(t);
		CHECK_INT(strlen(b->reason), BUILD_REASON_MAX - 1);
	}
	build_free(b);
	json_object_set_new(ann(d), BUILD_ANN_REASON, json_integer(3));
	b = build_from_deployment(d, NULL, 0);
	CHECK(b && b->reason == NULL);
	build_free(b);
	json_decref(d);
}

int main(void)
{
	RUN(test_enums);
	RUN(test_reason);
	RUN(test_parse_fields);
	RUN(test_status_derivation);
	RUN(test_hostile);
	RUN(test_hostile_matrix);
	RUN(test_validation);
	RUN(test_slug);
	RUN(test_new_name);
	RUN(test_json);
	RUN(test_job);
	return UNIT_DONE();
}
