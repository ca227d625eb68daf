;; body_stream.wat -- body callbacks as they stream; the mode is the first byte of
;; the VM configuration (vm_config):
;;   n  every body callback returns Continue and changes nothing
;;   u  upper-cases each chunk as it streams (replaced in place), Continue
;;   b  StopIterationAndBuffer (1) until end_of_stream; then reads the whole
;;      accumulation, replaces it upper-cased with proxy_set_buffer_bytes(0, 1, ...)
;;      (a start of 0 with any length replaces the whole buffer, as in Envoy), adds
;;      the header x-body-total (size given at the end) and x-body-calls (body
;;      callbacks of that direction), Continue
;;   a  prepends "<<" on the first callback, appends ">>" on the one with
;;      end_of_stream, Continue (the body grows by 4 bytes)
;;   s  buffers until end_of_stream, then replaces the body with "ok" the way the Go
;;      SDK's ReplaceHttp*Body does (start 0, length = the new body's length)
;;   p  as b, and the header callbacks return StopIteration (1) when a body follows
;;      (Higress wasm-go's HeaderStopIteration: hold the headers, process the body)
;;   d  a chunk with an "X" in it gets a local response, 403 "blocked\n", and
;;      StopIteration (as the Go SDK's SendHttpResponse is used); others Continue
;; In every mode the header callbacks add x-req-headers-eos (request) and
;; x-resp-headers-eos (response): the end_of_stream argument they got. Request body
;; callbacks work on HTTP_REQUEST_BODY (0) and add request headers; response ones on
;; HTTP_RESPONSE_BODY (1) and add response headers.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes"
    (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-req-headers-eos")  ;; 17 bytes
  (data (i32.const 40) "x-resp-headers-eos")  ;; 18 bytes
  (data (i32.const 64) "x-body-total")  ;; 12 bytes
  (data (i32.const 80) "x-body-calls")  ;; 12 bytes
  (data (i32.const 96) "<<>>ok")  ;; 6 bytes
  (data (i32.const 112) "blocked\n")  ;; 8 bytes
  ;; 4096: u32 returned ptr, 4100: u32 returned size, 4104/4108: body callbacks per
  ;; direction, 4200..: decimal scratch, 16384..: heap.

  (global $heap (mut i32) (i32.const 16384))
  (global $mode (mut i32) (i32.const 110))
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

  (func $utoa (param $n i32) (param $out i32) (result i32)
    (local $len i32) (local $t i32) (local $i i32)
    (local.set $t (local.get $n))
    (local.set $len (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $count)))
    (local.set $i (local.get $len))
    (loop $write
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (local.get $out) (local.get $i))
                  (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $write (local.get $i)))
    (local.get $len))

  (func $num (param $map i32) (param $key i32) (param $klen i32) (param $n i32)
    (drop (call $add_header (local.get $map) (local.get $key) (local.get $klen)
                            (i32.const 4200) (call $utoa (local.get $n) (i32.const 4200)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_vm_start") (param $root i32) (param $size i32) (result i32)
    (if (local.get $size)
      (then
        (if (i32.eqz (call $get_buffer (i32.const 6) (i32.const 0) (local.get $size)
                                       (i32.const 4096) (i32.const 4100)))
          (then (global.set $mode (i32.load8_u (i32.load (i32.const 4096))))))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32)
    (i32.store (i32.const 4104) (i32.const 0))
    (i32.store (i32.const 4108) (i32.const 0)))

  (func (export "proxy_on_request_headers") (param i32) (param i32) (param $eos i32) (result i32)
    (call $num (i32.const 0) (i32.const 16) (i32.const 17) (local.get $eos))
    (call $header_action (local.get $eos)))
  (func (export "proxy_on_response_headers") (param i32) (param i32) (param $eos i32) (result i32)
    (call $num (i32.const 2) (i32.const 40) (i32.const 18) (local.get $eos))
    (call $header_action (local.get $eos)))
  (func $header_action (param $eos i32) (result i32)
    (i32.and (i32.eq (global.get $mode) (i32.const 112)) (i32.eqz (local.get $eos))))

  ;; Upper-cases buffer $kind (its $size bytes) and sets it back with length $len.
  (func $upper (param $kind i32) (param $size i32) (param $len i32)
    (local $p i32) (local $n i32) (local $i i32) (local $c i32)
    (if (i32.eqz (local.get $size)) (then (return)))
    (if (call $get_buffer (local.get $kind) (i32.const 0) (local.get $size)
                          (i32.const 4096) (i32.const 4100))
      (then (unreachable)))
    (local.set $p (i32.load (i32.const 4096)))
    (local.set $n (i32.load (i32.const 4100)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
          (then (i32.store8 (i32.add (local.get $p) (local.get $i))
                            (i32.sub (local.get $c) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (if (call $set_buffer (local.get $kind) (i32.const 0) (local.get $len)
                          (local.get $p) (local.get $n))
      (then (unreachable))))

  ;; Whether buffer $kind (its $size bytes) holds an "X".
  (func $has_x (param $kind i32) (param $size i32) (result i32)
    (local $p i32) (local $n i32) (local $i i32)
    (if (i32.eqz (local.get $size)) (then (return (i32.const 0))))
    (if (call $get_buffer (local.get $kind) (i32.const 0) (local.get $size)
                          (i32.const 4096) (i32.const 4100))
      (then (unreachable)))
    (local.set $p (i32.load (i32.const 4096)))
    (local.set $n (i32.load (i32.const 4100)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 88))
          (then (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.const 0))

  (func $body (param $kind i32) (param $size i32) (param $eos i32) (result i32)
    (local $calls i32) (local $map i32)
    (local.set $map (i32.shl (local.get $kind) (i32.const 1)))
    (local.set $calls (i32.add (i32.load (i32.add (i32.const 4104) (i32.shl (local.get $kind) (i32.const 2))))
                               (i32.const 1)))
    (i32.store (i32.add (i32.const 4104) (i32.shl (local.get $kind) (i32.const 2))) (local.get $calls))
    (if (i32.eq (global.get $mode) (i32.const 117))  ;; u
      (then (call $upper (local.get $kind) (local.get $size) (local.get $size))
            (return (i32.const 0))))
    (if (i32.or (i32.eq (global.get $mode) (i32.const 98))  ;; b
                (i32.eq (global.get $mode) (i32.const 112)))  ;; p
      (then
        (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
        (call $upper (local.get $kind) (local.get $size) (i32.const 1))
        (call $num (local.get $map) (i32.const 64) (i32.const 12) (local.get $size))
        (call $num (local.get $map) (i32.const 80) (i32.const 12) (local.get $calls))
        (return (i32.const 0))))
    (if (i32.eq (global.get $mode) (i32.const 97))  ;; a
      (then
        (if (i32.eq (local.get $calls) (i32.const 1))
          (then
            (if (call $set_buffer (local.get $kind) (i32.const 0) (i32.const 0) (i32.const 96) (i32.const 2))
              (then (unreachable)))
            (local.set $size (i32.add (local.get $size) (i32.const 2)))))
        (if (local.get $eos)
          (then
            (if (call $set_buffer (local.get $kind) (local.get $size) (i32.const 0) (i32.const 98) (i32.const 2))
              (then (unreachable)))))
        (return (i32.const 0))))
    (if (i32.eq (global.get $mode) (i32.const 100))  ;; d
      (then
        (if (call $has_x (local.get $kind) (local.get $size))
          (then
            (drop (call $local_response (i32.const 403) (i32.const 0) (i32.const 0)
                                        (i32.const 112) (i32.const 8) (i32.const 0) (i32.const 0)
                                        (i32.const -1)))
            (return (i32.const 1))))
        (return (i32.const 0))))
    (if (i32.eq (global.get $mode) (i32.const 115))  ;; s
      (then
        (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
        (if (call $set_buffer (local.get $kind) (i32.const 0) (i32.const 2) (i32.const 100) (i32.const 2))
          (then (unreachable)))
        (return (i32.const 0))))
    (i32.const 0))

  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (call $body (i32.const 0) (local.get $size) (local.get $eos)))
  (func (export "proxy_on_response_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (call $body (i32.const 1) (local.get $size) (local.get $eos)))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
