/* backoff: the nominal sequence, jitter bounds, the cap, reset, the PRNG. */
#include "backoff.h"
#include "unit.h"

#include <math.h>

static void test_nominal_sequence(void)
{
	struct backoff b;
	backoff_init(&b, 800, 30000, 0.25, 1);
	CHECK_INT(backoff_nominal(&b, 0), 800);
	CHECK_INT(backoff_nominal(&b, 1), 1600);
	CHECK_INT(backoff_nominal(&b, 2), 3200);
	CHECK_INT(backoff_nominal(&b, 3), 6400);
	CHECK_INT(backoff_nominal(&b, 4), 12800);
	CHECK_INT(backoff_nominal(&b, 5), 25600);
	CHECK_INT(backoff_nominal(&b, 6), 30000);
	CHECK_INT(backoff_nominal(&b, 7), 30000);
	CHECK_INT(backoff_nominal(&b, 1000000), 30000); /* no overflow */
}

static void test_defaults(void)
{
	struct backoff b;
	backoff_init(&b, 0, 0, -1, 7);
	CHECK_INT(b.base_ms, BACKOFF_DEFAULT_BASE_MS);
	CHECK_INT(b.max_ms, BACKOFF_DEFAULT_MAX_MS);
	CHECK(b.jitter == BACKOFF_DEFAULT_JITTER);
	backoff_init(&b, 5000, 100, 3.0, 7); /* max below base, jitter above 1 */
	CHECK_INT(b.max_ms, 5000);
	CHECK(b.jitter == 1.0);
	backoff_init(&b, 100, 1000, NAN, 7);
	CHECK(b.jitter == BACKOFF_DEFAULT_JITTER);
}

/* Every draw is within [nominal * (1 - jitter), nominal]; the spread is used. */
static void test_jitter_bounds(void)
{
	for (uint64_t seed = 1; seed <= 200; seed++) {
		struct backoff b;
		backoff_init(&b, 800, 30000, 0.25, seed);
		for (unsigned n = 0; n < 12; n++) {
			uint64_t nominal = backoff_nominal(&b, n);
			uint64_t d = backoff_next(&b);
			if (d > nominal || d < nominal - nominal / 4) {
				CHECK(!"delay out of bounds");
				fprintf(stderr, "  seed %llu attempt %u: %llu not in [%llu, %llu]\n",
					(unsigned long long)seed, n, (unsigned long long)d,
					(unsigned long long)(nominal - nominal / 4),
					(unsigned long long)nominal);
				return;
			}
		}
	}
	/* the first delay spreads over its whole range across seeds */
	uint64_t lo = UINT64_MAX, hi = 0;
	for (uint64_t seed = 1; seed <= 2000; seed++) {
		struct backoff b;
		backoff_init(&b, 800, 30000, 0.25, seed);
		uint64_t d = backoff_next(&b);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	CHECK(lo >= 600 && lo < 620);
	CHECK(hi <= 800 && hi > 780);
	/* at the cap, delays still differ (no herd at exactly max) */
	struct backoff b;
	backoff_init(&b, 800, 30000, 0.25, 42);
	for (int i = 0; i < 10; i++)
		backoff_next(&b);
	uint64_t a = backoff_next(&b), c = backoff_next(&b), e = backoff_next(&b);
	CHECK(a <= 30000 && c <= 30000 && e <= 30000);
	CHECK(a >= 22500 && c >= 22500 && e >= 22500);
	CHECK(!(a == c && c == e));
}

static void test_no_jitter_and_reset(void)
{
	struct backoff b;
	backoff_init(&b, 100, 1000, 0, 3);
	CHECK_INT(backoff_next(&b), 100);
	CHECK_INT(backoff_next(&b), 200);
	CHECK_INT(backoff_next(&b), 400);
	CHECK_INT(backoff_next(&b), 800);
	CHECK_INT(backoff_next(&b), 1000);
	CHECK_INT(backoff_next(&b), 1000);
	CHECK_INT(b.attempt, 6);
	backoff_reset(&b);
	CHECK_INT(b.attempt, 0);
	CHECK_INT(backoff_next(&b), 100);
	CHECK_INT(backoff_next(&b), 200);
	/* the attempt counter saturates */
	for (int i = 0; i < 1000; i++)
		backoff_next(&b);
	CHECK(b.attempt <= 64);
	CHECK_INT(backoff_next(&b), 1000);
}

static void test_deterministic_and_random(void)
{
	struct backoff a, b;
	backoff_init(&a, 800, 30000, 0.5, 99);
	backoff_init(&b, 800, 30000, 0.5, 99);
	for (int i = 0; i < 20; i++)
		CHECK_INT(backoff_next(&a), backoff_next(&b));
	/* backoff_random is in [0, 1) with a plausible mean */
	uint64_t st = 12345;
	double sum = 0, mn = 1, mx = 0;
	for (int i = 0; i < 100000; i++) {
		double u = backoff_random(&st);
		if (u < 0 || u >= 1) {
			CHECK(!"random out of [0, 1)");
			return;
		}
		sum += u;
		mn = u < mn ? u : mn;
		mx = u > mx ? u : mx;
	}
	CHECK(fabs(sum / 100000 - 0.5) < 0.01);
	CHECK(mn < 0.001 && mx > 0.999);
	CHECK(backoff_seed() != backoff_seed());
}

int main(void)
{
	RUN(test_nominal_sequence);
	RUN(test_defaults);
	RUN(test_jitter_bounds);
	RUN(test_no_jitter_and_reset);
	RUN(test_deterministic_and_random);
	return UNIT_DONE();
}
