/* Payload validation (json.c): '$' keys, dotted keys, at any depth, and
 * nesting. */
#include "check.h"
#include "json.h"

#include <stdlib.h>

/* Validate JSON text as a payload is: parsed by json.c, an object, its
 * keys checked. Returns the code and leaves the message in err. */
static int validate(const char *json, djob_error_t *err)
{
	cJSON *tree = NULL;
	bson_t *doc = NULL;
	int rc = djob_json_parse(json, json ? strlen(json) : 0, "payload", &tree, &doc, err);
	if (rc == 0 && !cJSON_IsObject(tree))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "Payload is not a JSON object");
	if (rc == 0)
		rc = djob_json_check_doc(doc, "payload", err);
	cJSON_Delete(tree);
	if (doc)
		bson_destroy(doc);
	return rc;
}

/* An object nested `levels` deep: {"a":{"a":...{}}} has levels objects. */
static char *nested_objects(int levels)
{
	size_t len = (size_t)levels * 6 + 1;
	char *s = malloc(len);
	char *p = s;

	for (int i = 0; i < levels - 1; i++) {
		memcpy(p, "{\"a\":", 5);
		p += 5;
	}
	*p++ = '{';
	for (int i = 0; i < levels; i++)
		*p++ = '}';
	*p = '\0';
	return s;
}

static void test_plain_payloads_are_accepted(void)
{
	djob_error_t err;

	CHECK_INT(validate("{}", &err), 0);
	CHECK_INT(validate("{\"input\":\"hello\"}", &err), 0);
	CHECK_INT(validate("{\"a\":[1,{\"b\":null},[true,\"x.y\"]],\"c\":{\"d\":1.5}}", &err), 0);
	/* '$' and '.' inside values and not at a key's start are fine */
	CHECK_INT(validate("{\"price$\":\"$1.00\",\"a$b\":\"$set\"}", &err), 0);
}

static void test_non_objects_are_rejected(void)
{
	djob_error_t err;

	CHECK_INT(validate("[]", &err), DJOB_EINVAL);
	CHECK_INT(validate("\"text\"", &err), DJOB_EINVAL);
	CHECK_INT(validate("42", &err), DJOB_EINVAL);
	CHECK_INT(validate("null", &err), DJOB_EINVAL);
	CHECK_INT(validate(NULL, &err), DJOB_EINVAL);
}

static void test_dollar_keys_are_rejected_naming_the_key(void)
{
	djob_error_t err;

	CHECK_INT(validate("{\"$where\":\"1\"}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "$where") != NULL);
	CHECK_INT(validate("{\"a\":{\"b\":{\"$gt\":1}}}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "$gt") != NULL);
}

static void test_dotted_keys_are_rejected_naming_the_key(void)
{
	djob_error_t err;

	CHECK_INT(validate("{\"a.b\":1}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "a.b") != NULL);
	CHECK_INT(validate("{\"x\":{\"y\":{\"z.\":1}}}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "z.") != NULL);
}

static void test_bad_keys_inside_arrays_are_rejected(void)
{
	djob_error_t err;

	CHECK_INT(validate("{\"list\":[1,2,{\"$set\":1}]}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "$set") != NULL);
	CHECK_INT(validate("{\"list\":[[[{\"ok\":[{\"no.pe\":0}]}]]]}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "no.pe") != NULL);
}

static void test_empty_keys_and_text_that_is_not_utf8_are_rejected(void)
{
	djob_error_t err;

	CHECK_INT(validate("{\"\":1}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "empty key") != NULL);
	CHECK_INT(validate("{\"a\":[{\"\":1}]}", &err), DJOB_EINVAL);
	CHECK_INT(validate("{\"input\":\"\xff\xfe\"}", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "UTF8") != NULL);
	CHECK_INT(validate("{\"list\":[\"ok\",\"\xc3\"]}", &err), DJOB_EINVAL);
	CHECK_INT(validate("{\"k\xe9y\":1}", &err), DJOB_EINVAL);
	/* UTF-8 that is well formed, escaped or not, is fine */
	CHECK_INT(validate("{\"caf\xc3\xa9\":\"\\u00e9\xe2\x82\xac\"}", &err), 0);
}

static void test_nesting_is_limited_to_32_levels(void)
{
	djob_error_t err;
	char *ok = nested_objects(32);
	char *deep = nested_objects(33);

	CHECK_INT(validate(ok, &err), 0);
	CHECK_INT(validate(deep, &err), DJOB_EINVAL);
	free(ok);
	free(deep);

	/* arrays count as levels too: object + 31 arrays = 32, + 32 arrays = 33 */
	char buf[128];
	strcpy(buf, "{\"a\":");
	for (int i = 0; i < 31; i++)
		strcat(buf, "[");
	for (int i = 0; i < 31; i++)
		strcat(buf, "]");
	strcat(buf, "}");
	CHECK_INT(validate(buf, &err), 0);
	strcpy(buf, "{\"a\":");
	for (int i = 0; i < 32; i++)
		strcat(buf, "[");
	for (int i = 0; i < 32; i++)
		strcat(buf, "]");
	strcat(buf, "}");
	CHECK_INT(validate(buf, &err), DJOB_EINVAL);
}

int main(void)
{
	RUN(test_plain_payloads_are_accepted);
	RUN(test_non_objects_are_rejected);
	RUN(test_dollar_keys_are_rejected_naming_the_key);
	RUN(test_dotted_keys_are_rejected_naming_the_key);
	RUN(test_bad_keys_inside_arrays_are_rejected);
	RUN(test_empty_keys_and_text_that_is_not_utf8_are_rejected);
	RUN(test_nesting_is_limited_to_32_levels);
	return check_report("unit_payload");
}
