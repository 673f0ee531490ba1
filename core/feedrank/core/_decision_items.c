/* A compact decision's items in protobuf's wire format, in one pass over Python objects.
 *
 * The C half of feedrank.core.decision_items, which documents it; `make native` builds
 * it (a C compiler and Python's headers). feedrank.core.decision_wire writes the same
 * bytes in Python, and tests/unit/core/test_decision_items.py compares the two.
 *
 * Each item is one length-delimited field (`field_key`: Decision.items or .pool) holding
 * a ShownItem: post_id = 1, position = 2 (shown items only), score = 3, propensity = 4
 * (shown items only), features = 5 and catalogue_version = 6. An item's features field is
 * `prefix` (its tag and length, and those of FeatureVector.values), its row of `values`
 * (float32) and, with `codes`, the key `code_key` and its one-byte code (country_code).
 * Every item must have a positive catalogue version (else the caller writes it whole):
 * the functions return None when one has not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject *id; /* a new reference: keeps `utf8` alive */
    const char *utf8;
    Py_ssize_t id_length;
    long long position;
    double score;
    double propensity;
    Py_ssize_t body;
} Item;

static Py_ssize_t varint_size(uint64_t value) {
    Py_ssize_t size = 1;
    while (value >= 0x80) {
        value >>= 7;
        size++;
    }
    return size;
}

static char *put_varint(char *out, uint64_t value) {
    while (value >= 0x80) {
        *out++ = (char)((value & 0x7F) | 0x80);
        value >>= 7;
    }
    *out++ = (char)value;
    return out;
}

static char *put_double(char *out, char key, double value) {
    *out++ = key;
    memcpy(out, &value, sizeof value); /* little-endian hosts only: see decision_items.py */
    return out + sizeof value;
}

static void release(Item *items, Py_ssize_t count) {
    for (Py_ssize_t at = 0; at < count; at++) Py_XDECREF(items[at].id);
    PyMem_Free(items);
}

/* Reads item `at`: from `shown` (objects with post_id, position, score and propensity)
 * or, for pool items, from `ids` and `scores`. Returns 0, or -1 with an exception set. */
static int read_item(Item *item, PyObject *shown, PyObject *ids, PyObject *scores,
                     Py_ssize_t at) {
    static PyObject *post_id_name, *position_name, *score_name, *propensity_name;
    if (!post_id_name) {
        post_id_name = PyUnicode_InternFromString("post_id");
        position_name = PyUnicode_InternFromString("position");
        score_name = PyUnicode_InternFromString("score");
        propensity_name = PyUnicode_InternFromString("propensity");
        if (!post_id_name || !position_name || !score_name || !propensity_name) return -1;
    }
    PyObject *score;
    if (shown) {
        PyObject *object = PySequence_Fast_GET_ITEM(shown, at);
        item->id = PyObject_GetAttr(object, post_id_name);
        if (!item->id) return -1;
        PyObject *position = PyObject_GetAttr(object, position_name);
        if (!position) return -1;
        item->position = PyLong_AsLongLong(position);
        Py_DECREF(position);
        if (item->position == -1 && PyErr_Occurred()) return -1;
        if (item->position < 0) {
            PyErr_Format(PyExc_ValueError, "item %zd has a negative position", at);
            return -1;
        }
        PyObject *propensity = PyObject_GetAttr(object, propensity_name);
        if (!propensity) return -1;
        item->propensity = PyFloat_AsDouble(propensity);
        Py_DECREF(propensity);
        if (item->propensity == -1.0 && PyErr_Occurred()) return -1;
        score = PyObject_GetAttr(object, score_name);
    } else {
        item->id = Py_NewRef(PySequence_Fast_GET_ITEM(ids, at));
        score = Py_NewRef(PySequence_Fast_GET_ITEM(scores, at));
    }
    if (!score) return -1;
    item->score = PyFloat_AsDouble(score);
    Py_DECREF(score);
    if (item->score == -1.0 && PyErr_Occurred()) return -1;
    if (!PyUnicode_Check(item->id)) {
        PyErr_Format(PyExc_TypeError, "item %zd's post id is not a str", at);
        return -1;
    }
    item->utf8 = PyUnicode_AsUTF8AndSize(item->id, &item->id_length);
    return item->utf8 ? 0 : -1;
}

typedef struct {
    Py_buffer prefix, values, codes, versions;
    int has_codes;
    unsigned char code_key;
} Features;

static void release_features(Features *features) {
    PyBuffer_Release(&features->prefix);
    PyBuffer_Release(&features->values);
    if (features->has_codes) PyBuffer_Release(&features->codes);
    PyBuffer_Release(&features->versions);
}

/* Takes `codes` (None or a buffer) into `features`; 0, or -1 with an exception set. */
static int take_codes(Features *features, PyObject *codes) {
    features->has_codes = codes != Py_None;
    if (!features->has_codes) return 0;
    return PyObject_GetBuffer(codes, &features->codes, PyBUF_SIMPLE);
}

static PyObject *encode(unsigned char field_key, PyObject *shown, PyObject *ids,
                        PyObject *scores, const Features *features) {
    Py_ssize_t count = PySequence_Fast_GET_SIZE(shown ? shown : ids);
    if (!shown && PySequence_Fast_GET_SIZE(scores) != count) {
        PyErr_SetString(PyExc_ValueError, "every pool item needs its id and score");
        return NULL;
    }
    Py_ssize_t row_bytes = count ? features->values.len / count : 0;
    if (row_bytes * count != features->values.len || row_bytes % 4) {
        PyErr_Format(PyExc_ValueError, "want %zd rows of float32 values, got %zd bytes", count,
                     features->values.len);
        return NULL;
    }
    if (features->has_codes && features->codes.len != count) {
        PyErr_Format(PyExc_ValueError, "want %zd one-byte codes, got %zd bytes", count,
                     features->codes.len);
        return NULL;
    }
    if (features->versions.len != count * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_Format(PyExc_ValueError, "want %zd int64 versions, got %zd bytes", count,
                     features->versions.len);
        return NULL;
    }
    const int64_t *version = features->versions.buf;
    for (Py_ssize_t at = 0; at < count; at++)
        if (version[at] <= 0) Py_RETURN_NONE; /* an unversioned post: logged whole */
    Py_ssize_t width = features->prefix.len + row_bytes + (features->has_codes ? 2 : 0);
    Item *items = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Item));
    if (!items) return PyErr_NoMemory();
    Py_ssize_t total = 0;
    for (Py_ssize_t at = 0; at < count; at++) {
        Item *item = &items[at];
        if (read_item(item, shown, ids, scores, at) < 0) {
            release(items, count);
            return NULL;
        }
        item->body = 1 + varint_size((uint64_t)item->id_length) + item->id_length + 9 + width +
                     1 + varint_size((uint64_t)version[at]);
        if (shown) item->body += 1 + varint_size((uint64_t)item->position) + 9;
        total += 1 + varint_size((uint64_t)item->body) + item->body;
    }
    PyObject *encoded = PyBytes_FromStringAndSize(NULL, total);
    if (!encoded) {
        release(items, count);
        return NULL;
    }
    char *out = PyBytes_AS_STRING(encoded);
    const char *values = features->values.buf;
    const unsigned char *codes = features->has_codes ? features->codes.buf : NULL;
    for (Py_ssize_t at = 0; at < count; at++) {
        const Item *item = &items[at];
        *out++ = (char)field_key;
        out = put_varint(out, (uint64_t)item->body);
        *out++ = 1 << 3 | 2; /* post_id */
        out = put_varint(out, (uint64_t)item->id_length);
        memcpy(out, item->utf8, (size_t)item->id_length);
        out += item->id_length;
        if (shown) {
            *out++ = 2 << 3 | 0; /* position */
            out = put_varint(out, (uint64_t)item->position);
        }
        out = put_double(out, 3 << 3 | 1, item->score);
        if (shown) out = put_double(out, 4 << 3 | 1, item->propensity);
        memcpy(out, features->prefix.buf, (size_t)features->prefix.len); /* features */
        out += features->prefix.len;
        memcpy(out, values + at * row_bytes, (size_t)row_bytes);
        out += row_bytes;
        if (codes) {
            *out++ = (char)features->code_key;
            *out++ = (char)codes[at];
        }
        *out++ = 6 << 3 | 0; /* catalogue_version */
        out = put_varint(out, (uint64_t)version[at]);
    }
    release(items, count);
    return encoded;
}

static PyObject *encode_shown(PyObject *module, PyObject *args) {
    unsigned char field_key;
    PyObject *items, *codes;
    Features features;
    (void)module;
    if (!PyArg_ParseTuple(args, "bOy*y*Oby*", &field_key, &items, &features.prefix,
                          &features.values, &codes, &features.code_key, &features.versions))
        return NULL;
    PyObject *encoded = NULL;
    if (take_codes(&features, codes) == 0) {
        PyObject *shown = PySequence_Fast(items, "items must be a sequence");
        encoded = shown ? encode(field_key, shown, NULL, NULL, &features) : NULL;
        Py_XDECREF(shown);
    } else {
        features.has_codes = 0;
    }
    release_features(&features);
    return encoded;
}

static PyObject *encode_pool(PyObject *module, PyObject *args) {
    unsigned char field_key;
    PyObject *post_ids, *scores, *codes;
    Features features;
    (void)module;
    if (!PyArg_ParseTuple(args, "bOOy*y*Oby*", &field_key, &post_ids, &scores, &features.prefix,
                          &features.values, &codes, &features.code_key, &features.versions))
        return NULL;
    PyObject *encoded = NULL;
    if (take_codes(&features, codes) == 0) {
        PyObject *ids = PySequence_Fast(post_ids, "post ids must be a sequence");
        PyObject *values = ids ? PySequence_Fast(scores, "scores must be a sequence") : NULL;
        encoded = values ? encode(field_key, NULL, ids, values, &features) : NULL;
        Py_XDECREF(ids);
        Py_XDECREF(values);
    } else {
        features.has_codes = 0;
    }
    release_features(&features);
    return encoded;
}

static PyMethodDef methods[] = {
    {"encode_shown", encode_shown, METH_VARARGS,
     "encode_shown(field_key, items, prefix, values, codes, code_key, versions) -> bytes | None"},
    {"encode_pool", encode_pool, METH_VARARGS,
     "encode_pool(field_key, post_ids, scores, prefix, values, codes, code_key, versions) "
     "-> bytes | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_decision_items",
    "A compact decision's items in protobuf's wire format (see decision_items.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__decision_items(void) { return PyModule_Create(&module); }
