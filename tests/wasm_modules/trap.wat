;; trap.wat -- proxy_on_request_headers executes `unreachable` on demand.
;;
;; Exercises: trap handling and instance rebuild. A request carrying the
;; header `x-trap` (any value) makes the callback trap. Any other request
;; goes upstream with `x-instance-requests: N`, where N counts the requests
;; this instance has handled since it was instantiated (a global, so it
;; starts again at 1 in a rebuilt instance).
;;
;; Host should: on the trap, answer per the fail strategy (fail_closed: 5xx
;; local reply; fail_open: skip the filter), log and count it, and rebuild the
;; instance: the next request without `x-trap` sees `x-instance-requests: 1`.
;; The trap must not take down the gateway or other plugins.
(module
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-trap")                ;; 6 bytes
  (data (i32.const 32) "x-instance-requests")   ;; 19 bytes
  ;; 1024: u32 value pointer, 1028: u32 value size, 1040..: decimal scratch

  (global $handled (mut i32) (i32.const 0))

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

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 16) (i32.const 6)
                                   (i32.const 1024) (i32.const 1028)))
      (then unreachable))                        ;; status OK: x-trap present
    (global.set $handled (i32.add (global.get $handled) (i32.const 1)))
    (drop (call $add_header (i32.const 0) (i32.const 32) (i32.const 19)
                            (i32.const 1040) (call $utoa (global.get $handled) (i32.const 1040))))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
