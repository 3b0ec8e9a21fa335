/*
 * store_test CASE
 *
 * The job store's two ways of keeping a job's writers from both winning
 * (libdjob/store_private.h), against the dev stack's server. Each CASE
 * works in its own collection and drops it (and its side collections):
 *   store_mode_matches_the_server: auto picks atomic writes on
 *       mongo-java-server and the lock protocol on FerretDB 1.x
 *       (DJOB_DEVSTACK_MONGO names the server the dev stack runs)
 *   job_costs_one_write_per_transition: a worker's claim, extend and
 *       finish of a new job, counted in MongoDB commands: atomic mode one
 *       findAndModify each and no find, and no lock; lock mode one lock
 *       insert and one findAndModify each, no find, and the locks are gone
 *       once they expire; a lease extension after the finish is refused
 *   stale_writer_is_refused: a worker whose job was cancelled under it
 *       writes nothing, in the mode the server gets and in lock mode
 *   dead_writers_lock_is_taken_over: in lock mode, a lock left by a writer
 *       that died between its lock and its write holds other writers off
 *       only until it is LOCK_TTL_MS old, with or without a sweep
 *   racing_writers_never_both_win [MODE]: 8 threads with a store each race
 *       to claim each of 40 jobs (one wins), then a finish races a cancel
 *       (one wins, and the job shows the winner's outcome). MODE (default
 *       auto) forces store.mode: atomic on FerretDB shows the case failing.
 *   quarantined_job_is_refused_listed_and_retried: a claimed job moved to
 *       quarantined (fenced on the holder's attempt) is refused by the next
 *       claim, listed by status, and queued again by a retry, in the mode
 *       the server gets and in lock mode
 */
#include "stack.h"
#include "store_private.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char coll[96];

/* A collection of its own for each pass of a case: dropping a collection
 * and creating it again at once is not what this suite tests (and FerretDB
 * has been seen to refuse the new one's indexes as existing). */
static void next_collection(void)
{
	stack_unique_name(coll, sizeof coll, "it_store", 1);
	printf("# %s, collection %s\n", stack_mongo_uri(), coll);
}

static djob_store_t *open_store(const char *mode)
{
	djob_config_t *conf;
	djob_error_t e;
	STACK_CHECK(djob_config_new(&conf, &e) == 0, "config: %s", e.message);
	STACK_CHECK(djob_config_set(conf, "mongo.uri", stack_mongo_uri(), &e) == 0, "uri: %s",
	            e.message);
	STACK_CHECK(djob_config_set(conf, "mongo.collection", coll, &e) == 0, "coll: %s",
	            e.message);
	STACK_CHECK(djob_config_set(conf, "store.mode", mode, &e) == 0, "mode: %s", e.message);
	djob_store_t *s;
	STACK_CHECK(djob_store_new(&s, conf, &e) == 0, "store: %s", e.message);
	djob_config_free(conf);
	return s;
}

static const char *mode_of(djob_store_t *s)
{
	const char *mode, *server;
	djob_error_t e;
	STACK_CHECK(djob_store_mode_name(s, &mode, &server, &e) == 0,
	            "the server's mode is unknown (%s): is the dev stack up?", e.message);
	return mode;
}

/* A new job, inserted as a submission does; at_ms its createdAt. */
static void insert_job(djob_store_t *s, char id[37], int64_t *at_ms)
{
	bson_t *payload = BCON_NEW("input", BCON_UTF8("x"));
	djob_new_job_t j = {.type = "compute",
	                    .payload = payload,
	                    .max_attempts = 3,
	                    .created_ms = djob_now_ms(),
	                    .state = DJOB_STATE_QUEUED};
	djob_uuid_v4(j.id);
	djob_error_t e;
	STACK_CHECK(djob_store_insert(s, &j, 1, &e) == 0, "insert: %s", e.message);
	memcpy(id, j.id, 37);
	*at_ms = j.created_ms;
	bson_destroy(payload);
}

static void commands(unsigned long long counts[STORE_CMD_COUNT])
{
	const char *names[STORE_CMD_COUNT];
	djob_store_commands(names, counts, STORE_CMD_COUNT);
}

/* Commands sent since `before`, as "find=0 findAndModify=1 ..." in buf. */
static void spent(const unsigned long long before[STORE_CMD_COUNT],
                  unsigned long long d[STORE_CMD_COUNT], char *buf, size_t size)
{
	const char *names[STORE_CMD_COUNT];
	unsigned long long now[STORE_CMD_COUNT];
	djob_store_commands(names, now, STORE_CMD_COUNT);
	size_t off = 0;
	for (int i = 0; i < STORE_CMD_COUNT; i++) {
		d[i] = now[i] - before[i];
		off += (size_t)snprintf(buf + off, size - off, "%s%s=%llu", i ? " " : "", names[i],
		                        d[i]);
	}
}

static long long count_docs(djob_store_t *s, const char *suffix)
{
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *col = suffix ? djob_store_side(&c, s, suffix) : c.coll;
	bson_t q = BSON_INITIALIZER;
	bson_error_t e;
	int64_t n = mongoc_collection_count_documents(col, &q, NULL, NULL, NULL, &e);
	STACK_CHECK(n >= 0, "count: %s", e.message);
	if (suffix)
		mongoc_collection_destroy(col);
	djob_store_conn_put(s, &c);
	return n;
}

static bson_t *get_doc(djob_store_t *s, const char *id)
{
	bson_t *doc;
	djob_error_t e;
	STACK_CHECK(djob_store_find_one(s, id, &doc, &e) == 0, "find %s: %s", id, e.message);
	return doc;
}

static void drop_all(djob_store_t *s)
{
	conn_t c = djob_store_conn(s);
	static const char *const sides[] = {"outbox", "idempotency", "locks"};
	mongoc_collection_drop(c.coll, NULL);
	for (size_t i = 0; i < 3; i++) {
		mongoc_collection_t *col = djob_store_side(&c, s, sides[i]);
		mongoc_collection_drop(col, NULL);
		mongoc_collection_destroy(col);
	}
	djob_store_conn_put(s, &c);
}

static void test_store_mode_matches_the_server(void)
{
	djob_store_t *s = open_store("auto");
	const char *mode, *server;
	djob_error_t e;
	STACK_CHECK(djob_store_mode_name(s, &mode, &server, &e) == 0, "mode: %s", e.message);
	const char *kind = getenv("DJOB_DEVSTACK_MONGO");
	STACK_CHECK(
		kind && *kind,
		"DJOB_DEVSTACK_MONGO is not set: run under scripts/test or source .devstack/env");
	const char *want = strcmp(kind, "ferretdb") == 0 ? "locks" : "atomic";
	STACK_CHECK(strcmp(mode, want) == 0, "%s (%s): mode %s, expected %s", kind, server, mode,
	            want);
	stack_ok("%s reports itself as %s: %s mode", kind, server, mode);
	djob_store_free(s);
}

/* Claim, extend and finish a new job as a worker's store sink does. */
static void lifecycle(const char *mode)
{
	next_collection();
	djob_store_t *s = open_store(mode);
	bool locks = strcmp(mode_of(s), "locks") == 0;
	char id[37];
	djob_store_seq_t k = {0, 0};
	insert_job(s, id, &k.at_ms);
	unsigned long long before[STORE_CMD_COUNT], d[STORE_CMD_COUNT];
	char buf[160];
	djob_error_t e;
	int attempts = 0, max = 0;
	const char *step[3] = {"claim", "extend", "finish"};
	for (int i = 0; i < 3; i++) {
		commands(before);
		int rc = i == 0   ? djob_store_claim(s, id, "w1", 30000, &attempts, &max, &k, &e)
		         : i == 1 ? djob_store_extend(s, id, "w1", attempts, max, 30000, &k, &e)
		                  : djob_store_finish(s, id, "w1", attempts, max, DJOB_JOB_DONE,
		                                      "{\"v\":1}", NULL, &k, &e);
		STACK_CHECK(rc == 0, "%s: %s", step[i], e.message);
		spent(before, d, buf, sizeof buf);
		printf("# %s mode, %s: %s\n", mode_of(s), step[i], buf);
		STACK_CHECK(d[STORE_CMD_FIND] == 0, "%s read the job: %s", step[i], buf);
		STACK_CHECK(d[STORE_CMD_FIND_AND_MODIFY] == 1, "%s: not one findAndModify: %s",
		            step[i], buf);
		STACK_CHECK(d[STORE_CMD_INSERT] == (locks ? 1u : 0u) && d[STORE_CMD_UPDATE] == 0 &&
		                    d[STORE_CMD_DELETE] == 0,
		            "%s: %s", step[i], buf);
	}
	STACK_CHECK(attempts == 1 && max == 3, "claim answered attempts %d, maxAttempts %d",
	            attempts, max);
	/* The lease keeper's extension, racing the finish, comes after it. */
	int rc = djob_store_extend(s, id, "w1", attempts, max, 30000, &k, &e);
	STACK_CHECK(rc == DJOB_ECONFLICT, "an extension after the finish answered %d", rc);
	bson_t *doc = get_doc(s, id);
	STACK_CHECK(djob_doc_state(doc) == DJOB_STATE_COMPLETED, "job is %s",
	            djob_doc_str(doc, "status"));
	bson_destroy(doc);
	if (locks) {
		STACK_CHECK(count_docs(s, "locks") == 3, "%lld locks after 3 transitions",
		            count_docs(s, "locks"));
		int n = djob_store_expire_locks(s, djob_now_ms() + LOCK_TTL_MS + 1000, &e);
		STACK_CHECK(n == 3, "expiry deleted %d locks: %s", n, n < 0 ? e.message : "");
		n = djob_store_expire_locks(s, djob_now_ms() + 2 * LOCK_TTL_MS, &e);
		STACK_CHECK(n == 0, "a second expiry at once deleted %d", n);
		STACK_CHECK(count_docs(s, "locks") == 0, "locks left after expiry");
		stack_ok("lock mode: 3 transitions, 3 locks, none left after they expired");
	} else {
		STACK_CHECK(count_docs(s, "locks") == 0, "atomic mode wrote locks");
		stack_ok("atomic mode: claim, extend and finish one findAndModify each, no read");
	}
	drop_all(s);
	djob_store_free(s);
}

static void test_job_costs_one_write_per_transition(void)
{
	djob_store_t *s = open_store("auto");
	const char *mode = mode_of(s);
	djob_store_free(s);
	lifecycle(mode);
	/* The lock protocol is correct on every server: prove it here too. */
	if (strcmp(mode, "locks") != 0)
		lifecycle("locks");
}

static void stale_writer(const char *mode)
{
	next_collection();
	djob_store_t *s = open_store(mode);
	char id[37];
	djob_store_seq_t k = {0, 0};
	insert_job(s, id, &k.at_ms);
	djob_error_t e;
	int attempts, max = 0;
	STACK_CHECK(djob_store_claim(s, id, "w1", 30000, &attempts, &max, &k, &e) == 0, "claim: %s",
	            e.message);
	djob_store_seq_t stale = k;
	STACK_CHECK(djob_store_extend(s, id, "w1", attempts, max, 30000, &k, &e) == 0, "extend: %s",
	            e.message);
	char *json = NULL;
	STACK_CHECK(djob_store_cancel(s, id, &json, &e) == 0, "cancel: %s", e.message);
	free(json);
	/* Planned on the seq of the claim (two writes ago) and on the last. */
	int rc1 = djob_store_finish(s, id, "w1", attempts, max, DJOB_JOB_DONE, "{}", NULL, &stale,
	                            &e);
	int rc2 = djob_store_extend(s, id, "w1", attempts, max, 30000, &k, &e);
	STACK_CHECK(rc1 == DJOB_ECONFLICT && rc2 == DJOB_ECONFLICT,
	            "stale writes answered %d and %d, expected %d", rc1, rc2, DJOB_ECONFLICT);
	bson_t *doc = get_doc(s, id);
	STACK_CHECK(djob_doc_state(doc) == DJOB_STATE_CANCELLED && !bson_has_field(doc, "result"),
	            "the stale finish landed: job is %s", djob_doc_str(doc, "status"));
	bson_destroy(doc);
	stack_ok("%s mode: a finish and an extend planned before a cancel were refused",
	         mode_of(s));
	drop_all(s);
	djob_store_free(s);
}

static void test_stale_writer_is_refused(void)
{
	stale_writer("auto");
	stale_writer("locks");
}

/* The move into quarantine, fenced as the scheduler's requeues are: the
 * holder's worker id and attempt. */
static int plan_quarantine(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	int attempts = *(int *)ctx;
	int rc = djob_expect_move(doc, DJOB_MOVE_QUARANTINE, ch, err);
	if (rc == 0)
		rc = djob_expect_lease(doc, "w1", attempts, ch, err);
	if (rc == 0)
		BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", djob_now_ms());
	return rc;
}

static void quarantine(const char *mode)
{
	next_collection();
	djob_store_t *s = open_store(mode);
	char id[37];
	djob_store_seq_t k = {0, 0};
	insert_job(s, id, &k.at_ms);
	djob_error_t e;
	int attempts = 0, max = 0;
	STACK_CHECK(djob_store_claim(s, id, "w1", 30000, &attempts, &max, &k, &e) == 0, "claim: %s",
	            e.message);
	int stale = attempts + 1; /* not the holder's attempt: must not match */
	bson_t *doc = NULL;
	int rc = djob_store_transition(s, id, NULL, plan_quarantine, &stale, NULL, &doc, &e);
	STACK_CHECK(rc == DJOB_ECONFLICT, "a quarantine fenced on attempt %d answered %d", stale,
	            rc);
	rc = djob_store_transition(s, id, NULL, plan_quarantine, &attempts, NULL, &doc, &e);
	STACK_CHECK(rc == 0, "quarantine: %s", e.message);
	STACK_CHECK(djob_doc_state(doc) == DJOB_STATE_QUARANTINED, "job is %s",
	            djob_doc_str(doc, "status"));
	bson_destroy(doc);
	/* A redelivered message: the claim refuses it, as for a terminal job. */
	djob_store_seq_t k2 = {-1, 0};
	int a2 = 0, m2 = 0;
	rc = djob_store_claim(s, id, "w2", 30000, &a2, &m2, &k2, &e);
	STACK_CHECK(rc == DJOB_ECONFLICT, "a claim of the quarantined job answered %d", rc);
	char *json = NULL;
	STACK_CHECK(djob_store_list(s, "quarantined", NULL, 10, NULL, &json, &e) == 0, "list: %s",
	            e.message);
	STACK_CHECK(strstr(json, id) != NULL, "status=quarantined does not list the job: %s", json);
	free(json);
	json = NULL;
	STACK_CHECK(djob_store_retry(s, id, &json, &e) == 0, "retry: %s", e.message);
	free(json);
	doc = get_doc(s, id);
	STACK_CHECK(djob_doc_state(doc) == DJOB_STATE_QUEUED &&
	                    djob_doc_int(doc, "attempts", -1) == 0,
	            "after the retry the job is %s with %d attempts", djob_doc_str(doc, "status"),
	            (int)djob_doc_int(doc, "attempts", -1));
	bson_destroy(doc);
	k2.seq = -1;
	STACK_CHECK(djob_store_claim(s, id, "w2", 30000, &a2, &m2, &k2, &e) == 0 && a2 == 1,
	            "claim after the retry: %s (attempt %d)", e.message, a2);
	stack_ok("%s mode: quarantined only by the lease holder's attempt, claim refused (1), "
	         "listed (1), retried and claimed again on attempt %d",
	         mode_of(s), a2);
	drop_all(s);
	djob_store_free(s);
}

static void test_quarantined_job_is_refused_listed_and_retried(void)
{
	quarantine("auto");
	quarantine("locks");
}

/* A lock "<id>:<seq+1>" as a writer killed between its lock and its
 * write leaves it, taken `age_ms` ago. */
static void put_lock(djob_store_t *s, const char *id, int64_t seq, int64_t age_ms)
{
	char lock_id[80];
	snprintf(lock_id, sizeof lock_id, "%s:%lld", id, (long long)(seq + 1));
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *locks = djob_store_side(&c, s, "locks");
	bson_t *f = BCON_NEW("_id", BCON_UTF8(lock_id));
	mongoc_collection_delete_one(locks, f, NULL, NULL, NULL);
	bson_t *lock = BCON_NEW("_id", BCON_UTF8(lock_id), "at",
	                        BCON_DATE_TIME(djob_now_ms() - age_ms));
	bson_error_t e;
	STACK_CHECK(mongoc_collection_insert_one(locks, lock, NULL, NULL, &e), "lock: %s",
	            e.message);
	bson_destroy(lock);
	bson_destroy(f);
	mongoc_collection_destroy(locks);
	djob_store_conn_put(s, &c);
}

static void test_dead_writers_lock_is_taken_over(void)
{
	next_collection();
	djob_store_t *s = open_store("locks");
	char id[37];
	int64_t at;
	insert_job(s, id, &at);
	djob_error_t e;
	int attempts = 0, max = 0;
	/* A live writer's lock: the claim waits, then answers busy. */
	put_lock(s, id, 0, 0);
	djob_store_seq_t k = {-1, 0};
	int rc = djob_store_claim(s, id, "w1", 30000, &attempts, &max, &k, &e);
	STACK_CHECK(rc != 0 && e.retriable && strstr(e.message, "another writer"),
	            "a claim under a live writer's lock answered %d (%s)", rc,
	            rc ? e.message : "claimed");
	/* The same lock, older than its lifetime, with no sweep running. */
	put_lock(s, id, 0, LOCK_TTL_MS + 1000);
	k = (djob_store_seq_t){-1, 0};
	rc = djob_store_claim(s, id, "w1", 30000, &attempts, &max, &k, &e);
	STACK_CHECK(rc == 0, "a claim under a dead writer's lock answered %d (%s)", rc, e.message);
	bson_t *doc = get_doc(s, id);
	STACK_CHECK(djob_doc_state(doc) == DJOB_STATE_PROCESSING && attempts == 1,
	            "job is %s, attempts %d", djob_doc_str(doc, "status"), attempts);
	bson_destroy(doc);
	stack_ok("lock mode: a live writer's lock holds a claim off; a lock %d ms old is taken "
	         "over without a sweep",
	         LOCK_TTL_MS + 1000);
	drop_all(s);
	djob_store_free(s);
}

#define RACERS 8
#define RACE_JOBS 40

static struct {
	char ids[RACE_JOBS][37];
	pthread_barrier_t start;
	atomic_int claims[RACE_JOBS];
	atomic_int winner_attempts[RACE_JOBS];
	atomic_int finished[RACE_JOBS], cancelled[RACE_JOBS];
	const char *mode;
} race;

static void *racer(void *arg)
{
	int me = (int)(intptr_t)arg;
	djob_store_t *s = open_store(race.mode);
	char worker[16];
	snprintf(worker, sizeof worker, "racer-%d", me);
	pthread_barrier_wait(&race.start);
	for (int j = 0; j < RACE_JOBS; j++) {
		djob_store_seq_t k = {-1, 0};
		int attempts, max = 0;
		djob_error_t e;
		int rc = djob_store_claim(s, race.ids[j], worker, 30000, &attempts, &max, &k, &e);
		if (rc == 0) {
			atomic_fetch_add(&race.claims[j], 1);
			atomic_store(&race.winner_attempts[j], attempts);
			/* The winner finishes while another racer cancels. */
			if (djob_store_finish(s, race.ids[j], worker, attempts, max, DJOB_JOB_DONE,
			                      "{\"by\":1}", NULL, &k, &e) == 0)
				atomic_fetch_add(&race.finished[j], 1);
		} else if (rc != DJOB_ECONFLICT) {
			stack_fail("claim answered %d: %s", rc, e.message);
		} else if (me % 2 == 1) {
			char *json = NULL;
			if (djob_store_cancel(s, race.ids[j], &json, &e) == 0)
				atomic_fetch_add(&race.cancelled[j], 1);
			free(json);
		}
	}
	djob_store_free(s);
	return NULL;
}

static void test_racing_writers_never_both_win(void)
{
	djob_store_t *s = open_store(race.mode);
	int64_t at;
	for (int j = 0; j < RACE_JOBS; j++)
		insert_job(s, race.ids[j], &at);
	pthread_barrier_init(&race.start, NULL, RACERS);
	pthread_t t[RACERS];
	for (intptr_t i = 0; i < RACERS; i++)
		pthread_create(&t[i], NULL, racer, (void *)i);
	for (int i = 0; i < RACERS; i++)
		pthread_join(t[i], NULL);
	int completed = 0, cancelled = 0;
	for (int j = 0; j < RACE_JOBS; j++) {
		bson_t *doc = get_doc(s, race.ids[j]);
		djob_state_t st = djob_doc_state(doc);
		STACK_CHECK(race.claims[j] == 1, "job %d claimed %d times", j, race.claims[j]);
		STACK_CHECK(race.finished[j] + race.cancelled[j] <= 1,
		            "job %d: finish and cancel both won", j);
		STACK_CHECK(djob_doc_int(doc, "attempts", 0) == 1 && race.winner_attempts[j] == 1,
		            "job %d has attempts %lld", j,
		            (long long)djob_doc_int(doc, "attempts", 0));
		STACK_CHECK(st == (race.finished[j] ? DJOB_STATE_COMPLETED : DJOB_STATE_CANCELLED),
		            "job %d is %s, but the %s won", j, djob_doc_str(doc, "status"),
		            race.finished[j] ? "finish" : "cancel");
		bson_iter_t it, h;
		int entries = 0;
		if (bson_iter_init_find(&it, doc, "history") && bson_iter_recurse(&it, &h))
			while (bson_iter_next(&h))
				entries++;
		STACK_CHECK(entries == race.finished[j], "job %d has %d history entries", j,
		            entries);
		completed += st == DJOB_STATE_COMPLETED;
		cancelled += st == DJOB_STATE_CANCELLED;
		bson_destroy(doc);
	}
	STACK_CHECK(completed > 0 || cancelled > 0, "nothing happened");
	stack_ok("%s mode: %d racers, %d jobs, each claimed once; %d completed, %d cancelled",
	         mode_of(s), RACERS, RACE_JOBS, completed, cancelled);
	drop_all(s);
	djob_store_free(s);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"store_mode_matches_the_server", test_store_mode_matches_the_server},
		{"job_costs_one_write_per_transition", test_job_costs_one_write_per_transition},
		{"stale_writer_is_refused", test_stale_writer_is_refused},
		{"racing_writers_never_both_win", test_racing_writers_never_both_win},
		{"dead_writers_lock_is_taken_over", test_dead_writers_lock_is_taken_over},
		{"quarantined_job_is_refused_listed_and_retried",
	         test_quarantined_job_is_refused_listed_and_retried},
	};
	const char *want = argc > 1 ? argv[1] : "";
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(want, cases[i].name) != 0)
			continue;
		stack_test_name = cases[i].name;
		race.mode = argc > 2 ? argv[2] : "auto";
		next_collection();
		cases[i].fn();
		return 0;
	}
	fprintf(stderr, "usage: %s CASE, one of:\n", argv[0]);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		fprintf(stderr, "  %s\n", cases[i].name);
	return 2;
}
