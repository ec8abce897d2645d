/* Jittered exponential backoff for reconnect loops (watch streams, retried
 * calls). Pure: no clock, no I/O; the random source is a small PRNG held in
 * the struct, seeded by the caller (so tests are deterministic).
 *
 * The n-th delay (n = 0, 1, ...) is drawn uniformly from
 *   [nominal * (1 - jitter), nominal]   with nominal = min(max, base * 2^n)
 * so it never exceeds max, and consecutive clients spread out even at the
 * cap. backoff_reset() starts over at base (call it after a healthy period). */
#ifndef RUNBOAT_BACKOFF_H
#define RUNBOAT_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint64_t base_ms; /* first nominal delay */
	uint64_t max_ms;  /* cap of the nominal delay */
	double jitter;    /* fraction taken off at random, in [0, 1] */
	unsigned attempt; /* delays drawn since the last reset */
	uint64_t rng;     /* PRNG state (splitmix64) */
};

/* Defaults used by the informers: about 0.8 s up to 30 s. */
#define BACKOFF_DEFAULT_BASE_MS 800
#define BACKOFF_DEFAULT_MAX_MS 30000
#define BACKOFF_DEFAULT_JITTER 0.25

/* Initializes b. A zero base_ms/max_ms means the default above; jitter is
 * clamped to [0, 1] (a negative value means the default); max_ms below base_ms
 * is raised to base_ms. seed picks the random sequence. */
void backoff_init(struct backoff *b, uint64_t base_ms, uint64_t max_ms, double jitter,
		  uint64_t seed);

/* The next delay in milliseconds (see above), and one more attempt. */
uint64_t backoff_next(struct backoff *b);

/* The nominal (un-jittered) delay of attempt n: min(max, base * 2^n). */
uint64_t backoff_nominal(const struct backoff *b, unsigned n);

/* Back to the first delay. */
void backoff_reset(struct backoff *b);

/* A uniformly distributed double in [0, 1) from the PRNG state *state
 * (splitmix64); exposed for the informers' other random choices. */
double backoff_random(uint64_t *state);

/* A seed that differs between processes and calls (getrandom, else time and
 * pid). */
uint64_t backoff_seed(void);

#endif
