/* Job id and type validation. */
#include "check.h"
#include "djob_private.h"

static void test_canonical_uuids_are_valid_ids(void)
{
	CHECK(djob_id_is_valid("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f"));
	CHECK(djob_id_is_valid("3F2B8C1E-9D4A-4B7E-8C2F-1A2B3C4D5E6F"));
	CHECK(djob_id_is_valid("00000000-0000-0000-0000-000000000000"));
}

static void test_malformed_ids_are_rejected(void)
{
	CHECK(!djob_id_is_valid(NULL));
	CHECK(!djob_id_is_valid(""));
	/* one short, one long */
	CHECK(!djob_id_is_valid("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6"));
	CHECK(!djob_id_is_valid("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f0"));
	/* not hex */
	CHECK(!djob_id_is_valid("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6g"));
	/* hyphens misplaced or missing */
	CHECK(!djob_id_is_valid("3f2b8c1e9-d4a-4b7e-8c2f-1a2b3c4d5e6f"));
	CHECK(!djob_id_is_valid("3f2b8c1e09d4a04b7e08c2f01a2b3c4d5e6f"));
	CHECK(!djob_id_is_valid("3f2b8c1e9d4a4b7e8c2f1a2b3c4d5e6f"));
	/* braces, spaces, an ObjectId */
	CHECK(!djob_id_is_valid("{3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f}"));
	CHECK(!djob_id_is_valid(" 3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f"));
	CHECK(!djob_id_is_valid("507f1f77bcf86cd799439011"));
	CHECK(!djob_id_is_valid("../../../../etc/passwd-aaaaaaaaaaaaa"));
}

static void test_type_names_of_word_characters_are_valid(void)
{
	char max[65];

	CHECK(djob_type_is_valid("compute"));
	CHECK(djob_type_is_valid("file"));
	CHECK(djob_type_is_valid("my-Type_2"));
	CHECK(djob_type_is_valid("a"));
	memset(max, 'x', 64);
	max[64] = '\0';
	CHECK(djob_type_is_valid(max));
}

static void test_bad_type_names_are_rejected(void)
{
	char over[66];

	CHECK(!djob_type_is_valid(NULL));
	CHECK(!djob_type_is_valid(""));
	CHECK(!djob_type_is_valid("a.b"));
	CHECK(!djob_type_is_valid("a b"));
	CHECK(!djob_type_is_valid("a/b"));
	CHECK(!djob_type_is_valid("$where"));
	CHECK(!djob_type_is_valid("caf\xc3\xa9"));
	memset(over, 'x', 65);
	over[65] = '\0';
	CHECK(!djob_type_is_valid(over));
}

int main(void)
{
	RUN(test_canonical_uuids_are_valid_ids);
	RUN(test_malformed_ids_are_rejected);
	RUN(test_type_names_of_word_characters_are_valid);
	RUN(test_bad_type_names_are_rejected);
	return check_report("unit_job_ids");
}
