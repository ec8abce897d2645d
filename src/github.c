/* GitHub webhooks: HMAC verification and the mapping from a delivery to an
 * action. See github.h for the rules. */
#include "github.h"

#include "util.h"
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- signature ---- */

bool github_verify_signature(const char *secret, const void *body, size_t len,
			     const char *header)
{
	static const char prefix[] = "sha256=";
	unsigned char given[32], expected[EVP_MAX_MD_SIZE];
	unsigned int expected_len = 0;

	if (!secret || !*secret || !header || (!body && len))
		return false;
	if (strncmp(header, prefix, sizeof(prefix) - 1) != 0)
		return false;
	const char *hex = header + sizeof(prefix) - 1;
	if (strlen(hex) != 2 * sizeof(given))
		return false;
	for (size_t i = 0; i < sizeof(given); i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		given[i] = (unsigned char)(hi << 4 | lo);
	}
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body ? body : (const void *)"", len,
		  expected, &expected_len) ||
	    expected_len != sizeof(given))
		return false;
	return CRYPTO_memcmp(given, expected, sizeof(given)) == 0;
}

/* ---- validators ---- */

static bool all_zeros(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s != '0')
			return false;
	return true;
}

bool github_sha_normalize(const char *in, char out[GITHUB_SHA_MAX + 1])
{
	size_t i;
	for (i = 0; in[i] && i < GITHUB_SHA_MAX; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[i] = '\0';
	if (in[i] || !validate_sha(out) || all_zeros(out)) {
		out[0] = '\0';
		return false;
	}
	return true;
}

const char *github_action_kind_name(enum github_action_kind kind)
{
	switch (kind) {
	case GITHUB_IGNORE:
		return "ignore";
	case GITHUB_PING:
		return "ping";
	case GITHUB_DEPLOY:
		return "deploy";
	case GITHUB_UNDEPLOY_BRANCH:
		return "undeploy-branch";
	case GITHUB_UNDEPLOY_PR:
		return "undeploy-pr";
	case GITHUB_REBUILD_PR:
		return "rebuild-pr";
	}
	return "?";
}

/* ---- payload ---- */

struct parse {
	json_t *root;
	struct github_action *out;
	char *err;
	size_t errlen;
};

static int fail(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parse *p, const char *fmt, ...)
{
	if (p->err && p->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err, p->errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static void ignore(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ignore(struct parse *p, const char *fmt, ...)
{
	va_list ap;
	p->out->kind = GITHUB_IGNORE;
	va_start(ap, fmt);
	vsnprintf(p->out->reason, sizeof(p->out->reason), fmt, ap);
	va_end(ap);
}

/* The value at a dotted path ("pull_request.head.sha"), or NULL (absent, or
 * a step is not an object). Borrowed from the root. */
static json_t *at(json_t *root, const char *path)
{
	char key[64];
	json_t *v = root;
	while (v && *path) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		v = json_is_object(v) ? json_object_get(v, key) : NULL;
		path += n + (dot ? 1 : 0);
	}
	return v;
}

/* A string field bounded to max bytes, or an error naming the field. Its
 * value is borrowed from the root (*out). */
static int get_string(struct parse *p, const char *path, size_t max, const char **out)
{
	json_t *v = at(p->root, path);
	*out = ""; /* on failure too: no caller reads it then, and the compiler can tell */
	if (!v)
		return fail(p, "%s: missing", path);
	if (!json_is_string(v))
		return fail(p, "%s: expected a string", path);
	if (json_string_length(v) > max)
		return fail(p, "%s: longer than %zu bytes", path, max);
	*out = json_string_value(v);
	return 0;
}

/* An optional boolean: absent is false. */
static int get_bool(struct parse *p, const char *path, bool *out)
{
	json_t *v = at(p->root, path);
	*out = false;
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return fail(p, "%s: expected true or false", path);
	*out = json_is_true(v);
	return 0;
}

static int get_repo(struct parse *p)
{
	const char *s;
	int rc = get_string(p, "repository.full_name", GITHUB_REPO_MAX, &s);
	if (rc)
		return rc;
	if (!validate_repo(s))
		return fail(p, "repository.full_name: expected \"owner/name\" (owner [A-Za-z0-9-]{1,39}, "
			       "name [A-Za-z0-9._-]{1,100})");
	size_t i;
	for (i = 0; s[i]; i++)
		p->out->repo[i] = (char)tolower((unsigned char)s[i]);
	p->out->repo[i] = '\0';
	return 0;
}

/* Best effort, for the logs of ignored and ping deliveries. */
static void try_repo(struct parse *p)
{
	json_t *v = at(p->root, "repository.full_name");
	if (v && json_is_string(v) && json_string_length(v) <= GITHUB_REPO_MAX &&
	    validate_repo(json_string_value(v)))
		get_repo(p);
}

static int get_branch(struct parse *p, const char *path, const char *value)
{
	if (!validate_branch(value))
		return fail(p, "%s: not a valid branch name (git ref rules, UTF-8, at most %d bytes)",
			    path, GITHUB_BRANCH_MAX);
	snprintf(p->out->target_branch, sizeof(p->out->target_branch), "%s", value);
	return 0;
}

static int get_sha(struct parse *p, const char *path)
{
	const char *s;
	int rc = get_string(p, path, GITHUB_SHA_MAX, &s);
	if (rc)
		return rc;
	if (!github_sha_normalize(s, p->out->sha))
		return fail(p, "%s: expected a commit sha (40 or 64 hex digits)", path);
	return 0;
}

static int get_pr(struct parse *p)
{
	json_t *v = at(p->root, "pull_request.number");
	const char *path = "pull_request.number";
	if (!v) {
		v = at(p->root, "number");
		path = "number";
	}
	if (!v)
		return fail(p, "pull_request.number: missing");
	if (!json_is_integer(v))
		return fail(p, "%s: expected an integer", path);
	json_int_t n = json_integer_value(v);
	if (!validate_pr(n))
		return fail(p, "%s: expected a pull request number in 1..%ld", path, GITHUB_PR_MAX);
	json_t *top = json_object_get(p->root, "number");
	if (top && (!json_is_integer(top) || json_integer_value(top) != n))
		return fail(p, "number: does not match pull_request.number");
	p->out->pr = (long)n;
	return 0;
}

static int parse_push(struct parse *p)
{
	const char *ref;
	int rc = get_string(p, "ref", 11 + GITHUB_BRANCH_MAX, &ref);
	if (rc)
		return rc;
	if (str_starts_with(ref, "refs/tags/")) {
		try_repo(p);
		ignore(p, "push of a tag");
		return 0;
	}
	if (!str_starts_with(ref, "refs/heads/")) {
		try_repo(p);
		ignore(p, "push of a ref that is neither a branch nor a tag");
		return 0;
	}
	if ((rc = get_repo(p)) || (rc = get_branch(p, "ref", ref + strlen("refs/heads/"))))
		return rc;
	bool deleted;
	if ((rc = get_bool(p, "deleted", &deleted)))
		return rc;
	if (deleted) {
		p->out->kind = GITHUB_UNDEPLOY_BRANCH;
		return 0;
	}
	const char *after;
	if ((rc = get_string(p, "after", GITHUB_SHA_MAX, &after)))
		return rc;
	if (all_zeros(after)) {
		/* no head commit and not a deletion: nothing to build */
		ignore(p, "push without a head commit");
		return 0;
	}
	if ((rc = get_sha(p, "after")))
		return rc;
	p->out->kind = GITHUB_DEPLOY;
	return 0;
}

static bool safe_word(const char *s, size_t max)
{
	size_t n = 0;
	for (; *s; s++, n++)
		if (n >= max || !((*s >= 'a' && *s <= 'z') || *s == '_'))
			return false;
	return n > 0;
}

static int parse_pull_request(struct parse *p)
{
	const char *action, *base;
	int rc = get_string(p, "action", 64, &action);
	if (rc)
		return rc;
	bool deploy = strcmp(action, "opened") == 0 || strcmp(action, "synchronize") == 0 ||
		      strcmp(action, "reopened") == 0;
	bool closed = strcmp(action, "closed") == 0;
	/* edited with changes.base: the PR now targets another branch */
	if (strcmp(action, "edited") == 0 && at(p->root, "changes.base"))
		deploy = true;
	if (!deploy && !closed) {
		try_repo(p);
		ignore(p, "pull_request action \"%s\" is not handled",
		       safe_word(action, 32) ? action : "(unsupported)");
		return 0;
	}
	if (!json_is_object(at(p->root, "pull_request")))
		return fail(p, "pull_request: expected an object");
	if ((rc = get_repo(p)) || (rc = get_pr(p)) ||
	    (rc = get_string(p, "pull_request.base.ref", GITHUB_BRANCH_MAX, &base)) ||
	    (rc = get_branch(p, "pull_request.base.ref", base)))
		return rc;
	if (closed) {
		p->out->kind = GITHUB_UNDEPLOY_PR;
		return 0;
	}
	if ((rc = get_sha(p, "pull_request.head.sha")))
		return rc;
	p->out->kind = GITHUB_DEPLOY;
	return 0;
}

/* Whether text has line alone on a line (spaces and tabs around it, CR LF
 * or LF line ends). */
static bool has_command_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *s = text; s && *s;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (strncmp(s, line, n) == 0) {
			const char *e = s + n;
			while (*e == ' ' || *e == '\t' || *e == '\r')
				e++;
			if (*e == '\n' || *e == '\0')
				return true;
		}
		s = strchr(s, '\n');
		if (s)
			s++;
	}
	return false;
}

/* A GitHub login: [A-Za-z0-9-]{1,39}. */
static bool valid_login(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (n >= GITHUB_LOGIN_MAX || !(isalnum((unsigned char)s[n]) || s[n] == '-'))
			return false;
	return n > 0;
}

static int parse_issue_comment(struct parse *p)
{
	const char *action, *body, *assoc, *user;
	int rc = get_string(p, "action", 64, &action);
	if (rc)
		return rc;
	if (strcmp(action, "created") != 0) {
		try_repo(p);
		ignore(p, "issue_comment action \"%s\" is not handled",
		       safe_word(action, 32) ? action : "(unsupported)");
		return 0;
	}
	if (!json_is_object(at(p->root, "issue")))
		return fail(p, "issue: expected an object");
	/* GITHUB_WEBHOOK_MAX_BODY bounds the comment; GitHub's own is 65,536 */
	if ((rc = get_string(p, "comment.body", GITHUB_WEBHOOK_MAX_BODY, &body)))
		return rc;
	if (!has_command_line(body, GITHUB_REBUILD_COMMAND)) {
		try_repo(p);
		ignore(p, "comment without \"%s\"", GITHUB_REBUILD_COMMAND);
		return 0;
	}
	if (!json_is_object(at(p->root, "issue.pull_request"))) {
		try_repo(p);
		ignore(p, "\"%s\" on an issue, not a pull request", GITHUB_REBUILD_COMMAND);
		return 0;
	}
	if ((rc = get_repo(p)) || (rc = get_string(p, "comment.author_association", 64, &assoc)) ||
	    (rc = get_string(p, "comment.user.login", 64, &user)))
		return rc;
	if (!valid_login(user))
		return fail(p, "comment.user.login: expected a GitHub login ([A-Za-z0-9-]{1,39})");
	snprintf(p->out->user, sizeof p->out->user, "%s", user);
	if (strcmp(assoc, "OWNER") != 0 && strcmp(assoc, "MEMBER") != 0 &&
	    strcmp(assoc, "COLLABORATOR") != 0) {
		ignore(p, "\"%s\" by %s (%s): only owners, members and collaborators may rebuild",
		       GITHUB_REBUILD_COMMAND, p->out->user,
		       *assoc && strspn(assoc, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == strlen(assoc) ? assoc
											     : "?");
		return 0;
	}
	json_t *v = at(p->root, "issue.number");
	if (!v || !json_is_integer(v) || !validate_pr(json_integer_value(v)))
		return fail(p, "issue.number: expected a pull request number in 1..%ld", GITHUB_PR_MAX);
	p->out->pr = (long)json_integer_value(v);
	p->out->kind = GITHUB_REBUILD_PR;
	return 0;
}

int github_webhook_parse(const char *event, const char *body, size_t len,
			 struct github_action *out, char *err, size_t errlen)
{
	struct parse p = {.out = out, .err = err, .errlen = errlen};
	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	if (len > GITHUB_WEBHOOK_MAX_BODY) {
		fail(&p, "payload larger than %u bytes", GITHUB_WEBHOOK_MAX_BODY);
		return -EMSGSIZE;
	}
	if (!event || !*event)
		return fail(&p, "X-GitHub-Event: missing");
	if (!safe_word(event, 64))
		return fail(&p, "X-GitHub-Event: expected an event name ([a-z_]{1,64})");
	if (!body)
		return fail(&p, "payload: missing");

	json_error_t jerr;
	p.root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!p.root)
		return fail(&p, "payload: invalid JSON at line %d, column %d: %s", jerr.line,
			    jerr.column, jerr.text);
	int rc = 0;
	if (!json_is_object(p.root)) {
		rc = fail(&p, "payload: expected a JSON object");
	} else if (strcmp(event, "ping") == 0) {
		try_repo(&p);
		out->kind = GITHUB_PING;
	} else if (strcmp(event, "push") == 0) {
		rc = parse_push(&p);
	} else if (strcmp(event, "pull_request") == 0) {
		rc = parse_pull_request(&p);
	} else if (strcmp(event, "issue_comment") == 0) {
		rc = parse_issue_comment(&p);
	} else if (strcmp(event, "create") == 0) {
		try_repo(&p);
		ignore(&p, "create event: new branches are deployed by their push event");
	} else if (strcmp(event, "delete") == 0) {
		try_repo(&p);
		ignore(&p, "delete event: deleted branches are undeployed by their push event");
	} else {
		try_repo(&p);
		ignore(&p, "event \"%s\" is not handled", event);
	}
	json_decref(p.root);
	if (rc) /* never hand out a half-filled action */
		memset(out, 0, sizeof(*out));
	return rc;
}
