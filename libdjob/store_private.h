/*
 * What the store's files share (store.c, store_codec.c, store_submit.c,
 * store_transition.c, store_list.c, scheduler_sweep.c). Not installed.
 *
 * Next to the jobs collection <c> the store keeps:
 *   <c>_outbox       jobs queued but not yet confirmed published, _id = job id
 *   <c>_idempotency  idempotency key -> job id
 *   <c>_locks        only in lock mode (below): one document per transition
 *                    in flight, _id "<job id>:<seq>"
 */
#ifndef DJOB_STORE_PRIVATE_H
#define DJOB_STORE_PRIVATE_H

#include "store.h"

#include <mongoc/mongoc.h>

/* How a job's writers are kept from both winning.
 *
 * ATOMIC (MongoDB, mongo-java-server): a findAndModify whose filter holds
 * the expected state either applies or matches nothing, so every
 * transition is that one write, with no read before it.
 *
 * LOCKS (FerretDB 1.x, whose findAndModify is a read and a whole-document
 * overwrite, FerretDB issue 3040): a writer reads the job's hidden `seq`
 * (or knows it), inserts the lock "<id>:<seq+1>" (a unique _id: one winner
 * on every server) and writes the job by _id alone (the only filter
 * FerretDB's SQLite backend serves from an index). Locks are never reused
 * while a write planned on an older seq could still land, by time bounds:
 * a writer uses what it knows of a job only while that is under
 * LOCK_KNOWN_MS old, sends its write within LOCK_SEND_MS of taking the lock,
 * gives the server LOCK_WRITE_MS (maxTimeMS) to apply it, and the sweep
 * (or the next writer of that job, finding it still there) deletes a lock
 * only once it is LOCK_TTL_MS old, more than the sum plus
 * a margin for clocks. So `<c>_locks` holds about LOCK_TTL_MS of
 * transitions, and a write lands only on the seq it was planned for. */
typedef enum {
	STORE_MODE_UNKNOWN,
	STORE_MODE_ATOMIC,
	STORE_MODE_LOCKS
} store_mode_t;

#define LOCK_KNOWN_MS 15000
#define LOCK_SEND_MS 2000
#define LOCK_WRITE_MS 5000
#define LOCK_TTL_MS 30000

/* MongoDB commands the store sends, counted per process (metrics, bench). */
typedef enum {
	STORE_CMD_FIND,
	STORE_CMD_FIND_AND_MODIFY,
	STORE_CMD_INSERT,
	STORE_CMD_UPDATE,
	STORE_CMD_DELETE,
	STORE_CMD_OTHER,
	STORE_CMD_COUNT
} store_cmd_t;

/* The last figures of djob_store_stats (store_stats.c). */
typedef struct djob_store_stats_s djob_store_stats_t;
void djob_store_stats_free(djob_store_stats_t *stats);

struct djob_store_s {
	djob_config_t *conf;
	mongoc_client_pool_t *pool;
	char *db;
	char *coll;
	atomic_int indexes_done;
	atomic_int mode;               /* store_mode_t */
	atomic_llong locks_expired_ms; /* when the sweep last deleted old locks */
	char server[96];               /* what the server said it is, once the mode is known */
	djob_store_stats_t *stats;     /* created at the first djob_store_stats */
};

typedef struct {
	mongoc_client_t *client;
	mongoc_collection_t *coll;
} conn_t;

conn_t djob_store_conn(djob_store_t *s);
void djob_store_conn_put(djob_store_t *s, conn_t *c);
/* <c>_<suffix> on c's client. Ownership: mongoc_collection_destroy. */
mongoc_collection_t *djob_store_side(conn_t *c, djob_store_t *s, const char *suffix);

/* Copies of up to `limit` documents of <c> (suffix NULL) or <c>_<suffix>
 * matching filter: the candidates of one sweep step. Ownership: free
 * *docs_out with djob_store_free_docs. */
int djob_store_find_docs(djob_store_t *s, const char *suffix, const bson_t *filter, int limit,
                         bson_t ***docs_out, size_t *n_out, djob_error_t *err);
void djob_store_free_docs(bson_t **docs, size_t n);

/* A libmongoc error as djob's: 11000 is ECONFLICT, a document libmongoc
 * refused to send EINVAL, anything else a retriable EMONGO. */
int djob_store_mongo_error(djob_error_t *err, const bson_error_t *e, const char *what);

/* The store's mode, asking the server once (buildInfo) unless the
 * configuration forces one. */
int djob_store_mode(djob_store_t *s, store_mode_t *mode, djob_error_t *err);

/* Find one job by _id. *doc_out (bson_destroy) or DJOB_ENOTFOUND. */
int djob_store_find_one(djob_store_t *s, const char *id, bson_t **doc_out, djob_error_t *err);

/* ---- the codec (store_codec.c): job documents between BSON and JSON ---- */

/* The wire form of a stored document: dates as ISO-8601 strings, the
 * internal fields (seq) left out. Ownership: free(). */
char *djob_doc_to_json(const bson_t *doc);
cJSON *djob_doc_to_cjson(const bson_t *doc);

int64_t djob_doc_int(const bson_t *doc, const char *key, int64_t dflt);
const char *djob_doc_str(const bson_t *doc, const char *key); /* "" when absent */
int64_t djob_doc_date(const bson_t *doc, const char *key);    /* 0 when absent */
djob_state_t djob_doc_state(const bson_t *doc);

/* ---- the outbox (store_submit.c) ---- */

/* Record that jobs await publishing (an entry already there is fine). */
int djob_outbox_add(djob_store_t *s, const char *const *ids, size_t n, int64_t now,
                    djob_error_t *err);
/* The jobs are published: drop their entries. */
int djob_outbox_done(djob_store_t *s, const char *const *ids, size_t n, djob_error_t *err);

/* ---- transitions (store_transition.c) ---- */

/* One conditional write of a job: `filter` is the state the plan expects
 * beyond _id (what it relied on), the rest the change. */
typedef struct {
	bson_t filter, set, unset, push, inc;
} change_t;

/* Check the precondition on doc and describe the change in ch; 0 to go
 * on, or a negative code with err set to refuse. doc is the job as read,
 * as the caller knows it, or NULL (nothing known: the plan expects in
 * ch->filter what it presumes). */
typedef int (*plan_fn)(const bson_t *doc, void *ctx, change_t *ch, djob_error_t *err);

/* What a caller knows of a job without reading it: at seq `seq` (-1: not
 * known) and wall-clock time `at_ms` its fields were those of `doc` (the
 * ones the plans look at). */
typedef struct {
	const bson_t *doc;
	int64_t seq;
	int64_t at_ms;
} known_t;

/* Change one job by `plan` (see store_mode_t for how). `known` may be
 * NULL. *doc_out (bson_destroy) gets the job as written: its `fields`
 * (a projection), or all of it when fields is NULL. */
int djob_store_transition(djob_store_t *s, const char *id, const known_t *known, plan_fn plan,
                          void *ctx, const bson_t *fields, bson_t **doc_out, djob_error_t *err);

/* Plan helpers: each checks doc (when there is one) and expects the same
 * in ch->filter, so a precondition is written once. */

/* The job is in a state `move` leaves from; ch sets the state it leads to. */
int djob_expect_move(const bson_t *doc, djob_move_t move, change_t *ch, djob_error_t *err);
/* (workerId, attempts) hold the lease. */
int djob_expect_lease(const bson_t *doc, const char *worker_id, int attempts, change_t *ch,
                      djob_error_t *err);
/* doc's date `key` is before `t` (or at it, when `inclusive`). */
int djob_expect_before(const bson_t *doc, const char *key, int64_t t, bool inclusive, change_t *ch,
                       djob_error_t *err);

/* The history entry of an attempt whose lease ran out, whoever notices it
 * first: the scheduler's sweep or a claim that takes the job over. */
void djob_push_lease_expired(change_t *ch, const bson_t *doc, int64_t now);
/* Back to queued: leaseUntil dropped. */
void djob_set_requeued(change_t *ch, int64_t now);

/* ---- lock mode's upkeep (store_transition.c) ---- */

/* Lock mode: delete the locks older than LOCK_TTL_MS; their number (0 in
 * atomic mode), or a negative code. */
int djob_store_expire_locks(djob_store_t *s, int64_t now, djob_error_t *err);

/* ---- listing (store_list.c) ---- */

/* Check GET /jobs's parameters (limit 0: the default, 100; status, type and
 * after may be NULL) and build the find filter into *f. Returns 0 with *f
 * initialized and *limit set, or DJOB_EINVAL with err set and *f untouched.
 * Ownership: bson_destroy(f) after a 0. No server is needed (tests/fuzz). */
int djob_store_list_filter(bson_t *f, int *limit, const char *status, const char *type,
                           const char *after, djob_error_t *err);

#endif
