/* confwatch: see confwatch.h. */
#include "confwatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

struct file_id {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct confwatch {
	uv_fs_event_t ev;
	uv_timer_t debounce;
	char *path;
	confwatch_cb cb;
	void *arg;
	struct file_id last;
	int open_handles;
};

static struct file_id file_id_of(const char *path)
{
	struct file_id id = {0};
	struct stat st;

	if (stat(path, &st) == 0) {
		id.exists = true;
		id.dev = st.st_dev;
		id.ino = st.st_ino;
		id.size = st.st_size;
		id.mtime = st.st_mtim;
		id.ctime = st.st_ctim;
	}
	return id;
}

static bool file_id_same(const struct file_id *a, const struct file_id *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
	       a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static void on_debounce(uv_timer_t *t)
{
	struct confwatch *w = t->data;
	struct file_id now = file_id_of(w->path);

	if (!now.exists || file_id_same(&now, &w->last))
		return;
	w->last = now;
	w->cb(w->arg);
}

static void on_event(uv_fs_event_t *ev, const char *filename, int events, int status)
{
	struct confwatch *w = ev->data;

	if (status < 0) {
		log_warn("server",
			 "reload_on_change: watch failed error=\"%s\"; reload with SIGHUP",
			 uv_strerror(status));
		return;
	}
	/* Whatever changed in the directory (an editor's temporary file, a
	 * ConfigMap's ..data link): look at the file once things settle. */
	uv_timer_start(&w->debounce, on_debounce, CONFWATCH_DEBOUNCE_MS, 0);
}

static void on_closed(uv_handle_t *h)
{
	struct confwatch *w = h->data;

	if (--w->open_handles == 0) {
		free(w->path);
		free(w);
	}
}

static void watch_stop(struct confwatch *w)
{
	uv_fs_event_stop(&w->ev);
	uv_timer_stop(&w->debounce);
	uv_close((uv_handle_t *)&w->ev, on_closed);
	uv_close((uv_handle_t *)&w->debounce, on_closed);
}

static int watch_start(uv_loop_t *loop, const char *path, confwatch_cb cb, void *arg,
		       struct confwatch **out)
{
	struct confwatch *w = calloc(1, sizeof *w);
	char *dir = NULL, *slash;
	int rc;

	if (!w || !(w->path = strdup(path)) || !(dir = strdup(path))) {
		rc = -ENOMEM;
		goto fail;
	}
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	w->cb = cb;
	w->arg = arg;
	w->last = file_id_of(path);
	if ((rc = uv_timer_init(loop, &w->debounce)) < 0)
		goto fail;
	if ((rc = uv_fs_event_init(loop, &w->ev)) < 0) {
		/* The timer is in the loop: `w` goes with its close callback. */
		w->debounce.data = w;
		w->open_handles = 1;
		uv_close((uv_handle_t *)&w->debounce, on_closed);
		free(dir);
		return rc;
	}
	w->ev.data = w->debounce.data = w;
	w->open_handles = 2;
	rc = uv_fs_event_start(&w->ev, on_event, dir, 0);
	if (rc < 0) {
		log_warn("server",
			 "reload_on_change: cannot watch dir=%s error=\"%s\"; reload with SIGHUP",
			 dir, uv_strerror(rc));
		watch_stop(w);
		free(dir);
		return rc;
	}
	log_info("server", "reload_on_change: watching path=%s", path);
	free(dir);
	*out = w;
	return 0;
fail:
	if (w)
		free(w->path);
	free(w);
	free(dir);
	return rc;
}

int confwatch_set(struct confwatch **w, uv_loop_t *loop, const char *path, bool wanted,
		  confwatch_cb cb, void *arg)
{
	if (!w)
		return -EINVAL;
	wanted = wanted && path && cb;
	if (*w && !wanted) {
		watch_stop(*w);
		*w = NULL;
	} else if (!*w && wanted) {
		return watch_start(loop, path, cb, arg, w);
	}
	return 0;
}
