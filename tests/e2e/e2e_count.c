/*
 * What a test's data looks like from the servers' side, without djob:
 * the number of documents in a MongoDB collection and the number of
 * messages ever written to some Kafka topics (sum of high watermarks).
 * The e2e tests compare it before and after bad requests.
 *
 * usage: e2e_count <collection> <topic>...   prints "<documents> <messages>"
 *        e2e_count --drop <collection> <topic prefix> <group>
 * The second form removes what a passed case leaves on the servers: the
 * collection and its side collections (<collection>_*), the topics whose
 * names start with the prefix, and the consumer group. Without it every
 * run adds a dozen partitions to the dev stack's Kafka, which then takes
 * longer to start with each run (8,780 partitions after three runs of
 * scripts/test: 87 s, past devstack's 60 s, in the fault case's restart).
 * Reads DJOB_MONGO_URI and DJOB_KAFKA_BROKERS. Exits 1 when a server does
 * not answer.
 */
#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	return v && *v ? v : dflt;
}

static mongoc_client_t *mongo_client(mongoc_uri_t **uri_out)
{
	mongoc_init();
	bson_error_t e;
	mongoc_uri_t *uri = mongoc_uri_new_with_error(
		env_or("DJOB_MONGO_URI", "mongodb://127.0.0.1:27017/jobsdb"), &e);
	if (!uri) {
		fprintf(stderr, "e2e_count: %s\n", e.message);
		exit(1);
	}
	*uri_out = uri;
	return mongoc_client_new_from_uri(uri);
}

/* A producer handle on DJOB_KAFKA_BROKERS, for metadata and admin calls. */
static rd_kafka_t *kafka_handle(void)
{
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk = NULL;
	if (rd_kafka_conf_set(conf, "bootstrap.servers",
	                      env_or("DJOB_KAFKA_BROKERS", "127.0.0.1:9092"), errstr,
	                      sizeof errstr) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
		rd_kafka_conf_destroy(conf);
	else
		rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (!rk) {
		fprintf(stderr, "e2e_count: %s\n", errstr);
		exit(1);
	}
	return rk;
}

static long long count_documents(const char *collection)
{
	mongoc_uri_t *uri;
	mongoc_client_t *client = mongo_client(&uri);
	const char *db = mongoc_uri_get_database(uri);
	bson_error_t e;
	bson_t *cmd = BCON_NEW("count", BCON_UTF8(collection));
	bson_t reply;
	long long n = -1;
	if (mongoc_client_command_simple(client, db && *db ? db : "jobsdb", cmd, NULL, &reply,
	                                 &e)) {
		bson_iter_t it;
		if (bson_iter_init_find(&it, &reply, "n"))
			n = bson_iter_as_int64(&it);
	} else {
		fprintf(stderr, "e2e_count: count: %s\n", e.message);
	}
	bson_destroy(&reply);
	bson_destroy(cmd);
	mongoc_client_destroy(client);
	mongoc_uri_destroy(uri);
	mongoc_cleanup();
	if (n < 0)
		exit(1);
	return n;
}

static long long count_messages(char **topics, int n)
{
	rd_kafka_t *rk = kafka_handle();
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	if (err) {
		fprintf(stderr, "e2e_count: metadata: %s\n", rd_kafka_err2str(err));
		exit(1);
	}
	long long total = 0;
	for (int t = 0; t < md->topic_cnt; t++) {
		int wanted = 0;
		for (int i = 0; i < n; i++)
			wanted |= strcmp(md->topics[t].topic, topics[i]) == 0;
		for (int p = 0; wanted && p < md->topics[t].partition_cnt; p++) {
			int64_t lo, hi;
			/* A topic made a moment ago may have no leader yet: its
			 * first queries answer NOT_LEADER; ask again for 10 s. */
			for (int tries = 0;; tries++) {
				err = rd_kafka_query_watermark_offsets(
					rk, md->topics[t].topic, md->topics[t].partitions[p].id,
					&lo, &hi, 10000);
				if (tries >= 100 ||
				    (err != RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION &&
				     err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE &&
				     err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
					break;
				struct timespec ts = {0, 100 * 1000 * 1000};
				nanosleep(&ts, NULL);
			}
			if (err) {
				fprintf(stderr, "e2e_count: watermarks: %s\n",
				        rd_kafka_err2str(err));
				exit(1);
			}
			total += hi;
		}
	}
	rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
	return total;
}

static int drop_collections(const char *collection)
{
	mongoc_uri_t *uri;
	mongoc_client_t *client = mongo_client(&uri);
	const char *dbname = mongoc_uri_get_database(uri);
	mongoc_database_t *db =
		mongoc_client_get_database(client, dbname && *dbname ? dbname : "jobsdb");
	bson_error_t e;
	char **names = mongoc_database_get_collection_names_with_opts(db, NULL, &e);
	int rc = 0;
	size_t len = strlen(collection);
	for (size_t i = 0; names && names[i]; i++) {
		if (strncmp(names[i], collection, len) != 0 ||
		    (names[i][len] != '\0' && names[i][len] != '_'))
			continue;
		mongoc_collection_t *c = mongoc_database_get_collection(db, names[i]);
		if (!mongoc_collection_drop(c, &e)) {
			fprintf(stderr, "e2e_count: drop %s: %s\n", names[i], e.message);
			rc = 1;
		}
		mongoc_collection_destroy(c);
	}
	if (!names) {
		fprintf(stderr, "e2e_count: listCollections: %s\n", e.message);
		rc = 1;
	}
	bson_strfreev(names);
	mongoc_database_destroy(db);
	mongoc_client_destroy(client);
	mongoc_uri_destroy(uri);
	mongoc_cleanup();
	return rc;
}

/* Wait for an admin result event; 0 when it came without an error. */
static int admin_result(rd_kafka_queue_t *q, const char *what)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
	int rc = 0;
	if (!ev || rd_kafka_event_error(ev)) {
		fprintf(stderr, "e2e_count: %s: %s\n", what,
		        ev ? rd_kafka_event_error_string(ev) : "no answer in 20 s");
		rc = 1;
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	return rc;
}

static int drop_topics_and_group(const char *prefix, const char *group)
{
	rd_kafka_t *rk = kafka_handle();
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	if (err) {
		fprintf(stderr, "e2e_count: metadata: %s\n", rd_kafka_err2str(err));
		rd_kafka_destroy(rk);
		return 1;
	}
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_DeleteTopic_t **del = calloc((size_t)md->topic_cnt + 1, sizeof *del);
	int n = 0, rc = 0;
	for (int t = 0; del && t < md->topic_cnt; t++)
		if (strncmp(md->topics[t].topic, prefix, strlen(prefix)) == 0)
			del[n++] = rd_kafka_DeleteTopic_new(md->topics[t].topic);
	rd_kafka_metadata_destroy(md);
	if (n > 0) {
		rd_kafka_DeleteTopics(rk, del, (size_t)n, NULL, q);
		rc |= admin_result(q, "DeleteTopics");
		rd_kafka_DeleteTopic_destroy_array(del, (size_t)n);
	}
	free(del);
	rd_kafka_DeleteGroup_t *g = rd_kafka_DeleteGroup_new(group);
	rd_kafka_DeleteGroups(rk, &g, 1, NULL, q);
	/* A group that never had members or offsets is not there to delete. */
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
	if (ev) {
		size_t cnt = 0;
		const rd_kafka_group_result_t **gr = rd_kafka_DeleteGroups_result_groups(
			rd_kafka_event_DeleteGroups_result(ev), &cnt);
		const rd_kafka_error_t *ge = cnt == 1 ? rd_kafka_group_result_error(gr[0]) : NULL;
		if (rd_kafka_event_error(ev) ||
		    (ge && rd_kafka_error_code(ge) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND)) {
			fprintf(stderr, "e2e_count: DeleteGroups %s: %s\n", group,
			        ge ? rd_kafka_error_string(ge) : rd_kafka_event_error_string(ev));
			rc = 1;
		}
		rd_kafka_event_destroy(ev);
	}
	rd_kafka_DeleteGroup_destroy(g);
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy(rk);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--drop") == 0)
		return drop_collections(argv[2]) | drop_topics_and_group(argv[3], argv[4]);
	if (argc < 2) {
		fprintf(stderr, "usage: e2e_count <collection> <topic>... | --drop <collection> "
		                "<topic prefix> <group>\n");
		return 2;
	}
	long long docs = count_documents(argv[1]);
	long long msgs = count_messages(argv + 2, argc - 2);
	printf("%lld %lld\n", docs, msgs);
	return 0;
}
