/*
 * The api status sink: claim, extend and finish as PATCH /jobs/:id on
 * djob-api (config api.url) with the bearer token of config key token. For
 * workers that must not hold database credentials.
 *
 * The transport is a small HTTP/1.1 client over plain TCP or mbedTLS:
 * https:// verifies the API's certificate against api.tls.ca.file (or the
 * PEM files of api.tls.ca.dir) and its host name (an IP literal against the
 * certificate's iPAddress names) before the token is sent. Connections are
 * kept alive in a pool and reused across PATCHes; one the server closed
 * while idle is dropped, and a request that found its reused connection
 * dead is sent once more on a new one.
 */
#include "json.h"
#include "sink_private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define API_TIMEOUT_MS 10000
#define API_CONNECT_TIMEOUT_MS 5000
#define API_RESPONSE_MAX (4 * 1024 * 1024)
#define API_HEADERS_MAX 16384
#define API_IDLE_MAX 16

typedef struct conn_s {
	int fd;
	bool tls;
	mbedtls_ssl_context ssl;
	struct conn_s *next;
} conn_t;

typedef struct {
	djob_config_t *conf;
	char host[256];    /* without an IPv6 literal's brackets */
	char hosthdr[300]; /* the Host header's value */
	int port;
	int ssl;
	unsigned char ip[16]; /* the host as an address, when it is one */
	size_t iplen;
	char base[512]; /* path prefix without the trailing slash, or "" */
	char *auth;     /* "Authorization: Bearer ...\r\n" or "" */

	/* https only; read-only once made, shared by every connection. */
	bool tls_ready;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt ca;
	mbedtls_ssl_config tls;

	pthread_mutex_t mu; /* idle */
	conn_t *idle;
	size_t nidle;
} api_sink_t;

static void tls_error(int ret, char *buf, size_t size)
{
	mbedtls_strerror(ret, buf, size);
}

/* "http://host:port/base" or "https://[::1]:port/base" into s. */
static int parse_url(api_sink_t *s, const char *url, djob_error_t *err)
{
	const char *p = url ? url : "";
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
	size_t hlen;
	if (*p == '[') {
		const char *close = strchr(p, ']');
		hlen = close ? (size_t)(close - p - 1) : 0;
		if (!close || hlen == 0 || hlen >= sizeof s->host)
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "api.url has a bad IPv6 address (expected [addr])");
		memcpy(s->host, p + 1, hlen);
		s->host[hlen] = '\0';
		if (inet_pton(AF_INET6, s->host, s->ip) != 1)
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "api.url has a bad IPv6 address %s", s->host);
		s->iplen = 16;
		p = close + 1;
	} else {
		hlen = strcspn(p, ":/?#");
		if (hlen == 0 || hlen >= sizeof s->host)
			return djob_set_error(err, DJOB_EINVAL, 0, "api.url has no host");
		memcpy(s->host, p, hlen);
		s->host[hlen] = '\0';
		if (inet_pton(AF_INET, s->host, s->ip) == 1)
			s->iplen = 4;
		p += hlen;
	}
	if (*p == ':') {
		char *end;
		long port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
			return djob_set_error(err, DJOB_EINVAL, 0, "api.url has a bad port");
		s->port = (int)port;
		p = end;
	} else if (*p && *p != '/') {
		return djob_set_error(err, DJOB_EINVAL, 0, "api.url has a bad host");
	}
	if (strpbrk(p, " \r\n?#"))
		return djob_set_error(err, DJOB_EINVAL, 0, "api.url has a bad path");
	snprintf(s->base, sizeof s->base, "%s", p);
	size_t n = strlen(s->base);
	while (n > 0 && s->base[n - 1] == '/')
		s->base[--n] = '\0';
	snprintf(s->hosthdr, sizeof s->hosthdr, s->iplen == 16 ? "[%s]:%d" : "%s:%d", s->host,
	         s->port);
	return 0;
}

/* ---- TLS ---- */

/* The certificate's subjectAltName holds iPAddress `ip`. mbedTLS 2.28
 * checks only DNS names, so an IP literal in api.url is matched here,
 * from the raw extensions. */
static bool san_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t iplen)
{
	unsigned char *p = crt->v3_ext.p, *end = p ? p + crt->v3_ext.len : NULL;
	size_t len;
	if (!p || mbedtls_asn1_get_tag(&p, end, &len,
	                               MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
		return false;
	end = p + len;
	while (p < end) {
		unsigned char *ext_end;
		mbedtls_asn1_buf oid;
		if (mbedtls_asn1_get_tag(&p, end, &len,
		                         MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
			return false;
		ext_end = p + len;
		if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID) != 0)
			return false;
		oid.p = p;
		p += oid.len;
		int critical;
		if (mbedtls_asn1_get_bool(&p, ext_end, &critical) != 0 &&
		    mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
			return false;
		if (p < ext_end && *p == MBEDTLS_ASN1_OCTET_STRING &&
		    mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
			return false;
		if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid) == 0) {
			unsigned char *q = p;
			size_t names;
			if (mbedtls_asn1_get_tag(&q, ext_end, &names,
			                         MBEDTLS_ASN1_CONSTRUCTED |
			                                 MBEDTLS_ASN1_SEQUENCE) != 0)
				return false;
			unsigned char *names_end = q + names;
			while (q < names_end) {
				unsigned char tag = *q++;
				size_t nlen;
				if (mbedtls_asn1_get_len(&q, names_end, &nlen) != 0)
					return false;
				if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && nlen == iplen &&
				    memcmp(q, ip, iplen) == 0)
					return true;
				q += nlen;
			}
		}
		p = ext_end;
	}
	return false;
}

static int verify_cb(void *opaque, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	const api_sink_t *s = opaque;
	if (depth == 0 && s->iplen && !san_has_ip(crt, s->ip, s->iplen))
		*flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
	return 0;
}

static int tls_setup(api_sink_t *s, djob_error_t *err)
{
	char msg[128];
	mbedtls_entropy_init(&s->entropy);
	mbedtls_ctr_drbg_init(&s->drbg);
	mbedtls_x509_crt_init(&s->ca);
	mbedtls_ssl_config_init(&s->tls);
	s->tls_ready = true;
	int ret = mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy,
	                                (const unsigned char *)"djob-sink", 9);
	if (ret != 0) {
		tls_error(ret, msg, sizeof msg);
		return djob_set_error(err, DJOB_EINTERNAL, 0, "Cannot seed TLS: %s", msg);
	}
	const char *file = djob_config_get(s->conf, "api.tls.ca.file");
	const char *dir = djob_config_get(s->conf, "api.tls.ca.dir");
	if (file && *file) {
		ret = mbedtls_x509_crt_parse_file(&s->ca, file);
		if (ret != 0) {
			tls_error(ret, msg, sizeof msg);
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"Cannot read the CA certificates of api.tls.ca.file %s: %s", file,
				msg);
		}
	} else {
		/* A directory such as /etc/ssl/certs may hold files that are not
		 * certificates: it is enough that some are. */
		ret = dir ? mbedtls_x509_crt_parse_path(&s->ca, dir) : -1;
		if (ret < 0 || s->ca.version == 0)
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"No CA certificate could be read from api.tls.ca.dir %s",
				dir ? dir : "(unset)");
	}
	ret = mbedtls_ssl_config_defaults(&s->tls, MBEDTLS_SSL_IS_CLIENT,
	                                  MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0) {
		tls_error(ret, msg, sizeof msg);
		return djob_set_error(err, DJOB_EINTERNAL, 0, "Cannot set up TLS: %s", msg);
	}
	mbedtls_ssl_conf_authmode(&s->tls, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&s->tls, &s->ca, NULL);
	mbedtls_ssl_conf_rng(&s->tls, mbedtls_ctr_drbg_random, &s->drbg);
	mbedtls_ssl_conf_verify(&s->tls, verify_cb, s);
	mbedtls_ssl_conf_min_version(&s->tls, MBEDTLS_SSL_MAJOR_VERSION_3,
	                             MBEDTLS_SSL_MINOR_VERSION_3); /* TLS 1.2 */
	return 0;
}

/* The socket callbacks of mbedTLS: MSG_NOSIGNAL, so that a server that went
 * away is an error here and not SIGPIPE for the whole worker. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	ssize_t n = send(*(int *)ctx, buf, len, MSG_NOSIGNAL);
	if (n >= 0)
		return (int)n;
	if (errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
	                                             : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	ssize_t n = recv(*(int *)ctx, buf, len, 0);
	if (n >= 0)
		return (int)n;
	if (errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return MBEDTLS_ERR_SSL_TIMEOUT;
	return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
}

/* ---- connections ---- */

static void conn_close(conn_t *c)
{
	if (!c)
		return;
	if (c->tls) {
		mbedtls_ssl_close_notify(&c->ssl);
		mbedtls_ssl_free(&c->ssl);
	}
	close(c->fd);
	free(c);
}

/* A TCP connection within API_CONNECT_TIMEOUT_MS, to any address of the
 * host; -1 with errno. */
static int tcp_connect(const api_sink_t *s, char *why, size_t whylen)
{
	char port[8];
	snprintf(port, sizeof port, "%d", s->port);
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int gai = getaddrinfo(s->host, port, &hints, &res);
	if (gai != 0) {
		snprintf(why, whylen, "%s", gai_strerror(gai));
		return -1;
	}
	int fd = -1;
	snprintf(why, whylen, "no address");
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		            a->ai_protocol);
		if (fd < 0)
			continue;
		int rc = connect(fd, a->ai_addr, a->ai_addrlen);
		if (rc != 0 && errno == EINPROGRESS) {
			struct pollfd pfd = {fd, POLLOUT, 0};
			int soerr = 0;
			socklen_t sl = sizeof soerr;
			rc = poll(&pfd, 1, API_CONNECT_TIMEOUT_MS);
			if (rc == 0)
				errno = ETIMEDOUT;
			if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0)
				errno = soerr;
			rc = rc == 1 && soerr == 0 ? 0 : -1;
		}
		if (rc != 0) {
			snprintf(why, whylen, "%s", strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	struct timeval tv = {API_TIMEOUT_MS / 1000, (API_TIMEOUT_MS % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static int conn_open(api_sink_t *s, conn_t **out, djob_error_t *err)
{
	char why[256];
	*out = NULL;
	conn_t *c = calloc(1, sizeof *c);
	if (!c)
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	c->fd = tcp_connect(s, why, sizeof why);
	if (c->fd < 0) {
		free(c);
		return djob_set_error(err, DJOB_EHTTP, 1, "Cannot reach the API at %s: %s",
		                      s->hosthdr, why);
	}
	if (s->ssl) {
		c->tls = true;
		mbedtls_ssl_init(&c->ssl);
		int ret = mbedtls_ssl_setup(&c->ssl, &s->tls);
		/* An IP literal is checked by verify_cb and sent as no SNI. */
		if (ret == 0 && !s->iplen)
			ret = mbedtls_ssl_set_hostname(&c->ssl, s->host);
		if (ret == 0) {
			mbedtls_ssl_set_bio(&c->ssl, &c->fd, bio_send, bio_recv, NULL);
			do
				ret = mbedtls_ssl_handshake(&c->ssl);
			while (ret == MBEDTLS_ERR_SSL_WANT_READ ||
			       ret == MBEDTLS_ERR_SSL_WANT_WRITE);
		}
		if (ret != 0) {
			char m[1024];
			uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
			if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags) {
				char info[256];
				mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
				for (char *p = info; *p; p++)
					if (*p == '\n')
						*p = p[1] ? ';' : '\0';
				snprintf(m, sizeof m,
				         "Refusing the API at %s: its certificate failed "
				         "verification (%s)",
				         s->hosthdr, info);
			} else {
				tls_error(ret, why, sizeof why);
				snprintf(m, sizeof m, "TLS handshake with the API at %s failed: %s",
				         s->hosthdr, why);
			}
			/* Said here too: the worker's own line only names the job. */
			djob_logf(s->conf, DJOB_LOG_ERROR, "sink", "%s", m);
			int rc = djob_set_error(err, DJOB_EHTTP, 1, "%s", m);
			conn_close(c);
			return rc;
		}
	}
	*out = c;
	return 0;
}

/* An idle connection the server has not closed, or NULL. */
static conn_t *conn_take(api_sink_t *s)
{
	for (;;) {
		pthread_mutex_lock(&s->mu);
		conn_t *c = s->idle;
		if (c) {
			s->idle = c->next;
			s->nidle--;
		}
		pthread_mutex_unlock(&s->mu);
		if (!c)
			return NULL;
		/* Nothing may arrive on an idle connection but its close. */
		struct pollfd pfd = {c->fd, POLLIN, 0};
		if (poll(&pfd, 1, 0) == 0)
			return c;
		conn_close(c);
	}
}

static void conn_give(api_sink_t *s, conn_t *c)
{
	pthread_mutex_lock(&s->mu);
	if (s->nidle < API_IDLE_MAX) {
		c->next = s->idle;
		s->idle = c;
		s->nidle++;
		c = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	conn_close(c);
}

static int conn_write(conn_t *c, const char *buf, size_t len)
{
	while (len > 0) {
		int n;
		if (c->tls) {
			n = mbedtls_ssl_write(&c->ssl, (const unsigned char *)buf, len);
			if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
				continue;
		} else {
			n = (int)send(c->fd, buf, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Bytes read, 0 at the end of the stream, -1 on an error or timeout. */
static int conn_read(conn_t *c, char *buf, size_t len)
{
	for (;;) {
		int n;
		if (c->tls) {
			n = mbedtls_ssl_read(&c->ssl, (unsigned char *)buf, len);
			if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
				continue;
			if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
				return 0;
		} else {
			n = (int)recv(c->fd, buf, len, 0);
			if (n < 0 && errno == EINTR)
				continue;
		}
		return n < 0 ? -1 : n;
	}
}

/* ---- one exchange ---- */

typedef struct {
	int status;
	char *body; /* NUL-terminated */
	size_t len;
	bool keep; /* the connection may carry the next request */
} reply_t;

/* The value of header `name` in the head (after the status line), or NULL. */
static const char *header_value(const char *head, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1, *e = strstr(v, "\r\n");
			while (*v == ' ' || *v == '\t')
				v++;
			*vlen = e ? (size_t)(e - v) : strlen(v);
			return v;
		}
	}
	return NULL;
}

/* Read one response. -1 when nothing at all came (*none set: the reused
 * connection had been closed), -2 on a broken or oversized response. */
static int read_reply(conn_t *c, reply_t *r, bool *none)
{
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);
	char *eoh = NULL;
	*none = false;
	if (!buf)
		return -2;
	while (!eoh) {
		if (n + 1 >= cap) {
			if (cap >= API_HEADERS_MAX)
				goto bad;
			char *b = realloc(buf, cap *= 2);
			if (!b)
				goto bad;
			buf = b;
		}
		int got = conn_read(c, buf + n, cap - n - 1);
		if (got <= 0) {
			*none = n == 0;
			goto bad;
		}
		n += (size_t)got;
		buf[n] = '\0';
		eoh = strstr(buf, "\r\n\r\n");
	}
	if (strncmp(buf, "HTTP/1.", 7) != 0 || strlen(buf) < 12)
		goto bad;
	r->status = atoi(buf + 9);
	size_t head_len = (size_t)(eoh + 4 - buf), vlen = 0;
	eoh[2] = '\0'; /* the head alone, for header_value */
	const char *v = header_value(buf, "Content-Length", &vlen);
	long long clen = v ? strtoll(v, NULL, 10) : -1;
	const char *conn_hdr = header_value(buf, "Connection", &vlen);
	r->keep = clen >= 0 && strncmp(buf, "HTTP/1.1", 8) == 0 &&
	          !(conn_hdr && vlen == 5 && strncasecmp(conn_hdr, "close", 5) == 0);
	if (header_value(buf, "Transfer-Encoding", &vlen) || clen > API_RESPONSE_MAX)
		goto bad;
	/* The body: Content-Length bytes, or up to the close. */
	size_t have = n - head_len, want = clen >= 0 ? (size_t)clen : API_RESPONSE_MAX;
	char *body = malloc(want + 1);
	if (!body)
		goto bad;
	memcpy(body, buf + head_len, have < want ? have : want);
	free(buf);
	buf = NULL;
	while (have < want) {
		int got = conn_read(c, body + have, want - have);
		if (got <= 0) {
			if (clen < 0 && got == 0)
				break;
			free(body);
			return -2;
		}
		have += (size_t)got;
	}
	body[have] = '\0';
	r->body = body;
	r->len = have;
	return 0;
bad:
	free(buf);
	return *none ? -1 : -2;
}

/* PATCH /jobs/<id> with body. 0 with the response body in *resp (free())
 * for a 2xx; otherwise the mapped error. */
static int request(api_sink_t *s, const char *method, const char *id, const char *body, char **resp,
                   djob_error_t *err)
{
	*resp = NULL;
	/* The id goes into the request line: only a well-formed one. */
	if (!djob_id_is_valid(id))
		return djob_set_error(err, DJOB_EINVAL, 0, "Malformed job id");
	size_t len = strlen(body);
	int hlen = snprintf(NULL, 0,
	                    "%s %s/jobs/%s HTTP/1.1\r\nHost: %s\r\n"
	                    "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
	                    method, s->base, id, s->hosthdr, len, s->auth);
	char *req = malloc((size_t)hlen + len + 1);
	if (!req)
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	snprintf(req, (size_t)hlen + 1,
	         "%s %s/jobs/%s HTTP/1.1\r\nHost: %s\r\n"
	         "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
	         method, s->base, id, s->hosthdr, len, s->auth);
	memcpy(req + hlen, body, len);
	reply_t r = {0};
	int rc = 1;
	/* A reused connection the server closed meanwhile gets one more try on
	 * a new one; a new connection gets none. */
	for (int tries = 0; rc > 0 && tries < 2; tries++) {
		conn_t *c = conn_take(s);
		bool reused = c != NULL, none = false;
		if (!c && (rc = conn_open(s, &c, err)) != 0)
			break;
		int got =
			conn_write(c, req, (size_t)hlen + len) == 0 ? read_reply(c, &r, &none) : -1;
		if (got == 0) {
			rc = 0;
			if (r.keep)
				conn_give(s, c);
			else
				conn_close(c);
			break;
		}
		conn_close(c);
		if (!reused || (got == -2 && !none))
			rc = djob_set_error(err, DJOB_EHTTP, 1,
			                    "No valid answer from the API at %s", s->hosthdr);
	}
	if (rc > 0)
		rc = djob_set_error(err, DJOB_EHTTP, 1, "No answer from the API at %s", s->hosthdr);
	explicit_bzero(req, (size_t)hlen);
	free(req);
	if (rc != 0)
		return rc;
	int status = r.status;
	char *buf = r.body;
	if (status >= 200 && status < 300) {
		*resp = buf;
		return 0;
	}
	/* The reply's {"error":...} says why. */
	cJSON *j = NULL;
	if (buf)
		djob_json_parse(buf, r.len, "The API's reply", &j, NULL, NULL);
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
	int rc = request(s, "PATCH", id, body, &resp, err);
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

/* With progress: PATCH it (a fenced extension that records it). Without:
 * GET the job and check it is still ours. */
static int api_sync(void *opaque, const djob_job_t *job, long lease_ms, const char *progress_json,
                    djob_error_t *err)
{
	if (progress_json) {
		cJSON *o = base_body(job, "processing", true);
		cJSON_AddNumberToObject(o, "leaseMs", (double)lease_ms);
		cJSON_AddRawToObject(o, "progress", progress_json);
		return patch_json(opaque, job->id, o, NULL, err);
	}
	char *resp = NULL;
	int rc = request(opaque, "GET", job->id, "", &resp, err);
	if (rc != 0)
		return rc == DJOB_ENOTFOUND ? DJOB_ECONFLICT : rc;
	cJSON *doc = NULL;
	if (djob_json_parse(resp ? resp : "", resp ? strlen(resp) : 0, "The API's reply", &doc,
	                    NULL, NULL) != 0)
		rc = djob_set_error(err, DJOB_EHTTP, 1, "The API answered with invalid JSON");
	free(resp);
	if (rc != 0)
		return rc;
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(doc, "status");
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(doc, "workerId");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, "attempts");
	if (cJSON_IsString(st) && strcmp(st->valuestring, "cancelled") == 0)
		rc = djob_set_error(err, DJOB_ECONFLICT, 0, "The job was cancelled");
	else if (!cJSON_IsString(st) || strcmp(st->valuestring, "processing") != 0 ||
	         !cJSON_IsString(w) || !job->worker_id ||
	         strcmp(w->valuestring, job->worker_id) != 0 || !cJSON_IsNumber(a) ||
	         a->valueint != job->attempts)
		rc = djob_set_error(err, DJOB_ECONFLICT, 0,
		                    "The job's lease is held by another worker or attempt");
	cJSON_Delete(doc);
	return rc;
}

static void api_destroy(void *opaque)
{
	api_sink_t *s = opaque;
	if (!s)
		return;
	while (s->idle) {
		conn_t *c = s->idle;
		s->idle = c->next;
		conn_close(c);
	}
	if (s->tls_ready) {
		mbedtls_ssl_config_free(&s->tls);
		mbedtls_x509_crt_free(&s->ca);
		mbedtls_ctr_drbg_free(&s->drbg);
		mbedtls_entropy_free(&s->entropy);
	}
	pthread_mutex_destroy(&s->mu);
	djob_config_free(s->conf);
	if (s->auth) {
		explicit_bzero(s->auth, strlen(s->auth));
		free(s->auth);
	}
	free(s);
}

int djob_sink_api_new(djob_sink_t **out, const djob_config_t *conf, djob_error_t *err)
{
	*out = NULL;
	api_sink_t *s = calloc(1, sizeof *s);
	if (!s)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	pthread_mutex_init(&s->mu, NULL);
	int rc = djob_config_dup(&s->conf, conf, err);
	if (rc == 0)
		rc = parse_url(s, djob_config_get(conf, "api.url"), err);
	if (rc == 0 && s->ssl)
		rc = tls_setup(s, err);
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
	bool loopback = strcmp(s->host, "localhost") == 0 || (s->iplen == 4 && s->ip[0] == 127) ||
	                (s->iplen == 16 && strcmp(s->host, "::1") == 0);
	if (rc == 0 && !s->ssl && token && *token && !loopback)
		djob_logf(s->conf, DJOB_LOG_WARNING, "sink",
		          "api.url %s is not https://: the token crosses the network in clear text",
		          s->hosthdr);
	static const djob_sink_ops_t ops = {
		DJOB_SINK_OPS_VERSION, api_claim, api_extend, api_finish, api_destroy, api_sync};
	if (rc == 0)
		rc = djob_sink_new(out, &ops, s, err);
	if (rc != 0)
		api_destroy(s);
	return rc;
}
