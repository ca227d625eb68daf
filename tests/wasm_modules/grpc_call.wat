;; grpc_call.wat -- pauses a request on a unary gRPC call and resumes it from the
;; call's close.
;;
;; Exercises: proxy_grpc_call (service = the upstream "grpc"), proxy_on_grpc_receive
;; with the GRPC_CALL_MESSAGE buffer (5), proxy_on_grpc_close, proxy_set_effective_context
;; and proxy_continue_stream(HTTP_REQUEST).
;;
;; proxy_on_request_headers: calls pkg.Echo/Unary with the message "hi" (no metadata,
;; timeout 5000 ms) and returns PAUSE; if proxy_grpc_call fails it adds
;; `x-grpc-error: <status>` and continues. proxy_on_grpc_receive keeps the message;
;; proxy_on_grpc_close adds to the paused request `x-grpc-status: <status>` and
;; `x-grpc-reply: <the message>` (when one came), then continues it.
;;
;; Host should: send the call over the upstream's HTTP/2 connections, call back
;; receive then close on the root context, and forward the request with the headers.
;; One request at a time (the stream context is kept in a global).
(module
  (import "env" "proxy_grpc_call"
    (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context"
    (func $set_effective_context (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "grpc")  ;; 4 bytes
  (data (i32.const 24) "pkg.Echo")  ;; 8 bytes
  (data (i32.const 40) "Unary")  ;; 5 bytes
  (data (i32.const 48) "hi")  ;; 2 bytes
  (data (i32.const 64) "x-grpc-error")  ;; 12 bytes
  (data (i32.const 80) "x-grpc-status")  ;; 13 bytes
  (data (i32.const 96) "x-grpc-reply")  ;; 12 bytes
  ;; 1024: u32 returned ptr, 1028: u32 returned size, 1032: u32 token,
  ;; 1040..: decimal scratch; 4096..: heap.

  (global $stream (mut i32) (i32.const 0))
  (global $msg_ptr (mut i32) (i32.const 0))
  (global $msg_len (mut i32) (i32.const 0))

  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                               (i32.const -8)))
    (local.get $p))

  ;; Writes n in decimal at out; returns the number of bytes written.
  (func $utoa (param $n i32) (param $out i32) (result i32)
    (local $len i32) (local $t i32)
    (local.set $t (local.get $n))
    (local.set $len (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $count)))
    (local.set $t (local.get $len))
    (loop $write
      (local.set $t (i32.sub (local.get $t) (i32.const 1)))
      (i32.store8 (i32.add (local.get $out) (local.get $t))
                  (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $write (local.get $t)))
    (local.get $len))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $status i32)
    (global.set $stream (local.get $ctx))
    (global.set $msg_len (i32.const 0))
    (local.set $status
      (call $grpc_call (i32.const 16) (i32.const 4) (i32.const 24) (i32.const 8)
                       (i32.const 40) (i32.const 5) (i32.const 0) (i32.const 0)
                       (i32.const 48) (i32.const 2) (i32.const 5000) (i32.const 1032)))
    (if (local.get $status)
      (then
        (drop (call $add_header (i32.const 0) (i32.const 64) (i32.const 12) (i32.const 1040)
                                (call $utoa (local.get $status) (i32.const 1040))))
        (return (i32.const 0))))
    (i32.const 1))

  (func (export "proxy_on_grpc_receive") (param i32 i32) (param $size i32)
    (if (i32.eqz (call $get_buffer (i32.const 5) (i32.const 0) (local.get $size)
                                   (i32.const 1024) (i32.const 1028)))
      (then
        (global.set $msg_ptr (i32.load (i32.const 1024)))
        (global.set $msg_len (i32.load (i32.const 1028))))))

  (func (export "proxy_on_grpc_close") (param i32 i32) (param $status i32)
    (drop (call $set_effective_context (global.get $stream)))
    (drop (call $add_header (i32.const 0) (i32.const 80) (i32.const 13) (i32.const 1040)
                            (call $utoa (local.get $status) (i32.const 1040))))
    (if (global.get $msg_len)
      (then
        (drop (call $add_header (i32.const 0) (i32.const 96) (i32.const 12)
                                (global.get $msg_ptr) (global.get $msg_len)))))
    (drop (call $continue_stream (i32.const 0))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
