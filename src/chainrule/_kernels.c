/*
 * Fused optimizer updates: one pass over the arrays instead of the passes that NumPy needs.
 *
 * The Adam update of chainrule.optim.Adam, element by element (g: gradient, m, v: moments, p: parameter):
 *     m = b1*m + (1 - b1)*g
 *     v = b2*v + (1 - b2)*g*g
 *     p = p - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
 * with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t), computed by the caller.
 * In NumPy this is about eleven passes over every weight at every step, a third of an epoch of a
 * 784-512-256-10 MLP (benchmarks/bench_train.py); here it is one.
 *
 * The plain SGD step p = p - lr*g, which NumPy does in two passes (lr*g into a scratch array, then
 * subtract).
 *
 * Each operation is rounded as in the NumPy code (setup.py compiles with -ffp-contract=off, so no fused
 * multiply-add changes a result), so both give the same bits; chainrule.optim falls back to the NumPy
 * code when this module is not built, and the tests check both against each other and against PyTorch.
 *
 * The loops are short and limited by arithmetic (a square root and a division per weight), so the
 * width of the vector instructions matters: with GCC on x86-64 Linux each loop is compiled three times
 * (AVX-512, AVX2, SSE2) and the loader picks the widest one the processor has (3x faster on AVX-512
 * than the SSE2 baseline that a portable build gets otherwise).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

#define DEFINE_ADAM(NAME, T, SQRT)                                                                   \
    VECTOR_CLONES static void NAME(T *p, const T *g, T *m, T *v, Py_ssize_t n, T c1, T d1, T c2, T d2, \
                                   T step, T scale, T eps)                                           \
    {                                                                                                \
        for (Py_ssize_t i = 0; i < n; i++) {                                                         \
            T mi = c1 * m[i] + d1 * g[i];                                                            \
            T vi = c2 * v[i] + d2 * (g[i] * g[i]);                                                   \
            m[i] = mi;                                                                               \
            v[i] = vi;                                                                               \
            p[i] -= step * (mi / (SQRT(vi) * scale + eps));                                          \
        }                                                                                            \
    }

DEFINE_ADAM(adam_float, float, sqrtf)
DEFINE_ADAM(adam_double, double, sqrt)

#define DEFINE_SGD(NAME, T)                                                 \
    VECTOR_CLONES static void NAME(T *p, const T *g, Py_ssize_t n, T lr)    \
    {                                                                       \
        for (Py_ssize_t i = 0; i < n; i++)                                  \
            p[i] -= lr * g[i];                                              \
    }

DEFINE_SGD(sgd_float, float)
DEFINE_SGD(sgd_double, double)

/* Buffers of `count` C-contiguous arrays of one size and one dtype (float32 or float64), writable.
   Returns 'f' or 'd', or 0 with a Python exception set and nothing held. */
static char get_arrays(const char *name, PyObject **arrays, Py_buffer *views, int count)
{
    int held = 0;
    for (; held < count; held++) {
        if (PyObject_GetBuffer(arrays[held], &views[held], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
            goto fail;
    }
    const char *format = views[0].format;
    for (int k = 1; k < count; k++) {
        if (views[k].len != views[0].len || strcmp(views[k].format, format) != 0) {
            PyErr_Format(PyExc_ValueError, "%s: the arrays must have the same size and dtype", name);
            goto fail;
        }
    }
    if (strcmp(format, "f") == 0 || strcmp(format, "d") == 0)
        return format[0];
    PyErr_Format(PyExc_TypeError, "%s: expected float32 or float64 arrays, got format '%s'", name, format);
fail:
    for (int k = 0; k < held; k++)
        PyBuffer_Release(&views[k]);
    return 0;
}

static void release(Py_buffer *views, int count)
{
    for (int k = 0; k < count; k++)
        PyBuffer_Release(&views[k]);
}

static PyObject *adam_step(PyObject *self, PyObject *args)
{
    PyObject *arrays[4];
    double b1, b2, step_size, inv_sqrt_bc2, eps;
    if (!PyArg_ParseTuple(args, "OOOOddddd:adam_step", &arrays[0], &arrays[1], &arrays[2], &arrays[3],
                          &b1, &b2, &step_size, &inv_sqrt_bc2, &eps))
        return NULL;
    Py_buffer view[4];
    char type = get_arrays("adam_step", arrays, view, 4);
    if (!type)
        return NULL;
    Py_ssize_t n = view[0].len / view[0].itemsize;
    Py_BEGIN_ALLOW_THREADS
    if (type == 'f')
        adam_float(view[0].buf, view[1].buf, view[2].buf, view[3].buf, n, (float)b1, (float)(1.0 - b1),
                   (float)b2, (float)(1.0 - b2), (float)step_size, (float)inv_sqrt_bc2, (float)eps);
    else
        adam_double(view[0].buf, view[1].buf, view[2].buf, view[3].buf, n, b1, 1.0 - b1, b2, 1.0 - b2,
                    step_size, inv_sqrt_bc2, eps);
    Py_END_ALLOW_THREADS
    release(view, 4);
    Py_RETURN_NONE;
}

static PyObject *sgd_step(PyObject *self, PyObject *args)
{
    PyObject *arrays[2];
    double lr;
    if (!PyArg_ParseTuple(args, "OOd:sgd_step", &arrays[0], &arrays[1], &lr))
        return NULL;
    Py_buffer view[2];
    char type = get_arrays("sgd_step", arrays, view, 2);
    if (!type)
        return NULL;
    Py_ssize_t n = view[0].len / view[0].itemsize;
    Py_BEGIN_ALLOW_THREADS
    if (type == 'f')
        sgd_float(view[0].buf, view[1].buf, n, (float)lr);
    else
        sgd_double(view[0].buf, view[1].buf, n, lr);
    Py_END_ALLOW_THREADS
    release(view, 2);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"adam_step", adam_step, METH_VARARGS,
     "adam_step(param, grad, m, v, beta1, beta2, step_size, inv_sqrt_bc2, eps): one fused Adam update in place."},
    {"sgd_step", sgd_step, METH_VARARGS, "sgd_step(param, grad, lr): param -= lr * grad in one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Fused optimizer updates.", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
