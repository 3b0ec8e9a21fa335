/*
 * Every state change of a job (DESIGN.md §3-4): the transition engine, in
 * atomic mode one conditional findAndModify per transition and in lock
 * mode the lock protocol (both explained in store_private.h), and the
 * plans of the worker's and the API's writes. The scheduler's plans are in
 * scheduler_sweep.c; which state a move may leave from is job.c's table.
 */
#include "store_private.h"

#include "json.h"
#include "request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define LOST_RACE 2
#define MAX_ROUNDS 50

static void change_init(change_t *ch)
{
	bson_init(&ch->filter);
	bson_init(&ch->set);
	bson_init(&ch->unset);
	bson_init(&ch->push);
	bson_init(&ch->inc);
}

static void change_destroy(change_t *ch)
{
	bson_destroy(&ch->filter);
	bson_destroy(&ch->set);
	bson_destroy(&ch->unset);
	bson_destroy(&ch->push);
	bson_destroy(&ch->inc);
}

static bson_t *update_of(const change_t *ch)
{
	bson_t *u = bson_new();
	BSON_APPEND_DOCUMENT(u, "$set", &ch->set);
	if (!bson_empty(&ch->unset))
		BSON_APPEND_DOCUMENT(u, "$unset", &ch->unset);
	if (!bson_empty(&ch->push))
		BSON_APPEND_DOCUMENT(u, "$push", &ch->push);
	if (!bson_empty(&ch->inc))
		BSON_APPEND_DOCUMENT(u, "$inc", &ch->inc);
	return u;
}

/* One findAndModify of job `id`, filtered on _id plus `expect` (may be
 * NULL), answering the job as written in *doc_out (its `fields` only,
 * unless NULL). 0 when it matched, LOST_RACE when nothing did. */
static int write_job(djob_store_t *s, const char *id, const bson_t *expect, const bson_t *update,
                     int64_t max_time_ms, const bson_t *fields, bson_t **doc_out, djob_error_t *err)
{
	*doc_out = NULL;
	bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
	if (expect)
		bson_concat(filter, expect);
	mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
	mongoc_find_and_modify_opts_set_update(opts, update);
	mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	if (fields)
		mongoc_find_and_modify_opts_set_fields(opts, fields);
	if (max_time_ms > 0)
		mongoc_find_and_modify_opts_set_max_time_ms(opts, (uint32_t)max_time_ms);
	conn_t c = djob_store_conn(s);
	bson_t reply;
	bson_error_t e;
	int rc = LOST_RACE;
	bson_iter_t it;
	if (!mongoc_collection_find_and_modify_with_opts(c.coll, filter, opts, &reply, &e)) {
		rc = djob_store_mongo_error(err, &e, "findAndModify");
	} else if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		uint32_t len;
		const uint8_t *data;
		bson_iter_document(&it, &len, &data);
		*doc_out = bson_new_from_data(data, len);
		rc = *doc_out ? 0 : djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	bson_destroy(&reply);
	djob_store_conn_put(s, &c);
	mongoc_find_and_modify_opts_destroy(opts);
	bson_destroy(filter);
	return rc;
}

static void pause_after(int round)
{
	struct timespec ts = {0, (round < 10 ? 2 : 20) * 1000000L};
	nanosleep(&ts, NULL);
}

static int busy(djob_error_t *err)
{
	/* Not a conflict with the caller's request: the store is busy with
	 * this job (503, retriable). */
	return djob_set_error(err, DJOB_EMONGO, 1,
	                      "The job is being changed by another writer; try again");
}

/* Atomic mode: plan on what the caller knows (or nothing) and write with
 * the plan's expectations in the filter; read the job only when that
 * matched nothing or the plan needs it, and plan again from what is read. */
static int transition_atomic(djob_store_t *s, const char *id, const known_t *known, plan_fn plan,
                             void *ctx, const bson_t *fields, bson_t **doc_out, djob_error_t *err)
{
	const bson_t *doc = known ? known->doc : NULL;
	bson_t *read = NULL;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		change_t ch;
		change_init(&ch);
		int rc = plan(doc, ctx, &ch, err);
		if (rc == 0) {
			BSON_APPEND_INT64(&ch.inc, "seq", 1);
			bson_t *u = update_of(&ch);
			rc = write_job(s, id, &ch.filter, u, 0, fields, doc_out, err);
			bson_destroy(u);
		} else if (!read) {
			rc = LOST_RACE; /* refused what the caller knew: ask the job */
		}
		change_destroy(&ch);
		bson_destroy(read);
		read = NULL;
		if (rc != LOST_RACE)
			return rc;
		rc = djob_store_find_one(s, id, &read, err);
		if (rc != 0)
			return rc;
		doc = read;
	}
	bson_destroy(read);
	return busy(err);
}

/* A lock older than LOCK_TTL_MS belongs to a writer that died holding it
 * (killed between its lock and its write): by the time bounds above its
 * write can no longer land, so the next writer deletes it, as the sweep
 * would, instead of waiting for a sweep that may not run (a worker
 * without a scheduler). Only that lock, only if it is still that old. */
static bool drop_stale_lock(mongoc_collection_t *locks, const char *lock_id)
{
	bson_t *f = BCON_NEW("_id", BCON_UTF8(lock_id), "at", "{", "$lt",
	                     BCON_DATE_TIME(djob_now_ms() - LOCK_TTL_MS), "}");
	bson_t reply;
	bool dropped = mongoc_collection_delete_one(locks, f, NULL, &reply, NULL) &&
	               djob_doc_int(&reply, "deletedCount", 0) == 1;
	bson_destroy(&reply);
	bson_destroy(f);
	return dropped;
}

/* Lock mode, one write: take lock seq+1, then write the job by _id alone
 * (store_private.h says why that is safe). LOST_RACE when another writer
 * holds the lock. */
static int locked_write(djob_store_t *s, const char *id, int64_t seq, const change_t *ch,
                        const bson_t *fields, bson_t **doc_out, djob_error_t *err)
{
	*doc_out = NULL;
	char lock_id[80];
	snprintf(lock_id, sizeof lock_id, "%s:%lld", id, (long long)(seq + 1));
	int64_t t0 = djob_mono_ms();
	bson_t *lock = BCON_NEW("_id", BCON_UTF8(lock_id), "at", BCON_DATE_TIME(djob_now_ms()));
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *locks = djob_store_side(&c, s, "locks");
	bson_error_t e;
	bool locked = mongoc_collection_insert_one(locks, lock, NULL, NULL, &e);
	if (!locked && e.code == 11000 && drop_stale_lock(locks, lock_id))
		locked = mongoc_collection_insert_one(locks, lock, NULL, NULL, &e);
	bool late = locked && djob_mono_ms() - t0 > LOCK_SEND_MS;
	if (late) {
		/* Too slow to write under this lock: the write was never sent,
		 * so the lock can be given back at once. */
		bson_t *f = BCON_NEW("_id", BCON_UTF8(lock_id));
		mongoc_collection_delete_one(locks, f, NULL, NULL, NULL);
		bson_destroy(f);
	}
	mongoc_collection_destroy(locks);
	djob_store_conn_put(s, &c);
	bson_destroy(lock);
	if (!locked)
		return e.code == 11000 ? LOST_RACE : djob_store_mongo_error(err, &e, "lock insert");
	if (late)
		return LOST_RACE;
	bson_t *u = update_of(ch);
	/* FerretDB 1.24 has no findAndModify `fields`: the whole job comes back. */
	(void)fields;
	int rc = write_job(s, id, NULL, u, LOCK_WRITE_MS, NULL, doc_out, err);
	bson_destroy(u);
	if (rc == LOST_RACE)
		return djob_set_error(err, DJOB_ENOTFOUND, 0, "Job not found");
	if (rc < 0) {
		/* Whether the write happened is unknown: if the job shows it, it
		 * did; otherwise the lock stays until it expires, since the
		 * write may still land. */
		bson_t *now;
		if (djob_store_find_one(s, id, &now, NULL) == 0) {
			if (djob_doc_int(now, "seq", 0) == seq + 1) {
				*doc_out = now;
				return 0;
			}
			bson_destroy(now);
		}
	}
	return rc;
}

static int transition_locks(djob_store_t *s, const char *id, const known_t *known, plan_fn plan,
                            void *ctx, const bson_t *fields, bson_t **doc_out, djob_error_t *err)
{
	bool presume = known && known->doc && known->seq >= 0 &&
	               djob_now_ms() - known->at_ms < LOCK_KNOWN_MS;
	bson_t *read = NULL;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		bool presumed = presume && round == 0;
		const bson_t *doc = known ? known->doc : NULL;
		int64_t seq = known ? known->seq : -1;
		if (!presumed) {
			int rc = djob_store_find_one(s, id, &read, err);
			if (rc != 0)
				return rc;
			doc = read;
			seq = djob_doc_int(read, "seq", 0);
		}
		change_t ch;
		change_init(&ch);
		int rc = plan(doc, ctx, &ch, err);
		if (rc != 0 && presumed) {
			rc = LOST_RACE; /* answer from the job itself */
		} else if (rc == 0) {
			BSON_APPEND_INT64(&ch.set, "seq", seq + 1);
			rc = locked_write(s, id, seq, &ch, fields, doc_out, err);
		}
		change_destroy(&ch);
		bson_destroy(read);
		read = NULL;
		if (rc != LOST_RACE)
			return rc;
		if (!presumed)
			pause_after(round);
	}
	return busy(err);
}

int djob_store_transition(djob_store_t *s, const char *id, const known_t *known, plan_fn plan,
                          void *ctx, const bson_t *fields, bson_t **doc_out, djob_error_t *err)
{
	*doc_out = NULL;
	store_mode_t mode;
	int rc = djob_store_mode(s, &mode, err);
	if (rc != 0)
		return rc;
	return mode == STORE_MODE_ATOMIC
	               ? transition_atomic(s, id, known, plan, ctx, fields, doc_out, err)
	               : transition_locks(s, id, known, plan, ctx, fields, doc_out, err);
}

int djob_store_expire_locks(djob_store_t *s, int64_t now, djob_error_t *err)
{
	store_mode_t mode;
	int rc = djob_store_mode(s, &mode, err);
	if (rc != 0 || mode != STORE_MODE_LOCKS)
		return rc;
	/* A few times a lock's lifetime is often enough (the delete reads the
	 * whole locks collection on FerretDB). */
	long long last = atomic_load(&s->locks_expired_ms);
	if (now - last < LOCK_TTL_MS / 4 ||
	    !atomic_compare_exchange_strong(&s->locks_expired_ms, &last, now))
		return 0;
	bson_t *f = BCON_NEW("at", "{", "$lt", BCON_DATE_TIME(now - LOCK_TTL_MS), "}");
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *locks = djob_store_side(&c, s, "locks");
	bson_t reply;
	bson_error_t e;
	if (!mongoc_collection_delete_many(locks, f, NULL, &reply, &e))
		rc = djob_store_mongo_error(err, &e, "lock expiry");
	else
		rc = (int)djob_doc_int(&reply, "deletedCount", 0);
	bson_destroy(&reply);
	mongoc_collection_destroy(locks);
	djob_store_conn_put(s, &c);
	bson_destroy(f);
	return rc;
}

/* ---- plan helpers ---- */

static int conflict_from_to(const bson_t *doc, djob_state_t to, djob_error_t *err)
{
	return djob_set_error(err, DJOB_ECONFLICT, 0, "Cannot change status from %s to %s",
	                      djob_doc_str(doc, "status"), djob_state_name(to));
}

static int conflict_lease(djob_error_t *err)
{
	return djob_set_error(err, DJOB_ECONFLICT, 0,
	                      "The job's lease is held by another worker or attempt");
}

int djob_expect_move(const bson_t *doc, djob_move_t move, change_t *ch, djob_error_t *err)
{
	unsigned from = djob_move_from(move);
	djob_state_t to = djob_move_to(move);
	if (doc) {
		djob_state_t st = djob_doc_state(doc);
		if (st == DJOB_STATE_INVALID || !(from & (1u << st)))
			return conflict_from_to(doc, to, err);
	}
	int n = 0;
	djob_state_t one = DJOB_STATE_INVALID;
	for (int st = 0; st < 32; st++)
		if (from & (1u << st)) {
			n++;
			one = (djob_state_t)st;
		}
	if (n == 1) {
		BSON_APPEND_UTF8(&ch->filter, "status", djob_state_name(one));
	} else {
		bson_t cond, in;
		char buf[16];
		const char *k;
		uint32_t i = 0;
		BSON_APPEND_DOCUMENT_BEGIN(&ch->filter, "status", &cond);
		BSON_APPEND_ARRAY_BEGIN(&cond, "$in", &in);
		for (int st = 0; st < 32; st++)
			if (from & (1u << st)) {
				bson_uint32_to_string(i++, &k, buf, sizeof buf);
				BSON_APPEND_UTF8(&in, k, djob_state_name((djob_state_t)st));
			}
		bson_append_array_end(&cond, &in);
		bson_append_document_end(&ch->filter, &cond);
	}
	BSON_APPEND_UTF8(&ch->set, "status", djob_state_name(to));
	return 0;
}

int djob_expect_lease(const bson_t *doc, const char *worker_id, int attempts, change_t *ch,
                      djob_error_t *err)
{
	if (doc && (djob_doc_state(doc) != DJOB_STATE_PROCESSING ||
	            strcmp(djob_doc_str(doc, "workerId"), worker_id) != 0 ||
	            djob_doc_int(doc, "attempts", -1) != attempts))
		return conflict_lease(err);
	BSON_APPEND_UTF8(&ch->filter, "workerId", worker_id);
	BSON_APPEND_INT32(&ch->filter, "attempts", attempts);
	return 0;
}

int djob_expect_before(const bson_t *doc, const char *key, int64_t t, bool inclusive, change_t *ch,
                       djob_error_t *err)
{
	if (doc) {
		int64_t v = djob_doc_date(doc, key);
		if (inclusive ? v > t : v >= t)
			return djob_set_error(err, DJOB_ECONFLICT, 0, "The job's %s has not come",
			                      key);
	}
	bson_t cond;
	BSON_APPEND_DOCUMENT_BEGIN(&ch->filter, key, &cond);
	BSON_APPEND_DATE_TIME(&cond, inclusive ? "$lte" : "$lt", t);
	bson_append_document_end(&ch->filter, &cond);
	return 0;
}

void djob_push_lease_expired(change_t *ch, const bson_t *doc, int64_t now)
{
	bson_t entry;
	BSON_APPEND_DOCUMENT_BEGIN(&ch->push, "history", &entry);
	BSON_APPEND_INT32(&entry, "attempt", (int32_t)djob_doc_int(doc, "attempts", 0));
	BSON_APPEND_UTF8(&entry, "workerId", djob_doc_str(doc, "workerId"));
	BSON_APPEND_UTF8(&entry, "status", "lease expired");
	BSON_APPEND_DATE_TIME(&entry, "finishedAt", now);
	bson_append_document_end(&ch->push, &entry);
}

void djob_set_requeued(change_t *ch, int64_t now)
{
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", now);
	BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
}

/* ---- the worker's writes ---- */

/* What a worker's write answers with: what it needs to know next. */
static bson_t *worker_fields(void)
{
	return BCON_NEW("attempts", BCON_INT32(1), "maxAttempts", BCON_INT32(1), "seq",
	                BCON_INT32(1));
}

/* What the worker knows after a write. */
static void known_after(const bson_t *doc, djob_store_seq_t *seq)
{
	seq->seq = djob_doc_int(doc, "seq", -1);
	seq->at_ms = djob_now_ms();
}

typedef struct {
	djob_store_t *s;
	const char *worker_id; /* NULL: keep the current one (a prototype PATCH) */
	long lease_ms;
	int64_t now;
} claim_t;

/* A queued job, or (read first) a processing one whose lease expired. */
static int plan_claim(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	claim_t *c = ctx;
	int rc;
	if (doc && djob_doc_state(doc) == DJOB_STATE_PROCESSING) {
		int attempts = (int)djob_doc_int(doc, "attempts", 0);
		int max = (int)djob_doc_int(doc, "maxAttempts",
		                            djob_config_get_int(c->s->conf, "max.attempts"));
		rc = djob_expect_move(doc, DJOB_MOVE_TAKE_OVER, ch, err);
		if (rc == 0)
			rc = djob_expect_before(doc, "leaseUntil", c->now, false, ch, err);
		if (rc != 0)
			return djob_set_error(err, DJOB_ECONFLICT, 0, "Job is processing");
		if (attempts >= max)
			return djob_set_error(err, DJOB_ECONFLICT, 0, "Job has no attempt left");
		/* The holder of the lease that expired, pinned. */
		rc = djob_expect_lease(doc, djob_doc_str(doc, "workerId"), attempts, ch, err);
		if (rc != 0)
			return rc;
		djob_push_lease_expired(ch, doc, c->now);
		BSON_APPEND_INT32(&ch->set, "attempts", attempts + 1);
	} else {
		rc = djob_expect_move(doc, DJOB_MOVE_CLAIM, ch, err);
		if (rc != 0)
			return rc;
		BSON_APPEND_INT32(&ch->inc, "attempts", 1);
	}
	if (c->worker_id)
		BSON_APPEND_UTF8(&ch->set, "workerId", c->worker_id);
	BSON_APPEND_DATE_TIME(&ch->set, "leaseUntil", c->now + c->lease_ms);
	BSON_APPEND_DATE_TIME(&ch->set, "startedAt", c->now);
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", c->now);
	return 0;
}

int djob_store_claim(djob_store_t *s, const char *id, const char *worker_id, long lease_ms,
                     int *attempts, int *max_attempts, djob_store_seq_t *seq, djob_error_t *err)
{
	claim_t c = {s, worker_id, lease_ms, djob_now_ms()};
	/* As the message showed it: queued. */
	bson_t *queued = BCON_NEW("status", BCON_UTF8("queued"), "attempts", BCON_INT32(0));
	known_t k = {queued, seq->seq, seq->at_ms};
	bson_t *fields = worker_fields(), *doc;
	int rc = djob_store_transition(s, id, &k, plan_claim, &c, fields, &doc, err);
	if (rc == 0) {
		*attempts = (int)djob_doc_int(doc, "attempts", 1);
		*max_attempts = (int)djob_doc_int(doc, "maxAttempts",
		                                  djob_config_get_int(s->conf, "max.attempts"));
		known_after(doc, seq);
		bson_destroy(doc);
	}
	bson_destroy(fields);
	bson_destroy(queued);
	return rc;
}

typedef struct {
	const char *worker_id;
	int attempts;
	long lease_ms;
	int64_t now;
	const bson_t *progress; /* {value, message} to record, or NULL */
} extend_t;

static int plan_extend(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	extend_t *x = ctx;
	if (djob_expect_move(doc, DJOB_MOVE_EXTEND, ch, err) != 0 ||
	    djob_expect_lease(doc, x->worker_id, x->attempts, ch, err) != 0)
		return conflict_lease(err);
	BSON_APPEND_DATE_TIME(&ch->set, "leaseUntil", x->now + x->lease_ms);
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", x->now);
	if (x->progress) {
		bson_t p;
		bson_iter_t it;
		BSON_APPEND_DOCUMENT_BEGIN(&ch->set, "progress", &p);
		if (bson_iter_init_find(&it, x->progress, "value"))
			BSON_APPEND_DOUBLE(&p, "value", bson_iter_as_double(&it));
		if (bson_iter_init_find(&it, x->progress, "message") && BSON_ITER_HOLDS_UTF8(&it))
			BSON_APPEND_UTF8(&p, "message", bson_iter_utf8(&it, NULL));
		BSON_APPEND_DATE_TIME(&p, "updatedAt", x->now);
		bson_append_document_end(&ch->set, &p);
	}
	return 0;
}

/* The job as this worker's claim or last write left it. */
static bson_t *held_doc(const char *worker_id, int attempts, int max_attempts)
{
	return BCON_NEW("status", BCON_UTF8("processing"), "workerId", BCON_UTF8(worker_id),
	                "attempts", BCON_INT32(attempts), "maxAttempts", BCON_INT32(max_attempts));
}

/* A worker's write of its own job: extend or finish. */
static int worker_write(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                        int max_attempts, plan_fn plan, void *ctx, djob_store_seq_t *seq,
                        djob_error_t *err)
{
	bson_t *held = held_doc(worker_id, attempts, max_attempts);
	known_t k = {held, seq->seq, seq->at_ms};
	bson_t *fields = worker_fields(), *doc;
	int rc = djob_store_transition(s, id, &k, plan, ctx, fields, &doc, err);
	if (rc == 0) {
		known_after(doc, seq);
		bson_destroy(doc);
	}
	bson_destroy(fields);
	bson_destroy(held);
	return rc;
}

int djob_store_extend(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                      int max_attempts, long lease_ms, djob_store_seq_t *seq, djob_error_t *err)
{
	extend_t x = {worker_id, attempts, lease_ms, djob_now_ms(), NULL};
	return worker_write(s, id, worker_id, attempts, max_attempts, plan_extend, &x, seq, err);
}

int djob_store_progress(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                        int max_attempts, long lease_ms, const char *progress_json,
                        djob_store_seq_t *seq, djob_error_t *err)
{
	bson_t *progress = NULL;
	int rc = djob_json_parse(progress_json, strlen(progress_json), "Progress", NULL, &progress,
	                         err);
	if (rc != 0)
		return rc;
	extend_t x = {worker_id, attempts, lease_ms, djob_now_ms(), progress};
	rc = worker_write(s, id, worker_id, attempts, max_attempts, plan_extend, &x, seq, err);
	bson_destroy(progress);
	return rc;
}

int djob_store_held(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                    djob_error_t *err)
{
	bson_t *doc;
	int rc = djob_store_find_one(s, id, &doc, err);
	if (rc != 0)
		return rc == DJOB_ENOTFOUND ? DJOB_ECONFLICT : rc;
	if (djob_doc_state(doc) == DJOB_STATE_CANCELLED)
		rc = djob_set_error(err, DJOB_ECONFLICT, 0, "The job was cancelled");
	else if (djob_doc_state(doc) != DJOB_STATE_PROCESSING ||
	         strcmp(djob_doc_str(doc, "workerId"), worker_id) != 0 ||
	         djob_doc_int(doc, "attempts", -1) != attempts)
		rc = conflict_lease(err);
	bson_destroy(doc);
	return rc;
}

int64_t djob_retry_backoff_ms(int attempts)
{
	int64_t base = 1000;
	for (int i = 1; i < attempts && base < 300000; i++)
		base *= 2;
	if (base > 300000)
		base = 300000;
	uint32_t r = 0;
	if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
		r = (uint32_t)djob_mono_ms();
	return base + (int64_t)(r % (uint32_t)(base / 5 + 1));
}

typedef struct {
	const char *worker_id;
	int attempts, max_attempts; /* max_attempts 0: not known */
	int default_max;            /* for a job stored without maxAttempts */
	djob_job_status_t outcome;
	const bson_t *result;
	const char *error;
	int64_t now;
} finish_t;

/* A handler's outcome: completed, scheduled for a retry while attempts
 * remain (maxAttempts never changes after submit), or failed. */
static int plan_finish(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	finish_t *f = ctx;
	bool done = f->outcome == DJOB_JOB_DONE;
	int max = doc ? (int)djob_doc_int(doc, "maxAttempts", f->default_max) : f->max_attempts;
	/* Nothing known of maxAttempts: presume attempts remain, and expect it. */
	bool presume_left = !done && f->outcome == DJOB_JOB_RETRY && max <= 0;
	bool again = presume_left || (f->outcome == DJOB_JOB_RETRY && f->attempts < max);
	djob_move_t move = done    ? DJOB_MOVE_COMPLETE
	                   : again ? DJOB_MOVE_RESCHEDULE
	                           : DJOB_MOVE_FAIL;
	if (djob_expect_move(doc, move, ch, err) != 0 ||
	    djob_expect_lease(doc, f->worker_id, f->attempts, ch, err) != 0)
		return conflict_lease(err);
	if (presume_left) {
		bson_t gt;
		BSON_APPEND_DOCUMENT_BEGIN(&ch->filter, "maxAttempts", &gt);
		BSON_APPEND_INT32(&gt, "$gt", f->attempts);
		bson_append_document_end(&ch->filter, &gt);
	}
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", f->now);
	if (done)
		BSON_APPEND_DOCUMENT(&ch->set, "result", f->result);
	else
		BSON_APPEND_UTF8(&ch->set, "error", f->error);
	if (again)
		BSON_APPEND_DATE_TIME(&ch->set, "runAt",
		                      f->now + djob_retry_backoff_ms(f->attempts));
	else
		BSON_APPEND_DATE_TIME(&ch->set, "finishedAt", f->now);
	BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
	if (done)
		BSON_APPEND_UTF8(&ch->unset, "error", "");
	/* The outcome of every attempt stays in the document. */
	bson_t entry;
	BSON_APPEND_DOCUMENT_BEGIN(&ch->push, "history", &entry);
	BSON_APPEND_INT32(&entry, "attempt", f->attempts);
	BSON_APPEND_UTF8(&entry, "workerId", f->worker_id);
	BSON_APPEND_UTF8(&entry, "status", done ? "completed" : "failed");
	if (!done)
		BSON_APPEND_UTF8(&entry, "error", f->error);
	BSON_APPEND_DATE_TIME(&entry, "finishedAt", f->now);
	bson_append_document_end(&ch->push, &entry);
	return 0;
}

int djob_store_finish(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                      int max_attempts, djob_job_status_t outcome, const char *result_json,
                      const char *error, djob_store_seq_t *seq, djob_error_t *err)
{
	bson_t *result = NULL;
	if (outcome == DJOB_JOB_DONE) {
		/* djob_job_set_result checked it: this parse of its own text
		 * cannot fail but for memory. */
		const char *text = result_json ? result_json : "{}";
		int rc = djob_json_parse(text, strlen(text), "Result", NULL, &result, err);
		if (rc != 0)
			return rc;
	}
	finish_t f = {worker_id,
	              attempts,
	              max_attempts,
	              (int)djob_config_get_int(s->conf, "max.attempts"),
	              outcome,
	              result,
	              error ? error : "Handler failed",
	              djob_now_ms()};
	int rc = worker_write(s, id, worker_id, attempts, max_attempts, plan_finish, &f, seq, err);
	/* The job is no longer as held_doc() presumes: a later write of this
	 * worker (a lease extension racing the finish) must read it. */
	if (rc == 0)
		seq->seq = -1;
	if (result)
		bson_destroy(result);
	return rc;
}

/* ---- the API's writes ---- */

/* Answer with the job as written. */
static int doc_result(djob_store_t *s, const char *id, const known_t *known, plan_fn plan,
                      void *ctx, char **json_out, djob_error_t *err)
{
	bson_t *doc;
	int rc = djob_store_transition(s, id, known, plan, ctx, NULL, &doc, err);
	if (rc != 0)
		return rc;
	if (json_out) {
		*json_out = djob_doc_to_json(doc);
		if (!*json_out)
			rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	bson_destroy(doc);
	return rc;
}

typedef struct {
	djob_store_t *s;
	djob_state_t to;
	const bson_t *result;
	const char *error, *worker;
	int attempts; /* 0 when not fenced */
	long lease_ms;
	int64_t now;
	bool retry;             /* a fenced failure that should be retried */
	const bson_t *empty;    /* {} for a completion without a result */
	const bson_t *progress; /* with a fenced processing: to record, or NULL */
} patch_t;

static int plan_patch(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	patch_t *p = ctx;
	bool fenced = p->worker && p->attempts > 0;
	if (p->to == DJOB_STATE_PROCESSING && fenced) {
		/* The holder of the lease extends it. */
		extend_t x = {p->worker, p->attempts, p->lease_ms, p->now, p->progress};
		return plan_extend(doc, &x, ch, err);
	}
	if (p->to == DJOB_STATE_PROCESSING) {
		claim_t c = {p->s, p->worker, p->lease_ms, p->now};
		return plan_claim(doc, &c, ch, err);
	}
	if (fenced) {
		/* A worker recording its outcome (the api sink): the same change
		 * as the store sink's, history and retries included. */
		finish_t f = {p->worker,
		              p->attempts,
		              0,
		              (int)djob_config_get_int(p->s->conf, "max.attempts"),
		              p->to == DJOB_STATE_COMPLETED ? DJOB_JOB_DONE
		              : p->retry                    ? DJOB_JOB_RETRY
		                                            : DJOB_JOB_FAIL,
		              p->result ? p->result : p->empty,
		              p->error ? p->error : "Failed",
		              p->now};
		return plan_finish(doc, &f, ch, err);
	}
	int rc = djob_expect_move(
		doc, p->to == DJOB_STATE_COMPLETED ? DJOB_MOVE_COMPLETE : DJOB_MOVE_FAIL, ch, err);
	if (rc != 0)
		return rc;
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", p->now);
	BSON_APPEND_DATE_TIME(&ch->set, "finishedAt", p->now);
	if (p->result)
		BSON_APPEND_DOCUMENT(&ch->set, "result", p->result);
	if (p->to == DJOB_STATE_FAILED)
		BSON_APPEND_UTF8(&ch->set, "error", p->error ? p->error : "Failed");
	else if (p->error)
		BSON_APPEND_UTF8(&ch->set, "error", p->error);
	BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
	return 0;
}

int djob_store_patch(djob_store_t *s, const char *id, const djob_patch_t *body, char **json_out,
                     djob_error_t *err)
{
	bson_t empty = BSON_INITIALIZER;
	patch_t p = {s,
	             body->to,
	             body->result,
	             body->error,
	             body->worker_id,
	             body->worker_id ? body->attempts : 0,
	             body->lease_ms ? body->lease_ms : djob_config_get_int(s->conf, "lease.ms"),
	             djob_now_ms(),
	             body->retry,
	             &empty,
	             body->progress};
	int rc = doc_result(s, id, NULL, plan_patch, &p, json_out, err);
	bson_destroy(&empty);
	return rc;
}

typedef struct {
	int64_t now;
} now_t;

static int plan_cancel(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	int64_t now = ((now_t *)ctx)->now;
	int rc = djob_expect_move(doc, DJOB_MOVE_CANCEL, ch, err);
	if (rc != 0)
		return rc;
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", now);
	BSON_APPEND_DATE_TIME(&ch->set, "finishedAt", now);
	BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
	return 0;
}

int djob_store_cancel(djob_store_t *s, const char *id, char **json_out, djob_error_t *err)
{
	now_t n = {djob_now_ms()};
	return doc_result(s, id, NULL, plan_cancel, &n, json_out, err);
}

/* A retry from failed or cancelled: attempts start again. */
static int plan_retry(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	int rc = djob_expect_move(doc, DJOB_MOVE_RETRY, ch, err);
	if (rc != 0)
		return rc;
	djob_set_requeued(ch, ((now_t *)ctx)->now);
	BSON_APPEND_INT32(&ch->set, "attempts", 0);
	BSON_APPEND_UTF8(&ch->unset, "error", "");
	BSON_APPEND_UTF8(&ch->unset, "result", "");
	BSON_APPEND_UTF8(&ch->unset, "finishedAt", "");
	BSON_APPEND_UTF8(&ch->unset, "runAt", "");
	return 0;
}

int djob_store_retry(djob_store_t *s, const char *id, char **json_out, djob_error_t *err)
{
	now_t n = {djob_now_ms()};
	/* The outbox entry first: a requeued job is never without one until
	 * the caller has published it (djob_store_mark_published). */
	int rc = djob_outbox_add(s, &id, 1, n.now, err);
	return rc != 0 ? rc : doc_result(s, id, NULL, plan_retry, &n, json_out, err);
}
