/*
 * djob: the scheduler, which sweeps the job store about once a second.
 *
 * A sweep publishes scheduled jobs whose runAt has come (delayed jobs and
 * retries), requeues processing jobs whose lease ran out (a crashed or hung
 * worker; failed when no attempt is left) and publishes queued jobs never
 * confirmed published (the API died between insert and produce). Every step
 * is a conditional write, so several schedulers (API replicas) may sweep
 * one database at once. djob-api runs one by default.
 *
 * Configuration keys: scheduler.interval.ms (1000), scheduler.grace.ms
 * (10000: how long a queued job may stay unpublished), scheduler.batch (100
 * jobs per step and sweep), retention.completed.ms, retention.failed.ms,
 * retention.cancelled.ms (0, off: finished jobs of that status older than
 * this are deleted, retention.batch (500) per status and sweep).
 *
 * Thread safety: a scheduler has one owner; djob_scheduler_stop and
 * djob_scheduler_stats may be called from any thread.
 */
#ifndef DJOB_SCHEDULER_H
#define DJOB_SCHEDULER_H

#include "common.h"
#include "config.h"
#include "error.h"

DJOB_BEGIN_DECLS

typedef struct djob_scheduler_s djob_scheduler_t;

/* Ownership: conf is copied; free *out with djob_scheduler_free. */
DJOB_EXTERN int djob_scheduler_new(djob_scheduler_t **out, const djob_config_t *conf,
                                   djob_error_t *err);

/* Stop if running, then free. NULL is a no-op. */
DJOB_EXTERN void djob_scheduler_free(djob_scheduler_t *sched);

/* Run one sweep now, in the calling thread. *stats_json_out (may be NULL)
 * gets what it did: {"due":1,"expired":0,"exhausted":0,"unpublished":0,
 * "lostRaces":0,"removed":0,"periodicSubmitted":0,"periodicMisfired":0,
 * "periodicLostRaces":0}; removed counts the finished jobs retention
 * deleted (retention.*.ms), periodic* the due times of periodic jobs
 * submitted, skipped as misfired and left to another replica. Ownership: free *stats_json_out with djob_free. */
DJOB_EXTERN int djob_scheduler_sweep(char **stats_json_out, djob_scheduler_t *sched,
                                     djob_error_t *err);

/* Sweep every scheduler.interval.ms in a background thread. */
DJOB_EXTERN int djob_scheduler_start(djob_scheduler_t *sched, djob_error_t *err);

/* Stop the background thread (finishing the sweep under way). */
DJOB_EXTERN void djob_scheduler_stop(djob_scheduler_t *sched);

/* Totals since creation, same fields as a sweep plus "sweeps" and
 * "errors". Ownership: free *json_out with djob_free. */
DJOB_EXTERN int djob_scheduler_stats(char **json_out, djob_scheduler_t *sched,
                                     djob_error_t *err);

DJOB_END_DECLS

#endif
