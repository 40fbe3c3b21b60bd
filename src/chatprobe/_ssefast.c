/* chatprobe._ssefast: the bulk paths of chatprobe.sse, in C (optional).
 *
 * One function, scan(), walks a run of simple blocks ("data: <value>\n\n", or
 * one of the decoder's other bulk shapes) with memchr, decodes each value as
 * strict UTF-8 straight from the buffer and builds its Event as the tuple
 * subclass directly; scan_named() does the same for the typed dialects' named
 * blocks ("event: <name>\ndata: <value>\n\n"). It stops at the first block that is not clean; the
 * Python decoder interprets that one line by line, as it does everything else
 * (findings, state). Measured: about 2x the events/s of bytes.split + a Python
 * loop (chatprobe.sse._scan_py, the fallback when this cannot be imported).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* An int argument as Py_ssize_t; TypeError (not a silent __index__) otherwise. */
static int
ssize_arg(PyObject *obj, const char *name, Py_ssize_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be int, not %.100s",
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = PyLong_AsSsize_t(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int
stamp_arg(PyObject *obj, const char *name)
{
    if (obj != Py_None && !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be int or None, not %.100s",
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    return 0;
}

/* Event(message, text, last_id, pos, end, stamp, None) as an instance of
 * `type` (a tuple subclass), built directly: no Python-level __new__ runs.
 * `message` is the event type ("message", or scan_named's name; borrowed).
 * Steals `text`, even on failure. */
static PyObject *
new_event(PyTypeObject *type, PyObject *message, PyObject *text, PyObject *last_id,
          Py_ssize_t pos, Py_ssize_t end, PyObject *stamp)
{
    PyObject *pos_obj = PyLong_FromSsize_t(pos);
    PyObject *end_obj = PyLong_FromSsize_t(end);
    PyObject *event = (pos_obj && end_obj) ? type->tp_alloc(type, 7) : NULL;
    if (event == NULL) {
        Py_DECREF(text);
        Py_XDECREF(pos_obj);
        Py_XDECREF(end_obj);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030E0000
    /* 3.14 caches a tuple's hash in the object; tp_alloc zero-fills it. */
    ((PyTupleObject *)event)->ob_hash = -1;
#endif
    PyTuple_SET_ITEM(event, 0, Py_NewRef(message));
    PyTuple_SET_ITEM(event, 1, text);
    PyTuple_SET_ITEM(event, 2, Py_NewRef(last_id));
    PyTuple_SET_ITEM(event, 3, pos_obj);
    PyTuple_SET_ITEM(event, 4, end_obj);
    PyTuple_SET_ITEM(event, 5, Py_NewRef(stamp));
    PyTuple_SET_ITEM(event, 6, Py_NewRef(Py_None));
    return event;
}

/* scan()'s arguments that are not offsets, checked. */
static int
check_common(PyObject *last_id, PyObject *first, PyObject *arrival, PyObject *type)
{
    if (!PyUnicode_Check(last_id)) {
        PyErr_Format(PyExc_TypeError, "last_id must be str, not %.100s",
                     Py_TYPE(last_id)->tp_name);
        return -1;
    }
    if (stamp_arg(first, "first") < 0 || stamp_arg(arrival, "arrival") < 0) {
        return -1;
    }
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "event_type must be a subclass of tuple");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(scan_doc,
"scan($module, region, start, stop, prefix, sep, back, pos, last_id, first, arrival,\n     event_type, /)\n"
"--\n\n"
"Walk region[start:stop] block by block while each block is prefix + value +\n"
"sep, the value free of CR, LF and U+FEFF and valid UTF-8; make each one's\n"
"Event('message', value, last_id, offset, end, stamp, None), stamped\n`first` for the first one and `arrival` after\n"
"(offset: pos plus the block's distance from start; end: the next block's\n"
"offset - back). Returns (events, at, pos): `at` is where it stopped in region\n"
"(stop, or the first block it did not take) and `pos` its stream offset.");

/* Whether buf[0:n] holds a UTF-8 BOM (EF BB BF); memchr finds the rare EF fast. */
static int
has_bom(const char *buf, Py_ssize_t n)
{
    const char *end = buf + n;
    const char *p = buf;
    while (end - p >= 3 && (p = memchr(p, 0xEF, (size_t)(end - p - 2))) != NULL) {
        if ((unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF) {
            return 1;
        }
        p++;
    }
    return 0;
}

static PyObject *
scan(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, stop, back, pos;
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "scan() takes exactly 11 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *region = args[0], *prefix = args[3], *sep = args[4];
    PyObject *last_id = args[7], *first = args[8], *arrival = args[9];
    if (!PyBytes_Check(region) || !PyBytes_Check(prefix) || !PyBytes_Check(sep)) {
        PyErr_SetString(PyExc_TypeError, "region, prefix and sep must be bytes");
        return NULL;
    }
    if (ssize_arg(args[1], "start", &start) < 0 || ssize_arg(args[2], "stop", &stop) < 0
        || ssize_arg(args[5], "back", &back) < 0 || ssize_arg(args[6], "pos", &pos) < 0
        || check_common(last_id, first, arrival, args[10]) < 0) {
        return NULL;
    }
    Py_ssize_t plen = PyBytes_GET_SIZE(prefix), slen = PyBytes_GET_SIZE(sep);
    if (start < 0 || stop < start || stop > PyBytes_GET_SIZE(region)) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= stop <= len(region)");
        return NULL;
    }
    if (slen == 0 || back < 0 || back > slen || pos < 0
        || pos > PY_SSIZE_T_MAX - (stop - start)) {
        PyErr_SetString(PyExc_ValueError, "need sep != b'', 0 <= back <= len(sep), pos >= 0");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[10];
    PyObject *message = PyUnicode_InternFromString("message");
    if (message == NULL) {
        return NULL;
    }
    PyObject *events = PyList_New(0);
    if (events == NULL) {
        Py_DECREF(message);
        return NULL;
    }
    /* region is immutable bytes that we hold a reference to through args. */
    const char *buf = PyBytes_AS_STRING(region);
    const char *pre = PyBytes_AS_STRING(prefix), *sp = PyBytes_AS_STRING(sep);
    PyObject *stamp = first;
    Py_ssize_t at = start;
    while (stop - at >= plen + slen && memcmp(buf + at, pre, (size_t)plen) == 0) {
        const char *value = buf + at + plen;
        const char *limit = buf + stop;
        /* The value ends at its first CR or LF, which must begin `sep`. */
        const char *eol = memchr(value, '\n', (size_t)(limit - value));
        if (eol == NULL) {
            eol = limit;
        }
        const char *cr = memchr(value, '\r', (size_t)(eol - value));
        if (cr != NULL) {
            eol = cr;
        }
        if (limit - eol < slen || memcmp(eol, sp, (size_t)slen) != 0
            || has_bom(value, eol - value)) {
            break;
        }
        PyObject *text = PyUnicode_DecodeUTF8(value, eol - value, NULL);
        if (text == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                goto error;
            }
            PyErr_Clear();  /* the caller's general path reports it */
            break;
        }
        Py_ssize_t next_at = (eol - buf) + slen;
        Py_ssize_t next = pos + (next_at - at);
        PyObject *event = new_event(type, message, text, last_id, pos, next - back, stamp);
        if (event == NULL) {
            goto error;
        }
        int failed = PyList_Append(events, event);
        Py_DECREF(event);
        if (failed) {
            goto error;
        }
        at = next_at;
        pos = next;
        stamp = arrival;
    }
    Py_DECREF(message);
    return Py_BuildValue("(Nnn)", events, at, pos);

error:
    Py_DECREF(events);
    Py_DECREF(message);
    return NULL;
}

PyDoc_STRVAR(scan_named_doc,
"scan_named($module, region, start, stop, pos, last_id, first, arrival, event_type, /)\n"
"--\n\n"
"Walk region[start:stop] block by block while each block is b'event: ' + name +\n"
"b'\\n' + b'data: ' + value + b'\\n\\n', the name not empty, neither holding CR, LF\n"
"or U+FEFF, both valid UTF-8; make each one's Event(name, value, last_id, offset,\n"
"end, stamp, None), stamped `first` for the first one and `arrival` after\n"
"(offset: pos plus the block's distance from start; end: the next block's\n"
"offset). Returns (events, at, pos) as scan() does (chatprobe.sse._named_py).");

/* A UnicodeDecodeError is the caller's to report (it stops the run): cleared, 1.
 * Any other error: left set, 0. */
static int
decode_failed_cleanly(void)
{
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return 1;
    }
    return 0;
}

static PyObject *
scan_named(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, stop, pos;
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "scan_named() takes exactly 8 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *region = args[0], *last_id = args[4], *first = args[5], *arrival = args[6];
    if (!PyBytes_Check(region)) {
        PyErr_SetString(PyExc_TypeError, "region must be bytes");
        return NULL;
    }
    if (ssize_arg(args[1], "start", &start) < 0 || ssize_arg(args[2], "stop", &stop) < 0
        || ssize_arg(args[3], "pos", &pos) < 0
        || check_common(last_id, first, arrival, args[7]) < 0) {
        return NULL;
    }
    if (start < 0 || stop < start || stop > PyBytes_GET_SIZE(region)) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= stop <= len(region)");
        return NULL;
    }
    if (pos < 0 || pos > PY_SSIZE_T_MAX - (stop - start)) {
        PyErr_SetString(PyExc_ValueError, "need pos >= 0");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[7];
    PyObject *events = PyList_New(0);
    if (events == NULL) {
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(region);
    const char *limit = buf + stop;
    PyObject *stamp = first;
    /* The last name decoded, reused while the next block's name has the same bytes. */
    PyObject *last_name = NULL;
    const char *last_ptr = NULL;
    Py_ssize_t last_len = 0;
    Py_ssize_t at = start;
    /* the shortest block: "event: x\ndata: \n\n" */
    while (stop - at >= 17 && memcmp(buf + at, "event: ", 7) == 0) {
        const char *name = buf + at + 7;
        const char *nl = memchr(name, '\n', (size_t)(limit - name));
        if (nl == NULL || nl == name || memchr(name, '\r', (size_t)(nl - name)) != NULL) {
            break;  /* no line end, an empty name ("message"), or a CR (a line end) in it */
        }
        const char *value = nl + 1;
        if (limit - value < 8 || memcmp(value, "data: ", 6) != 0) {
            break;
        }
        value += 6;
        const char *eol = memchr(value, '\n', (size_t)(limit - value));
        if (eol == NULL || limit - eol < 2 || eol[1] != '\n'
            || memchr(value, '\r', (size_t)(eol - value)) != NULL
            || has_bom(buf + at, eol - (buf + at))) {
            break;
        }
        PyObject *name_obj;
        if (last_name != NULL && nl - name == last_len && memcmp(name, last_ptr, (size_t)last_len) == 0) {
            name_obj = Py_NewRef(last_name);
        }
        else {
            name_obj = PyUnicode_DecodeUTF8(name, nl - name, NULL);
            if (name_obj == NULL) {
                if (decode_failed_cleanly()) {
                    break;
                }
                goto error;
            }
            Py_XSETREF(last_name, Py_NewRef(name_obj));
            last_ptr = name;
            last_len = nl - name;
        }
        PyObject *text = PyUnicode_DecodeUTF8(value, eol - value, NULL);
        if (text == NULL) {
            Py_DECREF(name_obj);
            if (decode_failed_cleanly()) {
                break;
            }
            goto error;
        }
        Py_ssize_t next_at = (eol - buf) + 2;
        Py_ssize_t next = pos + (next_at - at);
        PyObject *event = new_event(type, name_obj, text, last_id, pos, next, stamp);
        Py_DECREF(name_obj);
        if (event == NULL) {
            goto error;
        }
        int failed = PyList_Append(events, event);
        Py_DECREF(event);
        if (failed) {
            goto error;
        }
        at = next_at;
        pos = next;
        stamp = arrival;
    }
    Py_XDECREF(last_name);
    return Py_BuildValue("(Nnn)", events, at, pos);

error:
    Py_XDECREF(last_name);
    Py_DECREF(events);
    return NULL;
}

static PyMethodDef ssefast_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {"scan_named", (PyCFunction)(void (*)(void))scan_named, METH_FASTCALL, scan_named_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot ssefast_slots[] = {
#ifdef Py_GIL_DISABLED
    /* scan() only reads its arguments: bytes, str, ints, a type. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef ssefast_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "chatprobe._ssefast",
    .m_doc = "Compiled per-event loop of chatprobe.sse (optional accelerator).",
    .m_size = 0,
    .m_methods = ssefast_methods,
    .m_slots = ssefast_slots,
};

PyMODINIT_FUNC
PyInit__ssefast(void)
{
    return PyModuleDef_Init(&ssefast_module);
}
