/* HDF5's shuffle filter undone, and the same with a float64 sum over the records fused in.
 *
 * The shuffle filter stores byte k of every value in the k-th of `itemsize` blocks. Undoing
 * it is a byte transpose; numcodecs' loop does it at about 1.2 GB/s here, the loops below
 * (over the values, which compilers vectorise) at about 7 GB/s.
 *
 *   unshuffle(src, dest, itemsize)
 *       src: the shuffled bytes of one chunk; dest: a writable buffer of the same length.
 *       Trailing bytes that make no whole value are copied as they are, as HDF5 does.
 *
 *   unshuffle_sum(chunks, dest, itemsize, total)
 *       chunks: the shuffled bytes of consecutive chunks, each holding the same number of
 *       whole records; dest: writable, all their records one after another; total: a
 *       writable float64 buffer of one record's values, set to the sum over all the records
 *       (added in record order, from the first: what a loop of `total += record` gives).
 *       The values are float32 (itemsize 4) or float64 (itemsize 8), in the machine's byte
 *       order. The work goes in blocks of values across all the records, so the sum stays
 *       in the processor's cache: a time mean then costs hardly more than the decoding.
 *
 * Both release the GIL while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 16384 /* values per block of unshuffle_sum: its sums (128 KiB) stay in L2 */

/* Value i of n values of 4 or 8 bytes whose byte k lies in the k-th block from p. */
static inline uint32_t
value4(const uint8_t *p, Py_ssize_t n, Py_ssize_t i)
{
    return (uint32_t)p[i] | ((uint32_t)p[n + i] << 8) | ((uint32_t)p[2 * n + i] << 16) |
           ((uint32_t)p[3 * n + i] << 24);
}

static inline uint64_t
value8(const uint8_t *p, Py_ssize_t n, Py_ssize_t i)
{
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) {
        v |= (uint64_t)p[b * n + i] << (8 * b);
    }
    return v;
}

static void
unshuffle_any(const uint8_t *restrict src, uint8_t *restrict dest, Py_ssize_t n, int itemsize)
{
    if (itemsize == 4) {
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t v = value4(src, n, i);
            memcpy(dest + 4 * i, &v, 4);
        }
    } else if (itemsize == 8) {
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t v = value8(src, n, i);
            memcpy(dest + 8 * i, &v, 8);
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            for (int b = 0; b < itemsize; b++) {
                dest[i * itemsize + b] = src[b * n + i];
            }
        }
    }
}

/* Values j0 .. j0+w-1 of one chunk of n values (shuffled in src) into dest, and added to
 * sum; the first record sets sum instead (so that, as in a loop from the first record, a
 * sum of -0.0 stays -0.0). */
static void
block4(const uint8_t *restrict src, Py_ssize_t n, Py_ssize_t j0, Py_ssize_t w,
       uint8_t *restrict dest, double *restrict sum, int first)
{
    for (Py_ssize_t i = 0; i < w; i++) {
        uint32_t v = value4(src + j0, n, i);
        float f;
        memcpy(&f, &v, 4);
        memcpy(dest + 4 * i, &v, 4);
        sum[i] = first ? (double)f : sum[i] + (double)f;
    }
}

static void
block8(const uint8_t *restrict src, Py_ssize_t n, Py_ssize_t j0, Py_ssize_t w,
       uint8_t *restrict dest, double *restrict sum, int first)
{
    for (Py_ssize_t i = 0; i < w; i++) {
        uint64_t v = value8(src + j0, n, i);
        double f;
        memcpy(&f, &v, 8);
        memcpy(dest + 8 * i, &v, 8);
        sum[i] = first ? f : sum[i] + f;
    }
}

/* Value i of the float32 (4) or float64 (8) values from byte p, as a double: read with
 * memcpy, as the unshuffled bytes were written (compilers make it a plain load). */
static inline double
load4(const uint8_t *p, Py_ssize_t i)
{
    float f;
    memcpy(&f, p + 4 * i, 4);
    return (double)f;
}

static inline double
load8(const uint8_t *p, Py_ssize_t i)
{
    double f;
    memcpy(&f, p + 8 * i, 8);
    return f;
}

/* NumPy's pairwise sum (numpy/_core/src/umath/loops_utils.h.src) of the n values from
 * byte a, as float64: 8 accumulators up to 128 values, halves above. */
#define PAIRWISE_BLOCK 128
#define PAIRWISE(NAME, LOAD, SIZE)                                                        \
    static double NAME(const uint8_t *a, Py_ssize_t n)                                    \
    {                                                                                     \
        if (n < 8) {                                                                      \
            double res = 0.;                                                              \
            for (Py_ssize_t i = 0; i < n; i++) {                                          \
                res += LOAD(a, i);                                                        \
            }                                                                             \
            return res;                                                                   \
        }                                                                                 \
        if (n <= PAIRWISE_BLOCK) {                                                        \
            double r[8];                                                                  \
            Py_ssize_t i;                                                                 \
            for (int k = 0; k < 8; k++) {                                                 \
                r[k] = LOAD(a, k);                                                        \
            }                                                                             \
            for (i = 8; i < n - (n % 8); i += 8) {                                        \
                for (int k = 0; k < 8; k++) {                                             \
                    r[k] += LOAD(a, i + k);                                               \
                }                                                                         \
            }                                                                             \
            double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
            for (; i < n; i++) {                                                          \
                res += LOAD(a, i);                                                        \
            }                                                                             \
            return res;                                                                   \
        }                                                                                 \
        Py_ssize_t n2 = n / 2;                                                            \
        n2 -= n2 % 8;                                                                     \
        return NAME(a, n2) + NAME(a + n2 * SIZE, n - n2);                                 \
    }

PAIRWISE(pairwise4, load4, 4)
PAIRWISE(pairwise8, load8, 8)

/* Whether two buffers share a byte (the loops assume they do not). */
static int
overlap(const Py_buffer *a, const Py_buffer *b)
{
    const char *x = a->buf, *y = b->buf;
    return a->len > 0 && b->len > 0 && x < y + b->len && y < x + a->len;
}

static PyObject *
unshuffle(PyObject *self, PyObject *args)
{
    Py_buffer src, dest;
    int itemsize;
    if (!PyArg_ParseTuple(args, "y*w*i", &src, &dest, &itemsize)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (itemsize < 1 || itemsize > 255) {
        PyErr_Format(PyExc_ValueError, "itemsize must be 1 to 255, not %d", itemsize);
    } else if (dest.len != src.len) {
        PyErr_Format(PyExc_ValueError, "dest holds %zd bytes, src %zd: they must be equal",
                     dest.len, src.len);
    } else if (overlap(&src, &dest)) {
        PyErr_SetString(PyExc_ValueError, "dest overlaps src: give it a buffer of its own");
    } else {
        Py_ssize_t n = src.len / itemsize, whole = n * itemsize;
        Py_BEGIN_ALLOW_THREADS
        unshuffle_any(src.buf, dest.buf, n, itemsize);
        memcpy((uint8_t *)dest.buf + whole, (const uint8_t *)src.buf + whole,
               (size_t)(src.len - whole));
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dest);
    return result;
}

/* What unshuffle_sum and unshuffle_rows are given: consecutive shuffled chunks of one size,
 * dest for their values, and `sums` float64 sums of them (over the records, of the rows). */
typedef struct {
    const Py_buffer *chunks;
    Py_ssize_t count;
    uint8_t *dest;
    int itemsize;
    double *sums;
    Py_ssize_t n_sums;    /* float64 values in sums */
    Py_ssize_t n;         /* values per chunk */
    Py_ssize_t per_chunk; /* records (unshuffle_sum) or rows (unshuffle_rows) per chunk */
} Chunked;

/* Sets per_chunk from the size of sums (-1 with an error set if it does not fit). */
typedef int (*Shape)(Chunked *);
/* The work, without the GIL: 0, or -1 if it ran out of memory. */
typedef int (*Kernel)(const Chunked *);

static int
record_shape(Chunked *a)
{
    Py_ssize_t record = a->n_sums * a->itemsize; /* bytes of one record */
    Py_ssize_t bytes = a->chunks[0].len;
    if (record == 0 || bytes % record != 0) {
        PyErr_Format(PyExc_ValueError, "total holds %zd bytes, not the float64 sums of a "
                     "record of a %zd-byte chunk of %d-byte values", a->n_sums * 8, bytes,
                     a->itemsize);
        return -1;
    }
    a->per_chunk = bytes / record;
    return 0;
}

static int
row_shape(Chunked *a)
{
    Py_ssize_t bytes = a->chunks[0].len;
    if (a->n_sums == 0 || a->n_sums % a->count != 0 || bytes % a->itemsize != 0 ||
        a->n == 0 || a->n % (a->n_sums / a->count) != 0) {
        PyErr_Format(PyExc_ValueError, "rows holds %zd bytes, not the float64 sums of the "
                     "whole rows of %zd chunks of %zd bytes of %d-byte values",
                     a->n_sums * 8, a->count, bytes, a->itemsize);
        return -1;
    }
    a->per_chunk = a->n_sums / a->count;
    return 0;
}

/* The time sum: blocks of values across all the records, so the sums stay in cache. */
static int
sum_records(const Chunked *a)
{
    Py_ssize_t m = a->n_sums, per_chunk = a->per_chunk, itemsize = a->itemsize;
    double *block = PyMem_RawMalloc(sizeof(double) * BLOCK);
    if (block == NULL) {
        return -1;
    }
    for (Py_ssize_t b = 0; b < m; b += BLOCK) {
        Py_ssize_t w = m - b < BLOCK ? m - b : BLOCK;
        for (Py_ssize_t c = 0; c < a->count; c++) {
            const uint8_t *src = a->chunks[c].buf;
            for (Py_ssize_t q = 0; q < per_chunk; q++) {
                Py_ssize_t j0 = q * m + b;
                uint8_t *d = a->dest + ((c * per_chunk + q) * m + b) * itemsize;
                int first = c == 0 && q == 0;
                if (itemsize == 4) {
                    block4(src, a->n, j0, w, d, block, first);
                } else {
                    block8(src, a->n, j0, w, d, block, first);
                }
            }
        }
        memcpy(a->sums + b, block, sizeof(double) * (size_t)w);
    }
    PyMem_RawFree(block);
    return 0;
}

/* The row sums: a block of whole rows at a time, each row summed as soon as its block is
 * unshuffled, while it is in cache. */
static int
sum_rows(const Chunked *a)
{
    Py_ssize_t n = a->n, rows = a->per_chunk, width = n / rows;
    Py_ssize_t step = BLOCK / width > 0 ? BLOCK / width : 1; /* rows per block */
    for (Py_ssize_t c = 0; c < a->count; c++) {
        const uint8_t *src = a->chunks[c].buf;
        uint8_t *dest = a->dest + c * n * a->itemsize;
        double *sums = a->sums + c * rows;
        for (Py_ssize_t r0 = 0; r0 < rows; r0 += step) {
            Py_ssize_t r1 = r0 + step < rows ? r0 + step : rows;
            Py_ssize_t j0 = r0 * width, w = (r1 - r0) * width;
            if (a->itemsize == 4) {
                uint8_t *d = dest + j0 * 4;
                for (Py_ssize_t i = 0; i < w; i++) {
                    uint32_t v = value4(src + j0, n, i);
                    memcpy(d + 4 * i, &v, 4);
                }
                for (Py_ssize_t r = r0; r < r1; r++) {
                    sums[r] = 0.0 + pairwise4(dest + r * width * 4, width);
                }
            } else {
                uint8_t *d = dest + j0 * 8;
                for (Py_ssize_t i = 0; i < w; i++) {
                    uint64_t v = value8(src + j0, n, i);
                    memcpy(d + 8 * i, &v, 8);
                }
                for (Py_ssize_t r = r0; r < r1; r++) {
                    sums[r] = 0.0 + pairwise8(dest + r * width * 8, width);
                }
            }
        }
    }
    return 0;
}

static int
check_chunked(Chunked *a, const Py_buffer *dest, const Py_buffer *sums, const char *name,
              Shape shape)
{
    if (a->itemsize != 4 && a->itemsize != 8) {
        PyErr_Format(PyExc_ValueError,
                     "sums need float32 or float64 values (itemsize 4 or 8), not itemsize %d",
                     a->itemsize);
        return -1;
    }
    if (a->count < 1) {
        PyErr_SetString(PyExc_ValueError, "no chunks to unshuffle");
        return -1;
    }
    Py_ssize_t bytes = a->chunks[0].len;
    for (Py_ssize_t c = 1; c < a->count; c++) {
        if (a->chunks[c].len != bytes) {
            PyErr_Format(PyExc_ValueError, "chunk %zd holds %zd bytes, chunk 0 %zd: they must "
                         "be of one size", c, a->chunks[c].len, bytes);
            return -1;
        }
    }
    if (sums->len % 8 != 0) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, not float64 values", name,
                     sums->len);
        return -1;
    }
    a->n_sums = sums->len / 8;
    a->n = bytes / a->itemsize;
    if (shape(a) < 0) {
        return -1;
    }
    if (dest->len != a->count * bytes) {
        PyErr_Format(PyExc_ValueError, "dest holds %zd bytes; the %zd chunks decode to %zd",
                     dest->len, a->count, a->count * bytes);
        return -1;
    }
    if (overlap(dest, sums)) {
        PyErr_Format(PyExc_ValueError, "%s overlaps dest: give each a buffer of its own", name);
        return -1;
    }
    for (Py_ssize_t c = 0; c < a->count; c++) {
        if (overlap(&a->chunks[c], dest) || overlap(&a->chunks[c], sums)) {
            PyErr_Format(PyExc_ValueError, "chunk %zd overlaps dest or %s: give each a "
                         "buffer of its own", c, name);
            return -1;
        }
    }
    return 0;
}

/* unshuffle_sum and unshuffle_rows: (chunks, dest, itemsize, sums) parsed and checked, then
 * `kernel` run without the GIL. */
static PyObject *
over_chunks(PyObject *args, const char *name, Shape shape, Kernel kernel)
{
    PyObject *sequence;
    Py_buffer dest, sums;
    Chunked a = {0};
    if (!PyArg_ParseTuple(args, "Ow*iw*", &sequence, &dest, &a.itemsize, &sums)) {
        return NULL;
    }
    PyObject *result = NULL, *fast = PySequence_Fast(sequence, "chunks must be a sequence");
    Py_ssize_t got = 0;
    Py_buffer *chunks = NULL;
    if (fast == NULL) {
        goto done;
    }
    a.count = PySequence_Fast_GET_SIZE(fast);
    chunks = PyMem_Calloc(a.count > 0 ? (size_t)a.count : 1, sizeof(Py_buffer));
    if (chunks == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < a.count; got++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, got);
        if (PyObject_GetBuffer(item, &chunks[got], PyBUF_C_CONTIGUOUS) < 0) {
            goto done;
        }
    }
    a.chunks = chunks;
    if (check_chunked(&a, &dest, &sums, name, shape) < 0) {
        goto done;
    }
    a.dest = dest.buf;
    a.sums = sums.buf;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = kernel(&a);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t c = 0; c < got; c++) {
        PyBuffer_Release(&chunks[c]);
    }
    PyMem_Free(chunks);
    Py_XDECREF(fast);
    PyBuffer_Release(&dest);
    PyBuffer_Release(&sums);
    return result;
}

static PyObject *
unshuffle_sum(PyObject *self, PyObject *args)
{
    return over_chunks(args, "total", record_shape, sum_records);
}

static PyObject *
unshuffle_rows(PyObject *self, PyObject *args)
{
    return over_chunks(args, "rows", row_shape, sum_rows);
}

static PyMethodDef methods[] = {
    {"unshuffle", unshuffle, METH_VARARGS,
     "unshuffle(src, dest, itemsize, /)\n--\n\nUndo HDF5's shuffle of src into dest."},
    {"unshuffle_sum", unshuffle_sum, METH_VARARGS,
     "unshuffle_sum(chunks, dest, itemsize, total, /)\n--\n\n"
     "Undo HDF5's shuffle of consecutive chunks into dest; set total to the sum over their "
     "records."},
    {"unshuffle_rows", unshuffle_rows, METH_VARARGS,
     "unshuffle_rows(chunks, dest, itemsize, rows, /)\n--\n\n"
     "Undo HDF5's shuffle of consecutive chunks into dest; set rows to the sum of each row "
     "of values (NumPy's pairwise sum in float64)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_shuffle", "HDF5's shuffle filter undone (see _shuffle.c).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__shuffle(void)
{
    return PyModule_Create(&module);
}
