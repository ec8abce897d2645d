/* The intrusive seeded hash map (src/hmap.h): the empty map, basics, growth,
 * removal while iterating, the seed (another seed spreads keys one seed
 * piles into one bucket), two keys with the very same hash (a seed solved
 * for it), and a model check against a brute-force array over random
 * inserts, removals, finds and full iterations. */
#include "hmap.h"

#include <stdbool.h>

#include "backoff.h"
#include "unit.h"
#include "util.h"

struct item {
	int v;
	struct hnode hn;
	char name[32];
};

static struct item *item_of(struct hnode *n)
{
	return n ? hmap_entry(n, struct item, hn) : NULL;
}

static void test_empty(void)
{
	struct hmap z = {0}, m;
	hmap_init(&m, 7);
	CHECK(hmap_find(&z, "a") == NULL);
	CHECK(hmap_find(&m, "") == NULL);
	CHECK(hmap_find_hashed(&m, "a", hmap_hash(&m, "a")) == NULL);
	CHECK(hmap_first(&m) == NULL);
	CHECK(m.buckets == NULL); /* nothing allocated before the first insert */
	hmap_free_buckets(&m);    /* harmless */
	CHECK_INT(m.count, 0);
	CHECK(m.seed == 7);
}

static void test_basics(void)
{
	struct hmap m;
	hmap_init(&m, 1);
	enum { N = 1000 };
	struct item *items = xcalloc(N, sizeof(*items));
	for (int i = 0; i < N; i++) {
		items[i].v = i;
		if (i) /* item 0: the empty key */
			snprintf(items[i].name, sizeof(items[i].name), "build-%d", i);
		items[i].hn.key = items[i].name; /* borrowed */
		hmap_insert(&m, &items[i].hn);
		CHECK(m.count <= m.nbuckets);
	}
	CHECK_INT(m.count, N);
	CHECK(m.nbuckets >= N && (m.nbuckets & (m.nbuckets - 1)) == 0);
	CHECK(item_of(hmap_find(&m, "")) == &items[0]); /* the empty key is a key */
	CHECK(item_of(hmap_find(&m, "build-999")) == &items[999]);
	CHECK(hmap_find(&m, "build-1000") == NULL);
	CHECK(hmap_find(&m, "build-") == NULL);
	char probe[32] = "build-500"; /* found by value, not by pointer */
	CHECK(item_of(hmap_find(&m, probe)) == &items[500]);
	hmap_remove(&m, &items[500].hn);
	CHECK(hmap_find(&m, "build-500") == NULL);
	CHECK(item_of(hmap_find(&m, "build-501")) == &items[501]);
	CHECK_INT(m.count, N - 1);
	/* removing every other node while iterating visits each once */
	int seen = 0;
	struct hnode *n, *tmp;
	hmap_each_safe(n, tmp, &m) {
		seen++;
		if (item_of(n)->v % 2)
			hmap_remove(&m, n);
	}
	CHECK_INT(seen, N - 1);
	CHECK_INT(m.count, N / 2 - 1); /* the evens but 500 */
	seen = 0;
	hmap_each(n, &m) {
		if (item_of(n)->v % 2 || item_of(n)->v == 500)
			CHECK(!"a removed node is still visited");
		seen++;
	}
	CHECK_INT(seen, N / 2 - 1);
	hmap_free_buckets(&m);
	CHECK_INT(m.count, 0);
	CHECK(hmap_find(&m, "build-2") == NULL);
	CHECK(m.seed == 1);
	free(items);
}

/* Keys a seed puts into bucket 0 of 16 are not piled up with another seed:
 * the seed does take part in the hash. */
static void test_seed(void)
{
	struct hmap a, b;
	hmap_init(&a, 0x1234);
	hmap_init(&b, 0x5678);
	char keys[40][16];
	int k = 0;
	for (int i = 0; k < 40; i++) {
		snprintf(keys[k], sizeof(keys[k]), "n%d", i);
		if ((hmap_hash(&a, keys[k]) & 15) == 0)
			k++;
	}
	int in_zero = 0;
	for (k = 0; k < 40; k++)
		in_zero += (hmap_hash(&b, keys[k]) & 15) == 0;
	CHECK(in_zero < 20);
	CHECK(hmap_hash(&a, "x") != hmap_hash(&b, "x"));
	CHECK(hmap_hash(&a, "x") == hmap_hash(&a, "x"));
}

/* FNV-1a 64 from state s: hash("") is s, hash(c) is (s ^ c) * P (before the
 * same final fold). Solves (s ^ c) * P == s for some byte c, so that "" and
 * c have the same full hash; returns the seed (s ^ the FNV basis) and c. */
static bool collision_seed(uint64_t *seed, unsigned char *c)
{
	const uint64_t P = 0x100000001b3ULL, A = P - 1; /* A = 2 * odd */
	uint64_t odd = A >> 1, inv = odd;
	for (int i = 0; i < 6; i++)
		inv *= 2 - odd * inv; /* inverse mod 2^64 (Newton) */
	for (unsigned x = 1; x < 256; x++) {
		for (unsigned lb = 0; lb < 256; lb++) {
			/* with s's low byte lb, s ^ x == s + d */
			uint64_t d = (uint64_t)((int64_t)(lb ^ x) - (int64_t)lb);
			uint64_t r = 0 - d * P; /* s * A == r */
			if (r & 1)
				continue;
			uint64_t s0 = ((r >> 1) * inv) & (UINT64_MAX >> 1);
			for (int hi = 0; hi < 2; hi++) {
				uint64_t s = s0 | ((uint64_t)hi << 63);
				if ((s & 0xff) == lb && (s ^ x) * P == s) {
					*seed = s ^ 0xcbf29ce484222325ULL;
					*c = (unsigned char)x;
					return true;
				}
			}
		}
	}
	return false;
}

static void test_same_hash(void)
{
	uint64_t seed;
	unsigned char c;
	CHECK(collision_seed(&seed, &c));
	struct hmap m;
	hmap_init(&m, seed);
	struct item a = {.v = 1}, b = {.v = 2};
	b.name[0] = (char)c;
	a.hn.key = a.name; /* "" */
	b.hn.key = b.name;
	CHECK(hmap_hash(&m, a.name) == hmap_hash(&m, b.name));
	hmap_insert(&m, &a.hn);
	CHECK(hmap_find(&m, b.name) == NULL); /* same hash, another key */
	hmap_insert(&m, &b.hn);
	CHECK(item_of(hmap_find(&m, a.name)) == &a);
	CHECK(item_of(hmap_find(&m, b.name)) == &b);
	hmap_remove(&m, &a.hn);
	CHECK(hmap_find(&m, a.name) == NULL);
	CHECK(item_of(hmap_find(&m, b.name)) == &b);
	hmap_insert(&m, &a.hn);
	hmap_remove(&m, &b.hn);
	CHECK(item_of(hmap_find(&m, a.name)) == &a);
	CHECK(hmap_find(&m, b.name) == NULL);
	hmap_free_buckets(&m);
}

/* Random operations on NK keys (among them the same-hash pair), checked
 * against an array of flags: find agrees, count agrees, an iteration visits
 * exactly the keys in, each once, through several doublings. */
static void test_model(void)
{
	enum { NK = 600, STEPS = 60000 };
	uint64_t seed;
	unsigned char c;
	CHECK(collision_seed(&seed, &c));
	struct hmap m;
	hmap_init(&m, seed);
	struct item *items = xcalloc(NK, sizeof(*items));
	bool *in = xcalloc(NK, sizeof(*in));
	int *visits = xcalloc(NK, sizeof(*visits));
	for (int i = 0; i < NK; i++) {
		items[i].v = i;
		if (i == 0)
			items[i].name[0] = '\0';
		else if (i == 1)
			items[i].name[0] = (char)c;
		else
			snprintf(items[i].name, sizeof(items[i].name), "%s%d",
				 i % 3 ? "b-" : "runboat-build-", i);
		items[i].hn.key = items[i].name;
	}
	uint64_t rng = 99;
	size_t count = 0, max_buckets = 0;
	int bad_find = 0, bad_iter = 0;
	for (int step = 0; step < STEPS; step++) {
		/* a bias that shifts over time: the map fills, then drains */
		double fill = (step / 10000) % 2 ? 0.3 : 0.7;
		int i = (int)(backoff_random(&rng) * NK);
		double op = backoff_random(&rng);
		if (op < 0.5) {
			if (!in[i] && backoff_random(&rng) < fill) {
				hmap_insert(&m, &items[i].hn);
				in[i] = true;
				count++;
			} else if (in[i] && backoff_random(&rng) >= fill) {
				hmap_remove(&m, &items[i].hn);
				in[i] = false;
				count--;
			}
		} else if (op < 0.98) {
			char probe[32];
			memcpy(probe, items[i].name, sizeof(probe));
			struct item *got = item_of(hmap_find(&m, probe));
			if (got != (in[i] ? &items[i] : NULL))
				bad_find++;
		} else {
			memset(visits, 0, NK * sizeof(*visits));
			struct hnode *n;
			size_t seen = 0;
			hmap_each(n, &m) {
				visits[item_of(n)->v]++;
				seen++;
			}
			for (int k = 0; k < NK; k++)
				if (visits[k] != (in[k] ? 1 : 0))
					bad_iter++;
			if (seen != count)
				bad_iter++;
		}
		if (m.count != count)
			bad_find++;
		if (m.nbuckets > max_buckets)
			max_buckets = m.nbuckets;
	}
	CHECK_INT(bad_find, 0);
	CHECK_INT(bad_iter, 0);
	CHECK(max_buckets >= 256); /* it grew through several doublings */
	/* drain while iterating */
	struct hnode *n, *tmp;
	hmap_each_safe(n, tmp, &m) {
		in[item_of(n)->v] = false;
		hmap_remove(&m, n);
	}
	CHECK_INT(m.count, 0);
	CHECK(hmap_first(&m) == NULL);
	for (int k = 0; k < NK; k++)
		if (in[k])
			bad_iter++;
	CHECK_INT(bad_iter, 0);
	hmap_free_buckets(&m);
	free(items);
	free(in);
	free(visits);
}

int main(void)
{
	RUN(test_empty);
	RUN(test_basics);
	RUN(test_seed);
	RUN(test_same_hash);
	RUN(test_model);
	return UNIT_DONE();
}
