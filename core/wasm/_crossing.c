/* core.wasm._crossing: the host <-> guest boundary of core/wasm/vm.py, in C.
 *
 * Optional: vm.py falls back to its ctypes path when this extension is not built.
 * It needs no wasmtime headers and links nothing: vm.py hands it the addresses of the
 * few C API functions it calls (from wasmtime-py's loaded library) through setup(),
 * and the few types used here are declared below with the layouts of the C API.
 *
 *   Guest    one per instance: the store's context, the calls counted for the epoch
 *            deadline (see deadline_callback), the deadline in epoch ticks.
 *   Callee   one per exported function: called with ints, it writes them into the raw
 *            slots, calls wasmtime_func_call_unchecked and returns the i32 result (or
 *            None); a trap or error raises Failed(error address, trap address).
 *   entry()  makes the env of one host function, served by host_trampoline: the raw
 *            slots become PyLongs (i32 unsigned, i64 unsigned), the Python function is
 *            called with PyObject_Vectorcall, its int result goes back into slot 0.
 *            proxy_log below the logger's level is answered here (see log_below):
 *            SDKs log every callback at debug.
 *   Guest.give() copies bytes into memory the guest allocates and stores the address
 *            and size where the guest asked (what most getters return).
 *
 * The GIL: a call from the main thread keeps it while the guest runs (so a host
 * function costs no GIL hand-over); a call from another thread (a rebuild in a worker)
 * releases it, and host_trampoline takes it with PyGILState_Ensure either way. Since a
 * guest stuck in a loop may hold the GIL, the epoch is advanced by a native thread
 * (start_ticker), never by Python code, and the deadline callback is C too.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static call_unchecked_t call_unchecked;
static trap_new_t trap_new;
static error_new_t error_new;
static increment_epoch_t increment_epoch;
static memory_data_t memory_data;
static memory_size_t memory_size;
static unsigned long main_thread;
static PyObject *on_error;  /* on_error(func, exc) -> str (trap with it) or None (status 10) */
static PyObject *Failed;    /* raised by a Callee: args (error address, trap address) */
static PyObject *on_forget; /* on_forget(env address): wasmtime let go of a host function */

#define MAX_PARAMS 32
#define OK 0
#define BAD_ARGUMENT 2
#define BAD_MEMORY 6
#define INTERNAL_FAILURE 10
#define LOG_LEVELS 6
static const char DEADLINE_TEXT[] = "CPU deadline exceeded (epoch interrupt)";

/* ------------------------------------------------------------------ Guest */

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
} GuestObject;

static int Guest_init(GuestObject *self, PyObject *args, PyObject *kwds) {
    unsigned long long ctx, ticks;
    if (!PyArg_ParseTuple(args, "KK", &ctx, &ticks)) return -1;
    self->ctx = (void *)(uintptr_t)ctx;
    self->ticks = ticks ? ticks : 1;
    self->calls = 0;
    self->seen = (uint64_t)-1;
    self->depth = 0;
    return 0;
}

static void Guest_dealloc(GuestObject *self) {
    Py_XDECREF(self->log_cache);
    for (int i = 0; i < LOG_LEVELS; i++) Py_XDECREF(self->log_levels[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Where the guest's memory is (its size in bytes), or NULL when it has none. */
static uint8_t *guest_memory(GuestObject *guest, size_t *size) {
    if (!guest->has_memory) return NULL;
    *size = memory_size(guest->ctx, &guest->memory);
    return memory_data(guest->ctx, &guest->memory);
}

static PyObject *Guest_set_memory(GuestObject *self, PyObject *arg) {
    void *address = PyLong_AsVoidPtr(arg);
    if (address == NULL) return NULL;
    memcpy(&self->memory, address, sizeof(memory_t));
    self->has_memory = 1;
    Py_RETURN_NONE;
}

static PyObject *Guest_set_log(GuestObject *self, PyObject *args) {
    PyObject *cache, *levels;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &cache, &PyTuple_Type, &levels)) return NULL;
    if (PyTuple_GET_SIZE(levels) != LOG_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "one Python level per Proxy-Wasm level (6)");
        return NULL;
    }
    Py_INCREF(cache);
    Py_XSETREF(self->log_cache, cache);
    for (int i = 0; i < LOG_LEVELS; i++) {
        PyObject *level = PyTuple_GET_ITEM(levels, i);
        Py_INCREF(level);
        Py_XSETREF(self->log_levels[i], level);
    }
    Py_RETURN_NONE;
}

/* give(alloc, data, ptr_ptr, size_ptr): data copied into memory the guest allocates
 * (with the Callee `alloc`), its address and size stored at ptr_ptr and size_ptr
 * (zeros for no data): 0, 6 (a pointer out of bounds) or 10 (no memory, or the guest
 * could not allocate); Failed when the allocator traps. */
static PyObject *Guest_give(GuestObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer data;
    if (nargs != 4 || PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "give(alloc, data, ptr_ptr, size_ptr)");
        return NULL;
    }
    uint64_t ptr_ptr = PyLong_AsUnsignedLongLongMask(args[2]);
    uint64_t size_ptr = PyLong_AsUnsignedLongLongMask(args[3]);
    long status = OK;
    uint64_t where = 0;
    size_t size;
    uint8_t *base;
    if (PyErr_Occurred()) goto failed;
    if (data.len > 0) {
        PyObject *length = PyLong_FromSsize_t(data.len);
        if (length == NULL) goto failed;
        PyObject *got = PyObject_Vectorcall(args[0], &length, 1, NULL);
        Py_DECREF(length);
        if (got == NULL) goto failed;
        where = PyLong_AsUnsignedLongLongMask(got) & 0xFFFFFFFFu;
        Py_DECREF(got);
        if (PyErr_Occurred()) goto failed;
        base = guest_memory(self, &size);
        if (where == 0 || base == NULL || where + (uint64_t)data.len > size) {
            status = INTERNAL_FAILURE;
            goto done;
        }
        memcpy(base + where, data.buf, (size_t)data.len);
    }
    base = guest_memory(self, &size);
    /* (written so that no sum can wrap: the pointers are any u64 a caller passes) */
    if (base == NULL || size < 4 || ptr_ptr > size - 4 || size_ptr > size - 4) {
        status = BAD_MEMORY;
        goto done;
    }
    uint32_t word = (uint32_t)where;
    memcpy(base + ptr_ptr, &word, 4); /* little-endian host (x86-64, aarch64) */
    word = (uint32_t)data.len;
    memcpy(base + size_ptr, &word, 4);
done:
    PyBuffer_Release(&data);
    return PyLong_FromLong(status);
failed:
    PyBuffer_Release(&data);
    return NULL;
}

static PyMethodDef Guest_methods[] = {
    {"set_memory", (PyCFunction)Guest_set_memory, METH_O,
     "set_memory(wasmtime_memory_t address): the memory give() and the log gate use"},
    {"set_log", (PyCFunction)Guest_set_log, METH_VARARGS,
     "set_log(logger._cache, Python level per Proxy-Wasm level): proxy_log's gate"},
    {"give", (PyCFunction)(void (*)(void))Guest_give, METH_FASTCALL,
     "give(alloc, data, ptr_ptr, size_ptr) -> status (see _crossing.c)"},
    {NULL},
};

static PyObject *Guest_address(GuestObject *self, void *closure) {
    return PyLong_FromVoidPtr(self);
}

static PyObject *Guest_calls(GuestObject *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->calls);
}

static PyGetSetDef Guest_getset[] = {
    {"address", (getter)Guest_address, NULL, "the env of the deadline callback", NULL},
    {"calls", (getter)Guest_calls, NULL, "top-level calls into the guest so far", NULL},
    {NULL},
};

static PyTypeObject GuestType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core.wasm._crossing.Guest",
    .tp_basicsize = sizeof(GuestObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Guest(context address, deadline ticks): one instance's call state",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Guest_init,
    .tp_dealloc = (destructor)Guest_dealloc,
    .tp_methods = Guest_methods,
    .tp_getset = Guest_getset,
};

/* wasmtime_store_epoch_deadline_callback's callback: a call that has run since the
 * last time gets another deadline; one still running since then has had a whole one
 * and traps. Runs on the thread running the guest; takes no GIL. */
static void *deadline_callback(void *ctx, void *env, uint64_t *delta, uint8_t *kind) {
    GuestObject *guest = (GuestObject *)env;
    if (guest->calls == guest->seen) return error_new(DEADLINE_TEXT);
    guest->seen = guest->calls;
    *delta = guest->ticks;
    *kind = 0; /* WASMTIME_UPDATE_DEADLINE_CONTINUE */
    return NULL;
}

/* ------------------------------------------------------------------ Callee */

typedef struct {
    PyObject_HEAD
    GuestObject *guest;
    func_t func;
    Py_ssize_t nparams;
    Py_ssize_t nresults;
    size_t n; /* slots: max(nparams, nresults, 1) */
    vectorcallfunc vectorcall;
    val_raw_t *slots;
} CalleeObject;

static PyObject *Callee_vectorcall(CalleeObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs > self->nparams) {
        PyErr_Format(PyExc_TypeError, "takes at most %zd int arguments", self->nparams);
        return NULL;
    }
    val_raw_t *slots = self->slots;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        unsigned long long v = PyLong_AsUnsignedLongLongMask(args[i]);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
        slots[i].i64 = (int64_t)v;
    }
    for (Py_ssize_t i = nargs; i < self->nparams; i++) slots[i].i64 = 0;
    GuestObject *guest = self->guest;
    if (guest->depth == 0) guest->calls++;
    guest->depth++;
    void *trap = NULL;
    void *error;
    if (PyThread_get_thread_ident() == main_thread) {
        error = call_unchecked(guest->ctx, &self->func, slots, self->n, &trap);
    } else {
        Py_BEGIN_ALLOW_THREADS
        error = call_unchecked(guest->ctx, &self->func, slots, self->n, &trap);
        Py_END_ALLOW_THREADS
    }
    guest->depth--;
    if (error != NULL || trap != NULL) {
        PyObject *info = Py_BuildValue("(NN)", PyLong_FromVoidPtr(error), PyLong_FromVoidPtr(trap));
        if (info != NULL) {
            PyErr_SetObject(Failed, info);
            Py_DECREF(info);
        }
        return NULL;
    }
    if (self->nresults == 0) Py_RETURN_NONE;
    return PyLong_FromLong(slots[0].i32);
}

static PyObject *Callee_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *guest;
    unsigned long long func_addr;
    Py_ssize_t nparams, nresults;
    if (!PyArg_ParseTuple(args, "O!Knn", &GuestType, &guest, &func_addr, &nparams, &nresults))
        return NULL;
    if (nparams < 0 || nparams > MAX_PARAMS || nresults < 0 || nresults > MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "too many parameters or results");
        return NULL;
    }
    CalleeObject *self = (CalleeObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->n = (size_t)(nparams > nresults ? nparams : nresults);
    if (self->n == 0) self->n = 1;
    self->slots = PyMem_Calloc(self->n, sizeof(val_raw_t));
    if (self->slots == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    Py_INCREF(guest);
    self->guest = (GuestObject *)guest;
    memcpy(&self->func, (void *)(uintptr_t)func_addr, sizeof(func_t));
    self->nparams = nparams;
    self->nresults = nresults;
    self->vectorcall = (vectorcallfunc)Callee_vectorcall;
    return (PyObject *)self;
}

static void Callee_dealloc(CalleeObject *self) {
    Py_XDECREF(self->guest);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject CalleeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "core.wasm._crossing.Callee",
    .tp_basicsize = sizeof(CalleeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Callee(guest, wasmtime_func_t address, params, results): an export",
    .tp_new = Callee_new,
    .tp_dealloc = (destructor)Callee_dealloc,
    .tp_vectorcall_offset = offsetof(CalleeObject, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* ------------------------------------------------------------------ host functions */

typedef struct {
    PyObject *func;     /* NULL once the instance is closed (see clear()) */
    uint64_t wide;      /* bit i: parameter i is an i64 */
    int nparams;
    int has_result;
    GuestObject *log_gate; /* proxy_log only: its instance (see log_below) */
} HostEntry;

/* proxy_log(level, ptr, size) below the logger's level: its status, answered without
 * calling Python (the pointer checked, nothing copied); -1 when Python must answer. */
static long log_below(GuestObject *guest, val_raw_t *slots) {
    uint32_t level = (uint32_t)slots[0].i32;
    if (guest->log_cache == NULL || level >= LOG_LEVELS) return -1;
    PyObject *enabled = PyDict_GetItemWithError(guest->log_cache, guest->log_levels[level]);
    if (enabled != Py_False) {
        PyErr_Clear();
        return -1;
    }
    size_t size;
    uint8_t *base = guest_memory(guest, &size);
    if (base == NULL) return -1;
    uint64_t end = (uint64_t)(uint32_t)slots[1].i32 + (uint64_t)(uint32_t)slots[2].i32;
    return end <= size ? OK : BAD_MEMORY;
}

static void *trap_with(const char *text) { return trap_new(text, strlen(text)); }

/* The wasmtime_func_unchecked_callback_t of every host function. */
static void *host_trampoline(void *env, void *caller, val_raw_t *slots, size_t n) {
    HostEntry *entry = (HostEntry *)env;
    void *trap = NULL;
    PyGILState_STATE state = PyGILState_Ensure();
    PyObject *func = entry->func;
    if (func == NULL) {
        trap = trap_with("host function of a closed instance");
        goto done;
    }
    if (entry->log_gate != NULL) {
        long status = log_below(entry->log_gate, slots);
        if (status >= 0) {
            slots[0].i64 = status;
            goto done;
        }
    }
    PyObject *argv[MAX_PARAMS + 1];
    int nparams = entry->nparams;
    argv[0] = NULL;
    for (int i = 0; i < nparams; i++) {
        PyObject *arg = (entry->wide >> i) & 1
                            ? PyLong_FromUnsignedLongLong((uint64_t)slots[i].i64)
                            : PyLong_FromUnsignedLong((uint32_t)slots[i].i32);
        if (arg == NULL) {
            for (int j = 1; j <= i; j++) Py_DECREF(argv[j]);
            PyErr_Clear();
            trap = trap_with("host function: out of memory");
            goto done;
        }
        argv[i + 1] = arg;
    }
    Py_INCREF(func); /* the call may close the instance (clear() drops the entry's ref) */
    PyObject *result = PyObject_Vectorcall(func, argv + 1,
                                           (size_t)nparams | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    for (int i = 1; i <= nparams; i++) Py_DECREF(argv[i]);
    uint64_t value = 0;
    if (result == NULL) {
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        PyObject *verdict = PyObject_CallFunctionObjArgs(on_error, func, exc ? exc : Py_None, NULL);
        Py_XDECREF(type);
        Py_XDECREF(exc);
        Py_XDECREF(tb);
        if (verdict == NULL) {
            PyErr_WriteUnraisable(func);
            value = INTERNAL_FAILURE;
        } else {
            if (PyUnicode_Check(verdict)) {
                const char *text = PyUnicode_AsUTF8(verdict);
                trap = trap_with(text != NULL ? text : "host function trapped");
                PyErr_Clear();
            } else {
                value = INTERNAL_FAILURE;
            }
            Py_DECREF(verdict);
        }
    } else {
        if (result != Py_None) {
            value = PyLong_AsUnsignedLongLongMask(result);
            if (value == (uint64_t)-1 && PyErr_Occurred()) {
                PyErr_WriteUnraisable(func);
                value = INTERNAL_FAILURE;
            }
        }
        Py_DECREF(result);
    }
    Py_DECREF(func);
    if (trap == NULL && entry->has_result) slots[0].i64 = (int64_t)value;
done:
    PyGILState_Release(state);
    return trap;
}

/* The finalizer wasmtime calls when no linker or store needs the function any more. */
static void host_forget(void *env) {
    HostEntry *entry = (HostEntry *)env;
    if (Py_IsInitialized()) {
#if PY_VERSION_HEX >= 0x030D0000
        int finalizing = Py_IsFinalizing();
#else
        int finalizing = _Py_IsFinalizing();
#endif
        if (!finalizing) {
            PyGILState_STATE state = PyGILState_Ensure();
            PyObject *address = PyLong_FromVoidPtr(entry);
            PyObject *done = address ? PyObject_CallOneArg(on_forget, address) : NULL;
            if (done == NULL) PyErr_WriteUnraisable(on_forget);
            Py_XDECREF(done);
            Py_XDECREF(address);
            Py_CLEAR(entry->func);
            Py_CLEAR(entry->log_gate);
            PyGILState_Release(state);
        }
    }
    free(entry);
}

static PyObject *make_entry(PyObject *module, PyObject *args) {
    PyObject *func, *gate = Py_None;
    unsigned long long wide;
    int nparams, has_result;
    if (!PyArg_ParseTuple(args, "OKip|O", &func, &wide, &nparams, &has_result, &gate)) return NULL;
    if (gate != Py_None && !PyObject_TypeCheck(gate, &GuestType)) {
        PyErr_SetString(PyExc_TypeError, "the log gate is a Guest");
        return NULL;
    }
    if (gate != Py_None && (nparams != 3 || !has_result)) {
        PyErr_SetString(PyExc_ValueError, "a log gate serves proxy_log(i32, i32, i32) -> i32");
        return NULL;
    }
    if (nparams < 0 || nparams > MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "too many parameters");
        return NULL;
    }
    HostEntry *entry = malloc(sizeof(HostEntry));
    if (entry == NULL) return PyErr_NoMemory();
    Py_INCREF(func);
    entry->func = func;
    entry->wide = wide;
    entry->nparams = nparams;
    entry->has_result = has_result;
    entry->log_gate = NULL;
    if (gate != Py_None) {
        Py_INCREF(gate);
        entry->log_gate = (GuestObject *)gate;
    }
    return PyLong_FromVoidPtr(entry);
}

static PyObject *clear_entry(PyObject *module, PyObject *arg) {
    HostEntry *entry = (HostEntry *)PyLong_AsVoidPtr(arg);
    if (entry == NULL) return NULL;
    Py_CLEAR(entry->func);
    Py_CLEAR(entry->log_gate);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ the epoch ticker */

typedef struct {
    void *engine;
    long interval_ns;
} Ticker;

static void *ticker_main(void *arg) {
    Ticker *ticker = (Ticker *)arg;
    struct timespec interval = {ticker->interval_ns / 1000000000L, ticker->interval_ns % 1000000000L};
    for (;;) {
        nanosleep(&interval, NULL);
        increment_epoch(ticker->engine);
    }
    return NULL;
}

static PyObject *start_ticker(PyObject *module, PyObject *args) {
    unsigned long long engine;
    long ms;
    if (!PyArg_ParseTuple(args, "Kl", &engine, &ms)) return NULL;
    if (increment_epoch == NULL || ms <= 0) {
        PyErr_SetString(PyExc_RuntimeError, "setup() first, with a positive interval");
        return NULL;
    }
    Ticker *ticker = malloc(sizeof(Ticker)); /* lives as long as the thread: forever */
    if (ticker == NULL) return PyErr_NoMemory();
    ticker->engine = (void *)(uintptr_t)engine;
    ticker->interval_ns = ms * 1000000L;
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int rc = pthread_create(&thread, &attr, ticker_main, ticker);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(ticker);
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ header fields */

/* scan(raw, key, drop) -> (present, held): whether a field named `key` (lower case) is
 * in `raw` (a list of (name, value) bytes pairs, names compared ASCII-case-insensitively),
 * and what the map holds as core.wasm.host._size counts it (names + values + 32 a
 * field), leaving out the fields named `key` when `drop` is true. */
static PyObject *scan_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyList_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan(list of (bytes, bytes), bytes, bool)");
        return NULL;
    }
    PyObject *raw = args[0];
    const char *key = PyBytes_AS_STRING(args[1]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[1]);
    int drop = PyObject_IsTrue(args[2]);
    if (drop < 0) return NULL;
    int present = 0;
    Py_ssize_t held = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(raw); i++) {
        PyObject *pair = PyList_GET_ITEM(raw, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "header fields are (bytes, bytes) pairs");
            return NULL;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        Py_ssize_t length = PyBytes_GET_SIZE(name);
        int same = 0;
        if (length == size) {
            const char *text = PyBytes_AS_STRING(name);
            same = 1;
            for (Py_ssize_t j = 0; j < size; j++) {
                char c = text[j];
                if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
                if (c != key[j]) {
                    same = 0;
                    break;
                }
            }
        }
        present |= same;
        if (!(same && drop)) held += length + PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1)) + 32;
    }
    return Py_BuildValue("(On)", present ? Py_True : Py_False, held);
}

/* bad_field(name, value or None) -> bool: what core.wasm.host refuses to put on the
 * wire: an empty name, a name with whitespace (as Python's str \s in Latin-1) or ':',
 * a value with CR, LF or NUL. */
static PyObject *bad_field(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || (args[1] != Py_None && !PyBytes_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "bad_field(bytes, bytes or None)");
        return NULL;
    }
    const unsigned char *name = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (size == 0) Py_RETURN_TRUE;
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = name[i];
        if (c == ':' || c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f) ||
            c == 0x85 || c == 0xa0)
            Py_RETURN_TRUE;
    }
    if (args[1] != Py_None) {
        const char *value = PyBytes_AS_STRING(args[1]);
        Py_ssize_t length = PyBytes_GET_SIZE(args[1]);
        for (Py_ssize_t i = 0; i < length; i++) {
            char c = value[i];
            if (c == '\r' || c == '\n' || c == '\0') Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

/* ------------------------------------------------------------------ setup */

static PyObject *setup(PyObject *module, PyObject *args) {
    unsigned long long call, trap, error, epoch, data, size, main;
    PyObject *handler, *forget;
    if (!PyArg_ParseTuple(args, "KKKKKKOOK", &call, &trap, &error, &epoch, &data, &size, &handler,
                          &forget, &main))
        return NULL;
    if (!call || !trap || !error || !epoch || !data || !size || !PyCallable_Check(handler) ||
        !PyCallable_Check(forget)) {
        PyErr_SetString(PyExc_ValueError, "setup() needs six C functions and a handler");
        return NULL;
    }
    memory_data = (memory_data_t)(uintptr_t)data;
    memory_size = (memory_size_t)(uintptr_t)size;
    call_unchecked = (call_unchecked_t)(uintptr_t)call;
    trap_new = (trap_new_t)(uintptr_t)trap;
    error_new = (error_new_t)(uintptr_t)error;
    increment_epoch = (increment_epoch_t)(uintptr_t)epoch;
    main_thread = (unsigned long)main;
    Py_INCREF(handler);
    Py_XSETREF(on_error, handler);
    Py_INCREF(forget);
    Py_XSETREF(on_forget, forget);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(call_unchecked, trap_new, error_new, increment_epoch, memory_data, "
     "memory_data_size, on_error, on_forget, main thread id)"},
    {"entry", make_entry, METH_VARARGS,
     "entry(func, wide mask, params, has result[, log gate Guest]) -> env of a host function"},
    {"clear", clear_entry, METH_O, "clear(env): the function's instance is closed"},
    {"scan", (PyCFunction)(void (*)(void))scan_fields, METH_FASTCALL,
     "scan(raw, key, drop) -> (present, held): see _crossing.c"},
    {"bad_field", (PyCFunction)(void (*)(void))bad_field, METH_FASTCALL,
     "bad_field(name, value) -> bool: see _crossing.c"},
    {"start_ticker", start_ticker, METH_VARARGS,
     "start_ticker(engine address, ms): advance the engine's epoch every ms, natively"},
    {NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "core.wasm._crossing",
    "The host <-> guest boundary of core.wasm.vm in C (optional).", -1, methods,
};

PyMODINIT_FUNC PyInit__crossing(void) {
    if (PyType_Ready(&GuestType) < 0 || PyType_Ready(&CalleeType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Failed = PyErr_NewException("core.wasm._crossing.Failed", NULL, NULL);
    if (Failed == NULL || PyModule_AddObjectRef(m, "Failed", Failed) < 0 ||
        PyModule_AddObjectRef(m, "Guest", (PyObject *)&GuestType) < 0 ||
        PyModule_AddObjectRef(m, "Callee", (PyObject *)&CalleeType) < 0 ||
        PyModule_AddObject(m, "TRAMPOLINE", PyLong_FromVoidPtr((void *)host_trampoline)) < 0 ||
        PyModule_AddObject(m, "FORGET", PyLong_FromVoidPtr((void *)host_forget)) < 0 ||
        PyModule_AddObject(m, "DEADLINE", PyLong_FromVoidPtr((void *)deadline_callback)) < 0 ||
        PyModule_AddIntConstant(m, "FUNC_SIZE", sizeof(func_t)) < 0 ||
        PyModule_AddIntConstant(m, "MEMORY_SIZE", sizeof(memory_t)) < 0 ||
        PyModule_AddIntConstant(m, "VAL_SIZE", sizeof(val_raw_t)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
