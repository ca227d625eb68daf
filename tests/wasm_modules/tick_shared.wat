;; tick_shared.wat -- a timer that counts in the shared key-value store.
;;
;; Exercises: proxy_set_tick_period_milliseconds, proxy_on_tick, and
;; compare-and-swap on proxy_get_shared_data / proxy_set_shared_data.
;;
;; proxy_on_configure sets a 20 ms tick. proxy_on_tick increments the shared
;; key "tick_shared.ticks" (value: u32 little-endian, 4 bytes) with a CAS
;; loop: get (NOT_FOUND -> 0 with cas 0), set with the returned cas, retry on
;; CAS_MISMATCH (at most 8 tries). proxy_on_request_headers reads the value
;; and adds request headers:
;;   x-ticks      the count, in decimal (0 while the key does not exist)
;;   x-stale-cas  status of a set with a deliberately wrong (non-zero) cas:
;;                expect 8 (CAS_MISMATCH); the value is left unchanged
;;
;; Host should: call proxy_on_tick on the root context about every 20 ms,
;; keep shared data (and its cas) across callbacks and contexts, bump the cas
;; on every successful set, and reject a set whose non-zero cas is stale.
;; x-ticks grows between requests a few ticks apart.
(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_get_shared_data"
    (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data"
    (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "tick_shared.ticks")   ;; 17 bytes
  (data (i32.const 48) "x-ticks")             ;; 7 bytes
  (data (i32.const 64) "x-stale-cas")         ;; 11 bytes
  ;; 1024: u32 returned ptr, 1028: u32 returned size, 1032: u32 cas,
  ;; 1040: u32 new value, 1056..: decimal scratch

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

  ;; Value from the last successful get (0 when shorter than 4 bytes).
  (func $value (result i32)
    (if (result i32) (i32.ge_u (i32.load (i32.const 1028)) (i32.const 4))
      (then (i32.load (i32.load (i32.const 1024))))
      (else (i32.const 0))))

  (func $get (result i32)
    (call $get_shared (i32.const 16) (i32.const 17) (i32.const 1024) (i32.const 1028) (i32.const 1032)))

  (func $increment (result i32)
    (local $try i32) (local $status i32) (local $cas i32) (local $n i32)
    (loop $retry
      (local.set $status (call $get))
      (if (i32.eqz (local.get $status))
        (then (local.set $n (call $value)) (local.set $cas (i32.load (i32.const 1032))))
        (else
          (if (i32.ne (local.get $status) (i32.const 1)) (then (return (local.get $status))))
          (local.set $n (i32.const 0))
          (local.set $cas (i32.const 0))))
      (i32.store (i32.const 1040) (i32.add (local.get $n) (i32.const 1)))
      (local.set $status (call $set_shared (i32.const 16) (i32.const 17)
                                           (i32.const 1040) (i32.const 4) (local.get $cas)))
      (local.set $try (i32.add (local.get $try) (i32.const 1)))
      (br_if $retry (i32.and (i32.eq (local.get $status) (i32.const 8))
                             (i32.lt_u (local.get $try) (i32.const 8)))))
    (local.get $status))

  (func $add_number (param $key i32) (param $key_len i32) (param $n i32)
    (drop (call $add_header (i32.const 0) (local.get $key) (local.get $key_len)
                            (i32.const 1056) (call $utoa (local.get $n) (i32.const 1056)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $set_tick (i32.const 20)))
    (i32.const 1))

  (func (export "proxy_on_tick") (param i32)
    (drop (call $increment)))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get))
      (then
        (call $add_number (i32.const 48) (i32.const 7) (call $value))
        (call $add_number (i32.const 64) (i32.const 11)
          (call $set_shared (i32.const 16) (i32.const 17)
                            (i32.load (i32.const 1024)) (i32.load (i32.const 1028))
                            (i32.xor (i32.load (i32.const 1032)) (i32.const 0x80000000)))))
      (else
        (call $add_number (i32.const 48) (i32.const 7) (i32.const 0))))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
