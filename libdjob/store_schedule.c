/*
 * Periodic jobs: schedules in <c>_schedules (_id = name) and the sweep
 * that submits each due time's job.
 *
 * A due time's run is exactly once across replicas: its job carries the
 * idempotency key "schedule:<name>:<due ms>", whose unique _id lets one
 * insert win on every server, and the schedule's nextRunAt is then
 * advanced by a conditional update expecting the due time the sweep saw.
 * A replica that loses either race just moves on.
 *
 * Misfires: when no replica swept for several due times, only the latest
 * one (at or before now) is submitted; the earlier ones are skipped and
 * counted as misfired.
 */
#include "store_private.h"

#include "cron.h"
#include "json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEDULE_NAME_MAX 100
#define MISFIRE_SCAN_MAX 600000 /* due times walked when catching up */

static bool name_is_valid(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > SCHEDULE_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && !strchr("._-", n[i]))
			return false;
	return true;
}

int djob_schedule_name_check(const char *name, djob_error_t *err)
{
	if (!name || !name_is_valid(name))
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "name must be 1 to 100 letters, digits, '.', '_' or '-'");
	return 0;
}

/* The schedule's JSON: dates as ISO text, _id as name. */
static char *schedule_json(const bson_t *doc)
{
	cJSON *o = djob_doc_to_cjson(doc);
	if (!o)
		return NULL;
	cJSON *id = cJSON_DetachItemFromObject(o, "_id");
	if (id)
		cJSON_AddItemToObject(o, "name", id);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static mongoc_collection_t *schedules(conn_t *c, djob_store_t *s)
{
	return djob_store_side(c, s, "schedules");
}

/* Check a POST /schedules body into the document to insert. */
static int parse_body(const char *json, size_t len, int64_t now, bson_t **doc_out,
                      djob_error_t *err)
{
	*doc_out = NULL;
	cJSON *t = NULL;
	int rc = djob_json_parse(json, len, "The body", &t, NULL, err);
	if (rc != 0)
		return rc;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
	const cJSON *cron = cJSON_GetObjectItemCaseSensitive(t, "cron");
	const cJSON *tz = cJSON_GetObjectItemCaseSensitive(t, "timezone");
	const cJSON *job = cJSON_GetObjectItemCaseSensitive(t, "job");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(job, "type");
	const cJSON *payload = cJSON_GetObjectItemCaseSensitive(job, "payload");
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(job, "maxAttempts");
	djob_cron_t c;
	int offset = 0;
	if (!cJSON_IsObject(t))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "The body must be a JSON object");
	else if (!cJSON_IsString(name))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "name must be a string");
	else if ((rc = djob_schedule_name_check(name->valuestring, err)) != 0)
		;
	else if (!cJSON_IsString(cron))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "cron must be a string");
	else if ((rc = djob_cron_parse(&c, cron->valuestring, err)) != 0)
		;
	else if (tz && !cJSON_IsString(tz))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "timezone must be a string");
	else if ((rc = djob_cron_tz_parse(tz ? tz->valuestring : NULL, &offset, err)) != 0)
		;
	else if (!cJSON_IsObject(job))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "job must be an object with a type");
	else if (!cJSON_IsString(type) || !djob_type_is_valid(type->valuestring))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "job.type must be a valid job type");
	else if (payload && !cJSON_IsObject(payload))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "job.payload must be an object");
	else if (max && (!cJSON_IsNumber(max) || max->valuedouble != (int)max->valuedouble ||
	                 max->valuedouble < 1 || max->valuedouble > 1000))
		rc = djob_set_error(err, DJOB_EINVAL, 0,
		                    "job.maxAttempts must be an integer from 1 to 1000");
	int64_t next = rc == 0 ? djob_cron_next(&c, now, offset) : 0;
	if (rc == 0 && next < 0)
		rc = djob_set_error(err, DJOB_EINVAL, 0, "cron never matches a date");
	bson_t *pb = NULL;
	if (rc == 0) {
		char *ptext = payload ? cJSON_PrintUnformatted(payload) : NULL;
		bson_error_t e;
		pb = ptext ? bson_new_from_json((const uint8_t *)ptext, -1, &e) : bson_new();
		free(ptext);
		if (!pb)
			rc = djob_set_error(err, DJOB_EINVAL, 0, "job.payload cannot be stored");
	}
	if (rc == 0) {
		bson_t *d = bson_new();
		bson_t j;
		BSON_APPEND_UTF8(d, "_id", name->valuestring);
		BSON_APPEND_UTF8(d, "cron", cron->valuestring);
		BSON_APPEND_UTF8(d, "timezone", tz ? tz->valuestring : "UTC");
		BSON_APPEND_INT32(d, "offsetMinutes", offset);
		BSON_APPEND_DOCUMENT_BEGIN(d, "job", &j);
		BSON_APPEND_UTF8(&j, "type", type->valuestring);
		BSON_APPEND_DOCUMENT(&j, "payload", pb);
		if (max)
			BSON_APPEND_INT32(&j, "maxAttempts", (int)max->valuedouble);
		bson_append_document_end(d, &j);
		BSON_APPEND_DATE_TIME(d, "nextRunAt", next);
		BSON_APPEND_DATE_TIME(d, "createdAt", now);
		*doc_out = d;
	}
	bson_destroy(pb);
	cJSON_Delete(t);
	return rc;
}

int djob_store_schedule_create(djob_store_t *s, const char *json, size_t len, int64_t now,
                               char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	bson_t *doc;
	int rc = parse_body(json, len, now, &doc, err);
	if (rc != 0)
		return rc;
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *col = schedules(&c, s);
	bson_error_t e;
	if (!mongoc_collection_insert_one(col, doc, NULL, NULL, &e)) {
		rc = djob_store_mongo_error(err, &e, "schedule insert");
		if (rc == DJOB_ECONFLICT)
			djob_set_error(err, rc, 0, "A schedule with this name exists");
	}
	mongoc_collection_destroy(col);
	djob_store_conn_put(s, &c);
	if (rc == 0 && !(*json_out = schedule_json(doc)))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	bson_destroy(doc);
	return rc;
}

int djob_store_schedule_list(djob_store_t *s, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *col = schedules(&c, s);
	bson_t f = BSON_INITIALIZER;
	bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(1000));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, &f, opts, NULL);
	cJSON *o = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(o, "schedules");
	const bson_t *doc;
	while (mongoc_cursor_next(cur, &doc)) {
		char *one = schedule_json(doc);
		cJSON *item = one ? cJSON_Parse(one) : NULL;
		free(one);
		if (item)
			cJSON_AddItemToArray(arr, item);
	}
	bson_error_t e;
	int rc = 0;
	if (mongoc_cursor_error(cur, &e))
		rc = djob_store_mongo_error(err, &e, "schedule find");
	mongoc_cursor_destroy(cur);
	bson_destroy(opts);
	mongoc_collection_destroy(col);
	djob_store_conn_put(s, &c);
	if (rc == 0 && !(*json_out = cJSON_PrintUnformatted(o)))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	cJSON_Delete(o);
	return rc;
}

int djob_store_schedule_get(djob_store_t *s, const char *name, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	int rc = djob_schedule_name_check(name, err);
	if (rc != 0)
		return rc;
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *col = schedules(&c, s);
	bson_t *f = BCON_NEW("_id", BCON_UTF8(name));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, f, NULL, NULL);
	const bson_t *doc;
	bson_error_t e;
	rc = djob_set_error(err, DJOB_ENOTFOUND, 0, "Schedule not found");
	if (mongoc_cursor_next(cur, &doc))
		rc = (*json_out = schedule_json(doc))
		             ? 0
		             : djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	else if (mongoc_cursor_error(cur, &e))
		rc = djob_store_mongo_error(err, &e, "schedule find");
	mongoc_cursor_destroy(cur);
	bson_destroy(f);
	mongoc_collection_destroy(col);
	djob_store_conn_put(s, &c);
	return rc;
}

int djob_store_schedule_delete(djob_store_t *s, const char *name, djob_error_t *err)
{
	int rc = djob_schedule_name_check(name, err);
	if (rc != 0)
		return rc;
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *col = schedules(&c, s);
	bson_t *f = BCON_NEW("_id", BCON_UTF8(name));
	bson_t reply;
	bson_error_t e;
	if (!mongoc_collection_delete_one(col, f, NULL, &reply, &e))
		rc = djob_store_mongo_error(err, &e, "schedule delete");
	else if (djob_doc_int(&reply, "deletedCount", 0) == 0)
		rc = djob_set_error(err, DJOB_ENOTFOUND, 0, "Schedule not found");
	bson_destroy(&reply);
	bson_destroy(f);
	mongoc_collection_destroy(col);
	djob_store_conn_put(s, &c);
	return rc;
}

/* Submit one schedule's latest due time and advance it. */
static int run_one(djob_store_t *s, const bson_t *doc, int64_t now, djob_store_publish_fn publish,
                   void *opaque, djob_schedule_stats_t *st, djob_error_t *err)
{
	const char *name = djob_doc_str(doc, "_id");
	int64_t due = djob_doc_date(doc, "nextRunAt");
	djob_cron_t c;
	if (djob_cron_parse(&c, djob_doc_str(doc, "cron"), err) != 0)
		return 0; /* not written by djob: left alone */
	int off = (int)djob_doc_int(doc, "offsetMinutes", 0);
	int64_t latest = due, n;
	for (int i = 0;
	     i < MISFIRE_SCAN_MAX && (n = djob_cron_next(&c, latest, off)) > 0 && n <= now; i++) {
		latest = n;
		st->misfired++;
	}
	int64_t next = djob_cron_next(&c, latest, off);

	bson_iter_t it, jt;
	bson_t payload;
	const uint8_t *data = NULL;
	uint32_t dlen = 0;
	if (bson_iter_init_find(&it, doc, "job") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &jt) && bson_iter_find(&jt, "payload") &&
	    BSON_ITER_HOLDS_DOCUMENT(&jt))
		bson_iter_document(&jt, &dlen, &data);
	if (!data || !bson_init_static(&payload, data, dlen))
		bson_init(&payload);
	bson_t jobdoc;
	const char *type = "";
	int max = 0;
	if (bson_iter_init_find(&it, doc, "job") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		bson_iter_document(&it, &dlen, &data);
		if (bson_init_static(&jobdoc, data, dlen)) {
			type = djob_doc_str(&jobdoc, "type");
			max = (int)djob_doc_int(&jobdoc, "maxAttempts", 0);
		}
	}
	char key[SCHEDULE_NAME_MAX + 48];
	snprintf(key, sizeof key, "schedule:%s:%lld", name, (long long)latest);
	djob_new_job_t j = {0};
	djob_uuid_v4(j.id);
	j.type = type;
	j.payload = &payload;
	j.max_attempts = max > 0 ? max : (int)djob_config_get_int(s->conf, "max.attempts");
	j.created_ms = now;
	j.state = DJOB_STATE_QUEUED;
	j.idempotency_key = key;
	j.schedule = name;
	j.due_at_ms = latest;
	int rc = djob_store_insert(s, &j, 1, err);
	if (rc == 0) {
		st->submitted++;
		char *json = djob_new_job_to_json(&j);
		djob_error_t e;
		const char *id = j.id;
		/* A failed publish leaves the outbox entry to the sweep. */
		if (json && publish(opaque, j.id, type, json, &e) == 0)
			djob_outbox_done(s, &id, 1, NULL);
		free(json);
	} else if (rc == DJOB_ECONFLICT) {
		st->lost_races++; /* another replica submitted this due time */
		rc = 0;
	}
	bson_destroy(&payload);
	if (rc != 0)
		return rc;
	/* Advance, expecting the due time this sweep saw. */
	conn_t cn = djob_store_conn(s);
	mongoc_collection_t *col = schedules(&cn, s);
	bson_t *f = BCON_NEW("_id", BCON_UTF8(name), "nextRunAt", BCON_DATE_TIME(due));
	bson_t *u = next > 0 ? BCON_NEW("$set", "{", "nextRunAt", BCON_DATE_TIME(next), "lastDueAt",
	                                BCON_DATE_TIME(latest), "}")
	                     : BCON_NEW("$set", "{", "lastDueAt", BCON_DATE_TIME(latest), "}",
	                                "$unset", "{", "nextRunAt", BCON_UTF8(""), "}");
	bson_error_t e;
	if (!mongoc_collection_update_one(col, f, u, NULL, NULL, &e))
		rc = djob_store_mongo_error(err, &e, "schedule update");
	bson_destroy(u);
	bson_destroy(f);
	mongoc_collection_destroy(col);
	djob_store_conn_put(s, &cn);
	return rc;
}

int djob_store_schedule_sweep(djob_store_t *s, int64_t now, int limit,
                              djob_store_publish_fn publish, void *opaque,
                              djob_schedule_stats_t *st, djob_error_t *err)
{
	memset(st, 0, sizeof *st);
	bson_t **docs;
	size_t n;
	bson_t *f = BCON_NEW("nextRunAt", "{", "$lte", BCON_DATE_TIME(now), "}");
	int rc = djob_store_find_docs(s, "schedules", f, limit, &docs, &n, err);
	bson_destroy(f);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = run_one(s, docs[i], now, publish, opaque, st, err);
	djob_store_free_docs(docs, n);
	return rc;
}
