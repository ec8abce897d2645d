/* Missed-webhook recovery: a periodic reconciliation with GitHub.
 *
 * At start-up (once the controller is ready, and leading when leader
 * election is on: a standby never syncs) and then every interval, the
 * sync reads, for each repository to look at, the complete list of its
 * branches and of its open pull requests (github_client_list: conditional
 * requests, pagination), compares their heads with the builds of the index,
 * and asks the controller to deploy the heads that have no build and to
 * undeploy the builds of branches and PRs that GitHub says are gone.
 *
 * Which repositories: the union, deduplicated, of
 *   - the repositories of the builds in the index whose name matches the
 *     repo regex of some [[repos]] entry,
 *   - the repositories of [[sticky_branches]],
 *   - [github] sync_repos (an explicit list of "owner/repo"),
 *   - every [[repos]] repo pattern that is a literal name (only letters,
 *     digits, '-', '_', '.', one '/'; an optional ^ and $ around it).
 * A pattern such as "oca/.*" cannot be listed (GitHub has no "repositories
 * matching a regex" call that a repository token may use): its repositories
 * are found through their builds, or named in sync_repos.
 *
 * Cost, per repository and sync: ceil(branches / 100) + ceil(open PRs / 100)
 * listing requests (at least 2), each answered 304 (free against GitHub's
 * rate limit) when that page has not changed (a last page of exactly 100
 * entries is read again: a new page may follow it); plus one GET per branch
 * or PR whose builds are about to be undeployed (to confirm it is gone),
 * once.
 * Requests are sent one at a time. The sync stops early, and starts again
 * after the reset, when the remaining rate limit falls below a reserve (a
 * tenth of the limit, at least 10) kept for commit statuses and triggers,
 * or when GitHub rate-limits it.
 *
 * The decision is a pure function (github_sync_plan) of what GitHub listed
 * and the builds of the index; see its comment for the rules. */
#ifndef RUNBOAT_GITHUB_SYNC_H
#define RUNBOAT_GITHUB_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "build.h"
#include "github_client.h"

struct config;
struct controller;
struct index;
struct github_sync;

/* What the sync works with; all borrowed, outliving the sync. */
struct github_sync_deps {
	uv_loop_t *loop;
	const struct config *cfg;
	struct index *idx;
	struct controller *controller;
	struct github_client *github;
};

/* Tunables; zero means the default. */
struct github_sync_opts {
	uint64_t interval_ms;   /* between the end of a sync and the next: 600000 */
	uint64_t retry_ms;      /* first delay after a failed sync: 30000, doubling up
				 * to interval_ms */
	uint64_t ready_poll_ms; /* how often to look whether the controller is ready: 500 */
};

struct github_sync_stats {
	uint64_t syncs;         /* syncs finished */
	uint64_t failed_syncs;  /* of which with a repository not read completely */
	uint64_t deploys;       /* heads asked to be deployed */
	uint64_t undeploys;     /* builds asked to be undeployed */
	uint64_t requests;      /* API requests sent */
	uint64_t not_modified;  /* of which answered 304 */
	bool running;           /* a sync is in progress */
};

/* A new sync, not started; NULL (nothing to do) when deps->github is NULL.
 * Owned by the caller: github_sync_free. */
struct github_sync *github_sync_new(const struct github_sync_deps *d,
				    const struct github_sync_opts *o);
/* Waits for the controller to be ready, syncs, then every interval. */
void github_sync_start(struct github_sync *s);
/* Stops: nothing more is asked of the controller. The object is freed once
 * its timer is closed and its request in flight (if any) has called back,
 * which github_client_close makes happen. NULL is allowed. Must be called
 * before the controller and the GitHub client are freed. */
void github_sync_free(struct github_sync *s);
void github_sync_get_stats(const struct github_sync *s, struct github_sync_stats *out);

/* ---- the decision (pure) ---- */

/* Everything the decision looks at for one repository. */
struct github_sync_input {
	const char *repo; /* lowercase "owner/repo" */
	const struct github_list_item *branches;
	size_t n_branches;
	bool branches_complete; /* every page of the branches was read */
	const struct github_list_item *pulls;
	size_t n_pulls;
	bool pulls_complete; /* every page of the open PRs was read */
	/* builds (borrowed); those of other repositories are ignored */
	const struct build *const *builds;
	size_t n_builds;
	/* wall-clock ms at which the first listing request was sent */
	int64_t listed_ms;
	/* does [[repos]] support (repo, target branch)? is it a sticky branch? */
	bool (*wanted)(const char *repo, const char *target_branch, void *data);
	bool (*sticky)(const char *repo, const char *branch, void *data);
	void *data;
	/* what GitHub answered when asked one by one: branches that do not
	 * exist (404), PRs that are closed (or 404) */
	const char *const *gone_branches;
	size_t n_gone_branches;
	const long *gone_prs;
	size_t n_gone_prs;
};

/* What to do. Strings are borrowed from the input (listing and builds). */
struct github_sync_plan {
	struct build_commit *deploys; /* heads to deploy, in listing order */
	size_t n_deploys;
	const char **confirm_branches; /* ask GitHub before undeploying */
	size_t n_confirm_branches;
	long *confirm_prs;
	size_t n_confirm_prs;
	const char **undeploys; /* build names, sorted */
	size_t n_undeploys;
	size_t up_to_date; /* heads that already have their build */
	size_t left_alone; /* heads not deployed although unbuilt (see rules) */
};

/* The rules, for one repository. A "target" is (target branch, PR): a
 * branch's builds, or a PR's builds for one base branch. Builds being
 * undeployed (deleting) count only where said.
 *
 * Deploy the head H (sha) of a listed branch B (target (B, 0)) or open PR N
 * with base T (target (T, N)), when [[repos]] supports (repo, B or T), and
 *   1. no build of the target has sha H (a head that has a build, even one
 *      older than the target's newest after a force-push back, is served by
 *      that build: the controller never makes a second build of a commit);
 *   2. no build of H for the target is being undeployed (an undeploy in
 *      progress, e.g. a PR closed after the listing, is not fought);
 *   3. the target's newest build was created before listed_ms (otherwise a
 *      webhook brought a build newer than the listing: the listing may be
 *      stale, and deploying its head could deploy an older commit);
 *   4. the listing is consistent: the same branch or PR listed twice (pages
 *      shifted while they were read) with another head or base is left
 *      alone.
 * A head with an invalid sha or base is never deployed. Rules 2-4 count in
 * left_alone, rule 1 in up_to_date.
 *
 * Undeploy, only from a complete listing and only builds created before
 * listed_ms:
 *   - the branch builds of B when B is absent from the complete branch
 *     listing and B is in gone_branches, except the newest build of B when
 *     (repo, B) is sticky;
 *   - the builds of PR N (any base) when N is absent from the complete open
 *     PR listing and N is in gone_prs.
 * Absent but not (yet) in gone_*: listed in confirm_branches / confirm_prs
 * (only when there is something to undeploy), for the caller to ask GitHub
 * one by one and call again with the answers.
 * Fills *out (zero it first; free with github_sync_plan_free). */
void github_sync_plan(const struct github_sync_input *in, struct github_sync_plan *out);
void github_sync_plan_free(struct github_sync_plan *p);

/* Whether a [[repos]] repo pattern names one repository literally; if so,
 * copies it lowercased into out (BUILD_REPO_MAX + 1 bytes). */
bool github_sync_literal_repo(const char *pattern, char *out);

#endif
