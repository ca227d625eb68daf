;; host_local_response.wat -- proxy_send_local_response from request headers.
;;
;; proxy_on_request_headers answers 418 with headers {"x-local": "yes",
;; "content-type": "text/plain"} and body "short and stout", then returns PAUSE
;; (as SDKs do after a local response).
;;
;; Host should: send exactly that reply to the client; the upstream is not called.
(module
  (import "env" "proxy_send_local_response"
    (func $send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "teapot")  ;; 6 bytes
  (data (i32.const 24) "short and stout")  ;; 15 bytes
  (data (i32.const 40) "\02\00\00\00\07\00\00\00\03\00\00\00\0c\00\00\00\0a\00\00\00x-local\00yes\00content-type\00text/plain\00")  ;; 56 bytes
  ;; Memory: strings from 16; 4096: u32 returned ptr, 4100: u32 returned size,
  ;; 4104: u32 cas / id, 4112: u64 value, 4200..: decimal scratch,
  ;; 8192..16383: scratch, 16384..: heap.

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

  ;; Writes n (unsigned) in decimal at out; returns the number of bytes written.
  (func $utoa (param $n i64) (param $out i32) (result i32)
    (local $len i32) (local $t i64) (local $i i32)
    (local.set $t (local.get $n))
    (local.set $len (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i64.lt_u (local.get $t) (i64.const 10)))
        (local.set $t (i64.div_u (local.get $t) (i64.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $count)))
    (local.set $i (local.get $len))
    (loop $write
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i64.store8 (i32.add (local.get $out) (local.get $i))
                  (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $write (local.get $i)))
    (local.get $len))

  ;; Report helpers: add a header to map $map (0 request, 2 response).
  (func $num64 (param $map i32) (param $key i32) (param $klen i32) (param $n i64)
    (drop (call $add_header (local.get $map) (local.get $key) (local.get $klen)
                            (i32.const 4200) (call $utoa (local.get $n) (i32.const 4200)))))
  (func $req (param $key i32) (param $klen i32) (param $n i32)
    (call $num64 (i32.const 0) (local.get $key) (local.get $klen) (i64.extend_i32_u (local.get $n))))
  (func $resp (param $key i32) (param $klen i32) (param $n i32)
    (call $num64 (i32.const 2) (local.get $key) (local.get $klen) (i64.extend_i32_u (local.get $n))))
  (func $reqs (param $key i32) (param $klen i32) (param $ptr i32) (param $len i32)
    (drop (call $add_header (i32.const 0) (local.get $key) (local.get $klen)
                            (local.get $ptr) (local.get $len))))
  (func $resps (param $key i32) (param $klen i32) (param $ptr i32) (param $len i32)
    (drop (call $add_header (i32.const 2) (local.get $key) (local.get $klen)
                            (local.get $ptr) (local.get $len))))
  ;; The pointer and size the last host call returned (at 4096 and 4100).
  (func $rptr (result i32) (i32.load (i32.const 4096)))
  (func $rlen (result i32) (i32.load (i32.const 4100)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $send_local_response (i32.const 418) (i32.const 16) (i32.const 6) (i32.const 24) (i32.const 15)
      (i32.const 40) (i32.const 56) (i32.const -1)))
    (i32.const 1))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
