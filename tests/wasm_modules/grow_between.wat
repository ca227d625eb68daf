;; grow_between.wat -- grows linear memory between two host calls of one callback.
;;
;; proxy_on_request_headers adds `x-before: 1` (the host reads memory: a page), grows
;; memory by one page, copies the key `x-grown` and the value `yes` into the new page
;; (at 65536 + 16 and 65536 + 32) and adds that header from there, then adds
;; `x-grown-status: <status of that call>` (one digit) and continues.
;;
;; Host should: see the grown memory in the second call (x-grown: yes, status 0),
;; however it keeps track of the memory between host calls.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-grown")  ;; 7 bytes
  (data (i32.const 32) "yes")  ;; 3 bytes
  (data (i32.const 48) "x-before")  ;; 8 bytes
  (data (i32.const 64) "1")  ;; 1 byte
  (data (i32.const 80) "x-grown-status")  ;; 14 bytes

  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $status i32)
    (drop (call $add_header (i32.const 0) (i32.const 48) (i32.const 8) (i32.const 64) (i32.const 1)))
    (drop (memory.grow (i32.const 1)))
    (memory.copy (i32.const 65552) (i32.const 16) (i32.const 7))
    (memory.copy (i32.const 65568) (i32.const 32) (i32.const 3))
    (local.set $status
      (call $add_header (i32.const 0) (i32.const 65552) (i32.const 7) (i32.const 65568) (i32.const 3)))
    ;; the status as one ASCII digit at 96
    (i32.store8 (i32.const 96) (i32.add (i32.const 48) (local.get $status)))
    (drop (call $add_header (i32.const 0) (i32.const 80) (i32.const 14) (i32.const 96) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_abi_version_0_2_1")))
