/* GitHub webhooks: signature verification and payload parsing. Pure: no I/O,
 * no allocation visible to the caller, no logging. Everything in a webhook is
 * hostile input: sizes are bounded, types checked, and every value that may
 * reach a Kubernetes object (repo, branch, sha, PR number) is validated.
 *
 * What each delivery means (DESIGN.md, "GitHub"):
 *   ping                                     -> GITHUB_PING
 *   push refs/heads/<branch>, deleted: false -> GITHUB_DEPLOY of `after`
 *     (also for a new branch, created: true: its head is deployed)
 *   push refs/heads/<branch>, deleted: true  -> GITHUB_UNDEPLOY_BRANCH
 *   push refs/tags/...                       -> GITHUB_IGNORE
 *   pull_request opened|synchronize|reopened -> GITHUB_DEPLOY of head.sha,
 *     target base.ref; also edited with changes.base (the target changed)
 *   pull_request closed                      -> GITHUB_UNDEPLOY_PR
 *   pull_request other actions (labeled...)  -> GITHUB_IGNORE
 *   issue_comment created on a PR whose body has a line "/runboat rebuild",
 *     by an OWNER, MEMBER or COLLABORATOR     -> GITHUB_REBUILD_PR (repo, pr,
 *     user); by anyone else, or any other comment -> GITHUB_IGNORE
 *   create, delete                           -> GITHUB_IGNORE (GitHub also
 *     sends a push with created/deleted for every branch, which acts)
 *   any other event                          -> GITHUB_IGNORE */
#ifndef RUNBOAT_GITHUB_H
#define RUNBOAT_GITHUB_H

#include "validate.h"

#include <stdbool.h>
#include <stddef.h>

/* Bounds of the validated values (bytes, without the NUL). Values are
 * validated with validate.h's validate_repo/branch/sha/pr, so that what a
 * webhook yields is what the configuration, the API and a Deployment
 * accept. */
#define GITHUB_REPO_MAX VALIDATE_REPO_MAX
#define GITHUB_BRANCH_MAX VALIDATE_BRANCH_MAX
#define GITHUB_SHA_MAX VALIDATE_SHA_MAX
#define GITHUB_PR_MAX ((long)VALIDATE_PR_MAX)
/* Largest payload parsed (GitHub caps deliveries at 25 MB). */
#define GITHUB_WEBHOOK_MAX_BODY (25u << 20)
/* GitHub's limit on a commit status description, in characters. */
#define GITHUB_STATUS_DESCRIPTION_MAX 140

enum github_action_kind {
	GITHUB_IGNORE,          /* nothing to do; reason says why */
	GITHUB_PING,            /* answer 200 */
	GITHUB_DEPLOY,          /* repo, target_branch, pr (0: branch push), sha */
	GITHUB_UNDEPLOY_BRANCH, /* repo, target_branch: the branch's builds (pr 0) */
	GITHUB_UNDEPLOY_PR,     /* repo, pr, and target_branch (the PR's base) */
	GITHUB_REBUILD_PR,      /* repo, pr, user: build the PR's head again */
};

/* The command a PR comment gives to rebuild, alone on a line. */
#define GITHUB_REBUILD_COMMAND "/runboat rebuild"
/* Longest GitHub login. */
#define GITHUB_LOGIN_MAX 39

/* What a delivery asks for. Plain arrays: no ownership, copy it freely.
 * Fields that do not apply to the kind are "" or 0. */
struct github_action {
	enum github_action_kind kind;
	char repo[GITHUB_REPO_MAX + 1];            /* lowercase "owner/repo" */
	char target_branch[GITHUB_BRANCH_MAX + 1]; /* as in git, case kept */
	long pr;                                   /* 1..GITHUB_PR_MAX, 0: none */
	char sha[GITHUB_SHA_MAX + 1];              /* lowercase hex, 40 or 64, not all zeros */
	char reason[160];                          /* GITHUB_IGNORE: why, for logs */
	char user[GITHUB_LOGIN_MAX + 1];           /* GITHUB_REBUILD_PR: who asked */
};

/* Whether header (the X-Hub-Signature-256 value, "sha256=<64 hex>") is the
 * HMAC-SHA256 of body[0..len) keyed with secret. Compared in constant time.
 * False for a NULL/empty secret, a NULL header, or any malformed header
 * (missing or other prefix, wrong length, non-hex); hex digits may be in
 * either case. */
bool github_verify_signature(const char *secret, const void *body, size_t len,
			     const char *header);

/* Parses one delivery: event is the X-GitHub-Event header, body[0..len) the
 * JSON payload. Fills *out and returns 0 (the action may be GITHUB_IGNORE),
 * or returns -EINVAL with a one-line explanation in err (for a 400 answer):
 * missing event, malformed JSON, wrong types, missing fields, invalid repo,
 * branch, sha or PR number; or -EMSGSIZE when len exceeds
 * GITHUB_WEBHOOK_MAX_BODY. Unsupported events and actions are not errors. */
int github_webhook_parse(const char *event, const char *body, size_t len,
			 struct github_action *out, char *err, size_t errlen);

/* "ignore", "ping", "deploy", "undeploy-branch", "undeploy-pr", "rebuild-pr". */
const char *github_action_kind_name(enum github_action_kind kind);

/* Copies sha lowercased into out and returns true when it is a commit sha
 * (40 or 64 hex digits in either case, not all zeros; validate_sha once
 * lowercased); otherwise returns false with out "". */
bool github_sha_normalize(const char *sha, char out[GITHUB_SHA_MAX + 1]);

#endif
