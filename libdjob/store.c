/*
 * The job store on libmongoc. Every state change is one conditional write
 * (filter on _id plus the expected state), never a read followed by a write.
 */
#include "store.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mongoc/mongoc.h>

struct djob_store_s {
	djob_config_t *conf;
	mongoc_client_pool_t *pool;
	char *db;
	char *coll;
	atomic_int indexes_done;
};

/* ---- libmongoc set-up ---- */

static void mongo_log(mongoc_log_level_t level, const char *domain, const char *message,
                      void *opaque)
{
	(void)opaque;
	/* Servers without sessions (FerretDB) refuse endSessions at every
	 * client shutdown: nothing to warn about. */
	if (level > MONGOC_LOG_LEVEL_WARNING || strstr(message, "endSessions"))
		return;
	djob_logf(NULL, level <= MONGOC_LOG_LEVEL_CRITICAL ? DJOB_LOG_ERROR : DJOB_LOG_WARNING,
	          "mongo", "%s: %s", domain, message);
}

static void mongo_init_once(void)
{
	mongoc_init();
	mongoc_log_set_handler(mongo_log, NULL);
}

static pthread_once_t mongo_once = PTHREAD_ONCE_INIT;

static int mongo_error(djob_error_t *err, const bson_error_t *e, const char *what)
{
	if (e->code == 11000)
		return djob_set_error(err, DJOB_ECONFLICT, 0, "%s: duplicate key", what);
	return djob_set_error(err, DJOB_EMONGO, 1, "MongoDB %s failed: %s", what, e->message);
}

int djob_store_new(djob_store_t **out, const djob_config_t *conf, djob_error_t *err)
{
	pthread_once(&mongo_once, mongo_init_once);
	*out = NULL;
	bson_error_t e;
	const char *uri_s = djob_config_get(conf, "mongo.uri");
	mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_s, &e);
	if (!uri)
		return djob_set_error(err, DJOB_EINVAL, 0, "Bad MongoDB URI: %s", e.message);
	/* A down server should fail a request in seconds, not libmongoc's 30 s. */
	if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
	if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 3000);
	djob_store_t *s = calloc(1, sizeof *s);
	if (!s) {
		mongoc_uri_destroy(uri);
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	const char *db = mongoc_uri_get_database(uri);
	s->db = djob_strdup(db && *db ? db : djob_config_get(conf, "mongo.database"));
	s->coll = djob_strdup(djob_config_get(conf, "mongo.collection"));
	s->pool = mongoc_client_pool_new(uri);
	mongoc_uri_destroy(uri);
	if (djob_config_dup(&s->conf, conf, err) != 0 || !s->pool || !s->db || !s->coll) {
		djob_store_free(s);
		return djob_set_error(err, DJOB_EMONGO, 0, "Cannot create the MongoDB client pool");
	}
	mongoc_client_pool_set_error_api(s->pool, MONGOC_ERROR_API_VERSION_2);
	mongoc_client_pool_set_appname(s->pool, "djob");
	*out = s;
	return 0;
}

void djob_store_free(djob_store_t *s)
{
	if (!s)
		return;
	if (s->pool)
		mongoc_client_pool_destroy(s->pool);
	djob_config_free(s->conf);
	free(s->db);
	free(s->coll);
	free(s);
}

typedef struct {
	mongoc_client_t *client;
	mongoc_collection_t *coll;
} conn_t;

static conn_t conn_get(djob_store_t *s)
{
	conn_t c;
	c.client = mongoc_client_pool_pop(s->pool);
	c.coll = mongoc_client_get_collection(c.client, s->db, s->coll);
	return c;
}

static void conn_put(djob_store_t *s, conn_t *c)
{
	mongoc_collection_destroy(c->coll);
	mongoc_client_pool_push(s->pool, c->client);
}

/* ---- BSON <-> JSON ---- */

static cJSON *bson_to_cjson(const bson_t *doc, bool array, bool top);

static cJSON *value_to_cjson(const bson_iter_t *it)
{
	switch (bson_iter_type(it)) {
	case BSON_TYPE_UTF8:
		return cJSON_CreateString(bson_iter_utf8(it, NULL));
	case BSON_TYPE_INT32:
		return cJSON_CreateNumber(bson_iter_int32(it));
	case BSON_TYPE_INT64:
		return cJSON_CreateNumber((double)bson_iter_int64(it));
	case BSON_TYPE_DOUBLE:
		return cJSON_CreateNumber(bson_iter_double(it));
	case BSON_TYPE_BOOL:
		return cJSON_CreateBool(bson_iter_bool(it));
	case BSON_TYPE_DATE_TIME: {
		char iso[32];
		djob_format_iso(bson_iter_date_time(it), iso);
		return cJSON_CreateString(iso);
	}
	case BSON_TYPE_OID: {
		char hex[25];
		bson_oid_to_string(bson_iter_oid(it), hex);
		return cJSON_CreateString(hex);
	}
	case BSON_TYPE_DOCUMENT:
	case BSON_TYPE_ARRAY: {
		const uint8_t *data;
		uint32_t len;
		bson_t sub;
		if (bson_iter_type(it) == BSON_TYPE_DOCUMENT)
			bson_iter_document(it, &len, &data);
		else
			bson_iter_array(it, &len, &data);
		if (!bson_init_static(&sub, data, len))
			return cJSON_CreateNull();
		return bson_to_cjson(&sub, bson_iter_type(it) == BSON_TYPE_ARRAY, false);
	}
	default:
		return cJSON_CreateNull();
	}
}

/* Internal fields that are not part of the wire contract. */
static bool hidden_field(const char *key)
{
	return strcmp(key, "published") == 0;
}

static cJSON *bson_to_cjson(const bson_t *doc, bool array, bool top)
{
	cJSON *out = array ? cJSON_CreateArray() : cJSON_CreateObject();
	bson_iter_t it;
	if (!out || !bson_iter_init(&it, doc))
		return out;
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		if (top && hidden_field(key))
			continue;
		cJSON *v = value_to_cjson(&it);
		if (array)
			cJSON_AddItemToArray(out, v);
		else
			cJSON_AddItemToObject(out, key, v);
	}
	return out;
}

static char *doc_to_json(const bson_t *doc)
{
	cJSON *j = bson_to_cjson(doc, false, true);
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return s;
}

static bool append_cjson(bson_t *b, const char *key, const cJSON *v);

static bool append_children(bson_t *b, const cJSON *parent, bool array)
{
	char buf[16];
	uint32_t i = 0;
	for (const cJSON *c = parent->child; c; c = c->next, i++) {
		const char *k = c->string;
		if (array)
			bson_uint32_to_string(i, &k, buf, sizeof buf);
		if (!append_cjson(b, k, c))
			return false;
	}
	return true;
}

static bool append_cjson(bson_t *b, const char *key, const cJSON *v)
{
	if (cJSON_IsString(v))
		return BSON_APPEND_UTF8(b, key, v->valuestring);
	if (cJSON_IsBool(v))
		return BSON_APPEND_BOOL(b, key, cJSON_IsTrue(v));
	if (cJSON_IsNull(v))
		return BSON_APPEND_NULL(b, key);
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d == floor(d) && fabs(d) < 9007199254740992.0) {
			if (d >= INT32_MIN && d <= INT32_MAX)
				return BSON_APPEND_INT32(b, key, (int32_t)d);
			return BSON_APPEND_INT64(b, key, (int64_t)d);
		}
		return BSON_APPEND_DOUBLE(b, key, d);
	}
	if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
		bson_t child;
		bool array = cJSON_IsArray(v);
		if (!(array ? bson_append_array_begin(b, key, -1, &child)
		            : bson_append_document_begin(b, key, -1, &child)))
			return false;
		bool ok = append_children(&child, v, array);
		return (array ? bson_append_array_end(b, &child) : bson_append_document_end(b, &child)) &&
		       ok;
	}
	return false;
}

/* ---- indexes ---- */

int djob_store_ensure_indexes(djob_store_t *s, djob_error_t *err)
{
	if (atomic_load(&s->indexes_done))
		return 0;
	/* list by status/type newest first; the scheduler's sweeps (due,
	 * expired leases, unpublished); idempotency keys. */
	bson_t *cmd = BCON_NEW(
		"createIndexes", BCON_UTF8(s->coll), "indexes", "[",
		"{", "key", "{", "status", BCON_INT32(1), "type", BCON_INT32(1), "createdAt",
		BCON_INT32(-1), "}", "name", BCON_UTF8("status_type_created"), "}",
		"{", "key", "{", "status", BCON_INT32(1), "runAt", BCON_INT32(1), "}", "name",
		BCON_UTF8("status_runAt"), "}",
		"{", "key", "{", "status", BCON_INT32(1), "leaseUntil", BCON_INT32(1), "}", "name",
		BCON_UTF8("status_leaseUntil"), "}",
		"{", "key", "{", "published", BCON_INT32(1), "status", BCON_INT32(1), "}", "name",
		BCON_UTF8("published_status"), "}",
		"{", "key", "{", "createdAt", BCON_INT32(-1), "}", "name", BCON_UTF8("created"), "}",
		"]");
	bson_t *cmd2 = BCON_NEW("createIndexes", BCON_UTF8("idempotency"), "indexes", "[", "{",
	                        "key", "{", "jobId", BCON_INT32(1), "}", "name",
	                        BCON_UTF8("jobId"), "}", "]");
	mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
	mongoc_database_t *db = mongoc_client_get_database(client, s->db);
	bson_error_t e;
	int rc = 0;
	if (!mongoc_database_write_command_with_opts(db, cmd, NULL, NULL, &e) ||
	    !mongoc_database_write_command_with_opts(db, cmd2, NULL, NULL, &e))
		rc = mongo_error(err, &e, "createIndexes");
	else
		atomic_store(&s->indexes_done, 1);
	mongoc_database_destroy(db);
	mongoc_client_pool_push(s->pool, client);
	bson_destroy(cmd);
	bson_destroy(cmd2);
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
	cJSON_AddItemToObject(o, "payload", cJSON_Duplicate(j->payload, 1));
	cJSON_AddNumberToObject(o, "attempts", 0);
	cJSON_AddNumberToObject(o, "maxAttempts", j->max_attempts);
	if (j->run_at_ms) {
		djob_format_iso(j->run_at_ms, iso);
		cJSON_AddStringToObject(o, "runAt", iso);
	}
	if (j->idempotency_key)
		cJSON_AddStringToObject(o, "idempotencyKey", j->idempotency_key);
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
	if (!append_cjson(b, "payload", j->payload)) {
		bson_destroy(b);
		return NULL;
	}
	BSON_APPEND_INT32(b, "attempts", 0);
	BSON_APPEND_INT32(b, "maxAttempts", j->max_attempts);
	if (j->run_at_ms)
		BSON_APPEND_DATE_TIME(b, "runAt", j->run_at_ms);
	if (j->idempotency_key)
		BSON_APPEND_UTF8(b, "idempotencyKey", j->idempotency_key);
	BSON_APPEND_DATE_TIME(b, "createdAt", j->created_ms);
	BSON_APPEND_DATE_TIME(b, "updatedAt", j->created_ms);
	BSON_APPEND_BOOL(b, "published", false);
	return b;
}

static void delete_keys(djob_store_t *s, const djob_new_job_t *jobs, size_t n);

/* Delete or update documents by ids, one statement each on one connection.
 * Not a multi-statement bulk: FerretDB 1.24's SQLite backend keeps one
 * pooled connection per statement of a command open until the command ends
 * and deadlocks once a command (or several at once) needs more than its
 * pool of 100. */
static int by_ids(djob_store_t *s, const char *const *ids, size_t n, bool delete,
                  const bson_t *extra_filter, const bson_t *update, djob_error_t *err)
{
	if (n == 0)
		return 0;
	conn_t c = conn_get(s);
	bson_error_t e;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		bson_t f = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&f, "_id", ids[i]);
		if (extra_filter)
			bson_concat(&f, extra_filter);
		bool ok = delete ? mongoc_collection_delete_one(c.coll, &f, NULL, NULL, &e)
		                 : mongoc_collection_update_one(c.coll, &f, update, NULL, NULL, &e);
		if (!ok)
			rc = mongo_error(err, &e, delete ? "delete" : "update");
		bson_destroy(&f);
	}
	conn_put(s, &c);
	return rc;
}

int djob_store_insert(djob_store_t *s, const djob_new_job_t *jobs, size_t n, djob_error_t *err)
{
	if (djob_store_ensure_indexes(s, err) != 0)
		return err ? err->code : DJOB_EMONGO;
	conn_t c = conn_get(s);
	bson_error_t e;
	int rc = 0;
	size_t keys = 0;
	/* Idempotency keys first: a unique _id per key makes a concurrent
	 * repeat fail here, before any job exists. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!jobs[i].idempotency_key)
			continue;
		mongoc_collection_t *idem =
			mongoc_client_get_collection(c.client, s->db, "idempotency");
		bson_t *d = BCON_NEW("_id", BCON_UTF8(jobs[i].idempotency_key), "jobId",
		                     BCON_UTF8(jobs[i].id), "createdAt",
		                     BCON_DATE_TIME(jobs[i].created_ms));
		if (!mongoc_collection_insert_one(idem, d, NULL, NULL, &e))
			rc = mongo_error(err, &e, "insert of the idempotency key");
		else
			keys++;
		bson_destroy(d);
		mongoc_collection_destroy(idem);
	}
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
		bson_t reply;
		if (!mongoc_collection_insert_many(c.coll, docs, n, NULL, &reply, &e)) {
			rc = mongo_error(err, &e, "insert");
			/* An ordered insert may have stored a prefix: remove it. */
			const char **ids = malloc(n * sizeof *ids);
			for (size_t i = 0; ids && i < n; i++)
				ids[i] = jobs[i].id;
			if (ids)
				by_ids(s, ids, n, true, NULL, NULL, NULL);
			free(ids);
		}
		bson_destroy(&reply);
	}
	for (size_t i = 0; docs && i < built; i++)
		bson_destroy((bson_t *)docs[i]);
	free(docs);
	conn_put(s, &c);
	if (rc != 0 && keys > 0)
		delete_keys(s, jobs, n);
	return rc;
}

int djob_store_find_idempotent(djob_store_t *s, const char *key, char **id_out, djob_error_t *err)
{
	*id_out = NULL;
	conn_t c = conn_get(s);
	mongoc_collection_t *idem = mongoc_client_get_collection(c.client, s->db, "idempotency");
	bson_t *f = BCON_NEW("_id", BCON_UTF8(key));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(idem, f, NULL, NULL);
	const bson_t *doc;
	bson_error_t e;
	int rc = DJOB_ENOTFOUND;
	bson_iter_t it;
	if (mongoc_cursor_next(cur, &doc)) {
		if (bson_iter_init_find(&it, doc, "jobId") && BSON_ITER_HOLDS_UTF8(&it)) {
			*id_out = djob_strdup(bson_iter_utf8(&it, NULL));
			rc = 0;
		}
	} else if (mongoc_cursor_error(cur, &e)) {
		rc = mongo_error(err, &e, "find");
	}
	if (rc == DJOB_ENOTFOUND)
		djob_set_error(err, rc, 0, "No job for this idempotency key");
	mongoc_cursor_destroy(cur);
	bson_destroy(f);
	mongoc_collection_destroy(idem);
	conn_put(s, &c);
	return rc;
}

int djob_store_mark_published(djob_store_t *s, const char *const *ids, size_t n,
                              djob_error_t *err)
{
	bson_t *u = BCON_NEW("$set", "{", "published", BCON_BOOL(true), "}");
	int rc = by_ids(s, ids, n, false, NULL, u, err);
	bson_destroy(u);
	return rc;
}

static void delete_keys(djob_store_t *s, const djob_new_job_t *jobs, size_t n)
{
	conn_t c = conn_get(s);
	mongoc_collection_t *idem = mongoc_client_get_collection(c.client, s->db, "idempotency");
	for (size_t i = 0; i < n; i++) {
		if (!jobs[i].idempotency_key)
			continue;
		bson_t *f = BCON_NEW("_id", BCON_UTF8(jobs[i].idempotency_key), "jobId",
		                     BCON_UTF8(jobs[i].id));
		mongoc_collection_delete_one(idem, f, NULL, NULL, NULL);
		bson_destroy(f);
	}
	mongoc_collection_destroy(idem);
	conn_put(s, &c);
}

int djob_store_delete_unpublished(djob_store_t *s, const djob_new_job_t *jobs, size_t n,
                                  djob_error_t *err)
{
	const char **ids = malloc((n ? n : 1) * sizeof *ids);
	if (!ids)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	for (size_t i = 0; i < n; i++)
		ids[i] = jobs[i].id;
	bson_t *f = BCON_NEW("published", BCON_BOOL(false));
	int rc = by_ids(s, ids, n, true, f, NULL, err);
	bson_destroy(f);
	free(ids);
	delete_keys(s, jobs, n);
	return rc;
}

/* ---- reads ---- */

/* Find one document by _id. *doc_out (bson_destroy) or DJOB_ENOTFOUND. */
static int find_one(djob_store_t *s, const char *id, bson_t **doc_out, djob_error_t *err)
{
	*doc_out = NULL;
	conn_t c = conn_get(s);
	bson_t *f = BCON_NEW("_id", BCON_UTF8(id));
	bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, f, opts, NULL);
	const bson_t *doc;
	bson_error_t e;
	int rc;
	if (mongoc_cursor_next(cur, &doc)) {
		*doc_out = bson_copy(doc);
		rc = 0;
	} else if (mongoc_cursor_error(cur, &e)) {
		rc = mongo_error(err, &e, "find");
	} else {
		rc = djob_set_error(err, DJOB_ENOTFOUND, 0, "Job not found");
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(opts);
	bson_destroy(f);
	conn_put(s, &c);
	return rc;
}

int djob_store_get(djob_store_t *s, const char *id, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	bson_t *doc;
	int rc = find_one(s, id, &doc, err);
	if (rc != 0)
		return rc;
	*json_out = doc_to_json(doc);
	bson_destroy(doc);
	return *json_out ? 0 : djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
}

static const char *doc_status(const bson_t *doc)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, "status") && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return "unknown";
}

static int64_t doc_int(const bson_t *doc, const char *key, int64_t dflt)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
		return bson_iter_as_int64(&it);
	return dflt;
}

/* findAndModify returning the new document (or NULL in *doc_out when the
 * filter matched nothing). */
static int find_and_modify(djob_store_t *s, const bson_t *filter, const bson_t *update,
                           bson_t **doc_out, djob_error_t *err)
{
	*doc_out = NULL;
	conn_t c = conn_get(s);
	mongoc_find_and_modify_opts_t *o = mongoc_find_and_modify_opts_new();
	mongoc_find_and_modify_opts_set_update(o, update);
	mongoc_find_and_modify_opts_set_flags(o, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	bson_t reply;
	bson_error_t e;
	int rc = 0;
	if (!mongoc_collection_find_and_modify_with_opts(c.coll, filter, o, &reply, &e)) {
		rc = mongo_error(err, &e, "findAndModify");
	} else {
		bson_iter_t it;
		if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
			const uint8_t *data;
			uint32_t len;
			bson_iter_document(&it, &len, &data);
			*doc_out = bson_new_from_data(data, len);
		}
	}
	bson_destroy(&reply);
	mongoc_find_and_modify_opts_destroy(o);
	conn_put(s, &c);
	return rc;
}

/* update_one; *matched gets the matched count. */
static int update_one(djob_store_t *s, const bson_t *filter, const bson_t *update, int *matched,
                      djob_error_t *err)
{
	conn_t c = conn_get(s);
	bson_t reply;
	bson_error_t e;
	int rc = 0;
	*matched = 0;
	if (!mongoc_collection_update_one(c.coll, filter, update, NULL, &reply, &e))
		rc = mongo_error(err, &e, "update");
	else
		*matched = (int)doc_int(&reply, "matchedCount", 0);
	bson_destroy(&reply);
	conn_put(s, &c);
	return rc;
}

/* Why a conditional write on a job matched nothing. */
static int explain_miss(djob_store_t *s, const char *id, const char *target, bool fenced,
                        djob_error_t *err)
{
	bson_t *doc;
	int rc = find_one(s, id, &doc, err);
	if (rc != 0)
		return rc;
	const char *st = doc_status(doc);
	if (fenced && strcmp(st, "processing") == 0)
		rc = djob_set_error(err, DJOB_ECONFLICT, 0,
		                    "The job's lease is held by another worker or attempt");
	else
		rc = djob_set_error(err, DJOB_ECONFLICT, 0, "Cannot change status from %s to %s", st,
		                    target);
	bson_destroy(doc);
	return rc;
}

/* ---- worker writes ---- */

int djob_store_claim(djob_store_t *s, const char *id, const char *worker_id, long lease_ms,
                     int *attempts, int *max_attempts, djob_error_t *err)
{
	int64_t now = djob_now_ms();
	bson_t *f = BCON_NEW("_id", BCON_UTF8(id), "$or", "[", "{", "status", BCON_UTF8("queued"),
	                     "}", "{", "status", BCON_UTF8("processing"), "leaseUntil", "{", "$lt",
	                     BCON_DATE_TIME(now), "}", "}", "]");
	bson_t *u = BCON_NEW("$set", "{", "status", BCON_UTF8("processing"), "workerId",
	                     BCON_UTF8(worker_id), "leaseUntil", BCON_DATE_TIME(now + lease_ms),
	                     "startedAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "}", "$inc",
	                     "{", "attempts", BCON_INT32(1), "}");
	bson_t *doc;
	int rc = find_and_modify(s, f, u, &doc, err);
	bson_destroy(f);
	bson_destroy(u);
	if (rc != 0)
		return rc;
	if (!doc) {
		bson_t *cur;
		rc = find_one(s, id, &cur, err);
		if (rc == 0) {
			rc = djob_set_error(err, DJOB_ECONFLICT, 0, "Job is %s", doc_status(cur));
			bson_destroy(cur);
		}
		return rc;
	}
	*attempts = (int)doc_int(doc, "attempts", 1);
	*max_attempts = (int)doc_int(doc, "maxAttempts", djob_config_get_int(s->conf, "max.attempts"));
	bson_destroy(doc);
	return 0;
}

int djob_store_extend(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                      long lease_ms, djob_error_t *err)
{
	int64_t now = djob_now_ms();
	bson_t *f = BCON_NEW("_id", BCON_UTF8(id), "status", BCON_UTF8("processing"), "workerId",
	                     BCON_UTF8(worker_id), "attempts", BCON_INT32(attempts));
	bson_t *u = BCON_NEW("$set", "{", "leaseUntil", BCON_DATE_TIME(now + lease_ms), "updatedAt",
	                     BCON_DATE_TIME(now), "}");
	int matched;
	int rc = update_one(s, f, u, &matched, err);
	bson_destroy(f);
	bson_destroy(u);
	if (rc == 0 && matched == 0)
		rc = djob_set_error(err, DJOB_ECONFLICT, 0, "Lease lost");
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

int djob_store_finish(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                      int max_attempts, djob_job_status_t outcome, const char *result_json,
                      const char *error, djob_error_t *err)
{
	int64_t now = djob_now_ms();
	const char *status = outcome == DJOB_JOB_DONE                                ? "completed"
	                     : outcome == DJOB_JOB_RETRY && attempts < max_attempts ? "scheduled"
	                                                                              : "failed";
	if (outcome != DJOB_JOB_DONE && !error)
		error = "Handler failed";
	bson_t *f = BCON_NEW("_id", BCON_UTF8(id), "status", BCON_UTF8("processing"), "workerId",
	                     BCON_UTF8(worker_id), "attempts", BCON_INT32(attempts));
	bson_t u = BSON_INITIALIZER, set, unset, push, entry;
	BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
	BSON_APPEND_UTF8(&set, "status", status);
	BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
	int rc = 0;
	if (outcome == DJOB_JOB_DONE) {
		cJSON *r = cJSON_Parse(result_json ? result_json : "{}");
		if (!cJSON_IsObject(r) || !append_cjson(&set, "result", r))
			rc = djob_set_error(err, DJOB_EINVAL, 0, "Result must be a JSON object");
		cJSON_Delete(r);
	} else {
		BSON_APPEND_UTF8(&set, "error", error);
	}
	if (strcmp(status, "scheduled") == 0)
		BSON_APPEND_DATE_TIME(&set, "runAt", now + djob_retry_backoff_ms(attempts));
	else
		BSON_APPEND_DATE_TIME(&set, "finishedAt", now);
	bson_append_document_end(&u, &set);
	BSON_APPEND_DOCUMENT_BEGIN(&u, "$unset", &unset);
	BSON_APPEND_UTF8(&unset, "leaseUntil", "");
	if (outcome == DJOB_JOB_DONE)
		BSON_APPEND_UTF8(&unset, "error", "");
	bson_append_document_end(&u, &unset);
	/* The outcome of every attempt stays in the document. */
	BSON_APPEND_DOCUMENT_BEGIN(&u, "$push", &push);
	BSON_APPEND_DOCUMENT_BEGIN(&push, "history", &entry);
	BSON_APPEND_INT32(&entry, "attempt", attempts);
	BSON_APPEND_UTF8(&entry, "workerId", worker_id);
	BSON_APPEND_UTF8(&entry, "status", outcome == DJOB_JOB_DONE ? "completed" : "failed");
	if (outcome != DJOB_JOB_DONE)
		BSON_APPEND_UTF8(&entry, "error", error);
	BSON_APPEND_DATE_TIME(&entry, "finishedAt", now);
	bson_append_document_end(&push, &entry);
	bson_append_document_end(&u, &push);
	int matched = 0;
	if (rc == 0)
		rc = update_one(s, f, &u, &matched, err);
	if (rc == 0 && matched == 0)
		rc = djob_set_error(err, DJOB_ECONFLICT, 0,
		                    "The job's lease is held by another worker or attempt");
	bson_destroy(f);
	bson_destroy(&u);
	return rc;
}

/* ---- API writes ---- */

static int doc_result(bson_t *doc, char **json_out, djob_error_t *err)
{
	if (json_out) {
		*json_out = doc_to_json(doc);
		if (!*json_out) {
			bson_destroy(doc);
			return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
		}
	}
	bson_destroy(doc);
	return 0;
}

/* Add {status: {$in: [every state that may move to `to`]}} to a filter. */
static void append_from_states(bson_t *f, djob_state_t to, bool claim)
{
	bson_t st, in;
	char buf[16];
	const char *k;
	uint32_t n = 0;
	BSON_APPEND_DOCUMENT_BEGIN(f, "status", &st);
	BSON_APPEND_ARRAY_BEGIN(&st, "$in", &in);
	for (int from = DJOB_STATE_QUEUED; from <= DJOB_STATE_CANCELLED; from++) {
		/* A claim never takes a job that another worker holds. */
		if (claim && from == DJOB_STATE_PROCESSING)
			continue;
		if (djob_state_can_transition((djob_state_t)from, to)) {
			bson_uint32_to_string(n++, &k, buf, sizeof buf);
			BSON_APPEND_UTF8(&in, k, djob_state_name((djob_state_t)from));
		}
	}
	bson_append_array_end(&st, &in);
	bson_append_document_end(f, &st);
}

int djob_store_patch(djob_store_t *s, const char *id, const cJSON *body, char **json_out,
                     djob_error_t *err)
{
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(body, "status");
	const cJSON *result = cJSON_GetObjectItemCaseSensitive(body, "result");
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(body, "error");
	const cJSON *worker = cJSON_GetObjectItemCaseSensitive(body, "workerId");
	const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(body, "attempts");
	const cJSON *lease = cJSON_GetObjectItemCaseSensitive(body, "leaseMs");
	djob_state_t to = cJSON_IsString(status) ? djob_state_parse(status->valuestring)
	                                          : DJOB_STATE_INVALID;
	if (to != DJOB_STATE_PROCESSING && to != DJOB_STATE_COMPLETED && to != DJOB_STATE_FAILED)
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "status must be one of processing, completed, failed");
	if (result && (!cJSON_IsObject(result) || djob_payload_validate(result, NULL) != 0))
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "result must be a JSON object without $-prefixed or dotted keys");
	if (error && !cJSON_IsString(error))
		return djob_set_error(err, DJOB_EINVAL, 0, "error must be a string");
	if (worker && (!cJSON_IsString(worker) || !*worker->valuestring ||
	               strlen(worker->valuestring) > 200))
		return djob_set_error(err, DJOB_EINVAL, 0, "workerId must be a non-empty string");
	if (attempts && (!cJSON_IsNumber(attempts) || attempts->valuedouble < 1 ||
	                 attempts->valuedouble > 1000000 ||
	                 attempts->valuedouble != floor(attempts->valuedouble)))
		return djob_set_error(err, DJOB_EINVAL, 0, "attempts must be a positive integer");
	if (lease && (!cJSON_IsNumber(lease) || lease->valuedouble < 1000 ||
	              lease->valuedouble > 3600000))
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "leaseMs must be a number from 1000 to 3600000");
	bool fenced = worker && attempts;
	int64_t now = djob_now_ms();
	long lease_ms = lease ? (long)lease->valuedouble : djob_config_get_int(s->conf, "lease.ms");
	bson_t f = BSON_INITIALIZER, u = BSON_INITIALIZER, set, unset;
	BSON_APPEND_UTF8(&f, "_id", id);
	bool extend = false;
	if (to == DJOB_STATE_PROCESSING && fenced) {
		/* The holder of the lease extends it. */
		extend = true;
		BSON_APPEND_UTF8(&f, "status", "processing");
	} else if (to == DJOB_STATE_PROCESSING) {
		/* A claim: queued, or processing with an expired lease. */
		bson_t or, a, b, lt;
		BSON_APPEND_ARRAY_BEGIN(&f, "$or", &or);
		BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &a);
		append_from_states(&a, to, true);
		bson_append_document_end(&or, &a);
		BSON_APPEND_DOCUMENT_BEGIN(&or, "1", &b);
		BSON_APPEND_UTF8(&b, "status", "processing");
		BSON_APPEND_DOCUMENT_BEGIN(&b, "leaseUntil", &lt);
		BSON_APPEND_DATE_TIME(&lt, "$lt", now);
		bson_append_document_end(&b, &lt);
		bson_append_document_end(&or, &b);
		bson_append_array_end(&f, &or);
	} else {
		append_from_states(&f, to, false);
	}
	if (fenced) {
		BSON_APPEND_UTF8(&f, "workerId", worker->valuestring);
		BSON_APPEND_INT32(&f, "attempts", (int32_t)attempts->valuedouble);
	}
	BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
	BSON_APPEND_UTF8(&set, "status", djob_state_name(to));
	BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
	if (to == DJOB_STATE_PROCESSING) {
		BSON_APPEND_DATE_TIME(&set, "leaseUntil", now + lease_ms);
		if (!extend) {
			BSON_APPEND_DATE_TIME(&set, "startedAt", now);
			if (worker)
				BSON_APPEND_UTF8(&set, "workerId", worker->valuestring);
		}
	} else {
		BSON_APPEND_DATE_TIME(&set, "finishedAt", now);
	}
	if (result)
		append_cjson(&set, "result", result);
	if (to == DJOB_STATE_FAILED)
		BSON_APPEND_UTF8(&set, "error", error ? error->valuestring : "Failed");
	else if (error)
		BSON_APPEND_UTF8(&set, "error", error->valuestring);
	bson_append_document_end(&u, &set);
	if (to != DJOB_STATE_PROCESSING) {
		BSON_APPEND_DOCUMENT_BEGIN(&u, "$unset", &unset);
		BSON_APPEND_UTF8(&unset, "leaseUntil", "");
		bson_append_document_end(&u, &unset);
	} else if (!extend) {
		bson_t inc;
		BSON_APPEND_DOCUMENT_BEGIN(&u, "$inc", &inc);
		BSON_APPEND_INT32(&inc, "attempts", 1);
		bson_append_document_end(&u, &inc);
	}
	bson_t *doc;
	int rc = find_and_modify(s, &f, &u, &doc, err);
	bson_destroy(&f);
	bson_destroy(&u);
	if (rc != 0)
		return rc;
	if (!doc)
		return explain_miss(s, id, djob_state_name(to), fenced, err);
	return doc_result(doc, json_out, err);
}

int djob_store_cancel(djob_store_t *s, const char *id, char **json_out, djob_error_t *err)
{
	int64_t now = djob_now_ms();
	bson_t f = BSON_INITIALIZER;
	BSON_APPEND_UTF8(&f, "_id", id);
	append_from_states(&f, DJOB_STATE_CANCELLED, false);
	bson_t *u = BCON_NEW("$set", "{", "status", BCON_UTF8("cancelled"), "updatedAt",
	                     BCON_DATE_TIME(now), "finishedAt", BCON_DATE_TIME(now), "}", "$unset", "{",
	                     "leaseUntil", BCON_UTF8(""), "}");
	bson_t *doc;
	int rc = find_and_modify(s, &f, u, &doc, err);
	bson_destroy(&f);
	bson_destroy(u);
	if (rc != 0)
		return rc;
	if (!doc)
		return explain_miss(s, id, "cancelled", false, err);
	return doc_result(doc, json_out, err);
}

int djob_store_retry(djob_store_t *s, const char *id, char **json_out, djob_error_t *err)
{
	int64_t now = djob_now_ms();
	bson_t f = BSON_INITIALIZER;
	BSON_APPEND_UTF8(&f, "_id", id);
	bson_t st, in;
	BSON_APPEND_DOCUMENT_BEGIN(&f, "status", &st);
	BSON_APPEND_ARRAY_BEGIN(&st, "$in", &in);
	BSON_APPEND_UTF8(&in, "0", "failed");
	BSON_APPEND_UTF8(&in, "1", "cancelled");
	bson_append_array_end(&st, &in);
	bson_append_document_end(&f, &st);
	bson_t *u = BCON_NEW("$set", "{", "status", BCON_UTF8("queued"), "attempts", BCON_INT32(0),
	                     "published", BCON_BOOL(false), "updatedAt", BCON_DATE_TIME(now), "}",
	                     "$unset", "{", "error", BCON_UTF8(""), "result", BCON_UTF8(""),
	                     "leaseUntil", BCON_UTF8(""), "finishedAt", BCON_UTF8(""), "runAt",
	                     BCON_UTF8(""), "}");
	bson_t *doc;
	int rc = find_and_modify(s, &f, u, &doc, err);
	bson_destroy(&f);
	bson_destroy(u);
	if (rc != 0)
		return rc;
	if (!doc)
		return explain_miss(s, id, "queued", false, err);
	return doc_result(doc, json_out, err);
}

int djob_store_list(djob_store_t *s, const char *status, const char *type, int limit,
                    const char *after, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	if (limit == 0)
		limit = 100;
	if (limit < 1 || limit > 1000)
		return djob_set_error(err, DJOB_EINVAL, 0, "limit must be from 1 to 1000");
	if (status && djob_state_parse(status) == DJOB_STATE_INVALID)
		return djob_set_error(err, DJOB_EINVAL, 0, "Unknown status %s", status);
	if (type && !djob_type_is_valid(type))
		return djob_set_error(err, DJOB_EINVAL, 0, "Malformed type");
	int64_t after_ms = 0;
	const char *after_id = NULL;
	if (after) {
		char *end;
		after_ms = strtoll(after, &end, 10);
		if (end == after || *end != '-' || !djob_id_is_valid(end + 1))
			return djob_set_error(err, DJOB_EINVAL, 0, "Malformed cursor");
		after_id = end + 1;
	}
	bson_t f = BSON_INITIALIZER;
	if (status)
		BSON_APPEND_UTF8(&f, "status", status);
	if (type)
		BSON_APPEND_UTF8(&f, "type", type);
	if (after_id) {
		bson_t or, a, b, lt, lt2;
		BSON_APPEND_ARRAY_BEGIN(&f, "$or", &or);
		BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &a);
		BSON_APPEND_DOCUMENT_BEGIN(&a, "createdAt", &lt);
		BSON_APPEND_DATE_TIME(&lt, "$lt", after_ms);
		bson_append_document_end(&a, &lt);
		bson_append_document_end(&or, &a);
		BSON_APPEND_DOCUMENT_BEGIN(&or, "1", &b);
		BSON_APPEND_DATE_TIME(&b, "createdAt", after_ms);
		BSON_APPEND_DOCUMENT_BEGIN(&b, "_id", &lt2);
		BSON_APPEND_UTF8(&lt2, "$lt", after_id);
		bson_append_document_end(&b, &lt2);
		bson_append_document_end(&or, &b);
		bson_append_array_end(&f, &or);
	}
	bson_t *opts = BCON_NEW("sort", "{", "createdAt", BCON_INT32(-1), "_id", BCON_INT32(-1), "}",
	                        "limit", BCON_INT64(limit + 1));
	conn_t c = conn_get(s);
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
		cJSON *j = bson_to_cjson(doc, false, true);
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
		rc = mongo_error(err, &e, "find");
	mongoc_cursor_destroy(cur);
	conn_put(s, &c);
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

int djob_store_ping(djob_store_t *s, djob_error_t *err)
{
	mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
	bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
	bson_error_t e;
	int rc = 0;
	if (!mongoc_client_command_simple(client, "admin", cmd, NULL, NULL, &e))
		rc = mongo_error(err, &e, "ping");
	bson_destroy(cmd);
	mongoc_client_pool_push(s->pool, client);
	return rc;
}

/* ---- the scheduler's sweep ---- */

/* Candidates of one sweep step: copies of up to `limit` documents. */
static int find_docs(djob_store_t *s, const bson_t *filter, int limit, bson_t ***docs_out,
                     size_t *n_out, djob_error_t *err)
{
	*docs_out = NULL;
	*n_out = 0;
	bson_t *opts = BCON_NEW("limit", BCON_INT64(limit));
	conn_t c = conn_get(s);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, filter, opts, NULL);
	bson_t **docs = calloc((size_t)limit, sizeof *docs);
	size_t n = 0;
	const bson_t *doc;
	while (docs && n < (size_t)limit && mongoc_cursor_next(cur, &doc))
		docs[n++] = bson_copy(doc);
	bson_error_t e;
	int rc = 0;
	if (!docs)
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	else if (mongoc_cursor_error(cur, &e))
		rc = mongo_error(err, &e, "find");
	mongoc_cursor_destroy(cur);
	conn_put(s, &c);
	bson_destroy(opts);
	*docs_out = docs;
	*n_out = n;
	return rc;
}

static void free_docs(bson_t **docs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bson_destroy(docs[i]);
	free(docs);
}

static const char *doc_str(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return "";
}

static int64_t doc_date(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DATE_TIME(&it))
		return bson_iter_date_time(&it);
	return 0;
}

/* Publish a requeued job and mark it published; a failure leaves it
 * unpublished for a later sweep. */
static void publish_doc(djob_store_t *s, bson_t *doc, djob_store_publish_fn publish,
                        void *opaque)
{
	char *json = doc_to_json(doc);
	const char *id = doc_str(doc, "_id");
	djob_error_t e;
	if (json && publish(opaque, id, doc_str(doc, "type"), json, &e) == 0)
		djob_store_mark_published(s, &id, 1, NULL);
	else if (json)
		djob_logf(s->conf, DJOB_LOG_WARNING, "scheduler", "Job %s not published: %s", id,
		          e.message);
	free(json);
}

int djob_store_sweep(djob_store_t *s, int64_t now, int64_t grace_ms, int limit,
                     djob_store_publish_fn publish, void *opaque, djob_sweep_stats_t *st,
                     djob_error_t *err)
{
	memset(st, 0, sizeof *st);
	bson_t **docs;
	size_t n;
	int rc;

	/* 1. Scheduled jobs whose time came (delayed jobs, retries). */
	bson_t *f = BCON_NEW("status", BCON_UTF8("scheduled"), "runAt", "{", "$lte",
	                     BCON_DATE_TIME(now), "}");
	rc = find_docs(s, f, limit, &docs, &n, err);
	bson_destroy(f);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *id = doc_str(docs[i], "_id");
		bson_t *cf = BCON_NEW("_id", BCON_UTF8(id), "status", BCON_UTF8("scheduled"));
		bson_t *u = BCON_NEW("$set", "{", "status", BCON_UTF8("queued"), "published",
		                     BCON_BOOL(false), "updatedAt", BCON_DATE_TIME(now), "}");
		bson_t *doc;
		rc = find_and_modify(s, cf, u, &doc, err);
		if (rc == 0 && doc) {
			st->due++;
			publish_doc(s, doc, publish, opaque);
			bson_destroy(doc);
		} else if (rc == 0) {
			st->lost_races++;
		}
		bson_destroy(cf);
		bson_destroy(u);
	}
	free_docs(docs, n);
	if (rc != 0)
		return rc;

	/* 2. Processing jobs whose lease ran out (crashed or hung worker):
	 * queued again while attempts remain, else failed. The filter holds
	 * the lease seen, so an extension in between wins. */
	f = BCON_NEW("status", BCON_UTF8("processing"), "leaseUntil", "{", "$lt", BCON_DATE_TIME(now),
	             "}");
	rc = find_docs(s, f, limit, &docs, &n, err);
	bson_destroy(f);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *id = doc_str(docs[i], "_id");
		int attempts = (int)doc_int(docs[i], "attempts", 0);
		int max = (int)doc_int(docs[i], "maxAttempts",
		                       djob_config_get_int(s->conf, "max.attempts"));
		bool exhausted = attempts >= max;
		char msg[128];
		snprintf(msg, sizeof msg, "Lease of attempt %d expired (worker %s)", attempts,
		         doc_str(docs[i], "workerId"));
		bson_t *cf = BCON_NEW("_id", BCON_UTF8(id), "status", BCON_UTF8("processing"),
		                      "leaseUntil", BCON_DATE_TIME(doc_date(docs[i], "leaseUntil")));
		bson_t *u = BCON_NEW(
			"$set", "{", "status", BCON_UTF8(exhausted ? "failed" : "queued"), "published",
			BCON_BOOL(exhausted), "error", BCON_UTF8(msg), "updatedAt", BCON_DATE_TIME(now),
			"}", "$unset", "{", "leaseUntil", BCON_UTF8(""), "}", "$push", "{", "history",
			"{", "attempt", BCON_INT32(attempts), "workerId",
			BCON_UTF8(doc_str(docs[i], "workerId")), "status", BCON_UTF8("lease expired"),
			"finishedAt", BCON_DATE_TIME(now), "}", "}");
		bson_t *doc;
		rc = find_and_modify(s, cf, u, &doc, err);
		if (rc == 0 && doc) {
			st->expired++;
			if (exhausted)
				st->exhausted++;
			else
				publish_doc(s, doc, publish, opaque);
			bson_destroy(doc);
		} else if (rc == 0) {
			st->lost_races++;
		}
		bson_destroy(cf);
		bson_destroy(u);
	}
	free_docs(docs, n);
	if (rc != 0)
		return rc;

	/* 3. Queued jobs never confirmed published (the API died between
	 * insert and produce). Taking one moves its updatedAt, so only one
	 * sweeper publishes it. */
	f = BCON_NEW("status", BCON_UTF8("queued"), "published", BCON_BOOL(false), "updatedAt", "{",
	             "$lt", BCON_DATE_TIME(now - grace_ms), "}");
	rc = find_docs(s, f, limit, &docs, &n, err);
	bson_destroy(f);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *id = doc_str(docs[i], "_id");
		bson_t *cf = BCON_NEW("_id", BCON_UTF8(id), "status", BCON_UTF8("queued"), "published",
		                      BCON_BOOL(false), "updatedAt",
		                      BCON_DATE_TIME(doc_date(docs[i], "updatedAt")));
		bson_t *u = BCON_NEW("$set", "{", "updatedAt", BCON_DATE_TIME(now), "}");
		bson_t *doc;
		rc = find_and_modify(s, cf, u, &doc, err);
		if (rc == 0 && doc) {
			st->unpublished++;
			publish_doc(s, doc, publish, opaque);
			bson_destroy(doc);
		} else if (rc == 0) {
			st->lost_races++;
		}
		bson_destroy(cf);
		bson_destroy(u);
	}
	free_docs(docs, n);
	return rc;
}
