import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the slow end-to-end tests")


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
