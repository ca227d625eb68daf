;; rust_root_only.wat -- like a Rust SDK plugin that registers only a root context:
;; it exports every HTTP callback (the SDK's dispatcher does), but creating an HTTP
;; context traps (the SDK panics: no HTTP context factory).
;;
;; Host should: on the first request, catch the trap in proxy_on_context_create, run
;; the plugin root-only from then on (no more HTTP contexts, no more traps), and let
;; the request through untouched. proxy_on_request_headers must never run: it would
;; add `x-should-not-run`.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-should-not-run")  ;; 16 bytes
  (data (i32.const 40) "1")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (if (i32.ne (local.get $parent) (i32.const 0)) (then unreachable)))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 16) (i32.const 40) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
