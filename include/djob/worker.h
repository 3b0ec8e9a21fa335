/*
 * djob: the worker, which consumes jobs from Kafka and runs handlers.
 *
 * Thread safety: a worker has one owner thread. djob_worker_stop,
 * djob_worker_request_stop and djob_worker_is_running may be called from any
 * thread; djob_worker_request_stop also from a signal handler. Handlers run
 * on the worker's pool threads (see djob_handler_fn).
 */
#ifndef DJOB_WORKER_H
#define DJOB_WORKER_H

#include "common.h"
#include "config.h"
#include "error.h"
#include "job.h"

DJOB_BEGIN_DECLS

#define DJOB_SINK_OPS_VERSION 2 /* 1: without sync */

/* Where a worker records the status of the jobs it runs. Every function is
 * called from the worker's pool threads, concurrently. */
typedef struct {
	int version; /* DJOB_SINK_OPS_VERSION */
	/* Claim the job for djob_job_worker_id(job): status processing,
	 * attempts + 1, a lease of lease_ms. On success set *attempts (the
	 * attempt now running) and *max_attempts. Return 0; DJOB_ECONFLICT when
	 * the job is terminal, cancelled or leased by a live worker (the
	 * message is skipped); DJOB_ENOTFOUND when there is no such job;
	 * another negative code when the store cannot be reached (retriable). */
	int (*claim)(void *opaque, const djob_job_t *job, long lease_ms, int *attempts,
	             int *max_attempts, djob_error_t *err);
	/* Extend the lease by lease_ms. DJOB_ECONFLICT when it was lost. Called
	 * every lease_ms / 3 from the handler's start until finish has
	 * returned, so it may run while finish does (and after the outcome is
	 * written, when DJOB_ECONFLICT is ignored). */
	int (*extend)(void *opaque, const djob_job_t *job, long lease_ms, djob_error_t *err);
	/* Record the outcome, fenced on (worker id, attempts): completed with
	 * djob_job_result, or failed / scheduled for a retry with djob_job_error.
	 * DJOB_ECONFLICT when the lease was lost. */
	int (*finish)(void *opaque, const djob_job_t *job, djob_job_status_t outcome,
	              djob_error_t *err);
	/* Free opaque. May be NULL. */
	void (*destroy)(void *opaque);
	/* Version 2 (may be NULL: then cancels reach a handler only through
	 * extend). Called every 500 ms for each running job. With progress_json
	 * ({"value":n,"message":"…"}) write it as the job's progress, fenced on
	 * (worker id, attempts), and extend the lease by lease_ms; with NULL
	 * only check that the job is still this worker's. DJOB_ECONFLICT when
	 * it is not (cancelled, or the lease lost): the handler is told to
	 * stop. */
	int (*sync)(void *opaque, const djob_job_t *job, long lease_ms, const char *progress_json,
	            djob_error_t *err);
} djob_sink_ops_t;

/* A sink from user functions. Ownership: ops is copied; opaque is owned by
 * the sink from now on (ops->destroy frees it); free *out with
 * djob_sink_free unless a worker took it. */
DJOB_EXTERN int djob_sink_new(djob_sink_t **out, const djob_sink_ops_t *ops, void *opaque,
                              djob_error_t *err);

/* The store sink: straight to MongoDB (workers inside the cluster).
 * Ownership: conf is copied; free *out with djob_sink_free. */
DJOB_EXTERN int djob_sink_store_new(djob_sink_t **out, const djob_config_t *conf,
                                    djob_error_t *err);

/* The api sink: PATCH /jobs/:id on djob-api at the config key api.url
 * with "Authorization: Bearer <token>" (config key token), for workers that
 * hold no database credentials. A 409 answer is DJOB_ECONFLICT, 404
 * DJOB_ENOTFOUND, 400 DJOB_EINVAL, anything else (unreachable, 5xx, 401,
 * 403) DJOB_EHTTP, retriable.
 * Ownership: conf is copied; free *out with djob_sink_free. */
DJOB_EXTERN int djob_sink_api_new(djob_sink_t **out, const djob_config_t *conf,
                                  djob_error_t *err);

/* NULL is a no-op. */
DJOB_EXTERN void djob_sink_free(djob_sink_t *sink);

/* A worker. It joins the consumer group at run/start, not here.
 * Ownership: conf is copied; free *out with djob_worker_free. */
DJOB_EXTERN int djob_worker_new(djob_worker_t **out, const djob_config_t *conf,
                                djob_error_t *err);

/* Stop if running, then free. NULL is a no-op. */
DJOB_EXTERN void djob_worker_free(djob_worker_t *worker);

/* Handle jobs of `type` with fn. Registering a type again replaces its
 * handler. Only before the worker runs. Ownership: type is copied;
 * user_data stays the caller's and must outlive the worker. */
DJOB_EXTERN int djob_worker_register(djob_worker_t *worker, const char *type,
                                     djob_handler_fn fn, void *user_data, djob_error_t *err);

/* The plugin ABI: what a plugin's djob_plugin_register may rely on (this
 * header's types and calls). It changes only when they change
 * incompatibly, and apart from the project's version. */
#define DJOB_PLUGIN_ABI_VERSION 1

#ifdef __cplusplus
#define DJOB_PLUGIN_LINKAGE extern "C"
#else
#define DJOB_PLUGIN_LINKAGE
#endif
/* Exported even from a plugin built with -fvisibility=hidden. */
#if defined(__GNUC__)
#define DJOB_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define DJOB_PLUGIN_EXPORT
#endif
/* Write `DJOB_PLUGIN_ABI;` once at file scope in a plugin: it exports
 * djob_plugin_abi_version, the ABI the plugin was compiled against. */
#define DJOB_PLUGIN_ABI                                                                            \
	DJOB_PLUGIN_LINKAGE DJOB_PLUGIN_EXPORT const int djob_plugin_abi_version =                 \
		DJOB_PLUGIN_ABI_VERSION

/* Load a handler plugin: a shared object exporting
 *   int djob_plugin_register(djob_worker_t *worker, djob_error_t *err);
 * which calls djob_worker_register, and stating DJOB_PLUGIN_ABI. A plugin
 * that states no ABI, or another than this library's, is refused with
 * DJOB_EINVAL and a message saying to rebuild it; nothing of it runs.
 * Only before the worker runs. */
DJOB_EXTERN int djob_worker_load_plugin(djob_worker_t *worker, const char *path,
                                        djob_error_t *err);

/* Use `sink` to record status (default: the store sink). Only before the
 * worker runs. Ownership: the worker takes the sink and frees it. */
DJOB_EXTERN int djob_worker_set_sink(djob_worker_t *worker, djob_sink_t *sink,
                                     djob_error_t *err);

/* Consume and run jobs in the calling thread until stopped. Returns 0 after
 * a stop: in-flight jobs drained, offsets committed, group left. */
DJOB_EXTERN int djob_worker_run(djob_worker_t *worker, djob_error_t *err);

/* Run in a background thread owned by the worker. DJOB_ESTATE if running. */
DJOB_EXTERN int djob_worker_start(djob_worker_t *worker, djob_error_t *err);

/* Ask the worker to stop and wait until it has (drained, committed, left the
 * group). A no-op when not running. Any thread but a handler's. */
DJOB_EXTERN int djob_worker_stop(djob_worker_t *worker, djob_error_t *err);

/* Ask the worker to stop and return at once. Async-signal-safe. */
DJOB_EXTERN void djob_worker_request_stop(djob_worker_t *worker);

/* Non-zero while the worker is consuming. */
DJOB_EXTERN int djob_worker_is_running(const djob_worker_t *worker);

/* Counters as JSON: {"running":true,"inFlight":2,"assignedPartitions":3,"processed":10,
 * "completed":9,"failed":1,"skipped":0,"workerId":"..."}.
 * Ownership: *json_out is allocated, free with djob_free. */
DJOB_EXTERN int djob_worker_stats(char **json_out, const djob_worker_t *worker,
                                  djob_error_t *err);

/* The worker's id (config worker.id or generated). Ownership: lent. */
DJOB_EXTERN const char *djob_worker_id(const djob_worker_t *worker);

DJOB_END_DECLS

#endif
