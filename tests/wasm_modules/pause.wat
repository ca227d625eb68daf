;; pause.wat -- pauses a request on an http call and resumes it from the
;; call's response.
;;
;; Exercises: PAUSE from proxy_on_request_headers, proxy_http_call,
;; proxy_on_http_call_response, the HTTP_CALL_RESPONSE_HEADERS map (6) and
;; HTTP_CALL_RESPONSE_BODY buffer (4), proxy_set_effective_context and
;; proxy_continue_stream(HTTP_REQUEST).
;;
;; Configuration: the plugin configuration, if not empty, is the name of the
;; upstream to call (raw bytes, not JSON); the default is "upstream".
;;
;; proxy_on_request_headers: GET /pause on that upstream (headers :method,
;; :path, :authority "pause.test"; timeout 5000 ms); remembers call id ->
;; stream context (up to 64 calls in flight) and returns PAUSE. If
;; proxy_http_call fails it adds `x-call-error: <status>` and continues.
;; proxy_on_http_call_response: makes the stream context effective, adds to
;; the paused request `x-call-status: <:status of the call>` (or "failed"
;; when num_headers is 0) and `x-call-body: <first 64 bytes of its body>`
;; (when not empty), then calls proxy_continue_stream(0).
;;
;; Host should: send the call through the gateway's own upstreams, hold the
;; request (no upstream request yet), deliver the response to
;; proxy_on_http_call_response (with the root or the stream context id: the
;; module accepts either), apply the header changes made there, and forward
;; the request once proxy_continue_stream(0) is called.
(module
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context"
    (func $set_effective_context (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))

  (memory (export "memory") 1)
  ;; Serialized map {":method": "GET", ":path": "/pause", ":authority": "pause.test"}, 75 bytes.
  (data (i32.const 16) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\0a\00\00\00:method\00GET\00:path\00/pause\00:authority\00pause.test\00")
  (data (i32.const 128) "x-call-status")   ;; 13 bytes
  (data (i32.const 144) "x-call-body")     ;; 11 bytes
  (data (i32.const 160) ":status")         ;; 7 bytes
  (data (i32.const 176) "x-call-error")    ;; 12 bytes
  (data (i32.const 192) "upstream")        ;; 8 bytes
  (data (i32.const 208) "failed")          ;; 6 bytes
  ;; 1024: u32 returned ptr, 1028: u32 returned size, 1032: u32 call id,
  ;; 1040..: decimal scratch, 2048..2559: 64 slots of {call id, context id}

  (global $upstream_ptr (mut i32) (i32.const 192))
  (global $upstream_len (mut i32) (i32.const 8))

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

  ;; Writes n in decimal at out; returns the number of bytes written.
  (func $utoa (param $n i32) (param $out i32) (result i32)
    (local $len i32) (local $t i32)
    (local.set $t (local.get $n))
    (local.set $len (i32.const 1))
    (block $counted
      (loop $count
        (br_if $counted (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $count)))
    (local.set $t (local.get $len))
    (loop $write
      (local.set $t (i32.sub (local.get $t) (i32.const 1)))
      (i32.store8 (i32.add (local.get $out) (local.get $t))
                  (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $write (local.get $t)))
    (local.get $len))

  ;; Slot holding call id $id, or a free slot (context 0) when $id is 0 and free; -1 if none.
  (func $find_slot (param $id i32) (param $want_free i32) (result i32)
    (local $slot i32)
    (local.set $slot (i32.const 2048))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $slot) (i32.const 2560)))
        (if (local.get $want_free)
          (then (if (i32.eqz (i32.load offset=4 (local.get $slot))) (then (return (local.get $slot)))))
          (else (if (i32.and (i32.ne (i32.load offset=4 (local.get $slot)) (i32.const 0))
                             (i32.eq (i32.load (local.get $slot)) (local.get $id)))
                  (then (return (local.get $slot))))))
        (local.set $slot (i32.add (local.get $slot) (i32.const 8)))
        (br $scan)))
    (i32.const -1))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (i32.and (i32.ne (local.get $size) (i32.const 0))
                 (i32.eqz (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size)
                                            (i32.const 1024) (i32.const 1028))))
      (then
        (global.set $upstream_ptr (i32.load (i32.const 1024)))
        (global.set $upstream_len (i32.load (i32.const 1028)))))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $status i32) (local $slot i32)
    (local.set $slot (call $find_slot (i32.const 0) (i32.const 1)))
    (if (i32.eq (local.get $slot) (i32.const -1))
      (then (local.set $status (i32.const 10)))     ;; INTERNAL_FAILURE: too many calls in flight
      (else
        (local.set $status
          (call $http_call (global.get $upstream_ptr) (global.get $upstream_len)
                           (i32.const 16) (i32.const 75)   ;; headers
                           (i32.const 0) (i32.const 0)     ;; no body
                           (i32.const 0) (i32.const 0)     ;; no trailers
                           (i32.const 5000) (i32.const 1032)))))
    (if (local.get $status)
      (then
        (drop (call $add_header (i32.const 0) (i32.const 176) (i32.const 12)
                                (i32.const 1040) (call $utoa (local.get $status) (i32.const 1040))))
        (return (i32.const 0))))                      ;; CONTINUE without the call
    (i32.store (local.get $slot) (i32.load (i32.const 1032)))
    (i32.store offset=4 (local.get $slot) (local.get $ctx))
    (i32.const 1))                                    ;; PAUSE

  (func (export "proxy_on_http_call_response")
    (param $ctx i32) (param $id i32) (param $num_headers i32) (param $body_size i32) (param i32)
    (local $slot i32) (local $stream i32)
    (local.set $stream (local.get $ctx))
    (local.set $slot (call $find_slot (local.get $id) (i32.const 0)))
    (if (i32.ne (local.get $slot) (i32.const -1))
      (then
        (local.set $stream (i32.load offset=4 (local.get $slot)))
        (i32.store offset=4 (local.get $slot) (i32.const 0))))
    (drop (call $set_effective_context (local.get $stream)))

    (if (i32.eqz (local.get $num_headers))
      (then
        (drop (call $add_header (i32.const 0) (i32.const 128) (i32.const 13) (i32.const 208) (i32.const 6))))
      (else
        (if (i32.eqz (call $get_header (i32.const 6) (i32.const 160) (i32.const 7)
                                       (i32.const 1024) (i32.const 1028)))
          (then
            (drop (call $add_header (i32.const 0) (i32.const 128) (i32.const 13)
                                    (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))))))

    (if (i32.and (i32.ne (local.get $body_size) (i32.const 0))
                 (i32.eqz (call $get_buffer (i32.const 4) (i32.const 0) (local.get $body_size)
                                            (i32.const 1024) (i32.const 1028))))
      (then
        (drop (call $add_header (i32.const 0) (i32.const 144) (i32.const 11)
                                (i32.load (i32.const 1024))
                                (select (i32.load (i32.const 1028)) (i32.const 64)
                                        (i32.lt_u (i32.load (i32.const 1028)) (i32.const 64)))))))

    (drop (call $continue_stream (i32.const 0))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
