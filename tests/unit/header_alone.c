/* Compiled once per public header (DJOB_HEADER) to prove that each one
 * stands on its own under -pedantic -Werror. */
#include DJOB_HEADER

#ifdef DJOB_PLUGIN_ABI
DJOB_PLUGIN_ABI;
#endif

int main(void)
{
	return 0;
}
