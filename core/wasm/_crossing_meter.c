/* core.wasm._crossing: the CPU budget's common case, charged in the Callee; see
 * _crossing.c.
 *
 * A filter's CpuBudget (core/wasm/budget.py) is kept by Python. Charging it around
 * every callback took two time.monotonic() calls and a dozen lines of Python per
 * callback, more than some of the callbacks themselves. Here a Guest with a meter
 * (set_meter) times each top-level call itself (CLOCK_MONOTONIC, the clock of
 * time.monotonic) and settles the common case alone: the call ended before the
 * budget's current slot ends (slot_end) and leaves it under its limit (room: seconds
 * left). Such charges add up in `pending`. Any other call (a new slot, or over the
 * budget) goes to on_charge(now, spent, pending), which hands pending and this call to
 * the CpuBudget (all of pending belongs to the slot that was current: the fast path
 * never crosses slot_end) and answers the new (slot_end, room). So the budget sees
 * every second the guest ran, and goes over at the same call as when Python charged
 * each one; meanwhile its current slot lacks at most `pending`, which no one reads.
 */
#include "_crossing.h"

double meter_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A top-level call that began at `started` has returned: charge it. Never fails (an
 * error of on_charge is reported as unraisable; the exception of the call, if any,
 * is kept). */
void meter_charge(GuestObject *guest, double started) {
    double now = meter_now();
    double spent = now - started;
    if (now < guest->slot_end && spent <= guest->room) {
        guest->room -= spent;
        guest->pending += spent;
        return;
    }
    PyObject *on_charge = guest->on_charge;
    if (on_charge == NULL) return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    double pending = guest->pending;
    guest->pending = 0.0;
    guest->room = 0.0; /* until on_charge answers: the next call takes the slow path */
    Py_INCREF(on_charge);
    PyObject *answer = PyObject_CallFunction(on_charge, "ddd", now, spent, pending);
    double slot_end, room;
    if (answer == NULL || !PyArg_ParseTuple(answer, "dd", &slot_end, &room)) {
        PyErr_WriteUnraisable(on_charge);
    } else if (guest->on_charge == on_charge) { /* (not cleared by the callback) */
        guest->slot_end = slot_end;
        guest->room = room;
    }
    Py_XDECREF(answer);
    Py_DECREF(on_charge);
    PyErr_Restore(type, value, tb);
}

/* set_meter(on_charge, slot_end, room): time top-level calls and charge them (see
 * above); set_meter(None): stop (what was pending is dropped: call it after handing
 * `pending` over). */
PyObject *Guest_set_meter(GuestObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs == 1 && args[0] == Py_None) {
        Py_CLEAR(self->on_charge);
        self->pending = 0.0;
        self->room = 0.0;
        self->slot_end = 0.0;
        Py_RETURN_NONE;
    }
    if (nargs != 3 || !PyCallable_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "set_meter(on_charge, slot_end, room) or set_meter(None)");
        return NULL;
    }
    double slot_end = PyFloat_AsDouble(args[1]);
    if (slot_end == -1.0 && PyErr_Occurred()) return NULL;
    double room = PyFloat_AsDouble(args[2]);
    if (room == -1.0 && PyErr_Occurred()) return NULL;
    Py_INCREF(args[0]);
    Py_XSETREF(self->on_charge, args[0]);
    self->slot_end = slot_end;
    self->room = room;
    self->pending = 0.0;
    Py_RETURN_NONE;
}

PyObject *Guest_pending(GuestObject *self, void *closure) {
    return PyFloat_FromDouble(self->pending);
}
