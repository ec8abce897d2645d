/* An intrusive circular doubly linked list: a struct list member in each
 * element, a struct list head that is its own sentinel. O(1) insert and
 * remove, no allocation; the list never owns its elements.
 *
 *     struct op { struct list link; ... };
 *     struct list ops;            list_init(&ops);
 *     list_push(&ops, &op->link); list_remove(&op->link);
 *     struct op *first = list_first(&ops, struct op, link);  (NULL if empty)
 *     struct op *op, *tmp;
 *     list_each_safe(op, tmp, &ops, link) { ... may remove op ... }
 */
#ifndef RUNBOAT_LIST_H
#define RUNBOAT_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
	struct list *prev, *next;
};

/* An empty list (a head, or an element that is in no list). */
static inline void list_init(struct list *l)
{
	l->prev = l->next = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/* Adds n at the end of the list whose head is head. */
static inline void list_push(struct list *head, struct list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

/* Adds n right after pos (an element, or the head: then n is first). */
static inline void list_insert_after(struct list *pos, struct list *n)
{
	n->prev = pos;
	n->next = pos->next;
	pos->next->prev = n;
	pos->next = n;
}

/* Adds n at the start of the list whose head is head. */
static inline void list_push_front(struct list *head, struct list *n)
{
	list_insert_after(head, n);
}

/* Takes n out of its list; n is then an empty list (removing it again is
 * harmless). */
static inline void list_remove(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

/* The element that holds the member at ptr. */
#define list_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* The first element of the list (of type type, linked by member), or NULL
 * when it is empty. */
#define list_first(head, type, member) \
	(list_empty(head) ? NULL : list_entry((head)->next, type, member))

/* Every element, in order; the body must not remove any. */
#define list_each(el, head, member)                                                             \
	for (el = list_entry((head)->next, __typeof__(*el), member); &el->member != (head);      \
	     el = list_entry(el->member.next, __typeof__(*el), member))

/* Every element, in order; the body may remove (and free) el, not others. */
#define list_each_safe(el, tmp, head, member)                                                   \
	for (el = list_entry((head)->next, __typeof__(*el), member),                             \
	    tmp = list_entry(el->member.next, __typeof__(*el), member);                           \
	     &el->member != (head);                                                              \
	     el = tmp, tmp = list_entry(el->member.next, __typeof__(*el), member))

#endif
