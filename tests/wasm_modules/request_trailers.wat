;; request_trailers.wat -- proxy_on_request_trailers and the request trailer map.
;;
;; When the request's trailers are about to go upstream it reads "x-check" from the
;; trailer map (HTTP_REQUEST_TRAILERS, 1), adds "x-wasm-saw: <that value>" (or
;; "none"), removes "x-drop", and replaces "x-swap" with "swapped".
;;
;; Host should: call proxy_on_request_trailers once per request with trailers, and
;; send the trailers the module left to the upstream.
(module
  (import "env" "proxy_get_header_map_value"
    (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value"
    (func $remove_header (param i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-check")  ;; 7 bytes
  (data (i32.const 32) "x-wasm-saw")  ;; 10 bytes
  (data (i32.const 48) "none")  ;; 4 bytes
  (data (i32.const 64) "x-drop")  ;; 6 bytes
  (data (i32.const 80) "x-swap")  ;; 6 bytes
  (data (i32.const 96) "swapped")  ;; 7 bytes
  ;; 4096: u32 returned ptr, 4100: u32 returned size; 16384..: heap.

  (global $heap (mut i32) (i32.const 16384))
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

  (func (export "proxy_on_request_trailers") (param $ctx i32) (param $n i32) (result i32)
    (if (i32.eqz (call $get_value (i32.const 1) (i32.const 16) (i32.const 7)
                                  (i32.const 4096) (i32.const 4100)))
      (then
        (drop (call $add_header (i32.const 1) (i32.const 32) (i32.const 10)
                                (i32.load (i32.const 4096)) (i32.load (i32.const 4100)))))
      (else
        (drop (call $add_header (i32.const 1) (i32.const 32) (i32.const 10)
                                (i32.const 48) (i32.const 4)))))
    (drop (call $remove_header (i32.const 1) (i32.const 64) (i32.const 6)))
    (drop (call $replace_header (i32.const 1) (i32.const 80) (i32.const 6)
                                (i32.const 96) (i32.const 7)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
