/*
 * Outside JSON in and out (json.h): a non-recursive pre-scan, cJSON for the
 * grammar, libbson for the values and the key checks, and the renderer that
 * keeps integers and doubles exact.
 */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 8259's number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?. cJSON
 * and libbson read other spellings differently (cJSON reads -012 as -12,
 * libbson as -0), so a payload could change on its way to MongoDB. */
static bool json_number(const char *t, size_t n)
{
	size_t i = t[0] == '-';
	size_t int_start = i;
	while (i < n && t[i] >= '0' && t[i] <= '9')
		i++;
	if (i == int_start || (t[int_start] == '0' && i - int_start > 1))
		return false;
	if (i < n && t[i] == '.') {
		size_t f = ++i;
		while (i < n && t[i] >= '0' && t[i] <= '9')
			i++;
		if (i == f)
			return false;
	}
	if (i < n && (t[i] == 'e' || t[i] == 'E')) {
		i++;
		if (i < n && (t[i] == '+' || t[i] == '-'))
			i++;
		size_t e = i;
		while (i < n && t[i] >= '0' && t[i] <= '9')
			i++;
		if (i == e)
			return false;
	}
	return i == n;
}

/* Check one number token: JSON's grammar, an integer must fit int64, any
 * other number must fit a double (neither overflow nor underflow to zero). */
static int check_number(const char *tok, size_t n, const char *what, djob_error_t *err)
{
	if (!json_number(tok, n))
		return djob_set_error(err, DJOB_EINVAL, 0, "%s holds %.*s%s, which is not a JSON number",
		                      what, (int)(n > 40 ? 40 : n), tok, n > 40 ? "..." : "");
	bool integer = true;
	for (size_t i = 0; i < n; i++) /* tok is not NUL-terminated */
		integer = integer && tok[i] != '.' && tok[i] != 'e' && tok[i] != 'E';
	size_t digits = n - (tok[0] == '-');
	char small[64];
	char *buf = n < sizeof small ? small : malloc(n + 1);
	int rc = 0;
	if (!buf)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	memcpy(buf, tok, n);
	buf[n] = '\0';
	errno = 0;
	if (integer) {
		/* Beyond 19 digits no leading-zero-free integer fits. */
		if (digits <= 19)
			(void)strtoll(buf, NULL, 10);
		if (digits > 19 || errno == ERANGE)
			rc = djob_set_error(
				err, DJOB_EINVAL, 0,
				"%s holds the integer %.40s%s, outside the 64-bit range", what, buf,
				n > 40 ? "..." : "");
	} else {
		double d = strtod(buf, NULL);
		if (isinf(d) || (errno == ERANGE && d == 0))
			rc = djob_set_error(
				err, DJOB_EINVAL, 0,
				"%s holds the number %.40s%s, outside the range of a double", what,
				buf, n > 40 ? "..." : "");
	}
	if (buf != small)
		free(buf);
	return rc;
}

/* The pre-scan: nesting depth and numbers, in one pass without recursion,
 * so that no parser recurses on text it would overflow a thread's stack on.
 * Strings are skipped as cJSON reads them. Grammar is left to cJSON. */
static int prescan(const char *s, size_t n, const char *what, djob_error_t *err)
{
	int depth = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '"') {
			for (i++; i < n && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
		} else if (c == '[' || c == '{') {
			if (++depth > DJOB_JSON_MAX_DEPTH)
				return djob_set_error(err, DJOB_EINVAL, 0,
				                      "%s nests deeper than %d levels", what,
				                      DJOB_JSON_MAX_DEPTH);
		} else if (c == ']' || c == '}') {
			depth--;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t j = i;
			while (j < n && s[j] != '\0' && strchr("0123456789+-.eE", s[j]))
				j++;
			int rc = check_number(s + i, j - i, what, err);
			if (rc != 0)
				return rc;
			i = j - 1;
		}
	}
	return 0;
}

/* Refuse $-prefixed keys at any depth (the pre-scan bounded the depth). */
static int no_dollar_keys(const cJSON *node, const char *what, djob_error_t *err)
{
	for (const cJSON *c = node->child; c; c = c->next) {
		if (cJSON_IsObject(node) && c->string && c->string[0] == '$')
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "%s has a key %.60s starting with '$'", what,
			                      c->string);
		int rc = no_dollar_keys(c, what, err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Messages quote the input (keys, libbson's parse errors): keep them
 * printable ASCII so that an error reply is valid JSON text. */
static int printable(djob_error_t *err, int rc)
{
	for (char *p = err && rc != 0 ? err->message : NULL; p && *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return rc;
}

static int parse(const char *text, size_t len, const char *what, cJSON **tree_out,
                 bson_t **bson_out, djob_error_t *err);

int djob_json_parse(const char *text, size_t len, const char *what, cJSON **tree_out,
                    bson_t **bson_out, djob_error_t *err)
{
	return printable(err, parse(text, len, what, tree_out, bson_out, err));
}

static int parse(const char *text, size_t len, const char *what, cJSON **tree_out,
                 bson_t **bson_out, djob_error_t *err)
{
	if (tree_out)
		*tree_out = NULL;
	if (bson_out)
		*bson_out = NULL;
	if (!text || len == 0)
		return djob_set_error(err, DJOB_EINVAL, 0, "%s is empty", what);
	int rc = prescan(text, len, what, err);
	if (rc != 0)
		return rc;
	const char *end = NULL;
	cJSON *tree = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (tree && end)
		while ((size_t)(end - text) < len && *end && strchr(" \t\r\n", *end))
			end++;
	if (!tree || (size_t)(end - text) != len) {
		cJSON_Delete(tree);
		return djob_set_error(err, DJOB_EINVAL, 0, "%s is not valid JSON", what);
	}
	if (!cJSON_IsObject(tree) && !cJSON_IsArray(tree))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "%s is not a JSON object or array", what);
	if (rc == 0)
		rc = no_dollar_keys(tree, what, err);
	bson_t *b = NULL;
	if (rc == 0 && bson_out) {
		bson_error_t e;
		b = bson_new_from_json((const uint8_t *)text, (ssize_t)len, &e);
		if (!b)
			rc = djob_set_error(err, DJOB_EINVAL, 0, "%s cannot be read: %s", what,
			                    e.message);
	}
	if (rc != 0) {
		cJSON_Delete(tree);
		return rc;
	}
	if (tree_out)
		*tree_out = tree;
	else
		cJSON_Delete(tree);
	if (bson_out)
		*bson_out = b;
	return 0;
}

int djob_json_check_doc(const bson_t *doc, const char *what, djob_error_t *err)
{
	bson_error_t e;
	if (doc->len > DJOB_JSON_MAX_DOC)
		return djob_set_error(err, DJOB_ETOOBIG, 0, "The %s is over %d bytes as BSON", what,
		                      DJOB_JSON_MAX_DOC);
	if (!bson_validate_with_error(doc,
	                              BSON_VALIDATE_UTF8 | BSON_VALIDATE_DOLLAR_KEYS |
	                                      BSON_VALIDATE_DOT_KEYS | BSON_VALIDATE_EMPTY_KEYS,
	                              &e))
		return printable(err, djob_set_error(err, DJOB_EINVAL, 0, "The %s is refused: %s",
		                                     what, e.message));
	return 0;
}

cJSON *djob_json_int64(int64_t v)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%" PRId64, v);
	return cJSON_CreateRaw(buf);
}

cJSON *djob_json_double(double v)
{
	char buf[40];
	if (!isfinite(v))
		return cJSON_CreateNull();
	/* The fewest digits that read back as v. */
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, sizeof buf - 2, "%.*g", p, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	/* Read back as a double, not as an integer. */
	if (!strpbrk(buf, ".eE"))
		strcat(buf, ".0");
	return cJSON_CreateRaw(buf);
}

cJSON *djob_json_from_value(const bson_iter_t *it)
{
	switch (bson_iter_type(it)) {
	case BSON_TYPE_UTF8:
		return cJSON_CreateString(bson_iter_utf8(it, NULL));
	case BSON_TYPE_INT32:
		return djob_json_int64(bson_iter_int32(it));
	case BSON_TYPE_INT64:
		return djob_json_int64(bson_iter_int64(it));
	case BSON_TYPE_DOUBLE:
		return djob_json_double(bson_iter_double(it));
	case BSON_TYPE_BOOL:
		return cJSON_CreateBool(bson_iter_bool(it));
	case BSON_TYPE_DATE_TIME: {
		char iso[32];
		djob_format_iso(bson_iter_date_time(it), iso);
		return cJSON_CreateString(iso);
	}
	case BSON_TYPE_OID: {
		char hex[25];
		bson_oid_to_string(bson_iter_oid(it), hex);
		return cJSON_CreateString(hex);
	}
	case BSON_TYPE_DOCUMENT:
	case BSON_TYPE_ARRAY: {
		const uint8_t *data;
		uint32_t len;
		bson_t sub;
		bool array = bson_iter_type(it) == BSON_TYPE_ARRAY;
		if (array)
			bson_iter_array(it, &len, &data);
		else
			bson_iter_document(it, &len, &data);
		if (!bson_init_static(&sub, data, len))
			return cJSON_CreateNull();
		return djob_json_from_bson(&sub, array);
	}
	default:
		return cJSON_CreateNull();
	}
}

cJSON *djob_json_from_bson(const bson_t *doc, bool array)
{
	cJSON *out = array ? cJSON_CreateArray() : cJSON_CreateObject();
	bson_iter_t it;
	if (!out || !bson_iter_init(&it, doc))
		return out;
	while (bson_iter_next(&it)) {
		cJSON *v = djob_json_from_value(&it);
		if (array)
			cJSON_AddItemToArray(out, v);
		else
			cJSON_AddItemToObject(out, bson_iter_key(&it), v);
	}
	return out;
}

char *djob_json_print(const bson_t *doc)
{
	cJSON *j = djob_json_from_bson(doc, false);
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	return s;
}
