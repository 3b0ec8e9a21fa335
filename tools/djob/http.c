/*
 * djob's HTTP requests over civetweb's client, as libdjob's api sink makes
 * them (libdjob/sink_api.c): a connection per request, Connection: close.
 */
#include "http.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MS 30000
#define RESPONSE_MAX (64 * 1024 * 1024)

int cli_url_parse(cli_url_t *u, const char *url, char *why, size_t why_len)
{
	memset(u, 0, sizeof *u);
	const char *p = url;
	if (strncmp(p, "http://", 7) == 0) {
		p += 7;
		u->port = 80;
	} else if (strncmp(p, "https://", 8) == 0) {
		p += 8;
		u->port = 443;
		u->ssl = 1;
	} else {
		snprintf(why, why_len, "The URL %s does not start with http:// or https://", url);
		return -1;
	}
	size_t hlen = strcspn(p, ":/?#");
	if (hlen == 0 || hlen >= sizeof u->host) {
		snprintf(why, why_len, "The URL %s has no host", url);
		return -1;
	}
	memcpy(u->host, p, hlen);
	p += hlen;
	if (*p == ':') {
		char *end;
		long port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
			snprintf(why, why_len, "The URL %s has a bad port", url);
			return -1;
		}
		u->port = (int)port;
		p = end;
	}
	if (*p && *p != '/') {
		snprintf(why, why_len, "The URL %s has a bad path", url);
		return -1;
	}
	if (strlen(p) >= sizeof u->base || strpbrk(p, " \r\n?#")) {
		snprintf(why, why_len, "The URL %s has a bad path", url);
		return -1;
	}
	snprintf(u->base, sizeof u->base, "%s", p);
	size_t n = strlen(u->base);
	while (n > 0 && u->base[n - 1] == '/')
		u->base[--n] = '\0';
	return 0;
}

char *cli_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *o = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

int cli_http(const cli_url_t *u, const char *method, const char *path, const char *body,
             const char *token, int *status, char **resp, char *why, size_t why_len)
{
	char ebuf[256] = "";
	*status = 0;
	*resp = NULL;
	struct mg_connection *c = mg_connect_client(u->host, u->port, u->ssl, ebuf, sizeof ebuf);
	if (!c) {
		snprintf(why, why_len, "Cannot reach %s:%d: %s", u->host, u->port,
		         *ebuf ? ebuf : "no connection");
		return -1;
	}
	size_t len = body ? strlen(body) : 0;
	mg_printf(c, "%s %s%s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n", method, u->base,
	          path, u->host, u->port);
	if (token && *token)
		mg_printf(c, "Authorization: Bearer %s\r\n", token);
	if (body)
		mg_printf(c, "Content-Type: application/json\r\nContent-Length: %zu\r\n", len);
	else if (strcmp(method, "POST") == 0)
		mg_printf(c, "Content-Length: 0\r\n");
	mg_printf(c, "\r\n");
	int rc = 0;
	if (body && mg_write(c, body, len) != (int)len) {
		snprintf(why, why_len, "Cannot send the request to %s:%d", u->host, u->port);
		rc = -1;
	} else if (mg_get_response(c, ebuf, sizeof ebuf, TIMEOUT_MS) < 0) {
		snprintf(why, why_len, "No answer from %s:%d: %s", u->host, u->port, ebuf);
		rc = -1;
	}
	char *buf = NULL;
	size_t n = 0, cap = 0;
	if (rc == 0) {
		*status = mg_get_response_info(c)->status_code;
		for (;;) {
			if (cap - n < 4096) {
				char *b = cap < RESPONSE_MAX
				                  ? realloc(buf, cap = cap ? cap * 2 : 8192)
				                  : NULL;
				if (!b) {
					snprintf(why, why_len, "The answer from %s:%d is too large",
					         u->host, u->port);
					rc = -1;
					break;
				}
				buf = b;
			}
			int got = mg_read(c, buf + n, cap - n - 1);
			if (got <= 0)
				break;
			n += (size_t)got;
		}
	}
	mg_close_connection(c);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	if (!buf && !(buf = malloc(1))) {
		snprintf(why, why_len, "Out of memory");
		return -1;
	}
	buf[n] = '\0';
	*resp = buf;
	return 0;
}
