/* conf: can a given user read the configuration file? (--check warnings) */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* The permission bits (of r=4, x=1) that apply to the user for `st`. */
static unsigned class_bits(const struct stat *st, const struct conf__cred *cred)
{
	if (st->st_uid == cred->uid)
		return (st->st_mode >> 6) & 7;
	if (st->st_gid == cred->gid)
		return (st->st_mode >> 3) & 7;
	for (size_t i = 0; i < cred->n_groups; i++)
		if (st->st_gid == cred->groups[i])
			return (st->st_mode >> 3) & 7;
	return st->st_mode & 7;
}

int conf__may_read(const char *path, const struct conf__cred *cred, char *blocker, size_t len)
{
	char *abs, *slash;
	struct stat st;
	int rc = 1;

	if (!path || !cred || !blocker || !len)
		return -EINVAL;
	blocker[0] = '\0';
	if (cred->uid == 0)
		return 1; /* root reads through any mode */
	abs = realpath(path, NULL);
	if (!abs)
		return -errno;
	/* Every directory on the way needs search (x), the file read (r). */
	for (slash = abs; rc == 1 && (slash = strchr(slash, '/')) != NULL; slash++) {
		/* The directory up to this slash: "/" itself, then "/a", "/a/b"... */
		size_t cut = slash == abs ? 1 : (size_t)(slash - abs);
		char save = abs[cut];
		abs[cut] = '\0';
		if (stat(abs, &st) < 0)
			rc = -errno;
		else if (!(class_bits(&st, cred) & 1))
			rc = 0;
		if (rc == 0)
			snprintf(blocker, len, "%s", abs);
		abs[cut] = save;
	}
	if (rc == 1) {
		if (stat(abs, &st) < 0)
			rc = -errno;
		else if (!(class_bits(&st, cred) & 4)) {
			rc = 0;
			snprintf(blocker, len, "%s", abs);
		}
	}
	free(abs);
	return rc;
}
