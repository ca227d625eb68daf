/* plugin_sdk._timing: the filter phase calls' clock and histogram, in C (plugin_sdk/chain.py).
 *
 * Optional: without it (no C compiler at install), chain.py's generated runners read
 * time.perf_counter themselves and append each duration to FilterStats.pending, binned
 * later. Both ways the runners read the clock once per call (a call's end is the next
 * one's start), and every call is counted in its bucket of FilterStats.BOUNDS.
 *
 *   Bins(bounds)
 *            one per filter and phase (FilterStats.bins): calls per bucket (a duration
 *            d goes to the first bound >= d, the last bucket past every bound: what
 *            bisect_left gives) and the sum of the durations. drain(row) adds the counts
 *            to the list ``row``, returns the sum, and starts again from zero.
 *   Clock()  one per runner; calling it (no arguments) notes the time: the start of
 *            the runner's first call. The monotonic clock, the one time.perf_counter
 *            reads on Linux.
 *   Lap(clock, bins)
 *            one per phase call of a runner; calling it (no arguments) right after the
 *            call reads the clock, counts the time since the clock's last note in
 *            ``bins``, and notes the time (the next call's start).
 *
 * The filter's own call stays in the runner's bytecode, where the interpreter calls a
 * Python function without entering a new evaluation loop; only the timing moves here.
 * In Python it costs a clock read (a float object), a subtraction (another), a list
 * append, and its share of sorting and cutting the batch; here one call of a C object,
 * one clock read and a few comparisons, with no object made.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

#define MAX_BOUNDS 64

typedef struct {
    PyObject_HEAD
    Py_ssize_t n; /* bounds; counts has n + 1 */
    double bounds[MAX_BOUNDS];
    long long counts[MAX_BOUNDS + 1];
    double seconds;
} Bins;

typedef struct {
    PyObject_HEAD
    int64_t last; /* ns, CLOCK_MONOTONIC */
    vectorcallfunc vectorcall;
} Clock;

typedef struct {
    PyObject_HEAD
    Clock *clock;
    Bins *bins;
    vectorcallfunc vectorcall;
} Lap;

static inline int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static PyTypeObject BinsType;

static inline void
bins_add(Bins *b, double d)
{
    Py_ssize_t i = 0;
    while (i < b->n && d > b->bounds[i])
        i++;
    b->counts[i]++;
    b->seconds += d;
}

static PyObject *
bins_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"bounds", NULL};
    PyObject *bounds;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:Bins", kwlist, &PyTuple_Type, &bounds))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(bounds);
    if (n > MAX_BOUNDS) {
        PyErr_Format(PyExc_ValueError, "Bins: at most %d bounds", MAX_BOUNDS);
        return NULL;
    }
    Bins *self = (Bins *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (v == -1.0 && PyErr_Occurred()) {
            Py_DECREF(self);
            return NULL;
        }
        if (i && v <= self->bounds[i - 1]) {
            PyErr_SetString(PyExc_ValueError, "Bins: bounds must increase");
            Py_DECREF(self);
            return NULL;
        }
        self->bounds[i] = v;
    }
    return (PyObject *)self;
}

static PyObject *
bins_drain(Bins *self, PyObject *row)
{
    if (!PyList_Check(row) || PyList_GET_SIZE(row) != self->n + 1) {
        PyErr_SetString(PyExc_TypeError, "drain: row must be a list of len(bounds) + 1 ints");
        return NULL;
    }
    for (Py_ssize_t i = 0; i <= self->n; i++) {
        if (!self->counts[i])
            continue;
        PyObject *add = PyLong_FromLongLong(self->counts[i]);
        if (add == NULL)
            return NULL;
        PyObject *sum = PyNumber_Add(PyList_GET_ITEM(row, i), add);
        Py_DECREF(add);
        if (sum == NULL)
            return NULL;
        PyList_SetItem(row, i, sum); /* steals sum, drops the old item */
        self->counts[i] = 0;
    }
    double seconds = self->seconds;
    self->seconds = 0.0;
    return PyFloat_FromDouble(seconds);
}

static PyObject *
bins_add_py(Bins *self, PyObject *arg)
{
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred())
        return NULL;
    bins_add(self, d);
    Py_RETURN_NONE;
}

static PyObject *
bins_get_calls(Bins *self, void *closure)
{
    long long total = 0;
    for (Py_ssize_t i = 0; i <= self->n; i++)
        total += self->counts[i];
    return PyLong_FromLongLong(total);
}

static PyMethodDef bins_methods[] = {
    {"drain", (PyCFunction)bins_drain, METH_O,
     "drain(row): add the counts to row, return the sum of durations; start from zero"},
    {"add", (PyCFunction)bins_add_py, METH_O, "add(seconds): count one duration"},
    {NULL},
};

static PyGetSetDef bins_getset[] = {
    {"calls", (getter)bins_get_calls, NULL, "durations counted since the last drain", NULL},
    {NULL},
};

static PyTypeObject BinsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugin_sdk._timing.Bins",
    .tp_doc = "Bins(bounds): calls per duration bucket and their sum, drained by drain().",
    .tp_basicsize = sizeof(Bins),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = bins_new,
    .tp_methods = bins_methods,
    .tp_getset = bins_getset,
};

static PyTypeObject ClockType;

static PyObject *
clock_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "Clock() takes no arguments");
        return NULL;
    }
    ((Clock *)op)->last = now_ns();
    Py_RETURN_NONE;
}

static PyObject *
clock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Clock() takes no arguments");
        return NULL;
    }
    Clock *self = (Clock *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->last = now_ns();
    self->vectorcall = clock_vectorcall;
    return (PyObject *)self;
}

static PyObject *
clock_get_last(Clock *self, void *closure)
{
    return PyFloat_FromDouble((double)self->last * 1e-9);
}

static PyGetSetDef clock_getset[] = {
    {"last", (getter)clock_get_last, NULL, "the time last noted (seconds)", NULL},
    {NULL},
};

static PyTypeObject ClockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugin_sdk._timing.Clock",
    .tp_doc = "Clock(): calling it notes the time (the start of a runner's first call).",
    .tp_basicsize = sizeof(Clock),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = clock_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Clock, vectorcall),
    .tp_getset = clock_getset,
};

static PyObject *
lap_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Lap *self = (Lap *)op;
    if (PyVectorcall_NARGS(nargsf) || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "Lap() takes no arguments");
        return NULL;
    }
    int64_t now = now_ns();
    bins_add(self->bins, (double)(now - self->clock->last) * 1e-9);
    self->clock->last = now;
    Py_RETURN_NONE;
}

static PyObject *
lap_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"clock", "bins", NULL};
    PyObject *clock, *bins;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!:Lap", kwlist, &ClockType, &clock,
                                     &BinsType, &bins))
        return NULL;
    Lap *self = (Lap *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(clock);
    self->clock = (Clock *)clock;
    Py_INCREF(bins);
    self->bins = (Bins *)bins;
    self->vectorcall = lap_vectorcall;
    return (PyObject *)self;
}

static int
lap_traverse(Lap *self, visitproc visit, void *arg)
{
    Py_VISIT(self->clock);
    Py_VISIT(self->bins);
    return 0;
}

static int
lap_clear(Lap *self)
{
    Py_CLEAR(self->clock);
    Py_CLEAR(self->bins);
    return 0;
}

static void
lap_dealloc(Lap *self)
{
    PyObject_GC_UnTrack(self);
    lap_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef lap_members[] = {
    {"clock", T_OBJECT, offsetof(Lap, clock), READONLY, "the runner's clock"},
    {"bins", T_OBJECT, offsetof(Lap, bins), READONLY, "where durations are counted"},
    {NULL},
};

static PyTypeObject LapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "plugin_sdk._timing.Lap",
    .tp_doc = "Lap(clock, bins): calling it counts the time since the clock's last note "
              "in bins, and notes the time.",
    .tp_basicsize = sizeof(Lap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = lap_new,
    .tp_dealloc = (destructor)lap_dealloc,
    .tp_traverse = (traverseproc)lap_traverse,
    .tp_clear = (inquiry)lap_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Lap, vectorcall),
    .tp_members = lap_members,
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
    if (PyType_Ready(&BinsType) < 0 || PyType_Ready(&ClockType) < 0 ||
        PyType_Ready(&LapType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&timing_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Bins", (PyObject *)&BinsType) < 0 ||
        PyModule_AddObjectRef(m, "Clock", (PyObject *)&ClockType) < 0 ||
        PyModule_AddObjectRef(m, "Lap", (PyObject *)&LapType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
