/* `runboat render`: option parsing, the context from the configuration, and
 * printing what kubefiles_render (or kubefiles_kinds) gives. */
#include "render_cmd.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "config.h"
#include "kubefiles.h"
#include "log.h"
#include "util.h"
#include "validate.h"

#define EXIT_RENDER 1
#define EXIT_USAGE 2

static void usage(FILE *out)
{
	fprintf(out,
		"usage: runboat render [--config FILE] --mode MODE --repo OWNER/REPO\n"
		"                      --target-branch BRANCH [--pr N] --sha SHA\n"
		"                      [--build-name NAME] [--image IMAGE] [--kubefiles DIR]\n"
		"                      [--format json|yaml|raw]\n"
		"       runboat render [--config FILE] --kinds [--repo OWNER/REPO --target-branch B]\n"
		"\n"
		"Renders the kubefiles of a build as runboat would apply them (labels,\n"
		"annotations, namespace and the rest of the contract enforced) and prints\n"
		"the objects. Nothing is sent to Kubernetes.\n"
		"\n"
		"  -c, --config FILE      configuration (default: $RUNBOAT_CONFIG, then ./runboat.toml)\n"
		"  -m, --mode MODE        deployment, initialize, start, stop or cleanup\n"
		"      --repo OWNER/REPO  the repository (selects the [[repos]] entry)\n"
		"      --target-branch B  the branch, or the PR's base branch\n"
		"      --pr N             the PR number (a branch build without it)\n"
		"      --sha SHA          the commit (40 or 64 hex digits)\n"
		"      --build-name NAME  the build name (default: a fresh random one)\n"
		"      --image IMAGE      the image (default: the [[repos]] entry's; required\n"
		"                         when no entry matches, [build] values are used then)\n"
		"      --kubefiles DIR    render this directory instead of the configured one\n"
		"  -f, --format FMT       json: a JSON array (default); yaml: a YAML stream of\n"
		"                         JSON documents; raw: the rendered text, before parsing\n"
		"                         and without the contract (to debug a template)\n"
		"      --kinds            print the (apiVersion, kind) pairs of every mode\n"
		"  -h, --help             this help\n"
		"\n"
		"Exit status: 0 rendered; 1 a template does not render or breaks the contract;\n"
		"2 bad arguments, configuration or kubefiles directory (empty, a required\n"
		"template missing).\n");
}

/* "name:tag" as config.h splits images. Both owned by the caller. */
static void split_image(const char *image, char **name, char **tag)
{
	const char *slash = strrchr(image, '/');
	const char *colon = strrchr(slash ? slash : image, ':');
	if (colon) {
		*name = xstrndup(image, (size_t)(colon - image));
		*tag = xstrdup(colon + 1);
	} else {
		*name = xstrdup(image);
		*tag = xstrdup("latest");
	}
}

static char *lowercase(const char *s)
{
	char *r = xstrdup(s);
	for (char *p = r; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

static int print_json(json_t *v, size_t flags)
{
	char *s = json_dumps(v, JSON_INDENT(2) | flags);
	if (!s)
		return -1;
	int rc = printf("%s\n", s) < 0 ? -1 : 0;
	free(s);
	return rc;
}

struct opts {
	const char *config, *mode, *repo, *branch, *pr, *sha, *build_name, *image, *kubefiles,
		*format;
	bool kinds;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_REPO = 256, O_BRANCH, O_PR, O_SHA, O_NAME, O_IMAGE, O_KUBEFILES, O_KINDS };
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"mode", required_argument, NULL, 'm'},
		{"repo", required_argument, NULL, O_REPO},
		{"target-branch", required_argument, NULL, O_BRANCH},
		{"pr", required_argument, NULL, O_PR},
		{"sha", required_argument, NULL, O_SHA},
		{"build-name", required_argument, NULL, O_NAME},
		{"image", required_argument, NULL, O_IMAGE},
		{"kubefiles", required_argument, NULL, O_KUBEFILES},
		{"format", required_argument, NULL, 'f'},
		{"kinds", no_argument, NULL, O_KINDS},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	optind = 1;
	int ch;
	while ((ch = getopt_long(argc, argv, "c:m:f:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'm': o->mode = optarg; break;
		case 'f': o->format = optarg; break;
		case O_REPO: o->repo = optarg; break;
		case O_BRANCH: o->branch = optarg; break;
		case O_PR: o->pr = optarg; break;
		case O_SHA: o->sha = optarg; break;
		case O_NAME: o->build_name = optarg; break;
		case O_IMAGE: o->image = optarg; break;
		case O_KUBEFILES: o->kubefiles = optarg; break;
		case O_KINDS: o->kinds = true; break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "runboat render: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!o->format)
		o->format = "json";
	if (strcmp(o->format, "json") != 0 && strcmp(o->format, "yaml") != 0 &&
	    strcmp(o->format, "raw") != 0) {
		fprintf(stderr, "runboat render: --format: expected json, yaml or raw, not '%s'\n",
			o->format);
		return -1;
	}
	if (o->kinds)
		return 0;
	const char *missing = !o->mode ? "--mode" : !o->repo ? "--repo" : !o->branch ? "--target-branch"
						: !o->sha ? "--sha" : NULL;
	if (missing) {
		fprintf(stderr, "runboat render: %s is required (see --help)\n", missing);
		return -1;
	}
	return 0;
}

int render_cmd_main(int argc, char **argv)
{
	struct opts o = {0};
	int rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc > 0 ? 0 : EXIT_USAGE;

	char err[1024];
	struct config *cfg = NULL;
	struct kubefiles *kf = NULL;
	json_t *out = NULL;
	char *repo = NULL, *sha = NULL, *slug = NULL, *name = NULL, *img_name = NULL,
	     *img_tag = NULL;
	struct buf text = {0};
	rc = EXIT_USAGE;

	if (!o.config)
		o.config = getenv("RUNBOAT_CONFIG");
	if (!o.config || !*o.config)
		o.config = "runboat.toml";
	log_set_level(LOG_ERROR); /* the server's warnings (webhook secret...) are noise here */
	cfg = config_load(o.config, err, sizeof err);
	log_flush();
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}

	struct kubefiles_ctx ctx = {0};
	int pr = 0;
	if (o.repo) {
		if (!validate_repo(o.repo)) {
			fprintf(stderr, "runboat render: --repo: expected owner/name\n");
			goto out;
		}
		repo = lowercase(o.repo);
	}
	if (o.branch && !validate_branch(o.branch)) {
		fprintf(stderr, "runboat render: --target-branch: not a valid git branch name\n");
		goto out;
	}
	if (o.pr && validate_parse_pr(o.pr, &pr) < 0) {
		fprintf(stderr, "runboat render: --pr: expected a number from 1 to %d\n", VALIDATE_PR_MAX);
		goto out;
	}
	if (o.sha) {
		sha = lowercase(o.sha);
		if (!validate_sha(sha)) {
			fprintf(stderr, "runboat render: --sha: expected 40 or 64 hex digits\n");
			goto out;
		}
	}
	const struct config_repo *entry = repo && o.branch ? config_find_repo(cfg, repo, o.branch)
							   : NULL;
	if (!entry && !o.image && !o.kinds) {
		fprintf(stderr,
			"runboat render: %s: no [[repos]] entry matches repo '%s' and branch '%s' "
			"(pass --image to render with the [build] values)\n",
			o.config, repo, o.branch);
		goto out;
	}
	kubefiles_ctx_from_config(&ctx, cfg, entry);
	if (o.image) {
		split_image(o.image, &img_name, &img_tag);
		ctx.image_name = img_name;
		ctx.image_tag = img_tag;
	}
	const char *dir = o.kubefiles ? o.kubefiles : entry ? entry->kubefiles : cfg->build.kubefiles;
	kf = kubefiles_load(dir, err, sizeof err);
	if (!kf) {
		/* not a kubefiles directory: a bad argument or configuration */
		fprintf(stderr, "%s\n", err);
		goto out;
	}

	if (o.kinds) {
		out = kubefiles_kinds(kf, &ctx, err, sizeof err);
		if (!out) {
			fprintf(stderr, "%s\n", err);
			rc = EXIT_RENDER;
			goto out;
		}
		rc = print_json(out, 0) < 0 ? EXIT_RENDER : 0;
		goto out;
	}

	int mode = kubefiles_mode_parse(o.mode);
	if (mode < 0) {
		fprintf(stderr,
			"runboat render: --mode: expected deployment, initialize, start, stop or "
			"cleanup, not '%s'\n",
			o.mode);
		goto out;
	}
	if (o.build_name) {
		name = xstrdup(o.build_name);
	} else if (!(name = build_new_name())) {
		fprintf(stderr, "runboat render: cannot draw a random build name\n");
		rc = EXIT_RENDER;
		goto out;
	}
	slug = build_slug(repo, o.branch, pr, sha);
	ctx.mode = (enum kubefiles_mode)mode;
	ctx.build_name = name;
	ctx.build_slug = slug;
	ctx.commit = (struct build_commit){
		.repo = repo, .target_branch = o.branch, .pr = pr, .git_commit = sha};

	rc = EXIT_RENDER;
	if (strcmp(o.format, "raw") == 0) {
		if (kubefiles_render_text(kf, &ctx, &text, err, sizeof err) < 0) {
			fprintf(stderr, "%s\n", err);
			goto out;
		}
		if (fwrite(text.data, 1, text.len, stdout) == text.len)
			rc = 0;
		goto out;
	}
	if (kubefiles_render(kf, &ctx, &out, err, sizeof err) < 0) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (strcmp(o.format, "json") == 0) {
		rc = print_json(out, 0) < 0 ? EXIT_RENDER : 0;
	} else {
		/* JSON is YAML; ASCII only, so that no character (U+2028...) can
		 * be read as a line break by a YAML parser */
		size_t i;
		json_t *obj;
		rc = 0;
		json_array_foreach(out, i, obj)
		{
			if (printf("---\n") < 0 || print_json(obj, JSON_ENSURE_ASCII) < 0)
				rc = EXIT_RENDER;
		}
	}
out:
	if (fflush(stdout) != 0 && rc == 0)
		rc = EXIT_RENDER;
	json_decref(out);
	buf_free(&text);
	kubefiles_free(kf);
	config_free(cfg);
	free(repo);
	free(sha);
	free(slug);
	free(name);
	free(img_name);
	free(img_tag);
	log_flush();
	return rc;
}
