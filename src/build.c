#include "build.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* Bounds on the Kubernetes strings we keep. */
#define K8S_NAME_MAX 253
#define K8S_UID_MAX 63
#define K8S_RV_MAX 128
#define K8S_TIME_MAX 40
#define K8S_FINALIZERS_MAX 256
#define K8S_CONDITIONS_MAX 256

static const char *const status_names[BUILD_STATUS_COUNT] = {
	[BUILD_INITIALIZING] = "initializing", [BUILD_FAILED] = "failed",
	[BUILD_STOPPED] = "stopped",           [BUILD_STOPPING] = "stopping",
	[BUILD_STARTING] = "starting",         [BUILD_STARTED] = "started",
	[BUILD_UNDEPLOYING] = "undeploying",
};

static const char *const init_status_names[BUILD_INIT_STATUS_COUNT] = {
	[BUILD_INIT_TODO] = "todo",
	[BUILD_INIT_STARTED] = "started",
	[BUILD_INIT_SUCCEEDED] = "succeeded",
	[BUILD_INIT_FAILED] = "failed",
};

const char *build_status_str(enum build_status s)
{
	return (unsigned)s < BUILD_STATUS_COUNT ? status_names[s] : "?";
}

const char *build_init_status_str(enum build_init_status s)
{
	return (unsigned)s < BUILD_INIT_STATUS_COUNT ? init_status_names[s] : "?";
}

int build_status_parse(const char *s)
{
	for (int i = 0; s && i < BUILD_STATUS_COUNT; i++)
		if (strcmp(s, status_names[i]) == 0)
			return i;
	return -1;
}

int build_init_status_parse(const char *s)
{
	for (int i = 0; s && i < BUILD_INIT_STATUS_COUNT; i++)
		if (strcmp(s, init_status_names[i]) == 0)
			return i;
	return -1;
}

const char *build_job_kind_str(enum build_job_kind k)
{
	return k == BUILD_JOB_INITIALIZE ? "initialize" : k == BUILD_JOB_CLEANUP ? "cleanup" : "?";
}

const char *build_job_state_str(enum build_job_state s)
{
	switch (s) {
	case BUILD_JOB_PENDING: return "pending";
	case BUILD_JOB_ACTIVE: return "active";
	case BUILD_JOB_SUCCEEDED: return "succeeded";
	case BUILD_JOB_FAILED: return "failed";
	}
	return "?";
}

/* ---- construction ---- */

/* Copies s into the string area at *p and returns where it went. */
static const char *pack(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *dst = *p;
	memcpy(dst, s, n);
	*p += n;
	return dst;
}

struct build *build_new(const char *name, const char *deployment_name,
			const struct build_commit *commit, const char *resource_version,
			const char *uid)
{
	const char *rv = resource_version ? resource_version : "";
	const char *id = uid ? uid : "";
	char *slug = build_slug(commit->repo, commit->target_branch, commit->pr,
				commit->git_commit);
	size_t strings = strlen(name) + strlen(deployment_name) + strlen(commit->repo) +
			 strlen(commit->target_branch) + strlen(commit->git_commit) +
			 strlen(slug) + strlen(rv) + strlen(id) + 8;
	struct build *b = xcalloc(1, sizeof(*b) + strings);
	char *p = (char *)(b + 1);
	b->name = pack(&p, name);
	b->deployment_name = pack(&p, deployment_name);
	b->commit.repo = pack(&p, commit->repo);
	b->commit.target_branch = pack(&p, commit->target_branch);
	b->commit.pr = commit->pr;
	b->commit.git_commit = pack(&p, commit->git_commit);
	b->slug = pack(&p, slug);
	b->resource_version = pack(&p, rv);
	b->uid = pack(&p, id);
	free(slug);
	b->init_status = BUILD_INIT_TODO;
	b->status = build_derive_status(b);
	return b;
}

struct build *build_dup(const struct build *b)
{
	struct build *d = build_new(b->name, b->deployment_name, &b->commit,
				    b->resource_version, b->uid);
	d->init_status = b->init_status;
	d->status = b->status;
	d->desired_replicas = b->desired_replicas;
	d->replicas = b->replicas;
	d->ready_replicas = b->ready_replicas;
	d->available_replicas = b->available_replicas;
	d->created = b->created;
	d->created_ms = b->created_ms;
	d->last_scaled = b->last_scaled;
	d->deleting = b->deleting;
	d->paused = b->paused;
	d->has_finalizer = b->has_finalizer;
	d->restarts = b->restarts;
	d->crash_looping = b->crash_looping;
	build_set_reason(d, b->reason);
	build_set_note(d, b->note);
	return d;
}

static void set_string(char **dst, const char *s)
{
	free(*dst);
	*dst = s && *s ? xstrdup(s) : NULL;
}

void build_set_reason(struct build *b, const char *s)
{
	set_string(&b->reason, s);
	build_json_forget(b);
}

void build_set_note(struct build *b, const char *s)
{
	set_string(&b->note, s);
	build_json_forget(b);
}

void build_json_forget(struct build *b)
{
	free(b->json_text);
	b->json_text = NULL;
	b->json_len = 0;
	b->json_links = NULL;
}

void build_free(struct build *b)
{
	if (!b)
		return;
	free(b->reason);
	free(b->note);
	free(b->json_text);
	free(b);
}

enum build_status build_derive_status(const struct build *b)
{
	if (b->deleting)
		return BUILD_UNDEPLOYING;
	switch (b->init_status) {
	case BUILD_INIT_TODO:
	case BUILD_INIT_STARTED:
		return BUILD_INITIALIZING;
	case BUILD_INIT_FAILED:
		return BUILD_FAILED;
	default:
		break;
	}
	if (b->desired_replicas <= 0)
		return b->replicas > 0 ? BUILD_STOPPING : BUILD_STOPPED;
	return b->available_replicas >= b->desired_replicas ? BUILD_STARTED : BUILD_STARTING;
}

int64_t build_last_scaled(const struct build *b)
{
	return b->last_scaled ? b->last_scaled : b->created;
}

bool build_same_view(const struct build *a, const struct build *b)
{
	return strcmp(a->name, b->name) == 0 &&
	       strcmp(a->deployment_name, b->deployment_name) == 0 &&
	       strcmp(a->commit.repo, b->commit.repo) == 0 &&
	       strcmp(a->commit.target_branch, b->commit.target_branch) == 0 &&
	       a->commit.pr == b->commit.pr &&
	       strcmp(a->commit.git_commit, b->commit.git_commit) == 0 &&
	       a->init_status == b->init_status && a->status == b->status &&
	       a->desired_replicas == b->desired_replicas && a->created == b->created &&
	       a->created_ms == b->created_ms &&
	       a->last_scaled == b->last_scaled && a->deleting == b->deleting &&
	       a->paused == b->paused &&
	       a->has_finalizer == b->has_finalizer && a->restarts == b->restarts &&
	       a->crash_looping == b->crash_looping &&
	       strcmp(a->reason ? a->reason : "", b->reason ? b->reason : "") == 0 &&
	       strcmp(a->note ? a->note : "", b->note ? b->note : "") == 0;
}

/* ---- validation ---- */

static bool is_lower_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(int c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

bool build_valid_name(const char *name)
{
	if (!name || !(name[0] >= 'a' && name[0] <= 'z'))
		return false;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		if (n >= BUILD_NAME_MAX || !(is_lower_alnum(*p) || *p == '-'))
			return false;
	}
	return name[n - 1] != '-';
}

bool build_valid_commit(const struct build_commit *c)
{
	return c && validate_repo(c->repo) && validate_branch(c->target_branch) &&
	       (c->pr == 0 || validate_pr(c->pr)) && validate_sha(c->git_commit);
}

/* ---- slug ---- */

/* Appends s lowercased with every [^a-z0-9] turned into '-', never two '-' in
 * a row and none at the start of the buffer. */
static void slug_append(struct buf *b, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!is_lower_alnum(c))
			c = '-';
		if (c == '-' && (b->len == 0 || b->data[b->len - 1] == '-'))
			continue;
		buf_append(b, &c, 1);
	}
}

static void slug_trim(struct buf *b)
{
	while (b->len && b->data[b->len - 1] == '-')
		b->data[--b->len] = '\0';
}

char *build_slug(const char *repo, const char *target_branch, int pr, const char *sha)
{
	repo = repo ? repo : "";
	target_branch = target_branch ? target_branch : "";
	sha = sha ? sha : "";
	struct buf head = {0}, tail = {0}, out = {0};
	slug_append(&head, repo, SIZE_MAX);
	slug_append(&head, "-", 1);
	slug_append(&head, target_branch, SIZE_MAX);
	slug_trim(&head);
	if (pr > 0)
		buf_printf(&tail, "pr%d-", pr);
	slug_append(&tail, sha, 12);
	slug_trim(&tail);

	size_t full = head.len + (head.len && tail.len) + tail.len;
	if (full <= BUILD_SLUG_MAX) {
		if (head.len)
			buf_append(&out, head.data, head.len);
		if (head.len && tail.len)
			buf_append_str(&out, "-");
		if (tail.len)
			buf_append(&out, tail.data, tail.len);
	} else {
		/* Hash the inputs (repo lowercased), not the slug: "a.b" and "a-b"
		 * give the same slug text but must not share a shortened name. */
		struct buf in = {0};
		for (const char *p = repo; *p; p++) {
			char c = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
			buf_append(&in, &c, 1);
		}
		buf_printf(&in, "\n%s\n%d\n%s", target_branch, pr, sha);
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned mdlen = 0;
		if (!EVP_Digest(in.data, in.len, md, &mdlen, EVP_sha256(), NULL) || mdlen < 4)
			memset(md, 0, 4);
		buf_free(&in);
		char h8[9];
		snprintf(h8, sizeof(h8), "%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
		/* room for the head: 63 - "-" h8 - "-" tail */
		size_t room = BUILD_SLUG_MAX - 1 - 8 - (tail.len ? 1 + tail.len : 0);
		size_t keep = head.len < room ? head.len : room;
		while (keep && head.data[keep - 1] == '-')
			keep--;
		if (keep) {
			buf_append(&out, head.data, keep);
			buf_append_str(&out, "-");
		}
		buf_append_str(&out, h8);
		if (tail.len) {
			buf_append_str(&out, "-");
			buf_append(&out, tail.data, tail.len);
		}
	}
	buf_free(&head);
	buf_free(&tail);
	if (!out.data)
		return xstrdup("");
	return buf_steal(&out);
}

char *build_new_name(void)
{
	unsigned char r[16];
	if (RAND_bytes(r, sizeof(r)) != 1)
		return NULL;
	char *name = xmalloc(1 + 2 * sizeof(r) + 1);
	name[0] = 'b';
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(name + 1 + 2 * i, 3, "%02x", r[i]);
	return name;
}

/* ---- reading Kubernetes objects ---- */

/* A short, printable rendering of a hostile string for error messages. */
static void preview(const char *s, char out[48])
{
	size_t i = 0;
	for (; s[i] && i < 40; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
	out[i] = '\0';
	if (s[i])
		strcpy(out + i, "...");
}

static void fail(char *err, size_t errlen, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(char *err, size_t errlen, const char *what, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s: %s", what, msg);
}

/* A string member: absent or null -> *out = NULL and 0; a string without NUL
 * bytes of at most max bytes -> 0; else -EINVAL. */
static int get_str(const json_t *obj, const char *key, size_t max, const char **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -EINVAL;
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (strlen(s) != n || n > max)
		return -EINVAL;
	*out = s;
	return 0;
}

/* A count: absent or null -> 0; an integer in [0, INT_MAX] -> 0; else -EINVAL. */
static int get_count(const json_t *obj, const char *key, int *out)
{
	json_t *v = json_object_get(obj, key);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return -EINVAL;
	json_int_t i = json_integer_value(v);
	if (i < 0 || i > INT_MAX)
		return -EINVAL;
	*out = (int)i;
	return 0;
}

/* An object member: absent or null -> NULL and 0; an object -> 0; else -EINVAL. */
static int get_obj(const json_t *obj, const char *key, json_t **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return -EINVAL;
	*out = v;
	return 0;
}

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* RFC 3339 as Kubernetes writes it, checked strictly before parse_rfc3339
 * sees it: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). */
static int parse_time(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	if (n < 20 || n > K8S_TIME_MAX)
		return -EINVAL;
	if (!digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
	    !digits(s + 8, 2) || s[10] != 'T' || !digits(s + 11, 2) || s[13] != ':' ||
	    !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
		return -EINVAL;
	const char *p = s + 19;
	if (*p == '.') {
		size_t f = strspn(p + 1, "0123456789");
		if (f < 1 || f > 9)
			return -EINVAL;
		p += 1 + f;
	}
	if (*p == 'Z') {
		if (p[1])
			return -EINVAL;
	} else if (*p == '+' || *p == '-') {
		if (strlen(p) != 6 || !digits(p + 1, 2) || p[3] != ':' || !digits(p + 4, 2))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	int64_t t;
	if (parse_rfc3339(s, &t) < 0 || t < 0)
		return -EINVAL;
	*out = t;
	return 0;
}

static bool valid_k8s_name(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > K8S_NAME_MAX || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(is_lower_alnum(s[i]) || s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

struct build *build_from_deployment(const json_t *dep, char *err, size_t errlen)
{
	char what[80] = "deployment";
	char pv[48];
	json_t *meta, *labels, *ann, *spec, *status;
	const char *dname, *name, *repo, *branch, *pr_s, *sha, *init_s, *scaled_s, *created_s;
	const char *rv, *uid, *del_s;
	struct build *b = NULL;

	if (!json_is_object(dep)) {
		fail(err, errlen, what, "not a JSON object");
		return NULL;
	}
	if (get_obj(dep, "metadata", &meta) < 0 || !meta) {
		fail(err, errlen, what, "metadata missing or not an object");
		return NULL;
	}
	if (get_str(meta, "name", K8S_NAME_MAX, &dname) < 0 || !dname ||
	    !valid_k8s_name(dname)) {
		fail(err, errlen, what, "metadata.name missing or not a valid object name");
		return NULL;
	}
	snprintf(what, sizeof(what), "deployment %s", dname);

	if (get_obj(meta, "labels", &labels) < 0 || !labels) {
		fail(err, errlen, what, "metadata.labels missing or not an object");
		return NULL;
	}
	if (get_str(labels, BUILD_LABEL, BUILD_NAME_MAX, &name) < 0 || !name ||
	    !build_valid_name(name)) {
		fail(err, errlen, what, "label " BUILD_LABEL " missing or not a valid build name");
		return NULL;
	}
	size_t nl = strlen(name);
	if (strncmp(dname, name, nl) != 0 || (dname[nl] && dname[nl] != '-')) {
		fail(err, errlen, what, "name does not start with its build name %s", name);
		return NULL;
	}

	if (get_obj(meta, "annotations", &ann) < 0 || !ann) {
		fail(err, errlen, what, "metadata.annotations missing or not an object");
		return NULL;
	}
	if (get_str(ann, BUILD_ANN_REPO, BUILD_REPO_MAX, &repo) < 0 || !repo ||
	    !validate_repo(repo)) {
		fail(err, errlen, what, "annotation " BUILD_ANN_REPO
		     " missing or not an owner/repo GitHub accepts");
		return NULL;
	}
	if (get_str(ann, BUILD_ANN_TARGET_BRANCH, BUILD_BRANCH_MAX, &branch) < 0 || !branch ||
	    !validate_branch(branch)) {
		fail(err, errlen, what, "annotation " BUILD_ANN_TARGET_BRANCH
		     " missing or not a valid git branch name");
		return NULL;
	}
	int pr = 0;
	if (get_str(ann, BUILD_ANN_PR, 16, &pr_s) < 0 ||
	    (pr_s && *pr_s && validate_parse_pr(pr_s, &pr) < 0)) {
		fail(err, errlen, what, "annotation " BUILD_ANN_PR
		     " is not \"\" or a PR number in 1..2147483647");
		return NULL;
	}
	if (get_str(ann, BUILD_ANN_GIT_COMMIT, 64, &sha) < 0 || !sha || !validate_sha(sha)) {
		fail(err, errlen, what, "annotation " BUILD_ANN_GIT_COMMIT
		     " missing or not 40/64 lowercase hex digits");
		return NULL;
	}
	int init = -1;
	if (get_str(ann, BUILD_ANN_INIT_STATUS, 16, &init_s) < 0 || !init_s ||
	    (init = build_init_status_parse(init_s)) < 0) {
		if (init_s)
			preview(init_s, pv);
		fail(err, errlen, what, "annotation " BUILD_ANN_INIT_STATUS
		     " %s%s%s, expected todo, started, succeeded or failed",
		     init_s ? "is \"" : "missing", init_s ? pv : "", init_s ? "\"" : "");
		return NULL;
	}
	int64_t last_scaled = 0;
	if (get_str(ann, BUILD_ANN_LAST_SCALED, K8S_TIME_MAX, &scaled_s) < 0 ||
	    (scaled_s && *scaled_s && parse_time(scaled_s, &last_scaled) < 0)) {
		fail(err, errlen, what, "annotation " BUILD_ANN_LAST_SCALED
		     " is not an RFC 3339 time");
		return NULL;
	}
	int64_t created = 0;
	if (get_str(meta, "creationTimestamp", K8S_TIME_MAX, &created_s) < 0 || !created_s ||
	    parse_time(created_s, &created) < 0) {
		fail(err, errlen, what, "metadata.creationTimestamp missing or not an RFC 3339 time");
		return NULL;
	}
	int64_t deleted_at;
	if (get_str(meta, "deletionTimestamp", K8S_TIME_MAX, &del_s) < 0 ||
	    (del_s && parse_time(del_s, &deleted_at) < 0)) {
		fail(err, errlen, what, "metadata.deletionTimestamp is not an RFC 3339 time");
		return NULL;
	}
	if (get_str(meta, "resourceVersion", K8S_RV_MAX, &rv) < 0) {
		fail(err, errlen, what, "metadata.resourceVersion is not a string of at most %d bytes",
		     K8S_RV_MAX);
		return NULL;
	}
	if (get_str(meta, "uid", K8S_UID_MAX, &uid) < 0) {
		fail(err, errlen, what, "metadata.uid is not a string of at most %d bytes",
		     K8S_UID_MAX);
		return NULL;
	}
	bool finalizer = false;
	json_t *fins = json_object_get(meta, "finalizers");
	if (fins && !json_is_null(fins)) {
		if (!json_is_array(fins) || json_array_size(fins) > K8S_FINALIZERS_MAX) {
			fail(err, errlen, what, "metadata.finalizers is not an array of strings");
			return NULL;
		}
		size_t i;
		json_t *f;
		json_array_foreach(fins, i, f) {
			if (!json_is_string(f)) {
				fail(err, errlen, what, "metadata.finalizers is not an array of strings");
				return NULL;
			}
			if (strcmp(json_string_value(f), BUILD_FINALIZER) == 0 &&
			    json_string_length(f) == strlen(BUILD_FINALIZER))
				finalizer = true;
		}
	}

	if (get_obj(dep, "spec", &spec) < 0 || !spec) {
		fail(err, errlen, what, "spec missing or not an object");
		return NULL;
	}
	int desired;
	if (get_count(spec, "replicas", &desired) < 0) {
		fail(err, errlen, what, "spec.replicas is not an integer in 0..%d", INT_MAX);
		return NULL;
	}
	int replicas = 0, ready = 0, available = 0;
	if (get_obj(dep, "status", &status) < 0) {
		fail(err, errlen, what, "status is not an object");
		return NULL;
	}
	if (status && (get_count(status, "replicas", &replicas) < 0 ||
		       get_count(status, "readyReplicas", &ready) < 0 ||
		       get_count(status, "availableReplicas", &available) < 0)) {
		fail(err, errlen, what,
		     "status.replicas, readyReplicas or availableReplicas is not an integer in 0..%d",
		     INT_MAX);
		return NULL;
	}

	/* The repo annotation is lowercase by contract; normalize anyway, as
	 * the Python runboat does. */
	char lrepo[BUILD_REPO_MAX + 1];
	size_t i = 0;
	for (; repo[i]; i++)
		lrepo[i] = (repo[i] >= 'A' && repo[i] <= 'Z') ? (char)(repo[i] - 'A' + 'a') : repo[i];
	lrepo[i] = '\0';
	struct build_commit c = {.repo = lrepo, .target_branch = branch, .pr = pr, .git_commit = sha};
	b = build_new(name, dname, &c, rv, uid);
	b->init_status = (enum build_init_status)init;
	b->desired_replicas = desired;
	b->replicas = replicas;
	b->ready_replicas = ready;
	b->available_replicas = available;
	b->created = created;
	b->created_ms = created * 1000;
	const char *order = json_string_value(json_object_get(ann, BUILD_ANN_CREATED));
	int64_t order_s;
	if (order && strlen(order) <= K8S_TIME_MAX && parse_time(order, &order_s) == 0) {
		/* milliseconds from the fraction, if any */
		int64_t ms = 0;
		const char *dot = strchr(order, '.');
		for (int i = 1; dot && i <= 3 && dot[i] >= '0' && dot[i] <= '9'; i++)
			ms += (dot[i] - '0') * (i == 1 ? 100 : i == 2 ? 10 : 1);
		b->created_ms = order_s * 1000 + ms;
	}
	b->last_scaled = last_scaled;
	b->deleting = del_s != NULL;
	b->has_finalizer = finalizer;
	b->paused = json_is_true(json_object_get(spec, "paused"));
	const char *why = json_string_value(json_object_get(ann, BUILD_ANN_REASON));
	if (why && *why) {
		/* informative only: a bad one is cut, never a reason to refuse */
		b->reason = xstrndup(why, utf8_cut(why, strlen(why), BUILD_REASON_MAX));
	}
	b->status = build_derive_status(b);
	return b;
}

/* ---- JSON ---- */

/* Appends a branch for a URL path: unreserved characters and '/' as they are,
 * everything else percent-encoded. */
static void append_path(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
			buf_append(b, s, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			buf_append(b, e, 3);
		}
	}
}

/* base without its trailing '/' characters. */
static int base_len(const char *base)
{
	size_t n = strlen(base);
	while (n && base[n - 1] == '/')
		n--;
	return n > INT_MAX ? INT_MAX : (int)n;
}

static json_t *take_string(struct buf *b)
{
	json_t *j = json_string(b->data ? b->data : "");
	buf_free(b);
	return j ? j : json_string("");
}

json_t *build_to_json(const struct build *b, const struct build_links *links)
{
	const char *gh = links && links->github_url ? links->github_url : "https://github.com";
	const char *base = links && links->base_url ? links->base_url : "";
	const char *domain = links && links->build_domain ? links->build_domain : "";
	int ghn = base_len(gh);
	struct buf s = {0};
	char t[32];

	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(b->name));
	json_t *ci = json_object();
	json_object_set_new(ci, "repo", json_string(b->commit.repo));
	json_object_set_new(ci, "target_branch", json_string(b->commit.target_branch));
	json_object_set_new(ci, "pr", b->commit.pr > 0 ? json_integer(b->commit.pr) : json_null());
	json_object_set_new(ci, "git_commit", json_string(b->commit.git_commit));
	json_object_set_new(o, "commit_info", ci);

	buf_printf(&s, "http://%s.%s", b->slug, domain);
	json_object_set_new(o, "deploy_link", take_string(&s));
	buf_printf(&s, "http://%s.mail.%s", b->slug, domain);
	json_object_set_new(o, "deploy_link_mailhog", take_string(&s));

	buf_printf(&s, "%.*s/%s/tree/", ghn, gh, b->commit.repo);
	append_path(&s, b->commit.target_branch);
	json_object_set_new(o, "repo_target_branch_link", take_string(&s));
	if (b->commit.pr > 0) {
		buf_printf(&s, "%.*s/%s/pull/%d", ghn, gh, b->commit.repo, b->commit.pr);
		json_object_set_new(o, "repo_pr_link", take_string(&s));
		buf_printf(&s, "%.*s/%s/pull/%d/commits/%s", ghn, gh, b->commit.repo, b->commit.pr,
			   b->commit.git_commit);
	} else {
		json_object_set_new(o, "repo_pr_link", json_null());
		buf_printf(&s, "%.*s/%s/commit/%s", ghn, gh, b->commit.repo, b->commit.git_commit);
	}
	json_object_set_new(o, "repo_commit_link", take_string(&s));
	buf_printf(&s, "%.*s/builds/", base_len(base), base);
	buf_append_url_encoded(&s, b->name);
	json_object_set_new(o, "webui_link", take_string(&s));

	json_object_set_new(o, "status", json_string(build_status_str(b->status)));
	format_rfc3339(b->created, t);
	json_object_set_new(o, "created", json_string(t));
	format_rfc3339(build_last_scaled(b), t);
	json_object_set_new(o, "last_scaled", json_string(t));
	json_object_set_new(o, "init_status", json_string(build_init_status_str(b->init_status)));
	json_object_set_new(o, "slug", json_string(b->slug));
	json_object_set_new(o, "desired_replicas", json_integer(b->desired_replicas));
	const char *why = b->note ? b->note : b->reason;
	json_object_set_new(o, "reason", why ? json_string(why) : json_null());
	return o;
}

const char *build_json_text(const struct build *b, const struct build_links *links, size_t *len)
{
	/* the cache is not part of the build's value: filling it does not
	 * change what a const build shows */
	struct build *m = (struct build *)b;
	if (!m->json_text || m->json_links != links) {
		json_t *o = build_to_json(b, links);
		char *text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		free(m->json_text);
		m->json_text = text ? text : xstrdup("{}");
		m->json_len = strlen(m->json_text);
		m->json_links = links;
	}
	*len = m->json_len;
	return m->json_text;
}

/* ---- jobs ---- */

/* Is there a condition of that type with status "True"? -EINVAL if the
 * conditions are malformed. */
static int has_condition(json_t *conditions, const char *type)
{
	size_t i;
	json_t *c;
	json_array_foreach(conditions, i, c) {
		const char *t, *st;
		if (!json_is_object(c) || get_str(c, "type", 128, &t) < 0 ||
		    get_str(c, "status", 16, &st) < 0)
			return -EINVAL;
		if (t && st && strcmp(t, type) == 0 && strcmp(st, "True") == 0)
			return 1;
	}
	return 0;
}

int build_job_from_job(const json_t *job, struct build_job *out)
{
	json_t *meta, *labels, *status, *conds = NULL;
	const char *build, *kind, *name, *uid, *created_s, *del_s;
	int64_t t;

	memset(out, 0, sizeof(*out));
	if (!json_is_object(job) || get_obj(job, "metadata", &meta) < 0 || !meta)
		return -EINVAL;
	if (get_obj(meta, "labels", &labels) < 0)
		return -EINVAL;
	if (!labels)
		return -ENOENT;
	if (get_str(labels, BUILD_LABEL, BUILD_NAME_MAX, &build) < 0)
		return -EINVAL;
	if (!build)
		return -ENOENT;
	if (!build_valid_name(build))
		return -EINVAL;
	if (get_str(labels, BUILD_LABEL_JOB_KIND, 63, &kind) < 0)
		return -EINVAL;
	if (!kind)
		return -ENOENT;
	if (strcmp(kind, "initialize") == 0)
		out->kind = BUILD_JOB_INITIALIZE;
	else if (strcmp(kind, "cleanup") == 0)
		out->kind = BUILD_JOB_CLEANUP;
	else
		return -ENOENT;
	if (get_str(meta, "name", K8S_NAME_MAX, &name) < 0 || !name || !valid_k8s_name(name))
		return -EINVAL;
	if (get_str(meta, "uid", K8S_UID_MAX, &uid) < 0)
		return -EINVAL;
	if (get_str(meta, "creationTimestamp", K8S_TIME_MAX, &created_s) < 0 || !created_s ||
	    parse_time(created_s, &out->created) < 0)
		return -EINVAL;
	if (get_str(meta, "deletionTimestamp", K8S_TIME_MAX, &del_s) < 0 ||
	    (del_s && parse_time(del_s, &t) < 0))
		return -EINVAL;

	int active = 0, succeeded = 0, failed = 0;
	if (get_obj(job, "status", &status) < 0)
		return -EINVAL;
	if (status) {
		if (get_count(status, "active", &active) < 0 ||
		    get_count(status, "succeeded", &succeeded) < 0 ||
		    get_count(status, "failed", &failed) < 0)
			return -EINVAL;
		conds = json_object_get(status, "conditions");
		if (conds && json_is_null(conds))
			conds = NULL;
		if (conds && (!json_is_array(conds) || json_array_size(conds) > K8S_CONDITIONS_MAX))
			return -EINVAL;
	}
	int complete = 0, failed_cond = 0;
	if (conds) {
		int a = has_condition(conds, "Complete"), b = has_condition(conds, "SuccessCriteriaMet");
		int c = has_condition(conds, "Failed"), d = has_condition(conds, "FailureTarget");
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -EINVAL;
		complete = a || b;
		failed_cond = c || d;
	}
	if (complete)
		out->state = BUILD_JOB_SUCCEEDED;
	else if (failed_cond)
		out->state = BUILD_JOB_FAILED;
	else if (active > 0)
		out->state = BUILD_JOB_ACTIVE;
	else if (succeeded > 0)
		out->state = BUILD_JOB_SUCCEEDED;
	else
		out->state = BUILD_JOB_PENDING;
	UNUSED(failed);

	memcpy(out->build, build, strlen(build) + 1);
	memcpy(out->name, name, strlen(name) + 1);
	if (uid)
		memcpy(out->uid, uid, strlen(uid) + 1);
	out->deleting = del_s != NULL;
	return 0;
}
