/*
 * Shared by the API and worker HTTP servers: civetweb start and stop,
 * bearer tokens with roles, JSON replies, bounded body reads, the access
 * log and request metrics.
 */
#include "http_private.h"
#include "store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static pthread_once_t civetweb_once = PTHREAD_ONCE_INIT;

static void civetweb_init(void)
{
	mg_init_library(0);
}

/* What each role may do: the one table that decides it (admin last). */
static const struct {
	const char *role;
	unsigned perms;
} roles[] = {
	{"submit", DJOB_PERM_SUBMIT | DJOB_PERM_READ},
	{"worker", DJOB_PERM_UPDATE | DJOB_PERM_READ},
	{"admin", DJOB_PERM_READ | DJOB_PERM_SUBMIT | DJOB_PERM_UPDATE | DJOB_PERM_ADMIN},
};

static int role_perms(const char *role, size_t len, djob_http_token_t *t)
{
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
		if (strlen(roles[i].role) == len && strncmp(role, roles[i].role, len) == 0) {
			t->role = roles[i].role;
			t->perms = roles[i].perms;
			return 0;
		}
	return -1;
}

/* "tok1:submit,tok2:worker" into h->tokens. */
static int parse_tokens(djob_http_t *h, const char *spec, djob_error_t *err)
{
	if (!spec || !*spec)
		return 0;
	size_t n = 1;
	for (const char *p = spec; *p; p++)
		n += *p == ',';
	h->tokens = calloc(n, sizeof *h->tokens);
	if (!h->tokens)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	for (const char *p = spec; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *colon = memchr(p, ':', len);
		djob_http_token_t *t = &h->tokens[h->ntokens];
		if (!colon || colon == p ||
		    role_perms(colon + 1, len - (size_t)(colon + 1 - p), t) != 0)
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"api.tokens must be token:role pairs with roles submit, "
				"worker or admin");
		t->len = (size_t)(colon - p);
		t->token = strndup(p, t->len);
		if (!t->token)
			return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
		h->ntokens++;
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

/* ---- slow bodies ----
 *
 * civetweb's mg_read returns only once it has every byte asked for, or once
 * no byte came for request_timeout_ms: a client sending one byte a second
 * holds a thread for as long as its body lasts. So each body read is
 * registered here with its deadline, and a thread shuts the reading side
 * of the connection's socket once the deadline has passed: mg_read returns,
 * and the handler can still write its 408. civetweb does not give out the
 * socket; it is found by its two ports and the client's address, which
 * cannot name another connection while the read is registered (the
 * connection stays open until the handler returns). */
typedef struct djob_body_watch_s {
	int64_t deadline;
	const struct mg_request_info *ri;
	bool fired;
	struct djob_body_watch_s *next;
} body_watch_t;

static int sock_port(const struct sockaddr_storage *a, char *addr, size_t len)
{
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)a;
		inet_ntop(AF_INET, &in->sin_addr, addr, (socklen_t)len);
		return ntohs(in->sin_port);
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, (socklen_t)len);
		return ntohs(in6->sin6_port);
	}
	return -1;
}

static void cut_off(const struct mg_request_info *ri)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		struct sockaddr_storage a;
		socklen_t alen = sizeof a;
		char addr[64];
		if (fd <= 2 || getsockname(fd, (struct sockaddr *)&a, &alen) != 0 ||
		    sock_port(&a, addr, sizeof addr) != ri->server_port)
			continue;
		alen = sizeof a;
		if (getpeername(fd, (struct sockaddr *)&a, &alen) == 0 &&
		    sock_port(&a, addr, sizeof addr) == ri->remote_port &&
		    strcmp(addr, ri->remote_addr) == 0) {
			shutdown(fd, SHUT_RD);
			break;
		}
	}
	if (d)
		closedir(d);
}

static void *body_watch(void *arg)
{
	djob_http_t *h = arg;
	pthread_mutex_lock(&h->watch_mu);
	while (!h->watch_quit) {
		int64_t now = djob_mono_ms();
		for (body_watch_t *w = h->watches; w; w = w->next) {
			if (!w->fired && now > w->deadline) {
				w->fired = true;
				cut_off(w->ri);
			}
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&h->watch_cv, &h->watch_mu, &ts);
	}
	pthread_mutex_unlock(&h->watch_mu);
	return NULL;
}

static void watch_add(djob_http_t *h, body_watch_t *w)
{
	pthread_mutex_lock(&h->watch_mu);
	w->next = h->watches;
	h->watches = w;
	pthread_mutex_unlock(&h->watch_mu);
}

static void watch_remove(djob_http_t *h, body_watch_t *w)
{
	pthread_mutex_lock(&h->watch_mu);
	for (body_watch_t **p = &h->watches; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	pthread_mutex_unlock(&h->watch_mu);
}

int djob_http_init(djob_http_t *h, const djob_config_t *conf, const char *component,
                   djob_error_t *err)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->watch_mu, NULL);
	pthread_cond_init(&h->watch_cv, NULL);
	pthread_once(&civetweb_once, civetweb_init);
	h->component = component;
	int rc = djob_config_dup(&h->conf, conf, err);
	if (rc == 0)
		rc = parse_tokens(h, djob_config_get(conf, "api.tokens"), err);
	if (rc == 0 && !(h->metrics = djob_metrics_new()))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	if (rc == 0 &&
	    (djob_metrics_declare(h->metrics, "djob_http_requests_total", DJOB_METRIC_COUNTER,
	                          "HTTP requests by route, method and status code") ||
	     djob_metrics_declare(h->metrics, "djob_http_request_duration_seconds",
	                          DJOB_METRIC_HISTOGRAM, "HTTP request duration by route") ||
	     djob_metrics_declare(h->metrics, "djob_mongo_commands_total", DJOB_METRIC_COUNTER,
	                          "MongoDB commands sent by this process, by command")))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	h->body_max = djob_config_get_int(conf, "api.body.max.bytes");
	h->request_timeout_ms = djob_config_get_int(conf, "http.request.timeout.ms");
	if (rc != 0)
		djob_http_cleanup(h);
	return rc;
}

char *djob_http_render_metrics(djob_http_t *h)
{
	const char *names[8];
	unsigned long long counts[8];
	size_t n = djob_store_commands(names, counts, 8);
	for (size_t i = 0; i < n; i++) {
		char labels[64];
		snprintf(labels, sizeof labels, "command=\"%s\"", names[i]);
		djob_metrics_set(h->metrics, "djob_mongo_commands_total", labels,
		                 (double)counts[i]);
	}
	return djob_metrics_render(h->metrics);
}

void djob_http_cleanup(djob_http_t *h)
{
	djob_http_stop(h);
	for (size_t i = 0; i < h->ntokens; i++) {
		/* Tokens are secrets: do not leave them in freed memory. */
		explicit_bzero(h->tokens[i].token, h->tokens[i].len);
		free(h->tokens[i].token);
	}
	free(h->tokens);
	h->tokens = NULL;
	h->ntokens = 0;
	djob_metrics_free(h->metrics);
	h->metrics = NULL;
	djob_config_free(h->conf);
	h->conf = NULL;
	pthread_cond_destroy(&h->watch_cv);
	pthread_mutex_destroy(&h->watch_mu);
}

static int civetweb_log(const struct mg_connection *conn, const char *message)
{
	djob_http_t *h = mg_get_user_data(mg_get_context(conn));
	/* At start the first message is why the start failed (a port in use):
	 * it goes into the start's error, not into a log line of its own. */
	if (h && h->starting) {
		if (!h->start_error[0])
			snprintf(h->start_error, sizeof h->start_error, "%s", message);
		return 1;
	}
	djob_logf(h ? h->conf : NULL, DJOB_LOG_WARNING, h ? h->component : "http", "civetweb: %s",
	          message);
	return 1;
}

static char *error_json(const char *message)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "error", message);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* An HTTP method name (RFC 9110's token, upper-case letters in practice). */
static bool is_method_token(const char *m)
{
	if (!m || !*m)
		return false;
	for (; *m; m++)
		if (!((*m >= 'A' && *m <= 'Z') || *m == '-' || *m == '_'))
			return false;
	return true;
}

/* civetweb's own refusals (a malformed request, headers too large, a method
 * it does not take) are answered here, so that they too are JSON. A method
 * that is well formed but one civetweb refuses (TRACE, or one it does not
 * know) goes to the handler, whose route answers 405 with its Allow header
 * (or 404) as for any method the route does not serve; no route reads a
 * body for such a method. civetweb refuses before it sets local_uri, so the
 * handler is lent the decoded path of request_uri for that call. Returns
 * 0: the reply is sent. */
static int civetweb_error(struct mg_connection *conn, int status, const char *message)
{
	djob_http_t *h = mg_get_user_data(mg_get_context(conn));
	struct mg_request_info *ri = (struct mg_request_info *)mg_get_request_info(conn);
	const char *m = ri ? ri->request_method : NULL;
	const char *uri = ri ? ri->request_uri : NULL;
	if (h && h->handler && status == 400 && !ri->local_uri && uri && uri[0] == '/' &&
	    is_method_token(m) && strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 &&
	    strcmp(m, "POST") != 0 && strcmp(m, "PATCH") != 0 && strcmp(m, "DELETE") != 0 &&
	    strcmp(m, "PUT") != 0) {
		char path[1024];
		size_t n = strcspn(uri, "?");
		if (n < sizeof path && mg_url_decode(uri, (int)n, path, (int)sizeof path, 0) >= 0) {
			ri->local_uri = path;
			h->handler(conn, h->cbdata);
			ri->local_uri = NULL;
			return 0;
		}
	}
	char *s = error_json(message && *message ? message : "Bad request");
	const char *body = s ? s : "{\"error\":\"Bad request\"}";
	char clen[32];
	snprintf(clen, sizeof clen, "%zu", strlen(body));
	mg_response_header_start(conn, status);
	mg_response_header_add(conn, "Content-Type", "application/json", -1);
	mg_response_header_add(conn, "Content-Length", clen, -1);
	mg_response_header_add(conn, "Cache-Control", "no-store", -1);
	mg_response_header_send(conn);
	if (!m || strcmp(m, "HEAD") != 0)
		mg_write(conn, body, strlen(body));
	free(s);
	return 0;
}

static bool is_loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	       strcmp(addr, "[::1]") == 0 || strcmp(addr, "localhost") == 0;
}

int djob_http_start(djob_http_t *h, long port, mg_request_handler handler, void *cbdata,
                    djob_error_t *err)
{
	if (h->ctx)
		return djob_set_error(err, DJOB_ESTATE, 0, "The server is already running");
	const char *listen = djob_config_get(h->conf, "api.listen");
	if (listen && !*listen)
		listen = NULL;
	if (listen && h->ntokens == 0 && !is_loopback(listen))
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "Refusing to listen on %s without api.tokens: set tokens or "
		                      "listen on 127.0.0.1",
		                      listen);
	if (!listen) {
		listen = h->ntokens ? "0.0.0.0" : "127.0.0.1";
		if (!h->ntokens)
			djob_logf(h->conf, DJOB_LOG_WARNING, h->component,
			          "No api.tokens configured: listening on 127.0.0.1 only, without "
			          "authentication");
	}
	char ports[128];
	if (strchr(listen, ':') && listen[0] != '[')
		snprintf(ports, sizeof ports, "[%s]:%ld", listen, port);
	else
		snprintf(ports, sizeof ports, "%s:%ld", listen, port);
	/* tcp_nodelay: a response goes out as two writes (headers, body);
	 * with Nagle's algorithm the body waits for the client's delayed ACK,
	 * which put 40 ms on every keep-alive request. */
	/* A connection holds a thread while it is open (civetweb 1.15): idle
	 * clients are bounded by the request and keep-alive timeouts, and the
	 * ones beyond the threads wait in the backlog. */
	char threads[16], request_ms[16], keepalive_ms[16], backlog[16];
	snprintf(threads, sizeof threads, "%ld", djob_config_get_int(h->conf, "http.threads"));
	snprintf(request_ms, sizeof request_ms, "%ld", h->request_timeout_ms);
	snprintf(keepalive_ms, sizeof keepalive_ms, "%ld",
	         djob_config_get_int(h->conf, "http.keepalive.timeout.ms"));
	snprintf(backlog, sizeof backlog, "%ld", djob_config_get_int(h->conf, "http.backlog"));
	const char *options[] = {"listening_ports",
	                         ports,
	                         "num_threads",
	                         threads,
	                         "request_timeout_ms",
	                         request_ms,
	                         "keep_alive_timeout_ms",
	                         keepalive_ms,
	                         "listen_backlog",
	                         backlog,
	                         "enable_keep_alive",
	                         "yes",
	                         "tcp_nodelay",
	                         "1",
	                         NULL};
	struct mg_callbacks cb;
	memset(&cb, 0, sizeof cb);
	cb.log_message = civetweb_log;
	cb.http_error = civetweb_error;
	char ebuf[256] = "";
	struct mg_error_data ed = {0};
	ed.text = ebuf;
	ed.text_buffer_size = sizeof ebuf;
	struct mg_init_data init = {0};
	init.callbacks = &cb;
	init.user_data = h;
	init.configuration_options = options;
	h->start_error[0] = '\0';
	h->handler = handler;
	h->cbdata = cbdata;
	h->starting = true;
	h->ctx = mg_start2(&init, &ed);
	h->starting = false;
	if (!h->ctx)
		return djob_set_error(err, DJOB_EINVAL, 1, "Cannot listen on %s: %s", ports,
		                      h->start_error[0] ? h->start_error
		                      : ebuf[0]         ? ebuf
		                                        : "unknown error");
	h->watch_quit = false;
	if (pthread_create(&h->watch_thread, NULL, body_watch, h) != 0) {
		mg_stop(h->ctx);
		h->ctx = NULL;
		return djob_set_error(err, DJOB_EINTERNAL, 0, "Cannot start a thread");
	}
	h->watch_started = true;
	mg_set_request_handler(h->ctx, "/", handler, cbdata);
	djob_logf(h->conf, DJOB_LOG_INFO, h->component, "Listening on %s", ports);
	return 0;
}

void djob_http_stop(djob_http_t *h)
{
	if (h->ctx) {
		mg_stop(h->ctx);
		h->ctx = NULL;
	}
	if (h->watch_started) {
		pthread_mutex_lock(&h->watch_mu);
		h->watch_quit = true;
		pthread_cond_broadcast(&h->watch_cv);
		pthread_mutex_unlock(&h->watch_mu);
		pthread_join(h->watch_thread, NULL);
		h->watch_started = false;
	}
}

int djob_http_port(const djob_http_t *h)
{
	struct mg_server_port p[4];
	if (!h->ctx)
		return -1;
	int n = mg_get_server_ports(h->ctx, 4, p);
	return n > 0 ? p[0].port : -1;
}

void djob_http_req_begin(djob_http_req_t *r, djob_http_t *h, struct mg_connection *conn)
{
	memset(r, 0, sizeof *r);
	r->h = h;
	r->conn = conn;
	r->ri = mg_get_request_info(conn);
	r->route = "other";
	r->start_ms = djob_mono_ms();
}

int djob_http_req_end(djob_http_req_t *r)
{
	double secs = (double)(djob_mono_ms() - r->start_ms) / 1000.0;
	char labels[160], method[16];
	djob_metrics_escape(r->ri->request_method ? r->ri->request_method : "", method,
	                    sizeof method);
	snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\",code=\"%d\"", r->route, method,
	         r->status);
	djob_metrics_add(r->h->metrics, "djob_http_requests_total", labels, 1);
	snprintf(labels, sizeof labels, "route=\"%s\"", r->route);
	djob_metrics_observe(r->h->metrics, "djob_http_request_duration_seconds", labels, secs);
	/* Health checks and scrapes would drown the log at info level. */
	djob_log_level_t level =
		strcmp(r->route, "/health") == 0 || strcmp(r->route, "/metrics") == 0
			? DJOB_LOG_DEBUG
			: DJOB_LOG_INFO;
	djob_logf(r->h->conf, level, "access", "%s %s %d %.1f ms %s", method,
	          r->ri->local_uri ? r->ri->local_uri : "", r->status, secs * 1000.0,
	          r->ri->remote_addr);
	return r->status;
}

void djob_http_send(djob_http_req_t *r, int status, const char *content_type, const char *body,
                    size_t len, const char *extra_name, const char *extra_value)
{
	char clen[32];
	snprintf(clen, sizeof clen, "%zu", len);
	r->status = status;
	if (r->close)
		mg_disable_connection_keep_alive(r->conn);
	mg_response_header_start(r->conn, status);
	mg_response_header_add(r->conn, "Content-Type", content_type, -1);
	mg_response_header_add(r->conn, "Content-Length", clen, -1);
	mg_response_header_add(r->conn, "Cache-Control", "no-store", -1);
	if (extra_name && extra_value)
		mg_response_header_add(r->conn, extra_name, extra_value, -1);
	mg_response_header_send(r->conn);
	if (len > 0 && strcmp(r->ri->request_method, "HEAD") != 0)
		mg_write(r->conn, body, len);
}

/* Built-in files are revalidated (no-cache) rather than stored for a time,
 * so a new djob-api's dashboard shows at once; the policy keeps the page to
 * its own files and this API (nothing from outside, no inline script). */
void djob_http_send_asset(djob_http_req_t *r, const djob_asset_t *a)
{
	const char *inm = mg_get_header(r->conn, "If-None-Match");
	bool fresh = inm && strstr(inm, a->etag) != NULL;
	char clen[32];
	snprintf(clen, sizeof clen, "%zu", fresh ? (size_t)0 : a->len);
	r->status = fresh ? 304 : 200;
	if (r->close)
		mg_disable_connection_keep_alive(r->conn);
	mg_response_header_start(r->conn, r->status);
	if (!fresh) {
		mg_response_header_add(r->conn, "Content-Type", a->content_type, -1);
		mg_response_header_add(r->conn, "Content-Length", clen, -1);
	}
	mg_response_header_add(r->conn, "ETag", a->etag, -1);
	mg_response_header_add(r->conn, "Cache-Control", "no-cache", -1);
	mg_response_header_add(r->conn, "X-Content-Type-Options", "nosniff", -1);
	mg_response_header_add(r->conn, "Content-Security-Policy",
	                       "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
	                       -1);
	mg_response_header_send(r->conn);
	if (!fresh && strcmp(r->ri->request_method, "HEAD") != 0)
		mg_write(r->conn, a->data, a->len);
}

void djob_http_send_json(djob_http_req_t *r, int status, const char *json)
{
	if (!json)
		json = "{}";
	djob_http_send(r, status, "application/json", json, strlen(json), NULL, NULL);
}

static void send_error_with(djob_http_req_t *r, int status, const char *message,
                            const char *extra_name, const char *extra_value)
{
	char *s = error_json(message);
	const char *body = s ? s : "{\"error\":\"Out of memory\"}";
	djob_http_send(r, status, "application/json", body, strlen(body), extra_name, extra_value);
	free(s);
}

void djob_http_send_error(djob_http_req_t *r, int status, const char *message)
{
	send_error_with(r, status, message, NULL, NULL);
}

void djob_http_send_djob_error(djob_http_req_t *r, int code, const djob_error_t *e)
{
	int status = djob_error_http_status(code);
	const char *msg = e && e->message[0] ? e->message : djob_strerror(code);
	if (status >= 500)
		djob_logf(r->h->conf, DJOB_LOG_WARNING, r->h->component, "%s %s: %s",
		          r->ri->request_method, r->ri->local_uri ? r->ri->local_uri : "", msg);
	djob_http_send_error(r, status, msg);
}

void djob_http_send_405(djob_http_req_t *r, const char *allow)
{
	char msg[128];
	snprintf(msg, sizeof msg, "Method %.16s is not allowed here (allowed: %s)",
	         r->ri->request_method, allow);
	send_error_with(r, 405, msg, "Allow", allow);
}

int djob_http_const_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	volatile unsigned char d = alen != blen;
	size_t n = alen > blen ? alen : blen;
	for (size_t i = 0; i < n; i++) {
		unsigned char ca = i < alen ? (unsigned char)a[i] : 0;
		unsigned char cb = i < blen ? (unsigned char)b[i] : 0;
		d |= (unsigned char)(ca ^ cb);
	}
	return d == 0;
}

int djob_http_token_role(djob_http_req_t *r, const char **role, unsigned *perms)
{
	/* Without tokens every request may do everything, as admin (the
	 * table's last role). */
	if (r->h->ntokens == 0) {
		*role = roles[sizeof roles / sizeof roles[0] - 1].role;
		*perms = roles[sizeof roles / sizeof roles[0] - 1].perms;
		return 0;
	}
	const char *auth = mg_get_header(r->conn, "Authorization");
	const char *tok = NULL;
	if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
		tok = auth + 7;
		while (*tok == ' ')
			tok++;
	}
	const char *found = NULL;
	unsigned p = 0;
	size_t tlen = tok ? strlen(tok) : 0;
	/* Every configured token is compared, so timing tells nothing about
	 * which one (or how much of one) matched. */
	for (size_t i = 0; tok && i < r->h->ntokens; i++) {
		int eq = djob_http_const_eq(tok, tlen, r->h->tokens[i].token, r->h->tokens[i].len);
		p |= eq ? r->h->tokens[i].perms : 0;
		found = eq ? r->h->tokens[i].role : found;
	}
	if (!found)
		return -1;
	/* A token listed twice holds both roles' rights: name the wider. */
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
		if (roles[i].perms == p)
			found = roles[i].role;
	*role = found;
	*perms = p;
	return 0;
}

void djob_http_send_401(djob_http_req_t *r)
{
	send_error_with(r, 401, "Missing or invalid bearer token", "WWW-Authenticate",
	                "Bearer realm=\"djob\"");
}

int djob_http_authorize(djob_http_req_t *r, unsigned perm)
{
	if (perm == DJOB_PERM_NONE)
		return 0;
	const char *role;
	unsigned perms;
	if (djob_http_token_role(r, &role, &perms) != 0) {
		djob_http_send_401(r);
		return -1;
	}
	if (!(perms & perm)) {
		djob_http_send_error(r, 403, "This token's role does not allow this request");
		return -1;
	}
	return 0;
}

/* Read and drop the rest of a refused body, so that the client (which may
 * still be sending it) reads the reply instead of a reset connection.
 * Beyond `cap` bytes the connection is closed instead. */
static void drain(djob_http_req_t *r, long long cap)
{
	char buf[16384];
	long long n = 0;
	int got;
	while (n <= cap && (got = mg_read(r->conn, buf, sizeof buf)) > 0)
		n += got;
	if (n > cap)
		r->close = true;
}

int djob_http_read_body(djob_http_req_t *r, char **body, size_t *len)
{
	*body = NULL;
	*len = 0;
	long long max = r->h->body_max > 0 ? r->h->body_max : 1048576;
	long long cl = r->ri->content_length;
	char msg[96];
	snprintf(msg, sizeof msg, "Request body is over %lld bytes", max);
	/* Decided on Content-Length, before anything is kept: a body up to
	 * 8 times the limit is read and dropped, a larger one is not read. */
	long long drain_max = max * 8;
	if (cl > max) {
		if (cl > drain_max)
			r->close = true;
		else
			drain(r, drain_max);
		djob_http_send_error(r, 413, msg);
		return -1;
	}
	size_t cap = cl >= 0 ? (size_t)cl + 1 : 4096;
	char *buf = malloc(cap);
	if (!buf) {
		djob_http_send_error(r, 500, "Out of memory");
		return -1;
	}
	size_t n = 0;
	/* One slow client must not hold a thread for long: each mg_read waits
	 * at most http.request.timeout.ms, and the whole body gets as long. */
	long limit_ms = r->h->request_timeout_ms > 0 ? r->h->request_timeout_ms : 5000;
	int64_t deadline = djob_mono_ms() + limit_ms;
	bool late = false, cut = false;
	body_watch_t watch = {deadline, r->ri, false, NULL};
	watch_add(r->h, &watch);
	for (;;) {
		if (djob_mono_ms() > deadline) {
			late = true;
			break;
		}
		if (n + 1 >= cap) {
			if ((long long)n > max)
				break;
			char *b = realloc(buf, cap * 2);
			if (!b) {
				watch_remove(r->h, &watch);
				free(buf);
				djob_http_send_error(r, 500, "Out of memory");
				return -1;
			}
			buf = b;
			cap *= 2;
		}
		int got = mg_read(r->conn, buf + n, cap - n - 1);
		if (got < 0 || (got == 0 && cl >= 0 && (long long)n < cl)) {
			cut = true; /* timed out or closed before Content-Length */
			break;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if ((long long)n > max)
			break;
	}
	watch_remove(r->h, &watch);
	late |= watch.fired;
	if (late || cut) {
		free(buf);
		r->close = true;
		char tmsg[96];
		snprintf(tmsg, sizeof tmsg, "Request body did not arrive within %ld ms", limit_ms);
		djob_http_send_error(r, 408, tmsg);
		return -1;
	}
	if ((long long)n > max) {
		free(buf);
		drain(r, drain_max);
		djob_http_send_error(r, 413, msg);
		return -1;
	}
	buf[n] = '\0';
	*body = buf;
	*len = n;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *djob_http_query(const char *query, const char *name)
{
	size_t nlen = strlen(name);
	for (const char *p = query; p && *p;) {
		const char *end = strchr(p, '&');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			const char *v = p + nlen + 1;
			size_t vlen = len - nlen - 1;
			char *out = malloc(vlen + 1);
			size_t k = 0;
			for (size_t i = 0; out && i < vlen; i++) {
				int hi, lo;
				if (v[i] == '+') {
					out[k++] = ' ';
				} else if (v[i] == '%' && i + 2 < vlen &&
				           (hi = hexval(v[i + 1])) >= 0 &&
				           (lo = hexval(v[i + 2])) >= 0 && (hi | lo) != 0) {
					/* %00 stays as it is: a NUL would cut the
					 * value short ("queued%00x" read as queued). */
					out[k++] = (char)(hi * 16 + lo);
					i += 2;
				} else {
					out[k++] = v[i];
				}
			}
			if (out)
				out[k] = '\0';
			return out;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return NULL;
}
