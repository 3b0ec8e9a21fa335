/*
 * The worker: one librdkafka consumer (the thread that calls run), a queue,
 * a pool of handler threads and a lease keeper.
 *
 * The consumer thread never waits on a handler: it enqueues messages, pauses
 * its partitions while the queue is full, and commits per partition the
 * offset below which every job has had its final write.
 *
 * The queue is long (config worker.queue, 256 jobs beyond the pool) because
 * pausing is costly in librdkafka 2.0: a pause drops the messages fetched
 * ahead, and after a resume the next fetch comes 0.5 to 1 s later. With a
 * queue as long as the pool, as before, the pool sat idle through most of
 * each cycle (32 jobs/s where the servers allowed 80). Resuming once the
 * queue is half empty hides that delay.
 */
#include "kafka.h"
#include "sink_private.h"
#include "worker_private.h"
#include "metrics.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COMMIT_INTERVAL_MS 200
#define DRAIN_TIMEOUT_MS 60000
#define MAX_BACKOFF_MS 5000
#define QUEUE_BYTES (16 * 1024 * 1024) /* of messages queued and not yet taken */

typedef struct task_s {
	struct task_s *next;
	djob_job_t *job; /* NULL when the message is not a job */
	char *topic;
	int32_t partition;
	int64_t offset;
	size_t bytes;        /* the message's, counted in queued_bytes while queued */
	bool abandoned;      /* stopped before its final write: never committed */
	int64_t extended_at; /* monotonic ms of the last lease extension */
	int64_t progress_at; /* monotonic ms of the last progress write */
} task_t;

/* How often the lease keeper looks at each running job (cancel check). */
#define SYNC_INTERVAL_MS 500
#define PROGRESS_INTERVAL_MS 1000

typedef struct {
	char *type;
	djob_handler_fn fn;
	void *user_data;
} handler_t;

struct djob_worker_s {
	djob_config_t *conf; /* first: see kafka_log */
	char *id;
	handler_t *handlers;
	size_t nhandlers;
	void **plugins;
	size_t nplugins;
	djob_sink_t *sink;
	int concurrency;
	long lease_ms;

	rd_kafka_t *rk;
	pthread_mutex_t mu; /* queue, counters, offsets, paused */
	pthread_cond_t cv_work;
	pthread_cond_t cv_idle;
	task_t *head, *tail;
	size_t active; /* queued + running */
	size_t queued_bytes;
	djob_offsets_t *offsets;
	bool dirty;
	bool paused;
	size_t resume_at;     /* paused until active drops to this (may_resume) */
	rd_kafka_queue_t *cq; /* the queue run's poll waits on (NULL: none) */
	int assigned;         /* partitions held now */
	bool pool_quit;
	pthread_t *pool;

	pthread_mutex_t lease_mu; /* running[] */
	pthread_cond_t lease_cv;
	task_t **running;
	size_t nrunning;
	bool lease_quit;
	pthread_t lease_thread;

	atomic_int stopping;
	atomic_int running_flag;
	pthread_mutex_t run_mu;
	pthread_cond_t run_cv;
	pthread_t bg;
	bool bg_started;

	atomic_long processed, completed, failed, retried, skipped, stale;

	/* Metrics hooks (worker_private.h). */
	djob_worker_job_hook_fn job_hook;
	void *job_hook_opaque;
	atomic_llong lag;
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int djob_worker_new(djob_worker_t **out, const djob_config_t *conf, djob_error_t *err)
{
	*out = NULL;
	djob_worker_t *w = calloc(1, sizeof *w);
	if (!w)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	int rc = djob_config_dup(&w->conf, conf, err);
	if (rc != 0) {
		free(w);
		return rc;
	}
	const char *id = djob_config_get(conf, "worker.id");
	if (id && *id) {
		w->id = djob_strdup(id);
	} else {
		char host[64] = "worker", uuid[37], buf[128];
		gethostname(host, sizeof host - 1);
		djob_uuid_v4(uuid);
		snprintf(buf, sizeof buf, "%s-%ld-%.8s", host, (long)getpid(), uuid);
		w->id = djob_strdup(buf);
	}
	w->concurrency = (int)djob_config_get_int(conf, "concurrency");
	if (w->concurrency < 1)
		w->concurrency = 1;
	w->lease_ms = djob_config_get_int(conf, "lease.ms");
	atomic_store(&w->lag, -1);
	if (w->lease_ms < 1000)
		w->lease_ms = 30000;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv_work, NULL);
	pthread_cond_init(&w->cv_idle, NULL);
	pthread_mutex_init(&w->lease_mu, NULL);
	pthread_cond_init(&w->lease_cv, NULL);
	pthread_mutex_init(&w->run_mu, NULL);
	pthread_cond_init(&w->run_cv, NULL);
	*out = w;
	return 0;
}

void djob_worker_free(djob_worker_t *w)
{
	if (!w)
		return;
	djob_worker_stop(w, NULL);
	for (size_t i = 0; i < w->nhandlers; i++)
		free(w->handlers[i].type);
	free(w->handlers);
	djob_sink_free(w->sink);
	for (size_t i = 0; i < w->nplugins; i++)
		dlclose(w->plugins[i]);
	free(w->plugins);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv_work);
	pthread_cond_destroy(&w->cv_idle);
	pthread_mutex_destroy(&w->lease_mu);
	pthread_cond_destroy(&w->lease_cv);
	pthread_mutex_destroy(&w->run_mu);
	pthread_cond_destroy(&w->run_cv);
	free(w->id);
	djob_config_free(w->conf);
	free(w);
}

const char *djob_worker_id(const djob_worker_t *w)
{
	return w->id;
}

int djob_worker_is_running(const djob_worker_t *w)
{
	return atomic_load(&w->running_flag);
}

static handler_t *find_handler(djob_worker_t *w, const char *type)
{
	for (size_t i = 0; i < w->nhandlers; i++)
		if (strcmp(w->handlers[i].type, type) == 0)
			return &w->handlers[i];
	return NULL;
}

int djob_worker_register(djob_worker_t *w, const char *type, djob_handler_fn fn, void *user_data,
                         djob_error_t *err)
{
	if (!w || !fn || !type || !djob_type_is_valid(type))
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "A handler needs a valid type and a function");
	if (atomic_load(&w->running_flag))
		return djob_set_error(err, DJOB_ESTATE, 0, "Handlers cannot change while running");
	handler_t *h = find_handler(w, type);
	if (!h) {
		handler_t *n = realloc(w->handlers, (w->nhandlers + 1) * sizeof *n);
		if (!n)
			return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
		w->handlers = n;
		h = &w->handlers[w->nhandlers];
		h->type = djob_strdup(type);
		if (!h->type)
			return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
		w->nhandlers++;
	}
	h->fn = fn;
	h->user_data = user_data;
	return 0;
}

int djob_worker_load_plugin(djob_worker_t *w, const char *path, djob_error_t *err)
{
	if (atomic_load(&w->running_flag))
		return djob_set_error(err, DJOB_ESTATE, 0, "Plugins cannot load while running");
	void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!so)
		return djob_set_error(err, DJOB_EINVAL, 0, "Cannot load plugin %s: %s", path, dlerror());
	/* Checked before any of the plugin's code is called. */
	const int *abi = dlsym(so, "djob_plugin_abi_version");
	if (!abi || *abi != DJOB_PLUGIN_ABI_VERSION) {
		int rc = abi ? djob_set_error(
				       err, DJOB_EINVAL, 0,
				       "Plugin %s is built for plugin ABI %d, this libdjob has "
				       "%d: rebuild it against this libdjob",
				       path, *abi, DJOB_PLUGIN_ABI_VERSION)
		             : djob_set_error(err, DJOB_EINVAL, 0,
		                              "Plugin %s states no plugin ABI (DJOB_PLUGIN_ABI): "
		                              "rebuild it against this libdjob",
		                              path);
		dlclose(so);
		return rc;
	}
	int (*reg)(djob_worker_t *, djob_error_t *);
	*(void **)&reg = dlsym(so, "djob_plugin_register");
	if (!reg) {
		dlclose(so);
		return djob_set_error(err, DJOB_EINVAL, 0, "Plugin %s has no djob_plugin_register",
		                      path);
	}
	void **n = realloc(w->plugins, (w->nplugins + 1) * sizeof *n);
	if (!n) {
		dlclose(so);
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	w->plugins = n;
	w->plugins[w->nplugins++] = so;
	return reg(w, err);
}

int djob_worker_set_sink(djob_worker_t *w, djob_sink_t *sink, djob_error_t *err)
{
	if (atomic_load(&w->running_flag))
		return djob_set_error(err, DJOB_ESTATE, 0, "The sink cannot change while running");
	djob_sink_free(w->sink);
	w->sink = sink;
	return 0;
}

/* ---- the running set, for the lease keeper ---- */

static void running_add(djob_worker_t *w, task_t *t)
{
	pthread_mutex_lock(&w->lease_mu);
	w->running[w->nrunning++] = t;
	pthread_mutex_unlock(&w->lease_mu);
}

static void running_remove(djob_worker_t *w, task_t *t)
{
	pthread_mutex_lock(&w->lease_mu);
	for (size_t i = 0; i < w->nrunning; i++) {
		if (w->running[i] == t) {
			w->running[i] = w->running[--w->nrunning];
			break;
		}
	}
	pthread_mutex_unlock(&w->lease_mu);
}

/* One job's round: extend the lease when a third of it has passed, else
 * write changed progress (at most once a second), else check the job is
 * still ours (a cancel). Caller holds lease_mu. */
static void keep_job(djob_worker_t *w, task_t *t, int64_t now)
{
	djob_job_t *job = t->job;
	djob_error_t e;
	int rc;
	char *progress = NULL;
	bool sync = w->sink->ops.sync != NULL;
	if (sync && !atomic_load(&job->finishing) && now - t->progress_at >= PROGRESS_INTERVAL_MS)
		progress = djob_job_take_progress(job);
	if (progress || (sync && now - t->extended_at < w->lease_ms / 3)) {
		rc = w->sink->ops.sync(w->sink->opaque, job, w->lease_ms, progress, &e);
		if (progress && rc == 0) {
			t->progress_at = now;
			t->extended_at = now;
		}
		free(progress);
	} else if (now - t->extended_at >= w->lease_ms / 3) {
		rc = w->sink->ops.extend(w->sink->opaque, job, w->lease_ms, &e);
		if (rc == 0)
			t->extended_at = now;
	} else {
		return;
	}
	if (rc == DJOB_ECONFLICT && atomic_load(&job->finishing)) {
		/* The outcome was written meanwhile: nothing to hold. */
	} else if (rc == DJOB_ECONFLICT) {
		if (!atomic_exchange(&job->lease_lost, 1))
			djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "Job %s: %s: stopping it",
			          job->id, e.message);
	} else if (rc != 0) {
		djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "Job %s: lease not kept: %s",
		          job->id, e.message);
	}
}

static void *lease_loop(void *arg)
{
	djob_worker_t *w = arg;
	pthread_mutex_lock(&w->lease_mu);
	while (!w->lease_quit) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long wait = w->sink->ops.sync ? SYNC_INTERVAL_MS : w->lease_ms / 3;
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->lease_cv, &w->lease_mu, &ts);
		if (w->lease_quit)
			break;
		/* Removal waits for this round, so tasks stay valid here. */
		int64_t now = djob_mono_ms();
		for (size_t i = 0; i < w->nrunning; i++)
			keep_job(w, w->running[i], now);
	}
	pthread_mutex_unlock(&w->lease_mu);
	return NULL;
}

/* ---- running one job ---- */

static void report(djob_worker_t *w, const djob_job_t *job, const char *outcome, double secs)
{
	if (w->job_hook)
		w->job_hook(w->job_hook_opaque, job ? job->type : "unknown", outcome, secs);
}

/* Claim, run, record. Returns false when the task was abandoned (stop
 * requested while the store could not be reached). */
static bool process(djob_worker_t *w, task_t *t)
{
	djob_job_t *job = t->job;
	if (!job) {
		atomic_fetch_add(&w->skipped, 1);
		report(w, NULL, "skipped", -1);
		return true;
	}
	job->worker_id = w->id;
	job->stopping = &w->stopping;
	djob_error_t e;
	long backoff = 100;
	for (;;) {
		int attempts = 0, max_attempts = 0;
		int rc = w->sink->ops.claim(w->sink->opaque, job, w->lease_ms, &attempts,
		                            &max_attempts, &e);
		if (rc == 0) {
			job->attempts = attempts;
			job->max_attempts = max_attempts;
			break;
		}
		if (rc == DJOB_ECONFLICT || rc == DJOB_ENOTFOUND || rc == DJOB_EINVAL) {
			/* Terminal, leased by a live worker, or unknown: skip. */
			djob_logf(w->conf, DJOB_LOG_INFO, "worker", "Job %s skipped: %s", job->id,
			          e.message);
			atomic_fetch_add(&w->skipped, 1);
			report(w, job, "skipped", -1);
			return true;
		}
		if (atomic_load(&w->stopping))
			return false;
		djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "Job %s: claim failed: %s", job->id,
		          e.message);
		sleep_ms(backoff);
		backoff = backoff * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : backoff * 2;
	}
	atomic_fetch_add(&w->processed, 1);
	handler_t *h = find_handler(w, job->type);
	djob_job_status_t outcome;
	t->extended_at = djob_mono_ms();
	t->progress_at = 0;
	running_add(w, t);
	int64_t started = djob_mono_ms();
	if (h) {
		outcome = h->fn(job, h->user_data);
	} else {
		djob_job_set_error(job, "No handler for this job type");
		outcome = DJOB_JOB_FAIL;
	}
	double secs = (double)(djob_mono_ms() - started) / 1000.0;
	/* The lease keeper goes on extending the lease until the outcome is
	 * written: a status write slower than the lease (a busy store) must
	 * not let the job run again. */
	atomic_store(&job->finishing, 1);
	if (djob_fault("slow_finish")) /* as a busy store would */
		sleep_ms(getenv("DJOB_FAULT_DELAY_MS") ? atol(getenv("DJOB_FAULT_DELAY_MS"))
		                                       : 5000);
	if (outcome != DJOB_JOB_DONE && outcome != DJOB_JOB_RETRY && outcome != DJOB_JOB_FAIL) {
		djob_job_set_error(job, "Handler returned an unknown status");
		outcome = DJOB_JOB_FAIL;
	}
	if (outcome == DJOB_JOB_DONE && job->result_error) {
		/* A result djob_job_set_result refused is never stored: the job
		 * fails with the reason, once (a retry would only repeat it). */
		char why[DJOB_ERROR_MESSAGE_MAX + 32];
		snprintf(why, sizeof why, "Handler result refused: %s", job->result_error);
		djob_job_set_error(job, why);
		outcome = DJOB_JOB_FAIL;
	}
	if (outcome != DJOB_JOB_DONE && !job->error)
		djob_job_set_error(job, "Handler failed without a message");
	/* The last progress, before the outcome (lost only if this write
	 * fails; the outcome's fence decides what counts). */
	char *progress = w->sink->ops.sync ? djob_job_take_progress(job) : NULL;
	if (progress && w->sink->ops.sync(w->sink->opaque, job, w->lease_ms, progress, &e) != 0)
		djob_logf(w->conf, DJOB_LOG_INFO, "worker", "Job %s: last progress not written: %s",
		          job->id, e.message);
	free(progress);
	int64_t give_up = 0;
	backoff = 100;
	for (;;) {
		int rc = w->sink->ops.finish(w->sink->opaque, job, outcome, &e);
		if (rc == 0)
			break;
		if (rc == DJOB_ECONFLICT || rc == DJOB_EINVAL) {
			/* Fenced off: a newer attempt owns the job. */
			djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "Job %s: result refused: %s",
			          job->id, e.message);
			atomic_fetch_add(&w->stale, 1);
			report(w, job, "stale", secs);
			running_remove(w, t);
			return true;
		}
		if (atomic_load(&w->stopping)) {
			if (!give_up)
				give_up = djob_mono_ms() + 10000;
			else if (djob_mono_ms() > give_up) {
				running_remove(w, t);
				return false; /* the lease runs out and the job runs again */
			}
		}
		djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "Job %s: status write failed: %s",
		          job->id, e.message);
		sleep_ms(backoff);
		backoff = backoff * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : backoff * 2;
	}
	running_remove(w, t);
	const char *what = "failed";
	if (outcome == DJOB_JOB_DONE) {
		atomic_fetch_add(&w->completed, 1);
		what = "completed";
	} else if (outcome == DJOB_JOB_RETRY && job->attempts < job->max_attempts) {
		atomic_fetch_add(&w->retried, 1);
		what = "retried";
	} else {
		atomic_fetch_add(&w->failed, 1);
	}
	report(w, job, what, secs);
	return true;
}

/* May a paused worker fetch again? Its queue is half empty. Caller holds mu. */
static bool may_resume(const djob_worker_t *w)
{
	return w->active <= w->resume_at && w->queued_bytes <= QUEUE_BYTES / 2;
}

static void task_free(task_t *t)
{
	djob_job_free(t->job);
	free(t->topic);
	free(t);
}

static void *pool_loop(void *arg)
{
	djob_worker_t *w = arg;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (!w->head && !w->pool_quit)
			pthread_cond_wait(&w->cv_work, &w->mu);
		task_t *t = w->head;
		if (!t) {
			pthread_mutex_unlock(&w->mu);
			return NULL;
		}
		w->head = t->next;
		if (!w->head)
			w->tail = NULL;
		w->queued_bytes -= t->bytes;
		pthread_mutex_unlock(&w->mu);

		bool finished = process(w, t);

		pthread_mutex_lock(&w->mu);
		if (finished) {
			djob_offsets_done(w->offsets, t->topic, t->partition, t->offset);
			w->dirty = true;
		}
		w->active--;
		/* Wake the consumer's poll so a paused worker fetches again at
		 * once, not when the poll's timeout ends (up to 100 ms with the
		 * pool idle). */
		if (w->paused && may_resume(w) && w->cq)
			rd_kafka_queue_yield(w->cq);
		pthread_cond_broadcast(&w->cv_idle);
		pthread_mutex_unlock(&w->mu);
		task_free(t);
	}
}

/* ---- offsets ---- */

static void add_committable(const char *topic, int32_t partition, int64_t committable, void *opaque)
{
	if (committable >= 0)
		rd_kafka_topic_partition_list_add(opaque, topic, partition)->offset = committable;
}

/* Commit what every partition has finished. Caller does not hold mu. */
static void commit(djob_worker_t *w, bool sync)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	pthread_mutex_lock(&w->mu);
	djob_offsets_foreach(w->offsets, add_committable, l);
	w->dirty = false;
	pthread_mutex_unlock(&w->mu);
	if (l->cnt > 0) {
		rd_kafka_resp_err_t e = rd_kafka_commit(w->rk, l, sync ? 0 : 1);
		if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
			djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "Commit failed: %s",
			          rd_kafka_err2str(e));
	}
	rd_kafka_topic_partition_list_destroy(l);
}

/* Wait until no task is queued or running, at most timeout_ms. Caller
 * holds mu. */
static void wait_idle(djob_worker_t *w, long timeout_ms)
{
	int64_t deadline = djob_mono_ms() + timeout_ms;
	while (w->active > 0 && djob_mono_ms() < deadline) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->cv_idle, &w->mu, &ts);
	}
}

static void forget_partition(djob_worker_t *w, const rd_kafka_topic_partition_t *p)
{
	djob_offsets_forget(w->offsets, p->topic, p->partition);
}

/* Eager rebalancing revokes every partition: drop what has not started
 * (the next owner consumes it again from the committed offset), wait for
 * what runs, commit, let go. */
static void revoke_all(djob_worker_t *w, rd_kafka_topic_partition_list_t *parts)
{
	pthread_mutex_lock(&w->mu);
	while (w->head) {
		task_t *t = w->head;
		w->head = t->next;
		w->active--;
		w->queued_bytes -= t->bytes;
		task_free(t);
	}
	w->tail = NULL;
	wait_idle(w, DRAIN_TIMEOUT_MS);
	pthread_mutex_unlock(&w->mu);
	commit(w, true);
	pthread_mutex_lock(&w->mu);
	for (int i = 0; i < parts->cnt; i++)
		forget_partition(w, &parts->elems[i]);
	pthread_mutex_unlock(&w->mu);
}

static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	djob_worker_t *w = opaque;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		rd_kafka_assign(rk, parts);
		/* librdkafka keeps a partition's pause flag across a revoke and a
		 * new assignment, so set it both ways: a partition paused while
		 * the pool was full must not stay paused once it is not. */
		pthread_mutex_lock(&w->mu);
		if (w->paused)
			rd_kafka_pause_partitions(rk, parts);
		else
			rd_kafka_resume_partitions(rk, parts);
		w->assigned = parts->cnt;
		pthread_mutex_unlock(&w->mu);
		djob_logf(w->conf, DJOB_LOG_INFO, "worker", "Assigned %d partitions", parts->cnt);
	} else {
		if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			revoke_all(w, parts);
		rd_kafka_assign(rk, NULL);
		pthread_mutex_lock(&w->mu);
		w->assigned = 0;
		pthread_mutex_unlock(&w->mu);
		djob_logf(w->conf, DJOB_LOG_INFO, "worker", "Revoked %d partitions", parts->cnt);
	}
}

static void set_paused(djob_worker_t *w, bool pause)
{
	rd_kafka_topic_partition_list_t *a = NULL;
	if (rd_kafka_assignment(w->rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
		if (pause)
			rd_kafka_pause_partitions(w->rk, a);
		else
			rd_kafka_resume_partitions(w->rk, a);
	}
	if (a)
		rd_kafka_topic_partition_list_destroy(a);
	w->paused = pause;
}

static void enqueue(djob_worker_t *w, const rd_kafka_message_t *m)
{
	task_t *t = calloc(1, sizeof *t);
	const char *topic = rd_kafka_topic_name(m->rkt);
	if (!t || !(t->topic = djob_strdup(topic))) {
		free(t);
		djob_logf(w->conf, DJOB_LOG_ERROR, "worker", "Out of memory");
		return;
	}
	t->partition = m->partition;
	t->offset = m->offset;
	t->bytes = m->len;
	djob_error_t e;
	if (djob_job_from_message(&t->job, m->key, m->key_len, m->payload, m->len, &e) != 0)
		djob_logf(w->conf, DJOB_LOG_WARNING, "worker",
		          "Message %s[%d]@%lld is not a job and is skipped: %s", topic,
		          (int)m->partition, (long long)m->offset, e.message);
	pthread_mutex_lock(&w->mu);
	djob_offsets_add(w->offsets, t->topic, t->partition, t->offset);
	if (w->tail)
		w->tail->next = t;
	else
		w->head = t;
	w->tail = t;
	w->active++;
	w->queued_bytes += t->bytes;
	pthread_cond_signal(&w->cv_work);
	pthread_mutex_unlock(&w->mu);
}

/* ---- run ---- */

/* librdkafka's statistics (on the polling thread): keep the lag. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	(void)rk;
	djob_worker_t *w = opaque;
	atomic_store(&w->lag, djob_kafka_stats_consumer_lag(json, len));
	return 0;
}

static int make_consumer(djob_worker_t *w, djob_error_t *err)
{
	rd_kafka_conf_t *kc = djob_kafka_conf_new(w->conf, err);
	if (!kc)
		return err ? err->code : DJOB_EINVAL;
	int rc = 0;
	const char *defaults[][2] = {
		{"group.id", djob_config_get(w->conf, "group.id")},
		{"enable.auto.commit", "false"},
		{"enable.auto.offset.store", "false"},
		{"auto.offset.reset", "earliest"},
		{"session.timeout.ms", "10000"},
		{"heartbeat.interval.ms", "1000"},
		{"statistics.interval.ms", "5000"}, /* consumer lag for metrics */
	};
	for (size_t i = 0; rc == 0 && i < sizeof defaults / sizeof defaults[0]; i++)
		rc = djob_kafka_conf_default(kc, w->conf, defaults[i][0], defaults[i][1], err);
	/* The group's members name their workers (GET /workers): the worker
	 * id is the client.id, whatever kafka.client.id says. */
	char errstr[512];
	if (rc == 0 &&
	    rd_kafka_conf_set(kc, "client.id", w->id, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
		rc = djob_set_error(err, DJOB_EINVAL, 0, "Worker id as Kafka client.id: %s",
		                    errstr);
	if (rc != 0) {
		rd_kafka_conf_destroy(kc);
		return rc;
	}
	rd_kafka_conf_set_rebalance_cb(kc, rebalance);
	rd_kafka_conf_set_stats_cb(kc, stats_cb);
	rd_kafka_conf_set_opaque(kc, w);
	w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof errstr);
	if (!w->rk) {
		rd_kafka_conf_destroy(kc);
		return djob_set_error(err, DJOB_EKAFKA, 0, "Cannot create the Kafka consumer: %s",
		                      errstr);
	}
	rd_kafka_poll_set_consumer(w->rk);
	char **topics = calloc(w->nhandlers, sizeof *topics);
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new((int)w->nhandlers);
	for (size_t i = 0; topics && i < w->nhandlers; i++) {
		char buf[160];
		djob_topic_name(w->conf, w->handlers[i].type, buf, sizeof buf);
		topics[i] = djob_strdup(buf);
		rd_kafka_topic_partition_list_add(sub, buf, RD_KAFKA_PARTITION_UA);
	}
	djob_error_t e;
	if (topics && djob_kafka_ensure_topics(w->rk, w->conf, topics, w->nhandlers, &e) != 0)
		djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "%s", e.message);
	rd_kafka_resp_err_t ke = rd_kafka_subscribe(w->rk, sub);
	if (ke)
		rc = djob_set_error(err, DJOB_EKAFKA, 1, "Cannot subscribe: %s",
		                    rd_kafka_err2str(ke));
	rd_kafka_topic_partition_list_destroy(sub);
	for (size_t i = 0; topics && i < w->nhandlers; i++)
		free(topics[i]);
	free(topics);
	if (rc != 0) {
		rd_kafka_destroy(w->rk);
		w->rk = NULL;
	}
	return rc;
}

/* What can fail at start, in the caller's thread, so that djob_worker_start
 * reports a bad sink, property or broker list instead of a background
 * thread logging it (a misspelt DJOB_KAFKA_* property used to leave a
 * worker serving /health without a consumer). */
static int run_prepare(djob_worker_t *w, djob_error_t *err)
{
	int rc = 0;
	if (w->nhandlers == 0)
		rc = djob_set_error(err, DJOB_ESTATE, 0, "No handler is registered");
	if (rc == 0 && !w->sink)
		rc = djob_sink_store_new(&w->sink, w->conf, err);
	if (rc == 0 && !(w->offsets = djob_offsets_new()))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	if (rc == 0)
		rc = make_consumer(w, err);
	if (rc != 0) {
		djob_offsets_free(w->offsets);
		w->offsets = NULL;
	}
	return rc;
}

/* The consumer's loop from run_prepare to the drain; run_prepare succeeded. */
static int run_loop(djob_worker_t *w)
{
	w->pool_quit = false;
	w->lease_quit = false;
	w->paused = false;
	w->running = calloc((size_t)w->concurrency, sizeof *w->running);
	w->pool = calloc((size_t)w->concurrency, sizeof *w->pool);
	for (int i = 0; i < w->concurrency; i++)
		pthread_create(&w->pool[i], NULL, pool_loop, w);
	pthread_create(&w->lease_thread, NULL, lease_loop, w);
	djob_logf(w->conf, DJOB_LOG_INFO, "worker", "Worker %s consuming with concurrency %d",
	          w->id, w->concurrency);

	size_t queue = (size_t)djob_config_get_int(w->conf, "worker.queue");
	size_t high = (size_t)w->concurrency + queue;
	w->resume_at = (size_t)w->concurrency + queue / 2;
	pthread_mutex_lock(&w->mu);
	w->cq = rd_kafka_queue_get_consumer(w->rk);
	pthread_mutex_unlock(&w->mu);
	int64_t last_commit = djob_mono_ms();
	while (!atomic_load(&w->stopping)) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 100);
		if (m) {
			if (!m->err)
				enqueue(w, m);
			else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				djob_logf(w->conf, DJOB_LOG_WARNING, "worker", "Consumer: %s",
				          rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
		}
		pthread_mutex_lock(&w->mu);
		/* A full queue pauses the partitions; poll goes on (heartbeats,
		 * rebalances) without fetching. */
		if (!w->paused && (w->active >= high || w->queued_bytes >= QUEUE_BYTES))
			set_paused(w, true);
		else if (w->paused && may_resume(w))
			set_paused(w, false);
		bool due = w->dirty && djob_mono_ms() - last_commit >= COMMIT_INTERVAL_MS;
		pthread_mutex_unlock(&w->mu);
		if (due) {
			commit(w, false);
			last_commit = djob_mono_ms();
		}
	}

	/* Drain: stop fetching, finish what was taken, commit, leave. */
	pthread_mutex_lock(&w->mu);
	set_paused(w, true);
	wait_idle(w, DRAIN_TIMEOUT_MS);
	pthread_mutex_unlock(&w->mu);
	commit(w, true);
	pthread_mutex_lock(&w->mu);
	rd_kafka_queue_t *cq = w->cq;
	w->cq = NULL;
	pthread_mutex_unlock(&w->mu);
	if (cq)
		rd_kafka_queue_destroy(cq);
	rd_kafka_consumer_close(w->rk);
	rd_kafka_destroy(w->rk);
	w->rk = NULL;

	pthread_mutex_lock(&w->mu);
	w->pool_quit = true;
	pthread_cond_broadcast(&w->cv_work);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->concurrency; i++)
		pthread_join(w->pool[i], NULL);
	pthread_mutex_lock(&w->lease_mu);
	w->lease_quit = true;
	pthread_cond_broadcast(&w->lease_cv);
	pthread_mutex_unlock(&w->lease_mu);
	pthread_join(w->lease_thread, NULL);
	/* Tasks never started (the drain timed out) are dropped uncommitted. */
	while (w->head) {
		task_t *t = w->head;
		w->head = t->next;
		task_free(t);
	}
	w->tail = NULL;
	w->active = 0;
	free(w->pool);
	free(w->running);
	w->pool = NULL;
	w->running = NULL;
	w->nrunning = 0;
	djob_offsets_free(w->offsets);
	w->offsets = NULL;
	djob_logf(w->conf, DJOB_LOG_INFO, "worker", "Worker %s stopped", w->id);
	return 0;
}

static void mark_stopped(djob_worker_t *w)
{
	pthread_mutex_lock(&w->run_mu);
	atomic_store(&w->stopping, 0);
	atomic_store(&w->running_flag, 0);
	pthread_cond_broadcast(&w->run_cv);
	pthread_mutex_unlock(&w->run_mu);
}

int djob_worker_run(djob_worker_t *w, djob_error_t *err)
{
	if (atomic_exchange(&w->running_flag, 1))
		return djob_set_error(err, DJOB_ESTATE, 0, "The worker is already running");
	int rc = run_prepare(w, err);
	if (rc == 0)
		rc = run_loop(w);
	mark_stopped(w);
	return rc;
}

static void *bg_main(void *arg)
{
	djob_worker_t *w = arg;
	run_loop(w);
	mark_stopped(w);
	return NULL;
}

int djob_worker_start(djob_worker_t *w, djob_error_t *err)
{
	if (w->bg_started && !atomic_load(&w->running_flag)) {
		pthread_join(w->bg, NULL);
		w->bg_started = false;
	}
	if (atomic_exchange(&w->running_flag, 1))
		return djob_set_error(err, DJOB_ESTATE, 0, "The worker is already running");
	atomic_store(&w->stopping, 0);
	int rc = run_prepare(w, err);
	if (rc != 0) {
		atomic_store(&w->running_flag, 0);
		return rc;
	}
	if (pthread_create(&w->bg, NULL, bg_main, w) != 0) {
		rd_kafka_consumer_close(w->rk);
		rd_kafka_destroy(w->rk);
		w->rk = NULL;
		djob_offsets_free(w->offsets);
		w->offsets = NULL;
		atomic_store(&w->running_flag, 0);
		return djob_set_error(err, DJOB_EINTERNAL, 0, "Cannot start the worker thread");
	}
	w->bg_started = true;
	return 0;
}

void djob_worker_request_stop(djob_worker_t *w)
{
	if (w)
		atomic_store(&w->stopping, 1);
}

int djob_worker_stop(djob_worker_t *w, djob_error_t *err)
{
	(void)err;
	if (!w)
		return 0;
	if (!atomic_load(&w->running_flag) && !w->bg_started)
		return 0; /* not running: nothing to stop, and no stop left pending */
	atomic_store(&w->stopping, 1);
	if (w->bg_started && !pthread_equal(pthread_self(), w->bg)) {
		pthread_join(w->bg, NULL);
		w->bg_started = false;
	} else {
		pthread_mutex_lock(&w->run_mu);
		while (atomic_load(&w->running_flag))
			pthread_cond_wait(&w->run_cv, &w->run_mu);
		pthread_mutex_unlock(&w->run_mu);
	}
	return 0;
}

int djob_worker_stats(char **json_out, const djob_worker_t *w, djob_error_t *err)
{
	djob_worker_t *mw = (djob_worker_t *)w;
	pthread_mutex_lock(&mw->mu);
	size_t active = w->active;
	int assigned = w->assigned;
	pthread_mutex_unlock(&mw->mu);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "running", atomic_load(&w->running_flag));
	cJSON_AddStringToObject(o, "workerId", w->id);
	cJSON_AddNumberToObject(o, "inFlight", (double)active);
	cJSON_AddNumberToObject(o, "assignedPartitions", assigned);
	cJSON_AddNumberToObject(o, "processed", (double)atomic_load(&w->processed));
	cJSON_AddNumberToObject(o, "completed", (double)atomic_load(&w->completed));
	cJSON_AddNumberToObject(o, "failed", (double)atomic_load(&w->failed));
	cJSON_AddNumberToObject(o, "retried", (double)atomic_load(&w->retried));
	cJSON_AddNumberToObject(o, "skipped", (double)atomic_load(&w->skipped));
	cJSON_AddNumberToObject(o, "stale", (double)atomic_load(&w->stale));
	*json_out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return *json_out ? 0 : djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
}

/* ---- metrics hooks (worker_private.h) ---- */

void djob_worker_set_job_hook(djob_worker_t *w, djob_worker_job_hook_fn fn, void *opaque)
{
	w->job_hook = fn;
	w->job_hook_opaque = opaque;
}

long long djob_worker_consumer_lag(const djob_worker_t *w)
{
	return atomic_load(&((djob_worker_t *)w)->lag);
}
