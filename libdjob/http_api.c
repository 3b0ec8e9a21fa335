/*
 * The API server: the REST contract of DESIGN §2 on civetweb. Each route
 * checks method and token, then makes one djob_client_t call; the client
 * validates everything before it writes, so a refused request changes
 * nothing.
 */
#include "http_private.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct djob_api_server_s {
	djob_http_t http;
	djob_client_t *client;
};

#define JOBS_PREFIX "/jobs/"
#define HEALTH_MAX_AGE_MS 1000

/* GET /health: {"status":"ok"|"degraded","kafka":"ok"|"down","mongo":...},
 * 200 when both servers answer, 503 otherwise; pinged at most once a
 * second. */
static void health(djob_api_server_t *s, djob_http_req_t *r)
{
	int kafka = 0, mongo = 0;
	int rc = djob_client_health(s->client, HEALTH_MAX_AGE_MS, &kafka, &mongo, NULL);
	char body[96];
	snprintf(body, sizeof body, "{\"status\":\"%s\",\"kafka\":\"%s\",\"mongo\":\"%s\"}",
	         rc == 0 ? "ok" : "degraded", kafka ? "ok" : "down", mongo ? "ok" : "down");
	djob_http_send_json(r, rc == 0 ? 200 : 503, body);
}

/* GET /auth: which role the request's token has and what it may do, so
 * that the dashboard shows only the controls the token may use. Needs no
 * permission; a token the server does not hold gets 401. */
static void auth(djob_http_req_t *r)
{
	const char *role;
	unsigned perms;
	if (djob_http_token_role(r, &role, &perms) != 0) {
		djob_http_send_401(r);
		return;
	}
	char body[192];
	snprintf(body, sizeof body,
	         "{\"tokens\":%s,\"role\":\"%s\",\"may\":{\"read\":%s,\"submit\":%s,"
	         "\"update\":%s,\"admin\":%s}}",
	         r->h->ntokens ? "true" : "false", role, perms & DJOB_PERM_READ ? "true" : "false",
	         perms & DJOB_PERM_SUBMIT ? "true" : "false",
	         perms & DJOB_PERM_UPDATE ? "true" : "false",
	         perms & DJOB_PERM_ADMIN ? "true" : "false");
	djob_http_send_json(r, 200, body);
}

/* Count submitted jobs by type: the body was accepted, so it parses. */
static void count_submitted(djob_api_server_t *s, const char *body, size_t len)
{
	cJSON *doc = NULL;
	djob_json_parse(body, len, "Request body", &doc, NULL, NULL);
	const cJSON *o;
	char labels[128];
	for (o = cJSON_IsArray(doc) ? doc->child : doc; o;
	     o = cJSON_IsArray(doc) ? o->next : NULL) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
		if (!cJSON_IsString(t))
			continue;
		snprintf(labels, sizeof labels, "type=\"%s\",status=\"submitted\"", t->valuestring);
		djob_metrics_add(s->http.metrics, "djob_jobs_total", labels, 1);
	}
	cJSON_Delete(doc);
}

static void count_job(djob_api_server_t *s, const char *json, const char *status)
{
	cJSON *doc = cJSON_Parse(json);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "type");
	char labels[128];
	if (cJSON_IsString(t)) {
		snprintf(labels, sizeof labels, "type=\"%s\",status=\"%s\"", t->valuestring,
		         status);
		djob_metrics_add(s->http.metrics, "djob_jobs_total", labels, 1);
	}
	cJSON_Delete(doc);
}

/* A body is JSON: a request that says otherwise is refused (415). One
 * without a Content-Type is read as JSON, as the prototype's clients may
 * send it so. Returns 0, or -1 with the reply sent. */
static int json_body(djob_http_req_t *r)
{
	const char *ct = mg_get_header(r->conn, "Content-Type");
	if (!ct)
		return 0;
	size_t n = strcspn(ct, "; \t");
	if ((n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
	    (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0))
		return 0;
	djob_http_send_error(r, 415, "Content-Type must be application/json");
	return -1;
}

/* Send a libdjob call's outcome: its JSON with `ok_status`, or its error. */
static void reply(djob_http_req_t *r, int rc, const djob_error_t *e, char *json, int ok_status)
{
	if (rc == 0)
		djob_http_send_json(r, ok_status, json);
	else
		djob_http_send_djob_error(r, rc, e);
	djob_free(json);
}

static void post_jobs(djob_api_server_t *s, djob_http_req_t *r)
{
	char *body, *out = NULL;
	size_t len;
	if (json_body(r) != 0 || djob_http_read_body(r, &body, &len) != 0)
		return;
	djob_error_t e;
	int created = 0;
	const char *key = mg_get_header(r->conn, "Idempotency-Key");
	/* A server seen down in the last second: refuse at once (503) rather
	 * than wait out the server timeouts (Kafka's 10 s, MongoDB's 5 s). */
	int rc = djob_client_health(s->client, HEALTH_MAX_AGE_MS, NULL, NULL, &e);
	if (rc == 0)
		rc = djob_client_submit_json(&out, &created, s->client, body, len, key, &e);
	if (rc == 0 && created)
		count_submitted(s, body, len);
	reply(r, rc, &e, out, created ? 201 : 200);
	free(body);
}

int djob_api_list_query(djob_list_query_t *q, const char *query, djob_error_t *err)
{
	char *limit_s = djob_http_query(query, "limit");
	int rc = 0;
	memset(q, 0, sizeof *q);
	q->status = djob_http_query(query, "status");
	q->type = djob_http_query(query, "type");
	q->after = djob_http_query(query, "after");
	/* An empty value is an absent one. */
	char **vals[] = {&q->status, &q->type, &q->after};
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
		if (*vals[i] && !**vals[i]) {
			free(*vals[i]);
			*vals[i] = NULL;
		}
	if (limit_s && *limit_s) {
		char *end;
		long l = strtol(limit_s, &end, 10);
		if (*end || l < 1 || l > 1000)
			rc = djob_set_error(err, DJOB_EINVAL, 0, "limit must be from 1 to 1000");
		else
			q->limit = (int)l;
	}
	free(limit_s);
	if (rc != 0)
		djob_api_list_query_clear(q);
	return rc;
}

void djob_api_list_query_clear(djob_list_query_t *q)
{
	free(q->status);
	free(q->type);
	free(q->after);
	memset(q, 0, sizeof *q);
}

static void list_jobs(djob_api_server_t *s, djob_http_req_t *r)
{
	djob_list_query_t q;
	djob_error_t e;
	char *out = NULL;
	int rc = djob_api_list_query(&q, r->ri->query_string, &e);
	if (rc == 0)
		rc = djob_client_list(&out, s->client, q.status, q.type, q.limit, q.after, &e);
	reply(r, rc, &e, out, 200);
	djob_api_list_query_clear(&q);
}

static void patch_job(djob_api_server_t *s, djob_http_req_t *r, const char *id)
{
	char *body, *out = NULL;
	size_t len;
	djob_error_t e;
	/* A malformed id is refused before the body is read. */
	if (!djob_id_is_valid(id)) {
		djob_http_send_error(r, 400, "Malformed job id");
		return;
	}
	if (json_body(r) != 0 || djob_http_read_body(r, &body, &len) != 0)
		return;
	int rc = djob_client_update(&out, s->client, id, body, len, &e);
	reply(r, rc, &e, out, 200);
	free(body);
}

/* /jobs/:id and /jobs/:id/retry. */
static void job_routes(djob_api_server_t *s, djob_http_req_t *r, const char *rest)
{
	const char *m = r->ri->request_method;
	char id[64];
	const char *slash = strchr(rest, '/');
	size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
	snprintf(id, sizeof id, "%.*s", idlen < sizeof id ? (int)idlen : 0, rest);
	if (idlen >= sizeof id)
		snprintf(id, sizeof id, "-"); /* too long: certainly malformed */
	djob_error_t e;
	char *out = NULL;
	int rc;
	if (slash) {
		r->route = "/jobs/:id/retry";
		if (strcmp(slash, "/retry") != 0) {
			r->route = "other";
			djob_http_send_error(r, 404, "No such route");
		} else if (strcmp(m, "POST") != 0) {
			djob_http_send_405(r, "POST");
		} else if (djob_http_authorize(r, DJOB_PERM_ADMIN) == 0) {
			rc = djob_client_retry(&out, s->client, id, &e);
			if (rc == 0)
				count_job(s, out, "requeued");
			reply(r, rc, &e, out, 200);
		}
		return;
	}
	r->route = "/jobs/:id";
	if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
		if (djob_http_authorize(r, DJOB_PERM_READ) == 0) {
			rc = djob_client_get(&out, s->client, id, &e);
			reply(r, rc, &e, out, 200);
		}
	} else if (strcmp(m, "PATCH") == 0) {
		if (djob_http_authorize(r, DJOB_PERM_UPDATE) == 0)
			patch_job(s, r, id);
	} else if (strcmp(m, "DELETE") == 0) {
		if (djob_http_authorize(r, DJOB_PERM_ADMIN) == 0) {
			rc = djob_client_cancel(&out, s->client, id, &e);
			if (rc == 0)
				count_job(s, out, "cancelled");
			reply(r, rc, &e, out, 200);
		}
	} else {
		djob_http_send_405(r, "GET, PATCH, DELETE");
	}
}

/* /schedules and /schedules/:name (periodic jobs); admin role. */
static void schedule_routes(djob_api_server_t *s, djob_http_req_t *r, const char *uri)
{
	const char *m = r->ri->request_method;
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
	djob_error_t e;
	char *out = NULL;
	int rc;
	if (strcmp(uri, "/schedules") == 0) {
		r->route = "/schedules";
		if (!get && strcmp(m, "POST") != 0) {
			djob_http_send_405(r, "GET, POST");
		} else if (djob_http_authorize(r, get ? DJOB_PERM_READ : DJOB_PERM_ADMIN) != 0) {
			return;
		} else if (get) {
			rc = djob_client_schedule_list(&out, s->client, &e);
			reply(r, rc, &e, out, 200);
		} else {
			char *body;
			size_t len;
			if (json_body(r) != 0 || djob_http_read_body(r, &body, &len) != 0)
				return;
			rc = djob_client_schedule_create(&out, s->client, body, len, &e);
			reply(r, rc, &e, out, 201);
			free(body);
		}
		return;
	}
	const char *name = uri + strlen("/schedules/");
	r->route = "/schedules/:name";
	if (get) {
		if (djob_http_authorize(r, DJOB_PERM_READ) == 0) {
			rc = djob_client_schedule_get(&out, s->client, name, &e);
			reply(r, rc, &e, out, 200);
		}
	} else if (strcmp(m, "DELETE") == 0) {
		if (djob_http_authorize(r, DJOB_PERM_ADMIN) == 0) {
			rc = djob_client_schedule_delete(s->client, name, &e);
			reply(r, rc, &e, rc == 0 ? djob_strdup("{\"deleted\":true}") : NULL, 200);
		}
	} else {
		djob_http_send_405(r, "GET, DELETE");
	}
}

static int api_handler(struct mg_connection *conn, void *cbdata)
{
	djob_api_server_t *s = cbdata;
	djob_http_req_t r;
	djob_http_req_begin(&r, &s->http, conn);
	const char *uri = r.ri->local_uri ? r.ri->local_uri : "";
	const char *m = r.ri->request_method;
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
	const djob_asset_t *asset;
	if (strcmp(uri, "/health") == 0) {
		r.route = "/health";
		if (get)
			health(s, &r);
		else
			djob_http_send_405(&r, "GET");
	} else if (strcmp(uri, "/metrics") == 0) {
		r.route = "/metrics";
		char *text = get ? djob_http_render_metrics(&s->http) : NULL;
		if (!get)
			djob_http_send_405(&r, "GET");
		else if (!text)
			djob_http_send_error(&r, 500, "Out of memory");
		else
			djob_http_send(&r, 200, "text/plain; version=0.0.4", text, strlen(text),
			               NULL, NULL);
		free(text);
	} else if (strcmp(uri, "/stats") == 0) {
		r.route = "/stats";
		if (!get) {
			djob_http_send_405(&r, "GET");
		} else if (djob_http_authorize(&r, DJOB_PERM_READ) == 0) {
			char *out = NULL;
			djob_error_t e;
			int rc = djob_client_job_stats(&out, s->client, &e);
			reply(&r, rc, &e, out, 200);
		}
	} else if (strcmp(uri, "/workers") == 0) {
		r.route = "/workers";
		if (!get) {
			djob_http_send_405(&r, "GET");
		} else if (djob_http_authorize(&r, DJOB_PERM_READ) == 0) {
			char *out = NULL;
			djob_error_t e;
			int rc = djob_client_workers(&out, s->client, &e);
			reply(&r, rc, &e, out, 200);
		}
	} else if (strcmp(uri, "/jobs") == 0) {
		r.route = "/jobs";
		if (strcmp(m, "POST") == 0) {
			if (djob_http_authorize(&r, DJOB_PERM_SUBMIT) == 0)
				post_jobs(s, &r);
		} else if (get) {
			if (djob_http_authorize(&r, DJOB_PERM_READ) == 0)
				list_jobs(s, &r);
		} else {
			djob_http_send_405(&r, "GET, POST");
		}
	} else if (strncmp(uri, JOBS_PREFIX, strlen(JOBS_PREFIX)) == 0) {
		job_routes(s, &r, uri + strlen(JOBS_PREFIX));
	} else if (strcmp(uri, "/schedules") == 0 || strncmp(uri, "/schedules/", 11) == 0) {
		schedule_routes(s, &r, uri);
	} else if (strcmp(uri, "/auth") == 0) {
		r.route = "/auth";
		if (get)
			auth(&r);
		else
			djob_http_send_405(&r, "GET");
	} else if (strcmp(uri, "/ui") == 0) {
		/* The dashboard's files are relative to /ui/. */
		r.route = "asset";
		if (get)
			djob_http_send(&r, 308, "application/json", "{}", 2, "Location", "/ui/");
		else
			djob_http_send_405(&r, "GET");
	} else if ((asset = djob_asset_find(uri)) != NULL) {
		/* Public: the dashboard asks for a token itself, and the API's
		 * description is no secret. */
		r.route = "asset";
		if (get)
			djob_http_send_asset(&r, asset);
		else
			djob_http_send_405(&r, "GET");
	} else {
		djob_http_send_error(&r, 404, "No such route");
	}
	return djob_http_req_end(&r);
}

int djob_api_server_new(djob_api_server_t **out, djob_client_t *client, const djob_config_t *conf,
                        djob_error_t *err)
{
	*out = NULL;
	if (!client || !conf)
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "A client and a configuration are required");
	djob_api_server_t *s = calloc(1, sizeof *s);
	if (!s)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	int rc = djob_http_init(&s->http, conf, "api", err);
	if (rc != 0) {
		free(s);
		return rc;
	}
	s->client = client;
	if (djob_metrics_declare(s->http.metrics, "djob_jobs_total", DJOB_METRIC_COUNTER,
	                         "Jobs by type and status (submitted, cancelled, requeued)")) {
		djob_api_server_free(s);
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	*out = s;
	return 0;
}

int djob_api_server_start(djob_api_server_t *s, int port, djob_error_t *err)
{
	long p = port > 0 ? port : djob_config_get_int(s->http.conf, "api.port");
	int rc = djob_http_start(&s->http, p, api_handler, s, err);
	if (rc == 0)
		djob_client_job_stats_prefetch(s->client);
	return rc;
}

void djob_api_server_stop(djob_api_server_t *s)
{
	if (s)
		djob_http_stop(&s->http);
}

int djob_api_server_port(const djob_api_server_t *s)
{
	return s ? djob_http_port(&s->http) : -1;
}

void djob_api_server_free(djob_api_server_t *s)
{
	if (!s)
		return;
	djob_http_cleanup(&s->http);
	free(s);
}
