"""Type stubs for the compiled pool's tasks: private to the pool core, which
cimports them; nothing public."""

from typing import Any

# Cython's table of the C functions the pool core cimports.
__pyx_capi__: dict[str, Any]
