"""Memory estimates made from a config before anything is allocated."""

import pytest
from torch import nn

from moviegen.errors import MovieGenError
from moviegen.memory import available_bytes, check_fits, largest_tae_size, module_bytes, tae_training_bytes
from moviegen.models.tae import TAEConfig
from moviegen.models.transformer import MovieGenTransformer, TransformerConfig


def test_module_bytes_counts_parameters_and_buffers_without_allocating():
    assert module_bytes(lambda: nn.Linear(1000, 1000)) == (1000 * 1000 + 1000) * 4
    config = TransformerConfig.preset("tiny")
    real = MovieGenTransformer(config)
    expected = sum(t.numel() * t.element_size() for t in [*real.parameters(), *real.buffers()])
    assert module_bytes(lambda: MovieGenTransformer(config)) == expected
    huge = TransformerConfig.preset("tiny", dim=600000, num_heads=1)
    assert module_bytes(lambda: MovieGenTransformer(huge)) > 1e12  # counted on meta, not allocated


def test_check_fits_names_need_have_and_fix():
    assert available_bytes("cpu") > 0
    check_fits(1, "one byte")
    with pytest.raises(MovieGenError, match=r"a model needs [\d,.]+ GB but cpu has [\d,.]+ GB free; smaller"):
        check_fits(1 << 60, "a model", "cpu", "smaller")


def test_tae_training_estimate_grows_with_pixels_and_the_largest_size_fits():
    config = TAEConfig.preset("tiny")
    small, big = tae_training_bytes(config, 1, 16, 64), tae_training_bytes(config, 1, 16, 128)
    assert big == pytest.approx(4 * small, rel=1e-6)
    assert 0.2e9 < small < 2e9  # measured 0.53 GB peak growth at 64 px
    budget = 4 * 1024**3
    size = largest_tae_size(config, 1, 16, budget)
    assert size % 8 == 0 and tae_training_bytes(config, 1, 16, size) <= budget
    assert tae_training_bytes(config, 1, 16, size + 8) > budget
