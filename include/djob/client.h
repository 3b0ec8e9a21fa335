/*
 * djob: the client, which submits, queries and updates jobs.
 *
 * Thread safety: a client may be shared by any number of threads (it holds
 * one librdkafka producer and a pool of MongoDB connections).
 *
 * JSON crosses this API as text. Every function that hands back JSON
 * allocates it; the caller frees it with djob_free.
 */
#ifndef DJOB_CLIENT_H
#define DJOB_CLIENT_H

#include "common.h"
#include "config.h"
#include "error.h"

DJOB_BEGIN_DECLS

#define DJOB_SUBMIT_OPTS_VERSION 1

/* Options of one submission. Grows only at the end. */
typedef struct {
	int version;                 /* DJOB_SUBMIT_OPTS_VERSION */
	const char *run_at;          /* ISO-8601 UTC time to start at, or NULL for now */
	int max_attempts;            /* 0: the configured max.attempts */
	const char *idempotency_key; /* a repeat returns the first job, or NULL */
} djob_submit_opts_t;

#define DJOB_SUBMIT_OPTS_INIT                                                                      \
	{                                                                                          \
		DJOB_SUBMIT_OPTS_VERSION, NULL, 0, NULL                                            \
	}

/* Connect a client (lazily: servers are reached at first use; the store's
 * indexes are created then, idempotently).
 * Ownership: conf is copied; the caller frees *out with djob_client_free. */
DJOB_EXTERN int djob_client_new(djob_client_t **out, const djob_config_t *conf, djob_error_t *err);

/* Flush what is in flight and free. NULL is a no-op. */
DJOB_EXTERN void djob_client_free(djob_client_t *client);

/* Submit one job: insert it in MongoDB, publish it to Kafka and return once
 * Kafka has acknowledged. Fails with DJOB_EINVAL for a bad type or payload
 * (not a JSON object, keys starting with '$' or holding '.', or a document
 * MongoDB cannot store). Submissions made by other threads meanwhile are
 * written with this one (see djob_client_stats); each still succeeds or
 * fails on its own. Ownership: *id_out is allocated, free with djob_free; inputs are copied. */
DJOB_EXTERN int djob_client_submit(char **id_out, djob_client_t *client, const char *type,
                                   const char *payload_json, size_t payload_len,
                                   const djob_submit_opts_t *opts, djob_error_t *err);

/* Submit a body as POST /jobs takes it: one job object or an array of them.
 * `idempotency_key` (or NULL) is the Idempotency-Key header and applies to a
 * single job. *response_out is {"jobId":...} or {"jobIds":[...]};
 * *created is 1 when jobs were created, 0 when an idempotent repeat returned
 * an existing one. A bad element rejects the whole batch and stores nothing.
 * Ownership: *response_out is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_submit_json(char **response_out, int *created, djob_client_t *client,
                                        const char *body, size_t body_len,
                                        const char *idempotency_key, djob_error_t *err);

/* The job document as JSON. DJOB_ENOTFOUND for an unknown id, DJOB_EINVAL
 * for a malformed one. Ownership: *json_out is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_get(char **json_out, djob_client_t *client, const char *id,
                                djob_error_t *err);

/* Apply a PATCH body: {"status":..., "result":{...}, "error":"...",
 * "workerId":..., "attempts":...}. The change must be a legal transition
 * (DJOB_ECONFLICT otherwise); with workerId and attempts it is fenced on the
 * lease (DJOB_ECONFLICT when stale). A fenced completed or failed records
 * the outcome as a worker's store sink would (history entry), and with
 * "retry":true a failed one is scheduled again while attempts remain. *json_out (may be NULL)
 * receives the updated job. Ownership: *json_out is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_update(char **json_out, djob_client_t *client, const char *id,
                                   const char *body, size_t body_len, djob_error_t *err);

/* List jobs, newest first, filtered by status and type (either may be NULL),
 * at most `limit` (1..1000, 0 means 100), continuing after the cursor
 * `after` (NULL for the first page). *json_out is {"jobs":[...],"next":...}
 * where next is null on the last page.
 * Ownership: *json_out is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_list(char **json_out, djob_client_t *client, const char *status,
                                 const char *type, int limit, const char *after, djob_error_t *err);

/* Cancel a job that has not finished (DJOB_ECONFLICT otherwise).
 * Ownership: *json_out (may be NULL) is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_cancel(char **json_out, djob_client_t *client, const char *id,
                                   djob_error_t *err);

/* Periodic jobs. Create a schedule from a JSON body {"name", "cron" (5
 * fields), "timezone" (optional: "UTC" or a fixed offset "+05:30"), "job":
 * {"type", "payload", "maxAttempts"}}: DJOB_EINVAL names the bad field,
 * DJOB_ECONFLICT when the name exists. The scheduler submits one job per
 * due time (with "schedule" and "dueAt"); after missed due times only the
 * latest runs. *json_out gets the schedule (with nextRunAt).
 * Ownership: the body is read during the call; *json_out (may be NULL) is
 * allocated, free with djob_free. */
DJOB_EXTERN int djob_client_schedule_create(char **json_out, djob_client_t *client,
                                            const char *json, size_t len, djob_error_t *err);

/* {"schedules":[...]} by name. Ownership: free *json_out with djob_free. */
DJOB_EXTERN int djob_client_schedule_list(char **json_out, djob_client_t *client,
                                          djob_error_t *err);

/* One schedule by name; DJOB_ENOTFOUND. Ownership: free *json_out with
 * djob_free. */
DJOB_EXTERN int djob_client_schedule_get(char **json_out, djob_client_t *client, const char *name,
                                         djob_error_t *err);

/* Delete a schedule (its submitted jobs stay); DJOB_ENOTFOUND. */
DJOB_EXTERN int djob_client_schedule_delete(djob_client_t *client, const char *name,
                                            djob_error_t *err);

/* Requeue a failed, cancelled or quarantined job and publish it again.
 * Ownership: *json_out (may be NULL) is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_retry(char **json_out, djob_client_t *client, const char *id,
                                  djob_error_t *err);

/* Wait until the job is terminal or quarantined, or timeout_ms passes
 * (DJOB_ETIMEOUT).
 * Ownership: *json_out (may be NULL) gets the final document, free with
 * djob_free. */
DJOB_EXTERN int djob_client_wait(char **json_out, djob_client_t *client, const char *id,
                                 int timeout_ms, djob_error_t *err);

/* Reachability of the servers: 0 when both answer. A down server takes
 * seconds to say so (up to 2 s for Kafka, the MongoDB server selection
 * timeout for MongoDB). */
DJOB_EXTERN int djob_client_ping(djob_client_t *client, int *kafka_ok, int *mongo_ok,
                                 djob_error_t *err);

/* djob_client_ping, cached: answers at once with the last result and, when
 * that is older than max_age_ms, starts one ping in a background thread
 * (only the very first call waits for its ping). The return value and *err
 * are those of the last ping (DJOB_EKAFKA or DJOB_EMONGO when a server is
 * down). Ownership: nothing is allocated. */
DJOB_EXTERN int djob_client_health(djob_client_t *client, int max_age_ms, int *kafka_ok,
                                   int *mongo_ok, djob_error_t *err);

/* Counters of the submissions through this client that passed validation,
 * as JSON:
 * {"submissions":12,"submittedJobs":30,"submitWrites":4}. Submissions made
 * at the same time are written together (config submit.writers), so
 * submitWrites, the number of times jobs were written to the servers, may
 * be lower than submissions. Ownership: *json_out is allocated, free with
 * djob_free. */
DJOB_EXTERN int djob_client_stats(char **json_out, djob_client_t *client, djob_error_t *err);

/* The jobs of the collection, as GET /stats answers: {"asOf":...,
 * "total":n, "byStatus":{"queued":n,...}, "byType":{"<type>":{"total":n,
 * "queued":n,...}}, "throughput":{"perMinute":{"start":...,
 * "intervalSeconds":60,"completed":[60 counts],"failed":[...]},
 * "perSecond":{... 1 ...}}}: the last bucket of each series is the current
 * minute or second. Answered at once from the client's last reading of
 * the jobs themselves, which a thread of its own takes again when a call
 * finds it more than a second old (or ten times as old as a reading takes,
 * on a large collection); only the client's first call waits for one. So
 * exact once jobs stop changing; asOf says when they were read.
 * (djob_client_stats, above, counts this client's own submissions.)
 * Ownership: *json_out is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_job_stats(char **json_out, djob_client_t *client, djob_error_t *err);

/* The workers of the consumer group (config group.id) as Kafka sees them,
 * as GET /workers answers: {"asOf":..., "group":..., "state":"Stable"|
 * "Empty"|"PreparingRebalance"|..., "workers":[{"id":<its client.id, the
 * worker id>, "host":..., "partitions":[{"topic":..., "partition":n,
 * "committed":n, "end":n, "lag":n}], "lag":n}], "unassigned":[<partitions
 * of the job topics no worker holds>], "lag":{"total":n,
 * "byTopic":{"<topic>":n}}}. committed is -1 where the group has committed
 * nothing, and lag then counts from the partition's first offset. Asks
 * Kafka each time and waits at most about 4 s (DJOB_EKAFKA when it does
 * not answer). Ownership: *json_out is allocated, free with djob_free. */
DJOB_EXTERN int djob_client_workers(char **json_out, djob_client_t *client, djob_error_t *err);

DJOB_END_DECLS

#endif
