;; fuzz_hostcalls.wat -- every pointer-taking host function, callable with any arguments.
;;
;; Exercises: the host's bounds and argument checks, driven from Python by
;; tests/hardening/test_fuzz.py. For each import NAME below, the export
;; "fuzz_NAME" has the same signature and just forwards its arguments, so the test
;; can pass hypothesis-generated pointers, sizes, kinds and levels through a real
;; guest-to-host call, and read the returned status.
;; Memory: 1 page to start; 0..16383 is scratch the test writes its buffers into,
;; 16384..: the bump heap of proxy_on_memory_allocate (which grows the memory).
;;
;; The gRPC host functions (proxy_grpc_call, proxy_grpc_stream, proxy_grpc_send,
;; proxy_grpc_close, proxy_grpc_cancel, proxy_get_status) are among them: the test
;; binds an upstream "grpc" (nothing listening) so calls and streams really start.
;;
;; Host should: return a status (a proxy_status_t, or a WASI errno for the
;; wasi_snapshot_preview1 ones) for every call, never trap or raise, and return
;; INVALID_MEMORY_ACCESS (6) / EFAULT (21) rather than OK when a buffer it had to read or
;; write is outside the memory.
(module

  (import "env" "proxy_log" (func $proxy_log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $proxy_get_log_level (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds"
    (func $proxy_get_current_time_nanoseconds (param i32) (result i32)))
  (import "env" "proxy_get_configuration"
    (func $proxy_get_configuration (param i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $proxy_get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status"
    (func $proxy_get_buffer_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes"
    (func $proxy_set_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs"
    (func $proxy_get_header_map_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size"
    (func $proxy_get_header_map_size (param i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $proxy_get_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $proxy_add_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $proxy_replace_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value"
    (func $proxy_remove_header_map_value (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs"
    (func $proxy_set_header_map_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $proxy_send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property"
    (func $proxy_get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property"
    (func $proxy_set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data"
    (func $proxy_get_shared_data (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data"
    (func $proxy_set_shared_data (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue"
    (func $proxy_register_shared_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue"
    (func $proxy_resolve_shared_queue (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue"
    (func $proxy_enqueue_shared_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue"
    (func $proxy_dequeue_shared_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_metric" (func $proxy_get_metric (param i32 i32) (result i32)))
  (import "env" "proxy_grpc_call"
    (func $proxy_grpc_call
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream"
    (func $proxy_grpc_stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $proxy_grpc_send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_close" (func $proxy_grpc_close (param i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $proxy_grpc_cancel (param i32) (result i32)))
  (import "env" "proxy_get_status" (func $proxy_get_status (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))

  (memory (export "memory") 1)

  ;; Bump allocator for the host's returned buffers; never frees.
  (global $heap (mut i32) (i32.const 16384))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                             (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                                                             (i32.shl (memory.size) (i32.const 16)))
                                                      (i32.const 16))
                                          (i32.const 1)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))

  (func (export "fuzz_proxy_log") (param i32 i32 i32) (result i32)
    (call $proxy_log (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_get_log_level") (param i32) (result i32)
    (call $proxy_get_log_level (local.get 0)))
  (func (export "fuzz_proxy_get_current_time_nanoseconds") (param i32) (result i32)
    (call $proxy_get_current_time_nanoseconds (local.get 0)))
  (func (export "fuzz_proxy_get_configuration") (param i32 i32) (result i32)
    (call $proxy_get_configuration (local.get 0) (local.get 1)))
  (func (export "fuzz_proxy_get_buffer_bytes") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_get_buffer_bytes
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_get_buffer_status") (param i32 i32 i32) (result i32)
    (call $proxy_get_buffer_status (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_set_buffer_bytes") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_set_buffer_bytes
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_get_header_map_pairs") (param i32 i32 i32) (result i32)
    (call $proxy_get_header_map_pairs (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_get_header_map_size") (param i32 i32) (result i32)
    (call $proxy_get_header_map_size (local.get 0) (local.get 1)))
  (func (export "fuzz_proxy_get_header_map_value") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_get_header_map_value
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_add_header_map_value") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_add_header_map_value
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_replace_header_map_value") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_replace_header_map_value
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_remove_header_map_value") (param i32 i32 i32) (result i32)
    (call $proxy_remove_header_map_value (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_set_header_map_pairs") (param i32 i32 i32) (result i32)
    (call $proxy_set_header_map_pairs (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_send_local_response")
    (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $proxy_send_local_response (local.get 0) (local.get 1) (local.get 2) (local.get 3)
                                     (local.get 4) (local.get 5) (local.get 6) (local.get 7)))
  (func (export "fuzz_proxy_get_property") (param i32 i32 i32 i32) (result i32)
    (call $proxy_get_property (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "fuzz_proxy_set_property") (param i32 i32 i32 i32) (result i32)
    (call $proxy_set_property (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "fuzz_proxy_get_shared_data") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_get_shared_data
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_set_shared_data") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_set_shared_data
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_register_shared_queue") (param i32 i32 i32) (result i32)
    (call $proxy_register_shared_queue (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_resolve_shared_queue") (param i32 i32 i32 i32 i32) (result i32)
    (call $proxy_resolve_shared_queue
      (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "fuzz_proxy_enqueue_shared_queue") (param i32 i32 i32) (result i32)
    (call $proxy_enqueue_shared_queue (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_dequeue_shared_queue") (param i32 i32 i32) (result i32)
    (call $proxy_dequeue_shared_queue (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_proxy_get_metric") (param i32 i32) (result i32)
    (call $proxy_get_metric (local.get 0) (local.get 1)))
  (func (export "fuzz_proxy_grpc_call")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $proxy_grpc_call (local.get 0) (local.get 1) (local.get 2) (local.get 3)
                           (local.get 4) (local.get 5) (local.get 6) (local.get 7)
                           (local.get 8) (local.get 9) (local.get 10) (local.get 11)))
  (func (export "fuzz_proxy_grpc_stream")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $proxy_grpc_stream (local.get 0) (local.get 1) (local.get 2) (local.get 3)
                             (local.get 4) (local.get 5) (local.get 6) (local.get 7)
                             (local.get 8)))
  (func (export "fuzz_proxy_grpc_send") (param i32 i32 i32 i32) (result i32)
    (call $proxy_grpc_send (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "fuzz_proxy_grpc_close") (param i32) (result i32)
    (call $proxy_grpc_close (local.get 0)))
  (func (export "fuzz_proxy_grpc_cancel") (param i32) (result i32)
    (call $proxy_grpc_cancel (local.get 0)))
  (func (export "fuzz_proxy_get_status") (param i32 i32 i32) (result i32)
    (call $proxy_get_status (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fuzz_fd_write") (param i32 i32 i32 i32) (result i32)
    (call $fd_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "fuzz_random_get") (param i32 i32) (result i32)
    (call $random_get (local.get 0) (local.get 1)))
  (func (export "fuzz_environ_sizes_get") (param i32 i32) (result i32)
    (call $environ_sizes_get (local.get 0) (local.get 1)))
  (func (export "fuzz_clock_time_get") (param i32 i64 i32) (result i32)
    (call $clock_time_get (local.get 0) (local.get 1) (local.get 2)))
)
