;; shared_vm.wat -- one instance, several root contexts (VM sharing by vm_id).
;;
;; proxy_on_configure(root) keeps the root's plugin configuration (up to 64
;; bytes). A root whose configuration has 's' at byte 10 ({"role": "service"})
;; sets a 20 ms tick; on each tick it resolves the queue "jobs" of its own vm_id
;; and enqueues "tick". Any other root registers the queue "jobs".
;; proxy_on_queue_ready dequeues one item and counts it (global $dequeued),
;; remembering the root context it was delivered to.
;; proxy_on_request_headers counts requests in a global of the instance and adds
;; to the request: x-count (requests this instance saw), x-root (the stream's
;; root context id), x-config (that root's configuration), x-dequeued and
;; x-ready-root.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_register_shared_queue"
    (func $register_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue"
    (func $resolve_queue (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue"
    (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue"
    (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "jobs")          ;; 4
  (data (i32.const 24) "tick")          ;; 4
  (data (i32.const 32) "x-count")       ;; 7
  (data (i32.const 48) "x-root")        ;; 6
  (data (i32.const 64) "x-config")      ;; 8
  (data (i32.const 80) "x-dequeued")    ;; 10
  (data (i32.const 96) "x-ready-root")  ;; 12
  ;; 2048..2303: root context id by stream id % 64; 2800..2831: config length by
  ;; root id % 8; 3072..3583: config bytes (64 each) by root id % 8; 4096: u32
  ;; returned ptr, 4100: u32 returned size, 4104: u32 queue id, 4200..: decimal
  ;; scratch, 16384..: heap.

  (global $count (mut i32) (i32.const 0))
  (global $dequeued (mut i32) (i32.const 0))
  (global $ready_root (mut i32) (i32.const 0))
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

  (func $utoa (param $n i32) (param $out i32) (result i32)
    (local $len i32) (local $t i32) (local $i i32)
    (local.set $t (local.get $n))
    (local.set $len (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $count)))
    (local.set $i (local.get $len))
    (loop $write
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (i32.add (local.get $out) (local.get $i))
                  (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $write (local.get $i)))
    (local.get $len))

  (func $num (param $key i32) (param $klen i32) (param $n i32)
    (drop (call $add_header (i32.const 0) (local.get $key) (local.get $klen)
                            (i32.const 4200) (call $utoa (local.get $n) (i32.const 4200)))))
  (func $slot (param $root i32) (result i32)
    (i32.add (i32.const 3072) (i32.shl (i32.and (local.get $root) (i32.const 7)) (i32.const 6))))
  (func $slot_len (param $root i32) (result i32)
    (i32.add (i32.const 2800) (i32.shl (i32.and (local.get $root) (i32.const 7)) (i32.const 2))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (if (local.get $parent)
      (then (i32.store (i32.add (i32.const 2048)
                                (i32.shl (i32.and (local.get $ctx) (i32.const 63)) (i32.const 2)))
                       (local.get $parent)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_configure") (param $root i32) (param i32) (result i32)
    (local $len i32)
    (if (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 64)
                          (i32.const 4096) (i32.const 4100))
      (then (return (i32.const 1))))
    (local.set $len (i32.load (i32.const 4100)))
    (memory.copy (call $slot (local.get $root)) (i32.load (i32.const 4096)) (local.get $len))
    (i32.store (call $slot_len (local.get $root)) (local.get $len))
    (if (i32.and (i32.gt_u (local.get $len) (i32.const 10))
                 (i32.eq (i32.load8_u (i32.add (i32.load (i32.const 4096)) (i32.const 10)))
                         (i32.const 115)))                     ;; 's': the service
      (then (drop (call $set_tick (i32.const 20))))
      (else (drop (call $register_queue (i32.const 16) (i32.const 4) (i32.const 4104)))))
    (i32.const 1))

  (func (export "proxy_on_tick") (param i32)
    (if (i32.eqz (call $resolve_queue (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 4)
                                      (i32.const 4104)))
      (then (drop (call $enqueue (i32.load (i32.const 4104)) (i32.const 24) (i32.const 4))))))

  (func (export "proxy_on_queue_ready") (param $root i32) (param $qid i32)
    (if (i32.eqz (call $dequeue (local.get $qid) (i32.const 4096) (i32.const 4100)))
      (then
        (global.set $dequeued (i32.add (global.get $dequeued) (i32.const 1)))
        (global.set $ready_root (local.get $root)))))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $root i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (local.set $root (i32.load (i32.add (i32.const 2048)
                                        (i32.shl (i32.and (local.get $ctx) (i32.const 63))
                                                 (i32.const 2)))))
    (call $num (i32.const 32) (i32.const 7) (global.get $count))
    (call $num (i32.const 48) (i32.const 6) (local.get $root))
    (drop (call $add_header (i32.const 0) (i32.const 64) (i32.const 8)
                            (call $slot (local.get $root))
                            (i32.load (call $slot_len (local.get $root)))))
    (call $num (i32.const 80) (i32.const 10) (global.get $dequeued))
    (call $num (i32.const 96) (i32.const 12) (global.get $ready_root))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
