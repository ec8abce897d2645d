#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct strmap_entry {
	struct strmap_entry *next;
	void *value;
	char key[];
};

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	if (!m->n_buckets)
		return NULL;
	for (struct strmap_entry *e = m->buckets[hash(key) & (m->n_buckets - 1)]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->value;
	return NULL;
}

static void grow(struct strmap *m)
{
	size_t n = m->n_buckets ? m->n_buckets * 2 : 16;
	struct strmap_entry **b = xcalloc(n, sizeof *b);
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct strmap_entry *e = m->buckets[i];
		while (e) {
			struct strmap_entry *next = e->next;
			size_t j = hash(e->key) & (n - 1);
			e->next = b[j];
			b[j] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->n_buckets = n;
}

void *strmap_put(struct strmap *m, const char *key, void *value)
{
	if (m->n_buckets) {
		for (struct strmap_entry *e = m->buckets[hash(key) & (m->n_buckets - 1)]; e; e = e->next) {
			if (strcmp(e->key, key) == 0) {
				void *old = e->value;
				e->value = value;
				return old;
			}
		}
	}
	if (m->count + 1 > m->n_buckets)
		grow(m);
	size_t kl = strlen(key);
	struct strmap_entry *e = xmalloc(sizeof *e + kl + 1);
	memcpy(e->key, key, kl + 1);
	e->value = value;
	size_t j = hash(key) & (m->n_buckets - 1);
	e->next = m->buckets[j];
	m->buckets[j] = e;
	m->count++;
	return NULL;
}

void *strmap_del(struct strmap *m, const char *key)
{
	if (!m->n_buckets)
		return NULL;
	struct strmap_entry **p = &m->buckets[hash(key) & (m->n_buckets - 1)];
	for (; *p; p = &(*p)->next) {
		if (strcmp((*p)->key, key) == 0) {
			struct strmap_entry *e = *p;
			void *v = e->value;
			*p = e->next;
			free(e);
			m->count--;
			return v;
		}
	}
	return NULL;
}

void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *data),
		 void *data)
{
	for (size_t i = 0; i < m->n_buckets; i++)
		for (struct strmap_entry *e = m->buckets[i]; e; e = e->next)
			fn(e->key, e->value, data);
}

void strmap_clear(struct strmap *m, void (*free_value)(void *value))
{
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct strmap_entry *e = m->buckets[i];
		while (e) {
			struct strmap_entry *next = e->next;
			if (free_value)
				free_value(e->value);
			free(e);
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = NULL;
	m->n_buckets = 0;
	m->count = 0;
}
