/*
 * The job store: every read and conditional write of job documents in
 * MongoDB (libmongoc). Not installed.
 *
 * Thread safety: a store may be used from any number of threads (it pops a
 * connection from a mongoc_client_pool_t per call).
 */
#ifndef DJOB_STORE_H
#define DJOB_STORE_H

#include "djob_private.h"

#include <bson/bson.h>

typedef struct djob_store_s djob_store_t;

/* A job about to be inserted. */
typedef struct {
	char id[37];
	const char *type;
	const bson_t *payload;
	int max_attempts;
	int64_t created_ms;
	int64_t run_at_ms;           /* 0: none */
	djob_state_t state;          /* queued, or scheduled when run_at is ahead */
	const char *idempotency_key; /* or NULL */
	const char *message;         /* its Kafka message, or NULL: rendered when sent */
	size_t message_len;
	const char *schedule; /* the schedule that submitted it, or NULL */
	int64_t due_at_ms;    /* ... and the due time it ran for */
} djob_new_job_t;

/* A parsed PATCH body (request.h). */
typedef struct djob_patch_s djob_patch_t;

int djob_store_new(djob_store_t **out, const djob_config_t *conf, djob_error_t *err);
void djob_store_free(djob_store_t *store);

/* Create the indexes the queries need (idempotent; done once per store). */
int djob_store_ensure_indexes(djob_store_t *store, djob_error_t *err);

/* The job as the JSON document GET returns and Kafka carries.
 * Ownership: the caller frees the result with free(). */
char *djob_new_job_to_json(const djob_new_job_t *job);

/* Insert jobs (published: false) in one ordered bulk write. On failure
 * nothing is left inserted (what was inserted is deleted again). */
int djob_store_insert(djob_store_t *store, const djob_new_job_t *jobs, size_t n, djob_error_t *err);

/* Look up the job that an idempotency key created: 0 and *id_out (free())
 * when found, DJOB_ENOTFOUND otherwise. */
int djob_store_find_idempotent(djob_store_t *store, const char *key, char **id_out,
                               djob_error_t *err);

/* Mark jobs published (one bulk round trip). */
int djob_store_mark_published(djob_store_t *store, const char *const *ids, size_t n,
                              djob_error_t *err);

/* Delete unpublished jobs and their idempotency keys (a submission whose
 * publish failed). */
int djob_store_delete_unpublished(djob_store_t *store, const djob_new_job_t *jobs, size_t n,
                                  djob_error_t *err);

/* The job document as JSON; DJOB_ENOTFOUND. Ownership: free() *json_out. */
int djob_store_get(djob_store_t *store, const char *id, char **json_out, djob_error_t *err);

/* What a worker's writes know of its job, so that in lock mode they need
 * not read it first: its seq (-1: not known) and when (wall-clock ms) the
 * job was at it. Each successful write updates it. Atomic mode needs none
 * of it: every write is one conditional findAndModify. */
typedef struct {
	int64_t seq;
	int64_t at_ms;
} djob_store_seq_t;

/* Claim a queued job, or a processing job whose lease expired. With seq
 * 0 the caller holds the job as it was submitted (the message of a new
 * job, at seq->at_ms = its createdAt). *attempts and *max_attempts are
 * set on return. */
int djob_store_claim(djob_store_t *store, const char *id, const char *worker_id, long lease_ms,
                     int *attempts, int *max_attempts, djob_store_seq_t *seq, djob_error_t *err);

/* Extend a lease, fenced on (worker_id, attempts). */
int djob_store_extend(djob_store_t *store, const char *id, const char *worker_id, int attempts,
                      int max_attempts, long lease_ms, djob_store_seq_t *seq, djob_error_t *err);

/* Is the job still processing under (worker_id, attempts)? 0 when it is,
 * DJOB_ECONFLICT when not (cancelled, finished, taken over); one read. */
int djob_store_held(djob_store_t *store, const char *id, const char *worker_id, int attempts,
                    djob_error_t *err);

/* Write a handler's progress (JSON {"value":n,"message":"…"}) as the job's
 * progress {value, message, updatedAt} and extend the lease, fenced on
 * (worker_id, attempts): one conditional write. */
int djob_store_progress(djob_store_t *store, const char *id, const char *worker_id, int attempts,
                        int max_attempts, long lease_ms, const char *progress_json,
                        djob_store_seq_t *seq, djob_error_t *err);

/* Record a handler's outcome, fenced on (worker_id, attempts). RETRY with
 * attempts left schedules the job (runAt = now + backoff); otherwise it is
 * failed. */
int djob_store_finish(djob_store_t *store, const char *id, const char *worker_id, int attempts,
                      int max_attempts, djob_job_status_t outcome, const char *result_json,
                      const char *error, djob_store_seq_t *seq, djob_error_t *err);

/* Apply a PATCH body (parsed and checked by djob_patch_parse).
 * Ownership: free() *json_out. */
int djob_store_patch(djob_store_t *store, const char *id, const djob_patch_t *body, char **json_out,
                     djob_error_t *err);

/* Cancel (from queued, scheduled or processing). Ownership: free() *json_out. */
int djob_store_cancel(djob_store_t *store, const char *id, char **json_out, djob_error_t *err);

/* Requeue a failed or cancelled job (attempts reset, published false).
 * Ownership: free() *json_out. */
int djob_store_retry(djob_store_t *store, const char *id, char **json_out, djob_error_t *err);

/* One page of jobs, newest first. Ownership: free() *json_out. */
int djob_store_list(djob_store_t *store, const char *status, const char *type, int limit,
                    const char *after, char **json_out, djob_error_t *err);

/* Jobs by status and type and recent throughput, as GET /stats answers
 * them, from the last snapshot (store_stats.c): only the store's first
 * figures are waited for. Ownership: free() *json_out. */
int djob_store_stats(djob_store_t *store, char **json_out, djob_error_t *err);

/* Start reading the figures now, without waiting (djob-api at start). */
void djob_store_stats_prefetch(djob_store_t *store);

/* 0 when the server answers a ping. */
int djob_store_ping(djob_store_t *store, djob_error_t *err);

/* How this store keeps a job's writers from both winning: "atomic" (one
 * conditional findAndModify per transition) or "locks" (the lock protocol,
 * for servers without document-level atomicity), from the configuration's
 * store.mode or, for auto, from what the server reports (buildInfo).
 * *server_out (may be NULL) names the server. Both strings are static or
 * live as long as the store. */
int djob_store_mode_name(djob_store_t *store, const char **mode_out, const char **server_out,
                         djob_error_t *err);

/* The MongoDB commands this process's stores have sent, by command name
 * (find, findAndModify, insert, update, delete, other): up to `max`
 * pairs; their number. The names are static. */
size_t djob_store_commands(const char **names, unsigned long long *counts, size_t max);

/* The backoff before retry number `attempts` (from 1): exponential from
 * 1 s, capped at 5 min, with up to 20 % jitter. */
int64_t djob_retry_backoff_ms(int attempts);

/* ---- the scheduler's sweep ---- */

/* Publish one job (a JSON document); 0 when Kafka acknowledged it. */
typedef int (*djob_store_publish_fn)(void *opaque, const char *id, const char *type,
                                     const char *doc_json, djob_error_t *err);

typedef struct {
	int due;           /* scheduled jobs whose runAt came: requeued and published */
	int expired;       /* processing jobs whose lease ran out: requeued */
	int exhausted;     /* ... of which had no attempt left: failed */
	int unpublished;   /* queued jobs never confirmed published: published */
	int lost_races;    /* another sweeper changed the job first */
	int locks_expired; /* lock mode: locks old enough to be deleted */
} djob_sweep_stats_t;

/* One sweep: every step is a conditional write, so several sweepers may
 * run at once. `grace_ms` is how long a queued job may stay unpublished
 * before it is published again. At most `limit` jobs per step. */
int djob_store_sweep(djob_store_t *store, int64_t now, int64_t grace_ms, int limit,
                     djob_store_publish_fn publish, void *opaque, djob_sweep_stats_t *stats,
                     djob_error_t *err);

/* ---- periodic jobs (store_schedule.c) ---- */

typedef struct {
	int submitted;  /* due times whose job this sweep inserted */
	int misfired;   /* due times skipped (only the latest missed one runs) */
	int lost_races; /* due times another replica submitted first */
} djob_schedule_stats_t;

/* 0, or DJOB_EINVAL: a name is 1-100 of [A-Za-z0-9._-]. */
int djob_schedule_name_check(const char *name, djob_error_t *err);
/* POST /schedules: check the body and insert (ECONFLICT: the name exists).
 * Ownership: free() *json_out. */
int djob_store_schedule_create(djob_store_t *store, const char *json, size_t len, int64_t now,
                               char **json_out, djob_error_t *err);
int djob_store_schedule_list(djob_store_t *store, char **json_out, djob_error_t *err);
int djob_store_schedule_get(djob_store_t *store, const char *name, char **json_out,
                            djob_error_t *err);
int djob_store_schedule_delete(djob_store_t *store, const char *name, djob_error_t *err);
/* Submit the job of every schedule due at `now` (at most `limit`), once
 * per due time across replicas. */
int djob_store_schedule_sweep(djob_store_t *store, int64_t now, int limit,
                              djob_store_publish_fn publish, void *opaque,
                              djob_schedule_stats_t *stats, djob_error_t *err);

/* ---- retention (store_retention.c) ---- */

/* The finished statuses retention knows, in this order: completed,
 * failed, cancelled. */
#define DJOB_RETENTION_N 3
const char *djob_retention_status(int i);

/* Delete jobs of each finished status whose finishedAt is older than
 * now - ages_ms[i] (0: that status is kept), at most `limit` per status;
 * removed[i] gets how many went. Unfinished jobs are never touched. */
int djob_store_retention(djob_store_t *store, int64_t now, const int64_t ages_ms[DJOB_RETENTION_N],
                         int limit, int removed[DJOB_RETENTION_N], djob_error_t *err);

#endif
