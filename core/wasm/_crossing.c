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

static call_unchecked_t call_unchecked;
static trap_new_t trap_new;
static error_new_t error_new;
static increment_epoch_t increment_epoch;
static unsigned long main_thread;
static PyObject *on_error;  /* on_error(func, exc) -> str (trap with it) or None (status 10) */
static PyObject *Failed;    /* raised by a Callee: args (error address, trap address) */

#define MAX_PARAMS 32
#define INTERNAL_FAILURE 10
static const char DEADLINE_TEXT[] = "CPU deadline exceeded (epoch interrupt)";

/* ------------------------------------------------------------------ Guest */

typedef struct {
    PyObject_HEAD
    void *ctx;          /* wasmtime_context_t* */
    uint64_t calls;     /* top-level calls into the guest so far */
    uint64_t seen;      /* `calls` when the deadline callback last let a call go on */
    uint64_t ticks;     /* the deadline, in epoch ticks */
    long depth;         /* calls in progress (a host function may call the guest) */
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
} HostEntry;

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
    if (entry->func != NULL && Py_IsInitialized()) {
#if PY_VERSION_HEX >= 0x030D0000
        int finalizing = Py_IsFinalizing();
#else
        int finalizing = _Py_IsFinalizing();
#endif
        if (!finalizing) {
            PyGILState_STATE state = PyGILState_Ensure();
            Py_CLEAR(entry->func);
            PyGILState_Release(state);
        }
    }
    free(entry);
}

static PyObject *make_entry(PyObject *module, PyObject *args) {
    PyObject *func;
    unsigned long long wide;
    int nparams, has_result;
    if (!PyArg_ParseTuple(args, "OKip", &func, &wide, &nparams, &has_result)) return NULL;
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
    return PyLong_FromVoidPtr(entry);
}

static PyObject *clear_entry(PyObject *module, PyObject *arg) {
    HostEntry *entry = (HostEntry *)PyLong_AsVoidPtr(arg);
    if (entry == NULL) return NULL;
    Py_CLEAR(entry->func);
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

/* ------------------------------------------------------------------ setup */

static PyObject *setup(PyObject *module, PyObject *args) {
    unsigned long long call, trap, error, epoch, main;
    PyObject *handler;
    if (!PyArg_ParseTuple(args, "KKKKOK", &call, &trap, &error, &epoch, &handler, &main))
        return NULL;
    if (!call || !trap || !error || !epoch || !PyCallable_Check(handler)) {
        PyErr_SetString(PyExc_ValueError, "setup() needs four C functions and a handler");
        return NULL;
    }
    call_unchecked = (call_unchecked_t)(uintptr_t)call;
    trap_new = (trap_new_t)(uintptr_t)trap;
    error_new = (error_new_t)(uintptr_t)error;
    increment_epoch = (increment_epoch_t)(uintptr_t)epoch;
    main_thread = (unsigned long)main;
    Py_INCREF(handler);
    Py_XSETREF(on_error, handler);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(call_unchecked, trap_new, error_new, increment_epoch, on_error, main thread id)"},
    {"entry", make_entry, METH_VARARGS,
     "entry(func, wide mask, params, has result) -> env address of a host function"},
    {"clear", clear_entry, METH_O, "clear(env): the function's instance is closed"},
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
        PyModule_AddObject(m, "DEADLINE", PyLong_FromVoidPtr((void *)deadline_callback)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
