/* Validators of outside names: see validate.h for the rules. */
#include "validate.h"

#include <errno.h>
#include <string.h>

#include "util.h"

static bool is_lower_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(int c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

bool validate_repo(const char *repo)
{
	if (!repo)
		return false;
	const char *slash = strchr(repo, '/');
	if (!slash)
		return false;
	size_t owner = (size_t)(slash - repo);
	if (owner < 1 || owner > VALIDATE_REPO_OWNER_MAX)
		return false;
	for (const char *p = repo; p < slash; p++)
		if (!(is_alnum(*p) || *p == '-'))
			return false;
	const char *name = slash + 1;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++)
		if (n >= VALIDATE_REPO_NAME_MAX ||
		    !(is_alnum(*p) || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return n > 0 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

bool validate_branch(const char *branch)
{
	if (!branch || !*branch || branch[0] == '-' || strcmp(branch, "@") == 0)
		return false;
	const unsigned char *s = (const unsigned char *)branch;
	const unsigned char *component = s, *stop = s + strlen(branch);
	size_t len = 0;
	for (const unsigned char *p = s; *p;) {
		unsigned c = *p;
		if (c < 0x20 || c == 0x7f || c == ' ' || c == '~' || c == '^' || c == ':' ||
		    c == '?' || c == '*' || c == '[' || c == '\\')
			return false;
		if (c == '.' && p[1] == '.')
			return false;
		if (c == '@' && p[1] == '{')
			return false;
		if (p == component && c == '.')
			return false; /* component starts with '.' */
		if (c == '/') {
			if (p == component)
				return false; /* leading '/' or "//" */
			if (p - component >= 5 && memcmp(p - 5, ".lock", 5) == 0)
				return false;
			component = p + 1;
		}
		size_t n = utf8_decode(p, (size_t)(stop - p), NULL);
		if (!n)
			return false;
		p += n;
		len += n;
		if (len > VALIDATE_BRANCH_MAX)
			return false;
	}
	const unsigned char *end = s + len;
	if (end[-1] == '/' || end[-1] == '.')
		return false;
	if (end - component >= 5 && memcmp(end - 5, ".lock", 5) == 0)
		return false;
	return true;
}

bool validate_sha(const char *sha)
{
	if (!sha)
		return false;
	size_t n = 0;
	for (const char *p = sha; *p; p++, n++)
		if (n >= VALIDATE_SHA_MAX || !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return n == 40 || n == 64;
}

bool validate_pr(long long pr)
{
	return pr >= 1 && pr <= VALIDATE_PR_MAX;
}

int validate_parse_pr(const char *s, int *pr)
{
	if (!s || !*s || *s == '0')
		return -EINVAL;
	long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || p - s >= 10)
			return -EINVAL;
		v = v * 10 + (*p - '0');
	}
	if (!validate_pr(v))
		return -EINVAL;
	*pr = (int)v;
	return 0;
}

bool validate_dns_label(const char *s, size_t len)
{
	if (!s || len == 0 || len > VALIDATE_DNS_LABEL_MAX || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(is_lower_alnum(s[i]) || s[i] == '-'))
			return false;
	return true;
}

bool validate_dns_name(const char *s)
{
	size_t len = s ? strlen(s) : 0;
	if (len == 0 || len > VALIDATE_DNS_NAME_MAX)
		return false;
	for (const char *p = s;;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (!validate_dns_label(p, l))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

bool validate_env_name(const char *s)
{
	if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!(is_alnum(*s) || *s == '_'))
			return false;
	return true;
}
