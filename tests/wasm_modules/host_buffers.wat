;; host_buffers.wat -- buffers: plugin and VM configuration, request and
;; response bodies.
;;
;; proxy_on_vm_start reads VM_CONFIGURATION (6); proxy_on_configure reads
;; PLUGIN_CONFIGURATION (7), its length through proxy_get_buffer_status, and
;; asks for buffer type 42 (there is none). proxy_on_request_headers reports:
;;   x-config, x-config-status        the plugin configuration and the status
;;   x-config-size                    the size proxy_on_configure was given
;;   x-config-buffer-len              the length proxy_get_buffer_status gave
;;   x-vm-config, x-vm-config-status  the VM configuration and the status
;;   x-bad-buffer                     status for type 42: expect 2 (BAD_ARGUMENT)
;;   x-headers-eos                    the end_of_stream argument
;; proxy_on_request_body (so the host buffers the body):
;;   x-body-size, x-body-eos          its arguments
;;   x-body-get-status, x-body-seen   proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 0, size)
;;   x-body-set-status                status of replacing the whole body with
;;                                    "rewritten request body" (22 bytes)
;; proxy_on_response_body replaces the whole response body with
;; "new response body" and adds response headers x-resp-body-size,
;; x-resp-body-eos and x-resp-body-set-status.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status" (func $buffer_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes"
    (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-config")  ;; 8 bytes
  (data (i32.const 24) "x-config-status")  ;; 15 bytes
  (data (i32.const 40) "x-config-size")  ;; 13 bytes
  (data (i32.const 56) "x-config-buffer-len")  ;; 19 bytes
  (data (i32.const 80) "x-vm-config")  ;; 11 bytes
  (data (i32.const 96) "x-vm-config-status")  ;; 18 bytes
  (data (i32.const 120) "x-bad-buffer")  ;; 12 bytes
  (data (i32.const 136) "x-headers-eos")  ;; 13 bytes
  (data (i32.const 152) "x-body-size")  ;; 11 bytes
  (data (i32.const 168) "x-body-eos")  ;; 10 bytes
  (data (i32.const 184) "x-body-get-status")  ;; 17 bytes
  (data (i32.const 208) "x-body-seen")  ;; 11 bytes
  (data (i32.const 224) "x-body-set-status")  ;; 17 bytes
  (data (i32.const 248) "rewritten request body")  ;; 22 bytes
  (data (i32.const 272) "x-resp-body-size")  ;; 16 bytes
  (data (i32.const 288) "x-resp-body-eos")  ;; 15 bytes
  (data (i32.const 304) "x-resp-body-set-status")  ;; 22 bytes
  (data (i32.const 328) "new response body")  ;; 17 bytes
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

  (global $vm_status (mut i32) (i32.const -1))
  (global $vm_ptr (mut i32) (i32.const 0))
  (global $vm_len (mut i32) (i32.const 0))
  (global $cfg_status (mut i32) (i32.const -1))
  (global $cfg_ptr (mut i32) (i32.const 0))
  (global $cfg_len (mut i32) (i32.const 0))
  (global $cfg_size (mut i32) (i32.const 0))
  (global $cfg_buffer_len (mut i32) (i32.const 0))
  (global $bad_status (mut i32) (i32.const -1))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_vm_start") (param $root i32) (param $size i32) (result i32)
    (global.set $vm_status (call $get_buffer (i32.const 6) (i32.const 0) (local.get $size)
                                             (i32.const 4096) (i32.const 4100)))
    (global.set $vm_ptr (call $rptr))
    (global.set $vm_len (call $rlen))
    (i32.const 1))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (global.set $cfg_size (local.get $size))
    (global.set $cfg_status (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size)
                                              (i32.const 4096) (i32.const 4100)))
    (global.set $cfg_ptr (call $rptr))
    (global.set $cfg_len (call $rlen))
    (drop (call $buffer_status (i32.const 7) (i32.const 4112) (i32.const 4116)))
    (global.set $cfg_buffer_len (i32.load (i32.const 4112)))
    (global.set $bad_status (call $get_buffer (i32.const 42) (i32.const 0) (i32.const 16)
                                              (i32.const 4096) (i32.const 4100)))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32) (param $eos i32) (result i32)
    (call $reqs (i32.const 16) (i32.const 8) (global.get $cfg_ptr) (global.get $cfg_len))
    (call $req (i32.const 24) (i32.const 15) (global.get $cfg_status))
    (call $req (i32.const 40) (i32.const 13) (global.get $cfg_size))
    (call $req (i32.const 56) (i32.const 19) (global.get $cfg_buffer_len))
    (call $reqs (i32.const 80) (i32.const 11) (global.get $vm_ptr) (global.get $vm_len))
    (call $req (i32.const 96) (i32.const 18) (global.get $vm_status))
    (call $req (i32.const 120) (i32.const 12) (global.get $bad_status))
    (call $req (i32.const 136) (i32.const 13) (local.get $eos))
    (i32.const 0))

  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (call $req (i32.const 152) (i32.const 11) (local.get $size))
    (call $req (i32.const 168) (i32.const 10) (local.get $eos))
    (call $req (i32.const 184) (i32.const 17)
      (call $get_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 4096) (i32.const 4100)))
    (call $reqs (i32.const 208) (i32.const 11) (call $rptr) (call $rlen))
    (call $req (i32.const 224) (i32.const 17)
      (call $set_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 248) (i32.const 22)))
    (i32.const 0))

  (func (export "proxy_on_response_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (call $resp (i32.const 272) (i32.const 16) (local.get $size))
    (call $resp (i32.const 288) (i32.const 15) (local.get $eos))
    (call $resp (i32.const 304) (i32.const 22)
      (call $set_buffer (i32.const 1) (i32.const 0) (local.get $size) (i32.const 328) (i32.const 17)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
