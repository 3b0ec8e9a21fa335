/*
 * Submission: a job's insert with its outbox entry and idempotency key, and
 * the outbox that lets the scheduler publish a job whose submitter died
 * between the insert and the produce.
 */
#include "store_private.h"

#include "json.h"

#include <stdlib.h>
#include <string.h>

/* ---- the outbox ---- */

/* Record that jobs await publishing. An entry already there is fine. */
int djob_outbox_add(djob_store_t *s, const char *const *ids, size_t n, int64_t now,
                    djob_error_t *err)
{
	if (n == 0)
		return 0;
	bson_t **docs = calloc(n, sizeof *docs);
	if (!docs)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	for (size_t i = 0; i < n; i++)
		docs[i] = BCON_NEW("_id", BCON_UTF8(ids[i]), "at", BCON_DATE_TIME(now));
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *ob = djob_store_side(&c, s, "outbox");
	bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
	bson_error_t e;
	int rc = 0;
	if (!mongoc_collection_insert_many(ob, (const bson_t **)docs, n, opts, NULL, &e) &&
	    e.code != 11000)
		rc = djob_store_mongo_error(err, &e, "outbox insert");
	bson_destroy(opts);
	mongoc_collection_destroy(ob);
	djob_store_conn_put(s, &c);
	for (size_t i = 0; i < n; i++)
		bson_destroy(docs[i]);
	free(docs);
	return rc;
}

/* The jobs are published: drop their outbox entries. */
int djob_outbox_done(djob_store_t *s, const char *const *ids, size_t n, djob_error_t *err)
{
	if (n == 0)
		return 0;
	bson_t f = BSON_INITIALIZER;
	if (n == 1) {
		BSON_APPEND_UTF8(&f, "_id", ids[0]);
	} else {
		/* The outbox holds only jobs in flight, so $in stays cheap. */
		bson_t id, in;
		char buf[16];
		const char *k;
		BSON_APPEND_DOCUMENT_BEGIN(&f, "_id", &id);
		BSON_APPEND_ARRAY_BEGIN(&id, "$in", &in);
		for (size_t i = 0; i < n; i++) {
			bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
			BSON_APPEND_UTF8(&in, k, ids[i]);
		}
		bson_append_array_end(&id, &in);
		bson_append_document_end(&f, &id);
	}
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *ob = djob_store_side(&c, s, "outbox");
	bson_error_t e;
	int rc = 0;
	if (!(n == 1 ? mongoc_collection_delete_one(ob, &f, NULL, NULL, &e)
	             : mongoc_collection_delete_many(ob, &f, NULL, NULL, &e)))
		rc = djob_store_mongo_error(err, &e, "outbox delete");
	mongoc_collection_destroy(ob);
	djob_store_conn_put(s, &c);
	bson_destroy(&f);
	return rc;
}

/* ---- submission ---- */

char *djob_new_job_to_json(const djob_new_job_t *j)
{
	char iso[32];
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "_id", j->id);
	cJSON_AddStringToObject(o, "type", j->type);
	cJSON_AddStringToObject(o, "status", djob_state_name(j->state));
	cJSON_AddItemToObject(o, "payload", djob_json_from_bson(j->payload, false));
	cJSON_AddNumberToObject(o, "attempts", 0);
	cJSON_AddNumberToObject(o, "maxAttempts", j->max_attempts);
	if (j->run_at_ms) {
		djob_format_iso(j->run_at_ms, iso);
		cJSON_AddStringToObject(o, "runAt", iso);
	}
	if (j->idempotency_key)
		cJSON_AddStringToObject(o, "idempotencyKey", j->idempotency_key);
	if (j->schedule) {
		cJSON_AddStringToObject(o, "schedule", j->schedule);
		djob_format_iso(j->due_at_ms, iso);
		cJSON_AddStringToObject(o, "dueAt", iso);
	}
	djob_format_iso(j->created_ms, iso);
	cJSON_AddStringToObject(o, "createdAt", iso);
	cJSON_AddStringToObject(o, "updatedAt", iso);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static bson_t *new_job_bson(const djob_new_job_t *j)
{
	bson_t *b = bson_new();
	BSON_APPEND_UTF8(b, "_id", j->id);
	BSON_APPEND_UTF8(b, "type", j->type);
	BSON_APPEND_UTF8(b, "status", djob_state_name(j->state));
	BSON_APPEND_DOCUMENT(b, "payload", j->payload);
	BSON_APPEND_INT32(b, "attempts", 0);
	BSON_APPEND_INT32(b, "maxAttempts", j->max_attempts);
	if (j->run_at_ms)
		BSON_APPEND_DATE_TIME(b, "runAt", j->run_at_ms);
	if (j->idempotency_key)
		BSON_APPEND_UTF8(b, "idempotencyKey", j->idempotency_key);
	if (j->schedule) {
		BSON_APPEND_UTF8(b, "schedule", j->schedule);
		BSON_APPEND_DATE_TIME(b, "dueAt", j->due_at_ms);
	}
	BSON_APPEND_DATE_TIME(b, "createdAt", j->created_ms);
	BSON_APPEND_DATE_TIME(b, "updatedAt", j->created_ms);
	BSON_APPEND_INT64(b, "seq", 0);
	return b;
}

static void delete_keys(djob_store_t *s, const djob_new_job_t *jobs, size_t n)
{
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *idem = djob_store_side(&c, s, "idempotency");
	for (size_t i = 0; i < n; i++) {
		if (!jobs[i].idempotency_key)
			continue;
		bson_t *f = BCON_NEW("_id", BCON_UTF8(jobs[i].idempotency_key));
		mongoc_collection_delete_one(idem, f, NULL, NULL, NULL);
		bson_destroy(f);
	}
	mongoc_collection_destroy(idem);
	djob_store_conn_put(s, &c);
}

/* Delete jobs by id (a submission that failed half-way). */
static void delete_jobs(djob_store_t *s, const djob_new_job_t *jobs, size_t n)
{
	conn_t c = djob_store_conn(s);
	for (size_t i = 0; i < n; i++) {
		bson_t *f = BCON_NEW("_id", BCON_UTF8(jobs[i].id));
		mongoc_collection_delete_one(c.coll, f, NULL, NULL, NULL);
		bson_destroy(f);
	}
	djob_store_conn_put(s, &c);
}

/* The ids of the jobs that will be published now (queued, not delayed). */
static const char **queued_ids(const djob_new_job_t *jobs, size_t n, size_t *m)
{
	const char **ids = malloc((n ? n : 1) * sizeof *ids);
	*m = 0;
	for (size_t i = 0; ids && i < n; i++)
		if (jobs[i].state == DJOB_STATE_QUEUED)
			ids[(*m)++] = jobs[i].id;
	return ids;
}

int djob_store_insert(djob_store_t *s, const djob_new_job_t *jobs, size_t n, djob_error_t *err)
{
	if (djob_store_ensure_indexes(s, err) != 0)
		return err ? err->code : DJOB_EMONGO;
	conn_t c = djob_store_conn(s);
	bson_error_t e;
	int rc = 0;
	size_t keys = 0;
	/* Idempotency keys first: a unique _id per key makes a concurrent
	 * repeat fail here, before any job exists. */
	mongoc_collection_t *idem = djob_store_side(&c, s, "idempotency");
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!jobs[i].idempotency_key)
			continue;
		bson_t *d = BCON_NEW("_id", BCON_UTF8(jobs[i].idempotency_key), "jobId",
		                     BCON_UTF8(jobs[i].id), "createdAt",
		                     BCON_DATE_TIME(jobs[i].created_ms));
		if (!mongoc_collection_insert_one(idem, d, NULL, NULL, &e))
			rc = djob_store_mongo_error(err, &e, "insert of the idempotency key");
		else
			keys++;
		bson_destroy(d);
	}
	mongoc_collection_destroy(idem);
	djob_store_conn_put(s, &c);
	/* The outbox entry comes before the job, so no job is ever without
	 * one until it is published. */
	size_t m = 0;
	const char **ids = queued_ids(jobs, n, &m);
	if (!ids && rc == 0)
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	if (rc == 0)
		rc = djob_outbox_add(s, ids, m, jobs[0].created_ms, err);
	const bson_t **docs = calloc(n ? n : 1, sizeof *docs);
	size_t built = 0;
	if (!docs && rc == 0)
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	for (; rc == 0 && built < n; built++) {
		docs[built] = new_job_bson(&jobs[built]);
		if (!docs[built])
			rc = djob_set_error(err, DJOB_EINVAL, 0, "Payload cannot be stored");
	}
	if (rc == 0) {
		c = djob_store_conn(s);
		if (!mongoc_collection_insert_many(c.coll, docs, n, NULL, NULL, &e)) {
			rc = djob_store_mongo_error(err, &e, "insert");
			djob_store_conn_put(s, &c);
			/* An ordered insert may have stored a prefix: remove it. */
			delete_jobs(s, jobs, n);
		} else {
			djob_store_conn_put(s, &c);
		}
	}
	for (size_t i = 0; docs && i < built; i++)
		bson_destroy((bson_t *)docs[i]);
	free(docs);
	if (rc != 0) {
		if (ids)
			djob_outbox_done(s, ids, m, NULL);
		if (keys > 0)
			delete_keys(s, jobs, n);
	}
	free(ids);
	return rc;
}

int djob_store_find_idempotent(djob_store_t *s, const char *key, char **id_out, djob_error_t *err)
{
	*id_out = NULL;
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *idem = djob_store_side(&c, s, "idempotency");
	bson_t *f = BCON_NEW("_id", BCON_UTF8(key));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(idem, f, NULL, NULL);
	const bson_t *doc;
	bson_error_t e;
	int rc = DJOB_ENOTFOUND;
	if (mongoc_cursor_next(cur, &doc)) {
		if (*djob_doc_str(doc, "jobId")) {
			*id_out = djob_strdup(djob_doc_str(doc, "jobId"));
			rc = 0;
		}
	} else if (mongoc_cursor_error(cur, &e)) {
		rc = djob_store_mongo_error(err, &e, "find");
	}
	if (rc == DJOB_ENOTFOUND)
		djob_set_error(err, rc, 0, "No job for this idempotency key");
	mongoc_cursor_destroy(cur);
	bson_destroy(f);
	mongoc_collection_destroy(idem);
	djob_store_conn_put(s, &c);
	return rc;
}

int djob_store_mark_published(djob_store_t *s, const char *const *ids, size_t n, djob_error_t *err)
{
	return djob_outbox_done(s, ids, n, err);
}

int djob_store_delete_unpublished(djob_store_t *s, const djob_new_job_t *jobs, size_t n,
                                  djob_error_t *err)
{
	size_t m = 0;
	const char **ids = queued_ids(jobs, n, &m);
	if (!ids)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	delete_jobs(s, jobs, n);
	int rc = djob_outbox_done(s, ids, m, err);
	free(ids);
	delete_keys(s, jobs, n);
	return rc;
}
