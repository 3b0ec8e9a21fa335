/*
 * raw_probe: the ceiling djob is measured against. It performs the server
 * operations one djob job needs, with bare librdkafka and libmongoc calls,
 * batched and concurrent as far as those libraries (and FerretDB) allow:
 *
 *   submit: outbox insert, job insert, Kafka produce (acks=all, idempotent),
 *           outbox delete                      -- insert_many / delete $in per batch
 *   work:   claim  = lock insert "<id>:1" + update by _id
 *           finish = lock insert "<id>:2" + update by _id
 *                                              -- locks insert_many per batch; updates
 *                                                 concurrent per job
 *           (djob's worker reads a job only when the lock shows it changed
 *           since the message or its own last write; here it never has)
 *
 * Modes (one JSON line on stdout):
 *   e2e    submit N jobs and work them off at the same time: jobs/s end to end
 *   submit the submit side alone: jobs/s
 *   get    insert N jobs, then find one of them by _id from T threads for S
 *          seconds: reads/s
 *   drop   drop COLL and its side collections (a djob run's leftovers)
 *
 * Updates are one command per job (concurrent across the work threads), not
 * a multi-statement bulk: FerretDB 1.24's SQLite backend holds a pooled
 * connection per statement until the command ends and deadlocks beyond its
 * pool of 100 (see libdjob/store.c); a 50-statement bulk from 4 threads
 * hung the server. Inserts of many documents are one statement and batch.
 *
 * usage: raw_probe MODE [-n N] [-b BATCH] [-p PRODUCERS] [-c WORKERS]
 *                  [-s SECONDS] -k COLL -t TOPIC
 * Servers from DJOB_KAFKA_BROKERS and DJOB_MONGO_URI.
 */
#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 50

static const char *brokers, *mongo_uri, *coll_name, *topic;
static int n_jobs = 2000, batch = 20, producers = 2, workers = 4, seconds = 5;
static char db_name[128] = "jobsdb";
static mongoc_client_pool_t *pool;
static rd_kafka_t *producer;
static atomic_long produced, finished, errors;
static atomic_int next_job;
/* Time spent per kind of server call (microseconds) and the calls made. */
static atomic_llong us_lock, us_update, n_lock, n_update;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "raw_probe: %s: %s\n", what, msg);
	exit(1);
}

static void uuid_v4(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		die("getrandom", "failed");
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
	         b[13], b[14], b[15]);
}

static mongoc_collection_t *coll(mongoc_client_t *c, const char *suffix)
{
	char name[256];
	snprintf(name, sizeof name, "%s%s%s", coll_name, *suffix ? "_" : "", suffix);
	return mongoc_client_get_collection(c, db_name, name);
}

static void check(bool ok, const bson_error_t *e, const char *what)
{
	if (!ok) {
		atomic_fetch_add(&errors, 1);
		fprintf(stderr, "raw_probe: %s: %s\n", what, e->message);
	}
}

/* The same indexes djob's store creates, so writes cost the same. */
static void create_indexes(void)
{
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	mongoc_database_t *db = mongoc_client_get_database(c, db_name);
	char outbox[256];
	snprintf(outbox, sizeof outbox, "%s_outbox", coll_name);
	bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(coll_name), "indexes", "[", "{", "key",
	                       "{", "status", BCON_INT32(1), "type", BCON_INT32(1), "createdAt",
	                       BCON_INT32(-1), "}", "name", BCON_UTF8("status_type_created"), "}",
	                       "{", "key", "{", "status", BCON_INT32(1), "runAt", BCON_INT32(1),
	                       "}", "name", BCON_UTF8("status_runAt"), "}", "{", "key", "{",
	                       "status", BCON_INT32(1), "leaseUntil", BCON_INT32(1), "}", "name",
	                       BCON_UTF8("status_leaseUntil"), "}", "{", "key", "{", "createdAt",
	                       BCON_INT32(-1), "}", "name", BCON_UTF8("created"), "}", "]");
	bson_t *cmd2 = BCON_NEW("createIndexes", BCON_UTF8(outbox), "indexes", "[", "{", "key", "{",
	                        "at", BCON_INT32(1), "}", "name", BCON_UTF8("at"), "}", "]");
	bson_error_t e;
	check(mongoc_database_write_command_with_opts(db, cmd, NULL, NULL, &e), &e,
	      "createIndexes");
	check(mongoc_database_write_command_with_opts(db, cmd2, NULL, NULL, &e), &e,
	      "createIndexes");
	bson_destroy(cmd);
	bson_destroy(cmd2);
	mongoc_database_destroy(db);
	mongoc_client_pool_push(pool, c);
}

static void create_topic(void)
{
	char errstr[256];
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 3, -1, errstr, sizeof errstr);
	rd_kafka_queue_t *q = rd_kafka_queue_new(producer);
	rd_kafka_CreateTopics(producer, &nt, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	/* Wait until every partition has a leader: the first produce must not
	 * pay for the topic's creation inside the clock. */
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer, topic, NULL);
	for (double until = now_s() + 15; now_s() < until; usleep(100000)) {
		const struct rd_kafka_metadata *md = NULL;
		bool ready = false;
		if (rd_kafka_metadata(producer, 0, rkt, &md, 2000) == 0 && md->topic_cnt == 1 &&
		    md->topics[0].err == 0 && md->topics[0].partition_cnt > 0) {
			ready = true;
			for (int i = 0; i < md->topics[0].partition_cnt; i++)
				if (md->topics[0].partitions[i].leader < 0)
					ready = false;
		}
		if (md)
			rd_kafka_metadata_destroy(md);
		if (ready)
			break;
	}
	rd_kafka_topic_destroy(rkt);
}

/* ---- submit side ---- */

typedef struct {
	atomic_int pending;
	atomic_int failed;
} dr_batch_t;

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	dr_batch_t *b = m->_private;
	if (m->err)
		atomic_fetch_add(&b->failed, 1);
	else
		atomic_fetch_add(&produced, 1);
	atomic_fetch_sub(&b->pending, 1);
}

static atomic_int stop_poller;

static void *poll_loop(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop_poller))
		rd_kafka_poll(producer, 100);
	return NULL;
}

static void make_producer(void)
{
	char errstr[512];
	rd_kafka_conf_t *kc = rd_kafka_conf_new();
	const char *props[][2] = {{"bootstrap.servers", brokers},
	                          {"enable.idempotence", "true"},
	                          {"acks", "all"},
	                          {"linger.ms", "0"},
	                          {"client.id", "raw_probe"}};
	for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
		if (rd_kafka_conf_set(kc, props[i][0], props[i][1], errstr, sizeof errstr))
			die(props[i][0], errstr);
	rd_kafka_conf_set_dr_msg_cb(kc, delivered);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof errstr);
	if (!producer)
		die("producer", errstr);
}

/* One batch: outbox insert_many, jobs insert_many, produce, wait for the
 * acknowledgements, outbox delete {_id: {$in: ids}}. */
static void submit_batch(mongoc_client_t *c, int first, int n)
{
	char ids[MAX_BATCH][37];
	bson_t *outbox[MAX_BATCH], *jobs[MAX_BATCH];
	char *values[MAX_BATCH];
	int64_t now = wall_ms();
	for (int i = 0; i < n; i++) {
		uuid_v4(ids[i]);
		char input[32];
		snprintf(input, sizeof input, "raw-%d", first + i);
		outbox[i] = BCON_NEW("_id", BCON_UTF8(ids[i]), "at", BCON_DATE_TIME(now));
		jobs[i] = BCON_NEW("_id", BCON_UTF8(ids[i]), "type", BCON_UTF8("compute"), "status",
		                   BCON_UTF8("queued"), "payload", "{", "input", BCON_UTF8(input),
		                   "}", "attempts", BCON_INT32(0), "maxAttempts", BCON_INT32(3),
		                   "createdAt", BCON_DATE_TIME(now), "updatedAt",
		                   BCON_DATE_TIME(now), "seq", BCON_INT64(0));
		values[i] = bson_as_relaxed_extended_json(jobs[i], NULL);
	}
	mongoc_collection_t *ob = coll(c, "outbox"), *jc = coll(c, "");
	bson_t *unordered = BCON_NEW("ordered", BCON_BOOL(false));
	bson_error_t e;
	check(mongoc_collection_insert_many(ob, (const bson_t **)outbox, (size_t)n, unordered, NULL,
	                                    &e),
	      &e, "outbox insert");
	check(mongoc_collection_insert_many(jc, (const bson_t **)jobs, (size_t)n, NULL, NULL, &e),
	      &e, "job insert");
	dr_batch_t b = {n, 0};
	for (int i = 0; i < n; i++) {
		rd_kafka_resp_err_t ke;
		while ((ke = rd_kafka_producev(
				producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(ids[i], 36),
				RD_KAFKA_V_VALUE(values[i], strlen(values[i])),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&b),
				RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			usleep(1000);
		if (ke) {
			atomic_fetch_add(&b.failed, 1);
			atomic_fetch_sub(&b.pending, 1);
		}
	}
	while (atomic_load(&b.pending) > 0)
		usleep(200);
	if (atomic_load(&b.failed))
		atomic_fetch_add(&errors, atomic_load(&b.failed));
	bson_t f = BSON_INITIALIZER, idd, in;
	BSON_APPEND_DOCUMENT_BEGIN(&f, "_id", &idd);
	BSON_APPEND_ARRAY_BEGIN(&idd, "$in", &in);
	for (int i = 0; i < n; i++) {
		char k[16];
		snprintf(k, sizeof k, "%d", i);
		BSON_APPEND_UTF8(&in, k, ids[i]);
	}
	bson_append_array_end(&idd, &in);
	bson_append_document_end(&f, &idd);
	check(mongoc_collection_delete_many(ob, &f, NULL, NULL, &e), &e, "outbox delete");
	bson_destroy(&f);
	bson_destroy(unordered);
	mongoc_collection_destroy(ob);
	mongoc_collection_destroy(jc);
	for (int i = 0; i < n; i++) {
		bson_destroy(outbox[i]);
		bson_destroy(jobs[i]);
		bson_free(values[i]);
	}
}

static void *producer_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	for (;;) {
		int first = atomic_fetch_add(&next_job, batch);
		if (first >= n_jobs)
			break;
		int n = first + batch > n_jobs ? n_jobs - first : batch;
		submit_batch(c, first, n);
	}
	mongoc_client_pool_push(pool, c);
	return NULL;
}

/* ---- work side ---- */

typedef struct wbatch_s {
	struct wbatch_s *next;
	int n;
	char ids[MAX_BATCH][37];
	int32_t partition[MAX_BATCH];
	int64_t offset[MAX_BATCH];
} wbatch_t;

static pthread_mutex_t wq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cv = PTHREAD_COND_INITIALIZER;
static wbatch_t *wq_head, *wq_tail;
static bool wq_quit;
static rd_kafka_t *consumer;

static int64_t doc_count(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it)
	               ? bson_iter_as_int64(&it)
	               : 0;
}

/* One transition of a batch: the locks in one insert_many, an update_one
 * by _id per job. */
static long transition_batch(mongoc_client_t *c, const wbatch_t *b, int seq, bool claim)
{
	mongoc_collection_t *jc = coll(c, ""), *locks = coll(c, "locks");
	bson_t *lockdocs[MAX_BATCH];
	int64_t now = wall_ms();
	bson_error_t e;
	double t = now_s();
	for (int i = 0; i < b->n; i++) {
		char lock_id[48];
		snprintf(lock_id, sizeof lock_id, "%s:%d", b->ids[i], seq);
		lockdocs[i] = BCON_NEW("_id", BCON_UTF8(lock_id), "at", BCON_DATE_TIME(now));
	}
	bson_t *unordered = BCON_NEW("ordered", BCON_BOOL(false));
	bson_t reply;
	/* A redelivered message finds its lock taken (E11000): not an error,
	 * and not a second job. */
	if (!mongoc_collection_insert_many(locks, (const bson_t **)lockdocs, (size_t)b->n,
	                                   unordered, &reply, &e) &&
	    e.code != 11000)
		check(false, &e, "lock insert");
	long inserted = (long)doc_count(&reply, "insertedCount");
	bson_destroy(&reply);
	atomic_fetch_add(&us_lock, (long long)((now_s() - t) * 1e6));
	atomic_fetch_add(&n_lock, 1);
	t = now_s();
	for (int i = 0; i < b->n; i++) {
		bson_t *f = BCON_NEW("_id", BCON_UTF8(b->ids[i]));
		bson_t *u;
		if (claim)
			u = BCON_NEW("$set", "{", "status", BCON_UTF8("processing"), "workerId",
			             BCON_UTF8("raw"), "attempts", BCON_INT32(1), "leaseUntil",
			             BCON_DATE_TIME(now + 30000), "startedAt", BCON_DATE_TIME(now),
			             "updatedAt", BCON_DATE_TIME(now), "seq", BCON_INT64(seq), "}");
		else
			u = BCON_NEW("$set", "{", "status", BCON_UTF8("completed"), "result", "{",
			             "message", BCON_UTF8("Success"), "value",
			             BCON_UTF8("000000000000000000000000000000000000000000000000000"
			                       "0000000000000"),
			             "}", "updatedAt", BCON_DATE_TIME(now), "finishedAt",
			             BCON_DATE_TIME(now), "seq", BCON_INT64(seq), "}", "$unset",
			             "{", "leaseUntil", BCON_UTF8(""), "}", "$push", "{", "history",
			             "{", "attempt", BCON_INT32(1), "workerId", BCON_UTF8("raw"),
			             "status", BCON_UTF8("completed"), "finishedAt",
			             BCON_DATE_TIME(now), "}", "}");
		check(mongoc_collection_update_one(jc, f, u, NULL, NULL, &e), &e, "update");
		bson_destroy(f);
		bson_destroy(u);
	}
	atomic_fetch_add(&us_update, (long long)((now_s() - t) * 1e6));
	atomic_fetch_add(&n_update, b->n);
	bson_destroy(unordered);
	for (int i = 0; i < b->n; i++)
		bson_destroy(lockdocs[i]);
	mongoc_collection_destroy(jc);
	mongoc_collection_destroy(locks);
	return inserted;
}

static void *work_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	for (;;) {
		pthread_mutex_lock(&wq_mu);
		while (!wq_head && !wq_quit)
			pthread_cond_wait(&wq_cv, &wq_mu);
		wbatch_t *b = wq_head;
		if (b) {
			wq_head = b->next;
			if (!wq_head)
				wq_tail = NULL;
		}
		pthread_mutex_unlock(&wq_mu);
		if (!b)
			break;
		long jobs = transition_batch(c, b, 1, true);
		transition_batch(c, b, 2, false);
		/* Commit the batch's offsets (async: no round trip waited on). */
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(b->n);
		for (int i = 0; i < b->n; i++)
			rd_kafka_topic_partition_list_add(l, topic, b->partition[i])->offset =
				b->offset[i] + 1;
		rd_kafka_commit(consumer, l, 1);
		rd_kafka_topic_partition_list_destroy(l);
		atomic_fetch_add(&finished, jobs);
		free(b);
	}
	mongoc_client_pool_push(pool, c);
	return NULL;
}

static void make_consumer(void)
{
	char errstr[512], group[300];
	snprintf(group, sizeof group, "%s.raw", coll_name);
	rd_kafka_conf_t *kc = rd_kafka_conf_new();
	const char *props[][2] = {
		{"bootstrap.servers", brokers},  {"group.id", group},
		{"enable.auto.commit", "false"}, {"auto.offset.reset", "earliest"},
		{"client.id", "raw_probe"},      {"session.timeout.ms", "6000"}};
	for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
		if (rd_kafka_conf_set(kc, props[i][0], props[i][1], errstr, sizeof errstr))
			die(props[i][0], errstr);
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof errstr);
	if (!consumer)
		die("consumer", errstr);
	rd_kafka_poll_set_consumer(consumer);
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
	if (rd_kafka_subscribe(consumer, sub))
		die("subscribe", topic);
	rd_kafka_topic_partition_list_destroy(sub);
}

/* Poll into batches of up to `batch` messages, handed to the work threads
 * at once when the poll runs dry, until `want` jobs are finished. */
static void consume_until(long want, double deadline)
{
	wbatch_t *cur = NULL;
	while (atomic_load(&finished) < want && now_s() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, cur ? 2 : 100);
		if (m && !m->err && m->key_len == 36) {
			if (!cur)
				cur = calloc(1, sizeof *cur);
			memcpy(cur->ids[cur->n], m->key, 36);
			cur->ids[cur->n][36] = '\0';
			cur->partition[cur->n] = m->partition;
			cur->offset[cur->n] = m->offset;
			cur->n++;
		}
		if (m)
			rd_kafka_message_destroy(m);
		if (cur && (cur->n == batch || !m)) {
			pthread_mutex_lock(&wq_mu);
			if (wq_tail)
				wq_tail->next = cur;
			else
				wq_head = cur;
			wq_tail = cur;
			pthread_cond_signal(&wq_cv);
			pthread_mutex_unlock(&wq_mu);
			cur = NULL;
		}
	}
	if (cur)
		free(cur);
}

/* ---- get ---- */

static atomic_long reads;
static atomic_int get_stop;
static char get_id[37];

static void *get_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	mongoc_collection_t *jc = coll(c, "");
	bson_t *f = BCON_NEW("_id", BCON_UTF8(get_id));
	while (!atomic_load(&get_stop)) {
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(jc, f, NULL, NULL);
		const bson_t *doc;
		char *json = NULL;
		if (mongoc_cursor_next(cur, &doc))
			json = bson_as_relaxed_extended_json(doc, NULL); /* what GET serves */
		else
			atomic_fetch_add(&errors, 1);
		bson_free(json);
		mongoc_cursor_destroy(cur);
		atomic_fetch_add(&reads, 1);
	}
	bson_destroy(f);
	mongoc_collection_destroy(jc);
	mongoc_client_pool_push(pool, c);
	return NULL;
}

static void drop_all(void)
{
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	const char *suffixes[] = {"", "locks", "outbox", "idempotency"};
	for (size_t i = 0; i < 4; i++) {
		mongoc_collection_t *x = coll(c, suffixes[i]);
		mongoc_collection_drop(x, NULL);
		mongoc_collection_destroy(x);
	}
	mongoc_client_pool_push(pool, c);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: raw_probe e2e|submit|get|drop [-n N] [-b BATCH] [-p PRODUCERS] "
		      "[-c WORKERS] [-s SECONDS] -k COLL -t TOPIC\n",
		      stderr);
		return 2;
	}
	const char *mode = argv[1];
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "n:b:p:c:s:k:t:")) != -1) {
		switch (opt) {
		case 'n':
			n_jobs = atoi(optarg);
			break;
		case 'b':
			batch = atoi(optarg);
			break;
		case 'p':
			producers = atoi(optarg);
			break;
		case 'c':
			workers = atoi(optarg);
			break;
		case 's':
			seconds = atoi(optarg);
			break;
		case 'k':
			coll_name = optarg;
			break;
		case 't':
			topic = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!coll_name || !topic || batch < 1 || batch > MAX_BATCH || producers < 1 || workers < 1)
		die("arguments", "need -k COLL -t TOPIC, 1 <= batch <= 50");
	brokers = getenv("DJOB_KAFKA_BROKERS") ? getenv("DJOB_KAFKA_BROKERS") : "127.0.0.1:9092";
	mongo_uri = getenv("DJOB_MONGO_URI") ? getenv("DJOB_MONGO_URI")
	                                     : "mongodb://127.0.0.1:27017/jobsdb";
	mongoc_init();
	bson_error_t e;
	mongoc_uri_t *uri = mongoc_uri_new_with_error(mongo_uri, &e);
	if (!uri)
		die("mongo uri", e.message);
	/* A stuck server fails the probe in seconds, not libmongoc's 5 min. */
	if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 20000);
	alarm(240);
	if (mongoc_uri_get_database(uri))
		snprintf(db_name, sizeof db_name, "%s", mongoc_uri_get_database(uri));
	pool = mongoc_client_pool_new(uri);
	mongoc_client_pool_set_error_api(pool, 2);
	mongoc_uri_destroy(uri);
	if (strcmp(mode, "drop") == 0) {
		drop_all();
		mongoc_client_pool_destroy(pool);
		mongoc_cleanup();
		return 0;
	}
	make_producer();
	pthread_t poller;
	pthread_create(&poller, NULL, poll_loop, NULL);
	create_indexes();
	create_topic();

	if (strcmp(mode, "get") == 0) {
		/* N jobs, inserted as submissions would, so the read finds one
		 * among as many documents as djob's collection holds. */
		mongoc_client_t *c = mongoc_client_pool_pop(pool);
		for (int first = 0; first < n_jobs; first += batch)
			submit_batch(c, first, first + batch > n_jobs ? n_jobs - first : batch);
		mongoc_collection_t *jc = coll(c, "");
		mongoc_cursor_t *cur =
			mongoc_collection_find_with_opts(jc, &(bson_t)BSON_INITIALIZER, NULL, NULL);
		const bson_t *doc;
		bson_iter_t it;
		if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "_id"))
			snprintf(get_id, sizeof get_id, "%s", bson_iter_utf8(&it, NULL));
		mongoc_cursor_destroy(cur);
		mongoc_collection_destroy(jc);
		mongoc_client_pool_push(pool, c);
		pthread_t *t = calloc((size_t)workers, sizeof *t);
		double t0 = now_s();
		for (int i = 0; i < workers; i++)
			pthread_create(&t[i], NULL, get_thread, NULL);
		sleep((unsigned)seconds);
		atomic_store(&get_stop, 1);
		for (int i = 0; i < workers; i++)
			pthread_join(t[i], NULL);
		double dt = now_s() - t0;
		printf("{\"mode\":\"get\",\"threads\":%d,\"reads\":%ld,\"seconds\":%.3f,"
		       "\"per_s\":%.1f,\"errors\":%ld}\n",
		       workers, atomic_load(&reads), dt, (double)atomic_load(&reads) / dt,
		       atomic_load(&errors));
		free(t);
	} else {
		bool e2e = strcmp(mode, "e2e") == 0;
		if (!e2e && strcmp(mode, "submit") != 0)
			die("mode", mode);
		pthread_t *wt = calloc((size_t)workers, sizeof *wt);
		if (e2e) {
			make_consumer();
			for (int i = 0; i < workers; i++)
				pthread_create(&wt[i], NULL, work_thread, NULL);
			/* Join the group before the clock starts, as a running
			 * worker would have. */
			double until = now_s() + 30;
			rd_kafka_topic_partition_list_t *a = NULL;
			while (now_s() < until) {
				rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
				if (m)
					rd_kafka_message_destroy(m);
				if (rd_kafka_assignment(consumer, &a) == 0 && a && a->cnt > 0)
					break;
				if (a)
					rd_kafka_topic_partition_list_destroy(a);
				a = NULL;
			}
			if (a)
				rd_kafka_topic_partition_list_destroy(a);
		}
		pthread_t *pt = calloc((size_t)producers, sizeof *pt);
		double t0 = now_s();
		for (int i = 0; i < producers; i++)
			pthread_create(&pt[i], NULL, producer_thread, NULL);
		if (e2e)
			consume_until(n_jobs, t0 + 180);
		for (int i = 0; i < producers; i++)
			pthread_join(pt[i], NULL);
		double t_sub = now_s() - t0;
		if (e2e) {
			/* Keep polling: the group must see this member alive. */
			while (atomic_load(&finished) < n_jobs && now_s() < t0 + 180) {
				rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 2);
				if (m)
					rd_kafka_message_destroy(m);
			}
		}
		double dt = now_s() - t0;
		if (e2e) {
			pthread_mutex_lock(&wq_mu);
			wq_quit = true;
			pthread_cond_broadcast(&wq_cv);
			pthread_mutex_unlock(&wq_mu);
			for (int i = 0; i < workers; i++)
				pthread_join(wt[i], NULL);
			rd_kafka_consumer_close(consumer);
			rd_kafka_destroy(consumer);
		}
		long done = e2e ? atomic_load(&finished) : atomic_load(&produced);
		printf("{\"mode\":\"%s\",\"jobs\":%d,\"done\":%ld,\"batch\":%d,\"producers\":%d,"
		       "\"workers\":%d,\"submit_seconds\":%.3f,\"seconds\":%.3f,\"per_s\":%.1f,"
		       "\"submit_per_s\":%.1f,\"errors\":%ld,"
		       "\"ms_per_lock_batch\":%.2f,\"ms_per_update\":%.2f}\n",
		       mode, n_jobs, done, batch, producers, e2e ? workers : 0, t_sub, dt,
		       (double)done / dt, (double)atomic_load(&produced) / t_sub,
		       atomic_load(&errors),
		       n_lock ? (double)us_lock / 1e3 / (double)n_lock : 0.0,
		       n_update ? (double)us_update / 1e3 / (double)n_update : 0.0);
		free(pt);
		free(wt);
	}
	rd_kafka_flush(producer, 10000);
	atomic_store(&stop_poller, 1);
	pthread_join(poller, NULL);
	if (!getenv("RAW_PROBE_KEEP"))
		drop_all();
	rd_kafka_destroy(producer);
	mongoc_client_pool_destroy(pool);
	mongoc_cleanup();
	return atomic_load(&errors) ? 1 : 0;
}
