/* emfile: notice when accept() runs out of file descriptors.
 *
 * libuv 1.44 answers EMFILE/ENFILE on a listener with its "EMFILE trick"
 * (uv__emfile_trick in src/unix/stream.c): it closes a descriptor it keeps
 * in reserve (loop->emfile_fd, opened on /dev/null), accepts and closes
 * every pending connection, reopens the reserve on "/" and returns without
 * calling the connection callback. The listener keeps working once
 * descriptors are free again, but nothing is told about the dropped
 * connections. This watch looks at the reserve ten times a second (one
 * fstat()): when it is no longer our /dev/null, the trick ran, which is
 * counted (once per look, however many connections it dropped) and logged
 * through proxy_accept_failed(), rate-limited; then the reserve is put back
 * (close-on-exec, as libuv keeps it) so the next time is seen too.
 *
 * When the reserve could not be reopened libuv calls the connection
 * callback with UV_EMFILE in a loop that only ends when a descriptor is
 * free; emfile_accept_error() hands libuv a reserve of ours to end it.
 * Several loops at the limit at once take each other's freed descriptors,
 * so that reserve too can be lost: then the caller closes the listener for
 * a while (server.c), which ends libuv's loop.
 * Relies on libuv's unix loop layout (emfile_fd in uv_loop_t). Loop thread.
 */
#ifndef SOCKPOOL_EMFILE_H
#define SOCKPOOL_EMFILE_H

#include "proxy.h"

/* Start watching px->loop; px->emfile is set. @return 0 or -errno (then
 * exhaustion is only seen when libuv reports it). */
int emfile_watch_start(struct proxy *px);

/* Close the watch (freed in its close callback); px->emfile = NULL. */
void emfile_watch_stop(struct proxy *px);

/* The connection callback got UV_EMFILE/UV_ENFILE: give libuv a reserve
 * when it has none, so its accept loop can drain and return.
 * @return 0 when libuv got our reserve and tries its trick once more, or
 *         -EMFILE when that cannot help: libuv had a reserve and its trick
 *         still found no descriptor, or ours went to an earlier call and the
 *         timer has not replaced it yet. Then libuv calls back again at
 *         once: the listener must stop being polled or the loop spins. */
int emfile_accept_error(struct proxy *px);

#endif
