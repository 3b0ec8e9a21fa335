/*
 * djob: jobs, their states and handlers.
 *
 * A job's JSON form (what GET returns and Kafka carries):
 *   {"_id":"<uuid>","type":"compute","status":"queued","payload":{...},
 *    "result":{...},"error":"...","attempts":0,"maxAttempts":3,
 *    "workerId":"...","leaseUntil":"...","runAt":"...","createdAt":"...",
 *    "updatedAt":"...","startedAt":"...","finishedAt":"..."}
 * Dates are ISO-8601 UTC with milliseconds.
 *
 * Thread safety: the state functions may be called from any thread. A
 * djob_job_t is handed to one handler call on one pool thread and must not be
 * kept after the handler returns.
 */
#ifndef DJOB_JOB_H
#define DJOB_JOB_H

#include "common.h"
#include "error.h"

DJOB_BEGIN_DECLS

typedef enum {
	DJOB_STATE_INVALID = -1,
	DJOB_STATE_QUEUED = 0,
	DJOB_STATE_SCHEDULED,
	DJOB_STATE_PROCESSING,
	DJOB_STATE_COMPLETED,
	DJOB_STATE_FAILED,
	DJOB_STATE_CANCELLED,
	/* Its attempts kept ending with its worker's death: never offered to a
	 * worker again until an admin retries (or cancels) it. */
	DJOB_STATE_QUARANTINED
} djob_state_t;

/* "queued", "processing", ...; NULL for an invalid state. Ownership: static. */
DJOB_EXTERN const char *djob_state_name(djob_state_t state);

/* The state named by `name`, or DJOB_STATE_INVALID. */
DJOB_EXTERN djob_state_t djob_state_parse(const char *name);

/* Non-zero for completed, failed and cancelled (not for quarantined, which
 * an admin retries or cancels). */
DJOB_EXTERN int djob_state_is_terminal(djob_state_t state);

/* Non-zero when `from` -> `to` is a transition of the state machine. */
DJOB_EXTERN int djob_state_can_transition(djob_state_t from, djob_state_t to);

/* Non-zero when `id` is a well-formed job id (a lowercase or uppercase
 * canonical UUID, 36 characters). */
DJOB_EXTERN int djob_id_is_valid(const char *id);

/* Non-zero when `type` is a well-formed type name: 1 to 64 characters of
 * [A-Za-z0-9_-]. Whether a worker handles it is another matter. */
DJOB_EXTERN int djob_type_is_valid(const char *type);

/* What a handler returns. */
typedef enum {
	DJOB_JOB_DONE = 0,  /* completed; the result set with djob_job_set_result */
	DJOB_JOB_RETRY = 1, /* failed this time; try again while attempts remain */
	DJOB_JOB_FAIL = 2   /* failed for good; the reason set with djob_job_set_error */
} djob_job_status_t;

/* A job handler. Called on a worker pool thread, several at once when
 * concurrency > 1. It may call the djob_job_* functions on `job` and any
 * thread-safe function of a djob_client_t; it must not call the worker that
 * runs it. */
typedef djob_job_status_t (*djob_handler_fn)(djob_job_t *job, void *user_data);

/* Accessors for handlers. Ownership: lent, valid during the handler call. */
DJOB_EXTERN const char *djob_job_id(const djob_job_t *job);
DJOB_EXTERN const char *djob_job_type(const djob_job_t *job);
/* The payload as a JSON object text. */
DJOB_EXTERN const char *djob_job_payload(const djob_job_t *job, size_t *len);
/* The attempt now running, from 1. */
DJOB_EXTERN int djob_job_attempts(const djob_job_t *job);
DJOB_EXTERN int djob_job_max_attempts(const djob_job_t *job);
DJOB_EXTERN const char *djob_job_worker_id(const djob_job_t *job);
/* The result JSON set so far, or NULL. */
DJOB_EXTERN const char *djob_job_result(const djob_job_t *job);
/* The error set so far, or NULL. */
DJOB_EXTERN const char *djob_job_error(const djob_job_t *job);

/* Set the result, which must be a JSON object. Ownership: copied. */
DJOB_EXTERN int djob_job_set_result(djob_job_t *job, const char *json, size_t len,
                                    djob_error_t *err);

/* Set the error message. Ownership: copied. */
DJOB_EXTERN int djob_job_set_error(djob_job_t *job, const char *message);

/* Longest progress message, in bytes. */
#define DJOB_PROGRESS_MESSAGE_MAX 200

/* Report progress: a number (any finite value; a fraction or a percentage,
 * as the handler's users expect) and an optional short message (UTF-8, at
 * most DJOB_PROGRESS_MESSAGE_MAX bytes, NULL for none). Cheap: the worker
 * writes the last value at most once a second and once more before the
 * outcome, so a handler may call it in a tight loop. GET /jobs/:id shows it
 * as "progress":{"value":…,"message":…,"updatedAt":…}. Returns 0 or
 * DJOB_EINVAL (not finite, message too long or not UTF-8).
 * Ownership: message is copied. */
DJOB_EXTERN int djob_job_set_progress(djob_job_t *job, double value, const char *message);

/* Non-zero when the handler should give up early: the worker is stopping,
 * the job was cancelled (DELETE /jobs/:id) or its lease was lost. The worker
 * checks the job at least every 500 ms while it runs, so a cancel shows here
 * within a second; the handler's outcome is then not recorded and the job
 * stays cancelled. Long handlers should poll it. */
DJOB_EXTERN int djob_job_should_stop(const djob_job_t *job);

/* The built-in compute handler: result {"message":"Success","value":"<hex>"}
 * where hex is the sha256 of payload.input (a string). Fails when input is
 * missing or not a string. user_data is unused. */
DJOB_EXTERN djob_job_status_t djob_handler_compute(djob_job_t *job, void *user_data);

/* sha256 of data as 64 lowercase hex digits and a NUL. */
DJOB_EXTERN void djob_sha256_hex(const void *data, size_t len, char out[65]);

DJOB_END_DECLS

#endif
