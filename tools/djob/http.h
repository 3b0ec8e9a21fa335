/*
 * djob's HTTP requests: one request per connection over civetweb's client
 * (mg_connect_client), against a base URL such as http://host:3000/prefix.
 */
#ifndef DJOB_CLI_HTTP_H
#define DJOB_CLI_HTTP_H

#include <stddef.h>

typedef struct {
	char host[256];
	int port;
	int ssl;
	char base[512]; /* path prefix without the trailing slash, or "" */
} cli_url_t;

/* "http://host[:port][/prefix]" or https://; 0, or -1 with a sentence in
 * why. */
int cli_url_parse(cli_url_t *u, const char *url, char *why, size_t why_len);

/* One request: `path` (already encoded) after the base, `body` (may be
 * NULL) sent as JSON, `token` (may be NULL) as a bearer token. 0 with the
 * status in *status and the body in *resp (free(); always NUL-ended), or
 * -1 with a sentence in why when no answer came. */
int cli_http(const cli_url_t *u, const char *method, const char *path, const char *body,
             const char *token, int *status, char **resp, char *why, size_t why_len);

/* `s` percent-encoded for a path segment or a query value. Ownership:
 * free(). */
char *cli_encode(const char *s);

#endif
