"""rlgan-diffusion: diffusion models as policies.

Registers the ``mlp_denoiser`` model (a noise-predicting MLP with a DDPM/DDIM sampler, for any
data source with flat samples: the 2-D mixtures, the 8x8 digits) and the ``ddpo`` strategy:
denoising pre-training as its first phase, then DDPO on the configured black-box rewards.  See
``configs/diffusion_digits.toml``.
"""

from rlgan_core import hookimpl

from .model import MLPDenoiser
from .strategy import DDPO


@hookimpl
def rlgan_register_models(register):
    register("mlp_denoiser", MLPDenoiser)


@hookimpl
def rlgan_register_strategies(register):
    register("ddpo", DDPO)
