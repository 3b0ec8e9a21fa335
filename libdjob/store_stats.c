/*
 * Statistics of a collection for GET /stats: jobs by status and by type,
 * and recent throughput (jobs completed and failed per minute over the
 * last hour and per second over the last minute).
 *
 * Computed from the job documents themselves, not from counters kept
 * beside them: a counter updated after a transition would be a second
 * write, and a process that dies between the two (or a write of the
 * counter that fails) would leave it wrong for good. One read of the
 * collection, projected to {status, type, finishedAt}, gives exact figures
 * on every server, with any number of API replicas and workers: there is
 * nothing to keep in step between them.
 *
 * That read is not made per request, and no request waits for it. Each
 * store keeps the last figures (a snapshot) and reads again, on a thread of
 * its own, when a request finds them older than STATS_MAX_AGE_MS or ten
 * times as long as the last read took, whichever is longer: that request
 * and every other meanwhile get the snapshot at once, so on a large
 * collection the reads take at most a tenth of the server's time for one
 * API replica, and once jobs stop changing the figures are exact from the
 * next read on. Only a store's very first figures are waited for; djob-api
 * starts that read when it starts (djob_store_stats_prefetch). Each answer
 * carries `asOf`, when it was read.
 */
#include "store_private.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_MAX_AGE_MS 1000
#define STATS_SLOWDOWN 10
#define STATS_BUCKETS 60
#define STATS_STATES (DJOB_STATE_CANCELLED + 1)
#define STATS_MAX_TYPES 256 /* distinct types counted one by one; more are "other" */

struct djob_store_stats_s {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	djob_store_t *store;
	bool busy;        /* a read is under way */
	bool joinable;    /* `thread` was started and not joined yet */
	pthread_t thread; /* the last read */
	char *snapshot;   /* the last figures as JSON, or NULL */
	int64_t at;       /* monotonic ms when they were read */
	int64_t cost_ms;  /* how long that read took */
	int rc;           /* the last read's failure while there is no snapshot */
	djob_error_t err;
};

static pthread_mutex_t create_mu = PTHREAD_MUTEX_INITIALIZER;

/* Waits for a read under way: it uses the store's connections, so this
 * runs before they go (djob_store_free). */
void djob_store_stats_free(djob_store_stats_t *st)
{
	if (!st)
		return;
	if (st->joinable)
		pthread_join(st->thread, NULL);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	free(st->snapshot);
	free(st);
}

typedef struct {
	char name[64];
	long long by_state[STATS_STATES];
	long long total;
} type_count_t;

typedef struct {
	long long by_state[STATS_STATES];
	long long total;
	type_count_t *types;
	size_t ntypes;
	int64_t minute0, second0; /* start of the first bucket (wall-clock ms) */
	long long per_minute[2][STATS_BUCKETS], per_second[2][STATS_BUCKETS];
} figures_t;

static type_count_t *type_slot(figures_t *f, const char *name)
{
	size_t i;
	for (i = 0; i < f->ntypes; i++)
		if (strcmp(f->types[i].name, name) == 0)
			return &f->types[i];
	if (f->ntypes == STATS_MAX_TYPES || strlen(name) >= sizeof f->types[0].name) {
		name = "other";
		for (i = 0; i < f->ntypes; i++)
			if (strcmp(f->types[i].name, name) == 0)
				return &f->types[i];
		if (f->ntypes == STATS_MAX_TYPES)
			return &f->types[f->ntypes - 1]; /* the last one takes the rest */
	}
	type_count_t *t = &f->types[f->ntypes++];
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	return t;
}

static void count_doc(figures_t *f, const bson_t *doc)
{
	djob_state_t st = djob_doc_state(doc);
	const char *type = djob_doc_str(doc, "type");
	type_count_t *t = type_slot(f, *type ? type : "unknown");
	f->total++;
	t->total++;
	if (st != DJOB_STATE_INVALID && st < STATS_STATES) {
		f->by_state[st]++;
		t->by_state[st]++;
	}
	int k = st == DJOB_STATE_COMPLETED ? 0 : st == DJOB_STATE_FAILED ? 1 : -1;
	int64_t done = k >= 0 ? djob_doc_date(doc, "finishedAt") : 0;
	if (done <= 0)
		return;
	if (done >= f->minute0 && (done - f->minute0) / 60000 < STATS_BUCKETS)
		f->per_minute[k][(done - f->minute0) / 60000]++;
	if (done >= f->second0 && (done - f->second0) / 1000 < STATS_BUCKETS)
		f->per_second[k][(done - f->second0) / 1000]++;
}

static void add_states(cJSON *o, const long long *by_state)
{
	for (int i = 0; i < STATS_STATES; i++)
		cJSON_AddNumberToObject(o, djob_state_name((djob_state_t)i), (double)by_state[i]);
}

static void add_series(cJSON *o, const char *name, int64_t start, int step_s,
                       long long (*counts)[STATS_BUCKETS])
{
	char iso[32];
	cJSON *s = cJSON_AddObjectToObject(o, name);
	djob_format_iso(start, iso);
	cJSON_AddStringToObject(s, "start", iso);
	cJSON_AddNumberToObject(s, "intervalSeconds", step_s);
	static const char *const keys[2] = {"completed", "failed"};
	for (int k = 0; k < 2; k++) {
		cJSON *a = cJSON_AddArrayToObject(s, keys[k]);
		for (int i = 0; i < STATS_BUCKETS; i++)
			cJSON_AddItemToArray(a, cJSON_CreateNumber((double)counts[k][i]));
	}
}

static char *figures_json(figures_t *f, int64_t now)
{
	char iso[32];
	cJSON *o = cJSON_CreateObject();
	djob_format_iso(now, iso);
	cJSON_AddStringToObject(o, "asOf", iso);
	cJSON_AddNumberToObject(o, "total", (double)f->total);
	add_states(cJSON_AddObjectToObject(o, "byStatus"), f->by_state);
	cJSON *types = cJSON_AddObjectToObject(o, "byType");
	for (size_t i = 0; i < f->ntypes; i++) {
		cJSON *t = cJSON_AddObjectToObject(types, f->types[i].name);
		cJSON_AddNumberToObject(t, "total", (double)f->types[i].total);
		add_states(t, f->types[i].by_state);
	}
	cJSON *tp = cJSON_AddObjectToObject(o, "throughput");
	add_series(tp, "perMinute", f->minute0, 60, f->per_minute);
	add_series(tp, "perSecond", f->second0, 1, f->per_second);
	char *out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out;
}

/* One read of the collection into figures, as JSON in *json_out. */
static int read_figures(djob_store_t *s, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	figures_t *f = calloc(1, sizeof *f);
	if (f)
		f->types = calloc(STATS_MAX_TYPES, sizeof *f->types);
	if (!f || !f->types) {
		if (f)
			free(f->types);
		free(f);
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	int64_t now = djob_now_ms();
	/* Whole buckets, the last one the current (partial) minute or second. */
	f->minute0 = (now / 60000 - (STATS_BUCKETS - 1)) * 60000;
	f->second0 = (now / 1000 - (STATS_BUCKETS - 1)) * 1000;
	bson_t filter = BSON_INITIALIZER;
	bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(0), "status", BCON_INT32(1),
	                        "type", BCON_INT32(1), "finishedAt", BCON_INT32(1), "}",
	                        "batchSize", BCON_INT32(10000));
	conn_t c = djob_store_conn(s);
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, &filter, opts, NULL);
	const bson_t *doc;
	while (mongoc_cursor_next(cur, &doc))
		count_doc(f, doc);
	bson_error_t e;
	int rc = 0;
	if (mongoc_cursor_error(cur, &e))
		rc = djob_store_mongo_error(err, &e, "find");
	mongoc_cursor_destroy(cur);
	djob_store_conn_put(s, &c);
	bson_destroy(opts);
	bson_destroy(&filter);
	if (rc == 0 && !(*json_out = figures_json(f, now)))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	free(f->types);
	free(f);
	return rc;
}

static void *reader(void *arg)
{
	djob_store_stats_t *st = arg;
	char *json = NULL;
	djob_error_t e;
	int64_t t0 = djob_mono_ms();
	int rc = read_figures(st->store, &json, &e);
	pthread_mutex_lock(&st->mu);
	if (rc == 0) {
		free(st->snapshot);
		st->snapshot = json;
		st->at = djob_mono_ms();
		st->cost_ms = st->at - t0;
	} else if (!st->snapshot) {
		st->rc = rc;
		st->err = e;
	} else { /* keep the last figures; asOf shows their age */
		djob_logf(st->store->conf, DJOB_LOG_WARNING, "store", "Statistics not read again: %s",
		          e.message);
		st->at = djob_mono_ms(); /* and try again after the same wait */
	}
	st->busy = false;
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

/* The store's figures, created at the first call. */
static djob_store_stats_t *stats_of(djob_store_t *s)
{
	pthread_mutex_lock(&create_mu);
	if (!s->stats && (s->stats = calloc(1, sizeof *s->stats))) {
		pthread_mutex_init(&s->stats->mu, NULL);
		pthread_cond_init(&s->stats->cv, NULL);
		s->stats->store = s;
	}
	djob_store_stats_t *st = s->stats;
	pthread_mutex_unlock(&create_mu);
	return st;
}

/* Start a read unless one is under way or the snapshot is fresh enough.
 * Called with st->mu held. */
static void refresh(djob_store_stats_t *st)
{
	int64_t max_age = st->cost_ms * STATS_SLOWDOWN;
	if (max_age < STATS_MAX_AGE_MS)
		max_age = STATS_MAX_AGE_MS;
	if (st->busy || (st->snapshot && djob_mono_ms() - st->at < max_age))
		return;
	if (st->joinable) /* finished: it cleared busy */
		pthread_join(st->thread, NULL);
	st->joinable = false;
	st->busy = true;
	st->rc = 0;
	if (pthread_create(&st->thread, NULL, reader, st) == 0) {
		st->joinable = true;
	} else {
		st->busy = false;
		if (!st->snapshot)
			st->rc = djob_set_error(&st->err, DJOB_ENOMEM, 0,
			                        "Could not start a thread to read the statistics");
	}
}

void djob_store_stats_prefetch(djob_store_t *s)
{
	djob_store_stats_t *st = stats_of(s);
	if (!st)
		return;
	pthread_mutex_lock(&st->mu);
	refresh(st);
	pthread_mutex_unlock(&st->mu);
}

int djob_store_stats(djob_store_t *s, char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	djob_store_stats_t *st = stats_of(s);
	if (!st)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	pthread_mutex_lock(&st->mu);
	refresh(st);
	while (!st->snapshot && st->busy) /* the store's first figures */
		pthread_cond_wait(&st->cv, &st->mu);
	int rc = 0;
	if (st->snapshot) {
		if (!(*json_out = djob_strdup(st->snapshot)))
			rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	} else {
		rc = st->rc;
		if (err)
			*err = st->err;
	}
	pthread_mutex_unlock(&st->mu);
	return rc;
}
