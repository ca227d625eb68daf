;; client_gone.wat -- says (proxy_log, info) which callbacks reach which context,
;; to watch a stream context end when its client leaves while it waits for a call.
;;
;; proxy_on_request_headers(ctx): proxy_http_call to upstream "auth" (GET /check,
;; timeout 20 s), remembers ctx, logs "paused", returns PAUSE.
;; proxy_on_done / proxy_on_log / proxy_on_delete: log "done", "log", "delete" for
;; the remembered stream context, "root-<name>" for any other.
;; proxy_on_http_call_response(ctx, token, n, body, 0): logs "response-root" when ctx
;; is not the remembered stream, else "response-stream"; then "failed" when n is 0;
;; then tries proxy_set_effective_context(stream) and logs "effective-ok" or
;; "effective-refused"; on ok it also continues the stream (as an SDK would).
;; proxy_on_response_headers, proxy_on_request_body: log "late" (they must never
;; come for a stream whose client left).
;;
;; Host should: end the context at once when the client leaves (done, log, delete),
;; cancel the call, then deliver its response to the root context as a failed call
;; (n = 0), and refuse to make the deleted stream effective.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context"
    (func $set_effective_context (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))

  (memory (export "memory") 1)
  ;; Serialized map {":method": "GET", ":path": "/check", ":authority": "auth"}, 69 bytes.
  (data (i32.const 16) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\04\00\00\00:method\00GET\00:path\00/check\00:authority\00auth\00")
  (data (i32.const 128) "auth")              ;; 4
  (data (i32.const 136) "paused")            ;; 6
  (data (i32.const 144) "done")              ;; 4
  (data (i32.const 152) "log")               ;; 3
  (data (i32.const 160) "delete")            ;; 6
  (data (i32.const 168) "response-root")     ;; 13
  (data (i32.const 184) "response-stream")   ;; 15
  (data (i32.const 200) "failed")            ;; 6
  (data (i32.const 208) "effective-ok")      ;; 12
  (data (i32.const 224) "effective-refused") ;; 17
  (data (i32.const 248) "late")              ;; 4
  (data (i32.const 256) "root-done")         ;; 9
  ;; 1024: call token

  (global $stream (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7))
                               (i32.const -8)))
    (local.get $p))

  (func $say (param $ptr i32) (param $len i32)
    (drop (call $log (i32.const 2) (local.get $ptr) (local.get $len))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $stream (local.get $ctx))
    (drop (call $http_call (i32.const 128) (i32.const 4)
                           (i32.const 16) (i32.const 69)   ;; headers
                           (i32.const 0) (i32.const 0)     ;; no body
                           (i32.const 0) (i32.const 0)     ;; no trailers
                           (i32.const 20000) (i32.const 1024)))
    (call $say (i32.const 136) (i32.const 6))
    (i32.const 1))                                     ;; PAUSE

  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (call $say (i32.const 248) (i32.const 4))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $say (i32.const 248) (i32.const 4))
    (i32.const 0))

  (func (export "proxy_on_http_call_response")
    (param $ctx i32) (param $token i32) (param $n i32) (param i32) (param i32)
    (if (i32.eq (local.get $ctx) (global.get $stream))
      (then (call $say (i32.const 184) (i32.const 15)))
      (else (call $say (i32.const 168) (i32.const 13))))
    (if (i32.eqz (local.get $n)) (then (call $say (i32.const 200) (i32.const 6))))
    (if (i32.eqz (call $set_effective_context (global.get $stream)))
      (then
        (call $say (i32.const 208) (i32.const 12))
        (drop (call $continue_stream (i32.const 0))))
      (else (call $say (i32.const 224) (i32.const 17)))))

  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (if (i32.eq (local.get $ctx) (global.get $stream))
      (then (call $say (i32.const 144) (i32.const 4)))
      (else (call $say (i32.const 256) (i32.const 9))))
    (i32.const 1))
  (func (export "proxy_on_log") (param $ctx i32)
    (if (i32.eq (local.get $ctx) (global.get $stream))
      (then (call $say (i32.const 152) (i32.const 3)))))
  (func (export "proxy_on_delete") (param $ctx i32)
    (if (i32.eq (local.get $ctx) (global.get $stream))
      (then (call $say (i32.const 160) (i32.const 6)))))
)
