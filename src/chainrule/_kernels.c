/*
 * The few loops of a training step where NumPy is measured to be slow (benchmarks/bench_train.py,
 * docs/benchmarks.md). chainrule.kernels falls back to the NumPy code where this module is not built,
 * and the tests check that both give the same results.
 *
 * 1. Fused optimizer updates: one pass over the arrays instead of the passes that NumPy needs.
 *    Adam (chainrule.optim.Adam), element by element (g: gradient, m, v: moments, p: parameter):
 *        m = b1*m + (1 - b1)*g
 *        v = b2*v + (1 - b2)*g*g
 *        p = p - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
 *    with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t), computed by the caller;
 *    about eleven NumPy passes over every weight at every step. Plain SGD, p = p - lr*g: two passes.
 *    Each operation is rounded as in the NumPy code (setup.py compiles with -ffp-contract=off, so no
 *    fused multiply-add changes a result): both give the same bits, which the tests check.
 *    These loops are limited by arithmetic (a square root and a division per weight), so the width of
 *    the vector instructions matters: with GCC on x86-64 Linux each is compiled three times (AVX-512,
 *    AVX2, SSE2) and the loader picks the widest one the processor has (Adam 3x faster on AVX-512 than
 *    with the SSE2 that a portable build gets otherwise).
 *
 * 2. ReLU forward and backward in one pass each, with NumPy's results. NumPy 2.4's np.maximum(z, 0)
 *    is 4x slower than the same loop against an array (its path for a scalar operand is not
 *    vectorized), and grad * (a > 0) makes two passes and a mask.
 *
 * 3. The error function erf, element by element, for the exact GELU: NumPy has none, and a Python loop
 *    over math.erf is a hundred times slower than this loop over the C library's erf.
 *
 * 4. Gathering the rows of a mini-batch, out = X[rows], as np.take does, but asking memory for the
 *    next rows while one is copied: the rows of a shuffled batch are scattered over the training set,
 *    and np.take waits for memory at every row (2x slower on Fashion-MNIST's 3 KB rows).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

/* A moment that falls below the smallest normal number (TINY) is stored as zero. The moments
   of a weight whose gradient stays 0 (a ReLU unit that never fires) decay by b1 or b2 at every step into
   the subnormal range, where the processor computes each operation in a slow microcode assist: in
   measured epochs of (b) 11 % of a layer's first moments were subnormal and the update took 3.5x as long.
   The reference NumPy update keeps them; the two differ only there, by less than TINY, which the tests
   bound. */
#define DEFINE_ADAM(NAME, T, SQRT, TINY)                                                             \
    VECTOR_CLONES static void NAME(T *p, const T *g, T *m, T *v, Py_ssize_t n, T c1, T d1, T c2, T d2, \
                                   T step, T scale, T eps)                                           \
    {                                                                                                \
        for (Py_ssize_t i = 0; i < n; i++) {                                                         \
            T mi = c1 * m[i] + d1 * g[i];                                                            \
            T vi = c2 * v[i] + d2 * (g[i] * g[i]);                                                   \
            mi = mi > -TINY && mi < TINY ? mi * (T)0 : mi;                                           \
            vi = vi < TINY ? vi * (T)0 : vi;                                                         \
            m[i] = mi;                                                                               \
            v[i] = vi;                                                                               \
            p[i] -= step * (mi / (SQRT(vi) * scale + eps));                                          \
        }                                                                                            \
    }

DEFINE_ADAM(adam_float, float, sqrtf, FLT_MIN)
DEFINE_ADAM(adam_double, double, sqrt, DBL_MIN)

#define DEFINE_SGD(NAME, T)                                                 \
    VECTOR_CLONES static void NAME(T *p, const T *g, Py_ssize_t n, T lr)    \
    {                                                                       \
        for (Py_ssize_t i = 0; i < n; i++)                                  \
            p[i] -= lr * g[i];                                              \
    }

DEFINE_SGD(sgd_float, float)
DEFINE_SGD(sgd_double, double)

/* ReLU, forward a = max(z, 0) and backward dz = da * [a > 0], with NumPy's results: NaN passes through
   the forward pass, and an infinite upstream gradient times 0 is NaN as in NumPy's product. */
#define DEFINE_RELU(FORWARD, BACKWARD, T)                                                  \
    VECTOR_CLONES static void FORWARD(const T *z, T *a, Py_ssize_t n)                     \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++)                                                 \
            a[i] = z[i] <= 0 ? (T)0 : z[i]; /* -0.0 becomes +0.0, as in NumPy */             \
    }                                                                                      \
    VECTOR_CLONES static void BACKWARD(const T *grad, const T *a, T *out, Py_ssize_t n)   \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++)                                                 \
            out[i] = grad[i] * (a[i] > 0 ? (T)1 : (T)0);                                   \
    }

DEFINE_RELU(relu_float, relu_grad_float, float)
DEFINE_RELU(relu_double, relu_grad_double, double)

/* erf from the C library (erff for float32), as math.erf does for one number. */
#define DEFINE_ERF(NAME, T, ERF)                                          \
    static void NAME(const T *x, T *out, Py_ssize_t n)                    \
    {                                                                     \
        for (Py_ssize_t i = 0; i < n; i++)                                \
            out[i] = ERF(x[i]);                                           \
    }

DEFINE_ERF(erf_float, float, erff)
DEFINE_ERF(erf_double, double, erf)

/* The loop of one element-wise function for arrays of one type ('f' or 'd'), given their data, their
   length and the function's scalar arguments. */
typedef void (*loop_fn)(char type, void **data, Py_ssize_t n, const double *scalars);

/* NAME(array_0, ..., array_{count-1}, scalar_0, ..., scalar_{n_scalars-1}) from Python: the arrays
   C-contiguous, of one size and one dtype (float32 or float64), array k writable where bit k of
   `written` is set; runs `loop` without the GIL. */
static PyObject *elementwise(PyObject *args, const char *name, int count, unsigned written, int n_scalars,
                             loop_fn loop)
{
    if (PyTuple_GET_SIZE(args) != count + n_scalars) {
        PyErr_Format(PyExc_TypeError, "%s takes %d arrays and %d numbers", name, count, n_scalars);
        return NULL;
    }
    double scalars[8];
    for (int k = 0; k < n_scalars; k++) {
        scalars[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(args, count + k));
        if (scalars[k] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer views[4];
    int held = 0;
    for (; held < count; held++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | ((written >> held) & 1 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(args, held), &views[held], flags) < 0)
            goto done;
    }
    const char *format = views[0].format;
    for (int k = 1; k < count; k++) {
        if (views[k].len != views[0].len || strcmp(views[k].format, format) != 0) {
            PyErr_Format(PyExc_ValueError, "%s: the arrays must have the same size and dtype", name);
            goto done;
        }
    }
    if (strcmp(format, "f") != 0 && strcmp(format, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected float32 or float64 arrays, got format '%s'", name, format);
        goto done;
    }
    void *data[4];
    for (int k = 0; k < count; k++)
        data[k] = views[k].buf;
    Py_ssize_t n = views[0].len / views[0].itemsize;
    Py_BEGIN_ALLOW_THREADS
    loop(format[0], data, n, scalars);
    Py_END_ALLOW_THREADS
done:
    for (int k = 0; k < held; k++)
        PyBuffer_Release(&views[k]);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}

static void adam_loop(char type, void **d, Py_ssize_t n, const double *s)
{
    double b1 = s[0], b2 = s[1], step_size = s[2], inv_sqrt_bc2 = s[3], eps = s[4];
    if (type == 'f')
        adam_float(d[0], d[1], d[2], d[3], n, (float)b1, (float)(1.0 - b1), (float)b2, (float)(1.0 - b2),
                   (float)step_size, (float)inv_sqrt_bc2, (float)eps);
    else
        adam_double(d[0], d[1], d[2], d[3], n, b1, 1.0 - b1, b2, 1.0 - b2, step_size, inv_sqrt_bc2, eps);
}

static void sgd_loop(char type, void **d, Py_ssize_t n, const double *s)
{
    if (type == 'f')
        sgd_float(d[0], d[1], n, (float)s[0]);
    else
        sgd_double(d[0], d[1], n, s[0]);
}

static void relu_loop(char type, void **d, Py_ssize_t n, const double *s)
{
    (void)s;
    if (type == 'f')
        relu_float(d[0], d[1], n);
    else
        relu_double(d[0], d[1], n);
}

static void relu_grad_loop(char type, void **d, Py_ssize_t n, const double *s)
{
    (void)s;
    if (type == 'f')
        relu_grad_float(d[0], d[1], d[2], n);
    else
        relu_grad_double(d[0], d[1], d[2], n);
}

static void erf_loop(char type, void **d, Py_ssize_t n, const double *s)
{
    (void)s;
    if (type == 'f')
        erf_float(d[0], d[1], n);
    else
        erf_double(d[0], d[1], n);
}

/* param, grad, m, v (param, m and v updated), beta1, beta2, step_size, inv_sqrt_bc2, eps */
static PyObject *adam_step(PyObject *self, PyObject *args) { return elementwise(args, "adam_step", 4, 0xD, 5, adam_loop); }
/* param (updated), grad, lr */
static PyObject *sgd_step(PyObject *self, PyObject *args) { return elementwise(args, "sgd_step", 2, 0x1, 1, sgd_loop); }
/* z, out (written) */
static PyObject *relu(PyObject *self, PyObject *args) { return elementwise(args, "relu", 2, 0x2, 0, relu_loop); }
/* grad, a, out (written) */
static PyObject *relu_grad(PyObject *self, PyObject *args) { return elementwise(args, "relu_grad", 3, 0x4, 0, relu_grad_loop); }

/* x, out (written) */
static PyObject *erf_(PyObject *self, PyObject *args) { return elementwise(args, "erf", 2, 0x2, 0, erf_loop); }

/* How many rows ahead take_rows asks for: enough to hide the memory latency, few enough that the
   prefetched rows are still in cache when copied (2-8 measured alike). */
#define PREFETCH_ROWS 4

static PyObject *take_rows(PyObject *self, PyObject *args)
{
    PyObject *arrays[3];
    if (!PyArg_ParseTuple(args, "OOO:take_rows", &arrays[0], &arrays[1], &arrays[2]))
        return NULL;
    Py_buffer src, rows, out;
    if (PyObject_GetBuffer(arrays[0], &src, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(arrays[1], &rows, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (PyObject_GetBuffer(arrays[2], &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&rows);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n_src = src.ndim ? src.shape[0] : 0, n = rows.len / (rows.itemsize ? rows.itemsize : 1);
    if (src.ndim < 1 || n_src == 0 || strcmp(src.format, out.format) != 0 || rows.itemsize != sizeof(Py_ssize_t)
        || (strcmp(rows.format, "l") != 0 && strcmp(rows.format, "q") != 0 && strcmp(rows.format, "n") != 0)) {
        PyErr_SetString(PyExc_TypeError, "take_rows: expected a C-contiguous array, intp row indices and an "
                                         "output of the array's dtype");
        goto done;
    }
    Py_ssize_t row_bytes = src.len / n_src;
    if (out.len != n * row_bytes) {
        PyErr_Format(PyExc_ValueError, "take_rows: the output holds %zd bytes, %zd rows need %zd", out.len, n,
                     n * row_bytes);
        goto done;
    }
    const Py_ssize_t *index = rows.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (index[i] < 0 || index[i] >= n_src) {
            PyErr_Format(PyExc_IndexError, "take_rows: row %zd is out of range for %zd rows", index[i], n_src);
            goto done;
        }
    }
    const char *from = src.buf;
    char *to = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
#if defined(__GNUC__)
        if (i + PREFETCH_ROWS < n) {
            const char *ahead = from + index[i + PREFETCH_ROWS] * row_bytes;
            for (Py_ssize_t offset = 0; offset < row_bytes; offset += 64)  /* one cache line at a time */
                __builtin_prefetch(ahead + offset, 0, 0);
        }
#endif
        memcpy(to + i * row_bytes, from + index[i] * row_bytes, row_bytes);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"adam_step", adam_step, METH_VARARGS,
     "adam_step(param, grad, m, v, beta1, beta2, step_size, inv_sqrt_bc2, eps): one fused Adam update in place."},
    {"sgd_step", sgd_step, METH_VARARGS, "sgd_step(param, grad, lr): param -= lr * grad in one pass."},
    {"relu", relu, METH_VARARGS, "relu(z, out): out = max(z, 0)."},
    {"relu_grad", relu_grad, METH_VARARGS, "relu_grad(grad, a, out): out = grad * (a > 0)."},
    {"erf", erf_, METH_VARARGS, "erf(x, out): out = erf(x), the C library's."},
    {"take_rows", take_rows, METH_VARARGS, "take_rows(array, rows, out): out[...] = array[rows], rows of intp."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "The compiled loops of a training step (chainrule.kernels wraps them).", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
