;; repeated_imports.wat -- imports the same host functions more than once, as
;; modules built by Go >= 1.24 (GOOS=wasip1, -buildmode=c-shared) do: Go's runtime
;; and its syscall package each import `wasi_snapshot_preview1.fd_write`.
;;
;; Exercises: linking a module whose import section names one (module, name)
;; pair twice, for WASI and for a Proxy-Wasm host function.
;;
;; Host should: load it, satisfy both imports with the same host function, and
;; run it: through each copy of `env.proxy_add_header_map_value` the request gets
;; one header (`x-first: 1`, `x-second: 2`), and each copy of `fd_write` logs a
;; line ("first fd_write", "second fd_write"). Refusing the module ("cannot
;; define wasi_snapshot_preview1.fd_write") is the bug this module guards.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write_a (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header_a (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write_b (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header_b (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-first")           ;; 7 bytes
  (data (i32.const 32) "x-second")          ;; 8 bytes
  (data (i32.const 48) "12")                ;; "1" at 48, "2" at 49
  (data (i32.const 64) "first fd_write\n")  ;; 15 bytes
  (data (i32.const 96) "second fd_write\n") ;; 16 bytes
  ;; iovecs: (ptr, len) pairs at 128 and 136; bytes written land at 144
  (data (i32.const 128) "\40\00\00\00\0f\00\00\00")
  (data (i32.const 136) "\60\00\00\00\10\00\00\00")

  ;; Bump allocator for the host's returned buffers; never frees.
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                               (i32.const -8)))
    (local.get $p))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header_a (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 48) (i32.const 1)))
    (drop (call $add_header_b (i32.const 0) (i32.const 32) (i32.const 8) (i32.const 49) (i32.const 1)))
    (drop (call $fd_write_a (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 144)))
    (drop (call $fd_write_b (i32.const 1) (i32.const 136) (i32.const 1) (i32.const 144)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
