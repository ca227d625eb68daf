;; callout_cluster.wat -- proxy_http_call to a cluster the client names.
;;
;; proxy_on_request_headers calls the cluster named by the request header
;; `x-cluster` with the request's own header map (so the call's :method, :path
;; and :authority are the client's), body "ping", one trailer `x-t: 1` and a
;; 500 ms timeout, then returns PAUSE. If proxy_http_call fails it answers at
;; once: 503 with `x-call-error: <status>`.
;; proxy_on_http_call_response makes the caller's stream effective; with no
;; headers (the call failed or timed out) it answers 504 with
;; `x-call-counts: <headers>/<body>/<trailers>` (502 if the failed call's header
;; map still yields a `:status`, as it must not); otherwise it adds to the
;; request `x-call-status` (the call's :status), `x-call-ctype` (its
;; content-type), `x-call-body` (its first 64 bytes) and `x-call-counts`, and
;; resumes the request with proxy_continue_stream.
(module
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context"
    (func $set_effective_context (param i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs"
    (func $get_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-cluster")      ;; 9
  (data (i32.const 32) "x-call-error")   ;; 12
  (data (i32.const 48) "x-call-status")  ;; 13
  (data (i32.const 64) "x-call-body")    ;; 11
  (data (i32.const 80) "x-call-counts")  ;; 13
  (data (i32.const 96) ":status")        ;; 7
  (data (i32.const 104) "ping")          ;; 4
  (data (i32.const 112) "\01\00\00\00\03\00\00\00\01\00\00\00x-t\001\00")  ;; 18
  (data (i32.const 136) "x-call-ctype")  ;; 12
  (data (i32.const 152) "content-type")  ;; 12
  (data (i32.const 168) "\00\00\00\00")  ;; an empty map: 4
  ;; 2048..2303: stream context id by token % 64; 4096: u32 returned ptr,
  ;; 4100: u32 returned size, 4104: u32 token, 4200..: decimal scratch,
  ;; 8192..: counts scratch, 16384..: heap.

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

  ;; Writes n in decimal at out; returns the number of bytes written.
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

  (func $rptr (result i32) (i32.load (i32.const 4096)))
  (func $rlen (result i32) (i32.load (i32.const 4100)))

  ;; "<a>/<b>/<c>" at 8192; returns its length.
  (func $counts (param $a i32) (param $b i32) (param $c i32) (result i32)
    (local $len i32)
    (local.set $len (call $utoa (local.get $a) (i32.const 8192)))
    (i32.store8 (i32.add (i32.const 8192) (local.get $len)) (i32.const 47))
    (local.set $len (i32.add (local.get $len) (i32.const 1)))
    (local.set $len (i32.add (local.get $len)
      (call $utoa (local.get $b) (i32.add (i32.const 8192) (local.get $len)))))
    (i32.store8 (i32.add (i32.const 8192) (local.get $len)) (i32.const 47))
    (local.set $len (i32.add (local.get $len) (i32.const 1)))
    (i32.add (local.get $len)
      (call $utoa (local.get $c) (i32.add (i32.const 8192) (local.get $len)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $cptr i32) (local $clen i32) (local $status i32) (local $len i32)
    (if (call $get_header (i32.const 0) (i32.const 16) (i32.const 9)
                          (i32.const 4096) (i32.const 4100))
      (then (return (i32.const 0))))                  ;; no x-cluster: nothing to do
    (local.set $cptr (call $rptr))
    (local.set $clen (call $rlen))
    (drop (call $get_pairs (i32.const 0) (i32.const 4096) (i32.const 4100)))
    (local.set $status
      (call $http_call (local.get $cptr) (local.get $clen)
                       (call $rptr) (call $rlen)
                       (i32.const 104) (i32.const 4)
                       (i32.const 112) (i32.const 18)
                       (i32.const 500) (i32.const 4104)))
    (if (local.get $status)
      (then
        (local.set $len (call $utoa (local.get $status) (i32.const 4200)))
        ;; one header pair "x-call-error: <status>" built at 8192
        (i32.store (i32.const 8192) (i32.const 1))
        (i32.store (i32.const 8196) (i32.const 12))
        (i32.store (i32.const 8200) (local.get $len))
        (memory.copy (i32.const 8204) (i32.const 32) (i32.const 12))
        (i32.store8 (i32.const 8216) (i32.const 0))
        (memory.copy (i32.const 8217) (i32.const 4200) (local.get $len))
        (i32.store8 (i32.add (i32.const 8217) (local.get $len)) (i32.const 0))
        (drop (call $send_local_response (i32.const 503) (i32.const 0) (i32.const 0)
                                         (i32.const 0) (i32.const 0)
                                         (i32.const 8192) (i32.add (i32.const 26) (local.get $len))
                                         (i32.const -1)))
        (return (i32.const 1))))
    (i32.store (i32.add (i32.const 2048)
                        (i32.shl (i32.and (i32.load (i32.const 4104)) (i32.const 63)) (i32.const 2)))
               (local.get $ctx))
    (i32.const 1))                                    ;; PAUSE

  (func (export "proxy_on_http_call_response")
    (param i32) (param $token i32) (param $nh i32) (param $bs i32) (param $nt i32)
    (local $len i32) (local $code i32)
    (drop (call $set_effective_context
      (i32.load (i32.add (i32.const 2048)
                         (i32.shl (i32.and (local.get $token) (i32.const 63)) (i32.const 2))))))
    (local.set $len (call $counts (local.get $nh) (local.get $bs) (local.get $nt)))
    (if (i32.eqz (local.get $nh))
      (then
        ;; "x-call-counts: <counts>" as a one-pair map at 12288
        (i32.store (i32.const 12288) (i32.const 1))
        (i32.store (i32.const 12292) (i32.const 13))
        (i32.store (i32.const 12296) (local.get $len))
        (memory.copy (i32.const 12300) (i32.const 80) (i32.const 13))
        (i32.store8 (i32.const 12313) (i32.const 0))
        (memory.copy (i32.const 12314) (i32.const 8192) (local.get $len))
        (i32.store8 (i32.add (i32.const 12314) (local.get $len)) (i32.const 0))
        (local.set $code
          (select (i32.const 502) (i32.const 504)
                  (i32.eqz (call $get_header (i32.const 6) (i32.const 96) (i32.const 7)
                                             (i32.const 4096) (i32.const 4100)))))
        (drop (call $send_local_response (local.get $code) (i32.const 0) (i32.const 0)
                                         (i32.const 0) (i32.const 0)
                                         (i32.const 12288) (i32.add (i32.const 27) (local.get $len))
                                         (i32.const -1)))
        (return)))
    (drop (call $add_header (i32.const 0) (i32.const 80) (i32.const 13)
                            (i32.const 8192) (local.get $len)))
    (if (i32.eqz (call $get_header (i32.const 6) (i32.const 96) (i32.const 7)
                                   (i32.const 4096) (i32.const 4100)))
      (then (drop (call $add_header (i32.const 0) (i32.const 48) (i32.const 13)
                                    (call $rptr) (call $rlen)))))
    (if (i32.eqz (call $get_header (i32.const 6) (i32.const 152) (i32.const 12)
                                   (i32.const 4096) (i32.const 4100)))
      (then (drop (call $add_header (i32.const 0) (i32.const 136) (i32.const 12)
                                    (call $rptr) (call $rlen)))))
    (if (i32.eqz (call $get_buffer (i32.const 4) (i32.const 0) (i32.const 64)
                                   (i32.const 4096) (i32.const 4100)))
      (then (drop (call $add_header (i32.const 0) (i32.const 64) (i32.const 11)
                                    (call $rptr) (call $rlen)))))
    (drop (call $continue_stream (i32.const 0))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
