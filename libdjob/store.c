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
	/* libmongoc refused the document before sending it (invalid UTF-8, an
	 * empty key, over the server's document size): the input's fault. */
	if (e->domain == MONGOC_ERROR_BSON ||
	    (e->domain == MONGOC_ERROR_COMMAND && e->code == MONGOC_ERROR_COMMAND_INVALID_ARG))
		return djob_set_error(err, DJOB_EINVAL, 0, "The job cannot be stored: %s", e->message);
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
	return strcmp(key, "seq") == 0;
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

/* One createIndexes at a time: FerretDB drops connections when the first
 * submits of a busy API all create the indexes at once. */
static pthread_mutex_t indexes_mu = PTHREAD_MUTEX_INITIALIZER;

int djob_store_ensure_indexes(djob_store_t *s, djob_error_t *err)
{
	if (atomic_load(&s->indexes_done))
		return 0;
	pthread_mutex_lock(&indexes_mu);
	if (atomic_load(&s->indexes_done)) {
		pthread_mutex_unlock(&indexes_mu);
		return 0;
	}
	/* List by status/type newest first; the scheduler's sweeps (due,
	 * expired leases) and the outbox's. One createIndexes per index:
	 * FerretDB 1.24 panics on a multi-index createIndexes against a
	 * collection whose indexes differ from the list. */
	static const struct {
		const char *suffix, *name, *k1, *k2, *k3;
		int d1, d2, d3;
	} idx[] = {
		{NULL, "status_type_created", "status", "type", "createdAt", 1, 1, -1},
		{NULL, "status_runAt", "status", "runAt", NULL, 1, 1, 0},
		{NULL, "status_leaseUntil", "status", "leaseUntil", NULL, 1, 1, 0},
		{NULL, "created", "createdAt", NULL, NULL, -1, 0, 0},
		{"outbox", "at", "at", NULL, NULL, 1, 0, 0},
	};
	mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
	mongoc_database_t *db = mongoc_client_get_database(client, s->db);
	bson_error_t e;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < sizeof idx / sizeof idx[0]; i++) {
		char coll[256];
		snprintf(coll, sizeof coll, "%s%s%s", s->coll, idx[i].suffix ? "_" : "",
		         idx[i].suffix ? idx[i].suffix : "");
		bson_t cmd = BSON_INITIALIZER, arr, spec, key;
		BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
		BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
		BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &spec);
		BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
		BSON_APPEND_INT32(&key, idx[i].k1, idx[i].d1);
		if (idx[i].k2)
			BSON_APPEND_INT32(&key, idx[i].k2, idx[i].d2);
		if (idx[i].k3)
			BSON_APPEND_INT32(&key, idx[i].k3, idx[i].d3);
		bson_append_document_end(&spec, &key);
		BSON_APPEND_UTF8(&spec, "name", idx[i].name);
		bson_append_document_end(&arr, &spec);
		bson_append_array_end(&cmd, &arr);
		if (!mongoc_database_write_command_with_opts(db, &cmd, NULL, NULL, &e))
			rc = mongo_error(err, &e, "createIndexes");
		bson_destroy(&cmd);
	}
	if (rc == 0)
		atomic_store(&s->indexes_done, 1);
	mongoc_database_destroy(db);
	mongoc_client_pool_push(s->pool, client);
	pthread_mutex_unlock(&indexes_mu);
	return rc;
}

/* ---- side collections ----
 *
 * Next to the jobs collection <c> the store keeps:
 *   <c>_locks        one document per job transition, _id "<job id>:<seq>"
 *   <c>_outbox       jobs queued but not yet confirmed published, _id = job id
 *   <c>_idempotency  idempotency key -> job id
 *
 * Why locks: a conditional findAndModify is atomic on MongoDB, but FerretDB
 * 1.24 reads the matching document and writes it back in two steps, so two
 * concurrent writers both "win" and the later write undoes the earlier
 * (FerretDB issue 3040). A unique _id is atomic everywhere. Every change of
 * a job therefore reads the job (its seq), checks the precondition, inserts
 * the lock "<id>:<seq+1>" (only one writer can) and then writes the job by
 * _id alone with seq + 1. A worker that knows the job at a seq (a new job's
 * message, its own last write) skips the read: see transition(). A filter on _id alone is also the only one that
 * FerretDB's SQLite backend serves from an index. */

static mongoc_collection_t *side(conn_t *c, djob_store_t *s, const char *suffix)
{
	char name[256];
	snprintf(name, sizeof name, "%s_%s", s->coll, suffix);
	return mongoc_client_get_collection(c->client, s->db, name);
}

static int64_t doc_int(const bson_t *doc, const char *key, int64_t dflt)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
		return bson_iter_as_int64(&it);
	return dflt;
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

static djob_state_t doc_state(const bson_t *doc)
{
	return djob_state_parse(doc_str(doc, "status"));
}

/* Record that jobs await publishing. An entry already there is fine. */
static int outbox_add(djob_store_t *s, const char *const *ids, size_t n, int64_t now,
                      djob_error_t *err)
{
	if (n == 0)
		return 0;
	bson_t **docs = calloc(n, sizeof *docs);
	if (!docs)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	for (size_t i = 0; i < n; i++)
		docs[i] = BCON_NEW("_id", BCON_UTF8(ids[i]), "at", BCON_DATE_TIME(now));
	conn_t c = conn_get(s);
	mongoc_collection_t *ob = side(&c, s, "outbox");
	bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
	bson_error_t e;
	int rc = 0;
	if (!mongoc_collection_insert_many(ob, (const bson_t **)docs, n, opts, NULL, &e) &&
	    e.code != 11000)
		rc = mongo_error(err, &e, "outbox insert");
	bson_destroy(opts);
	mongoc_collection_destroy(ob);
	conn_put(s, &c);
	for (size_t i = 0; i < n; i++)
		bson_destroy(docs[i]);
	free(docs);
	return rc;
}

/* The jobs are published: drop their outbox entries. */
static int outbox_done(djob_store_t *s, const char *const *ids, size_t n, djob_error_t *err)
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
	conn_t c = conn_get(s);
	mongoc_collection_t *ob = side(&c, s, "outbox");
	bson_error_t e;
	int rc = 0;
	if (!(n == 1 ? mongoc_collection_delete_one(ob, &f, NULL, NULL, &e)
	             : mongoc_collection_delete_many(ob, &f, NULL, NULL, &e)))
		rc = mongo_error(err, &e, "outbox delete");
	mongoc_collection_destroy(ob);
	conn_put(s, &c);
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
	BSON_APPEND_INT64(b, "seq", 0);
	return b;
}

static void delete_keys(djob_store_t *s, const djob_new_job_t *jobs, size_t n)
{
	conn_t c = conn_get(s);
	mongoc_collection_t *idem = side(&c, s, "idempotency");
	for (size_t i = 0; i < n; i++) {
		if (!jobs[i].idempotency_key)
			continue;
		bson_t *f = BCON_NEW("_id", BCON_UTF8(jobs[i].idempotency_key));
		mongoc_collection_delete_one(idem, f, NULL, NULL, NULL);
		bson_destroy(f);
	}
	mongoc_collection_destroy(idem);
	conn_put(s, &c);
}

/* Delete jobs by id (a submission that failed half-way). */
static void delete_jobs(djob_store_t *s, const djob_new_job_t *jobs, size_t n)
{
	conn_t c = conn_get(s);
	for (size_t i = 0; i < n; i++) {
		bson_t *f = BCON_NEW("_id", BCON_UTF8(jobs[i].id));
		mongoc_collection_delete_one(c.coll, f, NULL, NULL, NULL);
		bson_destroy(f);
	}
	conn_put(s, &c);
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
	conn_t c = conn_get(s);
	bson_error_t e;
	int rc = 0;
	size_t keys = 0;
	/* Idempotency keys first: a unique _id per key makes a concurrent
	 * repeat fail here, before any job exists. */
	mongoc_collection_t *idem = side(&c, s, "idempotency");
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!jobs[i].idempotency_key)
			continue;
		bson_t *d = BCON_NEW("_id", BCON_UTF8(jobs[i].idempotency_key), "jobId",
		                     BCON_UTF8(jobs[i].id), "createdAt",
		                     BCON_DATE_TIME(jobs[i].created_ms));
		if (!mongoc_collection_insert_one(idem, d, NULL, NULL, &e))
			rc = mongo_error(err, &e, "insert of the idempotency key");
		else
			keys++;
		bson_destroy(d);
	}
	mongoc_collection_destroy(idem);
	conn_put(s, &c);
	/* The outbox entry comes before the job, so no job is ever without
	 * one until it is published. */
	size_t m = 0;
	const char **ids = queued_ids(jobs, n, &m);
	if (!ids && rc == 0)
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	if (rc == 0)
		rc = outbox_add(s, ids, m, jobs[0].created_ms, err);
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
		c = conn_get(s);
		if (!mongoc_collection_insert_many(c.coll, docs, n, NULL, NULL, &e)) {
			rc = mongo_error(err, &e, "insert");
			conn_put(s, &c);
			/* An ordered insert may have stored a prefix: remove it. */
			delete_jobs(s, jobs, n);
		} else {
			conn_put(s, &c);
		}
	}
	for (size_t i = 0; docs && i < built; i++)
		bson_destroy((bson_t *)docs[i]);
	free(docs);
	if (rc != 0) {
		if (ids)
			outbox_done(s, ids, m, NULL);
		if (keys > 0)
			delete_keys(s, jobs, n);
	}
	free(ids);
	return rc;
}

int djob_store_find_idempotent(djob_store_t *s, const char *key, char **id_out, djob_error_t *err)
{
	*id_out = NULL;
	conn_t c = conn_get(s);
	mongoc_collection_t *idem = side(&c, s, "idempotency");
	bson_t *f = BCON_NEW("_id", BCON_UTF8(key));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(idem, f, NULL, NULL);
	const bson_t *doc;
	bson_error_t e;
	int rc = DJOB_ENOTFOUND;
	if (mongoc_cursor_next(cur, &doc)) {
		if (*doc_str(doc, "jobId")) {
			*id_out = djob_strdup(doc_str(doc, "jobId"));
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
	return outbox_done(s, ids, n, err);
}

int djob_store_delete_unpublished(djob_store_t *s, const djob_new_job_t *jobs, size_t n,
                                  djob_error_t *err)
{
	size_t m = 0;
	const char **ids = queued_ids(jobs, n, &m);
	if (!ids)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	delete_jobs(s, jobs, n);
	int rc = outbox_done(s, ids, m, err);
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
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, f, NULL, NULL);
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

/* ---- transitions ---- */

/* What a transition sets, unsets and pushes. */
typedef struct {
	bson_t set, unset, push;
} change_t;

/* Check the precondition on the current document and describe the change;
 * 0 to go on, or a negative code with err set to refuse. */
typedef int (*plan_fn)(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err);

#define LOST_RACE 1
#define STALE_LOCK_MS 30000

static bson_t *update_from(const bson_t *set, const bson_t *unset, const bson_t *push)
{
	bson_t *u = bson_new();
	BSON_APPEND_DOCUMENT(u, "$set", set);
	if (unset && !bson_empty(unset))
		BSON_APPEND_DOCUMENT(u, "$unset", unset);
	if (push && !bson_empty(push))
		BSON_APPEND_DOCUMENT(u, "$push", push);
	return u;
}

static int write_job(djob_store_t *s, const char *id, const bson_t *update, djob_error_t *err)
{
	conn_t c = conn_get(s);
	bson_t *f = BCON_NEW("_id", BCON_UTF8(id));
	bson_t reply;
	bson_error_t e;
	int rc = 0;
	if (!mongoc_collection_update_one(c.coll, f, update, NULL, &reply, &e))
		rc = mongo_error(err, &e, "update");
	else if (doc_int(&reply, "matchedCount", 1) == 0)
		rc = djob_set_error(err, DJOB_ENOTFOUND, 0, "Job not found");
	bson_destroy(&reply);
	bson_destroy(f);
	conn_put(s, &c);
	return rc;
}

/* A writer took lock seq+1 and never wrote the job (it died): after
 * STALE_LOCK_MS, apply the change it recorded in the lock. */
static void roll_forward(djob_store_t *s, const char *id, int64_t seq, const char *lock_id)
{
	conn_t c = conn_get(s);
	mongoc_collection_t *locks = side(&c, s, "locks");
	bson_t *f = BCON_NEW("_id", BCON_UTF8(lock_id));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(locks, f, NULL, NULL);
	const bson_t *lock;
	bson_t *u = NULL;
	if (mongoc_cursor_next(cur, &lock) && doc_date(lock, "at") < djob_now_ms() - STALE_LOCK_MS) {
		bson_iter_t it;
		bson_t set, unset, push;
		uint32_t len;
		const uint8_t *data;
		bson_init(&set);
		bson_init(&unset);
		bson_init(&push);
		if (bson_iter_init_find(&it, lock, "set") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
			bson_iter_document(&it, &len, &data);
			bson_destroy(&set);
			bson_init_static(&set, data, len);
		}
		if (bson_iter_init_find(&it, lock, "unset") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
			bson_iter_document(&it, &len, &data);
			bson_destroy(&unset);
			bson_init_static(&unset, data, len);
		}
		if (bson_iter_init_find(&it, lock, "push") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
			bson_iter_document(&it, &len, &data);
			bson_destroy(&push);
			bson_init_static(&push, data, len);
		}
		u = update_from(&set, &unset, &push);
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(f);
	mongoc_collection_destroy(locks);
	conn_put(s, &c);
	bson_t *doc;
	if (u && find_one(s, id, &doc, NULL) == 0) {
		if (doc_int(doc, "seq", 0) == seq) {
			djob_logf(s->conf, DJOB_LOG_WARNING, "store",
			          "Job %s: applying the change of a writer that died", id);
			write_job(s, id, u, NULL);
		}
		bson_destroy(doc);
	}
	if (u)
		bson_destroy(u);
}

/* Take lock seq+1 and write the change. LOST_RACE when another writer
 * holds that lock. */
static int apply(djob_store_t *s, const char *id, int64_t seq, const change_t *ch,
                 djob_error_t *err)
{
	char lock_id[80];
	snprintf(lock_id, sizeof lock_id, "%s:%lld", id, (long long)(seq + 1));
	bson_t *lock = BCON_NEW("_id", BCON_UTF8(lock_id), "at", BCON_DATE_TIME(djob_now_ms()));
	BSON_APPEND_DOCUMENT(lock, "set", &ch->set);
	BSON_APPEND_DOCUMENT(lock, "unset", &ch->unset);
	BSON_APPEND_DOCUMENT(lock, "push", &ch->push);
	conn_t c = conn_get(s);
	mongoc_collection_t *locks = side(&c, s, "locks");
	bson_error_t e;
	bool ok = mongoc_collection_insert_one(locks, lock, NULL, NULL, &e);
	mongoc_collection_destroy(locks);
	conn_put(s, &c);
	bson_destroy(lock);
	if (!ok && e.code == 11000) {
		roll_forward(s, id, seq, lock_id);
		return LOST_RACE;
	}
	if (!ok)
		return mongo_error(err, &e, "lock insert");
	bson_t *u = update_from(&ch->set, &ch->unset, &ch->push);
	int rc = write_job(s, id, u, err);
	bson_destroy(u);
	if (rc != 0) {
		/* The lock is ours: if the write did not happen, give the lock
		 * back so the job is not held until a roll-forward. */
		bson_t *doc;
		if (find_one(s, id, &doc, NULL) == 0) {
			if (doc_int(doc, "seq", 0) == seq + 1) {
				rc = 0; /* it did happen; only the answer was lost */
			} else {
				c = conn_get(s);
				locks = side(&c, s, "locks");
				bson_t *f = BCON_NEW("_id", BCON_UTF8(lock_id));
				mongoc_collection_delete_one(locks, f, NULL, NULL, NULL);
				bson_destroy(f);
				mongoc_collection_destroy(locks);
				conn_put(s, &c);
			}
			bson_destroy(doc);
		}
	}
	return rc;
}

/* The document as the write of ch left it: doc with ch->set applied in
 * place, ch->unset removed and ch->push appended (a change names top-level
 * fields only). Saves reading the job again after the write. */
static bson_t *applied(const bson_t *doc, const change_t *ch)
{
	bson_t *out = bson_new();
	bson_iter_t it, v;
	bson_iter_init(&it, doc);
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		if (bson_has_field(&ch->unset, k))
			continue;
		if (bson_iter_init_find(&v, &ch->set, k)) {
			bson_append_iter(out, k, -1, &v);
		} else if (BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_init_find(&v, &ch->push, k)) {
			uint32_t len;
			const uint8_t *data;
			bson_iter_array(&it, &len, &data);
			bson_t old, arr;
			bson_iter_t e;
			uint32_t n = 0;
			char buf[16];
			const char *key;
			bson_init_static(&old, data, len);
			bson_append_array_begin(out, k, -1, &arr);
			bson_iter_init(&e, &old);
			for (; bson_iter_next(&e); n++) {
				bson_uint32_to_string(n, &key, buf, sizeof buf);
				bson_append_iter(&arr, key, -1, &e);
			}
			bson_uint32_to_string(n, &key, buf, sizeof buf);
			bson_append_iter(&arr, key, -1, &v);
			bson_append_array_end(out, &arr);
		} else {
			bson_append_iter(out, k, -1, &it);
		}
	}
	/* Fields the document did not have yet, as the server appends them. */
	bson_iter_init(&v, &ch->set);
	while (bson_iter_next(&v))
		if (!bson_has_field(doc, bson_iter_key(&v)))
			bson_append_iter(out, bson_iter_key(&v), -1, &v);
	bson_iter_init(&v, &ch->push);
	while (bson_iter_next(&v)) {
		if (bson_has_field(doc, bson_iter_key(&v)))
			continue;
		bson_t arr;
		bson_append_array_begin(out, bson_iter_key(&v), -1, &arr);
		bson_append_iter(&arr, "0", -1, &v);
		bson_append_array_end(out, &arr);
	}
	return out;
}

/* What a caller knows of a job without reading it: at seq `seq` its
 * fields were those of `doc` (the ones the plans look at), because the
 * caller inserted or last wrote it then; or seq -1, nothing. */
typedef struct {
	bson_t *doc;
	int64_t seq;
} known_t;

/* Change one job: read, check, lock, write; again from the read when
 * another writer got there first. With `known` (may be NULL or seq -1),
 * the first round checks the known fields instead of reading: lock
 * seq+1 is free only while the job is still at seq, so taking it proves
 * them current, and a taken lock sends the next round to the read.
 * *doc_out (may be NULL; not with known) gets the new document, *seq_out
 * (may be NULL) the seq written. */
static int transition(djob_store_t *s, const char *id, const known_t *known, plan_fn plan,
                      void *ctx, bson_t **doc_out, int64_t *seq_out, djob_error_t *err)
{
	if (doc_out)
		*doc_out = NULL;
	bool presume = known && known->seq >= 0 && !doc_out;
	for (int attempt = 0;; attempt++) {
		bool presumed = presume && attempt == 0;
		bson_t *doc;
		int64_t seq;
		int rc = 0;
		if (presumed) {
			doc = bson_copy(known->doc);
			seq = known->seq;
		} else {
			rc = find_one(s, id, &doc, err);
			if (rc != 0)
				return rc;
			seq = doc_int(doc, "seq", 0);
		}
		change_t ch;
		bson_init(&ch.set);
		bson_init(&ch.unset);
		bson_init(&ch.push);
		rc = plan(doc, ctx, &ch, err);
		if (rc != 0 && presumed) {
			rc = LOST_RACE; /* answer from the job itself */
		} else if (rc == 0) {
			BSON_APPEND_INT64(&ch.set, "seq", seq + 1);
			rc = apply(s, id, seq, &ch, err);
		}
		if (rc == 0 && doc_out)
			*doc_out = applied(doc, &ch);
		if (rc == 0 && seq_out)
			*seq_out = seq + 1;
		bson_destroy(doc);
		bson_destroy(&ch.set);
		bson_destroy(&ch.unset);
		bson_destroy(&ch.push);
		if (rc == LOST_RACE && presumed)
			continue; /* the job moved on: read it */
		if (rc == LOST_RACE) {
			if (attempt >= 50)
				/* Not a conflict with the caller's request: the
				 * store is busy with this job (503, retriable). */
				return djob_set_error(err, DJOB_EMONGO, 1,
				                      "The job is being changed by another writer; try again");
			struct timespec ts = {0, (attempt < 10 ? 2 : 20) * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		return rc;
	}
}

static int conflict_from_to(const bson_t *doc, const char *to, djob_error_t *err)
{
	return djob_set_error(err, DJOB_ECONFLICT, 0, "Cannot change status from %s to %s",
	                      doc_str(doc, "status"), to);
}

static int conflict_lease(djob_error_t *err)
{
	return djob_set_error(err, DJOB_ECONFLICT, 0,
	                      "The job's lease is held by another worker or attempt");
}

/* Does (workerId, attempts) in doc match? */
static bool holds_lease(const bson_t *doc, const char *worker_id, int attempts)
{
	return doc_state(doc) == DJOB_STATE_PROCESSING && strcmp(doc_str(doc, "workerId"), worker_id) == 0 &&
	       doc_int(doc, "attempts", -1) == attempts;
}

/* ---- worker writes ---- */

/* The history entry of an attempt whose lease ran out, whoever notices it
 * first: the scheduler's sweep or a claim that takes the job over. */
static void push_lease_expired(change_t *ch, const bson_t *doc, int attempts, int64_t now)
{
	bson_t entry;
	BSON_APPEND_DOCUMENT_BEGIN(&ch->push, "history", &entry);
	BSON_APPEND_INT32(&entry, "attempt", attempts);
	BSON_APPEND_UTF8(&entry, "workerId", doc_str(doc, "workerId"));
	BSON_APPEND_UTF8(&entry, "status", "lease expired");
	BSON_APPEND_DATE_TIME(&entry, "finishedAt", now);
	bson_append_document_end(&ch->push, &entry);
}

typedef struct {
	djob_store_t *s;
	const char *worker_id; /* NULL: keep the current one (a prototype PATCH) */
	long lease_ms;
	int64_t now;
	int attempts, max_attempts; /* out */
} claim_t;

static int plan_claim(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	claim_t *c = ctx;
	djob_state_t st = doc_state(doc);
	int attempts = (int)doc_int(doc, "attempts", 0);
	int max = (int)doc_int(doc, "maxAttempts", djob_config_get_int(c->s->conf, "max.attempts"));
	bool expired = st == DJOB_STATE_PROCESSING && doc_date(doc, "leaseUntil") < c->now;
	if (st != DJOB_STATE_QUEUED && !expired)
		return djob_set_error(err, DJOB_ECONFLICT, 0, "Job is %s", doc_str(doc, "status"));
	if (expired && attempts >= max)
		return djob_set_error(err, DJOB_ECONFLICT, 0, "Job has no attempt left");
	c->attempts = attempts + 1;
	c->max_attempts = max;
	if (expired)
		push_lease_expired(ch, doc, attempts, c->now);
	BSON_APPEND_UTF8(&ch->set, "status", "processing");
	if (c->worker_id)
		BSON_APPEND_UTF8(&ch->set, "workerId", c->worker_id);
	BSON_APPEND_INT32(&ch->set, "attempts", c->attempts);
	BSON_APPEND_DATE_TIME(&ch->set, "leaseUntil", c->now + c->lease_ms);
	BSON_APPEND_DATE_TIME(&ch->set, "startedAt", c->now);
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", c->now);
	return 0;
}

int djob_store_claim(djob_store_t *s, const char *id, const char *worker_id, long lease_ms,
                     int *attempts, int *max_attempts, int64_t *seq, djob_error_t *err)
{
	claim_t c = {s, worker_id, lease_ms, djob_now_ms(), 0, 0};
	/* As submitted: queued, no attempt yet. */
	known_t k = {BCON_NEW("status", BCON_UTF8("queued"), "attempts", BCON_INT32(0),
	                      "maxAttempts", BCON_INT32(*max_attempts)),
	             *max_attempts > 0 ? *seq : -1};
	int rc = transition(s, id, &k, plan_claim, &c, NULL, seq, err);
	bson_destroy(k.doc);
	if (rc == 0) {
		*attempts = c.attempts;
		*max_attempts = c.max_attempts;
	}
	return rc;
}

typedef struct {
	const char *worker_id;
	int attempts;
	long lease_ms;
	int64_t now;
} extend_t;

static int plan_extend(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	extend_t *x = ctx;
	if (!holds_lease(doc, x->worker_id, x->attempts))
		return djob_set_error(err, DJOB_ECONFLICT, 0, "Lease lost");
	BSON_APPEND_DATE_TIME(&ch->set, "leaseUntil", x->now + x->lease_ms);
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", x->now);
	return 0;
}

/* The job as this worker's claim or last write left it. */
static bson_t *held_doc(const char *worker_id, int attempts, int max_attempts)
{
	return BCON_NEW("status", BCON_UTF8("processing"), "workerId", BCON_UTF8(worker_id),
	                "attempts", BCON_INT32(attempts), "maxAttempts", BCON_INT32(max_attempts));
}

int djob_store_extend(djob_store_t *s, const char *id, const char *worker_id, int attempts,
                      int max_attempts, long lease_ms, int64_t *seq, djob_error_t *err)
{
	extend_t x = {worker_id, attempts, lease_ms, djob_now_ms()};
	known_t k = {held_doc(worker_id, attempts, max_attempts), *seq};
	int rc = transition(s, id, &k, plan_extend, &x, NULL, seq, err);
	bson_destroy(k.doc);
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
	int attempts, max_attempts;
	djob_job_status_t outcome;
	const cJSON *result;
	const char *error;
	int64_t now;
} finish_t;

static int plan_finish(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	finish_t *f = ctx;
	if (!holds_lease(doc, f->worker_id, f->attempts))
		return conflict_lease(err);
	int max = (int)doc_int(doc, "maxAttempts", f->max_attempts);
	bool done = f->outcome == DJOB_JOB_DONE;
	const char *status = done                                                      ? "completed"
	                     : f->outcome == DJOB_JOB_RETRY && f->attempts < max ? "scheduled"
	                                                                          : "failed";
	BSON_APPEND_UTF8(&ch->set, "status", status);
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", f->now);
	if (done)
		append_cjson(&ch->set, "result", f->result);
	else
		BSON_APPEND_UTF8(&ch->set, "error", f->error);
	if (strcmp(status, "scheduled") == 0)
		BSON_APPEND_DATE_TIME(&ch->set, "runAt", f->now + djob_retry_backoff_ms(f->attempts));
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
                      const char *error, int64_t *seq, djob_error_t *err)
{
	cJSON *result = NULL;
	if (outcome == DJOB_JOB_DONE) {
		result = cJSON_Parse(result_json ? result_json : "{}");
		if (!cJSON_IsObject(result)) {
			cJSON_Delete(result);
			return djob_set_error(err, DJOB_EINVAL, 0, "Result must be a JSON object");
		}
	}
	finish_t f = {worker_id, attempts, max_attempts, outcome, result,
	              error ? error : "Handler failed", djob_now_ms()};
	known_t k = {held_doc(worker_id, attempts, max_attempts), *seq};
	int rc = transition(s, id, &k, plan_finish, &f, NULL, seq, err);
	bson_destroy(k.doc);
	cJSON_Delete(result);
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

typedef struct {
	djob_store_t *s;
	djob_state_t to;
	const cJSON *result, *error, *worker;
	int attempts; /* 0 when not fenced */
	long lease_ms;
	int64_t now;
	bool retry;          /* a fenced failure that should be retried */
	const cJSON *empty; /* {} for a completion without a result */
} patch_t;

static int plan_patch(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	patch_t *p = ctx;
	bool fenced = p->worker && p->attempts > 0;
	if (p->to == DJOB_STATE_PROCESSING && fenced) {
		/* The holder of the lease extends it. */
		extend_t x = {p->worker->valuestring, p->attempts, p->lease_ms, p->now};
		return plan_extend(doc, &x, ch, err) == 0 ? 0 : conflict_lease(err);
	}
	if (p->to == DJOB_STATE_PROCESSING) {
		claim_t c = {p->s, p->worker ? p->worker->valuestring : NULL, p->lease_ms, p->now, 0, 0};
		int rc = plan_claim(doc, &c, ch, err);
		if (rc == DJOB_ECONFLICT && doc_state(doc) != DJOB_STATE_PROCESSING)
			rc = conflict_from_to(doc, "processing", err);
		return rc;
	}
	djob_state_t from = doc_state(doc);
	if (from == DJOB_STATE_INVALID || !djob_state_can_transition(from, p->to))
		return conflict_from_to(doc, djob_state_name(p->to), err);
	if (fenced) {
		/* A worker recording its outcome (the api sink): the same change
		 * as the store sink's, history and retries included. */
		finish_t f = {p->worker->valuestring,
		              p->attempts,
		              (int)djob_config_get_int(p->s->conf, "max.attempts"),
		              p->to == DJOB_STATE_COMPLETED ? DJOB_JOB_DONE
		              : p->retry                    ? DJOB_JOB_RETRY
		                                            : DJOB_JOB_FAIL,
		              p->result ? p->result : p->empty,
		              p->error ? p->error->valuestring : "Failed",
		              p->now};
		return plan_finish(doc, &f, ch, err);
	}
	BSON_APPEND_UTF8(&ch->set, "status", djob_state_name(p->to));
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", p->now);
	BSON_APPEND_DATE_TIME(&ch->set, "finishedAt", p->now);
	if (p->result)
		append_cjson(&ch->set, "result", p->result);
	if (p->to == DJOB_STATE_FAILED)
		BSON_APPEND_UTF8(&ch->set, "error", p->error ? p->error->valuestring : "Failed");
	else if (p->error)
		BSON_APPEND_UTF8(&ch->set, "error", p->error->valuestring);
	BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
	return 0;
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
	const cJSON *retry = cJSON_GetObjectItemCaseSensitive(body, "retry");
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
	if (retry && (!cJSON_IsBool(retry) ||
	              (cJSON_IsTrue(retry) && (to != DJOB_STATE_FAILED || !worker || !attempts))))
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "retry needs status failed with workerId and attempts");
	cJSON *empty = cJSON_CreateObject();
	patch_t p = {s,
	             to,
	             result,
	             error,
	             worker,
	             worker && attempts ? (int)attempts->valuedouble : 0,
	             lease ? (long)lease->valuedouble : djob_config_get_int(s->conf, "lease.ms"),
	             djob_now_ms(),
	             cJSON_IsTrue(retry),
	             empty};
	bson_t *doc;
	int rc = transition(s, id, NULL, plan_patch, &p, &doc, NULL, err);
	cJSON_Delete(empty);
	return rc != 0 ? rc : doc_result(doc, json_out, err);
}

typedef struct {
	int64_t now;
} now_t;

static int plan_cancel(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	int64_t now = ((now_t *)ctx)->now;
	djob_state_t from = doc_state(doc);
	if (from == DJOB_STATE_INVALID || !djob_state_can_transition(from, DJOB_STATE_CANCELLED))
		return conflict_from_to(doc, "cancelled", err);
	BSON_APPEND_UTF8(&ch->set, "status", "cancelled");
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", now);
	BSON_APPEND_DATE_TIME(&ch->set, "finishedAt", now);
	BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
	return 0;
}

int djob_store_cancel(djob_store_t *s, const char *id, char **json_out, djob_error_t *err)
{
	now_t n = {djob_now_ms()};
	bson_t *doc;
	int rc = transition(s, id, NULL, plan_cancel, &n, &doc, NULL, err);
	return rc != 0 ? rc : doc_result(doc, json_out, err);
}

/* Back to queued: a retry from failed or cancelled (attempts start again),
 * a scheduled job whose time came, or an expired lease with attempts left. */
static void set_requeued(change_t *ch, int64_t now)
{
	BSON_APPEND_UTF8(&ch->set, "status", "queued");
	BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", now);
	BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
}

static int plan_retry(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	djob_state_t from = doc_state(doc);
	if (from != DJOB_STATE_FAILED && from != DJOB_STATE_CANCELLED)
		return conflict_from_to(doc, "queued", err);
	set_requeued(ch, ((now_t *)ctx)->now);
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
	int rc = outbox_add(s, &id, 1, n.now, err);
	bson_t *doc = NULL;
	if (rc == 0)
		rc = transition(s, id, NULL, plan_retry, &n, &doc, NULL, err);
	if (rc != 0)
		return rc;
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
static int find_docs(djob_store_t *s, const char *suffix, const bson_t *filter, int limit,
                     bson_t ***docs_out, size_t *n_out, djob_error_t *err)
{
	*docs_out = NULL;
	*n_out = 0;
	bson_t *opts = BCON_NEW("limit", BCON_INT64(limit));
	conn_t c = conn_get(s);
	mongoc_collection_t *coll = suffix ? side(&c, s, suffix) : c.coll;
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
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
	if (suffix)
		mongoc_collection_destroy(coll);
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

/* Publish a queued job and drop its outbox entry; a failure leaves the
 * entry for a later sweep. */
static void publish_doc(djob_store_t *s, const bson_t *doc, djob_store_publish_fn publish,
                        void *opaque)
{
	char *json = doc_to_json(doc);
	const char *id = doc_str(doc, "_id");
	djob_error_t e;
	if (json && publish(opaque, id, doc_str(doc, "type"), json, &e) == 0)
		outbox_done(s, &id, 1, NULL);
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
	if (doc_state(doc) != DJOB_STATE_SCHEDULED || doc_date(doc, "runAt") > w->now)
		return djob_set_error(err, DJOB_ECONFLICT, 0, "Not due");
	set_requeued(ch, w->now);
	return 0;
}

static int plan_expired(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err)
{
	sweep_t *w = ctx;
	if (doc_state(doc) != DJOB_STATE_PROCESSING || doc_date(doc, "leaseUntil") >= w->now)
		return djob_set_error(err, DJOB_ECONFLICT, 0, "Lease alive");
	int attempts = (int)doc_int(doc, "attempts", 0);
	int max = (int)doc_int(doc, "maxAttempts", djob_config_get_int(w->s->conf, "max.attempts"));
	char msg[160];
	snprintf(msg, sizeof msg, "Lease of attempt %d expired (worker %s)", attempts,
	         doc_str(doc, "workerId"));
	w->exhausted = attempts >= max;
	if (w->exhausted) {
		BSON_APPEND_UTF8(&ch->set, "status", "failed");
		BSON_APPEND_DATE_TIME(&ch->set, "updatedAt", w->now);
		BSON_APPEND_DATE_TIME(&ch->set, "finishedAt", w->now);
		BSON_APPEND_UTF8(&ch->unset, "leaseUntil", "");
	} else {
		set_requeued(ch, w->now);
	}
	BSON_APPEND_UTF8(&ch->set, "error", msg);
	push_lease_expired(ch, doc, attempts, w->now);
	return 0;
}

/* Requeue the jobs a step found (outbox entry first), then publish. */
static int requeue_all(djob_store_t *s, bson_t **docs, size_t n, plan_fn plan, int64_t now,
                       djob_store_publish_fn publish, void *opaque, int *moved, int *exhausted,
                       int *lost, djob_error_t *err)
{
	for (size_t i = 0; i < n; i++) {
		const char *id = doc_str(docs[i], "_id");
		sweep_t w = {s, now, false};
		int rc = outbox_add(s, &id, 1, now, err);
		bson_t *doc = NULL;
		if (rc == 0)
			rc = transition(s, id, NULL, plan, &w, &doc, NULL, err);
		if (rc == DJOB_ECONFLICT || rc == DJOB_ENOTFOUND) {
			(*lost)++; /* its outbox entry goes in the outbox step */
			continue;
		}
		if (rc != 0)
			return rc;
		(*moved)++;
		if (w.exhausted) {
			(*exhausted)++;
			outbox_done(s, &id, 1, NULL);
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
	int rc = find_docs(s, NULL, f, limit, &docs, &n, err);
	bson_destroy(f);
	int none = 0;
	if (rc == 0)
		rc = requeue_all(s, docs, n, plan_due, now, publish, opaque, &st->due, &none,
		                 &st->lost_races, err);
	free_docs(docs, n);
	if (rc != 0)
		return rc;

	/* 2. Processing jobs whose lease ran out (crashed or hung worker):
	 * queued again while attempts remain, else failed. */
	f = BCON_NEW("status", BCON_UTF8("processing"), "leaseUntil", "{", "$lt", BCON_DATE_TIME(now),
	             "}");
	rc = find_docs(s, NULL, f, limit, &docs, &n, err);
	bson_destroy(f);
	if (rc == 0)
		rc = requeue_all(s, docs, n, plan_expired, now, publish, opaque, &st->expired,
		                 &st->exhausted, &st->lost_races, err);
	free_docs(docs, n);
	if (rc != 0)
		return rc;

	/* 3. Outbox entries older than the grace period: the API or a sweeper
	 * died between writing the job and publishing it. Publish the job if
	 * it is still queued (a second message is harmless: claims are
	 * exclusive), then drop the entry. */
	f = BCON_NEW("at", "{", "$lt", BCON_DATE_TIME(now - grace_ms), "}");
	rc = find_docs(s, "outbox", f, limit, &docs, &n, err);
	bson_destroy(f);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *id = doc_str(docs[i], "_id");
		bson_t *job;
		int r = find_one(s, id, &job, err);
		if (r == 0 && doc_state(job) == DJOB_STATE_QUEUED) {
			st->unpublished++;
			publish_doc(s, job, publish, opaque);
		} else if (r == 0 || r == DJOB_ENOTFOUND) {
			outbox_done(s, &id, 1, NULL);
		} else {
			rc = r;
		}
		if (r == 0)
			bson_destroy(job);
	}
	free_docs(docs, n);
	return rc;
}
