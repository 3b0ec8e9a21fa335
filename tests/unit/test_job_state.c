/* Job state names and the state machine of DESIGN.md §3. */
#include "check.h"
#include "djob_private.h"

enum {
	Q,
	S,
	P,
	C,
	F,
	X,
	R, /* quarantined */
	N
};

/* expected[from][to], written out independently of job.c. */
static const int expected[N][N] = {
	[Q] = {[P] = 1, [X] = 1},
	[S] = {[Q] = 1, [X] = 1},
	[P] = {[Q] = 1, [S] = 1, [P] = 1, [C] = 1, [F] = 1, [X] = 1, [R] = 1},
	[C] = {0},
	[F] = {[Q] = 1},
	[X] = {[Q] = 1},
	[R] = {[Q] = 1, [X] = 1}, /* an admin's retry or cancel */
};

static void test_every_transition_matches_the_table(void)
{
	for (int from = 0; from < N; from++) {
		for (int to = 0; to < N; to++) {
			int got = djob_state_can_transition((djob_state_t)from, (djob_state_t)to);
			if ((got != 0) != expected[from][to])
				fprintf(stderr, "transition %s -> %s\n",
				        djob_state_name((djob_state_t)from),
				        djob_state_name((djob_state_t)to));
			CHECK((got != 0) == expected[from][to]);
		}
	}
}

static void test_invalid_states_never_transition(void)
{
	CHECK(!djob_state_can_transition(DJOB_STATE_INVALID, DJOB_STATE_QUEUED));
	CHECK(!djob_state_can_transition(DJOB_STATE_QUEUED, DJOB_STATE_INVALID));
	CHECK(!djob_state_can_transition((djob_state_t)7, DJOB_STATE_QUEUED));
	CHECK(!djob_state_can_transition(DJOB_STATE_PROCESSING, (djob_state_t)99));
}

static void test_terminal_states_are_completed_failed_cancelled(void)
{
	CHECK(!djob_state_is_terminal(DJOB_STATE_QUEUED));
	CHECK(!djob_state_is_terminal(DJOB_STATE_SCHEDULED));
	CHECK(!djob_state_is_terminal(DJOB_STATE_PROCESSING));
	CHECK(djob_state_is_terminal(DJOB_STATE_COMPLETED));
	CHECK(djob_state_is_terminal(DJOB_STATE_FAILED));
	CHECK(djob_state_is_terminal(DJOB_STATE_CANCELLED));
	/* It waits for an admin, who may retry it. */
	CHECK(!djob_state_is_terminal(DJOB_STATE_QUARANTINED));
	CHECK(!djob_state_is_terminal(DJOB_STATE_INVALID));
}

static void test_state_names_round_trip(void)
{
	static const char *names[] = {"queued", "scheduled", "processing", "completed",
	                              "failed", "cancelled", "quarantined"};
	for (int i = 0; i < N; i++) {
		CHECK_STR(djob_state_name((djob_state_t)i), names[i]);
		CHECK_INT(djob_state_parse(names[i]), i);
	}
	CHECK(djob_state_name(DJOB_STATE_INVALID) == NULL);
	CHECK(djob_state_name((djob_state_t)7) == NULL);
	CHECK_INT(djob_state_parse("Queued"), DJOB_STATE_INVALID);
	CHECK_INT(djob_state_parse("done"), DJOB_STATE_INVALID);
	CHECK_INT(djob_state_parse(""), DJOB_STATE_INVALID);
	CHECK_INT(djob_state_parse(NULL), DJOB_STATE_INVALID);
}

int main(void)
{
	RUN(test_every_transition_matches_the_table);
	RUN(test_invalid_states_never_transition);
	RUN(test_terminal_states_are_completed_failed_cancelled);
	RUN(test_state_names_round_trip);
	return check_report("unit_job_state");
}
