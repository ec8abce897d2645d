/* strmap: the edge cases by hand, then 200,000 random operations checked
 * against a brute-force model (an array of keys), with keys chosen from a
 * small set so that replacements, misses, deletions of absent keys and
 * growth all happen often. */
#include "strmap.h"

#include <stdbool.h>

#include "unit.h"
#include "util.h"

static void test_empty(void)
{
	struct strmap m = {0};
	CHECK(strmap_get(&m, "a") == NULL);
	CHECK(strmap_del(&m, "a") == NULL);
	CHECK_INT(m.count, 0);
	strmap_clear(&m, NULL); /* harmless on an empty map */
	CHECK(m.buckets == NULL);
}

static int values[4];

static void test_put_get_del(void)
{
	struct strmap m = {0};
	CHECK(strmap_put(&m, "a", &values[0]) == NULL);
	CHECK(strmap_put(&m, "", &values[1]) == NULL); /* the empty key is a key */
	CHECK(strmap_get(&m, "a") == &values[0]);
	CHECK(strmap_get(&m, "") == &values[1]);
	CHECK(strmap_get(&m, "b") == NULL);
	CHECK(strmap_get(&m, "a ") == NULL);
	/* replacing returns the old value, the count stays */
	CHECK(strmap_put(&m, "a", &values[2]) == &values[0]);
	CHECK_INT(m.count, 2);
	CHECK(strmap_get(&m, "a") == &values[2]);
	/* NULL values are allowed (and indistinguishable from absent) */
	CHECK(strmap_put(&m, "n", NULL) == NULL);
	CHECK_INT(m.count, 3);
	CHECK(strmap_del(&m, "a") == &values[2]);
	CHECK(strmap_del(&m, "a") == NULL);
	CHECK(strmap_get(&m, "a") == NULL);
	CHECK_INT(m.count, 2);
	strmap_clear(&m, NULL);
	CHECK_INT(m.count, 0);
	CHECK(strmap_get(&m, "") == NULL);
	/* usable again after a clear */
	CHECK(strmap_put(&m, "x", &values[3]) == NULL);
	CHECK(strmap_get(&m, "x") == &values[3]);
	strmap_clear(&m, NULL);
}

static void test_key_is_copied(void)
{
	struct strmap m = {0};
	char key[8] = "abc";
	strmap_put(&m, key, &values[0]);
	key[0] = 'z';
	CHECK(strmap_get(&m, "abc") == &values[0]);
	CHECK(strmap_get(&m, "zbc") == NULL);
	strmap_clear(&m, NULL);
}

static void count_entry(const char *key, void *value, void *data)
{
	int *n = data;
	CHECK(value == &values[0] + (key[0] - 'a') % 4);
	(*n)++;
}

static int freed;

static void free_counted(void *v)
{
	freed++;
	free(v);
}

static void test_each_and_clear_free(void)
{
	struct strmap m = {0};
	char key[2] = "a";
	for (int i = 0; i < 20; i++) {
		key[0] = (char)('a' + i);
		strmap_put(&m, key, &values[0] + i % 4);
	}
	int n = 0;
	strmap_each(&m, count_entry, &n);
	CHECK_INT(n, 20);
	strmap_clear(&m, NULL);

	/* clear hands every value to free_value once */
	for (int i = 0; i < 1000; i++) {
		char k[16];
		snprintf(k, sizeof k, "k%d", i);
		strmap_put(&m, k, xstrdup(k));
	}
	freed = 0;
	strmap_clear(&m, free_counted);
	CHECK_INT(freed, 1000);
}

/* ---- model-based ---- */

#define NKEYS 300
#define STEPS 200000

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

struct model {
	bool present[NKEYS];
	void *value[NKEYS];
	size_t count;
};

static void key_of(unsigned i, char *out, size_t n)
{
	/* long and short keys, some sharing prefixes */
	if (i % 3 == 0)
		snprintf(out, n, "%u", i);
	else if (i % 3 == 1)
		snprintf(out, n, "refs/heads/branch-%u", i);
	else
		snprintf(out, n, "b%032x", i * 2654435761u);
}

static void check_each(const char *key, void *value, void *data)
{
	struct model *mo = data;
	/* find the key in the model */
	for (unsigned i = 0; i < NKEYS; i++) {
		char k[64];
		key_of(i, k, sizeof k);
		if (strcmp(k, key) == 0) {
			CHECK(mo->present[i]);
			CHECK(mo->value[i] == value);
			mo->present[i] = false; /* each key seen once */
			return;
		}
	}
	CHECK(!"strmap_each gave a key the model does not know");
}

static char slots[1000];

static void test_model(void)
{
	struct strmap m = {0};
	struct model mo = {0};
	int fails = unit_failures;
	for (int step = 0; step < STEPS && unit_failures == fails; step++) {
		unsigned i = rnd(NKEYS);
		char k[64];
		key_of(i, k, sizeof k);
		void *v = &slots[rnd(ARRAY_SIZE(slots))]; /* opaque, never dereferenced */
		switch (rnd(10)) {
		case 0: case 1: case 2: case 3: {
			void *old = strmap_put(&m, k, v);
			CHECK(old == (mo.present[i] ? mo.value[i] : NULL));
			if (!mo.present[i])
				mo.count++;
			mo.present[i] = true;
			mo.value[i] = v;
			break;
		}
		case 4: case 5: case 6: {
			void *old = strmap_del(&m, k);
			CHECK(old == (mo.present[i] ? mo.value[i] : NULL));
			if (mo.present[i])
				mo.count--;
			mo.present[i] = false;
			break;
		}
		case 7: case 8:
			CHECK(strmap_get(&m, k) == (mo.present[i] ? mo.value[i] : NULL));
			break;
		default:
			if (rnd(500) == 0) { /* now and then start over */
				strmap_clear(&m, NULL);
				memset(&mo, 0, sizeof mo);
			}
			break;
		}
		CHECK_INT(m.count, mo.count);
	}
	/* every entry, once, with its value */
	struct model copy = mo;
	strmap_each(&m, check_each, &copy);
	for (unsigned i = 0; i < NKEYS; i++)
		CHECK(!copy.present[i]);
	strmap_clear(&m, NULL);
}

int main(void)
{
	RUN(test_empty);
	RUN(test_put_get_del);
	RUN(test_key_is_copied);
	RUN(test_each_and_clear_free);
	RUN(test_model);
	return UNIT_DONE();
}
