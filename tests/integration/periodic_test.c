/*
 * periodic_test CASE
 *
 * Retention (libdjob/store_retention.c) and periodic jobs
 * (libdjob/store_schedule.c) against the dev stack's server, each case in
 * a collection of its own that it drops:
 *   retention_removes_old_finished_jobs_per_status_in_batches: completed,
 *       failed and cancelled jobs older than their status's age go, in
 *       batches of retention.batch per status and sweep (the first sweep
 *       through djob_scheduler_sweep and its configuration keys, the rest
 *       through the store); fresh finished jobs, a failed job old only by
 *       the completed age, and unfinished jobs with an old finishedAt stay.
 *   two_schedulers_submit_each_due_time_once: two stores (two API
 *       replicas) sweep schedules "* * * * *" and "*" "/5 * * * *" at the same
 *       injected times over 60 due times: one job per due time, each with
 *       its schedule and dueAt; then after 10 minutes without a sweep only
 *       the latest missed due time of each runs (the rest misfired).
 */
#include "stack.h"
#include "store_private.h"

#include <djob/djob.h>

#include <pthread.h>
#include <stdatomic.h>
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

#define ROUNDS 60
#define MINUTE 60000LL

static atomic_int published;
static pthread_barrier_t barrier;
static int64_t t0;

typedef struct {
	djob_store_t *s;
	djob_schedule_stats_t total;
} racer_t;

static int count_publish(void *opaque, const char *id, const char *type, const char *doc,
                         djob_error_t *err)
{
	(void)opaque, (void)id, (void)type, (void)err;
	STACK_CHECK(strstr(doc, "\"schedule\":") && strstr(doc, "\"dueAt\":"),
	            "message without schedule: %s", doc);
	atomic_fetch_add(&published, 1);
	return 0;
}

static void sweep_at(racer_t *r, int64_t now)
{
	djob_schedule_stats_t st;
	djob_error_t e;
	STACK_CHECK(djob_store_schedule_sweep(r->s, now, 100, count_publish, NULL, &st, &e) == 0,
	            "schedule sweep: %s", e.message);
	r->total.submitted += st.submitted;
	r->total.misfired += st.misfired;
	r->total.lost_races += st.lost_races;
}

static void *race(void *arg)
{
	racer_t *r = arg;
	for (int k = 1; k <= ROUNDS; k++) {
		pthread_barrier_wait(&barrier);
		sweep_at(r, t0 + k * MINUTE + 1000);
	}
	pthread_barrier_wait(&barrier);
	sweep_at(r, t0 + (ROUNDS + 10) * MINUTE + 1000); /* 10 minutes missed */
	return NULL;
}

/* The jobs of `name`: their number, and each due time's index (minutes
 * after t0) marked in seen[] (a second one fails the case). */
static int jobs_of(djob_store_t *s, const char *name, int seen[], int nseen)
{
	conn_t c = djob_store_conn(s);
	bson_t *f = BCON_NEW("schedule", BCON_UTF8(name));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, f, NULL, NULL);
	const bson_t *doc;
	int n = 0;
	while (mongoc_cursor_next(cur, &doc)) {
		int64_t due = djob_doc_date(doc, "dueAt");
		int k = (int)((due - t0) / MINUTE);
		STACK_CHECK(due == t0 + k * MINUTE && k > 0 && k < nseen, "%s: due time %lld", name,
		            (long long)due);
		STACK_CHECK(!seen[k]++, "%s: due time +%d min submitted twice", name, k);
		STACK_CHECK(strcmp(djob_doc_str(doc, "status"), "queued") == 0, "not queued");
		n++;
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(f);
	djob_store_conn_put(s, &c);
	return n;
}

static void drop(djob_store_t *s)
{
	conn_t c = djob_store_conn(s);
	static const char *const sides[] = {"outbox", "idempotency", "locks", "schedules"};
	mongoc_collection_drop(c.coll, NULL);
	for (size_t i = 0; i < 4; i++) {
		mongoc_collection_t *col = djob_store_side(&c, s, sides[i]);
		mongoc_collection_drop(col, NULL);
		mongoc_collection_destroy(col);
	}
	djob_store_conn_put(s, &c);
}

static void test_two_schedulers(void)
{
	djob_config_t *conf = make_conf();
	djob_error_t e;
	racer_t r[2] = {{0}, {0}};
	for (int i = 0; i < 2; i++)
		STACK_CHECK(djob_store_new(&r[i].s, conf, &e) == 0, "store: %s", e.message);
	/* A 5-minute boundary two hours ago: the injected clock runs from it. */
	t0 = (djob_now_ms() / MINUTE - 120) / 5 * 5 * MINUTE;
	const char *bodies[] = {
		"{\"name\":\"every-minute\",\"cron\":\"* * * * *\",\"job\":{\"type\":\"compute\","
		"\"payload\":{\"input\":\"tick\"}}}",
		"{\"name\":\"every-5\",\"cron\":\"*/5 * * * *\",\"timezone\":\"+05:30\","
		"\"job\":{\"type\":\"compute\",\"maxAttempts\":2}}",
	};
	for (int i = 0; i < 2; i++) {
		char *out = NULL;
		STACK_CHECK(djob_store_schedule_create(r[0].s, bodies[i], strlen(bodies[i]), t0,
		                                       &out, &e) == 0,
		            "create: %s", e.message);
		djob_free(out);
	}
	char *out = NULL;
	STACK_CHECK(djob_store_schedule_create(r[1].s, bodies[0], strlen(bodies[0]), t0, &out,
	                                       &e) == DJOB_ECONFLICT,
	            "a second every-minute was not refused");
	pthread_barrier_init(&barrier, NULL, 2);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, race, &r[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&barrier);

	int seen1[ROUNDS + 11] = {0}, seen5[ROUNDS + 11] = {0};
	int n1 = jobs_of(r[0].s, "every-minute", seen1, ROUNDS + 11);
	int n5 = jobs_of(r[0].s, "every-5", seen5, ROUNDS + 11);
	/* Which due times of every-5 fall in the rounds and in the gap. */
	int want5 = 0, missed5 = 0;
	for (int k = 1; k <= ROUNDS; k++)
		want5 += (int)((t0 / MINUTE + k) % 5 == 0);
	for (int k = ROUNDS + 1; k <= ROUNDS + 10; k++)
		missed5 += (int)((t0 / MINUTE + k) % 5 == 0);
	for (int k = 1; k <= ROUNDS; k++) {
		STACK_CHECK(seen1[k] == 1, "every-minute: due time +%d min has %d jobs", k,
		            seen1[k]);
		STACK_CHECK(seen5[k] == ((t0 / MINUTE + k) % 5 == 0), "every-5: due time +%d wrong",
		            k);
	}
	for (int k = ROUNDS + 1; k < ROUNDS + 10; k++)
		STACK_CHECK(!seen1[k] && !seen5[k], "misfired due time +%d min was submitted", k);
	STACK_CHECK(seen1[ROUNDS + 10] == 1 && seen5[ROUNDS + 10] == 1,
	            "the latest missed due time did not run once");
	STACK_CHECK(n1 == ROUNDS + 1, "every-minute: %d jobs, expected %d", n1, ROUNDS + 1);
	STACK_CHECK(n5 == want5 + 1, "every-5: %d jobs, expected %d", n5, want5 + 1);
	int submitted = r[0].total.submitted + r[1].total.submitted;
	STACK_CHECK(submitted == n1 + n5, "%d submitted for %d jobs", submitted, n1 + n5);
	STACK_CHECK(atomic_load(&published) == n1 + n5, "%d published for %d jobs",
	            atomic_load(&published), n1 + n5);
	int misfired = r[0].total.misfired > r[1].total.misfired ? r[0].total.misfired
	                                                         : r[1].total.misfired;
	STACK_CHECK(misfired >= 9 + missed5 - 1, "misfired %d", misfired);
	stack_ok("2 replicas x %d sweeps: every-minute %d jobs, every-5 %d jobs, one per due "
	         "time; replica 0 submitted %d, replica 1 %d, races lost %d; after 10 missed "
	         "minutes one job each (misfired counted %d, %d)",
	         ROUNDS + 1, n1, n5, r[0].total.submitted, r[1].total.submitted,
	         r[0].total.lost_races + r[1].total.lost_races, r[0].total.misfired,
	         r[1].total.misfired);
	drop(r[0].s);
	for (int i = 0; i < 2; i++)
		djob_store_free(r[i].s);
	djob_config_free(conf);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"retention_removes_old_finished_jobs_per_status_in_batches", test_retention},
		{"two_schedulers_submit_each_due_time_once", test_two_schedulers},
	};
	const char *want = argc > 1 ? argv[1] : "";
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(want, cases[i].name) != 0)
			continue;
		stack_test_name = cases[i].name;
		stack_unique_name(coll, sizeof coll, "it_periodic", 1);
		printf("# %s, collection %s\n", stack_mongo_uri(), coll);
		cases[i].fn();
		return 0;
	}
	fprintf(stderr, "usage: %s CASE, one of:\n", argv[0]);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		fprintf(stderr, "  %s\n", cases[i].name);
	return 2;
}
