/*
 * The bodies of POST /jobs and PATCH /jobs/:id, parsed and validated into
 * what the client and the store write, so that a handler of djob-api only
 * passes on data already checked. Not installed.
 *
 * Thread safety: the functions may be called from any thread; a parsed
 * request has one owner.
 */
#ifndef DJOB_REQUEST_H
#define DJOB_REQUEST_H

#include "json.h"
#include "store.h"

#define DJOB_MAX_BATCH 1000
#define DJOB_MAX_IDEMPOTENCY_KEY 200

/* A submission: one job or a batch, each with its id, its payload (BSON
 * kept exactly) and its Kafka message already rendered. */
typedef struct {
	djob_new_job_t *jobs;
	size_t n;
	bool batch;
	/* What the jobs point into. */
	cJSON *tree;
	bson_t *doc;
	bson_t *payloads;
	char **messages;
} djob_submission_t;

/* Parse a POST /jobs body (a job object or an array of 1 to 1000 of them)
 * against conf (its types and max.attempts). `idempotency_key` (may be
 * NULL) is the Idempotency-Key header, for a single job only. A job whose
 * Kafka message would be over `max_message` bytes (0: no limit), a batch
 * over DJOB_MAX_BATCH and a payload over DJOB_JSON_MAX_DOC are DJOB_ETOOBIG;
 * anything else wrong is DJOB_EINVAL.
 * Ownership: the caller frees *out with djob_submission_free. */
int djob_submission_parse(djob_submission_t **out, const djob_config_t *conf, size_t max_message,
                          const char *body, size_t len, const char *idempotency_key,
                          djob_error_t *err);
void djob_submission_free(djob_submission_t *s);

/* A PATCH body. */
typedef struct djob_patch_s {
	djob_state_t to; /* processing, completed or failed */
	bson_t *result;  /* or NULL */
	char *error;     /* or NULL */
	char *worker_id; /* or NULL */
	int attempts;    /* 0: not given */
	long lease_ms;   /* 0: not given */
	bool retry;      /* a fenced failure to be retried */
	bson_t *progress; /* {value, message} with a fenced processing, or NULL */
} djob_patch_t;

/* Parse a PATCH /jobs/:id body: DJOB_EINVAL (DJOB_ETOOBIG for a result over
 * DJOB_JSON_MAX_DOC) with nothing allocated when it is wrong.
 * Ownership: the caller frees *out with djob_patch_free. */
int djob_patch_parse(djob_patch_t **out, const char *body, size_t len, djob_error_t *err);
void djob_patch_free(djob_patch_t *p);

#endif
