/* emfile: see emfile.h. */
#include "emfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "throttle.h"

/* How often the reserve is looked at: a trick is reported within this. */
#define EMFILE_CHECK_MS 100

struct emfile_watch {
	struct proxy *px;
	uv_timer_t timer;
	int spare;	     /* our /dev/null, dup2()ed over libuv's reserve */
	uint32_t null_major; /* identity of /dev/null */
	uint32_t null_minor;
	uint64_t null_ino;
	bool gave_spare; /* libuv got `spare` itself (emfile_accept_error) */
};

/* libuv's reserve is looked at with statx() and replaced with a raw dup3,
 * neither of which ThreadSanitizer intercepts: libuv opens and closes
 * descriptors in ways it does not see, so its record of the reserve's
 * number may still be a socket another worker had under it, and fstat()
 * or dup3() there would be reported as a race on that socket. */
static bool is_null(const struct emfile_watch *w, int fd)
{
	struct statx stx;

	return fd >= 0 && statx(fd, "", AT_EMPTY_PATH, STATX_INO, &stx) == 0 &&
	       stx.stx_dev_major == w->null_major && stx.stx_dev_minor == w->null_minor &&
	       stx.stx_ino == w->null_ino;
}

static void reserve_replace(const struct emfile_watch *w, int fd)
{
	syscall(SYS_dup3, w->spare, fd, O_CLOEXEC);
}

static void on_timer(uv_timer_t *t)
{
	struct emfile_watch *w = container_of(t, struct emfile_watch, timer);
	uv_loop_t *loop = w->px->loop;

	if (w->gave_spare) {
		/* libuv used our reserve; get a new one when we can. */
		w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
		w->gave_spare = w->spare < 0;
		return;
	}
	if (loop->emfile_fd < 0 || is_null(w, loop->emfile_fd))
		return;
	/* The reserve is no longer /dev/null: the trick ran since the last look. */
	proxy_accept_failed(w->px, NULL, UV_EMFILE);
	if (w->spare >= 0)
		reserve_replace(w, loop->emfile_fd);
}

int emfile_watch_start(struct proxy *px)
{
	struct emfile_watch *w = calloc(1, sizeof *w);
	struct stat st;
	int rc;

	if (!w)
		return -ENOMEM;
	w->px = px;
	w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (w->spare < 0 || fstat(w->spare, &st) < 0) {
		rc = -errno;
		if (w->spare >= 0)
			close(w->spare);
		free(w);
		return rc;
	}
	w->null_major = major(st.st_dev);
	w->null_minor = minor(st.st_dev);
	w->null_ino = st.st_ino;
	/* Should libuv's reserve be something else ("/" when it found no
	 * /dev/null), make it ours so that only a change means the trick. */
	if (px->loop->emfile_fd >= 0 && !is_null(w, px->loop->emfile_fd))
		reserve_replace(w, px->loop->emfile_fd);
	/* A timer rather than a check handle: an fstat() on every loop
	 * iteration costs a busy proxy more than ten a second. */
	if ((rc = uv_timer_init(px->loop, &w->timer)) < 0) {
		close(w->spare);
		free(w);
		return rc;
	}
	uv_timer_start(&w->timer, on_timer, EMFILE_CHECK_MS, EMFILE_CHECK_MS);
	uv_unref((uv_handle_t *)&w->timer);
	px->emfile = w;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct emfile_watch *w = container_of((uv_timer_t *)h, struct emfile_watch, timer);

	if (w->spare >= 0 && !w->gave_spare)
		close(w->spare);
	free(w);
}

void emfile_watch_stop(struct proxy *px)
{
	struct emfile_watch *w = px->emfile;

	if (!w)
		return;
	px->emfile = NULL;
	uv_close((uv_handle_t *)&w->timer, on_closed);
}

int emfile_accept_error(struct proxy *px)
{
	struct emfile_watch *w = px->emfile;

	/* With a reserve of its own the trick ran and still found no
	 * descriptor: another one changes nothing. */
	if (!w || w->gave_spare || w->spare < 0 || px->loop->emfile_fd >= 0)
		return -EMFILE;
	px->loop->emfile_fd = w->spare;
	w->gave_spare = true;
	w->spare = -1;
	return 0;
}
