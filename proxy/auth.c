/* placeholder */
typedef int sockpool_placeholder;
