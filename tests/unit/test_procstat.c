/* Unit tests for proxy/procstat: /proc/self/stat parsing, and a live read. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "procstat.h"

/* proc(5) fields 1..24; the name holds a blank and a ')' of its own. */
static const char STAT[] = "4242 (sock pool) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 "
			   "250 50 0 0 20 0 1 0 12345 104857600 2560 18446744073709551615 "
			   "1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

static void test_procstat_parse_stat_fields(void **state)
{
	struct procstat ps = {0};

	(void)state;
	assert_int_equal(procstat_parse_stat(STAT, 100, 4096, 1700000000, &ps), 0);
	assert_true(ps.cpu_seconds > 2.999 && ps.cpu_seconds < 3.001); /* (250+50)/100 */
	assert_int_equal(ps.virtual_bytes, 104857600);
	assert_int_equal(ps.resident_bytes, 2560u * 4096u);
	assert_true(ps.start_time_seconds > 1700000123.449 &&
		    ps.start_time_seconds < 1700000123.451); /* 12345/100 after boot */
}

static void test_procstat_parse_stat_rejects_garbage(void **state)
{
	struct procstat ps;

	(void)state;
	assert_int_equal(procstat_parse_stat("", 100, 4096, 0, &ps), -EINVAL);
	assert_int_equal(procstat_parse_stat("1 (x) S 1 2 3", 100, 4096, 0, &ps), -EINVAL);
	assert_int_equal(procstat_parse_stat("1 (x) S 1 2 3 a b c", 100, 4096, 0, &ps), -EINVAL);
	assert_int_equal(procstat_parse_stat(NULL, 100, 4096, 0, &ps), -EINVAL);
	assert_int_equal(procstat_parse_stat(STAT, 0, 4096, 0, &ps), -EINVAL);
}

static void test_procstat_read_this_process(void **state)
{
	struct procstat ps;
	int fd = dup(0);

	(void)state;
	assert_int_equal(procstat_read(&ps), 0);
	assert_true(ps.open_fds >= 1);
	assert_true(ps.max_fds >= ps.open_fds);
	assert_true(ps.resident_bytes > 0);
	assert_true(ps.virtual_bytes >= ps.resident_bytes);
	assert_true(ps.start_time_seconds <= (double)time(NULL) + 1);
	assert_true(ps.start_time_seconds > (double)time(NULL) - 3600);
	uint64_t before = ps.open_fds;
	close(fd);
	assert_int_equal(procstat_read(&ps), 0);
	assert_int_equal(ps.open_fds, before - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_procstat_parse_stat_fields),
	    cmocka_unit_test(test_procstat_parse_stat_rejects_garbage),
	    cmocka_unit_test(test_procstat_read_this_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
