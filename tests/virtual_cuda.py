"""A virtual CUDA device for CPU-only machines: tensors that say ``device='cuda:0'`` but compute on the CPU,
with PyTorch's device rules enforced.

The development machines and CI have no GPU, yet researchers run snn-zoo on theirs. Under :class:`VirtualCuda`
``x.to("cuda")``, ``module.to("cuda")`` and factories with ``device="cuda"`` give :class:`VirtualCudaTensor`s.
Every aten operation is checked the way a CUDA build checks it before it runs on the real CPU tensors inside:

* a CPU tensor with one or more dimensions mixed with a CUDA tensor is an error (a 0-dim CPU tensor is allowed,
  as on CUDA);
* indexing a CUDA tensor with CPU indices is allowed, a CPU tensor with CUDA indices is not;
* ``copy_`` and ``_to_copy`` move data between the devices;
* ``.item()``, ``.tolist()`` and comparisons with Python numbers work (a real GPU synchronizes), ``.numpy()``
  of a CUDA tensor fails as it does on a GPU.

The numbers are the CPU's, so a computation run on the virtual device must give exactly the CPU result: a
test compares the two. cuDNN-only kernels that dispatch picks for a CUDA input (``cudnn_batch_norm``) are
replaced by their CPU equivalents. This catches device mix-ups, not CUDA numerics (TF32, kernel order); the
real-GPU tests in test_device.py cover those where a GPU is present. Uses private torch hooks
(``torch._C._ensureCUDADeviceGuardSet``, as FakeTensorMode does), checked against the pinned torch.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
_INDEX_OPS = ("index", "index_put", "index_put_", "_index_put_impl_")
_PASS_THROUGH = ("_local_scalar_dense", "equal", "is_nonzero")


class DeviceMismatch(RuntimeError):
    """What a CUDA build raises when an operation mixes devices."""


class VirtualCudaTensor(Tensor):
    """A CPU tensor (``elem``) that reports ``device='cuda:0'``."""

    elem: Tensor

    @staticmethod
    def __new__(cls, elem: Tensor):
        r = Tensor._make_wrapper_subclass(cls, elem.shape, strides=elem.stride(),
                                          storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                          layout=elem.layout, device=CUDA, requires_grad=elem.requires_grad)
        r.elem = elem
        return r

    # a traceable wrapper subclass, so that Module._apply swaps parameters and buffers for it
    def __tensor_flatten__(self):
        return ["elem"], None

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return VirtualCudaTensor(inner["elem"])

    def tolist(self):  # a GPU tensor's tolist() synchronizes and answers; subclasses need it spelt out
        return self.elem.tolist()

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                        "host memory first.")

    def __repr__(self) -> str:  # noqa: D105
        return f"VirtualCudaTensor({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs)


class VirtualCuda(TorchDispatchMode):
    """``with VirtualCuda(): ...`` runs the block as if a CUDA device were present (see the module doc)."""

    def __enter__(self):
        self._initialized = torch.cuda._initialized
        torch.cuda._initialized = True  # device="cuda" factories reach the mode instead of the driver
        torch._C._ensureCUDADeviceGuardSet()  # a no-op CUDA device guard where there is no driver
        self._lift = torch._C._only_lift_cpu_tensors()
        torch._C._set_only_lift_cpu_tensors(True)  # torch.tensor(data, device="cuda") is built on the CPU first
        # module.to("cpu") of a virtual module assigns new CPU parameters instead of setting .data in place,
        # which would leave VirtualCudaTensor objects over CPU tensors
        self._overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        return super().__enter__()

    def __exit__(self, *exc):
        torch.cuda._initialized = self._initialized
        torch._C._set_only_lift_cpu_tensors(self._lift)
        torch.__future__.set_overwrite_module_params_on_conversion(self._overwrite)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs)


def _virtual(t) -> bool:
    # a parameter moved back with module.to("cpu") keeps its Python class over a CPU tensor: plain, not virtual
    return isinstance(t, VirtualCudaTensor) and t.device.type == "cuda"


def _unwrap(t):
    return t.elem if _virtual(t) else t


def _wrap(t):
    return VirtualCudaTensor(t) if isinstance(t, Tensor) and not _virtual(t) else t


def _is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def _dispatch(func, args=(), kwargs=None):
    kwargs = dict(kwargs or {})
    name = func.overloadpacket.__name__
    tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, Tensor)]
    virtual = [a for a in tensors if _virtual(a)]
    device = kwargs.get("device")

    if name == "_to_copy":  # .to(device/dtype), .cpu(), .cuda()
        if device is not None:
            kwargs["device"] = CPU
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        return _wrap(out) if (_is_cuda(device) if device is not None else bool(virtual)) else out
    if name == "copy_":  # dst.copy_(src) copies across devices
        _unwrap(args[0]).copy_(_unwrap(args[1]), *args[2:])
        return args[0]
    if name == "cudnn_batch_norm":  # what batch_norm picks for a CUDA input: the CPU kernel instead
        x, w, b, mean, var, training, momentum, eps = tree_map(_unwrap, args)
        out, save_mean, save_invstd = torch.ops.aten.native_batch_norm(x, w, b, mean, var, training, momentum, eps)
        return tuple(_wrap(t) for t in (out, save_mean, save_invstd, torch.empty(0, dtype=torch.uint8)))
    if name in _PASS_THROUGH:  # .item() and friends: a GPU would synchronize and answer
        return func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))

    if name in _INDEX_OPS:
        if virtual and not _virtual(args[0]):
            raise DeviceMismatch(f"indices should be either on cpu or on the same device as the indexed tensor "
                                 f"(cpu) (virtual CUDA: aten.{name})")
    elif virtual and any(not _virtual(a) and a.dim() > 0 for a in tensors):
        raise DeviceMismatch("Expected all tensors to be on the same device, but found at least two devices, "
                             f"cuda:0 and cpu! (virtual CUDA: aten.{name})")
    factory = _is_cuda(device)
    if factory:
        kwargs["device"] = CPU
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if not (virtual or factory):
        return out
    first = func._schema.arguments[0] if func._schema.arguments else None
    if first is not None and first.alias_info is not None and first.alias_info.is_write and not first.kwarg_only \
            and _virtual(args[0]):
        return args[0]  # in place (add_, index_add_, ...): the caller's tensor, written through its elem
    return tree_map(_wrap, out)


__all__ = ["VirtualCuda", "VirtualCudaTensor", "DeviceMismatch", "CUDA"]
