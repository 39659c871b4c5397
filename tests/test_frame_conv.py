"""frame_conv (3-D conv as 2-D convs over frames) equals lax's native 3-D convolution, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from hypersign_jax.models import frame_conv
from hypersign_jax.models import slowfast

DN = ("NDHWC", "DHWIO", "NDHWC")

CASES = [  # (kernel, stride, padding, dilation, groups, c_in, c_out)
    ((5, 7, 7), (1, 2, 2), ((2, 2), (3, 3), (3, 3)), (1, 1, 1), 1, 3, 4),   # fast stem
    ((1, 7, 7), (1, 2, 2), ((0, 0), (3, 3), (3, 3)), (1, 1, 1), 1, 3, 8),   # slow stem
    ((5, 1, 1), (4, 1, 1), ((2, 2), (0, 0), (0, 0)), (1, 1, 1), 1, 2, 8),   # BFF fast -> slow
    ((3, 1, 1), (1, 1, 1), ((1, 1), (0, 0), (0, 0)), (1, 1, 1), 1, 8, 4),   # temporal conv a
    ((1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1)), (1, 2, 2), 1, 4, 4),   # spatial conv b, dilated
    ((3, 3, 3), (2, 1, 1), ((1, 0), (1, 1), (0, 2)), (2, 1, 1), 2, 4, 6),   # grouped, asymmetric, dilated in T
]


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups,c_in,c_out", CASES)
def test_equals_native_conv_values_and_gradients(kernel, stride, padding, dilation, groups, c_in, c_out):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 12, 10, 9, c_in)), jnp.float32)
  fan_in = int(np.prod(kernel)) * c_in // groups
  w = jnp.asarray(rng.normal(size=kernel + (c_in // groups, c_out)) / np.sqrt(fan_in), jnp.float32)  # y ~ O(1)

  def run(fn):
    def loss(x, w):
      y = fn(x, w, stride, padding, rhs_dilation=dilation, dimension_numbers=DN, feature_group_count=groups)
      return jnp.sum(jnp.sin(y)), y
    (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(x, w)
    return y, grads

  y_ref, (gx_ref, gw_ref) = run(lax.conv_general_dilated)
  y, (gx, gw) = run(frame_conv.conv_general_dilated)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-4)


def test_string_padding_and_layout_errors():
  x = jnp.ones((1, 8, 6, 6, 2))
  w = jnp.ones((3, 3, 3, 2, 2))
  for pad in ("SAME", "VALID"):
    np.testing.assert_allclose(frame_conv.conv_general_dilated(x, w, (2, 1, 1), pad, dimension_numbers=DN),
                               lax.conv_general_dilated(x, w, (2, 1, 1), pad, dimension_numbers=DN), rtol=1e-6)
  with pytest.raises(ValueError, match="channel-last"):
    frame_conv.conv_general_dilated(x, w, (1, 1, 1), "SAME", dimension_numbers=("NCDHW", "OIDHW", "NCDHW"))
  with pytest.raises(ValueError, match="input dilation"):
    frame_conv.conv_general_dilated(x, w, (1, 1, 1), "SAME", lhs_dilation=(2, 1, 1), dimension_numbers=DN)
  with pytest.raises(ValueError, match="shorter than the kernel"):
    frame_conv.conv_general_dilated(x[:, :2], w, (1, 1, 1), "VALID", dimension_numbers=DN)


def test_slowfast_backbone_identical_with_either_lowering():
  """Same parameters, same features: conv_impl only changes how XLA runs the convolutions."""
  kw = dict(width_per_group=8, blocks=(1, 1, 1, 1), num_block_temp_kernel=((1, 1),) * 4, dropout_rate=0.0)
  ref = slowfast.SlowFast(slowfast.slowfast_tiny(**kw), rngs=nnx.Rngs(0))
  fast = slowfast.SlowFast(slowfast.slowfast_tiny(conv_impl="frames", **kw), rngs=nnx.Rngs(0))
  for name in ("s1_fuse", "s2_fuse", "s3_fuse", "s4_fuse"):  # non-zero BFF scalars: both directions contribute
    fuse = getattr(ref, name)
    fuse.weight_s[...] = jnp.full((1,), 0.7)
    fuse.weight_f[...] = jnp.full((1,), -0.4)
  nnx.update(fast, nnx.state(ref))
  ref.eval()
  fast.eval()
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 16, 32, 32, 3)), jnp.float32)
  np.testing.assert_allclose(fast(x)["fused"], ref(x)["fused"], rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="conv_impl"):
    slowfast.slowfast_tiny(conv_impl="cudnn")
