;; host_log.wat -- proxy_log, proxy_get_log_level, proxy_get_current_time_nanoseconds.
;;
;; In proxy_on_request_headers it makes these calls and adds each result to the
;; request (decimal):
;;   x-log-ok            proxy_log(INFO, "hello from host_log")     expect 0
;;   x-log-bad-level     proxy_log(6, "never logged"): no such level expect 2 (BAD_ARGUMENT)
;;   x-log-level-status  proxy_get_log_level                        expect 0
;;   x-log-level         the level it wrote (1 debug .. 4 error)
;;   x-time-status       proxy_get_current_time_nanoseconds          expect 0
;;   x-time-ns           the time it wrote (ns since the epoch)
;;
;; Host should: log the INFO line to the plugin's logger, refuse the bad level
;; without logging, report the logger's effective level, and the wall clock.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $get_log_level (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-log-ok")  ;; 8 bytes
  (data (i32.const 24) "hello from host_log")  ;; 19 bytes
  (data (i32.const 48) "x-log-bad-level")  ;; 15 bytes
  (data (i32.const 64) "never logged")  ;; 12 bytes
  (data (i32.const 80) "x-log-level-status")  ;; 18 bytes
  (data (i32.const 104) "x-log-level")  ;; 11 bytes
  (data (i32.const 120) "x-time-status")  ;; 13 bytes
  (data (i32.const 136) "x-time-ns")  ;; 9 bytes
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
    (call $req (i32.const 16) (i32.const 8) (call $log (i32.const 2) (i32.const 24) (i32.const 19)))
    (call $req (i32.const 48) (i32.const 15) (call $log (i32.const 6) (i32.const 64) (i32.const 12)))
    (call $req (i32.const 80) (i32.const 18) (call $get_log_level (i32.const 4112)))
    (call $req (i32.const 104) (i32.const 11) (i32.load (i32.const 4112)))
    (call $req (i32.const 120) (i32.const 13) (call $now (i32.const 4112)))
    (call $num64 (i32.const 0) (i32.const 136) (i32.const 9) (i64.load (i32.const 4112)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
