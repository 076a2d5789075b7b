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
 *
 * 5. Matrix products split into a fixed number of blocks, each computed by NumPy's BLAS on one thread
 *    (its sgemm, found by chainrule.kernels), the blocks shared out to a helper thread when that is
 *    measured to be faster (section "Products in blocks" below); the optimizer updates of section 1 and
 *    the gathering of section 4 are shared out with them.
 *
 * 6. BatchNorm's training-mode passes (section "BatchNorm" below): the statistics, the normalisation and
 *    the affine map in three passes over the batch, the backward pass in two, where NumPy needs a dozen
 *    calls, each a pass and most a new array.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>

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

/* fn(context, start, end) for [0, n) in one call, or, where `worth` it and the products are shared, in blocks
   of multiples of `unit` shared with the helper thread of section 5 (defined there). */
typedef void (*range_fn)(const void *context, Py_ssize_t start, Py_ssize_t end);
static void run_range(range_fn fn, const void *context, Py_ssize_t n, Py_ssize_t unit, int worth);

/* An element-wise loop over elements [start, end) of its arrays (a context for run_range). */
typedef struct {
    loop_fn loop;
    char type;
    int count;
    void **data;
    const double *scalars;
} sweep;

static void sweep_range(const void *context, Py_ssize_t start, Py_ssize_t end)
{
    const sweep *s = context;
    size_t size = s->type == 'f' ? sizeof(float) : sizeof(double);
    void *data[4];
    for (int k = 0; k < s->count; k++)
        data[k] = (char *)s->data[k] + (size_t)start * size;
    s->loop(s->type, data, end - start, s->scalars);
}

/* NAME(array_0, ..., array_{count-1}, scalar_0, ..., scalar_{n_scalars-1}) from Python: the arrays
   C-contiguous, of one size and one dtype (float32 or float64), array k writable where bit k of
   `written` is set; runs `loop` without the GIL (shared out in blocks where `shareable`). */
static PyObject *elementwise(PyObject *args, const char *name, int count, unsigned written, int n_scalars,
                             loop_fn loop, int shareable)
{
    if (PyTuple_GET_SIZE(args) != count + n_scalars) {
        PyErr_Format(PyExc_TypeError, "%s takes %d arrays and %d numbers", name, count, n_scalars);
        return NULL;
    }
    double scalars[8] = {0};
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
    sweep work = {loop, format[0], count, data, scalars};
    /* each element is computed as in one pass over the whole array, so blocks of elements (of 16: whole
       cache lines) give the same bits whoever computes them */
    run_range(sweep_range, &work, n, 16, shareable && n >= (1 << 15));
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
static PyObject *adam_step(PyObject *self, PyObject *args) { return elementwise(args, "adam_step", 4, 0xD, 5, adam_loop, 1); }
/* param (updated), grad, lr */
static PyObject *sgd_step(PyObject *self, PyObject *args) { return elementwise(args, "sgd_step", 2, 0x1, 1, sgd_loop, 1); }
/* z, out (written) */
static PyObject *relu(PyObject *self, PyObject *args) { return elementwise(args, "relu", 2, 0x2, 0, relu_loop, 0); }
/* grad, a, out (written) */
static PyObject *relu_grad(PyObject *self, PyObject *args) { return elementwise(args, "relu_grad", 3, 0x4, 0, relu_grad_loop, 0); }

/* x, out (written) */
static PyObject *erf_(PyObject *self, PyObject *args) { return elementwise(args, "erf", 2, 0x2, 0, erf_loop, 0); }

/* How many rows ahead take_rows asks for: enough to hide the memory latency, few enough that the
   prefetched rows are still in cache when copied (2-8 measured alike). */
#define PREFETCH_ROWS 4

typedef struct {
    const char *from;
    char *to;
    const Py_ssize_t *index;
    Py_ssize_t row_bytes;
} gather;

static void gather_range(const void *context, Py_ssize_t start, Py_ssize_t end)
{
    const gather *g = context;
    for (Py_ssize_t i = start; i < end; i++) {
#if defined(__GNUC__)
        if (i + PREFETCH_ROWS < end) {
            const char *ahead = g->from + g->index[i + PREFETCH_ROWS] * g->row_bytes;
            for (Py_ssize_t offset = 0; offset < g->row_bytes; offset += 64)  /* one cache line at a time */
                __builtin_prefetch(ahead + offset, 0, 0);
        }
#endif
        memcpy(g->to + i * g->row_bytes, g->from + g->index[i] * g->row_bytes, g->row_bytes);
    }
}

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
    gather work = {src.buf, out.buf, index, row_bytes};
    Py_BEGIN_ALLOW_THREADS
    run_range(gather_range, &work, n, 1, n * row_bytes >= (1 << 16));
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
}

/* ---- BatchNorm --------------------------------------------------------------------------------------
 *
 * Training mode, for a batch x of n rows and d features, each operation rounded as in the NumPy code of
 * chainrule.kernels.batch_norm (sums over the rows in their order, as NumPy's sum(axis=0) adds them; no
 * fused multiply-add), so both give the same bits, which the tests check:
 *     mean = Σ_rows x / n,  var = Σ_rows (x − mean)² / n,  inv_std = 1 / √(var + eps),
 *     x_hat = (x − mean)·inv_std,  out = x_hat·γ + β
 * and backward, from g = ∂L/∂out:
 *     dγ = Σ_rows g·x_hat,  dβ = Σ_rows g,  scale = γ·inv_std / n,
 *     ∂L/∂x = ((g·n − dβ) − x_hat·dγ)·scale
 */
/* The loops over one row's d features of the passes below, kept apart so that the compiler vectorizes them
   along the row: written inline it turned the loops around into sums down each column (64 x 512 float32:
   20.8 µs instead of 17.5 for the forward pass). */
#define DEFINE_ROW_LOOPS(T)                                                                                            \
    VECTOR_CLONES static void add_row_##T(T *restrict sum, const T *restrict row, Py_ssize_t d)                        \
    {                                                                                                                  \
        for (Py_ssize_t j = 0; j < d; j++)                                                                             \
            sum[j] += row[j];                                                                                          \
    }                                                                                                                  \
    VECTOR_CLONES static void center_row_##T(const T *restrict row, const T *restrict mean, T *restrict centered,      \
                                             T *restrict squares, Py_ssize_t d)                                        \
    {                                                                                                                  \
        for (Py_ssize_t j = 0; j < d; j++) {                                                                           \
            T c = row[j] - mean[j];                                                                                    \
            centered[j] = c;                                                                                           \
            squares[j] += c * c;                                                                                       \
        }                                                                                                              \
    }                                                                                                                  \
    VECTOR_CLONES static void scale_row_##T(T *restrict x_hat, const T *restrict inv_std, const T *restrict gamma,     \
                                            const T *restrict beta, T *restrict out, Py_ssize_t d)                     \
    {                                                                                                                  \
        for (Py_ssize_t j = 0; j < d; j++) {                                                                           \
            T h = x_hat[j] * inv_std[j];                                                                               \
            x_hat[j] = h;                                                                                              \
            out[j] = h * gamma[j] + beta[j];                                                                           \
        }                                                                                                              \
    }                                                                                                                  \
    VECTOR_CLONES static void gradient_sums_row_##T(const T *restrict g, const T *restrict x_hat, T *restrict d_gamma, \
                                                    T *restrict d_beta, Py_ssize_t d)                                  \
    {                                                                                                                  \
        for (Py_ssize_t j = 0; j < d; j++) {                                                                           \
            d_gamma[j] += g[j] * x_hat[j];                                                                             \
            d_beta[j] += g[j];                                                                                         \
        }                                                                                                              \
    }                                                                                                                  \
    VECTOR_CLONES static void input_gradient_row_##T(const T *restrict g, const T *restrict x_hat,                     \
                                                     const T *restrict d_gamma, const T *restrict d_beta,              \
                                                     const T *restrict scale, T count, T *restrict out, Py_ssize_t d)  \
    {                                                                                                                  \
        for (Py_ssize_t j = 0; j < d; j++)                                                                             \
            out[j] = ((g[j] * count - d_beta[j]) - x_hat[j] * d_gamma[j]) * scale[j];                                  \
    }

#define DEFINE_BATCH_NORM(FORWARD, BACKWARD, T, SQRT)                                                               \
    /* Each pass a loop over a row's features inside the loop over rows (see the row loops above). Tried and        \
       not kept: blocks of 32 or 64 features, all passes over a block's rows while in the L1 cache (slower),        \
       and the features in two halves shared with the helper thread (on (d): 54 -> 83 ms per epoch for the          \
       first BatchNorm's forward pass, 21 -> 34 backward: the threads' rows interleave in memory). */               \
    VECTOR_CLONES static void FORWARD(const T *restrict x, const T *restrict gamma, const T *restrict beta,         \
                                      T *restrict out, T *restrict x_hat, T *restrict mean, T *restrict var,        \
                                      T *restrict inv_std, Py_ssize_t n, Py_ssize_t d, T eps)                       \
    {                                                                                                               \
        T count = (T)n;                                                                                             \
        for (Py_ssize_t j = 0; j < d; j++)                                                                          \
            mean[j] = (T)0 + x[j]; /* from +0, as NumPy's sum: a column of -0.0 sums to +0.0 */                     \
        for (Py_ssize_t i = 1; i < n; i++)                                                                          \
            add_row_##T(mean, x + i * d, d);                                                                        \
        for (Py_ssize_t j = 0; j < d; j++) {                                                                        \
            mean[j] = mean[j] / count;                                                                              \
            var[j] = 0;                                                                                             \
        }                                                                                                           \
        for (Py_ssize_t i = 0; i < n; i++)                                                                          \
            center_row_##T(x + i * d, mean, x_hat + i * d, var, d);                                                 \
        for (Py_ssize_t j = 0; j < d; j++) {                                                                        \
            var[j] = var[j] / count;                                                                                \
            inv_std[j] = (T)1 / SQRT(var[j] + eps);                                                                 \
        }                                                                                                           \
        for (Py_ssize_t i = 0; i < n; i++)                                                                          \
            scale_row_##T(x_hat + i * d, inv_std, gamma, beta, out + i * d, d);                                     \
    }                                                                                                               \
    VECTOR_CLONES static void BACKWARD(const T *restrict g, const T *restrict x_hat, const T *restrict gamma,       \
                                       const T *restrict inv_std, T *restrict grad_input, T *restrict d_gamma,      \
                                       T *restrict d_beta, T *restrict scale, Py_ssize_t n, Py_ssize_t d)           \
    {                                                                                                               \
        T count = (T)n;                                                                                             \
        for (Py_ssize_t j = 0; j < d; j++) {                                                                        \
            d_gamma[j] = (T)0 + g[j] * x_hat[j];                                                                    \
            d_beta[j] = (T)0 + g[j];                                                                                \
        }                                                                                                           \
        for (Py_ssize_t i = 1; i < n; i++)                                                                          \
            gradient_sums_row_##T(g + i * d, x_hat + i * d, d_gamma, d_beta, d);                                    \
        for (Py_ssize_t j = 0; j < d; j++)                                                                          \
            scale[j] = gamma[j] * inv_std[j] / count;                                                               \
        for (Py_ssize_t i = 0; i < n; i++)                                                                          \
            input_gradient_row_##T(g + i * d, x_hat + i * d, d_gamma, d_beta, scale, count, grad_input + i * d, d); \
    }

DEFINE_ROW_LOOPS(float)
DEFINE_ROW_LOOPS(double)

DEFINE_BATCH_NORM(batch_norm_float, batch_norm_backward_float, float, sqrtf)
DEFINE_BATCH_NORM(batch_norm_double, batch_norm_backward_double, double, sqrt)

/* The buffers of `count` arrays from args[0:count], C-contiguous, all float32 or all float64, array k
   writable where bit k of `written` is set; returns the type ('f' or 'd'), or 0 with an exception set and
   no buffer held. */
static char get_arrays(const char *name, PyObject *args, int count, unsigned written, Py_buffer *views)
{
    int held = 0;
    for (; held < count; held++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | ((written >> held) & 1 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(args, held), &views[held], flags) < 0)
            break;
        const char *format = views[held].format;
        if ((strcmp(format, "f") != 0 && strcmp(format, "d") != 0) || strcmp(format, views[0].format) != 0) {
            PyErr_Format(PyExc_TypeError, "%s: expected arrays all float32 or all float64", name);
            held++;
            break;
        }
    }
    if (held == count && !PyErr_Occurred())
        return views[0].format[0];
    for (int k = 0; k < held; k++)
        PyBuffer_Release(&views[k]);
    return 0;
}

/* batch_norm(x, gamma, beta, out, x_hat, mean, var, inv_std, eps): x, out, x_hat (n, d), the rest (d,);
   batch_norm_backward(g, x_hat, gamma, inv_std, grad_input, d_gamma, d_beta, scale): g, x_hat, grad_input
   (n, d), the rest (d,). Both written to the arrays after the inputs, without the GIL. */
static PyObject *batch_norm_pass(PyObject *args, int backward)
{
    static const char *names[2] = {"batch_norm", "batch_norm_backward"};
    static const char *expected[2] = {
        "x, out, x_hat of one shape (n, d), n > 0, and gamma, beta, mean, var, inv_std of d",
        "g, x_hat, grad_input of one shape (n, d), n > 0, and gamma, inv_std, d_gamma, d_beta, scale of d"};
    static const unsigned matrices[2] = {0x19, 0x13}, written[2] = {0xF8, 0xF0};
    const char *name = names[backward];
    Py_buffer v[8];
    double eps = 0;
    if (PyTuple_GET_SIZE(args) != 9 - backward) {
        PyErr_Format(PyExc_TypeError, "%s takes 8 arrays%s", name, backward ? "" : " and eps");
        return NULL;
    }
    if (!backward && (eps = PyFloat_AsDouble(PyTuple_GET_ITEM(args, 8)), PyErr_Occurred()))
        return NULL;
    char type = get_arrays(name, args, 8, written[backward], v);
    if (!type)
        return NULL;
    Py_ssize_t n = v[0].ndim == 2 ? v[0].shape[0] : 0, d = v[0].ndim == 2 ? v[0].shape[1] : 0;
    int fits = n > 0;
    for (int k = 0; k < 8; k++)
        fits = fits && v[k].len == ((matrices[backward] >> k) & 1 ? v[0].len : d * v[k].itemsize);
    if (!fits) {
        PyErr_Format(PyExc_ValueError, "%s: expected %s", name, expected[backward]);
    } else {
        void *a[8];
        for (int k = 0; k < 8; k++)
            a[k] = v[k].buf;
        Py_BEGIN_ALLOW_THREADS
        if (!backward && type == 'f')
            batch_norm_float(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], n, d, (float)eps);
        else if (!backward)
            batch_norm_double(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], n, d, eps);
        else if (type == 'f')
            batch_norm_backward_float(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], n, d);
        else
            batch_norm_backward_double(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], n, d);
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < 8; k++)
        PyBuffer_Release(&v[k]);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}

static PyObject *batch_norm(PyObject *self, PyObject *args) { return batch_norm_pass(args, 0); }
static PyObject *batch_norm_backward(PyObject *self, PyObject *args) { return batch_norm_pass(args, 1); }

/* ---- Products in blocks ------------------------------------------------------------------------
 *
 * out = op(A)·op(B) (op: the matrix or its transpose), float32, m x k times k x n, is cut along the longest
 * of its three dimensions into BLOCKS blocks (at least MIN_BLOCK wide, multiples of 16), and each block is
 * one sgemm call on BLAS's one thread: blocks of rows or columns of out, or, where the inner dimension k is
 * the longest and the product large enough to share (X·W of a first layer: 784 inputs, a batch of 64 or
 * 128), partial products over parts of k that are then added in a fixed order. A cut of k is measured
 * faster there (0.24 ms instead of 0.25 per (b) step alone, 0.27 instead of 0.30 right after the
 * optimizer's update): each thread reads the rows of W that it has just updated itself, where a cut of W's
 * columns reads half of each row from the other core's cache. The cut depends on the shapes alone, so the
 * numbers are the same whoever computes which block: the caller alone (serial), or the caller and a helper
 * thread, each taking the next block not yet taken (parallel). A helper that the scheduler keeps off its
 * core therefore costs at most the block it holds: the caller takes the rest, where BLAS's own threads
 * would wait for their fixed share.
 *
 * Serial or parallel is measured, not guessed: every product of at least PARALLEL_MACS multiply-adds
 * counts its nanoseconds and multiply-adds; a comparison runs WINDOWS windows of PROBE products in
 * each mode, in turns (so that a change of load falls on both), then the faster mode for `exploit`
 * products (four times as many each time, up to MAX_EXPLOIT, while the choice stays the same), then
 * compares again.
 * PROBE products that take 1.5x the nanoseconds per multiply-add of the comparison (the machine got busy)
 * start the next comparison early; so does, on one thread, a processor left idle (see processor_idle).
 */
#define BLOCKS 2
#define MIN_BLOCK 64
#define PARALLEL_MACS (1L << 20)
#define PROBE 16
#define WINDOWS 4 /* a comparison: 4 windows of PROBE products in each mode, in turns */
#define FIRST_EXPLOIT 400
#define MAX_EXPLOIT 6400
#define HELPER_SPIN_NS 1000000L /* how long a helper waits for the next task before it sleeps */

typedef void (*sgemm32_fn)(int, int, int, int32_t, int32_t, int32_t, float, const float *, int32_t, const float *,
                           int32_t, float, float *, int32_t);
typedef void (*sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                           int64_t, float, float *, int64_t);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef struct {
    void *sgemm;
    int ilp64;
    int ta, tb;           /* op(A) = Aᵀ, op(B) = Bᵀ */
    int64_t m, n, k;      /* out is m x n, the inner dimension k */
    const float *a, *b;
    float *out;
    int64_t lda, ldb;
    int by;               /* BY_ROWS, BY_COLUMNS of out, or BY_INNER: parts of the inner dimension */
    int64_t step;         /* rows, columns or inner indices per block */
    int blocks;
    float *partial;       /* BY_INNER: the products of blocks 1, 2, ... (m x n each), added to out after */
} product;

enum { BY_ROWS, BY_COLUMNS, BY_INNER };

static void call_sgemm(const product *p, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *out)
{
    int ta = p->ta ? TRANS : NO_TRANS, tb = p->tb ? TRANS : NO_TRANS;
    if (p->ilp64)
        ((sgemm64_fn)p->sgemm)(ROW_MAJOR, ta, tb, m, n, k, 1.0f, a, p->lda, b, p->ldb, 0.0f, out, p->n);
    else
        ((sgemm32_fn)p->sgemm)(ROW_MAJOR, ta, tb, (int32_t)m, (int32_t)n, (int32_t)k, 1.0f, a, (int32_t)p->lda, b,
                               (int32_t)p->ldb, 0.0f, out, (int32_t)p->n);
}

/* Block i of the product: rows (or columns) [i*step, min((i+1)*step, m or n)) of out, or the product of
   the columns [i*step, ...) of op(A) and the same rows of op(B) (into out for block 0, else a partial). */
static void compute_block(const product *p, int i)
{
    int64_t start = i * p->step;
    if (p->by == BY_ROWS) {
        int64_t rows = p->m - start < p->step ? p->m - start : p->step;
        const float *a = p->ta ? p->a + start : p->a + start * p->lda;  /* rows of op(A) */
        call_sgemm(p, rows, p->n, p->k, a, p->b, p->out + start * p->n);
    } else if (p->by == BY_COLUMNS) {
        int64_t cols = p->n - start < p->step ? p->n - start : p->step;
        const float *b = p->tb ? p->b + start * p->ldb : p->b + start;  /* columns of op(B) */
        call_sgemm(p, p->m, cols, p->k, p->a, b, p->out + start);
    } else {
        int64_t inner = p->k - start < p->step ? p->k - start : p->step;
        const float *a = p->ta ? p->a + start * p->lda : p->a + start;  /* columns of op(A) */
        const float *b = p->tb ? p->b + start : p->b + start * p->ldb;  /* rows of op(B) */
        call_sgemm(p, p->m, p->n, inner, a, b, i ? p->partial + (i - 1) * p->m * p->n : p->out);
    }
}

/* After the blocks of a BY_INNER product: out = ((block 0 + block 1) + block 2) + ..., in this order. */
static void add_partials(const product *p)
{
    if (p->by != BY_INNER)
        return;
    int64_t size = p->m * p->n;
    for (int i = 1; i < p->blocks; i++) {
        const float *partial = p->partial + (i - 1) * size;
        for (int64_t j = 0; j < size; j++)
            p->out[j] += partial[j];
    }
}

/* What the caller and the helper share: the blocks of a product, or of a range [0, n) of the work of
   run_range (blocks [i*step, (i+1)*step)). */
typedef struct {
    int blocks;
    int is_product;
    product p;
    range_fn fn;
    const void *context;
    int64_t n, step;
} task;

static void task_block(const task *t, int i)
{
    if (t->is_product) {
        compute_block(&t->p, i);
    } else {
        int64_t start = i * t->step;
        t->fn(t->context, start, t->n - start < t->step ? t->n : start + t->step);
    }
}

/* The task that the helper may share: `claim` holds (generation << 16) | next block, so that a helper
   late by one task can never take a block of the next one. */
static task shared;
static _Atomic uint64_t claim;
static atomic_int done;
static atomic_int helper_sleeping;
static atomic_long helper_blocks;  /* blocks the helper computed */
static long shared_ranges;         /* run_range's work offered to the helper */
static atomic_long helper_wakes;   /* times the helper had to be woken from sleep for a task */
static _Atomic int64_t waited_ns;  /* time the caller waited for the helper's last block, with none left */
static int helper_started;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t task_lock = PTHREAD_MUTEX_INITIALIZER;  /* one shared task at a time */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Takes and computes blocks of the task of generation `gen` until none is left. */
static int take_blocks(uint64_t gen)
{
    int taken = 0;
    uint64_t c = atomic_load_explicit(&claim, memory_order_acquire);
    while ((c >> 16) == gen && (int)(c & 0xFFFF) < shared.blocks) {
        if (atomic_compare_exchange_weak_explicit(&claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire)) {
            task_block(&shared, (int)(c & 0xFFFF));
            atomic_fetch_add_explicit(&done, 1, memory_order_release);
            taken++;
            c = atomic_load_explicit(&claim, memory_order_acquire);
        }
    }
    return taken;
}

static void *helper_main(void *unused)
{
    (void)unused;
    uint64_t seen = atomic_load(&claim) >> 16;
    for (;;) {
        int64_t since = now_ns();
        uint64_t gen;
        while ((gen = atomic_load_explicit(&claim, memory_order_acquire) >> 16) == seen) {
            cpu_relax();
            if (now_ns() - since > HELPER_SPIN_NS) {
                pthread_mutex_lock(&sleep_lock);
                atomic_store(&helper_sleeping, 1);
                while ((atomic_load(&claim) >> 16) == seen)
                    pthread_cond_wait(&wake, &sleep_lock);
                atomic_store(&helper_sleeping, 0);
                pthread_mutex_unlock(&sleep_lock);
                since = now_ns();
            }
        }
        seen = gen;
        atomic_fetch_add(&helper_blocks, take_blocks(gen));
    }
    return NULL;
}

/* In a child after fork(): no helper there, and the locks and condition variable as new (the parent's
   helper may have been waiting on `wake`: signalling a condition variable whose waiter no longer exists
   hangs, and another thread of the parent may have held a lock). */
static void forget_helper(void)
{
    helper_started = 0;
    atomic_store(&helper_sleeping, 0);
    pthread_mutex_init(&sleep_lock, NULL);
    pthread_mutex_init(&task_lock, NULL);
    pthread_cond_init(&wake, NULL);
}

static int start_helper(void)
{
    if (helper_started)
        return 1;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int ok = pthread_create(&thread, &attr, helper_main, NULL) == 0;
    pthread_attr_destroy(&attr);
    if (ok && !helper_started) {
        static int registered;
        if (!registered)
            registered = pthread_atfork(NULL, NULL, forget_helper) == 0;
    }
    helper_started = ok;
    return ok;
}

/* The caller and the helper share the blocks of t; returns when all are computed. */
static void run_shared(const task *t)
{
    /* First a generation with no block left, so that a helper late from the last task cannot take a
       block while `shared` changes; then the task's own. */
    uint64_t gen = (atomic_load(&claim) >> 16) + 1;
    atomic_store(&claim, (gen << 16) | 0xFFFF);
    shared = *t;
    atomic_store_explicit(&done, 0, memory_order_relaxed);
    gen++;
    atomic_store(&claim, gen << 16);  /* publishes `shared` (sequentially consistent) */
    if (atomic_load(&helper_sleeping)) {
        atomic_fetch_add(&helper_wakes, 1);
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    take_blocks(gen);
    if (atomic_load_explicit(&done, memory_order_acquire) == t->blocks)
        return;
    int64_t waiting = now_ns();
    int spins = 0;
    while (atomic_load_explicit(&done, memory_order_acquire) < t->blocks) {
        if (++spins < 4000)
            cpu_relax();
        else
            sched_yield();  /* the helper is off its core: let it back on */
    }
    atomic_fetch_add_explicit(&waited_ns, now_ns() - waiting, memory_order_relaxed);
}

/* -- choosing serial or parallel by measurement -- */
static int threads_allowed = 1;  /* set_threads(): 1 serial only, 2 serial or parallel, measured */
static int parallel_now;         /* the mode of the current phase */
static int forced_mode = -1;     /* set_threads(): -1 measured, 0 serial, 1 parallel */
static int phase;                /* 0: using the choice, 1 ... 2*WINDOWS: the window of a comparison */
static long phase_left = 1;  /* the first product starts a comparison */
static long exploit = FIRST_EXPLOIT;
static int choice;               /* the faster mode at the last comparison */
static double measured_ns[2], measured_macs[2];
static double choice_rate;       /* ns per multiply-add of the choice when it was made */
static long decisions[2];        /* how many comparisons chose serial, parallel */
static long products[2];         /* products computed in each mode */

/* Whether a processor was left idle, on average over the last IDLE_WINDOW_NS or more: 1 yes, 0 no, -1
   unknown (no /proc/stat: not Linux; or not yet a whole window since the mark). Reads the idle ticks of all
   processors in /proc/stat (10 ms each) and marks the time and count when asked to `mark` (the answer is
   then unknown) and when a window has passed since the mark (the new answer); in between it gives the
   last answer. With one thread chosen, a comparison is worth its cost (windows on two threads, measured
   1.5x slower with another process busy) only when a processor is free. */
#define IDLE_WINDOW_NS 50000000L
static int processor_idle(int mark)
{
    static double marked_ticks = -1, marked_ns;
    static int answer = -1;
    double ns = (double)now_ns();
    if (!mark && (marked_ticks < 0 || ns - marked_ns < IDLE_WINDOW_NS))
        return marked_ticks < 0 ? -1 : answer;
    FILE *stat = fopen("/proc/stat", "r");
    unsigned long long user, nice, system, idle, iowait;
    int read = stat != NULL && fscanf(stat, "cpu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait) == 5;
    if (stat != NULL)
        fclose(stat);
    if (!read) {
        marked_ticks = -1;
        return -1;
    }
    double ticks = (double)(idle + iowait), per_second = (double)sysconf(_SC_CLK_TCK);
    double idle_processors = (ticks - marked_ticks) / per_second / ((ns - marked_ns) * 1e-9);
    answer = mark || per_second <= 0 ? -1 : idle_processors >= 0.5;
    marked_ticks = ticks;
    marked_ns = ns;
    return answer;
}

static void start_comparison(void)
{
    phase = 1;
    parallel_now = !choice;  /* windows of each mode in turns, the other mode first */
    phase_left = PROBE;
    measured_ns[0] = measured_ns[1] = measured_macs[0] = measured_macs[1] = 0;
}

static void count(double ns, double macs)
{
    products[parallel_now]++;
    if (forced_mode >= 0)
        return;
    measured_ns[parallel_now] += ns;
    measured_macs[parallel_now] += macs;
    if (phase == 0) {
        /* every PROBE products, whether they still run at the measured speed (1.5x slower: the machine got
           busy), and on one thread whether a processor was left idle (the load has gone) */
        if (products[parallel_now] % PROBE == 0) {
            if (choice_rate > 0 && measured_ns[parallel_now] / measured_macs[parallel_now] > 1.5 * choice_rate)
                phase_left = 1;
            if (!choice && processor_idle(0) == 1)
                phase_left = 1;
            measured_ns[parallel_now] = measured_macs[parallel_now] = 0;
        }
        if (--phase_left <= 0) {
            if (!choice && processor_idle(0) == 0)  /* one thread, and still no processor free */
                phase_left = FIRST_EXPLOIT;
            else
                start_comparison();
        }
        return;
    }
    if (--phase_left > 0)
        return;
    if (phase < 2 * WINDOWS) {  /* the next window, in the other mode */
        phase++;
        parallel_now = !parallel_now;
        phase_left = PROBE;
        return;
    }
    double rate[2] = {measured_ns[0] / measured_macs[0], measured_ns[1] / measured_macs[1]};
    int faster = rate[1] < rate[0];
    /* The helper's choice is compared again after four times as many products as last time (a comparison runs
       64 products in the slower mode: with twice as many, (a)'s second epoch took 0.347 s against 0.314 s with
       the helper always on; 0.329 s against 0.328 s now). One thread is chosen only while another process
       keeps a core busy, which may stop at any time: it is compared again as soon as /proc/stat shows a
       processor left idle for IDLE_WINDOW_NS (otherwise an idle machine could run on one thread for thousands
       of products, measured 30 % slower), and not while none is (each comparison costs windows on two
       threads); without /proc/stat, after FIRST_EXPLOIT products. */
    exploit = faster && faster == choice ? (exploit * 4 > MAX_EXPLOIT ? MAX_EXPLOIT : exploit * 4) : FIRST_EXPLOIT;
    if (!faster)
        processor_idle(1);  /* marks the start of the phase */
    choice = faster;
    decisions[faster]++;
    choice_rate = rate[faster];
    parallel_now = faster;
    phase = 0;
    phase_left = exploit;
    measured_ns[0] = measured_ns[1] = measured_macs[0] = measured_macs[1] = 0;
}

/* The work of run_range is shared with the helper when products are and the caller finds it worth it (an
   update of 2^15 weights or more, a batch of 64 KB or more), in BLOCKS blocks of consecutive indices.
   Measured on (b): the optimizer's update, limited by a square root and a division per weight, 0.10 ms
   instead of 0.20–0.22 per step on the first layer; the gathering of a batch's scattered rows, limited by
   waiting for memory, 25 instead of 45 ms per epoch of (a) and (b). Blocks of columns of W, cut as the
   next product X·W cuts them, were tried for the update and measured slower than one thread: the threads'
   rows interleave in memory, and each core's prefetching pulls in lines that the other one is writing. */
static void run_range(range_fn fn, const void *context, Py_ssize_t n, Py_ssize_t unit, int worth)
{
    int64_t step = ((n + BLOCKS - 1) / BLOCKS + unit - 1) / unit * unit;
    if (worth && step < n && threads_allowed > 1 && parallel_now &&
        pthread_mutex_trylock(&task_lock) == 0) {
        if (parallel_now && start_helper()) {
            task t = {.blocks = (int)((n + step - 1) / step), .fn = fn, .context = context, .n = n, .step = step};
            run_shared(&t);
            shared_ranges++;
            pthread_mutex_unlock(&task_lock);
            return;
        }
        pthread_mutex_unlock(&task_lock);
    }
    fn(context, 0, n);
}

/* The partials of a BY_INNER product: a buffer of the calling thread, kept for its next products and freed
   when the thread ends (training in many short-lived threads would otherwise keep one buffer for each). */
typedef struct {
    float *data;
    size_t size;
} scratch_buffer;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_made;

static void free_scratch(void *buffer)
{
    free(((scratch_buffer *)buffer)->data);
    free(buffer);
}

static void make_scratch_key(void) { scratch_key_made = pthread_key_create(&scratch_key, free_scratch) == 0; }

/* A buffer of at least `floats` floats for this thread, or NULL without memory. */
static float *thread_scratch(size_t floats)
{
    pthread_once(&scratch_once, make_scratch_key);
    if (!scratch_key_made)
        return NULL;
    scratch_buffer *buffer = pthread_getspecific(scratch_key);
    if (buffer == NULL) {
        if ((buffer = calloc(1, sizeof *buffer)) == NULL)
            return NULL;
        if (pthread_setspecific(scratch_key, buffer) != 0) {
            free(buffer);
            return NULL;
        }
    }
    if (floats > buffer->size) {
        float *grown = realloc(buffer->data, floats * sizeof(float));
        if (grown == NULL)
            return NULL;
        buffer->data = grown;
        buffer->size = floats;
    }
    return buffer->data;
}

/* matmul(a, b, out, trans_a, trans_b, sgemm_address, ilp64): out = op(a)·op(b). The arrays are
   C-contiguous float32 as stored; op(x) is xᵀ where trans_x is true. */
static PyObject *matmul(PyObject *self, PyObject *args)
{
    PyObject *objects[3];
    int ta, tb, ilp64;
    unsigned long long address;
    if (!PyArg_ParseTuple(args, "OOOppKp:matmul", &objects[0], &objects[1], &objects[2], &ta, &tb, &address, &ilp64))
        return NULL;
    Py_buffer views[3];
    int held = 0;
    for (; held < 3; held++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND | (held == 2 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[held], &views[held], flags) < 0)
            goto done;
    }
    for (int i = 0; i < 3; i++) {
        if (views[i].ndim != 2 || strcmp(views[i].format, "f") != 0) {
            PyErr_SetString(PyExc_TypeError, "matmul: expected 2-D C-contiguous float32 arrays");
            goto done;
        }
    }
    product p = {0};
    p.sgemm = (void *)(uintptr_t)address;
    p.ilp64 = ilp64;
    p.ta = ta;
    p.tb = tb;
    p.m = ta ? views[0].shape[1] : views[0].shape[0];
    p.k = ta ? views[0].shape[0] : views[0].shape[1];
    p.n = tb ? views[1].shape[0] : views[1].shape[1];
    int64_t kb = tb ? views[1].shape[1] : views[1].shape[0];
    if (kb != p.k || views[2].shape[0] != p.m || views[2].shape[1] != p.n || p.sgemm == NULL) {
        PyErr_Format(PyExc_ValueError, "matmul: shapes do not fit: (%zd, %zd) x (%zd, %zd) into (%zd, %zd)",
                     (Py_ssize_t)p.m, (Py_ssize_t)p.k, (Py_ssize_t)kb, (Py_ssize_t)p.n,
                     views[2].shape[0], views[2].shape[1]);
        goto done;
    }
    p.a = views[0].buf;
    p.b = views[1].buf;
    p.out = views[2].buf;
    p.lda = views[0].shape[1];
    p.ldb = views[1].shape[1];
    double macs = (double)p.m * (double)p.n * (double)p.k;
    /* The inner dimension is cut only in products large enough to share: elsewhere the partial sums would
       change the rounding of NumPy's product for nothing (a 64 x 256 x 10 product cut in two changed (b)'s
       accuracy after 6 epochs from 0.8805 to 0.8719). */
    p.by = p.k > p.m && p.k > p.n && macs >= PARALLEL_MACS ? BY_INNER : p.m >= p.n ? BY_ROWS : BY_COLUMNS;
    int64_t length = p.by == BY_INNER ? p.k : p.by == BY_ROWS ? p.m : p.n;
    p.step = ((length + BLOCKS - 1) / BLOCKS + 15) / 16 * 16;
    if (p.step < MIN_BLOCK)
        p.step = MIN_BLOCK;
    p.blocks = (int)((length + p.step - 1) / p.step);
    if (p.m == 0 || p.n == 0) {
        p.blocks = 0;
    } else if (p.k == 0) {  /* sgemm leaves out as it is when k is 0; NumPy writes the zeros */
        memset(p.out, 0, (size_t)(p.m * p.n) * sizeof(float));
        p.blocks = 0;
    }
    if (p.by == BY_INNER && p.blocks > 1) {
        p.partial = thread_scratch((size_t)(p.blocks - 1) * (size_t)(p.m * p.n));
        if (p.partial == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    if (p.blocks > 1 && macs >= PARALLEL_MACS && threads_allowed > 1 && pthread_mutex_trylock(&task_lock) == 0) {
        int64_t started = now_ns();
        if (parallel_now && start_helper()) {
            task t = {.blocks = p.blocks, .is_product = 1, .p = p};
            run_shared(&t);
        } else
            for (int i = 0; i < p.blocks; i++)
                compute_block(&p, i);
        add_partials(&p);
        count((double)(now_ns() - started), macs);
        pthread_mutex_unlock(&task_lock);
    } else {
        for (int i = 0; i < p.blocks; i++)
            compute_block(&p, i);
        add_partials(&p);
    }
    Py_END_ALLOW_THREADS
done:
    for (int i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}

/* set_threads(n[, forced]): n = 1, products on the caller's thread only; 2 (or more), the caller and one
   helper when measured faster, or always (forced = 1) or never (forced = 0), for tests and benchmarks.
   Returns the previous n. */
static PyObject *set_threads(PyObject *self, PyObject *args)
{
    int n, forced = -1;
    if (!PyArg_ParseTuple(args, "i|i:set_threads", &n, &forced))
        return NULL;
    int previous = threads_allowed;
    pthread_mutex_lock(&task_lock);
    threads_allowed = n < 1 ? 1 : n;
    forced_mode = forced;
    if (forced >= 0)
        parallel_now = forced != 0;
    else if (phase == 0)
        parallel_now = choice;
    pthread_mutex_unlock(&task_lock);
    return PyLong_FromLong(previous);
}

/* threads_report(): how products were shared out so far, as a dict. */
static PyObject *threads_report(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("{s:i,s:i,s:l,s:l,s:l,s:L,s:l,s:l,s:l,s:l}", "allowed", threads_allowed, "parallel_now",
                         parallel_now, "helper_blocks", atomic_load(&helper_blocks), "helper_wakes",
                         atomic_load(&helper_wakes), "shared_ranges", shared_ranges, "waited_ns",
                         (long long)atomic_load(&waited_ns), "serial_products", products[0],
                         "parallel_products", products[1], "chose_serial", decisions[0], "chose_parallel",
                         decisions[1]);
}

static PyMethodDef methods[] = {
    {"adam_step", adam_step, METH_VARARGS,
     "adam_step(param, grad, m, v, beta1, beta2, step_size, inv_sqrt_bc2, eps): one fused Adam update in place."},
    {"sgd_step", sgd_step, METH_VARARGS, "sgd_step(param, grad, lr): param -= lr * grad in one pass."},
    {"relu", relu, METH_VARARGS, "relu(z, out): out = max(z, 0)."},
    {"relu_grad", relu_grad, METH_VARARGS, "relu_grad(grad, a, out): out = grad * (a > 0)."},
    {"erf", erf_, METH_VARARGS, "erf(x, out): out = erf(x), the C library's."},
    {"batch_norm", batch_norm, METH_VARARGS,
     "batch_norm(x, gamma, beta, out, x_hat, mean, var, inv_std, eps): BatchNorm's training forward pass."},
    {"batch_norm_backward", batch_norm_backward, METH_VARARGS,
     "batch_norm_backward(g, x_hat, gamma, inv_std, grad_input, d_gamma, d_beta, scale): its backward pass."},
    {"take_rows", take_rows, METH_VARARGS, "take_rows(array, rows, out): out[...] = array[rows], rows of intp."},
    {"matmul", matmul, METH_VARARGS,
     "matmul(a, b, out, trans_a, trans_b, sgemm_address, ilp64): out = op(a) @ op(b) in blocks."},
    {"set_threads", set_threads, METH_VARARGS, "set_threads(n): products on 1 thread, or on 2 where faster."},
    {"threads_report", threads_report, METH_NOARGS, "threads_report(): how products were shared out so far."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "The compiled loops of a training step (chainrule.kernels wraps them).", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
