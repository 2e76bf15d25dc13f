"""rlgan-seqgan: discrete sequence generators trained as policies (SeqGAN, ORGAN).

Registers the ``oracle`` data source (SeqGAN's synthetic benchmark), the ``lstm_policy``
generator and ``cnn_text`` discriminator, the ``rollout`` and ``token_frequency`` rewards and
the ``seqgan`` strategy; adds ``nll_test`` to each evaluation of an oracle run and draws
``nll_oracle.png`` (NLL_oracle over the epochs, phases marked).  See ``configs/seqgan_oracle.toml``.
"""

from rlgan_core import hookimpl

from .models import LSTMPolicy, TextCNN
from .oracle import Oracle
from .plots import plot_nll
from .rewards import Rollout, TokenFrequency
from .strategy import SeqGAN


def lstm_policy(data, embedding: int = 32, hidden: int = 32, init_std: float = 0.1):
    """SeqGAN's generator, sized by the data source's vocabulary and sequence length."""
    return LSTMPolicy(data.vocab_size, data.length, embedding, hidden, init_std)


def cnn_text(data, embedding: int = 64, filter_sizes: list[int] = TextCNN.FILTER_SIZES,
             filter_counts: list[int] = TextCNN.FILTER_COUNTS, dropout: float = 0.25, l2: float = 0.2):
    """SeqGAN's discriminator, sized by the data source's vocabulary and sequence length."""
    return TextCNN(data.vocab_size, data.length, embedding, filter_sizes, filter_counts, dropout, l2)


@hookimpl
def rlgan_register_data(register):
    register("oracle", Oracle)


@hookimpl
def rlgan_register_models(register):
    register("lstm_policy", lstm_policy)
    register("cnn_text", cnn_text)


@hookimpl
def rlgan_register_rewards(register):
    register("rollout", Rollout)
    register("token_frequency", TokenFrequency)


@hookimpl
def rlgan_register_strategies(register):
    register("seqgan", SeqGAN)


@hookimpl
def rlgan_evaluate(engine):
    if isinstance(engine.data, Oracle) and isinstance(engine.generator, LSTMPolicy):
        return {"nll_test": engine.generator.nll(engine.data.test.to(engine.device))}


@hookimpl(trylast=True)  # after the metrics of this evaluation are logged
def rlgan_evaluation_end(engine):
    if isinstance(engine.data, Oracle):
        plot_nll(engine)
