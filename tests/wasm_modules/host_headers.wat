;; host_headers.wat -- the request header map: get pairs / value / size, add,
;; replace, remove.
;;
;; In proxy_on_request_headers, before changing anything, it reads:
;;   x-pairs-status    proxy_get_header_map_pairs(REQUEST_HEADERS)   expect 0
;;   x-pairs-size      size of the serialized map it got
;;   x-size-status     proxy_get_header_map_size(REQUEST_HEADERS)     expect 0
;;   x-size            the size it reported (equals x-pairs-size)
;;   x-keys            every key of the map, in order, joined with ","
;;                     (pseudo-headers first: :method,:path,:authority,:scheme)
;;   x-val-method, x-val-path, x-val-authority, x-val-scheme, x-val-in
;;                     proxy_get_header_map_value of :method, :path, :authority,
;;                     :scheme and "x-in"
;;   x-val-upper       the value of "X-IN" (lookups are case-insensitive)
;;   x-missing-status  value of "x-missing"                          expect 1 (NOT_FOUND)
;;   x-bad-map-status  proxy_get_header_map_pairs(99)                 expect 2 (BAD_ARGUMENT)
;; then changes the request and records each status:
;;   x-add-status      add "x-added: 1"                               expect 0
;;   x-replace-status  replace "x-in" with "replaced"                 expect 0
;;   x-replace-new     replace "x-new" (absent) with "created"        expect 0 (adds it)
;;   x-remove-status   remove "x-drop"                                expect 0
;;   x-remove-absent   remove "x-never" (absent)                      expect 0
;;   x-crlf-status     add "x-crlf: a\r\nb" (header injection)        expect 2, not added
;;
;; Host should: forward the request with those changes.
(module
  (import "env" "proxy_get_header_map_pairs"
    (func $get_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size" (func $get_size (param i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-pairs-status")  ;; 14 bytes
  (data (i32.const 32) "x-pairs-size")  ;; 12 bytes
  (data (i32.const 48) "x-size-status")  ;; 13 bytes
  (data (i32.const 64) "x-size")  ;; 6 bytes
  (data (i32.const 72) "x-keys")  ;; 6 bytes
  (data (i32.const 80) ":method")  ;; 7 bytes
  (data (i32.const 88) "x-val-method")  ;; 12 bytes
  (data (i32.const 104) ":path")  ;; 5 bytes
  (data (i32.const 112) "x-val-path")  ;; 10 bytes
  (data (i32.const 128) ":authority")  ;; 10 bytes
  (data (i32.const 144) "x-val-authority")  ;; 15 bytes
  (data (i32.const 160) ":scheme")  ;; 7 bytes
  (data (i32.const 168) "x-val-scheme")  ;; 12 bytes
  (data (i32.const 184) "x-in")  ;; 4 bytes
  (data (i32.const 192) "x-val-in")  ;; 8 bytes
  (data (i32.const 200) "X-IN")  ;; 4 bytes
  (data (i32.const 208) "x-val-upper")  ;; 11 bytes
  (data (i32.const 224) "x-missing-status")  ;; 16 bytes
  (data (i32.const 240) "x-missing")  ;; 9 bytes
  (data (i32.const 256) "x-bad-map-status")  ;; 16 bytes
  (data (i32.const 272) "x-add-status")  ;; 12 bytes
  (data (i32.const 288) "x-added")  ;; 7 bytes
  (data (i32.const 296) "1")  ;; 1 bytes
  (data (i32.const 304) "x-replace-status")  ;; 16 bytes
  (data (i32.const 320) "replaced")  ;; 8 bytes
  (data (i32.const 328) "x-replace-new")  ;; 13 bytes
  (data (i32.const 344) "x-new")  ;; 5 bytes
  (data (i32.const 352) "created")  ;; 7 bytes
  (data (i32.const 360) "x-remove-status")  ;; 15 bytes
  (data (i32.const 376) "x-drop")  ;; 6 bytes
  (data (i32.const 384) "x-remove-absent")  ;; 15 bytes
  (data (i32.const 400) "x-never")  ;; 7 bytes
  (data (i32.const 408) "x-crlf-status")  ;; 13 bytes
  (data (i32.const 424) "x-crlf")  ;; 6 bytes
  (data (i32.const 432) "a\0d\0ab")  ;; 4 bytes
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

  ;; Joins the keys of the serialized map at $map with "," at 8192; returns the length.
  (func $join_keys (param $map i32) (result i32)
    (local $n i32) (local $i i32) (local $sizes i32) (local $data i32) (local $out i32)
    (local $kl i32) (local $vl i32)
    (local.set $n (i32.load (local.get $map)))
    (local.set $sizes (i32.add (local.get $map) (i32.const 4)))
    (local.set $data (i32.add (local.get $sizes) (i32.mul (local.get $n) (i32.const 8))))
    (local.set $out (i32.const 8192))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $kl (i32.load (i32.add (local.get $sizes) (i32.mul (local.get $i) (i32.const 8)))))
        (local.set $vl (i32.load offset=4 (i32.add (local.get $sizes)
                                                   (i32.mul (local.get $i) (i32.const 8)))))
        (if (local.get $i)
          (then
            (i32.store8 (local.get $out) (i32.const 44))   ;; ","
            (local.set $out (i32.add (local.get $out) (i32.const 1)))))
        (memory.copy (local.get $out) (local.get $data) (local.get $kl))
        (local.set $out (i32.add (local.get $out) (local.get $kl)))
        (local.set $data (i32.add (local.get $data)
                                  (i32.add (i32.add (local.get $kl) (local.get $vl)) (i32.const 2))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.sub (local.get $out) (i32.const 8192)))

  ;; Adds header $out_key: the value of request header $key (or nothing if absent).
  (func $copy_value (param $key i32) (param $klen i32) (param $out_key i32) (param $out_klen i32)
    (if (i32.eqz (call $get_value (i32.const 0) (local.get $key) (local.get $klen)
                                  (i32.const 4096) (i32.const 4100)))
      (then (call $reqs (local.get $out_key) (local.get $out_klen) (call $rptr) (call $rlen)))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $pairs_status i32) (local $pairs_ptr i32) (local $pairs_len i32)
    (local $size_status i32) (local $size i32) (local $keys_len i32)
    (local.set $pairs_status (call $get_pairs (i32.const 0) (i32.const 4096) (i32.const 4100)))
    (local.set $pairs_ptr (call $rptr))
    (local.set $pairs_len (call $rlen))
    (local.set $size_status (call $get_size (i32.const 0) (i32.const 4112)))
    (local.set $size (i32.load (i32.const 4112)))
    (if (i32.eqz (local.get $pairs_status))
      (then (local.set $keys_len (call $join_keys (local.get $pairs_ptr)))))
    (call $req (i32.const 16) (i32.const 14) (local.get $pairs_status))
    (call $req (i32.const 32) (i32.const 12) (local.get $pairs_len))
    (call $req (i32.const 48) (i32.const 13) (local.get $size_status))
    (call $req (i32.const 64) (i32.const 6) (local.get $size))
    (call $reqs (i32.const 72) (i32.const 6) (i32.const 8192) (local.get $keys_len))
    (call $copy_value (i32.const 80) (i32.const 7) (i32.const 88) (i32.const 12))
    (call $copy_value (i32.const 104) (i32.const 5) (i32.const 112) (i32.const 10))
    (call $copy_value (i32.const 128) (i32.const 10) (i32.const 144) (i32.const 15))
    (call $copy_value (i32.const 160) (i32.const 7) (i32.const 168) (i32.const 12))
    (call $copy_value (i32.const 184) (i32.const 4) (i32.const 192) (i32.const 8))
    (call $copy_value (i32.const 200) (i32.const 4) (i32.const 208) (i32.const 11))
    (call $req (i32.const 224) (i32.const 16)
      (call $get_value (i32.const 0) (i32.const 240) (i32.const 9) (i32.const 4096) (i32.const 4100)))
    (call $req (i32.const 256) (i32.const 16)
      (call $get_pairs (i32.const 99) (i32.const 4096) (i32.const 4100)))

    (call $req (i32.const 272) (i32.const 12) (call $add_header (i32.const 0) (i32.const 288) (i32.const 7) (i32.const 296) (i32.const 1)))
    (call $req (i32.const 304) (i32.const 16) (call $replace (i32.const 0) (i32.const 184) (i32.const 4) (i32.const 320) (i32.const 8)))
    (call $req (i32.const 328) (i32.const 13) (call $replace (i32.const 0) (i32.const 344) (i32.const 5) (i32.const 352) (i32.const 7)))
    (call $req (i32.const 360) (i32.const 15) (call $remove (i32.const 0) (i32.const 376) (i32.const 6)))
    (call $req (i32.const 384) (i32.const 15) (call $remove (i32.const 0) (i32.const 400) (i32.const 7)))
    (call $req (i32.const 408) (i32.const 13) (call $add_header (i32.const 0) (i32.const 424) (i32.const 6) (i32.const 432) (i32.const 4)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
