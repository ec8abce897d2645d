/* The build model: what a build is, read from its Deployment (and its Jobs)
 * as the Kubernetes API returns them, validated, and shown as the JSON of
 * the Python runboat's /api/v1. Pure functions, no I/O.
 *
 * Deployments and Jobs are hostile input: anyone with write access to the
 * namespace can create one carrying the runboat/build label. Every field is
 * type- and syntax-checked; anything malformed is refused with a one-line
 * error, never half-read. */
#ifndef RUNBOAT_BUILD_H
#define RUNBOAT_BUILD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "validate.h"

/* Kubernetes contract (same keys as the Python runboat). */
#define BUILD_LABEL "runboat/build"
#define BUILD_LABEL_JOB_KIND "runboat/job-kind"
#define BUILD_ANN_REPO "runboat/repo"
#define BUILD_ANN_TARGET_BRANCH "runboat/target-branch"
#define BUILD_ANN_PR "runboat/pr"
#define BUILD_ANN_GIT_COMMIT "runboat/git-commit"
#define BUILD_ANN_INIT_STATUS "runboat/init-status"
#define BUILD_ANN_LAST_SCALED "runboat/last-scaled"
#define BUILD_FINALIZER "runboat/cleanup"
/* An addition of this runboat: when the build was deployed, to the
 * millisecond (RFC 3339), so that commits pushed within one second are
 * ordered. creationTimestamp has whole seconds only. */
#define BUILD_ANN_CREATED "runboat/created"
/* Another addition: why the build is failed when Kubernetes refused one of
 * its steps for good (e.g. an object of its kubefiles is invalid); "" or
 * absent when there is nothing to say. Bounded to BUILD_REASON_MAX bytes. */
#define BUILD_ANN_REASON "runboat/reason"
#define BUILD_REASON_MAX 1024

/* Bounds of the validated inputs (validate.h has the rules). */
#define BUILD_NAME_MAX 63        /* a label value */
#define BUILD_REPO_MAX VALIDATE_REPO_MAX
#define BUILD_BRANCH_MAX VALIDATE_BRANCH_MAX
#define BUILD_PR_MAX VALIDATE_PR_MAX
#define BUILD_SLUG_MAX 63        /* a DNS-1123 label */

/* Derived status (never stored); the strings are the API's. */
enum build_status {
	BUILD_INITIALIZING, /* init todo or started */
	BUILD_FAILED,       /* init failed */
	BUILD_STOPPED,      /* init succeeded, 0 desired, no pod left */
	BUILD_STOPPING,     /* 0 desired, pods (status.replicas) still there */
	BUILD_STARTING,     /* >= 1 desired, fewer available */
	BUILD_STARTED,      /* available >= desired >= 1 */
	BUILD_UNDEPLOYING,  /* deletionTimestamp set */
	BUILD_STATUS_COUNT
};

/* The runboat/init-status annotation. */
enum build_init_status {
	BUILD_INIT_TODO,
	BUILD_INIT_STARTED,
	BUILD_INIT_SUCCEEDED,
	BUILD_INIT_FAILED,
	BUILD_INIT_STATUS_COUNT
};

/* Static strings ("initializing", ...; "todo", ...); "?" when out of range. */
const char *build_status_str(enum build_status s);
const char *build_init_status_str(enum build_init_status s);
/* Exact, case-sensitive parse; the enum value, or -1 if unknown. */
int build_status_parse(const char *s);
int build_init_status_parse(const char *s);

/* What a build deploys. In a struct build the strings are owned by the build
 * (one allocation with it); elsewhere they are whatever the holder says. */
struct build_commit {
	const char *repo;          /* "owner/repo", lowercase */
	const char *target_branch; /* the branch, or the PR's base branch */
	int pr;                    /* 1..BUILD_PR_MAX, 0 = a branch build */
	const char *git_commit;    /* 40 (or 64) lowercase hex */
};

struct build {
	const char *name;            /* the runboat/build label */
	const char *deployment_name; /* starts with name */
	struct build_commit commit;
	const char *slug;            /* build_slug() of commit */
	const char *resource_version;/* "" if absent */
	const char *uid;             /* "" if absent */
	enum build_init_status init_status;
	enum build_status status;    /* derived by build_derive_status */
	int desired_replicas;        /* spec.replicas (absent: 0, as Python) */
	int replicas;                /* status.replicas: pods that exist */
	int ready_replicas;          /* status.readyReplicas */
	int available_replicas;      /* status.availableReplicas */
	int64_t created;             /* metadata.creationTimestamp, epoch s */
	int64_t created_ms;          /* the order of deploys: runboat/created in
	                              * ms when present, else created * 1000 */
	int64_t last_scaled;         /* runboat/last-scaled, epoch s; 0 if absent */
	bool deleting;               /* metadata.deletionTimestamp set */
	bool paused;                 /* spec.paused: deployed so, until its
	                              * initialization (kubefiles.c) */
	bool has_finalizer;          /* runboat/cleanup among the finalizers */
	char *reason;                /* runboat/reason, NULL when absent or "" */
	char *note;                  /* what the controller says of it now (a
	                              * step being retried, a failed cleanup),
	                              * NULL if nothing; set by index_set_note,
	                              * never read from Kubernetes */
	/* From the build's Odoo pods (not its Jobs'), never from the
	 * Deployment: the highest container restartCount, and whether a
	 * container waits in CrashLoopBackOff. Set by index_set_pods; kept
	 * across index_upsert like the note. */
	int restarts;
	bool crash_looping;
	/* build_json_text's cache: the JSON text for json_links, or NULL.
	 * Not copied by build_dup; dropped by build_set_reason/note. */
	char *json_text;
	size_t json_len;
	const struct build_links *json_links;
};

/* A build with the given identity and strings (copied, NUL-terminated, in one
 * allocation with the struct; the slug is computed). Scalars are zero (init
 * todo, status derived from them): set them, then call build_derive_status.
 * resource_version and uid may be NULL (""). Inputs are NOT validated here:
 * build_from_deployment and the callers that create builds do it. Owned by the
 * caller, freed with build_free. */
struct build *build_new(const char *name, const char *deployment_name,
			const struct build_commit *commit, const char *resource_version,
			const char *uid);
/* Sets b->reason or b->note to a copy of s (NULL or "" clears it). */
void build_set_reason(struct build *b, const char *s);
void build_set_note(struct build *b, const char *s);
/* A deep copy (owned by the caller). */
struct build *build_dup(const struct build *b);
/* Frees b and every string it holds; NULL is fine. */
void build_free(struct build *b);

/* The status from init_status, deleting and the replica counts, by the rules
 * of DESIGN.md "Words" (undeploying wins, then init todo/started ->
 * initializing, failed -> failed, succeeded -> by replicas). */
enum build_status build_derive_status(const struct build *b);
/* last_scaled, or created when the build was never scaled (as Python). */
int64_t build_last_scaled(const struct build *b);

/* True when a and b would show the same JSON and give the controller the same
 * facts: false if anything but resource_version, uid and the ready/available
 * counts that do not change the status differs. */
bool build_same_view(const struct build *a, const struct build *b);

/* Reads a build from a Deployment object as the API returns it (borrowed).
 * Returns a new build (owned by the caller, build_free) or NULL with a
 * one-line message in err ("deployment NAME: what is wrong") when the object
 * is not a well-formed runboat Deployment: missing/ill-typed fields, invalid
 * repo/branch/sha/pr, unknown init-status, negative or huge replicas, bad
 * timestamps, a name that does not start with the build name. When it returns
 * NULL for an object that carries a runboat/build label, the caller should
 * drop that build from its view (it can no longer be trusted). err may be
 * NULL. */
struct build *build_from_deployment(const json_t *deployment, char *err, size_t errlen);

/* Input validation. Repo, branch, sha and PR number have one set of rules,
 * in validate.h, used by the configuration, the webhook, the API, the
 * kubefiles and build_from_deployment. */

/* A build name: [a-z][a-z0-9-]*, at most BUILD_NAME_MAX, not ending in '-'
 * (fits a label value and prefixes DNS names). */
bool build_valid_name(const char *name);
/* All four of a commit (repo may be any case here). */
bool build_valid_commit(const struct build_commit *c);

/* The human-readable DNS label of a commit:
 * "<owner>-<repo>-<target-branch>[-pr<N>]-<sha12>" lowercased, every
 * character outside [a-z0-9] turned into '-', runs of '-' collapsed, no '-'
 * at either end (the owner is included, as in the Python runboat). When that
 * exceeds 63 characters, the "<owner>-<repo>-<branch>" part is cut and
 * "-<h8>" inserted before "[-pr<N>]-<sha12>", h8 being the first 8 hex digits
 * of the SHA-256 of "repo\nbranch\npr\nsha" (so distinct long inputs stay
 * distinct). Always a valid DNS-1123 label for a valid sha (NULL inputs
 * count as ""). Owned by the caller. */
char *build_slug(const char *repo, const char *target_branch, int pr, const char *sha);

/* A fresh build name: "b" + 32 random lowercase hex digits (RAND_bytes).
 * Owned by the caller; NULL only if the CSPRNG fails. */
char *build_new_name(void);

/* Where links point (all borrowed, without trailing '/'). */
struct build_links {
	const char *base_url;     /* runboat's public URL, e.g. "https://runboat.example" */
	const char *build_domain; /* e.g. "runboat.example" */
	const char *github_url;   /* NULL: "https://github.com" */
};

/* The API's JSON of a build (new reference):
 * {name, commit_info: {repo, target_branch, pr: int|null, git_commit},
 *  deploy_link: "http://<slug>.<domain>",
 *  deploy_link_mailhog: "http://<slug>.mail.<domain>",
 *  repo_target_branch_link: "<gh>/<repo>/tree/<branch>",
 *  repo_pr_link: "<gh>/<repo>/pull/<pr>" | null,
 *  repo_commit_link: "<gh>/<repo>/commit/<sha>" or ".../pull/<pr>/commits/<sha>",
 *  webui_link: "<base_url>/builds/<name>", status,
 *  created, last_scaled: "YYYY-MM-DDTHH:MM:SSZ" (last_scaled falls back to
 *  created), and the additions init_status, slug, desired_replicas and
 *  reason: the note when there is one, else the reason, else null}.
 * The branch is percent-encoded in links except for '/' (identical to Python
 * for ordinary branch names). */
json_t *build_to_json(const struct build *b, const struct build_links *links);

/* build_to_json's text (compact, as json_dumps), cached on the build: the
 * API listing and every stream share one encoding per state of a build.
 * The text is borrowed, valid until b is freed or its reason/note set;
 * *len gets its length. Whoever changes other fields of a build after it
 * was encoded must call build_json_forget (the index never does: a change
 * is a new struct build). */
const char *build_json_text(const struct build *b, const struct build_links *links, size_t *len);
void build_json_forget(struct build *b);

/* Jobs */

enum build_job_kind { BUILD_JOB_INITIALIZE, BUILD_JOB_CLEANUP };
enum build_job_state {
	BUILD_JOB_PENDING,   /* created, no pod running yet (or between retries) */
	BUILD_JOB_ACTIVE,    /* a pod is running */
	BUILD_JOB_SUCCEEDED, /* condition Complete (or SuccessCriteriaMet) */
	BUILD_JOB_FAILED     /* condition Failed (or FailureTarget) */
};

/* "initialize"/"cleanup"; "pending"/"active"/"succeeded"/"failed". */
const char *build_job_kind_str(enum build_job_kind k);
const char *build_job_state_str(enum build_job_state s);

/* A Job of a build, by value (no heap). */
struct build_job {
	char build[BUILD_NAME_MAX + 1]; /* runboat/build label */
	char name[254];                 /* metadata.name */
	char uid[64];                   /* metadata.uid, "" if absent */
	enum build_job_kind kind;       /* runboat/job-kind label */
	enum build_job_state state;
	int64_t created;                /* creationTimestamp, epoch s */
	bool deleting;                  /* deletionTimestamp set */
};

/* Reads a Job object as the API returns it (borrowed) into *out.
 * Returns 0; -ENOENT when it is not a runboat job (no runboat/build label, or
 * a job-kind other than initialize/cleanup: to be ignored); -EINVAL when it
 * claims to be one but is malformed. The state: a true Complete or
 * SuccessCriteriaMet condition -> succeeded; a true Failed or FailureTarget
 * -> failed; else status.active > 0 -> active; else status.succeeded > 0 ->
 * succeeded (servers without conditions); else pending (a failed pod being
 * retried is not a failed job). */
int build_job_from_job(const json_t *job, struct build_job *out);

#endif
