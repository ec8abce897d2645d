#include "backoff.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void backoff_init(struct backoff *b, uint64_t base_ms, uint64_t max_ms, double jitter,
		  uint64_t seed)
{
	b->base_ms = base_ms ? base_ms : BACKOFF_DEFAULT_BASE_MS;
	b->max_ms = max_ms ? max_ms : BACKOFF_DEFAULT_MAX_MS;
	if (b->max_ms < b->base_ms)
		b->max_ms = b->base_ms;
	if (!(jitter >= 0)) /* also catches NaN */
		jitter = BACKOFF_DEFAULT_JITTER;
	b->jitter = jitter > 1 ? 1 : jitter;
	b->attempt = 0;
	b->rng = seed;
}

uint64_t backoff_nominal(const struct backoff *b, unsigned n)
{
	uint64_t d = b->base_ms;
	/* doubling stops at the cap, so no overflow whatever n is */
	for (unsigned i = 0; i < n && d < b->max_ms; i++)
		d = d > b->max_ms / 2 ? b->max_ms : d * 2;
	return d < b->max_ms ? d : b->max_ms;
}

double backoff_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / (double)(1ULL << 53);
}

uint64_t backoff_next(struct backoff *b)
{
	uint64_t nominal = backoff_nominal(b, b->attempt);
	if (b->attempt < 64)
		b->attempt++;
	double u = backoff_random(&b->rng);
	uint64_t off = (uint64_t)((double)nominal * b->jitter * u);
	return nominal - (off > nominal ? nominal : off);
}

void backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}

uint64_t backoff_seed(void)
{
	uint64_t s;
	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == (ssize_t)sizeof(s))
		return s;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
	       ((uint64_t)getpid() << 32);
}
