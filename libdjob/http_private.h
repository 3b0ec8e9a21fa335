/*
 * What the HTTP servers (http_api.c, http_worker.c) share: civetweb set-up,
 * bearer tokens with roles, JSON replies, bounded body reads, the access
 * log and request metrics. Not installed; civetweb stays out of the public
 * headers.
 *
 * Thread safety: a djob_http_t is set up and torn down by its owner; while
 * the server runs, civetweb's threads only read it (metrics lock
 * themselves). A djob_http_req_t lives on one handler thread.
 */
#ifndef DJOB_HTTP_PRIVATE_H
#define DJOB_HTTP_PRIVATE_H

#include "assets.h"
#include "djob_private.h"
#include "metrics.h"

#include <civetweb.h>
#include <pthread.h>

/* What a request needs; a role grants a set of these. */
enum {
	DJOB_PERM_READ = 1,   /* GET */
	DJOB_PERM_SUBMIT = 2, /* POST /jobs */
	DJOB_PERM_UPDATE = 4, /* PATCH /jobs/:id */
	DJOB_PERM_ADMIN = 8,  /* DELETE, retry, worker start/stop */
	DJOB_PERM_NONE = 0    /* /health, /metrics */
};

typedef struct {
	char *token;
	size_t len;
	unsigned perms;
	const char *role; /* static: "submit", "worker" or "admin" */
} djob_http_token_t;

typedef struct {
	djob_config_t *conf;
	const char *component; /* "api" or "worker" in logs */
	djob_http_token_t *tokens;
	size_t ntokens;
	djob_metrics_t *metrics;
	struct mg_context *ctx;
	long body_max;
	long request_timeout_ms; /* http.request.timeout.ms: headers, and a whole body */
	bool starting;           /* in mg_start2: civetweb's messages are the cause */
	char start_error[256];
	/* djob_http_start's handler, also called for the methods civetweb
	 * itself refuses (http_common.c, civetweb_error). */
	mg_request_handler handler;
	void *cbdata;
	/* Bodies being read, and the thread that cuts the slow ones off
	 * (http_common.c, body_watch). */
	pthread_mutex_t watch_mu;
	pthread_cond_t watch_cv;
	struct djob_body_watch_s *watches;
	pthread_t watch_thread;
	bool watch_started;
	bool watch_quit;
} djob_http_t;

/* Copy conf, parse api.tokens ("token:role,..."; roles submit, worker,
 * admin) and declare the request metrics. */
int djob_http_init(djob_http_t *h, const djob_config_t *conf, const char *component,
                   djob_error_t *err);

/* The server's metrics as Prometheus text, the MongoDB command counters
 * of djob_store_commands included. Ownership: free(). */
char *djob_http_render_metrics(djob_http_t *h);

/* Stop (if started) and free what init allocated. */
void djob_http_cleanup(djob_http_t *h);

/* Listen on `port` at api.listen, by default 0.0.0.0 with tokens and
 * 127.0.0.1 (with a warning) without; a non-loopback api.listen without
 * tokens is refused. Every request goes to handler(conn, cbdata). */
int djob_http_start(djob_http_t *h, long port, mg_request_handler handler, void *cbdata,
                    djob_error_t *err);

/* Stop civetweb (waits for the handlers that run). */
void djob_http_stop(djob_http_t *h);

/* The first port the server listens on, or -1. */
int djob_http_port(const djob_http_t *h);

/* One request on a handler thread. */
typedef struct {
	djob_http_t *h;
	struct mg_connection *conn;
	const struct mg_request_info *ri;
	const char *route; /* metrics label: "/jobs/:id", ... */
	int64_t start_ms;
	int status;
	bool close; /* the body was not read: close the connection */
} djob_http_req_t;

void djob_http_req_begin(djob_http_req_t *r, djob_http_t *h, struct mg_connection *conn);

/* Count the request, write the access log line; returns the status for
 * civetweb. */
int djob_http_req_end(djob_http_req_t *r);

/* Send a reply. extra_name/extra_value (may be NULL) add one header. */
void djob_http_send(djob_http_req_t *r, int status, const char *content_type, const char *body,
                    size_t len, const char *extra_name, const char *extra_value);

/* Send JSON text (NULL: "{}"). */
void djob_http_send_json(djob_http_req_t *r, int status, const char *json);

/* Send {"error":"<message>"}. */
void djob_http_send_error(djob_http_req_t *r, int status, const char *message);

/* Send the error of a failed libdjob call with its HTTP status. */
void djob_http_send_djob_error(djob_http_req_t *r, int code, const djob_error_t *e);

/* A built-in file (assets.h): 304 when If-None-Match holds its ETag. */
void djob_http_send_asset(djob_http_req_t *r, const djob_asset_t *a);

/* 405 with an Allow header. */
void djob_http_send_405(djob_http_req_t *r, const char *allow);

/* The role of the request's bearer token: 0 with *role (static text,
 * "admin" when the server has no tokens) and *perms (DJOB_PERM_*), or -1
 * when tokens are configured and the request has none of them. Sends
 * nothing. */
int djob_http_token_role(djob_http_req_t *r, const char **role, unsigned *perms);

/* Check the bearer token for `perm`. 0, or the 401/403 reply was sent. */
int djob_http_authorize(djob_http_req_t *r, unsigned perm);

/* Send 401 "Missing or invalid bearer token" with WWW-Authenticate. */
void djob_http_send_401(djob_http_req_t *r);

/* Read the body, at most body_max bytes (413 otherwise, checked on
 * Content-Length first and again while reading), all of it within
 * http.request.timeout.ms (408 otherwise, and the connection is closed).
 * 0 with *body (free(), NUL-terminated) and *len, or the error reply was
 * sent. */
int djob_http_read_body(djob_http_req_t *r, char **body, size_t *len);

/* Value of `name` in a query string, decoded, or NULL when absent.
 * Ownership: free() the result. */
char *djob_http_query(const char *query, const char *name);

/* Compare in time that depends only on the lengths. 1 when equal. */
int djob_http_const_eq(const char *a, size_t alen, const char *b, size_t blen);

/* GET /jobs's query string, decoded (http_api.c): status, type and after
 * are NULL when absent or empty, limit 0 when absent. */
typedef struct {
	char *status;
	char *type;
	char *after;
	int limit;
} djob_list_query_t;

/* Parse `query` (may be NULL) into *q. 0, or DJOB_EINVAL with err set and
 * *q empty. Ownership: djob_api_list_query_clear(q) frees what it holds. */
int djob_api_list_query(djob_list_query_t *q, const char *query, djob_error_t *err);
void djob_api_list_query_clear(djob_list_query_t *q);

#endif
