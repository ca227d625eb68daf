;; probe.wat -- configuration, properties, foreign functions and metrics, driven by
;; request headers so that one module serves table-driven tests.
;;
;; proxy_on_vm_start / proxy_on_configure keep the VM_CONFIGURATION and
;; PLUGIN_CONFIGURATION buffers. proxy_on_request_headers adds request headers:
;;   x-config, x-vm-config   the two configurations, hex-encoded
;;   x-prop-status, x-prop-value
;;                           when the request has x-prop: PATH ('.' separates
;;                           segments; sent as NUL-separated), proxy_get_property's
;;                           status (decimal) and the value (hex)
;;   x-ff-status, x-ff-value when the request has x-ff: NAME (and x-ff-args: ARGS),
;;                           proxy_call_foreign_function's status and result (hex)
;;   x-metric-status         when the request has x-metric: N (decimal): defines
;;                           counter probe_requests (+1), gauge probe_gauge (record N)
;;                           and histogram probe_hist (record N); the statuses OR-ed
;;   x-many-status, x-many-ok
;;                           when the request has x-many: N, defines counters
;;                           many_0 .. many_{N-1}: the first failing status (0: none)
;;                           and how many definitions succeeded
;; proxy_on_response_headers does the x-prop lookup again, into response headers.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_call_foreign_function"
    (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-config")  ;; 8 bytes
  (data (i32.const 32) "x-vm-config")  ;; 11 bytes
  (data (i32.const 48) "x-prop")  ;; 6 bytes
  (data (i32.const 56) "x-prop-status")  ;; 13 bytes
  (data (i32.const 72) "x-prop-value")  ;; 12 bytes
  (data (i32.const 88) "x-ff")  ;; 4 bytes
  (data (i32.const 96) "x-ff-args")  ;; 9 bytes
  (data (i32.const 112) "x-ff-status")  ;; 11 bytes
  (data (i32.const 128) "x-ff-value")  ;; 10 bytes
  (data (i32.const 144) "x-metric")  ;; 8 bytes
  (data (i32.const 160) "probe_requests")  ;; 14 bytes
  (data (i32.const 176) "probe_gauge")  ;; 11 bytes
  (data (i32.const 192) "probe_hist")  ;; 10 bytes
  (data (i32.const 208) "x-metric-status")  ;; 15 bytes
  (data (i32.const 224) "x-many")  ;; 6 bytes
  (data (i32.const 232) "x-many-status")  ;; 13 bytes
  (data (i32.const 248) "x-many-ok")  ;; 9 bytes
  (data (i32.const 264) "many_")  ;; 5 bytes
  ;; Memory: strings from 16; 4096: u32 returned ptr, 4100: u32 returned size,
  ;; 4104: u32 metric id, 4200..: decimal scratch, 8192..16383: scratch,
  ;; 16384..: heap.

  (global $cfg_ptr (mut i32) (i32.const 0))
  (global $cfg_len (mut i32) (i32.const 0))
  (global $vmc_ptr (mut i32) (i32.const 0))
  (global $vmc_len (mut i32) (i32.const 0))

  ;; Bump allocator for the host's returned buffers; never frees.
  (global $heap (mut i32) (i32.const 16384))
  (func $alloc (export "proxy_on_memory_allocate") (param $size i32) (result i32)
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

  ;; The decimal number at p (len bytes).
  (func $atoi (param $p i32) (param $len i32) (result i32)
    (local $i i32) (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10))
                               (i32.sub (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                                        (i32.const 48))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func $nibble (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 10))
      (then (i32.add (local.get $n) (i32.const 48)))
      (else (i32.add (local.get $n) (i32.const 87)))))

  ;; Adds header key = hex(src[0:len]) to map.
  (func $add_hex (param $map i32) (param $key i32) (param $klen i32) (param $src i32) (param $len i32)
    (local $dst i32) (local $i i32) (local $b i32)
    (local.set $dst (call $alloc (i32.add (i32.shl (local.get $len) (i32.const 1)) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (i32.add (local.get $src) (local.get $i))))
        (i32.store8 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))
                    (call $nibble (i32.shr_u (local.get $b) (i32.const 4))))
        (i32.store8 (i32.add (local.get $dst) (i32.add (i32.shl (local.get $i) (i32.const 1))
                                                       (i32.const 1)))
                    (call $nibble (i32.and (local.get $b) (i32.const 15))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (drop (call $add_header (local.get $map) (local.get $key) (local.get $klen)
                            (local.get $dst) (i32.shl (local.get $len) (i32.const 1)))))

  (func $add_num (param $map i32) (param $key i32) (param $klen i32) (param $n i32)
    (drop (call $add_header (local.get $map) (local.get $key) (local.get $klen)
                            (i32.const 4200)
                            (call $utoa (i64.extend_i32_u (local.get $n)) (i32.const 4200)))))

  ;; A request header's value: status; the value's ptr/size at 4096/4100.
  (func $header (param $key i32) (param $klen i32) (result i32)
    (call $get_header (i32.const 0) (local.get $key) (local.get $klen)
                      (i32.const 4096) (i32.const 4100)))

  (func $buffer (param $kind i32) (param $size i32) (result i32)
    (if (i32.eqz (local.get $size)) (then (return (i32.const 1))))
    (drop (call $get_buffer (local.get $kind) (i32.const 0) (local.get $size)
                            (i32.const 4096) (i32.const 4100)))
    (i32.const 1))

  ;; The x-prop lookup, its answer added to map.
  (func $prop (param $map i32)
    (local $src i32) (local $len i32) (local $i i32) (local $c i32) (local $status i32)
    (if (call $header (i32.const 48) (i32.const 6)) (then (return)))
    (local.set $src (i32.load (i32.const 4096)))
    (local.set $len (i32.load (i32.const 4100)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $src) (local.get $i))))
        (if (i32.eq (local.get $c) (i32.const 46)) (then (local.set $c (i32.const 0))))
        (i32.store8 (i32.add (i32.const 8192) (local.get $i)) (local.get $c))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $status (call $get_property (i32.const 8192) (local.get $len)
                                           (i32.const 4096) (i32.const 4100)))
    (call $add_num (local.get $map) (i32.const 56) (i32.const 13) (local.get $status))
    (if (i32.eqz (local.get $status))
      (then (call $add_hex (local.get $map) (i32.const 72) (i32.const 12)
                           (i32.load (i32.const 4096)) (i32.load (i32.const 4100))))))

  (func $ff
    (local $name i32) (local $nlen i32) (local $args i32) (local $alen i32) (local $status i32)
    (if (call $header (i32.const 88) (i32.const 4)) (then (return)))
    (local.set $name (i32.load (i32.const 4096)))
    (local.set $nlen (i32.load (i32.const 4100)))
    (if (i32.eqz (call $header (i32.const 96) (i32.const 9)))
      (then (local.set $args (i32.load (i32.const 4096)))
            (local.set $alen (i32.load (i32.const 4100)))))
    (local.set $status (call $foreign (local.get $name) (local.get $nlen)
                                      (local.get $args) (local.get $alen)
                                      (i32.const 4096) (i32.const 4100)))
    (call $add_num (i32.const 0) (i32.const 112) (i32.const 11) (local.get $status))
    (if (i32.eqz (local.get $status))
      (then (call $add_hex (i32.const 0) (i32.const 128) (i32.const 10)
                           (i32.load (i32.const 4096)) (i32.load (i32.const 4100))))))

  (func $metric
    (local $n i64) (local $status i32)
    (if (call $header (i32.const 144) (i32.const 8)) (then (return)))
    (local.set $n (i64.extend_i32_u (call $atoi (i32.load (i32.const 4096))
                                                (i32.load (i32.const 4100)))))
    (local.set $status (call $define (i32.const 0) (i32.const 160) (i32.const 14) (i32.const 4104)))
    (local.set $status (i32.or (local.get $status)
                               (call $increment (i32.load (i32.const 4104)) (i64.const 1))))
    (local.set $status (i32.or (local.get $status)
      (call $define (i32.const 1) (i32.const 176) (i32.const 11) (i32.const 4104))))
    (local.set $status (i32.or (local.get $status)
                               (call $record (i32.load (i32.const 4104)) (local.get $n))))
    (local.set $status (i32.or (local.get $status)
      (call $define (i32.const 2) (i32.const 192) (i32.const 10) (i32.const 4104))))
    (local.set $status (i32.or (local.get $status)
                               (call $record (i32.load (i32.const 4104)) (local.get $n))))
    (call $add_num (i32.const 0) (i32.const 208) (i32.const 15) (local.get $status)))

  (func $many
    (local $n i32) (local $i i32) (local $status i32) (local $len i32)
    (if (call $header (i32.const 224) (i32.const 6)) (then (return)))
    (local.set $n (call $atoi (i32.load (i32.const 4096)) (i32.load (i32.const 4100))))
    (memory.copy (i32.const 8192) (i32.const 264) (i32.const 5))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $len (call $utoa (i64.extend_i32_u (local.get $i)) (i32.const 8197)))
        (local.set $status (call $define (i32.const 0) (i32.const 8192)
                                         (i32.add (i32.const 5) (local.get $len)) (i32.const 4104)))
        (br_if $done (local.get $status))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $add_num (i32.const 0) (i32.const 232) (i32.const 13) (local.get $status))
    (call $add_num (i32.const 0) (i32.const 248) (i32.const 9) (local.get $i)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param $root i32) (param $size i32) (result i32)
    (drop (call $buffer (i32.const 6) (local.get $size)))
    (if (local.get $size)
      (then (global.set $vmc_ptr (i32.load (i32.const 4096)))
            (global.set $vmc_len (i32.load (i32.const 4100)))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $buffer (i32.const 7) (local.get $size)))
    (if (local.get $size)
      (then (global.set $cfg_ptr (i32.load (i32.const 4096)))
            (global.set $cfg_len (i32.load (i32.const 4100)))))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $add_hex (i32.const 0) (i32.const 16) (i32.const 8)
                   (global.get $cfg_ptr) (global.get $cfg_len))
    (call $add_hex (i32.const 0) (i32.const 32) (i32.const 11)
                   (global.get $vmc_ptr) (global.get $vmc_len))
    (call $prop (i32.const 0))
    (call $ff)
    (call $metric)
    (call $many)
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $prop (i32.const 2))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
