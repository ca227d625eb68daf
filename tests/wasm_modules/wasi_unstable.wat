;; wasi_unstable.wat -- a module built for the old `wasi_unstable` WASI
;; namespace (AssemblyScript's runtime and early toolchains import it instead
;; of wasi_snapshot_preview1).
;;
;; Exercises: wasi_unstable.fd_write (used for logging) and
;; wasi_unstable.clock_time_get. In proxy_on_request_headers it reads the
;; realtime clock, writes "hello from wasi_unstable\n" to stdout (fd 1), and
;; reports what happened in request headers:
;;   x-wasi-clock-errno   errno of clock_time_get          (expect 0)
;;   x-wasi-time-nonzero  1 when the clock wrote a non-zero time (expect 1)
;;   x-wasi-write-errno   errno of fd_write                (expect 0)
;;   x-wasi-written       bytes fd_write reported written  (expect 25)
;;
;; Host should: provide wasi_unstable.fd_write / clock_time_get with the same
;; behaviour as their wasi_snapshot_preview1 twins (stdout -> plugin log at
;; INFO, stderr -> ERROR), so the line appears in the gateway's log.
(module
  (import "wasi_unstable" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasi_unstable\n")   ;; 25 bytes
  (data (i32.const 64) "x-wasi-clock-errno")           ;; 18 bytes
  (data (i32.const 96) "x-wasi-time-nonzero")          ;; 19 bytes
  (data (i32.const 128) "x-wasi-write-errno")          ;; 18 bytes
  (data (i32.const 160) "x-wasi-written")              ;; 14 bytes
  ;; 1024: u64 time, 1040: iovec {ptr, len}, 1048: u32 written, 1056..: decimal scratch

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

  (func $add_number (param $key i32) (param $key_len i32) (param $n i32)
    (drop (call $add_header (i32.const 0) (local.get $key) (local.get $key_len)
                            (i32.const 1056) (call $utoa (local.get $n) (i32.const 1056)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $errno i32)
    (i64.store (i32.const 1024) (i64.const 0))
    (local.set $errno (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 1024)))
    (call $add_number (i32.const 64) (i32.const 18) (local.get $errno))
    (call $add_number (i32.const 96) (i32.const 19)
                      (i64.ne (i64.load (i32.const 1024)) (i64.const 0)))

    (i32.store (i32.const 1040) (i32.const 16))
    (i32.store (i32.const 1044) (i32.const 25))
    (i32.store (i32.const 1048) (i32.const 0))
    (local.set $errno (call $fd_write (i32.const 1) (i32.const 1040) (i32.const 1) (i32.const 1048)))
    (call $add_number (i32.const 128) (i32.const 18) (local.get $errno))
    (call $add_number (i32.const 160) (i32.const 14) (i32.load (i32.const 1048)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
