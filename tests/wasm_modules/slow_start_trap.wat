;; slow_start_trap.wat -- a module that takes 1.2 s to start and traps on every request.
;;
;; Exercises: rebuilding an instance after a trap off the event loop, with back-off.
;;
;; _initialize spins until 1.2 s (monotonic clock) have passed; it reads the clock
;; once per million iterations. proxy_on_request_headers hits `unreachable`.
;;
;; Host should: build instances in a worker thread (other routes keep their
;; latency while one starts), and rebuild after repeated traps only with growing
;; back-off (requests in between fail by the filter's fail strategy at once).
(module
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)

  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                               (i32.const -8)))
    (local.get $p))

  (func $now (result i64)
    (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 64)))
    (i64.load (i32.const 64)))

  (func (export "_initialize")
    (local $until i64) (local $i i32)
    (local.set $until (i64.add (call $now) (i64.const 1200000000)))
    (loop $spin
      (local.set $i (i32.const 1000000))
      (loop $inner
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br_if $inner (local.get $i)))
      (br_if $spin (i64.lt_u (call $now) (local.get $until)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (unreachable))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
