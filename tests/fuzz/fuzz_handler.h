/*
 * What the handler targets share: a job as a worker hands it to a
 * handler, with the fuzzer's input as its payload, and the checks every
 * outcome must pass.
 */
#ifndef DJOB_FUZZ_HANDLER_H
#define DJOB_FUZZ_HANDLER_H

#include "fuzz.h"

#include "djob_private.h"

#include <math.h>

/* The payload is the input's bytes as they are: handlers parse it
 * themselves. stopping (may be NULL) is the worker's stop flag.
 * Ownership: djob_job_free. */
static inline djob_job_t *fuzz_job_new(const char *type, const uint8_t *data, size_t size,
                                       const atomic_int *stopping)
{
	djob_job_t *job = calloc(1, sizeof *job);
	FUZZ_ASSERT(job != NULL);
	job->id = strdup("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f");
	job->type = strdup(type);
	job->payload = fuzz_cstr(data, size);
	job->payload_len = size;
	job->attempts = 1;
	job->max_attempts = 3;
	atomic_init(&job->lease_lost, 0);
	atomic_init(&job->finishing, 0);
	atomic_init(&job->seq, -1);
	atomic_init(&job->seq_at, 0);
	job->stopping = stopping;
	FUZZ_ASSERT(job->id && job->type);
	return job;
}

/* DONE leaves a result object and no error; RETRY and FAIL an error.
 * Returns the result, parsed (NULL unless DONE). Ownership: cJSON_Delete. */
static inline cJSON *fuzz_check_outcome(const djob_job_t *job, djob_job_status_t st)
{
	FUZZ_ASSERT(st == DJOB_JOB_DONE || st == DJOB_JOB_RETRY || st == DJOB_JOB_FAIL);
	if (st != DJOB_JOB_DONE) {
		FUZZ_ASSERT(djob_job_error(job) != NULL && djob_job_error(job)[0] != '\0');
		return NULL;
	}
	FUZZ_ASSERT(djob_job_error(job) == NULL);
	cJSON *result = cJSON_Parse(djob_job_result(job));
	FUZZ_ASSERT(cJSON_IsObject(result));
	return result;
}

/* A number member of `obj`, which must be there and finite. */
static inline double fuzz_number(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		fprintf(stderr, "result.%s is not a finite number\n", name);
	FUZZ_ASSERT(cJSON_IsNumber(v) && isfinite(v->valuedouble));
	return v->valuedouble;
}

#endif
