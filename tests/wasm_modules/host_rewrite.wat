;; host_rewrite.wat -- pseudo-headers as a way to change the request line, and
;; the response header map with :status.
;;
;; proxy_on_request_headers replaces :path with "/rewritten/path?h=x-resp-drop:1"
;; (that query makes the tests' RecordingUpstream answer with "x-resp-drop: 1"),
;; :method with "PUT" and :authority with "rewritten.test", and records each
;; status (x-path-status, x-method-status, x-authority-status; expect 0).
;; proxy_on_response_headers:
;;   replaces :status with "201"                      x-status-set: 0
;;   reads :status back                               x-status-now: 201
;;   replaces :status with "abc"                      x-status-bad: 2 (BAD_ARGUMENT)
;;   adds "x-resp-added: yes"                         (no status header)
;;   removes "x-resp-drop"                            x-resp-remove-status: 0
;;
;; Host should: send the upstream "PUT /rewritten/path?h=x-resp-drop:1" for
;; rewritten.test, and answer the client with 201 and those headers.
(module
  (import "env" "proxy_get_header_map_value"
    (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-path-status")  ;; 13 bytes
  (data (i32.const 32) ":path")  ;; 5 bytes
  (data (i32.const 40) "/rewritten/path?h=x-resp-drop:1")  ;; 31 bytes
  (data (i32.const 72) "x-method-status")  ;; 15 bytes
  (data (i32.const 88) ":method")  ;; 7 bytes
  (data (i32.const 96) "PUT")  ;; 3 bytes
  (data (i32.const 104) "x-authority-status")  ;; 18 bytes
  (data (i32.const 128) ":authority")  ;; 10 bytes
  (data (i32.const 144) "rewritten.test")  ;; 14 bytes
  (data (i32.const 160) "x-status-set")  ;; 12 bytes
  (data (i32.const 176) ":status")  ;; 7 bytes
  (data (i32.const 184) "201")  ;; 3 bytes
  (data (i32.const 192) "x-status-now")  ;; 12 bytes
  (data (i32.const 208) "x-status-bad")  ;; 12 bytes
  (data (i32.const 224) "abc")  ;; 3 bytes
  (data (i32.const 232) "x-resp-added")  ;; 12 bytes
  (data (i32.const 248) "yes")  ;; 3 bytes
  (data (i32.const 256) "x-resp-remove-status")  ;; 20 bytes
  (data (i32.const 280) "x-resp-drop")  ;; 11 bytes
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

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $req (i32.const 16) (i32.const 13)
      (call $replace (i32.const 0) (i32.const 32) (i32.const 5) (i32.const 40) (i32.const 31)))
    (call $req (i32.const 72) (i32.const 15) (call $replace (i32.const 0) (i32.const 88) (i32.const 7) (i32.const 96) (i32.const 3)))
    (call $req (i32.const 104) (i32.const 18)
      (call $replace (i32.const 0) (i32.const 128) (i32.const 10) (i32.const 144) (i32.const 14)))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $resp (i32.const 160) (i32.const 12) (call $replace (i32.const 2) (i32.const 176) (i32.const 7) (i32.const 184) (i32.const 3)))
    (if (i32.eqz (call $get_value (i32.const 2) (i32.const 176) (i32.const 7) (i32.const 4096) (i32.const 4100)))
      (then (call $resps (i32.const 192) (i32.const 12) (call $rptr) (call $rlen))))
    (call $resp (i32.const 208) (i32.const 12) (call $replace (i32.const 2) (i32.const 176) (i32.const 7) (i32.const 224) (i32.const 3)))
    (drop (call $add_header (i32.const 2) (i32.const 232) (i32.const 12) (i32.const 248) (i32.const 3)))
    (call $resp (i32.const 256) (i32.const 20) (call $remove (i32.const 2) (i32.const 280) (i32.const 11)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
