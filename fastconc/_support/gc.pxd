# Garbage-collector hooks for extension types that hold object pointers in C
# storage Cython cannot see.  A type sets its own tp_traverse / tp_clear with
# set_gc_hooks(); Cython's generated ones only know `object` attributes.
from cpython.object cimport PyObject


cdef extern from "Python.h":
    # Declared without Cython's `except -1` so the hooks are plain C callbacks.
    ctypedef int (*gc_visit_t "visitproc")(PyObject *, void *) noexcept
    ctypedef int (*gc_traverse_t "traverseproc")(PyObject *, gc_visit_t, void *) noexcept
    ctypedef int (*gc_clear_t "inquiry")(PyObject *) noexcept
    ctypedef struct GcType "PyTypeObject":
        gc_traverse_t tp_traverse
        gc_clear_t tp_clear
    unsigned long PyType_GetFlags(GcType *tp)
    const unsigned long Py_TPFLAGS_HEAPTYPE
    GcType *gc_type_of "Py_TYPE" (PyObject *o)


cdef inline int visit_heap_type(PyObject *self, gc_visit_t visit, void *arg,
                                gc_traverse_t own) noexcept:
    """Instances of heap types must visit their type (Python 3.9+), once.

    `own` is the hook calling this.  When the instance's type has another
    tp_traverse, it is a Python subclass whose subtype_traverse has already
    visited the type before chaining to us: visiting it again would make the
    collector count one reference too many and clear a live class."""
    cdef GcType *tp = gc_type_of(self)
    if tp.tp_traverse == own and PyType_GetFlags(tp) & Py_TPFLAGS_HEAPTYPE:
        return visit(<PyObject *>tp, arg)
    return 0


cdef inline void set_gc_hooks(object tp, gc_traverse_t traverse, gc_clear_t clear) noexcept:
    (<GcType *><PyObject *>tp).tp_traverse = traverse
    (<GcType *><PyObject *>tp).tp_clear = clear
