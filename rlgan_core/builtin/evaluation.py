"""Evaluation: the data source's own quality metrics of the evaluation samples."""

from ..hookspecs import hookimpl


@hookimpl
def rlgan_evaluate(engine, samples):
    return engine.data.metrics(samples)
