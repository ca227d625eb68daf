/*
 * proxy_wasm.h -- the Proxy-Wasm ABI 0.2.1 as seen from a C module.
 *
 * Written for wasmgate from the public specification
 * (github.com/proxy-wasm/spec, abi-versions/v0.2.1). It declares the host
 * functions (imported from module "env") and the enums; it holds no code.
 *
 * Every host function returns a proxy_status_t. "return_*" parameters are
 * pointers the host writes to; a "uint8_t **" result is a buffer the host
 * allocated inside this module through proxy_on_memory_allocate, which the
 * module owns and must free().
 *
 * Callbacks (proxy_on_*) are exported by the module with PROXY_EXPORT.
 */
#ifndef WASMGATE_PROXY_WASM_H
#define WASMGATE_PROXY_WASM_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_IMPORT(name) \
    __attribute__((import_module("env"), import_name(#name)))
#define PROXY_EXPORT(name) __attribute__((export_name(#name)))

typedef enum {
    PROXY_OK = 0,
    PROXY_NOT_FOUND = 1,
    PROXY_BAD_ARGUMENT = 2,
    PROXY_SERIALIZATION_FAILURE = 3,
    PROXY_PARSE_FAILURE = 4,
    PROXY_INVALID_MEMORY_ACCESS = 6,
    PROXY_EMPTY = 7,
    PROXY_CAS_MISMATCH = 8,
    PROXY_INTERNAL_FAILURE = 10,
    PROXY_UNIMPLEMENTED = 12,
} proxy_status_t;

typedef enum {
    PROXY_LOG_TRACE = 0,
    PROXY_LOG_DEBUG = 1,
    PROXY_LOG_INFO = 2,
    PROXY_LOG_WARN = 3,
    PROXY_LOG_ERROR = 4,
    PROXY_LOG_CRITICAL = 5,
} proxy_log_level_t;

typedef enum {
    PROXY_CONTINUE = 0,
    PROXY_PAUSE = 1,
} proxy_action_t;

typedef enum {
    PROXY_BUFFER_HTTP_REQUEST_BODY = 0,
    PROXY_BUFFER_HTTP_RESPONSE_BODY = 1,
    PROXY_BUFFER_DOWNSTREAM_DATA = 2,
    PROXY_BUFFER_UPSTREAM_DATA = 3,
    PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY = 4,
    PROXY_BUFFER_GRPC_CALL_MESSAGE = 5,
    PROXY_BUFFER_VM_CONFIGURATION = 6,
    PROXY_BUFFER_PLUGIN_CONFIGURATION = 7,
    PROXY_BUFFER_FOREIGN_FUNCTION_ARGUMENTS = 8,
} proxy_buffer_type_t;

typedef enum {
    PROXY_MAP_HTTP_REQUEST_HEADERS = 0,
    PROXY_MAP_HTTP_REQUEST_TRAILERS = 1,
    PROXY_MAP_HTTP_RESPONSE_HEADERS = 2,
    PROXY_MAP_HTTP_RESPONSE_TRAILERS = 3,
    PROXY_MAP_GRPC_CALL_INITIAL_METADATA = 4,
    PROXY_MAP_GRPC_CALL_TRAILING_METADATA = 5,
    PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
    PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7,
} proxy_map_type_t;

typedef enum {
    PROXY_STREAM_HTTP_REQUEST = 0,
    PROXY_STREAM_HTTP_RESPONSE = 1,
    PROXY_STREAM_DOWNSTREAM = 2,
    PROXY_STREAM_UPSTREAM = 3,
} proxy_stream_type_t;

typedef enum {
    PROXY_METRIC_COUNTER = 0,
    PROXY_METRIC_GAUGE = 1,
    PROXY_METRIC_HISTOGRAM = 2,
} proxy_metric_type_t;

/* grpc_status argument of proxy_send_local_response for plain HTTP replies. */
#define PROXY_NO_GRPC_STATUS 0xFFFFFFFFu

/* Logging and time. */
PROXY_IMPORT(proxy_log)
proxy_status_t proxy_log(proxy_log_level_t level, const char *message, size_t size);
PROXY_IMPORT(proxy_get_log_level)
proxy_status_t proxy_get_log_level(proxy_log_level_t *return_level);
PROXY_IMPORT(proxy_get_current_time_nanoseconds)
proxy_status_t proxy_get_current_time_nanoseconds(uint64_t *return_time);
PROXY_IMPORT(proxy_set_tick_period_milliseconds)
proxy_status_t proxy_set_tick_period_milliseconds(uint32_t period);

/* Context lifecycle. */
PROXY_IMPORT(proxy_done)
proxy_status_t proxy_done(void);
PROXY_IMPORT(proxy_set_effective_context)
proxy_status_t proxy_set_effective_context(uint32_t context_id);

/* Buffers. */
PROXY_IMPORT(proxy_get_buffer_bytes)
proxy_status_t proxy_get_buffer_bytes(proxy_buffer_type_t buffer, size_t start, size_t max_size,
                                      uint8_t **return_data, size_t *return_size);
PROXY_IMPORT(proxy_set_buffer_bytes)
proxy_status_t proxy_set_buffer_bytes(proxy_buffer_type_t buffer, size_t start, size_t size,
                                      const uint8_t *data, size_t data_size);
PROXY_IMPORT(proxy_get_buffer_status)
proxy_status_t proxy_get_buffer_status(proxy_buffer_type_t buffer, size_t *return_size,
                                       uint32_t *return_ignored);

/* HTTP fields (header maps). */
PROXY_IMPORT(proxy_get_header_map_size)
proxy_status_t proxy_get_header_map_size(proxy_map_type_t map, size_t *return_size);
PROXY_IMPORT(proxy_get_header_map_pairs)
proxy_status_t proxy_get_header_map_pairs(proxy_map_type_t map, uint8_t **return_data,
                                          size_t *return_size);
PROXY_IMPORT(proxy_set_header_map_pairs)
proxy_status_t proxy_set_header_map_pairs(proxy_map_type_t map, const uint8_t *data, size_t size);
PROXY_IMPORT(proxy_get_header_map_value)
proxy_status_t proxy_get_header_map_value(proxy_map_type_t map, const char *key, size_t key_size,
                                          uint8_t **return_value, size_t *return_value_size);
PROXY_IMPORT(proxy_add_header_map_value)
proxy_status_t proxy_add_header_map_value(proxy_map_type_t map, const char *key, size_t key_size,
                                          const char *value, size_t value_size);
PROXY_IMPORT(proxy_replace_header_map_value)
proxy_status_t proxy_replace_header_map_value(proxy_map_type_t map, const char *key,
                                              size_t key_size, const char *value,
                                              size_t value_size);
PROXY_IMPORT(proxy_remove_header_map_value)
proxy_status_t proxy_remove_header_map_value(proxy_map_type_t map, const char *key,
                                             size_t key_size);

/* Streams and local replies. */
PROXY_IMPORT(proxy_continue_stream)
proxy_status_t proxy_continue_stream(proxy_stream_type_t stream);
PROXY_IMPORT(proxy_close_stream)
proxy_status_t proxy_close_stream(proxy_stream_type_t stream);
PROXY_IMPORT(proxy_send_local_response)
proxy_status_t proxy_send_local_response(uint32_t status_code, const char *details,
                                         size_t details_size, const uint8_t *body,
                                         size_t body_size, const uint8_t *headers,
                                         size_t headers_size, uint32_t grpc_status);
PROXY_IMPORT(proxy_get_status)
proxy_status_t proxy_get_status(uint32_t *return_code, const char **return_message,
                                size_t *return_message_size);

/* HTTP calls. */
PROXY_IMPORT(proxy_http_call)
proxy_status_t proxy_http_call(const char *upstream, size_t upstream_size, const uint8_t *headers,
                               size_t headers_size, const uint8_t *body, size_t body_size,
                               const uint8_t *trailers, size_t trailers_size, uint32_t timeout_ms,
                               uint32_t *return_call_id);

/* Shared key-value store. cas 0 on set: unconditional. */
PROXY_IMPORT(proxy_get_shared_data)
proxy_status_t proxy_get_shared_data(const char *key, size_t key_size, uint8_t **return_value,
                                     size_t *return_value_size, uint32_t *return_cas);
PROXY_IMPORT(proxy_set_shared_data)
proxy_status_t proxy_set_shared_data(const char *key, size_t key_size, const uint8_t *value,
                                     size_t value_size, uint32_t cas);

/* Metrics. */
PROXY_IMPORT(proxy_define_metric)
proxy_status_t proxy_define_metric(proxy_metric_type_t type, const char *name, size_t name_size,
                                   uint32_t *return_metric_id);
PROXY_IMPORT(proxy_increment_metric)
proxy_status_t proxy_increment_metric(uint32_t metric_id, int64_t delta);
PROXY_IMPORT(proxy_record_metric)
proxy_status_t proxy_record_metric(uint32_t metric_id, uint64_t value);
PROXY_IMPORT(proxy_get_metric)
proxy_status_t proxy_get_metric(uint32_t metric_id, uint64_t *return_value);

/* Properties. */
PROXY_IMPORT(proxy_get_property)
proxy_status_t proxy_get_property(const char *path, size_t path_size, uint8_t **return_value,
                                  size_t *return_value_size);
PROXY_IMPORT(proxy_set_property)
proxy_status_t proxy_set_property(const char *path, size_t path_size, const uint8_t *value,
                                  size_t value_size);

#endif /* WASMGATE_PROXY_WASM_H */
