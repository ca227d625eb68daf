;; badptr.wat -- hostcalls with pointers outside linear memory.
;;
;; Exercises: bounds checks in every host function that reads or writes guest
;; memory. In proxy_on_request_headers it makes these calls and records each
;; returned proxy_status_t, in decimal, as a request header:
;;   x-badptr-ok        proxy_log(INFO, valid ptr, 5)               expect 0 (OK)
;;   x-badptr-oob       proxy_log(INFO, 0xFFFFFF00, 16)             expect 6
;;   x-badptr-straddle  proxy_log(INFO, memory_end - 8, 64)         expect 6
;;   x-badptr-wrap      proxy_log(INFO, 16, 0xFFFFFFF8): ptr + len
;;                      wraps around 2^32                           expect 6
;;   x-badptr-write     proxy_get_current_time_nanoseconds(0xFFFFFFF0):
;;                      the host's write lands out of bounds        expect 6
;; (6 = INVALID_MEMORY_ACCESS.)
;;
;; Host should: return INVALID_MEMORY_ACCESS instead of trapping, raising
;; into the gateway, or reading/writing anything; then forward the request
;; with the five headers.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "badptr")                 ;; 6 bytes, the valid message (first 5 logged)
  (data (i32.const 32) "x-badptr-ok")            ;; 11 bytes
  (data (i32.const 48) "x-badptr-oob")           ;; 12 bytes
  (data (i32.const 64) "x-badptr-straddle")      ;; 17 bytes
  (data (i32.const 96) "x-badptr-wrap")          ;; 13 bytes
  (data (i32.const 112) "x-badptr-write")        ;; 14 bytes
  ;; 1024..: decimal scratch

  ;; Bump allocator for the host's returned buffers; never frees.
  (global $heap (mut i32) (i32.const 4096))
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

  (func $record (param $key i32) (param $key_len i32) (param $status i32)
    (drop (call $add_header (i32.const 0) (local.get $key) (local.get $key_len)
                            (i32.const 1024) (call $utoa (local.get $status) (i32.const 1024)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $record (i32.const 32) (i32.const 11)
      (call $log (i32.const 2) (i32.const 16) (i32.const 5)))
    (call $record (i32.const 48) (i32.const 12)
      (call $log (i32.const 2) (i32.const 0xFFFFFF00) (i32.const 16)))
    (call $record (i32.const 64) (i32.const 17)
      (call $log (i32.const 2)
                 (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 8))
                 (i32.const 64)))
    (call $record (i32.const 96) (i32.const 13)
      (call $log (i32.const 2) (i32.const 16) (i32.const 0xFFFFFFF8)))
    (call $record (i32.const 112) (i32.const 14)
      (call $now (i32.const 0xFFFFFFF0)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
