/*
 * What a test's data looks like from the servers' side, without djob:
 * the number of documents in a MongoDB collection and the number of
 * messages ever written to some Kafka topics (sum of high watermarks).
 * The e2e tests compare it before and after bad requests.
 *
 * usage: e2e_count <collection> <topic>...   prints "<documents> <messages>"
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

static long long count_documents(const char *collection)
{
	mongoc_init();
	bson_error_t e;
	mongoc_uri_t *uri = mongoc_uri_new_with_error(
		env_or("DJOB_MONGO_URI", "mongodb://127.0.0.1:27017/jobsdb"), &e);
	if (!uri) {
		fprintf(stderr, "e2e_count: %s\n", e.message);
		exit(1);
	}
	const char *db = mongoc_uri_get_database(uri);
	mongoc_client_t *client = mongoc_client_new_from_uri(uri);
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
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers",
	                      env_or("DJOB_KAFKA_BROKERS", "127.0.0.1:9092"), errstr,
	                      sizeof errstr) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "e2e_count: %s\n", errstr);
		exit(1);
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (!rk) {
		fprintf(stderr, "e2e_count: %s\n", errstr);
		exit(1);
	}
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

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: e2e_count <collection> <topic>...\n");
		return 2;
	}
	long long docs = count_documents(argv[1]);
	long long msgs = count_messages(argv + 2, argc - 2);
	printf("%lld %lld\n", docs, msgs);
	return 0;
}
