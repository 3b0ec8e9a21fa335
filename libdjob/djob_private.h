/*
 * libdjob internals shared between the library's modules. Not installed.
 */
#ifndef DJOB_PRIVATE_H
#define DJOB_PRIVATE_H

#include <djob/djob.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define DJOB_ATTR_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- errors (error.c) ---- */

/* Fill err (if not NULL) with code, retriable and a printf-formatted
 * message, and return code. */
int djob_set_error(djob_error_t *err, int code, int retriable, const char *fmt, ...)
	DJOB_ATTR_PRINTF(4, 5);

/* ---- logging (log.c) ---- */

/* Log through the configuration's callback when level passes its filter. */
void djob_logf(const djob_config_t *conf, djob_log_level_t level, const char *component,
               const char *fmt, ...) DJOB_ATTR_PRINTF(4, 5);

/* ---- configuration (config.c) ---- */

/* The configured callback, its level and opaque. */
void djob_config_log_target(const djob_config_t *conf, djob_log_fn *fn, djob_log_level_t *level,
                            void **opaque);

/* ---- time, ids (util.c) ---- */

/* Milliseconds since the Unix epoch, wall clock. */
int64_t djob_now_ms(void);

/* Milliseconds from a monotonic clock. */
int64_t djob_mono_ms(void);

#ifdef DJOB_FAULT_INJECTION
/* Test builds only (meson -Dfault_injection=true): does the environment
 * name this fault point in DJOB_FAULT (tests/fault)? */
bool djob_fault(const char *name);
#else
#define djob_fault(name) false
#endif

/* ISO-8601 UTC with milliseconds: "2025-04-09T19:16:43.090Z" (24 chars + NUL). */
void djob_format_iso(int64_t ms, char out[32]);

/* Parse ISO-8601 ("2025-04-09T19:16:43Z", with optional fraction, 'Z' or
 * +hh:mm offset) into ms since the epoch. Returns 0 or DJOB_EINVAL. */
int djob_parse_iso(const char *text, int64_t *ms_out);

/* A random (v4) UUID, lowercase canonical form, NUL-terminated. */
void djob_uuid_v4(char out[37]);

/* strdup that returns NULL for NULL. */
char *djob_strdup(const char *s);

/* ---- jobs (job.c) ---- */

struct djob_job_s {
	char *id;
	char *type;
	char *payload; /* JSON object text */
	size_t payload_len;
	int attempts;
	int max_attempts;
	char *worker_id; /* lent by the worker */
	char *result;    /* JSON object text or NULL */
	char *result_error; /* why djob_job_set_result refused the last result, or NULL */
	char *error;     /* or NULL */
	atomic_int lease_lost;
	atomic_int finishing; /* the handler returned; its outcome is being written */
	/* The store sink's: the job's seq as the worker's last write left it,
	 * 0 for a message that is the job as submitted, -1 when not known;
	 * and when (wall-clock ms) the job was at that seq. */
	atomic_llong seq;
	atomic_llong seq_at;
	const atomic_int *stopping; /* the worker's stop flag, or NULL */
	/* Progress (djob_job_set_progress): the handler's last value, written
	 * by the worker at most once a second and at finish. */
	pthread_mutex_t progress_mu;
	double progress_value;
	char *progress_message; /* or NULL */
	bool progress_set;      /* a value was ever reported */
	bool progress_dirty;    /* not yet written */
};

/* The progress to write as {"value":n,"message":"…"}, or NULL when
 * nothing changed since the last call (or memory ran out); clears the
 * change. Ownership: free the text with free(). Any thread. */
char *djob_job_take_progress(djob_job_t *job);

/* The moves of DESIGN.md §3 (job.c's table): each leaves from a set of
 * states and leads to one. */
typedef enum {
	DJOB_MOVE_CLAIM,
	DJOB_MOVE_TAKE_OVER,
	DJOB_MOVE_EXTEND,
	DJOB_MOVE_COMPLETE,
	DJOB_MOVE_RESCHEDULE,
	DJOB_MOVE_FAIL,
	DJOB_MOVE_CANCEL,
	DJOB_MOVE_DUE,
	DJOB_MOVE_EXPIRE,
	DJOB_MOVE_RETRY,
	DJOB_MOVE_QUARANTINE,
} djob_move_t;

/* The states a move leaves from, one bit (1u << state) each. */
unsigned djob_move_from(djob_move_t move);
djob_state_t djob_move_to(djob_move_t move);

/* Build a job from a Kafka message value: the job document as JSON
 * (djob's or the prototype's). `key` (may be NULL) is the message key. The
 * id comes from the key, else "_id", else "jobId"/"id" in the value.
 * Ownership: the caller frees *out with djob_job_free. */
int djob_job_from_message(djob_job_t **out, const char *key, size_t key_len, const char *value,
                          size_t value_len, djob_error_t *err);

/* NULL is a no-op. */
void djob_job_free(djob_job_t *job);

/* ---- offsets (offsets.c) ----
 *
 * Tracks, per partition, which consumed offsets are still in flight so that
 * the committed offset never passes an unfinished job even when jobs finish
 * out of order. Not locked: the worker guards it with its own mutex. */
typedef struct djob_offsets_s djob_offsets_t;

djob_offsets_t *djob_offsets_new(void);
void djob_offsets_free(djob_offsets_t *t);

/* A message at `offset` of (topic, partition) was taken for processing.
 * Offsets of one partition are added in increasing order. */
int djob_offsets_add(djob_offsets_t *t, const char *topic, int32_t partition, int64_t offset);

/* The job at `offset` is finished (whatever its outcome). */
int djob_offsets_done(djob_offsets_t *t, const char *topic, int32_t partition, int64_t offset);

/* The offset to commit for the partition (the lowest in-flight offset, or
 * the highest seen + 1 when none is in flight), or -1 when nothing was seen.
 */
int64_t djob_offsets_committable(const djob_offsets_t *t, const char *topic, int32_t partition);

/* Number of offsets in flight, for one partition or (topic NULL) in all. */
size_t djob_offsets_in_flight(const djob_offsets_t *t, const char *topic, int32_t partition);

/* Visit every partition: fn(topic, partition, committable). */
void djob_offsets_foreach(const djob_offsets_t *t,
                          void (*fn)(const char *topic, int32_t partition, int64_t committable,
                                     void *opaque),
                          void *opaque);

/* Forget a partition (after it was revoked). */
void djob_offsets_forget(djob_offsets_t *t, const char *topic, int32_t partition);

/* ---- client (client.c) ---- */

/* Start reading the figures of djob_client_job_stats now, without waiting
 * (djob-api at start, so that its first GET /stats waits for nothing). */
void djob_client_job_stats_prefetch(djob_client_t *c);

#endif
