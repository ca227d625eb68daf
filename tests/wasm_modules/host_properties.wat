;; host_properties.wat -- proxy_get_property.
;;
;; proxy_on_request_headers adds, for each property, its status (-status, in
;; decimal) and its value:
;;   x-p-name         plugin_name
;;   x-p-root         plugin_root_id
;;   x-p-path         request.path
;;   x-p-method       request.method
;;   x-p-port         source.port: 8-byte little-endian integer, in decimal;
;;                    x-p-port-size is its size (expect 8)
;;   x-p-code-status  response.code during the request phase: expect 1 (NOT_FOUND)
;;   x-p-unknown-status  "no.such.property": expect 1 (NOT_FOUND)
;; proxy_on_response_headers adds response headers x-p-code (response.code, an
;; 8-byte integer, in decimal), x-p-code-status and x-p-code-size.
(module
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "plugin_name")  ;; 11 bytes
  (data (i32.const 32) "x-p-name")  ;; 8 bytes
  (data (i32.const 40) "x-p-name-status")  ;; 15 bytes
  (data (i32.const 56) "plugin_root_id")  ;; 14 bytes
  (data (i32.const 72) "x-p-root")  ;; 8 bytes
  (data (i32.const 80) "x-p-root-status")  ;; 15 bytes
  (data (i32.const 96) "request\00path")  ;; 12 bytes
  (data (i32.const 112) "x-p-path")  ;; 8 bytes
  (data (i32.const 120) "x-p-path-status")  ;; 15 bytes
  (data (i32.const 136) "request\00method")  ;; 14 bytes
  (data (i32.const 152) "x-p-method")  ;; 10 bytes
  (data (i32.const 168) "x-p-method-status")  ;; 17 bytes
  (data (i32.const 192) "x-p-port-status")  ;; 15 bytes
  (data (i32.const 208) "source\00port")  ;; 11 bytes
  (data (i32.const 224) "x-p-port-size")  ;; 13 bytes
  (data (i32.const 240) "x-p-port")  ;; 8 bytes
  (data (i32.const 248) "x-p-code-status")  ;; 15 bytes
  (data (i32.const 264) "response\00code")  ;; 13 bytes
  (data (i32.const 280) "x-p-unknown-status")  ;; 18 bytes
  (data (i32.const 304) "no\00such\00property")  ;; 16 bytes
  (data (i32.const 320) "x-p-code-size")  ;; 13 bytes
  (data (i32.const 336) "x-p-code")  ;; 8 bytes
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

  (func $prop (param $path i32) (param $len i32) (result i32)
    (call $get_property (local.get $path) (local.get $len) (i32.const 4096) (i32.const 4100)))

  ;; Adds $key: the property's value, and $key-status (at $skey): its status.
  (func $report (param $path i32) (param $len i32) (param $key i32) (param $klen i32)
                (param $skey i32) (param $sklen i32)
    (local $status i32)
    (local.set $status (call $prop (local.get $path) (local.get $len)))
    (call $req (local.get $skey) (local.get $sklen) (local.get $status))
    (if (i32.eqz (local.get $status))
      (then (call $reqs (local.get $key) (local.get $klen) (call $rptr) (call $rlen)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $report (i32.const 16) (i32.const 11) (i32.const 32) (i32.const 8) (i32.const 40) (i32.const 15))
    (call $report (i32.const 56) (i32.const 14) (i32.const 72) (i32.const 8) (i32.const 80) (i32.const 15))
    (call $report (i32.const 96) (i32.const 12) (i32.const 112) (i32.const 8) (i32.const 120) (i32.const 15))
    (call $report (i32.const 136) (i32.const 14) (i32.const 152) (i32.const 10) (i32.const 168) (i32.const 17))
    (call $req (i32.const 192) (i32.const 15) (call $prop (i32.const 208) (i32.const 11)))
    (call $req (i32.const 224) (i32.const 13) (call $rlen))
    (call $num64 (i32.const 0) (i32.const 240) (i32.const 8) (i64.load (call $rptr)))
    (call $req (i32.const 248) (i32.const 15) (call $prop (i32.const 264) (i32.const 13)))
    (call $req (i32.const 280) (i32.const 18) (call $prop (i32.const 304) (i32.const 16)))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $resp (i32.const 248) (i32.const 15) (call $prop (i32.const 264) (i32.const 13)))
    (call $resp (i32.const 320) (i32.const 13) (call $rlen))
    (call $num64 (i32.const 2) (i32.const 336) (i32.const 8) (i64.load (call $rptr)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
