/*
 * Retention: finished jobs older than a per-status age are deleted in
 * bounded batches by the scheduler (servers without TTL indexes too). The
 * find is served by the status_finishedAt index; the delete's filter holds
 * the same status and cutoff, so a job retried (or otherwise changed)
 * between the two is left alone, and unfinished jobs never match.
 */
#include "store_private.h"

#include <stdlib.h>
#include <string.h>

static const char *const retention_status[DJOB_RETENTION_N] = {"completed", "failed", "cancelled"};

const char *djob_retention_status(int i)
{
	return i >= 0 && i < DJOB_RETENTION_N ? retention_status[i] : NULL;
}

/* Append {"$in": [values...]} under `key`. */
static void append_in(bson_t *f, const char *key, char **vals, size_t n)
{
	bson_t sub, arr;
	char buf[16];
	const char *k;
	BSON_APPEND_DOCUMENT_BEGIN(f, key, &sub);
	BSON_APPEND_ARRAY_BEGIN(&sub, "$in", &arr);
	for (size_t i = 0; i < n; i++) {
		bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
		BSON_APPEND_UTF8(&arr, k, vals[i]);
	}
	bson_append_array_end(&sub, &arr);
	bson_append_document_end(f, &sub);
}

/* One status: up to `limit` jobs finished before `cutoff`; their number. */
static int remove_old(djob_store_t *s, const char *status, int64_t cutoff, int limit,
                      djob_error_t *err)
{
	bson_t *f = BCON_NEW("status", BCON_UTF8(status), "finishedAt", "{", "$lt",
	                     BCON_DATE_TIME(cutoff), "}");
	bson_t *opts = BCON_NEW("limit", BCON_INT64(limit), "projection", "{", "_id", BCON_INT32(1),
	                        "idempotencyKey", BCON_INT32(1), "}");
	char **ids = calloc((size_t)limit, sizeof *ids);
	char **keys = calloc((size_t)limit, sizeof *keys);
	size_t n = 0, nk = 0;
	int rc = 0;
	bson_error_t e;
	conn_t c = djob_store_conn(s);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, f, opts, NULL);
	const bson_t *doc;
	while (ids && keys && n < (size_t)limit && mongoc_cursor_next(cur, &doc)) {
		ids[n++] = djob_strdup(djob_doc_str(doc, "_id"));
		if (*djob_doc_str(doc, "idempotencyKey"))
			keys[nk++] = djob_strdup(djob_doc_str(doc, "idempotencyKey"));
	}
	if (!ids || !keys)
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	else if (mongoc_cursor_error(cur, &e))
		rc = djob_store_mongo_error(err, &e, "retention find");
	mongoc_cursor_destroy(cur);
	bson_destroy(opts);
	int removed = 0;
	if (rc == 0 && n > 0) {
		/* The same status and cutoff again: only what is still old and
		 * finished goes. */
		bson_t del = BSON_INITIALIZER, reply;
		append_in(&del, "_id", ids, n);
		bson_concat(&del, f);
		if (!mongoc_collection_delete_many(c.coll, &del, NULL, &reply, &e))
			rc = djob_store_mongo_error(err, &e, "retention delete");
		else
			removed = (int)djob_doc_int(&reply, "deletedCount", 0);
		bson_destroy(&del);
		if (rc == 0 && nk > 0) {
			/* A deleted job's idempotency key would name a job
			 * that no longer exists. */
			mongoc_collection_t *idem = djob_store_side(&c, s, "idempotency");
			bson_t kf = BSON_INITIALIZER;
			append_in(&kf, "_id", keys, nk);
			mongoc_collection_delete_many(idem, &kf, NULL, NULL, NULL);
			bson_destroy(&kf);
			mongoc_collection_destroy(idem);
		}
		bson_destroy(&reply);
	}
	djob_store_conn_put(s, &c);
	bson_destroy(f);
	for (size_t i = 0; ids && i < n; i++)
		free(ids[i]);
	for (size_t i = 0; keys && i < nk; i++)
		free(keys[i]);
	free(ids);
	free(keys);
	return rc != 0 ? rc : removed;
}

int djob_store_retention(djob_store_t *s, int64_t now, const int64_t ages_ms[DJOB_RETENTION_N],
                         int limit, int removed[DJOB_RETENTION_N], djob_error_t *err)
{
	int rc = djob_store_ensure_indexes(s, err);
	for (int i = 0; i < DJOB_RETENTION_N; i++)
		removed[i] = 0;
	for (int i = 0; rc == 0 && i < DJOB_RETENTION_N; i++) {
		if (ages_ms[i] <= 0)
			continue;
		int r = remove_old(s, retention_status[i], now - ages_ms[i], limit, err);
		if (r < 0)
			rc = r;
		else
			removed[i] = r;
	}
	return rc;
}
