/* An intrusive, seeded hash map keyed by strings: a struct hnode member in
 * each element, whose key points into the element (borrowed: the map never
 * copies, owns or frees keys or elements). Chained buckets, a power-of-two
 * count that doubles when the map holds as many nodes as buckets; no
 * allocation until the first insert.
 *
 * The hash is FNV-1a 64 started from a seed given at init: keys that come
 * from outside (build names, Kubernetes object names) cannot be chosen to
 * fall into one bucket without knowing the seed, so give a random one
 * (backoff_seed()) unless a test needs a fixed one.
 *
 *     struct item { struct hnode hn; char name[64]; ... };
 *     struct hmap m;              hmap_init(&m, backoff_seed());
 *     it->hn.key = it->name;      hmap_insert(&m, &it->hn);
 *     struct hnode *n = hmap_find(&m, "x");
 *     struct item *found = n ? hmap_entry(n, struct item, hn) : NULL;
 *     struct hnode *n, *tmp;
 *     hmap_each_safe(n, tmp, &m) { ... may remove (and free) n ... }
 *     hmap_free_buckets(&m);      (after freeing the elements)
 *
 * Costs: find, insert and remove O(1) expected (O(chain) worst), insert
 * amortized (a doubling rehashes every node, without hashing keys again);
 * a whole iteration O(buckets + count). */
#ifndef RUNBOAT_HMAP_H
#define RUNBOAT_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hnode {
	struct hnode *next;
	uint64_t hash;   /* set by hmap_insert */
	const char *key; /* borrowed from the element; set before insert, unchanged while in */
};

struct hmap {
	struct hnode **buckets; /* NULL until the first insert */
	size_t nbuckets;        /* 0 or a power of two */
	size_t count;
	uint64_t seed;
};

/* An empty map hashing with seed. Allocates nothing (a zeroed struct hmap is
 * an empty map with seed 0). */
void hmap_init(struct hmap *m, uint64_t seed);

/* The hash of key in m (depends on m's seed only). */
uint64_t hmap_hash(const struct hmap *m, const char *key);

/* The node whose key equals key, or NULL. hmap_find_hashed takes h =
 * hmap_hash(m, key), for a caller that hashed it already. */
struct hnode *hmap_find(const struct hmap *m, const char *key);
struct hnode *hmap_find_hashed(const struct hmap *m, const char *key, uint64_t h);

/* Adds n, whose key is set and not in m yet (a duplicate key would shadow or
 * be shadowed: callers find first). May grow the buckets (aborts on OOM). */
void hmap_insert(struct hmap *m, struct hnode *n);

/* Takes n, which is in m, out of m. Never reallocates. */
void hmap_remove(struct hmap *m, struct hnode *n);

/* Iteration in no particular order: the first node (NULL if empty) and the
 * one after n (NULL at the end). Inserting during an iteration may reorder
 * everything; removing the current node is fine once its successor is
 * known (hmap_each_safe). */
struct hnode *hmap_first(const struct hmap *m);
struct hnode *hmap_next(const struct hmap *m, const struct hnode *n);

/* Frees the bucket array: m is then empty (same seed), the nodes it held
 * untouched. Free the elements before or after, iterating first. */
void hmap_free_buckets(struct hmap *m);

/* The element that holds the node at ptr. */
#define hmap_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Every node; the body must not insert or remove. */
#define hmap_each(n, m) for (n = hmap_first(m); n; n = hmap_next(m, n))

/* Every node; the body may remove (and free) n, not others, and not insert. */
#define hmap_each_safe(n, tmp, m) \
	for (n = hmap_first(m); n && (tmp = hmap_next(m, n), 1); n = tmp)

#endif
