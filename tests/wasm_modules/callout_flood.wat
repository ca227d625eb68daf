;; callout_flood.wat -- fires 100 HTTP calls from one callback, then one with a big body.
;;
;; Exercises: limits.max_http_calls and the body bound on proxy_http_call.
;;
;; proxy_on_request_headers calls proxy_http_call to upstream "v1" (GET /) 100
;; times with an empty body, then once with a 2048-byte body, and adds:
;;   x-call-fails     how many of the 100 did not return 0
;;   x-call-status    the last of the 100's status
;;   x-big-body       the status of the call with the 2048-byte body
;; proxy_on_http_call_response does nothing.
;;
;; Host should: refuse calls past max_http_calls in flight, and a body past
;; max_buffer_bytes, with BAD_ARGUMENT (2).
(module
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "v1")                  ;; 2 bytes
  (data (i32.const 32) "x-call-fails")        ;; 12 bytes
  (data (i32.const 48) "x-call-status")       ;; 13 bytes
  (data (i32.const 64) "x-big-body")          ;; 10 bytes
  ;; the serialised map (:method GET, :path /, :authority x): 61 bytes
  (data (i32.const 128)
    "\03\00\00\00"
    "\07\00\00\00\03\00\00\00" "\05\00\00\00\01\00\00\00" "\0a\00\00\00\01\00\00\00"
    ":method\00GET\00:path\00/\00:authority\00x\00")
  ;; 4096: u32 token, 4200..: decimal scratch, 8192..10239: the big body, 16384..: heap

  (global $heap (mut i32) (i32.const 16384))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                               (i32.const -8)))
    (local.get $p))

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

  (func $call (param $body_size i32) (result i32)
    (call $http_call (i32.const 16) (i32.const 2) (i32.const 128) (i32.const 61)
                     (i32.const 8192) (local.get $body_size) (i32.const 0) (i32.const 0)
                     (i32.const 1000) (i32.const 4096)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $status i32) (local $fails i32)
    (loop $calls
      (local.set $status (call $call (i32.const 0)))
      (if (local.get $status) (then (local.set $fails (i32.add (local.get $fails) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $calls (i32.lt_u (local.get $i) (i32.const 100))))
    (call $req (i32.const 32) (i32.const 12) (local.get $fails))
    (call $req (i32.const 48) (i32.const 13) (local.get $status))
    (call $req (i32.const 64) (i32.const 10) (call $call (i32.const 2048)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
