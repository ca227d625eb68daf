;; unknown_import.wat -- imports functions no host provides, never calls them.
;;
;; Exercises: linking with imports the host does not know:
;; `env.proxy_something_new` (a hostcall from a future ABI) and `foo.bar`
;; (a foreign module). SDKs often import more than a given filter uses.
;;
;; Host should: load the module anyway (warn at load time), linking each
;; unknown import to a stub that traps if it is ever called, and run it as a
;; normal filter: the request goes upstream with `x-unknown-import: ok`.
;; Rejecting the module at load, or failing the request, is wrong here.
(module
  (import "env" "proxy_something_new" (func $something_new (param i32 i32) (result i32)))
  (import "foo" "bar" (func $foo_bar))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-unknown-import")   ;; 16 bytes
  (data (i32.const 48) "ok")                 ;; 2 bytes

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
    (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 16) (i32.const 48) (i32.const 2)))
    (i32.const 0))

  ;; Never called by the host: it exists so the imports are referenced.
  (func (export "never_called") (result i32)
    (call $foo_bar)
    (call $something_new (i32.const 0) (i32.const 0)))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
