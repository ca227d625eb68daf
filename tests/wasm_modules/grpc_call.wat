;; grpc_call.wat -- pauses a request on a unary gRPC call and resumes it from the
;; callback that ends the call, recording which callbacks came and on which context.
;;
;; Exercises: proxy_grpc_call (service = the upstream "grpc"), proxy_on_grpc_receive
;; with the GRPC_CALL_MESSAGE buffer (5), proxy_on_grpc_close, the metadata callbacks
;; (which a unary call must not get), and proxy_continue_stream(HTTP_REQUEST).
;;
;; proxy_on_request_headers: calls pkg.Echo/Unary with the value of the request header
;; `x-msg` (default "hi"; no metadata, timeout 5000 ms) and returns PAUSE; if
;; proxy_grpc_call fails it adds `x-grpc-error: <status>` and continues. Every
;; proxy_on_grpc_* callback appends a letter to a log: I (initial metadata), R
;; (receive), T (trailing metadata), C (close); and `h` when its context id is the
;; HTTP context that made the call, `r` otherwise. proxy_on_grpc_receive adds
;; `x-grpc-reply: <the message>` and `x-grpc-status: 0`; proxy_on_grpc_close adds
;; `x-grpc-status: <status>`; each adds `x-grpc-callbacks: <the log>` and continues
;; the request (a later callback finds it gone on, and its headers go nowhere).
;;
;; Host should (as Envoy): on success call proxy_on_grpc_receive only; on failure
;; proxy_on_grpc_close only; both on the HTTP context that made the call ("Rh", "Ch").
;; One request at a time (the stream context is kept in a global).
(module
  (import "env" "proxy_grpc_call"
    (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
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
  (data (i32.const 56) "x-msg")  ;; 5 bytes
  (data (i32.const 64) "x-grpc-error")  ;; 12 bytes
  (data (i32.const 80) "x-grpc-status")  ;; 13 bytes
  (data (i32.const 96) "x-grpc-reply")  ;; 12 bytes
  (data (i32.const 112) "x-grpc-callbacks")  ;; 16 bytes
  (data (i32.const 128) "0")  ;; 1 byte
  ;; 1024: u32 returned ptr, 1028: u32 returned size, 1032: u32 token,
  ;; 1040..: decimal scratch; 2048..: the callback log; 4096..: heap.

  (global $stream (mut i32) (i32.const 0))
  (global $log_len (mut i32) (i32.const 0))

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

  ;; Appends the callback's letter and h (its context is the caller's) or r.
  (func $note (param $letter i32) (param $ctx i32)
    (if (i32.lt_u (global.get $log_len) (i32.const 1000))
      (then
        (i32.store8 (i32.add (i32.const 2048) (global.get $log_len)) (local.get $letter))
        (i32.store8 (i32.add (i32.const 2049) (global.get $log_len))
                    (select (i32.const 104) (i32.const 114)
                            (i32.eq (local.get $ctx) (global.get $stream))))
        (global.set $log_len (i32.add (global.get $log_len) (i32.const 2))))))

  ;; The request's callbacks header, then on with it.
  (func $finish
    (drop (call $set_effective_context (global.get $stream)))
    (drop (call $add_header (i32.const 0) (i32.const 112) (i32.const 16)
                            (i32.const 2048) (global.get $log_len)))
    (drop (call $continue_stream (i32.const 0))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $status i32) (local $msg i32) (local $len i32)
    (global.set $stream (local.get $ctx))
    (global.set $log_len (i32.const 0))
    (local.set $msg (i32.const 48))
    (local.set $len (i32.const 2))
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 56) (i32.const 5)
                                   (i32.const 1024) (i32.const 1028)))
      (then
        (local.set $msg (i32.load (i32.const 1024)))
        (local.set $len (i32.load (i32.const 1028)))))
    (local.set $status
      (call $grpc_call (i32.const 16) (i32.const 4) (i32.const 24) (i32.const 8)
                       (i32.const 40) (i32.const 5) (i32.const 0) (i32.const 0)
                       (local.get $msg) (local.get $len) (i32.const 5000) (i32.const 1032)))
    (if (local.get $status)
      (then
        (drop (call $add_header (i32.const 0) (i32.const 64) (i32.const 12) (i32.const 1040)
                                (call $utoa (local.get $status) (i32.const 1040))))
        (return (i32.const 0))))
    (i32.const 1))

  (func (export "proxy_on_grpc_receive_initial_metadata") (param $ctx i32) (param i32 i32)
    (call $note (i32.const 73) (local.get $ctx)))

  (func (export "proxy_on_grpc_receive_trailing_metadata") (param $ctx i32) (param i32 i32)
    (call $note (i32.const 84) (local.get $ctx)))

  (func (export "proxy_on_grpc_receive") (param $ctx i32) (param i32) (param $size i32)
    (call $note (i32.const 82) (local.get $ctx))
    (drop (call $set_effective_context (global.get $stream)))
    (if (i32.eqz (call $get_buffer (i32.const 5) (i32.const 0) (local.get $size)
                                   (i32.const 1024) (i32.const 1028)))
      (then
        (drop (call $add_header (i32.const 0) (i32.const 96) (i32.const 12)
                                (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))))
    (drop (call $add_header (i32.const 0) (i32.const 80) (i32.const 13) (i32.const 128)
                            (i32.const 1)))
    (call $finish))

  (func (export "proxy_on_grpc_close") (param $ctx i32) (param i32) (param $status i32)
    (call $note (i32.const 67) (local.get $ctx))
    (drop (call $set_effective_context (global.get $stream)))
    (drop (call $add_header (i32.const 0) (i32.const 80) (i32.const 13) (i32.const 1040)
                            (call $utoa (local.get $status) (i32.const 1040))))
    (call $finish))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
