/*
 * The consumer group seen from Kafka (GET /workers): its members, the
 * partitions of the job topics each holds, and how far the group's
 * committed offsets are behind the end of those partitions.
 *
 * Everything comes from librdkafka's admin API and metadata on the
 * client's producer handle: metadata names the job topics and their
 * partitions, DescribeConsumerGroups the members (a worker's client.id is
 * its worker id, see make_consumer in worker.c) and their assignments,
 * ListConsumerGroupOffsets the committed offsets, and
 * rd_kafka_query_watermark_offsets each partition's low and high
 * watermarks.
 */
#include "json.h"
#include "kafka.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
	char *topic;
	int32_t partition;
	int64_t committed; /* -1: the group has none */
	int64_t low, end;
	int owner; /* index of the member holding it, -1: unassigned */
} part_t;

typedef struct {
	part_t *parts;
	size_t n;
	const char **members; /* client ids, lent by the describe result */
	const char **hosts;
	size_t nmembers;
} group_t;

static void group_clear(group_t *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->parts[i].topic);
	free(g->parts);
	free(g->members);
	free(g->hosts);
	memset(g, 0, sizeof *g);
}

static int remaining(int64_t deadline)
{
	int64_t left = deadline - djob_mono_ms();
	return left > 0 ? (int)left : 1;
}

static int cmp_part(const void *a, const void *b)
{
	const part_t *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);
	return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

static part_t *find_part(group_t *g, const char *topic, int32_t partition)
{
	part_t key = {(char *)topic, partition, 0, 0, 0, -1};
	return bsearch(&key, g->parts, g->n, sizeof *g->parts, cmp_part);
}

/* The partitions of every topic whose name starts with the prefix. */
static int read_topics(group_t *g, rd_kafka_t *rk, const char *prefix, int64_t deadline,
                       djob_error_t *err)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, remaining(deadline));
	if (e)
		return djob_set_error(err, DJOB_EKAFKA, 1, "Kafka did not answer: %s",
		                      rd_kafka_err2str(e));
	size_t total = 0, plen = strlen(prefix);
	for (int t = 0; t < md->topic_cnt; t++)
		if (strncmp(md->topics[t].topic, prefix, plen) == 0)
			total += (size_t)md->topics[t].partition_cnt;
	g->parts = calloc(total ? total : 1, sizeof *g->parts);
	int rc = g->parts ? 0 : djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	for (int t = 0; rc == 0 && t < md->topic_cnt; t++) {
		const rd_kafka_metadata_topic_t *mt = &md->topics[t];
		if (strncmp(mt->topic, prefix, plen) != 0)
			continue;
		for (int p = 0; rc == 0 && p < mt->partition_cnt; p++) {
			part_t *x = &g->parts[g->n];
			x->topic = djob_strdup(mt->topic);
			if (!x->topic) {
				rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
				break;
			}
			x->partition = mt->partitions[p].id;
			x->committed = -1;
			x->owner = -1;
			g->n++;
		}
	}
	rd_kafka_metadata_destroy(md);
	if (rc == 0)
		qsort(g->parts, g->n, sizeof *g->parts, cmp_part);
	return rc;
}

/* Run one admin request and wait for its result event until the deadline.
 * Returns the event (the caller destroys it) or NULL with err set. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, const char *what, int64_t deadline,
                                    djob_error_t *err)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, remaining(deadline) + 500);
	if (!ev) {
		djob_set_error(err, DJOB_EKAFKA, 1, "Kafka did not answer %s in time", what);
		return NULL;
	}
	if (rd_kafka_event_error(ev)) {
		djob_set_error(err, DJOB_EKAFKA, 1, "Kafka %s failed: %s", what,
		               rd_kafka_event_error_string(ev));
		rd_kafka_event_destroy(ev);
		return NULL;
	}
	return ev;
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op,
                                              int64_t deadline)
{
	char errstr[256];
	rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);
	rd_kafka_AdminOptions_set_request_timeout(o, remaining(deadline), errstr, sizeof errstr);
	return o;
}

/* The group's state and members; each member's partitions get its index
 * as owner. *ev_out keeps the lent strings alive. */
static int read_members(group_t *g, rd_kafka_t *rk, rd_kafka_queue_t *q, const char *group_id,
                        const char **state_out, rd_kafka_event_t **ev_out, int64_t deadline,
                        djob_error_t *err)
{
	rd_kafka_AdminOptions_t *o =
		admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, deadline);
	rd_kafka_DescribeConsumerGroups(rk, &group_id, 1, o, q);
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_event_t *ev = admin_wait(q, "DescribeConsumerGroups", deadline, err);
	if (!ev)
		return err ? err->code : DJOB_EKAFKA;
	*ev_out = ev;
	size_t cnt = 0;
	const rd_kafka_ConsumerGroupDescription_t **gd =
		rd_kafka_DescribeConsumerGroups_result_groups(
			rd_kafka_event_DescribeConsumerGroups_result(ev), &cnt);
	if (cnt != 1)
		return djob_set_error(err, DJOB_EKAFKA, 1, "Kafka described %zu groups, not one",
		                      cnt);
	const rd_kafka_error_t *ge = rd_kafka_ConsumerGroupDescription_error(gd[0]);
	/* Kafka calls a group it holds nothing about (never joined, or all
	 * its offsets expired) Dead, and newer brokers may answer
	 * GROUP_ID_NOT_FOUND: to an operator either is a group without
	 * workers, which is what Empty says. */
	if (ge && rd_kafka_error_code(ge) == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
		*state_out = "Empty";
		return 0;
	}
	if (ge)
		return djob_set_error(err, DJOB_EKAFKA, 1, "Kafka cannot describe group %s: %s",
		                      group_id, rd_kafka_error_string(ge));
	rd_kafka_consumer_group_state_t st = rd_kafka_ConsumerGroupDescription_state(gd[0]);
	*state_out = st == RD_KAFKA_CONSUMER_GROUP_STATE_DEAD
	                     ? "Empty"
	                     : rd_kafka_consumer_group_state_name(st);
	size_t n = rd_kafka_ConsumerGroupDescription_member_count(gd[0]);
	g->members = calloc(n ? n : 1, sizeof *g->members);
	g->hosts = calloc(n ? n : 1, sizeof *g->hosts);
	if (!g->members || !g->hosts)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	g->nmembers = n;
	for (size_t i = 0; i < n; i++) {
		const rd_kafka_MemberDescription_t *m =
			rd_kafka_ConsumerGroupDescription_member(gd[0], i);
		g->members[i] = rd_kafka_MemberDescription_client_id(m);
		g->hosts[i] = rd_kafka_MemberDescription_host(m);
		const rd_kafka_topic_partition_list_t *l = rd_kafka_MemberAssignment_partitions(
			rd_kafka_MemberDescription_assignment(m));
		for (int k = 0; l && k < l->cnt; k++) {
			part_t *x = find_part(g, l->elems[k].topic, l->elems[k].partition);
			if (x)
				x->owner = (int)i;
		}
	}
	return 0;
}

/* The group's committed offset of every partition. */
static int read_committed(group_t *g, rd_kafka_t *rk, rd_kafka_queue_t *q, const char *group_id,
                          int64_t deadline, djob_error_t *err)
{
	if (g->n == 0)
		return 0;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)g->n);
	for (size_t i = 0; i < g->n; i++)
		rd_kafka_topic_partition_list_add(l, g->parts[i].topic, g->parts[i].partition);
	rd_kafka_ListConsumerGroupOffsets_t *req =
		rd_kafka_ListConsumerGroupOffsets_new(group_id, l);
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_AdminOptions_t *o =
		admin_options(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, deadline);
	rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, o, q);
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_ListConsumerGroupOffsets_destroy(req);
	rd_kafka_event_t *ev = admin_wait(q, "ListConsumerGroupOffsets", deadline, err);
	if (!ev)
		return err ? err->code : DJOB_EKAFKA;
	size_t cnt = 0;
	const rd_kafka_group_result_t **gr = rd_kafka_ListConsumerGroupOffsets_result_groups(
		rd_kafka_event_ListConsumerGroupOffsets_result(ev), &cnt);
	int rc = 0;
	if (cnt != 1)
		rc = djob_set_error(err, DJOB_EKAFKA, 1,
		                    "Kafka listed offsets of %zu groups, not one", cnt);
	else if (rd_kafka_group_result_error(gr[0]))
		rc = djob_set_error(err, DJOB_EKAFKA, 1, "Kafka cannot list the offsets of %s: %s",
		                    group_id,
		                    rd_kafka_error_string(rd_kafka_group_result_error(gr[0])));
	const rd_kafka_topic_partition_list_t *res =
		rc == 0 ? rd_kafka_group_result_partitions(gr[0]) : NULL;
	for (int k = 0; res && k < res->cnt; k++) {
		part_t *x = find_part(g, res->elems[k].topic, res->elems[k].partition);
		/* No committed offset comes back as RD_KAFKA_OFFSET_INVALID. */
		if (x && !res->elems[k].err && res->elems[k].offset >= 0)
			x->committed = res->elems[k].offset;
	}
	rd_kafka_event_destroy(ev);
	return rc;
}

static int read_watermarks(group_t *g, rd_kafka_t *rk, int64_t deadline, djob_error_t *err)
{
	for (size_t i = 0; i < g->n; i++) {
		part_t *x = &g->parts[i];
		rd_kafka_resp_err_t e;
		/* A topic just made has no leader for a moment (its first
		 * seconds answer NOT_LEADER): ask again while time remains. */
		while ((e = rd_kafka_query_watermark_offsets(rk, x->topic, x->partition, &x->low,
		                                             &x->end, remaining(deadline))) &&
		       (e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
		        e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
		        e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) &&
		       djob_mono_ms() + 100 < deadline) {
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (e)
			return djob_set_error(err, DJOB_EKAFKA, 1,
			                      "Kafka did not give the end of %s[%d]: %s", x->topic,
			                      (int)x->partition, rd_kafka_err2str(e));
	}
	return 0;
}

static int64_t part_lag(const part_t *x)
{
	int64_t from = x->committed >= 0 ? x->committed : x->low;
	return x->end > from ? x->end - from : 0;
}

static cJSON *part_json(const part_t *x)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "topic", x->topic);
	cJSON_AddNumberToObject(o, "partition", x->partition);
	cJSON_AddItemToObject(o, "committed", djob_json_int64(x->committed));
	cJSON_AddItemToObject(o, "end", djob_json_int64(x->end));
	cJSON_AddItemToObject(o, "lag", djob_json_int64(part_lag(x)));
	return o;
}

static int cmp_str(const void *a, const void *b)
{
	const char *const *x = a, *const *y = b;
	return strcmp(*x ? *x : "", *y ? *y : "");
}

static char *group_json(group_t *g, const char *group_id, const char *state)
{
	char asof[32];
	djob_format_iso(djob_now_ms(), asof);
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "asOf", asof);
	cJSON_AddStringToObject(root, "group", group_id);
	cJSON_AddStringToObject(root, "state", state);
	cJSON *workers = cJSON_AddArrayToObject(root, "workers");
	/* Members by id, so the answer reads the same from one call to the
	 * next: order[] holds member indexes sorted by client id. */
	size_t *order = calloc(g->nmembers ? g->nmembers : 1, sizeof *order);
	for (size_t i = 0; order && i < g->nmembers; i++) {
		size_t j = i;
		while (j > 0 && cmp_str(&g->members[order[j - 1]], &g->members[i]) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (size_t k = 0; order && k < g->nmembers; k++) {
		size_t m = order[k];
		cJSON *w = cJSON_CreateObject();
		cJSON_AddStringToObject(w, "id", g->members[m] ? g->members[m] : "");
		cJSON_AddStringToObject(w, "host", g->hosts[m] ? g->hosts[m] : "");
		cJSON *parts = cJSON_AddArrayToObject(w, "partitions");
		int64_t lag = 0;
		for (size_t i = 0; i < g->n; i++)
			if (g->parts[i].owner == (int)m) {
				cJSON_AddItemToArray(parts, part_json(&g->parts[i]));
				lag += part_lag(&g->parts[i]);
			}
		cJSON_AddItemToObject(w, "lag", djob_json_int64(lag));
		cJSON_AddItemToArray(workers, w);
	}
	free(order);
	cJSON *unassigned = cJSON_AddArrayToObject(root, "unassigned");
	cJSON *lag = cJSON_AddObjectToObject(root, "lag");
	cJSON *by_topic = cJSON_CreateObject();
	int64_t total = 0, topic_lag = 0;
	for (size_t i = 0; i < g->n; i++) {
		const part_t *x = &g->parts[i];
		if (x->owner < 0)
			cJSON_AddItemToArray(unassigned, part_json(x));
		total += part_lag(x);
		topic_lag += part_lag(x);
		/* parts are sorted by topic: the last of a topic closes its sum. */
		if (i + 1 == g->n || strcmp(g->parts[i + 1].topic, x->topic) != 0) {
			cJSON_AddItemToObject(by_topic, x->topic, djob_json_int64(topic_lag));
			topic_lag = 0;
		}
	}
	cJSON_AddItemToObject(lag, "total", djob_json_int64(total));
	cJSON_AddItemToObject(lag, "byTopic", by_topic);
	char *out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

int djob_kafka_group_json(rd_kafka_t *rk, const djob_config_t *conf, int timeout_ms,
                          char **json_out, djob_error_t *err)
{
	*json_out = NULL;
	const char *group_id = djob_config_get(conf, "group.id");
	const char *prefix = djob_config_get(conf, "topic.prefix");
	int64_t deadline = djob_mono_ms() + timeout_ms;
	group_t g = {0};
	const char *state = NULL;
	rd_kafka_event_t *described = NULL;
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	int rc = read_topics(&g, rk, prefix ? prefix : "jobs.", deadline, err);
	if (rc == 0)
		rc = read_members(&g, rk, q, group_id, &state, &described, deadline, err);
	if (rc == 0)
		rc = read_committed(&g, rk, q, group_id, deadline, err);
	if (rc == 0)
		rc = read_watermarks(&g, rk, deadline, err);
	if (rc == 0 && !(*json_out = group_json(&g, group_id, state)))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	if (described)
		rd_kafka_event_destroy(described);
	rd_kafka_queue_destroy(q);
	group_clear(&g);
	return rc;
}
