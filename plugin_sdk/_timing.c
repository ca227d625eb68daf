/* plugin_sdk._timing: a filter phase call timed in C (plugin_sdk/chain.py's runners).
 *
 * Optional: without it (no C compiler at install), chain.py's generated runners read
 * time.perf_counter themselves. Both ways every call's duration, in seconds, is
 * appended to the filter's FilterStats.pending list of that phase.
 *
 *   Timed(call, pending, flush=None)
 *            calling it with the phase's arguments calls ``call`` with them, reads the
 *            monotonic clock (the one time.perf_counter reads on Linux) before and
 *            after, and appends the difference as a float to ``pending``: also when
 *            ``call`` raised (the exception goes on, untouched). With ``flush``, once
 *            ``pending`` holds FLUSH_AT durations or more after the append,
 *            ``flush()`` is called (an error there is reported as unraisable: it must
 *            not pass for the filter's).
 *
 * In Python the same costs a clock read (a float object), a subtraction (another),
 * a bound method call and a few name loads and stores per phase call; here it is two
 * vDSO clock reads and one float, inside a call the runner makes anyway.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

#define FLUSH_AT 256 /* FilterStats.PENDING */

typedef struct {
    PyObject_HEAD
    PyObject *call;
    PyObject *pending; /* a list */
    PyObject *flush;   /* a callable or NULL */
    vectorcallfunc vectorcall;
} Timed;

static inline int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
append_duration(Timed *self, int64_t ns)
{
    PyObject *d = PyFloat_FromDouble((double)ns * 1e-9);
    if (d == NULL)
        return -1;
    int rc = PyList_Append(self->pending, d);
    Py_DECREF(d);
    return rc;
}

static PyObject *
timed_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Timed *self = (Timed *)op;
    int64_t start = now_ns();
    PyObject *result = PyObject_Vectorcall(self->call, args, nargsf, kwnames);
    int64_t took = now_ns() - start;
    if (result == NULL) {
        /* Count the failed call too, keeping the filter's exception as it is. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (append_duration(self, took) < 0)
            PyErr_WriteUnraisable(op);
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (append_duration(self, took) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    if (self->flush != NULL && PyList_GET_SIZE(self->pending) >= FLUSH_AT) {
        PyObject *done = PyObject_CallNoArgs(self->flush);
        if (done == NULL)
            PyErr_WriteUnraisable(self->flush);
        else
            Py_DECREF(done);
    }
    return result;
}

static PyObject *
timed_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"call", "pending", "flush", NULL};
    PyObject *call, *pending, *flush = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!|O:Timed", kwlist, &call, &PyList_Type,
                                     &pending, &flush))
        return NULL;
    if (!PyCallable_Check(call)) {
        PyErr_SetString(PyExc_TypeError, "Timed: call must be callable");
        return NULL;
    }
    if (flush != Py_None && !PyCallable_Check(flush)) {
        PyErr_SetString(PyExc_TypeError, "Timed: flush must be callable or None");
        return NULL;
    }
    Timed *self = (Timed *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(call);
    self->call = call;
    Py_INCREF(pending);
    self->pending = pending;
    if (flush != Py_None) {
        Py_INCREF(flush);
        self->flush = flush;
    }
    self->vectorcall = timed_vectorcall;
    return (PyObject *)self;
}

static int
timed_traverse(Timed *self, visitproc visit, void *arg)
{
    Py_VISIT(self->call);
    Py_VISIT(self->pending);
    Py_VISIT(self->flush);
    return 0;
}

static int
timed_clear(Timed *self)
{
    Py_CLEAR(self->call);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->flush);
    return 0;
}

static void
timed_dealloc(Timed *self)
{
    PyObject_GC_UnTrack(self);
    timed_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef timed_members[] = {
    {"call", T_OBJECT, offsetof(Timed, call), READONLY, "the phase it calls"},
    {"pending", T_OBJECT, offsetof(Timed, pending), READONLY, "where durations go"},
    {"flush", T_OBJECT, offsetof(Timed, flush), READONLY, "called when pending is full"},
    {NULL},
};

static PyTypeObject TimedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugin_sdk._timing.Timed",
    .tp_doc = "Timed(call, pending, flush=None): call, timed, the duration appended.",
    .tp_basicsize = sizeof(Timed),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = timed_new,
    .tp_dealloc = (destructor)timed_dealloc,
    .tp_traverse = (traverseproc)timed_traverse,
    .tp_clear = (inquiry)timed_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Timed, vectorcall),
    .tp_members = timed_members,
};

static struct PyModuleDef timing_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "plugin_sdk._timing",
    .m_doc = "A filter phase call timed in C (see plugin_sdk/_timing.c).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__timing(void)
{
    if (PyType_Ready(&TimedType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&timing_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "FLUSH_AT", FLUSH_AT) < 0 ||
        PyModule_AddObjectRef(m, "Timed", (PyObject *)&TimedType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
