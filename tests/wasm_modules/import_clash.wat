;; import_clash.wat -- imports `env.proxy_log` twice with two different types.
;;
;; Exercises: a repeated import that no single host function can satisfy (a
;; Wasm function has exactly one type).
;;
;; Host should: refuse it at load with an error that names `env.proxy_log` and
;; both types, not "cannot define".
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log_bad (param i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "never_called") (result i32)
    (drop (call $log (i32.const 0) (i32.const 0) (i32.const 0)))
    (call $log_bad (i64.const 0)))
)
