/*
 * Offset tracker: per partition, a sorted window of consumed offsets, each
 * in flight or done. Finished offsets at the front of the window are dropped,
 * so the front is always the lowest offset still in flight.
 */
#include "djob_private.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	int64_t offset;
	bool done;
} slot_t;

typedef struct {
	char *topic;
	int32_t partition;
	slot_t *slots; /* slots[head .. head + count), sorted by offset */
	size_t head;
	size_t count;
	size_t cap;
	size_t in_flight; /* slots not done */
	int64_t max_seen;
} part_t;

struct djob_offsets_s {
	part_t *parts;
	size_t n_parts;
	size_t cap;
};

djob_offsets_t *djob_offsets_new(void)
{
	return calloc(1, sizeof(djob_offsets_t));
}

static void part_clear(part_t *p)
{
	free(p->topic);
	free(p->slots);
}

void djob_offsets_free(djob_offsets_t *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_parts; i++)
		part_clear(&t->parts[i]);
	free(t->parts);
	free(t);
}

static part_t *find_part(const djob_offsets_t *t, const char *topic, int32_t partition)
{
	for (size_t i = 0; i < t->n_parts; i++)
		if (t->parts[i].partition == partition && strcmp(t->parts[i].topic, topic) == 0)
			return &t->parts[i];
	return NULL;
}

static part_t *get_part(djob_offsets_t *t, const char *topic, int32_t partition)
{
	part_t *p = find_part(t, topic, partition);

	if (p != NULL)
		return p;
	if (t->n_parts == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		part_t *parts = realloc(t->parts, cap * sizeof(*parts));
		if (parts == NULL)
			return NULL;
		t->parts = parts;
		t->cap = cap;
	}
	p = &t->parts[t->n_parts];
	memset(p, 0, sizeof(*p));
	p->topic = strdup(topic);
	if (p->topic == NULL)
		return NULL;
	p->partition = partition;
	p->max_seen = -1;
	t->n_parts++;
	return p;
}

/* Room for one more slot at the end: compact to the start, or grow. */
static int reserve(part_t *p)
{
	if (p->head + p->count < p->cap)
		return 0;
	if (p->head > 0 && p->head >= p->cap / 2) {
		memmove(p->slots, p->slots + p->head, p->count * sizeof(slot_t));
		p->head = 0;
		return 0;
	}
	size_t cap = p->cap ? p->cap * 2 : 64;
	slot_t *slots = realloc(p->slots, cap * sizeof(slot_t));
	if (slots == NULL)
		return DJOB_ENOMEM;
	p->slots = slots;
	p->cap = cap;
	return 0;
}

/* Index (from head) of the first slot with offset >= off. */
static size_t lower_bound(const part_t *p, int64_t off)
{
	size_t lo = 0, hi = p->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->slots[p->head + mid].offset < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int djob_offsets_add(djob_offsets_t *t, const char *topic, int32_t partition, int64_t offset)
{
	part_t *p;
	size_t i;

	if (t == NULL || topic == NULL || offset < 0)
		return DJOB_EINVAL;
	p = get_part(t, topic, partition);
	if (p == NULL)
		return DJOB_ENOMEM;
	/* The usual case appends; a redelivery behind the window is inserted. */
	i = lower_bound(p, offset);
	if (i < p->count && p->slots[p->head + i].offset == offset) {
		if (p->slots[p->head + i].done) {
			p->slots[p->head + i].done = false;
			p->in_flight++;
		}
		return 0;
	}
	if (reserve(p) != 0)
		return DJOB_ENOMEM;
	memmove(&p->slots[p->head + i + 1], &p->slots[p->head + i],
	        (p->count - i) * sizeof(slot_t));
	p->slots[p->head + i].offset = offset;
	p->slots[p->head + i].done = false;
	p->count++;
	p->in_flight++;
	if (offset > p->max_seen)
		p->max_seen = offset;
	return 0;
}

int djob_offsets_done(djob_offsets_t *t, const char *topic, int32_t partition, int64_t offset)
{
	part_t *p;
	size_t i;

	if (t == NULL || topic == NULL)
		return DJOB_EINVAL;
	p = find_part(t, topic, partition);
	if (p == NULL)
		return DJOB_ENOTFOUND;
	i = lower_bound(p, offset);
	if (i == p->count || p->slots[p->head + i].offset != offset || p->slots[p->head + i].done)
		return DJOB_ENOTFOUND;
	p->slots[p->head + i].done = true;
	p->in_flight--;
	while (p->count > 0 && p->slots[p->head].done) {
		p->head++;
		p->count--;
	}
	if (p->count == 0)
		p->head = 0;
	return 0;
}

static int64_t part_committable(const part_t *p)
{
	if (p->count > 0)
		return p->slots[p->head].offset;
	return p->max_seen < 0 ? -1 : p->max_seen + 1;
}

int64_t djob_offsets_committable(const djob_offsets_t *t, const char *topic, int32_t partition)
{
	const part_t *p;

	if (t == NULL || topic == NULL)
		return -1;
	p = find_part(t, topic, partition);
	return p ? part_committable(p) : -1;
}

size_t djob_offsets_in_flight(const djob_offsets_t *t, const char *topic, int32_t partition)
{
	size_t n = 0;

	if (t == NULL)
		return 0;
	if (topic != NULL) {
		const part_t *p = find_part(t, topic, partition);
		return p ? p->in_flight : 0;
	}
	for (size_t i = 0; i < t->n_parts; i++)
		n += t->parts[i].in_flight;
	return n;
}

void djob_offsets_foreach(const djob_offsets_t *t,
                          void (*fn)(const char *topic, int32_t partition, int64_t committable,
                                     void *opaque),
                          void *opaque)
{
	if (t == NULL || fn == NULL)
		return;
	for (size_t i = 0; i < t->n_parts; i++)
		fn(t->parts[i].topic, t->parts[i].partition, part_committable(&t->parts[i]),
		   opaque);
}

void djob_offsets_forget(djob_offsets_t *t, const char *topic, int32_t partition)
{
	part_t *p;

	if (t == NULL || topic == NULL)
		return;
	p = find_part(t, topic, partition);
	if (p == NULL)
		return;
	part_clear(p);
	*p = t->parts[t->n_parts - 1];
	t->n_parts--;
}
