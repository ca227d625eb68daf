;; import_memory.wat -- imports its linear memory from `env.memory` (what
;; `wasm-ld --import-memory` produces) instead of exporting one.
;;
;; Exercises: an import the host cannot satisfy at all. Proxy-Wasm hosts give a
;; module nothing but functions; the module must own its memory.
;;
;; Host should: refuse it at load with an error that names `env.memory` and
;; says why (the host provides no memory), not a bare "cannot instantiate".
(module
  (import "env" "memory" (memory 1))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
)
