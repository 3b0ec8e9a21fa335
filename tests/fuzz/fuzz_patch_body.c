/*
 * Fuzz target: a PATCH /jobs/:id body through djob_patch_parse. What is
 * accepted must be what djob keeps: a result passes libbson's checks and
 * reads back, rendered, as the same text.
 */
#include "fuzz.h"
#include "json.h"
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = malloc(size ? size : 1);
	FUZZ_ASSERT(body);
	memcpy(body, data, size);
	djob_patch_t *p = NULL;
	djob_error_t err;
	int rc = djob_patch_parse(&p, body, size, &err);
	if (rc == 0) {
		FUZZ_ASSERT(p);
		FUZZ_ASSERT(p->to == DJOB_STATE_PROCESSING || p->to == DJOB_STATE_COMPLETED ||
		            p->to == DJOB_STATE_FAILED);
		if (p->result) {
			FUZZ_ASSERT(djob_json_check_doc(p->result, "result", NULL) == 0);
			char *text = djob_json_print(p->result);
			FUZZ_ASSERT(text);
			bson_t *again = NULL;
			FUZZ_ASSERT(djob_json_parse(text, strlen(text), "Result", NULL, &again,
			                            NULL) == 0);
			char *text2 = djob_json_print(again);
			FUZZ_ASSERT(text2 && strcmp(text, text2) == 0);
			free(text);
			free(text2);
			bson_destroy(again);
		}
	} else {
		FUZZ_ASSERT(p == NULL);
		FUZZ_ASSERT(rc == DJOB_EINVAL || rc == DJOB_ETOOBIG);
		for (const char *c = err.message; *c; c++)
			FUZZ_ASSERT((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
	}
	djob_patch_free(p);
	free(body);
	return 0;
}
