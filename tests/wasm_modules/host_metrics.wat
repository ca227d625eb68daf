;; host_metrics.wat -- metrics: define, increment, record, get.
;;
;; proxy_on_request_headers adds:
;;   x-m-define        define counter "host_metrics.requests"      expect 0
;;   x-m-inc           increment it by 1                           expect 0
;;   x-m-dec           increment it by -1 (a counter cannot go down) expect 2 (BAD_ARGUMENT)
;;   x-m-get           get it                                      expect 0
;;   x-m-counter       its value (1 more on every request)
;;   x-m-gauge-define  define gauge "host_metrics.gauge"           expect 0
;;   x-m-record        record 42 on it                             expect 0
;;   x-m-gauge-dec     increment it by -2 (gauges may go down)     expect 0
;;   x-m-gauge         its value                                   40
;;   x-m-histogram     define histogram "host_metrics.hist" and record 7  expect 0
;;   x-m-bad-type      define a metric of type 9                   expect 2 (BAD_ARGUMENT)
;;   x-m-missing       get metric id 999999                        expect 1 (NOT_FOUND)
(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-m-define")  ;; 10 bytes
  (data (i32.const 32) "host_metrics.requests")  ;; 21 bytes
  (data (i32.const 56) "x-m-inc")  ;; 7 bytes
  (data (i32.const 64) "x-m-dec")  ;; 7 bytes
  (data (i32.const 72) "x-m-get")  ;; 7 bytes
  (data (i32.const 80) "x-m-counter")  ;; 11 bytes
  (data (i32.const 96) "x-m-gauge-define")  ;; 16 bytes
  (data (i32.const 112) "host_metrics.gauge")  ;; 18 bytes
  (data (i32.const 136) "x-m-record")  ;; 10 bytes
  (data (i32.const 152) "x-m-gauge-dec")  ;; 13 bytes
  (data (i32.const 168) "x-m-gauge")  ;; 9 bytes
  (data (i32.const 184) "host_metrics.hist")  ;; 17 bytes
  (data (i32.const 208) "x-m-histogram")  ;; 13 bytes
  (data (i32.const 224) "x-m-bad-type")  ;; 12 bytes
  (data (i32.const 240) "host_metrics.bad")  ;; 16 bytes
  (data (i32.const 256) "x-m-missing")  ;; 11 bytes
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
    (local $id i32) (local $status i32)
    (call $req (i32.const 16) (i32.const 10) (call $define (i32.const 0) (i32.const 32) (i32.const 21) (i32.const 4104)))
    (local.set $id (i32.load (i32.const 4104)))
    (call $req (i32.const 56) (i32.const 7) (call $increment (local.get $id) (i64.const 1)))
    (call $req (i32.const 64) (i32.const 7) (call $increment (local.get $id) (i64.const -1)))
    (call $req (i32.const 72) (i32.const 7) (call $get_metric (local.get $id) (i32.const 4112)))
    (call $num64 (i32.const 0) (i32.const 80) (i32.const 11) (i64.load (i32.const 4112)))

    (call $req (i32.const 96) (i32.const 16) (call $define (i32.const 1) (i32.const 112) (i32.const 18) (i32.const 4104)))
    (local.set $id (i32.load (i32.const 4104)))
    (call $req (i32.const 136) (i32.const 10) (call $record (local.get $id) (i64.const 42)))
    (call $req (i32.const 152) (i32.const 13) (call $increment (local.get $id) (i64.const -2)))
    (drop (call $get_metric (local.get $id) (i32.const 4112)))
    (call $num64 (i32.const 0) (i32.const 168) (i32.const 9) (i64.load (i32.const 4112)))

    (local.set $status (call $define (i32.const 2) (i32.const 184) (i32.const 17) (i32.const 4104)))
    (if (i32.eqz (local.get $status))
      (then (local.set $status (call $record (i32.load (i32.const 4104)) (i64.const 7)))))
    (call $req (i32.const 208) (i32.const 13) (local.get $status))
    (call $req (i32.const 224) (i32.const 12) (call $define (i32.const 9) (i32.const 240) (i32.const 16) (i32.const 4104)))
    (call $req (i32.const 256) (i32.const 11) (call $get_metric (i32.const 999999) (i32.const 4112)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
