/*
 * c-filter configuration: a flat JSON object, parsed by hand (no libc JSON).
 *
 *   {"deny_header": "x-block", "count_header": "x-c-filter-count",
 *    "response_header": "x-c-filter", "response_value": "c-filter",
 *    "body_from": "hello", "body_to": "HELLO", "tick_ms": 1000}
 *
 * Every key is optional (defaults in config.c); an empty string turns that
 * feature off. Unknown keys, wrong types, strings longer than the fields
 * below, nesting and trailing garbage are errors. Keep in step with
 * manifest.json's config_schema.
 */
#ifndef C_FILTER_CONFIG_H
#define C_FILTER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define C_FILTER_NAME_MAX 128 /* header names and values, NUL included */
#define C_FILTER_BODY_MAX 256 /* body_from / body_to, NUL included */

struct c_filter_config {
    char deny_header[C_FILTER_NAME_MAX];
    char count_header[C_FILTER_NAME_MAX];
    char response_header[C_FILTER_NAME_MAX];
    char response_value[C_FILTER_NAME_MAX];
    char body_from[C_FILTER_BODY_MAX];
    char body_to[C_FILTER_BODY_MAX];
    uint32_t tick_ms;
};

/* Parses text (not NUL-terminated) into out. Returns 1 on success; on failure
 * returns 0 and writes a message to error. Empty text means all defaults. */
int c_filter_config_parse(const char *text, size_t size, struct c_filter_config *out,
                          char *error, size_t error_size);

#endif
