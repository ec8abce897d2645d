#include "hmap.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define HMAP_MIN_BUCKETS 16

void hmap_init(struct hmap *m, uint64_t seed)
{
	m->buckets = NULL;
	m->nbuckets = 0;
	m->count = 0;
	m->seed = seed;
}

uint64_t hmap_hash(const struct hmap *m, const char *key)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ m->seed;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	/* the low bits pick the bucket: fold the better-mixed high ones in */
	return h ^ (h >> 32);
}

struct hnode *hmap_find_hashed(const struct hmap *m, const char *key, uint64_t h)
{
	if (!m->nbuckets)
		return NULL;
	for (struct hnode *n = m->buckets[h & (m->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

struct hnode *hmap_find(const struct hmap *m, const char *key)
{
	return m->nbuckets ? hmap_find_hashed(m, key, hmap_hash(m, key)) : NULL;
}

static void grow(struct hmap *m)
{
	size_t nb = m->nbuckets ? m->nbuckets * 2 : HMAP_MIN_BUCKETS;
	struct hnode **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hnode *n = m->buckets[i], *next;
		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = nb;
}

void hmap_insert(struct hmap *m, struct hnode *n)
{
	if (m->count >= m->nbuckets)
		grow(m);
	n->hash = hmap_hash(m, n->key);
	struct hnode **head = &m->buckets[n->hash & (m->nbuckets - 1)];
	n->next = *head;
	*head = n;
	m->count++;
}

void hmap_remove(struct hmap *m, struct hnode *n)
{
	struct hnode **p = &m->buckets[n->hash & (m->nbuckets - 1)];
	while (*p != n)
		p = &(*p)->next;
	*p = n->next;
	n->next = NULL;
	m->count--;
}

static struct hnode *from_bucket(const struct hmap *m, size_t i)
{
	for (; i < m->nbuckets; i++)
		if (m->buckets[i])
			return m->buckets[i];
	return NULL;
}

struct hnode *hmap_first(const struct hmap *m)
{
	return from_bucket(m, 0);
}

struct hnode *hmap_next(const struct hmap *m, const struct hnode *n)
{
	return n->next ? n->next : from_bucket(m, (n->hash & (m->nbuckets - 1)) + 1);
}

void hmap_free_buckets(struct hmap *m)
{
	free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = 0;
	m->count = 0;
}
