/* github_client against test/e2e/fake_github.py, spawned on a free port:
 * heads, statuses, retries, rate limits, coalescing, the queue bound,
 * shutdown, and listings (pagination, ETags and 304s, hostile links and
 * pages, the cache bounds, rate limits). Each test ends with uv_loop_close() == 0. */
#include "curl_uv.h"
#include "github.h"
#include "github_client.h"
#include "util.h"
#include "unit.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define TOKEN "tok-123"
#define SHA_A "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
#define SHA_B "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
#define SHA_C "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
#define REPO "oca/server-tools"

/* ---- the fake GitHub ---- */

static pid_t fake_pid;
static int fake_stdin = -1;
static char fake_url[64];

static const char *python(void)
{
	static char path[PATH_MAX];
	const char *home = getenv("HOME");
	if (home) {
		snprintf(path, sizeof(path), "%s/.cache/runboat/venv/bin/python", home);
		if (access(path, X_OK) == 0)
			return path;
	}
	return "python3";
}

static const char *fake_script(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("RUNBOAT_FAKE_GITHUB");
	if (env && *env)
		return env;
	/* beside this file: test/unit/../e2e/fake_github.py */
	snprintf(path, sizeof(path), "%s", __FILE__);
	char *slash = strrchr(path, '/');
	if (slash)
		snprintf(slash + 1, sizeof(path) - (size_t)(slash + 1 - path), "../e2e/fake_github.py");
	else
		snprintf(path, sizeof(path), "test/e2e/fake_github.py");
	return path;
}

static void fake_start(void)
{
	int out[2], in[2];
	if (pipe(out) != 0 || pipe(in) != 0) {
		perror("pipe");
		exit(2);
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_addclose(&fa, out[0]);
	posix_spawn_file_actions_addclose(&fa, in[1]);
	const char *py = python();
	const char *script = fake_script();
	char *argv[] = {(char *)py, (char *)script, "--port", "0", "--token", TOKEN,
			"--exit-on-eof", NULL};
	int rc = posix_spawnp(&fake_pid, py, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	close(in[0]);
	if (rc != 0) {
		fprintf(stderr, "cannot run %s %s: %s (python3 is needed for this test)\n", py,
			script, strerror(rc));
		exit(2);
	}
	fake_stdin = in[1];
	fcntl(fake_stdin, F_SETFD, FD_CLOEXEC);

	char line[128];
	size_t n = 0;
	struct pollfd p = {.fd = out[0], .events = POLLIN};
	while (n < sizeof(line) - 1 && !memchr(line, '\n', n)) {
		if (poll(&p, 1, 20000) <= 0)
			break;
		ssize_t r = read(out[0], line + n, sizeof(line) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	line[n] = '\0';
	close(out[0]);
	int port = 0;
	if (sscanf(line, "listening on %d", &port) != 1 || port <= 0) {
		fprintf(stderr, "fake_github did not start (%s %s): got \"%s\"\n", py, script, line);
		kill(fake_pid, SIGTERM);
		exit(2);
	}
	snprintf(fake_url, sizeof(fake_url), "http://127.0.0.1:%d", port);
}

static void fake_stop(void)
{
	close(fake_stdin);
	kill(fake_pid, SIGTERM);
	waitpid(fake_pid, NULL, 0);
}

static size_t on_ctl_write(char *p, size_t size, size_t n, void *userp)
{
	buf_append(userp, p, size * n);
	return size * n;
}

/* A blocking call to the fake's control API (outside the loop); returns the
 * parsed answer (owned) or NULL. */
static json_t *ctl(const char *method, const char *path, const char *body)
{
	CURL *e = curl_easy_init();
	struct buf out = {0};
	char *url = xasprintf("%s%s", fake_url, path);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_ctl_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
	CURLcode rc = curl_easy_perform(e);
	long status = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	free(url);
	json_t *j = NULL;
	if (rc == CURLE_OK && status == 200)
		j = json_loadb(out.data ? out.data : "", out.len, 0, NULL);
	else
		fprintf(stderr, "control %s %s failed: %d %ld\n", method, path, rc, status);
	buf_free(&out);
	return j;
}

static void ctl_do(const char *method, const char *path, const char *body)
{
	json_decref(ctl(method, path, body));
}

/* The next count API requests (whose path contains path, if not NULL)
 * answer status (0: normally) after delay seconds. */
static void fail_next_path(int count, int status, const char *headers_json, double delay,
			   const char *path)
{
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"count\": %d, \"status\": %d, \"headers\": %s, \"delay\": %g, \"path\": \"%s\"}",
		 count, status, headers_json ? headers_json : "{}", delay, path ? path : "");
	ctl_do("POST", "/_control/fail", body);
}

static void fail_next(int count, int status, const char *headers_json, double delay)
{
	fail_next_path(count, status, headers_json, delay, NULL);
}

/* Recorded statuses (owned array). */
static json_t *statuses(void)
{
	json_t *j = ctl("GET", "/_control/statuses", NULL);
	return j ? j : json_array();
}

static size_t count_requests(const char *method)
{
	json_t *j = ctl("GET", "/_control/requests", NULL);
	size_t n = 0, i;
	json_t *r;
	json_array_foreach(j, i, r)
		if (strcmp(json_string_value(json_object_get(r, "method")), method) == 0)
			n++;
	json_decref(j);
	return n;
}

static const char *field(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "(none)";
}

/* ---- the loop ---- */

struct env {
	uv_loop_t loop;
	struct curl_uv *cu;
	struct github_client *gc;
	uv_timer_t tick;
	bool (*until)(struct env *);
	uint64_t deadline;
	bool timed_out;
	void *ctx;
};

static struct github_client_opts default_opts(void)
{
	return (struct github_client_opts){
		.api_url = fake_url,
		.token = TOKEN,
		.statuses = true,
		.timeout_ms = 10000,
		.retry_base_ms = 10,
		.retry_max_ms = 40,
		.max_pause_ms = 200,
	};
}

static void env_init(struct env *e, const struct github_client_opts *o)
{
	memset(e, 0, sizeof(*e));
	ctl_do("POST", "/_control/reset", NULL);
	uv_loop_init(&e->loop);
	uv_timer_init(&e->loop, &e->tick);
	e->tick.data = e;
	e->cu = curl_uv_new(&e->loop);
	struct github_client_opts d = default_opts();
	e->gc = github_client_new(&e->loop, e->cu, o ? o : &d);
	CHECK(e->gc != NULL);
}

static void on_tick(uv_timer_t *t)
{
	struct env *e = t->data;
	if (e->until(e) || uv_now(&e->loop) > e->deadline) {
		e->timed_out = !e->until(e);
		uv_timer_stop(t);
		uv_stop(&e->loop);
	}
}

/* Runs the loop until pred holds (checked every 5 ms), at most 15 s. */
static bool run_until(struct env *e, bool (*pred)(struct env *))
{
	e->until = pred;
	e->timed_out = false;
	uv_update_time(&e->loop);
	e->deadline = uv_now(&e->loop) + 15000;
	uv_timer_start(&e->tick, on_tick, 5, 5);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	if (e->timed_out)
		fprintf(stderr, "  run_until: timed out\n");
	return !e->timed_out;
}

/* Runs the loop for ms milliseconds. */
static bool never(struct env *e)
{
	UNUSED(e);
	return false;
}

static void run_for(struct env *e, uint64_t ms)
{
	e->until = never;
	uv_update_time(&e->loop);
	e->deadline = uv_now(&e->loop) + ms;
	uv_timer_start(&e->tick, on_tick, 5, 5);
	uv_run(&e->loop, UV_RUN_DEFAULT);
}

static void env_close(struct env *e)
{
	github_client_close(e->gc);
	curl_uv_close(e->cu);
	uv_close((uv_handle_t *)&e->tick, NULL);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&e->loop), 0);
}

static struct github_client_stats stats(struct env *e)
{
	struct github_client_stats s;
	github_client_get_stats(e->gc, &s);
	return s;
}

static bool queue_idle(struct env *e)
{
	struct github_client_stats s = stats(e);
	return s.queued == 0 && s.in_flight == 0;
}

/* ---- lookups ---- */

struct lookup {
	int calls;
	int error;
	char message[512];
	char repo[GITHUB_REPO_MAX + 1];
	char sha[GITHUB_SHA_MAX + 1];
	char target[GITHUB_BRANCH_MAX + 1];
	long pr;
	bool open;
	struct env *close_env; /* close the client from the callback */
};

static void on_head(int error, const char *message, const struct github_head *head, void *data)
{
	struct lookup *l = data;
	l->calls++;
	l->error = error;
	snprintf(l->message, sizeof(l->message), "%s", message ? message : "(null)");
	if (error == 0) {
		CHECK(head != NULL);
		snprintf(l->repo, sizeof(l->repo), "%s", head->repo);
		snprintf(l->sha, sizeof(l->sha), "%s", head->sha);
		snprintf(l->target, sizeof(l->target), "%s", head->target_branch);
		l->pr = head->pr;
		l->open = head->open;
	} else {
		CHECK(head == NULL);
	}
	if (l->close_env) {
		github_client_close(l->close_env->gc);
		l->close_env->gc = NULL;
	}
}

static struct lookup *lookups;
static size_t n_lookups;

static bool lookups_done(struct env *e)
{
	UNUSED(e);
	for (size_t i = 0; i < n_lookups; i++)
		if (lookups[i].calls == 0)
			return false;
	return true;
}

static void wait_lookups(struct env *e, struct lookup *l, size_t n)
{
	lookups = l;
	n_lookups = n;
	CHECK(run_until(e, lookups_done));
}

static void test_branch_head(void)
{
	struct env e;
	env_init(&e, NULL);
	ctl_do("PUT", "/_control/branches",
	       "[{\"repo\": \"OCA/server-tools\", \"branch\": \"16.0\", \"sha\": \"" SHA_A "\"},"
	       " {\"repo\": \"oca/server-tools\", \"branch\": \"feature/x-1\","
	       "  \"sha\": \"EC26C3E57CA3A959CA5AAD62DE7213C562F8C821\"}]");
	struct lookup l[3] = {0};
	CHECK_INT(github_client_branch_head(e.gc, "OCA/Server-Tools", "16.0", on_head, &l[0]), 0);
	CHECK_INT(github_client_branch_head(e.gc, REPO, "feature/x-1", on_head, &l[1]), 0);
	CHECK_INT(github_client_branch_head(e.gc, REPO, "nope", on_head, &l[2]), 0);
	/* never called back from inside the call */
	CHECK_INT(l[0].calls + l[1].calls + l[2].calls, 0);
	wait_lookups(&e, l, 3);

	CHECK_INT(l[0].calls, 1);
	CHECK_INT(l[0].error, 0);
	CHECK_STR(l[0].repo, REPO);
	CHECK_STR(l[0].sha, SHA_A);
	CHECK_STR(l[0].target, "16.0");
	CHECK_INT(l[0].pr, 0);
	CHECK(l[0].open);

	CHECK_INT(l[1].error, 0);
	CHECK_STR(l[1].sha, SHA_B); /* lowercased */
	CHECK_STR(l[1].target, "feature/x-1");

	CHECK_INT(l[2].calls, 1);
	CHECK_INT(l[2].error, -ENOENT);
	CHECK(strstr(l[2].message, "404") != NULL);
	CHECK(strstr(l[2].message, "Branch not found") != NULL);

	/* what went over the wire */
	json_t *reqs = ctl("GET", "/_control/requests", NULL);
	CHECK_INT(json_array_size(reqs), 3);
	bool seen_encoded = false;
	size_t i;
	json_t *r;
	json_array_foreach(reqs, i, r) {
		json_t *h = json_object_get(r, "headers");
		CHECK_STR(field(r, "method"), "GET");
		CHECK_STR(field(h, "accept"), "application/vnd.github+json");
		CHECK_STR(field(h, "x-github-api-version"), GITHUB_API_VERSION);
		CHECK_STR(field(h, "authorization"), "Bearer " TOKEN);
		CHECK(str_starts_with(field(h, "user-agent"), "runboat/"));
		if (strcmp(field(r, "path"), "/repos/oca/server-tools/branches/feature%2Fx-1") == 0)
			seen_encoded = true;
	}
	CHECK(seen_encoded);
	json_decref(reqs);
	env_close(&e);
}

static void test_lookup_invalid(void)
{
	struct env e;
	env_init(&e, NULL);
	struct lookup l = {0};
	CHECK_INT(github_client_branch_head(e.gc, "evil", "main", on_head, &l), -EINVAL);
	CHECK_INT(github_client_branch_head(e.gc, REPO, "a..b", on_head, &l), -EINVAL);
	CHECK_INT(github_client_branch_head(e.gc, REPO, "a\nb", on_head, &l), -EINVAL);
	CHECK_INT(github_client_branch_head(e.gc, REPO, "main", NULL, &l), -EINVAL);
	CHECK_INT(github_client_pr_head(e.gc, REPO, 0, on_head, &l), -EINVAL);
	CHECK_INT(github_client_pr_head(e.gc, REPO, -3, on_head, &l), -EINVAL);
	CHECK_INT(github_client_pr_head(e.gc, REPO, GITHUB_PR_MAX + 1, on_head, &l), -EINVAL);
	CHECK_INT(github_client_pr_head(e.gc, "a/b/c", 1, on_head, &l), -EINVAL);
	run_for(&e, 20);
	CHECK_INT(l.calls, 0);
	CHECK_INT(count_requests("GET"), 0);
	env_close(&e);
}

static void test_pr_head(void)
{
	struct env e;
	env_init(&e, NULL);
	ctl_do("PUT", "/_control/pulls",
	       "[{\"repo\": \"oca/server-tools\", \"number\": 7, \"head_sha\": \"" SHA_B "\","
	       "  \"base_ref\": \"16.0\"},"
	       " {\"repo\": \"oca/server-tools\", \"number\": 8, \"head_sha\": \"" SHA_C "\","
	       "  \"base_ref\": \"release/17.0\", \"state\": \"closed\"},"
	       " {\"repo\": \"oca/server-tools\", \"number\": 9, \"head_sha\": \"" SHA_C "\","
	       "  \"base_ref\": \"a..b\"}]");
	struct lookup l[4] = {0};
	CHECK_INT(github_client_pr_head(e.gc, REPO, 7, on_head, &l[0]), 0);
	CHECK_INT(github_client_pr_head(e.gc, REPO, 8, on_head, &l[1]), 0);
	CHECK_INT(github_client_pr_head(e.gc, REPO, 9, on_head, &l[2]), 0);
	CHECK_INT(github_client_pr_head(e.gc, REPO, 10, on_head, &l[3]), 0);
	wait_lookups(&e, l, 4);
	CHECK_INT(l[0].error, 0);
	CHECK_STR(l[0].sha, SHA_B);
	CHECK_STR(l[0].target, "16.0");
	CHECK_INT(l[0].pr, 7);
	CHECK(l[0].open);
	CHECK_INT(l[1].error, 0);
	CHECK_STR(l[1].target, "release/17.0");
	CHECK(!l[1].open);
	/* a base ref that could not be a branch is refused */
	CHECK_INT(l[2].error, -EPROTO);
	CHECK(strstr(l[2].message, "base.ref") != NULL);
	CHECK_INT(l[3].error, -ENOENT);
	CHECK(strstr(l[3].message, "/repos/oca/server-tools/pulls/10") != NULL);
	env_close(&e);
}

static void test_lookup_bad_answers(void)
{
	struct env e;
	env_init(&e, NULL);
	ctl_do("PUT", "/_control/branches",
	       "[{\"repo\": \"o/r\", \"branch\": \"bad\", \"sha\": \"not-a-sha\"},"
	       " {\"repo\": \"o/r\", \"branch\": \"zero\","
	       "  \"sha\": \"0000000000000000000000000000000000000000\"}]");
	struct lookup l[3] = {0};
	CHECK_INT(github_client_branch_head(e.gc, "o/r", "bad", on_head, &l[0]), 0);
	CHECK_INT(github_client_branch_head(e.gc, "o/r", "zero", on_head, &l[1]), 0);
	wait_lookups(&e, l, 2);
	CHECK_INT(l[0].error, -EPROTO);
	CHECK(strstr(l[0].message, "commit.sha") != NULL);
	CHECK_INT(l[1].error, -EPROTO);

	/* an answer that is not an object */
	ctl_do("POST", "/_control/fail",
	       "{\"count\": 1, \"status\": 200, \"body\": [1, 2, 3]}");
	CHECK_INT(github_client_branch_head(e.gc, "o/r", "bad", on_head, &l[2]), 0);
	wait_lookups(&e, &l[2], 1);
	CHECK_INT(l[2].error, -EPROTO);
	CHECK(strstr(l[2].message, "not a JSON object") != NULL);
	env_close(&e);
}

static void test_lookup_auth(void)
{
	struct env e;
	struct github_client_opts o = default_opts();
	o.token = "wrong";
	env_init(&e, &o);
	struct lookup l[2] = {0};
	CHECK_INT(github_client_branch_head(e.gc, REPO, "main", on_head, &l[0]), 0);
	wait_lookups(&e, l, 1);
	CHECK_INT(l[0].error, -EACCES);
	CHECK(strstr(l[0].message, "Bad credentials") != NULL);
	/* a plain 403 (no rate limit) is a permission problem */
	fail_next(1, 403, NULL, 0);
	CHECK_INT(github_client_branch_head(e.gc, REPO, "main", on_head, &l[1]), 0);
	wait_lookups(&e, &l[1], 1);
	CHECK_INT(l[1].error, -EACCES);
	CHECK_INT(stats(&e).rate_limited, 0);
	env_close(&e);
}

static void test_lookup_retries(void)
{
	struct env e;
	env_init(&e, NULL);
	ctl_do("PUT", "/_control/branches",
	       "[{\"repo\": \"o/r\", \"branch\": \"main\", \"sha\": \"" SHA_A "\"}]");
	struct lookup l[2] = {0};
	/* two 5xx then success: lookup_attempts is 3 */
	fail_next(2, 502, NULL, 0);
	CHECK_INT(github_client_branch_head(e.gc, "o/r", "main", on_head, &l[0]), 0);
	wait_lookups(&e, l, 1);
	CHECK_INT(l[0].calls, 1);
	CHECK_INT(l[0].error, 0);
	CHECK_STR(l[0].sha, SHA_A);
	CHECK_INT(count_requests("GET"), 3);
	/* three 5xx: given up */
	fail_next(3, 500, NULL, 0);
	CHECK_INT(github_client_branch_head(e.gc, "o/r", "main", on_head, &l[1]), 0);
	wait_lookups(&e, &l[1], 1);
	CHECK_INT(l[1].calls, 1);
	CHECK_INT(l[1].error, -EIO);
	CHECK_INT(count_requests("GET"), 6);
	env_close(&e);
}

static void test_lookup_rate_limited(void)
{
	struct env e;
	env_init(&e, NULL);
	char headers[128];
	snprintf(headers, sizeof(headers),
		 "{\"X-RateLimit-Remaining\": \"0\", \"X-RateLimit-Reset\": \"%lld\"}",
		 (long long)time(NULL) + 30);
	fail_next(1, 403, headers, 0);
	struct lookup l = {0};
	CHECK_INT(github_client_branch_head(e.gc, REPO, "main", on_head, &l), 0);
	wait_lookups(&e, &l, 1);
	CHECK_INT(l.error, -EAGAIN);
	CHECK(strstr(l.message, "rate limited") != NULL);
	CHECK_INT(stats(&e).rate_limited, 1);
	CHECK_INT(count_requests("GET"), 1); /* not retried */
	env_close(&e);
}

static void test_lookup_network_error(void)
{
	/* a port nobody listens on */
	uv_loop_t tmp;
	uv_loop_init(&tmp);
	uv_tcp_t t;
	uv_tcp_init(&tmp, &t);
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	uv_tcp_bind(&t, (const struct sockaddr *)&sa, 0);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
	int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&tmp, UV_RUN_DEFAULT);
	uv_loop_close(&tmp);

	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	struct github_client_opts o = default_opts();
	o.api_url = url;
	o.max_attempts = 2;
	struct env e;
	env_init(&e, &o);
	struct lookup l = {0};
	CHECK_INT(github_client_branch_head(e.gc, REPO, "main", on_head, &l), 0);
	wait_lookups(&e, &l, 1);
	CHECK_INT(l.error, -ECONNREFUSED);
	CHECK(strstr(l.message, "GET /repos/oca/server-tools/branches/main") == l.message);
	/* statuses retry, then give up */
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "pending", "x", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.failed, 1);
	CHECK_INT(s.retried, 1);
	CHECK_INT(s.sent, 0);
	env_close(&e);
}

/* ---- statuses ---- */

static void test_status_post(void)
{
	struct env e;
	env_init(&e, NULL);
	CHECK_INT(github_client_post_status(e.gc, "OCA/Server-Tools", SHA_A, "pending",
					    "build queued", "http://runboat.test/builds/b1234"),
		  0);
	CHECK_INT(stats(&e).in_flight + stats(&e).queued, 1);
	CHECK(run_until(&e, queue_idle));
	CHECK_INT(stats(&e).sent, 1);
	json_t *st = statuses();
	CHECK_INT(json_array_size(st), 1);
	json_t *s = json_array_get(st, 0);
	CHECK_STR(field(s, "repo"), REPO);
	CHECK_STR(field(s, "sha"), SHA_A);
	CHECK_STR(field(s, "state"), "pending");
	CHECK_STR(field(s, "context"), GITHUB_STATUS_CONTEXT);
	CHECK_STR(field(s, "description"), "build queued");
	CHECK_STR(field(s, "target_url"), "http://runboat.test/builds/b1234");
	json_decref(st);

	/* no description, no url */
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "error", NULL, ""), 0);
	CHECK(run_until(&e, queue_idle));
	st = statuses();
	s = json_array_get(st, 1);
	CHECK_STR(field(s, "state"), "error");
	CHECK(json_is_null(json_object_get(s, "description")));
	CHECK(json_is_null(json_object_get(s, "target_url")));
	json_decref(st);
	env_close(&e);
}

static void test_status_invalid(void)
{
	struct env e;
	env_init(&e, NULL);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "done", "x", NULL), -EINVAL);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, NULL, "x", NULL), -EINVAL);
	CHECK_INT(github_client_post_status(e.gc, "evil", SHA_A, "success", "x", NULL), -EINVAL);
	CHECK_INT(github_client_post_status(e.gc, REPO, "abc", "success", "x", NULL), -EINVAL);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "x", "javascript:x"),
		  -EINVAL);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "x", "http://a b"),
		  -EINVAL);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "x", "http://a\r\nb"),
		  -EINVAL);
	CHECK_INT(stats(&e).queued + stats(&e).in_flight, 0);
	env_close(&e);
}

/* The description of status i as recorded by the fake (borrowed from st). */
static const char *recorded_description(json_t *st, size_t i)
{
	return field(json_array_get(st, i), "description");
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

static void test_status_description(void)
{
	struct env e;
	env_init(&e, NULL);
	char ascii[301], exact[141], accents[401];
	memset(ascii, 'a', 300);
	ascii[300] = '\0';
	memset(exact, 'b', 140);
	exact[140] = '\0';
	for (int i = 0; i < 200; i++)
		memcpy(accents + 2 * i, "\xc3\xa9", 2);
	accents[400] = '\0';
	/* distinct commits, so nothing coalesces */
	static const char *const shas[] = {
		"1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222",
		"3333333333333333333333333333333333333333", "4444444444444444444444444444444444444444"};
	CHECK_INT(github_client_post_status(e.gc, REPO, shas[0], "success", ascii, NULL), 0);
	CHECK(run_until(&e, queue_idle));
	CHECK_INT(github_client_post_status(e.gc, REPO, shas[1], "success", exact, NULL), 0);
	CHECK(run_until(&e, queue_idle));
	CHECK_INT(github_client_post_status(e.gc, REPO, shas[2], "success", accents, NULL), 0);
	CHECK(run_until(&e, queue_idle));
	CHECK_INT(github_client_post_status(e.gc, REPO, shas[3], "failure",
					    "bad\xff utf8\nnew\xc3 line\xe2\x80", NULL),
		  0);
	CHECK(run_until(&e, queue_idle));
	/* the fake refuses (422) descriptions over 140 characters */
	CHECK_INT(stats(&e).sent, 4);
	CHECK_INT(stats(&e).failed, 0);
	json_t *st = statuses();
	CHECK_INT(json_array_size(st), 4);
	const char *d = recorded_description(st, 0);
	CHECK_INT(utf8_chars(d), 140);
	CHECK(strncmp(d, ascii, 139) == 0);
	CHECK(str_ends_with(d, "\xe2\x80\xa6"));
	CHECK_STR(recorded_description(st, 1), exact);
	d = recorded_description(st, 2);
	CHECK_INT(utf8_chars(d), 140);
	CHECK(str_starts_with(d, "\xc3\xa9\xc3\xa9"));
	CHECK(str_ends_with(d, "\xc3\xa9\xe2\x80\xa6"));
	CHECK_STR(recorded_description(st, 3), "bad? utf8 new? line??");
	json_decref(st);
	env_close(&e);
}

static void test_status_retry_5xx(void)
{
	struct env e;
	env_init(&e, NULL);
	fail_next(2, 503, NULL, 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "ok", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.sent, 1);
	CHECK_INT(s.retried, 2);
	CHECK_INT(s.failed, 0);
	CHECK_INT(count_requests("POST"), 3);
	json_t *st = statuses();
	CHECK_INT(json_array_size(st), 1);
	CHECK_STR(field(json_array_get(st, 0), "state"), "success");
	json_decref(st);
	env_close(&e);
}

static void test_status_gives_up(void)
{
	struct github_client_opts o = default_opts();
	o.max_attempts = 3;
	struct env e;
	env_init(&e, &o);
	fail_next(10, 500, NULL, 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "ok", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.sent, 0);
	CHECK_INT(s.failed, 1);
	CHECK_INT(s.retried, 2);
	CHECK_INT(count_requests("POST"), 3);
	env_close(&e);
}

static void test_status_final_4xx(void)
{
	struct env e;
	env_init(&e, NULL);
	fail_next(1, 422, NULL, 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "ok", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.failed, 1);
	CHECK_INT(s.retried, 0);
	CHECK_INT(s.sent, 0);
	CHECK_INT(count_requests("POST"), 1);
	/* a following status goes out normally */
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "success", "ok", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	CHECK_INT(stats(&e).sent, 1);
	env_close(&e);
}

static void test_status_rate_limits(void)
{
	struct env e;
	env_init(&e, NULL);
	/* Retry-After (capped to max_pause_ms = 200 ms here) */
	fail_next(1, 403, "{\"Retry-After\": \"1\"}", 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "ok", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.sent, 1);
	CHECK_INT(s.rate_limited, 1);
	CHECK_INT(s.retried, 0); /* rate limits do not count as attempts */
	/* 429 with the primary rate-limit headers */
	char headers[128];
	snprintf(headers, sizeof(headers),
		 "{\"X-RateLimit-Remaining\": \"0\", \"X-RateLimit-Reset\": \"%lld\"}",
		 (long long)time(NULL) + 1);
	fail_next(1, 429, headers, 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "success", "ok", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	s = stats(&e);
	CHECK_INT(s.sent, 2);
	CHECK_INT(s.rate_limited, 2);
	/* a secondary rate limit: a bare 403 whose message says so */
	ctl_do("POST", "/_control/fail",
	       "{\"count\": 1, \"status\": 403, \"body\": {\"message\": \"You have exceeded a "
	       "secondary rate limit. Please wait a few minutes before you try again.\"}}");
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_C, "success", "ok", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	s = stats(&e);
	CHECK_INT(s.sent, 3);
	CHECK_INT(s.rate_limited, 3);
	CHECK_INT(s.failed, 0);
	json_t *st = statuses();
	CHECK_INT(json_array_size(st), 3);
	json_decref(st);
	env_close(&e);
}

static bool two_sent(struct env *e)
{
	struct github_client_stats s = stats(e);
	return s.sent == 2 && s.rate_limited == 1;
}

static void test_status_pause_honoured(void)
{
	struct github_client_opts o = default_opts();
	o.max_pause_ms = 60000;
	struct env e;
	env_init(&e, &o);
	fail_next(1, 429, "{\"Retry-After\": \"60\"}", 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "ok", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "success", "ok", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_C, "success", "ok", NULL), 0);
	CHECK(run_until(&e, two_sent));
	/* the three went out together; after the 429 nothing more is sent for
	 * a minute (the other two were already in flight) */
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.rate_limited, 1);
	CHECK_INT(s.sent, 2);
	CHECK_INT(s.queued, 1);
	CHECK_INT(github_client_post_status(e.gc, "o/other", SHA_A, "pending", "later", NULL), 0);
	run_for(&e, 200);
	CHECK_INT(count_requests("POST"), 3);
	s = stats(&e);
	CHECK_INT(s.queued, 2);
	CHECK_INT(s.in_flight, 0);
	/* closing drops what waits, and the loop ends clean */
	env_close(&e);
}

static void test_status_coalesce(void)
{
	struct github_client_opts o = default_opts();
	o.max_in_flight = 1;
	struct env e;
	env_init(&e, &o);
	/* the first request is slow: the others queue behind it */
	fail_next(1, 0, NULL, 0.3);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "pending", "a1", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "pending", "b1", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "success", "b2", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "failure", "b3", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "a2", NULL), 0);
	/* same repo under another case is the same commit */
	CHECK_INT(github_client_post_status(e.gc, "OCA/SERVER-TOOLS", SHA_A, "error", "a3", NULL), 0);
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.in_flight, 1);
	CHECK_INT(s.queued, 2);
	CHECK_INT(s.coalesced, 3);
	CHECK(run_until(&e, queue_idle));
	CHECK_INT(stats(&e).sent, 3);
	json_t *st = statuses();
	CHECK_INT(json_array_size(st), 3);
	CHECK_STR(recorded_description(st, 0), "a1");
	CHECK_STR(recorded_description(st, 1), "b3");
	CHECK_STR(field(json_array_get(st, 1), "state"), "failure");
	CHECK_STR(recorded_description(st, 2), "a3");
	json_decref(st);
	env_close(&e);
}

static void test_status_order_per_commit(void)
{
	/* With room for several in flight, two statuses of one commit still go
	 * one after the other: the fake records the slow first one before the
	 * second. */
	struct env e;
	env_init(&e, NULL);
	fail_next_path(1, 0, NULL, 1.0, "/statuses/" SHA_A);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "pending", "first", NULL), 0);
	CHECK_INT(stats(&e).in_flight, 1);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "second", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "success", "other", NULL), 0);
	CHECK(run_until(&e, queue_idle));
	json_t *st = statuses();
	CHECK_INT(json_array_size(st), 3);
	/* "other" overtook the slow one, "second" did not */
	CHECK_STR(recorded_description(st, 0), "other");
	CHECK_STR(recorded_description(st, 1), "first");
	CHECK_STR(recorded_description(st, 2), "second");
	json_decref(st);
	env_close(&e);
}

static void test_status_queue_bound(void)
{
	struct github_client_opts o = default_opts();
	o.max_in_flight = 1;
	o.max_queue = 3;
	struct env e;
	env_init(&e, &o);
	fail_next(1, 0, NULL, 0.3);
	char shas[6][41];
	for (int i = 0; i < 6; i++) {
		memset(shas[i], '1' + i, 40);
		shas[i][40] = '\0';
		char d[8];
		snprintf(d, sizeof(d), "s%d", i);
		CHECK_INT(github_client_post_status(e.gc, REPO, shas[i], "pending", d, NULL), 0);
	}
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.in_flight, 1);
	CHECK_INT(s.queued, 3);
	CHECK_INT(s.dropped, 2);
	CHECK(run_until(&e, queue_idle));
	json_t *st = statuses();
	CHECK_INT(json_array_size(st), 4);
	/* the oldest queued (s1, s2) were dropped */
	CHECK_STR(recorded_description(st, 0), "s0");
	CHECK_STR(recorded_description(st, 1), "s3");
	CHECK_STR(recorded_description(st, 2), "s4");
	CHECK_STR(recorded_description(st, 3), "s5");
	json_decref(st);
	env_close(&e);
}

static void test_statuses_off(void)
{
	struct github_client_opts o = default_opts();
	o.statuses = false;
	struct env e;
	env_init(&e, &o);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "success", "ok", NULL), 0);
	/* still validated */
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "maybe", "ok", NULL), -EINVAL);
	run_for(&e, 50);
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.queued + s.in_flight + s.sent, 0);
	CHECK_INT(count_requests("POST"), 0);
	env_close(&e);
}

/* ---- shutdown ---- */

static void test_close_pending(void)
{
	struct env e;
	env_init(&e, NULL);
	fail_next_path(10, 0, NULL, 1.0, "/repos/o/pending/");
	struct lookup l = {0};
	CHECK_INT(github_client_branch_head(e.gc, "o/pending", "main", on_head, &l), 0);
	CHECK_INT(github_client_post_status(e.gc, "o/pending", SHA_A, "pending", "x", NULL), 0);
	CHECK_INT(github_client_post_status(e.gc, "o/pending", SHA_A, "success", "y", NULL), 0);
	run_for(&e, 50);
	github_client_close(e.gc);
	CHECK_INT(l.calls, 0); /* cancelled in flight: called back later */
	curl_uv_close(e.cu);
	uv_close((uv_handle_t *)&e.tick, NULL);
	uv_run(&e.loop, UV_RUN_DEFAULT);
	CHECK_INT(l.calls, 1);
	CHECK_INT(l.error, -ECANCELED);
	CHECK_INT(uv_loop_close(&e.loop), 0);
}

static bool lookup_retrying(struct env *e)
{
	return stats(e).lookups_retrying == 1;
}

static void test_close_retrying_and_from_callback(void)
{
	struct github_client_opts o = default_opts();
	o.retry_base_ms = o.retry_max_ms = 5000;
	struct env e;
	env_init(&e, &o);
	ctl_do("PUT", "/_control/branches",
	       "[{\"repo\": \"o/r\", \"branch\": \"main\", \"sha\": \"" SHA_A "\"}]");
	struct lookup l[3] = {0};
	/* l[0] succeeds and closes the client from its callback, while l[1]
	 * waits for a retry (its first answer is a 500) */
	fail_next_path(1, 500, NULL, 0, "/repos/o/r/");
	CHECK_INT(github_client_branch_head(e.gc, "o/r", "main", on_head, &l[1]), 0);
	CHECK_INT(stats(&e).lookups, 1);
	CHECK(run_until(&e, lookup_retrying)); /* answered 500, now waiting 5 s */
	CHECK_INT(l[1].calls, 0);
	CHECK_INT(count_requests("GET"), 1);
	l[0].close_env = &e;
	CHECK_INT(github_client_branch_head(e.gc, "o/r", "main", on_head, &l[0]), 0);
	wait_lookups(&e, l, 2);
	CHECK_INT(l[0].error, 0);
	CHECK_INT(l[1].error, -ECANCELED);
	CHECK(e.gc == NULL);
	curl_uv_close(e.cu);
	uv_close((uv_handle_t *)&e.tick, NULL);
	uv_run(&e.loop, UV_RUN_DEFAULT);
	CHECK_INT(l[0].calls, 1);
	CHECK_INT(l[1].calls, 1);
	CHECK_INT(uv_loop_close(&e.loop), 0);
}

static void test_close_after_curl(void)
{
	/* the transport closed first: requests end cancelled, nothing leaks */
	struct env e;
	env_init(&e, NULL);
	fail_next_path(10, 0, NULL, 1.0, "/repos/o/late/"); /* both requests hang */
	struct lookup l = {0};
	CHECK_INT(github_client_branch_head(e.gc, "o/late", "main", on_head, &l), 0);
	CHECK_INT(github_client_post_status(e.gc, "o/late", SHA_A, "pending", "x", NULL), 0);
	run_for(&e, 50);
	curl_uv_close(e.cu);
	CHECK_INT(l.calls, 1);
	CHECK_INT(l.error, -ECANCELED);
	/* further work is refused or dropped */
	CHECK_INT(github_client_branch_head(e.gc, REPO, "main", on_head, &l), -ECANCELED);
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_B, "pending", "x", NULL), 0);
	CHECK_INT(stats(&e).queued, 0);
	github_client_close(e.gc);
	uv_close((uv_handle_t *)&e.tick, NULL);
	uv_run(&e.loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&e.loop), 0);
}

static void test_new_invalid(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct curl_uv *cu = curl_uv_new(&loop);
	struct github_client_opts o = default_opts();
	o.api_url = "ftp://x";
	CHECK(github_client_new(&loop, cu, &o) == NULL);
	o.api_url = NULL;
	CHECK(github_client_new(&loop, cu, &o) == NULL);
	o = default_opts();
	o.token = "abc\r\nX-Evil: 1";
	CHECK(github_client_new(&loop, cu, &o) == NULL);
	o = default_opts();
	o.api_url = "https://github.example.com/api/v3///";
	struct github_client *gc = github_client_new(&loop, cu, &o);
	CHECK(gc != NULL);
	github_client_close(gc);
	curl_uv_close(cu);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_api_prefix(void)
{
	/* GitHub Enterprise style base URL with a path and a trailing '/' */
	char url[96];
	snprintf(url, sizeof(url), "%s/api/v3/", fake_url);
	struct github_client_opts o = default_opts();
	o.api_url = url;
	struct env e;
	env_init(&e, &o);
	struct lookup l = {0};
	CHECK_INT(github_client_branch_head(e.gc, REPO, "main", on_head, &l), 0);
	wait_lookups(&e, &l, 1);
	json_t *reqs = ctl("GET", "/_control/requests", NULL);
	CHECK_STR(field(json_array_get(reqs, 0), "path"), "/api/v3/repos/oca/server-tools/branches/main");
	json_decref(reqs);
	env_close(&e);
}

/* ---- listings ---- */

static void test_link_next(void)
{
	char *s;
	s = github_link_next("<https://api.github.com/repositories/1/branches?page=2>; rel=\"next\", "
			     "<https://api.github.com/repositories/1/branches?page=5>; rel=\"last\"");
	CHECK_STR(s, "https://api.github.com/repositories/1/branches?page=2");
	free(s);
	/* next not first; unquoted; case; several relation types; spaces */
	s = github_link_next("<http://x/a?page=1>; rel=\"prev first\" ,  <http://x/a?page=3> ;"
			     " title=\"a, b; c\" ; REL=\"last NEXT\"");
	CHECK_STR(s, "http://x/a?page=3");
	free(s);
	s = github_link_next("<http://x/a?page=4>; rel=next");
	CHECK_STR(s, "http://x/a?page=4");
	free(s);
	CHECK(github_link_next("<http://x/a?page=4>; rel=\"last\"") == NULL);
	CHECK(github_link_next("") == NULL);
	CHECK(github_link_next(NULL) == NULL);
	CHECK(github_link_next("http://x/a; rel=next") == NULL);   /* no <> */
	CHECK(github_link_next("<http://x/a; rel=next") == NULL);   /* unclosed */
	CHECK(github_link_next("<http://x/a>; rel=\"next") == NULL); /* unclosed quote */
	CHECK(github_link_next("<>; rel=next") == NULL);
	CHECK(github_link_next("<http://x/a> junk; rel=next") == NULL);
	CHECK(github_link_next("<http://x/a>; relation=next") == NULL);
	CHECK(github_link_next("<http://x/a>; rel=nextpage") == NULL);
	s = github_link_next(",,<http://x/b>;rel=next,");
	CHECK_STR(s, "http://x/b");
	free(s);
}

static void test_parse_list_page(void)
{
	struct github_list_item *it;
	size_t n;
	unsigned skipped = 0;
	char err[256];
	const char *b = "[{\"name\": \"16.0\", \"commit\": {\"sha\": \"" SHA_A "\"}},"
			" {\"name\": \"feat/x\", \"commit\": {\"sha\": \"EC26C3E57CA3A959CA5AAD62DE7213C562F8C821\"}},"
			" {\"name\": \"bad..name\", \"commit\": {\"sha\": \"" SHA_A "\"}},"
			" {\"name\": 12}, 7, null,"
			" {\"name\": \"nosha\", \"commit\": {\"sha\": \"xyz\"}},"
			" {\"name\": \"tab\\tx\", \"commit\": {\"sha\": \"" SHA_A "\"}}]";
	CHECK_INT(github_parse_list_page(GITHUB_LIST_BRANCHES, b, strlen(b), &it, &n, &skipped, err,
					 sizeof(err)), 0);
	CHECK_INT(n, 3);
	CHECK_INT(skipped, 5);
	CHECK_STR(it[0].name, "16.0");
	CHECK_STR(it[0].sha, SHA_A);
	CHECK_INT(it[0].pr, 0);
	CHECK_STR(it[1].name, "feat/x");
	CHECK_STR(it[1].sha, SHA_B);
	CHECK_STR(it[2].name, "nosha");
	CHECK_STR(it[2].sha, "");
	github_list_items_free(it, n);

	skipped = 0;
	const char *p = "[{\"number\": 5, \"state\": \"open\", \"head\": {\"sha\": \"" SHA_A "\"},"
			"  \"base\": {\"ref\": \"16.0\"}},"
			" {\"number\": 6, \"state\": \"closed\", \"head\": {\"sha\": \"" SHA_A "\"},"
			"  \"base\": {\"ref\": \"16.0\"}},"
			" {\"number\": 0, \"head\": {\"sha\": \"" SHA_A "\"}, \"base\": {\"ref\": \"16.0\"}},"
			" {\"number\": 3000000000, \"head\": {\"sha\": \"" SHA_A "\"}},"
			" {\"number\": \"7\"},"
			" {\"number\": 8, \"head\": {\"sha\": \"" SHA_B "\"}, \"base\": {\"ref\": \"-x\"}},"
			" {\"number\": 9}]";
	CHECK_INT(github_parse_list_page(GITHUB_LIST_PULLS, p, strlen(p), &it, &n, &skipped, err,
					 sizeof(err)), 0);
	CHECK_INT(n, 3);
	CHECK_INT(skipped, 4);
	CHECK_INT(it[0].pr, 5);
	CHECK_STR(it[0].base, "16.0");
	CHECK_STR(it[0].sha, SHA_A);
	CHECK(it[0].name == NULL);
	CHECK_INT(it[1].pr, 8);
	CHECK_STR(it[1].base, ""); /* invalid base: head unknown */
	CHECK_STR(it[1].sha, SHA_B);
	CHECK_INT(it[2].pr, 9);
	CHECK_STR(it[2].sha, "");
	github_list_items_free(it, n);

	CHECK_INT(github_parse_list_page(GITHUB_LIST_PULLS, "[]", 2, &it, &n, &skipped, err,
					 sizeof(err)), 0);
	CHECK_INT(n, 0);
	CHECK(it == NULL);
	CHECK_INT(github_parse_list_page(GITHUB_LIST_PULLS, "{}", 2, &it, &n, &skipped, err,
					 sizeof(err)), -EPROTO);
	CHECK(strstr(err, "not a JSON array") != NULL);
	CHECK_INT(github_parse_list_page(GITHUB_LIST_PULLS, "[1,", 3, &it, &n, &skipped, err,
					 sizeof(err)), -EPROTO);
	/* a NUL in a string: jansson refuses the whole page */
	const char *nul = "[{\"name\": \"a\\u0000b\"}]";
	CHECK_INT(github_parse_list_page(GITHUB_LIST_BRANCHES, nul, strlen(nul), &it, &n, &skipped,
					 err, sizeof(err)), -EPROTO);
	struct buf big = {0};
	buf_append_str(&big, "[");
	for (int i = 0; i < 1001; i++)
		buf_append_str(&big, i ? ",{}" : "{}");
	buf_append_str(&big, "]");
	CHECK_INT(github_parse_list_page(GITHUB_LIST_BRANCHES, big.data, big.len, &it, &n, &skipped,
					 err, sizeof(err)), -EPROTO);
	CHECK(strstr(err, "1001 entries") != NULL);
	buf_free(&big);
}

struct listing {
	int calls;
	int error;
	char message[512];
	size_t n;
	bool complete;
	unsigned pages, requests, not_modified, skipped;
	char names[16][64];
	long prs[16];
	char shas[16][65];
};

static void on_list(int error, const char *message, const struct github_listing *l, void *data)
{
	struct listing *x = data;
	x->calls++;
	x->error = error;
	snprintf(x->message, sizeof(x->message), "%s", message);
	CHECK(l != NULL);
	x->n = l->n;
	x->complete = l->complete;
	x->pages = l->pages;
	x->requests = l->requests;
	x->not_modified = l->not_modified;
	x->skipped = l->skipped;
	for (size_t i = 0; i < l->n && i < 16; i++) {
		snprintf(x->names[i], 64, "%s", l->items[i].name ? l->items[i].name : "");
		x->prs[i] = l->items[i].pr;
		snprintf(x->shas[i], 65, "%s", l->items[i].sha);
	}
}

static struct listing *listing_wait;
static bool listing_done(struct env *e)
{
	UNUSED(e);
	return listing_wait->calls > 0;
}

static void list_and_wait(struct env *e, enum github_list_kind kind, const char *repo,
			  struct listing *x)
{
	memset(x, 0, sizeof(*x));
	CHECK_INT(github_client_list(e->gc, kind, repo, on_list, x), 0);
	CHECK_INT(x->calls, 0); /* never from inside the call */
	listing_wait = x;
	CHECK(run_until(e, listing_done));
	CHECK_INT(x->calls, 1);
}

static json_t *counts(void)
{
	json_t *j = ctl("GET", "/_control/counts", NULL);
	return j ? j : json_object();
}

static long long count_of(const char *key)
{
	json_t *j = counts();
	long long n = json_integer_value(json_object_get(j, key));
	json_decref(j);
	return n;
}

static void set_branches(int n, const char *sha_of_third)
{
	struct buf b = {0};
	buf_append_str(&b, "[");
	for (int i = 0; i < n; i++)
		buf_printf(&b, "%s{\"repo\": \"" REPO "\", \"branch\": \"br%02d\", \"sha\": \"%s\"}",
			   i ? "," : "", i, i == 2 && sha_of_third ? sha_of_third : SHA_A);
	buf_append_str(&b, "]");
	ctl_do("PUT", "/_control/branches", b.data);
	buf_free(&b);
}

static void test_list_pages_and_etags(void)
{
	struct env e;
	env_init(&e, NULL);
	set_branches(5, NULL);
	ctl_do("PUT", "/_control/settings", "{\"max_per_page\": 2}");
	struct listing x;
	list_and_wait(&e, GITHUB_LIST_BRANCHES, "OCA/Server-Tools", &x);
	CHECK_INT(x.error, 0);
	CHECK(x.complete);
	CHECK_INT(x.n, 5);
	CHECK_INT(x.pages, 3);
	CHECK_INT(x.requests, 3);
	CHECK_INT(x.not_modified, 0);
	for (int i = 0; i < 5; i++) {
		char want[8];
		snprintf(want, sizeof(want), "br%02d", i);
		CHECK_STR(x.names[i], want);
		CHECK_STR(x.shas[i], SHA_A);
	}
	/* the pages after the first came from the Link header (the fake's
	 * /repositories/{id} form) */
	json_t *reqs = ctl("GET", "/_control/requests", NULL);
	CHECK_STR(field(json_array_get(reqs, 0), "path"),
		  "/repos/oca/server-tools/branches?per_page=100");
	CHECK(str_starts_with(field(json_array_get(reqs, 1), "path"), "/repositories/"));
	CHECK(strstr(field(json_array_get(reqs, 2), "path"), "page=3") != NULL);
	CHECK_STR(field(json_object_get(json_array_get(reqs, 0), "headers"), "if-none-match"),
		  "(none)");
	json_decref(reqs);
	long long remaining = count_of("rate_remaining");
	CHECK_INT(stats(&e).rate_remaining, remaining);
	CHECK_INT(stats(&e).rate_limit, 5000);
	CHECK(stats(&e).rate_reset > (int64_t)time(NULL));
	CHECK_INT(stats(&e).etag_entries, 3);

	/* again: every page 304, free */
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, 0);
	CHECK_INT(x.n, 5);
	CHECK_INT(x.requests, 3);
	CHECK_INT(x.not_modified, 3);
	CHECK_STR(x.names[4], "br04");
	CHECK_INT(count_of("not_modified"), 3);
	CHECK_INT(count_of("rate_remaining"), remaining);
	reqs = ctl("GET", "/_control/requests", NULL);
	CHECK(str_starts_with(field(json_object_get(json_array_get(reqs, 3), "headers"),
				    "if-none-match"), "W/\""));
	json_decref(reqs);

	/* one page changes: it alone is read again */
	set_branches(5, SHA_B);
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.n, 5);
	CHECK_INT(x.not_modified, 2);
	CHECK_STR(x.shas[2], SHA_B);
	CHECK_INT(count_of("rate_remaining"), remaining - 1);
	struct github_client_stats s = stats(&e);
	CHECK_INT(s.list_requests, 9);
	CHECK_INT(s.list_not_modified, 5);

	/* a branch deleted: the pages shift */
	ctl_do("PUT", "/_control/branches", "[{\"repo\": \"" REPO "\", \"branch\": \"br00\", \"sha\": null}]");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.n, 4);
	CHECK_INT(x.pages, 2);
	CHECK_STR(x.names[0], "br01");
	env_close(&e);
}

static void test_list_full_last_page(void)
{
	/* two full pages; then a branch that sorts after all the others: both
	 * pages are unchanged (304), a third one follows */
	struct env e;
	env_init(&e, NULL);
	set_branches(4, NULL);
	ctl_do("PUT", "/_control/settings", "{\"max_per_page\": 2}");
	struct listing x;
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.n, 4);
	CHECK_INT(x.pages, 2);
	ctl_do("PUT", "/_control/branches",
	       "[{\"repo\": \"" REPO "\", \"branch\": \"zz\", \"sha\": \"" SHA_C "\"}]");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, 0);
	CHECK_INT(x.n, 5);
	CHECK_STR(x.names[4], "zz");
	CHECK_STR(x.shas[4], SHA_C);
	CHECK_INT(x.requests, 4); /* page 2 asked again without If-None-Match */
	CHECK_INT(x.not_modified, 1);
	/* a last page that is not full is trusted */
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.n, 5);
	CHECK_INT(x.requests, 3);
	CHECK_INT(x.not_modified, 3);
	/* one page of 100: full, read again each time (a 101st may follow) */
	ctl_do("POST", "/_control/reset", NULL);
	set_branches(100, NULL);
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.n, 100);
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.n, 100);
	CHECK_INT(x.requests, 2);
	CHECK_INT(x.not_modified, 0);
	env_close(&e);
}

static void test_list_pulls(void)
{
	struct env e;
	env_init(&e, NULL);
	ctl_do("PUT", "/_control/pulls",
	       "[{\"repo\": \"" REPO "\", \"number\": 3, \"head_sha\": \"" SHA_A "\", \"base_ref\": \"16.0\"},"
	       " {\"repo\": \"" REPO "\", \"number\": 4, \"head_sha\": \"" SHA_B "\", \"base_ref\": \"17.0\","
	       "  \"state\": \"closed\"},"
	       " {\"repo\": \"" REPO "\", \"number\": 12, \"head_sha\": \"" SHA_C "\", \"base_ref\": \"16.0\"}]");
	struct listing x;
	list_and_wait(&e, GITHUB_LIST_PULLS, REPO, &x);
	CHECK_INT(x.error, 0);
	CHECK_INT(x.n, 2);
	CHECK_INT(x.prs[0], 12);
	CHECK_STR(x.shas[0], SHA_C);
	CHECK_INT(x.prs[1], 3);
	json_t *reqs = ctl("GET", "/_control/requests", NULL);
	CHECK_STR(field(json_array_get(reqs, 0), "path"),
		  "/repos/oca/server-tools/pulls?state=open&per_page=100");
	json_decref(reqs);
	/* an unknown repository: 404, nothing complete */
	list_and_wait(&e, GITHUB_LIST_PULLS, "nobody/nothing", &x);
	CHECK_INT(x.error, -ENOENT);
	CHECK(!x.complete);
	CHECK(strstr(x.message, "404") != NULL);
	CHECK_INT(github_client_list(e.gc, GITHUB_LIST_PULLS, "not a repo", on_list, &x), -EINVAL);
	CHECK_INT(github_client_list(e.gc, 7, REPO, on_list, &x), -EINVAL);
	env_close(&e);
}

static void test_list_hostile(void)
{
	struct env e;
	env_init(&e, NULL);
	set_branches(3, NULL);
	struct listing x;
	/* a next page elsewhere: the token must not follow it */
	const char *evil[] = {
		"{\"Link\": \"<http://evil.example/repos/x/branches?page=2>; rel=\\\"next\\\"\"}",
		"{\"Link\": \"<%s.evil.example/x?page=2>; rel=\\\"next\\\"\"}",
		"{\"Link\": \"<%s0/x?page=2>; rel=\\\"next\\\"\"}",
		"{\"Link\": \"<%s/repos/../../x?page=2>; rel=\\\"next\\\"\"}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(evil); i++) {
		char h[512];
		snprintf(h, sizeof(h), evil[i], fake_url);
		char body[768];
		snprintf(body, sizeof(body),
			 "{\"count\": 1, \"status\": 200, \"headers\": %s, \"body\": [], \"path\": \"branches\"}",
			 h);
		ctl_do("POST", "/_control/fail", body);
		list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
		CHECK_INT(x.error, -EPROTO);
		CHECK(strstr(x.message, "leaves") != NULL);
		CHECK(!x.complete);
		CHECK_INT(x.requests, 1);
	}
	/* a loop back to the first page */
	char h[512], body[768];
	snprintf(h, sizeof(h),
		 "{\"Link\": \"<%s/repos/oca/server-tools/branches?per_page=100>; rel=\\\"next\\\"\"}",
		 fake_url);
	snprintf(body, sizeof(body),
		 "{\"count\": 1, \"status\": 200, \"headers\": %s, \"body\": [], \"path\": \"branches\"}", h);
	ctl_do("POST", "/_control/fail", body);
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, -EPROTO);
	CHECK(strstr(x.message, "loop") != NULL);
	/* not an array */
	ctl_do("POST", "/_control/fail",
	       "{\"count\": 1, \"status\": 200, \"body\": {\"message\": \"hi\"}, \"path\": \"branches\"}");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, -EPROTO);
	CHECK(strstr(x.message, "not a JSON array") != NULL);
	/* a 304 without having asked for one */
	ctl_do("POST", "/_control/fail", "{\"count\": 1, \"status\": 304, \"path\": \"branches\"}");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, "o/never-listed", &x);
	CHECK_INT(x.error, -EPROTO);
	CHECK(strstr(x.message, "304") != NULL);
	/* 5xx is retried, within the listing */
	fail_next_path(1, 502, NULL, 0, "branches");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, 0);
	CHECK_INT(x.n, 3);
	CHECK_INT(x.requests, 2);
	/* ... a few times only */
	fail_next_path(5, 500, NULL, 0, "branches");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, -EIO);
	CHECK_INT(x.requests, 3);
	env_close(&e);
}

static void test_list_max_pages_and_cache_bound(void)
{
	struct github_client_opts o = default_opts();
	o.max_pages = 2;
	o.etag_entries = 2;
	struct env e;
	env_init(&e, &o);
	set_branches(5, NULL);
	ctl_do("PUT", "/_control/settings", "{\"max_per_page\": 2}");
	struct listing x;
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, -E2BIG);
	CHECK(!x.complete);
	CHECK_INT(x.n, 4); /* what was read is given */
	CHECK_INT(x.requests, 2);
	CHECK(strstr(x.message, "more than 2 pages") != NULL);
	CHECK_INT(stats(&e).etag_entries, 2);
	env_close(&e);

	/* a byte budget smaller than one page: nothing kept, all still read */
	o = default_opts();
	o.etag_bytes = 64;
	env_init(&e, &o);
	set_branches(5, NULL);
	ctl_do("PUT", "/_control/settings", "{\"max_per_page\": 2}");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, 0);
	CHECK_INT(x.n, 5);
	CHECK_INT(stats(&e).etag_entries, 0);
	CHECK_INT(stats(&e).etag_bytes, 0);
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.not_modified, 0);
	env_close(&e);

	/* many repositories: the cache stays within its bounds */
	o = default_opts();
	o.etag_entries = 3;
	env_init(&e, &o);
	for (int i = 0; i < 6; i++) {
		char repo[32], body[128];
		snprintf(repo, sizeof(repo), "o/r%d", i);
		snprintf(body, sizeof(body), "[{\"repo\": \"%s\"}]", repo);
		ctl_do("PUT", "/_control/repos", body);
		list_and_wait(&e, GITHUB_LIST_PULLS, repo, &x);
		CHECK_INT(x.error, 0);
		CHECK(stats(&e).etag_entries <= 3);
	}
	/* the most recent are kept: o/r5 answers 304 */
	list_and_wait(&e, GITHUB_LIST_PULLS, "o/r5", &x);
	CHECK_INT(x.not_modified, 1);
	list_and_wait(&e, GITHUB_LIST_PULLS, "o/r0", &x);
	CHECK_INT(x.not_modified, 0);
	env_close(&e);
}

static void test_list_close(void)
{
	/* closing with a listing in flight and one waiting for its retry:
	 * both called back with -ECANCELED, nothing leaked */
	struct github_client_opts o = default_opts();
	o.retry_base_ms = o.retry_max_ms = 5000;
	struct env e;
	env_init(&e, &o);
	set_branches(3, NULL);
	fail_next_path(1, 0, NULL, 2.0, "server-tools/branches"); /* slow */
	struct listing x = {0}, y = {0};
	CHECK_INT(github_client_list(e.gc, GITHUB_LIST_BRANCHES, REPO, on_list, &x), 0);
	run_for(&e, 100);
	ctl_do("PUT", "/_control/repos", "[{\"repo\": \"o/other\"}]");
	fail_next_path(1, 503, NULL, 0, "other/pulls");
	CHECK_INT(github_client_list(e.gc, GITHUB_LIST_PULLS, "o/other", on_list, &y), 0);
	run_for(&e, 200); /* y failed once and waits for its retry (5 s) */
	CHECK_INT(stats(&e).lookups_retrying, 1);
	github_client_close(e.gc);
	e.gc = NULL;
	run_for(&e, 100);
	CHECK_INT(x.calls, 1);
	CHECK_INT(x.error, -ECANCELED);
	CHECK_INT(y.calls, 1);
	CHECK_INT(y.error, -ECANCELED);
	env_close(&e);
}

static void test_list_rate_limits(void)
{
	struct github_client_opts o = default_opts();
	o.max_pause_ms = 2000;
	struct env e;
	env_init(&e, &o);
	set_branches(5, NULL);
	ctl_do("PUT", "/_control/settings", "{\"max_per_page\": 2}");
	/* the budget runs out on the first page: the next pages are not asked */
	ctl_do("PUT", "/_control/ratelimit", "{\"remaining\": 1, \"reset_in\": 1}");
	struct listing x;
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, -EAGAIN);
	CHECK(!x.complete);
	CHECK_INT(x.n, 2);
	CHECK_INT(x.requests, 1);
	CHECK_INT(stats(&e).rate_remaining, 0);
	CHECK(github_client_paused_ms(e.gc) > 0);
	CHECK(github_client_paused_ms(e.gc) <= 2000);
	CHECK_INT(github_client_list(e.gc, GITHUB_LIST_BRANCHES, REPO, on_list, &x), -EAGAIN);
	CHECK_INT(count_of("requests"), 1);
	/* after the reset */
	run_for(&e, 2100);
	CHECK_INT(github_client_paused_ms(e.gc), 0);
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, 0);
	CHECK_INT(x.n, 5);

	/* a secondary rate limit: 403 with Retry-After */
	ctl_do("POST", "/_control/fail",
	       "{\"count\": 1, \"status\": 403, \"headers\": {\"Retry-After\": \"1\"},"
	       " \"body\": {\"message\": \"You have exceeded a secondary rate limit.\"}, \"path\": \"branches\"}");
	list_and_wait(&e, GITHUB_LIST_BRANCHES, REPO, &x);
	CHECK_INT(x.error, -EAGAIN);
	CHECK(strstr(x.message, "rate limited") != NULL);
	CHECK(github_client_paused_ms(e.gc) > 0);
	CHECK_INT(x.requests, 1);
	/* statuses wait too */
	CHECK_INT(github_client_post_status(e.gc, REPO, SHA_A, "pending", "x", NULL), 0);
	run_for(&e, 100);
	CHECK_INT(stats(&e).sent, 0);
	CHECK(run_until(&e, queue_idle));
	CHECK_INT(stats(&e).sent, 1);
	env_close(&e);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fake_start();
	RUN(test_branch_head);
	RUN(test_lookup_invalid);
	RUN(test_pr_head);
	RUN(test_lookup_bad_answers);
	RUN(test_lookup_auth);
	RUN(test_lookup_retries);
	RUN(test_lookup_rate_limited);
	RUN(test_lookup_network_error);
	RUN(test_status_post);
	RUN(test_status_invalid);
	RUN(test_status_description);
	RUN(test_status_retry_5xx);
	RUN(test_status_gives_up);
	RUN(test_status_final_4xx);
	RUN(test_status_rate_limits);
	RUN(test_status_pause_honoured);
	RUN(test_status_coalesce);
	RUN(test_status_order_per_commit);
	RUN(test_status_queue_bound);
	RUN(test_statuses_off);
	RUN(test_close_pending);
	RUN(test_close_retrying_and_from_callback);
	RUN(test_close_after_curl);
	RUN(test_new_invalid);
	RUN(test_api_prefix);
	RUN(test_link_next);
	RUN(test_parse_list_page);
	RUN(test_list_pages_and_etags);
	RUN(test_list_full_last_page);
	RUN(test_list_pulls);
	RUN(test_list_hostile);
	RUN(test_list_max_pages_and_cache_bound);
	RUN(test_list_rate_limits);
	RUN(test_list_close);
	fake_stop();
	curl_global_cleanup();
	return UNIT_DONE();
}
