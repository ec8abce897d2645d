/* A hash map from strings (copied) to pointers (borrowed), for the small
 * per-build tables of the controller. */
#ifndef RUNBOAT_STRMAP_H
#define RUNBOAT_STRMAP_H

#include <stddef.h>

struct strmap_entry;

struct strmap {
	struct strmap_entry **buckets;
	size_t n_buckets;
	size_t count;
};

/* The value of key, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);
/* Sets key to value (the key is copied); returns the previous value or NULL. */
void *strmap_put(struct strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *strmap_del(struct strmap *m, const char *key);
/* Calls fn for every entry (in no order); fn must not change the map. */
void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *data),
		 void *data);
/* Removes every entry, calling free_value (if not NULL) on each value. */
void strmap_clear(struct strmap *m, void (*free_value)(void *value));

#endif
