/* core.wasm._crossing: the header-map host functions' common cases without calling
 * Python (see _crossing.c). proxy_get_header_map_value and proxy_{replace,add,remove}_
 * header_map_value on the request's or the response's headers are answered here from
 * the lists the Python host functions would use (host.stream.ctx.request.headers.raw,
 * ...response.headers.raw), with the same rules: names compared ASCII-case-insensitively,
 * names stored lower case, the request's pseudo-headers read from the request, invalid
 * fields refused, the map's size bounded. Anything else (another map, a pseudo-header
 * edit, a pointer out of bounds, a map over its bound, something of an unexpected type)
 * is left to the Python host function, which stays the one definition of the rules.
 * The host is found through the host function itself, a method of the Host: a Python
 * bound method, or a builtin one where mypyc compiled core/wasm/host.py (see host_of). */
#include "_crossing.h"

#define NOT_FOUND 1
#define KEY_MAX 256
#define REQUEST_HEADERS 0
#define RESPONSE_HEADERS 2

static PyObject *s_stream, *s_ctx, *s_request, *s_response, *s_headers, *s_raw, *s_method,
    *s_host, *s_scheme, *s_wire_target, *s_plugin, *s_limits, *s_max_header_bytes;

int fields_setup(void) {
#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return -1;
    INTERN(s_stream, "stream")
    INTERN(s_ctx, "ctx")
    INTERN(s_request, "request")
    INTERN(s_response, "response")
    INTERN(s_headers, "headers")
    INTERN(s_raw, "raw")
    INTERN(s_method, "method")
    INTERN(s_host, "host")
    INTERN(s_scheme, "scheme")
    INTERN(s_wire_target, "wire_target")
    INTERN(s_plugin, "plugin")
    INTERN(s_limits, "limits")
    INTERN(s_max_header_bytes, "max_header_bytes")
#undef INTERN
    return 0;
}

/* The `size` bytes at `ptr` in the guest's memory, or NULL when out of bounds. */
static const uint8_t *guest_span(GuestObject *guest, uint32_t ptr, uint32_t size) {
    size_t limit;
    uint8_t *base = guest_memory(guest, &limit);
    if (base == NULL || (uint64_t)ptr + (uint64_t)size > limit) return NULL;
    return base + ptr;
}

/* A new reference to host.stream.ctx, or NULL (no error set) when there is none. */
static PyObject *current_ctx(PyObject *host) {
    PyObject *stream = PyObject_GetAttr(host, s_stream);
    if (stream == NULL || stream == Py_None) {
        Py_XDECREF(stream);
        PyErr_Clear();
        return NULL;
    }
    PyObject *ctx = PyObject_GetAttr(stream, s_ctx);
    Py_DECREF(stream);
    if (ctx == NULL || ctx == Py_None) {
        Py_XDECREF(ctx);
        PyErr_Clear();
        return NULL;
    }
    return ctx;
}

/* A new reference to the raw list of map `kind` (request or response headers) of
 * the host's stream, or NULL (no error set) when Python must answer. *message gets a
 * new reference to the request or response. */
static PyObject *map_list(PyObject *host, long kind, PyObject **message, PyObject **ctx_out) {
    PyObject *ctx = current_ctx(host);
    if (ctx == NULL) return NULL;
    PyObject *msg = PyObject_GetAttr(ctx, kind == REQUEST_HEADERS ? s_request : s_response);
    if (msg == NULL || msg == Py_None) goto none;
    if (kind == RESPONSE_HEADERS) {
        int truth = PyObject_IsTrue(msg);
        if (truth != 1) goto none;
    }
    PyObject *headers = PyObject_GetAttr(msg, s_headers);
    if (headers == NULL) goto none;
    PyObject *raw = PyObject_GetAttr(headers, s_raw);
    Py_DECREF(headers);
    if (raw == NULL || !PyList_CheckExact(raw)) {
        Py_XDECREF(raw);
        goto none;
    }
    *message = msg;
    *ctx_out = ctx;
    return raw;
none:
    Py_XDECREF(msg);
    Py_DECREF(ctx);
    PyErr_Clear();
    return NULL;
}

/* Whether pair is a (bytes, bytes) tuple whose name equals `key` (lower case) ignoring
 * ASCII case; -1 when it is not a pair of bytes. */
static int same_name(PyObject *pair, const char *key, Py_ssize_t size) {
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 0)) ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 1)))
        return -1;
    PyObject *name = PyTuple_GET_ITEM(pair, 0);
    if (PyBytes_GET_SIZE(name) != size) return 0;
    const char *text = PyBytes_AS_STRING(name);
    for (Py_ssize_t j = 0; j < size; j++) {
        char c = text[j];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != key[j]) return 0;
    }
    return 1;
}

/* A request pseudo-header's value (new reference), or NULL (no error) when not one of
 * the four. */
static PyObject *pseudo_value(PyObject *ctx, PyObject *request, const char *key, size_t size) {
    PyObject *text = NULL, *value = NULL;
    if (size == 7 && memcmp(key, ":method", 7) == 0) {
        text = PyObject_GetAttr(request, s_method);
        if (text != NULL && PyUnicode_Check(text)) value = PyUnicode_AsUTF8String(text);
    } else if (size == 5 && memcmp(key, ":path", 5) == 0) {
        value = PyObject_CallMethodNoArgs(request, s_wire_target);
        if (value != NULL && !PyBytes_CheckExact(value)) Py_CLEAR(value);
    } else if (size == 10 && memcmp(key, ":authority", 10) == 0) {
        text = PyObject_GetAttr(request, s_host);
        if (text != NULL && PyUnicode_Check(text)) value = PyUnicode_AsLatin1String(text);
    } else if (size == 7 && memcmp(key, ":scheme", 7) == 0) {
        text = PyObject_GetAttr(ctx, s_scheme);
        if (text != NULL && PyUnicode_Check(text)) value = PyUnicode_AsUTF8String(text);
    }
    Py_XDECREF(text);
    if (value == NULL) PyErr_Clear();
    return value;
}

/* The key at slots (ptr, size), lower-cased into `key`; its size, or -1. */
static Py_ssize_t read_key(GuestObject *guest, val_raw_t *slots, char *key) {
    uint32_t size = (uint32_t)slots[1].i32;
    if (size == 0 || size > KEY_MAX) return -1;
    const uint8_t *src = guest_span(guest, (uint32_t)slots[0].i32, size);
    if (src == NULL) return -1;
    for (uint32_t i = 0; i < size; i++) {
        char c = (char)src[i];
        key[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return (Py_ssize_t)size;
}

/* proxy_get_header_map_value(kind, key ptr, key size, value ptr ptr, value size ptr):
 * its status, or -1 when Python must answer (*trap set when the allocator trapped). */
static long get_value(HostEntry *entry, PyObject *host, val_raw_t *slots, int *failed) {
    GuestObject *guest = entry->fields_gate;
    long kind = (uint32_t)slots[0].i32;
    if ((kind != REQUEST_HEADERS && kind != RESPONSE_HEADERS) || guest->alloc == NULL) return -1;
    char key[KEY_MAX];
    Py_ssize_t size = read_key(guest, slots + 1, key);
    if (size < 0) return -1;
    PyObject *message = NULL, *ctx = NULL;
    PyObject *raw = map_list(host, kind, &message, &ctx);
    if (raw == NULL) return -1;
    PyObject *value = NULL;
    long status = -1;
    if (key[0] == ':') {
        if (kind == REQUEST_HEADERS) value = pseudo_value(ctx, message, key, (size_t)size);
        if (value == NULL) goto done; /* :status, or another name: Python's rules */
    } else {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(raw); i++) {
            PyObject *pair = PyList_GET_ITEM(raw, i);
            int same = same_name(pair, key, size);
            if (same < 0) goto done;
            if (same) {
                value = PyTuple_GET_ITEM(pair, 1);
                Py_INCREF(value);
                break;
            }
        }
        if (value == NULL) {
            status = NOT_FOUND;
            goto done;
        }
    }
    PyObject *argv[4] = {guest->alloc, value, NULL, NULL};
    argv[2] = PyLong_FromUnsignedLong((uint32_t)slots[3].i32);
    argv[3] = PyLong_FromUnsignedLong((uint32_t)slots[4].i32);
    PyObject *given = (argv[2] && argv[3]) ? Guest_give(guest, argv, 4) : NULL;
    Py_XDECREF(argv[2]);
    Py_XDECREF(argv[3]);
    if (given == NULL) {
        *failed = 1; /* the allocator trapped (Failed), or out of memory: error set */
        goto done;
    }
    long code = PyLong_AsLong(given);
    Py_DECREF(given);
    status = code == OK ? OK : code == INTERNAL_FAILURE ? INTERNAL_FAILURE : BAD_MEMORY;
done:
    Py_XDECREF(value);
    Py_DECREF(raw);
    Py_DECREF(message);
    Py_DECREF(ctx);
    if (status < 0 && !*failed) PyErr_Clear();
    return status;
}

/* The host's plugin.limits.max_header_bytes, or -1. */
static Py_ssize_t header_bound(PyObject *host) {
    PyObject *plugin = PyObject_GetAttr(host, s_plugin);
    PyObject *limits = plugin ? PyObject_GetAttr(plugin, s_limits) : NULL;
    PyObject *bound = limits ? PyObject_GetAttr(limits, s_max_header_bytes) : NULL;
    Py_ssize_t value = bound && PyLong_Check(bound) ? PyLong_AsSsize_t(bound) : -1;
    Py_XDECREF(plugin);
    Py_XDECREF(limits);
    Py_XDECREF(bound);
    if (value < 0) PyErr_Clear();
    return value;
}

static int bad_name(const char *name, Py_ssize_t size) {
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == ':' || c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f) ||
            c == 0x85 || c == 0xa0)
            return 1;
    }
    return 0;
}

static int bad_value(const uint8_t *value, uint32_t size) {
    for (uint32_t i = 0; i < size; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0') return 1;
    return 0;
}

/* proxy_{replace,add,remove}_header_map_value: its status, or -1 when Python must
 * answer (a pseudo-header, a map over its bound, another map...). */
static long edit(HostEntry *entry, PyObject *host, val_raw_t *slots) {
    GuestObject *guest = entry->fields_gate;
    int op = entry->fields_op;
    long kind = (uint32_t)slots[0].i32;
    if (kind != REQUEST_HEADERS && kind != RESPONSE_HEADERS) return -1;
    char key[KEY_MAX];
    Py_ssize_t size = read_key(guest, slots + 1, key);
    if (size < 0 || key[0] == ':') return -1;
    const uint8_t *value = NULL;
    uint32_t value_size = 0;
    if (op != FIELDS_REMOVE) {
        value_size = (uint32_t)slots[4].i32;
        value = guest_span(guest, (uint32_t)slots[3].i32, value_size);
        if (value == NULL) return -1;
    }
    PyObject *message = NULL, *ctx = NULL;
    PyObject *raw = map_list(host, kind, &message, &ctx);
    if (raw == NULL) return -1;
    long status = -1;
    PyObject *kept = NULL;
    if (bad_name(key, size) || (value != NULL && bad_value(value, value_size))) {
        status = BAD_ARGUMENT;
        goto done;
    }
    int drop = op != FIELDS_ADD, present = 0;
    Py_ssize_t held = 0, n = PyList_GET_SIZE(raw);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(raw, i);
        int same = same_name(pair, key, size);
        if (same < 0) goto done;
        present |= same;
        if (!(same && drop))
            held += PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) +
                    PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1)) + 32;
    }
    if (value != NULL) {
        Py_ssize_t bound = guest->header_bound >= 0 ? guest->header_bound : header_bound(host);
        if (bound < 0 || held + size + (Py_ssize_t)value_size + 32 > bound) goto done;
    }
    if (present && drop) {
        kept = PyList_New(0);
        if (kept == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *pair = PyList_GET_ITEM(raw, i);
            if (same_name(pair, key, size) == 0 && PyList_Append(kept, pair) < 0) goto done;
        }
        if (PyList_SetSlice(raw, 0, PyList_GET_SIZE(raw), kept) < 0) goto done;
    }
    if (value != NULL) {
        /* (name, value): built directly, a fifth of what Py_BuildValue's format costs */
        PyObject *pair = PyTuple_New(2);
        PyObject *name = pair ? PyBytes_FromStringAndSize(key, size) : NULL;
        PyObject *data =
            name ? PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)value_size) : NULL;
        if (data == NULL) {
            Py_XDECREF(name);
            Py_XDECREF(pair);
            goto done;
        }
        PyTuple_SET_ITEM(pair, 0, name);
        PyTuple_SET_ITEM(pair, 1, data);
        int appended = PyList_Append(raw, pair);
        Py_DECREF(pair);
        if (appended < 0) goto done;
    }
    status = OK;
done:
    Py_XDECREF(kept);
    Py_DECREF(raw);
    Py_DECREF(message);
    Py_DECREF(ctx);
    if (status < 0) PyErr_Clear();
    return status;
}

/* The Host whose method `func` is (borrowed), or NULL: a Python bound method's self,
 * or, where mypyc compiled core/wasm/host.py, a builtin method's (a native class's
 * method, looked up on an instance, is a PyCFunction bound to that instance). A module's
 * function, or any other callable, is left to Python. */
static PyObject *host_of(PyObject *func) {
    if (PyMethod_Check(func)) return PyMethod_GET_SELF(func);
    if (PyCFunction_Check(func)) {
        PyObject *self = PyCFunction_GET_SELF(func);
        if (self != NULL && !PyModule_Check(self)) return self;
    }
    return NULL;
}

/* The header host function `entry` serves, answered here: its status, or -1 when the
 * Python host function must answer; -2 with an exception set when the guest's
 * allocator failed (the trampoline then does what it does for a raising host function). */
long fields_fast(HostEntry *entry, val_raw_t *slots) {
    if (!entry->fields_gate->has_memory) return -1;
    PyObject *host = host_of(entry->func);
    if (host == NULL) return -1;
    if (entry->fields_op == FIELDS_GET) {
        int failed = 0;
        long status = get_value(entry, host, slots, &failed);
        return failed ? -2 : status;
    }
    return edit(entry, host, slots);
}
