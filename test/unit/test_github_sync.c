/* github_sync's decision (github_sync_plan): hand-written cases for each
 * rule, then a model check against a brute-force reading of the rules on
 * 30,000 random (GitHub state, index state) pairs, with the safety
 * properties checked on their own; and the literal-repo test. */
#include "build.h"
#include "config.h"
#include "github_client.h"
#include "github_sync.h"
#include "util.h"
#include "unit.h"

#include <stdint.h>

#define REPO "acme/addons"

static const char *SHAS[] = {
	"1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222",
	"3333333333333333333333333333333333333333", "4444444444444444444444444444444444444444",
};

/* ---- fixtures ---- */

struct world {
	struct github_list_item branches[16], pulls[16];
	size_t n_branches, n_pulls;
	struct build *builds[16];
	size_t n_builds;
	char wanted[8][16]; /* target branches [[repos]] supports; "*" = all */
	size_t n_wanted;
	char sticky[8][16];
	size_t n_sticky;
	const char *gone_branches[8];
	size_t n_gone_branches;
	long gone_prs[8];
	size_t n_gone_prs;
	struct github_sync_input in;
};

static void w_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	w->in.repo = REPO;
	w->in.branches_complete = w->in.pulls_complete = true;
	w->in.listed_ms = 1000;
	snprintf(w->wanted[w->n_wanted++], 16, "*");
}

static void w_branch(struct world *w, const char *name, const char *sha)
{
	struct github_list_item *it = &w->branches[w->n_branches++];
	it->name = (char *)name;
	it->base = (char *)"";
	snprintf(it->sha, sizeof(it->sha), "%s", sha);
}

static void w_pull(struct world *w, long pr, const char *base, const char *sha)
{
	struct github_list_item *it = &w->pulls[w->n_pulls++];
	it->pr = pr;
	it->base = (char *)base;
	snprintf(it->sha, sizeof(it->sha), "%s", sha);
}

static struct build *w_build(struct world *w, const char *name, const char *repo,
			     const char *target, int pr, const char *sha, int64_t created_ms,
			     bool deleting)
{
	struct build_commit c = {repo, target, pr, sha};
	char dep[80];
	snprintf(dep, sizeof(dep), "%s-odoo", name);
	struct build *b = build_new(name, dep, &c, NULL, NULL);
	b->created_ms = created_ms;
	b->created = created_ms / 1000;
	b->deleting = deleting;
	w->builds[w->n_builds++] = b;
	return b;
}

static void w_free(struct world *w)
{
	for (size_t i = 0; i < w->n_builds; i++)
		build_free(w->builds[i]);
}

static bool w_wanted(const char *repo, const char *target, void *data)
{
	struct world *w = data;
	if (strcmp(repo, REPO) != 0)
		return false;
	for (size_t i = 0; i < w->n_wanted; i++)
		if (strcmp(w->wanted[i], "*") == 0 || strcmp(w->wanted[i], target) == 0)
			return true;
	return false;
}

static bool w_sticky(const char *repo, const char *branch, void *data)
{
	struct world *w = data;
	for (size_t i = 0; i < w->n_sticky; i++)
		if (strcmp(repo, REPO) == 0 && strcmp(w->sticky[i], branch) == 0)
			return true;
	return false;
}

static void w_plan(struct world *w, struct github_sync_plan *out)
{
	w->in.branches = w->branches;
	w->in.n_branches = w->n_branches;
	w->in.pulls = w->pulls;
	w->in.n_pulls = w->n_pulls;
	w->in.builds = (const struct build *const *)w->builds;
	w->in.n_builds = w->n_builds;
	w->in.wanted = w_wanted;
	w->in.sticky = w_sticky;
	w->in.data = w;
	w->in.gone_branches = w->gone_branches;
	w->in.n_gone_branches = w->n_gone_branches;
	w->in.gone_prs = w->gone_prs;
	w->in.n_gone_prs = w->n_gone_prs;
	memset(out, 0, sizeof(*out));
	github_sync_plan(&w->in, out);
}

static bool has_undeploy(const struct github_sync_plan *p, const char *name)
{
	for (size_t i = 0; i < p->n_undeploys; i++)
		if (strcmp(p->undeploys[i], name) == 0)
			return true;
	return false;
}

/* ---- the rules, one by one ---- */

static void test_missing_heads_deployed(void)
{
	struct world w;
	w_init(&w);
	w_branch(&w, "16.0", SHAS[1]);
	w_branch(&w, "17.0", SHAS[2]); /* no build at all */
	w_pull(&w, 7, "16.0", SHAS[3]);
	w_build(&w, "b1", REPO, "16.0", 0, SHAS[0], 500, false); /* a missed push */
	w_build(&w, "b2", "other/repo", "17.0", 0, SHAS[2], 500, false); /* other repo */
	struct github_sync_plan p;
	w_plan(&w, &p);
	CHECK_INT(p.n_deploys, 3);
	CHECK_STR(p.deploys[0].target_branch, "16.0");
	CHECK_STR(p.deploys[0].git_commit, SHAS[1]);
	CHECK_INT(p.deploys[0].pr, 0);
	CHECK_STR(p.deploys[0].repo, REPO);
	CHECK_STR(p.deploys[1].target_branch, "17.0");
	CHECK_STR(p.deploys[2].target_branch, "16.0");
	CHECK_INT(p.deploys[2].pr, 7);
	CHECK_STR(p.deploys[2].git_commit, SHAS[3]);
	CHECK_INT(p.n_undeploys, 0);
	CHECK_INT(p.n_confirm_branches, 0);
	CHECK_INT(p.up_to_date, 0);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_up_to_date_and_force_push_back(void)
{
	struct world w;
	w_init(&w);
	w_branch(&w, "16.0", SHAS[0]); /* newest build: nothing */
	w_branch(&w, "17.0", SHAS[0]); /* forced back to an older commit that has a build */
	w_build(&w, "b1", REPO, "16.0", 0, SHAS[1], 100, false);
	w_build(&w, "b2", REPO, "16.0", 0, SHAS[0], 200, false);
	w_build(&w, "b3", REPO, "17.0", 0, SHAS[0], 100, false);
	w_build(&w, "b4", REPO, "17.0", 0, SHAS[1], 200, false);
	struct github_sync_plan p;
	w_plan(&w, &p);
	CHECK_INT(p.n_deploys, 0);
	CHECK_INT(p.up_to_date, 2);
	CHECK_INT(p.n_undeploys, 0);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_listing_older_than_build(void)
{
	/* a webhook deployed sha 2 after the listing was asked: the listing's
	 * sha 1 may be older and is not deployed */
	struct world w;
	w_init(&w);
	w_branch(&w, "16.0", SHAS[1]);
	w_build(&w, "b1", REPO, "16.0", 0, SHAS[0], 500, false);
	w_build(&w, "b2", REPO, "16.0", 0, SHAS[2], 1000, false);
	struct github_sync_plan p;
	w_plan(&w, &p);
	CHECK_INT(p.n_deploys, 0);
	CHECK_INT(p.left_alone, 1);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_undeploying_head_left_alone(void)
{
	struct world w;
	w_init(&w);
	w_pull(&w, 3, "16.0", SHAS[1]);
	w_build(&w, "b1", REPO, "16.0", 3, SHAS[1], 500, true);
	struct github_sync_plan p;
	w_plan(&w, &p);
	CHECK_INT(p.n_deploys, 0);
	CHECK_INT(p.left_alone, 1);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_unwanted_and_invalid(void)
{
	struct world w;
	w_init(&w);
	snprintf(w.wanted[0], 16, "16.0");
	w_branch(&w, "feature", SHAS[1]); /* not a supported branch */
	w_branch(&w, "16.0", "");         /* head unknown */
	w_pull(&w, 4, "feature", SHAS[2]); /* a PR into an unsupported branch */
	w_pull(&w, 5, "", SHAS[2]);        /* base unknown */
	w_build(&w, "b1", REPO, "16.0", 0, SHAS[0], 10, false);
	w_build(&w, "b2", REPO, "16.0", 5, SHAS[0], 10, false);
	struct github_sync_plan p;
	w_plan(&w, &p);
	CHECK_INT(p.n_deploys, 0);
	/* listed (even with an unknown head): not gone */
	CHECK_INT(p.n_undeploys, 0);
	CHECK_INT(p.n_confirm_branches, 0);
	CHECK_INT(p.n_confirm_prs, 0);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_shifted_pages(void)
{
	struct world w;
	w_init(&w);
	w_branch(&w, "a", SHAS[1]);
	w_branch(&w, "a", SHAS[1]); /* the same twice: one deploy */
	w_branch(&w, "b", SHAS[1]);
	w_branch(&w, "b", SHAS[2]); /* two heads: left alone */
	w_pull(&w, 9, "a", SHAS[3]);
	w_pull(&w, 9, "b", SHAS[3]); /* retargeted while listed: left alone */
	struct github_sync_plan p;
	w_plan(&w, &p);
	CHECK_INT(p.n_deploys, 1);
	CHECK_STR(p.deploys[0].target_branch, "a");
	CHECK_INT(p.left_alone, 2);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_deleted_branch(void)
{
	struct world w;
	w_init(&w);
	w_branch(&w, "16.0", SHAS[0]);
	w_build(&w, "b1", REPO, "16.0", 0, SHAS[0], 100, false);
	w_build(&w, "b2", REPO, "gone", 0, SHAS[1], 100, false);
	w_build(&w, "b3", REPO, "gone", 0, SHAS[2], 200, false);
	w_build(&w, "b4", REPO, "gone", 0, SHAS[3], 1500, false); /* newer than the listing */
	w_build(&w, "b5", REPO, "gone", 7, SHAS[3], 100, false);  /* a PR into it: not a branch build */
	struct github_sync_plan p;
	w_plan(&w, &p);
	/* absent: to confirm first */
	CHECK_INT(p.n_undeploys, 0);
	CHECK_INT(p.n_confirm_branches, 1);
	CHECK_STR(p.confirm_branches[0], "gone");
	github_sync_plan_free(&p);
	/* confirmed (404) */
	w.gone_branches[w.n_gone_branches++] = "gone";
	w_plan(&w, &p);
	CHECK_INT(p.n_confirm_branches, 0);
	CHECK_INT(p.n_undeploys, 2);
	CHECK(has_undeploy(&p, "b2"));
	CHECK(has_undeploy(&p, "b3"));
	github_sync_plan_free(&p);
	/* a sticky branch keeps its newest build (b4 is newer than the
	 * listing, so b3 is the newest that counts... the newest is b4) */
	snprintf(w.sticky[w.n_sticky++], 16, "gone");
	w_plan(&w, &p);
	CHECK_INT(p.n_undeploys, 2);
	CHECK(!has_undeploy(&p, "b4"));
	github_sync_plan_free(&p);
	w.builds[3]->deleting = true; /* b4 goes: b3 is the newest, kept */
	w_plan(&w, &p);
	CHECK_INT(p.n_undeploys, 1);
	CHECK(has_undeploy(&p, "b2"));
	github_sync_plan_free(&p);
	/* an incomplete listing undeploys nothing and asks nothing */
	w.in.branches_complete = false;
	w_plan(&w, &p);
	CHECK_INT(p.n_undeploys, 0);
	CHECK_INT(p.n_confirm_branches, 0);
	github_sync_plan_free(&p);
	/* GitHub lists it again: never undeployed, whatever the confirmation */
	w.in.branches_complete = true;
	w_branch(&w, "gone", SHAS[3]);
	w_plan(&w, &p);
	CHECK_INT(p.n_undeploys, 0);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_closed_pr(void)
{
	struct world w;
	w_init(&w);
	w_pull(&w, 2, "16.0", SHAS[0]);
	w_build(&w, "b1", REPO, "16.0", 2, SHAS[0], 100, false);
	w_build(&w, "b2", REPO, "16.0", 3, SHAS[1], 100, false);
	w_build(&w, "b3", REPO, "15.0", 3, SHAS[2], 200, false); /* before a retarget */
	w_build(&w, "b4", REPO, "16.0", 4, SHAS[2], 5000, false); /* opened after the listing */
	struct github_sync_plan p;
	w_plan(&w, &p);
	CHECK_INT(p.n_confirm_prs, 1);
	CHECK_INT(p.confirm_prs[0], 3);
	CHECK_INT(p.n_undeploys, 0);
	github_sync_plan_free(&p);
	w.gone_prs[w.n_gone_prs++] = 3;
	w.gone_prs[w.n_gone_prs++] = 2; /* a stale answer: PR 2 is listed open */
	w_plan(&w, &p);
	CHECK_INT(p.n_undeploys, 2);
	CHECK_STR(p.undeploys[0], "b2");
	CHECK_STR(p.undeploys[1], "b3");
	github_sync_plan_free(&p);
	w.in.pulls_complete = false;
	w_plan(&w, &p);
	CHECK_INT(p.n_undeploys, 0);
	CHECK_INT(p.n_confirm_prs, 0);
	github_sync_plan_free(&p);
	w_free(&w);
}

static void test_literal_repo(void)
{
	char out[BUILD_REPO_MAX + 1];
	CHECK(github_sync_literal_repo("OCA/server-tools", out));
	CHECK_STR(out, "oca/server-tools");
	CHECK(github_sync_literal_repo("^acme/web.site$", out));
	CHECK_STR(out, "acme/web.site");
	CHECK(!github_sync_literal_repo("oca/.*", out));
	CHECK(!github_sync_literal_repo("(oca|acme)/x", out));
	CHECK(!github_sync_literal_repo("oca", out));
	CHECK(!github_sync_literal_repo("a/b/c", out));
	CHECK(!github_sync_literal_repo("oca/..", out));
	CHECK(!github_sync_literal_repo("", out));
	CHECK(!github_sync_literal_repo("^$", out));
	CHECK(!github_sync_literal_repo("oca/x+", out));
}

/* ---- [github] sync_interval, sync_repos ---- */

#define BASE "[kubernetes]\nnamespace = \"builds\"\n[build]\ndomain = \"rb.example.com\"\n"

static struct config *load(const char *github, char *err, size_t errlen)
{
	char text[1024];
	snprintf(text, sizeof(text), BASE "[github]\n%s\n", github);
	/* kubefiles = "kubefiles": the repository's, from the test's directory */
	return config_load_string(text, "t.toml", NULL, err, errlen);
}

static void test_config(void)
{
	char err[1024];
	unsetenv(CONFIG_ENV_GITHUB_TOKEN);
	struct config *c = load("", err, sizeof(err));
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK(c->github.sync_interval == 0); /* no token: off */
	CHECK_INT(c->github.n_sync_repos, 0);
	config_free(c);
	c = load("token = \"t\"", err, sizeof(err));
	CHECK(c && c->github.sync_interval == 600);
	config_free(c);
	c = load("token = \"t\"\nsync_interval = 0", err, sizeof(err));
	CHECK(c && c->github.sync_interval == 0);
	config_free(c);
	c = load("sync_interval = 90.5\nsync_repos = [\"OCA/Server-Tools\", \"acme/x\", "
		 "\"oca/server-tools\"]", err, sizeof(err));
	CHECK(c && c->github.sync_interval == 90.5);
	if (c) {
		CHECK_INT(c->github.n_sync_repos, 2);
		CHECK_STR(c->github.sync_repos[0], "oca/server-tools");
		CHECK_STR(c->github.sync_repos[1], "acme/x");
	}
	config_free(c);
	static const char *const bad[][2] = {
		{"sync_interval = -1", "t.toml:6: github.sync_interval: -1 is out of range"},
		{"sync_interval = 0.5", "t.toml:6: github.sync_interval: 0.5 is out of range"},
		{"sync_interval = \"10m\"", "t.toml:6: github.sync_interval: got a string"},
		{"sync_repos = \"acme/x\"", "t.toml:6: github.sync_repos: got a string"},
		{"sync_repos = [\"acme\"]", "t.toml:6: github.sync_repos: entry 1 is not a repository"},
		{"sync_repos = [\"acme/x\", 3]", "t.toml:6: github.sync_repos: entry 2 is not"},
		{"sync_interal = 3", "t.toml:6: github.sync_interal: unknown key, did you mean \"sync_interval\"?"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = '\0';
		c = load(bad[i][0], err, sizeof(err));
		CHECK(c == NULL);
		config_free(c);
		if (strncmp(err, bad[i][1], strlen(bad[i][1])) != 0) {
			unit_failures++;
			fprintf(stderr, "  %s: got \"%s\", expected \"%s...\"\n", bad[i][0], err,
				bad[i][1]);
		}
	}
}

/* ---- the model ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static const char *BRANCHES[] = {"a", "b", "c", "d"};
#define NB 4
#define NPR 4 /* PRs 1..4 */

static void random_world(struct world *w)
{
	w_init(w);
	w->in.branches_complete = rnd(4) != 0;
	w->in.pulls_complete = rnd(4) != 0;
	w->in.listed_ms = 1000 + rnd(10) * 100;
	w->n_wanted = 0;
	if (rnd(3) == 0)
		snprintf(w->wanted[w->n_wanted++], 16, "*");
	else
		for (size_t i = 0; i < NB; i++)
			if (rnd(3))
				snprintf(w->wanted[w->n_wanted++], 16, "%s", BRANCHES[i]);
	for (size_t i = 0; i < NB; i++)
		if (rnd(4) == 0)
			snprintf(w->sticky[w->n_sticky++], 16, "%s", BRANCHES[i]);
	size_t nb = rnd(7);
	for (size_t i = 0; i < nb; i++)
		w_branch(w, BRANCHES[rnd(NB)], rnd(8) ? SHAS[rnd(4)] : "");
	size_t np = rnd(6);
	for (size_t i = 0; i < np; i++)
		w_pull(w, 1 + rnd(NPR), rnd(8) ? BRANCHES[rnd(2)] : "", rnd(8) ? SHAS[rnd(4)] : "");
	size_t n = rnd(10);
	for (size_t i = 0; i < n; i++) {
		char name[16];
		snprintf(name, sizeof(name), "b%zu", i);
		int pr = rnd(2) ? 0 : (int)(1 + rnd(NPR));
		w_build(w, name, rnd(8) ? (rnd(2) ? REPO : "ACME/Addons") : "other/repo",
			BRANCHES[rnd(pr ? 2 : NB)], pr, SHAS[rnd(4)], 500 + rnd(12) * 100,
			rnd(5) == 0);
	}
	for (size_t i = 0; i < NB; i++)
		if (rnd(2))
			w->gone_branches[w->n_gone_branches++] = BRANCHES[i];
	for (long pr = 1; pr <= NPR; pr++)
		if (rnd(2))
			w->gone_prs[w->n_gone_prs++] = pr;
}

static bool mine(const struct build *b)
{
	return strcasecmp(b->commit.repo, REPO) == 0;
}

/* The listing's view of a branch (pr 0) or PR: how often it is listed,
 * whether consistently, and its (base, sha). */
struct seen {
	int count;
	bool consistent;
	const char *base, *sha;
};

static struct seen seen_of(const struct world *w, const char *branch, long pr)
{
	struct seen s = {0, true, NULL, NULL};
	const struct github_list_item *items = pr ? w->pulls : w->branches;
	size_t n = pr ? w->n_pulls : w->n_branches;
	for (size_t i = 0; i < n; i++) {
		if (pr ? items[i].pr != pr : strcmp(items[i].name, branch) != 0)
			continue;
		const char *base = pr ? items[i].base : branch;
		if (s.count++ == 0) {
			s.base = base;
			s.sha = items[i].sha;
		} else if (strcmp(s.base, base) != 0 || strcmp(s.sha, items[i].sha) != 0) {
			s.consistent = false;
		}
	}
	return s;
}

static bool model_deploy(const struct world *w, const char *target, long pr, const char *sha,
			 size_t *up_to_date, size_t *left_alone)
{
	if (!w_wanted(REPO, target, (void *)w))
		return false;
	for (size_t i = 0; i < w->n_builds; i++) {
		const struct build *b = w->builds[i];
		if (mine(b) && !b->deleting && b->commit.pr == pr &&
		    !strcmp(b->commit.target_branch, target) && !strcmp(b->commit.git_commit, sha)) {
			(*up_to_date)++;
			return false;
		}
	}
	for (size_t i = 0; i < w->n_builds; i++) {
		const struct build *b = w->builds[i];
		if (!mine(b) || b->commit.pr != pr || strcmp(b->commit.target_branch, target))
			continue;
		if ((b->deleting && !strcmp(b->commit.git_commit, sha)) ||
		    (!b->deleting && b->created_ms >= w->in.listed_ms)) {
			(*left_alone)++;
			return false;
		}
	}
	return true;
}

static bool in_list(const char *const *l, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(l[i], s))
			return true;
	return false;
}

static void model_check_one(struct world *w)
{
	struct github_sync_plan p;
	w_plan(w, &p);

	/* deploys */
	size_t up = 0, alone = 0, expect_deploys = 0;
	for (size_t bi = 0; bi < NB; bi++) {
		struct seen s = seen_of(w, BRANCHES[bi], 0);
		if (!s.count)
			continue;
		if (!s.consistent) {
			alone++;
			continue;
		}
		bool want = s.sha[0] && model_deploy(w, BRANCHES[bi], 0, s.sha, &up, &alone);
		bool found = false;
		for (size_t i = 0; i < p.n_deploys; i++)
			if (p.deploys[i].pr == 0 && !strcmp(p.deploys[i].target_branch, BRANCHES[bi])) {
				CHECK(!found);
				found = true;
				CHECK_STR(p.deploys[i].git_commit, s.sha);
			}
		CHECK_INT(found, want);
		expect_deploys += want;
	}
	for (long pr = 1; pr <= NPR; pr++) {
		struct seen s = seen_of(w, NULL, pr);
		if (!s.count)
			continue;
		if (!s.consistent) {
			alone++;
			continue;
		}
		bool want = s.sha[0] && s.base[0] && model_deploy(w, s.base, pr, s.sha, &up, &alone);
		bool found = false;
		for (size_t i = 0; i < p.n_deploys; i++)
			if (p.deploys[i].pr == pr) {
				CHECK(!found);
				found = true;
				CHECK_STR(p.deploys[i].git_commit, s.sha);
				CHECK_STR(p.deploys[i].target_branch, s.base);
			}
		CHECK_INT(found, want);
		expect_deploys += want;
	}
	CHECK_INT(p.n_deploys, expect_deploys);
	CHECK_INT(p.up_to_date, up);
	CHECK_INT(p.left_alone, alone);

	/* undeploys and confirmations, build by build */
	size_t expect_undeploys = 0;
	for (size_t i = 0; i < w->n_builds; i++) {
		const struct build *b = w->builds[i];
		bool want = false;
		if (mine(b) && !b->deleting && b->created_ms < w->in.listed_ms) {
			if (b->commit.pr == 0) {
				const char *t = b->commit.target_branch;
				bool newest = true;
				for (size_t j = 0; j < w->n_builds; j++) {
					const struct build *o = w->builds[j];
					if (o != b && mine(o) && !o->deleting && o->commit.pr == 0 &&
					    !strcmp(o->commit.target_branch, t) &&
					    (o->created_ms > b->created_ms ||
					     (o->created_ms == b->created_ms && strcmp(o->name, b->name) > 0)))
						newest = false;
				}
				want = w->in.branches_complete && seen_of(w, t, 0).count == 0 &&
				       in_list(w->gone_branches, w->n_gone_branches, t) &&
				       !(newest && w_sticky(REPO, t, w));
			} else {
				bool gone = false;
				for (size_t k = 0; k < w->n_gone_prs; k++)
					gone |= w->gone_prs[k] == b->commit.pr;
				want = w->in.pulls_complete && seen_of(w, NULL, b->commit.pr).count == 0 &&
				       gone;
			}
		}
		CHECK_INT(has_undeploy(&p, b->name), want);
		expect_undeploys += want;
	}
	CHECK_INT(p.n_undeploys, expect_undeploys);
	for (size_t i = 1; i < p.n_undeploys; i++)
		CHECK(strcmp(p.undeploys[i - 1], p.undeploys[i]) < 0);
	/* a confirmation is asked exactly for what would be undeployed were
	 * it confirmed */
	for (size_t bi = 0; bi < NB; bi++) {
		const char *t = BRANCHES[bi];
		bool asked = in_list(p.confirm_branches, p.n_confirm_branches, t);
		bool would = false;
		if (w->in.branches_complete && seen_of(w, t, 0).count == 0 &&
		    !in_list(w->gone_branches, w->n_gone_branches, t)) {
			const struct build *keep = NULL;
			for (size_t j = 0; j < w->n_builds; j++) {
				const struct build *o = w->builds[j];
				if (mine(o) && !o->deleting && o->commit.pr == 0 &&
				    !strcmp(o->commit.target_branch, t) &&
				    (!keep || o->created_ms > keep->created_ms ||
				     (o->created_ms == keep->created_ms && strcmp(o->name, keep->name) > 0)))
					keep = o;
			}
			if (!w_sticky(REPO, t, w))
				keep = NULL;
			for (size_t j = 0; j < w->n_builds; j++) {
				const struct build *o = w->builds[j];
				if (o != keep && mine(o) && !o->deleting && o->commit.pr == 0 &&
				    !strcmp(o->commit.target_branch, t) && o->created_ms < w->in.listed_ms)
					would = true;
			}
		}
		CHECK_INT(asked, would);
	}
	for (long pr = 1; pr <= NPR; pr++) {
		bool asked = false, would = false, gone = false;
		for (size_t k = 0; k < p.n_confirm_prs; k++)
			asked |= p.confirm_prs[k] == pr;
		for (size_t k = 0; k < w->n_gone_prs; k++)
			gone |= w->gone_prs[k] == pr;
		if (w->in.pulls_complete && seen_of(w, NULL, pr).count == 0 && !gone)
			for (size_t j = 0; j < w->n_builds; j++) {
				const struct build *o = w->builds[j];
				if (mine(o) && !o->deleting && o->commit.pr == pr &&
				    o->created_ms < w->in.listed_ms)
					would = true;
			}
		CHECK_INT(asked, would);
	}

	/* safety, stated on its own */
	for (size_t i = 0; i < p.n_undeploys; i++) {
		const struct build *b = NULL;
		for (size_t j = 0; j < w->n_builds; j++)
			if (!strcmp(w->builds[j]->name, p.undeploys[i]))
				b = w->builds[j];
		CHECK(b != NULL);
		if (!b)
			continue;
		CHECK(mine(b));
		CHECK(!b->deleting);
		CHECK(b->created_ms < w->in.listed_ms);
		if (b->commit.pr) {
			CHECK(w->in.pulls_complete);
			CHECK_INT(seen_of(w, NULL, b->commit.pr).count, 0);
		} else {
			CHECK(w->in.branches_complete);
			CHECK_INT(seen_of(w, b->commit.target_branch, 0).count, 0);
		}
	}
	for (size_t i = 0; i < p.n_deploys; i++) {
		CHECK(build_valid_commit(&p.deploys[i]));
		for (size_t j = 0; j < w->n_builds; j++) {
			const struct build *b = w->builds[j];
			if (mine(b) && b->commit.pr == p.deploys[i].pr &&
			    !strcmp(b->commit.target_branch, p.deploys[i].target_branch)) {
				CHECK(strcmp(b->commit.git_commit, p.deploys[i].git_commit) != 0);
				CHECK(b->deleting || b->created_ms < w->in.listed_ms);
			}
		}
	}
	github_sync_plan_free(&p);
}

static void test_model(void)
{
	int before = unit_failures;
	for (int i = 0; i < 30000 && unit_failures == before; i++) {
		struct world w;
		random_world(&w);
		model_check_one(&w);
		if (unit_failures != before)
			fprintf(stderr, "  model: case %d failed\n", i);
		w_free(&w);
	}
}

int main(void)
{
	RUN(test_missing_heads_deployed);
	RUN(test_up_to_date_and_force_push_back);
	RUN(test_listing_older_than_build);
	RUN(test_undeploying_head_left_alone);
	RUN(test_unwanted_and_invalid);
	RUN(test_shifted_pages);
	RUN(test_deleted_branch);
	RUN(test_closed_pr);
	RUN(test_literal_repo);
	RUN(test_config);
	RUN(test_model);
	return UNIT_DONE();
}
