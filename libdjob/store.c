/*
 * The job store on libmongoc: set-up (client pool, the server's mode,
 * indexes, command counters), reads by id and the ping. The rest of the
 * store is split by concern: store_codec.c (BSON and JSON),
 * store_submit.c (insert, outbox, idempotency), store_transition.c (every
 * state change), store_list.c (pages of jobs) and scheduler_sweep.c.
 */
#include "store_private.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- libmongoc set-up ---- */

static void mongo_log(mongoc_log_level_t level, const char *domain, const char *message,
                      void *opaque)
{
	(void)opaque;
	/* Servers without sessions (FerretDB, mongo-java-server) refuse
	 * endSessions at every client shutdown: nothing to warn about. */
	if (level > MONGOC_LOG_LEVEL_WARNING || strstr(message, "endSessions"))
		return;
	djob_logf(NULL, level <= MONGOC_LOG_LEVEL_CRITICAL ? DJOB_LOG_ERROR : DJOB_LOG_WARNING,
	          "mongo", "%s: %s", domain, message);
}

static void mongo_init_once(void)
{
	/* The handler first: where libmongoc is built without automatic
	 * globals, mongoc_init() does its set-up here and may warn (Debian's
	 * does it in a load-time constructor, before any of djob runs). */
	mongoc_log_set_handler(mongo_log, NULL);
	mongoc_init();
}

static pthread_once_t mongo_once = PTHREAD_ONCE_INIT;

int djob_store_mongo_error(djob_error_t *err, const bson_error_t *e, const char *what)
{
	if (e->code == 11000)
		return djob_set_error(err, DJOB_ECONFLICT, 0, "%s: duplicate key", what);
	/* libmongoc refused the document before sending it (invalid UTF-8, an
	 * empty key, over the server's document size): the input's fault. */
	if (e->domain == MONGOC_ERROR_BSON ||
	    (e->domain == MONGOC_ERROR_COMMAND && e->code == MONGOC_ERROR_COMMAND_INVALID_ARG) ||
	    /* The server's BadValue (2): a value it cannot store. */
	    ((e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_COMMAND) &&
	     e->code == 2))
		return djob_set_error(err, DJOB_EINVAL, 0, "The job cannot be stored: %s",
		                      e->message);
	return djob_set_error(err, DJOB_EMONGO, 1, "MongoDB %s failed: %s", what, e->message);
}

/* ---- command counters ---- */

static atomic_ullong commands[STORE_CMD_COUNT];
static const char *const command_names[STORE_CMD_COUNT] = {"find",   "findAndModify", "insert",
                                                           "update", "delete",        "other"};

static void command_started(const mongoc_apm_command_started_t *event)
{
	const char *name = mongoc_apm_command_started_get_command_name(event);
	int i = 0;
	while (i < STORE_CMD_OTHER && strcmp(name, command_names[i]) != 0)
		i++;
	atomic_fetch_add_explicit(&commands[i], 1, memory_order_relaxed);
}

size_t djob_store_commands(const char **names, unsigned long long *counts, size_t max)
{
	size_t n = max < STORE_CMD_COUNT ? max : STORE_CMD_COUNT;
	for (size_t i = 0; i < n; i++) {
		names[i] = command_names[i];
		counts[i] = atomic_load_explicit(&commands[i], memory_order_relaxed);
	}
	return n;
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
	mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
	mongoc_apm_set_command_started_cb(cbs, command_started);
	mongoc_client_pool_set_apm_callbacks(s->pool, cbs, NULL);
	mongoc_apm_callbacks_destroy(cbs);
	const char *mode = djob_config_get(conf, "store.mode");
	if (mode && strcmp(mode, "atomic") == 0)
		atomic_init(&s->mode, STORE_MODE_ATOMIC);
	else if (mode && strcmp(mode, "locks") == 0)
		atomic_init(&s->mode, STORE_MODE_LOCKS);
	if (atomic_load(&s->mode) != STORE_MODE_UNKNOWN)
		snprintf(s->server, sizeof s->server, "forced by store.mode");
	*out = s;
	return 0;
}

void djob_store_free(djob_store_t *s)
{
	if (!s)
		return;
	djob_store_stats_free(s->stats); /* waits for a read under way */
	if (s->pool)
		mongoc_client_pool_destroy(s->pool);
	djob_config_free(s->conf);
	free(s->db);
	free(s->coll);
	free(s);
}

conn_t djob_store_conn(djob_store_t *s)
{
	conn_t c;
	c.client = mongoc_client_pool_pop(s->pool);
	c.coll = mongoc_client_get_collection(c.client, s->db, s->coll);
	return c;
}

void djob_store_conn_put(djob_store_t *s, conn_t *c)
{
	mongoc_collection_destroy(c->coll);
	mongoc_client_pool_push(s->pool, c->client);
}

mongoc_collection_t *djob_store_side(conn_t *c, djob_store_t *s, const char *suffix)
{
	char name[256];
	snprintf(name, sizeof name, "%s_%s", s->coll, suffix);
	return mongoc_client_get_collection(c->client, s->db, name);
}

/* ---- the server's mode ---- */

/* FerretDB says so in buildInfo (ferretdbVersion); its 1.x releases apply
 * findAndModify as a read and a whole-document write. A FerretDB whose
 * version is not 2 or later ("unknown" when built from the module, as the
 * dev stack's is) gets the lock protocol, which is correct everywhere.
 * Every other server is taken at MongoDB's word: a single-document write
 * is atomic. */
static store_mode_t mode_of(const bson_t *build_info, char *server, size_t size)
{
	const char *ferret = djob_doc_str(build_info, "ferretdbVersion");
	if (*ferret) {
		snprintf(server, size, "FerretDB %s", ferret);
		const char *v = ferret[0] == 'v' ? ferret + 1 : ferret;
		return atoi(v) >= 2 ? STORE_MODE_ATOMIC : STORE_MODE_LOCKS;
	}
	snprintf(server, size, "MongoDB API %s", djob_doc_str(build_info, "version"));
	return STORE_MODE_ATOMIC;
}

static pthread_mutex_t mode_mu = PTHREAD_MUTEX_INITIALIZER;

int djob_store_mode(djob_store_t *s, store_mode_t *mode, djob_error_t *err)
{
	*mode = (store_mode_t)atomic_load(&s->mode);
	if (*mode != STORE_MODE_UNKNOWN)
		return 0;
	pthread_mutex_lock(&mode_mu);
	int rc = 0;
	*mode = (store_mode_t)atomic_load(&s->mode);
	if (*mode == STORE_MODE_UNKNOWN) {
		mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
		bson_t *cmd = BCON_NEW("buildInfo", BCON_INT32(1));
		bson_t reply;
		bson_error_t e;
		if (mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &e)) {
			*mode = mode_of(&reply, s->server, sizeof s->server);
			atomic_store(&s->mode, *mode);
			djob_logf(s->conf, DJOB_LOG_INFO, "store", "%s: %s writes", s->server,
			          *mode == STORE_MODE_ATOMIC ? "atomic" : "lock-protocol");
		} else {
			rc = djob_store_mongo_error(err, &e, "buildInfo");
		}
		bson_destroy(&reply);
		bson_destroy(cmd);
		mongoc_client_pool_push(s->pool, client);
	}
	pthread_mutex_unlock(&mode_mu);
	return rc;
}

int djob_store_mode_name(djob_store_t *s, const char **mode_out, const char **server_out,
                         djob_error_t *err)
{
	store_mode_t mode;
	int rc = djob_store_mode(s, &mode, err);
	if (rc != 0)
		return rc;
	*mode_out = mode == STORE_MODE_ATOMIC ? "atomic" : "locks";
	if (server_out)
		*server_out = s->server;
	return 0;
}

/* ---- indexes ---- */

/* One createIndexes at a time: FerretDB drops connections when the first
 * submits of a busy API all create the indexes at once. */
static pthread_mutex_t indexes_mu = PTHREAD_MUTEX_INITIALIZER;

int djob_store_ensure_indexes(djob_store_t *s, djob_error_t *err)
{
	if (atomic_load(&s->indexes_done))
		return 0;
	store_mode_t mode;
	int rc = djob_store_mode(s, &mode, err);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&indexes_mu);
	if (atomic_load(&s->indexes_done)) {
		pthread_mutex_unlock(&indexes_mu);
		return 0;
	}
	/* List by status/type newest first; the scheduler's sweeps (due,
	 * expired leases), the outbox's and, in lock mode, the locks'. One
	 * createIndexes per index: FerretDB 1.24 panics on a multi-index
	 * createIndexes against a collection whose indexes differ from the
	 * list. */
	static const struct {
		const char *suffix, *name, *k1, *k2, *k3;
		int d1, d2, d3;
	} idx[] = {
		{NULL, "status_type_created", "status", "type", "createdAt", 1, 1, -1},
		{NULL, "status_runAt", "status", "runAt", NULL, 1, 1, 0},
		{NULL, "status_leaseUntil", "status", "leaseUntil", NULL, 1, 1, 0},
		{NULL, "created", "createdAt", NULL, NULL, -1, 0, 0},
		{NULL, "status_finishedAt", "status", "finishedAt", NULL, 1, 1, 0},
		{"outbox", "at", "at", NULL, NULL, 1, 0, 0},
		{"locks", "at", "at", NULL, NULL, 1, 0, 0},
	};
	mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
	mongoc_database_t *db = mongoc_client_get_database(client, s->db);
	bson_error_t e;
	for (size_t i = 0; rc == 0 && i < sizeof idx / sizeof idx[0]; i++) {
		if (idx[i].suffix && strcmp(idx[i].suffix, "locks") == 0 &&
		    mode != STORE_MODE_LOCKS)
			continue;
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
			rc = djob_store_mongo_error(err, &e, "createIndexes");
		bson_destroy(&cmd);
	}
	if (rc == 0)
		atomic_store(&s->indexes_done, 1);
	mongoc_database_destroy(db);
	mongoc_client_pool_push(s->pool, client);
	pthread_mutex_unlock(&indexes_mu);
	return rc;
}

/* ---- reads ---- */

int djob_store_find_one(djob_store_t *s, const char *id, bson_t **doc_out, djob_error_t *err)
{
	*doc_out = NULL;
	conn_t c = djob_store_conn(s);
	bson_t *f = BCON_NEW("_id", BCON_UTF8(id));
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, f, NULL, NULL);
	const bson_t *doc;
	bson_error_t e;
	int rc;
	if (mongoc_cursor_next(cur, &doc)) {
		*doc_out = bson_copy(doc);
		rc = 0;
	} else if (mongoc_cursor_error(cur, &e)) {
		rc = djob_store_mongo_error(err, &e, "find");
	} else {
		rc = djob_set_error(err, DJOB_ENOTFOUND, 0, "Job not found");
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(f);
	djob_store_conn_put(s, &c);
	return rc;
}

int djob_store_get(djob_store_t *s, const char *id, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	bson_t *doc;
	int rc = djob_store_find_one(s, id, &doc, err);
	if (rc != 0)
		return rc;
	*json_out = djob_doc_to_json(doc);
	bson_destroy(doc);
	return *json_out ? 0 : djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
}

int djob_store_ping(djob_store_t *s, djob_error_t *err)
{
	mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
	bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
	bson_error_t e;
	int rc = 0;
	if (!mongoc_client_command_simple(client, "admin", cmd, NULL, NULL, &e))
		rc = djob_store_mongo_error(err, &e, "ping");
	bson_destroy(cmd);
	mongoc_client_pool_push(s->pool, client);
	return rc;
}

/* ---- pages of candidates for the sweeps ---- */

int djob_store_find_docs(djob_store_t *s, const char *suffix, const bson_t *filter, int limit,
                         bson_t ***docs_out, size_t *n_out, djob_error_t *err)
{
	*docs_out = NULL;
	*n_out = 0;
	bson_t *opts = BCON_NEW("limit", BCON_INT64(limit));
	conn_t c = djob_store_conn(s);
	mongoc_collection_t *coll = suffix ? djob_store_side(&c, s, suffix) : c.coll;
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
		rc = djob_store_mongo_error(err, &e, "find");
	mongoc_cursor_destroy(cur);
	if (suffix)
		mongoc_collection_destroy(coll);
	djob_store_conn_put(s, &c);
	bson_destroy(opts);
	*docs_out = docs;
	*n_out = n;
	return rc;
}

void djob_store_free_docs(bson_t **docs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bson_destroy(docs[i]);
	free(docs);
}
