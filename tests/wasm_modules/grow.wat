;; grow.wat -- proxy_on_request_headers grows linear memory without bound.
;;
;; Exercises: the per-plugin linear memory cap. The memory is declared without
;; a maximum, so only the host's limit stops it. The callback grows one page
;; (64 KiB) at a time until memory.grow fails (returns -1), then traps with
;; `unreachable`, as a real allocator's out-of-memory handler would.
;;
;; Host should: refuse growth past the plugin's memory cap (memory.grow returns
;; -1, or the store limiter traps); either way the callback ends in a trap,
;; the request follows the fail strategy (5xx under fail_closed), the event is
;; logged and counted, and the instance is rebuilt with fresh memory. Host
;; memory must not grow past the cap however often the request repeats.
(module
  (memory (export "memory") 1)

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
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable)

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
