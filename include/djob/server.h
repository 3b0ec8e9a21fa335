/*
 * djob: the HTTP servers behind the reference daemons.
 *
 * The API server answers the REST contract (POST/GET/PATCH/DELETE /jobs,
 * POST /jobs/:id/retry, GET /health, GET /metrics) with one djob_client_t
 * call per request. The worker server controls a djob_worker_t (POST /start,
 * POST /stop, GET /health, GET /metrics).
 *
 * Both take bearer tokens from the config key api.tokens
 * ("token:role,token:role"; roles submit, worker, admin) and listen on
 * api.listen: without tokens only a loopback address is accepted (127.0.0.1
 * by default, with a warning); with tokens the default is 0.0.0.0. Every
 * error reply is {"error":"..."} with a 4xx or 5xx status.
 *
 * Thread safety: a server has one owner thread, which calls new, start,
 * stop and free. Requests are served on the server's own threads, which
 * call the client (thread-safe) or the worker's start and stop (serialized
 * by the server).
 */
#ifndef DJOB_SERVER_H
#define DJOB_SERVER_H

#include "common.h"
#include "config.h"
#include "error.h"

DJOB_BEGIN_DECLS

typedef struct djob_api_server_s djob_api_server_t;
typedef struct djob_worker_server_s djob_worker_server_t;

/* An API server for `client`, configured by conf (api.tokens, api.listen,
 * api.body.max.bytes). Nothing listens until start. Fails with DJOB_EINVAL
 * for a malformed api.tokens.
 * Ownership: conf is copied; client is lent and must outlive the server;
 * free *out with djob_api_server_free. */
DJOB_EXTERN int djob_api_server_new(djob_api_server_t **out, djob_client_t *client,
                                    const djob_config_t *conf, djob_error_t *err);

/* Listen on `port` (0: the config key api.port). DJOB_EINVAL when the
 * address cannot be used or is not loopback while no token is set. */
DJOB_EXTERN int djob_api_server_start(djob_api_server_t *server, int port, djob_error_t *err);

/* Stop listening; waits for the requests in progress. A no-op when not
 * started. */
DJOB_EXTERN void djob_api_server_stop(djob_api_server_t *server);

/* The port listened on, or -1 when not started. */
DJOB_EXTERN int djob_api_server_port(const djob_api_server_t *server);

/* Stop, then free. NULL is a no-op. */
DJOB_EXTERN void djob_api_server_free(djob_api_server_t *server);

/* A worker server for `worker`: POST /start starts the worker
 * (djob_worker_start), POST /stop stops it (drains, commits, leaves the
 * group); the GET routes report. It also counts jobs by type and outcome,
 * handler durations and the consumer lag for GET /metrics, so create it
 * before the worker runs.
 * Ownership: conf is copied; worker is lent and must outlive the server;
 * free *out with djob_worker_server_free. */
DJOB_EXTERN int djob_worker_server_new(djob_worker_server_t **out, djob_worker_t *worker,
                                       const djob_config_t *conf, djob_error_t *err);

/* Listen on `port` (0: the config key worker.port). */
DJOB_EXTERN int djob_worker_server_start(djob_worker_server_t *server, int port, djob_error_t *err);

/* Stop listening (the worker keeps running). */
DJOB_EXTERN void djob_worker_server_stop(djob_worker_server_t *server);

/* The port listened on, or -1 when not started. */
DJOB_EXTERN int djob_worker_server_port(const djob_worker_server_t *server);

/* Stop, then free. The worker is not stopped, but it must not be running
 * (stop it first): the server's metrics hook is removed from it here.
 * NULL is a no-op. */
DJOB_EXTERN void djob_worker_server_free(djob_worker_server_t *server);

DJOB_END_DECLS

#endif
