/*
 * Logging: the level filter and the default JSON-lines callback.
 */
#include "djob_private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DJOB_LOG_LINE_MAX 1024

const char *djob_log_level_name(djob_log_level_t level)
{
	switch (level) {
	case DJOB_LOG_ERROR:
		return "error";
	case DJOB_LOG_WARNING:
		return "warning";
	case DJOB_LOG_INFO:
		return "info";
	case DJOB_LOG_DEBUG:
		return "debug";
	}
	return "unknown";
}

void djob_log_json_stderr(djob_log_level_t level, const char *component, const char *message,
                          void *opaque)
{
	char ts[32];
	cJSON *obj;
	char *text;
	size_t len;
	char *line;

	(void)opaque;
	djob_format_iso(djob_now_ms(), ts);
	obj = cJSON_CreateObject();
	if (obj == NULL || cJSON_AddStringToObject(obj, "ts", ts) == NULL ||
	    cJSON_AddStringToObject(obj, "level", djob_log_level_name(level)) == NULL ||
	    cJSON_AddStringToObject(obj, "component", component ? component : "djob") == NULL ||
	    cJSON_AddStringToObject(obj, "msg", message ? message : "") == NULL) {
		cJSON_Delete(obj);
		fputs("{\"level\":\"error\",\"component\":\"log\",\"msg\":\"Out of memory\"}\n",
		      stderr);
		return;
	}
	text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	if (text == NULL)
		return;
	/* One write per line so that lines from several threads never interleave. */
	len = strlen(text);
	line = realloc(text, len + 2);
	if (line == NULL) {
		free(text);
		return;
	}
	line[len] = '\n';
	line[len + 1] = '\0';
	fwrite(line, 1, len + 1, stderr);
	free(line);
}

void djob_logf(const djob_config_t *conf, djob_log_level_t level, const char *component,
               const char *fmt, ...)
{
	djob_log_fn fn = djob_log_json_stderr;
	djob_log_level_t max = DJOB_LOG_WARNING;
	void *opaque = NULL;
	char buf[DJOB_LOG_LINE_MAX];
	va_list ap;
	int n;

	if (conf != NULL)
		djob_config_log_target(conf, &fn, &max, &opaque);
	if (fn == NULL || level > max)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0) {
		buf[0] = '\0';
	} else if ((size_t)n >= sizeof(buf)) {
		/* Truncated: do not leave half a UTF-8 sequence at the end. */
		size_t end = sizeof(buf) - 1;
		size_t lead = end;
		while (lead > 0 && end - lead < 4 && ((unsigned char)buf[lead - 1] & 0xC0) == 0x80)
			lead--;
		if (lead > 0 && (unsigned char)buf[lead - 1] >= 0xC0) {
			unsigned char b = (unsigned char)buf[lead - 1];
			size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
			if (lead - 1 + need > end)
				end = lead - 1;
		}
		buf[end] = '\0';
	}
	fn(level, component, buf, opaque);
}
