/* core.wasm._crossing: the host <-> guest boundary of core/wasm/vm.py, in C.
 *
 * Optional: vm.py falls back to its ctypes path when this extension is not built.
 * It needs no wasmtime headers and links nothing: vm.py hands it the addresses of the
 * few C API functions it calls (from wasmtime-py's loaded library) through setup(),
 * and the few types used here are declared in _crossing.h with the layouts of the C API.
 *
 * Files: _crossing.c (this one: setup, the epoch ticker, the module), _crossing_calls.c
 * (the calls both ways), _crossing_host.c (host-side work done without Python),
 * _crossing_headers.c (the header-map host functions' common cases), _crossing_meter.c
 * (the CPU budget's common case, charged around each top-level call).
 *
 *   Guest    one per instance: the store's context, the calls counted for the epoch
 *            deadline (see deadline_callback), the deadline in epoch ticks.
 *   Callee   one per exported function: called with ints, it writes them into the raw
 *            slots, calls wasmtime_func_call_unchecked and returns the i32 result (or
 *            None); a trap or error raises Failed(error address, trap address).
 *   ends()   a stream's on_done, on_log and on_delete Callees back to back, one Python
 *            call and one budget charge for the three (see call_ends).
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
#include "_crossing.h"

call_unchecked_t call_unchecked;
trap_new_t trap_new;
error_new_t error_new;
increment_epoch_t increment_epoch;
memory_data_t memory_data;
memory_size_t memory_size;
unsigned long main_thread;
PyObject *on_error;  /* on_error(func, exc) -> str (trap with it) or None (status 10) */
PyObject *Failed;    /* raised by a Callee: args (error address, trap address) */
PyObject *on_forget; /* on_forget(env address): wasmtime let go of a host function */

/* ------------------------------------------------------------------ the epoch ticker */

typedef struct {
    void *engine;
    long interval_ns;
    PyObject *owner; /* the Python Engine: a reference never given back, so it is never freed */
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
    PyObject *owner;
    if (!PyArg_ParseTuple(args, "KlO", &engine, &ms, &owner)) return NULL;
    if (increment_epoch == NULL || ms <= 0) {
        PyErr_SetString(PyExc_RuntimeError, "setup() first, with a positive interval");
        return NULL;
    }
    Ticker *ticker = malloc(sizeof(Ticker)); /* lives as long as the thread: forever */
    if (ticker == NULL) return PyErr_NoMemory();
    ticker->engine = (void *)(uintptr_t)engine;
    ticker->interval_ns = ms * 1000000L;
    /* The thread ticks until the process ends, so the engine must outlive every Python
     * reference to it: at interpreter exit the module globals are cleared and wasmtime
     * would free the engine while this thread still advances its epoch. */
    Py_INCREF(owner);
    ticker->owner = owner;
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int rc = pthread_create(&thread, &attr, ticker_main, ticker);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        Py_DECREF(owner);
        free(ticker);
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
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
     "entry(func, wide mask, params, has result[, log gate Guest[, header gate Guest, op]]) "
     "-> env of a host function"},
    {"clear", clear_entry, METH_O, "clear(env): the function's instance is closed"},
    {"scan", (PyCFunction)(void (*)(void))scan_fields, METH_FASTCALL,
     "scan(raw, key, drop) -> (present, held): see _crossing.c"},
    {"bad_field", (PyCFunction)(void (*)(void))bad_field, METH_FASTCALL,
     "bad_field(name, value) -> bool: see _crossing.c"},
    {"ends", (PyCFunction)(void (*)(void))call_ends, METH_FASTCALL,
     "ends(on_done, on_log, on_delete, id) -> on_done's result: see _crossing_calls.c"},
    {"start_ticker", start_ticker, METH_VARARGS,
     "start_ticker(engine address, ms, engine): advance the engine's epoch every ms, natively; the engine is kept alive for good"},
    {NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "core.wasm._crossing",
    "The host <-> guest boundary of core.wasm.vm in C (optional).", -1, methods,
};

PyMODINIT_FUNC PyInit__crossing(void) {
    if (PyType_Ready(&GuestType) < 0 || PyType_Ready(&CalleeType) < 0 || fields_setup() < 0)
        return NULL;
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
