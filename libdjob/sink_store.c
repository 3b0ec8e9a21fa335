/*
 * Status sinks: the generic wrapper and the store sink, which writes
 * straight to MongoDB.
 */
#include "sink_private.h"
#include "store.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int djob_sink_new(djob_sink_t **out, const djob_sink_ops_t *ops, void *opaque, djob_error_t *err)
{
	*out = NULL;
	if (!ops || ops->version < 1 || ops->version > DJOB_SINK_OPS_VERSION || !ops->claim ||
	    !ops->extend || !ops->finish)
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "A sink needs version, claim, extend and finish");
	djob_sink_t *s = calloc(1, sizeof *s);
	if (!s)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	/* A version 1 struct ends before sync. */
	memcpy(&s->ops, ops, ops->version == 1 ? offsetof(djob_sink_ops_t, sync) : sizeof *ops);
	s->opaque = opaque;
	*out = s;
	return 0;
}

void djob_sink_free(djob_sink_t *s)
{
	if (!s)
		return;
	if (s->ops.destroy)
		s->ops.destroy(s->opaque);
	free(s);
}

/* What the store knows of the job between its writes is this sink's
 * bookkeeping: writable through the const job the ops receive. */
static djob_store_seq_t seq_of(const djob_job_t *job)
{
	djob_store_seq_t k = {atomic_load(&job->seq), atomic_load(&job->seq_at)};
	return k;
}

static void keep_seq(const djob_job_t *job, const djob_store_seq_t *k)
{
	djob_job_t *j = (djob_job_t *)job;
	atomic_store(&j->seq, k->seq);
	atomic_store(&j->seq_at, k->at_ms);
}

static int store_claim(void *opaque, const djob_job_t *job, long lease_ms, int *attempts,
                       int *max_attempts, djob_error_t *err)
{
	djob_store_seq_t k = seq_of(job);
	int rc = djob_store_claim(opaque, job->id, job->worker_id, lease_ms, attempts, max_attempts,
	                          &k, err);
	if (rc == 0)
		keep_seq(job, &k);
	return rc;
}

static int store_extend(void *opaque, const djob_job_t *job, long lease_ms, djob_error_t *err)
{
	djob_store_seq_t k = seq_of(job);
	int rc = djob_store_extend(opaque, job->id, job->worker_id, job->attempts,
	                           job->max_attempts, lease_ms, &k, err);
	if (rc == 0)
		keep_seq(job, &k);
	return rc;
}

static int store_finish(void *opaque, const djob_job_t *job, djob_job_status_t outcome,
                        djob_error_t *err)
{
	djob_store_seq_t k = seq_of(job);
	int rc = djob_store_finish(opaque, job->id, job->worker_id, job->attempts,
	                           job->max_attempts, outcome, job->result, job->error, &k, err);
	if (rc == 0)
		keep_seq(job, &k);
	return rc;
}

static int store_sync(void *opaque, const djob_job_t *job, long lease_ms, const char *progress_json,
                      djob_error_t *err)
{
	if (!progress_json)
		return djob_store_held(opaque, job->id, job->worker_id, job->attempts, err);
	djob_store_seq_t k = seq_of(job);
	int rc = djob_store_progress(opaque, job->id, job->worker_id, job->attempts,
	                             job->max_attempts, lease_ms, progress_json, &k, err);
	if (rc == 0)
		keep_seq(job, &k);
	return rc;
}

static void store_destroy(void *opaque)
{
	djob_store_free(opaque);
}

int djob_sink_store_new(djob_sink_t **out, const djob_config_t *conf, djob_error_t *err)
{
	*out = NULL;
	djob_store_t *store;
	int rc = djob_store_new(&store, conf, err);
	if (rc != 0)
		return rc;
	static const djob_sink_ops_t ops = {DJOB_SINK_OPS_VERSION, store_claim,   store_extend,
	                                    store_finish,          store_destroy, store_sync};
	rc = djob_sink_new(out, &ops, store, err);
	if (rc != 0)
		djob_store_free(store);
	return rc;
}
