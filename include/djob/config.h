/*
 * djob: configuration.
 *
 * A configuration is a set of string keys and values, like librdkafka's.
 * Known keys (environment variable in brackets, prototype name after it):
 *   kafka.brokers       [DJOB_KAFKA_BROKERS, KAFKA_BROKER]  127.0.0.1:9092
 *   mongo.uri           [DJOB_MONGO_URI, MONGO_URI]  mongodb://127.0.0.1:27017/jobsdb
 *   mongo.database      database when the URI names none            jobsdb
 *   mongo.collection    [DJOB_MONGO_COLLECTION]                    jobs
 *   store.mode          [DJOB_STORE_MODE]  auto, atomic (one conditional findAndModify
 *                       per transition) or locks (for servers whose findAndModify is
 *                       not atomic, FerretDB 1.x); auto asks the server  auto
 *   api.port            [DJOB_API_PORT, PORT]                      3000
 *   api.listen          [DJOB_API_LISTEN]  address; default loopback unless tokens are set
 *   api.url             [DJOB_API_URL]                             http://127.0.0.1:3000
 *   api.tokens          [DJOB_API_TOKENS]  "token:role,token:role" (roles: submit, worker, admin)
 *   api.body.max.bytes  [DJOB_BODY_MAX_BYTES]                      1048576
 *   token               [DJOB_TOKEN]  bearer token a worker's api sink sends
 *   worker.port         [DJOB_WORKER_PORT]                         4000
 *   worker.id           [DJOB_WORKER_ID]  default host-pid-random
 *   worker.sink         [DJOB_SINK]  "store" or "api"               store
 *   worker.plugins      [DJOB_PLUGINS]  comma-separated handler shared objects
 *   group.id            [DJOB_GROUP_ID]                            job-workers
 *   concurrency         [DJOB_CONCURRENCY]                         4
 *   worker.queue        [DJOB_WORKER_QUEUE]  jobs fetched ahead of the pool; fetching
 *                       pauses beyond (and beyond 16 MiB of them)  256
 *   lease.ms            [DJOB_LEASE_MS]                            30000
 *   max.attempts        [DJOB_MAX_ATTEMPTS]                        3
 *   topic.prefix        [DJOB_TOPIC_PREFIX]                        jobs.
 *   types               [DJOB_TYPES]  job types accepted   compute,file,blockchain,data
 *   topic.partitions    [DJOB_TOPIC_PARTITIONS]  partitions of created topics  3
 *   scheduler.interval.ms [DJOB_SCHEDULER_INTERVAL_MS]             1000
 *   scheduler.grace.ms  [DJOB_SCHEDULER_GRACE_MS]  unpublished for this long: publish  10000
 *   scheduler.batch     [DJOB_SCHEDULER_BATCH]  jobs per sweep step  100
 *   retention.completed.ms [DJOB_RETENTION_COMPLETED_MS]  delete completed jobs
 *                       finished longer ago than this (0: keep)  0
 *   retention.failed.ms [DJOB_RETENTION_FAILED_MS]  the same for failed jobs  0
 *   retention.cancelled.ms [DJOB_RETENTION_CANCELLED_MS]  ... cancelled jobs  0
 *   retention.batch     [DJOB_RETENTION_BATCH]  jobs deleted per status and sweep  500
 *   submit.writers      [DJOB_SUBMIT_WRITERS]  groups of submissions written at once;
 *                       submissions made meanwhile wait and form the next group  1
 *   submit.linger.ms    [DJOB_SUBMIT_LINGER_MS]  under load, how long after a group's
 *                       answers the next may wait for its callers to come back  8
 *   log.level           [DJOB_LOG_LEVEL]  error|warning|info|debug  warning
 *   http.threads        [DJOB_HTTP_THREADS]  request threads of each daemon's server;
 *                       a connection holds one while open               128
 *   http.request.timeout.ms [DJOB_HTTP_REQUEST_TIMEOUT_MS]  longest wait for a
 *                       request's headers, and for its whole body       5000
 *   http.keepalive.timeout.ms [DJOB_HTTP_KEEPALIVE_TIMEOUT_MS]  an idle kept-alive
 *                       connection is closed after this                 2000
 *   http.backlog        [DJOB_HTTP_BACKLOG]  listen(2) backlog          1024
 *   api.tls.ca.file     [DJOB_API_TLS_CA_FILE]  PEM CA certificates the api sink
 *                       trusts for an https:// api.url (unset: api.tls.ca.dir)
 *   api.tls.ca.dir      [DJOB_API_TLS_CA_DIR]  directory of PEM CA certificates
 *                       /etc/ssl/certs
 *   kafka.<property>    [DJOB_KAFKA_<PROPERTY>, '_' read as '.']  passed to librdkafka
 *                       as <property> (SASL, TLS, ...); kafka.brokers is not passed
 *
 * Thread safety: a configuration has one owner and is not locked. Clients
 * and workers copy it when they are created, so it may be changed or freed
 * afterwards.
 */
#ifndef DJOB_CONFIG_H
#define DJOB_CONFIG_H

#include "common.h"
#include "error.h"
#include "log.h"

DJOB_BEGIN_DECLS

/* A configuration holding every default.
 * Ownership: the caller frees *out with djob_config_free. */
DJOB_EXTERN int djob_config_new(djob_config_t **out, djob_error_t *err);

/* Deep copy. Ownership: the caller frees *out with djob_config_free. */
DJOB_EXTERN int djob_config_dup(djob_config_t **out, const djob_config_t *conf,
                                djob_error_t *err);

/* NULL is a no-op. */
DJOB_EXTERN void djob_config_free(djob_config_t *conf);

/* Set one key. Unknown keys (other than kafka.*) and values of the wrong
 * form (a port that is not a number) are refused with DJOB_EINVAL.
 * Ownership: name and value are copied. */
DJOB_EXTERN int djob_config_set(djob_config_t *conf, const char *name, const char *value,
                                djob_error_t *err);

/* Set one key from "name=value" (a command line's --set). DJOB_EINVAL
 * without '='. Ownership: pair is not changed; name and value are copied. */
DJOB_EXTERN int djob_config_set_pair(djob_config_t *conf, const char *pair, djob_error_t *err);

/* The value of a key, or NULL when unset and without default.
 * Ownership: lent, valid until the key is set again or conf is freed. */
DJOB_EXTERN const char *djob_config_get(const djob_config_t *conf, const char *name);

/* Integer value of a key (0 when unset). */
DJOB_EXTERN long djob_config_get_int(const djob_config_t *conf, const char *name);

/* Read the variables listed above from the process environment. The djob
 * names win over the prototype's names. */
DJOB_EXTERN int djob_config_load_env(djob_config_t *conf, djob_error_t *err);

/* Visit every kafka.* key with the prefix removed, in the order set. */
DJOB_EXTERN void djob_config_foreach_kafka(const djob_config_t *conf,
                                           void (*fn)(const char *name, const char *value,
                                                      void *opaque),
                                           void *opaque);

/* Route every log event at or below `level` to `fn` (default: JSON lines on
 * stderr at warning level). fn may be NULL to silence logging. */
DJOB_EXTERN void djob_config_set_log(djob_config_t *conf, djob_log_fn fn,
                                     djob_log_level_t level, void *opaque);

DJOB_END_DECLS

#endif
