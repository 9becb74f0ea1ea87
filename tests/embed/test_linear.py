"""retrofit.embed.linear: oneDNN fp32 linear, forward and backward, against torch's own."""

import pytest
import torch

from retrofit.embed import linear as lin
from retrofit.runtime import onednn_available, resolve_linear_kernel

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear")


def _case(seed: int, shape: tuple[int, ...] = (3, 7, 24), out: int = 40):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    layer = torch.nn.Linear(shape[-1], out)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out, shape[-1], generator=g))
        layer.bias.copy_(torch.randn(out, generator=g))
    return x, layer


@pytest.mark.parametrize("shape", [(3, 7, 24), (50, 24), (1, 1, 24)])
def test_forward_and_gradients_match_torch(shape):
    x, ref = _case(0, shape)
    fast = torch.nn.Linear(shape[-1], 40)
    fast.load_state_dict(ref.state_dict())
    assert lin.use_kernel(fast, "onednn") == 1
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ref(xa), fast(xb)
    assert yb.shape == ya.shape and torch.allclose(ya, yb, rtol=1e-5, atol=1e-4)
    grad = torch.randn_like(ya)
    ya.backward(grad)
    yb.backward(grad)
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-5, atol=1e-4)
    assert torch.allclose(ref.weight.grad, fast.weight.grad, rtol=1e-5, atol=1e-3)
    assert torch.allclose(ref.bias.grad, fast.bias.grad, rtol=1e-5, atol=1e-4)


def test_frozen_layer_and_no_bias_give_no_gradient_where_none_is_asked():
    x, layer = _case(1)
    layer = torch.nn.Linear(24, 40, bias=False)
    layer.weight.requires_grad_(False)
    lin.use_kernel(layer, "onednn")
    xg = x.clone().requires_grad_()
    layer(xg).sum().backward()
    assert layer.weight.grad is None and xg.grad is not None
    with torch.no_grad():  # nothing needs a gradient: no autograd node at all
        assert layer(x).grad_fn is None


def test_bits_do_not_depend_on_the_thread_count():
    x, layer = _case(2, (64, 384), 1536)
    lin.use_kernel(layer, "onednn")
    before = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                outs.append(layer(x))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1])


def test_bf16_autocast_and_other_dtypes_keep_torch_own_path():
    x, layer = _case(3)
    lin.use_kernel(layer, "onednn")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        auto = layer(x)
    assert auto.dtype == torch.bfloat16
    layer64 = torch.nn.Linear(24, 40).double()
    lin.use_kernel(layer64, "onednn")
    assert layer64(x.double()).dtype == torch.float64


def test_aten_restores_torch_forward_and_bad_kernels_fail():
    _, layer = _case(4)
    lin.use_kernel(layer, "onednn")
    assert "forward" in layer.__dict__
    lin.use_kernel(layer, "aten")
    assert "forward" not in layer.__dict__
    with pytest.raises(ValueError, match="resolve auto first"):
        lin.use_kernel(layer, "auto")
    with pytest.raises(ValueError, match="fp32_linear must be one of"):
        resolve_linear_kernel("blas")
    assert resolve_linear_kernel("auto") == "onednn" and resolve_linear_kernel("aten") == "aten"


def test_kernel_identity_only_where_bits_can_change():
    assert lin.kernel_identity("onednn", bf16=False) == "fp32-linear-onednn"
    assert lin.kernel_identity("onednn", bf16=True) is None
    assert lin.kernel_identity("aten", bf16=False) is None
