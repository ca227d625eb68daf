;; stream_flood.wat -- sends twenty 64 KiB messages on a gRPC stream at once.
;;
;; proxy_on_request_headers opens pkg.Echo/Bidi on the upstream "grpc"
;; (proxy_grpc_stream), calls proxy_grpc_send twenty times with a 64 KiB message
;; without waiting, cancels the stream (proxy_grpc_cancel), and adds to the request
;; `x-sent: <sends that returned OK>` and `x-refused: <sends that did not>`.
;;
;; Host should: bound what a stream holds unsent by limits.max_buffer_bytes
;; (BAD_ARGUMENT past it), so a filter cannot make the gateway buffer without end.
(module
  (import "env" "proxy_grpc_stream"
    (func $grpc_stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $grpc_send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $grpc_cancel (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 3)
  (data (i32.const 16) "grpc")  ;; 4 bytes
  (data (i32.const 24) "pkg.Echo")  ;; 8 bytes
  (data (i32.const 40) "Bidi")  ;; 4 bytes
  (data (i32.const 64) "x-sent")  ;; 6 bytes
  (data (i32.const 80) "x-refused")  ;; 9 bytes
  ;; 1032: u32 token; 1040..: decimal scratch; 4096..: heap; 65536..131071: the message.

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
    (local $i i32) (local $ok i32) (local $token i32)
    (if (call $grpc_stream (i32.const 16) (i32.const 4) (i32.const 24) (i32.const 8)
                           (i32.const 40) (i32.const 4) (i32.const 0) (i32.const 0)
                           (i32.const 1032))
      (then (unreachable)))
    (local.set $token (i32.load (i32.const 1032)))
    (loop $send
      (if (i32.eqz (call $grpc_send (local.get $token) (i32.const 65536) (i32.const 65536)
                                    (i32.const 0)))
        (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $send (i32.lt_u (local.get $i) (i32.const 20))))
    (drop (call $grpc_cancel (local.get $token)))
    (drop (call $add_header (i32.const 0) (i32.const 64) (i32.const 6) (i32.const 1040)
                            (call $utoa (local.get $ok) (i32.const 1040))))
    (drop (call $add_header (i32.const 0) (i32.const 80) (i32.const 9) (i32.const 1040)
                            (call $utoa (i32.sub (i32.const 20) (local.get $ok))
                                        (i32.const 1040))))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
