/* core.wasm._crossing: what host functions need without calling Python (bytes handed
 * to the guest, proxy_log below the level, header field checks); see _crossing.c. */
#include "_crossing.h"

/* Where the guest's memory is (its size in bytes), or NULL when it has none. */
uint8_t *guest_memory(GuestObject *guest, size_t *size) {
    if (!guest->has_memory) return NULL;
    *size = memory_size(guest->ctx, &guest->memory);
    return memory_data(guest->ctx, &guest->memory);
}

/* give(alloc, data, ptr_ptr, size_ptr): data copied into memory the guest allocates
 * (with the Callee `alloc`), its address and size stored at ptr_ptr and size_ptr
 * (zeros for no data): 0, 6 (a pointer out of bounds) or 10 (no memory, or the guest
 * could not allocate); Failed when the allocator traps. */
PyObject *Guest_give(GuestObject *self, PyObject *const *args, Py_ssize_t nargs) {
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

/* read(ptr, size): the `size` bytes at `ptr` in the guest's memory, as bytes; None when
 * any of them is out of bounds (or negative, or the guest has no memory). What every
 * host function that takes a string does first. */
PyObject *Guest_read(GuestObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read(ptr, size)");
        return NULL;
    }
    int overflow = 0;
    long long ptr = PyLong_AsLongLongAndOverflow(args[0], &overflow);
    if (ptr == -1 && PyErr_Occurred()) return NULL;
    if (overflow) Py_RETURN_NONE;
    long long count = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (count == -1 && PyErr_Occurred()) return NULL;
    if (overflow) Py_RETURN_NONE;
    size_t size;
    uint8_t *base = guest_memory(self, &size);
    /* (written so that no sum can wrap) */
    if (base == NULL || ptr < 0 || count < 0 || (uint64_t)ptr > size ||
        (uint64_t)count > size - (uint64_t)ptr)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)base + ptr, (Py_ssize_t)count);
}

/* proxy_log(level, ptr, size) below the logger's level: its status, answered without
 * calling Python (the pointer checked, nothing copied); -1 when Python must answer. */
long log_below(GuestObject *guest, val_raw_t *slots) {
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

/* ------------------------------------------------------------------ header fields */

/* scan(raw, key, drop) -> (present, held): whether a field named `key` (lower case) is
 * in `raw` (a list of (name, value) bytes pairs, names compared ASCII-case-insensitively),
 * and what the map holds as core.wasm.host._size counts it (names + values + 32 a
 * field), leaving out the fields named `key` when `drop` is true. */
PyObject *scan_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
PyObject *bad_field(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
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
