// Compiled once per public header (DJOB_HEADER) as C++17, to prove that
// each one stands on its own in a C++ program under -pedantic -Werror.
#include DJOB_HEADER

#ifdef DJOB_PLUGIN_ABI
DJOB_PLUGIN_ABI;
#endif

int main()
{
	return 0;
}
