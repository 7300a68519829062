"""BTF-typed views over arena memory, pointer following, value encoding and NumPy export."""

from .numpy import btf_dtype, to_numpy
from .values import decode_value, encode_value
from .view import ArrayView, StructView, View, container_of, view

__all__ = ["view", "View", "StructView", "ArrayView", "container_of", "to_numpy", "btf_dtype",
           "decode_value", "encode_value"]
