/* core.wasm._crossing: the calls both ways (the Guest and Callee types, the host
 * trampoline, the deadline callback); see _crossing.c. */
#include "_crossing.h"
#include <structmember.h>

static int Guest_init(GuestObject *self, PyObject *args, PyObject *kwds) {
    unsigned long long ctx, ticks;
    if (!PyArg_ParseTuple(args, "KK", &ctx, &ticks)) return -1;
    self->ctx = (void *)(uintptr_t)ctx;
    self->ticks = ticks ? ticks : 1;
    self->calls = 0;
    self->seen = (uint64_t)-1;
    self->depth = 0;
    self->header_bound = -1;
    return 0;
}

static void Guest_dealloc(GuestObject *self) {
    Py_XDECREF(self->log_cache);
    Py_XDECREF(self->alloc);
    Py_XDECREF(self->on_charge);
    for (int i = 0; i < LOG_LEVELS; i++) Py_XDECREF(self->log_levels[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
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

static PyObject *Guest_set_alloc(GuestObject *self, PyObject *arg) {
    if (arg != Py_None && !PyObject_TypeCheck(arg, &CalleeType)) {
        PyErr_SetString(PyExc_TypeError, "the allocator is a Callee, or None");
        return NULL;
    }
    PyObject *alloc = arg == Py_None ? NULL : arg;
    Py_XINCREF(alloc);
    Py_XSETREF(self->alloc, alloc);
    Py_RETURN_NONE;
}

static PyMethodDef Guest_methods[] = {
    {"set_alloc", (PyCFunction)Guest_set_alloc, METH_O,
     "set_alloc(Callee or None): the allocator header values are handed over with"},
    {"set_memory", (PyCFunction)Guest_set_memory, METH_O,
     "set_memory(wasmtime_memory_t address): the memory give() and the log gate use"},
    {"set_log", (PyCFunction)Guest_set_log, METH_VARARGS,
     "set_log(logger._cache, Python level per Proxy-Wasm level): proxy_log's gate"},
    {"give", (PyCFunction)(void (*)(void))Guest_give, METH_FASTCALL,
     "give(alloc, data, ptr_ptr, size_ptr) -> status (see _crossing.c)"},
    {"read", (PyCFunction)(void (*)(void))Guest_read, METH_FASTCALL,
     "read(ptr, size) -> bytes, or None out of bounds (see _crossing_host.c)"},
    {"set_meter", (PyCFunction)(void (*)(void))Guest_set_meter, METH_FASTCALL,
     "set_meter(on_charge, slot_end, room) or set_meter(None): see _crossing_meter.c"},
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
    {"pending", (getter)Guest_pending, NULL,
     "seconds charged by the meter and not yet handed to on_charge", NULL},
    {NULL},
};

static PyMemberDef Guest_members[] = {
    {"held", T_BOOL, offsetof(GuestObject, held), 0,
     "while true, top-level calls are not metered (see _crossing_meter.c)"},
    {"header_bound", T_PYSSIZET, offsetof(GuestObject, header_bound), 0,
     "the host's plugin.limits.max_header_bytes, or -1: read from the host at each edit "
     "(see _crossing_headers.c)"},
    {NULL},
};

PyTypeObject GuestType = {
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
    .tp_members = Guest_members,
};

/* wasmtime_store_epoch_deadline_callback's callback: a call that has run since the
 * last time gets another deadline; one still running since then has had a whole one
 * and traps. Runs on the thread running the guest; takes no GIL. */
void *deadline_callback(void *ctx, void *env, uint64_t *delta, uint8_t *kind) {
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
    double started = 0.0;
    int metered = guest->depth == 0 && guest->on_charge != NULL && !guest->held;
    if (guest->depth == 0) guest->calls++;
    if (metered) started = meter_now();
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
    if (metered) meter_charge(guest, started); /* a trap's time counts too */
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

/* ends(on_done, on_log, on_delete, id): a stream's last three callbacks back to back
 * (Callees of one Guest taking one parameter each), with one Python call and one
 * charge of the CPU budget for the three: on_done's result (None or an int); on_log and
 * on_delete run unless it is 0 (false: the plugin calls proxy_done later). Each counts
 * as a call of its own for the per-callback deadline. A trap or error raises
 * Failed(error address, trap address, index of the callee). */
PyObject *call_ends(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "ends(on_done, on_log, on_delete, id)");
        return NULL;
    }
    GuestObject *guest = NULL;
    for (int i = 0; i < 3; i++) {
        if (!PyObject_TypeCheck(args[i], &CalleeType) ||
            ((CalleeObject *)args[i])->nparams != 1 ||
            (guest != NULL && ((CalleeObject *)args[i])->guest != guest)) {
            PyErr_SetString(PyExc_TypeError, "ends takes three Callees of one Guest, one parameter each");
            return NULL;
        }
        guest = ((CalleeObject *)args[i])->guest;
    }
    unsigned long long id = PyLong_AsUnsignedLongLongMask(args[3]);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    int top = guest->depth == 0;
    int metered = top && guest->on_charge != NULL && !guest->held;
    double started = metered ? meter_now() : 0.0;
    int on_main = PyThread_get_thread_ident() == main_thread;
    void *trap = NULL;
    void *error = NULL;
    int i;
    long first = 1;
    int has_first = ((CalleeObject *)args[0])->nresults != 0;
    for (i = 0; i < 3; i++) {
        CalleeObject *callee = (CalleeObject *)args[i];
        val_raw_t *slots = callee->slots;
        slots[0].i64 = (int64_t)id;
        if (top) guest->calls++;
        guest->depth++;
        if (on_main) {
            error = call_unchecked(guest->ctx, &callee->func, slots, callee->n, &trap);
        } else {
            Py_BEGIN_ALLOW_THREADS
            error = call_unchecked(guest->ctx, &callee->func, slots, callee->n, &trap);
            Py_END_ALLOW_THREADS
        }
        guest->depth--;
        if (error != NULL || trap != NULL) break;
        if (i == 0 && has_first) {
            first = slots[0].i32;
            if (first == 0) {
                i = 3;
                break;
            }
        }
    }
    if (metered) meter_charge(guest, started); /* a trap's time counts too */
    if (error != NULL || trap != NULL) {
        PyObject *info = Py_BuildValue("(NNi)", PyLong_FromVoidPtr(error),
                                       PyLong_FromVoidPtr(trap), i);
        if (info != NULL) {
            PyErr_SetObject(Failed, info);
            Py_DECREF(info);
        }
        return NULL;
    }
    if (!has_first) Py_RETURN_NONE;
    return PyLong_FromLong(first);
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

PyTypeObject CalleeType = {
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

static void *trap_with(const char *text) { return trap_new(text, strlen(text)); }

/* The wasmtime_func_unchecked_callback_t of every host function. */
void *host_trampoline(void *env, void *caller, val_raw_t *slots, size_t n) {
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
    PyObject *result;
    Py_INCREF(func); /* the call may close the instance (clear() drops the entry's ref) */
    if (entry->fields_gate != NULL) {
        long status = fields_fast(entry, slots);
        if (status >= 0) {
            Py_DECREF(func);
            slots[0].i64 = status;
            goto done;
        }
        if (status == -2) {
            nparams = 0;
            result = NULL;
            goto failed;
        }
    }
    argv[0] = NULL;
    for (int i = 0; i < nparams; i++) {
        PyObject *arg = (entry->wide >> i) & 1
                            ? PyLong_FromUnsignedLongLong((uint64_t)slots[i].i64)
                            : PyLong_FromUnsignedLong((uint32_t)slots[i].i32);
        if (arg == NULL) {
            for (int j = 1; j <= i; j++) Py_DECREF(argv[j]);
            PyErr_Clear();
            trap = trap_with("host function: out of memory");
            Py_DECREF(func);
            goto done;
        }
        argv[i + 1] = arg;
    }
    result = PyObject_Vectorcall(func, argv + 1,
                                 (size_t)nparams | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    for (int i = 1; i <= nparams; i++) Py_DECREF(argv[i]);
failed:;
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
void host_forget(void *env) {
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
            Py_CLEAR(entry->fields_gate);
            PyGILState_Release(state);
        }
    }
    free(entry);
}

PyObject *make_entry(PyObject *module, PyObject *args) {
    PyObject *func, *gate = Py_None, *fields = Py_None;
    unsigned long long wide;
    int nparams, has_result, op = 0;
    if (!PyArg_ParseTuple(args, "OKip|OOi", &func, &wide, &nparams, &has_result, &gate, &fields,
                          &op))
        return NULL;
    if (fields != Py_None &&
        (!PyObject_TypeCheck(fields, &GuestType) || op < FIELDS_GET || op > FIELDS_REMOVE ||
         nparams != (op == FIELDS_REMOVE ? 3 : 5) || !has_result || wide != 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "a header gate serves a proxy_*_header_map_value of the ABI's type");
        return NULL;
    }
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
    entry->fields_gate = NULL;
    entry->fields_op = 0;
    if (fields != Py_None) {
        Py_INCREF(fields);
        entry->fields_gate = (GuestObject *)fields;
        entry->fields_op = op;
    }
    if (gate != Py_None) {
        Py_INCREF(gate);
        entry->log_gate = (GuestObject *)gate;
    }
    return PyLong_FromVoidPtr(entry);
}

PyObject *clear_entry(PyObject *module, PyObject *arg) {
    HostEntry *entry = (HostEntry *)PyLong_AsVoidPtr(arg);
    if (entry == NULL) return NULL;
    Py_CLEAR(entry->func);
    Py_CLEAR(entry->log_gate);
    Py_CLEAR(entry->fields_gate);
    Py_RETURN_NONE;
}
