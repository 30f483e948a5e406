/* pil_kmc._kmc: the Python face of the compiled index codec.
 *
 * Thin wrappers: each checks its arguments, takes the buffers, releases the
 * GIL for the work in kmc_codec.h, and returns the C result code for the
 * Python side (pil_kmc/codec.py) to turn into FormatError messages.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "kmc_codec.h"

static int get_dims(unsigned long long width, unsigned long long height, int k) {
    if (width < 1 || height < 1 || width > 0x7FFFFFFFu || height > 0x7FFFFFFFu) {
        PyErr_SetString(PyExc_ValueError, "width and height must be 1 to 2**31 - 1");
        return -1;
    }
    if (k < 1 || k > 256) {
        PyErr_SetString(PyExc_ValueError, "k must be 1 to 256");
        return -1;
    }
    return 0;
}

static int plane_buffer(PyObject *obj, Py_buffer *view, unsigned long long pixels, int writable) {
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) return -1;
    if ((unsigned long long)view->len != pixels) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "plane buffer must hold width * height bytes");
        return -1;
    }
    return 0;
}

/* The checks every decoder shares: dimensions, k and a writable `out` of
 * width * height bytes. On failure the input buffer is released too. */
static int decoding_into(Py_buffer *input, PyObject *out_obj, Py_buffer *out,
                         unsigned long long width, unsigned long long height, int k) {
    if (get_dims(width, height, k) < 0 || plane_buffer(out_obj, out, width * height, 1) < 0) {
        PyBuffer_Release(input);
        return -1;
    }
    return 0;
}

/* A decoder's result code for pil_kmc/codec.py, or MemoryError. */
static PyObject *decoded(int code) {
    if (code == KMC_NOMEM) return PyErr_NoMemory();
    return PyLong_FromLong(code);
}

static PyObject *encoded(int code, uint8_t *data, size_t len) {
    if (code == KMC_NOMEM) return PyErr_NoMemory();
    if (code != KMC_OK) {
        PyErr_SetString(PyExc_ValueError, "plane holds an index at or above k");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)len);
    free(data);
    return result;
}

PyDoc_STRVAR(context_decode_doc,
             "context_decode(stream, width, height, k, partial, out) -> code\n\n"
             "Decode a method-4 stream into `out` (width * height bytes, writable).");

static PyObject *context_decode(PyObject *self, PyObject *args) {
    Py_buffer stream, out;
    unsigned long long width, height;
    int k, partial, code;
    PyObject *out_obj;
    if (!PyArg_ParseTuple(args, "y*KKipO", &stream, &width, &height, &k, &partial, &out_obj))
        return NULL;
    if (decoding_into(&stream, out_obj, &out, width, height, k) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    code = kmc_context_decode(stream.buf, (size_t)stream.len, (uint32_t)width, (uint32_t)height,
                              k, partial, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&stream);
    PyBuffer_Release(&out);
    return decoded(code);
}

PyDoc_STRVAR(context_encode_doc,
             "context_encode(plane, width, height, k) -> bytes\n\n"
             "The method-4 stream of an index plane (width * height bytes, each below k).");

static PyObject *context_encode(PyObject *self, PyObject *args) {
    Py_buffer plane;
    PyObject *plane_obj;
    unsigned long long width, height;
    int k, code;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!PyArg_ParseTuple(args, "OKKi", &plane_obj, &width, &height, &k)) return NULL;
    if (get_dims(width, height, k) < 0 || plane_buffer(plane_obj, &plane, width * height, 0) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    code = kmc_context_encode(plane.buf, (uint32_t)width, (uint32_t)height, k, &data, &len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&plane);
    return encoded(code, data, len);
}

/* The rows [y0, y0 + rows) of a width x height plane, checked; 0 or -1 with an exception. */
static int strip_of(PyObject *plane_obj, Py_buffer *plane, unsigned long long width,
                    unsigned long long height, unsigned int y0, unsigned int rows, int k) {
    if (get_dims(width, height, k) < 0) return -1;
    if (rows < 1 || (unsigned long long)y0 + rows > height) {
        PyErr_SetString(PyExc_ValueError, "strip rows outside the plane");
        return -1;
    }
    return plane_buffer(plane_obj, plane, width * height, 0);
}

/* Methods 5 and 6 share the strip table's checks and the decoding of a range of strips. */
typedef int (*table_fn)(const uint8_t *, size_t, uint32_t, uint32_t, int, kmc_strip_table *);
typedef int (*decode_fn)(const uint8_t *, size_t, const kmc_strip_table *, uint32_t, uint32_t,
                         int, int, uint32_t, uint32_t, uint8_t *);

static PyObject *strip_table(PyObject *args, table_fn check) {
    Py_buffer stream;
    unsigned long long width, height;
    int partial;
    kmc_strip_table table = {0};
    if (!PyArg_ParseTuple(args, "y*KKp", &stream, &width, &height, &partial)) return NULL;
    if (get_dims(width, height, 1) < 0) {
        PyBuffer_Release(&stream);
        return NULL;
    }
    int code = check(stream.buf, (size_t)stream.len, (uint32_t)width, (uint32_t)height, partial,
                     &table);
    PyBuffer_Release(&stream);
    return Py_BuildValue("iII", code, table.rows_per_strip, table.strips);
}

static PyObject *strip_range(PyObject *args, table_fn check, decode_fn decode) {
    Py_buffer stream, out;
    unsigned long long width, height;
    unsigned int first, last;
    int k, partial, code;
    PyObject *out_obj;
    kmc_strip_table table;
    if (!PyArg_ParseTuple(args, "y*KKipIIO", &stream, &width, &height, &k, &partial, &first,
                          &last, &out_obj))
        return NULL;
    if (decoding_into(&stream, out_obj, &out, width, height, k) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    code = check(stream.buf, (size_t)stream.len, (uint32_t)width, (uint32_t)height, partial,
                 &table);
    if (code == KMC_OK)
        code = decode(stream.buf, (size_t)stream.len, &table, (uint32_t)width, (uint32_t)height,
                      k, partial, first, last, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&stream);
    PyBuffer_Release(&out);
    if (code == KMC_BAD_ARGS) {
        PyErr_SetString(PyExc_ValueError, "invalid strip range");
        return NULL;
    }
    return decoded(code);
}

PyDoc_STRVAR(strips_table_doc,
             "strips_table(stream, width, height, partial) -> (code, rows_per_strip, strips)\n\n"
             "Check a method-5 stream's strip table.");

static PyObject *strips_table(PyObject *self, PyObject *args) {
    return strip_table(args, kmc_strips_table);
}

PyDoc_STRVAR(strips_decode_doc,
             "strips_decode(stream, width, height, k, partial, first, last, out) -> code\n\n"
             "Decode strips [first, last) of a method-5 stream into `out`; the GIL is\n"
             "released, so threads may decode different strips of one `out` at once.");

static PyObject *strips_decode(PyObject *self, PyObject *args) {
    return strip_range(args, kmc_strips_table, kmc_strips_decode);
}

PyDoc_STRVAR(strips_encode_doc,
             "strips_encode(plane, width, height, y0, rows, k) -> bytes\n\n"
             "One method-5 strip: rows [y0, y0 + rows) of the plane, coded on their own.");

static PyObject *strips_encode(PyObject *self, PyObject *args) {
    Py_buffer plane;
    PyObject *plane_obj;
    unsigned long long width, height;
    unsigned int y0, rows;
    int k, code;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!PyArg_ParseTuple(args, "OKKIIi", &plane_obj, &width, &height, &y0, &rows, &k))
        return NULL;
    if (strip_of(plane_obj, &plane, width, height, y0, rows, k) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    code = kmc_strips_encode_strip(plane.buf, (uint32_t)width, y0, rows, k, &data, &len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&plane);
    return encoded(code, data, len);
}

PyDoc_STRVAR(tables_table_doc,
             "tables_table(stream, width, height, partial) -> (code, rows_per_strip, strips)\n\n"
             "Check a method-6 stream's strip table and the length of its image tables.");

static PyObject *tables_table(PyObject *self, PyObject *args) {
    return strip_table(args, kmc_tables_table);
}

PyDoc_STRVAR(tables_decode_doc,
             "tables_decode(stream, width, height, k, partial, first, last, out) -> code\n\n"
             "Decode strips [first, last) of a method-6 stream into `out`, without the GIL.");

static PyObject *tables_decode(PyObject *self, PyObject *args) {
    return strip_range(args, kmc_tables_table, kmc_tables_decode);
}

PyDoc_STRVAR(tables_count_doc,
             "tables_count(plane, width, height, y0, rows, strip_rows, k) -> bytes\n\n"
             "The method-6 symbol counts of rows [y0, y0 + rows), in strips of strip_rows\n"
             "from y0: TABLES_COUNTS native uint64.");

static PyObject *tables_count(PyObject *self, PyObject *args) {
    Py_buffer plane;
    PyObject *plane_obj;
    unsigned long long width, height;
    unsigned int y0, rows, strip_rows;
    int k, code;
    if (!PyArg_ParseTuple(args, "OKKIIIi", &plane_obj, &width, &height, &y0, &rows, &strip_rows,
                          &k))
        return NULL;
    if (strip_of(plane_obj, &plane, width, height, y0, rows, k) < 0) return NULL;
    PyObject *result = PyBytes_FromStringAndSize(NULL, KMC_TABLES_COUNTS * sizeof(uint64_t));
    if (!result) {
        PyBuffer_Release(&plane);
        return NULL;
    }
    uint64_t *counts = (uint64_t *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    code = kmc_tables_count(plane.buf, (uint32_t)width, y0, rows, strip_rows, k, counts);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&plane);
    if (code != KMC_OK) {
        Py_DECREF(result);
        return encoded(code, NULL, 0);
    }
    return result;
}

PyDoc_STRVAR(tables_image_doc,
             "tables_image(counts, k) -> bytes\n\n"
             "The image's tables (a method-6 bit string) from the summed counts of every strip.");

static PyObject *tables_image(PyObject *self, PyObject *args) {
    Py_buffer counts;
    int k, code;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!PyArg_ParseTuple(args, "y*i", &counts, &k)) return NULL;
    if (counts.len != (Py_ssize_t)(KMC_TABLES_COUNTS * sizeof(uint64_t)) || k < 1 || k > 256) {
        PyBuffer_Release(&counts);
        PyErr_SetString(PyExc_ValueError, "counts must be TABLES_COUNTS uint64 and k 1 to 256");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    code = kmc_tables_image(counts.buf, k, &data, &len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&counts);
    return encoded(code, data, len);
}

PyDoc_STRVAR(tables_strip_doc,
             "tables_strip(plane, width, height, y0, rows, k, image_tables) -> bytes\n\n"
             "One method-6 strip's data: rows [y0, y0 + rows), coded with the image's tables.");

static PyObject *tables_strip(PyObject *self, PyObject *args) {
    Py_buffer plane, tables;
    PyObject *plane_obj;
    unsigned long long width, height;
    unsigned int y0, rows;
    int k, code;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!PyArg_ParseTuple(args, "OKKIIiy*", &plane_obj, &width, &height, &y0, &rows, &k, &tables))
        return NULL;
    if (strip_of(plane_obj, &plane, width, height, y0, rows, k) < 0) {
        PyBuffer_Release(&tables);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    code = kmc_tables_strip(plane.buf, (uint32_t)width, y0, rows, k, tables.buf,
                            (size_t)tables.len, &data, &len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&plane);
    PyBuffer_Release(&tables);
    if (code == KMC_BAD_ARGS) {
        PyErr_SetString(PyExc_ValueError, "plane holds an index at or above k, or a symbol "
                                          "the image's tables do not hold");
        return NULL;
    }
    return encoded(code, data, len);
}

PyDoc_STRVAR(unpack_rows_doc,
             "unpack_rows(data, width, height, bit_depth, k, out) -> code\n\n"
             "Packed rows to the index plane in `out`; INDEX_K if an index is at or above k.");

static PyObject *unpack_rows(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    unsigned long long width, height;
    int depth, k, code;
    PyObject *out_obj;
    if (!PyArg_ParseTuple(args, "y*KKiiO", &data, &width, &height, &depth, &k, &out_obj))
        return NULL;
    if (depth != 1 && depth != 2 && depth != 4 && depth != 8) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "bit depth must be 1, 2, 4 or 8");
        return NULL;
    }
    if (decoding_into(&data, out_obj, &out, width, height, k) < 0) return NULL;
    if ((unsigned long long)data.len != (width * depth + 7) / 8 * height) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "packed rows must be row_bytes * height bytes");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    code = kmc_unpack_rows(data.buf, (uint32_t)width, (uint32_t)height, depth, k, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return PyLong_FromLong(code);
}

PyDoc_STRVAR(dither_doc,
             "dither(pixels, width, height, channels, palette, strength, out) -> None\n\n"
             "Floyd-Steinberg indices of the pixels into the palette (strength 0 to 256).");

static PyObject *dither(PyObject *self, PyObject *args) {
    Py_buffer pixels, palette, out;
    unsigned long long width, height;
    int channels, strength, code;
    PyObject *out_obj;
    if (!PyArg_ParseTuple(args, "y*KKiy*iO", &pixels, &width, &height, &channels, &palette,
                          &strength, &out_obj))
        return NULL;
    int k = channels >= 1 && channels <= 4 ? (int)(palette.len / channels) : 0;
    if (get_dims(width, height, k) < 0 || palette.len != (Py_ssize_t)k * channels ||
        (unsigned long long)pixels.len != width * height * (unsigned long long)channels ||
        strength < 0 || strength > 256) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "invalid dither arguments");
        PyBuffer_Release(&pixels);
        PyBuffer_Release(&palette);
        return NULL;
    }
    if (plane_buffer(out_obj, &out, width * height, 1) < 0) {
        PyBuffer_Release(&pixels);
        PyBuffer_Release(&palette);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    code = kmc_dither(pixels.buf, (uint32_t)width, (uint32_t)height, channels, palette.buf, k,
                      strength, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&pixels);
    PyBuffer_Release(&palette);
    PyBuffer_Release(&out);
    if (code == KMC_NOMEM) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"dither", dither, METH_VARARGS, dither_doc},
    {"unpack_rows", unpack_rows, METH_VARARGS, unpack_rows_doc},
    {"context_decode", context_decode, METH_VARARGS, context_decode_doc},
    {"context_encode", context_encode, METH_VARARGS, context_encode_doc},
    {"strips_table", strips_table, METH_VARARGS, strips_table_doc},
    {"strips_decode", strips_decode, METH_VARARGS, strips_decode_doc},
    {"strips_encode", strips_encode, METH_VARARGS, strips_encode_doc},
    {"tables_table", tables_table, METH_VARARGS, tables_table_doc},
    {"tables_decode", tables_decode, METH_VARARGS, tables_decode_doc},
    {"tables_count", tables_count, METH_VARARGS, tables_count_doc},
    {"tables_image", tables_image, METH_VARARGS, tables_image_doc},
    {"tables_strip", tables_strip, METH_VARARGS, tables_strip_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kmc", "The compiled index codec of pil_kmc (methods 4, 5 and 6).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__kmc(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
#define CODE(name) PyModule_AddIntConstant(m, #name, KMC_##name)
    if (CODE(OK) || CODE(TRUNCATED) || CODE(EXTRA) || CODE(LOW_STATE) || CODE(BAD_END) ||
        CODE(INDEX_K) || CODE(BAD_STRIPS) || CODE(BAD_TABLES) || CODE(BAD_SYMBOL) ||
        PyModule_AddIntConstant(m, "MIN_STRIP_PIXELS", KMC_MIN_STRIP_PIXELS) ||
        PyModule_AddIntConstant(m, "TABLES_COUNTS", KMC_TABLES_COUNTS)) {
        Py_DECREF(m);
        return NULL;
    }
#undef CODE
    return m;
}
