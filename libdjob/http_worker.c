/*
 * The worker server: start and stop the consumer over HTTP, report its
 * health and its metrics (jobs by type and outcome, handler durations,
 * consumer lag, jobs in flight).
 */
#include "http_private.h"
#include "worker_private.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct djob_worker_server_s {
	djob_http_t http;
	djob_worker_t *worker;
	pthread_mutex_t control; /* one start or stop at a time */
};

static void job_hook(void *opaque, const char *type, const char *outcome, double secs)
{
	djob_worker_server_t *s = opaque;
	char t[80], labels[160];
	djob_metrics_escape(type, t, sizeof t);
	snprintf(labels, sizeof labels, "type=\"%s\",status=\"%s\"", t, outcome);
	djob_metrics_add(s->http.metrics, "djob_jobs_total", labels, 1);
	if (secs >= 0) {
		snprintf(labels, sizeof labels, "type=\"%s\"", t);
		djob_metrics_observe(s->http.metrics, "djob_handler_duration_seconds", labels,
		                     secs);
	}
}

/* The stats as a cJSON object (NULL on failure). */
static cJSON *stats(djob_worker_server_t *s)
{
	char *json = NULL;
	if (djob_worker_stats(&json, s->worker, NULL) != 0)
		return NULL;
	cJSON *o = cJSON_Parse(json);
	djob_free(json);
	return o;
}

static void health(djob_worker_server_t *s, djob_http_req_t *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", "ok");
	cJSON_AddStringToObject(o, "consumer",
	                        djob_worker_is_running(s->worker) ? "running" : "stopped");
	cJSON *st = stats(s);
	for (cJSON *c = st ? st->child : NULL; c; c = c->next)
		if (strcmp(c->string, "running") != 0)
			cJSON_AddItemToObject(o, c->string, cJSON_Duplicate(c, 1));
	cJSON_AddNumberToObject(o, "consumerLag", (double)djob_worker_consumer_lag(s->worker));
	cJSON_Delete(st);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (text)
		djob_http_send_json(r, 200, text);
	else
		djob_http_send_error(r, 500, "Out of memory");
	free(text);
}

static void metrics(djob_worker_server_t *s, djob_http_req_t *r)
{
	cJSON *st = stats(s);
	const cJSON *in = cJSON_GetObjectItemCaseSensitive(st, "inFlight");
	djob_metrics_set(s->http.metrics, "djob_jobs_in_flight", "",
	                 cJSON_IsNumber(in) ? in->valuedouble : 0);
	cJSON_Delete(st);
	djob_metrics_set(s->http.metrics, "djob_consumer_lag", "",
	                 (double)djob_worker_consumer_lag(s->worker));
	djob_metrics_set(s->http.metrics, "djob_consumer_running", "",
	                 djob_worker_is_running(s->worker) ? 1 : 0);
	char *text = djob_http_render_metrics(&s->http);
	if (text)
		djob_http_send(r, 200, "text/plain; version=0.0.4", text, strlen(text), NULL, NULL);
	else
		djob_http_send_error(r, 500, "Out of memory");
	free(text);
}

static void control(djob_worker_server_t *s, djob_http_req_t *r, bool start)
{
	djob_error_t e;
	int rc = 0;
	pthread_mutex_lock(&s->control);
	if (start && !djob_worker_is_running(s->worker))
		rc = djob_worker_start(s->worker, &e);
	else if (!start)
		rc = djob_worker_stop(s->worker, &e);
	pthread_mutex_unlock(&s->control);
	if (rc != 0) {
		djob_http_send_djob_error(r, rc, &e);
		return;
	}
	djob_logf(s->http.conf, DJOB_LOG_INFO, "worker", "Consumer %s over HTTP",
	          start ? "started" : "stopped");
	djob_http_send_json(r, 200,
	                    start ? "{\"status\":\"consumer started\"}"
	                          : "{\"status\":\"consumer stopped\"}");
}

static int worker_handler(struct mg_connection *conn, void *cbdata)
{
	djob_worker_server_t *s = cbdata;
	djob_http_req_t r;
	djob_http_req_begin(&r, &s->http, conn);
	const char *uri = r.ri->local_uri ? r.ri->local_uri : "";
	const char *m = r.ri->request_method;
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
	bool post = strcmp(m, "POST") == 0;
	if (strcmp(uri, "/health") == 0 || strcmp(uri, "/metrics") == 0) {
		r.route = uri[1] == 'h' ? "/health" : "/metrics";
		if (!get)
			djob_http_send_405(&r, "GET");
		else if (uri[1] == 'h')
			health(s, &r);
		else
			metrics(s, &r);
	} else if (strcmp(uri, "/start") == 0 || strcmp(uri, "/stop") == 0) {
		bool start = strcmp(uri, "/start") == 0;
		r.route = start ? "/start" : "/stop";
		if (!post)
			djob_http_send_405(&r, "POST");
		else if (djob_http_authorize(&r, DJOB_PERM_ADMIN) == 0)
			control(s, &r, start);
	} else {
		djob_http_send_error(&r, 404, "No such route");
	}
	return djob_http_req_end(&r);
}

int djob_worker_server_new(djob_worker_server_t **out, djob_worker_t *worker,
                           const djob_config_t *conf, djob_error_t *err)
{
	*out = NULL;
	if (!worker || !conf)
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "A worker and a configuration are required");
	if (djob_worker_is_running(worker))
		return djob_set_error(err, DJOB_ESTATE, 0,
		                      "Create the worker server before the worker runs");
	djob_worker_server_t *s = calloc(1, sizeof *s);
	if (!s)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	int rc = djob_http_init(&s->http, conf, "worker", err);
	if (rc != 0) {
		free(s);
		return rc;
	}
	s->worker = worker;
	pthread_mutex_init(&s->control, NULL);
	djob_metrics_t *m = s->http.metrics;
	if (djob_metrics_declare(m, "djob_jobs_total", DJOB_METRIC_COUNTER,
	                         "Jobs by type and outcome (completed, failed, retried, skipped, "
	                         "stale)") ||
	    djob_metrics_declare(m, "djob_handler_duration_seconds", DJOB_METRIC_HISTOGRAM,
	                         "Handler run time by job type") ||
	    djob_metrics_declare(m, "djob_consumer_lag", DJOB_METRIC_GAUGE,
	                         "Messages behind the group's committed offsets on the assigned "
	                         "partitions, as librdkafka last reported (-1: unknown)") ||
	    djob_metrics_declare(m, "djob_jobs_in_flight", DJOB_METRIC_GAUGE,
	                         "Jobs taken from Kafka and not yet finished") ||
	    djob_metrics_declare(m, "djob_consumer_running", DJOB_METRIC_GAUGE,
	                         "1 while the consumer runs")) {
		djob_worker_server_free(s);
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	djob_worker_set_job_hook(worker, job_hook, s);
	*out = s;
	return 0;
}

int djob_worker_server_start(djob_worker_server_t *s, int port, djob_error_t *err)
{
	long p = port > 0 ? port : djob_config_get_int(s->http.conf, "worker.port");
	return djob_http_start(&s->http, p, worker_handler, s, err);
}

void djob_worker_server_stop(djob_worker_server_t *s)
{
	if (s)
		djob_http_stop(&s->http);
}

int djob_worker_server_port(const djob_worker_server_t *s)
{
	return s ? djob_http_port(&s->http) : -1;
}

void djob_worker_server_free(djob_worker_server_t *s)
{
	if (!s)
		return;
	djob_http_cleanup(&s->http);
	/* The hook points at this server; the worker, stopped as the header
	 * asks, may outlive it. */
	djob_worker_set_job_hook(s->worker, NULL, NULL);
	pthread_mutex_destroy(&s->control);
	free(s);
}
