/* The CPU cost of a webhook's body on the thread that handles it: the
 * HMAC-SHA256 check of X-Hub-Signature-256, the form decoding, and the JSON
 * parse (github_webhook_parse), for hostile and realistic bodies up to
 * GitHub's 25 MB. These costs decide what may run on the loop (DESIGN.md:
 * nothing blocks the loop; issue 10: no request above ~20 ms) and what goes
 * to libuv's thread pool (webhook.c). Prints milliseconds per call (best and
 * median of RUNS, wall clock of this thread). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "github.h"
#include "util.h"

#define RUNS 5

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, size_t bytes, double *t)
{
	qsort(t, RUNS, sizeof *t, cmp_double);
	printf("%-52s %6.1f MB  best %8.2f ms  median %8.2f ms  (%.0f MB/s)\n", what,
	       (double)bytes / 1e6, t[0] * 1e3, t[RUNS / 2] * 1e3, (double)bytes / 1e6 / t[RUNS / 2]);
}

/* {"k0000000":0,...}: one flat object of n keys (the review's 21.5 MB body) */
static char *many_keys(size_t n, size_t *len)
{
	struct buf b = {0};
	buf_append_str(&b, "{");
	char tmp[64];
	for (size_t i = 0; i < n; i++) {
		int k = snprintf(tmp, sizeof tmp, "%s\"key%016zu\":%zu", i ? "," : "", i, i % 1000);
		buf_append(&b, tmp, (size_t)k);
	}
	buf_append_str(&b, "}");
	*len = b.len;
	return b.data;
}

/* A push with many commits, each with file lists: what a real big delivery
 * looks like (deep, many strings). */
static char *big_push(size_t target, size_t *len)
{
	struct buf b = {0};
	buf_append_str(&b, "{\"ref\":\"refs/heads/main\",\"after\":\"0123456789abcdef0123456789abcdef01234567\","
			   "\"deleted\":false,\"repository\":{\"full_name\":\"acme/repo\"},\"commits\":[");
	char tmp[512];
	for (size_t i = 0; b.len < target; i++) {
		int k = snprintf(tmp, sizeof tmp,
				 "%s{\"id\":\"%040zu\",\"message\":\"commit %zu\\nwith a body\","
				 "\"author\":{\"name\":\"A. Developer\",\"email\":\"dev@example.com\"},"
				 "\"added\":[\"addons/mod_%zu/__init__.py\",\"addons/mod_%zu/models.py\"],"
				 "\"modified\":[\"README.md\"],\"removed\":[]}",
				 i ? "," : "", i, i, i, i);
		buf_append(&b, tmp, (size_t)k);
	}
	buf_append_str(&b, "]}");
	*len = b.len;
	return b.data;
}

static void bench_parse(const char *what, const char *event, const char *body, size_t len)
{
	double t[RUNS];
	struct github_action a;
	char err[256];
	int rc = 0;
	for (int r = 0; r < RUNS; r++) {
		double t0 = now_s();
		rc = github_webhook_parse(event, body, len, &a, err, sizeof err);
		t[r] = now_s() - t0;
	}
	report(what, len, t);
	printf("    -> %s\n", rc ? err : github_action_kind_name(a.kind));
}

/* Bytes of the JSON tree jansson builds for body (what a parse holds). */
static void tree_size(const char *what, const char *body, size_t len)
{
	size_t before = mallinfo2().uordblks;
	json_t *root = json_loadb(body, len, 0, NULL);
	size_t after = mallinfo2().uordblks;
	printf("%-52s %6.1f MB  tree %7.0f MiB (%.0f bytes per body byte)\n", what,
	       (double)len / 1e6, (double)(after - before) / (1 << 20),
	       (double)(after - before) / (double)len);
	json_decref(root);
}

static char *repeat(const char *open, const char *unit, const char *close, size_t target,
		    size_t *len)
{
	struct buf b = {0};
	buf_append_str(&b, open);
	size_t u = strlen(unit);
	while (b.len + u + strlen(close) < target)
		buf_append(&b, unit, u);
	buf_append_str(&b, close);
	*len = b.len;
	return b.data;
}

static void bench_hmac(size_t len)
{
	char *body = xmalloc(len);
	memset(body, 'x', len);
	unsigned char mac[32];
	unsigned maclen = 0;
	HMAC(EVP_sha256(), "secret", 6, (const unsigned char *)body, len, mac, &maclen);
	char header[8 + 65] = "sha256=";
	for (int i = 0; i < 32; i++)
		snprintf(header + 7 + 2 * i, 3, "%02x", mac[i]);
	double t[RUNS];
	bool ok = false;
	for (int r = 0; r < RUNS; r++) {
		double t0 = now_s();
		ok = github_verify_signature("secret", body, len, header);
		t[r] = now_s() - t0;
	}
	char what[80];
	snprintf(what, sizeof what, "HMAC-SHA256 check (%s)", ok ? "valid" : "INVALID?");
	report(what, len, t);
	free(body);
}

static void bench_form(size_t len)
{
	struct buf b = {0};
	buf_append_str(&b, "payload=");
	while (b.len < len)
		buf_append_str(&b, "%7B%22key%22%3A+%22value%22%7D");
	double t[RUNS];
	for (int r = 0; r < RUNS; r++) {
		double t0 = now_s();
		char *p = url_decode(b.data + 8, b.len - 8, true);
		t[r] = now_s() - t0;
		free(p);
	}
	report("form decoding (url_decode of payload=)", b.len, t);
	buf_free(&b);
}

int main(void)
{
	size_t len;
	char *body = many_keys(900000, &len);
	bench_parse("parse: one object of 900,000 keys", "push", body, len);
	free(body);
	body = many_keys(40000, &len);
	bench_parse("parse: one object of 40,000 keys", "push", body, len);
	free(body);
	body = big_push(24u << 20, &len);
	bench_parse("parse: push with many commits", "push", body, len);
	free(body);
	body = big_push(1u << 20, &len);
	bench_parse("parse: push with many commits", "push", body, len);
	free(body);
	body = big_push(64u << 10, &len);
	bench_parse("parse: push with many commits", "push", body, len);
	free(body);
	body = many_keys(900000, &len);
	tree_size("tree: one object of 900,000 keys", body, len);
	free(body);
	body = big_push(24u << 20, &len);
	tree_size("tree: push with many commits", body, len);
	free(body);
	body = repeat("[", "{},", "{}]", 25u << 20, &len);
	tree_size("tree: [{},{},...] (8.7 M values)", body, len);
	free(body);
	body = repeat("[", "{},", "{}]", 6u << 20, &len);
	tree_size("tree: [{},{},...] (2.1 M values)", body, len);
	free(body);
	body = repeat("[", "0,", "0]", 25u << 20, &len);
	tree_size("tree: [0,0,...] (13 M values)", body, len);
	free(body);
	bench_hmac(25u << 20);
	bench_hmac(1u << 20);
	bench_form(25u << 20);
	return 0;
}
