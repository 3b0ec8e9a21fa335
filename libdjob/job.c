/* placeholder */ typedef int djob_placeholder_t;
