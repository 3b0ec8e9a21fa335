/*
 * Listing: one page of jobs, newest first, filtered by status and type,
 * with a cursor (createdAt and _id of the last job) for the next page.
 */
#include "store_private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int djob_store_list_filter(bson_t *f, int *limit, const char *status, const char *type,
                           const char *after, djob_error_t *err)
{
	if (*limit == 0)
		*limit = 100;
	if (*limit < 1 || *limit > 1000)
		return djob_set_error(err, DJOB_EINVAL, 0, "limit must be from 1 to 1000");
	if (status && djob_state_parse(status) == DJOB_STATE_INVALID)
		return djob_set_error(err, DJOB_EINVAL, 0, "Unknown status %s", status);
	if (type && !djob_type_is_valid(type))
		return djob_set_error(err, DJOB_EINVAL, 0, "Malformed type");
	int64_t after_ms = 0;
	const char *after_id = NULL;
	if (after) {
		/* What djob_store_list writes: "<createdAt ms>-<id>", the ms in
		 * plain digits that fit an int64 (strtoll alone would also take
		 * spaces, a sign and, saturated, any run of digits). */
		char *end;
		errno = 0;
		after_ms = strtoll(after, &end, 10);
		if (after[0] < '0' || after[0] > '9' || errno != 0 || *end != '-' ||
		    !djob_id_is_valid(end + 1))
			return djob_set_error(err, DJOB_EINVAL, 0, "Malformed cursor");
		after_id = end + 1;
	}
	bson_init(f);
	if (status)
		BSON_APPEND_UTF8(f, "status", status);
	if (type)
		BSON_APPEND_UTF8(f, "type", type);
	if (after_id) {
		bson_t or, a, b, lt, lt2;
		BSON_APPEND_ARRAY_BEGIN(f, "$or", & or);
		BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &a);
		BSON_APPEND_DOCUMENT_BEGIN(&a, "createdAt", &lt);
		BSON_APPEND_DATE_TIME(&lt, "$lt", after_ms);
		bson_append_document_end(&a, &lt);
		bson_append_document_end(& or, &a);
		BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &b);
		BSON_APPEND_DATE_TIME(&b, "createdAt", after_ms);
		BSON_APPEND_DOCUMENT_BEGIN(&b, "_id", &lt2);
		BSON_APPEND_UTF8(&lt2, "$lt", after_id);
		bson_append_document_end(&b, &lt2);
		bson_append_document_end(& or, &b);
		bson_append_array_end(f, & or);
	}
	return 0;
}

int djob_store_list(djob_store_t *s, const char *status, const char *type, int limit,
                    const char *after, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	bson_t f;
	int frc = djob_store_list_filter(&f, &limit, status, type, after, err);
	if (frc != 0)
		return frc;
	bson_t *opts = BCON_NEW("sort", "{", "createdAt", BCON_INT32(-1), "_id", BCON_INT32(-1),
	                        "}", "limit", BCON_INT64(limit + 1));
	conn_t c = djob_store_conn(s);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, &f, opts, NULL);
	cJSON *out = cJSON_CreateObject();
	cJSON *jobs = cJSON_AddArrayToObject(out, "jobs");
	const bson_t *doc;
	int n = 0;
	char next[80] = "";
	bool more = false;
	while (mongoc_cursor_next(cur, &doc)) {
		if (n == limit) {
			more = true;
			break;
		}
		cJSON *j = djob_doc_to_cjson(doc);
		bson_iter_t it;
		int64_t ms = 0;
		if (bson_iter_init_find(&it, doc, "createdAt") && BSON_ITER_HOLDS_DATE_TIME(&it))
			ms = bson_iter_date_time(&it);
		const cJSON *idj = cJSON_GetObjectItemCaseSensitive(j, "_id");
		snprintf(next, sizeof next, "%lld-%s", (long long)ms,
		         cJSON_IsString(idj) ? idj->valuestring : "");
		cJSON_AddItemToArray(jobs, j);
		n++;
	}
	bson_error_t e;
	int rc = 0;
	if (mongoc_cursor_error(cur, &e))
		rc = djob_store_mongo_error(err, &e, "find");
	mongoc_cursor_destroy(cur);
	djob_store_conn_put(s, &c);
	bson_destroy(opts);
	bson_destroy(&f);
	if (rc == 0) {
		/* A full page followed by one more document has a next page. */
		if (more && next[0])
			cJSON_AddStringToObject(out, "next", next);
		else
			cJSON_AddNullToObject(out, "next");
		*json_out = cJSON_PrintUnformatted(out);
	}
	cJSON_Delete(out);
	return rc;
}
