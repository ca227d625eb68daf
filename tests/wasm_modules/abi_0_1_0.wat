;; abi_0_1_0.wat -- a filter written against Proxy-Wasm ABI 0.1.0.
;;
;; Exercises: the proxy_abi_version_0_1_0 marker and the 0.1.0 callback arity,
;; where proxy_on_request_headers / proxy_on_response_headers take two
;; parameters (context_id, num_headers) and no end_of_stream.
;;
;; Host should: detect ABI 0.1.0 from the marker export, call the header
;; callbacks with two arguments, and forward the request upstream with
;; `x-abi: 0.1.0` added; the response gets `x-abi-response: 0.1.0`.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-abi")            ;; 5 bytes
  (data (i32.const 32) "0.1.0")            ;; 5 bytes
  (data (i32.const 48) "x-abi-response")   ;; 14 bytes

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

  (func (export "proxy_abi_version_0_1_0"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  ;; 0.1.0: (context_id, num_headers) -> action
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (result i32)
    (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 5)))
    (i32.const 0))                                     ;; CONTINUE

  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (result i32)
    (drop (call $add_header (i32.const 2) (i32.const 48) (i32.const 14) (i32.const 32) (i32.const 5)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
