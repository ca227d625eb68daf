;; hog.wat -- makes the host hold as much memory as it lets it.
;;
;; Exercises: the host-side bounds of a filter (limits.max_shared_bytes,
;; max_queue_bytes, max_header_bytes, max_buffer_bytes).
;;
;; proxy_on_vm_start fills a 4 MiB blob (at 65536) with 'a'. Then, per request:
;;   proxy_on_request_headers
;;     three proxy_set_shared_data of the 4 MiB blob, each under a new key
;;     "hog-N"                    x-shared-fails  how many did not return 0
;;                                x-shared-status the last status
;;     register queue "hog", enqueue the 4 MiB blob (nobody dequeues)
;;                                x-queue-status  the enqueue's status
;;     100 x proxy_add_header_map_value "x-pad" with 4 KiB of 'a', then
;;     remove "x-pad" again       x-header-fails  how many adds did not return 0
;;   proxy_on_request_body (when the filter gets the body)
;;     12 x prepend 1 MiB to the body, then empty the body again
;;                                x-body-fails    how many prepends did not return 0
;;
;; Host should: refuse what passes a bound with BAD_ARGUMENT (2), count it, and
;; free shared data and queues when the last filter of the vm_id is closed.
(module
  (import "env" "proxy_set_shared_data"
    (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue"
    (func $register_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value"
    (func $remove_header (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes"
    (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 66)
  (data (i32.const 16) "hog-")               ;; 4 bytes, the key's digits follow at 20
  (data (i32.const 48) "x-shared-fails")     ;; 14 bytes
  (data (i32.const 64) "x-shared-status")    ;; 15 bytes
  (data (i32.const 80) "hog")                ;; 3 bytes
  (data (i32.const 96) "x-queue-status")     ;; 14 bytes
  (data (i32.const 112) "x-header-fails")    ;; 14 bytes
  (data (i32.const 128) "x-pad")             ;; 5 bytes
  (data (i32.const 144) "x-body-fails")      ;; 12 bytes
  ;; Memory: strings from 16; 4104: u32 queue id, 4200..: decimal scratch,
  ;; 65536..4259839: the blob, 4259840..: heap.

  (global $heap (mut i32) (i32.const 4259840))
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

  (func $req (param $key i32) (param $klen i32) (param $n i32)
    (drop (call $add_header (i32.const 0) (local.get $key) (local.get $klen)
                            (i32.const 4200) (call $utoa (local.get $n) (i32.const 4200)))))

  (global $keys (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (memory.fill (i32.const 65536) (i32.const 97) (i32.const 4194304))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $status i32) (local $fails i32) (local $klen i32)
    ;; shared data: three new keys of 4 MiB each
    (local.set $i (i32.const 0))
    (loop $sets
      (local.set $klen (i32.add (i32.const 4) (call $utoa (global.get $keys) (i32.const 20))))
      (global.set $keys (i32.add (global.get $keys) (i32.const 1)))
      (local.set $status (call $set_shared (i32.const 16) (local.get $klen)
                                           (i32.const 65536) (i32.const 4194304) (i32.const 0)))
      (if (local.get $status) (then (local.set $fails (i32.add (local.get $fails) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $sets (i32.lt_u (local.get $i) (i32.const 3))))
    (call $req (i32.const 48) (i32.const 14) (local.get $fails))
    (call $req (i32.const 64) (i32.const 15) (local.get $status))
    ;; a queue nobody reads
    (drop (call $register_queue (i32.const 80) (i32.const 3) (i32.const 4104)))
    (call $req (i32.const 96) (i32.const 14)
      (call $enqueue (i32.load (i32.const 4104)) (i32.const 65536) (i32.const 4194304)))
    ;; 400 KiB of request headers, removed again
    (local.set $fails (i32.const 0))
    (local.set $i (i32.const 0))
    (loop $adds
      (if (call $add_header (i32.const 0) (i32.const 128) (i32.const 5)
                            (i32.const 65536) (i32.const 4096))
        (then (local.set $fails (i32.add (local.get $fails) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $adds (i32.lt_u (local.get $i) (i32.const 100))))
    (drop (call $remove_header (i32.const 0) (i32.const 128) (i32.const 5)))
    (call $req (i32.const 112) (i32.const 14) (local.get $fails))
    (i32.const 0))

  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (local $i i32) (local $fails i32)
    (loop $prepends
      (if (call $set_buffer (i32.const 0) (i32.const 0) (i32.const 0)
                            (i32.const 65536) (i32.const 1048576))
        (then (local.set $fails (i32.add (local.get $fails) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $prepends (i32.lt_u (local.get $i) (i32.const 12))))
    (drop (call $set_buffer (i32.const 0) (i32.const 0) (i32.const 0x7fffffff)
                            (i32.const 65536) (i32.const 0)))
    (call $req (i32.const 144) (i32.const 12) (local.get $fails))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
