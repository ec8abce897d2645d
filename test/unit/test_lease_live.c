/* The leader election on the loop (struct lease) against a REAL
 * kube-apiserver (test/cluster): two candidates, each with its own client,
 * on one Lease in a fresh namespace, with short timings (lease 3 s, renew
 * deadline 2 s, retry 0.5 s). Skipped unless RUNBOAT_TEST_KUBECONFIG names
 * an admin kubeconfig. Callbacks are counted; the loop closes with nothing
 * left (uv_loop_close == 0).
 *
 * - the first candidate creates the Lease and leads; the second stands by
 *   and names it;
 * - a release hands over at the second's next attempt;
 * - a leader that vanishes without releasing (freed: as a crash) is taken
 *   over once the Lease has not changed for its duration, not before;
 * - a Lease deleted under its leader is made again by its next renewal;
 *   the release at the end leaves no holder and a 1 s duration. */
#include "lease.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_stub.h"
#include "kube.h"
#include "kubeconfig.h"
#include "log.h"
#include "unit.h"
#include "util.h"

static uv_loop_t loop;
static char ns[64];
static const char *admin_path;

static const struct lease_timing FAST = {3000, 2000, 500};

struct cand {
	const char *label;
	char id[LEASE_IDENTITY_MAX + 1];
	struct kube *kube;
	struct lease *lease;
	int changes;   /* callbacks */
	int led;       /* times it started leading */
	int lost;      /* times it stopped */
	bool leading;
	char leader[LEASE_HOLDER_MAX + 1];
	uint64_t led_at;
	int released;
};

static struct cand *others[2];

static void on_change(bool leading, const char *leader, void *data)
{
	struct cand *c = data;
	c->changes++;
	if (leading && !c->leading) {
		c->led++;
		c->led_at = now_ms();
	}
	if (!leading && c->leading)
		c->lost++;
	c->leading = leading;
	snprintf(c->leader, sizeof c->leader, "%s", leader);
	/* never two leaders at once, as far as this process can tell */
	for (int i = 0; i < 2; i++)
		if (others[i] && others[i] != c && others[i]->leading && c->leading)
			CHECK(!"two candidates lead at once");
}

static void on_released(void *data)
{
	struct cand *c = data;
	c->released++;
}

static struct kube *client(void)
{
	char err[512];
	struct kubeconfig *kc = kubeconfig_load(admin_path, NULL, err, sizeof err);
	if (!kc) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	struct kube_options o = {.qps = -1, .timeout_ms = 1000, .first_byte_timeout_ms = 1000};
	return kube_new(&loop, kc, &o);
}

static void cand_start(struct cand *c, const char *label)
{
	memset(c, 0, sizeof *c);
	c->label = label;
	snprintf(c->id, sizeof c->id, "%s_%08x", label, (unsigned)rand());
	c->kube = client();
	struct lease_opts o = {.namespace = ns, .name = "runboat", .identity = c->id, .timing = FAST};
	c->lease = lease_new(&loop, c->kube, &o, on_change, c);
	lease_start(c->lease);
}

static void cand_stop(struct cand *c)
{
	lease_free(c->lease);
	c->lease = NULL;
	kube_close(c->kube);
	c->kube = NULL;
	c->leading = false;
}

/* Runs the loop until cond holds or ms pass; returns whether it holds. */
#define RUN_FOR(cond, ms)                                                                  \
	({                                                                                 \
		uint64_t _end = now_ms() + (ms);                                           \
		while (!(cond) && now_ms() < _end) {                                       \
			uv_run(&loop, UV_RUN_NOWAIT);                                      \
			log_flush();                                                       \
			uv_sleep(5);                                                       \
		}                                                                          \
		(cond);                                                                    \
	})

struct res {
	int done, error, status;
	json_t *body;
};

static void on_done(const struct kube_result *r, void *data)
{
	struct res *x = data;
	x->done++;
	x->error = r->error;
	x->status = r->status;
	x->body = r->body ? json_incref(r->body) : NULL;
}

static struct res call(struct kube *k, const char *method, const char *path, const char *body)
{
	struct res r = {0};
	kube_request(k, method, path, body ? "application/json" : NULL, body,
		     body ? strlen(body) : 0, on_done, &r);
	loop_run_until(&loop, &r.done, 1);
	return r;
}

static json_t *get_lease(struct kube *k)
{
	char *path = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/runboat", ns);
	struct res r = call(k, "GET", path, NULL);
	free(path);
	CHECK_INT(r.status, 200);
	return r.body;
}

static const char *spec_str(json_t *lease, const char *key)
{
	const char *s = json_string_value(json_object_get(json_object_get(lease, "spec"), key));
	return s ? s : "";
}

static long long spec_int(json_t *lease, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(lease, "spec"), key));
}

static void test_elect_release_takeover(void)
{
	struct cand a, b;
	cand_start(&a, "a");
	others[0] = &a;
	CHECK(RUN_FOR(a.leading, 5000));
	CHECK_INT(a.led, 1);
	cand_start(&b, "b");
	others[1] = &b;
	CHECK(RUN_FOR(b.changes >= 1, 5000));
	CHECK(!b.leading);
	CHECK_STR(b.leader, a.id);
	CHECK_STR(lease_holder(b.lease), a.id);
	json_t *l = get_lease(a.kube);
	CHECK_STR(spec_str(l, "holderIdentity"), a.id);
	CHECK_INT(spec_int(l, "leaseDurationSeconds"), 3);
	CHECK_INT(spec_int(l, "leaseTransitions"), 0);
	json_decref(l);
	/* renewals keep it: several deadlines later, still a, b still waits */
	(void)RUN_FOR(false, 4500);
	CHECK(a.leading && !b.leading);
	CHECK_INT(a.lost, 0);
	l = get_lease(a.kube);
	CHECK(strcmp(spec_str(l, "renewTime"), spec_str(l, "acquireTime")) != 0);
	json_decref(l);

	/* release: a stops at once (told before the call), b leads at its next
	 * attempt (0.5-0.6 s) */
	uint64_t t0 = now_ms();
	lease_release(a.lease, on_released, &a);
	CHECK(!a.leading);
	CHECK_INT(a.lost, 1);
	CHECK_INT(a.released, 0); /* never from inside the call */
	CHECK(RUN_FOR(a.released == 1 && b.leading, 5000));
	uint64_t took = b.led_at - t0;
	fprintf(stderr, "  release -> the other leads in %llu ms\n", (unsigned long long)took);
	CHECK(took < 1500);
	l = get_lease(b.kube);
	CHECK_STR(spec_str(l, "holderIdentity"), b.id);
	CHECK_INT(spec_int(l, "leaseTransitions"), 1);
	json_decref(l);
	cand_stop(&a);

	/* a third candidate stands by; b vanishes without a word (a crash):
	 * c waits out the duration (3 s after it last saw a change), then
	 * takes over */
	struct cand c;
	others[0] = NULL;
	cand_start(&c, "c");
	others[0] = &c;
	CHECK(RUN_FOR(c.changes >= 1, 5000));
	CHECK_STR(c.leader, b.id);
	(void)RUN_FOR(false, 1200);
	t0 = now_ms();
	cand_stop(&b);
	others[1] = NULL;
	CHECK(RUN_FOR(c.leading, 8000));
	took = c.led_at - t0;
	fprintf(stderr, "  crash -> the other leads in %llu ms\n", (unsigned long long)took);
	/* b renewed at most 0.5 s before it vanished; c saw that at most a
	 * retry (0.6 s) later */
	CHECK(took >= 2400);
	CHECK(took < 3000 + 1500);
	l = get_lease(c.kube);
	CHECK_STR(spec_str(l, "holderIdentity"), c.id);
	CHECK_INT(spec_int(l, "leaseTransitions"), 2);
	json_decref(l);

	/* the Lease deleted under the leader: Leases allow create on update,
	 * so its next renewal makes it again (a candidate that read it absent
	 * and creates it first makes that renewal fail with a conflict
	 * instead: one of the two writes wins) */
	char *path = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/runboat", ns);
	struct res r = call(c.kube, "DELETE", path, NULL);
	free(path);
	CHECK_INT(r.status, 200);
	json_decref(r.body);
	(void)RUN_FOR(false, 1500);
	l = get_lease(c.kube);
	CHECK_STR(spec_str(l, "holderIdentity"), c.id);
	json_decref(l);
	CHECK(c.leading);
	lease_release(c.lease, on_released, &c);
	CHECK(RUN_FOR(c.released == 1, 5000));
	l = get_lease(c.kube);
	CHECK_STR(spec_str(l, "holderIdentity"), "");
	CHECK_INT(spec_int(l, "leaseDurationSeconds"), 1);
	json_decref(l);
	cand_stop(&c);
	others[0] = others[1] = NULL;
}

int main(void)
{
	admin_path = getenv("RUNBOAT_TEST_KUBECONFIG");
	if (!admin_path || !*admin_path) {
		fprintf(stderr, "skipped: no cluster (set RUNBOAT_TEST_KUBECONFIG)\n");
		return 0;
	}
	uv_loop_init(&loop);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	snprintf(ns, sizeof ns, "lease-live-%06x", (unsigned)rand() & 0xffffff);
	struct kube *admin = client();
	char *body = xasprintf("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":"
			       "\"%s\"}}", ns);
	struct res r = call(admin, "POST", "/api/v1/namespaces", body);
	free(body);
	CHECK_INT(r.status, 201);
	json_decref(r.body);
	RUN(test_elect_release_takeover);
	char *path = xasprintf("/api/v1/namespaces/%s", ns);
	r = call(admin, "DELETE", path, NULL);
	free(path);
	CHECK_INT(r.status, 200);
	json_decref(r.body);
	kube_close(admin);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK_INT(uv_loop_close(&loop), 0);
	return UNIT_DONE();
}
