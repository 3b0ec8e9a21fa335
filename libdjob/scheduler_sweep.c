/*
 * The scheduler's sweep (scheduler.c runs it on an interval): scheduled
 * jobs whose time came, processing jobs whose lease ran out, queued jobs
 * never confirmed published, and in lock mode the locks old enough to go.
 * Every step is a conditional write, so several sweepers may run at once.
 */
#include "store_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Publish a queued job and drop its outbox entry; a failure leaves the
 * entry for a later sweep. */
static void publish_doc(djob_store_t *s, const bson_t *doc, djob_store_publish_fn publish,
                        void *opaque)
{
	char *json = djob_doc_to_json(doc);
	const char *id = djob_doc_str(doc, "_id");
	djob_error_t e;
	if (json && publish(opaque, id, djob_doc_str(doc, "type"), json, &e) == 0)
		djob_outbox_done(s, &id, 1, NULL);
	else if (json)
		djob_logf(s->conf, DJOB_LOG_WARNING, "scheduler", "Job %s not published: %s", id,
		          e.message);
	free(json);
}

typedef struct {
	djob_store_t *s;
	int64_t now;
	bool exhausted; /* out */
} sweep_t;

static int plan_due(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	sweep_t *w = ctx;
	int rc = djob_expect_move(doc, DJOB_MOVE_DUE, ch, err);
	if (rc == 0)
		rc = djob_expect_before(doc, "runAt", w->now, true, ch, err);
	if (rc == 0)
		djob_set_requeued(ch, w->now);
	return rc;
}

/* A lease ran out: queued again while attempts remain, else failed. The
 * attempt and its holder, as the sweep found them, are expected. */
static int plan_expired(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	sweep_t *w = ctx;
	int attempts = (int)djob_doc_int(doc, "attempts", 0);
	int max = (int)djob_doc_int(doc, "maxAttempts",
	                            djob_config_get_int(w->s->conf, "max.attempts"));
	w->exhausted = attempts >= max;
	int rc = djob_expect_move(doc, w->exhausted ? DJOB_MOVE_FAIL : DJOB_MOVE_EXPIRE, ch, err);
	if (rc == 0)
		rc = djob_expect_before(doc, "leaseUntil", w->now, false, ch, err);
	if (rc == 0)
		rc = djob_expect_lease(doc, djob_doc_str(doc, "workerId"), attempts, ch, err);
	if (rc != 0)
		return rc;
	char msg[160];
	snprintf(msg, sizeof msg, "Lease of attempt %d expired (worker %s)", attempts,
	         djob_doc_str(doc, "workerId"));
	if (w->exhausted) {
		BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", w->now);
		BSON_APPEND_DATE_TIME(&ch->set, "finishedAt", w->now);
		BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
	} else {
		djob_set_requeued(ch, w->now);
	}
	BSON_APPEND_UTF8(&ch->set, "error", msg);
	djob_push_lease_expired(ch, doc, w->now);
	return 0;
}

/* Requeue the jobs a step found (outbox entry first), then publish. The
 * found document is what the plan works from: the write expects it
 * unchanged, so no job is read again. */
static int requeue_all(djob_store_t *s, bson_t **docs, size_t n, plan_fn plan, int64_t now,
                       int64_t found_at, djob_store_publish_fn publish, void *opaque, int *moved,
                       int *exhausted, int *lost, djob_error_t *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *id = djob_doc_str(docs[i], "_id");
		sweep_t w = {s, now, false};
		known_t k = {docs[i], djob_doc_int(docs[i], "seq", 0), found_at};
		int rc = djob_outbox_add(s, &id, 1, now, err);
		bson_t *doc = NULL;
		if (rc == 0)
			rc = djob_store_transition(s, id, &k, plan, &w, NULL, &doc, err);
		if (rc == DJOB_ECONFLICT || rc == DJOB_ENOTFOUND) {
			(*lost)++; /* its outbox entry goes in the outbox step */
			continue;
		}
		if (rc != 0)
			return rc;
		(*moved)++;
		if (w.exhausted) {
			(*exhausted)++;
			djob_outbox_done(s, &id, 1, NULL);
		} else {
			publish_doc(s, doc, publish, opaque);
		}
		bson_destroy(doc);
	}
	return 0;
}

int djob_store_sweep(djob_store_t *s, int64_t now, int64_t grace_ms, int limit,
                     djob_store_publish_fn publish, void *opaque, djob_sweep_stats_t *st,
                     djob_error_t *err)
{
	memset(st, 0, sizeof *st);
	bson_t **docs;
	size_t n;

	/* 1. Scheduled jobs whose time came (delayed jobs, retries). */
	bson_t *f = BCON_NEW("status", BCON_UTF8("scheduled"), "runAt", "{", "$lte",
	                     BCON_DATE_TIME(now), "}");
	int64_t found_at = djob_now_ms();
	int rc = djob_store_find_docs(s, NULL, f, limit, &docs, &n, err);
	bson_destroy(f);
	int none = 0;
	if (rc == 0)
		rc = requeue_all(s, docs, n, plan_due, now, found_at, publish, opaque, &st->due,
		                 &none, &st->lost_races, err);
	djob_store_free_docs(docs, n);
	if (rc != 0)
		return rc;

	/* 2. Processing jobs whose lease ran out (crashed or hung worker). */
	f = BCON_NEW("status", BCON_UTF8("processing"), "leaseUntil", "{", "$lt",
	             BCON_DATE_TIME(now), "}");
	found_at = djob_now_ms();
	rc = djob_store_find_docs(s, NULL, f, limit, &docs, &n, err);
	bson_destroy(f);
	if (rc == 0)
		rc = requeue_all(s, docs, n, plan_expired, now, found_at, publish, opaque,
		                 &st->expired, &st->exhausted, &st->lost_races, err);
	djob_store_free_docs(docs, n);
	if (rc != 0)
		return rc;

	/* 3. Outbox entries older than the grace period: the API or a sweeper
	 * died between writing the job and publishing it. Publish the job if
	 * it is still queued (a second message is harmless: claims are
	 * exclusive), then drop the entry. */
	f = BCON_NEW("at", "{", "$lt", BCON_DATE_TIME(now - grace_ms), "}");
	rc = djob_store_find_docs(s, "outbox", f, limit, &docs, &n, err);
	bson_destroy(f);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *id = djob_doc_str(docs[i], "_id");
		bson_t *job;
		int r = djob_store_find_one(s, id, &job, err);
		if (r == 0 && djob_doc_state(job) == DJOB_STATE_QUEUED) {
			st->unpublished++;
			publish_doc(s, job, publish, opaque);
		} else if (r == 0 || r == DJOB_ENOTFOUND) {
			djob_outbox_done(s, &id, 1, NULL);
		} else {
			rc = r;
		}
		if (r == 0)
			bson_destroy(job);
	}
	djob_store_free_docs(docs, n);
	if (rc != 0)
		return rc;

	/* 4. Lock mode: locks no write can still need. */
	rc = djob_store_expire_locks(s, now, err);
	if (rc < 0)
		return rc;
	st->locks_expired = rc;
	return 0;
}
