/* Shared by the C files of core.wasm._crossing (see _crossing.c for what it does). */
#ifndef WASMGATE_CROSSING_H
#define WASMGATE_CROSSING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Nothing here is visible outside the module (PyInit__crossing is, by PyMODINIT_FUNC):
 * no name of ours can take the place of another library's. */
#pragma GCC visibility push(hidden)

/* wasmtime_val_raw_t: a 16-byte union (i32, i64, f32, f64, v128, refs). */
typedef union {
    int32_t i32;
    int64_t i64;
    uint8_t v128[16];
    void *funcref;
} val_raw_t;
_Static_assert(sizeof(val_raw_t) == 16, "wasmtime_val_raw_t is 16 bytes");

/* wasmtime_func_t: a store id and a private word. */
typedef struct {
    uint64_t store_id;
    void *private_;
} func_t;
_Static_assert(sizeof(func_t) == 16, "wasmtime_func_t is 16 bytes");

typedef void *(*call_unchecked_t)(void *ctx, const func_t *func, val_raw_t *slots, size_t n,
                                  void **trap);
typedef void *(*trap_new_t)(const char *message, size_t size);
typedef void *(*error_new_t)(const char *message);
typedef void (*increment_epoch_t)(void *engine);
/* wasmtime_memory_t: a store id and two private words (24 bytes with padding). */
typedef struct {
    struct {
        uint64_t store_id;
        uint32_t private1;
    } anon;
    uint32_t private2;
} memory_t;

typedef uint8_t *(*memory_data_t)(void *ctx, const memory_t *memory);
typedef size_t (*memory_size_t)(void *ctx, const memory_t *memory);

/* the C API functions setup() was given, and the module's Python objects */
extern call_unchecked_t call_unchecked;
extern trap_new_t trap_new;
extern error_new_t error_new;
extern increment_epoch_t increment_epoch;
extern memory_data_t memory_data;
extern memory_size_t memory_size;
extern unsigned long main_thread;
extern PyObject *on_error;  /* on_error(func, exc) -> str (trap with it) or None (status 10) */
extern PyObject *Failed;    /* raised by a Callee: args (error address, trap address) */
extern PyObject *on_forget; /* on_forget(env address): wasmtime let go of a host function */

#define MAX_PARAMS 32
#define OK 0
#define BAD_ARGUMENT 2
#define BAD_MEMORY 6
#define INTERNAL_FAILURE 10
#define LOG_LEVELS 6
#define DEADLINE_TEXT "CPU deadline exceeded (epoch interrupt)"

/* one instance's call state (the Guest type, _crossing_calls.c) */

typedef struct {
    PyObject_HEAD
    void *ctx;          /* wasmtime_context_t* */
    uint64_t calls;     /* top-level calls into the guest so far */
    uint64_t seen;      /* `calls` when the deadline callback last let a call go on */
    uint64_t ticks;     /* the deadline, in epoch ticks */
    long depth;         /* calls in progress (a host function may call the guest) */
    memory_t memory;    /* the exported memory */
    int has_memory;
    /* proxy_log below the logger's level, answered here: the logger's cache of
     * isEnabledFor answers (logging.Logger._cache), and its keys per Proxy-Wasm level */
    PyObject *log_cache;
    PyObject *log_levels[LOG_LEVELS];
    PyObject *alloc;    /* the guest's allocator (a Callee), for header values handed over */
    /* the CPU budget's common case, charged here around every top-level call while
     * on_charge is set (see _crossing_meter.c) */
    PyObject *on_charge; /* on_charge(now, spent, pending) -> (slot_end, room) */
    double slot_end;    /* the fast path charges only calls that end before this */
    double room;        /* seconds the budget has left before it is over */
    double pending;     /* seconds charged here and not yet handed to on_charge */
    char held;          /* while true, calls are not metered (Instance.call: start functions) */
    /* the host's plugin.limits.max_header_bytes, handed over once (PluginVm), or -1:
     * the header path then reads it from the host at each edit */
    Py_ssize_t header_bound;
} GuestObject;

/* the env of one host function (entry(), _crossing_calls.c) */

typedef struct {
    PyObject *func;     /* NULL once the instance is closed (see clear()) */
    uint64_t wide;      /* bit i: parameter i is an i64 */
    int nparams;
    int has_result;
    GuestObject *log_gate; /* proxy_log only: its instance (see log_below) */
    GuestObject *fields_gate; /* header-map host functions only: their instance */
    int fields_op;      /* FIELDS_GET ... FIELDS_REMOVE, or 0 (see fields_fast) */
} HostEntry;

#define FIELDS_GET 1
#define FIELDS_REPLACE 2
#define FIELDS_ADD 3
#define FIELDS_REMOVE 4

extern PyTypeObject GuestType;
extern PyTypeObject CalleeType;

/* _crossing_host.c: what host functions need without calling Python */
uint8_t *guest_memory(GuestObject *guest, size_t *size);
PyObject *Guest_give(GuestObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *Guest_read(GuestObject *self, PyObject *const *args, Py_ssize_t nargs);
long log_below(GuestObject *guest, val_raw_t *slots);
PyObject *scan_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *bad_field(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* _crossing_headers.c: the header-map host functions' common cases */
int fields_setup(void);
long fields_fast(HostEntry *entry, val_raw_t *slots);

/* _crossing_meter.c: the CPU budget's common case */
double meter_now(void);
void meter_charge(GuestObject *guest, double started);
PyObject *Guest_set_meter(GuestObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *Guest_pending(GuestObject *self, void *closure);

/* _crossing_calls.c: the calls both ways */
void *deadline_callback(void *ctx, void *env, uint64_t *delta, uint8_t *kind);
void *host_trampoline(void *env, void *caller, val_raw_t *slots, size_t n);
void host_forget(void *env);
PyObject *make_entry(PyObject *module, PyObject *args);
PyObject *clear_entry(PyObject *module, PyObject *arg);
PyObject *call_ends(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#pragma GCC visibility pop

#endif
