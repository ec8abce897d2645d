/* The missed-webhook recovery: one pass ("sync") walks the repositories one
 * after the other; for each it lists the branches, then the open PRs, plans
 * (github_sync_plan), deploys, asks GitHub about what looks gone, plans
 * again with the answers and undeploys. At most one GitHub request of the
 * sync is in flight at any time (s->pending counts it).
 *
 * Lifetimes: github_sync_free sets `closing` and closes the timer; the
 * object is freed by whichever comes last of the timer's close callback and
 * the callback of the request in flight (the GitHub client calls it back,
 * with -ECANCELED at the latest when it is closed). */
#include "github_sync.h"

#include "backoff.h"
#include "config.h"
#include "controller.h"
#include "index.h"
#include "log.h"
#include "strmap.h"
#include "util.h"
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#define DEFAULT_INTERVAL_MS 600000
#define DEFAULT_RETRY_MS 30000
#define DEFAULT_READY_POLL_MS 500
#define MAX_REPOS 10000
#define MAX_PAUSE_MS 3600000

/* ---- the decision ---- */

static bool live(const struct build *b)
{
	return !b->deleting;
}

static bool of_target(const struct build *b, const char *target, long pr)
{
	return b->commit.pr == pr && strcmp(b->commit.target_branch, target) == 0;
}

/* a is newer than b, in the index's order (created, then name). */
static bool newer(const struct build *a, const struct build *b)
{
	if (a->created_ms != b->created_ms)
		return a->created_ms > b->created_ms;
	return strcmp(a->name, b->name) > 0;
}

static bool in_names(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return true;
	return false;
}

static bool in_prs(const long *prs, size_t n, long pr)
{
	for (size_t i = 0; i < n; i++)
		if (prs[i] == pr)
			return true;
	return false;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The map key of a listed branch or PR. */
static void item_key(const struct github_list_item *it, bool pull, struct buf *k)
{
	buf_reset(k);
	if (pull)
		buf_printf(k, "p%ld", it->pr);
	else
		buf_printf(k, "b%s", it->name);
}

/* Indexes the items of one listing by branch/PR (value: index + 1 of the
 * first occurrence); marks in conflict[] the first occurrence of a key
 * listed again with another head or base. */
static void index_items(const struct github_list_item *items, size_t n, bool pull,
			struct strmap *map, bool *conflict)
{
	struct buf k = {0};
	for (size_t i = 0; i < n; i++) {
		item_key(&items[i], pull, &k);
		void *v = strmap_get(map, k.data);
		if (!v) {
			strmap_put(map, k.data, (void *)(uintptr_t)(i + 1));
			continue;
		}
		const struct github_list_item *first = &items[(uintptr_t)v - 1];
		if (strcmp(first->sha, items[i].sha) != 0 ||
		    strcmp(first->base ? first->base : "", items[i].base ? items[i].base : "") != 0)
			conflict[(uintptr_t)v - 1] = true;
	}
	buf_free(&k);
}

static void plan_deploy(const struct github_sync_input *in, const struct build *const *r,
			size_t nr, const struct github_list_item *it, bool pull,
			struct github_sync_plan *out, size_t *cap)
{
	const char *target = pull ? it->base : it->name;
	long pr = pull ? it->pr : 0;
	if (!it->sha[0] || !target || !target[0])
		return;
	if (in->wanted && !in->wanted(in->repo, target, in->data))
		return;
	bool built = false, undeploying = false, newer_than_listing = false;
	for (size_t i = 0; i < nr; i++) {
		const struct build *b = r[i];
		if (!of_target(b, target, pr))
			continue;
		bool same = strcmp(b->commit.git_commit, it->sha) == 0;
		if (live(b) && same)
			built = true;
		if (!live(b) && same)
			undeploying = true;
		if (live(b) && b->created_ms >= in->listed_ms)
			newer_than_listing = true;
	}
	if (built) {
		out->up_to_date++;
		return;
	}
	if (undeploying || newer_than_listing) {
		out->left_alone++;
		return;
	}
	if (out->n_deploys == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		out->deploys = xrealloc(out->deploys, *cap * sizeof(*out->deploys));
	}
	out->deploys[out->n_deploys++] = (struct build_commit){
		.repo = in->repo, .target_branch = target, .pr = (int)pr, .git_commit = it->sha};
}

static void push_name(const char ***arr, size_t *n, const char *s)
{
	*arr = xrealloc(*arr, (*n + 1) * sizeof(**arr));
	(*arr)[(*n)++] = s;
}

void github_sync_plan(const struct github_sync_input *in, struct github_sync_plan *out)
{
	/* the builds of this repository */
	const struct build **r = xmalloc((in->n_builds + 1) * sizeof(*r));
	size_t nr = 0;
	for (size_t i = 0; i < in->n_builds; i++)
		if (strcasecmp(in->builds[i]->commit.repo, in->repo) == 0)
			r[nr++] = in->builds[i];

	struct strmap bmap = {0}, pmap = {0};
	bool *bconf = xcalloc(in->n_branches + 1, sizeof(bool));
	bool *pconf = xcalloc(in->n_pulls + 1, sizeof(bool));
	index_items(in->branches, in->n_branches, false, &bmap, bconf);
	index_items(in->pulls, in->n_pulls, true, &pmap, pconf);

	/* deploys: each branch / PR once, at its first occurrence */
	size_t cap = 0;
	struct buf k = {0};
	for (int pull = 0; pull < 2; pull++) {
		const struct github_list_item *items = pull ? in->pulls : in->branches;
		size_t n = pull ? in->n_pulls : in->n_branches;
		for (size_t i = 0; i < n; i++) {
			item_key(&items[i], pull, &k);
			if ((uintptr_t)strmap_get(pull ? &pmap : &bmap, k.data) != i + 1)
				continue;
			if ((pull ? pconf : bconf)[i]) {
				out->left_alone++;
				continue;
			}
			plan_deploy(in, r, nr, &items[i], pull, out, &cap);
		}
	}

	/* undeploys of branches absent from a complete listing */
	const char **names = NULL;
	size_t n_names = 0;
	for (size_t i = 0; in->branches_complete && i < nr; i++) {
		const struct build *b = r[i];
		if (!live(b) || b->commit.pr != 0)
			continue;
		const char *t = b->commit.target_branch;
		bool first = true;
		for (size_t j = 0; j < i && first; j++)
			if (live(r[j]) && r[j]->commit.pr == 0 && strcmp(r[j]->commit.target_branch, t) == 0)
				first = false;
		if (!first)
			continue;
		buf_reset(&k);
		buf_printf(&k, "b%s", t);
		if (strmap_get(&bmap, k.data))
			continue; /* listed: it exists */
		const struct build *keep = NULL;
		if (in->sticky && in->sticky(in->repo, t, in->data))
			for (size_t j = 0; j < nr; j++)
				if (live(r[j]) && of_target(r[j], t, 0) && (!keep || newer(r[j], keep)))
					keep = r[j];
		size_t before = n_names;
		for (size_t j = 0; j < nr; j++)
			if (live(r[j]) && of_target(r[j], t, 0) && r[j] != keep &&
			    r[j]->created_ms < in->listed_ms)
				push_name(&names, &n_names, r[j]->name);
		if (n_names == before)
			continue;
		if (!in_names(in->gone_branches, in->n_gone_branches, t)) {
			n_names = before; /* not confirmed yet */
			push_name(&out->confirm_branches, &out->n_confirm_branches, t);
		}
	}

	/* undeploys of PRs absent from a complete listing of the open ones */
	for (size_t i = 0; in->pulls_complete && i < nr; i++) {
		const struct build *b = r[i];
		if (!live(b) || b->commit.pr == 0)
			continue;
		long pr = b->commit.pr;
		bool first = true;
		for (size_t j = 0; j < i && first; j++)
			if (live(r[j]) && r[j]->commit.pr == pr)
				first = false;
		if (!first)
			continue;
		buf_reset(&k);
		buf_printf(&k, "p%ld", pr);
		if (strmap_get(&pmap, k.data))
			continue; /* listed: open */
		size_t before = n_names;
		for (size_t j = 0; j < nr; j++)
			if (live(r[j]) && r[j]->commit.pr == pr && r[j]->created_ms < in->listed_ms)
				push_name(&names, &n_names, r[j]->name);
		if (n_names == before)
			continue;
		if (!in_prs(in->gone_prs, in->n_gone_prs, pr)) {
			n_names = before;
			out->confirm_prs =
				xrealloc(out->confirm_prs, (out->n_confirm_prs + 1) * sizeof(long));
			out->confirm_prs[out->n_confirm_prs++] = pr;
		}
	}
	if (n_names > 1)
		qsort(names, n_names, sizeof(*names), cmp_str);
	if (!n_names) {
		free(names);
		names = NULL;
	}
	out->undeploys = names;
	out->n_undeploys = n_names;

	buf_free(&k);
	strmap_clear(&bmap, NULL);
	strmap_clear(&pmap, NULL);
	free(bconf);
	free(pconf);
	free(r);
}

void github_sync_plan_free(struct github_sync_plan *p)
{
	free(p->deploys);
	free(p->confirm_branches);
	free(p->confirm_prs);
	free(p->undeploys);
	memset(p, 0, sizeof(*p));
}

bool github_sync_literal_repo(const char *pattern, char *out)
{
	size_t n = strlen(pattern);
	const char *p = pattern;
	if (n && p[0] == '^') {
		p++;
		n--;
	}
	if (n && p[n - 1] == '$')
		n--;
	if (n == 0 || n > BUILD_REPO_MAX)
		return false;
	char buf[BUILD_REPO_MAX + 1];
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!isalnum((unsigned char)c) && !strchr("-_./", c))
			return false;
		buf[i] = (char)tolower((unsigned char)c);
	}
	buf[n] = '\0';
	if (!validate_repo(buf))
		return false;
	memcpy(out, buf, n + 1);
	return true;
}

/* ---- the passes ---- */

struct pass {
	char **repos;
	size_t n_repos, i;
	/* the repository being synced */
	int64_t listed_ms;
	struct github_list_item *branches, *pulls;
	size_t n_branches, n_pulls;
	bool branches_complete, pulls_complete;
	char **confirm_branches;
	size_t n_confirm_branches;
	long *confirm_prs;
	size_t n_confirm_prs;
	size_t i_confirm; /* branches first, then PRs */
	char **gone_branches;
	size_t n_gone_branches;
	long *gone_prs;
	size_t n_gone_prs;
	bool repo_failed;
	/* totals */
	size_t branches_seen, pulls_seen, deploys, undeploys, up_to_date, left_alone;
	size_t failed_repos;
	unsigned requests, not_modified;
	uint64_t started;
	bool stop_rate;   /* stopped early for GitHub's rate limit */
	bool stop_ready;  /* stopped early: the controller is not ready */
};

struct github_sync {
	uv_loop_t *loop;
	const struct config *cfg;
	struct index *idx;
	struct controller *controller;
	struct github_client *gh;
	uint64_t interval_ms, retry_ms, ready_poll_ms;
	uv_timer_t timer;
	struct backoff backoff;
	uint64_t rng;
	struct pass *pass;
	unsigned pending; /* GitHub callbacks to come */
	bool started, closing, timer_closed;
	struct github_sync_stats stats;
};

static void repo_next(struct github_sync *s);
static void pass_end(struct github_sync *s);

static int64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void maybe_free(struct github_sync *s)
{
	if (!s->closing || !s->timer_closed || s->pending)
		return;
	free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct github_sync *s = h->data;
	s->timer_closed = true;
	maybe_free(s);
}

static void repo_clear(struct pass *p)
{
	github_list_items_free(p->branches, p->n_branches);
	github_list_items_free(p->pulls, p->n_pulls);
	p->branches = p->pulls = NULL;
	p->n_branches = p->n_pulls = 0;
	p->branches_complete = p->pulls_complete = false;
	for (size_t i = 0; i < p->n_confirm_branches; i++)
		free(p->confirm_branches[i]);
	free(p->confirm_branches);
	p->confirm_branches = NULL;
	p->n_confirm_branches = 0;
	free(p->confirm_prs);
	p->confirm_prs = NULL;
	p->n_confirm_prs = 0;
	p->i_confirm = 0;
	for (size_t i = 0; i < p->n_gone_branches; i++)
		free(p->gone_branches[i]);
	free(p->gone_branches);
	p->gone_branches = NULL;
	p->n_gone_branches = 0;
	free(p->gone_prs);
	p->gone_prs = NULL;
	p->n_gone_prs = 0;
	p->repo_failed = false;
}

static void pass_free(struct pass *p)
{
	if (!p)
		return;
	repo_clear(p);
	for (size_t i = 0; i < p->n_repos; i++)
		free(p->repos[i]);
	free(p->repos);
	free(p);
}

/* ---- which repositories ---- */

static void add_repo(struct pass *p, const char *repo)
{
	char lower[BUILD_REPO_MAX + 1];
	size_t n = strlen(repo);
	if (n > BUILD_REPO_MAX || !validate_repo(repo) || p->n_repos >= MAX_REPOS)
		return;
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)repo[i]);
	for (size_t i = 0; i < p->n_repos; i++)
		if (strcmp(p->repos[i], lower) == 0)
			return;
	p->repos = xrealloc(p->repos, (p->n_repos + 1) * sizeof(*p->repos));
	p->repos[p->n_repos++] = xstrdup(lower);
}

static bool repo_configured(const struct config *cfg, const char *repo)
{
	for (size_t i = 0; i < cfg->n_repos; i++)
		if (regexec(&cfg->repos[i].repo_re, repo, 0, NULL, 0) == 0)
			return true;
	return false;
}

static void find_repos(struct github_sync *s, struct pass *p)
{
	const struct config *cfg = s->cfg;
	char lit[BUILD_REPO_MAX + 1];
	for (size_t i = 0; i < cfg->n_repos; i++)
		if (github_sync_literal_repo(cfg->repos[i].repo, lit))
			add_repo(p, lit);
	for (size_t i = 0; i < cfg->n_sticky_branches; i++)
		add_repo(p, cfg->sticky_branches[i].repo);
	for (size_t i = 0; i < cfg->github.n_sync_repos; i++)
		add_repo(p, cfg->github.sync_repos[i]);
	const char **repos = NULL;
	size_t n = index_repos(s->idx, &repos);
	for (size_t i = 0; i < n; i++) {
		char lower[BUILD_REPO_MAX + 1];
		size_t len = strlen(repos[i]);
		if (len > BUILD_REPO_MAX)
			continue;
		for (size_t k = 0; k <= len; k++)
			lower[k] = (char)tolower((unsigned char)repos[i][k]);
		if (repo_configured(cfg, lower))
			add_repo(p, lower);
	}
	free(repos);
	if (p->n_repos > 1)
		qsort(p->repos, p->n_repos, sizeof(*p->repos), cmp_str);
}

/* ---- acting ---- */

static bool wanted(const char *repo, const char *target, void *data)
{
	struct github_sync *s = data;
	return config_find_repo(s->cfg, repo, target) != NULL;
}

static bool sticky(const char *repo, const char *branch, void *data)
{
	struct github_sync *s = data;
	return config_is_sticky(s->cfg, repo, branch);
}

/* The decision on the repository being synced, from the index as it is
 * now. out must be freed (github_sync_plan_free); *builds too. */
static void plan_now(struct github_sync *s, struct github_sync_plan *out,
		     const struct build ***builds)
{
	struct pass *p = s->pass;
	struct index_filter f = {.repo = p->repos[p->i]};
	size_t nb = index_list(s->idx, &f, INDEX_SORT_ASC, builds);
	struct github_sync_input in = {
		.repo = p->repos[p->i],
		.branches = p->branches,
		.n_branches = p->n_branches,
		.branches_complete = p->branches_complete,
		.pulls = p->pulls,
		.n_pulls = p->n_pulls,
		.pulls_complete = p->pulls_complete,
		.builds = *builds,
		.n_builds = nb,
		.listed_ms = p->listed_ms,
		.wanted = wanted,
		.sticky = sticky,
		.data = s,
		.gone_branches = (const char *const *)p->gone_branches,
		.n_gone_branches = p->n_gone_branches,
		.gone_prs = p->gone_prs,
		.n_gone_prs = p->n_gone_prs,
	};
	memset(out, 0, sizeof(*out));
	github_sync_plan(&in, out);
}

/* No completion callback: the sync may be freed before the controller
 * reports, and the deploy's outcome is the controller's to retry and show. */
static int ask_deploy(struct github_sync *s, const struct build_commit *cm, char *err,
		      size_t errlen)
{
	/* a push of that branch or PR accepted after the listing was asked
	 * is newer than what the listing says: it wins */
	int64_t pending = controller_deploy_pending(s->controller, cm->repo, cm->target_branch, cm->pr);
	if (pending && pending >= s->pass->listed_ms) {
		snprintf(err, errlen, "left alone: a newer push of it is being deployed");
		return 1;
	}
	return controller_deploy(s->controller, cm, NULL, NULL, err, errlen);
}

static void do_deploys(struct github_sync *s, const struct github_sync_plan *pl)
{
	struct pass *p = s->pass;
	for (size_t i = 0; i < pl->n_deploys; i++) {
		const struct build_commit *cm = &pl->deploys[i];
		char err[512];
		err[0] = '\0';
		int rc = ask_deploy(s, cm, err, sizeof(err));
		if (cm->pr)
			log_info("github sync: %s PR %d (into %s): head %.12s has no build, deploy: %s",
				 cm->repo, cm->pr, cm->target_branch, cm->git_commit,
				 rc < 0 ? err : err[0] ? err : "asked");
		else
			log_info("github sync: %s branch %s: head %.12s has no build, deploy: %s",
				 cm->repo, cm->target_branch, cm->git_commit,
				 rc < 0 ? err : err[0] ? err : "asked");
		if (rc == 0) {
			p->deploys++;
			s->stats.deploys++;
		}
	}
}

static void do_undeploys(struct github_sync *s, const struct github_sync_plan *pl)
{
	struct pass *p = s->pass;
	for (size_t i = 0; i < pl->n_undeploys; i++) {
		const char *name = pl->undeploys[i];
		const struct build *b = index_find(s->idx, name);
		if (!b)
			continue;
		char what[BUILD_BRANCH_MAX + 64];
		if (b->commit.pr)
			snprintf(what, sizeof(what), "PR %d is closed", b->commit.pr);
		else
			snprintf(what, sizeof(what), "branch %s was deleted", b->commit.target_branch);
		char err[256] = "";
		int rc = controller_undeploy_build(s->controller, name, NULL, NULL, err, sizeof(err));
		log_info("github sync: %s: %s on GitHub, undeploy build %s: %s", p->repos[p->i], what,
			 name, rc == 0 ? "asked" : err);
		if (rc == 0) {
			p->undeploys++;
			s->stats.undeploys++;
		}
	}
}

/* ---- one repository ---- */

static void count_requests(struct github_sync *s, unsigned requests, unsigned not_modified)
{
	s->pass->requests += requests;
	s->pass->not_modified += not_modified;
	s->stats.requests += requests;
	s->stats.not_modified += not_modified;
}

/* A GitHub callback arrived; false when the sync is closing (and may have
 * been freed: return at once). */
static bool callback_begins(struct github_sync *s)
{
	s->pending--;
	if (s->closing) {
		maybe_free(s);
		return false;
	}
	return true;
}

static void repo_done(struct github_sync *s)
{
	struct pass *p = s->pass;
	if (p->repo_failed)
		p->failed_repos++;
	repo_clear(p);
	p->i++;
	repo_next(s);
}

static void undeploy_step(struct github_sync *s)
{
	struct pass *p = s->pass;
	if (p->n_gone_branches || p->n_gone_prs) {
		struct github_sync_plan pl;
		const struct build **builds = NULL;
		plan_now(s, &pl, &builds);
		do_undeploys(s, &pl);
		github_sync_plan_free(&pl);
		free(builds);
	}
	repo_done(s);
}

static void confirm_next(struct github_sync *s);

static void on_confirm(int error, const char *message, const struct github_head *head, void *data)
{
	struct github_sync *s = data;
	if (!callback_begins(s))
		return;
	struct pass *p = s->pass;
	count_requests(s, 1, 0);
	size_t k = p->i_confirm++;
	bool is_branch = k < p->n_confirm_branches;
	bool gone = error == -ENOENT || (!error && !is_branch && head && !head->open);
	if (gone && is_branch) {
		p->gone_branches = xrealloc(p->gone_branches,
					    (p->n_gone_branches + 1) * sizeof(*p->gone_branches));
		p->gone_branches[p->n_gone_branches++] = xstrdup(p->confirm_branches[k]);
	} else if (gone) {
		p->gone_prs = xrealloc(p->gone_prs, (p->n_gone_prs + 1) * sizeof(*p->gone_prs));
		p->gone_prs[p->n_gone_prs++] = p->confirm_prs[k - p->n_confirm_branches];
	} else if (error) {
		log_warn("github sync: %s: %s", p->repos[p->i], message);
		p->repo_failed = true;
		if (error == -EAGAIN) {
			p->stop_rate = true;
			p->i_confirm = p->n_confirm_branches + p->n_confirm_prs;
		}
	}
	confirm_next(s);
}

/* Asks GitHub, one by one, whether what the listings lack is really gone. */
static void confirm_next(struct github_sync *s)
{
	struct pass *p = s->pass;
	while (p->i_confirm < p->n_confirm_branches + p->n_confirm_prs) {
		size_t k = p->i_confirm;
		int rc;
		if (k < p->n_confirm_branches)
			rc = github_client_branch_head(s->gh, p->repos[p->i], p->confirm_branches[k],
						       on_confirm, s);
		else
			rc = github_client_pr_head(s->gh, p->repos[p->i],
						   p->confirm_prs[k - p->n_confirm_branches], on_confirm,
						   s);
		if (rc == 0) {
			s->pending++;
			return;
		}
		p->i_confirm++;
	}
	undeploy_step(s);
}

static void plan_step(struct github_sync *s)
{
	struct pass *p = s->pass;
	struct github_sync_plan pl;
	const struct build **builds = NULL;
	plan_now(s, &pl, &builds);
	do_deploys(s, &pl);
	p->up_to_date += pl.up_to_date;
	p->left_alone += pl.left_alone;
	p->confirm_branches = xcalloc(pl.n_confirm_branches + 1, sizeof(char *));
	for (size_t i = 0; i < pl.n_confirm_branches; i++)
		p->confirm_branches[i] = xstrdup(pl.confirm_branches[i]);
	p->n_confirm_branches = pl.n_confirm_branches;
	p->confirm_prs = xcalloc(pl.n_confirm_prs + 1, sizeof(long));
	if (pl.n_confirm_prs)
		memcpy(p->confirm_prs, pl.confirm_prs, pl.n_confirm_prs * sizeof(long));
	p->n_confirm_prs = pl.n_confirm_prs;
	github_sync_plan_free(&pl);
	free(builds);
	if (p->stop_rate) {
		/* no confirmation now: the next sync asks */
		repo_done(s);
		return;
	}
	confirm_next(s);
}

/* Keeps a copy of what a listing read. */
static void keep_listing(const struct github_listing *l, struct github_list_item **items,
			 size_t *n)
{
	*n = l->n;
	*items = l->n ? xcalloc(l->n, sizeof(**items)) : NULL;
	for (size_t i = 0; i < l->n; i++) {
		(*items)[i] = l->items[i];
		(*items)[i].name = l->items[i].name ? xstrdup(l->items[i].name) : NULL;
		(*items)[i].base = l->items[i].base ? xstrdup(l->items[i].base) : NULL;
	}
}

static void listing_failed(struct github_sync *s, int error, const char *message)
{
	struct pass *p = s->pass;
	log_warn("github sync: %s: %s", p->repos[p->i], message);
	p->repo_failed = true;
	if (error == -EAGAIN)
		p->stop_rate = true;
}

static void on_pulls(int error, const char *message, const struct github_listing *l, void *data)
{
	struct github_sync *s = data;
	if (!callback_begins(s))
		return;
	struct pass *p = s->pass;
	count_requests(s, l->requests, l->not_modified);
	keep_listing(l, &p->pulls, &p->n_pulls);
	p->pulls_complete = error == 0;
	p->pulls_seen += l->n;
	if (error)
		listing_failed(s, error, message);
	plan_step(s);
}

static void list_pulls(struct github_sync *s)
{
	struct pass *p = s->pass;
	int rc = github_client_list(s->gh, GITHUB_LIST_PULLS, p->repos[p->i], on_pulls, s);
	if (rc == 0) {
		s->pending++;
		return;
	}
	listing_failed(s, rc, rc == -EAGAIN ? "open pull requests not listed: rate limited"
					    : "open pull requests not listed");
	plan_step(s);
}

static void on_branches(int error, const char *message, const struct github_listing *l,
			void *data)
{
	struct github_sync *s = data;
	if (!callback_begins(s))
		return;
	struct pass *p = s->pass;
	count_requests(s, l->requests, l->not_modified);
	keep_listing(l, &p->branches, &p->n_branches);
	p->branches_complete = error == 0;
	p->branches_seen += l->n;
	if (error)
		listing_failed(s, error, message);
	if (p->stop_rate)
		plan_step(s);
	else
		list_pulls(s);
}

/* The reserve of GitHub's rate limit the sync leaves to statuses and
 * triggers: true when the sync should stop now. */
static bool reserve_reached(struct github_sync *s)
{
	struct github_client_stats gs;
	github_client_get_stats(s->gh, &gs);
	if (gs.rate_remaining < 0 || gs.rate_limit <= 0)
		return false;
	long reserve = gs.rate_limit / 10 > 10 ? gs.rate_limit / 10 : 10;
	if (gs.rate_reset >= 0 && gs.rate_reset <= (int64_t)time(NULL))
		return false; /* the window has been renewed since */
	return gs.rate_remaining < reserve;
}

static void repo_next(struct github_sync *s)
{
	struct pass *p = s->pass;
	if (p->i >= p->n_repos || p->stop_rate || p->stop_ready) {
		pass_end(s);
		return;
	}
	const char *why;
	if (!controller_leading(s->controller, &why) || !controller_ready(s->controller, &why)) {
		p->stop_ready = true;
		pass_end(s);
		return;
	}
	if (reserve_reached(s)) {
		p->stop_rate = true;
		pass_end(s);
		return;
	}
	p->listed_ms = wall_ms();
	int rc = github_client_list(s->gh, GITHUB_LIST_BRANCHES, p->repos[p->i], on_branches, s);
	if (rc == 0) {
		s->pending++;
		return;
	}
	if (rc == -ECANCELED) {
		p->stop_ready = true; /* the GitHub client is closing */
		pass_end(s);
		return;
	}
	listing_failed(s, rc, rc == -EAGAIN ? "branches not listed: rate limited"
					    : "branches not listed");
	repo_done(s);
}

/* ---- scheduling ---- */

static void on_timer(uv_timer_t *t);

static void arm(struct github_sync *s, uint64_t ms)
{
	if (!s->closing)
		uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void pass_begin(struct github_sync *s)
{
	struct pass *p = xcalloc(1, sizeof(*p));
	p->started = uv_now(s->loop);
	s->pass = p;
	s->stats.running = true;
	find_repos(s, p);
	repo_next(s);
}

/* When to sync again after a pass that stopped for the rate limit. */
static uint64_t rate_delay(struct github_sync *s)
{
	uint64_t d = github_client_paused_ms(s->gh);
	struct github_client_stats gs;
	github_client_get_stats(s->gh, &gs);
	int64_t now = (int64_t)time(NULL);
	if (gs.rate_reset > now) {
		uint64_t until_reset = (uint64_t)(gs.rate_reset - now) * 1000;
		if (until_reset > d)
			d = until_reset;
	}
	d += 1000;
	if (d < s->retry_ms)
		d = s->retry_ms;
	return d > MAX_PAUSE_MS ? MAX_PAUSE_MS : d;
}

static void pass_end(struct github_sync *s)
{
	struct pass *p = s->pass;
	struct github_client_stats gs;
	github_client_get_stats(s->gh, &gs);
	uint64_t delay;
	const char *outcome;
	if (p->stop_ready) {
		delay = s->ready_poll_ms;
		outcome = "stopped: the controller is not ready";
	} else if (p->stop_rate) {
		delay = rate_delay(s);
		outcome = "stopped early for GitHub's rate limit";
	} else if (p->failed_repos) {
		delay = backoff_next(&s->backoff);
		if (delay > s->interval_ms)
			delay = s->interval_ms;
		outcome = "incomplete";
	} else {
		backoff_reset(&s->backoff);
		/* +-10 %: replicas and restarts do not stay in step */
		double j = 0.9 + 0.2 * backoff_random(&s->rng);
		delay = (uint64_t)((double)s->interval_ms * j);
		outcome = "done";
	}
	if (delay < 1)
		delay = 1;
	char rate[96] = "unknown";
	if (gs.rate_remaining >= 0) {
		long long in = gs.rate_reset >= 0 ? (long long)gs.rate_reset - (long long)time(NULL) : -1;
		snprintf(rate, sizeof(rate), "%ld/%ld, reset in %lld s", gs.rate_remaining,
			 gs.rate_limit, in < 0 ? 0 : in);
	}
	log_info("github sync %s: %zu repos (%zu failed, %zu not reached), %zu branches, %zu open "
		 "PRs; %zu heads up to date, %zu deployed, %zu left alone, %zu builds undeployed; "
		 "%u API requests (%u not modified), rate limit %s; %llu ms; next in %llu s",
		 outcome, p->n_repos, p->failed_repos, p->n_repos - (p->i < p->n_repos ? p->i : p->n_repos),
		 p->branches_seen, p->pulls_seen, p->up_to_date, p->deploys, p->left_alone,
		 p->undeploys, p->requests, p->not_modified, rate,
		 (unsigned long long)(uv_now(s->loop) - p->started),
		 (unsigned long long)(delay + 999) / 1000);
	if (!p->stop_ready) {
		s->stats.syncs++;
		if (p->failed_repos || p->stop_rate)
			s->stats.failed_syncs++;
	}
	pass_free(p);
	s->pass = NULL;
	s->stats.running = false;
	arm(s, delay);
}

static void on_timer(uv_timer_t *t)
{
	struct github_sync *s = t->data;
	if (s->closing || s->pass)
		return;
	const char *why;
	if (!controller_leading(s->controller, &why) || !controller_ready(s->controller, &why)) {
		arm(s, s->ready_poll_ms);
		return;
	}
	pass_begin(s);
}

/* ---- public ---- */

struct github_sync *github_sync_new(const struct github_sync_deps *d,
				    const struct github_sync_opts *o)
{
	if (!d->github)
		return NULL;
	struct github_sync *s = xcalloc(1, sizeof(*s));
	s->loop = d->loop;
	s->cfg = d->cfg;
	s->idx = d->idx;
	s->controller = d->controller;
	s->gh = d->github;
	s->interval_ms = o && o->interval_ms ? o->interval_ms : DEFAULT_INTERVAL_MS;
	s->retry_ms = o && o->retry_ms ? o->retry_ms : DEFAULT_RETRY_MS;
	s->ready_poll_ms = o && o->ready_poll_ms ? o->ready_poll_ms : DEFAULT_READY_POLL_MS;
	if (s->retry_ms > s->interval_ms)
		s->retry_ms = s->interval_ms;
	s->rng = backoff_seed();
	backoff_init(&s->backoff, s->retry_ms, s->interval_ms, 0.2, backoff_seed());
	uv_timer_init(s->loop, &s->timer);
	s->timer.data = s;
	return s;
}

void github_sync_start(struct github_sync *s)
{
	if (!s || s->started || s->closing)
		return;
	s->started = true;
	log_info("github sync: every %llu s, first once runboat is synced with Kubernetes",
		 (unsigned long long)(s->interval_ms + 999) / 1000);
	if (!s->cfg->github.token)
		log_warn("github sync without a token: GitHub allows 60 anonymous requests an "
			 "hour, and counts the 304s");
	arm(s, 0);
}

void github_sync_free(struct github_sync *s)
{
	if (!s || s->closing)
		return;
	s->closing = true;
	pass_free(s->pass);
	s->pass = NULL;
	uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

void github_sync_get_stats(const struct github_sync *s, struct github_sync_stats *out)
{
	*out = s->stats;
}
