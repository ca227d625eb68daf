/*
 * c-filter: wasmgate's example Proxy-Wasm filter in C (ABI 0.2.1), built with
 * `zig cc --target=wasm32-wasi -mexec-model=reactor`. See README.md.
 *
 *   request headers   count the request in shared data (CAS loop) and pass the
 *                     count upstream in a header; deny with a local 403 when
 *                     the request carries `deny_header`
 *   response headers  add `response_header`; drop content-length when the
 *                     body is going to be rewritten
 *   response body     buffer (PAUSE) until end_of_stream, then replace every
 *                     `body_from` with `body_to`
 *   tick              every `tick_ms`, log the shared request count
 *
 * One plugin (root) context per module instance; stream contexts keep no
 * state of their own, so proxy_on_context_create/delete do nothing. Until
 * proxy_on_configure succeeds the (zeroed) config turns every feature off.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "proxy_wasm.h"

static const char COUNTER_KEY[] = "c-filter.requests";
#define CAS_ATTEMPTS 16

static struct c_filter_config config;

static void log_text(proxy_log_level_t level, const char *text) {
    proxy_log(level, text, strlen(text));
}

/* Serialized header map (Proxy-Wasm map format) with a single pair. */
static size_t serialize_one_pair(uint8_t *out, const char *key, const char *value) {
    uint32_t n = 1, k = (uint32_t)strlen(key), v = (uint32_t)strlen(value);
    memcpy(out, &n, 4);
    memcpy(out + 4, &k, 4);
    memcpy(out + 8, &v, 4);
    memcpy(out + 12, key, k);
    out[12 + k] = 0;
    memcpy(out + 13 + k, value, v);
    out[13 + k + v] = 0;
    return 14 + k + v;
}

static uint64_t parse_u64(const uint8_t *data, size_t size) {
    uint64_t n = 0;
    for (size_t i = 0; i < size && data[i] >= '0' && data[i] <= '9'; i++) n = n * 10 + (data[i] - '0');
    return n;
}

/* Increments the shared request counter; returns the new value, 0 on failure. */
static uint64_t bump_request_counter(void) {
    for (int attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
        uint8_t *value = NULL;
        size_t size = 0;
        uint32_t cas = 0;
        uint64_t count = 0;
        proxy_status_t st =
            proxy_get_shared_data(COUNTER_KEY, sizeof COUNTER_KEY - 1, &value, &size, &cas);
        if (st == PROXY_OK) {
            count = parse_u64(value, size);
            free(value);
        } else if (st != PROXY_NOT_FOUND) {
            return 0;
        }
        char text[24];
        int len = snprintf(text, sizeof text, "%llu", (unsigned long long)(count + 1));
        st = proxy_set_shared_data(COUNTER_KEY, sizeof COUNTER_KEY - 1, (const uint8_t *)text,
                                   (size_t)len, cas);
        if (st == PROXY_OK) return count + 1;
        if (st != PROXY_CAS_MISMATCH) return 0;
    }
    log_text(PROXY_LOG_WARN, "c-filter: shared counter kept changing, gave up");
    return 0;
}

/* Returns a malloc'd copy of body with every `from` replaced by `to`. */
static uint8_t *replace_all(const uint8_t *body, size_t size, const char *from, const char *to,
                            size_t *out_size) {
    size_t from_len = strlen(from), to_len = strlen(to), hits = 0;
    for (size_t i = 0; i + from_len <= size;) {
        if (memcmp(body + i, from, from_len) == 0) {
            hits++;
            i += from_len;
        } else {
            i++;
        }
    }
    *out_size = size - hits * from_len + hits * to_len;
    uint8_t *out = malloc(*out_size ? *out_size : 1);
    if (out == NULL) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < size;) {
        if (i + from_len <= size && memcmp(body + i, from, from_len) == 0) {
            memcpy(out + o, to, to_len);
            o += to_len;
            i += from_len;
        } else {
            out[o++] = body[i++];
        }
    }
    return out;
}

/* ---- integration and memory ------------------------------------------- */

PROXY_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

PROXY_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) {
    return malloc(size);
}

/* ---- plugin (root) context -------------------------------------------- */

PROXY_EXPORT(proxy_on_context_create)
void proxy_on_context_create(uint32_t context_id, uint32_t parent_context_id) {
    (void)context_id;
    (void)parent_context_id;
}

PROXY_EXPORT(proxy_on_vm_start)
uint32_t proxy_on_vm_start(uint32_t root_context_id, size_t vm_configuration_size) {
    (void)root_context_id;
    (void)vm_configuration_size;
    log_text(PROXY_LOG_INFO, "c-filter: vm started");
    return 1;
}

PROXY_EXPORT(proxy_on_configure)
uint32_t proxy_on_configure(uint32_t root_context_id, size_t configuration_size) {
    (void)root_context_id;
    uint8_t *data = NULL;
    size_t size = 0;
    if (configuration_size > 0 &&
        proxy_get_buffer_bytes(PROXY_BUFFER_PLUGIN_CONFIGURATION, 0, configuration_size, &data,
                               &size) != PROXY_OK) {
        log_text(PROXY_LOG_ERROR, "c-filter: cannot read the plugin configuration");
        return 0;
    }
    char error[160];
    struct c_filter_config parsed;
    int ok = c_filter_config_parse((const char *)data, size, &parsed, error, sizeof error);
    free(data);
    if (!ok) {
        char message[200];
        snprintf(message, sizeof message, "c-filter: invalid configuration: %s", error);
        log_text(PROXY_LOG_ERROR, message);
        return 0;
    }
    config = parsed;
    if (config.tick_ms > 0) proxy_set_tick_period_milliseconds(config.tick_ms);
    log_text(PROXY_LOG_INFO, "c-filter: configured");
    return 1;
}

PROXY_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root_context_id) {
    (void)root_context_id;
    uint8_t *value = NULL;
    size_t size = 0;
    uint32_t cas = 0;
    uint64_t count = 0;
    if (proxy_get_shared_data(COUNTER_KEY, sizeof COUNTER_KEY - 1, &value, &size, &cas) ==
        PROXY_OK) {
        count = parse_u64(value, size);
        free(value);
    }
    char message[64];
    snprintf(message, sizeof message, "c-filter: tick, %llu requests so far",
             (unsigned long long)count);
    log_text(PROXY_LOG_DEBUG, message);
}

PROXY_EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t context_id, uint32_t call_id, size_t num_headers,
                                 size_t body_size, size_t num_trailers) {
    /* c-filter makes no http calls; a host that calls this is misrouting. */
    (void)context_id;
    (void)num_headers;
    (void)body_size;
    (void)num_trailers;
    char message[64];
    snprintf(message, sizeof message, "c-filter: unexpected http call response %u",
             (unsigned)call_id);
    log_text(PROXY_LOG_WARN, message);
}

/* ---- stream (per request) context --------------------------------------- */

PROXY_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t context_id, size_t num_headers,
                                        uint32_t end_of_stream) {
    (void)context_id;
    (void)num_headers;
    (void)end_of_stream;
    uint64_t count = bump_request_counter();
    if (config.count_header[0] != '\0' && count > 0) {
        char text[24];
        int len = snprintf(text, sizeof text, "%llu", (unsigned long long)count);
        proxy_add_header_map_value(PROXY_MAP_HTTP_REQUEST_HEADERS, config.count_header,
                                   strlen(config.count_header), text, (size_t)len);
    }
    if (config.deny_header[0] != '\0') {
        uint8_t *value = NULL;
        size_t size = 0;
        if (proxy_get_header_map_value(PROXY_MAP_HTTP_REQUEST_HEADERS, config.deny_header,
                                       strlen(config.deny_header), &value,
                                       &size) == PROXY_OK) {
            free(value);
            static const char details[] = "c-filter: deny header present";
            static const char body[] = "blocked by c-filter\n";
            uint8_t headers[64];
            size_t headers_size = serialize_one_pair(headers, "content-type", "text/plain");
            proxy_send_local_response(403, details, sizeof details - 1, (const uint8_t *)body,
                                      sizeof body - 1, headers, headers_size,
                                      PROXY_NO_GRPC_STATUS);
            log_text(PROXY_LOG_INFO, "c-filter: request denied");
            return PROXY_PAUSE;
        }
    }
    return PROXY_CONTINUE;
}

PROXY_EXPORT(proxy_on_request_body)
proxy_action_t proxy_on_request_body(uint32_t context_id, size_t body_size,
                                     uint32_t end_of_stream) {
    (void)context_id;
    (void)body_size;
    (void)end_of_stream;
    return PROXY_CONTINUE;
}

PROXY_EXPORT(proxy_on_response_headers)
proxy_action_t proxy_on_response_headers(uint32_t context_id, size_t num_headers,
                                         uint32_t end_of_stream) {
    (void)context_id;
    (void)num_headers;
    (void)end_of_stream;
    if (config.response_header[0] != '\0') {
        proxy_add_header_map_value(PROXY_MAP_HTTP_RESPONSE_HEADERS, config.response_header,
                                   strlen(config.response_header), config.response_value,
                                   strlen(config.response_value));
    }
    if (config.body_from[0] != '\0' && strlen(config.body_from) != strlen(config.body_to)) {
        /* The rewrite changes the length; the host recomputes it. */
        proxy_remove_header_map_value(PROXY_MAP_HTTP_RESPONSE_HEADERS, "content-length", 14);
    }
    return PROXY_CONTINUE;
}

PROXY_EXPORT(proxy_on_response_body)
proxy_action_t proxy_on_response_body(uint32_t context_id, size_t body_size,
                                      uint32_t end_of_stream) {
    (void)context_id;
    if (config.body_from[0] == '\0') return PROXY_CONTINUE;
    /* Keep buffering until the whole body is there: body_size then covers it all. */
    if (!end_of_stream) return PROXY_PAUSE;
    if (body_size == 0) return PROXY_CONTINUE;
    uint8_t *body = NULL;
    size_t size = 0;
    if (proxy_get_buffer_bytes(PROXY_BUFFER_HTTP_RESPONSE_BODY, 0, body_size, &body, &size) !=
        PROXY_OK) {
        log_text(PROXY_LOG_ERROR, "c-filter: cannot read the response body");
        return PROXY_CONTINUE;
    }
    size_t new_size = 0;
    uint8_t *rewritten = replace_all(body, size, config.body_from, config.body_to, &new_size);
    if (rewritten != NULL) {
        proxy_set_buffer_bytes(PROXY_BUFFER_HTTP_RESPONSE_BODY, 0, size, rewritten, new_size);
        free(rewritten);
    }
    free(body);
    return PROXY_CONTINUE;
}

PROXY_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) {
    (void)context_id;
    return 1;
}

PROXY_EXPORT(proxy_on_log) void proxy_on_log(uint32_t context_id) {
    char message[48];
    snprintf(message, sizeof message, "c-filter: context %u done", (unsigned)context_id);
    log_text(PROXY_LOG_TRACE, message);
}

PROXY_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) { (void)context_id; }
