;; pause_deny.wat -- an authorisation call whose answer denies the request.
;;
;; proxy_on_request_headers sends GET /status/418 (:authority "auth.test") to
;; the upstream named "auth" with proxy_http_call and returns PAUSE; it keeps
;; the stream context id by call id (one call in flight per token, up to 64).
;; proxy_on_http_call_response makes that stream effective, reads the call's
;; status with proxy_get_status, and answers the paused request with
;; proxy_send_local_response: 403, header "x-denied: by-call", body
;; "<get_status's result> <the code it wrote>" in decimal (e.g. "0 418").
;; If proxy_http_call fails the request continues with `x-call-error: <status>`.
;;
;; Host should: deliver the local reply to the client; the route's upstream is
;; never called.
(module
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_status" (func $get_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context"
    (func $set_effective_context (param i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "auth")  ;; 4 bytes
  (data (i32.const 24) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\0b\00\00\00\0a\00\00\00\09\00\00\00:method\00GET\00:path\00/status/418\00:authority\00auth.test\00")  ;; 79 bytes
  (data (i32.const 104) "x-call-error")  ;; 12 bytes
  (data (i32.const 120) "\01\00\00\00\08\00\00\00\07\00\00\00x-denied\00by-call\00")  ;; 29 bytes
  ;; Memory: strings from 16; 4096: u32 returned ptr, 4100: u32 returned size,
  ;; 4104: u32 cas / id, 4112: u64 value, 4200..: decimal scratch,
  ;; 8192..16383: scratch, 16384..: heap.

  ;; Bump allocator for the host's returned buffers; never frees.
  (global $heap (mut i32) (i32.const 16384))
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

  ;; Writes n (unsigned) in decimal at out; returns the number of bytes written.
  (func $utoa (param $n i64) (param $out i32) (result i32)
    (local $len i32) (local $t i64) (local $i i32)
    (local.set $t (local.get $n))
    (local.set $len (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i64.lt_u (local.get $t) (i64.const 10)))
        (local.set $t (i64.div_u (local.get $t) (i64.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $count)))
    (local.set $i (local.get $len))
    (loop $write
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i64.store8 (i32.add (local.get $out) (local.get $i))
                  (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $write (local.get $i)))
    (local.get $len))

  ;; Report helpers: add a header to map $map (0 request, 2 response).
  (func $num64 (param $map i32) (param $key i32) (param $klen i32) (param $n i64)
    (drop (call $add_header (local.get $map) (local.get $key) (local.get $klen)
                            (i32.const 4200) (call $utoa (local.get $n) (i32.const 4200)))))
  (func $req (param $key i32) (param $klen i32) (param $n i32)
    (call $num64 (i32.const 0) (local.get $key) (local.get $klen) (i64.extend_i32_u (local.get $n))))
  (func $resp (param $key i32) (param $klen i32) (param $n i32)
    (call $num64 (i32.const 2) (local.get $key) (local.get $klen) (i64.extend_i32_u (local.get $n))))
  (func $reqs (param $key i32) (param $klen i32) (param $ptr i32) (param $len i32)
    (drop (call $add_header (i32.const 0) (local.get $key) (local.get $klen)
                            (local.get $ptr) (local.get $len))))
  (func $resps (param $key i32) (param $klen i32) (param $ptr i32) (param $len i32)
    (drop (call $add_header (i32.const 2) (local.get $key) (local.get $klen)
                            (local.get $ptr) (local.get $len))))
  ;; The pointer and size the last host call returned (at 4096 and 4100).
  (func $rptr (result i32) (i32.load (i32.const 4096)))
  (func $rlen (result i32) (i32.load (i32.const 4100)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $status i32)
    (local.set $status
      (call $http_call (i32.const 16) (i32.const 4)
                       (i32.const 24) (i32.const 79)
                       (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                       (i32.const 5000) (i32.const 4104)))
    (if (local.get $status)
      (then
        (call $req (i32.const 104) (i32.const 12) (local.get $status))
        (return (i32.const 0))))
    ;; 2048 + 4 * (token % 64): the stream waiting for that call
    (i32.store (i32.add (i32.const 2048)
                        (i32.shl (i32.and (i32.load (i32.const 4104)) (i32.const 63)) (i32.const 2)))
               (local.get $ctx))
    (i32.const 1))                                    ;; PAUSE

  (func (export "proxy_on_http_call_response")
    (param i32) (param $token i32) (param i32 i32 i32)
    (local $status i32) (local $len i32)
    (drop (call $set_effective_context
      (i32.load (i32.add (i32.const 2048)
                         (i32.shl (i32.and (local.get $token) (i32.const 63)) (i32.const 2))))))
    (local.set $status (call $get_status (i32.const 4112) (i32.const 4096) (i32.const 4100)))
    (local.set $len (call $utoa (i64.extend_i32_u (local.get $status)) (i32.const 8192)))
    (i32.store8 (i32.add (i32.const 8192) (local.get $len)) (i32.const 32))
    (local.set $len (i32.add (local.get $len) (i32.const 1)))
    (local.set $len (i32.add (local.get $len)
      (call $utoa (i64.extend_i32_u (i32.load (i32.const 4112)))
                  (i32.add (i32.const 8192) (local.get $len)))))
    (drop (call $send_local_response (i32.const 403) (i32.const 0) (i32.const 0)
                                     (i32.const 8192) (local.get $len)
                                     (i32.const 120) (i32.const 29) (i32.const -1))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
