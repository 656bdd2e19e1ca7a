/* confwatch: reload_on_change, a watch on the configuration file.
 *
 * Watches the file's directory (uv_fs_event), so an editor's write to a
 * temporary file renamed into place is seen as well as a write in place or
 * a swapped symlink (a Kubernetes ConfigMap). Events are debounced
 * (CONFWATCH_DEBOUNCE_MS after the last one); then the file is stat()ed and
 * `cb` is called when its identity, size, mtime or ctime changed since the
 * last call (or the start). A file that is gone (mid-rename) waits for the
 * next event. Loop thread only.
 */
#ifndef SOCKPOOL_CONFWATCH_H
#define SOCKPOOL_CONFWATCH_H

#include <stdbool.h>
#include <uv.h>

#define CONFWATCH_DEBOUNCE_MS 150

struct confwatch;
typedef void (*confwatch_cb)(void *arg);

/* Make *w run exactly when `wanted` (and path is not NULL): start it,
 * leave it running, or stop it (freed in its close callbacks, *w = NULL).
 * `path` is copied. @return 0, or -errno when it cannot start (logged;
 * *w stays NULL, SIGHUP still works). */
int confwatch_set(struct confwatch **w, uv_loop_t *loop, const char *path, bool wanted,
		  confwatch_cb cb, void *arg);

#endif
