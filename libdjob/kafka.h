/*
 * Kafka plumbing shared by the client (producer) and the worker
 * (consumer): configuration, logging, topics. Not installed.
 */
#ifndef DJOB_KAFKA_H
#define DJOB_KAFKA_H

#include "djob_private.h"

#include <librdkafka/rdkafka.h>

/* A librdkafka configuration from djob's: bootstrap.servers, the kafka.*
 * pass-through and log routing. NULL with err set on a bad property. */
rd_kafka_conf_t *djob_kafka_conf_new(const djob_config_t *conf, djob_error_t *err);

/* Set one librdkafka property unless the user's kafka.* keys set it. */
int djob_kafka_conf_default(rd_kafka_conf_t *kc, const djob_config_t *conf, const char *name,
                            const char *value, djob_error_t *err);

/* "jobs.<type>" with the configured prefix, into buf. */
void djob_topic_name(const djob_config_t *conf, const char *type, char *buf, size_t size);

/* Create the topics that do not exist yet (partitions from the config
 * key topic.partitions). Existing topics are left as they are. */
int djob_kafka_ensure_topics(rd_kafka_t *rk, const djob_config_t *conf, char **topics, size_t n,
                             djob_error_t *err);

/* The producer: idempotent, acks=all, one delivery report per message. */
typedef struct djob_producer_s djob_producer_t;

int djob_producer_new(djob_producer_t **out, const djob_config_t *conf, djob_error_t *err);
void djob_producer_free(djob_producer_t *p);

typedef struct {
	const char *topic;
	const char *key;
	const char *value;
	size_t value_len;
} djob_kafka_msg_t;

/* Produce messages and wait until Kafka acknowledged every one (or failed).
 * Returns 0 when all were delivered. */
int djob_producer_send(djob_producer_t *p, const djob_kafka_msg_t *msgs, size_t n,
                       djob_error_t *err);

/* 0 when the cluster answers a metadata request within timeout_ms. */
int djob_producer_ping(djob_producer_t *p, int timeout_ms, djob_error_t *err);

/* The largest message value the producer takes (its message.max.bytes,
 * less room for the key and framing); 0 when not known. */
size_t djob_producer_max_message(const djob_producer_t *p);

/* The underlying handle (for admin calls). */
rd_kafka_t *djob_producer_handle(djob_producer_t *p);

/* The consumer group of config group.id as GET /workers answers
 * (kafka_group.c): members, their partitions of the topic.prefix topics,
 * committed offsets, ends and lag. Waits at most about timeout_ms; a Kafka
 * that does not answer is DJOB_EKAFKA. */
int djob_kafka_group_json(rd_kafka_t *rk, const djob_config_t *conf, int timeout_ms,
                          char **json_out, djob_error_t *err);

#endif
