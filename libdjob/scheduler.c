/*
 * The scheduler: a thread that runs djob_store_sweep on an interval and
 * publishes what the sweep requeues.
 */
#include "kafka.h"
#include "store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct djob_scheduler_s {
	djob_config_t *conf;
	djob_store_t *store;
	djob_producer_t *producer;
	long interval_ms;
	long grace_ms;
	int batch;
	int64_t retention_ms[DJOB_RETENTION_N]; /* per finished status; 0: keep */
	int retention_batch;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool quit;
	djob_sweep_stats_t total;
	long removed; /* by retention */
	djob_schedule_stats_t periodic;
	long sweeps, errors;
};

static long key_or(const djob_config_t *conf, const char *key, long dflt)
{
	const char *v = djob_config_get(conf, key);
	return v && *v ? strtol(v, NULL, 10) : dflt;
}

int djob_scheduler_new(djob_scheduler_t **out, const djob_config_t *conf, djob_error_t *err)
{
	*out = NULL;
	djob_scheduler_t *s = calloc(1, sizeof *s);
	if (!s)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	int rc = djob_config_dup(&s->conf, conf, err);
	if (rc == 0)
		rc = djob_store_new(&s->store, conf, err);
	if (rc == 0)
		rc = djob_producer_new(&s->producer, conf, err);
	if (rc != 0) {
		djob_producer_free(s->producer);
		djob_store_free(s->store);
		djob_config_free(s->conf);
		free(s);
		return rc;
	}
	s->interval_ms = key_or(conf, "scheduler.interval.ms", 1000);
	s->grace_ms = key_or(conf, "scheduler.grace.ms", 10000);
	s->batch = (int)key_or(conf, "scheduler.batch", 100);
	for (int i = 0; i < DJOB_RETENTION_N; i++) {
		char key[64];
		snprintf(key, sizeof key, "retention.%s.ms", djob_retention_status(i));
		s->retention_ms[i] = key_or(conf, key, 0);
	}
	s->retention_batch = (int)key_or(conf, "retention.batch", 500);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	*out = s;
	return 0;
}

void djob_scheduler_free(djob_scheduler_t *s)
{
	if (!s)
		return;
	djob_scheduler_stop(s);
	djob_producer_free(s->producer);
	djob_store_free(s->store);
	djob_config_free(s->conf);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static int publish(void *opaque, const char *id, const char *type, const char *doc_json,
                   djob_error_t *err)
{
	djob_scheduler_t *s = opaque;
	char topic[160];
	djob_topic_name(s->conf, type, topic, sizeof topic);
	djob_kafka_msg_t m = {topic, id, doc_json, strlen(doc_json)};
	return djob_producer_send(s->producer, &m, 1, err);
}

static char *stats_json(const djob_sweep_stats_t *st, long removed, const djob_schedule_stats_t *ps,
                        const long *sweeps, const long *errors)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "due", st->due);
	cJSON_AddNumberToObject(o, "expired", st->expired);
	cJSON_AddNumberToObject(o, "exhausted", st->exhausted);
	cJSON_AddNumberToObject(o, "unpublished", st->unpublished);
	cJSON_AddNumberToObject(o, "lostRaces", st->lost_races);
	cJSON_AddNumberToObject(o, "removed", (double)removed);
	cJSON_AddNumberToObject(o, "periodicSubmitted", ps->submitted);
	cJSON_AddNumberToObject(o, "periodicMisfired", ps->misfired);
	cJSON_AddNumberToObject(o, "periodicLostRaces", ps->lost_races);
	if (sweeps)
		cJSON_AddNumberToObject(o, "sweeps", (double)*sweeps);
	if (errors)
		cJSON_AddNumberToObject(o, "errors", (double)*errors);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

int djob_scheduler_sweep(char **stats_json_out, djob_scheduler_t *s, djob_error_t *err)
{
	if (stats_json_out)
		*stats_json_out = NULL;
	djob_sweep_stats_t st;
	int64_t now = djob_now_ms();
	int rc = djob_store_sweep(s->store, now, s->grace_ms, s->batch, publish, s, &st, err);
	int removed[DJOB_RETENTION_N] = {0};
	long n_removed = 0;
	djob_schedule_stats_t ps = {0};
	if (rc == 0)
		rc = djob_store_schedule_sweep(s->store, now, s->batch, publish, s, &ps, err);
	if (rc == 0)
		rc = djob_store_retention(s->store, now, s->retention_ms, s->retention_batch,
		                          removed, err);
	for (int i = 0; i < DJOB_RETENTION_N; i++)
		n_removed += removed[i];
	if (n_removed > 0)
		djob_logf(s->conf, DJOB_LOG_INFO, "scheduler",
		          "Retention removed %ld jobs (completed %d, failed %d, cancelled %d)",
		          n_removed, removed[0], removed[1], removed[2]);
	pthread_mutex_lock(&s->mu);
	s->removed += n_removed;
	s->periodic.submitted += ps.submitted;
	s->periodic.misfired += ps.misfired;
	s->periodic.lost_races += ps.lost_races;
	s->sweeps++;
	if (rc != 0)
		s->errors++;
	s->total.due += st.due;
	s->total.expired += st.expired;
	s->total.exhausted += st.exhausted;
	s->total.unpublished += st.unpublished;
	s->total.lost_races += st.lost_races;
	pthread_mutex_unlock(&s->mu);
	if (rc == 0 && stats_json_out &&
	    !(*stats_json_out = stats_json(&st, n_removed, &ps, NULL, NULL)))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	return rc;
}

static void *loop(void *arg)
{
	djob_scheduler_t *s = arg;
	pthread_mutex_lock(&s->mu);
	while (!s->quit) {
		pthread_mutex_unlock(&s->mu);
		djob_error_t e;
		if (djob_scheduler_sweep(NULL, s, &e) != 0)
			djob_logf(s->conf, DJOB_LOG_WARNING, "scheduler", "Sweep failed: %s",
			          e.message);
		pthread_mutex_lock(&s->mu);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += s->interval_ms / 1000;
		ts.tv_nsec += (s->interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!s->quit)
			pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

int djob_scheduler_start(djob_scheduler_t *s, djob_error_t *err)
{
	if (s->started)
		return djob_set_error(err, DJOB_ESTATE, 0, "The scheduler is already running");
	s->quit = false;
	if (pthread_create(&s->thread, NULL, loop, s) != 0)
		return djob_set_error(err, DJOB_EINTERNAL, 0, "Cannot start the scheduler thread");
	s->started = true;
	return 0;
}

void djob_scheduler_stop(djob_scheduler_t *s)
{
	if (!s || !s->started)
		return;
	pthread_mutex_lock(&s->mu);
	s->quit = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	s->started = false;
}

int djob_scheduler_stats(char **json_out, djob_scheduler_t *s, djob_error_t *err)
{
	pthread_mutex_lock(&s->mu);
	djob_sweep_stats_t t = s->total;
	long sweeps = s->sweeps, errors = s->errors, removed = s->removed;
	djob_schedule_stats_t ps = s->periodic;
	pthread_mutex_unlock(&s->mu);
	*json_out = stats_json(&t, removed, &ps, &sweeps, &errors);
	return *json_out ? 0 : djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
}
