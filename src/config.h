/* runboat.toml: load, validate and hold every setting, typed.
 *
 * Every string below is owned by the struct config and lives until
 * config_free. Errors are one line, "FILE:LINE: key: what is wrong, what is
 * expected" ("FILE: key: ..." when the key has no line, e.g. a missing
 * section); TOML syntax errors are "FILE:LINE:COL: message". Secrets never
 * appear in errors or logs. runboat.toml.sample documents each key and its
 * default.
 *
 * Regexes ([[repos]] repo and branch) must match the WHOLE string: they are
 * anchored implicitly (compiled as ^(re)$), so "oca/.*" does not match
 * "evil/oca/x"; writing ^ and $ yourself is harmless. They are POSIX
 * extended regexes; repo is matched case-insensitively against the lowercase
 * "owner/repo", branch case-sensitively against the target branch. */
#ifndef RUNBOAT_CONFIG_H
#define RUNBOAT_CONFIG_H

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

/* Environment variables that override the secrets of the file (an empty
 * variable counts as unset). */
#define CONFIG_ENV_ADMIN_PASSWORD "RUNBOAT_ADMIN_PASSWORD"
#define CONFIG_ENV_GITHUB_TOKEN "RUNBOAT_GITHUB_TOKEN"
#define CONFIG_ENV_WEBHOOK_SECRET "RUNBOAT_GITHUB_WEBHOOK_SECRET"

/* One environment variable given to builds (a {name, value} of build_env). */
struct config_env {
	char *name;  /* [A-Za-z_][A-Za-z0-9_]* */
	char *value;
};

struct config_env_list {
	struct config_env *items;
	size_t count;
};

struct config_server {
	char *listen;      /* as written, e.g. "127.0.0.1:8000", "[::1]:8000", ":8000" */
	char *listen_host; /* "127.0.0.1", "::1" (no brackets), or "" for every address */
	int listen_port;   /* 0..65535 (0: the kernel picks one) */
	char *base_url;    /* http(s)://host[:port][/path], without trailing '/' */
	int log_level;     /* enum log_level (log.h) */
	int log_format;    /* enum log_format (log.h): "text" (default) or "json" */
	bool access_log;
	int max_connections;
	int max_connections_per_client; /* per IPv4 address / IPv6 /64; 0: no cap */
	size_t max_header_bytes;
	size_t max_request_line_bytes;
	size_t max_body_bytes;
	size_t max_webhook_body_bytes;
	size_t max_buffered_body_bytes; /* bodies in flight, all connections; 0: no cap */
	double header_timeout; /* seconds, all > 0 */
	double body_timeout;
	double keepalive_timeout;
	/* live streams (WebSocket, SSE): unsent bytes beyond which a slow
	 * reader's events are conflated, and how long it may read nothing
	 * before it is closed */
	size_t stream_buffer_bytes;
	double stream_stall_timeout;
	double shutdown_timeout;
};

struct config_admin {
	char *user;
	char *password; /* NULL: no password, admin routes answer 401 */
};

struct config_limits {
	int max_initializing; /* all >= 1 */
	int max_started;
	int max_deployed;
	int max_deployed_per_ref; /* per branch or PR; 0: no cap */
	double stop_idle_after;   /* seconds after the last start; 0: never */
	bool start_after_init;
	int max_restarts; /* a started build whose pod restarted this often is
	                   * stopped as crash-looping; 0: never */
};

struct config_kubernetes {
	char *namespace;  /* DNS-1123 label */
	char *kubeconfig; /* "": $KUBECONFIG, then ~/.kube/config, then in-cluster */
	char *context;    /* "": the kubeconfig's current-context */
	double qps;
	int burst;
	double request_timeout; /* seconds */
	/* two replicas, one leader (src/lease.h): off by default */
	bool leader_election;
	char *lease_name;      /* the Lease in namespace: a DNS-1123 subdomain */
	double lease_duration; /* seconds, a whole number >= 1 */
	double renew_deadline; /* seconds, < lease_duration */
	double retry_period;   /* seconds, * 1.2 < renew_deadline */
};

struct config_build {
	char *domain;    /* lowercase DNS name; builds are http://<slug>.<domain> */
	char *kubefiles; /* directory: an explicit relative one is resolved against the
			  * config's directory; absent, config_default_kubefiles */
	struct config_env_list env;
	struct config_env_list secret_env;
	json_t *template_vars; /* owned object, never NULL */
};

struct config_github {
	char *api_url;        /* without trailing '/' */
	char *token;          /* NULL: anonymous API calls */
	char *webhook_secret; /* NULL: webhooks are accepted unsigned */
	bool statuses;
	/* missed-webhook recovery (github_sync.h): seconds between two syncs
	 * with GitHub, 0 = off; default 600 when a token is set, else 0 */
	double sync_interval;
	char **sync_repos; /* lowercase "owner/repo" also looked at by the sync */
	/* seconds a new build waits before its initialization, so that of
	 * several pushes of one branch or PR in that time only the newest is
	 * built (the older ones are undeployed); 0 = off */
	double debounce;
	size_t n_sync_repos;
};

/* One [[repos]] entry, with [build] merged in: kubefiles is the entry's or
 * [build]'s; env, secret_env and template_vars are [build]'s overridden key
 * by key by the entry's. */
struct config_repo {
	char *repo;   /* regex source, as written */
	char *branch; /* regex source, as written (default ".*") */
	regex_t repo_re;
	regex_t branch_re;
	char *image;      /* as written */
	char *image_name; /* image up to the last ':' after its last '/' */
	char *image_tag;  /* after it, "latest" when there is none; so
			   * "name@sha256:hex" gives "name@sha256" and "hex",
			   * and image_name:image_tag is always the image */
	char *kubefiles;
	struct config_env_list env;
	struct config_env_list secret_env;
	json_t *template_vars; /* owned object, never NULL */
	unsigned line;         /* line of the entry in the file (0: unknown) */
	bool compiled;         /* internal: regexes to regfree */
};

/* A branch that always has a build of its head, whose newest build is
 * never undeployed. */
struct config_sticky_branch {
	char *repo;   /* lowercase "owner/repo" */
	char *branch; /* exact branch name */
};

struct config {
	char *path; /* the file loaded ("<defaults>" for config_default) */
	struct config_server server;
	struct config_admin admin;
	struct config_limits limits;
	struct config_kubernetes kubernetes;
	struct config_build build;
	struct config_github github;
	struct config_repo *repos;
	size_t n_repos;
	struct config_sticky_branch *sticky_branches;
	size_t n_sticky_branches;
};

/* Loads and validates the TOML file at path; secrets come from the file,
 * their *_file or the environment (see CONFIG_ENV_*). Every kubefiles
 * directory named ([build] and each [[repos]] entry) is loaded once with
 * kubefiles_load, so that a directory runboat cannot deploy from (empty, a
 * required template missing, not text) is an error of its key; sticky
 * branches and repositories are checked with validate.h's rules, those of
 * webhooks. Returns a new config (owned, config_free) or NULL with one line
 * in err (the file itself must be a regular file: a FIFO is refused, not
 * waited on). Logs a warning when no webhook secret is set. */
struct config *config_load(const char *path, char *err, size_t errlen);

/* Same for a document in memory; name stands for the file name in errors,
 * and relative paths (kubefiles, *_file) are relative to base_dir (NULL:
 * the current directory). */
struct config *config_load_string(const char *text, const char *name, const char *base_dir,
				  char *err, size_t errlen);

/* Every default, with the two required values given (copied) and no
 * [[repos]]; secrets come from the environment only. kubefiles is
 * "kubefiles" (relative to the current directory) and is not checked.
 * Returns NULL with err set if namespace or domain is invalid. */
struct config *config_default(const char *namespace, const char *domain, char *err,
			      size_t errlen);

/* The default kubefiles directory, used when [build] has no kubefiles key,
 * wherever the configuration file is: the first directory that exists of
 *   1. <directory of the running binary>/../share/runboat/kubefiles (an
 *      installed runboat, whatever prefix cmake --install was given, or a
 *      copied install tree such as the container image's);
 *   2. for a binary run from its build tree, the source tree's kubefiles/;
 *   3. <the configured CMAKE_INSTALL_FULL_DATADIR>/runboat/kubefiles.
 * Returns a new string (caller frees) or NULL with the places looked at in
 * err. Only existence is checked here; config_load then loads it. */
char *config_default_kubefiles(char *err, size_t errlen);

/* NULL is allowed. */
void config_free(struct config *cfg);

/* The first [[repos]] entry matching repo (lowercase "owner/repo") and the
 * target branch, or NULL: that repo/branch is not supported. Borrowed from
 * cfg. */
const struct config_repo *config_find_repo(const struct config *cfg, const char *repo,
					   const char *branch);

/* Whether some [[repos]] entry matches repo (lowercase "owner/repo"),
 * whatever the branch. */
bool config_builds_repo(const struct config *cfg, const char *repo);

/* Whether (repo, branch) is listed in [[sticky_branches]] (repo compared
 * case-insensitively, branch exactly). */
bool config_is_sticky(const struct config *cfg, const char *repo, const char *branch);

#endif
