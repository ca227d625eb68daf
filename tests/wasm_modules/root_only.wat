;; root_only.wat -- a plugin with a root (plugin) context and nothing else,
;; like a Rust SDK plugin that only registers a RootContext (a background
;; task): it exports no proxy_on_request_* / proxy_on_response_* callbacks.
;;
;; Exercises: optional callbacks. Every proxy_on_* export is optional.
;; proxy_on_vm_start and proxy_on_configure log through proxy_log;
;; proxy_on_configure also starts a 1000 ms tick; proxy_on_tick logs.
;;
;; Host should: load it, call proxy_on_vm_start and proxy_on_configure (both
;; return true), run the tick, and pass every request and response through
;; unchanged (a missing callback means CONTINUE). A stream context may be
;; created for it or skipped; proxy_on_context_create accepts either.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "root_only: vm started")     ;; 21 bytes
  (data (i32.const 48) "root_only: configured")     ;; 21 bytes
  (data (i32.const 80) "root_only: tick")           ;; 15 bytes

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

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 21)))
    (i32.const 1))

  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 48) (i32.const 21)))
    (drop (call $set_tick (i32.const 1000)))
    (i32.const 1))

  (func (export "proxy_on_tick") (param i32)
    (drop (call $log (i32.const 1) (i32.const 80) (i32.const 15))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
