;; host_shared.wat -- shared data (with CAS) and shared queues.
;;
;; proxy_on_request_headers, on the key "host_shared.k" (it expects the key not
;; to exist on the first request):
;;   x-get-missing    get                                     expect 1 (NOT_FOUND)
;;   x-set            set "v1", cas 0                          expect 0
;;   x-get            get                                     expect 0
;;   x-get-value      the value it got                        "v1"
;;   x-cas-mismatch   set "v2" with the cas it got + 1         expect 8 (CAS_MISMATCH)
;;   x-cas-ok         set "v3" with the cas it got             expect 0
;;   x-final-value    get again                               "v3"
;; and on the queue "host_shared.q":
;;   x-ready-before   proxy_on_queue_ready calls so far (the host calls it after
;;                    an enqueue, on the root context)
;;   x-q-register     proxy_register_shared_queue             expect 0
;;   x-q-resolve      proxy_resolve_shared_queue(vm_id "", same name)  expect 0
;;   x-q-same-id      1 when resolve gave the registered id
;;   x-q-resolve-missing  resolve "host_shared.none"          expect 1 (NOT_FOUND)
;;   x-q-empty        dequeue                                  expect 7 (EMPTY)
;;   x-q-enqueue      enqueue "item-1"                         expect 0
;;   x-q-dequeue      dequeue                                  expect 0
;;   x-q-item         the item it got                          "item-1"
;;   x-q-enqueue-bad  enqueue on queue id 999999               expect 1 (NOT_FOUND)
(module
  (import "env" "proxy_get_shared_data"
    (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data"
    (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue"
    (func $register_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue"
    (func $resolve_queue (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "host_shared.k")  ;; 13 bytes
  (data (i32.const 32) "x-get-missing")  ;; 13 bytes
  (data (i32.const 48) "x-set")  ;; 5 bytes
  (data (i32.const 56) "v1")  ;; 2 bytes
  (data (i32.const 64) "x-get")  ;; 5 bytes
  (data (i32.const 72) "x-get-value")  ;; 11 bytes
  (data (i32.const 88) "x-cas-mismatch")  ;; 14 bytes
  (data (i32.const 104) "v2")  ;; 2 bytes
  (data (i32.const 112) "x-cas-ok")  ;; 8 bytes
  (data (i32.const 120) "v3")  ;; 2 bytes
  (data (i32.const 128) "x-final-value")  ;; 13 bytes
  (data (i32.const 144) "x-ready-before")  ;; 14 bytes
  (data (i32.const 160) "x-q-register")  ;; 12 bytes
  (data (i32.const 176) "host_shared.q")  ;; 13 bytes
  (data (i32.const 192) "x-q-resolve")  ;; 11 bytes
  (data (i32.const 208) "x-q-same-id")  ;; 11 bytes
  (data (i32.const 224) "x-q-resolve-missing")  ;; 19 bytes
  (data (i32.const 248) "host_shared.none")  ;; 16 bytes
  (data (i32.const 264) "x-q-empty")  ;; 9 bytes
  (data (i32.const 280) "x-q-enqueue")  ;; 11 bytes
  (data (i32.const 296) "item-1")  ;; 6 bytes
  (data (i32.const 304) "x-q-dequeue")  ;; 11 bytes
  (data (i32.const 320) "x-q-item")  ;; 8 bytes
  (data (i32.const 328) "x-q-enqueue-bad")  ;; 15 bytes
  (data (i32.const 344) "lost")  ;; 4 bytes
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

  (global $ready (mut i32) (i32.const 0))

  (func $get (result i32)
    (call $get_shared (i32.const 16) (i32.const 13) (i32.const 4096) (i32.const 4100) (i32.const 4104)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_queue_ready") (param i32 i32)
    (global.set $ready (i32.add (global.get $ready) (i32.const 1))))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $cas i32) (local $qid i32)
    (call $req (i32.const 32) (i32.const 13) (call $get))
    (call $req (i32.const 48) (i32.const 5) (call $set_shared (i32.const 16) (i32.const 13) (i32.const 56) (i32.const 2) (i32.const 0)))
    (call $req (i32.const 64) (i32.const 5) (call $get))
    (call $reqs (i32.const 72) (i32.const 11) (call $rptr) (call $rlen))
    (local.set $cas (i32.load (i32.const 4104)))
    (call $req (i32.const 88) (i32.const 14)
      (call $set_shared (i32.const 16) (i32.const 13) (i32.const 104) (i32.const 2) (i32.add (local.get $cas) (i32.const 1))))
    (call $req (i32.const 112) (i32.const 8) (call $set_shared (i32.const 16) (i32.const 13) (i32.const 120) (i32.const 2) (local.get $cas)))
    (drop (call $get))
    (call $reqs (i32.const 128) (i32.const 13) (call $rptr) (call $rlen))

    (call $req (i32.const 144) (i32.const 14) (global.get $ready))
    (call $req (i32.const 160) (i32.const 12) (call $register_queue (i32.const 176) (i32.const 13) (i32.const 4104)))
    (local.set $qid (i32.load (i32.const 4104)))
    (call $req (i32.const 192) (i32.const 11)
      (call $resolve_queue (i32.const 0) (i32.const 0) (i32.const 176) (i32.const 13) (i32.const 4104)))
    (call $req (i32.const 208) (i32.const 11) (i32.eq (i32.load (i32.const 4104)) (local.get $qid)))
    (call $req (i32.const 224) (i32.const 19)
      (call $resolve_queue (i32.const 0) (i32.const 0) (i32.const 248) (i32.const 16) (i32.const 4104)))
    (call $req (i32.const 264) (i32.const 9) (call $dequeue (local.get $qid) (i32.const 4096) (i32.const 4100)))
    (call $req (i32.const 280) (i32.const 11) (call $enqueue (local.get $qid) (i32.const 296) (i32.const 6)))
    (call $req (i32.const 304) (i32.const 11) (call $dequeue (local.get $qid) (i32.const 4096) (i32.const 4100)))
    (call $reqs (i32.const 320) (i32.const 8) (call $rptr) (call $rlen))
    (call $req (i32.const 328) (i32.const 15) (call $enqueue (i32.const 999999) (i32.const 344) (i32.const 4)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
