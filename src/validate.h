/* The one set of validators for names that come from outside: webhooks,
 * API calls and command-line arguments, the configuration, the annotations
 * of Kubernetes objects. Each checks a name against the rules of whoever
 * defines it (GitHub for repositories and pull requests, git for branches
 * and commits, Kubernetes for DNS names), so that a value accepted in one
 * place (say, a sticky branch in runboat.toml) is accepted everywhere else
 * (the Deployment that carries it). Pure functions; NULL is refused. */
#ifndef RUNBOAT_VALIDATE_H
#define RUNBOAT_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

/* Bounds (bytes, without the NUL). */
#define VALIDATE_REPO_OWNER_MAX 39 /* GitHub's limit for a login */
#define VALIDATE_REPO_NAME_MAX 100 /* GitHub's limit for a repository */
#define VALIDATE_REPO_MAX (VALIDATE_REPO_OWNER_MAX + 1 + VALIDATE_REPO_NAME_MAX)
#define VALIDATE_BRANCH_MAX 255
#define VALIDATE_SHA_MAX 64
#define VALIDATE_PR_MAX 2147483647
#define VALIDATE_DNS_LABEL_MAX 63
#define VALIDATE_DNS_NAME_MAX 253

/* "owner/repo" as GitHub allows (any case): owner [A-Za-z0-9-]{1,39}, repo
 * [A-Za-z0-9._-]{1,100} but not "." or "..". */
bool validate_repo(const char *repo);

/* A branch name git accepts as refs/heads/<branch> (git check-ref-format
 * rules: no "..", "@{", "//", control characters, space, ~^:?*[\, no
 * component starting with '.' or ending in ".lock", not starting with '-' or
 * '/', not ending with '/' or '.', not "@"), valid UTF-8, at most
 * VALIDATE_BRANCH_MAX bytes. */
bool validate_branch(const char *branch);

/* A commit: 40 (sha1) or 64 (sha256) lowercase hex digits. */
bool validate_sha(const char *sha);

/* A pull request number: 1..VALIDATE_PR_MAX. */
bool validate_pr(long long pr);

/* Parses a pull request number written in decimal: digits only, no sign,
 * no leading zero, in range. Returns 0 and sets *pr, or -EINVAL (*pr
 * untouched). */
int validate_parse_pr(const char *s, int *pr);

/* A DNS-1123 label: s[0..len) is 1..63 of [a-z0-9-], no '-' at either end
 * (a namespace, a build slug). */
bool validate_dns_label(const char *s, size_t len);

/* A lowercase DNS name: dot-separated DNS-1123 labels, at most
 * VALIDATE_DNS_NAME_MAX bytes (callers may bound it further). */
bool validate_dns_name(const char *s);

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
bool validate_env_name(const char *s);

#endif
