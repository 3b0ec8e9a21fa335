/*
 * The store's codec: job documents between BSON (what MongoDB keeps) and
 * JSON (what GET returns and Kafka carries), and the field getters the
 * plans read documents with.
 */
#include "store_private.h"

#include <math.h>
#include <string.h>

static cJSON *bson_to_cjson(const bson_t *doc, bool array, bool top);

static cJSON *value_to_cjson(const bson_iter_t *it)
{
	switch (bson_iter_type(it)) {
	case BSON_TYPE_UTF8:
		return cJSON_CreateString(bson_iter_utf8(it, NULL));
	case BSON_TYPE_INT32:
		return cJSON_CreateNumber(bson_iter_int32(it));
	case BSON_TYPE_INT64:
		return cJSON_CreateNumber((double)bson_iter_int64(it));
	case BSON_TYPE_DOUBLE:
		return cJSON_CreateNumber(bson_iter_double(it));
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
		if (bson_iter_type(it) == BSON_TYPE_DOCUMENT)
			bson_iter_document(it, &len, &data);
		else
			bson_iter_array(it, &len, &data);
		if (!bson_init_static(&sub, data, len))
			return cJSON_CreateNull();
		return bson_to_cjson(&sub, bson_iter_type(it) == BSON_TYPE_ARRAY, false);
	}
	default:
		return cJSON_CreateNull();
	}
}

/* Internal fields that are not part of the wire contract. */
static bool hidden_field(const char *key)
{
	return strcmp(key, "seq") == 0;
}

static cJSON *bson_to_cjson(const bson_t *doc, bool array, bool top)
{
	cJSON *out = array ? cJSON_CreateArray() : cJSON_CreateObject();
	bson_iter_t it;
	if (!out || !bson_iter_init(&it, doc))
		return out;
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		if (top && hidden_field(key))
			continue;
		cJSON *v = value_to_cjson(&it);
		if (array)
			cJSON_AddItemToArray(out, v);
		else
			cJSON_AddItemToObject(out, key, v);
	}
	return out;
}

cJSON *djob_doc_to_cjson(const bson_t *doc)
{
	return bson_to_cjson(doc, false, true);
}

char *djob_doc_to_json(const bson_t *doc)
{
	cJSON *j = djob_doc_to_cjson(doc);
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return s;
}

static bool append_children(bson_t *b, const cJSON *parent, bool array)
{
	char buf[16];
	uint32_t i = 0;
	for (const cJSON *c = parent->child; c; c = c->next, i++) {
		const char *k = c->string;
		if (array)
			bson_uint32_to_string(i, &k, buf, sizeof buf);
		if (!djob_bson_append_json(b, k, c))
			return false;
	}
	return true;
}

bool djob_bson_append_json(bson_t *b, const char *key, const cJSON *v)
{
	if (cJSON_IsString(v))
		return BSON_APPEND_UTF8(b, key, v->valuestring);
	if (cJSON_IsBool(v))
		return BSON_APPEND_BOOL(b, key, cJSON_IsTrue(v));
	if (cJSON_IsNull(v))
		return BSON_APPEND_NULL(b, key);
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d == floor(d) && fabs(d) < 9007199254740992.0) {
			if (d >= INT32_MIN && d <= INT32_MAX)
				return BSON_APPEND_INT32(b, key, (int32_t)d);
			return BSON_APPEND_INT64(b, key, (int64_t)d);
		}
		return BSON_APPEND_DOUBLE(b, key, d);
	}
	if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
		bson_t child;
		bool array = cJSON_IsArray(v);
		if (!(array ? bson_append_array_begin(b, key, -1, &child)
		            : bson_append_document_begin(b, key, -1, &child)))
			return false;
		bool ok = append_children(&child, v, array);
		return (array ? bson_append_array_end(b, &child)
		              : bson_append_document_end(b, &child)) &&
		       ok;
	}
	return false;
}

int64_t djob_doc_int(const bson_t *doc, const char *key, int64_t dflt)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
		return bson_iter_as_int64(&it);
	return dflt;
}

const char *djob_doc_str(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return "";
}

int64_t djob_doc_date(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DATE_TIME(&it))
		return bson_iter_date_time(&it);
	return 0;
}

djob_state_t djob_doc_state(const bson_t *doc)
{
	return djob_state_parse(djob_doc_str(doc, "status"));
}
