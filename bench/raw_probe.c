/*
 * raw_probe: the ceiling djob is measured against. It performs the server
 * operations one djob job needs, with bare librdkafka and libmongoc calls
 * (one mongoc_client_pool), batched and concurrent as far as those
 * libraries and the server allow:
 *
 *   submit: outbox insert, job insert, Kafka produce (acks=all, idempotent,
 *           linger.ms 0), outbox delete     -- insert_many per batch, P
 *                                              writers at once; the deletes
 *                                              off their path, one $in for
 *                                              all pending
 *   work, atomic servers (MongoDB, mongo-java-server), W threads, per job:
 *           claim  = findAndModify {_id, status: queued} -> processing,
 *                    $inc attempts and seq
 *           finish = findAndModify {_id, status: processing, workerId,
 *                    attempts} -> completed, result, history $push
 *   work, lock mode (FerretDB 1.x, -m locks), per batch of jobs:
 *           per transition the locks "<id>:<seq>" in one insert_many, then
 *           a findAndModify by _id per job (what djob's lock mode writes,
 *           one lock insert per transition there)
 *
 * The mode comes from the server (buildInfo has ferretdbVersion on
 * FerretDB, whose 1.x findAndModify is not atomic) unless -m forces it, as
 * djob's store decides. Every MongoDB command the probe sends inside the
 * clock is counted (libmongoc APM, command started), so the output says
 * the round trips per job. The clock starts after a warm-up round (one
 * batch per writer, through the same threads and pooled connections) and
 * once the consumer has its partitions, as for a djob that is running.
 *
 * Modes (one JSON line on stdout):
 *   e2e    submit N jobs and work them off at the same time: jobs/s end to end
 *   submit the submit side alone: jobs/s
 *   fill   insert N completed jobs (old ones, no Kafka) as fast as the
 *          server takes them; -i FILE gets their ids, one a line
 *   get    find jobs by _id from T threads for S seconds, picked at random
 *          from -i FILE (or from the collection): reads/s
 *   info   what the server is and the mode it gets
 *   drop   drop COLL and its side collections (a djob run's leftovers)
 *
 * Updates stay one command per job in lock mode too: FerretDB 1.24's
 * SQLite backend holds a pooled connection per statement until the
 * command ends and deadlocks beyond its pool of 100; a 50-statement update
 * bulk from 4 threads hung the server.
 *
 * usage: raw_probe MODE [-m auto|atomic|locks] [-n N] [-b BATCH]
 *                  [-p PRODUCERS] [-c THREADS] [-s SECONDS] [-i IDFILE]
 *                  -k COLL [-t TOPIC]
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

#define MAX_BATCH 1000
#define MAX_PARTITIONS 64

static const char *brokers, *mongo_uri, *coll_name, *topic, *id_file;
static int n_jobs = 2000, batch = 20, producers = 2, workers = 8, seconds = 5;
static char db_name[128] = "jobsdb";
static mongoc_client_pool_t *pool;
static rd_kafka_t *producer;
static atomic_long produced, finished, errors;
static atomic_int next_job, job_limit; /* the round's jobs: [next_job, job_limit) */
static _Atomic double submit_end;      /* when the last submit batch was answered */
static bool lock_mode;
static char server[128] = "unknown";
static const char worker_id[] = "raw-probe";
/* Time spent per kind of server call (microseconds) and the calls made. */
static atomic_llong us_claim, us_finish, n_claim, n_finish;

/* ---- commands sent, by name (libmongoc APM) ---- */

enum {
	CMD_FIND,
	CMD_FAM,
	CMD_INSERT,
	CMD_UPDATE,
	CMD_DELETE,
	CMD_OTHER,
	CMD_COUNT
};
static const char *const cmd_names[CMD_COUNT] = {"find",   "findAndModify", "insert",
                                                 "update", "delete",        "other"};
static atomic_llong cmd_count[CMD_COUNT];

static void command_started(const mongoc_apm_command_started_t *ev)
{
	const char *name = mongoc_apm_command_started_get_command_name(ev);
	int i = 0;
	while (i < CMD_OTHER && strcmp(name, cmd_names[i]) != 0)
		i++;
	atomic_fetch_add_explicit(&cmd_count[i], 1, memory_order_relaxed);
}

static void cmd_snapshot(long long out[CMD_COUNT])
{
	for (int i = 0; i < CMD_COUNT; i++)
		out[i] = atomic_load(&cmd_count[i]);
}

/* ,"commands":{...},"commands_per_job":x for the commands sent since
 * `before`, per `jobs`. */
static void print_commands(const long long before[CMD_COUNT], long jobs)
{
	long long now[CMD_COUNT], total = 0;
	cmd_snapshot(now);
	printf(",\"commands\":{");
	for (int i = 0; i < CMD_COUNT; i++) {
		printf("%s\"%s\":%lld", i ? "," : "", cmd_names[i], now[i] - before[i]);
		total += now[i] - before[i];
	}
	printf("},\"commands_total\":%lld,\"commands_per_job\":%.3f", total,
	       jobs > 0 ? (double)total / (double)jobs : 0.0);
}

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

/* libmongoc's warnings, less the endSessions that servers without sessions
 * (FerretDB, mongo-java-server) refuse at every client's end. */
static void mongo_log(mongoc_log_level_t level, const char *domain, const char *message,
                      void *opaque)
{
	(void)opaque;
	if (level <= MONGOC_LOG_LEVEL_WARNING && !strstr(message, "endSessions"))
		fprintf(stderr, "raw_probe: %s: %s\n", domain, message);
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

static void append_in(bson_t *f, const char *key, char (*ids)[37], int n)
{
	bson_t cond, in;
	BSON_APPEND_DOCUMENT_BEGIN(f, key, &cond);
	BSON_APPEND_ARRAY_BEGIN(&cond, "$in", &in);
	for (int i = 0; i < n; i++) {
		char k[16];
		const char *kp;
		bson_uint32_to_string((uint32_t)i, &kp, k, sizeof k);
		BSON_APPEND_UTF8(&in, kp, ids[i]);
	}
	bson_append_array_end(&cond, &in);
	bson_append_document_end(f, &cond);
}

/* What the server is, and the mode djob's store would give it: FerretDB
 * before 2.0 (or "unknown", built from the module) gets the lock
 * protocol, every other server atomic writes. */
static void detect_mode(const char *forced)
{
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	bson_t *cmd = BCON_NEW("buildInfo", BCON_INT32(1));
	bson_t reply;
	bson_error_t e;
	bool ferret_locks = false;
	if (mongoc_client_command_simple(c, "admin", cmd, NULL, &reply, &e)) {
		bson_iter_t it;
		const char *ver =
			bson_iter_init_find(&it, &reply, "version") && BSON_ITER_HOLDS_UTF8(&it)
				? bson_iter_utf8(&it, NULL)
				: "?";
		if (bson_iter_init_find(&it, &reply, "ferretdbVersion") &&
		    BSON_ITER_HOLDS_UTF8(&it)) {
			const char *fv = bson_iter_utf8(&it, NULL);
			snprintf(server, sizeof server, "FerretDB %s (MongoDB API %s)", fv, ver);
			ferret_locks = atoi(fv[0] == 'v' ? fv + 1 : fv) < 2;
		} else {
			/* mongo-java-server says only its version; MongoDB has gitVersion. */
			bool git = bson_iter_init_find(&it, &reply, "gitVersion");
			snprintf(server, sizeof server, "MongoDB API %s%s", ver,
			         git ? "" : " (no gitVersion: not MongoDB itself)");
		}
	} else {
		die("buildInfo", e.message);
	}
	bson_destroy(&reply);
	bson_destroy(cmd);
	mongoc_client_pool_push(pool, c);
	if (!forced || strcmp(forced, "auto") == 0)
		lock_mode = ferret_locks;
	else if (strcmp(forced, "locks") == 0)
		lock_mode = true;
	else if (strcmp(forced, "atomic") == 0)
		lock_mode = false;
	else
		die("-m", "expected auto, atomic or locks");
}

/* The same indexes djob's store creates, so writes cost the same; one
 * createIndexes per index, as djob (FerretDB 1.24 panics on a multi-index
 * one against a collection whose indexes differ). */
static void create_indexes(void)
{
	static const struct {
		const char *suffix, *name, *k1, *k2, *k3;
		int d1, d2, d3;
	} idx[] = {
		{"", "status_type_created", "status", "type", "createdAt", 1, 1, -1},
		{"", "status_runAt", "status", "runAt", NULL, 1, 1, 0},
		{"", "status_leaseUntil", "status", "leaseUntil", NULL, 1, 1, 0},
		{"", "created", "createdAt", NULL, NULL, -1, 0, 0},
		{"outbox", "at", "at", NULL, NULL, 1, 0, 0},
		{"locks", "at", "at", NULL, NULL, 1, 0, 0},
	};
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	mongoc_database_t *db = mongoc_client_get_database(c, db_name);
	for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
		if (strcmp(idx[i].suffix, "locks") == 0 && !lock_mode)
			continue;
		char name[256];
		snprintf(name, sizeof name, "%s%s%s", coll_name, *idx[i].suffix ? "_" : "",
		         idx[i].suffix);
		bson_t cmd = BSON_INITIALIZER, arr, spec, key;
		BSON_APPEND_UTF8(&cmd, "createIndexes", name);
		BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
		BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &spec);
		BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
		BSON_APPEND_INT32(&key, idx[i].k1, idx[i].d1);
		if (idx[i].k2)
			BSON_APPEND_INT32(&key, idx[i].k2, idx[i].d2);
		if (idx[i].k3)
			BSON_APPEND_INT32(&key, idx[i].k3, idx[i].d3);
		bson_append_document_end(&spec, &key);
		BSON_APPEND_UTF8(&spec, "name", idx[i].name);
		bson_append_document_end(&arr, &spec);
		bson_append_array_end(&cmd, &arr);
		bson_error_t e;
		check(mongoc_database_write_command_with_opts(db, &cmd, NULL, NULL, &e), &e,
		      "createIndexes");
		bson_destroy(&cmd);
	}
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

/* Outbox deletes off the writers' path, as djob's group leader deletes
 * after the answers while the next group is written: one delete {_id:
 * {$in}} for all the entries pending (up to MAX_BATCH). */
typedef struct del_s {
	struct del_s *next;
	int n;
	char (*ids)[37];
} del_t;

static pthread_mutex_t del_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t del_cv = PTHREAD_COND_INITIALIZER;
static del_t *del_head;
static bool del_busy, del_quit;

/* Takes ids (calloc'ed). */
static void outbox_delete_later(char (*ids)[37], int n)
{
	del_t *d = calloc(1, sizeof *d);
	d->n = n;
	d->ids = ids;
	pthread_mutex_lock(&del_mu);
	d->next = del_head;
	del_head = d;
	pthread_cond_broadcast(&del_cv);
	pthread_mutex_unlock(&del_mu);
}

static void *deleter_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	mongoc_collection_t *ob = coll(c, "outbox");
	char(*ids)[37] = calloc(MAX_BATCH, sizeof *ids);
	pthread_mutex_lock(&del_mu);
	for (;;) {
		while (!del_head && !del_quit)
			pthread_cond_wait(&del_cv, &del_mu);
		if (!del_head)
			break;
		int n = 0;
		while (del_head && n + del_head->n <= MAX_BATCH) {
			del_t *d = del_head;
			del_head = d->next;
			memcpy(ids[n], d->ids, (size_t)d->n * sizeof *ids);
			n += d->n;
			free(d->ids);
			free(d);
		}
		del_busy = true;
		pthread_mutex_unlock(&del_mu);
		bson_t f = BSON_INITIALIZER;
		append_in(&f, "_id", ids, n);
		bson_error_t e;
		check(mongoc_collection_delete_many(ob, &f, NULL, NULL, &e), &e, "outbox delete");
		bson_destroy(&f);
		pthread_mutex_lock(&del_mu);
		del_busy = false;
		pthread_cond_broadcast(&del_cv);
	}
	pthread_mutex_unlock(&del_mu);
	free(ids);
	mongoc_collection_destroy(ob);
	mongoc_client_pool_push(pool, c);
	return NULL;
}

/* Until every outbox delete asked for is done. */
static void deletes_drain(void)
{
	pthread_mutex_lock(&del_mu);
	while (del_head || del_busy)
		pthread_cond_wait(&del_cv, &del_mu);
	pthread_mutex_unlock(&del_mu);
}

/* A queued job as djob's store inserts it. */
static bson_t *queued_job(const char *id, const char *input, int64_t now)
{
	return BCON_NEW("_id", BCON_UTF8(id), "type", BCON_UTF8("compute"), "status",
	                BCON_UTF8("queued"), "payload", "{", "input", BCON_UTF8(input), "}",
	                "attempts", BCON_INT32(0), "maxAttempts", BCON_INT32(3), "createdAt",
	                BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "seq",
	                BCON_INT64(0));
}

/* One batch: outbox insert_many, jobs insert_many, produce, wait for the
 * acknowledgements; then the outbox delete, by the deleter thread. */
static void submit_batch(mongoc_client_t *c, int first, int n)
{
	double t_sub = now_s();
	char(*ids)[37] = calloc((size_t)n, sizeof *ids);
	bson_t **outbox = calloc((size_t)n, sizeof *outbox),
	       **jobs = calloc((size_t)n, sizeof *jobs);
	char **values = calloc((size_t)n, sizeof *values);
	int64_t now = wall_ms();
	for (int i = 0; i < n; i++) {
		uuid_v4(ids[i]);
		char input[32];
		snprintf(input, sizeof input, "raw-%d", first + i);
		outbox[i] = BCON_NEW("_id", BCON_UTF8(ids[i]), "at", BCON_DATE_TIME(now));
		jobs[i] = queued_job(ids[i], input, now);
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
		/* When the batch started, for the work side's timings. */
		while ((ke = rd_kafka_producev(
				producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(ids[i], 36),
				RD_KAFKA_V_VALUE(values[i], strlen(values[i])),
				RD_KAFKA_V_HEADER("t", &t_sub, sizeof t_sub),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&b),
				RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			usleep(1000);
		if (ke) {
			atomic_fetch_add(&b.failed, 1);
			atomic_fetch_sub(&b.pending, 1);
		}
	}
	while (atomic_load(&b.pending) > 0)
		usleep(100);
	if (atomic_load(&b.failed))
		atomic_fetch_add(&errors, atomic_load(&b.failed));
	outbox_delete_later(ids, n);
	bson_destroy(unordered);
	mongoc_collection_destroy(ob);
	mongoc_collection_destroy(jc);
	for (int i = 0; i < n; i++) {
		bson_destroy(outbox[i]);
		bson_destroy(jobs[i]);
		bson_free(values[i]);
	}
	free(outbox);
	free(jobs);
	free(values);
}

static void *producer_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	for (;;) {
		int first = atomic_fetch_add(&next_job, batch), limit = atomic_load(&job_limit);
		if (first >= limit)
			break;
		int n = first + batch > limit ? limit - first : batch;
		submit_batch(c, first, n);
	}
	double t = now_s(), cur = atomic_load(&submit_end);
	while (cur < t && !atomic_compare_exchange_weak(&submit_end, &cur, t))
		;
	mongoc_client_pool_push(pool, c);
	return NULL;
}

static void ping(mongoc_client_t *c);

/* ---- work side ---- */

typedef struct job_s {
	struct job_s *next;
	char id[37];
	int32_t partition;
	int64_t offset;
	double t_sub, t_got, t_start, t_claimed; /* monotonic: batch started, polled, ... */
} job_t;

/* Where a job's time goes (e2e, the clock's round): sums over the jobs of
 * submit -> polled, polled -> taken by a work thread, the claim, the
 * finish (microseconds), and submit-to-completed per job. */
static atomic_llong us_to_poll, us_queued, us_claimed, us_finished;
static double *lat_ms;
static atomic_long n_lat;

static void job_timed(const job_t *j, double t_done)
{
	if (j->t_sub <= 0)
		return;
	atomic_fetch_add(&us_to_poll, (long long)((j->t_got - j->t_sub) * 1e6));
	atomic_fetch_add(&us_queued, (long long)((j->t_start - j->t_got) * 1e6));
	atomic_fetch_add(&us_claimed, (long long)((j->t_claimed - j->t_start) * 1e6));
	atomic_fetch_add(&us_finished, (long long)((t_done - j->t_claimed) * 1e6));
	long i = atomic_fetch_add(&n_lat, 1);
	if (lat_ms && i < n_jobs)
		lat_ms[i] = (t_done - j->t_sub) * 1e3;
}

static pthread_mutex_t wq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cv = PTHREAD_COND_INITIALIZER;
static job_t *wq_head, *wq_tail;
static bool wq_quit;
static rd_kafka_t *consumer;
/* The next offset to commit per partition, highest done (the probe never
 * fails a job, so every offset below it is done by the end). */
static atomic_llong done_offset[MAX_PARTITIONS];

static void job_done(const job_t *j)
{
	if (j->partition < 0 || j->partition >= MAX_PARTITIONS)
		return;
	long long want = j->offset + 1, cur = atomic_load(&done_offset[j->partition]);
	while (cur < want && !atomic_compare_exchange_weak(&done_offset[j->partition], &cur, want))
		;
}

/* Up to `max` queued jobs (at least one unless quitting), as a list. */
static job_t *take_jobs(int max, int *n)
{
	pthread_mutex_lock(&wq_mu);
	while (!wq_head && !wq_quit)
		pthread_cond_wait(&wq_cv, &wq_mu);
	job_t *first = wq_head, *last = NULL;
	*n = 0;
	for (job_t *j = wq_head; j && *n < max; j = j->next) {
		last = j;
		(*n)++;
	}
	if (last) {
		wq_head = last->next;
		if (!wq_head)
			wq_tail = NULL;
		last->next = NULL;
	}
	pthread_mutex_unlock(&wq_mu);
	return first;
}

/* The finish's change (djob's plan_finish for a completed job): lock
 * mode sets `seq` (lock_seq > 0), atomic mode increments it. */
static bson_t *finish_update(int64_t now, int64_t lock_seq)
{
	bson_t *u = bson_new(), set, res, unset, push, entry, inc;
	BSON_APPEND_DOCUMENT_BEGIN(u, "$set", &set);
	BSON_APPEND_UTF8(&set, "status", "completed");
	BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
	BSON_APPEND_DOCUMENT_BEGIN(&set, "result", &res);
	BSON_APPEND_UTF8(&res, "message", "Success");
	BSON_APPEND_UTF8(&res, "value",
	                 "0000000000000000000000000000000000000000000000000000000000000000");
	bson_append_document_end(&set, &res);
	BSON_APPEND_DATE_TIME(&set, "finishedAt", now);
	if (lock_seq > 0)
		BSON_APPEND_INT64(&set, "seq", lock_seq);
	bson_append_document_end(u, &set);
	BSON_APPEND_DOCUMENT_BEGIN(u, "$unset", &unset);
	BSON_APPEND_UTF8(&unset, "leaseUntil", "");
	BSON_APPEND_UTF8(&unset, "error", "");
	bson_append_document_end(u, &unset);
	BSON_APPEND_DOCUMENT_BEGIN(u, "$push", &push);
	BSON_APPEND_DOCUMENT_BEGIN(&push, "history", &entry);
	BSON_APPEND_INT32(&entry, "attempt", 1);
	BSON_APPEND_UTF8(&entry, "workerId", worker_id);
	BSON_APPEND_UTF8(&entry, "status", "completed");
	BSON_APPEND_DATE_TIME(&entry, "finishedAt", now);
	bson_append_document_end(&push, &entry);
	bson_append_document_end(u, &push);
	if (lock_seq <= 0) {
		BSON_APPEND_DOCUMENT_BEGIN(u, "$inc", &inc);
		BSON_APPEND_INT64(&inc, "seq", 1);
		bson_append_document_end(u, &inc);
	}
	return u;
}

/* One findAndModify: filter, update, what it answers (NULL: all of it),
 * maxTimeMS (0: none). True when it matched. */
static bool fam(mongoc_collection_t *jc, const bson_t *filter, const bson_t *update,
                const bson_t *fields, uint32_t max_time_ms)
{
	mongoc_find_and_modify_opts_t *o = mongoc_find_and_modify_opts_new();
	mongoc_find_and_modify_opts_set_update(o, update);
	mongoc_find_and_modify_opts_set_flags(o, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	if (fields)
		mongoc_find_and_modify_opts_set_fields(o, fields);
	if (max_time_ms)
		mongoc_find_and_modify_opts_set_max_time_ms(o, max_time_ms);
	bson_t reply;
	bson_error_t e;
	bson_iter_t it;
	bool ok = mongoc_collection_find_and_modify_with_opts(jc, filter, o, &reply, &e);
	if (!ok)
		check(false, &e, "findAndModify");
	else if (!bson_iter_init_find(&it, &reply, "value") || !BSON_ITER_HOLDS_DOCUMENT(&it))
		ok = false; /* matched nothing */
	bson_destroy(&reply);
	mongoc_find_and_modify_opts_destroy(o);
	return ok;
}

/* Atomic servers: one conditional findAndModify per transition, no read,
 * nothing else (djob's store in atomic mode: the filter is what the plan
 * expects, $inc seq, the fields the worker needs next). */
static bool work_atomic(mongoc_collection_t *jc, job_t *j, const bson_t *fields)
{
	int64_t now = wall_ms();
	double t = now_s();
	j->t_start = t;
	bson_t *f = BCON_NEW("_id", BCON_UTF8(j->id), "status", BCON_UTF8("queued"));
	bson_t *u =
		BCON_NEW("$set", "{", "status", BCON_UTF8("processing"), "workerId",
	                 BCON_UTF8(worker_id), "leaseUntil", BCON_DATE_TIME(now + 30000),
	                 "startedAt", BCON_DATE_TIME(now), "updatedAt", BCON_DATE_TIME(now), "}",
	                 "$inc", "{", "attempts", BCON_INT32(1), "seq", BCON_INT64(1), "}");
	/* A redelivered message finds the job claimed: not a second job. */
	bool claimed = fam(jc, f, u, fields, 0);
	bson_destroy(f);
	bson_destroy(u);
	j->t_claimed = now_s();
	atomic_fetch_add(&us_claim, (long long)((j->t_claimed - t) * 1e6));
	atomic_fetch_add(&n_claim, 1);
	if (!claimed)
		return false;
	now = wall_ms();
	t = now_s();
	f = BCON_NEW("_id", BCON_UTF8(j->id), "status", BCON_UTF8("processing"), "workerId",
	             BCON_UTF8(worker_id), "attempts", BCON_INT32(1));
	u = finish_update(now, 0);
	bool ok = fam(jc, f, u, fields, 0);
	if (!ok)
		atomic_fetch_add(&errors, 1);
	bson_destroy(f);
	bson_destroy(u);
	atomic_fetch_add(&us_finish, (long long)((now_s() - t) * 1e6));
	atomic_fetch_add(&n_finish, 1);
	return ok;
}

/* Lock mode, one transition of a batch: the locks "<id>:<seq>" in one
 * insert_many, then a findAndModify by _id per job whose lock was taken
 * (djob: lock insert, then findAndModify by _id with maxTimeMS, the whole
 * job answered). taken[i] says which. */
static void locked_transition(mongoc_client_t *c, job_t *const *jobs, int n, int seq, bool *taken)
{
	mongoc_collection_t *jc = coll(c, ""), *locks = coll(c, "locks");
	bson_t **lockdocs = calloc((size_t)n, sizeof *lockdocs);
	int *at = calloc((size_t)n, sizeof *at), m = 0;
	int64_t now = wall_ms();
	double t = now_s();
	for (int i = 0; i < n; i++) {
		if (seq == 1)
			taken[i] = true;
		if (!taken[i])
			continue;
		char lock_id[48];
		snprintf(lock_id, sizeof lock_id, "%s:%d", jobs[i]->id, seq);
		lockdocs[m] = BCON_NEW("_id", BCON_UTF8(lock_id), "at", BCON_DATE_TIME(now));
		at[m++] = i;
	}
	bson_t *unordered = BCON_NEW("ordered", BCON_BOOL(false));
	bson_t reply = BSON_INITIALIZER;
	bson_error_t e;
	/* A redelivered message finds its lock taken (E11000): not an error,
	 * and not a second job. */
	if (m > 0 && !mongoc_collection_insert_many(locks, (const bson_t **)lockdocs, (size_t)m,
	                                            unordered, &reply, &e)) {
		if (e.code != 11000)
			check(false, &e, "lock insert");
		bson_iter_t it, arr, w;
		if (bson_iter_init_find(&it, &reply, "writeErrors") && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr))
				if (bson_iter_recurse(&arr, &w) && bson_iter_find(&w, "index")) {
					int64_t k = bson_iter_as_int64(&w);
					if (k >= 0 && k < m)
						taken[at[k]] = false;
				}
	}
	bson_destroy(&reply);
	for (int i = 0; i < n; i++) {
		if (!taken[i])
			continue;
		bson_t *f = BCON_NEW("_id", BCON_UTF8(jobs[i]->id));
		bson_t *u;
		if (seq == 1)
			u = BCON_NEW("$set", "{", "status", BCON_UTF8("processing"), "workerId",
			             BCON_UTF8(worker_id), "leaseUntil",
			             BCON_DATE_TIME(now + 30000), "startedAt", BCON_DATE_TIME(now),
			             "updatedAt", BCON_DATE_TIME(now), "seq", BCON_INT64(seq), "}",
			             "$inc", "{", "attempts", BCON_INT32(1), "}");
		else
			u = finish_update(now, seq);
		if (!fam(jc, f, u, NULL, 5000)) {
			taken[i] = false;
			atomic_fetch_add(&errors, 1);
		}
		bson_destroy(f);
		bson_destroy(u);
	}
	atomic_fetch_add(seq == 1 ? &us_claim : &us_finish, (long long)((now_s() - t) * 1e6));
	atomic_fetch_add(seq == 1 ? &n_claim : &n_finish, n);
	bson_destroy(unordered);
	for (int i = 0; i < m; i++)
		bson_destroy(lockdocs[i]);
	free(lockdocs);
	free(at);
	mongoc_collection_destroy(jc);
	mongoc_collection_destroy(locks);
}

static void *work_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	ping(c);
	mongoc_collection_t *jc = coll(c, "");
	bson_t *fields = BCON_NEW("attempts", BCON_INT32(1), "maxAttempts", BCON_INT32(1), "seq",
	                          BCON_INT32(1));
	job_t *batch_jobs[MAX_BATCH];
	bool taken[MAX_BATCH];
	for (;;) {
		int n;
		job_t *list = take_jobs(lock_mode ? batch : 1, &n);
		if (!list)
			break;
		int k = 0;
		for (job_t *j = list; j; j = j->next)
			batch_jobs[k++] = j;
		if (lock_mode) {
			double t = now_s();
			locked_transition(c, batch_jobs, n, 1, taken);
			double t2 = now_s();
			for (int i = 0; i < n; i++) {
				batch_jobs[i]->t_start = t;
				batch_jobs[i]->t_claimed = t2;
			}
			locked_transition(c, batch_jobs, n, 2, taken);
		}
		for (int i = 0; i < n; i++) {
			bool ok = lock_mode ? taken[i] : work_atomic(jc, batch_jobs[i], fields);
			if (ok) {
				job_timed(batch_jobs[i], now_s());
				atomic_fetch_add(&finished, 1);
			}
			job_done(batch_jobs[i]);
			free(batch_jobs[i]);
		}
	}
	bson_destroy(fields);
	mongoc_collection_destroy(jc);
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
		{"client.id", "raw_probe"},      {"session.timeout.ms", "6000"},
		{"fetch.wait.max.ms", "50"}};
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

/* Commit what is done, asynchronously (no round trip waited on). */
static void commit_done(long long *committed)
{
	rd_kafka_topic_partition_list_t *l = NULL;
	for (int p = 0; p < MAX_PARTITIONS; p++) {
		long long o = atomic_load(&done_offset[p]);
		if (o > committed[p]) {
			if (!l)
				l = rd_kafka_topic_partition_list_new(4);
			rd_kafka_topic_partition_list_add(l, topic, p)->offset = o;
			committed[p] = o;
		}
	}
	if (l) {
		rd_kafka_commit(consumer, l, 1);
		rd_kafka_topic_partition_list_destroy(l);
	}
}

/* Hand every message to the work threads as it comes, until `want` jobs
 * are finished (or the submit side is done and nothing is left). */
static void consume_until(long want, double deadline)
{
	long long committed[MAX_PARTITIONS] = {0};
	double last_commit = now_s();
	while (atomic_load(&finished) < want && now_s() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 5);
		if (m && !m->err && m->key_len == 36) {
			job_t *j = calloc(1, sizeof *j);
			memcpy(j->id, m->key, 36);
			j->partition = m->partition;
			j->offset = m->offset;
			j->t_got = now_s();
			rd_kafka_headers_t *h = NULL;
			const void *v;
			size_t len;
			if (rd_kafka_message_headers(m, &h) == 0 &&
			    rd_kafka_header_get_last(h, "t", &v, &len) == 0 &&
			    len == sizeof(double))
				memcpy(&j->t_sub, v, sizeof(double));
			pthread_mutex_lock(&wq_mu);
			if (wq_tail)
				wq_tail->next = j;
			else
				wq_head = j;
			wq_tail = j;
			pthread_cond_signal(&wq_cv);
			pthread_mutex_unlock(&wq_mu);
		}
		if (m)
			rd_kafka_message_destroy(m);
		if (now_s() - last_commit > 0.2) {
			commit_done(committed);
			last_commit = now_s();
		}
	}
	commit_done(committed);
}

/* ---- fill and get ---- */

/* A completed job, as an old one in a collection looks. */
static bson_t *completed_job(const char *id, int i, int64_t now)
{
	char input[32];
	snprintf(input, sizeof input, "fill-%d", i);
	return BCON_NEW(
		"_id", BCON_UTF8(id), "type", BCON_UTF8("compute"), "status",
		BCON_UTF8("completed"), "payload", "{", "input", BCON_UTF8(input), "}", "attempts",
		BCON_INT32(1), "maxAttempts", BCON_INT32(3), "createdAt", BCON_DATE_TIME(now),
		"updatedAt", BCON_DATE_TIME(now), "seq", BCON_INT64(2), "workerId",
		BCON_UTF8(worker_id), "startedAt", BCON_DATE_TIME(now), "result", "{", "message",
		BCON_UTF8("Success"), "value",
		BCON_UTF8("0000000000000000000000000000000000000000000000000000000000000000"), "}",
		"finishedAt", BCON_DATE_TIME(now), "history", "[", "{", "attempt", BCON_INT32(1),
		"workerId", BCON_UTF8(worker_id), "status", BCON_UTF8("completed"), "finishedAt",
		BCON_DATE_TIME(now), "}", "]");
}

static char (*fill_ids)[37];
static atomic_int fill_next;

static void *fill_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	mongoc_collection_t *jc = coll(c, "");
	bson_t **docs = calloc((size_t)batch, sizeof *docs);
	bson_t *unordered = BCON_NEW("ordered", BCON_BOOL(false));
	for (;;) {
		int first = atomic_fetch_add(&fill_next, batch);
		if (first >= n_jobs)
			break;
		int n = first + batch > n_jobs ? n_jobs - first : batch;
		int64_t now = wall_ms();
		for (int i = 0; i < n; i++) {
			uuid_v4(fill_ids[first + i]);
			docs[i] = completed_job(fill_ids[first + i], first + i, now);
		}
		bson_error_t e;
		check(mongoc_collection_insert_many(jc, (const bson_t **)docs, (size_t)n, unordered,
		                                    NULL, &e),
		      &e, "fill insert");
		for (int i = 0; i < n; i++)
			bson_destroy(docs[i]);
	}
	bson_destroy(unordered);
	free(docs);
	mongoc_collection_destroy(jc);
	mongoc_client_pool_push(pool, c);
	return NULL;
}

static atomic_long reads;
static atomic_int get_stop;
static char (*get_ids)[37];
static size_t n_get_ids;

static void *get_thread(void *arg)
{
	(void)arg;
	mongoc_client_t *c = mongoc_client_pool_pop(pool);
	mongoc_collection_t *jc = coll(c, "");
	unsigned seed = (unsigned)(uintptr_t)&c ^ (unsigned)wall_ms();
	while (!atomic_load(&get_stop)) {
		bson_t *f = BCON_NEW("_id", BCON_UTF8(get_ids[rand_r(&seed) % n_get_ids]));
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(jc, f, NULL, NULL);
		const bson_t *doc;
		char *json = NULL;
		if (mongoc_cursor_next(cur, &doc))
			json = bson_as_relaxed_extended_json(doc, NULL); /* what GET serves */
		else
			atomic_fetch_add(&errors, 1);
		bson_free(json);
		mongoc_cursor_destroy(cur);
		bson_destroy(f);
		atomic_fetch_add(&reads, 1);
	}
	mongoc_collection_destroy(jc);
	mongoc_client_pool_push(pool, c);
	return NULL;
}

/* The ids to read: from the file, else up to 100,000 from the collection. */
static void load_get_ids(void)
{
	size_t cap = 1024;
	get_ids = malloc(cap * sizeof *get_ids);
	if (id_file) {
		FILE *fp = fopen(id_file, "r");
		if (!fp)
			die("open", id_file);
		char line[128];
		while (fgets(line, sizeof line, fp)) {
			if (strlen(line) < 36)
				continue;
			if (n_get_ids == cap)
				get_ids = realloc(get_ids, (cap *= 2) * sizeof *get_ids);
			memcpy(get_ids[n_get_ids], line, 36);
			get_ids[n_get_ids++][36] = '\0';
		}
		fclose(fp);
	} else {
		mongoc_client_t *c = mongoc_client_pool_pop(pool);
		mongoc_collection_t *jc = coll(c, "");
		bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit",
		                        BCON_INT64(100000));
		mongoc_cursor_t *cur =
			mongoc_collection_find_with_opts(jc, &(bson_t)BSON_INITIALIZER, opts, NULL);
		const bson_t *doc;
		bson_iter_t it;
		while (mongoc_cursor_next(cur, &doc))
			if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it)) {
				if (n_get_ids == cap)
					get_ids = realloc(get_ids, (cap *= 2) * sizeof *get_ids);
				snprintf(get_ids[n_get_ids++], 37, "%s", bson_iter_utf8(&it, NULL));
			}
		mongoc_cursor_destroy(cur);
		bson_destroy(opts);
		mongoc_collection_destroy(jc);
		mongoc_client_pool_push(pool, c);
	}
	if (n_get_ids == 0)
		die("get", "no job ids to read");
}

/* Connect a pooled client before the clock (libmongoc connects lazily). */
static void ping(mongoc_client_t *c)
{
	bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
	bson_error_t e;
	check(mongoc_client_command_simple(c, "admin", cmd, NULL, NULL, &e), &e, "ping");
	bson_destroy(cmd);
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

static void run_threads(int n, void *(*fn)(void *), pthread_t **out)
{
	*out = calloc((size_t)n, sizeof **out);
	for (int i = 0; i < n; i++)
		pthread_create(&(*out)[i], NULL, fn, NULL);
}

static void join_threads(int n, pthread_t *t)
{
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	free(t);
}

static int run_fill(void)
{
	create_indexes();
	fill_ids = calloc((size_t)n_jobs, sizeof *fill_ids);
	long long before[CMD_COUNT];
	cmd_snapshot(before);
	double t0 = now_s();
	pthread_t *t;
	run_threads(workers, fill_thread, &t);
	join_threads(workers, t);
	double dt = now_s() - t0;
	if (id_file) {
		FILE *fp = fopen(id_file, "w");
		if (!fp)
			die("create", id_file);
		for (int i = 0; i < n_jobs; i++)
			fprintf(fp, "%s\n", fill_ids[i]);
		fclose(fp);
	}
	printf("{\"mode\":\"fill\",\"server\":\"%s\",\"jobs\":%d,\"batch\":%d,\"threads\":%d,"
	       "\"seconds\":%.3f,\"per_s\":%.1f,\"errors\":%ld",
	       server, n_jobs, batch, workers, dt, (double)n_jobs / dt, atomic_load(&errors));
	print_commands(before, n_jobs);
	printf("}\n");
	free(fill_ids);
	return atomic_load(&errors) ? 1 : 0;
}

static int run_get(void)
{
	load_get_ids();
	long long before[CMD_COUNT];
	cmd_snapshot(before);
	double t0 = now_s();
	pthread_t *t;
	run_threads(workers, get_thread, &t);
	sleep((unsigned)seconds);
	atomic_store(&get_stop, 1);
	join_threads(workers, t);
	double dt = now_s() - t0;
	printf("{\"mode\":\"get\",\"server\":\"%s\",\"ids\":%zu,\"threads\":%d,\"reads\":%ld,"
	       "\"seconds\":%.3f,\"per_s\":%.1f,\"errors\":%ld",
	       server, n_get_ids, workers, atomic_load(&reads), dt,
	       (double)atomic_load(&reads) / dt, atomic_load(&errors));
	print_commands(before, atomic_load(&reads));
	printf("}\n");
	free(get_ids);
	return atomic_load(&errors) ? 1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int run_jobs(bool e2e)
{
	make_producer();
	pthread_t poller;
	pthread_create(&poller, NULL, poll_loop, NULL);
	create_indexes();
	create_topic();
	pthread_t deleter;
	pthread_create(&deleter, NULL, deleter_thread, NULL);
	pthread_t *wt = NULL;
	if (e2e) {
		make_consumer();
		run_threads(workers, work_thread, &wt);
		/* Join the group before the clock starts, as a running worker
		 * would have. */
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
	/* A warm-up round outside the clock, one batch per writer: pooled
	 * connections made, the consumer fetching, as for a running djob. */
	int warm = producers * batch;
	atomic_store(&job_limit, warm);
	pthread_t *pt;
	run_threads(producers, producer_thread, &pt);
	if (e2e)
		consume_until(warm, now_s() + 60);
	join_threads(producers, pt);
	deletes_drain();
	if (atomic_load(&errors) || (e2e ? atomic_load(&finished) : atomic_load(&produced)) < warm)
		die("warm-up", "not every job went through");
	atomic_store(&finished, 0);
	atomic_store(&produced, 0);
	atomic_store(&us_claim, 0);
	atomic_store(&us_finish, 0);
	atomic_store(&n_claim, 0);
	atomic_store(&n_finish, 0);
	atomic_store(&us_to_poll, 0);
	atomic_store(&us_queued, 0);
	atomic_store(&us_claimed, 0);
	atomic_store(&us_finished, 0);
	lat_ms = calloc((size_t)n_jobs, sizeof *lat_ms);
	atomic_store(&n_lat, 0);

	long long before[CMD_COUNT];
	cmd_snapshot(before);
	double t0 = now_s();
	atomic_store(&next_job, warm);
	atomic_store(&job_limit, warm + n_jobs);
	run_threads(producers, producer_thread, &pt);
	if (e2e)
		consume_until(n_jobs, t0 + 180);
	join_threads(producers, pt);
	deletes_drain();
	double dt = now_s() - t0, t_sub = atomic_load(&submit_end) - t0;
	long done = e2e ? atomic_load(&finished) : atomic_load(&produced);
	printf("{\"mode\":\"%s\",\"server\":\"%s\",\"store_mode\":\"%s\",\"jobs\":%d,"
	       "\"done\":%ld,\"batch\":%d,\"producers\":%d,\"workers\":%d,"
	       "\"submit_seconds\":%.3f,\"seconds\":%.3f,\"per_s\":%.1f,"
	       "\"submit_per_s\":%.1f,\"errors\":%ld,\"ms_per_claim\":%.2f,"
	       "\"ms_per_finish\":%.2f",
	       e2e ? "e2e" : "submit", server, lock_mode ? "locks" : "atomic", n_jobs, done, batch,
	       producers, e2e ? workers : 0, t_sub, dt, (double)done / dt,
	       (double)atomic_load(&produced) / t_sub, atomic_load(&errors),
	       n_claim ? (double)us_claim / 1e3 / (double)n_claim : 0.0,
	       n_finish ? (double)us_finish / 1e3 / (double)n_finish : 0.0);
	print_commands(before, done);
	long nl = atomic_load(&n_lat) < n_jobs ? atomic_load(&n_lat) : n_jobs;
	if (e2e && nl > 0) {
		qsort(lat_ms, (size_t)nl, sizeof *lat_ms, cmp_double);
		printf(",\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"avg_ms\":{\"to_poll\":%.2f,"
		       "\"queued\":%.2f,\"claim\":%.2f,\"finish\":%.2f}",
		       lat_ms[nl / 2], lat_ms[(nl * 99) / 100],
		       (double)us_to_poll / 1e3 / (double)nl, (double)us_queued / 1e3 / (double)nl,
		       (double)us_claimed / 1e3 / (double)nl,
		       (double)us_finished / 1e3 / (double)nl);
	}
	printf("}\n");
	fflush(stdout);
	free(lat_ms);
	lat_ms = NULL;
	if (e2e) {
		pthread_mutex_lock(&wq_mu);
		wq_quit = true;
		pthread_cond_broadcast(&wq_cv);
		pthread_mutex_unlock(&wq_mu);
		join_threads(workers, wt);
		rd_kafka_consumer_close(consumer);
		rd_kafka_destroy(consumer);
	}
	pthread_mutex_lock(&del_mu);
	del_quit = true;
	pthread_cond_broadcast(&del_cv);
	pthread_mutex_unlock(&del_mu);
	pthread_join(deleter, NULL);
	rd_kafka_flush(producer, 10000);
	atomic_store(&stop_poller, 1);
	pthread_join(poller, NULL);
	rd_kafka_destroy(producer);
	return atomic_load(&errors) || done < n_jobs ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: raw_probe e2e|submit|fill|get|info|drop [-m auto|atomic|locks] "
		      "[-n N] [-b BATCH] [-p PRODUCERS] [-c THREADS] [-s SECONDS] [-i IDFILE] "
		      "-k COLL [-t TOPIC]\n",
		      stderr);
		return 2;
	}
	const char *mode = argv[1], *forced = "auto";
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "m:n:b:p:c:s:k:t:i:")) != -1) {
		switch (opt) {
		case 'm':
			forced = optarg;
			break;
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
		case 'i':
			id_file = optarg;
			break;
		default:
			return 2;
		}
	}
	bool jobs_mode = strcmp(mode, "e2e") == 0 || strcmp(mode, "submit") == 0;
	if (!coll_name || (jobs_mode && !topic) || batch < 1 || batch > MAX_BATCH ||
	    producers < 1 || workers < 1 || n_jobs < 1)
		die("arguments",
		    "need -k COLL (and -t TOPIC for e2e and submit), 1 <= batch <= 1000");
	brokers = getenv("DJOB_KAFKA_BROKERS") ? getenv("DJOB_KAFKA_BROKERS") : "127.0.0.1:9092";
	mongo_uri = getenv("DJOB_MONGO_URI") ? getenv("DJOB_MONGO_URI")
	                                     : "mongodb://127.0.0.1:27017/jobsdb";
	mongoc_log_set_handler(mongo_log, NULL);
	mongoc_init();
	bson_error_t e;
	mongoc_uri_t *uri = mongoc_uri_new_with_error(mongo_uri, &e);
	if (!uri)
		die("mongo uri", e.message);
	/* A stuck server fails the probe in seconds, not libmongoc's 5 min. */
	if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 60000);
	alarm(strcmp(mode, "fill") == 0 ? 900 : 300);
	if (mongoc_uri_get_database(uri))
		snprintf(db_name, sizeof db_name, "%s", mongoc_uri_get_database(uri));
	pool = mongoc_client_pool_new(uri);
	mongoc_client_pool_set_error_api(pool, 2);
	mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
	mongoc_apm_set_command_started_cb(cbs, command_started);
	mongoc_client_pool_set_apm_callbacks(pool, cbs, NULL);
	mongoc_apm_callbacks_destroy(cbs);
	mongoc_uri_destroy(uri);
	int rc = 0;
	if (strcmp(mode, "drop") == 0) {
		drop_all();
	} else {
		detect_mode(forced);
		if (strcmp(mode, "info") == 0) {
			printf("{\"mode\":\"info\",\"server\":\"%s\",\"store_mode\":\"%s\"}\n",
			       server, lock_mode ? "locks" : "atomic");
		} else if (strcmp(mode, "fill") == 0) {
			rc = run_fill();
		} else if (strcmp(mode, "get") == 0) {
			rc = run_get();
		} else if (jobs_mode) {
			rc = run_jobs(strcmp(mode, "e2e") == 0);
			if (!getenv("RAW_PROBE_KEEP"))
				drop_all();
		} else {
			die("mode", mode);
		}
	}
	mongoc_client_pool_destroy(pool);
	mongoc_cleanup();
	return rc;
}
