/* Compiled once per public header (DJOB_HEADER) to prove that each one
 * stands on its own under -pedantic -Werror. */
#include DJOB_HEADER

int main(void)
{
	return 0;
}
