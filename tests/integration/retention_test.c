/*
 * retention_test CASE
 *
 * Retention (libdjob/store_retention.c) against the dev stack's server, in
 * a collection of its own that the case drops:
 *   retention_removes_old_finished_jobs_per_status_in_batches: completed,
 *       failed and cancelled jobs older than their status's age go, in
 *       batches of retention.batch per status and sweep (the first sweep
 *       through djob_scheduler_sweep and its configuration keys, the rest
 *       through the store); fresh finished jobs, a failed job old only by
 *       the completed age, and unfinished jobs with an old finishedAt stay.
 */
#include "stack.h"
#include "store_private.h"

#include <djob/djob.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUR 3600000LL
#define OLD 20  /* old jobs per finished status */
#define FRESH 5 /* fresh jobs per finished status */
#define BATCH 7 /* retention.batch */
#define UNFINISHED 10

static char coll[96];

static djob_config_t *make_conf(void)
{
	djob_config_t *conf;
	djob_error_t e;
	STACK_CHECK(djob_config_new(&conf, &e) == 0, "config: %s", e.message);
	const char *kv[][2] = {
		{"mongo.uri", stack_mongo_uri()},
		{"mongo.collection", coll},
		{"kafka.brokers", stack_kafka_brokers()},
		{"retention.completed.ms", "3600000"},
		{"retention.failed.ms", "7200000"},
		{"retention.cancelled.ms", "10800000"},
		{"retention.batch", "7"},
	};
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
		STACK_CHECK(djob_config_set(conf, kv[i][0], kv[i][1], &e) == 0, "%s: %s", kv[i][0],
		            e.message);
	return conf;
}

static void insert(djob_store_t *s, const char *status, int64_t finished, int n, int *count)
{
	conn_t c = djob_store_conn(s);
	for (int i = 0; i < n; i++) {
		char id[37];
		djob_uuid_v4(id);
		bson_t *d = BCON_NEW("_id", BCON_UTF8(id), "type", BCON_UTF8("compute"), "status",
		                     BCON_UTF8(status), "payload", "{", "}", "createdAt",
		                     BCON_DATE_TIME(finished - HOUR), "finishedAt",
		                     BCON_DATE_TIME(finished), "seq", BCON_INT64(1));
		bson_error_t e;
		STACK_CHECK(mongoc_collection_insert_one(c.coll, d, NULL, NULL, &e), "insert: %s",
		            e.message);
		bson_destroy(d);
	}
	djob_store_conn_put(s, &c);
	*count += n;
}

static int64_t count(djob_store_t *s, const char *status)
{
	conn_t c = djob_store_conn(s);
	bson_t *f = BCON_NEW("status", BCON_UTF8(status));
	bson_error_t e;
	int64_t n = mongoc_collection_count_documents(c.coll, f, NULL, NULL, NULL, &e);
	STACK_CHECK(n >= 0, "count: %s", e.message);
	bson_destroy(f);
	djob_store_conn_put(s, &c);
	return n;
}

/* Jobs of `status` finished before `cutoff`, by the query retention uses. */
static int64_t count_old(djob_store_t *s, const char *status, int64_t cutoff)
{
	conn_t c = djob_store_conn(s);
	bson_t *f = BCON_NEW("status", BCON_UTF8(status), "finishedAt", "{", "$lt",
	                     BCON_DATE_TIME(cutoff), "}");
	bson_error_t e;
	int64_t n = mongoc_collection_count_documents(c.coll, f, NULL, NULL, NULL, &e);
	STACK_CHECK(n >= 0, "count: %s", e.message);
	bson_destroy(f);
	djob_store_conn_put(s, &c);
	return n;
}

static void test_retention(void)
{
	djob_config_t *conf = make_conf();
	djob_error_t e;
	djob_store_t *s;
	STACK_CHECK(djob_store_new(&s, conf, &e) == 0, "store: %s", e.message);
	int64_t now = djob_now_ms();
	const char *fin[] = {"completed", "failed", "cancelled"};
	const int64_t age[] = {1 * HOUR, 2 * HOUR, 3 * HOUR};
	int inserted = 0;
	for (int i = 0; i < 3; i++) {
		insert(s, fin[i], now - age[i] - 60000, OLD, &inserted);
		insert(s, fin[i], now - age[i] + 10 * 60000, FRESH, &inserted);
	}
	/* Old by the completed age, not by the failed one. */
	insert(s, "failed", now - HOUR - HOUR / 2, 3, &inserted);
	const char *unfin[] = {"queued", "processing", "scheduled"};
	for (int i = 0; i < 3; i++)
		insert(s, unfin[i], now - 240 * HOUR, UNFINISHED, &inserted);

	for (int i = 0; i < 3; i++)
		STACK_CHECK(count_old(s, fin[i], now - age[i]) == OLD, "%s: not %d old", fin[i],
		            OLD);
	/* Sweep 1: the scheduler, configured by its keys. */
	djob_scheduler_t *sched;
	STACK_CHECK(djob_scheduler_new(&sched, conf, &e) == 0, "scheduler: %s", e.message);
	char *stats = NULL;
	STACK_CHECK(djob_scheduler_sweep(&stats, sched, &e) == 0, "sweep: %s", e.message);
	STACK_CHECK(strstr(stats, "\"removed\":21") != NULL, "first sweep removed: %s", stats);
	printf("# first sweep: %s\n", stats);
	djob_free(stats);
	djob_scheduler_free(sched);
	int total = 21, sweeps = 1;
	/* The rest through the store, each bounded by the batch. */
	for (;;) {
		int removed[DJOB_RETENTION_N];
		STACK_CHECK(djob_store_retention(s, djob_now_ms(), age, BATCH, removed, &e) == 0,
		            "retention: %s", e.message);
		sweeps++;
		int sum = 0;
		for (int i = 0; i < 3; i++) {
			STACK_CHECK(removed[i] <= BATCH, "%s: %d removed, batch %d", fin[i],
			            removed[i], BATCH);
			sum += removed[i];
		}
		printf("# sweep %d removed %d %d %d\n", sweeps, removed[0], removed[1], removed[2]);
		total += sum;
		if (sum == 0)
			break;
		STACK_CHECK(sweeps < 10, "retention does not end");
	}
	printf("# left completed %lld failed %lld cancelled %lld queued %lld\n",
	       (long long)count(s, "completed"), (long long)count(s, "failed"),
	       (long long)count(s, "cancelled"), (long long)count(s, "queued"));
	STACK_CHECK(total == 3 * OLD, "removed %d, expected %d", total, 3 * OLD);
	STACK_CHECK(sweeps == 4, "%d sweeps, expected 4 (7+7+6 per status, then none)", sweeps);
	STACK_CHECK(count(s, "completed") == FRESH, "completed left %lld",
	            (long long)count(s, "completed"));
	STACK_CHECK(count(s, "failed") == FRESH + 3, "failed left %lld",
	            (long long)count(s, "failed"));
	STACK_CHECK(count(s, "cancelled") == FRESH, "cancelled left %lld",
	            (long long)count(s, "cancelled"));
	for (int i = 0; i < 3; i++)
		STACK_CHECK(count(s, unfin[i]) == UNFINISHED, "%s left %lld", unfin[i],
		            (long long)count(s, unfin[i]));
	stack_ok("%d jobs inserted; %d old finished removed in %d sweeps of at most %d per "
	         "status; %d fresh finished and %d unfinished kept",
	         inserted, total, sweeps, BATCH, 3 * FRESH + 3, 3 * UNFINISHED);
	conn_t c = djob_store_conn(s);
	mongoc_collection_drop(c.coll, NULL);
	djob_store_conn_put(s, &c);
	djob_store_free(s);
	djob_config_free(conf);
}

int main(int argc, char **argv)
{
	const char *want = argc > 1 ? argv[1] : "";
	if (strcmp(want, "retention_removes_old_finished_jobs_per_status_in_batches") != 0) {
		fprintf(stderr,
		        "usage: %s retention_removes_old_finished_jobs_per_status_in_batches\n",
		        argv[0]);
		return 2;
	}
	stack_test_name = want;
	stack_unique_name(coll, sizeof coll, "it_retention", 1);
	printf("# %s, collection %s\n", stack_mongo_uri(), coll);
	test_retention();
	return 0;
}
