/* The intrusive list (src/list.h): order, removal while iterating, an
 * element in no list, the first element, and a model check against an
 * array (pushes at either end, inserts after an element, removals). */
#include <stdlib.h>

#include "backoff.h"
#include "list.h"
#include "unit.h"

struct item {
	int v;
	struct list link;
};

static size_t collect(struct list *head, int *out)
{
	size_t n = 0;
	struct item *it, *tmp;
	list_each_safe(it, tmp, head, link)
	{
		out[n++] = it->v;
	}
	return n;
}

static void test_basics(void)
{
	struct list head;
	list_init(&head);
	CHECK(list_empty(&head));
	struct item a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
	list_push(&head, &a.link);
	list_push(&head, &b.link);
	list_push(&head, &c.link);
	int got[8];
	CHECK_INT(collect(&head, got), 3);
	CHECK(got[0] == 1 && got[1] == 2 && got[2] == 3);
	list_remove(&b.link);
	list_remove(&b.link); /* harmless: it is in no list now */
	CHECK_INT(collect(&head, got), 2);
	CHECK(got[0] == 1 && got[1] == 3);
	/* removing (and freeing) the current element while iterating */
	struct item *it, *tmp;
	int seen = 0;
	list_each_safe(it, tmp, &head, link)
	{
		seen++;
		list_remove(&it->link);
	}
	CHECK_INT(seen, 2);
	CHECK(list_empty(&head));
	CHECK(list_first(&head, struct item, link) == NULL);
	/* at the front */
	list_push(&head, &a.link);
	list_push_front(&head, &b.link);
	list_push_front(&head, &c.link);
	CHECK(list_first(&head, struct item, link) == &c);
	int sum = 0, pos = 0;
	list_each(it, &head, link)
	{
		sum += it->v * ++pos;
	}
	CHECK_INT(sum, 3 * 1 + 2 * 2 + 1 * 3); /* c, b, a */
}

static void test_model(void)
{
	uint64_t seed = 42;
	struct item items[64];
	bool in[64] = {0};
	int order[64];
	size_t n = 0;
	struct list head;
	list_init(&head);
	for (int i = 0; i < 64; i++) {
		items[i].v = i;
		list_init(&items[i].link);
	}
	for (int step = 0; step < 20000; step++) {
		int i = (int)(backoff_random(&seed) * 64);
		if (in[i]) {
			list_remove(&items[i].link);
			size_t j = 0;
			while (order[j] != i)
				j++;
			memmove(order + j, order + j + 1, (n - j - 1) * sizeof *order);
			n--;
		} else if (n > 0 && backoff_random(&seed) < 0.3) {
			/* after a random element (kube.c's sorted retry queue) */
			size_t j = (size_t)(backoff_random(&seed) * (double)n);
			list_insert_after(&items[order[j]].link, &items[i].link);
			memmove(order + j + 2, order + j + 1, (n - j - 1) * sizeof *order);
			order[j + 1] = i;
			n++;
		} else if (backoff_random(&seed) < 0.5) {
			list_push(&head, &items[i].link);
			order[n++] = i;
		} else {
			list_push_front(&head, &items[i].link);
			memmove(order + 1, order, n * sizeof *order);
			order[0] = i;
			n++;
		}
		in[i] = !in[i];
		int got[64];
		size_t m = collect(&head, got);
		if (m != n || memcmp(got, order, n * sizeof *got) != 0) {
			CHECK_INT(m, n);
			CHECK(0);
			return;
		}
		CHECK(list_empty(&head) == (n == 0));
		struct item *first = list_first(&head, struct item, link);
		CHECK(n ? first == &items[order[0]] : first == NULL);
		size_t k = 0;
		struct item *it;
		list_each(it, &head, link)
		{
			if (k >= n || it != &items[order[k]])
				break;
			k++;
		}
		CHECK_INT(k, n);
	}
}

int main(void)
{
	RUN(test_basics);
	RUN(test_model);
	return UNIT_DONE();
}
