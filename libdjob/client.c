/*
 * The client: validation of submissions, insert then publish, queries and
 * updates. Every HTTP route of djob-api is one call here.
 */
#include "kafka.h"
#include "request.h"
#include "store.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <signal.h>

/* Submissions of at most this many jobs may be written with others. */
#define GROUP_MAX_JOBS 200
/* A group written for longer waits for a server (see submit_grouped). */
#define GROUP_STUCK_MS 1000

/* One submission waiting to be written with others (submit_grouped). */
typedef struct submit_req_s {
	djob_new_job_t *jobs;
	size_t n;
	int rc;
	djob_error_t err;
	bool done;
	bool alone; /* its group failed for a reason of its own: write it alone */
	struct submit_req_s *next;
} submit_req_t;

struct djob_client_s {
	djob_config_t *conf;
	djob_store_t *store;
	djob_producer_t *producer;
	atomic_int topics_done;

	/* Submissions that wait to be written as one group (submit_grouped). */
	pthread_mutex_t group_mu;
	pthread_cond_t group_cv;
	submit_req_t *pending, *pending_tail;
	size_t pending_jobs;
	size_t last_group;  /* jobs in the group written last */
	int64_t last_end;   /* monotonic ms when it was answered */
	int64_t last_start; /* monotonic ms when the newest group was begun */
	long linger_ms;     /* config submit.linger.ms */
	int writers;        /* groups being written now */
	int max_writers;    /* config submit.writers */
	unsigned long long submissions, submitted_jobs, groups; /* djob_client_stats */

	/* The last ping (djob_client_health). */
	pthread_mutex_t health_mu;
	pthread_cond_t health_cv;
	bool health_busy;  /* a ping is under way */
	int64_t health_at; /* monotonic ms of the last result, 0: none yet */
	int health_rc;
	int health_kafka, health_mongo;
	djob_error_t health_err;
};

int djob_client_new(djob_client_t **out, const djob_config_t *conf, djob_error_t *err)
{
	*out = NULL;
	djob_client_t *c = calloc(1, sizeof *c);
	if (!c)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	pthread_mutex_init(&c->health_mu, NULL);
	pthread_cond_init(&c->health_cv, NULL);
	pthread_mutex_init(&c->group_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->group_cv, &ca);
	pthread_condattr_destroy(&ca);
	int rc = djob_config_dup(&c->conf, conf, err);
	if (rc == 0)
		c->max_writers = (int)djob_config_get_int(c->conf, "submit.writers");
	if (rc == 0)
		c->linger_ms = djob_config_get_int(c->conf, "submit.linger.ms");
	if (rc == 0)
		rc = djob_store_new(&c->store, conf, err);
	if (rc == 0)
		rc = djob_producer_new(&c->producer, conf, err);
	if (rc != 0) {
		djob_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void djob_client_free(djob_client_t *c)
{
	if (!c)
		return;
	/* A background ping uses the client: let it finish. */
	pthread_mutex_lock(&c->health_mu);
	while (c->health_busy)
		pthread_cond_wait(&c->health_cv, &c->health_mu);
	pthread_mutex_unlock(&c->health_mu);
	djob_producer_free(c->producer);
	djob_store_free(c->store);
	djob_config_free(c->conf);
	pthread_mutex_destroy(&c->health_mu);
	pthread_cond_destroy(&c->health_cv);
	pthread_mutex_destroy(&c->group_mu);
	pthread_cond_destroy(&c->group_cv);
	free(c);
}

/* Is `type` one this deployment accepts (config key "types")? */
/* Create the topics of the known types once; failures are only logged
 * because the broker may create topics on first produce. */
static void ensure_topics(djob_client_t *c)
{
	if (atomic_exchange(&c->topics_done, 1))
		return;
	const char *list = djob_config_get(c->conf, "types");
	char *copy = djob_strdup(list ? list : "compute,file,blockchain,data");
	char *topics[64];
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t && n < 64; t = strtok_r(NULL, ",", &save)) {
		char buf[160];
		djob_topic_name(c->conf, t, buf, sizeof buf);
		topics[n++] = djob_strdup(buf);
	}
	djob_error_t e;
	if (djob_kafka_ensure_topics(djob_producer_handle(c->producer), c->conf, topics, n, &e) !=
	    0)
		djob_logf(c->conf, DJOB_LOG_WARNING, "client", "%s", e.message);
	for (size_t i = 0; i < n; i++)
		free(topics[i]);
	free(copy);
}

/* The jobs are in Kafka: drop their outbox entries. A failure only makes
 * the scheduler publish them once more, which workers tolerate. */
static void mark_published(djob_client_t *c, const char *const *ids, size_t n)
{
	djob_error_t e;
	if (n > 0 && djob_store_mark_published(c->store, ids, n, &e) != 0)
		djob_logf(c->conf, DJOB_LOG_WARNING, "client", "%s", e.message);
}

/* Publish jobs (the queued ones) and, when `mark`, mark them published. On
 * a publish failure the jobs are deleted again, so a failed submission
 * leaves nothing behind. */
static int publish(djob_client_t *c, const djob_new_job_t *jobs, size_t n, bool mark,
                   djob_error_t *err)
{
	djob_kafka_msg_t *msgs = calloc(n, sizeof *msgs);
	char(*topics)[160] = calloc(n, sizeof *topics);
	const char **ids = calloc(n, sizeof *ids);
	size_t m = 0;
	int rc = 0;
	if (!msgs || !topics || !ids)
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (jobs[i].state != DJOB_STATE_QUEUED)
			continue; /* scheduled: the scheduler publishes it when due */
		djob_topic_name(c->conf, jobs[i].type, topics[m], sizeof topics[m]);
		msgs[m].topic = topics[m];
		msgs[m].key = jobs[i].id;
		/* djob_submission_parse rendered it already. */
		msgs[m].value =
			jobs[i].message ? strdup(jobs[i].message) : djob_new_job_to_json(&jobs[i]);
		if (!msgs[m].value) {
			rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
			break;
		}
		msgs[m].value_len = strlen(msgs[m].value);
		ids[m] = jobs[i].id;
		m++;
	}
	if (rc == 0)
		rc = djob_producer_send(c->producer, msgs, m, err);
	if (rc == 0 && mark) {
		mark_published(c, ids, m);
	} else if (rc == DJOB_EKAFKA) {
		djob_store_delete_unpublished(c->store, jobs, n, NULL);
	}
	for (size_t i = 0; msgs && i < m; i++)
		free((char *)msgs[i].value);
	free(msgs);
	free(topics);
	free(ids);
	return rc;
}

/* Insert and publish validated jobs. *created is 0 when a single job with
 * an idempotency key already existed (its id is then in jobs[0].id). */
static int submit_jobs(djob_client_t *c, djob_new_job_t *jobs, size_t n, int *created, bool mark,
                       djob_error_t *err)
{
	*created = 1;
	if (n == 1 && jobs[0].idempotency_key) {
		char *id = NULL;
		int rc = djob_store_find_idempotent(c->store, jobs[0].idempotency_key, &id, err);
		if (rc == 0) {
			snprintf(jobs[0].id, sizeof jobs[0].id, "%s", id);
			free(id);
			*created = 0;
			return 0;
		}
		if (rc != DJOB_ENOTFOUND)
			return rc;
	}
	ensure_topics(c);
	int rc = djob_store_insert(c->store, jobs, n, err);
	if (rc == DJOB_ECONFLICT && n == 1 && jobs[0].idempotency_key) {
		/* A concurrent repeat won the race: answer with its job. */
		char *id = NULL;
		rc = djob_store_find_idempotent(c->store, jobs[0].idempotency_key, &id, err);
		if (rc == 0) {
			snprintf(jobs[0].id, sizeof jobs[0].id, "%s", id);
			free(id);
			*created = 0;
		}
		return rc;
	}
	if (rc == DJOB_ECONFLICT)
		return djob_set_error(err, DJOB_ECONFLICT, 0, "An idempotencyKey is already used");
	if (rc != 0)
		return rc;
	/* The jobs and their outbox entries are stored; nothing is in Kafka. */
	if (djob_fault("crash_after_insert"))
		raise(SIGKILL);
	return publish(c, jobs, n, mark, err);
}

/* Write the submissions of one group: one outbox insert, one job insert
 * and one produce for all their jobs together. Returns the jobs (a copy
 * the caller frees) whose outbox entries are to be dropped, in *published. */
static djob_new_job_t *write_group(djob_client_t *c, submit_req_t *group, size_t *published)
{
	size_t total = 0, k = 0;
	for (submit_req_t *r = group; r; r = r->next)
		total += r->n;
	djob_error_t err;
	int rc = 0;
	*published = 0;
	djob_new_job_t *all = calloc(total, sizeof *all);
	if (!all)
		rc = djob_set_error(&err, DJOB_ENOMEM, 0, "Out of memory");
	for (submit_req_t *r = group; rc == 0 && r; r = r->next) {
		memcpy(all + k, r->jobs, r->n * sizeof *all);
		k += r->n;
	}
	if (rc == 0) {
		int created;
		rc = submit_jobs(c, all, total, &created, false, &err);
	}
	if (rc == 0)
		*published = total;
	/* An invalid payload is one submission's fault: the others must not
	 * fail with it. Nothing of the group is stored then, so each is
	 * written again alone. Server errors are every submission's. */
	bool alone = rc == DJOB_EINVAL && group->next;
	for (submit_req_t *r = group; r; r = r->next) {
		r->rc = rc;
		r->alone = alone;
		if (rc != 0)
			r->err = err;
	}
	return all;
}

/* Wait on group_cv until woken or until `until` (monotonic ms). Caller
 * holds group_mu. */
static void group_wait_until(djob_client_t *c, int64_t until)
{
	int64_t ms = until - djob_mono_ms();
	if (ms <= 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&c->group_cv, &c->group_mu, &ts);
}

/* Submit jobs without idempotency keys. While `submit.writers` groups are
 * being written, later submissions wait and are then written together:
 * under load one round trip to each server serves many submissions, and
 * a lone submission is written at once.
 *
 * Under a steady load the callers of a group submit again as soon as they
 * are answered, while the next group is already being written: groups then
 * split in two that alternate (6, 10, 6, 10 with 16 callers). So when fewer
 * jobs are pending than the last group held, the next group waits for the
 * rest until `submit.linger.ms` after the last group's answers; groups then
 * stay whole (16 callers over HTTP: about 1,600 req/s without the wait,
 * 2,000 to 2,200 with 8 ms). A caller that submits alone never waits, and
 * a drop in load costs at most one wait. */
static int submit_grouped(djob_client_t *c, djob_new_job_t *jobs, size_t n, djob_error_t *err)
{
	submit_req_t me = {.jobs = jobs, .n = n};
	pthread_mutex_lock(&c->group_mu);
	c->submissions++;
	c->submitted_jobs += n;
	if (c->pending_tail)
		c->pending_tail->next = &me;
	else
		c->pending = &me;
	c->pending_tail = &me;
	c->pending_jobs += n;
	if (c->writers == 0 && c->pending_jobs >= c->last_group)
		pthread_cond_broadcast(&c->group_cv); /* a lingering leader may go */
	while (!me.done) {
		if (!c->pending) {
			pthread_cond_wait(&c->group_cv, &c->group_mu);
			continue;
		}
		/* A group written for GROUP_STUCK_MS waits for a server that went
		 * away: the next does not queue behind it, so a caller's refusal
		 * takes one server timeout, not several. */
		int64_t now = djob_mono_ms();
		if (c->writers >= c->max_writers && now < c->last_start + GROUP_STUCK_MS) {
			group_wait_until(c, c->last_start + GROUP_STUCK_MS);
			continue;
		}
		if (c->pending_jobs < c->last_group && now < c->last_end + c->linger_ms) {
			group_wait_until(c, c->last_end + c->linger_ms);
			continue;
		}
		/* Lead the next group, oldest first; it may not hold `me`. */
		submit_req_t *group = c->pending, *last = group;
		size_t total = group->n;
		while (last->next && total + last->next->n <= GROUP_MAX_JOBS) {
			last = last->next;
			total += last->n;
		}
		c->pending = last->next;
		if (!c->pending)
			c->pending_tail = NULL;
		last->next = NULL;
		c->pending_jobs -= total;
		c->writers++;
		c->groups++;
		c->last_start = now;
		pthread_mutex_unlock(&c->group_mu);
		size_t n_all;
		djob_new_job_t *all = write_group(c, group, &n_all);
		pthread_mutex_lock(&c->group_mu);
		c->writers--;
		c->last_group = total;
		c->last_end = djob_mono_ms();
		for (submit_req_t *r = group, *next; r; r = next) {
			next = r->next; /* r may return once done is set */
			r->done = true;
		}
		pthread_cond_broadcast(&c->group_cv);
		/* The group's answers need not wait for the outbox delete, nor
		 * the next group: the leader does it on its own time. */
		pthread_mutex_unlock(&c->group_mu);
		size_t m = 0;
		const char **ids = all ? malloc((n_all ? n_all : 1) * sizeof *ids) : NULL;
		for (size_t i = 0; ids && i < n_all; i++)
			if (all[i].state == DJOB_STATE_QUEUED)
				ids[m++] = all[i].id;
		if (ids)
			mark_published(c, ids, m);
		free(ids);
		free(all);
		pthread_mutex_lock(&c->group_mu);
	}
	if (me.alone)
		c->groups++;
	pthread_mutex_unlock(&c->group_mu);
	if (me.alone) {
		int created;
		return submit_jobs(c, jobs, n, &created, true, err);
	}
	if (me.rc != 0 && err)
		*err = me.err;
	return me.rc;
}

/* Submit validated jobs: grouped with concurrent submissions unless an
 * idempotency key needs its own lookups, or the batch is large already. */
static int submit(djob_client_t *c, djob_new_job_t *jobs, size_t n, int *created, djob_error_t *err)
{
	bool keyed = false;
	for (size_t i = 0; i < n; i++)
		keyed = keyed || jobs[i].idempotency_key;
	if (keyed || n > GROUP_MAX_JOBS) {
		pthread_mutex_lock(&c->group_mu);
		c->submissions++;
		c->submitted_jobs += n;
		c->groups++;
		pthread_mutex_unlock(&c->group_mu);
		return submit_jobs(c, jobs, n, created, true, err);
	}
	*created = 1;
	return submit_grouped(c, jobs, n, err);
}

/* Validate a body and submit its jobs; *created as for submit_jobs. */
static int submit_body(djob_client_t *c, const char *body, size_t len, const char *key,
                       djob_submission_t **out, int *created, djob_error_t *err)
{
	int rc = djob_submission_parse(out, c->conf, djob_producer_max_message(c->producer), body,
	                               len, key, err);
	if (rc == 0)
		rc = submit(c, (*out)->jobs, (*out)->n, created, err);
	return rc;
}

int djob_client_submit(char **id_out, djob_client_t *c, const char *type, const char *payload_json,
                       size_t payload_len, const djob_submit_opts_t *opts, djob_error_t *err)
{
	if (id_out)
		*id_out = NULL;
	if (!c || !type || !payload_json)
		return djob_set_error(err, DJOB_EINVAL, 0, "client, type and payload are required");
	/* The payload is checked whole before its text goes into the body
	 * as it is (its numbers kept exactly). */
	int rc = djob_json_parse(payload_json, payload_len, "payload", NULL, NULL, err);
	char *text = rc == 0 ? strndup(payload_json, payload_len) : NULL;
	if (rc == 0 && !text)
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	if (rc != 0)
		return rc;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddRawToObject(o, "payload", text);
	free(text);
	if (opts && opts->run_at)
		cJSON_AddStringToObject(o, "runAt", opts->run_at);
	if (opts && opts->max_attempts)
		cJSON_AddNumberToObject(o, "maxAttempts", opts->max_attempts);
	if (opts && opts->idempotency_key)
		cJSON_AddStringToObject(o, "idempotencyKey", opts->idempotency_key);
	char *body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!body)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	djob_submission_t *sub = NULL;
	int created;
	rc = submit_body(c, body, strlen(body), NULL, &sub, &created, err);
	if (rc == 0 && id_out && !(*id_out = djob_strdup(sub->jobs[0].id)))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	djob_submission_free(sub);
	free(body);
	return rc;
}

int djob_client_submit_json(char **response_out, int *created, djob_client_t *c, const char *body,
                            size_t body_len, const char *idempotency_key, djob_error_t *err)
{
	*response_out = NULL;
	if (created)
		*created = 0;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	if (!body || body_len == 0)
		return djob_set_error(err, DJOB_EINVAL, 0, "Request body is empty");
	long max = djob_config_get_int(c->conf, "api.body.max.bytes");
	if (max > 0 && body_len > (size_t)max)
		return djob_set_error(err, DJOB_ETOOBIG, 0, "Request body is over %ld bytes", max);
	djob_submission_t *sub = NULL;
	int was_created = 0;
	int rc = submit_body(c, body, body_len, idempotency_key, &sub, &was_created, err);
	if (rc == 0) {
		cJSON *r = cJSON_CreateObject();
		if (sub->batch) {
			cJSON *ids = cJSON_AddArrayToObject(r, "jobIds");
			for (size_t k = 0; k < sub->n; k++)
				cJSON_AddItemToArray(ids, cJSON_CreateString(sub->jobs[k].id));
		} else {
			cJSON_AddStringToObject(r, "jobId", sub->jobs[0].id);
		}
		*response_out = cJSON_PrintUnformatted(r);
		cJSON_Delete(r);
		if (!*response_out)
			rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
		if (created)
			*created = was_created;
	}
	djob_submission_free(sub);
	return rc;
}

int djob_client_stats(char **json_out, djob_client_t *c, djob_error_t *err)
{
	*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	pthread_mutex_lock(&c->group_mu);
	char buf[160];
	snprintf(buf, sizeof buf,
	         "{\"submissions\":%llu,\"submittedJobs\":%llu,\"submitWrites\":%llu}",
	         c->submissions, c->submitted_jobs, c->groups);
	pthread_mutex_unlock(&c->group_mu);
	if (!(*json_out = djob_strdup(buf)))
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	return 0;
}

int djob_client_job_stats(char **json_out, djob_client_t *c, djob_error_t *err)
{
	*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	return djob_store_stats(c->store, json_out, err);
}

void djob_client_job_stats_prefetch(djob_client_t *c)
{
	if (c)
		djob_store_stats_prefetch(c->store);
}

/* Long enough for a loaded broker, short enough for an operator waiting
 * on a page: a Kafka that does not answer is a 503 within this. */
#define WORKERS_TIMEOUT_MS 4000

int djob_client_workers(char **json_out, djob_client_t *c, djob_error_t *err)
{
	*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	return djob_kafka_group_json(djob_producer_handle(c->producer), c->conf, WORKERS_TIMEOUT_MS,
	                             json_out, err);
}

static int check_id(const char *id, djob_error_t *err)
{
	if (!id || !djob_id_is_valid(id))
		return djob_set_error(err, DJOB_EINVAL, 0, "Malformed job id");
	return 0;
}

int djob_client_get(char **json_out, djob_client_t *c, const char *id, djob_error_t *err)
{
	*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	int rc = check_id(id, err);
	return rc ? rc : djob_store_get(c->store, id, json_out, err);
}

int djob_client_update(char **json_out, djob_client_t *c, const char *id, const char *body,
                       size_t body_len, djob_error_t *err)
{
	char *out = NULL;
	if (json_out)
		*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	int rc = check_id(id, err);
	if (rc)
		return rc;
	if (!body || body_len == 0)
		return djob_set_error(err, DJOB_EINVAL, 0, "Request body is empty");
	djob_patch_t *patch = NULL;
	rc = djob_patch_parse(&patch, body, body_len, err);
	if (rc == 0)
		rc = djob_store_patch(c->store, id, patch, &out, err);
	djob_patch_free(patch);
	if (json_out)
		*json_out = out;
	else
		free(out);
	return rc;
}

int djob_client_list(char **json_out, djob_client_t *c, const char *status, const char *type,
                     int limit, const char *after, djob_error_t *err)
{
	*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	return djob_store_list(c->store, status, type, limit, after, json_out, err);
}

int djob_client_cancel(char **json_out, djob_client_t *c, const char *id, djob_error_t *err)
{
	char *out = NULL;
	if (json_out)
		*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	int rc = check_id(id, err);
	if (rc == 0)
		rc = djob_store_cancel(c->store, id, &out, err);
	if (json_out)
		*json_out = out;
	else
		free(out);
	return rc;
}

int djob_client_schedule_create(char **json_out, djob_client_t *c, const char *json, size_t len,
                                djob_error_t *err)
{
	char *out = NULL;
	if (json_out)
		*json_out = NULL;
	if (!c || !json)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client and the body are required");
	int rc = djob_store_schedule_create(c->store, json, len, djob_now_ms(), &out, err);
	if (json_out)
		*json_out = out;
	else
		free(out);
	return rc;
}

int djob_client_schedule_list(char **json_out, djob_client_t *c, djob_error_t *err)
{
	*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	return djob_store_schedule_list(c->store, json_out, err);
}

int djob_client_schedule_get(char **json_out, djob_client_t *c, const char *name, djob_error_t *err)
{
	*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	return djob_store_schedule_get(c->store, name, json_out, err);
}

int djob_client_schedule_delete(djob_client_t *c, const char *name, djob_error_t *err)
{
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	return djob_store_schedule_delete(c->store, name, err);
}

int djob_client_retry(char **json_out, djob_client_t *c, const char *id, djob_error_t *err)
{
	char *out = NULL;
	if (json_out)
		*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	int rc = check_id(id, err);
	if (rc == 0)
		rc = djob_store_retry(c->store, id, &out, err);
	if (rc == 0) {
		cJSON *doc = cJSON_Parse(out);
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(doc, "type");
		char topic[160];
		djob_topic_name(c->conf, cJSON_IsString(type) ? type->valuestring : "unknown",
		                topic, sizeof topic);
		djob_kafka_msg_t m = {topic, id, out, strlen(out)};
		djob_error_t e;
		/* A requeued job that cannot be published now stays queued and
		 * unpublished: the scheduler publishes it later. */
		if (djob_producer_send(c->producer, &m, 1, &e) == 0)
			djob_store_mark_published(c->store, &id, 1, NULL);
		else
			djob_logf(c->conf, DJOB_LOG_WARNING, "client", "%s", e.message);
		cJSON_Delete(doc);
	}
	if (json_out)
		*json_out = out;
	else
		free(out);
	return rc;
}

int djob_client_wait(char **json_out, djob_client_t *c, const char *id, int timeout_ms,
                     djob_error_t *err)
{
	if (json_out)
		*json_out = NULL;
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	int64_t deadline = djob_mono_ms() + timeout_ms;
	long sleep_ms = 10;
	for (;;) {
		char *doc = NULL;
		int rc = djob_client_get(&doc, c, id, err);
		if (rc != 0)
			return rc;
		cJSON *j = cJSON_Parse(doc);
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
		djob_state_t state =
			cJSON_IsString(st) ? djob_state_parse(st->valuestring) : DJOB_STATE_INVALID;
		/* A quarantined job changes only when an admin retries it. */
		bool done = djob_state_is_terminal(state) || state == DJOB_STATE_QUARANTINED;
		cJSON_Delete(j);
		if (done) {
			if (json_out)
				*json_out = doc;
			else
				free(doc);
			return 0;
		}
		free(doc);
		if (djob_mono_ms() >= deadline)
			return djob_set_error(err, DJOB_ETIMEOUT, 1,
			                      "The job did not finish in %d ms", timeout_ms);
		struct timespec ts = {0, sleep_ms * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (sleep_ms < 200)
			sleep_ms *= 2;
	}
}

int djob_client_ping(djob_client_t *c, int *kafka_ok, int *mongo_ok, djob_error_t *err)
{
	if (!c)
		return djob_set_error(err, DJOB_EINVAL, 0, "The client is NULL");
	djob_error_t ke, me;
	int k = djob_producer_ping(c->producer, 2000, &ke);
	int m = djob_store_ping(c->store, &me);
	if (kafka_ok)
		*kafka_ok = k == 0;
	if (mongo_ok)
		*mongo_ok = m == 0;
	if (k != 0) {
		if (err)
			*err = ke;
		return k;
	}
	if (m != 0) {
		if (err)
			*err = me;
		return m;
	}
	return 0;
}

/* Ping and store the result; the caller set health_busy. */
static void health_refresh(djob_client_t *c)
{
	djob_error_t e = {0};
	int k = 0, m = 0;
	int rc = djob_client_ping(c, &k, &m, &e);
	pthread_mutex_lock(&c->health_mu);
	c->health_rc = rc;
	c->health_kafka = k;
	c->health_mongo = m;
	c->health_err = e;
	c->health_at = djob_mono_ms();
	c->health_busy = false;
	pthread_cond_broadcast(&c->health_cv);
	pthread_mutex_unlock(&c->health_mu);
}

static void *health_thread(void *arg)
{
	health_refresh(arg);
	return NULL;
}

int djob_client_health(djob_client_t *c, int max_age_ms, int *kafka_ok, int *mongo_ok,
                       djob_error_t *err)
{
	pthread_mutex_lock(&c->health_mu);
	bool stale = !c->health_at || djob_mono_ms() - c->health_at > max_age_ms;
	if (stale && !c->health_busy) {
		c->health_busy = true;
		/* With a result at hand, ping in the background: a ping of a down
		 * server takes seconds, and no caller waits for it. The very
		 * first result is waited for. */
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		bool spawned = c->health_at && pthread_create(&t, &attr, health_thread, c) == 0;
		pthread_attr_destroy(&attr);
		if (!spawned) {
			pthread_mutex_unlock(&c->health_mu);
			health_refresh(c);
			pthread_mutex_lock(&c->health_mu);
		}
	}
	while (!c->health_at)
		pthread_cond_wait(&c->health_cv, &c->health_mu);
	int rc = c->health_rc;
	if (kafka_ok)
		*kafka_ok = c->health_kafka;
	if (mongo_ok)
		*mongo_ok = c->health_mongo;
	if (rc != 0 && err)
		*err = c->health_err;
	pthread_mutex_unlock(&c->health_mu);
	return rc;
}
