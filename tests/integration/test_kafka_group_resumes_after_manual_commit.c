/*
 * test_kafka_group_resumes_after_manual_commit CODEC
 *
 * The consumer-group contract the worker relies on (DESIGN.md section 5),
 * proved against the dev stack's Kafka with Debian's librdkafka: with
 * enable.auto.commit=false and offsets committed by hand (rd_kafka_commit), a
 * second consumer of the same group resumes right after the committed offsets
 * and sees none of the messages the first one committed. CODEC is the
 * producer's compression.codec: none, gzip, snappy, lz4 or zstd.
 */
#include "stack.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARTITIONS 3
#define FIRST_BATCH 60
#define SECOND_BATCH 15
#define TIMEOUT_MS 30000
/* How long a consumer keeps polling after it has all it expects, to catch
 * messages it should not get. */
#define QUIET_MS 1000

static char topic[128];
static char group[128];
static int delivered, delivery_failed;
static bool seen[FIRST_BATCH + SECOND_BATCH];

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
		stack_fail("cannot set %s=%s: %s", name, value, errstr);
}

static rd_kafka_conf_t *base_conf(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	conf_set(conf, "bootstrap.servers", stack_kafka_brokers());
	conf_set(conf, "socket.timeout.ms", "10000");
	return conf;
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
	char errstr[512];
	rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);

	if (!rk)
		stack_fail("rd_kafka_new: %s", errstr);
	return rk;
}

/* Fail at once, with a hint, when no broker answers. */
static void require_broker(rd_kafka_t *rk)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, 5000);

	if (err)
		stack_fail("Kafka at %s does not answer (%s): is the dev stack up? "
		           "(scripts/devstack up)",
		           stack_kafka_brokers(), rd_kafka_err2str(err));
	rd_kafka_metadata_destroy(md);
}

static void create_topic(rd_kafka_t *rk)
{
	char errstr[512];
	rd_kafka_NewTopic_t *nt =
		rd_kafka_NewTopic_new(topic, PARTITIONS, 1, errstr, sizeof errstr);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev;
	const rd_kafka_topic_result_t **res;
	size_t n;

	STACK_CHECK(nt, "NewTopic %s: %s", topic, errstr);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, TIMEOUT_MS);
	STACK_CHECK(ev, "CreateTopics %s: no answer within %d ms", topic, TIMEOUT_MS);
	STACK_CHECK(!rd_kafka_event_error(ev), "CreateTopics %s: %s", topic,
	            rd_kafka_event_error_string(ev));
	res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
	STACK_CHECK(n == 1 && !rd_kafka_topic_result_error(res[0]), "CreateTopics %s: %s", topic,
	            n ? rd_kafka_topic_result_error_string(res[0]) : "no result");
	rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
}

static void delete_topic(rd_kafka_t *rk)
{
	rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev;

	/* Best effort: a leftover topic only costs disk in .devstack/. */
	rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 10000);
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_DeleteTopic_destroy(dt);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err) {
		delivery_failed++;
		fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
	} else {
		delivered++;
	}
}

/* Produce values from..to-1 (decimal text) with acks=all and wait for them. */
static void produce_range(const char *codec, int from, int to)
{
	rd_kafka_conf_t *conf = base_conf();
	rd_kafka_t *rk;
	char value[16], key[16];

	conf_set(conf, "acks", "all");
	conf_set(conf, "enable.idempotence", "true");
	conf_set(conf, "compression.codec", codec);
	conf_set(conf, "linger.ms", "5");
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rk = new_client(RD_KAFKA_PRODUCER, conf);
	require_broker(rk);
	if (from == 0)
		create_topic(rk);

	delivered = delivery_failed = 0;
	for (int i = from; i < to; i++) {
		snprintf(key, sizeof key, "job-%d", i);
		snprintf(value, sizeof value, "%d", i);
		rd_kafka_resp_err_t err = rd_kafka_producev(
			rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
			RD_KAFKA_V_VALUE(value, strlen(value)),
			RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		STACK_CHECK(!err, "produce %d: %s", i, rd_kafka_err2str(err));
		rd_kafka_poll(rk, 0);
	}
	STACK_CHECK(rd_kafka_flush(rk, TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR,
	            "flush: %d messages still in flight after %d ms", rd_kafka_outq_len(rk),
	            TIMEOUT_MS);
	STACK_CHECK(delivered == to - from && delivery_failed == 0,
	            "%d of %d messages acknowledged (%d failed) with compression.codec=%s",
	            delivered, to - from, delivery_failed, codec);
	rd_kafka_destroy(rk);
	stack_ok("produced %d messages with compression.codec=%s", to - from, codec);
}

static rd_kafka_t *new_group_consumer(void)
{
	rd_kafka_conf_t *conf = base_conf();
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	conf_set(conf, "group.id", group);
	conf_set(conf, "enable.auto.commit", "false");
	conf_set(conf, "enable.auto.offset.store", "false");
	conf_set(conf, "auto.offset.reset", "earliest");
	rk = new_client(RD_KAFKA_CONSUMER, conf);
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(rk, sub);
	STACK_CHECK(!err, "subscribe %s: %s", topic, rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(sub);
	return rk;
}

/*
 * Consume until every value in from..to-1 has arrived, then QUIET_MS more.
 * Any value outside the range, or seen twice, fails the test. Returns the
 * offsets to commit: one past the last message consumed per partition.
 */
static rd_kafka_topic_partition_list_t *consume_exactly(rd_kafka_t *rk, int from, int to)
{
	int64_t next[PARTITIONS] = {0};
	int got = 0;
	int64_t deadline = stack_now_ms() + TIMEOUT_MS, quiet_until = 0;

	for (;;) {
		int64_t now = stack_now_ms();
		if (got == to - from && !quiet_until)
			quiet_until = now + QUIET_MS;
		if (quiet_until && now >= quiet_until)
			break;
		STACK_CHECK(now < deadline, "group %s got %d of %d messages within %d ms", group,
		            got, to - from, TIMEOUT_MS);

		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		STACK_CHECK(!m->err, "consume: %s", rd_kafka_message_errstr(m));
		STACK_CHECK(m->partition >= 0 && m->partition < PARTITIONS,
		            "unexpected partition %d", (int)m->partition);

		char value[16] = "";
		memcpy(value, m->payload, m->len < sizeof value - 1 ? m->len : sizeof value - 1);
		int v = atoi(value);
		STACK_CHECK(v >= from && v < to,
		            "message %d (partition %d offset %lld) was delivered again after its "
		            "offset "
		            "was committed; expected only %d..%d",
		            v, (int)m->partition, (long long)m->offset, from, to - 1);
		STACK_CHECK(!seen[v], "message %d delivered twice", v);
		seen[v] = true;
		got++;
		if (m->offset + 1 > next[m->partition])
			next[m->partition] = m->offset + 1;
		rd_kafka_message_destroy(m);
	}

	rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(PARTITIONS);
	for (int p = 0; p < PARTITIONS; p++)
		if (next[p] > 0)
			rd_kafka_topic_partition_list_add(offsets, topic, p)->offset = next[p];
	stack_ok("group %s consumed exactly messages %d..%d", group, from, to - 1);
	return offsets;
}

/* Commit synchronously, then read the offsets back from the coordinator. */
static void commit_and_verify(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *offsets)
{
	rd_kafka_resp_err_t err = rd_kafka_commit(rk, offsets, 0);
	STACK_CHECK(!err, "rd_kafka_commit: %s", rd_kafka_err2str(err));

	rd_kafka_topic_partition_list_t *back = rd_kafka_topic_partition_list_copy(offsets);
	for (int i = 0; i < back->cnt; i++)
		back->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
	err = rd_kafka_committed(rk, back, TIMEOUT_MS);
	STACK_CHECK(!err, "rd_kafka_committed: %s", rd_kafka_err2str(err));
	for (int i = 0; i < back->cnt; i++) {
		STACK_CHECK(
			!back->elems[i].err && back->elems[i].offset == offsets->elems[i].offset,
			"partition %d: committed offset reads back as %lld, expected %lld (%s)",
			(int)back->elems[i].partition, (long long)back->elems[i].offset,
			(long long)offsets->elems[i].offset, rd_kafka_err2str(back->elems[i].err));
	}
	rd_kafka_topic_partition_list_destroy(back);
	stack_ok("committed and read back offsets of %d partitions", offsets->cnt);
}

static void close_consumer(rd_kafka_t *rk)
{
	rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk);
	STACK_CHECK(!err, "consumer close: %s", rd_kafka_err2str(err));
	rd_kafka_destroy(rk);
}

int main(int argc, char **argv)
{
	const char *codec = argc > 1 ? argv[1] : "none";
	char prefix[64];
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *offsets;

	stack_test_name = "test_kafka_group_resumes_after_manual_commit";
	snprintf(prefix, sizeof prefix, "djob-it-%s", codec);
	stack_unique_name(topic, sizeof topic, prefix, 0);
	stack_unique_name(group, sizeof group, prefix, 0);
	printf("# brokers %s, topic %s, group %s, librdkafka %s\n", stack_kafka_brokers(), topic,
	       group, rd_kafka_version_str());

	produce_range(codec, 0, FIRST_BATCH);

	/* First member: takes everything, commits by hand, leaves the group. */
	rk = new_group_consumer();
	offsets = consume_exactly(rk, 0, FIRST_BATCH);
	commit_and_verify(rk, offsets);
	rd_kafka_topic_partition_list_destroy(offsets);
	close_consumer(rk);

	produce_range(codec, FIRST_BATCH, FIRST_BATCH + SECOND_BATCH);

	/* Second member of the same group: only the messages after the commit. */
	rk = new_group_consumer();
	offsets = consume_exactly(rk, FIRST_BATCH, FIRST_BATCH + SECOND_BATCH);
	commit_and_verify(rk, offsets);
	rd_kafka_topic_partition_list_destroy(offsets);
	close_consumer(rk);

	rk = new_client(RD_KAFKA_PRODUCER, base_conf());
	delete_topic(rk);
	rd_kafka_destroy(rk);
	stack_ok("%s with compression.codec=%s", stack_test_name, codec);
	return 0;
}
