;; stubbed_imports.wat -- calls imports the host does not implement: a WASI
;; function (`wasi_snapshot_preview1.path_open`, which Go's runtime imports) and a
;; Proxy-Wasm one from a newer ABI (`env.proxy_something_new`).
;;
;; Exercises: what an unimplemented import answers when it is called. A WASI
;; function should fail as WASI does for a call the system lacks (errno NOSYS,
;; 52); a Proxy-Wasm function with the status UNIMPLEMENTED (12). 12 means
;; CONNABORTED to WASI code, which would send a runtime down the wrong path.
;;
;; Host should: load the module; the request goes upstream with
;; `x-wasi-stub: 52` and `x-env-stub: 12` (two decimal digits each).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "env" "proxy_something_new" (func $something_new (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-wasi-stub")  ;; 11 bytes
  (data (i32.const 32) "x-env-stub")   ;; 10 bytes

  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                               (i32.const -8)))
    (local.get $p))

  ;; Writes `value` (0..99) as two ASCII digits at `ptr`.
  (func $digits (param $ptr i32) (param $value i32)
    (i32.store8 (local.get $ptr)
      (i32.add (i32.const 48) (i32.div_u (local.get $value) (i32.const 10))))
    (i32.store8 (i32.add (local.get $ptr) (i32.const 1))
      (i32.add (i32.const 48) (i32.rem_u (local.get $value) (i32.const 10)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $digits (i32.const 48)
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                       (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 64)))
    (call $digits (i32.const 56) (call $something_new (i32.const 0) (i32.const 0)))
    (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 11) (i32.const 48) (i32.const 2)))
    (drop (call $add_header (i32.const 0) (i32.const 32) (i32.const 10) (i32.const 56) (i32.const 2)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
