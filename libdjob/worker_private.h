/*
 * Hooks into the worker for the worker HTTP server's metrics. Not
 * installed.
 */
#ifndef DJOB_WORKER_PRIVATE_H
#define DJOB_WORKER_PRIVATE_H

#include "djob_private.h"

/* Called on a pool thread once per message the worker finished with:
 * outcome is "completed", "failed", "retried", "skipped" (not a job, not
 * claimable) or "stale" (the result was fenced off); type is the job's
 * type ("unknown" when the message was not a job); handler_seconds is the
 * handler's run time, or -1 when no handler ran. Must be quick and must
 * not call the worker. */
typedef void (*djob_worker_job_hook_fn)(void *opaque, const char *type, const char *outcome,
                                        double handler_seconds);

/* Set the hook (NULL to remove). Only while the worker is not running. */
void djob_worker_set_job_hook(djob_worker_t *worker, djob_worker_job_hook_fn fn, void *opaque);

/* The consumer lag summed over the assigned partitions, as librdkafka last
 * reported it (statistics every 5 s), or -1 when unknown. Any thread. */
long long djob_worker_consumer_lag(const djob_worker_t *worker);

#endif
