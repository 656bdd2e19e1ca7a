/* libFuzzer target: the configuration loader on arbitrary text. It must
 * return 0 or an error with a message, never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONF_ERR_MAX];
	struct conf *conf = NULL;
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	err[0] = '\0';
	if (conf_load_string(text, "fuzz", &conf, err, sizeof(err)) == 0)
		conf_free(conf);
	else if (memchr(err, '\0', sizeof(err)) == NULL)
		abort(); /* the error message must be a terminated string */
	free(text);
	return 0;
}
