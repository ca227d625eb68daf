;; body_hold_response.wat -- stopping on the last response body chunk, and going on
;; later (body_hold.wat's request side, for responses).
;; proxy_on_response_body returns StopIterationAndBuffer (1) on every chunk. On the
;; one with end_of_stream it calls upstream "v1" (GET /fixed/3) and stops again --
;; unless the VM configuration starts with "h", then it only stops (and nothing ever
;; resumes it: the host's pause_timeout ends it). The call's response replaces the
;; whole response body (set_buffer_bytes(1, 0, 1, ...)) and proxy_continue_stream(1)
;; lets it go on. One stream at a time (its id is kept in a global).
(module
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes"
    (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context"
    (func $set_effective_context (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\08\00\00\00\0a\00\00\00\01\00\00\00:method\00GET\00:path\00/fixed/3\00:authority\00x\00")  ;; 68 bytes
  (data (i32.const 96) "v1")
  ;; 1024: u32 returned ptr, 1028: u32 returned size, 1032: call token; heap 4096..

  (global $heap (mut i32) (i32.const 4096))
  (global $mode (mut i32) (i32.const 0))
  (global $stream (mut i32) (i32.const 0))
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
  (func (export "proxy_on_vm_start") (param $root i32) (param $size i32) (result i32)
    (if (local.get $size)
      (then
        (if (i32.eqz (call $get_buffer (i32.const 6) (i32.const 0) (local.get $size)
                                       (i32.const 1024) (i32.const 1028)))
          (then (global.set $mode (i32.load8_u (i32.load (i32.const 1024))))))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (if (i32.eq (global.get $mode) (i32.const 104)) (then (return (i32.const 1))))  ;; h
    (global.set $stream (local.get $ctx))
    (if (call $http_call (i32.const 96) (i32.const 2) (i32.const 16) (i32.const 68)
                         (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                         (i32.const 5000) (i32.const 1032))
      (then (unreachable)))
    (i32.const 1))

  (func (export "proxy_on_http_call_response")
    (param $root i32) (param $token i32) (param $headers i32) (param $body_size i32) (param i32)
    (drop (call $set_effective_context (global.get $stream)))
    (if (call $get_buffer (i32.const 4) (i32.const 0) (local.get $body_size)
                          (i32.const 1024) (i32.const 1028))
      (then (unreachable)))
    (if (call $set_buffer (i32.const 1) (i32.const 0) (i32.const 1)
                          (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))
      (then (unreachable)))
    (drop (call $continue_stream (i32.const 1))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
