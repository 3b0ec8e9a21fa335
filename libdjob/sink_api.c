/*
 * The api status sink: claim, extend and finish as PATCH /jobs/:id on
 * djob-api (config api.url) with the bearer token of config key token, over
 * civetweb's client. For workers that must not hold database credentials.
 */
#include "json.h"
#include "sink_private.h"

#include <civetweb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API_TIMEOUT_MS 10000
#define API_RESPONSE_MAX (4 * 1024 * 1024)

typedef struct {
	djob_config_t *conf;
	char host[256];
	int port;
	int ssl;
	char base[512]; /* path prefix without the trailing slash, or "" */
	char *auth;     /* "Authorization: Bearer ...\r\n" or "" */
} api_sink_t;

static pthread_once_t civetweb_once = PTHREAD_ONCE_INIT;

static void civetweb_init(void)
{
	mg_init_library(0);
}

/* "http://host:port/base" into s. */
static int parse_url(api_sink_t *s, const char *url, djob_error_t *err)
{
	const char *p = url;
	if (strncmp(p, "http://", 7) == 0) {
		p += 7;
		s->port = 80;
	} else if (strncmp(p, "https://", 8) == 0) {
		p += 8;
		s->port = 443;
		s->ssl = 1;
	} else {
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "api.url must start with http:// or https://");
	}
	size_t hlen = strcspn(p, ":/");
	if (hlen == 0 || hlen >= sizeof s->host)
		return djob_set_error(err, DJOB_EINVAL, 0, "api.url has no host");
	memcpy(s->host, p, hlen);
	s->host[hlen] = '\0';
	p += hlen;
	if (*p == ':') {
		char *end;
		long port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
			return djob_set_error(err, DJOB_EINVAL, 0, "api.url has a bad port");
		s->port = (int)port;
		p = end;
	}
	snprintf(s->base, sizeof s->base, "%s", p);
	size_t n = strlen(s->base);
	while (n > 0 && s->base[n - 1] == '/')
		s->base[--n] = '\0';
	return 0;
}

/* PATCH /jobs/<id> with body. 0 with the response body in *resp (free())
 * for a 2xx; otherwise the mapped error. */
static int patch(api_sink_t *s, const char *id, const char *body, char **resp, djob_error_t *err)
{
	char ebuf[256] = "";
	*resp = NULL;
	/* The id goes into the request line: only a well-formed one. */
	if (!djob_id_is_valid(id))
		return djob_set_error(err, DJOB_EINVAL, 0, "Malformed job id");
	struct mg_connection *c = mg_connect_client(s->host, s->port, s->ssl, ebuf, sizeof ebuf);
	if (!c)
		return djob_set_error(err, DJOB_EHTTP, 1, "Cannot reach the API at %s:%d: %s",
		                      s->host, s->port, ebuf);
	size_t len = strlen(body);
	mg_printf(c,
	          "PATCH %s/jobs/%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
	          "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
	          s->base, id, s->host, s->port, len, s->auth);
	int rc = 0;
	if (mg_write(c, body, len) != (int)len) {
		rc = djob_set_error(err, DJOB_EHTTP, 1, "Cannot send to the API");
	} else if (mg_get_response(c, ebuf, sizeof ebuf, API_TIMEOUT_MS) < 0) {
		rc = djob_set_error(err, DJOB_EHTTP, 1, "No answer from the API: %s", ebuf);
	}
	int status = 0;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	if (rc == 0) {
		status = mg_get_response_info(c)->status_code;
		for (;;) {
			if (cap - n < 4096) {
				if (cap >= API_RESPONSE_MAX)
					break;
				char *b = realloc(buf, cap = cap ? cap * 2 : 8192);
				if (!b)
					break;
				buf = b;
			}
			int got = mg_read(c, buf + n, cap - n - 1);
			if (got <= 0)
				break;
			n += (size_t)got;
		}
		if (buf)
			buf[n] = '\0';
	}
	mg_close_connection(c);
	if (rc != 0)
		return rc;
	if (status >= 200 && status < 300) {
		*resp = buf;
		return 0;
	}
	/* The reply's {"error":...} says why. */
	cJSON *j = NULL;
	if (buf)
		djob_json_parse(buf, n, "The API's reply", &j, NULL, NULL);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "error");
	char msg[160];
	snprintf(msg, sizeof msg, "%s", cJSON_IsString(m) ? m->valuestring : "no error text");
	cJSON_Delete(j);
	free(buf);
	switch (status) {
	case 409:
		return djob_set_error(err, DJOB_ECONFLICT, 0, "%s", msg);
	case 404:
		return djob_set_error(err, DJOB_ENOTFOUND, 0, "%s", msg);
	case 400:
		return djob_set_error(err, DJOB_EINVAL, 0, "The API refused the update: %s", msg);
	default:
		return djob_set_error(err, DJOB_EHTTP, 1, "The API answered %d: %s", status, msg);
	}
}

/* PATCH with a body built from o (consumed); *doc (cJSON_Delete, may be
 * NULL) receives the job the API returned. */
static int patch_json(api_sink_t *s, const char *id, cJSON *o, cJSON **doc, djob_error_t *err)
{
	char *body = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!body)
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	char *resp = NULL;
	int rc = patch(s, id, body, &resp, err);
	free(body);
	if (rc == 0 && doc &&
	    djob_json_parse(resp ? resp : "", resp ? strlen(resp) : 0, "The API's reply", doc, NULL,
	                    NULL) != 0)
		rc = djob_set_error(err, DJOB_EHTTP, 1, "The API answered with invalid JSON");
	free(resp);
	return rc;
}

static cJSON *base_body(const djob_job_t *job, const char *status, bool fenced)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", status);
	cJSON_AddStringToObject(o, "workerId", job->worker_id ? job->worker_id : "worker");
	if (fenced)
		cJSON_AddNumberToObject(o, "attempts", job->attempts);
	return o;
}

static int api_claim(void *opaque, const djob_job_t *job, long lease_ms, int *attempts,
                     int *max_attempts, djob_error_t *err)
{
	cJSON *o = base_body(job, "processing", false), *doc = NULL;
	cJSON_AddNumberToObject(o, "leaseMs", (double)lease_ms);
	int rc = patch_json(opaque, job->id, o, &doc, err);
	if (rc != 0)
		return rc;
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, "attempts");
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "maxAttempts");
	*attempts = cJSON_IsNumber(a) ? a->valueint : 1;
	*max_attempts = cJSON_IsNumber(m) ? m->valueint
	                                  : (int)djob_config_get_int(((api_sink_t *)opaque)->conf,
	                                                             "max.attempts");
	cJSON_Delete(doc);
	return 0;
}

static int api_extend(void *opaque, const djob_job_t *job, long lease_ms, djob_error_t *err)
{
	cJSON *o = base_body(job, "processing", true);
	cJSON_AddNumberToObject(o, "leaseMs", (double)lease_ms);
	return patch_json(opaque, job->id, o, NULL, err);
}

static int api_finish(void *opaque, const djob_job_t *job, djob_job_status_t outcome,
                      djob_error_t *err)
{
	cJSON *o = base_body(job, outcome == DJOB_JOB_DONE ? "completed" : "failed", true);
	if (outcome == DJOB_JOB_DONE) {
		/* As djob_job_set_result rendered it: its integers exact. */
		cJSON_AddRawToObject(o, "result", job->result ? job->result : "{}");
	} else {
		cJSON_AddStringToObject(o, "error", job->error ? job->error : "Handler failed");
		if (outcome == DJOB_JOB_RETRY)
			cJSON_AddTrueToObject(o, "retry");
	}
	return patch_json(opaque, job->id, o, NULL, err);
}

static void api_destroy(void *opaque)
{
	api_sink_t *s = opaque;
	if (!s)
		return;
	djob_config_free(s->conf);
	free(s->auth);
	free(s);
}

int djob_sink_api_new(djob_sink_t **out, const djob_config_t *conf, djob_error_t *err)
{
	*out = NULL;
	pthread_once(&civetweb_once, civetweb_init);
	api_sink_t *s = calloc(1, sizeof *s);
	if (!s)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	int rc = djob_config_dup(&s->conf, conf, err);
	if (rc == 0)
		rc = parse_url(s, djob_config_get(conf, "api.url"), err);
	const char *token = djob_config_get(conf, "token");
	if (rc == 0 && token && strpbrk(token, "\r\n"))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "token must be one line");
	if (rc == 0) {
		size_t n = token && *token ? strlen(token) + 32 : 1;
		s->auth = malloc(n);
		if (!s->auth)
			rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
		else if (token && *token)
			snprintf(s->auth, n, "Authorization: Bearer %s\r\n", token);
		else
			s->auth[0] = '\0';
	}
	static const djob_sink_ops_t ops = {DJOB_SINK_OPS_VERSION, api_claim, api_extend,
	                                    api_finish, api_destroy};
	if (rc == 0)
		rc = djob_sink_new(out, &ops, s, err);
	if (rc != 0)
		api_destroy(s);
	return rc;
}
