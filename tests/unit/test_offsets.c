/* The offset tracker: out-of-order completion never lets the committed
 * offset pass an unfinished job. */
#include "check.h"
#include "djob_private.h"

#include <stdlib.h>

static void test_nothing_seen_means_nothing_to_commit(void)
{
	djob_offsets_t *t = djob_offsets_new();

	CHECK(t != NULL);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), -1);
	CHECK_INT(djob_offsets_in_flight(t, NULL, 0), 0);
	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 5), DJOB_ENOTFOUND);
	djob_offsets_free(t);
	djob_offsets_free(NULL);
}

static void test_out_of_order_completion_commits_below_the_oldest_unfinished(void)
{
	djob_offsets_t *t = djob_offsets_new();

	for (int64_t o = 10; o < 20; o++)
		CHECK_INT(djob_offsets_add(t, "jobs.compute", 0, o), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 10);
	CHECK_INT(djob_offsets_in_flight(t, "jobs.compute", 0), 10);

	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 12), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 10);
	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 10), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 11);
	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 11), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 13);
	CHECK_INT(djob_offsets_in_flight(t, "jobs.compute", 0), 7);

	/* finishing twice, or an offset never added, is refused */
	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 12), DJOB_ENOTFOUND);
	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 25), DJOB_ENOTFOUND);

	for (int64_t o = 19; o >= 13; o--)
		CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, o), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 20);
	CHECK_INT(djob_offsets_in_flight(t, "jobs.compute", 0), 0);

	/* gaps (compacted topics, filtered messages) are fine */
	CHECK_INT(djob_offsets_add(t, "jobs.compute", 0, 30), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 30);
	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 30), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 31);
	djob_offsets_free(t);
}

static void test_partitions_and_topics_are_independent(void)
{
	djob_offsets_t *t = djob_offsets_new();

	CHECK_INT(djob_offsets_add(t, "jobs.compute", 0, 5), 0);
	CHECK_INT(djob_offsets_add(t, "jobs.compute", 1, 100), 0);
	CHECK_INT(djob_offsets_add(t, "jobs.compute", 1, 101), 0);
	CHECK_INT(djob_offsets_add(t, "jobs.file", 0, 7), 0);
	CHECK_INT(djob_offsets_in_flight(t, NULL, 0), 4);
	CHECK_INT(djob_offsets_in_flight(t, "jobs.compute", 1), 2);

	CHECK_INT(djob_offsets_done(t, "jobs.compute", 1, 100), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 5);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 1), 101);
	CHECK_INT(djob_offsets_committable(t, "jobs.file", 0), 7);
	CHECK_INT(djob_offsets_done(t, "jobs.file", 0, 5), DJOB_ENOTFOUND);
	CHECK_INT(djob_offsets_done(t, "jobs.compute", 0, 5), 0);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 0), 6);
	CHECK_INT(djob_offsets_committable(t, "jobs.compute", 1), 101);
	CHECK_INT(djob_offsets_committable(t, "jobs.file", 0), 7);
	CHECK_INT(djob_offsets_in_flight(t, NULL, 0), 2);
	djob_offsets_free(t);
}

struct visit {
	int count;
	int64_t sum;
};

static void visit(const char *topic, int32_t partition, int64_t committable, void *opaque)
{
	struct visit *v = opaque;
	(void)topic;
	(void)partition;
	v->count++;
	v->sum += committable;
}

static void test_foreach_visits_every_partition_and_forget_drops_one(void)
{
	djob_offsets_t *t = djob_offsets_new();
	struct visit v = {0, 0};

	CHECK_INT(djob_offsets_add(t, "a", 0, 1), 0);
	CHECK_INT(djob_offsets_add(t, "a", 1, 10), 0);
	CHECK_INT(djob_offsets_add(t, "b", 0, 100), 0);
	CHECK_INT(djob_offsets_done(t, "b", 0, 100), 0);
	djob_offsets_foreach(t, visit, &v);
	CHECK_INT(v.count, 3);
	CHECK_INT(v.sum, 1 + 10 + 101);

	djob_offsets_forget(t, "a", 1);
	djob_offsets_forget(t, "zz", 9); /* unknown: a no-op */
	CHECK_INT(djob_offsets_committable(t, "a", 1), -1);
	CHECK_INT(djob_offsets_in_flight(t, NULL, 0), 1);
	memset(&v, 0, sizeof(v));
	djob_offsets_foreach(t, visit, &v);
	CHECK_INT(v.count, 2);
	CHECK_INT(v.sum, 1 + 101);

	/* after forget, a partition starts afresh */
	CHECK_INT(djob_offsets_add(t, "a", 1, 3), 0);
	CHECK_INT(djob_offsets_committable(t, "a", 1), 3);
	djob_offsets_free(t);
}

static void test_redelivered_offset_behind_the_window_holds_the_commit(void)
{
	djob_offsets_t *t = djob_offsets_new();

	CHECK_INT(djob_offsets_add(t, "a", 0, 10), 0);
	CHECK_INT(djob_offsets_add(t, "a", 0, 11), 0);
	CHECK_INT(djob_offsets_done(t, "a", 0, 10), 0);
	CHECK_INT(djob_offsets_done(t, "a", 0, 11), 0);
	/* a seek back redelivers 10 */
	CHECK_INT(djob_offsets_add(t, "a", 0, 10), 0);
	CHECK_INT(djob_offsets_committable(t, "a", 0), 10);
	/* adding an offset already in flight is idempotent */
	CHECK_INT(djob_offsets_add(t, "a", 0, 10), 0);
	CHECK_INT(djob_offsets_in_flight(t, "a", 0), 1);
	CHECK_INT(djob_offsets_done(t, "a", 0, 10), 0);
	CHECK_INT(djob_offsets_committable(t, "a", 0), 12);
	djob_offsets_free(t);
}

static void test_many_offsets_with_random_completion(void)
{
	enum {
		N = 20000
	};
	djob_offsets_t *t = djob_offsets_new();
	int64_t *order = malloc(N * sizeof(*order));
	char *done = calloc(N, 1);
	int64_t lowest = 0;
	int wrong = 0;
	unsigned seed = 12345;

	for (int64_t o = 0; o < N; o++) {
		wrong += djob_offsets_add(t, "p", 0, o) != 0;
		order[o] = o;
	}
	for (int i = N - 1; i > 0; i--) {
		seed = seed * 1103515245u + 12345u;
		int j = (int)((seed >> 8) % (unsigned)(i + 1));
		int64_t tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	for (int i = 0; i < N; i++) {
		wrong += djob_offsets_done(t, "p", 0, order[i]) != 0;
		done[order[i]] = 1;
		while (lowest < N && done[lowest])
			lowest++;
		wrong += djob_offsets_committable(t, "p", 0) != lowest;
	}
	CHECK_INT(wrong, 0);
	CHECK_INT(djob_offsets_committable(t, "p", 0), N);
	free(order);
	free(done);
	djob_offsets_free(t);
}

static void test_sliding_window_keeps_up_over_many_offsets(void)
{
	djob_offsets_t *t = djob_offsets_new();
	int wrong = 0;

	/* 64 in flight at a time, the oldest finished last within each pair */
	for (int64_t o = 0; o < 100000; o++) {
		wrong += djob_offsets_add(t, "p", 3, o) != 0;
		if (o >= 64 && o % 2 == 0) {
			wrong += djob_offsets_done(t, "p", 3, o - 63) != 0;
			wrong += djob_offsets_done(t, "p", 3, o - 64) != 0;
			wrong += djob_offsets_committable(t, "p", 3) != o - 62;
		}
	}
	CHECK_INT(wrong, 0);
	CHECK_INT(djob_offsets_in_flight(t, "p", 3), 64);
	djob_offsets_free(t);
}

int main(void)
{
	RUN(test_nothing_seen_means_nothing_to_commit);
	RUN(test_out_of_order_completion_commits_below_the_oldest_unfinished);
	RUN(test_partitions_and_topics_are_independent);
	RUN(test_foreach_visits_every_partition_and_forget_drops_one);
	RUN(test_redelivered_offset_behind_the_window_holds_the_commit);
	RUN(test_many_offsets_with_random_completion);
	RUN(test_sliding_window_keeps_up_over_many_offsets);
	return check_report("unit_offsets");
}
